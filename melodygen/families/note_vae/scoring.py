"""Held-out figures and bits per note of a ``note_vae`` model.

A VAE gives no exact likelihood; its negative ELBO (reconstruction NLL with the code
drawn from the encoder, plus the KL of that code from the prior) is an upper bound on a
window's negative log-likelihood, so bits per note here are an upper bound too: a VAE is
never flattered against the families whose figure is exact. Each window's code is drawn
with noise seeded by its notes (:func:`~melodygen.families.note_vae.network.window_noise`),
so a figure repeats on any backend and in any batch.

Two figures beside the ELBO's: **bits per note without velocity**, the same bound with
the velocity head's NLL left out (the Melody RNNs and ABC models pay nothing for
velocity; the KL is still counted whole, and the decoder still reads the true velocity of
each earlier note, so it is the price of pitches and lengths as near as this model gives
it, not a strict bound on them alone); and **reconstruction from the code alone**: each
held-out window encoded to its code's mean, decoded greedily with every note fed back
(:func:`~melodygen.families.note_vae.generate.greedy_notes`), and compared with the
window position by position. Teacher-forced accuracy reads the true previous note at
every step, so a decoder that ignored its code would still score well; from the code
alone, only what the code carries comes back.

A song is scored as consecutive windows from its first note; when its length is not a
multiple of the window, a last window ends at its last note and scores the notes no
window before it did, with its KL counted whole. A song shorter than a window is left
out (it holds no window the model reads).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from melodygen.core.batches import BatchShape
from melodygen.families.note_vae.dataset import WINDOW, make_batch
from melodygen.families.note_vae.network import (
    LN2,
    packed_figures,
    window_figures,
    with_code_means,
)
from melodygen.families.note_vae.notes import DURATION, PITCH, REST, VELOCITY

if TYPE_CHECKING:
    from melodygen.families.note_vae.model_file import VaeModelInfo

SCORING_BATCH_SIZE = 64
CODE_ROWS = 1024
"""Windows decoded from their codes at once (all of the shipped model's 3,356 held-out
windows in 4 calls per position); a last, smaller group is padded to the same rows, so a
backend that compiles one program per shape compiles one."""


def evaluate_batches(model, batches: list[tuple], info: VaeModelInfo) -> dict[str, float]:
    """The held-out figures over every window of ``batches`` (see ``figure_labels``)."""
    sizes = info.classes.sizes
    recon = velocity = kl = over_free = windows = notes = played = 0.0
    free_nats = info.hparams.free_bits * LN2
    right = np.zeros(3)
    counted = np.zeros(3)
    held: list[np.ndarray] = []
    means: list[np.ndarray] = []
    probe = _probe(model)
    for inputs, targets, _ in batches:
        packed, mean = probe.predict_on_batch(inputs)
        nll, correct, window_kl = packed_figures(packed, targets, sizes)
        real = targets >= 0
        rows = real[:, :, PITCH].any(axis=1)
        recon += nll.sum()
        velocity += nll[..., VELOCITY].sum()
        kl += window_kl[rows].sum()
        over_free += np.maximum(window_kl[rows] - free_nats, 0.0).sum()
        windows += rows.sum()
        notes += real[:, :, PITCH].sum()
        played += (real[:, :, PITCH] & (targets[:, :, PITCH] != REST)).sum()
        right += correct.sum(axis=(0, 1))
        counted += real.sum(axis=(0, 1))
        held.append(np.asarray(inputs["notes"])[rows])
        means.append(np.asarray(mean, np.float32)[rows])
    accuracy = right / np.maximum(counted, 1)
    alone = {part: 0.0 for part in PARTS}
    if held:
        windows_held = np.concatenate(held)
        decoded = decode_codes(model, np.concatenate(means), len(info.hparams.decoder_sizes))
        alone = accuracy_by_part(decoded, windows_held)
    return {
        "nll": float((recon + kl) / max(notes, 1)),
        "bits_per_note": float((recon + kl) / LN2 / max(played, 1)),
        "no_velocity_bits_per_note": float((recon - velocity + kl) / LN2 / max(played, 1)),
        "objective": float((recon + info.hparams.max_beta * over_free) / max(notes, 1)),
        "recon_nll": float(recon / max(notes, 1)),
        "kl": float(kl / max(windows, 1)),
        "pitch_accuracy": float(accuracy[0]),
        "duration_accuracy": float(accuracy[1]),
        "velocity_accuracy": float(accuracy[2]),
        **{f"code_{part}_accuracy": value for part, value in alone.items()},
        "steps": int(notes),
    }


_PROBES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _probe(model):
    """:func:`~melodygen.families.note_vae.network.with_code_means` of ``model``, made once
    per model: training evaluates the same model many times, and each new Keras model
    traces its predict function anew (seconds, and TensorFlow warns of retracing). The
    probe shares the model's weights, so it reads them as they are at each call."""
    probe = _PROBES.get(model)
    if probe is None:
        probe = _PROBES[model] = with_code_means(model)
    return probe


_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _decoder_step(model, layers: int):
    """The generator's compiled decoder step for ``model`` as its weights are now.

    On TensorFlow one per model: the compiled step reads the variables at every call, and
    building one per evaluation would trace it anew each time (a second or so, and
    TensorFlow warns of retracing). JAX's compiled step keeps the weights it was traced
    with, so there it is built at every call (training changes the weights between
    evaluations)."""
    import keras

    from melodygen.families.note_vae.generate import DecoderStep

    if keras.backend.backend() != "tensorflow":
        return DecoderStep(model, layers)
    step = _STEPS.get(model)
    if step is None or len(step.cells) != layers:
        step = _STEPS[model] = DecoderStep(model, layers)
    return step


# Reconstruction from the code alone ---------------------------------------------------------

PARTS = ("pitch", "duration", "velocity", "pitch_duration", "note")


def decode_codes(model, codes: np.ndarray, layers: int) -> np.ndarray:
    """The windows ``codes`` (float32 [windows, latent]) decode to greedily, from the code
    alone (:func:`~melodygen.families.note_vae.generate.greedy_notes`): int32 [windows,
    WINDOW, 3]. ``layers``: the decoder's LSTM layers.

    Codes go through the compiled step in groups of :data:`CODE_ROWS`.
    """
    from melodygen.families.note_vae.generate import greedy_notes

    codes = np.asarray(codes, np.float32)
    count = len(codes)
    if not count:
        return np.zeros((0, WINDOW, 3), np.int32)
    rows = min(CODE_ROWS, -(-count // 64) * 64)
    steps = _decoder_step(model, layers)
    decoded = []
    for start in range(0, count, rows):
        group = np.zeros((rows, codes.shape[1]), np.float32)
        chosen = codes[start : start + rows]
        group[: len(chosen)] = chosen
        decoded.append(greedy_notes(steps, group)[: len(chosen)])
    return np.concatenate(decoded)


def reconstruct(model, windows: np.ndarray, layers: int) -> np.ndarray:
    """Each window (class ids int [windows, WINDOW, 3]) encoded to its code's mean and
    decoded from that code alone (:func:`decode_codes`): int32 [windows, WINDOW, 3]."""
    from melodygen.families.note_vae.network import encoder_model

    windows = np.asarray(windows, np.int32)
    encoder = encoder_model(model)
    means = [
        np.asarray(encoder.predict_on_batch(windows[start : start + CODE_ROWS])[0], np.float32)
        for start in range(0, len(windows), CODE_ROWS)
    ]
    codes = np.concatenate(means) if means else np.zeros((0, 1), np.float32)
    return decode_codes(model, codes, layers)


def accuracy_by_part(decoded: np.ndarray, windows: np.ndarray) -> dict[str, float]:
    """Shares of the notes of ``windows`` that ``decoded`` gives back at the same position
    (class ids, both [windows, WINDOW, 3]; a note one place late counts as wrong, as a
    listener hears it): ``pitch`` (a rest is a pitch class), ``duration``, ``velocity``
    (over the windows' played notes: a rest has none), ``pitch_duration``, pitch and
    duration both right (the melody as written, dynamics aside), and ``note``, all three
    right (for a rest, pitch and duration). Each 0 to 1; 0 without notes."""
    decoded, windows = np.asarray(decoded), np.asarray(windows)
    same = decoded == windows
    played = windows[..., PITCH] != REST
    velocity = same[..., VELOCITY] | ~played
    written = same[..., PITCH] & same[..., DURATION]
    note = written & velocity
    notes = max(windows.shape[0] * windows.shape[1], 1)
    return {
        "pitch": float(same[..., PITCH].sum() / notes),
        "duration": float(same[..., DURATION].sum() / notes),
        "velocity": float((same[..., VELOCITY] & played).sum() / max(played.sum(), 1)),
        "pitch_duration": float(written.sum() / notes),
        "note": float(note.sum() / notes),
    }


def code_alone_accuracy(model, windows: np.ndarray, layers: int) -> dict[str, float]:
    """:func:`accuracy_by_part` of ``windows`` reconstructed from their codes alone."""
    return accuracy_by_part(reconstruct(model, windows, layers), windows)


def song_windows(length: int) -> list[tuple[int, int]]:
    """(start, first note scored within it) of each window a song of ``length`` notes is
    scored by (see the module docstring); none when it is shorter than a window."""
    if length < WINDOW:
        return []
    windows = [(start, 0) for start in range(0, length - WINDOW + 1, WINDOW)]
    tail = length % WINDOW
    if tail:
        windows.append((length - WINDOW, WINDOW - tail))
    return windows


def song_bits(model, songs: Sequence[np.ndarray], info: VaeModelInfo) -> list[float | None]:
    """Each song's (class array) negative ELBO in bits, None for a song too short."""
    jobs = [
        (index, *window) for index, notes in enumerate(songs) for window in song_windows(len(notes))
    ]
    totals = np.zeros(len(songs))
    rows = BatchShape.for_backend(SCORING_BATCH_SIZE).rows
    for begin in range(0, len(jobs), SCORING_BATCH_SIZE):
        chosen = jobs[begin : begin + SCORING_BATCH_SIZE]
        windows = np.stack([songs[i][start : start + WINDOW] for i, start, _ in chosen])
        inputs, targets, _ = make_batch(windows, info.hparams.latent_size, rows)
        nll, _, kl = window_figures(model, inputs, targets, info.classes.sizes)
        for row, (index, _, first) in enumerate(chosen):
            totals[index] += nll[row, first:].sum() + kl[row]
    scored = {index for index, *_ in jobs}
    return [float(totals[i] / LN2) if i in scored else None for i in range(len(songs))]
