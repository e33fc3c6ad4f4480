"""The ``abc_transformer`` family's hyperparameters and named configurations, held as data.

``transformer_seed`` is the issue's network: 128-wide embeddings, 4 encoder and 4 decoder
layers of 8 heads with 512-wide feed-forward layers, dropout 0.1, batches of 32 tunes, Adam at 5e-4
reached by a linear warmup over the first 400 steps. On the Nottingham and folk_abc tunes
(1,000 BPE tokens, 1,677 metadata tokens of which 1,629 are title words) that is 2,358,120
weights. ``transformer_tiny`` is for tests.

``max_tokens`` is the longest tune body the network reads, in BPE tokens (its position
embedding has ``max_tokens + 1`` rows: ``<s>`` then the tokens). 256 keeps 99.3% of the
Nottingham and folk_abc tunes whole (median 89 tokens, 99th percentile 233, longest 809);
``dataset build`` drops and counts the longer ones.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from melodygen.core.hparams import check_int, check_number, override, shown
from melodygen.errors import ConfigError

# Sane bounds (the configurations are far inside them): past these a network is a typo or
# a hostile file, and would exhaust memory before training a step.
MAX_BATCH_SIZE = 4096
MAX_LAYERS = 24
MAX_EMBEDDING_SIZE = 2048
MAX_HEADS = 64
MAX_FEED_FORWARD = 8192
MAX_TOKENS = 4096
MAX_WARMUP = 1_000_000
MAX_CLIP_NORM = 1e6
MAX_LEARNING_RATE = 10.0
MAX_PARAMETERS = 200_000_000
MAX_BODY_VOCABULARY = 8192
"""The most BPE tokens a body vocabulary may hold (the configurations ask for 1,000)."""
MAX_META_VOCABULARY = 8192
"""The most metadata tokens (meters, keys, dance types, title words, unknowns)."""
TITLE_WORDS = 8
"""Title words the encoder reads (the first ones; a tune title is rarely longer)."""
FIXED_FIELDS = 5
"""Encoder slots before the title words: meter, unit length, tonic, mode, dance type."""
META_SLOTS = FIXED_FIELDS + TITLE_WORDS


def _check_share(name: str, value: object, one_allowed: bool = False) -> None:
    """A share from 0 to below 1 (or to 1 itself when ``one_allowed``)."""
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not (0.0 <= value <= 1.0 if one_allowed else 0.0 <= value < 1.0)
    ):
        span = "[0, 1]" if one_allowed else "[0, 1)"
        raise ConfigError(f"{name} must be a number in {span}, not {shown(value)}")


@dataclass(frozen=True)
class HParams:
    """Training and network hyperparameters (the ``transformer_seed`` configuration's by default).

    ``batch_size`` counts tunes. ``dropout`` is the share of each residual branch and of
    the embeddings dropped in training. ``field_dropout`` is the chance that one metadata
    field (meter, unit, tonic, mode, dance type) of a training tune is shown as its
    "unknown" token, ``title_dropout`` the chance that its whole title is left out: so
    the network learns to write a tune from any subset of the controls.
    ``warmup_steps``: the learning rate rises linearly to ``learning_rate`` over them.
    """

    batch_size: int = 32
    embedding_size: int = 128
    encoder_layers: int = 4
    decoder_layers: int = 4
    heads: int = 8
    feed_forward_size: int = 512
    dropout: float = 0.1
    field_dropout: float = 0.1
    title_dropout: float = 0.5
    learning_rate: float = 5e-4
    warmup_steps: int = 400
    clip_norm: float = 1.0
    max_tokens: int = 256

    def override(self, overrides: str | dict | None) -> HParams:
        """A copy with ``k=v,k=v`` (or a dict) applied, type-checked field by field."""
        return override(self, overrides)

    def validate(self, body_vocab: int = 1000, meta_vocab: int = 100) -> None:
        """Refuse values no network could train with, or whose network would not fit."""
        check_int("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        check_int("embedding_size", self.embedding_size, 1, MAX_EMBEDDING_SIZE)
        check_int("encoder_layers", self.encoder_layers, 1, MAX_LAYERS)
        check_int("decoder_layers", self.decoder_layers, 1, MAX_LAYERS)
        check_int("heads", self.heads, 1, MAX_HEADS)
        if self.embedding_size % self.heads:
            raise ConfigError(
                f"embedding_size {self.embedding_size} must be a multiple of heads {self.heads}"
            )
        check_int("feed_forward_size", self.feed_forward_size, 1, MAX_FEED_FORWARD)
        _check_share("dropout", self.dropout)
        _check_share("field_dropout", self.field_dropout)
        _check_share("title_dropout", self.title_dropout, one_allowed=True)
        check_number("learning_rate", self.learning_rate, 0.0, MAX_LEARNING_RATE)
        check_int("warmup_steps", self.warmup_steps, 0, MAX_WARMUP)
        check_number("clip_norm", self.clip_norm, 0.0, MAX_CLIP_NORM)
        check_int("max_tokens", self.max_tokens, 8, MAX_TOKENS)
        weights = self.parameter_count(body_vocab, meta_vocab)
        if weights > MAX_PARAMETERS:
            raise ConfigError(
                f"these sizes make a network of about {weights:,} weights, over the limit of "
                f"{MAX_PARAMETERS:,}; use fewer or smaller layers"
            )

    def parameter_count(self, body_vocab: int, meta_vocab: int) -> int:
        """The network's weights (exact): embeddings, blocks, final norms, logits."""
        d, ff = self.embedding_size, self.feed_forward_size
        attention = 4 * (d * d + d)
        feed_forward = d * ff + ff + ff * d + d
        norm = 2 * d
        encoder = meta_vocab * d + META_SLOTS * d
        encoder += self.encoder_layers * (attention + feed_forward + 2 * norm) + norm
        decoder = body_vocab * d + (self.max_tokens + 1) * d
        decoder += self.decoder_layers * (2 * attention + feed_forward + 3 * norm) + norm
        decoder += d * body_vocab + body_vocab
        return encoder + decoder

    def network_shape(self) -> tuple:
        """What the weights' shapes depend on: a fine-tuned or resumed run keeps it."""
        return (
            self.embedding_size,
            self.encoder_layers,
            self.decoder_layers,
            self.heads,
            self.feed_forward_size,
            self.max_tokens,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> HParams:
        """Hyperparameters from a model file's JSON, every field required and checked."""
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = [key for key in values if key not in fields]
        if unknown:
            raise ConfigError(f"{shown(unknown[0])} is not a hyperparameter of abc_transformer")
        missing = [key for key in fields if key not in values]
        if missing:
            raise ConfigError(f"{missing[0]} is missing")
        hparams = cls(**values)
        hparams.validate()
        return hparams


@dataclass(frozen=True)
class TransformerConfig:
    """One named configuration: what it is for, its BPE vocabulary size, its network."""

    name: str
    description: str
    vocab_size: int
    """BPE tokens asked of the tokenizer fitted at ``dataset build`` (specials included; a
    small tunebook may give fewer, when no pair is left to merge)."""
    hparams: HParams


CONFIGS: dict[str, TransformerConfig] = {
    config.name: config
    for config in [
        TransformerConfig(
            name="transformer_seed",
            description="128-wide, 4 encoder + 4 decoder layers of 8 heads, 1,000 BPE tokens",
            vocab_size=1000,
            hparams=HParams(),
        ),
        TransformerConfig(
            name="transformer_tiny",
            description="16-wide, 1 + 1 layers: for tests and smoke runs only",
            vocab_size=200,
            hparams=HParams(
                batch_size=4,
                embedding_size=16,
                encoder_layers=1,
                decoder_layers=1,
                heads=2,
                feed_forward_size=32,
                dropout=0.0,
                learning_rate=0.01,
                warmup_steps=0,
            ),
        ),
    ]
}
DEFAULT_CONFIG = "transformer_seed"

CONFIGURATION_WORDS = {
    "transformer_seed": "the issue's size: a tune in the meter, key and dance type asked for",
    "transformer_tiny": "a toy for tests: learns little",
}


def get_config(name: str) -> TransformerConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ConfigError(
            f"unknown configuration {shown(name)}; choose one of: {', '.join(CONFIGS)}"
        ) from None
