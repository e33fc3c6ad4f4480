"""MelodyGen's TensorFlow CPU ops (``kernels.cc``): built on first use, cached, optional.

TensorFlow's own loop runs each LSTM step as some twenty small ops, and on a
CPU their dispatch and separate passes over memory cost more than the
arithmetic. ``kernels.cc`` runs a whole LSTM layer's recurrence in one op (and
its gradient in another), each step a GEMM and one fused pass, with the batch
rows split over threads; the attention layer's the same way; and dropout with
a fast generator, where TensorFlow's Philox draws take half as long as a
layer. The ops are compiled with
the machine's C++ compiler against the installed TensorFlow the first time a
layer needs them (about 20 seconds), into a cache folder keyed by the source,
TensorFlow's version and the CPU, and loaded from there afterwards; ``python -m
melodygen.nn.kernels`` builds them ahead of time (``make setup`` does).

Without a compiler, or with ``MELODYGEN_KERNELS=0``, layers use the
TensorFlow paths in ``layers.py`` instead (the same function, slower), after
one warning that says why.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

SOURCE = Path(__file__).with_name("kernels.cc")
DISABLE_VARIABLE = "MELODYGEN_KERNELS"
CACHE_VARIABLE = "MELODYGEN_CACHE"
# Row chunks that run on their own threads: one per core of the machines the
# project is sized for (see train.INTER_OP_THREADS).
DEFAULT_THREADS = 2


class KernelBuildError(RuntimeError):
    """The ops could not be compiled or loaded here; the message says why."""


def cache_dir() -> Path:
    """Where built ops are kept: $MELODYGEN_CACHE, else $XDG_CACHE_HOME/melodygen."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "melodygen"


def _cpu_flags() -> str:
    """The CPU's feature flags: a kernel built with -march=native must not move to another CPU."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _build_flags() -> list[str]:
    import tensorflow as tf

    return [
        "-shared",
        "-fPIC",
        "-O3",
        "-march=native",
        "-DNDEBUG",
        "-w",
        *tf.sysconfig.get_compile_flags(),
        *tf.sysconfig.get_link_flags(),
    ]


def library_path() -> Path:
    """The cached shared library for this source, TensorFlow build and CPU."""
    import tensorflow as tf

    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), tf.__version__.encode(), " ".join(_build_flags()).encode()):
        digest.update(part)
    digest.update(_cpu_flags().encode())
    digest.update(platform.machine().encode())
    return cache_dir() / f"kernels-{digest.hexdigest()[:16]}.so"


def build(force: bool = False) -> Path:
    """Compile the ops into the cache (unless they are there already) and return the path."""
    target = library_path()
    if target.exists() and not force:
        return target
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not compiler:
        raise KernelBuildError("no C++ compiler found (install g++, or set CXX)")
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"Compiling MelodyGen's CPU kernels into {target} (once, about 20 s)...", file=sys.stderr)
    # Build beside the target and rename, so concurrent processes never load half a file.
    handle, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(handle)
    command = [compiler, str(SOURCE), "-o", partial, *_build_flags()]
    try:
        try:
            result = subprocess.run(command, capture_output=True, text=True)
        except OSError as error:
            raise KernelBuildError(f"could not run the C++ compiler {compiler}: {error}") from None
        if result.returncode != 0:
            last_lines = "\n".join(result.stderr.strip().splitlines()[-15:])
            raise KernelBuildError(f"compiling {SOURCE.name} failed:\n{last_lines}")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return target


@functools.cache
def load():
    """The ops module, or None (with one warning) where the ops cannot be used here."""
    if os.environ.get(DISABLE_VARIABLE, "1") == "0":
        return None
    import tensorflow as tf

    try:
        return tf.load_op_library(str(build()))
    except (KernelBuildError, OSError, tf.errors.NotFoundError) as error:
        warnings.warn(
            f"MelodyGen's CPU kernels are unavailable, so training uses slower "
            f"TensorFlow paths: {error}",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


def lstm_sequence(
    inputs, kernel, recurrent_kernel, bias, h0, c0, gradient_precision: str = "float32"
):
    """One LSTM layer over a batch-major sequence, as ``keras.layers.LSTM`` computes it.

    ``inputs`` is [batch, time, features]; the weights are in Keras' layout
    (gate columns i, f, c, o); ``h0`` and ``c0`` are [batch, units]. Returns
    the outputs [batch, time, units] and the final h and c. Differentiable:
    the recurrence's gradient runs in the kernel; the weight and input
    gradients are big matmuls over every step, which TensorFlow drops from the
    graph where nothing uses them (the inputs' gradient of a first layer).
    ``gradient_precision`` is the dtype those matmuls read their inputs in
    (``"bfloat16"``: faster, float32 sums). Needs ``load()`` to have returned
    the ops.
    """
    import tensorflow as tf

    ops = load()
    if ops is None:
        raise KernelBuildError("MelodyGen's CPU kernels are not loaded")

    @tf.custom_gradient
    def run(x, kernel, recurrent, bias, h0, c0):
        h, h_prev, c, gates, h_last, c_last = ops.melody_lstm_sequence(
            x, kernel, recurrent, bias, h0, c0, num_threads=DEFAULT_THREADS
        )

        def grad(d_h, d_h_last, d_c_last):
            d_h_last = tf.zeros_like(h0) if d_h_last is None else d_h_last
            d_c_last = tf.zeros_like(c0) if d_c_last is None else d_c_last
            d_gates, d_bias, d_h0, d_c0 = ops.melody_lstm_sequence_grad(
                recurrent, c0, c, gates, d_h, d_h_last, d_c_last, num_threads=DEFAULT_THREADS
            )
            d_flat = tf.reshape(d_gates, [-1, tf.shape(d_gates)[-1]])
            x_flat = tf.reshape(x, [-1, tf.shape(x)[-1]])
            h_prev_flat = tf.reshape(h_prev, [-1, tf.shape(h0)[-1]])
            return (
                tf.reshape(_split_rows_matmul(d_flat, kernel, gradient_precision), tf.shape(x)),
                _split_matmul(x_flat, d_flat, gradient_precision),
                _split_matmul(h_prev_flat, d_flat, gradient_precision),
                d_bias,
                d_h0,
                d_c0,
            )

        return (h, h_last, c_last), grad

    return run(inputs, kernel, recurrent_kernel, bias, h0, c0)


def attention_sequence(inputs, weights, attn_length: int, gradient_precision: str = "float32"):
    """``network.AttentionLSTMCell`` over a batch-major sequence from zero states.

    ``inputs`` is [batch, time, features]; ``weights`` the cell's eleven
    weights in ``layers._attention_weights`` (input projection and its bias, the
    LSTM's kernel, recurrent kernel and bias, attention W and v, query kernel
    and bias, output kernel and bias). Returns the outputs [batch, time,
    attn_size], as ``keras.layers.RNN(cell)`` computes them. Differentiable:
    the recurrence and the attention window run in the kernels, the weight
    gradients are big matmuls over every step, reading their inputs in
    ``gradient_precision``. Needs ``load()``.
    """
    import tensorflow as tf

    ops = load()
    if ops is None:
        raise KernelBuildError("MelodyGen's CPU kernels are not loaded")

    @tf.custom_gradient
    def run(x, *args):
        projection, projection_bias, kernel, recurrent, bias = args[:5]
        attn_w, attn_v, query_kernel, query_bias, output_kernel, output_bias = args[5:]
        features = x.shape[-1]
        projection_x, projection_attn = projection[:features], projection[features:]
        x_flat = tf.reshape(x, [-1, features])
        x_proj = tf.reshape(tf.matmul(x_flat, projection_x) + projection_bias, tf.shape(x))
        (out, feat, xp, attns_prev, h_prev, c, h, gates, attns, query, alpha) = (
            ops.melody_attention_sequence(
                x_proj,
                projection_attn,
                kernel,
                recurrent,
                bias,
                attn_w,
                attn_v,
                query_kernel,
                query_bias,
                output_kernel,
                output_bias,
                attn_length=attn_length,
                num_threads=DEFAULT_THREADS,
            )
        )

        def grad(d_above):
            d_gates, d_xp, d_query, d_out, d_feat, d_v = ops.melody_attention_sequence_grad(
                projection_attn,
                kernel,
                recurrent,
                attn_w,
                attn_v,
                query_kernel,
                output_kernel,
                out,
                feat,
                c,
                gates,
                query,
                alpha,
                d_above,
                num_threads=DEFAULT_THREADS,
            )

            def flat(value):
                return tf.reshape(value, [-1, value.shape[-1]])

            d_xp, d_gates, d_query, d_out = map(flat, (d_xp, d_gates, d_query, d_out))
            h_flat, c_flat = flat(h), flat(c)
            d_projection = tf.concat(
                [
                    _split_matmul(x_flat, d_xp, gradient_precision),
                    _split_matmul(flat(attns_prev), d_xp, gradient_precision),
                ],
                0,
            )
            d_query_kernel = tf.concat(
                [
                    _split_matmul(c_flat, d_query, gradient_precision),
                    _split_matmul(h_flat, d_query, gradient_precision),
                ],
                0,
            )
            d_output_kernel = tf.concat(
                [
                    _split_matmul(h_flat, d_out, gradient_precision),
                    _split_matmul(flat(attns), d_out, gradient_precision),
                ],
                0,
            )
            return [
                tf.reshape(tf.matmul(d_xp, projection_x, transpose_b=True), tf.shape(x)),
                d_projection,
                _column_sums(d_xp),
                _split_matmul(flat(xp), d_gates, gradient_precision),
                _split_matmul(flat(h_prev), d_gates, gradient_precision),
                _column_sums(d_gates),
                _split_matmul(flat(out), flat(d_feat), gradient_precision),
                d_v,
                d_query_kernel,
                _column_sums(d_query),
                d_output_kernel,
                _column_sums(d_out),
            ]

        return out, grad

    return run(inputs, *weights)


def _column_sums(values):
    """Sums over rows as a matmul by ones: TensorFlow's one-thread column reduce is far slower."""
    import tensorflow as tf

    return tf.matmul(tf.ones([1, tf.shape(values)[0]]), values)[0]


def dropout(inputs, rate: float, seed):
    """Dropout of ``inputs`` [batch, ...] at ``rate``, as ``keras.random.dropout`` computes it.

    Each element is kept with probability 1 - ``rate`` (rounded to 1/65536)
    and scaled by 1 / (1 - ``rate``); ``seed`` is two int64 values, and the
    same seed gives the same mask. Differentiable. Needs ``load()``.
    """
    import tensorflow as tf

    ops = load()
    if ops is None:
        raise KernelBuildError("MelodyGen's CPU kernels are not loaded")

    def apply(values):
        return ops.melody_dropout(values, seed, rate=float(rate), num_threads=DEFAULT_THREADS)

    @tf.custom_gradient
    def run(x):
        return apply(x), apply  # the same mask again: the gradient of dropout

    return run(inputs)


def _split_rows_matmul(a, b, precision: str = "float32"):
    """a @ b^T over many rows as two halves, so TensorFlow's two inter-op threads share it."""
    import tensorflow as tf

    a, b = _as_precision(a, precision), _as_precision(b, precision)
    half = tf.shape(a)[0] // 2
    product = tf.concat(
        [tf.matmul(a[:half], b, transpose_b=True), tf.matmul(a[half:], b, transpose_b=True)], 0
    )
    return tf.cast(product, tf.float32)


def _split_matmul(a, b, precision: str = "float32"):
    """a^T @ b over many rows as two halves, so TensorFlow's two inter-op threads share it."""
    import tensorflow as tf

    a, b = _as_precision(a, precision), _as_precision(b, precision)
    half = tf.shape(a)[0] // 2
    # Each half's product is cast back before the sum: only the inputs are rounded.
    return tf.cast(tf.matmul(a[:half], b[:half], transpose_a=True), tf.float32) + tf.cast(
        tf.matmul(a[half:], b[half:], transpose_a=True), tf.float32
    )


def _as_precision(values, precision: str):
    import tensorflow as tf

    return values if precision == "float32" else tf.cast(values, tf.bfloat16)


def main() -> int:
    """Build the ops ahead of time (``make setup`` calls this); say where they are."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        path = build()
    except KernelBuildError as error:
        print(f"MelodyGen's CPU kernels not built, training will use TensorFlow paths: {error}")
        return 0
    print(f"MelodyGen's CPU kernels: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
