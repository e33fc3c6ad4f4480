"""The ``abc_char`` network, its loss and figures: embedding, LSTM stack, character logits.

Written with ``keras.ops`` only, so it trains under JAX on a GPU as under TensorFlow on a
CPU, where the LSTM layers take MelodyGen's compiled kernels (:mod:`melodygen.nn.layers`).
Layout, as the seed's: ``Embedding(vocab, 512)`` -> LSTM(256) -> dropout -> LSTM(256) ->
dropout -> LSTM(256) -> dropout -> ``Dense(vocab)`` (logits; the softmax is in the loss).
Generation steps the LSTM cells one character at a time (``generate.CharStepModel``).
The loss and figures are :mod:`melodygen.nn.text`'s (shared with ``abc_transformer``); they
are importable from here as before.
"""

from __future__ import annotations

import keras

from melodygen.families.abc_char.configs import HParams
from melodygen.nn.layers import MelodyDropout, MelodyLSTM, MelodyLSTMStack
from melodygen.nn.text import (
    CharAccuracy,
    CharCrossEntropy,
    CharNLL,
    log_probs,
    make_metrics,
    target_nats,
)

__all__ = [
    "CharAccuracy",
    "CharCrossEntropy",
    "CharNLL",
    "build_model",
    "log_probs",
    "make_metrics",
    "target_nats",
]


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
