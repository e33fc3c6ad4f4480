"""melodygen.release: a shipped-checkpoint recipe, end to end on a tiny style made in code."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from melodygen import release
from melodygen.core.checkpoint import load_model
from melodygen.core.family import get_family
from melodygen.errors import MelodyGenError

needs_abc2midi = pytest.mark.skipif(shutil.which("abc2midi") is None, reason="needs abc2midi")

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
    assert list(commands) == list(release.MELODY_STEPS)
    assert "--time-signature" in commands["build"] and "4" in commands["train"]

    # Originality generates 100 melodies by default; a few are enough here.
    commands["originality"] += ["--num", "6", "--bars", "2"]
    monkeypatch.setattr(release.Recipe, "commands", lambda self, data_root=None: commands)
    release.run_recipe(recipe)
    assert all(recipe.done(step) for step in release.MELODY_STEPS)
    assert not recipe.done("validity")  # not a step of a Melody RNN recipe
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
    assert set(get_family("melody_rnn").figure_labels()) <= set(card["metrics"])
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


# An abc_char recipe: build, train, evaluate, validity, originality, card --------------------

ABC_BARS = ["GAB c2d|e2d c2B|", "d2B G2A|B2A G3|", "ded cBA|B2G A2F|", "G3 G2A|B2c d2e|"]


def _abc_tune(number: int) -> str:
    rng = np.random.default_rng(number)
    body = " ".join(ABC_BARS[i] for i in rng.integers(0, len(ABC_BARS), 4))[:-1]
    return f"X:{number}\nT:Jig {number}\nM:6/8\nL:1/8\nR:jig\nK:G\n|:{body}:|\n|:{body}:|\n"


@pytest.fixture
def abc_folder(tmp_path: Path) -> Path:
    """24 jigs whose bars are full and whose repeats balance: every real tune is valid."""
    folder = tmp_path / "abc"
    folder.mkdir()
    (folder / "book.abc").write_text("\n".join(_abc_tune(n) for n in range(1, 25)))
    return folder


TINY_ABC = release.Style(
    name="tiny_abc",
    description="Tiny jigs",
    sources=(release.Source("Jigs made in code", "CC0-1.0", "https://example.org", "abc"),),
    build_flags=("--eval-ratio", "0.3"),
    family="abc_char",
    configs=("char_seed",),
    names={"char_seed": "tiny_abc_char"},
    dataset="tiny_abc",
    steps=release.TEXT_STEPS,
    training=release.Training(
        steps=4,
        hparams="embedding_size=8,rnn_layer_sizes=[16],batch_size=4,dropout=0.0",
        eval_every=2,
        early_stopping=5,
        time_limit=30,
    ),
    bars=release.ABC_BARS,
)


@needs_abc2midi
def test_abc_recipe_runs_packages_and_tabulates(abc_folder: Path, tmp_path: Path, monkeypatch):
    work, output = tmp_path / "work", tmp_path / "checkpoints"
    recipe = release.Recipe(TINY_ABC, "char_seed", abc_folder.parent, work)
    commands = recipe.commands()
    assert list(commands) == list(release.TEXT_STEPS)  # validity included
    assert commands["build"][2:4] == ["--family", "abc_char"]
    assert recipe.dataset == work / "data" / "tiny_abc" and recipe.name == "tiny_abc_char"
    assert "--hparams" in commands["train"] and "--time-limit" in commands["train"]
    commands["validity"] += ["--num", "5", "--bars", "8"]
    commands["originality"] += ["--num", "4", "--bars", "2"]
    monkeypatch.setattr(release.Recipe, "commands", lambda self, data_root=None: commands)
    release.run_recipe(recipe)
    assert all(recipe.done(step) for step in release.TEXT_STEPS)

    folder = release.write_checkpoint(recipe, output, machine="test machine")
    card = json.loads((folder / release.CARD_FILE).read_text())
    model, info = load_model(folder)
    assert card["family"] == "abc_char" and card["config"] == info.config == "char_seed"
    assert card["parameters"] == model.count_params() == info.parameters
    assert card["hparams"] == info.hparams.to_dict()
    assert card["model"]["vocabulary"].startswith(f"{info.vocab_size} symbols")
    evaluation = json.loads(recipe.eval_json.read_text())
    assert set(card["metrics"]) == {
        "nll", "perplexity", "accuracy", "steps", *release.BITS_KEYS
    }  # fmt: skip
    assert card["metrics"] == {k: evaluation[k] for k in card["metrics"]}
    assert "per character" in card["training"]["selected"]
    validity = json.loads(recipe.validity_json.read_text())
    assert card["validity"]["share_of_real"] == validity["share_of_real"]
    assert card["validity"]["held_out"]["valid"] == 1.0  # every real jig here is valid
    assert card["validity"]["generated"]["tunes"] == card["validity"]["settings"]["num"] == 5
    assert card["originality"]["melodies"] == 4
    assert [bar["figure"] for bar in card["quality_bar"]] == [
        "metrics.nll",
        "validity.share_of_real",
    ]
    assert card["quality_bar"][0]["value"] == card["metrics"]["nll"]
    assert card["quality_bar"][0]["met"] is (card["metrics"]["nll"] < 1.16)  # 4 steps: not met
    assert card["data"]["sources"][0]["licence"] == "CC0-1.0"
    assert card["commands"][0].startswith("melodygen dataset build --family abc_char --input")
    assert any(c.startswith("melodygen validity ") for c in card["commands"])

    text = release.write_readme(output).read_text()
    assert "`tiny_abc_char`" in text and "NLL per character" in text
    assert "event acc." not in text  # no Melody RNN here: only the text table
    assert "- tiny_abc_char: held-out loss below 1.16 nats per character" in text
    assert "NOT met" in text


def test_bars_judge_the_cards_own_figures():
    below, at_least = release.ABC_BARS
    card = {"metrics": {"nll": 1.1}, "validity": {"share_of_real": 0.95}}
    assert below.judge(card)["met"] and at_least.judge(card)["met"]
    card = {"metrics": {"nll": 1.16}, "validity": {"share_of_real": 0.89}}
    assert not below.judge(card)["met"] and not at_least.judge(card)["met"]
    missing = below.judge({"metrics": {}})
    assert missing["value"] is None and not missing["met"]
    assert not at_least.judge({"validity": {"share_of_real": float("nan")}})["met"]


def test_abc_recipes_are_data_and_jigs_run_only_when_named(tmp_path: Path):
    shipped = {recipe.name: recipe for recipe in release.recipes(tmp_path, tmp_path)}
    assert "folk_abc_char" in shipped and "jigs_abc_char" not in shipped
    folk = shipped["folk_abc_char"]
    assert folk.family == "abc_char" and folk.dataset == tmp_path / "data" / "folk_abc"
    assert [s.path for s in folk.style.sources] == ["nottingham/abc", "folk_abc"]
    build, train = folk.commands()["build"], folk.commands()["train"]
    assert build[:4] == ["dataset", "build", "--family", "abc_char"]
    assert train[train.index("--steps") :] == [
        "--steps", "8100", "--eval-every", "300", "--early-stopping", "8", "--quiet",
    ]  # fmt: skip
    (jigs,) = release.recipes(tmp_path, tmp_path, ["jigs_abc_char"])
    assert jigs.commands()["build"][5] == str(tmp_path / "nottingham/abc/jigs.abc")
    # A Melody RNN recipe's commands are what they were: no family flag, no validity.
    melody = shipped["folk_basic_rnn"]
    assert "--family" not in melody.commands()["build"] and "validity" not in melody.commands()


@needs_abc2midi
def test_validity_report_and_cli(abc_folder: Path, tmp_path: Path, capsys):
    from melodygen.cli import main
    from melodygen.families.abc_char.validity import validity_report
    from melodygen.io.abc import check_validity, read_tunebook

    data, run = tmp_path / "data", tmp_path / "run"
    assert main(["dataset", "build", "--family", "abc_char", "--input", str(abc_folder),
                 "--output", str(data), "--eval-ratio", "0.3", "--quiet"]) == 0  # fmt: skip
    assert main(["train", "--data", str(data), "--run-dir", str(run), "--steps", "2",
                 "--hparams", "embedding_size=8,rnn_layer_sizes=[16],batch_size=4",
                 "--quiet"]) == 0  # fmt: skip
    report = validity_report(run, data, num=6, seed=3, bars=8)
    assert report["held_out"]["tunes"] == report["settings"]["held_out_tunes"] > 0
    assert report["held_out"]["valid"] == 1.0
    assert report["generated"]["tunes"] == 6
    # An untrained model writes noise: it fails the bar, and says why.
    assert report["generated"]["valid"] < 0.9 and not report["quality_bar"]["met"]
    assert report["share_of_real"] == report["generated"]["valid"]
    assert sum(item["tunes"] for item in report["generated"]["problems"]) > 0
    assert validity_report(run, data, num=6, seed=3, bars=8)["generated"] == report["generated"]
    # Broken real tunes count against the real rate: the same judge for both columns.
    tunes, _ = read_tunebook(abc_folder / "book.abc")
    assert all(check_validity(tune).valid for tune in tunes)

    capsys.readouterr()
    code = main(["validity", "--checkpoint", str(run), "--data", str(data), "--num", "3",
                 "--bars", "8", "--json", str(tmp_path / "v.json")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "valid (all three)" in out and "quality bar 90%" in out
    assert json.loads((tmp_path / "v.json").read_text())["generated"]["tunes"] == 3


def test_validity_refuses_a_melody_dataset(tune_folder: Path, tmp_path: Path, capsys):
    from melodygen.cli import main

    data = tmp_path / "melody"
    assert main(["dataset", "build", "--input", str(tune_folder), "--config", "basic_rnn",
                 "--output", str(data), "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["validity", "--checkpoint", str(tmp_path), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "validity judges ABC text" in err
    assert len(err.strip().splitlines()) == 1


def test_note_vae_recipes_measure_the_code_space_and_judge_their_bars(tmp_path: Path):
    shipped = {recipe.name: recipe for recipe in release.recipes(tmp_path, tmp_path)}
    for name, source in (("folk_note_vae", "nottingham/melody"), ("pop_note_vae", "pop909")):
        recipe = shipped[name]
        assert recipe.family == "note_vae" and [s.path for s in recipe.style.sources] == [source]
        commands = recipe.commands()
        assert list(commands) == ["build", "train", "evaluate", "latent", "originality"]
        # Folk tunes keep their keys (the held-out tunes are in theirs); pop is transposed.
        assert ("--transpose=-3:3" in commands["build"]) == (name == "pop_note_vae")
        assert commands["latent"][:1] == ["latent"]
        assert commands["latent"][-2:] == ["--json", str(recipe.latent_json)]
    report = {
        "overlap": {"prior": {"mean": 0.9}, "train": {"mean": 0.95}, "samples": 8, "seed": 0,
                    "temperature": 1.0, "data": "x", "seconds": 1.0},
        "blends": {"pairs": 2, "steps": 3, "seed": 0, "ends": 0.8, "nearer": 0.4,
                   "closer_share": 1.0, "smooth_share": 1.0, "to_first": [0, 0.5, 0.8],
                   "to_last": [0.8, 0.4, 0], "ends_kept": 0.1, "seconds": 1.0,
                   "joint": {"ends": 0.9, "nearer": 0.6, "closer_share": 0.5,
                             "smooth_share": 0.5}},
    }  # fmt: skip
    card = {
        "latent": release._latent_card(report),
        "metrics": {"code_pitch_duration_accuracy": 0.5},
    }
    assert "seconds" not in card["latent"]["blends"] and card["latent"]["overlap"]["samples"] == 8
    assert card["latent"]["blends"]["joint"]["closer_share"] == 0.5
    judged = [bar.judge(card) for bar in release.VAE_BARS]
    assert [bar["met"] for bar in judged] == [False, True, True]


def test_folk_phrase_rnn_recipe_measures_structure_and_judges_its_own_bars(tmp_path: Path):
    shipped = {recipe.name: recipe for recipe in release.recipes(tmp_path, tmp_path)}
    phrase = shipped["folk_phrase_rnn"]
    assert "pop_phrase_rnn" not in shipped  # the form bar is the folk tunes'
    originality = phrase.commands()["originality"]
    assert originality[originality.index("--structure-tunes") + 1] == "200"
    assert originality[originality.index("--structure-per-primer") + 1] == "4"
    train = phrase.commands()["train"]
    assert train[train.index("--hparams") + 1] == "batch_size=128,loss=event,dropout_keep_prob=0.6"
    # The other folk recipes keep their commands and bars.
    assert "--structure-tunes" not in shipped["folk_attention_rnn"].commands()["originality"]
    assert shipped["folk_attention_rnn"].bars == ()
    good = {
        "structure": {"generated": {"exact": {"lag_4_or_8": 0.2}}},
        "metrics": {"nll": 0.73},
        "originality": {"over_4_bars": 0},
    }
    assert all(bar.judge(good)["met"] for bar in phrase.bars)
    bad = {
        "structure": {"generated": {"exact": {"lag_4_or_8": 0.149}}},
        "metrics": {"nll": 0.7395},
        "originality": {"over_4_bars": 1},
    }
    assert not any(bar.judge(bad)["met"] for bar in phrase.bars)
