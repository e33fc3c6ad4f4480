"""Start the studio on a free localhost port and drive it with Debian's headless Chromium.

Used by tests/test_browser.py and by docs/screenshot.py (the README's screenshot).
Nothing is downloaded: Selenium is given the paths of Debian's ``chromium`` and
``chromium-driver``, so it never looks for a browser or driver of its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def chromium_paths() -> tuple[str | None, str | None]:
    """(browser, driver) executables, or None for what is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return browser, driver


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_app(
    checkpoints: Path, log_path: Path, timeout: float = 90.0, env: dict | None = None
) -> Iterator[str]:
    """``streamlit run app.py`` in a subprocess; yields its URL; always stops it.

    It runs with the shipped .streamlit/config.toml (no file watcher) and the environment
    as it is (no TensorFlow log level set here), so the tests see the log a user sees.
    """
    port = free_port()
    environment = {**os.environ, "MELODYGEN_CHECKPOINTS": str(checkpoints), **(env or {})}
    if "TF_CPP_MIN_LOG_LEVEL" not in (env or {}):
        environment.pop("TF_CPP_MIN_LOG_LEVEL", None)  # tests/conftest.py sets one for pytest
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(REPO / "app.py"),
        "--server.headless=true",
        f"--server.port={port}",
        "--server.address=127.0.0.1",
        "--browser.gatherUsageStats=false",
    ]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"streamlit exited: {log_path.read_text()[-2000:]}")
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                        if reply.read().strip() == b"ok":
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"streamlit did not answer within {timeout:.0f} s")
                time.sleep(0.25)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 1800) -> Iterator:
    """A headless Chromium driven by Selenium; always quits."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = chromium_paths()
    if not browser or not driver_path:
        raise RuntimeError("Debian's chromium and chromium-driver are needed")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def waiter(browser, timeout: float, poll_frequency: float = 0.5):
    """A WebDriverWait that tries again when Streamlit redraws an element it was reading.

    Streamlit replaces elements on every run of the page (the model finishing loading in
    the background causes one), so an element found a moment ago can be stale; Selenium's
    default wait gives up on that at once instead of looking again.
    """
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(
        browser,
        timeout,
        poll_frequency=poll_frequency,
        ignored_exceptions=(StaleElementReferenceException,),
    )


def settled(browser, timeout: float = 120.0) -> None:
    """Wait until the page has finished its run: Streamlit's "running" widget is gone."""
    from selenium.webdriver.common.by import By

    time.sleep(0.5)  # a run just asked for may not have started yet
    waiter(browser, timeout, poll_frequency=0.1).until(
        lambda b: not b.find_elements(By.CSS_SELECTOR, "[data-testid='stStatusWidget']")
    )
