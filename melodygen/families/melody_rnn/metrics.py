"""Loss and held-out metrics, measured in melody events so configurations compare.

Targets arrive packed, as datasets store them: ``[..., 0]`` the label (-1 on
padding), ``[..., 1]`` the event class that actually follows, and
``[..., 2:]`` the event class each "repeat N bars ago" label stands for at that
step. A model's probability for the actual event is the sum over every label
that decodes to it, so a lookback model is not credited twice or penalised for
choosing the plain label where a repeat label also fits.

Everything here is ``keras.ops``, so it runs on any Keras backend.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

NO_EVENT_CLASS = 0  # MelodyOneHotEncoding's class of "no event"; 1 is note-off, 2+ note-ons.
METRIC_NAMES = ("nll", "perplexity", "accuracy", "event_accuracy", "no_event_accuracy", "label_nll")


def _mask(targets):
    return ops.cast(ops.greater_equal(targets[..., 0], 0), "float32")


@keras.saving.register_keras_serializable(package="melodygen")
class MaskedLabelCrossEntropy(keras.losses.Loss):
    """Mean softmax cross-entropy of the labels over the real (unpadded) steps."""

    def __init__(self, name="label_nll", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        mask = _mask(y_true)
        labels = ops.maximum(ops.cast(y_true[..., 0], "int32"), 0)
        losses = ops.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)
        return ops.sum(losses * mask) / ops.maximum(ops.sum(mask), 1.0)


@keras.saving.register_keras_serializable(package="melodygen")
class MaskedEventCrossEntropy(keras.losses.Loss):
    """Mean -log P(actual event) over the real steps: every label that decodes to it counts.

    For the one-hot encoding this is the label cross-entropy. For the lookback
    encodings the encoder picks "repeat 1 bar ago" whenever it fits, although
    the plain label would decode to the same event; training on the label asks
    the network to learn that arbitrary choice, training on the event lets it
    put the probability where it likes (a copy mechanism trained on the
    likelihood of the melody, which is also what ``nll`` measures).
    """

    def __init__(self, label_event_classes, num_event_classes, name="nll", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_event_classes = [int(c) for c in label_event_classes]
        self.num_event_classes = int(num_event_classes)

    def call(self, y_true, y_pred):
        mask = _mask(y_true)
        logits = ops.cast(y_pred, "float32")
        events = ops.cast(y_true[..., 1], "int32")
        plain_to_event = _plain_to_event(self.label_event_classes, self.num_event_classes)
        fits = [ops.matmul(ops.one_hot(events, self.num_event_classes), plain_to_event.T)]
        for index in range(y_true.shape[-1] - 2):
            repeated = ops.equal(ops.cast(y_true[..., 2 + index], "int32"), events)
            fits.append(ops.cast(repeated, "float32")[..., None])
        fits = ops.concatenate(fits, axis=-1)
        event_logits = ops.where(fits > 0, logits, ops.full_like(logits, -1e9))
        losses = ops.logsumexp(logits, axis=-1) - ops.logsumexp(event_logits, axis=-1)
        return ops.sum(losses * mask) / ops.maximum(ops.sum(mask), 1.0)

    def get_config(self):
        return {
            "name": self.name,
            "label_event_classes": self.label_event_classes,
            "num_event_classes": self.num_event_classes,
        }


def make_loss(loss: str, label_event_classes, num_event_classes: int) -> keras.losses.Loss:
    """The training loss an hparam names: ``label`` (Magenta's) or ``event``."""
    if loss == "event":
        return MaskedEventCrossEntropy(label_event_classes, num_event_classes)
    return MaskedLabelCrossEntropy()


def _plain_to_event(label_event_classes, num_event_classes: int) -> np.ndarray:
    """[plain labels, event classes] 1 where a plain label decodes to that event."""
    return np.eye(num_event_classes, dtype="float32")[np.asarray(label_event_classes)]


def event_log_probs(targets, logits, label_event_classes: np.ndarray, num_event_classes: int):
    """log P(event) for every event class, [..., num_event_classes], from label logits."""
    probs = ops.softmax(ops.cast(logits, "float32"), axis=-1)
    num_plain = len(label_event_classes)
    event_probs = ops.matmul(
        probs[..., :num_plain], _plain_to_event(label_event_classes, num_event_classes)
    )
    repeats = targets.shape[-1] - 2
    for index in range(repeats):
        repeated = ops.one_hot(ops.cast(targets[..., 2 + index], "int32"), num_event_classes)
        event_probs = event_probs + probs[..., num_plain + index, None] * repeated
    return ops.log(ops.maximum(event_probs, 1e-12))


class _EventMetric(keras.metrics.Metric):
    """A sum-over-steps / count-of-steps metric, exact over a whole evaluation set."""

    def __init__(self, label_event_classes, num_event_classes, name, **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_event_classes = [int(c) for c in label_event_classes]
        self.num_event_classes = int(num_event_classes)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        log_probs = event_log_probs(
            y_true, y_pred, np.array(self.label_event_classes), self.num_event_classes
        )
        values, weights = self.values(y_true, log_probs)
        self.total.assign_add(ops.sum(values * weights))
        self.count.assign_add(ops.sum(weights))

    def values(self, targets, log_probs):
        raise NotImplementedError

    def result(self):
        return self.total / ops.maximum(self.count, 1.0)

    def get_config(self):
        return {
            "name": self.name,
            "label_event_classes": self.label_event_classes,
            "num_event_classes": self.num_event_classes,
        }


class LabelNLL(_EventMetric):
    """Mean cross-entropy of the raw labels (repeat labels not folded into events)."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        mask = _mask(y_true)
        labels = ops.maximum(ops.cast(y_true[..., 0], "int32"), 0)
        losses = ops.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)
        self.total.assign_add(ops.sum(losses * mask))
        self.count.assign_add(ops.sum(mask))


class EventNLL(_EventMetric):
    """Mean negative log-likelihood (nats per step) of the events that actually follow."""

    def values(self, targets, log_probs):
        event = ops.cast(targets[..., 1], "int32")
        picked = ops.take_along_axis(log_probs, ops.maximum(event, 0)[..., None], axis=-1)
        return -picked[..., 0], _mask(targets)


class Perplexity(EventNLL):
    """exp of the mean event NLL."""

    def result(self):
        return ops.exp(super().result())


class EventAccuracy(_EventMetric):
    """Share of steps where the most likely event is the one that follows.

    ``which`` picks the steps: all of them, those whose target is a note-on or
    note-off ("event"), or those whose target is "no event" (holding or resting).
    """

    def __init__(self, label_event_classes, num_event_classes, name, which="all", **kwargs):
        super().__init__(label_event_classes, num_event_classes, name=name, **kwargs)
        self.which = which

    def values(self, targets, log_probs):
        event = ops.cast(targets[..., 1], "int32")
        correct = ops.cast(ops.equal(ops.argmax(log_probs, axis=-1), event), "float32")
        mask = _mask(targets)
        is_event = ops.cast(ops.not_equal(event, NO_EVENT_CLASS), "float32")
        if self.which == "event":
            mask = mask * is_event
        elif self.which == "no_event":
            mask = mask * (1.0 - is_event)
        return correct, mask

    def get_config(self):
        return {**super().get_config(), "which": self.which}


def make_metrics(label_event_classes, num_event_classes: int) -> list[keras.metrics.Metric]:
    """The metrics every training log and evaluation reports, named as in METRIC_NAMES."""
    args = (list(label_event_classes), num_event_classes)
    return [
        EventNLL(*args, name="nll"),
        Perplexity(*args, name="perplexity"),
        EventAccuracy(*args, name="accuracy", which="all"),
        EventAccuracy(*args, name="event_accuracy", which="event"),
        EventAccuracy(*args, name="no_event_accuracy", which="no_event"),
        LabelNLL(*args, name="label_nll"),
    ]
