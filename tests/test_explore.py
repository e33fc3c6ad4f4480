"""Tests for melodygen.explore and `melodygen dataset explore`: a collection's numbers.

Every file is written here in code (pretty_midi for MIDI, ABC text), with known
instruments, lengths, keys, meters and tags, so each figure's numbers are checked
against what the files hold; never against timings.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import json
import re
import shutil
from pathlib import Path

import pretty_midi
import pytest

from melodygen.cli import main
from melodygen.errors import InputFileError
from melodygen.explore import (
    DEFAULT_MAX_FILES,
    FIGURES,
    Exploration,
    estimate_key_from_durations,
    explore,
    write_outputs,
)
from melodygen.io.music import ExtractionParams, extract_melodies, load_note_sequences
from melodygen.limits import DATASET_MIDI, RANGES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
needs_abc2midi = pytest.mark.skipif(
    shutil.which("abc2midi") is None, reason="abc2midi (Debian abcmidi) is not installed"
)

SCALE = [60, 62, 64, 65, 67, 69, 71, 72]


def _notes(instrument: pretty_midi.Instrument, pitches, beats: int, qpm: float, start=0.0):
    """One note a beat (a quarter note), cycling through ``pitches``."""
    beat = 60.0 / qpm
    for index in range(beats):
        time = start + index * beat
        pitch = pitches[index % len(pitches)]
        instrument.notes.append(pretty_midi.Note(90, pitch, time, time + beat * 0.9))
    return instrument


def write_band(path: Path) -> Path:
    """8 bars of 4/4 at 120 in G major (written): a piano melody, a two-note bass, drums."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    midi.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
    midi.key_signature_changes.append(pretty_midi.KeySignature(7, 0.0))  # G major
    midi.instruments.append(
        _notes(pretty_midi.Instrument(0, name="Lead"), [67, 69, 71, 72, 74, 76, 78], 32, 120.0)
    )
    midi.instruments.append(_notes(pretty_midi.Instrument(33, name="Bass"), [43, 50], 32, 120.0))
    midi.instruments.append(
        _notes(pretty_midi.Instrument(0, is_drum=True, name="Kit"), [36, 38], 32, 120.0)
    )
    midi.write(str(path))
    return path


def write_strings(path: Path) -> Path:
    """8 bars of 3/4 at 90, no key written: a violin line in C major (estimated)."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=90.0)
    midi.time_signature_changes.append(pretty_midi.TimeSignature(3, 4, 0.0))
    tune = [60, 64, 67, 72, 67, 64, 60, 62, 65, 69, 71, 67]
    midi.instruments.append(_notes(pretty_midi.Instrument(40, name="Violin"), tune, 24, 90.0))
    midi.write(str(path))
    return path


def write_drums(path: Path) -> Path:
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    midi.instruments.append(
        _notes(pretty_midi.Instrument(0, is_drum=True), [36, 38, 42], 32, 120.0)
    )
    midi.write(str(path))
    return path


def write_short(path: Path) -> Path:
    """2 bars of 4/4: shorter than the 7 bars a melody needs."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    midi.instruments.append(_notes(pretty_midi.Instrument(0), SCALE, 8, 120.0))
    midi.write(str(path))
    return path


TUNEBOOK = """\
X:1
T:The Test Reel
R:reel
M:4/4
L:1/8
K:D
|:DEFG ABcd|edcB AGFE|DEFG ABcd|edcB A4:|
|:fedc BAGF|EFGA Bcde|fedc BAGF|E2D2 D4:|

X:2
T:A Gavotte
R:gavotte
M:2/4
L:1/8
K:Ador
ABcd|efge|dcBA|GABc|ABcd|efge|dcBA|A4|

X:3
T:No Key Here
M:4/4
ABcd|
"""
"""Two tunes (a reel in D, a gavotte in A dorian: a tag outside the dance types) and one
that cannot be read (music before any K: field)."""


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    """A folder of every kind of file, one of them in a subfolder."""
    folder = tmp_path / "collection"
    (folder / "more").mkdir(parents=True)
    write_band(folder / "band.mid")
    write_strings(folder / "more" / "strings.mid")
    write_drums(folder / "drums.mid")
    write_short(folder / "short.mid")
    (folder / "broken.mid").write_text("this is not a MIDI file")
    (folder / "tunes.abc").write_text(TUNEBOOK)
    (folder / "README.txt").write_text("not music: skipped when found in a folder")
    return folder


@pytest.fixture
def explored(collection: Path) -> Exploration:
    return explore(collection, workers=1)


def _song(exploration: Exploration, name: str):
    return next(song for song in exploration.songs if song.song == name)


@needs_abc2midi
def test_songs_carry_what_their_files_hold(explored: Exploration) -> None:
    assert sorted(explored.files) == [
        "band.mid",
        "broken.mid",
        "drums.mid",
        "more/strings.mid",
        "short.mid",
        "tunes.abc",
    ]
    assert [song.song for song in explored.songs] == [
        "band.mid",
        "drums.mid",
        "more/strings.mid",
        "short.mid",
        "tunes.abc X:1",
        "tunes.abc X:2",
    ]
    band = _song(explored, "band.mid")
    assert band.instruments == {"Piano": 32, "Bass": 32, "Drums": 32}
    assert (band.notes, band.drum_notes, band.lowest, band.highest) == (64, 32, 43, 78)
    assert band.bars == pytest.approx(8.0, abs=0.05)  # to the last note's end
    assert band.notes_per_bar == pytest.approx(8.0, abs=0.1)
    assert (band.key, band.key_from, band.meter, band.tempo) == ("G major", "written", "4/4", 120)
    strings = _song(explored, "more/strings.mid")
    assert strings.instruments == {"Strings": 24}
    assert (strings.key, strings.key_from) == ("C major", "estimated")
    assert (strings.meter, strings.tempo) == ("3/4", 90)
    assert strings.bars == pytest.approx(8.0, abs=0.05)
    reel = _song(explored, "tunes.abc X:1")
    assert (reel.kind, reel.title, reel.key, reel.meter) == (
        "ABC",
        "The Test Reel",
        "D major",
        "4/4",
    )
    assert (reel.tag, reel.tag_from) == ("reel", "R:")
    assert reel.instruments == {"ABC tune (no instrument)": reel.notes}
    assert reel.bars == pytest.approx(16.0, abs=0.05)  # 8 bars, each half repeated
    gavotte = _song(explored, "tunes.abc X:2")
    assert (gavotte.key, gavotte.meter, gavotte.tag) == ("A dorian", "2/4", "gavotte")
    assert _song(explored, "drums.mid").meter == "4/4"  # pretty_midi writes 4/4 unasked


@needs_abc2midi
def test_the_figures_numbers(explored: Exploration) -> None:
    tables = explored.tables()
    assert set(FIGURES) <= set(tables) and {"songs", "problems"} <= set(tables)
    assert tables["instruments"].rows == [
        ("Piano", 2, 32 + 8),
        ("Bass", 1, 32),
        ("Strings", 1, 24),
        ("Drums", 2, 64),
        (
            "ABC tune (no instrument)",
            2,
            _song(explored, "tunes.abc X:1").notes + _song(explored, "tunes.abc X:2").notes,
        ),
    ]
    keys = {row[0]: row[1:] for row in tables["keys"].rows}
    # written: band.mid's key signature, the tunes' K:; estimated: the violin, the scale
    assert keys == {"G major": (1, 0), "D major": (1, 0), "A dorian": (1, 0), "C major": (0, 2)}
    meters = {row[0]: row[1] for row in tables["meters"].rows}
    assert meters == {"4/4": 4, "3/4": 1, "2/4": 1}
    tags = {row[0]: row[1:3] for row in tables["tags"].rows}
    assert tags == {"reel": (1, 1), "gavotte": (1, 1), "(none)": (4, 0)}
    tempos = tables["tempos"].rows
    assert sum(row[2] for row in tempos) == 6
    assert any(row[0] <= 90 < row[1] and row[2] == 1 for row in tempos)
    lengths = tables["lengths"].rows
    assert sum(row[2] for row in lengths) == 6  # every song with bars
    assert sum(row[3] for row in lengths) == explored.extraction["melodies_kept"]
    short = _song(explored, "short.mid").bars
    assert any(row[0] <= short < row[1] and row[2] == 1 for row in lengths)
    pitches = {row[0]: row[2] for row in tables["pitches"].rows}
    assert pitches[43] == 16  # the bass's low G, every other beat of 8 bars
    assert sum(pitches.values()) == sum(song.notes for song in explored.songs)
    assert tables["pitches"].title.startswith("Pitch range: G2 (43) to")
    per_bar = tables["notes_per_bar"].rows
    band = _song(explored, "band.mid").notes_per_bar
    assert any(row[0] <= band < row[1] and row[2] >= 1 for row in per_bar)
    assert sum(row[2] for row in per_bar) == 5  # every song with pitched notes


@needs_abc2midi
def test_extraction_counts_are_the_dataset_builds(collection: Path, explored: Exploration) -> None:
    """The counters are extract_melodies' own, summed as `dataset build` sums them."""
    expected: dict[str, int] = {"melodies_kept": 0}
    for path in sorted(collection.rglob("*")):
        if path.suffix not in (".mid", ".abc") or path.name == "broken.mid":
            continue
        for sequence in load_note_sequences(path, DATASET_MIDI):
            melodies, stats = extract_melodies(sequence, ExtractionParams())
            expected["melodies_kept"] += len(melodies)
            for name, count in stats.items():
                expected[name] = expected.get(name, 0) + count
    assert explored.extraction == expected
    # band: the piano line is kept, the two-note bass dropped; strings and both tunes kept
    assert expected["melodies_kept"] == 4
    assert expected["melodies_discarded_too_few_pitches"] == 1
    assert expected["melodies_discarded_too_short"] == 1  # short.mid
    assert expected["no_pitched_notes"] == 1  # drums.mid
    rows = {row[0]: row[2] for row in explored.tables()["extraction"].rows}
    assert rows == expected
    plain = json.loads(json.dumps(explored.to_dict()))  # plain data, for a page or a file
    assert plain["extraction"] == expected and plain["songs"] == 6
    assert plain["tables"]["meters"]["rows"] == [
        list(row) for row in explored.tables()["meters"].rows
    ]
    assert explored.tables()["extraction"].rows[0][0] == "melodies_kept"


@needs_abc2midi
def test_the_problems_table(collection: Path) -> None:
    exploration = explore([collection, collection / "README.txt"], workers=1)
    problems = {(p.file, p.song): p.problem for p in exploration.problems}
    assert set(problems) == {
        ("README.txt", ""),
        ("broken.mid", ""),
        ("drums.mid", "drums.mid"),
        ("short.mid", "short.mid"),
        ("tunes.abc", ""),
    }
    assert problems[("broken.mid", "")].startswith("unreadable: not a MIDI file")
    assert str(collection) not in problems[("broken.mid", "")]  # the file column names it
    assert problems[("drums.mid", "drums.mid")] == "drums only: no melody to learn"
    assert problems[("short.mid", "short.mid")] == (
        "too short: 2.0 bars, a melody needs at least 7"
    )
    assert problems[("tunes.abc", "")].startswith("1 of 3 tunes could not be read")
    assert "tune 3" in problems[("tunes.abc", "")]
    assert problems[("README.txt", "")].startswith("not a music file ('.txt')")
    assert exploration.files_with_problems == 5
    assert "README.txt" in exploration.files


def test_a_song_whose_melodies_are_all_dropped_says_why(tmp_path: Path) -> None:
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    midi.instruments.append(_notes(pretty_midi.Instrument(0), [60, 62], 40, 120.0))
    midi.write(str(tmp_path / "two_notes.mid"))
    exploration = explore(tmp_path, workers=1)
    assert [p.problem for p in exploration.problems] == [
        "no melody kept (melodies dropped: too few pitch classes)"
    ]


def test_limits_of_a_file_are_the_dataset_builds(tmp_path: Path, monkeypatch) -> None:
    """A file beyond the dataset limits is a problem that says which limit, not a stop."""
    write_short(tmp_path / "big.mid")
    write_band(tmp_path / "band.mid")
    smaller = dataclasses.replace(DATASET_MIDI, max_bytes=(tmp_path / "big.mid").stat().st_size - 1)
    monkeypatch.setattr("melodygen.explore.DATASET_MIDI", smaller)
    exploration = explore(tmp_path, workers=1)
    (problem,) = [p for p in exploration.problems if p.file == "big.mid"]
    assert problem.problem.startswith("beyond the limits: it is ")
    assert "a dataset file may be at most" in problem.problem


def test_bad_inputs_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such file or folder"):
        explore(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="contains no music files"):
        explore(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputFileError, match="no music file to explore"):
        explore([tmp_path / "notes.txt"])
    for index in range(3):
        write_short(tmp_path / f"s{index}.mid")
    with pytest.raises(InputFileError) as caught:
        explore(tmp_path, max_files=2)
    assert str(caught.value) == (
        "3 music files found; at most 2 are explored at once (explore part of the "
        "collection, or allow more, up to 20,000)"
    )


@needs_abc2midi
def test_outputs_are_real_pngs_csvs_with_the_same_numbers_and_a_report(
    explored: Exploration, tmp_path: Path
) -> None:
    written = write_outputs(explored, tmp_path / "out")
    tables = explored.tables()
    for name in FIGURES:
        assert written[f"{name}.png"].read_bytes().startswith(PNG_MAGIC)
    for name, table in tables.items():
        with written[f"{name}.csv"].open(newline="") as handle:
            rows = list(csv.reader(handle))
        assert tuple(rows[0]) == table.columns
        assert rows[1:] == [
            ["" if cell is None else str(cell) for cell in row] for row in table.rows
        ]
    report = written["report.html"].read_text()
    for name in FIGURES:
        found = re.search(rf'<figure id="{name}"><img src="data:image/png;base64,([^"]+)"', report)
        assert found, name
        assert base64.b64decode(found.group(1)).startswith(PNG_MAGIC)
        assert f'href="{name}.csv"' in report
    assert "broken.mid" in report and "drums only" in report
    assert 'href="songs.csv"' in report and 'href="problems.csv"' in report


def test_the_report_escapes_file_names(tmp_path: Path) -> None:
    (tmp_path / "<i>x&y.mid").write_text("not midi")
    write_band(tmp_path / "band.mid")
    written = write_outputs(explore(tmp_path, workers=1), tmp_path / "out")
    report = written["report.html"].read_text()
    assert "&lt;i&gt;x&amp;y.mid" in report and "<i>x" not in report


def test_an_exploration_with_nothing_to_plot_still_draws(tmp_path: Path) -> None:
    write_drums(tmp_path / "drums.mid")
    exploration = explore(tmp_path, workers=1)
    assert exploration.tables()["keys"].rows == []
    written = write_outputs(exploration, tmp_path / "out")
    assert written["keys.png"].read_bytes().startswith(PNG_MAGIC)


def test_the_key_finder_is_music21s(tmp_path: Path) -> None:
    """The fast Krumhansl-Schmuckler gives theory.estimate_key's (music21's) answers."""
    from music21 import analysis

    from melodygen import explore as explore_module
    from melodygen.theory import estimate_key

    finder = analysis.discrete.KrumhanslSchmuckler()
    for mode in ("major", "minor"):
        assert list(explore_module._KS_PROFILES[mode]) == finder.getWeights(mode)
    melodies = [
        [60, -2, 64, 67, -2, 72, 71, 67, 65, 64, 62, 60],  # C major
        [57, 60, 64, -2, 57, 59, 60, 62, 64, 56, 57, -2],  # A minor
        [62, 66, 69, -2, 74, 73, 71, 69, 67, 66, 64, 62],  # D major
        [65, 68, 72, 70, 68, 67, 65, 64, 65, -2, 60, 65],  # F minor
        [66, 70, 73, 75, 73, 70, 66, 68, 70, 71, 73, 66],  # F# major
    ]
    for events in melodies:
        durations = [0.0] * 12
        current, length = None, 0
        for event in [*events, -1]:
            if event == -2:
                length += 1
                continue
            if current is not None:
                durations[current % 12] += length
            current, length = (event, 1) if event >= 0 else (None, 0)
        assert estimate_key_from_durations(durations) == estimate_key(events), events
    assert estimate_key_from_durations([0.0] * 12) is None


# The command line ---------------------------------------------------------------------------


@needs_abc2midi
def test_cli_writes_figures_csvs_and_report(collection: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    assert (
        main(["dataset", "explore", "--input", str(collection), "--output", str(out), "--quiet"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "explored 6 files (6 songs)" in printed
    assert "4 with problems" in printed and "melodies kept: 4" in printed
    names = {path.name for path in out.iterdir()}
    assert names == {f"{name}.{ext}" for name in FIGURES for ext in ("png", "csv")} | {
        "songs.csv",
        "problems.csv",
        "report.html",
    }


def test_cli_extraction_flags_change_what_is_kept(tmp_path: Path, capsys) -> None:
    write_short(tmp_path / "short.mid")
    out = tmp_path / "out"
    argv = ["dataset", "explore", "--input", str(tmp_path / "short.mid"), "--output", str(out)]
    assert main([*argv, "--quiet", "--min-bars", "2", "--workers", "1"]) == 0
    assert "melodies kept: 1" in capsys.readouterr().out
    assert "--min-bars 2" in (out / "report.html").read_text()


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (lambda root: None, ["--input", "{root}/missing"], "no such file or folder"),
        (lambda root: (root / "empty").mkdir(), ["--input", "{root}/empty"], "contains no music"),
        (
            lambda root: [write_short(root / f"s{i}.mid") for i in range(3)],
            ["--input", "{root}", "--max-files", "2"],
            "3 music files found; at most 2 are explored at once",
        ),
        (
            lambda root: (write_short(root / "a.mid"), (root / "file").write_text("x")),
            ["--input", "{root}/a.mid", "--output", "{root}/file/out"],
            "is a file, not a folder",
        ),
    ],
)
def test_cli_bad_inputs_are_one_line_with_exit_code_2(tmp_path, capsys, setup, args, message):
    setup(tmp_path)
    argv = ["dataset", "explore", *(arg.format(root=tmp_path) for arg in args), "--quiet"]
    if "--output" not in argv:
        argv += ["--output", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("value", ["0", "20001", "many", "2.5"])
def test_cli_max_files_takes_its_range_from_the_table(tmp_path: Path, capsys, value) -> None:
    with pytest.raises(SystemExit) as caught:
        main(
            [
                "dataset",
                "explore",
                "--input",
                str(tmp_path),
                "--output",
                str(tmp_path / "o"),
                "--max-files",
                value,
            ]
        )
    assert caught.value.code == 2
    assert "the file limit" in capsys.readouterr().err


def test_cli_help_states_the_default_file_limit() -> None:
    from melodygen.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - walk argparse
    explore_parser = commands["dataset"]._subparsers._group_actions[0].choices["explore"]  # noqa: SLF001
    (action,) = [a for a in explore_parser._actions if "--max-files" in a.option_strings]  # noqa: SLF001
    assert f"default {DEFAULT_MAX_FILES:,}" in action.help
    assert RANGES["explore_files"].describe() in action.help
