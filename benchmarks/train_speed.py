"""Seconds per training step of the Melody RNN networks on this machine.

For each configuration the network is built with ``build_model`` (default
hyperparameters, two layers of 128) and trained on random batches of 64
sequences of 430 steps, the padded length of a length-bucketed batch: a
compiled step (``tf.function``) runs the model with dropout, the masked
softmax cross-entropy over the real steps, the gradients and Adam with the
configuration's global-norm clipping. After warm-up the steps of all networks
are timed round-robin, so that load from other processes falls on every
network alike, and the median (and the fastest) step is reported as a markdown
table. ``basic_rnn (plain Keras)`` is the same network built from plain
``keras.layers.LSTM`` layers, the reference for MelodyGen's own layers.

    python benchmarks/train_speed.py [--configs basic_rnn attention_rnn] [--steps 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# (input size, label classes) of each configuration's encoding.
SIZES = {
    "basic_rnn": (38, 38),
    "mono_rnn": (130, 130),
    "lookback_rnn": (120, 40),
    "attention_rnn": (74, 40),
}
BASELINE = "basic_rnn (plain Keras)"
PROPOSED = " (fused layers)"
# Magenta (TF1, LSTMBlockCell) on the same 2-core machine, seconds per step.
MAGENTA = {"basic_rnn": 0.25, "attention_rnn": 1.9}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--steps", type=int, default=20, help="timed steps per network")
    parser.add_argument("--rounds", type=int, default=4, help="round-robin rounds to split them in")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per network")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--length", type=int, default=430, help="padded steps per sequence")
    parser.add_argument("--inter-op", type=int, default=2, help="TF inter-op threads (0: TF's)")
    parser.add_argument("--intra-op", type=int, default=1, help="TF intra-op threads (0: TF's)")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the plain-Keras basic_rnn network"
    )
    parser.add_argument(
        "--no-fused", action="store_true", help="skip the '(fused layers)' variants"
    )
    return parser.parse_args(argv)


def plain_keras_model(input_size: int, num_classes: int, hparams):
    """``build_model``'s network for a configuration without attention, from keras.layers.LSTM."""
    import keras

    inputs = keras.Input(shape=(None, input_size), name="inputs")
    hidden = inputs
    for index, units in enumerate(hparams.rnn_layer_sizes):
        hidden = keras.layers.LSTM(units, return_sequences=True, name=f"rnn_{index}")(hidden)
        if hparams.dropout_keep_prob < 1.0:
            rate = 1.0 - hparams.dropout_keep_prob
            hidden = keras.layers.Dropout(rate, name=f"dropout_{index}")(hidden)
    logits = keras.layers.Dense(num_classes, name="logits")(hidden)
    return keras.Model(inputs, logits, name="plain_keras")


def fused_model(input_size: int, num_classes: int, hparams):
    """``build_model``'s network from ``MelodyLSTMStack`` and ``AttentionRNN`` (same weights)."""
    import keras

    from melodygen.models.layers import AttentionRNN, MelodyLSTM, MelodyLSTMStack
    from melodygen.models.network import AttentionLSTMCell

    rate = 1.0 - hparams.dropout_keep_prob
    sizes = list(hparams.rnn_layer_sizes)
    inputs = keras.Input(shape=(None, input_size), name="inputs")
    hidden = inputs
    if hparams.attn_length:
        cell = AttentionLSTMCell(sizes.pop(0), hparams.attn_length)
        hidden = AttentionRNN(cell, return_sequences=True, name="rnn_0")(hidden)
        if rate > 0:
            hidden = keras.layers.Dropout(rate, name="dropout_0")(hidden)
    if len(sizes) == 1:
        hidden = MelodyLSTM(sizes[0], return_sequences=True, name="rnn_1")(hidden)
    elif sizes:
        hidden = MelodyLSTMStack(sizes, dropout=rate, name="rnn")(hidden)
    if sizes and rate > 0:
        hidden = keras.layers.Dropout(rate, name="dropout")(hidden)
    logits = keras.layers.Dense(num_classes, name="logits")(hidden)
    return keras.Model(inputs, logits, name="melody_rnn_fused")


def uses_fused_layers(model) -> bool:
    from melodygen.models.layers import AttentionRNN, MelodyLSTMStack

    return any(isinstance(layer, (AttentionRNN, MelodyLSTMStack)) for layer in model.layers)


def random_batch(rng, batch_size: int, length: int, input_size: int, num_classes: int):
    """One-hot inputs, labels, and a mask of real steps (lengths within 25% of the padded one)."""
    import numpy as np

    inputs = np.eye(input_size, dtype="float32")[rng.integers(0, input_size, (batch_size, length))]
    labels = rng.integers(0, num_classes, (batch_size, length)).astype("int32")
    lengths = rng.integers(int(0.75 * length), length + 1, batch_size)
    lengths[0] = length
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype("float32")
    return inputs, labels, mask


def make_train_step(model, hparams):
    """A compiled step: masked cross-entropy, gradients, Adam with global-norm clipping."""
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.Adam(
        learning_rate=hparams.learning_rate, global_clipnorm=hparams.clip_norm
    )
    optimizer.build(model.trainable_variables)

    @tf.function(jit_compile=False)
    def train_step(inputs, labels, mask):
        with tf.GradientTape() as tape:
            logits = model(inputs, training=True)
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            loss = tf.reduce_sum(losses * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    return train_step


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np
    import tensorflow as tf

    if args.inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
    if args.intra_op:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op)
    import keras

    from melodygen.models.configs import get_config
    from melodygen.models.network import build_model

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    runs = {}
    names = []
    for name in args.configs:
        names.append(name)
        hparams = get_config(name).hparams
        if not (args.no_fused or uses_fused_layers(build_model(*SIZES[name], hparams))):
            names.append(name + PROPOSED)
        if name == "basic_rnn" and not args.no_baseline:
            names.append(BASELINE)
    for name in names:
        config_name = name.split(" ")[0]
        hparams = get_config(config_name).hparams
        input_size, num_classes = SIZES[config_name]
        if name == BASELINE:
            model = plain_keras_model(input_size, num_classes, hparams)
        elif name.endswith(PROPOSED):
            model = fused_model(input_size, num_classes, hparams)
        else:
            model = build_model(input_size, num_classes, hparams)
        step = make_train_step(model, hparams)
        batches = [
            tuple(
                tf.constant(a)
                for a in random_batch(rng, args.batch_size, args.length, input_size, num_classes)
            )
            for _ in range(2)
        ]
        start = time.perf_counter()
        for index in range(args.warmup):
            step(*batches[index % 2]).numpy()
        print(f"{name}: built and warmed up in {time.perf_counter() - start:.1f} s", flush=True)
        runs[name] = (step, batches, [])

    per_round = max(1, -(-args.steps // args.rounds))
    for _ in range(args.rounds):
        for _name, (step, batches, times) in runs.items():
            for index in range(per_round):
                start = time.perf_counter()
                step(*batches[index % 2]).numpy()
                times.append(time.perf_counter() - start)

    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"\nbatch {args.batch_size} x {args.length} steps, TF threads inter-op {args.inter_op} "
        f"intra-op {args.intra_op}, {os.cpu_count()} CPUs, load average {load}\n"
    )
    print("| network | median s/step | fastest s/step | Magenta s/step |")
    print("|---|---:|---:|---:|")
    for name, (_step, _batches, times) in runs.items():
        magenta = MAGENTA.get(name) or MAGENTA.get(name.removesuffix(PROPOSED))
        magenta = f"{magenta:.2f}" if magenta else ""
        print(f"| {name} | {statistics.median(times):.3f} | {min(times):.3f} | {magenta} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
