"""Wall time of `melodygen dataset build` for each configuration.

Runs the real command (a fresh Python process, so start-up and imports are
counted) on a folder of MIDI/ABC files, a few times per configuration, and
prints a Markdown table of the median. Usage:

    python benchmarks/dataset_speed.py --input ../shared/data/nottingham/melody
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from melodygen.families.melody_rnn.configs import CONFIGS


def time_build(input_dir: str, config: str, output: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "melodygen",
            "dataset",
            "build",
            "--input",
            input_dir,
            "--config",
            config,
            "--output",
            str(output),
            "--quiet",
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default="../shared/data/nottingham/melody")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for config in args.configs:
            output = Path(scratch) / config
            times = [time_build(args.input, config, output) for _ in range(args.repeats)]
            summary = json.loads((output / "dataset.json").read_text())["summary"]
            rows.append((config, statistics.median(times), min(times), summary))
    print(f"input: {args.input}\n")
    print("| config | median s | best s | files | melodies | steps |")
    print("|---|---|---|---|---|---|")
    for config, median, best, summary in rows:
        print(
            f"| {config} | {median:.2f} | {best:.2f} | {summary['files_read']} | "
            f"{summary['melodies_kept']} | {summary['total_steps']} |"
        )


if __name__ == "__main__":
    main()
