"""The training loop every family shares: held-out evaluation, resumable checkpoints.

The loop reaches the model only through its family (:mod:`melodygen.core.family`):
the dataset's ``dataset.json`` names the family, which makes the batches, the
network, its loss and metrics, and says which held-out figure picks the best model.

A run folder holds everything a run writes:

- ``checkpoints/step-NNNNNNN/``: model, optimizer state and run state, every
  ``eval_every`` steps (the last ``KEEP_CHECKPOINTS`` are kept); a run started
  again with the same folder resumes from the newest;
- ``logs/train`` and ``logs/eval``: TensorBoard scalars of the family's figures
  (for a Melody RNN: label and event NLL, perplexity, accuracies) against the step;
- ``metrics.jsonl``: the same figures, one JSON line per evaluation;
- ``model/``: the final model, the weights with the lowest held-out loss.

Every folder is written whole beside its place and renamed into it, so a kill
at any moment leaves the previous checkpoint or model, never half of one. A
run resumes from its newest checkpoint that reads back whole (a damaged newer
one is set aside as ``checkpoints/damaged-step-NNNNNNN``), and stops at the
first non-finite loss without saving anything past its last good checkpoint.

``init_from`` (``--init-from``) starts a new run from another model's weights
(fine-tuning); where it started is kept in the run state, the history and every
saved ``melodygen.json`` (``training.init_from``), across resumes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from melodygen.core.checkpoint import (
    CHECKPOINT_PREFIX,
    CHECKPOINTS_DIR,
    FINAL_MODEL_DIR,
    MODEL_JSON,
    WEIGHTS_FILE,
    check_weights_file,
    checkpoint_folders,
    info_family,
    latest_checkpoint,
    max_weight_values,
    read_model_info,
    replace_folder,
    save_model,
    staging_folder,
    write_synced,
)
from melodygen.core.family import Family, ModelInfo, open_dataset
from melodygen.errors import (
    CheckpointError,
    DatasetError,
    MelodyGenError,
    TrainingDivergedError,
    one_line,
)

KEEP_CHECKPOINTS = 3
OPTIMIZER_FILE = "optimizer.npz"
STATE_FILE = "state.json"
METRICS_FILE = "metrics.jsonl"
BEST_DIR = "best"
DAMAGED_PREFIX = "damaged-"
MAX_STATE_BYTES = 10_000_000


@dataclass
class TrainResult:
    """What a finished (or stopped) run reached."""

    run_dir: Path
    steps: int
    best_eval_loss: float | None
    stopped_early: bool
    seconds: float
    model_dir: Path


# The loop ---------------------------------------------------------------------------------


class _RunningMeans:
    """Step-weighted means of the per-batch training figures since the last evaluation."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.weight = 0

    def add(self, logs: dict, real: int) -> None:
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
    init_from: str | Path | None = None,
) -> TrainResult:
    """Train (or resume) a model of any family on a dataset that family built.

    ``early_stopping``: stop after that many evaluations without a lower
    held-out loss. ``time_limit``: seconds this call may train; past it the run
    evaluates, saves a checkpoint and ends as if its steps were done (running it
    again resumes). ``init_from``: a saved model (or run folder) of the same family
    whose weights a new run starts from (fine-tuning); its network is kept, ``hparams``
    may change only how it trains, and the run's history records where it started. A
    run that already has checkpoints resumes from them instead. The final model is the
    one with the lowest held-out loss (the last one when the dataset has no eval split).
    """
    import keras

    use_training_threads()
    started = time.perf_counter()
    family, dataset = open_dataset(data)
    if config is not None:
        family.check_config(dataset, config)
    if steps < 1 or eval_every < 1:
        raise DatasetError("--steps and --eval-every must be positive")
    if time_limit is not None and time_limit <= 0:
        raise DatasetError("--time-limit must be positive")
    run_dir = Path(run_dir)
    _tidy_run_dir(run_dir)
    resume = find_resume_point(run_dir)
    start_from = None  # (model folder, its info) of --init-from
    if resume is not None:
        resume_from, info, state = resume
        _check_resume_fits(resume_from, info, family, dataset, hparams)
        if init_from is not None:
            print(f"note: {run_dir} has checkpoints, so it resumes; --init-from is not used")
    else:
        resume_from = None
        state = {"step": 0, "best_eval_loss": None, "evals_since_best": 0, "seconds": 0.0}
        if init_from is not None:
            start_from = _fine_tuning_start(init_from, family, dataset)
            info = family.with_hparams(start_from[1], hparams)
            state["init_from"] = _init_record(*start_from)
        else:
            info = family.new_model_info(dataset, hparams)
    family.check_backend(info)
    train_split = dataset.load("train")
    if len(train_split) == 0:
        raise DatasetError(f"dataset {dataset.path} has no training examples")
    eval_split = dataset.load("eval")
    eval_data = family.evaluation_batches(eval_split, info) if len(eval_split) else []

    # This call's stretch of the run, recorded in the run's history at every checkpoint.
    stretch = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "backend": keras.backend.backend(),
        "device": training_device(),
        "from_step": state["step"],
        "seconds_before": state["seconds"],
        "index": len(state.setdefault("history", [])),  # its place in the history
    }
    if start_from is not None:
        stretch["init_from"] = state["init_from"]
    keras.utils.set_random_seed(seed + state["step"])
    model = family.build_network(info)
    family.compile(model, info)
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
    elif start_from is not None:
        _load_start_weights(model, start_from[0])
        print(f"starting from the weights of {start_from[0]}")
    # The curves say what the checkpoint resumed from saw: nothing later, no step twice.
    _trim_metrics(run_dir / METRICS_FILE, through=state["step"] if resume_from else -1)

    info.training = {
        "dataset": str(dataset.path),
        "train_melodies": len(train_split),
        "train_steps": int(train_split.lengths.sum()),
        "eval_melodies": len(eval_split),
        "eval_steps": int(eval_split.lengths.sum()),
    }
    if state.get("init_from"):
        info.training["init_from"] = state["init_from"]
    logger = _Logger(run_dir, progress, total=steps, start=state["step"], family=family)
    batches = family.training_batches(train_split, info, seed=seed + state["step"])
    selection = family.selection_metric(info)
    stopped_early = False
    deadline = None if time_limit is None else time.perf_counter() + time_limit
    if state["step"] == 0 and eval_data:  # where the curves start: the untrained model
        logger.evaluation(0, None, family.evaluate_batches(model, eval_data, info), state)
    interval_started = time.perf_counter()
    train_means = _RunningMeans()
    try:
        while state["step"] < steps:
            inputs, targets, weight = next(batches)
            logs = model.train_on_batch(inputs, targets, return_dict=True)
            loss = float(logs["loss"])
            if not math.isfinite(loss):
                raise _diverged(run_dir, state["step"] + 1, f"training loss became {loss}", info)
            train_means.add(logs, weight)
            state["step"] += 1
            logger.step(logs)
            out_of_time = deadline is not None and time.perf_counter() >= deadline
            if state["step"] % eval_every == 0 or state["step"] >= steps or out_of_time:
                state["seconds"] += time.perf_counter() - interval_started
                interval_started = time.perf_counter()
                train_logs = train_means.pop()
                eval_logs = family.evaluate_batches(model, eval_data, info) if eval_data else None
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


def _fine_tuning_start(init_from: str | Path, family: Family, dataset) -> tuple[Path, ModelInfo]:
    """The model a new run starts from: whole, of the dataset's family, able to read it."""
    model_dir, info = read_model_info(init_from)
    check_weights_file(model_dir / WEIGHTS_FILE, max_values=max_weight_values(info), read=True)
    if info.family != family.name:
        raise CheckpointError(
            f"--init-from {model_dir} is a {info_family(info).title} model, but "
            f"{dataset.path} holds {family.title} data; build the dataset for that model"
        )
    try:
        family.check_fits(info, model_dir, dataset)
    except DatasetError as error:
        raise CheckpointError(f"--init-from: {error}") from None
    return model_dir, info


def _init_record(model_dir: Path, info: ModelInfo) -> dict:
    """What the history says a fine-tuned run started from: the model's folder (absolute),
    its step and dataset, and what it had itself started from (a chain of fine-tunings)."""
    record = {
        "checkpoint": str(Path(model_dir).resolve()),
        "step": info.training.get("step"),
        "dataset": info.training.get("dataset"),
    }
    if isinstance(info.training.get("init_from"), dict):
        record["init_from"] = info.training["init_from"]
    return record


def _load_start_weights(model, model_dir: Path) -> None:
    try:
        model.load_weights(model_dir / WEIGHTS_FILE)
    except (ValueError, OSError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"--init-from {model_dir}: its weights do not fit its {MODEL_JSON} ({one_line(error)})"
        ) from None


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
    """Put this call's stretch (backend, device, steps, seconds, and the model a fine-tuning
    run started from) last in the run's history."""
    entry = {key: stretch[key] for key in ("started", "backend", "device", "from_step")} | {
        "to_step": state["step"],
        "seconds": round(state["seconds"] - stretch["seconds_before"], 1),
    }
    if "init_from" in stretch:
        entry["init_from"] = stretch["init_from"]
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


def _with_state(info: ModelInfo, state: dict, eval_logs: dict | None) -> ModelInfo:
    training = {**info.training, "step": state["step"], "train_seconds": round(state["seconds"], 1)}
    if state.get("history"):
        training["history"] = state["history"]
    if eval_logs is not None:
        training["eval"] = eval_logs
    return dataclasses.replace(info, training=training)


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


def _check_resume_fits(checkpoint: Path, info: ModelInfo, family: Family, dataset, hparams) -> None:
    """Refuse to resume a run on other data or with other hyperparameters."""
    run = checkpoint.parent.parent
    if info.family != family.name:
        raise CheckpointError(
            f"the run in {run} trains a {info_family(info).title} model, but {dataset.path} "
            f"holds {family.title} data; use a new --run-dir or the same dataset"
        )
    try:
        family.check_fits(info, checkpoint, dataset)
    except DatasetError as error:
        raise CheckpointError(
            f"the run in {run} was trained on data encoded otherwise ({error}); "
            "use a new --run-dir or the same dataset"
        ) from None
    if hparams:
        try:
            requested = family.with_hparams(info, hparams)
        except MelodyGenError:  # a shape change, or a family that takes no overrides
            requested = None
        if requested is None or requested.hparams != info.hparams:
            raise CheckpointError(
                f"cannot change hyperparameters when resuming {run}; start a new --run-dir"
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

    def __init__(self, run_dir: Path, progress: bool, total: int, start: int, family: Family):
        from tqdm import tqdm

        self.family = family
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
        if train:
            parts.append("train " + self.family.progress_figures(figures["train"], "train"))
        if evaluation is not None:
            parts.append("eval " + self.family.progress_figures(evaluation, "eval"))
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
