"""An ABC Transformer as a MelodyGen family: the object the rest reaches.

A tune's metadata (meter, unit, key, dance type, title words:
:mod:`~melodygen.families.abc_transformer.metadata`) is the encoder's input; its body, the
ABC after the ``K:`` line as BPE tokens (:mod:`~.tokenizer`), is what the decoder writes
(:mod:`~.network`). The generator writes a tune in the meter, key and dance type asked for,
its header written by the family (:mod:`~.generate`). Held-out figures: nats per body
token, perplexity and next-token accuracy, the body given its metadata. Bits per note
divides a tune's total body NLL (``</s>`` included), in bits, by the notes abc2midi plays
from its text; unlike ``abc_char``'s, it does not include the header, which is given.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from melodygen.core.family import Batch, Family, TuneScore, model_label, register
from melodygen.errors import CheckpointError, ConfigError, DatasetError, MelodyGenError
from melodygen.families.abc_char.family import AbcCharFamily
from melodygen.families.abc_transformer import dataset as data
from melodygen.families.abc_transformer.configs import (
    CONFIGS,
    CONFIGURATION_WORDS,
    get_config,
)
from melodygen.families.abc_transformer.dataset import TokenSplit, TransformerDataset
from melodygen.families.abc_transformer.model_file import (
    FAMILY,
    TransformerModelInfo,
    max_weight_values,
)

LN2 = math.log(2)


def _nats(model, split: TokenSplit, batch_size: int) -> np.ndarray:
    """Each tune's total negative log-likelihood in nats (``</s>`` included)."""
    from melodygen.core.batches import BatchShape
    from melodygen.nn.text import target_nats

    shape = BatchShape.for_backend(batch_size)
    totals = np.zeros(len(split))
    order = np.argsort(split.lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        inputs, targets, _ = data.pad_batch(split, chosen, shape)
        nats, _ = target_nats(model, inputs, targets)
        totals[chosen] = nats[: len(chosen)]
    return totals


class AbcTransformerFamily(Family):
    """The ``abc_transformer`` family (see the module docstring)."""

    name = FAMILY
    title = "ABC Transformer"
    summary = "writes a folk tune's ABC in the meter, key and dance type asked for"

    # Saved models
    def read_info(self, values: dict, source: str | Path) -> TransformerModelInfo:
        return TransformerModelInfo.from_dict(values, source)

    def build_network(self, info: TransformerModelInfo):
        from melodygen.families.abc_transformer.network import build_model

        return build_model(info.tokenizer.size, info.meta_vocab.size, info.hparams)

    def max_weight_values(self, info: TransformerModelInfo) -> int:
        return max_weight_values(info)

    def describe(self, info: TransformerModelInfo) -> str:
        h = info.hparams
        return (
            f"{info.config}, {h.encoder_layers}+{h.decoder_layers}-layer Transformer "
            f"({h.embedding_size} wide) over {info.vocab_size} BPE tokens"
        )

    def configuration(self, info: TransformerModelInfo) -> str:
        return info.config

    def configurations(self) -> dict[str, str]:
        return dict(CONFIGURATION_WORDS)

    def model_facts(self, info: TransformerModelInfo) -> list[tuple[str, str]]:
        h = info.hparams
        vocab = info.meta_vocab
        types = ", ".join(vocab.known("rhythm")) or "none"
        return [
            (
                "layers",
                f"{h.encoder_layers} encoder + {h.decoder_layers} decoder, {h.embedding_size} "
                f"wide, {h.heads} heads, feed-forward {h.feed_forward_size}",
            ),
            ("vocabulary", f"{info.vocab_size} BPE tokens of tune bodies"),
            ("metadata", f"{vocab.size} tokens: meters {', '.join(vocab.known('meter'))}"),
            ("dance types", types),
            ("longest tune", f"{h.max_tokens} tokens"),
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
        return data.build_dataset(
            inputs, output, config=config, eval_ratio=eval_ratio, workers=workers,
            progress=progress,
        )  # fmt: skip

    def build_dataset_like(
        self,
        info: TransformerModelInfo,
        model_dir: Path,
        inputs: Sequence[str | Path],
        output: str | Path,
        eval_ratio: float = 0.1,
        options: dict | None = None,
        workers: int | None = None,
        progress: bool = True,
    ):
        """The tunes read with the base's tokenizer, metadata vocabulary and header table,
        tunes longer than it reads dropped; what it lacks is read as unknown, counted."""
        return data.build_dataset(
            inputs, output, config=info.config, eval_ratio=eval_ratio, workers=workers,
            progress=progress, like=info, like_name=model_label(model_dir),
        )  # fmt: skip

    def open_dataset(self, path: str | Path) -> TransformerDataset:
        return TransformerDataset.open(path)

    def new_model_info(
        self, dataset: TransformerDataset, hparams: str | dict | None
    ) -> TransformerModelInfo:
        try:
            chosen = get_config(dataset.config).hparams.override(hparams)
            chosen.validate(dataset.tokenizer.size, dataset.meta_vocab.size)
        except ConfigError as error:
            raise ConfigError(f"--hparams: {error}") from None
        if chosen.max_tokens < dataset.longest:
            raise ConfigError(
                f"--hparams: max_tokens {chosen.max_tokens} is shorter than the dataset's "
                f"longest tune ({dataset.longest} tokens); raise it or rebuild the dataset"
            )
        return TransformerModelInfo(
            config=dataset.config,
            hparams=chosen,
            tokenizer=dataset.tokenizer,
            meta_vocab=dataset.meta_vocab,
            headers=dataset.headers,
        )

    def check_fits(
        self, info: TransformerModelInfo, model_dir: Path, dataset: TransformerDataset
    ) -> None:
        if info.tokenizer.tokens != dataset.tokenizer.tokens:
            raise DatasetError(
                f"{dataset.path} has a BPE vocabulary of {dataset.tokenizer.size} tokens, but "
                f"the model in {model_dir} reads another of {info.vocab_size}; a Transformer "
                "reads only data built with its own tokenizer (build it from the same "
                "training tunes)"
            )
        if info.meta_vocab != dataset.meta_vocab:
            raise DatasetError(
                f"{dataset.path} has another metadata vocabulary than the model in "
                f"{model_dir}; build the dataset from the same training tunes"
            )
        if info.hparams.max_tokens < dataset.longest:
            raise DatasetError(
                f"{dataset.path} holds tunes of {dataset.longest} tokens, longer than the "
                f"{info.hparams.max_tokens} the model in {model_dir} reads"
            )

    def check_config(self, dataset: TransformerDataset, config: str) -> None:
        if config != dataset.config:
            raise DatasetError(
                f"dataset {dataset.path} was built for {dataset.config}, not {config}; rebuild "
                f"it with --config {config}, train with --config {dataset.config}, or change "
                "the network with --hparams"
            )

    def with_hparams(
        self, info: TransformerModelInfo, hparams: str | dict | None
    ) -> TransformerModelInfo:
        if not hparams:
            return info
        try:
            requested = info.hparams.override(hparams)
            requested.validate(info.vocab_size, info.meta_vocab.size)
        except ConfigError as error:
            raise ConfigError(f"--hparams: {error}") from None
        if requested.network_shape() != info.hparams.network_shape():
            raise CheckpointError(
                "--hparams may change how the model trains (learning_rate, warmup_steps, "
                "batch_size, dropout, field_dropout, title_dropout, clip_norm), not the "
                "network's shape: the weights would not fit"
            )
        return TransformerModelInfo(
            info.config, requested, info.tokenizer, info.meta_vocab, info.headers,
            dict(info.training),
        )  # fmt: skip

    # Training
    def training_batches(
        self, split: TokenSplit, info: TransformerModelInfo, seed: int
    ) -> Iterator[Batch]:
        h = info.hparams
        return data.training_batches(split, h.batch_size, seed, h.field_dropout, h.title_dropout)

    def evaluation_batches(self, split: TokenSplit, info: TransformerModelInfo) -> list[Batch]:
        return data.evaluation_batches(split, info.hparams.batch_size)

    def compile(self, model, info: TransformerModelInfo) -> None:
        import keras

        from melodygen.families.abc_transformer.network import learning_rate
        from melodygen.nn.text import CharCrossEntropy, make_metrics

        model.compile(
            optimizer=keras.optimizers.Adam(
                learning_rate=learning_rate(info.hparams),
                global_clipnorm=info.hparams.clip_norm,
            ),
            loss=CharCrossEntropy(),  # masked mean cross-entropy: tokens as characters
            metrics=make_metrics(),
        )

    def evaluate_batches(self, model, batches: list[Batch], info: TransformerModelInfo) -> dict:
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

    def selection_metric(self, info: TransformerModelInfo) -> str:
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
            "nll": "NLL per token (negative log-likelihood of the body; lower is better)",
            "perplexity": "perplexity (lower is better)",
            "accuracy": "next-token accuracy",
            "steps": "tokens evaluated",
        }

    def configuration_description(self, name: str) -> str:
        return get_config(name).description

    def selection_words(self, info: TransformerModelInfo) -> str:
        return "the evaluation with the lowest held-out NLL per token"

    def figure_lines(self, figures: dict) -> list[str]:
        return [
            f"{'nll per token:':<20}{figures['nll']:.4f} nats ({figures['nll'] / LN2:.4f} bits)",
            f"{'perplexity:':<20}{figures['perplexity']:.3f}",
            f"{'accuracy:':<20}{figures['accuracy']:.4f} (next token)",
        ]

    # Evaluation
    def score_tunes(self, model, info: TransformerModelInfo, tunes: Sequence) -> list[TuneScore]:
        """Each tune's ABC body scored given its metadata, its notes counted from its text.

        The text is the tune's own when its NoteSequence carries it, else the melody written
        as ABC (``abc_char``'s :func:`~melodygen.families.abc_char.family.tune_text`). Its
        dance type is read from ``R:``, else its title (a lone tune has no tunebook or
        section to say it). A tune whose body is longer than the model reads is left out.
        """
        from melodygen.families.abc_char.family import tune_text
        from melodygen.families.abc_transformer import dance
        from melodygen.families.abc_transformer.metadata import Metadata
        from melodygen.io.abc import clean_tune, parse_tune

        kept: list[tuple[str, int, Metadata, np.ndarray]] = []
        for name, sequences in tunes:
            text = tune_text(sequences[0]) if sequences else None
            if text is None:
                continue
            try:
                tune = clean_tune(text)
                notes = len(parse_tune(tune).notes)
            except MelodyGenError:
                continue
            ids = info.tokenizer.encode(tune.body)
            if notes and len(ids) <= info.hparams.max_tokens:
                rhythm = (
                    dance.normalise(tune.rhythm) if tune.rhythm else dance.from_title(tune.title)
                )
                metadata = Metadata.of_tune(tune, rhythm)
                kept.append((name, notes, metadata, ids))
        if not kept:
            return []
        split = TokenSplit(
            np.concatenate([ids for *_, ids in kept]),
            np.cumsum([0] + [len(ids) for *_, ids in kept]).astype(np.int64),
            np.stack([info.meta_vocab.encode(metadata) for _, _, metadata, _ in kept]),
            np.array([notes for _, notes, _, _ in kept]),
        )
        nats = _nats(model, split, info.hparams.batch_size)
        return [
            TuneScore(name, float(value) / LN2, notes)
            for (name, notes, _, _), value in zip(kept, nats, strict=True)
        ]

    def score_dataset(self, model, info: TransformerModelInfo, dataset, split: str):
        loaded = dataset.load(split)
        nats = _nats(model, loaded, info.hparams.batch_size)
        return [
            TuneScore(name, float(value) / LN2, int(notes))
            for name, value, notes in zip(loaded.names, nats, loaded.notes, strict=True)
            if notes > 0
        ]

    def held_out_texts(self, dataset: TransformerDataset) -> list[str]:
        """The held-out tunes' canonical texts, each with the ``R:`` line of the dance type
        this family reads it as (from its ``R:``, file, book section or title:
        :mod:`~melodygen.families.abc_transformer.dance`), the type the encoder is given;
        a tune of no known type keeps its text as it is. The music is the tune's own."""
        loaded = dataset.load("eval")
        return [
            data.typed_text(text, metadata.rhythm)
            for text, metadata in zip(loaded.texts, loaded.metadata, strict=True)
        ]

    # Each tune of the split parsed from its text, on the sixteenth-note grid, as abc_char
    # does it (it reads the split's names and texts only).
    grid_melodies = AbcCharFamily.grid_melodies

    # Generation
    def request_options(self) -> frozenset[str]:
        """The controls the encoder reads (meter, key and mode, dance type, title), an ABC
        opening, tempo, length, sampling and beam search; no note primer, scale or pitch
        range (see :mod:`melodygen.families.abc_transformer.generate`)."""
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
                "beam_size",
                "branch_factor",
                "steps_per_iteration",
                "rhythm",
                "title",
                "text_primer",
            }
        )

    def load_generator(self, checkpoint: str | Path, device: str = "auto"):
        from melodygen.families.abc_transformer.generate import TransformerGenerator

        return TransformerGenerator(checkpoint, device=device)


FAMILY_OBJECT = register(AbcTransformerFamily())
