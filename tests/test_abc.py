"""Tests for melodygen.io.abc: splitting, cleaning, parsing (abc2midi), validity, writing ABC.

All ABC is written here; the tunebooks in ../shared/data are never read.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from melodygen.errors import InputFileError
from melodygen.io import abc
from melodygen.io.abc import (
    AbcError,
    AbcTune,
    BarCheck,
    check_validity,
    clean_tune,
    parse_tune,
    read_tunebook,
    split_tunes,
    to_abc,
    validity_rates,
)

needs_abc2midi = pytest.mark.skipif(
    shutil.which("abc2midi") is None, reason="abc2midi (Debian abcmidi) is not installed"
)

BOOK = """% A tunebook with a file header
M:6/8
L:1/8

X:1
T:The First Jig
T:Another title
S:from a book % source
Z:typed by someone
N:a note
R:jig
K:G
|:"G"GAB "D"A2G|"C"E2D "G"D3|GAB d2e|"D7"d2B A3:|
|:{g}B2d !trill!e2f|g2f e2d|~B2d e2d|1 B2A G3:|2 B2A G2||

X:2
T:Second, with a pickup
M:4/4
L:1/8
K:D
A|d2 f2 a2 f2|e2 (3ABc d4|z2 F>G A<B c2|d6 z|]
"""


def test_split_tunes_finds_every_tune_and_copies_file_header_defaults() -> None:
    tunes = split_tunes(BOOK)
    assert len(tunes) == 2
    assert tunes[0].startswith("X:1\nM:6/8\nL:1/8\n")
    assert "First Jig" in tunes[0] and "Second" not in tunes[0]
    # A tune's own fields come after the defaults and so override them.
    assert tunes[1].index("M:6/8") < tunes[1].index("M:4/4")
    # Pasted text with no X: at all: each blank-line separated part with a K: is a tune.
    assert len(split_tunes("T:a\nK:C\nCDE|\n\nT:b\nK:D\nDEF|\n\njust words\n")) == 2


def test_clean_tune_keeps_what_is_played_and_drops_the_rest() -> None:
    raw = split_tunes(BOOK)[0]
    tune = clean_tune(raw)
    assert tune.text == (
        "T:The First Jig\nM:6/8\nL:1/8\nR:jig\nK:G\n"
        "|:GAB A2G|E2D D3|GAB d2e|d2B A3:|\n"
        "|:B2d e2f|g2f e2d|B2d e2d|1 B2A G3:|2 B2A G2||\n"
    )
    assert (tune.reference, tune.title, tune.meter, tune.unit, tune.key, tune.rhythm) == (
        "1",
        "The First Jig",
        "6/8",
        "1/8",
        "G",
        "jig",
    )
    assert tune.header == "T:The First Jig\nM:6/8\nL:1/8\nR:jig\nK:G\n"
    assert tune.body.startswith("|:GAB") and tune.text.endswith("\n")
    with_chords = clean_tune(raw, chords=True)
    assert '"G"GAB "D"A2G' in with_chords.body and '"D7"d2B' in with_chords.body


def test_clean_tune_body_fields_voices_continuations_and_annotations() -> None:
    raw = (
        "X:3\nT:Many things\nM:4/4\nK:A\nM:3/4\nL:1/4\nP:A\n"
        '"^fine"ABc|\\\n def|[K:D] d2 e|\nP:B\nw: la la la\nK:G\nG3|]\n'
    )
    tune = clean_tune(raw)
    # Fields after K: but before the music count as header; P: and w: are dropped.
    assert tune.header == "T:Many things\nM:3/4\nL:1/4\nK:A\n"
    assert tune.body == "ABc| def|[K:D] d2 e|\nK:G\nG3|]\n"
    voices = clean_tune(
        "X:4\nT:Two voices\nM:2/4\nL:1/8\nV:1\nV:2\nK:C\nV:1\nCDEF|GABc|\nV:2\nC,4|G,4|\n"
        "V:1\ncBAG|C4|]\n"
    )
    assert voices.body == "CDEF|GABc|\ncBAG|C4|]\n"
    # Nottingham style: a key change written at the end of a line of music.
    assert clean_tune("X:5\nM:2/4\nK:C\nCDEF|GABc| K:G\nGABc|]\n").body == (
        "CDEF|GABc|\nK:G\nGABc|]\n"
    )


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("X:1\nT:no key\nM:4/4\nCDEF|\n", "music comes before the K:"),
        ("X:1\nT:no key at all\nM:4/4\n", "no K: (key) field"),
        ("X:1\nT:header only\nM:4/4\nL:1/8\nK:G\n", "no music after its K:"),
        ("X:1\nK:G\nAB\x00\x01\x02CD|\n", "binary data"),
        ("X:1\nK:G\n" + "ABcd|" * 300_000 + "\n", "characters; at most"),
        ('X:1\nK:G\n"G ABc|\n', "never closes"),
        ("X:1\nK:G\n{ga ABc|\n", "never closes"),
        ("X:1\nK:G\n[CEG ABc|\n", "unbalanced brackets"),
    ],
)
def test_clean_tune_refuses_in_one_line(raw: str, words: str) -> None:
    started = time.perf_counter()
    with pytest.raises(AbcError) as info:
        clean_tune(raw)
    message = str(info.value)
    assert words in message
    assert "\n" not in message and "Traceback" not in message
    assert time.perf_counter() - started < 2
    assert issubclass(AbcError, InputFileError)


def test_read_tunebook_reports_refused_tunes_and_refuses_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "book.abc"
    path.write_text(BOOK + "\nX:9\nT:broken\nM:4/4\n\nX:10\nT:fine\nK:C\nCDEF|\n")
    tunes, refused = read_tunebook(path)
    assert [t.reference for t in tunes] == ["1", "2", "10"]
    assert refused == [("9", "the tune has no K: (key) field.")]
    binary = tmp_path / "junk.abc"
    binary.write_bytes(b"X:1\nK:C\n\x00\x00\xff\xfe" * 10)
    with pytest.raises(AbcError, match="binary data"):
        read_tunebook(binary)
    with pytest.raises(AbcError, match="could not be read"):
        read_tunebook(tmp_path / "missing.abc")


@needs_abc2midi
def test_parse_tune_plays_repeats_endings_tuplets_broken_rhythm_and_rests() -> None:
    tunes = [clean_tune(raw) for raw in split_tunes(BOOK)]
    jig = parse_tune(tunes[0])
    pitches = [n.pitch for n in jig.notes]
    part_a = [67, 69, 71, 69, 67, 64, 62, 62, 67, 69, 71, 74, 76, 74, 71, 69]
    part_b = [71, 74, 76, 78, 79, 78, 76, 74, 71, 74, 76, 74]
    # |: A :| twice, then |: B [1 :| [2: B with the first ending, B with the second.
    assert pitches == part_a * 2 + part_b + [71, 69, 67] + part_b + [71, 69, 67]
    assert jig.sequence_metadata.title == "The First Jig" and jig.reference_number == 1
    assert (jig.time_signatures[0].numerator, jig.time_signatures[0].denominator) == (6, 8)
    assert jig.key_signatures[0].key == 7
    eighth = 60 / 120 / 2
    second = parse_tune(tunes[1])
    starts = [round(n.start_time / eighth, 3) for n in second.notes]
    ends = [round(n.end_time / eighth, 3) for n in second.notes]
    # A pickup A, then d f a f | e (3ABc d | rest, F>G A<B c | d.
    assert [n.pitch for n in second.notes][:9] == [69, 74, 78, 81, 78, 76, 69, 71, 73]
    assert starts[:10] == [0, 1, 3, 5, 7, 9, 11, 11.667, 12.333, 13]
    assert starts[10:14] == [19, 20.5, 21, 21.5]  # z2, then F>G A<B
    assert ends[10:14] == [20.5, 21, 21.5, 23]
    assert second.key_signatures[0].key == 2


@needs_abc2midi
def test_parse_tune_keeps_the_highest_chord_note_and_the_first_voice() -> None:
    sequence = parse_tune("X:1\nT:c\nM:2/4\nL:1/4\nK:C\n[CEG] [DF]|[EGc]2|]\n")
    assert [n.pitch for n in sequence.notes] == [67, 65, 72]
    voices = parse_tune("X:1\nT:v\nM:2/4\nL:1/4\nV:1\nV:2\nK:C\nV:1\nc d|e2|\nV:2\nC, D,|E,2|\n")
    assert [n.pitch for n in voices.notes] == [72, 74, 76]


@needs_abc2midi
@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("X:1\nT:held\nM:4/4\nL:1/4\nK:C\nC D E F | G300000000 |\n", "quarter notes long"),
        ("X:1\nT:junk\nK:C\n\x00\x89PNG\x1a\n", "binary data"),
        ("X:1\nT:only a header\nM:6/8\nK:G\n", "no music"),
        ("hello there\nthis ]]] is {{{ not ABC at all ~~~\n", "K:"),
    ],
)
def test_parse_tune_refuses_in_one_line(text: str, words: str) -> None:
    started = time.perf_counter()
    with pytest.raises(AbcError) as info:
        parse_tune(text)
    message = str(info.value)
    assert words in message, message
    assert "\n" not in message and "Traceback" not in message
    assert time.perf_counter() - started < 3


@needs_abc2midi
def test_unknown_fields_and_odd_text_still_parse() -> None:
    sequence = parse_tune(
        "X:1\nT:x\nY:what\nI:abc-charset utf-8\nM:3/4\nL:1/8\nK:Ador\nABc dec|]\n"
    )
    assert [n.pitch for n in sequence.notes] == [69, 71, 72, 74, 76, 72]
    assert sequence.key_signatures[0].key == 9
    assert sequence.key_signatures[0].mode == sequence.key_signatures[0].DORIAN


def test_parse_tune_says_in_one_line_when_abc2midi_is_missing(monkeypatch) -> None:
    monkeypatch.setattr(abc.shutil, "which", lambda name: None)
    with pytest.raises(AbcError, match="abc2midi is not installed.*abcmidi") as info:
        parse_tune("X:1\nK:C\nCDE|\n")
    assert "\n" not in str(info.value)


@needs_abc2midi
def test_parse_tune_stops_a_hanging_abc2midi(monkeypatch, tmp_path: Path) -> None:
    slow = tmp_path / "abc2midi"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    monkeypatch.setattr(abc.shutil, "which", lambda name: str(slow))
    monkeypatch.setattr(abc, "ABC2MIDI_TIMEOUT_S", 0.5)
    started = time.perf_counter()
    with pytest.raises(AbcError, match="did not finish in 0.5 s"):
        parse_tune("X:1\nK:C\nCDE|\n")
    assert time.perf_counter() - started < 5


# ------------------------------------------------------------------------------ validity

GOOD = "X:1\nT:good\nM:6/8\nL:1/8\nK:G\nD|:GAB A2G|E2D D3|GAB d2e|1 d2B A2D:|2 d2B A3||\n"


@needs_abc2midi
def test_a_good_tune_is_valid_and_the_counts_include_tuplets_and_broken_rhythm() -> None:
    assert check_validity(GOOD).valid, check_validity(GOOD).reason
    tricky = (
        "X:2\nT:t\nM:4/4\nL:1/8\nK:D\n"
        "A>B c<d (3efg a2|[df]2 [ce]2 z4|(3:2:3A2B2c2 d2 e>f|\n"
        "g/a/b/c'/ d'2 e4|Z|Z2|d8|]\n"
    )
    validity = check_validity(tricky)
    assert validity.full_bars, validity.reason
    assert validity.valid


@needs_abc2midi
@pytest.mark.parametrize(
    ("text", "parses", "full_bars", "balanced", "words"),
    [
        # A bar one eighth short, mid-tune.
        ("X:1\nM:6/8\nL:1/8\nK:G\nGAB A2G|E2D D2|GAB d2e|d2B A3|]\n", True, False, True, "bar 2"),
        # One eighth long, even next to a repeat.
        ("X:1\nM:6/8\nL:1/8\nK:G\n|:GAB A2G|E2D D3|GAB d2e|d2B A4:|\n", True, False, True, "bar 4"),
        # A :| too many: nothing between two repeat ends.
        ("X:1\nM:6/8\nL:1/8\nK:G\n|:GAB A2G|E2D D3:| :|\n", True, True, False, ":| too many"),
        # |: never closed.
        ("X:1\nM:6/8\nL:1/8\nK:G\n|:GAB A2G|E2D D3|GAB d2e|d2B A3|]\n", True, True, False, "|:"),
        # A second ending that does not follow :|.
        ("X:1\nM:2/4\nL:1/8\nK:G\n|:GABc|[1 dcBA|[2 G4|]\n", True, True, False, "[2"),
    ],
)
def test_invalid_tunes_are_caught(text, parses, full_bars, balanced, words) -> None:
    validity = check_validity(text)
    assert (validity.parses, validity.full_bars, validity.balanced_repeats) == (
        parses,
        full_bars,
        balanced,
    ), validity.reason
    assert words in validity.reason
    assert not validity.valid


@needs_abc2midi
def test_a_colon_bar_with_no_start_repeats_from_the_start_and_rates_add_up() -> None:
    # ABC allows a :| with no |: (it repeats from the start, or from the previous :|).
    implicit = "X:1\nM:2/4\nL:1/8\nK:G\nGABc|dcBA:|\nBcde|dcBA:|\n"
    assert check_validity(implicit).valid
    bad = "X:1\nK:G\nGAB A2G|E2D D2|GAB d2e|d2B A3|]\n"  # no M: -> 4/4, every bar short
    unparsable = "X:1\nT:no key\nCDE|\n"
    rates = validity_rates([GOOD, implicit, bad, unparsable])
    assert rates["tunes"] == 4
    assert rates["parses"] == 0.75
    assert rates["full_bars"] == 0.5
    assert rates["valid"] == 0.5
    assert check_validity(unparsable).reason.endswith("music comes before the K: (key) field.")


def test_bar_check_judges_closed_bars_as_the_tune_is_written() -> None:
    """The sampler's check: the same rules as check_validity, on the bars closed so far;
    the bar being written, and a |: not yet closed, are not problems yet."""
    check = BarCheck("T:t\nM:6/8\nL:1/8\nK:G\n")
    assert check.check("D|:GAB A2G|E2D D3|") == (3, "")  # a pickup, then two full bars
    assert check.check("D|:GAB A2G|E2D D3|GA") == (3, "")  # the open bar is not judged
    closed, problem = check.check("D|:GAB A2G|E2D D2|")
    assert closed == 3 and problem.startswith("bar 3 lasts 5/8")
    assert check.check("D|:GAB A2G|E2D D4|")[1].startswith("bar 3 lasts")  # too long
    assert check.check("GAB A2G|E2D D2:|")[1] == ""  # short next to a repeat: a split bar
    assert check.check("|:GAB A2G|:E2D D3|")[1].startswith("line 1: a |: while another")
    # bars already judged are not judged again
    assert check.check("GAB A2G|E2D D2|GAB A2G|", first=2) == (3, "")
    # the finished tune is judged whole: its open |: is a problem now
    assert not check.check_whole("|:GAB A2G|E2D D3|\n").balanced_repeats
    assert check.check_whole("|:GAB A2G|E2D D3:|\n").valid
    # M: and L: from the header; no L: means an eighth in 6/8, a sixteenth in 2/4
    assert BarCheck("M:2/4\nK:D\n").check("ABcd efga|")[1] == ""
    assert BarCheck("M:2/4\nK:D\n").check("ABcd efga|ABcd|b2|")[1].startswith("bar 2")


def test_bar_check_passes_over_problems_judged_and_kept_before() -> None:
    """A problem kept once (the sampler's tries ran out, or the user's opening has it) is
    judged no more: a repeat mark or an unreadable character before ``since`` (the text
    kept) does not fail every later bar; a new problem after it still does."""
    check = BarCheck("T:t\nM:6/8\nL:1/8\nK:G\n")
    kept = "|:GAB A2G|:E2D D3|"  # a |: while another |: is open
    assert check.check(kept)[1].startswith("line 1: a |: while another |: is still open")
    assert check.check(kept + "GAB A2G|", first=2)[1].startswith("line 1: a |: while")
    assert check.check(kept + "GAB A2G|", first=2, since=len(kept)) == (3, "")
    assert check.check(kept + "GAB A2G|E2D D3:|", first=3, since=len(kept + "GAB A2G|")) == (
        4,
        "",
    )
    again = kept + "GAB A2G|:E2D D3|"  # the second |: is open still: a new problem
    assert check.check(again, first=2, since=len(kept))[1].startswith("line 1: a |: while")
    ended = kept + "[1 GAB A2G:|[2 GAB A2G||"  # endings after a kept problem pair up
    assert check.check(ended, first=2, since=len(kept)) == (4, "")
    assert check.check(kept + "G2||", first=2, since=len(kept))[1].startswith(
        "line 1: the section ends while a |: is still open"
    )
    # an unreadable character kept: the later bars are judged on their own
    stray = "GAB A2&G|"
    assert check.check(stray)[1] == "unexpected '&' in line 1"
    assert check.check(stray + "E2D D3|", first=1, since=len(stray)) == (2, "")
    assert check.check(stray + "E2D& D3|", first=1, since=len(stray))[1].startswith("unexpected")
    # the finished tune, judged from the kept text on: a |: left open is a problem now
    assert check.check(kept + "GAB A2G|\n", first=2, since=len(kept), whole=True)[1] == (
        "a |: is never closed by a :|"
    )
    assert check.check(kept + "GAB A2G:|\n", first=2, since=len(kept), whole=True)[1] == ""


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("GABc dedc|[", 0, 10),  # a [ after a bar line completes it (a chord, a field)
        ("GABc dedc|", 0, -1),  # nothing after it yet: |] or || may follow
        ("GABc dedc|[Ac][Bd]c", 10, -1),  # a chord's ] is no bar line
        ("GABc [K:D] d", 0, -1),  # nor an inline field's colon
        ('"G|"A', 0, -1),  # nor a | in a chord symbol
        ("(3::ABc", 0, -1),  # nor a tuplet's colons
        ("A|:B", 0, 3),
        ("A|:", 0, -1),
        ("A:|:B", 0, 4),
        ("A:|2 B", 0, 4),  # an ending written on the bar line is part of it
        ("A|1,", 0, -1),  # |1,3 may follow
        ("A||B|C", 0, 5),  # the last complete one
        ("A|]\n", 0, 3),
        ("A|B|C", 2, 4),  # from start on
        ("A|B|", 2, -1),
    ],
)
def test_bar_line_end_finds_complete_bar_lines_only(text, start, end) -> None:
    """A sampler judges bars once a complete bar line is written, up to its end; a [ after
    one (a chord, an inline field), a chord's ] or an inline field's colon judges nothing
    more."""
    assert BarCheck.bar_line_end(text, start) == end


# --------------------------------------------------------------------------- writing ABC


def _notes(sequence):
    """(onset in sixteenths, pitch) of each note."""
    qpm = sequence.tempos[0].qpm
    return [(round(n.start_time * qpm / 60 * 4), n.pitch) for n in sequence.notes]


@needs_abc2midi
def test_to_abc_round_trips_real_melodies_through_parse_tune() -> None:
    tunes = [clean_tune(raw) for raw in split_tunes(BOOK)]
    melodies = [
        (parse_tune(tunes[0]), "6/8", "G", "major"),
        # A tune in Bb minor with chromatic notes, ties over bar lines and rests.
        (
            parse_tune(
                "X:1\nT:b\nM:3/4\nL:1/8\nK:Bbm\n"
                "B,2 =A,2 B,2-|B,2 D2 F2|=E2 F2 _G2|=G4 z2|F6-|F2 ^F2 =F2|B,6|]\n"
            ),
            "3/4",
            "Bb",
            "minor",
        ),
        # Sixteenths, dotted notes and a chromatic run in D dorian.
        (
            parse_tune("X:1\nT:c\nM:4/4\nL:1/16\nK:Ddor\nD3E F2^F2 G4 ^G4|A8 z4 c4|d16|]\n"),
            "4/4",
            "D",
            "dorian",
        ),
    ]
    for sequence, meter, key, mode in melodies:
        text = to_abc(sequence, "Round trip", meter, key, mode)
        back = parse_tune(text)
        assert _notes(back) == _notes(sequence), text
        assert check_validity(text).valid, (check_validity(text).reason, text)


@needs_abc2midi
def test_to_abc_writes_events_spelled_in_the_key_with_ties_and_rests() -> None:
    # Magenta melody events: pitch, -2 hold, -1 note off; one per sixteenth, in 3/4.
    events = [66, -2, -2, -2, 70, -2, -1, -2, 73, -2, -2, -2]
    events += [-2, -2, -2, -2, 72, -2, -2, -2, 78, -2, -2, -2]
    text = to_abc(events, "Events", "3/4", "E", "major")
    assert text.splitlines()[:6] == ["X:1", "T:Events", "M:3/4", "L:1/8", "Q:1/4=120", "K:E"]
    body = "\n".join(text.splitlines()[6:])
    assert body == "F2 ^A z c2- | c2 =c2 f2 |]"
    back = parse_tune(text)
    assert _notes(back) == [(0, 66), (4, 70), (8, 73), (16, 72), (20, 78)]
    assert to_abc([62] + [-2] * 15, "D", "4/4", 2, "minor").splitlines()[-2] == "K:Dm"


def test_to_abc_refuses_a_bad_mode_or_unit_in_one_line() -> None:
    with pytest.raises(AbcError, match="unknown mode"):
        to_abc([60, -2], "x", "4/4", "C", "bluesy")
    with pytest.raises(AbcError, match="unit"):
        to_abc([60, -2], "x", "4/4", "C", "major", unit="3/7")


@needs_abc2midi
def test_eight_tunes_parse_well_under_a_second() -> None:
    text = to_abc([60 + (i % 12) if i % 2 == 0 else -2 for i in range(16 * 16)], "x", "4/4", "C")
    tune = clean_tune(text)
    started = time.perf_counter()
    for _ in range(8):
        parse_tune(tune)
    assert time.perf_counter() - started < 1.0


def test_abc_tune_is_a_frozen_value() -> None:
    tune = AbcTune("K:C\nC|\n", "1", "", None, None, "C", None)
    with pytest.raises(AttributeError):
        tune.text = "x"  # type: ignore[misc]
    assert tune.header == "K:C\n" and tune.body == "C|\n"


@needs_abc2midi
def test_parsing_in_threads_leaves_the_warning_filters_as_they_were() -> None:
    """No warnings.catch_warnings() in the parse path: in threads it swaps the process's
    filters under each other (leftovers or losses); pretty_midi's one warning is silenced
    once, at import, instead."""
    import subprocess
    import sys
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    abc.parse_tune("X:1\nT:first\nM:6/8\nL:1/8\nK:G\nGAB|\n")  # imports done, filters set
    before = list(warnings.filters)
    tunes = [f"X:1\nT:t{i}\nM:6/8\nL:1/8\nK:G\n|:GAB c2d|e2d c2B:|\n" for i in range(24)]
    with ThreadPoolExecutor(8) as pool:
        sequences = list(pool.map(abc.parse_tune, tunes))
    assert all(len(sequence.notes) == 18 for sequence in sequences)
    assert warnings.filters == before
    # pretty_midi's warning about a tempo on another track: silenced for the process at
    # import (checked in a fresh process, warnings as errors: pytest resets filters).
    script = (
        "import io, mido\n"
        "from melodygen.io import music\n"
        "midi = mido.MidiFile(type=1)\n"
        "midi.tracks.append(mido.MidiTrack([mido.Message('note_on', note=60, time=0),"
        " mido.Message('note_off', note=60, time=480)]))\n"
        "midi.tracks.append(mido.MidiTrack([mido.MetaMessage('set_tempo', tempo=400000)]))\n"
        "data = io.BytesIO()\n"
        "midi.save(file=data)\n"
        "print(len(music._midi_bytes_to_sequence('t.mid', data.getvalue()).notes))\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parent.parent,
    )
    # (the last line: pyfluidsynth may print where it found its library on a fresh machine)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip().splitlines()[-1] == "1", done.stdout
