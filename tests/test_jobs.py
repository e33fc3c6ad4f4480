"""Studio training jobs and user models: a real worker process fine-tuning a tiny model for a
few steps, Cancel keeping a model, one training at a time, state read back by a new Job, the
user models folder, and model zips (upload refusals one line each, rename, delete)."""

from __future__ import annotations

import io
import json
import shutil
import time
import zipfile
from pathlib import Path

import pytest
from conftest import PHRASES, write_tune
from studio_fixtures import make_checkpoints

from melodygen import jobs, studio, user_models
from melodygen.core.checkpoint import MODEL_JSON, WEIGHTS_FILE, load_model
from melodygen.jobs import Job, JobError, start_job
from melodygen.user_models import UserModelError

WAIT = 420  # the worker imports TensorFlow and builds, trains and evaluates on 2 busy cores
TUNE_HPARAMS = "batch_size=4"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> Path:
    return make_checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(scope="module")
def tunes(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tunes")
    for index in range(10):
        write_tune(folder / f"tune{index}.mid", PHRASES[index % len(PHRASES)])
    return folder


@pytest.fixture
def places(tmp_path: Path, monkeypatch, shipped: Path) -> dict[str, Path]:
    """Shipped models, the user models folder and the jobs folder, all set by environment."""
    mine, folder = tmp_path / "my models", tmp_path / "jobs"
    monkeypatch.setenv(studio.CHECKPOINTS_ENV, str(shipped))
    monkeypatch.setenv(user_models.USER_MODELS_ENV, str(mine))
    monkeypatch.setenv(jobs.JOBS_ENV, str(folder))
    return {"shipped": shipped, "mine": mine, "jobs": folder}


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text and text, text
    return text


# The user models folder ------------------------------------------------------------------


def test_the_user_models_folder_comes_from_the_environment_or_the_data_directory(
    tmp_path, monkeypatch
):
    monkeypatch.setenv(user_models.USER_MODELS_ENV, str(tmp_path / "mine"))
    assert user_models.user_models_dir() == tmp_path / "mine"
    monkeypatch.delenv(user_models.USER_MODELS_ENV)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert user_models.user_models_dir() == tmp_path / "data" / "melodygen" / "models"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    assert user_models.user_models_dir() == Path.home() / ".local/share/melodygen/models"
    inside = Path(user_models.__file__).resolve().parent / "models"
    monkeypatch.setenv(user_models.USER_MODELS_ENV, str(inside))
    with pytest.raises(UserModelError) as error:
        user_models.user_models_dir()
    assert "inside the installed melodygen package" in one_line(error)


def test_the_catalog_lists_shipped_then_user_models_marked_as_such(places):
    shutil.copytree(places["shipped"] / "pop_basic_rnn", places["mine"] / "my_tune")
    entries = studio.discover_models()
    assert [(e.name, e.user) for e in entries] == [
        ("folk_attention_rnn", False),
        ("pop_basic_rnn", False),
        ("my_tune", True),
    ]
    assert entries[-1].label.startswith("my_tune (yours)")
    # With a folder given, only that folder, as before.
    assert [e.name for e in studio.discover_models(places["shipped"])] == [
        "folk_attention_rnn",
        "pop_basic_rnn",
    ]


# Managing and zips -------------------------------------------------------------------------


def add_model(places, name: str = "mine") -> Path:
    target = places["mine"] / name
    shutil.copytree(places["shipped"] / "pop_basic_rnn", target)
    return target


def test_rename_and_delete_a_user_model(places):
    add_model(places, "first")
    add_model(places, "second")
    moved = user_models.rename_model("first", "renamed")
    assert moved == places["mine"] / "renamed" and not (places["mine"] / "first").exists()
    assert json.loads((moved / "card.json").read_text())["name"] == "renamed"
    assert [e.name for e in studio.discover_models() if e.user] == ["renamed", "second"]
    for bad, words in (
        (("renamed", "second"), "already there"),
        (("renamed", "../escape"), "is not a model name"),
        (("nothing", "x"), "no user model named"),
        (("renamed", "pop_basic_rnn"), "already there"),  # a shipped model's name
    ):
        with pytest.raises(UserModelError) as error:
            user_models.rename_model(*bad)
        assert words in one_line(error)
    user_models.delete_model("second")
    assert not (places["mine"] / "second").exists()
    with pytest.raises(UserModelError) as error:
        user_models.delete_model("../../etc")
    assert "is not a model name" in one_line(error)


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_downloaded_model_zip_uploads_back_and_loads(places):
    folder = add_model(places, "original")
    data = user_models.model_zip("original")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == [
            "original/melodygen.json",
            "original/model.weights.h5",
        ]
    target = user_models.install_model_zip(data, "original.zip")
    assert target == places["mine"] / "original-2"
    load_model(target)
    # Files at the top of the zip, named by the zip.
    flat = {leaf: (folder / leaf).read_bytes() for leaf in (MODEL_JSON, WEIGHTS_FILE)}
    assert user_models.install_model_zip(zip_of(flat), "flat.zip").name == "flat"
    # A shipped model's name is not taken.
    shipped = user_models.install_model_zip(zip_of(flat), "pop_basic_rnn.zip")
    assert shipped.name == "pop_basic_rnn-2"


def test_a_model_zip_with_anything_but_weights_and_json_is_refused_in_one_line(places):
    folder = add_model(places)
    good = {f"m/{leaf}": (folder / leaf).read_bytes() for leaf in (MODEL_JSON, WEIGHTS_FILE)}
    cases = {
        "code": ({**good, "m/loader.py": b"import os"}, "never code or pickles"),
        "pickle": ({**good, "m/weights.pkl": b"\x80\x04."}, "never code or pickles"),
        "escape": ({**good, "../../etc/melodygen.json": b"{}"}, "a path outside"),
        "no weights": ({"m/melodygen.json": good["m/melodygen.json"]}, "no model.weights.h5"),
        "two folders": (
            {**good, f"other/{WEIGHTS_FILE}": good[f"m/{WEIGHTS_FILE}"]},
            "holds model.weights.h5 twice",
        ),
        "bad json": ({**good, "m/melodygen.json": b'{"format": 1}'}, "not a model MelodyGen"),
        "bad weights": ({**good, f"m/{WEIGHTS_FILE}": b"not hdf5"}, "not a model MelodyGen"),
    }
    for label, (files, words) in cases.items():
        with pytest.raises(UserModelError) as error:
            user_models.install_model_zip(zip_of(files), f"{label}.zip")
        assert words in one_line(error), (label, str(error.value))
    with pytest.raises(UserModelError) as error:
        user_models.install_model_zip(b"PK not a zip", "broken.zip")
    assert "not a readable zip" in one_line(error)
    # Nothing of the refused zips stayed.
    assert sorted(p.name for p in places["mine"].iterdir()) == ["mine"]


# Jobs -------------------------------------------------------------------------------------


def test_a_fine_tune_trains_in_a_worker_and_joins_the_catalog_with_its_comparison(places, tunes):
    base = places["shipped"] / "pop_basic_rnn"
    job = start_job(
        files=tunes, base=base, minutes=2, steps=4, eval_every=2, hparams=TUNE_HPARAMS,
        eval_ratio=0.3,
    )  # fmt: skip
    assert job.pid and job.status in jobs.RUNNING
    # One training at a time: a second request is told when the first finishes.
    with pytest.raises(JobError) as error:
        start_job(files=tunes, base=base, minutes=1)
    assert "one runs at a time: it will finish by" in one_line(error)
    # A new "session" reads the same job from the folder.
    again = jobs.latest_job()
    assert again.id == job.id and again.spec["base_name"] == "pop_basic_rnn"
    assert jobs.active_job().id == job.id
    status = again.wait(WAIT)
    assert status == "done", (job.state, job.log_tail())
    progress = Job(job.folder).progress()
    assert progress.step == 4 and progress.fraction == 1.0 and progress.time_left == 0
    curves = studio.metric_curves(progress.records)
    assert curves["nll"]["step"] == [0, 2, 4]
    assert any({"train", "eval"} <= set(columns) for columns in curves.values()), curves
    state = job.state
    card = state["card"]
    assert card["training"]["base"] == "pop_basic_rnn" and card["training"]["steps"] == 4
    assert card["data"]["files"] == 10 and card["data"]["eval_melodies"] >= 1
    comparison = card["comparison"]
    assert comparison["base_bits_per_note"] > 0 and comparison["bits_per_note"] > 0
    entry = next(e for e in studio.discover_models() if e.user)
    assert entry.name == state["model"] == "pop_basic_rnn-tuned" and entry.config == "basic_rnn"
    load_model(entry.path)
    assert studio.read_metrics(entry.metrics_path)
    assert jobs.active_job() is None
    # The files trained on are not kept once the model is saved.
    assert not (job.folder / jobs.FILES_DIR).exists()


def test_cancel_stops_the_worker_and_keeps_the_best_model_so_far(places, tunes):
    job = start_job(
        files=tunes, family="melody_rnn", config="basic_rnn", minutes=10, steps=100_000,
        eval_every=2, hparams="rnn_layer_sizes=[8],batch_size=4", eval_ratio=0.3, name="stopped",
    )  # fmt: skip
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and not job.finished:
        if any(r["step"] >= 2 for r in job.progress().records):
            break
        time.sleep(0.5)
    assert not job.finished, (job.state, job.log_tail())
    job.cancel()
    assert job.wait(WAIT) == "cancelled", (job.state, job.log_tail())
    assert "kept the best model so far" in job.state["message"]
    model = places["mine"] / "stopped"
    load_model(model)
    assert json.loads((model / "card.json").read_text())["training"]["cancelled"] is True
    assert jobs.active_job() is None


def test_bad_requests_are_one_line(places, tunes):
    for kwargs, words in (
        ({"files": tunes, "family": "melody_rnn", "config": "basic_rnn", "minutes": 0.1}, "1 to"),
        ({"files": tunes}, "choose a base model"),
        ({"files": tunes, "family": "melody_rnn", "config": "nope"}, "no configuration"),
        ({"family": "melody_rnn", "config": "basic_rnn"}, "no music files"),
        (
            {"uploads": [("notes.txt", b"hi")], "family": "note_vae", "config": "vae_tiny"},
            "no music",
        ),
    ):
        with pytest.raises(Exception) as error:  # noqa: PT011 - JobError and the model's own
            start_job(**kwargs)
        assert words in one_line(error), (kwargs, str(error.value))
    assert jobs.active_job() is None
