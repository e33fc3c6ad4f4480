"""Magenta's Melody RNNs as a MelodyGen family: the one object the shared code reaches.

Music as sixteenth-note event steps in Magenta's encodings (one-hot, lookback, key), an
LSTM stack (with attention for ``attention_rnn``), trained on label or event
cross-entropy; the generator continues a primer in a key at a tempo
(:class:`~melodygen.families.melody_rnn.generate.MelodyGenerator`). The
configurations are data in :mod:`~melodygen.families.melody_rnn.configs`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from melodygen.core.batches import evaluation_batches as sequence_evaluation_batches
from melodygen.core.batches import training_batches as sequence_batches
from melodygen.core.family import Batch, Family, TuneScore, register
from melodygen.errors import CheckpointError, ConfigError, DatasetError
from melodygen.families.melody_rnn.configs import CONFIGS, get_config
from melodygen.families.melody_rnn.dataset import MelodyDataset, MelodySplit
from melodygen.families.melody_rnn.model_file import (
    FAMILY,
    ModelInfo,
    max_weight_values,
)

REPORT_KEYS = (
    "nll",
    "perplexity",
    "accuracy",
    "event_accuracy",
    "no_event_accuracy",
    "label_nll",
    "steps",
)


def model_info(dataset: MelodyDataset, hparams: str | dict | None = None) -> ModelInfo:
    """What a new network for ``dataset`` is: its configuration's hparams with overrides."""
    return ModelInfo(
        spec=dataset.spec,
        hparams=get_config(dataset.spec.config).hparams.override(hparams),
        input_size=dataset.input_size,
        num_classes=dataset.num_classes,
        num_event_classes=int(dataset.metadata["num_event_classes"]),
        label_event_classes=dataset.label_event_classes,
    )


def compile_model(model, info: ModelInfo) -> None:
    """Attach Magenta's optimizer (Adam, clipped global norm) and the event metrics."""
    import keras

    from melodygen.families.melody_rnn.metrics import make_loss, make_metrics

    optimizer = keras.optimizers.Adam(
        learning_rate=info.hparams.learning_rate, global_clipnorm=info.hparams.clip_norm
    )
    model.compile(
        optimizer=optimizer,
        loss=make_loss(info.hparams.loss, info.label_event_classes, info.num_event_classes),
        metrics=make_metrics(info.label_event_classes, info.num_event_classes),
    )


def evaluate_batches(model, batches: list[tuple], info: ModelInfo) -> dict[str, float]:
    """Event metrics summed over every real step of ``batches`` (dropout off)."""
    from melodygen.families.melody_rnn.metrics import make_metrics

    # Fresh metric objects: Keras' test_on_batch resets its metrics on every call.
    metrics = make_metrics(info.label_event_classes, info.num_event_classes)
    steps = 0
    for inputs, targets in batches:
        logits = model.predict_on_batch(inputs)
        for metric in metrics:
            metric.update_state(targets, logits)
        steps += int((targets[..., 0] >= 0).sum())
    figures = {metric.name: float(metric.result()) for metric in metrics}
    figures["steps"] = steps
    return figures


# What each configuration does, in musicians' words (the studio's help page).
CONFIGURATION_WORDS = {
    "basic_rnn": "plays note by note, remembering what came before",
    "lookback_rnn": "also sees what was played one and two bars back and where it is in the "
    "bar, so it repeats phrases more",
    "attention_rnn": "can look back over the last few bars and pick what matters, which tends "
    "to give the most structured tunes",
    "mono_rnn": "note by note over the full piano range, keeping the keys it learned in",
    "phrase_rnn": "also sees what was played 1, 2, 4 and 8 bars back in the tune's own meter "
    "and where it is in the bar and the 8-bar phrase, so it can bring whole phrases back",
}

# What ``melodygen train`` keeps, by training loss, in words (model cards).
SELECTED_BY = {"label": "label NLL", "event": "NLL (the event's probability)"}

# The held-out figure each training loss is judged by (best model, early stopping).
SELECTION_METRIC = {"label": "label_nll", "event": "nll"}


def check_backend_computes(config: str) -> None:
    """Refuse a combination measured to compute the network wrongly.

    Under JAX on an NVIDIA H200 (JAX 0.11.2, Keras 3.15.1) the compiled program
    of the attention layer gave held-out label NLL 2.83 where the same weights
    give 1.02 under TensorFlow, under JAX on a CPU and under JAX run eagerly on
    that GPU; the error grew with training, so early stopping and the choice of
    the best model were wrong. LSTM-only configurations matched exactly.
    """
    import keras

    if keras.backend.backend() != "jax" or not get_config(config).hparams.attn_length:
        return
    import jax

    if jax.devices()[0].platform == "gpu":
        raise ConfigError(
            f"{config} does not train correctly under JAX on a GPU: its compiled attention "
            "layer gives wrong outputs there (benchmarks/README.md); train it with "
            "KERAS_BACKEND=tensorflow, or under JAX on the CPU (JAX_PLATFORMS=cpu)"
        )


def warn_unused_precision(hparams) -> None:
    """Say so when ``gradient_precision`` asks for what this run's layers do not do."""
    from melodygen.nn import kernels
    from melodygen.nn.layers import _tf_cpu_only

    if hparams.gradient_precision == "float32":
        return
    if not _tf_cpu_only() or kernels.load() is None:
        print(
            f"note: gradient_precision={hparams.gradient_precision} applies to MelodyGen's "
            "compiled CPU kernels only; this run computes its gradients in float32"
        )


def check_model_fits_dataset(spec, model_dir, dataset: MelodyDataset, advice: str) -> None:
    """Refuse a dataset encoded differently from the model, saying how each is encoded."""
    if spec != dataset.spec:
        raise DatasetError(
            f"{dataset.path} is encoded for {dataset.spec.config} "
            f"(key {dataset.spec.transpose_to_key}, notes {dataset.spec.min_note}-"
            f"{dataset.spec.max_note}), but the model in {model_dir} expects "
            f"{spec.config} (key {spec.transpose_to_key}, notes "
            f"{spec.min_note}-{spec.max_note}); {advice}"
        )


def format_figures(figures: dict) -> list[str]:
    """The family's own held-out figures; accuracy never shown without event accuracy."""
    return [
        f"nll per step:       {figures['nll']:.4f} nats (label cross-entropy "
        f"{figures['label_nll']:.4f})",
        f"perplexity:         {figures['perplexity']:.3f}",
        f"accuracy:           {figures['accuracy']:.4f} (all steps)",
        f"event accuracy:     {figures['event_accuracy']:.4f} (note-on and note-off steps)",
        f"no-event accuracy:  {figures['no_event_accuracy']:.4f} (held notes and rests)",
    ]


def _with_weights(batches) -> Iterator[Batch]:
    for inputs, targets in batches:
        yield inputs, targets, int((targets[..., 0] >= 0).sum())


class MelodyRnnFamily(Family):
    """The ``melody_rnn`` family (see the module docstring)."""

    name = FAMILY
    title = "Melody RNN"
    summary = "continues a primer, or starts from nothing, in a key and at a tempo"

    # Saved models
    def read_info(self, values: dict, source: str | Path) -> ModelInfo:
        return ModelInfo.from_dict(values, source)

    def build_network(self, info: ModelInfo):
        from melodygen.families.melody_rnn.network import build_model

        return build_model(info.input_size, info.num_classes, info.hparams)

    def max_weight_values(self, info: ModelInfo) -> int:
        return max_weight_values(info)

    def describe(self, info: ModelInfo) -> str:
        layers = info.hparams.rnn_layer_sizes
        sizes = (
            f"{len(layers)}x{layers[0]}" if len(set(layers)) == 1 else "-".join(map(str, layers))
        )
        attention = f", attention {info.hparams.attn_length}" if info.hparams.attn_length else ""
        return f"{info.spec.config}, {sizes} LSTM{attention}"

    def configuration(self, info: ModelInfo) -> str:
        return info.spec.config

    def configurations(self) -> dict[str, str]:
        return dict(CONFIGURATION_WORDS)

    def model_facts(self, info: ModelInfo) -> list[tuple[str, str]]:
        layers = " x ".join(str(size) for size in info.hparams.rnn_layer_sizes)
        rows = [("layers", f"{layers} LSTM")]
        if info.hparams.attn_length:
            rows.append(("attention", f"over the last {info.hparams.attn_length} steps"))
        return rows

    def home_key(self, info: ModelInfo) -> int | None:
        return info.spec.transpose_to_key

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
        from melodygen.families.melody_rnn.dataset import build_dataset
        from melodygen.io.music import ExtractionParams

        if config is None:
            raise ConfigError(f"{self.title} datasets need --config ({', '.join(CONFIGS)})")
        options = dict(options or {})
        fields = {f for f in ExtractionParams.__dataclass_fields__}
        params = ExtractionParams(**{k: v for k, v in options.items() if k in fields})
        return build_dataset(
            inputs,
            config,
            output,
            eval_ratio=eval_ratio,
            params=params,
            transpositions=options.get("transpositions") or (),
            transpose_to_key=options.get("transpose_to_key", "config"),
            workers=workers,
            progress=progress,
        )

    def open_dataset(self, path: str | Path) -> MelodyDataset:
        return MelodyDataset.open(path)

    def new_model_info(self, dataset: MelodyDataset, hparams: str | dict | None) -> ModelInfo:
        return model_info(dataset, hparams)

    def check_fits(self, info: ModelInfo, model_dir: Path, dataset: MelodyDataset) -> None:
        check_model_fits_dataset(
            info.spec, model_dir, dataset, f"build a dataset with --config {info.spec.config}"
        )

    def check_config(self, dataset: MelodyDataset, config: str) -> None:
        if config != dataset.spec.config:
            raise DatasetError(
                f"dataset {dataset.path} was built for {dataset.spec.config}, not {config}; "
                f"rebuild it with --config {config} or train with --config {dataset.spec.config}"
            )

    def with_hparams(self, info: ModelInfo, hparams: str | dict | None) -> ModelInfo:
        if not hparams:
            return info
        try:
            requested = info.hparams.override(hparams)
        except ConfigError as error:
            raise ConfigError(f"--hparams: {error}") from None
        if requested.network_shape() != info.hparams.network_shape():
            raise CheckpointError(
                "--hparams may change how the model trains (learning_rate, batch_size, "
                "dropout_keep_prob, clip_norm, loss), not the network's shape: the weights "
                "would not fit"
            )
        return ModelInfo(**{**info.__dict__, "hparams": requested})

    # Training
    def training_batches(self, split: MelodySplit, info: ModelInfo, seed: int) -> Iterator[Batch]:
        return _with_weights(sequence_batches(split, info.hparams.batch_size, seed=seed))

    def evaluation_batches(self, split: MelodySplit, info: ModelInfo) -> list[Batch]:
        size = info.hparams.batch_size
        return list(_with_weights(sequence_evaluation_batches(split, size)))

    def compile(self, model, info: ModelInfo) -> None:
        compile_model(model, info)

    def evaluate_batches(self, model, batches: list[Batch], info: ModelInfo) -> dict[str, float]:
        return evaluate_batches(model, [(i, t) for i, t, _ in batches], info)

    def selection_metric(self, info: ModelInfo) -> str:
        return SELECTION_METRIC[info.hparams.loss]

    def progress_figures(self, figures: dict, split: str) -> str:
        if split == "train":
            return f"nll {figures['nll']:.3f} label nll {figures['label_nll']:.3f}"
        return (
            f"nll {figures['nll']:.3f} ppl {figures['perplexity']:.2f}"
            f" acc {figures['accuracy']:.3f} event acc {figures['event_accuracy']:.3f}"
        )

    def check_backend(self, info: ModelInfo) -> None:
        check_backend_computes(info.spec.config)
        warn_unused_precision(info.hparams)

    # Evaluation
    def score_tunes(self, model, info: ModelInfo, tunes: Sequence) -> list[TuneScore]:
        from melodygen.families.melody_rnn.scoring import score_tunes

        return score_tunes(model, info, tunes)

    def score_dataset(self, model, info: ModelInfo, dataset: MelodyDataset, split: str):
        from melodygen.families.melody_rnn.scoring import score_dataset

        return score_dataset(model, info, dataset, split)

    def grid_melodies(self, dataset: MelodyDataset, split: str) -> tuple[list, list[str]]:
        loaded = dataset.load(split)
        melodies = [loaded.melody_events(index) for index in range(len(loaded))]
        return melodies, [str(source) for source in loaded.sources]

    def grid_steps_per_bar(self, dataset: MelodyDataset, split: str) -> list[int] | None:
        """Each melody's steps per bar from its stored meter; None for a dataset built
        before meters were stored (format 1)."""
        loaded = dataset.load(split)
        return loaded.steps_per_bar().tolist() if loaded.meters_known else None

    def figure_labels(self) -> dict[str, str]:
        return {
            "nll": "NLL per step (negative log-likelihood of the melody; lower is better)",
            "label_nll": "label NLL (the training loss)",
            "perplexity": "perplexity (lower is better)",
            "accuracy": "accuracy",
            "event_accuracy": "event accuracy (note starts and ends)",
            "no_event_accuracy": "no-event accuracy (held notes and rests)",
            "steps": "steps evaluated",
        }

    def configuration_description(self, name: str) -> str:
        return get_config(name).description

    def selection_words(self, info: ModelInfo) -> str:
        return "the evaluation with the lowest held-out " + SELECTED_BY[info.hparams.loss]

    def figure_lines(self, figures: dict) -> list[str]:
        return format_figures(figures)

    # Generation
    def request_options(self) -> frozenset[str]:
        return self.NOTE_OPTIONS  # a note primer, key, scale, beam search, pitch range

    def follows_form(self) -> bool:
        return True  # sampling copies repeated sections and writes a cadence

    def load_generator(self, checkpoint: str | Path, device: str = "auto"):
        from melodygen.families.melody_rnn.generate import MelodyGenerator

        return MelodyGenerator(checkpoint, device=device)


FAMILY_OBJECT = register(MelodyRnnFamily())
