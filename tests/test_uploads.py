"""Tests for melodygen.uploads: a stranger's files and zips, saved only where they may be.

Every zip is built here in code (a normal one, zip-slip, absolute paths, a symbolic link,
a zip bomb, a directory that lies, too many files, files that are not music); each bad
one must be refused in one line and leave nothing outside the upload folder. The zip
bomb is refused from its directory: the test makes inflating it fail.
"""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import tempfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from studio_fixtures import drums_only, song

from melodygen import uploads
from melodygen.explore import DEFAULT_MAX_FILES, FIGURES
from melodygen.limits import PRIMER_MIDI, RANGES
from melodygen.uploads import (
    UploadError,
    exploration_zip,
    explore_uploads,
    safe_leaf,
    save_uploads,
)

ROOT = Path(__file__).resolve().parent.parent
TUNE = b"X:1\nT:Test jig\nR:jig\nM:6/8\nL:1/8\nK:D\n" + b"DFA dfa|gfe dcB|" * 8 + b"\n"


def make_zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def area(tmp_path: Path) -> Path:
    """The upload folder, two levels down, so '../..' would land inside tmp_path."""
    folder = tmp_path / "area" / "upload"
    folder.mkdir(parents=True)
    return folder


def everything(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def refused(area: Path, files: list[tuple[str, bytes]], match: str, **limits) -> str:
    """Refused in one line, with nothing written, in the folder or anywhere near it."""
    with pytest.raises(UploadError, match=match) as error:
        save_uploads(files, area, **limits)
    message = str(error.value)
    assert "\n" not in message and len(message) < 300, message
    assert everything(area.parent.parent) == ["area", "area/upload"]
    return message


# Names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "leaf"),
    [
        ("song.mid", "song.mid"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\reel.abc", "reel.abc"),
        ("..", "upload"),
        (".hidden.mid", "hidden.mid"),
        ("a\x00b.mid", "a_b.mid"),
        ("tab\tand:colon*.mid", "tab_and_colon_.mid"),
        ("", "upload"),
        ("...", "upload"),
        ("song.mid ", "song.mid"),
    ],
)
def test_a_leaf_is_all_of_a_name_that_reaches_the_disk(name: str, leaf: str) -> None:
    assert safe_leaf(name) == leaf


def test_a_long_name_is_cut_below_the_file_systems_limit() -> None:
    leaf = safe_leaf("日本の民謡" * 40 + ".mid")
    assert leaf.endswith(".mid") and len(leaf.encode()) <= uploads.LEAF_BYTES
    assert safe_leaf(leaf) == leaf


# Saving --------------------------------------------------------------------------------------


def test_files_and_a_zip_are_saved_flat_with_unique_names(area: Path) -> None:
    archive = make_zip(
        [
            ("jigs/tune.mid", song()),
            ("reels/tune.mid", drums_only()),
            ("reels/", b""),
            ("book.abc", TUNE),
            ("README.txt", b"my collection"),
            ("__MACOSX/reels/._tune.mid", b"\x00\x05\x16\x07"),
            (".DS_Store", b"\x00"),
        ]
    )
    saved = save_uploads(
        [("Tune.MID", song()), ("collection.zip", archive), ("notes.txt", b"hello")], area
    )
    assert saved.files == ["Tune.MID", "tune (2).mid", "tune (3).mid", "book.abc"]
    assert everything(area) == sorted(saved.files)
    assert (area / "tune (3).mid").read_bytes() == drums_only()
    assert saved.bytes_written == 2 * len(song()) + len(drums_only()) + len(TUNE)
    assert saved.uploads == ["Tune.MID", "collection.zip", "notes.txt"]
    skipped = {problem.file: problem.problem for problem in saved.skipped}
    assert set(skipped) == {"collection.zip: README.txt", "notes.txt"}
    assert skipped["notes.txt"].startswith("not a music file ('.txt')")
    inside = sorted(f"area/upload/{name}" for name in saved.files)
    assert everything(area.parent.parent) == ["area", "area/upload", *inside]


def test_the_files_are_private(area: Path) -> None:
    with uploads.upload_folder() as folder:
        save_uploads([("a.mid", song())], folder)
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE((folder / "a.mid").stat().st_mode) == 0o600
    assert not folder.exists()


@pytest.mark.parametrize(
    "entry",
    ["../../etc/passwd", "../tune.mid", "songs/../../tune.mid", "..\\..\\tune.mid"],
)
def test_zip_slip_is_refused(area: Path, entry: str) -> None:
    archive = make_zip([("fine.mid", song()), (entry, b"root::0:0")])
    message = refused(area, [("evil.zip", archive)], "outside the archive")
    assert message.startswith("evil.zip is refused")
    assert not (area.parent.parent / "etc").exists()


@pytest.mark.parametrize("entry", ["/etc/passwd", "/tmp/tune.mid", "C:/tune.mid", "\\tune.mid"])
def test_absolute_paths_are_refused(area: Path, entry: str) -> None:
    archive = make_zip([(entry, song())])
    refused(area, [("evil.zip", archive)], "outside the archive")


def test_a_symbolic_link_is_refused(area: Path) -> None:
    link = zipfile.ZipInfo("tune.mid")
    link.create_system = 3  # Unix
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = make_zip([("fine.mid", song()), (link, b"/etc/passwd")])
    refused(area, [("links.zip", archive)], "symbolic link")


def test_a_zip_bomb_is_refused_from_its_directory(area: Path, monkeypatch) -> None:
    bomb = make_zip([("song.mid", bytes(5_000_000))])
    assert len(bomb) < 10_000  # 5 MB of zeros packs about 1,000 times
    many = make_zip([(f"song{index}.mid", bytes(200_000)) for index in range(10)])

    def never(*args, **kwargs):
        raise AssertionError("the bomb was opened")

    monkeypatch.setattr(zipfile.ZipFile, "open", never)
    message = refused(area, [("bomb.zip", bomb)], "zip bomb")
    assert "times its size" in message
    # A looser ratio still meets the declared total, also before inflating anything.
    refused(
        area,
        [("bomb.zip", bomb)],
        "unpack to 5.0 MB; at most 1 MB",
        max_ratio=10**6,
        max_total_bytes=1_000_000,
    )
    # Many small entries each below the floor: the whole archive's ratio counts.
    refused(area, [("many.zip", many)], "zip bomb")


def test_a_directory_that_lies_is_caught_while_inflating(area: Path) -> None:
    """A zip whose directory says 1,000 bytes for an entry holding 300,000."""
    archive = bytearray(make_zip([("song.mid", bytes(300_000))]))
    local = archive.index(b"PK\x03\x04")
    central = archive.index(b"PK\x01\x02")
    struct.pack_into("<I", archive, local + 22, 1_000)
    struct.pack_into("<I", archive, central + 24, 1_000)
    with pytest.raises(UploadError, match="bomb.zip") as error:
        save_uploads([("bomb.zip", bytes(archive))], area)
    assert "\n" not in str(error.value)
    assert everything(area.parent.parent) in (
        ["area", "area/upload"],
        ["area", "area/upload", "area/upload/song.mid"],  # cut at its 1,000 bytes
    )
    assert sum(path.stat().st_size for path in area.iterdir()) <= 1_000


def test_too_many_files_are_refused_before_any_is_written(area: Path) -> None:
    ten_thousand = make_zip([(f"tunes/{index}.abc", TUNE) for index in range(10_000)])
    refused(area, [("big.zip", ten_thousand)], "is 1.6 MB; an upload may be at most 1 MB")
    message = refused(area, [("big.zip", ten_thousand)], "at most 5,000", max_file_bytes=2_000_000)
    assert "10,000" in message
    fewer = make_zip([(f"tunes/{index}.abc", TUNE) for index in range(5_001)])
    refused(area, [("big.zip", fewer)], "5,001 music files; at most 5,000")
    refused(area, [(f"{index}.mid", song()) for index in range(6)], "6 files", max_files=5)
    halves = [("a.zip", make_zip([(f"{i}.mid", song()) for i in range(3)]))] * 2
    refused(area, halves, "6 music files", max_files=5)


def test_nested_archives_and_passwords_are_refused(area: Path) -> None:
    inner = make_zip([("song.mid", song())])
    refused(area, [("outer.zip", make_zip([("inner.zip", inner)]))], "another archive")
    refused(area, [("outer.zip", make_zip([("x/songs.tar.gz", b"\x1f\x8b")]))], "another archive")
    locked = bytearray(make_zip([("song.mid", song())]))  # the 'encrypted' flag set
    for header, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = locked.index(header) + offset
        struct.pack_into("<H", locked, at, struct.unpack_from("<H", locked, at)[0] | 0x1)
    refused(area, [("locked.zip", bytes(locked))], "password")


def test_sizes_are_refused_in_one_line(area: Path) -> None:
    refused(area, [("big.mid", bytes(PRIMER_MIDI.max_bytes + 1))], "at most 1 MB")
    refused(
        area,
        [("a.mid", bytes(600)), ("b.mid", bytes(600))],
        "1,200 bytes together; at most 0.001 MB",
        max_total_bytes=1_000,
    )


def test_not_a_zip_is_one_line(area: Path) -> None:
    refused(area, [("songs.zip", b"this is not a zip")], "not a zip archive that can be read")
    refused(area, [("songs.zip", make_zip([("a.mid", song())])[:-30])], "not a zip archive")


def test_files_that_are_not_music_are_left_out_not_refused(area: Path) -> None:
    archive = make_zip([("cover.jpg", b"\xff\xd8\xff"), ("notes.txt", b"hi"), ("x.musicxml", b"")])
    saved = save_uploads([("only.zip", archive), ("song.mp3", b"ID3")], area)
    assert saved.files == [] and everything(area) == []
    assert [p.file for p in saved.skipped] == [
        "only.zip: cover.jpg",
        "only.zip: notes.txt",
        "only.zip: x.musicxml",
        "song.mp3",
    ]
    assert all(p.problem.endswith("(left out)") for p in saved.skipped)
    archive = make_zip([("huge.mid", b"MThd" + bytes(9_000_000))])
    saved = save_uploads([("huge.zip", archive)], area, max_ratio=10**6, max_total_bytes=10**8)
    assert saved.files == [] and "a dataset file may be at most 8 MB" in saved.skipped[0].problem


def test_the_limits_are_the_studios_and_the_servers() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert uploads.MAX_FILE_MB == config["server"]["maxUploadSize"]
    assert uploads.MAX_FILE_BYTES == PRIMER_MIDI.max_bytes  # studio.MAX_UPLOAD_BYTES
    assert uploads.MAX_FILES == DEFAULT_MAX_FILES
    assert RANGES["explore_files"].low <= uploads.MAX_FILES <= RANGES["explore_files"].high
    text = uploads.limits_text()
    assert "5,000" in text and "1 MB" in text and "100 MB" in text and "100 times" in text


# Exploring -----------------------------------------------------------------------------------


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch) -> Path:
    """Temporary folders made here, to see that the upload folder goes."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_explore_uploads_keeps_numbers_and_no_file(private_tmp: Path) -> None:
    archive = make_zip([("folk/book.abc", TUNE), ("folk/readme.md", b"# tunes")])
    done: list[tuple[int, int]] = []
    exploration = explore_uploads(
        [("song.mid", song()), ("drums.mid", drums_only()), ("folk.zip", archive)],
        workers=1,
        on_file=lambda index, total: done.append((index, total)),
    )
    assert os.listdir(private_tmp) == []
    assert done[-1] == (3, 3)
    assert exploration.inputs == ["song.mid", "drums.mid", "folk.zip"]
    assert sorted(exploration.files) == [
        "book.abc",
        "drums.mid",
        "folk.zip: readme.md",
        "song.mid",
    ]
    assert {song.file for song in exploration.songs} == {"book.abc", "drums.mid", "song.mid"}
    problems = {(p.file, p.problem.split(":")[0].split(" (")[0]) for p in exploration.problems}
    assert ("folk.zip: readme.md", "not a music file") in problems
    assert any(p.file == "drums.mid" for p in exploration.problems)
    assert str(private_tmp) not in repr(exploration.to_dict())

    # Everything the CLI would write, as one zip: the report's links find their files.
    with zipfile.ZipFile(io.BytesIO(exploration_zip(exploration))) as archive:
        names = set(archive.namelist())
        report = archive.read("report.html").decode()
        assert archive.read("problems.csv").decode().startswith("file,song,problem\n")
        assert archive.read("keys.png").startswith(b"\x89PNG")
    assert names == {"report.html", "songs.csv", "problems.csv"} | {
        f"{name}.{kind}" for name in FIGURES for kind in ("png", "csv")
    }
    links = set(re.findall(r'href="([^"]+)"', report))
    assert links and links <= names


def test_explore_uploads_without_music_is_one_line(private_tmp: Path) -> None:
    with pytest.raises(UploadError, match="no music file among the uploads") as error:
        explore_uploads([("notes.txt", b"hi"), ("x.zip", make_zip([("a.pdf", b"%PDF")]))])
    assert "\n" not in str(error.value) and "notes.txt" in str(error.value)
    assert os.listdir(private_tmp) == []
    with pytest.raises(UploadError, match="outside the archive"):
        explore_uploads([("evil.zip", make_zip([("../../x.mid", song())]))])
    assert os.listdir(private_tmp) == []


def test_a_session_keeps_its_explored_music_files_until_discarded_or_dropped(
    private_tmp: Path,
) -> None:
    import gc

    kept = uploads.SessionFiles()
    archive = make_zip([("folk/book.abc", TUNE), ("folk/readme.md", b"# tunes")])
    explore_uploads([("song.mid", song()), ("folk.zip", archive)], workers=1, keep=kept)
    assert kept.available and kept.folder.parent == private_tmp
    assert sorted(os.listdir(kept.folder)) == ["book.abc", "song.mid"]  # music only
    assert sorted(kept.files) == ["book.abc", "song.mid"]
    assert stat.S_IMODE(kept.folder.stat().st_mode) == 0o700
    assert kept.describe() == "2 music files from song.mid, folk.zip"
    kept.discard()
    assert not kept.available and os.listdir(private_tmp) == []
    kept.discard()  # twice: nothing happens
    # A refused exploration keeps nothing.
    refused = uploads.SessionFiles()
    with pytest.raises(UploadError):
        explore_uploads([("evil.zip", make_zip([("../../x.mid", song())]))], keep=refused)
    assert not refused.available and os.listdir(private_tmp) == []
    # Dropped with its session (Streamlit forgets the session's state): the folder goes.
    dropped = uploads.SessionFiles()
    explore_uploads([("song.mid", song())], workers=1, keep=dropped)
    folder = dropped.folder
    del dropped
    gc.collect()
    assert not folder.exists()


def test_a_killed_servers_old_session_folders_are_swept(private_tmp: Path) -> None:
    old, fresh = private_tmp / "melodygen-session-old", private_tmp / "melodygen-session-new"
    other = private_tmp / "someone-elses"
    for folder in (old, fresh, other):
        folder.mkdir()
    os.utime(old, (1, 1))
    os.utime(other, (1, 1))
    kept = uploads.SessionFiles()  # sweeps as it is made
    assert sorted(os.listdir(private_tmp)) == sorted([fresh.name, other.name, kept.folder.name])
    kept.discard()
