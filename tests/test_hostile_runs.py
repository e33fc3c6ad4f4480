"""Hostile and faulty training runs and model folders (issue 13, items 2, 3, 4 and 7).

Damaged checkpoints, a kill mid-write, a loss that turns NaN, absurd hyperparameters
and hostile ``melodygen.json`` files are all built here in code on tiny models. Cases
whose regression would allocate gigabytes run in a subprocess under a memory limit,
so a regression fails the test instead of taking the machine down.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from melodygen.core.checkpoint import (
    MODEL_JSON,
    WEIGHTS_FILE,
    latest_checkpoint,
    load_model,
    read_model_info,
)
from melodygen.core.train import check_checkpoint, train
from melodygen.errors import CheckpointError, ConfigError, ModelFileError, TrainingDivergedError
from melodygen.families.melody_rnn.configs import HParams
from melodygen.families.melody_rnn.dataset import build_dataset

ROOT = Path(__file__).resolve().parent.parent
TINY = "rnn_layer_sizes=[16,16],batch_size=4,learning_rate=0.03,dropout_keep_prob=1.0"
MEMORY_LIMIT = 4 * 2**30  # bytes of address space a subprocess case may map


class Killed(BaseException):
    """Stands for SIGKILL: nothing in the library catches it."""


def steps_in_metrics(run_dir: Path) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines]


def run_limited(code: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python under an address-space limit of MEMORY_LIMIT."""
    prelude = (
        "import resource\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from conftest import PHRASES, write_tune

    folder = tmp_path_factory.mktemp("tunes")
    for index in range(8):
        write_tune(folder / f"tune{index}.mid", PHRASES[index % len(PHRASES)])
    built = tmp_path_factory.mktemp("basic_rnn")
    build_dataset([folder], "basic_rnn", built, eval_ratio=0.3, progress=False)
    return built


@pytest.fixture(scope="module")
def base_run(dataset, tmp_path_factory) -> Path:
    """A run trained to step 4: checkpoints at steps 2 and 4, curves, best and final model."""
    run_dir = tmp_path_factory.mktemp("base") / "run"
    train(dataset, run_dir, steps=4, hparams=TINY, eval_every=2, progress=False)
    return run_dir


@pytest.fixture
def run_dir(base_run, tmp_path) -> Path:
    """A fresh copy of the base run for one test to damage."""
    return Path(shutil.copytree(base_run, tmp_path / "run"))


def dataset_names(handle) -> list[str]:
    """Every dataset in an open HDF5 file (visititems stops at a callback's first non-None)."""
    import h5py

    names = []

    def visit(name, item) -> None:
        if isinstance(item, h5py.Dataset):
            names.append(name)

    handle.visititems(visit)
    return names


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# Item 2: damaged checkpoints, kills mid-write ---------------------------------------------

DAMAGES = {
    "truncated weights": lambda c: truncate(c / WEIGHTS_FILE),
    "truncated optimizer": lambda c: truncate(c / "optimizer.npz"),
    "missing optimizer": lambda c: (c / "optimizer.npz").unlink(),
    "truncated state": lambda c: truncate(c / "state.json"),
    "truncated model file": lambda c: truncate(c / MODEL_JSON),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_resume_falls_back_past_a_damaged_newest_checkpoint(
    dataset, run_dir: Path, damage: str, capsys
):
    newest = run_dir / "checkpoints" / "step-0000004"
    DAMAGES[damage](newest)
    capsys.readouterr()
    result = train(dataset, run_dir, steps=6, eval_every=2, progress=False)
    captured = capsys.readouterr()
    assert result.steps == 6
    assert "skipped damaged checkpoint step-0000004" in captured.err
    assert "resuming from" in captured.out and "step-0000002 (step 2)" in captured.out
    # Kept aside, not deleted; step 4 trained again from step 2.
    assert (run_dir / "checkpoints" / "damaged-step-0000004").is_dir()
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("step-*")) == [
        "step-0000002",
        "step-0000004",
        "step-0000006",
    ]
    _, info = read_model_info(run_dir / "checkpoints" / "step-0000006")
    assert [(h["from_step"], h["to_step"]) for h in info.training["history"]][-1] == (2, 6)
    assert steps_in_metrics(run_dir) == [0, 2, 4, 6]
    check_checkpoint(run_dir / "checkpoints" / "step-0000006")


def test_a_run_with_no_whole_checkpoint_is_refused_and_kept(dataset, run_dir: Path):
    for step in ("step-0000002", "step-0000004"):
        truncate(run_dir / "checkpoints" / step / WEIGHTS_FILE)
    with pytest.raises(CheckpointError, match="no checkpoint in .* is whole") as raised:
        train(dataset, run_dir, steps=6, eval_every=2, progress=False)
    assert "\n" not in str(raised.value)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "step-0000002",
        "step-0000004",
    ]


def test_non_finite_checkpoint_weights_count_as_damage(dataset, run_dir: Path, capsys):
    import h5py

    with h5py.File(run_dir / "checkpoints" / "step-0000004" / WEIGHTS_FILE, "r+") as handle:
        first = next(name for name in dataset_names(handle) if name.startswith("layers/"))
        handle[first][...] = np.nan
    with pytest.raises(CheckpointError, match="not finite"):
        check_checkpoint(run_dir / "checkpoints" / "step-0000004")
    assert train(dataset, run_dir, steps=4, eval_every=2, progress=False).steps == 4
    assert "skipped damaged checkpoint step-0000004" in capsys.readouterr().err


def test_a_kill_mid_write_leaves_the_newest_whole_checkpoint_and_model(
    dataset, run_dir: Path, monkeypatch
):
    import melodygen.core.train as training

    real_save_optimizer = training._save_optimizer

    def killed_while_writing(model, path):
        real_save_optimizer(model, path)
        truncate(path)
        raise Killed

    monkeypatch.setattr(training, "_save_optimizer", killed_while_writing)
    with pytest.raises(Killed):
        train(dataset, run_dir, steps=6, eval_every=2, progress=False)
    assert latest_checkpoint(run_dir).name == "step-0000004"
    assert not (run_dir / "checkpoints" / "step-0000006").exists()
    monkeypatch.undo()

    # Killed again while the final model is copied: the previous model/ must stay whole.
    real_copytree = shutil.copytree

    def killed_while_copying(source, target, **kwargs):
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(source) / WEIGHTS_FILE, Path(target) / WEIGHTS_FILE)
        raise Killed

    monkeypatch.setattr(shutil, "copytree", killed_while_copying)
    with pytest.raises(Killed):
        train(dataset, run_dir, steps=6, eval_every=2, progress=False)
    monkeypatch.setattr(shutil, "copytree", real_copytree)
    model, info = load_model(run_dir / "model")
    assert info.training["step"] in (2, 4)  # the model of the run that finished at step 4
    assert latest_checkpoint(run_dir).name == "step-0000006"
    check_checkpoint(latest_checkpoint(run_dir))

    # Run again: nothing half-written is left, and the final model is the new one.
    assert train(dataset, run_dir, steps=6, eval_every=2, progress=False).steps == 6
    assert not list(run_dir.glob(".partial-*")) and not list(run_dir.glob(".old-*"))
    assert not list((run_dir / "checkpoints").glob(".partial-*"))
    load_model(run_dir / "model")
    assert steps_in_metrics(run_dir) == [0, 2, 4, 6]


# Item 3: non-finite losses and hyperparameters ---------------------------------------------


def test_a_loss_that_turns_nan_stops_at_the_last_good_checkpoint(
    dataset, run_dir: Path, monkeypatch
):
    import keras

    real_train_on_batch = keras.Model.train_on_batch
    calls = []

    def poisoned(model, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # step 7: one weight goes NaN, as a too-large update would make it
            model.trainable_weights[0].assign(np.full(model.trainable_weights[0].shape, np.nan))
        return real_train_on_batch(model, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "train_on_batch", poisoned)
    with pytest.raises(TrainingDivergedError, match="stopped at step 7") as raised:
        train(dataset, run_dir, steps=10, eval_every=2, progress=False)
    message = str(raised.value)
    assert "\n" not in message and "step-0000006" in message and "learning_rate" in message
    assert latest_checkpoint(run_dir).name == "step-0000006"
    check_checkpoint(latest_checkpoint(run_dir))  # every weight finite
    assert steps_in_metrics(run_dir) == [0, 2, 4, 6]
    model, _ = load_model(run_dir / "model")
    assert all(np.isfinite(np.asarray(w)).all() for w in model.weights)


def test_cli_refuses_a_nan_learning_rate(dataset, tmp_path: Path, capsys):
    from melodygen.cli import main

    code = main(
        [
            "train", "--data", str(dataset), "--run-dir", str(tmp_path / "run"),
            "--steps", "2", "--hparams", "learning_rate=nan",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: learning_rate must be") and "\n" not in err
    assert not (tmp_path / "run" / "model").exists()


@pytest.mark.parametrize(
    "override",
    [
        "learning_rate=nan",
        "learning_rate=inf",
        "learning_rate=1e6",
        "clip_norm=nan",
        "clip_norm=inf",
        "batch_size=1000000000",
        "rnn_layer_sizes=[1000000000]",
        "rnn_layer_sizes=[4096,4096,4096,4096]",
        "rnn_layer_sizes=[8,8,8,8,8,8,8,8,8]",
        "attn_length=1000000000",
    ],
)
def test_absurd_hyperparameters_are_refused_before_building(override: str):
    field = override.split("=")[0]
    with pytest.raises(ConfigError, match=field) as raised:
        HParams().override(override)
    assert "\n" not in str(raised.value)


def test_hyperparameters_of_the_wrong_type_are_refused():
    for values in ({"batch_size": True}, {"rnn_layer_sizes": [float("inf")]}, {"loss": 3}):
        with pytest.raises(ConfigError, match=next(iter(values))):
            HParams().override(values)


# Item 4: hostile melodygen.json ---------------------------------------------------------------

DELETE = object()


def mutated(values: dict, field: str, value) -> dict:
    """A copy of ``values`` with the dotted ``field`` set to ``value`` (or deleted)."""
    values = copy.deepcopy(values)
    *parents, last = field.split(".")
    target = values
    for parent in parents:
        target = target[parent]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return values


# (name, the file's text from the valid dict, what the message must name)
HOSTILE_FILES = [
    ("a list", lambda v: "[]", "top level"),
    ("null", lambda v: "null", "top level"),
    ("a string", lambda v: '"melodygen"', "top level"),
    ("a number", lambda v: "1e999", "top level"),
    ("deep lists", lambda v: "[" * 200_000 + "]" * 200_000, "nested too deeply"),
    ("deep training", lambda v: json.dumps(v)[:-1] + ', "x": ' + "[" * 100_000, "nested"),
    ("over 1 MB", lambda v: json.dumps(v | {"training": {"x": "a" * 2_000_000}}), "bytes"),
    ("not JSON", lambda v: "{melodygen", "not valid JSON"),
    ("not UTF-8", lambda v: "\udcff", "UTF-8"),
]
HOSTILE_FIELDS = [
    ("format", "keras"),
    ("format_version", 2),
    ("format_version", True),
    ("config", "evil_rnn"),
    ("config", DELETE),
    ("encoding", None),
    ("encoding.encoding", "onehot2"),
    ("encoding.extra", 1),
    ("encoding.min_note", DELETE),
    ("encoding.min_note", 90),
    ("encoding.min_note", "48"),
    ("encoding.min_note", -5),
    ("encoding.max_note", 1000),
    ("encoding.transpose_to_key", 99),
    ("encoding.lookback_distances", [-16]),
    ("encoding.lookback_distances", "16"),
    ("encoding.steps_per_quarter", 0),
    ("hparams", "big"),
    ("hparams.batch_size", "128"),
    ("hparams.dropout_keep_prob", 2),
    ("hparams.learning_rate", float("nan")),
    ("hparams.clip_norm", float("inf")),
    ("hparams.loss", "mse"),
    ("input_size", 39),
    ("input_size", "38"),
    ("num_classes", 0),
    ("label_event_classes", [0]),
    ("label_event_classes", {"0": 0}),
    ("training", []),
]
# Before validation these made Keras allocate (or overflow): only under a memory limit.
ALLOCATING_FIELDS = [
    ("hparams.rnn_layer_sizes", [0]),
    ("hparams.rnn_layer_sizes", [-128]),
    ("hparams.rnn_layer_sizes", [float("inf")]),
    ("hparams.rnn_layer_sizes", [10**9]),
    ("hparams.rnn_layer_sizes", [4096] * 8),
    ("hparams.attn_length", 10**9),
    ("hparams.batch_size", 10**30),
    ("input_size", 10**9),
]


@pytest.fixture
def model_dir(base_run, tmp_path) -> Path:
    return Path(shutil.copytree(base_run / "model", tmp_path / "model"))


def valid_values(model_dir: Path) -> dict:
    return json.loads((model_dir / MODEL_JSON).read_text())


def assert_one_clear_line(error: BaseException, model_dir: Path, field: str) -> None:
    message = str(error)
    assert str(model_dir / MODEL_JSON) in message, message
    assert field in message, message
    assert "\n" not in message and len(message) < 400, message


@pytest.mark.parametrize("name,text,field", HOSTILE_FILES, ids=[c[0] for c in HOSTILE_FILES])
def test_a_hostile_model_file_is_one_clear_line(model_dir: Path, name, text, field):
    content = text(valid_values(model_dir))
    (model_dir / MODEL_JSON).write_bytes(content.encode("utf-8", "surrogateescape"))
    with pytest.raises(ModelFileError) as raised:
        read_model_info(model_dir)
    assert_one_clear_line(raised.value, model_dir, field)


@pytest.mark.parametrize(
    "field,value", HOSTILE_FIELDS, ids=[f"{f}={v!r:.20}" for f, v in HOSTILE_FIELDS]
)
def test_each_field_of_the_model_file_is_checked(model_dir: Path, field: str, value):
    values = mutated(valid_values(model_dir), field, value)
    (model_dir / MODEL_JSON).write_text(json.dumps(values))
    with pytest.raises(ModelFileError) as raised:
        load_model(model_dir)
    assert_one_clear_line(raised.value, model_dir, field)


def test_absurd_sizes_and_weights_are_refused_without_allocating(model_dir: Path, tmp_path):
    """Every case in one subprocess under a 4 GB address-space limit."""
    import h5py

    cases = []
    for index, (field, value) in enumerate(ALLOCATING_FIELDS):
        folder = Path(shutil.copytree(model_dir, tmp_path / f"case{index}"))
        values = mutated(valid_values(model_dir), field, value)
        (folder / MODEL_JSON).write_text(json.dumps(values))
        cases.append((str(folder), field))
    # A weights file whose first variable is a compressed 10^10-value dataset (a few KB).
    folder = Path(shutil.copytree(model_dir, tmp_path / "huge_weights"))
    with h5py.File(folder / WEIGHTS_FILE, "r+") as handle:
        first = next(name for name in dataset_names(handle) if name.startswith("layers/"))
        del handle[first]
        handle.create_dataset(
            first, shape=(100_000, 100_000), dtype="f4", chunks=(1000, 1000),
            compression="gzip",
        )  # fmt: skip
    assert (folder / WEIGHTS_FILE).stat().st_size < 1_000_000
    cases.append((str(folder), "holds 10,000,"))

    result = run_limited(
        f"""
        import json
        from melodygen.core.checkpoint import load_model
        outcomes = []
        for folder, field in {cases!r}:
            try:
                load_model(folder)
                outcomes.append(["loaded", ""])
            except BaseException as error:
                outcomes.append([type(error).__name__, str(error)])
        print(json.dumps(outcomes))
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    outcomes = json.loads(result.stdout.strip().splitlines()[-1])
    for (_, field), (kind, message) in zip(cases, outcomes, strict=True):
        assert kind in ("ModelFileError", "CheckpointError"), (field, kind, message)
        assert field in message and "\n" not in message, (field, message)


def test_shipped_checkpoints_pass_the_schema():
    """Every shipped model of every family passes its family's schema and weights check."""
    from melodygen.core.checkpoint import WEIGHTS_FILE, check_weights_file, max_weight_values

    folders = [f for f in sorted((ROOT / "checkpoints").iterdir()) if (f / MODEL_JSON).is_file()]
    assert len(folders) >= 7
    for folder in folders:
        model_dir, info = read_model_info(folder)
        check_weights_file(model_dir / WEIGHTS_FILE, max_values=max_weight_values(info))


# Item 7: honest curves ---------------------------------------------------------------------------


def test_restarts_before_the_first_checkpoint_write_step_0_once(
    dataset, tmp_path: Path, monkeypatch
):
    import keras

    run_dir = tmp_path / "run"

    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(keras.Model, "train_on_batch", killed)
    for _ in range(2):
        with pytest.raises(Killed):
            train(dataset, run_dir, steps=2, hparams=TINY, eval_every=2, progress=False)
    assert steps_in_metrics(run_dir) == [0]
    monkeypatch.undo()
    train(dataset, run_dir, steps=2, hparams=TINY, eval_every=2, progress=False)
    assert steps_in_metrics(run_dir) == [0, 2]


def test_resume_drops_curve_lines_past_its_checkpoint(dataset, run_dir: Path):
    with (run_dir / "metrics.jsonl").open("a") as curves:
        curves.write(json.dumps({"step": 6, "seconds": 1.0}) + "\n")  # no checkpoint for it
        curves.write('{"step": 8, "sec')  # the line a kill cut short
    train(dataset, run_dir, steps=6, eval_every=2, progress=False)
    assert steps_in_metrics(run_dir) == [0, 2, 4, 6]
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert "eval" in last  # the line this run wrote, not the orphan
