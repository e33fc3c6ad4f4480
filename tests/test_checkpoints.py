"""The checkpoints that ship in checkpoints/: each card matches its weights, each generates.

These run on the real shipped files, so a checkpoint whose card, weights or
JSON drift apart fails here before a user meets it. Every card of any family found
under checkpoints/ is checked; the checks a family has no figures for (a Melody RNN's
event accuracy, an ABC model's validity) apply to the families whose cards have them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from melodygen import release
from melodygen.core.checkpoint import info_family, load_model, read_model_info
from melodygen.core.family import get_family
from melodygen.core.generation import GenerationRequest, load_generator

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
SHIPPED = sorted(path.parent for path in CHECKPOINTS.glob("*/melodygen.json"))
MAX_BYTES = 5 * 1024 * 1024
"""A Melody RNN's weights file at most; any model's: its weights alone, in float32."""


def test_every_recipe_is_shipped():
    expected = {recipe.name for recipe in release.recipes("data-root", "work")}
    assert {folder.name for folder in SHIPPED} == expected


@pytest.fixture(params=SHIPPED, ids=[folder.name for folder in SHIPPED])
def shipped(request) -> tuple[Path, dict]:
    folder = request.param
    return folder, json.loads((folder / release.CARD_FILE).read_text())


def _recipe(name: str) -> release.Recipe:
    (recipe,) = release.recipes("data-root", "work", only=[name])
    return recipe


def test_card_matches_weights(shipped):
    folder, card = shipped
    _, info = read_model_info(folder)
    family = info_family(info)
    recipe = _recipe(folder.name)
    assert card["name"] == folder.name == recipe.name
    assert (card["style"], card["config"]) == (recipe.style.name, recipe.config)
    assert card.get("family", "melody_rnn") == family.name == recipe.family
    assert card["config"] == family.configuration(info)
    assert card["hparams"] == info.hparams.to_dict()
    if "model" in card:  # what the card says of the network, as the family reads the weights
        assert card["model"] == {str(k): str(v) for k, v in family.model_facts(info)}
    model, _ = load_model(folder)  # raises when a weight's shape differs from the JSON's network
    assert card["parameters"] == model.count_params()
    size = (folder / "model.weights.h5").stat().st_size
    assert size == card["size_bytes"]
    # The weights alone (no optimizer moments, which would double or triple the file); HDF5
    # keeps about 4 KB of metadata a weight array (a Transformer has a few hundred).
    assert size <= max(MAX_BYTES, 4 * card["parameters"] + 1024 * 1024)


def test_card_has_held_out_figures_data_and_commands(shipped):
    folder, card = shipped
    metrics = card["metrics"]
    family = get_family(card.get("family", "melody_rnn"))
    for key in family.figure_labels():  # every figure of its family, finite
        assert math.isfinite(metrics[key]), key
    for key in release.BITS_KEYS:
        if key in metrics:
            assert 0 < metrics[key] < 30, key
    assert metrics["steps"] > 1000
    if "perplexity" in metrics:  # a family whose nll is a likelihood (not a VAE's bound)
        assert metrics["perplexity"] == pytest.approx(math.exp(metrics["nll"]), rel=1e-4)
    for key in [key for key in metrics if key.endswith("accuracy")]:
        assert 0 < metrics[key] <= 1, key  # 1: one class only (the folk notes' one velocity)
    if "event_accuracy" in metrics:
        assert 0 < metrics["event_accuracy"] < metrics["accuracy"] < 1
    assert card["data"]["train_melodies"] > 100 and card["data"]["sources"]
    assert all(source["licence"] and source["url"] for source in card["data"]["sources"])
    assert card["training"]["steps"] > 0 and card["training"]["wall_seconds"] > 0
    assert any(command.startswith("melodygen train ") for command in card["commands"])
    assert card["originality"]["share_over_2_bars"] is not None
    assert card["sanity"]["generated"] and card["sanity"]["held_out"]
    curves = [json.loads(line) for line in (folder / release.CURVES_FILE).read_text().splitlines()]
    assert curves[0]["step"] == 0 and "eval" in curves[-1]
    # The card's held-out figure is the best evaluation the curves show (what train kept),
    # by the figure the family picks the kept model with.
    metric = family.selection_metric(read_model_info(folder)[1])
    best = min(c["eval"][metric] for c in curves if metric in c.get("eval", {}))
    assert metrics[metric] == pytest.approx(best, rel=0.02)


def test_validity_figures_add_up(shipped):
    """A family that writes text reports validity: sampled vs real, and their ratio."""
    folder, card = shipped
    if "validity" not in _recipe(folder.name).steps:
        pytest.skip(f"{folder.name}: its family measures no validity")
    validity = card["validity"]
    made, real = validity["generated"], validity["held_out"]
    assert made["tunes"] == validity["settings"]["num"] == release.VALIDITY_TUNES
    assert real["tunes"] == validity["settings"]["held_out_tunes"] > 0
    for figures in (made, real):
        assert figures["valid"] <= min(
            figures["parses"], figures["full_bars"], figures["balanced_repeats"]
        )
    assert validity["share_of_real"] == pytest.approx(made["valid"] / real["valid"])
    # as users get the tunes (bars checked), and the model's raw samples beside them
    assert validity["settings"]["check_bars"] is True
    raw = card["validity_raw"]
    assert raw["settings"]["check_bars"] is False
    assert raw["held_out"] == real
    assert raw["share_of_real"] == pytest.approx(raw["generated"]["valid"] / real["valid"])


def test_quality_bars_are_the_cards_own_figures_and_said_as_they_are(shipped):
    """Each bar a style states, recomputed from the card's figures, and the checkpoints'
    README says of each whether it is met: a bar a shipped model misses is never hidden."""
    folder, card = shipped
    recipe = _recipe(folder.name)
    if not recipe.style.bars:
        pytest.skip(f"{folder.name}: its style states no bars of its own")
    assert card["quality_bar"] == [bar.judge(card) for bar in recipe.style.bars]
    lines = (CHECKPOINTS / "README.md").read_text().splitlines()
    for bar in card["quality_bar"]:
        (line,) = [x for x in lines if x.startswith(f"- {folder.name}: {bar['bar']}:")]
        assert line.endswith(", met.") if bar["met"] else line.endswith(", NOT met."), line


def test_card_commands_are_the_current_recipe(shipped):
    """A card never describes a recipe that has changed since its weights were trained."""
    folder, card = shipped
    assert card["commands"] == _recipe(folder.name).card_commands()


def test_no_copying_defect(shipped):
    """The checkpoint issue's rule: no more copying than real held-out melodies show."""
    _, card = shipped
    assert card["verdict"]["status"] == "ok", card["verdict"]["reasons"]
    assert card["originality"]["over_4_bars"] == 0


@pytest.mark.parametrize(
    "style", [s.name for s in release.STYLES.values() if s.shipped and "basic_rnn" in s.configs]
)
@pytest.mark.parametrize("config", ["lookback_rnn", "attention_rnn"])
def test_beats_basic_on_held_out_nll(style, config):
    cards = {card["name"]: card for card in release.read_cards(CHECKPOINTS)}
    basic = cards[f"{style}_basic_rnn"]["metrics"]["nll"]
    assert cards[f"{style}_{config}"]["metrics"]["nll"] < basic


def test_generates(shipped):
    folder, card = shipped
    result = load_generator(folder).generate(
        GenerationRequest(length_steps=32, num_outputs=2, seed=1)
    )
    assert len(result.melodies) == 2
    if "validity" not in card:
        # the length asked, where the family reads one (a Note VAE writes its window)
        reads_length = (
            "length_steps" in get_family(card.get("family", "melody_rnn")).request_options()
        )
        for melody in result.melodies:
            events = np.asarray(melody.events)
            assert (len(events) == 32 or not reads_length) and (events >= 0).any()
        return
    # A model that writes text: its tunes come with their text, and a trained one's play.
    assert all(melody.text for melody in result.melodies)
    assert any(melody.problem is None and len(melody.events) > 0 for melody in result.melodies)


def test_sampled_validity_agrees_with_the_card(shipped):
    """Tunes sampled here from the weights are valid about as often as the card says."""
    folder, card = shipped
    if "validity" not in card:
        pytest.skip(f"{folder.name}: its family measures no validity")
    from melodygen.io.abc import check_validity

    generator = load_generator(folder)
    # as users get them (bars checked), and raw; 16 tunes each: the margins are about 3.5
    # standard deviations of a share of 16 at the card's rates
    for key, margin in (("validity", 0.2), ("validity_raw", 0.35)):
        settings = card[key]["settings"]
        result = generator.generate(
            GenerationRequest(
                length_steps=settings["bars"] * 16,
                num_outputs=16,
                seed=0,
                temperature=settings["temperature"],
                check_bars=settings["check_bars"],
            )
        )
        valid = np.mean([check_validity(melody.text).valid for melody in result.melodies])
        assert valid >= card[key]["generated"]["valid"] - margin, (key, valid)


def test_readme_table_is_current():
    text = (CHECKPOINTS / "README.md").read_text()
    assert release.readme_table(release.read_cards(CHECKPOINTS)) in text
