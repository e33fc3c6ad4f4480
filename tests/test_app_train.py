"""The Train page with Streamlit's AppTest: bases and fresh models offered, a real worker
process fine-tuning a tiny model for a few steps with its progress shown, the finished
model's card and its place in the catalog, and the user's models renamed, deleted,
uploaded and refused in one line."""

from __future__ import annotations

import functools
import io
import os
import tempfile
import zipfile
from pathlib import Path

import pytest
from conftest import PHRASES, write_tune
from streamlit.testing.v1 import AppTest
from studio_fixtures import make_checkpoints

from melodygen import jobs, studio, user_models

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "train.py")
TIMEOUT = 120
WAIT = 420  # the worker imports TensorFlow, builds, trains and compares on 2 busy cores


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> Path:
    return make_checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(scope="module")
def tune_files(tmp_path_factory) -> list[tuple[str, bytes, str]]:
    folder = tmp_path_factory.mktemp("tunes")
    return [
        (
            f"tune{i}.mid",
            write_tune(folder / f"t{i}.mid", PHRASES[i % 4]).read_bytes(),
            "audio/midi",
        )
        for i in range(10)
    ]


@pytest.fixture
def places(tmp_path, monkeypatch, shipped) -> dict[str, Path]:
    mine = tmp_path / "mine"
    monkeypatch.setenv(studio.CHECKPOINTS_ENV, str(shipped))
    monkeypatch.setenv(user_models.USER_MODELS_ENV, str(mine))
    monkeypatch.setenv(jobs.JOBS_ENV, str(tmp_path / "jobs"))
    monkeypatch.delenv("MELODYGEN_SOUNDFONT", raising=False)
    # A few steps of a tiny training instead of minutes.
    tiny = functools.partial(
        jobs.start_job, steps=4, eval_every=2, hparams="batch_size=4", eval_ratio=0.3
    )
    monkeypatch.setattr(jobs, "start_job", tiny)
    return {"shipped": shipped, "mine": mine}


def page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["studio_routed"] = True  # as if app.py had sent the visitor here
    return checked(at.run())


def checked(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def press(at: AppTest, label: str) -> AppTest:
    return checked(next(b for b in at.button if b.label == label).click().run())


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def test_the_page_offers_every_model_and_fresh_ones_and_wants_files(places):
    at = page()
    options = at.selectbox(key="train_base").options
    assert "Fine-tune Pop · basic_rnn" in options and "Fine-tune Folk · attention_rnn" in options
    assert "A fresh model: Melody RNN · basic_rnn" in options
    press(at, "Start training")
    assert len(errors(at)) == 1 and errors(at)[0].startswith("no music files")
    assert jobs.latest_job() is None
    assert any("No models of your own yet" in c.value for c in at.caption)


def test_a_fine_tune_shows_progress_then_its_card_and_joins_the_catalog(places, tune_files):
    at = page()
    at.selectbox(key="train_base").set_value("Fine-tune Pop · basic_rnn")
    at.file_uploader(key="train_files").set_value(tune_files)
    at.number_input(key="train_minutes").set_value(2.0)
    press(at, "Start training")
    job = jobs.latest_job()
    assert job is not None and not errors(at)
    if not job.finished:  # running: progress, time left and Cancel, and no second form
        assert at.get("progress") and any(m.label == "Time left" for m in at.metric)
        assert any(b.label == "Cancel" for b in at.button)
        assert not [b for b in at.button if b.label == "Start training"]
        assert "one training runs at a time" in at.info[0].value
    assert job.wait(WAIT) == "done", (job.state, job.log_tail())
    # A reload (a new session) shows the finished job from its folder.
    at = page()
    assert "pop_basic_rnn-tuned" in at.success[0].value
    labels = [m.label for m in at.metric]
    assert labels[:2] == ["Base: bits per note", "Now: bits per note"]
    assert any("held out from training" in c.value for c in at.caption)
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart") or at.get("line_chart")
    assert [e.label for e in at.expander] == ["pop_basic_rnn-tuned (yours) · basic_rnn"]
    # The Generate page's catalog lists it.
    assert any(e.user and e.name == "pop_basic_rnn-tuned" for e in studio.discover_models())


def model_zip(folder: Path, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for leaf in ("melodygen.json", "model.weights.h5"):
            archive.write(folder / leaf, f"m/{leaf}")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_models_are_uploaded_renamed_and_deleted_and_a_bad_zip_is_one_line(places):
    base = places["shipped"] / "pop_basic_rnn"
    at = page()
    at.file_uploader(key="train_model_zip").set_value(
        [("evil.zip", model_zip(base, {"m/run.py": b"import os"}), "application/zip")]
    )
    press(at, "Add model")
    assert len(errors(at)) == 1 and "never code or pickles" in errors(at)[0]
    at.file_uploader(key="train_model_zip").set_value(
        [("folk tune.zip", model_zip(base), "application/zip")]
    )
    press(at, "Add model")
    assert not errors(at) and "Added m" in at.success[0].value
    at = page()
    assert [e.label for e in at.expander] == ["m (yours) · basic_rnn"]
    at.text_input(key="train_rename_m").set_value("../bad")
    press(at, "Rename")
    assert "is not a model name" in errors(at)[0]
    at.text_input(key="train_rename_m").set_value("waltzes")
    press(at, "Rename")
    assert [e.label for e in at.expander] == ["waltzes (yours) · basic_rnn"]
    press(at, "Delete")
    assert not at.expander and not (places["mine"] / "waltzes").exists()


def test_the_collection_explored_on_the_data_page_trains_without_a_second_upload(
    places, tune_files, tmp_path, monkeypatch
):
    """Data page, then Train page, in one session: the explored files are offered and sent
    to the training; Delete (or a new exploration) removes them and the offer."""
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    monkeypatch.setenv(studio.CHECKPOINTS_ENV, str(tmp_path / "no models"))  # a light start
    asked: list[dict] = []

    def record(uploads=(), **kwargs):
        files = kwargs["files"]
        asked.append({"uploads": list(uploads), **kwargs, "seen": files and os.listdir(files)})
        raise jobs.JobError("recorded, not started")

    monkeypatch.setattr(jobs, "start_job", record)
    at = checked(AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run())
    checked(at.switch_page("pages/data.py").run())
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        for name, data, _ in tune_files[:6]:
            archive.writestr(f"mine/{name}", data)
    at.file_uploader(key="data_files").set_value(
        [("collection.zip", zipped.getvalue(), "application/zip"), ("notes.txt", b"hi", "text")]
    )
    press(at, "Explore")
    [kept] = private.iterdir()
    assert sorted(os.listdir(kept)) == [f"tune{i}.mid" for i in range(6)]  # music only
    assert any("wait for the Train page" in c.value for c in at.caption)

    checked(at.switch_page("pages/train.py").run())
    source = at.radio(key="train_source")
    assert source.value == "The files explored on the Data page"
    assert list(source.proto.captions)[0] == "6 music files from collection.zip, notes.txt"
    at.selectbox(key="train_base").set_value("A fresh model: Melody RNN · basic_rnn")
    press(at, "Start training")
    assert errors(at) == ["recorded, not started"]
    [request] = asked
    assert request["uploads"] == [] and Path(request["files"]) == kept
    assert sorted(request["seen"]) == [f"tune{i}.mid" for i in range(6)]
    # Chosen otherwise, the uploads of the Train page go.
    at.radio(key="train_source").set_value("Files uploaded here")
    at.file_uploader(key="train_files").set_value(tune_files[:2])
    press(at, "Start training")
    assert [name for name, _ in asked[-1]["uploads"]] == ["tune0.mid", "tune1.mid"]
    assert asked[-1]["files"] is None

    # Delete on the Data page: the files and the offer are gone.
    checked(at.switch_page("pages/data.py").run())
    press(at, "Delete them now")
    assert list(private.iterdir()) == []
    checked(at.switch_page("pages/train.py").run())
    assert not at.radio
