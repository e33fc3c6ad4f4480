"""Batches of variable-length sequences, shared by the sequence families.

A split stores its examples back to back (``inputs`` and ``targets`` rows, ``offsets``
where each example starts). Batches group examples of similar length (as Magenta pads
each batch to its longest melody, sorting first wastes far fewer padded steps) and are
built with NumPy, so the training loop runs on any Keras backend. Targets are packed
integers with the label in column 0, -1 on padding (the losses mask it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

BUCKET_POOL = 50  # batches' worth of examples sorted together: length-alike, still shuffled
# On backends that compile per input shape, padded lengths are rounded up to this multiple:
# melodies of up to 512 steps then need at most 4 compiled programs per batch size.
COMPILED_STEP_MULTIPLE = 128


class SequenceSplit(Protocol):
    """Examples stored back to back: what the batch functions read."""

    inputs: np.ndarray
    targets: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int: ...

    @property
    def lengths(self) -> np.ndarray: ...


def pad_batch(
    split: SequenceSplit, indices: np.ndarray, shape: BatchShape | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (float32, zero-padded) and packed targets (int32, label -1 on padding).

    ``shape`` rounds the padded length up and fills the batch to a fixed number
    of rows (padding rows are all masked), so a backend that compiles one
    program per input shape compiles a handful, not one per melody length.
    """
    shape = shape or BatchShape()
    lengths = split.lengths[indices]
    steps = shape.steps(int(lengths.max()))
    rows = max(len(indices), shape.rows or 0)
    inputs = np.zeros((rows, steps, split.inputs.shape[1]), np.float32)
    targets = np.full((rows, steps, split.targets.shape[1]), -1, np.int32)
    targets[:, :, 1:] = 0  # padded event classes must still be valid indices
    for row, (index, length) in enumerate(zip(indices, lengths, strict=True)):
        start = split.offsets[index]
        inputs[row, :length] = split.inputs[start : start + length]
        targets[row, :length] = split.targets[start : start + length]
    return inputs, targets


@dataclass(frozen=True)
class BatchShape:
    """How batches are padded: lengths to a multiple of ``step_multiple``, ``rows`` rows."""

    step_multiple: int = 1
    rows: int | None = None

    def steps(self, longest: int) -> int:
        return -(-longest // self.step_multiple) * self.step_multiple

    @classmethod
    def for_backend(cls, batch_size: int) -> BatchShape:
        """Exact shapes on TensorFlow; on JAX (one XLA program per shape) a few fixed ones."""
        import keras

        if keras.backend.backend() == "tensorflow":
            return cls()
        return cls(step_multiple=COMPILED_STEP_MULTIPLE, rows=batch_size)


def length_bucketed_batches(
    split: SequenceSplit, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """One pass over the split as index batches of similar length, in random order."""
    order = rng.permutation(len(split))
    pool = batch_size * BUCKET_POOL
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(split.lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def training_batches(
    split: SequenceSplit, batch_size: int, seed: int, shape: BatchShape | None = None
) -> Iterator[tuple]:
    """Endless batches, reshuffled every pass over the data (shaped for the backend by default)."""
    shape = shape or BatchShape.for_backend(batch_size)
    rng = np.random.default_rng(seed)
    while True:
        for indices in length_bucketed_batches(split, batch_size, rng):
            yield pad_batch(split, indices, shape)


def evaluation_batches(
    split: SequenceSplit, batch_size: int, shape: BatchShape | None = None
) -> list[tuple]:
    """The whole split once, sorted by length so little is padded (shaped for the backend)."""
    shape = shape or BatchShape.for_backend(batch_size)
    order = np.argsort(split.lengths, kind="stable")
    return [
        pad_batch(split, order[i : i + batch_size], shape) for i in range(0, len(order), batch_size)
    ]
