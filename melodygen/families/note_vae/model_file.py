"""A ``note_vae`` model's file: the info in ``melodygen.json`` and its schema.

The file holds the configuration it was built as, the hyperparameters, the note classes
(durations in ticks of :data:`~melodygen.families.note_vae.notes.TICKS_PER_QUARTER`
a quarter note, velocities as MIDI velocities), the window length and the training
facts. A damaged or hostile file is refused in one line naming the file and the field,
before Keras builds anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from melodygen.core.checkpoint import MODEL_JSON, Schema, check_model_header
from melodygen.errors import ConfigError, ModelFileError
from melodygen.families.note_vae.configs import CONFIGS, HParams
from melodygen.families.note_vae.dataset import MAX_CLASSES, WINDOW
from melodygen.families.note_vae.notes import MAX_DURATION_STEPS, TICKS_PER_QUARTER, NoteClasses

FAMILY = "note_vae"
WEIGHTS_FILE_FACTOR = 3  # the weights and, from a training run, Adam's two moments
KNOWN_FIELDS = {
    "format",
    "format_version",
    "family",
    "config",
    "hparams",
    "durations",
    "velocities",
    "ticks_per_quarter",
    "window",
    "parameters",
    "training",
}


@dataclass
class VaeModelInfo:
    """What a ``note_vae`` model's ``melodygen.json`` holds."""

    family: ClassVar[str] = FAMILY

    config: str
    hparams: HParams
    classes: NoteClasses
    training: dict = field(default_factory=dict)

    @property
    def parameters(self) -> int:
        return self.hparams.parameter_count(*self.classes.sizes)

    def to_dict(self) -> dict:
        return {
            "format": "melodygen-model",
            "format_version": 1,
            "family": FAMILY,
            "config": self.config,
            "hparams": self.hparams.to_dict(),
            "durations": list(self.classes.durations),
            "velocities": list(self.classes.velocities),
            "ticks_per_quarter": TICKS_PER_QUARTER,
            "window": WINDOW,
            "parameters": self.parameters,
            "training": self.training,
        }

    @classmethod
    def from_dict(cls, values: object, source: str | Path = MODEL_JSON) -> VaeModelInfo:
        """The info ``values`` describe, checked whole (any problem: one ModelFileError)."""
        check_model_header(values, source)
        schema = Schema(source)
        for key in values:
            if key not in KNOWN_FIELDS:
                schema.fail(str(key)[:40], "is not a field of a note_vae model file")
        if values.get("family") != FAMILY:
            schema.fail("family", f'must be "{FAMILY}"')
        config = schema.choice(values, "config", tuple(CONFIGS))
        durations = schema.integers(values, "durations", 1, MAX_DURATION_STEPS, MAX_CLASSES)
        velocities = schema.integers(values, "velocities", 1, 127, MAX_CLASSES)
        for name, items in (("durations", durations), ("velocities", velocities)):
            if not items or sorted(set(items)) != items:
                schema.fail(name, "must hold at least one class, in ascending order")
        classes = NoteClasses(tuple(durations), tuple(velocities))
        grid = schema.integer(values, "ticks_per_quarter", 1, 10**6)
        if grid != TICKS_PER_QUARTER:
            schema.fail("ticks_per_quarter", f"must be {TICKS_PER_QUARTER}, the grid this reads")
        window = schema.integer(values, "window", 1, 10**6)
        if window != WINDOW:
            schema.fail("window", f"must be {WINDOW}, the window this MelodyGen reads")
        raw = schema.object(schema.get(values, "hparams"), "hparams")
        try:
            hparams = HParams.from_dict(raw)
            hparams.validate(*classes.sizes)
        except (ConfigError, TypeError) as error:
            raise ModelFileError(f"{source}: hparams: {error}") from None
        expected = hparams.parameter_count(*classes.sizes)
        if "parameters" in values and values["parameters"] != expected:
            schema.fail("parameters", f"must be {expected:,}, the network's weights")
        return cls(config, hparams, classes, dict(values.get("training", {})))


def max_weight_values(info: VaeModelInfo) -> int:
    """The most numbers a weights file of this network may hold."""
    return WEIGHTS_FILE_FACTOR * info.parameters + 1024
