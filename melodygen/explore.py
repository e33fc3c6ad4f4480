"""Explore a collection of music files before training on it: what it holds, in numbers.

A musician who brings their own MIDI or ABC files wants to see the collection before
training on it: which instruments play, how long the songs and their melodies are, their
keys, meters, tempos and dance types, and what melody extraction will keep. This module
answers that for the CLI (``melodygen dataset explore``) and the studio alike:

- :func:`explore` reads the files as ``dataset build`` does (the dataset limits of
  :data:`~melodygen.limits.DATASET_MIDI`, :func:`~melodygen.io.music.load_note_sequences`
  and :func:`~melodygen.io.music.extract_melodies` with the build's settings, one file at a
  time in worker processes, so memory stays flat) and returns an :class:`Exploration`: one
  :class:`Song` per MIDI file or ABC tune, the extraction's counters and every problem;
- :meth:`Exploration.tables` gives every figure's numbers as a :class:`Table`;
- :func:`draw` plots one table with matplotlib (never pyplot: no global state, safe in a
  web server's threads); :func:`write_outputs` writes each figure as PNG + CSV, the songs
  and problems as CSV, and a one-page ``report.html`` with the figures inside it.

No Streamlit here: the studio's page calls these functions and shows what they return.
"""

from __future__ import annotations

import base64
import collections
import csv
import html
import io
import math
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from melodygen.errors import InputFileError, MelodyGenError, one_line
from melodygen.limits import DATASET_MIDI, RANGES, MidiLimitError, check_value
from melodygen.theory import key_name

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from melodygen.io.music import ExtractionParams

__all__ = [
    "DEFAULT_MAX_FILES",
    "FIGURES",
    "Exploration",
    "Problem",
    "Song",
    "Table",
    "draw",
    "estimate_key_from_durations",
    "explore",
    "figure_png",
    "write_outputs",
    "write_report",
]

DEFAULT_MAX_FILES = 5_000
"""Files explored at once unless the caller allows more (up to ``RANGES["explore_files"]``):
about a minute's reading on two cores, where 1,000 files take a few seconds."""

FIGURES = (
    "instruments",
    "lengths",
    "notes_per_bar",
    "pitches",
    "keys",
    "meters",
    "tempos",
    "tags",
    "extraction",
)
"""The figures, in the order the report shows them; each is written as NAME.png + NAME.csv."""

DRUMS = "Drums"
"""The instrument class of drum notes (General MIDI channel 10), kept apart from the 16."""
ABC_INSTRUMENT = "ABC tune (no instrument)"
"""ABC names no instrument: its tunes are counted here rather than as pianos."""

NO_METER = "none (read as 4/4)"
NO_TAG = "(none)"

REASONS = {
    "melodies_kept": "melodies kept",
    "melodies_truncated": "kept but cut at --max-steps",
    "melodies_discarded_too_short": "melodies dropped: shorter than --min-bars",
    "melodies_discarded_too_few_pitches": "melodies dropped: too few pitch classes",
    "no_pitched_notes": "songs dropped: no pitched notes (drums only or empty)",
    "tracks_ignored_not_melody": "tracks skipped: a MELODY track leads",
    "polyphonic_tracks_discarded": "tracks dropped: polyphonic",
    "non_integer_steps_per_bar": "pieces dropped: bar not on the 16th grid",
    "sequences_discarded_because_multiple_tempos": "pieces dropped: several tempos",
    "sequences_discarded_because_multiple_time_signatures": "pieces dropped: several meters",
    "sequences_discarded_because_bad_time_signature": "pieces dropped: bad time signature",
    "sequences_discarded_because_negative_time": "pieces dropped: notes before time 0",
    "sequences_discarded_because_bad_notes": "pieces dropped: bad notes",
    "sequences_discarded_because_absolute_quantized": "pieces dropped: quantized in seconds",
}
"""Melody extraction's counters (:func:`melodygen.io.music.extract_melodies`, the names of
``dataset build``'s summary) in words; an unknown counter is shown by its name."""

# Krumhansl-Kessler key profiles, as music21's KrumhanslSchmuckler weighs them
# (``getWeights("major")``, ``getWeights("minor")``; tests check they stay equal).
_KS_PROFILES = {
    "major": (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88),
    "minor": (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17),
}


# Results ------------------------------------------------------------------------------------


@dataclass
class Song:
    """What one song holds: a MIDI file, or one tune of an ABC tunebook."""

    file: str
    """The file's name below the folder explored (or its name, for a file given alone)."""
    song: str
    """The file's name, plus ``X:N`` for a tune of a tunebook."""
    title: str
    kind: str
    """"MIDI" or "ABC"."""
    seconds: float
    """From the start to the last note's end."""
    bars: float
    """Length in bars of the song's first meter (4/4 where none is written)."""
    notes: int
    """Pitched notes (drums apart)."""
    drum_notes: int
    lowest: int | None
    highest: int | None
    key: str
    """"G major", "" where no key is written and no pitched note lets one be estimated."""
    key_from: str
    """"written" (a key signature, ABC's K:) or "estimated" (Krumhansl-Schmuckler)."""
    meter: str
    meter_changes: int
    tempo: float
    """The first tempo, quarter notes a minute (120 where none is written)."""
    tempo_changes: int
    tag: str
    """Dance type or tag: ABC's R: field, else a Nottingham book's file name, ... ("" none)."""
    tag_from: str
    instruments: dict[str, int]
    """Notes per General MIDI instrument class (and :data:`DRUMS`)."""
    melody_bars: list[float]
    """Length in bars of each melody extraction keeps."""
    problems: list[str] = field(default_factory=list)

    @property
    def notes_per_bar(self) -> float:
        """Pitched notes per bar (0 for a song without bars)."""
        return self.notes / self.bars if self.bars > 0 else 0.0

    def row(self) -> dict[str, Any]:
        """The song as one row of ``songs.csv``."""
        return {
            "file": self.file,
            "song": self.song,
            "title": self.title,
            "kind": self.kind,
            "seconds": round(self.seconds, 2),
            "bars": round(self.bars, 2),
            "notes": self.notes,
            "notes_per_bar": round(self.notes_per_bar, 2),
            "drum_notes": self.drum_notes,
            "lowest": "" if self.lowest is None else self.lowest,
            "highest": "" if self.highest is None else self.highest,
            "key": self.key,
            "key_from": self.key_from,
            "meter": self.meter,
            "meter_changes": self.meter_changes,
            "tempo": round(self.tempo, 2),
            "tempo_changes": self.tempo_changes,
            "tag": self.tag,
            "tag_from": self.tag_from,
            "instruments": "; ".join(f"{name} {count}" for name, count in self.instruments.items()),
            "melodies_kept": len(self.melody_bars),
            "melody_bars": "; ".join(f"{bars:g}" for bars in self.melody_bars),
            "problems": "; ".join(self.problems),
        }


@dataclass(frozen=True)
class Problem:
    """Why a file, or a song in it, gives no training melody (or only part of it does)."""

    file: str
    song: str
    """"" when the problem is the file's (unreadable, not music)."""
    problem: str


@dataclass(frozen=True)
class Table:
    """One figure's numbers: the rows of its CSV and how to plot them."""

    name: str
    title: str
    columns: tuple[str, ...]
    rows: list[tuple]
    chart: str
    """"barh" (categories down the side), "bar" (categories along), "hist" (rows are bins
    ``from``, ``to``, counts...), or "table" (not plotted)."""
    series: tuple[str, ...] = ()
    """The columns plotted (stacked when there are several)."""
    xlabel: str = ""
    ylabel: str = ""
    note: str = ""
    """One sentence under the figure: what it counts, and what it leaves out."""

    def csv_text(self) -> str:
        """The table as CSV text (a header line, then the rows), for files and downloads."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self.rows)
        return buffer.getvalue()


@dataclass
class Exploration:
    """What :func:`explore` found: every song's figures, the extraction's counts, problems."""

    inputs: list[str]
    files: list[str]
    """Every music file read (unreadable ones too), by its display name."""
    songs: list[Song]
    problems: list[Problem]
    extraction: dict[str, int]
    """``melodies_kept`` and the extraction's counters, as ``dataset build`` sums them."""
    pitches: list[int]
    """Pitched notes at each MIDI pitch 0-127, all songs together."""
    params: dict[str, Any]
    """The melody extraction settings used (:class:`~melodygen.io.music.ExtractionParams`)."""
    seconds: float = 0.0

    @property
    def files_with_problems(self) -> int:
        return len({problem.file for problem in self.problems})

    def tables(self) -> dict[str, Table]:
        """Every figure's numbers by name (:data:`FIGURES`), plus ``songs`` and ``problems``."""
        tables = {
            "instruments": self._instruments(),
            "lengths": self._lengths(),
            "notes_per_bar": self._notes_per_bar(),
            "pitches": self._pitches(),
            "keys": self._keys(),
            "meters": self._meters(),
            "tempos": self._tempos(),
            "tags": self._tags(),
            "extraction": self._extraction(),
        }
        song_rows = [song.row() for song in self.songs]
        columns = tuple(song_rows[0]) if song_rows else tuple(_empty_song_row())
        tables["songs"] = Table(
            "songs",
            "Songs",
            columns,
            [tuple(row.values()) for row in song_rows],
            "table",
        )
        tables["problems"] = Table(
            "problems",
            "Files and songs with problems",
            ("file", "song", "problem"),
            [(p.file, p.song, p.problem) for p in self.problems],
            "table",
        )
        return tables

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready): the summary and every table's columns and rows."""
        return {
            "inputs": self.inputs,
            "files": len(self.files),
            "songs": len(self.songs),
            "files_with_problems": self.files_with_problems,
            "seconds": round(self.seconds, 2),
            "params": self.params,
            "extraction": self.extraction,
            "tables": {
                name: {"columns": list(table.columns), "rows": [list(row) for row in table.rows]}
                for name, table in self.tables().items()
            },
        }

    def summary_lines(self) -> list[str]:
        """A few lines for a terminal: what was read, kept and found wrong."""
        kept = self.extraction.get("melodies_kept", 0)
        dropped = [
            f"{_reason_label(name)} {count:,}"
            for name, count in sorted(self.extraction.items(), key=lambda item: -item[1])
            if name != "melodies_kept" and count
        ]
        lines = [
            f"explored {len(self.files):,} file{_s(len(self.files))} "
            f"({len(self.songs):,} song{_s(len(self.songs))}) in {self.seconds:.1f} s; "
            f"{self.files_with_problems:,} with problems",
            f"melodies kept: {kept:,}",
        ]
        lines += [f"  {text}" for text in dropped]
        return lines

    # the tables ---------------------------------------------------------------------------

    def _instruments(self) -> Table:
        import pretty_midi

        songs: collections.Counter = collections.Counter()
        notes: collections.Counter = collections.Counter()
        for song in self.songs:
            for name, count in song.instruments.items():
                songs[name] += 1
                notes[name] += count
        order = [*pretty_midi.INSTRUMENT_CLASSES, DRUMS, ABC_INSTRUMENT]
        rows = [(name, songs[name], notes[name]) for name in order if songs[name]]
        return Table(
            "instruments",
            "Instrument classes",
            ("instrument_class", "songs", "notes"),
            rows,
            "barh",
            ("songs",),
            xlabel="songs that use it",
            note="General MIDI instrument classes (programs in groups of 8), drums apart; "
            "the CSV counts each class's notes too.",
        )

    def _lengths(self) -> Table:
        song_bars = [song.bars for song in self.songs if song.bars > 0]
        melody_bars = [bars for song in self.songs for bars in song.melody_bars]
        rows = _histogram([song_bars, melody_bars], minimum_width=1)
        return Table(
            "lengths",
            "Song and melody lengths",
            ("bars_from", "bars_to", "songs", "melodies"),
            rows,
            "hist",
            ("songs", "melodies"),
            xlabel="length in bars",
            ylabel="count",
            note="Songs from start to last note, in their first meter; melodies as "
            f"extraction keeps them (at least {self.params.get('min_bars')} bars, cut at "
            f"{self.params.get('max_steps')} sixteenths).",
        )

    def _notes_per_bar(self) -> Table:
        values = [song.notes_per_bar for song in self.songs if song.notes and song.bars > 0]
        rows = _histogram([values], minimum_width=0.5)
        return Table(
            "notes_per_bar",
            "Notes per bar",
            ("notes_per_bar_from", "notes_per_bar_to", "songs"),
            rows,
            "hist",
            ("songs",),
            xlabel="pitched notes per bar (song average)",
            ylabel="songs",
            note="All pitched notes of a song (every track, drums apart) over its bars.",
        )

    def _pitches(self) -> Table:
        from melodygen.theory import pitch_name

        used = [pitch for pitch, count in enumerate(self.pitches) if count]
        rows = []
        if used:
            low, high = max(0, used[0] - 2), min(127, used[-1] + 2)
            rows = [
                (pitch, pitch_name(pitch), self.pitches[pitch]) for pitch in range(low, high + 1)
            ]
        spans = [song.highest - song.lowest for song in self.songs if song.lowest is not None]
        note = "Every pitched note of every song (drums apart)."
        if used:
            note = f"A song spans {int(np.median(spans))} semitones (median). " + note
        title = f"Pitch range: {_name(used[0])} to {_name(used[-1])}" if used else "Pitch range"
        return Table(
            "pitches",
            title,
            ("pitch", "name", "notes"),
            rows,
            "bar",
            ("notes",),
            xlabel="pitch",
            ylabel="notes",
            note=note,
        )

    def _keys(self) -> Table:
        counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for song in self.songs:
            if song.key:
                counts[song.key][song.key_from] += 1
        rows = sorted(
            ((key, c["written"], c["estimated"]) for key, c in counts.items()),
            key=lambda row: (-(row[1] + row[2]), row[0]),
        )
        return Table(
            "keys",
            "Keys",
            ("key", "written", "estimated"),
            rows,
            "barh",
            ("written", "estimated"),
            xlabel="songs",
            note="The first key a song writes (a key signature, ABC's K:); where none is "
            "written, estimated from its pitched notes (Krumhansl-Schmuckler).",
        )

    def _meters(self) -> Table:
        counts = collections.Counter(song.meter for song in self.songs)
        changes = collections.Counter(song.meter for song in self.songs if song.meter_changes)
        rows = [(meter, count, changes[meter]) for meter, count in counts.most_common()]
        return Table(
            "meters",
            "Meters",
            ("meter", "songs", "songs_that_change_meter"),
            rows,
            "barh",
            ("songs",),
            xlabel="songs",
            note="The first meter of each song; the CSV counts those that change meter later.",
        )

    def _tempos(self) -> Table:
        rows = _histogram([[song.tempo for song in self.songs]], minimum_width=5)
        changing = sum(1 for song in self.songs if song.tempo_changes)
        return Table(
            "tempos",
            "Tempos",
            ("bpm_from", "bpm_to", "songs"),
            rows,
            "hist",
            ("songs",),
            xlabel="first tempo (quarter notes a minute)",
            ylabel="songs",
            note=f"120 where a file writes none; {changing:,} song{_s(changing)} change tempo.",
        )

    def _tags(self) -> Table:
        counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for song in self.songs:
            counts[song.tag or NO_TAG][song.tag_from or "none"] += 1
        sources = ("R:", "file", "section", "title")
        rows = sorted(
            (
                (tag, sum(c.values()), *(c[s] for s in sources))
                for tag, c in counts.items()
                if tag != NO_TAG
            ),
            key=lambda row: (-row[1], row[0]),
        )
        if NO_TAG in counts:
            rows.append((NO_TAG, sum(counts[NO_TAG].values()), 0, 0, 0, 0))
        return Table(
            "tags",
            "Dance types and tags",
            ("tag", "songs", "from_R_field", "from_file_name", "from_book_section", "from_title"),
            rows,
            "barh",
            ("songs",),
            xlabel="songs",
            note="ABC's R: field, else a tunebook named by type (Nottingham's jigs.abc, "
            "hpps.abc, ...; its MIDI files jigs12.mid too), a book's section or a title "
            "ending in a type.",
        )

    def _extraction(self) -> Table:
        items = sorted(
            ((name, count) for name, count in self.extraction.items() if name != "melodies_kept"),
            key=lambda item: (-item[1], item[0]),
        )
        rows = [
            ("melodies_kept", REASONS["melodies_kept"], self.extraction.get("melodies_kept", 0)),
            *((name, _reason_label(name), count) for name, count in items),
        ]
        params = self.params
        return Table(
            "extraction",
            "What melody extraction keeps and drops",
            ("reason", "meaning", "count"),
            rows,
            "barh",
            ("count",),
            xlabel="count",
            note="As `dataset build` extracts melodies (Magenta's rules): at least "
            f"{params.get('min_bars')} bars and {params.get('min_unique_pitches')} pitch "
            f"classes, a rest of {params.get('gap_bars'):g} bar(s) ends a melody. Unreadable "
            "files are in the problems table.",
        )


# Exploring ----------------------------------------------------------------------------------


def explore(
    inputs: Iterable[str | Path] | str | Path,
    params: ExtractionParams | None = None,
    max_files: int = DEFAULT_MAX_FILES,
    workers: int | None = None,
    on_file: Callable[[int, int], None] | None = None,
) -> Exploration:
    """Read every music file of ``inputs`` (folders searched recursively, and files).

    Each file is read in a worker process as ``dataset build`` reads it, so a collection of
    any size takes the memory of a few files; a file that cannot be read, or gives no
    melody, is a :class:`Problem`, never an exception. ``on_file(done, total)`` is called
    as files finish (for a progress bar).

    Raises:
        InputFileError: an input does not exist, a folder holds no music file, no input
            holds any, or there are more than ``max_files`` of them (one line each).
        ValueRangeError: ``max_files`` is outside ``RANGES["explore_files"]``.
    """
    from melodygen.io.music import ExtractionParams

    started = time.perf_counter()
    check_value("explore_files", max_files)
    params = params or ExtractionParams()
    named, not_music = _music_files(inputs)
    problems = list(not_music)
    if not named:
        raise InputFileError(
            "no music file to explore: MelodyGen reads files ending in .mid, .midi or .abc"
        )
    if len(named) > max_files:
        high = int(RANGES["explore_files"].high)
        raise InputFileError(
            f"{len(named):,} music files found; at most {max_files:,} are explored at once "
            f"(explore part of the collection, or allow more, up to {high:,})"
        )
    results = _map(params, named, workers, on_file)

    songs: list[Song] = []
    extraction: collections.Counter = collections.Counter()
    pitches = np.zeros(128, dtype=np.int64)
    for result in results:
        if result["error"]:
            problems.append(Problem(result["name"], "", result["error"]))
        if result["tunes_failed"]:
            problems.append(Problem(result["name"], "", result["tunes_failed"]))
        extraction.update(result["dropped"])
        pitches += result["pitches"]
        for values in result["songs"]:
            song = Song(**values)
            songs.append(song)
            extraction["melodies_kept"] += len(song.melody_bars)
            problems.extend(Problem(song.file, song.song, text) for text in song.problems)
    extraction.setdefault("melodies_kept", 0)
    return Exploration(
        inputs=[str(item) for item in _as_list(inputs)],
        files=[name for name, _ in named] + [problem.file for problem in not_music],
        songs=songs,
        problems=sorted(problems, key=lambda p: (p.file, p.song)),
        extraction={name: int(count) for name, count in extraction.items()},
        pitches=[int(count) for count in pitches],
        params=asdict(params),
        seconds=time.perf_counter() - started,
    )


def _as_list(inputs: Iterable[str | Path] | str | Path) -> list[str | Path]:
    return [inputs] if isinstance(inputs, (str, Path)) else list(inputs)


def _music_files(
    inputs: Iterable[str | Path] | str | Path,
) -> tuple[list[tuple[str, Path]], list[Problem]]:
    """(display name, path) of every music file, and a problem for each file given by
    name that is not one (an upload of notes.txt is a problem, not a stop)."""
    from melodygen.io.music import MUSIC_SUFFIXES, find_music_files

    named: dict[Path, str] = {}
    problems: list[Problem] = []
    for item in _as_list(inputs):
        path = Path(item).expanduser()
        if path.is_dir():
            for found in find_music_files(path):
                named.setdefault(found, str(found.relative_to(path)))
        elif path.is_file() and path.suffix.lower() not in MUSIC_SUFFIXES:
            problems.append(
                Problem(
                    path.name,
                    "",
                    f"not a music file ('{path.suffix or '(no ending)'}'): MelodyGen reads "
                    ".mid, .midi and .abc files",
                )
            )
        else:
            find_music_files([path])  # a missing path or a special file: its one line
            named.setdefault(path, path.name)
    ordered = sorted(named.items(), key=lambda item: (item[1], str(item[0])))
    return [(name, path) for path, name in ordered], problems


def _map(
    params: ExtractionParams,
    named: list[tuple[str, Path]],
    workers: int | None,
    on_file: Callable[[int, int], None] | None,
) -> list[dict]:
    """Each file's facts, read in worker processes (as ``dataset build`` spreads its files)."""
    tasks = [(params, name, path) for name, path in named]
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    results: list[dict] = []

    def done(result: dict) -> None:
        results.append(result)
        if on_file is not None:
            on_file(len(results), len(tasks))

    if workers == 1:
        for task in tasks:
            done(_worker(task))
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(workers) as pool:
            for result in pool.imap_unordered(_worker, tasks, chunksize=4):
                done(result)
    results.sort(key=lambda result: result["name"])
    return results


def _worker(task: tuple[ExtractionParams, str, Path]) -> dict:
    """One file's facts as plain data (runs in a worker); every failure as its problem."""
    from melodygen.io.music import note_seq

    params, name, path = task
    result: dict[str, Any] = {
        "name": name,
        "error": None,
        "tunes_failed": None,
        "songs": [],
        "dropped": collections.Counter(),
        "pitches": np.zeros(128, dtype=np.int64),
    }
    try:
        _read_file(result, params, name, path)
    except MidiLimitError as error:
        result["error"] = "beyond the limits: " + _without_path(str(error), path)
    except MelodyGenError as error:
        result["error"] = "unreadable: " + _without_path(str(error), path)
    except (note_seq.BadNoteError, ValueError, IndexError, KeyError) as error:
        result["error"] = f"could not extract melodies: {type(error).__name__}: {one_line(error)}"
    if result["error"]:
        result["songs"] = []
    return result


def _read_file(result: dict, params: ExtractionParams, name: str, path: Path) -> None:
    from melodygen.io.music import extract_melodies, load_note_sequences

    sequences = load_note_sequences(path, DATASET_MIDI)
    kind = "ABC" if path.suffix.lower() == ".abc" else "MIDI"
    if kind == "ABC":
        tried, first = _tunes_tried(path)
        failed = tried - len(sequences)
        if failed > 0:
            first = f"; the first: {first}" if first else ""
            result["tunes_failed"] = (
                f"{failed} of {tried} tunes could not be read and are left out{first}"
            )
    for index, sequence in enumerate(sequences, start=1):
        reference = str(sequence.reference_number or index)
        song = f"{name} X:{reference}" if kind == "ABC" else name
        melodies, stats = extract_melodies(sequence, params)
        result["dropped"].update(stats)
        tune = _abc_tune(sequence, reference) if kind == "ABC" else None
        facts = _song_facts(sequence, name, song, kind, path, tune)
        facts["melody_bars"] = [round(len(m) / m.steps_per_bar, 2) for m in melodies]
        facts["problems"] = _song_problems(facts, stats, params)
        for note in sequence.notes:
            if note.velocity > 0 and not note.is_drum:
                result["pitches"][note.pitch] += 1
        result["songs"].append(facts)


def _tunes_tried(path: Path) -> tuple[int, str]:
    """The tunes of a tunebook, and why the first one refused was (for the problems)."""
    from melodygen.io.abc import read_tunebook

    tunes, refused = read_tunebook(path)
    first = f"tune {refused[0][0]}: {refused[0][1]}" if refused else ""
    return len(tunes) + len(refused), first


def _abc_tune(sequence, reference: str):
    """The tune a sequence read from ABC was parsed from (its text travels with it), for its
    R:, title and the dance type; None if it has none."""
    from melodygen.io.abc import ABC_TEXT_PREFIX, AbcError, clean_tune

    for annotation in sequence.text_annotations:
        if annotation.text.startswith(ABC_TEXT_PREFIX):
            try:
                return clean_tune(annotation.text[len(ABC_TEXT_PREFIX) :], reference=reference)
            except AbcError:
                return None
    return None


def _song_facts(sequence, name, song, kind, path, tune) -> dict[str, Any]:
    """Every number of one song, as plain data."""
    import pretty_midi

    notes = [note for note in sequence.notes if note.velocity > 0]
    pitched = [note for note in notes if not note.is_drum]
    instruments: collections.Counter = collections.Counter()
    for note in notes:
        if note.is_drum:
            instruments[DRUMS] += 1
        elif kind == "ABC":
            instruments[ABC_INSTRUMENT] += 1
        else:
            instruments[pretty_midi.program_to_instrument_class(note.program)] += 1
    seconds = max((note.end_time for note in notes), default=0.0)
    signatures = sorted(sequence.time_signatures, key=lambda ts: ts.time)
    meters = [f"{ts.numerator}/{ts.denominator}" for ts in signatures]
    quarters_per_bar = (
        signatures[0].numerator * 4 / signatures[0].denominator
        if signatures and signatures[0].numerator > 0 and signatures[0].denominator > 0
        else 4.0
    )
    tempos = sorted(sequence.tempos, key=lambda tempo: tempo.time)
    key, key_from = _key(sequence, pitched)
    tag, tag_from = _tag(path, tune)
    return {
        "file": name,
        "song": song,
        "title": (tune.title if tune is not None else sequence.sequence_metadata.title) or "",
        "kind": kind,
        "seconds": round(seconds, 3),
        "bars": round(_quarters(tempos, seconds) / quarters_per_bar, 3),
        "notes": len(pitched),
        "drum_notes": len(notes) - len(pitched),
        "lowest": min((note.pitch for note in pitched), default=None),
        "highest": max((note.pitch for note in pitched), default=None),
        "key": key,
        "key_from": key_from,
        "meter": meters[0] if meters else NO_METER,
        "meter_changes": sum(1 for a, b in zip(meters, meters[1:], strict=False) if a != b),
        "tempo": round(tempos[0].qpm, 2) if tempos else 120.0,
        "tempo_changes": sum(
            1 for a, b in zip(tempos, tempos[1:], strict=False) if abs(a.qpm - b.qpm) > 0.01
        ),
        "tag": tag,
        "tag_from": tag_from,
        "instruments": _in_class_order(instruments),
    }


def _in_class_order(counts: collections.Counter) -> dict[str, int]:
    import pretty_midi

    order = [*pretty_midi.INSTRUMENT_CLASSES, DRUMS, ABC_INSTRUMENT]
    return {name: int(counts[name]) for name in order if counts[name]}


def _quarters(tempos: Sequence, seconds: float) -> float:
    """Quarter notes from the start to ``seconds``, through the tempo map (120 before the
    first tempo, as MIDI reads it)."""
    changes = [(0.0, 120.0)]
    for tempo in tempos:
        if tempo.qpm <= 0:
            continue
        if tempo.time <= 0:
            changes[0] = (0.0, tempo.qpm)
        else:
            changes.append((tempo.time, tempo.qpm))
    quarters = 0.0
    for (start, qpm), (end, _) in zip(changes, [*changes[1:], (math.inf, 0.0)], strict=True):
        if seconds <= start:
            break
        quarters += (min(seconds, end) - start) * qpm / 60.0
    return quarters


def _key(sequence, pitched) -> tuple[str, str]:
    """The first written key, else one estimated from the pitched notes' durations."""
    from melodygen.io.music import NoteSequence

    signatures = sorted(sequence.key_signatures, key=lambda signature: signature.time)
    if signatures:
        mode = NoteSequence.KeySignature.Mode.Name(signatures[0].mode).lower()
        mode = "major" if mode == "not_specified" else mode
        return key_name(signatures[0].key % 12, mode), "written"
    durations = np.zeros(12)
    for note in pitched:
        durations[note.pitch % 12] += max(note.end_time - note.start_time, 0.0)
    found = estimate_key_from_durations(durations)
    if found is None:
        return "", ""
    return key_name(*found), "estimated"


def estimate_key_from_durations(durations: Sequence[float]) -> tuple[int, str] | None:
    """(tonic pitch class, "major" or "minor") of twelve pitch-class durations; None if silent.

    The Krumhansl-Schmuckler key finder as music21 runs it (the key whose profile
    correlates best with the durations), which :func:`melodygen.theory.estimate_key` calls
    on a melody: the same answer in microseconds, where music21 takes some 20 ms a song
    building a Key object for each of the 24 candidates, too slow for 1,000 files.
    """
    weights = np.asarray(durations, dtype=np.float64)
    if weights.shape != (12,) or not np.isfinite(weights).all() or weights.sum() <= 0:
        return None
    centred = weights - weights.mean()
    best: tuple[float, int, str] | None = None
    for mode, profile in _KS_PROFILES.items():
        rotations = np.stack([np.roll(profile, tonic) for tonic in range(12)])
        rotations = rotations - rotations.mean(axis=1, keepdims=True)
        spread = np.sqrt((rotations**2).sum(axis=1) * (centred**2).sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            scores = np.where(spread > 0, rotations @ centred / spread, 0.0)
        tonic = int(np.argmax(scores))
        if best is None or scores[tonic] > best[0]:
            best = (float(scores[tonic]), tonic, mode)
    assert best is not None
    return best[1], best[2]


def _tag(path: Path, tune) -> tuple[str, str]:
    """A song's dance type or tag and where it came from, as the ABC Transformer's data
    finds dance types (R:, a book named by type, a book's section, a title)."""
    from melodygen.families.abc_transformer import dance

    if tune is not None:
        name, how = dance.dance_type(tune, path)
        if how == "R: other":  # a tag outside the dance types is still the file's tag
            return " ".join(tune.rhythm.lower().split())[:40], "R:"
        return (name, how) if name else ("", "")
    # A Nottingham MIDI file is named after its book and number: jigs12.mid, reelsa-c30.mid.
    name = dance.from_file(path.with_name(re.sub(r"\d+$", "", path.stem) + path.suffix))
    return (name, "file") if name else ("", "")


def _song_problems(facts: dict, stats: collections.Counter, params) -> list[str]:
    """Why a song gives no melody, in words (nothing when a melody is kept)."""
    if facts["melody_bars"]:
        return []
    if not facts["notes"]:
        return ["drums only: no melody to learn"] if facts["drum_notes"] else ["no notes"]
    if facts["bars"] < params.min_bars:
        return [f"too short: {facts['bars']:.1f} bars, a melody needs at least {params.min_bars}"]
    reasons = [name for name, count in stats.most_common() if name != "melodies_truncated"]
    why = _reason_label(reasons[0]) if reasons else "nothing to extract"
    return [f"no melody kept ({why})"]


def _without_path(message: str, path: Path) -> str:
    """A reader's message without the path in front (the problems table names the file)."""
    text = " ".join(message.split())
    for prefix in (f"{path}: ", f"{path} "):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            return text if prefix.endswith(": ") else "it " + text
    return text.replace(str(path), path.name)


def _inputs(inputs: list[str], shown: int = 3) -> str:
    """The folders and files explored, for the report: the first few and how many more."""
    more = len(inputs) - shown
    return ", ".join(inputs[:shown]) + (f" and {more:,} more" if more > 0 else "")


def _reason_label(name: str) -> str:
    return REASONS.get(name, name.replace("_", " "))


def _name(pitch: int) -> str:
    from melodygen.theory import pitch_name

    return f"{pitch_name(pitch)} ({pitch})"


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _empty_song_row() -> dict[str, Any]:
    return Song(
        "", "", "", "", 0.0, 0.0, 0, 0, None, None, "", "", "", 0, 0.0, 0, "", "", {}, []
    ).row()


def _histogram(series: list[list[float]], minimum_width: float, bins: int = 20) -> list[tuple]:
    """Rows (from, to, count of each series) over shared bins of a round width.

    A few far longer songs (a medley of 500 bars among tunes of 32) would squeeze every
    other bar into one column, so values past the 98th percentile's bin share one last
    row, from its edge to the largest value.
    """
    values = np.asarray([value for values in series for value in values], dtype=float)
    if not len(values):
        return []
    low, high = float(values.min()), float(values.max())
    usual = float(np.percentile(values, 98))
    capped = high > 1.5 * usual and high - low > bins * minimum_width
    top = usual if capped else high
    width = _round_width((top - low) / bins, minimum_width)
    start = math.floor(low / width) * width
    count = max(1, math.floor((top - start) / width) + 1)
    edges = list(start + width * np.arange(count + 1))
    if capped and edges[-1] <= high:
        edges.append(high)
    counts = [np.histogram(np.asarray(values, dtype=float), bins=edges)[0] for values in series]
    return [
        (_number(edges[index]), _number(edges[index + 1]), *(int(c[index]) for c in counts))
        for index in range(len(edges) - 1)
    ]


def _round_width(raw: float, minimum: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is at least ``raw`` and ``minimum``."""
    target = max(raw, minimum)
    exponent = math.floor(math.log10(target))
    for step in (1, 2, 2.5, 5, 10):
        width = step * 10**exponent
        if width >= target - 1e-12:
            return width
    return 10 ** (exponent + 1)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(float(value), 3)


# Figures ------------------------------------------------------------------------------------

_COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52")
PNG_DPI = 100


def draw(table: Table) -> Figure:
    """One figure of the exploration, drawn with matplotlib's object API (no pyplot).

    Titles, axis labels and each bar's count are on the figure, so it reads without the
    CSV; an empty table draws a figure that says there is nothing to show.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    categories = len(table.rows)
    height = 3.6 if table.chart != "barh" else min(9.0, max(2.4, 1.0 + 0.32 * categories))
    fig = Figure(figsize=(7.0, height), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(table.title, fontsize=12, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    if not table.rows:
        ax.text(0.5, 0.5, "nothing to show", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    columns = {name: index for index, name in enumerate(table.columns)}
    values = [[row[columns[name]] for row in table.rows] for name in table.series]
    if table.chart == "barh":
        labels = [
            _short_label(str(row[1] if table.name == "extraction" else row[0]))
            for row in table.rows
        ]
        positions = np.arange(categories)
        left = np.zeros(categories)
        for index, (name, counts) in enumerate(zip(table.series, values, strict=True)):
            ax.barh(positions, counts, left=left, color=_COLOURS[index], label=name)
            left += np.asarray(counts, dtype=float)
        for position, total in zip(positions, left, strict=True):
            ax.text(total, position, f" {int(total):,}", va="center", fontsize=8)
        ax.set_yticks(positions, labels, fontsize=9)
        ax.invert_yaxis()
        ax.set_xlim(0, max(left.max(), 1) * 1.15)
    elif table.chart == "hist":
        starts = np.array([row[0] for row in table.rows], dtype=float)
        width = float(table.rows[0][1]) - float(table.rows[0][0])
        shares = width / len(values)
        for index, (name, counts) in enumerate(zip(table.series, values, strict=True)):
            ax.bar(
                starts + index * shares,
                counts,
                width=shares,
                align="edge",
                color=_COLOURS[index],
                label=name,
            )
        last_from, last_to = (float(value) for value in table.rows[-1][:2])
        if len(table.rows) > 1 and last_to - last_from > width * 1.001:  # the longer ones
            top = max(sum(row[2:]) for row in table.rows)
            ax.text(
                last_from + width / 2,
                max(table.rows[-1][2:]) + top * 0.03,
                f"{_number(last_from):g}+\n(to {last_to:,.0f})",
                ha="center",
                va="bottom",
                fontsize=8,
            )
    else:  # "bar": ordered categories, such as pitches
        positions = np.arange(categories)
        ax.bar(positions, values[0], color=_COLOURS[0], width=0.85)
        step = 12 if categories > 30 else 1
        marks = [i for i, row in enumerate(table.rows) if step == 1 or row[0] % 12 == 0]
        ax.set_xticks(marks, [str(table.rows[i][1]) for i in marks], fontsize=9)
    if len(table.series) > 1:
        ax.legend(frameon=False, fontsize=9)
    ax.set_xlabel(table.xlabel)
    ax.set_ylabel(table.ylabel)
    return fig


def _short_label(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def figure_png(fig: Figure, dpi: int = PNG_DPI) -> bytes:
    """PNG bytes of a figure from :func:`draw`."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def write_outputs(exploration: Exploration, folder: str | Path) -> dict[str, Path]:
    """Write every figure as NAME.png + NAME.csv, songs.csv, problems.csv and report.html.

    Returns the paths by name ("instruments.png", ..., "report.html").

    Raises:
        OSError: the folder cannot be made or written (the CLI says so in one line).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    tables = exploration.tables()
    images: dict[str, bytes] = {}
    for name in FIGURES:
        images[name] = figure_png(draw(tables[name]))
        written[f"{name}.png"] = _write(folder / f"{name}.png", images[name])
    for name, table in tables.items():
        written[f"{name}.csv"] = _write(folder / f"{name}.csv", table.csv_text().encode())
    written["report.html"] = _write(
        folder / "report.html", write_report(exploration, images, tables).encode()
    )
    return written


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def write_report(
    exploration: Exploration,
    images: dict[str, bytes] | None = None,
    tables: dict[str, Table] | None = None,
) -> str:
    """A one-page HTML report: the summary, every figure (PNG inside the page, so the one
    file can be shared) with a link to its CSV beside it, and the problems table."""
    tables = tables or exploration.tables()
    if images is None:
        images = {name: figure_png(draw(tables[name])) for name in FIGURES}
    escape = html.escape
    params = exploration.params
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>MelodyGen: a collection explored</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1500px}"
        ".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(620px,1fr));gap:1.5em}"
        "figure{margin:0}img{max-width:100%}figcaption{font-size:.9em;color:#444}"
        "table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;"
        "padding:.2em .5em;text-align:left}</style></head><body>",
        "<h1>A collection explored</h1>",
        "<p>"
        + escape(
            f"{len(exploration.files):,} files, {len(exploration.songs):,} songs, "
            f"{exploration.extraction.get('melodies_kept', 0):,} melodies kept; "
            f"{exploration.files_with_problems:,} file{_s(exploration.files_with_problems)} "
            f"with problems. Read from {_inputs(exploration.inputs)} in "
            f"{exploration.seconds:.1f} s. Melody extraction as `dataset build`: "
            f"--min-bars {params.get('min_bars')}, --max-steps {params.get('max_steps')}, "
            f"--min-unique-pitches {params.get('min_unique_pitches')}, "
            f"--gap-bars {params.get('gap_bars'):g}"
            + (
                f", --time-signature {params['time_signature'][0]}/{params['time_signature'][1]}"
                if params.get("time_signature")
                else ""
            )
            + "."
        )
        + ' Every song\'s numbers: <a href="songs.csv">songs.csv</a>.</p>',
        '<div class="grid">',
    ]
    for name in FIGURES:
        table = tables[name]
        data = base64.b64encode(images[name]).decode("ascii")
        parts.append(
            f'<figure id="{name}"><img src="data:image/png;base64,{data}" '
            f'alt="{escape(table.title)}" data-file="{name}.png">'
            f"<figcaption>{escape(table.note)} "
            f'<a href="{name}.csv">{name}.csv</a></figcaption></figure>'
        )
    parts.append("</div>")
    problems = tables["problems"]
    parts.append(f'<h2 id="problems">Problems ({len(problems.rows):,})</h2>')
    if problems.rows:
        parts.append("<table><tr><th>file</th><th>song</th><th>problem</th></tr>")
        parts += [
            "<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>"
            for row in problems.rows
        ]
        parts.append('</table><p><a href="problems.csv">problems.csv</a></p>')
    else:
        parts.append("<p>Every file was read and gives at least one melody.</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
