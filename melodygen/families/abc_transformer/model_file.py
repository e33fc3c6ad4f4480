"""An ``abc_transformer`` model's file: the info in ``melodygen.json`` and its schema.

The file holds the configuration it was built as, the hyperparameters, the fitted BPE
tokenizer (its ``tokenizers`` JSON as one string), the metadata vocabulary, the header
table (which meters, units, keys and dance types went together in training) and the
training facts. The whole file is at most 1 MB (``melodygen.core.checkpoint``; the seed's
is about 30 KB). A damaged or hostile file is refused in one line naming the file and the
field, before Keras builds anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from melodygen.core.checkpoint import MODEL_JSON, Schema, check_model_header, kind
from melodygen.errors import ConfigError, ModelFileError
from melodygen.families.abc_transformer.configs import CONFIGS, HParams
from melodygen.families.abc_transformer.metadata import HeaderTable, MetaVocabulary
from melodygen.families.abc_transformer.tokenizer import BodyTokenizer, TokenizerError

FAMILY = "abc_transformer"
WEIGHTS_FILE_FACTOR = 3  # the weights and, from a training run, Adam's two moments
KNOWN_FIELDS = {
    "format",
    "format_version",
    "family",
    "config",
    "hparams",
    "tokenizer",
    "meta_vocab",
    "headers",
    "vocab_size",
    "parameters",
    "training",
}


@dataclass
class TransformerModelInfo:
    """What an ``abc_transformer`` model's ``melodygen.json`` holds."""

    family: ClassVar[str] = FAMILY

    config: str
    hparams: HParams
    tokenizer: BodyTokenizer
    meta_vocab: MetaVocabulary
    headers: HeaderTable
    training: dict = field(default_factory=dict)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.size

    @property
    def parameters(self) -> int:
        return self.hparams.parameter_count(self.tokenizer.size, self.meta_vocab.size)

    def to_dict(self) -> dict:
        return {
            "format": "melodygen-model",
            "format_version": 1,
            "family": FAMILY,
            "config": self.config,
            "hparams": self.hparams.to_dict(),
            "vocab_size": self.tokenizer.size,
            "parameters": self.parameters,
            "meta_vocab": self.meta_vocab.to_list(),
            "headers": self.headers.to_list(),
            "training": self.training,
            "tokenizer": self.tokenizer.json_text,
        }

    @classmethod
    def from_dict(cls, values: object, source: str | Path = MODEL_JSON) -> TransformerModelInfo:
        """The info ``values`` describe, checked whole (any problem: one ModelFileError)."""
        check_model_header(values, source)
        schema = Schema(source)
        for key in values:
            if key not in KNOWN_FIELDS:
                schema.fail(str(key)[:40], f"is not a field of an {FAMILY} model file")
        if values.get("family") != FAMILY:
            schema.fail("family", f'must be "{FAMILY}"')
        config = schema.choice(values, "config", tuple(CONFIGS))
        try:
            tokenizer = BodyTokenizer.from_json(schema.get(values, "tokenizer"))
        except TokenizerError as error:
            schema.fail("tokenizer", str(error))
        try:
            meta_vocab = MetaVocabulary.from_list(schema.get(values, "meta_vocab"))
        except ValueError as error:
            schema.fail("meta_vocab", str(error))
        try:
            headers = HeaderTable.from_list(schema.get(values, "headers"))
        except ValueError as error:
            schema.fail("headers", str(error))
        raw = schema.object(schema.get(values, "hparams"), "hparams")
        try:
            hparams = HParams.from_dict(raw)
            hparams.validate(tokenizer.size, meta_vocab.size)
        except (ConfigError, TypeError) as error:
            raise ModelFileError(f"{source}: hparams: {error}") from None
        if "vocab_size" in values and values["vocab_size"] != tokenizer.size:
            schema.fail("vocab_size", f"must be {tokenizer.size}, the tokenizer's size")
        training = values.get("training", {})
        if not isinstance(training, dict):
            schema.fail("training", f"must be a JSON object, not {kind(training)}")
        return cls(config, hparams, tokenizer, meta_vocab, headers, dict(training))


def max_weight_values(info: TransformerModelInfo) -> int:
    """The most numbers a weights file of this network may hold."""
    return WEIGHTS_FILE_FACTOR * info.parameters + 1024
