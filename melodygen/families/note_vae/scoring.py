"""Held-out figures and bits per note of a ``note_vae`` model.

A VAE gives no exact likelihood; its negative ELBO (reconstruction NLL with the code
drawn from the encoder, plus the KL of that code from the prior) is an upper bound on a
window's negative log-likelihood, so bits per note here are an upper bound too: a VAE is
never flattered against the families whose figure is exact. Each window's code is drawn
with noise seeded by its notes (:func:`~melodygen.families.note_vae.network.window_noise`),
so a figure repeats on any backend and in any batch.

A song is scored as consecutive windows from its first note; when its length is not a
multiple of the window, a last window ends at its last note and scores the notes no
window before it did, with its KL counted whole. A song shorter than a window is left
out (it holds no window the model reads).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from melodygen.core.batches import BatchShape
from melodygen.families.note_vae.dataset import WINDOW, make_batch
from melodygen.families.note_vae.network import LN2, window_figures
from melodygen.families.note_vae.notes import PITCH, REST

if TYPE_CHECKING:
    from melodygen.families.note_vae.model_file import VaeModelInfo

SCORING_BATCH_SIZE = 64


def evaluate_batches(model, batches: list[tuple], sizes: tuple[int, int]) -> dict[str, float]:
    """The held-out figures over every window of ``batches`` (see ``figure_labels``)."""
    recon = kl = windows = notes = played = 0.0
    right = np.zeros(3)
    counted = np.zeros(3)
    for inputs, targets, _ in batches:
        nll, correct, window_kl = window_figures(model, inputs, targets, sizes)
        real = targets >= 0
        rows = real[:, :, PITCH].any(axis=1)
        recon += nll.sum()
        kl += window_kl[rows].sum()
        windows += rows.sum()
        notes += real[:, :, PITCH].sum()
        played += (real[:, :, PITCH] & (targets[:, :, PITCH] != REST)).sum()
        right += correct.sum(axis=(0, 1))
        counted += real.sum(axis=(0, 1))
    accuracy = right / np.maximum(counted, 1)
    return {
        "nll": float((recon + kl) / max(notes, 1)),
        "bits_per_note": float((recon + kl) / LN2 / max(played, 1)),
        "recon_nll": float(recon / max(notes, 1)),
        "kl": float(kl / max(windows, 1)),
        "pitch_accuracy": float(accuracy[0]),
        "duration_accuracy": float(accuracy[1]),
        "velocity_accuracy": float(accuracy[2]),
        "steps": int(notes),
    }


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
