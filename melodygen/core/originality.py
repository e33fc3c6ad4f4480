"""Originality and listen-free sanity figures: does a model copy its training melodies?

A model that memorises its training set can score well on held-out likelihood
and still hand users somebody else's tune. This module measures, for each
melody, the longest run of consecutive notes that appears note for note in some
training melody, and compares generated melodies with real held-out ones (real
folk tunes share stock phrases, so zero is not the baseline).

How melodies are compared:

- A melody is a list of notes ``(pitch, IOI)``: the pitch of each note-on and
  the time in sixteenth steps to the next note-on (the inter-onset interval,
  rests included). The last note has no next onset; its IOI is its own
  duration, up to its note-off or to the end of the melody. So a melody cut
  mid-note ends on a shorter last note, and a run can only include that last
  note where a training melody holds the same pitch for exactly as long.
  Note-offs inside a melody do not matter (staccato and legato compare equal).
- Pitches compare exactly, with no transposition: training melodies are taken
  as the dataset stores them (squashed into the model's range, moved to the
  configuration's key, augmented copies included), which is the space the
  model was trained and generates in.
- A run's length in steps is its span: from its first note's onset to its last
  note's onset plus that note's IOI (the sum of the run's IOIs). "Longer than
  2 bars" means a span over 32 steps (16 steps per 4/4 bar).
- The longest run of a melody is reported twice: the most notes in any shared
  run, and the longest span of any shared run (a few long notes can span more
  than many short ones). Thresholds use the span.

The index is a suffix array over the training notes: building it takes a
few NumPy sorts (prefix doubling), and each query position is one binary search, so
thousands of training melodies and a few hundred queries take about a second.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from melodygen.errors import MelodyGenError
from melodygen.theory import MODES, NOTE_OFF, NOTES_PER_OCTAVE, STEPS_PER_BAR

TWO_BARS = 2 * STEPS_PER_BAR
FOUR_BARS = 4 * STEPS_PER_BAR
WINDOWS = ("start", "random")
SECTIONS = ("generated", "held_out", "held_out_whole")  # the report's columns
_IOI_BITS = 20  # a note token is pitch << 20 | IOI; melodies are far shorter than 2**20 steps

# _SCALES[key, pitch_class] = 1 when the major scale on ``key`` holds the pitch class.
_SCALES = np.array(
    [
        [(pc - key) % NOTES_PER_OCTAVE in MODES["major"][0] for pc in range(NOTES_PER_OCTAVE)]
        for key in range(NOTES_PER_OCTAVE)
    ],
    dtype=np.int64,
)


class OriginalityError(MelodyGenError):
    """An originality measurement that cannot run as asked."""


# Melodies as notes ------------------------------------------------------------------------


@dataclass(frozen=True)
class Notes:
    """The notes of one melody: pitch, onset step and IOI of each, and the melody's length."""

    pitches: np.ndarray
    onsets: np.ndarray
    iois: np.ndarray
    steps: int

    def __len__(self) -> int:
        return len(self.pitches)

    def tokens(self) -> list[int]:
        """One int per note, equal exactly when pitch and IOI are equal."""
        return ((self.pitches << _IOI_BITS) | self.iois).tolist()


def melody_notes(events: Sequence[int] | np.ndarray) -> Notes:
    """Magenta melody events (pitch >= 0 note-on, -1 note-off, -2 no event) as notes.

    Each note's IOI is the time to the next note-on; the last note's is its
    duration, to its note-off or to the end of the melody (see the module docstring).
    """
    ev = np.asarray(events, dtype=np.int64).reshape(-1)
    onsets = np.flatnonzero(ev >= 0)
    iois = np.diff(onsets)
    if onsets.size:
        last = int(onsets[-1])
        offs = np.flatnonzero(ev[last + 1 :] == NOTE_OFF)
        end = last + 1 + int(offs[0]) if offs.size else len(ev)
        iois = np.append(iois, end - last)
    if iois.size and iois.max() >= 1 << _IOI_BITS:
        raise OriginalityError(f"melody of {len(ev)} steps is too long to compare")
    return Notes(ev[onsets], onsets, iois.astype(np.int64), len(ev))


def cut_melodies(
    melodies: Sequence[np.ndarray], steps: int, window: str = "start", seed: int = 0
) -> list[np.ndarray]:
    """Each melody cut to ``steps`` steps, so real melodies compare fairly with generated ones.

    ``start`` takes the first ``steps`` steps, as a generated melody also starts
    from silence at a bar line; ``random`` takes a window starting on a random bar
    line (NumPy generator seeded with ``seed``). Shorter melodies are kept whole.
    """
    if window not in WINDOWS:
        raise OriginalityError(f"unknown window {window!r}; choose one of {', '.join(WINDOWS)}")
    rng = np.random.default_rng(seed)
    cut = []
    for events in melodies:
        events = np.asarray(events)
        start = 0
        if window == "random" and len(events) > steps:
            start = STEPS_PER_BAR * int(rng.integers(0, (len(events) - steps) // STEPS_PER_BAR + 1))
        cut.append(events[start : start + steps])
    return cut


# The training index -----------------------------------------------------------------------


@dataclass(frozen=True)
class SharedRun:
    """The longest runs of one melody found note for note in a training melody.

    ``notes`` is the most notes in any shared run; ``steps`` the longest span of any
    shared run, and ``query_start``, ``train_melody`` and ``train_note`` say where
    that longest-span run is (note indices; ``train_melody`` is None without a run).
    """

    notes: int
    steps: int
    query_start: int = 0
    train_melody: int | None = None
    train_note: int = 0

    @property
    def bars(self) -> float:
        return self.steps / STEPS_PER_BAR


def _suffix_array(keys: np.ndarray) -> np.ndarray:
    """Suffix array of an int sequence by prefix doubling (a few whole-array sorts)."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rank = np.unique(keys, return_inverse=True)[1].astype(np.int64).reshape(-1)
    step = 1
    while True:
        second = np.full(n, -1, dtype=np.int64)  # past the end sorts first, as a shorter suffix
        if step < n:
            second[: n - step] = rank[step:]
        order = np.lexsort((second, rank))
        first, after = rank[order], second[order]
        new_group = np.ones(n, dtype=bool)
        new_group[1:] = (first[1:] != first[:-1]) | (after[1:] != after[:-1])
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.cumsum(new_group) - 1
        if new_group.all() or step >= n:
            return order
        step *= 2


class TrainingIndex:
    """Answers: what is the longest run of this melody's notes found in a training melody?

    All training melodies' note tokens sit back to back, each melody followed by a
    separator of its own (a negative number no note equals, so no run crosses
    melodies), under a suffix array. For each note of a query, a binary search
    finds the suffixes that sort next to the query's remaining notes; the longest
    common prefix with those two neighbours is the longest run starting there.
    """

    def __init__(
        self, melodies: Sequence[np.ndarray | Notes], sources: Sequence[str] | None = None
    ) -> None:
        started = time.perf_counter()
        notes = [m if isinstance(m, Notes) else melody_notes(m) for m in melodies]
        tokens: list[int] = []
        starts = []
        for index, melody in enumerate(notes):
            starts.append(len(tokens))
            tokens += melody.tokens()
            tokens.append(-1 - index)
        self._tokens = tokens
        self._starts = np.asarray(starts, dtype=np.int64)
        self._suffixes = _suffix_array(np.asarray(tokens, dtype=np.int64)).tolist()
        self.sources = list(sources) if sources is not None else None
        self.melodies = len(notes)
        self.notes = len(tokens) - len(notes)
        self.build_seconds = time.perf_counter() - started

    def source(self, run: SharedRun) -> str | None:
        """The song the run was found in, when the index knows its sources."""
        if run.train_melody is None or self.sources is None:
            return None
        return self.sources[run.train_melody]

    def longest_run(self, melody: np.ndarray | Sequence[int] | Notes) -> SharedRun:
        """The longest runs (in notes and in span) of ``melody`` found in a training melody."""
        notes = melody if isinstance(melody, Notes) else melody_notes(melody)
        query = notes.tokens()
        spans = np.concatenate([[0], np.cumsum(notes.iois)]).tolist()
        tokens, suffixes, total = self._tokens, self._suffixes, len(self._tokens)
        best_notes, best = 0, SharedRun(0, 0)
        for start in range(len(query)):
            remaining = len(query) - start
            if remaining <= best_notes and spans[-1] - spans[start] <= best.steps:
                continue  # nothing starting here can beat what was found
            rest = query[start:]
            place = bisect.bisect_left(suffixes, rest, key=lambda s, m=remaining: tokens[s : s + m])
            length, where = 0, -1
            for neighbour in (place - 1, place):
                if 0 <= neighbour < total:
                    position = suffixes[neighbour]
                    common = _common_prefix(rest, tokens, position)
                    if common > length:
                        length, where = common, position
            if not length:
                continue
            best_notes = max(best_notes, length)
            span = spans[start + length] - spans[start]
            if span > best.steps:
                melody_index = int(np.searchsorted(self._starts, where, side="right")) - 1
                best = SharedRun(
                    0, span, start, melody_index, where - int(self._starts[melody_index])
                )
        return SharedRun(
            best_notes, best.steps, best.query_start, best.train_melody, best.train_note
        )


def _common_prefix(query: list[int], tokens: list[int], position: int) -> int:
    limit = min(len(query), len(tokens) - position)
    length = 0
    while length < limit and query[length] == tokens[position + length]:
        length += 1
    return length


# Figures ----------------------------------------------------------------------------------


def run_summary(runs: Sequence[SharedRun]) -> dict:
    """Median and 90th percentile (NumPy's linear interpolation) and threshold shares."""
    steps = np.array([run.steps for run in runs], dtype=np.float64)
    notes = np.array([run.notes for run in runs], dtype=np.float64)
    if not len(runs):
        return {"melodies": 0}
    return {
        "melodies": len(runs),
        "median_bars": float(np.median(steps)) / STEPS_PER_BAR,
        "p90_bars": float(np.percentile(steps, 90)) / STEPS_PER_BAR,
        "max_bars": float(steps.max()) / STEPS_PER_BAR,
        "median_notes": float(np.median(notes)),
        "p90_notes": float(np.percentile(notes, 90)),
        "max_notes": int(notes.max()),
        "over_2_bars": int((steps > TWO_BARS).sum()),
        "share_over_2_bars": float((steps > TWO_BARS).mean()),
        "over_4_bars": int((steps > FOUR_BARS).sum()),
        "share_over_4_bars": float((steps > FOUR_BARS).mean()),
    }


def key_notes(notes: Notes) -> int:
    """Notes inside the most likely key: the major diatonic scale (or its relative minor)
    that holds the most of the melody's note-ons."""
    if not len(notes):
        return 0
    counts = np.bincount(notes.pitches % NOTES_PER_OCTAVE, minlength=NOTES_PER_OCTAVE)
    return int((_SCALES @ counts).max())


def sanity_figures(melodies: Sequence[Notes]) -> dict:
    """Share of notes in the most likely key, and notes per bar.

    ``in_key_share`` is the mean over melodies of each one's share,
    ``in_key_share_pooled`` the share over all notes together, ``notes_per_bar`` the
    mean over melodies of note-ons per bar. Melodies without a note count as 0 notes
    per bar and are left out of the key shares (which they have none of);
    ``silent_melodies`` says how many there were.
    """
    sounding = [m for m in melodies if len(m)]
    in_key = [key_notes(m) for m in sounding]
    counts = [len(m) for m in sounding]
    per_bar = [len(m) / (m.steps / STEPS_PER_BAR) for m in melodies if m.steps]
    return {
        "melodies": len(melodies),
        "silent_melodies": len(melodies) - len(sounding),
        "notes": int(sum(len(m) for m in melodies)),
        "in_key_share": float(np.mean(np.divide(in_key, counts))) if sounding else None,
        "in_key_share_pooled": float(sum(in_key) / sum(counts)) if sounding else None,
        "notes_per_bar": float(np.mean(per_bar)) if per_bar else None,
    }


def melody_figures(
    index: TrainingIndex,
    melodies: Sequence[np.ndarray],
    sources: Sequence[str] | None = None,
    top: int = 5,
) -> dict:
    """Run summary and sanity figures of some melodies, plus the longest runs and their songs.

    Keys: ``originality`` (``run_summary``), ``sanity`` (``sanity_figures``), ``longest``
    (the longest runs and where they are), ``run_bars`` (each melody's longest span in
    bars) and ``query_seconds``. ``sources`` names each melody's song (for held-out
    melodies), shown beside its runs.
    """
    notes = [melody_notes(m) for m in melodies]
    started = time.perf_counter()
    runs = [index.longest_run(n) for n in notes]
    seconds = time.perf_counter() - started
    order = sorted(range(len(runs)), key=lambda i: (-runs[i].steps, -runs[i].notes, i))
    longest = [
        {
            "melody": i,
            "source": None if sources is None else str(sources[i]),
            "bars": runs[i].bars,
            "notes": runs[i].notes,
            "start_note": runs[i].query_start,
            "train_melody": runs[i].train_melody,
            "train_note": runs[i].train_note,
            "train_source": index.source(runs[i]),
        }
        for i in order[:top]
        if runs[i].steps
    ]
    return {
        "originality": run_summary(runs),
        "sanity": sanity_figures(notes),
        "longest": longest,
        "run_bars": [run.bars for run in runs],
        "query_seconds": seconds,
    }


def verdict(generated: dict, held_out: dict) -> dict:
    """``defect`` when generated melodies copy more than held-out ones, or any run > 4 bars.

    The held-out share is known to one melody in however many there are: a share of 0 in
    95 songs says "under about 1 in 95", not "never". So generated melodies are a defect
    when more of them copy than one more held-out copy would make (``(copies + 1) /
    melodies``): 1 in 1,000 generated beside 0 in 95 held-out is no evidence of copying."""
    reasons = []
    gen, real = generated["originality"], held_out["originality"]
    allowed = (real["over_2_bars"] + 1) / max(real["melodies"], 1)
    if gen["share_over_2_bars"] > allowed:
        reasons.append(
            f"{gen['share_over_2_bars']:.1%} of generated melodies share more than 2 bars with "
            f"a training melody, more than the {real['share_over_2_bars']:.1%} of held-out ones "
            f"(plus one melody: {allowed:.1%})"
        )
    if gen["over_4_bars"]:
        reasons.append(
            f"{gen['over_4_bars']} generated melodies share more than 4 bars with a training "
            f"melody (longest {gen['max_bars']:g} bars)"
        )
    return {"status": "defect" if reasons else "ok", "reasons": reasons}


def compare(
    generated: Sequence[np.ndarray],
    train: TrainingIndex,
    held_out: Sequence[np.ndarray],
    steps: int,
    window: str = "start",
    seed: int = 0,
    held_out_sources: Sequence[str] | None = None,
) -> dict:
    """Generated melodies and held-out melodies (cut to ``steps``, and whole) vs ``train``."""
    cut = cut_melodies(held_out, steps, window, seed)
    figures = {
        "generated": melody_figures(train, generated),
        "held_out": melody_figures(train, cut, held_out_sources),
        "held_out_whole": melody_figures(train, held_out, held_out_sources),
    }
    figures["verdict"] = verdict(figures["generated"], figures["held_out"])
    return figures


# A checkpoint against its dataset ---------------------------------------------------------


def originality_report(
    checkpoint: str | Path,
    data: str | Path,
    num: int = 100,
    bars: int = 8,
    temperature: float = 1.0,
    seed: int = 0,
    window: str = "start",
    device: str = "auto",
    structure_tunes: int = 64,
    structure_per_primer: int = 1,
) -> dict:
    """Generate ``num`` melodies of ``bars`` bars from ``checkpoint`` and measure them.

    Generation has no primer and no key, so melodies stay in the model's own key
    space, the space of the dataset's stored melodies. Returns a JSON-serialisable
    dict with ``settings``, ``generated``, ``held_out`` (held-out melodies cut to
    the same length), ``held_out_whole`` and ``verdict``, and ``structure``
    (:func:`melodygen.core.structure.structure_report`: the first ``structure_tunes``
    held-out melodies of 16+ bars continued from their first 2 bars, ``structure_per_primer``
    times each, at ``temperature``, beside the same real melodies; left out at 0).
    """
    from melodygen.core.checkpoint import info_family, read_model_info
    from melodygen.core.family import check_model_reads, open_dataset
    from melodygen.core.generation import (
        MAX_OUTPUTS,
        MAX_STEPS,
        GenerationRequest,
        load_generator,
    )
    from melodygen.core.structure import structure_report
    from melodygen.errors import DatasetError

    if num < 1:
        raise OriginalityError(f"the number of melodies must be at least 1 (got {num})")
    steps = int(bars) * STEPS_PER_BAR
    if bars < 1 or steps > MAX_STEPS:
        raise OriginalityError(f"bars must be 1 to {MAX_STEPS // STEPS_PER_BAR} (got {bars})")
    if window not in WINDOWS:
        raise OriginalityError(f"unknown window {window!r}; choose one of {', '.join(WINDOWS)}")
    if seed < 0:
        raise OriginalityError(f"the seed must be 0 or more (got {seed})")
    if structure_tunes < 0 or not 1 <= structure_per_primer <= MAX_OUTPUTS:
        raise OriginalityError(
            f"structure needs 0 or more held-out melodies (got {structure_tunes}) and 1 to "
            f"{MAX_OUTPUTS} continuations of each (got {structure_per_primer})"
        )
    request = GenerationRequest(
        length_steps=steps, temperature=temperature, num_outputs=min(num, MAX_OUTPUTS)
    )
    request.validate()  # a bad temperature fails before anything is loaded

    family, dataset = open_dataset(data)
    model_dir, info = read_model_info(checkpoint)
    check_model_reads(family, dataset, info, model_dir)
    train, train_sources = family.grid_melodies(dataset, "train")
    held_out, held_sources = family.grid_melodies(dataset, "eval")
    if not train or not held_out:
        raise DatasetError(f"{dataset.path} needs melodies in both its train and eval splits")
    index = TrainingIndex(train, train_sources)

    started = time.perf_counter()
    generator = load_generator(model_dir, device=device)
    generated = generate_in_model_space(
        model_dir, num, steps, temperature, seed, device, generator=generator
    )
    generation_seconds = time.perf_counter() - started

    figures = compare(generated, index, held_out, steps, window, seed, held_sources)
    figures["settings"] = {
        "model": str(model_dir),
        "config": info_family(info).configuration(info) or info_family(info).describe(info),
        "model_kind": info_family(info).describe(info),
        "data": str(dataset.path),
        "num": num,
        "bars": int(bars),
        "steps": steps,
        "temperature": temperature,
        "seed": seed,
        "held_out_window": window,
        "train_melodies": index.melodies,
        "train_notes": index.notes,
        "held_out_melodies": len(held_out),
        "seconds": {
            "index": index.build_seconds,
            "generation": generation_seconds,
            "queries": sum(figures[k]["query_seconds"] for k in SECTIONS),
        },
    }
    report = {key: figures[key] for key in ("settings", *SECTIONS, "verdict")}
    if structure_tunes:
        report["structure"] = structure_report(
            model_dir,
            dataset.path,
            tunes=structure_tunes,
            per_primer=structure_per_primer,
            temperature=temperature,
            seed=seed,
            generator=generator,
        )
    return report


def generate_in_model_space(
    checkpoint: str | Path,
    num: int,
    steps: int,
    temperature: float = 1.0,
    seed: int = 0,
    device: str = "auto",
    generator=None,
) -> list[np.ndarray]:
    """``num`` melodies of ``steps`` steps, sampled without primer in the model's key space.

    Requests hold at most ``MAX_OUTPUTS`` melodies, so larger numbers run in
    batches, each with its own seed drawn from ``seed``. A ``generator`` already loaded
    for ``checkpoint`` is used as is (so the model is loaded once).
    """
    from melodygen.core.generation import MAX_OUTPUTS, GenerationRequest, load_generator

    generator = generator or load_generator(checkpoint, device=device)
    batches = -(-num // MAX_OUTPUTS)
    seeds = np.random.SeedSequence(seed).generate_state(batches).tolist()
    melodies: list[np.ndarray] = []
    for batch_seed in seeds:
        count = min(MAX_OUTPUTS, num - len(melodies))
        request = GenerationRequest(
            length_steps=steps,
            temperature=temperature,
            num_outputs=count,
            seed=int(batch_seed),
            start_on_downbeat=False,  # the model's own openings, as in the held-out melodies
        )
        result = generator.generate(request)
        for melody in result.melodies:
            # No key and no primer must leave the model's own key untouched.
            if result.transpose:
                raise OriginalityError("generation left the model's key space; cannot compare")
            # Cut to the length asked for, as the held-out melodies are: an ABC model writes
            # whole tunes, whose music can run past it (a Melody RNN's is exactly as long).
            melodies.append(np.asarray(melody.events, dtype=np.int64)[:steps])
    return melodies


def format_report(figures: dict) -> str:
    """The figures as an aligned table: generated, held-out (cut) and held-out (whole)."""
    settings = figures["settings"]
    columns = [figures[k] for k in SECTIONS]
    window = "first" if settings["held_out_window"] == "start" else "random"
    heads = ["generated", f"held-out ({window} {settings['bars']} bars)", "held-out (whole)"]

    def row(label: str, values: list[str]) -> str:
        return f"{label:<34}" + "".join(f"{value:>27}" for value in values)

    def pair(bars_key: str, notes_key: str) -> list[str]:
        return [
            f"{c['originality'][bars_key]:.2f} / {c['originality'][notes_key]:g}" for c in columns
        ]

    def share(bars: int) -> list[str]:
        key = f"over_{bars}_bars"
        return [
            f"{o['share_' + key]:.1%} ({o[key]}/{o['melodies']})"
            for o in (c["originality"] for c in columns)
        ]

    def sanity(key: str, fmt: str) -> list[str]:
        return ["-" if c["sanity"][key] is None else format(c["sanity"][key], fmt) for c in columns]

    lines = [
        f"model:  {settings['model']} ({settings['model_kind']})",
        f"data:   {settings['data']} (train {settings['train_melodies']} melodies, "
        f"{settings['train_notes']} notes; held-out {settings['held_out_melodies']} melodies)",
        f"sampled {settings['num']} melodies of {settings['bars']} bars, temperature "
        f"{settings['temperature']:g}, seed {settings['seed']}, no primer, model's key",
        "",
        row("", heads),
        "longest run shared with a training melody",
        row("  median (bars / notes)", pair("median_bars", "median_notes")),
        row("  90th percentile (bars / notes)", pair("p90_bars", "p90_notes")),
        row("  longest (bars / notes)", pair("max_bars", "max_notes")),
        row("  melodies sharing > 2 bars", share(2)),
        row("  melodies sharing > 4 bars", share(4)),
        row("notes in most likely key (mean)", sanity("in_key_share", ".1%")),
        row("notes in most likely key (pooled)", sanity("in_key_share_pooled", ".1%")),
        row("notes per bar (mean)", sanity("notes_per_bar", ".2f")),
        row("silent melodies", [str(c["sanity"]["silent_melodies"]) for c in columns]),
        "",
    ]
    longest = figures["generated"]["longest"]
    if longest:
        top = longest[0]
        where = f" in {top['train_source']}" if top["train_source"] else ""
        lines.append(
            f"longest generated run: melody {top['melody'] + 1}, {top['bars']:g} bars "
            f"from note {top['start_note'] + 1}{where}"
        )
    verdict_ = figures["verdict"]
    lines.append(f"verdict: {verdict_['status']}")
    lines += [f"  {reason}" for reason in verdict_["reasons"]]
    seconds = settings["seconds"]
    lines.append(
        f"time: index {seconds['index']:.2f} s, generation {seconds['generation']:.2f} s, "
        f"queries {seconds['queries']:.2f} s"
    )
    if "structure" in figures:
        from melodygen.core.structure import structure_lines

        structure = figures["structure"]
        lines += ["", *structure_lines(structure)]
        lines.append(f"time: structure {structure['settings']['seconds']:.2f} s")
    return "\n".join(lines)
