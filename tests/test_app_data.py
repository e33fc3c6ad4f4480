"""The Data page with Streamlit's AppTest: tiny MIDI and ABC files written here, uploaded
(one by one and zipped), explored once, shown as figures with CSV downloads, the songs and
problems tables and the HTML report; bad uploads are one line; no file outlives it."""

from __future__ import annotations

import csv
import io
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest
from studio_fixtures import drums_only, midi_file, song

from melodygen import uploads
from melodygen.explore import FIGURES

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "data.py")
APP = str(ROOT / "app.py")
TIMEOUT = 60
TUNE = b"X:1\nT:Test jig\nR:jig\nM:6/8\nL:1/8\nK:D\n" + b"DFA dfa|gfe dcB|" * 8 + b"\n"
SCALE = [60, 62, 64, 65, 67, 69, 71, 72]


def eight_bars() -> bytes:
    """A flute line of 32 quarter notes at 120 BPM: one melody kept."""
    notes = [(SCALE[i % 8], i * 0.5, i * 0.5 + 0.45) for i in range(32)]
    return midi_file([("Flute", 73, False, notes)], qpm=120.0)


def make_zip(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


@dataclass
class Media:
    data: bytes
    mimetype: str
    file_name: str | None


@pytest.fixture
def media(monkeypatch) -> list[Media]:
    """Every file the page hands to the browser (figures and downloads)."""
    added: list[Media] = []
    original, deferred = MediaFileManager.add, MediaFileManager.add_deferred

    def add(self, data, mimetype, coordinates, file_name=None, is_for_static_download=False):
        added.append(Media(data, mimetype, file_name))
        return original(self, data, mimetype, coordinates, file_name, is_for_static_download)

    def add_deferred(self, make, mimetype, coordinates, file_name=None, **kwargs):
        added.append(Media(make(), mimetype, file_name))  # made at once, as a click would
        return deferred(self, make, mimetype, coordinates, file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add", add)
    monkeypatch.setattr(MediaFileManager, "add_deferred", add_deferred)
    return added


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch) -> Path:
    """The page's temporary folders are made here, to see that none is left."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def app(private_tmp) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["studio_routed"] = True  # as if app.py had sent the visitor here
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def explore(at: AppTest, files: list[tuple[str, bytes]]) -> AppTest:
    """Upload ``files`` and press Explore; nothing may crash."""
    mime = {".mid": "audio/midi", ".zip": "application/zip"}
    at.file_uploader(key="data_files").set_value(
        [(name, data, mime.get(Path(name).suffix, "text/plain")) for name, data in files]
    )
    next(b for b in at.button if b.label == "Explore").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def table(at: AppTest, index: int) -> list[dict]:
    return at.dataframe[index].value.to_dict("records")


def test_the_page_states_its_limits_and_waits_for_files(app):
    assert app.title[0].value == "Data"
    uploader = app.file_uploader(key="data_files")
    assert uploader.accept_multiple_files
    limits = app.caption[0].value
    assert "5,000" in limits and "1 MB" in limits and "100 MB" in limits
    assert "Nothing you upload is kept" in limits
    assert not app.image and not app.download_button
    next(b for b in app.button if b.label == "Explore").click().run()
    assert "Choose some MIDI, ABC or zip files first" in app.info[0].value


def test_uploads_are_explored_into_figures_tables_and_downloads(app, media, private_tmp):
    collection = make_zip([("folk/tune.abc", TUNE), ("folk/flute.mid", eight_bars())])
    explore(
        app,
        [
            ("song.mid", song()),
            ("drums.mid", drums_only()),
            ("notes.txt", b"not music"),
            ("collection.zip", collection),
        ],
    )
    assert not app.error
    # Only the music files stay, in the session's private folder, for the Train page.
    [kept] = private_tmp.iterdir()
    assert kept.name.startswith(uploads.SESSION_PREFIX)
    assert sorted(p.name for p in kept.iterdir()) == [
        "drums.mid",
        "flute.mid",
        "song.mid",
        "tune.abc",
    ]
    metrics = {m.label: m.value for m in app.metric}
    assert metrics == {"Files": "5", "Songs": "4", "Melodies kept": "2", "Files with problems": "3"}
    assert len(app.image) == len(FIGURES)
    assert [d.label for d in app.download_button] == [
        "Report (HTML, one page)",
        "Everything (zip: report, PNG and CSV)",
        *(f"{name}.csv" for name in FIGURES),
        "songs.csv",
        "problems.csv",
    ]
    files = {m.file_name: m for m in media if m.file_name}
    instruments = list(csv.DictReader(io.StringIO(files["instruments.csv"].data.decode())))
    assert {row["instrument_class"] for row in instruments} >= {"Pipe", "Drums"}
    report = files["report.html"].data.decode()
    assert (
        report.startswith("<!DOCTYPE html>")
        and "song.mid, drums.mid, notes.txt and 1 more" in report
    )
    assert str(private_tmp) not in report and "melodygen-upload" not in report
    assert sum(m.mimetype == "image/png" for m in media) == len(FIGURES)
    with zipfile.ZipFile(io.BytesIO(files["exploration.zip"].data)) as archive:
        names = set(archive.namelist())
        assert {"report.html", "songs.csv", "problems.csv", "instruments.png"} <= names
        assert archive.read("tags.csv").decode() == files["tags.csv"].data.decode()

    songs = table(app, 0)
    assert sorted(row["file"] for row in songs) == [
        "drums.mid",
        "flute.mid",
        "song.mid",
        "tune.abc",
    ]
    problems = {row["file"]: row["problem"] for row in table(app, 1)}
    assert set(problems) == {"drums.mid", "notes.txt", "song.mid"}
    assert problems["notes.txt"].startswith("not a music file")
    assert "drums" in problems["drums.mid"]

    # A rerun (a widget, another page and back) shows the same result without exploring.
    result = app.session_state["data_result"]
    app.run()
    assert app.session_state["data_result"] is result and len(app.image) == len(FIGURES)
    # Delete: the files go, the numbers stay.
    next(b for b in app.button if b.label == "Delete them now").click().run()
    assert list(private_tmp.iterdir()) == [] and len(app.image) == len(FIGURES)


@pytest.mark.parametrize(
    ("name", "data", "words"),
    [
        ("evil.zip", make_zip([("../../etc/passwd", b"root::0:0")]), "outside the archive"),
        ("bomb.zip", make_zip([("song.mid", bytes(5_000_000))]), "zip bomb"),
        ("songs.zip", b"not a zip at all", "not a zip archive that can be read"),
        ("nested.zip", make_zip([("inner.zip", make_zip([("a.mid", b"")]))]), "another archive"),
        ("notes.txt", b"just words", "no music file among the uploads"),
    ],
)
def test_a_bad_upload_is_one_line_and_leaves_nothing(app, private_tmp, name, data, words):
    explore(app, [("fine.mid", eight_bars())])
    assert "data_result" in app.session_state
    beside = [("fine.mid", eight_bars())] if name.endswith(".zip") else []
    explore(app, [*beside, (name, data)])  # a bad zip refuses the good files beside it
    assert len(app.error) == 1
    message = app.error[0].value
    assert words in message and "\n" not in message
    assert "data_result" not in app.session_state  # no stale numbers under the error
    assert not app.image and not app.metric
    assert list(private_tmp.iterdir()) == []


def test_too_many_files_is_one_line(app, monkeypatch):
    monkeypatch.setattr(uploads, "MAX_FILES", 3)  # the page's default: 5,000
    explore(app, [(f"{index}.mid", eight_bars()) for index in range(4)])
    assert "4 files uploaded; at most 3 are explored at once" in app.error[0].value


def test_the_studio_lists_the_data_page(tmp_path, monkeypatch, private_tmp):
    monkeypatch.setenv("MELODYGEN_CHECKPOINTS", str(tmp_path))  # no model: a light start
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    at.switch_page("pages/data.py").run()
    assert not at.exception and at.title[0].value == "Data"
    lines = (ROOT / "app.py").read_text().splitlines()
    titles = [line.split('title="')[1].split('"')[0] for line in lines if "st.Page(" in line]
    assert titles == [
        "Generate",
        "Variations and blends",
        "Data",
        "Train",
        "Models",
        "About and help",
    ]
