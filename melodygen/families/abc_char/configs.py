"""The ``abc_char`` family's hyperparameters and named configurations, held as data.

``char_seed`` is the seed project's network: a 512-wide character embedding, three LSTM
layers of 256 units with dropout 0.2 after each, and a dense layer to the characters'
logits, trained on batches of 16 with Adam at 0.001. With the seed's 86-character
vocabulary that is 1,904,214 weights (embedding 44,032; LSTMs 787,456 + 525,312 +
525,312; logits 22,102), the "about 1.9 M parameters" the seed reported. ``char_wide``
doubles the LSTMs' width (3 x 512, about 5.6 M weights) for a GPU and the ~5,000 folk
tunes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from melodygen.core.hparams import (
    check_int,
    check_layer_sizes,
    check_number,
    override,
    shown,
)
from melodygen.errors import ConfigError

# Sane bounds (the configurations are far inside them): past these a network is a typo or
# a hostile file, and would exhaust memory before training a step.
MAX_BATCH_SIZE = 4096
MAX_LAYERS = 8
MAX_LAYER_SIZE = 4096
MAX_EMBEDDING_SIZE = 4096
MAX_CLIP_NORM = 1e6
MAX_LEARNING_RATE = 10.0
MAX_PARAMETERS = 50_000_000
MAX_VOCABULARY = 1024
"""The most symbols a vocabulary may hold (ABC text needs under a hundred)."""


@dataclass(frozen=True)
class HParams:
    """Training and network hyperparameters (the seed's by default).

    ``dropout`` is the share of each LSTM layer's outputs dropped in training (the seed's
    ``Dropout(0.2)`` after every LSTM). ``batch_size`` counts tunes: each row of a batch
    is one whole tune, as the network reads and writes tunes whole.
    """

    batch_size: int = 16
    embedding_size: int = 512
    rnn_layer_sizes: tuple[int, ...] = (256, 256, 256)
    dropout: float = 0.2
    learning_rate: float = 0.001
    clip_norm: float = 5.0

    def override(self, overrides: str | dict | None) -> HParams:
        """A copy with ``k=v,k=v`` (or a dict) applied, type-checked field by field."""
        return override(self, overrides)

    def validate(self, vocab_size: int = 100) -> None:
        """Refuse values no network could train with, or whose network would not fit."""
        check_int("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        check_int("embedding_size", self.embedding_size, 1, MAX_EMBEDDING_SIZE)
        sizes = self.rnn_layer_sizes
        check_layer_sizes("rnn_layer_sizes", sizes, MAX_LAYERS, MAX_LAYER_SIZE, "[256,256,256]")
        number = self.dropout
        if (
            not isinstance(number, int | float)
            or isinstance(number, bool)
            or not math.isfinite(number)
            or not 0.0 <= number < 1.0
        ):
            raise ConfigError(f"dropout must be a number in [0, 1), not {shown(number)}")
        check_number("learning_rate", self.learning_rate, 0.0, MAX_LEARNING_RATE)
        check_number("clip_norm", self.clip_norm, 0.0, MAX_CLIP_NORM)
        weights = self.parameter_count(vocab_size)
        if weights > MAX_PARAMETERS:
            raise ConfigError(
                f"embedding_size {self.embedding_size} and rnn_layer_sizes {list(sizes)} make "
                f"a network of about {weights:,} weights, over the limit of "
                f"{MAX_PARAMETERS:,}; use fewer or smaller layers"
            )

    def parameter_count(self, vocab_size: int) -> int:
        """The network's weights: embedding, LSTM layers, logits (exact)."""
        total = vocab_size * self.embedding_size
        width = self.embedding_size
        for size in self.rnn_layer_sizes:
            total += 4 * (width + size + 1) * size
            width = size
        return total + (width + 1) * vocab_size

    def network_shape(self) -> tuple:
        """What the weights' shapes depend on: a fine-tuned or resumed run keeps it."""
        return self.embedding_size, tuple(self.rnn_layer_sizes)

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["rnn_layer_sizes"] = list(self.rnn_layer_sizes)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> HParams:
        """Hyperparameters from a model file's JSON, every field required and checked."""
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = [key for key in values if key not in fields]
        if unknown:
            raise ConfigError(f"{shown(unknown[0])} is not a hyperparameter of abc_char")
        missing = [key for key in fields if key not in values]
        if missing:
            raise ConfigError(f"{missing[0]} is missing")
        values = dict(values)
        if isinstance(values["rnn_layer_sizes"], list):
            values["rnn_layer_sizes"] = tuple(values["rnn_layer_sizes"])
        hparams = cls(**values)
        hparams.validate()
        return hparams


@dataclass(frozen=True)
class CharConfig:
    """One named configuration: what it is for, and its hyperparameters."""

    name: str
    description: str
    hparams: HParams


CONFIGS: dict[str, CharConfig] = {
    config.name: config
    for config in [
        CharConfig(
            name="char_seed",
            description="the seed's network: 512-wide embedding, 3 x 256 LSTM, dropout 0.2",
            hparams=HParams(),
        ),
        CharConfig(
            name="char_wide",
            description="3 x 512 LSTM: more room for thousands of tunes (train on a GPU)",
            hparams=HParams(rnn_layer_sizes=(512, 512, 512), batch_size=32),
        ),
    ]
}
DEFAULT_CONFIG = "char_seed"

CONFIGURATION_WORDS = {
    "char_seed": "the seed's size: learns a tunebook of a few hundred jigs well",
    "char_wide": "twice as wide: for thousands of tunes of every kind",
}


def get_config(name: str) -> CharConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ConfigError(
            f"unknown configuration {shown(name)}; choose one of: {', '.join(CONFIGS)}"
        ) from None
