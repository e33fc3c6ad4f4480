"""Primers: the opening notes a melody generator continues.

A primer is a list of Magenta melody events, one per sixteenth-note step, starting on
a bar line: ``>= 0`` starts a note at that MIDI pitch, ``-1`` ends the sounding note
(note-off), ``-2`` is no event (the note or rest goes on). It can be typed in the note
syntax below, given as Magenta's event list, or taken from a track of a MIDI or
MusicXML file. It carries its meter (16 steps per 4/4 bar, 12 per 3/4 or 6/8 bar) and
its key: a file's key signature, else the key estimated from its notes.

Note syntax
-----------
- Tokens are separated by spaces or commas; ``|`` bar lines are allowed anywhere and
  ignored (they are only there to help you read).
- A note is a letter A-G (upper or lower case), optional accidentals ``#`` or ``b`` (one
  or two: ``C#4``, ``Bb3``, ``F##4``, ``Ebb5``), then an octave from -1 to 9 (C4 = MIDI
  60, middle C; C-1 = 0, G9 = 127). An optional duration ``:N`` follows, in sixteenth
  steps, default 4 (a quarter note): ``C4:2`` is an eighth note, ``G4:8`` a half note,
  ``C4:16`` a whole note.
- A rest is ``r`` (or ``R``), with the same optional ``:N``, default 4.
- ``-`` holds the previous note or rest one more quarter (4 steps); several in a row
  (``- -`` or ``--``) hold longer.
- Each note is a note-on followed by no-events for the rest of its duration; a rest is
  a note-off (only if a note was sounding) followed by no-events. Notes of the same
  pitch one after the other are separate attacks, not one long note.
- A time signature may come first, ``3/4 D4 F#4 A4``; without one the primer is 4/4.
- A typed primer may be at most 4096 steps (256 bars of 4/4) long.

Example: ``C4 E4 G4:2 r:2 | C5 - -`` is C, E, an eighth-note G, an eighth rest, then a
C an octave up held for three quarters.

Event list
----------
Magenta's events in brackets, e.g. ``[60, -2, 62, -1]``: used exactly as written,
except that note-offs before the first note become no-events, as in
``note_seq.Melody``.
"""

from __future__ import annotations

import bisect
import io
import math
import operator
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pretty_midi

from melodygen.errors import MelodyGenError, one_line
from melodygen.io.music import (
    MIDI_SUFFIXES,
    check_sequence_limits,
    load_note_sequences,
    melody_instruments,
    note_seq,
    sequences_lib,
)
from melodygen.limits import MAX_MUSICXML_BYTES, PRIMER_MIDI, check_file_size, check_primer_text
from melodygen.theory import (
    FOUR_FOUR,
    NO_EVENT,
    NOTE_OFF,
    STEPS_PER_BAR,
    STEPS_PER_QUARTER,
    Meter,
    MeterError,
    estimate_key,
    key_name,
    parse_meter,
    pitch_name,
)

__all__ = [
    "DEFAULT_DURATION",
    "MAX_TYPED_STEPS",
    "NOTE_OFF",
    "NO_EVENT",
    "STEPS_PER_BAR",
    "STEPS_PER_QUARTER",
    "Primer",
    "PrimerError",
    "TrackInfo",
    "events_to_note_names",
    "midi_primer",
    "midi_tracks",
    "musicxml_to_midi",
    "unsupported_file_reason",
    "parse_event_primer",
    "parse_note_primer",
    "parse_primer",
]

DEFAULT_DURATION = STEPS_PER_QUARTER
"""A note or rest without ``:N`` lasts a quarter note."""
MAX_TYPED_STEPS = 256 * STEPS_PER_BAR
"""Upper bound on a typed primer's length, so that a typo like ``C4:99999999`` cannot
allocate gigabytes; 256 bars is far beyond any sensible primer."""

_MIN_PITCH = note_seq.MIN_MIDI_PITCH
_MAX_PITCH = note_seq.MAX_MIDI_PITCH
_SEPARATORS = re.compile(r"[\s,|]+")
_NOTE = re.compile(r"^(?P<letter>[A-Ga-g])(?P<accidentals>##?|bb?)?(?P<octave>-?[0-9]+)$")
_INTEGER = re.compile(r"^[+-]?[0-9]+$")
_DIGITS = re.compile(r"^[0-9]+$")
_NOTE_HINT = (
    "write notes like C4, F#3, Bb4:8 (letter A-G, optional # or b, octave -1 to 9, "
    "optional :N length in sixteenths), r for a rest, - to hold, and a time signature "
    "such as 3/4 first if you like"
)


class PrimerError(MelodyGenError):
    """A primer could not be read: bad note syntax, bad event list, or an unusable MIDI track."""


@dataclass
class Primer:
    """Opening events for the generator, plus where they came from (for the user to see)."""

    events: list[int]
    """Magenta melody events, one per sixteenth-note step, starting on a bar line."""
    qpm: float | None = None
    """Tempo carried by a MIDI primer, so the output can keep it; None for typed primers."""
    description: str = ""
    """Short human-readable origin, e.g. "4 notes typed" or "bars 1-2 of track 0 'Lead' ..."."""
    meter: Meter = FOUR_FOUR
    """Time signature: the file's, or one typed first (``3/4 D4 F4 A4``); 4/4 otherwise."""
    key: int | None = None
    """Tonic pitch class (0 = C) from the file's key signature, else estimated from the notes."""
    mode: str | None = None
    """"major" or "minor" (with ``key``); None without notes."""
    key_source: str = ""
    """Where ``key`` comes from: "key signature" or "estimated"."""
    notices: list[str] = field(default_factory=list)
    """One-line remarks on how the primer was read (e.g. a tempo-map meter replaced)."""

    @property
    def steps(self) -> int:
        """Length in sixteenth-note steps: where the generator takes over."""
        return len(self.events)

    @property
    def bars(self) -> float:
        """Length in bars of the primer's meter."""
        return self.meter.bars(self.steps)

    def pitches(self) -> list[int]:
        """MIDI pitches of the note-ons in order (e.g. to check them against a model's range)."""
        return [event for event in self.events if event >= 0]

    def key_label(self) -> str:
        """``"G major (from the file's key signature)"``, ``"D minor (estimated)"``; "" without."""
        if self.key is None or self.mode is None:
            return ""
        origin = (
            "from the file's key signature" if self.key_source == "key signature" else "estimated"
        )
        return f"{key_name(self.key, self.mode)} ({origin})"


def _with_estimated_key(primer: Primer) -> Primer:
    """The primer with ``key``/``mode`` estimated from its notes (unchanged without notes)."""
    found = estimate_key(primer.events)
    if found is not None:
        primer.key, primer.mode = found
        primer.key_source = "estimated"
    return primer


# --------------------------------------------------------------------------------------
# Typed primers
# --------------------------------------------------------------------------------------


def parse_primer(text: str | None) -> Primer:
    """Read a primer as typed by a user: nothing, an event list, or the note syntax.

    One entry point for the CLI and the UI: ``None``, ``""`` or ``"none"`` give an empty
    primer (generate from scratch), text starting with ``[`` is Magenta's event list, and
    anything else is the note syntax of this module's docstring.

    Raises:
        PrimerError: the text is not valid in the syntax it was read as, is longer
            than any primer, or holds a number of more than 12 digits (a 5,000-digit
            one used to end in Python's ValueError; see :mod:`melodygen.limits`).
    """
    check_primer_text(text, PrimerError)
    stripped = (text or "").strip()
    if not stripped or stripped.lower() == "none":
        return Primer(events=[], description="no primer")
    if stripped.startswith("["):
        return parse_event_primer(stripped)
    return parse_note_primer(stripped)


def parse_note_primer(text: str) -> Primer:
    """Turn the compact note syntax (see the module docstring) into melody events.

    Raises:
        PrimerError: a token is not a note, rest or hold, a pitch or octave is out of
            range, a duration is not a positive whole number, or a ``-`` has nothing
            before it to hold. The message names the token and its position.
    """
    events: list[int] = []
    sounding = False  # is a note sounding at the end of ``events``?
    notes = 0
    meter = FOUR_FOUR
    for position, token in _tokens(text):
        if "/" in token:
            if position != 1:
                raise PrimerError(
                    f"'{token}' (token {position}): a time signature can only come first, "
                    "e.g. 3/4 D4 F#4 A4."
                )
            try:
                meter = parse_meter(token) or FOUR_FOUR
            except MeterError as error:
                raise PrimerError(f"'{token}' (token 1): {error}.") from None
            continue
        if set(token) == {"-"}:
            if not events:
                raise PrimerError(
                    f"'{token}' (token {position}) holds the previous note or rest, but "
                    "there is none before it; start with a note (e.g. C4) or a rest (r)."
                )
            _check_length(len(events) + len(token) * DEFAULT_DURATION, token, position)
            events.extend([NO_EVENT] * (len(token) * DEFAULT_DURATION))
            continue
        name, _, duration_text = token.partition(":")
        duration = _duration(duration_text, token, position) if ":" in token else None
        duration = duration or DEFAULT_DURATION
        _check_length(len(events) + duration, token, position)
        if name in ("r", "R"):
            events.append(NOTE_OFF if sounding else NO_EVENT)
            sounding = False
        else:
            events.append(_pitch(name, token, position))
            sounding = True
            notes += 1
        events.extend([NO_EVENT] * (duration - 1))
    primer = Primer(events=events, description=_typed_description(notes, "typed"), meter=meter)
    return _with_estimated_key(primer)


def parse_event_primer(text: str) -> Primer:
    """Read Magenta's event list, e.g. ``[60, -2, 62, -1]``, as note_seq's Melody would.

    Lets users paste primers written for Magenta's ``--primer_melody`` flag. Values must
    be whole numbers from -2 to 127; note-offs before the first note become no-events,
    exactly what ``note_seq.Melody(events)`` does.

    Raises:
        PrimerError: the brackets are missing or empty, or a value is not a whole
            number in -2..127. The message names the value and its position.
    """
    stripped = text.strip()
    example = "e.g. [60, -2, 62, -1]"
    if not stripped.startswith("["):
        raise PrimerError(
            f"event list {_shorten(stripped)!r} must be written in square brackets, {example} "
            "(-1 = note-off, -2 = no event)."
        )
    if not stripped.endswith("]"):
        raise PrimerError(
            f"event list {_shorten(stripped)!r} is missing its closing ']', {example}."
        )
    inner = stripped[1:-1].strip().rstrip(",")
    if not inner.strip():
        raise PrimerError(
            f"the event list is empty; give at least one event, {example}, or 'none' for no primer."
        )
    events: list[int] = []
    for position, token in enumerate(re.split(r"\s*,\s*|\s+", inner.strip()), start=1):
        if not _INTEGER.match(token):
            raise PrimerError(
                f"event {position} {token!r} is not a whole number; an event list holds MIDI "
                f"pitches 0-127, -1 (note-off) and -2 (no event), {example}."
            )
        value = int(token)
        if not NO_EVENT <= value <= _MAX_PITCH:
            raise PrimerError(
                f"event {position} ({value}) is out of range; events are MIDI pitches 0-127, "
                "-1 (note-off) or -2 (no event)."
            )
        events.append(value)
    events = list(note_seq.Melody(events))
    notes = sum(1 for event in events if event >= 0)
    primer = Primer(events=events, description=_typed_description(notes, "given as events"))
    return _with_estimated_key(primer)


def events_to_note_names(
    events: list[int],
    meter: Meter | None = None,
    key: int | None = None,
    mode: str = "major",
) -> str:
    """Write melody events in the note syntax, e.g. to show a MIDI primer so it can be edited.

    ``parse_note_primer(events_to_note_names(events, meter)).events == events`` for every
    list the note syntax can produce (any ``note_seq.Melody`` event list without a
    note-off while nothing sounds). A ``|`` is written where a note or rest starts on a
    bar line of ``meter`` (4/4 by default); a meter other than 4/4 is written first
    (``3/4 ...``). Black keys are spelled in ``key`` and ``mode`` (flats in flat keys),
    sharps without a key.

    Raises:
        PrimerError: an event is outside -2..127.
    """
    meter = meter or FOUR_FOUR
    parts: list[str] = [] if meter == FOUR_FOUR else [str(meter)]
    for start, event, length in _segments(events):
        if start and start % meter.steps_per_bar == 0:
            parts.append("|")
        name = "r" if event < 0 else pitch_name(event, key, mode)
        parts.append(name if length == DEFAULT_DURATION else f"{name}:{length}")
    return " ".join(parts)


def _segments(events: list[int]) -> Iterator[tuple[int, int, int]]:
    """(start step, event, length) of each note and rest; leading no-events are a rest."""
    start = 0
    for index, event in enumerate(events):
        if not NO_EVENT <= event <= _MAX_PITCH:
            raise PrimerError(
                f"event {index + 1} ({event}) is out of range; events are MIDI pitches "
                "0-127, -1 (note-off) or -2 (no event)."
            )
        if index and event != NO_EVENT:
            yield start, events[start], index - start
            start = index
    if events:
        yield start, events[start], len(events) - start


def _tokens(text: str) -> Iterator[tuple[int, str]]:
    """(1-based position, token) pairs, bar lines and separators removed."""
    tokens = [token for token in _SEPARATORS.split(text) if token]
    yield from enumerate(tokens, start=1)


def _duration(text: str, token: str, position: int) -> int:
    if not _DIGITS.match(text):
        raise PrimerError(
            f"'{token}' (token {position}): the length after ':' must be a whole number of "
            "sixteenth steps, e.g. C4:2 (eighth), C4:8 (half note)."
        )
    duration = int(text)
    if duration < 1:
        raise PrimerError(
            f"'{token}' (token {position}): a length of 0 steps is not possible; use :1 or "
            "more (sixteenth steps)."
        )
    return duration


def _pitch(name: str, token: str, position: int) -> int:
    match = _NOTE.match(name)
    if not match:
        hint = _NOTE_HINT
        if _INTEGER.match(token):
            hint = (
                "a number is not a note: write C4 for middle C (MIDI 60), or put MIDI "
                "pitches in brackets as an event list: [60, -2, 62, -1]"
            )
        elif re.match(r"^[A-Ga-g]x", name):
            hint = "write a double sharp as ##, e.g. F##4"
        raise PrimerError(f"'{token}' (token {position}) is not a note, rest or hold; {hint}.")
    octave = int(match["octave"])
    if not -1 <= octave <= 9:
        raise PrimerError(
            f"'{token}' (token {position}): octave {octave} does not exist; octaves go from "
            "-1 to 9 (C4 is middle C)."
        )
    accidentals = match["accidentals"] or ""
    shift = len(accidentals) if accidentals.startswith("#") else -len(accidentals)
    pitch = pretty_midi.note_name_to_number(f"{match['letter']}{octave}") + shift
    if not _MIN_PITCH <= pitch <= _MAX_PITCH:
        raise PrimerError(
            f"'{token}' (token {position}) would be MIDI pitch {pitch}; MIDI pitches go from "
            "0 (C-1) to 127 (G9)."
        )
    return pitch


def _check_length(steps: int, token: str, position: int) -> None:
    if steps > MAX_TYPED_STEPS:
        raise PrimerError(
            f"'{_shorten(token)}' (token {position}) makes the primer longer than "
            f"{MAX_TYPED_STEPS} steps ({MAX_TYPED_STEPS // STEPS_PER_BAR} bars); "
            "a primer only needs the opening of a melody."
        )


def _typed_description(notes: int, how: str) -> str:
    return f"{notes} note{'' if notes == 1 else 's'} {how}"


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------
# MIDI primers
# --------------------------------------------------------------------------------------


@dataclass
class TrackInfo:
    """One instrument of a MIDI file, as a UI lists it for the user to pick a primer track."""

    index: int
    """Position in pretty_midi's instrument list: the ``track`` argument of midi_primer."""
    name: str
    """Track name from the file ("" when it has none)."""
    program: int
    """General MIDI program number 0-127."""
    instrument_name: str
    """General MIDI instrument name of ``program`` ("Drums" for a drum track)."""
    note_count: int
    is_drum: bool
    max_polyphony: int
    """Most notes sounding at once: 1 for a monophonic line, more for chords."""


def midi_tracks(path: str | Path) -> list[TrackInfo]:
    """List the instruments (parts) of a MIDI or MusicXML file, drums included.

    Raises:
        InputFileError: the file is missing, empty, not MIDI, or corrupt (from music.py).
        PrimerError: the file is not a .mid/.midi/.musicxml/.mxl file, cannot be read
            as MusicXML, or contains no notes at all.
    """
    path = Path(path)
    return _tracks(_read_midi(path))


def midi_primer(path: str | Path, track: int | None = None, bars: int | None = None) -> Primer:
    """Take the opening of one track of a MIDI (or MusicXML) file as a primer.

    The primer keeps its place in the bar: it starts at the bar line of the bar that
    holds the track's first note, with the rests before that note, in the file's meter
    (a short first bar before a change of meter is a pickup: it ends where the next
    meter's first full bar starts). Times are read in beats through the file's tempo
    map, so tempo changes neither split nor shift the primer; the primer stops at the
    next change of meter. The chosen track is reduced to one note at a time the way
    Magenta extracts melodies (``ignore_polyphonic_notes``: of notes starting together
    the highest is kept, and a note that starts while another sounds cuts it off),
    keeps every rest inside and, if ``bars`` is given, is cut after that many bars.

    ``track`` defaults to a track named MELODY if there is one, else the first
    non-drum track with notes. ``qpm`` is the tempo at the primer's first note, to 3
    decimals; ``meter`` the file's time signature there (a one-beat meter such as 1/4,
    which only carries a tempo map, is read as 4/4); ``key``/``mode`` come from the
    file's key signature at the first note, else they are estimated from the notes.

    Raises:
        InputFileError: the file is missing, empty, not MIDI, or corrupt (from music.py).
        PrimerError: the file has no notes or only drums, ``track`` does not exist, is a
            drum track or has no notes, or ``bars`` is below 1.
    """
    path = Path(path)
    if bars is not None:
        bars = _whole_number(bars, "bars")
        if bars < 1:
            raise PrimerError(f"bars must be 1 or more (got {bars}).")
    sequence = _read_midi(path)
    tracks = _tracks(sequence)
    chosen = _choose_track(path, sequence, tracks, track)

    placed = _in_primer_meter(path, sequence, chosen.index)
    melody = note_seq.Melody()
    try:
        melody.from_quantized_sequence(
            placed.sequence,
            instrument=chosen.index,
            gap_bars=math.inf,  # as Magenta's generator reads primers: never split at rests
            ignore_polyphonic_notes=True,
            pad_end=False,
            filter_drums=True,
        )
    except note_seq.NonIntegerStepsPerBarError:
        raise PrimerError(
            f"{path}: track {chosen.index} cannot be cut into sixteenth-note bars (its time "
            "signature is not a whole number of sixteenths); choose another file."
        ) from None
    except (note_seq.BadNoteError, note_seq.PolyphonicMelodyError) as exc:
        raise PrimerError(
            f"{path}: track {chosen.index} could not be read as a melody ({exc})."
        ) from None

    # The Melody starts at the bar line before the first note: leading rests are kept.
    events = list(melody)
    if not any(event >= 0 for event in events):
        raise PrimerError(f"{path}: track {chosen.index} has no notes.")
    meter = placed.meter
    first_bar = placed.first_bar + melody.start_step // meter.steps_per_bar
    if bars is not None:
        events = events[: bars * meter.steps_per_bar]
        taken = math.ceil(len(events) / meter.steps_per_bar)
        last_bar = first_bar + taken - 1
        span = f"bar {first_bar}" if taken == 1 else f"bars {first_bar}-{last_bar}"
        description = f"{span} of {_track_label(chosen)} in {path.name}"
    else:
        description = f"{_track_label(chosen)} in {path.name}"
    primer = Primer(
        events=events,
        qpm=placed.qpm,
        description=description,
        meter=meter,
        notices=placed.notices,
    )
    if placed.key is not None:
        primer.key, primer.mode = placed.key
        primer.key_source = "key signature"
        return primer
    return _with_estimated_key(primer)


@dataclass
class _Placed:
    """A track's piece of a file in one meter and tempo, bar lines at multiples of the bar."""

    sequence: object
    """Quantized NoteSequence: time 0 is a bar line of ``meter``."""
    meter: Meter
    qpm: float
    first_bar: int
    """Bar number (from 1) of the file's bar at time 0 of ``sequence``."""
    key: tuple[int, str] | None
    notices: list[str]


def _beat_map(sequence):
    """A function mapping seconds to quarter-note beats through the sequence's tempo map."""
    tempos = sorted(sequence.tempos, key=lambda tempo: tempo.time)
    first_qpm = tempos[0].qpm if tempos and tempos[0].time <= 0 and tempos[0].qpm > 0 else 120.0
    changes = [(0.0, first_qpm)]
    changes += [(t.time, t.qpm) for t in tempos if t.time > 0 and t.qpm > 0]
    starts = [time for time, _ in changes]
    beats_at = [0.0]
    for (start, qpm), (next_start, _) in zip(changes, changes[1:], strict=False):
        beats_at.append(beats_at[-1] + (next_start - start) * qpm / 60.0)

    def beats(seconds: float) -> float:
        index = max(0, bisect.bisect_right(starts, seconds) - 1)
        return beats_at[index] + (seconds - starts[index]) * changes[index][1] / 60.0

    def qpm_at(seconds: float) -> float:
        return changes[max(0, bisect.bisect_right(starts, seconds + 1e-9) - 1)][1]

    return beats, qpm_at


def _in_primer_meter(path: Path, sequence, index: int) -> _Placed:
    """Track ``index``'s part of the file laid on the bars of the meter at its first note."""
    beats, qpm_at = _beat_map(sequence)
    track_notes = [
        n for n in sequence.notes if n.instrument == index and not n.is_drum and n.velocity > 0
    ]
    first_time = min(n.start_time for n in track_notes)
    first = beats(first_time)
    # Meter segments (start, end, numerator, denominator), in beats; 4/4 before any.
    signatures: dict[float, tuple[int, int]] = {}
    for ts in sorted(sequence.time_signatures, key=lambda ts: ts.time):
        signatures[round(beats(ts.time), 6)] = (ts.numerator, ts.denominator)
    if 0.0 not in signatures:
        signatures[0.0] = (4, 4)
    starts = []
    for start in sorted(signatures):  # the same meter written again changes nothing
        if not starts or signatures[start] != signatures[starts[-1]]:
            starts.append(start)
    segments = [
        [start, end, *signatures[start]]
        for start, end in zip(starts, [*starts[1:], math.inf], strict=True)
    ]
    notices: list[str] = []
    if len(segments) > 1:
        start, end, numerator, denominator = segments[0]
        own_bar, next_bar = 4 * numerator / denominator, 4 * segments[1][2] / segments[1][3]
        # One short bar in a meter of its own (how notation programs write a pickup into
        # MIDI, e.g. 2/4 before 3/4) is a pickup into the next meter; a meter merely
        # written again mid-bar is not.
        if abs(end - start - own_bar) < 1e-6 and own_bar < next_bar - 1e-6:
            segments = segments[1:]
            segments[0][0] = end - next_bar
    holding = max(i for i, segment in enumerate(segments) if segment[0] <= first or i == 0)
    origin, end, numerator, denominator = segments[holding]
    bars_before = sum(round((e - s) / (4 * n / d)) for s, e, n, d in segments[:holding])
    try:
        meter = Meter(int(numerator), int(denominator))
    except MeterError:
        raise PrimerError(
            f"{path}: track {index} cannot be cut into sixteenth-note bars (its time "
            f"signature {numerator}/{denominator} is not a whole number of sixteenths); "
            "choose another file."
        ) from None
    if meter.numerator == 1:
        notices.append(
            f"The file's time signature {meter} has one beat per bar (a tempo map, not a "
            "meter): read as 4/4."
        )
        meter = FOUR_FOUR
    qpm = round(float(qpm_at(first_time)), 3)  # MIDI stores microseconds per beat
    seconds_per_beat = 60.0 / qpm

    placed = note_seq.NoteSequence()
    placed.ticks_per_quarter = sequence.ticks_per_quarter or note_seq.STANDARD_PPQ
    placed.tempos.add(time=0.0, qpm=qpm)
    placed.time_signatures.add(time=0.0, numerator=meter.numerator, denominator=meter.denominator)
    placed.instrument_infos.extend(sequence.instrument_infos)
    for note in sequence.notes:
        start, stop = beats(note.start_time), min(beats(note.end_time), end)
        if start < origin - 1e-6 or start >= end or note.velocity <= 0:
            continue
        copied = placed.notes.add()
        copied.CopyFrom(note)
        copied.start_time = (start - origin) * seconds_per_beat
        copied.end_time = max(copied.start_time, (stop - origin) * seconds_per_beat)
    placed.total_time = max((n.end_time for n in placed.notes), default=0.0)
    key = None
    signatures_before = [
        k
        for k in sorted(sequence.key_signatures, key=lambda k: k.time)
        if k.time <= first_time + 1e-6
    ]
    if signatures_before:
        signature = signatures_before[-1]
        key = (int(signature.key) % 12, "minor" if signature.mode == 1 else "major")
    try:
        quantized = sequences_lib.quantize_note_sequence(placed, STEPS_PER_QUARTER)
    except sequences_lib.QuantizationStatusError as error:
        raise PrimerError(
            f"{path}: track {index} could not be quantized to sixteenth steps ({error})."
        ) from None
    return _Placed(quantized, meter, qpm, bars_before + 1, key, notices)


def _read_midi(path: Path):
    """The file as a NoteSequence, with music.py's error handling, refusing other files.

    MIDI files are read by music.py, MusicXML files (.musicxml, .mxl) by music21
    (:func:`_read_musicxml`); music.py accepts ABC too, which is refused here.
    """
    suffix = path.suffix.lower()
    if path.is_file() and suffix not in PRIMER_SUFFIXES:
        raise PrimerError(f"{path}: {unsupported_file_reason(path.name)}")
    if suffix in MUSICXML_SUFFIXES:
        sequence = _read_musicxml(path)
    else:
        sequence = load_note_sequences(path)[0]
    if not any(note.velocity > 0 for note in sequence.notes):
        raise PrimerError(f"{path}: the file contains no notes.")
    return sequence


MUSICXML_SUFFIXES = (".musicxml", ".mxl")
"""MusicXML, plain (.musicxml) or compressed (.mxl), read with music21."""
PRIMER_SUFFIXES = (*MIDI_SUFFIXES, *MUSICXML_SUFFIXES)
"""Files a primer can be taken from."""
_AUDIO_SUFFIXES = (".wav", ".mp3", ".ogg", ".flac", ".aif", ".aiff", ".m4a", ".opus")
_OTHER_NOTATION = {
    ".xml": "if it is MusicXML, save it as .musicxml",
    ".abc": "ABC tunes are training data here; convert it to MIDI or MusicXML",
    ".mscz": "export it from MuseScore as MusicXML (.mxl) or MIDI",
    ".gp": "export it from Guitar Pro as MusicXML or MIDI",
    ".pdf": "a PDF is a picture of the music; export MusicXML from the program that made it",
}


def unsupported_file_reason(name: str) -> str:
    """One line saying which files a primer can come from and what to do with ``name``."""
    suffix = Path(name).suffix.lower()
    accepted = "a primer file must be MIDI (.mid, .midi) or MusicXML (.musicxml, .mxl)"
    if suffix in _AUDIO_SUFFIXES:
        return (
            f"{accepted}: '{suffix}' is recorded sound, and MelodyGen reads notes, not "
            "audio; export the melody as MIDI or MusicXML from your DAW or notation program"
        )
    if suffix in _OTHER_NOTATION:
        return f"{accepted}, not '{suffix}': {_OTHER_NOTATION[suffix]}"
    return f"{accepted}, not '{suffix or '(no extension)'}'"


def musicxml_to_midi(path: str | Path) -> bytes:
    """A MusicXML file (.musicxml, .mxl) as standard MIDI file bytes, read as a primer
    reads it: one track per part with its name and program, the first tempo, the time
    and key signatures, and a pickup measure padded so that its notes keep their beats.

    Raises:
        InputFileError: the file is missing.
        PrimerError: the file is not MusicXML, cannot be read, or holds no notes.
    """
    path = Path(path)
    if path.suffix.lower() not in MUSICXML_SUFFIXES:
        raise PrimerError(f"{path}: not a MusicXML file (.musicxml, .mxl).")
    sequence = _read_midi(path)
    buffer = io.BytesIO()
    try:
        note_seq.note_sequence_to_pretty_midi(sequence).write(buffer)
    except Exception as error:  # noqa: BLE001 - pretty_midi and mido raise many kinds
        raise PrimerError(f"{path}: could not be turned into MIDI ({one_line(error)}).") from None
    return buffer.getvalue()


def _read_musicxml(path: Path):
    """A MusicXML file as a NoteSequence (one instrument per part), read with music21.

    Ties are joined, grace notes and unpitched notes skipped, each chord's notes kept
    (the melody reduction keeps the top one). A pickup measure is padded with the rest
    before it, so its notes keep their beats; times use the first metronome mark (120
    quarters per minute without one).
    """
    from music21 import converter, key, meter, tempo

    if not path.is_file():
        load_note_sequences(path)  # music.py's message for a missing path
    _check_musicxml_size(path)
    try:
        score = converter.parse(str(path), format="musicxml")
    except Exception as error:  # noqa: BLE001 - music21 raises many kinds on bad files
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else ""
        raise PrimerError(
            f"{path}: not a readable MusicXML file{f' ({reason})' if reason else ''}."
        ) from None
    parts = list(getattr(score, "parts", [])) or [score]
    marks = score.flatten().getElementsByClass(tempo.MetronomeMark)
    qpm = marks[0].getQuarterBPM() if marks else None  # None: a mark without a number
    qpm = float(qpm) if isinstance(qpm, (int, float)) and qpm > 0 else 120.0
    measures = parts[0].getElementsByClass("Measure")
    pickup = float(measures[0].paddingLeft) if measures else 0.0
    seconds = 60.0 / qpm

    sequence = note_seq.NoteSequence()
    sequence.ticks_per_quarter = note_seq.STANDARD_PPQ
    sequence.tempos.add(time=0.0, qpm=qpm)
    flat = parts[0].flatten()
    for signature in flat.getElementsByClass(meter.TimeSignature):
        numerator, denominator = signature.numerator, signature.denominator
        if not (1 <= numerator <= 64 and denominator in (1, 2, 4, 8, 16, 32)):
            raise PrimerError(
                f"{path}: its time signature {numerator}/{denominator} cannot be read "
                "(meters up to 64 beats of a whole, half, quarter ... 32nd note)."
            )
        offset = float(signature.offset)
        sequence.time_signatures.add(
            time=0.0 if offset == 0 else (offset + pickup) * seconds,
            numerator=signature.numerator,
            denominator=signature.denominator,
        )
    estimated: list = []  # music21's key of the first part, worked out once if needed
    for signature in flat.getElementsByClass(key.KeySignature):
        found = signature
        if not isinstance(signature, key.Key):
            # A key signature without <mode> is a major key or its relative minor: the
            # notes decide (Krumhansl-Schmuckler, as for files without a key signature).
            if not estimated:
                try:
                    estimated.append(parts[0].analyze("key"))
                except Exception:  # noqa: BLE001 - no notes to analyse: take the major
                    estimated.append(None)
            minor = signature.asKey("minor")
            guess = estimated[0]
            is_minor = (
                guess is not None
                and guess.mode == "minor"
                and guess.tonic.pitchClass == minor.tonic.pitchClass
            )
            found = minor if is_minor else signature.asKey("major")
        sequence.key_signatures.add(
            time=0.0 if signature.offset == 0 else (float(signature.offset) + pickup) * seconds,
            key=found.tonic.pitchClass,
            mode=1 if found.mode == "minor" else 0,
        )
    for index, part in enumerate(parts):
        instrument = part.getInstrument(returnDefault=True)
        program = instrument.midiProgram if instrument.midiProgram is not None else 0
        name = part.partName or instrument.instrumentName or ""
        sequence.instrument_infos.add(instrument=index, name=str(name))
        for element in part.stripTies().flatten().notes:
            length = float(element.quarterLength)
            if length <= 0 or not hasattr(element, "pitches"):
                continue  # grace notes; unpitched percussion has no pitches
            start = (float(element.offset) + pickup) * seconds
            end = (float(element.offset) + pickup + length) * seconds
            for pitch in element.pitches:
                if not 0 <= pitch.midi <= 127:
                    continue
                note = sequence.notes.add()
                note.pitch, note.velocity = int(pitch.midi), 80
                note.instrument, note.program = index, int(program)
                note.start_time, note.end_time = start, end
    sequence.total_time = max((note.end_time for note in sequence.notes), default=0.0)
    try:
        check_sequence_limits(sequence, PRIMER_MIDI, str(path))
    except MelodyGenError as error:
        raise PrimerError(str(error)) from None
    return sequence


def _check_musicxml_size(path: Path) -> None:
    """Refuse a MusicXML file too big to read in a few seconds, before music21 opens it.

    An .mxl is a zip: its members' unzipped sizes (which Python's zipfile holds them to)
    count, so a small archive that unzips to gigabytes is refused unopened.
    """
    size = path.stat().st_size
    check_file_size(str(path), size, PRIMER_MIDI, PrimerError)
    if path.suffix.lower() == ".mxl":
        try:
            with zipfile.ZipFile(path) as archive:
                size = sum(member.file_size for member in archive.infolist())
        except (zipfile.BadZipFile, OSError, ValueError):
            raise PrimerError(
                f"{path}: not a readable .mxl file (compressed MusicXML is a zip archive)."
            ) from None
    if size > MAX_MUSICXML_BYTES:
        raise PrimerError(
            f"{path} holds {size:,} bytes of MusicXML; a primer may hold at most "
            f"{MAX_MUSICXML_BYTES:,} (about 10,000 notes): export only the opening bars."
        )


def _tracks(sequence) -> list[TrackInfo]:
    """TrackInfo per pretty_midi instrument, read back from the NoteSequence.

    note_seq numbers notes by their pretty_midi instrument index, and pretty_midi only
    creates an instrument when it reads a note for it, so indices 0..max are exactly the
    file's instruments; names come from ``instrument_infos``.
    """
    names = {info.instrument: info.name for info in sequence.instrument_infos}
    notes_by_track: dict[int, list] = {}
    for note in sequence.notes:
        notes_by_track.setdefault(note.instrument, []).append(note)
    count = 1 + max([*names, *notes_by_track], default=-1)
    tracks = []
    for index in range(count):
        notes = [note for note in notes_by_track.get(index, []) if note.velocity > 0]
        program = notes[0].program if notes else 0
        is_drum = any(note.is_drum for note in notes)
        gm_name = "Drums" if is_drum else pretty_midi.program_to_instrument_name(program)
        tracks.append(
            TrackInfo(
                index=index,
                name=names.get(index, "").strip(),
                program=program,
                instrument_name=gm_name,
                note_count=len(notes),
                is_drum=is_drum,
                max_polyphony=_max_polyphony(notes),
            )
        )
    return tracks


def _max_polyphony(notes: list) -> int:
    """Most notes sounding at once; a note ending exactly when another starts does not count."""
    changes = sorted(
        [(note.start_time, 1) for note in notes] + [(note.end_time, -1) for note in notes]
    )  # at equal times -1 sorts first: ends before starts
    most = sounding = 0
    for _, change in changes:
        sounding += change
        most = max(most, sounding)
    return most


def _choose_track(path: Path, sequence, tracks: list[TrackInfo], track: int | None) -> TrackInfo:
    pitched = [t.index for t in tracks if not t.is_drum and t.note_count]
    if track is None:
        if not pitched:
            raise PrimerError(
                f"{path}: the file holds only drum tracks; a primer needs a pitched melody."
            )
        melody = melody_instruments(sequence)
        return tracks[min(melody) if melody else pitched[0]]

    track = _whole_number(track, "track")
    if not 0 <= track < len(tracks):
        count = len(tracks)
        numbers = "0" if count == 1 else f"0-{count - 1}"
        raise PrimerError(
            f"track {track} does not exist: {path} has {count} "
            f"track{'' if count == 1 else 's'} ({numbers})."
        )
    chosen = tracks[track]
    others = _list(pitched)
    if chosen.is_drum:
        hint = (
            f"choose a pitched track of {path}: {others}"
            if pitched
            else f"{path} has no pitched track"
        )
        raise PrimerError(f"track {track} is a drum track; {hint}.")
    if not chosen.note_count:
        hint = f"tracks with notes: {others}" if pitched else "no track has pitched notes"
        raise PrimerError(f"track {track} of {path} has no notes; {hint}.")
    return chosen


def _track_label(track: TrackInfo) -> str:
    return (
        f"track {track.index} '{track.name}'"
        if track.name
        else (f"track {track.index} ({track.instrument_name})")
    )


def _whole_number(value, what: str) -> int:
    if isinstance(value, bool):
        raise PrimerError(f"{what} must be a whole number (got {value!r}).")
    try:
        return operator.index(value)
    except TypeError:
        raise PrimerError(f"{what} must be a whole number (got {value!r}).") from None


def _list(numbers: list[int]) -> str:
    return ", ".join(str(n) for n in numbers)
