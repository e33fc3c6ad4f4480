"""The melodygen command line, end to end on a tiny folder, and its error handling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from melodygen.cli import main
from melodygen.families.melody_rnn.family import REPORT_KEYS


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_build_train_evaluate_end_to_end(tune_folder: Path, tmp_path: Path, capsys):
    data, run_dir, report = tmp_path / "data", tmp_path / "run", tmp_path / "eval.json"
    code, out, err = run(
        capsys,
        "dataset",
        "build",
        "--input",
        str(tune_folder),
        "--config",
        "lookback_rnn",
        "--output",
        str(data),
        "--eval-ratio",
        "0.25",
        "--quiet",
    )
    assert code == 0, err
    assert "files read:      13" in out and "files failed:    1" in out
    assert "broken.mid" in out and "melodies kept:   12" in out

    code, out, err = run(
        capsys,
        "train",
        "--config",
        "lookback_rnn",
        "--data",
        str(data),
        "--run-dir",
        str(run_dir),
        "--steps",
        "4",
        "--eval-every",
        "2",
        "--quiet",
        "--hparams",
        "rnn_layer_sizes=[16,16],batch_size=4",
    )
    assert code == 0, err
    assert "trained to step 4" in out and (run_dir / "model" / "melodygen.json").is_file()

    code, out, err = run(
        capsys,
        "evaluate",
        "--checkpoint",
        str(run_dir),
        "--data",
        str(data),
        "--json",
        str(report),
    )
    assert code == 0, err
    assert "event accuracy" in out and "no-event accuracy" in out
    figures = json.loads(report.read_text())
    assert set(REPORT_KEYS) <= set(figures)
    assert figures["steps"] > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            [
                "dataset",
                "build",
                "--input",
                "{tmp}/nowhere",
                "--config",
                "basic_rnn",
                "--output",
                "{tmp}/out",
            ],
            "no such file or folder",
        ),
        (
            [
                "dataset",
                "build",
                "--input",
                "{tmp}/empty",
                "--config",
                "basic_rnn",
                "--output",
                "{tmp}/out",
            ],
            "empty",
        ),
        (["train", "--data", "{tmp}/nowhere", "--run-dir", "{tmp}/run"], "does not exist"),
        (["train", "--data", "{tmp}/empty", "--run-dir", "{tmp}/run"], "not a MelodyGen dataset"),
        (
            ["evaluate", "--checkpoint", "{tmp}/empty", "--data", "{tmp}/empty"],
            "not a MelodyGen dataset",
        ),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(tmp_path: Path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    code, out, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_flag_values_are_rejected_by_the_parser(tmp_path: Path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "melodygen",
            "dataset",
            "build",
            "--input",
            str(tmp_path),
            "--config",
            "basic_rnn",
            "--output",
            str(tmp_path / "o"),
            "--eval-ratio",
            "1.5",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "eval ratio must be at least 0 and below 1" in result.stderr
    assert "Traceback" not in result.stderr
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "melodygen",
            "train",
            "--data",
            "x",
            "--run-dir",
            "y",
            "--config",
            "jazz_rnn",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "invalid choice: 'jazz_rnn'" in result.stderr


@pytest.mark.parametrize("value", ["4-4", "0/4", "4/3", "x/4"])
def test_bad_time_signature_is_rejected_by_the_parser(tmp_path: Path, capsys, value):
    argv = ["dataset", "build", "--input", str(tmp_path), "--config", "basic_rnn"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--output", str(tmp_path / "o"), "--time-signature", value])
    assert exit_info.value.code == 2
    assert "is not a time signature such as 4/4" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "time limit must be above 0 and at most 525,600 minutes"),
        ("soon", "is not a number"),
        ("nan", "time limit must be above 0"),
    ],
)
def test_bad_time_limit_is_rejected_by_the_parser(tmp_path: Path, capsys, value, message):
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "train",
                "--data",
                str(tmp_path),
                "--run-dir",
                str(tmp_path / "r"),
                "--time-limit",
                value,
            ]
        )
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("value", ["-5:7", "-2,0,2", "-3"])
def test_negative_transpositions_are_read_as_values(tmp_path: Path, capsys, value):
    # argparse takes "-5:7" for a flag; the README's example must still work.
    argv = ["dataset", "build", "--input", str(tmp_path / "nowhere"), "--config", "basic_rnn"]
    code, _, err = run(capsys, *argv, "--output", str(tmp_path / "o"), "--transpose", value)
    assert code == 2 and "no such file or folder" in err  # parsed; stopped at the input
