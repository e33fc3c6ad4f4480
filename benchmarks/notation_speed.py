"""Notation speed: 8 tunes of 16 bars as MusicXML, ABC and an engraved score (SVG).

Measures, after a warm-up (verovio's toolkit and fonts loaded once per process):
- ``notation.musicxml_bytes`` (written here from the grid) for 8 tunes;
- ``notation.score_svg`` (that MusicXML engraved by verovio) for the same 8: the
  studio's score view, the goal being 0.5 s for all 8;
- ``notation.abc_text`` (``io.abc.to_abc``) for the 8;
- for comparison, music21 10.5.1 writing the same melodies as MusicXML
  (``stream.write("musicxml")``), the other way to make MusicXML.

Tunes are random melodies of eighths, quarters and sixteenths in 6/8 and 4/4, D minor
(the speed does not depend on the notes). Usage:
python benchmarks/notation_speed.py [--repeats 5] [--bars 16] [--tunes 8]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from melodygen import notation
from melodygen.core.generation import GeneratedMelody
from melodygen.theory import NO_EVENT, Meter


def tunes(count: int, bars: int, meter: Meter, seed: int = 0) -> list[GeneratedMelody]:
    rng = np.random.default_rng(seed)
    made = []
    for index in range(count):
        events: list[int] = []
        steps = bars * meter.steps_per_bar
        while len(events) < steps:
            length = int(rng.choice([1, 2, 2, 2, 3, 4, 6]))
            events += [int(rng.integers(60, 80))] + [NO_EVENT] * (length - 1)
        made.append(
            GeneratedMelody(
                events=events[:steps],
                primer_steps=0,
                log_likelihood=0.0,
                qpm=120.0,
                index=index,
                meter=meter,
                key=2,
                mode="minor",
            )
        )
    return made


def timed(function, melodies, repeats: int) -> float:
    """Median seconds for all ``melodies`` over ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for melody in melodies:
            function(melody)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def music21_musicxml(melody: GeneratedMelody) -> bytes:
    from music21 import key, meter, note, stream

    part = stream.Part()
    part.append(meter.TimeSignature(str(melody.meter)))
    part.append(key.Key("d"))
    current = None
    for step, event in enumerate([*melody.events, -1]):
        if event == NO_EVENT:
            continue
        if current is not None:
            made = note.Note(current[1], quarterLength=(step - current[0]) / 4)
            part.insert(current[0] / 4, made)
            current = None
        if event >= 0:
            current = (step, event)
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    return GeneralObjectExporter(part).parse()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bars", type=int, default=16)
    parser.add_argument("--tunes", type=int, default=8)
    args = parser.parse_args()
    started = time.perf_counter()
    import verovio  # noqa: F401

    print(f"import verovio: {time.perf_counter() - started:.3f} s")
    started = time.perf_counter()
    notation.score_svg(tunes(1, 2, Meter(4, 4))[0])
    print(f"first score (toolkit and fonts loaded): {time.perf_counter() - started:.3f} s")
    print(f"{args.tunes} tunes of {args.bars} bars, median of {args.repeats}:")
    for meter in (Meter(6, 8), Meter(4, 4)):
        melodies = tunes(args.tunes, args.bars, meter)
        notes = sum(len(m.pitches()) for m in melodies)
        xml = timed(notation.musicxml_bytes, melodies, args.repeats)
        svg = timed(notation.score_svg, melodies, args.repeats)
        abc = timed(notation.abc_text, melodies, args.repeats)
        m21 = timed(music21_musicxml, melodies, max(1, args.repeats // 2))
        print(
            f"  {meter} ({notes} notes): MusicXML {xml:.3f} s, score SVG (MusicXML + verovio) "
            f"{svg:.3f} s, ABC {abc:.3f} s; music21 MusicXML {m21:.3f} s"
        )
    abc_tunes = real_abc_tunes(args.tunes)
    started = time.perf_counter()
    notation.score_svg(abc_tunes[0])
    print(f"first ABC score (the engraver process started): {time.perf_counter() - started:.3f} s")
    svg = timed(notation.score_svg, abc_tunes, args.repeats)
    xml = timed(notation.musicxml_bytes, abc_tunes, args.repeats)
    endings = sum("|1" in m.text or "[1" in m.text for m in abc_tunes)
    print(
        f"  {args.tunes} Nottingham tunes from their ABC text ({endings} with variant endings; "
        f"read and drawn in the engraver process): score SVG {svg:.3f} s, MusicXML {xml:.3f} s"
    )


def real_abc_tunes(count: int) -> list[GeneratedMelody]:
    """The first ``count`` Nottingham jigs with variant endings, as melodies with their text
    (as the abc_char family returns its tunes)."""
    from pathlib import Path

    from melodygen.io.abc import parse_tune, read_tunebook, variant_endings

    book = Path(__file__).resolve().parent.parent.parent / "shared/data/nottingham/abc/jigs.abc"
    chosen = [tune for tune in read_tunebook(book)[0] if variant_endings(tune)[1]][:count]
    return [
        GeneratedMelody.from_sequence(parse_tune(tune), 0.0, index=i, text=tune.text)
        for i, tune in enumerate(chosen)
    ]


if __name__ == "__main__":
    main()
