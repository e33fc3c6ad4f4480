"""A tune's dance type (jig, reel, hornpipe, ...): from its ``R:`` field, else its source.

The tunebooks say it in different ways, so each tune's type is found by the first of:

1. ``R:`` (``R:double jig``, ``R:Slipjig``, ``R:Lancashire Clog``), normalised to
   :data:`DANCE_TYPES` by :data:`ALIASES`; an ``R:`` outside them (walkaround, gavotte)
   gives no type, the source is not asked over it;
2. the file: Nottingham's books are by type (``jigs.abc``, ``reelsa-c.abc``, ``hpps.abc``,
   ``slip.abc``, ``waltzes.abc``; ``ashover``, ``morris``, ``playford`` and ``xmas`` are
   mixed) and Ryan's Mammoth Collection names each file after its tune and type
   (``AcrobatsHornpipe.abc``): :data:`FILE_TYPES`;
3. the section of the book: O'Neill's Music of Ireland (``oneills1850/``) is in sections by
   tune number (airs, jigs, slip jigs, reels, hornpipes, marches): :data:`SECTIONS`;
4. the title, when it ends in a type ("Miss Brown's Reel", "Soldier's Joy Hornpipe"): Aird's
   Airs, the Nottingham mixed books and miscFolk name many tunes so.

Otherwise the tune has no type, which the encoder reads as "unknown".
"""

from __future__ import annotations

import re
from pathlib import Path

from melodygen.io.abc import AbcTune

DANCE_TYPES = (
    "jig",
    "reel",
    "hornpipe",
    "slip jig",
    "strathspey",
    "waltz",
    "polka",
    "march",
    "air",
)
"""The types a tune may have: what the data supports with at least a few dozen tunes."""

ALIASES = {
    **{name: name for name in DANCE_TYPES},
    "jigs": "jig",
    "double jig": "jig",
    "single jig": "jig",
    "slide": "jig",  # a Kerry slide is a single jig in 12/8
    "slipjig": "slip jig",
    "slip jigs": "slip jig",
    "hop jig": "slip jig",
    "reels": "reel",
    "hornpipes": "hornpipe",
    "clog": "hornpipe",
    "lancashire clog": "hornpipe",
    "clog hornpipe": "hornpipe",
    "strathspeys": "strathspey",
    "strathsy": "strathspey",  # Aird's abbreviation
    "fling": "strathspey",
    "highland fling": "strathspey",
    "waltzes": "waltz",
    "valse": "waltz",
    "polkas": "polka",
    "marches": "march",
    "quickstep": "march",
    "slow march": "march",
    "airs": "air",
    "slow air": "air",
}
"""Spellings of the types (lower case, single spaces) -> the type."""

FILE_TYPES = (
    (re.compile(r"^reels"), "reel"),
    (re.compile(r"^jigs$"), "jig"),
    (re.compile(r"^hpps$"), "hornpipe"),
    (re.compile(r"^slip$"), "slip jig"),
    (re.compile(r"^waltzes$"), "waltz"),
    (re.compile(r"slipjig$"), "slip jig"),
    (re.compile(r"[a-z]jig$"), "jig"),
    (re.compile(r"[a-z]reel$"), "reel"),
    (re.compile(r"[a-z](hornpipe|clog)$"), "hornpipe"),
    (re.compile(r"[a-z](strathspey|fling)$"), "strathspey"),
    (re.compile(r"[a-z]waltz$"), "waltz"),
    (re.compile(r"[a-z]polka$"), "polka"),
    (re.compile(r"[a-z]march$"), "march"),
)
"""(pattern of a file's lower-cased stem, its tunes' type), the first match wins."""

SECTIONS = {
    "oneills1850": (
        (1, 625, "air"),
        (701, 1115, "jig"),
        (1116, 1175, "slip jig"),
        (1176, 1555, "reel"),
        (1556, 1780, "hornpipe"),
        (1801, 1850, "march"),
    ),
}
"""Folder -> (first, last tune number, type) of the book's sections; O'Neill's 626-700
(O'Carolan's tunes) and 1781-1800 (long dances) have no type of the list."""

HOW = ("R:", "R: other", "file", "section", "title", "none")
"""Where a tune's type came from, in the order they are asked ("R: other": an ``R:`` that
is none of the types)."""


def normalise(text: str | None) -> str | None:
    """An ``R:`` value or a request's dance type as one of :data:`DANCE_TYPES`, or None."""
    if not text:
        return None
    words = " ".join(re.sub(r"[^a-z ]", " ", text.lower().replace("-", " ")).split())
    return ALIASES.get(words)


def from_title(title: str) -> str | None:
    """The type a title ends in ("The Silver Spear Reel" -> reel), or None."""
    words = re.sub(r"[^a-z ]", " ", title.lower().replace("'", "")).split()
    for count in (2, 1):
        if len(words) >= count and " ".join(words[-count:]) in ALIASES:
            return ALIASES[" ".join(words[-count:])]
    return None


def from_file(path: Path) -> str | None:
    """The type of every tune of a tunebook named by type (see :data:`FILE_TYPES`)."""
    stem = path.stem.lower()
    for pattern, name in FILE_TYPES:
        if pattern.search(stem):
            return name
    return None


def from_section(path: Path, reference: str) -> str | None:
    """The type of tune number ``reference`` in a book in sections (:data:`SECTIONS`)."""
    sections = SECTIONS.get(path.parent.name)
    if not sections or not reference.strip().isdigit():
        return None
    number = int(reference)
    for first, last, name in sections:
        if first <= number <= last:
            return name
    return None


def dance_type(tune: AbcTune, path: Path) -> tuple[str | None, str]:
    """The tune's type and where it came from (one of :data:`HOW`)."""
    if tune.rhythm:
        name = normalise(tune.rhythm)
        return name, "R:" if name else "R: other"
    for how, found in (
        ("file", lambda: from_file(path)),
        ("section", lambda: from_section(path, tune.reference)),
        ("title", lambda: from_title(tune.title)),
    ):
        name = found()
        if name is not None:
            return name, how
    return None, "none"
