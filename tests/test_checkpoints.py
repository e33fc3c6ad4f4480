"""The checkpoints that ship in checkpoints/: each card matches its weights, each generates.

These run on the real shipped files, so a checkpoint whose card, weights or
JSON drift apart fails here before a user meets it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from melodygen import release
from melodygen.core.checkpoint import load_model, read_model_info
from melodygen.core.generation import GenerationRequest
from melodygen.families.melody_rnn.generate import MelodyGenerator

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
SHIPPED = sorted(path.parent for path in CHECKPOINTS.glob("*/melodygen.json"))
MAX_BYTES = 5 * 1024 * 1024


def test_every_recipe_is_shipped():
    expected = {recipe.name for recipe in release.recipes("data-root", "work")}
    assert {folder.name for folder in SHIPPED} == expected


@pytest.fixture(params=SHIPPED, ids=[folder.name for folder in SHIPPED])
def shipped(request) -> tuple[Path, dict]:
    folder = request.param
    return folder, json.loads((folder / release.CARD_FILE).read_text())


def test_card_matches_weights(shipped):
    folder, card = shipped
    _, info = read_model_info(folder)
    assert card["name"] == folder.name == f"{card['style']}_{card['config']}"
    assert card["config"] == info.spec.config
    assert card["hparams"] == info.hparams.to_dict()
    model, _ = load_model(folder)  # raises when a weight's shape differs from the JSON's network
    assert card["parameters"] == model.count_params()
    assert (folder / "model.weights.h5").stat().st_size == card["size_bytes"] <= MAX_BYTES


def test_card_has_held_out_figures_data_and_commands(shipped):
    folder, card = shipped
    metrics = card["metrics"]
    for key in release.METRIC_KEYS:
        assert math.isfinite(metrics[key]), key
    assert metrics["steps"] > 1000
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["nll"]), rel=1e-4)
    assert 0 < metrics["event_accuracy"] < metrics["accuracy"] < 1
    assert card["data"]["train_melodies"] > 100 and card["data"]["sources"]
    assert all(source["licence"] and source["url"] for source in card["data"]["sources"])
    assert card["training"]["steps"] > 0 and card["training"]["wall_seconds"] > 0
    assert any(command.startswith("melodygen train ") for command in card["commands"])
    assert card["originality"]["share_over_2_bars"] is not None
    assert card["sanity"]["generated"] and card["sanity"]["held_out"]
    curves = [json.loads(line) for line in (folder / release.CURVES_FILE).read_text().splitlines()]
    assert curves[0]["step"] == 0 and "eval" in curves[-1]


def test_card_commands_are_the_current_recipe(shipped):
    """A card never describes a recipe that has changed since its weights were trained."""
    folder, card = shipped
    (recipe,) = release.recipes("data-root", "work", only=[folder.name])
    assert card["commands"] == recipe.card_commands()


def test_no_copying_defect(shipped):
    """The checkpoint issue's rule: no more copying than real held-out melodies show."""
    _, card = shipped
    assert card["verdict"]["status"] == "ok", card["verdict"]["reasons"]
    assert card["originality"]["over_4_bars"] == 0


@pytest.mark.parametrize("style", list(release.STYLES))
@pytest.mark.parametrize("config", ["lookback_rnn", "attention_rnn"])
def test_beats_basic_on_held_out_nll(style, config):
    cards = {card["name"]: card for card in release.read_cards(CHECKPOINTS)}
    basic = cards[f"{style}_basic_rnn"]["metrics"]["nll"]
    assert cards[f"{style}_{config}"]["metrics"]["nll"] < basic


def test_generates(shipped):
    folder, _ = shipped
    result = MelodyGenerator(folder).generate(
        GenerationRequest(length_steps=32, num_outputs=2, seed=1)
    )
    assert len(result.melodies) == 2
    for melody in result.melodies:
        events = np.asarray(melody.events)
        assert len(events) == 32 and (events >= 0).any()


def test_readme_table_is_current():
    text = (CHECKPOINTS / "README.md").read_text()
    assert release.readme_table(release.read_cards(CHECKPOINTS)) in text
