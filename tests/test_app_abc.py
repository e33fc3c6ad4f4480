"""The studio with an ABC model (abc_char), page by page with Streamlit's AppTest: only the
controls its family reads, its tunes' text, scores and files, and a tune that cannot be
read shown with its reason and a "Sample again" button, never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from abc_fixtures import OPENING, make_abc_checkpoint
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")
TIMEOUT = 120

pytestmark = pytest.mark.skipif(shutil.which("abc2midi") is None, reason="needs abc2midi")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("checkpoints")
    make_abc_checkpoint(root)
    return root


@pytest.fixture
def app(checkpoints, monkeypatch) -> AppTest:
    monkeypatch.setenv("MELODYGEN_CHECKPOINTS", str(checkpoints))
    monkeypatch.delenv("MELODYGEN_SOUNDFONT", raising=False)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    return at


def press(at: AppTest, label: str, **settings) -> AppTest:
    for key, value in settings.items():
        at.session_state[key] = value
    next(b for b in at.button if b.label == label).click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def svg_images(at: AppTest) -> list:
    return [image for image in at.image if "svg" in image.proto.imgs[0].url]


def test_only_the_controls_an_abc_model_reads(app):
    keys = {w.key for w in [*app.text_input, *app.text_area, *app.selectbox, *app.toggle]}
    keys |= {w.key for w in [*app.number_input, *app.slider, *app.radio]}
    assert {"title", "rhythm", "abc_primer", "key", "mode", "meter", "bpm", "seed"} <= keys
    assert not {"primer_source", "in_scale", "beam_size", "min_pitch", "primer_text"} & keys
    assert app.selectbox(key="meter").format_func("From primer") == "The model's own"


def test_abc_model_generates_tunes_with_text_scores_and_files(app):
    press(
        app,
        "Generate",
        title="New jig",
        rhythm="jig",
        meter="6/8",
        key="G",
        abc_primer="|:GAB c2d|e2d c2B|ded cBA|B2G A2F:|",
        variations=2,
        seed=3,
    )
    assert not app.error
    result = app.session_state["result"]
    assert all(m.problem is None for m in result.melodies)
    codes = [c.value for c in app.code]
    assert len(codes) == 2 and all(c.startswith("T:New jig\nM:6/8\n") for c in codes)
    assert all(c.endswith(OPENING) for c in codes)
    assert len(svg_images(app)) == 2  # a score for each tune, beside its piano roll
    labels = [d.label for d in app.download_button]
    assert labels == ["Download all (zip)"] + ["MIDI", "WAV", "ABC", "MusicXML"] * 2
    assert not [b for b in app.button if b.label == "Continue this one"]


def test_a_tune_that_cannot_be_read_shows_its_reason_and_samples_again(app):
    press(app, "Generate", variations=2, seed=4)  # no opening: a header with no music
    assert not app.exception
    errors = [e.value for e in app.error]
    assert len(errors) == 2 and all("could not be read as music" in e for e in errors)
    assert all("header but no music" in e for e in errors)
    assert [c.value.startswith("T:") for c in app.code] == [True, True]
    assert not app.get("audio") and not svg_images(app)
    assert [d.label for d in app.download_button] == ["Download all (zip)", "ABC", "ABC"]
    again = [b for b in app.button if b.label == "Sample again"]
    assert len(again) == 2
    seed = app.session_state["result"].seed
    again[0].click().run()
    assert not app.exception
    assert app.session_state["result"].seed != seed  # generated again, with a new seed
    assert "Traceback" not in " ".join(e.value for e in app.error)
