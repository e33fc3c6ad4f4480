"""Screenshots of the studio's Generate page for the README, taken with headless Chromium.

Starts the app on a free localhost port (the same way tests/test_browser.py does), types
a primer, presses Generate, waits for the results and saves the page
(``studio-generate.png``) and the first variation's card with its score
(``studio-score.png``) as PNG files, reduced to a palette so each stays well under 300 KB.

Usage: python docs/screenshot.py [--checkpoints checkpoints] [--out docs]
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
WIDTH = 1280


def save(driver, path: Path, max_bytes: int = 300_000, element=None) -> None:
    """The window (or one element of it) as a palette PNG, scaled down until it is under
    ``max_bytes``."""
    raw = path.with_suffix(".raw.png")
    if element is not None:
        element.screenshot(str(raw))
    else:
        driver.save_screenshot(str(raw))
    image = Image.open(raw).convert("RGB")
    raw.unlink()
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
    args = parser.parse_args()
    from melodygen.studio import discover_models

    if not discover_models(args.checkpoints):
        sys.exit(f"no model in {args.checkpoints}: train or copy one there first")

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    log = Path(tempfile.mkdtemp()) / "streamlit.log"
    with running_app(args.checkpoints, log) as url, chromium(WIDTH, 1000) as driver:
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
        save(driver, args.out / "studio-generate.png")
        # The score view: the first variation's card (piano roll, score, player, downloads).
        card = driver.find_element(  # the nearest block around a player holding a score
            By.XPATH,
            "(//audio)[1]/ancestor::div[.//img[starts-with(@src, 'data:image/svg+xml')]][1]",
        )
        driver.execute_script("arguments[0].scrollIntoView()", card)
        time.sleep(1)
        save(driver, args.out / "studio-score.png", element=card)


if __name__ == "__main__":
    main()
