"""The studio's logic, without Streamlit: the model catalog, primers, and results as files.

The web app (``app.py`` and ``pages/``) only lays out widgets; everything it shows or
offers for download is made here, with the same library calls the CLI uses
(:func:`~melodygen.core.generation.load_generator`, which loads a model of any family,
:func:`~melodygen.io.primer.parse_primer`,
:func:`~melodygen.io.primer.midi_primer`, :func:`~melodygen.render.piano_roll`,
:class:`~melodygen.render.Synth`). This module never imports Streamlit, so all of it is
tested and benchmarked on its own.

- **Catalog**: every ``checkpoints/*/`` folder holding a saved model (``melodygen.json``)
  of any registered family, with its ``card.json`` and ``metrics.jsonl`` when they are
  there. The folder is ``$MELODYGEN_CHECKPOINTS`` when set; the user's own models (trained
  or uploaded in the studio, :mod:`melodygen.user_models`) follow. What the catalog says about a
  model's network comes from its family (:class:`~melodygen.core.family.Family`):
  nothing here reads one family's fields.
- **Primers**: typed notes, or an uploaded MIDI file checked for size and content before
  any track of it is offered.
- **Results**: a generation run kept as melodies; each variation is rendered to a
  piano-roll PNG, MIDI and WAV bytes once per instrument, and all of them to one zip.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import io
import itertools
import json
import logging
import math
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from melodygen import notation
from melodygen.core.checkpoint import (
    MODEL_JSON,
    WEIGHTS_FILE,
    info_family,
    model_info_from_dict,
    read_model_info,
    read_model_json,
)
from melodygen.core.family import Family, get_family
from melodygen.core.form import DEFAULT_SECTION_BARS, FORMS, FREE, form_length_steps, parse_form
from melodygen.core.generation import (
    DEFAULT_BLEND_STEPS,
    DEFAULT_DISTANCE,
    GeneratedMelody,
    GenerationRequest,
    GenerationResult,
    load_generator,
)
from melodygen.errors import MelodyGenError, one_line
from melodygen.io.primer import (
    MUSICXML_SUFFIXES,
    PRIMER_SUFFIXES,
    Primer,
    PrimerError,
    TrackInfo,
    events_to_note_names,
    midi_primer,
    musicxml_to_midi,
    unsupported_file_reason,
)
from melodygen.limits import PRIMER_MIDI, RANGES, check_file_size, check_value, display_name
from melodygen.model_host import ModelHost, ModelHostStopped, plain_main
from melodygen.render import (
    INSTRUMENTS,
    PNG_DPI,
    AudioUnavailableError,
    Synth,
    audio_available,
    figure_png,
    in_order,
    note_name,
    piano_roll,
    program_number,
    wav_bytes,
)
from melodygen.theory import COMMON_METERS, MODES, Meter, key_name, parse_key, parse_meter
from melodygen.theory import KEY_NAMES as NOTE_NAMES
from melodygen.user_models import user_models_dir

logger = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINTS_ENV",
    "MAX_BARS",
    "MAX_POLYPHONY",
    "MAX_UPLOAD_BYTES",
    "MAX_UPLOAD_NOTES",
    "MAX_VARIATIONS",
    "MIME_TYPES",
    "MidiUpload",
    "Continuation",
    "ModelEntry",
    "SharedModel",
    "BackgroundLoader",
    "RenderPool",
    "StudioError",
    "StudioResult",
    "StudioSettings",
    "VariationFiles",
    "card_facts",
    "checkpoints_dir",
    "continuation",
    "data_credits",
    "default_track",
    "discover_models",
    "generate",
    "iter_variations",
    "load_synth",
    "metric_curves",
    "midi_bytes",
    "model_designs",
    "primer_notices",
    "primer_png",
    "primer_roll",
    "primer_problem",
    "read_metrics",
    "read_midi_upload",
    "read_upload",
    "render_variations",
    "request_options",
    "sample_again",
    "track_label",
    "upload_primer",
    "weights_size",
    "zip_bytes",
    # Variations and blends
    "BLEND",
    "RANDOM",
    "VARIATIONS",
    "VARIATION_KINDS",
    "InOrder",
    "VariationSettings",
    "distance_label",
    "generated_choices",
    "make_variations",
    "makes_blends",
    "makes_variations",
    "melody_png",
    "read_melody_upload",
    "render_steps",
    "variation_kinds",
    "variation_models",
]

CHECKPOINTS_ENV = "MELODYGEN_CHECKPOINTS"
DEFAULT_CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
CARD_FILE = "card.json"
METRICS_FILE = "metrics.jsonl"

MAX_VARIATIONS = int(RANGES["variations"].high)
MAX_BARS = int(RANGES["studio_bars"].high)
MAX_UPLOAD_BYTES = PRIMER_MIDI.max_bytes
"""Uploaded primer files larger than this are refused (a whole symphony is below it).

1,000,000 bytes: Streamlit's upload limit is in MB of 10**6 bytes in the browser (except
on Windows, 2**20) and 2**20 on the server, so this is the size every browser lets
through and the app reads; the same limit applies to ``--primer-midi``."""
MAX_UPLOAD_MB = round(PRIMER_MIDI.max_mb)
"""``MAX_UPLOAD_BYTES`` in Streamlit's unit, for ``max_upload_size`` and ``maxUploadSize``."""
MAX_UPLOAD_NOTES = PRIMER_MIDI.max_notes
"""More notes than this in one file is not a primer; reading it would hold up the server."""
UPLOAD_FILE_NAME = "upload.mid"
"""The one name uploads are saved under: a user's file name never becomes a path."""
MAX_POLYPHONY = 32
"""Tracks with more notes sounding at once are clusters, not a line a melody can come from."""
RESULT_WIDTH = 4.25
"""Inches of a variation's piano roll: shown about 425 px wide, two cards in a row."""
SWITCH_INTERVAL = 0.0005
"""Seconds between Python's thread switches in the studio's server (app.py sets it with
``sys.setswitchinterval``; Python's default is 0.005). Generation is a Python loop around
the compiled step that lets go of Python's lock at every TensorFlow call; while another
thread holds the lock (other sessions' page runs), it waits up to one interval to get it
back each time. Measured with one busy Python thread beside it, under load: a generation
of 0.45 s took 2.1 s at the default and 1.2 s at 0.0005 (no better below). Since the
studio's models run in a :class:`~melodygen.model_host.ModelHost`, this matters only for
models loaded in the server's own process (``BackgroundLoader(own_process=False)``)."""
PRIMER_WIDTH = 7.0
"""Inches of the primer's piano roll, shown across the page (700 px and more)."""
MIME_TYPES = {
    "mid": "audio/midi",
    "wav": "audio/wav",
    "zip": "application/zip",
    "abc": "text/vnd.abc",
    "musicxml": "application/vnd.recordare.musicxml+xml",
}
SCORE_WIDTH = 400
"""Pixels a variation's score is drawn across: the width of a result card (two to a row),
so its notes are as big as a printed part's (it is vector art: sharp when zoomed)."""
PRIMER_SCORE_WIDTH = 800
"""Pixels the primer's score is drawn across: the page's width."""
FORM_FIELDS = ("form", "section_bars", "vary_repeats")
"""The request fields of a form: among a model's options when its family follows a form
(``Family.follows_form``), so the Generate form shows Form, Section bars, Vary repeats."""
FORM_CHOICES = (FREE, *FORMS)
"""The Generate form's *Form* choices: free (no form), then the named forms."""
CONTROL_FIELDS = {
    "primer": ("primer",),
    "key": ("key",),
    "mode": ("mode",),
    "in_scale": ("in_scale",),
    "meter": ("time_signature",),
    "bpm": ("qpm",),
    "bars": ("length_steps",),
    "temperature": ("temperature",),
    "variations": ("num_outputs",),
    "seed": ("seed",),
    "beam": ("beam_size", "branch_factor", "steps_per_iteration"),
    "top_k": ("top_k",),
    "top_p": ("top_p",),
    "pitch_range": ("min_pitch", "max_pitch"),
    "rhythm": ("rhythm",),
    "title": ("title",),
    "abc_primer": ("text_primer",),
    "form": FORM_FIELDS,
}
"""The Generate form's controls and the GenerationRequest fields each one sets: a control
is shown when the model's family reads one of its fields (``Family.request_options``)."""


SYNTAX_HINT = (
    "Notes like C4 E4 G4:2 (letter, optional # or b, octave; :N = length in sixteenths, "
    "default a quarter), r for a rest, - to hold, | bar lines optional."
)


class StudioError(MelodyGenError):
    """A studio request that cannot be carried out: the message says why, in plain words."""


# Catalog ------------------------------------------------------------------------------------


def checkpoints_dir() -> Path:
    """Where shipped models live: ``$MELODYGEN_CHECKPOINTS``, else the repository's checkpoints/."""
    value = os.environ.get(CHECKPOINTS_ENV, "").strip()
    return Path(value).expanduser() if value else DEFAULT_CHECKPOINTS


@dataclass(frozen=True)
class ModelEntry:
    """One shipped model: its folder and what its card says (or what could be worked out).

    ``config`` is the model's configuration ("attention_rnn"), or for a family without
    configurations its family's one-line description of it.
    """

    name: str
    path: Path
    config: str
    style: str
    description: str
    card: dict = field(default_factory=dict, compare=False, hash=False)
    info: dict = field(default_factory=dict, compare=False, hash=False)
    """The checked ``melodygen.json``; empty when it cannot be loaded (see ``model_problem``)."""
    problems: tuple[str, ...] = ()
    """Why the card is missing or partial, or the model cannot be loaded, for the Models page."""
    family: str = ""
    """The title of the model's family ("Melody RNN"); "" when its file cannot be read."""
    family_name: str = ""
    """The ``family`` field of its ``melodygen.json`` ("melody_rnn"); "" when unreadable."""
    facts: tuple[tuple[str, str], ...] = field(default=(), compare=False, hash=False)
    """(label, value) rows its family gives about the network (``Family.model_facts``)."""
    model_problem: str | None = None
    """Why the model cannot be loaded (its ``melodygen.json`` refused), else None."""
    user: bool = False
    """A model of the user's own (the user models folder), not a shipped one."""

    @property
    def label(self) -> str:
        """``Folk · attention_rnn``: how pickers name the model; a user's by its own name."""
        if self.user:
            return f"{self.name} (yours) · {self.config}"
        return f"{self.style.replace('_', ' ').title()} · {self.config}"

    @property
    def kind(self) -> str:
        """``Melody RNN · attention_rnn``: the model's family and configuration."""
        if not self.family or self.config == self.family:
            return self.family or self.config
        return f"{self.family} · {self.config}"

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def stamp(self) -> float:
        """Changes when the saved model is replaced, so a cache holding it can notice."""
        files = [self.path / MODEL_JSON, self.path / WEIGHTS_FILE]
        return max((p.stat().st_mtime for p in files if p.exists()), default=0.0)


MAX_CARD_BYTES = 1_000_000
"""A model card is a few kilobytes; a bigger file is not read."""


def _read_json(path: Path) -> tuple[dict, str | None]:
    """A JSON object from ``path``, or ({}, why not); never more than MAX_CARD_BYTES read."""
    try:
        with open(path, "rb") as handle:  # no further than the limit (think /dev/zero)
            data = handle.read(MAX_CARD_BYTES + 1)
        if len(data) > MAX_CARD_BYTES:
            return {}, f"{path.name} is over {MAX_CARD_BYTES:,} bytes, too big for a card"
        value = json.loads(data.decode("utf-8"))
    except FileNotFoundError:
        return {}, f"no {path.name}"
    except RecursionError:
        return {}, f"{path.name} is nested too deeply to be a model card"
    except OSError as error:  # the message would name the server's path
        return {}, f"{path.name} could not be read ({error.strerror or type(error).__name__})"
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return {}, f"{path.name} could not be read ({error})"
    if not isinstance(value, dict):
        return {}, f"{path.name} does not hold a JSON object"
    return value, None


def _read_model_file(path: Path) -> tuple[dict, Any, str | None]:
    """A model file checked whole as loading checks it, by its family: (its JSON, the
    family's info, None), or ({}, None, why not). A hostile file, or one of a family this
    installation lacks, is a problem shown on the Models page, never an exception in the
    model list."""
    try:
        values = read_model_json(path)
        return values, model_info_from_dict(values, path), None
    except MelodyGenError as error:
        return {}, None, str(error).replace(str(path), path.name)
    except Exception as error:  # noqa: BLE001 - a family's reader failing loses this model only
        logger.warning("could not read the model file %s: %s", path, error)
        return {}, None, f"{path.name} could not be read ({one_line(error)})"


def discover_models(root: str | Path | None = None) -> list[ModelEntry]:
    """The shipped models (:func:`checkpoints_dir`) then the user's own
    (:func:`melodygen.user_models.user_models_dir`, marked ``user``); with ``root``, only
    the models in that folder, as :func:`models_in` lists them."""
    if root is not None:
        return models_in(root)
    shipped = models_in(checkpoints_dir())
    try:
        mine = models_in(user_models_dir(), user=True)
    except MelodyGenError as error:  # a user models folder set inside the package
        logger.warning("%s", error)
        mine = []
    return shipped + mine


def models_in(root: str | Path, user: bool = False) -> list[ModelEntry]:
    """Every folder directly under ``root`` with a saved model.

    ``card.json`` supplies name, style, configuration and description; whatever it lacks
    is worked out from ``melodygen.json``, read by the family it names, and the folder name
    (``folk_attention_rnn`` is style ``folk``, configuration ``attention_rnn``). A model
    whose file cannot be loaded (damaged, or of a family this installation lacks) is listed
    with one line saying why. Folders without ``melodygen.json`` are skipped. Sorted by
    style, the style's default first (a card with ``"studio_default": true``: the model the
    pickers open with), then configuration.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    entries = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (folder / MODEL_JSON).is_file():
            continue
        info, model, info_problem = _read_model_file(folder / MODEL_JSON)
        card, card_problem = _read_json(folder / CARD_FILE)
        problems = tuple(p for p in (info_problem, card_problem) if p)
        family = info_family(model) if model is not None else None
        architecture = family.describe(model) if family is not None else ""
        named = family.configuration(model) if family is not None else None
        config = str(card.get("config") or named or architecture or "unknown")
        style = card.get("style")
        if not style:
            prefix = folder.name.removesuffix(config).rstrip("_-")
            style = prefix if prefix and prefix != folder.name else "custom"
        description = card.get("description")
        if not isinstance(description, str) or not description.strip():
            description = f"{architecture or config}: no model card"
        entries.append(
            ModelEntry(
                name=str(card.get("name") or folder.name),
                path=folder,
                config=config,
                style=str(style),
                description=description.strip(),
                card=card,
                info=info,
                problems=problems,
                family=family.title if family is not None else "",
                family_name=family.name if family is not None else "",
                facts=tuple(family.model_facts(model)) if family is not None else (),
                model_problem=info_problem,
                user=user,
            )
        )
    return sorted(
        entries, key=lambda e: (e.style, e.card.get("studio_default") is not True, e.config, e.name)
    )


def _number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return str(seconds)
    minutes = round(seconds / 60)
    return (
        f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{seconds / 60:.1f} min"
    )


def weights_size(entry: ModelEntry) -> tuple[int | None, int | None]:
    """(bytes of the weights file, number of weights in it), None where it cannot be read."""
    path = entry.path / WEIGHTS_FILE
    if not path.is_file():
        return None, None
    count = None
    try:
        import h5py

        sizes: list[int] = []
        with h5py.File(path, "r") as handle:
            handle.visititems(
                lambda _, item: sizes.append(item.size) if isinstance(item, h5py.Dataset) else None
            )
        count = int(sum(sizes))
    except Exception as error:  # noqa: BLE001 - a damaged file only loses this figure
        logger.warning("could not count the weights in %s: %s", path, error)
    return path.stat().st_size, count


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _share(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{100 * value:.0f}%"
    return "n/a"


def card_facts(entry: ModelEntry) -> dict[str, list[tuple[str, str]]]:
    """What the Models page shows, grouped: data, model, training, held-out metrics, originality.

    Each group is a list of (label, value) rows; rows and groups the card does not
    support are left out, nothing is invented (only the Model group is always there).
    """
    card = entry.card
    groups: dict[str, list[tuple[str, str]]] = {}

    data = _dict(card.get("data"))
    rows = []
    for source in data.get("sources") or []:
        if isinstance(source, dict):
            text = str(source.get("name", "?"))
            if source.get("licence"):
                text += f" ({source['licence']})"
            if source.get("url"):
                text += f", {source['url']}"
            rows.append(("source", text))
    for key, label in (
        ("train_melodies", "training melodies"),
        ("eval_melodies", "held-out melodies"),
        ("train_steps", "training steps of music"),
        ("read_as", "read as"),
        ("transpositions", "keys"),
    ):
        if data.get(key) is not None:
            rows.append((label, _number(data[key])))
    if rows:
        groups["Data"] = rows

    # What the network is, as its family says: the model file is read, the card's words not.
    rows = [("family", entry.family)] if entry.family else []
    if entry.config != entry.family:
        rows.append(("configuration", entry.config))
    rows += [(str(label), str(value)) for label, value in entry.facts]
    size, count = card.get("size_bytes"), card.get("parameters")
    if not isinstance(size, int) or not isinstance(count, int):
        size, count = weights_size(entry)
    if size is not None:
        weights = f"{size / 2**20:.1f} MB"
        if count is not None:
            weights += f", {count:,} weights"
        rows.append(("size", weights))
    groups["Model"] = rows

    training = _dict(card.get("training"))
    rows = []
    for key, label in (("steps", "steps"), ("batch_size", "batch size")):
        if training.get(key) is not None:
            rows.append((label, _number(training[key])))
    if training.get("wall_seconds") is not None:
        rows.append(("time", _duration(training["wall_seconds"])))
    for key in ("machine", "selected"):
        if training.get(key):
            rows.append((key, str(training[key])))
    if rows:
        groups["Training"] = rows

    metrics = _dict(card.get("metrics"))
    rows = []
    for key, label in figure_labels(entry).items():
        if key == "label_nll":
            continue  # the training loss; the card shows the event figures
        if metrics.get(key) is not None:
            rows.append((label, _number(metrics[key])))
    if metrics.get("bits_per_note_pooled") is not None:
        rows.append(("bits per note (pooled)", _number(metrics["bits_per_note_pooled"])))
    if rows:
        groups["Held-out metrics"] = rows

    # Sampled tunes judged as ABC text (abc_char); real held-out tunes in brackets.
    validity = _dict(card.get("validity"))
    sampled, real_tunes = _dict(validity.get("generated")), _dict(validity.get("held_out"))
    rows = [
        (label, f"{_share(sampled[key])} ({_share(real_tunes.get(key))})")
        for key, label in (
            ("parses", "tunes that parse (held-out tunes)"),
            ("full_bars", "full bars last M:/L: (held-out)"),
            ("balanced_repeats", "repeats and endings balance (held-out)"),
            ("valid", "valid on all three (held-out)"),
        )
        if key in sampled
    ]
    if rows:
        groups["Validity"] = rows

    # Generated melodies against the training set; real held-out melodies in brackets.
    generated, held = _dict(card.get("originality")), _dict(card.get("originality_held_out"))
    sanity = _dict(card.get("sanity"))
    made, real = _dict(sanity.get("generated")), _dict(sanity.get("held_out"))
    rows = []
    verdict = _dict(card.get("verdict"))
    if verdict.get("status"):
        reasons = "; ".join(str(r) for r in verdict.get("reasons") or [])
        rows.append(("verdict", f"{verdict['status']}{': ' + reasons if reasons else ''}"))
    if "share_over_2_bars" in generated:
        rows.append(
            (
                "melodies copying > 2 bars (held-out songs)",
                f"{_share(generated['share_over_2_bars'])} "
                f"({_share(held.get('share_over_2_bars'))})",
            )
        )
    if "max_bars" in generated:
        rows.append(("longest copied run", f"{_number(generated['max_bars'], 1)} bars"))
    if "in_key_share" in made:
        rows.append(
            (
                "notes in key (held-out songs)",
                f"{_share(made['in_key_share'])} ({_share(real.get('in_key_share'))})",
            )
        )
    if "notes_per_bar" in made:
        rows.append(
            (
                "notes per bar (held-out songs)",
                f"{_number(made['notes_per_bar'], 2)} ({_number(real.get('notes_per_bar'), 2)})",
            )
        )
    if rows:
        groups["Originality"] = rows
    return groups


def read_metrics(path: str | Path) -> list[dict]:
    """A training log as flat records ``{"step", "split", metric: value, ...}``.

    Reads both the trainer's own ``metrics.jsonl`` (one line per evaluation, with
    ``"train"`` and ``"eval"`` objects) and flat lines carrying a ``"split"`` key. Lines
    that are not JSON objects with a step are skipped; a missing file gives ``[]``.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    records = []
    for line in lines:
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(value, dict) or not isinstance(value.get("step"), (int, float)):
            continue
        step = int(value["step"])
        if "split" in value:
            records.append({**value, "step": step})
            continue
        for split, figures in value.items():
            if isinstance(figures, dict):
                records.append({"step": step, "split": split, **figures})
    return records


def metric_curves(records: list[dict]) -> dict[str, dict[str, list]]:
    """Per metric, columns for a chart: ``{"loss": {"step": [...], "train": [...], ...}}``.

    Every split becomes a column aligned on ``step`` (None where a split has no value at
    that step). ``steps`` (a count, not a figure) and non-numbers are left out.
    """
    values: dict[str, dict[str, dict[int, float]]] = {}
    for record in records:
        split = str(record.get("split", "?"))
        for name, value in record.items():
            if name in ("step", "split", "steps", "seconds") or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)) and math.isfinite(value):
                values.setdefault(name, {}).setdefault(split, {})[record["step"]] = float(value)
    curves = {}
    for name, by_split in values.items():
        steps = sorted({step for points in by_split.values() for step in points})
        columns: dict[str, list] = {"step": steps}
        for split in sorted(by_split, key=lambda s: (s != "train", s)):
            columns[split] = [by_split[split].get(step) for step in steps]
        curves[name] = columns
    return curves


def figure_labels(entry: ModelEntry) -> dict[str, str]:
    """The model's held-out figures in words, in the order its card and curves show them
    (its family's; for a model that cannot be loaded, the figures every family has)."""
    labels = {"loss": "loss"}
    try:
        labels |= get_family(entry.family_name).figure_labels()
    except MelodyGenError:
        labels |= {"nll": "NLL (negative log-likelihood; lower is better)"}
    return labels


def model_designs(entries: list[ModelEntry]) -> list[tuple[str, str]]:
    """(name, what it does in musicians' words) of each kind of model in ``entries``, each
    once: a configuration as its family describes it, or a family without configurations
    by its title and summary. Models whose file cannot be loaded are left out."""
    designs: dict[str, str] = {}
    for entry in entries:
        if not entry.family_name or entry.model_problem:
            continue
        try:
            family = get_family(entry.family_name)
        except MelodyGenError:
            continue
        words = family.configurations()
        if words or entry.config != entry.family:
            designs.setdefault(entry.config, words.get(entry.config, "a configuration of its own"))
        else:
            designs.setdefault(family.title, family.summary)
    return sorted(designs.items())


def request_options(entry: ModelEntry | SharedModel) -> frozenset[str]:
    """The GenerationRequest fields the model's family reads (``Family.request_options``);
    every note-music field for a model whose family cannot be found."""
    from melodygen.core.family import Family

    family = getattr(entry, "family", None)
    if not isinstance(family, Family):
        try:
            family = get_family(getattr(entry, "family_name", "") or "")
        except MelodyGenError:
            return Family.NOTE_OPTIONS
    forms = FORM_FIELDS if family.follows_form() else ()
    return frozenset(family.request_options()) | frozenset(forms)


def controls(options: frozenset[str] | set[str]) -> frozenset[str]:
    """The Generate form's controls (``CONTROL_FIELDS``' names) a family with these request
    options reads: the page shows these and hides the others."""
    return frozenset(name for name, fields in CONTROL_FIELDS.items() if set(fields) & options)


def data_credits(entries: list[ModelEntry]) -> list[dict]:
    """The data sources named by the models' cards, each once, for the credits."""
    seen: dict[str, dict] = {}
    for entry in entries:
        data = entry.card.get("data") if isinstance(entry.card.get("data"), dict) else {}
        for source in data.get("sources") or []:
            if isinstance(source, dict) and source.get("name"):
                seen.setdefault(str(source["name"]), source)
    return list(seen.values())


def kept_step(entry: ModelEntry) -> int | None:
    """The training step whose weights ship (the card's ``training.steps``), if the card says.

    Training runs on past it and keeps the evaluation with the lowest held-out NLL, so
    the curves run further than the model that is used.
    """
    steps = _dict(entry.card.get("training")).get("steps")
    if isinstance(steps, bool) or not isinstance(steps, (int, float)) or not math.isfinite(steps):
        return None  # a card is only read, never trusted: Infinity and NaN are JSON too
    return int(steps)


def curve_range(
    columns: dict[str, list], margin: float = 0.05, settled: float = 0.2
) -> tuple[float, float] | None:
    """(low, high) for a curve's y axis, fitted to its values once training has settled.

    An axis from 0, or one reaching up to the untrained model's first figures, squeezes a
    held-out NLL that moves between 0.74 and 0.80 into a flat line. The range covers the
    values after the first ``settled`` share of the steps (all of them when that leaves
    none), with a small margin; the earlier, higher ones run off the chart. None without
    values.
    """
    steps = columns.get("step") or []
    start = steps[0] + settled * (steps[-1] - steps[0]) if steps else 0
    values = [
        v
        for name, column in columns.items()
        if name != "step"
        for step, v in zip(steps, column, strict=False)
        if v is not None and step >= start
    ] or [v for name, column in columns.items() if name != "step" for v in column if v is not None]
    if not values:
        return None
    low, high = min(values), max(values)
    pad = (high - low) * margin or abs(high) * margin or 1.0
    return low - pad, high + pad


# Models and synth, shared by every session ------------------------------------------------


class SharedModel:
    """A loaded generator that any number of threads (browser sessions) may use at once.

    Generation runs one request at a time under a lock, so two sessions asking together
    both get their own results, one after the other. With a ``host``
    (:class:`~melodygen.model_host.ModelHost`) the generator lives in the host's process
    and this object keeps only the model's description: the process that holds it never
    imports TensorFlow. Without one, the generator is loaded here.
    """

    def __init__(
        self, checkpoint: str | Path, name: str | None = None, host: ModelHost | None = None
    ) -> None:
        self._host = host
        self._key = f"{Path(checkpoint).resolve()}#{next(_MODEL_KEYS)}"
        # Loaded here first (its own checks give the errors), or described here and loaded
        # in the host, which needs the family.
        self.generator = load_generator(checkpoint) if host is None else None
        _, self.info = read_model_info(checkpoint)
        self.family = info_family(self.info)
        if host is not None:
            host.load(self._key, checkpoint, self.family)
        self.name = name or Path(checkpoint).name
        self.description = self.family.describe(self.info)
        """What the model is, in its family's words ("attention_rnn, 2x512 LSTM")."""
        self.home_key = self.family.home_key(self.info)
        """The key the model generates in and transposes from (``Family.home_key``)."""
        self._lock = threading.Lock()

    @property
    def config(self) -> str:
        """Its configuration, or its description for a family without configurations."""
        return self.family.configuration(self.info) or self.description

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """The generator's ``generate`` under the model's lock."""
        with self._lock:
            return self._call("generate", request)

    def primer_notices(self, request: GenerationRequest) -> list[str]:
        """The generator's ``primer_notices``: what it will change in the request's primer.
        Not under the model's lock: it reads the primer only, and the page asks on every
        run, which must not wait for other sessions' generations."""
        return self._call("primer_notices", request)

    def _call(self, method: str, request: GenerationRequest):
        if self._host is None:
            return getattr(self.generator, method)(request)
        return self._host.call(self._key, method, request)

    def warm_up(self, variations: int = 4) -> None:
        """Trace and compile the step for ``variations`` rows now, not at the first click."""
        self.generate(GenerationRequest(length_steps=2, num_outputs=variations, seed=0))

    def close(self) -> None:
        """Free the generator in the host (nothing to do for one loaded here)."""
        if self._host is not None:
            self._host.drop(self._key)


_MODEL_KEYS = itertools.count()


def load_synth() -> tuple[Synth | None, str]:
    """The synthesizer with its SoundFont loaded, or None and a sentence saying why audio is off."""
    ok, reason = audio_available()
    if not ok:
        logger.warning("audio unavailable: %s", reason)
        return None, reason
    try:
        synth = Synth()
    except AudioUnavailableError as error:
        logger.warning("audio unavailable: %s", error)
        return None, str(error)
    return synth, reason


_WORKER_SYNTHS: dict[tuple[str, int, float], Synth] = {}


def _worker_synth(soundfont: str, sample_rate: int, gain: float) -> Synth:
    """In a render worker: its own Synth for these settings, loaded once."""
    key = (soundfont, sample_rate, gain)
    if key not in _WORKER_SYNTHS:
        _WORKER_SYNTHS[key] = Synth(soundfont, sample_rate=sample_rate, gain=gain)
    return _WORKER_SYNTHS[key]


def _pooled_sound(
    melody: GeneratedMelody, program: int, track: str, synth: tuple[str, int, float] | None
) -> tuple[bytes, bytes | None]:
    """:func:`_sound` in a render worker, with the worker's copy of the page's Synth."""
    return _sound(melody, program, track, _worker_synth(*synth) if synth is not None else None)


def _warm_worker(synth: tuple[str, int, float] | None) -> int:
    """In a render worker: load what the first render would (Matplotlib, the SoundFont)."""
    from melodygen.render import figure_png, piano_roll  # noqa: F401 - imported to warm up

    if synth is not None:
        _worker_synth(*synth)
    return os.getpid()


URGENT = 1
"""Render jobs of a lower priority (a variation's number: 0 is the first) are started
even while a session generates; the others wait for the generations (:class:`RenderPool`)."""
MAX_HOLD = 3.0
"""Seconds a render job waits for other sessions' generations at most: sessions pressing
Generate one after another never hold a page's later variations for long."""


class RenderPool:
    """Worker processes that render variations (piano roll, score, MIDI, WAV) for every
    session of the server, most urgent first.

    Drawing piano rolls, engraving scores and driving FluidSynth hold Python's lock most
    of the time, so renders in the server's threads take turns on one core, and the
    model's generation (a Python loop around each compiled step) waits for the lock at
    every step. In ``workers`` processes of their own (started with ``spawn``: the server
    has TensorFlow loaded, which must not be forked), renders use every core and leave
    the server's lock to generation and to Streamlit.

    Jobs wait here, not in the workers, and the one with the lowest ``priority`` goes
    next (then the oldest): the page asks for each variation's sound, then its pictures,
    with the variation's number as the priority, so a session's first audio does not wait
    behind another session's later variations. The processes hold no session's data
    between jobs and are started once, so memory stays fixed however many sessions render
    at once. A pool that breaks (a worker killed) is replaced for the next job; the
    broken job is made in the caller's thread.

    While any session generates or waits for its model (:meth:`generating`), only the
    jobs of a priority below :data:`URGENT` (every session's first variation) are
    started: the later variations wait, so that the generations waiting in line get the
    cores, and every session hears its first variation sooner. None waits longer than
    :data:`MAX_HOLD`.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, int(workers or min(2, os.cpu_count() or 1)))
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._waiting: list[tuple[float, int, float, Future, Any, tuple]] = []
        """(priority, order, when submitted, future, function, arguments), a heap."""
        self._timer: threading.Timer | None = None
        self._count = itertools.count()
        self._running = 0
        self._generating = 0
        self._closed = False

    def _pool(self) -> ProcessPoolExecutor:
        """The executor (made when needed); the caller holds ``_lock``."""
        if self._executor is None:
            import multiprocessing

            self._executor = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn")
            )
        return self._executor

    def start(self, synth: Synth | None = None) -> list[Future]:
        """Start every worker now and load what a render needs (not at the first click)."""
        settings = _synth_settings(synth)
        return [self._submit(_warm_worker, (settings,), -math.inf) for _ in range(self.workers)]

    def submit(
        self,
        function,
        arguments: tuple,
        pooled=None,
        synth: Synth | None = None,
        priority: float = 0,
    ) -> _Fallback:
        """``function(*arguments)`` in a worker, as a future, after every job of a lower
        ``priority``; ``pooled`` (when given) is called there instead, with ``synth``
        replaced by its settings as the last argument (a worker loads its own copy of the
        SoundFont). If the pool breaks or is closed, the result is made in the thread
        that asks for it."""
        job = (
            (pooled, (*arguments[:-1], _synth_settings(synth))) if pooled else (function, arguments)
        )
        return _Fallback(self._submit(*job, priority), function, arguments)

    @contextlib.contextmanager
    def generating(self) -> Iterator[None]:
        """Hold the jobs of later variations while the block runs (a generation)."""
        with self._lock:
            self._generating += 1
        try:
            yield
        finally:
            with self._lock:
                self._generating -= 1
            self._dispatch()

    def _submit(self, function, arguments: tuple, priority: float) -> Future:
        future: Future = Future()
        with self._lock:
            if self._closed:
                future.set_exception(BrokenProcessPool("the render pool is closed"))
                return future
            heapq.heappush(
                self._waiting,
                (priority, next(self._count), time.monotonic(), future, function, arguments),
            )
        self._dispatch()
        return future

    def _dispatch(self) -> None:
        """Hand the most urgent waiting jobs to free workers.

        Callbacks are attached after the lock is let go: a job that is already done
        (a worker that answered at once, or a broken pool) runs its callback in this
        thread, and the callback takes the lock.
        """
        started, failed = [], []
        with self._lock:
            while self._running < self.workers and self._waiting:
                if self._generating and self._waiting[0][0] >= URGENT:
                    # Every waiting job is a later variation: it waits for the generations
                    # (their end dispatches again), or until the oldest has waited MAX_HOLD.
                    held = time.monotonic() - min(job[2] for job in self._waiting)
                    if held < MAX_HOLD:
                        self._wake_after(MAX_HOLD - held)
                        break
                _, _, _, future, function, arguments = heapq.heappop(self._waiting)
                if not future.set_running_or_notify_cancel():
                    continue  # cancelled while waiting
                try:
                    with plain_main():  # a worker may be started here
                        inner = self._pool().submit(function, *arguments)
                except (BrokenProcessPool, RuntimeError) as error:
                    if "interpreter shutdown" not in str(error):  # at exit nobody listens
                        logger.warning("the render workers are gone (%s); starting new ones", error)
                    broken, self._executor = self._executor, None
                    if broken is not None:
                        broken.shutdown(wait=False, cancel_futures=True)
                    failed.append((future, BrokenProcessPool(str(error))))
                    continue
                self._running += 1
                started.append((inner, future))
        for future, error in failed:
            future.set_exception(error)
        for inner, future in started:
            inner.add_done_callback(lambda done, future=future: self._finished(done, future))

    def _wake_after(self, seconds: float) -> None:
        """Dispatch again after ``seconds`` (one timer at a time); the caller holds the lock."""
        if self._timer is None:
            self._timer = threading.Timer(seconds, self._woken)
            self._timer.daemon = True
            self._timer.start()

    def _woken(self) -> None:
        with self._lock:
            self._timer = None
        self._dispatch()

    def _finished(self, done: Future, future: Future) -> None:
        with self._lock:
            self._running -= 1
        error = done.exception()
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(done.result())
        self._dispatch()

    def close(self) -> None:
        """Stop the workers; waiting jobs are cancelled (their results are made by whoever
        asks for them)."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
            waiting, self._waiting = self._waiting, []
        for *_, future, _function, _arguments in waiting:
            future.cancel()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


def _synth_settings(synth: Synth | None) -> tuple[str, int, float] | None:
    return (str(synth.soundfont), synth.sample_rate, synth.gain) if synth is not None else None


class _Fallback:
    """A worker's future that, if its worker died (or the pool was closed), is made in the
    caller's thread instead."""

    def __init__(self, future: Future | None, function, arguments: tuple) -> None:
        self._future = future
        self._function = function
        self._arguments = arguments

    def result(self):
        if self._future is not None:
            try:
                return self._future.result()
            except (BrokenProcessPool, CancelledError):
                logger.warning("a render worker died; rendering this part in the server")
        return self._function(*self._arguments)

    def cancel(self) -> bool:
        return self._future.cancel() if self._future is not None else False


class BackgroundLoader:
    """What is slow to load, loaded on a background thread while the page is already shown.

    A server's first model imports TensorFlow, reads the weights and compiles the
    generation step; the synthesizer reads its SoundFont. The studio asks for both as
    soon as the Generate page is drawn and gets :class:`~concurrent.futures.Future`
    objects: the page shows a progress message while they are not done, and waits on them
    only when Generate is pressed (or results are drawn). One thread loads one thing at a
    time, in the order asked (the model first, as it is needed first). Loaded models are
    kept per checkpoint folder and file date, the last ``max_models`` of them; a failed
    load is kept too (its error is shown) until the checkpoint's files change.

    With ``own_process`` (the studio's way) the models are loaded and run in a
    :class:`~melodygen.model_host.ModelHost`, one process beside the server, so the
    server never imports TensorFlow; without it, in this process.
    """

    def __init__(
        self, warm_up_rows: int = 4, max_models: int = 8, own_process: bool = True
    ) -> None:
        self.warm_up_rows = warm_up_rows
        self.max_models = max_models
        self.host = ModelHost() if own_process else None
        """The process the models run in (None: this one)."""
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="melodygen-loader")
        self._models: OrderedDict[tuple[str, float], Future] = OrderedDict()
        self._synths: dict[str | None, Future] = {}
        self._asked: dict[int, float] = {}
        self._lock = threading.Lock()
        self._render_pool: RenderPool | None = None

    def model(self, path: str | Path, stamp: float, name: str) -> Future:
        """The :class:`SharedModel` of a checkpoint, loaded and warmed up, as a future."""
        key = (str(path), float(stamp))
        let_go = []
        with self._lock:
            future = self._models.get(key)
            if future is not None and _host_failed(future):
                future = None  # the host died while loading it: load it again
            if future is None:
                future = self._pool.submit(self._load_model, str(path), name)
                self._asked[id(future)] = time.monotonic()
                self._models[key] = future
                while len(self._models) > self.max_models:
                    old = self._models.popitem(last=False)[1]
                    self._asked.pop(id(old), None)
                    let_go.append(old)
            self._models.move_to_end(key)
        for old in let_go:  # outside the lock: a done one is closed here, in the host
            old.add_done_callback(_close_model)
        return future

    def synth(self, soundfont_setting: str | None = None) -> Future:
        """``load_synth()``'s (synth or None, reason) as a future, once per SoundFont setting."""
        with self._lock:
            if soundfont_setting not in self._synths:
                self._synths[soundfont_setting] = self._pool.submit(load_synth)
            return self._synths[soundfont_setting]

    def render_pool(self, soundfont_setting: str | None = None) -> RenderPool:
        """The process's :class:`RenderPool`, made on first use; its workers are started
        (and load the SoundFont) on the loading thread, after what was asked before."""
        with self._lock:
            pool, made = self._render_pool, self._render_pool is None
            if made:
                pool = self._render_pool = RenderPool()
        if made:
            synth = self.synth(soundfont_setting)
            self._pool.submit(lambda: pool.start(synth.result()[0]))
        return pool

    def waited(self, future: Future) -> float:
        """Seconds since ``future`` was first asked for (0 for one this loader did not make)."""
        asked = self._asked.get(id(future))
        return time.monotonic() - asked if asked is not None else 0.0

    def _load_model(self, path: str, name: str) -> SharedModel:
        started = time.perf_counter()
        try:
            model = SharedModel(path, name=name, host=self.host)
            model.warm_up(self.warm_up_rows)
        except Exception:
            logger.exception("could not load the model %s from %s", name, path)
            raise
        logger.info("loaded model %s from %s in %.1f s", name, path, time.perf_counter() - started)
        return model


def _host_failed(future: Future) -> bool:
    """Whether a model's load ended because its host process failed (not the model's fault)."""
    return (
        future.done()
        and not future.cancelled()
        and isinstance(future.exception(), ModelHostStopped)
    )


def _close_model(future: Future) -> None:
    """A model the loader let go of: its memory freed in the host (a session still using
    it has it loaded again there at its next call)."""
    if not future.cancelled() and future.exception() is None:
        future.result().close()


def quiet_tensorflow(environ: dict | None = None, devices: str | Path = "/dev") -> str:
    """Set TensorFlow's C++ log level before it is imported; returns the level used.

    Without an NVIDIA device node (``/dev/nvidia0``...), TensorFlow's CUDA probe fails and
    logs an error line at import (``failed call to cuInit``), which is no error on a
    machine without a GPU: level 3 keeps it out of the server log (TensorFlow's real
    errors still reach the page and the log as Python exceptions). With a GPU, level 2
    (warnings hidden, errors shown). A level already set in the environment is kept.
    """
    environ = os.environ if environ is None else environ
    gpu = any(Path(devices).glob("nvidia[0-9]*"))
    return environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if gpu else "3")


# Settings -----------------------------------------------------------------------------------

AUTO_KEY = "Auto"
KEY_CHOICES = [AUTO_KEY, *NOTE_NAMES]
MODE_CHOICES = list(MODES)
FROM_PRIMER = "From primer"
METER_CHOICES = [FROM_PRIMER, *(str(meter) for meter in COMMON_METERS)]
"""The meter picker: the primer's (4/4 without one), or 4/4, 3/4, 6/8, 2/4."""


def mode_label(mode: str) -> str:
    """``harmonic_minor`` -> ``harmonic minor``."""
    return mode.replace("_", " ")


@dataclass
class StudioSettings:
    """The Generate form's values, in the units a musician types them."""

    key: str = AUTO_KEY
    mode: str = "major"
    in_scale: bool = False
    bpm: float = 120.0
    bars: int = 8
    temperature: float = 1.0
    variations: int = 4
    seed: int | None = None
    beam_size: int = 1
    branch_factor: int = 1
    steps_per_iteration: int = 1
    top_k: int = 0
    """0: no top-k truncation."""
    top_p: float = 1.0
    """1.0: no top-p truncation."""
    min_pitch: int = 0
    max_pitch: int = 127
    meter: str = FROM_PRIMER
    """A :data:`METER_CHOICES` entry (or any ``N/D``): bars are counted in this meter."""
    rhythm: str = ""
    """The dance type (ABC's ``R:``: jig, reel), for families that read it; "": none."""
    title: str = ""
    """The tune's title (ABC's ``T:``), for families that write one; "": the model's own."""
    abc_primer: str = ""
    """An ABC opening (header fields and/or bars), for families that read one."""
    form: str = FREE
    """A :data:`FORM_CHOICES` entry (or any form string): with a form, it sets the length
    (``bars`` is not used) and the tune ends on a cadence (:mod:`melodygen.core.form`)."""
    section_bars: int = DEFAULT_SECTION_BARS
    vary_repeats: bool = False

    def meter_for(self, primer: Primer) -> Meter:
        """The meter these settings generate in: the chosen one, else the primer's."""
        return parse_meter(self.meter) or primer.meter

    def to_request(
        self, primer: Primer, options: frozenset[str] | set[str] | None = None
    ) -> GenerationRequest:
        """The generation request these settings ask for, checked; a seed is drawn if none given.

        ``options``: the request fields the model's family reads (``request_options``);
        controls of the others are hidden, so their values are left at the defaults (a
        note primer typed for another model is not sent to an ABC model). None: all.

        Raises:
            MelodyGenError: a value is out of range or the primer does not fit.
        """
        if options is not None:
            reads = controls(options)
            hidden = {
                name: getattr(StudioSettings, name)
                for name in ("key", "mode", "in_scale", "meter", "top_k", "top_p")
                if name not in reads
            }
            if "beam" not in reads:
                hidden |= {"beam_size": 1, "branch_factor": 1, "steps_per_iteration": 1}
            if "pitch_range" not in reads:
                hidden |= {"min_pitch": 0, "max_pitch": 127}
            hidden |= {name: "" for name in ("rhythm", "title", "abc_primer") if name not in reads}
            if "form" not in reads:  # a family that follows no form gets a free tune
                hidden |= {name: getattr(StudioSettings, name) for name in FORM_FIELDS}
            if "primer" not in reads:
                primer = Primer(events=[], description="no primer")
            return dataclasses.replace(self, **hidden).to_request(primer)
        # The studio's own ranges; every other number is checked by request.validate()
        # against the same table (melodygen.limits.RANGES) as the CLI's flags.
        check_value("variations", self.variations, StudioError)
        check_value("studio_bars", self.bars, StudioError)
        meter = self.meter_for(primer)
        problem = primer_problem(primer, self)
        if problem:
            raise StudioError(problem)
        if self.min_pitch > self.max_pitch:
            raise StudioError(
                f"the lowest note ({note_name(self.min_pitch)}) is above the highest "
                f"({note_name(self.max_pitch)}): choose a lowest note at or below the highest"
            )
        seed = self.seed if self.seed is not None else secrets.randbelow(2**31)
        length = self.length_steps(primer)
        request = GenerationRequest(
            primer=primer,
            length_steps=length,
            # None: the primer's (4/4 without one), or an ABC model's own M: line
            time_signature=parse_meter(self.meter),
            key=None if self.key == AUTO_KEY else parse_key(self.key),
            mode=self.mode,
            in_scale=bool(self.in_scale),
            qpm=float(self.bpm),
            temperature=float(self.temperature),
            top_k=int(self.top_k) or None,
            top_p=float(self.top_p) if self.top_p < 1.0 else None,
            min_pitch=int(self.min_pitch),
            max_pitch=int(self.max_pitch),
            num_outputs=int(self.variations),
            seed=int(seed),
            beam_size=int(self.beam_size),
            branch_factor=int(self.branch_factor),
            steps_per_iteration=int(self.steps_per_iteration),
            rhythm=" ".join(self.rhythm.split()) or None,
            title=" ".join(self.title.split()) or None,
            text_primer=self.abc_primer if self.abc_primer.strip() else None,
            form=parse_form(self.form),
            section_bars=self.section_bars,
            vary_repeats=bool(self.vary_repeats),
        )
        if primer.steps >= request.length_steps:
            bars = math.ceil(primer.steps / meter.steps_per_bar)
            raise StudioError(
                f"the primer is {_bars(bars)} long, so nothing is left to generate in "
                f"{_bars(self.bars)}: set the length to at least {_bars(bars + 1)}"
            )
        request.validate()
        return request

    def length_steps(self, primer: Primer) -> int:
        """The length asked for in steps: the form's (pickup bar included) when there is a
        form, else ``bars`` of the meter; checked against the studio's longest."""
        meter = self.meter_for(primer)
        if parse_form(self.form) == FREE:
            return int(self.bars) * meter.steps_per_bar
        steps = form_length_steps(self.form, self.section_bars, meter, primer.events)
        check_value("studio_bars", -(-steps // meter.steps_per_bar), StudioError)
        return steps

    def form_words(self, primer: Primer) -> str:
        """What the form asks for, for the page: ``"AABB of 8-bar sections: 32 bars of 4/4
        (the length above is not used)"``; "" without a form or when it cannot be laid out."""
        if parse_form(self.form) == FREE:
            return ""
        from melodygen.core.form import plan_form

        try:
            meter = self.meter_for(primer)
            plan = plan_form(self.form, self.section_bars, meter, primer.events)
        except MelodyGenError as error:
            return str(error)
        return f"Form {plan.describe()}: {plan.total_bars} bars in all (the length is the form's)."


def _bars(count: int | float) -> str:
    return f"{count:g} bar{'' if count == 1 else 's'}"


def primer_problem(
    primer: Primer, settings: StudioSettings, max_bars: int = MAX_BARS
) -> str | None:
    """Why the primer cannot be continued within the studio's length limit, or None.

    The page shows it next to the primer, before anything is generated: the length in
    bars counts the primer, and is at most ``max_bars``.
    """
    meter = settings.meter_for(primer)
    bars = math.ceil(primer.steps / meter.steps_per_bar)
    if bars < max_bars:
        return None
    return (
        f"this primer is {_bars(bars)} of {meter} long, and the studio makes melodies of at "
        f"most {_bars(max_bars)}, primer included: use at most {_bars(max_bars - 1)} of it"
    )


def primer_notices(model: SharedModel, primer: Primer, settings: StudioSettings) -> list[str]:
    """One-line remarks to show next to the primer: how it was read (a meter replaced),
    and the notes the model will move by octaves to fit its range, in these settings."""
    notices = list(primer.notices)
    if not primer.pitches():
        return notices
    try:
        request = GenerationRequest(
            primer=primer,
            length_steps=max(primer.steps, 1),
            key=None if settings.key == AUTO_KEY else parse_key(settings.key),
            mode=settings.mode,
        )
        notices += model.primer_notices(request)
    except MelodyGenError:  # the form's values are checked, and reported, at Generate
        pass
    return notices


# Primers ------------------------------------------------------------------------------------


@dataclass
class MidiUpload:
    """An uploaded MIDI file that passed the checks, with the tracks a primer can come from."""

    name: str
    data: bytes
    tracks: list[TrackInfo]
    usable: list[int]
    """Indices of tracks a primer can be taken from: pitched, with notes, not too dense."""
    notes: dict[int, str] = field(default_factory=dict)
    """Why a track is not usable, or what happens to its chords, by track index."""


def read_midi_upload(name: str, data: bytes, max_bytes: int = MAX_UPLOAD_BYTES) -> MidiUpload:
    """Check an uploaded file and list its tracks.

    The size is checked before anything else, and the MIDI reader checks notes, length,
    tempos and ticks (:data:`melodygen.limits.PRIMER_MIDI`) before it allocates by
    them. ``name`` is only shown, shortened and made printable
    (:func:`~melodygen.limits.display_name`); the bytes are read under a fixed name.

    Raises:
        StudioError, PrimerError, InputFileError: the file is too big, not MIDI, corrupt,
            empty, beyond the primer limits, holds only drums, or no track can give a
            melody. Messages name the upload, never a temporary path.
    """
    name = display_name(name)
    if not name.lower().endswith((".mid", ".midi")):
        raise StudioError(f"{name}: only MIDI files (.mid, .midi) can be used as a primer")
    limits = dataclasses.replace(PRIMER_MIDI, max_bytes=max_bytes)
    check_file_size(name, len(data), limits, StudioError)
    if not data:
        raise StudioError(f"{name} is empty (0 bytes)")
    if data[:4] not in (b"MThd", b"RIFF"):
        raise StudioError(f"{name} is not a MIDI file (it does not start with a MIDI header)")
    from melodygen.io.primer import midi_tracks

    tracks = _with_upload(name, data, midi_tracks)
    usable, notes = [], {}
    for track in tracks:
        if track.is_drum:
            notes[track.index] = "drums"
        elif not track.note_count:
            notes[track.index] = "no notes"
        elif track.max_polyphony > MAX_POLYPHONY:
            notes[track.index] = (
                f"up to {track.max_polyphony} notes at once: too dense to follow as a melody"
            )
        else:
            usable.append(track.index)
            if track.max_polyphony > 1:
                notes[track.index] = "chords: the top note of each is kept"
    if not usable:
        if tracks and all(t.is_drum or not t.note_count for t in tracks):
            reason = "it holds only drums; a primer needs a pitched melody"
        else:
            reason = (
                f"every pitched track plays more than {MAX_POLYPHONY} notes at once, "
                "which no melody can be read from"
            )
        raise PrimerError(f"{name}: no track can be used as a primer: {reason}")
    return MidiUpload(name=name, data=data, tracks=tracks, usable=usable, notes=notes)


def read_upload(name: str, data: bytes, max_bytes: int = MAX_UPLOAD_BYTES) -> MidiUpload:
    """Check an uploaded MIDI or MusicXML file and list its tracks.

    MIDI goes to :func:`read_midi_upload`. MusicXML (.musicxml, .mxl) is read with
    music21 and turned into MIDI first (:func:`~melodygen.io.primer.musicxml_to_midi`:
    parts, tempo, meter, key signature and pickup kept), then checked the same way;
    the upload keeps its own name. Any other file is refused with what is accepted
    and why (audio is sound, not notes; other notation formats: export MusicXML).

    Raises:
        StudioError, PrimerError, InputFileError: as :func:`read_midi_upload`, or the
            file is of another kind or not readable MusicXML.
    """
    shown = display_name(name)
    suffix = Path(shown).suffix.lower()
    if suffix not in PRIMER_SUFFIXES:
        raise StudioError(f"{shown}: {unsupported_file_reason(shown)}")
    if suffix not in MUSICXML_SUFFIXES:
        return read_midi_upload(name, data, max_bytes)
    check_file_size(shown, len(data), dataclasses.replace(PRIMER_MIDI, max_bytes=max_bytes))
    if not data:
        raise StudioError(f"{shown} is empty (0 bytes)")
    midi = _with_upload(shown, data, musicxml_to_midi, suffix=suffix)
    as_midi = f"{Path(shown).stem}.mid"
    try:
        upload = read_midi_upload(as_midi, midi, max(max_bytes, len(midi)))
    except MelodyGenError as error:  # name the file the user gave, not its MIDI copy
        raise type(error)(str(error).replace(as_midi, shown)) from None
    upload.name = shown
    return upload


def _with_upload(name: str, data: bytes, function, *args, suffix: str = ".mid", **kwargs):
    """Run ``function(path, ...)`` on the bytes saved as ``upload.mid`` (or ``upload`` +
    ``suffix``) in a fresh folder.

    The path never comes from the user's file name (a 268-byte or NUL-holding name
    broke it): ``name`` is only shown. Errors keep their type, and the temporary path in
    their message, or the fixed name in a primer's description, becomes ``name``.
    """
    shown = display_name(name)
    folder = Path(tempfile.mkdtemp(prefix="melodygen-upload-"))
    file_name = Path(UPLOAD_FILE_NAME).stem + suffix
    path = folder / file_name
    try:
        path.write_bytes(data)
        result = function(path, *args, **kwargs)
    except MelodyGenError as error:
        message = str(error).replace(str(path), shown).replace(str(folder), "(upload)")
        raise type(error)(message) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        texts = {
            item.name: getattr(result, item.name).replace(file_name, shown)
            for item in dataclasses.fields(result)
            if isinstance(getattr(result, item.name), str)
        }
        result = dataclasses.replace(result, **texts)
    return result


def track_label(track: TrackInfo) -> str:
    """``1: Lead (Flute), 120 notes``: how the track picker names a track."""
    name = track.name or "untitled"
    notes = f"{track.note_count:,} note{'s' if track.note_count != 1 else ''}"
    return f"{track.index}: {name} ({track.instrument_name}), {notes}"


def default_track(upload: MidiUpload) -> int:
    """The track offered first: one named MELODY (as POP909 names it), else the first usable."""
    for index in upload.usable:
        if upload.tracks[index].name.strip().lower() == "melody":
            return index
    return upload.usable[0]


def upload_primer(upload: MidiUpload, track: int, bars: int | None) -> Primer:
    """The opening ``bars`` of ``track`` of an upload, one note at a time, as a primer."""
    if track not in upload.usable:
        reason = upload.notes.get(track, "it does not exist")
        raise PrimerError(f"track {track} of {upload.name} cannot be used: {reason}")
    return _with_upload(upload.name, upload.data, midi_primer, track=track, bars=bars)


def primer_roll(
    primer: Primer,
    qpm: float | None = None,
    meter: Meter | None = None,
    width: float = PRIMER_WIDTH,
):
    """The primer's piano roll (shaded as primer), to check it before generating.

    ``qpm`` and ``meter`` are the tempo and meter the run will use (the form's), else
    the primer's own; note names are spelled in the primer's key.
    """
    title = f"Primer: {primer.description}" if primer.description else "Primer"
    return piano_roll(
        primer.events,
        primer_steps=primer.steps,
        qpm=qpm or primer.qpm,
        title=title,
        width=width,
        meter=meter or primer.meter,
        key=primer.key,
        mode=primer.mode,
    )


def primer_png(
    primer: Primer,
    qpm: float | None = None,
    meter: Meter | None = None,
    dpi: int = PNG_DPI,
    width: float = PRIMER_WIDTH,
) -> bytes:
    """:func:`primer_roll` as PNG bytes."""
    return figure_png(primer_roll(primer, qpm, meter, width), dpi=dpi)


@dataclass
class Continuation:
    """What "continue this one" puts into the form."""

    text: str
    """The variation in the typed note syntax: the next primer."""
    bars: int
    """Total length of the next run: the variation plus as many bars as it generated."""
    key: str | None
    """Key name that makes the engine read the primer exactly as it wrote it; None: keep."""
    mode: str
    meter: str = "4/4"
    """The variation's meter (also written first in ``text`` when it is not 4/4)."""


def continuation(result: StudioResult, index: int, max_bars: int = MAX_BARS) -> Continuation:
    """Variation ``index`` of a result as the next primer, in the key it was generated in.

    The new length adds as many bars as the variation generated (at least 4), capped at
    ``max_bars``. The key is the one the result was made in (its primer's key when the
    form said Auto): the engine then moves the primer into the model's key by exactly
    the shift it used to make it, so no note of it is folded into another octave.

    Raises:
        StudioError: the variation already fills ``max_bars``.
    """
    melody = result.melodies[index]
    bar = melody.meter.steps_per_bar
    bars = math.ceil(melody.steps / bar)
    if bars >= max_bars:
        raise StudioError(
            f"this variation is already {_bars(bars)} long, the most the studio makes "
            f"({max_bars}); download it and continue from a shorter one"
        )
    generated = math.ceil((melody.steps - melody.primer_steps) / bar)
    mode = result.mode if result.key is not None else result.request.mode
    key = None
    if result.model_key is not None and result.key is not None:
        # The model thinks in one key; the result was shifted from it to this key.
        key = NOTE_NAMES[result.key]
    elif result.model_key is not None:
        tonic = (result.model_key + result.transpose - MODES[mode][1]) % 12
        key = NOTE_NAMES[tonic]
    return Continuation(
        text=events_to_note_names(melody.events, melody.meter, result.key, mode),
        bars=min(max_bars, bars + max(4, generated)),
        key=key,
        mode=mode,
        meter=str(melody.meter),
    )


# Results ------------------------------------------------------------------------------------


@dataclass
class VariationFiles:
    """One variation rendered for people: piano roll, score, MIDI, WAV (None without
    audio), ABC and MusicXML.

    A tune its family could not read as music (``problem``) has only its ``text`` and
    ``abc``: no piano roll, score, MIDI, audio or MusicXML.
    """

    index: int
    stem: str
    png: bytes | None
    midi: bytes | None
    wav: bytes | None
    svg: str | None = None
    """The score, engraved (``notation.score_svg``); None where it could not be written."""
    abc: str | None = None
    musicxml: bytes | None = None
    text: str | None = None
    """The family's own text of the melody (ABC), to show as it was written."""
    problem: str | None = None
    """Why the family's text could not be read as music (one line), else None."""
    notation_problem: str | None = None
    """Why there is no score or MusicXML (one line), else None."""


@dataclass
class StudioResult:
    """A generation run as the page keeps it (in session state) between reruns."""

    melodies: list[GeneratedMelody]
    request: GenerationRequest
    model_name: str
    seconds: float
    transpose: int = 0
    """Semitones the engine added to the model's output to reach the requested key."""
    model_key: int | None = 0
    """The key (pitch class) the model's training melodies were moved to; None: kept."""
    key: int | None = None
    """Tonic of the key the melodies are in (asked for, the primer's, or the model's)."""
    mode: str = "major"
    key_source: str = ""
    """"chosen", "key signature", "estimated" or "model": where ``key`` came from."""
    notices: list[str] = field(default_factory=list)
    """Primer notes moved by octaves into the model's range, one line each."""
    warnings: list[str] = field(default_factory=list)
    """Settings that left the model almost no choice, one line each."""
    options: frozenset[str] = field(default_factory=frozenset)
    """The request fields the model's family reads (``Family.request_options``); empty:
    unknown (every note-music field)."""
    created: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S"))
    item_label: str = "Variation"
    """What each melody is called in titles and track names: "Variation", "Melody" (from
    a random code) or "Step" (of a blend)."""
    _files: dict[tuple[int, bool], list[VariationFiles]] = field(default_factory=dict, repr=False)
    _zips: dict[tuple[int, bool], bytes] = field(default_factory=dict, repr=False)
    _steps: dict[tuple[int, bool], tuple[list[VariationFiles], InOrder]] = field(
        default_factory=dict, repr=False
    )

    @property
    def seed(self) -> int | None:
        return self.request.seed

    @property
    def form_label(self) -> str:
        """Where the form's sections lie (``"Form AABB: A bars 1-8, A bars 9-16 (exact
        repeat), ..."``), the same in every melody; "" without a form."""
        sections = next((m.sections for m in self.melodies if m.sections), ())
        if not sections:
            return ""
        meter = self.request.meter
        letters = "".join(section.letter for section in sections)
        return f"Form {letters}: " + ", ".join(section.label(meter) for section in sections)

    @property
    def continuable(self) -> bool:
        """Whether "continue this one" can work: the model reads a note primer."""
        return not self.options or "primer" in self.options

    def stem(self, index: int) -> str:
        """File name without extension, e.g. ``melodygen_folk_attention_rnn_20250101-120000_03``."""
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.model_name).strip("-") or "model"
        return f"melodygen_{safe}_{self.created}_{index + 1:02d}"

    @property
    def archive_name(self) -> str:
        """File name of the "download all" zip."""
        return self.stem(0).rsplit("_", 1)[0] + ".zip"

    def files(
        self, program: int | str, synth: Synth | None, pool: RenderPool | None = None
    ) -> list[VariationFiles]:
        """Every variation rendered with ``program``; made once per instrument, then reused."""
        return list(self.iter_files(program, synth, pool))

    def iter_files(
        self, program: int | str, synth: Synth | None, pool: RenderPool | None = None
    ) -> Iterator[VariationFiles]:
        """The variations one by one: from memory if made before, else as each is rendered
        (in ``pool``'s worker processes when given, see :func:`iter_variations`)."""
        key = (program_number(program), synth is not None)
        if key in self._files:
            yield from self._files[key]
            return
        made = []
        for item in iter_variations(self, program, synth, pool=pool):
            made.append(item)
            yield item
        if len(self._files) >= 4:  # a few instruments back and forth; no more
            self._files.pop(next(iter(self._files)))
            self._zips.clear()
        self._files[key] = made

    def steps(
        self, program: int | str, synth: Synth | None
    ) -> tuple[list[VariationFiles], InOrder]:
        """A blend's steps for a row, and all of them in order (:func:`render_steps`);
        made once per instrument, then reused."""
        key = (program_number(program), synth is not None)
        if key not in self._steps:
            if len(self._steps) >= 4:  # a few instruments back and forth; no more
                self._steps.pop(next(iter(self._steps)))
            self._steps[key] = render_steps(self, program, synth)
        return self._steps[key]

    def zip(self, program: int | str, synth: Synth | None) -> bytes:
        """All variations' MIDI and WAV files and the settings, as one zip archive."""
        key = (program_number(program), synth is not None)
        if key not in self._zips:
            self._zips[key] = zip_bytes(self, self.files(program, synth), program)
        return self._zips[key]

    @property
    def key_name(self) -> str:
        """``"G major"``; "" when the key is unknown (a model that keeps keys)."""
        return key_name(self.key, self.mode) if self.key is not None else ""

    @property
    def key_label(self) -> str:
        """``"G major (from the primer's key signature)"``: the key and where it came from."""
        if self.key is None:
            return ""
        origin = {
            "chosen": "as chosen",
            "key signature": "from the primer's key signature",
            "estimated": "estimated from the primer",
        }.get(self.key_source, "the model's own key")
        return f"{self.key_name} ({origin})"

    def settings(self, program: int | str = 0) -> dict:
        """What produced these melodies, to reproduce them (written into the zip).

        Keys are names (``"G major"``, with where they came from), the meter is
        ``"3/4"``, the primer is written in the note syntax and spelled in its key.
        """
        request = dataclasses.asdict(self.request)
        request.pop("primer")
        for name in ("variations_of", "blend"):  # melodies, not settings: say which
            request[name] = _melody_words(getattr(self.request, name))
        primer = self.request.primer
        meter = self.request.meter
        request["time_signature"] = str(meter)
        request["key"] = (
            key_name(self.request.key, self.request.mode)
            if (self.request.key is not None)
            else "Auto"
        )
        return {
            "model": self.model_name,
            "seed": self.seed,
            "instrument": _instrument_name(program_number(program)),
            "key": self.key_name,
            "key_source": self.key_source,
            "time_signature": str(meter),
            "bars": meter.bars(self.request.length_steps),
            "primer": {
                "description": primer.description,
                "notes": events_to_note_names(
                    primer.events, primer.meter, primer.key, primer.mode or "major"
                )
                if primer.events
                else "",
                "key": primer.key_label(),
                "time_signature": str(primer.meter),
            },
            "request": request,
            "notices": list(self.notices),
            "warnings": list(self.warnings),
            "created": self.created,
        }


def _melody_words(melody: Any) -> Any:
    """How ``settings.json`` names a request's melody (or a blend's two): a primer by its
    description, a NoteSequence by its notes."""
    if melody is None:
        return None
    if isinstance(melody, tuple | list):
        return [_melody_words(one) for one in melody]
    if isinstance(melody, Primer):
        return melody.description or f"{len(melody.pitches())} notes"
    return f"a melody of {len(getattr(melody, 'notes', ())):,} notes"


def _instrument_name(program: int) -> str:
    for name, number in INSTRUMENTS.items():
        if number == program:
            return name
    return f"General MIDI program {program}"


def generate(
    model: SharedModel, request: GenerationRequest, pool: RenderPool | None = None
) -> StudioResult:
    """Run a request on a shared model and keep the result for the page. With the page's
    ``pool``, other sessions' later variations wait while this one generates."""
    started = time.perf_counter()
    family = getattr(model, "family", None)
    if isinstance(family, Family):  # a form or melodies its family cannot take: one line
        request.check_family(family)
    with pool.generating() if pool is not None else contextlib.nullcontext():
        result = model.generate(request)
    seconds = time.perf_counter() - started
    logger.info(
        "generated %d variation(s) of %d steps with %s (seed %s) in %.2f s",
        len(result.melodies),
        request.length_steps,
        model.name,
        request.seed,
        seconds,
    )
    return StudioResult(
        melodies=result.melodies,
        request=request,
        model_name=model.name,
        seconds=seconds,
        transpose=int(result.transpose),
        model_key=model.home_key,
        key=result.key,
        mode=result.mode,
        key_source=result.key_source,
        notices=list(result.notices),
        warnings=list(result.warnings),
        options=request_options(model),
    )


def sample_again(result: StudioResult) -> GenerationRequest:
    """The request that made ``result`` with a new seed: "Sample again" for a tune that
    could not be read as music."""
    seed = secrets.randbelow(2**31)
    while seed == result.request.seed:
        seed = secrets.randbelow(2**31)
    return dataclasses.replace(result.request, seed=seed)


def tune_title(melody: GeneratedMelody, fallback: str) -> str:
    """The title a melody's own text gives it (ABC's first ``T:`` line), else ``fallback``."""
    for line in (melody.text or "").splitlines():
        if line.startswith("T:") and line[2:].strip():
            return " ".join(line[2:].split())[:200]
    return fallback


def notation_files(
    melody: GeneratedMelody, title: str, width: int = SCORE_WIDTH
) -> tuple[str | None, str | None, bytes | None, str | None]:
    """(score SVG, ABC text, MusicXML, why there is no score) of a melody; what cannot be
    written is None, with one line saying why (never an exception)."""
    abc = svg = musicxml = None
    problem = None
    try:
        abc = notation.abc_text(melody, title=title)
    except MelodyGenError as error:
        problem = one_line(error)
    if melody.problem:
        return None, abc, None, problem or one_line(melody.problem)
    try:
        musicxml = notation.musicxml_bytes(melody, title=title)
        svg = notation.score_svg(melody, width=width)
    except MelodyGenError as error:
        problem = one_line(error)
    except Exception as error:  # noqa: BLE001 - the engraver failing loses the score only
        logger.warning("could not engrave variation %d: %s", melody.index + 1, error)
        problem = f"the score could not be drawn ({one_line(error)})"
    return svg, abc, musicxml, problem


def primer_svg(
    primer: Primer,
    qpm: float | None = None,
    meter: Meter | None = None,
    width: int = PRIMER_SCORE_WIDTH,
) -> str:
    """The primer's score, in the tempo and meter the run will use and its own key.

    Raises:
        NotationError: the primer has no notes, or cannot be written.
    """
    return notation.score_svg(primer, meter=meter or primer.meter, qpm=qpm, width=width)


def midi_bytes(melody: GeneratedMelody, program: int | str = 0, name: str = "Melody") -> bytes:
    """A standard MIDI file of the melody played by ``program``: its tempo, time signature
    and key signature, ``name`` as the track name, and a form's section letters as markers."""
    return melody.midi_bytes(program=program_number(program), name=name)


def _titles(result: StudioResult, melody: GeneratedMelody) -> tuple[str, str]:
    """(piano-roll title, MIDI track name) of one of ``result``'s melodies."""
    title = f"{result.item_label} {melody.index + 1}"
    if melody.key is not None:
        title += f" · {key_name(melody.key, melody.mode)}"
    track = f"MelodyGen {result.model_name} {result.item_label.lower()} {melody.index + 1}"
    return title, track


def _sound(
    melody: GeneratedMelody, program: int, track: str, synth: Synth | None
) -> tuple[bytes, bytes | None]:
    """(MIDI, WAV or None without a synthesizer) of a melody that can be played."""
    midi = midi_bytes(melody, program, name=track)
    return midi, wav_bytes(synth.render(melody, program=program)) if synth is not None else None


def _pictures(
    melody: GeneratedMelody, title: str, track: str, dpi: int
) -> tuple[bytes | None, tuple[str | None, str | None, bytes | None, str | None]]:
    """(piano-roll PNG, :func:`notation_files`) of a melody (no PNG for one with a problem)."""
    notes = notation_files(melody, tune_title(melody, track))
    if melody.problem:
        return None, notes
    return figure_png(piano_roll(melody, title=title, width=RESULT_WIDTH), dpi=dpi), notes


def _variation(
    result: StudioResult,
    melody: GeneratedMelody,
    sound: tuple[bytes, bytes | None] | None,
    pictures: tuple[bytes | None, tuple],
) -> VariationFiles:
    png, (svg, abc, musicxml, why) = pictures
    if melody.problem:
        return VariationFiles(
            index=melody.index,
            stem=result.stem(melody.index),
            png=None,
            midi=None,
            wav=None,
            abc=abc,
            text=melody.text,
            problem=one_line(melody.problem),
        )
    midi, wav = sound
    return VariationFiles(
        index=melody.index,
        stem=result.stem(melody.index),
        png=png,
        midi=midi,
        wav=wav,
        svg=svg,
        abc=abc,
        musicxml=musicxml,
        text=melody.text,
        notation_problem=why,
    )


def iter_variations(
    result: StudioResult,
    program: int | str,
    synth: Synth | None,
    dpi: int = PNG_DPI,
    pool: RenderPool | None = None,
) -> Iterator[VariationFiles]:
    """Piano roll, score, MIDI and WAV of each variation in turn, each as soon as it is ready.

    The page shows each variation as it comes, so the first one can be played while the
    others are still being made. Without ``pool`` they are made one after the other in
    this thread (rendering the audio on a second thread while the pictures are drawn was
    slower on this 2-core machine: the two threads take turns holding Python's lock at
    every FluidSynth call). With a :class:`RenderPool`, every variation's sound (first)
    and pictures are handed to its worker processes at once and collected in order: the
    rendering uses both cores and leaves this process's lock to the model and the other
    sessions. A worker that fails to give an answer (it died) costs nothing but time:
    that part is made here instead.
    """
    program = program_number(program)
    started = time.perf_counter()
    if pool is None:
        for melody in result.melodies:
            title, track = _titles(result, melody)
            pictures = _pictures(melody, title, track, dpi)
            sound = None if melody.problem else _sound(melody, program, track, synth)
            yield _variation(result, melody, sound, pictures)
    else:
        jobs = []
        try:
            for position, melody in enumerate(result.melodies):
                title, track = _titles(result, melody)
                sound = None
                if not melody.problem:
                    sound = pool.submit(
                        _sound, (melody, program, track, synth), _pooled_sound, synth, position
                    )
                pictures = pool.submit(_pictures, (melody, title, track, dpi), priority=position)
                jobs.append((melody, sound, pictures))
            for melody, sound, pictures in jobs:
                yield _variation(
                    result,
                    melody,
                    sound.result() if sound is not None else None,
                    pictures.result(),
                )
        finally:  # a run stopped half way (a new click) leaves no work behind
            for _, sound, pictures in jobs:
                for job in (sound, pictures):
                    if job is not None:
                        job.cancel()
    logger.info(
        "rendered %d variation(s) (program %d%s%s) in %.2f s",
        len(result.melodies),
        program,
        "" if synth is not None else ", no audio",
        ", in worker processes" if pool is not None else "",
        time.perf_counter() - started,
    )


def render_variations(
    result: StudioResult,
    program: int | str,
    synth: Synth | None,
    dpi: int = PNG_DPI,
    pool: RenderPool | None = None,
) -> list[VariationFiles]:
    """Piano roll, MIDI and WAV of every variation (see :func:`iter_variations`)."""
    return list(iter_variations(result, program, synth, dpi, pool))


def zip_bytes(result: StudioResult, files: list[VariationFiles], program: int | str = 0) -> bytes:
    """MIDI, piano roll (PNG), WAV, ABC and MusicXML of every variation plus
    ``settings.json``, zipped (a tune that could not be read as music: its ABC only)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for item in files:
            if item.midi is not None:
                archive.writestr(f"{item.stem}.mid", item.midi)
            if item.png is not None:
                archive.writestr(f"{item.stem}.png", item.png, compress_type=zipfile.ZIP_STORED)
            if item.wav is not None:
                # PCM audio hardly compresses; storing it saves time.
                archive.writestr(f"{item.stem}.wav", item.wav, compress_type=zipfile.ZIP_STORED)
            if item.abc is not None:
                archive.writestr(f"{item.stem}.abc", item.abc)
            if item.musicxml is not None:
                archive.writestr(f"{item.stem}.musicxml", item.musicxml)
        archive.writestr("settings.json", json.dumps(result.settings(program), indent=2) + "\n")
    return buffer.getvalue()


# Variations and blends ----------------------------------------------------------------------

RANDOM = "Random melodies"
VARIATIONS = "Variations of a melody"
BLEND = "A blend of two melodies"
VARIATION_KINDS = (RANDOM, VARIATIONS, BLEND)
"""What the Variations and blends page makes: melodies from random codes, variations of
one melody (``GenerationRequest.variations_of``), a blend of two (``blend``)."""
MIN_BLEND_STEPS = int(RANGES["studio_blend_steps"].low)
MAX_BLEND_STEPS = int(RANGES["studio_blend_steps"].high)
DISTANCES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0)
"""The distance slider's stops: the studio's scale, from the melody itself (0) to loosely
related (1); the library takes up to ``RANGES["distance"].high``."""
_DISTANCE_WORDS = ((0.1, "almost the same"), (0.25, "close"), (0.5, "related"), (0.8, "freer"))
STEP_WIDTH = 2.6
"""Inches of a blend step's piano roll: 260 px, a row of them across the page."""


def makes_variations(entry: ModelEntry | SharedModel) -> bool:
    """Whether the model's family makes variations of a melody (``request_options``)."""
    return "variations_of" in request_options(entry)


def makes_blends(entry: ModelEntry | SharedModel) -> bool:
    """Whether the model's family blends two melodies (``request_options``)."""
    return "blend" in request_options(entry)


def variation_models(entries: list[ModelEntry]) -> list[ModelEntry]:
    """The catalog's models whose family makes variations or blends, in catalog order."""
    return [entry for entry in entries if makes_variations(entry) or makes_blends(entry)]


def variation_kinds(entry: ModelEntry | SharedModel) -> list[str]:
    """What the page offers for this model: random melodies always, variations and blends
    when its family reads them."""
    kinds = [RANDOM]
    kinds += [VARIATIONS] if makes_variations(entry) else []
    kinds += [BLEND] if makes_blends(entry) else []
    return kinds


def distance_label(distance: float) -> str:
    """A distance in words and as the number: ``almost the same (0.05)``, ``loosely
    related (1)``."""
    words = next((w for most, w in _DISTANCE_WORDS if distance <= most), "loosely related")
    return f"{words} ({distance:g})"


def generated_choices(result: StudioResult | None) -> dict[int, str]:
    """The melodies of a Generate page result that can be varied or blended, by index, as
    the picker names them ("Variation 2 of folk_attention_rnn, seed 11"); a tune its family
    could not read as music has no notes and is left out."""
    if result is None:
        return {}
    return {
        melody.index: f"{result.item_label} {melody.index + 1} of {result.model_name}, "
        f"seed {result.seed}"
        for melody in result.melodies
        if melody.problem is None and melody.pitches()
    }


def melody_png(primer: Primer, qpm: float | None = None, dpi: int = PNG_DPI) -> bytes:
    """A melody to vary or blend as a piano roll (:data:`RESULT_WIDTH`, half the page), in
    its own meter and key, at the tempo the run will use: drawn as music, not as a primer."""
    roll = piano_roll(
        primer.events,
        primer_steps=0,
        qpm=qpm or primer.qpm,
        title=primer.description or None,
        width=RESULT_WIDTH,
        meter=primer.meter,
        key=primer.key,
        mode=primer.mode,
    )
    return figure_png(roll, dpi=dpi)


def read_melody_upload(name: str, data: bytes, max_bytes: int = MAX_UPLOAD_BYTES) -> MidiUpload:
    """A file to take a melody from, checked and its tracks listed: MIDI and MusicXML as
    :func:`read_upload` reads a primer (the same checks and limits), or an ABC file, whose
    first tune is parsed (by abc2midi), held to the primer limits and read as its MIDI.

    Raises:
        StudioError, PrimerError, InputFileError: as :func:`read_upload`, or the ABC file
            holds no tune that can be read.
    """
    shown = display_name(name)
    if Path(shown).suffix.lower() != ".abc":
        return read_upload(name, data, max_bytes)
    check_file_size(shown, len(data), dataclasses.replace(PRIMER_MIDI, max_bytes=max_bytes))
    if not data:
        raise StudioError(f"{shown} is empty (0 bytes)")
    midi, remark = _abc_midi(shown, data)
    as_midi = f"{Path(shown).stem}.mid"
    try:
        upload = read_midi_upload(as_midi, midi, max(max_bytes, len(midi)))
    except MelodyGenError as error:  # name the file the user gave, not its MIDI copy
        raise type(error)(str(error).replace(as_midi, shown)) from None
    upload.name = shown
    if remark:
        for index in upload.usable:
            upload.notes[index] = remark
    return upload


def _abc_midi(shown: str, data: bytes) -> tuple[bytes, str | None]:
    """An ABC file's first tune as MIDI bytes, and which tune it is when the file holds more.
    Only that tune is parsed: a tunebook of a thousand tunes is not a thousand abc2midi runs."""
    from melodygen.io.abc import AbcError, decode_abc_bytes, parse_tune, tunebook_tunes
    from melodygen.io.music import check_sequence_limits, note_seq

    try:
        tunes, refused = tunebook_tunes(decode_abc_bytes(data, shown), shown)
        if not tunes:
            why = refused[0][1] if refused else "it has no X: or K: field"
            raise StudioError(f"{shown}: no tune in it can be read ({one_line(why)})")
        tune = tunes[0]
        sequence = parse_tune(tune)
        check_sequence_limits(sequence, PRIMER_MIDI, f"{shown}, tune {tune.reference}")
    except AbcError as error:
        raise StudioError(one_line(error).replace("the ABC text", shown)) from None
    buffer = io.BytesIO()
    note_seq.note_sequence_to_pretty_midi(sequence).write(buffer)
    count = len(tunes) + len(refused)
    title = f" ({tune.title})" if tune.title else ""
    remark = f"tune X:{tune.reference}{title}, the first of {count}" if count > 1 else None
    return buffer.getvalue(), remark


@dataclass
class VariationSettings:
    """The Variations and blends form's values, in the units a musician types them."""

    kind: str = RANDOM
    count: int = 4
    """Melodies from random codes, or variations of the melody."""
    steps: int = DEFAULT_BLEND_STEPS
    """Melodies of a blend, its two ends included."""
    distance: float = DEFAULT_DISTANCE
    temperature: float = 1.0
    seed: int | None = None
    bpm: float = 120.0

    def to_request(self, first: Any = None, second: Any = None) -> GenerationRequest:
        """The request these settings ask for, checked; a seed is drawn if none given.

        ``first`` is the melody to vary, or with ``second`` the two to blend: each a
        :class:`Primer` or a NoteSequence (see ``GenerationRequest.variations_of``).

        Raises:
            MelodyGenError: a value is out of range, or a melody is missing or unusable.
        """
        if self.kind not in VARIATION_KINDS:
            raise StudioError(f"choose one of: {', '.join(VARIATION_KINDS)}")
        if self.kind == BLEND:
            check_value("studio_blend_steps", self.steps, StudioError)
            if first is None or second is None:
                raise StudioError("a blend needs two melodies: choose the first and the second")
        else:
            check_value("variations", self.count, StudioError)
        if self.kind == VARIATIONS and first is None:
            raise StudioError("choose the melody to make variations of")
        seed = self.seed if self.seed is not None else secrets.randbelow(2**31)
        request = GenerationRequest(
            qpm=float(self.bpm),
            temperature=float(self.temperature),
            num_outputs=1 if self.kind == BLEND else int(self.count),
            seed=int(seed),
            variations_of=first if self.kind == VARIATIONS else None,
            distance=float(self.distance),
            blend=(first, second) if self.kind == BLEND else None,
            blend_steps=int(self.steps),
        )
        request.validate()
        return request


def make_variations(model: SharedModel, request: GenerationRequest) -> StudioResult:
    """Run a request of the Variations and blends page on a shared model: random melodies,
    variations or a blend, as the request asks. A model whose family does not make what is
    asked is refused in one line (``GenerationRequest.check_family``), never ignored."""
    request.check_family(model.family)
    result = generate(model, request)
    if request.blend is not None:
        result.item_label = "Step"
    elif request.variations_of is None:
        result.item_label = "Melody"
    return result


@dataclass
class InOrder:
    """A result's melodies one after the other (:func:`melodygen.render.in_order`): one
    MIDI file and one WAV (None without audio) that play a blend's steps in order."""

    stem: str
    midi: bytes
    wav: bytes | None
    seconds: float
    """How long it plays, gaps included (the WAV adds a second of release)."""


def render_steps(
    result: StudioResult, program: int | str, synth: Synth | None, dpi: int = PNG_DPI
) -> tuple[list[VariationFiles], InOrder]:
    """A blend's steps rendered for a row: each a small piano roll (:data:`STEP_WIDTH`),
    MIDI and WAV (no score: twelve engravings would hold up the page), and all of them in
    order as one MIDI and WAV (:class:`InOrder`). ``StudioResult.steps`` keeps them."""
    program = program_number(program)
    started = time.perf_counter()
    files, sequences = [], []
    for melody in result.melodies:
        title = f"{result.item_label} {melody.index + 1}"
        track = f"MelodyGen {result.model_name} {title.lower()}"
        sequences.append(melody.to_note_sequence(program=program, name=track))
        files.append(
            VariationFiles(
                index=melody.index,
                stem=result.stem(melody.index),
                png=figure_png(piano_roll(melody, title=title, width=STEP_WIDTH), dpi=dpi),
                midi=midi_bytes(melody, program, name=track),
                wav=wav_bytes(synth.render(melody, program=program)) if synth else None,
            )
        )
    from melodygen.io.music import note_seq

    joined = in_order(sequences)
    joined.instrument_infos[0].name = f"MelodyGen {result.model_name} blend"
    buffer = io.BytesIO()
    note_seq.note_sequence_to_pretty_midi(joined).write(buffer)
    whole = InOrder(
        stem=result.stem(0).rsplit("_", 1)[0] + "_in_order",
        midi=buffer.getvalue(),
        wav=wav_bytes(synth.render(joined, program=program)) if synth else None,
        seconds=float(joined.total_time),
    )
    logger.info(
        "rendered %d blend step(s) and their sequence (program %d%s) in %.2f s",
        len(files),
        program,
        "" if synth is not None else ", no audio",
        time.perf_counter() - started,
    )
    return files, whole
