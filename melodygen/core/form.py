"""A tune's form (AABB, ABAB, AABA, ...): which sections return, and where each one lies.

A form is a string of section letters A-D read left to right: a letter heard before is
that section again. Every section lasts the same number of bars (4 or 8:
:data:`melodygen.limits.SECTION_BARS`). A repeat is *exact* (note for note) unless the
request asks to vary repeats: then it keeps the first half of its source section and the
model writes its second half anew, like a first and a second ending.

The primer is the start of the first section. A primer whose first notes all lie in the
second half of its first bar (``r:12 D4 E4`` in 4/4) is a pickup: that bar is left
before the form, and section A starts at the next bar line, so every section starts on a
bar line in every meter. This module only plans (in sixteenth-note steps); a family's
generator follows the plan (:mod:`melodygen.families.melody_rnn.generate`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from melodygen.errors import MelodyGenError
from melodygen.limits import MAX_FORM_SECTIONS, SECTION_BARS
from melodygen.theory import NOTE_OFF, Meter

FREE = "free"
"""No form: the model continues as it likes (MelodyGen's behaviour before forms)."""
FORMS = ("AABB", "ABAB", "AABA", "ABAC", "AAB")
"""Forms offered by name in the studio and the CLI's help (any valid string is read)."""
LETTERS = "ABCD"
DEFAULT_SECTION_BARS = 8
"""A folk tune's part: a jig or reel is AABB of 8-bar parts."""


class FormError(MelodyGenError):
    """A form string, section length or primer that no form can be laid out from."""


def parse_form(text: str | None) -> str:
    """``text`` as a form ("AABB", upper case) or :data:`FREE`; one clear line otherwise.

    Letters A-D, starting with A, each new letter the next one (``ABAC``, not ``ACAB``),
    at most :data:`~melodygen.limits.MAX_FORM_SECTIONS` of them; spaces and dashes are
    ignored (``A A B B``). None, "" and "free" are :data:`FREE`.
    """
    if text is None:
        return FREE
    if not isinstance(text, str):
        raise FormError(f"a form must be text such as AABB, not {type(text).__name__}")
    cleaned = re.sub(r"[\s\-]", "", text).upper()
    if cleaned in ("", FREE.upper()):
        return FREE
    shown = text if len(text) <= 20 else text[:17] + "..."
    if not re.fullmatch(f"[{LETTERS}]+", cleaned):
        raise FormError(
            f"form {shown!r} must be letters A-D, one per section (e.g. AABB, ABAC), or free"
        )
    if len(cleaned) > MAX_FORM_SECTIONS:
        raise FormError(
            f"form {shown!r} has {len(cleaned)} sections; a form may have at most "
            f"{MAX_FORM_SECTIONS}"
        )
    seen = ""
    for letter in cleaned:
        if letter not in seen:
            expected = LETTERS[len(seen)]
            if letter != expected:
                raise FormError(
                    f"form {shown!r} brings in {letter} before {expected}: new sections take "
                    "the next letter, starting with A (e.g. ABAC, not ACAB)"
                )
            seen += letter
    return cleaned


def check_section_bars(value: object) -> int:
    """The bars of one section: one of :data:`melodygen.limits.SECTION_BARS`."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in SECTION_BARS:
        choices = " or ".join(str(bars) for bars in SECTION_BARS)
        shown = value if isinstance(value, int | float) else repr(value)
        raise FormError(f"section bars must be {choices} (got {shown})")
    return value


@dataclass(frozen=True)
class Section:
    """One section of a planned form, in steps of the melody it is part of.

    ``kind`` is "new" (the model writes it), "exact" (a copy of ``source``, note for note)
    or "varied" (its first ``kept`` steps copy ``source``, the rest is written anew).
    ``source`` is the step where the section it repeats starts, None for a new one.
    """

    letter: str
    start: int
    end: int
    kind: str = "new"
    source: int | None = None
    kept: int = 0

    def bars(self, meter: Meter) -> tuple[int, int]:
        """First and last bar it covers, numbered from 1 at the melody's first bar line."""
        bar = meter.steps_per_bar
        return self.start // bar + 1, max(self.start // bar + 1, -(-self.end // bar))

    def label(self, meter: Meter) -> str:
        """``"A' bars 9-16 (varied)"``: for messages, settings files and listings."""
        first, last = self.bars(meter)
        mark = "'" if self.kind == "varied" else ""
        what = "" if self.kind == "new" else f" ({self.kind} repeat)"
        return f"{self.letter}{mark} bars {first}-{last}{what}"

    def shifted(self, steps: int) -> Section:
        """The same section ``steps`` later (negative: earlier), its source moved too."""
        source = None if self.source is None else self.source + steps
        return replace(self, start=self.start + steps, end=self.end + steps, source=source)


@dataclass(frozen=True)
class FormPlan:
    """Where each section of ``form`` lies (steps from the melody's first bar line)."""

    form: str
    section_bars: int
    meter: Meter
    pickup_steps: int
    """Steps before section A: one bar when the primer starts with a pickup, else 0."""
    sections: tuple[Section, ...]
    cadence: tuple[int, int] | None
    """The steps written as the tune's ending (its final bar, or the final bar of the section
    an exact last section copies), where the generator makes the cadence; None when the
    primer already holds them."""

    @property
    def total_steps(self) -> int:
        return self.sections[-1].end

    @property
    def total_bars(self) -> int:
        return self.total_steps // self.meter.steps_per_bar

    def describe(self) -> str:
        """``"AABB of 8-bar sections, 32 bars of 6/8"`` (and the pickup bar, if any)."""
        pickup = " after a pickup bar" if self.pickup_steps else ""
        sections = len(self.form) * self.section_bars
        return (
            f"{self.form} of {self.section_bars}-bar sections, {sections} bars of "
            f"{self.meter.numerator}/{self.meter.denominator}{pickup}"
        )


def pickup_steps(events: Sequence[int], meter: Meter) -> int:
    """One bar when the primer ``events`` begin with a pickup (their first note lies in the
    second half of the first bar: an anacrusis leading into bar 2), else 0."""
    bar = meter.steps_per_bar
    first = next((index for index, event in enumerate(events) if event >= 0), None)
    if first is None or first >= bar:
        return 0
    return bar if first >= bar / 2 else 0


def plan_form(
    form: str,
    section_bars: int,
    meter: Meter,
    primer_events: Sequence[int] = (),
    vary_repeats: bool = False,
) -> FormPlan:
    """Lay ``form`` out in steps of ``meter`` after ``primer_events`` (the start of section
    A; a pickup bar before it). Refuses, in one line, a primer longer than section A."""
    form = parse_form(form)
    if form == FREE:
        raise FormError("a free tune has no form to plan; give letters such as AABB")
    section_bars = check_section_bars(section_bars)
    bar = meter.steps_per_bar
    pickup = pickup_steps(primer_events, meter)
    length = section_bars * bar
    if len(primer_events) > pickup + length:
        primer_bars = meter.bars(len(primer_events))
        raise FormError(
            f"the primer is {primer_bars:g} bars long, longer than section A "
            f"({section_bars} bars{' after the pickup bar' if pickup else ''}): the primer is "
            "the start of the first section; give a shorter primer or longer sections"
        )
    sections: list[Section] = []
    first_of: dict[str, Section] = {}
    for index, letter in enumerate(form):
        start = pickup + index * length
        source = first_of.get(letter)
        if source is None:
            section = Section(letter, start, start + length)
            first_of[letter] = section
        elif vary_repeats:
            kept = section_bars // 2 * bar
            section = Section(letter, start, start + length, "varied", source.start, kept)
        else:
            section = Section(letter, start, start + length, "exact", source.start, length)
        sections.append(section)
    last = sections[-1]
    ending = first_of[last.letter] if last.kind == "exact" else last
    cadence_start = max(ending.end - bar, len(primer_events))
    cadence = (cadence_start, ending.end) if cadence_start < ending.end else None
    return FormPlan(form, section_bars, meter, pickup, tuple(sections), cadence)


def form_length_steps(
    form: str, section_bars: int, meter: Meter, primer_events: Sequence[int] = ()
) -> int:
    """A form's whole length in steps (pickup bar included): what ``--bars`` must say."""
    return plan_form(form, section_bars, meter, primer_events).total_steps


def repeats_hold(events: Sequence[int], section: Section) -> bool:
    """Whether a repeated section of ``events`` plays what its source plays over the steps it
    keeps: the same note starts and the same sounding pitch at every step (a copy may
    re-strike or end a note at its first step where the music before it differs)."""
    if section.source is None:
        return True
    copy = range(section.start, section.start + section.kept)
    source = range(section.source, section.source + section.kept)
    sounding = sounding_pitches(events)
    for copied, original in zip(copy, source, strict=True):
        if sounding[copied] != sounding[original]:
            return False
        if copied != section.start and events[copied] != events[original]:
            return False
    return True


def sounding_pitches(events: Sequence[int]) -> list[int | None]:
    """The pitch sounding at each step of a melody's events (None: silence)."""
    sounding: list[int | None] = []
    current: int | None = None
    for event in events:
        if event >= 0:
            current = int(event)
        elif event == NOTE_OFF:
            current = None
        sounding.append(current)
    return sounding
