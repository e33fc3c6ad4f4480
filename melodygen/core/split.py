"""The deterministic split by song, shared by every family's datasets.

A song goes to the held-out split when the hash of its name falls below the held-out
share, whatever family builds the dataset, on whatever machine, in whatever order the
files are read: so a held-out figure is on songs no model of any family trained on, and
bits per note compares families on the same songs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

SPLITS = ("train", "eval")


def song_is_eval(song_id: str, eval_ratio: float) -> bool:
    """Deterministic split: a song goes to eval when its name hashes below ``eval_ratio``."""
    digest = hashlib.sha1(song_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < eval_ratio


def song_ids(path: Path, root: Path | None, sequences: Sequence) -> list[str]:
    """The name of each song in a music file: its path below ``root`` (else its file name),
    and in an ABC tunebook, each tune's reference number after a ``#``."""
    name = str(path.relative_to(root)) if root and path.is_relative_to(root) else path.name
    if len(sequences) == 1:
        return [name]
    # An ABC tunebook: each tune is a song of its own.
    return [f"{name}#{seq.reference_number or index + 1}" for index, seq in enumerate(sequences)]
