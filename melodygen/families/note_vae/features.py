"""How much melodies from random codes sound like real ones: feature histograms' overlap.

Three histograms describe a set of melodies: pitch classes (12 bins, what scale it uses),
intervals between consecutive notes (-12 to +12 semitones, larger leaps in the end bins:
how it moves) and note lengths (ticks, a twelfth of a quarter, up to two whole
notes: its rhythm). Two sets' overlap per feature is the sum over bins of the smaller
share (1: the same distribution, 0: nothing in common), the measure Yang & Lerch
("On the evaluation of generative models in music", 2020) use to compare generated and
real melodies. :func:`prior_overlap` samples a model's prior and compares with the
held-out melodies of its dataset.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from melodygen.families.note_vae.notes import DURATION, PITCH, TICKS_PER_QUARTER

FEATURES = ("pitch_class", "interval", "duration")
MAX_INTERVAL = 12
MAX_STEPS = 8 * TICKS_PER_QUARTER


def histograms(melodies: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
    """Each feature's histogram (shares summing to 1, or all zero) over raw note arrays
    (:func:`~melodygen.families.note_vae.notes.melody_notes`' form; rests are skipped)."""
    counts = {
        "pitch_class": np.zeros(12),
        "interval": np.zeros(2 * MAX_INTERVAL + 1),
        "duration": np.zeros(MAX_STEPS + 1),
    }
    for notes in melodies:
        played = np.asarray(notes)[np.asarray(notes)[:, PITCH] >= 0]
        pitches = played[:, PITCH]
        np.add.at(counts["pitch_class"], pitches % 12, 1)
        leaps = np.clip(np.diff(pitches), -MAX_INTERVAL, MAX_INTERVAL) + MAX_INTERVAL
        np.add.at(counts["interval"], leaps, 1)
        np.add.at(counts["duration"], np.minimum(played[:, DURATION], MAX_STEPS), 1)
    return {name: hist / max(hist.sum(), 1) for name, hist in counts.items()}


def overlap(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> dict[str, float]:
    """Per feature, the histograms' overlap (0 to 1), and their ``mean``."""
    values = {name: float(np.minimum(first[name], second[name]).sum()) for name in FEATURES}
    values["mean"] = float(np.mean([values[name] for name in FEATURES]))
    return values


def prior_overlap(
    checkpoint: str | Path,
    dataset: str | Path,
    samples: int = 256,
    seed: int = 0,
    temperature: float = 1.0,
    split: str = "eval",
) -> dict[str, float]:
    """The overlap of ``samples`` melodies from random codes of the model at ``checkpoint``
    with the melodies of ``dataset``'s ``split`` (its held-out songs by default)."""
    from melodygen.core.generation import MAX_OUTPUTS, GenerationRequest
    from melodygen.families.note_vae.dataset import NoteDataset
    from melodygen.families.note_vae.generate import VaeGenerator

    opened = NoteDataset.open(dataset)
    loaded = opened.load(split)
    real = [opened.classes.decode(loaded.song(i)) for i in range(len(loaded.names))]
    generator = VaeGenerator(checkpoint)
    rng = np.random.default_rng(seed)
    request = GenerationRequest(temperature=temperature)
    made = []
    for start in range(0, samples, MAX_OUTPUTS):
        codes = rng.standard_normal((min(MAX_OUTPUTS, samples - start), generator.latent_size))
        notes, _ = generator.write(codes.astype(np.float32), request, rng)
        made += [generator.classes.decode(row) for row in notes]
    return overlap(histograms(made), histograms(real))
