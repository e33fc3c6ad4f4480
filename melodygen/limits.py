"""Every limit a user meets, as data: what a MIDI file may hold, and every number's range.

One table serves the CLI, the studio and the library, so a value refused in one is
refused in all, with the same words:

- :class:`MidiLimits` bound what a MIDI file may hold (size, notes, length, tempo, time
  base). They are checked on the file's bytes before note_seq or pretty_midi see it,
  because pretty_midi allocates memory for every tick up to a file's last event: a
  37-byte file holding one note for 2**28 ticks used to take 6 GB. The studio's uploads
  and the CLI's ``--primer-midi`` share :data:`PRIMER_MIDI`; dataset building uses the
  looser :data:`DATASET_MIDI` (same tempo, time base and tick limits; larger, longer
  files with more notes).
- :data:`RANGES` holds the range of every number a user can give (CLI flags of
  ``generate``, ``dataset build``, ``train`` and ``originality``, the studio's form, and
  :class:`~melodygen.core.generation.GenerationRequest`). The CLI builds its
  argparse types from it, ``GenerationRequest.validate`` and ``StudioSettings.to_request`` check
  against it, and the README's tables state it.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass

from melodygen.errors import InputFileError, MelodyGenError

__all__ = [
    "DATASET_MIDI",
    "MAX_BEAM_ROWS",
    "MAX_FORM_SECTIONS",
    "MAX_MUSICXML_BYTES",
    "MAX_PRIMER_TEXT_CHARS",
    "MAX_PRIMER_TEXT_DIGITS",
    "PRIMER_MIDI",
    "RANGES",
    "SECTION_BARS",
    "MidiLimitError",
    "MidiLimits",
    "Range",
    "ValueRangeError",
    "check_file_size",
    "check_primer_text",
    "check_value",
    "display_name",
]


class MidiLimitError(InputFileError):
    """A MIDI file is well formed but holds more than MelodyGen reads (size, notes, length...)."""


class ValueRangeError(MelodyGenError):
    """A number given by the user is outside its stated range."""


# MIDI files ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MidiLimits:
    """What one MIDI file may hold before MelodyGen refuses to read it."""

    what: str
    """How messages name the file: "a primer file", "a dataset file"."""
    max_bytes: int
    """File size. Checked before the file is read at all (a 6 MB file took 35 s to refuse)."""
    max_notes: int
    """Note-ons with a velocity above 0, in all tracks together."""
    max_seconds: float
    """Time from the start to the file's last event, at the file's tempos."""
    max_ticks: int
    """The file's last event, in ticks: pretty_midi's tick table takes about 32 bytes a tick
    while it is built, so this bounds the memory reading a file can take (~130 MB at 4
    million ticks)."""
    max_tempo_changes: int
    """Tempo and time-signature events: each one starts a new piece that is copied and
    quantized on its own."""
    max_note_changes: int
    """Notes x tempo and time-signature changes. Splitting a file at its changes looks at
    every note sounding across each one: 20,000 held notes and 2,000 changes took 6 s."""
    min_bpm: float = 10.0
    """Slowest tempo a file may set (quarter notes per minute)."""
    max_bpm: float = 1000.0
    """Fastest tempo a file may set: a tempo of 1 microsecond per beat is 60,000,000 BPM."""
    max_ticks_per_beat: int = 0x7FFF
    """The file's time base. 0 and SMPTE time code (the header's top bit) are refused."""

    @property
    def max_mb(self) -> float:
        """``max_bytes`` in MB of 1,000,000 bytes, the unit Streamlit's upload limit uses."""
        return self.max_bytes / 1_000_000


PRIMER_MIDI = MidiLimits(
    what="a primer file",
    max_bytes=1_000_000,
    max_notes=50_000,
    max_seconds=3600.0,
    max_ticks=4_000_000,
    max_tempo_changes=2_000,
    max_note_changes=20_000_000,
)
"""Studio uploads and ``generate --primer-midi``: 1 MB, 50,000 notes, 1 hour, 4 million
ticks (an hour at 120 BPM and 480 ticks per beat is 3.5 million), 2,000 tempo and meter
changes (and at most 20 million notes x changes), tempos 10-1000 BPM."""

DATASET_MIDI = MidiLimits(
    what="a dataset file",
    max_bytes=8_000_000,
    max_notes=500_000,
    max_seconds=3 * 3600.0,
    max_ticks=10_000_000,
    max_tempo_changes=20_000,
    max_note_changes=100_000_000,
)
"""``dataset build``: 8 MB, 500,000 notes, 3 hours, 10 million ticks (pretty_midi's own
limit before note_seq raised it to 10**10), 20,000 tempo and meter changes (and at most
100 million notes x changes), tempos 10-1000 BPM. A file beyond them is listed as failed
and skipped like a corrupt one."""


MAX_MUSICXML_BYTES = 3_000_000
"""MusicXML text a primer file may hold, after unzipping an .mxl (whose own size counts
against ``PRIMER_MIDI.max_bytes``): music21 reads about 1 MB a second here, and 3 MB is
some 10,000 notes. Checked before music21 reads the file, so a zip bomb is refused
unopened."""


def check_file_size(
    where: str, size: int, limits: MidiLimits, error: type[MelodyGenError] = MidiLimitError
) -> None:
    """Refuse a file larger than ``limits.max_bytes`` before it is read, in one wording
    for the CLI, dataset building and the studio's uploads (``where`` names the file)."""
    if size > limits.max_bytes:
        shown = f"{size / 1e6:,.1f} MB" if size >= 1.1 * limits.max_bytes else f"{size:,} bytes"
        raise error(
            f"{where} is {shown}; {limits.what} may be at most "
            f"{limits.max_mb:g} MB ({limits.max_bytes:,} bytes)."
        )


def display_name(name: str | None, limit: int = 60) -> str:
    """A user's file name as messages show it: last path part, printable, at most ``limit``.

    Upload names come from the browser and may hold anything (a NUL byte, 268 bytes of
    Japanese); they are only ever shown, never used as a path.
    """
    text = re.split(r"[\\/]", name or "")[-1]
    text = "".join(char if char.isprintable() else "?" for char in text).strip()
    if not text:
        return "upload.mid"
    if len(text) > limit:
        stem, dot, suffix = text.rpartition(".")
        tail = f"{dot}{suffix}" if dot and len(suffix) <= 8 else ""
        text = text[: limit - len(tail) - 3] + "..." + tail
    return text


# Typed primers ------------------------------------------------------------------------------

MAX_PRIMER_TEXT_CHARS = 65_536
"""A typed primer longer than this is not an opening (4,096 steps as events fit in ~20,000)."""
MAX_PRIMER_TEXT_DIGITS = 12
"""No number in a primer needs more digits; Python refuses to read numbers over 4,300."""
_LONG_NUMBER = re.compile(rf"[0-9]{{{MAX_PRIMER_TEXT_DIGITS + 1},}}")


def check_primer_text(text: str | None, error: type[MelodyGenError] = ValueRangeError) -> None:
    """Refuse a typed primer too long to be one, or holding a number no primer uses.

    Raises:
        error: the text is over :data:`MAX_PRIMER_TEXT_CHARS` characters or holds a
            number of more than :data:`MAX_PRIMER_TEXT_DIGITS` digits.
    """
    if text is None:
        return
    if len(text) > MAX_PRIMER_TEXT_CHARS:
        raise error(
            f"the primer is {len(text):,} characters long; a typed primer may be at most "
            f"{MAX_PRIMER_TEXT_CHARS:,} (for a whole song, use a MIDI file)"
        )
    match = _LONG_NUMBER.search(text)
    if match:
        digits = match.group()
        raise error(
            f"the primer holds a {len(digits):,}-digit number ({digits[:8]}...); pitches are "
            "0-127 and lengths a few sixteenth steps"
        )


# Numbers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """The range of one number a user gives: bounds, unit, and what it means."""

    name: str
    """Key in :data:`RANGES`."""
    label: str
    """How messages name it: "number of outputs"."""
    low: float
    high: float
    unit: str
    """Plural unit shown after the bounds ("bars"), or ""."""
    meaning: str
    integer: bool = True
    """Whole numbers only (a float such as 2.0 is refused too)."""
    low_open: bool = False
    """``low`` itself is not allowed (temperature must be above 0)."""
    high_open: bool = False
    """``high`` itself is not allowed (the eval ratio must be below 1)."""

    def describe(self) -> str:
        """The range in words, for help texts and messages: ``1 to 64 melodies``."""
        unit = f" {self.unit}" if self.unit else ""
        low, high = _show(self.low), _show(self.high)
        if self.low_open and self.high_open:
            return f"above {low} and below {high}{unit}"
        if self.low_open:
            return f"above {low} and at most {high}{unit}"
        if self.high_open:
            return f"at least {low} and below {high}{unit}"
        return f"{low} to {high}{unit}"

    def contains(self, value: object) -> bool:
        """True when ``value`` is a number of the right kind inside the range."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.integer and not isinstance(value, numbers.Integral):
            return False
        if not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def check(self, value: object, error: type[MelodyGenError] = ValueRangeError) -> None:
        """Raise ``error`` with a one-line message unless :meth:`contains` ``value``."""
        if self.contains(value):
            return
        given = _show_given(value)
        if self.integer and isinstance(value, numbers.Real) and not isinstance(value, bool):
            if not isinstance(value, numbers.Integral):
                raise error(f"{self.label} must be a whole number, {self.describe()} (got {given})")
        raise error(f"{self.label} must be {self.describe()} (got {given})")

    def parse(self, text: str) -> int | float:
        """A command-line string as a number in range.

        Raises:
            ValueRangeError: the text is not a number of the right kind, or out of range.
        """
        stripped = text.strip()
        kind = "whole number" if self.integer else "number"
        value: int | float
        try:
            if self.integer:
                if not re.fullmatch(r"[+-]?[0-9]{1,30}", stripped):
                    raise ValueError
                value = int(stripped)
            else:
                value = float(stripped) if len(stripped) <= 100 else math.nan
        except ValueError:
            raise ValueRangeError(
                f"{_show_given(text)} is not a {kind}; {self.label} must be {self.describe()}"
            ) from None
        self.check(value)
        return value


def _show(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:g}"


def _show_given(value: object) -> str:
    text = str(value) if isinstance(value, (int, float)) else repr(value)
    return text if len(text) <= 24 else text[:21] + "..."


MAX_STEPS = 4096
"""Longest melody generated, in sixteenth steps (256 bars)."""
MAX_BEAM_ROWS = 1024
"""beam size x branch factor x number of outputs: the melodies a beam search holds at once.

Each row keeps its history and every layer's state; 1,024 rows of 4,096 steps stay in
the low hundreds of MB, where 10,000 x 1,000 x 64 went over 2 GB."""
MAX_SEED = 2**32 - 1
"""NumPy's random generators take seeds below 2**32; ``originality`` draws each batch's
seed from that whole range."""
MAX_TRAIN_SEED = 2**31 - 1
"""Training adds the step count to its seed, which must stay below 2**32."""
SECTION_BARS = (4, 8)
"""Bars one section of a form may last (``generate --section-bars``, the studio's *Section
bars*): the phrase lengths of folk and pop tunes; :mod:`melodygen.core.form` checks it."""
MAX_FORM_SECTIONS = 8
"""Sections a form may have (``AABBAABB``): 8 of 8 bars is 64 bars, the studio's longest."""


def _ranges(*items: Range) -> dict[str, Range]:
    return {item.name: item for item in items}


RANGES: dict[str, Range] = _ranges(
    # generate (CLI), GenerationRequest, the studio's form
    Range("length_steps", "length", 1, MAX_STEPS, "steps", "total length, primer included"),
    Range(
        "bars",
        "length",
        0.25,
        MAX_STEPS // 16,
        "bars",
        "total length in 4/4 bars, primer included",
        integer=False,
    ),
    Range("num_outputs", "number of outputs", 1, 64, "melodies", "variations made together"),
    Range(
        "temperature",
        "temperature",
        0,
        10,
        "",
        "sampling: lower is safer, higher wilder",
        integer=False,
        low_open=True,
    ),
    Range("top_k", "top-k", 1, 130, "events", "sample only among the K likeliest events"),
    Range(
        "top_p",
        "top-p",
        0,
        1,
        "",
        "sample only among the likeliest events holding this probability",
        integer=False,
        low_open=True,
    ),
    Range("min_pitch", "lowest pitch", 0, 127, "(MIDI)", "lowest MIDI pitch generated"),
    Range("max_pitch", "highest pitch", 0, 127, "(MIDI)", "highest MIDI pitch generated"),
    Range("seed", "seed", 0, MAX_SEED, "", "same seed and request give the same result"),
    Range("train_seed", "seed", 0, MAX_TRAIN_SEED, "", "seeds initial weights and batch order"),
    Range("beam_size", "beam size", 1, 64, "", "sequences a beam search keeps"),
    Range("branch_factor", "branch factor", 1, 64, "", "ways each beam entry is extended"),
    Range(
        "steps_per_iteration",
        "steps per iteration",
        1,
        MAX_STEPS,
        "steps",
        "steps between beam prunings",
    ),
    Range(
        "bpm",
        "tempo",
        PRIMER_MIDI.min_bpm,
        PRIMER_MIDI.max_bpm,
        "BPM",
        "tempo of the output (quarter notes per minute)",
        integer=False,
    ),
    Range("key", "key", 0, 11, "(pitch class)", "0 = C, 1 = C#, ... 11 = B"),
    Range(
        "distance",
        "distance",
        0,
        4,
        "",
        "how far variations stray from their melody: 0 the melody as the model reads it, "
        "0.1-0.3 close, 1 loosely related",
        integer=False,
    ),
    Range(
        "blend_steps",
        "blend steps",
        2,
        64,
        "melodies",
        "melodies of a blend, the two it runs between included",
    ),
    Range("track", "track", 0, 65_535, "", "track of --primer-midi, numbered from 0"),
    Range("primer_bars", "primer bars", 1, MAX_STEPS // 16, "bars", "bars of --primer-midi"),
    # the studio's form (narrower than the CLI: a web server shares its machine)
    Range("variations", "variations", 1, 8, "", "melodies per click in the studio"),
    Range("studio_bars", "length", 1, 64, "bars", "total length in the studio, primer included"),
    Range(
        "studio_blend_steps", "blend steps", 3, 12, "melodies", "melodies of a blend in the studio"
    ),
    # dataset build
    Range(
        "eval_ratio",
        "the eval ratio",
        0,
        1,
        "",
        "share of songs held out",
        integer=False,
        high_open=True,
    ),
    Range("transpose", "transposition", -24, 24, "semitones", "augmentation shifts"),
    Range("min_bars", "minimum length", 0, 256, "bars", "shorter melodies are dropped"),
    Range("max_steps", "maximum length", 16, MAX_STEPS, "steps", "longer melodies are cut"),
    Range(
        "min_unique_pitches",
        "minimum pitch classes",
        1,
        12,
        "",
        "melodies using fewer pitch classes are dropped",
    ),
    Range(
        "gap_bars",
        "gap",
        0,
        256,
        "bars",
        "a rest this long ends a melody",
        integer=False,
        low_open=True,
    ),
    Range("workers", "workers", 1, 256, "processes", "processes reading files"),
    # dataset explore
    Range(
        "explore_files",
        "the file limit",
        1,
        20_000,
        "files",
        "music files explored at once (about 1,000 in 10 s on 2 cores)",
    ),
    # train
    Range("train_steps", "training steps", 1, 10**9, "steps", "total training steps"),
    Range("eval_every", "evaluation interval", 1, 10**9, "steps", "steps between evaluations"),
    Range(
        "early_stopping",
        "early stopping",
        1,
        10**6,
        "evaluations",
        "stop after this many evaluations without a lower eval loss",
    ),
    Range(
        "time_limit",
        "time limit",
        0,
        525_600,
        "minutes",
        "stop after this long (at most a year)",
        integer=False,
        low_open=True,
    ),
    # originality
    Range("originality_num", "number of melodies", 1, 10_000, "melodies", "melodies generated"),
    Range("originality_bars", "length", 1, MAX_STEPS // 16, "bars", "length of each melody"),
    # structure (evaluate, originality): held-out melodies continued from their first 2 bars
    Range(
        "structure_tunes",
        "held-out melodies to continue",
        0,
        10_000,
        "melodies",
        "held-out melodies of 16+ bars continued for the structure figure (0: none)",
    ),
    Range(
        "structure_per_primer",
        "continuations of each",
        1,
        64,
        "melodies",
        "continuations of each held-out melody's first 2 bars",
    ),
    # latent (a note VAE's code space)
    Range("latent_samples", "number of melodies", 1, 10_000, "melodies", "random codes decoded"),
    Range("latent_pairs", "number of pairs", 1, 5_000, "pairs", "pairs of melodies blended"),
)
"""Every number a user can give, by name; README "Limits" states the same table."""


def check_value(name: str, value: object, error: type[MelodyGenError] = ValueRangeError) -> None:
    """Check ``value`` against ``RANGES[name]``, raising ``error`` with a one-line message."""
    RANGES[name].check(value, error)
