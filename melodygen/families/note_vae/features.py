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

Blends (:func:`blend_report`): pairs of held-out windows from different songs, each pair's
codes (the encoder's means) blended in ``steps`` steps along the great circle
(:func:`~melodygen.families.note_vae.generate.blend_codes`) and every step decoded
greedily. Melodies are compared by :func:`note_distance`: the fewest notes inserted,
deleted or changed to turn one's pitch sequence into the other's, and the same for their
rhythms (note lengths), averaged, over the window's notes (0: the same, 1: nothing in
common; a rest is a note; Levenshtein's distance, as ``rapidfuzz`` computes it). Pitch
and rhythm are counted apart because that is how a code blends them: a middle step often
sings one melody's pitches in the other's rhythm, which is between the two, yet shares
not one whole note (pitch and length) with either. The stricter measure
(:func:`joint_note_distance`, a note kept only with both) is reported beside it. A blend
is smooth when every step between the ends is closer to its nearer end than the two ends
are to each other: it stays in the ends' company rather than wandering off into a third
melody.

From a shell, both reports (``melodygen evaluate`` reports the held-out figures, not
these: its family hook sees the held-out windows only, not the training split)::

    melodygen latent --checkpoint checkpoints/folk_note_vae --data data/folk_note_vae \
        [--samples 256] [--pairs 64] [--blend-steps 8] [--seed 0] [--json FILE]
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from melodygen.errors import MelodyGenError
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
    checkpoint: str | Path,
    samples: int = 256,
    seed: int = 0,
    temperature: float = 1.0,
    generator=None,
) -> list[np.ndarray]:
    """``samples`` melodies (raw notes) decoded from codes drawn from the prior N(0, I)
    with ``seed``, sampled at ``temperature`` as ``melodygen generate`` samples.
    ``generator``: the model already loaded (a ``VaeGenerator`` of ``checkpoint``), so a
    report that also blends loads it once; else it is loaded here."""
    from melodygen.core.generation import MAX_OUTPUTS, GenerationRequest
    from melodygen.families.note_vae.generate import VaeGenerator

    generator = generator or VaeGenerator(checkpoint)
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
    generator=None,
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
    made = prior_melodies(checkpoint, samples, seed, temperature, generator)
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


BLEND_PAIRS = 64
BLEND_STEPS = 8


def note_distance(first: np.ndarray, second: np.ndarray) -> float:
    """How far apart two melodies are (class ids or raw notes [notes, 3]), 0 (the same) to
    1 (nothing in common): the normalised edit distance between their pitch sequences
    (a rest is a note) and between their rhythms (note lengths), averaged; velocity is not
    compared. A note that keeps its pitch but not its length counts half changed."""
    from rapidfuzz.distance import Levenshtein

    first, second = np.asarray(first), np.asarray(second)
    return float(
        np.mean(
            [
                Levenshtein.normalized_distance(first[:, part].tolist(), second[:, part].tolist())
                for part in (PITCH, DURATION)
            ]
        )
    )


def joint_note_distance(first: np.ndarray, second: np.ndarray) -> float:
    """:func:`note_distance`'s stricter sibling: a note is kept only with both its pitch
    and its length (the edit distance over (pitch, length) pairs). 0 to 1."""
    from rapidfuzz.distance import Levenshtein

    return float(
        Levenshtein.normalized_distance(
            [tuple(note) for note in np.asarray(first)[:, : DURATION + 1].tolist()],
            [tuple(note) for note in np.asarray(second)[:, : DURATION + 1].tolist()],
        )
    )


def from_both_ends(blends: np.ndarray, distance) -> tuple[np.ndarray, np.ndarray]:
    """Each step's ``distance`` from its blend's first and last melody: float
    [blends, steps] twice, for decoded blends [blends, steps, notes, 3]."""
    to_first = np.array([[distance(melody, blend[0]) for melody in blend] for blend in blends])
    to_last = np.array([[distance(melody, blend[-1]) for melody in blend] for blend in blends])
    return to_first, to_last


def closeness(to_first: np.ndarray, to_last: np.ndarray) -> dict:
    """From :func:`from_both_ends`: ``ends`` (mean distance between a blend's ends),
    ``nearer`` (an inner step's mean distance to its nearer end), ``closer_share`` (inner
    steps closer to their nearer end than the ends are apart) and ``smooth_share`` (blends
    whose every inner step is)."""
    ends = to_first[:, -1]
    nearer = np.minimum(to_first, to_last)[:, 1:-1]
    closer = nearer < ends[:, None]
    return {
        "ends": float(ends.mean()),
        "nearer": float(nearer.mean()) if nearer.size else 0.0,
        "closer_share": float(closer.mean()) if closer.size else 1.0,
        "smooth_share": float(closer.all(axis=1).mean()),
    }


def held_out_windows(dataset, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` windows (class ids int32 [count, WINDOW, 3]) of the held-out split, one
    per song from ``count`` different songs chosen at random (fewer when it has fewer)."""
    from melodygen.families.note_vae.dataset import WINDOW, window_starts

    loaded = dataset.load("eval")
    songs = [i for i in range(len(loaded.names)) if len(loaded.song(i)) >= WINDOW]
    chosen = rng.permutation(songs)[:count]
    windows = []
    for index in chosen:
        notes = loaded.song(int(index))
        start = int(rng.choice(window_starts(len(notes))))
        windows.append(notes[start : start + WINDOW])
    return np.asarray(windows, np.int32).reshape(-1, WINDOW, 3)


def blend_report(
    checkpoint: str | Path,
    dataset: str | Path,
    pairs: int = BLEND_PAIRS,
    steps: int = BLEND_STEPS,
    seed: int = 0,
    generator=None,
) -> dict:
    """Blends of ``pairs`` pairs of held-out windows in ``steps`` steps, measured by
    :func:`note_distance` (see the module docstring). Returns ``pairs``, ``steps``,
    ``seed``; :func:`closeness`' four figures; ``to_first`` and ``to_last``: the mean
    distance of each step from each end; ``ends_kept``: the mean distance of a decoded end
    from the window it encodes (its reconstruction's error); ``joint``: :func:`closeness`
    by :func:`joint_note_distance`."""
    from melodygen.families.note_vae.dataset import NoteDataset
    from melodygen.families.note_vae.generate import (
        VaeGenerator,
        blend_codes,
        check_blend_steps,
        greedy_notes,
    )

    check_blend_steps(steps)
    if not 1 <= pairs <= MAX_SAMPLES:
        raise MelodyGenError(f"pairs must be a whole number from 1 to {MAX_SAMPLES:,}")
    started = time.perf_counter()
    opened = NoteDataset.open(dataset)
    generator = generator or VaeGenerator(checkpoint)
    if opened.classes != generator.classes:
        raise MelodyGenError(
            f"{checkpoint} reads other note classes than {dataset}; give the dataset it "
            "was trained on"
        )
    windows = held_out_windows(opened, 2 * pairs, np.random.default_rng(seed))
    pairs = len(windows) // 2
    if not pairs:
        raise MelodyGenError(f"{dataset} holds fewer than two held-out songs to blend")
    means = np.concatenate(
        [
            np.asarray(generator.encoder.predict_on_batch(windows[i : i + 256])[0], np.float32)
            for i in range(0, len(windows), 256)
        ]
    )
    codes = np.concatenate(
        [blend_codes(means[2 * i], means[2 * i + 1], steps) for i in range(pairs)]
    )
    decoded = np.concatenate(
        [greedy_notes(generator.steps, codes[i : i + 512]) for i in range(0, len(codes), 512)]
    ).reshape(pairs, steps, -1, 3)
    to_first, to_last = from_both_ends(decoded, note_distance)
    kept = [
        note_distance(decoded[pair, end], windows[2 * pair + which])
        for pair in range(pairs)
        for which, end in enumerate((0, -1))
    ]
    return {
        "pairs": pairs,
        "steps": steps,
        "seed": seed,
        **closeness(to_first, to_last),
        "to_first": [float(value) for value in to_first.mean(axis=0)],
        "to_last": [float(value) for value in to_last.mean(axis=0)],
        "ends_kept": float(np.mean(kept)),
        "joint": closeness(*from_both_ends(decoded, joint_note_distance)),
        "checkpoint": str(checkpoint),
        "data": str(dataset),
        "seconds": time.perf_counter() - started,
    }


def latent_report(
    checkpoint: str | Path,
    dataset: str | Path,
    samples: int = 256,
    pairs: int = BLEND_PAIRS,
    steps: int = BLEND_STEPS,
    seed: int = 0,
    temperature: float = 1.0,
) -> dict:
    """What the code space gives: ``overlap`` (:func:`overlap_report`) and ``blends``
    (:func:`blend_report`), from one loaded model."""
    from melodygen.families.note_vae.generate import VaeGenerator

    generator = VaeGenerator(checkpoint)
    return {
        "overlap": overlap_report(checkpoint, dataset, samples, seed, temperature, generator),
        "blends": blend_report(checkpoint, dataset, pairs, steps, seed, generator),
    }


def format_blends(report: dict) -> str:
    """:func:`blend_report` as lines: the distances and each step's from both ends."""
    lines = [
        f"blends of {report['pairs']} pairs of held-out windows in {report['steps']} steps "
        "(note edit distance, pitches and rhythm apart: 0 the same melody, 1 nothing in "
        "common)",
        f"{'ends apart':<32}{report['ends']:.3f}",
        f"{'inner step to its nearer end':<32}{report['nearer']:.3f}",
        f"{'inner steps closer than the ends':<32}{report['closer_share']:.1%} "
        f"(every step of a blend: {report['smooth_share']:.1%} of blends)",
        f"{'decoded end to its melody':<32}{report['ends_kept']:.3f}",
        f"{'a note kept only whole':<32}ends apart {report['joint']['ends']:.3f}, inner "
        f"steps closer {report['joint']['closer_share']:.1%} (every step: "
        f"{report['joint']['smooth_share']:.1%})",
        "step      " + " ".join(f"{step + 1:>5}" for step in range(report["steps"])),
        "to first  " + " ".join(f"{value:5.2f}" for value in report["to_first"]),
        "to last   " + " ".join(f"{value:5.2f}" for value in report["to_last"]),
    ]
    return "\n".join(lines)


def format_latent(report: dict) -> str:
    """:func:`latent_report` as lines."""
    return format_overlap(report["overlap"]) + "\n\n" + format_blends(report["blends"])


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
