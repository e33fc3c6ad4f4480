"""The studio's sheet music and its ABC models, without Streamlit: scores, ABC and MusicXML
for every variation (and the primer), the zip, the controls a family's request options
show, a tune that cannot be read, and "sample again"."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pytest
from abc_fixtures import OPENING, make_abc_checkpoint
from studio_fixtures import make_checkpoints

from melodygen import studio
from melodygen.core.family import Family, get_family
from melodygen.io.primer import Primer, parse_primer

needs_abc2midi = pytest.mark.skipif(shutil.which("abc2midi") is None, reason="needs abc2midi")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    folder = make_checkpoints(tmp_path_factory.mktemp("checkpoints"))
    make_abc_checkpoint(folder)
    return folder


@pytest.fixture(scope="module")
def folk(root) -> studio.SharedModel:
    return studio.SharedModel(root / "folk_attention_rnn", name="folk_attention_rnn")


@pytest.fixture(scope="module")
def abc(root) -> studio.SharedModel:
    return studio.SharedModel(root / "folk_abc_char", name="folk_abc_char")


def test_families_say_which_controls_the_studio_shows(root):
    entries = {entry.name: entry for entry in studio.discover_models(root)}
    notes = studio.controls(studio.request_options(entries["folk_attention_rnn"]))
    text = studio.controls(studio.request_options(entries["folk_abc_char"]))
    assert {"primer", "in_scale", "beam", "pitch_range", "key", "meter"} <= notes
    assert not {"rhythm", "title", "abc_primer"} & notes
    assert {"rhythm", "title", "abc_primer", "key", "meter", "bpm", "temperature"} <= text
    assert not {"primer", "in_scale", "beam", "pitch_range"} & text
    assert get_family("melody_rnn").request_options() == Family.NOTE_OPTIONS  # the default


def test_hidden_controls_are_not_sent(abc, folk):
    settings = studio.StudioSettings(
        in_scale=True, beam_size=4, min_pitch=60, rhythm="reel", title="T", abc_primer="K:G\n"
    )
    primer = parse_primer("C4 E4 G4")
    for_abc = settings.to_request(primer, studio.request_options(abc))
    assert (for_abc.rhythm, for_abc.title, for_abc.text_primer) == ("reel", "T", "K:G\n")
    assert not for_abc.primer.events and not for_abc.in_scale and for_abc.beam_size == 1
    assert for_abc.min_pitch == 0 and for_abc.time_signature is None  # the model's own M:
    for_notes = settings.to_request(primer, studio.request_options(folk))
    assert for_notes.primer.events and for_notes.in_scale and for_notes.beam_size == 4
    assert (for_notes.rhythm, for_notes.title, for_notes.text_primer) == (None, None, None)


def test_every_variation_has_a_score_abc_and_musicxml(folk):
    request = studio.StudioSettings(key="D", mode="minor", meter="3/4", bars=4, variations=2)
    result = studio.generate(folk, request.to_request(parse_primer("D4 F4 A4")))
    files = result.files("Piano", None)
    for item in files:
        assert item.svg.startswith("<svg") and item.svg.count('class="note"') > 3
        assert "K:Dm" in item.abc and "M:3/4" in item.abc
        assert b"<fifths>-1</fifths>" in item.musicxml and b"<beats>3</beats>" in item.musicxml
        assert item.problem is None and item.notation_problem is None and item.text is None
    names = zipfile.ZipFile(io.BytesIO(result.zip("Piano", None))).namelist()
    for suffix in ("abc", "musicxml", "mid", "png"):
        assert sum(name.endswith(f".{suffix}") for name in names) == 2, suffix
    assert result.continuable


def test_primer_score():
    svg = studio.primer_svg(parse_primer("3/4 D4 F4 A4 | D5:12"), qpm=90)
    assert svg.count('class="note"') == 4 and svg.count('class="measure"') == 2
    with pytest.raises(studio.MelodyGenError):
        studio.primer_svg(Primer(events=[]))


@needs_abc2midi
def test_abc_model_tunes_have_their_text_score_and_files(abc):
    settings = studio.StudioSettings(
        meter="6/8", key="G", rhythm="jig", title="New jig", abc_primer=OPENING, variations=2
    )
    options = studio.request_options(abc)
    result = studio.generate(abc, settings.to_request(Primer(events=[]), options))
    assert not result.continuable  # an ABC model reads no note primer
    for item in result.files("Piano", None):
        assert item.text.startswith("T:New jig\nM:6/8\n") and item.text.endswith(OPENING)
        assert item.abc == "X:1\n" + item.text  # its own text, not written again
        # Engraved from its text: the repeat is a sign, not its 19 notes written twice.
        assert item.svg.count('class="note"') == item.musicxml.count(b"<pitch>") == 19
        assert b'<repeat direction="backward"' in item.musicxml
        assert item.midi
        assert b"<fifths>1</fifths>" in item.musicxml and item.png


@needs_abc2midi
def test_a_tune_that_cannot_be_read_shows_its_text_and_reason_and_samples_again(abc):
    settings = studio.StudioSettings(variations=2, seed=5)
    options = studio.request_options(abc)
    result = studio.generate(abc, settings.to_request(Primer(events=[]), options))
    files = result.files("Piano", None)
    for item in files:
        assert "header but no music" in item.problem and "\n" not in item.problem
        assert item.text.startswith("T:") and item.abc.startswith("X:1\nT:")
        assert (item.png, item.midi, item.wav, item.svg, item.musicxml) == (None,) * 5
    names = zipfile.ZipFile(io.BytesIO(result.zip("Piano", None))).namelist()
    assert sorted(Path(n).suffix for n in names) == [".abc", ".abc", ".json"]
    again = studio.sample_again(result)
    assert again.seed != result.seed and again.num_outputs == 2
    assert studio.generate(abc, again).seed == again.seed
