"""The ``note_vae`` network, its loss and figures: MusicVAE's melody model over notes.

Written with ``keras.ops`` only, so it trains under JAX on a GPU as under TensorFlow on a
CPU, where the LSTM layers take MelodyGen's compiled kernels (:mod:`melodygen.nn.layers`).

- notes [batch, time, 3] (pitch, duration and velocity classes) -> three embeddings side
  by side;
- encoder: ``len(encoder_sizes)`` bidirectional LSTM layers, each a forward
  ``MelodyLSTM`` over the notes and another over the notes reversed (the fast CPU path
  runs forward LSTMs only); the top layer's two final outputs (and, with
  ``note_readout``, every note's top output projected to that width, side by side) ->
  dense ``mu`` and ``logvar`` (the code's mean and log-variance, clipped to [-12, 8]);
- :class:`Latent`: the code ``z = mu + exp(logvar / 2) * eps`` (reparameterisation; in
  training ``eps`` is fresh noise, in evaluation the second input, ``noise``, which
  :func:`window_noise` draws from each window's notes, so a held-out figure is the same
  on every backend, in every batch, at every evaluation), the KL divergence from
  N(0, I) per window (nats), and beta, which rises with the training steps it counts
  (``step``, a weight, so a resumed run goes on annealing);
- decoder: ``decoder_init`` (dense, tanh) turns the code into every decoder layer's
  initial (h, c); each step reads the previous note (teacher forcing: zeros before the
  first, and in training for a ``word_dropout`` share of the notes) beside the code and,
  with ``place_code``, the code's projection for its place (:class:`PlaceCode`);
  ``len(decoder_sizes)`` LSTM layers; three heads (pitch, duration, velocity logits).

The model's one output packs what the loss and figures need, ``[batch, time, 129 +
durations + velocities + 2]``: the three heads' logits, then each window's KL and the
current beta repeated along time (the shared training loop reads one output and one
target array). The loss (:class:`VaeLoss`) is the reconstruction NLL summed over the
window's notes plus ``beta * max(KL - free_bits, 0)`` per window, divided by the notes:
Magenta's objective per note. Generation steps the decoder's cells one note at a time
(:class:`~melodygen.families.note_vae.generate.DecoderStep`).
"""

from __future__ import annotations

import math
import zlib

import keras
import numpy as np
from keras import ops

from melodygen.families.note_vae.configs import PITCH_CLASSES, WINDOW, HParams
from melodygen.nn.layers import MelodyDropout, MelodyLSTM

LN2 = math.log(2.0)
LOGVAR_RANGE = (-12.0, 8.0)
EMBEDDINGS = ("pitch_embedding", "duration_embedding", "velocity_embedding")
HEADS = ("pitch_logits", "duration_logits", "velocity_logits")
PACKAGE = "melodygen_note_vae"


@keras.saving.register_keras_serializable(package=PACKAGE)
class Reverse(keras.layers.Layer):
    """A sequence reversed in time (the backward half of a bidirectional layer)."""

    def call(self, inputs):
        return ops.flip(inputs, axis=1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Slice(keras.layers.Layer):
    """``inputs[..., start]`` (``stop`` None: the axis dropped) or ``inputs[..., start:stop]``
    as a layer with a name of its own.

    A bare slice of a Keras tensor is an op Keras names itself ("get_item", "get_item_1",
    ...) from a counter that ``keras.backend.clear_session`` resets, and Streamlit calls
    that after every run of a page: a model built meanwhile on the studio's loader thread
    got two ops of one name, and Keras refused it ("The name "get_item" is used 2 times in
    the model"). Every operation of this network is a layer named in :func:`build_model`,
    so no count can be reset under it. Weightless: saved weights are the same as before.
    """

    def __init__(self, start: int, stop: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.start = int(start)
        self.stop = None if stop is None else int(stop)

    def call(self, inputs):
        if self.stop is None:
            return inputs[..., self.start]
        return inputs[..., self.start : self.stop]

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


@keras.saving.register_keras_serializable(package=PACKAGE)
class DecoderInputs(keras.layers.Layer):
    """Each step's decoder input: the previous note's embedding (zeros first; in training
    zeros for a ``word_dropout`` share of the notes too), the code, and (when the model has
    them) the code's projections for each place (:class:`PlaceCode`)."""

    def __init__(self, word_dropout: float = 0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.word_dropout = float(word_dropout)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        notes, code, *places = inputs
        previous = ops.pad(notes, [[0, 0], [1, 0], [0, 0]])[:, :-1, :]
        if training and self.word_dropout > 0:
            shown = (
                keras.random.uniform(ops.shape(notes[:, :, :1]), seed=self.seed_generator)
                >= self.word_dropout
            )
            previous = previous * ops.cast(shown, previous.dtype)
        along = ops.zeros_like(notes[:, :, :1])
        return ops.concatenate([previous, ops.expand_dims(code, 1) + along, *places], axis=-1)

    def get_config(self):
        return {**super().get_config(), "word_dropout": self.word_dropout, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PlaceCode(keras.layers.Layer):
    """The code's own projection for each place in the window, [batch, window, width]
    (``place_code``): a dense layer with weights and a bias per place, so what the decoder
    reads at a place says which note of the window it writes and that note's part of the
    code, untangled."""

    def __init__(self, window: int, width: int, **kwargs):
        super().__init__(**kwargs)
        self.window = int(window)
        self.width = int(width)
        self.dense = keras.layers.Dense(self.window * self.width, name="projection")

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, code):
        return ops.reshape(self.dense(code), (-1, self.window, self.width))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.window, self.width)

    def get_config(self):
        return {**super().get_config(), "window": self.window, "width": self.width}


@keras.saving.register_keras_serializable(package=PACKAGE)
class FinalStates(keras.layers.Layer):
    """A bidirectional layer's sequence [batch, time, 2 x size] (the backward half in
    time order) -> what each direction read last, [batch, 2 x size]: the forward half at
    the last note beside the backward half at the first."""

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)

    def call(self, inputs):
        return ops.concatenate([inputs[:, -1, : self.size], inputs[:, 0, self.size :]], axis=-1)

    def get_config(self):
        return {**super().get_config(), "size": self.size}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Latent(keras.layers.Layer):
    """The code, its KL per window (nats) and beta (see the module docstring)."""

    def __init__(self, max_beta=0.5, anneal_steps=0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.max_beta = float(max_beta)
        self.anneal_steps = int(anneal_steps)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.step = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="step", dtype="float32"
        )

    def call(self, inputs, training=False):
        mu, logvar, noise = inputs
        logvar = ops.clip(logvar, *LOGVAR_RANGE)
        if training:
            noise = keras.random.normal(ops.shape(mu), seed=self.seed_generator)
        code = mu + ops.exp(0.5 * logvar) * noise
        kl = 0.5 * ops.sum(ops.exp(logvar) + ops.square(mu) - 1.0 - logvar, axis=-1)
        ramp = ops.minimum(1.0, self.step / float(max(self.anneal_steps, 1)))
        beta = self.max_beta * (ramp if self.anneal_steps else 1.0)
        if training:
            self.step.assign(self.step + 1.0)
        return code, kl, ops.zeros_like(kl) + beta

    def get_config(self):
        return {
            **super().get_config(),
            "max_beta": self.max_beta,
            "anneal_steps": self.anneal_steps,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class PackOutputs(keras.layers.Layer):
    """The heads' logits with each window's KL and beta repeated along time."""

    def call(self, inputs):
        pitch, duration, velocity, kl, beta = inputs
        along = ops.zeros_like(pitch[:, :, :1])
        extras = [ops.expand_dims(ops.expand_dims(v, -1), -1) + along for v in (kl, beta)]
        return ops.concatenate([pitch, duration, velocity, *extras], axis=-1)


def _bidirectional(hidden, size: int, index: int, last: bool):
    forward = MelodyLSTM(size, return_sequences=not last, name=f"encoder_{index}_forward")
    backward = MelodyLSTM(size, return_sequences=not last, name=f"encoder_{index}_backward")
    ahead = forward(hidden)
    behind = backward(Reverse(name=f"encoder_{index}_reverse")(hidden))
    if not last:
        behind = Reverse(name=f"encoder_{index}_unreverse")(behind)
    return keras.layers.Concatenate(name=f"encoder_{index}")([ahead, behind])


def build_model(durations: int, velocities: int, hparams: HParams) -> keras.Model:
    """{"notes": classes [batch, time, 3] int32, "noise": [batch, latent] float32} ->
    packed outputs (see the module docstring)."""
    # A note readout's width is fixed by the window's notes; otherwise any length is read.
    notes = keras.Input(
        shape=(WINDOW if hparams.note_readout else None, 3), dtype="int32", name="notes"
    )
    noise = keras.Input(shape=(hparams.latent_size,), dtype="float32", name="noise")
    sizes = (PITCH_CLASSES, durations, velocities)
    widths = (hparams.pitch_embedding, hparams.duration_embedding, hparams.velocity_embedding)
    parts = [
        keras.layers.Embedding(count, width, name=name)(
            Slice(column, name=name.replace("embedding", "classes"))(notes)
        )
        for column, (name, count, width) in enumerate(zip(EMBEDDINGS, sizes, widths, strict=True))
    ]
    embedded = keras.layers.Concatenate(name="note_embedding")(parts)

    hidden = embedded
    layers = hparams.encoder_sizes
    readout = hparams.note_readout
    for index, size in enumerate(layers):
        top = index == len(layers) - 1
        hidden = _bidirectional(hidden, size, index, last=top and not readout)
    if readout:
        each = keras.layers.Dense(readout, name="note_readout")(hidden)
        hidden = keras.layers.Concatenate(name="code_inputs")(
            [
                FinalStates(layers[-1], name="encoder_final")(hidden),
                keras.layers.Flatten(name="note_readouts")(each),
            ]
        )
    mu = keras.layers.Dense(hparams.latent_size, name="mu")(hidden)
    logvar = keras.layers.Dense(hparams.latent_size, name="logvar")(hidden)
    code, kl, beta = Latent(hparams.max_beta, hparams.beta_anneal_steps, name="latent")(
        [mu, logvar, noise]
    )

    units = list(hparams.decoder_sizes)
    initial = keras.layers.Dense(2 * sum(units), activation="tanh", name="decoder_init")(code)
    reads = [embedded, code]
    if hparams.place_code:
        reads.append(PlaceCode(WINDOW, hparams.place_code, name="place_code")(code))
    hidden = DecoderInputs(hparams.word_dropout, name="decoder_inputs")(reads)
    start = 0
    for index, size in enumerate(units):
        state = [
            Slice(start, start + size, name=f"decoder_{index}_initial_h")(initial),
            Slice(start + size, start + 2 * size, name=f"decoder_{index}_initial_c")(initial),
        ]
        start += 2 * size
        layer = MelodyLSTM(size, return_sequences=True, name=f"decoder_{index}")
        hidden = layer(hidden, initial_state=state)
        if hparams.dropout > 0:
            hidden = MelodyDropout(hparams.dropout, name=f"decoder_dropout_{index}")(hidden)
    heads = [
        keras.layers.Dense(count, name=name)(hidden)
        for name, count in zip(HEADS, sizes, strict=True)
    ]
    packed = PackOutputs(name="packed")([*heads, kl, beta])
    return keras.Model({"notes": notes, "noise": noise}, packed, name="note_vae")


def encoder_model(model: keras.Model) -> keras.Model:
    """The trained network's encoder alone: notes -> (mu, logvar)."""
    return keras.Model(
        model.get_layer("notes").output,
        [model.get_layer("mu").output, model.get_layer("logvar").output],
    )


def window_noise(windows: np.ndarray, size: int) -> np.ndarray:
    """float32 [windows, size]: each window's evaluation noise, N(0, I) drawn from a
    generator seeded by its notes (so a window always gets the same draw)."""
    windows = np.asarray(windows, np.int16)
    return (
        np.stack(
            [
                np.random.default_rng(zlib.crc32(window.tobytes())).standard_normal(size)
                for window in windows
            ]
        ).astype(np.float32)
        if len(windows)
        else np.zeros((0, size), np.float32)
    )


# Loss and figures ---------------------------------------------------------------------------


def split_packed(y_pred, durations: int, velocities: int):
    """(pitch, duration, velocity logits, KL per window, beta) from the packed output."""
    edges = np.cumsum([PITCH_CLASSES, durations, velocities])
    return (
        y_pred[..., : edges[0]],
        y_pred[..., edges[0] : edges[1]],
        y_pred[..., edges[1] : edges[2]],
        y_pred[:, 0, edges[2]],
        y_pred[:, 0, edges[2] + 1],
    )


def _head_nll(labels, logits):
    real = ops.cast(labels >= 0, "float32")
    nll = ops.sparse_categorical_crossentropy(ops.maximum(labels, 0), logits, from_logits=True)
    return nll * real, real


@keras.saving.register_keras_serializable(package=PACKAGE)
class VaeLoss(keras.losses.Loss):
    """(Reconstruction NLL summed over the batch's notes + beta x max(KL - free nats, 0)
    summed over its windows) / notes: nats per note (padding rows masked)."""

    def __init__(self, durations: int, velocities: int, free_bits: float, **kwargs):
        super().__init__(**kwargs)
        self.sizes = (int(durations), int(velocities))
        self.free_nats = float(free_bits) * LN2

    def call(self, y_true, y_pred):
        labels = ops.cast(y_true, "int32")
        *logits, kl, beta = split_packed(y_pred, *self.sizes)
        notes = ops.sum(ops.cast(labels[..., 0] >= 0, "float32"))
        rows = ops.cast(ops.max(labels[..., 0], axis=1) >= 0, "float32")
        total = 0.0
        for column, head in enumerate(logits):
            total = total + ops.sum(_head_nll(labels[..., column], head)[0])
        cost = beta * ops.maximum(kl - self.free_nats, 0.0) * rows
        return (total + ops.sum(cost)) / ops.maximum(notes, 1.0)

    def get_config(self):
        return {
            **super().get_config(),
            "durations": self.sizes[0],
            "velocities": self.sizes[1],
            "free_bits": self.free_nats / LN2,
        }


class _Mean(keras.metrics.Metric):
    """A weighted mean over a batch (Keras resets it at every training batch)."""

    def __init__(self, name: str, sizes: tuple[int, int], **kwargs):
        super().__init__(name=name, **kwargs)
        self.sizes = sizes
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def values(self, labels, parts):
        """(values summed, their weight) of one batch."""
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        total, count = self.values(ops.cast(y_true, "int32"), split_packed(y_pred, *self.sizes))
        self.total.assign_add(total)
        self.count.assign_add(count)

    def result(self):
        return self.total / ops.maximum(self.count, 1.0)


class Reconstruction(_Mean):
    """Reconstruction NLL per note, nats (the three heads summed)."""

    def values(self, labels, parts):
        total = 0.0
        for column in range(3):
            total = total + ops.sum(_head_nll(labels[..., column], parts[column])[0])
        return total, ops.sum(ops.cast(labels[..., 0] >= 0, "float32"))


class Accuracy(_Mean):
    """The share of one head's notes whose likeliest class is the right one."""

    def __init__(self, name: str, sizes: tuple[int, int], column: int, **kwargs):
        super().__init__(name, sizes, **kwargs)
        self.column = column

    def values(self, labels, parts):
        target = labels[..., self.column]
        real = ops.cast(target >= 0, "float32")
        right = ops.cast(ops.equal(ops.argmax(parts[self.column], axis=-1), target), "float32")
        return ops.sum(right * real), ops.sum(real)


class WindowMean(_Mean):
    """A per-window figure (the KL in nats, or beta) averaged over the real windows."""

    def __init__(self, name: str, sizes: tuple[int, int], part: int, **kwargs):
        super().__init__(name, sizes, **kwargs)
        self.part = part

    def values(self, labels, parts):
        rows = ops.cast(ops.max(labels[..., 0], axis=1) >= 0, "float32")
        return ops.sum(parts[self.part] * rows), ops.sum(rows)


def make_metrics(durations: int, velocities: int) -> list[keras.metrics.Metric]:
    sizes = (durations, velocities)
    return [
        Reconstruction("recon_nll", sizes),
        WindowMean("kl", sizes, 3),
        WindowMean("beta", sizes, 4),
        Accuracy("pitch_accuracy", sizes, 0),
        Accuracy("duration_accuracy", sizes, 1),
        Accuracy("velocity_accuracy", sizes, 2),
    ]


def log_probs(logits: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis, in float64."""
    logits = np.asarray(logits, np.float64)
    peak = logits.max(axis=-1, keepdims=True)
    return logits - peak - np.log(np.exp(logits - peak).sum(axis=-1, keepdims=True))


def with_code_means(model: keras.Model) -> keras.Model:
    """The trained network with a second output, each window's code mean ``mu`` [batch,
    latent]: one pass gives the teacher-forced figures and the codes to decode from alone
    (the encoder is about two thirds of ``melody_vae``'s work per note; it runs once)."""
    return keras.Model(model.input, [model.output, model.get_layer("mu").output])


def window_figures(model, inputs: np.ndarray, targets: np.ndarray, sizes: tuple[int, int]):
    """Per note, in nats: the NLL of each head's target (0 where masked), float64
    [rows, time, 3]; per head the notes whose likeliest class is right, [rows, time, 3]
    (bool); and each window's KL in nats [rows]. Dropout off; the batch's own noise."""
    return packed_figures(np.asarray(model.predict_on_batch(inputs)), targets, sizes)


def packed_figures(packed: np.ndarray, targets: np.ndarray, sizes: tuple[int, int]):
    """:func:`window_figures` from the network's packed output of a batch."""
    *logits, kl, _ = split_packed(np.asarray(packed), *sizes)
    nll = np.zeros(targets.shape, np.float64)
    right = np.zeros(targets.shape, bool)
    for column, head in enumerate(logits):
        labels = targets[..., column]
        real = labels >= 0
        picked = np.take_along_axis(log_probs(head), np.maximum(labels, 0)[..., None], -1)
        nll[..., column] = -picked[..., 0] * real
        right[..., column] = (head.argmax(axis=-1) == labels) & real
    return nll, right, np.asarray(kl, np.float64)
