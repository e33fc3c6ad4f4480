"""Loss and figures of networks that read and write text one symbol at a time.

A batch's targets are symbol ids ``[rows, steps, 1]`` (int32) with ``-1`` on padding; the
network's outputs are the next symbol's logits ``[rows, steps, vocab]``. The symbols are
characters for ``abc_char`` and BPE tokens for ``abc_transformer``; nothing here depends on
which. All figures are in nats (natural log) per real (unpadded) target.

The loss keeps the class name and Keras registration it had in ``abc_char.network``
(``melodygen_abc_char>CharCrossEntropy``), so anything saved with it still loads.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def _masked(y_true, y_pred):
    labels = ops.cast(y_true[..., 0], "int32")
    real = ops.cast(labels >= 0, "float32")
    return ops.maximum(labels, 0), real


@keras.saving.register_keras_serializable(package="melodygen_abc_char")
class CharCrossEntropy(keras.losses.Loss):
    """Mean cross-entropy (nats) over the real symbols of a batch; padding (-1) masked."""

    def call(self, y_true, y_pred):
        labels, real = _masked(y_true, y_pred)
        losses = ops.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)
        return ops.sum(losses * real) / ops.maximum(ops.sum(real), 1.0)


class _MaskedMean(keras.metrics.Metric):
    """A mean over the real symbols (Keras resets it at every training batch)."""

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
    """Mean negative log-likelihood (nats) of the real symbols."""

    def values(self, labels, y_pred):
        return ops.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)


class CharAccuracy(_MaskedMean):
    """Share of real symbols the network's most likely guess gets right."""

    def values(self, labels, y_pred):
        return ops.cast(ops.equal(ops.argmax(y_pred, axis=-1), labels), "float32")


def make_metrics() -> list[keras.metrics.Metric]:
    """The figures training shows: ``nll`` (nats per symbol) and ``accuracy``."""
    return [CharNLL("nll"), CharAccuracy("accuracy")]


def log_probs(logits: np.ndarray) -> np.ndarray:
    """Log-softmax (nats) over the last axis, in float64."""
    logits = np.asarray(logits, np.float64)
    peak = logits.max(axis=-1, keepdims=True)
    return logits - peak - np.log(np.exp(logits - peak).sum(axis=-1, keepdims=True))


def target_nats(model, inputs, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row summed negative log-likelihood (nats) of the real targets, and per-row counts
    of correct argmax predictions; dropout off. ``inputs``: whatever the model takes."""
    logits = np.asarray(model.predict_on_batch(inputs))
    labels = targets[..., 0]
    real = labels >= 0
    picked = np.take_along_axis(log_probs(logits), np.maximum(labels, 0)[..., None], -1)[..., 0]
    nats = -(picked * real).sum(axis=1)
    correct = ((logits.argmax(axis=-1) == labels) & real).sum(axis=1)
    return nats, correct
