"""``melodygen generate`` with a note_vae model: random codes, ``--variations-of FILE
--distance D`` and ``--blend A B --blend-steps N`` (one file playing the steps in order),
and every refusal as one line. Skipped until those flags are in melodygen/cli.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pretty_midi
import pytest
from studio_fixtures import drums_only, make_checkpoints
from test_note_vae import dataset, run, songs  # noqa: F401 - the tiny model, trained once

from melodygen.cli import build_parser, main
from melodygen.core.generation import (
    DEFAULT_BLEND_STEPS,
    DEFAULT_DISTANCE,
    GenerationRequest,
    load_generator,
)
from melodygen.io.primer import midi_primer
from melodygen.limits import RANGES


def _flags() -> set[str]:
    commands = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001
    return {flag for action in commands["generate"]._actions for flag in action.option_strings}  # noqa: SLF001


pytestmark = pytest.mark.skipif(
    not {"--variations-of", "--distance", "--blend", "--blend-steps"} <= _flags(),
    reason="until the CLI flags land (--variations-of, --distance, --blend, --blend-steps)",
)


def generate(capsys, *flags: str) -> tuple[int, str, str]:
    """``melodygen generate`` with ``flags``: (exit status, stdout, stderr)."""
    try:
        status = main(["generate", *map(str, flags)])
    except SystemExit as error:  # argparse refuses a flag's value
        status = error.code
    out, err = capsys.readouterr()
    return status, out, err


def notes(path: Path) -> list[tuple[int, int]]:
    """(pitch, velocity) of a MIDI file's notes, in order."""
    return [(n.pitch, n.velocity) for n in pretty_midi.PrettyMIDI(str(path)).instruments[0].notes]


def test_random_codes_variations_and_their_distance(run, songs, tmp_path, capsys):  # noqa: F811
    status, out, err = generate(
        capsys, "--checkpoint", run, "--num-outputs", 2, "--seed", 3, "--out", tmp_path / "r"
    )
    assert status == 0, err
    assert len(list((tmp_path / "r").glob("*.mid"))) == 2  # melodies from random codes

    melody = songs / "piece00.mid"
    flags = ["--checkpoint", run, "--variations-of", melody, "--num-outputs", 3, "--seed", 1]
    status, out, err = generate(capsys, *flags, "--distance", 0.2, "--out", tmp_path, "--name", "v")
    assert status == 0, err
    written = sorted(tmp_path.glob("v_*.mid"))
    assert [p.name for p in written] == ["v_01.mid", "v_02.mid", "v_03.mid"]
    # The same as the library's variations of the file's melody, as --primer-midi reads it.
    request = GenerationRequest(
        variations_of=midi_primer(melody), distance=0.2, num_outputs=3, seed=1
    )
    made = load_generator(run).generate(request)
    for path, melody_made in zip(written, made.melodies, strict=True):
        expected = [(n.pitch, n.velocity) for n in melody_made.sequence.notes]
        assert notes(path) == expected
    assert "note: it has" in err or "note: its first" in err  # the window notice


def test_a_blend_writes_its_steps_and_one_file_in_order(run, songs, tmp_path, capsys):  # noqa: F811
    first, second = songs / "piece00.mid", songs / "piece05.mid"
    status, out, err = generate(
        capsys,
        "--checkpoint",
        run,
        "--blend",
        first,
        second,
        "--blend-steps",
        4,
        "--seed",
        2,
        "--wav",
        "--out",
        tmp_path,
        "--name",
        "b",
    )
    assert status == 0, err
    steps = sorted(tmp_path.glob("b_0*.mid"))
    assert len(steps) == 4 and (tmp_path / "b_in_order.wav").is_file()
    whole = notes(tmp_path / "b_in_order.mid")
    assert whole == [note for path in steps for note in notes(path)]
    assert "the 4 steps in order" in out


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--distance", "5"], "distance must be 0 to 4 (got 5.0)"),
        (["--blend-steps", "1"], "blend steps must be 2 to 64 melodies (got 1)"),
        (["--distance", "0.2"], "--distance goes with --variations-of"),
        (["--blend-steps", "3"], "--blend-steps goes with --blend"),
        (["--variations-of", "{song}", "--blend", "{song}", "{song}"], "not allowed with"),
        (["--blend", "{song}", "{song}", "--num-outputs", "3"], "ask for 1 output, not 3"),
        (["--variations-of", "{drums}"], "drum"),
        (["--variations-of", "{missing}"], "no such file"),
    ],
)
def test_bad_flags_and_files_are_one_line(run, songs, tmp_path, capsys, flags, words):  # noqa: F811
    (tmp_path / "drums.mid").write_bytes(drums_only())
    files = {
        "{song}": str(songs / "piece00.mid"),
        "{drums}": str(tmp_path / "drums.mid"),
        "{missing}": str(tmp_path / "missing.mid"),
    }
    flags = [files.get(flag, flag) for flag in flags]
    status, out, err = generate(capsys, "--checkpoint", run, *flags, "--out", tmp_path / "o")
    assert status == 2
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1 and words in lines[0], err
    assert not (tmp_path / "o").exists()


def test_a_family_that_makes_no_variations_says_so(songs, tmp_path, capsys):  # noqa: F811
    make_checkpoints(tmp_path)
    melody = songs / "piece00.mid"
    for flags, words in [
        (["--variations-of", melody], "variations of a melody"),
        (["--blend", melody, melody], "blends of two melodies"),
    ]:
        status, out, err = generate(
            capsys, "--checkpoint", tmp_path / "pop_basic_rnn", *flags, "--out", tmp_path / "o"
        )
        assert status == 2
        assert err == f"error: Melody RNN models make no {words}; Note VAE models do\n"


@pytest.mark.skipif(shutil.which("abc2midi") is None, reason="needs abc2midi")
def test_variations_of_an_abc_tune(run, tmp_path, capsys):  # noqa: F811
    tune = tmp_path / "two.abc"
    tune.write_text("X:1\nT:First\nM:4/4\nL:1/4\nK:G\nGABc|d2B2|\n\nX:2\nT:Second\nK:D\nDFA2|\n")
    status, out, err = generate(
        capsys, "--checkpoint", run, "--variations-of", tune, "--seed", 1, "--out", tmp_path / "a"
    )
    assert status == 0, err
    assert len(list((tmp_path / "a").glob("*.mid"))) == 1


def test_the_help_states_each_range_and_the_librarys_defaults():
    commands = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001
    helps = {
        action.option_strings[0]: action.help
        for action in commands["generate"]._actions  # noqa: SLF001
        if action.option_strings
    }
    assert RANGES["distance"].describe() in helps["--distance"]
    assert f"default {DEFAULT_DISTANCE:g}" in helps["--distance"]
    assert RANGES["blend_steps"].describe() in helps["--blend-steps"]
    assert f"default {DEFAULT_BLEND_STEPS}" in helps["--blend-steps"]
