"""Meters (time signatures) on MelodyGen's grid of sixteenth-note steps.

Melodies are event lists with one step per sixteenth note whatever the meter; a meter
only says where the bar lines fall (every ``steps_per_bar`` steps: 16 in 4/4, 12 in 3/4
and 6/8, 8 in 2/4) and how bars group into beats. The Melody RNN networks themselves
have no notion of meter: their lookback distances (16 and 32 steps) and step counters
are those of 4/4, as in Magenta (see the README, "Meters").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from melodygen.errors import MelodyGenError

__all__ = ["COMMON_METERS", "FOUR_FOUR", "STEPS_PER_WHOLE", "Meter", "MeterError", "parse_meter"]

STEPS_PER_WHOLE = 16
"""Sixteenth-note steps in a whole note."""
_METER = re.compile(r"^\s*(?P<numerator>[0-9]{1,4})\s*/\s*(?P<denominator>[0-9]{1,4})\s*$")
"""At most 4 digits each: no meter needs more, and Python refuses to read 4,300."""


class MeterError(MelodyGenError):
    """A time signature that cannot be laid on the sixteenth-note grid."""


@dataclass(frozen=True)
class Meter:
    """A time signature such as 4/4 or 6/8, on the sixteenth-note grid."""

    numerator: int = 4
    denominator: int = 4

    def __post_init__(self) -> None:
        numerator, denominator = self.numerator, self.denominator
        if isinstance(numerator, bool) or not isinstance(numerator, int) or not 1 <= numerator:
            raise MeterError(f"a time signature needs 1 or more beats per bar (got {numerator})")
        if denominator not in (1, 2, 4, 8, 16):
            raise MeterError(
                f"{numerator}/{denominator}: the beat unit must be 1, 2, 4, 8 or 16 "
                "(whole note to sixteenth)"
            )
        if numerator * STEPS_PER_WHOLE // denominator > 256:
            raise MeterError(f"{numerator}/{denominator}: a bar of more than 16 whole notes")

    @property
    def steps_per_bar(self) -> int:
        """Sixteenth-note steps in one bar: 16 for 4/4, 12 for 3/4 and 6/8, 8 for 2/4."""
        return self.numerator * STEPS_PER_WHOLE // self.denominator

    @property
    def compound(self) -> bool:
        """6/8, 9/8, 12/8: beats of three eighth notes."""
        return self.denominator == 8 and self.numerator % 3 == 0 and self.numerator > 3

    @property
    def steps_per_beat(self) -> int:
        """Steps in one counted beat: a dotted quarter (6) in 6/8, else the beat unit."""
        unit = STEPS_PER_WHOLE // self.denominator
        return 3 * unit if self.compound else unit

    @property
    def beats_per_bar(self) -> int:
        return self.steps_per_bar // self.steps_per_beat

    def bars(self, steps: int) -> float:
        """Length of ``steps`` in bars of this meter (a float: 18 steps of 4/4 are 1.125)."""
        return steps / self.steps_per_bar

    def __str__(self) -> str:
        return f"{self.numerator}/{self.denominator}"


FOUR_FOUR = Meter(4, 4)
COMMON_METERS = (FOUR_FOUR, Meter(3, 4), Meter(6, 8), Meter(2, 4))
"""The meters the studio offers: 4/4, 3/4, 6/8, 2/4."""


def parse_meter(text: str | Meter | tuple[int, int] | None) -> Meter | None:
    """``"6/8"``, ``(6, 8)`` or a Meter as a Meter; None, ``""`` or ``"auto"`` give None.

    Raises:
        MeterError: not ``N/D`` with a beat unit of 1-16 or a bar of at most 16 wholes.
    """
    if text is None or isinstance(text, Meter):
        return text
    if isinstance(text, tuple):
        return Meter(int(text[0]), int(text[1]))
    if text.strip().lower() in ("", "auto", "none", "from primer"):
        return None
    match = _METER.match(text)
    if not match:
        shown = text if len(text) <= 20 else text[:17] + "..."
        raise MeterError(f"time signature {shown!r} is not like 4/4, 3/4, 6/8 or 2/4")
    return Meter(int(match["numerator"]), int(match["denominator"]))
