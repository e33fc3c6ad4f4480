"""Training: length-bucketed batches, Keras fit, held-out evaluation, resumable checkpoints.

A run folder holds everything a run writes:

- ``checkpoints/step-NNNNNNN/``: model, optimizer state and run state, every
  ``eval_every`` steps (the last ``KEEP_CHECKPOINTS`` are kept); a run started
  again with the same folder resumes from the newest;
- ``logs/train`` and ``logs/eval``: TensorBoard scalars (label NLL, event NLL,
  perplexity, accuracy, event and no-event accuracy) against the global step;
- ``metrics.jsonl``: the same figures, one JSON line per evaluation;
- ``model/``: the final model, the weights with the lowest held-out loss.

Every folder is written whole beside its place and renamed into it, so a kill
at any moment leaves the previous checkpoint or model, never half of one. A
run resumes from its newest checkpoint that reads back whole (a damaged newer
one is set aside as ``checkpoints/damaged-step-NNNNNNN``), and stops at the
first non-finite loss without saving anything past its last good checkpoint.

Batches group melodies of similar length (as Magenta pads each batch to its
longest melody, sorting first wastes far fewer padded steps) and are built
with NumPy, so the loop runs on any Keras backend.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from melodygen.core.checkpoint import (
    CHECKPOINT_PREFIX,
    CHECKPOINTS_DIR,
    FINAL_MODEL_DIR,
    MODEL_JSON,
    WEIGHTS_FILE,
    ModelInfo,
    build_network,
    check_weights_file,
    checkpoint_folders,
    latest_checkpoint,
    max_weight_values,
    read_model_info,
    replace_folder,
    save_model,
    staging_folder,
    write_synced,
)
from melodygen.errors import (
    CheckpointError,
    ConfigError,
    DatasetError,
    TrainingDivergedError,
    one_line,
)
from melodygen.families.melody_rnn.configs import get_config
from melodygen.families.melody_rnn.dataset import MelodyDataset, MelodySplit

KEEP_CHECKPOINTS = 3
OPTIMIZER_FILE = "optimizer.npz"
STATE_FILE = "state.json"
METRICS_FILE = "metrics.jsonl"
BEST_DIR = "best"
DAMAGED_PREFIX = "damaged-"
MAX_STATE_BYTES = 10_000_000
BUCKET_POOL = 50  # batches' worth of melodies sorted together: length-alike, still shuffled
# On backends that compile per input shape, padded lengths are rounded up to this multiple:
# melodies of up to 512 steps then need at most 4 compiled programs per batch size.
COMPILED_STEP_MULTIPLE = 128


@dataclass
class TrainResult:
    """What a finished (or stopped) run reached."""

    run_dir: Path
    steps: int
    best_eval_loss: float | None
    stopped_early: bool
    seconds: float
    model_dir: Path


# Batches ----------------------------------------------------------------------------------


def pad_batch(
    split: MelodySplit, indices: np.ndarray, shape: BatchShape | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (float32, zero-padded) and packed targets (int32, label -1 on padding).

    ``shape`` rounds the padded length up and fills the batch to a fixed number
    of rows (padding rows are all masked), so a backend that compiles one
    program per input shape compiles a handful, not one per melody length.
    """
    shape = shape or BatchShape()
    lengths = split.lengths[indices]
    steps = shape.steps(int(lengths.max()))
    rows = max(len(indices), shape.rows or 0)
    inputs = np.zeros((rows, steps, split.inputs.shape[1]), np.float32)
    targets = np.full((rows, steps, split.targets.shape[1]), -1, np.int32)
    targets[:, :, 1:] = 0  # padded event classes must still be valid indices
    for row, (index, length) in enumerate(zip(indices, lengths, strict=True)):
        start = split.offsets[index]
        inputs[row, :length] = split.inputs[start : start + length]
        targets[row, :length] = split.targets[start : start + length]
    return inputs, targets


@dataclass(frozen=True)
class BatchShape:
    """How batches are padded: lengths to a multiple of ``step_multiple``, ``rows`` rows."""

    step_multiple: int = 1
    rows: int | None = None

    def steps(self, longest: int) -> int:
        return -(-longest // self.step_multiple) * self.step_multiple

    @classmethod
    def for_backend(cls, batch_size: int) -> BatchShape:
        """Exact shapes on TensorFlow; on JAX (one XLA program per shape) a few fixed ones."""
        import keras

        if keras.backend.backend() == "tensorflow":
            return cls()
        return cls(step_multiple=COMPILED_STEP_MULTIPLE, rows=batch_size)


def length_bucketed_batches(
    split: MelodySplit, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """One pass over the split as index batches of similar length, in random order."""
    order = rng.permutation(len(split))
    pool = batch_size * BUCKET_POOL
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(split.lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def training_batches(
    split: MelodySplit, batch_size: int, seed: int, shape: BatchShape | None = None
) -> Iterator[tuple]:
    """Endless batches, reshuffled every pass over the data (shaped for the backend by default)."""
    shape = shape or BatchShape.for_backend(batch_size)
    rng = np.random.default_rng(seed)
    while True:
        for indices in length_bucketed_batches(split, batch_size, rng):
            yield pad_batch(split, indices, shape)


def evaluation_batches(
    split: MelodySplit, batch_size: int, shape: BatchShape | None = None
) -> list[tuple]:
    """The whole split once, sorted by length so little is padded (shaped for the backend)."""
    shape = shape or BatchShape.for_backend(batch_size)
    order = np.argsort(split.lengths, kind="stable")
    return [
        pad_batch(split, order[i : i + batch_size], shape) for i in range(0, len(order), batch_size)
    ]


# The loop ---------------------------------------------------------------------------------


def model_info(dataset: MelodyDataset, hparams: str | dict | None = None) -> ModelInfo:
    """What a new network for ``dataset`` is: its configuration's hparams with overrides."""
    return ModelInfo(
        spec=dataset.spec,
        hparams=get_config(dataset.spec.config).hparams.override(hparams),
        input_size=dataset.input_size,
        num_classes=dataset.num_classes,
        num_event_classes=int(dataset.metadata["num_event_classes"]),
        label_event_classes=dataset.label_event_classes,
    )


def compile_model(model, info: ModelInfo) -> None:
    """Attach Magenta's optimizer (Adam, clipped global norm) and the event metrics."""
    import keras

    from melodygen.families.melody_rnn.metrics import make_loss, make_metrics

    optimizer = keras.optimizers.Adam(
        learning_rate=info.hparams.learning_rate, global_clipnorm=info.hparams.clip_norm
    )
    model.compile(
        optimizer=optimizer,
        loss=make_loss(info.hparams.loss, info.label_event_classes, info.num_event_classes),
        metrics=make_metrics(info.label_event_classes, info.num_event_classes),
    )


def evaluate_batches(model, batches: list[tuple], info: ModelInfo) -> dict[str, float]:
    """Event metrics summed over every real step of ``batches`` (dropout off)."""
    from melodygen.families.melody_rnn.metrics import make_metrics

    # Fresh metric objects: Keras' test_on_batch resets its metrics on every call.
    metrics = make_metrics(info.label_event_classes, info.num_event_classes)
    steps = 0
    for inputs, targets in batches:
        logits = model.predict_on_batch(inputs)
        for metric in metrics:
            metric.update_state(targets, logits)
        steps += int((targets[..., 0] >= 0).sum())
    figures = {metric.name: float(metric.result()) for metric in metrics}
    figures["steps"] = steps
    return figures


class _RunningMeans:
    """Step-weighted means of the per-batch training figures since the last evaluation."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.weight = 0

    def add(self, logs: dict, targets: np.ndarray) -> None:
        real = int((targets[..., 0] >= 0).sum())
        for name, value in logs.items():
            if name != "loss":
                self.sums[name] = self.sums.get(name, 0.0) + float(value) * real
        self.weight += real

    def pop(self) -> dict:
        means = {name: total / max(self.weight, 1) for name, total in self.sums.items()}
        self.sums, self.weight = {}, 0
        return means


# TensorFlow CPU threads for training: ops at once, threads per op (see use_training_threads).
INTER_OP_THREADS = 2
INTRA_OP_THREADS = 1


def use_training_threads() -> None:
    """Run TensorFlow's CPU ops one thread each, two at a time, when no GPU is visible.

    The recurrent loops are hundreds of small ops per step; TensorFlow's default
    spreads each op over every core and pays for it in synchronisation. On the
    2-core development machine attention_rnn trains at 0.97 s per step this way
    against 1.46 s with the defaults (benchmarks/README.md). It must run before
    TensorFlow starts its runtime; later, and on other backends, it does nothing.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return
    try:
        tf.config.threading.set_inter_op_parallelism_threads(INTER_OP_THREADS)
        tf.config.threading.set_intra_op_parallelism_threads(INTRA_OP_THREADS)
    except RuntimeError:  # the runtime has started: keep its settings
        pass


def train(
    data: str | Path,
    run_dir: str | Path,
    config: str | None = None,
    steps: int = 20000,
    hparams: str | dict | None = None,
    eval_every: int = 200,
    early_stopping: int | None = None,
    seed: int = 0,
    progress: bool = True,
    time_limit: float | None = None,
) -> TrainResult:
    """Train (or resume) a Melody RNN on a built dataset.

    ``early_stopping``: stop after that many evaluations without a lower
    held-out loss. ``time_limit``: seconds this call may train; past it the run
    evaluates, saves a checkpoint and ends as if its steps were done (running it
    again resumes). The final model is the one with the lowest held-out loss
    (the last one when the dataset has no eval split).
    """
    import keras

    use_training_threads()
    started = time.perf_counter()
    dataset = MelodyDataset.open(data)
    check_backend_computes(dataset.spec.config)
    if config is not None and config != dataset.spec.config:
        raise DatasetError(
            f"dataset {dataset.path} was built for {dataset.spec.config}, not {config}; "
            f"rebuild it with --config {config} or train with --config {dataset.spec.config}"
        )
    if steps < 1 or eval_every < 1:
        raise DatasetError("--steps and --eval-every must be positive")
    if time_limit is not None and time_limit <= 0:
        raise DatasetError("--time-limit must be positive")
    run_dir = Path(run_dir)
    _tidy_run_dir(run_dir)
    resume = find_resume_point(run_dir)
    if resume is not None:
        resume_from, info, state = resume
        _check_resume_fits(resume_from, info, dataset, hparams)
    else:
        resume_from = None
        info = model_info(dataset, hparams)
        state = {"step": 0, "best_eval_loss": None, "evals_since_best": 0, "seconds": 0.0}
    train_split = dataset.load("train")
    if len(train_split) == 0:
        raise DatasetError(f"dataset {dataset.path} has no training melodies")
    eval_split = dataset.load("eval")
    eval_data = evaluation_batches(eval_split, info.hparams.batch_size) if len(eval_split) else []

    # This call's stretch of the run, recorded in the run's history at every checkpoint.
    stretch = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "backend": keras.backend.backend(),
        "device": training_device(),
        "from_step": state["step"],
        "seconds_before": state["seconds"],
        "index": len(state.setdefault("history", [])),  # its place in the history
    }
    keras.utils.set_random_seed(seed + state["step"])
    warn_unused_precision(info.hparams)
    model = build_network(info)
    compile_model(model, info)
    if resume_from is not None:
        try:
            with warnings.catch_warnings():
                # The optimizer's moments come from optimizer.npz; Keras warns it skips them here.
                warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
                model.load_weights(resume_from / WEIGHTS_FILE)
            _load_optimizer(model, resume_from / OPTIMIZER_FILE)
        except (ValueError, OSError, KeyError, TypeError) as error:
            raise CheckpointError(
                f"{resume_from} does not fit the network it describes ({error}); "
                "start a new --run-dir"
            ) from None
        print(f"resuming from {resume_from} (step {state['step']})")
    # The curves say what the checkpoint resumed from saw: nothing later, no step twice.
    _trim_metrics(run_dir / METRICS_FILE, through=state["step"] if resume_from else -1)

    info.training = {
        "dataset": str(dataset.path),
        "train_melodies": len(train_split),
        "train_steps": int(train_split.lengths.sum()),
        "eval_melodies": len(eval_split),
        "eval_steps": int(eval_split.lengths.sum()),
    }
    logger = _Logger(run_dir, progress, total=steps, start=state["step"])
    batches = training_batches(train_split, info.hparams.batch_size, seed=seed + state["step"])
    stopped_early = False
    deadline = None if time_limit is None else time.perf_counter() + time_limit
    if state["step"] == 0 and eval_data:  # where the curves start: an untrained model
        logger.evaluation(0, None, evaluate_batches(model, eval_data, info), state)
    interval_started = time.perf_counter()
    train_means = _RunningMeans()
    try:
        while state["step"] < steps:
            inputs, targets = next(batches)
            logs = model.train_on_batch(inputs, targets, return_dict=True)
            loss = float(logs["loss"])
            if not math.isfinite(loss):
                raise _diverged(run_dir, state["step"] + 1, f"training loss became {loss}", info)
            train_means.add(logs, targets)
            state["step"] += 1
            logger.step(logs)
            out_of_time = deadline is not None and time.perf_counter() >= deadline
            if state["step"] % eval_every == 0 or state["step"] >= steps or out_of_time:
                state["seconds"] += time.perf_counter() - interval_started
                interval_started = time.perf_counter()
                train_logs = train_means.pop()
                eval_logs = evaluate_batches(model, eval_data, info) if eval_data else None
                selection = SELECTION_METRIC[info.hparams.loss]
                if eval_logs is not None and not math.isfinite(eval_logs[selection]):
                    what = f"held-out {selection} became {eval_logs[selection]}"
                    raise _diverged(run_dir, state["step"], what, info)
                if not _weights_finite(model):
                    raise _diverged(run_dir, state["step"], "weights became non-finite", info)
                improved = _track_best(state, eval_logs, selection)
                _record_stretch(state, stretch)
                logger.evaluation(state["step"], train_logs, eval_logs, state)
                _save_checkpoint(run_dir, model, info, state)
                if improved or not eval_data:
                    _save_best(run_dir, model, _with_state(info, state, eval_logs))
                if early_stopping and state["evals_since_best"] >= early_stopping:
                    stopped_early = True
                    logger.message(
                        f"early stopping: no lower eval loss in {early_stopping} evaluations"
                    )
                    break
                if out_of_time:
                    logger.message(
                        f"time limit reached at step {state['step']}; run again to resume"
                    )
                    break
    except KeyboardInterrupt:
        if _weights_finite(model):
            state["seconds"] += time.perf_counter() - interval_started
            _record_stretch(state, stretch)
            _save_checkpoint(run_dir, model, info, state)
            logger.message(f"interrupted: saved step {state['step']}; run again to resume")
        raise
    finally:
        logger.close()

    final = _publish_final_model(run_dir)
    return TrainResult(
        run_dir=run_dir,
        steps=state["step"],
        best_eval_loss=state["best_eval_loss"],
        stopped_early=stopped_early,
        seconds=time.perf_counter() - started,
        model_dir=final,
    )


# The held-out figure each training loss is judged by (best model, early stopping).
SELECTION_METRIC = {"label": "label_nll", "event": "nll"}


def _track_best(state: dict, eval_logs: dict | None, metric: str) -> bool:
    if eval_logs is None:
        return False
    loss = eval_logs[metric]
    if state["best_eval_loss"] is None or loss < state["best_eval_loss"]:
        state["best_eval_loss"] = loss
        state["evals_since_best"] = 0
        return True
    state["evals_since_best"] += 1
    return False


def _record_stretch(state: dict, stretch: dict) -> None:
    """Put this call's stretch (backend, device, steps, seconds) last in the run's history."""
    entry = {key: stretch[key] for key in ("started", "backend", "device", "from_step")} | {
        "to_step": state["step"],
        "seconds": round(state["seconds"] - stretch["seconds_before"], 1),
    }
    state["history"][stretch["index"] :] = [entry]


def training_device() -> str:
    """The device the current Keras backend trains on, in words (``NVIDIA H200``, ``CPU``)."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return "CPU" if device.platform == "cpu" else str(device.device_kind)
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return str(details.get("device_name", "GPU"))
    return "CPU"


def check_backend_computes(config: str) -> None:
    """Refuse a combination measured to compute the network wrongly.

    Under JAX on an NVIDIA H200 (JAX 0.11.2, Keras 3.15.1) the compiled program
    of the attention layer gave held-out label NLL 2.83 where the same weights
    give 1.02 under TensorFlow, under JAX on a CPU and under JAX run eagerly on
    that GPU; the error grew with training, so early stopping and the choice of
    the best model were wrong. LSTM-only configurations matched exactly.
    """
    import keras

    if keras.backend.backend() != "jax" or not get_config(config).hparams.attn_length:
        return
    import jax

    if jax.devices()[0].platform == "gpu":
        raise ConfigError(
            f"{config} does not train correctly under JAX on a GPU: its compiled attention "
            "layer gives wrong outputs there (benchmarks/README.md); train it with "
            "KERAS_BACKEND=tensorflow, or under JAX on the CPU (JAX_PLATFORMS=cpu)"
        )


def warn_unused_precision(hparams) -> None:
    """Say so when ``gradient_precision`` asks for what this run's layers do not do."""
    from melodygen.nn import kernels
    from melodygen.nn.layers import _tf_cpu_only

    if hparams.gradient_precision == "float32":
        return
    if not _tf_cpu_only() or kernels.load() is None:
        print(
            f"note: gradient_precision={hparams.gradient_precision} applies to MelodyGen's "
            "compiled CPU kernels only; this run computes its gradients in float32"
        )


def _with_state(info: ModelInfo, state: dict, eval_logs: dict | None) -> ModelInfo:
    training = {**info.training, "step": state["step"], "train_seconds": round(state["seconds"], 1)}
    if state.get("history"):
        training["history"] = state["history"]
    if eval_logs is not None:
        training["eval"] = eval_logs
    return ModelInfo(**{**info.__dict__, "training": training})


def find_resume_point(run_dir: Path) -> tuple[Path, ModelInfo, dict] | None:
    """The newest checkpoint that reads back whole, with its info and run state.

    Newer damaged ones are moved aside to ``damaged-step-NNNNNNN`` (kept, not deleted)
    and named on stderr, so a run loses at most the damaged checkpoint. When every
    checkpoint is damaged, nothing is moved and the run is refused.
    """
    damaged = []
    for checkpoint in checkpoint_folders(run_dir):
        try:
            info, state = check_checkpoint(checkpoint)
        except CheckpointError as error:
            damaged.append((checkpoint, error))
            continue
        for folder, error in damaged:
            aside = _set_aside(folder)
            print(
                f"warning: skipped damaged checkpoint {folder.name} ({error}); "
                f"moved it to {aside.name}",
                file=sys.stderr,
            )
        return checkpoint, info, state
    if damaged:
        newest, error = damaged[0]
        raise CheckpointError(
            f"no checkpoint in {newest.parent} is whole (all {len(damaged)} damaged; "
            f"{newest.name}: {error}); move {newest.parent} aside to train the run from step 0"
        )
    return None


def check_checkpoint(checkpoint: Path) -> tuple[ModelInfo, dict]:
    """Read a whole checkpoint back (model file, run state, every weight, the optimizer).

    Raises CheckpointError naming the first part that is missing, truncated or not finite.
    """
    if not (checkpoint / MODEL_JSON).is_file():
        raise CheckpointError(f"{checkpoint} has no {MODEL_JSON}")
    _, info = read_model_info(checkpoint)
    state = _read_state(checkpoint)
    check_weights_file(checkpoint / WEIGHTS_FILE, max_values=max_weight_values(info), read=True)
    # Adam keeps two moments per weight, plus a few counters.
    _check_optimizer_file(checkpoint / OPTIMIZER_FILE, max_values=max_weight_values(info))
    return info, state


def _read_state(checkpoint: Path) -> dict:
    path = checkpoint / STATE_FILE
    try:
        if path.stat().st_size > MAX_STATE_BYTES:
            raise ValueError("far too big")
        state = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as error:
        raise CheckpointError(f"{path} is not readable ({one_line(error)})") from None
    name_step = checkpoint.name.removeprefix(CHECKPOINT_PREFIX)
    problem = None
    if not isinstance(state, dict):
        problem = "it is not a JSON object"
    elif not _is_count(state.get("step")) or f"{state['step']:07d}" != name_step:
        problem = f"its step {state.get('step')!r} is not the folder's"
    elif not _finite_or_none(state.get("best_eval_loss")):
        problem = "best_eval_loss is not a number"
    elif not _is_count(state.get("evals_since_best")):
        problem = "evals_since_best is not a count"
    elif state.get("seconds") is None or not _finite_or_none(state["seconds"]):
        problem = "seconds is not a number"
    elif not isinstance(state.get("history", []), list):
        problem = "history is not a list"
    if problem:
        raise CheckpointError(f"{path} is not a run state: {problem}")
    return state


def _finite_or_none(value) -> bool:
    return value is None or (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    )


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_optimizer_file(path: Path, max_values: int) -> None:
    """Every array of ``optimizer.npz`` reads back and is finite; sizes are checked unread."""
    try:
        with zipfile.ZipFile(path) as archive:
            # 8 bytes a value at most, and a small .npy header each
            stored = sum(item.file_size for item in archive.infolist())
            if stored > 8 * max_values + 1024 * (len(archive.infolist()) + 1):
                raise CheckpointError(f"{path} holds more than an optimizer state of this network")
        with np.load(path) as saved:
            for name in saved.files:
                if not np.isfinite(saved[name]).all():
                    raise CheckpointError(f"{path} holds optimizer values that are not finite")
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"{path} is not readable ({one_line(error)})") from None


def _set_aside(checkpoint: Path) -> Path:
    """Rename a damaged checkpoint out of the run's way, keeping its files."""
    aside = checkpoint.with_name(DAMAGED_PREFIX + checkpoint.name)
    number = 1
    while aside.exists():
        aside = checkpoint.with_name(f"{DAMAGED_PREFIX}{checkpoint.name}-{number}")
        number += 1
    checkpoint.rename(aside)
    return aside


def _check_resume_fits(checkpoint: Path, info: ModelInfo, dataset: MelodyDataset, hparams) -> None:
    """Refuse to resume a run on other data or with other hyperparameters."""
    if info.spec != dataset.spec:
        raise CheckpointError(
            f"the run in {checkpoint.parent.parent} was trained on data encoded for "
            f"{info.spec.config} with other settings than {dataset.path}; "
            "use a new --run-dir or the same dataset"
        )
    if hparams:
        requested = info.hparams.override(hparams)
        if requested != info.hparams:
            raise CheckpointError(
                f"cannot change hyperparameters when resuming {checkpoint.parent.parent}; "
                "start a new --run-dir"
            )


def _tidy_run_dir(run_dir: Path) -> None:
    """Clear what a killed run left half-written; put back a folder caught mid-swap."""
    for folder in (run_dir, run_dir / CHECKPOINTS_DIR):
        if not folder.is_dir():
            continue
        for partial in folder.glob(".partial-*"):
            shutil.rmtree(partial, ignore_errors=True)
        for old in folder.glob(".old-*"):
            name = old.name.removeprefix(".old-").rsplit("-", 1)[0]
            if (folder / name).exists():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.rename(folder / name)


def _trim_metrics(path: Path, through: int) -> None:
    """Keep one line per step up to ``through`` (the last of each), dropping broken lines."""
    if not path.is_file():
        return
    text = path.read_text(errors="replace")
    kept = {}
    for line in text.splitlines():
        try:
            step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError, RecursionError):
            continue
        if _is_count(step) and step <= through:
            kept[step] = line
    trimmed = "".join(kept[step] + "\n" for step in sorted(kept))
    if trimmed != text:
        temporary = path.with_name(path.name + ".tmp")
        write_synced(temporary, trimmed)
        temporary.replace(path)


def _weights_finite(model) -> bool:
    import keras

    return all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in model.weights)


def _diverged(run_dir: Path, step: int, what: str, info: ModelInfo) -> TrainingDivergedError:
    """The error that ends a run whose numbers stopped being finite; nothing of it is saved."""
    kept = []
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is not None:
        kept.append(f"the last good checkpoint is {checkpoint.name}")
    if (run_dir / BEST_DIR / MODEL_JSON).is_file():
        final = _publish_final_model(run_dir)
        kept.append(f"{final} holds the best model")
    return TrainingDivergedError(
        f"training stopped at step {step}: the {what}; nothing of that step was saved, "
        f"{' and '.join(kept) or 'and no checkpoint had been written yet'}; lower learning_rate "
        f"(now {info.hparams.learning_rate:g}) or clip_norm in a new --run-dir"
    )


def _save_checkpoint(run_dir: Path, model, info: ModelInfo, state: dict) -> None:
    """Write a checkpoint beside its place, fsync it, rename it in; only then drop old ones."""
    final = run_dir / CHECKPOINTS_DIR / f"{CHECKPOINT_PREFIX}{state['step']:07d}"
    partial = staging_folder(final)
    try:
        save_model(partial, model, _with_state(info, state, None))
        _save_optimizer(model, partial / OPTIMIZER_FILE)
        write_synced(partial / STATE_FILE, json.dumps(state, indent=2) + "\n")
        replace_folder(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    complete = [p for p in checkpoint_folders(run_dir) if (p / MODEL_JSON).is_file()]
    for old in complete[KEEP_CHECKPOINTS:]:
        shutil.rmtree(old, ignore_errors=True)


def _save_best(run_dir: Path, model, info: ModelInfo) -> None:
    """Replace ``best/`` as one folder, so its weights and JSON always belong together."""
    target = run_dir / BEST_DIR
    staging = staging_folder(target)
    try:
        save_model(staging, model, info)
        replace_folder(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _publish_final_model(run_dir: Path) -> Path:
    """Copy ``best/`` to ``model/`` as one folder: the old model stays until the new is whole."""
    target = run_dir / FINAL_MODEL_DIR
    staging = staging_folder(target)
    try:
        shutil.copytree(run_dir / BEST_DIR, staging, dirs_exist_ok=True)
        replace_folder(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _save_optimizer(model, path: Path) -> None:
    import keras

    values = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
    np.savez(path, *values)


def _load_optimizer(model, path: Path) -> None:
    model.optimizer.build(model.trainable_variables)
    with np.load(path) as saved:
        values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    variables = model.optimizer.variables
    if len(values) != len(variables):
        raise CheckpointError(f"optimizer state in {path} does not match the model")
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


class _Logger:
    """Progress bar, TensorBoard scalars (when TensorFlow is there) and metrics.jsonl."""

    def __init__(self, run_dir: Path, progress: bool, total: int, start: int):
        from tqdm import tqdm

        run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = (run_dir / METRICS_FILE).open("a")
        self.bar = tqdm(total=total, initial=start, unit="step", disable=not progress or None)
        self.writers = {}
        try:
            import tensorflow as tf

            self.tf = tf
            for split in ("train", "eval"):
                self.writers[split] = tf.summary.create_file_writer(str(run_dir / "logs" / split))
        except ImportError:
            self.tf = None

    def step(self, logs: dict) -> None:
        self.bar.update()
        self.bar.set_postfix(loss=f"{float(logs['loss']):.3f}", refresh=False)

    def evaluation(self, step: int, train: dict, evaluation: dict | None, state: dict) -> None:
        figures = {"train": _named(train)} if train is not None else {}
        if evaluation is not None:
            figures["eval"] = evaluation
        record = {"step": step, "seconds": round(state["seconds"], 1), **figures}
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()
        for split, values in figures.items():
            if split in self.writers:
                with self.writers[split].as_default():
                    for name, value in values.items():
                        if name != "steps" and math.isfinite(value):
                            self.tf.summary.scalar(name, value, step=step)
                self.writers[split].flush()
        parts = []
        if train is not None:
            means = figures["train"]
            parts.append(f"train nll {means['nll']:.3f} label nll {means['label_nll']:.3f}")
        if evaluation is not None:
            parts.append(
                f"eval nll {evaluation['nll']:.3f} ppl {evaluation['perplexity']:.2f}"
                f" acc {evaluation['accuracy']:.3f} event acc {evaluation['event_accuracy']:.3f}"
            )
        text = f"step {step}: " + " | ".join(parts)
        self.message(text)

    def message(self, text: str) -> None:
        self.bar.write(text)

    def close(self) -> None:
        self.bar.close()
        self.jsonl.close()
        for writer in self.writers.values():
            writer.close()


def _named(logs: dict) -> dict:
    """Training figures under the names evaluation uses."""
    return {k: float(v) for k, v in logs.items()}
