"""How the ``note_vae`` dataset build scales: files per second and peak memory.

Writes ``--files`` MIDI files (default 20,000) into a scratch folder outside the
repository: transposed copies of the Nottingham and POP909 files (each copy shifted by
0, +1, -1, ... +6 semitones, its note numbers edited in place in the file's bytes, drum
channel untouched; sources in a seeded shuffle, so every prefix is the same mix of folk
tunes and pop songs). Then builds a ``note_vae`` dataset from the first 1,000, the first
5,000 and all of them (``--sizes``), each build in a fresh Python process through the
library call ``melodygen dataset build --family note_vae`` makes
(``get_family("note_vae").build_dataset(...)``), with ``--workers 2``. While a build
runs, the resident memory (RSS) of its process and of every worker process is sampled
every 50 ms. Prints one Markdown row per size; deletes the scratch folder at the end.

Usage (12 minutes for 20,000 files on the 2-core development machine, shared with a
training run):

    python benchmarks/note_vae_build_scale.py [--files 20000] [--sizes 1000 5000]
        [--workers 2] [--scratch /tmp]

Peak memory is given three ways: the parent (the build's own process: the notes kept,
the classes, the written arrays), one worker (reading one file at a time, so it should
not grow with the files read), and everything together (parent plus workers at one
instant; forked workers share the parent's pages, which RSS counts in each, so the sum is
an upper bound).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCES = [
    REPO.parent / "shared/data/nottingham/melody",
    REPO.parent / "shared/data/pop909",
]
SHIFTS = (0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6)
"""Semitones of each successive copy of a source file: 12 distinct copies of each."""
DRUM_CHANNEL = 9
SAMPLE_SECONDS = 0.05


# Transposed copies --------------------------------------------------------------------------


def _varlen(data: bytes, index: int) -> tuple[int, int]:
    """A MIDI variable-length number at ``index``: (value, index after it)."""
    value = 0
    while True:
        byte = data[index]
        value = (value << 7) | (byte & 0x7F)
        index += 1
        if not byte & 0x80:
            return value, index


def note_number_offsets(data: bytes) -> list[int]:
    """Where every note number of a Standard MIDI File's pitched channels lies (byte
    offsets of note-on, note-off and key-pressure data bytes, running status included;
    channel 10, the drums, left out). Raises ValueError on a file it cannot walk."""
    if data[:4] != b"MThd":
        raise ValueError("not a Standard MIDI File")
    offsets: list[int] = []
    position = 8 + int.from_bytes(data[4:8], "big")
    while position + 8 <= len(data):
        kind = data[position : position + 4]
        end = position + 8 + int.from_bytes(data[position + 4 : position + 8], "big")
        index, status = position + 8, None
        position = end
        if kind != b"MTrk":
            continue
        while index < min(end, len(data)):
            _, index = _varlen(data, index)  # delta time
            byte = data[index]
            if byte == 0xFF:  # meta event: type, length, data
                length, index = _varlen(data, index + 2)
                index += length
                status = None
            elif byte in (0xF0, 0xF7):  # system exclusive
                length, index = _varlen(data, index + 1)
                index += length
                status = None
            else:
                if byte & 0x80:
                    status = byte
                    index += 1
                if status is None:
                    raise ValueError("a data byte without a status")
                kind_of, channel = status & 0xF0, status & 0x0F
                if kind_of in (0x80, 0x90, 0xA0) and channel != DRUM_CHANNEL:
                    offsets.append(index)
                index += 1 if kind_of in (0xC0, 0xD0) else 2
    return offsets


def transposed(data: bytes, offsets: list[int], shift: int) -> bytes:
    """``data`` with every note number at ``offsets`` moved ``shift`` semitones (kept
    within 0..127): the same file, a few bytes changed, nothing re-encoded."""
    if not shift:
        return data
    edited = bytearray(data)
    for offset in offsets:
        edited[offset] = min(127, max(0, edited[offset] + shift))
    return bytes(edited)


def write_copies(
    sources: list[Path], count: int, folder: Path, sizes: list[int], seed: int = 0
) -> list[Path]:
    """``count`` transposed copies of ``sources`` under ``folder``, in subfolders that
    split them at ``sizes`` (so the first ``size`` files are a list of subfolders);
    returns the subfolders in order."""
    readable = []
    for path in sources:
        data = path.read_bytes()
        try:
            readable.append((path, data, note_number_offsets(data)))
        except (ValueError, IndexError):
            continue
    order = np.random.default_rng(seed).permutation(len(readable))
    bounds = sorted({size for size in sizes if 0 < size < count} | {count})
    parts, start = [], 0
    for part, bound in enumerate(bounds):
        subfolder = folder / f"part{part}"
        subfolder.mkdir(parents=True)
        for index in range(start, bound):
            path, data, offsets = readable[order[index % len(readable)]]
            shift = SHIFTS[(index // len(readable)) % len(SHIFTS)]
            name = f"{index:06d}_{path.stem}_{shift:+d}.mid"
            (subfolder / name).write_bytes(transposed(data, offsets, shift))
        parts.append(subfolder)
        start = bound
    return parts


def check_copies(sources: list[Path]) -> None:
    """A few sources transposed and read back with pretty_midi: every pitched note moved
    by the shift, times and drums unchanged (so the copies are the music shifted)."""
    import io

    import pretty_midi

    for path in sources[:3]:
        data = path.read_bytes()
        moved = transposed(data, note_number_offsets(data), 3)
        before = pretty_midi.PrettyMIDI(io.BytesIO(data))
        after = pretty_midi.PrettyMIDI(io.BytesIO(moved))
        for one, two in zip(before.instruments, after.instruments, strict=True):
            shift = 0 if one.is_drum else 3
            assert [(n.start, n.pitch + shift) for n in one.notes] == [
                (n.start, n.pitch) for n in two.notes
            ], path


# Building and sampling memory ---------------------------------------------------------------

BUILD = """
import sys
from melodygen.core.family import get_family
output, workers, *inputs = sys.argv[1:]
get_family("note_vae").build_dataset(
    inputs, output, config=None, eval_ratio=0.1, options={"transpositions": ()},
    workers=int(workers), progress=False,
)
"""
"""What ``melodygen dataset build --family note_vae --input ... --workers N --quiet`` runs
(``cli._run_build``), without printing the summary."""


class MemorySampler(threading.Thread):
    """The peak RSS (bytes) of a process, of its largest child and of all of them at one
    instant, sampled every :data:`SAMPLE_SECONDS` until :meth:`stop`; and the machine's
    1-minute load average at each sample (other processes' work shows as load above the
    build's own workers)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.parent = self.worker = self.total = 0
        self.workers_seen: set[int] = set()
        self.loads: list[float] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            rss = _tree_rss(self.pid)
            self.loads.append(os.getloadavg()[0])
            if rss:
                parent, children = rss[self.pid], [v for k, v in rss.items() if k != self.pid]
                self.workers_seen |= set(rss) - {self.pid}
                self.parent = max(self.parent, parent)
                self.worker = max([self.worker, *children])
                self.total = max(self.total, parent + sum(children))
            self._done.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._done.set()
        self.join()


def _tree_rss(pid: int) -> dict[int, int]:
    """RSS in bytes of ``pid`` and its descendants (psutil, else /proc); {} once it ended."""
    try:
        import psutil
    except ImportError:
        return _proc_tree_rss(pid)
    try:
        process = psutil.Process(pid)
        found = {pid: process.memory_info().rss}
        for child in process.children(recursive=True):
            try:
                found[child.pid] = child.memory_info().rss
            except psutil.Error:
                continue
        return found
    except psutil.Error:
        return {}


def _proc_tree_rss(pid: int) -> dict[int, int]:
    page = os.sysconf("SC_PAGE_SIZE")
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {pid}, [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current and child not in tree:
                tree.add(child)
                frontier.append(child)
    found = {}
    for member in tree:
        try:
            found[member] = (
                int((Path("/proc") / str(member) / "statm").read_text().split()[1]) * page
            )
        except (OSError, IndexError, ValueError):
            continue
    return found


def build(inputs: list[Path], output: Path, workers: int) -> dict:
    """One build in a fresh process, its memory sampled; its figures."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", BUILD, str(output), str(workers), *map(str, inputs)],
        cwd=REPO,
    )
    sampler = MemorySampler(child.pid)
    sampler.start()
    code = child.wait()
    sampler.stop()
    wall = time.perf_counter() - started
    if code:
        raise SystemExit(f"the build of {inputs} failed (exit status {code})")
    summary = json.loads((output / "dataset.json").read_text())["summary"]
    notes = sum(summary["notes"].values())
    return {
        "files": summary["files_read"],
        "failed": len(summary["files_failed"]),
        "songs": sum(summary["songs"].values()),
        "notes": notes,
        "build_seconds": summary["seconds"],
        "wall_seconds": wall,
        "files_per_second": summary["files_read"] / summary["seconds"],
        "peak_parent_mib": sampler.parent / 2**20,
        "peak_worker_mib": sampler.worker / 2**20,
        "peak_total_mib": sampler.total / 2**20,
        "workers_seen": len(sampler.workers_seen),
        "mean_load": float(np.mean(sampler.loads)) if sampler.loads else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1_000, 5_000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sources", nargs="+", type=Path, default=DEFAULT_SOURCES)
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from melodygen.io.music import find_music_files

    sources = [path for path in find_music_files(args.sources) if path.suffix.lower() != ".abc"]
    check_copies(sources)
    scratch = Path(tempfile.mkdtemp(prefix="note_vae_scale_", dir=args.scratch))
    if scratch.resolve().is_relative_to(REPO):
        raise SystemExit(f"{scratch} is inside the repository; give --scratch elsewhere")
    try:
        started = time.perf_counter()
        parts = write_copies(sources, args.files, scratch / "midi", args.sizes)
        written = time.perf_counter() - started
        megabytes = sum(p.stat().st_size for part in parts for p in part.iterdir()) / 2**20
        print(
            f"{args.files} files ({megabytes:.0f} MiB) from {len(sources)} sources written to "
            f"{scratch} in {written:.0f} s; building with --workers {args.workers}",
            flush=True,
        )
        rows = []
        for end in range(1, len(parts) + 1):
            output = scratch / f"data{end}"
            row = build(parts[:end], output, args.workers)
            shutil.rmtree(output)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(
        "| files | songs | notes kept | build s | files/s | peak parent MiB | peak one worker "
        "MiB | peak all MiB | mean load |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['files']:,} | {row['songs']:,} | {row['notes']:,} | "
            f"{row['build_seconds']:.0f} | {row['files_per_second']:.1f} | "
            f"{row['peak_parent_mib']:.0f} | {row['peak_worker_mib']:.0f} | "
            f"{row['peak_total_mib']:.0f} | {row['mean_load'] or 0:.1f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
