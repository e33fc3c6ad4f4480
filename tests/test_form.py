"""Forms (AABB, ...): repeats equal their source, sections on bar lines, cadence, errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from test_generate import make_checkpoint

from melodygen.cli import main
from melodygen.core.family import get_family
from melodygen.core.form import (
    FormError,
    check_section_bars,
    form_length_steps,
    parse_form,
    pickup_steps,
    plan_form,
    repeats_hold,
    sounding_pitches,
)
from melodygen.core.generation import GenerationRequest
from melodygen.families.melody_rnn.generate import MelodyGenerator
from melodygen.io.primer import parse_primer
from melodygen.theory import Meter

METERS = [Meter(4, 4), Meter(3, 4), Meter(6, 8)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("form"), "attention_rnn")


@pytest.fixture(scope="module")
def generator(checkpoint) -> MelodyGenerator:
    return MelodyGenerator(checkpoint)


def form_request(form: str, primer: str = "", meter: Meter = METERS[0], **settings):
    parsed = parse_primer(primer or None)
    bars = settings.pop("section_bars", 4)
    length = form_length_steps(form, bars, meter, parsed.events)
    return GenerationRequest(
        primer=parsed,
        length_steps=length,
        time_signature=meter,
        form=form,
        section_bars=bars,
        **{"num_outputs": 3, "seed": 5, "key": 2, **settings},
    )


# Form strings and plans ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("AABB", "AABB"), ("a a b b", "AABB"), ("ab-ac", "ABAC"), ("", "free"), ("Free", "free")],
)
def test_form_strings_are_read(text, expected):
    assert parse_form(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("AXB!", "form 'AXB!' must be letters A-D"),
        ("BA", "brings in B before A"),
        ("ACAB", "brings in C before B"),
        ("AABBAABBA", "at most 8"),
    ],
)
def test_a_bad_form_string_is_one_clear_line(text, words):
    with pytest.raises(FormError) as error:
        parse_form(text)
    assert words in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("value", [5, 0, 16, "8", True])
def test_section_bars_are_4_or_8(value):
    with pytest.raises(FormError, match="section bars must be 4 or 8"):
        check_section_bars(value)


@pytest.mark.parametrize("meter", METERS + [Meter(2, 4)])
@pytest.mark.parametrize("primer", ["", "C4 E4", "r:{late} D4 E4"])
def test_sections_land_on_bar_lines(meter, primer):
    bar = meter.steps_per_bar
    events = parse_primer(primer.format(late=bar - 2) or None).events
    plan = plan_form("AABA", 4, meter, events)
    pickup = bar if "r:" in primer else 0
    assert plan.pickup_steps == pickup == pickup_steps(events, meter)
    assert [s.start for s in plan.sections] == [pickup + i * 4 * bar for i in range(4)]
    assert all(s.start % bar == 0 and s.end - s.start == 4 * bar for s in plan.sections)
    assert plan.total_steps == pickup + 16 * bar
    assert plan.cadence == (plan.sections[0].end - bar, plan.sections[0].end)  # A ends it


def test_a_primer_longer_than_section_a_is_refused():
    with pytest.raises(FormError, match="longer than section A"):
        plan_form("AB", 4, METERS[0], parse_primer("C4:16 D4:16 E4:16 F4:16 G4").events)


# Generation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("meter", METERS)
@pytest.mark.parametrize("primer", ["", "C4 E4 G4", "pickup"])
@pytest.mark.parametrize("form", ["AABB", "ABAB", "AABA", "ABAC", "AAB"])
def test_every_repeat_equals_its_source(generator, meter, primer, form):
    if primer == "pickup":
        primer = f"{meter.numerator}/{meter.denominator} r:{meter.steps_per_bar - 2} D4 E4"
    request = form_request(form, primer, meter, num_outputs=2)
    result = generator.generate(request)
    assert result.form == form
    bar = meter.steps_per_bar
    for melody in result.melodies:
        assert melody.steps == request.length_steps
        assert "".join(s.letter for s in melody.sections) == form
        assert all(s.start % bar == 0 and s.end % bar == 0 for s in melody.sections)
        for section in melody.sections:
            if section.source is None:
                continue
            assert section.kind == "exact" and section.kept == section.end - section.start
            assert repeats_hold(melody.events, section)
            copy = melody.events[section.start + 1 : section.end]
            original = melody.events[section.source + 1 : section.source + section.kept]
            assert copy == original
            sounding = sounding_pitches(melody.events)
            assert (
                sounding[section.start : section.end]
                == sounding[section.source : section.source + section.kept]
            )


def test_varied_repeats_share_their_opening_and_end_anew(generator):
    request = form_request("AABA", "C4 E4 G4", num_outputs=4, vary_repeats=True)
    melodies = generator.generate(request).melodies
    differs = 0
    for melody in melodies:
        for section in melody.sections:
            if section.source is None:
                continue
            assert section.kind == "varied" and section.kept == 2 * 16  # half of 4 bars
            assert repeats_hold(melody.events, section)
            end = melody.events[section.start + section.kept : section.end]
            source_end = melody.events[section.source + section.kept : section.source + 64]
            differs += end != source_end
    assert differs  # the second halves are written anew, not copied


def test_repeats_are_not_checked_as_holding_when_they_differ():
    plan = plan_form("AA", 4, METERS[0])
    events = [60] + [-2] * 63 + [62] + [-2] * 63
    assert not repeats_hold(events, plan.sections[1])
    assert repeats_hold([60] + [-2] * 63 + [60] + [-2] * 63, plan.sections[1])


def test_the_tune_ends_on_the_tonic(generator):
    for key in (0, 2, 9):
        request = form_request("ABAC", "", num_outputs=4, key=key, mode="major")
        for melody in generator.generate(request).melodies:
            assert [e for e in melody.events if e >= 0][-1] % 12 == key


def test_seeds_reproduce_a_form(generator):
    request = form_request("AABB", "C4 D4", num_outputs=2, vary_repeats=True, seed=11)
    first = generator.generate(request).melodies
    again = generator.generate(request).melodies
    assert [m.events for m in first] == [m.events for m in again]
    other = generator.generate(form_request("AABB", "C4 D4", num_outputs=2, seed=12)).melodies
    assert [m.events for m in other] != [m.events for m in first]


def test_the_log_likelihood_counts_the_copied_steps(generator):
    request = form_request("AA", "C4 E4 G4", num_outputs=1)
    melody = generator.generate(request).melodies[0]
    free = generator.generate(
        GenerationRequest(primer=request.primer, length_steps=64, num_outputs=1, seed=5, key=2)
    ).melodies[0]
    assert np.isfinite(melody.log_likelihood)
    assert melody.log_likelihood < free.log_likelihood * 1.5  # 128 steps scored, not 64


def test_leaving_the_primer_out_keeps_the_sections_on_the_output(generator):
    request = form_request("AB", "C4:16 D4:4", num_outputs=1, include_primer=False)
    melody = generator.generate(request).melodies[0]
    assert [(s.start, s.end) for s in melody.sections] == [(0, 48), (48, 112)]
    assert melody.steps == 112


def test_form_requests_refuse_in_one_line():
    primer = parse_primer("C4 E4")
    wrong_length = GenerationRequest(primer=primer, length_steps=128, form="AABB")
    with pytest.raises(FormError, match="lasts 32 bars of 4/4, but the length asked is 8 bars"):
        wrong_length.validate()
    beam = form_request("AB", "C4", beam_size=2)
    with pytest.raises(FormError, match="beam search cannot follow form AB"):
        beam.validate()
    with pytest.raises(FormError, match="section bars must be 4 or 8"):
        GenerationRequest(section_bars=5).validate()
    vae = get_family("note_vae")
    assert not vae.follows_form() and get_family("melody_rnn").follows_form()
    with pytest.raises(FormError, match="Note VAE models cannot follow a form"):
        form_request("AABB").check_family(vae)
    form_request("AABB").check_family(get_family("melody_rnn"))


# The command line -----------------------------------------------------------------------------


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_form_writes_the_sections(checkpoint, tmp_path: Path, capsys):
    base = ["generate", "--checkpoint", str(checkpoint), "--out", str(tmp_path), "--seed", "3"]
    code, out, err = run_cli(
        [*base, "--form", "AABA", "--section-bars", "4", "--vary-repeats", "--primer", "C4 E4"],
        capsys,
    )
    assert code == 0, err
    assert "form: A bars 1-4, A' bars 5-8 (varied repeat), B bars 9-12" in out
    assert "(256 steps" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--form", "AXB!"], "form 'AXB!' must be letters A-D"),
        (["--form", "AABB", "--section-bars", "5"], "section bars must be 4 or 8 (got 5)"),
        (["--form", "AABB", "--bars", "8"], "ask for 32 bars"),
        (["--vary-repeats"], "go with --form"),
        (["--form", "AB", "--beam-size", "3"], "beam search cannot follow"),
    ],
)
def test_cli_form_errors_are_one_line(checkpoint, tmp_path: Path, capsys, argv, message):
    base = ["generate", "--checkpoint", str(checkpoint), "--out", str(tmp_path)]
    code, _, err = run_cli([*base, *argv], capsys)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("usage")]
    assert code == 2 and message in err and "Traceback" not in err
    assert len([line for line in lines if "error" in line]) == 1


def test_cli_refuses_a_form_to_a_family_that_cannot_follow_one(tmp_path: Path, capsys):
    vae = Path(__file__).parents[1] / "checkpoints" / "folk_note_vae"
    base = ["generate", "--checkpoint", str(vae), "--out", str(tmp_path)]
    code, _, err = run_cli([*base, "--form", "AABB"], capsys)
    assert code == 2 and "Note VAE models cannot follow a form (AABB)" in err
    assert len(err.strip().splitlines()) == 1


# Piano roll and score ------------------------------------------------------------------------


def formed_melody(meter: Meter = METERS[2]):
    from melodygen.core.generation import GeneratedMelody

    plan = plan_form("AABA", 4, meter, [], vary_repeats=True)
    bar = [67, -2, -2, 69, -2, -2, 71] + [-2] * (meter.steps_per_bar - 7)
    return GeneratedMelody(
        events=bar * 16, primer_steps=0, log_likelihood=0.0, qpm=120, meter=meter, key=7,
        sections=plan.sections,
    )  # fmt: skip


def test_the_piano_roll_marks_each_section():
    from melodygen.render import piano_roll

    melody = formed_melody()
    figure = piano_roll(melody)
    ax = figure.axes[0]
    letters = [t.get_text().strip() for t in ax.texts if (t.get_gid() or "").startswith("section")]
    assert letters == ["A", "A'", "B", "A'"]
    lines = next(c for c in ax.collections if c.get_gid() == "sections")
    assert len(lines.get_segments()) == 4
    plain = piano_roll(melody.events, meter=melody.meter)
    assert not [t for t in plain.axes[0].texts if (t.get_gid() or "").startswith("section")]


def test_the_score_carries_rehearsal_marks_and_the_abc_the_letters():
    from melodygen import notation

    melody = formed_melody()
    xml = notation.musicxml_bytes(melody).decode()
    marks = re.findall(
        r"<measure number=\"(\d+)\">(?:(?!</measure>).)*<rehearsal>([^<]*)<", xml, re.S
    )
    assert marks == [("1", "A"), ("5", "A'"), ("9", "B"), ("13", "A'")]
    assert xml.count("light-light") == 3
    abc = notation.abc_text(melody)
    body = abc.split("K:G\n")[1]
    bars = body.replace("\n", " ").split("|")
    assert [i for i, bar in enumerate(bars) if '"^' in bar] == [0, 4, 8, 12]
    assert '"^B"' in bars[8]


# The studio ------------------------------------------------------------------------------------


def test_studio_settings_ask_for_a_form_only_of_a_family_that_follows_one():
    from types import SimpleNamespace

    from melodygen import studio

    rnn = studio.request_options(SimpleNamespace(family=get_family("melody_rnn")))
    vae = studio.request_options(SimpleNamespace(family=get_family("note_vae")))
    assert "form" in studio.controls(rnn) and "form" not in studio.controls(vae)
    settings = studio.StudioSettings(form="AABB", section_bars=4, bars=8, seed=1)
    primer = parse_primer("3/4 r:8 D4 E4")
    request = settings.to_request(primer, rnn)
    assert (request.form, request.section_bars) == ("AABB", 4)
    assert request.length_steps == 17 * 12  # the pickup bar and 4 x 4 bars of 3/4
    assert "AABB of 4-bar sections, 16 bars of 3/4 after a pickup bar" in settings.form_words(
        primer
    )
    assert settings.to_request(primer, vae).form == "free"  # hidden controls: no form
    with pytest.raises(FormError, match="longer than section A"):
        settings.to_request(parse_primer("C4:16 C4:16 C4:16 C4:16 C4:16"), rnn)


def test_the_generate_page_form_controls_make_sections(tmp_path_factory, monkeypatch):
    from streamlit.testing.v1 import AppTest
    from studio_fixtures import make_checkpoints

    checkpoints = make_checkpoints(tmp_path_factory.mktemp("studio"))
    monkeypatch.setenv("MELODYGEN_CHECKPOINTS", str(checkpoints))
    monkeypatch.delenv("MELODYGEN_SOUNDFONT", raising=False)
    app = AppTest.from_file(str(Path(__file__).parents[1] / "app.py"), default_timeout=120)
    app.run()
    assert not app.exception
    choices = ["Free (no form)", "AABB", "ABAB", "AABA", "ABAC", "AAB"]
    assert app.selectbox(key="form").options == choices
    app.selectbox(key="form").set_value("AABA")
    app.selectbox(key="section_bars").set_value(4)
    app.toggle(key="vary_repeats").set_value(True)
    app.session_state["variations"] = 2
    app.session_state["seed"] = 4
    next(b for b in app.button if b.label == "Generate").click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error, [e.value for e in app.error]
    result = app.session_state["result"]
    assert result.request.form == "AABA" and result.request.vary_repeats
    for melody in result.melodies:
        assert [s.letter for s in melody.sections] == list("AABA")
        assert [s.kind for s in melody.sections] == ["new", "varied", "new", "varied"]
        assert melody.steps == 16 * 16
        assert all(repeats_hold(melody.events, s) for s in melody.sections)
    captions = " ".join(c.value for c in app.caption)
    assert "Form AABA: A bars 1-4, A' bars 5-8 (varied repeat), B bars 9-12" in captions
    assert "AABA of 4-bar sections, 16 bars of 4/4" in captions


def test_midi_files_carry_the_sections_as_markers(tmp_path: Path):
    import mido
    import pretty_midi

    melody = formed_melody()
    path = melody.write_midi(tmp_path / "formed.mid")
    midi = mido.MidiFile(path)
    markers, now = [], 0
    for message in midi.tracks[0]:
        now += message.time
        if message.type == "marker":
            markers.append((message.text, now / midi.ticks_per_beat))
    beats_per_section = 4 * 12 / 4  # four bars of 6/8, in quarter notes
    assert markers == [(m, i * beats_per_section) for i, m in enumerate(["A", "A'", "B", "A'"])]
    notes = pretty_midi.PrettyMIDI(str(path)).instruments[0].notes
    assert [note.pitch for note in notes] == melody.pitches()  # the notes are untouched
