"""The registry of Melody RNN configurations, held as data.

Each entry mirrors one of Magenta's ``melody_rnn`` configurations: which
encoding turns a melody into network inputs and labels, which pitch range and
key the melody is squashed into, and the default hyperparameters. Everything
that trains, evaluates or generates looks configurations up here by name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from melodygen.core.hparams import (
    check_int,
    check_layer_sizes,
    check_number,
    override,
    shown,
)
from melodygen.errors import ConfigError
from melodygen.theory import STEPS_PER_BAR, STEPS_PER_QUARTER  # 4/4, as Magenta assumes

LOSSES = ("label", "event")
GRADIENT_PRECISIONS = ("float32", "bfloat16")
# Sane bounds of the hyperparameters (Magenta's defaults are far inside them): past these a
# network is a typo or a hostile file, and would exhaust memory before training a step.
MAX_BATCH_SIZE = 4096
MAX_LAYERS = 8
MAX_LAYER_SIZE = 4096
MAX_ATTN_LENGTH = 512
MAX_CLIP_NORM = 1e6
MAX_LEARNING_RATE = 10.0
MAX_PARAMETERS = 50_000_000


@dataclass(frozen=True)
class HParams:
    """Training and network hyperparameters (Magenta's defaults)."""

    batch_size: int = 128
    rnn_layer_sizes: tuple[int, ...] = (128, 128)
    dropout_keep_prob: float = 0.5
    attn_length: int = 0
    clip_norm: float = 5.0
    learning_rate: float = 0.001
    # "label": Magenta's cross-entropy of the one label the encoder chose; "event": the
    # probability of the actual event, summed over every label that decodes to it (for the
    # lookback encodings a repeat label and the plain label can both stand for one event).
    loss: str = "label"
    # Inputs of the big weight- and input-gradient matmuls of the compiled CPU kernels' backward
    # pass: "bfloat16" makes a training step about 8% faster, with float32 accumulation;
    # every other path (TensorFlow loops, JAX, GPUs) computes in float32 whatever it says.
    gradient_precision: str = "float32"

    def override(self, overrides: str | dict | None) -> HParams:
        """A copy with ``k=v,k=v`` (or a dict) applied, type-checked field by field."""
        return override(self, overrides)

    def validate(self) -> None:
        """Reject values no network could train with, or whose network would not fit in memory.

        Every field is checked for its type too: a model file or a Python caller can hand
        over anything, and a NaN learning rate or a 10^9-unit layer must stop here, not
        after Keras has tried to allocate or train it.
        """
        check_int("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        sizes = self.rnn_layer_sizes
        check_layer_sizes("rnn_layer_sizes", sizes, MAX_LAYERS, MAX_LAYER_SIZE, "[128,128]")
        check_number("dropout_keep_prob", self.dropout_keep_prob, 0.0, 1.0, "a number in (0, 1]")
        check_int("attn_length", self.attn_length, 0, MAX_ATTN_LENGTH, "(0: no attention)")
        check_number("clip_norm", self.clip_norm, 0.0, MAX_CLIP_NORM)
        check_number("learning_rate", self.learning_rate, 0.0, MAX_LEARNING_RATE)
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, not {shown(self.loss)}")
        if self.gradient_precision not in GRADIENT_PRECISIONS:
            raise ConfigError(
                f"gradient_precision must be one of {', '.join(GRADIENT_PRECISIONS)}, "
                f"not {shown(self.gradient_precision)}"
            )
        weights = self.parameter_count()
        if weights > MAX_PARAMETERS:
            raise ConfigError(
                f"rnn_layer_sizes {list(sizes)} make a network of about {weights:,} weights, "
                f"over the limit of {MAX_PARAMETERS:,}; use fewer or smaller layers"
            )

    def parameter_count(self, input_size: int = 0, num_classes: int = 0) -> int:
        """About how many weights the network has (LSTMs, attention, output layer).

        Checked before anything is built, so an absurd size is refused instead of allocated.
        """
        total, width = 0, input_size
        for size in self.rnn_layer_sizes:
            total += 4 * (width + size + 1) * size
            width = size
        if self.attn_length:
            first = self.rnn_layer_sizes[0]
            # input projection, then attention, query and output kernels with their biases
            total += (input_size + first + 1) * input_size + 5 * first * first + 3 * first
        return total + (width + 1) * num_classes

    def network_shape(self) -> tuple:
        """What the weights' shapes depend on: a fine-tuned or resumed run keeps it."""
        return tuple(self.rnn_layer_sizes), self.attn_length

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["rnn_layer_sizes"] = list(self.rnn_layer_sizes)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> HParams:
        values = dict(values)
        if isinstance(values.get("rnn_layer_sizes"), list | tuple):
            values["rnn_layer_sizes"] = tuple(values["rnn_layer_sizes"])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass(frozen=True)
class MelodyRnnConfig:
    """One named configuration: an encoding plus default hyperparameters.

    ``encoding`` is ``"onehot"`` (note_seq's OneHotEventSequenceEncoderDecoder),
    ``"lookback"`` (LookbackEventSequenceEncoderDecoder) or ``"key"``
    (KeyMelodyEncoderDecoder), each over ``MelodyOneHotEncoding(min_note, max_note)``,
    or MelodyGen's ``"phrase"``: the lookback encoding with lookbacks of ``lookback_bars``
    bars of each melody's own meter and the next step's place in the bar and in a
    ``phrase_bars``-bar phrase instead of the binary counter
    (:class:`~melodygen.families.melody_rnn.encoding.PhraseMelodyEncoding`).
    ``transpose_to_key`` is the key (0 = C) melodies are transposed to before
    encoding, or None to keep them where they are.
    """

    name: str
    description: str
    encoding: str
    min_note: int
    max_note: int
    transpose_to_key: int | None
    hparams: HParams = field(default_factory=HParams)
    lookback_distances: tuple[int, ...] = ()
    binary_counter_bits: int = 0
    steps_per_quarter: int = STEPS_PER_QUARTER
    lookback_bars: tuple[int, ...] = ()
    phrase_bars: int = 0

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["hparams"] = self.hparams.to_dict()
        values["lookback_distances"] = list(self.lookback_distances)
        values["lookback_bars"] = list(self.lookback_bars)
        return values


CONFIGS: dict[str, MelodyRnnConfig] = {
    config.name: config
    for config in [
        MelodyRnnConfig(
            name="basic_rnn",
            description="One-hot encoding of 36 pitches, melodies transposed to C.",
            encoding="onehot",
            min_note=48,
            max_note=84,
            transpose_to_key=0,
        ),
        MelodyRnnConfig(
            name="mono_rnn",
            description="One-hot encoding of all 128 MIDI pitches, melodies kept in their key.",
            encoding="onehot",
            min_note=0,
            max_note=128,
            transpose_to_key=None,
        ),
        MelodyRnnConfig(
            name="lookback_rnn",
            description="Lookback encoding: repeats of 1 and 2 bars ago, position in the bar.",
            encoding="lookback",
            min_note=48,
            max_note=84,
            transpose_to_key=0,
            lookback_distances=(STEPS_PER_BAR, 2 * STEPS_PER_BAR),
            binary_counter_bits=5,
        ),
        MelodyRnnConfig(
            name="attention_rnn",
            description="Key-aware lookback encoding with attention over the last 40 steps.",
            encoding="key",
            min_note=48,
            max_note=84,
            transpose_to_key=0,
            hparams=HParams(attn_length=40, clip_norm=3.0),
            lookback_distances=(STEPS_PER_BAR, 2 * STEPS_PER_BAR),
            binary_counter_bits=7,
        ),
        MelodyRnnConfig(
            name="phrase_rnn",
            description="Lookback encoding in the tune's own meter: repeats of 1, 2, 4 and 8 "
            "bars ago, place in the bar and in an 8-bar phrase.",
            encoding="phrase",
            min_note=48,
            max_note=84,
            transpose_to_key=0,
            # The event loss, as the shipped lookback models train: a repeat label and the
            # plain label of one note both count as predicting it.
            hparams=HParams(loss="event"),
            lookback_bars=(1, 2, 4, 8),
            phrase_bars=8,
        ),
    ]
}


def get_config(name: str) -> MelodyRnnConfig:
    """Look a configuration up by name, with a message listing the known ones."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise ConfigError(
            f"unknown configuration {name!r}; choose one of: {', '.join(CONFIGS)}"
        ) from None
