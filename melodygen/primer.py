"""Primers: the opening notes a melody generator continues.

A primer is a list of Magenta melody events, one per sixteenth-note step (16 steps are
one 4/4 bar): ``>= 0`` starts a note at that MIDI pitch, ``-1`` ends the sounding note
(note-off), ``-2`` is no event (the note or rest goes on). It can be typed in the note
syntax below, given as Magenta's event list, or taken from a track of a MIDI file.

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
- A typed primer may be at most 4096 steps (256 bars) long.

Example: ``C4 E4 G4:2 r:2 | C5 - -`` is C, E, an eighth-note G, an eighth rest, then a
C an octave up held for three quarters.

Event list
----------
Magenta's events in brackets, e.g. ``[60, -2, 62, -1]``: used exactly as written,
except that note-offs before the first note become no-events, as in
``note_seq.Melody``.
"""

from __future__ import annotations

import collections
import math
import operator
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pretty_midi

from melodygen.errors import MelodyGenError
from melodygen.music import (
    MIDI_SUFFIXES,
    STEPS_PER_QUARTER,
    _quantized_pieces,
    load_note_sequences,
    melody_instruments,
    note_seq,
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
    "parse_event_primer",
    "parse_note_primer",
    "parse_primer",
]

NOTE_OFF = -1
NO_EVENT = -2
STEPS_PER_BAR = 4 * STEPS_PER_QUARTER
"""A 4/4 bar, the bar the models are trained with (Magenta's default)."""
DEFAULT_DURATION = STEPS_PER_QUARTER
"""A note or rest without ``:N`` lasts a quarter note."""
MAX_TYPED_STEPS = 256 * STEPS_PER_BAR
"""Upper bound on a typed primer's length, so that a typo like ``C4:99999999`` cannot
allocate gigabytes; 256 bars is far beyond any sensible primer."""

_MIN_PITCH = note_seq.MIN_MIDI_PITCH
_MAX_PITCH = note_seq.MAX_MIDI_PITCH
_PITCH_CLASSES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_SHARP_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
_SEPARATORS = re.compile(r"[\s,|]+")
_NOTE = re.compile(r"^(?P<letter>[A-Ga-g])(?P<accidentals>##?|bb?)?(?P<octave>-?[0-9]+)$")
_INTEGER = re.compile(r"^[+-]?[0-9]+$")
_DIGITS = re.compile(r"^[0-9]+$")
_NOTE_HINT = (
    "write notes like C4, F#3, Bb4:8 (letter A-G, optional # or b, octave -1 to 9, "
    "optional :N length in sixteenths), r for a rest, - to hold; or give Magenta events "
    "in brackets: [60, -2, 62, -1]"
)


class PrimerError(MelodyGenError):
    """A primer could not be read: bad note syntax, bad event list, or an unusable MIDI track."""


@dataclass
class Primer:
    """Opening events for the generator, plus where they came from (for the user to see)."""

    events: list[int]
    """Magenta melody events, one per sixteenth-note step."""
    qpm: float | None = None
    """Tempo carried by a MIDI primer, so the output can keep it; None for typed primers."""
    description: str = ""
    """Short human-readable origin, e.g. "4 notes typed" or "bars 1-2 of track 0 'Lead' ..."."""

    @property
    def steps(self) -> int:
        """Length in sixteenth-note steps: where the generator takes over."""
        return len(self.events)

    def pitches(self) -> list[int]:
        """MIDI pitches of the note-ons in order (e.g. to check them against a model's range)."""
        return [event for event in self.events if event >= 0]


# --------------------------------------------------------------------------------------
# Typed primers
# --------------------------------------------------------------------------------------


def parse_primer(text: str | None) -> Primer:
    """Read a primer as typed by a user: nothing, an event list, or the note syntax.

    One entry point for the CLI and the UI: ``None``, ``""`` or ``"none"`` give an empty
    primer (generate from scratch), text starting with ``[`` is Magenta's event list, and
    anything else is the note syntax of this module's docstring.

    Raises:
        PrimerError: the text is not valid in the syntax it was read as.
    """
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
    for position, token in _tokens(text):
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
    return Primer(events=events, description=_typed_description(notes, "typed"))


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
    return Primer(events=events, description=_typed_description(notes, "given as events"))


def events_to_note_names(events: list[int]) -> str:
    """Write melody events in the note syntax, e.g. to show a MIDI primer so it can be edited.

    ``parse_note_primer(events_to_note_names(events)).events == events`` for every list the
    note syntax can produce (any ``note_seq.Melody`` event list without a note-off while
    nothing sounds). A ``|`` is written where a note or rest starts on a 4/4 bar line.
    Sharps are used for black keys.

    Raises:
        PrimerError: an event is outside -2..127.
    """
    parts: list[str] = []
    for start, event, length in _segments(events):
        if start and start % STEPS_PER_BAR == 0:
            parts.append("|")
        name = "r" if event < 0 else _note_name(event)
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
            hint = "to give Magenta events, put them in brackets: [60, -2, 62, -1]"
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
    pitch = (octave + 1) * 12 + _PITCH_CLASSES[match["letter"].upper()] + shift
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


def _note_name(pitch: int) -> str:
    return f"{_SHARP_NAMES[pitch % 12]}{pitch // 12 - 1}"


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
    """List the instruments of a MIDI file, drums included, so a user can choose one.

    Raises:
        InputFileError: the file is missing, empty, not MIDI, or corrupt (from music.py).
        PrimerError: the file is not a .mid/.midi file or contains no notes at all.
    """
    path = Path(path)
    return _tracks(_read_midi(path))


def midi_primer(path: str | Path, track: int | None = None, bars: int | None = None) -> Primer:
    """Take the opening of one track of a MIDI file as a primer.

    The file is read like training data (music.py): split at tempo and time-signature
    changes and quantized to sixteenth steps. The primer is the melody of the chosen
    track in the first such piece where that track plays, reduced to one note at a time
    the way Magenta extracts melodies (``ignore_polyphonic_notes``: of notes starting
    together the highest is kept, and a note that starts while another sounds cuts it
    off). It starts at the track's first note, keeps every rest inside (no split at
    long gaps) and, if ``bars`` is given, is cut after that many 4/4 bars (16 steps).

    ``track`` defaults to a track named MELODY if there is one, else the first
    non-drum track with notes. ``qpm`` is the tempo at the primer's first note (the
    file's first tempo unless the track starts after a tempo change), to 3 decimals.

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

    piece = _first_piece_with(path, sequence, chosen.index)
    melody = note_seq.Melody()
    try:
        melody.from_quantized_sequence(
            piece,
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

    events = list(melody)
    first = next((i for i, event in enumerate(events) if event >= 0), len(events))
    events = events[first:]  # Melody starts at the bar line before the first note
    if not events:
        raise PrimerError(f"{path}: track {chosen.index} has no notes.")
    first_bar = (melody.start_step + first) // STEPS_PER_BAR + 1
    if bars is not None:
        events = events[: bars * STEPS_PER_BAR]
        taken = math.ceil(len(events) / STEPS_PER_BAR)
        last_bar = first_bar + taken - 1
        span = f"bar {first_bar}" if taken == 1 else f"bars {first_bar}-{last_bar}"
        description = f"{span} of {_track_label(chosen)} in {path.name}"
    else:
        description = f"{_track_label(chosen)} in {path.name}"
    qpm = piece.tempos[0].qpm if piece.tempos else note_seq.DEFAULT_QUARTERS_PER_MINUTE
    qpm = round(float(qpm), 3)  # MIDI stores microseconds per beat: 100 qpm reads 99.99999...
    return Primer(events=events, qpm=qpm, description=description)


def _read_midi(path: Path):
    """The file as a NoteSequence, with music.py's error handling, refusing non-MIDI files.

    music.py accepts ABC too; a primer track only makes sense for MIDI, so other existing
    files are refused here before music.py reads them (missing files keep its message).
    """
    if path.is_file() and path.suffix.lower() not in MIDI_SUFFIXES:
        raise PrimerError(
            f"{path}: a primer file must be a MIDI file (.mid or .midi), not "
            f"'{path.suffix or '(no extension)'}'."
        )
    sequence = load_note_sequences(path)[0]
    if not any(note.velocity > 0 for note in sequence.notes):
        raise PrimerError(f"{path}: the MIDI file contains no notes.")
    return sequence


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


def _first_piece_with(path: Path, sequence, index: int):
    """The first quantized tempo/time-signature piece in which track ``index`` plays."""
    problems: collections.Counter = collections.Counter()
    for piece in _quantized_pieces(sequence, STEPS_PER_QUARTER, problems):
        if any(
            note.instrument == index and not note.is_drum and note.velocity > 0
            for note in piece.notes
        ):
            return piece
    reason = ", ".join(sorted(problems)) or "no notes left after quantization"
    raise PrimerError(
        f"{path}: track {index} could not be quantized to sixteenth steps ({reason})."
    )


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
