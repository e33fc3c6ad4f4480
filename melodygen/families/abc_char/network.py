"""The ``abc_char`` network, its loss and figures: embedding, LSTM stack, character logits.

Written with ``keras.ops`` only, so it trains under JAX on a GPU as under TensorFlow on a
CPU, where the LSTM layers take MelodyGen's compiled kernels (:mod:`melodygen.nn.layers`).
Layout, as the seed's: ``Embedding(vocab, 512)`` -> LSTM(256) -> dropout -> LSTM(256) ->
dropout -> LSTM(256) -> dropout -> ``Dense(vocab)`` (logits; the softmax is in the loss).
Generation steps the LSTM cells one character at a time (``generate.CharStepModel``).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from melodygen.families.abc_char.configs import HParams
from melodygen.nn.layers import MelodyDropout, MelodyLSTM, MelodyLSTMStack


def build_model(vocab_size: int, hparams: HParams) -> keras.Model:
    """Ids [batch, time] (int32) -> logits [batch, time, vocab_size]."""
    inputs = keras.Input(shape=(None,), dtype="int32", name="ids")
    hidden = keras.layers.Embedding(vocab_size, hparams.embedding_size, name="embedding")(inputs)
    sizes = list(hparams.rnn_layer_sizes)
    if len(sizes) == 1:
        hidden = MelodyLSTM(sizes[0], return_sequences=True, name="rnn")(hidden)
    else:
        hidden = MelodyLSTMStack(sizes, hparams.dropout, name="rnn")(hidden)
    if hparams.dropout > 0:
        hidden = MelodyDropout(hparams.dropout, name="dropout")(hidden)
    logits = keras.layers.Dense(vocab_size, name="logits")(hidden)
    return keras.Model(inputs, logits, name="abc_char")


def _masked(y_true, y_pred):
    labels = ops.cast(y_true[..., 0], "int32")
    real = ops.cast(labels >= 0, "float32")
    return ops.maximum(labels, 0), real


@keras.saving.register_keras_serializable(package="melodygen_abc_char")
class CharCrossEntropy(keras.losses.Loss):
    """Mean cross-entropy (nats) over the real characters of a batch; padding (-1) masked."""

    def call(self, y_true, y_pred):
        labels, real = _masked(y_true, y_pred)
        losses = ops.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)
        return ops.sum(losses * real) / ops.maximum(ops.sum(real), 1.0)


class _MaskedMean(keras.metrics.Metric):
    """A mean over the real characters (Keras resets it at every training batch)."""

    def __init__(self, name: str, **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def values(self, labels, y_pred):
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels, real = _masked(y_true, y_pred)
        self.total.assign_add(ops.sum(self.values(labels, y_pred) * real))
        self.count.assign_add(ops.sum(real))

    def result(self):
        return self.total / ops.maximum(self.count, 1.0)


class CharNLL(_MaskedMean):
    def values(self, labels, y_pred):
        return ops.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)


class CharAccuracy(_MaskedMean):
    def values(self, labels, y_pred):
        return ops.cast(ops.equal(ops.argmax(y_pred, axis=-1), labels), "float32")


def make_metrics() -> list[keras.metrics.Metric]:
    return [CharNLL("nll"), CharAccuracy("accuracy")]


def log_probs(logits: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis, in float64."""
    logits = np.asarray(logits, np.float64)
    peak = logits.max(axis=-1, keepdims=True)
    return logits - peak - np.log(np.exp(logits - peak).sum(axis=-1, keepdims=True))


def target_nats(model, inputs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row summed negative log-likelihood (nats) of the real targets, and per-row counts
    of correct argmax predictions; dropout off."""
    logits = np.asarray(model.predict_on_batch(inputs))
    labels = targets[..., 0]
    real = labels >= 0
    picked = np.take_along_axis(log_probs(logits), np.maximum(labels, 0)[..., None], -1)[..., 0]
    nats = -(picked * real).sum(axis=1)
    correct = ((logits.argmax(axis=-1) == labels) & real).sum(axis=1)
    return nats, correct
