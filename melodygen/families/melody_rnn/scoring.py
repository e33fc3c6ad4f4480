"""Bits per note of a Melody RNN: how well it predicts whole tunes, in a family-neutral unit.

A tune is scored whole, in the model's own representation: its melodies are extracted
as ``melodygen dataset build`` does but keeping every piece however short or long
(:data:`SCORING_PARAMS`: no minimum length, no cut at 512 steps, any number of pitches,
so every note of a monophonic tune is scored), squashed and encoded for the model's
encoding; the network reads each melody once (dropout off), and at every step the
probability of the event that actually follows is taken, every label that decodes to it
summed (a lookback model's "repeat" and plain labels may both mean it: see
:func:`~melodygen.families.melody_rnn.metrics.event_log_probs`). The tune's bits are the
sum of ``-log2 P(event)`` over all its steps, plus, for the first event of each melody
(which the network reads before its first prediction and so never predicts),
``log2(event classes)``: the bits of a uniform guess, so no family gets a note for free.
Without that charge the total is the held-out ``nll`` figure's.

Scoring a built dataset reads the stored inputs and targets (NumPy only, no MIDI stack);
scoring tunes (``melodygen evaluate --input``) needs note_seq to extract melodies.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from melodygen.core.batches import BatchShape, pad_batch
from melodygen.core.family import TuneScore
from melodygen.errors import MelodyGenError
from melodygen.families.melody_rnn.dataset import (
    MelodyDataset,
    MelodySplit,
    encode_melody,
    meter_steps,
)
from melodygen.theory import STEPS_PER_BAR

if TYPE_CHECKING:
    from note_seq import NoteSequence

    from melodygen.families.melody_rnn.model_file import ModelInfo

LN2 = math.log(2.0)
SCORING_PARAMS = {"min_bars": 0, "max_steps": 0, "min_unique_pitches": 1}
"""Extraction for scoring (ExtractionParams fields): every piece of every tune, never cut."""
SCORING_BATCH_SIZE = 64
"""Melodies per forward pass: up to 64 x 512 steps, a few MB of logits."""


def melody_nats(model, info: ModelInfo, split: MelodySplit, batch_size: int | None = None):
    """float64 [melodies]: the summed event NLL (nats) of each melody of ``split``.

    Melodies are read in batches of similar length (little padding); padded steps are
    masked out, so the batch size does not change the sums beyond float32 rounding.
    """
    from melodygen.families.melody_rnn.metrics import event_log_probs

    batch_size = batch_size or SCORING_BATCH_SIZE
    totals = np.zeros(len(split), np.float64)
    if len(split) == 0:
        return totals
    shape = BatchShape.for_backend(batch_size)
    table = np.asarray(info.label_event_classes)
    order = np.argsort(split.lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        inputs, targets = pad_batch(split, indices, shape)
        logits = model.predict_on_batch(inputs)
        log_probs = np.asarray(event_log_probs(targets, logits, table, info.num_event_classes))
        events = np.maximum(targets[..., 1], 0)
        picked = np.take_along_axis(log_probs, events[..., None], axis=-1)[..., 0]
        real = targets[..., 0] >= 0
        sums = np.where(real, -picked.astype(np.float64), 0.0).sum(axis=1)
        totals[indices] = sums[: len(indices)]
    return totals


def _notes(events: np.ndarray) -> int:
    """Note-ons of a melody's events (Magenta's: >= 0 is a note-on at that pitch)."""
    return int((np.asarray(events) >= 0).sum())


def _scores(names, nats: np.ndarray, notes: Sequence[int], first_bits: float) -> list[TuneScore]:
    """One TuneScore per distinct name (melodies of one tune summed), in first-seen order;
    each melody's first event costs ``first_bits`` (a uniform guess)."""
    bits: dict[str, float] = collections.defaultdict(float)
    counts: dict[str, int] = collections.defaultdict(int)
    for name, value, count in zip(names, nats, notes, strict=True):
        bits[str(name)] += float(value) / LN2 + first_bits
        counts[str(name)] += int(count)
    return [TuneScore(name, bits[name], counts[name]) for name in bits if counts[name] > 0]


def score_dataset(
    model, info: ModelInfo, dataset: MelodyDataset, split: str, batch_size: int | None = None
) -> list[TuneScore]:
    """Bits and notes of each song of a built dataset's split (its melodies summed)."""
    melodies = dataset.load(split)
    nats = melody_nats(model, info, melodies, batch_size)
    notes = [_notes(melodies.melody_events(index)) for index in range(len(melodies))]
    return _scores(melodies.sources, nats, notes, first_event_bits(info))


def first_event_bits(info: ModelInfo) -> float:
    """What each melody's first event costs: a uniform guess among the model's events."""
    return math.log2(info.num_event_classes)


def tune_melodies(info: ModelInfo, sequences: Sequence[NoteSequence]) -> list[np.ndarray]:
    """The squashed melody events of one tune: every piece (:data:`SCORING_PARAMS`)."""
    return [events for events, _ in _tune_melodies(info, sequences)]


def _tune_melodies(info: ModelInfo, sequences: Sequence[NoteSequence]) -> list[tuple]:
    """``tune_melodies`` with each melody's steps per bar (from its time signature)."""
    from melodygen.io.music import ExtractionParams, extract_melodies, melody_meter

    spec = info.spec
    found = []
    for sequence in sequences:
        melodies, _ = extract_melodies(sequence, ExtractionParams(**SCORING_PARAMS))
        for melody in melodies:
            melody.squash(spec.min_note, spec.max_note, spec.transpose_to_key)
            events = np.asarray(list(melody), dtype=np.int16)
            if len(events) >= 2:
                found.append((events, meter_steps(melody_meter(melody))))
    return found


def _as_split(
    melodies: list[np.ndarray], info: ModelInfo, steps_per_bar: Sequence[int] | None = None
) -> MelodySplit:
    """Melodies (at least one) encoded and stored back to back, as a dataset split holds them;
    each in its own meter (``steps_per_bar``, 4/4 when None) for the phrase encoding."""
    encoding = info.spec.make_encoding()
    bars = steps_per_bar if steps_per_bar is not None else [STEPS_PER_BAR] * len(melodies)
    encoded = [
        encode_melody(encoding.for_meter(bar), events)
        for events, bar in zip(melodies, bars, strict=True)
    ]
    lengths = [len(inputs) for inputs, _ in encoded]
    return MelodySplit(
        inputs=np.concatenate([inputs for inputs, _ in encoded]),
        targets=np.concatenate([targets for _, targets in encoded]),
        events=np.concatenate(melodies),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        sources=np.array([], dtype=str),
    )


def score_tunes(
    model,
    info: ModelInfo,
    tunes: Sequence[tuple[str, list[NoteSequence]]],
    batch_size: int | None = None,
) -> list[TuneScore]:
    """Bits and notes of each tune (name, its NoteSequences); tunes without a melody left out.

    Every melody of every tune goes through the network in shared batches, so a folder of
    short files costs a few forward passes, not one per file.
    """
    from melodygen.io.music import note_seq

    names, melodies, bars = [], [], []
    for name, sequences in tunes:
        try:
            found = _tune_melodies(info, sequences)
        except (MelodyGenError, note_seq.BadNoteError, ValueError, IndexError, KeyError):
            continue  # note_seq can trip over odd content after a clean parse: not scored
        names += [name] * len(found)
        melodies += [events for events, _ in found]
        bars += [bar for _, bar in found]
    if not melodies:
        return []
    split = _as_split(melodies, info, bars)
    nats = melody_nats(model, info, split, batch_size)
    return _scores(names, nats, [_notes(e) for e in melodies], first_event_bits(info))
