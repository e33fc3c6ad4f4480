"""Saved models: weights plus the small JSON that says how to rebuild and use them.

A saved model is a folder with ``model.weights.h5`` (Keras weights) and
``melodygen.json`` (configuration, encoding, hyperparameters, sizes and
training facts). Rebuilding the network from that JSON and loading the weights
works on any Keras backend, so weights trained under JAX on a GPU machine load
unchanged under TensorFlow.

A training run folder holds its final model in ``model/`` and resumable
checkpoints in ``checkpoints/``; anything that takes a checkpoint accepts
either kind of folder.

The ``family`` field of ``melodygen.json`` (absent: ``melody_rnn``) names the family
that reads the rest (:mod:`melodygen.core.family`). A model folder may come from
anywhere, so ``melodygen.json`` is checked whole against its family's schema with sane
bounds and the weights
file's shapes against the network it describes before anything is built or
read: a hostile file ends in one ``ModelFileError`` line naming the file and
the field, never in an attempt to allocate a 10^9-unit layer.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from melodygen.core.family import Family, ModelInfo, UnknownFamilyError, family_of, get_family
from melodygen.errors import CheckpointError, ModelFileError, one_line

if TYPE_CHECKING:
    import keras

MODEL_JSON = "melodygen.json"
WEIGHTS_FILE = "model.weights.h5"
FINAL_MODEL_DIR = "model"
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_PREFIX = "step-"
# A real melodygen.json is about 2 KB; past this it is not one, and is not parsed at all.
MAX_MODEL_JSON_BYTES = 1_000_000


def save_model(path: str | Path, model, info: ModelInfo) -> Path:
    """Write weights and JSON to ``path``, replacing the files only once both are on disk.

    Each file is replaced whole, but not both at once: to swap a whole model folder in
    one step, save into a fresh folder and ``replace_folder`` it (training does).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    temporary_weights = path / ("tmp-" + WEIGHTS_FILE)
    model.save_weights(temporary_weights)
    fsync_file(temporary_weights)
    temporary_json = path / (MODEL_JSON + ".tmp")
    write_synced(temporary_json, json.dumps(info.to_dict(), indent=2) + "\n")
    temporary_weights.replace(path / WEIGHTS_FILE)
    temporary_json.replace(path / MODEL_JSON)
    fsync_folder(path)
    return path


def check_model_header(values: object, source: str | Path = MODEL_JSON) -> Family:
    """The family of a model file, after the checks every family's file must pass."""
    schema = Schema(source)
    if not isinstance(values, dict):
        schema.fail("the top level", f"must be a JSON object, not {kind(values)}")
    if values.get("format") != "melodygen-model":
        schema.fail("format", f'must be "melodygen-model", not {shown(values.get("format"))}')
    version = values.get("format_version")
    if type(version) is not int or version != 1:
        schema.fail(
            "format_version", f"must be 1, the version this MelodyGen reads, not {shown(version)}"
        )
    if not isinstance(values.get("training", {}), dict):
        schema.fail("training", f"must be a JSON object, not {kind(values['training'])}")
    try:
        return family_of(values, source)
    except UnknownFamilyError as error:
        raise ModelFileError(str(error)) from None


def model_info_from_dict(values: dict, source: str | Path = MODEL_JSON) -> ModelInfo:
    """The info of a model file's JSON, read and checked whole by its family."""
    return check_model_header(values, source).read_info(values, source)


def info_family(info: ModelInfo) -> Family:
    """The family a model's info belongs to."""
    return get_family(info.family)


def build_network(info: ModelInfo):
    """A fresh network shaped as ``info`` says, built by its family."""
    return info_family(info).build_network(info)


def max_weight_values(info: ModelInfo) -> int:
    """The most numbers a weights file of this model may hold (its family says)."""
    return info_family(info).max_weight_values(info)


def model_family(path: str | Path) -> Family:
    """The family of the saved model (or run folder) at ``path``."""
    model_dir = resolve_model_dir(path)
    return check_model_header(read_model_json(model_dir / MODEL_JSON), model_dir / MODEL_JSON)


# Writing folders so that a kill at any moment leaves the old one or the new one -------------


def fsync_file(path: str | Path) -> None:
    """Push a written file to the disk, so a rename after it never names a half-written file."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_folder(path: str | Path) -> None:
    """Make a folder's renames and new entries durable (a no-op where folders cannot be opened)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_synced(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` and fsync it."""
    with open(path, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def staging_folder(target: str | Path) -> Path:
    """A fresh hidden folder beside ``target`` (same file system, so renaming it is atomic)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".partial-{target.name}-", dir=target.parent))


def replace_folder(staging: str | Path, target: str | Path) -> Path:
    """Put the complete folder ``staging`` in ``target``'s place.

    Every file is fsynced first. ``target`` never holds a mix of old and new files: a kill
    leaves the old folder, the new one, or (between two renames) a hidden ``.old-`` copy of
    the old one beside a missing ``target``.
    """
    staging, target = Path(staging), Path(target)
    for file in staging.rglob("*"):
        if file.is_file():
            fsync_file(file)
    fsync_folder(staging)
    old = None
    if target.exists():
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        target.rename(old)
    staging.rename(target)
    fsync_folder(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def resolve_model_dir(path: str | Path) -> Path:
    """The model folder ``path`` means: itself, a run's final model, or its latest checkpoint."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        raise CheckpointError(
            f"checkpoint {path} is a file; give the folder that holds {MODEL_JSON}"
        )
    if (path / MODEL_JSON).is_file():
        return path
    if (path / FINAL_MODEL_DIR / MODEL_JSON).is_file():
        return path / FINAL_MODEL_DIR
    latest = latest_checkpoint(path)
    if latest is not None:
        return latest
    raise CheckpointError(
        f"{path} is not a MelodyGen checkpoint: no {MODEL_JSON}, no {FINAL_MODEL_DIR}/ "
        f"and no {CHECKPOINTS_DIR}/ with a saved step"
    )


def checkpoint_folders(run_dir: str | Path) -> list[Path]:
    """Every ``step-NNNNNNN`` folder of a run, newest first, whole or not."""
    folder = Path(run_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob(CHECKPOINT_PREFIX + "*") if p.is_dir()]

    def step(path: Path) -> tuple[int, str]:  # by number: step-10000000 follows step-9999999
        number = path.name.removeprefix(CHECKPOINT_PREFIX)
        return (int(number) if number.isdigit() else -1, path.name)

    return sorted(found, key=step, reverse=True)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint of a training run that has its model files, or None."""
    for checkpoint in checkpoint_folders(run_dir):
        if (checkpoint / MODEL_JSON).is_file() and (checkpoint / WEIGHTS_FILE).is_file():
            return checkpoint
    return None


def read_model_json(path: str | Path) -> dict:
    """The checked JSON of the model file at ``path`` (refused unparsed when too big).

    Anything that shows a model file (the studio's catalog too) reads it here, so a
    hostile one is one ``ModelFileError`` line, never a RecursionError or AttributeError.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:  # read no further than the limit (think /dev/zero)
            data = handle.read(MAX_MODEL_JSON_BYTES + 1)
        if len(data) > MAX_MODEL_JSON_BYTES:
            raise ModelFileError(
                f"{path} is over {MAX_MODEL_JSON_BYTES:,} bytes, more than a model file can "
                "be; it is not a MelodyGen model file"
            )
        values = json.loads(data.decode("utf-8"))
    except OSError as error:
        raise ModelFileError(f"{path} cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise ModelFileError(
            f"{path} is not UTF-8 text; it is not a MelodyGen model file"
        ) from None
    except RecursionError:
        raise ModelFileError(f"{path} is nested too deeply to be a MelodyGen model file") from None
    except ValueError as error:
        raise ModelFileError(f"{path} is not valid JSON ({one_line(error)})") from None
    check_model_header(values, path)
    return values


def read_model_info(path: str | Path) -> tuple[Path, ModelInfo]:
    """The model folder and its checked JSON, with one clear line for anything else."""
    model_dir = resolve_model_dir(path)
    source = model_dir / MODEL_JSON
    values = read_model_json(source)  # its header checked once, here
    info = family_of(values, source).read_info(values, source)
    if not (model_dir / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{model_dir} has no {WEIGHTS_FILE}")
    return model_dir, info


def load_model(path: str | Path) -> tuple[keras.Model, ModelInfo]:
    """Rebuild the network from its JSON and load its weights; returns (model, info)."""
    model_dir, info = read_model_info(path)
    weights = model_dir / WEIGHTS_FILE
    check_weights_file(weights, max_values=max_weight_values(info))
    model = build_network(info)
    try:
        model.load_weights(weights)
    except (ValueError, OSError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"weights in {model_dir} do not fit the network its {MODEL_JSON} describes "
            f"({one_line(error)})"
        ) from None
    return model, info


def check_weights_file(path: str | Path, max_values: int, read: bool = False) -> None:
    """Refuse a weights file that is not HDF5 or holds more numbers than the network has.

    Only the datasets' shapes are read, so a hostile file is refused before a byte of it
    is decompressed. With ``read``, every value is also read and must be finite: that is
    how a checkpoint proves it is whole before a run resumes from it.
    """
    import h5py
    import numpy as np

    path = Path(path)
    datasets = []
    try:
        with h5py.File(path, "r") as handle:
            handle.visititems(
                lambda _, item: datasets.append(item) if isinstance(item, h5py.Dataset) else None
            )
            total = sum(int(item.size or 0) for item in datasets)
            if total > max_values:
                raise CheckpointError(
                    f"{path} holds {total:,} numbers, more than the {max_values:,} its network "
                    "has; it does not belong to this model"
                )
            if read:
                for item in datasets:
                    value = item[()]  # reads (and checksums, where stored) every byte
                    if item.dtype.kind in "fc" and not np.isfinite(value).all():
                        raise CheckpointError(f"{path} holds weights that are not finite")
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
        raise CheckpointError(
            f"{path} is not a readable weights file ({one_line(error)})"
        ) from None


# The model file's schema --------------------------------------------------------------------


class Schema:
    """Type and range checks of one model file, each failing with the file and the field."""

    def __init__(self, source: str | Path) -> None:
        self.source = source

    def fail(self, name: str, problem: str) -> NoReturn:
        raise ModelFileError(f"{self.source}: {name} {problem}")

    def get(self, values: dict, key: str, prefix: str = "") -> object:
        if key not in values:
            self.fail(prefix + key, "is missing")
        return values[key]

    def object(self, values: object, name: str) -> dict:
        if not isinstance(values, dict):
            self.fail(name, f"must be a JSON object, not {kind(values)}")
        return values

    def integer(self, values: dict, key: str, low: int, high: int, prefix: str = "") -> int:
        value = self.get(values, key, prefix)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(prefix + key, f"must be an integer, not {kind(value)}")
        if not low <= value <= high:
            self.fail(prefix + key, f"must be from {low} to {high}, not {shown(value)}")
        return value

    def integers(self, values: dict, key: str, low: int, high: int, most: int, prefix="") -> list:
        value = self.get(values, key, prefix)
        if not isinstance(value, list) or len(value) > most:
            self.fail(prefix + key, f"must be a list of at most {most} integers")
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int) or not low <= item <= high:
                self.fail(
                    prefix + key, f"must hold integers from {low} to {high}, not {shown(item)}"
                )
        return value

    def choice(self, values: dict, key: str, choices, prefix: str = "") -> str:
        value = self.get(values, key, prefix)
        if not isinstance(value, str) or value not in choices:
            self.fail(prefix + key, f"must be one of {', '.join(choices)}, not {shown(value)}")
        return value


def kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if type(value) in names:
        return names[type(value)]
    return f"the number {shown(value)}" if isinstance(value, int | float) else type(value).__name__


def shown(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**40:
        return "a huge integer"
    text = json.dumps(value) if isinstance(value, str | int | float | None) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
