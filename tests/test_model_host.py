"""The studio's models run in a process of their own (``melodygen.model_host``): the server
never imports TensorFlow, results are the ones made in the server's own process, errors keep
their one-line messages, and a host that dies is replaced."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest
from studio_fixtures import make_checkpoints

from melodygen import studio
from melodygen.core.generation import GenerationRequest
from melodygen.errors import MelodyGenError
from melodygen.io.primer import parse_primer
from melodygen.model_host import ModelHost, ModelHostError, ModelHostStopped, _checked

REPO = Path(__file__).resolve().parent.parent
REQUEST = {"length_steps": 32, "num_outputs": 2, "seed": 7}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    return make_checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(scope="module")
def host():
    host = ModelHost()
    yield host
    host.close()


def request() -> GenerationRequest:
    return GenerationRequest(primer=parse_primer("C4 E4 G4"), **REQUEST)


def events(result) -> list[list[int]]:
    return [list(melody.events) for melody in result.melodies]


def wait_gone(host: ModelHost, pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while host.pid is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host.pid is None


def test_the_server_never_imports_tensorflow_and_gets_the_same_melodies(checkpoints):
    """A fresh interpreter plays the server: the studio's loader, a generation and the
    primer's notices, all through the host; TensorFlow and Keras are never imported there
    (Streamlit would clear Keras's session after every run), and the melodies are the ones
    the same request makes in this process."""
    checkpoint = checkpoints / "folk_attention_rnn"
    server = textwrap.dedent(
        f"""
        import json, sys
        from melodygen import studio
        from melodygen.core.generation import GenerationRequest
        from melodygen.io.primer import parse_primer

        loader = studio.BackgroundLoader(warm_up_rows=2)
        model = loader.model(sys.argv[1], 0.0, "folk").result(timeout=240)
        request = GenerationRequest(primer=parse_primer("C4 E4 G4"), **{REQUEST!r})
        result = studio.generate(model, request)
        notices = studio.primer_notices(model, parse_primer("C1 E4"), studio.StudioSettings())
        print(json.dumps({{
            "modules": sorted(m for m in ("tensorflow", "keras") if m in sys.modules),
            "events": [list(melody.events) for melody in result.melodies],
            "notices": notices,
            "host": loader.host.pid is not None and loader.host.pid != __import__("os").getpid(),
        }}))
        loader.host.close()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", server, str(checkpoint)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    served = json.loads(done.stdout.strip().splitlines()[-1])
    assert served["modules"] == [] and served["host"]
    here = studio.SharedModel(checkpoint)
    assert served["events"] == events(studio.generate(here, request()))
    assert served["notices"] == studio.primer_notices(
        here, parse_primer("C1 E4"), studio.StudioSettings()
    )
    assert "C1" in served["notices"][0]


def test_a_host_killed_between_calls_is_started_again_and_loads_the_model(checkpoints, host):
    model = studio.SharedModel(checkpoints / "folk_attention_rnn", host=host)
    before = events(model.generate(request()))
    starts = host.starts
    wait_gone(host, host.pid)
    assert events(model.generate(request())) == before
    assert host.starts == starts + 1


def test_a_host_that_dies_during_a_call_says_so_in_one_line_and_the_next_call_works(
    checkpoints, host
):
    model = studio.SharedModel(checkpoints / "folk_attention_rnn", host=host)

    def dies_during_the_call(generators):
        wait_gone(host, host.pid)
        return generators.drop("anything")

    with pytest.raises(ModelHostError, match="stopped during the call") as error:
        host._send(dies_during_the_call)
    assert "\n" not in str(error.value)
    assert len(model.generate(request()).melodies) == 2


def test_load_errors_in_the_host_are_the_ones_met_in_the_server(checkpoints, host, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(checkpoints / "folk_attention_rnn", broken)
    weights = broken / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(MelodyGenError) as here:
        studio.SharedModel(broken)
    with pytest.raises(MelodyGenError) as there:
        studio.SharedModel(broken, host=host)
    assert (type(there.value), str(there.value)) == (type(here.value), str(here.value))


def test_a_dropped_model_is_loaded_again_and_unknown_calls_are_refused(checkpoints, host):
    model = studio.SharedModel(checkpoints / "folk_attention_rnn", host=host)
    before = events(model.generate(request()))
    model.close()  # the loader let go of it while a session still holds it
    assert events(model.generate(request())) == before
    with pytest.raises(ModelHostError, match="no model"):
        host.call("never loaded", "generate", request())
    with pytest.raises(ModelHostError, match="does not run"):
        host.call(model._key, "load", request())


def test_an_unexpected_error_in_the_host_arrives_as_one_line_of_its_own_class():
    with pytest.raises(ModelHostError, match=r"^ZeroDivisionError: division by zero$"):
        _checked(lambda: 1 / 0)
    with pytest.raises(MelodyGenError, match="as it was"):
        _checked(lambda: (_ for _ in ()).throw(MelodyGenError("as it was")))


def test_primer_notices_do_not_wait_for_another_sessions_generation(checkpoints, host):
    """The page asks for them on every run; they read the primer only, so they must not
    queue behind generations holding the model's lock."""
    model = studio.SharedModel(checkpoints / "folk_attention_rnn", host=host)
    got: list = []
    with model._lock:  # another session is generating
        asking = threading.Thread(
            target=lambda: got.append(
                studio.primer_notices(model, parse_primer("C1 E4"), studio.StudioSettings())
            )
        )
        asking.start()
        asking.join(timeout=60)
        assert not asking.is_alive() and "C1" in got[0][0]


def test_the_loader_loads_again_a_model_whose_host_stopped_but_keeps_other_failures(
    checkpoints,
):
    loader = studio.BackgroundLoader(own_process=False)
    path = str(checkpoints / "folk_attention_rnn")
    stopped, failed = Future(), Future()
    stopped.set_exception(ModelHostStopped("the model's process stopped during the call"))
    failed.set_exception(ModelHostError("ValueError: a broken model"))
    loader._models[(path, 1.0)] = stopped
    loader._models[(path, 2.0)] = failed
    again = loader.model(path, 1.0, "folk")
    assert again is not stopped and len(again.result(timeout=240).generate(request()).melodies)
    assert loader.model(path, 2.0, "folk") is failed  # shown until the files change
    assert issubclass(ModelHostError, MelodyGenError)  # the page shows its one line
