"""Vectorized NumPy twins of note_seq's melody encoder-decoders.

note_seq builds every input vector with a Python loop over the melody (and
``KeyMelodyEncoderDecoder`` rescans the whole prefix for each step), which is
what makes Magenta's dataset build slow. These classes compute the same inputs
and labels for a whole melody at once with cumulative sums, shifted arrays and
forward fills. They are bit-for-bit equal to note_seq; ``tests/test_encoding.py``
keeps note_seq as the reference.

Melody events are Magenta's: ``>= 0`` is a note-on at that MIDI pitch,
``-1`` (NOTE_OFF) ends the sounding note and ``-2`` (NO_EVENT) continues
whatever is happening. Events are read the way ``note_seq.Melody(events)`` reads
them: note-offs before the first note-on count as no-events.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from melodygen.models.configs import MelodyRnnConfig

NOTE_OFF = -1
NO_EVENT = -2
NUM_SPECIAL_EVENTS = 2  # NO_EVENT and NOTE_OFF, classes 0 and 1 of MelodyOneHotEncoding.
NOTES_PER_OCTAVE = 12
STEPS_PER_BAR = 16  # note_seq's DEFAULT_STEPS_PER_BAR, hard-wired in the key encoding.
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)

# _KEY_MEMBERSHIP[pitch_class, key] = 1 when the major key contains the pitch class
# (note_seq's NOTE_KEYS as a matrix). Row 12 is all zeros and stands for "no note".
_KEY_MEMBERSHIP = np.zeros((NOTES_PER_OCTAVE + 1, NOTES_PER_OCTAVE), dtype=np.int64)
for _pc in range(NOTES_PER_OCTAVE):
    for _key in range(NOTES_PER_OCTAVE):
        _KEY_MEMBERSHIP[_pc, _key] = (_pc - _key) % NOTES_PER_OCTAVE in MAJOR_SCALE


class MelodyEncoding:
    """Vectorized twin of a note_seq melody encoder-decoder.

    Labels and their decoding are shared by all three encodings: a label is
    either a plain event (through a fixed table) or "repeat the event from
    ``lookback_distances[i]`` steps ago". Subclasses only say how inputs look.
    """

    input_size: int
    num_classes: int
    num_event_classes: int
    default_event_label: int
    # How many earlier events one input row looks at (None: the whole melody so far).
    context: int | None = None

    def __init__(
        self,
        min_note: int,
        max_note: int,
        lookback_distances: Sequence[int] = (),
        class_to_label: np.ndarray | None = None,
    ) -> None:
        if min_note < 0 or max_note > 128 or max_note <= min_note:
            raise ValueError(f"bad note range [{min_note}, {max_note}): need 0 <= min < max <= 128")
        self.min_note = min_note
        self.max_note = max_note
        self.lookback_distances = tuple(int(d) for d in lookback_distances)
        if any(distance < 1 for distance in self.lookback_distances):
            raise ValueError(f"lookback distances must be positive: {self.lookback_distances}")
        self.num_event_classes = max_note - min_note + NUM_SPECIAL_EVENTS
        # Plain label of each event class; the repeat labels follow the plain ones.
        if class_to_label is None:
            class_to_label = np.arange(self.num_event_classes)
        self._class_to_label = np.asarray(class_to_label, dtype=np.int64)
        self._label_to_class = np.argsort(self._class_to_label)
        self._first_repeat_label = self.num_event_classes
        self.num_classes = self.num_event_classes + len(self.lookback_distances)
        self.default_event_label = int(self._class_to_label[0])

    # Events and event classes -------------------------------------------------------------

    def event_classes(self, events: np.ndarray) -> np.ndarray:
        """MelodyOneHotEncoding.encode_event of each event (0 no-event, 1 note-off, 2+ pitch)."""
        ev = self._checked(events)
        return np.where(
            ev < 0, ev + NUM_SPECIAL_EVENTS, ev - self.min_note + NUM_SPECIAL_EVENTS
        ).astype(np.int32)

    def events_from_classes(self, classes: np.ndarray) -> np.ndarray:
        """Inverse of ``event_classes`` (MelodyOneHotEncoding.decode_event)."""
        cls = np.asarray(classes, dtype=np.int64)
        if cls.size and (cls.min() < 0 or cls.max() >= self.num_event_classes):
            raise ValueError(f"event class out of range [0, {self.num_event_classes})")
        return np.where(
            cls < NUM_SPECIAL_EVENTS,
            cls - NUM_SPECIAL_EVENTS,
            cls - NUM_SPECIAL_EVENTS + self.min_note,
        ).astype(np.int32)

    # Inputs and labels --------------------------------------------------------------------

    def inputs(self, events: np.ndarray) -> np.ndarray:
        """float32 [n, input_size]: row i is note_seq's events_to_input(Melody(events), i)."""
        return self._inputs(self._melody(events))

    def input_at(self, events: Sequence[int], position: int) -> np.ndarray:
        """One input row, for incremental generation; equals ``inputs(events)[position]``.

        Only the events the row depends on are converted, so for the onehot and lookback
        encodings a step costs about the same however long the melody has grown; the key
        encoding's key estimates need the whole melody so far.
        """
        if not 0 <= position < len(events):
            raise IndexError(f"position {position} outside a melody of {len(events)} events")
        if not isinstance(events, (list, tuple, np.ndarray)):
            events = list(events)  # a note_seq Melody cleans its slices, so slice a list
        start = 0 if self.context is None else max(0, position - self.context)
        window = self._checked(events[start : position + 1])
        if not any(event >= 0 for event in itertools.islice(events, start)):
            window = self._clean(window)  # no note before the window: Melody's cleaning applies
        return self._inputs(window, origin=start)[-1]

    def labels(self, events: np.ndarray) -> np.ndarray:
        """int32 [n-1]: entry i is note_seq's events_to_label(Melody(events), i + 1)."""
        return self._labels(self._melody(events))

    def encode(self, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, labels) as note_seq's encode(Melody(events)) gives them, as arrays."""
        ev = self._melody(events)
        # Input i only looks at events[:i + 1], so the inputs of the prefix are exact.
        return self._inputs(ev[:-1]), self._labels(ev)

    def label_event_classes(self, events: np.ndarray) -> np.ndarray:
        """int32 [n-1, num_classes]: event class that each label decodes to after events[:i+1].

        Evaluation uses this to add label probabilities up into probabilities of the
        events that actually follow (a repeat label and a plain label can both mean it).
        """
        ev = self._melody(events)
        n = max(len(ev) - 1, 0)
        table = np.tile(self._label_to_class.astype(np.int32), (n, 1))
        table = np.concatenate(
            [table, np.zeros((n, len(self.lookback_distances)), dtype=np.int32)], axis=1
        )
        history = np.arange(1, n + 1)
        classes = self.event_classes(ev)
        for i, distance in enumerate(self.lookback_distances):
            source = history - distance  # events[-distance] of a history this long
            known = source >= 0
            # A history shorter than the distance repeats the default event (class 0).
            table[known, self._first_repeat_label + i] = classes[source[known]]
        return table

    def decode_label(self, label: int, events: Sequence[int]) -> int:
        """The melody event a sampled label stands for, given the events so far."""
        label = int(label)
        if not 0 <= label < self.num_classes:
            raise ValueError(f"label {label} outside [0, {self.num_classes})")
        if label >= self._first_repeat_label:
            distance = self.lookback_distances[label - self._first_repeat_label]
            if len(events) < distance:
                return NO_EVENT
            return int(self._melody(events)[-distance])
        return int(self.events_from_classes(self._label_to_class[label]))

    # Shared machinery ---------------------------------------------------------------------

    def _checked(self, events) -> np.ndarray:
        """Events as int64, refusing values MelodyOneHotEncoding.encode_event would refuse."""
        ev = np.asarray(events, dtype=np.int64).reshape(-1)
        if ev.size:
            bad = (ev < NO_EVENT) | ((ev >= 0) & (ev < self.min_note)) | (ev >= self.max_note)
            if bad.any():
                raise ValueError(
                    f"melody event {int(ev[bad][0])} is outside [{self.min_note}, {self.max_note})"
                    " and not a special event (-1 note-off, -2 no-event)"
                )
        return ev

    def _melody(self, events) -> np.ndarray:
        """Checked events read as note_seq's Melody(events) reads them."""
        return self._clean(self._checked(events))

    @staticmethod
    def _clean(ev: np.ndarray) -> np.ndarray:
        """Note-offs before the first note-on become no-events (Melody's constructor does it)."""
        notes = np.flatnonzero(ev >= 0)
        first_note = notes[0] if notes.size else len(ev)
        if (ev[:first_note] == NOTE_OFF).any():
            ev = ev.copy()
            ev[:first_note] = NO_EVENT
        return ev

    def _labels(self, ev: np.ndarray) -> np.ndarray:
        if len(ev) < 2:
            return np.zeros(0, dtype=np.int32)
        labels = self._class_to_label[self.event_classes(ev[1:])]
        position = np.arange(1, len(ev))
        # note_seq tries the last-listed lookback first; here later assignments win.
        for i, repeats in enumerate(self._repeat_flags(ev)[1:].T):
            labels[repeats] = self._first_repeat_label + i
        if self.lookback_distances:
            # Before the last lookback distance, a no-event is labelled "repeat the last
            # lookback" (whose decoding is then the default no-event).
            early_silence = (position < self.lookback_distances[-1]) & (ev[1:] == NO_EVENT)
            labels[early_silence] = self.num_classes - 1
        return labels.astype(np.int32)

    def _repeat_flags(self, ev: np.ndarray) -> np.ndarray:
        """[n, L]: events[p] == events[p - d] for each lookback distance d (False when p < d)."""
        flags = np.zeros((len(ev), len(self.lookback_distances)), dtype=bool)
        for i, distance in enumerate(self.lookback_distances):
            if distance < len(ev):
                flags[distance:, i] = ev[distance:] == ev[:-distance]
        return flags

    def _inputs(self, ev: np.ndarray, origin: int = 0) -> np.ndarray:
        """Input rows of cleaned events; ``origin`` is the melody position of ``ev[0]``."""
        raise NotImplementedError


def _counter_bits(steps_so_far: np.ndarray, bits: int) -> np.ndarray:
    """[n, bits] of +1/-1: the binary digits of the number of steps so far (next event's spot)."""
    digits = (steps_so_far[:, None] >> np.arange(bits)) & 1
    return (2 * digits - 1).astype(np.float32)


class OneHotMelodyEncoding(MelodyEncoding):
    """note_seq's OneHotEventSequenceEncoderDecoder(MelodyOneHotEncoding): input = current event."""

    context = 0

    def __init__(self, min_note: int, max_note: int) -> None:
        super().__init__(min_note, max_note)
        self.input_size = self.num_event_classes

    def _inputs(self, ev: np.ndarray, origin: int = 0) -> np.ndarray:
        out = np.zeros((len(ev), self.input_size), dtype=np.float32)
        out[np.arange(len(ev)), self.event_classes(ev)] = 1.0
        return out


class LookbackMelodyEncoding(MelodyEncoding):
    """note_seq's LookbackEventSequenceEncoderDecoder over MelodyOneHotEncoding.

    Input: current event, the event that follows each lookback (what a repeat would
    play next), a binary step counter and whether the current event repeats each lookback.
    """

    def __init__(
        self, min_note: int, max_note: int, lookback_distances: Sequence[int], counter_bits: int
    ) -> None:
        super().__init__(min_note, max_note, lookback_distances)
        self.counter_bits = counter_bits
        lookbacks = len(self.lookback_distances)
        self.input_size = (lookbacks + 1) * self.num_event_classes + counter_bits + lookbacks
        self.context = max(self.lookback_distances, default=0)

    def _inputs(self, ev: np.ndarray, origin: int = 0) -> np.ndarray:
        # Lookbacks index within ev: a window from input_at starts `context` steps back, so
        # it reaches every lookback whenever origin > 0.
        rows = np.arange(len(ev))
        classes = self.event_classes(ev)
        out = np.zeros((len(ev), self.input_size), dtype=np.float32)
        out[rows, classes] = 1.0
        offset = self.num_event_classes
        for distance in self.lookback_distances:
            source = rows - distance + 1
            # Before the history reaches back that far, the default event (class 0) is used.
            lookback_class = np.where(source >= 0, classes[np.maximum(source, 0)], 0)
            out[rows, offset + lookback_class] = 1.0
            offset += self.num_event_classes
        out[:, offset : offset + self.counter_bits] = _counter_bits(
            origin + rows + 1, self.counter_bits
        )
        offset += self.counter_bits
        out[:, offset:] = self._repeat_flags(ev)
        return out


class KeyMelodyEncoding(MelodyEncoding):
    """note_seq's KeyMelodyEncoderDecoder: sounding pitch, attack, direction, repeats,
    step counter, bar start and major-key estimates of the whole melody and of the last
    three distinct pitches.

    Its labels put the pitches first: [0, range) note-ons, range no-event, range + 1
    note-off, then the repeat labels.
    """

    def __init__(
        self, min_note: int, max_note: int, lookback_distances: Sequence[int], counter_bits: int
    ) -> None:
        if not lookback_distances:
            raise ValueError("the key encoding needs at least one lookback distance")
        note_range = max_note - min_note
        class_to_label = np.concatenate([[note_range, note_range + 1], np.arange(note_range)])
        super().__init__(min_note, max_note, lookback_distances, class_to_label)
        self.note_range = note_range
        self.counter_bits = counter_bits
        # pitch, playing/silent, attack, direction, repeats, counter, bar start, two key sets
        head = note_range + 2 + 1 + 1 + len(self.lookback_distances)
        self.input_size = head + counter_bits + 1 + 2 * NOTES_PER_OCTAVE

    def _inputs(self, ev: np.ndarray, origin: int = 0) -> np.ndarray:
        n, r = len(ev), self.note_range
        out = np.zeros((n, self.input_size), dtype=np.float32)
        if n == 0:
            return out
        step = np.arange(n)

        # Sounding note: the latest note-on or note-off decides. note_seq tests
        # `if current_note:`, so a sounding pitch 0 reads as silence; kept for equality.
        last_on_off = np.maximum.accumulate(np.where(ev != NO_EVENT, step, -1))
        current = np.where(last_on_off >= 0, ev[last_on_off], NOTE_OFF)
        playing = current > 0
        out[step[playing], current[playing] - self.min_note] = 1.0
        out[:, r] = playing
        out[:, r + 1] = ~playing

        # Attack: note_seq clears it on a no-event, sets it on a note-on and leaves it
        # alone on a note-off, so it is "the latest event that is not a note-off is a note-on".
        last_not_off = np.maximum.accumulate(np.where(ev != NOTE_OFF, step, -1))
        out[:, r + 2] = (last_not_off >= 0) & (ev[last_not_off] >= 0)

        note_steps = np.flatnonzero(ev >= 0)
        pitches = ev[note_steps]
        latest_note = np.cumsum(ev >= 0) - 1  # index into pitches, -1 before the first note
        has_note = latest_note >= 0
        latest_note = latest_note[has_note]
        recent_keys = slice(self.input_size - NOTES_PER_OCTAVE, self.input_size)
        out[~has_note, recent_keys] = 1.0  # no notes: every key ties at zero
        if pitches.size:
            # Direction: sign of the latest nonzero step between consecutive note-ons.
            change = np.sign(np.diff(pitches, prepend=pitches[0]))
            last_move = np.maximum.accumulate(np.where(change != 0, np.arange(pitches.size), -1))
            direction = np.where(last_move >= 0, change[last_move], 0)
            out[has_note, r + 3] = direction[latest_note]
            # Keys of the last three distinct pitches (note_seq's 3-long most-recent deque).
            run_keys, note_run = self._run_recent_key_flags(pitches)
            out[has_note, recent_keys] = run_keys[note_run[latest_note]]

        offset = r + 4
        lookbacks = len(self.lookback_distances)
        out[:, offset : offset + lookbacks] = self._repeat_flags(ev)
        offset += lookbacks
        out[:, offset : offset + self.counter_bits] = _counter_bits(
            origin + step + 1, self.counter_bits
        )
        offset += self.counter_bits
        out[:, offset] = (origin + step + 1) % STEPS_PER_BAR == 0
        offset += 1

        # Keys of the whole melody so far: running pitch-class counts times key membership.
        pitch_class_counts = np.zeros((n, NOTES_PER_OCTAVE), dtype=np.int64)
        pitch_class_counts[note_steps, pitches % NOTES_PER_OCTAVE] = 1
        key_counts = np.cumsum(pitch_class_counts, axis=0) @ _KEY_MEMBERSHIP[:NOTES_PER_OCTAVE]
        out[:, offset : offset + NOTES_PER_OCTAVE] = key_counts == key_counts.max(
            axis=1, keepdims=True
        )
        return out

    @staticmethod
    def _run_recent_key_flags(pitches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Key flags of the last three distinct pitches, per run of repeated pitches.

        Returns (flags [runs, 12], run index of each note-on). Collapse repeated
        pitches into runs v_0..v_m. At run t the deque holds v_t, v_{t-1} and the
        latest earlier value outside those two: runs alternate between v_t and
        v_{t-1} back to the last w <= t - 2 with v_w != v_{w+2}, and v_w is that third.
        """
        new_run = np.ones(pitches.size, dtype=bool)
        new_run[1:] = pitches[1:] != pitches[:-1]
        note_run = np.cumsum(new_run) - 1
        values = pitches[new_run]
        runs = values.size
        breaks = np.full(runs, -1)
        breaks[2:] = np.where(values[:-2] != values[2:], np.arange(runs - 2), -1)
        third = np.maximum.accumulate(breaks)
        none = NOTES_PER_OCTAVE  # the all-zero membership row
        classes = values % NOTES_PER_OCTAVE
        second_class = np.full(runs, none)
        second_class[1:] = classes[:-1]
        third_class = np.where(third >= 0, classes[np.maximum(third, 0)], none)
        counts = (
            _KEY_MEMBERSHIP[classes] + _KEY_MEMBERSHIP[second_class] + _KEY_MEMBERSHIP[third_class]
        )
        return counts == counts.max(axis=1, keepdims=True), note_run


def make_encoding(config: MelodyRnnConfig) -> MelodyEncoding:
    """The encoding a configuration names, with its note range, lookbacks and counter bits."""
    if config.encoding == "onehot":
        return OneHotMelodyEncoding(config.min_note, config.max_note)
    if config.encoding == "lookback":
        return LookbackMelodyEncoding(
            config.min_note, config.max_note, config.lookback_distances, config.binary_counter_bits
        )
    if config.encoding == "key":
        return KeyMelodyEncoding(
            config.min_note, config.max_note, config.lookback_distances, config.binary_counter_bits
        )
    raise ValueError(f"unknown encoding {config.encoding!r}; expected onehot, lookback or key")
