"""Speed of the ABC Transformer (``abc_transformer``): writing tunes after load, cached and
uncached, and training throughput.

The issue's goal: 8 tunes of 16 bars in at most 1.5 s on the 2-core CPU after load, with
the uncached decoder's time beside it, and training throughput in tokens per second.

- ``generate``: ``TransformerGenerator.generate`` for 8 jigs of 16 bars (6/8, D major),
  the trained model's own choice of when to end, median of ``--repeats`` seeds after a
  warm-up (which compiles the step), with bar checking (the default) and without;
- ``uncached``: what the same tokens would cost without the key/value cache, when every
  token re-runs the whole decoder over the prefix: one full forward pass of the network
  over 8 rows at the written tunes' longest length (the pass a fixed-shape uncached
  decoder makes for every token), times that many tokens;
- ``training``: ``train_on_batch`` on the dataset's own training batches (32 tunes),
  median step time and the real (unpadded) target tokens per second.

Usage: python benchmarks/abc_transformer_speed.py [--checkpoint checkpoints/folk_abc_transformer]
       [--data data/folk_abc_transformer] [--repeats 5] [--train-steps 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from melodygen.core.checkpoint import load_model  # noqa: E402
from melodygen.core.family import open_dataset  # noqa: E402
from melodygen.core.generation import GenerationRequest, load_generator  # noqa: E402

BARS = 16


def request(seed: int, check_bars: bool) -> GenerationRequest:
    return GenerationRequest(
        length_steps=BARS * 12,
        time_signature="6/8",
        key=2,
        rhythm="jig",
        num_outputs=8,
        seed=seed,
        check_bars=check_bars,
    )


def generation(checkpoint: Path, repeats: int) -> dict:
    generator = load_generator(checkpoint, device="cpu")
    generator.generate(request(0, True))  # warm-up: traces and compiles the step
    generator.generate(request(0, False))
    figures = {}
    for check in (True, False):
        times, tokens = [], []
        for seed in range(1, repeats + 1):
            started = time.perf_counter()
            result = generator.generate(request(seed, check))
            times.append(time.perf_counter() - started)
            tokens.append(
                max(len(generator.tokenizer.encode(body(m.text))) for m in result.melodies)
            )
        figures[check] = (statistics.median(times), int(statistics.median(tokens)))
    return figures


def body(text: str | None) -> str:
    """The ABC after the K: line."""
    lines = (text or "").split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith("K:")]
    return "\n".join(lines[starts[0] + 1 :]) if starts else ""


def uncached(checkpoint: Path, length: int, repeats: int) -> float:
    """Seconds for one full forward pass over 8 rows of ``length`` tokens (compiled once
    for that shape, as a fixed-shape uncached decoder would be)."""
    from melodygen.families.abc_transformer.configs import META_SLOTS

    model, _ = load_model(checkpoint)
    meta = np.full((8, META_SLOTS), 4, "int32")
    tokens = np.full((8, length), 4, "int32")
    model.predict_on_batch([meta, tokens])  # compile
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict_on_batch([meta, tokens])
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def training(checkpoint: Path, data: Path, steps: int) -> tuple[float, float]:
    """(median seconds a training step, target tokens a second) on the dataset's batches."""
    family, dataset = open_dataset(data)
    model, info = load_model(checkpoint)
    family.compile(model, info)
    batches = family.training_batches(dataset.load("train"), info, seed=0)
    times, tokens = [], []
    for index in range(steps + 2):
        inputs, targets, _ = next(batches)
        started = time.perf_counter()
        model.train_on_batch(inputs, targets)
        if index >= 2:  # the first calls trace and compile
            times.append(time.perf_counter() - started)
            tokens.append(int(np.count_nonzero(np.asarray(targets))))
    return statistics.median(times), sum(tokens) / sum(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("checkpoints/folk_abc_transformer"))
    parser.add_argument("--data", type=Path, default=Path("data/folk_abc_transformer"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=20)
    args = parser.parse_args()
    started = time.perf_counter()
    load_generator(args.checkpoint, device="cpu")
    print(f"load: {time.perf_counter() - started:.2f} s")
    figures = generation(args.checkpoint, args.repeats)
    for check, (seconds, tokens) in figures.items():
        print(
            f"8 jigs of {BARS} bars, {'bars checked' if check else 'raw samples '}: median "
            f"{seconds:.3f} s (longest tune {tokens} tokens; goal 1.5 s)"
        )
    length = figures[False][1]
    full = uncached(args.checkpoint, length, args.repeats)
    print(
        f"uncached: one full pass over 8 x {length} tokens {full * 1000:.1f} ms; "
        f"{length} of them {full * length:.2f} s"
    )
    if args.data.exists():
        step, rate = training(args.checkpoint, args.data, args.train_steps)
        print(f"training: {step:.3f} s a step of 32 tunes, {rate:,.0f} target tokens a second")


if __name__ == "__main__":
    main()
