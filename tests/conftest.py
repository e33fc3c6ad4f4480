"""Shared fixtures: small MIDI folders written in code, and quiet TensorFlow."""

from __future__ import annotations

import os
from pathlib import Path

import pretty_midi
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session", autouse=True)
def _private_user_folders(tmp_path_factory):
    """User models and training jobs in a folder of the test session's own, never in the
    developer's data directory (tests that need others set their own)."""
    root = tmp_path_factory.mktemp("user_data")
    saved = {name: os.environ.get(name) for name in ("MELODYGEN_USER_MODELS", "MELODYGEN_JOBS")}
    os.environ["MELODYGEN_USER_MODELS"] = str(root / "models")
    os.environ["MELODYGEN_JOBS"] = str(root / "jobs")
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


STEP_SECONDS = 0.125  # one sixteenth at 120 qpm

# Eight-bar tunes in 4/4 made of repeated two-bar phrases, so a small network can
# learn them quickly and the lookback encodings see real repeats.
PHRASES = [
    [60, 62, 64, 65, 67, 65, 64, 62],
    [67, 69, 71, 72, 71, 69, 67, 64],
    [64, 65, 67, 69, 67, 65, 64, 60],
    [72, 71, 69, 67, 65, 64, 62, 60],
]


def write_tune(path: Path, phrase: list[int], bars: int = 8, transpose: int = 0) -> Path:
    """A melody of quarter notes (each held 3 steps, then a one-step rest) repeating ``phrase``."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    piano = pretty_midi.Instrument(program=0, name="Lead")
    for index in range(bars * 4):
        pitch = phrase[index % len(phrase)] + transpose
        start = index * 4 * STEP_SECONDS
        piano.notes.append(pretty_midi.Note(90, pitch, start, start + 3 * STEP_SECONDS))
    midi.instruments.append(piano)
    midi.write(str(path))
    return path


@pytest.fixture
def tune_folder(tmp_path: Path) -> Path:
    """Twelve small tunes in a nested folder, plus one file that is not MIDI."""
    folder = tmp_path / "tunes"
    (folder / "more").mkdir(parents=True)
    for index in range(12):
        target = folder if index % 2 else folder / "more"
        write_tune(target / f"tune{index:02d}.mid", PHRASES[index % len(PHRASES)])
    (folder / "broken.mid").write_text("this is not a MIDI file")
    return folder


SLOWEST_FIRST = ("test_browser.py", "test_abc_transformer.py", "test_abc_char.py")
"""Files that take longest, run first: ``make test`` runs the suite in two processes, one
file at a time each, in this order (``-n 2 --dist loadfile --no-loadscope-reorder``); a
long file started last would run alone at the end."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)  # stable: the order within each file is kept
