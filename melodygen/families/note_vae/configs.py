"""The ``note_vae`` family's hyperparameters and named configurations, held as data.

The layout follows Magenta's MusicVAE melody models (``cat-mel_2bar``): a bidirectional
LSTM encoder, a Gaussian code, an LSTM decoder whose initial state comes from the code
(through a dense ``tanh`` layer) and that also reads the code at every step, trained on
reconstruction NLL plus ``beta * max(KL - free_bits, 0)``.

``melody_vae`` is sized for the project's 2-core CPU: 2 x 256 bidirectional encoder,
2 x 256 decoder, a 256-dimensional code (about 4.5 M weights). A step of 64 windows of 32
notes takes about 0.6 s there. ``melody_vae_big`` is for a GPU and a large collection
(Lakh MIDI): 2 x 512 LSTMs and a 512-d code, MusicVAE's melody models' sizes, read note
by note as ``melody_vae``'s is (16.3 M weights with POP909's classes; not yet trained:
no GPU run so far). ``vae_tiny`` is for tests.

KL scheme: beta rises linearly from 0 to ``max_beta`` over ``beta_anneal_steps`` (the
decoder first learns to read the code, then the code is pulled toward the prior, so it
does not collapse), and the first ``free_bits`` of each window's KL cost nothing (so
every window's code carries at least that much about its notes). The KL is taken per
window and its cost divided by the window's notes, like the reconstruction NLL.

How much the code may carry decides what a model is good for. A 32-note window of folk or
pop melody holds some 100 to 150 bits (3 to 5 bits a note by the models' own figures), so
a code held to 16 free bits (the first shipped model: 64-d code, beta 0.5) keeps a
window's register, rhythm and dynamics but not its tune: from the code alone it gave back
one held-out note in ten. ``melody_vae`` lets each window's code carry 128 bits free and
pulls harder only past them, with beta at most 0.2 (MusicVAE's melody models: 48 free
nats, beta 0.2 to 0.5, 512-d codes), so a variation at distance 0 is the melody itself,
and variations and blends move away from it note by note.

How fast the code learns to carry a window decides what a CPU can train. In MusicVAE's
layout the code comes from the encoder's final states alone and the decoder counts its
way through it: 8,100 steps on the Nottingham tunes gave back 43% of held-out notes from
the code alone. ``melody_vae`` reads the code note by note (``note_readout``,
``place_code`` and ``word_dropout``, :class:`HParams`) with a learning rate of 0.003:
83% after 600 steps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from melodygen.core.hparams import check_int, check_layer_sizes, check_number, override, shown
from melodygen.errors import ConfigError

# Sane bounds (the configurations are far inside them): past these a network is a typo or
# a hostile file, and would exhaust memory before training a step.
MAX_BATCH_SIZE = 4096
MAX_LAYERS = 4
MAX_LAYER_SIZE = 4096
MAX_EMBEDDING_SIZE = 1024
MAX_LATENT_SIZE = 1024
MAX_CLIP_NORM = 1e6
MAX_LEARNING_RATE = 10.0
MAX_BETA = 100.0
MAX_ANNEAL_STEPS = 10_000_000
MAX_FREE_BITS = 100_000.0
MAX_PARAMETERS = 60_000_000
WINDOW = 32
"""Notes (and rests) per window: what the encoder reads and the decoder writes (why 32:
:mod:`~melodygen.families.note_vae.dataset`)."""
PITCH_CLASSES = 129
"""A rest (class 0) and the 128 MIDI pitches (class ``pitch + 1``)."""


@dataclass(frozen=True)
class HParams:
    """Training and network hyperparameters.

    Embedding sizes are per note part; the three are concatenated (a note reads as its
    pitch, duration and velocity side by side). ``free_bits`` is in bits per window;
    ``beta_anneal_steps`` in training steps (0: ``max_beta`` from the first step).
    ``dropout`` is the share of each decoder layer's outputs dropped in training.

    Three ways to make the code carry a window note by note (all 0: MusicVAE's layout,
    whose code comes from the encoder's final states alone):

    - ``note_readout``: the width each note's top encoder output is projected to; the
      window's projections, side by side, join the final states under the code's mean and
      variance, so every note has a short path into the code;
    - ``place_code``: the width of the code's own projection for each place in the window
      (a dense layer, weights and bias per place), which the decoder reads beside the code
      when it writes the note at that place, so it need not count to know which note of
      the window it writes, nor untangle that note from the rest of the code;
    - ``word_dropout``: the share of previous notes hidden from the decoder in training
      (Bowman et al. 2016), so it learns to write from the code, not only from the notes
      before, as it must when it decodes a code alone.
    """

    batch_size: int = 64
    pitch_embedding: int = 64
    duration_embedding: int = 32
    velocity_embedding: int = 16
    encoder_sizes: tuple[int, ...] = (256, 256)
    decoder_sizes: tuple[int, ...] = (256, 256)
    latent_size: int = 64
    dropout: float = 0.0
    max_beta: float = 0.5
    beta_anneal_steps: int = 1500
    free_bits: float = 16.0
    learning_rate: float = 0.001
    clip_norm: float = 1.0
    note_readout: int = 0
    place_code: int = 0
    word_dropout: float = 0.0

    def override(self, overrides: str | dict | None) -> HParams:
        """A copy with ``k=v,k=v`` (or a dict) applied, type-checked field by field."""
        return override(self, overrides)

    def validate(self, durations: int = 24, velocities: int = 8) -> None:
        """Refuse values no network could train with, or whose network would not fit."""
        check_int("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        for name in ("pitch_embedding", "duration_embedding", "velocity_embedding"):
            check_int(name, getattr(self, name), 1, MAX_EMBEDDING_SIZE)
        for name in ("encoder_sizes", "decoder_sizes"):
            sizes = getattr(self, name)
            check_layer_sizes(name, sizes, MAX_LAYERS, MAX_LAYER_SIZE, "[256,256]")
        check_int("latent_size", self.latent_size, 1, MAX_LATENT_SIZE)
        check_share("dropout", self.dropout)
        check_int("note_readout", self.note_readout, 0, MAX_EMBEDDING_SIZE)
        check_int("place_code", self.place_code, 0, MAX_EMBEDDING_SIZE)
        check_share("word_dropout", self.word_dropout)
        check_range("max_beta", self.max_beta, MAX_BETA)
        check_int("beta_anneal_steps", self.beta_anneal_steps, 0, MAX_ANNEAL_STEPS)
        check_range("free_bits", self.free_bits, MAX_FREE_BITS)
        check_number("learning_rate", self.learning_rate, 0.0, MAX_LEARNING_RATE)
        check_number("clip_norm", self.clip_norm, 0.0, MAX_CLIP_NORM)
        weights = self.parameter_count(durations, velocities)
        if weights > MAX_PARAMETERS:
            raise ConfigError(
                f"encoder_sizes {list(self.encoder_sizes)}, decoder_sizes "
                f"{list(self.decoder_sizes)} and latent_size {self.latent_size} make a network "
                f"of about {weights:,} weights, over the limit of {MAX_PARAMETERS:,}; use "
                "fewer or smaller layers"
            )

    @property
    def note_width(self) -> int:
        """The width of one embedded note (the three embeddings side by side)."""
        return self.pitch_embedding + self.duration_embedding + self.velocity_embedding

    def parameter_count(self, durations: int, velocities: int) -> int:
        """The network's weights (exact; see :mod:`~melodygen.families.note_vae.network`)."""
        total = (
            PITCH_CLASSES * self.pitch_embedding
            + durations * self.duration_embedding
            + velocities * self.velocity_embedding
        )
        width = self.note_width
        for size in self.encoder_sizes:  # two directions per layer
            total += 2 * 4 * (width + size + 1) * size
            width = 2 * size
        if self.note_readout:
            total += (width + 1) * self.note_readout  # each note's projection
            width += WINDOW * self.note_readout
        total += 2 * (width + 1) * self.latent_size  # mean and log-variance
        total += (self.latent_size + 1) * 2 * sum(self.decoder_sizes)  # initial states
        total += (self.latent_size + 1) * WINDOW * self.place_code
        width = self.note_width + self.latent_size + self.place_code
        for size in self.decoder_sizes:
            total += 4 * (width + size + 1) * size
            width = size
        total += (width + 1) * (PITCH_CLASSES + durations + velocities)
        return total + 1  # the KL's step counter

    def network_shape(self) -> tuple:
        """What the weights' shapes depend on: a fine-tuned or resumed run keeps it."""
        return (
            self.pitch_embedding,
            self.duration_embedding,
            self.velocity_embedding,
            tuple(self.encoder_sizes),
            tuple(self.decoder_sizes),
            self.latent_size,
            self.note_readout,
            self.place_code,
        )

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["encoder_sizes"] = list(self.encoder_sizes)
        values["decoder_sizes"] = list(self.decoder_sizes)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> HParams:
        """Hyperparameters from a model file's JSON, every field required and checked."""
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = [key for key in values if key not in fields]
        if unknown:
            raise ConfigError(f"{shown(unknown[0])} is not a hyperparameter of note_vae")
        values = {**LEGACY_DEFAULTS, **values}
        missing = [key for key in fields if key not in values]
        if missing:
            raise ConfigError(f"{missing[0]} is missing")
        values = dict(values)
        for key in ("encoder_sizes", "decoder_sizes"):
            if isinstance(values[key], list):
                values[key] = tuple(values[key])
        hparams = cls(**values)
        hparams.validate()
        return hparams


LEGACY_DEFAULTS = {"note_readout": 0, "place_code": 0, "word_dropout": 0.0}
"""What a model file written before these fields existed was built with (MusicVAE's
layout), so it loads as it was trained."""


def check_range(name: str, value: object, high: float) -> None:
    """A finite number in [0, high]."""
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not 0.0 <= value <= high  # NaN fails this too
    ):
        raise ConfigError(f"{name} must be a number from 0 to {high:g}, not {shown(value)}")


def check_share(name: str, value: object) -> None:
    """A finite number in [0, 1)."""
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not 0.0 <= value < 1.0  # NaN fails this too
    ):
        raise ConfigError(f"{name} must be a number in [0, 1), not {shown(value)}")


@dataclass(frozen=True)
class VaeConfig:
    """One named configuration: what it is for, and its hyperparameters."""

    name: str
    description: str
    hparams: HParams


CONFIGS: dict[str, VaeConfig] = {
    config.name: config
    for config in [
        VaeConfig(
            name="melody_vae",
            description="2 x 256 bidirectional encoder, 2 x 256 decoder, 256-d code, the code "
            "read note by note (a CPU)",
            hparams=HParams(
                latent_size=256,
                free_bits=128.0,
                max_beta=0.2,
                beta_anneal_steps=1000,
                learning_rate=0.003,
                note_readout=16,
                place_code=16,
                word_dropout=0.3,
            ),
        ),
        VaeConfig(
            name="melody_vae_big",
            description="2 x 512 encoder and decoder, 512-d code, the code read note by note "
            "(train on a GPU)",
            hparams=HParams(
                batch_size=128,
                encoder_sizes=(512, 512),
                decoder_sizes=(512, 512),
                latent_size=512,
                free_bits=128.0,
                max_beta=0.2,
                beta_anneal_steps=5000,
                learning_rate=0.003,
                note_readout=16,
                place_code=16,
                word_dropout=0.3,
            ),
        ),
        VaeConfig(
            name="vae_tiny",
            description="a few thousand weights, for tests",
            hparams=HParams(
                batch_size=8,
                pitch_embedding=8,
                duration_embedding=4,
                velocity_embedding=4,
                encoder_sizes=(16, 16),
                decoder_sizes=(16, 16),
                latent_size=8,
                max_beta=0.5,
                beta_anneal_steps=20,
                free_bits=1.0,
                learning_rate=0.01,
                note_readout=4,
                place_code=4,
                word_dropout=0.3,
            ),
        ),
    ]
}
DEFAULT_CONFIG = "melody_vae"

CONFIGURATION_WORDS = {
    "melody_vae": "new phrases from random codes, variations and blends; trains on a CPU",
    "melody_vae_big": "twice as wide, a richer code: for thousands of songs on a GPU",
    "vae_tiny": "a toy for tests: too small to learn music",
}


def get_config(name: str) -> VaeConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ConfigError(
            f"unknown configuration {shown(name)}; choose one of: {', '.join(CONFIGS)}"
        ) from None
