"""Music files -> a ``note_vae`` dataset: every song's notes as classes, and its windows.

A dataset is a folder holding ``dataset.json`` (family, configuration, note classes, the
build summary) and, per split, ``<split>.npz``:

- ``notes``   int16 [notes, 3]: every song's notes back to back as (pitch class,
  duration class, velocity class) (:mod:`~melodygen.families.note_vae.notes`);
- ``offsets`` int64 [songs + 1]: where each song's notes start;
- ``starts``  int64 [windows]: where each training window starts in ``notes``;
- ``names``: the song each piece of notes is (a transposed copy shares its song's name).

Windows are :data:`WINDOW` = 32 notes (rests count as notes here), taken every
:data:`HOP` = 16 notes, plus one ending at the song's last note when the hop leaves a
tail: 32 notes are a phrase of 4 to 8 bars in the folk tunes (about 8 notes a bar in a
reel, 6 in a jig) and 2 to 4 bars of a pop vocal line, the span Magenta's melody VAEs
encode well; the hop lets each note be read in two contexts. A song shorter than a window
is dropped and counted (a Nottingham tune has about 190 notes).

Files are read in worker processes (:func:`melodygen.io.music.load_note_sequences`): each
returns only its songs' raw notes (a few KB of int32), so the NoteSequences never leave
the worker and the build's memory grows with the notes kept, not the files read. The
split is by song (:func:`melodygen.core.split.song_is_eval`, the name every family gives
a song); classes are fitted on the training songs only. ``transpositions`` (semitones)
add transposed copies of the training songs.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from melodygen.core.batches import BatchShape
from melodygen.core.split import SPLITS, song_ids, song_is_eval
from melodygen.errors import DatasetError, MelodyGenError, one_line
from melodygen.families.note_vae.configs import DEFAULT_CONFIG, WINDOW, get_config
from melodygen.families.note_vae.notes import (
    DURATION,
    MAX_DURATION_STEPS,
    PITCH,
    REST,
    TICKS_PER_QUARTER,
    VELOCITY,
    NoteClasses,
    quarters,
)

FAMILY = "note_vae"
FORMAT_VERSION = 1
METADATA_FILE = "dataset.json"
HOP = 16
MAX_DATASET_JSON_BYTES = 10_000_000
MAX_CLASSES = 64
"""The most duration or velocity classes a dataset or model file may hold."""


@dataclass
class NoteSplit:
    """One split in memory (see the module docstring)."""

    notes: np.ndarray
    offsets: np.ndarray
    starts: np.ndarray
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def lengths(self) -> np.ndarray:
        """Each window's notes (all :data:`WINDOW`)."""
        return np.full(len(self.starts), WINDOW, np.int64)

    def song(self, index: int) -> np.ndarray:
        return self.notes[self.offsets[index] : self.offsets[index + 1]]

    def windows(self, indices: np.ndarray) -> np.ndarray:
        """int32 [len(indices), WINDOW, 3]: the classes of the chosen windows."""
        rows = self.starts[np.asarray(indices)][:, None] + np.arange(WINDOW)[None, :]
        return self.notes[rows].astype(np.int32)


@dataclass
class NoteDataset:
    """A built ``note_vae`` dataset (see the module docstring)."""

    path: Path
    config: str
    classes: NoteClasses
    metadata: dict

    @classmethod
    def open(cls, path: str | Path) -> NoteDataset:
        path = Path(path)
        meta = path / METADATA_FILE
        if not meta.is_file():
            raise DatasetError(
                f"{path} is not a MelodyGen dataset (no {METADATA_FILE}); "
                "build one with `melodygen dataset build --family note_vae`"
            )
        try:
            if meta.stat().st_size > MAX_DATASET_JSON_BYTES:
                raise ValueError("far too big")
            metadata = json.loads(meta.read_text())
            if metadata.get("family") != FAMILY:
                raise ValueError(f"it is not a {FAMILY} dataset")
            get_config(metadata["config"])
            classes = classes_from(metadata["classes"])
            if metadata.get("window") != WINDOW or metadata.get("ticks_per_quarter") != (
                TICKS_PER_QUARTER
            ):
                raise ValueError("it was built with other windows or another grid")
        except (OSError, ValueError, KeyError, TypeError, RecursionError, MelodyGenError) as error:
            raise DatasetError(
                f"{meta} is damaged ({one_line(error)}); rebuild the dataset"
            ) from None
        return cls(path, metadata["config"], classes, metadata)

    def load(self, split: str) -> NoteSplit:
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        file = self.path / f"{split}.npz"
        try:
            with np.load(file, allow_pickle=False) as data:
                loaded = NoteSplit(
                    data["notes"], data["offsets"], data["starts"], [str(n) for n in data["names"]]
                )
        except FileNotFoundError:
            raise DatasetError(
                f"dataset {self.path} has no {split} split ({file.name} is missing); "
                "rebuild the dataset"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DatasetError(
                f"{file} is damaged ({one_line(error)}); rebuild the dataset"
            ) from None
        durations, velocities = self.classes.sizes
        notes, offsets, starts = loaded.notes, loaded.offsets, loaded.starts
        if (
            notes.ndim != 2
            or notes.shape[1:] != (3,)
            or len(offsets) != len(loaded.names) + 1
            or (len(offsets) and (offsets[0] != 0 or offsets[-1] != len(notes)))
            or (len(starts) and (starts.min() < 0 or starts.max() > len(notes) - WINDOW))
            or (
                len(notes)
                and (
                    notes.min() < 0
                    or notes[:, PITCH].max() > 128
                    or notes[:, DURATION].max() >= durations
                    or notes[:, VELOCITY].max() >= velocities
                )
            )
        ):
            raise DatasetError(f"{file} does not match {METADATA_FILE}; rebuild the dataset")
        return loaded


def classes_from(values: object) -> NoteClasses:
    """The classes a ``dataset.json`` holds, checked (ValueError when they are not)."""
    if not isinstance(values, dict):
        raise ValueError("classes is not an object")
    durations, velocities = values.get("durations"), values.get("velocities")
    for name, items, low, high in (
        ("durations", durations, 1, MAX_DURATION_STEPS),
        ("velocities", velocities, 1, 127),
    ):
        if (
            not isinstance(items, list)
            or not 1 <= len(items) <= MAX_CLASSES
            or not all(type(v) is int and low <= v <= high for v in items)
            or sorted(set(items)) != items
        ):
            raise ValueError(f"{name} are not ascending integers from {low} to {high}")
    return NoteClasses(tuple(durations), tuple(velocities))


# Building -----------------------------------------------------------------------------------


@dataclass
class NoteBuildSummary:
    """What a build read, kept and dropped; printed and saved in ``dataset.json``."""

    files_read: int = 0
    files_failed: list[tuple[str, str]] = field(default_factory=list)
    songs: dict[str, int] = field(default_factory=lambda: {"train": 0, "eval": 0})
    notes: dict[str, int] = field(default_factory=lambda: {"train": 0, "eval": 0})
    windows: dict[str, int] = field(default_factory=lambda: {"train": 0, "eval": 0})
    dropped: dict[str, int] = field(default_factory=dict)
    durations: list[int] = field(default_factory=list)
    velocities: list[int] = field(default_factory=list)
    durations_exact: float = 0.0
    like: str = ""
    """Where the classes came from when not fitted here: the model a fine-tune starts from."""
    mapped: dict[str, int] = field(default_factory=dict)
    """With ``like``: notes (both splits) whose duration or velocity that model's
    classes lack, read as the nearest class."""
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "files_read": self.files_read,
            "files_failed": [{"file": f, "reason": r} for f, r in self.files_failed],
            "songs": self.songs,
            "notes": self.notes,
            "windows": self.windows,
            "dropped": self.dropped,
            "durations": self.durations,
            "velocities": self.velocities,
            "durations_exact": round(self.durations_exact, 4),
            "like": self.like,
            "mapped": self.mapped,
            "seconds": round(self.seconds, 2),
        }

    def format(self) -> str:
        lines = [
            f"files read:      {self.files_read}",
            f"files failed:    {len(self.files_failed)}",
        ]
        lines += [f"  {name}: {reason}" for name, reason in self.files_failed[:20]]
        for label, values in (("songs", self.songs), ("notes", self.notes)):
            lines.append(
                f"{label + ':':<17}{sum(values.values())} "
                f"(train {values['train']}, eval {values['eval']})"
            )
        lines.append(
            f"windows:         {sum(self.windows.values())} of {WINDOW} notes every {HOP} "
            f"(train {self.windows['train']}, eval {self.windows['eval']})"
        )
        lines.append(
            f"durations:       {len(self.durations)} classes, in quarter notes "
            f"{', '.join(quarters(d) for d in self.durations)} "
            f"({self.durations_exact:.1%} of training notes and rests exactly)"
        )
        lines.append(
            f"velocities:      {len(self.velocities)} classes: "
            f"{', '.join(str(v) for v in self.velocities)}"
        )
        if self.like:
            lines.append(self.mapping_line())
        if self.dropped:
            lines.append("songs dropped, by reason:")
            width = max(len(reason) for reason in self.dropped)
            lines += [f"  {r:<{width}}  {n}" for r, n in sorted(self.dropped.items())]
        seconds = max(self.seconds, 1e-9)
        songs = sum(self.songs.values())
        lines.append(
            f"time:            {self.seconds:.1f} s ({self.files_read / seconds:.0f} files/s, "
            f"{songs / seconds:.0f} songs/s)"
        )
        return "\n".join(lines)

    def mapping_line(self) -> str:
        """One line: whose classes the notes were read with, and how many it lacked."""
        durations, velocities = self.mapped.get("duration", 0), self.mapped.get("velocity", 0)
        if not durations and not velocities:
            return f"classes:         the base model's ({self.like}), which has every one here"
        return (
            f"classes:         the base model's ({self.like}): of {sum(self.notes.values())} "
            f"notes and rests, {durations} had a duration and {velocities} a velocity it "
            "lacks, read as the nearest class"
        )


@dataclass(frozen=True)
class _Job:
    eval_ratio: float
    transpositions: tuple[int, ...]


def read_file(job: _Job, path: Path, root: Path | None) -> dict:
    """One file's songs as raw notes, with their split (runs in a worker process)."""
    from melodygen.families.note_vae.notes import NoMelodyError, melody_notes
    from melodygen.io.music import load_note_sequences, transposed_sequences
    from melodygen.limits import DATASET_MIDI

    result = {"file": str(path), "error": None, "dropped": Counter(), "songs": []}
    try:
        sequences = load_note_sequences(path, DATASET_MIDI)
        for song, sequence in zip(song_ids(path, root, sequences), sequences, strict=True):
            split = "eval" if song_is_eval(song, job.eval_ratio) else "train"
            variants = [sequence]
            if split == "train" and job.transpositions:
                variants = transposed_sequences(sequence, job.transpositions)
            for variant in variants:
                try:
                    notes = melody_notes(variant)
                except NoMelodyError as error:
                    result["dropped"][f"no melody: {one_line(error, 60)}"] += 1
                    continue
                result["songs"].append((song, split, notes))
    except MelodyGenError as error:
        result["error"] = one_line(error)
    except (ValueError, IndexError, KeyError) as error:  # note_seq after a clean parse
        result["error"] = f"could not read its melody: {type(error).__name__}: {one_line(error)}"
    return result


def _read(task: tuple) -> dict:
    return read_file(*task)


def read_files(tasks: list[tuple], workers: int, progress: bool) -> Iterator[dict]:
    """Each task's result as workers finish them (a pool when ``workers`` > 1)."""
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), unit="file", desc="reading", disable=not progress or None)
    try:
        if workers <= 1:
            for task in tasks:
                yield _read(task)
                bar.update()
            return
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(workers) as pool:
            for result in pool.imap_unordered(_read, tasks, chunksize=4):
                yield result
                bar.update()
    finally:
        bar.close()


def build_dataset(
    inputs: Sequence[str | Path],
    output: str | Path,
    config: str | None = None,
    eval_ratio: float = 0.1,
    transpositions: Sequence[int] = (),
    workers: int | None = None,
    progress: bool = True,
    classes: NoteClasses | None = None,
    like: str = "the model",
) -> NoteBuildSummary:
    """Read the MIDI and ABC files under ``inputs`` and write a dataset to ``output`` (see
    the module docstring); the summary says what was kept and dropped. ``classes``: a
    model's classes to read the notes with (to fine-tune it, whose network has exactly
    these), not ones fitted to these songs; ``like`` names that model in the summary."""
    from melodygen.io.music import find_music_files

    started = time.perf_counter()
    config = config or DEFAULT_CONFIG
    get_config(config)
    if not 0.0 <= eval_ratio < 1.0:
        raise DatasetError(f"eval_ratio must be from 0 to below 1, not {eval_ratio}")
    paths = [Path(item).expanduser() for item in inputs]
    files = find_music_files(paths)
    root = paths[0] if len(paths) == 1 and paths[0].is_dir() else None
    job = _Job(eval_ratio, tuple(sorted({int(t) for t in transpositions})))
    workers = max(1, min(workers or os.cpu_count() or 1, len(files)))
    summary = NoteBuildSummary(files_read=len(files))
    dropped: Counter = Counter()
    songs: dict[str, list[tuple[str, np.ndarray]]] = {"train": [], "eval": []}
    results = read_files([(job, path, root) for path in files], workers, progress)
    for result in sorted(results, key=lambda r: r["file"]):  # worker order changes nothing
        dropped.update(result["dropped"])
        if result["error"]:
            summary.files_failed.append((result["file"], result["error"]))
        for song, split, notes in result["songs"]:
            if len(notes) < WINDOW:
                dropped[f"shorter than {WINDOW} notes"] += 1
                continue
            songs[split].append((song, notes))
    if not songs["train"]:
        first = f"; the first failure: {summary.files_failed[0][1]}" if summary.files_failed else ""
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(dropped.items())) or "none read"
        raise DatasetError(
            f"no song of at least {WINDOW} notes for training in {len(files)} file(s) "
            f"({reasons}){first}"
        )
    if classes is None:
        classes = NoteClasses.fit(notes for _, notes in songs["train"])
    else:
        summary.like = like
        every = [notes for split in SPLITS for _, notes in songs[split]]
        summary.mapped = unmatched(np.concatenate(every), classes)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        write_split(output / f"{split}.npz", songs[split], classes)
        summary.songs[split] = len({song for song, _ in songs[split]})
        summary.notes[split] = sum(len(notes) for _, notes in songs[split])
        summary.windows[split] = sum(len(window_starts(len(n))) for _, n in songs[split])
    train_lengths = np.concatenate([notes[:, 1] for _, notes in songs["train"]])
    summary.durations, summary.velocities = list(classes.durations), list(classes.velocities)
    summary.durations_exact = float(np.isin(train_lengths, classes.durations).mean())
    summary.dropped = dict(dropped)
    summary.seconds = time.perf_counter() - started
    metadata = {
        "format": "melodygen-dataset",
        "format_version": FORMAT_VERSION,
        "family": FAMILY,
        "config": config,
        "classes": {"durations": list(classes.durations), "velocities": list(classes.velocities)},
        "ticks_per_quarter": TICKS_PER_QUARTER,
        "window": WINDOW,
        "hop": HOP,
        "eval_ratio": eval_ratio,
        "transpositions": list(job.transpositions),
        "inputs": [str(path) for path in paths],
        "summary": summary.to_dict(),
    }
    (output / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return summary


def unmatched(notes: np.ndarray, classes: NoteClasses) -> dict[str, int]:
    """How many raw ``notes`` have a duration, and how many played ones a velocity, that
    ``classes`` lack (:meth:`NoteClasses.encode` reads them as the nearest class)."""
    played = notes[:, PITCH] >= 0
    return {
        "duration": int((~np.isin(notes[:, DURATION], classes.durations)).sum()),
        "velocity": int((played & ~np.isin(notes[:, VELOCITY], classes.velocities)).sum()),
    }


def window_starts(length: int, hop: int = HOP) -> list[int]:
    """Where the windows of a song of ``length`` notes start: every ``hop`` notes, and one
    ending at the last note when the hop leaves a tail; none when it is too short."""
    if length < WINDOW:
        return []
    starts = list(range(0, length - WINDOW + 1, hop))
    if starts[-1] != length - WINDOW:
        starts.append(length - WINDOW)
    return starts


def write_split(path: Path, songs: list[tuple[str, np.ndarray]], classes: NoteClasses) -> None:
    encoded = [classes.encode(notes) for _, notes in songs]
    offsets = np.cumsum([0] + [len(notes) for notes in encoded]).astype(np.int64)
    starts = [
        offset + s
        for offset, n in zip(offsets[:-1], encoded, strict=True)
        for s in window_starts(len(n))
    ]
    np.savez_compressed(
        path,
        notes=np.concatenate(encoded) if encoded else np.zeros((0, 3), np.int16),
        offsets=offsets,
        starts=np.array(starts, np.int64),
        names=np.array([song for song, _ in songs], dtype=str),
    )


# Batches ------------------------------------------------------------------------------------


def targets_of(windows: np.ndarray) -> np.ndarray:
    """Targets of note windows: the same classes, a rest's velocity -1 (not scored)."""
    targets = windows.copy()
    targets[..., VELOCITY] = np.where(windows[..., PITCH] == REST, -1, windows[..., VELOCITY])
    return targets


def make_batch(windows: np.ndarray, noise_size: int, rows: int | None = None, fresh=False):
    """({"notes": int32 [rows, WINDOW, 3], "noise": float32 [rows, noise_size]}, targets
    int32 (-1 on padding rows), real notes). ``rows`` pads the batch with rows the loss
    masks (one compiled shape under JAX). ``fresh``: a training batch, whose noise the
    network draws itself (zeros are sent); else each window's evaluation noise
    (:func:`~melodygen.families.note_vae.network.window_noise`)."""
    from melodygen.families.note_vae.network import window_noise

    count = len(windows)
    rows = max(count, rows or 0)
    notes = np.zeros((rows, windows.shape[1], 3), np.int32)
    noise = np.zeros((rows, noise_size), np.float32)
    targets = np.full((rows, windows.shape[1], 3), -1, np.int32)
    notes[:count] = windows
    if not fresh:
        noise[:count] = window_noise(windows, noise_size)
    targets[:count] = targets_of(windows)
    return {"notes": notes, "noise": noise}, targets, count * windows.shape[1]


def training_batches(split: NoteSplit, batch_size: int, seed: int, noise_size: int) -> Iterator:
    """Endless batches of windows in random order, reshuffled every pass."""
    rows = BatchShape.for_backend(batch_size).rows
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(split))
        for start in range(0, len(order), batch_size):
            chosen = split.windows(order[start : start + batch_size])
            yield make_batch(chosen, noise_size, rows, fresh=True)


def evaluation_batches(split: NoteSplit, batch_size: int, noise_size: int) -> list[tuple]:
    """Every window once, in order."""
    rows = BatchShape.for_backend(batch_size).rows
    return [
        make_batch(
            split.windows(np.arange(start, min(start + batch_size, len(split)))), noise_size, rows
        )
        for start in range(0, len(split), batch_size)
    ]
