"""Compare three ABC parsers on real tunebooks: note_seq's, music21's and abc2midi.

    python benchmarks/abc_parsers.py --data ../shared/data [--limit N] [--skip-music21]

Every tune of ``<data>/nottingham/abc`` and ``<data>/folk_abc`` is split and cleaned by
:mod:`melodygen.io.abc` (chord symbols dropped), then given to each parser as the same
text. For each parser and collection it prints the parse rate (tunes giving a non-empty
melody), the seconds per tune, and, on the tunes all three parse, how often the pitch
sequences agree (the melody as played, repeats written out; highest note of a chord).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from melodygen.io import abc  # noqa: E402


def pitches(sequence) -> list[int]:
    """The melody's pitches in time order (the highest note where several start together)."""
    notes = sorted(
        (n for n in sequence.notes if n.velocity > 0),
        key=lambda n: (round(n.start_time, 4), -n.pitch),
    )
    result, last = [], None
    for note in notes:
        start = round(note.start_time, 4)
        if start != last:
            result.append(note.pitch)
        last = start
    return result


def parse_abc2midi(tune: abc.AbcTune) -> list[int]:
    return pitches(abc.parse_tune(tune))


def parse_note_seq(tune: abc.AbcTune) -> list[int]:
    from melodygen.io import music

    lines = ["X:1", *tune.text.splitlines()]
    with music._quiet_absl():
        parsed = music.abc_parser.ABCTune([music._prepare_abc_line(line) for line in lines])
        sequence = music._expand_repeats(music._drop_rest_placeholders(parsed.note_sequence))
    return pitches(sequence)


def parse_music21(tune: abc.AbcTune) -> list[int]:
    import music21

    score = music21.converter.parse("X:1\n" + tune.text, format="abc", forceSource=True)
    try:
        score = score.expandRepeats()
    except Exception:  # noqa: BLE001 - music21 refuses some layouts; keep as notated
        pass
    part = score.parts[0] if getattr(score, "parts", None) else score
    result = []
    for element in part.flatten().notes:
        if element.tie is not None and element.tie.type in ("stop", "continue"):
            continue
        result.append(max(p.midi for p in element.pitches))
    return result


PARSERS = {"abc2midi": parse_abc2midi, "note_seq": parse_note_seq, "music21": parse_music21}


def load(folder: str, limit: int | None) -> list[abc.AbcTune]:
    paths = sorted(glob.glob(os.path.join(folder, "**", "*.abc"), recursive=True))
    tunes = abc.tunes_in(paths)
    return tunes[:limit] if limit else tunes


def run(name: str, tunes: list[abc.AbcTune], parsers: dict) -> list[str]:
    results: dict[str, list[list[int] | None]] = {}
    seconds: dict[str, float] = {}
    for parser, function in parsers.items():
        outputs: list[list[int] | None] = []
        start = time.perf_counter()
        for tune in tunes:
            try:
                found = function(tune)
            except Exception:  # noqa: BLE001 - a parser's failure is what is counted
                found = None
            outputs.append(found or None)
        seconds[parser] = (time.perf_counter() - start) / max(len(tunes), 1)
        results[parser] = outputs
        print(f"  {name}: {parser} done", file=sys.stderr)
    common = [i for i in range(len(tunes)) if all(results[p][i] for p in parsers)]
    rows = []
    names = list(parsers)
    for parser in names:
        parsed = sum(1 for out in results[parser] if out)
        agree = []
        for other in names:
            if other == parser:
                continue
            same = sum(1 for i in common if results[parser][i] == results[other][i])
            prefix = sum(1 for i in common if results[parser][i][:24] == results[other][i][:24])
            agree.append(
                f"{other} {same / max(len(common), 1):.0%} ({prefix / max(len(common), 1):.0%})"
            )
        rows.append(
            f"| {name} | {parser} | {len(tunes)} | {parsed / max(len(tunes), 1):.1%} "
            f"| {seconds[parser] * 1000:.1f} | {len(common)} | {', '.join(agree)} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--limit", type=int, default=None, help="tunes per collection")
    parser.add_argument("--skip-music21", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    parsers = dict(PARSERS)
    if args.skip_music21:
        del parsers["music21"]
    rows = [
        "| collection | parser | tunes | parse rate | ms per tune | all parse "
        "| same pitch sequence as (first 24 notes) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, folder in (("Nottingham", "nottingham/abc"), ("folk_abc", "folk_abc")):
        tunes = load(os.path.join(args.data, folder), args.limit)
        rows += run(name, tunes, parsers)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
