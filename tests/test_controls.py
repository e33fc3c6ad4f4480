"""melodygen controls: tunes judged on the meter, key and dance type asked (rules tested on
tunes written in code), and the report for a tiny abc_transformer beside an abc_char model
whose tunes are known before it is asked (tests/abc_fixtures.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from melodygen.core.controls import (
    TYPE_RULES,
    Controls,
    controls_report,
    format_controls,
    judge_tune,
    pick_requests,
    rhythm_of,
    tune_controls,
)
from melodygen.theory import Meter

pytestmark = pytest.mark.skipif(shutil.which("abc2midi") is None, reason="needs abc2midi")

G_JIG = Controls("6/8", 7, "major", "jig")
JIG = "X:1\nT:j\nM:6/8\nL:1/8\nR:jig\nK:G\n|:GAB c2d|e2d c2B|ded cBA|B2G A3:|\n"
HORNPIPE = (
    "X:1\nT:h\nM:4/4\nL:1/8\nR:hornpipe\nK:D\n|:A>Bc>d e>dc>B|A>FD>F A2d2|f>ed>c B>AG>F|E2D2 D4:|\n"
)
EVEN = "X:1\nT:e\nM:4/4\nL:1/8\nR:hornpipe\nK:D\n|:ABcd edcB|AFDF A2dc|fedc BAGF|EFGA B4:|\n"
STRATHSPEY = "X:1\nT:s\nM:4/4\nL:1/8\nR:strathspey\nK:D\n|:D<FA>F d<fA>F|E<GB>G e>dB<G:|\n"


def test_a_jig_as_asked_passes_every_figure():
    judged = judge_tune(JIG, G_JIG)
    assert judged.parses and judged.meter and judged.key_line and judged.key and judged.type
    assert judged.scale == 1.0
    assert tune_controls(JIG) == G_JIG


@pytest.mark.parametrize(
    ("text", "failing"),
    [
        (JIG.replace("M:6/8", "M:3/4"), "meter"),  # another meter, its bars full
        (JIG.replace("e2d c2B", "e2d c2B2"), "meter"),  # a bar too long
        (JIG.replace("ded cBA", "[M:3/4]ded cBA"), "meter"),  # the meter changes
        (JIG.replace("K:G", "K:D"), "key_line"),
        (JIG.replace("GAB c2d|e2d c2B|ded", "^G^A^c ^c2^d|^f2^d ^c2^A|^d^f^d"), "key"),
    ],
)
def test_a_tune_not_as_asked_fails_that_figure(text, failing):
    judged = judge_tune(text, G_JIG)
    assert not getattr(judged, failing)
    assert judged.parses


def test_a_tune_abc2midi_cannot_read_is_in_no_meter():
    judged = judge_tune("X:1\nT:x\nM:6/8\nL:1/8\nK:G\n", G_JIG)
    assert not judged.parses and not judged.meter and judged.key_line and not judged.key
    assert judged.scale is None and judged.type is False


def test_type_rules_read_the_written_rhythm_not_abc2midis_swing():
    """abc2midi plays an R:hornpipe tune swung: the rule reads the tune as written."""
    from melodygen.io.abc import parse_tune

    hornpipe = Controls("4/4", 2, "major", "hornpipe")
    assert judge_tune(HORNPIPE, hornpipe).type
    assert not judge_tune(EVEN, hornpipe).type  # even quavers, no cadence: not a hornpipe
    assert judge_tune(EVEN, Controls("4/4", 2, "major", "reel")).type
    swung = rhythm_of(parse_tune(EVEN), Meter(4, 4))  # as abc2midi plays it: 2:1 pairs
    written = rhythm_of(parse_tune(EVEN.replace("R:hornpipe\n", "")), Meter(4, 4))
    assert swung.running == 0 and written.running > 0.9
    assert judge_tune(STRATHSPEY, Controls("4/4", 2, "major", "strathspey")).type
    assert not judge_tune(HORNPIPE, Controls("4/4", 2, "major", "strathspey")).type
    assert not judge_tune(JIG, Controls("6/8", 7, "major", "reel")).type  # a reel is duple
    assert judge_tune(JIG, Controls("6/8", 7, "major", None)).type is None  # none asked
    assert set(TYPE_RULES) >= {"jig", "reel", "hornpipe", "waltz", "slip jig", "strathspey"}


def test_requests_are_held_out_controls_drawn_reproducibly():
    real = [G_JIG] * 6 + [Controls("3/4", 2, "major", "waltz")] * 2
    first = pick_requests(real, 5, seed=1)
    assert first == pick_requests(real, 5, seed=1) and len(first) == 5
    assert sorted(set(pick_requests(real, 8, seed=2)), key=str) == sorted(set(real), key=str)
    assert len(pick_requests(real, 20, seed=3)) == 20  # more than there are: drawn again


# A tiny abc_transformer and an abc_char model that writes only what it is asked ------------

JIG_BARS = ["GAB c2d", "e2d c2B", "d2B G2A", "B2A G3", "ded cBA", "B2G A2F"]
REEL_BARS = ["FAAB d2fd", "ABde fdAF", "GBBA B2AF", "DFAF G2FE", "d2fd cdec"]
WALTZ_BARS = ["G2 B2 d2", "c2 A2 F2", "G4 B2", "A6", "d3 c B2"]
BOOKS = {
    "jig": ("M:6/8\nL:1/8\nR:jig", JIG_BARS, ("G", "D")),
    "reel": ("M:C|\nL:1/8\nR:reel", REEL_BARS, ("D", "G")),
    "waltz": ("M:3/4\nL:1/8\nR:waltz", WALTZ_BARS, ("G", "D")),
}


def _book() -> str:
    tunes, number = [], 0
    for kind, (header, bars, keys) in BOOKS.items():
        for _ in range(10):
            number += 1
            rng = np.random.default_rng(number)
            a = [bars[i] for i in rng.integers(0, len(bars), 4)]
            body = f"|:{a[0]}|{a[1]}|{a[2]}|{a[3]}:|\n"
            key = keys[number % 2]
            tunes.append(f"X:{number}\nT:{kind} {number}\n{header}\nK:{key}\n{body}")
    return "\n".join(tunes)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(an abc_transformer dataset, a tiny model trained on it, an abc_char model)."""
    from abc_fixtures import make_abc_checkpoint

    from melodygen.core.family import get_family
    from melodygen.core.train import train

    root = tmp_path_factory.mktemp("controls")
    (root / "book.abc").write_text(_book())
    data = root / "data"
    get_family("abc_transformer").build_dataset(
        [root / "book.abc"], data, config="transformer_tiny", eval_ratio=0.3, workers=2,
        progress=False,
    )  # fmt: skip
    run = root / "run"
    train(data, run, steps=20, eval_every=10, progress=False)
    return data, run, make_abc_checkpoint(root)


def test_controls_report_for_two_models_beside_the_held_out_tunes(models, tmp_path, capsys):
    from melodygen.cli import main

    data, run, char = models
    report = controls_report(run, data, compare=char, num=8, seed=1, bars=4)
    assert sum(item["tunes"] for item in report["requests"]) == 8
    held = report["held_out"]
    assert held["parses"] == held["key_line"] == 1.0
    # tunes written in code are what their type's rule says
    assert {name: v["share"] for name, v in held["types"].items()} == {
        "jig": 1.0, "reel": 1.0, "waltz": 1.0
    }  # fmt: skip
    transformer, written = report["models"]
    assert (transformer["family"], written["family"]) == ("abc_transformer", "abc_char")
    for model in report["models"]:
        figures = model["figures"]
        assert figures["tunes"] == 8
        assert all(0 <= figures[k] <= 1 for k in ("parses", "meter", "key_line", "key", "type"))
        assert sum(v["tunes"] for v in figures["types"].values()) == 8  # every tune typed
    # the transformer writes the header asked for: K: as asked, unless it refused the key
    assert transformer["figures"]["key_line"] == 1 - transformer["refused"] / 8
    # the abc_char model here writes the asked header and no music: nothing parses
    assert written["figures"]["parses"] == 0 and written["figures"]["key_line"] == 1.0
    assert written["figures"]["meter"] == written["figures"]["key"] == 0
    assert not written["quality_bar"]["meter"]
    text = format_controls(report)
    assert "control accuracy, abc_transformer: meter" in text and "jig (" in text

    capsys.readouterr()
    out_json = tmp_path / "controls.json"
    assert main(["controls", "--checkpoint", str(run), "--data", str(data), "--num", "3",
                 "--bars", "4", "--seed", "2", "--json", str(out_json)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "meter: M: as asked, full bars" in out and "held-out" in out
    saved = json.loads(out_json.read_text())
    assert len(saved["models"]) == 1 and saved["settings"]["num"] == 3


def test_controls_refuses_data_of_a_family_that_writes_no_text(tune_folder, tmp_path, capsys):
    from melodygen.cli import main

    data = tmp_path / "melody"
    assert main(["dataset", "build", "--input", str(tune_folder), "--config", "basic_rnn",
                 "--output", str(data), "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["controls", "--checkpoint", str(tmp_path), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "melodygen controls judges ABC text" in err and len(err.strip().splitlines()) == 1


def test_generate_takes_type_as_another_name_for_rhythm():
    from melodygen.cli import build_parser

    args = build_parser().parse_args(
        ["generate", "--checkpoint", "m", "--out", "o", "--type", "reel"]
    )
    assert args.rhythm == "reel"
