"""Models in a process of their own, so that the studio's server never runs TensorFlow.

The studio's server (Streamlit) runs every browser session's page in threads of one
Python process. Generating there cost every session time in two ways:

- Generation is a Python loop around each compiled step, so it waits for Python's lock
  behind every other session's page run, and they wait for it.
- Streamlit ends every script run (each session's rerun, each polling fragment) by
  calling ``keras.backend.clear_session()`` whenever Keras is imported in the process:
  a full garbage collection of the server and a cleared TensorFlow kernel cache, a
  tenth of a second or more each time, holding Python's lock (``streamlit.runtime.
  scriptrunner.script_runner._clean_problem_modules``). With four sessions open it was
  a quarter of the server's CPU time.

A :class:`ModelHost` is one worker process (started with ``spawn``: nothing of the
server's state is copied) that loads the generators and runs their calls; the server
keeps only each model's description (its ``melodygen.json``) and never imports
TensorFlow or Keras. Calls from different threads run at the same time in the host, on
threads of its own, so two sessions with different models do not wait for each other;
calls to one model are kept one at a time by the caller (``studio.SharedModel``).

A host that dies (killed, out of memory) is noticed at the next call: a host found dead
before a call is started again and the model loaded again, at no cost but time; a call
it died in ends in :class:`ModelHostError`, and the next call starts a new host.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import traceback
import types
from collections import OrderedDict
from multiprocessing import get_context
from multiprocessing.managers import BaseManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from melodygen.errors import MelodyGenError, one_line

if TYPE_CHECKING:
    from melodygen.core.family import Family
    from melodygen.core.generation import GenerationRequest, GenerationResult

logger = logging.getLogger(__name__)

MAX_MODELS = 8
"""Generators a host keeps loaded (the last used); an older one is loaded again if asked."""

# What ends a call when the host's process is gone (killed, or it shut down).
_GONE = (EOFError, OSError)  # OSError covers ConnectionError and BrokenPipeError


class ModelHostError(MelodyGenError):
    """A call failed in the host for a reason that is not the user's: its process died,
    or the model raised something unexpected (the host logged the traceback). Its message
    is one line, shown as it is."""


class ModelHostStopped(ModelHostError):
    """The host's process stopped (or could not answer) during the call; the next call
    starts a new one."""


class _NotLoaded(KeyError):
    """The host does not have this model (it was started again, or it dropped it)."""


_MAIN_SWAP = threading.RLock()


@contextlib.contextmanager
def plain_main():
    """While a worker process is spawned: ``__main__`` as a bare module. A spawned worker
    first runs the parent's main script again (as ``__mp_main__``), and under Streamlit
    that is the page being drawn (Streamlit puts the script's module there while it runs;
    AppTest does too): a worker would draw a page, or die on it. Workers need nothing
    from the main module; the swap lasts only while the process starts, and one swap at
    a time (two threads starting workers at once would restore each other's)."""
    with _MAIN_SWAP:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            if main is not None:
                sys.modules["__main__"] = main


# In the host's process ------------------------------------------------------------------


class _Generators:
    """The host's side: loaded generators by key, the last :data:`MAX_MODELS` of them."""

    def __init__(self) -> None:
        self._loaded: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, key: str, checkpoint: str, family: Family, device: str) -> float:
        """Load a model's generator under ``key``; returns the seconds it took."""
        from melodygen.core.family import register
        from melodygen.core.generation import load_generator

        started = time.perf_counter()
        register(family)  # a family registered at run time in the server (a plug-in, a test)
        generator = _checked(load_generator, checkpoint, device)
        with self._lock:
            self._loaded[key] = generator
            self._loaded.move_to_end(key)
            while len(self._loaded) > MAX_MODELS:
                self._loaded.popitem(last=False)
        return time.perf_counter() - started

    def call(self, key: str, method: str, request: GenerationRequest) -> Any:
        """``generate`` or ``primer_notices`` of the generator loaded under ``key``."""
        if method not in ("generate", "primer_notices"):
            raise ModelHostError(f"a model host does not run {method!r}")
        with self._lock:
            generator = self._loaded.get(key)
            if generator is None:
                raise _NotLoaded(key)
            self._loaded.move_to_end(key)
        return _checked(getattr(generator, method), request)

    def drop(self, key: str) -> None:
        with self._lock:
            self._loaded.pop(key, None)


def _checked(function, *args):
    """``function(*args)``; an error that is not a :class:`MelodyGenError` is logged here
    with its traceback and sent on as a :class:`ModelHostError` (its own class might not
    be importable in the server: a TensorFlow error would import TensorFlow there)."""
    try:
        return function(*args)
    except MelodyGenError:
        raise
    except Exception as error:
        logger.error("model host: %s", traceback.format_exc())
        raise ModelHostError(f"{type(error).__name__}: {one_line(error)}") from None


def _start_host(parent: int) -> None:
    """In the host, before it serves: log like the server, and end when the server has
    gone (a server killed without closing its host would leave it holding the models)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="melodygen-host-watch", daemon=True).start()


class _Manager(BaseManager):
    pass


_Manager.register("Generators", _Generators, exposed=("load", "call", "drop"))


# In the server ---------------------------------------------------------------------------


class ModelHost:
    """One worker process that holds generators for the studio's server.

    The first :meth:`load` starts the process; then :meth:`call` a loaded model's
    ``generate`` or ``primer_notices`` from any thread. :meth:`close` ends the process
    (it also ends by itself when the server does).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._manager: _Manager | None = None
        self._generators = None
        self._starts = 0
        self._known: dict[str, tuple[str, Family, str]] = {}

    @property
    def starts(self) -> int:
        """How many times the host's process was started (a replaced one counts)."""
        return self._starts

    @property
    def pid(self) -> int | None:
        """The host's process id, or None while it is not running."""
        manager = self._manager
        process = getattr(manager, "_process", None)
        return process.pid if process is not None and process.is_alive() else None

    def _live(self):
        """The host's proxy, with a new process started if it has none or it died."""
        with self._lock:
            if self._manager is not None and self.pid is None:
                logger.warning("the model host has stopped; starting a new one")
                self._shut(self._manager)
                self._manager = self._generators = None
            if self._manager is None:
                manager = _Manager(ctx=get_context("spawn"))
                with plain_main():
                    manager.start(_start_host, (os.getpid(),))
                self._manager, self._generators = manager, manager.Generators()
                self._starts += 1
            return self._generators

    def load(self, key: str, checkpoint: str | Path, family: Family, device: str = "auto") -> float:
        """Load the model at ``checkpoint`` in the host under ``key`` (its family given, so a
        family registered at run time is known there too); the seconds the host took.
        Its errors are the loader's own (:class:`~melodygen.errors.MelodyGenError`)."""
        self._known[key] = (str(checkpoint), family, device)
        return self._send(lambda generators: generators.load(key, *self._known[key]))

    def call(self, key: str, method: str, request: GenerationRequest) -> GenerationResult | Any:
        """The loaded model's ``method`` ("generate" or "primer_notices") with ``request``;
        a model the host lost (it was started again) is loaded again first."""
        if key not in self._known:
            raise ModelHostError(f"no model {key!r} was loaded in the model host")

        def send(generators):
            try:
                return generators.call(key, method, request)
            except _NotLoaded:
                generators.load(key, *self._known[key])
                return generators.call(key, method, request)

        return self._send(send)

    def drop(self, key: str) -> None:
        """Let the host free a model's memory; a later call for ``key`` loads it again."""
        generators = self._generators
        if key in self._known and generators is not None and self.pid is not None:
            with contextlib.suppress(*_GONE):
                generators.drop(key)

    def _send(self, function):
        generators = self._live()
        try:
            return function(generators)
        except _GONE as error:
            # The host sends its own errors as MelodyGenError or ModelHostError, so one of
            # these is the connection's: the process stopped (or could not answer).
            raise ModelHostStopped(
                f"the model's process stopped during the call ({one_line(error)}); "
                "it starts again with the next one"
            ) from None

    def close(self) -> None:
        """End the host's process (waiting up to a few seconds)."""
        with self._lock:
            manager, self._manager, self._generators = self._manager, None, None
        if manager is not None:
            self._shut(manager)

    @staticmethod
    def _shut(manager: _Manager) -> None:
        with contextlib.suppress(Exception):
            manager.shutdown()
