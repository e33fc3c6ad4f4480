"""Melodies as notes: (pitch, duration class, velocity class), and back to NoteSequences.

Reading a song (what ``dataset build``, scoring and encoding a melody share):

1. the line: the track named MELODY where there is one
   (:func:`melodygen.io.music.melody_instruments`, as in POP909), else the non-drum
   instrument with the most notes;
2. one meter and tempo (:func:`melodygen.io.music.in_one_meter`), so a tempo map that
   follows a recording neither splits the song nor shifts its notes off the beat;
3. quantized to :data:`TICKS_PER_QUARTER` = 12 steps per quarter note, a grid that holds
   sixteenths (3 steps) and eighth-note triplets (4 steps) alike (1.3% of Nottingham's
   note onsets are triplets, off the sixteenth grid);
4. reduced to one note at a time as Magenta does (note_seq's
   ``Melody.from_quantized_sequence`` with ``ignore_polyphonic_notes``: of notes starting
   together the highest is kept, a note that starts while another sounds cuts it off),
   as the rest of MelodyGen reads melodies (``io.music.extract_melodies``, primers);
5. written as notes: each note's pitch, length in ticks and MIDI velocity.

Rests are notes of their own: pitch class 0 (:data:`REST`), with a duration class like any
note. Why a rest token rather than an onset-gap class on every note: a melody's silences
are part of its phrasing (a jig's held-back beat, a pop verse's breath), and one token
keeps the pitch, duration and velocity heads unchanged and each head's meaning simple
(a note's duration is how long it sounds, as a player reads it). A rest shorter than a
sixteenth (:data:`MIN_REST_STEPS`) is joined to the note before it: played lines (POP909)
end their notes a little early, which is articulation, not a rest; folk tunes written
from notation have none. Leading rests are dropped (a melody starts with its first note).

Classes, fitted on the training split only and saved with the dataset and the model
(:class:`NoteClasses`): durations are the :data:`MAX_DURATION_CLASSES` most common grid
lengths of the training notes and rests (each at least :data:`MIN_DURATION_SHARE` of
them, and heard twice); any other length reads as the nearest class on a log scale
(7 steps as 6 or 8).
Velocities are quantile bins: the training notes' velocities cut into
:data:`MAX_VELOCITY_CLASSES` equally full bins, each class the median velocity of its
bin (a folder with fewer distinct velocities keeps each as its own class: Nottingham's
files all play at 90, one class); any velocity reads as the nearest class.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

TICKS_PER_QUARTER = 12
"""This family's duration grid, in ticks per quarter note: sixteenths are 3 ticks, eighth-
note triplets 4 (finer than MelodyGen's sixteenth-note grid, ``theory.STEPS_PER_QUARTER``)."""
REST = 0
"""The pitch class of a rest; MIDI pitch ``p`` is class ``p + 1``."""
PITCH_CLASSES = 129
MIN_REST_STEPS = 3
"""Rests shorter than this (a sixteenth) are joined to the note before."""
MAX_DURATION_CLASSES = 24
MIN_DURATION_SHARE = 0.001
MAX_VELOCITY_CLASSES = 8
MAX_DURATION_STEPS = 16 * 4 * TICKS_PER_QUARTER
"""The longest duration class a model file may hold: 16 bars of 4/4, in ticks."""

PITCH, DURATION, VELOCITY = 0, 1, 2
"""The columns of a note array: raw (MIDI pitch or -1, ticks, MIDI velocity or 0)
or classes (pitch class, duration class, velocity class)."""


class NoMelodyError(ValueError):
    """A sequence holds no pitched note to read a melody from; the message says why."""


def line_instrument(sequence) -> int | None:
    """The instrument the melody is read from: a MELODY track (the one with most notes if
    several), else the non-drum instrument with the most notes; None without notes."""
    from melodygen.io.music import melody_instruments

    counts = Counter(
        note.instrument for note in sequence.notes if not note.is_drum and note.velocity > 0
    )
    if not counts:
        return None
    named = melody_instruments(sequence)
    candidates = named if named else set(counts)
    return max(sorted(candidates), key=lambda instrument: counts[instrument])


def melody_notes(sequence) -> np.ndarray:
    """A song's melody as raw notes: int32 [notes, 3] of (MIDI pitch, or -1 for a rest;
    length in ticks; MIDI velocity, 0 for a rest). See the module docstring.

    Raises:
        NoMelodyError: no pitched note, or none left after quantizing.
    """
    from melodygen.io.music import in_one_meter, note_seq, sequences_lib

    instrument = line_instrument(sequence)
    if instrument is None:
        raise NoMelodyError("no pitched notes")
    line = copy.deepcopy(sequence)
    kept = [n for n in line.notes if n.instrument == instrument and not n.is_drum and n.velocity]
    del line.notes[:]
    line.notes.extend(kept)
    line = in_one_meter(line, 4, 4)
    try:
        quantized = sequences_lib.quantize_note_sequence(line, TICKS_PER_QUARTER)
        melody = note_seq.Melody()
        melody.from_quantized_sequence(
            quantized,
            instrument=instrument,
            gap_bars=math.inf,  # rests never end the song: they are notes of their own
            ignore_polyphonic_notes=True,
            pad_end=False,
            filter_drums=True,
        )
    except (
        sequences_lib.QuantizationStatusError,
        sequences_lib.NegativeTimeError,
        note_seq.BadNoteError,
    ) as error:
        raise NoMelodyError(f"cannot be quantized ({error})") from None
    velocities: dict[tuple[int, int], int] = {}
    for note in sorted(quantized.notes, key=lambda n: (n.quantized_start_step, -n.pitch)):
        velocities.setdefault((note.quantized_start_step, note.pitch), note.velocity)
    return _events_to_notes(list(melody), melody.start_step, velocities)


def _events_to_notes(events: list[int], start: int, velocities: dict) -> np.ndarray:
    """Melody events (pitch, NOTE_OFF -1, NO_EVENT -2 per step) as notes and rests."""
    notes: list[list[int]] = []
    for step, event in enumerate(events):
        if event >= 0:
            notes.append([event, 1, velocities.get((start + step, event), 100)])
        elif event == -1 and notes:  # NOTE_OFF: a rest begins
            notes.append([-1, 1, 0])
        elif notes:  # NO_EVENT: the note or rest goes on
            notes[-1][1] += 1
    joined: list[list[int]] = []
    for note in notes:
        if note[0] < 0 and note[1] < MIN_REST_STEPS and joined:
            joined[-1][1] += note[1]
        elif note[0] < 0 and joined and joined[-1][0] < 0:
            joined[-1][1] += note[1]
        else:
            joined.append(note)
    while joined and joined[-1][0] < 0:
        joined.pop()
    if not joined:
        raise NoMelodyError("no notes left after quantizing")
    return np.array(joined, np.int32)


# Classes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteClasses:
    """The duration and velocity classes of a dataset and its models (see the module
    docstring): ``durations`` in ticks (:data:`TICKS_PER_QUARTER` a quarter note)
    and ``velocities`` as MIDI velocities, each ascending."""

    durations: tuple[int, ...]
    velocities: tuple[int, ...]

    @classmethod
    def fit(cls, songs: Iterable[np.ndarray]) -> NoteClasses:
        """Classes from the raw notes of the training songs."""
        songs = list(songs)
        lengths = Counter()
        played = []
        for notes in songs:
            lengths.update(notes[:, DURATION].tolist())
            played.append(notes[notes[:, PITCH] >= 0, VELOCITY])
        total = sum(lengths.values())
        if not total:
            raise ValueError("no notes to fit classes on")
        floor = max(2, MIN_DURATION_SHARE * total)
        ranked = sorted(lengths.items(), key=lambda item: (-item[1], item[0]))
        durations = [value for value, count in ranked if count >= floor]
        durations = sorted(durations[:MAX_DURATION_CLASSES] or [ranked[0][0]])
        return cls(tuple(int(d) for d in durations), velocity_bins(np.concatenate(played)))

    @property
    def sizes(self) -> tuple[int, int]:
        return len(self.durations), len(self.velocities)

    def encode(self, notes: np.ndarray) -> np.ndarray:
        """Raw notes -> int16 [notes, 3] classes (a rest's velocity class is 0)."""
        classes = np.zeros(notes.shape, np.int16)
        classes[:, PITCH] = np.where(notes[:, PITCH] >= 0, notes[:, PITCH] + 1, REST)
        logs = np.log(np.asarray(self.durations, np.float64))
        steps = np.log(np.maximum(notes[:, DURATION], 1).astype(np.float64))
        classes[:, DURATION] = np.abs(steps[:, None] - logs[None, :]).argmin(axis=1)
        velocity = np.abs(notes[:, VELOCITY, None] - np.asarray(self.velocities)[None, :])
        classes[:, VELOCITY] = np.where(notes[:, PITCH] >= 0, velocity.argmin(axis=1), 0)
        return classes

    def decode(self, classes: np.ndarray) -> np.ndarray:
        """Classes -> raw notes (MIDI pitch or -1, ticks, MIDI velocity or 0)."""
        classes = np.asarray(classes)
        notes = np.zeros(classes.shape, np.int32)
        rest = classes[:, PITCH] == REST
        notes[:, PITCH] = np.where(rest, -1, classes[:, PITCH] - 1)
        notes[:, DURATION] = np.asarray(self.durations)[classes[:, DURATION]]
        notes[:, VELOCITY] = np.where(rest, 0, np.asarray(self.velocities)[classes[:, VELOCITY]])
        return notes

    def describe(self) -> str:
        """The classes in words: durations in quarter notes, velocities as numbers."""
        return (
            f"durations (quarter notes) {', '.join(quarters(d) for d in self.durations)}; "
            f"velocities {', '.join(str(v) for v in self.velocities)}"
        )


def velocity_bins(velocities: np.ndarray) -> tuple[int, ...]:
    """The velocity classes of the training notes' velocities (quantile bins' medians)."""
    velocities = np.asarray(velocities, np.int64)
    if not len(velocities):
        return (100,)
    distinct = np.unique(velocities)
    if len(distinct) <= MAX_VELOCITY_CLASSES:
        return tuple(int(v) for v in distinct)
    edges = np.quantile(velocities, np.linspace(0, 1, MAX_VELOCITY_CLASSES + 1)[1:-1])
    bins = np.searchsorted(edges, velocities, side="right")
    medians = {int(round(np.median(velocities[bins == b]))) for b in np.unique(bins)}
    return tuple(sorted(medians))


def quarters(steps: int) -> str:
    """Grid steps in quarter notes: ``1/4``, ``1/3``, ``1``, ``3/2``."""
    from fractions import Fraction

    return str(Fraction(int(steps), TICKS_PER_QUARTER))


def played_notes(classes: np.ndarray) -> int:
    """How many notes (not rests) a class array plays."""
    return int((np.asarray(classes)[:, PITCH] != REST).sum())


def to_sequence(notes: np.ndarray, qpm: float = 120.0, meter: tuple[int, int] = (4, 4)):
    """Raw notes (see :func:`melody_notes`) as a NoteSequence at ``qpm``: each note with its
    own length and velocity, rests as silence, in ``meter`` from time 0."""
    from melodygen.io.music import note_seq

    step = 60.0 / qpm / TICKS_PER_QUARTER
    sequence = note_seq.NoteSequence()
    sequence.ticks_per_quarter = note_seq.STANDARD_PPQ
    sequence.tempos.add(time=0.0, qpm=qpm)
    sequence.time_signatures.add(time=0.0, numerator=meter[0], denominator=meter[1])
    time = 0
    for pitch, duration, velocity in np.asarray(notes).tolist():
        if pitch >= 0:
            sequence.notes.add(
                pitch=pitch,
                velocity=max(1, velocity),
                start_time=time * step,
                end_time=(time + duration) * step,
            )
        time += duration
    sequence.total_time = time * step
    return sequence
