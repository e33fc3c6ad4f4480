"""A second model family, written for the tests in this module alone.

It proves the family interface: a model that predicts each note's pitch from the one
before it (a pitch bigram as a tiny Keras network) builds its dataset from music files,
trains in the shared loop, is scored in bits per note, generates, and shows in the
studio, with no change to MelodyGen outside this file. Registering it is one call:
``register(ToyFamily())``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import keras
import numpy as np

from melodygen.core.batches import evaluation_batches, training_batches
from melodygen.core.checkpoint import load_model
from melodygen.core.family import Batch, Family, TuneScore
from melodygen.core.generation import GeneratedMelody, GenerationRequest, GenerationResult
from melodygen.core.split import song_ids, song_is_eval
from melodygen.errors import DatasetError, ModelFileError
from melodygen.io.music import find_music_files, load_note_sequences

NAME = "toy_bigram"
PITCHES = 128
START = PITCHES  # the input before a tune's first note
NOTE_STEPS = 4  # every generated note is a quarter note


@dataclass(frozen=True)
class ToyHParams:
    batch_size: int = 4
    learning_rate: float = 0.05
    clip_norm: float = 5.0
    hidden: int = 8

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class ToyInfo:
    family: ClassVar[str] = NAME
    hparams: ToyHParams = field(default_factory=ToyHParams)
    training: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "format": "melodygen-model",
            "format_version": 1,
            "family": NAME,
            "hparams": self.hparams.to_dict(),
            "training": self.training,
        }


@dataclass
class ToySplit:
    inputs: np.ndarray  # one-hot previous pitch (START first), one row per note
    targets: np.ndarray  # the pitch, in column 0
    offsets: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def tune(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.offsets[index], self.offsets[index + 1]
        return self.inputs[start:end], self.targets[start:end, 0]


@dataclass
class ToyDataset:
    path: Path

    def load(self, split: str) -> ToySplit:
        with np.load(self.path / f"{split}.npz") as data:
            names = json.loads((self.path / "dataset.json").read_text())["names"][split]
            return ToySplit(data["inputs"], data["targets"], data["offsets"], names)


def pitches_of(sequences) -> list[int]:
    """A tune's melody: its notes' pitches in order of onset."""
    notes = [note for sequence in sequences for note in sequence.notes if not note.is_drum]
    return [int(note.pitch) for note in sorted(notes, key=lambda n: (n.start_time, -n.pitch))]


def encode(pitches: list[int]) -> tuple[np.ndarray, np.ndarray]:
    previous = [START, *pitches[:-1]]
    inputs = np.zeros((len(pitches), PITCHES + 1), np.float32)
    inputs[np.arange(len(pitches)), previous] = 1.0
    return inputs, np.array(pitches, np.int32)[:, None]


@dataclass
class ToySummary:
    tunes: dict

    def format(self) -> str:
        return f"tunes: {self.tunes['train']} train, {self.tunes['eval']} eval"


def build_dataset(inputs, output: Path, eval_ratio: float = 0.3) -> Path:
    """Songs split as every family splits them (``core.split``); unreadable files skipped."""
    splits: dict[str, list] = {"train": [], "eval": []}
    paths = [Path(item) for item in inputs]
    root = paths[0] if len(paths) == 1 and paths[0].is_dir() else None
    for path in find_music_files(paths):
        try:
            sequences = load_note_sequences(path)
        except Exception:  # noqa: BLE001 - a toy: unreadable files are skipped
            continue
        for song, sequence in zip(song_ids(path, root, sequences), sequences, strict=True):
            pitches = pitches_of([sequence])
            if pitches:
                split = "eval" if song_is_eval(song, eval_ratio) else "train"
                splits[split].append((song, pitches))
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    for split, tunes in splits.items():
        encoded = [encode(pitches) for _, pitches in tunes]
        offsets = np.cumsum([0] + [len(t) for _, t in tunes])
        np.savez(
            output / f"{split}.npz",
            inputs=np.concatenate([e[0] for e in encoded]),
            targets=np.concatenate([e[1] for e in encoded]),
            offsets=offsets,
        )
    names = {split: [name for name, _ in tunes] for split, tunes in splits.items()}
    (output / "dataset.json").write_text(json.dumps({"family": NAME, "names": names}))
    return output


class MaskedCrossEntropy(keras.losses.Loss):
    def call(self, y_true, y_pred):
        labels = keras.ops.cast(y_true[..., 0], "int32")
        real = keras.ops.cast(labels >= 0, "float32")
        losses = keras.ops.sparse_categorical_crossentropy(
            keras.ops.maximum(labels, 0), y_pred, from_logits=True
        )
        return keras.ops.sum(losses * real) / keras.ops.maximum(keras.ops.sum(real), 1.0)


def tune_nats(model, inputs: np.ndarray, pitches: np.ndarray) -> float:
    logits = np.asarray(model.predict_on_batch(inputs[None]))[0].astype(np.float64)
    peak = logits.max(axis=1, keepdims=True)
    log_probs = logits - peak - np.log(np.exp(logits - peak).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(pitches)), pitches].sum())


class ToyGenerator:
    def __init__(self, checkpoint, device: str = "auto") -> None:
        started = time.perf_counter()
        self.model, self.info = load_model(checkpoint)
        self.checkpoint = Path(checkpoint)
        self.description = "pitch bigram"
        self.load_seconds = time.perf_counter() - started

    def primer_notices(self, request: GenerationRequest) -> list[str]:
        return []

    def generate(self, request: GenerationRequest) -> GenerationResult:
        request.validate()
        started = time.perf_counter()
        rng = np.random.default_rng(request.seed)
        melodies = []
        notes = max(1, (request.length_steps - request.primer.steps) // NOTE_STEPS)
        for index in range(request.num_outputs):
            previous, pitches, score = START, [], 0.0
            for _ in range(notes):
                inputs = np.zeros((1, 1, PITCHES + 1), np.float32)
                inputs[0, 0, previous] = 1.0
                logits = np.asarray(self.model.predict_on_batch(inputs))[0, 0] / max(
                    request.temperature, 1e-3
                )
                allowed = np.arange(PITCHES)
                logits = np.where(
                    (allowed >= request.min_pitch) & (allowed <= request.max_pitch), logits, -1e9
                )
                log_probs = logits - logits.max()
                log_probs -= math.log(np.exp(log_probs).sum())
                previous = int(rng.choice(PITCHES, p=np.exp(log_probs)))
                score += float(log_probs[previous])
                pitches.append(previous)
            events = [e for pitch in pitches for e in (pitch, -2, -2, -1)]
            melodies.append(
                GeneratedMelody(
                    events=list(request.primer.events) + events,
                    primer_steps=request.primer.steps,
                    log_likelihood=score,
                    qpm=float(request.qpm or request.primer.qpm or 120.0),
                    index=index,
                    meter=request.meter,
                )
            )
        return GenerationResult(melodies, time.perf_counter() - started, transpose=0)


class ToyFamily(Family):
    name = NAME
    title = "Toy bigram"
    summary = "each note's pitch from the one before (a test of the family interface)"

    def read_info(self, values: dict, source) -> ToyInfo:
        try:
            hparams = ToyHParams(**values["hparams"])
        except (KeyError, TypeError) as error:
            raise ModelFileError(f"{source}: hparams are not a toy's ({error})") from None
        return ToyInfo(hparams=hparams, training=dict(values.get("training", {})))

    def build_network(self, info: ToyInfo):
        inputs = keras.Input((None, PITCHES + 1))
        hidden = keras.layers.Dense(info.hparams.hidden, activation="tanh")(inputs)
        return keras.Model(inputs, keras.layers.Dense(PITCHES, name="logits")(hidden))

    def max_weight_values(self, info: ToyInfo) -> int:
        size = (PITCHES + 1) * info.hparams.hidden + (info.hparams.hidden + 1) * PITCHES
        return 3 * size + 1024

    def build_dataset(
        self,
        inputs,
        output,
        config=None,
        eval_ratio=0.1,
        options=None,
        workers=None,
        progress=True,
    ) -> ToySummary:
        if config is not None:
            raise DatasetError("toy datasets have no configurations")
        build_dataset(inputs, output, eval_ratio)
        loaded = ToyDataset(Path(output))
        return ToySummary({split: len(loaded.load(split)) for split in ("train", "eval")})

    def open_dataset(self, path) -> ToyDataset:
        return ToyDataset(Path(path))

    def new_model_info(self, dataset, hparams) -> ToyInfo:
        return ToyInfo(hparams=ToyHParams(**(hparams or {})))

    def check_fits(self, info, model_dir, dataset) -> None:
        if not (Path(dataset.path) / "train.npz").is_file():
            raise DatasetError(f"{dataset.path} holds no toy data")

    def training_batches(self, split: ToySplit, info: ToyInfo, seed: int) -> Iterator[Batch]:
        for inputs, targets in training_batches(split, info.hparams.batch_size, seed):
            yield inputs, targets, int((targets[..., 0] >= 0).sum())

    def evaluation_batches(self, split: ToySplit, info: ToyInfo) -> list[Batch]:
        return [
            (inputs, targets, int((targets[..., 0] >= 0).sum()))
            for inputs, targets in evaluation_batches(split, info.hparams.batch_size)
        ]

    def compile(self, model, info: ToyInfo) -> None:
        model.compile(
            optimizer=keras.optimizers.Adam(
                info.hparams.learning_rate, global_clipnorm=info.hparams.clip_norm
            ),
            loss=MaskedCrossEntropy(),
        )

    def evaluate_batches(self, model, batches, info) -> dict[str, float]:
        total, count = 0.0, 0
        for inputs, targets, weight in batches:
            logits = np.asarray(model.predict_on_batch(inputs), np.float64)
            labels = targets[..., 0]
            real = labels >= 0
            peak = logits.max(axis=-1, keepdims=True)
            log_z = peak[..., 0] + np.log(np.exp(logits - peak).sum(axis=-1))
            picked = np.take_along_axis(logits, np.maximum(labels, 0)[..., None], -1)[..., 0]
            total += float(((log_z - picked) * real).sum())
            count += weight
        return {"nll": total / max(count, 1), "steps": count}

    def selection_metric(self, info) -> str:
        return "nll"

    def score_tunes(self, model, info, tunes: Sequence) -> list[TuneScore]:
        scores = []
        for name, sequences in tunes:
            pitches = pitches_of(sequences)
            if pitches:
                inputs, targets = encode(pitches)
                nats = tune_nats(model, inputs, targets[:, 0])
                scores.append(TuneScore(name, nats / math.log(2), len(pitches)))
        return scores

    def score_dataset(self, model, info, dataset: ToyDataset, split: str) -> list[TuneScore]:
        loaded = dataset.load(split)
        scores = []
        for index, name in enumerate(loaded.names):
            inputs, pitches = loaded.tune(index)
            scores.append(
                TuneScore(name, tune_nats(model, inputs, pitches) / math.log(2), len(pitches))
            )
        return scores

    def grid_melodies(self, dataset: ToyDataset, split: str) -> tuple[list, list[str]]:
        loaded = dataset.load(split)
        melodies = [
            np.array([e for pitch in loaded.tune(i)[1] for e in (pitch, -2, -2, -1)])
            for i in range(len(loaded))
        ]
        return melodies, list(loaded.names)

    def load_generator(self, checkpoint, device: str = "auto") -> ToyGenerator:
        return ToyGenerator(checkpoint, device)
