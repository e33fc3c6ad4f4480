"""melodygen.release: a shipped-checkpoint recipe, end to end on a tiny style made in code."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from melodygen import release
from melodygen.core.checkpoint import load_model
from melodygen.errors import MelodyGenError

TINY = release.Style(
    name="tiny",
    description="Tiny tunes",
    sources=(release.Source("Tunes made in code", "CC0-1.0", "https://example.org", "tunes"),),
    build_flags=("--eval-ratio", "0.25", "--time-signature", "4/4"),
    training=release.Training(
        steps=4, hparams="rnn_layer_sizes=[8],batch_size=4", eval_every=2, early_stopping=5
    ),
    configs=("basic_rnn",),
)


def test_recipe_runs_packages_and_tabulates(tune_folder: Path, tmp_path: Path, monkeypatch):
    work, output = tmp_path / "work", tmp_path / "checkpoints"
    recipe = release.Recipe(TINY, "basic_rnn", tune_folder.parent, work)
    commands = recipe.commands()
    assert list(commands) == list(release.STEPS)
    assert "--time-signature" in commands["build"] and "4" in commands["train"]

    # Originality generates 100 melodies by default; a few are enough here.
    commands["originality"] += ["--num", "6", "--bars", "2"]
    monkeypatch.setattr(release.Recipe, "commands", lambda self, data_root=None: commands)
    release.run_recipe(recipe)
    assert all(recipe.done(step) for step in release.STEPS)
    stamp = recipe.eval_json.stat().st_mtime_ns
    release.run_recipe(recipe)  # every step done: nothing runs again
    assert recipe.eval_json.stat().st_mtime_ns == stamp

    folder = release.write_checkpoint(recipe, output, machine="test machine")
    card = json.loads((folder / release.CARD_FILE).read_text())
    model, info = load_model(folder)
    assert card["name"] == "tiny_basic_rnn" and card["config"] == info.spec.config
    assert card["parameters"] == model.count_params()
    assert card["training"]["steps"] == info.training["step"] <= 4
    assert card["training"]["machine"] == "test machine"
    assert card["data"]["train_melodies"] == info.training["train_melodies"] > 0
    evaluation = json.loads(recipe.eval_json.read_text())
    assert card["metrics"] == {k: evaluation[k] for k in card["metrics"]}
    assert set(release.METRIC_KEYS) <= set(card["metrics"])
    assert card["originality"]["melodies"] == 6
    assert card["sanity"]["held_out"]["notes_per_bar"] > 0
    assert card["data"]["sources"][0]["licence"] == "CC0-1.0"
    assert any("--time-signature 4/4" in command for command in card["commands"])
    assert not any(str(tmp_path) in command for command in card["commands"][1:])
    curves = (folder / release.CURVES_FILE).read_text().splitlines()
    assert [json.loads(line)["step"] for line in curves] == [0, 2, 4]

    readme = release.write_readme(output)
    text = readme.read_text()
    assert "`tiny_basic_rnn`" in text and f"{card['metrics']['nll']:.3f}" in text
    release.write_readme(output)  # regenerating replaces the table, never appends
    assert readme.read_text() == text


def test_quality_bar_compares_against_basic():
    def card(config, nll):
        return {"name": f"folk_{config}", "style": "folk", "metrics": {"nll": nll}}

    lines = release.quality_bar([card("basic_rnn", 2.0), card("attention_rnn", 1.5)])
    assert lines == [
        "- folk: attention_rnn held-out NLL 1.500 is 25.0% lower than basic_rnn's 2.000 "
        "nats per step."
    ]
    assert "HIGHER" in release.quality_bar([card("basic_rnn", 1.0), card("lookback_rnn", 1.2)])[0]


def test_unknown_checkpoint_and_missing_data_are_one_line_errors(tmp_path: Path, capsys):
    with pytest.raises(MelodyGenError, match="unknown checkpoint jazz_rnn"):
        release.recipes(tmp_path, tmp_path, ["jazz_rnn"])
    code = release.main(["--data-root", str(tmp_path), "--work", str(tmp_path), "--only",
                         "folk_basic_rnn"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: folk_basic_rnn needs nottingham/melody under")


def test_a_configuration_can_train_its_own_way():
    own = release.Training(steps=9, hparams="batch_size=2", eval_every=3, early_stopping=1)
    style = dataclasses.replace(TINY, config_training={"attention_rnn": own})
    flags = {}
    for config in ("basic_rnn", "attention_rnn"):
        train = release.Recipe(style, config, Path("data"), Path("work")).commands()["train"]
        flags[config] = [train[train.index(flag) + 1] for flag in
                         ("--steps", "--hparams", "--eval-every", "--early-stopping")]  # fmt: skip
    assert flags == {
        "basic_rnn": ["4", "rnn_layer_sizes=[8],batch_size=4", "2", "5"],
        "attention_rnn": ["9", "batch_size=2", "3", "1"],
    }


def test_card_says_where_each_stretch_of_a_run_trained():
    history = [
        {"from_step": 0, "to_step": 2959, "device": "NVIDIA H200", "backend": "jax",
         "seconds": 474.4, "started": "a"},
        {"from_step": 2959, "to_step": 4000, "device": "CPU", "backend": "tensorflow",
         "seconds": 1800.0, "started": "b"},
    ]  # fmt: skip
    assert release.describe_history(history) == (
        "steps 0-2959 on NVIDIA H200 (jax, 8 min); steps 2959-4000 on CPU (tensorflow, 30 min)"
    )
    assert release.describe_history(None) == ""
