"""Evaluation of saved models of any family: on a built dataset, or on a folder of music.

Each family reports its own held-out figures (a Melody RNN: event NLL per step,
perplexity, accuracies). Beside them every family reports **bits per note**: the total
negative log-likelihood of each held-out tune in the family's own representation, in
bits, divided by the notes the tune plays. Representations differ (16th-note events, ABC
characters, tokens), notes do not, so bits per note compares models of different
families on the same tunes. It is given two ways: the mean over tunes (every tune
counts the same) and pooled (all bits over all notes: long tunes count more).

``evaluate`` reads a built dataset's split; ``evaluate_files`` reads MIDI and ABC files
directly (every file held out) and ranks any number of models by pooled bits per note,
on the tunes every one of them could read.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

from melodygen.core.checkpoint import info_family, load_model, read_model_info, resolve_model_dir
from melodygen.core.family import TuneScore, check_model_reads, open_dataset
from melodygen.core.split import song_ids, song_is_eval, tunebook_song_id
from melodygen.errors import DatasetError, InputFileError, MelodyGenError, one_line

WIDTH = 20  # the report's label column


def bits_per_note(scores: Sequence[TuneScore]) -> dict:
    """Bits per note over ``scores``: mean over tunes and pooled, with the totals."""
    bits = sum(score.bits for score in scores)
    notes = sum(score.notes for score in scores)
    return {
        "tunes": len(scores),
        "notes": notes,
        "bits": bits,
        "bits_per_note_mean": (
            math.fsum(score.bits_per_note for score in scores) / len(scores) if scores else math.nan
        ),
        "bits_per_note_pooled": bits / notes if notes else math.nan,
    }


def evaluate(
    checkpoint: str | Path,
    data: str | Path,
    split: str = "eval",
    batch_size: int | None = None,
    structure_tunes: int = 0,
    structure_per_primer: int = 1,
    seed: int = 0,
) -> dict:
    """The family's own figures and bits per note of ``checkpoint`` on a built dataset.

    ``checkpoint`` is a saved-model folder or a training run folder (its final
    model, or the latest checkpoint while it is still training). ``batch_size`` changes
    how many examples go through the network at once, never the figures. With
    ``structure_tunes`` > 0 the figures gain ``structure``
    (:func:`melodygen.core.structure.structure_report`: that many held-out melodies of 16+
    bars continued from their first 2 bars at temperature 1, ``structure_per_primer``
    times each, seeded by ``seed``, beside the same real melodies); off by default, so
    evaluation stays one deterministic pass of the network.
    """
    from melodygen.core.structure import structure_report

    if structure_tunes < 0:
        raise MelodyGenError(
            f"the held-out melodies to continue must be 0 or more (got {structure_tunes})"
        )
    family, dataset = open_dataset(data)
    model_dir = resolve_model_dir(checkpoint)
    model, info = load_model(model_dir)
    check_model_reads(family, dataset, info, model_dir)
    examples = dataset.load(split)
    if len(examples) == 0:
        raise DatasetError(f"the {split} split of {dataset.path} holds no melodies")
    batch_info = info
    if batch_size:  # how many at once, never what is computed: any family's info
        hparams = dataclasses.replace(info.hparams, batch_size=batch_size)
        batch_info = dataclasses.replace(info, hparams=hparams)
    figures = dict(
        family.evaluate_batches(model, family.evaluation_batches(examples, batch_info), info)
    )
    if "steps" in figures:
        figures["steps"] = int(figures["steps"])
    figures.update(bits_per_note(family.score_dataset(model, info, dataset, split)))
    figures.update(
        melodies=len(examples),
        model=str(model_dir),
        family=family.name,
        data=str(dataset.path),
        split=split,
    )
    if structure_tunes:
        del model  # the generator loads its own copy
        figures["structure"] = structure_report(
            model_dir, dataset.path, structure_tunes, structure_per_primer, seed=seed
        )
    return figures


def format_report(figures: dict) -> str:
    """Evaluation figures as aligned lines: the family's own, then bits per note."""
    from melodygen.core.family import get_family

    family = get_family(figures["family"])
    steps = f", {figures['steps']} steps" if "steps" in figures else ""
    lines = [
        f"{'model:':<{WIDTH}}{figures['model']} ({family.title})",
        f"{'data:':<{WIDTH}}{figures['data']} ({figures['split']}, "
        f"{figures['melodies']} melodies{steps})",
        *family.figure_lines(figures),
    ]
    lines += bits_lines(figures)
    if "structure" in figures:
        from melodygen.core.structure import structure_lines

        lines += structure_lines(figures["structure"], WIDTH)
    return "\n".join(lines)


def bits_lines(figures: dict) -> list[str]:
    """Bits per note, mean over tunes and pooled, as report lines."""
    return [
        f"{'bits per note:':<{WIDTH}}{figures['bits_per_note_mean']:.4f} "
        f"(mean over {figures['tunes']} tunes)",
        f"{'':<{WIDTH}}{figures['bits_per_note_pooled']:.4f} "
        f"(pooled: {figures['bits']:.0f} bits / {figures['notes']} notes)",
    ]


# Evaluating on music files ------------------------------------------------------------------


def read_tunes(
    inputs: Sequence[str | Path], held_out: float | None = None
) -> tuple[list[tuple[str, list]], dict]:
    """Every tune of the MIDI and ABC files under ``inputs``, and what reading them found.

    A tune is a MIDI file or one tune of an ABC tunebook, named as ``dataset build`` names
    songs (relative to a single folder given). ``held_out``: keep only the tunes a
    ``dataset build --eval-ratio held_out`` of the same inputs holds out (the same split
    by song for every family), so models trained on the rest are scored on tunes none of
    them saw. Files that cannot be read are skipped and counted; none readable at all is
    an ``InputFileError``.
    """
    from melodygen.io.music import find_music_files, load_note_sequences
    from melodygen.limits import DATASET_MIDI

    paths = [Path(item).expanduser() for item in inputs]
    files = find_music_files(paths)
    root = paths[0] if len(paths) == 1 and paths[0].is_dir() else None
    tunes: list[tuple[str, list]] = []
    skipped: list[tuple[str, str]] = []
    for path in files:
        try:
            sequences = load_note_sequences(path, DATASET_MIDI)
        except MelodyGenError as error:  # InputFileError, MidiLimitError
            skipped.append((str(path), one_line(error)))
            continue
        name = str(path.relative_to(root)) if root else str(path)
        songs = song_ids(path, root, sequences)  # the split's names
        for index, (song, sequence) in enumerate(zip(songs, sequences, strict=True)):
            if held_out is not None and not song_is_eval(song, held_out):
                continue
            number = sequence.reference_number or index + 1
            tunes.append(
                (name if len(sequences) == 1 else tunebook_song_id(name, number), [sequence])
            )
    shown = ", ".join(str(path) for path in paths)
    if not tunes and held_out is not None and files and len(skipped) < len(files):
        raise InputFileError(
            f"{shown}: no tune would be held out at --held-out {held_out:g}; give a larger "
            "share or more tunes"
        )
    if not tunes:
        first = f"; the first: {skipped[0][1]}" if skipped else ""
        raise InputFileError(
            f"{shown}: none of the {len(files)} music file(s) could be read{first}"
        )
    facts = {
        "inputs": [str(path) for path in paths],
        "files": len(files),
        "files_skipped": len(skipped),
        "first_skipped": skipped[0][1] if skipped else None,  # names its file
        "tunes_read": len(tunes),
        "held_out": held_out,
    }
    return tunes, facts


def tune_notes(sequences) -> int:
    """The notes a tune plays, counted once for every family: its melody's notes, one per
    onset (a chord is one note of the melody line, drums are none)."""
    return sum(
        len({round(n.start_time, 6) for n in sequence.notes if not n.is_drum})
        for sequence in sequences
    )


def evaluate_files(
    checkpoints: Sequence[str | Path],
    inputs: Sequence[str | Path],
    held_out: float | None = None,
) -> list[dict]:
    """Bits per note of each model on the music files under ``inputs``, best first.

    Every file is held out. Models are compared on the tunes every one of them could
    read (a tune without a melody a model can use is left out for all of them), ranked by
    pooled bits per note. Every family's bits are divided by the same count of each tune's
    notes (:func:`tune_notes`), so the ranking compares the same music; ``coverage`` is
    the share of those notes the family's own representation scored (1.0: all of them).
    Each row holds the model, its family, the tunes and notes, bits per note (mean and
    pooled), coverage, its rank, and what reading the files found.
    """
    checked = [read_model_info(checkpoint) for checkpoint in checkpoints]  # fail fast
    tunes, facts = read_tunes(inputs, held_out)
    scored = []
    for checkpoint, (model_dir, _) in zip(checkpoints, checked, strict=True):
        model, info = load_model(model_dir)
        family = info_family(info)
        scores = {score.name: score for score in family.score_tunes(model, info, tunes)}
        if not scores:
            raise InputFileError(
                f"none of the {len(tunes)} tunes in {', '.join(facts['inputs'])} holds a "
                f"melody the model in {model_dir} can read"
            )
        scored.append((checkpoint, model_dir, family, info, scores))
        del model
    common = set.intersection(*(set(scores) for *_, scores in scored))
    if not common:
        raise InputFileError(
            f"no tune in {', '.join(facts['inputs'])} holds a melody every model can read; "
            "evaluate the models one at a time"
        )
    played = {name: tune_notes(sequences) for name, sequences in tunes}
    common = {name for name in common if played[name] > 0}
    rows = []
    for checkpoint, model_dir, family, info, scores in scored:
        kept = [TuneScore(name, scores[name].bits, played[name]) for name in sorted(common)]
        scored_notes = sum(scores[name].notes for name in common)
        rows.append(
            {
                "model": str(checkpoint),
                "model_dir": str(model_dir),
                "family": family.name,
                "description": family.describe(info),
                **bits_per_note(kept),
                "coverage": scored_notes / max(1, sum(played[name] for name in common)),
                **facts,
            }
        )
    rows.sort(key=lambda row: row["bits_per_note_pooled"])
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def format_ranking(rows: Sequence[dict]) -> str:
    """The models ranked by pooled bits per note, as an aligned table (lower is better)."""
    first = rows[0]
    lines = []
    if "files" in first:
        skipped = (
            f", {first['files_skipped']} skipped as unreadable (first: {first['first_skipped']})"
            if first["files_skipped"]
            else ""
        )
        lines.append(
            f"data: {', '.join(first['inputs'])}: {first['files']} files, "
            f"{first['tunes_read']} tunes{skipped}; "
            + (
                f"the tunes a split of {first['held_out']:g} holds out"
                if first.get("held_out") is not None
                else "every tune held out"
            )
        )
    elif "data" in first:
        lines.append(f"data: {first['data']} ({first['split']} split)")
    if first.get("tunes_read", first["tunes"]) > first["tunes"]:
        lines.append(
            f"compared on the {first['tunes']} tunes every model could read; "
            f"{first['tunes_read'] - first['tunes']} held no melody "
            + ("the model" if len(rows) == 1 else "one of them")
            + " could use"
        )
    header = (
        "rank",
        "model",
        "family",
        "tunes",
        "notes",
        "bits/note mean",
        "bits/note pooled",
        "scored",
    )
    table = [header] + [
        (
            str(row["rank"]),
            row["model"],
            row["family"],
            str(row["tunes"]),
            str(row["notes"]),
            f"{row['bits_per_note_mean']:.4f}",
            f"{row['bits_per_note_pooled']:.4f}",
            f"{row['coverage']:.0%}" if "coverage" in row else "",
        )
        for row in rows
    ]
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    left = {1, 2}  # model and family read left to right; numbers line up on the right
    for line in table:
        cells = [
            cell.ljust(width) if column in left else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines.append(
        "lower is better: bits per note = -log2 P(tune) / notes the tune plays; "
        "scored: the share of those notes the model's own representation read"
    )
    return "\n".join(lines)


def ranking_rows(figures: Sequence[dict]) -> list[dict]:
    """Dataset evaluations (``evaluate``'s figures) as ranked rows for ``format_ranking``."""
    rows = [dict(item) for item in sorted(figures, key=lambda f: f["bits_per_note_pooled"])]
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows
