"""Structure: do a melody's phrases come back? A figure that needs no listening.

Real folk and pop melodies are built from returning phrases (a jig is AABB with 8-bar
parts), so many of their bars repeat an earlier one. The figure: for melodies of at least
16 bars, take bars 9 to 16 and count those equal to the bar 1, 2, 4 or 8 bars before,
for each lag and for any of them; and the same with transposition allowed (a sequence).

What "equal" means:

- Bars follow each melody's own meter: 16 sixteenth-note steps per bar in 4/4, 12 in 3/4
  and 6/8, 8 in 2/4 (a dataset's :meth:`~melodygen.families.melody_rnn.dataset.MelodySplit.
  steps_per_bar`).
- Two bars are **equal** when they have their onsets (note-ons) at the same steps of the
  bar with the same pitches. Note-offs and rests do not matter (a staccato and a legato
  playing of a bar compare equal, as in :mod:`melodygen.core.originality`), nor does a
  note held into the bar from the one before.
- A bar **repeats with transposition** when its onsets fall on the same steps and its
  pitches are those of the other bar all moved by the same number of semitones (same
  rhythm and intervals, shifted; a shift of 0 counts, so an exact repeat is one too).
- A bar with no onset (a held note or a rest) repeats nothing: it counts among the bars
  but never as a repeat, so silence and long held notes cannot make a melody look formed.
- A melody counts when it reaches into its 16th bar (a melody ends with its last note, so a
  16-bar tune whose last note is short is a little under 16 full bars); only its first 16
  bars are used, so every melody gives the same 8 bars and the pooled share is also the
  mean over melodies.

The protocol of issue 19's quality bar (:func:`structure_report`): the first 2 bars of
held-out melodies of at least 16 bars are continued to 16 bars by the model at
temperature 1, and the figure on those continuations stands beside the figure on the same
real melodies' first 16 bars. A family that cannot continue a melody (its generator reads
no note primer: ``"primer"`` not in :meth:`~melodygen.core.family.Family.request_options`)
gets "not available for this model", with the real melodies' figure beside it: melodies it
writes from nothing share no opening with a held-out tune, so their figure would not
answer the same question.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from melodygen.errors import MelodyGenError
from melodygen.theory import STEPS_PER_BAR, Meter

LAGS = (1, 2, 4, 8)
"""How many bars back a bar is compared: the bar before, and 2-, 4- and 8-bar phrases."""
FORM_BARS = 16
"""Melodies are measured on their first 16 bars (two 8-bar sections)."""
FIRST_COUNTED_BAR = 9
"""Bars from the 9th on are counted (1-based): each has a bar 8 bars before it."""
PRIMER_BARS = 2
"""Bars of a held-out melody the model is given to continue."""
DEFAULT_TUNES = 64
"""Held-out melodies continued unless asked otherwise (a few minutes on a laptop CPU)."""
KINDS = ("exact", "transposed")


class StructureError(MelodyGenError):
    """A structure measurement that cannot run as asked."""


# Bars -------------------------------------------------------------------------------------


def bar_onsets(events: Sequence[int] | np.ndarray, steps_per_bar: int) -> list[tuple]:
    """Each bar's onsets as a tuple of (step in the bar, pitch), in order.

    ``events`` are Magenta melody events (pitch >= 0 a note-on, -1 note-off, -2 no event),
    one per sixteenth-note step, the first step on a bar line. A last, partial bar is kept.
    """
    if steps_per_bar < 1:
        raise StructureError(f"a bar needs at least one step (got {steps_per_bar})")
    ev = np.asarray(events, dtype=np.int64).reshape(-1)
    bars = -(-len(ev) // steps_per_bar)
    onsets = np.flatnonzero(ev >= 0)
    result: list[list[tuple[int, int]]] = [[] for _ in range(bars)]
    for step in onsets.tolist():
        result[step // steps_per_bar].append((step % steps_per_bar, int(ev[step])))
    return [tuple(bar) for bar in result]


def _shape(bar: tuple) -> tuple:
    """A bar's rhythm and intervals: onsets' steps with pitches relative to its first."""
    first = bar[0][1]
    return tuple((step, pitch - first) for step, pitch in bar)


def repeat_flags(
    events: Sequence[int] | np.ndarray, steps_per_bar: int, bars: int = FORM_BARS
) -> dict[str, np.ndarray] | None:
    """For bars ``FIRST_COUNTED_BAR`` to ``bars`` of one melody, whether each repeats the bar
    each lag before: ``{"exact": bool [bars counted, lags], "transposed": ...}`` (columns in
    :data:`LAGS` order). None when the melody does not reach into its ``bars``-th bar."""
    if bars < FIRST_COUNTED_BAR:
        raise StructureError(f"melodies must be measured on at least {FIRST_COUNTED_BAR} bars")
    ev = np.asarray(events).reshape(-1)
    if len(ev) <= (bars - 1) * steps_per_bar:
        return None
    onsets = bar_onsets(ev[: bars * steps_per_bar], steps_per_bar)
    onsets += [()] * (bars - len(onsets))
    counted = range(FIRST_COUNTED_BAR - 1, bars)
    exact = np.zeros((len(counted), len(LAGS)), dtype=bool)
    moved = np.zeros_like(exact)
    for row, bar in enumerate(counted):
        if not onsets[bar]:
            continue  # a bar that plays nothing repeats nothing
        shape = _shape(onsets[bar])
        for column, lag in enumerate(LAGS):
            before = onsets[bar - lag]
            if not before:
                continue
            exact[row, column] = onsets[bar] == before
            moved[row, column] = shape == _shape(before)
    return {"exact": exact, "transposed": moved}


# Figures ----------------------------------------------------------------------------------


def structure_figures(
    melodies: Sequence[np.ndarray | Sequence[int]],
    steps_per_bar: Sequence[int] | int = STEPS_PER_BAR,
    bars: int = FORM_BARS,
) -> dict:
    """The structure figure of some melodies, each in its own meter.

    ``steps_per_bar`` is one number for all or one per melody. Returns ``melodies`` (those
    measured), ``left_out`` (shorter than ``bars`` bars), ``bars`` (bars counted),
    ``bars_per_melody``, ``meters`` (melodies measured by steps per bar) and, for
    ``exact`` and ``transposed``, the share of counted bars that repeat the bar each lag
    before (``lag_1`` ... ``lag_8``), any of them (``any``) and the 4 or 8 bars before
    (``lag_4_or_8``: a returning phrase, issue 19's quality bar), with the counts
    (``counts``). Shares are None when no melody was long enough.
    """
    if isinstance(steps_per_bar, int | np.integer):
        spb = [int(steps_per_bar)] * len(melodies)
    else:
        spb = [int(value) for value in steps_per_bar]
    if len(spb) != len(melodies):
        raise StructureError(
            f"{len(melodies)} melodies but {len(spb)} bar lengths; give one per melody"
        )
    flags = {kind: [] for kind in KINDS}
    meters: dict[str, int] = {}
    left_out = 0
    for events, steps in zip(melodies, spb, strict=True):
        found = repeat_flags(events, steps, bars)
        if found is None:
            left_out += 1
            continue
        meters[str(steps)] = meters.get(str(steps), 0) + 1
        for kind in KINDS:
            flags[kind].append(found[kind])
    measured = len(flags["exact"])
    counted = measured * (bars - FIRST_COUNTED_BAR + 1)
    figures: dict = {
        "melodies": measured,
        "left_out": left_out,
        "bars": counted,
        "bars_per_melody": bars,
        "steps_per_bar": dict(sorted(meters.items(), key=lambda item: -int(item[0]))),
    }
    for kind in KINDS:
        stacked = (
            np.concatenate(flags[kind]) if flags[kind] else np.zeros((0, len(LAGS)), dtype=bool)
        )
        counts = {f"lag_{lag}": int(stacked[:, i].sum()) for i, lag in enumerate(LAGS)}
        counts["any"] = int(stacked.any(axis=1).sum())
        phrase = [LAGS.index(4), LAGS.index(8)]  # issue 19's quality bar: a phrase returns
        counts["lag_4_or_8"] = int(stacked[:, phrase].any(axis=1).sum())
        figures[kind] = {
            name: (count / counted if counted else None) for name, count in counts.items()
        }
        figures[kind]["counts"] = counts
    return figures


def format_shares(figures: dict, kind: str = "exact") -> str:
    """``"any 40.6%, 1 bar 3.1%, 2 bars 4.7%, 4 bars 9.4%, 8 bars 37.5%"``, or why not."""
    if figures.get("unavailable"):
        return figures["unavailable"]
    if not figures.get("bars"):
        return f"no melody of at least {figures.get('bars_per_melody', FORM_BARS)} bars"
    shares = figures[kind]
    parts = [f"any {shares['any']:.1%}"] + [
        f"{lag} bar{'s' if lag > 1 else ''} {shares[f'lag_{lag}']:.1%}" for lag in LAGS
    ]
    return ", ".join(parts)


def structure_lines(report: dict, width: int = 20) -> list[str]:
    """A structure report as aligned lines: generated beside real, exact and transposed."""
    settings = report["settings"]
    lines = [
        f"{'structure:':<{width}}bars {FIRST_COUNTED_BAR}-{FORM_BARS} equal to the bar "
        f"1/2/4/8 bars before (onsets and pitches); {settings['tunes']} held-out melodies of "
        f"{FORM_BARS}+ bars, their first {PRIMER_BARS} bars continued at temperature "
        f"{settings['temperature']:g} ({settings['per_primer']} each)",
    ]
    for label, section in (("generated", report["generated"]), ("real", report["real"])):
        lines.append(f"{'  ' + label + ':':<{width}}{format_shares(section, 'exact')}")
        if not section.get("unavailable") and section.get("bars"):
            lines.append(f"{'    transposed:':<{width}}{format_shares(section, 'transposed')}")
    lines += [f"{'':<{width}}{notice}" for notice in report.get("notices", [])]
    return lines


# The protocol -----------------------------------------------------------------------------


def meter_of(steps_per_bar: int) -> Meter:
    """A time signature with ``steps_per_bar`` sixteenth-note steps to the bar (16: 4/4, 12:
    3/4, 8: 2/4; odd counts over 16): the generator needs one for a primer, and the networks
    generate the same way in every meter."""
    if steps_per_bar % 4 == 0:
        return Meter(steps_per_bar // 4, 4)
    if steps_per_bar % 2 == 0:
        return Meter(steps_per_bar // 2, 8)
    return Meter(steps_per_bar, 16)


def held_out_for_structure(
    melodies: Sequence[np.ndarray], steps_per_bar: Sequence[int], tunes: int
) -> tuple[list[np.ndarray], list[int]]:
    """The first ``tunes`` melodies (in the dataset's order) that reach into their 16th
    bar, each cut to its first 16 bars, with its steps per bar."""
    kept: list[np.ndarray] = []
    kept_spb: list[int] = []
    for events, steps in zip(melodies, steps_per_bar, strict=True):
        if len(kept) >= tunes:
            break
        events = np.asarray(events, dtype=np.int64)
        if len(events) > (FORM_BARS - 1) * int(steps):
            kept.append(events[: FORM_BARS * int(steps)])
            kept_spb.append(int(steps))
    return kept, kept_spb


def continue_primers(
    generator,
    melodies: Sequence[np.ndarray],
    steps_per_bar: Sequence[int],
    per_primer: int = 1,
    temperature: float = 1.0,
    seed: int = 0,
) -> tuple[list[np.ndarray], list[int]]:
    """Each melody's first ``PRIMER_BARS`` bars continued to ``FORM_BARS`` bars,
    ``per_primer`` times (one request each, seeds drawn from ``seed``), primer included."""
    from melodygen.core.generation import GenerationRequest
    from melodygen.io.primer import Primer

    if not melodies:
        return [], []
    seeds = np.random.SeedSequence(seed).generate_state(len(melodies)).tolist()
    generated: list[np.ndarray] = []
    generated_spb: list[int] = []
    for events, steps, melody_seed in zip(melodies, steps_per_bar, seeds, strict=True):
        primer = Primer(
            events=[int(e) for e in np.asarray(events)[: PRIMER_BARS * steps]],
            meter=meter_of(steps),
            description=f"first {PRIMER_BARS} bars of a held-out melody",
        )
        request = GenerationRequest(
            primer=primer,
            length_steps=FORM_BARS * steps,
            temperature=temperature,
            num_outputs=per_primer,
            seed=int(melody_seed),
        )
        for melody in generator.generate(request).melodies:
            generated.append(np.asarray(melody.events, dtype=np.int64)[: FORM_BARS * steps])
            generated_spb.append(steps)
    return generated, generated_spb


def structure_report(
    checkpoint: str | Path,
    data: str | Path,
    tunes: int = DEFAULT_TUNES,
    per_primer: int = 1,
    temperature: float = 1.0,
    seed: int = 0,
    device: str = "auto",
    generator=None,
) -> dict:
    """The structure figure of a model's continuations beside the real held-out melodies'.

    Takes the first ``tunes`` held-out melodies (eval split of ``data``) that reach into
    their 16th bar, continues each one's first 2 bars to 16 bars ``per_primer`` times at
    ``temperature``, and measures both (:func:`structure_figures`). A ``generator``
    already loaded for ``checkpoint`` is used as is. Returns a JSON-serialisable dict:
    ``settings``, ``generated``, ``real`` and ``notices`` (one line each, such as a dataset
    without meters read as 4/4).
    """
    from melodygen.core.checkpoint import info_family, read_model_info
    from melodygen.core.family import check_model_reads, open_dataset
    from melodygen.core.generation import MAX_OUTPUTS, GenerationRequest, load_generator

    if tunes < 1:
        raise StructureError(f"the number of held-out melodies must be at least 1 (got {tunes})")
    if not 1 <= per_primer <= MAX_OUTPUTS:
        raise StructureError(
            f"continuations per melody must be 1 to {MAX_OUTPUTS} (got {per_primer})"
        )
    GenerationRequest(temperature=temperature).validate()  # one line before any loading
    family, dataset = open_dataset(data)
    model_dir, info = read_model_info(checkpoint)
    check_model_reads(family, dataset, info, model_dir)
    model_family = info_family(info)
    melodies, _ = family.grid_melodies(dataset, "eval")
    steps_per_bar, notices = family.grid_steps_per_bar(dataset, "eval"), []
    if steps_per_bar is None:
        steps_per_bar = [STEPS_PER_BAR] * len(melodies)
        notices.append(
            f"{dataset.path} stores no meters (built before they were kept): every melody "
            f"read as 4/4, 16 steps a bar; rebuild it for 3/4 and 6/8 bars"
        )
    real, real_spb = held_out_for_structure(melodies, steps_per_bar, tunes)
    settings = {
        "model": str(model_dir),
        "data": str(dataset.path),
        "tunes": len(real),
        "per_primer": per_primer,
        "primer_bars": PRIMER_BARS,
        "bars": FORM_BARS,
        "temperature": temperature,
        "seed": seed,
    }
    started = time.perf_counter()
    if not real:
        generated = {"unavailable": f"no held-out melody of {FORM_BARS} bars or more to continue"}
    elif "primer" not in model_family.request_options():
        generated = {
            "unavailable": "not available for this model: it cannot continue a melody "
            "(its generator reads no note primer)"
        }
    else:
        generator = generator or load_generator(model_dir, device=device)
        continued, continued_spb = continue_primers(
            generator, real, real_spb, per_primer, temperature, seed
        )
        generated = structure_figures(continued, continued_spb)
    settings["seconds"] = round(time.perf_counter() - started, 2)
    return {
        "settings": settings,
        "generated": generated,
        "real": structure_figures(real, real_spb),
        "notices": notices,
    }
