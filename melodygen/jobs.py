"""Training jobs the studio starts: one worker process at a time, its state on disk.

The studio never trains in its own process (a Streamlit script thread would hold the
server for minutes). :func:`start_job` saves the user's files into a job folder and
starts a worker (``python -m melodygen.jobs JOB_FOLDER``) in a session of its own; the
worker runs the CLI's own path, in order:

1. ``melodygen dataset build`` of the files (for a fine-tune, ``--like BASE``: in the
   base model's family, configuration and own classes or vocabulary, what it lacks
   mapped and counted in one line the page shows);
2. ``melodygen train --time-limit M [--init-from BASE]``;
3. ``melodygen evaluate --input FILES --held-out RATIO`` of the base and the new model
   on the user's held-out files (bits per note, before and after);
4. the model copied into the user models folder (:mod:`melodygen.user_models`) with a
   card saying what it was trained on and how it compares with its base.

Everything a page needs is on disk, in ``$MELODYGEN_JOBS`` (default ``jobs/`` in the
user's data directory): ``job.json`` (what was asked, written once), ``state.json`` (the
worker's status and results), ``pid``, ``log.txt`` and the run's ``metrics.jsonl``; so a
page reload or a second browser tab reads the same job (:func:`latest_job`). A lock file
(``active``) allows one training per server: a second request is refused with when the
first will finish. :meth:`Job.cancel` sends the worker SIGINT: the training loop saves a
checkpoint and stops, and the worker keeps the best model so far (the last held-out
best, else that checkpoint).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from melodygen.errors import MelodyGenError, one_line
from melodygen.user_models import CARD_FILE, METRICS_FILE, free_name, user_data_dir, user_models_dir

JOBS_ENV = "MELODYGEN_JOBS"
JOB_FILE = "job.json"
STATE_FILE = "state.json"
PID_FILE = "pid"
LOG_FILE = "log.txt"
CANCEL_FILE = "cancel"
ACTIVE_FILE = "active"
FILES_DIR = "files"
DATA_DIR = "data"
RUN_DIR = "run"
RUNNING = ("starting", "building", "training", "evaluating", "saving")
FINISHED = ("done", "failed", "cancelled")
MIN_MINUTES = 1.0
MAX_MINUTES = 240.0
"""A studio training's time budget: a minute to four hours (the CLI has no such limit)."""
DEFAULT_STEPS = 1_000_000
"""Steps a studio training may take: the time budget ends it first."""
DEFAULT_EVAL_EVERY = 25
"""Steps between held-out evaluations: the curves the page draws, and the best model kept."""
EVAL_RATIO = 0.1
"""The share of the user's songs held out (as ``dataset build --eval-ratio``)."""
KEEP_JOBS = 20
"""Finished job folders kept (their logs); older ones are removed when a job starts."""
EVALUATION_MARGIN = 60.0
"""Seconds allowed past the budget for the last evaluation, the comparison and saving."""
_TQDM_STEP = re.compile(r"(\d+)/\d+ \[")


class JobError(MelodyGenError):
    """A training request refused, or a job that cannot be read: one line saying why."""


def jobs_dir() -> Path:
    """Where job folders live: ``$MELODYGEN_JOBS``, else ``jobs`` in the user's data folder."""
    value = os.environ.get(JOBS_ENV, "").strip()
    return Path(value).expanduser() if value else user_data_dir() / "jobs"


def _write_json(path: Path, values: dict) -> None:
    """Write beside and rename in, so a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(values, indent=2) + "\n")
    temporary.replace(path)


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _alive(pid: int | None) -> bool:
    """Whether process ``pid`` still runs (a finished child of this process is reaped)."""
    if not pid:
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
        return True  # our own child, still running (maybe not yet past exec)
    except ChildProcessError:
        pass  # not our child (another server process started it)
    except OSError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():  # Linux: a reused pid is not our worker
        with contextlib.suppress(OSError):
            return b"melodygen.jobs" in cmdline.read_bytes()
    return True


@dataclass
class Progress:
    """What the page shows of a job at one moment."""

    status: str
    message: str
    step: int | None
    elapsed: float
    time_left: float
    fraction: float
    records: list[dict] = field(default_factory=list)
    """The run's metrics.jsonl as :func:`melodygen.studio.read_metrics` reads it."""


class Job:
    """One training job's folder; any number of these may read the same folder at once."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not (self.folder / JOB_FILE).is_file():
            raise JobError(f"{self.folder.name} is not a training job")

    @property
    def id(self) -> str:
        return self.folder.name

    @property
    def spec(self) -> dict:
        """What was asked: base, family, configuration, minutes, files (written once)."""
        return _read_json(self.folder / JOB_FILE)

    @property
    def state(self) -> dict:
        """The worker's last word: status, message, and when done the model and its card."""
        state = _read_json(self.folder / STATE_FILE) or {"status": "starting", "message": ""}
        if state.get("status") not in FINISHED and not self._worker_alive():
            if time.time() - self.spec.get("started", 0) > 30 or self.pid is not None:
                return {**state, "status": "failed", "message": self._lost_message()}
        return state

    @property
    def status(self) -> str:
        return str(self.state.get("status", "starting"))

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def pid(self) -> int | None:
        try:
            return int((self.folder / PID_FILE).read_text())
        except (OSError, ValueError):
            return None

    @property
    def log_path(self) -> Path:
        return self.folder / LOG_FILE

    @property
    def run_dir(self) -> Path:
        return self.folder / RUN_DIR

    def _worker_alive(self) -> bool:
        return _alive(self.pid)

    def _lost_message(self) -> str:
        last = self.log_tail(2000).strip().splitlines()
        why = next((line for line in reversed(last) if line.startswith("error:")), None)
        return why or "the training process ended without a word (killed, or out of memory)"

    def finish_time(self) -> float:
        """When the job will have finished at the latest (epoch seconds)."""
        spec = self.spec
        return spec.get("started", time.time()) + 60 * spec.get("minutes", 0) + EVALUATION_MARGIN

    def log_tail(self, size: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(max(0, handle.seek(0, 2) - size))
                return handle.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def progress(self) -> Progress:
        """Status, the training step, time used and left, and the curves so far."""
        from melodygen.studio import read_metrics

        spec, state = self.spec, self.state
        records = read_metrics(self.run_dir / METRICS_FILE)
        step = max((r["step"] for r in records), default=None)
        counted = _TQDM_STEP.findall(self.log_tail().replace("\r", "\n"))
        if counted:
            step = max(step or 0, int(counted[-1]))
        started = spec.get("started", time.time())
        budget = 60 * spec.get("minutes", 0)
        ended = state.get("ended")
        elapsed = (ended or time.time()) - started
        finished = state.get("status") in FINISHED
        return Progress(
            status=str(state.get("status", "starting")),
            message=str(state.get("message", "")),
            step=step,
            elapsed=elapsed,
            time_left=0.0 if finished else max(0.0, budget - elapsed),
            fraction=1.0 if finished else min(1.0, elapsed / budget) if budget else 0.0,
            records=records,
        )

    def cancel(self, force: bool = False) -> None:
        """Ask the worker to stop: SIGINT, which saves a checkpoint, and the best model so
        far is kept; ``force`` kills it (SIGKILL) when it does not stop."""
        (self.folder / CANCEL_FILE).write_text(str(time.time()))
        pid = self.pid
        if pid and self._worker_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL if force else signal.SIGINT)
        if force:
            _write_json(
                self.folder / STATE_FILE,
                {**self.state, "status": "cancelled", "message": "stopped", "ended": time.time()},
            )
            _release(self.folder.parent, self.id)

    def wait(self, timeout: float) -> str:
        """Block until the job has finished or ``timeout`` seconds passed; its status."""
        deadline = time.monotonic() + timeout
        while not self.finished and time.monotonic() < deadline:
            time.sleep(0.5)
        return self.status


# Starting ----------------------------------------------------------------------------------


def active_job(root: Path | None = None) -> Job | None:
    """The job holding this server's one training slot, if it is still running."""
    root = root or jobs_dir()
    try:
        job = Job(root / (root / ACTIVE_FILE).read_text().strip())
    except (OSError, JobError):
        return None
    return None if job.finished else job


def latest_job(root: Path | None = None) -> Job | None:
    """The newest job (running or finished), for a page that was reloaded."""
    root = root or jobs_dir()
    if not root.is_dir():
        return None
    folders = sorted(p for p in root.iterdir() if (p / JOB_FILE).is_file())
    return Job(folders[-1]) if folders else None


def _release(root: Path, job_id: str) -> None:
    lock = root / ACTIVE_FILE
    with contextlib.suppress(OSError):
        if lock.read_text().strip() == job_id:
            lock.unlink()


def _take_slot(root: Path, job_id: str) -> None:
    """Hold the one training slot, or refuse in one line saying when the holder finishes."""
    lock = root / ACTIVE_FILE
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            running = active_job(root)
            if running is not None:
                finish = time.strftime("%H:%M", time.localtime(running.finish_time()))
                minutes = max(1, round((running.finish_time() - time.time()) / 60))
                raise JobError(
                    f"another training is running (started {running.spec.get('started_text')}); "
                    f"one runs at a time: it will finish by {finish}, in about {minutes} min"
                ) from None
            with contextlib.suppress(OSError):
                lock.unlink()  # its holder has finished or died
            continue
        with os.fdopen(descriptor, "w") as handle:
            handle.write(job_id)
        return
    raise JobError("could not take the training slot; try again")


def _prune(root: Path) -> None:
    folders = sorted(p for p in root.iterdir() if (p / JOB_FILE).is_file())
    for folder in folders[:-KEEP_JOBS]:
        if Job(folder).finished:
            shutil.rmtree(folder, ignore_errors=True)


def start_job(
    uploads: Sequence[tuple[str, bytes]] = (),
    base: str | Path | None = None,
    family: str | None = None,
    config: str | None = None,
    minutes: float = 5.0,
    name: str | None = None,
    steps: int = DEFAULT_STEPS,
    eval_every: int = DEFAULT_EVAL_EVERY,
    hparams: str | None = None,
    eval_ratio: float = EVAL_RATIO,
    files: str | Path | None = None,
    root: Path | None = None,
) -> Job:
    """Save the files and start a training worker; the job (refused in one line when
    another runs, or when the request is not one).

    ``uploads``: (name, bytes) as the browser sent them (zips unpacked, checked as
    :func:`melodygen.uploads.save_uploads` checks them), or ``files``: a folder of music
    files (copied). ``base``: a saved model to fine-tune, or None with ``family`` and
    ``config`` for a fresh model. ``minutes``: the whole job's time budget; training
    stops in time for the comparison with the base. ``name``: the new model's name in
    the user models folder (default from the base's or configuration's).
    """
    from melodygen.core.checkpoint import info_family, read_model_info
    from melodygen.core.family import get_family
    from melodygen.uploads import save_uploads

    if not isinstance(minutes, int | float) or not MIN_MINUTES <= minutes <= MAX_MINUTES:
        raise JobError(
            f"the time budget must be {MIN_MINUTES:g} to {MAX_MINUTES:g} minutes, not {minutes}"
        )
    if base is not None:
        model_dir, info = read_model_info(base)
        chosen = info_family(info)
        config = chosen.configuration(info)
        base_text = str(Path(model_dir).resolve())
    else:
        if not family:
            raise JobError("choose a base model to fine-tune, or a family for a fresh model")
        chosen = get_family(family)
        if chosen.configurations() and config not in chosen.configurations():
            raise JobError(
                f"{chosen.title} has no configuration {config!r}; choose one of "
                + ", ".join(chosen.configurations())
            )
        base_text = None
    if not uploads and files is None:
        raise JobError("no music files: upload MIDI or ABC files (or a zip of them) to train on")
    if name is not None:
        from melodygen.user_models import check_name

        check_name(name)
    root = root or jobs_dir()
    root.mkdir(parents=True, exist_ok=True)
    job_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    _take_slot(root, job_id)
    folder = root / job_id
    try:
        (folder / FILES_DIR).mkdir(parents=True)
        if files is not None:
            saved_names = _copy_music(Path(files), folder / FILES_DIR)
        else:
            saved = save_uploads(uploads, folder / FILES_DIR)
            saved_names = saved.files
        if not saved_names:
            raise JobError(
                "no music file among the uploads: MelodyGen trains on .mid, .midi and .abc "
                "files, and .zip archives of them"
            )
        started = time.time()
        spec = {
            "id": job_id,
            "base": base_text,
            "base_name": Path(base_text).name if base_text else None,
            "family": chosen.name,
            "family_title": chosen.title,
            "config": config,
            "minutes": float(minutes),
            "steps": int(steps),
            "eval_every": int(eval_every),
            "hparams": hparams,
            "eval_ratio": float(eval_ratio),
            "name": name,
            "files": saved_names,
            "started": started,
            "started_text": time.strftime("%H:%M", time.localtime(started)),
        }
        _write_json(folder / JOB_FILE, spec)
        environment = dict(os.environ)  # the worker imports this melodygen, installed or not
        here = str(Path(__file__).resolve().parent.parent)
        environment["PYTHONPATH"] = os.pathsep.join(
            [here, *filter(None, [environment.get("PYTHONPATH")])]
        )
        with open(folder / LOG_FILE, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "melodygen.jobs", str(folder)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of the server does not reach it
                cwd=str(folder),
                env=environment,
            )
        (folder / PID_FILE).write_text(str(process.pid))
    except BaseException:
        _release(root, job_id)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    with contextlib.suppress(OSError):
        _prune(root)
    return Job(folder)


def _copy_music(source: Path, target: Path) -> list[str]:
    from melodygen.io.music import find_music_files
    from melodygen.uploads import safe_leaf

    names = []
    for path in find_music_files([source]):
        leaf = safe_leaf(path.name)
        stem, number = leaf, 1
        while (target / leaf).exists():
            number += 1
            leaf = f"{Path(stem).stem} ({number}){Path(stem).suffix}"
        shutil.copyfile(path, target / leaf)
        names.append(leaf)
    return names


# The worker --------------------------------------------------------------------------------


class _Worker:
    """The job's worker process: build, train, compare, save; its state on disk throughout."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.spec = _read_json(folder / JOB_FILE)
        self.state: dict = {"status": "starting", "message": ""}
        self.interruptible = False
        self.cancelled = False

    def update(self, **values) -> None:
        self.state.update(values)
        _write_json(self.folder / STATE_FILE, self.state)

    def on_sigint(self, signum, frame) -> None:  # noqa: ARG002 - a signal handler's signature
        self.cancelled = True
        if self.interruptible:
            self.interruptible = False  # a second Ctrl-C must not break the save
            raise KeyboardInterrupt

    def cli(self, *arguments: str) -> int:
        """Run one ``melodygen`` command in this process, interruptible by Cancel."""
        from melodygen.cli import main

        print("$ melodygen " + " ".join(arguments), flush=True)
        if self.cancelled:
            return 130
        self.interruptible = True
        try:
            return main(list(arguments))
        except KeyboardInterrupt:
            return 130
        finally:
            self.interruptible = False
            sys.stdout.flush()
            sys.stderr.flush()

    def error_line(self, fallback: str) -> str:
        tail = Job(self.folder).log_tail(4000).replace("\r", "\n").splitlines()
        line = next((x for x in reversed(tail) if x.startswith("error:")), None)
        return line.removeprefix("error:").strip() if line else fallback

    def run(self) -> None:
        signal.signal(signal.SIGINT, self.on_sigint)
        signal.signal(signal.SIGTERM, self.on_sigint)  # a polite kill cancels too
        with contextlib.suppress(OSError):
            os.nice(5)  # the studio's pages stay responsive while it trains
        try:
            self.work()
        except Exception as error:  # noqa: BLE001 - any failure is the job's one line
            self.update(status="failed", message=one_line(error), ended=time.time())
        finally:
            if self.state.get("status") not in FINISHED:
                self.update(status="failed", message="stopped unexpectedly", ended=time.time())
            _release(self.folder.parent, self.folder.name)
            for temporary in (FILES_DIR, DATA_DIR):
                shutil.rmtree(self.folder / temporary, ignore_errors=True)
            shutil.rmtree(self.folder / RUN_DIR / "checkpoints", ignore_errors=True)

    def work(self) -> None:
        spec, folder = self.spec, self.folder
        files, data, run = folder / FILES_DIR, folder / DATA_DIR, folder / RUN_DIR
        deadline = spec["started"] + 60 * spec["minutes"]
        self.update(status="building", message="reading your files")
        build = ["dataset", "build", "--input", str(files)]
        build += ["--output", str(data), "--eval-ratio", str(spec["eval_ratio"])]
        build += ["--workers", "1", "--quiet"]
        if spec.get("base"):  # the base's own encoding: its classes or vocabulary
            build += ["--like", spec["base"]]
        else:
            build += ["--family", spec["family"]]
            if spec.get("config"):
                build += ["--config", spec["config"]]
        if self.cli(*build) != 0:
            return self.end_early("building the training data", data_built=False)
        notice = encoding_notice(Job(folder).log_tail(20_000))
        if notice:
            self.update(encoding=notice)
        # The rest of the budget trains, less what the comparison takes (a tenth, at most 1 min).
        left = deadline - time.time()
        minutes = max(0.1, (left - min(60.0, 0.1 * 60 * spec["minutes"])) / 60)
        self.update(status="training", message="training", train_minutes=round(minutes, 2))
        train = [
            "train",
            "--data",
            str(data),
            "--run-dir",
            str(run),
            "--time-limit",
            f"{minutes:.3f}",
        ]
        train += ["--steps", str(spec["steps"]), "--eval-every", str(spec["eval_every"])]
        if spec.get("base"):
            train += ["--init-from", spec["base"]]
        if spec.get("hparams"):
            train += ["--hparams", spec["hparams"]]
        code = self.cli(*train)
        if code != 0 and not self.cancelled:
            return self.end_early("training")
        model = self.kept_model(run)
        if model is None:
            return self.end_early("training")
        self.update(status="evaluating", message="comparing with the base on your held-out files")
        comparison = self.compare(model, files)
        self.update(status="saving", message="adding the model to your models")
        target = self.publish(model, run, comparison)
        self.update(
            status="cancelled" if self.cancelled else "done",
            message=("cancelled: kept the best model so far" if self.cancelled else "finished"),
            model=target.name,
            model_dir=str(target),
            card=_read_json(target / CARD_FILE),
            ended=time.time(),
        )
        return None

    def end_early(self, what: str, data_built: bool = True) -> None:  # noqa: ARG002
        if self.cancelled:
            self.update(status="cancelled", message=f"cancelled while {what}", ended=time.time())
        else:
            why = self.error_line(f"{what} failed; see the log")
            self.update(status="failed", message=f"{what} failed: {why}", ended=time.time())

    def kept_model(self, run: Path) -> Path | None:
        """The best model so far: the run's final model, else its held-out best, else its
        newest checkpoint (a run cancelled before its first evaluation)."""
        from melodygen.core.checkpoint import MODEL_JSON, latest_checkpoint

        for candidate in (run / "model", run / "best"):
            if (candidate / MODEL_JSON).is_file():
                return candidate
        return latest_checkpoint(run)

    def compare(self, model: Path, files: Path) -> dict:
        """Bits per note of the base and the new model on the held-out files, through
        ``melodygen evaluate``; {"problem": why} when there is nothing to compare on."""
        spec = self.spec
        out = self.folder / "evaluate.json"
        checkpoints = [spec["base"], str(model)] if spec.get("base") else [str(model)]
        was_cancelled, self.cancelled = self.cancelled, False  # evaluate even after Cancel
        try:
            code = self.cli(
                "evaluate", "--checkpoint", *checkpoints, "--input", str(files),
                "--held-out", str(spec["eval_ratio"]), "--json", str(out),
            )  # fmt: skip
        finally:
            self.cancelled = was_cancelled or self.cancelled
        if code != 0:
            return {"problem": self.error_line("the held-out comparison failed")}
        rows = _read_json(out).get("ranking") or []
        by_model = {row.get("model"): row for row in rows}
        after = by_model.get(str(model), {})
        result = {
            "tunes": after.get("tunes"),
            "notes": after.get("notes"),
            "bits_per_note": after.get("bits_per_note_pooled"),
        }
        if spec.get("base"):
            result["base_bits_per_note"] = by_model.get(spec["base"], {}).get(
                "bits_per_note_pooled"
            )
        return result

    def publish(self, model: Path, run: Path, comparison: dict) -> Path:
        """Copy the kept model into the user models folder with its curves and card."""
        from melodygen.core.checkpoint import MODEL_JSON, WEIGHTS_FILE

        spec = self.spec
        info = _read_json(model / MODEL_JSON)
        training = info.get("training") if isinstance(info.get("training"), dict) else {}
        root = user_models_dir()
        root.mkdir(parents=True, exist_ok=True)
        stem = spec.get("name") or (
            f"{spec['base_name']}-tuned"
            if spec.get("base_name")
            else f"my_{spec['config'] or spec['family']}"
        )
        name = free_name(stem, root)
        staging = root / f".saving-{self.folder.name}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for leaf in (MODEL_JSON, WEIGHTS_FILE):
            shutil.copyfile(model / leaf, staging / leaf)
        if (run / METRICS_FILE).is_file():
            shutil.copyfile(run / METRICS_FILE, staging / METRICS_FILE)
        ended = time.time()
        what = (
            f"{spec['base_name']} fine-tuned"
            if spec.get("base_name")
            else f"A fresh {spec['family_title']}"
        )
        card = {
            "name": name,
            "style": "yours",
            "config": spec.get("config") or spec["family_title"],
            "description": f"{what} on {len(spec['files'])} of your files in the studio",
            "user": True,
            "data": {
                "files": len(spec["files"]),
                "file_names": spec["files"][:200],
                "train_melodies": training.get("train_melodies"),
                "eval_melodies": training.get("eval_melodies"),
                "held_out_ratio": spec["eval_ratio"],
                "encoding": self.state.get("encoding"),
            },
            "training": {
                "base": spec.get("base_name"),
                "base_path": spec.get("base"),
                "steps": training.get("step"),
                "wall_seconds": round(ended - spec["started"], 1),
                "train_seconds": training.get("train_seconds"),
                "time_budget_minutes": spec["minutes"],
                "cancelled": self.cancelled,
                "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(spec["started"])),
                "machine": "this server (studio)",
            },
            "comparison": comparison,
            "metrics": {"bits_per_note_pooled": comparison.get("bits_per_note")},
            "commands": [
                "melodygen dataset build "
                + (
                    f"--like {spec['base_name']}"
                    if spec.get("base_name")
                    else f"--family {spec['family']}"
                    + (f" --config {spec['config']}" if spec.get("config") else "")
                )
                + f" --eval-ratio {spec['eval_ratio']} --input FILES --output DATA",
                f"melodygen train --data DATA --run-dir RUN --time-limit {spec['minutes']:g}"
                + (f" --init-from {spec['base_name']}" if spec.get("base_name") else ""),
            ],
        }
        _write_json(staging / CARD_FILE, card)
        target = root / name
        staging.rename(target)
        return target


_ENCODING_LINE = re.compile(r"^(classes|vocabulary):\s+(the base model's .*)$", re.MULTILINE)


def encoding_notice(log: str) -> str | None:
    """The line ``dataset build --like`` printed on the base's encoding and what it lacked
    in the user's files ("vocabulary: the base model's (...): 3 training characters it
    lacks read as <unk> ..."), for the page and the card; None without one."""
    found = _ENCODING_LINE.findall(log.replace("\r", "\n"))
    if not found:
        return None
    label, text = found[-1]
    return f"{label}: {text}"


def main(argv: list[str] | None = None) -> int:
    """The worker's entry point: ``python -m melodygen.jobs JOB_FOLDER``."""
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 1 or not (Path(arguments[0]) / JOB_FILE).is_file():
        print(
            "usage: python -m melodygen.jobs JOB_FOLDER (a folder with job.json)", file=sys.stderr
        )
        return 2
    _Worker(Path(arguments[0]).resolve()).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
