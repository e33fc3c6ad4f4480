"""Sheet music: MusicXML read back with music21, ABC read back with the ABC parser, the
verovio score, the CLI's --abc and --musicxml, and one line for what cannot be written."""

from __future__ import annotations

import shutil
import time
from fractions import Fraction

import numpy as np
import pytest

from melodygen import notation
from melodygen.core.generation import GeneratedMelody
from melodygen.io.primer import parse_primer
from melodygen.theory import NO_EVENT, NOTE_OFF, Meter


def melody(events, meter=(4, 4), key=None, mode="major", qpm=120.0, **kwargs) -> GeneratedMelody:
    return GeneratedMelody(
        events=list(events),
        primer_steps=0,
        log_likelihood=0.0,
        qpm=qpm,
        meter=Meter(*meter),
        key=key,
        mode=mode,
        **kwargs,
    )


def notes_of(events) -> list[tuple[int, int, int]]:
    """(start step, stop step, pitch) of each note."""
    found, current = [], None
    for step, event in enumerate([*events, NOTE_OFF]):
        if event == NO_EVENT:
            continue
        if current is not None:
            found.append((current[0], step, current[1]))
            current = None
        if event >= 0:
            current = (step, event)
    return found


def random_melody(bars: int, meter: Meter, seed: int, low: int = 55, high: int = 80) -> list:
    rng = np.random.default_rng(seed)
    events: list[int] = []
    steps = bars * meter.steps_per_bar
    while len(events) < steps:
        length = int(rng.choice([1, 2, 2, 3, 4, 5, 6, 7, 8, 12]))
        start = [NOTE_OFF] if rng.random() < 0.1 else [int(rng.integers(low, high))]
        events += start + [NO_EVENT] * (length - 1)
    return events[:steps]


def joined_notes(part) -> list[tuple[int, int, int]]:
    """(start step, stop step, pitch) of a music21 part's notes, tied pieces joined."""
    found: list[tuple[int, int, int]] = []
    for note in part.flatten().notes:
        start = round(note.offset * 4)
        stop = round((note.offset + note.quarterLength) * 4)
        if note.tie is not None and note.tie.type in ("continue", "stop"):
            assert found[-1][1] == start and found[-1][2] == note.pitch.midi
            found[-1] = (found[-1][0], stop, found[-1][2])
        else:
            found.append((start, stop, note.pitch.midi))
    return found


def read_back(data: bytes):
    from music21 import converter

    return converter.parseData(data.decode("utf-8"), format="musicxml")


@pytest.mark.parametrize(
    ("meter", "key", "mode", "fifths", "spelled"),
    [
        ((3, 4), 2, "minor", -1, {70: "B-", 73: "C#", 66: "F#"}),  # Bb in the key, C# leading
        ((6, 8), 10, "major", -2, {63: "E-", 68: "A-", 66: "G-"}),  # Eb, Ab; other black: flats
        ((2, 4), 4, "dorian", 2, {66: "F#", 61: "C#", 68: "G#"}),
    ],
)
def test_musicxml_reads_back_to_the_same_notes_key_and_meter(meter, key, mode, fifths, spelled):
    meter_obj = Meter(*meter)
    events = random_melody(8, meter_obj, seed=sum(meter) + key)
    events[: 3 * meter_obj.steps_per_bar // 2] = []  # a bar and a half shorter: a pickup end
    events = events + [next(iter(spelled))] + [NO_EVENT] * 3
    for step, pitch in zip((5, 9, 13), spelled, strict=False):
        events[step] = pitch
    data = notation.musicxml_bytes(melody(events, meter, key, mode), title="Test & <tune>")
    score = read_back(data)
    assert score.metadata.title == "Test & <tune>"
    part = score.parts[0]
    signature = part.recurse().getElementsByClass("KeySignature")[0]
    assert signature.sharps == fifths
    time_signature = part.recurse().getElementsByClass("TimeSignature")[0]
    assert time_signature.ratioString == f"{meter[0]}/{meter[1]}"
    assert joined_notes(part) == notes_of(events)  # tied pieces joined: the same notes
    names = {n.pitch.midi: n.pitch.name for n in part.flatten().notes}
    for pitch, name in spelled.items():
        assert names[pitch] == name, (pitch, names[pitch])
    # Every bar but the last is full; no note crosses a bar line.
    measures = list(part.getElementsByClass("Measure"))
    assert all(m.duration.quarterLength * 4 == meter_obj.steps_per_bar for m in measures[:-1])


def test_notes_are_split_at_beats_and_bar_lines_and_tied():
    # In 4/4: a dotted quarter off the beat, a note across the bar line, a 5-step note.
    events = [60, NO_EVENT, 62] + [NO_EVENT] * 5 + [64] + [NO_EVENT] * 9 + [65] + [NO_EVENT] * 4
    data = notation.musicxml_bytes(melody(events, key=0)).decode()
    assert data.count('<tie type="start"/>') == data.count('<tie type="stop"/>') >= 3
    score = read_back(data.encode())
    lengths = [n.quarterLength for n in score.parts[0].flatten().notes]
    allowed = {0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0}
    assert set(lengths) <= allowed


def test_primer_and_event_list_are_written_too():
    primer = parse_primer("3/4 D4 F4 A4 | C#5:4 D5:8")
    score = read_back(notation.musicxml_bytes(primer, key="D", mode="minor"))
    assert [n.pitch.name for n in score.parts[0].flatten().notes] == ["D", "F", "A", "C#", "D"]
    assert score.parts[0].recurse().getElementsByClass("TimeSignature")[0].ratioString == "3/4"
    plain = notation.musicxml_bytes([60, NO_EVENT, 64, NO_EVENT])
    assert b"<fifths>0</fifths>" in plain  # no key given: estimated (C major)


@pytest.mark.skipif(shutil.which("abc2midi") is None, reason="needs abc2midi")
def test_abc_of_a_note_melody_parses_back_to_its_notes():
    from melodygen.io.abc import parse_tune

    # Over two octaves: an accidental in one octave is written again in the other, as ABC
    # keeps it per octave but abc2midi for every octave of the letter (=f/ F/ in G major).
    events = random_melody(16, Meter(6, 8), seed=3, low=55, high=84)
    tune = melody(events, (6, 8), key=7, mode="major", qpm=100)
    text = notation.abc_text(tune, title="Back again")
    assert "T:Back again" in text and "M:6/8" in text and "K:G" in text
    sequence = parse_tune(text)
    played = sorted((round(n.start_time * 100 / 15), n.pitch) for n in sequence.notes)
    assert played == [(start, pitch) for start, _, pitch in notes_of(events)]


def test_abc_text_is_the_familys_own_when_it_has_one():
    own = melody([], text="T:Mine\nM:6/8\nK:G\n|:GAB c2d:|", problem="bars do not add up")
    assert notation.abc_text(own) == "X:1\nT:Mine\nM:6/8\nK:G\n|:GAB c2d:|"
    with pytest.raises(notation.NotationError) as caught:
        notation.musicxml_bytes(own)
    assert "could not be read as music" in str(caught.value) and "bars do not add up" in str(
        caught.value
    )


def test_score_svg_is_an_engraved_score_with_every_note():
    events = random_melody(16, Meter(4, 4), seed=5)
    svg = notation.score_svg(melody(events, key=5, mode="major"), width=600)
    assert svg.startswith("<svg") and 'width="600"' in svg
    heads = notation.musicxml_bytes(melody(events, key=5)).count(b"<pitch>")  # tied pieces too
    assert heads >= len(notes_of(events))
    assert svg.count('class="note"') == heads
    assert svg.count('class="measure"') == 16
    systems = svg.count('class="system"')
    assert svg.count('class="keyAccid"') == systems  # F major: one flat on every system
    # Wider systems hold more bars: fewer staves one under the other.
    narrow = notation.score_svg(melody(events, key=5), width=400)
    assert narrow.count('class="system"') > svg.count('class="system"')


HOSTILE = [
    (melody([]), "no notes"),
    (melody([NOTE_OFF, NO_EVENT, NO_EVENT]), "no notes"),
    (melody([60, 300]), "out of range"),
    (melody([60, -7]), "out of range"),
    (melody([60] * (notation.MAX_NOTATION_STEPS + 1)), "at most"),
    (melody([60.5]), "not a whole number"),
    (melody([60], mode="bebop"), "unknown mode"),
    (melody([], text="K:G\n", problem="the tune has a header but no music"), "no music"),
    ("C4 E4 G4", "not str"),
]


@pytest.mark.parametrize(("bad", "words"), HOSTILE)
def test_what_cannot_be_notated_is_one_line(bad, words):
    for function in (notation.musicxml_bytes, notation.score_svg):
        with pytest.raises(notation.NotationError) as caught:
            function(bad)
        message = str(caught.value)
        assert words in message and "\n" not in message and len(message) < 300
    with pytest.raises(notation.NotationError):
        notation.score_svg(melody([60]), width=5)


def test_notation_for_eight_tunes_is_fast():
    tunes = [melody(random_melody(16, Meter(6, 8), seed=i), (6, 8), key=2) for i in range(8)]
    notation.score_svg(tunes[0])  # warm-up: the engraver's fonts
    started = time.perf_counter()
    for tune in tunes:
        notation.score_svg(tune)
        notation.musicxml_bytes(tune)
    assert time.perf_counter() - started < 2.0  # 0.2 s measured; the CPU may be busy


@pytest.mark.skipif(shutil.which("abc2midi") is None, reason="needs abc2midi")
def test_cli_writes_abc_and_musicxml_beside_each_midi(tmp_path, capsys):
    from studio_fixtures import make_checkpoints

    from melodygen.cli import main

    checkpoints = make_checkpoints(tmp_path / "checkpoints")
    out = tmp_path / "out"
    code = main(
        [
            "generate",
            "--checkpoint",
            str(checkpoints / "folk_attention_rnn"),
            "--num-outputs",
            "2",
            "--bars",
            "4",
            "--key",
            "D",
            "--mode",
            "minor",
            "--seed",
            "1",
            "--abc",
            "--musicxml",
            "--name",
            "tune",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "tune_01.abc",
        "tune_01.mid",
        "tune_01.musicxml",
        "tune_02.abc",
        "tune_02.mid",
        "tune_02.musicxml",
    ]
    assert "K:Dm" in (out / "tune_01.abc").read_text()
    assert b"<fifths>-1</fifths>" in (out / "tune_02.musicxml").read_bytes()


TRIPLET_TUNE = "T:Triplets\nM:6/8\nL:1/8\nK:G\n|:(3ABA G2 D2|[M:9/8] G3 A3 B3|[M:6/8] c2B A2G:|\n"


@pytest.mark.skipif(shutil.which("abc2midi") is None, reason="needs abc2midi")
def test_a_tune_with_its_own_abc_is_written_from_its_text():
    from music21 import converter

    from melodygen.io.abc import clean_tune, parse_tune

    sequence = parse_tune(clean_tune(TRIPLET_TUNE))
    tune = GeneratedMelody.from_sequence(sequence, 0.0, index=0, text=TRIPLET_TUNE, key=7)
    svg = notation.score_svg(tune)
    assert 'class="tuplet"' in svg and 'class="tupletNum"' in svg
    assert svg.count("#E044") == 4  # repeat dots: two at the |:, two at the :|
    assert svg.count('class="meterSig"') == 3  # 6/8, then 9/8 and 6/8 again
    data = notation.musicxml_bytes(tune)
    assert data.count(b"<time-modification>") == 3
    assert b'<repeat direction="forward"' in data and b'<repeat direction="backward"' in data
    part = converter.parse(data, format="musicxml").parts[0]
    bars = list(part.getElementsByClass("Measure"))
    assert [bar.duration.quarterLength for bar in bars] == [3.0, 4.5, 3.0]  # not written out
    first = [(note.name, note.quarterLength) for note in bars[0].notes]
    third = Fraction(1, 3)
    assert first[:3] == [("A", third), ("B", third), ("A", third)]  # three in the time of two
    assert first[3:] == [("G", 1.0), ("D", 1.0)]
    # Asked for another meter or key, it comes from the grid as before.
    assert b"<time-modification>" not in notation.musicxml_bytes(tune, key="D")


ENDINGS_TUNE = (
    "X:1\nT:Endings\nM:6/8\nL:1/8\nK:G\n"
    'D|:GAB A2G|1 E2D D3:|2 E2D G2||\n|:B|d2B A2G|[1[GB]AG "D"F3:|[2"G"G3 G2|]\n'
)


def test_variant_endings_are_drawn_and_written_and_verovio_crashers_are_read():
    """Verovio's ABC reader drops first and second endings: they are put back, in the
    score and in the MusicXML. This tune's `[1[GB]` and `[2"G"` crashed verovio 6.4.1
    outright (the process died); it is given them spaced out, the same music."""
    from music21 import converter, spanner

    from melodygen.io.abc import clean_tune, parse_tune, variant_endings

    assert variant_endings(ENDINGS_TUNE) == (
        8,
        [(2, 2, "1"), (3, 3, "2"), (6, 6, "1"), (7, 7, "2")],
    )
    sequence = parse_tune(clean_tune(ENDINGS_TUNE))
    tune = GeneratedMelody.from_sequence(sequence, 0.0, index=0, text=ENDINGS_TUNE, key=7)
    svg = notation.score_svg(tune)
    assert svg.count('class="ending systemMilestone"') == 4
    part = converter.parse(notation.musicxml_bytes(tune), format="musicxml").parts[0]
    bars = list(part.getElementsByClass("Measure"))
    assert len(bars) == 8
    brackets = [
        (bracket.number, [bars.index(bar) for bar in bracket.getSpannedElements()])
        for bracket in part.spannerBundle.getByClass(spanner.RepeatBracket)
    ]
    assert sorted(brackets) == [("1", [2]), ("1", [6]), ("2", [3]), ("2", [7])]


def test_a_crash_or_hang_of_the_engraver_costs_one_score(monkeypatch):
    """Verovio reads ABC in a process of its own: when it dies or hangs, that one score
    comes from the melody's notes, with a warning, and the next tune gets a new process."""
    import subprocess
    import sys

    from melodygen.io.abc import clean_tune, parse_tune

    engraver = notation._ENGRAVER
    sequence = parse_tune(clean_tune(ENDINGS_TUNE))
    tune = GeneratedMelody.from_sequence(sequence, 0.0, index=0, text=ENDINGS_TUNE, key=7)
    garbled = (
        "import sys, time; sys.stdin.readline(); print('verovio says hi', flush=True); "
        "time.sleep(60)"
    )
    for script, words in (
        ("pass", "crashed"),  # dies at once
        ("import time; time.sleep(60)", "took over"),  # never answers
        (garbled, "crashed"),  # answers what is not a reply
    ):
        engraver.stop()
        engraver.process = subprocess.Popen(
            [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        dead = engraver.process
        monkeypatch.setattr(notation, "ENGRAVER_TIMEOUT_S", 1.0)
        with pytest.raises(notation.NotationError, match=words):
            engraver.call("read", text=ENDINGS_TUNE)
        assert dead.poll() is not None and engraver.process is None  # ended, not left
    svg = notation.score_svg(tune)  # a new process: the score has its endings again
    assert svg.count('class="ending systemMilestone"') == 4

    # a score whose ABC the engraver cannot draw comes from the grid
    def crash(*args, **kwargs):
        raise notation.NotationError("the score engraver (verovio) crashed reading this tune")

    monkeypatch.setattr(engraver, "call", crash)
    svg = notation.score_svg(tune)
    assert 'class="note"' in svg and 'class="ending' not in svg
