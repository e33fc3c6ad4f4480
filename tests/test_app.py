"""The Streamlit studio, page by page, with Streamlit's AppTest and tiny real models."""

from __future__ import annotations

import ast
import io
import json
import sys
import tomllib
import wave
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pretty_midi
import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest
from studio_fixtures import LEAD, cluster, drums_only, make_checkpoints, song

from melodygen import studio
from melodygen.io.primer import parse_primer
from melodygen.render import SAMPLE_RATE

APP = str(Path(__file__).resolve().parent.parent / "app.py")
TIMEOUT = 120  # the first run imports TensorFlow and compiles the model's step


@dataclass
class Media:
    data: bytes
    mimetype: str
    file_name: str | None
    download: bool


@pytest.fixture
def media(monkeypatch) -> list[Media]:
    """Every file the app hands to the browser (images, audio, downloads), with its MIME type.

    Downloads made on demand (the page defers WAV and zip until the button is pressed) are
    made here at once, as the server would on a click.
    """
    added: list[Media] = []
    original, deferred = MediaFileManager.add, MediaFileManager.add_deferred

    def add(self, data, mimetype, coordinates, file_name=None, is_for_static_download=False):
        added.append(Media(data, mimetype, file_name, is_for_static_download))
        return original(self, data, mimetype, coordinates, file_name, is_for_static_download)

    def add_deferred(self, make, mimetype, coordinates, file_name=None, **kwargs):
        added.append(Media(make(), mimetype, file_name, True))
        return deferred(self, make, mimetype, coordinates, file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add", add)
    monkeypatch.setattr(MediaFileManager, "add_deferred", add_deferred)
    return added


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    return make_checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture
def app(checkpoints, monkeypatch) -> AppTest:
    monkeypatch.setenv("MELODYGEN_CHECKPOINTS", str(checkpoints))
    monkeypatch.delenv("MELODYGEN_SOUNDFONT", raising=False)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    return at


def generate(at: AppTest, **settings) -> AppTest:
    """Set form values by key, press Generate, and check nothing crashed."""
    for key, value in settings.items():
        at.session_state[key] = value
    next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def downloads(media: list[Media]) -> dict[str, Media]:
    return {m.file_name: m for m in media if m.download}


def test_default_generation_shows_rolls_players_and_downloads(app, media):
    assert app.title[0].value == "Generate"
    assert app.selectbox(key="style").value == "folk"
    assert "Nottingham" in app.caption[0].value  # the card's one-line description
    assert not app.error
    generate(app, bars=8, bpm=150, variations=3, seed=11)
    assert not app.error
    result = app.session_state["result"]
    assert len(result.melodies) == 3 and result.seed == 11
    # The server switches threads often, so generation gets Python's lock back soon.
    assert sys.getswitchinterval() == pytest.approx(studio.SWITCH_INTERVAL)
    assert len(app.get("audio")) == 3
    assert len(app.image) == 6  # a piano roll and a score per variation (no primer preview)
    scores = [image for image in app.image if "svg" in image.proto.imgs[0].url]
    assert len(scores) == 3
    labels = [d.label for d in app.download_button]
    assert labels == ["Download all (zip)"] + ["MIDI", "WAV", "ABC", "MusicXML"] * 3

    files = downloads(media)
    by_type = sorted({(Path(name).suffix, m.mimetype) for name, m in files.items()})
    assert by_type == [
        (".abc", "text/vnd.abc"),
        (".mid", "audio/midi"),
        (".musicxml", "application/vnd.recordare.musicxml+xml"),
        (".wav", "audio/wav"),
        (".zip", "application/zip"),
    ]
    assert len(files) == 13
    wav = next(m for name, m in files.items() if name.endswith("_02.wav"))
    with wave.open(io.BytesIO(wav.data)) as reader:
        # 8 bars at 150 BPM: 12.8 s, plus the 1-second release tail.
        assert reader.getnframes() == pytest.approx(13.8 * SAMPLE_RATE, abs=64)
        assert max(reader.readframes(reader.getnframes())) > 0
    midi = next(m for name, m in files.items() if name.endswith("_03.mid"))
    notes = pretty_midi.PrettyMIDI(io.BytesIO(midi.data)).instruments[0].notes
    assert [n.pitch for n in notes] == result.melodies[2].pitches()
    archive = zipfile.ZipFile(
        io.BytesIO(next(m.data for m in files.values() if m.mimetype == "application/zip"))
    )
    assert len(archive.namelist()) == 16  # MIDI, piano roll, WAV, ABC, MusicXML x 3; settings
    audio = [m for m in media if not m.download and m.mimetype == "audio/wav"]
    assert len(audio) == 3

    # A new instrument re-renders the audio but never generates again.
    media.clear()
    app.selectbox(key="instrument").set_value("Strings").run()
    assert app.session_state["result"] is result
    new_wav = next(m for name, m in downloads(media).items() if name.endswith("_02.wav"))
    assert new_wav.data != wav.data
    program = pretty_midi.PrettyMIDI(
        io.BytesIO(next(m.data for n, m in downloads(media).items() if n.endswith(".mid")))
    )
    assert program.instruments[0].program == 48


def press(at: AppTest, label: str) -> AppTest:
    next(b for b in at.button if b.label == label).click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_studio_sends_the_one_step_stale_style(checkpoints, monkeypatch):
    """Stale elements dim in one step (app.STALE_STYLE), not in Streamlit's one-second fade;
    tests/test_browser.py checks that a real browser applies it."""
    monkeypatch.setenv("MELODYGEN_CHECKPOINTS", str(checkpoints))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    styles = [element.proto.body for element in at.get("html")]
    assert any('[data-stale="true"]' in body and "opacity 0s" in body for body in styles)


def test_no_stray_strings_are_written_on_the_pages():
    """Streamlit's magic writes a bare string in a page script onto the page: app.py once
    showed a constant's docstring above every page. Only each file's docstring may stand
    alone (outside functions and classes, whose docstrings magic leaves alone)."""
    root = Path(APP).parent
    for script in [root / "app.py", *sorted((root / "pages").glob("*.py"))]:
        module = ast.parse(script.read_text())
        stray = []
        statements = list(module.body[1:])
        while statements:
            statement = statements.pop()
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
                stray.append(statement.lineno)
            for field in ("body", "orelse", "finalbody", "handlers"):
                statements += getattr(statement, field, [])
        assert not stray, f"{script.name}: bare strings at lines {stray} would be drawn"


def test_typed_primer_is_checked_when_pressed_and_leads_the_result(app):
    app.radio(key="primer_source").set_value("Typed notes").run()
    assert "when you press Check notes" in app.caption[-1].value  # what the page says
    app.text_area(key="primer_text").input("C4 E4 H4")  # typed: in the form, not sent yet
    press(app, "Check notes")
    assert "'H4' (token 3) is not a note" in app.error[0].value
    generate(app)
    assert app.error[-1].value.startswith("Fix the primer first")
    assert "result" not in app.session_state

    app.text_area(key="primer_text").input("D4 F4 A4:8")
    press(app, "Check notes")
    assert not app.error
    assert len(app.image) == 2  # the primer's piano roll and score, before generating
    assert any("3 notes typed" in c.value for c in app.caption)
    app.text_area(key="primer_text").input("D4 F4 A4:8 G4")
    generate(app, bars=4, variations=2, seed=3, key="D", mode="minor", in_scale=True)
    assert not app.error  # typed and generated with one press: the new notes are used
    primer = parse_primer("D4 F4 A4:8 G4").events
    for melody in app.session_state["result"].melodies:
        assert melody.events[: len(primer)] == primer
        assert {p % 12 for p in melody.pitches()} <= {2, 4, 5, 7, 9, 10, 0}  # D natural minor


def test_uploaded_midi_primer_offers_tracks_and_bars(app):
    app.radio(key="primer_source").set_value("MIDI file").run()
    assert app.info and "Upload a MIDI file" in app.info[0].value
    app.file_uploader(key="primer_file").upload("song.mid", song(), "audio/midi").run()
    assert not app.exception and not app.error
    tracks = app.dataframe[0].value
    assert list(tracks["name"]) == ["Drums", "Piano", "MELODY"]
    assert list(tracks["notes"]) == [8, 6, 8]
    chooser = app.selectbox(key="primer_track")
    assert chooser.options == [
        "1: Piano (Acoustic Grand Piano), 6 notes",
        "2: MELODY (Flute), 8 notes",
    ]
    assert chooser.value == 2  # the MELODY track is offered first
    assert app.session_state["bpm"] == 100  # the file's tempo
    assert len(app.image) == 2  # the primer's piano roll and score

    app.number_input(key="primer_bars").set_value(1).run()
    generate(app, bars=3, variations=2, seed=1)
    assert not app.error
    for melody in app.session_state["result"].melodies:
        assert [e for e in melody.events[:16] if e >= 0] == list(LEAD[0])

    app.selectbox(key="primer_track").set_value(1).run()
    assert any("chords: the top note of each is kept" in c.value for c in app.caption)
    generate(app, bars=3, variations=1, seed=1)
    assert app.session_state["result"].melodies[0].events[0] == 55


BAD_UPLOADS = [
    ("broken.mid", b"MThd\x00\x00\x00\x06garbage", "broken.mid"),
    ("empty.mid", b"", "empty.mid is empty"),
    ("drums.mid", drums_only(), "only drums"),
    ("dense.mid", cluster(), "more than 32 notes at once"),
    ("fake.mid", b"C4 E4 G4", "fake.mid is not a MIDI file"),
]


def test_bad_uploads_get_a_message_not_a_traceback(app):
    app.radio(key="primer_source").set_value("MIDI file").run()
    for name, data, message in BAD_UPLOADS:
        app.file_uploader(key="primer_file").set_value((name, data, "audio/midi")).run()
        assert not app.exception, name
        assert message in app.error[0].value, name
        generate(app)
        assert app.error[-1].value.startswith("Fix the primer first"), name
        assert "result" not in app.session_state
    # A good file afterwards works: nothing was left broken.
    app.file_uploader(key="primer_file").set_value(("song.mid", song(), "audio/midi")).run()
    assert not app.error and len(app.image) == 2


def test_continue_this_one_makes_the_result_the_next_primer(app):
    generate(app, bars=4, variations=2, seed=9)
    chosen = app.session_state["result"].melodies[1]
    app.button(key="continue_1").click().run()
    assert not app.exception
    assert app.radio(key="primer_source").value == "Typed notes"
    assert app.session_state["bars"] == 8
    assert app.selectbox(key="key").value == "C"  # the key it was generated in
    assert "Variation 2 is now the primer" in app.success[0].value
    assert parse_primer(app.text_area(key="primer_text").value).steps == chosen.steps
    generate(app, seed=2)
    for melody in app.session_state["result"].melodies:
        assert melody.steps == 128 and melody.primer_steps == 64
        assert [e for e in melody.events[:64] if e >= 0] == chosen.pitches()


def test_continue_uses_the_model_that_made_the_result(app):
    generate(app, bars=4, variations=1, seed=5)
    assert app.session_state["result"].model_name == "folk_attention_rnn"
    app.selectbox(key="style").set_value("pop").run()
    assert app.selectbox(key="model").value == "pop_basic_rnn"
    app.button(key="continue_0").click().run()
    assert not app.exception
    assert app.selectbox(key="style").value == "folk"
    assert app.selectbox(key="model").value == "folk_attention_rnn"
    assert "continued by Folk · attention_rnn" in app.success[0].value
    generate(app, seed=6)
    assert app.session_state["result"].model_name == "folk_attention_rnn"


def test_page_is_drawn_while_the_model_loads_in_the_background(tmp_path, monkeypatch):
    monkeypatch.setenv("MELODYGEN_CHECKPOINTS", str(make_checkpoints(tmp_path)))  # not loaded
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error
    assert "Loading the model in the background" in at.info[0].value
    assert any(b.label == "Generate" for b in at.button)  # everything can be set meanwhile
    generate(at, variations=1, seed=1)  # waits for the model, then generates
    assert len(at.session_state["result"].melodies) == 1
    at.run()  # what the message's one-second timer does once the model is there
    assert not at.info and not at.exception


def test_shipped_config_and_tensorflow_log_level(tmp_path):
    config = tomllib.loads((Path(APP).parent / ".streamlit" / "config.toml").read_text())
    assert config["server"]["fileWatcherType"] == "none"
    environ: dict[str, str] = {}
    assert studio.quiet_tensorflow(environ, devices=tmp_path) == "3"  # no GPU: no CUDA probe
    (tmp_path / "nvidia0").touch()
    assert studio.quiet_tensorflow({}, devices=tmp_path) == "2"
    assert studio.quiet_tensorflow({"TF_CPP_MIN_LOG_LEVEL": "0"}, devices=tmp_path) == "0"


def test_bad_settings_get_a_message(app):
    generate(app, min_pitch=70, max_pitch=71, in_scale=True, key="C", mode="major_pentatonic")
    assert "Cannot generate" in app.error[0].value
    assert "result" not in app.session_state


def test_without_audio_the_page_says_why_and_still_offers_midi(app, monkeypatch, tmp_path):
    monkeypatch.setenv("MELODYGEN_SOUNDFONT", str(tmp_path / "missing.sf2"))
    generate(app, variations=2, seed=1)
    assert "Audio is unavailable: SoundFont not found" in app.warning[0].value
    assert not app.get("audio")
    assert [d.label for d in app.download_button] == ["Download all (zip)"] + [
        "MIDI",
        "ABC",
        "MusicXML",
    ] * 2


def test_no_models_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("MELODYGEN_CHECKPOINTS", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert "No trained model found" in at.error[0].value
    at.switch_page("pages/models.py").run()
    assert "No trained model found" in at.warning[0].value


def test_models_page_shows_cards_and_curves(app, checkpoints):
    app.switch_page("pages/models.py").run()
    assert not app.exception
    assert [h.value for h in app.subheader] == ["Folk · attention_rnn", "Pop · basic_rnn"]
    text = " ".join(m.value for m in app.markdown)
    assert "Nottingham (GPL-3.0)" in text and "844" in text and "1 h 30 min" in text
    assert "perplexity (lower is better): 1.510" in text
    assert "no card.json" in app.info[0].value
    assert [t.label for t in app.tabs] == ["loss", "NLL per step", "label NLL", "perplexity"]
    charts = app.get("arrow_vega_lite_chart") or app.get("vega_lite_chart")
    assert len(charts) == 4
    assert "No training log" in app.caption[-1].value  # the bare model
    # No server path on the page; the kept step marked on every curve; y fitted to the values.
    shown = " ".join(e.value for e in [*app.caption, *app.markdown])
    assert str(checkpoints) not in shown and "/" not in app.caption[0].value
    assert "step 400, the weights that ship" in shown
    for chart in charts:
        spec = json.loads(chart.proto.spec)
        assert "strokeDash" in chart.proto.spec and "kept: step 400" in str(chart.proto)
        domain = spec["layer"][0]["encoding"]["y"]["scale"]["domain"]
        assert domain[0] > 0  # not from 0
    nll = json.loads(charts[1].proto.spec)["layer"][0]["encoding"]["y"]["scale"]["domain"]
    assert nll[1] < 2.0  # the untrained step 0 (3.6) does not stretch the axis


def test_about_page_explains_controls_and_credits(app):
    app.switch_page("pages/about.py").run()
    assert not app.exception
    text = " ".join(m.value for m in app.markdown)
    for words in ("Temperature", "Stay in scale", "Continue this one", "Top-p", "Beam size"):
        assert words in text
    assert "TimGM6mb" in text and "Nottingham" in text and "GPL-3.0" in text
    # Only the configurations on this server are described, and each source credited once.
    assert "`attention_rnn`" in text and "`basic_rnn`" in text and "mono_rnn" not in text
    assert "as you type" not in text and "when you press *Check notes*" in text
    assert text.count("Nottingham") == 1 and "POP909" not in text
