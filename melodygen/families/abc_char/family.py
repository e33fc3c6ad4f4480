"""A character-level LSTM over ABC text as a MelodyGen family: the object the rest reaches.

Music as canonical ABC text (:mod:`melodygen.io.abc`), one character at a time; an
embedding, an LSTM stack and the characters' logits
(:mod:`~melodygen.families.abc_char.network`); the generator writes whole folk tunes, header
included, from ABC header fields and/or opening bars
(:mod:`~melodygen.families.abc_char.generate`). Held-out figures: nats per character,
perplexity and next-character accuracy; bits per note divides a tune's total character
NLL (in bits) by the notes abc2midi plays from its text.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from melodygen.core.family import Batch, Family, TuneScore, model_label, register
from melodygen.errors import CheckpointError, ConfigError, DatasetError, MelodyGenError
from melodygen.families.abc_char import dataset as data
from melodygen.families.abc_char.configs import (
    CONFIGS,
    CONFIGURATION_WORDS,
    get_config,
)
from melodygen.families.abc_char.dataset import CharDataset, CharSplit
from melodygen.families.abc_char.model_file import FAMILY, CharModelInfo, max_weight_values
from melodygen.io.abc import ABC_TEXT_PREFIX

LN2 = math.log(2)


def _nats(model, split: CharSplit, indices: np.ndarray, batch_size: int) -> list[float]:
    """Each tune's total negative log-likelihood in nats (``<end>`` included)."""
    from melodygen.core.batches import BatchShape
    from melodygen.nn.text import target_nats

    shape = BatchShape.for_backend(batch_size)
    totals = np.zeros(len(indices))
    order = np.argsort(split.lengths[indices], kind="stable")
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        inputs, targets, _ = data.pad_ids(split, indices[chosen], shape)
        nats, _ = target_nats(model, inputs, targets)
        totals[chosen] = nats[: len(chosen)]
    return [float(value) for value in totals]


class AbcCharFamily(Family):
    """The ``abc_char`` family (see the module docstring)."""

    name = FAMILY
    title = "ABC character LSTM"
    summary = "writes whole folk tunes as ABC text, in a meter, key and dance type"

    # Saved models
    def read_info(self, values: dict, source: str | Path) -> CharModelInfo:
        return CharModelInfo.from_dict(values, source)

    def build_network(self, info: CharModelInfo):
        from melodygen.families.abc_char.network import build_model

        return build_model(info.vocab_size, info.hparams)

    def max_weight_values(self, info: CharModelInfo) -> int:
        return max_weight_values(info)

    def describe(self, info: CharModelInfo) -> str:
        layers = info.hparams.rnn_layer_sizes
        sizes = (
            f"{len(layers)}x{layers[0]}" if len(set(layers)) == 1 else "-".join(map(str, layers))
        )
        return f"{info.config}, {sizes} LSTM over {info.vocab_size} characters"

    def configuration(self, info: CharModelInfo) -> str:
        return info.config

    def configurations(self) -> dict[str, str]:
        return dict(CONFIGURATION_WORDS)

    def model_facts(self, info: CharModelInfo) -> list[tuple[str, str]]:
        layers = " x ".join(str(size) for size in info.hparams.rnn_layer_sizes)
        return [
            ("layers", f"{info.hparams.embedding_size}-wide embedding, {layers} LSTM"),
            ("vocabulary", f"{info.vocab_size} symbols (characters, <end>, <unk>)"),
            ("chord symbols", "kept" if info.chords else "dropped"),
        ]

    # Data
    def build_dataset(
        self,
        inputs: Sequence[str | Path],
        output: str | Path,
        config: str | None = None,
        eval_ratio: float = 0.1,
        options: dict | None = None,
        workers: int | None = None,
        progress: bool = True,
    ):
        if config is not None and config not in CONFIGS:
            raise ConfigError(
                f"{config} is not an {self.title} configuration; choose one of "
                f"{', '.join(CONFIGS)} (or leave out --config)"
            )
        options = dict(options or {})
        return data.build_dataset(
            inputs,
            output,
            config=config,
            eval_ratio=eval_ratio,
            chords=bool(options.get("abc_chords", False)),
            workers=workers,
            progress=progress,
        )

    def build_dataset_like(
        self,
        info: CharModelInfo,
        model_dir: Path,
        inputs: Sequence[str | Path],
        output: str | Path,
        eval_ratio: float = 0.1,
        options: dict | None = None,
        workers: int | None = None,
        progress: bool = True,
    ):
        """The text read with the base's vocabulary (and its choice on chord symbols); a
        character it lacks is read as ``<unk>``, counted."""
        return data.build_dataset(
            inputs, output, config=info.config, eval_ratio=eval_ratio, chords=info.chords,
            workers=workers, progress=progress, vocab=info.vocab, like=model_label(model_dir),
        )  # fmt: skip

    def open_dataset(self, path: str | Path) -> CharDataset:
        return CharDataset.open(path)

    def new_model_info(self, dataset: CharDataset, hparams: str | dict | None) -> CharModelInfo:
        try:
            chosen = get_config(dataset.config).hparams.override(hparams)
            chosen.validate(dataset.vocab.size)
        except ConfigError as error:
            raise ConfigError(f"--hparams: {error}") from None
        return CharModelInfo(
            config=dataset.config,
            hparams=chosen,
            vocab=dataset.vocab,
            chords=bool(dataset.metadata.get("chords", False)),
        )

    def check_fits(self, info: CharModelInfo, model_dir: Path, dataset: CharDataset) -> None:
        if info.vocab != dataset.vocab:
            raise DatasetError(
                f"{dataset.path} has a vocabulary of {dataset.vocab.size} symbols, but the "
                f"model in {model_dir} reads another of {info.vocab_size}; a character model "
                "reads only data built with its own vocabulary (build it from the same "
                "training tunes)"
            )

    def check_config(self, dataset: CharDataset, config: str) -> None:
        if config != dataset.config:
            raise DatasetError(
                f"dataset {dataset.path} was built for {dataset.config}, not {config}; rebuild "
                f"it with --config {config}, train with --config {dataset.config}, or change "
                "the network with --hparams"
            )

    def with_hparams(self, info: CharModelInfo, hparams: str | dict | None) -> CharModelInfo:
        if not hparams:
            return info
        try:
            requested = info.hparams.override(hparams)
            requested.validate(info.vocab_size)
        except ConfigError as error:
            raise ConfigError(f"--hparams: {error}") from None
        if requested.network_shape() != info.hparams.network_shape():
            raise CheckpointError(
                "--hparams may change how the model trains (learning_rate, batch_size, "
                "dropout, clip_norm), not the network's shape: the weights would not fit"
            )
        return CharModelInfo(info.config, requested, info.vocab, info.chords, dict(info.training))

    # Training
    def training_batches(self, split: CharSplit, info: CharModelInfo, seed: int) -> Iterator[Batch]:
        return data.training_batches(split, info.hparams.batch_size, seed)

    def evaluation_batches(self, split: CharSplit, info: CharModelInfo) -> list[Batch]:
        return data.evaluation_batches(split, info.hparams.batch_size)

    def compile(self, model, info: CharModelInfo) -> None:
        import keras

        from melodygen.nn.text import CharCrossEntropy, make_metrics

        model.compile(
            optimizer=keras.optimizers.Adam(
                learning_rate=info.hparams.learning_rate, global_clipnorm=info.hparams.clip_norm
            ),
            loss=CharCrossEntropy(),
            metrics=make_metrics(),
        )

    def evaluate_batches(self, model, batches: list[Batch], info: CharModelInfo) -> dict:
        from melodygen.nn.text import target_nats

        nats, correct, count = 0.0, 0, 0
        for inputs, targets, weight in batches:
            row_nats, row_correct = target_nats(model, inputs, targets)
            nats += float(row_nats.sum())
            correct += int(row_correct.sum())
            count += weight
        nll = nats / max(count, 1)
        return {
            "nll": nll,
            "perplexity": math.exp(min(nll, 700.0)),
            "accuracy": correct / max(count, 1),
            "steps": count,
        }

    def selection_metric(self, info: CharModelInfo) -> str:
        return "nll"

    def progress_figures(self, figures: dict, split: str) -> str:
        parts = [f"nll {figures['nll']:.3f}"] if "nll" in figures else []
        if "perplexity" in figures:
            parts.append(f"ppl {figures['perplexity']:.2f}")
        if "accuracy" in figures:
            parts.append(f"acc {figures['accuracy']:.3f}")
        return " ".join(parts)

    def figure_labels(self) -> dict[str, str]:
        return {
            "nll": "NLL per character (negative log-likelihood; lower is better)",
            "perplexity": "perplexity (lower is better)",
            "accuracy": "next-character accuracy",
            "steps": "characters evaluated",
        }

    def configuration_description(self, name: str) -> str:
        return get_config(name).description

    def selection_words(self, info: CharModelInfo) -> str:
        return "the evaluation with the lowest held-out NLL per character"

    def figure_lines(self, figures: dict) -> list[str]:
        return [
            f"{'nll per character:':<20}{figures['nll']:.4f} nats "
            f"({figures['nll'] / LN2:.4f} bits)",
            f"{'perplexity:':<20}{figures['perplexity']:.3f}",
            f"{'accuracy:':<20}{figures['accuracy']:.4f} (next character)",
        ]

    # Evaluation
    def score_tunes(self, model, info: CharModelInfo, tunes: Sequence) -> list[TuneScore]:
        """Each tune's ABC text scored, its notes counted from the same text.

        A tune read from an ABC file keeps its text (``tune_text``: the canonical text of
        the tune its NoteSequence came from); any other melody (MIDI) is written as ABC
        first (:func:`melodygen.io.abc.to_abc`), so every melody can be scored.
        """
        from melodygen.io.abc import parse_tune

        texts: list[tuple[str, str, int]] = []
        for name, sequences in tunes:
            if not sequences:
                continue
            text = tune_text(sequences[0])
            if text is None:
                continue
            try:
                notes = len(parse_tune(text).notes)
            except MelodyGenError:
                continue
            if notes:
                texts.append((name, text, notes))
        if not texts:
            return []
        split = _split_of(info, [text for _, text, _ in texts])
        nats = _nats(model, split, np.arange(len(texts)), info.hparams.batch_size)
        return [
            TuneScore(name, value / LN2, notes)
            for (name, _, notes), value in zip(texts, nats, strict=True)
        ]

    def score_dataset(self, model, info: CharModelInfo, dataset: CharDataset, split: str):
        loaded = dataset.load(split)
        nats = _nats(model, loaded, np.arange(len(loaded)), info.hparams.batch_size)
        return [
            TuneScore(name, value / LN2, int(notes))
            for name, value, notes in zip(loaded.names, nats, loaded.notes, strict=True)
            if notes > 0
        ]

    def held_out_texts(self, dataset: CharDataset) -> list[str]:
        """The held-out tunes' canonical texts, as the model reads and writes tunes."""
        return list(dataset.load("eval").texts)

    def grid_melodies(self, dataset: CharDataset, split: str) -> tuple[list, list[str]]:
        """Each tune of the split parsed from its text, on the sixteenth-note grid."""
        from melodygen.core.generation import sequence_events
        from melodygen.io.abc import parse_tune

        loaded = dataset.load(split)
        melodies, names = [], []
        for name, text in zip(loaded.names, loaded.texts, strict=True):
            try:
                sequence = parse_tune(text)
            except MelodyGenError:
                continue
            melodies.append(np.array(sequence_events(sequence)))
            names.append(name)
        return melodies, names

    # Generation
    def request_options(self) -> frozenset[str]:
        """Header fields, an ABC opening and sampling; no note primer, scale, pitch range
        or beam search (see :mod:`melodygen.families.abc_char.generate`)."""
        return frozenset(
            {
                "length_steps",
                "key",
                "mode",
                "qpm",
                "time_signature",
                "temperature",
                "top_k",
                "top_p",
                "num_outputs",
                "seed",
                "rhythm",
                "title",
                "text_primer",
            }
        )

    def load_generator(self, checkpoint: str | Path, device: str = "auto"):
        from melodygen.families.abc_char.generate import CharGenerator

        return CharGenerator(checkpoint, device=device)


def tune_text(sequence) -> str | None:
    """The ABC text a NoteSequence is scored by: the canonical text of its own ABC tune when
    it carries one (``sequence.source_info`` of an ABC tune parsed by
    :mod:`melodygen.io.abc` with the text attached, see ``TEXT_ANNOTATION``), else the
    melody written as ABC; None when it cannot be written."""
    from melodygen.io.abc import AbcError, clean_tune, to_abc

    for annotation in getattr(sequence, "text_annotations", []):
        if annotation.annotation_type == 0 and annotation.text.startswith(TEXT_ANNOTATION):
            try:
                return clean_tune(annotation.text[len(TEXT_ANNOTATION) :]).text
            except AbcError:
                break
    try:
        meter = (4, 4)
        if sequence.time_signatures:
            signature = sequence.time_signatures[0]
            meter = (signature.numerator, signature.denominator)
        key, mode = None, "major"
        if sequence.key_signatures:
            key = int(sequence.key_signatures[0].key)
            mode = "minor" if sequence.key_signatures[0].mode == 1 else "major"
        title = sequence.sequence_metadata.title if sequence.sequence_metadata else ""
        text = to_abc(sequence, title=title, meter=meter, key=key, mode=mode)
        return clean_tune(text).text
    except (MelodyGenError, ValueError, TypeError):
        return None


TEXT_ANNOTATION = ABC_TEXT_PREFIX
"""A NoteSequence text annotation starting with this holds the ABC text it was parsed from
(the optional text channel ``score_tunes`` reads first)."""


def _split_of(info: CharModelInfo, texts: list[str]) -> CharSplit:
    encoded = [info.vocab.tune_ids(text) for text in texts]
    offsets = np.cumsum([0] + [len(ids) for ids in encoded]).astype(np.int64)
    return CharSplit(
        np.concatenate(encoded),
        offsets,
        np.zeros(len(texts), np.int64),
        [str(i) for i in range(len(texts))],
        texts,
    )


FAMILY_OBJECT = register(AbcCharFamily())
