"""Click to sound in the studio: what the Generate page does after Generate is pressed.

The page runs exactly these library calls (``melodygen.studio``): check the settings,
generate with the shared model, then render each variation (piano-roll PNG, MIDI, and
WAV through FluidSynth), showing each one as soon as it is ready. Timed here for 8
variations of 8 bars, after the model and synthesizer are loaded and the step is
compiled (the page does both once per process), median of N runs with a new seed each:
the first variation ready, all 8 ready (the total), and the "download all" zip, which
the page makes only when its button is pressed.

With --browser, the same is also timed end to end as a musician meets it: the app runs
on localhost, headless Chromium (Debian's, as in tests/test_browser.py) presses Generate
with 8 variations, and the clock stops when the first player, then all 8 players, have
loaded their audio (and all 8 piano rolls are shown).

With --sessions N, N headless Chromium windows (N browser sessions of one server) press
Generate together, --repeats times after a warm-up round, each with the page's default
4 variations; the clock stops, for each session, when its first new player has loaded
its audio (timed by the page itself: a MutationObserver installed with the click, looked
at every 0.25 s). The windows open one after the other, each once the model is loaded.
The median over sessions and rounds is the figure (a session with no new audio within
120 s counts as inf); --server-log PATH keeps the server's log. Before and after, one
session's generation is timed alone (``machine_speed``): this virtual machine's speed
swings by 2-3 times within the hour, and the sessions' figures with it.

With --threads N, the same N sessions run as N threads of one process without browsers,
as the server runs them (the model in a model host process): all press Generate at once
(4 variations of 8 bars each, new seeds every round) and render through one shared
RenderPool, later variations waiting for the generations; per session, the seconds
from the press to its generation done and to its first variation ready (sound and
pictures).

With --cold-start, only the server's start is timed, N times (a new server each time):
``streamlit run app.py`` with the shipped config and checkpoints is started, headless
Chromium opens the page as soon as the server answers, and the clock (from starting the
server) stops at the first paint (the Generate page's title and its Generate button
drawn) and when it is ready to generate (the model loaded in the background and its
step compiled: the "Loading the model" message gone, the page drawn again). With
--cold-start --sessions N, N windows open the page together, each timed.

Without --checkpoint, the first shipped model in checkpoints/ is used, else a full-size
attention_rnn with random weights (speed does not depend on what the network learned,
but the number of notes does: random weights play about 120 notes in 8 bars).
Usage: python benchmarks/app_speed.py [--checkpoint DIR] [--repeats 7] [--instrument Piano]
       [--browser]
       python benchmarks/app_speed.py --cold-start [--repeats 3] [--sessions N]
       python benchmarks/app_speed.py --sessions 4 [--repeats 5]
       python benchmarks/app_speed.py --threads 4 [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from melodygen import studio  # noqa: E402
from melodygen.core.checkpoint import build_network, save_model
from melodygen.families.melody_rnn.model_file import ModelInfo  # noqa: E402
from melodygen.io.primer import parse_primer  # noqa: E402
from melodygen.model_host import ModelHost  # noqa: E402

BUDGET = 2.0  # seconds, from the studio issue
REPO = Path(__file__).resolve().parent.parent


def pick_checkpoint(given: Path | None, scratch: Path) -> tuple[Path, str]:
    if given is not None:
        return given, given.name
    shipped = studio.discover_models()
    if shipped:
        return shipped[0].path, shipped[0].name
    info = ModelInfo.for_config("attention_rnn")
    path = save_model(scratch / "attention_rnn", build_network(info), info)
    return path, "attention_rnn (full size, random weights)"


def click(model: studio.SharedModel, synth, seed: int, instrument: str) -> dict[str, float]:
    """One press of Generate: seconds per stage and in total."""
    started = time.perf_counter()
    settings = studio.StudioSettings(bars=8, variations=8, seed=seed)
    request = settings.to_request(parse_primer(""))
    result = studio.generate(model, request)
    generated = time.perf_counter()
    first = None
    for _ in result.iter_files(instrument, synth):
        first = first or time.perf_counter()
    rendered = time.perf_counter()
    result.zip(instrument, synth)
    zipped = time.perf_counter()
    return {
        "generate": generated - started,
        "first variation ready (from the press)": first - started,
        "render all 8 (PNG + MIDI + WAV)": rendered - generated,
        "total: all 8 ready": rendered - started,
        "zip, when Download all is pressed": zipped - rendered,
    }


def parts(model: studio.SharedModel, synth, instrument: str, repeats: int) -> dict[str, float]:
    """The render stage's parts, each kind for all 8 variations at once."""
    from melodygen.render import figure_png, piano_roll, program_number, wav_bytes

    settings = studio.StudioSettings(bars=8, variations=8, seed=99)
    melodies = studio.generate(model, settings.to_request(parse_primer(""))).melodies
    program = program_number(instrument)
    jobs = {
        "8 piano rolls (PNG)": lambda: [
            figure_png(piano_roll(m, title="Variation"), dpi=studio.PNG_DPI) for m in melodies
        ],
        "8 MIDI files": lambda: [studio.midi_bytes(m, program) for m in melodies],
    }
    if synth is not None:
        jobs["8 WAV files"] = lambda: [
            wav_bytes(synth.render(m, program=program)) for m in melodies
        ]
    medians = {}
    for name, job in jobs.items():
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            job()
            times.append(time.perf_counter() - started)
        medians[name] = statistics.median(times)
    medians["notes per melody (mean)"] = statistics.mean(len(m.pitches()) for m in melodies)
    return medians


def in_browser(checkpoint: Path, repeats: int) -> list[tuple[float, float]]:
    """Seconds from pressing Generate to the first, and to all 8, players loaded."""
    sys.path.insert(0, str(REPO / "tests"))
    from browser_helpers import chromium, running_app
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    # Media the page shows now: loaded piano rolls and players that have read their audio.
    # New results have new URLs, so only new ones count.
    loaded = """
        const images = [...document.querySelectorAll("[data-testid='stImage'] img")]
            .filter(i => i.complete && i.naturalWidth > 0).map(i => i.src);
        const players = [...document.querySelectorAll('audio')]
            .filter(a => a.readyState >= 1).map(a => a.src);
        return [images, players];
    """
    with tempfile.TemporaryDirectory() as folder:
        models = Path(folder) / "models"
        models.mkdir()
        (models / checkpoint.name).symlink_to(checkpoint.resolve())
        with running_app(models, Path(folder) / "streamlit.log") as url, chromium() as driver:
            driver.get(url)
            wait = WebDriverWait(driver, 120, poll_frequency=0.02)
            submit = (By.CSS_SELECTOR, "[data-testid='stFormSubmitButton'] button")
            wait.until(ready.element_to_be_clickable(submit))
            slider = "input[type='range'][aria-label='Variations']"
            found = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, slider)))
            driver.execute_script("arguments[0].focus()", found)
            ActionChains(driver).send_keys(Keys.END).perform()  # 8 variations
            wait.until(
                lambda d: d.find_element(By.CSS_SELECTOR, slider).get_attribute("value") == "8"
            )
            times: list[tuple[float, float]] = []
            seen: set[str] = set()
            for _ in range(repeats + 1):  # the first run compiles the step for 8 rows
                started = time.perf_counter()
                driver.find_element(*submit).click()
                first = None
                while time.perf_counter() - started < 120:
                    images, players = driver.execute_script(loaded)
                    new_images, new_players = set(images) - seen, set(players) - seen
                    if new_players and first is None:
                        first = time.perf_counter() - started
                    if len(new_images) >= 8 and len(new_players) >= 8:
                        break
                    time.sleep(0.02)
                else:
                    raise TimeoutError("the results did not show within 120 s")
                seen |= new_images | new_players
                times.append((first, time.perf_counter() - started))
    return times[1:]


def cold_start(checkpoint: Path | None, repeats: int, windows: int = 1) -> list[dict[str, float]]:
    """Seconds from starting the server to its answer, the first paint and ready, per start
    and window.

    The page opens on the first shipped model, or on ``checkpoint`` alone when given. With
    ``windows`` above 1, that many Chromium windows open the page together as soon as the
    server answers (people arriving at a server just started), each timed on its own.
    """
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import ExitStack

    sys.path.insert(0, str(REPO / "tests"))
    from browser_helpers import chromium, running_app

    # One cheap look per poll (textContent forces no layout, so polling does not slow the
    # page down): the title, the Generate button, the loading message, a run in progress.
    probe = """
        const h1 = document.querySelector('h1');
        const buttons = [...document.querySelectorAll('button')];
        return [
            h1 ? h1.textContent : '',
            buttons.some(b => b.textContent.trim().endsWith('Generate')),
            document.body.textContent.includes('Loading the model in the background'),
            !!document.querySelector("[data-testid='stStatusWidget']"),
        ];
    """

    def watch(driver, url: str, started: float, answered: float) -> dict[str, float]:
        driver.get(url)
        titled_at = painted = None
        while time.perf_counter() - started < 300:
            now = time.perf_counter() - started
            title, button, loading, busy = driver.execute_script(probe)
            if "Generate" in title and titled_at is None:
                titled_at = now
            if "Generate" in title and button and painted is None:
                painted = now
            if painted is not None and not loading and not busy:
                return {
                    "server answers": answered,
                    "title drawn": titled_at,
                    "first paint: page with its Generate button": painted,
                    "ready to generate": now,
                }
            time.sleep(0.1 * windows)
        raise TimeoutError("the studio was not ready within 300 s")

    starts = []
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        drivers = [stack.enter_context(chromium()) for _ in range(windows)]
        models = studio.checkpoints_dir()
        if checkpoint is not None:
            models = Path(folder) / "models"
            models.mkdir()
            (models / checkpoint.name).symlink_to(checkpoint.resolve())
        for _ in range(repeats):
            started = time.perf_counter()
            log = Path(folder) / "streamlit.log"
            with running_app(models, log, timeout=300) as url, ThreadPoolExecutor(windows) as pool:
                answered = time.perf_counter() - started
                timed = [pool.submit(watch, driver, url, started, answered) for driver in drivers]
                found = [future.result() for future in timed]
            loaded = re.findall(r"loaded model \S+ from .* in ([0-9.]+) s", log.read_text())
            for figures in found:
                if loaded:  # the background load itself, as the server logs it
                    figures["model load on its thread (server log)"] = float(loaded[0])
            starts += found
            for driver in drivers:
                driver.get("about:blank")
    return starts


# Installed in the page as Generate is pressed: the page itself notes when the first new
# player has read its audio (readyState >= 1 or its loadedmetadata event), so the harness
# only looks every 0.25 s. Asking the page every 20 ms through chromedriver, as before, cost
# a third of the two cores (harness, chromedriver and the four renderers answering).
WATCH_FIRST_AUDIO = """
// Every player already on the page as the button is clicked counts as old, besides those
// the harness listed before the sessions' barrier (one could get its src in between).
const seen = new Set([...arguments[0],
                      ...[...document.querySelectorAll('audio')].map(a => a.src)]);
const started = performance.now();
const state = window.melodygenFirstAudio = {seconds: null};
const check = () => {
    for (const player of document.querySelectorAll('audio')) {
        if (!player.src || seen.has(player.src)) continue;
        if (player.readyState >= 1) {
            if (state.seconds === null) state.seconds = (performance.now() - started) / 1000;
        } else if (!player.melodygenWatched) {
            player.melodygenWatched = true;
            player.addEventListener('loadedmetadata', check);
        }
    }
    if (state.seconds !== null) observer.disconnect();
};
const observer = new MutationObserver(check);
observer.observe(document.body, {childList: true, subtree: true, attributes: true,
                                 attributeFilter: ['src']});
// A click by script, not at the button's place on the screen: the page may still be
// moving (results drawn late), and a click there could press another button.
arguments[1].click();
"""


def _first_audio(driver, button, seen: set, barrier, limit: float = 120) -> float:
    """Press ``button`` when every session is ready; seconds until a new player has audio
    (``inf`` when none has within ``limit`` seconds), as the page measured it."""
    barrier.wait()
    started = time.perf_counter()
    driver.execute_script(WATCH_FIRST_AUDIO, sorted(seen), button)
    while time.perf_counter() - started < limit:
        seconds = driver.execute_script("return window.melodygenFirstAudio.seconds")
        if seconds is not None:
            return float(seconds)
        time.sleep(0.25)
    return float("inf")


def concurrent_sessions(
    checkpoint: Path, sessions: int, rounds: int, keep_log: Path | None = None
) -> tuple[list[list[float]], list[str]]:
    """Seconds from pressing Generate to the first player loaded, per round and session.

    ``sessions`` headless Chromium windows (separate browser sessions of one server)
    open the Generate page, then press Generate together (a barrier releases the clicks),
    with the page's default 4 variations. The first round warms up (the step compiled
    for that batch) and is left out. Also returns the server's log lines of generating
    and rendering, to see where the time went (the whole log is copied to ``keep_log``).
    A session with no new audio within 120 s counts as ``inf``.
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import ExitStack

    sys.path.insert(0, str(REPO / "tests"))
    from browser_helpers import chromium, running_app, settled, waiter
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready

    submit = (By.CSS_SELECTOR, "[data-testid='stFormSubmitButton'] button")
    # Every player on the page before the press, loaded or not: one of the last round still
    # loading its audio would otherwise count as this round's first.
    players = "return [...document.querySelectorAll('audio')].map(a => a.src);"
    times: list[list[float]] = []
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        models = Path(folder) / "models"
        models.mkdir()
        (models / checkpoint.name).symlink_to(checkpoint.resolve())
        log = Path(folder) / "streamlit.log"
        url = stack.enter_context(running_app(models, log, 300))
        drivers = [stack.enter_context(chromium(1280, 1400)) for _ in range(sessions)]
        for driver in drivers:  # one at a time: the model is loaded with the first
            driver.get(url)
            waiter(driver, 300).until(ready.element_to_be_clickable(submit))
            waiter(driver, 300).until(
                lambda d: "Loading the model" not in d.find_element(By.TAG_NAME, "body").text
            )
            settled(driver)
        with ThreadPoolExecutor(sessions) as pool:
            variations = studio.StudioSettings().variations  # the page's default
            for round_number in range(rounds + 1):
                for driver in drivers:
                    settled(driver)
                    if round_number:  # every player of the last round drawn, or a late one
                        # would count as this round's first (0.16-0.30 s, seen twice in 60)
                        waiter(driver, 60).until(
                            lambda d: len(d.execute_script(players)) >= variations
                        )
                barrier = threading.Barrier(sessions)
                futures = [
                    pool.submit(
                        _first_audio,
                        driver,
                        driver.find_element(*submit),
                        set(driver.execute_script(players)),
                        barrier,
                    )
                    for driver in drivers
                ]
                firsts = [future.result() for future in futures]
                shown = ", ".join(f"{value:.2f}" for value in firsts)
                print(f"round {round_number}{'' if round_number else ' (warm-up)'}: {shown} s")
                if round_number:
                    times.append(firsts)
        if keep_log is not None:
            keep_log.write_text(log.read_text())
        lines = [
            line
            for line in log.read_text().splitlines()
            if "generated" in line or "rendered" in line
        ]
    return times, lines


def _press(seed: int):
    """The request of one session's press: the page's 4 variations of 8 bars, no primer."""
    return studio.StudioSettings(bars=8, variations=4, seed=seed).to_request(parse_primer(""))


def machine_speed(checkpoint: Path, repeats: int = 10) -> float:
    """Median seconds of one session's generation alone (4 variations of 8 bars, in a model
    host, nothing else running): how fast this machine runs the model right now.

    The same code on the same idle machine has taken 0.15 s at one time and 0.3-0.7 s
    for the next hour (a pure-Python loop ran at the same speed throughout: what slows
    comes from outside this virtual machine), and the sessions' figures swing with it,
    so each sessions run is bracketed by this probe.
    """
    host = ModelHost()
    try:
        model = studio.SharedModel(checkpoint, name=checkpoint.name, host=host)
        model.warm_up(4)
        seconds = []
        for seed in range(repeats):
            request = _press(seed)
            started = time.perf_counter()
            model.generate(request)
            seconds.append(time.perf_counter() - started)
    finally:
        host.close()
    return statistics.median(seconds)


def threaded_sessions(checkpoint: Path, sessions: int, rounds: int, instrument: str) -> dict:
    """``sessions`` threads press Generate together, ``rounds`` times after a warm-up round:
    seconds from the press to each one's generation done and first variation ready. The
    model runs in a model host process and the renders wait for generations, as in the
    studio's server."""
    host = ModelHost()
    model = studio.SharedModel(checkpoint, name=checkpoint.name, host=host)
    model.warm_up(4)
    synth, _ = studio.load_synth()
    pool = studio.RenderPool()
    for future in pool.start(synth):
        future.result()
    times: dict[str, list[float]] = {"generated": [], "first variation ready": []}

    def press(seed: int, barrier: threading.Barrier, got: dict[int, tuple[float, float]]) -> None:
        request = _press(seed)
        barrier.wait()
        started = time.perf_counter()
        result = studio.generate(model, request, pool)
        generated = time.perf_counter() - started
        next(iter(studio.iter_variations(result, instrument, synth, pool=pool)))
        got[seed] = (generated, time.perf_counter() - started)

    try:
        for round_number in range(rounds + 1):
            barrier = threading.Barrier(sessions)
            got: dict[int, tuple[float, float]] = {}
            seeds = [1000 * round_number + index for index in range(sessions)]
            threads = [threading.Thread(target=press, args=(s, barrier, got)) for s in seeds]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if round_number:  # the first round warms up fonts and caches
                times["generated"] += [got[seed][0] for seed in seeds]
                times["first variation ready"] += [got[seed][1] for seed in seeds]
    finally:
        pool.close()
        host.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--instrument", default="Piano")
    parser.add_argument("--browser", action="store_true", help="also time it in Chromium")
    parser.add_argument(
        "--cold-start", action="store_true", help="time the server's start to first paint and ready"
    )
    parser.add_argument(
        "--sessions",
        type=int,
        default=0,
        metavar="N",
        help="N browser sessions press Generate together (--repeats rounds); first audio each",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        metavar="N",
        help="N sessions in threads of one process (no browsers) press Generate together",
    )
    parser.add_argument(
        "--server-log", type=Path, default=None, help="with --sessions: keep the server's log here"
    )
    args = parser.parse_args()
    if args.cold_start:
        starts = cold_start(args.checkpoint, args.repeats, max(1, args.sessions))
        print(
            f"cold start, {args.repeats} new servers, {max(1, args.sessions)} window(s) each; "
            f"CPU cores: {os.cpu_count()}; load average: {os.getloadavg()[0]:.1f}"
        )
        print("| from starting the server | median s | best s | worst s |")
        print("|---|---|---|---|")
        for stage in starts[0]:
            values = [start[stage] for start in starts if stage in start]
            print(
                f"| {stage} | {statistics.median(values):.1f} | {min(values):.1f} "
                f"| {max(values):.1f} |"
            )
        return

    if args.threads:
        with tempfile.TemporaryDirectory() as scratch:
            checkpoint, name = pick_checkpoint(args.checkpoint, Path(scratch))
            times = threaded_sessions(checkpoint, args.threads, args.repeats, args.instrument)
        print(
            f"{args.threads} sessions in threads x {args.repeats} rounds, {name}, 4 variations "
            f"each; CPU cores: {os.cpu_count()}; load average: {os.getloadavg()[0]:.1f}"
        )
        for stage, values in times.items():
            print(
                f"{stage} (from the press): median {statistics.median(values):.2f} s, "
                f"best {min(values):.2f}, worst {max(values):.2f}"
            )
        return
    if args.sessions:
        with tempfile.TemporaryDirectory() as scratch:
            checkpoint, name = pick_checkpoint(args.checkpoint, Path(scratch))
            before = machine_speed(checkpoint)
            rounds, lines = concurrent_sessions(
                checkpoint, args.sessions, args.repeats, args.server_log
            )
            after = machine_speed(checkpoint)
        print("\n".join(lines[-2 * args.sessions :]))  # the last round, as the server saw it
        firsts = [value for round_times in rounds for value in round_times]
        print(
            f"{args.sessions} sessions x {len(rounds)} rounds, {name}, 4 variations each; "
            f"CPU cores: {os.cpu_count()}; load average: {os.getloadavg()[0]:.1f}"
        )
        print(
            f"first audio from pressing Generate: median {statistics.median(firsts):.2f} s, "
            f"best {min(firsts):.2f}, worst {max(firsts):.2f}"
        )
        print(
            f"machine speed, one session's generation alone: {before:.2f} s before, "
            f"{after:.2f} s after"
        )
        return
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint, name = pick_checkpoint(args.checkpoint, Path(scratch))
        started = time.perf_counter()
        model = studio.SharedModel(checkpoint, name=checkpoint.name)
        model.warm_up(8)
        synth, reason = studio.load_synth()
        load = time.perf_counter() - started
        if synth is None:
            print(f"audio unavailable, timing without it: {reason}")
        click(model, synth, seed=0, instrument=args.instrument)  # warm-up: fonts, caches
        runs = [click(model, synth, seed, args.instrument) for seed in range(1, args.repeats + 1)]
        separately = parts(model, synth, args.instrument, max(3, args.repeats // 2))
        del model  # the browser run loads its own, in the app's process
        browser = in_browser(checkpoint, args.repeats) if args.browser else None

    print(f"model: {name}; instrument: {args.instrument}; {args.repeats} runs")
    print(f"CPU cores: {os.cpu_count()}; load average: {os.getloadavg()[0]:.1f}")
    print(f"first load (model, compiled step, synthesizer): {load:.2f} s")
    print()
    print("| stage | median s | best s | worst s |")
    print("|---|---|---|---|")
    for stage in runs[0]:
        values = [run[stage] for run in runs]
        print(
            f"| {stage} | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} |"
        )
    print()
    for part, value in separately.items():
        print(f"{part}: {value:.3f}" + ("" if part.startswith("notes") else " s (median, alone)"))
    if browser:
        print("\nin Chromium, from pressing Generate (median, best, worst s):")
        for label, values in (
            ("first player loaded", [first for first, _ in browser]),
            ("all 8 players loaded and 8 rolls shown", [every for _, every in browser]),
        ):
            print(
                f"  {label}: {statistics.median(values):.2f}, {min(values):.2f}, {max(values):.2f}"
            )
    total = statistics.median(run["total: all 8 ready"] for run in runs)
    verdict = "within" if total <= BUDGET else "OVER"
    print(f"\nclick to sound, 8 variations x 8 bars: median {total:.2f} s")
    print(f"({verdict} the {BUDGET} s budget)")


if __name__ == "__main__":
    main()
