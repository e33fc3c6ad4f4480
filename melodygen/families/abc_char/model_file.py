"""An ``abc_char`` model's file: the info in ``melodygen.json`` and its schema.

The file holds the configuration it was built as, the hyperparameters, the vocabulary
(its characters in id order from id 2, after ``<end>`` and ``<unk>``), whether chord
symbols were kept, and the training facts. A damaged or hostile file is refused in one
line naming the file and the field, before Keras builds anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from melodygen.core.checkpoint import MODEL_JSON, Schema, check_model_header, kind
from melodygen.errors import ConfigError, ModelFileError
from melodygen.families.abc_char.configs import CONFIGS, MAX_VOCABULARY, HParams
from melodygen.families.abc_char.vocab import Vocabulary

FAMILY = "abc_char"
WEIGHTS_FILE_FACTOR = 3  # the weights and, from a training run, Adam's two moments
KNOWN_FIELDS = {
    "format",
    "format_version",
    "family",
    "config",
    "hparams",
    "vocab",
    "chords",
    "vocab_size",
    "parameters",
    "training",
}


@dataclass
class CharModelInfo:
    """What an ``abc_char`` model's ``melodygen.json`` holds."""

    family: ClassVar[str] = FAMILY

    config: str
    hparams: HParams
    vocab: Vocabulary
    chords: bool = False
    training: dict = field(default_factory=dict)

    @property
    def vocab_size(self) -> int:
        return self.vocab.size

    @property
    def parameters(self) -> int:
        return self.hparams.parameter_count(self.vocab.size)

    def to_dict(self) -> dict:
        return {
            "format": "melodygen-model",
            "format_version": 1,
            "family": FAMILY,
            "config": self.config,
            "hparams": self.hparams.to_dict(),
            "vocab": self.vocab.to_list(),
            "chords": self.chords,
            "vocab_size": self.vocab.size,
            "parameters": self.parameters,
            "training": self.training,
        }

    @classmethod
    def from_dict(cls, values: object, source: str | Path = MODEL_JSON) -> CharModelInfo:
        """The info ``values`` describe, checked whole (any problem: one ModelFileError)."""
        check_model_header(values, source)
        schema = Schema(source)
        for key in values:
            if key not in KNOWN_FIELDS:
                schema.fail(str(key)[:40], "is not a field of an abc_char model file")
        if values.get("family") != FAMILY:
            schema.fail("family", f'must be "{FAMILY}"')
        config = schema.choice(values, "config", tuple(CONFIGS))
        chars = schema.get(values, "vocab")
        if not isinstance(chars, list) or not 1 <= len(chars) <= MAX_VOCABULARY - 2:
            schema.fail("vocab", f"must be a list of 1 to {MAX_VOCABULARY - 2} characters")
        for char in chars:
            if not isinstance(char, str) or len(char) != 1:
                schema.fail("vocab", f"must hold single characters, not {kind(char)}")
        if len(set(chars)) != len(chars):
            schema.fail("vocab", "holds a character twice")
        vocab = Vocabulary(tuple(chars))
        chords = values.get("chords", False)
        if not isinstance(chords, bool):
            schema.fail("chords", f"must be true or false, not {kind(chords)}")
        raw = schema.object(schema.get(values, "hparams"), "hparams")
        try:
            hparams = HParams.from_dict(raw)
            hparams.validate(vocab.size)
        except (ConfigError, TypeError) as error:
            raise ModelFileError(f"{source}: hparams: {error}") from None
        if "vocab_size" in values and values["vocab_size"] != vocab.size:
            schema.fail("vocab_size", f"must be {vocab.size}, the vocabulary's size")
        training = values.get("training", {})
        return cls(config, hparams, vocab, chords, dict(training))


def max_weight_values(info: CharModelInfo) -> int:
    """The most numbers a weights file of this network may hold."""
    return WEIGHTS_FILE_FACTOR * info.parameters + 1024
