"""Generation speed after the model is loaded, and checkpoint load time.

Measures, for a full-size network ([128, 128], Magenta's defaults):
- loading a checkpoint (fresh `MelodyGenerator`, weights from disk), and
  loading plus the first generation, which traces and compiles the step;
- 8 variations of 128 steps, sampled (state carried between steps, one batch);
- the same with beam search (beam_size 4, branch_factor 2);
- the simple approach for comparison: re-running the whole network over the
  sequence so far for every new step (still batched over the 8 variations).

Weights are random: speed does not depend on what the network learned.
Usage: python benchmarks/generate_speed.py [--config attention_rnn] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from melodygen.core.checkpoint import build_network, save_model
from melodygen.core.generation import GenerationRequest
from melodygen.families.melody_rnn.generate import MelodyGenerator  # noqa: E402
from melodygen.families.melody_rnn.model_file import ModelInfo  # noqa: E402


def full_size_checkpoint(folder: Path, config_name: str) -> Path:
    info = ModelInfo.for_config(config_name)
    return save_model(folder / config_name, build_network(info), info)


def rerun_whole_sequence(generator: MelodyGenerator, rows: int, steps: int, seed: int) -> None:
    """The simple approach: every step feeds the whole melody so far through the network."""
    rng = np.random.default_rng(seed)
    histories = np.full((rows, steps + 1), -2, dtype=np.int64)
    for length in range(1, steps + 1):
        inputs = np.stack([generator.encoding.inputs(row[:length]) for row in histories])
        logits = np.asarray(generator.model(inputs, training=False))[:, -1]
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        labels = [rng.choice(len(p), p=p) for p in probs]
        histories[:, length] = [
            generator.encoding.decode_label(label, row[:length])
            for label, row in zip(labels, histories, strict=True)
        ]


def timed(function, repeats: int) -> float:
    function()  # warm-up: traces the step function
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="attention_rnn")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-simple", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = full_size_checkpoint(Path(scratch), args.config)
        load_times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            generator = MelodyGenerator(checkpoint)
            load_times.append(time.perf_counter() - started)

        sample = GenerationRequest(length_steps=128, num_outputs=8, seed=1)
        started = time.perf_counter()
        MelodyGenerator(checkpoint).generate(sample)
        first_call = time.perf_counter() - started
        beam = GenerationRequest(
            length_steps=128, num_outputs=8, seed=1, beam_size=4, branch_factor=2
        )
        sampled = timed(lambda: generator.generate(sample), args.repeats)
        beamed = timed(lambda: generator.generate(beam), args.repeats)
        simple = None
        if not args.skip_simple:
            simple = timed(lambda: rerun_whole_sequence(generator, 8, 128, 1), 1)

    print(f"config: {args.config}, layers {list(generator.info.hparams.rnn_layer_sizes)}\n")
    print("| what | median seconds | budget |")
    print("|---|---|---|")
    print(f"| load checkpoint | {statistics.median(load_times):.3f} | 2.0 |")
    print(f"| load + first generation (traces and compiles the step) | {first_call:.3f} | - |")
    print(f"| 8 x 128 steps, sampled | {sampled:.3f} | 0.25 |")
    print(f"| 8 x 128 steps, beam 4, branch 2 | {beamed:.3f} | 1.5 |")
    if simple is not None:
        print(f"| 8 x 128 steps, re-running the whole sequence each step | {simple:.3f} | - |")
        print(f"\nstate-carrying sampler is {simple / sampled:.0f}x faster than re-running")


if __name__ == "__main__":
    main()
