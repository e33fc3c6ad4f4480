"""Music files a user uploads in the browser, saved where nothing else is, then forgotten.

The studio's Data page (and a Train page after it) takes many MIDI and ABC files at once,
or zips of them, from anyone who can reach the server. Everything here treats an upload
as hostile:

- A user's file name never becomes a path beyond :func:`safe_leaf` (its last part, with
  only letters, digits and a few marks; never hidden, never ``..``); files are written
  with exclusive creation into one fresh folder (:func:`upload_folder`, made with
  ``tempfile.mkdtemp``, private to one use and removed after it).
- Limits are checked before anything is written: the number of files
  (:data:`MAX_FILES`), each upload's size (:data:`MAX_FILE_BYTES`, the studio's upload
  limit) and all of them together (:data:`MAX_TOTAL_BYTES`).
- A zip is checked from its directory before a byte is inflated: entries with absolute
  paths or ``..`` (zip-slip), symbolic links, archives inside it, passwords, more files
  than the limit, a declared unpacked size over the total, or packed more tightly than
  :data:`MAX_ZIP_RATIO` (a zip bomb) refuse the whole upload; bytes are counted again
  while inflating, so a zip whose directory lies is refused too.

Every refusal is an :class:`UploadError` of one line. Files that are not music (a
README, cover art) are left out and listed as problems, not refused.
:func:`explore_uploads` saves, explores (:func:`melodygen.explore.explore`) and removes
the folder in one call, so the studio keeps the numbers and no file; or, given a
:class:`SessionFiles`, keeps the music files in that session's own private folder, so that
the Train page can train on the explored collection without a second upload, until the
session explores again, discards them or ends. No Streamlit here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import shutil
import stat
import tempfile
import time
import unicodedata
import weakref
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from melodygen.errors import InputFileError, one_line
from melodygen.explore import DEFAULT_MAX_FILES, Problem
from melodygen.limits import DATASET_MIDI, PRIMER_MIDI, display_name

if TYPE_CHECKING:
    from melodygen.explore import Exploration, Table
    from melodygen.io.music import ExtractionParams

__all__ = [
    "ARCHIVE_SUFFIXES",
    "MAX_FILES",
    "MAX_FILE_BYTES",
    "MAX_FILE_MB",
    "MAX_TOTAL_BYTES",
    "MAX_ZIP_RATIO",
    "SavedUploads",
    "SessionFiles",
    "UploadError",
    "explore_uploads",
    "exploration_zip",
    "limits_text",
    "safe_leaf",
    "save_uploads",
    "upload_folder",
]

MAX_FILE_BYTES = PRIMER_MIDI.max_bytes
"""One uploaded file (a zip too): the studio's upload limit, ``studio.MAX_UPLOAD_BYTES``
(1,000,000 bytes), which the server's ``maxUploadSize`` (.streamlit/config.toml) enforces
before the app sees a byte; a whole symphony as MIDI is below it."""
MAX_FILE_MB = round(PRIMER_MIDI.max_mb)
"""``MAX_FILE_BYTES`` in Streamlit's unit, for the uploader's ``max_upload_size``."""
MAX_TOTAL_BYTES = 100_000_000
"""All uploads together, and again everything written after unpacking zips: 5,000 MIDI
files of 20 KB, a typical song. The server holds a session's uploads in memory until the
session ends, so this bounds what one visitor can make it hold."""
MAX_FILES = DEFAULT_MAX_FILES
"""Music files explored at once (``RANGES["explore_files"]``, the CLI's default): about a
minute's reading on two cores."""
MAX_ZIP_RATIO = 100
"""Unpacked size over packed size. MIDI and ABC collections pack 2 to 10 times; a zip
bomb (zeros) packs about 1,000 times. Checked on the whole archive and on each entry
larger than :data:`RATIO_FLOOR`."""
RATIO_FLOOR = 1_000_000
"""Entries (and archives) smaller than this unpacked are not held to the ratio: a tiny
file of repeated bytes packs tightly and is harmless."""
MAX_ZIP_ENTRIES = 2 * MAX_FILES
"""Entries of any kind (folders, READMEs) in one zip: its directory is read into memory."""
ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst")
"""Archives inside a zip are not opened: one level of packing is enough for a collection."""
MUSIC_SUFFIXES = (".mid", ".midi", ".abc")
"""What exploring reads (``melodygen.io.music.MUSIC_SUFFIXES``, without importing it)."""
LEAF_BYTES = 120
"""A saved file's name, in UTF-8 bytes: well under any file system's 255."""
SESSION_PREFIX = "melodygen-session-"
"""The name of a :class:`SessionFiles` folder, in the system's temporary folder."""
STALE_SESSION_SECONDS = 24 * 3600
"""A session folder untouched this long is a server's that stopped without removing it
(killed): removed when the next one is made."""
SESSION_FILES_KEY = "studio_explored_files"
"""The ``st.session_state`` key holding a session's :class:`SessionFiles` (the Data page
writes it, the Train page reads it)."""
_CHUNK = 64 * 1024
_SAFE_MARKS = frozenset(" ._-()+,&#[]'")


class UploadError(InputFileError):
    """An upload is refused: too many or too large files, or an unsafe or damaged zip."""


@dataclass
class SavedUploads:
    """What :func:`save_uploads` wrote into its folder, and what it left out."""

    folder: Path
    files: list[str] = field(default_factory=list)
    """Names of the music files written, directly in ``folder``."""
    skipped: list[Problem] = field(default_factory=list)
    """Files not written (not music, over a dataset file's size), each with why."""
    uploads: list[str] = field(default_factory=list)
    """The uploads as the user named them (for messages and the report)."""
    bytes_written: int = 0


class SessionFiles:
    """One browser session's explored music files, kept so its Train page can train on them
    without uploading them again.

    A fresh private folder (``tempfile.mkdtemp``, mode 700), written only by
    :func:`explore_uploads` (its music files under safe names). It is removed by
    :meth:`discard` (a new exploration, a failed one, or the user's button), when the
    object is collected (Streamlit drops a session's state when the session ends), or
    when the server process exits; a folder left by a killed server is removed a day
    later. A training copies what it needs into its own job folder.
    """

    def __init__(self) -> None:
        sweep_stale_sessions()
        self.folder = Path(tempfile.mkdtemp(prefix=SESSION_PREFIX))
        self.files: list[str] = []
        """The music files in ``folder`` (their safe names)."""
        self.uploads: list[str] = []
        """The uploads as the user named them."""
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.folder), True)

    @property
    def available(self) -> bool:
        """Whether the files are still there to train on."""
        return self._finalizer.alive and bool(self.files) and self.folder.is_dir()

    def discard(self) -> None:
        """Remove the folder and everything in it now (again: nothing happens)."""
        self._finalizer()

    def describe(self) -> str:
        """What the files are ("12 music files from songs.zip, tune.abc"), for the Train page."""
        shown = ", ".join(self.uploads[:2]) + (
            f" and {len(self.uploads) - 2} more uploads" if len(self.uploads) > 2 else ""
        )
        count = len(self.files)
        return f"{count:,} music file{'' if count == 1 else 's'} from {shown}"


def sweep_stale_sessions(older_than: float = STALE_SESSION_SECONDS) -> int:
    """Remove session folders untouched for ``older_than`` seconds (a killed server's);
    how many were removed."""
    removed = 0
    cutoff = time.time() - older_than
    with contextlib.suppress(OSError):
        for folder in Path(tempfile.gettempdir()).glob(SESSION_PREFIX + "*"):
            with contextlib.suppress(OSError):
                if folder.is_dir() and not folder.is_symlink() and folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder)
                    removed += 1
    return removed


# Names ---------------------------------------------------------------------------------------


def safe_leaf(name: str | None) -> str:
    """A file name that is safe to create: the last part of ``name``, letters, digits and
    ``._-()+,&#[]'`` and spaces only, never starting with a dot, at most :data:`LEAF_BYTES`.

    Upload and zip entry names come from strangers (``../../etc/passwd``, NUL bytes, 268
    bytes of Japanese); this is the only part of them that reaches the file system.
    """
    leaf = re.split(r"[\\/]", name or "")[-1]
    leaf = unicodedata.normalize("NFC", leaf)
    leaf = "".join(char if char.isalnum() or char in _SAFE_MARKS else "_" for char in leaf)
    leaf = leaf.strip(" .")
    stem, suffix = os.path.splitext(leaf)
    if not re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix):
        stem, suffix = leaf, ""
    stem = stem.strip(" .") or "upload"
    while len((stem + suffix).encode("utf-8")) > LEAF_BYTES:
        stem = stem[:-1]
    return stem.rstrip(" .") + suffix if stem.rstrip(" .") else "upload" + suffix


def _unique(leaf: str, taken: set[str]) -> str:
    """``leaf``, or ``stem (2).mid`` and so on: names compared ignoring case."""
    stem, suffix = os.path.splitext(leaf)
    candidate, number = leaf, 1
    while candidate.lower() in taken:
        number += 1
        candidate = f"{stem} ({number}){suffix}"
    taken.add(candidate.lower())
    return candidate


def _suffix(name: str) -> str:
    return os.path.splitext(re.split(r"[\\/]", name)[-1])[1].lower()


def _not_music(shown: str, name: str) -> Problem:
    suffix = _suffix(name)
    if suffix in ARCHIVE_SUFFIXES:
        why = f"an archive MelodyGen does not open ('{suffix}'): upload a .zip"
    else:
        why = (
            f"not a music file ('{suffix or '(no ending)'}'): MelodyGen reads .mid, .midi "
            "and .abc files"
        )
    return Problem(shown, "", why + " (left out)")


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB" if size >= 100_000 else f"{size:,} bytes"


# The folder ----------------------------------------------------------------------------------


@contextmanager
def upload_folder(prefix: str = "melodygen-upload-") -> Iterator[Path]:
    """A fresh private folder (``tempfile.mkdtemp``: mode 700, a new name each time) that
    is removed with everything in it when the block ends, however it ends."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _write_new(folder: Path, leaf: str, chunks: Iterable[bytes]) -> int:
    """Write ``chunks`` to ``folder/leaf``, a file that must not exist (never through a
    link); the bytes written."""
    path = folder / leaf
    if path.parent != folder or leaf in ("", ".", ".."):
        raise UploadError(f"{leaf!r} is not a file name MelodyGen writes")  # safe_leaf's job
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    written = 0
    with os.fdopen(os.open(path, flags, 0o600), "wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
            written += len(chunk)
    return written


# Saving --------------------------------------------------------------------------------------


def limits_text(max_files: int = MAX_FILES) -> str:
    """The limits in one sentence, as the studio states them beside its uploader."""
    return (
        f"Up to {max_files:,} MIDI (.mid, .midi) or ABC (.abc) files, or .zip archives of "
        f"them: each upload at most {MAX_FILE_MB} MB, {MAX_TOTAL_BYTES // 1_000_000} MB in "
        f"all (unpacked zips included); a zip may unpack to at most {MAX_ZIP_RATIO} times "
        "its size, and may not hold other archives, links or paths outside itself."
    )


def save_uploads(
    uploads: Sequence[tuple[str, bytes]],
    folder: str | Path,
    max_files: int = MAX_FILES,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_ratio: float = MAX_ZIP_RATIO,
) -> SavedUploads:
    """Write the music files among ``uploads`` ((name, bytes) as the browser sent them)
    into ``folder``, unpacking zips, and nowhere else.

    Every limit that can be checked without writing is checked first, so a refused upload
    usually writes nothing; one refused while unpacking (a zip whose directory lies) may
    leave files in ``folder``, which its owner (:func:`upload_folder`) removes.

    Raises:
        UploadError: one line: too many files, a file or all of them too large, or a zip
            that is damaged, password-protected, unsafe or a zip bomb.
    """
    folder = Path(folder)
    saved = SavedUploads(folder=folder, uploads=[display_name(name) for name, _ in uploads])
    if len(uploads) > max_files:
        raise UploadError(
            f"{len(uploads):,} files uploaded; at most {max_files:,} are explored at once "
            "(upload part of the collection, or zip it)"
        )
    total = sum(len(data) for _, data in uploads)
    for name, data in uploads:
        if len(data) > max_file_bytes:
            raise UploadError(
                f"{display_name(name)} is {_mb(len(data))}; an upload may be at most "
                f"{max_file_bytes / 1e6:g} MB ({max_file_bytes:,} bytes): split the "
                "collection into several zips"
            )
    if total > max_total_bytes:
        raise UploadError(
            f"the uploads hold {_mb(total)} together; at most {max_total_bytes / 1e6:g} MB "
            "are explored at once"
        )
    plans: list[tuple[str, bytes, _ZipPlan | None]] = []
    music = declared = 0
    for name, data in uploads:
        shown = display_name(name)
        if _suffix(name) == ".zip":
            plan = _plan_zip(shown, data, max_files, max_ratio)
            plans.append((shown, data, plan))
            music += len(plan.entries)
            declared += plan.declared
            saved.skipped += plan.skipped
        elif _suffix(name) in MUSIC_SUFFIXES:
            plans.append((shown, data, None))
            music += 1
            declared += len(data)
        else:
            saved.skipped.append(_not_music(shown, name))
    if music > max_files:
        raise UploadError(
            f"the uploads hold {music:,} music files; at most {max_files:,} are explored at "
            "once (upload part of the collection)"
        )
    if declared > max_total_bytes:
        raise UploadError(
            f"the uploads unpack to {_mb(declared)}; at most {max_total_bytes / 1e6:g} MB "
            "are explored at once"
        )
    taken: set[str] = set()
    for shown, data, plan in plans:
        if plan is None:
            leaf = _unique(safe_leaf(shown), taken)
            saved.bytes_written += _write_new(folder, leaf, [data])
            saved.files.append(leaf)
        else:
            _unpack(shown, data, plan, saved, taken, max_files, max_total_bytes)
    return saved


@dataclass
class _ZipPlan:
    """A zip's music entries to inflate (checked from its directory), and what it skips."""

    entries: list[zipfile.ZipInfo]
    skipped: list[Problem]
    declared: int


def _plan_zip(shown: str, data: bytes, max_files: int, max_ratio: float) -> _ZipPlan:
    """Check a zip from its directory alone (nothing inflated) and list what to unpack."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError) as error:
        raise UploadError(
            f"{shown} is not a zip archive that can be read ({one_line(error)})"
        ) from None
    if len(infos) > max(MAX_ZIP_ENTRIES, 2 * max_files):
        raise UploadError(
            f"{shown} holds {len(infos):,} entries; at most {max_files:,} music files are "
            "explored at once"
        )
    entries: list[zipfile.ZipInfo] = []
    skipped: list[Problem] = []
    for info in infos:
        name = info.filename
        inside = f"{shown}: {display_name(name)}"
        parts = [part for part in re.split(r"[\\/]", name) if part]
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
            raise UploadError(
                f"{shown} is refused: its entry {_shown_entry(name)} points outside the "
                "archive (an absolute path or '..'); zip the files from their own folder"
            )
        mode = info.external_attr >> 16
        if info.create_system == 3 and stat.S_ISLNK(mode):
            raise UploadError(
                f"{shown} is refused: its entry {_shown_entry(name)} is a symbolic link; "
                "zip the files themselves"
            )
        if info.flag_bits & 0x1:
            raise UploadError(
                f"{shown} is refused: {_shown_entry(name)} is password-protected; zip the "
                "files without a password"
            )
        if info.is_dir() or _skipped_silently(parts):
            continue
        suffix = _suffix(name)
        if suffix in ARCHIVE_SUFFIXES:
            raise UploadError(
                f"{shown} is refused: it holds another archive ({_shown_entry(name)}); "
                "unpack that one and zip its files together with the rest"
            )
        if suffix not in MUSIC_SUFFIXES:
            skipped.append(_not_music(inside, name))
            continue
        if info.file_size > DATASET_MIDI.max_bytes:
            skipped.append(
                Problem(
                    inside,
                    "",
                    f"{_mb(info.file_size)} unpacked; a dataset file may be at most "
                    f"{DATASET_MIDI.max_mb:g} MB (left out)",
                )
            )
            continue
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_FLOOR and ratio > max_ratio:
            raise _bomb(shown, ratio, max_ratio)
        entries.append(info)
    if len(entries) > max_files:
        raise UploadError(
            f"{shown} holds {len(entries):,} music files; at most {max_files:,} are explored "
            "at once (zip part of the collection)"
        )
    declared = sum(info.file_size for info in entries)
    packed = sum(info.compress_size for info in entries)
    if declared > RATIO_FLOOR and declared / max(packed, 1) > max_ratio:
        raise _bomb(shown, declared / max(packed, 1), max_ratio)
    return _ZipPlan(entries, skipped, declared)


def _skipped_silently(parts: list[str]) -> bool:
    """macOS's ``__MACOSX/`` copies and hidden files (``._song.mid``, ``.DS_Store``): never
    music, and listing them as problems would only puzzle."""
    return not parts or parts[0] == "__MACOSX" or any(part.startswith(".") for part in parts)


def _shown_entry(name: str) -> str:
    text = "".join(char if char.isprintable() else "?" for char in name)
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _bomb(shown: str, ratio: float, max_ratio: float) -> UploadError:
    return UploadError(
        f"{shown} is refused: it unpacks to {ratio:,.0f} times its size (a zip bomb?); "
        f"music collections pack at most {max_ratio:g} times"
    )


def _unpack(
    shown: str,
    data: bytes,
    plan: _ZipPlan,
    saved: SavedUploads,
    taken: set[str],
    max_files: int,
    max_total_bytes: int,
) -> None:
    """Inflate the planned entries into ``saved.folder``, counting files and bytes as they
    come: an entry that inflates past its declared size, or past the totals, stops it."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in plan.entries:
            if len(saved.files) >= max_files:
                raise UploadError(
                    f"the uploads hold more than {max_files:,} music files; at most "
                    f"{max_files:,} are explored at once"
                )
            leaf = _unique(safe_leaf(info.filename), taken)
            limit = min(info.file_size, DATASET_MIDI.max_bytes)
            room = max_total_bytes - saved.bytes_written
            try:
                with archive.open(info) as source:
                    chunks = _counted(source, shown, info, limit, room, max_total_bytes)
                    saved.bytes_written += _write_new(saved.folder, leaf, chunks)
            except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, ValueError) as e:
                raise UploadError(
                    f"{shown}: {_shown_entry(info.filename)} cannot be unpacked ({one_line(e)})"
                ) from None
            saved.files.append(leaf)


def _counted(
    source, shown: str, info: zipfile.ZipInfo, limit: int, room: int, total: int
) -> Iterator[bytes]:
    """The entry's bytes in chunks, refused once more come than its directory declared
    or than the room left under the total."""
    count = 0
    while chunk := source.read(_CHUNK):
        count += len(chunk)
        if count > limit:
            raise UploadError(
                f"{shown} is refused: {_shown_entry(info.filename)} unpacks to more than "
                f"its declared {info.file_size:,} bytes (a damaged zip, or a zip bomb)"
            )
        if count > room:
            raise UploadError(
                f"{shown} is refused: it unpacks to more than the "
                f"{total / 1e6:g} MB explored at once"
            )
        yield chunk


# Exploring -----------------------------------------------------------------------------------


def explore_uploads(
    uploads: Sequence[tuple[str, bytes]],
    params: ExtractionParams | None = None,
    max_files: int = MAX_FILES,
    workers: int | None = None,
    on_file: Callable[[int, int], None] | None = None,
    keep: SessionFiles | None = None,
) -> Exploration:
    """Save ``uploads`` in a fresh folder, explore them, and remove the folder.

    The :class:`~melodygen.explore.Exploration` holds every number the page shows, so no
    file outlives the call. Files left out (not music) join its problems and files; its
    inputs are the uploads' names (never the temporary folder). ``keep``: a fresh
    :class:`SessionFiles` to save the music files in instead, kept for training (and
    discarded here if the exploration fails).

    Raises:
        UploadError: as :func:`save_uploads`, or no upload holds a music file.
        InputFileError: as :func:`melodygen.explore.explore`.
    """
    import melodygen.io.abc  # noqa: F401  # imported here, not in forked workers mid-import
    import melodygen.io.music  # noqa: F401
    from melodygen.explore import explore

    with contextlib.ExitStack() as stack:
        folder = keep.folder if keep is not None else stack.enter_context(upload_folder())
        try:
            saved = save_uploads(uploads, folder, max_files=max_files)
            if not saved.files:
                left = "; ".join(f"{p.file}: {p.problem}" for p in saved.skipped[:2])
                raise UploadError(
                    "no music file among the uploads: MelodyGen reads .mid, .midi and .abc "
                    "files, and .zip archives of them" + (f" ({left})" if left else "")
                )
            exploration = explore(
                folder, params=params, max_files=max_files, workers=workers, on_file=on_file
            )
        except BaseException:
            if keep is not None:
                keep.discard()
            raise
        if keep is not None:
            keep.files, keep.uploads = list(saved.files), list(saved.uploads)
    problems = sorted([*exploration.problems, *saved.skipped], key=lambda p: (p.file, p.song))
    return dataclasses.replace(
        exploration,
        inputs=saved.uploads,
        files=[*exploration.files, *(p.file for p in saved.skipped)],
        problems=problems,
    )


def exploration_zip(
    exploration: Exploration,
    images: dict[str, bytes] | None = None,
    tables: dict[str, Table] | None = None,
) -> bytes:
    """What ``melodygen dataset explore --output`` writes (every figure's PNG and CSV,
    songs.csv, problems.csv, report.html) as one zip made in memory: the report's links
    to its CSVs work once it is unpacked, and nothing touches the server's disk."""
    from melodygen.explore import FIGURES, draw, figure_png, write_report

    tables = tables or exploration.tables()
    if images is None:
        images = {name: figure_png(draw(tables[name])) for name in FIGURES}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("report.html", write_report(exploration, images, tables))
        for name in FIGURES:
            archive.writestr(f"{name}.png", images[name])
        for name, table in tables.items():
            archive.writestr(f"{name}.csv", table.csv_text())
    return buffer.getvalue()
