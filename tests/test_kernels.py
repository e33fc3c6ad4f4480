"""MelodyGen's compiled TensorFlow CPU ops (``melodygen.nn.kernels``).

The LSTM layers' equality with Keras, through these ops, is in test_layers.py.
Here: the ops on shapes the layers do not produce (one row, one step, odd
batches over two threads), their error messages, dropout's statistics and
gradient, and building: the cache, and a clear fallback where no compiler works.
"""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np
import pytest
import tensorflow as tf

from melodygen.nn import kernels
from melodygen.nn.layers import MelodyDropout, _tf_cpu_only

pytestmark = pytest.mark.skipif(not _tf_cpu_only(), reason="the kernels are TensorFlow-CPU ops")


@pytest.fixture(scope="module")
def ops():
    loaded = kernels.load()
    assert loaded is not None, "MelodyGen's kernels did not build (is g++ installed?)"
    return loaded


def keras_lstm(rng, features, units):
    layer = keras.layers.LSTM(units, return_sequences=True, return_state=True)
    layer.build((None, None, features))
    for variable in layer.weights:
        variable.assign((0.5 * rng.standard_normal(variable.shape)).astype("float32"))
    return layer


@pytest.mark.parametrize("batch, steps", [(1, 6), (3, 1), (5, 9)])
def test_lstm_sequence_equals_keras_on_odd_shapes(ops, batch, steps):
    rng = np.random.default_rng(batch * 10 + steps)
    features, units = 4, 3
    layer = keras_lstm(rng, features, units)
    x = tf.constant(rng.standard_normal((batch, steps, features)).astype("float32"))
    h0, c0 = (tf.constant(rng.standard_normal((batch, units)).astype("float32")) for _ in "hc")
    weights = [tf.Variable(w) for w in layer.get_weights()]
    project = [
        tf.constant(rng.standard_normal(s).astype("float32"))
        for s in [(batch, steps, units), (batch, units), (batch, units)]
    ]

    def loss_and_grads(fn, params):
        with tf.GradientTape() as tape:
            tape.watch([x, h0, c0])
            outputs = fn()
            loss = sum(tf.reduce_sum(o * p) for o, p in zip(outputs, project, strict=True))
        return outputs, tape.gradient(loss, [x, h0, c0, *params])

    ref_out, ref_grads = loss_and_grads(
        lambda: layer(x, initial_state=[h0, c0]), layer.trainable_weights
    )
    out, grads = loss_and_grads(lambda: kernels.lstm_sequence(x, *weights, h0, c0), weights)
    assert len(ref_grads) == len(grads) == 6
    for a, b in zip([*ref_out, *ref_grads], [*out, *grads], strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-5)


def test_lstm_ops_name_the_bad_shape(ops):
    x = tf.zeros([2, 3, 4])
    kernel, recurrent, bias = tf.zeros([4, 20]), tf.zeros([5, 20]), tf.zeros([20])
    state = tf.zeros([2, 5])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"kernel must be \[features"):
        ops.melody_lstm_sequence(x, tf.zeros([3, 20]), recurrent, bias, state, state)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"recurrent kernel must be"):
        ops.melody_lstm_sequence(x, kernel, tf.zeros([5, 19]), bias, state, state)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"initial states must be"):
        ops.melody_lstm_sequence(x, kernel, recurrent, bias, tf.zeros([3, 5]), state)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"bias must be"):
        ops.melody_lstm_sequence(x, kernel, recurrent, tf.zeros([4]), state, state)
    h, _, c, gates, _, _ = ops.melody_lstm_sequence(x, kernel, recurrent, bias, state, state)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"c and d_h must be"):
        ops.melody_lstm_sequence_grad(recurrent, state, c, gates, tf.zeros([2, 2, 5]), state, state)


def test_dropout_drops_at_the_rate_and_scales_the_rest(ops):
    x = tf.constant(np.random.default_rng(0).uniform(1, 2, (64, 43, 128)).astype("float32"))
    seed = tf.constant([7, 11], tf.int64)
    for rate in (0.5, 0.2):
        y = np.asarray(kernels.dropout(x, rate, seed))
        dropped = y == 0
        # 352,256 draws: the share dropped is within 6 standard deviations of the rate.
        assert abs(dropped.mean() - rate) < 6 * np.sqrt(rate * (1 - rate) / y.size)
        np.testing.assert_allclose(y[~dropped], np.asarray(x)[~dropped] / (1 - rate), rtol=1e-6)
        # Rows and positions get independent draws, not a repeated pattern.
        assert 0 < dropped[0].mean() < 1 and not (dropped[0] == dropped[1]).all()
        assert not (dropped[:, 0] == dropped[:, 1]).all()
    same = np.asarray(kernels.dropout(x, 0.5, seed))
    np.testing.assert_array_equal(same, np.asarray(kernels.dropout(x, 0.5, seed)))
    other = np.asarray(kernels.dropout(x, 0.5, tf.constant([7, 12], tf.int64)))
    assert (other != same).any()


def test_dropout_gradient_is_the_same_mask(ops):
    x = tf.constant(np.random.default_rng(1).standard_normal((4, 5, 6)).astype("float32"))
    up = tf.constant(np.random.default_rng(2).standard_normal((4, 5, 6)).astype("float32"))
    seed = tf.constant([1, 2], tf.int64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = kernels.dropout(x, 0.4, seed)
        loss = tf.reduce_sum(y * up)
    grad = np.asarray(tape.gradient(loss, x))
    mask = np.where(np.asarray(x) != 0, np.asarray(y) / np.asarray(x), 0)
    np.testing.assert_allclose(grad, np.asarray(up) * mask, rtol=1e-5, atol=1e-6)


def test_dropout_op_rejects_a_rate_of_one(ops):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"rate must be in \[0, 1\)"):
        ops.melody_dropout(tf.zeros([2, 3]), tf.constant([1, 2], tf.int64), rate=1.0)


def test_melody_dropout_layer(ops):
    layer = MelodyDropout(0.5, seed=3)
    x = tf.ones([8, 10, 16])
    np.testing.assert_array_equal(np.asarray(layer(x)), np.asarray(x))  # inference: identity
    first, second = (np.asarray(layer(x, training=True)) for _ in range(2))
    assert set(np.unique(first)) == {0.0, 2.0}
    assert (first != second).any()  # a new seed each call


def test_build_is_cached_and_reused(ops):
    path = kernels.build()
    assert path == kernels.library_path() and path.exists()
    stamp = path.stat().st_mtime_ns
    assert kernels.build() == path and path.stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    "compiler, message",
    [
        ("/nonexistent/g++", "could not run the C\\+\\+ compiler"),
        ("false", "compiling kernels.cc failed"),
    ],
)
def test_without_a_working_compiler_layers_fall_back_with_one_warning(
    tmp_path, monkeypatch, compiler, message
):
    monkeypatch.setenv(kernels.CACHE_VARIABLE, str(tmp_path))
    monkeypatch.setenv("CXX", compiler)
    kernels.load.cache_clear()
    try:
        with pytest.raises(kernels.KernelBuildError, match=message):
            kernels.build()
        with pytest.warns(RuntimeWarning, match="kernels are unavailable.*" + message):
            assert kernels.load() is None
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert kernels.load() is None  # cached: warned once
        assert list(tmp_path.iterdir()) == []  # no half-written library left behind
    finally:
        kernels.load.cache_clear()


def test_kernels_can_be_switched_off(monkeypatch):
    monkeypatch.setenv(kernels.DISABLE_VARIABLE, "0")
    kernels.load.cache_clear()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert kernels.load() is None
    finally:
        kernels.load.cache_clear()


def test_attention_ops_name_the_bad_shape(ops):
    units, features, window = 4, 3, 2
    x_proj = tf.zeros([2, 5, features])
    weights = [
        tf.zeros(shape)
        for shape in [
            (units, features),
            (features, 4 * units),
            (units, 4 * units),
            (4 * units,),
            (units, units),
            (units,),
            (2 * units, units),
            (units,),
            (2 * units, units),
            (units,),
        ]
    ]
    outputs = ops.melody_attention_sequence(x_proj, *weights, attn_length=window)
    assert [tuple(o.shape) for o in outputs][-1] == (2, 5, window)
    bad = list(weights)
    bad[6] = tf.zeros([units, units])  # the query kernel takes [c, h]: 2 * units rows
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"attention weight 7 has shape"):
        ops.melody_attention_sequence(x_proj, *bad, attn_length=window)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"attn_length must be at least 1"):
        ops.melody_attention_sequence(x_proj, *weights, attn_length=0)


def test_empty_batches_and_sequences(ops):
    """No rows or no steps: empty outputs and zero gradients, not a crash."""
    features, units = 3, 4
    weights = [tf.Variable(tf.ones(shape)) for shape in [(3, 16), (4, 16), (16,)]]
    for batch, steps in [(0, 5), (2, 0)]:
        x = tf.ones([batch, steps, features])
        state = tf.zeros([batch, units])
        with tf.GradientTape() as tape:
            h, h_last, c_last = kernels.lstm_sequence(x, *weights, state, state)
            loss = tf.reduce_sum(h) + tf.reduce_sum(h_last)
        assert tuple(h.shape) == (batch, steps, units) and tuple(c_last.shape) == (batch, units)
        for grad in tape.gradient(loss, weights):
            assert not np.asarray(grad).any()
        empty = np.asarray(kernels.dropout(x, 0.5, tf.constant([1, 2], tf.int64)))
        assert empty.shape == (batch, steps, features)
        shapes = [(7, 3), (3,), (3, 16), (4, 16), (16,), (4, 4), (4,), (8, 4), (4,), (8, 4), (4,)]
        attention = [tf.Variable(tf.ones(shape) * 0.1) for shape in shapes]
        with tf.GradientTape() as tape:
            out = kernels.attention_sequence(x, attention, attn_length=2)
            loss = tf.reduce_sum(out)
        assert tuple(out.shape) == (batch, steps, units)
        for grad in tape.gradient(loss, attention):
            assert not np.asarray(grad).any()
