"""The studio in a real browser: streamlit on localhost, driven by Debian's headless Chromium.

Skipped, with the reason, where Debian's chromium and chromium-driver are not installed
(``make test`` installs them when run as root, as in CI).
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest
from browser_helpers import chromium, chromium_paths, running_app, settled, waiter
from studio_fixtures import make_checkpoints

BROWSER, DRIVER = chromium_paths()
pytestmark = pytest.mark.skipif(
    not (BROWSER and DRIVER),
    reason="needs Debian's chromium and chromium-driver (make test installs them when root)",
)
WAIT = 300  # seconds: the first model loads TensorFlow and compiles its step (slow when busy)


SUBMIT = "[data-testid='stFormSubmitButton'] button"


def test_generate_in_a_real_browser(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready

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
        # The zip comes last (once every variation is rendered), at the top of the results.
        done = any(b.text.strip().endswith("Download all (zip)") for b in buttons)
        if len(loaded) >= 4 and len(audio) >= 4 and len(buttons) >= 9 and done:
            return loaded, audio, buttons
        return False

    checkpoints = make_checkpoints(tmp_path / "checkpoints")
    log = tmp_path / "streamlit.log"
    with running_app(checkpoints, log) as url, chromium() as first, chromium() as second:
        # A deep link as the server's very first request still gets the studio's pages.
        first.get(f"{url}/models")
        wait = waiter(first, WAIT)
        wait.until(ready.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Models"))
        expected = [
            "Generate",
            "Variations and blends",
            "Data",
            "Train",
            "Models",
            "About and help",
        ]
        waiter(first, 30).until(lambda browser: navigation(browser) == expected)

        # Two sessions press Generate at the same time; both get their results.
        buttons = []
        for driver in (first, second):
            driver.get(url)
            buttons.append(
                waiter(driver, WAIT).until(ready.element_to_be_clickable((By.CSS_SELECTOR, SUBMIT)))
            )
        assert "Generate" in buttons[0].text
        assert "Nottingham" in first.find_element(By.TAG_NAME, "body").text  # the card line
        for button in buttons:
            button.click()
        found = []
        for name, driver in (("first", first), ("second", second)):
            try:
                found.append(waiter(driver, WAIT).until(results))
            except Exception as error:
                driver.save_screenshot(str(tmp_path / f"{name}.png"))
                server = log.read_text()[-3000:]
                message = f"no results in the {name} session; server log:\n{server}"
                raise AssertionError(message) from error
            assert not driver.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
            assert "Traceback" not in driver.find_element(By.TAG_NAME, "body").text

        settled(first)  # once the model is there the page is drawn again: take that one
        images, audio, downloads = waiter(first, WAIT).until(results)
        labels = [b.text.strip() for b in downloads]
        assert labels[0].endswith("Download all (zip)")
        assert sum(label.endswith("MIDI") for label in labels) == 4
        assert sum(label.endswith("WAV") for label in labels) == 4
        assert images[0].size["width"] > 300
        # The player's source is a real WAV served by the app.
        with urllib.request.urlopen(audio[0].get_attribute("src"), timeout=10) as reply:
            data = reply.read()
        assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and len(data) > 100_000
        # What the page has not drawn again yet dims in one step, not in a one-second fade
        # (app.STALE_STYLE): the browser applies the app's rule to Streamlit's stale marker.
        timing = first.execute_script(
            "const card = document.querySelector('[data-testid=stElementContainer]');"
            "card.setAttribute('data-stale', 'true');"
            "const style = getComputedStyle(card);"
            "const timing = [style.transitionDuration, style.transitionDelay];"
            "card.setAttribute('data-stale', 'false'); return timing;"
        )
        assert timing == ["0s", "0.5s"]
    assert log.read_text().count("generated 4 variation(s)") == 2


GENERATE = "//button[.//p[text()='Generate']]"
LOADING = "Loading the model in the background"


def test_what_the_form_shows_is_what_generate_uses(tmp_path: Path) -> None:
    """Unsubmitted settings stay shown, a typed primer goes with one click, pages keep all.

    Also: the page is drawn, with a progress message, before the model has loaded; the
    server log (shipped config, no TensorFlow log level set) has no CUDA probe error.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ready

    def body(browser) -> str:
        return browser.find_element(By.TAG_NAME, "body").text

    def number(browser, label: str):
        return browser.find_element(By.CSS_SELECTOR, f"input[aria-label='{label}']")

    def shown(browser) -> list[str]:
        labels = ("Seed", "Tempo (BPM)", "Length in bars")
        return [number(browser, label).get_attribute("value") for label in labels]

    def instrument(browser):
        return browser.find_element(By.CSS_SELECTOR, "input[aria-label='Instrument']")

    checkpoints = make_checkpoints(tmp_path / "checkpoints")
    log = tmp_path / "streamlit.log"
    with running_app(checkpoints, log) as url, chromium() as browser:
        wait = waiter(browser, WAIT, poll_frequency=0.1)
        quick = waiter(browser, 20, poll_frequency=0.1)
        browser.get(url)
        # Drawn at once, with the model still loading in the background.
        wait.until(lambda b: LOADING in body(b) and b.find_elements(By.XPATH, GENERATE))
        assert "Traceback" not in body(browser)
        wait.until(lambda b: LOADING not in body(b))
        settled(browser)

        # Settings typed but not yet submitted stay shown when another control reruns
        # the page (the primer source, the instrument).
        for label, value in (("Seed", "77"), ("Tempo (BPM)", "140"), ("Length in bars", "4")):
            field = number(browser, label)
            field.send_keys(Keys.CONTROL, "a")
            field.send_keys(value)
        browser.find_element(By.XPATH, "//label[.//p[text()='Typed notes']]").click()
        area = wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, "textarea")))
        settled(browser)
        assert shown(browser) == ["77", "140", "4"]
        instrument(browser).click()
        instrument(browser).send_keys(Keys.CONTROL, "a")
        instrument(browser).send_keys("Strings")
        instrument(browser).send_keys(Keys.ENTER)
        quick.until(lambda b: instrument(b).get_attribute("value") == "Strings")
        settled(browser)
        assert shown(browser) == ["77", "140", "4"]

        # Notes typed, then Generate pressed at once: one click generates, with them.
        area = browser.find_element(By.CSS_SELECTOR, "textarea")
        area.send_keys("D4 F4 A4:8")
        browser.find_element(By.XPATH, GENERATE).click()
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "audio")) >= 4)
        generated = [line for line in log.read_text().splitlines() if "generated " in line]
        assert len(generated) == 1 and "of 64 steps" in generated[0] and "(seed 77)" in generated[0]
        assert "Primer: 3 notes typed" in body(browser) or "notes typed" in body(browser)
        settled(browser)
        assert shown(browser) == ["77", "140", "4"]

        # Another page and back: every setting, the primer and the results are still there.
        browser.find_element(
            By.CSS_SELECTOR, "[data-testid='stSidebarNav'] a[href$='/models']"
        ).click()
        wait.until(ready.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Models"))
        browser.find_element(By.CSS_SELECTOR, "[data-testid='stSidebarNav'] a[href$='/']").click()
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "audio")) >= 4)
        settled(browser)
        assert shown(browser) == ["77", "140", "4"]
        assert browser.find_element(By.CSS_SELECTOR, "textarea").get_attribute("value") == (
            "D4 F4 A4:8"
        )
        assert instrument(browser).get_attribute("value") == "Strings"
        assert "seed 77" in body(browser)
        assert sum("generated " in line for line in log.read_text().splitlines()) == 1
    server = log.read_text()
    assert "cuInit" not in server and "cuda" not in server.lower(), server[-2000:]


def test_folk_tunes_from_an_abc_model_with_their_scores(tmp_path: Path) -> None:
    """An ABC model in a real browser: an opening typed, tunes generated, their text and
    engraved scores shown (SVG pictures drawn at the card's width)."""
    from abc_fixtures import make_abc_checkpoint
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready

    def scores(browser):
        images = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stImage'] img")
        drawn = [
            img
            for img in images
            if (img.get_attribute("src") or "").startswith("data:image/svg+xml")
            and browser.execute_script("return arguments[0].naturalWidth", img)
            and img.is_displayed()
        ]
        return drawn if len(drawn) >= 2 else False

    checkpoints = tmp_path / "checkpoints"
    make_abc_checkpoint(checkpoints)
    log = tmp_path / "streamlit.log"
    with running_app(checkpoints, log) as url, chromium() as browser:
        browser.get(url)
        wait = waiter(browser, WAIT)
        wait.until(
            lambda b: (
                b.find_elements(By.XPATH, GENERATE)
                and LOADING not in b.find_element(By.TAG_NAME, "body").text
            )
        )
        settled(browser)
        labels = browser.find_element(By.TAG_NAME, "body").text
        assert "ABC opening" in labels and "Rhythm (R:)" in labels
        assert "Start from" not in labels and "Stay in scale" not in labels
        area = browser.find_element(By.CSS_SELECTOR, "textarea[aria-label='ABC opening']")
        area.send_keys("M:6/8\nK:G\n|:GAB c2d|e2d c2B|ded cBA|B2G A2F:|")
        variations = browser.find_element(By.XPATH, GENERATE)
        wait.until(ready.element_to_be_clickable(variations)).click()
        try:
            drawn = wait.until(scores)
        except Exception as error:
            browser.save_screenshot(str(tmp_path / "abc.png"))
            raise AssertionError(f"no scores; server log:\n{log.read_text()[-3000:]}") from error
        body = browser.find_element(By.TAG_NAME, "body").text
        assert "Traceback" not in body
        assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
        assert body.count("K:G") >= 4 and "|:GAB c2d|" in body  # each tune's text, shown
        assert drawn[0].size["width"] > 300 and drawn[0].size["height"] > 50

        def musicxml_buttons(browser) -> int:
            buttons = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stDownloadButton']")
            return sum(b.text.strip().endswith("MusicXML") for b in buttons)

        wait.until(lambda b: musicxml_buttons(b) == 4)  # the variations come one by one


def test_a_blend_in_a_real_browser(tmp_path: Path) -> None:
    """The Variations and blends page with a tiny note_vae model: two melodies typed, a
    blend made, its steps drawn as a row of piano rolls and one player that plays them all
    in order (a real WAV served by the app)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from studio_fixtures import make_vae_checkpoint

    def blend(browser):
        """The default 5 steps: 5 piano rolls (and the 2 typed melodies'), one player."""
        images = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stImage'] img")
        drawn = [
            img for img in images if browser.execute_script("return arguments[0].naturalWidth", img)
        ]
        audio = browser.find_elements(By.CSS_SELECTOR, "audio")
        if len(drawn) >= 7 and len(audio) == 1 and "Whole blend (MIDI)" in body(browser):
            return drawn, audio[0].get_attribute("src")  # read now: a redraw replaces it
        return False

    def body(browser) -> str:
        return browser.find_element(By.TAG_NAME, "body").text

    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    make_vae_checkpoint(checkpoints, tmp_path / "vae")
    log = tmp_path / "streamlit.log"
    with running_app(checkpoints, log) as url, chromium() as browser:
        browser.get(f"{url}/variations")
        wait = waiter(browser, WAIT)
        wait.until(ready.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Variations"))
        choice = (By.XPATH, "//label[.//p[text()='A blend of two melodies']]")
        wait.until(ready.element_to_be_clickable(choice)).click()
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "textarea")) == 2)
        settled(browser)
        first, second = browser.find_elements(By.CSS_SELECTOR, "textarea")
        first.send_keys("C4 E4 G4:2 r:2 | A4 G4 E4:8")
        second.send_keys("D5:2 C5:2 A4 F4 | G4:4 E4:4 C4:8")
        button = (By.XPATH, "//button[.//p[text()='Blend']]")
        wait.until(ready.element_to_be_clickable(button)).click()
        try:
            images, source = wait.until(blend)
        except Exception as error:
            browser.save_screenshot(str(tmp_path / "blend.png"))
            raise AssertionError(f"no blend; server log:\n{log.read_text()[-3000:]}") from error
        assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
        assert "Traceback" not in body(browser)
        assert "5 steps from folk_vae_tiny" in body(browser)
        with urllib.request.urlopen(source, timeout=10) as reply:
            data = reply.read()
        assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and len(data) > 100_000


def _nav(browser, title: str) -> None:
    """Go to a page by the sidebar's link: the same session (a new URL would start another)."""
    from selenium.webdriver.common.by import By

    for link in browser.find_elements(By.CSS_SELECTOR, "[data-testid='stSidebarNav'] a"):
        if link.text.splitlines() and link.text.splitlines()[-1] == title:
            link.click()
            return
    raise AssertionError(f"no {title} link in the sidebar")


def _upload(browser, paths: list[Path], index: int = 0) -> None:
    """Choose ``paths`` in the page's ``index``-th file uploader, as a user's file dialog."""
    from selenium.webdriver.common.by import By

    field = browser.find_elements(By.CSS_SELECTOR, "input[type='file']")[index]
    field.send_keys("\n".join(str(path) for path in paths))


def _flute() -> bytes:
    from studio_fixtures import midi_file

    scale = [60, 62, 64, 65, 67, 69, 71, 72]
    notes = [(scale[i % 8], i * 0.5, i * 0.5 + 0.45) for i in range(32)]
    return midi_file([("Flute", 73, False, notes)], qpm=120.0)


def test_the_data_page_explores_uploaded_files_in_a_real_browser(tmp_path: Path) -> None:
    """Tiny MIDI files written here are uploaded, explored into the nine figures, the songs
    and problems tables; the Train page then offers the same files without an upload."""
    from selenium.webdriver.common.by import By
    from studio_fixtures import drums_only, song

    from melodygen.explore import FIGURES

    files = tmp_path / "mine"
    files.mkdir()
    paths = []
    for name, data in (
        ("song.mid", song()), ("drums.mid", drums_only()), ("flute.mid", _flute()),
        ("notes.txt", b"not music"),
    ):  # fmt: skip
        (files / name).write_bytes(data)
        paths.append(files / name)
    (tmp_path / "no models").mkdir()
    log = tmp_path / "streamlit.log"
    with running_app(tmp_path / "no models", log) as url, chromium() as browser:
        wait = waiter(browser, 90)
        browser.get(f"{url}/data")
        explore = "//button[.//p[text()='Explore']]"
        wait.until(
            lambda b: (
                b.find_elements(By.XPATH, explore)
                and b.find_elements(By.CSS_SELECTOR, "input[type='file']")
            )
        )
        _upload(browser, paths)
        wait.until(lambda b: "notes.txt" in b.find_element(By.TAG_NAME, "body").text)
        browser.find_element(By.XPATH, explore).click()

        def figures(b):
            images = b.find_elements(By.CSS_SELECTOR, "[data-testid='stImage'] img")
            loaded = [i for i in images if b.execute_script("return arguments[0].naturalWidth", i)]
            return len(loaded) == len(FIGURES) and loaded

        try:
            # WAIT, not 90 s: under CI's two busy test workers a newly started server once
            # stayed at "Read 3 of 3 music files" (drawing nine figures) for over 90 s.
            images = waiter(browser, WAIT).until(figures)
        except Exception as error:
            browser.save_screenshot(str(tmp_path / "data.png"))
            page = browser.find_element(By.TAG_NAME, "body").text[-1500:]
            raise AssertionError(
                f"no figures; page:\n{page}\nserver log:\n{log.read_text()[-3000:]}"
            ) from error
        assert images[0].size["width"] > 300
        text = browser.find_element(By.TAG_NAME, "body").text
        assert "Problems (3)" in text and "Songs (3)" in text, text[-2000:]
        assert len(browser.find_elements(By.CSS_SELECTOR, "[data-testid='stDataFrame']")) == 2
        assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
        assert "wait for the Train page" in text

        _nav(browser, "Train")
        wait.until(lambda b: "The files explored on the Data page" in b.find_element(
            By.TAG_NAME, "body").text)  # fmt: skip
        assert "3 music files from " in browser.find_element(By.TAG_NAME, "body").text
    assert "Traceback" not in log.read_text()


def test_the_train_page_fine_tunes_a_tiny_model_in_a_real_browser(tmp_path: Path) -> None:
    """A real worker fine-tunes a tiny model: progress and steps shown, Cancel keeps the
    model so far, its card appears, and the new model generates."""
    from conftest import PHRASES, write_tune
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from melodygen.core.generation import GenerationRequest, load_generator

    checkpoints = make_checkpoints(tmp_path / "checkpoints")
    files = tmp_path / "mine"
    files.mkdir()
    paths = [write_tune(files / f"tune{i}.mid", PHRASES[i % 4]) for i in range(8)]
    mine, log = tmp_path / "my models", tmp_path / "streamlit.log"
    env = {"MELODYGEN_USER_MODELS": str(mine), "MELODYGEN_JOBS": str(tmp_path / "jobs")}
    with running_app(checkpoints, log, env=env) as url, chromium() as browser:
        wait = waiter(browser, WAIT)

        def body(b) -> str:
            return b.find_element(By.TAG_NAME, "body").text

        def field(b, label: str):
            found = b.find_elements(By.CSS_SELECTOR, f"input[aria-label='{label}']")
            return found[0] if found else None

        browser.get(f"{url}/train")
        # The form's fields are drawn one after another: wait for the last one used here
        # (once, in CI: the budget was not there yet when "Start from" was).
        wait.until(
            lambda b: (
                field(b, "Start from")
                and field(b, "Time budget (minutes)")
                and b.find_elements(By.CSS_SELECTOR, "input[type='file']")
                and b.find_elements(By.CSS_SELECTOR, SUBMIT)
            )
        )
        settled(browser)
        start = field(browser, "Start from")
        assert start.get_attribute("value") == "Fine-tune Folk · attention_rnn"  # the first
        budget = field(browser, "Time budget (minutes)")
        budget.send_keys(Keys.CONTROL, "a")
        budget.send_keys("1")
        _upload(browser, paths)
        wait.until(lambda b: "tune7.mid" in body(b))
        browser.find_element(By.CSS_SELECTOR, SUBMIT).click()
        try:
            # Training: the progress line counts steps, and the step metric is shown.
            wait.until(lambda b: re.search(r"training: step ([1-9]\d*)", body(b)))
        except Exception as error:
            browser.save_screenshot(str(tmp_path / "train.png"))
            raise AssertionError(f"no progress; page:\n{body(browser)[-2000:]}") from error
        assert "Time left" in body(browser) and "Step" in body(browser)

        def press_cancel(b) -> bool:
            """The page redraws its progress every second: a button found a moment ago may
            be gone (once: NoSuchElementException right after the progress line showed)."""
            try:
                b.find_element(By.XPATH, "//button[.//p[text()='Cancel']]").click()
            except (NoSuchElementException, StaleElementReferenceException):
                return False
            return True

        wait.until(press_cancel)
        try:
            # The worker runs niced (the studio stays responsive): under CI's load its
            # comparison and saving after Cancel took longer than WAIT once.
            waiter(browser, 2 * WAIT).until(lambda b: "is in your models" in body(b))
        except Exception as error:  # say what the job and the page said
            from melodygen.jobs import Job

            job = Job(next((tmp_path / "jobs").glob("*/job.json")).parent)
            raise AssertionError(
                f"no kept model; job state {job.state}\nlog:\n{job.log_tail(2000)}\n"
                f"page:\n{body(browser)[-1500:]}"
            ) from error
        assert "was cancelled; kept folk_attention_rnn-tuned" in body(browser)
        assert "files" in body(browser) and "steps" in body(browser)  # the card
        assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
    model = mine / "folk_attention_rnn-tuned"
    result = load_generator(model).generate(GenerationRequest(length_steps=32, seed=1))
    assert result.melodies and result.melodies[0].sequence.notes
