"""ABC tunebooks -> an ``abc_char`` dataset: canonical tune texts, a vocabulary, ids.

A dataset is a folder holding ``dataset.json`` (family, configuration, vocabulary, the
build summary) and, per split, ``<split>.npz`` (every tune's ids back to back with row
offsets, and the notes each tune plays) and ``<split>.json`` (each tune's name and its
canonical text, what bits per note and originality read).

Tunes are read with :mod:`melodygen.io.abc` (cleaned to canonical text, parsed by
abc2midi; a tune that does not parse is dropped and counted, so every tune kept is one
a musician can play and has notes to divide bits by). The split is by tune, with
:func:`melodygen.core.split.song_is_eval` on the name ``dataset build`` gives every tune
of every family (``jigs12.mid`` for X:12 of ``jigs.abc``, the name of that tune's MIDI
file in the Nottingham database), so held-out Nottingham tunes are the same tunes for the
Melody RNNs (trained on those MIDI files) and for this family. The vocabulary comes
from the training split's text only; held-out characters outside it are counted per
character, mapped to ``<unk>`` and reported.

Why one id sequence per tune, not the seed's fixed 16 x 64 character windows: the seed
carried its LSTM state from window to window (a stateful network), which ties batches to
the order of the text and trains a tune's opening on the end of the previous tune's
state. Read whole, every tune starts from the same empty state and ``<end>`` marker,
exactly as generation starts, and the network sees the header (meter, key, dance type)
however far back it is. Tunes are a few hundred characters (the longest Nottingham and
folk tunes under 2,000), so a batch of 16 whole tunes is a few thousand characters,
bucketed by length (:mod:`melodygen.core.batches`) so little is padding.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from melodygen.core.batches import BatchShape, length_bucketed_batches
from melodygen.core.split import SPLITS, song_is_eval, tunebook_song_id
from melodygen.errors import DatasetError, MelodyGenError, one_line
from melodygen.families.abc_char.configs import DEFAULT_CONFIG, MAX_VOCABULARY, get_config
from melodygen.families.abc_char.vocab import END, Vocabulary, describe_unknown

FAMILY = "abc_char"
FORMAT_VERSION = 1
METADATA_FILE = "dataset.json"
MAX_TUNE_LENGTH = 8192
"""The longest canonical tune text kept, in characters (the longest in the data: 1,746)."""
MAX_DATASET_JSON_BYTES = 10_000_000
MAX_TEXTS_JSON_BYTES = 200_000_000


@dataclass
class CharSplit:
    """One split in memory: every tune's ids back to back (``<end> text <end>``)."""

    ids: np.ndarray
    offsets: np.ndarray  # [tunes + 1]: where each tune's ids start (each has length + 1 ids)
    notes: np.ndarray  # [tunes]: the notes each tune plays (parsed by abc2midi)
    names: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Predictions per tune: its characters and the closing ``<end>``."""
        return np.diff(self.offsets) - 1

    def tune(self, index: int) -> np.ndarray:
        return self.ids[self.offsets[index] : self.offsets[index + 1]]


@dataclass
class CharDataset:
    """A built ``abc_char`` dataset (see the module docstring)."""

    path: Path
    vocab: Vocabulary
    config: str
    metadata: dict

    @classmethod
    def open(cls, path: str | Path) -> CharDataset:
        path = Path(path)
        meta = path / METADATA_FILE
        if not meta.is_file():
            raise DatasetError(
                f"{path} is not a MelodyGen dataset (no {METADATA_FILE}); "
                "build one with `melodygen dataset build --family abc_char`"
            )
        try:
            if meta.stat().st_size > MAX_DATASET_JSON_BYTES:
                raise ValueError("far too big")
            metadata = json.loads(meta.read_text())
            if metadata.get("family") != FAMILY:
                raise ValueError(f"it is not an {FAMILY} dataset")
            chars = metadata["vocab"]
            if (
                not isinstance(chars, list)
                or len(chars) > MAX_VOCABULARY
                or not all(isinstance(c, str) and len(c) == 1 for c in chars)
                or len(set(chars)) != len(chars)
            ):
                raise ValueError("vocab is not a list of distinct characters")
            config = metadata["config"]
            get_config(config)
        except (OSError, ValueError, KeyError, TypeError, RecursionError, MelodyGenError) as error:
            raise DatasetError(
                f"{meta} is damaged ({one_line(error)}); rebuild the dataset"
            ) from None
        return cls(path, Vocabulary(tuple(chars)), config, metadata)

    def load(self, split: str) -> CharSplit:
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        file = self.path / f"{split}.npz"
        texts_file = self.path / f"{split}.json"
        try:
            with np.load(file, allow_pickle=False) as data:
                ids, offsets, notes = data["ids"], data["offsets"], data["notes"]
            if texts_file.stat().st_size > MAX_TEXTS_JSON_BYTES:
                raise ValueError(f"{texts_file.name} is far too big")
            tunes = json.loads(texts_file.read_text())
            names = [str(tune["name"]) for tune in tunes]
            texts = [str(tune["text"]) for tune in tunes]
        except FileNotFoundError as error:
            raise DatasetError(
                f"dataset {self.path} has no {split} split ({Path(error.filename).name} is "
                "missing); rebuild the dataset"
            ) from None
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:
            raise DatasetError(
                f"{file} is damaged ({one_line(error)}); rebuild the dataset"
            ) from None
        loaded = CharSplit(ids, offsets, notes, names, texts)
        if (
            ids.ndim != 1
            or offsets.ndim != 1
            or len(offsets) != len(names) + 1
            or len(notes) != len(names)
            or len(texts) != len(names)
            or (len(offsets) and (offsets[0] != 0 or offsets[-1] != len(ids)))
            or np.any(np.diff(offsets) < 2)
            or (len(ids) and (ids.min() < 0 or ids.max() >= self.vocab.size))
        ):
            raise DatasetError(f"{file} does not match {METADATA_FILE}; rebuild the dataset")
        return loaded


# Building -----------------------------------------------------------------------------------


@dataclass
class CharBuildSummary:
    """What a build read, kept and dropped; printed and saved in ``dataset.json``."""

    files_read: int = 0
    files_failed: list[tuple[str, str]] = field(default_factory=list)
    files_not_abc: int = 0
    tunes: dict[str, int] = field(default_factory=lambda: {"train": 0, "eval": 0})
    characters: dict[str, int] = field(default_factory=lambda: {"train": 0, "eval": 0})
    dropped: dict[str, int] = field(default_factory=dict)
    first_dropped: dict[str, str] = field(default_factory=dict)
    vocab_size: int = 0
    unknown_eval: dict[str, int] = field(default_factory=dict)
    chords: bool = False
    like: str = ""
    """The model whose vocabulary the text was read with (a fine-tune's base), if any."""
    unknown_train: dict[str, int] = field(default_factory=dict)
    """With ``like``: training characters outside that vocabulary, read as ``<unk>``."""
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "files_read": self.files_read,
            "files_failed": [{"file": f, "reason": r} for f, r in self.files_failed],
            "files_not_abc": self.files_not_abc,
            "tunes": self.tunes,
            "characters": self.characters,
            "dropped": self.dropped,
            "first_dropped": self.first_dropped,
            "vocab_size": self.vocab_size,
            "unknown_eval": self.unknown_eval,
            "chords": self.chords,
            "like": self.like,
            "unknown_train": self.unknown_train,
            "seconds": round(self.seconds, 2),
        }

    def format(self) -> str:
        lines = [f"files read:      {self.files_read}"]
        if self.files_not_abc:
            lines.append(f"files skipped:   {self.files_not_abc} (not .abc)")
        lines.append(f"files failed:    {len(self.files_failed)}")
        lines += [f"  {name}: {reason}" for name, reason in self.files_failed[:20]]
        lines.append(
            f"tunes kept:      {sum(self.tunes.values())} "
            f"(train {self.tunes['train']}, eval {self.tunes['eval']})"
        )
        lines.append(
            f"characters:      {sum(self.characters.values())} "
            f"(train {self.characters['train']}, eval {self.characters['eval']})"
        )
        if self.like:
            lines.append(unknown_line(self.like, self.unknown_train, self.vocab_size))
        else:
            lines.append(
                f"vocabulary:      {self.vocab_size} symbols (training text's characters, "
                f"<end>, <unk>; chord symbols {'kept' if self.chords else 'dropped'})"
            )
        if self.unknown_eval:
            total = sum(self.unknown_eval.values())
            lines.append(
                f"unknown in eval: {total} characters outside the vocabulary, read as <unk>: "
                + describe_unknown(Counter(self.unknown_eval))
            )
        if self.dropped:
            lines.append("tunes dropped, by reason (the first of each):")
            width = max(len(reason) for reason in self.dropped)
            for reason, count in sorted(self.dropped.items()):
                lines.append(f"  {reason:<{width}}  {count}  ({self.first_dropped[reason]})")
        lines.append(f"time:            {self.seconds:.1f} s")
        return "\n".join(lines)


def unknown_line(like: str, unknown: dict[str, int], size: int) -> str:
    """One line: the base model's vocabulary read the training text, and what it lacked."""
    if not unknown:
        return f"vocabulary:      the base model's ({like}, {size} symbols), which has every one"
    return (
        f"vocabulary:      the base model's ({like}, {size} symbols): "
        f"{sum(unknown.values())} training characters it lacks read as <unk>, which it "
        f"never writes: {describe_unknown(Counter(unknown))}"
    )


def abc_files(inputs: Sequence[str | Path]) -> tuple[list[Path], int]:
    """The .abc files under ``inputs`` (folders searched recursively), sorted, and how
    many other files the folders held."""
    files, others = [], 0
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                if found.is_file():
                    if found.suffix.lower() == ".abc":
                        files.append(found)
                    elif not found.name.startswith("."):
                        others += 1
        elif path.is_file():
            files.append(path)
        else:
            raise DatasetError(f"{path} does not exist")
    return files, others


def tune_id(name: str, reference: str, position: int, tunes_in_file: int) -> str:
    """A tune's name, as every family's ``dataset build`` names it (``core.split.song_ids``):
    the file's name, and in a tunebook the name of the tune's own MIDI file
    (``jigs12.mid`` for X:12 of ``jigs.abc``; :func:`melodygen.core.split.tunebook_song_id`)."""
    if tunes_in_file == 1:
        return name
    number = reference if reference and not reference.startswith("#") else str(position)
    return tunebook_song_id(name, number)


def count_notes(text: str) -> int | str:
    """How many notes the tune plays (parsed by abc2midi), or the one-line reason it does not
    parse: what every ABC family's ``dataset build`` keeps a tune by."""
    from melodygen.io.abc import parse_tune

    try:
        return len(parse_tune(text).notes)
    except MelodyGenError as error:
        return one_line(error)


def build_dataset(
    inputs: Sequence[str | Path],
    output: str | Path,
    config: str | None = None,
    eval_ratio: float = 0.1,
    chords: bool = False,
    workers: int | None = None,
    progress: bool = True,
    vocab: Vocabulary | None = None,
    like: str = "the model",
) -> CharBuildSummary:
    """Read the tunebooks under ``inputs`` and write a dataset to ``output`` (see the module
    docstring); the summary says what was kept and dropped. ``vocab``: a model's vocabulary
    to read the text with (to fine-tune it: its network has exactly these symbols), not one
    fitted to this text; characters it lacks are read as ``<unk>`` (which generation never
    writes) and counted in both splits. ``like`` names that model in the summary."""
    from melodygen.io.abc import AbcError, read_tunebook, require_abc2midi

    started = time.perf_counter()
    require_abc2midi()  # every tune kept must parse: without the parser, say so first
    config = config or DEFAULT_CONFIG
    get_config(config)
    if not 0.0 <= eval_ratio < 1.0:
        raise DatasetError(f"eval_ratio must be from 0 to below 1, not {eval_ratio}")
    paths = [Path(item).expanduser() for item in inputs]
    files, others = abc_files(paths)
    if not files:
        raise DatasetError(f"no .abc files in {', '.join(map(str, paths))}")
    root = paths[0] if len(paths) == 1 and paths[0].is_dir() else None
    summary = CharBuildSummary(files_not_abc=others, chords=chords)

    def drop(reason: str, example: str) -> None:
        summary.dropped[reason] = summary.dropped.get(reason, 0) + 1
        summary.first_dropped.setdefault(reason, example)

    candidates: list[tuple[str, str]] = []  # (name, canonical text)
    seen: set[str] = set()
    for path in files:
        name = str(path.relative_to(root)) if root and path.is_relative_to(root) else path.name
        try:
            tunes, refused = read_tunebook(path, chords=chords)
        except AbcError as error:
            summary.files_failed.append((str(path), one_line(error)))
            continue
        summary.files_read += 1
        count = len(tunes) + len(refused)
        for reference, reason in refused:
            drop("not readable ABC", f"{name} tune {reference}: {reason}")
        for position, tune in enumerate(tunes, start=1):
            song = tune_id(name, tune.reference, position, count)
            if song in seen:
                song = f"{song}@{position}"
            seen.add(song)
            if len(tune.text) > MAX_TUNE_LENGTH:
                drop(f"longer than {MAX_TUNE_LENGTH} characters", song)
                continue
            candidates.append((song, tune.text))
    if not candidates:
        first = f"; the first: {summary.files_failed[0][1]}" if summary.files_failed else ""
        raise DatasetError(f"no tune under {', '.join(map(str, paths))} could be read{first}")

    # abc2midi runs as a process per tune: threads keep every core busy.
    threads = max(1, min(workers or os.cpu_count() or 1, 32))
    with ThreadPoolExecutor(threads) as pool:
        notes = list(
            with_progress(
                pool.map(count_notes, [text for _, text in candidates]), progress, len(candidates)
            )
        )
    kept: dict[str, list[tuple[str, str, int]]] = {"train": [], "eval": []}
    for (song, text), count in zip(candidates, notes, strict=True):
        if isinstance(count, str):
            drop("does not parse", f"{song}: {count}")
            continue
        kept["eval" if song_is_eval(song, eval_ratio) else "train"].append((song, text, count))
    if not kept["train"]:
        raise DatasetError(
            f"no tune under {', '.join(map(str, paths))} is left for training "
            f"({sum(len(v) for v in kept.values())} held out); lower --eval-ratio"
        )
    unknown_train: Counter | None = None
    if vocab is not None:
        summary.like, unknown_train = like, Counter()
    else:
        vocab = Vocabulary.from_texts(text for _, text, _ in kept["train"])
    if vocab.size > MAX_VOCABULARY:
        raise DatasetError(
            f"the training text holds {vocab.size - 2} different characters, more than an "
            f"ABC model reads ({MAX_VOCABULARY - 2}); is it ABC?"
        )
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    unknown: Counter = Counter()
    for split, tunes in kept.items():
        encoded = [
            vocab.tune_ids(text, unknown if split == "eval" else unknown_train)
            for _, text, _ in tunes
        ]
        offsets = np.cumsum([0] + [len(ids) for ids in encoded]).astype(np.int64)
        np.savez(
            output / f"{split}.npz",
            ids=np.concatenate(encoded).astype(np.int16) if encoded else np.zeros(0, np.int16),
            offsets=offsets,
            notes=np.array([count for _, _, count in tunes], np.int64),
        )
        (output / f"{split}.json").write_text(
            json.dumps([{"name": song, "text": text} for song, text, _ in tunes]) + "\n"
        )
        summary.tunes[split] = len(tunes)
        summary.characters[split] = sum(len(text) for _, text, _ in tunes)
    summary.vocab_size = vocab.size
    summary.unknown_eval = dict(unknown.most_common())
    summary.unknown_train = dict(unknown_train.most_common()) if unknown_train else {}
    summary.seconds = time.perf_counter() - started
    metadata = {
        "format": "melodygen-dataset",
        "format_version": FORMAT_VERSION,
        "family": FAMILY,
        "config": config,
        "vocab": vocab.to_list(),
        "chords": chords,
        "eval_ratio": eval_ratio,
        "inputs": [str(path) for path in paths],
        "summary": summary.to_dict(),
    }
    (output / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return summary


def with_progress(items: Iterator, show: bool, total: int) -> Iterator:
    """``items`` with a progress bar of ``total`` tunes on the terminal when ``show``."""
    if not show:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, unit="tune", desc="parsing tunes", leave=False)


# Batches ------------------------------------------------------------------------------------


def pad_ids(split: CharSplit, indices: np.ndarray, shape: BatchShape) -> tuple:
    """Inputs [rows, steps] int32 (``<end>`` on padding) and targets [rows, steps, 1] int32
    (-1 on padding, which the loss and figures mask), and the real targets' count."""
    lengths = split.lengths[indices]
    steps = shape.steps(int(lengths.max()))
    rows = max(len(indices), shape.rows or 0)
    inputs = np.full((rows, steps), END, np.int32)
    targets = np.full((rows, steps, 1), -1, np.int32)
    for row, index in enumerate(indices):
        ids = split.tune(index)
        inputs[row, : len(ids) - 1] = ids[:-1]
        targets[row, : len(ids) - 1, 0] = ids[1:]
    return inputs, targets, int(lengths.sum())


def training_batches(split: CharSplit, batch_size: int, seed: int) -> Iterator[tuple]:
    """Endless length-bucketed batches of whole tunes, reshuffled every pass."""
    shape = BatchShape.for_backend(batch_size)
    rng = np.random.default_rng(seed)
    while True:
        for indices in length_bucketed_batches(split, batch_size, rng):
            yield pad_ids(split, indices, shape)


def evaluation_batches(split: CharSplit, batch_size: int) -> list[tuple]:
    """Every tune once, sorted by length so little is padded."""
    shape = BatchShape.for_backend(batch_size)
    order = np.argsort(split.lengths, kind="stable")
    return [
        pad_ids(split, order[i : i + batch_size], shape) for i in range(0, len(order), batch_size)
    ]
