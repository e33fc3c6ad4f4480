"""Writing new tunes with an ``abc_char`` model, one character at a time.

Every tune of a request is a row of one batch: the network is stepped one character at a
time with each LSTM layer's state carried from step to step (never re-reading the text),
starting from the ``<end>`` marker as training did, until the row writes ``<end>`` or
reaches the length limit.

The request becomes a *template* the rows follow: the header fields it asks for are
written for the model (forced), the ones it leaves open are written by the model. With
nothing asked, the model writes the whole tune, header included. Asked for anything
(``title``, ``time_signature``, ``rhythm``, ``key``/``mode``, ``qpm``, or an ABC
``text_primer``), the header is ``T:`` ``M:`` ``Q:`` ``R:`` ``K:`` in the canonical order
of the training text (:func:`melodygen.io.abc.clean_tune`): ``T:``, ``M:`` and ``K:``
are always there, their values forced when asked and sampled (one line) when not; ``Q:``
and ``R:`` only when asked (or in the primer). The primer's opening bars follow the
header, forced too; then the model goes on alone.

Each tune's text is parsed by abc2midi (:func:`melodygen.io.abc.parse_tune`) into a
NoteSequence. A tune that cannot be read comes back all the same, with its text and the
reason (``GeneratedMelody.problem``), never as an error; the validity of every tune
(:func:`melodygen.io.abc.check_validity`) is summed up in the result's warnings.
"""

from __future__ import annotations

import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from melodygen.core.checkpoint import load_model
from melodygen.core.generation import (
    DEFAULT_QPM,
    GeneratedMelody,
    GenerationError,
    GenerationRequest,
    GenerationResult,
    compile_step,
    device_scope,
    sample,
)
from melodygen.errors import MelodyGenError, one_line
from melodygen.families.abc_char.vocab import END, UNK, describe_unknown
from melodygen.io.abc import ABC_MODE_SUFFIX, BarCheck, Validity
from melodygen.nn.text import log_probs as log_softmax
from melodygen.theory import key_name

HEADER_CHARS = 120
"""Characters allowed for the header when the length limit is worked out."""
CHARS_PER_BAR = 40
"""Characters allowed per bar asked for (the training tunes average 10 to 25 a bar, chord
symbols included; a tune is let end on its own well before the limit)."""
MAX_CHARS = 4000
"""The most characters a generated tune may have."""
MIN_CHARS = 200
PARSE_THREADS = max(2, os.cpu_count() or 1)
"""Tunes parsed at once (each by an abc2midi process; threads only wait for them)."""
HOLE_LINE_CHARS = 80
"""The most characters the model may write for one header field's value."""
BAR_TRIES = 8
"""With ``request.check_bars``: how many times one bar (or the tune's ending) is written
again before it is kept as it is."""
ROW_REWRITES = 64
"""With ``request.check_bars``: the most bars one tune may write again in all."""

_FIELD_LINE = re.compile(r"^([A-Za-z]):(.*)$")
_TEMPLATE_FIELDS = ("T", "M", "L", "Q", "R", "K")
_ALWAYS = ("T", "M", "K")


def abc_key(tonic: int, mode: str) -> str:
    """A key as ABC's ``K:`` writes it: ``G``, ``Em``, ``ADor``, ``Bb``."""
    name = key_name(tonic, mode).split()[0]
    return name + ABC_MODE_SUFFIX.get(mode, "")


@dataclass(frozen=True)
class Template:
    """What the rows write: ``parts`` are forced text (str) or a sampled line (None)."""

    parts: tuple[str | None, ...]

    @property
    def forced(self) -> str:
        return "".join(part for part in self.parts if part is not None)


def split_text_primer(text: str) -> tuple[dict[str, str], str]:
    """An ABC opening -> its header fields and its opening bars (everything after K:, or
    after the field lines when there is no K:)."""
    lines = [" ".join(line.split()) for line in text.replace("\r\n", "\n").split("\n")]
    fields: dict[str, str] = {}
    body: list[str] = []
    in_header = True
    for line in lines:
        match = _FIELD_LINE.match(line)
        if in_header and match and match.group(1) != "|":
            name, value = match.group(1), match.group(2).strip()
            if name in _TEMPLATE_FIELDS:
                fields.setdefault(name, value)
            if name == "K":
                in_header = False
            continue
        if in_header and not line:
            continue
        in_header = False
        body.append(line)
    opening = "\n".join(body).strip("\n")
    if opening and text.rstrip(" ").endswith("\n"):
        opening += "\n"
    return fields, opening


def dropped_fields(text: str) -> list[str]:
    """Header fields of an ABC opening that a tune's template does not hold (X:, S:, Y:,
    ...): they are left out, and the notices say so."""
    dropped = []
    for line in text.replace("\r\n", "\n").split("\n"):
        match = _FIELD_LINE.match(" ".join(line.split()))
        if match and match.group(1) != "|":
            if match.group(1) == "K":
                break
            if match.group(1) not in _TEMPLATE_FIELDS and match.group(1) not in dropped:
                dropped.append(match.group(1))
    return dropped


def check_opening(request: GenerationRequest) -> None:
    """Refuse, in one line, an ABC opening whose bars cannot be read (an unbalanced
    bracket, a stray character): no tune continuing it could be, whatever is sampled."""
    from melodygen.io.abc import AbcError, clean_tune

    fields, opening = split_text_primer(request.text_primer or "")
    if not opening.strip():
        return
    header = "".join(f"{name}:{fields[name]}\n" for name in ("M", "L") if name in fields)
    try:
        clean_tune(f"X:1\n{header}K:{fields.get('K', 'C')}\n{opening}\n")
    except AbcError as error:
        raise GenerationError(
            f"the ABC opening cannot be read as music: {one_line(error)}"
        ) from None


def make_template(request: GenerationRequest) -> Template:
    """The template a request asks for (see the module docstring)."""
    fields, opening = split_text_primer(request.text_primer or "")
    asked: dict[str, str] = dict(fields)
    if request.title:
        asked["T"] = " ".join(request.title.split())
    if request.time_signature is not None:
        asked["M"] = str(request.time_signature)
    if request.qpm is not None:
        asked["Q"] = f"1/4={round(request.qpm)}"
    if request.rhythm:
        asked["R"] = " ".join(request.rhythm.split())
    if request.key is not None:
        asked["K"] = abc_key(request.key, request.mode)
    if not asked and not opening:
        return Template(())
    parts: list[str | None] = []
    for name in _TEMPLATE_FIELDS:
        if name in asked:
            parts.append(f"{name}:{asked[name]}\n")
        elif name in _ALWAYS:
            parts += [f"{name}:", None]
    if opening:
        parts.append(opening)
    return Template(tuple(parts))


def length_limit(request: GenerationRequest) -> int:
    """The most characters a tune may have: a header and ``CHARS_PER_BAR`` per bar asked
    for (``request.length_steps`` in bars of the meter), from MIN_CHARS to MAX_CHARS."""
    bars = request.length_steps / request.meter.steps_per_bar
    return int(min(MAX_CHARS, max(MIN_CHARS, HEADER_CHARS + CHARS_PER_BAR * bars)))


class CharStepModel:
    """The network one character at a time, every LSTM layer's state carried along.

    The states of all layers travel as one ``[batch, 2 x units...]`` tensor (each layer's
    ``h`` then ``c``): one compiled call per character with two arguments, not one per
    state, which is most of what a step costs at the seed's size on a CPU (profiled:
    ``benchmarks/abc_char_speed.py``, README there).
    """

    def __init__(self, model) -> None:
        import keras

        from melodygen.nn.layers import MelodyLSTMStack

        self.keras = keras
        self.embedding = model.get_layer("embedding")
        rnn = model.get_layer("rnn")
        layers = rnn.lstm_layers if isinstance(rnn, MelodyLSTMStack) else [rnn]
        self.cells = [layer.cell for layer in layers]
        self.units = [cell.units for cell in self.cells]
        self.output_layer = model.get_layer("logits")
        self._step = compile_step(self._step_function)

    def initial_state(self, batch: int):
        return self.keras.ops.zeros((batch, 2 * sum(self.units)), "float32")

    def _step_function(self, ids, states):
        ops = self.keras.ops
        hidden = self.embedding(ids)
        new_states, start = [], 0
        for cell, units in zip(self.cells, self.units, strict=True):
            state = [states[:, start : start + units], states[:, start + units : start + 2 * units]]
            start += 2 * units
            hidden, state = cell(hidden, state, training=False)
            new_states += list(state)
        return self.output_layer(hidden), ops.concatenate(new_states, axis=1)

    def to_numpy(self, states) -> np.ndarray:
        return np.array(self.keras.ops.convert_to_numpy(states))

    def from_numpy(self, states: np.ndarray):
        return self.keras.ops.convert_to_tensor(states, "float32")

    def step(self, ids: np.ndarray, states) -> tuple[np.ndarray, object]:
        logits, states = self._step(self.keras.ops.convert_to_tensor(ids, "int32"), states)
        return self.keras.ops.convert_to_numpy(logits), states


@dataclass
class _Snapshot:
    """A point a row can go back to: its first ``length`` characters, the network state
    before reading the last of them (``previous``), its score and the bars it had closed."""

    length: int
    state: np.ndarray
    previous: int
    score: float
    bars: int


class _Row:
    """One tune being written: where it is in the template, what it wrote, its score.

    With bar checking (``request.check_bars``), a row in its tune's body keeps a snapshot
    at the last bar line it passed; a bar that does not last what ``M:`` and ``L:`` say
    (or a repeat sign that cannot pair up), or an ending that leaves the tune invalid,
    sends it back there to write that bar again, at most :data:`BAR_TRIES` times. A
    problem kept (the tries ran out, or the opening has it) is not judged again: later
    bars are judged from the snapshot on (:meth:`~melodygen.io.abc.BarCheck.check`'s
    ``since``), and the ending by :func:`ending_is_valid`.
    """

    def __init__(self, template: Template, limit: int) -> None:
        self.pending = list(template.parts)
        self.forced = ""  # forced characters still to write
        self.hole = False  # writing a sampled header line
        self.hole_chars = 0
        self.chars: list[str] = []  # what it wrote, forced characters as given
        self.score = 0.0
        self.done = False
        self.ended = False  # wrote <end> (not cut by the limit)
        self.limit = limit
        self.checker: BarCheck | None = None  # set once the header's K: line is written
        self.body_start = 0
        self.snapshot: _Snapshot | None = None
        self.judged_to = 0  # characters of the body already looked at for bar lines
        self.tries = 0  # rewrites since the last snapshot
        self.rewrites = 0
        self.kept_problem = False  # a bar (or the opening) kept with a problem
        self._advance()

    @property
    def free(self) -> bool:
        """Writing the body on its own (header and opening bars written)."""
        return self.checker is not None and not self.forced and not self.hole

    def body(self) -> str:
        return "".join(self.chars[self.body_start :])

    def note_header(self) -> None:
        """After each character: once the header's K: line ends, bars can be judged."""
        if self.checker is not None or not self.chars or self.chars[-1] != "\n":
            return
        text = "".join(self.chars)
        last_line = text[:-1].rsplit("\n", 1)[-1]
        if last_line.startswith("K:"):
            self.checker = BarCheck(text)
            self.body_start = len(self.chars)

    def judge(self, char_id: int, char: str) -> tuple[str, int]:
        """What to do with the character just drawn: ``("rewind", 0)`` to write the bar
        before it again; ``("keep", bars)`` when it follows a bar line that closed
        ``bars`` bars, all kept (take a snapshot here); ``("", 0)`` to go on.

        The body's first free character keeps the opening as given. After that, bars are
        judged only once the text holds a complete bar line not judged yet
        (:meth:`~melodygen.io.abc.BarCheck.bar_line_end`), and only up to its end: a
        ``[`` after a bar line (a chord, an inline field), a chord's ``]`` or an inline
        field's colon judges nothing."""
        body = self.body()
        if self.snapshot is None:
            bars, problem = self.checker.check(body)
            self.kept_problem = bool(problem)
            self.judged_to = max(0, BarCheck.bar_line_end(body + char))
            return "keep", bars
        out_of_tries = self.tries >= BAR_TRIES or self.rewrites >= ROW_REWRITES
        kept = self.snapshot.length - self.body_start  # body characters judged and kept
        if char_id == END:
            if not out_of_tries and not ending_is_valid(
                self.checker, body, self.snapshot.bars, kept, self.kept_problem
            ):
                return "rewind", 0
            return "", 0
        end = BarCheck.bar_line_end(body + char, self.judged_to)
        if end < 0:
            return "", 0
        self.judged_to = end
        closed, problem = self.checker.check(body[:end], first=self.snapshot.bars, since=kept)
        if problem and not out_of_tries:
            return "rewind", 0
        self.kept_problem |= bool(problem)
        return "keep", closed

    def keep(self, snapshot: _Snapshot) -> None:
        """The bars written so far are kept: come back here from now on."""
        self.snapshot, self.tries = snapshot, 0

    def rewind(self) -> _Snapshot:
        """Back to the snapshot, to write what follows it again."""
        snapshot = self.snapshot
        del self.chars[snapshot.length :]
        self.score = snapshot.score
        self.judged_to = min(self.judged_to, snapshot.length - self.body_start)
        self.tries += 1
        self.rewrites += 1
        return snapshot

    def _advance(self) -> None:
        while not self.forced and not self.hole and self.pending:
            part = self.pending.pop(0)
            if part is None:
                self.hole, self.hole_chars = True, 0
            else:
                self.forced = part

    def take(self, char_id: int, char: str, log_prob: float, newline: int) -> None:
        self.score += log_prob
        if char_id == END:
            self.done = self.ended = True
            return
        self.chars.append(char)
        if self.forced:
            self.forced = self.forced[1:]
        elif self.hole:
            self.hole_chars += 1
            if char_id == newline or self.hole_chars >= HOLE_LINE_CHARS:
                self.hole = False
                if char_id != newline and newline >= 0:
                    self.forced = "\n"
        self._advance()
        self.note_header()
        if len(self.chars) >= self.limit:
            self.done = True


def ending_is_valid(checker: BarCheck, body: str, bars: int, kept: int, kept_problem: bool) -> bool:
    """At the end of a tune (``body``, whose first ``kept`` characters and ``bars`` bars
    were judged and kept): may it end here? As :func:`~melodygen.io.abc.check_validity`
    judges the whole tune (abc2midi too), unless a problem was kept before (a bar kept
    when its tries ran out, or the user's opening): then no ending makes the tune valid,
    and only what follows the kept text is judged, as a finished tune's bars and repeats,
    so that the row does not spend its tries on the ending in vain."""
    if kept_problem:
        return not checker.check(body, first=bars, since=kept, whole=True)[1]
    return checker.check_whole(body).valid


def read_melody(text: str, score: float, index: int) -> tuple[GeneratedMelody, Validity | None]:
    """A generated tune's ABC ``text`` as a melody with its log-likelihood ``score`` (nats)
    and position ``index`` in the result, and its validity
    (:func:`~melodygen.io.abc.check_validity`). A tune abc2midi cannot read as music comes
    back with its text and the one-line reason (``problem``) and no validity, never as an
    error. abc2midi runs once per tune (the validity reuses the parse)."""
    from melodygen.io.abc import AbcError, check_validity, clean_tune, key_and_mode, parse_tune

    try:
        tune = clean_tune(text)
        sequence = parse_tune(tune)
        found = key_and_mode(tune.key)
        tonic, mode = found if found is not None else (None, "major")
        # Its meter must be one MelodyGen can lay bars out in (M:124/1 is not).
        melody = GeneratedMelody.from_sequence(
            sequence, score, index=index, text=text, key=tonic, mode=mode
        )
    except MelodyGenError as error:
        problem = one_line(error)
        melody = GeneratedMelody(
            events=[],
            primer_steps=0,
            log_likelihood=score,
            qpm=DEFAULT_QPM,
            index=index,
            text=text,
            problem=problem,
        )
        return melody, None
    try:
        valid = check_validity(tune, sequence=sequence)  # parsed once, above
    except AbcError:  # pragma: no cover - check_validity reports in its result
        valid = None
    return melody, valid


class CharGenerator:
    """A loaded ``abc_char`` model, ready to write tunes; load once, generate many times."""

    length_unit = "characters"
    """What :meth:`length_limit` counts."""

    def __init__(self, checkpoint: str | Path, device: str = "auto") -> None:
        from melodygen.io.abc import require_abc2midi

        started = time.perf_counter()
        require_abc2midi()  # tunes are read back as music by it: say so before loading
        device_scope(device)
        self.device = device
        with device_scope(device):
            self.model, self.info = load_model(checkpoint)
            self.steps = CharStepModel(self.model)
        self.vocab = self.info.vocab
        self.index = self.vocab.index
        self.checkpoint = Path(checkpoint)
        self.description = f"abc_char ({self.info.config})"
        self.load_seconds = time.perf_counter() - started

    def length_limit(self, request: GenerationRequest) -> int:
        """The most characters a tune of ``request`` may have (:func:`length_limit`)."""
        return length_limit(request)

    def _encode_char(self, char: str) -> int:
        return self.index.get(char, UNK)

    def primer_notices(self, request: GenerationRequest) -> list[str]:
        """What the model cannot read as asked: characters of the ABC primer or header
        outside its vocabulary, and a note primer (this family reads ABC primers)."""
        request.validate()
        notices = []
        unknown = self.vocab.unknown_in(make_template(request).forced)
        if unknown:
            notices.append(
                f"the model never saw these characters of the ABC opening; it reads them as "
                f"unknown: {describe_unknown(unknown)}"
            )
        dropped = dropped_fields(request.text_primer or "")
        if dropped:
            names = ", ".join(f"{name}:" for name in dropped)
            notices.append(
                f"the ABC opening's {names} left out: a tune's header holds T:, M:, L:, Q:, "
                "R: and K: only"
            )
        if any(event >= 0 for event in request.primer.events):
            notices.append(
                "an ABC model continues ABC text: the note primer was not used (give the "
                "opening bars as ABC)"
            )
        return notices

    def generate(self, request: GenerationRequest) -> GenerationResult:
        request.validate()
        check_opening(request)
        started = time.perf_counter()
        template = make_template(request)
        limit = length_limit(request)
        if len(template.forced) >= limit:
            raise GenerationError(
                f"the ABC opening is {len(template.forced)} characters long, as long as the "
                f"{limit} characters allowed for a tune of this length: ask for more bars"
            )
        rng = np.random.default_rng(request.seed)
        rows = [_Row(template, limit) for _ in range(request.num_outputs)]
        with device_scope(self.device):
            self._write(rows, request, rng)
        texts = ["".join(row.chars) for row in rows]
        # Each tune is read by its own abc2midi process: run them side by side.
        with ThreadPoolExecutor(max_workers=min(len(rows), PARSE_THREADS)) as pool:
            read = list(
                pool.map(
                    read_melody,
                    texts,
                    [row.score for row in rows],
                    range(len(rows)),
                )
            )
        melodies = [melody for melody, _ in read]
        validity = [valid for _, valid in read]
        cut = sum(not row.ended for row in rows)
        warnings = validity_warnings(melodies, validity, cut, limit, "characters")
        # Without a key asked for, each tune is in the key its K: line says (melody.key).
        asked = request.key is not None
        return GenerationResult(
            melodies,
            time.perf_counter() - started,
            transpose=0,
            key=request.key,
            mode=request.mode,
            key_source="chosen" if asked else "",
            notices=self.primer_notices(request),
            warnings=warnings,
        )

    def _write(self, rows: list[_Row], request: GenerationRequest, rng) -> None:
        """Step every row one character at a time until each has ended."""
        batch = len(rows)
        states = self.steps.initial_state(batch)
        previous = np.full(batch, END, np.int32)
        newline = self.index.get("\n", -1)
        temperature = max(request.temperature, 1e-6)
        check = request.check_bars
        while not all(row.done for row in rows):
            before = states  # what a snapshot keeps: the state before reading `previous`
            before_numpy = None
            logits, states = self.steps.step(previous, states)
            logp = log_softmax(logits)  # the model's own probabilities, for the score
            scaled = logits.astype(np.float64) / temperature
            scaled[:, UNK] = -np.inf  # never write a character the model does not know
            # A header line the model writes ends with a newline, not with the tune.
            scaled[[row.hole for row in rows], END] = -np.inf
            scaled -= scaled.max(axis=1, keepdims=True)
            scaled -= np.log(np.exp(scaled).sum(axis=1, keepdims=True))
            drawn = sample(scaled, request.top_k, request.top_p, rng)
            rewinds: list[int] = []
            for position, row in enumerate(rows):
                if row.done:
                    continue
                if row.forced:  # the asked text, as given (unknown characters read as <unk>)
                    char = row.forced[0]
                    choice = self._encode_char(char)
                else:
                    choice = int(drawn[position])
                    char = self.vocab.decode([choice]) if choice != END else ""
                    if check and row.free:
                        verdict, bars = row.judge(choice, char)
                        if verdict == "rewind":
                            rewinds.append(position)
                            continue
                        if verdict == "keep":
                            if before_numpy is None:
                                before_numpy = self.steps.to_numpy(before)
                            row.keep(
                                _Snapshot(
                                    len(row.chars),
                                    before_numpy[position].copy(),
                                    int(previous[position]),
                                    row.score,
                                    bars,
                                )
                            )
                row.take(choice, char, float(logp[position, choice]), newline)
                previous[position] = choice
            if rewinds:
                numpy_states = self.steps.to_numpy(states)
                for position in rewinds:
                    snapshot = rows[position].rewind()
                    numpy_states[position] = snapshot.state
                    previous[position] = snapshot.previous
                states = self.steps.from_numpy(numpy_states)


def validity_warnings(
    melodies: list[GeneratedMelody],
    validity: list[Validity | None],
    cut: int,
    limit: int,
    unit: str = "characters",
) -> list[str]:
    """One line each: tunes cut by the length limit (``cut`` of them; ``limit`` in ``unit``,
    "characters" or "tokens"; :func:`melodygen.core.validity.cut_warning`, which validity
    reports read back), tunes that do not parse, bars that are not full, repeats that do
    not balance."""
    from melodygen.core.validity import cut_warning

    count = len(melodies)

    def share(number: int) -> str:
        return "The tune" if count == 1 else f"{number} of {count} tunes"

    warnings = []
    if cut:
        warnings.append(cut_warning(cut, count, limit, unit))
    broken = [m for m in melodies if m.problem]
    if broken:
        warnings.append(
            f"{share(len(broken))} could not be read as music (first: "
            f"{broken[0].problem}); sample again or lower the temperature"
        )
    checked = [v for v in validity if v is not None]
    bars = sum(not v.full_bars for v in checked)
    repeats = sum(not v.balanced_repeats for v in checked)
    if bars:
        warnings.append(
            f"{share(bars)} {'has' if bars == 1 else 'have'} bars that do not last "
            "what M: and L: say"
        )
    if repeats:
        warnings.append(
            f"{share(repeats)} {'has' if repeats == 1 else 'have'} repeats or "
            "endings that do not pair up"
        )
    return warnings
