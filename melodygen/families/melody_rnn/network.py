"""The Melody RNN network: a stack of LSTMs, optional attention on the first layer.

Written with ``keras.ops`` only, so the same weights train under the JAX
backend on a GPU machine and load unchanged under TensorFlow here. The layout
follows Magenta's ``events_rnn_graph``: each LSTM layer is followed by dropout
on its output, the first layer is wrapped in Magenta's AttentionCellWrapper
when ``attn_length`` > 0, and a dense layer maps the top layer to label logits.
"""

from __future__ import annotations

import keras
from keras import ops

from melodygen.families.melody_rnn.configs import HParams
from melodygen.nn.layers import AttentionRNN, MelodyDropout, MelodyLSTM, MelodyLSTMStack


@keras.saving.register_keras_serializable(package="melodygen")
class AttentionLSTMCell(keras.layers.Layer):
    """An LSTM cell wrapped the way tf.contrib's ``AttentionCellWrapper`` wraps one.

    At each step the input is projected together with the previous attention
    read-out, run through the LSTM, and the new (c, h) state queries the last
    ``attn_length`` outputs. The cell's output is a projection of the LSTM
    output and the attention read-out, and it joins the attention window.

    Unlike the TF1 wrapper, which re-applied the attention kernel to all
    ``attn_length`` stored outputs at every step, the projected features of
    each output are computed once and carried in the state: the same numbers,
    ``attn_length`` times less work.
    """

    def __init__(self, units: int, attn_length: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.attn_length = attn_length
        self.attn_size = units
        self.attn_vec_size = units
        self.lstm = keras.layers.LSTMCell(units, name="lstm_cell")
        # state: (h, c) of the LSTM, previous attention read-out, window of outputs,
        # and the window's attention features (flattened, as RNN states are 2-D).
        self.state_size = [
            units,
            units,
            self.attn_size,
            attn_length * self.attn_size,
            attn_length * self.attn_vec_size,
        ]
        self.output_size = self.attn_size

    def build(self, input_shape):
        input_size = input_shape[-1]
        self.input_projection = self.add_weight(
            name="input_projection", shape=(input_size + self.attn_size, input_size)
        )
        self.input_projection_bias = self.add_weight(
            name="input_projection_bias", shape=(input_size,), initializer="zeros"
        )
        self.lstm.build((None, input_size))
        self.attn_w = self.add_weight(name="attn_w", shape=(self.attn_size, self.attn_vec_size))
        self.attn_v = self.add_weight(name="attn_v", shape=(self.attn_vec_size,))
        self.query_kernel = self.add_weight(
            name="query_kernel", shape=(2 * self.units, self.attn_vec_size)
        )
        self.query_bias = self.add_weight(
            name="query_bias", shape=(self.attn_vec_size,), initializer="zeros"
        )
        self.output_kernel = self.add_weight(
            name="output_kernel", shape=(self.units + self.attn_size, self.attn_size)
        )
        self.output_bias = self.add_weight(
            name="output_bias", shape=(self.attn_size,), initializer="zeros"
        )
        self.built = True

    def call(self, inputs, states, training=False):
        h, c, attns, window, features = states
        window = ops.reshape(window, (-1, self.attn_length, self.attn_size))
        features = ops.reshape(features, (-1, self.attn_length, self.attn_vec_size))

        x = ops.matmul(ops.concatenate([inputs, attns], axis=-1), self.input_projection)
        x = x + self.input_projection_bias
        cell_output, (h, c) = self.lstm(x, [h, c], training=training)

        # Magenta flattens the LSTMStateTuple (c, h) into the query.
        query = ops.matmul(ops.concatenate([c, h], axis=-1), self.query_kernel) + self.query_bias
        scores = ops.sum(self.attn_v * ops.tanh(features + query[:, None, :]), axis=-1)
        weights = ops.softmax(scores, axis=-1)
        attns = ops.sum(weights[:, :, None] * window, axis=1)

        output = ops.matmul(ops.concatenate([cell_output, attns], axis=-1), self.output_kernel)
        output = output + self.output_bias
        new_feature = ops.matmul(output, self.attn_w)
        window = ops.concatenate([window[:, 1:], output[:, None, :]], axis=1)
        features = ops.concatenate([features[:, 1:], new_feature[:, None, :]], axis=1)
        new_states = [
            h,
            c,
            attns,
            ops.reshape(window, (-1, self.attn_length * self.attn_size)),
            ops.reshape(features, (-1, self.attn_length * self.attn_vec_size)),
        ]
        return output, new_states

    def get_config(self):
        return {**super().get_config(), "units": self.units, "attn_length": self.attn_length}


def build_model(input_size: int, num_classes: int, hparams: HParams) -> keras.Model:
    """Build the Melody RNN as a Keras model from inputs [batch, time, input_size] to logits.

    Magenta's layout, in the layers that train fastest here: the attention
    layer (``AttentionRNN``, when ``attn_length`` > 0) first, then the plain
    LSTM layers as one ``MelodyLSTMStack`` (all layers advance in one loop,
    with dropout between them), or a single ``MelodyLSTM`` when only one is
    left; dropout follows the top of each part. Generation steps the cells of
    these layers one at a time (``generate.StepModel``).
    """
    inputs = keras.Input(shape=(None, input_size), name="inputs")
    hidden = inputs
    rate = 1.0 - hparams.dropout_keep_prob
    sizes = list(hparams.rnn_layer_sizes)
    precision = hparams.gradient_precision
    if hparams.attn_length:
        cell = AttentionLSTMCell(sizes.pop(0), hparams.attn_length)
        hidden = AttentionRNN(cell, precision, return_sequences=True, name="rnn_attention")(hidden)
        if rate > 0:
            hidden = MelodyDropout(rate, name="dropout_attention")(hidden)
    if len(sizes) == 1:
        hidden = MelodyLSTM(sizes[0], precision, return_sequences=True, name="rnn")(hidden)
    elif sizes:
        hidden = MelodyLSTMStack(sizes, rate, gradient_precision=precision, name="rnn")(hidden)
    if sizes and rate > 0:
        hidden = MelodyDropout(rate, name="dropout")(hidden)
    logits = keras.layers.Dense(num_classes, name="logits")(hidden)
    return keras.Model(inputs, logits, name="melody_rnn")
