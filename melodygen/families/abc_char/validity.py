"""Validity of an ABC model's tunes: moved to :mod:`melodygen.core.validity`, which judges
the tunes of any family whose models write ABC; importable from here as before."""

from __future__ import annotations

from melodygen.core.validity import (
    DEFAULT_BARS,
    DEFAULT_TUNES,
    KEYS,
    QUALITY_SHARE,
    format_validity,
    judge,
    validity_report,
)

__all__ = [
    "DEFAULT_BARS",
    "DEFAULT_TUNES",
    "KEYS",
    "QUALITY_SHARE",
    "format_validity",
    "judge",
    "validity_report",
]
