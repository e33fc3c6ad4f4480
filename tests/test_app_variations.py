"""The Variations and blends page with Streamlit's AppTest and a tiny note_vae model trained
here (the fixtures of test_note_vae): which models it offers, random melodies, variations of
typed notes, a file and a Generate page result, a blend as a row of piano rolls with one
player, and every bad input as one line."""

from __future__ import annotations

import io
import json
import shutil
import wave
import zipfile
from pathlib import Path

import pretty_midi
import pytest
from streamlit.testing.v1 import AppTest
from studio_fixtures import LEAD, VAE, drums_only, make_checkpoints, make_vae_checkpoint, song
from test_note_vae import VELOCITIES

from melodygen import studio
from melodygen.core.generation import GenerationError
from melodygen.io.primer import Primer, parse_primer
from melodygen.render import IN_ORDER_GAP_SECONDS, SAMPLE_RATE

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "variations.py")
GENERATE = str(ROOT / "pages" / "generate.py")
TIMEOUT = 120  # the first run imports TensorFlow and compiles the model's step
TUNE = "C4 E4 G4:2 r:2 | A4 G4 E4:8 | D4:2 E4:2 F4 G4 A4 | G4:16"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    """The two tiny melody_rnn models of the studio tests and a tiny note_vae, trained."""
    root = make_checkpoints(tmp_path_factory.mktemp("checkpoints"))
    make_vae_checkpoint(root, tmp_path_factory.mktemp("vae"))
    return root


def page(checkpoints: Path, monkeypatch, path: str = PAGE) -> AppTest:
    monkeypatch.setenv("MELODYGEN_CHECKPOINTS", str(checkpoints))
    monkeypatch.delenv("MELODYGEN_SOUNDFONT", raising=False)
    at = AppTest.from_file(path, default_timeout=TIMEOUT)
    at.session_state["studio_routed"] = True  # as if app.py had sent the visitor here
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def app(checkpoints, monkeypatch) -> AppTest:
    return page(checkpoints, monkeypatch)


def press(at: AppTest, label: str, **settings) -> AppTest:
    """Set widget values by key, press a button, and check nothing crashed."""
    for key, value in settings.items():
        at.session_state[key] = value
    next(b for b in at.button if b.label == label).click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as reader:
        return reader.getnframes() / SAMPLE_RATE


def test_only_models_that_make_variations_are_offered(app):
    assert app.title[0].value == "Variations and blends"
    assert app.selectbox(key="vary_model").options == ["Folk · vae_tiny (Note VAE)"]
    kinds = app.radio(key="vary_kind").options
    assert kinds == [studio.RANDOM, studio.VARIATIONS, studio.BLEND]
    app.radio(key="vary_kind").set_value(studio.VARIATIONS).run()
    distance = app.select_slider(key="vary_distance")
    assert distance.options[0] == "almost the same (0)"
    assert distance.options[-1] == "loosely related (1)"
    assert distance.value == 0.3  # the library's default distance: close


def test_no_model_that_makes_variations_says_so(tmp_path, monkeypatch):
    make_checkpoints(tmp_path)  # melody_rnn models only
    at = page(tmp_path, monkeypatch)
    assert "No model here makes variations or blends" in at.info[0].value
    assert not at.button


def test_random_melodies_are_seeded_with_players_and_downloads(app):
    press(app, "Make melodies", vary_count=2, vary_seed=5, vary_bpm=90)
    assert not app.error
    result = app.session_state["variation_result"]
    assert len(result.melodies) == 2 and result.item_label == "Melody"
    assert result.request.seed == 5 and result.request.qpm == 90.0
    assert len(app.get("audio")) == 2
    labels = [d.label for d in app.download_button]
    assert labels[0] == "Download all (zip)" and labels.count("MIDI") == 2
    assert labels.count("WAV") == 2
    first = [m.sequence for m in result.melodies]
    press(app, "Make melodies")
    assert [m.sequence for m in app.session_state["variation_result"].melodies] == first
    # Outputs keep the model's velocity classes: the MIDI files carry the accents.
    velocities = {n.velocity for s in first for n in s.notes}
    assert velocities <= set(VELOCITIES) and velocities
    archive = zipfile.ZipFile(io.BytesIO(result.zip("Piano", None)))
    settings = json.loads(archive.read("settings.json"))
    assert settings["request"]["variations_of"] is None and settings["seed"] == 5


def test_variations_of_typed_notes_keep_close_at_a_short_distance(app):
    app.radio(key="vary_kind").set_value(studio.VARIATIONS).run()
    assert "Type a few notes" in app.info[0].value
    press(app, "Make variations", vary_text_1=TUNE, vary_count=3, vary_seed=2)
    assert not app.error
    result = app.session_state["variation_result"]
    assert result.item_label == "Variation" and len(result.melodies) == 3
    assert result.request.variations_of == parse_primer(TUNE)
    assert result.request.distance == 0.3
    assert any("fewer than the 32 the model reads" in c.value for c in app.caption)
    press(app, "Make variations", vary_distance=1.0)
    assert app.session_state["variation_result"].request.distance == 1.0
    # A typo is one line, and nothing is made of it.
    press(app, "Make variations", vary_text_1="C4 H4")
    assert "H4" in app.error[0].value and "\n" not in app.error[0].value
    assert app.error[-1].value.startswith("Fix the melodies first")
    assert app.session_state["variation_result"].request.distance == 1.0  # the last one kept


def test_variations_of_a_file_midi_or_abc_and_bad_files_are_one_line(app):
    app.radio(key="vary_kind").set_value(studio.VARIATIONS).run()
    app.radio(key="vary_source_1").set_value("A file").run()
    assert "Upload a file" in app.info[0].value
    app.file_uploader(key="vary_file_1").upload("song.mid", song(), "audio/midi").run()
    assert not app.exception and not app.error
    assert app.selectbox(key="vary_track_1").value == 2  # the MELODY track, as on Generate
    press(app, "Make variations", vary_bars_1=1, vary_count=2, vary_seed=1)
    assert not app.error
    melody = app.session_state["variation_result"].request.variations_of
    assert isinstance(melody, Primer) and melody.pitches() == list(LEAD[0])

    if shutil.which("abc2midi"):
        tunes = b"X:1\nT:First\nM:4/4\nL:1/4\nK:G\nGABc|d2B2|\n\nX:2\nT:Second\nK:D\nDFA2|\n"
        app.file_uploader(key="vary_file_1").upload("two.abc", tunes, "text/plain").run()
        assert not app.exception and not app.error
        assert any("tune X:1 (First), the first of 2" in c.value for c in app.caption)
        press(app, "Make variations")
        assert not app.error
        melody = app.session_state["variation_result"].request.variations_of
        assert melody.pitches()[:4] == [67, 69, 71, 72]

    for name, data, words in [
        ("drums.mid", drums_only(), "only drums"),
        ("tune.wav", b"RIFF0000WAVE", "recorded sound"),
        ("big.mid", b"MThd" + bytes(studio.MAX_UPLOAD_BYTES), "may be at most 1 MB"),
    ]:
        app.file_uploader(key="vary_file_1").upload(name, data, "audio/midi").run()
        assert not app.exception, name
        assert words in app.error[0].value and "\n" not in app.error[0].value, name
        press(app, "Make variations")
        assert app.error[-1].value.startswith("Fix the melodies first"), name


def test_variations_of_a_generate_page_result_keep_its_dynamics(checkpoints, monkeypatch):
    generate = page(checkpoints, monkeypatch, GENERATE)
    generate.session_state["model"] = VAE
    generate.run()
    press(generate, "Generate", variations=2, seed=4)
    made = generate.session_state["result"]
    assert len(made.melodies) == 2 and not generate.error

    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["studio_routed"] = True
    at.session_state["result"] = made  # the session's Generate page result
    at.run()
    at.radio(key="vary_kind").set_value(studio.VARIATIONS).run()
    at.radio(key="vary_source_1").set_value("A Generate page result").run()
    picker = at.selectbox(key="vary_pick_1")
    assert picker.options == [f"Variation {i} of {VAE}, seed 4" for i in (1, 2)]
    press(at, "Make variations", vary_pick_1=1, vary_distance=0.0, vary_count=2, vary_seed=3)
    assert not at.error
    asked = at.session_state["variation_result"].request.variations_of
    assert asked == made.melodies[1].sequence  # its own timing and velocities, not the grid


def test_a_blend_is_a_row_of_rolls_with_one_player_and_step_downloads(app):
    app.radio(key="vary_kind").set_value(studio.BLEND).run()
    assert [h.value for h in app.subheader] == ["From", "To"]
    assert app.slider(key="vary_steps").min == 3 and app.slider(key="vary_steps").max == 12
    press(app, "Blend", vary_text_1=TUNE, vary_text_2="A4 C5 E5 A5 | G5:8 E5:8", vary_steps=4)
    assert not app.error
    result = app.session_state["variation_result"]
    assert result.item_label == "Step" and len(result.melodies) == 4
    assert len(app.image) == 2 + 4  # the two melodies' rolls, then the row of steps
    assert len(app.get("audio")) == 1  # one player for the whole blend
    labels = [d.label for d in app.download_button]
    assert labels == ["Whole blend (MIDI)", "Whole blend (WAV)"] + ["MIDI", "WAV"] * 4
    steps, whole = result.steps("Piano", app_synth())
    expected = sum(m.sequence.total_time for m in result.melodies) + 3 * IN_ORDER_GAP_SECONDS
    assert whole.seconds == pytest.approx(expected)
    assert wav_seconds(whole.wav) == pytest.approx(expected + 1.0, abs=0.01)  # + the release
    played = pretty_midi.PrettyMIDI(io.BytesIO(whole.midi)).instruments[0].notes
    assert len(played) == sum(len(m.sequence.notes) for m in result.melodies)
    assert [s.stem for s in steps] == [result.stem(i) for i in range(4)]
    # A missing second melody, or too many steps, is one line.
    press(app, "Blend", vary_text_2="")
    assert app.error[-1].value.startswith("Fix the melodies first")
    with pytest.raises(studio.StudioError, match="blend steps must be 3 to 12 melodies"):
        studio.VariationSettings(kind=studio.BLEND, steps=13).to_request(
            parse_primer(TUNE), parse_primer(TUNE)
        )


def app_synth():
    synth, reason = studio.load_synth()
    assert synth is not None, reason
    return synth


def test_the_studio_refuses_variations_of_a_model_that_makes_none(checkpoints):
    model = studio.SharedModel(checkpoints / "pop_basic_rnn")
    request = studio.VariationSettings(kind=studio.VARIATIONS).to_request(parse_primer(TUNE))
    with pytest.raises(GenerationError) as caught:
        studio.make_variations(model, request)
    assert str(caught.value) == (
        "Melody RNN models make no variations of a melody; Note VAE models do"
    )
    with pytest.raises(studio.StudioError, match="variations must be 1 to 8"):
        studio.VariationSettings(count=9).to_request()
    with pytest.raises(studio.StudioError, match="choose the melody to make variations of"):
        studio.VariationSettings(kind=studio.VARIATIONS).to_request()


def test_both_pages_share_one_loader():
    """st.cache_resource keeps one object per function: both pages take pages.common's
    loader and hold none of their own, so one copy of each model serves both pages."""
    for path in (PAGE, GENERATE):
        text = Path(path).read_text()
        imported = text.split("from pages.common import ", 1)[1].splitlines()[0]
        assert "loader" in imported.split(", ")
        assert "@st.cache_resource" not in text
