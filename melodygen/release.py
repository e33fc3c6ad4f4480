"""The checkpoints that ship in ``checkpoints/``: how each one is made, and its model card.

Every shipped model is a (style, configuration) pair. A style says which
model family it trains, which public datasets it learns from and how that
data is read; the recipe below is the whole of how a checkpoint is made, as
the same ``melodygen`` commands a user would type (dataset build, train,
evaluate, validity for a family that writes text, originality). ``make
checkpoints`` runs it for every shipped model::

    python -m melodygen.release --data-root ../shared/data

Recipes outside the shipped set (``jigs_abc_char``: the seed's jigs-only
setting) run when named: ``python -m melodygen.release --only jigs_abc_char``.
What differs between families is data here (a style's family, steps and
flags) or the family's own answer (its figures, configurations and what training
keeps: :class:`melodygen.core.family.Family`), never a branch on a family's name.

Each step is skipped when its output already exists, and training resumes
from its last checkpoint, so an interrupted run just continues. The last
step copies each final model into ``checkpoints/<style>_<config>/`` with its
``card.json`` (the model card: data, training, held-out figures, the
commands) and ``metrics.jsonl`` (the training curves), and writes the table
in ``checkpoints/README.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from pathlib import Path

from melodygen.core.checkpoint import (
    FINAL_MODEL_DIR,
    MODEL_JSON,
    WEIGHTS_FILE,
    info_family,
    load_model,
    read_model_info,
    save_model,
)
from melodygen.core.family import DEFAULT_FAMILY
from melodygen.errors import MelodyGenError

CARD_FILE = "card.json"
CURVES_FILE = "metrics.jsonl"
SHIPPED_CONFIGS = ("basic_rnn", "mono_rnn", "lookback_rnn", "attention_rnn")
# Configurations whose held-out NLL the checkpoints README sets beside basic_rnn's (the same
# C-major task; mono_rnn keeps every key, a harder one).
COMPARED_WITH_BASIC = ("lookback_rnn", "attention_rnn", "phrase_rnn")
BITS_KEYS = ("bits_per_note_mean", "bits_per_note_pooled")
STEPS = (
    "build",
    "train",
    "evaluate",
    "validity",
    "validity_raw",
    "controls",
    "latent",
    "originality",
)
"""Every step a recipe may have, in the order they run."""
MELODY_STEPS = ("build", "train", "evaluate", "originality")
TEXT_STEPS = ("build", "train", "evaluate", "validity", "validity_raw", "originality")
"""A family that writes text (abc_char) also measures the validity of what it writes: as
users get it (bars checked and written again when they do not fit, the default), and the
model's raw samples (``--no-bar-check``)."""
CONTROL_STEPS = (*TEXT_STEPS, "controls")
"""A family written to order (abc_transformer) also measures whether its tunes come out in
the meter, key and type asked, beside the character LSTM asked the same (``compare``)."""
LATENT_STEPS = (*MELODY_STEPS[:-1], "latent", MELODY_STEPS[-1])
"""A family that writes from a latent code (note_vae) also measures its code space: random
codes' melodies beside real ones, and blends between held-out melodies."""
CONTROL_TUNES = 200
VALIDITY_TUNES = 200
LATENT_SAMPLES = 512
LATENT_PAIRS = 64
LATENT_BLEND_STEPS = 8


@dataclass(frozen=True)
class Source:
    """A public dataset a style learns from, and the terms it comes under."""

    name: str
    licence: str
    url: str
    path: str  # inside the data root


@dataclass(frozen=True)
class Training:
    """The ``melodygen train`` settings of a recipe."""

    steps: int = 6000
    hparams: str = "batch_size=128"  # "" for the configuration's own
    eval_every: int = 100
    early_stopping: int = 10
    time_limit: int | None = None  # minutes (``--time-limit``)

    def flags(self) -> list[str]:
        """The ``melodygen train`` flags these settings are."""
        flags = ["--steps", str(self.steps)]
        if self.hparams:
            flags += ["--hparams", self.hparams]
        flags += [
            "--eval-every",
            str(self.eval_every),
            "--early-stopping",
            str(self.early_stopping),
        ]
        if self.time_limit is not None:
            flags += ["--time-limit", str(self.time_limit)]
        return flags


@dataclass(frozen=True)
class Bar:
    """A quality bar a card states: the figure at ``figure`` (keys into the card, joined by
    dots) must be below ``below`` or at least ``at_least``."""

    words: str
    figure: str
    below: float | None = None
    at_least: float | None = None

    def judge(self, card: dict) -> dict:
        value: object = card
        for key in self.figure.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        met = isinstance(value, int | float) and math.isfinite(value)
        if met and self.below is not None:
            met = value < self.below
        if met and self.at_least is not None:
            met = value >= self.at_least
        return {"bar": self.words, "figure": self.figure, "value": value, "met": bool(met)}


@dataclass(frozen=True)
class Style:
    """A set of shipped models: their family, data, how it is read, how they train."""

    name: str
    description: str
    sources: tuple[Source, ...]
    build_flags: tuple[str, ...] = ()
    training: Training = Training()
    # Configurations trained another way, e.g. {"attention_rnn": Training(steps=3200)}.
    config_training: dict[str, Training] = field(default_factory=dict)
    configs: tuple[str, ...] = SHIPPED_CONFIGS
    extra: dict = field(default_factory=dict)
    family: str = DEFAULT_FAMILY
    steps: tuple[str, ...] = MELODY_STEPS
    # A checkpoint's name when not <style>_<config>, e.g. {"char_seed": "folk_abc_char"}.
    names: dict[str, str] = field(default_factory=dict)
    # The dataset folder (under data/) when not the checkpoint's name: one dataset whatever
    # the configuration, as an abc_char dataset is.
    dataset: str | None = None
    shipped: bool = True  # in ``make checkpoints``' set; else run with --only NAME
    # Quality bars each card of the style states and checks (see Bar).
    bars: tuple[Bar, ...] = ()
    # The run (under runs/) of another recipe whose model ``controls`` asks the same, e.g. the
    # character LSTM beside the Transformer.
    compare: str | None = None
    # A configuration's own quality bars, in place of ``bars``.
    config_bars: dict[str, tuple[Bar, ...]] = field(default_factory=dict)
    # A configuration's own ``melodygen originality`` flags (beside --num and --json).
    config_originality: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The configuration the studio opens with for this style (its card says
    # ``"studio_default": true``); None: the first by name.
    default_config: str | None = None


NOTTINGHAM = Source(
    name="Nottingham Music Database (jukedeck/nottingham-dataset, melody MIDI)",
    licence="GPL-3.0",
    url="https://github.com/jukedeck/nottingham-dataset",
    path="nottingham/melody",
)
POP909 = Source(
    name="POP909 (MELODY tracks), Wang et al., ISMIR 2020",
    licence="MIT",
    url="https://github.com/music-x-lab/POP909-Dataset",
    path="pop909",
)
NOTTINGHAM_ABC = Source(
    name="Nottingham Music Database (jukedeck/nottingham-dataset, cleaned ABC tunebooks)",
    licence="GPL-3.0",
    url="https://github.com/jukedeck/nottingham-dataset",
    path="nottingham/abc",
)
NOTTINGHAM_JIGS = Source(
    name="Nottingham Music Database, the jigs tunebook (jukedeck/nottingham-dataset, cleaned ABC)",
    licence="GPL-3.0",
    url="https://github.com/jukedeck/nottingham-dataset",
    path="nottingham/abc/jigs.abc",
)
FOLK_ABC = Source(
    name="O'Neill's Music of Ireland (1850), Ryan's Mammoth Collection (1883), Aird's "
    "Selection of Scotch, English, Irish and Foreign Airs (1778), Colonial and Civil War "
    "American Fife Music and Bruce and Stokoe's Northumbrian Minstrelsy (1882), as ABC "
    "transcriptions distributed with the music21 corpus (cuthbertLab/music21)",
    licence="BSD-3-Clause (music21 corpus)",
    url="https://github.com/cuthbertLab/music21/tree/master/music21/corpus",
    path="folk_abc",
)

# lookback_rnn and attention_rnn train on the event loss (README: hparam ``loss``): held-out
# NLL well below Magenta's label loss, whose best was worse than basic_rnn's on both styles.
# attention_rnn trains under TensorFlow only (under JAX on a GPU its compiled attention layer
# computes wrong outputs: melody_rnn's check_backend_computes), on the 2-core CPU, with Magenta's
# batch of 64.
# Melodies each card's originality figures come from. The 100 resolve shares in steps
# of 1%, no finer than pop's held-out reference (0.9% share more than 2 bars): one melody in
# 100 decides the verdict. 1,000 take under a minute per model.
ORIGINALITY_MELODIES = 1000

# mono_rnn (all 128 pitches, melodies kept in their keys) trains at basic_rnn's settings for
# at most 110 minutes on the 2-core CPU. The shipped two ran side by side as two calls of
# the same command (70 minutes, sharing the cores with other work, then 40 resumed).
MONO = Training(time_limit=110)
# phrase_rnn (lookbacks 1, 2, 4 and 8 bars back in each tune's own meter) trains as folk
# lookback_rnn does, for at most 100 minutes on the 2-core CPU.
PHRASE = Training(
    steps=20000,
    hparams="batch_size=128,loss=event,dropout_keep_prob=0.6",
    early_stopping=5,
    time_limit=100,
)
# Its structure figure on every held-out folk tune of 16+ bars, 4 continuations each, as the
# older folk cards' (README: "Structure: phrases that come back").
PHRASE_ORIGINALITY = ("--structure-tunes", "200", "--structure-per-primer", "4")
PHRASE_BARS = (
    Bar(
        "without a form, continuing 2-bar primers of held-out tunes to 16 bars at temperature "
        "1: at least 15% of bars 9-16 repeat the bar 4 or 8 bars before",
        "structure.generated.exact.lag_4_or_8",
        at_least=0.15,
    ),
    Bar(
        "held-out NLL at or below folk_attention_rnn's (0.7389 nats per step)",
        "metrics.nll",
        below=0.73894,
    ),
    Bar(
        "no generated melody copies more than 4 bars of a training tune (melodies that do)",
        "originality.over_4_bars",
        below=1,
    ),
)
EVENT_LOOKBACK = Training(hparams="batch_size=128,loss=event", early_stopping=5)
EVENT_ATTENTION = Training(hparams="batch_size=64,loss=event", early_stopping=5)
# Folk lookback_rnn overfit from step 2,200 at Magenta's dropout (keep 0.5; best 0.762, above
# basic_rnn's 0.757). Less dropout did better on the held-out split (keep 0.6: 0.746), more
# did worse (keep 0.4: 0.773), and so did batches of 64 (0.754).
FOLK_LOOKBACK = Training(
    hparams="batch_size=128,loss=event,dropout_keep_prob=0.6", early_stopping=5
)

# The ABC model trains at its configuration's own hyperparameters (the seed's), for at most
# 110 minutes on the CPU, evaluated every 300 steps until 8 evaluations bring no lower
# held-out NLL per character.
# 8,100 steps (27 passes over the training tunes) at 0.26-0.4 s a step on the 2-core CPU,
# about 50 minutes; held-out NLL was still falling slowly there (0.007 nats per 300 steps).
ABC_TRAINING = Training(steps=8100, hparams="", eval_every=300, early_stopping=8)
ABC_BARS = (
    Bar(
        "held-out loss below 1.16 nats per character (the seed's training loss)",
        "metrics.nll",
        below=1.16,
    ),
    Bar(
        "sampled tunes (bars checked, as generate and the studio write them) valid at least "
        "90% as often as the real held-out tunes",
        "validity.share_of_real",
        at_least=0.9,
    ),
)

# The ABC Transformer: the sizes (transformer_seed), Adam with a 400-step warmup,
# held-out token NLL every 250 steps, early stopping after 6 evaluations without a lower one.
# It trained on the 2-core CPU in two stretches (65 minutes sharing it with the Note VAE's
# training, then 35 alone: `--time-limit`) to step 6,982, the held-out NLL still falling
# slowly there (2.404 at 6,250, 2.396 at 6,982); the recipe trains those steps in one go.
TRANSFORMER_TRAINING = Training(steps=6982, hparams="", eval_every=250, early_stopping=6)
TRANSFORMER_BARS = (
    Bar(
        "control accuracy for meter at least 95% (the M: asked, and full bars that last it)",
        "controls.meter",
        at_least=0.95,
    ),
    Bar(
        "control accuracy for key at least 95% (the K: asked, and 85% of notes in its scale)",
        "controls.key",
        at_least=0.95,
    ),
    Bar(
        "sampled tunes (bars checked, as generate and the studio write them) valid at least "
        "90% as often as the real held-out tunes",
        "validity.share_of_real",
        at_least=0.9,
    ),
)
# The note VAEs: melody_vae (2 x 256 bidirectional encoder, 2 x 256 decoder, a 256-d code
# read note by note, 128 free bits a window, beta up to 0.2), held-out objective every 300
# steps until 6 evaluations bring no lower one, for at most the minutes below on the CPU:
# as long as the shipped runs took in all (folk trained 13 minutes, then 48 resumed, side
# by side with pop on the 2 cores; pop 16, then 48 side by side, then 25 alone, 2,547
# steps more; evaluations besides). Pop's notes have more classes (24 durations, 8
# velocities): it learns more slowly.
VAE_FOLK_TRAINING = Training(
    steps=30000, hparams="", eval_every=300, early_stopping=6, time_limit=65
)
VAE_POP_TRAINING = dataclass_replace(VAE_FOLK_TRAINING, time_limit=95)
# Folk tunes keep their keys: the held-out tunes are in theirs (mostly G and D), and prior
# samples are compared with them; POP909's songs are in every key, and more copies help.
VAE_FOLK_BUILD: tuple[str, ...] = ()
VAE_POP_BUILD = ("--transpose=-3:3",)
VAE_BARS = (
    Bar(
        "reconstruction from the code alone: at least 85% of held-out notes exactly right "
        "(pitch and duration)",
        "metrics.code_pitch_duration_accuracy",
        at_least=0.85,
    ),
    Bar(
        "melodies from random codes: mean feature overlap (pitch classes, intervals, lengths) "
        "with the held-out melodies at least 0.85",
        "latent.overlap.prior.mean",
        at_least=0.85,
    ),
    Bar(
        "blends: every inner step closer (note edit distance, pitches and rhythm apart) to its "
        "nearer end than the two ends are to each other",
        "latent.blends.closer_share",
        at_least=1.0,
    ),
)

STYLES: dict[str, Style] = {
    style.name: style
    for style in [
        Style(
            name="folk",
            description="British and Irish folk tunes: jigs, reels, hornpipes, waltzes",
            sources=(NOTTINGHAM,),
            configs=(*SHIPPED_CONFIGS, "phrase_rnn"),
            config_training={
                "mono_rnn": MONO,
                "lookback_rnn": FOLK_LOOKBACK,
                "attention_rnn": EVENT_ATTENTION,
                "phrase_rnn": PHRASE,
            },
            config_bars={"phrase_rnn": PHRASE_BARS},
            config_originality={"phrase_rnn": PHRASE_ORIGINALITY},
            default_config="phrase_rnn",
        ),
        Style(
            name="pop",
            description="Chinese pop song melodies",
            sources=(POP909,),
            # POP909 declares 1/4 and follows the recording's tempo: read it as 4/4.
            build_flags=("--time-signature", "4/4"),
            config_training={
                "mono_rnn": MONO,
                "lookback_rnn": EVENT_LOOKBACK,
                "attention_rnn": EVENT_ATTENTION,
            },
        ),
        Style(
            name="folk_abc",
            description="Folk tunes written as ABC text: the Nottingham tunebooks and "
            "O'Neill's, Ryan's, Aird's and fife collections (about 5,300 tunes)",
            sources=(NOTTINGHAM_ABC, FOLK_ABC),
            family="abc_char",
            configs=("char_seed",),
            names={"char_seed": "folk_abc_char"},
            dataset="folk_abc",
            steps=TEXT_STEPS,
            training=ABC_TRAINING,
            bars=ABC_BARS,
        ),
        Style(
            name="folk_abc_meta",
            description="Folk tunes written as ABC text from their meter, key and dance type: "
            "the same tunebooks as folk_abc",
            sources=(NOTTINGHAM_ABC, FOLK_ABC),
            family="abc_transformer",
            configs=("transformer_seed",),
            names={"transformer_seed": "folk_abc_transformer"},
            dataset="folk_abc_transformer",
            steps=CONTROL_STEPS,
            compare="folk_abc_char",
            training=TRANSFORMER_TRAINING,
            bars=TRANSFORMER_BARS,
        ),
        Style(
            name="folk_notes",
            description="British and Irish folk tunes as notes: the Nottingham melodies (every "
            "note at velocity 90, so one velocity class)",
            sources=(NOTTINGHAM,),
            family="note_vae",
            configs=("melody_vae",),
            names={"melody_vae": "folk_note_vae"},
            build_flags=VAE_FOLK_BUILD,
            steps=LATENT_STEPS,
            training=VAE_FOLK_TRAINING,
            bars=VAE_BARS,
        ),
        Style(
            name="pop_notes",
            description="Chinese pop song melodies as notes with dynamics: POP909's MELODY "
            "tracks, whose velocities are played",
            sources=(POP909,),
            family="note_vae",
            configs=("melody_vae",),
            names={"melody_vae": "pop_note_vae"},
            build_flags=VAE_POP_BUILD,
            steps=LATENT_STEPS,
            training=VAE_POP_TRAINING,
            bars=VAE_BARS,
        ),
        Style(
            name="jigs_abc",
            description="The Nottingham jigs as ABC text (the seed's setting, 340 tunes)",
            sources=(NOTTINGHAM_JIGS,),
            family="abc_char",
            configs=("char_seed",),
            names={"char_seed": "jigs_abc_char"},
            dataset="jigs_abc",
            steps=TEXT_STEPS,
            training=dataclass_replace(ABC_TRAINING, eval_every=100),
            bars=ABC_BARS,
            shipped=False,
        ),
    ]
}


@dataclass(frozen=True)
class Recipe:
    """The commands that make one shipped checkpoint, and where they write."""

    style: Style
    config: str
    data_root: Path
    work: Path

    @property
    def name(self) -> str:
        return self.style.names.get(self.config, f"{self.style.name}_{self.config}")

    @property
    def family(self) -> str:
        return self.style.family

    @property
    def steps(self) -> tuple[str, ...]:
        return self.style.steps

    @property
    def training(self) -> Training:
        return self.style.config_training.get(self.config, self.style.training)

    @property
    def bars(self) -> tuple[Bar, ...]:
        return self.style.config_bars.get(self.config, self.style.bars)

    @property
    def dataset(self) -> Path:
        return self.work / "data" / (self.style.dataset or self.name)

    @property
    def run_dir(self) -> Path:
        return self.work / "runs" / self.name

    @property
    def eval_json(self) -> Path:
        return self.run_dir / "eval.json"

    @property
    def validity_json(self) -> Path:
        return self.run_dir / "validity.json"

    @property
    def validity_raw_json(self) -> Path:
        return self.run_dir / "validity_raw.json"

    @property
    def controls_json(self) -> Path:
        return self.run_dir / "controls.json"

    @property
    def latent_json(self) -> Path:
        return self.run_dir / "latent.json"

    @property
    def originality_json(self) -> Path:
        return self.run_dir / "originality.json"

    def commands(self, data_root: str | Path | None = None) -> dict[str, list[str]]:
        """Each step's ``melodygen`` arguments (data paths under ``data_root``)."""
        root = Path(data_root if data_root is not None else self.data_root)
        inputs = [str(root / source.path) for source in self.style.sources]
        data, run = str(self.dataset), str(self.run_dir)
        family = [] if self.family == DEFAULT_FAMILY else ["--family", self.family]
        every = {
            "build": [
                "dataset", "build", *family, "--input", *inputs, "--config", self.config,
                "--output", data, *self.style.build_flags, "--quiet",
            ],
            "train": [
                "train", "--data", data, "--run-dir", run, *self.training.flags(), "--quiet",
            ],
            "evaluate": [
                "evaluate", "--checkpoint", run, "--data", data, "--json", str(self.eval_json),
            ],
            "validity": [
                "validity", "--checkpoint", run, "--data", data,
                "--num", str(VALIDITY_TUNES), "--json", str(self.validity_json),
            ],
            "validity_raw": [
                "validity", "--checkpoint", run, "--data", data, "--no-bar-check",
                "--num", str(VALIDITY_TUNES), "--json", str(self.validity_raw_json),
            ],
            "controls": [
                "controls", "--checkpoint", run, "--data", data,
                *(["--compare", str(self.work / "runs" / self.style.compare)]
                  if self.style.compare else []),
                "--num", str(CONTROL_TUNES), "--json", str(self.controls_json),
            ],
            "latent": [
                "latent", "--checkpoint", run, "--data", data,
                "--samples", str(LATENT_SAMPLES), "--pairs", str(LATENT_PAIRS),
                "--blend-steps", str(LATENT_BLEND_STEPS), "--json", str(self.latent_json),
            ],
            "originality": [
                "originality", "--checkpoint", run, "--data", data,
                "--num", str(ORIGINALITY_MELODIES),
                *self.style.config_originality.get(self.config, ()),
                "--json", str(self.originality_json),
            ],
        }  # fmt: skip
        return {step: every[step] for step in STEPS if step in self.steps}

    def card_commands(self) -> list[str]:
        """The commands as the card shows them: data under ``$DATA``, outputs relative to work."""
        display = self.commands(data_root="$DATA")
        return [
            "melodygen " + shlex.join(_relative(arg, self.work) for arg in argv)
            for argv in display.values()
        ]

    def done(self, step: str) -> bool:
        """Whether ``step``'s output is already there (steps are skipped, not redone)."""
        if step == "build":
            return (self.dataset / "dataset.json").exists()
        if step == "train":  # train() writes model/ only once it has finished
            return (self.run_dir / FINAL_MODEL_DIR / MODEL_JSON).exists()
        if step == "evaluate":
            return self.eval_json.exists()
        if step == "validity":
            return self.validity_json.exists()
        if step == "validity_raw":
            return self.validity_raw_json.exists()
        if step == "controls":
            return self.controls_json.exists()
        if step == "latent":
            return self.latent_json.exists()
        if step == "originality":
            return self.originality_json.exists()
        raise ValueError(step)


def recipes(data_root: str | Path, work: str | Path, only: list[str] | None = None) -> list[Recipe]:
    """The shipped checkpoints' recipes, or those named in ``only`` (any recipe, shipped or
    not, such as ``jigs_abc_char``)."""
    found = [
        Recipe(style, config, Path(data_root), Path(work))
        for style in STYLES.values()
        for config in style.configs
    ]
    if only:
        unknown = sorted(set(only) - {recipe.name for recipe in found})
        if unknown:
            names = ", ".join(recipe.name for recipe in found)
            raise MelodyGenError(f"unknown checkpoint {', '.join(unknown)}; choose from {names}")
        return [recipe for recipe in found if recipe.name in only]
    return [recipe for recipe in found if recipe.style.shipped]


def run_recipe(recipe: Recipe, steps: tuple[str, ...] = STEPS) -> None:
    """Run the recipe's missing steps through the ``melodygen`` command line."""
    from melodygen.cli import main as melodygen

    for step, argv in recipe.commands().items():
        if step not in steps or recipe.done(step):
            continue
        print(f"[{recipe.name}] melodygen {shlex.join(argv)}", flush=True)
        if melodygen(argv) != 0:
            raise MelodyGenError(f"{recipe.name}: `melodygen {argv[0]}` failed (see above)")


# Cards ------------------------------------------------------------------------------------


def machine_description() -> str:
    """Where a model was trained, in words (CPU model and cores, or the GPU)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()}-core {cpu}, no GPU, Python {platform.python_version()}"


def describe_history(history: list[dict] | None) -> str:
    """Where each stretch of a run trained, in words, from the run's recorded history."""
    return "; ".join(
        f"steps {h['from_step']}-{h['to_step']} on {h['device']} ({h['backend']}, "
        f"{h['seconds'] / 60:.0f} min)"
        for h in history or []
    )


def make_card(recipe: Recipe, machine: str | None = None) -> dict:
    """The model card of a trained, evaluated and measured recipe."""
    model_dir = recipe.run_dir / FINAL_MODEL_DIR
    values = json.loads((model_dir / MODEL_JSON).read_text())
    _, info = read_model_info(model_dir)
    family = info_family(info)
    training = values.get("training", {})
    evaluation = json.loads(recipe.eval_json.read_text())
    originality = json.loads(recipe.originality_json.read_text())
    hparams = info.hparams.to_dict()  # every field, older runs too
    card = {
        "name": recipe.name,
        "style": recipe.style.name,
        "config": recipe.config,
        "description": recipe.style.description
        + ". "
        + _sentence(family.configuration_description(recipe.config)),
        "hparams": hparams,
    }
    if recipe.family != DEFAULT_FAMILY:  # cards without one are Melody RNNs
        card["family"] = recipe.family
    if recipe.config == recipe.style.default_config:
        card["studio_default"] = True
    if "encoding" in values:
        card["encoding"] = values["encoding"]
    card["model"] = {str(label): str(value) for label, value in family.model_facts(info)}
    card["data"] = {
        "sources": [
            {"name": s.name, "licence": s.licence, "url": s.url} for s in recipe.style.sources
        ],
        "train_melodies": training.get("train_melodies"),
        "train_steps": training.get("train_steps"),
        "eval_melodies": training.get("eval_melodies"),
        "eval_steps": training.get("eval_steps"),
        "read_as": " ".join(recipe.style.build_flags) or "each file's own meter and tempo",
        "transpositions": _transpositions(recipe.dataset),
    }
    card["training"] = {
        "steps": training.get("step"),
        "batch_size": hparams.get("batch_size"),
        "wall_seconds": training.get("train_seconds"),
        "machine": machine or describe_history(training.get("history")) or machine_description(),
        "history": training.get("history") or [],
        "selected": family.selection_words(info),
    }
    metric_keys = (*family.figure_labels(), *BITS_KEYS)  # the family's figures, then bits
    card["metrics"] = {key: evaluation[key] for key in metric_keys if key in evaluation}
    for step, key, path in (
        ("validity", "validity", recipe.validity_json),
        ("validity_raw", "validity_raw", recipe.validity_raw_json),
    ):
        if step in recipe.steps:
            card[key] = _validity_card(json.loads(path.read_text()))
    if "controls" in recipe.steps:
        card["controls"] = _controls_card(json.loads(recipe.controls_json.read_text()))
    if "latent" in recipe.steps:
        card["latent"] = _latent_card(json.loads(recipe.latent_json.read_text()))
    card.update(
        {
            "originality": originality.get("generated", {}).get("originality"),
            "originality_held_out": originality.get("held_out", {}).get("originality"),
            "sanity": {
                "generated": originality.get("generated", {}).get("sanity"),
                "held_out": originality.get("held_out", {}).get("sanity"),
            },
            "originality_settings": originality.get("settings"),
            "verdict": originality.get("verdict"),
        }
    )
    if originality.get("structure"):  # generated continuations beside the real melodies
        card["structure"] = originality["structure"]
    if recipe.bars:
        card["quality_bar"] = [bar.judge(card) for bar in recipe.bars]
    card["commands"] = recipe.card_commands()
    return card


def _sentence(words: str) -> str:
    """``words`` as a sentence: a capital first letter and a full stop."""
    words = words.strip().rstrip(".")
    return words[:1].upper() + words[1:] + "."


def _relative(arg: str, work: Path) -> str:
    """A path the recipe wrote under ``work``, relative to it; any other argument unchanged."""
    for root in {work, work.resolve()}:
        prefix = str(root).rstrip("/") + "/"
        if str(root) != "." and arg.startswith(prefix):
            return arg[len(prefix) :]
    return arg


def _transpositions(dataset: Path) -> str:
    meta = json.loads((dataset / "dataset.json").read_text())
    spec = meta.get("encoding", {})
    shifts = meta.get("transpositions") or []
    key = spec.get("transpose_to_key")
    moved = "none (kept in their key)" if key is None else f"moved to pitch class {key} (C = 0)"
    extra = f"; augmented with shifts {shifts}" if shifts and shifts != [0] else "; no augmentation"
    return moved + extra


def write_checkpoint(recipe: Recipe, output: Path, machine: str | None = None) -> Path:
    """Copy the final model, its card and curves to ``output/<name>/``."""
    target = output / recipe.name
    staging = output / f".{recipe.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    # Re-saved from an uncompiled network: the weights alone, without Adam's moments.
    model, info = load_model(recipe.run_dir / FINAL_MODEL_DIR)
    save_model(staging, model, info)
    shutil.copy2(recipe.run_dir / CURVES_FILE, staging / CURVES_FILE)
    card = make_card(recipe, machine)
    card["size_bytes"] = (staging / WEIGHTS_FILE).stat().st_size
    card["parameters"] = int(model.count_params())
    (staging / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.replace(target)
    return target


def read_cards(checkpoints: str | Path) -> list[dict]:
    """Every card under ``checkpoints/*/card.json``, sorted by name."""
    return [
        json.loads(path.read_text()) for path in sorted(Path(checkpoints).glob(f"*/{CARD_FILE}"))
    ]


def readme_table(cards: list[dict]) -> str:
    """The Markdown tables of checkpoints/README.md (one per family, by what its cards
    hold: event figures, validity of the text written, or the family's own figures), and
    the quality bars."""
    families = sorted(
        {card.get("family", DEFAULT_FAMILY) for card in cards} | {DEFAULT_FAMILY},
        key=lambda name: (name != DEFAULT_FAMILY, name),
    )
    tables = []
    for name in families:
        group = [card for card in cards if card.get("family", DEFAULT_FAMILY) == name]
        if not group and cards:
            continue
        if all("event_accuracy" in card["metrics"] for card in group):
            tables.append(_melody_table(group))
        elif all("validity" in card for card in group):
            tables.append(_text_table(group, name))
        else:
            tables.append(_family_table(group, name))
    lines = [line for table in tables for line in ["", *table]][1:]
    lines += ["", *quality_bar(cards)]
    return "\n".join(lines) + "\n"


def _family_table(cards: list[dict], family_name: str) -> list[str]:
    """A family's cards by the figures the family names (``Family.figure_labels``), bits
    per note and originality."""
    from melodygen.core.family import get_family

    labels = {
        key: label.split(" (")[0]
        for key, label in get_family(family_name).figure_labels().items()
        if key != "steps"
        and not key.startswith("bits_per_note")
        and any(key in card["metrics"] for card in cards)
    }
    lines = [
        "| checkpoint | train melodies | training | "
        + " | ".join(labels.values())
        + " | bits/note | copies > 2 bars (held-out) |",
        "|---|---:|---|" + "---:|" * (len(labels) + 2),
    ]
    for card in cards:
        m, t, d = card["metrics"], card["training"], card["data"]
        orig, held = card.get("originality") or {}, card.get("originality_held_out") or {}
        minutes = (t.get("wall_seconds") or 0) / 60
        figures = " | ".join(_number(m, key) for key in labels)
        lines.append(
            f"| `{card['name']}` | {d['train_melodies']} | {t['steps']} steps, "
            f"{minutes:.0f} min | {figures} | {_number(m, 'bits_per_note_pooled')} | "
            f"{_share(orig, 'share_over_2_bars', 1)} ({_share(held, 'share_over_2_bars', 1)}) |"
        )
    return lines


def _melody_table(cards: list[dict]) -> list[str]:
    lines = [
        "| checkpoint | train melodies | training | NLL | perplexity | accuracy | "
        "event acc. | no-event acc. | copies > 2 bars (held-out) | in key (held-out) | "
        "notes/bar (held-out) | bars 9-16 back 4 or 8 bars before (held-out) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for card in cards:
        m, t, d = card["metrics"], card["training"], card["data"]
        orig, held = card.get("originality") or {}, card.get("originality_held_out") or {}
        gen_s, held_s = card["sanity"].get("generated") or {}, card["sanity"].get("held_out") or {}
        minutes = (t.get("wall_seconds") or 0) / 60
        lines.append(
            f"| `{card['name']}` | {d['train_melodies']} | {t['steps']} steps, "
            f"{minutes:.0f} min | {m['nll']:.3f} | {m['perplexity']:.2f} | {m['accuracy']:.3f} | "
            f"{m['event_accuracy']:.3f} | {m['no_event_accuracy']:.3f} | "
            f"{_share(orig, 'share_over_2_bars', 1)} ({_share(held, 'share_over_2_bars', 1)}) | "
            f"{_share(gen_s, 'in_key_share')} ({_share(held_s, 'in_key_share')}) | "
            f"{_number(gen_s, 'notes_per_bar')} ({_number(held_s, 'notes_per_bar')}) | "
            f"{_structure(card, 'generated')} ({_structure(card, 'real')}) |"
        )
    return lines


def _structure(card: dict, which: str) -> str:
    """The share of bars 9-16 equal to the bar 4 or 8 bars before, of a card's ``structure``
    (its continued held-out tunes, or the same real tunes)."""
    exact = ((card.get("structure") or {}).get(which) or {}).get("exact") or {}
    return _share(exact, "lag_4_or_8", 1)


def _controls_card(report: dict) -> dict:
    """What a card keeps of a ``melodygen controls`` report: the model's figures at the top
    (``controls.meter``, ``controls.key``: the control accuracies its bars judge), the
    compared models' and the real held-out tunes' beside them, per type too."""
    model, *others = report["models"]
    return {
        **model["figures"],
        "refused": model["refused"],
        "compared": [
            {"model": other["model"], "family": other["family"], **other["figures"]}
            for other in others
        ],
        "held_out": report["held_out"],
        "rules": report["rules"],
        "settings": {
            key: report["settings"][key]
            for key in ("num", "seed", "temperature", "bars", "check_bars", "key_scale_share")
        },
    }


def _latent_card(report: dict) -> dict:
    """What a card keeps of a ``melodygen latent`` report: the prior samples' and the
    training melodies' overlap with the held-out melodies, and the blends' distances."""
    overlap, blends = report["overlap"], report["blends"]
    return {
        "overlap": {
            "prior": overlap["prior"],
            "train": overlap["train"],
            "samples": overlap["samples"],
            "seed": overlap["seed"],
            "temperature": overlap["temperature"],
        },
        "blends": {
            key: blends[key]
            for key in (
                "pairs",
                "steps",
                "seed",
                "ends",
                "nearer",
                "closer_share",
                "smooth_share",
                "to_first",
                "to_last",
                "ends_kept",
                "joint",
            )
        },
    }


def _validity_card(validity: dict) -> dict:
    """What a card keeps of a ``melodygen validity`` report."""
    settings = validity["settings"]
    return {
        "generated": {k: v for k, v in validity["generated"].items() if k != "problems"},
        "held_out": validity["held_out"],
        "share_of_real": validity["share_of_real"],
        "problems": validity["generated"].get("problems", []),
        "settings": {
            key: settings.get(key, False)
            for key in (
                "num",
                "seed",
                "temperature",
                "bars",
                "check_bars",
                "length_limit",
                "length_unit",
                "held_out_tunes",
            )
        },
    }


def _text_table(cards: list[dict], family_name: str) -> list[str]:
    """The models that write text (ABC): NLL per symbol, bits per note, validity."""
    from melodygen.core.family import get_family

    nll = get_family(family_name).figure_labels().get("nll", "NLL").split(" (")[0]
    lines = [
        f"| checkpoint | train tunes | training | {nll} | perplexity | accuracy | "
        "bits/note | valid: bars checked, raw (held-out) | copies > 2 bars (held-out) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for card in cards:
        m, t, d = card["metrics"], card["training"], card["data"]
        valid = card.get("validity") or {}
        made, real = valid.get("generated") or {}, valid.get("held_out") or {}
        raw = (card.get("validity_raw") or {}).get("generated") or {}
        orig, held = card.get("originality") or {}, card.get("originality_held_out") or {}
        minutes = (t.get("wall_seconds") or 0) / 60
        lines.append(
            f"| `{card['name']}` | {d['train_melodies']} | {t['steps']} steps, "
            f"{minutes:.0f} min | {m['nll']:.3f} | {m['perplexity']:.2f} | {m['accuracy']:.3f} | "
            f"{_number(m, 'bits_per_note_pooled')} | "
            f"{_share(made, 'valid', 1)}, {_share(raw, 'valid', 1)} "
            f"({_share(real, 'valid', 1)}) | "
            f"{_share(orig, 'share_over_2_bars', 1)} ({_share(held, 'share_over_2_bars', 1)}) |"
        )
    return lines


def quality_bar(cards: list[dict]) -> list[str]:
    """Per style: how much lower lookback_rnn and attention_rnn's held-out NLL is than
    basic's; then each bar a card states (its ``quality_bar``), met or not."""
    lines = []
    by_name = {card["name"]: card for card in cards}
    for style in sorted({card["style"] for card in cards}):
        basic = by_name.get(f"{style}_basic_rnn")
        if basic is None:
            continue
        for config in COMPARED_WITH_BASIC:
            other = by_name.get(f"{style}_{config}")
            if other is None:
                continue
            base, value = basic["metrics"]["nll"], other["metrics"]["nll"]
            change = (base - value) / base * 100
            word = "lower" if value < base else "HIGHER"
            lines.append(
                f"- {style}: {config} held-out NLL {value:.3f} is {abs(change):.1f}% {word} "
                f"than basic_rnn's {base:.3f} nats per step."
            )
    for card in cards:
        for bar in card.get("quality_bar") or []:
            value = bar["value"]
            shown = f"{value:.3f}" if isinstance(value, int | float) else "missing"
            lines.append(
                f"- {card['name']}: {bar['bar']}: {shown}, {'met' if bar['met'] else 'NOT met'}."
            )
    return lines


def _share(figures: dict, key: str, digits: int = 0) -> str:
    value = figures.get(key)
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def _number(figures: dict, key: str) -> str:
    value = figures.get(key)
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.2f}"
    )


def write_readme(output: Path) -> Path:
    """Regenerate the table between the markers of ``output/README.md``."""
    path = output / "README.md"
    begin, end = "<!-- table: begin -->", "<!-- table: end -->"
    text = path.read_text() if path.exists() else f"# Shipped checkpoints\n\n{begin}\n{end}\n"
    if begin not in text or end not in text:
        text += f"\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{readme_table(read_cards(output))}{end}{tail}")
    return path


# Command line -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m melodygen.release",
        description="Reproduce the shipped checkpoints from the public datasets.",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=Path("../shared/data"),
        help="folder holding nottingham/, pop909/ and folk_abc/ (default ../shared/data)",
    )
    parser.add_argument(
        "--work", type=Path, default=Path("."), help="where data/ and runs/ go (default .)"
    )
    parser.add_argument("--output", type=Path, default=Path("checkpoints"))
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        metavar="NAME",
        help="these recipes only, shipped or not (e.g. jigs_abc_char: the seed's jigs-only "
        "setting)",
    )
    parser.add_argument(
        "--steps", nargs="+", default=[*STEPS, "package"], choices=[*STEPS, "package"]
    )
    args = parser.parse_args(argv)
    try:
        chosen = recipes(args.data_root, args.work, args.only)
        for recipe in chosen:
            missing = [
                s.path for s in recipe.style.sources if not (args.data_root / s.path).exists()
            ]
            if missing and "build" in args.steps and not recipe.done("build"):
                raise MelodyGenError(
                    f"{recipe.name} needs {', '.join(missing)} under {args.data_root}; "
                    "see the README's dataset section for where to get it"
                )
            run_recipe(recipe, tuple(args.steps))
        if "package" in args.steps:
            for recipe in chosen:
                print(f"[{recipe.name}] -> {write_checkpoint(recipe, args.output)}")
            print(f"table written to {write_readme(args.output)}")
    except MelodyGenError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
