"""Event-level metrics against a brute-force reading of note_seq's label decoding."""

from __future__ import annotations

import numpy as np
import pytest
from note_seq import encoder_decoder, melodies_lib, melody_encoder_decoder

from melodygen.families.melody_rnn.configs import CONFIGS
from melodygen.families.melody_rnn.dataset import encode_melody
from melodygen.families.melody_rnn.encoding import make_encoding
from melodygen.families.melody_rnn.metrics import (
    LabelNLL,
    MaskedEventCrossEntropy,
    MaskedLabelCrossEntropy,
    event_log_probs,
    make_metrics,
)


def note_seq_encoder(config):
    one_hot = melody_encoder_decoder.MelodyOneHotEncoding(config.min_note, config.max_note)
    if config.encoding == "onehot":
        return encoder_decoder.OneHotEventSequenceEncoderDecoder(one_hot), one_hot
    if config.encoding == "lookback":
        return encoder_decoder.LookbackEventSequenceEncoderDecoder(
            one_hot, list(config.lookback_distances), config.binary_counter_bits
        ), one_hot
    if config.encoding == "phrase":  # labels are the lookback encoding's, distances in bars
        distances = list(make_encoding(config).lookback_distances)
        return encoder_decoder.LookbackEventSequenceEncoderDecoder(one_hot, distances, 5), one_hot
    return melody_encoder_decoder.KeyMelodyEncoderDecoder(
        config.min_note,
        config.max_note,
        list(config.lookback_distances),
        config.binary_counter_bits,
    ), one_hot


def repeating_melody(rng: np.random.Generator, bars: int = 6) -> np.ndarray:
    """Bars that often repeat one or two bars back, so repeat labels carry probability."""
    bar_patterns = [rng.choice([-2, -2, -1, 60, 62, 64, 67], size=16) for _ in range(3)]
    bar_patterns = [np.where(np.arange(16) == 0, 60 + 2 * i, p) for i, p in enumerate(bar_patterns)]
    return np.concatenate([bar_patterns[rng.integers(3)] for _ in range(bars)]).astype(np.int16)


def encoded_example(name: str, seed: int):
    """A repeating melody encoded for a configuration, and its plain labels' event classes."""
    config = CONFIGS[name]
    rng = np.random.default_rng(seed)
    events = repeating_melody(rng)
    encoding = make_encoding(config)
    _, targets = encode_melody(encoding, events)
    num_plain = encoding.num_classes - len(encoding.lookback_distances)
    static = [int(c) for c in encoding.label_event_classes(events)[0, :num_plain]]
    return config, rng, encoding, events, targets, static


@pytest.mark.parametrize("name", list(CONFIGS))
def test_event_probabilities_sum_every_label_that_decodes_to_the_event(name: str):
    config, rng, encoding, events, targets, static = encoded_example(name, seed=3)
    logits = rng.normal(size=(1, len(targets), encoding.num_classes)).astype(np.float32)

    reference, one_hot = note_seq_encoder(config)
    probs = np.exp(logits[0]) / np.exp(logits[0]).sum(-1, keepdims=True)
    melody = list(events)
    expected = []
    for step in range(len(targets)):
        actual = melody[step + 1]
        history = melodies_lib.Melody(melody[: step + 1])
        mass = sum(
            probs[step, label]
            for label in range(encoding.num_classes)
            if reference.class_index_to_event(label, history) == actual
        )
        expected.append(-np.log(mass))
        assert one_hot.encode_event(actual) == targets[step, 1]

    log_probs = np.asarray(
        event_log_probs(targets[None], logits, np.array(static), encoding.num_event_classes)
    )
    picked = -np.take_along_axis(log_probs[0], targets[:, 1:2].astype(int), axis=-1)[:, 0]
    np.testing.assert_allclose(picked, expected, rtol=1e-5)
    if encoding.lookback_distances:
        # Where a repeat label applies, the event is likelier than its plain label alone says.
        label_nll = -np.log(probs[np.arange(len(targets)), targets[:, 0]])
        assert (picked <= label_nll + 1e-6).all() and (picked < label_nll - 1e-3).any()

    metrics = {m.name: m for m in make_metrics(static, encoding.num_event_classes)}
    padded = np.concatenate([targets, np.full((5, targets.shape[1]), -1, np.int16)])[None]
    padded_logits = np.concatenate([logits, rng.normal(size=(1, 5, encoding.num_classes))], 1)
    for metric in metrics.values():
        metric.update_state(padded.astype(np.int32), padded_logits.astype(np.float32))
    assert float(metrics["nll"].result()) == pytest.approx(np.mean(expected), rel=1e-5)
    assert float(metrics["perplexity"].result()) == pytest.approx(np.exp(np.mean(expected)), 1e-5)
    argmax_events = log_probs[0].argmax(-1)
    correct = argmax_events == targets[:, 1]
    is_event = targets[:, 1] != 0
    assert float(metrics["accuracy"].result()) == pytest.approx(correct.mean())
    assert float(metrics["event_accuracy"].result()) == pytest.approx(correct[is_event].mean())
    assert float(metrics["no_event_accuracy"].result()) == pytest.approx(correct[~is_event].mean())
    label = LabelNLL(static, encoding.num_event_classes, name="label_nll")
    label.update_state(padded.astype(np.int32), padded_logits.astype(np.float32))
    expected_label = -np.log(probs[np.arange(len(targets)), targets[:, 0]]).mean()
    assert float(label.result()) == pytest.approx(expected_label, rel=1e-5)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_event_loss_is_the_event_nll_and_trains_every_label_that_fits(name: str):
    import tensorflow as tf

    config, rng, encoding, events, targets, static = encoded_example(name, seed=5)
    targets = np.concatenate([targets, np.full((4, targets.shape[1]), -1, np.int16)])[None]
    targets[0, -4:, 1:] = 0  # padding, as batches pad it
    logits = tf.Variable(rng.normal(size=(1, targets.shape[1], encoding.num_classes)) * 3)
    loss = MaskedEventCrossEntropy(static, encoding.num_event_classes)
    with tf.GradientTape() as tape:
        value = loss(targets.astype(np.int32), tf.cast(logits, tf.float32))
    gradient = tape.gradient(value, logits).numpy()

    nll = make_metrics(static, encoding.num_event_classes)[0]
    nll.update_state(targets.astype(np.int32), tf.cast(logits, tf.float32))
    assert nll.name == "nll" and float(value) == pytest.approx(float(nll.result()), rel=1e-5)
    label = float(MaskedLabelCrossEntropy()(targets.astype(np.int32), tf.cast(logits, tf.float32)))
    assert np.isfinite(gradient).all() and not gradient[0, -4:].any()  # padding learns nothing
    real = targets[0, :-4]
    if not encoding.lookback_distances:
        assert float(value) == pytest.approx(label, rel=1e-5)
        return
    assert float(value) < label
    # Where a repeat label stands for the actual event, the loss raises it and its plain twin.
    num_plain = len(static)
    repeat = np.flatnonzero(real[:, 0] == num_plain)
    assert len(repeat)
    step = repeat[0]
    plain_twin = list(static).index(real[step, 1])
    assert gradient[0, step, num_plain] < 0 and gradient[0, step, plain_twin] < 0
    assert MaskedEventCrossEntropy.from_config(loss.get_config()).label_event_classes == list(
        static
    )
