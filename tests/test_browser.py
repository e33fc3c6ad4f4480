"""The studio in a real browser: streamlit on localhost, driven by Debian's headless Chromium.

Skipped, with the reason, where Debian's chromium and chromium-driver are not installed
(``make test`` installs them when run as root, as in CI).
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from browser_helpers import chromium, chromium_paths, running_app
from studio_fixtures import make_checkpoints

BROWSER, DRIVER = chromium_paths()
pytestmark = pytest.mark.skipif(
    not (BROWSER and DRIVER),
    reason="needs Debian's chromium and chromium-driver (make test installs them when root)",
)
WAIT = 120  # seconds: the first generation loads TensorFlow and compiles the model's step


SUBMIT = "[data-testid='stFormSubmitButton'] button"


def test_generate_in_a_real_browser(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    def navigation(browser) -> list[str]:
        links = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stSidebarNav'] a")
        return [a.text.splitlines()[-1] for a in links if a.text]

    def results(browser):
        """Four variations by default: a piano roll, a player, MIDI and WAV each; one zip."""
        images = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stImage'] img")
        audio = browser.find_elements(By.CSS_SELECTOR, "audio")
        buttons = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stDownloadButton']")
        loaded = [
            img for img in images if browser.execute_script("return arguments[0].naturalWidth", img)
        ]
        if len(loaded) >= 4 and len(audio) >= 4 and len(buttons) >= 9:
            return loaded, audio, buttons
        return False

    checkpoints = make_checkpoints(tmp_path / "checkpoints")
    log = tmp_path / "streamlit.log"
    with running_app(checkpoints, log) as url, chromium() as first, chromium() as second:
        # A deep link as the server's very first request still gets the studio's pages.
        first.get(f"{url}/models")
        wait = WebDriverWait(first, WAIT)
        wait.until(ready.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Models"))
        expected = ["Generate", "Models", "About and help"]
        WebDriverWait(first, 30).until(lambda browser: navigation(browser) == expected)

        # Two sessions press Generate at the same time; both get their results.
        buttons = []
        for driver in (first, second):
            driver.get(url)
            buttons.append(
                WebDriverWait(driver, WAIT).until(
                    ready.element_to_be_clickable((By.CSS_SELECTOR, SUBMIT))
                )
            )
        assert "Generate" in buttons[0].text
        assert "Nottingham" in first.find_element(By.TAG_NAME, "body").text  # the card line
        for button in buttons:
            button.click()
        found = []
        for name, driver in (("first", first), ("second", second)):
            try:
                found.append(WebDriverWait(driver, WAIT).until(results))
            except Exception as error:
                driver.save_screenshot(str(tmp_path / f"{name}.png"))
                server = log.read_text()[-3000:]
                message = f"no results in the {name} session; server log:\n{server}"
                raise AssertionError(message) from error
            assert not driver.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
            assert "Traceback" not in driver.find_element(By.TAG_NAME, "body").text

        images, audio, downloads = found[0]
        labels = [b.text.strip() for b in downloads]
        assert labels[0].endswith("Download all (zip)")
        assert sum(label.endswith("MIDI") for label in labels) == 4
        assert sum(label.endswith("WAV") for label in labels) == 4
        assert images[0].size["width"] > 300
        # The player's source is a real WAV served by the app.
        with urllib.request.urlopen(audio[0].get_attribute("src"), timeout=10) as reply:
            data = reply.read()
        assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and len(data) > 100_000
    assert log.read_text().count("generated 4 variation(s)") == 2
