"""Wall time of `melodygen dataset explore` on 1,000 music files (goal: at most 10 s).

Runs the real command in a fresh Python process (start-up, imports, reading every
file in worker processes, melody extraction, the nine figures as PNG + CSV and the
report are all counted) on the 922 Nottingham melody MIDI files plus the first 78
POP909 songs, read where they are (nothing is copied), a few times, and prints the
median, the best, and the exploring time the command itself reports. Usage:

    python benchmarks/explore_speed.py [--repeats 3] [--pop909 78]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def collection(nottingham: Path, pop909: Path, songs: int) -> list[str]:
    """The Nottingham folder and the first ``songs`` POP909 songs' MIDI files."""
    if not nottingham.is_dir() or not pop909.is_dir():
        sys.exit(f"the data is not there: {nottingham}, {pop909} (see shared/data/README.md)")
    pop = sorted(pop909.glob("[0-9][0-9][0-9]/[0-9][0-9][0-9].mid"))[:songs]
    return [str(nottingham), *map(str, pop)]


def time_explore(inputs: list[str], output: Path, workers: int | None) -> tuple[float, str]:
    command = [sys.executable, "-m", "melodygen", "dataset", "explore", "--input", *inputs]
    command += ["--output", str(output), "--quiet"]
    if workers:
        command += ["--workers", str(workers)]
    started = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nottingham", type=Path, default=DATA / "nottingham" / "melody")
    parser.add_argument("--pop909", type=Path, default=DATA / "pop909")
    parser.add_argument("--songs", type=int, default=78, help="POP909 songs added")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="default: all cores")
    args = parser.parse_args()

    inputs = collection(args.nottingham, args.pop909, args.songs)
    times, reported, first = [], [], ""
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            seconds, printed = time_explore(inputs, Path(scratch) / "out", args.workers)
            times.append(seconds)
            first = first or printed.splitlines()[0]
            found = re.search(r" in ([0-9.]+) s", printed)
            reported.append(float(found.group(1)) if found else float("nan"))
            print(f"run {repeat + 1}: {seconds:.2f} s ({printed.splitlines()[0]})", flush=True)
    load = os.getloadavg()[0]
    print()
    print(f"{first}")
    print("| what | median s | best s |")
    print("|---|---|---|")
    print(f"| the command, start to end | {statistics.median(times):.2f} | {min(times):.2f} |")
    print(
        f"| reading and extraction (as reported) | {statistics.median(reported):.2f} | "
        f"{min(reported):.2f} |"
    )
    print(f"\n{os.cpu_count()} cores; 1-minute load average at the end: {load:.1f}")


if __name__ == "__main__":
    main()
