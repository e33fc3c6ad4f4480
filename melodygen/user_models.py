"""The user's own models: where they live, and renaming, deleting, zipping and uploading them.

Models a user trains in the studio (or uploads) are kept apart from the shipped ones, in
the *user models folder*: ``$MELODYGEN_USER_MODELS`` when set, else ``melodygen/models``
in the user's data directory (``$XDG_DATA_HOME``, ``~/.local/share`` on Linux,
``~/Library/Application Support`` on macOS, ``%LOCALAPPDATA%`` on Windows). It is never
inside the installed package, so an upgrade or a read-only install loses nothing.

Each model is one folder holding what a saved model holds (``model.weights.h5`` and
``melodygen.json``) plus, optionally, ``card.json`` and ``metrics.jsonl``. A model zip
that a stranger uploads may hold those four files and nothing else: no code, no pickles,
no links, no paths outside itself. Every refusal is one :class:`UserModelError` line.
No Streamlit here; the studio's catalog (:func:`melodygen.studio.discover_models`) lists
these models beside the shipped ones.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import zipfile
from pathlib import Path

from melodygen.core.checkpoint import (
    MODEL_JSON,
    WEIGHTS_FILE,
    check_weights_file,
    max_weight_values,
    read_model_info,
    write_synced,
)
from melodygen.errors import MelodyGenError, one_line

USER_MODELS_ENV = "MELODYGEN_USER_MODELS"
CARD_FILE = "card.json"
METRICS_FILE = "metrics.jsonl"
MODEL_FILES = (MODEL_JSON, WEIGHTS_FILE, CARD_FILE, METRICS_FILE)
"""The only files a user model folder (and a model zip) may hold: weights and JSON."""
REQUIRED_FILES = (MODEL_JSON, WEIGHTS_FILE)
MAX_MODEL_ZIP_BYTES = 200_000_000
"""A model zip, packed or unpacked: the shipped models are a few MB, the largest tens."""
MAX_JSON_BYTES = 20_000_000
"""A JSON file of a model zip (the training log of a long run is the biggest)."""
MAX_ZIP_RATIO = 100
"""Unpacked over packed size past which a zip entry is taken for a zip bomb."""
MAX_NAME_CHARS = 60
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_PACKAGE = Path(__file__).resolve().parent


class UserModelError(MelodyGenError):
    """A user model request refused: the message says why in one line."""


# Where -------------------------------------------------------------------------------------


def user_data_dir() -> Path:
    """MelodyGen's folder in the user's data directory, by each system's plain rules."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Application Support")
    else:
        value = os.environ.get("XDG_DATA_HOME", "").strip()
        # The XDG rules: a relative XDG_DATA_HOME is invalid and ignored.
        base = value if value and Path(value).is_absolute() else str(Path.home() / ".local/share")
    return Path(base) / "melodygen"


def user_models_dir() -> Path:
    """The user models folder: ``$MELODYGEN_USER_MODELS``, else ``<user data>/models``.

    Refused (one line) when it would be inside the installed package, where an upgrade
    would delete the user's models.
    """
    value = os.environ.get(USER_MODELS_ENV, "").strip()
    folder = Path(value).expanduser() if value else user_data_dir() / "models"
    resolved = folder.resolve()
    if resolved == _PACKAGE or _PACKAGE in resolved.parents:
        raise UserModelError(
            f"{USER_MODELS_ENV} points inside the installed melodygen package ({folder}); "
            "choose a folder of your own"
        )
    return folder


# Names -------------------------------------------------------------------------------------


def check_name(name: str) -> str:
    """A model's folder name as given, if it is one: letters, digits, ``_.-``, not too long."""
    name = (name or "").strip()
    if not name:
        raise UserModelError("a model needs a name")
    if len(name) > MAX_NAME_CHARS or not _NAME.fullmatch(name):
        raise UserModelError(
            f"{name[:MAX_NAME_CHARS]!r} is not a model name: use up to {MAX_NAME_CHARS} letters, "
            "digits, '_', '.' or '-', starting with a letter or digit"
        )
    return name


def shipped_names() -> set[str]:
    """The shipped models' folder names: a user model may not take one (the studio's
    pickers know models by name)."""
    from melodygen.studio import checkpoints_dir

    folder = checkpoints_dir()
    return {p.name for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()


def free_name(stem: str, root: Path | None = None) -> str:
    """``stem`` made a valid name, numbered (``stem-2``...) until no model folder, the
    user's or a shipped one, has it."""
    root = root or user_models_dir()
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_.-")[: MAX_NAME_CHARS - 4] or "model"
    taken = shipped_names()
    name, number = stem, 1
    while (root / name).exists() or name in taken:
        number += 1
        name = f"{stem}-{number}"
    return name


def _model_folder(name: str, root: Path | None = None) -> Path:
    root = root or user_models_dir()
    folder = root / check_name(name)
    if not (folder / MODEL_JSON).is_file():
        raise UserModelError(f"there is no user model named {name!r}")
    return folder


def _write_card_name(folder: Path, name: str) -> None:
    """Keep the card's name in step with the folder's (the catalog shows the card's)."""
    path = folder / CARD_FILE
    try:
        card = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        card = {}
    if not isinstance(card, dict):
        card = {}
    card["name"] = name
    write_synced(path, json.dumps(card, indent=2) + "\n")


# Managing ----------------------------------------------------------------------------------


def rename_model(name: str, new_name: str, root: Path | None = None) -> Path:
    """Give a user model a new name (its folder and its card's name); the new folder."""
    root = root or user_models_dir()
    folder = _model_folder(name, root)
    target = root / check_name(new_name)
    if target.exists() or new_name in shipped_names():
        raise UserModelError(f"a model named {new_name!r} is already there; choose another name")
    folder.rename(target)
    _write_card_name(target, new_name)
    return target


def delete_model(name: str, root: Path | None = None) -> None:
    """Remove a user model's folder (only a user model: shipped ones are not here)."""
    shutil.rmtree(_model_folder(name, root))


def model_zip(name: str, root: Path | None = None) -> bytes:
    """A user model as a zip made in memory: its folder's model files under ``name/``,
    the layout :func:`install_model_zip` takes back."""
    folder = _model_folder(name, root)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for leaf in MODEL_FILES:
            if (folder / leaf).is_file():
                archive.write(folder / leaf, f"{folder.name}/{leaf}")
    return buffer.getvalue()


def _zip_members(data: bytes, shown: str) -> tuple[str | None, dict[str, zipfile.ZipInfo]]:
    """The model files of a model zip by leaf name, and the folder they are in (or None):
    every other entry, link, path or size refused in one line."""
    if len(data) > MAX_MODEL_ZIP_BYTES:
        raise UserModelError(
            f"{shown} is {len(data) / 1e6:.0f} MB; a model zip may be at most "
            f"{MAX_MODEL_ZIP_BYTES / 1e6:.0f} MB"
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise UserModelError(f"{shown} is not a readable zip ({one_line(error)})") from None
    folders: set[str] = set()
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for entry in entries:
        name = entry.filename
        parts = [part for part in name.replace("\\", "/").split("/") if part]
        if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise UserModelError(
                f"{shown} holds {name!r}, a path outside the model's folder; refused"
            )
        if stat.S_ISLNK(entry.external_attr >> 16):
            raise UserModelError(f"{shown} holds a link ({name!r}); a model zip holds files only")
        if entry.flag_bits & 0x1:
            raise UserModelError(f"{shown} is password-protected; upload it unprotected")
        if entry.is_dir():
            if len(parts) > 1:
                raise UserModelError(
                    f"{shown} holds the folder {name!r}; a model zip holds one folder at most"
                )
            continue
        if parts and parts[0] in ("__MACOSX",) or (parts and parts[-1] == ".DS_Store"):
            continue  # what macOS's Compress adds
        leaf = parts[-1] if parts else ""
        if leaf not in MODEL_FILES:
            raise UserModelError(
                f"{shown} holds {name!r}; a model zip may hold only "
                f"{', '.join(MODEL_FILES)} (weights and JSON, never code or pickles)"
            )
        if len(parts) > 2:
            raise UserModelError(
                f"{shown} holds {name!r} too deep; put the model files at the top or in one folder"
            )
        folders.add(parts[0] if len(parts) == 2 else "")
        if leaf in members:
            raise UserModelError(f"{shown} holds {leaf} twice")
        limit = MAX_MODEL_ZIP_BYTES if leaf == WEIGHTS_FILE else MAX_JSON_BYTES
        total += entry.file_size
        if entry.file_size > limit or total > MAX_MODEL_ZIP_BYTES:
            raise UserModelError(f"{shown} unpacks to more than a model can be; refused")
        if entry.file_size > MAX_ZIP_RATIO * max(entry.compress_size, 1) + 1_000_000:
            raise UserModelError(
                f"{shown}: {name!r} is packed more than {MAX_ZIP_RATIO} times tighter than "
                "a model file can be (a zip bomb); refused"
            )
        members[leaf] = entry
    if len(folders) > 1:
        raise UserModelError(f"{shown} holds model files in several folders; upload one model")
    missing = [leaf for leaf in REQUIRED_FILES if leaf not in members]
    if missing:
        raise UserModelError(
            f"{shown} has no {' and no '.join(missing)}; a model zip holds the files of one "
            "saved model (as the studio's download gives)"
        )
    folder = next(iter(folders)) if folders else ""
    return folder or None, members


def install_model_zip(
    data: bytes, zip_name: str = "model.zip", root: Path | None = None, name: str | None = None
) -> Path:
    """Check a model zip a user uploaded and add it to the user models folder.

    Only :data:`MODEL_FILES` are taken, from the top of the zip or from one folder in it;
    anything else (code, pickles, links, ``../`` paths, a zip bomb, a missing weights
    file) refuses the whole zip in one line. The model must then load as the project's
    model-file checks demand (its ``melodygen.json`` read by its family, every weight
    read back and finite) before it joins the folder. Returns the new model's folder.
    """
    from melodygen.uploads import safe_leaf

    shown = safe_leaf(zip_name)
    root = root or user_models_dir()
    folder_name, members = _zip_members(data, shown)
    stem = name or folder_name or Path(shown).stem
    target_name = free_name(check_name(name) if name else stem, root)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".upload-", dir=root))
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for leaf, entry in members.items():
                limit = entry.file_size
                with archive.open(entry) as source, open(staging / leaf, "xb") as out:
                    written = 0
                    while chunk := source.read(1 << 16):
                        written += len(chunk)
                        if written > limit:
                            raise UserModelError(f"{shown}: {leaf} is bigger than its zip says")
                        out.write(chunk)
        check_model_folder(staging, shown)
        target = root / target_name
        if target.exists():
            raise UserModelError(f"a model named {target_name!r} is already there")
        staging.rename(target)
        _write_card_name(target, target_name)
        return target
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise UserModelError(f"{shown} could not be unpacked ({one_line(error)})") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def check_model_folder(folder: Path, shown: str | None = None) -> None:
    """Refuse (one line) a model folder whose model does not load: its ``melodygen.json``
    read by its family, its weights file read whole and finite."""
    shown = shown or folder.name
    try:
        model_dir, info = read_model_info(folder)
        check_weights_file(model_dir / WEIGHTS_FILE, max_values=max_weight_values(info), read=True)
    except MelodyGenError as error:
        message = str(error).replace(str(folder), shown)
        raise UserModelError(
            f"{shown} is not a model MelodyGen can load: {one_line(message)}"
        ) from None
    for leaf in (CARD_FILE,):
        path = folder / leaf
        if path.is_file():
            try:
                if not isinstance(json.loads(path.read_text()), dict):
                    raise ValueError("not a JSON object")
            except (ValueError, UnicodeDecodeError, RecursionError) as error:
                raise UserModelError(f"{shown}: {leaf} is not a card ({one_line(error)})") from None
