"""Validity of the tunes a text-writing model writes, beside its dataset's real held-out tunes.

For any family whose models write ABC text (the family says so, and gives its held-out
real tunes' texts: :meth:`melodygen.core.family.Family.held_out_texts`). The model writes
``num`` whole tunes with no primer and no controls (at ``temperature``, reproducibly for
``seed``); each is judged by :func:`melodygen.io.abc.check_validity`: does abc2midi parse
it, do its full bars (pickup and last bar aside) last what ``M:`` and ``L:`` say, do its
repeats and endings balance. The dataset's held-out tunes (real tunes the model never
trained on, every one of which parsed when the dataset was built) are judged the same way,
and the model's share of valid tunes is given as a share of theirs: the quality bar asks
for at least :data:`QUALITY_SHARE` of the real tunes' rate.

A text family's generator says how long a tune may be (``length_limit(request)``, in its
``length_unit``: "characters", "tokens"), and its results say how many tunes reached that
limit before ending in the sentence :func:`cut_warning` writes (the one warning shared by
the text families), which :func:`cut_in` reads back.

``melodygen validity --checkpoint RUN --data DATASET`` prints the report
(:func:`format_validity`) and writes it as JSON with ``--json``.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import numpy as np

from melodygen.errors import DatasetError, MelodyGenError

DEFAULT_TUNES = 200
"""Tunes sampled for a report (the shipped cards' 200)."""
DEFAULT_BARS = 48
"""The length asked for, in 4/4 bars: longer than any training tune for both ABC families
(``abc_char``: 2,040 characters against the longest training tune's 1,746;
``abc_transformer``: its ``max_tokens``), so the model ends its tunes itself; a tune cut
by the limit is counted."""
QUALITY_SHARE = 0.9
"""The quality bar: sampled tunes valid at least this share of the real tunes' rate."""
KEYS = ("parses", "full_bars", "balanced_repeats", "valid")
_CUT = re.compile(r"^(?:The tune|(\d+) of \d+ tunes) reached the limit of (\d+) (\w+) before")


def cut_warning(cut: int, count: int, limit: int, unit: str) -> str:
    """The warning for ``cut`` of ``count`` tunes that reached the length limit (``limit``
    ``unit``) before ending, as every text family says it (:func:`cut_in` reads it)."""
    share = "The tune" if count == 1 else f"{cut} of {count} tunes"
    return (
        f"{share} reached the limit of {limit} {unit} before ending; ask for more bars for "
        "longer tunes"
    )


def cut_in(warnings: list[str]) -> int:
    """How many tunes of a result reached the length limit, from its warnings."""
    for line in warnings:
        match = _CUT.match(line)
        if match:
            return int(match.group(1) or 1)
    return 0


def judge(texts: list[str]) -> tuple[dict, list[str]]:
    """Validity rates of ``texts`` and the first problem of each invalid one."""
    from melodygen.io.abc import check_validity, validity_rates

    results = [check_validity(text) for text in texts]
    return validity_rates(results), [r.reason for r in results if not r.valid]


def held_out_texts(family, dataset, command: str = "validity") -> list[str]:
    """The held-out real tunes' texts of a text family's dataset; one line saying what is
    needed (for ``melodygen command``) for any other family's, or for an empty split."""
    texts = family.held_out_texts(dataset)
    if texts is None:
        raise DatasetError(
            f"{dataset.path} holds {family.title} data; melodygen {command} judges ABC text: "
            "give a model that writes ABC and the dataset it was trained on"
        )
    if not texts:
        raise DatasetError(f"the eval split of {dataset.path} holds no tunes")
    return texts


def length_limit(generator, request) -> tuple[int | None, str]:
    """The most a tune of ``request`` may have and its unit, as the generator says."""
    unit = str(getattr(generator, "length_unit", "characters"))
    limit = getattr(generator, "length_limit", None)
    return (int(limit(request)) if callable(limit) else None), unit


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

    if num < 1:
        raise MelodyGenError(f"the number of tunes must be at least 1 (got {num})")
    if seed < 0:
        raise MelodyGenError(f"the seed must be 0 or more (got {seed})")
    request = GenerationRequest(
        length_steps=int(bars) * 16, temperature=temperature, num_outputs=min(num, MAX_OUTPUTS)
    )
    request.validate()  # a bad temperature or length fails before anything is loaded
    family, dataset = open_dataset(data)
    real = held_out_texts(family, dataset)
    model_dir, info = read_model_info(checkpoint)
    check_model_reads(family, dataset, info, model_dir)

    started = time.perf_counter()
    held_out, _ = judge(real)
    held_seconds = time.perf_counter() - started

    started = time.perf_counter()
    generator = family.load_generator(model_dir, device=device)
    limit, unit = length_limit(generator, request)
    texts: list[str] = []
    cut = 0
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
        cut += cut_in(result.warnings)
    generation_seconds = time.perf_counter() - started

    started = time.perf_counter()
    generated, problems = judge(texts)
    generated["cut_by_limit"] = cut
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
            "family": family.name,
            "num": num,
            "seed": seed,
            "temperature": temperature,
            "bars": int(bars),
            "check_bars": bool(check_bars),
            "length_limit": limit,
            "length_unit": unit,
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
    limit = settings.get("length_limit")
    most = f"at most {limit} {settings.get('length_unit', 'characters')}, " if limit else ""
    lines = [
        f"model:  {settings['model']}",
        f"data:   {settings['data']} ({settings['held_out_tunes']} held-out tunes)",
        f"sampled {settings['num']} tunes, no primer, temperature {settings['temperature']:g}, "
        f"seed {settings['seed']}, {most}"
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
