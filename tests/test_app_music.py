"""The Generate page's musical read-outs, with AppTest: meter picker, key, warnings, uploads."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from studio_fixtures import make_checkpoints

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    return make_checkpoints(tmp_path_factory.mktemp("checkpoints"))


def press(at: AppTest, label: str) -> None:
    next(b for b in at.button if b.label == label).click().run()
    assert not at.exception, [e.value for e in at.exception]


def test_meter_key_and_warnings_are_shown(checkpoints, monkeypatch):
    monkeypatch.setenv("MELODYGEN_CHECKPOINTS", str(checkpoints))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert at.selectbox(key="meter").options == ["From primer", "4/4", "3/4", "6/8", "2/4"]
    at.radio(key="primer_source").set_value("Typed notes").run()
    at.text_area(key="primer_text").input("3/4 D4 F4 A4 | D5:12")
    press(at, "Check notes")
    captions = [c.value for c in at.caption]
    assert any("2 bars of 3/4. Key: D minor (estimated)." in c for c in captions), captions
    at.session_state["top_k"] = 1
    at.session_state["seed"] = 4
    at.session_state["bars"] = 4
    press(at, "Generate")
    result = at.session_state["result"]
    assert str(result.melodies[0].meter) == "3/4" and result.melodies[0].steps == 48
    assert any("Key: D minor (estimated from the primer)" in c.value for c in at.caption)
    assert [w.value for w in at.warning if w.value.startswith("Top-k 1 ")]
