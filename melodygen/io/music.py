"""Reading music files and pulling monophonic training melodies out of them.

This is the data front end of MelodyGen. It turns MIDI and ABC files into note_seq
``NoteSequence`` protos, and those into quantized ``note_seq.Melody`` objects the way
Magenta's Melody RNN pipeline does (split on tempo/time-signature changes, quantize,
``extract_melodies``), so that models trained here see the same kind of data as Magenta's.

Every problem with an input file surfaces as an :class:`InputFileError` whose message
names the file and says what is wrong, never as a traceback from note_seq, pretty_midi
or mido.
"""

from __future__ import annotations

import collections
import copy
import io
import math
import struct
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np
import pretty_midi
from mido.messages.specs import SPEC_BY_STATUS

from melodygen.errors import InputFileError, one_line
from melodygen.limits import PRIMER_MIDI, MidiLimitError, MidiLimits, check_file_size
from melodygen.theory import STEPS_PER_QUARTER  # the grid, re-exported: 4 per quarter note

with warnings.catch_warnings():
    # note_seq imports pydub, which warns about a missing ffmpeg that MelodyGen never needs.
    warnings.simplefilter("ignore")
    import note_seq
    from note_seq import chord_symbols_lib, midi_io, sequences_lib
    from note_seq.protobuf.music_pb2 import NoteSequence

_PRETTY_MIDI_WARNING = "Tempo, Key or Time signature change events found on non-zero tracks"
"""The one warning reading a MIDI file gives (pretty_midi, harmless: MelodyGen reads the
meta events of every track itself); silenced for the process, once, at import."""
warnings.filterwarnings(
    "ignore", message=_PRETTY_MIDI_WARNING, category=RuntimeWarning, module="pretty_midi"
)

__all__ = [
    "DEFAULT_EXTRACTION_PARAMS",
    "MUSIC_SUFFIXES",
    "STEPS_PER_QUARTER",
    "ExtractionParams",
    "extract_melodies",
    "find_music_files",
    "MidiScan",
    "check_sequence_limits",
    "load_note_sequences",
    "melody_instruments",
    "scan_midi_bytes",
    "transposed_sequences",
]

MUSIC_SUFFIXES = (".mid", ".midi", ".abc")
"""File name endings (compared case-insensitively) that MelodyGen knows how to read."""

MIDI_SUFFIXES = (".mid", ".midi")
MELODY_TRACK_NAME = "melody"
"""A track with this name (case-insensitive, stripped) is the lead line, as in POP909."""

_MIN_PITCH = note_seq.MIN_MIDI_PITCH
_MAX_PITCH = note_seq.MAX_MIDI_PITCH
_CHORD_SYMBOL = NoteSequence.TextAnnotation.CHORD_SYMBOL
_MAX_REASON_CHARS = 160


@dataclass
class ExtractionParams:
    """Melody extraction settings; the defaults are those of Magenta's Melody RNN pipeline."""

    min_bars: int = 7
    """Melodies shorter than this many bars are dropped (too little context to learn from)."""
    max_steps: int = 512
    """Longer melodies are cut to the last bar line at or below this many steps."""
    min_unique_pitches: int = 5
    """Melodies using fewer pitch classes are dropped (they are usually accompaniment figures)."""
    gap_bars: float = 1.0
    """A rest of this many bars or more ends a melody; the next note starts a new one."""
    steps_per_quarter: int = STEPS_PER_QUARTER
    """Quantization grid used before extraction."""
    time_signature: tuple[int, int] | None = None
    """Read every file in this meter, e.g. (4, 4), at one tempo (see :func:`in_one_meter`).

    For collections whose files declare a meter the music is not in: POP909
    declares 1/4 or 2/4 and follows the recording with many tempo changes, so
    Magenta's rules (a bar of 1 beat, a new piece at each tempo change) cut its
    songs into fragments. None keeps each file's own meter and tempos.
    """


DEFAULT_EXTRACTION_PARAMS = ExtractionParams()
"""Shared default for :func:`extract_melodies`; never modified by this module."""


# --------------------------------------------------------------------------------------
# Finding and reading files
# --------------------------------------------------------------------------------------


def find_music_files(inputs: Iterable[str | Path] | str | Path) -> list[Path]:
    """Expand folders (recursively) and files into a sorted list of .mid/.midi/.abc files.

    Users point the CLI at a mix of files and folders; this gives one de-duplicated, sorted
    list so that datasets are built in a reproducible order. Hidden files and folders
    (names starting with ".", e.g. macOS "._x.mid" resource forks) found while walking a
    folder are skipped, since they are never real music files.

    Raises:
        InputFileError: a path does not exist, a file named explicitly is not a music
            file, or a folder holds no music files at all.
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]  # one path given on its own, not a list of them
    found: set[Path] = set()
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            in_folder = [
                p
                for p in path.rglob("*")
                if p.suffix.lower() in MUSIC_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            ]
            if not in_folder:
                raise InputFileError(
                    f"{path}: this folder (searched with all its subfolders) contains no "
                    f"music files; expected files ending in {_suffix_list()}."
                )
            found.update(in_folder)
        elif path.is_file():
            if path.suffix.lower() not in MUSIC_SUFFIXES:
                raise InputFileError(
                    f"{path}: unsupported file type '{path.suffix or '(none)'}'; "
                    f"MelodyGen reads files ending in {_suffix_list()}."
                )
            found.add(path)
        elif path.exists():
            raise InputFileError(f"{path}: not a regular file or folder.")
        else:
            raise InputFileError(f"{path}: no such file or folder.")
    return sorted(found)


def load_note_sequences(path: str | Path, limits: MidiLimits = PRIMER_MIDI) -> list[NoteSequence]:
    """MIDI file -> [one NoteSequence]; ABC file -> one NoteSequence per tune in it.

    ABC tunebooks hold many tunes, so the result is always a list. Tunes the ABC parser
    cannot handle (note_seq does not support tuplets, grace notes, parts, variant endings,
    ...) are skipped as long as at least one tune in the file parses; repeats of the tunes
    that parse are written out in full, as they are played. Each sequence has ``filename``
    set to the path; ABC tunes also get ``id`` "<path>#X<reference number>".

    ``limits`` bound what a file may hold (:mod:`melodygen.limits`): its size is checked
    before it is read, and a MIDI file's notes, length, tempos and ticks before
    pretty_midi or note_seq see it. The default is the primer limits; dataset building
    passes the looser :data:`~melodygen.limits.DATASET_MIDI`.

    Raises:
        InputFileError: the file is missing, empty, of an unsupported type, not MIDI,
            truncated or corrupt, or (ABC) holds no tune that could be parsed.
        MidiLimitError: (an InputFileError) the file is beyond ``limits``.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file.")
    if not path.is_file():
        raise InputFileError(f"{path}: is a folder or special file, not a music file.")
    suffix = path.suffix.lower()
    if suffix not in MUSIC_SUFFIXES:
        raise InputFileError(
            f"{path}: unsupported file type '{path.suffix or '(none)'}'; "
            f"MelodyGen reads files ending in {_suffix_list()}."
        )
    try:
        check_file_size(str(path), path.stat().st_size, limits)
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"{path}: could not be read ({exc.strerror or exc}).") from None
    if not data:
        raise InputFileError(f"{path}: the file is empty (0 bytes).")
    if suffix in MIDI_SUFFIXES:
        return [_midi_bytes_to_sequence(path, data, limits)]
    return _abc_bytes_to_sequences(path, data, limits)


def check_sequence_limits(sequence: NoteSequence, limits: MidiLimits, where: str) -> None:
    """Hold a parsed sequence (an ABC tune, a MusicXML score) to the limits a MIDI file
    meets: notes, length in time and tempos. Melody extraction makes a list entry for every
    sixteenth step up to the last note, so a 47-byte tune holding one note for 300
    million quarters would take about 10 GB; tempos within range and a bounded length
    bound the steps (3 hours at 1000 BPM is 720,000 of them).

    Raises:
        MidiLimitError: the sequence is beyond ``limits``.
    """
    what = limits.what
    for tempo in sequence.tempos:
        if not limits.min_bpm <= tempo.qpm <= limits.max_bpm:
            raise MidiLimitError(
                f"{where}: it sets a tempo of {tempo.qpm:.4g} BPM; {what} may use tempos "
                f"from {limits.min_bpm:g} to {limits.max_bpm:g} BPM."
            )
    notes = sum(1 for note in sequence.notes if note.velocity > 0)
    if notes > limits.max_notes:
        raise MidiLimitError(
            f"{where} holds {notes:,} notes; {what} may hold at most {limits.max_notes:,}."
        )
    seconds = max((note.end_time for note in sequence.notes), default=0.0)
    if not seconds <= limits.max_seconds:  # NaN too
        shown = _hours_minutes(seconds) if math.isfinite(seconds) else "forever"
        raise MidiLimitError(
            f"{where} runs for {shown}; {what} may be at most "
            f"{_hours_minutes(limits.max_seconds)} long (a note held far too long?)."
        )


def _midi_bytes_to_sequence(
    path: str | Path, data: bytes, limits: MidiLimits = PRIMER_MIDI
) -> NoteSequence:
    """Check MIDI bytes against ``limits``, then parse and convert; every failure in words.

    The bytes are scanned first (:func:`scan_midi_bytes`, no allocation by the file's
    length), then parsed once with mido, whose result pretty_midi converts: a file
    beyond the limits never reaches the code that allocates by its length.
    """
    if data[:4] not in (b"MThd", b"RIFF"):
        raise InputFileError(
            f"{path}: not a MIDI file (it does not start with a MIDI header), "
            "although its name ends in "
            f"'{Path(path).suffix}'."
        )
    scan = scan_midi_bytes(path, data, limits)
    try:
        # pretty_midi's warning about meta events on non-zero tracks is silenced once,
        # for the process (_PRETTY_MIDI_WARNING): this runs in thread pools, where
        # warnings.catch_warnings() would swap the process's filters under other threads.
        parsed = mido.MidiFile(file=io.BytesIO(data), charset="latin1")
        last_tick = max((sum(m.time for m in track) for track in parsed.tracks), default=0)
        if last_tick != scan.last_tick:  # the scan must have read what mido read
            raise ValueError(f"events end at tick {last_tick}, not {scan.last_tick}")
        midi = pretty_midi.PrettyMIDI(mido_object=parsed)
        sequence = midi_io.midi_to_note_sequence(midi)
    except EOFError:
        raise InputFileError(
            f"{path}: the MIDI file is truncated or corrupt (the data ends in the middle "
            "of a track)."
        ) from None
    except Exception as exc:  # noqa: BLE001 - pretty_midi/mido raise almost anything
        raise InputFileError(
            f"{path}: the MIDI file is corrupt or uses features that cannot be read "
            f"({_reason(exc)})."
        ) from None
    sequence.filename = str(path)
    return sequence


@dataclass(frozen=True)
class MidiScan:
    """What a MIDI file holds, read from its bytes without building any message."""

    ticks_per_beat: int
    tracks: int
    notes: int
    """Note-ons with a velocity above 0."""
    last_tick: int
    """Tick of the last event of the longest track."""
    seconds: float
    """Time of ``last_tick`` at the tempos of the first track (as pretty_midi reads them)."""
    tempo_changes: int
    """Tempo and time-signature events in all tracks."""


class _Truncated(Exception):
    """The data ends inside a chunk (mido raises EOFError there)."""


_MAX_VLQ_BYTES = 4  # the standard's longest variable-length number (2**28 - 1)


def scan_midi_bytes(where: str | Path, data: bytes, limits: MidiLimits = PRIMER_MIDI) -> MidiScan:
    """Read a standard MIDI file's events as mido would, counting, and check ``limits``.

    Cheap and linear in the file's size: no message objects, no tick table. The walk
    follows mido's reader step for step (chunk headers, running status, message
    lengths from mido's own table), so the figures are those of the file pretty_midi
    will read. Variable-length numbers longer than the standard's 4 bytes are refused
    here: mido reads them without end, in time that grows with the square of their
    length (a 1 MB file of them takes minutes).

    Raises:
        InputFileError: the file is truncated or corrupt.
        MidiLimitError: (an InputFileError) its size, time base, tempos, notes, length
            in time, ticks or tempo changes are beyond ``limits``; one line says which.
    """
    check_file_size(str(where), len(data), limits)
    try:
        scan, tempos_out_of_range = _walk_midi(data, limits)
    except _Truncated:
        raise InputFileError(
            f"{where}: the MIDI file is truncated or corrupt (the data ends in the middle "
            "of a track)."
        ) from None
    except ValueError as exc:
        raise InputFileError(
            f"{where}: the MIDI file is corrupt or uses features that cannot be read "
            f"({_reason(exc)})."
        ) from None
    what = limits.what
    if not 1 <= scan.ticks_per_beat <= limits.max_ticks_per_beat:
        smpte = " (SMPTE time code, not supported)" if scan.ticks_per_beat < 0 else ""
        raise MidiLimitError(
            f"{where}: its time base is {scan.ticks_per_beat} ticks per beat{smpte}; "
            f"MelodyGen reads 1 to {limits.max_ticks_per_beat:,} ticks per beat."
        )
    if tempos_out_of_range:
        bpm, tick = tempos_out_of_range
        shown = "infinite" if math.isinf(bpm) else f"{bpm:,.0f}" if bpm >= 100 else f"{bpm:.3g}"
        raise MidiLimitError(
            f"{where}: it sets a tempo of {shown} BPM (at beat "
            f"{tick // scan.ticks_per_beat + 1:,}); {what} may use tempos from "
            f"{limits.min_bpm:g} to {limits.max_bpm:g} BPM."
        )
    if scan.notes > limits.max_notes:
        raise MidiLimitError(
            f"{where} holds {scan.notes:,} notes; {what} may hold at most {limits.max_notes:,}."
        )
    if scan.seconds > limits.max_seconds:
        raise MidiLimitError(
            f"{where} runs for {_hours_minutes(scan.seconds)}; {what} may be at most "
            f"{_hours_minutes(limits.max_seconds)} long (a note held far too long, or a "
            "damaged file?)."
        )
    if scan.last_tick > limits.max_ticks:
        raise MidiLimitError(
            f"{where}: its events run to tick {scan.last_tick:,}; {what} may span at most "
            f"{limits.max_ticks:,} ticks (at {scan.ticks_per_beat:,} ticks per beat, "
            f"{limits.max_ticks // scan.ticks_per_beat:,} beats)."
        )
    if scan.tempo_changes > limits.max_tempo_changes:
        raise MidiLimitError(
            f"{where} changes tempo or meter {scan.tempo_changes:,} times; {what} may do so "
            f"at most {limits.max_tempo_changes:,} times."
        )
    if scan.notes * scan.tempo_changes > limits.max_note_changes:
        raise MidiLimitError(
            f"{where} has {scan.notes:,} notes and {scan.tempo_changes:,} tempo or meter "
            f"changes; {what} may have at most {limits.max_note_changes:,} notes x changes "
            "(the notes are split at every change)."
        )
    return scan


def _walk_midi(data: bytes, limits: MidiLimits) -> tuple[MidiScan, tuple[float, int] | None]:
    """The walk of :func:`scan_midi_bytes`: figures, and the first tempo out of range.

    Mirrors ``mido.midifiles.midifiles.MidiFile._load`` / ``read_track``: raises
    _Truncated where mido raises EOFError and ValueError where it raises anything else.
    """
    size = len(data)

    def chunk_header(position: int) -> tuple[bytes, int, int]:
        if position + 8 > size:
            raise _Truncated
        name = data[position : position + 4]
        return name, int.from_bytes(data[position + 4 : position + 8], "big"), position + 8

    def number(position: int) -> tuple[int, int]:
        value = 0
        for _ in range(_MAX_VLQ_BYTES):
            if position >= size:
                raise _Truncated
            byte = data[position]
            position += 1
            value = (value << 7) | (byte & 0x7F)
            if byte < 0x80:
                return value, position
        raise ValueError("a time or length value is longer than the 4 bytes MIDI allows")

    name, header_size, position = chunk_header(0)
    if name != b"MThd":
        raise ValueError("MThd not found. Probably not a MIDI file")
    if header_size < 6 or position + 6 > size:
        raise _Truncated
    _, track_count, ticks_per_beat = struct.unpack(">hhh", data[position : position + 6])
    position += header_size

    notes = tempo_changes = last_tick = 0
    first_track_tempos: list[tuple[int, int]] = []
    out_of_range: tuple[float, int] | None = None
    for track in range(max(track_count, 0)):
        name, track_size, position = chunk_header(position)
        if name != b"MTrk":
            raise ValueError("no MTrk header at start of track")
        start, tick, running = position, 0, None
        while position - start != track_size:
            delta, position = number(position)
            tick += delta
            if position >= size:
                raise _Truncated
            status = data[position]
            position += 1
            peeked = 0
            if status < 0x80:
                if running is None:
                    raise ValueError("running status without last_status")
                status, peeked = running, 1
            elif status != 0xFF:
                running = status
            if status == 0xFF:
                if position >= size:
                    raise _Truncated
                meta_type = data[position]
                length, position = number(position + 1)
                if length > mido.midifiles.midifiles.MAX_MESSAGE_LENGTH:
                    raise ValueError(f"a message of {length:,} bytes is longer than allowed")
                if position + length > size:
                    raise _Truncated
                if meta_type == 0x51 and length >= 3:
                    tempo = int.from_bytes(data[position : position + 3], "big")
                    tempo_changes += 1
                    bpm = 60_000_000 / tempo if tempo else math.inf
                    if out_of_range is None and not limits.min_bpm <= bpm <= limits.max_bpm:
                        out_of_range = (bpm, tick)
                    if track == 0:
                        first_track_tempos.append((tick, tempo))
                elif meta_type == 0x58:
                    tempo_changes += 1
                position += length
            elif status in (0xF0, 0xF7):
                length, position = number(position)
                if length > mido.midifiles.midifiles.MAX_MESSAGE_LENGTH:
                    raise ValueError(f"a message of {length:,} bytes is longer than allowed")
                if position + length > size:
                    raise _Truncated
                position += length
            else:
                spec = SPEC_BY_STATUS.get(status)
                if spec is None:
                    raise ValueError(f"undefined status byte 0x{status:02x}")
                length = spec["length"] - 1 - peeked
                if position + length > size:
                    raise _Truncated
                if status & 0xF0 == 0x90 and data[position + length - 1] > 0:
                    notes += 1  # a note-on; its velocity is the last data byte
                position += length
        last_tick = max(last_tick, tick)
    seconds = _seconds_at(last_tick, first_track_tempos, ticks_per_beat)
    scan = MidiScan(
        ticks_per_beat=ticks_per_beat,
        tracks=max(track_count, 0),
        notes=notes,
        last_tick=last_tick,
        seconds=seconds,
        tempo_changes=tempo_changes,
    )
    return scan, out_of_range


def _seconds_at(tick: int, tempos: list[tuple[int, int]], ticks_per_beat: int) -> float:
    """Seconds from the start to ``tick`` under a tempo map of (tick, microseconds per beat)."""
    if ticks_per_beat < 1:
        return 0.0  # refused for its time base; no length to give
    seconds, previous, per_beat = 0.0, 0, 500_000  # MIDI's default tempo, 120 BPM
    for change_tick, tempo in sorted(tempos, key=lambda item: item[0]):
        if change_tick >= tick:
            break
        seconds += (change_tick - previous) * per_beat
        previous, per_beat = change_tick, tempo
    seconds += (tick - previous) * per_beat
    return seconds / ticks_per_beat / 1e6


def _hours_minutes(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{max(minutes, 1)} minute{'s' if minutes != 1 else ''}"
    hours, minutes = divmod(minutes, 60)
    text = f"{hours:,} hour{'s' if hours != 1 else ''}"
    return text + (f" {minutes} minute{'s' if minutes != 1 else ''}" if minutes else "")


def _abc_bytes_to_sequences(
    path: Path, data: bytes, limits: MidiLimits = PRIMER_MIDI
) -> list[NoteSequence]:
    """An ABC tunebook's tunes that parse and have notes, each parsed by abc2midi
    (:func:`melodygen.io.abc.parse_tune`: repeats and endings played as written out) and
    carrying its canonical text (:data:`melodygen.io.abc.ABC_TEXT_PREFIX`)."""
    from melodygen.io.abc import (
        ABC_TEXT_PREFIX,
        AbcError,
        decode_abc_bytes,
        parse_tune,
        require_abc2midi,
        tunebook_tunes,
    )

    try:
        require_abc2midi()
    except AbcError as error:
        raise InputFileError(f"{path}: {error}") from None
    text = decode_abc_bytes(data, str(path))
    tunes, refused = tunebook_tunes(text, str(path))
    if not tunes and not refused:
        if not text.strip():
            raise InputFileError(f"{path}: the ABC file contains no tunes (only blank lines).")
        raise InputFileError(
            f"{path}: no tune in this ABC file could be parsed: it has no X: or K: field"
        )
    sequences: list[NoteSequence] = []
    problems = [reason for _, reason in refused]
    for tune in tunes:
        try:
            sequence = parse_tune(tune)
            check_sequence_limits(sequence, limits, f"tune {tune.reference}")
        except (AbcError, MidiLimitError) as exc:
            problems.append(one_line(exc))
            continue
        if any(note.velocity > 0 for note in sequence.notes):
            sequence.text_annotations.add(time=0.0, text=ABC_TEXT_PREFIX + tune.text)
            sequence.filename = str(path)
            sequence.id = f"{path}#X{sequence.reference_number}"
            sequences.append(sequence)
    if not sequences:
        if problems:
            count = len(problems)
            raise InputFileError(
                f"{path}: no tune in this ABC file could be parsed "
                f"({count} tune{'s' if count != 1 else ''} tried); first problem: "
                f"{problems[0]}"
            )
        raise InputFileError(f"{path}: the ABC file contains no notes.")
    return sequences


def _reason(exc: BaseException) -> str:
    """One short line describing a library exception, without a traceback."""
    return one_line(exc, _MAX_REASON_CHARS)


def _suffix_list() -> str:
    return ", ".join(MUSIC_SUFFIXES)


# --------------------------------------------------------------------------------------
# Melody extraction (Magenta's melody_pipelines.extract_melodies on top of note_seq)
# --------------------------------------------------------------------------------------


def melody_instruments(sequence: NoteSequence) -> set[int] | None:
    """Instrument numbers of tracks named "MELODY" that hold pitched notes, or None.

    POP909 (and many pop MIDI files) label the lead line "MELODY"; extracting from the
    accompaniment as well would flood the data with piano figures, so such files are
    restricted to their melody track(s). None means "no such track: use every track".
    """
    named = {
        info.instrument
        for info in sequence.instrument_infos
        if info.name.strip().lower() == MELODY_TRACK_NAME
    }
    if not named:
        return None
    with_notes = {
        note.instrument
        for note in sequence.notes
        if note.instrument in named and not note.is_drum and note.velocity > 0
    }
    return with_notes or None


def extract_melodies(
    sequence: NoteSequence, params: ExtractionParams = DEFAULT_EXTRACTION_PARAMS
) -> tuple[list[note_seq.Melody], collections.Counter]:
    """Quantize and pull monophonic melodies out, Magenta style.

    Returns the melodies and a Counter of why melodies were dropped (and how many were cut).

    Follows Magenta's Melody RNN data pipeline: the sequence is split at tempo and
    time-signature changes (``TimeChangeSplitter``), each piece is quantized to
    ``params.steps_per_quarter`` (``Quantizer``), and ``extract_melodies`` runs on each
    piece, instrument by instrument: drums are skipped, of notes starting together only
    the highest is kept, a rest of ``gap_bars`` bars ends a melody and the search goes on
    from the next bar line, melodies shorter than ``min_bars`` bars are dropped, longer
    than ``max_steps`` are cut at a bar line, and those with fewer than
    ``min_unique_pitches`` pitch classes are dropped. If the sequence has a track named
    "MELODY", only that track is used (see :func:`melody_instruments`).

    An already (relatively) quantized sequence is used as it is, without splitting; an
    absolutely quantized one (steps per second) is refused with
    'sequences_discarded_because_absolute_quantized'.

    The Counter uses Magenta's statistic names where Magenta has them:
    'melodies_discarded_too_short', 'melodies_discarded_too_few_pitches',
    'melodies_truncated' (kept, but cut), 'polyphonic_tracks_discarded',
    'non_integer_steps_per_bar', 'sequences_discarded_because_multiple_tempos',
    'sequences_discarded_because_multiple_time_signatures',
    'sequences_discarded_because_bad_time_signature'; plus 'no_pitched_notes',
    'sequences_discarded_because_negative_time', 'sequences_discarded_because_bad_notes',
    and 'tracks_ignored_not_melody' (tracks skipped because a MELODY track exists).
    Extraction never raises for musical content; an unusable sequence just yields ``[]``.
    """
    stats: collections.Counter = collections.Counter()
    melodies: list[note_seq.Melody] = []

    if not any(not note.is_drum and note.velocity > 0 for note in sequence.notes):
        stats["no_pitched_notes"] += 1
        return melodies, stats

    chosen = melody_instruments(sequence)
    if chosen is not None:
        others = {n.instrument for n in sequence.notes if not n.is_drum} - chosen
        if others:
            stats["tracks_ignored_not_melody"] += len(others)

    if params.time_signature is not None and not sequences_lib.is_quantized_sequence(sequence):
        sequence = in_one_meter(sequence, *params.time_signature)
    for piece in _quantized_pieces(sequence, params.steps_per_quarter, stats):
        melodies.extend(_extract_from_quantized(piece, chosen, params, stats))
    return melodies, stats


def in_one_meter(sequence: NoteSequence, numerator: int, denominator: int) -> NoteSequence:
    """A copy in one meter and one tempo, every event at the same beat as before.

    Times are mapped to beats through the sequence's own tempo map, then back
    to seconds at the first tempo, so a file whose tempo follows a recording
    keeps its notes on the beat grid; all time signatures are replaced by
    ``numerator/denominator`` at time 0.
    """
    tempos = sorted(sequence.tempos, key=lambda tempo: tempo.time)
    changes = [(0.0, tempos[0].qpm if tempos and tempos[0].time <= 0 else 120.0)]
    for tempo in tempos:
        if tempo.time > 0 and tempo.qpm > 0:
            changes.append((tempo.time, tempo.qpm))
    starts = np.array([time for time, _ in changes])
    qpms = np.array([qpm for _, qpm in changes])
    beats_at_start = np.concatenate([[0.0], np.cumsum(np.diff(starts) * qpms[:-1] / 60.0)])
    seconds_per_beat = 60.0 / qpms[0]

    def remap(times: list[float]) -> list[float]:
        times = np.asarray(times, dtype=np.float64)
        index = np.maximum(np.searchsorted(starts, times, side="right") - 1, 0)
        beats = beats_at_start[index] + (times - starts[index]) * qpms[index] / 60.0
        return (beats * seconds_per_beat).tolist()

    result = copy.deepcopy(sequence)
    note_starts = remap([note.start_time for note in result.notes])
    note_ends = remap([note.end_time for note in result.notes])
    for note, start, end in zip(result.notes, note_starts, note_ends, strict=True):
        note.start_time, note.end_time = start, end
    annotation_times = remap([annotation.time for annotation in result.text_annotations])
    for annotation, time in zip(result.text_annotations, annotation_times, strict=True):
        annotation.time = time
    del result.tempos[:]
    result.tempos.add(time=0.0, qpm=float(qpms[0]))
    del result.time_signatures[:]
    result.time_signatures.add(time=0.0, numerator=numerator, denominator=denominator)
    result.total_time = max((note.end_time for note in result.notes), default=0.0)
    return result


def _quantized_pieces(
    sequence: NoteSequence, steps_per_quarter: int, stats: collections.Counter
) -> Iterator[NoteSequence]:
    """Split at tempo/time-signature changes and quantize each piece (Magenta's order)."""
    if sequences_lib.is_relative_quantized_sequence(sequence):
        yield sequence
        return
    if sequences_lib.is_quantized_sequence(sequence):
        stats["sequences_discarded_because_absolute_quantized"] += 1
        return

    last_end = max((note.end_time for note in sequence.notes), default=0.0)
    if sequence.total_time < last_end:
        # Hand-built sequences may leave total_time unset; the splitter relies on it.
        sequence = copy.deepcopy(sequence)
        sequence.total_time = last_end

    for piece in sequences_lib.split_note_sequence_on_time_changes(sequence):
        if not piece.notes:
            continue
        try:
            yield sequences_lib.quantize_note_sequence(piece, steps_per_quarter)
        except sequences_lib.MultipleTimeSignatureError:
            stats["sequences_discarded_because_multiple_time_signatures"] += 1
        except sequences_lib.MultipleTempoError:
            stats["sequences_discarded_because_multiple_tempos"] += 1
        except sequences_lib.BadTimeSignatureError:
            stats["sequences_discarded_because_bad_time_signature"] += 1
        except sequences_lib.NegativeTimeError:
            stats["sequences_discarded_because_negative_time"] += 1


def _extract_from_quantized(
    quantized: NoteSequence,
    instruments: set[int] | None,
    params: ExtractionParams,
    stats: collections.Counter,
) -> list[note_seq.Melody]:
    """Magenta's ``extract_melodies`` on one quantized piece (ignore_polyphonic_notes=True)."""
    steps_per_bar_float = sequences_lib.steps_per_bar_in_quantized_sequence(quantized)
    if steps_per_bar_float % 1 != 0:
        stats["non_integer_steps_per_bar"] += 1
        return []
    steps_per_bar = int(steps_per_bar_float)
    meter = _piece_meter(quantized, steps_per_bar, params.steps_per_quarter)

    candidates = sorted(
        {
            note.instrument
            for note in quantized.notes
            if not note.is_drum and (instruments is None or note.instrument in instruments)
        }
    )
    melodies: list[note_seq.Melody] = []
    for instrument in candidates:
        search_start_step = 0
        while True:
            melody = note_seq.Melody()
            try:
                melody.from_quantized_sequence(
                    quantized,
                    search_start_step=search_start_step,
                    instrument=instrument,
                    gap_bars=params.gap_bars,
                    ignore_polyphonic_notes=True,
                    pad_end=False,
                    filter_drums=True,
                )
            except note_seq.PolyphonicMelodyError:
                stats["polyphonic_tracks_discarded"] += 1
                break
            except note_seq.BadNoteError:
                stats["sequences_discarded_because_bad_notes"] += 1
                break
            if not melody:
                break
            # Go on searching from the next bar line at or after the melody's end.
            search_start_step = melody.end_step + (-melody.end_step) % steps_per_bar

            if len(melody) < melody.steps_per_bar * params.min_bars:
                stats["melodies_discarded_too_short"] += 1
                continue

            if params.max_steps and len(melody) > params.max_steps:
                truncated_length = params.max_steps - params.max_steps % melody.steps_per_bar
                melody.set_length(truncated_length or params.max_steps)
                stats["melodies_truncated"] += 1

            unique_pitch_classes = sum(1 for count in melody.get_note_histogram() if count)
            if unique_pitch_classes < params.min_unique_pitches:
                stats["melodies_discarded_too_few_pitches"] += 1
                continue

            melody.time_signature = meter  # read back by melody_meter
            melodies.append(melody)
    return melodies


_GRID_DENOMINATORS = (1, 2, 4, 8, 16)
"""Beat units a meter on the sixteenth-note grid may have (as :class:`melodygen.theory.Meter`)."""


def _piece_meter(
    quantized: NoteSequence, steps_per_bar: int, steps_per_quarter: int
) -> tuple[int, int]:
    """The (numerator, denominator) of a quantized piece: its one time signature (a MIDI
    file's, an ABC tune's ``M:``), 4/4 without one; a beat unit the sixteenth-note grid has
    no name for (1/32) is written as the bar's sixteenths over 16, the same bar length."""
    if quantized.time_signatures:
        signature = quantized.time_signatures[0]
        if signature.numerator >= 1 and signature.denominator in _GRID_DENOMINATORS:
            return int(signature.numerator), int(signature.denominator)
    if not quantized.time_signatures:
        return 4, 4
    sixteenths = steps_per_bar * 4 // max(1, steps_per_quarter)
    return max(1, sixteenths), 16


def melody_meter(melody: note_seq.Melody) -> tuple[int, int]:
    """The time signature (numerator, denominator) a melody of :func:`extract_melodies` was
    extracted in, read from its file; a melody made otherwise gets the one its bar length
    implies (16 steps of a sixteenth note: 4/4, 12: 3/4, 8: 2/4)."""
    meter = getattr(melody, "time_signature", None)
    if meter is not None:
        return meter
    steps = int(melody.steps_per_bar) * 4 // max(1, int(melody.steps_per_quarter))
    return (steps // 4, 4) if steps % 4 == 0 else (max(1, steps), 16)


# --------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------


def transposed_sequences(
    sequence: NoteSequence, transpositions: Iterable[int]
) -> list[NoteSequence]:
    """Copies of ``sequence`` shifted by each amount in semitones (as Magenta transposes data).

    Transposing the training data teaches the model that a tune is the same tune in any
    key. Drum notes are not shifted. A transposition that would push any pitched note
    outside MIDI 0..127 is left out entirely (rather than deleting notes, which would
    damage the melody). Amount 0 gives an unchanged copy. Key signatures and chord
    symbols move with the notes; a chord symbol note_seq cannot interpret is removed.
    The input is never modified.
    """
    pitches = [note.pitch for note in sequence.notes if not note.is_drum]
    lowest = min(pitches, default=_MIN_PITCH)
    highest = max(pitches, default=_MAX_PITCH)
    results: list[NoteSequence] = []
    for amount in transpositions:
        amount = int(amount)
        if pitches and (lowest + amount < _MIN_PITCH or highest + amount > _MAX_PITCH):
            continue
        shifted = NoteSequence()
        shifted.CopyFrom(sequence)
        if amount:
            _shift_in_place(shifted, amount)
        results.append(shifted)
    return results


def _shift_in_place(sequence: NoteSequence, amount: int) -> None:
    for note in sequence.notes:
        if not note.is_drum:
            note.pitch += amount
            note.pitch_name = NoteSequence.UNKNOWN_PITCH_NAME
    for key_signature in sequence.key_signatures:
        key_signature.key = (key_signature.key + amount) % 12
    keep = []
    for annotation in sequence.text_annotations:
        if annotation.annotation_type == _CHORD_SYMBOL and annotation.text != note_seq.NO_CHORD:
            try:
                annotation.text = chord_symbols_lib.transpose_chord_symbol(annotation.text, amount)
            except chord_symbols_lib.ChordSymbolError:
                continue
        keep.append(annotation)
    if len(keep) != len(sequence.text_annotations):
        kept_copies = [copy.deepcopy(annotation) for annotation in keep]
        del sequence.text_annotations[:]
        sequence.text_annotations.extend(kept_copies)
