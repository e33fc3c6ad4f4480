"""Speed of the note VAE (``note_vae``): variations of a melody and blends, after load.

The issue's goals, on the 2-core CPU after the model is loaded: encode and decode 8
variations of a 4-bar melody in at most 0.3 s; an 8-step blend of two melodies in at most
0.5 s. Both are timed as ``melodygen generate`` and the studio's "Variations and blends"
page ask for them, through ``GenerationRequest`` (``variations_of`` / ``blend``): read the
melody's notes, encode its first window, draw the codes, decode every melody one note at
a time (all rows of one batch together) and make the NoteSequences. The melodies are 4
bars of 4/4 at 120 BPM written in code (eighths and quarters on a D major scale, 24 notes
each), median of ``--repeats`` seeds after a warm-up that traces and compiles the steps.

Usage: python benchmarks/note_vae_speed.py [--checkpoint checkpoints/pop_note_vae]
       [--repeats 9]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from melodygen.core.generation import GenerationRequest, load_generator  # noqa: E402
from melodygen.io.music import note_seq  # noqa: E402

SCALE = [62, 64, 66, 67, 69, 71, 73, 74]
VARIATIONS_GOAL = 0.3
BLEND_GOAL = 0.5


def four_bars(shift: int):
    """A 4-bar melody (NoteSequence, 120 BPM, 4/4): eighths and quarters, 24 notes."""
    sequence = note_seq.NoteSequence(ticks_per_quarter=220)
    sequence.tempos.add(qpm=120.0)
    sequence.time_signatures.add(numerator=4, denominator=4)
    time_s, index = 0.0, 0
    while time_s < 8.0 - 1e-9:
        length = 0.25 if index % 3 else 0.5  # seconds: an eighth, an eighth, a quarter
        pitch = SCALE[(index * 3 + shift) % len(SCALE)]
        sequence.notes.add(
            pitch=pitch, velocity=70 + 10 * (index % 3), start_time=time_s, end_time=time_s + length
        )
        time_s += length
        index += 1
    sequence.total_time = time_s
    return sequence


def timed(generator, make_request, repeats: int) -> tuple[float, list[float]]:
    generator.generate(make_request(0))  # warm-up: traces and compiles the steps
    times = []
    for seed in range(1, repeats + 1):
        started = time.perf_counter()
        generator.generate(make_request(seed))
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("checkpoints/pop_note_vae"))
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    started = time.perf_counter()
    generator = load_generator(args.checkpoint, device="cpu")
    print(f"{args.checkpoint}: loaded in {time.perf_counter() - started:.2f} s")
    first, second = four_bars(0), four_bars(3)
    print(f"melodies: 4 bars, {len(first.notes)} notes each")
    median, times = timed(
        generator,
        lambda seed: GenerationRequest(variations_of=first, distance=0.3, num_outputs=8, seed=seed),
        args.repeats,
    )
    print(
        f"8 variations of a 4-bar melody: median {median:.3f} s (best {min(times):.3f}, "
        f"worst {max(times):.3f}; goal {VARIATIONS_GOAL} s: "
        f"{'met' if median <= VARIATIONS_GOAL else 'NOT met'})"
    )
    median, times = timed(
        generator,
        lambda seed: GenerationRequest(blend=(first, second), blend_steps=8, seed=seed),
        args.repeats,
    )
    print(
        f"an 8-step blend of two 4-bar melodies: median {median:.3f} s (best {min(times):.3f}, "
        f"worst {max(times):.3f}; goal {BLEND_GOAL} s: "
        f"{'met' if median <= BLEND_GOAL else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
