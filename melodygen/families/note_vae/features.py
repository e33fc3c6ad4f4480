"""How much melodies from random codes sound like real ones: feature histograms' overlap.

Three histograms describe a set of melodies: pitch classes (12 bins, what scale it uses),
intervals between consecutive notes (-12 to +12 semitones, larger leaps in the end bins:
how it moves) and note lengths (ticks, a twelfth of a quarter, up to two whole
notes: its rhythm). Two sets' overlap per feature is the sum over bins of the smaller
share (1: the same distribution, 0: nothing in common), the measure Yang & Lerch
("On the evaluation of generative models in music", 2020) use to compare generated and
real melodies. :func:`prior_overlap` samples a model's prior and compares with the
held-out melodies of its dataset; :func:`overlap_report` puts that beside the overlap of
the dataset's own training melodies with the held-out ones, the reference: real melodies
of the same sources overlap this much, so a model's samples can hardly do better.

From a shell (``melodygen evaluate`` reports the held-out figures, not these: its
family hook sees the held-out windows only, not the training split)::

    python -m melodygen.families.note_vae.features --checkpoint checkpoints/folk_pop_melody_vae \
        --data data/folk_pop_melody_vae [--samples 256] [--seed 0] [--json FILE]
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from melodygen.errors import MelodyGenError, one_line
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


def split_melodies(dataset: str | Path, split: str) -> list[np.ndarray]:
    """Every song of a built dataset's split as raw notes (MIDI pitch or -1, ticks,
    MIDI velocity), as :func:`histograms` reads them."""
    from melodygen.families.note_vae.dataset import NoteDataset

    opened = NoteDataset.open(dataset)
    loaded = opened.load(split)
    return [opened.classes.decode(loaded.song(i)) for i in range(len(loaded.names))]


def prior_melodies(
    checkpoint: str | Path, samples: int = 256, seed: int = 0, temperature: float = 1.0
) -> list[np.ndarray]:
    """``samples`` melodies (raw notes) decoded from codes drawn from the prior N(0, I)
    with ``seed``, sampled at ``temperature`` as ``melodygen generate`` samples."""
    from melodygen.core.generation import MAX_OUTPUTS, GenerationRequest
    from melodygen.families.note_vae.generate import VaeGenerator

    generator = VaeGenerator(checkpoint)
    rng = np.random.default_rng(seed)
    request = GenerationRequest(temperature=temperature)
    made = []
    for start in range(0, samples, MAX_OUTPUTS):
        codes = rng.standard_normal((min(MAX_OUTPUTS, samples - start), generator.latent_size))
        notes, _ = generator.write(codes.astype(np.float32), request, rng)
        made += [generator.classes.decode(row) for row in notes]
    return made


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
    real = split_melodies(dataset, split)
    return overlap(
        histograms(prior_melodies(checkpoint, samples, seed, temperature)), histograms(real)
    )


def overlap_report(
    checkpoint: str | Path,
    dataset: str | Path,
    samples: int = 256,
    seed: int = 0,
    temperature: float = 1.0,
) -> dict:
    """Prior samples beside real melodies, each against the held-out melodies.

    ``prior``: the overlap of ``samples`` melodies from random codes (``seed``) with the
    dataset's held-out songs; ``train``: the overlap of its training songs with the same
    held-out songs, the reference (how alike real melodies of these sources are). Also
    ``samples``, ``seed``, ``temperature``, the songs counted and ``seconds`` taken.
    """
    started = time.perf_counter()
    held_out = histograms(split_melodies(dataset, "eval"))
    train = split_melodies(dataset, "train")
    made = prior_melodies(checkpoint, samples, seed, temperature)
    return {
        "prior": overlap(histograms(made), held_out),
        "train": overlap(histograms(train), held_out),
        "samples": samples,
        "seed": seed,
        "temperature": temperature,
        "train_songs": len(train),
        "checkpoint": str(checkpoint),
        "data": str(dataset),
        "seconds": time.perf_counter() - started,
    }


def format_overlap(report: dict) -> str:
    """:func:`overlap_report` as aligned lines: each feature, prior samples then the
    training melodies' reference."""
    lines = [
        f"overlap with the held-out melodies of {report['data']} (1: the same histogram)",
        f"{'feature':<14}{'prior samples':>14}{'train split':>13}",
    ]
    for name in (*FEATURES, "mean"):
        lines.append(f"{name:<14}{report['prior'][name]:>14.3f}{report['train'][name]:>13.3f}")
    lines.append(
        f"{report['samples']} melodies from random codes (seed {report['seed']}, temperature "
        f"{report['temperature']:g}); {report['train_songs']} training songs; "
        f"{report['seconds']:.1f} s"
    )
    return "\n".join(lines)


MAX_SAMPLES = 10_000
"""The most prior melodies one report draws: a bound against a typo, far past the few
hundred that fill the histograms (256 melodies hold about 7,000 notes)."""


def _samples(text: str) -> int:
    """``--samples``: a whole number from 1 to :data:`MAX_SAMPLES`, for argparse."""
    import argparse

    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_SAMPLES:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_SAMPLES:,}")
    return int(text)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m melodygen.families.note_vae.features``: print :func:`format_overlap`."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=overlap_report.__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a saved note_vae model or run")
    parser.add_argument("--data", required=True, help="the note_vae dataset it was trained on")
    parser.add_argument("--samples", type=_samples, default=256, help="melodies from the prior")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    try:
        report = overlap_report(
            args.checkpoint, args.data, args.samples, args.seed, args.temperature
        )
    except MelodyGenError as error:
        raise SystemExit(f"error: {one_line(error)}") from None
    print(format_overlap(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
