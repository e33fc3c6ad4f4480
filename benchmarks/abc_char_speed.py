"""Generation speed of an ``abc_char`` model after load: 8 tunes of about 600 characters.

The issue's target: 8 tunes of 16 bars (about 600 characters each) in at most 1 s on the
2-core CPU, after the model is loaded. Measured on a seed-sized network (``char_seed``:
512-wide embedding, 3 x 256 LSTM, an 86-character vocabulary: 1,904,214 weights) with
random weights: speed does not depend on what the network learned. A random network ends
a tune (writes ``<end>``) after a few dozen characters, so the benchmark blocks that
marker (its logit's bias set to -1e9) and every tune runs to the length limit:
``--chars 600`` asks for the request length whose limit is 600 characters (12 bars of
4/4 by the limit's rule of 120 + 40 a bar); ``--bars 16`` gives the limit a 16-bar
request gets (760 characters).

Reported, each the median of ``--repeats`` runs after a warm-up (which traces and
compiles the step):
- ``generate``: the whole ``CharGenerator.generate`` call (writing 8 x N characters in
  one batch, then parsing each tune with abc2midi and judging its validity);
- ``writing``: the character loop alone (the LSTM stepped, sampling, bookkeeping);
- ``parsing``: what ``generate`` does with 8 written tunes (abc2midi parse, validity,
  the melody; side by side in threads, as ``generate`` runs them) for the 8 real
  Nottingham tunes closest to the limit's length (the random network's text is junk,
  which abc2midi refuses faster than real tunes).

The random network writes junk, so these runs sample raw (``check_bars=False``): bar
checking would send every junk bar back. ``--checkpoint checkpoints/folk_abc_char`` adds
the trained model writing 8 tunes of ``--bars`` (default 16) bars as the studio asks,
with bar checking (the default: a bar that does not fit is written again) and without,
median of ``--repeats`` over seeds 1, 2, ...: the cost of checking on real tunes.

Usage: python benchmarks/abc_char_speed.py [--repeats 5] [--chars 600 | --bars 16]
       [--checkpoint checkpoints/folk_abc_char]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from melodygen.core.checkpoint import build_network, save_model  # noqa: E402
from melodygen.core.generation import GenerationRequest  # noqa: E402
from melodygen.families.abc_char.configs import get_config  # noqa: E402
from melodygen.families.abc_char.generate import (  # noqa: E402
    CHARS_PER_BAR,
    HEADER_CHARS,
    PARSE_THREADS,
    CharGenerator,
    _Row,
    length_limit,
    make_template,
    read_melody,
)
from melodygen.families.abc_char.model_file import CharModelInfo  # noqa: E402
from melodygen.families.abc_char.vocab import END, Vocabulary  # noqa: E402

NOTTINGHAM_ABC = Path(__file__).resolve().parent.parent.parent / "shared/data/nottingham/abc"
# 84 characters + <end> + <unk> = 86 symbols, the seed's vocabulary size.
CHARACTERS = (
    "\n !\"#'()*,-./0123456789:<=>ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_abcdefghijklmnopqrstuvwxyz|~"
)[:84]


def seed_sized_checkpoint(folder: Path) -> Path:
    """A ``char_seed`` network with random weights that never writes ``<end>``."""
    vocab = Vocabulary.from_texts([CHARACTERS])
    info = CharModelInfo("char_seed", get_config("char_seed").hparams, vocab)
    model = build_network(info)
    logits = model.get_layer("logits")
    kernel, bias = logits.get_weights()
    bias[END] = -1e9
    logits.set_weights([kernel, bias])
    return save_model(folder / "char_seed", model, info)


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up: traces and compiles the step
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def real_tunes(count: int, near: int) -> list[str]:
    """``count`` Nottingham tunes whose canonical text is closest to ``near`` characters."""
    from melodygen.io.abc import read_tunebook

    tunes = [
        tune for path in sorted(NOTTINGHAM_ABC.glob("*.abc")) for tune in read_tunebook(path)[0]
    ]
    tunes.sort(key=lambda tune: abs(len(tune.text) - near))
    return [tune.text for tune in tunes[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tunes", type=int, default=8)
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--chars", type=int, default=600, help="length limit in characters")
    length.add_argument("--bars", type=int, default=None, help="bars asked for (4/4)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="a trained abc_char model")
    args = parser.parse_args()
    if args.checkpoint is not None:
        trained_model(args.checkpoint, args.bars or 16, args.tunes, args.repeats)
        return
    bars = args.bars if args.bars is not None else (args.chars - HEADER_CHARS) / CHARS_PER_BAR
    request = GenerationRequest(
        length_steps=round(bars * 16), num_outputs=args.tunes, seed=1, check_bars=False
    )
    limit = length_limit(request)

    with tempfile.TemporaryDirectory() as tmp:
        folder = seed_sized_checkpoint(Path(tmp))
        started = time.perf_counter()
        generator = CharGenerator(folder, device="cpu")
        load = time.perf_counter() - started
        print(f"load: {load:.2f} s ({generator.info.parameters:,} weights)")

        result = generator.generate(request)
        lengths = [len(melody.text or "") for melody in result.melodies]
        assert min(lengths) == limit, lengths  # every tune ran to the limit

        def writing() -> None:
            rows = [_Row(make_template(request), limit) for _ in range(args.tunes)]
            generator._write(rows, request, np.random.default_rng(1))

        whole = median_seconds(lambda: generator.generate(request), args.repeats)
        loop = median_seconds(writing, args.repeats)

        tunes = real_tunes(args.tunes, limit)
        chars = round(statistics.mean(len(text) for text in tunes))

        def parsing() -> None:
            with ThreadPoolExecutor(max_workers=min(len(tunes), PARSE_THREADS)) as pool:
                read = list(pool.map(read_melody, tunes, [0.0] * len(tunes), range(len(tunes))))
            assert all(melody.problem is None for melody, _ in read)

        parse = median_seconds(parsing, args.repeats)
    print(
        f"{args.tunes} tunes x {limit} characters ({bars:g} bars asked), median of "
        f"{args.repeats}:\n"
        f"  generate (write + parse junk): {whole:.3f} s\n"
        f"  writing alone:                 {loop:.3f} s "
        f"({loop / limit * 1000:.2f} ms per character step)\n"
        f"  parse + validity, {args.tunes} real tunes of ~{chars} characters: {parse:.3f} s\n"
        f"  writing + real parsing:        {loop + parse:.3f} s (target 1 s)"
    )


def trained_model(checkpoint: Path, bars: int, tunes: int, repeats: int) -> None:
    """The trained model's ``generate`` for ``tunes`` tunes of ``bars`` bars, with bar
    checking and without, interleaved over the same seeds."""
    generator = CharGenerator(checkpoint, device="cpu")
    times: dict[bool, list[float]] = {True: [], False: []}
    chars: dict[bool, list[int]] = {True: [], False: []}
    generator.generate(GenerationRequest(length_steps=bars * 16, num_outputs=tunes, seed=0))
    for seed in range(1, repeats + 1):
        for check in (False, True):
            request = GenerationRequest(
                length_steps=bars * 16, num_outputs=tunes, seed=seed, check_bars=check
            )
            started = time.perf_counter()
            result = generator.generate(request)
            times[check].append(time.perf_counter() - started)
            chars[check] += [len(melody.text or "") for melody in result.melodies]
    for check in (False, True):
        print(
            f"{checkpoint}: {tunes} tunes, {bars} bars asked, "
            f"{'bars checked' if check else 'raw samples '}: median "
            f"{statistics.median(times[check]):.3f} s over {repeats} seeds "
            f"(mean {statistics.mean(chars[check]):.0f} characters a tune, "
            f"longest {max(chars[check])})"
        )


if __name__ == "__main__":
    main()
