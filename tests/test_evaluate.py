"""Evaluation (issue 14): bits per note, on a built dataset and on music files, and the CLI.

Bits per note is checked three independent ways: against the family's own event NLL per
step (same total, other units), against a model whose every prediction is uniform (its
bits are the predicted steps times log2 of the number of classes), and against the same
tunes scored from a built dataset instead of from their files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from melodygen.cli import main
from melodygen.core.checkpoint import build_network, load_model, save_model
from melodygen.core.evaluate import evaluate, evaluate_files, format_ranking, read_tunes
from melodygen.families.melody_rnn.configs import HParams
from melodygen.families.melody_rnn.dataset import MelodyDataset, build_dataset
from melodygen.families.melody_rnn.model_file import ModelInfo
from melodygen.families.melody_rnn.scoring import score_dataset, score_tunes, tune_melodies

NOTES_PER_TUNE = 32  # conftest.write_tune: eight bars of quarter notes
NO_EVENT_CLASS, NOTE_OFF_CLASS = 0, 1
# A tune's melody: eight bars of sixteenths, up to the last note's last held step.
PREDICTED_STEPS = 8 * 16 - 2
# Every event costs log2(38) under a uniform model, the first (given) one included.
UNIFORM_BITS_PER_NOTE = (PREDICTED_STEPS + 1) * math.log2(38) / NOTES_PER_TUNE


def save_tiny(folder: Path, config: str, seed: int = 0, bias: np.ndarray | None = None) -> Path:
    """A small untrained network saved as a real model; ``bias`` replaces its output layer
    with that constant (zero kernel), so every step predicts the same distribution."""
    import keras

    keras.utils.set_random_seed(seed)
    hparams = HParams(rnn_layer_sizes=(16, 16), attn_length=6 if config == "attention_rnn" else 0)
    info = ModelInfo.for_config(config, hparams)
    model = build_network(info)
    if bias is not None:
        layer = model.get_layer("logits")
        kernel, _ = layer.get_weights()
        layer.set_weights([np.zeros_like(kernel), np.asarray(bias, np.float32)])
    return save_model(folder, model, info)


def build(folder: Path, config: str, output: Path, eval_ratio: float) -> Path:
    build_dataset([folder], config, output, eval_ratio=eval_ratio, progress=False, workers=1)
    return output


@pytest.fixture(scope="module")
def tunes(tmp_path_factory) -> Path:
    from conftest import PHRASES, write_tune

    folder = tmp_path_factory.mktemp("tunes")
    for index in range(8):
        write_tune(folder / f"tune{index}.mid", PHRASES[index % len(PHRASES)], transpose=index)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    classes = 38  # basic_rnn: no-event, note-off and 36 pitches
    peaked = np.zeros(classes)
    peaked[NOTE_OFF_CLASS] = 12.0  # nearly sure of a note-off at every step: bad at music
    return {
        "lookback": save_tiny(folder / "lookback", "lookback_rnn", seed=1),
        "attention": save_tiny(folder / "attention", "attention_rnn", seed=2),
        "random": save_tiny(folder / "random", "basic_rnn", seed=3),
        "uniform": save_tiny(folder / "uniform", "basic_rnn", bias=np.zeros(classes)),
        "peaked": save_tiny(folder / "peaked", "basic_rnn", bias=peaked),
    }


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(item) for item in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, message: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


# Bits per note is right ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "config"), [("lookback", "lookback_rnn"), ("random", "basic_rnn")]
)
def test_bits_per_note_is_the_event_nll_in_other_units(tunes, models, tmp_path, model, config):
    data = build(tunes, config, tmp_path / "data", eval_ratio=0.5)
    figures = evaluate(models[model], data)
    # Same total negative log-likelihood: bits * ln 2 over the steps is nats per step, once
    # each melody's first event (never predicted, charged a uniform guess) is taken off.
    split = MelodyDataset.open(data).load("eval")
    first = len(split) * math.log2(
        38 if config == "basic_rnn" else load_model(models[model])[1].num_event_classes
    )
    assert (figures["bits"] - first) * math.log(2) / figures["steps"] == pytest.approx(
        figures["nll"], rel=1e-5
    )
    if config == "lookback_rnn":
        # The check tells event from label NLL: repeat labels fold into their events.
        assert abs(figures["nll"] - figures["label_nll"]) > 1e-3
    split = MelodyDataset.open(data).load("eval")
    assert figures["tunes"] == len(set(split.sources))
    assert figures["notes"] == int((split.events >= 0).sum()) == NOTES_PER_TUNE * figures["tunes"]
    assert figures["bits_per_note_pooled"] == pytest.approx(figures["bits"] / figures["notes"])
    # Batching changes nothing.
    model_, info = load_model(models[model])
    one_by_one = score_dataset(model_, info, MelodyDataset.open(data), "eval", batch_size=1)
    assert sum(s.bits for s in one_by_one) == pytest.approx(figures["bits"], rel=1e-5)


def test_a_uniform_model_costs_log2_classes_per_predicted_step(tunes, models, tmp_path):
    data = build(tunes, "basic_rnn", tmp_path / "data", eval_ratio=0.5)
    figures = evaluate(models["uniform"], data)
    melodies = len(MelodyDataset.open(data).load("eval"))
    assert figures["bits"] == pytest.approx((figures["steps"] + melodies) * math.log2(38), rel=1e-5)
    model, info = load_model(models["uniform"])
    tune_list, _ = read_tunes([tunes])
    scores = score_tunes(model, info, tune_list)
    assert len(scores) == len(tune_list) == 8
    for score, (_, sequences) in zip(scores, tune_list, strict=True):
        assert score.notes == NOTES_PER_TUNE
        # The first event of a melody is given (charged a uniform guess), every later one
        # predicted.
        (events,) = tune_melodies(info, sequences)
        assert len(events) == PREDICTED_STEPS + 1
        assert score.bits == pytest.approx((PREDICTED_STEPS + 1) * math.log2(38), rel=1e-5)
        assert score.bits_per_note == pytest.approx(UNIFORM_BITS_PER_NOTE, rel=1e-5)


def test_tunes_read_from_files_score_as_their_built_dataset(tunes, models, tmp_path):
    """--input extracts melodies exactly as `dataset build` does."""
    data = build(tunes, "lookback_rnn", tmp_path / "data", eval_ratio=0.0)
    model, info = load_model(models["lookback"])
    from_dataset = {
        s.name: s for s in score_dataset(model, info, MelodyDataset.open(data), "train")
    }
    tune_list, facts = read_tunes([tunes])
    from_files = {s.name: s for s in score_tunes(model, info, tune_list)}
    assert facts["files"] == facts["tunes_read"] == 8 and facts["files_skipped"] == 0
    assert set(from_files) == set(from_dataset) == {f"tune{i}.mid" for i in range(8)}
    for name, score in from_files.items():
        assert score.notes == from_dataset[name].notes
        assert score.bits == pytest.approx(from_dataset[name].bits, rel=1e-5)


# Ranking --------------------------------------------------------------------------------------


def test_models_are_ranked_by_pooled_bits_per_note(tunes, models):
    names = ["peaked", "random", "uniform", "lookback", "attention"]
    rows = evaluate_files([models[name] for name in names], [tunes])
    assert [row["rank"] for row in rows] == [1, 2, 3, 4, 5]
    pooled = [row["bits_per_note_pooled"] for row in rows]
    assert pooled == sorted(pooled) and len(set(pooled)) == 5
    assert rows[-1]["model"] == str(models["peaked"])  # sure of the wrong event: last
    uniform = next(row for row in rows if row["model"] == str(models["uniform"]))
    assert uniform["bits_per_note_pooled"] == pytest.approx(UNIFORM_BITS_PER_NOTE, rel=1e-5)
    for row in rows:
        assert row["tunes"] == 8 and row["notes"] == 8 * NOTES_PER_TUNE
        assert row["family"] == "melody_rnn"
    table = format_ranking(rows).splitlines()
    body = [line for line in table if line.lstrip()[:1].isdigit()]
    assert [line.split()[1] for line in body] == [row["model"] for row in rows]


def test_cli_ranks_models_on_a_nested_folder(tune_folder, models, tmp_path, capsys):
    report = tmp_path / "ranking.json"
    code, out, err = run(
        capsys,
        "evaluate",
        "--checkpoint",
        models["peaked"],
        models["uniform"],
        "--input",
        tune_folder,
        "--json",
        report,
    )
    assert code == 0, err
    # tune_folder: 12 tunes, half of them in more/, and one broken.mid skipped.
    assert "13 files, 12 tunes, 1 skipped as unreadable" in out and "broken.mid" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("rank"))
    assert "bits/note mean" in lines[header] and "bits/note pooled" in lines[header]
    assert lines[header + 1].split()[:3] == ["1", str(models["uniform"]), "melody_rnn"]
    assert lines[header + 2].split()[:2] == ["2", str(models["peaked"])]
    ranking = json.loads(report.read_text())["ranking"]
    assert [row["rank"] for row in ranking] == [1, 2]
    assert ranking[0]["tunes"] == 12 and ranking[0]["notes"] == 12 * NOTES_PER_TUNE
    names = {
        s.name for s in score_tunes(*load_model(models["uniform"]), read_tunes([tune_folder])[0])
    }
    assert "more/tune00.mid" in names and "tune01.mid" in names


def test_a_tune_without_a_melody_is_left_out_and_said_so(tunes, models, tmp_path, capsys):
    import pretty_midi

    folder = tmp_path / "mixed"
    folder.mkdir()
    for file in sorted(tunes.iterdir())[:3]:
        (folder / file.name).write_bytes(file.read_bytes())
    drums = pretty_midi.PrettyMIDI()  # drums only: no melody for any model
    kit = pretty_midi.Instrument(program=0, is_drum=True)
    kit.notes += [pretty_midi.Note(100, 36, i * 0.5, i * 0.5 + 0.1) for i in range(16)]
    drums.instruments.append(kit)
    drums.write(str(folder / "short.mid"))
    code, out, err = run(capsys, "evaluate", "--checkpoint", models["uniform"], "--input", folder)
    assert code == 0, err
    assert "4 files, 4 tunes" in out and "3 tunes every model could read; 1 held no melody" in out


# Evaluating a built dataset still works, and gains bits per note -----------------------------


def test_cli_evaluates_a_dataset_with_bits_per_note(tunes, models, tmp_path, capsys):
    data = build(tunes, "basic_rnn", tmp_path / "data", eval_ratio=0.5)
    report = tmp_path / "eval.json"
    code, out, err = run(
        capsys, "evaluate", "--checkpoint", models["random"], "--data", data, "--json", report
    )
    assert code == 0, err
    assert "event accuracy" in out and "no-event accuracy" in out and "bits per note:" in out
    figures = json.loads(report.read_text())
    assert {"nll", "steps", "bits_per_note_mean", "bits_per_note_pooled", "tunes"} <= set(figures)
    assert f"{figures['bits_per_note_pooled']:.4f} (pooled" in out

    code, out, err = run(
        capsys, "evaluate", "--checkpoint", models["random"], models["uniform"], "--data", data
    )
    assert code == 0, err
    assert out.count("bits per note:") == 2 and "rank" in out


# One line and exit 2 ------------------------------------------------------------------------


def unknown_family_model(models: dict, tmp_path: Path) -> Path:
    folder = tmp_path / "alien"
    folder.mkdir()
    for file in models["uniform"].iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    values = json.loads((folder / "melodygen.json").read_text())
    values["family"] = "no_such_family"
    (folder / "melodygen.json").write_text(json.dumps(values))
    return folder


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing input", "no such file or folder"),
        ("no music in folder", "contains no music files"),
        ("only broken music", "none of the 2 music file(s) could be read"),
        ("text file named", "unsupported file type '.txt'"),
        ("missing checkpoint", "does not exist"),
        ("unknown family", "unknown model family 'no_such_family'"),
        ("neither", "needs either --data DATASET or --input FILES_OR_DIRS, not neither"),
        ("both", "not both"),
        ("split with input", "--split goes with --data"),
    ],
)
def test_evaluate_errors_are_one_line_with_exit_code_2(
    tunes, models, tmp_path, capsys, case, message
):
    junk = tmp_path / "junk"
    (junk / "deeper").mkdir(parents=True)
    (junk / "notes.txt").write_text("not music")
    (junk / "deeper" / "cover.png").write_bytes(b"\x89PNG\r\n")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.mid").write_text("this is not a MIDI file")
    (broken / "b.abc").write_text("")
    good = models["uniform"]
    argv = {
        "missing input": ["--checkpoint", good, "--input", tmp_path / "nowhere"],
        "no music in folder": ["--checkpoint", good, "--input", junk],
        "only broken music": ["--checkpoint", good, "--input", broken],
        "text file named": ["--checkpoint", good, "--input", junk / "notes.txt"],
        "missing checkpoint": ["--checkpoint", good, tmp_path / "gone", "--input", tunes],
        "unknown family": [
            "--checkpoint",
            unknown_family_model(models, tmp_path),
            "--input",
            tunes,
        ],
        "neither": ["--checkpoint", good],
        "both": ["--checkpoint", good, "--input", tunes, "--data", tmp_path],
        "split with input": ["--checkpoint", good, "--input", tunes, "--split", "train"],
    }[case]
    code, out, err = run(capsys, "evaluate", *argv)
    assert_one_line_error(code, err, message)
    assert out == ""


def test_unknown_family_is_one_line_with_a_dataset_too(tunes, models, tmp_path, capsys):
    data = build(tunes, "basic_rnn", tmp_path / "data", eval_ratio=0.5)
    alien = unknown_family_model(models, tmp_path)
    code, _, err = run(capsys, "evaluate", "--checkpoint", alien, "--data", data)
    assert_one_line_error(code, err, "unknown model family 'no_such_family'")


def test_held_out_keeps_the_tunes_dataset_build_holds_out(tunes, models, tmp_path, capsys):
    data = build(tunes, "basic_rnn", tmp_path / "data", eval_ratio=0.5)
    held = set(MelodyDataset.open(data).load("eval").sources)
    kept, facts = read_tunes([tunes], held_out=0.5)
    assert {name for name, _ in kept} == held and 0 < len(held) < 8
    assert facts["held_out"] == 0.5
    code, out, err = run(
        capsys, "evaluate", "--checkpoint", models["uniform"], "--input", tunes, "--held-out", "0.5"
    )
    assert code == 0, err
    assert f"{len(held)} tunes; the tunes a split of 0.5 holds out" in out
    code, _, err = run(
        capsys, "evaluate", "--checkpoint", models["uniform"], "--data", data, "--held-out", "0.5"
    )
    assert_one_line_error(code, err, "--held-out goes with --input")
