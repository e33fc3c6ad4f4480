"""Seconds per training step of the Melody RNN networks on this machine.

Two modes:

- ``--data DATASET ...``: the shipped trainer's own path on real data. Each
  dataset (built with ``melodygen dataset build``) gets the network
  ``melodygen train`` builds for it (``build_network``, ``compile_model``),
  fed length-bucketed batches of ``--batch-size`` melodies from its train
  split (``length_bucketed_batches``, ``pad_batch``) through
  ``train_on_batch``, as in ``melodygen train``. This is the measurement the
  targets are about.
- default: random batches of ``--length`` padded steps through a compiled
  step, for each configuration, plus ``basic_rnn (plain Keras)``: the same
  network from plain ``keras.layers.LSTM`` layers, the reference for
  MelodyGen's own layers. ``--tf-loops`` adds each network once more without
  MelodyGen's compiled kernels (what ``MELODYGEN_KERNELS=0`` runs), timed in
  the same rounds, for a side-by-side comparison. ``--bfloat16`` adds each
  network once more trained with ``gradient_precision=bfloat16``.

After warm-up the networks are timed round-robin, so that load from other
processes falls on all alike, and the median (and fastest) step is reported
as a markdown table.

    python benchmarks/train_speed.py --data data/folk_basic_rnn data/folk_attention_rnn
    python benchmarks/train_speed.py [--configs basic_rnn attention_rnn] [--steps 20]
        [--tf-loops] [--bfloat16]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from melodygen.core.train import INTER_OP_THREADS, INTRA_OP_THREADS  # noqa: E402

# (input size, label classes) of each configuration's encoding.
SIZES = {
    "basic_rnn": (38, 38),
    "mono_rnn": (130, 130),
    "lookback_rnn": (121, 40),
    "attention_rnn": (74, 40),
}
BASELINE = "basic_rnn (plain Keras)"
TF_LOOPS = "(TensorFlow loops)"
BFLOAT16 = "(bfloat16 gradients)"
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
    parser.add_argument(
        "--inter-op", type=int, default=INTER_OP_THREADS, help="TF inter-op threads (0: TF's)"
    )
    parser.add_argument(
        "--intra-op", type=int, default=INTRA_OP_THREADS, help="TF intra-op threads (0: TF's)"
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the plain-Keras basic_rnn network"
    )
    parser.add_argument(
        "--data", nargs="+", default=None, metavar="DATASET", help="time real datasets instead"
    )
    parser.add_argument(
        "--tf-loops",
        action="store_true",
        help="also time each network without MelodyGen's compiled kernels (TensorFlow loops)",
    )
    parser.add_argument(
        "--bfloat16",
        action="store_true",
        help="also time each network with --hparams gradient_precision=bfloat16",
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

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    runs = dataset_runs(args, rng) if args.data else random_runs(args, rng)
    timed_round_robin(runs, args)

    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    shape = "real batches" if args.data else f"{args.length} steps"
    print(
        f"\nbatch {args.batch_size} x {shape}, TF threads inter-op {args.inter_op} "
        f"intra-op {args.intra_op}, {os.cpu_count()} CPUs, load average {load}\n"
    )
    print("| network | median s/step | fastest s/step | Magenta s/step |")
    print("|---|---:|---:|---:|")
    for name, (_step, _batches, times) in runs.items():
        own_layers = name != BASELINE and not name.endswith((TF_LOOPS, BFLOAT16))
        magenta = MAGENTA.get(name.split(" ")[0]) if own_layers else None
        magenta = f"{magenta:.2f}" if magenta else ""
        print(f"| {name} | {statistics.median(times):.3f} | {min(times):.3f} | {magenta} |")
    return 0


def dataset_runs(args, rng) -> dict:
    """Per dataset: the trainer's compiled network and a train-split batch source."""
    import keras

    from melodygen.core.batches import length_bucketed_batches, pad_batch
    from melodygen.core.checkpoint import build_network
    from melodygen.families.melody_rnn.dataset import MelodyDataset
    from melodygen.families.melody_rnn.family import compile_model, model_info

    runs = {}
    variants = [(path, precision) for path in args.data for precision in precisions(args)]
    for path, precision in variants:
        dataset = MelodyDataset.open(path)
        info = model_info(dataset, f"batch_size={args.batch_size},gradient_precision={precision}")
        model = build_network(info)
        compile_model(model, info)
        split = dataset.load("train")
        order = length_bucketed_batches(split, args.batch_size, rng)
        batches = [pad_batch(split, indices) for indices in order]
        real = sum(int(split.lengths[indices].max()) for indices in order) / len(order)

        def step(inputs, targets, model=model):
            return model.train_on_batch(inputs, targets)

        start = time.perf_counter()
        for index in range(args.warmup):
            step(*batches[index % len(batches)])
        name = f"{dataset.spec.config} ({Path(path).name}, mean padded length {real:.0f})"
        name += f" {BFLOAT16}" if precision == "bfloat16" else ""
        print(f"{name}: built and warmed up in {time.perf_counter() - start:.1f} s", flush=True)
        keras.utils.set_random_seed(1)
        runs[name] = (step, batches, [])
    return runs


def precisions(args) -> list[str]:
    return ["float32", "bfloat16"] if args.bfloat16 else ["float32"]


def random_runs(args, rng) -> dict:
    """Per configuration: a compiled train step on two random batches."""
    import tensorflow as tf

    from melodygen.families.melody_rnn.configs import get_config
    from melodygen.families.melody_rnn.network import build_model
    from melodygen.nn import kernels

    runs = {}
    names = []
    for name in args.configs:
        names.append(name)
        if name == "basic_rnn" and not args.no_baseline:
            names.append(BASELINE)
        if args.tf_loops:
            names.append(f"{name} {TF_LOOPS}")
        if args.bfloat16:
            names.append(f"{name} {BFLOAT16}")
    for name in names:
        config_name = name.split(" ")[0]
        hparams = get_config(config_name).hparams
        if name.endswith(BFLOAT16):
            hparams = hparams.override("gradient_precision=bfloat16")
        input_size, num_classes = SIZES[config_name]
        # The layers choose their path when the step is traced (the first warm-up step).
        without_kernels = mock.patch.object(kernels, "load", return_value=None)
        with without_kernels if name.endswith(TF_LOOPS) else contextlib.nullcontext():
            if name == BASELINE:
                model = plain_keras_model(input_size, num_classes, hparams)
            else:
                model = build_model(input_size, num_classes, hparams)
            compiled = make_train_step(model, hparams)

            def step(*batch, compiled=compiled):
                return compiled(*batch).numpy()

            batches = [
                tuple(
                    tf.constant(a)
                    for a in random_batch(
                        rng, args.batch_size, args.length, input_size, num_classes
                    )
                )
                for _ in range(2)
            ]
            start = time.perf_counter()
            for index in range(args.warmup):
                step(*batches[index % 2])
        print(f"{name}: built and warmed up in {time.perf_counter() - start:.1f} s", flush=True)
        runs[name] = (step, batches, [])

    return runs


def timed_round_robin(runs: dict, args) -> None:
    """Time ``args.steps`` steps per network, in rounds, cycling through its batches."""
    per_round = max(1, -(-args.steps // args.rounds))
    position = dict.fromkeys(runs, args.warmup)
    for _ in range(args.rounds):
        for name, (step, batches, times) in runs.items():
            for _ in range(per_round):
                batch = batches[position[name] % len(batches)]
                position[name] += 1
                start = time.perf_counter()
                step(*batch)
                times.append(time.perf_counter() - start)


if __name__ == "__main__":
    raise SystemExit(main())
