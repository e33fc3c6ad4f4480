"""The ``abc_transformer`` network: a metadata encoder and a tune-body decoder.

Pre-norm Transformer layers (layer norm before each attention and feed-forward, residual
around it, a final norm), written with ``keras.ops`` only, so the same code trains under
JAX on a GPU and runs under TensorFlow on a CPU, and weights move between them:

- encoder: the ``META_SLOTS`` metadata ids (:mod:`~.metadata`) -> token embedding + a
  learned embedding per slot -> ``encoder_layers`` x (self-attention, feed-forward);
  ``<pad>`` slots (missing title words) are masked out;
- decoder: ``<s>`` and the body's BPE ids -> token embedding + learned position embedding
  (``max_tokens + 1`` positions) -> ``decoder_layers`` x (causal self-attention, attention
  to the encoder's output, feed-forward) -> the next token's logits.

Not keras-hub's ``TransformerEncoder``/``TransformerDecoder``: keras-hub 0.32 (the only
version the package index offers) requires tensorflow-text 2.21, which requires
TensorFlow 2.21 and would replace the pinned 2.20. Nor ``keras.layers.MultiHeadAttention``:
its public call takes the key and value *inputs* and projects them every time, so a
decoder step would re-project the whole prefix; caching the projected keys and values
needs its private sublayers. :class:`Attention` is that layer in 40 lines, with the
projections and the attention as separate methods, so generation computes each
position's keys and values once (:meth:`BodyDecoder.step`), each row at its own position.
"""

from __future__ import annotations

import keras
from keras import ops

from melodygen.families.abc_transformer.configs import META_SLOTS, HParams
from melodygen.families.abc_transformer.metadata import PAD

MASKED = -1e9
"""The score of a masked position: softmax gives it zero weight, and a row with every
position masked (a padding row) stays finite."""


def _einsum(equation: str, shape: tuple, bias: str, name: str) -> keras.layers.EinsumDense:
    return keras.layers.EinsumDense(equation, output_shape=shape, bias_axes=bias, name=name)


class Attention(keras.layers.Layer):
    """Multi-head scaled dot-product attention, its keys and values computable apart.

    Shapes: queries, keys and values are [batch, positions, heads, head_size]; masks are
    booleans broadcast to [batch, heads, queries, keys] (True: may attend).
    """

    def __init__(self, heads: int, size: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.heads, self.size, self.head_size = heads, size, size // heads
        shape = (None, heads, self.head_size)
        self.query = _einsum("btd,dhk->bthk", shape, "hk", "query")
        self.key = _einsum("btd,dhk->bthk", shape, "hk", "key")
        self.value = _einsum("btd,dhk->bthk", shape, "hk", "value")
        self.out = _einsum("bthk,hkd->btd", (None, size), "d", "output")

    def build(self, inputs_shape=None, context_shape=None, mask_shape=None) -> None:
        for dense in (self.query, self.key, self.value):
            dense.build((None, None, self.size))
        self.out.build((None, None, self.heads, self.head_size))
        self.built = True

    def keys_values(self, context):
        """Keys and values of ``context`` [batch, positions, size]."""
        return self.key(context), self.value(context)

    def attend(self, inputs, keys, values, mask):
        """``inputs`` [batch, queries, size] attending to keys and values -> [batch, queries,
        size]."""
        queries = self.query(inputs) * (self.head_size**-0.5)
        scores = ops.einsum("bqhk,bshk->bhqs", queries, keys)
        weights = ops.softmax(ops.where(mask, scores, MASKED), axis=-1)
        return self.out(ops.einsum("bhqs,bshk->bqhk", weights, values))

    def call(self, inputs, context, mask):
        keys, values = self.keys_values(context)
        return self.attend(inputs, keys, values, mask)


class FeedForward(keras.layers.Layer):
    """Dense(feed_forward_size, GELU) -> Dense(size), position by position."""

    def __init__(self, size: int, hidden: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.size = size
        self.inner = keras.layers.Dense(hidden, activation="gelu", name="inner")
        self.outer = keras.layers.Dense(size, name="outer")

    def build(self, inputs_shape=None) -> None:
        self.inner.build((None, None, self.size))
        self.outer.build((None, None, self.inner.units))
        self.built = True

    def call(self, inputs):
        return self.outer(self.inner(inputs))


def _norm(name: str) -> keras.layers.LayerNormalization:
    return keras.layers.LayerNormalization(epsilon=1e-5, name=name)


class EncoderBlock(keras.layers.Layer):
    """Self-attention then feed-forward, each pre-normed with a residual."""

    def __init__(self, hparams: HParams, **kwargs) -> None:
        super().__init__(**kwargs)
        size = hparams.embedding_size
        self.size = size
        self.attention_norm = _norm("attention_norm")
        self.attention = Attention(hparams.heads, size, name="attention")
        self.feed_forward_norm = _norm("feed_forward_norm")
        self.feed_forward = FeedForward(size, hparams.feed_forward_size, name="feed_forward")
        self.dropout = keras.layers.Dropout(hparams.dropout)

    def build(self, inputs_shape=None, mask_shape=None) -> None:
        shape = (None, None, self.size)
        for layer in (self.attention_norm, self.attention, self.feed_forward_norm):
            layer.build(shape)
        self.feed_forward.build(shape)
        self.built = True

    def call(self, inputs, mask, training=False):
        normed = self.attention_norm(inputs)
        x = inputs + self.dropout(self.attention(normed, normed, mask), training=training)
        normed = self.feed_forward_norm(x)
        return x + self.dropout(self.feed_forward(normed), training=training)


class DecoderBlock(keras.layers.Layer):
    """Causal self-attention, attention to the encoder, feed-forward; pre-normed."""

    def __init__(self, hparams: HParams, **kwargs) -> None:
        super().__init__(**kwargs)
        size = hparams.embedding_size
        self.size = size
        self.self_norm = _norm("self_norm")
        self.self_attention = Attention(hparams.heads, size, name="self_attention")
        self.cross_norm = _norm("cross_norm")
        self.cross_attention = Attention(hparams.heads, size, name="cross_attention")
        self.feed_forward_norm = _norm("feed_forward_norm")
        self.feed_forward = FeedForward(size, hparams.feed_forward_size, name="feed_forward")
        self.dropout = keras.layers.Dropout(hparams.dropout)

    def build(self, inputs_shape=None, *shapes, **named) -> None:
        shape = (None, None, self.size)
        for layer in (self.self_norm, self.self_attention, self.cross_norm, self.cross_attention):
            layer.build(shape)
        self.feed_forward_norm.build(shape)
        self.feed_forward.build(shape)
        self.built = True

    def call(self, inputs, encoded, self_mask, cross_mask, training=False):
        normed = self.self_norm(inputs)
        x = inputs + self.dropout(self.self_attention(normed, normed, self_mask), training=training)
        normed = self.cross_norm(x)
        attended = self.cross_attention(normed, encoded, cross_mask)
        x = x + self.dropout(attended, training=training)
        normed = self.feed_forward_norm(x)
        return x + self.dropout(self.feed_forward(normed), training=training)

    def step(self, inputs, cache, cross, self_mask, cross_mask, here):
        """One position [batch, 1, size] with this block's cache [2, batch, steps, heads,
        head_size] (keys, values; each row's new position's go in where ``here`` [batch,
        steps, 1, 1] is True: its own position) and the encoder's keys and values
        ``cross``; returns the output and the new position's keys and values [2, batch, 1,
        heads, head_size]."""
        normed = self.self_norm(inputs)
        key, value = self.self_attention.keys_values(normed)
        keys = ops.where(here, key, cache[0])
        values = ops.where(here, value, cache[1])
        x = inputs + self.self_attention.attend(normed, keys, values, self_mask)
        x = x + self.cross_attention.attend(self.cross_norm(x), cross[0], cross[1], cross_mask)
        x = x + self.feed_forward(self.feed_forward_norm(x))
        return x, ops.stack([key, value])


class MetaEncoder(keras.layers.Layer):
    """Metadata ids [batch, META_SLOTS] -> encodings [batch, META_SLOTS, size]."""

    def __init__(self, vocab_size: int, hparams: HParams, **kwargs) -> None:
        super().__init__(**kwargs)
        self.size = size = hparams.embedding_size
        self.embedding = keras.layers.Embedding(vocab_size, size, name="embedding")
        self.slots = keras.layers.Embedding(META_SLOTS, size, name="slots")
        self.blocks = [
            EncoderBlock(hparams, name=f"block_{i}") for i in range(hparams.encoder_layers)
        ]
        self.norm = _norm("norm")
        self.dropout = keras.layers.Dropout(hparams.dropout)

    def build(self, meta_shape=None) -> None:
        self.embedding.build((None, META_SLOTS))
        self.slots.build((META_SLOTS,))
        for block in self.blocks:
            block.build((None, META_SLOTS, self.size))
        self.norm.build((None, META_SLOTS, self.size))
        self.built = True

    def call(self, meta, training=False):
        x = self.embedding(meta) + self.slots(ops.arange(META_SLOTS))[None]
        x = self.dropout(x, training=training)
        mask = encoder_mask(meta)
        for block in self.blocks:
            x = block(x, mask, training=training)
        return self.norm(x)


def encoder_mask(meta):
    """[batch, 1, 1, META_SLOTS]: the slots that hold a token (not ``<pad>``)."""
    return ops.not_equal(meta, PAD)[:, None, None, :]


class BodyDecoder(keras.layers.Layer):
    """Body ids [batch, steps] (``<s>`` first) and the encoder's output -> logits [batch,
    steps, vocab_size] of each next token."""

    def __init__(self, vocab_size: int, hparams: HParams, **kwargs) -> None:
        super().__init__(**kwargs)
        self.size = size = hparams.embedding_size
        self.vocab_size = vocab_size
        self.embedding = keras.layers.Embedding(vocab_size, size, name="embedding")
        self.positions = keras.layers.Embedding(hparams.max_tokens + 1, size, name="positions")
        self.last_position = hparams.max_tokens
        self.blocks = [
            DecoderBlock(hparams, name=f"block_{i}") for i in range(hparams.decoder_layers)
        ]
        self.norm = _norm("norm")
        self.logits = keras.layers.Dense(vocab_size, name="logits")
        self.dropout = keras.layers.Dropout(hparams.dropout)

    def build(self, body_shape=None, encoded_shape=None, meta_shape=None) -> None:
        self.embedding.build((None, None))
        self.positions.build((None,))
        for block in self.blocks:
            block.build((None, None, self.size))
        self.norm.build((None, None, self.size))
        self.logits.build((None, None, self.size))
        self.built = True

    def call(self, body, encoded, meta, training=False):
        length = ops.shape(body)[1]
        steps = ops.arange(length)
        x = self.embedding(body) + self.positions(self._table_positions(steps))[None]
        x = self.dropout(x, training=training)
        causal = ops.greater_equal(steps[:, None], steps[None, :])[None, None]
        cross_mask = encoder_mask(meta)
        for block in self.blocks:
            x = block(x, encoded, causal, cross_mask, training=training)
        return self.logits(self.norm(x))

    def _table_positions(self, steps):
        """Positions clipped to the table's last row (``max_tokens``). A body holds at most
        ``<s>`` and ``max_tokens`` tokens, so only padding lies past the table: a batch
        padded to a compiled length (JAX rounds lengths up to a multiple of 128 steps) or
        a padding row. Read unclipped, those positions are out of range: JAX's gather
        gives NaN, which the attention's zero weights (0 x NaN) carry into every real
        position of the batch, and TensorFlow raises. Clipped, padding reads the last
        row, and is masked as before (causal attention: no real position sees it)."""
        return ops.minimum(steps, self.last_position)

    # Generation: one position at a time, keys and values cached -------------------------

    def cross_cache(self, encoded):
        """Every block's keys and values of the encoder's output: [layers, 2, batch,
        META_SLOTS, heads, head_size], computed once per tune."""
        return ops.stack(
            [ops.stack(block.cross_attention.keys_values(encoded)) for block in self.blocks]
        )

    def empty_cache(self, batch: int, steps: int):
        """Room for the keys and values of ``steps`` positions: [layers, 2, batch, steps,
        heads, head_size], zeros."""
        attention = self.blocks[0].self_attention
        shape = (len(self.blocks), 2, batch, steps, attention.heads, attention.head_size)
        return ops.zeros(shape, "float32")

    def step(self, ids, index, cache, cross, meta):
        """The logits [batch, vocab_size] after token ``ids`` [batch] at position ``index``
        (``<s>`` is at 0): one position per row [batch] (rows rewound to an earlier bar are
        behind the others), or a scalar for all. Returns them with the cache holding each
        row's keys and values at its position. A row attends to its own positions up to
        ``index`` only, so what the cache holds after them (a rewound row's old bar, zeros)
        is never read, and is overwritten as the row writes on."""
        batch = ops.shape(ids)[0]
        index = ops.broadcast_to(ops.reshape(ops.cast(index, "int32"), (-1,)), (batch,))
        x = self.embedding(ids[:, None]) + self.positions(self._table_positions(index))[:, None]
        steps = ops.arange(ops.shape(cache)[3])
        self_mask = ops.less_equal(steps[None, :], index[:, None])[:, None, None, :]
        here = ops.equal(steps[None, :], index[:, None])[:, :, None, None]
        cross_mask = encoder_mask(meta)
        added = []
        for layer, block in enumerate(self.blocks):
            x, keys_values = block.step(x, cache[layer], cross[layer], self_mask, cross_mask, here)
            added.append(keys_values)
        cache = ops.where(here[None, None], ops.stack(added), cache)
        return self.logits(self.norm(x))[:, 0], cache


def build_model(body_vocab: int, meta_vocab: int, hparams: HParams) -> keras.Model:
    """``[meta [batch, META_SLOTS], body [batch, steps]]`` (int32) -> logits [batch, steps,
    body_vocab]."""
    meta = keras.Input(shape=(META_SLOTS,), dtype="int32", name="meta")
    body = keras.Input(shape=(None,), dtype="int32", name="body")
    encoded = MetaEncoder(meta_vocab, hparams, name="encoder")(meta)
    logits = BodyDecoder(body_vocab, hparams, name="decoder")(body, encoded, meta)
    return keras.Model([meta, body], logits, name="abc_transformer")


def learning_rate(hparams: HParams):
    """Adam's rate: linear warmup to ``learning_rate`` over ``warmup_steps``, then constant."""
    if hparams.warmup_steps == 0:
        return hparams.learning_rate
    return Warmup(hparams.learning_rate, hparams.warmup_steps)


class Warmup(keras.optimizers.schedules.LearningRateSchedule):
    """``peak * min(1, (step + 1) / warmup)``: the optimizer's step counter is saved with
    its state, so a resumed run goes on where it was."""

    def __init__(self, peak: float, warmup: int) -> None:
        self.peak, self.warmup = float(peak), int(warmup)

    def __call__(self, step):
        fraction = ops.minimum(1.0, (ops.cast(step, "float32") + 1.0) / self.warmup)
        return self.peak * fraction

    def get_config(self) -> dict:
        return {"peak": self.peak, "warmup": self.warmup}
