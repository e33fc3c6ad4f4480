"""The vectorized encodings must equal note_seq's encoder-decoders exactly.

note_seq stays the reference: every config's inputs, labels, encode(), label
decoding and label-to-event tables are compared with it on seeded random
melodies built to hit the edge cases (early positions, note-offs before the
first note, repeats at each lookback distance, repeated and alternating pitches).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from note_seq import encoder_decoder, melodies_lib, melody_encoder_decoder

from melodygen.families.melody_rnn.configs import CONFIGS, MelodyRnnConfig
from melodygen.families.melody_rnn.encoding import make_encoding

NOTE_OFF, NO_EVENT = -1, -2

# The shipped configs plus variants that reach corners the shipped ones cannot:
# pitch 0 in the key encoding (note_seq reads a sounding pitch 0 as silence) and
# lookback distances that are unsorted or short.
EXTRA_CONFIGS = {
    "key_low_range": dataclasses.replace(
        CONFIGS["attention_rnn"], name="key_low_range", min_note=0, max_note=20
    ),
    "key_odd_lookbacks": dataclasses.replace(
        CONFIGS["attention_rnn"], name="key_odd_lookbacks", lookback_distances=(5, 2, 3)
    ),
    "lookback_odd": dataclasses.replace(
        CONFIGS["lookback_rnn"],
        name="lookback_odd",
        min_note=0,
        max_note=10,
        lookback_distances=(3, 1),
        binary_counter_bits=3,
    ),
}
# Magenta's encodings, each with a note_seq twin (phrase_rnn's has none: tests/test_phrase_rnn.py).
MAGENTA_CONFIGS = {name: c for name, c in CONFIGS.items() if c.encoding != "phrase"}
ALL_CONFIGS = {**MAGENTA_CONFIGS, **EXTRA_CONFIGS}


def reference(config: MelodyRnnConfig):
    """note_seq's encoder-decoder for a config, as Magenta builds it."""
    one_hot = melody_encoder_decoder.MelodyOneHotEncoding(config.min_note, config.max_note)
    distances = list(config.lookback_distances)
    if config.encoding == "onehot":
        return encoder_decoder.OneHotEventSequenceEncoderDecoder(one_hot)
    if config.encoding == "lookback":
        return encoder_decoder.LookbackEventSequenceEncoderDecoder(
            one_hot, distances, config.binary_counter_bits
        )
    return melody_encoder_decoder.KeyMelodyEncoderDecoder(
        config.min_note, config.max_note, distances, config.binary_counter_bits
    )


def random_melody(rng: np.random.Generator, length: int, config: MelodyRnnConfig) -> np.ndarray:
    """A melody mixing notes, note-offs and no-events, often built from repeated bars."""
    low, high = config.min_note, config.max_note
    if rng.random() < 0.4:  # a small pitch pool: repeated and alternating pitches
        pool = rng.choice(np.arange(low, high), size=min(high - low, rng.integers(1, 5)))
        pool = np.concatenate([pool, [low, high - 1]]) if rng.random() < 0.3 else pool
    else:
        pool = np.arange(low, high)
    p_note, p_off = rng.dirichlet([1.0, 1.0, 1.0])[:2]

    def events(count: int) -> np.ndarray:
        kind = rng.choice(3, size=count, p=[p_note, p_off, 1.0 - p_note - p_off])
        return np.where(kind == 0, rng.choice(pool, size=count), np.where(kind == 1, -1, -2))

    if length and rng.random() < 0.6:  # repeated bars so lookback labels and flags fire
        period = int(rng.choice([1, 2, 3, 5, 16, 32, 16, 32]))
        melody = np.tile(events(period), length // period + 1)[:length]
        mutate = rng.random(length) < rng.uniform(0.0, 0.3)
        melody[mutate] = events(int(mutate.sum()))
    else:
        melody = events(length)
    if length and rng.random() < 0.3:  # a silent start, sometimes with note-offs in it
        lead = int(rng.integers(1, length + 1))
        melody[:lead] = np.where(rng.random(lead) < 0.3, NOTE_OFF, NO_EVENT)
    return melody.astype(np.int64)


def melodies(config: MelodyRnnConfig, seed: int) -> list[np.ndarray]:
    """Many short melodies, a handful of long ones and the hand-picked corner cases."""
    rng = np.random.default_rng(seed)
    lengths = [0, 1, 1, 2, 2, 3] + list(rng.integers(4, 80, size=150)) + [150, 333, 600]
    cases = [random_melody(rng, int(n), config) for n in lengths]
    low = config.min_note
    cases += [
        np.full(40, NO_EVENT),
        np.full(40, NOTE_OFF),
        np.array([NO_EVENT] * 20 + [low, NO_EVENT, NOTE_OFF, low + 1] * 10),
        np.array([NOTE_OFF, NO_EVENT, NOTE_OFF, low, NOTE_OFF, NOTE_OFF, NO_EVENT, low]),
        np.array([low + 2, low, low + 1, low, low + 1, low + 2, low + 2, low + 3, low] * 8),
        np.array([config.max_note - 1, NO_EVENT, low, NOTE_OFF] * 20),
    ]
    return cases


def reference_inputs(ref, melody) -> np.ndarray:
    rows = [ref.events_to_input(melody, i) for i in range(len(melody))]
    return np.array(rows, dtype=np.float32).reshape(len(melody), ref.input_size)


def reference_labels(ref, melody) -> np.ndarray:
    return np.array([ref.events_to_label(melody, i) for i in range(1, len(melody))], dtype=np.int32)


@pytest.mark.parametrize("name", list(ALL_CONFIGS))
def test_sizes_match_note_seq(name):
    config = ALL_CONFIGS[name]
    ref, ours = reference(config), make_encoding(config)
    one_hot = melody_encoder_decoder.MelodyOneHotEncoding(config.min_note, config.max_note)
    assert ours.input_size == ref.input_size
    assert ours.num_classes == ref.num_classes
    assert ours.default_event_label == ref.default_event_label
    assert ours.num_event_classes == one_hot.num_classes


@pytest.mark.parametrize("name", list(ALL_CONFIGS))
def test_inputs_labels_and_encode_match_note_seq(name):
    config = ALL_CONFIGS[name]
    ref, ours = reference(config), make_encoding(config)
    for events in melodies(config, seed=sum(map(ord, name))):
        melody = melodies_lib.Melody([int(e) for e in events])
        expected_inputs = reference_inputs(ref, melody)
        expected_labels = reference_labels(ref, melody)

        inputs, labels = ours.inputs(events), ours.labels(events)
        assert inputs.dtype == np.float32 and labels.dtype == np.int32
        np.testing.assert_array_equal(inputs, expected_inputs)
        np.testing.assert_array_equal(labels, expected_labels)

        enc_inputs, enc_labels = ours.encode(list(events))
        np.testing.assert_array_equal(enc_inputs, expected_inputs[:-1])
        np.testing.assert_array_equal(enc_labels, expected_labels)
        if len(events) < 100:  # note_seq's encode redoes every input; keep it to short ones
            ref_inputs, ref_labels = ref.encode(melody)
            np.testing.assert_array_equal(
                enc_inputs, np.array(ref_inputs, np.float32).reshape(-1, ref.input_size)
            )
            np.testing.assert_array_equal(enc_labels, np.array(ref_labels, np.int32))

        # input_at reads a window of the melody: check every position of the short ones.
        positions = range(len(events)) if len(events) < 80 else [0, 40, len(events) - 1]
        as_given = [list(events), events, melody][len(events) % 3]
        for position in positions:
            np.testing.assert_array_equal(
                ours.input_at(as_given, position), expected_inputs[position]
            )


@pytest.mark.parametrize("name", list(ALL_CONFIGS))
def test_label_decoding_matches_note_seq(name):
    config = ALL_CONFIGS[name]
    ref, ours = reference(config), make_encoding(config)
    one_hot = melody_encoder_decoder.MelodyOneHotEncoding(config.min_note, config.max_note)
    rng = np.random.default_rng(7)
    for events in melodies(config, seed=len(name))[::3]:
        melody = melodies_lib.Melody([int(e) for e in events])
        table = ours.label_event_classes(events)
        assert table.dtype == np.int32
        assert table.shape == (max(len(events) - 1, 0), ref.num_classes)
        for i in range(len(events) - 1):
            history = melody[: i + 1]
            expected = [
                one_hot.encode_event(ref.class_index_to_event(c, history))
                for c in range(ref.num_classes)
            ]
            np.testing.assert_array_equal(table[i], expected)
        # decode_label at a few histories, early ones included (shorter than the lookbacks).
        for length in {0, 1, 2, 3, len(events), int(rng.integers(0, len(events) + 1))}:
            if length > len(events):
                continue
            history = melody[:length]
            for label in range(ref.num_classes):
                expected = ref.class_index_to_event(label, history)
                assert ours.decode_label(label, list(events[:length])) == expected
        if len(events) >= 2:  # labels decode back to the events that follow
            labels = ours.labels(events)
            decoded = table[np.arange(len(labels)), labels]
            np.testing.assert_array_equal(decoded, ours.event_classes(list(melody)[1:]))


def test_decode_label_with_empty_history():
    for config in ALL_CONFIGS.values():
        ref, ours = reference(config), make_encoding(config)
        for label in range(ref.num_classes):
            expected = ref.class_index_to_event(label, melodies_lib.Melody([]))
            assert ours.decode_label(label, []) == expected


@pytest.mark.parametrize("name", list(ALL_CONFIGS))
def test_event_classes_round_trip(name):
    config = ALL_CONFIGS[name]
    ours = make_encoding(config)
    one_hot = melody_encoder_decoder.MelodyOneHotEncoding(config.min_note, config.max_note)
    events = np.concatenate([[NO_EVENT, NOTE_OFF], np.arange(config.min_note, config.max_note)])
    classes = ours.event_classes(events)
    np.testing.assert_array_equal(classes, [one_hot.encode_event(int(e)) for e in events])
    np.testing.assert_array_equal(classes, np.arange(ours.num_event_classes))
    np.testing.assert_array_equal(ours.events_from_classes(classes), events)
    np.testing.assert_array_equal(
        ours.events_from_classes(classes), [one_hot.decode_event(int(c)) for c in classes]
    )


@pytest.mark.parametrize("name", list(CONFIGS))
def test_out_of_range_events_are_refused(name):
    config = CONFIGS[name]
    ours = make_encoding(config)
    bad = [-3, config.max_note] + ([config.min_note - 1] if config.min_note > 0 else [])
    for event in bad:
        with pytest.raises(ValueError):
            ours.inputs([config.min_note, event])
        with pytest.raises(ValueError):
            ours.labels([config.min_note, event])


def random_histories(rng: np.random.Generator, config: MelodyRnnConfig, steps: int) -> np.ndarray:
    """[rows, steps] of histories whose rows differ in how Melody's cleaning treats them."""
    low = config.min_note
    rows = [random_melody(rng, steps, config) for _ in range(20)]
    rows += [
        np.where(rng.random(steps) < 0.3, NOTE_OFF, NO_EVENT),  # no note at all
        np.full(steps, NOTE_OFF),
        np.full(steps, NO_EVENT),
        np.full(steps, low + 3),
        np.tile([config.max_note - 1, NO_EVENT, low, NOTE_OFF, config.max_note - 1], steps)[:steps],
        np.concatenate([[NOTE_OFF, NOTE_OFF, NO_EVENT], np.tile([low, NOTE_OFF], steps)])[:steps],
    ]
    # A note-off long after the last note-on (or with none before it at all): cleaning must
    # look further back than the window and the recent columns.
    for first in (low, NO_EVENT):
        row = np.full(steps, NO_EVENT)
        row[0], row[1], row[150::37] = first, NOTE_OFF, NOTE_OFF
        rows.append(row)
    histories = np.stack(rows)
    return histories[rng.permutation(len(histories))]


@pytest.mark.parametrize("name", list(ALL_CONFIGS))
def test_inputs_at_matches_input_at_row_by_row(name):
    config = ALL_CONFIGS[name]
    ref, ours = reference(config), make_encoding(config)
    rng = np.random.default_rng(sum(map(ord, name)) + 1)
    steps = 300
    histories = random_histories(rng, config, steps)
    # inputs() of each whole row: input i only depends on the events up to i.
    whole = np.stack([ours.inputs(row) for row in histories])
    later = rng.choice(np.arange(40, steps), 20, replace=False)
    # 150, 187 and 224: note-offs far from any note-on (see random_histories).
    positions = list(range(40)) + sorted(map(int, later)) + [150, 160, 187, 200, 224, steps - 1]
    for position in positions:
        order = rng.permutation(len(histories))  # any row order
        batch = histories[order]  # whole rows: the columns after position must be ignored
        got = ours.inputs_at(batch, position)
        assert got.dtype == np.float32 and got.shape == (len(batch), ours.input_size)
        expected = np.stack([ours.input_at(row[: position + 1], position) for row in batch])
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(got, whole[order, position])
        if position in (0, 1, 2, 33, 150, 187, steps - 1):
            for row, row_inputs in zip(batch[:4], got[:4], strict=True):  # and note_seq itself
                melody = melodies_lib.Melody([int(e) for e in row[: position + 1]])
                expected_row = np.array(ref.events_to_input(melody, position), dtype=np.float32)
                np.testing.assert_array_equal(row_inputs, expected_row)
    for position in (0, 1, 57, 187, steps - 1):  # a single row and other integer types
        single = ours.inputs_at(histories[4:5, : position + 1].astype(np.int32), position)
        np.testing.assert_array_equal(single, whole[4:5, position])
        np.testing.assert_array_equal(
            ours.inputs_at(histories.astype(np.int8), position), whole[:, position]
        )


@pytest.mark.parametrize("name", list(CONFIGS))
def test_inputs_at_reads_only_up_to_position(name):
    config = CONFIGS[name]
    ours = make_encoding(config)
    rng = np.random.default_rng(3)
    histories = random_histories(rng, config, 60)
    expected = ours.inputs_at(histories[:, :31], 30)
    junk = histories.copy()
    junk[:, 31:] = 999  # not an event: must not be read
    np.testing.assert_array_equal(ours.inputs_at(junk, 30), expected)
    with pytest.raises(ValueError):
        ours.inputs_at(junk, 31)
    below = [config.min_note - 1] if config.min_note > 0 else []
    for event in [config.max_note, NO_EVENT - 1, *below]:
        bad = histories.copy()
        bad[5, 30] = event  # not an event, at the position itself
        with pytest.raises(ValueError):
            ours.inputs_at(bad, 30)
    with pytest.raises(IndexError):
        ours.inputs_at(histories, 60)
    with pytest.raises(ValueError):
        ours.inputs_at(histories[0], 3)
