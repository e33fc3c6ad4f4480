"""ABC notation in and out: tunebooks -> canonical tune texts -> NoteSequences, and back.

The ABC families (``abc_char``) learn and write ABC text, so the text is cleaned into one
canonical form (:func:`clean_tune`): what is played is kept, what is engraving or
bookkeeping is dropped, and the header fields come in a fixed order. Tunes are parsed by
``abc2midi`` from Debian's ``abcmidi`` package (:func:`parse_tune`): it reads every ABC
2.1 construct folk tunebooks use (tuplets, broken rhythm, variant endings, chords,
parts, inline fields), plays repeats as written out and takes a few milliseconds a tune;
``benchmarks/abc_parsers.py`` measures it against note_seq's and music21's parsers.

:func:`check_validity` judges a tune the way a folk musician would: it parses, its full
bars last what ``M:`` and ``L:`` say, and its repeats and endings pair up. It counts
note lengths itself (a small tokenizer below), so it names the bar that is wrong.
:func:`to_abc` writes a melody on the sixteenth-note grid as ABC, spelled in its key.

Every failure is an :class:`AbcError` with a one-line message.
"""

from __future__ import annotations

import bisect
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from melodygen import theory
from melodygen.errors import InputFileError, one_line
from melodygen.theory import NO_EVENT

if TYPE_CHECKING:
    from note_seq.protobuf.music_pb2 import NoteSequence

__all__ = [
    "ABC2MIDI_TIMEOUT_S",
    "MAX_TUNE_CHARS",
    "MAX_TUNEBOOK_BYTES",
    "AbcError",
    "AbcTune",
    "Validity",
    "check_validity",
    "clean_tune",
    "key_and_mode",
    "parse_tune",
    "read_tunebook",
    "split_tunes",
    "to_abc",
    "validity_rates",
]

MAX_TUNE_CHARS = 20_000
"""A tune's raw text. The longest of the ~5,300 Nottingham and folk_abc tunes is under
9,000 characters; a tune longer than this is refused before any parsing."""
MAX_TUNEBOOK_BYTES = 8 * 1024 * 1024
"""A tunebook file (the largest one in the data is 0.4 MB)."""
ABC2MIDI_TIMEOUT_S = 5.0
"""abc2midi takes ~5 ms a tune; one that takes longer than this is stopped and refused."""
MAX_TUNE_QUARTERS = 20_000
"""A tune's written length, in quarter notes (repeats aside): an hour and a half at 240 BPM.
Checked on the text before abc2midi sees it, so ``G300000000`` is refused in words."""


ABC_TEXT_PREFIX = "abc:"
"""A NoteSequence read from ABC carries its tune's canonical text in a text annotation
that starts with this, so a family that reads ABC text scores the tune as written."""


class AbcError(InputFileError):
    """An ABC tune or tunebook that cannot be read, cleaned or parsed (one line)."""


# --------------------------------------------------------------------------------------
# Tunes and tunebooks
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AbcTune:
    """One tune in canonical text form (see :func:`clean_tune`)."""

    text: str
    """Header and body, ending with "\\n"."""
    reference: str
    """Its X: number or position in the book, for messages and song ids."""
    title: str
    meter: str | None
    unit: str | None
    key: str | None
    rhythm: str | None

    @property
    def header(self) -> str:
        """The header lines of ``text``: everything up to and including the K: line."""
        lines = self.text.splitlines(keepends=True)
        for index, line in enumerate(lines):
            if line.startswith("K:"):
                return "".join(lines[: index + 1])
        return self.text

    @property
    def body(self) -> str:
        """The lines after the header's K: line."""
        return self.text[len(self.header) :]


_X_LINE = re.compile(r"^X:\s*(\S*)")
_FIELD = re.compile(r"^([A-Za-z+]):(.*)$")
_FILE_HEADER_DEFAULTS = ("M", "L", "Q", "R")
_BINARY = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def split_tunes(text: str, source: str = "") -> list[str]:
    """A tunebook's text -> the raw text of each tune, in order.

    A tune starts at an ``X:`` line and ends at a blank line or the next ``X:``. Fields of
    a file header (the lines before the first ``X:``: ``M:``, ``L:``, ``Q:``, ``R:``) are
    defaults for every tune and are copied after each tune's ``X:`` line, where the
    tune's own fields override them. Text with no ``X:`` line at all (a tune pasted
    without one) is split at blank lines, and each part holding a ``K:`` line is a tune.
    ``source`` names the text in nothing but future messages; it is accepted for symmetry.
    """
    del source
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if not any(_X_LINE.match(line) for line in lines):
        parts, current = [], []
        for line in [*lines, ""]:
            if line.strip():
                current.append(line)
            elif current:
                if any(re.match(r"^\s*K:", part) for part in current):
                    parts.append("\n".join(current) + "\n")
                current = []
        return parts
    defaults: list[str] = []
    tunes: list[str] = []
    current: list[str] | None = None
    for line in lines:
        if _X_LINE.match(line):
            if current:
                tunes.append("\n".join(current) + "\n")
            current = [line.strip(), *defaults]
        elif current is None:
            field = _FIELD.match(line.strip())
            if field and field.group(1) in _FILE_HEADER_DEFAULTS:
                defaults.append(line.strip())
        elif not line.strip():
            tunes.append("\n".join(current) + "\n")
            current = None
        else:
            current.append(line)
    if current:
        tunes.append("\n".join(current) + "\n")
    return tunes


_HEADER_ORDER = ("T", "M", "L", "Q", "R", "K")
_BODY_FIELDS = ("K", "M", "L", "Q")  # fields that change the music where they stand
# ~ . and the letters H-W, h-w are decorations (ABC 2.1's own and user-defined, U:); y and
# the backquote are spacers. No note, rest or bar line uses them.
_DECORATION_CHARS = set("~.y`") | set("HIJKLMNOPQRSTUVW") | set("hijklmnopqrstuvw")
_INLINE_FIELD = re.compile(r"\[([A-Za-z]):([^\]]*)\]")


def clean_tune(raw: str, chords: bool = False, reference: str = "") -> AbcTune:
    """One raw tune -> its canonical form.

    Kept: the header fields ``T:`` (the first), ``M:``, ``L:``, ``Q:``, ``R:`` and ``K:``, in
    that order (``K:`` last; fields between ``K:`` and the first line of music count as
    header); in the body, everything that is played: notes, accidentals, octave marks,
    lengths, rests, ties, tuplets, broken rhythm, chords ``[CEG]``, bar lines, repeats,
    variant endings, body ``K:``/``M:``/``L:``/``Q:`` lines and inline ``[K:..]`` fields.
    Chord symbols ``"G"`` are kept only with ``chords=True``.

    Dropped: comments and ``%%`` directives, ``X:`` and every other field (``S:``, ``Z:``,
    ``N:``, ``H:``, ``B:``, ``D:``, ``F:``, ``O:``, ``A:``, ``C:``, ``I:``, ``P:``, lyrics
    ``W:``/``w:``, unknown fields), annotations (``"^text"``), decorations (``!trill!``,
    ``+fermata+``, ``~ . H L M O P S T u v``), grace notes ``{gAg}`` (they take no time
    and are played as ornaments), slurs, the spacers ``y`` and backquote. A tune written
    for several voices (``V:``) keeps its first voice only. Whitespace is normalised:
    a line continued with ``\\`` is joined to the next, runs of spaces become one, lines
    are stripped and empty ones removed; the body keeps its lines (a line is a phrase).

    Raises:
        AbcError: one line: binary data, over :data:`MAX_TUNE_CHARS`, no ``K:`` field,
            music before ``K:``, no music after it, an unclosed ``"``, ``{`` or ``[``.
    """
    where = f"tune {reference}: " if reference else ""
    if not isinstance(raw, str):
        raise AbcError(f"{where}ABC must be text, not {type(raw).__name__}.")
    if len(raw) > MAX_TUNE_CHARS:
        raise AbcError(
            f"{where}the tune has {len(raw):,} characters; at most {MAX_TUNE_CHARS:,} are read."
        )
    if _BINARY.search(raw) or "\ufffd" in raw:
        raise AbcError(f"{where}the text holds binary data (control characters), not ABC.")
    lines = _join_continuations(_strip_comments(raw))
    fields: dict[str, str] = {}
    body: list[str] = []
    voice: str | None = None  # the voice kept
    current_voice: str | None = None
    in_header = True
    for line in _split_trailing_fields(lines):
        field = _FIELD.match(line)
        if in_header:
            if not field:
                if "K" not in fields:
                    raise AbcError(f"{where}music comes before the K: (key) field.")
                in_header = False
            else:
                name, value = field.group(1), " ".join(field.group(2).split())
                if name == "X" and not reference:
                    reference = value
                    where = f"tune {reference}: "
                if name == "V":
                    voice = voice if voice is not None else _voice_id(value)
                    current_voice = voice
                elif name in _HEADER_ORDER and not (name == "T" and "T" in fields):
                    fields[name] = value
                continue
        if field:
            name, value = field.group(1), " ".join(field.group(2).split())
            if name == "V":
                current_voice = _voice_id(value)
                if voice is None:
                    voice = current_voice
            elif current_voice == voice and name in _BODY_FIELDS:
                body.append(f"{name}:{value}")
            continue
        if current_voice != voice:
            continue
        music, switched = _clean_music_line(line, chords, where, voice)
        if switched is not None:  # an inline [V:..] at the start of the line
            current_voice = switched
            if voice is None:
                voice = switched
            if current_voice != voice:
                continue
        if music:
            body.append(music)
    if "K" not in fields:
        raise AbcError(f"{where}the tune has no K: (key) field.")
    while body and _FIELD.match(body[0]):  # field lines before the first music: header
        name, value = body.pop(0).split(":", 1)
        fields[name] = value
    if not any(re.search(r"[A-Ga-gzx]", line) for line in body if not _FIELD.match(line)):
        raise AbcError(f"{where}the tune has a header but no music after its K: field.")
    header = [f"{name}:{fields[name]}" for name in _HEADER_ORDER if name in fields]
    text = "\n".join(header + body) + "\n"
    return AbcTune(
        text=text,
        reference=reference,
        title=fields.get("T", ""),
        meter=fields.get("M") or None,
        unit=fields.get("L") or None,
        key=fields.get("K") or None,
        rhythm=fields.get("R") or None,
    )


def _strip_comments(raw: str) -> list[str]:
    lines = []
    continued_comment = False
    for line in raw.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if continued_comment or line.lstrip().startswith("%"):
            continued_comment = line.rstrip().endswith("\\")  # a %% directive goes on
            continue
        code = re.sub(r"(?<!\\)%.*$", "", line)
        code = " ".join(code.split())
        if code:
            lines.append(code)
    return lines


def _join_continuations(lines: list[str]) -> list[str]:
    joined: list[str] = []
    carry = ""
    for line in lines:
        if _FIELD.match(line) and not carry:
            joined.append(line)
            continue
        if line.endswith("\\"):
            carry += line[:-1].rstrip() + " "
            continue
        joined.append(carry + line)
        carry = ""
    if carry.strip():
        joined.append(carry.strip())
    return joined


_TRAILING_FIELD = re.compile(r"(?:^|\s)([KMLQPVT]:[^|:\s\]][^|\]]*)$")


def _split_trailing_fields(lines: list[str]) -> list[str]:
    """``"...| K:G"``: a field at the end of a line of music (as the Nottingham books write
    a key change) is put on its own line, where ABC wants it."""
    result = []
    for line in lines:
        match = None if _FIELD.match(line) else _TRAILING_FIELD.search(line)
        if match and match.start(1) > 0:
            result.extend([line[: match.start(1)].rstrip(), match.group(1)])
        else:
            result.append(line)
    return result


def _voice_id(value: str) -> str:
    return value.split()[0] if value.split() else ""


def _clean_music_line(
    line: str, chords: bool, where: str, voice: str | None
) -> tuple[str, str | None]:
    """One body line -> (its canonical music, the voice an inline [V:..] switches to)."""
    out: list[str] = []
    switched: str | None = None
    i, n = 0, len(line)
    while i < n:
        char = line[i]
        if char == '"':
            end = line.find('"', i + 1)
            if end < 0:
                raise AbcError(
                    f'{where}a chord symbol or annotation opens with " but never closes.'
                )
            inner = line[i + 1 : end]
            if chords and inner and inner[0] not in "^_<>@":
                out.append(f'"{inner}"')
            i = end + 1
        elif char in "!+":
            end = line.find(char, i + 1)
            i = n if end < 0 and char == "!" else (i + 1 if end < 0 else end + 1)
        elif char == "{":
            end = line.find("}", i + 1)
            if end < 0:
                raise AbcError(f"{where}a grace note group opens with {{ but never closes.")
            i = end + 1
        elif char == "[" and i + 2 < n and line[i + 2] == ":" and line[i + 1].isalpha():
            end = line.find("]", i)
            if end < 0:
                raise AbcError(f"{where}an inline field [{line[i + 1]}: never closes with ].")
            name, value = line[i + 1], " ".join(line[i + 3 : end].split())
            if name == "V":
                if not out:
                    switched = _voice_id(value)
                else:  # a voice change mid-line: the rest belongs to another voice
                    if _voice_id(value) != voice:
                        break
            elif name in _BODY_FIELDS:
                out.append(f"[{name}:{value}]")
            i = end + 1
        elif char == "(":
            if i + 1 < n and line[i + 1].isdigit():
                match = re.match(r"\(\d+(?::\d*(?::\d*)?)?", line[i:])
                assert match is not None
                out.append(match.group(0))
                i += len(match.group(0))
            else:
                i += 1  # a slur
        elif char == ")" or char in _DECORATION_CHARS:
            i += 1
        else:
            out.append(char)
            i += 1
    music = " ".join("".join(out).split())
    brackets = re.sub(r"\[\||\|\]|\[(?=\d)", "", music)
    if brackets.count("[") != brackets.count("]"):
        raise AbcError(f"{where}unbalanced brackets [ ] in the line {_short(line)!r}.")
    return music, switched


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_tunebook(
    path: str | Path, chords: bool = False
) -> tuple[list[AbcTune], list[tuple[str, str]]]:
    """An ABC file -> its cleaned tunes, and (reference, reason) for each tune refused.

    Raises:
        AbcError: the file is missing, unreadable, over :data:`MAX_TUNEBOOK_BYTES`, or
            not text (binary data), in one line.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_TUNEBOOK_BYTES:
            raise AbcError(
                f"{path}: {size:,} bytes; an ABC file may be at most {MAX_TUNEBOOK_BYTES:,}."
            )
        data = path.read_bytes()
    except OSError as exc:
        raise AbcError(f"{path}: could not be read ({exc.strerror or exc}).") from None
    return tunebook_tunes(decode_abc_bytes(data, str(path)), str(path), chords)


def tunebook_tunes(
    text: str, source: str = "", chords: bool = False
) -> tuple[list[AbcTune], list[tuple[str, str]]]:
    """A tunebook's text -> its cleaned tunes, and (reference, reason) for each refused."""
    tunes: list[AbcTune] = []
    refused: list[tuple[str, str]] = []
    for position, raw in enumerate(split_tunes(text, source), start=1):
        match = _X_LINE.match(raw)
        reference = match.group(1) if match and match.group(1) else f"#{position}"
        try:
            tunes.append(clean_tune(raw, chords=chords, reference=reference))
        except AbcError as exc:
            refused.append((reference, _without_prefix(str(exc), reference)))
    return tunes, refused


def decode_abc_bytes(data: bytes, where: str = "the ABC text") -> str:
    """UTF-8 (with or without BOM), else Latin-1; binary data is refused in one line."""
    if b"\x00" in data[:65536]:
        raise AbcError(f"{where}: not an ABC text file (it holds binary data).")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _without_prefix(message: str, reference: str) -> str:
    prefix = f"tune {reference}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


# --------------------------------------------------------------------------------------
# Parsing with abc2midi
# --------------------------------------------------------------------------------------

_MODE_WORDS = {
    "": "major",
    "maj": "major",
    "ion": "major",
    "m": "minor",
    "min": "minor",
    "aeo": "minor",
    "dor": "dorian",
    "phr": "phrygian",
    "lyd": "lydian",
    "mix": "mixolydian",
    "loc": "locrian",
}


def key_and_mode(key: str | None) -> tuple[int, str] | None:
    """A K: value -> (tonic pitch class, mode name of :data:`melodygen.theory.MODES`):
    ``"G"`` (7, major), ``"Ador"`` (9, dorian), ``"F#m"`` (6, minor); None for none,
    highland pipes (HP) and anything unreadable."""
    if not key:
        return None
    match = re.match(r"^\s*([A-Ga-g])([#b]?)\s*([A-Za-z]*)", key)
    if not match:
        return None
    letter, accidental, word = match.groups()
    if letter.upper() == "H" or key.strip().lower().startswith("none"):
        return None
    word = word.lower()
    mode = _MODE_WORDS.get(word if word in ("", "m") else word[:3])
    if mode is None:
        return None
    tonic = (_LETTER_PC[letter.upper()] + {"#": 1, "b": -1, "": 0}[accidental]) % 12
    return tonic, mode


_LETTER_PC = theory.LETTER_PITCH_CLASSES


def require_abc2midi() -> str:
    """The path of abc2midi, or one ``AbcError`` line saying how to install it: called before
    any work that reads ABC, so a missing parser is never reported as a bad tune."""
    return _abc2midi()


def _abc2midi() -> str:
    exe = shutil.which("abc2midi")
    if exe is None:
        raise AbcError(
            "abc2midi is not installed; ABC tunes are parsed by it: install Debian's "
            "abcmidi package (apt-get install abcmidi, or `make setup` as root)."
        )
    return exe


def parse_tune(tune: AbcTune | str) -> NoteSequence:
    """A tune -> one monophonic melody line as a NoteSequence, parsed by abc2midi.

    The tune is cleaned first if it is text. Repeats and variant endings are played as
    written out (as melody extraction wrote them out before: bits per note compares
    families on the notes a tune plays). Where the tune has chords ``[CEG]`` the highest
    note is kept, and a note is cut where the next one starts. Tempo (``Q:``, else 120
    quarters a minute) and time signatures come from abc2midi's MIDI file; the key
    signature from ``K:``. ``sequence_metadata.title`` and ``reference_number`` are set.

    Raises:
        AbcError: one line: abc2midi is missing, refuses the tune, runs past
            :data:`ABC2MIDI_TIMEOUT_S`, or writes no notes.
    """
    from melodygen.io import music
    from melodygen.io.music import note_seq  # imported quietly (no pydub warning)
    from melodygen.limits import DATASET_MIDI, MidiLimitError

    music_pb2 = note_seq.protobuf.music_pb2

    if isinstance(tune, str):
        tune = clean_tune(tune)
    where = f"tune {tune.reference}" if tune.reference else "the tune"
    quarters = _written_quarters(tune)
    if quarters > MAX_TUNE_QUARTERS:
        raise AbcError(
            f"{where}: it is {quarters:,.0f} quarter notes long as written; "
            f"at most {MAX_TUNE_QUARTERS:,} are read (a note held far too long?)."
        )
    exe = _abc2midi()
    with tempfile.TemporaryDirectory(prefix="melodygen-abc-") as folder:
        source = os.path.join(folder, "tune.abc")
        target = os.path.join(folder, "tune.mid")
        with open(source, "w", encoding="utf-8") as handle:
            # Chords sound together (abc2midi strums them 10 ticks apart by default).
            handle.write("X:1\n%%MIDI chordattack 0\n" + tune.text)
        try:
            done = subprocess.run(
                [exe, source, "1", "-o", target, "-NGUI", "-NFNP", "-silent"],
                capture_output=True,
                timeout=ABC2MIDI_TIMEOUT_S,
                check=False,
                cwd=folder,
            )
        except subprocess.TimeoutExpired:
            raise AbcError(
                f"{where}: abc2midi did not finish in {ABC2MIDI_TIMEOUT_S:g} s."
            ) from None
        except OSError as exc:
            raise AbcError(f"{where}: abc2midi could not run ({exc.strerror or exc}).") from None
        if not os.path.exists(target) or os.path.getsize(target) == 0:
            raise AbcError(f"{where}: abc2midi could not parse it ({_abc2midi_reason(done)}).")
        with open(target, "rb") as handle:
            data = handle.read()
    try:
        sequence = music._midi_bytes_to_sequence(where, data, DATASET_MIDI)
        music.check_sequence_limits(sequence, DATASET_MIDI, where)
    except MidiLimitError as exc:
        raise AbcError(one_line(exc)) from None
    except InputFileError as exc:
        raise AbcError(
            f"{where}: abc2midi wrote MIDI that cannot be read ({one_line(exc)})."
        ) from None
    notes = [n for n in sequence.notes if n.velocity > 0 and not n.is_drum]
    if len(sequence.tempos) <= 1:
        # abc2midi starts each note one tick late and ends it one tick early (at 480 ticks
        # a quarter): put notes back on a grid of 1/120 quarter, which holds every
        # duplet, triplet and quintuplet of ABC's usual lengths.
        grid = 60.0 / (sequence.tempos[0].qpm if sequence.tempos else 120.0) / 120
        for note in notes:
            note.start_time = round(note.start_time / grid) * grid
            note.end_time = max(round(note.end_time / grid) * grid, note.start_time + grid)
    notes.sort(key=lambda n: (round(n.start_time, 6), -n.pitch))
    melody = []
    for note in notes:
        if melody and abs(melody[-1].start_time - note.start_time) < 1e-6:
            continue  # a chord: the highest note wins
        if melody and melody[-1].end_time > note.start_time:
            melody[-1].end_time = note.start_time
        melody.append(note)
    if not melody:
        raise AbcError(f"{where}: the tune plays no notes.")
    result = music_pb2.NoteSequence()
    result.ticks_per_quarter = sequence.ticks_per_quarter
    result.tempos.extend(sequence.tempos[:] or [music_pb2.NoteSequence.Tempo(qpm=120.0)])
    result.time_signatures.extend(sequence.time_signatures)
    for note in melody:
        new = result.notes.add()
        new.CopyFrom(note)
        new.instrument, new.program, new.is_drum = 0, 0, False
    result.total_time = max(note.end_time for note in result.notes)
    found = key_and_mode(tune.key)
    if found is not None:
        tonic, mode = found
        enum = music_pb2.NoteSequence.KeySignature
        mode_value = {
            "major": enum.MAJOR,
            "minor": enum.MINOR,
            "dorian": enum.DORIAN,
            "phrygian": enum.PHRYGIAN,
            "lydian": enum.LYDIAN,
            "mixolydian": enum.MIXOLYDIAN,
            "locrian": enum.LOCRIAN,
        }[mode]
        result.key_signatures.add(time=0.0, key=tonic, mode=mode_value)
    result.sequence_metadata.title = tune.title
    if tune.reference.isdigit():
        result.reference_number = int(tune.reference)
    result.source_info.source_type = music_pb2.NoteSequence.SourceInfo.SCORE_BASED
    result.source_info.encoding_type = music_pb2.NoteSequence.SourceInfo.ABC
    result.source_info.parser = music_pb2.NoteSequence.SourceInfo.UNKNOWN_PARSER
    return result


def _abc2midi_reason(done: subprocess.CompletedProcess) -> str:
    text = (done.stdout or b"").decode("utf-8", "replace") + (done.stderr or b"").decode(
        "utf-8", "replace"
    )
    for line in text.splitlines():
        if "rror" in line:
            return one_line(Exception(line.replace("tune.abc", "").strip()), 120)
    return f"exit status {done.returncode}, no MIDI written"


# --------------------------------------------------------------------------------------
# Counting note lengths: the tokenizer behind check_validity
# --------------------------------------------------------------------------------------

_NOTE = re.compile(r"(?:\^\^|\^|__|_|=)?[A-Ga-g][',]*(\d*)(/*)(\d*)")
_REST = re.compile(r"[zx](\d*)(/*)(\d*)")
_MULTI_REST = re.compile(r"Z(\d*)")
_BAR = re.compile(r"(:*)(\[\||\|\]|\|\||\|)([\]|]*)(:*)")
_ENDING = re.compile(r"\[?(\d+(?:[,-]\d+)*)")
_TUPLET = re.compile(r"\((\d+)(?::(\d*))?(?::(\d*))?")
_CHORD = re.compile(r"\[((?:(?:\^\^|\^|__|_|=)?[A-Ga-g][',]*[\d/]*-?\s*)+)\](\d*)(/*)(\d*)")


def _length(digits: str, slashes: str, denominator: str) -> Fraction:
    numerator = int(digits) if digits else 1
    if not slashes:
        return Fraction(numerator)
    if denominator:
        return Fraction(numerator, int(denominator) * 2 ** (len(slashes) - 1))
    return Fraction(numerator, 2 ** len(slashes))


def _meter_fraction(meter: str | None) -> Fraction | None:
    if meter is None:
        return Fraction(4, 4)  # ABC's default is free meter; 4/4 is what tunes mean
    text = meter.strip()
    if text == "C":
        return Fraction(4, 4)
    if text == "C|":
        return Fraction(2, 2)
    match = re.match(r"^\(?([\d+]+)\)?\s*/\s*(\d+)$", text)
    if not match:
        return None  # "none" or unreadable: no bar lengths to check
    numerator = sum(int(part) for part in match.group(1).split("+") if part)
    return Fraction(numerator, int(match.group(2))) if int(match.group(2)) else None


def _unit_fraction(unit: str | None, meter: Fraction | None) -> Fraction:
    if unit:
        match = re.match(r"^\s*(\d+)\s*/\s*(\d+)", unit)
        if match and int(match.group(1)) and int(match.group(2)):
            return Fraction(int(match.group(1)), int(match.group(2)))
    if meter is not None and meter < Fraction(3, 4):
        return Fraction(1, 16)
    return Fraction(1, 8)


@dataclass
class _Bar:
    length: Fraction  # in whole notes
    expected: Fraction | None
    start_mark: str
    end_mark: str
    line: int


@dataclass
class _Scan:
    bars: list[_Bar]
    marks: list[tuple[str, int, bool]]  # (repeat/ending mark, line, music since the last)
    problems: list[str]
    mark_at: list[int]
    """Where each mark starts in the body (a character index), so that a sampler judging
    a tune bar by bar can tell the marks it judged before from the new ones."""
    problem_at: list[int]
    """Where each problem's character is in the body (a character index)."""


def _scan(tune: AbcTune) -> _Scan:
    """Tokenize a tune's body: bar lengths in whole notes, and its repeat/ending marks."""
    meter = _meter_fraction(tune.meter)
    unit = _unit_fraction(tune.unit, meter)
    bars: list[_Bar] = []
    marks: list[tuple[str, int, bool]] = []
    played = False  # a note or rest since the last mark
    problems: list[str] = []
    length = Fraction(0)
    start_mark = "start"
    tuplet_left, tuplet_factor = 0, Fraction(1)
    broken_next = Fraction(1)
    last_length: Fraction | None = None  # the previous note's length (for > <)
    compound = meter is not None and meter.denominator == 8 and meter.numerator % 3 == 0

    def close(mark: str, line_number: int) -> None:
        nonlocal length, start_mark
        bars.append(_Bar(length, meter, start_mark, mark, line_number))
        length = Fraction(0)
        start_mark = mark

    def add(value: Fraction) -> None:
        nonlocal length, tuplet_left, broken_next, last_length, played
        played = True
        value = value * broken_next
        broken_next = Fraction(1)
        if tuplet_left > 0:
            value *= tuplet_factor
            tuplet_left -= 1
        value *= unit
        length += value
        last_length = value

    mark_at: list[int] = []
    problem_at: list[int] = []
    offset = 0  # where the next line starts in the body
    for line_number, raw in enumerate(tune.body.splitlines(keepends=True), start=1):
        line, start, offset = raw.splitlines()[0], offset, offset + len(raw)
        field = _FIELD.match(line)
        if field:
            name, value = field.groups()
            if name == "M":
                meter = _meter_fraction(value)
                compound = meter is not None and meter.denominator == 8 and meter.numerator % 3 == 0
            elif name == "L":
                unit = _unit_fraction(value, meter)
            continue
        i, n = 0, len(line)
        while i < n:
            char = line[i]
            if char in " -\t":
                i += 1
                continue
            if char == '"':
                end = line.find('"', i + 1)
                i = n if end < 0 else end + 1
                continue
            if char == "[" and i + 2 < n and line[i + 2] == ":" and line[i + 1].isalpha():
                end = line.find("]", i)
                end = n if end < 0 else end
                name, value = line[i + 1], line[i + 3 : end]
                if name == "M":
                    meter = _meter_fraction(value)
                elif name == "L":
                    unit = _unit_fraction(value, meter)
                i = end + 1
                continue
            bar = _BAR.match(line, i)
            if bar and not (char == "[" and not line.startswith("[|", i)):
                text = bar.group(0)
                at, i = start + i, bar.end()
                ending = _ENDING.match(line, i) if i < n and line[i].isdigit() else None
                if ending:
                    i = ending.end()
                mark = text
                if length > 0:
                    close(mark, line_number)
                else:
                    start_mark = mark  # two marks with nothing between: one boundary
                if ":" in text or "||" in text or "]" in text or "[" in text:
                    marks.append((text, line_number, played))
                    mark_at.append(at)
                    played = False
                if ending:
                    marks.append(("[" + ending.group(1), line_number, True))
                    mark_at.append(start + ending.start())
                    start_mark = "[" + ending.group(1)
                continue
            if char == ":" and line.startswith("::", i):
                mark_at.append(start + i)
                i += 2
                close("::", line_number)
                marks.append(("::", line_number, played))
                played = False
                continue
            if char == "[" and i + 1 < n and line[i + 1].isdigit():
                ending = _ENDING.match(line, i)
                assert ending is not None
                mark_at.append(start + i)
                i = ending.end()
                marks.append(("[" + ending.group(1), line_number, True))
                if length > 0:
                    close("[" + ending.group(1), line_number)
                start_mark = "[" + ending.group(1)
                continue
            chord = _CHORD.match(line, i) if char == "[" else None
            if chord:
                first = _NOTE.match(chord.group(1).strip())
                inner = _length(*first.groups()) if first else Fraction(1)
                add(inner * _length(chord.group(2), chord.group(3), chord.group(4)))
                i = chord.end()
                continue
            tuplet = _TUPLET.match(line, i) if char == "(" else None
            if tuplet:
                p = int(tuplet.group(1))
                q = int(tuplet.group(2)) if tuplet.group(2) else 0
                if not q:
                    q = {2: 3, 3: 2, 4: 3, 6: 2, 8: 3}.get(p, 3 if compound else 2)
                r = int(tuplet.group(3)) if tuplet.group(3) else p
                if p:
                    tuplet_left, tuplet_factor = r, Fraction(q, p)
                i = tuplet.end()
                continue
            if char in "<>":
                count = len(re.match(r"[<>]+", line[i:]).group(0))
                i += count
                if last_length is None:
                    continue
                dotted = 2 - Fraction(1, 2**count)  # > 3/2, >> 7/4
                short = Fraction(1, 2**count)
                first, second = (dotted, short) if char == ">" else (short, dotted)
                length += last_length * (first - 1)
                broken_next = second
                continue
            note = _NOTE.match(line, i)
            if note:
                add(_length(*note.groups()))
                i = note.end()
                continue
            rest = _REST.match(line, i)
            if rest:
                add(_length(*rest.groups()))
                i = rest.end()
                continue
            multi = _MULTI_REST.match(line, i)
            if multi:
                i = multi.end()
                played = True  # whole bars of rest: no bar length to check
                continue
            problems.append(f"unexpected {char!r} in line {line_number}")
            problem_at.append(start + i)
            i += 1
    if length > 0:
        bars.append(_Bar(length, meter, start_mark, "end", len(tune.body.splitlines())))
    return _Scan(bars, marks, problems, mark_at, problem_at)


def variant_endings(tune: AbcTune | str) -> tuple[int, list[tuple[int, int, str]]]:
    """A tune's bars and its variant endings (``|1``, ``:|2``, ``[1``), for notation that
    draws them: (the number of bars with music, [(first bar, last bar, ending number)],
    bars counted from 0 in written order). An ending runs from the bar it opens to the
    first bar that ends at a repeat sign, a double or final bar, or before another ending.
    """
    if isinstance(tune, str):
        tune = clean_tune(tune)
    bars = _scan(tune).bars
    spans: list[tuple[int, int, str]] = []
    for index, bar in enumerate(bars):
        if not bar.start_mark.startswith("[") or not bar.start_mark[1:2].isdigit():
            continue
        last = index
        while (
            last + 1 < len(bars)
            and not _SECTION.search(bars[last].end_mark)
            and not bars[last + 1].start_mark.startswith("[")
        ):
            last += 1
        spans.append((index, last, bar.start_mark[1:]))
    return len(bars), spans


def _written_quarters(tune: AbcTune) -> float:
    try:
        return float(sum(bar.length for bar in _scan(tune).bars) * 4)
    except Exception:  # noqa: BLE001 - a scan problem is abc2midi's to report
        return 0.0


# --------------------------------------------------------------------------------------
# Validity
# --------------------------------------------------------------------------------------


@dataclass
class Validity:
    """How well-formed one tune is; ``reason`` names the first problem ("" when valid)."""

    parses: bool
    full_bars: bool
    balanced_repeats: bool
    reason: str = ""

    @property
    def valid(self) -> bool:
        """All three: it parses, its full bars are full and its repeats balance."""
        return self.parses and self.full_bars and self.balanced_repeats

    def as_dict(self) -> dict[str, Any]:
        return {
            "parses": self.parses,
            "full_bars": self.full_bars,
            "balanced_repeats": self.balanced_repeats,
            "valid": self.valid,
            "reason": self.reason,
        }


_SECTION = re.compile(r":|\|\||\]|\[|^start$|^end$")


def check_validity(tune: AbcTune | str, sequence: NoteSequence | None = None) -> Validity:
    """Judge one tune (cleaned first if text): does it parse, are its full bars full, do
    its repeats and endings balance?

    full_bars: every bar must last what ``M:`` says, counted in units of ``L:`` (broken
    rhythm, tuplets, chords as one duration, rests, multi-bar rests). The first bar
    (a pickup) and the last may be shorter; so may a bar next to a section mark (a
    repeat sign, a double bar, a variant ending), since tunes split the pickup bar
    across repeats. No bar may be longer. ``M:none`` tunes have no bar lengths to check.

    balanced_repeats: each ``:|`` closes a ``|:`` (a ``:|`` with no ``|:`` repeats from the
    start or the last double bar, once); no ``|:`` is left open; a first ending ``[1``
    is closed by a ``:|`` and a later ending ``[2`` follows a ``:|``.

    ``sequence``: what :func:`parse_tune` already made of this tune, so that it is not
    parsed (abc2midi run) a second time; it parses.
    """
    if isinstance(tune, str):
        try:
            tune = clean_tune(tune)
        except AbcError as exc:
            return Validity(False, False, False, one_line(exc))
    reasons: list[str] = []
    try:
        if sequence is None:
            parse_tune(tune)
        parses = True
    except AbcError as exc:
        parses = False
        reasons.append(one_line(exc))
    scan = _scan(tune)
    full_bars, why = _bars_are_full(scan)
    if why:
        reasons.append(why)
    balanced, why = _repeats_balance(scan.marks)
    if why:
        reasons.append(why)
    return Validity(parses, full_bars, balanced, "; ".join(reasons))


def _bars_are_full(
    scan: _Scan, first: int = 0, whole: bool = True, since: int = 0
) -> tuple[bool, str]:
    """Are the bars full (see :func:`check_validity`)? From bar index ``first`` on;
    ``whole``: the last bar is the tune's last (it may be short), not one of a tune still
    being written. ``since``: an unreadable character is a problem from this index of
    the body on (one before it was judged, and kept, already)."""
    problems = [why for why, at in zip(scan.problems, scan.problem_at, strict=True) if at >= since]
    if problems:
        return False, problems[0]
    bars = scan.bars
    for index, bar in enumerate(bars[first:], start=first):
        if bar.expected is None:
            continue
        if bar.length > bar.expected:
            return (
                False,
                f"bar {index + 1} lasts {_units(bar.length, bar)}, not {_units(bar.expected, bar)}",
            )
        if bar.length == bar.expected or index == 0 or (whole and index == len(bars) - 1):
            continue
        if _SECTION.search(bar.start_mark) or _SECTION.search(bar.end_mark):
            continue
        return (
            False,
            f"bar {index + 1} lasts {_units(bar.length, bar)}, not {_units(bar.expected, bar)}",
        )
    return True, ""


def _units(value: Fraction, bar: _Bar) -> str:
    return f"{value} of a whole note" if value != 1 else "a whole note"


def _repeats_balance(
    marks: list[tuple[str, int, bool]], final: bool = True, first: int = 0
) -> tuple[bool, str]:
    """Do the repeat and ending marks pair up? ``final``: the tune is whole, so a ``|:`` or
    a first ending still open is a problem (not so for a tune still being written).

    ``first``: problems count from mark index ``first`` on. A sampler judging a tune bar
    by bar has kept the marks before it, problems included (its tries ran out, or they
    are the user's opening): each such problem is passed over as abc2midi plays it (a
    ``|:`` opens, a ``[2`` closes the first ending, a section end closes the ``|:``), so
    that it does not make every later bar fail."""
    open_repeat = False
    first_ending_open = False
    last_bar = ""
    for index, (mark, line, played) in enumerate(marks):
        problem = ""
        if mark.startswith("[") and mark[1:2].isdigit():
            number = int(re.match(r"\[(\d+)", mark).group(1))
            if number == 1:
                if first_ending_open:
                    problem = f"line {line}: a second [1 before the first one closed"
                first_ending_open = True
            elif not (last_bar.startswith(":") or last_bar == "::"):
                problem = f"line {line}: ending [{number} does not follow a :|"
                first_ending_open = False
            else:
                first_ending_open = False
            if problem and index >= first:
                return False, problem
            continue
        closes = mark.startswith(":")
        opens = mark.endswith(":") and mark != ":"
        if closes:
            # A :| with no |: repeats from the start or the last section end (a double
            # bar or the previous :|), as abc2midi plays it; with no music since that
            # point it repeats nothing: a :| too many.
            if not open_repeat and not played:
                problem = f"line {line}: a :| with nothing to repeat (a :| too many)"
            open_repeat = False
            first_ending_open = False
        if opens:
            if open_repeat and not problem:
                problem = f"line {line}: a |: while another |: is still open"
            open_repeat = True
        if not closes and not opens and open_repeat and (mark.endswith("]") or "||" in mark):
            problem = f"line {line}: the section ends while a |: is still open"
            open_repeat = False
        if problem and index >= first:
            return False, problem
        last_bar = mark
    if open_repeat and final:
        return False, "a |: is never closed by a :|"
    if first_ending_open and final:
        return False, "a first ending [1 is never closed by a :|"
    return True, ""


_BAR_LINE_OR_SKIPPED = re.compile(
    # What holds a | or : without being a bar line, taken whole so that nothing in it is
    # read as one: a chord symbol or annotation "...", an inline field [K:D], a tuplet
    # (3:2:3; each to its closing character or the end of the line, as _scan reads them.
    r'(?P<skipped>"[^"\n]*"?|\[[A-Za-z]:[^\]\n]*\]?|\(\d+(?::\d*){0,2})'
    # A bar line as _scan reads it (_BAR, or ::), with an ending written on it (|1, :|2,).
    r"|(?P<bar>(?:" + _BAR.pattern + r"|::)(?:\d+(?:[,-]\d+)*)?)"
)
_BAR_LINE_GOES_ON = frozenset("|:]0123456789")
"""Characters that make the bar line before them a longer one (``||``, ``:|:``, ``|]``,
``|1``); after an ending's number ``,`` and ``-`` do too (``|1,3``, ``|1-2``)."""


class BarCheck:
    """The rules of :func:`check_validity` applied while a tune is being written, one bar
    at a time, so that a sampler can write a bar again when the one it wrote does not
    last what ``M:`` and ``L:`` say or opens a repeat it cannot close.

    ``header``: the tune's header lines (up to and including ``K:``), for its meter and
    unit length. :meth:`check` is given the body written so far, ending with a complete
    bar line (the sampler finds it with :meth:`bar_line_end` once the text after a bar
    line is drawn), and judges the bars closed since bar index ``first``; the bar still
    open is not judged.
    """

    @staticmethod
    def bar_line_end(text: str, start: int = 0) -> int:
        """Where the last complete bar line of ``text[start:]`` ends (a character index of
        ``text``), or -1 when it has none: the point up to which a sampler may judge the
        bars (:meth:`check`) of a tune still being written.

        A bar line is complete once a character follows it that cannot make it a longer
        one (:data:`_BAR_LINE_GOES_ON`): ``|`` followed by ``[`` is complete (the ``[``
        opens a chord, an inline field or an ending), ``:|`` followed by ``:`` is not.
        A ``:`` or ``]`` alone is no bar line (a chord's ``]``, an inline field's colon,
        a tuplet's ``(3:2``), nor is anything inside ``"..."``. ``start`` must be where
        no chord symbol, inline field or bar line is open: 0, or an index this returned.
        """
        end = -1
        for match in _BAR_LINE_OR_SKIPPED.finditer(text, start):
            stop = match.end()
            if match.group("bar") is None or stop >= len(text):
                continue
            after = text[stop]
            if after in _BAR_LINE_GOES_ON or (after in ",-" and text[stop - 1].isdigit()):
                continue
            end = stop
        return end

    def __init__(self, header: str) -> None:
        fields = dict(
            match.groups() for line in header.splitlines() if (match := _FIELD.match(line))
        )
        self.header = header if header.endswith("\n") else header + "\n"
        self.meter = fields.get("M", "").strip() or None
        self.unit = fields.get("L", "").strip() or None

    def _tune(self, body: str) -> AbcTune:
        return AbcTune(self.header + body, "", "", self.meter, self.unit, None, None)

    def check(
        self, body: str, first: int = 0, since: int = 0, whole: bool = False
    ) -> tuple[int, str]:
        """(bars closed in ``body``, the first problem of those from index ``first`` on,
        or "").

        ``since``: the characters of ``body`` before this index were judged and kept
        already (the sampler's last bar line, or its opening): a repeat mark or unreadable
        character there is no problem now, even if it was one, so that a problem kept once
        (the tries ran out, or the user's opening has it) does not fail every later bar.
        ``whole``: ``body`` is the finished tune (its last bar may be short, and a ``|:``
        or first ending left open is a problem)."""
        scan = _scan(self._tune(body))
        if not whole and scan.bars and scan.bars[-1].end_mark == "end":
            scan.bars.pop()  # the bar being written
        closed = len(scan.bars)
        full, why = _bars_are_full(scan, first=first, whole=whole, since=since)
        if full:
            judged = bisect.bisect_left(scan.mark_at, since)  # marks before `since`
            _, why = _repeats_balance(scan.marks, final=whole, first=judged)
        return closed, why

    def check_whole(self, body: str) -> Validity:
        """The finished tune, judged as :func:`check_validity` judges it (abc2midi too)."""
        return check_validity(self.header + body)


def validity_rates(tunes: Iterable[AbcTune | str | Validity]) -> dict[str, float | int]:
    """Shares of ``tunes`` that parse, have full bars, balanced repeats, and all three."""
    results = [t if isinstance(t, Validity) else check_validity(t) for t in tunes]
    count = len(results)

    def share(values: Iterable[bool]) -> float:
        return sum(values) / count if count else 0.0

    return {
        "tunes": count,
        "parses": share(r.parses for r in results),
        "full_bars": share(r.full_bars for r in results),
        "balanced_repeats": share(r.balanced_repeats for r in results),
        "valid": share(r.valid for r in results),
    }


# --------------------------------------------------------------------------------------
# Writing ABC
# --------------------------------------------------------------------------------------

ABC_MODE_SUFFIX = {
    # What K: writes after the tonic for each of MelodyGen's modes.
    "major": "",
    "minor": "m",
    "harmonic_minor": "m",
    "dorian": "Dor",
    "phrygian": "Phr",
    "lydian": "Lyd",
    "mixolydian": "Mix",
    "locrian": "Loc",
    "major_pentatonic": "",
    "minor_pentatonic": "m",
}


def to_abc(
    sequence_or_melody: Any,
    title: str = "",
    meter: Any = "4/4",
    key: int | str | None = None,
    mode: str = "major",
    unit: str = "1/8",
    qpm: float | None = None,
) -> str:
    """A monophonic melody on the sixteenth-note grid, written as one ABC tune.

    ``sequence_or_melody``: a note_seq NoteSequence (quantized or not; its times are put on
    the grid at its first tempo), a note_seq ``Melody``, or a list of Magenta melody events
    (pitch, -1 note off, -2 no event), one per sixteenth. ``meter``: "6/8", (6, 8) or a
    :class:`~melodygen.theory.Meter`. ``key``: a tonic (pitch class or name; None: C).
    Notes are spelled in the key (accidentals only where the key signature does not
    give the note; an accidental holds to the end of its bar), split at bar lines with
    ties, and gaps are written as rests ``z``.
    """

    meter_obj = theory.parse_meter(meter) or theory.FOUR_FOUR
    tonic = theory.parse_key(key) if key is not None else None
    if mode not in theory.MODES:
        raise AbcError(f"unknown mode {mode!r}; modes: {', '.join(theory.MODES)}")
    notes, tempo = _grid_notes(sequence_or_melody)
    qpm = qpm or tempo or 120.0
    unit_match = re.match(r"^\s*1\s*/\s*(\d+)\s*$", unit)
    if not unit_match or int(unit_match.group(1)) not in (1, 2, 4, 8, 16):
        raise AbcError(f"unit {unit!r} must be 1/1, 1/2, 1/4, 1/8 or 1/16")
    steps_per_unit = Fraction(theory.STEPS_PER_WHOLE, int(unit_match.group(1)))
    key_pc = 0 if tonic is None else tonic
    fifths = theory.key_signature_fifths(key_pc, mode)
    tonic_name = theory.key_name(key_pc, mode).split()[0]
    signature = theory.signature_alterations(fifths)
    bar_steps = meter_obj.steps_per_bar
    end = max((stop for _, stop, _ in notes), default=0)
    total = -(-end // bar_steps) * bar_steps if end else bar_steps

    # Events per bar: (start, stop, pitch or None for a rest, tied into the next bar)
    bars: list[list[tuple[int, int, int | None, bool]]] = [[] for _ in range(total // bar_steps)]
    cursor = 0
    for start, stop, pitch in [*notes, (total, total, None)]:
        if start > cursor:
            _place(bars, cursor, start, None, bar_steps)
        if pitch is not None:
            _place(bars, start, stop, pitch, bar_steps)
        cursor = max(cursor, stop)
    lines: list[str] = []
    row: list[str] = []
    bars_per_line = max(1, 16 // max(1, bar_steps // 4)) if bar_steps <= 16 else 1
    bars_per_line = min(bars_per_line, 4)
    for index, events in enumerate(bars):
        state: dict[tuple[str, int], int] = {}
        words = []
        for start, stop, pitch, tie in events:
            length = _abc_length(Fraction(stop - start) / steps_per_unit)
            if pitch is None:
                words.append("z" + length)
            else:
                words.append(
                    _spell(pitch, signature, mode, key_pc, state) + length + ("-" if tie else "")
                )
        last = index == len(bars) - 1
        row.append(" ".join(words) + (" |]" if last else " |"))
        if len(row) == bars_per_line or last:
            lines.append(" ".join(row))
            row = []
    meter_text = str(meter_obj)
    header = [
        "X:1",
        f"T:{' '.join(title.split()) or 'Untitled'}",
        f"M:{meter_text}",
        f"L:{unit.strip().replace(' ', '')}",
        f"Q:1/4={round(qpm)}",
        f"K:{tonic_name}{ABC_MODE_SUFFIX[mode]}",
    ]
    return "\n".join(header + lines) + "\n"


def _grid_notes(source: Any) -> tuple[list[tuple[int, int, int]], float | None]:
    """(start step, stop step, pitch) of each note, monophonic, and the tempo if known."""
    from melodygen.theory import STEPS_PER_QUARTER

    if hasattr(source, "notes") and hasattr(source, "tempos"):
        qpm = source.tempos[0].qpm if source.tempos else 120.0
        quantized = source.quantization_info.steps_per_quarter == STEPS_PER_QUARTER
        spans = []
        for note in source.notes:
            if quantized and note.quantized_end_step > note.quantized_start_step:
                start, stop = note.quantized_start_step, note.quantized_end_step
            else:
                start = round(note.start_time * qpm / 60 * STEPS_PER_QUARTER)
                stop = round(note.end_time * qpm / 60 * STEPS_PER_QUARTER)
            if stop > start:
                spans.append((start, stop, note.pitch))
        spans.sort(key=lambda s: (s[0], -s[2]))
        notes: list[tuple[int, int, int]] = []
        for start, stop, pitch in spans:
            if notes and notes[-1][0] == start:
                continue
            if notes and notes[-1][1] > start:
                notes[-1] = (notes[-1][0], start, notes[-1][2])
            notes.append((start, stop, pitch))
        return notes, qpm
    events = list(source)
    notes = []
    current: tuple[int, int] | None = None
    for step, event in enumerate(events):
        if event == NO_EVENT:
            continue
        if current is not None:
            notes.append((current[0], step, current[1]))
            current = None
        if event >= 0:
            current = (step, int(event))
    if current is not None:
        notes.append((current[0], len(events), current[1]))
    return notes, None


def _place(bars: list[list], start: int, stop: int, pitch: int | None, bar_steps: int) -> None:
    while start < stop:
        bar_end = (start // bar_steps + 1) * bar_steps
        piece = min(stop, bar_end)
        for part_start, part_stop in _simple_pieces(start, piece):
            tie = pitch is not None and part_stop < stop
            bars[start // bar_steps].append((part_start, part_stop, pitch, tie))
        start = piece


def _simple_pieces(start: int, stop: int) -> list[tuple[int, int]]:
    """A span inside one bar as lengths ABC writes plainly (1, 2, 3, 4, 6, 8, 12, 16 steps...)."""
    pieces = []
    while start < stop:
        length = stop - start
        for size in (16, 12, 8, 6, 4, 3, 2, 1):
            if size <= length:
                break
        if length not in (16, 12, 8, 6, 4, 3, 2, 1) and length < 64:
            length = size
        pieces.append((start, start + length))
        start += length
    return pieces


def _abc_length(units: Fraction) -> str:
    if units == 1:
        return ""
    if units.denominator == 1:
        return str(units.numerator)
    if units.numerator == 1:
        return "/" * 1 if units.denominator == 2 else f"/{units.denominator}"
    return f"{units.numerator}/{units.denominator}"


def _spell(pitch: int, signature: dict[str, int], mode: str, tonic: int, state: dict) -> str:
    """One pitch as an ABC note in the key (:func:`melodygen.theory.spell`), with an
    accidental only where the bar's earlier notes and the key signature need one."""
    letter, alter, octave = theory.spell(pitch, tonic, mode)
    # ABC 2.1 keeps an accidental for that octave to the bar's end; abc2midi for every
    # octave of the letter. Write one wherever either reading would differ, so both agree.
    default = signature.get(letter, 0)
    in_octave = state.get((letter, octave), default)
    any_octave = state.get(letter, default)
    accidental = ""
    if alter != in_octave or alter != any_octave:
        accidental = {1: "^", -1: "_", 0: "=", 2: "^^", -2: "__"}[alter]
        state[(letter, octave)] = alter
        state[letter] = alter
    if octave >= 5:
        text = letter.lower() + "'" * (octave - 5)
    else:
        text = letter + "," * (4 - octave)
    return accidental + text


def tunes_in(paths: Sequence[str | Path], chords: bool = False) -> list[AbcTune]:
    """Every tune that cleans in ``paths`` (tunebooks), in order; refused tunes left out."""
    tunes: list[AbcTune] = []
    for path in paths:
        found, _ = read_tunebook(path, chords=chords)
        tunes.extend(found)
    return tunes
