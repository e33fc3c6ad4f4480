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


def song_name(path: Path, root: Path | None) -> str:
    """A music file's name for the split: its path below ``root``, else its file name."""
    return str(path.relative_to(root)) if root and path.is_relative_to(root) else path.name


def tunebook_song_id(book: str, number: int | str) -> str:
    """The song id of tune ``number`` (its X: field, else its place) of tunebook ``book``: the
    name the tune has as a MIDI file of its own, ``jigs12.mid`` for ``jigs.abc`` X:12, as the
    Nottingham database names its MIDI files. So the ABC and the MIDI form of one tune fall
    in the same split, and models of every family are held out from the same tunes."""
    stem = book[: -len(Path(book).suffix)] if Path(book).suffix else book
    return f"{stem}{number}.mid"


def song_ids(path: Path, root: Path | None, sequences: Sequence) -> list[str]:
    """The song id of each tune in a music file: its name (:func:`song_name`), and for each
    tune of an ABC tunebook :func:`tunebook_song_id`."""
    name = song_name(path, root)
    if len(sequences) == 1:
        return [name]
    return [
        tunebook_song_id(name, seq.reference_number or index + 1)
        for index, seq in enumerate(sequences)
    ]
