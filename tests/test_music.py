"""Tests for melodygen.io.music: reading MIDI/ABC files, melody extraction, transposition.

All fixtures are made in code (pretty_midi / NoteSequence / ABC text) under tmp_path.
At the default 120 qpm a sixteenth-note step lasts 0.125 s, so step numbers below map
to seconds via ``STEP``; in 4/4 a bar is 16 steps.
"""

from __future__ import annotations

from pathlib import Path

import pretty_midi
import pytest

from melodygen.errors import InputFileError, MelodyGenError
from melodygen.io.music import (
    MUSIC_SUFFIXES,
    STEPS_PER_QUARTER,
    ExtractionParams,
    NoteSequence,
    extract_melodies,
    find_music_files,
    in_one_meter,
    load_note_sequences,
    sequences_lib,  # note_seq's, imported via melodygen.io.music, which hides its import warnings
    transposed_sequences,
)

STEP = 0.125  # seconds per sixteenth note at 120 qpm
BAR = 16  # steps per 4/4 bar at 4 steps per quarter
NOTE_OFF = -1
NO_EVENT = -2
SCALE = [60, 62, 64, 65, 67, 69, 71, 72]

Note = tuple[int, int, int]  # (pitch, start_step, end_step)


def quarter_notes(pitches: list[int], start_step: int = 0, length: int = 4) -> list[Note]:
    """One note per quarter (4 steps), each ``length`` steps long."""
    return [(p, start_step + 4 * i, start_step + 4 * i + length) for i, p in enumerate(pitches)]


def write_midi(
    path: Path,
    tracks: list[tuple[str, list[Note]]],
    drums: list[Note] | None = None,
    time_signature: tuple[int, int] | None = None,
    jitter: float = 0.0,
) -> Path:
    """Write a MIDI file with one named instrument per track (and an optional drum track)."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    if time_signature:
        midi.time_signature_changes.append(pretty_midi.TimeSignature(*time_signature, 0.0))
    for name, notes in tracks:
        instrument = pretty_midi.Instrument(program=0, name=name)
        for pitch, start, end in notes:
            instrument.notes.append(
                pretty_midi.Note(100, pitch, start * STEP + jitter, end * STEP + jitter)
            )
        midi.instruments.append(instrument)
    if drums:
        drum = pretty_midi.Instrument(program=0, is_drum=True, name="Drums")
        for pitch, start, end in drums:
            drum.notes.append(pretty_midi.Note(100, pitch, start * STEP, end * STEP))
        midi.instruments.append(drum)
    midi.write(str(path))
    return path


def load_one(path: Path) -> NoteSequence:
    sequences = load_note_sequences(path)
    assert len(sequences) == 1
    return sequences[0]


def make_sequence(notes: list[Note], qpm: float = 120.0, instrument: int = 0) -> NoteSequence:
    sequence = NoteSequence()
    sequence.tempos.add(time=0.0, qpm=qpm)
    sequence.ticks_per_quarter = 220
    seconds = 60.0 / qpm / STEPS_PER_QUARTER
    for pitch, start, end in notes:
        sequence.notes.add(
            pitch=pitch,
            velocity=100,
            start_time=start * seconds,
            end_time=end * seconds,
            instrument=instrument,
        )
    sequence.total_time = max((n.end_time for n in sequence.notes), default=0.0)
    return sequence


def note_events(pitches: list[int], on: int, off: int | None = None) -> list[int]:
    """Expected events for back-to-back notes each taking ``on`` steps of a 4-step slot."""
    events: list[int] = []
    for pitch in pitches:
        slot = [pitch] + [NO_EVENT] * 3
        if off is not None:
            slot[off] = NOTE_OFF
        events.extend(slot)
    return events


def melody_pitches(melody) -> list[int]:
    return [event for event in melody if event >= 0]


# ------------------------------------------------------------------------- extraction


def test_monophonic_single_track_gives_exact_events(tmp_path: Path) -> None:
    pitches = SCALE * 4  # 32 quarter notes = 8 bars
    path = write_midi(tmp_path / "mono.mid", [("Flute", quarter_notes(pitches, length=2))])

    melodies, stats = extract_melodies(load_one(path))

    assert len(melodies) == 1
    melody = melodies[0]
    # Each quarter: pitch, hold, off, silence; the final NOTE_OFF is stripped (Magenta).
    expected = note_events(pitches, on=2, off=2)[:-2]
    assert list(melody) == expected
    assert melody.start_step == 0
    assert melody.steps_per_bar == BAR
    assert melody.steps_per_quarter == STEPS_PER_QUARTER
    assert sum(stats.values()) == 0


def test_legato_notes_and_late_start_align_to_bar(tmp_path: Path) -> None:
    pitches = SCALE * 4
    # First note on step 20 (beat 2 of bar 2): the melody starts at the bar line, step 16.
    path = write_midi(tmp_path / "late.mid", [("", quarter_notes(pitches, start_step=20))])

    (melody,), _ = extract_melodies(load_one(path))

    assert melody.start_step == BAR
    assert list(melody) == [NO_EVENT] * 4 + note_events(pitches, on=4)


def test_polyphonic_chords_keep_highest_note(tmp_path: Path) -> None:
    tops = [72, 74, 76, 77, 79, 81, 83, 84] * 4
    notes: list[Note] = []
    for i, top in enumerate(tops):
        for pitch in (top - 12, top - 8, top):
            notes.append((pitch, 4 * i, 4 * i + 4))
    path = write_midi(tmp_path / "chords.mid", [("Piano", notes)])

    melodies, stats = extract_melodies(load_one(path))

    assert len(melodies) == 1
    assert list(melodies[0]) == note_events(tops, on=4)
    assert stats["polyphonic_tracks_discarded"] == 0


def test_melody_track_preferred_over_piano(tmp_path: Path) -> None:
    lead = [76, 74, 72, 71, 69, 67, 65, 64] * 4
    piano: list[Note] = []
    for bar in range(8):  # busy, varied accompaniment that would itself be a valid melody
        for j, pitch in enumerate([48, 52, 55, 59, 50, 53, 57, 60]):
            piano.append((pitch + bar % 3, bar * BAR + 2 * j, bar * BAR + 2 * j + 2))
    path = write_midi(
        tmp_path / "pop.mid",
        [(" Melody ", quarter_notes(lead)), ("BRIDGE", []), ("PIANO", piano)],
        drums=[(36, 4 * i, 4 * i + 1) for i in range(32)],
    )
    sequence = load_one(path)
    # Track names survive reading (empty BRIDGE track is dropped by pretty_midi).
    names = {info.name for info in sequence.instrument_infos}
    assert {" Melody ", "PIANO"} <= names

    melodies, stats = extract_melodies(sequence)

    assert len(melodies) == 1
    assert list(melodies[0]) == note_events(lead, on=4)
    assert stats["tracks_ignored_not_melody"] == 1


def test_without_melody_track_every_pitched_instrument_is_used(tmp_path: Path) -> None:
    violin = SCALE * 4
    flute = [p + 12 for p in reversed(SCALE)] * 4
    path = write_midi(
        tmp_path / "duo.mid",
        [("Violin", quarter_notes(violin)), ("Flute", quarter_notes(flute, length=2))],
        drums=[(36, 2 * i, 2 * i + 1) for i in range(64)],
    )

    melodies, stats = extract_melodies(load_one(path))

    assert sorted(melody_pitches(m) for m in melodies) == sorted([violin, flute])
    assert "tracks_ignored_not_melody" not in stats


def test_gap_of_one_bar_splits_melody(tmp_path: Path) -> None:
    first = SCALE * 4  # bars 0-7
    second = list(reversed(SCALE)) * 4
    # Last note of the first part ends at step 128; the second part starts at 144 (1 bar).
    notes = quarter_notes(first) + quarter_notes(second, start_step=8 * BAR + BAR)
    path = write_midi(tmp_path / "gap.mid", [("Lead", notes)])

    melodies, _ = extract_melodies(load_one(path))

    assert [melody_pitches(m) for m in melodies] == [first, second]
    assert melodies[0].start_step == 0
    assert melodies[1].start_step == 9 * BAR


def test_gap_shorter_than_a_bar_does_not_split(tmp_path: Path) -> None:
    first = SCALE * 4
    notes = quarter_notes(first) + quarter_notes(SCALE * 2, start_step=8 * BAR + 12)
    path = write_midi(tmp_path / "short_gap.mid", [("Lead", notes)])

    melodies, _ = extract_melodies(load_one(path))

    assert len(melodies) == 1
    assert melody_pitches(melodies[0]) == first + SCALE * 2


def test_too_short_and_too_few_pitches_are_dropped_and_counted(tmp_path: Path) -> None:
    short = quarter_notes(SCALE * 2)  # 4 bars < min_bars=7
    # 8 bars over 4 pitch classes (C, D, E in two octaves + G): fewer than 5.
    few = quarter_notes([60, 62, 64, 72, 74, 76, 67, 60] * 4, start_step=10 * BAR)
    path = write_midi(tmp_path / "drop.mid", [("Lead", short + few)])

    melodies, stats = extract_melodies(load_one(path))

    assert melodies == []
    assert stats["melodies_discarded_too_short"] == 1
    assert stats["melodies_discarded_too_few_pitches"] == 1

    relaxed = ExtractionParams(min_bars=4, min_unique_pitches=4)
    melodies, stats = extract_melodies(load_one(path), relaxed)
    assert len(melodies) == 2
    assert sum(stats.values()) == 0


def test_max_steps_truncates_to_bar_line(tmp_path: Path) -> None:
    pitches = SCALE * 20  # 160 quarters = 640 steps
    path = write_midi(tmp_path / "long.mid", [("Lead", quarter_notes(pitches))])

    (melody,), stats = extract_melodies(load_one(path))
    assert len(melody) == 512
    assert stats["melodies_truncated"] == 1

    # In 3/4 a bar is 12 steps: 512 is cut back to the bar line at 504.
    path = write_midi(
        tmp_path / "waltz.mid", [("Lead", quarter_notes(pitches))], time_signature=(3, 4)
    )
    (melody,), stats = extract_melodies(load_one(path))
    assert melody.steps_per_bar == 12
    assert len(melody) == 504
    assert stats["melodies_truncated"] == 1


def test_drums_only_and_empty_sequences_give_reason_not_exception(tmp_path: Path) -> None:
    path = write_midi(tmp_path / "drums.mid", [], drums=[(36, 4 * i, 4 * i + 2) for i in range(64)])
    melodies, stats = extract_melodies(load_one(path))
    assert melodies == []
    assert stats["no_pitched_notes"] == 1

    melodies, stats = extract_melodies(NoteSequence())
    assert melodies == []
    assert stats["no_pitched_notes"] == 1


def test_tempo_change_is_split_not_fatal() -> None:
    sequence = make_sequence(quarter_notes(SCALE * 4))  # 8 bars at 120 qpm = 16 s
    # Second half at 60 qpm: a quarter lasts 1 s.
    for i, pitch in enumerate(list(reversed(SCALE)) * 4):
        sequence.notes.add(pitch=pitch, velocity=90, start_time=16.0 + i, end_time=17.0 + i)
    sequence.tempos.add(time=16.0, qpm=60.0)
    sequence.total_time = 48.0
    with pytest.raises(sequences_lib.MultipleTempoError):
        sequences_lib.quantize_note_sequence(sequence, STEPS_PER_QUARTER)

    melodies, _ = extract_melodies(sequence)

    assert [melody_pitches(m) for m in melodies] == [SCALE * 4, list(reversed(SCALE)) * 4]
    assert all(len(m) == 8 * BAR for m in melodies)


def test_one_meter_reads_a_tempo_mapped_one_four_file_as_one_four_four_melody() -> None:
    # POP909's shape: 1/4 declared, tempo following a recording. Same tune as above.
    sequence = make_sequence(quarter_notes(SCALE * 4))
    for i, pitch in enumerate(list(reversed(SCALE)) * 4):
        sequence.notes.add(pitch=pitch, velocity=90, start_time=16.0 + i, end_time=17.0 + i)
    sequence.tempos.add(time=16.0, qpm=60.0)
    sequence.time_signatures.add(time=0.0, numerator=1, denominator=4)
    sequence.total_time = 48.0

    split, _ = extract_melodies(sequence)
    assert len(split) == 2 and all(m.steps_per_bar == 4 for m in split)

    params = ExtractionParams(time_signature=(4, 4), max_steps=1024)
    melodies, _ = extract_melodies(sequence, params)
    assert [melody_pitches(m) for m in melodies] == [SCALE * 4 + list(reversed(SCALE)) * 4]
    assert len(melodies[0]) == 16 * BAR and melodies[0].steps_per_bar == BAR
    # The input is left as it was.
    assert len(sequence.tempos) == 2 and sequence.time_signatures[-1].numerator == 1


def test_in_one_meter_keeps_beats_and_maps_annotations() -> None:
    sequence = NoteSequence()
    sequence.tempos.add(time=0.0, qpm=100.0)
    sequence.tempos.add(time=3.0, qpm=150.0)  # beat 5 at 3 s; then 0.4 s per beat
    sequence.notes.add(pitch=60, velocity=90, start_time=3.4, end_time=3.8)  # beats 6-7
    sequence.text_annotations.add(time=3.8, text="C")
    result = in_one_meter(sequence, 3, 4)
    seconds_per_beat = 0.6  # the first tempo
    note = result.notes[0]
    assert note.start_time == pytest.approx(6 * seconds_per_beat)
    assert note.end_time == pytest.approx(7 * seconds_per_beat)
    assert result.text_annotations[0].time == pytest.approx(7 * seconds_per_beat)
    assert [(t.qpm, t.time) for t in result.tempos] == [(100.0, 0.0)]
    assert [(t.numerator, t.denominator) for t in result.time_signatures] == [(3, 4)]
    assert result.total_time == pytest.approx(note.end_time)


def test_non_integer_steps_per_bar_is_counted() -> None:
    sequence = make_sequence(quarter_notes(SCALE * 4))
    sequence.time_signatures.add(time=0.0, numerator=5, denominator=32)
    melodies, stats = extract_melodies(sequence)
    assert melodies == []
    assert stats["non_integer_steps_per_bar"] == 1


def test_played_overlapping_melody_is_reduced_to_monophony(tmp_path: Path) -> None:
    """POP909-like: notes are not on the grid and each overlaps the next slightly."""
    pitches = [67, 69, 71, 72, 74, 72, 71, 69] * 4
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    lead = pretty_midi.Instrument(program=0, name="MELODY")
    for i, pitch in enumerate(pitches):
        start = i * 0.5 + (0.02 if i % 2 else -0.015) + 0.05
        lead.notes.append(pretty_midi.Note(80, pitch, start, start + 0.56))
    midi.instruments.append(lead)
    path = tmp_path / "played.mid"
    midi.write(str(path))

    (melody,), _ = extract_melodies(load_one(path))

    assert melody_pitches(melody) == pitches
    assert NOTE_OFF not in list(melody)  # each note is cut by the next one


def test_extract_accepts_quantized_input_and_does_not_modify_it() -> None:
    sequence = make_sequence(quarter_notes(SCALE * 4))
    before = sequence.SerializeToString()
    melodies, _ = extract_melodies(sequence)
    assert sequence.SerializeToString() == before

    quantized = sequences_lib.quantize_note_sequence(sequence, STEPS_PER_QUARTER)
    again, _ = extract_melodies(quantized)
    assert [list(m) for m in again] == [list(m) for m in melodies]


# ----------------------------------------------------------------------- reading files


def test_bad_files_raise_input_file_error_naming_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mid"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mid"
    text.write_text("these are my notes, not a MIDI file\n")
    good = write_midi(tmp_path / "good.mid", [("Lead", quarter_notes(SCALE * 4))])
    data = good.read_bytes()
    truncated = tmp_path / "truncated.mid"
    truncated.write_bytes(data[: len(data) // 2])
    nonsense = tmp_path / "nonsense.abc"
    nonsense.write_text("hello there\nthis ]]] is {{{ not ABC at all ~~~\n")
    empty_abc = tmp_path / "blank.abc"
    empty_abc.write_text("\n\n   \n")
    other = tmp_path / "song.mp3"
    other.write_bytes(b"ID3")

    cases = {
        empty: "empty",
        text: "not a MIDI file",
        truncated: "truncated",
        nonsense: "could be parsed",
        empty_abc: "no tunes",
        other: "unsupported file type",
        tmp_path / "missing.mid": "no such file",
    }
    for path, words in cases.items():
        with pytest.raises(InputFileError) as info:
            load_note_sequences(path)
        message = str(info.value)
        assert str(path) in message
        assert words in message
        assert "\n" not in message
        assert "Traceback" not in message
    assert issubclass(InputFileError, MelodyGenError)


def test_valid_abc_tune_parses_and_yields_melody(tmp_path: Path) -> None:
    path = tmp_path / "tune.abc"
    path.write_text(
        "X:1\nT:Test Tune\nM:4/4\nL:1/4\nK:C\nCDEF|GABc|cBAG|FEDC|CEGc|cGEC|DFAc|B4|]\n"
    )

    (sequence,) = load_note_sequences(path)
    assert sequence.sequence_metadata.title == "Test Tune"
    assert sequence.filename == str(path)

    (melody,), _ = extract_melodies(sequence)
    expected_pitches = [60, 62, 64, 65, 67, 69, 71, 72, 72, 71, 69, 67, 65, 64, 62, 60]
    expected_pitches += [60, 64, 67, 72, 72, 67, 64, 60, 62, 65, 69, 72, 71]
    assert melody_pitches(melody) == expected_pitches
    assert list(melody)[:8] == [60, NO_EVENT, NO_EVENT, NO_EVENT, 62, NO_EVENT, NO_EVENT, NO_EVENT]
    # The whole note ends on the final bar line; its NOTE_OFF (step 128) is stripped.
    assert len(melody) == 8 * BAR
    assert list(melody)[-16:] == [71] + [NO_EVENT] * 15


def test_abc_rests_grace_notes_and_decorations_are_understood(tmp_path: Path) -> None:
    """z/x rests take their time; {grace} notes, !decorations! and chord symbols none."""
    path = tmp_path / "rests.abc"
    path.write_text(
        "X:7\nT:Rests\nM:4/4\nL:1/8\nK:D\n"
        '|"D"z2 {g}A2 !trill!B2 c2|d2 z2 d4|"^pizz"e2 f2 g2 a2|b2 a2 g2 f2|\n'
        '|"A7"e2 d2 c2 B2|A2 x2 A4|B2 c2 d2 e2|d8|]\n'
    )

    (sequence,) = load_note_sequences(path)

    assert min(note.pitch for note in sequence.notes) > 60  # no rest stand-ins left
    # The tune keeps its canonical ABC text (chord symbols and decorations dropped).
    (text,) = [a.text for a in sequence.text_annotations if a.text.startswith("abc:")]
    assert "K:D" in text and "A7" not in text and "!trill!" not in text
    (melody,), _ = extract_melodies(sequence)
    hold = [NO_EVENT] * 3
    # Bar 1: quarter rest, A, B, C# (key of D); bar 2: D, quarter rest, half-note D.
    expected_start = [NO_EVENT] * 4 + [69, *hold, 71, *hold, 73, *hold]
    expected_start += [74, *hold, NOTE_OFF, *hold, 74] + [NO_EVENT] * 7
    assert list(melody)[:32] == expected_start
    assert len(melody) == 8 * BAR


def test_abc_tunebook_keeps_good_tunes_duplicates_and_expands_repeats(tmp_path: Path) -> None:
    path = tmp_path / "book.abc"
    path.write_text(
        "% a tunebook header\nM:4/4\nL:1/8\n\n"
        "X:1\nT:Repeats\nK:G\n|:GABc dedB|cBAG FGAF:|\n\n"
        "X:2\nT:Tuplets\nK:D\n(3ABc d2 e2|\n\n"
        "X:1\nT:Same number\nK:D\nDEFG ABcd|\n"
    )

    sequences = load_note_sequences(path)

    titles = [s.sequence_metadata.title for s in sequences]
    assert titles == ["Repeats", "Tuplets", "Same number"]  # abc2midi reads tuplets
    assert len(sequences[0].notes) == 32  # 16 notated notes played twice
    triplet = sorted(n.start_time for n in sequences[1].notes)[:4]
    assert triplet[1] - triplet[0] == pytest.approx(triplet[2] - triplet[1])  # evenly spaced
    assert triplet[3] - triplet[0] == pytest.approx(0.5)  # three eighths in one quarter
    assert sequences[0].id == f"{path}#X1"


def test_midi_track_names_survive(tmp_path: Path) -> None:
    path = write_midi(
        tmp_path / "named.mid",
        [("MELODY", quarter_notes(SCALE)), ("PIANO", quarter_notes([48, 50]))],
    )
    sequence = load_one(path)
    names = {info.instrument: info.name for info in sequence.instrument_infos}
    assert names == {0: "MELODY", 1: "PIANO"}
    assert {n.instrument for n in sequence.notes if n.pitch >= 60} == {0}
    assert sequence.filename == str(path)


# ---------------------------------------------------------------------- finding files


def test_find_music_files_on_nested_folder(tmp_path: Path) -> None:
    root = tmp_path / "music"
    (root / "a" / "b").mkdir(parents=True)
    (root / ".hidden").mkdir()
    wanted = [root / "a" / "b" / "deep.mid", root / "a" / "tunes.abc", root / "top.MIDI"]
    for path in wanted:
        path.write_bytes(b"x")
    (root / "a" / "readme.txt").write_text("no")
    (root / ".hidden" / "secret.mid").write_bytes(b"x")
    (root / "a" / "._resource.mid").write_bytes(b"x")
    extra = tmp_path / "single.midi"
    extra.write_bytes(b"x")

    found = find_music_files([root, str(extra), root / "top.MIDI"])

    assert found == sorted([*wanted, extra])
    assert find_music_files(str(root / "a")) == sorted(wanted[:2])
    assert {p.suffix.lower() for p in found} <= set(MUSIC_SUFFIXES)


def test_find_music_files_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty_folder"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("x")
    with pytest.raises(InputFileError, match="contains no music files") as info:
        find_music_files([empty])
    assert str(empty) in str(info.value)

    missing = tmp_path / "nope"
    with pytest.raises(InputFileError, match="no such file or folder") as info:
        find_music_files([missing])
    assert str(missing) in str(info.value)

    wrong = tmp_path / "song.wav"
    wrong.write_bytes(b"RIFF")
    with pytest.raises(InputFileError, match="unsupported file type"):
        find_music_files([wrong])


# ----------------------------------------------------------------------- transposition


def test_transposed_sequences() -> None:
    sequence = make_sequence(quarter_notes([60, 64, 67, 72]))
    sequence.notes.add(pitch=36, velocity=100, start_time=0.0, end_time=0.1, is_drum=True)
    sequence.key_signatures.add(time=0.0, key=0)
    before = sequence.SerializeToString()

    results = transposed_sequences(sequence, [-2, 0, 3])

    assert sequence.SerializeToString() == before
    assert len(results) == 3
    for amount, shifted in zip([-2, 0, 3], results, strict=True):
        assert [n.pitch for n in shifted.notes if not n.is_drum] == [
            60 + amount,
            64 + amount,
            67 + amount,
            72 + amount,
        ]
        assert [n.pitch for n in shifted.notes if n.is_drum] == [36]
        assert shifted.key_signatures[0].key == amount % 12
    assert results[1] == sequence


def test_transposition_out_of_midi_range_is_skipped() -> None:
    sequence = make_sequence(quarter_notes([2, 60, 125]))
    results = transposed_sequences(sequence, range(-3, 4))
    lowest = [min(n.pitch for n in s.notes) for s in results]
    assert lowest == [0, 1, 2, 3, 4]  # -3 (pitch -1) and +3 (pitch 128) are left out
