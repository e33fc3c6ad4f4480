"""Writing new tunes with an ``abc_transformer`` model: metadata in, an ABC body out.

A request's controls become the encoder's metadata: ``time_signature`` (meter), ``key``
and ``mode``, ``rhythm`` (dance type), ``title``, and the header fields of an ABC
``text_primer`` (``M:``, ``L:``, ``K:``, ``R:``, ``T:``; the request's own fields win). A
control the model never saw is refused in one line naming what it knows. The fields left
open are filled, tune by tune, from a training tune that agrees with the asked ones
(:meth:`~.metadata.HeaderTable.fill`), so each tune's header (``X:``, ``T:``, ``M:``,
``L:``, ``Q:`` when asked, ``R:`` when known, ``K:``) is one a real tune had; the title is
only the asked one ("Untitled" without).

Every tune of a request is a row of one batch. The encoder runs once; the decoder then
writes one token at a time with each layer's keys and values cached (a step reads one
position per row, never the whole prefix: :meth:`~.network.BodyDecoder.step`, compiled
with :func:`melodygen.core.generation.compile_step`). The primer's opening bars (canonical
ABC, as BPE tokens) are forced first. Sampling: temperature, top-k, top-p
(:func:`melodygen.core.generation.sample`), seeded.

Bars are checked as they are written (``request.check_bars``, on by default), as
``abc_char`` checks them (:class:`melodygen.io.abc.BarCheck`): once a bar line is complete
the bars before it are judged, and at ``</s>`` the whole tune; a bar that fails sends its
row back to the bar line before it, to write the bar again (at most ``BAR_TRIES`` times a
bar, ``ROW_REWRITES`` a tune: :class:`_BarRow`). Each row has its own decode position, so
the rest of the batch goes on meanwhile; a row sent back just takes its earlier position
again (its cached keys and values up to there are those of the text it keeps, and it
attends to nothing after its position). Each tune's log-likelihood stays the model's own
score of the tokens it ends with.

Beam search is Magenta's, as ``melody_rnn`` runs it: ``beam_size`` rows per tune, each
extended ``branch_factor`` ways by sampling, pruned to the best every
``steps_per_iteration`` tokens; rows are ranked by their mean log-likelihood per token (a
tune that has ended is not favoured for being short), and the best row of each tune is
kept. Beam search writes no bar again: ``check_bars`` is not read when it runs.

Each tune's text is read back by abc2midi exactly as ``abc_char``'s tunes are: one that
cannot be read comes back with its text and the reason (``GeneratedMelody.problem``).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from melodygen.core.checkpoint import load_model
from melodygen.core.generation import (
    GenerationError,
    GenerationRequest,
    GenerationResult,
    compile_step,
    device_scope,
    sample,
    top_rows,
)
from melodygen.errors import one_line
from melodygen.families.abc_char.generate import (
    BAR_TRIES,
    PARSE_THREADS,
    ROW_REWRITES,
    abc_key,
    check_opening,
    dropped_fields,
    ending_is_valid,
    read_melody,
    split_text_primer,
    validity_warnings,
)
from melodygen.families.abc_char.vocab import describe_unknown
from melodygen.families.abc_transformer import dance
from melodygen.families.abc_transformer.metadata import (
    PREFIX,
    Metadata,
    meter_text,
    title_words,
    unit_text,
)
from melodygen.families.abc_transformer.tokenizer import END, PAD, START, UNK
from melodygen.io.abc import BarCheck, key_and_mode
from melodygen.nn.text import log_probs as log_softmax
from melodygen.theory import key_name

TOKENS_PER_BAR = 16
"""Tokens allowed per bar asked for (the training bodies use 4.7 a bar at the median, 8.6
at the 99th percentile; a tune is let end on its own well before the limit)."""
MIN_TOKENS = 64
NEVER_SAMPLED = (PAD, UNK, START)
CACHE_MULTIPLE = 64
"""The decoder's key/value cache holds a multiple of this many positions (up to the
network's ``max_tokens + 1``), and its batch a power of two of rows: the compiled step
(and encoder) is one program per shape, and XLA takes seconds to compile one (2 to 4 s
for the seed network on a CPU under TensorFlow, against 2-4 ms a step), so requests of
nearby lengths and row counts share them.
Positions past a row's limit and padding rows cost a little compute, and are never read."""


def cache_positions(limit: int, most: int) -> int:
    """The positions to allocate for rows that read up to ``limit`` positions: ``limit``
    rounded up to a multiple of :data:`CACHE_MULTIPLE`, or ``most`` (the network's
    ``max_tokens + 1`` positions, which ``limit`` never exceeds) when that is less than
    a multiple further: 12 and 16 bars (193 and 257 positions) share one program, not
    two one position apart."""
    rounded = -(-limit // CACHE_MULTIPLE) * CACHE_MULTIPLE
    return max(most, limit) if rounded + CACHE_MULTIPLE > most else rounded


def padded_rows(rows: int) -> int:
    """The batch rows compiled for ``rows`` rows: the next power of two."""
    return 1 << max(rows - 1, 0).bit_length()


@dataclass
class Plan:
    """What every tune of a request shares: the asked metadata, the forced opening."""

    asked: Metadata
    title: str | None
    tempo: str | None  # the Q: line's value
    opening: str  # canonical opening bars
    primer: np.ndarray  # their tokens
    limit: int  # the most body tokens a tune may have
    notices: list[str]


class StepModel:
    """The network one position at a time: encoder once, decoder with cached keys/values.

    ``state`` is (self-attention cache [layers, 2, rows, steps, heads, head_size], the
    encoder's keys and values, the metadata ids); each call is one compiled program. The
    rows are padded to :func:`padded_rows` (padding rows: all metadata ``<pad>``, token
    ``<pad>`` at position 0; their logits are dropped), so that a new row count seldom
    compiles a new program.
    """

    def __init__(self, model) -> None:
        import keras

        self.ops = keras.ops
        self.encoder = model.get_layer("encoder")
        self.decoder = model.get_layer("decoder")
        self._prepare = compile_step(self._prepare_function)
        self._step = compile_step(self.decoder.step)

    def _prepare_function(self, meta):
        return self.decoder.cross_cache(self.encoder(meta, training=False))

    def start(self, meta: np.ndarray, steps: int) -> tuple:
        """The state for rows of metadata ``meta`` [rows, META_SLOTS] with room for
        ``steps`` positions (allocate :func:`cache_positions`)."""
        padded = np.full((padded_rows(len(meta)), meta.shape[1]), PAD, np.int32)
        padded[: len(meta)] = meta
        tensor = self.ops.convert_to_tensor(padded, "int32")
        return self.decoder.empty_cache(len(padded), steps), self._prepare(tensor), tensor

    def step(self, ids: np.ndarray, positions: np.ndarray, state: tuple) -> tuple:
        """Logits [rows, vocab] (NumPy) after token ``ids`` [rows], each row's at its own
        position ``positions`` [rows] (``<s>`` is at 0), and the new state."""
        cache, cross, meta = state
        ops = self.ops
        rows, padded = len(ids), int(meta.shape[0])
        all_ids, all_positions = np.full(padded, PAD, np.int32), np.zeros(padded, np.int32)
        all_ids[:rows], all_positions[:rows] = ids, positions
        logits, cache = self._step(
            ops.convert_to_tensor(all_ids), ops.convert_to_tensor(all_positions),
            cache, cross, meta,
        )  # fmt: skip
        return np.asarray(ops.convert_to_numpy(logits))[:rows], (cache, cross, meta)

    def take(self, state: tuple, rows: np.ndarray) -> tuple:
        """The state of rows ``rows`` (beam search); rows stay within their tune, whose
        encoder keys and metadata are the same, so only the cache is gathered (padding
        rows stay where they are)."""
        cache, cross, meta = state
        order = np.concatenate([rows, np.arange(len(rows), int(meta.shape[0]))]).astype(np.int32)
        return self.ops.take(cache, self.ops.convert_to_tensor(order), axis=2), cross, meta


class TransformerGenerator:
    """A loaded ``abc_transformer`` model, ready to write tunes; load once, generate often."""

    length_unit = "tokens"
    """What :meth:`length_limit` counts: BPE tokens of the body."""

    def __init__(self, checkpoint: str | Path, device: str = "auto") -> None:
        from melodygen.io.abc import require_abc2midi

        started = time.perf_counter()
        require_abc2midi()  # tunes are read back as music by it: say so before loading
        device_scope(device)
        self.device = device
        with device_scope(device):
            self.model, self.info = load_model(checkpoint)
            self.steps = StepModel(self.model)
        self.tokenizer = self.info.tokenizer
        self.meta_vocab = self.info.meta_vocab
        self.checkpoint = Path(checkpoint)
        self.description = f"abc_transformer ({self.info.config})"
        self.load_seconds = time.perf_counter() - started

    # The request as metadata ----------------------------------------------------------

    def _known(self, name: str, value: object, asked: str) -> None:
        """Refuse a control the model never saw, naming the ones it knows."""
        if value is None or PREFIX[name] + str(value) in self.meta_vocab.index:
            return
        known = self.meta_vocab.known(name)
        if name == "tonic":
            known = [key_name(pc, "major").split()[0] for pc in sorted(map(int, known))]
        words = {
            "meter": "meters",
            "unit": "unit lengths (L:)",
            "tonic": "keys (tonics)",
            "mode": "modes",
            "rhythm": "dance types",
        }[name]
        raise GenerationError(
            f"the model never saw {asked}; it knows the {words} {', '.join(known) or 'none'}"
        )

    def asked(self, request: GenerationRequest, fields: dict[str, str]) -> Metadata:
        """The metadata a request asks for (None where it leaves a field open): its own
        controls, else its ABC opening's header ``fields``; refused in one line when the
        model never saw a value."""
        if request.time_signature is not None:
            meter = str(request.time_signature)
        else:
            meter = meter_text(fields.get("M"))
            if fields.get("M") and meter is None:
                raise GenerationError(f"the ABC opening's M:{fields['M']} is not a meter")
        unit = unit_text(fields["L"], meter) if fields.get("L") else None
        if request.key is not None:
            tonic, mode = request.key, request.mode
        elif fields.get("K"):
            found = key_and_mode(fields["K"])
            if found is None:
                raise GenerationError(f"the ABC opening's K:{fields['K']} is not a key")
            tonic, mode = found
        else:
            tonic, mode = None, None
        asked_rhythm = request.rhythm or fields.get("R") or None
        rhythm = dance.normalise(asked_rhythm)
        if asked_rhythm and rhythm is None:
            known = ", ".join(self.meta_vocab.known("rhythm")) or "none"
            raise GenerationError(f"unknown dance type {asked_rhythm!r}; the model knows {known}")
        self._known("meter", meter, f"a tune in {meter}")
        self._known("unit", unit, f"the unit length L:{unit}")
        if tonic is not None:
            self._known("tonic", tonic, f"a tune in {key_name(tonic, mode)}")
            self._known("mode", mode, f"a tune in the {mode} mode")
        self._known("rhythm", rhythm, f"a {rhythm}")
        title = request.title or fields.get("T") or None
        return Metadata(meter, unit, tonic, mode, rhythm, title_words(title))

    def plan(self, request: GenerationRequest) -> Plan:
        """The request as metadata and forced tokens, checked against what the model knows."""
        request.validate()
        check_opening(request)
        fields, opening = split_text_primer(request.text_primer or "")
        asked = self.asked(request, fields)
        meter, rhythm = asked.meter, asked.rhythm
        title = request.title or fields.get("T") or None
        tempo = f"1/4={round(request.qpm)}" if request.qpm is not None else fields.get("Q")
        notices = []
        body = canonical_opening(fields, opening)
        unknown = self.tokenizer.unknown_in(body)
        if unknown:
            notices.append(
                "the model never saw these characters of the ABC opening; it reads them as "
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
        rows = [row for row, _ in self.info.headers.rows]
        if meter and rhythm and not any((r.meter, r.rhythm) == (meter, rhythm) for r in rows):
            notices.append(
                f"no training tune was a {rhythm} in {meter}: the model writes one from what it "
                "learned of each"
            )
        primer = self.tokenizer.encode(body) if body else np.zeros(0, np.int32)
        limit = self.length_limit(request)
        if len(primer) >= limit:
            raise GenerationError(
                f"the ABC opening is {len(primer)} tokens long, as long as the {limit} tokens "
                "allowed for a tune of this length: ask for more bars"
            )
        return Plan(asked, title, tempo, body, primer, limit, notices)

    def length_limit(self, request: GenerationRequest) -> int:
        """The most body tokens a tune may have: ``TOKENS_PER_BAR`` per bar asked for
        (``request.length_steps`` in bars of the meter), from MIN_TOKENS to ``max_tokens``."""
        bars = request.length_steps / request.meter.steps_per_bar
        most = self.info.hparams.max_tokens
        return int(min(most, max(MIN_TOKENS, TOKENS_PER_BAR * bars)))

    def primer_notices(self, request: GenerationRequest) -> list[str]:
        """What the model cannot read as asked (unknown characters of the opening, fields
        left out, a note primer) and controls it never saw together."""
        return self.plan(request).notices

    # Writing --------------------------------------------------------------------------

    def generate(self, request: GenerationRequest) -> GenerationResult:
        started = time.perf_counter()
        plan, written = self.write(request)
        # Each tune is read by its own abc2midi process: run them side by side.
        with ThreadPoolExecutor(max_workers=min(len(written.texts), PARSE_THREADS)) as pool:
            read = list(
                pool.map(read_melody, written.texts, written.scores, range(len(written.texts)))
            )
        melodies = [melody for melody, _ in read]
        validity = [valid for _, valid in read]
        cut = int(np.sum(~written.ended))
        warnings = validity_warnings(melodies, validity, cut, plan.limit, "tokens")
        asked = request.key is not None
        return GenerationResult(
            melodies,
            time.perf_counter() - started,
            transpose=0,
            key=request.key,
            mode=request.mode,
            key_source="chosen" if asked else "",
            notices=plan.notices,
            warnings=warnings,
        )

    def write(self, request: GenerationRequest) -> tuple[Plan, Written]:
        """The request's tunes as text, not yet read back as music: the plan, and each
        tune's metadata, body tokens, log-likelihood, whether it ended, and text."""
        plan = self.plan(request)
        rng = np.random.default_rng(request.seed)
        filled = [self.info.headers.fill(plan.asked, rng) for _ in range(request.num_outputs)]
        headers = [
            header_text(metadata, plan, number) for number, metadata in enumerate(filled, start=1)
        ]
        width = request.beam_size * request.branch_factor
        meta = np.stack([self.meta_vocab.encode(m) for m in filled for _ in range(width)])
        # Beam search keeps its likeliest rows: it writes no bar again (check_bars unread).
        checks = headers if request.check_bars and width == 1 else None
        with device_scope(self.device):
            ids, scores, ended = self._search(meta, plan, request, rng, checks)
        texts = []
        for header, row in zip(headers, ids, strict=True):
            body = self.tokenizer.decode(row)
            texts.append(header + body + ("" if body.endswith("\n") else "\n"))
        return plan, Written(filled, ids, scores, ended, texts)

    def _search(
        self,
        meta: np.ndarray,
        plan: Plan,
        request: GenerationRequest,
        rng,
        checks: list[str] | None = None,
    ):
        """Write every row (sampling, or Magenta's beam search when the request asks):
        returns each tune's body ids, its log-likelihood (nats) and whether it ended.

        Each row has its own position (``lengths``: the body tokens it has written; it
        reads its last one at that position). A row may write ``plan.limit`` body tokens
        and then ``</s>``: it reads its last token at position ``limit`` (the cache holds
        ``limit + 1`` positions, ``<s>`` first), where only ``</s>`` is taken; any other
        token drawn there cuts the tune (``ended`` False).

        ``checks``: each row's header, to write its bars again when they do not fit
        (sampling only, one row per tune; see :class:`_BarRow`): a row sent back to an
        earlier bar line just takes that position again, its cache up to there untouched
        (positions after it are masked, and overwritten as it writes on).
        """
        rows, outputs = len(meta), request.num_outputs
        beam, every = request.beam_size, request.steps_per_iteration
        searching = rows > outputs
        limit, forced = plan.limit, len(plan.primer)
        most = self.info.hparams.max_tokens + 1  # the network's positions
        state = self.steps.start(meta, cache_positions(limit + 1, most))
        history = np.full((rows, limit + 1), PAD, np.int32)  # the body, then </s>
        lengths = np.zeros(rows, np.int64)
        scores, written = np.zeros(rows), np.zeros(rows)
        done, ended = np.zeros(rows, bool), np.zeros(rows, bool)
        previous = np.full(rows, START, np.int32)
        temperature = max(request.temperature, 1e-6)
        bars = [_BarRow(header) for header in checks] if checks is not None else None
        iteration = 0
        while not done.all():
            positions = np.minimum(lengths, limit)  # a finished row's step is not read
            logits, state = self.steps.step(previous, positions, state)
            logp = log_softmax(logits)  # the model's own probabilities, for the score
            scaled = logits.astype(np.float64) / temperature
            scaled[:, NEVER_SAMPLED] = -np.inf
            scaled[lengths == 0, END] = -np.inf  # a tune has a body
            scaled -= scaled.max(axis=1, keepdims=True)
            scaled -= np.log(np.exp(scaled).sum(axis=1, keepdims=True))
            choice = sample(scaled, request.top_k, request.top_p, rng).astype(np.int32)
            primed = lengths < forced
            choice[primed] = plan.primer[lengths[primed]]
            take = ~done
            cut = take & (lengths >= limit) & (choice != END)  # at the limit: </s> only
            take &= ~cut
            done |= cut
            if bars is not None:
                for row in np.flatnonzero(take & ~primed):
                    token = int(choice[row])
                    mark = bars[row].judge(token, self.tokenizer, lengths[row], scores[row])
                    if mark is not None:  # back to the bar line before the bar it wrote
                        take[row] = False
                        lengths[row] = written[row] = mark.length
                        scores[row] = mark.score
                        history[row, mark.length :] = PAD
                        previous[row] = history[row, mark.length - 1] if mark.length else START
            chosen = np.flatnonzero(take)
            scores[chosen] += logp[chosen, choice[chosen]]
            written[chosen] += 1
            history[chosen, lengths[chosen]] = choice[chosen]
            lengths[chosen] += 1
            previous[chosen] = choice[chosen]
            if bars is not None:
                for row in chosen:
                    bars[row].take(int(choice[row]), self.tokenizer)
            ended[chosen] |= choice[chosen] == END
            done |= ended | (lengths > limit)
            iteration += 1
            sampled = iteration - forced
            if searching and not done.all() and sampled > 0 and sampled % every == 0:
                rank = _ranks(scores, written, done, history)
                keep = top_rows(rank, outputs, beam)
                order = np.tile(keep.reshape(outputs, -1), (1, rows // (outputs * beam)))
                order = order.reshape(-1)
                history, scores, written = history[order], scores[order], written[order]
                done, ended, previous = done[order], ended[order], previous[order]
                lengths = lengths[order]
                state = self.steps.take(state, order)
        best = top_rows(_ranks(scores, written, done, history), outputs, 1)
        bodies = [row[: _body_length(row)] for row in history[best]]
        return bodies, scores[best], ended[best]


@dataclass
class Written:
    """What :meth:`TransformerGenerator.write` wrote, one entry per tune."""

    metadata: list[Metadata]
    ids: list[np.ndarray]
    """Each tune's body as the tokens it was written in (no ``</s>``)."""
    scores: np.ndarray
    """Each tune's log-likelihood (nats): the model's score of its tokens, ``</s>`` too."""
    ended: np.ndarray
    """Whether each tune wrote ``</s>`` (False: cut by the length limit)."""
    texts: list[str]


@dataclass
class _Mark:
    """A point a row can go back to: its first ``length`` body tokens (``chars`` of text),
    its score there and the bars it had closed."""

    length: int
    chars: int
    score: float
    bars: int


class _BarRow:
    """A tune's bars judged as they are written (``request.check_bars``), as ``abc_char``
    judges its characters (:class:`melodygen.io.abc.BarCheck`).

    Once the forced opening is written, the row keeps a mark at the last bar line it
    passed. A bar line is complete, and the bars up to its end judged, when a token is
    drawn whose text cannot continue it (:meth:`melodygen.io.abc.BarCheck.bar_line_end`:
    a chord's ``[`` or ``]`` or an inline field's colon is no bar line, and a ``[`` after
    one completes it); ``</s>`` judges the whole tune (abc2midi included). A
    bar that does not last what ``M:`` and ``L:`` say, or a repeat that cannot pair up,
    or an invalid ending, sends the row back to the mark, at most :data:`BAR_TRIES` times
    a bar and :data:`ROW_REWRITES` times a tune (then it is kept as written). A problem
    kept is not judged again: later bars are judged from the mark on, the ending by
    :func:`~melodygen.families.abc_char.generate.ending_is_valid`.
    """

    def __init__(self, header: str) -> None:
        self.checker = BarCheck(header)
        self.body = ""  # the text of the body tokens written
        self.mark: _Mark | None = None
        self.judged_to = 0  # characters of the body already looked at for bar lines
        self.tries = 0  # rewrites since the last mark
        self.rewrites = 0
        self.kept_problem = False  # a bar (or the opening) kept with a problem

    def judge(self, token: int, tokenizer, length: int, score: float) -> _Mark | None:
        """Before the drawn ``token`` is taken (the row has ``length`` body tokens and
        ``score``): the mark to go back to when the bar (or ending) it completes fails,
        else None (and a new mark when it follows bars that are kept)."""
        body, bars = self.body, -1
        out_of_tries = self.tries >= BAR_TRIES or self.rewrites >= ROW_REWRITES
        text = body + tokenizer.decode([token]) if token != END else body
        if self.mark is None:  # the first token after the opening
            bars, problem = self.checker.check(body)
            self.kept_problem = bool(problem)
            self.judged_to = max(0, BarCheck.bar_line_end(text))
        elif token == END:
            mark = self.mark
            if not out_of_tries and not ending_is_valid(
                self.checker, body, mark.bars, mark.chars, self.kept_problem
            ):
                return self._rewind()
        elif (end := BarCheck.bar_line_end(text, self.judged_to)) >= 0:
            self.judged_to = end
            closed, problem = self.checker.check(
                text[:end], first=self.mark.bars, since=self.mark.chars
            )
            if problem and not out_of_tries:
                return self._rewind()
            self.kept_problem |= bool(problem)
            bars = closed
        if bars >= 0:  # the bars written so far are kept: come back here from now on
            self.mark, self.tries = _Mark(int(length), len(body), float(score), bars), 0
        return None

    def take(self, token: int, tokenizer) -> None:
        if token != END:
            self.body += tokenizer.decode([token])

    def _rewind(self) -> _Mark:
        mark = self.mark
        self.body = self.body[: mark.chars]
        self.judged_to = min(self.judged_to, mark.chars)
        self.tries += 1
        self.rewrites += 1
        return mark


def _body_length(row: np.ndarray) -> int:
    """Tokens before ``</s>`` (or before the ``<pad>`` after them when the row was cut;
    a body token is never ``<pad>``)."""
    ends = np.flatnonzero((row == END) | (row == PAD))
    return int(ends[0]) if len(ends) else len(row)


def _ranks(scores, written, done, history) -> np.ndarray:
    """Beam ranks: mean log-likelihood per token; a copy of a tune that has ended (the
    beam's branches copy it) ranks last, so copies do not fill the beam."""
    rank = scores / np.maximum(written, 1)
    seen: set[bytes] = set()
    for row in np.flatnonzero(done):
        key = history[row].tobytes()
        if key in seen:
            rank[row] = -np.inf
        seen.add(key)
    return rank


def canonical_opening(fields: dict[str, str], opening: str) -> str:
    """An opening's bars in the training text's canonical form (as the tokenizer saw the
    training bodies): ``clean_tune`` under the opening's own M:, L: and K:."""
    from melodygen.io.abc import AbcError, clean_tune

    if not opening.strip():
        return ""
    header = "".join(f"{name}:{fields[name]}\n" for name in ("M", "L") if name in fields)
    try:
        body = clean_tune(f"X:1\n{header}K:{fields.get('K', 'C')}\n{opening}\n").body
    except AbcError as error:  # check_opening refuses these first
        raise GenerationError(f"the ABC opening cannot be read: {one_line(error)}") from None
    return body if opening.endswith("\n") else body.rstrip("\n")


def header_text(metadata: Metadata, plan: Plan, number: int) -> str:
    """The tune's header: X:, T:, M:, L:, Q: (asked), R: (known), K:."""
    lines = [f"X:{number}", f"T:{plan.title or 'Untitled'}"]
    lines += [f"M:{metadata.meter}", f"L:{metadata.unit}"]
    if plan.tempo:
        lines.append(f"Q:{plan.tempo}")
    if metadata.rhythm:
        lines.append(f"R:{metadata.rhythm}")
    lines.append(f"K:{abc_key(metadata.tonic, metadata.mode)}")
    return "\n".join(lines) + "\n"
