"""Recurrent layers used by the Melody RNN network."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="melodygen")
class MelodyLSTM(keras.layers.LSTM):
    """A Keras LSTM layer (same weights, same outputs) used for every plain LSTM layer."""
