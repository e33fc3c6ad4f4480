"""The fast TensorFlow paths of the recurrent layers must equal plain Keras.

``MelodyLSTM`` and ``MelodyLSTMStack`` (through MelodyGen's compiled kernels,
and through the TensorFlow loops used where those cannot be built) against
``keras.layers.LSTM`` (and the
stack against LSTM layers with dropout masks in between), ``AttentionRNN``
against ``keras.layers.RNN`` stepping ``AttentionLSTMCell``: outputs, final
states and the gradients of a random projection of them with respect to the
inputs, initial states and every weight. Sizes are small; some are multiples
of 16 so that the attention window is read from its buffer without a copy.
"""

from __future__ import annotations

import os
from unittest import mock

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np
import pytest
import tensorflow as tf

from melodygen.families.melody_rnn.network import AttentionLSTMCell
from melodygen.nn import kernels, layers
from melodygen.nn.layers import (
    AttentionRNN,
    MelodyLSTM,
    MelodyLSTMStack,
    _tf_cpu_only,
    _tf_lstm_stack,
)

OUT_TOL = 1e-5
GRAD_TOL = 1e-4

pytestmark = pytest.mark.skipif(not _tf_cpu_only(), reason="the fast paths are TensorFlow-CPU only")


@pytest.fixture(params=["kernels", "tf_loop"])
def lstm_path(request):
    """Each fast LSTM path in turn; yields (name, spy on the function that path calls)."""
    if request.param == "kernels":
        assert kernels.load() is not None, "MelodyGen's kernels did not build (is g++ installed?)"
        with mock.patch.object(kernels, "lstm_sequence", wraps=kernels.lstm_sequence) as spy:
            yield request.param, spy
    else:
        with (
            mock.patch.object(kernels, "load", return_value=None),
            mock.patch.object(layers, "_tf_lstm_stack", wraps=layers._tf_lstm_stack) as spy,
        ):
            yield request.param, spy


def rng_tensor(rng, *shape, scale=1.0):
    return tf.constant((scale * rng.standard_normal(shape)).astype("float32"))


def randomize(layer, rng, scale=0.5):
    """Random weights, biases included (Keras initialises them to constants)."""
    for variable in layer.weights:
        variable.assign((scale * rng.standard_normal(variable.shape)).astype("float32"))


def outputs_and_grads(fn, inputs, variables, seed=1):
    """fn's outputs, and the gradients of a fixed random projection of them."""
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = fn()
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        rng = np.random.default_rng(seed)
        loss = sum(
            tf.reduce_sum(o * rng.standard_normal(o.shape).astype("float32")) for o in outputs
        )
    return outputs, tape.gradient(loss, list(inputs) + list(variables))


def assert_close(reference, fast):
    (ref_out, ref_grads), (fast_out, fast_grads) = reference, fast
    assert len(ref_out) == len(fast_out)
    for a, b in zip(ref_out, fast_out, strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=OUT_TOL * max(1.0, float(np.abs(a).max())))
    assert len(ref_grads) == len(fast_grads)
    assert all(a is not None and b is not None for a, b in zip(ref_grads, fast_grads, strict=True))
    # Each gradient within GRAD_TOL of its own size, or of a thousandth of the largest: a
    # gradient far smaller than the rest (CI once met one at most 4.5e-5 in size, off by
    # 1.4e-8) is at float32's rounding of the sums it shares with them.
    largest = max(float(np.abs(a).max()) for a in ref_grads)
    for a, b in zip(ref_grads, fast_grads, strict=True):
        scale = max(float(np.abs(a).max()), 1e-3 * largest)
        assert float(np.abs(np.asarray(a) - np.asarray(b)).max()) <= GRAD_TOL * scale


@pytest.mark.parametrize("batch", [4, 3])  # even: two batch chunks; odd: one
@pytest.mark.parametrize("with_state", [False, True])
def test_melody_lstm_equals_keras_lstm(batch, with_state, lstm_path):
    rng = np.random.default_rng(0)
    steps, features, units = 9, 5, 6
    reference = keras.layers.LSTM(units, return_sequences=True, return_state=True)
    fast = MelodyLSTM(units, return_sequences=True, return_state=True)
    reference.build((None, None, features))
    fast.build((None, None, features))
    randomize(reference, rng)
    fast.set_weights(reference.get_weights())
    assert [w.shape for w in fast.weights] == [w.shape for w in reference.weights]
    assert [w.path.split("/", 1)[1] for w in fast.weights] == [
        w.path.split("/", 1)[1] for w in reference.weights
    ]
    x = rng_tensor(rng, batch, steps, features)
    states = [rng_tensor(rng, batch, units), rng_tensor(rng, batch, units)] if with_state else []

    def call(layer):
        return lambda: layer(x, initial_state=states) if states else layer(x)

    ref = outputs_and_grads(call(reference), [x, *states], reference.trainable_weights)
    _, fast_path = lstm_path
    assert_close(ref, outputs_and_grads(call(fast), [x, *states], fast.trainable_weights))
    assert fast_path.call_count == 1
    compiled = tf.function(lambda: outputs_and_grads(call(fast), [x, *states], fast.weights))
    assert_close(ref, compiled())


def test_melody_lstm_falls_back_for_what_it_does_not_handle():
    rng = np.random.default_rng(1)
    x = rng_tensor(rng, 2, 5, 3)
    mask = tf.constant([[True] * 5, [True, True, True, False, False]])
    for kwargs, call_kwargs in [
        ({"go_backwards": True}, {}),
        ({"recurrent_dropout": 0.5}, {"training": True}),
        ({}, {"mask": mask}),
        ({"activation": "relu"}, {}),
    ]:
        reference = keras.layers.LSTM(4, return_sequences=True, **kwargs)
        fast = MelodyLSTM(4, return_sequences=True, **kwargs)
        reference.build((None, None, 3))
        fast.build((None, None, 3))
        fast.set_weights(reference.get_weights())
        if "training" in call_kwargs:  # random masks: check only that it runs
            assert fast(x, **call_kwargs).shape == (2, 5, 4)
            continue
        np.testing.assert_allclose(fast(x, **call_kwargs), reference(x, **call_kwargs), atol=1e-6)


def test_lstm_stack_core_with_dropout_masks_equals_keras_layers():
    """Two layers with a dropout mask between them, in one loop, equal two Keras LSTMs."""
    rng = np.random.default_rng(2)
    batch, steps, features, units = 4, 8, 5, (6, 7)
    first = keras.layers.LSTM(units[0], return_sequences=True, return_state=True)
    second = keras.layers.LSTM(units[1], return_sequences=True, return_state=True)
    first.build((None, None, features))
    second.build((None, None, units[0]))
    randomize(first, rng)
    randomize(second, rng)
    x = rng_tensor(rng, batch, steps, features)
    mask = tf.constant((rng.random((batch, steps, units[0])) < 0.5).astype("float32") * 2.0)
    states = [rng_tensor(rng, batch, n) for n in (units[0], units[0], units[1], units[1])]
    variables = [w.value for w in first.trainable_weights + second.trainable_weights]

    def reference():
        y, h1, c1 = first(x, initial_state=states[:2])
        y, h2, c2 = second(y * mask, initial_state=states[2:])
        return [y, h1, c1, h2, c2]

    def fast():
        time_major = lambda t: tf.transpose(t, [1, 0, 2])  # noqa: E731
        weights = [tuple(variables[:3]), tuple(variables[3:])]
        y, finals = _tf_lstm_stack(
            time_major(x), weights, [states[:2], states[2:]], [time_major(mask)]
        )
        return [time_major(y), *finals[0], *finals[1]]

    ref = outputs_and_grads(reference, [x, *states], variables)
    assert_close(ref, outputs_and_grads(fast, [x, *states], variables))


def test_melody_lstm_stack_equals_plain_stack_and_shares_its_weights(lstm_path):
    rng = np.random.default_rng(3)
    x = rng_tensor(rng, 4, 7, 5)
    stack = MelodyLSTMStack([6, 6], dropout=0.5)
    stack.build((None, None, 5))
    randomize(stack, rng)
    # The weights, in order, are those of a plain stack of Keras LSTMs.
    inputs = keras.Input((None, 5))
    hidden = keras.layers.LSTM(6, return_sequences=True)(inputs)
    hidden = keras.layers.LSTM(6, return_sequences=True)(hidden)
    plain = keras.Model(inputs, hidden)
    plain.set_weights(stack.get_weights())
    ref = outputs_and_grads(lambda: plain(x), [x], plain.trainable_weights)
    name, fast_path = lstm_path
    assert_close(ref, outputs_and_grads(lambda: stack(x), [x], stack.trainable_weights))
    assert fast_path.call_count == (2 if name == "kernels" else 1)  # per layer, or one loop

    training = stack(x, training=True)  # dropout between the layers
    assert training.shape == (4, 7, 6)
    assert float(np.abs(training - stack(x)).max()) > 1e-3


def test_layers_serialize(tmp_path):
    inputs = keras.Input((None, 5))
    hidden = MelodyLSTMStack([6, 4], dropout=0.5, name="stack")(inputs)
    hidden = MelodyLSTM(3, return_sequences=True, name="single")(hidden)
    hidden = AttentionRNN(AttentionLSTMCell(4, 3), return_sequences=True, name="attn")(hidden)
    model = keras.Model(inputs, hidden)
    x = np.random.default_rng(4).standard_normal((2, 6, 5)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert [type(layer).__name__ for layer in loaded.layers[1:]] == [
        "MelodyLSTMStack",
        "MelodyLSTM",
        "AttentionRNN",
    ]
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


def attention_pair(rng, features, units, attn_length, **kwargs):
    reference = keras.layers.RNN(AttentionLSTMCell(units, attn_length), **kwargs)
    fast = AttentionRNN(AttentionLSTMCell(units, attn_length), **kwargs)
    reference.build((None, None, features))
    fast.build((None, None, features))
    randomize(reference, rng, scale=0.3)
    fast.set_weights(reference.get_weights())
    return reference, fast


@pytest.mark.parametrize(
    "batch,steps,features,units,attn_length",
    [
        (3, 9, 5, 4, 3),  # odd sizes: windows are copied out of the buffer
        (8, 20, 7, 16, 5),  # multiples of 16 bytes: windows are views of the buffer
        (2, 3, 5, 4, 6),  # fewer steps than the window
        (2, 4, 3, 4, 1),  # a window of one
    ],
)
@pytest.mark.parametrize("path", ["kernels", "tf_loop"])
def test_attention_rnn_equals_keras_rnn(batch, steps, features, units, attn_length, path):
    rng = np.random.default_rng(5)
    reference, fast = attention_pair(rng, features, units, attn_length, return_sequences=True)
    x = rng_tensor(rng, batch, steps, features)
    ref = outputs_and_grads(lambda: reference(x), [x], reference.trainable_weights)
    if path == "kernels":
        assert kernels.load() is not None, "MelodyGen's kernels did not build (is g++ installed?)"
        spy = mock.patch.object(kernels, "attention_sequence", wraps=kernels.attention_sequence)
        calls = 1
    else:
        mock.patch.object(kernels, "load", return_value=None).start()
        spy = mock.patch.object(layers, "_tf_attention_lstm", wraps=layers._tf_attention_lstm)
        calls = 2 if batch % 2 == 0 else 1  # one loop per half batch
    with spy as fast_path:
        assert_close(ref, outputs_and_grads(lambda: fast(x), [x], fast.trainable_weights))
    assert fast_path.call_count == calls
    compiled = tf.function(lambda: outputs_and_grads(lambda: fast(x), [x], fast.weights))
    assert_close(ref, compiled())
    assert_close(ref, compiled())  # buffers updated in place must start afresh each run
    mock.patch.stopall()


def test_attention_rnn_last_output_and_fallback():
    rng = np.random.default_rng(6)
    reference, fast = attention_pair(rng, 5, 4, 3, return_sequences=False)
    x = rng_tensor(rng, 2, 6, 5)
    np.testing.assert_allclose(fast(x), reference(x), atol=OUT_TOL)
    states = [rng_tensor(rng, 2, size) for size in reference.cell.state_size]
    np.testing.assert_allclose(  # an initial state takes Keras' loop
        fast(x, initial_state=states), reference(x, initial_state=states), atol=1e-6
    )


def _bfloat16_errors(reference, fast):
    """Outputs must be identical; each gradient's largest error relative to its largest value."""
    (ref_out, ref_grads), (fast_out, fast_grads) = reference, fast
    for a, b in zip(ref_out, fast_out, strict=True):
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
    return [
        float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(a)).max())
        for a, b in zip(ref_grads, fast_grads, strict=True)
    ]


@pytest.mark.parametrize("layer", ["stack", "single", "attention"])
def test_bfloat16_gradients_round_only_the_gradient_matmuls(layer):
    assert kernels.load() is not None, "MelodyGen's kernels did not build (is g++ installed?)"
    rng = np.random.default_rng(7)
    x = rng_tensor(rng, 8, 30, 5)

    def make(precision):
        if layer == "stack":
            return MelodyLSTMStack([16, 16], gradient_precision=precision)
        if layer == "single":
            return MelodyLSTM(16, precision, return_sequences=True)
        return AttentionRNN(AttentionLSTMCell(16, 4), precision, return_sequences=True)

    exact, rounded = make("float32"), make("bfloat16")
    exact.build((None, None, 5))
    rounded.build((None, None, 5))
    randomize(exact, rng, scale=0.3)
    rounded.set_weights(exact.get_weights())
    errors = _bfloat16_errors(
        outputs_and_grads(lambda: exact(x), [x], exact.trainable_weights),
        outputs_and_grads(lambda: rounded(x), [x], rounded.trainable_weights),
    )
    # bfloat16 keeps 8 bits of mantissa: errors of a few parts in a thousand, and some there.
    assert max(errors) < 2e-2
    assert max(errors) > 1e-5
    assert rounded.get_config()["gradient_precision"] == "bfloat16"
