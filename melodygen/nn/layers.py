"""Recurrent and dropout layers used by the Melody RNN network, with fast TensorFlow CPU paths.

``MelodyLSTM`` is a ``keras.layers.LSTM`` (same weights, same outputs),
``MelodyLSTMStack`` a stack of them with dropout between the layers,
``AttentionRNN`` the ``keras.layers.RNN`` for ``network.AttentionLSTMCell``,
and ``MelodyDropout`` a ``keras.layers.Dropout``. Keras' generic RNN loop
spends most of a CPU training step on per-step bookkeeping (and, for the
attention cell, on copying its window state), not arithmetic. So on the
TensorFlow backend without a GPU, LSTM layers run each whole sequence in
MelodyGen's compiled op (``kernels.lstm_sequence``) and dropout draws its
masks with ``kernels.dropout``; where those ops cannot be built, LSTM layers
run ``_tf_lstm_stack``, a hand-written TensorFlow loop with its own gradient.
The attention layer runs ``kernels.attention_sequence``, or where the ops
cannot be built ``_tf_attention_lstm``, another such loop. Anything
these paths do not handle (other backends, a GPU, masks, recurrent dropout,
initial states of the attention cell, ...) goes through plain Keras.
``tests/test_layers.py`` holds them equal to Keras.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
from keras import ops

from melodygen.nn import kernels


@functools.cache
def _tf_cpu_only() -> bool:
    """Whether layers run on TensorFlow with no GPU in sight (where the fast path pays)."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.config.list_physical_devices("GPU")


def _icfo_permutation(units: int) -> np.ndarray:
    """Columns of a Keras gate matrix (i, f, c, o) in the order i, c, f, o."""
    i, f, c, o = np.split(np.arange(4 * units), 4)
    return np.concatenate([i, c, f, o])


def _gate_constant(values, units: int):
    import tensorflow as tf

    return tf.constant(np.repeat(np.asarray(values, np.float32), units))


def _tf_lstm_stack(inputs, weights, initial_states, dropout_masks, num_chunks=1):
    """Run LSTM layers over a time-major sequence in one TensorFlow while loop.

    ``inputs`` is [time, batch, features]; ``weights`` one (kernel,
    recurrent_kernel, bias) per layer in Keras' layout; ``initial_states`` one
    (h, c) per layer; ``dropout_masks`` one per layer after the first, None or
    a [time, batch, units] multiplier for that layer's input. Returns the top
    layer's outputs [time, batch, units] and the final (h, c) of every layer,
    equal to Keras' LSTM up to float rounding.

    Why it is faster than ``keras.layers.LSTM`` on a CPU:

    * every layer advances in the same loop iteration, so with two inter-op
      threads one layer's step runs while the other's does (the loop runs
      several iterations in parallel), and there are fewer loop iterations;
    * the first layer's input projection is one big matmul before the loop,
      each later layer's bias rides in its input matmul (a column of ones), and
      the i, f, o gate pre-activations are halved in the weights so that one
      ``tanh`` over all four gates gives every activation
      (sigmoid(x) = (1 + tanh(x / 2)) / 2);
    * the gradient is hand-written: a backward loop with the fused
      ``LSTMBlockCellGrad`` kernel and one matmul per layer and step (plus one
      for the layer below), while the weight gradients are a few big matmuls
      over all steps after the loop, instead of per-step accumulations;
    * with ``num_chunks`` > 1 each batch is cut into that many independent
      chunks, which gives a single layer two chains of work for two cores.
    """
    import tensorflow as tf

    num_layers = len(weights)
    units = [int(w[1].shape[0]) for w in weights]
    has_mask = [False] + [m is not None for m in dropout_masks]
    n = num_chunks
    flat_weights = [t for w in weights for t in w]
    flat_states = [t for s in initial_states for t in s]
    masks = [m for m in dropout_masks if m is not None]

    @tf.custom_gradient
    def run(x, *args):
        weights_in = args[: 3 * num_layers]
        states_in = args[3 * num_layers : 5 * num_layers]
        mask_iter = iter(args[5 * num_layers :])
        steps = tf.shape(x)[0]
        batch = tf.shape(x)[1]
        chunk = batch // n
        ones = tf.ones([chunk, 1])

        def chunks(value):
            return tf.split(value, n) if n > 1 else [value]

        def join(values):
            return tf.concat(values, 0) if n > 1 else values[0]

        def tiled(value):
            return tf.tile(value[None], [chunk, 1])

        def time_chunks(value):
            """[time, batch, ...] as [time * chunks, chunk, ...]: item t * n + k is chunk k at t."""
            return tf.reshape(value, tf.concat([[steps * n, chunk], tf.shape(value)[2:]], 0))

        layers = []
        for index in range(num_layers):
            kernel, recurrent_kernel, bias = weights_in[3 * index : 3 * index + 3]
            size = units[index]
            perm = _icfo_permutation(size)
            scale = _gate_constant([0.5, 1.0, 0.5, 0.5], size)
            kernel_icfo = tf.gather(kernel, perm, axis=1)
            recurrent_icfo = tf.gather(recurrent_kernel, perm, axis=1)
            bias_icfo = tf.gather(bias, perm)
            layer = {
                "units": size,
                "perm": perm,
                # The kernel with the bias as an extra row, halved for i, f, o.
                "kernel": tf.concat([kernel_icfo, bias_icfo[None]], 0) * scale,
                "recurrent": recurrent_icfo * scale,
                "kernel_t": tf.transpose(kernel_icfo),
                "recurrent_t": tf.transpose(recurrent_icfo),
                "w_shape": tf.zeros([size, 4 * size]),  # LSTMBlockCellGrad only checks its shape
                "scale": tiled(scale),
                "shift": tiled(_gate_constant([0.5, 0.0, 0.5, 0.5], size)),
                "mask": None,
            }
            if has_mask[index]:
                mask = next(mask_iter)
                layer["mask"] = time_chunks(mask)
                layer["mask_ones"] = time_chunks(tf.concat([mask, tf.ones([steps, batch, 1])], 2))
            layers.append(layer)

        # The first layer's input projection, bias included, for every step at once.
        features = x.shape[-1]
        x_ones = tf.concat([x, tf.ones([steps, batch, 1])], 2)
        x_flat = tf.reshape(x_ones, [-1, features + 1])
        projected = time_chunks(
            tf.reshape(tf.matmul(x_flat, layers[0]["kernel"]), [steps, batch, 4 * units[0]])
        )

        def body(t, hs, cs, arrays):
            hs = [list(v) for v in hs]
            cs = [list(v) for v in cs]
            arrays = [list(v) for v in arrays]
            for k in range(n):
                item = n * t + k
                below = None
                for index, layer in enumerate(layers):
                    recurrent = tf.matmul(hs[index][k], layer["recurrent"])
                    if index == 0:
                        z = projected[item] + recurrent
                    else:
                        x_in = tf.concat([below, ones], 1)
                        if layer["mask"] is not None:
                            x_in = x_in * layer["mask_ones"][item]
                        z = recurrent + tf.matmul(x_in, layer["kernel"])
                        arrays[index][7] = arrays[index][7].write(item, x_in)
                    gates = tf.tanh(z) * layer["scale"] + layer["shift"]
                    i, ci, f, o = tf.split(gates, 4, axis=1)
                    c = f * cs[index][k] + i * ci
                    co = tf.tanh(c)
                    h = o * co
                    values = (h, c, co, i, ci, f, o)
                    offsets = (0, n, 0, 0, 0, 0, 0)  # c is stored one step late, after c0
                    for slot, (value, offset) in enumerate(zip(values, offsets, strict=True)):
                        arrays[index][slot] = arrays[index][slot].write(item + offset, value)
                    hs[index][k] = h
                    cs[index][k] = c
                    below = h
            return t + 1, hs, cs, arrays

        h0 = [chunks(states_in[2 * index]) for index in range(num_layers)]
        c0 = [chunks(states_in[2 * index + 1]) for index in range(num_layers)]
        arrays0 = []
        for index in range(num_layers):
            size = units[index]

            def array(width, extra=0):
                return tf.TensorArray(tf.float32, (steps + extra) * n, element_shape=[None, width])

            c_array = array(size, extra=1)
            for k in range(n):
                c_array = c_array.write(k, c0[index][k])
            layer_arrays = [array(size), c_array] + [array(size) for _ in range(5)]
            if index > 0:
                layer_arrays.append(array(units[index - 1] + 1))
            arrays0.append(layer_arrays)
        _, h_last, c_last, arrays = tf.while_loop(
            lambda t, *_: t < steps, body, (0, h0, c0, arrays0), parallel_iterations=10
        )
        outputs = [
            tf.reshape(arrays[index][0].stack(), [steps, batch, units[index]])
            for index in range(num_layers)
        ]
        finals = []
        for index in range(num_layers):
            finals += [join(h_last[index]), join(c_last[index])]

        def grad(d_outputs, *d_finals):
            d_top = time_chunks(d_outputs)
            dh0 = []
            dc0 = []
            for index in range(num_layers):
                size = units[index]
                dh, dc = d_finals[2 * index], d_finals[2 * index + 1]
                dh0.append(chunks(dh) if dh is not None else [tf.zeros([chunk, size])] * n)
                dc0.append(chunks(dc) if dc is not None else [tf.zeros([chunk, size])] * n)
            no_input = tf.zeros([chunk, 0])

            def back(t, dhs, dcs, dz_arrays):
                dhs = [list(v) for v in dhs]
                dcs = [list(v) for v in dcs]
                dz_arrays = list(dz_arrays)
                for k in range(n):
                    item = n * t + k
                    d_input = None
                    for index in reversed(range(num_layers)):
                        layer = layers[index]
                        size = layer["units"]
                        saved = arrays[index]
                        if index == num_layers - 1:
                            dh = dhs[index][k] + d_top[item]
                        else:
                            upper = layers[index + 1]
                            if upper["mask"] is not None:
                                d_input = d_input * upper["mask"][item]
                            dh = dhs[index][k] + d_input
                        zeros = tf.zeros([size])
                        dc, dz, _, _, _ = tf.raw_ops.LSTMBlockCellGrad(
                            x=no_input,
                            cs_prev=saved[1].read(item),
                            h_prev=dh,
                            w=layer["w_shape"],
                            wci=zeros,
                            wcf=zeros,
                            wco=zeros,
                            b=tf.zeros([4 * size]),
                            i=saved[3].read(item),
                            cs=dh,
                            f=saved[5].read(item),
                            o=saved[6].read(item),
                            ci=saved[4].read(item),
                            co=saved[2].read(item),
                            cs_grad=dcs[index][k],
                            h_grad=dh,
                            use_peephole=False,
                        )
                        dhs[index][k] = tf.matmul(dz, layer["recurrent_t"])
                        dcs[index][k] = dc
                        if index > 0:
                            d_input = tf.matmul(dz, layer["kernel_t"])
                        dz_arrays[index] = dz_arrays[index].write(item, dz)
                return t - 1, dhs, dcs, dz_arrays

            dz_arrays0 = [
                tf.TensorArray(tf.float32, steps * n, element_shape=[None, 4 * size])
                for size in units
            ]
            _, dh_first, dc_first, dz_arrays = tf.while_loop(
                lambda t, *_: t >= 0,
                back,
                (steps - 1, dh0, dc0, dz_arrays0),
                parallel_iterations=10,
            )
            d_weights = []
            d_x = None
            for index, layer in enumerate(layers):
                size = layer["units"]
                inverse = np.argsort(layer["perm"])
                dz = tf.reshape(dz_arrays[index].stack(), [steps, batch, 4 * size])
                dz_flat = tf.reshape(dz, [-1, 4 * size])
                if index == 0:
                    x_in = x_flat
                else:
                    x_in = tf.reshape(arrays[index][7].stack(), [-1, units[index - 1] + 1])
                # Input-kernel and bias gradients together: the inputs carry a column of ones.
                d_kernel = tf.matmul(x_in, dz_flat, transpose_a=True)
                h_prev = tf.reshape(outputs[index][:-1], [-1, size])
                d_recurrent = tf.matmul(
                    h_prev, tf.reshape(dz[1:], [-1, 4 * size]), transpose_a=True
                )
                d_recurrent += tf.matmul(states_in[2 * index], dz[0], transpose_a=True)
                d_weights += [
                    tf.gather(d_kernel[:-1], inverse, axis=1),
                    tf.gather(d_recurrent, inverse, axis=1),
                    tf.gather(d_kernel[-1], inverse),
                ]
                if index == 0:
                    d_x = tf.reshape(
                        tf.matmul(dz_flat, layer["kernel_t"]), [steps, batch, features]
                    )
            d_states = []
            for index in range(num_layers):
                d_states += [join(dh_first[index]), join(dc_first[index])]
            return [d_x] + d_weights + d_states + [None] * len(masks)

        return [outputs[-1]] + finals, grad

    results = run(inputs, *flat_weights, *flat_states, *masks)
    return results[0], [(results[1 + 2 * i], results[2 + 2 * i]) for i in range(num_layers)]


def _lstm_fast_path_ok(layer: keras.layers.LSTM, mask, training) -> bool:
    """Whether ``_tf_lstm_stack`` computes exactly what ``layer`` would."""
    cell = layer.cell
    return (
        _tf_cpu_only()
        and mask is None
        and not layer.go_backwards
        and not layer.unroll
        and not (training and cell.recurrent_dropout)
        and cell.use_bias
        and cell.activation in (keras.activations.tanh, ops.tanh)
        and cell.recurrent_activation in (keras.activations.sigmoid, ops.sigmoid)
        and layer.compute_dtype == "float32"
    )


def _lstm_weights(layer: keras.layers.LSTM) -> tuple:
    import tensorflow as tf

    cell = layer.cell
    return tuple(
        tf.convert_to_tensor(v.value) for v in (cell.kernel, cell.recurrent_kernel, cell.bias)
    )


@keras.saving.register_keras_serializable(package="melodygen")
class MelodyLSTM(keras.layers.LSTM):
    """A ``keras.layers.LSTM`` (same weights, outputs and gradients) that is faster on a CPU.

    On TensorFlow without a GPU the sequence runs through
    ``kernels.lstm_sequence`` or, where the kernels cannot be built,
    ``_tf_lstm_stack``; both cut the batch in two independent halves, so
    that two cores share one layer's steps. Masks, recurrent dropout, ``go_backwards``, ``unroll``,
    other activations or dtypes, a GPU and the other backends take Keras' own
    loop. ``gradient_precision`` (``"float32"`` or ``"bfloat16"``): the dtype
    the kernel's gradient matmuls read their inputs in.
    """

    def __init__(self, units, gradient_precision: str = "float32", **kwargs):
        super().__init__(units, **kwargs)
        self.gradient_precision = gradient_precision

    def get_config(self):
        return {**super().get_config(), "gradient_precision": self.gradient_precision}

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if not _lstm_fast_path_ok(self, mask, training):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        import tensorflow as tf

        if training and self.cell.dropout:
            # The one input mask for every step, as Keras' own (cuDNN) path applies it.
            sequences = sequences * self.cell.get_dropout_mask(sequences[:, 0, :])[:, None, :]
        if kernels.load() is not None:
            outputs, h, c = kernels.lstm_sequence(
                sequences, *_lstm_weights(self), *initial_state, self.gradient_precision
            )
            return h, outputs, [h, c]
        batch = sequences.shape[0]
        chunks = 2 if batch is not None and batch % 2 == 0 else 1
        outputs, [(h, c)] = _tf_lstm_stack(
            tf.transpose(sequences, [1, 0, 2]),
            [_lstm_weights(self)],
            [tuple(initial_state)],
            [],
            num_chunks=chunks,
        )
        return h, tf.transpose(outputs, [1, 0, 2]), [h, c]


@keras.saving.register_keras_serializable(package="melodygen")
class MelodyDropout(keras.layers.Dropout):
    """``keras.layers.Dropout`` whose masks come from ``kernels.dropout`` on a TensorFlow CPU.

    Same function and no weights, so a model saved with either loads into the
    other; only the random draws differ, and they take a tenth of the time.
    """

    def call(self, inputs, training=False):
        if training and 0 < self.rate < 1 and self.noise_shape is None and _tf_cpu_only():
            if kernels.load() is not None:
                import tensorflow as tf

                seed = tf.cast(self.seed_generator.next(), "int64")
                return kernels.dropout(inputs, self.rate, seed)
        return super().call(inputs, training=training)


@keras.saving.register_keras_serializable(package="melodygen")
class MelodyLSTMStack(keras.layers.Layer):
    """LSTM layers one above the other, with dropout on the output of each but the last.

    The network ``MelodyLSTM(u0) -> Dropout(rate) -> MelodyLSTM(u1) -> ...``
    returning the top layer's sequence, with the same weights in the same
    order: one ``MelodyLSTM`` (Keras' LSTM layout) per layer, so the weights
    of a model built either way load into the other with ``set_weights``. On
    TensorFlow without a GPU each layer runs as one ``kernels.lstm_sequence``
    op; where the kernels cannot be built, all layers advance in one loop
    (``_tf_lstm_stack``), the lower layer's next step overlapping the upper
    layer's current one, which keeps two cores busy. ``gradient_precision``
    as in ``MelodyLSTM``.
    """

    def __init__(
        self, units, dropout: float = 0.0, seed=None, gradient_precision="float32", **kwargs
    ):
        super().__init__(**kwargs)
        self.units = [int(u) for u in units]
        self.dropout = float(dropout)
        self.seed = seed
        self.gradient_precision = gradient_precision
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.lstm_layers = [
            MelodyLSTM(size, return_sequences=True, name=f"lstm_{index}")
            for index, size in enumerate(self.units)
        ]
        if keras.backend.backend() == "tensorflow":
            self.supports_jit = False  # the fast path's kernels have no XLA version

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.lstm_layers:
            layer.build(shape)
            shape = (*shape[:-1], layer.units)
        self.built = True

    def call(self, inputs, training=False):
        dropping = bool(training) and self.dropout > 0
        if all(_lstm_fast_path_ok(layer, None, training) for layer in self.lstm_layers):
            import tensorflow as tf

            if kernels.load() is not None:
                return self._kernel_call(inputs, dropping)

            x = tf.transpose(inputs, [1, 0, 2])
            steps, batch = tf.shape(x)[0], tf.shape(x)[1]
            masks = []
            for size in self.units[:-1]:
                if dropping:
                    noise = keras.random.uniform((steps, batch, size), seed=self.seed_generator)
                    keep = tf.cast(noise >= self.dropout, tf.float32) / (1.0 - self.dropout)
                    masks.append(keep)
                else:
                    masks.append(None)
            states = [(tf.zeros([batch, size]), tf.zeros([batch, size])) for size in self.units]
            weights = [_lstm_weights(layer) for layer in self.lstm_layers]
            outputs, _ = _tf_lstm_stack(x, weights, states, masks)
            return tf.transpose(outputs, [1, 0, 2])
        hidden = inputs
        for index, layer in enumerate(self.lstm_layers):
            hidden = layer(hidden, training=training)
            if dropping and index < len(self.lstm_layers) - 1:
                hidden = keras.random.dropout(hidden, self.dropout, seed=self.seed_generator)
        return hidden

    def _kernel_call(self, inputs, dropping: bool):
        """The stack through the fused kernel, one layer at a time, batch-major throughout."""
        import tensorflow as tf

        hidden = inputs
        batch = tf.shape(inputs)[0]
        for index, layer in enumerate(self.lstm_layers):
            if dropping and index > 0:
                seed = tf.cast(self.seed_generator.next(), "int64")
                hidden = kernels.dropout(hidden, self.dropout, seed)
            zeros = tf.zeros([batch, layer.units])
            hidden, _, _ = kernels.lstm_sequence(
                hidden, *_lstm_weights(layer), zeros, zeros, self.gradient_precision
            )
        return hidden

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "dropout": self.dropout,
            "seed": self.seed,
            "gradient_precision": self.gradient_precision,
        }


def _tf_attention_lstm(inputs, weights, attn_length: int):
    """Run ``network.AttentionLSTMCell`` over a time-major sequence in one TensorFlow loop.

    ``inputs`` is [time, batch, features]; ``weights`` the cell's weights in the
    order of ``_ATTENTION_WEIGHTS``. Returns the outputs [time, batch, attn_size],
    equal to ``keras.layers.RNN(cell)`` up to float rounding, with a
    hand-written gradient.

    The cell's state carries the last ``attn_length`` outputs and their
    attention features, so Keras' loop copies (and its gradient stores) two
    [batch, attn_length, attn_size] tensors per step. Here every output and
    feature is written once, in place, into a [attn_length + time, batch,
    attn_size] buffer whose first ``attn_length`` rows stay zero (the initial
    window), and step t attends over rows t .. t + attn_length - 1, a slice
    that costs no copy. Backward, the gradients that later steps send to the
    window are gathered in two [attn_length, batch, attn_size] registers that
    shift by one row per step, the row leaving being complete. The inputs'
    share of the input projection is one matmul over all steps, biases ride in
    matmuls as a column of ones, the LSTM part is ``_tf_lstm_stack``'s (one
    ``tanh`` for all gates, ``LSTMBlockCellGrad`` backward), and the weight
    gradients are big matmuls over all steps after the backward loop.
    """
    import tensorflow as tf

    window = attn_length

    @tf.custom_gradient
    def run(x, *args):
        (
            projection,
            projection_bias,
            kernel,
            recurrent_kernel,
            bias,
            attn_w,
            attn_v,
            query_kernel,
            query_bias,
            output_kernel,
            output_bias,
        ) = args
        steps = tf.shape(x)[0]
        batch = tf.shape(x)[1]
        features = x.shape[-1]
        units = recurrent_kernel.shape[0]
        size = attn_w.shape[0]
        perm = _icfo_permutation(units)
        scale = _gate_constant([0.5, 1.0, 0.5, 0.5], units)
        ones = tf.ones([batch, 1])
        ones_window = tf.ones([1, window])

        def tiled(value):
            return tf.tile(value[None], [batch, 1])

        # The inputs' part of the input projection, bias included, for all steps.
        x_ones = tf.reshape(tf.concat([x, tf.ones([steps, batch, 1])], 2), [-1, features + 1])
        projection_in = tf.concat([projection[:features], projection_bias[None]], 0)
        projection_attn = projection[features:]
        projected = tf.reshape(tf.matmul(x_ones, projection_in), [steps, batch, features])
        kernel_icfo = tf.gather(kernel, perm, axis=1)
        recurrent_icfo = tf.gather(recurrent_kernel, perm, axis=1)
        kernels = tf.concat([kernel_icfo, recurrent_icfo, tf.gather(bias, perm)[None]], 0)
        kernels *= scale  # i, f, o pre-activations halved: sigmoid from tanh
        kernels_t = tf.transpose(tf.concat([kernel_icfo, recurrent_icfo], 0))
        gate_scale = tiled(scale)
        gate_shift = tiled(_gate_constant([0.5, 0.0, 0.5, 0.5], units))
        query_kb = tf.concat([query_kernel, query_bias[None]], 0)
        output_kb = tf.concat([output_kernel, output_bias[None]], 0)
        v_column = attn_v[:, None]

        def buffer():
            # A fresh zeroed tensor each run (Empty is stateful, never folded or shared),
            # since rows are then updated in place.
            shape = tf.stack([steps + window, batch, size])
            return tf.raw_ops.Empty(shape=shape, dtype=tf.float32, init=True)

        def body(t, h, c, attns, outs, feats, arrays):
            arrays = list(arrays)
            state_shapes = (h.shape, c.shape, attns.shape)
            xp = projected[t] + tf.matmul(attns, projection_attn)
            xh1 = tf.concat([xp, h, ones], 1)
            gates = tf.tanh(tf.matmul(xh1, kernels)) * gate_scale + gate_shift
            i, ci, f, o = tf.split(gates, 4, axis=1)
            c = f * c + i * ci
            co = tf.tanh(c)
            h = o * co
            ch1 = tf.concat([c, h, ones], 1)
            query = tf.matmul(ch1, query_kb)
            energy = tf.tanh(feats[t : t + window] + query)
            scores = tf.reshape(tf.matmul(tf.reshape(energy, [-1, size]), v_column), [window, -1])
            weights = tf.nn.softmax(scores, axis=0)
            weighted = tf.reshape(weights[:, :, None] * outs[t : t + window], [window, -1])
            attns = tf.reshape(tf.matmul(ones_window, weighted), [-1, size])
            ha1 = tf.concat([h, attns, ones], 1)
            out = tf.matmul(ha1, output_kb)
            row = tf.reshape(window + t, [1])
            outs = tf.raw_ops.InplaceUpdate(x=outs, i=row, v=out[None])
            feats = tf.raw_ops.InplaceUpdate(x=feats, i=row, v=tf.matmul(out, attn_w)[None])
            saved = (xh1, c, co, i, ci, f, o, ch1, energy, weights, ha1, attns)
            for slot, value in enumerate(saved):
                arrays[slot] = arrays[slot].write(t + 1 if slot == 1 else t, value)
            for value, shape in zip((h, c, attns), state_shapes, strict=True):
                value.set_shape(shape)  # what reshapes with a -1 cannot tell
            return t + 1, h, c, attns, outs, feats, arrays

        widths = (features + units + 1, units, units, units, units, units, units)
        widths += (2 * units + 1, "energy", "weights", units + size + 1, size)
        shapes = {"energy": [window, None, size], "weights": [window, None]}
        arrays0 = []
        for slot, width in enumerate(widths):
            shape = shapes.get(width, [None, width])
            length = steps + 1 if slot == 1 else steps
            array = tf.TensorArray(tf.float32, length, element_shape=shape)
            if slot == 1:
                array = array.write(0, tf.zeros([batch, units]))  # c before the first step
            arrays0.append(array)
        zeros_h = tf.zeros([batch, units])
        zeros_a = tf.zeros([batch, size])
        _, _, _, _, outs, feats, arrays = tf.while_loop(
            lambda t, *_: t < steps,
            body,
            (0, zeros_h, zeros_h, zeros_a, buffer(), buffer(), arrays0),
            parallel_iterations=10,
        )
        outputs = outs[window:]

        def grad(d_outputs):
            # Upstream gradients join the output register when their row enters it.
            d_outputs_padded = tf.concat([tf.zeros([window, batch, size]), d_outputs], 0)
            attn_w_t = tf.transpose(attn_w)
            output_attn_t = tf.transpose(output_kernel[units:])
            query_c_t = tf.transpose(query_kernel[:units])
            to_h = tf.concat(
                [tf.transpose(output_kernel[:units]), tf.transpose(query_kernel[units:])], 0
            )
            w_shape = tf.zeros([units, 4 * units])  # LSTMBlockCellGrad only checks its shape
            zeros_units = tf.zeros([units])
            v_row = tf.reshape(attn_v, [1, 1, size])
            no_input = tf.zeros([batch, 0])

            def back(t, dh, dc, d_attns, d_v, d_out_row, d_feat_row, d_outs, d_feats, d_arrays):
                # d_outs / d_feats: gradients gathered so far for rows t+1 .. t+window, of
                # which the last (output t's), complete, is also carried alone as *_row so
                # that the next step need not wait for the whole register to shift.
                d_arrays = list(d_arrays)
                carried = [v.shape for v in (dh, dc, d_attns, d_out_row, d_feat_row, d_outs)]
                d_out = d_out_row + tf.matmul(d_feat_row, attn_w_t)
                d_attns = tf.matmul(d_out, output_attn_t) + d_attns
                energy = arrays[8].read(t)
                weights = arrays[9].read(t)
                d_weights = tf.reduce_sum(outs[t : t + window] * d_attns, -1)
                d_window = weights[:, :, None] * d_attns
                d_scores = weights * (d_weights - tf.reduce_sum(weights * d_weights, 0))
                d_energy = tf.raw_ops.TanhGrad(y=energy, dy=d_scores[:, :, None] * v_row)
                entering = d_outputs_padded[t : t + 1]
                if window > 1:
                    d_out_row = d_outs[window - 2] + d_window[window - 1]
                    d_feat_row_next = d_feats[window - 2] + d_energy[window - 1]
                    d_outs = tf.concat([d_window[:1] + entering, d_outs[:-1] + d_window[1:]], 0)
                    d_feats = tf.concat([d_energy[:1], d_feats[:-1] + d_energy[1:]], 0)
                else:
                    d_outs = d_window + entering
                    d_feats = d_energy
                    d_out_row, d_feat_row_next = d_outs[0], d_feats[0]
                d_query = tf.reshape(
                    tf.matmul(ones_window, tf.reshape(d_energy, [window, -1])), [-1, size]
                )
                d_v += tf.matmul(tf.reshape(d_scores, [1, -1]), tf.reshape(energy, [-1, size]))
                dh = tf.matmul(tf.concat([d_out, d_query], 1), to_h) + dh
                dc = tf.matmul(d_query, query_c_t) + dc
                dc, dz, _, _, _ = tf.raw_ops.LSTMBlockCellGrad(
                    x=no_input,
                    cs_prev=arrays[1].read(t),
                    h_prev=dh,
                    w=w_shape,
                    wci=zeros_units,
                    wcf=zeros_units,
                    wco=zeros_units,
                    b=tf.zeros([4 * units]),
                    i=arrays[3].read(t),
                    cs=dh,
                    f=arrays[5].read(t),
                    o=arrays[6].read(t),
                    ci=arrays[4].read(t),
                    co=arrays[2].read(t),
                    cs_grad=dc,
                    h_grad=dh,
                    use_peephole=False,
                )
                d_xh = tf.matmul(dz, kernels_t)
                d_xp, dh = d_xh[:, :features], d_xh[:, features:]
                d_attns = tf.matmul(d_xp, projection_attn, transpose_b=True)
                for slot, value in enumerate((dz, d_xp, d_query, d_out, d_feat_row)):
                    d_arrays[slot] = d_arrays[slot].write(t, value)
                d_feat_row = d_feat_row_next
                for value, shape in zip(
                    (dh, dc, d_attns, d_out_row, d_feat_row), carried, strict=False
                ):
                    value.set_shape(shape)
                d_outs.set_shape(carried[-1])
                d_feats.set_shape(carried[-1])
                return t - 1, dh, dc, d_attns, d_v, d_out_row, d_feat_row, d_outs, d_feats, d_arrays

            d_arrays0 = [
                tf.TensorArray(tf.float32, steps, element_shape=[None, width])
                for width in (4 * units, features, size, size, size)
            ]
            _, _, _, _, d_v, _, _, _, _, d_arrays = tf.while_loop(
                lambda t, *_: t >= 0,
                back,
                (
                    steps - 1,
                    zeros_h,
                    zeros_h,
                    zeros_a,
                    tf.zeros([1, size]),
                    d_outputs_padded[steps + window - 1],
                    zeros_a,
                    d_outputs_padded[steps : steps + window],
                    tf.zeros([window, batch, size]),
                    d_arrays0,
                ),
                parallel_iterations=10,
            )

            def flat(array, width):
                return tf.reshape(array.stack(), [-1, width])

            dz = flat(d_arrays[0], 4 * units)
            d_xp = flat(d_arrays[1], features)
            inverse = np.argsort(perm)
            d_lstm = tf.matmul(flat(arrays[0], features + units + 1), dz, transpose_a=True)
            d_in = tf.matmul(x_ones, d_xp, transpose_a=True)
            attns_all = tf.reshape(arrays[11].stack(), [steps, batch, size])
            d_xp_steps = tf.reshape(d_xp, [steps, batch, features])
            d_projection_attn = tf.matmul(
                tf.reshape(attns_all[:-1], [-1, size]),
                tf.reshape(d_xp_steps[1:], [-1, features]),
                transpose_a=True,
            )
            d_query_kb = tf.matmul(
                flat(arrays[7], 2 * units + 1), flat(d_arrays[2], size), transpose_a=True
            )
            d_output_kb = tf.matmul(
                flat(arrays[10], units + size + 1), flat(d_arrays[3], size), transpose_a=True
            )
            d_attn_w = tf.matmul(
                tf.reshape(outputs, [-1, size]), flat(d_arrays[4], size), transpose_a=True
            )
            d_x = tf.reshape(tf.matmul(d_xp, projection[:features], transpose_b=True), tf.shape(x))
            return [
                d_x,
                tf.concat([d_in[:features], d_projection_attn], 0),
                d_in[-1],
                tf.gather(d_lstm[:features], inverse, axis=1),
                tf.gather(d_lstm[features : features + units], inverse, axis=1),
                tf.gather(d_lstm[-1], inverse),
                d_attn_w,
                tf.reshape(d_v, [-1]),
                d_query_kb[:-1],
                d_query_kb[-1],
                d_output_kb[:-1],
                d_output_kb[-1],
            ]

        return tf.identity(outputs), grad

    return run(inputs, *weights)


def _attention_weights(cell) -> list:
    import tensorflow as tf

    lstm = cell.lstm
    variables = (
        cell.input_projection,
        cell.input_projection_bias,
        lstm.kernel,
        lstm.recurrent_kernel,
        lstm.bias,
        cell.attn_w,
        cell.attn_v,
        cell.query_kernel,
        cell.query_bias,
        cell.output_kernel,
        cell.output_bias,
    )
    return [tf.convert_to_tensor(v.value) for v in variables]


@keras.saving.register_keras_serializable(package="melodygen")
class AttentionRNN(keras.layers.RNN):
    """``keras.layers.RNN`` for ``network.AttentionLSTMCell``, with a fast TensorFlow CPU path.

    Same weights and outputs as ``keras.layers.RNN(cell)``. On TensorFlow
    without a GPU, for whole sequences from zero states (no mask, initial or
    returned state, statefulness, ``go_backwards`` or ``unroll``), the
    sequence runs through ``kernels.attention_sequence`` (or, where the
    kernels cannot be built, ``_tf_attention_lstm``); otherwise Keras' own
    loop steps the cell. ``gradient_precision`` as in ``MelodyLSTM``.
    """

    def __init__(self, cell, gradient_precision: str = "float32", **kwargs):
        super().__init__(cell, **kwargs)
        self.gradient_precision = gradient_precision
        if keras.backend.backend() == "tensorflow":
            self.supports_jit = False  # the fast path's kernels have no XLA version

    def get_config(self):
        return {**super().get_config(), "gradient_precision": self.gradient_precision}

    def _fast_path_ok(self, initial_state, mask, training) -> bool:
        cell = self.cell
        lstm = getattr(cell, "lstm", None)
        return (
            type(cell).__name__ == "AttentionLSTMCell"
            and isinstance(lstm, keras.layers.LSTMCell)
            and _tf_cpu_only()
            and initial_state is None
            and mask is None
            and not (self.stateful or self.go_backwards or self.unroll or self.return_state)
            and not (training and (lstm.dropout or lstm.recurrent_dropout))
            and lstm.use_bias
            and lstm.activation in (keras.activations.tanh, ops.tanh)
            and lstm.recurrent_activation in (keras.activations.sigmoid, ops.sigmoid)
            and self.compute_dtype == "float32"
            and cell.attn_size == cell.attn_vec_size == lstm.units
        )

    def call(self, sequences, initial_state=None, mask=None, training=False):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if not self._fast_path_ok(initial_state, mask, training):
            return super().call(
                sequences, initial_state=initial_state, mask=mask, training=training
            )
        import tensorflow as tf

        if kernels.load() is not None:
            outputs = kernels.attention_sequence(
                sequences,
                _attention_weights(self.cell),
                self.cell.attn_length,
                self.gradient_precision,
            )
            return outputs if self.return_sequences else outputs[:, -1]
        # Every step of the cell depends on the one before, so one sequence keeps one core
        # busy; two independent halves of the batch, each in its own loop, keep two.
        batch = sequences.shape[0]
        halves = 2 if batch is not None and batch % 2 == 0 else 1
        weights = _attention_weights(self.cell)
        x = tf.transpose(sequences, [1, 0, 2])
        parts = [
            _tf_attention_lstm(part, weights, self.cell.attn_length)
            for part in (tf.split(x, halves, axis=1) if halves > 1 else [x])
        ]
        outputs = tf.transpose(tf.concat(parts, 1) if halves > 1 else parts[0], [1, 0, 2])
        return outputs if self.return_sequences else outputs[:, -1]
