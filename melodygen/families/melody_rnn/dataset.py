"""From a folder of MIDI and ABC files to encoded training and evaluation sets.

A dataset is a folder holding ``dataset.json`` (the configuration, encoding
parameters and build summary) and one ``.npz`` file per split. Each split
stores its melodies back to back, nanoGPT style, with row offsets:

- ``inputs``  int8  [steps, input_size]: the encoder's input vectors;
- ``targets`` int16 [steps, 2 + repeats]: the label, the event class that
  actually follows, and the event class each "repeat" label would stand for
  at that step (so evaluation can score events rather than labels);
- ``events``  int16 [steps + melodies]: the squashed melody events themselves;
- ``offsets`` int64 [melodies + 1]: where each melody's steps start;
- ``sources``: the song each melody came from;
- ``meters``  int16 [melodies, 2]: each melody's time signature (numerator, denominator)
  as its source file declares it (a MIDI time signature, an ABC ``M:`` field; 4/4
  without one), so bar lines can be placed in its own meter: 16 steps per bar in 4/4,
  12 in 3/4 and 6/8, 8 in 2/4 (:meth:`MelodySplit.steps_per_bar`). Since format 2;
  a format-1 dataset has none and reads as 4/4 (:attr:`MelodySplit.meters_known`).

Building needs no TensorFlow: it is NumPy and note_seq, spread over all cores.
Reading a built dataset needs NumPy alone (note_seq is imported only to build), so
training runs on machines without the MIDI stack.
The split is by song (a MIDI file, or one tune of an ABC tunebook) and is
decided by a hash of its name, so a song never sits on both sides and the
split does not change when files are added.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import multiprocessing
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from melodygen.core.split import SPLITS, song_ids, song_is_eval
from melodygen.errors import DatasetError, InputFileError, MelodyGenError
from melodygen.families.melody_rnn.configs import MelodyRnnConfig, get_config
from melodygen.families.melody_rnn.encoding import MelodyEncoding, make_encoding
from melodygen.theory import STEPS_PER_BAR, STEPS_PER_WHOLE

if TYPE_CHECKING:
    from melodygen.io.music import ExtractionParams

FORMAT_VERSION = 2
"""2 added each melody's meter (``meters`` in each split); format 1 still reads (as 4/4),
and format-1 readers ignore the new array."""
METADATA_FILE = "dataset.json"


@dataclass(frozen=True)
class EncodingSpec:
    """Everything needed to turn melodies into network inputs, saved with data and models."""

    config: str
    encoding: str
    min_note: int
    max_note: int
    transpose_to_key: int | None
    lookback_distances: tuple[int, ...]
    binary_counter_bits: int
    steps_per_quarter: int
    # The phrase encoding's (lookbacks in bars, phrase length); empty for Magenta's, whose
    # saved files leave them out, so they stay as they were written before these existed.
    lookback_bars: tuple[int, ...] = ()
    phrase_bars: int = 0

    @classmethod
    def from_config(cls, config: MelodyRnnConfig, transpose_to_key="config") -> EncodingSpec:
        key = config.transpose_to_key if transpose_to_key == "config" else transpose_to_key
        return cls(
            config=config.name,
            encoding=config.encoding,
            min_note=config.min_note,
            max_note=config.max_note,
            transpose_to_key=key,
            lookback_distances=tuple(config.lookback_distances),
            binary_counter_bits=config.binary_counter_bits,
            steps_per_quarter=config.steps_per_quarter,
            lookback_bars=tuple(config.lookback_bars),
            phrase_bars=config.phrase_bars,
        )

    @classmethod
    def from_dict(cls, values: dict) -> EncodingSpec:
        values = dict(values)
        values["lookback_distances"] = tuple(values.get("lookback_distances", ()))
        values["lookback_bars"] = tuple(values.get("lookback_bars", ()))
        return cls(**values)

    def to_dict(self) -> dict:
        values = self.__dict__.copy()
        values["lookback_distances"] = list(self.lookback_distances)
        values["lookback_bars"] = list(self.lookback_bars)
        if not self.lookback_bars and not self.phrase_bars:
            del values["lookback_bars"], values["phrase_bars"]
        return values

    def make_encoding(self) -> MelodyEncoding:
        config = get_config(self.config)
        return make_encoding(
            MelodyRnnConfig(
                name=config.name,
                description=config.description,
                encoding=self.encoding,
                min_note=self.min_note,
                max_note=self.max_note,
                transpose_to_key=self.transpose_to_key,
                lookback_distances=self.lookback_distances,
                binary_counter_bits=self.binary_counter_bits,
                steps_per_quarter=self.steps_per_quarter,
                lookback_bars=self.lookback_bars,
                phrase_bars=self.phrase_bars,
            )
        )


@dataclass
class BuildSummary:
    """What a dataset build read, kept and dropped, printed and saved in dataset.json."""

    files_read: int = 0
    files_failed: list[tuple[str, str]] = field(default_factory=list)
    songs: dict[str, int] = field(default_factory=lambda: {"train": 0, "eval": 0})
    melodies: dict[str, int] = field(default_factory=lambda: {"train": 0, "eval": 0})
    steps: dict[str, int] = field(default_factory=lambda: {"train": 0, "eval": 0})
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def melodies_kept(self) -> int:
        return sum(self.melodies.values())

    @property
    def total_steps(self) -> int:
        return sum(self.steps.values())

    def to_dict(self) -> dict:
        return {
            "files_read": self.files_read,
            "files_failed": [{"file": f, "reason": r} for f, r in self.files_failed],
            "songs": self.songs,
            "melodies": self.melodies,
            "melodies_kept": self.melodies_kept,
            "steps": self.steps,
            "total_steps": self.total_steps,
            "dropped": self.dropped,
            "seconds": round(self.seconds, 2),
        }

    def format(self) -> str:
        lines = [
            f"files read:      {self.files_read}",
            f"files failed:    {len(self.files_failed)}",
        ]
        lines += [f"  {name}: {reason}" for name, reason in self.files_failed]
        lines.append(
            f"melodies kept:   {self.melodies_kept} "
            f"(train {self.melodies['train']} from {self.songs['train']} songs, "
            f"eval {self.melodies['eval']} from {self.songs['eval']} songs)"
        )
        lines.append(
            f"total steps:     {self.total_steps} "
            f"(train {self.steps['train']}, eval {self.steps['eval']})"
        )
        if self.dropped:
            lines.append("melodies dropped or changed, by reason:")
            width = max(len(reason) for reason in self.dropped)
            lines += [
                f"  {reason:<{width}}  {count}" for reason, count in sorted(self.dropped.items())
            ]
        lines.append(f"time:            {self.seconds:.1f} s")
        return "\n".join(lines)


def meter_steps(meter: tuple[int, int]) -> int:
    """Sixteenth-note steps in a bar of time signature (numerator, denominator), as
    :meth:`MelodySplit.steps_per_bar` counts them."""
    return int(meter[0]) * STEPS_PER_WHOLE // int(meter[1])


@dataclass
class MelodySplit:
    """One split of a dataset in memory, as stored (see the module docstring)."""

    inputs: np.ndarray
    targets: np.ndarray
    events: np.ndarray
    offsets: np.ndarray
    sources: np.ndarray
    meters: np.ndarray | None = None
    """int16 [melodies, 2]: each melody's (numerator, denominator); None in a format-1
    dataset, read as 4/4 (see :meth:`steps_per_bar`)."""

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def meters_known(self) -> bool:
        """Whether the dataset stored its melodies' meters (format 2 on); without them
        every melody reads as 4/4, which places 3/4 and 6/8 bar lines wrongly."""
        return self.meters is not None

    def steps_per_bar(self) -> np.ndarray:
        """Sixteenth-note steps per bar of each melody (int64 [melodies]): 16 in 4/4, 12 in
        3/4 and 6/8, 8 in 2/4; 16 for every melody of a dataset without meters."""
        if self.meters is None:
            return np.full(len(self), STEPS_PER_BAR, dtype=np.int64)
        meters = self.meters.astype(np.int64)
        return meters[:, 0] * STEPS_PER_WHOLE // meters[:, 1]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def melody_events(self, index: int) -> np.ndarray:
        """The squashed events of melody ``index`` (one more than its number of steps)."""
        start = self.offsets[index] + index
        return self.events[start : self.offsets[index + 1] + index + 1]


@dataclass
class MelodyDataset:
    """A built dataset: its metadata and splits, loaded lazily."""

    path: Path
    spec: EncodingSpec
    input_size: int
    num_classes: int
    label_event_classes: list[int]
    metadata: dict

    @classmethod
    def open(cls, path: str | Path) -> MelodyDataset:
        """Open a folder written by ``build_dataset``, with a clear message if it isn't one."""
        path = Path(path)
        meta_path = path / METADATA_FILE
        if not path.exists():
            raise DatasetError(
                f"dataset {path} does not exist; build one with `melodygen dataset build`"
            )
        if not meta_path.is_file():
            raise DatasetError(
                f"{path} is not a MelodyGen dataset (no {METADATA_FILE}); "
                "build one with `melodygen dataset build`"
            )
        try:
            metadata = json.loads(meta_path.read_text())
            spec = EncodingSpec.from_dict(metadata["encoding"])
            return cls(
                path=path,
                spec=spec,
                input_size=int(metadata["input_size"]),
                num_classes=int(metadata["num_classes"]),
                label_event_classes=[int(c) for c in metadata["label_event_classes"]],
                metadata=metadata,
            )
        except (ValueError, KeyError, TypeError) as error:
            raise DatasetError(f"{meta_path} is damaged ({error}); rebuild the dataset") from None

    def load(self, split: str) -> MelodySplit:
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        file = self.path / f"{split}.npz"
        try:
            with np.load(file, allow_pickle=False) as data:
                # ``meters`` is optional: format-1 datasets were written without it.
                loaded = MelodySplit(
                    **{
                        name: data[name]
                        for name in MelodySplit.__annotations__
                        if name in data.files or name != "meters"
                    }
                )
        except FileNotFoundError:
            raise DatasetError(
                f"dataset {self.path} has no {split} split ({file.name} is missing)"
            ) from None
        except (OSError, ValueError, KeyError) as error:
            raise DatasetError(f"{file} is damaged ({error}); rebuild the dataset") from None
        if loaded.inputs.shape[1:] != (self.input_size,):
            raise DatasetError(f"{file} does not match {METADATA_FILE}; rebuild the dataset")
        if loaded.meters is not None and (
            loaded.meters.shape != (len(loaded), 2)
            or not np.isin(loaded.meters[:, 1], (1, 2, 4, 8, 16)).all()
            or (loaded.meters[:, 0] < 1).any()
        ):
            raise DatasetError(f"{file} holds damaged meters; rebuild the dataset")
        return loaded


# Building ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    spec: EncodingSpec
    params: ExtractionParams
    eval_ratio: float
    transpositions: tuple[int, ...]


def encode_melody(encoding: MelodyEncoding, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (int8) and packed targets (int16) of one squashed melody, as datasets store them."""
    inputs, labels = encoding.encode(events)
    table = encoding.label_event_classes(events)
    steps = np.arange(len(labels))
    target_classes = table[steps, labels]
    repeats = len(encoding.lookback_distances)
    columns = [labels[:, None], target_classes[:, None]]
    if repeats:
        columns.append(table[:, encoding.num_classes - repeats :])
    return inputs.astype(np.int8), np.concatenate(columns, axis=1).astype(np.int16)


def _process_file(job: _Job, path: Path, root: Path | None) -> dict:
    """Read one file and return its encoded melodies per split (runs in a worker)."""
    from melodygen.io.music import (
        extract_melodies,
        load_note_sequences,
        melody_meter,
        transposed_sequences,
    )
    from melodygen.limits import DATASET_MIDI

    result = {"file": str(path), "error": None, "dropped": collections.Counter(), "songs": []}
    try:
        sequences = load_note_sequences(path, DATASET_MIDI)
    except InputFileError as error:
        result["error"] = str(error)
        return result
    encoding = job.spec.make_encoding()
    for song_id, sequence in zip(song_ids(path, root, sequences), sequences, strict=True):
        split = "eval" if song_is_eval(song_id, job.eval_ratio) else "train"
        variants = [sequence]
        if split == "train" and job.transpositions:
            variants = transposed_sequences(sequence, job.transpositions)
        song = {"id": song_id, "split": split, "melodies": []}
        seen: set[bytes] = set()
        for variant in variants:
            melodies, stats = extract_melodies(variant, job.params)
            result["dropped"].update(stats)
            for melody in melodies:
                melody.squash(job.spec.min_note, job.spec.max_note, job.spec.transpose_to_key)
                events = np.asarray(list(melody), dtype=np.int16)
                if len(events) < 2:
                    result["dropped"]["melodies_discarded_empty_after_squash"] += 1
                    continue
                if len(variants) > 1:  # squash can move a transposed copy back where it was
                    if events.tobytes() in seen:
                        result["dropped"]["duplicate_transpositions"] += 1
                        continue
                    seen.add(events.tobytes())
                meter = melody_meter(melody)
                # The phrase encoding measures its lookbacks in bars of the melody's meter.
                inputs, targets = encode_melody(encoding.for_meter(meter_steps(meter)), events)
                song["melodies"].append((events, inputs, targets, meter))
        result["songs"].append(song)
    return result


def _worker(args):
    from melodygen.io.music import note_seq

    job, path, root = args
    try:
        return _process_file(job, path, root)
    except MelodyGenError as error:
        return {
            "file": str(path),
            "error": str(error),
            "dropped": collections.Counter(),
            "songs": [],
        }
    except (note_seq.BadNoteError, ValueError, IndexError, KeyError) as error:
        # note_seq can still trip over odd content after a clean parse; skip the file, say why.
        return {
            "file": str(path),
            "error": f"could not extract melodies: {type(error).__name__}: {error}",
            "dropped": collections.Counter(),
            "songs": [],
        }


def build_dataset(
    inputs: Iterable[str | Path],
    config: str,
    output: str | Path,
    eval_ratio: float = 0.1,
    params: ExtractionParams | None = None,
    transpositions: Iterable[int] = (),
    transpose_to_key="config",
    workers: int | None = None,
    progress: bool = True,
) -> BuildSummary:
    """Walk ``inputs`` (folders and files), extract, encode and write a dataset to ``output``.

    ``transpositions`` (semitones, e.g. ``range(-5, 7)``) augments the training split
    only, so held-out figures stay honest. ``transpose_to_key`` overrides the
    configuration's key (an int 0-11, or None to keep melodies where they are).
    """
    from melodygen.io.music import ExtractionParams, find_music_files

    started = time.perf_counter()
    if not 0.0 <= eval_ratio < 1.0:
        raise DatasetError("--eval-ratio must be at least 0 and below 1")
    spec = EncodingSpec.from_config(get_config(config), transpose_to_key)
    params = params or ExtractionParams()
    inputs = [Path(p) for p in inputs]
    files = find_music_files(inputs)
    root = inputs[0] if len(inputs) == 1 and inputs[0].is_dir() else None
    job = _Job(spec, params, eval_ratio, tuple(sorted(set(int(t) for t in transpositions))))
    results = _map_files(job, files, root, workers, progress)

    summary = BuildSummary(files_read=len(files))
    dropped: collections.Counter = collections.Counter()
    songs = []
    for result in results:
        dropped.update(result["dropped"])
        if result["error"]:
            summary.files_failed.append((result["file"], result["error"]))
        songs.extend(result["songs"])
    _ensure_both_splits(songs, eval_ratio)
    by_split = {
        split: [s for s in songs if s["split"] == split and s["melodies"]] for split in SPLITS
    }
    for split in SPLITS:
        summary.songs[split] = len(by_split[split])
        summary.melodies[split] = sum(len(s["melodies"]) for s in by_split[split])
        summary.steps[split] = sum(len(m[1]) for s in by_split[split] for m in s["melodies"])
    summary.dropped = {reason: int(count) for reason, count in dropped.items() if count}
    if summary.melodies_kept == 0:
        raise DatasetError(
            f"no usable melodies in {len(files)} file(s) "
            f"({len(summary.files_failed)} could not be read); "
            + (
                "dropped: " + ", ".join(f"{k} {v}" for k, v in summary.dropped.items())
                if summary.dropped
                else "nothing to extract"
            )
        )

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    encoding = spec.make_encoding()
    for split in SPLITS:
        _write_split(output / f"{split}.npz", by_split[split], encoding.input_size)
    summary.seconds = time.perf_counter() - started
    metadata = {
        "format_version": FORMAT_VERSION,
        "family": "melody_rnn",  # the family that reads it (core.family.open_dataset)
        "encoding": spec.to_dict(),
        "input_size": encoding.input_size,
        "num_classes": encoding.num_classes,
        "num_event_classes": encoding.num_event_classes,
        "label_event_classes": static_label_event_classes(encoding),
        "extraction": dataclasses.asdict(params),
        "eval_ratio": eval_ratio,
        "transpositions": list(job.transpositions),
        "inputs": [str(p) for p in inputs],
        "summary": summary.to_dict(),
    }
    (output / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return summary


def _map_files(job: _Job, files: list[Path], root: Path | None, workers, progress) -> list[dict]:
    from tqdm import tqdm

    workers = max(1, min(workers or os.cpu_count() or 1, len(files)))
    tasks = [(job, path, root) for path in files]
    bar = tqdm(total=len(files), unit="file", desc="reading", disable=not progress or None)
    results = []
    if workers == 1:
        for task in tasks:
            results.append(_worker(task))
            bar.update()
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(workers) as pool:
            for result in pool.imap_unordered(_worker, tasks, chunksize=4):
                results.append(result)
                bar.update()
    bar.close()
    results.sort(key=lambda r: r["file"])  # worker order must not change the output
    return results


def _ensure_both_splits(songs: list[dict], eval_ratio: float) -> None:
    """With few songs the hash may leave a split empty; move one song so both exist."""
    usable = [s for s in songs if s["melodies"]]
    if eval_ratio <= 0 or len(usable) < 2:
        return
    for split, other in (("eval", "train"), ("train", "eval")):
        if not any(s["split"] == split for s in usable):
            song = min((s for s in usable if s["split"] == other), key=lambda s: s["id"])
            song["split"] = split


def static_label_event_classes(encoding: MelodyEncoding) -> list[int]:
    """The event class of each plain (non-repeat) label: fixed whatever came before."""
    table = encoding.label_event_classes(np.array([-2, -2], dtype=np.int16))
    repeats = len(encoding.lookback_distances)
    return [int(c) for c in table[0, : encoding.num_classes - repeats]]


def _write_split(path: Path, songs: list[dict], input_size: int) -> None:
    melodies = [m for s in songs for m in s["melodies"]]
    sources = [s["id"] for s in songs for _ in s["melodies"]]
    lengths = [len(m[1]) for m in melodies]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    width = melodies[0][2].shape[1] if melodies else 2
    np.savez_compressed(
        path,
        inputs=np.concatenate([m[1] for m in melodies])
        if melodies
        else np.zeros((0, input_size), np.int8),
        targets=np.concatenate([m[2] for m in melodies])
        if melodies
        else np.zeros((0, width), np.int16),
        events=np.concatenate([m[0] for m in melodies]) if melodies else np.zeros(0, np.int16),
        offsets=offsets,
        sources=np.array(sources, dtype=str),
        meters=np.array([m[3] for m in melodies], dtype=np.int16).reshape(-1, 2),
    )
