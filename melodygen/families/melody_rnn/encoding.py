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

from melodygen.families.melody_rnn.configs import MelodyRnnConfig
from melodygen.theory import MODES, NO_EVENT, NOTE_OFF, NOTES_PER_OCTAVE, STEPS_PER_BAR

NUM_SPECIAL_EVENTS = 2  # NO_EVENT and NOTE_OFF, classes 0 and 1 of MelodyOneHotEncoding.
# STEPS_PER_BAR (16) is note_seq's DEFAULT_STEPS_PER_BAR, hard-wired in the key encoding.
MAJOR_SCALE = MODES["major"][0]

# _KEY_MEMBERSHIP[pitch_class, key] = 1 when the major key contains the pitch class
# (note_seq's NOTE_KEYS as a matrix). Row 12 is all zeros and stands for "no note".
_KEY_MEMBERSHIP = np.zeros((NOTES_PER_OCTAVE + 1, NOTES_PER_OCTAVE), dtype=np.int64)
for _pc in range(NOTES_PER_OCTAVE):
    for _key in range(NOTES_PER_OCTAVE):
        _KEY_MEMBERSHIP[_pc, _key] = (_pc - _key) % NOTES_PER_OCTAVE in MAJOR_SCALE

# Batched inputs_at count events per row with one bincount over `event + 2`:
# _EVENT_KEYS[event + 2] is the key membership of a note-on (zero for the two special events).
_EVENT_SLOTS = 128 + NUM_SPECIAL_EVENTS
_EVENT_KEYS = np.zeros((_EVENT_SLOTS, NOTES_PER_OCTAVE), dtype=np.float32)
_EVENT_KEYS[NUM_SPECIAL_EVENTS:] = _KEY_MEMBERSHIP[np.arange(128) % NOTES_PER_OCTAVE]
# _RECENT_KEY_FLAGS[169 a + 13 b + c]: the major keys that fit the pitch classes a, b and c
# best (12 stands for "no note"), i.e. the key flags of note_seq's last-three-notes melody.
_RECENT_KEY_COUNTS = _KEY_MEMBERSHIP[np.indices((13, 13, 13)).reshape(3, -1)].sum(axis=0)
_RECENT_KEY_FLAGS = (_RECENT_KEY_COUNTS == _RECENT_KEY_COUNTS.max(axis=1, keepdims=True)).astype(
    np.float32
)
# _PITCH_CLASS[event] for events -2..127 (negative indices wrap): 12 for the special events.
_PITCH_CLASS = np.concatenate([np.arange(128) % NOTES_PER_OCTAVE, [NOTES_PER_OCTAVE] * 2])
# How far back a window's cleaning first looks for an earlier note-on before scanning all.
_RECENT_SCAN = 64


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
    # Whether inputs and lookbacks depend on the melody's meter (``for_meter``).
    meter_dependent = False

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

    def for_meter(self, steps_per_bar: int, first_bar_line: int = 0) -> MelodyEncoding:
        """This encoding for melodies of ``steps_per_bar`` steps to the bar whose first bar
        line is at step ``first_bar_line``; Magenta's encodings ignore the meter (self)."""
        return self

    # Events and event classes -------------------------------------------------------------

    def event_classes(self, events: np.ndarray) -> np.ndarray:
        """MelodyOneHotEncoding.encode_event of each event (0 no-event, 1 note-off, 2+ pitch)."""
        return self._class_of(self._checked(events)).astype(np.int32)

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

        Events after ``position`` are ignored. The row comes from ``inputs_at``, so for the
        onehot and lookback encodings a numpy array costs the same however long it is.
        """
        if not 0 <= position < len(events):
            raise IndexError(f"position {position} outside a melody of {len(events)} events")
        if not isinstance(events, np.ndarray):
            # A note_seq Melody cleans its slices and lists convert faster whole: take a list.
            events = np.asarray(list(itertools.islice(events, position + 1)), dtype=np.int64)
        return self.inputs_at(np.asarray(events).reshape(1, -1), position)[0]

    def inputs_at(self, histories: np.ndarray, position: int) -> np.ndarray:
        """float32 [rows, input_size]: row r equals input_at(histories[r, :position + 1], position).

        The batched step of generation: one vectorized pass over every row's history,
        columns after ``position`` ignored. Each row is read as note_seq's Melody reads it
        (its own note-offs before its first note-on are no-events). The onehot and
        lookback encodings read only the last ``context + 1`` columns (older ones only for
        rows whose cleaning depends on them); the key encoding reads all of them.
        """
        hist = np.asarray(histories)
        if hist.ndim != 2:
            raise ValueError(f"histories must be [rows, steps], got shape {hist.shape}")
        if not 0 <= position < hist.shape[1]:
            raise IndexError(f"position {position} outside histories of {hist.shape[1]} steps")
        if hist.dtype.kind != "i" or hist.itemsize < 2:
            hist = hist.astype(np.int64)  # int8 would overflow in the class arithmetic
        return self._inputs_at(hist, position)

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

    def _inputs(self, ev: np.ndarray) -> np.ndarray:
        """Input rows of cleaned events, one per event."""
        raise NotImplementedError

    def _inputs_at(self, hist: np.ndarray, position: int) -> np.ndarray:
        """Input rows at ``position`` of raw (uncleaned, unchecked) signed-int histories."""
        raise NotImplementedError

    def _class_of(self, ev: np.ndarray) -> np.ndarray:
        """Event classes of checked events, any shape (event_classes without the checks)."""
        return np.where(ev < 0, ev + NUM_SPECIAL_EVENTS, ev - self.min_note + NUM_SPECIAL_EVENTS)

    def _check_batch(self, ev: np.ndarray, gaps: bool = True) -> None:
        """Raise what ``_checked`` raises for events of any shape; a few whole-array passes.

        ``gaps=False`` leaves out pitches below min_note (the caller checks them itself).
        """
        if not ev.size:
            return
        bad = ev.min() < NO_EVENT or ev.max() >= self.max_note
        if not bad and gaps and self.min_note > 0:
            # Read as unsigned, the special events are huge: only pitches below min_note stay small.
            bad = bool((ev.view(np.dtype(f"u{ev.itemsize}")) < self.min_note).any())
        if bad:
            self._checked(ev)  # raises, naming the first bad event

    def _window(self, hist: np.ndarray, position: int) -> np.ndarray:
        """Checked, cleaned events hist[:, position - context : position + 1] (clipped at 0)."""
        start = max(0, position - self.context)
        window = hist[:, start : position + 1]
        self._check_batch(window)
        early = window == NOTE_OFF
        if early.any():
            # Melody's cleaning: a note-off with no note-on at or before it is a no-event.
            early &= ~np.logical_or.accumulate(window >= 0, axis=1)
            if start and early.any():
                rows = np.flatnonzero(early.any(axis=1))
                early[rows] &= ~_any_note_before(hist[rows], start)[:, None]
            if early.any():
                window = np.where(early, NO_EVENT, window)
        return window


def _any_note_before(hist: np.ndarray, stop: int) -> np.ndarray:
    """Per row: whether hist[:, :stop] holds a note-on. Recent columns first, then the rest."""
    recent = max(0, stop - _RECENT_SCAN)
    found = (hist[:, recent:stop] >= 0).any(axis=1)
    if recent and not found.all():
        rest = np.flatnonzero(~found)
        found[rest] = (hist[rest, :recent] >= 0).any(axis=1)
    return found


def _counter_row(steps_so_far: int, bits: int) -> list[float]:
    """``_counter_bits`` of one step count, as a list (cheaper for a single row)."""
    return [1.0 if steps_so_far >> bit & 1 else -1.0 for bit in range(bits)]


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

    def _inputs(self, ev: np.ndarray) -> np.ndarray:
        out = np.zeros((len(ev), self.input_size), dtype=np.float32)
        out[np.arange(len(ev)), self.event_classes(ev)] = 1.0
        return out

    def _inputs_at(self, hist: np.ndarray, position: int) -> np.ndarray:
        current = self._window(hist, position)[:, -1]
        out = np.zeros((len(hist), self.input_size), dtype=np.float32)
        out[np.arange(len(hist)), self._class_of(current)] = 1.0
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
        # Where each lookback's one-hot block starts.
        self._lookback_offsets = self.num_event_classes * np.arange(1, lookbacks + 1)

    def _inputs(self, ev: np.ndarray) -> np.ndarray:
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
        out[:, offset : offset + self.counter_bits] = self._position_rows(rows + 1)
        offset += self.counter_bits
        out[:, offset:] = self._repeat_flags(ev)
        return out

    def _position_rows(self, steps_so_far: np.ndarray) -> np.ndarray:
        """[n, counter_bits]: where the next event falls (Magenta's binary step counter)."""
        return _counter_bits(steps_so_far, self.counter_bits)

    def _position_row(self, steps_so_far: int) -> list[float]:
        """One row of ``_position_rows``, as a list (cheaper for a single row)."""
        return _counter_row(steps_so_far, self.counter_bits)

    def _inputs_at(self, hist: np.ndarray, position: int) -> np.ndarray:
        window = self._window(hist, position)  # ends at position, reaches back `context`
        width = window.shape[1]
        distances = np.asarray(self.lookback_distances, dtype=np.int64)
        classes = self._class_of(window)
        # The event after each lookback, at window column width - d; class 0 (the default
        # event) while the melody does not reach back that far.
        reaches = position - distances + 1 >= 0
        lookback_classes = np.where(reaches, classes[:, np.maximum(width - distances, 0)], 0)
        hot = np.concatenate([classes[:, -1:], lookback_classes + self._lookback_offsets], axis=1)
        out = np.zeros((len(hist), self.input_size), dtype=np.float32)
        out[np.arange(len(hist))[:, None], hot] = 1.0
        offset = (len(distances) + 1) * self.num_event_classes
        out[:, offset : offset + self.counter_bits] = self._position_row(position + 1)
        offset += self.counter_bits
        earlier = window[:, np.maximum(width - 1 - distances, 0)]
        out[:, offset:] = (earlier == window[:, -1:]) & (position - distances >= 0)
        return out


BAR_STEP_SLOTS = 32
"""Slots of the phrase encoding's step-in-bar one-hot: bars of up to 32 steps (4/4, 3/4,
6/8, 2/4, 12/8, 4/2) get a slot per step; a longer bar wraps round."""


class PhraseMelodyEncoding(LookbackMelodyEncoding):
    """Magenta's lookback encoding with its lookbacks measured in bars of the melody's meter.

    Lookbacks reach ``lookback_bars`` bars back (1, 2, 4 and 8 for ``phrase_rnn``), so a
    4/4 tune looks 16, 32, 64 and 128 steps back and a 6/8 one 12, 24, 48 and 96: the
    network can copy whole 4- and 8-bar phrases. In place of Magenta's binary step
    counter (which assumes 16-step bars) the next event's place is given in the meter: a
    one-hot of its step in the bar (:data:`BAR_STEP_SLOTS`) and one of its bar's place in a
    ``phrase_bars``-bar phrase. Labels, repeat labels and repeat flags are the lookback
    encoding's (note_seq's, with these distances). Sizes do not depend on the meter, so one
    network reads every meter; :meth:`for_meter` gives the encoding of one meter (4/4 until
    then).
    """

    meter_dependent = True

    def __init__(
        self,
        min_note: int,
        max_note: int,
        lookback_bars: Sequence[int],
        phrase_bars: int,
        steps_per_bar: int = STEPS_PER_BAR,
        first_bar_line: int = 0,
    ) -> None:
        self.lookback_bars = tuple(int(bars) for bars in lookback_bars)
        if not self.lookback_bars or min(self.lookback_bars) < 1:
            raise ValueError(f"phrase lookbacks must be 1 bar or more: {lookback_bars}")
        if int(phrase_bars) < 1:
            raise ValueError(f"phrase_bars must be 1 or more, not {phrase_bars}")
        if int(steps_per_bar) < 1:
            raise ValueError(f"a bar needs at least one step, not {steps_per_bar}")
        self.phrase_bars = int(phrase_bars)
        self.steps_per_bar = int(steps_per_bar)
        self.first_bar_line = int(first_bar_line)
        distances = [bars * self.steps_per_bar for bars in self.lookback_bars]
        super().__init__(min_note, max_note, distances, BAR_STEP_SLOTS + self.phrase_bars)
        self._meters: dict[tuple[int, int], PhraseMelodyEncoding] = {}

    def for_meter(self, steps_per_bar: int, first_bar_line: int = 0) -> PhraseMelodyEncoding:
        key = (int(steps_per_bar), int(first_bar_line))
        if key == (self.steps_per_bar, self.first_bar_line):
            return self
        if key not in self._meters:
            self._meters[key] = PhraseMelodyEncoding(
                self.min_note, self.max_note, self.lookback_bars, self.phrase_bars, *key
            )
        return self._meters[key]

    def _position_rows(self, steps_so_far: np.ndarray) -> np.ndarray:
        since = np.asarray(steps_so_far, dtype=np.int64) - self.first_bar_line
        step = since % self.steps_per_bar % BAR_STEP_SLOTS
        bar = since // self.steps_per_bar % self.phrase_bars
        out = np.zeros((len(since), self.counter_bits), dtype=np.float32)
        rows = np.arange(len(since))
        out[rows, step] = 1.0
        out[rows, BAR_STEP_SLOTS + bar] = 1.0
        return out

    def _position_row(self, steps_so_far: int) -> np.ndarray:
        return self._position_rows(np.array([steps_so_far]))[0]


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

    def _inputs(self, ev: np.ndarray) -> np.ndarray:
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
        out[:, offset : offset + self.counter_bits] = _counter_bits(step + 1, self.counter_bits)
        offset += self.counter_bits
        out[:, offset] = (step + 1) % STEPS_PER_BAR == 0
        offset += 1

        # Keys of the whole melody so far: running pitch-class counts times key membership.
        pitch_class_counts = np.zeros((n, NOTES_PER_OCTAVE), dtype=np.int64)
        pitch_class_counts[note_steps, pitches % NOTES_PER_OCTAVE] = 1
        key_counts = np.cumsum(pitch_class_counts, axis=0) @ _KEY_MEMBERSHIP[:NOTES_PER_OCTAVE]
        out[:, offset : offset + NOTES_PER_OCTAVE] = key_counts == key_counts.max(
            axis=1, keepdims=True
        )
        return out

    def _inputs_at(self, hist: np.ndarray, position: int) -> np.ndarray:
        ev = hist[:, : position + 1]
        self._check_batch(ev, gaps=False)  # pitches below min_note: from the counts below
        if ev.dtype != np.int16:
            ev = ev.astype(np.int16)  # checked to fit; narrower passes are faster
        rows, r = len(ev), self.note_range
        at = np.arange(rows)

        def latest(mask: np.ndarray) -> np.ndarray:
            """Each row's event at the latest True of mask, else its event at position."""
            return ev[at, position - mask[:, ::-1].argmax(axis=1)]

        # The event at `position` stands in for "none": a no-event (no sounding note), a
        # note-off (no attack) or, when a note-on, the latest note itself.
        current = latest(ev != NO_EVENT)  # the latest note-on or note-off
        playing = current > 0  # note_seq tests `if current_note:`, so pitch 0 is silence
        attack = latest(ev != NOTE_OFF) >= 0
        # The three most recently played distinct pitches (note_seq's last_3_notes deque).
        is_note = ev >= 0
        first = latest(is_note)
        others = is_note & (ev != first[:, None])
        second = latest(others)
        third = latest(others & (ev != second[:, None]))
        has_second = (second >= 0) & (second != first)
        has_third = (third >= 0) & (third != first)
        # Direction: the latest change of pitch between note-ons went from second to first.
        direction = np.where(has_second, np.sign(first - second), 0)
        recent_keys = _RECENT_KEY_FLAGS[
            169 * _PITCH_CLASS[first]
            + 13 * _PITCH_CLASS[np.where(has_second, second, NO_EVENT)]
            + _PITCH_CLASS[np.where(has_third, third, NO_EVENT)]
        ]

        # Repeats compare cleaned events: a note-off before the row's first note-on is a
        # no-event there.
        distances = np.asarray(self.lookback_distances, dtype=np.int64)
        columns = np.concatenate([[position], np.maximum(position - distances, 0)])
        picked = ev[:, columns]
        first_note = np.where(first >= 0, is_note.argmax(axis=1), position + 1)
        picked = np.where((picked == NOTE_OFF) & (columns < first_note[:, None]), NO_EVENT, picked)
        repeats = (picked[:, 1:] == picked[:, :1]) & (position - distances >= 0)

        # Keys of the whole melody so far: how many note-ons of each row fit each key.
        counts = np.bincount(
            (ev + (NUM_SPECIAL_EVENTS + _EVENT_SLOTS * at)[:, None]).ravel(),
            minlength=rows * _EVENT_SLOTS,
        ).reshape(rows, _EVENT_SLOTS)
        if (
            self.min_note
            and counts[:, NUM_SPECIAL_EVENTS : NUM_SPECIAL_EVENTS + self.min_note].any()
        ):
            self._checked(ev)  # a pitch below min_note: raises
        key_counts = counts.astype(np.float32) @ _EVENT_KEYS

        out = np.zeros((rows, self.input_size), dtype=np.float32)
        out[at, np.where(playing, current - self.min_note, r + 1)] = 1.0
        out[:, r] = playing
        out[:, r + 2] = attack
        out[:, r + 3] = direction
        offset = r + 4
        out[:, offset : offset + len(distances)] = repeats
        offset += len(distances)
        out[:, offset : offset + self.counter_bits] = _counter_row(position + 1, self.counter_bits)
        offset += self.counter_bits
        out[:, offset] = (position + 1) % STEPS_PER_BAR == 0
        offset += 1
        out[:, offset : offset + NOTES_PER_OCTAVE] = key_counts == key_counts.max(
            axis=1, keepdims=True
        )
        out[:, offset + NOTES_PER_OCTAVE :] = recent_keys
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
    if config.encoding == "phrase":
        return PhraseMelodyEncoding(
            config.min_note, config.max_note, config.lookback_bars, config.phrase_bars
        )
    if config.encoding == "key":
        return KeyMelodyEncoding(
            config.min_note, config.max_note, config.lookback_distances, config.binary_counter_bits
        )
    raise ValueError(
        f"unknown encoding {config.encoding!r}; expected onehot, lookback, phrase or key"
    )
