"""The studio holds any model family: a second one, defined in tests/toy_family.py and
registered here, shows in the catalog and generates, plays and downloads through the same
studio functions as the Melody RNNs, with nothing in MelodyGen changed for it."""

from __future__ import annotations

import io
import json
import wave
import zipfile
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from studio_fixtures import make_checkpoints
from toy_family import NAME, ToyFamily, ToyInfo

from melodygen import studio
from melodygen.core import family as family_registry
from melodygen.core.checkpoint import save_model
from melodygen.core.generation import GeneratedMelody
from melodygen.errors import MelodyGenError
from melodygen.io.music import note_seq
from melodygen.io.primer import Primer
from melodygen.render import figure_png, piano_roll

TOY = "folk_toy"
ODD = "odd_family"


@pytest.fixture(scope="module")
def toy_family():
    """The toy family, registered for this module's tests only."""
    family_registry.families()  # the built-in ones first, as an installation has them
    patch = pytest.MonkeyPatch()
    family = ToyFamily()
    patch.setitem(family_registry._REGISTRY, NAME, family)
    yield family
    patch.undo()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, toy_family) -> Path:
    """Two Melody RNNs, a toy model without a card, and a model of a family nobody has."""
    root = make_checkpoints(tmp_path_factory.mktemp("checkpoints"))
    info = ToyInfo()
    save_model(root / TOY, toy_family.build_network(info), info)
    odd = root / ODD
    odd.mkdir()
    values = {**info.to_dict(), "family": "abc_someday"}
    (odd / "melodygen.json").write_text(json.dumps(values))
    (odd / "model.weights.h5").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def toy_model(checkpoints) -> studio.SharedModel:
    return studio.SharedModel(checkpoints / TOY, name=TOY)


def test_catalog_lists_every_family_with_its_title(checkpoints):
    entries = {entry.name: entry for entry in studio.discover_models(checkpoints)}
    assert set(entries) == {"folk_attention_rnn", "pop_basic_rnn", TOY, ODD}

    toy = entries[TOY]
    assert (toy.family, toy.family_name, toy.kind) == ("Toy bigram", NAME, "Toy bigram")
    assert toy.config == "Toy bigram"  # no configurations: named by its family's description
    assert toy.description == "Toy bigram: no model card"
    assert (toy.style, toy.model_problem, toy.problems) == ("custom", None, ("no card.json",))
    model_rows = studio.card_facts(toy)["Model"]
    assert model_rows[0] == ("family", "Toy bigram")
    assert not any(label == "configuration" for label, _ in model_rows)
    assert dict(model_rows)["size"].endswith(" weights")

    folk = entries["folk_attention_rnn"]
    assert folk.label == "Folk · attention_rnn"
    assert folk.kind == "Melody RNN · attention_rnn"
    rows = dict(studio.card_facts(folk)["Model"])
    assert rows["family"] == "Melody RNN" and rows["configuration"] == "attention_rnn"
    assert rows["layers"] == "8 LSTM" and rows["attention"] == "over the last 4 steps"

    # Kinds of model described for the help page, each in its family's words.
    designs = dict(studio.model_designs(list(entries.values())))
    assert set(designs) == {"attention_rnn", "basic_rnn", "Toy bigram"}
    assert designs["Toy bigram"] == ToyFamily.summary
    assert "look back" in designs["attention_rnn"]


def test_a_model_of_an_unknown_family_is_listed_as_not_loadable(checkpoints):
    odd = next(e for e in studio.discover_models(checkpoints) if e.name == ODD)
    assert odd.info == {} and odd.family == "" and odd.facts == ()
    assert "unknown model family 'abc_someday'" in odd.model_problem
    assert "\n" not in odd.model_problem and str(checkpoints) not in odd.model_problem
    assert odd.model_problem in odd.problems
    assert list(studio.card_facts(odd)) == ["Model"]
    with pytest.raises(MelodyGenError, match="unknown model family") as caught:
        studio.SharedModel(checkpoints / ODD)
    assert "\n" not in str(caught.value)


def test_a_toy_model_generates_and_renders_through_the_studio(toy_model, checkpoints):
    assert (toy_model.description, toy_model.config, toy_model.home_key) == (
        "Toy bigram",
        "Toy bigram",
        None,
    )
    toy_model.warm_up(2)
    settings = studio.StudioSettings(bars=2, bpm=100, variations=2, seed=3, meter="3/4")
    result = studio.generate(toy_model, settings.to_request(Primer(events=[])))
    assert len(result.melodies) == 2 and result.model_key is None and result.key is None
    assert all(melody.steps == 24 for melody in result.melodies)  # 2 bars of 3/4

    synth, _ = studio.load_synth()
    files = result.files("Flute", synth)
    assert [item.index for item in files] == [0, 1]
    for item, melody in zip(files, result.melodies, strict=True):
        assert item.stem.startswith(f"melodygen_{TOY}_")
        assert item.png.startswith(b"\x89PNG")
        midi = pretty_midi.PrettyMIDI(io.BytesIO(item.midi))
        assert [note.pitch for note in midi.instruments[0].notes] == melody.pitches()
        assert midi.instruments[0].program == 73  # the flute
        assert midi.time_signature_changes[0].numerator == 3
        if synth is not None:
            with wave.open(io.BytesIO(item.wav)) as audio:
                assert audio.getnframes() > 0
        else:
            assert item.wav is None
    with zipfile.ZipFile(io.BytesIO(result.zip("Flute", synth))) as archive:
        settings_json = json.loads(archive.read("settings.json"))
        assert settings_json["model"] == TOY and settings_json["seed"] == 3
        assert sum(name.endswith(".mid") for name in archive.namelist()) == 2

    follow = studio.continuation(result, 0)
    assert follow.key is None and follow.meter == "3/4" and follow.bars == 6
    assert studio.primer_notices(toy_model, Primer(events=[60, -2]), settings) == []


def test_a_family_s_own_sequence_is_what_is_heard_and_written():
    """A family finer than the grid (triplets, velocities) passes its NoteSequence as the
    melody's source: MIDI and audio come from it, the piano roll from its grid events."""
    sequence = note_seq.NoteSequence()
    sequence.tempos.add(qpm=120)
    third = 0.5 / 3  # eighth-note triplets at 120 BPM
    for index, (pitch, velocity) in enumerate([(60, 40), (62, 80), (64, 120)]):
        sequence.notes.add(
            pitch=pitch, velocity=velocity, start_time=index * third, end_time=(index + 1) * third
        )
    sequence.total_time = 1.0
    melody = GeneratedMelody.from_sequence(sequence, log_likelihood=-3.0)

    midi = pretty_midi.PrettyMIDI(io.BytesIO(studio.midi_bytes(melody, "Flute")))
    notes = midi.instruments[0].notes
    assert [n.velocity for n in notes] == [40, 80, 120]
    assert notes[1].start == pytest.approx(third, abs=1e-3)  # off the sixteenth-note grid
    assert figure_png(piano_roll(melody)).startswith(b"\x89PNG")

    synth, _ = studio.load_synth()
    if synth is None:
        pytest.skip("no FluidSynth here: the audio half is not checked")
    heard = synth.render(melody, program=73)
    assert np.array_equal(heard, synth.render(melody.to_note_sequence(), program=73))
    assert not np.array_equal(heard, synth.render(melody.events, program=73))  # the grid's


def test_the_pages_show_and_play_a_toy_model_like_any_other(checkpoints, monkeypatch):
    """Generate, Models and About and help, with the toy family's model picked."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv(studio.CHECKPOINTS_ENV, str(checkpoints))
    monkeypatch.delenv("MELODYGEN_SOUNDFONT", raising=False)
    app = str(Path(__file__).resolve().parent.parent / "app.py")
    at = AppTest.from_file(app, default_timeout=120).run()
    assert not at.exception
    assert (at.selectbox(key="style").value, at.selectbox(key="model").value) == ("custom", TOY)
    assert at.caption[0].value == "Toy bigram: no model card"
    for key, value in {"bars": 2, "variations": 2, "seed": 4}.items():
        at.session_state[key] = value
    next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.exception, [e.value for e in at.exception]
    result = at.session_state["result"]
    assert result.model_name == TOY and len(result.melodies) == 2
    assert not at.error
    # a piano roll, a score and a player each
    assert len(at.image) == 4 and len(at.get("audio")) == 2
    assert [d.label for d in at.download_button] == ["Download all (zip)"] + [
        "MIDI",
        "WAV",
        "ABC",
        "MusicXML",
    ] * 2

    at.selectbox(key="model").set_value(ODD).run()
    assert not at.exception
    assert any("unknown model family" in e.value for e in at.error), [e.value for e in at.error]
    assert not any(str(checkpoints) in e.value for e in at.error)

    at.switch_page("pages/models.py").run()
    assert not at.exception
    assert "Custom · Toy bigram" in [h.value for h in at.subheader]
    text = " ".join(m.value for m in at.markdown)
    assert f"Toy bigram · `{TOY}`" in text and "family: Toy bigram" in text
    assert "Melody RNN · attention_rnn · `folk_attention_rnn`" in text
    assert any("cannot be loaded" in e.value for e in at.error)

    at.switch_page("pages/about.py").run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert f"`Toy bigram`: {ToyFamily.summary}" in text and "`attention_rnn`" in text
