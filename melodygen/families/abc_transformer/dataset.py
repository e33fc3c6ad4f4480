"""ABC tunebooks -> an ``abc_transformer`` dataset: metadata ids and BPE body ids per tune.

A dataset is a folder holding ``dataset.json`` (family, configuration, the fitted
tokenizer, the metadata vocabulary, the header table, the build summary) and, per split,
``<split>.npz`` (every tune's body ids back to back with offsets, its metadata ids, the
notes it plays) and ``<split>.json`` (each tune's name, canonical text and metadata).

Tunes are read and named as ``abc_char`` reads them (same cleaning, same abc2midi check,
same song ids), so the split by song (:func:`melodygen.core.split.song_is_eval`) holds
out the same tunes for both ABC families and for the Melody RNNs. Each tune's dance type
comes from :mod:`~melodygen.families.abc_transformer.dance`. The tokenizer and the
metadata vocabulary are fitted on the training split only. Every kept tune's body decodes
back to its exact text (checked here: a tune that does not is dropped and reported);
held-out characters outside the vocabulary are counted and read as ``<unk>``. Bodies
longer than the configuration's ``max_tokens`` are dropped and counted.
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
from typing import TYPE_CHECKING

import numpy as np

from melodygen.core.batches import BatchShape, length_bucketed_batches
from melodygen.core.split import SPLITS, song_is_eval
from melodygen.errors import DatasetError, MelodyGenError, one_line
from melodygen.families.abc_char.dataset import abc_files, count_notes, tune_id, with_progress
from melodygen.families.abc_char.vocab import describe_unknown
from melodygen.families.abc_transformer import dance
from melodygen.families.abc_transformer.configs import (
    DEFAULT_CONFIG,
    FIXED_FIELDS,
    META_SLOTS,
    TITLE_WORDS,
    get_config,
)
from melodygen.families.abc_transformer.metadata import (
    FIELDS,
    PAD,
    SPECIAL_TOKENS,
    HeaderTable,
    Metadata,
    MetaVocabulary,
)
from melodygen.families.abc_transformer.tokenizer import (
    END,
    START,
    BodyTokenizer,
    TokenizerError,
    bar_lines,
)

if TYPE_CHECKING:
    from melodygen.families.abc_transformer.model_file import TransformerModelInfo

FAMILY = "abc_transformer"
FORMAT_VERSION = 1
METADATA_FILE = "dataset.json"
MAX_DATASET_JSON_BYTES = 20_000_000
MAX_TEXTS_JSON_BYTES = 200_000_000


@dataclass
class TokenSplit:
    """One split in memory: body ids back to back, metadata ids, notes, texts."""

    ids: np.ndarray  # body tokens of every tune back to back (no <s>/</s>)
    offsets: np.ndarray  # [tunes + 1]: where each tune's body starts
    meta: np.ndarray  # [tunes, META_SLOTS] metadata ids
    notes: np.ndarray  # [tunes]: the notes each tune plays (parsed by abc2midi)
    names: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    metadata: list[Metadata] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Predictions per tune: its body tokens and the closing ``</s>``."""
        return np.diff(self.offsets) + 1

    def body(self, index: int) -> np.ndarray:
        return self.ids[self.offsets[index] : self.offsets[index + 1]]


@dataclass
class TransformerDataset:
    """A built ``abc_transformer`` dataset (see the module docstring)."""

    path: Path
    config: str
    tokenizer: BodyTokenizer
    meta_vocab: MetaVocabulary
    headers: HeaderTable
    longest: int
    """The most body tokens of any tune in it (a model must read at least as many)."""
    metadata: dict

    @classmethod
    def open(cls, path: str | Path) -> TransformerDataset:
        path = Path(path)
        meta = path / METADATA_FILE
        if not meta.is_file():
            raise DatasetError(
                f"{path} is not a MelodyGen dataset (no {METADATA_FILE}); "
                f"build one with `melodygen dataset build --family {FAMILY}`"
            )
        try:
            if meta.stat().st_size > MAX_DATASET_JSON_BYTES:
                raise ValueError("far too big")
            values = json.loads(meta.read_text())
            if not isinstance(values, dict) or values.get("family") != FAMILY:
                raise ValueError(f"it is not an {FAMILY} dataset")
            config = values["config"]
            get_config(config)
            tokenizer = BodyTokenizer.from_json(values["tokenizer"])
            vocab = MetaVocabulary.from_list(values["meta_vocab"])
            headers = HeaderTable.from_list(values["headers"])
            longest = values["longest"]
            if not isinstance(longest, int) or isinstance(longest, bool) or longest < 0:
                raise ValueError("longest is not a count")
        except TokenizerError as error:
            raise DatasetError(f"{meta} is damaged (tokenizer {error}); rebuild it") from None
        except (OSError, ValueError, KeyError, TypeError, RecursionError, MelodyGenError) as error:
            raise DatasetError(
                f"{meta} is damaged ({one_line(error)}); rebuild the dataset"
            ) from None
        return cls(path, config, tokenizer, vocab, headers, longest, values)

    def load(self, split: str) -> TokenSplit:
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        file = self.path / f"{split}.npz"
        texts_file = self.path / f"{split}.json"
        reading = file  # the file a problem is in
        try:
            with np.load(file, allow_pickle=False) as data:
                ids, offsets = data["ids"], data["offsets"]
                meta, notes = data["meta"], data["notes"]
            reading = texts_file
            if texts_file.stat().st_size > MAX_TEXTS_JSON_BYTES:
                raise ValueError(f"{texts_file.name} is far too big")
            names, texts, metadata = _records(json.loads(texts_file.read_text()))
        except FileNotFoundError as error:
            raise DatasetError(
                f"dataset {self.path} has no {split} split ({Path(error.filename).name} is "
                "missing); rebuild the dataset"
            ) from None
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:
            raise DatasetError(
                f"{reading} is damaged ({one_line(error)}); rebuild the dataset"
            ) from None
        if (
            ids.ndim != 1
            or offsets.ndim != 1
            or meta.shape != (len(names), META_SLOTS)
            or len(offsets) != len(names) + 1
            or len(notes) != len(names)
            or len(texts) != len(names)
            or (len(offsets) and (offsets[0] != 0 or offsets[-1] != len(ids)))
            or np.any(np.diff(offsets) < 1)
            or (len(ids) and (ids.min() < 0 or ids.max() >= self.tokenizer.size))
            or (meta.size and (meta.min() < 0 or meta.max() >= self.meta_vocab.size))
        ):
            raise DatasetError(f"{file} does not match {METADATA_FILE}; rebuild the dataset")
        return TokenSplit(ids, offsets, meta, notes, names, texts, metadata)


def _records(tunes: object) -> tuple[list[str], list[str], list[Metadata]]:
    """A ``<split>.json``'s tunes (a list of {"name", "text", "metadata"}) checked whole:
    names, texts and metadata. ValueError says why not, so that a damaged file is one
    line, not a failure (or a silently converted value) later."""
    if not isinstance(tunes, list):
        raise ValueError("it must hold a list of tunes")
    names, texts, metadata = [], [], []
    for number, tune in enumerate(tunes, start=1):
        if not isinstance(tune, dict):
            raise ValueError(f"tune {number} is not a JSON object")
        name, text = tune.get("name"), tune.get("text")
        if not isinstance(name, str) or not isinstance(text, str):
            raise ValueError(f"tune {number}: its name and text must be strings")
        try:
            metadata.append(Metadata.from_dict(tune.get("metadata")))
        except ValueError as error:
            raise ValueError(f"tune {number}: {error}") from None
        names.append(name)
        texts.append(text)
    return names, texts, metadata


# Building -----------------------------------------------------------------------------------


@dataclass
class TransformerBuildSummary:
    """What a build read, kept and dropped; printed and saved in ``dataset.json``."""

    files_read: int = 0
    files_failed: list[tuple[str, str]] = field(default_factory=list)
    files_not_abc: int = 0
    tunes: dict[str, int] = field(default_factory=lambda: {"train": 0, "eval": 0})
    tokens: dict[str, int] = field(default_factory=lambda: {"train": 0, "eval": 0})
    token_lengths: dict[str, int] = field(default_factory=dict)
    max_tokens: int = 0
    vocab_size: int = 0
    vocab_asked: int = 0
    bar_lines: dict[str, int] = field(default_factory=dict)
    meta_vocab: dict[str, int] = field(default_factory=dict)
    round_trip: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    first_dropped: dict[str, str] = field(default_factory=dict)
    unknown_eval: dict[str, int] = field(default_factory=dict)
    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    dance_types: dict[str, int] = field(default_factory=dict)
    like: str = ""
    """The model whose tokenizer and metadata vocabulary read the tunes (a fine-tune's
    base), if any."""
    unknown_train: dict[str, int] = field(default_factory=dict)
    """With ``like``: training characters outside its tokenizer, read as ``<unk>``."""
    unknown_meta: dict[str, int] = field(default_factory=dict)
    """With ``like``: metadata values (meter, key, type, title word) it lacks, per field,
    read as that field's unknown."""
    seconds: float = 0.0

    def to_dict(self) -> dict:
        values = {
            key: getattr(self, key)
            for key in self.__dataclass_fields__
            if key not in ("files_failed", "seconds")
        }
        values["files_failed"] = [{"file": f, "reason": r} for f, r in self.files_failed]
        values["seconds"] = round(self.seconds, 2)
        return values

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
        lengths = self.token_lengths
        lines.append(
            f"body tokens:     {sum(self.tokens.values())} (train {self.tokens['train']}, eval "
            f"{self.tokens['eval']}); per tune: median {lengths.get('median', 0)}, 99th "
            f"percentile {lengths.get('p99', 0)}, longest {lengths.get('longest', 0)} "
            f"(at most {self.max_tokens} kept)"
        )
        whole = sum(1 for count in self.bar_lines.values() if count == 1)
        if self.like:
            lines.append(self.like_line())
        else:
            lines.append(
                f"vocabulary:      {self.vocab_size} BPE tokens ({self.vocab_asked} asked; "
                f"fitted on the training bodies); {whole} of {len(self.bar_lines)} kinds of "
                "bar line are one token"
            )
        meta = self.meta_vocab
        lines.append(
            f"metadata:        {sum(meta.values())} tokens: "
            + ", ".join(f"{count} {name}" for name, count in meta.items())
        )
        failed = self.dropped.get("does not round-trip", 0)
        lines.append(
            f"round trip:      {self.round_trip} tunes decode to their exact text, "
            f"{failed} do not (dropped)"
        )
        if self.unknown_eval:
            total = sum(self.unknown_eval.values())
            lines.append(
                f"unknown in eval: {total} characters outside the vocabulary, read as <unk>: "
                + describe_unknown(Counter(self.unknown_eval))
            )
        lines.append("dance types, where each source's come from:")
        width = max([len(source) for source in self.sources] + [6])
        lines.append(f"  {'source':<{width}}  " + "  ".join(f"{h:>8}" for h in dance.HOW))
        for source, counts in sorted(self.sources.items()):
            row = "  ".join(f"{counts.get(how, 0):>8}" for how in dance.HOW)
            lines.append(f"  {source:<{width}}  {row}")
        lines.append(
            "  tunes kept of each type: "
            + ", ".join(f"{name} {count}" for name, count in self.dance_types.items())
        )
        if self.dropped:
            lines.append("tunes dropped, by reason (the first of each):")
            width = max(len(reason) for reason in self.dropped)
            for reason, count in sorted(self.dropped.items()):
                lines.append(f"  {reason:<{width}}  {count}  ({self.first_dropped[reason]})")
        lines.append(f"time:            {self.seconds:.1f} s")
        return "\n".join(lines)

    def like_line(self) -> str:
        """One line: the base model's tokenizer read the tunes, and what it lacked."""
        line = f"vocabulary:      the base model's ({self.like}, {self.vocab_size} BPE tokens)"
        if not self.unknown_train and not self.unknown_meta:
            return line + ", which has every character and header value here"
        parts = []
        if self.unknown_train:
            parts.append(
                f"{sum(self.unknown_train.values())} training characters it lacks read as "
                f"<unk>, which it never writes ({describe_unknown(Counter(self.unknown_train))})"
            )
        if self.unknown_meta:
            values = ", ".join(f"{name} {count}" for name, count in self.unknown_meta.items())
            parts.append(f"header values it lacks read as unknown: {values}")
        return line + ": " + "; ".join(parts)


@dataclass
class _Tune:
    song: str
    text: str
    body: str
    metadata: Metadata
    source: str
    how: str
    notes: int = 0


def _source(path: Path) -> str:
    """A tune's source for the summary: its file's folder and the folder above it."""
    return f"{path.parent.parent.name}/{path.parent.name}".strip("/")


def build_dataset(
    inputs: Sequence[str | Path],
    output: str | Path,
    config: str | None = None,
    eval_ratio: float = 0.1,
    workers: int | None = None,
    progress: bool = True,
    like: TransformerModelInfo | None = None,
    like_name: str = "the model",
) -> TransformerBuildSummary:
    """Read the tunebooks under ``inputs`` and write a dataset to ``output`` (see the module
    docstring); the summary says what was kept and dropped. ``like``: a model's info whose
    tokenizer, metadata vocabulary, header table and longest tune to use (to fine-tune it:
    its network has exactly these), not ones fitted here; a character it lacks is read as
    ``<unk>`` (which generation never writes), a header value as its field's unknown, both
    counted. ``like_name`` names that model in the summary."""
    from melodygen.io.abc import AbcError, read_tunebook, require_abc2midi

    started = time.perf_counter()
    require_abc2midi()  # every tune kept must parse: without the parser, say so first
    chosen = get_config(config or DEFAULT_CONFIG)
    if not 0.0 <= eval_ratio < 1.0:
        raise DatasetError(f"eval_ratio must be from 0 to below 1, not {eval_ratio}")
    paths = [Path(item).expanduser() for item in inputs]
    files, others = abc_files(paths)
    if not files:
        raise DatasetError(f"no .abc files in {', '.join(map(str, paths))}")
    root = paths[0] if len(paths) == 1 and paths[0].is_dir() else None
    summary = TransformerBuildSummary(files_not_abc=others)
    max_tokens = like.hparams.max_tokens if like is not None else chosen.hparams.max_tokens
    summary.max_tokens = max_tokens
    summary.vocab_asked = chosen.vocab_size

    def drop(reason: str, example: str) -> None:
        summary.dropped[reason] = summary.dropped.get(reason, 0) + 1
        summary.first_dropped.setdefault(reason, example)

    candidates: list[_Tune] = []
    seen: set[str] = set()
    for path in files:
        name = str(path.relative_to(root)) if root and path.is_relative_to(root) else path.name
        try:
            tunes, refused = read_tunebook(path)
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
            rhythm, how = dance.dance_type(tune, path)
            metadata = Metadata.of_tune(tune, rhythm)
            candidates.append(_Tune(song, tune.text, tune.body, metadata, _source(path), how))
    if not candidates:
        first = f"; the first: {summary.files_failed[0][1]}" if summary.files_failed else ""
        raise DatasetError(f"no tune under {', '.join(map(str, paths))} could be read{first}")

    # abc2midi runs as a process per tune: threads keep every core busy.
    threads = max(1, min(workers or os.cpu_count() or 1, 32))
    with ThreadPoolExecutor(threads) as pool:
        notes = list(
            with_progress(
                pool.map(count_notes, [t.text for t in candidates]), progress, len(candidates)
            )
        )
    split_of: dict[str, list[_Tune]] = {"train": [], "eval": []}
    for tune, count in zip(candidates, notes, strict=True):
        if isinstance(count, str):
            drop("does not parse", f"{tune.song}: {count}")
            continue
        tune.notes = count
        split_of["eval" if song_is_eval(tune.song, eval_ratio) else "train"].append(tune)
    if not split_of["train"]:
        raise DatasetError(
            f"no tune under {', '.join(map(str, paths))} is left for training "
            f"({len(split_of['eval'])} held out); lower --eval-ratio"
        )

    unknown_train: Counter = Counter()
    if like is not None:
        tokenizer = like.tokenizer
        summary.like = like_name
    else:
        tokenizer = BodyTokenizer.fit([t.body for t in split_of["train"]], chosen.vocab_size)
    vocabulary = set(tokenizer.tokens)
    kinds = Counter(piece for t in split_of["train"] for piece in bar_lines(t.body))
    summary.bar_lines = {
        piece: 1 if piece in vocabulary else len(tokenizer.encode(piece))
        for piece, _ in kinds.most_common()
    }
    unknown: Counter = Counter()
    encoded: dict[str, list[tuple[_Tune, np.ndarray]]] = {}
    for split, tunes in split_of.items():
        kept = []
        for tune, ids in zip(tunes, tokenizer.encode_all(t.body for t in tunes), strict=True):
            missing = tokenizer.unknown_in(tune.body)
            if missing and split == "train" and like is None:  # the alphabet is its text's
                drop("does not round-trip", f"{tune.song}: {describe_unknown(missing)}")
                continue
            if missing:
                (unknown if split == "eval" else unknown_train).update(missing)
            elif tokenizer.decode(ids) != tune.body:
                drop("does not round-trip", f"{tune.song}")
                continue
            else:
                summary.round_trip += 1
            if len(ids) > max_tokens:
                drop(f"longer than {max_tokens} tokens", f"{tune.song}: {len(ids)}")
                continue
            kept.append((tune, ids))
        encoded[split] = kept
    if not encoded["train"]:
        raise DatasetError("no training tune is left once long ones are dropped")
    if like is not None:
        meta_vocab, headers = like.meta_vocab, like.headers
        summary.unknown_train = dict(unknown_train.most_common())
        summary.unknown_meta = unknown_metadata(
            meta_vocab, [t.metadata for kept in encoded.values() for t, _ in kept]
        )
    else:
        meta_vocab = MetaVocabulary.build(tune.metadata for tune, _ in encoded["train"])
        headers = HeaderTable.build(tune.metadata for tune, _ in encoded["train"])

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    for split, kept in encoded.items():
        bodies = [ids for _, ids in kept]
        offsets = np.cumsum([0] + [len(ids) for ids in bodies]).astype(np.int64)
        meta = np.stack([meta_vocab.encode(t.metadata) for t, _ in kept]) if kept else None
        np.savez(
            output / f"{split}.npz",
            ids=np.concatenate(bodies).astype(np.int16) if bodies else np.zeros(0, np.int16),
            offsets=offsets,
            meta=meta.astype(np.int16) if meta is not None else np.zeros((0, META_SLOTS), np.int16),
            notes=np.array([t.notes for t, _ in kept], np.int64),
        )
        records = [
            {"name": t.song, "text": t.text, "metadata": t.metadata.to_dict()} for t, _ in kept
        ]
        (output / f"{split}.json").write_text(json.dumps(records) + "\n")
        summary.tunes[split] = len(kept)
        summary.tokens[split] = int(sum(len(ids) for ids in bodies))
    lengths = np.array([len(ids) for kept in encoded.values() for _, ids in kept])
    summary.token_lengths = {
        "median": int(np.median(lengths)),
        "p99": int(np.percentile(lengths, 99)),
        "longest": int(lengths.max()),
    }
    summary.vocab_size = tokenizer.size
    summary.meta_vocab = {name: len(meta_vocab.known(name)) for name in (*FIELDS, "title")} | {
        "special": len(SPECIAL_TOKENS)
    }
    summary.unknown_eval = dict(unknown.most_common())
    for tune in candidates:
        counts = summary.sources.setdefault(tune.source, {})
        counts[tune.how] = counts.get(tune.how, 0) + 1
    types = Counter(t.metadata.rhythm or "none" for kept in encoded.values() for t, _ in kept)
    summary.dance_types = dict(types.most_common())
    summary.seconds = time.perf_counter() - started
    metadata = {
        "format": "melodygen-dataset",
        "format_version": FORMAT_VERSION,
        "family": FAMILY,
        "config": chosen.name,
        "max_tokens": chosen.hparams.max_tokens,
        "longest": int(lengths.max()),
        "eval_ratio": eval_ratio,
        "inputs": [str(path) for path in paths],
        "summary": summary.to_dict(),
        "meta_vocab": meta_vocab.to_list(),
        "headers": headers.to_list(),
        "tokenizer": tokenizer.json_text,
    }
    (output / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return summary


def unknown_metadata(vocab: MetaVocabulary, metadata: list[Metadata]) -> dict[str, int]:
    """How many of the tunes' header values (per field; title words as "title") ``vocab``
    lacks: :meth:`MetaVocabulary.encode` reads each as its field's unknown."""
    index = vocab.index
    slots = [*FIELDS, *["title"] * TITLE_WORDS]
    counts: Counter = Counter()
    for item in metadata:
        for slot, token in enumerate(item.tokens()):
            if token not in index:
                counts[slots[slot]] += 1
    return dict(counts)


def typed_text(text: str, rhythm: str | None) -> str:
    """A canonical tune ``text`` whose header's ``R:`` line says ``rhythm`` (the line
    replaced, or written before ``K:``); ``text`` as it is when ``rhythm`` is None."""
    if rhythm is None:
        return text
    lines = text.split("\n")
    for number, line in enumerate(lines):
        if line.startswith("R:"):
            lines[number] = f"R:{rhythm}"
            return "\n".join(lines)
        if line.startswith("K:"):
            return "\n".join([*lines[:number], f"R:{rhythm}", *lines[number:]])
    return text


# Batches ------------------------------------------------------------------------------------


def pad_batch(
    split: TokenSplit,
    indices: np.ndarray,
    shape: BatchShape,
    dropout: tuple[float, float, np.random.Generator] | None = None,
) -> tuple:
    """Network inputs ``[meta [rows, META_SLOTS], body [rows, steps]]`` int32 (``<s>`` then
    the body; ``<pad>`` after it and on padding rows), targets [rows, steps, 1] int32 (the
    body then ``</s>``; -1 on padding, which the loss and figures mask), and the count of
    real targets. ``dropout``: (field, title, rng) chances of hiding metadata, training only.
    """
    lengths = split.lengths[indices]
    steps = shape.steps(int(lengths.max()))
    rows = max(len(indices), shape.rows or 0)
    meta = np.full((rows, META_SLOTS), PAD, np.int32)
    body = np.full((rows, steps), PAD, np.int32)
    targets = np.full((rows, steps, 1), -1, np.int32)
    for row, index in enumerate(indices):
        ids = split.body(index)
        meta[row] = split.meta[index]
        body[row, 0] = START
        body[row, 1 : len(ids) + 1] = ids
        targets[row, : len(ids), 0] = ids
        targets[row, len(ids), 0] = END
    if dropout is not None:
        hide_metadata(meta[: len(indices)], *dropout)
    return [meta, body], targets, int(lengths.sum())


def hide_metadata(meta: np.ndarray, field_rate: float, title_rate: float, rng) -> None:
    """Show some fields of some tunes as "unknown" and drop some titles, in place, so the
    network learns to write from any subset of the controls (ids 1..5 are the fields'
    unknown tokens, id 6 the title's; see ``metadata.SPECIAL_TOKENS``)."""
    hidden = rng.random((len(meta), FIXED_FIELDS)) < field_rate
    unknown = np.broadcast_to(np.arange(1, FIXED_FIELDS + 1), hidden.shape)
    meta[:, :FIXED_FIELDS] = np.where(hidden, unknown, meta[:, :FIXED_FIELDS])
    untitled = rng.random(len(meta)) < title_rate
    meta[untitled, FIXED_FIELDS:] = PAD


def training_batches(
    split: TokenSplit, batch_size: int, seed: int, field_rate: float, title_rate: float
) -> Iterator[tuple]:
    """Endless length-bucketed batches of whole tunes, reshuffled every pass, metadata
    hidden at the given rates."""
    shape = BatchShape.for_backend(batch_size)
    rng = np.random.default_rng(seed)
    while True:
        for indices in length_bucketed_batches(split, batch_size, rng):
            yield pad_batch(split, indices, shape, (field_rate, title_rate, rng))


def evaluation_batches(split: TokenSplit, batch_size: int) -> list[tuple]:
    """Every tune once with all its metadata, sorted by length so little is padded."""
    shape = BatchShape.for_backend(batch_size)
    order = np.argsort(split.lengths, kind="stable")
    return [
        pad_batch(split, order[i : i + batch_size], shape) for i in range(0, len(order), batch_size)
    ]
