"""Generation: a checkpoint plus a request gives melodies, fast.

The network runs one step at a time with each layer's recurrent state carried
between steps (never re-running the whole sequence), and all variations (and
all beam-search branches) run as one batch. Sampling happens on the event
distribution (every label that decodes to an event adds to it) with
temperature, top-k / top-p and masks for scale and pitch range; beam search
is Magenta's (``magenta/common/beam_search.py``).

A request with a form (AABB, ...: :mod:`melodygen.core.form`) is sampled section by
section in one pass: a new section is sampled, conditioned on everything before it; a
repeated one is copied from its source (all of it, or its first half when repeats vary,
the rest sampled) and the copied events are fed through the network, so its state
carries on through the repeat and the next section follows it musically. The tune ends
on a cadence: its final bar is sampled :data:`CADENCE_CANDIDATES` times for each melody,
and the candidate whose last note is the key's tonic with the best log-likelihood under
the model is kept; when none lands there, the likeliest candidate's last note is moved to
the nearest tonic the settings allow (and the result says so). When the tune's last
section is an exact repeat, its source's final bar is made the cadence, so the copy ends
on it too.

Keys work as in Magenta: a model trained on melodies transposed to C thinks in
C major / A minor, so a request for D minor generates in the model's key and
transposes the result; a primer is moved into the model's key first. The
family's generator is :class:`MelodyGenerator`; the request and result types are
shared by every family (:mod:`melodygen.core.generation`).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from melodygen.core.checkpoint import load_model
from melodygen.core.form import FormPlan, Section
from melodygen.core.generation import (
    DEFAULT_QPM,
    GeneratedMelody,
    GenerationError,
    GenerationRequest,
    GenerationResult,
    compile_step,
    device_scope,
    logsumexp,
    outcome_warnings,
    sample,
    top_rows,
)
from melodygen.io.music import note_seq
from melodygen.theory import MODES, NO_EVENT, NOTE_OFF, key_name, pitch_name, relative_major

EVENT_SLOTS = 130  # no event, note-off and the 128 MIDI pitches, at event + 2
CADENCE_CANDIDATES = 8
"""Final bars sampled per melody of a form; the one ending on the tonic is kept."""


class StepModel:
    """The trained network, one step at a time, with every layer's state carried along.

    The states of every layer travel as one float32 tensor [rows, sum of state sizes],
    cut apart and joined again inside the compiled step: a call with 2 tensors instead
    of one per state (16 for a 2-layer attention_rnn) spends less of each step binding
    its arguments in Python (benchmarks/README.md, "eighth look").
    """

    def __init__(self, model) -> None:
        import keras

        self.keras = keras
        self.cells = recurrent_cells(model)
        self.output_layer = model.get_layer("logits")
        self.state_sizes = [
            list(cell.state_size)
            if isinstance(cell.state_size, (list, tuple))
            else [cell.state_size]
            for cell in self.cells
        ]
        flat = [size for sizes in self.state_sizes for size in sizes]
        self.state_width = sum(flat)
        self._cuts = list(itertools.accumulate(flat))[:-1]  # where one state ends in the row
        self._step = compile_step(self._step_function)
        self._take = compile_step(lambda states, rows: keras.ops.take(states, rows, axis=0))

    def initial_state(self, batch: int) -> Any:
        """Zero states for ``batch`` rows: one backend tensor [batch, state_width]."""
        return self.keras.ops.zeros((batch, self.state_width), "float32")

    def _step_function(self, inputs, states):
        hidden = inputs
        # TensorFlow's split refuses an empty list of cuts (a network with a single state).
        parts = self.keras.ops.split(states, self._cuts, axis=1) if self._cuts else [states]
        new_states, offset = [], 0
        for cell, sizes in zip(self.cells, self.state_sizes, strict=True):
            layer_state = list(parts[offset : offset + len(sizes)])
            offset += len(sizes)
            hidden, layer_state = cell(hidden, layer_state, training=False)
            new_states += list(layer_state)
        return self.output_layer(hidden), self.keras.ops.concatenate(new_states, axis=1)

    def step(self, inputs: np.ndarray, states: Any) -> tuple[np.ndarray, Any]:
        """Logits (numpy [rows, events]) and the states after one step for every row."""
        logits, states = self._step(self.keras.ops.convert_to_tensor(inputs, "float32"), states)
        return self.keras.ops.convert_to_numpy(logits), states

    def take(self, states: Any, rows: np.ndarray) -> Any:
        """Reorder or replicate batch rows of the state (beam search), in one compiled call."""
        return self._take(states, self.keras.ops.convert_to_tensor(rows, "int32"))


def recurrent_cells(model) -> list:
    """The network's recurrent cells from input to output, to step them one at a time."""
    import keras

    from melodygen.nn.layers import MelodyLSTMStack

    cells = []
    for layer in model.layers:
        if isinstance(layer, MelodyLSTMStack):
            cells += [lstm.cell for lstm in layer.lstm_layers]
        elif isinstance(layer, keras.layers.RNN):
            cells.append(layer.cell)
    return cells


class MelodyGenerator:
    """A loaded checkpoint, ready to generate; load once, generate many times."""

    def __init__(self, checkpoint: str | Path, device: str = "auto") -> None:
        started = time.perf_counter()
        device_scope(device)  # refuse a bad or unavailable device now, not at the first click
        self.device = device
        with device_scope(device):
            self.model, self.info = load_model(checkpoint)
            self.steps = StepModel(self.model)
        self.encoding = self.info.spec.make_encoding()
        self.checkpoint = Path(checkpoint)
        # The event each plain (non-repeat) label stands for, whatever came before.
        num_plain = self.encoding.num_classes - len(self.encoding.lookback_distances)
        self._label_events = np.array(
            [self.encoding.decode_label(label, []) for label in range(num_plain)], dtype=np.int64
        )
        self.load_seconds = time.perf_counter() - started

    @property
    def config(self) -> str:
        return self.info.spec.config

    @property
    def description(self) -> str:
        """What the model is, in a word: its configuration."""
        return self.info.spec.config

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Generate ``request.num_outputs`` melodies (one beam search each when beam_size > 1)."""
        request.validate()
        started = time.perf_counter()
        rng = np.random.default_rng(request.seed)
        tonic, mode, key_source = self._resolved_key(request)
        primer, transpose, notices = self._primer_in_model_key(request, tonic, mode)
        allowed = self._allowed_pitches(request, transpose, tonic, mode)
        plan = request.form_plan()
        with device_scope(self.device):
            if plan is not None:
                rows, scores, steered = self._sample_form(
                    request, primer, allowed, rng, plan, (tonic, mode, transpose)
                )
                notices = notices + _cadence_notices(steered, tonic, mode)
            elif request.beam_size > 1 or request.branch_factor > 1:
                rows, scores = self._beam_search(request, primer, allowed, rng)
            else:
                rows, scores = self._sample(request, primer, allowed, rng, request.num_outputs)
        qpm = request.qpm or request.primer.qpm or DEFAULT_QPM
        melodies = []
        for index, (row, score) in enumerate(zip(rows, scores, strict=True)):
            events = self._to_output_key(row, transpose, request)
            start = 0
            if request.primer.steps == 0:
                start = 1  # the silent step the model started from
            elif not request.include_primer:
                # Keep the bar lines where the meter puts them: start at the bar line
                # before the primer's end, the primer's notes in that bar turned to rest.
                bar = request.meter.steps_per_bar
                start = request.primer.steps // bar * bar
                events = np.array(events)
                ends = request.primer.steps
                if ends > start:
                    events[start:ends] = NO_EVENT
                    if ends < len(events) and events[ends] == NOTE_OFF:
                        events[ends] = NO_EVENT  # it would end a primer note now silent
            melodies.append(
                GeneratedMelody(
                    events=[int(e) for e in events[start:]],
                    primer_steps=request.primer.steps if request.include_primer else 0,
                    log_likelihood=float(score),
                    qpm=float(qpm),
                    index=index,
                    meter=request.meter,
                    key=tonic,
                    mode=mode,
                    sections=_sections_from(plan, start, request.primer.steps == 0),
                )
            )
        warnings = self._choice_warnings(request, allowed, transpose, tonic, mode)
        warnings += outcome_warnings(request, melodies, bool(warnings))
        return GenerationResult(
            melodies,
            time.perf_counter() - started,
            transpose,
            key=tonic,
            mode=mode,
            key_source=key_source,
            notices=notices,
            warnings=warnings,
            form=plan.form if plan is not None else "free",
        )

    def primer_notices(self, request: GenerationRequest) -> list[str]:
        """What generating ``request`` would change in its primer (notes moved by octaves
        into the model's range), one line each; [] when it is used as written."""
        request.validate()
        tonic, mode, _ = self._resolved_key(request)
        return self._primer_in_model_key(request, tonic, mode)[2]

    # Keys, scales and masks ---------------------------------------------------------------

    def _resolved_key(self, request: GenerationRequest) -> tuple[int | None, str, str]:
        """(tonic, mode, source) of the output: asked for, the primer's, or the model's."""
        if request.key is not None:
            return request.key, request.mode, "chosen"
        primer = request.primer
        if any(e >= 0 for e in primer.events):
            if primer.key is not None and primer.mode in MODES:
                return primer.key, primer.mode, primer.key_source or "estimated"
            major = note_seq.Melody(list(primer.events)).get_major_key()
            return (major - MODES[request.mode][1]) % 12, request.mode, "estimated"
        if self.info.spec.transpose_to_key is None:
            return None, request.mode, "model"
        tonic = (self.info.spec.transpose_to_key - MODES[request.mode][1]) % 12
        return tonic, request.mode, "model"

    def _primer_in_model_key(
        self, request: GenerationRequest, tonic: int | None, mode: str
    ) -> tuple[list[int], int, list[str]]:
        """The primer moved from the output's key (``tonic``, ``mode``: _resolved_key's) into
        the model's key and range, the shift back to the output, and a notice when notes had
        to move by octaves to fit the model's range."""
        spec = self.info.spec
        events = list(request.primer.events) or [NO_EVENT]
        if spec.transpose_to_key is None or tonic is None:
            transpose = 0
        else:
            transpose = _nearest_shift(relative_major(tonic, mode) - spec.transpose_to_key)
        shifted = [e - transpose if e >= 0 else e for e in events]
        melody = note_seq.Melody(shifted)
        if any(e >= 0 for e in shifted):
            melody.squash(spec.min_note, spec.max_note, None)
        model_events = list(melody)
        model_events += [NO_EVENT] * (len(events) - len(model_events))
        model_events = [int(e) for e in model_events[: len(events)]]
        low, high = spec.min_note + transpose, spec.max_note - 1 + transpose
        notices = _range_notices(events, model_events, transpose, (low, high), tonic, mode)
        return model_events, transpose, notices

    def _allowed_pitches(
        self, request: GenerationRequest, transpose: int, tonic: int | None, mode: str
    ) -> np.ndarray:
        """Boolean mask over model-space MIDI pitches the sampler may choose (``tonic`` and
        ``mode``: the output's key, for ``in_scale``)."""
        pitches = np.arange(128)
        output = pitches + transpose
        allowed = (output >= request.min_pitch) & (output <= request.max_pitch)
        allowed &= (pitches >= self.info.spec.min_note) & (pitches < self.info.spec.max_note)
        if request.in_scale:
            tonic = tonic if tonic is not None else (-MODES[mode][1]) % 12  # C major
            scale = {(tonic + interval) % 12 for interval in MODES[mode][0]}
            allowed &= np.isin(output % 12, sorted(scale))
        if not allowed.any():
            low, high = self.info.spec.min_note + transpose, self.info.spec.max_note - 1 + transpose
            raise GenerationError(
                f"no note is left to play: this model plays {pitch_name(low)}-"
                f"{pitch_name(high)} here, and none of those lies between the lowest "
                f"({pitch_name(request.min_pitch)}) and highest ({pitch_name(request.max_pitch)})"
                f" note{' in the scale' if request.in_scale else ''}"
            )
        return allowed

    def _choice_warnings(
        self,
        request: GenerationRequest,
        allowed: np.ndarray,
        transpose: int,
        tonic: int | None,
        mode: str,
    ) -> list[str]:
        """One line per setting that leaves the model (almost) no choice."""
        warnings = []
        playable = [int(p) + transpose for p in np.flatnonzero(allowed)]
        scale = {((tonic or 0) + step) % 12 for step in MODES[mode][0]}
        in_key = [p for p in playable if p % 12 in scale] if tonic is not None else playable
        if len(playable) <= 2 or (len(in_key) <= 2 and len(playable) <= 4):
            names = ", ".join(pitch_name(p, tonic, mode) for p in playable)
            key = f" ({len(in_key)} in {key_name(tonic, mode)})" if tonic is not None else ""
            warnings.append(
                f"Only {names} can be played{key}: the melody will mostly repeat "
                f"{'it' if len(in_key) == 1 else 'them'}; widen the range between the "
                "lowest and highest note."
            )
        if request.top_k is not None and request.top_k <= 2:
            warnings.append(
                f"Top-k {request.top_k} leaves the model {request.top_k} choice"
                f"{'s' if request.top_k > 1 else ''} per step, so it holds or repeats the "
                "likeliest note; set top-k to 0 (off) or 5 and more."
            )
        if request.top_p is not None and request.top_p <= 0.2:
            warnings.append(
                f"Top-p {request.top_p:g} keeps little more than the likeliest event at each "
                "step: expect long held or repeated notes; try 0.9, or 1 (off)."
            )
        if request.temperature <= 0.25:
            warnings.append(
                f"Temperature {request.temperature:g} nearly always takes the likeliest event: "
                "expect long held or repeated notes; try 0.8 to 1.2."
            )
        return warnings

    def _to_output_key(self, events: np.ndarray, transpose: int, request) -> np.ndarray:
        events = np.asarray(events, dtype=np.int64).copy()
        notes = events >= 0
        events[notes] += transpose
        if self.info.spec.transpose_to_key is None and request.key is not None:
            # A model that kept melodies in their own keys: move each result to the key asked.
            pitches = events[notes]
            if pitches.size:
                major = note_seq.Melody([int(e) for e in events]).get_major_key()
                target = (request.key + MODES[request.mode][1]) % 12
                shift = _nearest_shift(target - major)
                if ((pitches + shift >= 0) & (pitches + shift <= 127)).all():
                    events[notes] += shift
        return events

    # Sampling -----------------------------------------------------------------------------

    def _encoding_for(self, request: GenerationRequest):
        """The encoding in the request's meter: the phrase encoding's lookbacks and place in
        the bar follow it (its bar lines from history step 1 after the silent start, else
        from step 0, where the primer begins); Magenta's encodings ignore it."""
        first_bar_line = 1 if request.primer.steps == 0 else 0
        return self.encoding.for_meter(request.meter.steps_per_bar, first_bar_line)

    def _label_events_at(self, histories: np.ndarray, length: int, request) -> np.ndarray:
        """[rows, labels] the event each label stands for at this step, given each history."""
        columns = [np.tile(self._label_events, (len(histories), 1))]
        for distance in self._encoding_for(request).lookback_distances:
            if length >= distance:
                repeated = histories[:, length - distance]
            else:
                repeated = np.full(len(histories), NO_EVENT)
            columns.append(repeated[:, None])
        return np.concatenate(columns, axis=1)

    def _event_log_probs(self, logits: np.ndarray, histories: np.ndarray, length: int, request):
        """[rows, EVENT_SLOTS] log P(event) at slot event + 2, summed over its labels.

        With the lookback encodings a repeat label and a plain label can stand
        for the same note; temperature, top-k/top-p and beam scores apply to
        the melody's events, so they do not depend on which label carries it.
        """
        probs = np.exp(logits - logsumexp(logits))
        rows = np.arange(len(logits))[:, None]
        slots = self._label_events_at(histories, length, request) - NO_EVENT
        event_probs = np.zeros((len(logits), EVENT_SLOTS))
        np.add.at(event_probs, (rows, slots), probs)
        with np.errstate(divide="ignore"):
            return np.log(event_probs)

    def _inputs(self, histories: np.ndarray, position: int, request) -> np.ndarray:
        return self._encoding_for(request).inputs_at(histories, position)

    def _prime(self, primer: list[int], rows: int, request):
        """States after reading the primer (all but its last event, which feeds the first step)."""
        states = self.steps.initial_state(rows)
        single = np.asarray([primer])
        for position in range(len(primer) - 1):
            inputs = np.repeat(self._inputs(single, position, request), rows, axis=0)
            _, states = self.steps.step(inputs, states)
        return states

    def _advance(self, histories, states, scores, length, request, allowed, rng):
        """Sample one more event for every row; returns updated histories, states and scores.

        Without a primer the first step (``length`` 1, after the silent start) may only
        be a note-on when ``request.start_on_downbeat``: the melody starts on beat 1.
        """
        logits, states = self.steps.step(self._inputs(histories, length - 1, request), states)
        event_log_probs = self._event_log_probs(
            logits.astype(np.float64), histories, length, request
        )
        downbeat = request.start_on_downbeat and request.primer.steps == 0 and length == 1
        allowed_slots = np.concatenate([[not downbeat, not downbeat], allowed])
        tempered = np.where(allowed_slots, event_log_probs / request.temperature, -np.inf)
        log_probs = tempered - logsumexp(tempered)
        slots = sample(log_probs, request.top_k, request.top_p, rng)
        scores = scores + log_probs[np.arange(len(slots)), slots]
        histories[:, length] = slots + NO_EVENT
        return histories, states, scores

    def _sample(self, request, primer, allowed, rng, rows):
        total = request.length_steps + (1 if request.primer.steps == 0 else 0)
        histories = np.full((rows, total), NO_EVENT, dtype=np.int64)
        histories[:, : len(primer)] = primer
        states = self._prime(primer, rows, request)
        scores = np.zeros(rows)
        for length in range(len(primer), total):
            histories, states, scores = self._advance(
                histories, states, scores, length, request, allowed, rng
            )
        return histories, scores

    # Forms ---------------------------------------------------------------------------------

    def _sample_form(self, request, primer, allowed, rng, plan: FormPlan, key):
        """Sample ``request.num_outputs`` melodies that follow ``plan``: new steps sampled,
        repeated steps copied and fed through the network (its state carries on), the
        ending made a cadence. ``key``: (tonic, mode, transpose) of the output. Returns the
        histories, their log-likelihoods (copied steps included) and how many melodies'
        last note had to be moved to the tonic."""
        rows = request.num_outputs
        offset = 1 if request.primer.steps == 0 else 0  # the silent step before a melody
        total = plan.total_steps + offset
        histories = np.full((rows, total), NO_EVENT, dtype=np.int64)
        histories[:, : len(primer)] = primer
        states = self._prime(primer, rows, request)
        scores = np.zeros(rows)
        copied = np.full(total, -1)  # the step each copied step repeats
        firsts = set()
        for section in plan.sections:
            if section.source is not None:
                start, source = section.start + offset, section.source + offset
                copied[start : start + section.kept] = np.arange(source, source + section.kept)
                firsts.add(start)
        cadence = None
        if plan.cadence is not None:
            cadence = (plan.cadence[0] + offset, plan.cadence[1] + offset)
        steered = 0
        length = len(primer)
        while length < total:
            if cadence is not None and length == cadence[0]:
                histories, states, scores, moved = self._cadence(
                    histories, states, scores, cadence, request, allowed, rng, key
                )
                steered += moved
                length = cadence[1]
                continue
            if copied[length] >= 0:
                events = histories[:, copied[length]].copy()
                if length in firsts:
                    events = _copy_start(histories, length, copied[length], events)
                histories, states, scores = self._force(
                    histories, states, scores, length, events, request
                )
            else:
                histories, states, scores = self._advance(
                    histories, states, scores, length, request, allowed, rng
                )
            length += 1
        return histories, scores, steered

    def _force(self, histories, states, scores, length, events, request):
        """Feed the given ``events`` (one per row) as step ``length``: the state moves on as
        if the model had sampled them, and their log-probability (at the request's
        temperature, without the pitch masks, which a copied primer note may lie outside)
        is added to each row's score."""
        logits, states = self.steps.step(self._inputs(histories, length - 1, request), states)
        event_log_probs = self._event_log_probs(
            logits.astype(np.float64), histories, length, request
        )
        tempered = event_log_probs / request.temperature
        log_probs = tempered - logsumexp(tempered)
        scores = scores + log_probs[np.arange(len(events)), np.asarray(events) - NO_EVENT]
        histories[:, length] = events
        return histories, states, scores

    def _cadence(self, histories, states, scores, span, request, allowed, rng, key):
        """Write the tune's final bar (steps ``span``) as a cadence: sample it
        :data:`CADENCE_CANDIDATES` times per melody, keep the likeliest candidate whose last
        note is the tonic (else the likeliest, its last note moved to the nearest allowed
        tonic), then feed the kept bar through the network from the saved state so the
        state and score are exactly the kept bar's. Returns the number of moved notes."""
        tonic, mode, transpose = key
        start, end = span
        count = CADENCE_CANDIDATES
        rows = len(histories)
        spread = np.repeat(np.arange(rows), count)
        trial, trial_states = histories[spread].copy(), self.steps.take(states, spread)
        trial_scores = np.zeros(len(spread))
        for length in range(start, end):
            trial, trial_states, trial_scores = self._advance(
                trial, trial_states, trial_scores, length, request, allowed, rng
            )
        chosen, moved = [], 0
        for row in range(rows):
            candidates = list(range(row * count, (row + 1) * count))
            target = tonic
            if target is None or self.info.spec.transpose_to_key is None:
                # A model that keeps keys writes in the melody's own key (moved afterwards).
                major = note_seq.Melody([int(e) for e in trial[candidates[0], :start]])
                target = (major.get_major_key() - MODES[mode][1]) % 12
                shift = 0
            else:
                shift = transpose
            endings = [c for c in candidates if _ends_on(trial[c, :end], target, shift)]
            pool = endings or candidates
            best = max(pool, key=lambda c: (trial_scores[c], -c))
            bar = trial[best, start:end].copy()
            if not endings:
                bar = _steer(bar, trial[best, :start], target, shift, allowed)
                moved += int(_ends_on(np.concatenate([trial[best, :start], bar]), target, shift))
            chosen.append(bar)
        chosen = np.asarray(chosen)
        for length in range(start, end):
            histories, states, scores = self._force(
                histories, states, scores, length, chosen[:, length - start], request
            )
        return histories, states, scores, moved

    def _beam_search(self, request, primer, allowed, rng):
        """Magenta's beam search, run for every output at once as one batch."""
        beam, branch, outputs = request.beam_size, request.branch_factor, request.num_outputs
        total = request.length_steps + (1 if request.primer.steps == 0 else 0)
        num_steps = total - len(primer)
        if num_steps == 0:
            rows, scores = self._sample(request, primer, allowed, rng, outputs)
            return rows, scores
        histories = np.full((outputs * beam, total), NO_EVENT, dtype=np.int64)
        histories[:, : len(primer)] = primer
        states = self._prime(primer, outputs * beam, request)
        scores = np.zeros(outputs * beam)
        length = len(primer)
        first = (num_steps - 1) % request.steps_per_iteration + 1
        iterations = [first] + [request.steps_per_iteration] * (
            (num_steps - first) // request.steps_per_iteration
        )
        self.last_beam_candidates = None
        for iteration, steps in enumerate(iterations):
            # Prune to the beam (after the first iteration), then branch each entry
            # `branch` ways; rows stay grouped by output. One gather does both.
            keep = top_rows(scores, outputs, beam) if iteration else np.arange(len(scores))
            rows = np.tile(keep.reshape(outputs, -1), (1, branch)).reshape(-1)
            histories, scores = histories[rows], scores[rows]
            states = self.steps.take(states, rows)
            for _ in range(steps):
                histories, states, scores = self._advance(
                    histories, states, scores, length, request, allowed, rng
                )
                length += 1
        self.last_beam_candidates = (histories.copy(), scores.copy())
        best = top_rows(scores, outputs, 1)
        return histories[best], scores[best]


def _copy_start(histories: np.ndarray, copy: int, source: int, events: np.ndarray) -> np.ndarray:
    """The first event of a copied section, so that it sounds as its source does: a source
    starting on a hold (``NO_EVENT``) continues what sounded before it, which before the
    copy may be another note; the copy then starts that note again, or a rest."""
    events = events.copy()
    for row, event in enumerate(events):
        if event != NO_EVENT:
            continue
        before_source = _sounding_before(histories[row], source)
        if before_source != _sounding_before(histories[row], copy):
            events[row] = NOTE_OFF if before_source is None else before_source
    return events


def _sounding_before(events: np.ndarray, position: int) -> int | None:
    """The pitch sounding just before ``position`` (None: silence)."""
    for event in events[:position][::-1]:
        if event >= 0:
            return int(event)
        if event == NOTE_OFF:
            return None
    return None


def _ends_on(events: np.ndarray, tonic: int, transpose: int) -> bool:
    """Whether the last note of model-space ``events`` is ``tonic`` in the output key."""
    notes = events[events >= 0]
    return bool(notes.size) and (int(notes[-1]) + transpose) % 12 == tonic


def _steer(bar: np.ndarray, before: np.ndarray, tonic: int, transpose: int, allowed) -> np.ndarray:
    """``bar`` with its last note moved to the nearest allowed tonic (a bar without a note
    gets the tonic nearest the last note before it on its first step); unchanged when the
    settings allow no tonic."""
    pitches = np.flatnonzero(allowed)
    tonics = pitches[(pitches + transpose) % 12 == tonic]
    if not tonics.size:
        return bar
    notes = np.flatnonzero(bar >= 0)
    earlier = before[before >= 0]
    if notes.size:
        where, pitch = int(notes[-1]), int(bar[notes[-1]])
    else:
        where, pitch = 0, int(earlier[-1]) if earlier.size else 60
    bar = bar.copy()
    bar[where] = int(tonics[np.argmin(np.abs(tonics - pitch) * 2 + (tonics > pitch))])
    return bar


def _sections_from(plan: FormPlan | None, start: int, silent_start: bool) -> tuple[Section, ...]:
    """The plan's sections in steps of the output melody: history steps less the ``start``
    cut off (and the silent step a melody without a primer begins from)."""
    if plan is None:
        return ()
    shift = start - (1 if silent_start else 0)
    sections = []
    for section in plan.sections:
        moved = section.shifted(-shift)
        if moved.end > 0:  # a section left out with the primer (include_primer False)
            sections.append(replace(moved, start=max(0, moved.start)))
    return tuple(sections)


def _cadence_notices(moved: int, tonic: int | None, mode: str) -> list[str]:
    """One line when the cadence had to move melodies' last notes to the tonic."""
    if not moved:
        return []
    key = f" of {key_name(tonic, mode)}" if tonic is not None else ""
    which = "1 melody's" if moved == 1 else f"{moved} melodies'"
    return [
        f"No sampled ending of {which} last bar landed on the tonic{key}: the last note was "
        "moved to it to close the tune."
    ]


def _range_notices(
    events: list[int],
    model_events: list[int],
    transpose: int,
    model_range: tuple[int, int],
    tonic: int | None,
    mode: str,
) -> list[str]:
    """One line saying which primer notes the model's range moved by octaves, and where."""
    before = [e for e in events if e >= 0]
    after = [e + transpose for e in model_events if e >= 0]
    moved = [(b, a) for b, a in zip(before, after, strict=False) if a != b]
    if not moved:
        return []

    def name(pitch: int) -> str:
        return pitch_name(pitch, tonic, mode)

    def span(pitches: list[int]) -> str:
        low, high = min(pitches), max(pitches)
        return name(low) if low == high else f"{name(low)}-{name(high)}"

    model_span = f"{name(model_range[0])}-{name(model_range[1])}"
    shifts = {a - b for b, a in moved}
    if len(shifts) == 1:
        octaves = abs(next(iter(shifts))) // 12
        direction = "lower" if moved[0][1] < moved[0][0] else "higher"
        how = f"{octaves} octave{'s' if octaves != 1 else ''} {direction}"
    elif all(shift < 0 for shift in shifts):
        how = "down by octaves"
    elif all(shift > 0 for shift in shifts):
        how = "up by octaves"
    else:
        how = "by octaves"
    low, high = span([b for b, _ in moved]), span([a for _, a in moved])
    if len(moved) == len(before):
        subject, verb, pronoun = f"The primer's notes {low}", "are", "they are"
    else:
        subject = f"{len(moved)} of the primer's notes ({low})"
        verb, pronoun = ("is", "it is") if len(moved) == 1 else ("are", "they are")
    return [
        f"{subject} {verb} outside what this model plays here ({model_span}): "
        f"{pronoun} moved {how}, to {high}."
    ]


def _nearest_shift(semitones: int) -> int:
    """The same pitch-class shift, as the smallest move: -6 to +5 semitones."""
    return (semitones + 6) % 12 - 6
