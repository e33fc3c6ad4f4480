"""Validity of an ``abc_char`` model's tunes, beside the real held-out tunes of its dataset.

The model writes ``num`` whole tunes with no primer (header included, at ``temperature``,
reproducibly for ``seed``); each is judged by :func:`melodygen.io.abc.check_validity`: does
abc2midi parse it, do its full bars (pickup and last bar aside) last what ``M:`` and ``L:``
say, do its repeats and endings balance. The dataset's held-out tunes (real tunes the
model never trained on, every one of which parsed when the dataset was built) are judged
the same way, and the model's share of valid tunes is given as a share of theirs: the
quality bar asks for at least :data:`QUALITY_SHARE` of the real tunes' rate.

``melodygen validity --checkpoint RUN --data DATASET`` prints the report
(:func:`format_validity`) and writes it as JSON with ``--json``.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np

from melodygen.errors import DatasetError, MelodyGenError

DEFAULT_TUNES = 200
"""Tunes sampled for a report (the shipped card's 200)."""
DEFAULT_BARS = 48
"""The length asked for, in 4/4 bars: a limit of 2,040 characters
(:func:`~melodygen.families.abc_char.generate.length_limit`), above the longest training
tune (1,746), so the model ends its tunes itself; a tune cut by the limit is counted."""
QUALITY_SHARE = 0.9
"""The quality bar: sampled tunes valid at least this share of the real tunes' rate."""
KEYS = ("parses", "full_bars", "balanced_repeats", "valid")


def judge(texts: list[str]) -> tuple[dict, list[str]]:
    """Validity rates of ``texts`` and the first problem of each invalid one."""
    from melodygen.io.abc import check_validity, validity_rates

    results = [check_validity(text) for text in texts]
    return validity_rates(results), [r.reason for r in results if not r.valid]


def validity_report(
    checkpoint: str | Path,
    data: str | Path,
    num: int = DEFAULT_TUNES,
    seed: int = 0,
    temperature: float = 1.0,
    bars: int = DEFAULT_BARS,
    device: str = "auto",
    check_bars: bool = True,
) -> dict:
    """Sample ``num`` tunes from ``checkpoint`` and judge them beside ``data``'s held-out
    tunes (see the module docstring). Returns a JSON-serialisable dict: ``settings``,
    ``generated`` and ``held_out`` (shares that parse, have full bars, balanced repeats,
    all three), ``share_of_real`` (generated valid / held-out valid) and ``quality_bar``.
    ``check_bars``: sample as the studio and ``generate`` do, writing a bar again when it
    does not fit (:class:`~melodygen.io.abc.BarCheck`); False judges the raw samples.
    """
    from melodygen.core.checkpoint import read_model_info
    from melodygen.core.family import check_model_reads, open_dataset
    from melodygen.core.generation import MAX_OUTPUTS, GenerationRequest
    from melodygen.families.abc_char.dataset import CharDataset
    from melodygen.families.abc_char.generate import length_limit

    if num < 1:
        raise MelodyGenError(f"the number of tunes must be at least 1 (got {num})")
    if seed < 0:
        raise MelodyGenError(f"the seed must be 0 or more (got {seed})")
    request = GenerationRequest(
        length_steps=int(bars) * 16, temperature=temperature, num_outputs=min(num, MAX_OUTPUTS)
    )
    request.validate()  # a bad temperature or length fails before anything is loaded
    family, dataset = open_dataset(data)
    if not isinstance(dataset, CharDataset):
        raise DatasetError(
            f"{dataset.path} holds {family.title} data; validity judges ABC text: give an "
            "ABC model and the abc_char dataset it was trained on"
        )
    model_dir, info = read_model_info(checkpoint)
    check_model_reads(family, dataset, info, model_dir)

    started = time.perf_counter()
    real = dataset.load("eval").texts
    if not real:
        raise DatasetError(f"the eval split of {dataset.path} holds no tunes")
    held_out, _ = judge(real)
    held_seconds = time.perf_counter() - started

    started = time.perf_counter()
    generator = family.load_generator(model_dir, device=device)
    limit = length_limit(request)
    texts: list[str] = []
    batches = -(-num // MAX_OUTPUTS)
    for batch_seed in np.random.SeedSequence(seed).generate_state(batches).tolist():
        count = min(MAX_OUTPUTS, num - len(texts))
        result = generator.generate(
            GenerationRequest(
                length_steps=int(bars) * 16,
                temperature=temperature,
                num_outputs=count,
                seed=int(batch_seed),
                check_bars=check_bars,
            )
        )
        texts += [melody.text or "" for melody in result.melodies]
    generation_seconds = time.perf_counter() - started

    started = time.perf_counter()
    generated, problems = judge(texts)
    generated["cut_by_limit"] = sum(len(text) >= limit for text in texts)
    generated["mean_characters"] = float(np.mean([len(text) for text in texts]))
    generated["problems"] = [
        {"problem": problem, "tunes": count}
        for problem, count in Counter(_kind(p) for p in problems).most_common(5)
    ]
    judge_seconds = time.perf_counter() - started
    share = generated["valid"] / held_out["valid"] if held_out["valid"] else float("nan")
    return {
        "settings": {
            "model": str(model_dir),
            "data": str(dataset.path),
            "num": num,
            "seed": seed,
            "temperature": temperature,
            "bars": int(bars),
            "check_bars": bool(check_bars),
            "length_limit": limit,
            "held_out_tunes": len(real),
            "seconds": {
                "held_out": held_seconds,
                "generation": generation_seconds,
                "judging": judge_seconds,
            },
        },
        "generated": generated,
        "held_out": held_out,
        "share_of_real": share,
        "quality_bar": {"min_share_of_real": QUALITY_SHARE, "met": bool(share >= QUALITY_SHARE)},
    }


def _kind(reason: str) -> str:
    """A problem without its numbers (``bar 7 lasts 5/8 ...`` -> ``bar N lasts ...``), so
    like problems are counted together."""
    import re

    first = reason.split("; ")[0].split(" in the line ")[0]  # not the tune's own text
    return re.sub(r"\d+(/\d+)?", "N", first)[:120]


def format_validity(report: dict) -> str:
    """The report as aligned lines: generated beside held-out, and the quality bar."""
    settings, made, real = report["settings"], report["generated"], report["held_out"]
    labels = {
        "parses": "parse (abc2midi)",
        "full_bars": "full bars last M:/L:",
        "balanced_repeats": "repeats/endings balance",
        "valid": "valid (all three)",
    }
    lines = [
        f"model:  {settings['model']}",
        f"data:   {settings['data']} ({settings['held_out_tunes']} held-out tunes)",
        f"sampled {settings['num']} tunes, no primer, temperature {settings['temperature']:g}, "
        f"seed {settings['seed']}, at most {settings['length_limit']} characters, "
        + (
            "bars checked (a bar that does not fit is written again)"
            if settings.get("check_bars", False)
            else "raw samples (no bar written again)"
        ),
        "",
        f"{'':<26}{'generated':>12}{'held-out':>12}",
    ]
    for key in KEYS:
        lines.append(f"{labels[key]:<26}{made[key]:>12.1%}{real[key]:>12.1%}")
    lines.append(
        f"{'cut by the length limit':<26}{made['cut_by_limit']:>12}"
        f"   (mean {made['mean_characters']:.0f} characters)"
    )
    for item in made["problems"][:3]:
        lines.append(f"  {item['tunes']} x {item['problem']}")
    bar = report["quality_bar"]
    lines.append(
        f"valid as a share of the real tunes' rate: {report['share_of_real']:.1%} "
        f"(quality bar {bar['min_share_of_real']:.0%}: {'met' if bar['met'] else 'NOT met'})"
    )
    return "\n".join(lines)
