"""A Melody RNN's model file: the info in ``melodygen.json`` and its schema.

The six shipped checkpoints were written before model families existed: their files have
no ``family`` field, which means ``melody_rnn``, and load here unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from melodygen.core.checkpoint import MODEL_JSON, Schema, check_model_header, shown
from melodygen.errors import ConfigError, ModelFileError, one_line
from melodygen.families.melody_rnn.configs import CONFIGS, HParams
from melodygen.families.melody_rnn.dataset import EncodingSpec

FAMILY = "melody_rnn"
ENCODINGS = ("onehot", "lookback", "key", "phrase")
# Bounds of the encoding fields: wide around every registered configuration.
MAX_LOOKBACKS = 8
MAX_LOOKBACK_DISTANCE = 1024
MAX_COUNTER_BITS = 16
MAX_STEPS_PER_QUARTER = 24
MAX_LOOKBACK_BARS = 64
MAX_PHRASE_BARS = 64
# A weights file holds the network's weights and, saved from a compiled model (a training
# run's), Adam's two moments of each; never more. A compressed HDF5 dataset of 10^10 zeros
# is a few KB on disk and 40 GB once read, so the shapes are checked before any reading.
WEIGHTS_FILE_FACTOR = 3


def max_weight_values(info: ModelInfo) -> int:
    """The most numbers a weights file of this network may hold (see WEIGHTS_FILE_FACTOR)."""
    expected = info.hparams.parameter_count(info.input_size, info.num_classes)
    return WEIGHTS_FILE_FACTOR * expected + 1024


@dataclass
class ModelInfo:
    """What a Melody RNN's ``melodygen.json`` holds: enough to rebuild the network and use it."""

    family: ClassVar[str] = FAMILY

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
            "family": FAMILY,
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
        from melodygen.families.melody_rnn.configs import get_config
        from melodygen.families.melody_rnn.dataset import static_label_event_classes

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
    def from_dict(cls, values: dict, source: str | Path = MODEL_JSON) -> ModelInfo:
        """The info ``values`` describe, checked whole first (``validate_model_dict``)."""
        check_model_header(values, source)
        validate_model_dict(values, source)
        return cls(
            spec=EncodingSpec.from_dict(values["encoding"]),
            hparams=HParams.from_dict(values["hparams"]),
            input_size=int(values["input_size"]),
            num_classes=int(values["num_classes"]),
            num_event_classes=int(values["num_event_classes"]),
            label_event_classes=[int(c) for c in values["label_event_classes"]],
            training=dict(values.get("training", {})),
        )


def validate_model_dict(values: object, source: str | Path = MODEL_JSON) -> None:
    """Check a whole Melody RNN model file (past ``check_model_header``) against its schema.

    Types, ranges and the sizes the encoding implies are all checked, so a hostile or
    damaged file ends in one line naming the file and the field, never in a traceback
    from Keras or an attempt to allocate a 10^9-unit layer.
    """
    from melodygen.families.melody_rnn.dataset import static_label_event_classes

    schema = Schema(source)
    config = schema.choice(values, "config", tuple(CONFIGS))

    encoding = schema.object(schema.get(values, "encoding"), "encoding")
    known = {f.name for f in dataclasses.fields(EncodingSpec)}
    for key in encoding:
        if key not in known:
            schema.fail(f"encoding.{key[:40]}", "is not a known field")
    if schema.get(encoding, "config", "encoding.") != config:
        schema.fail("encoding.config", f"must be the model's config {shown(config)}")
    kind = schema.choice(encoding, "encoding", ENCODINGS, "encoding.")
    low = schema.integer(encoding, "min_note", 0, 127, "encoding.")
    high = schema.integer(encoding, "max_note", 1, 128, "encoding.")
    if low >= high:
        schema.fail("encoding.min_note", f"({low}) must be below encoding.max_note ({high})")
    if schema.get(encoding, "transpose_to_key", "encoding.") is not None:
        schema.integer(encoding, "transpose_to_key", 0, 11, "encoding.")
    lookbacks = schema.integers(
        encoding, "lookback_distances", 1, MAX_LOOKBACK_DISTANCE, MAX_LOOKBACKS, "encoding."
    )
    if kind == "key" and not lookbacks:
        schema.fail("encoding.lookback_distances", "must hold at least one distance for key")
    schema.integer(encoding, "binary_counter_bits", 0, MAX_COUNTER_BITS, "encoding.")
    schema.integer(encoding, "steps_per_quarter", 1, MAX_STEPS_PER_QUARTER, "encoding.")
    # The phrase encoding's fields: absent from Magenta's encodings' files.
    bars = []
    if "lookback_bars" in encoding or kind == "phrase":
        bars = schema.integers(
            encoding, "lookback_bars", 1, MAX_LOOKBACK_BARS, MAX_LOOKBACKS, "encoding."
        )
    phrase = 0
    if "phrase_bars" in encoding or kind == "phrase":
        phrase = schema.integer(encoding, "phrase_bars", 0, MAX_PHRASE_BARS, "encoding.")
    if kind == "phrase" and not bars:
        schema.fail("encoding.lookback_bars", "must hold at least one number of bars for phrase")
    if kind == "phrase" and phrase < 1:
        schema.fail("encoding.phrase_bars", "must be 1 or more for phrase")

    raw = schema.object(schema.get(values, "hparams"), "hparams")
    try:
        hparams = HParams.from_dict(raw)
        hparams.validate()
    except ConfigError as error:  # its messages start with the field's name
        raise ModelFileError(f"{source}: hparams.{error}") from None

    try:
        made = EncodingSpec.from_dict(encoding).make_encoding()
    except (ValueError, TypeError) as error:
        schema.fail("encoding", f"cannot be built ({one_line(error)})")
    for key, size in (
        ("input_size", made.input_size),
        ("num_classes", made.num_classes),
        ("num_event_classes", made.num_event_classes),
    ):
        if schema.integer(values, key, 1, 100_000) != size:
            schema.fail(key, f"must be {size}, as the encoding makes it, not {values[key]}")
    label_events = schema.integers(values, "label_event_classes", 0, 100_000, 100_000)
    if label_events != static_label_event_classes(made):
        schema.fail("label_event_classes", "does not match the encoding")
