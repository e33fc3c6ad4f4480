"""Tests for melodygen.io.primer: the typed note syntax, event lists, and MIDI primers.

MIDI fixtures are written with pretty_midi (or mido, for tempo changes) under tmp_path.
At 120 qpm a sixteenth-note step lasts 0.125 s; a 4/4 bar is 16 steps.
"""

from __future__ import annotations

from pathlib import Path

import mido
import pretty_midi
import pytest

from melodygen.errors import InputFileError, MelodyGenError
from melodygen.io import primer as primer_module
from melodygen.io.music import NoteSequence, note_seq
from melodygen.io.primer import (
    MAX_TYPED_STEPS,
    STEPS_PER_QUARTER,
    Primer,
    PrimerError,
    TrackInfo,
    events_to_note_names,
    midi_primer,
    midi_tracks,
    parse_event_primer,
    parse_note_primer,
    parse_primer,
    unsupported_file_reason,
)
from melodygen.theory import Meter

OFF = -1
NO = -2
STEP = 0.125  # seconds per sixteenth at 120 qpm

Note = tuple[int, int, int]  # (pitch, start step, end step)


def hold(steps: int) -> list[int]:
    return [NO] * steps


def notes_of(pitches: list[int], length: int = 3, every: int = 4, start: int = 0) -> list[Note]:
    """One note per ``every`` steps, each ``length`` steps long."""
    return [(p, start + every * i, start + every * i + length) for i, p in enumerate(pitches)]


def write_midi(
    path: Path,
    tracks: list[tuple[str, list[Note]]],
    *,
    programs: list[int] | None = None,
    drums: list[Note] | None = None,
    drums_first: bool = False,
    qpm: float = 120.0,
) -> Path:
    """One named instrument per track (program 0 unless given), plus an optional drum kit."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=qpm)
    step = 60.0 / qpm / STEPS_PER_QUARTER
    instruments = []
    for index, (name, notes) in enumerate(tracks):
        program = programs[index] if programs else 0
        instrument = pretty_midi.Instrument(program=program, name=name)
        for pitch, start, end in notes:
            instrument.notes.append(pretty_midi.Note(100, pitch, start * step, end * step))
        instruments.append(instrument)
    if drums is not None:
        kit = pretty_midi.Instrument(program=0, is_drum=True, name="Drums")
        for pitch, start, end in drums:
            kit.notes.append(pretty_midi.Note(100, pitch, start * step, end * step))
        instruments.insert(0 if drums_first else len(instruments), kit)
    midi.instruments.extend(instruments)
    midi.write(str(path))
    return path


def write_midi_with_tempo_change(
    path: Path, tracks: list[list[Note]], tempos: list[tuple[int, float]]
) -> Path:
    """A type-1 file written with mido; ``tempos`` are (step, qpm) pairs, steps in sixteenths."""
    ticks_per_step = 120  # 480 ticks per quarter
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    meta = mido.MidiTrack()
    now = 0
    for step, qpm in tempos:
        tick = step * ticks_per_step
        meta.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(qpm), time=tick - now))
        now = tick
    midi.tracks.append(meta)
    for channel, notes in enumerate(tracks):
        events = []
        for pitch, start, end in notes:
            events.append((start * ticks_per_step, 1, pitch, 100))
            events.append((end * ticks_per_step, 0, pitch, 0))
        track = mido.MidiTrack()
        now = 0
        for tick, _, pitch, velocity in sorted(events):
            track.append(
                mido.Message(
                    "note_on", channel=channel, note=pitch, velocity=velocity, time=tick - now
                )
            )
            now = tick
        midi.tracks.append(track)
    midi.save(str(path))
    return path


# --------------------------------------------------------------------------------------
# Primer
# --------------------------------------------------------------------------------------


def test_primer_steps_and_pitches():
    primer = Primer(events=[60, NO, OFF, 62, 62, NO])
    assert primer.steps == 6
    assert primer.pitches() == [60, 62, 62]
    assert primer.qpm is None and primer.description == ""
    assert Primer(events=[]).steps == 0


def test_primer_error_is_a_melodygen_error():
    assert issubclass(PrimerError, MelodyGenError)


# --------------------------------------------------------------------------------------
# Note syntax
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Default duration: a quarter note (note-on + 3 no-events).
        ("C4", [60, NO, NO, NO]),
        ("C4 D4 E4", [60, *hold(3), 62, *hold(3), 64, *hold(3)]),
        # Letters are case-insensitive.
        ("c4 e4", [60, *hold(3), 64, *hold(3)]),
        # Durations in sixteenth steps.
        ("C4:1", [60]),
        ("C4:2 D4:2", [60, NO, 62, NO]),
        ("G4:8", [67, *hold(7)]),
        ("C4:16", [60, *hold(15)]),
        ("C4:04", [60, *hold(3)]),
        # Rests: a note-off only when a note sounds.
        ("C4 r", [60, *hold(3), OFF, *hold(3)]),
        ("C4 R:2 D4", [60, *hold(3), OFF, NO, 62, *hold(3)]),
        ("r C4", [*hold(4), 60, *hold(3)]),
        ("r:2 C4:2", [NO, NO, 60, NO]),
        ("C4 r r:2", [60, *hold(3), OFF, *hold(3), *hold(2)]),
        ("r", hold(4)),
        # Holds: one more quarter each, after a note or a rest.
        ("C4 -", [60, *hold(7)]),
        ("C4 - - -", [60, *hold(15)]),
        ("C4 --", [60, *hold(11)]),
        ("C4:2 -", [60, *hold(5)]),
        ("C4 r - D4", [60, *hold(3), OFF, *hold(7), 62, *hold(3)]),
        ("r - C4", [*hold(8), 60, *hold(3)]),
        # Repeated pitches are separate attacks.
        ("C4 C4", [60, *hold(3), 60, *hold(3)]),
        ("C4:1 C4:1 C4:1", [60, 60, 60]),
        # Accidentals: sharps, flats, doubles.
        ("C#4", [61, *hold(3)]),
        ("Bb3", [58, *hold(3)]),
        ("bb3", [58, *hold(3)]),  # lower-case letter b, then a flat
        ("b3", [59, *hold(3)]),
        ("F##4", [67, *hold(3)]),
        ("Ebb5", [74, *hold(3)]),
        ("Cb4", [59, *hold(3)]),  # crosses down into octave 3
        ("B#3", [60, *hold(3)]),
        # Extreme octaves.
        ("C-1", [0, *hold(3)]),
        ("C#-1:1", [1]),
        ("G9", [127, *hold(3)]),
        ("C9:1", [120]),
        # Bar lines anywhere, commas, mixed separators.
        ("C4 D4 | E4 F4", [60, *hold(3), 62, *hold(3), 64, *hold(3), 65, *hold(3)]),
        ("|C4|D4|", [60, *hold(3), 62, *hold(3)]),
        ("C4,D4 , E4", [60, *hold(3), 62, *hold(3), 64, *hold(3)]),
        ("C4:2,|,D4:2", [60, NO, 62, NO]),
        ("  C4\tD4\nE4  ", [60, *hold(3), 62, *hold(3), 64, *hold(3)]),
    ],
)
def test_note_syntax(text, expected):
    primer = parse_note_primer(text)
    assert primer.events == expected
    assert primer.qpm is None


def test_note_syntax_example_from_the_docs():
    events = parse_note_primer("C4 E4 G4:2 r:2 | C5 - -").events
    assert events == [60, *hold(3), 64, *hold(3), 67, NO, OFF, NO, 72, *hold(11)]
    assert len(events) == 24


def test_note_syntax_description_counts_notes():
    assert parse_note_primer("C4 D4 r E4 F4").description == "4 notes typed"
    assert parse_note_primer("C4").description == "1 note typed"
    assert parse_note_primer("r").description == "0 notes typed"


@pytest.mark.parametrize("text", ["", "   ", "|", "| , |"])
def test_note_syntax_without_tokens_is_empty(text):
    assert parse_note_primer(text).events == []


def test_note_syntax_events_are_a_valid_melody():
    events = parse_note_primer("r C4 r r:2 D4:1 - E4 r").events
    assert list(note_seq.Melody(events)) == events


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("C4 H4", ["'H4'", "token 2", "C4, F#3"]),
        ("C10", ["'C10'", "token 1", "octave 10", "-1 to 9"]),
        ("C4 D4 Cx4", ["'Cx4'", "token 3", "##"]),
        ("C-2", ["'C-2'", "octave -2"]),
        ("G#9", ["'G#9'", "MIDI pitch 128", "0 (C-1) to 127 (G9)"]),
        ("Cb-1", ["'Cb-1'", "MIDI pitch -1"]),
        ("C###4", ["'C###4'", "not a note"]),
        ("C#b4", ["'C#b4'", "not a note"]),
        ("C", ["'C'", "not a note"]),
        ("C4:0", ["'C4:0'", "token 1", "0 steps"]),
        ("r:0", ["'r:0'", "0 steps"]),
        ("C4 E4:x", ["'E4:x'", "token 2", "whole number"]),
        ("C4:", ["'C4:'", "whole number"]),
        ("C4:1.5", ["'C4:1.5'", "whole number"]),
        ("C4:-2", ["'C4:-2'", "whole number"]),
        ("C4:2:2", ["'C4:2:2'", "whole number"]),
        ("- C4", ["'-'", "token 1", "none before it"]),
        ("| - C4", ["'-'", "token 1"]),
        ("-:2", ["'-:2'", "not a note"]),
        ("60 62 64", ["'60'", "brackets", "[60, -2, 62, -1]"]),
        ("hello world", ["'hello'", "token 1", "C4, F#3", "3/4 first"]),
        ("(60, 62)", ["'(60'", "token 1"]),
        (f"C4:{MAX_TYPED_STEPS + 1}", ["token 1", f"{MAX_TYPED_STEPS} steps"]),
        ("C4:99999999999999999999", ["token 1", "longer than"]),
    ],
)
def test_note_syntax_errors(text, fragments):
    with pytest.raises(PrimerError) as caught:
        parse_note_primer(text)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_note_syntax_length_limit_counts_holds():
    whole_notes = " ".join(["C4:16"] * (MAX_TYPED_STEPS // 16))
    assert parse_note_primer(whole_notes).steps == MAX_TYPED_STEPS
    with pytest.raises(PrimerError, match="longer than"):
        parse_note_primer(whole_notes + " -")


# --------------------------------------------------------------------------------------
# Event lists
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[60, -2, 62, -1]", [60, -2, 62, -1]),
        ("[60,-2,62,-1]", [60, -2, 62, -1]),
        ("  [ 60 -2 62 -1 ]  ", [60, -2, 62, -1]),
        ("[60, -2, 62, -1,]", [60, -2, 62, -1]),
        ("[0, 127]", [0, 127]),
        ("[+60]", [60]),
        ("[60, -1, -1, -2, 60]", [60, -1, -1, -2, 60]),
        # Leading note-offs become no-events, as note_seq.Melody does.
        ("[-1, 60, -1]", [-2, 60, -1]),
        ("[-1, -2, -1, 62]", [-2, -2, -2, 62]),
        ("[-1]", [-2]),
    ],
)
def test_event_list(text, expected):
    primer = parse_event_primer(text)
    assert primer.events == expected
    assert primer.qpm is None


@pytest.mark.parametrize(
    "events", [[-1, 60, -1], [-1, -2, -1, 62, -1, -1], [-1], [-2, -1], [60, -1, -2, -1]]
)
def test_event_list_matches_note_seq_melody(events):
    text = "[" + ", ".join(map(str, events)) + "]"
    assert parse_event_primer(text).events == list(note_seq.Melody(events))


def test_event_list_description():
    assert parse_event_primer("[60, -2, 62, -1]").description == "2 notes given as events"
    assert parse_event_primer("[-2]").description == "0 notes given as events"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("[]", ["empty", "'none'"]),
        ("[ , ]", ["empty"]),
        ("[60, 128]", ["event 2", "128", "out of range"]),
        ("[60, -2, -3]", ["event 3", "-3", "out of range"]),
        ("[60, x]", ["event 2", "'x'", "whole number"]),
        ("[60, 1.5]", ["event 2", "'1.5'"]),
        ("[60,, 62]", ["event 2", "whole number"]),
        ("[[60]]", ["event 1", "'[60]'"]),
        ("[60, 62", ["closing ']'"]),
        ("60, 62]", ["square brackets"]),
    ],
)
def test_event_list_errors(text, fragments):
    with pytest.raises(PrimerError) as caught:
        parse_event_primer(text)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


# --------------------------------------------------------------------------------------
# parse_primer dispatch
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, "", "   ", "none", "None", " NONE "])
def test_parse_primer_empty(text):
    primer = parse_primer(text)
    assert primer.events == [] and primer.steps == 0
    assert primer.description == "no primer"


def test_parse_primer_dispatch():
    assert parse_primer("[60, -2, 62, -1]").events == [60, -2, 62, -1]
    assert parse_primer("  [-1, 60]").events == [-2, 60]
    assert parse_primer("C4 D4:2").events == [60, NO, NO, NO, 62, NO]
    assert parse_primer("r:2").events == [NO, NO]


@pytest.mark.parametrize("text", ["[]", "[60, 200]", "[60", "H4", "60 62", "C4 :"])
def test_parse_primer_errors(text):
    with pytest.raises(PrimerError):
        parse_primer(text)


# --------------------------------------------------------------------------------------
# events_to_note_names
# --------------------------------------------------------------------------------------


def test_events_to_note_names():
    assert events_to_note_names([]) == ""
    assert events_to_note_names([60, NO, NO, NO]) == "C4"
    assert events_to_note_names([60, NO, OFF, NO, 61, NO, NO, NO, NO, NO]) == "C4:2 r:2 C#4:6"
    assert events_to_note_names([NO, NO, 0, 127]) == "r:2 C-1:1 G9:1"
    # A bar line where a note or rest starts on a 4/4 bar line.
    bar = [60, *hold(15), 62, *hold(3), OFF, *hold(11), 64]
    assert events_to_note_names(bar) == "C4:16 | D4 r:12 | E4:1"


MELODIES = [
    "C4 E4 G4:2 r:2 | C5 - -",
    "r:3 C#4:1 D4 Bb3:6 r A4:2 A4:2 A4:12",
    "C-1:1 G9:1 r:1 F#2:5 Eb6:16 -",
    "r - - C4",
    "C4:1 C4:1 C4:1 r:1 C4:1",
    "c4,d4|e4, f4 |g4:16| r:16 | c5",
]


@pytest.mark.parametrize("text", MELODIES)
def test_note_names_round_trip(text):
    events = parse_note_primer(text).events
    names = events_to_note_names(events)
    assert parse_note_primer(names).events == events
    assert events_to_note_names(parse_note_primer(names).events) == names


@pytest.mark.parametrize(
    "events",
    [
        [60, -2, 62, -1],
        [-2, -2, 60, 60, 60, -1, -2, 72],
        [127, -1, 0, -2, -2, -2, -1],
        list(range(0, 128)),
    ],
)
def test_event_lists_round_trip_through_note_names(events):
    assert parse_note_primer(events_to_note_names(events)).events == events


def test_events_to_note_names_rejects_bad_events():
    with pytest.raises(PrimerError, match="event 2"):
        events_to_note_names([60, 128])


# --------------------------------------------------------------------------------------
# MIDI tracks
# --------------------------------------------------------------------------------------


def test_midi_tracks(tmp_path):
    path = write_midi(
        tmp_path / "song.mid",
        [
            ("Lead", notes_of([60, 62, 64])),
            ("", [(48, 0, 16), (52, 0, 16), (55, 4, 8), (59, 16, 20)]),
        ],
        programs=[80, 33],
        drums=[(36, 0, 1), (42, 0, 1)],
        drums_first=True,
    )
    tracks = midi_tracks(path)
    assert tracks == [
        TrackInfo(0, "Drums", 0, "Drums", 2, True, 2),
        TrackInfo(1, "Lead", 80, "Lead 1 (square)", 3, False, 1),
        TrackInfo(2, "", 33, "Electric Bass (finger)", 4, False, 3),
    ]


def test_midi_tracks_touching_notes_are_not_polyphony(tmp_path):
    path = write_midi(tmp_path / "legato.mid", [("Lead", notes_of([60, 62, 64], length=4))])
    assert midi_tracks(path)[0].max_polyphony == 1


def test_midi_tracks_accepts_str_path(tmp_path):
    path = write_midi(tmp_path / "song.midi", [("Lead", notes_of([60]))])
    assert [t.name for t in midi_tracks(str(path))] == ["Lead"]


# --------------------------------------------------------------------------------------
# MIDI primers
# --------------------------------------------------------------------------------------


def test_midi_primer_single_track(tmp_path):
    path = write_midi(tmp_path / "song.mid", [("Lead", notes_of([60, 62, 64, 65]))])
    primer = midi_primer(path)
    # Quarter notes held 3 steps; Magenta strips the note-off after the last note.
    assert primer.events == [60, NO, NO, OFF, 62, NO, NO, OFF, 64, NO, NO, OFF, 65, NO, NO]
    assert primer.qpm == 120.0
    assert primer.description == "track 0 'Lead' in song.mid"


def test_midi_primer_default_is_first_pitched_track(tmp_path):
    path = write_midi(
        tmp_path / "song.mid",
        [("Bass", notes_of([36, 38])), ("Lead", notes_of([72, 74]))],
        drums=[(36, 0, 1)],
        drums_first=True,
    )
    primer = midi_primer(path)
    assert primer.pitches() == [36, 38]
    assert "track 1 'Bass'" in primer.description


def test_midi_primer_prefers_melody_track(tmp_path):
    path = write_midi(
        tmp_path / "pop.mid",
        [("PIANO", notes_of([48, 50, 52])), (" melody ", notes_of([72, 74, 76]))],
    )
    primer = midi_primer(path)
    assert primer.pitches() == [72, 74, 76]
    assert "track 1 'melody'" in primer.description


def test_midi_primer_explicit_track(tmp_path):
    path = write_midi(
        tmp_path / "pop.mid",
        [("PIANO", notes_of([48, 50, 52])), ("MELODY", notes_of([72, 74, 76]))],
    )
    assert midi_primer(path, track=0).pitches() == [48, 50, 52]
    assert midi_primer(path, track=1).pitches() == [72, 74, 76]


def test_midi_primer_unnamed_track_description(tmp_path):
    path = write_midi(tmp_path / "x.mid", [("", notes_of([60]))], programs=[40])
    assert midi_primer(path).description == "track 0 (Violin) in x.mid"


def test_midi_primer_keeps_highest_of_a_chord(tmp_path):
    chords = [(60, 0, 4), (64, 0, 4), (67, 0, 4), (62, 4, 8), (65, 4, 8), (57, 4, 8)]
    path = write_midi(tmp_path / "chords.mid", [("Piano", chords)])
    assert midi_primer(path).events == [67, NO, NO, NO, 65, NO, NO, NO]


def test_midi_primer_later_note_cuts_a_sounding_one(tmp_path):
    # Magenta's semantics: only notes starting together are resolved by pitch; a note
    # that starts while another sounds (even a lower one) cuts it off.
    path = write_midi(tmp_path / "overlap.mid", [("Piano", [(72, 0, 8), (60, 2, 6)])])
    assert midi_primer(path).events == [72, NO, 60, NO, NO, NO]


def test_midi_primer_keeps_its_place_in_the_bar_and_keeps_gaps(tmp_path):
    # First note on step 6 (inside bar 1): the primer starts at the bar line with the
    # rests before it; then a gap of over two bars, which melody extraction for
    # training would split at, but a primer keeps.
    notes = [(60, 6, 10), (62, 48, 52)]
    path = write_midi(tmp_path / "gap.mid", [("Lead", notes)])
    primer = midi_primer(path)
    assert primer.events == [*hold(6), 60, NO, NO, NO, OFF, *hold(37), 62, NO, NO, NO]


def test_midi_primer_pickup_stays_on_its_beat(tmp_path):
    # A reel's pickup on beat 3 of bar 1, and a pop song whose first note is on beat 19
    # (bar 5, beat 3): both keep their beat instead of landing on beat 1.
    reel = write_midi(
        tmp_path / "reel.mid", [("Fiddle", [(67, 8, 10), (69, 10, 12), (71, 12, 16)])]
    )
    assert midi_primer(reel).events[:10] == [*hold(8), 67, NO]
    pop = write_midi(tmp_path / "pop.mid", [("MELODY", notes_of([64, 62, 60] * 4, start=72))])
    primer = midi_primer(pop, bars=2)
    assert primer.events[:9] == [*hold(8), 64]
    assert primer.steps == 32 and primer.description.startswith("bars 5-6 ")
    # Half a beat late (an EDM line on the off-beat) stays half a beat late.
    edm = write_midi(tmp_path / "edm.mid", [("Lead", notes_of([60, 63, 67], start=2))])
    assert midi_primer(edm).events[:3] == [NO, NO, 60]


def write_meter_midi(path: Path, notes: list[Note], signatures, keys=(), qpm=120.0) -> Path:
    """One 'Lead' track; ``signatures`` are (numerator, denominator, step), ``keys`` are
    (pretty_midi key number, step)."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=qpm)
    step = 60.0 / qpm / STEPS_PER_QUARTER
    lead = pretty_midi.Instrument(0, name="Lead")
    lead.notes = [pretty_midi.Note(100, p, s * step, e * step) for p, s, e in notes]
    midi.instruments.append(lead)
    midi.time_signature_changes = [
        pretty_midi.TimeSignature(n, d, at * step) for n, d, at in signatures
    ]
    midi.key_signature_changes = [pretty_midi.KeySignature(k, at * step) for k, at in keys]
    midi.write(str(path))
    return path


def test_midi_primer_meter_from_the_file(tmp_path):
    jig = write_meter_midi(tmp_path / "jig.mid", notes_of([62, 66, 69] * 8, 2, 2), [(6, 8, 0)])
    primer = midi_primer(jig, bars=2)
    assert primer.meter == Meter(6, 8) and primer.steps == 24 and primer.bars == 2
    waltz = write_meter_midi(tmp_path / "waltz.mid", notes_of([67, 71, 74] * 4), [(3, 4, 0)])
    assert midi_primer(waltz, bars=1).events == [*notes_events([67, 71, 74]), OFF]
    # A one-beat meter is a tempo map (POP909 declares 1/4): read as 4/4, and said so.
    pop = write_meter_midi(tmp_path / "pop.mid", notes_of([60, 62], start=72), [(1, 4, 0)])
    primer = midi_primer(pop)
    assert primer.meter == Meter(4, 4) and primer.events[:9] == [*hold(8), 60]
    assert "1/4" in primer.notices[0]


def test_midi_primer_waltz_pickup_bar(tmp_path):
    # A waltz whose 2-beat pickup is written as a 2/4 bar before the 3/4: the pickup is
    # the last two beats of a 3/4 bar, and the primer continues past the change.
    notes = notes_of([62, 64, 66, 67, 69, 71, 72, 74])
    path = write_meter_midi(tmp_path / "waltz.mid", notes, [(2, 4, 0), (3, 4, 8)])
    primer = midi_primer(path)
    assert primer.meter == Meter(3, 4)
    assert primer.events[:5] == [NO, NO, NO, NO, 62] and primer.pitches() == [n[0] for n in notes]
    # 4/4 written again two beats in is no pickup: the bar lines stay where they were.
    again = write_meter_midi(tmp_path / "again.mid", notes, [(4, 4, 0), (4, 4, 8)])
    assert midi_primer(again).events == notes_events([n[0] for n in notes])


def notes_events(pitches: list[int]) -> list[int]:
    events: list[int] = []
    for pitch in pitches:
        events += [pitch, NO, NO, OFF]
    return events[:-1]


def test_midi_primer_key_from_the_key_signature_else_estimated(tmp_path):
    # G major tune (key signature: one sharp); D minor arpeggio without a key signature.
    g = write_meter_midi(
        tmp_path / "g.mid", notes_of([67, 71, 74, 72, 71, 69, 67]), [(4, 4, 0)], keys=[(7, 0)]
    )
    primer = midi_primer(g)
    assert (primer.key, primer.mode, primer.key_source) == (7, "major", "key signature")
    assert primer.key_label() == "G major (from the file's key signature)"
    d = write_meter_midi(tmp_path / "d.mid", notes_of([62, 65, 69, 74, 69, 65, 62]), [])
    assert midi_primer(d).key_label() == "D minor (estimated)"
    e_minor = write_meter_midi(tmp_path / "e.mid", notes_of([64, 67, 71]), [], keys=[(16, 0)])
    assert midi_primer(e_minor).key_label() == "E minor (from the file's key signature)"


def test_midi_primer_late_start_description(tmp_path):
    # The track starts in bar 3: the bar numbers in the description are the song's.
    path = write_midi(tmp_path / "late.mid", [("Lead", notes_of([60] * 12, start=32))])
    primer = midi_primer(path, bars=2)
    assert primer.events[0] == 60 and primer.steps == 32
    assert primer.description == "bars 3-4 of track 0 'Lead' in late.mid"


def test_midi_primer_bars(tmp_path):
    path = write_midi(tmp_path / "long.mid", [("Lead", notes_of(list(range(60, 76))))])
    whole = midi_primer(path)
    assert whole.steps == 16 * 4 - 1
    one = midi_primer(path, bars=1)
    assert one.events == whole.events[:16]
    assert one.description == "bar 1 of track 0 'Lead' in long.mid"
    two = midi_primer(path, bars=2)
    assert two.events == whole.events[:32]
    assert two.pitches() == list(range(60, 68))
    assert two.description == "bars 1-2 of track 0 'Lead' in long.mid"
    # More bars than the track has: the whole track, described by what was taken.
    many = midi_primer(path, bars=10)
    assert many.events == whole.events
    assert many.description == "bars 1-4 of track 0 'Lead' in long.mid"


def test_midi_primer_bars_cut_a_held_note(tmp_path):
    path = write_midi(tmp_path / "held.mid", [("Lead", [(60, 0, 12), (62, 12, 40)])])
    assert midi_primer(path, bars=1).events == [60, *hold(11), 62, NO, NO, NO]


def test_midi_primer_qpm_from_file(tmp_path):
    path = write_midi(tmp_path / "slow.mid", [("Lead", notes_of([60, 62]))], qpm=100.0)
    primer = midi_primer(path)
    assert primer.qpm == 100.0
    # Steps are counted at the file's tempo, not at 120.
    assert primer.events == [60, NO, NO, OFF, 62, NO, NO]


def test_midi_primer_quantizes_loose_timing(tmp_path):
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    lead = pretty_midi.Instrument(0, name="Lead")
    for index, pitch in enumerate([60, 62, 64]):
        start = index * 4 * STEP + 0.02 * (-1) ** index
        lead.notes.append(pretty_midi.Note(100, pitch, start + 0.03, start + 3 * STEP - 0.02))
    midi.instruments.append(lead)
    path = tmp_path / "loose.mid"
    midi.write(str(path))
    assert midi_primer(path).events == [60, NO, NO, OFF, 62, NO, NO, OFF, 64, NO, NO]


def test_midi_primer_reads_on_through_a_tempo_change(tmp_path):
    # Tempo changes neither cut the primer nor shift its beats (POP909 changes tempo
    # every few beats): every note keeps its step, at the first note's tempo.
    pitches = [60, 62, 64, 65, 67, 69, 71, 72]
    path = write_midi_with_tempo_change(
        tmp_path / "tempo.mid", [notes_of(pitches)], [(0, 90), (16, 140)]
    )
    primer = midi_primer(path)
    assert primer.qpm == 90.0
    assert primer.events == notes_events(pitches)


def test_midi_primer_track_starting_after_tempo_change(tmp_path):
    path = write_midi_with_tempo_change(
        tmp_path / "tempo.mid",
        [notes_of([48, 50]), notes_of([72, 74], start=16)],
        [(0, 90), (16, 140)],
    )
    primer = midi_primer(path, track=1)
    assert primer.qpm == 140.0
    assert primer.events == [72, NO, NO, OFF, 74, NO, NO]


def test_midi_primer_round_trips_through_note_names(tmp_path):
    path = write_midi(tmp_path / "song.mid", [("Lead", [(60, 2, 5), (63, 5, 9), (67, 20, 40)])])
    events = midi_primer(path).events
    assert parse_note_primer(events_to_note_names(events)).events == events


# --------------------------------------------------------------------------------------
# MIDI primer errors
# --------------------------------------------------------------------------------------


@pytest.fixture
def three_tracks(tmp_path) -> Path:
    return write_midi(
        tmp_path / "song.mid",
        [("Lead", notes_of([60, 62])), ("Bass", notes_of([36]))],
        drums=[(36, 0, 1)],
    )


@pytest.mark.parametrize("track", [3, 5, -1])
def test_midi_primer_missing_track(three_tracks, track):
    with pytest.raises(PrimerError) as caught:
        midi_primer(three_tracks, track=track)
    assert str(caught.value) == (
        f"track {track} does not exist: {three_tracks} has 3 tracks (0-2)."
    )


def test_midi_primer_missing_track_one_track_file(tmp_path):
    path = write_midi(tmp_path / "one.mid", [("Lead", notes_of([60]))])
    with pytest.raises(PrimerError, match=r"has 1 track \(0\)\.$"):
        midi_primer(path, track=1)


def test_midi_primer_drum_track(three_tracks):
    with pytest.raises(PrimerError) as caught:
        midi_primer(three_tracks, track=2)
    message = str(caught.value)
    assert message == f"track 2 is a drum track; choose a pitched track of {three_tracks}: 0, 1."


def test_midi_primer_drums_only(tmp_path):
    path = write_midi(tmp_path / "beat.mid", [], drums=[(36, 0, 1), (38, 4, 5)])
    assert midi_tracks(path)[0].is_drum
    with pytest.raises(PrimerError, match="only drum tracks"):
        midi_primer(path)
    with pytest.raises(
        PrimerError, match=r"^track 0 is a drum track; .*beat\.mid has no pitched track\.$"
    ):
        midi_primer(path, track=0)


def test_midi_primer_no_notes(tmp_path):
    path = write_midi(tmp_path / "silent.mid", [("Lead", [])])
    for call in (midi_primer, midi_tracks):
        with pytest.raises(PrimerError, match="contains no notes"):
            call(path)


def test_midi_primer_track_without_notes(tmp_path, monkeypatch):
    # pretty_midi never reads back an instrument without notes, so the case is built
    # as a NoteSequence: instrument 1 is named but plays nothing.
    sequence = NoteSequence()
    sequence.tempos.add(qpm=120.0)
    sequence.notes.add(pitch=60, velocity=100, start_time=0.0, end_time=0.5, instrument=0)
    sequence.instrument_infos.add(instrument=1, name="Empty")
    sequence.total_time = 0.5
    monkeypatch.setattr(primer_module, "load_note_sequences", lambda path: [sequence])
    path = tmp_path / "fake.mid"
    path.write_bytes(b"MThd")
    assert [t.note_count for t in midi_tracks(path)] == [1, 0]
    with pytest.raises(PrimerError, match=r"^track 1 of .* has no notes; tracks with notes: 0\.$"):
        midi_primer(path, track=1)
    assert midi_primer(path).events == [60, NO, NO, NO]


@pytest.mark.parametrize("bars", [0, -2])
def test_midi_primer_bad_bars(three_tracks, bars):
    with pytest.raises(PrimerError, match=f"bars must be 1 or more \\(got {bars}\\)"):
        midi_primer(three_tracks, bars=bars)


@pytest.mark.parametrize(("kwargs", "what"), [({"track": "1"}, "track"), ({"bars": 1.5}, "bars")])
def test_midi_primer_non_integer_arguments(three_tracks, kwargs, what):
    with pytest.raises(PrimerError, match=f"{what} must be a whole number"):
        midi_primer(three_tracks, **kwargs)


def test_midi_primer_missing_file(tmp_path):
    for call in (midi_primer, midi_tracks):
        with pytest.raises(InputFileError, match="no such file"):
            call(tmp_path / "nowhere.mid")


def test_midi_primer_empty_file(tmp_path):
    path = tmp_path / "empty.mid"
    path.write_bytes(b"")
    with pytest.raises(InputFileError, match="empty"):
        midi_primer(path)


def test_midi_primer_not_midi(tmp_path):
    path = tmp_path / "fake.mid"
    path.write_text("this is not a MIDI file")
    with pytest.raises(InputFileError, match="not a MIDI file"):
        midi_primer(path)


def test_midi_primer_corrupt_file(tmp_path):
    good = write_midi(tmp_path / "good.mid", [("Lead", notes_of([60, 62, 64, 65]))])
    path = tmp_path / "cut.mid"
    path.write_bytes(good.read_bytes()[:30])
    with pytest.raises(InputFileError, match="truncated or corrupt|corrupt"):
        midi_primer(path)


@pytest.mark.parametrize("name", ["tune.abc", "notes.txt", "noextension"])
def test_midi_primer_wrong_file_type(tmp_path, name):
    path = tmp_path / name
    path.write_text("X:1\nK:C\nCDEF|\n")
    for call in (midi_primer, midi_tracks):
        with pytest.raises(PrimerError, match="must be MIDI"):
            call(path)


def test_midi_primer_folder(tmp_path):
    folder = tmp_path / "folder.mid"
    folder.mkdir()
    with pytest.raises(InputFileError, match="folder"):
        midi_primer(folder)


# --------------------------------------------------------------------------------------
# MusicXML primers
# --------------------------------------------------------------------------------------


def write_musicxml(path: Path) -> Path:
    """A waltz in G major at 90 BPM for a violin, with a one-beat pickup, via music21."""
    from music21 import instrument, key, meter, note, stream, tempo

    part = stream.Part()
    part.partName = "Fiddle"
    part.insert(0, instrument.Violin())
    pickup = stream.Measure(number=0)
    pickup.append([meter.TimeSignature("3/4"), key.KeySignature(1), tempo.MetronomeMark(number=90)])
    pickup.append(note.Note("D4", quarterLength=1))
    pickup.paddingLeft = 2.0
    part.append(pickup)
    for pitches in (["G4", "B4", "D5"], ["F#5", "E5", "D5"]):
        bar = stream.Measure()
        bar.append([note.Note(p, quarterLength=1) for p in pitches])
        part.append(bar)
    stream.Score([part]).write("mxl" if path.suffix == ".mxl" else "musicxml", str(path))
    return path


@pytest.mark.parametrize("name", ["waltz.musicxml", "waltz.mxl"])
def test_musicxml_primer_keeps_pickup_meter_key_and_tempo(tmp_path, name):
    path = write_musicxml(tmp_path / name)
    (track,) = midi_tracks(path)
    assert (track.name, track.instrument_name, track.note_count) == ("Fiddle", "Violin", 7)
    assert track.max_polyphony == 1
    primer = midi_primer(path)
    assert events_to_note_names(primer.events, primer.meter) == "3/4 r:8 D4 | G4 B4 D5 | F#5 E5 D5"
    assert (primer.meter, primer.qpm) == (Meter(3, 4), 90.0)
    assert primer.key_label() == "G major (from the file's key signature)"
    assert primer.description == f"track 0 'Fiddle' in {name}"


def test_bad_musicxml_and_other_files_say_what_is_accepted(tmp_path):
    broken = tmp_path / "broken.musicxml"
    broken.write_text("<score-partwise><part>")
    with pytest.raises(PrimerError, match="not a readable MusicXML file"):
        midi_primer(broken)
    audio = tmp_path / "take.wav"
    audio.write_bytes(b"RIFF....WAVE")
    with pytest.raises(PrimerError, match=r"MIDI \(.mid, .midi\) or MusicXML .*not audio"):
        midi_primer(audio)
    assert "MuseScore" in unsupported_file_reason("song.mscz")


@pytest.mark.parametrize(
    ("pitches", "expected"),
    [("D4 F4 A4 D5 A4 F4 E4 D4", "D minor"), ("F4 A4 C5 F5 C5 A4 G4 F4", "F major")],
)
def test_a_musicxml_key_signature_without_mode_is_major_or_relative_minor_by_its_notes(
    tmp_path, pitches, expected
):
    notes = "".join(
        f"<note><pitch><step>{name[0]}</step><octave>{name[1]}</octave></pitch>"
        "<duration>1</duration><type>quarter</type></note>"
        for name in pitches.split()
    )
    path = tmp_path / "tune.musicxml"
    path.write_text(
        '<?xml version="1.0"?><score-partwise version="3.1"><part-list>'
        '<score-part id="P1"><part-name>Fiddle</part-name></score-part></part-list>'
        '<part id="P1"><measure number="1"><attributes><divisions>1</divisions>'
        "<key><fifths>-1</fifths></key><time><beats>4</beats><beat-type>4</beat-type></time>"
        f'</attributes>{notes[: len(notes) // 2]}</measure><measure number="2">'
        f"{notes[len(notes) // 2 :]}</measure></part></score-partwise>"
    )
    primer = midi_primer(path)
    assert primer.key_label().startswith(f"{expected} (from the file's key signature)")
