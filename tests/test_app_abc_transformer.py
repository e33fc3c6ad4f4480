"""The studio with an ABC Transformer (abc_transformer), with Streamlit's AppTest: the
controls its family reads (meter, key, mode, dance type, title, beam search) and not the
Melody RNN's, tunes written to order with their text, scores and files, and a dance type
the model never saw as one line, never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")
TIMEOUT = 180
BARS = ("GAB c2d|", "e2d c2B|", "ded cBA|", "B2G A2F|", "d2B G2A|", "B2A G3|")

pytestmark = pytest.mark.skipif(shutil.which("abc2midi") is None, reason="needs abc2midi")


def _book(count: int) -> str:
    tunes = []
    for n in range(1, count + 1):
        body = " ".join(BARS[(n + i) % len(BARS)] for i in range(8))
        tunes.append(f"X:{n}\nT:Jig number {n}\nM:6/8\nL:1/8\nR:jig\nK:G\n|:{body[:-1]}:|\n")
    return "\n".join(tunes)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    """A tiny abc_transformer trained 60 steps on 30 jigs, saved as a catalog model."""
    from melodygen.core.family import get_family
    from melodygen.core.train import train

    work = tmp_path_factory.mktemp("transformer")
    (work / "jigs.abc").write_text(_book(30))
    get_family("abc_transformer").build_dataset(
        [work / "jigs.abc"], work / "data", config="transformer_tiny", workers=1, progress=False
    )
    train(work / "data", work / "run", steps=60, eval_every=30, progress=False)
    root = tmp_path_factory.mktemp("checkpoints")
    shutil.copytree(work / "run" / "model", root / "folk_abc_transformer")
    card = {"name": "folk_abc_transformer", "style": "folk", "description": "Jigs to order"}
    (root / "folk_abc_transformer" / "card.json").write_text(json.dumps(card))
    return root


@pytest.fixture
def app(checkpoints, monkeypatch) -> AppTest:
    monkeypatch.setenv("MELODYGEN_CHECKPOINTS", str(checkpoints))
    monkeypatch.delenv("MELODYGEN_SOUNDFONT", raising=False)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    return at


def press(at: AppTest, **settings) -> AppTest:
    for key, value in settings.items():
        at.session_state[key] = value
    next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_transformer_offers_its_own_controls(app):
    keys = {w.key for w in [*app.text_input, *app.text_area, *app.selectbox, *app.toggle]}
    keys |= {w.key for w in [*app.number_input, *app.slider, *app.radio]}
    assert {"title", "rhythm", "key", "mode", "meter", "seed", "beam_size"} <= keys
    assert not {"primer_source", "in_scale", "min_pitch", "primer_text"} & keys


def test_tunes_to_order_come_with_text_and_files(app):
    press(app, title="New jig", rhythm="jig", meter="6/8", key="G", variations=2, seed=3)
    assert not app.error or all("Traceback" not in e.value for e in app.error)
    result = app.session_state["result"]
    assert len(result.melodies) == 2
    for melody, code in zip(result.melodies, [c.value for c in app.code], strict=True):
        assert "T:New jig\nM:6/8\n" in code
        assert "\nR:jig\n" in code and "\nK:G\n" in code
        assert melody.text and melody.text.strip() in code
    labels = [d.label for d in app.download_button]
    assert labels[0] == "Download all (zip)" and labels.count("ABC") == 2


@pytest.mark.parametrize(
    ("settings", "words"),
    [({"rhythm": "polka dot"}, "polka dot"), ({"key": "D"}, "D major")],
)
def test_a_control_the_model_never_saw_is_one_line(app, settings, words):
    """The model knows jigs in G only: it says so, and what it knows, in one line."""
    press(app, variations=1, seed=1, **settings)
    errors = [e.value for e in app.error]
    assert len(errors) == 1 and words in errors[0] and "\n" not in errors[0]
    assert "jig" in errors[0] or "G" in errors[0]
    assert "result" not in app.session_state
