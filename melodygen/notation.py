"""Sheet music for any melody: MusicXML, ABC, and an engraved score as SVG.

Every melody MelodyGen shows (a generated one of any family, or a primer) is a line of
events on the sixteenth-note grid with a meter, a key and a tempo. This module writes it
as notation a musician reads:

- :func:`musicxml_bytes`: MusicXML 4.0 (partwise), written here from the grid, not
  through music21 (about 40 times faster): one part, the key signature and meter of the
  melody, notes spelled in its key (the key signature's notes first; other black keys
  as flats in flat keys and sharps otherwise, a minor key's raised third, sixth and
  seventh sharp: F#, B and C# in D minor),
  accidentals where the bar needs them, notes split at bar lines and beats and tied,
  eighths and sixteenths beamed by beat.
- :func:`abc_text`: the family's own ABC text when it writes one (``melody.text``),
  else the melody written by :func:`melodygen.io.abc.to_abc`.
- :func:`score_svg`: the MusicXML engraved by verovio (the C++ engraver of the Music
  Encoding Initiative, on PyPI as ``verovio``) into one SVG, its systems broken to the
  width asked for.

A melody with its own ABC text (``melody.text``: the abc_char family's tunes) is written
from that text, not from the grid, when no other key, mode, meter or tempo is asked for:
the grid cannot hold a triplet (``(3ABA`` would come out as 1, 2 and 1 sixteenths), a
repeat sign (repeats are played out) or an inline meter change. Its score is the text
engraved by verovio (which reads ABC), its MusicXML the text read by verovio (as MEI)
and written by music21 (verovio writes no MusicXML; music21's own ABC parser loses inline
meter changes); either falls back to the grid if the text cannot be read that way.

What cannot be written (a tune the family could not read as music, a melody without
notes, events out of range, one far too long) raises :class:`NotationError`, one line.
A melody without a key (a model that keeps keys) is written in the key estimated from
its notes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

from melodygen.errors import MelodyGenError, one_line
from melodygen.theory import (
    FOUR_FOUR,
    MODES,
    NO_EVENT,
    NOTE_OFF,
    STEPS_PER_QUARTER,
    Meter,
    estimate_key,
    key_signature_fifths,
    parse_key,
    parse_meter,
    signature_alterations,
    spell,
)

__all__ = [
    "MAX_NOTATION_STEPS",
    "NotationError",
    "abc_text",
    "musicxml_bytes",
    "score_svg",
]

MAX_NOTATION_STEPS = 8192
"""The longest melody written as notation: 128 bars of 4/4 (generation stops at 4,096)."""
SCORE_WIDTH = 850
"""Pixels a score is drawn across by default: a result card at twice its width on screen."""
SCORE_SCALE = 40
"""Verovio's scale (percent of its staff size) for the studio: five lines in 40 px or so."""

logger = logging.getLogger(__name__)

_DEFAULT_QPM = 120.0
_TYPES = {1: "16th", 2: "eighth", 4: "quarter", 8: "half", 16: "whole", 32: "breve"}
_NOTATABLE = (32, 24, 16, 12, 8, 6, 4, 3, 2, 1)
"""Lengths in steps that one note head (with one dot at most) can show, longest first."""
_XML_MODE = {
    "major": "major",
    "minor": "minor",
    "harmonic_minor": "minor",
    "dorian": "dorian",
    "phrygian": "phrygian",
    "lydian": "lydian",
    "mixolydian": "mixolydian",
    "locrian": "locrian",
    "major_pentatonic": "major",
    "minor_pentatonic": "minor",
}


class NotationError(MelodyGenError):
    """A melody that cannot be written as notation; the message says why, in one line."""


@dataclass(frozen=True)
class _Music:
    """What notation needs of a melody, checked."""

    notes: tuple[tuple[int, int, int], ...]  # (start step, stop step, pitch)
    steps: int
    meter: Meter
    key: int
    mode: str
    qpm: float
    title: str


def _music(
    melody, title: str = "", key=None, mode: str | None = None, meter=None, qpm=None
) -> _Music:
    """A GeneratedMelody, a Primer or a list of events, with the settings it is written in
    (each one the melody's own unless given)."""
    problem = getattr(melody, "problem", None)
    if problem:
        raise NotationError(f"this tune could not be read as music, so it has no score: {problem}")
    events = getattr(melody, "events", melody)
    if isinstance(events, (str, bytes)) or not isinstance(events, Sequence):
        raise NotationError(f"a melody is a list of events, not {type(events).__name__}")
    if len(events) > MAX_NOTATION_STEPS:
        raise NotationError(
            f"the melody is {len(events):,} steps long; at most {MAX_NOTATION_STEPS:,} "
            "(128 bars of 4/4) are written as notation"
        )
    notes = []
    current = None
    for step, event in enumerate(events):
        if isinstance(event, (bool, float, str)) or not hasattr(event, "__index__"):
            raise NotationError(f"event {step} ({event!r}) is not a whole number")
        event = int(event)
        if not NO_EVENT <= event <= 127:
            raise NotationError(
                f"event {step} ({event}) is out of range: events are MIDI pitches 0-127, "
                "-1 (note-off) or -2 (no event)"
            )
        if event == NO_EVENT:
            continue
        if current is not None:
            notes.append((current[0], step, current[1]))
            current = None
        if event != NOTE_OFF:
            current = (step, event)
    if current is not None:
        notes.append((current[0], len(events), current[1]))
    if not notes:
        raise NotationError("the melody has no notes, so there is no score to show")
    try:
        meter = parse_meter(meter) or getattr(melody, "meter", None) or FOUR_FOUR
        mode = mode or getattr(melody, "mode", None) or "major"
        if mode not in MODES:
            raise NotationError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
        tonic = parse_key(key) if key is not None else getattr(melody, "key", None)
        if tonic is None:  # a model that keeps keys: spell in the key its notes are in
            found = estimate_key(list(events))
            tonic, mode = found if found is not None else (0, "major")
    except NotationError:
        raise
    except MelodyGenError as error:
        raise NotationError(one_line(error)) from None
    qpm = qpm or getattr(melody, "qpm", None) or _DEFAULT_QPM
    if not 1 <= float(qpm) <= 2000:
        raise NotationError(f"tempo {qpm} BPM is out of range (1-2000)")
    return _Music(tuple(notes), len(events), meter, int(tonic), mode, float(qpm), str(title))


# Spelling ---------------------------------------------------------------------------------


# Rhythm -----------------------------------------------------------------------------------


@dataclass
class _Item:
    start: int
    length: int
    pitch: int | None
    tie_stop: bool = False
    tie_start: bool = False


def _pieces(start: int, stop: int, meter: Meter) -> list[tuple[int, int]]:
    """A span inside one bar as note heads: split at the next beat when it starts off the
    beat, then into the longest lengths one head (dotted at most) can show."""
    beat = meter.steps_per_beat
    pieces = []
    while start < stop:
        offset = start % beat
        end = stop if offset == 0 else min(stop, start + beat - offset)
        length = end - start
        size = next(s for s in _NOTATABLE if s <= length)
        pieces.append((start, start + size))
        start += size
    return pieces


def _bars(music: _Music) -> list[list[_Item]]:
    """Each bar's notes and rests, split at bar lines and beats, tied across the splits."""
    bar = music.meter.steps_per_bar
    total = max(music.steps, max(stop for _, stop, _ in music.notes))
    count = -(-total // bar)
    bars: list[list[_Item]] = [[] for _ in range(count)]
    spans: list[tuple[int, int, int | None]] = []
    cursor = 0
    for start, stop, pitch in [*music.notes, (count * bar, count * bar, None)]:
        if start > cursor:
            spans.append((cursor, start, None))
        if stop > start:
            spans.append((start, stop, pitch))
        cursor = max(cursor, stop)
    for start, stop, pitch in spans:
        pieces = []
        position = start
        while position < stop:
            end = min(stop, (position // bar + 1) * bar)
            if pitch is None and position % bar == 0 and end - position == bar:
                pieces.append((position, end))  # a whole bar's rest
            else:
                pieces += _pieces(position, end, music.meter)
            position = end
        for index, (begin, end) in enumerate(pieces):
            tied = pitch is not None
            last = index == len(pieces) - 1
            bars[begin // bar].append(
                _Item(begin, end - begin, pitch, tied and index > 0, tied and not last)
            )
    return bars


def _beams(items: list[_Item], meter: Meter) -> dict[int, list[str]]:
    """MusicXML beam values per item index: eighths and shorter beamed within each beat
    (each half bar of 4/4 when it holds only eighths), rests and longer notes breaking."""
    beat = meter.steps_per_beat
    if meter.numerator == 4 and meter.denominator == 4:
        group_of = {}  # eighths only in a half bar: one beam of four
        for half in (0, 8):
            inside = [
                i
                for i, item in enumerate(items)
                if half <= item.start % 16 < half + 8 and item.start % 16 + item.length <= half + 8
            ]
            covered = sum(items[i].length for i in inside)
            if covered == 8 and all(
                items[i].pitch is not None and items[i].length == 2 for i in inside
            ):
                for i in inside:
                    group_of[i] = ("half", items[i].start // 8)
    else:
        group_of = {}
    groups: dict[object, list[int]] = {}
    for index, item in enumerate(items):
        if item.pitch is None or item.length >= 4 or item.length == 0:
            continue
        if meter.denominator == 8 and not meter.compound:
            continue
        key = group_of.get(index, ("beat", item.start // beat))
        groups.setdefault(key, []).append(index)
    beams: dict[int, list[str]] = {}
    for members in groups.values():
        # consecutive runs only (a rest or a longer note between breaks the beam)
        runs: list[list[int]] = [[members[0]]]
        for index in members[1:]:
            if index == runs[-1][-1] + 1:
                runs[-1].append(index)
            else:
                runs.append([index])
        for run in runs:
            if len(run) < 2:
                continue
            for position, index in enumerate(run):
                first, last = position == 0, position == len(run) - 1
                values = ["begin" if first else "end" if last else "continue"]
                if items[index].length == 1:  # a sixteenth: a second beam
                    before = not first and items[run[position - 1]].length == 1
                    after = not last and items[run[position + 1]].length == 1
                    if before and after:
                        values.append("continue")
                    elif after:
                        values.append("begin")
                    elif before:
                        values.append("end")
                    else:
                        values.append("backward hook" if last else "forward hook")
                beams[index] = values
    return beams


# MusicXML ---------------------------------------------------------------------------------


def musicxml_bytes(
    melody_or_primer,
    title: str = "",
    key: int | str | None = None,
    mode: str | None = None,
    meter=None,
    qpm: float | None = None,
) -> bytes:
    """The melody (a GeneratedMelody, a Primer, or a list of grid events) as MusicXML.

    ``key``, ``mode``, ``meter`` and ``qpm`` default to the melody's own; without a key,
    the key estimated from its notes. A melody with a form (its ``sections``) gets each
    section's letter as a rehearsal mark (``A'``: a varied repeat) and a double bar line
    before it, so a player sees the parts return. Raises :class:`NotationError` (one line)
    for what cannot be written.
    """
    return _musicxml(melody_or_primer, title, key, mode, meter, qpm, from_text=True)


def _musicxml(melody_or_primer, title, key, mode, meter, qpm, from_text: bool) -> bytes:
    """:func:`musicxml_bytes`; ``from_text`` False: from the grid, even for a melody with
    its own ABC text (a score whose text verovio could not read)."""
    music = _music(melody_or_primer, title, key, mode, meter, qpm)
    text = _own_abc(melody_or_primer, key, mode, meter, qpm) if from_text else None
    if text is not None:
        data = _abc_musicxml(text, music.title)
        if data is not None:
            return data
    fifths = key_signature_fifths(music.key, music.mode)
    signature = signature_alterations(fifths)
    pitches = [pitch for _, _, pitch in music.notes]
    low = sorted(pitches)[len(pitches) // 2] < 55  # middle note below G3: bass clef
    clef = "<sign>F</sign><line>4</line>" if low else "<sign>G</sign><line>2</line>"
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<!DOCTYPE score-partwise PUBLIC "-//Recordare//DTD MusicXML 4.0 Partwise//EN" '
        '"http://www.musicxml.org/dtds/partwise.dtd">',
        '<score-partwise version="4.0">',
    ]
    if music.title:
        out.append(f"<work><work-title>{escape(music.title)}</work-title></work>")
    out += [
        "<identification><encoding><software>MelodyGen</software></encoding></identification>",
        '<part-list><score-part id="P1"><part-name print-object="no">Melody</part-name>'
        "</score-part></part-list>",
        '<part id="P1">',
    ]
    marks = _section_marks(melody_or_primer, music.meter)
    for number, items in enumerate(_bars(music), start=1):
        out.append(f'<measure number="{number}">')
        if number == 1:
            out.append(
                f"<attributes><divisions>{STEPS_PER_QUARTER}</divisions>"
                f"<key><fifths>{fifths}</fifths><mode>{_XML_MODE[music.mode]}</mode></key>"
                f"<time><beats>{music.meter.numerator}</beats>"
                f"<beat-type>{music.meter.denominator}</beat-type></time>"
                f"<clef>{clef}</clef></attributes>"
            )
            out.append(
                '<direction placement="above"><direction-type><metronome>'
                f"<beat-unit>quarter</beat-unit><per-minute>{round(music.qpm)}</per-minute>"
                f'</metronome></direction-type><sound tempo="{music.qpm:g}"/></direction>'
            )
        if number - 1 in marks:
            out.append(
                '<direction placement="above"><direction-type>'
                f"<rehearsal>{escape(marks[number - 1])}</rehearsal></direction-type></direction>"
            )
        beams = _beams(items, music.meter)
        state: dict[tuple[str, int], int] = {}
        for index, item in enumerate(items):
            out.append(_note_xml(item, index, beams, signature, music, state))
        if number in marks:  # the next bar starts a section
            out.append('<barline location="right"><bar-style>light-light</bar-style></barline>')
        out.append("</measure>")
    out.append("</part></score-partwise>")
    return "\n".join(out).encode("utf-8")


def _section_marks(melody, meter: Meter) -> dict[int, str]:
    """Bar index (from 0) -> the letter of the form's section starting there (``A'`` for a
    varied repeat); {} for a melody without a form."""
    marks = {}
    for section in getattr(melody, "sections", ()) or ():
        marks[section.start // meter.steps_per_bar] = section.letter + (
            "'" if section.kind == "varied" else ""
        )
    return marks


def _abc_with_marks(text: str, marks: dict[int, str]) -> str:
    """ABC ``text`` (one tune as :func:`melodygen.io.abc.to_abc` writes it) with each
    section's letter written above its first bar (an annotation, ``"^A"``)."""
    if not marks:
        return text
    lines = text.split("\n")
    body = next((i + 1 for i, line in enumerate(lines) if line.startswith("K:")), len(lines))
    bar, out = 0, []
    for line in lines[body:]:
        written, at_bar_start = [], True
        for char in line:
            if char == "|":
                bar, at_bar_start = bar + 1, True
            elif at_bar_start and not char.isspace() and char not in "]:":
                if bar in marks:
                    written.append(f'"^{marks[bar]}"')
                at_bar_start = False
            written.append(char)
        out.append("".join(written))
    return "\n".join(lines[:body] + out)


def _note_xml(item: _Item, index: int, beams, signature, music: _Music, state: dict) -> str:
    whole_bar_rest = item.pitch is None and item.length == music.meter.steps_per_bar
    size = item.length
    dotted = size not in _TYPES
    kind = _TYPES.get(size * 2 // 3 if dotted else size)
    parts = ["<note>"]
    if item.pitch is None:
        parts.append('<rest measure="yes"/>' if whole_bar_rest else "<rest/>")
    else:
        letter, alter, octave = spell(item.pitch, music.key, music.mode)
        parts.append(f"<pitch><step>{letter}</step>")
        if alter:
            parts.append(f"<alter>{alter}</alter>")
        parts.append(f"<octave>{octave}</octave></pitch>")
    parts.append(f"<duration>{size}</duration>")
    if item.tie_stop:
        parts.append('<tie type="stop"/>')
    if item.tie_start:
        parts.append('<tie type="start"/>')
    if kind is not None and not whole_bar_rest:
        parts.append(f"<type>{kind}</type>" + ("<dot/>" if dotted else ""))
    if item.pitch is not None:
        current = state.get((letter, octave), signature.get(letter, 0))
        if alter != current and not item.tie_stop:
            sign = {1: "sharp", -1: "flat", 0: "natural", 2: "double-sharp", -2: "flat-flat"}
            parts.append(f"<accidental>{sign[alter]}</accidental>")
        state[(letter, octave)] = alter
        for number, value in enumerate(beams.get(index, []), start=1):
            parts.append(f'<beam number="{number}">{value}</beam>')
        ties = []
        if item.tie_stop:
            ties.append('<tied type="stop"/>')
        if item.tie_start:
            ties.append('<tied type="start"/>')
        if ties:
            parts.append("<notations>" + "".join(ties) + "</notations>")
    parts.append("</note>")
    return "".join(parts)


def _own_abc(melody, key=None, mode=None, meter=None, qpm=None) -> str | None:
    """The melody's own ABC text (with an ``X:`` line) when its notation is written from
    it: it has one, could be read as music, and no other key, mode, meter or tempo is
    asked for; else None (the grid)."""
    if any(setting is not None for setting in (key, mode, meter, qpm)):
        return None
    text = getattr(melody, "text", None)
    if not isinstance(text, str) or not text.strip() or getattr(melody, "problem", None):
        return None
    return as_tune(text)


_METER_SIG = re.compile(r'<meterSig\b[^>]*\bcount="(\d+)"[^>]*\bunit="(\d+)"')
_MEASURE_START = re.compile(r"<measure\b")
_MEASURE_END = re.compile(r"</measure>")


def _endings(text: str) -> tuple[int, list[tuple[int, int, str]]]:
    """The tune's bars of music and its variant endings as (first bar, last bar, number);
    (0, []) when it cannot be read."""
    from melodygen.io.abc import variant_endings

    try:
        return variant_endings(text)
    except MelodyGenError:
        return 0, []


def _abc_mei(toolkit, text: str) -> tuple[str, int, list[tuple[int, int, str]]] | None:
    """The ABC tune read by verovio, as MEI, with the tune's bars of music and variant
    endings (:func:`_endings`); None where verovio cannot read it."""
    toolkit.setOptions({"inputFrom": "abc"})
    if not toolkit.loadData(text):
        return None
    return toolkit.getMEI(), *_endings(text)


def _with_endings(data: str, bars: int, spans: list[tuple[int, int, str]]) -> str | None:
    """Verovio's MEI of an ABC tune with its variant endings drawn: verovio 6.4.1's ABC
    reader drops ``[1`` and ``[2``, so they are put back as MEI ``<ending>`` elements
    around the measures of each, where verovio made one measure per bar of music as
    MelodyGen counts them; None where it did not."""
    starts = [match.start() for match in _MEASURE_START.finditer(data)]
    ends = [match.end() for match in _MEASURE_END.finditer(data)]
    if not len(starts) == len(ends) == bars:
        return None
    for first, last, number in reversed(spans):
        data = data[: ends[last]] + "</ending>" + data[ends[last] :]
        data = (
            data[: starts[first]]
            + f'<ending n="{escape(number)}" label="{escape(number)}.">'
            + data[starts[first] :]
        )
    return data


def _abc_musicxml(text: str, title: str = "") -> bytes | None:
    """The ABC tune as MusicXML: read by verovio (as MEI), then written by music21, its
    tuplets, repeat signs and meter changes kept (music21's own ABC parser loses inline
    meter changes; verovio 6.4.1 reads no variant endings, [1 and [2, in the score
    either: they are put back, see :func:`_with_endings`); None where either cannot read
    it."""
    try:
        from music21 import mei, metadata, meter, spanner
        from music21.musicxml.m21ToXml import GeneralObjectExporter

        data = _ENGRAVER.call("read", text=text)
        if data is None:
            return None
        bars, spans = _endings(text)
        # music21 reads trans.semi="0" with no trans.diat as a zeroth, no interval.
        score = mei.MeiToM21Converter(data.replace(' trans.semi="0"', "")).run()
        part = score.parts[0]
        measures = list(part.getElementsByClass("Measure"))
        first = _METER_SIG.search(data)  # music21 reads only meter.count attributes
        if first and measures and measures[0].timeSignature is None:
            measures[0].insert(0, meter.TimeSignature(f"{first[1]}/{first[2]}"))
        for start, last, number in spans if len(measures) == bars else []:
            # verovio's ABC reader drops variant endings (see _with_endings)
            part.insert(0, spanner.RepeatBracket(measures[start : last + 1], number=number))
        score.metadata = metadata.Metadata(title=title or _abc_title(text))
        exporter = GeneralObjectExporter(score)
        exporter.makeNotation = False  # verovio made the measures: five times as fast
        return exporter.parse()
    except Exception as error:  # noqa: BLE001 - the grid's MusicXML instead
        logger.warning("could not write this ABC tune as MusicXML: %s", one_line(error))
        return None


def _abc_title(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("T:") and line[2:].strip():
            return " ".join(line[2:].split())
    return ""


# ABC --------------------------------------------------------------------------------------


def as_tune(text: str) -> str:
    """ABC text as a tune of its own file: an ``X:`` line first (a model's text starts at
    its ``T:`` line)."""
    return text if text.startswith("X:") else "X:1\n" + text


def abc_text(melody, title: str = "") -> str:
    """The melody as one ABC tune: the family's own text when it has one (a tune that could
    not be read as music included, so it can be read and fixed), else the melody written
    from its notes (:func:`melodygen.io.abc.to_abc`) in its key, meter and tempo."""
    text = getattr(melody, "text", None)
    if text:
        return as_tune(text)
    from melodygen.io.abc import to_abc

    music = _music(melody, title)
    events = getattr(melody, "events", melody)
    try:
        text = to_abc(
            list(events),
            title=music.title,
            meter=music.meter,
            key=music.key,
            mode=music.mode,
            qpm=music.qpm,
        )
        return _abc_with_marks(text, _section_marks(melody, music.meter))
    except MelodyGenError as error:
        raise NotationError(one_line(error)) from None


# SVG --------------------------------------------------------------------------------------

_TOOLKIT = None
_TOOLKIT_LOCK = threading.Lock()


def _toolkit():
    """The process's verovio toolkit (not thread-safe: used under ``_TOOLKIT_LOCK``)."""
    global _TOOLKIT
    if _TOOLKIT is None:
        try:
            import verovio
        except ImportError as error:  # pragma: no cover - pinned in requirements.txt
            raise NotationError(
                f"the score engraver verovio is not installed ({one_line(error)}); "
                "pip install -r requirements.txt"
            ) from None
        verovio.enableLog(verovio.LOG_OFF)
        _TOOLKIT = verovio.toolkit()
    return _TOOLKIT


def score_svg(
    melody_or_primer,
    title: str = "",
    key: int | str | None = None,
    mode: str | None = None,
    meter=None,
    qpm: float | None = None,
    width: int = SCORE_WIDTH,
    scale: int = SCORE_SCALE,
) -> str:
    """The melody engraved as one SVG picture ``width`` pixels wide, its systems broken to
    that width (as many as it needs, one under the other), at verovio's ``scale``.

    Settings as :func:`musicxml_bytes`; a melody with its own ABC text (and no other
    settings) is that text engraved. Raises :class:`NotationError` (one line).
    """
    if not 100 <= int(width) <= 10_000 or not 5 <= int(scale) <= 200:
        raise NotationError(f"a score is 100-10,000 px wide at scale 5-200 (got {width}, {scale})")
    text = _own_abc(melody_or_primer, key, mode, meter, qpm)
    if text is not None:
        _music(melody_or_primer, title)  # what cannot be notated says so, as from the grid
        try:
            return _engrave(text, "abc", title, width, scale)
        except NotationError as error:
            logger.warning("verovio could not engrave this ABC tune: %s", error)
    data = _musicxml(melody_or_primer, title, key, mode, meter, qpm, from_text=text is None)
    data = data.decode("utf-8")
    return _engrave(data, "musicxml", title, width, scale)


def _engrave(data: str, kind: str, title: str, width: int, scale: int) -> str:
    """``data`` (MusicXML or ABC, ``kind``) engraved by verovio as one sized SVG. ABC is
    read and drawn in the engraver process (:class:`_Engraver`), its variant endings
    kept (:func:`_with_endings`); MusicXML (MelodyGen's own) in this process."""
    options = {
        "inputFrom": kind,
        "pageWidth": round(int(width) * 100 / int(scale)),
        "pageHeight": 60000,
        "adjustPageHeight": True,
        "scale": int(scale),
        "breaks": "auto",
        "header": "none" if not title else "auto",
        "footer": "none",
        "pageMarginTop": 40,
        "pageMarginBottom": 20,
        "pageMarginLeft": 20,
        "pageMarginRight": 20,
        "svgViewBox": True,
        "svgRemoveXlink": True,
        "mnumInterval": 0,
    }
    if kind == "abc":
        svg = _ENGRAVER.call("draw", text=data, options=options)
    else:
        with _TOOLKIT_LOCK:
            svg = _draw(_toolkit(), data, options)
    return _sized(svg, int(width))


def _draw(toolkit, data: str, options: dict) -> str:
    toolkit.setOptions(options)
    if not toolkit.loadData(data):
        name = {"musicxml": "MusicXML", "abc": "ABC"}.get(options["inputFrom"], "notation")
        raise NotationError(f"the score engraver could not read the melody's {name}")
    svg = toolkit.renderToSVG(1)
    if "<svg" not in svg:
        raise NotationError("the score engraver drew nothing for this melody")
    return svg


_ENDING_THEN_BRACKET = re.compile(r"(\[\d+(?:[,-]\d+)*)(?=[\[\"])")


def _for_verovio(text: str) -> str:
    """ABC as verovio 6.4.1 reads it without crashing: a space after an ending that a
    chord, an inline field or a chord symbol follows at once (``[1[fA]`` -> ``[1 [fA]``,
    ``[1"G"`` -> ``[1 "G"``: the same music)."""
    return _ENDING_THEN_BRACKET.sub(r"\1 ", text)


def _draw_abc(text: str, options: dict) -> str:
    """In the engraver process: the ABC tune drawn, through MEI with its variant endings
    put back when it has any."""
    text = _for_verovio(text)
    toolkit = _toolkit()
    if _endings(text)[1]:
        read = _abc_mei(toolkit, text)
        drawn = _with_endings(*read) if read is not None else None
        if drawn is not None:
            return _draw(toolkit, drawn, {**options, "inputFrom": "mei"})
    return _draw(toolkit, text, options)


def _read_abc(text: str) -> str | None:
    """In the engraver process: the ABC tune as verovio's MEI, or None."""
    read = _abc_mei(_toolkit(), _for_verovio(text))
    return read[0] if read is not None else None


# The engraver process ----------------------------------------------------------------------

ENGRAVER_TIMEOUT_S = 30.0
"""The longest one ABC tune may take to read and draw (a tune takes ~20 ms)."""


class _Engraver:
    """The engraver process (:mod:`melodygen.engraver`), where verovio reads ABC.

    Verovio's ABC reader is native code that some tunes crash outright; in a process of
    its own, a crash or a hang costs that one score: :meth:`call` raises
    :class:`NotationError` (one line), the process is started again for the next tune,
    and callers draw the melody from its notes instead. One process, started on first
    use, serves every thread in turn.
    """

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def call(self, op: str, **arguments):
        """One request and its reply (see :mod:`melodygen.engraver`); raises
        :class:`NotationError` for the engraver's own one-line error, a crash, a reply
        that is not one, or no whole reply within :data:`ENGRAVER_TIMEOUT_S`."""
        request = (json.dumps({"op": op, **arguments}) + "\n").encode("utf-8")
        with self.lock:
            try:
                if self.process is None or self.process.poll() is not None:
                    self.process = subprocess.Popen(
                        [sys.executable, "-m", "melodygen.engraver"],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL,
                    )
                self.process.stdin.write(request)
                self.process.stdin.flush()
                line = self._reply_line(self.process.stdout.fileno())
                reply = json.loads(line)
                if not isinstance(reply, dict) or not reply.keys() & {"result", "error"}:
                    raise ValueError("not a reply")
            except (OSError, ValueError) as error:  # died, never started, garbled
                self.stop()
                raise NotationError(
                    f"the score engraver (verovio) took over {ENGRAVER_TIMEOUT_S:g} s on "
                    "this ABC tune and was stopped"
                    if isinstance(error, TimeoutError)
                    else "the score engraver (verovio) crashed reading this ABC tune"
                ) from None
        if "error" in reply:
            raise NotationError(reply["error"])
        return reply["result"]

    @staticmethod
    def _reply_line(fd: int) -> bytes:
        """Bytes up to the first newline, read with a deadline for the whole reply (a
        score's SVG is hundreds of KB, more than one pipe buffer)."""
        deadline = time.monotonic() + ENGRAVER_TIMEOUT_S
        chunks: list[bytes] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise OSError("the engraver process ended")
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                return b"".join(chunks)
            if b"\n" in chunk:
                raise ValueError("more than one reply")  # the protocol is one line a turn

    def stop(self) -> None:
        """End the process (crashed, stuck or no longer needed); the next call starts one."""
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()


_ENGRAVER = _Engraver()


_VIEW_BOX = re.compile(r'<svg viewBox="0 0 (\d+(?:\.\d+)?) (\d+(?:\.\d+)?)"')


def _sized(svg: str, width: int) -> str:
    """The SVG from its outer <svg> on, with its size in pixels written out (an <img>
    showing it then knows its shape before it is drawn)."""
    svg = svg[svg.find("<svg") :]
    match = _VIEW_BOX.match(svg)
    if match:
        size = f' width="{float(match.group(1)):g}" height="{float(match.group(2)):g}"'
        svg = svg[: match.end()] + size + svg[match.end() :]
    return svg
