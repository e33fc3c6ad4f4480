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
position, never the whole prefix: :meth:`~.network.BodyDecoder.step`, compiled with
:func:`melodygen.core.generation.compile_step`). The primer's opening bars (canonical
ABC, as BPE tokens) are forced first. Sampling: temperature, top-k, top-p
(:func:`melodygen.core.generation.sample`), seeded. Beam search is Magenta's, as
``melody_rnn`` runs it: ``beam_size`` rows per tune, each extended ``branch_factor`` ways
by sampling, pruned to the best every ``steps_per_iteration`` tokens; rows are ranked by
their mean log-likelihood per token (a tune that has ended is not favoured for being
short), and the best row of each tune is kept.

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
    PARSE_THREADS,
    abc_key,
    check_opening,
    dropped_fields,
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
from melodygen.io.abc import key_and_mode
from melodygen.nn.text import log_probs as log_softmax
from melodygen.theory import key_name

TOKENS_PER_BAR = 16
"""Tokens allowed per bar asked for (the training bodies use 4.7 a bar at the median, 8.6
at the 99th percentile; a tune is let end on its own well before the limit)."""
MIN_TOKENS = 64
NEVER_SAMPLED = (PAD, UNK, START)


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
    encoder's keys and values, the metadata ids); each call is one compiled program.
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
        meta = self.ops.convert_to_tensor(meta, "int32")
        return self.decoder.empty_cache(len(meta), steps), self._prepare(meta), meta

    def step(self, ids: np.ndarray, index: int, state: tuple) -> tuple[np.ndarray, tuple]:
        """Logits [rows, vocab] after token ``ids`` at position ``index``."""
        cache, cross, meta = state
        ops = self.ops
        logits, cache = self._step(
            ops.convert_to_tensor(ids, "int32"), ops.convert_to_tensor(index, "int32"),
            cache, cross, meta,
        )  # fmt: skip
        return np.asarray(ops.convert_to_numpy(logits)), (cache, cross, meta)

    def take(self, state: tuple, rows: np.ndarray) -> tuple:
        """The state of rows ``rows`` (beam search); rows stay within their tune, whose
        encoder keys and metadata are the same, so only the cache is gathered."""
        cache, cross, meta = state
        return self.ops.take(cache, self.ops.convert_to_tensor(rows, "int32"), axis=2), cross, meta


class TransformerGenerator:
    """A loaded ``abc_transformer`` model, ready to write tunes; load once, generate often."""

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
        plan = self.plan(request)
        rng = np.random.default_rng(request.seed)
        filled = [self.info.headers.fill(plan.asked, rng) for _ in range(request.num_outputs)]
        width = request.beam_size * request.branch_factor
        meta = np.stack([self.meta_vocab.encode(m) for m in filled for _ in range(width)])
        with device_scope(self.device):
            ids, scores, ended = self._search(meta, plan, request, rng)
        texts = []
        for number, (metadata, row) in enumerate(zip(filled, ids, strict=True), start=1):
            body = self.tokenizer.decode(row)
            body += "" if body.endswith("\n") else "\n"
            texts.append(header_text(metadata, plan, number) + body)
        # Each tune is read by its own abc2midi process: run them side by side.
        with ThreadPoolExecutor(max_workers=min(len(texts), PARSE_THREADS)) as pool:
            read = list(pool.map(read_melody, texts, scores, range(len(texts))))
        melodies = [melody for melody, _ in read]
        validity = [valid for _, valid in read]
        cut = int(np.sum(~ended))
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

    def _search(self, meta: np.ndarray, plan: Plan, request: GenerationRequest, rng):
        """Write every row (sampling, or Magenta's beam search when the request asks):
        returns each tune's body ids, its log-likelihood (nats) and whether it ended."""
        rows, outputs = len(meta), request.num_outputs
        beam, every = request.beam_size, request.steps_per_iteration
        searching = rows > outputs
        state = self.steps.start(meta, plan.limit)
        history = np.full((rows, plan.limit), PAD, np.int32)
        scores, written = np.zeros(rows), np.zeros(rows)
        done = np.zeros(rows, bool)
        previous = np.full(rows, START, np.int32)
        temperature = max(request.temperature, 1e-6)
        forced = len(plan.primer)
        for position in range(plan.limit):
            logits, state = self.steps.step(previous, position, state)
            logp = log_softmax(logits)  # the model's own probabilities, for the score
            if position < forced:
                choice = np.full(rows, plan.primer[position], np.int32)
            else:
                scaled = logits.astype(np.float64) / temperature
                scaled[:, NEVER_SAMPLED] = -np.inf
                if position == 0:
                    scaled[:, END] = -np.inf  # a tune has a body
                scaled -= scaled.max(axis=1, keepdims=True)
                scaled -= np.log(np.exp(scaled).sum(axis=1, keepdims=True))
                choice = sample(scaled, request.top_k, request.top_p, rng).astype(np.int32)
            choice[done] = PAD
            live = ~done
            scores[live] += logp[live, choice[live]]
            written[live] += 1
            history[:, position] = choice
            done |= choice == END
            previous = choice
            if done.all():
                break
            sampled = position + 1 - forced
            if searching and sampled > 0 and sampled % every == 0:
                rank = _ranks(scores, written, done, history)
                keep = top_rows(rank, outputs, beam)
                order = np.tile(keep.reshape(outputs, -1), (1, rows // (outputs * beam)))
                order = order.reshape(-1)
                history, scores, written = history[order], scores[order], written[order]
                done, previous = done[order], previous[order]
                state = self.steps.take(state, order)
        best = top_rows(_ranks(scores, written, done, history), outputs, 1)
        bodies = [row[: _body_length(row)] for row in history[best]]
        return bodies, scores[best], done[best]


def _body_length(row: np.ndarray) -> int:
    """Tokens before ``</s>`` (or all of them when the row was cut)."""
    ends = np.flatnonzero(row == END)
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
