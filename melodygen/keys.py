"""Keys: modes and scales, key names spelled as musicians write them, and key finding.

A key is a tonic pitch class (0 = C) and a mode name from :data:`MODES`. Without a
key signature to read, :func:`estimate_key` finds the key of a melody with music21's
Krumhansl-Schmuckler key finder (each pitch class weighted by how long it sounds,
correlated with the major and minor key profiles of all 24 keys).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "FLAT_NAMES",
    "MINOR_MODES",
    "MODES",
    "SHARP_NAMES",
    "estimate_key",
    "key_name",
    "key_signature_fifths",
    "pitch_name",
    "relative_major",
    "uses_flats",
]

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
FLAT_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
_MINOR_TONICS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")


MINOR_MODES = ("minor", "harmonic_minor", "minor_pentatonic")
"""Modes written with a minor key signature (the others as their relative major's)."""


def relative_major(tonic: int, mode: str) -> int:
    """Pitch class of the major key with the same notes (D minor -> 5, F)."""
    return (tonic + MODES[mode][1]) % 12


def key_signature_fifths(tonic: int, mode: str = "major") -> int:
    """Sharps (positive) or flats (negative) of the key signature, -6 to 5 (F# major: Gb, -6)."""
    return (relative_major(tonic, mode) * 7 + 6) % 12 - 6


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
