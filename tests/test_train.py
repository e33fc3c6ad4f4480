"""Training, saving, resuming and evaluating real (tiny) Keras models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from melodygen.core.batches import BatchShape, evaluation_batches, pad_batch
from melodygen.core.checkpoint import latest_checkpoint, load_model, read_model_info
from melodygen.core.evaluate import evaluate
from melodygen.core.train import train
from melodygen.errors import CheckpointError, ConfigError, DatasetError
from melodygen.families.melody_rnn.configs import CONFIGS, HParams
from melodygen.families.melody_rnn.dataset import MelodyDataset, build_dataset
from melodygen.families.melody_rnn.family import (
    REPORT_KEYS,
    check_backend_computes,
    evaluate_batches,
)

TINY = "rnn_layer_sizes=[24,24],batch_size=4,learning_rate=0.03,dropout_keep_prob=1.0"


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    from conftest import PHRASES, write_tune

    folder = tmp_path_factory.mktemp("tunes")
    for index in range(10):
        write_tune(folder / f"tune{index}.mid", PHRASES[index % len(PHRASES)])
    built = {}
    for config in CONFIGS:
        built[config] = tmp_path_factory.mktemp(config)
        build_dataset([folder], config, built[config], eval_ratio=0.3, progress=False)
    return built


@pytest.mark.parametrize("config", list(CONFIGS))
def test_each_config_overfits_a_tiny_dataset(datasets, tmp_path: Path, config: str):
    hparams = TINY + (",attn_length=8" if config == "attention_rnn" else "")
    run_dir = tmp_path / "run"
    result = train(
        datasets[config], run_dir, steps=150, hparams=hparams, eval_every=50, progress=False
    )
    assert result.steps == 150
    history = read_metrics(run_dir)
    assert [record["step"] for record in history] == [0, 50, 100, 150]
    start, final = history[0]["eval"], history[-1]["eval"]
    chance = math.log(MelodyDataset.open(datasets[config]).num_classes)
    assert start["label_nll"] == pytest.approx(chance, rel=0.1)  # untrained: about uniform
    # The tunes repeat a two-bar phrase: a network that learned them is far below its start
    # in the loss it trains on (phrase_rnn's is the event loss: its label NLL may rise).
    trained_on = "nll" if CONFIGS[config].hparams.loss == "event" else "label_nll"
    assert final[trained_on] < 0.3 * start[trained_on], (config, start, final)
    assert final["nll"] <= final["label_nll"] + 1e-4  # folding repeat labels only adds mass
    assert final["accuracy"] > 0.7
    assert set(REPORT_KEYS) <= set(final)
    assert (run_dir / "logs" / "train").is_dir() and (run_dir / "logs" / "eval").is_dir()


def test_saved_model_reloads_to_identical_logits(datasets, tmp_path: Path):
    run_dir = tmp_path / "run"
    train(
        datasets["attention_rnn"],
        run_dir,
        steps=3,
        hparams=TINY + ",attn_length=4",
        eval_every=3,
        progress=False,
    )
    model, info = load_model(run_dir)
    again, _ = load_model(run_dir / "model")
    split = MelodyDataset.open(datasets["attention_rnn"]).load("eval")
    inputs, _ = evaluation_batches(split, 8)[0]
    np.testing.assert_array_equal(
        np.asarray(model(inputs, training=False)), np.asarray(again(inputs, training=False))
    )
    assert info.spec.config == "attention_rnn"
    assert info.hparams.attn_length == 4 and info.hparams.rnn_layer_sizes == (24, 24)
    saved = json.loads((run_dir / "model" / "melodygen.json").read_text())
    assert saved["config"] == "attention_rnn"
    assert saved["encoding"]["lookback_distances"] == [16, 32]
    assert saved["training"]["step"] == 3


def test_interrupted_run_resumes_from_its_latest_checkpoint(datasets, tmp_path: Path):
    run_dir = tmp_path / "run"
    train(datasets["basic_rnn"], run_dir, steps=4, hparams=TINY, eval_every=2, progress=False)
    checkpoint = latest_checkpoint(run_dir)
    assert checkpoint.name == "step-0000004"
    optimizer_steps = np.load(checkpoint / "optimizer.npz")["arr_0"]
    assert int(optimizer_steps) == 4  # Adam's step count travels with the checkpoint

    result = train(datasets["basic_rnn"], run_dir, steps=8, eval_every=2, progress=False)
    assert result.steps == 8
    assert [r["step"] for r in read_metrics(run_dir)] == [0, 2, 4, 6, 8]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "step-0000004",
        "step-0000006",
        "step-0000008",
    ]
    with pytest.raises(CheckpointError, match="cannot change hyperparameters"):
        train(datasets["basic_rnn"], run_dir, steps=10, hparams="learning_rate=0.5", progress=False)
    with pytest.raises(CheckpointError, match="trained on data encoded otherwise"):
        train(datasets["mono_rnn"], run_dir, steps=10, progress=False)


def test_early_stopping_stops_when_eval_loss_stops_falling(datasets, tmp_path: Path):
    # Evaluated every step on a tiny held-out split, the loss soon stops falling.
    result = train(
        datasets["basic_rnn"],
        tmp_path / "run",
        steps=200,
        eval_every=1,
        early_stopping=2,
        hparams=TINY,
        progress=False,
    )
    assert result.stopped_early and result.steps < 200
    _, info = read_model_info(tmp_path / "run")
    assert info.training["eval"]["label_nll"] == pytest.approx(result.best_eval_loss)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_event_loss_trains_and_keeps_the_lowest_held_out_nll(datasets, tmp_path: Path, precision):
    run_dir = tmp_path / "run"
    result = train(
        datasets["lookback_rnn"],
        run_dir,
        steps=90,
        hparams=f"{TINY},loss=event,gradient_precision={precision}",
        eval_every=30,
        progress=False,
    )
    history = read_metrics(run_dir)
    assert history[-1]["eval"]["nll"] < 0.3 * history[0]["eval"]["nll"]
    best = min(record["eval"]["nll"] for record in history[1:])
    assert result.best_eval_loss == pytest.approx(best)
    _, info = read_model_info(run_dir)
    assert info.hparams.loss == "event"
    assert info.hparams.gradient_precision == precision
    assert info.training["eval"]["nll"] == pytest.approx(best)


def test_evaluate_reports_every_figure(datasets, tmp_path: Path):
    run_dir = tmp_path / "run"
    train(datasets["lookback_rnn"], run_dir, steps=2, hparams=TINY, eval_every=2, progress=False)
    figures = evaluate(run_dir, datasets["lookback_rnn"])
    # Figures add up over every batch: the batch size must not change them.
    one_by_one = evaluate(run_dir, datasets["lookback_rnn"], batch_size=1)
    for key in REPORT_KEYS:
        assert one_by_one[key] == pytest.approx(figures[key], rel=1e-5), key
    dataset = MelodyDataset.open(datasets["lookback_rnn"])
    assert figures["steps"] == int(dataset.load("eval").lengths.sum())
    assert figures["perplexity"] == pytest.approx(math.exp(figures["nll"]), rel=1e-5)
    for key in ("accuracy", "event_accuracy", "no_event_accuracy"):
        assert 0.0 <= figures[key] <= 1.0
    with pytest.raises(DatasetError, match="encoded for basic_rnn"):
        evaluate(run_dir, datasets["basic_rnn"])
    with pytest.raises(CheckpointError, match="not a MelodyGen checkpoint"):
        evaluate(tmp_path, datasets["basic_rnn"])


def test_bad_hyperparameters_are_clear_errors(datasets, tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown hyperparameter 'layers'"):
        train(datasets["basic_rnn"], tmp_path / "r", steps=1, hparams="layers=3")
    with pytest.raises(ConfigError, match="not a list of integers"):
        HParams().override("rnn_layer_sizes=[a,b]")
    with pytest.raises(ConfigError, match="dropout_keep_prob"):
        HParams().override("dropout_keep_prob=0")
    assert HParams().override("rnn_layer_sizes=[64,64,64],clip_norm=3").rnn_layer_sizes == (
        64,
        64,
        64,
    )
    with pytest.raises(ConfigError, match="loss must be one of label, event, not 'events'"):
        HParams().override("loss=events")
    with pytest.raises(ConfigError, match="gradient_precision must be one of float32, bfloat16"):
        HParams().override("gradient_precision=float16")
    with pytest.raises(DatasetError, match="built for basic_rnn, not mono_rnn"):
        train(datasets["basic_rnn"], tmp_path / "r", config="mono_rnn", steps=1)


def test_training_uses_one_thread_per_op_on_cpu():
    """A fresh process (TensorFlow's runtime not yet started) gets the training threads."""
    import subprocess
    import sys

    code = (
        "from melodygen.core.train import use_training_threads\n"
        "use_training_threads()\n"
        "import tensorflow as tf\n"
        "print(tf.config.threading.get_inter_op_parallelism_threads(),"
        " tf.config.threading.get_intra_op_parallelism_threads())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.split() == ["2", "1"]


def test_fixed_batch_shapes_pad_without_changing_figures(datasets, tmp_path: Path):
    """JAX compiles one program per shape: padded lengths and rows must be invisible."""
    run_dir = tmp_path / "run"
    hparams = TINY + ",attn_length=4"
    train(
        datasets["attention_rnn"], run_dir, steps=2, hparams=hparams, eval_every=2, progress=False
    )
    model, info = load_model(run_dir)
    split = MelodyDataset.open(datasets["attention_rnn"]).load("eval")
    shape = BatchShape(step_multiple=48, rows=5)
    inputs, targets = pad_batch(split, np.arange(2), shape)
    assert inputs.shape[:2] == targets.shape[:2] == (5, 144)  # 128-step tunes, 2 padded rows
    assert (targets[2:, :, 0] == -1).all() and (targets[:, 128:, 0] == -1).all()
    exact = evaluate_batches(model, evaluation_batches(split, 2), info)
    padded = evaluate_batches(model, evaluation_batches(split, 2, shape), info)
    assert padded["steps"] == exact["steps"] == int(split.lengths.sum())
    for key, value in exact.items():
        assert padded[key] == pytest.approx(value, rel=1e-5), key
    assert BatchShape.for_backend(64) == BatchShape()  # TensorFlow: exact shapes


def test_time_limit_ends_a_run_that_resumes_and_records_its_history(datasets, tmp_path: Path):
    run_dir = tmp_path / "run"
    first = train(
        datasets["basic_rnn"], run_dir, steps=50, hparams=TINY, eval_every=10,
        time_limit=1e-6, progress=False,
    )  # fmt: skip
    assert first.steps == 1 and not first.stopped_early
    assert latest_checkpoint(run_dir).name == "step-0000001"
    assert [r["step"] for r in read_metrics(run_dir)] == [0, 1]
    assert (run_dir / "model" / "melodygen.json").is_file()  # a usable model at once

    second = train(datasets["basic_rnn"], run_dir, steps=3, eval_every=10, progress=False)
    assert second.steps == 3
    _, info = read_model_info(run_dir / "checkpoints" / "step-0000003")
    history = info.training["history"]
    assert [(h["from_step"], h["to_step"]) for h in history] == [(0, 1), (1, 3)]
    assert {h["backend"] for h in history} == {"tensorflow"} and history[0]["device"] == "CPU"
    assert all(h["seconds"] >= 0 for h in history)
    assert len({h["started"] for h in history}) == 2
    with pytest.raises(DatasetError, match="--time-limit must be positive"):
        train(datasets["basic_rnn"], run_dir, steps=4, time_limit=0, progress=False)


def test_training_and_evaluation_import_no_midi_stack():
    """A training machine needs Keras and NumPy, not note_seq or pretty_midi."""
    import subprocess
    import sys

    code = (
        "import sys, melodygen.core.train, melodygen.core.evaluate, melodygen.cli\n"
        "print(sorted(m for m in ('note_seq', 'pretty_midi') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


def test_attention_is_refused_under_jax_on_a_gpu(monkeypatch):
    """Measured on an H200: the compiled attention layer computes wrong outputs there."""
    import sys
    import types

    import keras

    check_backend_computes("attention_rnn")  # TensorFlow here: fine
    fake_jax = types.SimpleNamespace(devices=lambda: [types.SimpleNamespace(platform="gpu")])
    monkeypatch.setitem(sys.modules, "jax", fake_jax)
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ConfigError, match="KERAS_BACKEND=tensorflow"):
        check_backend_computes("attention_rnn")
    check_backend_computes("lookback_rnn")  # LSTM-only networks matched exactly
    fake_jax.devices = lambda: [types.SimpleNamespace(platform="cpu")]
    check_backend_computes("attention_rnn")


def test_bfloat16_gradients_without_the_kernels_are_said_to_be_float32(capsys, monkeypatch):
    from melodygen.families.melody_rnn.family import warn_unused_precision
    from melodygen.nn import kernels

    warn_unused_precision(HParams())
    warn_unused_precision(HParams(gradient_precision="bfloat16"))
    assert capsys.readouterr().out == ""  # the kernels are there: nothing to say
    monkeypatch.setattr(kernels, "load", lambda: None)
    warn_unused_precision(HParams(gradient_precision="bfloat16"))
    assert "computes its gradients in float32" in capsys.readouterr().out
