"""Saved models: weights plus the small JSON that says how to rebuild and use them.

A saved model is a folder with ``model.weights.h5`` (Keras weights) and
``melodygen.json`` (configuration, encoding, hyperparameters, sizes and
training facts). Rebuilding the network from that JSON and loading the weights
works on any Keras backend, so weights trained under JAX on a GPU machine load
unchanged under TensorFlow.

A training run folder holds its final model in ``model/`` and resumable
checkpoints in ``checkpoints/``; anything that takes a checkpoint accepts
either kind of folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from melodygen.dataset import EncodingSpec
from melodygen.errors import CheckpointError
from melodygen.models.configs import HParams

MODEL_JSON = "melodygen.json"
WEIGHTS_FILE = "model.weights.h5"
FINAL_MODEL_DIR = "model"
CHECKPOINTS_DIR = "checkpoints"


@dataclass
class ModelInfo:
    """What ``melodygen.json`` holds: enough to rebuild the network and use it."""

    spec: EncodingSpec
    hparams: HParams
    input_size: int
    num_classes: int
    num_event_classes: int
    label_event_classes: list[int]
    training: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "format": "melodygen-model",
            "format_version": 1,
            "config": self.spec.config,
            "encoding": self.spec.to_dict(),
            "hparams": self.hparams.to_dict(),
            "input_size": self.input_size,
            "num_classes": self.num_classes,
            "num_event_classes": self.num_event_classes,
            "label_event_classes": self.label_event_classes,
            "training": self.training,
        }

    @classmethod
    def for_config(cls, config: str, hparams: HParams | None = None) -> ModelInfo:
        """The info of a fresh network for a registered configuration (sizes from its encoding)."""
        from melodygen.dataset import static_label_event_classes
        from melodygen.models.configs import get_config

        registered = get_config(config)
        spec = EncodingSpec.from_config(registered)
        encoding = spec.make_encoding()
        return cls(
            spec=spec,
            hparams=hparams or registered.hparams,
            input_size=encoding.input_size,
            num_classes=encoding.num_classes,
            num_event_classes=encoding.num_event_classes,
            label_event_classes=static_label_event_classes(encoding),
        )

    @classmethod
    def from_dict(cls, values: dict) -> ModelInfo:
        return cls(
            spec=EncodingSpec.from_dict(values["encoding"]),
            hparams=HParams.from_dict(values["hparams"]),
            input_size=int(values["input_size"]),
            num_classes=int(values["num_classes"]),
            num_event_classes=int(values["num_event_classes"]),
            label_event_classes=[int(c) for c in values["label_event_classes"]],
            training=dict(values.get("training", {})),
        )


def build_network(info: ModelInfo):
    """A fresh network shaped as ``info`` says."""
    from melodygen.models.network import build_model

    return build_model(info.input_size, info.num_classes, info.hparams)


def save_model(path: str | Path, model, info: ModelInfo) -> Path:
    """Write weights and JSON to ``path``, replacing the files only once both are complete."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    temporary_weights = path / ("tmp-" + WEIGHTS_FILE)
    model.save_weights(temporary_weights)
    temporary_json = path / (MODEL_JSON + ".tmp")
    temporary_json.write_text(json.dumps(info.to_dict(), indent=2) + "\n")
    temporary_weights.replace(path / WEIGHTS_FILE)
    temporary_json.replace(path / MODEL_JSON)
    return path


def resolve_model_dir(path: str | Path) -> Path:
    """The model folder ``path`` means: itself, a run's final model, or its latest checkpoint."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        raise CheckpointError(
            f"checkpoint {path} is a file; give the folder that holds {MODEL_JSON}"
        )
    if (path / MODEL_JSON).is_file():
        return path
    if (path / FINAL_MODEL_DIR / MODEL_JSON).is_file():
        return path / FINAL_MODEL_DIR
    latest = latest_checkpoint(path)
    if latest is not None:
        return latest
    raise CheckpointError(
        f"{path} is not a MelodyGen checkpoint: no {MODEL_JSON}, no {FINAL_MODEL_DIR}/ "
        f"and no {CHECKPOINTS_DIR}/ with a saved step"
    )


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a training run, or None."""
    folder = Path(run_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return None
    complete = [p for p in folder.glob("step-*") if (p / MODEL_JSON).is_file()]
    return max(complete, key=lambda p: p.name) if complete else None


def read_model_info(path: str | Path) -> tuple[Path, ModelInfo]:
    """The model folder and its parsed JSON, with clear errors for anything else."""
    model_dir = resolve_model_dir(path)
    try:
        values = json.loads((model_dir / MODEL_JSON).read_text())
        if values.get("format") != "melodygen-model":
            raise ValueError("not a melodygen-model file")
        info = ModelInfo.from_dict(values)
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"{model_dir / MODEL_JSON} is not a valid MelodyGen model file ({error})"
        ) from None
    if not (model_dir / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{model_dir} has no {WEIGHTS_FILE}")
    return model_dir, info


def load_model(path: str | Path):
    """Rebuild the network from its JSON and load its weights; returns (model, info)."""
    model_dir, info = read_model_info(path)
    model = build_network(info)
    try:
        model.load_weights(model_dir / WEIGHTS_FILE)
    except (ValueError, OSError, KeyError) as error:
        raise CheckpointError(
            f"weights in {model_dir} do not fit the network its {MODEL_JSON} describes ({error})"
        ) from None
    return model, info
