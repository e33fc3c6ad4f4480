"""Controllability: do a text-writing model's tunes come out in the meter, key and type asked?

For any family whose models write ABC (:meth:`melodygen.core.family.Family.held_out_texts`
gives a dataset's real held-out tunes as text), and beside it any other such model (the
character LSTM ``abc_char`` beside ``abc_transformer``), driven the same way: by
:class:`~melodygen.core.generation.GenerationRequest` (``time_signature``, ``key``,
``mode``, ``rhythm``), and judged from the ABC text each writes.

Requests: ``num`` held-out real tunes are drawn (without replacement while there are
enough, reproducibly for ``seed``), and each asks for its tune's meter (``M:``), key and
mode (``K:``) and dance type (``R:``, when it names one of :data:`TYPE_RULES`; for
``abc_transformer`` data the type the family reads each tune as): so the requests are
spread over the (meter, key, mode, type) combinations of the held-out tunes as often as
they occur. Tunes asking for the same controls are written in one batch.

Each generated tune is judged (:func:`judge_tune`):

- **parses**: abc2midi reads it;
- **meter**: its ``M:`` line (and any ``M:`` field in its body) says the asked meter, and
  its full bars last it (:func:`melodygen.io.abc.check_validity`'s bar rule);
- **key**: its ``K:`` line says the asked key and mode, and at least
  :data:`KEY_SCALE_SHARE` of the notes it plays are in that mode's scale; the mean share
  in the scale is given too, beside real held-out tunes of the same keys;
- **type**: its music passes the rule of the asked type (:data:`TYPE_RULES`), read from
  the written rhythm (the tune parsed without its ``R:`` line: abc2midi plays a
  ``R:hornpipe`` tune swung, which would make any tune so labelled look dotted).

Beside each figure, the same for the real held-out tunes of the same controls (each
judged against its own meter, key and type; averaged over the requests, so with the same
mix): for the type rules this is the rule's own accuracy, how often a real tune of the
type passes it. A request the model refuses (a key or type it never saw) counts as a
tune that fails every figure. **Control accuracy** for meter and key are the meter and
key shares; the quality bar asks for at least :data:`CONTROL_BAR` of each.

``melodygen controls --checkpoint MODEL --data DATASET [--compare OTHER]`` prints the
report (:func:`format_controls`) and writes it as JSON with ``--json``.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from melodygen.errors import MelodyGenError
from melodygen.theory import MODES, Meter, MeterError, key_name, parse_meter

DEFAULT_REQUESTS = 200
"""Tunes asked of each model (the issue's 200)."""
DEFAULT_BARS = 48
"""The length asked, in 4/4 bars: as ``melodygen validity``, long enough that tunes end on
their own (:data:`melodygen.core.validity.DEFAULT_BARS`)."""
KEY_SCALE_SHARE = 0.85
"""A tune is in the asked key when its ``K:`` says so and at least this share of its notes
are in that mode's scale (99% of the real held-out tunes of ``data/folk_abc_transformer``
pass)."""
CONTROL_BAR = 0.95
"""The quality bar: meter and key control accuracy at least this share."""
DUPLE = ("2/2", "4/4", "2/4")
_FIELD = re.compile(r"(?m)^([MK]):(.*)$|\[([MK]):([^\]\n]*)\]")


# What a tune's rhythm is made of -----------------------------------------------------------


@dataclass(frozen=True)
class Rhythm:
    """A tune's written rhythm, in notes of its running unit ``u``: an eighth in x/8 and
    other meters, an eighth of the bar in 2/2, 4/4 and 2/4 (so a reel written in 2/4
    sixteenths runs as one in 4/4 eighths). Shares are of the notes played (one per
    onset)."""

    notes: int
    running: float
    """Notes lasting ``u``."""
    dotted: float
    """Notes in long-short pairs over two units (1.5u + 0.5u: ``A>B``, ``A3/2B/2``)."""
    snapped: float
    """Notes in short-long pairs over two units (0.5u + 1.5u: the Scotch snap ``A<B``)."""
    beats: float
    """Notes lasting two units or more."""
    cadence: bool
    """Three notes of two units in a row (a hornpipe's ``d2B2G2``)."""


def running_unit(meter: Meter) -> Fraction:
    """The running note ``u`` of a meter, in quarter notes (see :class:`Rhythm`)."""
    if str(meter) in DUPLE:
        return Fraction(meter.numerator * 4, meter.denominator) / 8
    return Fraction(1, 2)


def rhythm_of(sequence, meter: Meter) -> Rhythm | None:
    """The rhythm of a parsed tune (a NoteSequence) in ``meter``; None without notes."""
    qpm = sequence.tempos[0].qpm if sequence.tempos else 120.0
    first: dict[float, Fraction] = {}
    for note in sorted(sequence.notes, key=lambda n: (n.start_time, -n.pitch)):
        quarters = (note.end_time - note.start_time) * qpm / 60.0
        first.setdefault(round(note.start_time, 6), Fraction(round(quarters * 96), 96))
    lengths = list(first.values())
    if not lengths:
        return None
    unit = running_unit(meter)
    dotted = snapped = 0
    index = 0
    while index + 1 < len(lengths):
        a, b = lengths[index], lengths[index + 1]
        if a + b == 2 * unit and a == 3 * b:
            dotted, index = dotted + 2, index + 2
        elif a + b == 2 * unit and b == 3 * a:
            snapped, index = snapped + 2, index + 2
        else:
            index += 1
    beat = 2 * unit
    count = len(lengths)
    return Rhythm(
        notes=count,
        running=sum(length == unit for length in lengths) / count,
        dotted=dotted / count,
        snapped=snapped / count,
        beats=sum(length >= beat for length in lengths) / count,
        cadence=any(
            lengths[i] == lengths[i + 1] == lengths[i + 2] == beat for i in range(count - 2)
        ),
    )


@dataclass(frozen=True)
class TypeRule:
    """What a tune of a dance type is, in words and as a test of its meter and rhythm."""

    words: str
    test: Callable[[str, Rhythm], bool]


TYPE_RULES: dict[str, TypeRule] = {
    "jig": TypeRule(
        "6/8 or 12/8, at least half its notes running eighths",
        lambda meter, r: meter in ("6/8", "12/8") and r.running >= 0.5,
    ),
    "slip jig": TypeRule(
        "9/8, at least half its notes running eighths",
        lambda meter, r: meter == "9/8" and r.running >= 0.5,
    ),
    "reel": TypeRule(
        "2/2, 4/4 or 2/4, at least half its notes running (eighths in 4/4), under a fifth "
        "in dotted or snapped pairs",
        lambda meter, r: meter in DUPLE and r.running >= 0.5 and r.dotted + r.snapped < 0.2,
    ),
    "hornpipe": TypeRule(
        "2/2, 4/4 or 2/4, with at least a fifth of its notes in dotted pairs (A>B) or the "
        "hornpipe's cadence, three beat notes in a row (d2B2G2; many books write "
        "hornpipes even and play them dotted)",
        lambda meter, r: meter in DUPLE and (r.dotted >= 0.2 or r.cadence),
    ),
    "strathspey": TypeRule(
        "4/4 or 2/2, with Scotch snaps (A<B) in at least 5% of its notes and dotted pairs "
        "in at least 10%",
        lambda meter, r: meter in ("4/4", "2/2") and r.snapped >= 0.05 and r.dotted >= 0.1,
    ),
    "waltz": TypeRule("3/4", lambda meter, r: meter == "3/4"),
    "polka": TypeRule("2/4", lambda meter, r: meter == "2/4"),
    "march": TypeRule(
        "2/4, 4/4, 2/2 or 6/8, at least a tenth of its notes a beat or longer (two running notes)",
        lambda meter, r: meter in (*DUPLE, "6/8") and r.beats >= 0.1,
    ),
    "air": TypeRule(
        "any meter, under 65% of its notes running: slower than the dances",
        lambda meter, r: r.running < 0.65,
    ),
}
"""The dance types controls are judged on, each with its rule (see :class:`Rhythm`). The
thresholds were set on the real tunes of ``data/folk_abc_transformer`` (Nottingham and
the music21 folk books, types as ``abc_transformer`` reads them); how often real held-out
tunes of each type pass is measured again in every report, beside the generated share."""


def type_name(value: str | None) -> str | None:
    """An ``R:`` value as a type of :data:`TYPE_RULES` (case and spacing aside), or None."""
    name = " ".join((value or "").lower().replace("-", " ").split())
    return name if name in TYPE_RULES else None


def meter_text(value: str | None) -> str | None:
    """An ``M:`` value as a fraction ("6/8"; ``C`` 4/4, ``C|`` 2/2), None when it is none."""
    text = (value or "").strip()
    text = {"C": "4/4", "C|": "2/2"}.get(text, text)
    try:
        meter = parse_meter(text)
    except MeterError:
        return None
    return str(meter) if meter is not None else None


# One tune -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Controls:
    """What a request asks: a meter ("6/8"), a key (tonic pitch class, mode), a type."""

    meter: str
    tonic: int
    mode: str
    type: str | None


def tune_controls(text: str) -> Controls | None:
    """The controls a real tune would be asked by (its ``M:``, ``K:``, ``R:``); None when
    it has no meter or key to ask for."""
    from melodygen.io.abc import AbcError, clean_tune, key_and_mode

    try:
        tune = clean_tune(text)
    except AbcError:
        return None
    meter, key = meter_text(tune.meter), key_and_mode(tune.key)
    if meter is None or key is None:
        return None
    return Controls(meter, key[0], key[1], type_name(tune.rhythm))


@dataclass(frozen=True)
class Judgement:
    """How one tune answers its controls (see the module docstring)."""

    parses: bool = False
    meter: bool = False
    key_line: bool = False
    scale: float | None = None
    """Share of its notes in the asked key's scale (None: no notes)."""
    key: bool = False
    type: bool | None = None
    """Passes the asked type's rule (None: no type asked)."""
    written: str | None = None
    """Its ``M:`` as a fraction, and its rhythm (None: it does not parse)."""
    rhythm: Rhythm | None = None

    def passes(self, name: str) -> bool:
        """Whether its music passes the rule of type ``name``, whatever was asked."""
        rule = TYPE_RULES[name]
        return (
            self.rhythm is not None
            and self.written is not None
            and rule.test(self.written, self.rhythm)
        )


def judge_tune(text: str, asked: Controls) -> Judgement:
    """Judge a tune's text against the controls it was asked for (module docstring)."""
    from melodygen.io.abc import AbcError, check_validity, clean_tune, key_and_mode, parse_tune

    try:
        tune = clean_tune(re.sub(r"(?m)^R:.*(\n|$)", "", text))  # written rhythm, not swung
    except AbcError:  # no music to read (a header alone): only its K: line can be judged
        key = re.search(r"(?m)^K:(.*)$", text)
        in_key = key is not None and key_and_mode(key.group(1)) == (asked.tonic, asked.mode)
        return Judgement(key_line=in_key, type=False if asked.type else None)
    try:
        sequence = parse_tune(tune)
    except MelodyGenError:
        sequence = None
    fields = [(m[1] or m[3], m[2] if m[1] else m[4]) for m in _FIELD.finditer(tune.body)]
    meters = [tune.meter] + [value for name, value in fields if name == "M"]
    in_meter = all(meter_text(value) == asked.meter for value in meters)
    # A tune abc2midi cannot read is in no meter (its bars are not judged).
    full_bars = sequence is not None and check_validity(tune, sequence=sequence).full_bars
    key_line = key_and_mode(tune.key) == (asked.tonic, asked.mode)
    scale = None
    if sequence is not None and sequence.notes:
        degrees = {(asked.tonic + step) % 12 for step in MODES[asked.mode][0]}
        scale = float(np.mean([note.pitch % 12 in degrees for note in sequence.notes]))
    written = meter_text(tune.meter)
    rhythm = None
    if sequence is not None and written is not None:
        rhythm = rhythm_of(sequence, parse_meter(written))
    judged = Judgement(
        parses=sequence is not None,
        meter=in_meter and full_bars,
        key_line=key_line,
        scale=scale,
        key=key_line and scale is not None and scale >= KEY_SCALE_SHARE,
        written=written,
        rhythm=rhythm,
    )
    if asked.type is None:
        return judged
    return replace(judged, type=judged.passes(asked.type))


# The report ---------------------------------------------------------------------------------

FIGURES = ("parses", "meter", "key_line", "scale", "key", "type")


def _figures(judged: list[tuple[Controls, Judgement]]) -> dict:
    """Shares of ``judged`` passing each figure, the mean scale share, and per type."""
    count = len(judged)
    scales = [j.scale for _, j in judged if j.scale is not None]
    typed = [(asked.type, j.type) for asked, j in judged if asked.type is not None]
    types: dict[str, list[bool]] = defaultdict(list)
    for name, passes in typed:
        types[name].append(bool(passes))

    def share(values: list[bool]) -> float:
        return float(np.mean(values)) if values else float("nan")

    return {
        "tunes": count,
        "parses": share([j.parses for _, j in judged]),
        "meter": share([j.meter for _, j in judged]),
        "key_line": share([j.key_line for _, j in judged]),
        "scale": share(scales),
        "key": share([j.key for _, j in judged]),
        "type": share([bool(passes) for _, passes in typed]),
        "types": {
            name: {"tunes": len(values), "share": share(values)}
            for name, values in sorted(types.items())
        },
    }


def _real_figures(requests: list[Controls], real: list[tuple[Controls, Judgement]]) -> dict:
    """Each figure of the real held-out tunes that share the figure's control with each
    request (meter: its meter; key: its key; type: its type), averaged over the requests;
    per type, the share of real tunes of the type passing its rule (the rule's accuracy)
    and of real tunes of the other types passing it (how much it tells types apart)."""
    figures: dict = {"tunes": len(real)}
    for figure in FIGURES:
        values: dict = defaultdict(list)
        for controls, judged in real:
            value = getattr(judged, figure)
            if value is not None:
                values[_group(figure, controls)].append(float(value))
        picked = [
            float(np.mean(values[group]))
            for request in requests
            if (group := _group(figure, request)) in values
        ]
        figures[figure] = float(np.mean(picked)) if picked else float("nan")
    typed = [(controls.type, judged) for controls, judged in real if controls.type]
    figures["types"] = {}
    for name in TYPE_RULES:
        own = [judged.passes(name) for kind, judged in typed if kind == name]
        others = [judged.passes(name) for kind, judged in typed if kind != name]
        if own:
            figures["types"][name] = {
                "tunes": len(own),
                "share": float(np.mean(own)),
                "other_types": float(np.mean(others)) if others else float("nan"),
            }
    return figures


def _group(figure: str, controls: Controls):
    """The controls a figure of a real tune is compared by: its meter, key or type."""
    if figure in ("parses", "meter"):
        return controls.meter
    if figure == "type":
        return controls.type
    return controls.tonic, controls.mode


def _judge_all(pairs: list[tuple[str, Controls]]) -> list[Judgement]:
    """Judge many tunes (an abc2midi process each: threads wait for them side by side)."""
    if not pairs:
        return []
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda pair: judge_tune(*pair), pairs))


def pick_requests(real: list[Controls], num: int, seed: int) -> list[Controls]:
    """``num`` requests: the controls of held-out tunes drawn reproducibly for ``seed``
    (without replacement while there are enough), in the order drawn."""
    rng = np.random.default_rng(seed)
    drawn = rng.choice(len(real), size=num, replace=num > len(real))
    return [real[int(i)] for i in drawn]


def write_tunes(
    generator,
    requests: list[Controls],
    seed: int,
    temperature: float,
    bars: int,
    check_bars: bool,
) -> tuple[list[str | None], int, float]:
    """Each request's tune from ``generator`` (None where the model refused the controls),
    the tunes refused, and the seconds it took. Requests for the same controls are written
    in one batch, seeded from ``seed`` in the order the controls are first asked."""
    from melodygen.core.generation import MAX_OUTPUTS, GenerationError, GenerationRequest

    started = time.perf_counter()
    groups: dict[Controls, list[int]] = defaultdict(list)
    for index, controls in enumerate(requests):
        groups[controls].append(index)
    texts: list[str | None] = [None] * len(requests)
    refused = 0
    seeds = np.random.SeedSequence(seed).generate_state(len(groups)).tolist()
    for (controls, indices), batch_seed in zip(groups.items(), seeds, strict=True):
        for start in range(0, len(indices), MAX_OUTPUTS):
            chunk = indices[start : start + MAX_OUTPUTS]
            request = GenerationRequest(
                length_steps=int(bars) * 16,
                time_signature=controls.meter,
                key=controls.tonic,
                mode=controls.mode,
                rhythm=controls.type,
                temperature=temperature,
                num_outputs=len(chunk),
                seed=(int(batch_seed) + start) % 2**32,
                check_bars=check_bars,
            )
            try:
                result = generator.generate(request)
            except GenerationError:
                refused += len(chunk)
                continue
            for index, melody in zip(chunk, result.melodies, strict=True):
                if melody.text is None:
                    raise MelodyGenError(
                        f"{generator.description} writes no ABC text: controls judge ABC tunes"
                    )
                texts[index] = melody.text
    return texts, refused, time.perf_counter() - started


def _model_figures(family, generator, model_dir: Path, requests, options: dict) -> dict:
    texts, refused, seconds = write_tunes(generator, requests, **options)
    written = [(text, asked) for text, asked in zip(texts, requests, strict=True) if text]
    judged_written = iter(_judge_all(written))
    judged = [
        (asked, next(judged_written) if text else Judgement(type=False if asked.type else None))
        for text, asked in zip(texts, requests, strict=True)
    ]
    figures = _figures(judged)
    return {
        "model": str(model_dir),
        "family": family.name,
        "description": generator.description,
        "refused": refused,
        "seconds": seconds,
        "figures": figures,
        "quality_bar": {
            "min_control_accuracy": CONTROL_BAR,
            "meter": bool(figures["meter"] >= CONTROL_BAR),
            "key": bool(figures["key"] >= CONTROL_BAR),
        },
    }


def controls_report(
    checkpoint: str | Path,
    data: str | Path,
    compare: str | Path | None = None,
    num: int = DEFAULT_REQUESTS,
    seed: int = 0,
    temperature: float = 1.0,
    bars: int = DEFAULT_BARS,
    device: str = "auto",
    check_bars: bool = True,
) -> dict:
    """Ask ``checkpoint`` (and ``compare``, when given) for ``num`` tunes with the
    controls of ``data``'s held-out tunes and judge them (see the module docstring).
    Returns a JSON-serialisable dict: ``settings``, ``requests`` (each combination of
    controls asked and how many tunes), ``rules`` (each type's rule in words), ``models``
    (per model: its figures, per type, tunes refused, quality bar) and ``held_out`` (the
    real tunes' figures, with the requests' mix)."""
    from melodygen.core.checkpoint import info_family, read_model_info
    from melodygen.core.family import check_model_reads, open_dataset
    from melodygen.core.generation import GenerationRequest
    from melodygen.core.validity import held_out_texts

    if num < 1:
        raise MelodyGenError(f"the number of tunes must be at least 1 (got {num})")
    if seed < 0:
        raise MelodyGenError(f"the seed must be 0 or more (got {seed})")
    GenerationRequest(length_steps=int(bars) * 16, temperature=temperature).validate()
    family, dataset = open_dataset(data)
    texts = held_out_texts(family, dataset, command="controls")
    model_dir, info = read_model_info(checkpoint)
    check_model_reads(family, dataset, info, model_dir)
    others = []
    if compare is not None:
        compare_dir, compare_info = read_model_info(compare)
        others.append((info_family(compare_info), compare_dir))

    started = time.perf_counter()
    controls = [tune_controls(text) for text in texts]
    real_pairs = [(text, c) for text, c in zip(texts, controls, strict=True) if c is not None]
    if not real_pairs:
        raise MelodyGenError(f"no held-out tune of {dataset.path} has a meter and a key")
    real = [(c, j) for (_, c), j in zip(real_pairs, _judge_all(real_pairs), strict=True)]
    requests = pick_requests([c for c, _ in real], num, seed)
    held_out = _real_figures(requests, real)
    real_seconds = time.perf_counter() - started

    options = dict(seed=seed, temperature=temperature, bars=bars, check_bars=check_bars)
    models = []
    for model_family, folder in [(family, model_dir), *others]:
        generator = model_family.load_generator(folder, device=device)
        models.append(_model_figures(model_family, generator, folder, requests, options))
    asked = Counter(requests)
    return {
        "settings": {
            "data": str(dataset.path),
            "held_out_tunes": len(texts),
            "held_out_with_controls": len(real),
            "num": num,
            "seed": seed,
            "temperature": temperature,
            "bars": int(bars),
            "check_bars": bool(check_bars),
            "key_scale_share": KEY_SCALE_SHARE,
            "seconds": {"held_out": real_seconds},
        },
        "requests": [
            {
                "meter": c.meter,
                "key": key_name(c.tonic, c.mode),
                "tonic": c.tonic,
                "mode": c.mode,
                "type": c.type,
                "tunes": n,
            }
            for c, n in asked.most_common()
        ],
        "rules": {name: rule.words for name, rule in TYPE_RULES.items()},
        "models": models,
        "held_out": held_out,
    }


def format_controls(report: dict) -> str:
    """The report as aligned lines: each model's figures beside the real tunes', per type,
    and the control accuracy each model reaches."""
    settings, models, real = report["settings"], report["models"], report["held_out"]
    names = [m["family"] for m in models]
    if len(set(names)) < len(names):
        names = ["model"] + [f"compare {i}" for i in range(1, len(models))]
    width = max(12, *(len(name) + 2 for name in names))
    combos = len(report["requests"])
    lines = [f"model:   {models[0]['model']} ({models[0]['description']})"]
    lines += [f"compare: {m['model']} ({m['description']})" for m in models[1:]]
    lines += [
        f"data:    {settings['data']} ({settings['held_out_tunes']} held-out tunes, "
        f"{settings['held_out_with_controls']} with a meter and key)",
        f"asked:   {settings['num']} tunes over {combos} combinations of meter, key, mode and "
        f"type, as often as held-out tunes have them; temperature "
        f"{settings['temperature']:g}, seed {settings['seed']}, "
        + ("bars checked" if settings["check_bars"] else "raw samples"),
        "",
        f"{'':<34}" + "".join(f"{name:>{width}}" for name in names) + f"{'held-out':>{width}}",
    ]
    labels = {
        "parses": "parse (abc2midi)",
        "meter": "meter: M: as asked, full bars",
        "key_line": "key: K: as asked",
        "scale": "notes in the asked key's scale",
        "key": f"key: K:, >= {settings['key_scale_share']:.0%} in its scale",
        "type": "type: passes the type's rule",
    }
    for figure, label in labels.items():
        row = [m["figures"][figure] for m in models] + [real[figure]]
        lines.append(f"{label:<34}" + "".join(f"{value:>{width}.1%}" for value in row))
    refused = [m["refused"] for m in models]
    if any(refused):
        cells = "".join(f"{n:>{width}}" for n in refused)
        lines.append(f"{'refused (counted as failing)':<34}{cells}")
    lines.append("")
    lines.append("per type (tunes asked); held-out: its real tunes passing its rule,")
    lines.append("  and in brackets the real tunes of the other types that pass it")
    for name in report["rules"]:
        counts = [m["figures"]["types"].get(name) for m in models]
        held = real["types"].get(name)
        if not any(counts) and not held:
            continue
        asked = next((c["tunes"] for c in counts if c), 0)
        cells = [f"{c['share']:>{width}.1%}" if c else f"{'-':>{width}}" for c in counts]
        if held:
            cells.append(
                f"{held['share']:>{width}.1%} of {held['tunes']} ({held['other_types']:.0%})"
            )
        lines.append(f"  {f'{name} ({asked})':<32}" + "".join(cells))
    lines.append("")
    for name, model in zip(names, models, strict=True):
        figures, bar = model["figures"], model["quality_bar"]
        lines.append(
            f"control accuracy, {name}: meter {figures['meter']:.1%}, key {figures['key']:.1%} "
            f"(quality bar {bar['min_control_accuracy']:.0%}: meter "
            f"{'met' if bar['meter'] else 'NOT met'}, key {'met' if bar['key'] else 'NOT met'})"
        )
    return "\n".join(lines)
