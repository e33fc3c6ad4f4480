"""Generation: a checkpoint plus a request gives melodies, fast.

The network runs one step at a time with each layer's recurrent state carried
between steps (never re-running the whole sequence), and all variations (and
all beam-search branches) run as one batch. Sampling happens on the event
distribution (every label that decodes to an event adds to it) with
temperature, top-k / top-p and masks for scale and pitch range; beam search
is Magenta's (``magenta/common/beam_search.py``).

Keys work as in Magenta: a model trained on melodies transposed to C thinks in
C major / A minor, so a request for D minor generates in the model's key and
transposes the result; a primer is moved into the model's key first. The one
library function the CLI and the app share is :meth:`MelodyGenerator.generate`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from melodygen.checkpoint import load_model
from melodygen.encoding import NO_EVENT
from melodygen.errors import MelodyGenError
from melodygen.music import note_seq
from melodygen.primer import Primer

STEPS_PER_BAR = 16
EVENT_SLOTS = 130  # no event, note-off and the 128 MIDI pitches, at event + 2
DEFAULT_QPM = 120.0
MAX_OUTPUTS = 64
MAX_STEPS = 4096

NOTE_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
_KEY_NAMES = {name.upper(): index for index, name in enumerate(NOTE_NAMES)}
_KEY_NAMES.update({"DB": 1, "D#": 3, "GB": 6, "G#": 8, "A#": 10, "CB": 11, "E#": 5, "FB": 4})
_KEY_NAMES.update({"B#": 0})

# Mode: (scale intervals above the tonic, semitones from the tonic up to its relative major).
MODES: dict[str, tuple[tuple[int, ...], int]] = {
    "major": ((0, 2, 4, 5, 7, 9, 11), 0),
    "minor": ((0, 2, 3, 5, 7, 8, 10), 3),
    "harmonic_minor": ((0, 2, 3, 5, 7, 8, 11), 3),
    "dorian": ((0, 2, 3, 5, 7, 9, 10), 10),
    "phrygian": ((0, 1, 3, 5, 7, 8, 10), 8),
    "lydian": ((0, 2, 4, 6, 7, 9, 11), 7),
    "mixolydian": ((0, 2, 4, 5, 7, 9, 10), 5),
    "locrian": ((0, 1, 3, 5, 6, 8, 10), 1),
    "major_pentatonic": ((0, 2, 4, 7, 9), 0),
    "minor_pentatonic": ((0, 3, 5, 7, 10), 3),
}


class GenerationError(MelodyGenError):
    """A generation request that cannot be carried out as asked."""


def parse_key(text: str | int | None) -> int | None:
    """A key name (``D``, ``F#``, ``Bb``) or pitch class 0-11 as a pitch class; None stays None."""
    if text is None or (isinstance(text, str) and text.strip().lower() in ("", "none", "auto")):
        return None
    if isinstance(text, int) or (isinstance(text, str) and text.strip().isdigit()):
        value = int(text)
        if 0 <= value < 12:
            return value
        raise GenerationError(f"key {value} is not a pitch class 0-11")
    name = text.strip().upper().replace("♯", "#").replace("♭", "B")
    if name in _KEY_NAMES:
        return _KEY_NAMES[name]
    raise GenerationError(f"unknown key {text!r}: use a note name such as C, F#, Bb")


@dataclass
class GenerationRequest:
    """Everything a user can ask of one generation run.

    ``length_steps`` is the total length including the primer (16 steps per
    4/4 bar). ``key`` is a pitch class (0 = C) or None to keep the primer's
    key (the model's own, C major / A minor, when there is no primer).
    Pitch limits are MIDI numbers in the output's key.
    """

    primer: Primer = field(default_factory=lambda: Primer(events=[]))
    length_steps: int = 8 * STEPS_PER_BAR
    key: int | None = None
    mode: str = "major"
    in_scale: bool = False
    qpm: float | None = None
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_pitch: int = 0
    max_pitch: int = 127
    num_outputs: int = 1
    seed: int | None = None
    beam_size: int = 1
    branch_factor: int = 1
    steps_per_iteration: int = 1
    include_primer: bool = True

    def validate(self) -> None:
        """Refuse what cannot be generated, each with a message a musician can act on."""
        if not self.temperature > 0 or not math.isfinite(self.temperature):
            raise GenerationError(f"temperature must be above 0 (got {self.temperature})")
        if self.mode not in MODES:
            raise GenerationError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.key is not None and not 0 <= self.key < 12:
            raise GenerationError(f"key must be a pitch class 0-11 (got {self.key})")
        if not 1 <= self.num_outputs <= MAX_OUTPUTS:
            raise GenerationError(f"number of outputs must be 1 to {MAX_OUTPUTS}")
        if not 1 <= self.length_steps <= MAX_STEPS:
            raise GenerationError(f"length must be 1 to {MAX_STEPS} steps ({MAX_STEPS // 16} bars)")
        if self.primer.steps > self.length_steps:
            raise GenerationError(
                f"the primer is {self.primer.steps} steps long, longer than the requested "
                f"{self.length_steps} steps: ask for more bars or a shorter primer"
            )
        if self.top_k is not None and self.top_k < 1:
            raise GenerationError("top-k must be at least 1")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise GenerationError("top-p must be above 0 and at most 1")
        if not 0 <= self.min_pitch <= self.max_pitch <= 127:
            raise GenerationError("pitch range must satisfy 0 <= lowest <= highest <= 127")
        for name in ("beam_size", "branch_factor", "steps_per_iteration"):
            if getattr(self, name) < 1:
                raise GenerationError(f"{name.replace('_', ' ')} must be at least 1")
        if self.qpm is not None and not 1 <= self.qpm <= 1000:
            raise GenerationError(f"tempo must be 1 to 1000 BPM (got {self.qpm})")


@dataclass
class GeneratedMelody:
    """One generated melody in the requested key, with what produced it."""

    events: list[int]
    primer_steps: int
    log_likelihood: float
    qpm: float
    index: int = 0

    @property
    def steps(self) -> int:
        return len(self.events)

    def pitches(self) -> list[int]:
        return [e for e in self.events if e >= 0]

    def to_note_sequence(self, program: int = 0, velocity: int = 100):
        """A note_seq NoteSequence at the melody's tempo (one sixteenth per step)."""
        melody = note_seq.Melody(self.events)
        sequence = melody.to_sequence(velocity=velocity, program=program, qpm=self.qpm)
        return sequence

    def write_midi(self, path: str | Path, program: int = 0) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        note_seq.sequence_proto_to_midi_file(self.to_note_sequence(program=program), str(path))
        return path


@dataclass
class GenerationResult:
    melodies: list[GeneratedMelody]
    seconds: float
    transpose: int  # semitones added to the model's output to reach the requested key


class StepModel:
    """The trained network, one step at a time, with every layer's state carried along."""

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
        self._step = _compile(self._step_function)
        self._take = _compile(
            lambda states, rows: [keras.ops.take(state, rows, axis=0) for state in states]
        )

    def initial_state(self, batch: int) -> list:
        return [
            self.keras.ops.zeros((batch, size), "float32")
            for sizes in self.state_sizes
            for size in sizes
        ]

    def _step_function(self, inputs, states):
        hidden = inputs
        new_states, offset = [], 0
        for cell, sizes in zip(self.cells, self.state_sizes, strict=True):
            layer_state = list(states[offset : offset + len(sizes)])
            offset += len(sizes)
            hidden, layer_state = cell(hidden, layer_state, training=False)
            new_states += list(layer_state)
        return self.output_layer(hidden), new_states

    def step(self, inputs: np.ndarray, states: list) -> tuple[np.ndarray, list]:
        logits, states = self._step(self.keras.ops.convert_to_tensor(inputs, "float32"), states)
        return self.keras.ops.convert_to_numpy(logits), list(states)

    def take(self, states: list, rows: np.ndarray) -> list:
        """Reorder or replicate batch rows of the state (beam search), in one compiled call."""
        return list(self._take(states, self.keras.ops.convert_to_tensor(rows, "int32")))


def recurrent_cells(model) -> list:
    """The network's recurrent cells from input to output, to step them one at a time."""
    import keras

    from melodygen.models.layers import MelodyLSTMStack

    cells = []
    for layer in model.layers:
        if isinstance(layer, MelodyLSTMStack):
            cells += [lstm.cell for lstm in layer.lstm_layers]
        elif isinstance(layer, keras.layers.RNN):
            cells.append(layer.cell)
    return cells


def _compile(function):
    """Trace the step once per backend (tf.function / jax.jit) so each call is cheap."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(function, reduce_retracing=True, jit_compile=True)
    if backend == "jax":
        import jax

        return jax.jit(function)
    return function


class MelodyGenerator:
    """A loaded checkpoint, ready to generate; load once, generate many times."""

    def __init__(self, checkpoint: str | Path, device: str = "auto") -> None:
        started = time.perf_counter()
        _device_scope(device)  # refuse a bad or unavailable device now, not at the first click
        self.device = device
        with _device_scope(device):
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

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Generate ``request.num_outputs`` melodies (one beam search each when beam_size > 1)."""
        request.validate()
        started = time.perf_counter()
        rng = np.random.default_rng(request.seed)
        primer, transpose = self._primer_in_model_key(request)
        allowed = self._allowed_pitches(request, transpose)
        with _device_scope(self.device):
            if request.beam_size > 1 or request.branch_factor > 1:
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
                start = request.primer.steps
            melodies.append(
                GeneratedMelody(
                    events=[int(e) for e in events[start:]],
                    primer_steps=request.primer.steps if request.include_primer else 0,
                    log_likelihood=float(score),
                    qpm=float(qpm),
                    index=index,
                )
            )
        return GenerationResult(melodies, time.perf_counter() - started, transpose)

    # Keys, scales and masks ---------------------------------------------------------------

    def _primer_in_model_key(self, request: GenerationRequest) -> tuple[list[int], int]:
        """The primer moved into the model's key and range, and the shift back to the output."""
        spec = self.info.spec
        events = list(request.primer.events) or [NO_EVENT]
        if spec.transpose_to_key is None:
            transpose = 0
        elif request.key is not None:
            relative_major = (request.key + MODES[request.mode][1]) % 12
            transpose = _nearest_shift(relative_major - spec.transpose_to_key)
        elif any(e >= 0 for e in events):
            melody = note_seq.Melody(events)
            transpose = _nearest_shift(melody.get_major_key() - spec.transpose_to_key)
        else:
            transpose = 0
        shifted = [e - transpose if e >= 0 else e for e in events]
        melody = note_seq.Melody(shifted)
        if any(e >= 0 for e in shifted):
            melody.squash(spec.min_note, spec.max_note, None)
        model_events = list(melody)
        model_events += [NO_EVENT] * (len(events) - len(model_events))
        return [int(e) for e in model_events[: len(events)]], transpose

    def _allowed_pitches(self, request: GenerationRequest, transpose: int) -> np.ndarray:
        """Boolean mask over model-space MIDI pitches the sampler may choose."""
        pitches = np.arange(128)
        output = pitches + transpose
        allowed = (output >= request.min_pitch) & (output <= request.max_pitch)
        allowed &= (pitches >= self.info.spec.min_note) & (pitches < self.info.spec.max_note)
        if request.in_scale:
            tonic = request.key if request.key is not None else self._default_tonic(request)
            scale = {(tonic + interval) % 12 for interval in MODES[request.mode][0]}
            allowed &= np.isin(output % 12, sorted(scale))
        if not allowed.any():
            raise GenerationError(
                f"no pitch of the model's range {self.info.spec.min_note}-"
                f"{self.info.spec.max_note - 1} (shifted by {transpose}) lies inside the "
                "requested pitch range and scale"
            )
        return allowed

    def _default_tonic(self, request: GenerationRequest) -> int:
        """Without a key, the scale is the primer's (or the model's C major) in this mode."""
        relative = MODES[request.mode][1]
        if any(e >= 0 for e in request.primer.events):
            major = note_seq.Melody(list(request.primer.events)).get_major_key()
        else:
            major = self.info.spec.transpose_to_key or 0
        return (major - relative) % 12

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

    def _label_events_at(self, histories: np.ndarray, length: int) -> np.ndarray:
        """[rows, labels] the event each label stands for at this step, given each history."""
        columns = [np.tile(self._label_events, (len(histories), 1))]
        for distance in self.encoding.lookback_distances:
            if length >= distance:
                repeated = histories[:, length - distance]
            else:
                repeated = np.full(len(histories), NO_EVENT)
            columns.append(repeated[:, None])
        return np.concatenate(columns, axis=1)

    def _event_log_probs(self, logits: np.ndarray, histories: np.ndarray, length: int):
        """[rows, EVENT_SLOTS] log P(event) at slot event + 2, summed over its labels.

        With the lookback encodings a repeat label and a plain label can stand
        for the same note; temperature, top-k/top-p and beam scores apply to
        the melody's events, so they do not depend on which label carries it.
        """
        probs = np.exp(logits - _logsumexp(logits))
        rows = np.arange(len(logits))[:, None]
        slots = self._label_events_at(histories, length) - NO_EVENT
        event_probs = np.zeros((len(logits), EVENT_SLOTS))
        np.add.at(event_probs, (rows, slots), probs)
        with np.errstate(divide="ignore"):
            return np.log(event_probs)

    def _inputs(self, histories: np.ndarray, position: int) -> np.ndarray:
        return self.encoding.inputs_at(histories, position)

    def _prime(self, primer: list[int], rows: int):
        """States after reading the primer (all but its last event, which feeds the first step)."""
        states = self.steps.initial_state(rows)
        single = np.asarray([primer])
        for position in range(len(primer) - 1):
            inputs = np.repeat(self._inputs(single, position), rows, axis=0)
            _, states = self.steps.step(inputs, states)
        return states

    def _advance(self, histories, states, scores, length, request, allowed, rng):
        """Sample one more event for every row; returns updated histories, states and scores."""
        logits, states = self.steps.step(self._inputs(histories, length - 1), states)
        event_log_probs = self._event_log_probs(logits.astype(np.float64), histories, length)
        allowed_slots = np.concatenate([[True, True], allowed])  # no event, note-off, pitches
        tempered = np.where(allowed_slots, event_log_probs / request.temperature, -np.inf)
        log_probs = tempered - _logsumexp(tempered)
        slots = _sample(log_probs, request.top_k, request.top_p, rng)
        scores = scores + log_probs[np.arange(len(slots)), slots]
        histories[:, length] = slots + NO_EVENT
        return histories, states, scores

    def _sample(self, request, primer, allowed, rng, rows):
        total = request.length_steps + (1 if request.primer.steps == 0 else 0)
        histories = np.full((rows, total), NO_EVENT, dtype=np.int64)
        histories[:, : len(primer)] = primer
        states = self._prime(primer, rows)
        scores = np.zeros(rows)
        for length in range(len(primer), total):
            histories, states, scores = self._advance(
                histories, states, scores, length, request, allowed, rng
            )
        return histories, scores

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
        states = self._prime(primer, outputs * beam)
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
            keep = _top_rows(scores, outputs, beam) if iteration else np.arange(len(scores))
            rows = np.tile(keep.reshape(outputs, -1), (1, branch)).reshape(-1)
            histories, scores = histories[rows], scores[rows]
            states = self.steps.take(states, rows)
            for _ in range(steps):
                histories, states, scores = self._advance(
                    histories, states, scores, length, request, allowed, rng
                )
                length += 1
        self.last_beam_candidates = (histories.copy(), scores.copy())
        best = _top_rows(scores, outputs, 1)
        return histories[best], scores[best]


def _top_rows(scores: np.ndarray, groups: int, k: int) -> np.ndarray:
    """Indices of the ``k`` best rows of each output's group (rows are grouped by output)."""
    per_group = scores.reshape(groups, -1)
    best = np.argsort(-per_group, axis=1, kind="stable")[:, :k]
    return (best + np.arange(groups)[:, None] * per_group.shape[1]).reshape(-1)


def _logsumexp(logits: np.ndarray) -> np.ndarray:
    peak = np.max(logits, axis=-1, keepdims=True)
    return peak + np.log(np.sum(np.exp(logits - peak), axis=-1, keepdims=True))


def _sample(log_probs: np.ndarray, top_k, top_p, rng: np.random.Generator) -> np.ndarray:
    """One index per row from the (optionally truncated) distribution; never a zero one."""
    probs = np.exp(log_probs)
    if top_k is not None and top_k < probs.shape[1]:
        threshold = -np.sort(-probs, axis=1)[:, top_k - 1 : top_k]
        probs = np.where(probs >= threshold, probs, 0.0)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probs, axis=1)
        sorted_probs = np.take_along_axis(probs, order, axis=1)
        cumulative = np.cumsum(sorted_probs, axis=1) / sorted_probs.sum(axis=1, keepdims=True)
        keep_sorted = cumulative - sorted_probs / sorted_probs.sum(axis=1, keepdims=True) < top_p
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=1)
        probs = np.where(keep, probs, 0.0)
    cumulative = np.cumsum(probs, axis=1)
    draws = rng.random((len(probs), 1)) * cumulative[:, -1:]
    chosen = (cumulative <= draws).sum(axis=1)
    # Rounding can leave a draw at the very top: take the last index that has probability.
    last = probs.shape[1] - 1 - np.argmax(probs[:, ::-1] > 0, axis=1)
    return np.minimum(chosen, last)


def _nearest_shift(semitones: int) -> int:
    """The same pitch-class shift, as the smallest move: -6 to +5 semitones."""
    return (semitones + 6) % 12 - 6


def _device_scope(device: str):
    """A context that places work on the CPU or GPU (TensorFlow); 'auto' lets TF choose."""
    import contextlib

    if device not in ("auto", "cpu", "gpu"):
        raise GenerationError(f"device must be auto, cpu or gpu (got {device!r})")
    if device == "auto":
        return contextlib.nullcontext()
    import keras

    if keras.backend.backend() != "tensorflow":
        return contextlib.nullcontext()
    import tensorflow as tf

    if device == "gpu" and not tf.config.list_physical_devices("GPU"):
        raise GenerationError("device gpu asked for, but TensorFlow sees no GPU")
    return tf.device("/GPU:0" if device == "gpu" else "/CPU:0")


def bars_to_steps(bars: float) -> int:
    return int(round(bars * STEPS_PER_BAR))
