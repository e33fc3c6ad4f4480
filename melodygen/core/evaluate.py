"""Held-out evaluation of a saved model on a built dataset."""

from __future__ import annotations

from pathlib import Path

from melodygen.core.checkpoint import load_model, resolve_model_dir
from melodygen.errors import DatasetError
from melodygen.families.melody_rnn.dataset import MelodyDataset

REPORT_KEYS = (
    "nll",
    "perplexity",
    "accuracy",
    "event_accuracy",
    "no_event_accuracy",
    "label_nll",
    "steps",
)


def evaluate(
    checkpoint: str | Path, data: str | Path, split: str = "eval", batch_size: int | None = None
) -> dict:
    """Event NLL (nats per step), perplexity and accuracies of ``checkpoint`` on ``data``.

    ``checkpoint`` is a saved-model folder or a training run folder (its final
    model, or the latest checkpoint while it is still training).
    """
    from melodygen.core.train import evaluate_batches, evaluation_batches

    dataset = MelodyDataset.open(data)
    model_dir = resolve_model_dir(checkpoint)
    model, info = load_model(model_dir)
    check_model_fits_dataset(
        info.spec, model_dir, dataset, f"build a dataset with --config {info.spec.config}"
    )
    melodies = dataset.load(split)
    if len(melodies) == 0:
        raise DatasetError(f"the {split} split of {dataset.path} holds no melodies")
    figures = evaluate_batches(model, evaluation_batches(melodies, batch_size or 64), info)
    figures = {key: figures[key] for key in REPORT_KEYS}
    figures["steps"] = int(figures["steps"])
    figures["melodies"] = len(melodies)
    figures["model"] = str(model_dir)
    figures["data"] = str(dataset.path)
    figures["split"] = split
    return figures


def format_report(figures: dict) -> str:
    """Evaluation figures as aligned lines; accuracy never shown without event accuracy."""
    return "\n".join(
        [
            f"model:              {figures['model']}",
            f"data:               {figures['data']} ({figures['split']}, "
            f"{figures['melodies']} melodies, {figures['steps']} steps)",
            f"nll per step:       {figures['nll']:.4f} nats (label cross-entropy "
            f"{figures['label_nll']:.4f})",
            f"perplexity:         {figures['perplexity']:.3f}",
            f"accuracy:           {figures['accuracy']:.4f} (all steps)",
            f"event accuracy:     {figures['event_accuracy']:.4f} (note-on and note-off steps)",
            f"no-event accuracy:  {figures['no_event_accuracy']:.4f} (held notes and rests)",
        ]
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
