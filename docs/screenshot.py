"""Screenshots of the studio for the README, taken with headless Chromium.

Starts the app on a free localhost port (the same way tests/test_browser.py does), types
a primer, presses Generate, waits for the results and saves the page
(``studio-generate.png``) and the first variation's card with its score
(``studio-score.png``); then, when a model makes blends, types two melodies on the
Variations and blends page, blends them and saves the results (``studio-blend.png``); on
the Data page, uploads a mixed collection from ``--data`` (Nottingham waltzes and jigs,
POP909 songs and a README) and explores it (``studio-data.png``); on the Train page,
fine-tunes pop_basic_rnn on Nottingham waltzes for one minute in a real worker and saves
the finished model's card, its bits per note against the base and its curves
(``studio-train.png``; user models and jobs go to a temporary folder). PNG files reduced
to a palette so each stays well under 300 KB.

Usage: python docs/screenshot.py [--checkpoints checkpoints] [--out docs]
       [--data ../shared/data] [--only generate|blend|data|train]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from browser_helpers import chromium, running_app, settled  # noqa: E402

PRIMER = "E4:2 F#4:2 G4 B4 | A4:2 G4:2 F#4 D4:8"
BLEND_FROM = "E4:2 F#4:2 G4 B4 | A4:2 G4:2 F#4 D4:6 r:2 | E4 F#4 G4:2 A4:2 B4:2 | D5:8 B4:8"
BLEND_TO = "D5:3 C#5 B4:2 A4:2 | F#4:4 A4:4 | G4 F#4 E4:2 D4:2 E4:2 | F#4:16"
WIDTH = 1280


def save(driver, path: Path, max_bytes: int = 300_000, element=None, box=None) -> None:
    """The window (or one element of it, or the ``box`` (left, top, right, bottom) of it)
    as a palette PNG, scaled down until it is under ``max_bytes``."""
    raw = path.with_suffix(".raw.png")
    if element is not None:
        element.screenshot(str(raw))
    else:
        driver.save_screenshot(str(raw))
    image = Image.open(raw).convert("RGB")
    raw.unlink()
    if box is not None:
        left, top, right, bottom = (round(value) for value in box)
        image = image.crop((left, top, min(right, image.width), min(bottom, image.height)))
    scale = 1.0
    while True:
        size = (round(image.width * scale), round(image.height * scale))
        small = image.resize(size, Image.LANCZOS) if scale < 1 else image
        small.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
        if path.stat().st_size <= max_bytes or scale < 0.5:
            break
        scale *= 0.9
    print(f"{path}: {small.width} x {small.height}, {path.stat().st_size / 1000:.0f} KB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=Path, default=REPO / "checkpoints")
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--only", choices=["generate", "blend", "data", "train"], default=None)
    args = parser.parse_args()
    from melodygen.studio import discover_models

    if not discover_models(args.checkpoints):
        sys.exit(f"no model in {args.checkpoints}: train or copy one there first")
    pages = [args.only] if args.only else ["generate", "blend", "data", "train"]
    if {"data", "train"} & set(pages) and not (args.data / "nottingham" / "melody").is_dir():
        sys.exit(f"no nottingham/melody in {args.data}: give the shared data with --data")

    scratch = Path(tempfile.mkdtemp())
    log = scratch / "streamlit.log"
    env = {
        "MELODYGEN_USER_MODELS": str(scratch / "models"),
        "MELODYGEN_JOBS": str(scratch / "jobs"),
    }
    with running_app(args.checkpoints, log, env=env) as url, chromium(WIDTH, 1000) as driver:
        for page in pages:
            if page == "generate":
                generate_page(driver, url, args.out)
            elif page == "blend":
                blend_page(driver, url, args.out)
            elif page == "data":
                data_page(driver, url, args.out, collection(args.data, scratch))
            else:
                train_page(driver, url, args.out, sorted(waltzes(args.data)))


def generate_page(driver, url: str, out: Path) -> None:
    """The Generate page with four variations, and the first one's card with its score."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, 300)  # the model loads in the background meanwhile
    generate = (By.XPATH, "//button[.//p[text()='Generate']]")
    wait.until(ready.element_to_be_clickable(generate))
    typed = (By.XPATH, "//label[.//p[text()='Typed notes']]")
    wait.until(ready.element_to_be_clickable(typed)).click()
    area = wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, "textarea")))
    area.send_keys(PRIMER)
    driver.find_element(*generate).click()  # the typed notes go with the click
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "audio")) >= 4)
    wait.until(lambda d: "Loading the model" not in d.find_element(By.TAG_NAME, "body").text)
    settled(driver)
    time.sleep(2)  # let images and players settle
    height = driver.execute_script(
        "return document.querySelector('[data-testid=\"stMainBlockContainer\"]').scrollHeight"
    )
    driver.set_window_size(WIDTH, height + 120)
    time.sleep(1)
    save(driver, out / "studio-generate.png")
    # The score view: the first variation's card (piano roll, score, player, downloads).
    card = driver.find_element(  # the nearest block around a player holding a score
        By.XPATH,
        "(//audio)[1]/ancestor::div[.//img[starts-with(@src, 'data:image/svg+xml')]][1]",
    )
    driver.execute_script("arguments[0].scrollIntoView()", card)
    time.sleep(1)
    save(driver, out / "studio-score.png", element=card)


def blend_page(driver, url: str, out: Path) -> None:
    """The Variations and blends page: two typed melodies blended in the default 5 steps."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    driver.set_window_size(WIDTH, 1000)
    driver.get(f"{url}/variations")
    wait = WebDriverWait(driver, 300)
    choice = (By.XPATH, "//label[.//p[text()='A blend of two melodies']]")
    wait.until(ready.element_to_be_clickable(choice)).click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "textarea")) == 2)
    settled(driver)
    first, second = driver.find_elements(By.CSS_SELECTOR, "textarea")
    first.send_keys(BLEND_FROM)
    second.send_keys(BLEND_TO)
    driver.find_element(By.XPATH, "//button[.//p[text()='Check melodies']]").click()
    settled(driver)
    wait.until(lambda d: "Loading the model" not in d.find_element(By.TAG_NAME, "body").text)
    driver.find_element(By.XPATH, "//button[.//p[text()='Blend']]").click()
    wait.until(lambda d: "Whole blend (MIDI)" in d.find_element(By.TAG_NAME, "body").text)
    settled(driver)
    time.sleep(2)
    height = driver.execute_script(
        "return document.querySelector('[data-testid=\"stMainBlockContainer\"]').scrollHeight"
    )
    driver.set_window_size(WIDTH, height + 120)
    time.sleep(1)
    save(driver, out / "studio-blend.png")


def waltzes(data: Path) -> list[Path]:
    """The 49 Nottingham waltzes: a style the pop models never saw."""
    return sorted((data / "nottingham" / "melody").glob("waltzes*.mid"))


def collection(data: Path, scratch: Path) -> list[Path]:
    """A musician's mixed folder: waltzes, 40 jigs, 20 POP909 songs and a README."""
    melody = data / "nottingham" / "melody"
    pop = sorted((data / "pop909").glob("*/*.mid"))[:20]
    readme = scratch / "README.txt"
    readme.write_text("My tunes, collected over the years.\n")
    return [*waltzes(data), *sorted(melody.glob("jigs*.mid"))[:40], *pop, readme]


def _full_page(driver) -> None:
    """Make the window as tall as the page, so one screenshot holds all of it."""
    height = driver.execute_script(
        "return document.querySelector('[data-testid=\"stMainBlockContainer\"]').scrollHeight"
    )
    driver.set_window_size(WIDTH, height + 120)
    time.sleep(1)


def data_page(driver, url: str, out: Path, files: list[Path]) -> None:
    """The Data page after exploring a mixed collection: summary, figures, tables."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.set_window_size(WIDTH, 1000)
    driver.get(f"{url}/data")
    wait = WebDriverWait(driver, 300)
    explore = (By.XPATH, "//button[.//p[text()='Explore']]")
    wait.until(
        lambda d: (
            d.find_elements(*explore) and d.find_elements(By.CSS_SELECTOR, "input[type='file']")
        )
    )
    driver.find_element(By.CSS_SELECTOR, "input[type='file']").send_keys(
        "\n".join(str(path) for path in files)
    )
    wait.until(lambda d: files[-1].name in d.find_element(By.TAG_NAME, "body").text)
    driver.find_element(*explore).click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid='stImage'] img")) >= 9)
    settled(driver)
    time.sleep(2)
    _full_page(driver)
    # The main column, from the title to the first four figures (the rest is more of them
    # and the tables).
    left, bottom = driver.execute_script(
        "const main = document.querySelector('[data-testid=\"stMain\"]');"
        "const figures = document.querySelectorAll('[data-testid=\"stImage\"]');"
        "return [main.getBoundingClientRect().left, figures[4].getBoundingClientRect().top];"
    )
    save(driver, out / "studio-data.png", box=(left, 0, WIDTH, bottom - 24))


def train_page(driver, url: str, out: Path, files: list[Path]) -> None:
    """The Train page once pop_basic_rnn has been fine-tuned on waltzes for a minute."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver.set_window_size(WIDTH, 1000)
    driver.get(f"{url}/train")
    wait = WebDriverWait(driver, 600)
    start = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "input[aria-label='Start from']"))
    start[0].click()
    start[0].send_keys(Keys.CONTROL, "a")
    start[0].send_keys("Fine-tune Pop · basic_rnn")
    start[0].send_keys(Keys.ENTER)
    budget = driver.find_element(By.CSS_SELECTOR, "input[aria-label='Time budget (minutes)']")
    budget.send_keys(Keys.CONTROL, "a")
    budget.send_keys("1")
    name = driver.find_element(
        By.CSS_SELECTOR, "input[aria-label='Name of the new model (optional)']"
    )
    name.send_keys("pop_on_waltzes")
    driver.find_elements(By.CSS_SELECTOR, "input[type='file']")[0].send_keys(
        "\n".join(str(path) for path in files)
    )
    wait.until(lambda d: files[-1].name in d.find_element(By.TAG_NAME, "body").text)
    driver.find_element(By.XPATH, "//button[.//p[text()='Start training']]").click()
    wait.until(lambda d: "is in your models" in d.find_element(By.TAG_NAME, "body").text)
    settled(driver)
    time.sleep(2)
    _full_page(driver)
    left = driver.execute_script(
        "return document.querySelector('[data-testid=\"stMain\"]').getBoundingClientRect().left"
    )
    save(driver, out / "studio-train.png", box=(left, 0, WIDTH, driver.get_window_size()["height"]))


if __name__ == "__main__":
    main()
