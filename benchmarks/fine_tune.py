"""Fine-tune a shipped model on a style it never saw, for a few minutes, and measure it.

The Train page's question, answered on the command line through the same commands its
jobs run (``melodygen dataset build``, ``train --init-from ... --time-limit``,
``evaluate --input ... --held-out``): does a short fine-tune on about 100 melodies of a new
style lower the held-out bits per note on that style below the base model's, and by how
much? Held-out tunes are the files ``--eval-ratio`` holds out by song hash, so neither the
base nor the fine-tuned model trained on them.

    python benchmarks/fine_tune.py --base checkpoints/pop_basic_rnn \
        --input '../shared/data/nottingham/melody/jigs*.mid' --files 140 --minutes 5

Each learning rate in ``--learning-rates`` is one fine-tune of ``--minutes`` wall time.
Results are printed as a Markdown table and written as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import tempfile
import time
from pathlib import Path

from melodygen.cli import main as melodygen


def run(*argv: str) -> None:
    """One ``melodygen`` command; a failure ends the benchmark with its exit code."""
    print("$ melodygen", " ".join(argv), flush=True)
    code = melodygen(list(argv))
    if code != 0:
        raise SystemExit(f"melodygen {argv[0]} failed with exit code {code}")


def bits_per_note(checkpoints: list[str], files: Path, ratio: float, out: Path) -> dict:
    """Pooled held-out bits per note of each checkpoint, keyed by the path given."""
    run("evaluate", "--checkpoint", *checkpoints, "--input", str(files),
        "--held-out", str(ratio), "--json", str(out))  # fmt: skip
    rows = json.loads(out.read_text()).get("ranking") or []
    return {row["model"]: row for row in rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="checkpoints/pop_basic_rnn")
    parser.add_argument(
        "--input",
        default="../shared/data/nottingham/melody/jigs*.mid",
        help="a glob of music files in the new style",
    )
    parser.add_argument("--files", type=int, default=140, help="use the first N (sorted)")
    parser.add_argument("--eval-ratio", type=float, default=0.3)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[0.001])
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    chosen = sorted(glob.glob(args.input))[: args.files]
    if not chosen:
        print(f"error: no files match {args.input}", file=sys.stderr)
        return 2
    config = json.loads((Path(args.base) / "melodygen.json").read_text())["config"]
    results: dict = {
        "base": args.base,
        "input": args.input,
        "files": len(chosen),
        "eval_ratio": args.eval_ratio,
        "minutes": args.minutes,
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="melodygen-finetune-") as temporary:
        work = Path(temporary)
        files = work / "files"
        files.mkdir()
        for path in chosen:
            (files / Path(path).name).symlink_to(Path(path).resolve())
        data = work / "data"
        run("dataset", "build", "--input", str(files), "--config", config,
            "--output", str(data), "--eval-ratio", str(args.eval_ratio), "--quiet")  # fmt: skip
        summary = json.loads((data / "dataset.json").read_text())["summary"]
        results["dataset"] = {
            key: summary.get(key) for key in ("songs", "melodies", "steps", "files_read")
        }
        before = bits_per_note([args.base], files, args.eval_ratio, work / "base.json")
        base_row = before[args.base]
        results["held_out"] = {"tunes": base_row.get("tunes"), "notes": base_row.get("notes")}
        results["base_bits_per_note"] = base_row["bits_per_note_pooled"]
        for rate in args.learning_rates:
            run_dir = work / f"run-{rate:g}"
            started = time.perf_counter()
            run("train", "--data", str(data), "--run-dir", str(run_dir),
                "--init-from", args.base, "--hparams", f"learning_rate={rate}",
                "--steps", "1000000", "--eval-every", str(args.eval_every),
                "--early-stopping", "1000", "--time-limit", f"{args.minutes:g}",
                "--quiet")  # fmt: skip
            seconds = time.perf_counter() - started
            model = run_dir / "model"
            state = json.loads((model / "melodygen.json").read_text())["training"]
            after = bits_per_note([str(model)], files, args.eval_ratio, work / "after.json")
            bits = after[str(model)]["bits_per_note_pooled"]
            results["runs"].append(
                {
                    "learning_rate": rate,
                    "steps": state.get("step"),
                    "wall_seconds": round(seconds, 1),
                    "bits_per_note": bits,
                    "lower_by": results["base_bits_per_note"] - bits,
                }
            )
    print()
    held_out = results["held_out"]
    print(f"base {args.base}: {results['base_bits_per_note']:.3f} bits per note on "
          f"{held_out['tunes']} held-out tunes ({held_out['notes']} notes)")  # fmt: skip
    print("| learning rate | steps | wall s | bits per note | lower by |")
    print("|---|---|---|---|---|")
    for row in results["runs"]:
        print(f"| {row['learning_rate']:g} | {row['steps']} | {row['wall_seconds']:.0f} | "
              f"{row['bits_per_note']:.3f} | {row['lower_by']:.3f} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
