"""Model families: the one interface through which every kind of model is reached.

A family is one way of turning music into numbers and back, with the network that learns
it and the sampler that writes new music with it (``melody_rnn``: Magenta's event
encodings and LSTMs). The CLI, the training loop, evaluation, originality, release and the
studio reach a model only through its :class:`Family`, found by the ``family`` field of
its ``melodygen.json`` or ``dataset.json``; nothing outside a family's own folder branches
on a family's or a configuration's name.

A new family is a subclass of :class:`Family` registered with :func:`register` (built-in
families are listed in :data:`melodygen.families.BUILTIN`). What every family shares is
written once in ``melodygen.core``: the saved-model folder, the training loop (resume,
early stopping, time limit, history, TensorBoard, ``metrics.jsonl``, ``--init-from``),
bits per note, and the result type the studio renders
(:class:`melodygen.core.generation.GenerationResult`).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from melodygen.errors import MelodyGenError, one_line

if TYPE_CHECKING:
    import keras
    import numpy as np
    from note_seq import NoteSequence

    from melodygen.core.generation import GenerationRequest, GenerationResult

FAMILY_FIELD = "family"
DEFAULT_FAMILY = "melody_rnn"
"""The family of a ``melodygen.json`` or ``dataset.json`` without a ``family`` field:
every file written before families existed, the six shipped checkpoints among them."""


class UnknownFamilyError(MelodyGenError):
    """A model or dataset names a family this installation does not have."""


# What a family hands to the shared code ---------------------------------------------------


class Hyperparameters(Protocol):
    """The hyperparameters the shared training loop reads; a family's own may hold more.
    A dataclass (the shared code makes changed copies with ``dataclasses.replace``)."""

    batch_size: int
    learning_rate: float
    clip_norm: float

    def to_dict(self) -> dict: ...


class ModelInfo(Protocol):
    """What a family reads from and writes to ``melodygen.json`` (see ``Family.read_info``).
    A dataclass: the training loop sets ``training`` and saves changed copies
    (``dataclasses.replace``)."""

    family: str
    """The name of the family it belongs to (a class attribute is enough)."""
    hparams: Hyperparameters
    training: dict
    """Facts about the run that made the weights (dataset, steps, history), saved as is."""

    def to_dict(self) -> dict:
        """The whole JSON, ``family`` field included."""
        ...


class Split(Protocol):
    """One split of a built dataset in memory: its examples (melodies, tunes)."""

    def __len__(self) -> int: ...

    @property
    def lengths(self) -> np.ndarray:
        """Each example's length in the family's units (steps, characters, tokens): a NumPy
        integer array (its sum is the split's size in the run's facts)."""
        ...


class BuildSummary(Protocol):
    """What a dataset build read, kept and dropped: what ``Family.build_dataset`` returns."""

    def format(self) -> str:
        """Aligned lines for the terminal."""
        ...


class TrainingData(Protocol):
    """A built dataset: what ``Family.open_dataset`` returns."""

    path: Path

    def load(self, split: str) -> Split: ...


Batch = tuple[Any, Any, int]
"""(network inputs, targets, number of real targets: the weight of its figures in means)."""


@dataclass(frozen=True)
class TuneScore:
    """How well a model predicts one tune: its total negative log-likelihood and its notes.

    ``bits`` is the tune's total negative log-likelihood in the family's own representation
    (every event, character or token of it), in bits; ``notes`` the notes the tune plays.
    ``bits / notes`` is bits per note: how many yes/no questions, on average, the model
    needs to guess each note. Families with different representations are compared by it.
    """

    name: str
    bits: float
    notes: int

    def __post_init__(self) -> None:
        if self.notes < 1:
            raise ValueError(f"tune {self.name}: a score needs at least one note")

    @property
    def bits_per_note(self) -> float:
        return self.bits / self.notes


class Generator(Protocol):
    """A loaded model, ready to generate: what ``Family.load_generator`` returns."""

    checkpoint: Path
    load_seconds: float
    description: str
    """What the model is, in a few words ("attention_rnn"), for messages."""

    def generate(self, request: GenerationRequest) -> GenerationResult: ...

    def primer_notices(self, request: GenerationRequest) -> list[str]: ...


# The interface ----------------------------------------------------------------------------


class Family(ABC):
    """One kind of model: its data, network, training figures, scoring and generator.

    Subclasses set the class attributes and implement the abstract methods; the shared
    code calls nothing else. ``info`` is always what :meth:`read_info` or
    :meth:`new_model_info` returned for this family.
    """

    name: ClassVar[str]
    """The ``family`` field of its files: a short identifier such as ``melody_rnn``."""
    title: ClassVar[str]
    """What the studio and the CLI call it: "Melody RNN"."""
    summary: ClassVar[str]
    """One line: what a musician gets from it."""

    # Saved models ---------------------------------------------------------------------

    @abstractmethod
    def read_info(self, values: dict, source: str | Path) -> ModelInfo:
        """The info a ``melodygen.json`` holds, checked whole against this family's schema:
        anything else raises ``ModelFileError`` naming ``source`` and the field."""

    @abstractmethod
    def build_network(self, info: ModelInfo) -> keras.Model:
        """A fresh network shaped as ``info`` says."""

    @abstractmethod
    def max_weight_values(self, info: ModelInfo) -> int:
        """The most numbers a weights file of this network may hold (weights and, from a
        training run, Adam's two moments); a file past it is refused before it is read."""

    def describe(self, info: ModelInfo) -> str:
        """One line about a model of this family, for listings ("basic_rnn, 2x128 LSTM")."""
        return self.title

    def configuration(self, info: ModelInfo) -> str | None:
        """The named configuration the model was built as ("attention_rnn"); None for a
        family without configurations (the studio then names it by :meth:`describe`)."""
        return None

    def configurations(self) -> dict[str, str]:
        """Each configuration's name with what it does, in musicians' words (the studio's
        help page); empty for a family without configurations."""
        return {}

    def model_facts(self, info: ModelInfo) -> list[tuple[str, str]]:
        """(label, value) rows about the network for the studio's Models page, such as
        ("layers", "512 x 512 LSTM"); the studio adds the family, configuration and size."""
        return []

    def home_key(self, info: ModelInfo) -> int | None:
        """The key (major tonic, a pitch class) the model's training melodies were all moved
        to, which it generates in and transposes from; None when it kept their own keys."""
        return None

    # Data -----------------------------------------------------------------------------

    @abstractmethod
    def build_dataset(
        self,
        inputs: Sequence[str | Path],
        output: str | Path,
        config: str | None = None,
        eval_ratio: float = 0.1,
        options: dict | None = None,
        workers: int | None = None,
        progress: bool = True,
    ) -> BuildSummary:
        """Read the music files and folders ``inputs``, split them by song
        (:func:`melodygen.core.split.song_is_eval`), encode them and write a dataset to
        ``output`` whose ``dataset.json`` names this family. ``options`` holds the CLI's
        ``dataset build`` settings (melody extraction, transpositions, key); a family
        reads those it understands."""

    def build_dataset_like(
        self,
        info: ModelInfo,
        model_dir: Path,
        inputs: Sequence[str | Path],
        output: str | Path,
        eval_ratio: float = 0.1,
        options: dict | None = None,
        workers: int | None = None,
        progress: bool = True,
    ) -> BuildSummary:
        """A dataset that the saved model in ``model_dir`` (``info``) reads, to fine-tune it
        (``dataset build --like``): encoded with the model's own encoding, classes or
        vocabulary, never ones fitted to ``inputs``; what the model lacks is mapped as the
        family sensibly can and said in the summary. By default: built as the model's
        configuration, then refused in one line (:meth:`check_fits`) if the model cannot
        read it; a family that fits its encoding to the data overrides this."""
        summary = self.build_dataset(
            inputs, output, config=self.configuration(info), eval_ratio=eval_ratio,
            options=options, workers=workers, progress=progress,
        )  # fmt: skip
        self.check_fits(info, Path(model_dir), self.open_dataset(output))
        return summary

    @abstractmethod
    def open_dataset(self, path: str | Path) -> TrainingData:
        """A dataset this family built (its ``dataset.json`` names the family)."""

    @abstractmethod
    def new_model_info(self, dataset: TrainingData, hparams: str | dict | None) -> ModelInfo:
        """The info of a fresh network for ``dataset``, with hyperparameter overrides."""

    @abstractmethod
    def check_fits(self, info: ModelInfo, model_dir: Path, dataset: TrainingData) -> None:
        """Refuse (``DatasetError``, one line with what to do) a model that cannot read
        ``dataset``: another encoding, vocabulary or input size."""

    def check_config(self, dataset: TrainingData, config: str) -> None:
        """Refuse training ``dataset`` as configuration ``config`` when it was built otherwise
        (``melodygen train --config``); a family without configurations refuses any."""
        raise MelodyGenError(f"{self.title} models have no configurations; leave out --config")

    def with_hparams(self, info: ModelInfo, hparams: str | dict | None) -> ModelInfo:
        """``info`` with training hyperparameters overridden (to resume or fine-tune); the
        network's shape may not change, or the weights would not fit."""
        if hparams:
            raise MelodyGenError(f"{self.title} models take no hyperparameter overrides here")
        return info

    # Training -------------------------------------------------------------------------

    @abstractmethod
    def training_batches(self, split: Split, info: ModelInfo, seed: int) -> Iterator[Batch]:
        """Shuffled training batches, forever."""

    @abstractmethod
    def evaluation_batches(self, split: Split, info: ModelInfo) -> list[Batch]:
        """Every example of ``split`` once, in order."""

    @abstractmethod
    def compile(self, model: keras.Model, info: ModelInfo) -> None:
        """Attach optimizer (Adam with ``info.hparams``' rate and clipping), loss, metrics."""

    @abstractmethod
    def evaluate_batches(
        self, model: keras.Model, batches: list[Batch], info: ModelInfo
    ) -> dict[str, float]:
        """The family's held-out figures over ``batches`` (dropout off); ``steps`` among them."""

    @abstractmethod
    def selection_metric(self, info: ModelInfo) -> str:
        """The held-out figure the best model and early stopping are judged by (lower wins)."""

    def progress_figures(self, figures: dict, split: str) -> str:
        """The figures a training run prints at each evaluation (``split``: train or eval)."""
        return " ".join(f"{k} {v:.3f}" for k, v in figures.items() if k != "steps")

    def check_backend(self, info: ModelInfo) -> None:
        """Refuse a Keras backend that cannot train this model, before any work starts."""
        return None

    # Evaluation -----------------------------------------------------------------------

    @abstractmethod
    def score_tunes(
        self, model: keras.Model, info: ModelInfo, tunes: Sequence[tuple[str, list[NoteSequence]]]
    ) -> list[TuneScore]:
        """Bits and notes of each tune (name, its melodies as NoteSequences) under the model;
        a tune with no melody the model can read is left out."""

    @abstractmethod
    def score_dataset(
        self, model: keras.Model, info: ModelInfo, dataset: TrainingData, split: str
    ) -> list[TuneScore]:
        """Bits and notes of each song of a built dataset's split (its pieces summed)."""

    def grid_melodies(self, dataset: TrainingData, split: str) -> tuple[list, list[str]]:
        """A split's melodies as event arrays on the sixteenth-note grid, as the model sees
        them (in its key, as generation without a key writes them), and the song each comes
        from: what ``melodygen originality`` compares generated melodies with."""
        raise MelodyGenError(f"{self.title} datasets hold no melodies to compare with")

    def grid_steps_per_bar(self, dataset: TrainingData, split: str) -> list[int] | None:
        """Sixteenth-note steps per bar (16 in 4/4, 12 in 3/4 and 6/8, 8 in 2/4) of each of
        :meth:`grid_melodies`' melodies, in the same order, from each one's own meter: where
        bar lines fall for :mod:`melodygen.core.structure`. None (the default) when the
        dataset keeps no meters; the caller then says it reads them as 4/4."""
        return None

    def held_out_texts(self, dataset: TrainingData) -> list[str] | None:
        """The held-out (eval split) real tunes of ``dataset`` as ABC text, one per tune, for
        a family whose models write ABC: what ``melodygen validity`` and ``melodygen
        controls`` judge generated tunes beside (:mod:`melodygen.core.validity`). None (the
        default) for a family whose models write no text."""
        return None

    def latent_report(self, checkpoint: str | Path, dataset: str | Path, **settings) -> dict:
        """For a family whose models write from a latent code: what that code space gives
        (``melodygen latent``: random codes beside real melodies, blends between held-out
        ones), JSON-serialisable; ``settings`` as that command's flags. Others refuse."""
        raise MelodyGenError(f"{self.title} models have no latent code to measure")

    def latent_lines(self, report: dict) -> str:
        """:meth:`latent_report`'s figures as printed lines."""
        raise MelodyGenError(f"{self.title} models have no latent code to measure")

    def figure_labels(self) -> dict[str, str]:
        """The family's held-out figures (``evaluate_batches``' keys) in words, in the order
        a model card and its curves show them: a short name, then what it means in
        brackets (the curves' tabs show the short name)."""
        return {"nll": "NLL (negative log-likelihood; lower is better)", "steps": "examples"}

    def configuration_description(self, name: str) -> str:
        """One line about a named configuration, for model cards ("" without any)."""
        return ""

    def selection_words(self, info: ModelInfo) -> str:
        """Which evaluation ``melodygen train`` keeps, in words, for model cards."""
        return f"the evaluation with the lowest held-out {self.selection_metric(info)}"

    def figure_lines(self, figures: dict) -> list[str]:
        """The family's own evaluation figures (``evaluate_batches``') as report lines."""
        return [f"{name + ':':<20}{value}" for name, value in figures.items()]

    # Generation -----------------------------------------------------------------------

    NOTE_OPTIONS: ClassVar[frozenset[str]] = frozenset(
        {
            "primer",
            "length_steps",
            "key",
            "mode",
            "in_scale",
            "qpm",
            "temperature",
            "top_k",
            "top_p",
            "min_pitch",
            "max_pitch",
            "num_outputs",
            "seed",
            "beam_size",
            "branch_factor",
            "steps_per_iteration",
            "include_primer",
            "time_signature",
            "start_on_downbeat",
        }
    )
    """The GenerationRequest fields a family reads unless it says otherwise: all but the
    text ones (``rhythm``, ``title``, ``text_primer``)."""

    def request_options(self) -> frozenset[str]:
        """The :class:`~melodygen.core.generation.GenerationRequest` fields this family's
        generator reads ("primer", "key", "rhythm", "text_primer", ...): the studio shows
        the controls of these only. By default every field but the text ones."""
        return self.NOTE_OPTIONS

    def follows_form(self) -> bool:
        """Whether the family's generator follows a request's ``form`` (AABB, ...: sections
        that return, :mod:`melodygen.core.form`). False by default: the CLI and the studio
        then refuse a form in one line instead of writing a tune without one."""
        return False

    @abstractmethod
    def load_generator(self, checkpoint: str | Path, device: str = "auto") -> Generator:
        """A generator for a saved model (``device``: "auto", "cpu" or "gpu")."""


# The registry -----------------------------------------------------------------------------

_REGISTRY: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Make ``family`` reachable by its name (a second registration replaces the first)."""
    _REGISTRY[family.name] = family
    return family


def _load_builtin() -> None:
    from melodygen.families import BUILTIN

    for module in BUILTIN:
        importlib.import_module(module)


def families() -> list[Family]:
    """Every registered family, built-in ones first."""
    _load_builtin()
    return list(_REGISTRY.values())


def get_family(name: str) -> Family:
    """The family called ``name``; one line naming the known ones otherwise."""
    _load_builtin()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        shown = repr(name) if len(repr(name)) <= 42 else repr(name)[:39] + "..."
        raise UnknownFamilyError(
            f"unknown model family {shown}: this MelodyGen knows {known} "
            "(a newer MelodyGen may know it)"
        )
    return _REGISTRY[name]


DATASET_FILE = "dataset.json"


def open_dataset(path: str | Path) -> tuple[Family, TrainingData]:
    """A built dataset of any family, opened by the family its ``dataset.json`` names."""
    import json

    from melodygen.errors import DatasetError

    path = Path(path)
    meta = path / DATASET_FILE
    if not path.exists():
        raise DatasetError(
            f"dataset {path} does not exist; build one with `melodygen dataset build`"
        )
    if not meta.is_file():
        raise DatasetError(
            f"{path} is not a MelodyGen dataset (no {DATASET_FILE}); "
            "build one with `melodygen dataset build`"
        )
    try:
        if meta.stat().st_size > 100_000_000:
            raise ValueError("far too big")
        values = json.loads(meta.read_text())
    except (OSError, ValueError, RecursionError) as error:
        raise DatasetError(f"{meta} is damaged ({one_line(error)}); rebuild the dataset") from None
    if not isinstance(values, dict):
        raise DatasetError(f"{meta} is damaged (not a JSON object); rebuild the dataset")
    try:
        family = family_of(values, meta)
    except UnknownFamilyError as error:
        raise DatasetError(str(error)) from None
    return family, family.open_dataset(path)


def model_label(model_dir: str | Path) -> str:
    """A saved model's short name for summaries: its folder's name (``pop_basic_rnn``), with
    its run's for a run's ``model`` or ``best`` folder (``run/model``)."""
    path = Path(model_dir)
    return f"{path.parent.name}/{path.name}" if path.name in ("model", "best") else path.name


def check_model_reads(family: Family, dataset: TrainingData, info: ModelInfo, model_dir) -> None:
    """Refuse, in one line, a model that is not of the family that built ``dataset`` or
    cannot read it (another encoding or vocabulary: :meth:`Family.check_fits`)."""
    from melodygen.errors import DatasetError

    if info.family != family.name:
        model_title = get_family(info.family).title
        raise DatasetError(
            f"{dataset.path} holds {family.title} data, but {model_dir} is a {model_title} "
            "model; give the dataset it was trained on"
        )
    family.check_fits(info, Path(model_dir), dataset)


def family_of(values: dict, source: str | Path) -> Family:
    """The family a ``melodygen.json`` or ``dataset.json`` names (``melody_rnn`` without one)."""
    name = values.get(FAMILY_FIELD, DEFAULT_FAMILY)
    if not isinstance(name, str):
        raise UnknownFamilyError(f"{source}: {FAMILY_FIELD} must be a string")
    try:
        return get_family(name)
    except UnknownFamilyError as error:
        raise UnknownFamilyError(f"{source}: {error}") from None
