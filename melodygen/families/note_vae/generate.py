"""Melodies from codes: random codes, variations of a melody, blends of two.

Every melody is one window (:data:`~melodygen.families.note_vae.dataset.WINDOW` notes,
rests included) decoded from a code. The decoder runs one note at a time with every
LSTM layer's state carried (:class:`DecoderStep`, one compiled call per note), all of a
request's melodies as rows of one batch. At each note the pitch, duration and velocity
are drawn from their heads (``temperature``, ``top_k``, ``top_p`` as for every family:
:func:`melodygen.core.generation.sample`); pitches outside ``min_pitch``..``max_pitch``
are never drawn (a rest always may be). A melody's log-likelihood is the sum of the
model's own log-probabilities of what was drawn (a rest's velocity is not drawn).

- :meth:`VaeGenerator.generate`: codes drawn from the prior N(0, I) with
  ``request.seed``, one per ``num_outputs``; or, when the request carries
  ``variations_of`` or ``blend`` (the family-neutral way the CLI and the studio ask), the
  variations or the blend below;
- :meth:`VaeGenerator.variations`: a melody's code (the encoder's mean, ``mu``) plus
  noise ``distance x N(0, I)``. ``distance`` 0 decodes the melody's own code; 0.1 to 0.3
  stays close (in a 64-d code the noise's length is ``distance x ~8``, against ~8 for a
  random code's); 1 adds noise as large as the prior itself: loosely related;
- :meth:`VaeGenerator.blend`: spherical interpolation (:func:`slerp`) between two
  melodies' codes in ``steps`` steps, the first and last being the two codes.

Each result's NoteSequence keeps the decoded lengths and velocities (velocity classes ->
MIDI velocities), at ``request.qpm`` (120 without one) in ``request.time_signature``
(4/4 without one); :meth:`GeneratedMelody.from_sequence` keeps it as what is heard and
written, and lays it on the sixteenth-note grid for the piano roll.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from melodygen.core.checkpoint import load_model
from melodygen.core.generation import (
    DEFAULT_QPM,
    MAX_OUTPUTS,
    GeneratedMelody,
    GenerationError,
    GenerationRequest,
    GenerationResult,
    compile_step,
    device_scope,
    melody_sequence,
    sample,
)
from melodygen.families.note_vae.configs import PITCH_CLASSES
from melodygen.families.note_vae.dataset import WINDOW
from melodygen.families.note_vae.network import EMBEDDINGS, HEADS, encoder_model, log_probs
from melodygen.families.note_vae.notes import REST, NoMelodyError, melody_notes, to_sequence
from melodygen.limits import RANGES, check_value

MAX_DISTANCE = RANGES["distance"].high
"""The farthest a variation may be from its melody's code, in prior standard deviations."""


@dataclass
class CodedResult:
    """Melodies with the codes they were decoded from (float32 [melodies, latent])."""

    codes: np.ndarray
    result: GenerationResult


class DecoderStep:
    """The decoder one note at a time, every layer's state carried along.

    The states of all layers travel as one ``[batch, 2 x units...]`` tensor (each layer's
    ``h`` then ``c``, the layout ``decoder_init`` writes), so a note is one compiled call.
    ``place`` is the note's index in the window: a model with a place code reads the
    code's projection for that place beside the code (the others ignore it).
    """

    def __init__(self, model, layers: int) -> None:
        import keras

        self.ops = keras.ops
        self.embeddings = [model.get_layer(name) for name in EMBEDDINGS]
        self.init = model.get_layer("decoder_init")
        self.cells = [model.get_layer(f"decoder_{index}").cell for index in range(layers)]
        self.units = [cell.units for cell in self.cells]
        self.heads = [model.get_layer(name) for name in HEADS]
        names = {layer.name for layer in model.layers}
        self.place_code = model.get_layer("place_code") if "place_code" in names else None
        self._step = compile_step(self._step_function)
        # A method of this object, not the layer itself: JAX keeps one compiled program per
        # function it is given, with the weights it was traced with, so a second step built
        # for the same model after training changed it would reuse the first one's weights.
        self._initial = compile_step(self._initial_function)

    def _initial_function(self, codes):
        return self.init(codes)

    def initial_state(self, codes: np.ndarray):
        return self._initial(self.ops.convert_to_tensor(codes, "float32"))

    def _step_function(self, previous, started, codes, place, states):
        ops = self.ops
        parts = [layer(previous[:, i]) for i, layer in enumerate(self.embeddings)]
        reads = [ops.concatenate(parts, axis=-1) * started, codes]
        if self.place_code is not None:  # this place's columns of the projection only
            layer = self.place_code
            kernel = ops.reshape(layer.dense.kernel, (-1, layer.window, layer.width))
            bias = ops.reshape(layer.dense.bias, (layer.window, layer.width))
            reads.append(ops.matmul(codes, ops.take(kernel, place, axis=1)) + bias[place])
        hidden = ops.concatenate(reads, axis=-1)
        new_states, start = [], 0
        for cell, units in zip(self.cells, self.units, strict=True):
            state = [states[:, start : start + units], states[:, start + units : start + 2 * units]]
            start += 2 * units
            hidden, state = cell(hidden, state, training=False)
            new_states += list(state)
        logits = ops.concatenate([head(hidden) for head in self.heads], axis=-1)
        return logits, ops.concatenate(new_states, axis=1)

    def step(self, previous: np.ndarray, started: np.ndarray, codes, states, place: int):
        ops = self.ops
        logits, states = self._step(
            ops.convert_to_tensor(previous, "int32"),
            ops.convert_to_tensor(started, "float32"),
            codes,
            ops.convert_to_tensor(np.int32(place)),
            states,
        )
        return ops.convert_to_numpy(logits), states


class VaeGenerator:
    """A loaded ``note_vae`` model: random melodies, variations and blends."""

    def __init__(self, checkpoint: str | Path, device: str = "auto") -> None:
        started = time.perf_counter()
        device_scope(device)
        self.device = device
        with device_scope(device):
            self.model, self.info = load_model(checkpoint)
            self.steps = DecoderStep(self.model, len(self.info.hparams.decoder_sizes))
            self.encoder = encoder_model(self.model)
        self.classes = self.info.classes
        self.latent_size = self.info.hparams.latent_size
        self.checkpoint = Path(checkpoint)
        self.description = f"note_vae ({self.info.config})"
        self.load_seconds = time.perf_counter() - started

    def primer_notices(self, request: GenerationRequest) -> list[str]:
        """A note primer is not continued: a note VAE writes from codes."""
        request.validate()
        if any(event >= 0 for event in request.primer.events):
            return [
                "a note VAE writes whole phrases from codes: the primer was not used (make "
                "variations of it instead)"
            ]
        return []

    # What a user asks for ---------------------------------------------------------------

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """``request.num_outputs`` melodies from random codes (seeded by ``request.seed``);
        variations of ``request.variations_of`` at ``request.distance``, or a blend of
        ``request.blend`` in ``request.blend_steps`` steps, when the request asks."""
        request.validate()
        if request.variations_of is not None:
            melody = melody_sequence(request.variations_of)
            return self.variations(melody, request.distance, request).result
        if request.blend is not None:
            first, second = (melody_sequence(melody) for melody in request.blend)
            return self.blend(first, second, request.blend_steps, request).result
        rng = np.random.default_rng(request.seed)
        codes = rng.standard_normal((request.num_outputs, self.latent_size)).astype(np.float32)
        return self.decode(codes, request, rng)

    def variations(
        self, melody, distance: float, request: GenerationRequest | None = None
    ) -> CodedResult:
        """``request.num_outputs`` melodies from codes around ``melody``'s (a NoteSequence):
        its code plus ``distance`` x N(0, I) noise (see the module docstring)."""
        request = request or GenerationRequest()
        request.validate()
        check_distance(distance)
        rng = np.random.default_rng(request.seed)
        window, notice = self.melody_window(melody)
        mean, _ = self.encode_window(window)
        codes = variation_codes(mean, distance, request.num_outputs, rng)
        result = self.decode(codes, request, rng)
        result.notices += [notice] if notice else []
        return CodedResult(codes, result)

    def blend(
        self, first, second, steps: int, request: GenerationRequest | None = None
    ) -> CodedResult:
        """``steps`` melodies on the great circle from ``first``'s code to ``second``'s."""
        request = request or GenerationRequest()
        request.validate()
        check_blend_steps(steps)
        (one, first_notice), (two, second_notice) = map(self.melody_window, (first, second))
        codes = blend_codes(self.encode_window(one)[0], self.encode_window(two)[0], steps)
        result = self.decode(codes, request, np.random.default_rng(request.seed))
        for which, notice in (("first", first_notice), ("second", second_notice)):
            result.notices += [f"the {which} melody: {notice}"] if notice else []
        return CodedResult(codes, result)

    def encode(self, melody) -> tuple[np.ndarray, np.ndarray]:
        """A melody's (NoteSequence) code: the encoder's mean and log-variance, float32
        [latent] each, from its first window's notes (all of them when it is shorter)."""
        return self.encode_window(self.melody_window(melody)[0])

    def melody_window(self, melody) -> tuple[np.ndarray, str | None]:
        """The classes of the notes a melody is encoded from (its first window's), and a
        line saying so when it is longer or shorter than a window, else None."""
        try:
            notes = melody_notes(melody)
        except NoMelodyError as error:
            raise GenerationError(
                f"the melody cannot be encoded ({error}); give one with at least one note"
            ) from None
        except (AttributeError, TypeError):
            raise GenerationError("the melody must be a NoteSequence") from None
        notice = None
        classes = self.classes.encode(notes).astype(np.int32)
        if len(notes) > WINDOW:
            notice = f"its first {WINDOW} of {len(notes)} notes and rests were encoded"
        elif len(notes) < WINDOW and self.info.hparams.note_readout:
            # This encoder reads exactly a window's notes: the melody, played again.
            notice = (
                f"it has {len(notes)} notes and rests, fewer than the {WINDOW} the model "
                "reads at a time: it was encoded repeated to fill them"
            )
            classes = np.resize(classes, (WINDOW, 3))
        elif len(notes) < WINDOW:
            notice = (
                f"it has {len(notes)} notes and rests, fewer than the {WINDOW} the model "
                "reads at a time: its code says less about it"
            )
        return classes[:WINDOW], notice

    def encode_window(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The code of note classes int [notes, 3]: mean and log-variance, float32 [latent]."""
        with device_scope(self.device):
            mean, logvar = self.encoder.predict_on_batch(np.asarray(window, np.int32)[None])
        return np.asarray(mean, np.float32)[0], np.asarray(logvar, np.float32)[0]

    # Decoding ---------------------------------------------------------------------------

    def decode(
        self, codes: np.ndarray, request: GenerationRequest, rng: np.random.Generator | None = None
    ) -> GenerationResult:
        """One melody per code (float [melodies, latent]), sampled as ``request`` says."""
        started = time.perf_counter()
        codes = np.asarray(codes, np.float32)
        if codes.ndim != 2 or codes.shape[1] != self.latent_size or not len(codes):
            raise GenerationError(f"codes must be an array of [melodies, {self.latent_size}]")
        if len(codes) > MAX_OUTPUTS or not np.isfinite(codes).all():
            raise GenerationError(f"codes must be finite, at most {MAX_OUTPUTS} of them")
        rng = rng or np.random.default_rng(request.seed)
        with device_scope(self.device):
            notes, scores = self.write(codes, request, rng)
        qpm = request.qpm or DEFAULT_QPM
        meter = request.time_signature
        shape = (meter.numerator, meter.denominator) if meter else (4, 4)
        melodies = [
            GeneratedMelody.from_sequence(
                to_sequence(self.classes.decode(row), qpm, shape), score, index=index
            )
            for index, (row, score) in enumerate(zip(notes, scores, strict=True))
        ]
        silent = sum(not melody.source.notes for melody in melodies)
        warnings = []
        if silent:
            warnings.append(
                f"{silent} of {len(melodies)} melodies are all rests; lower the temperature "
                "or sample again"
            )
        return GenerationResult(
            melodies,
            time.perf_counter() - started,
            transpose=0,
            notices=self.primer_notices(request),
            warnings=warnings,
        )

    def write(self, codes: np.ndarray, request: GenerationRequest, rng) -> tuple:
        """The notes decoded from ``codes``: class ids int32 [melodies, WINDOW, 3], and each
        melody's log-likelihood (nats). :meth:`decode` makes melodies of them."""
        ops = self.steps.ops
        rows = len(codes)
        durations, velocities = self.classes.sizes
        edges = np.cumsum([PITCH_CLASSES, durations, velocities])[:-1]
        allowed = np.zeros(PITCH_CLASSES, bool)
        allowed[REST] = True
        allowed[request.min_pitch + 1 : request.max_pitch + 2] = True
        temperature = max(request.temperature, 1e-6)
        code_tensor = ops.convert_to_tensor(codes, "float32")
        states = self.steps.initial_state(codes)
        notes = np.zeros((rows, WINDOW, 3), np.int32)
        previous = np.zeros((rows, 3), np.int32)
        started = np.zeros((rows, 1), np.float32)
        scores = np.zeros(rows)
        for position in range(WINDOW):
            logits, states = self.steps.step(previous, started, code_tensor, states, position)
            for column, head in enumerate(np.split(logits.astype(np.float64), edges, axis=1)):
                own = log_probs(head)  # the model's probabilities, for the score
                scaled = head / temperature
                if column == 0:
                    scaled[:, ~allowed] = -np.inf
                drawn = sample(log_probs(scaled), request.top_k, request.top_p, rng)
                if column == 2:
                    drawn = np.where(notes[:, position, 0] == REST, 0, drawn)
                    played = notes[:, position, 0] != REST
                    scores += np.where(played, own[np.arange(rows), drawn], 0.0)
                else:
                    scores += own[np.arange(rows), drawn]
                notes[:, position, column] = drawn
            previous = notes[:, position]
            started[:] = 1.0
        return notes, scores


def greedy_notes(steps: DecoderStep, codes: np.ndarray) -> np.ndarray:
    """The notes ``codes`` (float32 [rows, latent]) decode to with no sampling and no
    teacher forcing: at every position the likeliest pitch, duration and velocity, fed
    back as the next position's input, as generation feeds back what it drew. All rows go
    through the generator's compiled step together, one call per position. A rest's
    velocity class is 0 (the dataset writes rests so). Class ids int32 [rows, WINDOW, 3].

    This is the reconstruction that shows what the code alone carries: teacher-forced
    accuracy reads the true previous note at every step, so a decoder that ignores its
    code can still score well there; here one wrong note changes everything after it."""
    ops = steps.ops
    rows = len(codes)
    edges = np.cumsum([head.units for head in steps.heads])[:-1]  # pitch | duration | velocity
    code_tensor = ops.convert_to_tensor(np.asarray(codes, np.float32), "float32")
    states = steps.initial_state(codes)
    notes = np.zeros((rows, WINDOW, 3), np.int32)
    previous = np.zeros((rows, 3), np.int32)
    started = np.zeros((rows, 1), np.float32)
    for position in range(WINDOW):
        logits, states = steps.step(previous, started, code_tensor, states, position)
        for column, head in enumerate(np.split(logits, edges, axis=1)):
            notes[:, position, column] = head.argmax(axis=1)
        notes[:, position, 2] = np.where(notes[:, position, 0] == REST, 0, notes[:, position, 2])
        previous = notes[:, position]
        started[:] = 1.0
    return notes


# Codes ------------------------------------------------------------------------------------


def check_distance(distance: object) -> None:
    """A variation's distance: a finite number from 0 (the melody's own code) to
    :data:`MAX_DISTANCE`, checked against ``RANGES["distance"]`` as the request is."""
    check_value("distance", distance, GenerationError)


def check_blend_steps(steps: object) -> None:
    """A blend's steps: a whole number from 2 (the two melodies) to ``MAX_OUTPUTS``,
    checked against ``RANGES["blend_steps"]`` as the request is."""
    check_value("blend_steps", steps, GenerationError)


def variation_codes(
    mean: np.ndarray, distance: float, count: int, rng: np.random.Generator
) -> np.ndarray:
    """``count`` codes ``mean + distance x N(0, I)`` (float32 [count, latent])."""
    check_distance(distance)
    noise = rng.standard_normal((count, len(mean)))
    return (np.asarray(mean, np.float64)[None, :] + distance * noise).astype(np.float32)


def slerp(first: np.ndarray, second: np.ndarray, share: float) -> np.ndarray:
    """Spherical interpolation as MusicVAE's: ``share`` 0 is ``first``, 1 is ``second``,
    between them ``sin((1 - share) w) / sin(w) x first + sin(share w) / sin(w) x second``,
    ``w`` the angle between them: codes of equal length stay on their sphere, where the
    prior's codes lie (a straight line would cut through its low-probability middle).
    Nearly parallel codes interpolate linearly."""
    first, second = np.asarray(first, np.float64), np.asarray(second, np.float64)
    norms = np.linalg.norm(first) * np.linalg.norm(second)
    cosine = np.clip(np.dot(first, second) / norms, -1.0, 1.0) if norms > 0 else 1.0
    angle = math.acos(cosine)
    if math.sin(angle) < 1e-6:
        return (1.0 - share) * first + share * second
    return (math.sin((1.0 - share) * angle) * first + math.sin(share * angle) * second) / math.sin(
        angle
    )


def blend_codes(first: np.ndarray, second: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` codes from ``first`` to ``second`` along :func:`slerp` (float32)."""
    check_blend_steps(steps)
    return np.stack([slerp(first, second, share) for share in np.linspace(0, 1, steps)]).astype(
        np.float32
    )
