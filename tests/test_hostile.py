"""Hostile input (issue 13): crafted MIDI files, upload names and flag values.

Every case ends in a result or one clean line, fast and in bounded memory. The MIDI
files are built here in a few lines of mido each and read in a worker process (this
file, run as a script) whose address space is capped a little above what it holds
after its imports, so a regression fails the test instead of taking the machine down
(the 37-byte file below once took 6 GB; its 114-byte sibling went past 23 GB).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import resource
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import mido
import pytest

ROOT = Path(__file__).resolve().parent.parent
HEADROOM = 2 * 2**30
"""Address space the worker may take above what it holds after importing everything."""
PEAK_ABOVE_START = 1.0
"""GB of resident memory the worker may add while reading every case."""
SECONDS_PER_CASE = 10.0
NO_MODEL = ROOT / "tests" / "no_such_model"
"""Flag tests name a missing model: a value that regresses ends at "does not exist" (and
fails the test) instead of generating with it in this process (262,144 beam rows once
took the machine's 23 GB)."""
FUZZ_SEEDS = 200


# Files ---------------------------------------------------------------------------------------


def midi_bytes(tracks: list[list], ticks_per_beat: int = 480, kind: int = 1) -> bytes:
    """A standard MIDI file of ``tracks`` (lists of mido messages with delta times)."""
    midi = mido.MidiFile(type=kind, ticks_per_beat=ticks_per_beat)
    for messages in tracks:
        midi.tracks.append(mido.MidiTrack(messages))
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def note(pitch: int, start: int, length: int, channel: int = 0) -> list:
    """Note-on after ``start`` ticks, note-off ``length`` ticks later."""
    return [
        mido.Message("note_on", note=pitch, velocity=90, channel=channel, time=start),
        mido.Message("note_off", note=pitch, velocity=0, channel=channel, time=length),
    ]


def held_notes(count: int) -> bytes:
    """``count`` notes one after the other, each held 2**28 - 1 ticks (the longest delta)."""
    return midi_bytes([[m for _ in range(count) for m in note(60, 0, 2**28 - 1)]], kind=0)


def tempo(microseconds_per_beat: int, time: int = 0) -> mido.MetaMessage:
    return mido.MetaMessage("set_tempo", tempo=microseconds_per_beat, time=time)


def raw_tempo(microseconds_per_beat: int) -> bytes:
    """A set_tempo event as bytes (mido refuses to write a tempo of 0)."""
    return b"\x00\xff\x51\x03" + microseconds_per_beat.to_bytes(3, "big")


def track_bytes(events: bytes) -> bytes:
    """One MTrk chunk of raw events, ended properly."""
    body = events + b"\x00\xff\x2f\x00"
    return b"MTrk" + len(body).to_bytes(4, "big") + body


def header(ticks_per_beat: int, tracks: int = 1, kind: int = 0) -> bytes:
    return (
        b"MThd"
        + (6).to_bytes(4, "big")
        + bytes([0, kind, 0, tracks])
        + ticks_per_beat.to_bytes(2, "big")
    )


NOTE = b"\x00\x90\x3c\x50\x83\x60\x80\x3c\x00"  # a quarter note at 480 ticks per beat


def song() -> bytes:
    """A small real song: tempo map, meter, key, a MELODY track, chords and drums."""
    melody = [mido.MetaMessage("track_name", name="MELODY", time=0)]
    melody.append(mido.Message("program_change", program=73, time=0))
    for index, pitch in enumerate([67, 69, 71, 72, 74, 72, 71, 69] * 4):
        melody += note(pitch, 0, 240 if index % 3 else 480)
    chords = [mido.MetaMessage("track_name", name="Piano", time=0)]
    for _ in range(8):
        for pitch in (48, 52, 55):
            chords.append(mido.Message("note_on", note=pitch, velocity=70, channel=1, time=0))
        chords.append(mido.Message("note_off", note=48, velocity=0, channel=1, time=1920))
        chords.append(mido.Message("note_off", note=52, velocity=0, channel=1, time=0))
        chords.append(mido.Message("note_off", note=55, velocity=0, channel=1, time=0))
    drums = [m for beat in range(16) for m in note(36, 0 if beat == 0 else 360, 120, channel=9)]
    conductor = [
        tempo(600_000),
        mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0),
        mido.MetaMessage("key_signature", key="G", time=0),
        tempo(500_000, time=1920 * 4),
    ]
    return midi_bytes([conductor, melody, chords, drums])


# Each case: file bytes, and a fragment of the one-line message it must end with (every
# one is a MidiLimitError but the size and the long variable-length number).
HOSTILE_FILES: dict[str, tuple[bytes, str]] = {
    "held_1_note_37_bytes": (held_notes(1), "a primer file may be at most 1 hour long"),
    "held_8_notes_114_bytes": (held_notes(8), "a primer file may be at most 1 hour long"),
    "fine_ticks_short_time": (
        # 5 million ticks but only 10 s: a fine time base at a fast tempo.
        midi_bytes([[tempo(60_000), *note(60, 0, 5_000_000)]], ticks_per_beat=30_000),
        "may span at most 4,000,000 ticks",
    ),
    "tempo_1_microsecond": (
        midi_bytes([[tempo(1), *note(60, 0, 480)]]),
        "tempo of 60,000,000 BPM",
    ),
    "tempo_0": (
        header(480) + track_bytes(raw_tempo(0) + NOTE),
        "tempo of infinite BPM",
    ),
    "tempo_3_bpm": (
        midi_bytes([[tempo(0xFFFFFF), *note(60, 0, 480)]]),
        "tempos from 10 to 1000 BPM",
    ),
    "ticks_per_beat_0": (header(0) + track_bytes(NOTE), "0 ticks per beat"),
    "smpte_time_code": (header(0xE728) + track_bytes(NOTE), "SMPTE time code"),
    "too_many_notes": (
        midi_bytes([[m for i in range(50_001) for m in note(40 + i % 40, 0, 1)]]),
        "at most 50,000",
    ),
    "too_many_tempo_changes": (
        midi_bytes([[tempo(500_000 + i % 2, time=10) for i in range(2_001)] + note(60, 0, 480)]),
        "at most 2,000 times",
    ),
    "held_chord_across_tempo_changes": (
        # 16,000 notes held across 1,500 tempo changes: each change splits them all.
        midi_bytes(
            [
                [tempo(500_000 + i % 2, time=100) for i in range(1_500)],
                [mido.Message("note_on", note=20 + i % 100, velocity=60) for i in range(16_000)]
                + [
                    mido.Message("note_off", note=20 + i % 100, time=0 if i else 150_000)
                    for i in range(16_000)
                ],
            ]
        ),
        "notes x changes",
    ),
    "over_1_mb": (song() + bytes(1_000_001), "may be at most 1 MB (1,000,000 bytes)"),
    "6_mb": (song() + bytes(6_000_000), "may be at most 1 MB"),
    "endless_time_value": (
        # 999,000 continuation bytes: mido reads such a number in time growing with the
        # square of its length (minutes); the standard allows 4 bytes.
        header(480) + track_bytes(b"\xff" * 999_000 + NOTE),
        "longer than the 4 bytes MIDI allows",
    ),
}


# The worker: reads files the way the studio, the CLI and dataset building do ------------------


def _read_as(route: str, path: Path, out: Path) -> dict:
    """Read one file by ``route``; what happened, as JSON-ready data."""
    from melodygen import studio
    from melodygen.cli import main
    from melodygen.errors import MelodyGenError
    from melodygen.io.music import extract_melodies, load_note_sequences
    from melodygen.limits import DATASET_MIDI

    started = time.perf_counter()
    outcome: dict = {"case": path.stem, "kind": "ok", "message": "", "qpm": None}
    try:
        if route == "upload":
            upload = studio.read_midi_upload(path.name, path.read_bytes())
            primer = studio.upload_primer(upload, upload.usable[0], bars=4)
            outcome["qpm"] = primer.qpm
        elif route == "cli":
            # No model: a primer that reads goes on to "checkpoint ... does not exist".
            argv = ["generate", "--checkpoint", str(out / "no_model"), "--primer-midi", str(path)]
            argv += ["--bars", "64", "--out", str(out)]
            errors = io.StringIO()
            with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
                code = main(argv)
            outcome["message"] = errors.getvalue()
            read = code == 2 and "no_model" in outcome["message"]
            outcome["kind"] = "read" if read else f"exit {code}"
        elif route == "dataset":
            for sequence in load_note_sequences(path, DATASET_MIDI):
                extract_melodies(sequence)
        else:
            raise ValueError(route)
    except MelodyGenError as error:
        outcome["kind"] = type(error).__name__
        outcome["message"] = str(error)
    except BaseException as error:  # noqa: BLE001 - reported to the test, which fails
        import traceback

        outcome["kind"] = f"UNCLEAN {type(error).__name__}"
        outcome["message"] = traceback.format_exc()
    outcome["seconds"] = time.perf_counter() - started
    return outcome


def _worker(route: str, folder: Path) -> None:
    """Cap the address space, read every .mid file in ``folder``, print one JSON line each."""
    import melodygen.cli
    import melodygen.io.music
    import melodygen.io.primer
    import melodygen.render
    import melodygen.studio  # noqa: F401 - all imported before the cap is set

    size = int(Path("/proc/self/status").read_text().split("VmSize:")[1].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size + HEADROOM, size + HEADROOM))
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out = folder / "out"
    for path in sorted(folder.glob("*.mid")):
        outcome = _read_as(route, path, out)
        outcome["peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20 - start_rss
        print(json.dumps(outcome), flush=True)


def run_worker(route: str, files: dict[str, bytes], folder: Path, timeout: float) -> dict:
    """Write ``files`` to ``folder`` and read them all in a capped worker; outcomes by name."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / f"{name}.mid").write_bytes(data)
    result = subprocess.run(
        [sys.executable, __file__, route, str(folder)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    outcomes = {}
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            outcome = json.loads(line)
            outcomes[outcome["case"]] = outcome
    assert result.returncode == 0 and len(outcomes) == len(files), (
        f"worker ended with {result.returncode} after {len(outcomes)} of {len(files)} files:\n"
        + result.stderr[-3000:]
    )
    return outcomes


def assert_clean(outcome: dict) -> None:
    """A result, or one line that is not about running out of memory, in good time."""
    assert not outcome["kind"].startswith("UNCLEAN"), outcome["message"]
    message = outcome["message"].strip()
    assert "Traceback" not in message and len(message.splitlines()) <= 1, message
    for word in ("allocate", "MemoryError", "memory"):
        assert word not in message, message
    assert outcome["seconds"] < SECONDS_PER_CASE, outcome
    if outcome["qpm"] is not None:
        assert 10 <= outcome["qpm"] <= 1000, outcome


# Item 1: crafted files, through the studio upload, the CLI primer and dataset building --------


@pytest.mark.parametrize("route", ["upload", "cli"])
def test_hostile_primer_files_end_in_one_line_in_bounded_memory(route, tmp_path):
    files = {name: data for name, (data, _) in HOSTILE_FILES.items()}
    outcomes = run_worker(route, files, tmp_path / route, timeout=300)
    for name, (_, fragment) in HOSTILE_FILES.items():
        outcome = outcomes[name]
        assert_clean(outcome)
        assert outcome["kind"] != "ok", outcome
        assert fragment in outcome["message"], (name, outcome["message"])
        if route == "upload":
            assert outcome["kind"] in ("MidiLimitError", "InputFileError", "StudioError"), outcome
        assert outcome["peak_gb"] < PEAK_ABOVE_START, outcome
    assert len(HOSTILE_FILES["held_1_note_37_bytes"][0]) == 37
    assert len(HOSTILE_FILES["held_8_notes_114_bytes"][0]) == 114


def test_dataset_building_is_guarded_by_the_same_tick_and_tempo_limits(tmp_path):
    files = {
        name: HOSTILE_FILES[name][0]
        for name in (
            "held_1_note_37_bytes",
            "held_8_notes_114_bytes",
            "tempo_1_microsecond",
            "ticks_per_beat_0",
            "endless_time_value",
        )
    }
    files["fine"] = song()
    outcomes = run_worker("dataset", files, tmp_path, timeout=120)
    assert outcomes.pop("fine")["kind"] == "ok"
    messages = {name: outcome["message"] for name, outcome in outcomes.items()}
    assert "a dataset file may be at most 3 hours long" in messages["held_1_note_37_bytes"]
    assert "a dataset file may be at most 3 hours long" in messages["held_8_notes_114_bytes"]
    assert "tempos from 10 to 1000 BPM" in messages["tempo_1_microsecond"]
    for outcome in outcomes.values():
        assert_clean(outcome)
        assert outcome["kind"] in ("MidiLimitError", "InputFileError"), outcome
        assert outcome["peak_gb"] < PEAK_ABOVE_START, outcome


def test_a_file_within_the_limits_still_gives_a_primer():
    from melodygen import studio

    upload = studio.read_midi_upload("song.mid", song())
    primer = studio.upload_primer(upload, studio.default_track(upload), bars=2)
    assert primer.qpm == 100.0 and primer.pitches()[:3] == [67, 69, 71]
    with pytest.raises(studio.StudioError, match=r"1,000,001 bytes; a primer file may be at"):
        studio.read_midi_upload("big.mid", b"MThd" + bytes(999_997))


# Item 7a: one upload limit, in bytes, for the browser and the library ------------------------


def test_the_browser_and_the_library_share_one_upload_limit():
    from melodygen import studio
    from melodygen.limits import PRIMER_MIDI

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    # Streamlit's browser side counts MB of 10**6 bytes (2**20 on Windows), its server 2**20:
    # 1,000,000 bytes is what every browser lets through, and what the library reads.
    assert config["server"]["maxUploadSize"] == studio.MAX_UPLOAD_MB == 1
    assert studio.MAX_UPLOAD_BYTES == PRIMER_MIDI.max_bytes == studio.MAX_UPLOAD_MB * 10**6
    between = b"MThd" + bytes(1_040_000 - 4)  # over 10**6 and under 2**20 bytes
    with pytest.raises(studio.StudioError, match=r"at most 1 MB \(1,000,000 bytes\)"):
        studio.read_midi_upload("between.mid", between)
    from melodygen.errors import InputFileError

    with pytest.raises(InputFileError) as caught:  # at the limit: read, then found corrupt
        studio.read_midi_upload("limit.mid", b"MThd" + bytes(999_996))
    assert "at most" not in str(caught.value)


# Item 6: upload names are shown, never used as paths -----------------------------------------

JAPANESE_NAME = "メロディー" * 17 + "の部分.mid"  # 92 characters, 268 bytes of UTF-8


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        (JAPANESE_NAME, None),
        ("lead\x00line.mid", "lead?line.mid"),
        ("../../etc/passwd.mid", "passwd.mid"),
        ("C:\\Users\\me\\tune.mid", "tune.mid"),
        ("tab\there\n.mid", "tab?here?.mid"),
    ],
)
def test_upload_names_are_shown_never_used_as_paths(name, shown, tmp_path, monkeypatch):
    from melodygen import studio

    if shown is None:
        assert len(name) == 92 and len(name.encode()) == 268
    folders = []
    real_mkdtemp = studio.tempfile.mkdtemp

    def mkdtemp(**kwargs):
        folders.append(Path(real_mkdtemp(dir=tmp_path, **kwargs)))
        return str(folders[-1])

    monkeypatch.setattr(studio.tempfile, "mkdtemp", mkdtemp)
    upload = studio.read_midi_upload(name, song())
    primer = studio.upload_primer(upload, upload.usable[0], bars=1)
    assert len(upload.name) <= 60 and upload.name.isprintable()
    assert upload.name.endswith(".mid") and upload.name in primer.description
    if shown is not None:
        assert upload.name == shown
    written = studio._with_upload(name, b"", lambda path: path)
    assert written.name == studio.UPLOAD_FILE_NAME and written.parent.parent == tmp_path
    assert not any(tmp_path.iterdir())  # every temporary folder removed

    with pytest.raises(studio.MelodyGenError) as caught:
        studio.read_midi_upload(name, held_notes(1))
    message = str(caught.value)
    assert message.startswith(upload.name) and str(tmp_path) not in message
    assert "\x00" not in message and len(message.splitlines()) == 1


# Item 5: every numeric flag has a range; a bad value is one line ------------------------------


def cli_error(argv: list[str], capsys) -> tuple[int, str]:
    """Exit status and stderr of ``melodygen argv`` run in this process."""
    from melodygen.cli import main

    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


DATASET = ["dataset", "build", "--input", "in", "--config", "basic_rnn", "--output", "o"]
TRAIN = ["train", "--data", "d", "--run-dir", "r"]
ORIGINALITY = ["originality", "--checkpoint", str(NO_MODEL), "--data", "d"]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--bars", "nan"], "length must be 0.25 to 256 bars (got nan)"),
        (["--bars", "inf"], "length must be 0.25 to 256 bars (got inf)"),
        (["--bars", "0"], "length must be 0.25 to 256 bars (got 0.0)"),
        (["--bars", "1e400"], "(got inf)"),
        (["--steps", "0"], "length must be 1 to 4,096 steps"),
        (["--seed", "-1"], "seed must be 0 to 4,294,967,295 (got -1)"),
        (["--seed", str(2**32)], "seed must be 0 to 4,294,967,295"),
        (["--seed", "9" * 5000], "is not a whole number"),
        (["--primer", "[6" + "0" * 5000 + "]"], "5,001-digit number"),
        (["--primer", "C4:" + "9" * 5000], "5,000-digit number"),
        (["--beam-size", "10000", "--branch-factor", "1000"], "beam size must be 1 to 64"),
        (
            ["--beam-size", "64", "--branch-factor", "64", "--num-outputs", "64"],
            "beam size x branch factor x number of outputs is 262,144",
        ),
        (["--num-outputs", "65"], "number of outputs must be 1 to 64"),
        (["--temperature", "nan"], "temperature must be above 0 and at most 10"),
        (["--temperature", "0"], "temperature must be above 0"),
        (["--top-k", "0"], "top-k must be 1 to 130"),
        (["--top-p", "1.5"], "top-p must be above 0 and at most 1"),
        (["--min-pitch", "-1"], "lowest pitch must be 0 to 127"),
        (["--max-pitch", "128"], "highest pitch must be 0 to 127"),
        (["--bpm", "0"], "tempo must be 10 to 1,000 BPM"),
        (["--bpm", "60000000"], "tempo must be 10 to 1,000 BPM"),
        (["--track", "-1"], "track must be 0 to 65,535"),
        (["--primer-bars", "0"], "primer bars must be 1 to 256 bars"),
        (["--steps-per-iteration", "0"], "steps per iteration must be 1 to 4,096 steps"),
        (["--out", "{file}/melodies"], "is a file, not a folder"),
    ],
)
def test_bad_generate_values_are_one_line(argv, fragment, tmp_path, capsys):
    regular = tmp_path / "a_file"
    regular.write_text("not a folder")
    argv = [a.replace("{file}", str(regular)) for a in argv]
    base = ["generate", "--checkpoint", str(NO_MODEL), "--out", str(tmp_path / "out")]
    code, err = cli_error([*base, *argv], capsys)
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([*DATASET, "--min-bars", "-1"], "minimum length must be 0 to 256 bars"),
        ([*DATASET, "--max-steps", "0"], "maximum length must be 16 to 4,096 steps"),
        ([*DATASET, "--gap-bars", "nan"], "gap must be above 0 and at most 256 bars"),
        ([*DATASET, "--gap-bars", "0"], "gap must be above 0"),
        ([*DATASET, "--min-unique-pitches", "13"], "minimum pitch classes must be 1 to 12"),
        ([*DATASET, "--eval-ratio", "nan"], "the eval ratio must be at least 0 and below 1"),
        ([*DATASET, "--workers", "0"], "workers must be 1 to 256 processes"),
        ([*DATASET, "--transpose", "-99:3"], "each -24 to 24 semitones"),
        ([*DATASET, "--transpose", "-5:x"], "give a range like -5:7"),
        ([*TRAIN, "--steps", "0"], "training steps must be 1 to 1,000,000,000 steps"),
        ([*TRAIN, "--eval-every", "0"], "evaluation interval must be 1 to"),
        ([*TRAIN, "--early-stopping", "0"], "early stopping must be 1 to 1,000,000"),
        ([*TRAIN, "--time-limit", "inf"], "time limit must be above 0 and at most 525,600"),
        ([*TRAIN, "--seed", "-1"], "seed must be 0 to 2,147,483,647"),
        ([*ORIGINALITY, "--num", "0"], "number of melodies must be 1 to 10,000"),
        ([*ORIGINALITY, "--bars", "0"], "length must be 1 to 256 bars"),
        ([*ORIGINALITY, "--temperature", "inf"], "temperature must be above 0"),
        ([*ORIGINALITY, "--seed", "-5"], "seed must be 0 to"),
    ],
)
def test_bad_values_of_other_commands_are_one_line(argv, fragment, capsys):
    code, err = cli_error(argv, capsys)
    assert_one_line_error(code, err, fragment)


def assert_one_line_error(code: int, err: str, fragment: str) -> None:
    """Exit status 2, no traceback, and exactly one ``error:`` line holding ``fragment``."""
    assert code == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and fragment in errors[0], err
    assert len(errors[0]) < 300, errors[0]


@pytest.mark.parametrize(
    "text", ["[6" + "0" * 5000 + "]", "C4:" + "9" * 5000, "C" + "4" * 5000, "C4 " * 30_000]
)
def test_typed_primers_too_big_to_be_one_are_one_line(text):
    """The studio's typed primer and the library read text as the CLI does."""
    from melodygen.io.primer import PrimerError, parse_primer

    with pytest.raises(PrimerError) as caught:
        parse_primer(text)
    assert len(str(caught.value).splitlines()) == 1 and len(str(caught.value)) < 200


def test_every_numeric_flag_takes_its_range_from_the_table():
    from melodygen import studio
    from melodygen.cli import build_parser
    from melodygen.core import generation as generate
    from melodygen.limits import RANGES

    numeric = []
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - walk argparse
    dataset = commands.pop("dataset")._subparsers._group_actions[0].choices  # noqa: SLF001
    for command in [*commands.values(), *dataset.values()]:
        for action in command._actions:  # noqa: SLF001
            if action.type is not None and action.type in (int, float):
                numeric.append(action.option_strings)
            name = getattr(action.type, "__name__", "")
            if name in RANGES:
                assert RANGES[name].describe() in action.help, action.option_strings
    assert numeric == []  # no flag parses a number without its range
    assert generate.MAX_STEPS == RANGES["length_steps"].high
    assert generate.MAX_OUTPUTS == RANGES["num_outputs"].high
    assert studio.MAX_VARIATIONS == RANGES["variations"].high
    assert studio.MAX_BARS == RANGES["studio_bars"].high


def test_the_readme_states_the_ranges_of_the_table():
    from melodygen.limits import RANGES

    readme = (ROOT / "README.md").read_text()
    limits = readme[readme.index("### Limits") : readme.index("### Primer note syntax")]
    for limit in RANGES.values():
        if limit.name == "key":  # not a flag: --key takes a name
            continue
        low, high = (
            f"{int(v):,}" if float(v).is_integer() else f"{v:g}" for v in (limit.low, limit.high)
        )
        words = f"at most {high}" if limit.low_open else f"{low} to {high}"
        if limit.high_open:
            words = f"below {high}"
        assert words in limits, (limit.name, words)


def test_the_studio_and_the_library_check_the_same_table():
    from melodygen import studio
    from melodygen.core.generation import GenerationError, GenerationRequest
    from melodygen.io.primer import parse_primer

    for changes, fragment in [
        ({"bpm": 5.0}, "tempo must be 10 to 1,000 BPM"),
        ({"temperature": float("nan")}, "temperature must be above 0"),
        ({"seed": -1}, "seed must be 0 to"),
        ({"beam_size": 64, "branch_factor": 64}, "at most 1,024"),
    ]:
        with pytest.raises(GenerationError, match=fragment):
            studio.StudioSettings(**changes).to_request(parse_primer(""))
        request_changes = {"qpm": changes["bpm"]} if "bpm" in changes else changes
        with pytest.raises(GenerationError, match=fragment):
            GenerationRequest(**request_changes).validate()
    with pytest.raises(studio.StudioError, match="length must be 1 to 64 bars"):
        studio.StudioSettings(bars=65).to_request(parse_primer(""))
    with pytest.raises(GenerationError, match="number of outputs must be a whole number"):
        GenerationRequest(num_outputs=2.5).validate()


# Fuzz: real MIDI, mutated; a result or one clean line for every seed -------------------------

# Byte strings a fuzzer of MIDI should try: the longest delta, a tempo of 1 microsecond
# per beat, runs of continuation bytes, a huge chunk length, a note-on without its data.
DICTIONARY = [
    b"\xff\xff\xff\x7f",
    b"\x00\xff\x51\x03\x00\x00\x01",
    b"\x81" * 64,
    b"\xff\xff\xff\xff",
    b"\x90",
    b"\x00\xff\x58\x04\xff\xff\x18\x08",
]


def mutate(data: bytes, seed: int) -> bytes:
    """One of: bit flips, a truncation, inserted random bytes, an inserted dictionary entry.

    Insertions grow the length of the track they land in, so that the file stays whole
    and the bytes reach the readers behind the chunk structure.
    """
    rng = random.Random(seed)
    data = bytearray(data)
    how = seed % 4
    if how == 0:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if how == 1:
        return bytes(data[: rng.randrange(14, len(data))])
    if how == 2:
        inserted = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    else:
        inserted = rng.choice(DICTIONARY)
    start, size = rng.choice(_track_bodies(bytes(data)))
    at = rng.randrange(start, start + size)
    data[at:at] = inserted
    data[start - 4 : start] = (size + len(inserted)).to_bytes(4, "big")
    return bytes(data)


def _track_bodies(data: bytes) -> list[tuple[int, int]]:
    """(start, length) of every chunk body after the header chunk."""
    bodies, position = [], 14
    while position + 8 <= len(data):
        size = int.from_bytes(data[position + 4 : position + 8], "big")
        bodies.append((position + 8, size))
        position += 8 + size
    return bodies


@pytest.mark.parametrize("route", ["upload", "cli"])
def test_fuzzed_midi_gives_a_result_or_one_clean_line(route, tmp_path):
    base = song()
    files = {f"seed_{seed:03d}": mutate(base, seed) for seed in range(FUZZ_SEEDS)}
    outcomes = run_worker(route, files, tmp_path / route, timeout=500)
    kinds: dict[str, int] = {}
    for outcome in outcomes.values():
        assert_clean(outcome)
        assert outcome["peak_gb"] < PEAK_ABOVE_START, outcome
        kinds[outcome["kind"]] = kinds.get(outcome["kind"], 0) + 1
    readable = kinds.get("ok", 0) + kinds.get("read", 0)
    assert readable >= len(files) // 20, kinds  # the mutations do not all stop at the header


if __name__ == "__main__":
    _worker(sys.argv[1], Path(sys.argv[2]))


# MusicXML and model folders ------------------------------------------------------------------


def test_a_zip_bomb_mxl_is_refused_before_music21_opens_it(tmp_path, monkeypatch):
    """An .mxl of a few kB that unzips to 50 MB of XML: refused on the sizes in its zip."""
    import zipfile

    import music21.converter

    from melodygen import studio
    from melodygen.errors import MelodyGenError
    from melodygen.io.primer import midi_primer

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("score.musicxml", b"<score-partwise>" + b" " * 50_000_000)
    bomb = buffer.getvalue()
    assert len(bomb) < 100_000
    path = tmp_path / "bomb.mxl"
    path.write_bytes(bomb)

    def never(*args, **kwargs):
        raise AssertionError("music21 was asked to read the bomb")

    monkeypatch.setattr(music21.converter, "parse", never)
    for read in (lambda: studio.read_upload("bomb.mxl", bomb), lambda: midi_primer(path)):
        with pytest.raises(MelodyGenError) as caught:
            read()
        message = str(caught.value)
        assert "MusicXML" in message and "3,000,000" in message and "\n" not in message
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(MelodyGenError, match="not a readable .mxl"):
        midi_primer(path)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"hparams": [1]}', "melodygen.json: format"),
        ("[]", "melodygen.json"),
    ],
)
def test_the_model_list_shows_a_hostile_model_file_as_a_problem(tmp_path, text, fragment):
    """The studio's catalog reads melodygen.json through the same check as loading."""
    from melodygen import studio

    folder = tmp_path / "bad_model"
    folder.mkdir()
    (folder / "melodygen.json").write_text(text)
    (folder / "card.json").write_text("[" * 100_000 + "]" * 100_000)
    [entry] = studio.discover_models(tmp_path)
    assert entry.info == {}
    assert any(fragment in problem for problem in entry.problems), entry.problems
    assert any("card.json" in problem for problem in entry.problems)
    assert not any(str(tmp_path) in problem for problem in entry.problems)


def test_an_abc_tune_holding_one_note_for_ever_is_refused_before_extraction(tmp_path):
    """47 bytes of ABC that would have made a list of 1.2 billion steps (about 10 GB)."""
    from melodygen.errors import InputFileError
    from melodygen.io.music import load_note_sequences
    from melodygen.limits import DATASET_MIDI

    bomb = "X:1\nT:long\nM:4/4\nL:1/4\nK:C\nC D E F | G300000000 |\n"
    fine = "X:2\nT:fine\nM:4/4\nL:1/4\nK:C\nC D E F | G A B c |\n"
    path = tmp_path / "book.abc"
    path.write_text(bomb + "\n" + fine)
    [sequence] = load_note_sequences(path, DATASET_MIDI)
    assert sequence.id.endswith("#X2")
    path.write_text(bomb)
    with pytest.raises(InputFileError, match="quarter notes long as written; at most 20,000"):
        load_note_sequences(path, DATASET_MIDI)


def musicxml(attributes: str = "", direction: str = "") -> bytes:
    """A one-bar MusicXML score: two half notes, with extra attribute and direction XML."""
    notes = "".join(
        f"<note><pitch><step>{step}</step><octave>4</octave></pitch><duration>2</duration>"
        "<type>half</type></note>"
        for step in "CE"
    )
    return (
        '<?xml version="1.0"?><score-partwise version="3.1"><part-list>'
        '<score-part id="P1"><part-name>Flute</part-name></score-part></part-list>'
        f'<part id="P1"><measure number="1"><attributes><divisions>1</divisions>{attributes}'
        f"</attributes>{direction}{notes}</measure></part></score-partwise>"
    ).encode()


FOUR_FOUR = "<time><beats>4</beats><beat-type>4</beat-type></time>"


@pytest.mark.parametrize(
    ("attributes", "direction", "fragment"),
    [
        (
            FOUR_FOUR,
            "<direction><direction-type><metronome><beat-unit>quarter</beat-unit>"
            "<per-minute>fast</per-minute></metronome></direction-type></direction>",
            None,  # a tempo in words: read at 120 BPM
        ),
        (FOUR_FOUR, '<direction><sound tempo="0.001"/></direction>', "BPM"),
        (FOUR_FOUR, '<direction><sound tempo="1000000000"/></direction>', "BPM"),
        ("<time><beats>300</beats><beat-type>4</beat-type></time>", "", "300/4"),
        ("<time><beats>4</beats><beat-type>3</beat-type></time>", "", "4/3"),
    ],
)
def test_hostile_musicxml_is_a_primer_or_one_line_naming_the_upload(
    attributes, direction, fragment
):
    from melodygen import studio
    from melodygen.errors import MelodyGenError

    data = musicxml(attributes, direction)
    if fragment is None:
        upload = studio.read_upload("words.musicxml", data)
        assert studio.upload_primer(upload, upload.usable[0], bars=1).qpm == 120
        return
    with pytest.raises(MelodyGenError) as caught:
        studio.read_upload("odd.musicxml", data)
    message = str(caught.value)
    assert fragment in message and "odd.musicxml" in message and "\n" not in message
    assert "upload" not in message and ".mid" not in message


@pytest.mark.parametrize(
    "card",
    [
        {"training": {"steps": float("inf")}},
        {"training": {"steps": float("nan")}},
        {"hparams": {"rnn_layer_sizes": 5}},
    ],
)
def test_a_hostile_card_is_shown_without_its_bad_figures(tmp_path, card):
    import shutil

    from melodygen import studio

    folder = tmp_path / "folk_basic_rnn"
    shutil.copytree(ROOT / "checkpoints" / "folk_basic_rnn", folder)
    (folder / "card.json").write_text(json.dumps(card))  # Infinity and NaN: JSON allows them
    [entry] = studio.discover_models(tmp_path)
    assert studio.kept_step(entry) is None
    facts = studio.card_facts(entry)
    assert ("configuration", "basic_rnn") in facts["Model"]


def test_checkpoints_are_ordered_by_step_past_ten_million(tmp_path):
    from melodygen.core.checkpoint import checkpoint_folders

    for step in (9_998_000, 9_999_000, 10_000_000, 10_001_000):
        (tmp_path / "checkpoints" / f"step-{step:07d}").mkdir(parents=True)
    names = [path.name for path in checkpoint_folders(tmp_path)]
    assert names == ["step-10001000", "step-10000000", "step-9999000", "step-9998000"]


def test_a_meter_of_five_thousand_digits_is_one_line(capsys):
    code, err = cli_error(
        ["generate", "--checkpoint", str(NO_MODEL), "--meter", "9" * 5000 + "/4", "--out", "o"],
        capsys,
    )
    assert_one_line_error(code, err, "is not like 4/4")
