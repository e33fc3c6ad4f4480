"""Music theory on MelodyGen's grid, one place each: steps, meters, note and key names, modes.

Melodies are placed on a grid of sixteenth-note steps (``STEPS_PER_QUARTER`` = 4 per
quarter note) whatever the meter; a meter only says where the bar lines fall (every
``steps_per_bar`` steps: 16 in 4/4, 12 in 3/4 and 6/8, 8 in 2/4) and how bars group into
beats. The Melody RNN networks themselves have no notion of meter: their lookback
distances (16 and 32 steps) and step counters are those of 4/4, as in Magenta (see the
README, "Meters").

A key is a tonic pitch class (0 = C) and a mode name from :data:`MODES`; :func:`parse_key`
is the one reader of key names (``D``, ``F#``, ``Bb``), for the CLI, the generation
request and the studio alike. Without a key signature to read, :func:`estimate_key`
finds the key of a melody with music21's Krumhansl-Schmuckler key finder (each pitch
class weighted by how long it sounds, correlated with the major and minor key profiles
of all 24 keys).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from melodygen.errors import MelodyGenError

__all__ = [
    "COMMON_METERS",
    "FOUR_FOUR",
    "NOTES_PER_OCTAVE",
    "NOTE_OFF",
    "NO_EVENT",
    "STEPS_PER_BAR",
    "STEPS_PER_QUARTER",
    "STEPS_PER_WHOLE",
    "Meter",
    "MeterError",
    "parse_meter",
    "FLAT_NAMES",
    "LETTER_PITCH_CLASSES",
    "SHARP_ORDER",
    "signature_alterations",
    "spell",
    "KEY_NAMES",
    "KeyNameError",
    "MINOR_MODES",
    "MODES",
    "SHARP_NAMES",
    "estimate_key",
    "key_name",
    "key_signature_fifths",
    "parse_key",
    "pitch_name",
    "relative_major",
    "uses_flats",
]

NOTES_PER_OCTAVE = 12
NOTE_OFF = -1
"""A melody event on the grid: the sounding note ends (note_seq's MELODY_NOTE_OFF)."""
NO_EVENT = -2
"""A melody event on the grid: nothing changes (note_seq's MELODY_NO_EVENT)."""
STEPS_PER_QUARTER = 4
"""Sixteenth-note steps in a quarter note: the grid every melody is placed on."""
STEPS_PER_BAR = 4 * STEPS_PER_QUARTER
"""Steps in a 4/4 bar (note_seq's DEFAULT_STEPS_PER_BAR); other meters: Meter.steps_per_bar."""

STEPS_PER_WHOLE = 4 * STEPS_PER_QUARTER
"""Sixteenth-note steps in a whole note."""
_METER = re.compile(r"^\s*(?P<numerator>[0-9]{1,4})\s*/\s*(?P<denominator>[0-9]{1,4})\s*$")
"""At most 4 digits each: no meter needs more, and Python refuses to read 4,300."""


class MeterError(MelodyGenError):
    """A time signature that cannot be laid on the sixteenth-note grid."""


@dataclass(frozen=True)
class Meter:
    """A time signature such as 4/4 or 6/8, on the sixteenth-note grid."""

    numerator: int = 4
    denominator: int = 4

    def __post_init__(self) -> None:
        numerator, denominator = self.numerator, self.denominator
        if isinstance(numerator, bool) or not isinstance(numerator, int) or not 1 <= numerator:
            raise MeterError(f"a time signature needs 1 or more beats per bar (got {numerator})")
        if denominator not in (1, 2, 4, 8, 16):
            raise MeterError(
                f"{numerator}/{denominator}: the beat unit must be 1, 2, 4, 8 or 16 "
                "(whole note to sixteenth)"
            )
        if numerator * STEPS_PER_WHOLE // denominator > 256:
            raise MeterError(f"{numerator}/{denominator}: a bar of more than 16 whole notes")

    @property
    def steps_per_bar(self) -> int:
        """Sixteenth-note steps in one bar: 16 for 4/4, 12 for 3/4 and 6/8, 8 for 2/4."""
        return self.numerator * STEPS_PER_WHOLE // self.denominator

    @property
    def compound(self) -> bool:
        """6/8, 9/8, 12/8: beats of three eighth notes."""
        return self.denominator == 8 and self.numerator % 3 == 0 and self.numerator > 3

    @property
    def steps_per_beat(self) -> int:
        """Steps in one counted beat: a dotted quarter (6) in 6/8, else the beat unit."""
        unit = STEPS_PER_WHOLE // self.denominator
        return 3 * unit if self.compound else unit

    @property
    def beats_per_bar(self) -> int:
        return self.steps_per_bar // self.steps_per_beat

    def bars(self, steps: int) -> float:
        """Length of ``steps`` in bars of this meter (a float: 18 steps of 4/4 are 1.125)."""
        return steps / self.steps_per_bar

    def __str__(self) -> str:
        return f"{self.numerator}/{self.denominator}"


FOUR_FOUR = Meter(4, 4)
COMMON_METERS = (FOUR_FOUR, Meter(3, 4), Meter(6, 8), Meter(2, 4))
"""The meters the studio offers: 4/4, 3/4, 6/8, 2/4."""


def parse_meter(text: str | Meter | tuple[int, int] | None) -> Meter | None:
    """``"6/8"``, ``(6, 8)`` or a Meter as a Meter; None, ``""`` or ``"auto"`` give None.

    Raises:
        MeterError: not ``N/D`` with a beat unit of 1-16 or a bar of at most 16 wholes.
    """
    if text is None or isinstance(text, Meter):
        return text
    if isinstance(text, tuple):
        return Meter(int(text[0]), int(text[1]))
    if text.strip().lower() in ("", "auto", "none", "from primer"):
        return None
    match = _METER.match(text)
    if not match:
        shown = text if len(text) <= 20 else text[:17] + "..."
        raise MeterError(f"time signature {shown!r} is not like 4/4, 3/4, 6/8 or 2/4")
    return Meter(int(match["numerator"]), int(match["denominator"]))


# Keys --------------------------------------------------------------------------------

# Mode: (scale intervals above the tonic, semitones from the tonic up to its relative major).
MODES: dict[str, tuple[tuple[int, ...], int]] = {
    "major": ((0, 2, 4, 5, 7, 9, 11), 0),
    "minor": ((0, 2, 3, 5, 7, 8, 10), 3),
    "harmonic_minor": ((0, 2, 3, 5, 7, 8, 11), 3),
    "dorian": ((0, 2, 3, 5, 7, 9, 10), 10),
    "phrygian": ((0, 1, 3, 5, 7, 8, 10), 8),
    "lydian": ((0, 2, 4, 6, 7, 9, 11), 7),
    "mixolydian": ((0, 2, 4, 5, 7, 9, 10), 5),
    "locrian": ((0, 1, 3, 5, 6, 8, 10), 1),
    "major_pentatonic": ((0, 2, 4, 7, 9), 0),
    "minor_pentatonic": ((0, 3, 5, 7, 10), 3),
}

SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
"""The note names of the pitch classes with sharps (pretty_midi's spelling); the one table."""
FLAT_NAMES = tuple(
    SHARP_NAMES[(pc + 1) % NOTES_PER_OCTAVE][0] + "b" if "#" in name else name
    for pc, name in enumerate(SHARP_NAMES)
)
"""The same with flats: C, Db, D, Eb, ..."""


MINOR_MODES = ("minor", "harmonic_minor", "minor_pentatonic")
"""Modes written with a minor key signature (the others as their relative major's)."""


def relative_major(tonic: int, mode: str) -> int:
    """Pitch class of the major key with the same notes (D minor -> 5, F)."""
    return (tonic + MODES[mode][1]) % 12


def key_signature_fifths(tonic: int, mode: str = "major") -> int:
    """Sharps (positive) or flats (negative) of the key signature, -6 to 5 (F# major: Gb, -6)."""
    return (relative_major(tonic, mode) * 7 + 6) % 12 - 6


LETTER_PITCH_CLASSES = {name: pc for pc, name in enumerate(SHARP_NAMES) if len(name) == 1}
"""The seven natural notes' pitch classes: C 0, D 2, E 4, F 5, G 7, A 9, B 11."""
SHARP_ORDER = "FCGDAEB"
"""The order sharps enter a key signature (flats: the reverse)."""


def signature_alterations(fifths: int) -> dict[str, int]:
    """Letter -> alteration (+1 sharp, -1 flat) a key signature of ``fifths`` gives it."""
    if fifths >= 0:
        return {letter: 1 for letter in SHARP_ORDER[:fifths]}
    return {letter: -1 for letter in SHARP_ORDER[::-1][:-fifths]}


def spell(pitch: int, tonic: int, mode: str = "major") -> tuple[str, int, int]:
    """(letter, alteration, octave) of a MIDI pitch in a key, as notation writes it: the key
    signature's note where it has one, else the key's usual spelling (:func:`pitch_name`),
    with a minor key's raised third, sixth and seventh as sharps (F#, B, C# in D minor).
    The octave is scientific (C4 = 60), of the written letter (B#3 is MIDI 60)."""
    signature = signature_alterations(key_signature_fifths(tonic, mode))
    pc = pitch % NOTES_PER_OCTAVE
    for letter, natural in LETTER_PITCH_CLASSES.items():
        if (natural + signature.get(letter, 0)) % NOTES_PER_OCTAVE == pc:
            alter = signature.get(letter, 0)
            break
    else:
        name = pitch_name(pitch, tonic, mode).rstrip("-0123456789")
        if mode in MINOR_MODES and (pc - tonic) % NOTES_PER_OCTAVE in (4, 9, 11):
            name = SHARP_NAMES[pc]
        letter, alter = name[0], {"#": 1, "b": -1}.get(name[1:], 0)
    octave = (pitch - LETTER_PITCH_CLASSES[letter] - alter) // NOTES_PER_OCTAVE - 1
    return letter, alter, octave


def uses_flats(tonic: int | None, mode: str = "major") -> bool:
    """Whether black keys are written as flats in this key (F major, D minor: yes)."""
    return tonic is not None and key_signature_fifths(tonic, mode) < 0


def pitch_name(pitch: int, tonic: int | None = None, mode: str = "major") -> str:
    """Scientific pitch name spelled in the key: 70 is A#4 in E major, Bb4 in D minor.

    Black keys are flats in flat keys and sharps otherwise, except a minor key's raised
    seventh (C# in D minor); without a key they are sharps (the note syntax reads both).
    """
    names = FLAT_NAMES if uses_flats(tonic, mode) else SHARP_NAMES
    if tonic is not None and "minor" in mode and (pitch - tonic) % 12 == 11:
        names = SHARP_NAMES  # the raised seventh, the leading tone: C# in D minor
    return f"{names[pitch % 12]}{pitch // 12 - 1}"


def _plainest_name(tonic: int, modes: Sequence[str]) -> str:
    """The tonic spelled as in the plainest key signature of ``modes`` (fewest sharps or
    flats; flats on a tie): C# (C# minor, 4 sharps), Eb, F# (F# minor), Ab, Bb."""
    fifths = [key_signature_fifths(tonic, mode) + turn for mode in modes for turn in (0, 12)]
    return (FLAT_NAMES if min(fifths, key=lambda f: (abs(f), f)) < 0 else SHARP_NAMES)[tonic]


_MINOR_TONICS = tuple(_plainest_name(pc, ("minor",)) for pc in range(NOTES_PER_OCTAVE))
KEY_NAMES = tuple(_plainest_name(pc, ("major", "minor")) for pc in range(NOTES_PER_OCTAVE))
"""The key choices, one name per tonic as most keys on it are written:
C, C#, D, Eb, E, F, F#, G, Ab, A, Bb, B."""


class KeyNameError(MelodyGenError):
    """A key that is neither a note name (C, F#, Bb) nor a pitch class 0-11."""


_KEY = re.compile(r"^(?P<letter>[A-Ga-g])(?P<accidental>[#bB]?)$")
_NO_KEY = ("", "none", "auto")


def parse_key(text: str | int | None) -> int | None:
    """A key's tonic as a pitch class (0 = C): ``"D"``, ``"f#"``, ``"Bb"``, ``"D♭"``,
    ``"Cb"`` (11), ``"B#"`` (0), or a pitch class 0-11 (an int or digits). None, ``""``,
    ``"none"`` and ``"auto"`` give None: no key asked for.

    The one reader of key names: the CLI's ``--key`` and ``--transpose-to-key``, the
    generation request and the studio all call it, so they take and refuse the same
    spellings with the same words. Names are read by pretty_midi's key-name parser.

    Raises:
        KeyNameError: anything else, in one line.
    """
    if text is None:
        return None
    if isinstance(text, str):
        name = text.strip()
        if name.lower() in _NO_KEY:
            return None
        match = _KEY.match(name.replace("♯", "#").replace("♭", "b"))
        if match:
            import pretty_midi  # imported on use: a tenth of a second the CLI need not pay

            letter, accidental = match["letter"].upper(), match["accidental"].lower()
            return pretty_midi.key_name_to_key_number(f"{letter}{accidental} major")
        if not re.fullmatch(r"[0-9]{1,2}", name):
            shown = name if len(name) <= 20 else name[:17] + "..."
            raise KeyNameError(f"unknown key {shown!r}: use a note name such as C, F#, Bb")
        value = int(name)
    elif isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        raise KeyNameError(f"unknown key {text!r}: use a note name such as C, F#, Bb")
    if not 0 <= value < NOTES_PER_OCTAVE:
        raise KeyNameError(f"key {value} is not a pitch class 0-11")
    return value


def key_name(tonic: int, mode: str = "major") -> str:
    """``"G major"``, ``"Bb minor"``, ``"D dorian"``: the tonic spelled as the key is written."""
    if mode in MINOR_MODES:
        tonic_name = _MINOR_TONICS[tonic % 12]
    else:
        major = relative_major(tonic, mode)
        names = FLAT_NAMES if key_signature_fifths(major) < 0 else SHARP_NAMES
        tonic_name = names[tonic % 12]
    return f"{tonic_name} {mode.replace('_', ' ')}"


def estimate_key(events: Sequence[int]) -> tuple[int, str] | None:
    """(tonic pitch class, "major" or "minor") of a melody's notes; None without notes.

    Melody events (a pitch starts a note, -1 ends it, -2 continues) are read as notes
    lasting until the next event; music21's Krumhansl-Schmuckler key finder weighs
    each pitch class by its total duration.
    """
    from music21 import analysis, note, stream

    durations: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None  # (pitch, start step)
    for step, event in enumerate([*events, -1]):
        if event == -2:
            continue
        if current is not None:
            durations.append((current[0], step - current[1]))
            current = None
        if event >= 0:
            current = (int(event), step)
    if not durations:
        return None
    melody = stream.Stream()
    for pitch, steps in durations:
        melody.append(note.Note(pitch, quarterLength=steps / 4))
    found = analysis.discrete.KrumhanslSchmuckler().getSolution(melody)
    return found.tonic.pitchClass, str(found.mode)
