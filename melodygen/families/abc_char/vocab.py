"""The character vocabulary of an ``abc_char`` model: built from training text only.

Id 0 is the end-of-tune marker (``<end>``): a tune is read as ``<end> text <end>``, so
the network starts every tune from the same input and learns where tunes end. Id 1 is
``<unk>``, the id of a character the training text never held (a held-out tune's, a
primer's): it is counted and reported, never dropped, and the network, never trained to
predict it, gives it a very low probability, so a held-out figure is honest about it.
The characters follow in code-point order. The vocabulary is saved in ``dataset.json``
and in the model's ``melodygen.json``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

END = 0
UNK = 1
SPECIAL = ("<end>", "<unk>")


@dataclass(frozen=True)
class Vocabulary:
    """Characters <-> ids (see the module docstring)."""

    chars: tuple[str, ...]
    """The characters, in id order from id 2."""

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Vocabulary:
        seen = set()
        for text in texts:
            seen.update(text)
        return cls(tuple(sorted(seen)))

    @property
    def size(self) -> int:
        return len(SPECIAL) + len(self.chars)

    @property
    def index(self) -> dict[str, int]:
        return {char: i + len(SPECIAL) for i, char in enumerate(self.chars)}

    def encode(self, text: str, unknown: Counter | None = None) -> np.ndarray:
        """Ids of ``text`` (no markers); characters outside the vocabulary become ``UNK``
        and are counted in ``unknown``."""
        index = self.index
        ids = np.empty(len(text), np.int32)
        for position, char in enumerate(text):
            found = index.get(char)
            if found is None:
                found = UNK
                if unknown is not None:
                    unknown[char] += 1
            ids[position] = found
        return ids

    def tune_ids(self, text: str, unknown: Counter | None = None) -> np.ndarray:
        """``<end> text <end>``: a tune as the network reads it (inputs are ids[:-1],
        targets ids[1:])."""
        return np.concatenate([[END], self.encode(text, unknown), [END]]).astype(np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; the markers are left out (``<unk>`` is written as U+FFFD)."""
        chars = []
        for value in ids:
            value = int(value)
            if value >= len(SPECIAL):
                chars.append(self.chars[value - len(SPECIAL)])
            elif value == UNK:
                chars.append("\ufffd")
        return "".join(chars)

    def unknown_in(self, text: str) -> Counter:
        """The characters of ``text`` outside the vocabulary, with their counts."""
        index = self.index
        return Counter(char for char in text if char not in index)

    def to_list(self) -> list[str]:
        return list(self.chars)


def describe_unknown(counts: Counter, most: int = 12) -> str:
    """``'#' x2, '&' x1`` (the commonest first), for summaries and notices."""
    parts = [f"{char!r} x{count}" for char, count in counts.most_common(most)]
    if len(counts) > most:
        parts.append(f"and {len(counts) - most} more")
    return ", ".join(parts)
