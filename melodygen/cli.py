"""The ``melodygen`` command line: build datasets, train, evaluate.

Every failure the user can fix (a missing file, a bad flag value, a dataset
built for another configuration) ends with a one-line ``error: ...`` and exit
status 2, never a traceback. Every numeric flag takes its range from
:data:`melodygen.limits.RANGES`, the table the studio and the library check
against too, and states it in its help.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from melodygen import __version__
from melodygen.core.family import DEFAULT_FAMILY, families
from melodygen.errors import MelodyGenError
from melodygen.limits import (
    MAX_BEAM_ROWS,
    RANGES,
    SECTION_BARS,
    ValueRangeError,
    check_primer_text,
)
from melodygen.theory import KeyNameError, parse_key


def _quiet_tensorflow() -> None:
    """Keep TensorFlow's start-up chatter (such as CUDA probing on a CPU-only machine) quiet."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _ranged(name: str):
    """An argparse type for the number ``RANGES[name]`` describes: one line if it is not one.

    Every numeric flag is built from this, so its range is the library's and the studio's.
    """
    limit = RANGES[name]

    def parse(text: str) -> int | float:
        try:
            return limit.parse(text)
        except ValueRangeError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = name
    return parse


def _span(name: str) -> str:
    """``RANGES[name]`` in words, for a flag's help."""
    return RANGES[name].describe()


def _section_bars(text: str) -> int:
    """``--section-bars``: one of :data:`melodygen.limits.SECTION_BARS`, else one line."""
    from melodygen.core.form import FormError, check_section_bars

    try:
        value: object = int(text)
    except ValueError:
        value = text
    try:
        return check_section_bars(value)
    except FormError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _primer_text(text: str) -> str:
    """A typed primer, refused at once when it is far too long or holds a giant number."""
    try:
        check_primer_text(text)
    except ValueRangeError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _transpositions(text: str) -> list[int]:
    """``-5:6`` (a Python-style range), ``-2,0,2`` or ``0``."""
    limit = RANGES["transpose"]
    try:
        if ":" in text:
            low, high = (limit.parse(part) for part in text.split(":"))
            values = list(range(int(low), int(high)))
        else:
            values = [int(limit.parse(part)) for part in text.split(",") if part.strip()]
    except ValueRangeError:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r}: give a range like -5:7 or a list like -2,0,2 "
            f"(semitones, each {limit.describe()})"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r}: the range holds no transposition")
    return values


def _key(text: str):
    """A key name (C, F#, Bb), 0-11, 'none' to keep melodies where they are, or 'config'.

    Read by :func:`melodygen.theory.parse_key`, the reader of ``generate --key`` and the
    studio's key too, so every key flag takes and refuses the same spellings.
    """
    if text.strip().lower() == "config":
        return "config"
    try:
        return parse_key(text)
    except KeyNameError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _extraction_flags(parser: argparse.ArgumentParser) -> None:
    """Melody extraction's settings, the same flags for ``dataset build`` and ``explore``."""
    parser.add_argument(
        "--min-bars",
        type=_ranged("min_bars"),
        default=7,
        help=f"drop melodies shorter than this ({_span('min_bars')}; default 7)",
    )
    parser.add_argument(
        "--max-steps",
        type=_ranged("max_steps"),
        default=512,
        help=f"cut longer melodies at a bar line ({_span('max_steps')}; default 512)",
    )
    parser.add_argument(
        "--min-unique-pitches",
        type=_ranged("min_unique_pitches"),
        default=5,
        help=f"drop melodies using fewer pitch classes ({_span('min_unique_pitches')}; default 5)",
    )
    parser.add_argument(
        "--gap-bars",
        type=_ranged("gap_bars"),
        default=1.0,
        help=f"a rest this long ends a melody ({_span('gap_bars')}; default 1)",
    )
    parser.add_argument(
        "--time-signature",
        type=_time_signature,
        default=None,
        metavar="N/D",
        help="read every file in this meter at one tempo, e.g. 4/4 for POP909, whose files "
        "declare 1/4 and change tempo with the recording (default: each file's own)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="melodygen",
        description="Melodies from neural networks: Keras re-implementations of Magenta's "
        "Melody RNN and a character LSTM over ABC folk tunes, each a model family reached "
        "through the same commands.",
    )
    parser.add_argument("--version", action="version", version=f"melodygen {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dataset = commands.add_parser("dataset", help="build training data from MIDI and ABC files")
    dataset_commands = dataset.add_subparsers(dest="dataset_command", required=True)
    build = dataset_commands.add_parser(
        "build",
        help="extract and encode melodies into train and eval sets",
        description="Walk folders of .mid/.midi/.abc files, extract monophonic melodies as "
        "Magenta does, encode them for a configuration and write train and eval sets.",
    )
    build.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="DIR_OR_FILE",
        help="folders (searched recursively) and/or music files",
    )
    family_names = [family.name for family in families()]
    build.add_argument(
        "--family",
        choices=family_names,
        default=None,
        help=f"the kind of model the data is for (default {DEFAULT_FAMILY}, or --like's)",
    )
    build.add_argument(
        "--config",
        choices=[config for family in families() for config in family.configurations()],
        default=None,
        help="the configuration to encode for (a melody_rnn dataset needs one)",
    )
    build.add_argument("--output", required=True, type=Path, help="dataset folder to write")
    build.add_argument(
        "--like",
        default=None,
        metavar="CHECKPOINT",
        help="encode for this saved model, to fine-tune it (train --init-from): its family, "
        "configuration and own classes or vocabulary, never ones fitted to these files; "
        "what it lacks is read as the nearest class or as unknown, and counted",
    )
    build.add_argument(
        "--eval-ratio",
        type=_ranged("eval_ratio"),
        default=0.1,
        help=f"share of songs held out for evaluation ({_span('eval_ratio')}; default 0.1)",
    )
    build.add_argument(
        "--transpose",
        type=_transpositions,
        default=None,
        metavar="RANGE",
        help="augment the training split with transpositions, e.g. -5:7 "
        f"(semitones, each {_span('transpose')}; most useful with --transpose-to-key none)",
    )
    build.add_argument(
        "--transpose-to-key",
        type=_key,
        default="config",
        metavar="KEY",
        help="key melodies are moved to before encoding (C, F#, Bb, ... or none); "
        "default: the configuration's (C for all but mono_rnn)",
    )
    _extraction_flags(build)
    build.add_argument(
        "--abc-chords",
        action="store_true",
        help='keep chord symbols ("G", "Am7") in ABC text (abc_char; default: dropped)',
    )
    build.add_argument(
        "--workers",
        type=_ranged("workers"),
        default=None,
        help=f"processes to use ({_span('workers')}; default: all cores)",
    )
    build.add_argument("--quiet", action="store_true", help="no progress bar")

    explore = dataset_commands.add_parser(
        "explore",
        help="plot what a collection of music files holds, before training on it",
        description="Read folders of .mid/.midi/.abc files as `dataset build` does and write, "
        "into --output, a figure (PNG) and its numbers (CSV) for each of: instrument classes, "
        "song and melody lengths, notes per bar, pitch range, keys, meters, tempos, dance types "
        "or tags, and what melody extraction keeps and drops; songs.csv, problems.csv (files "
        "that are unreadable, drums only, too short, ...) and a one-page report.html.",
    )
    explore.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="DIR_OR_FILE",
        help="folders (searched recursively) and/or music files",
    )
    explore.add_argument(
        "--output", required=True, type=Path, help="folder for the PNG, CSV and report.html files"
    )
    explore.add_argument(
        "--max-files",
        type=_ranged("explore_files"),
        default=None,
        help=f"refuse more music files than this ({_span('explore_files')}; default 5,000)",
    )
    _extraction_flags(explore)
    explore.add_argument(
        "--workers",
        type=_ranged("workers"),
        default=None,
        help=f"processes to use ({_span('workers')}; default: all cores)",
    )
    explore.add_argument("--quiet", action="store_true", help="no progress bar")

    train = commands.add_parser(
        "train",
        help="train a model on a built dataset (resumes if the run folder has checkpoints)",
    )
    train.add_argument("--data", required=True, type=Path, help="dataset folder")
    train.add_argument(
        "--run-dir",
        required=True,
        type=Path,
        help="folder for checkpoints, logs and the final model",
    )
    train.add_argument(
        "--config",
        choices=[config for family in families() for config in family.configurations()],
        default=None,
        help="must match the dataset's configuration (default: the dataset's)",
    )
    train.add_argument(
        "--init-from",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help="start a new run from this model's weights (fine-tuning; same family and "
        "encoding as the dataset; --hparams may change only how it trains)",
    )
    train.add_argument(
        "--steps",
        type=_ranged("train_steps"),
        default=20000,
        help=f"total training steps ({_span('train_steps')}; default 20000)",
    )
    train.add_argument(
        "--hparams",
        default=None,
        metavar="K=V,...",
        help="override hyperparameters, e.g. batch_size=64,rnn_layer_sizes=[256,256]",
    )
    train.add_argument(
        "--eval-every",
        type=_ranged("eval_every"),
        default=200,
        help="steps between held-out evaluations and checkpoints "
        f"({_span('eval_every')}; default 200)",
    )
    train.add_argument(
        "--early-stopping",
        type=_ranged("early_stopping"),
        default=None,
        metavar="N",
        help=f"stop after N evaluations without a lower eval loss ({_span('early_stopping')})",
    )
    train.add_argument(
        "--time-limit",
        type=_ranged("time_limit"),
        default=None,
        metavar="MINUTES",
        help="stop (evaluated and saved, resumable) after this many minutes of training "
        f"({_span('time_limit')})",
    )
    train.add_argument(
        "--seed",
        type=_ranged("train_seed"),
        default=0,
        help=f"random seed ({_span('train_seed')})",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = commands.add_parser(
        "evaluate",
        help="held-out figures and bits per note of models, on a dataset or on music files",
        description="Evaluate one or more models on a built dataset (--data) or directly on "
        "MIDI and ABC files (--input, every file held out). Beside each family's own figures "
        "it reports bits per note (lower is better), which compares models of any family; "
        "with several models, a table ranks them by it.",
    )
    evaluate.add_argument(
        "--checkpoint",
        required=True,
        nargs="+",
        type=Path,
        metavar="CHECKPOINT",
        help="training run folders or saved model folders (one or more)",
    )
    evaluate.add_argument(
        "--data", type=Path, default=None, help="a dataset folder (`melodygen dataset build`)"
    )
    evaluate.add_argument(
        "--input",
        nargs="+",
        default=None,
        metavar="FILES_OR_DIRS",
        help="music files and/or folders (searched recursively), evaluated without a dataset",
    )
    evaluate.add_argument(
        "--held-out",
        type=_ranged("eval_ratio"),
        default=None,
        metavar="RATIO",
        help="with --input: only the tunes `dataset build --eval-ratio RATIO` holds out "
        "(the same tunes for every family), to score models on tunes none trained on "
        f"({_span('eval_ratio')})",
    )
    evaluate.add_argument(
        "--split", choices=["eval", "train"], default=None, help="with --data (default: eval)"
    )
    _structure_flags(evaluate, default=0)
    evaluate.add_argument(
        "--json", type=Path, default=None, metavar="FILE", help="also write the figures as JSON"
    )
    generate = commands.add_parser(
        "generate",
        help="generate melodies from a checkpoint",
        description="Generate melodies from a trained checkpoint and write one MIDI file each.",
    )
    generate.add_argument(
        "--checkpoint",
        required=True,
        type=Path,
        help="a training run folder or a saved model folder",
    )
    primer = generate.add_mutually_exclusive_group()
    primer.add_argument(
        "--primer",
        type=_primer_text,
        default=None,
        metavar="NOTES",
        help="opening notes, e.g. 'C4 E4 G4:2 r:2 C5 -' or an event list "
        "'[60, -2, 62, -1]' (see README: primer syntax)",
    )
    primer.add_argument(
        "--primer-midi",
        type=Path,
        default=None,
        metavar="FILE",
        help="take the opening from a MIDI file",
    )
    generate.add_argument(
        "--track",
        type=_ranged("track"),
        default=None,
        help=f"track of --primer-midi ({_span('track')}; default: MELODY, else the first)",
    )
    generate.add_argument(
        "--primer-bars",
        type=_ranged("primer_bars"),
        default=None,
        help=f"how many bars of --primer-midi to use ({_span('primer_bars')}; default: all)",
    )
    generate.add_argument(
        "--exclude-primer", action="store_true", help="leave the primer out of the output"
    )
    generate.add_argument(
        "--abc-primer",
        default=None,
        metavar="TEXT",
        help="ABC models: the opening of the tune as ABC, header fields and/or bars, e.g. "
        "'M:6/8\\nK:G\\nGAB' (a real newline or \\n between lines)",
    )
    generate.add_argument(
        "--rhythm",
        "--type",
        dest="rhythm",
        default=None,
        help="ABC models: the dance type (R:), e.g. jig, reel, hornpipe (--type is the same)",
    )
    generate.add_argument("--title", default=None, help="ABC models: the tune's title (T:)")
    generate.add_argument(
        "--no-bar-check",
        action="store_true",
        help="ABC models: keep every bar as sampled (by default a bar that does not last "
        "what M: and L: say, or an unpaired repeat, is written again, up to 8 times)",
    )
    generate.add_argument("--key", default=None, help="key of the output, e.g. D, F#, Bb")
    generate.add_argument(
        "--mode", default="major", help="major, minor, dorian, mixolydian, ... (default major)"
    )
    generate.add_argument(
        "--in-scale", action="store_true", help="keep every generated pitch inside the key's scale"
    )
    generate.add_argument(
        "--bpm",
        type=_ranged("bpm"),
        default=None,
        help=f"tempo ({_span('bpm')}; default: the primer MIDI's, else 120)",
    )
    length = generate.add_mutually_exclusive_group()
    length.add_argument(
        "--bars",
        type=_ranged("bars"),
        default=None,
        help=f"total length in bars, primer included ({_span('bars')}; default 8)",
    )
    generate.add_argument(
        "--time-signature",
        "--meter",
        dest="meter",
        default=None,
        metavar="N/D",
        help="time signature of the output: 4/4, 3/4, 6/8, 2/4, ... (default: the primer's, "
        "else 4/4); --bars counts bars of it (12 steps for 3/4 and 6/8, 8 for 2/4)",
    )
    length.add_argument(
        "--steps",
        type=_ranged("length_steps"),
        default=None,
        help=f"total length in sixteenth-note steps, primer included ({_span('length_steps')})",
    )
    generate.add_argument(
        "--form",
        default=None,
        metavar="LETTERS",
        help="the tune's form: sections A-D, a letter heard before repeating that section, "
        "e.g. AABB, ABAB, AABA, ABAC, AAB, or free (the default: no form); the form sets "
        "the length (--bars, if given, must agree) and the tune ends on the tonic",
    )
    generate.add_argument(
        "--section-bars",
        type=_section_bars,
        default=None,
        help=f"with --form: bars of each section ({' or '.join(map(str, SECTION_BARS))}; "
        "default 8)",
    )
    generate.add_argument(
        "--vary-repeats",
        action="store_true",
        help="with --form: a repeated section keeps its first half and the model writes the "
        "rest anew, like first and second endings (default: repeats are exact)",
    )
    generate.add_argument(
        "--temperature",
        type=_ranged("temperature"),
        default=1.0,
        help=f"sampling temperature ({_span('temperature')}; default 1)",
    )
    generate.add_argument(
        "--top-k",
        type=_ranged("top_k"),
        default=None,
        help=f"sample among the K likeliest events ({_span('top_k')})",
    )
    generate.add_argument(
        "--top-p",
        type=_ranged("top_p"),
        default=None,
        help=f"sample among the likeliest events holding probability P ({_span('top_p')})",
    )
    generate.add_argument(
        "--min-pitch",
        type=_ranged("min_pitch"),
        default=0,
        help=f"lowest MIDI pitch allowed ({_span('min_pitch')}; default 0)",
    )
    generate.add_argument(
        "--max-pitch",
        type=_ranged("max_pitch"),
        default=127,
        help=f"highest MIDI pitch allowed ({_span('max_pitch')}; default 127)",
    )
    generate.add_argument(
        "--num-outputs",
        type=_ranged("num_outputs"),
        default=1,
        help=f"melodies to generate ({_span('num_outputs')}; default 1)",
    )
    generate.add_argument(
        "--seed",
        type=_ranged("seed"),
        default=None,
        help=f"same seed and request give the same melodies ({_span('seed')})",
    )
    beam = f"beam size x branch factor x outputs at most {MAX_BEAM_ROWS:,}"
    generate.add_argument(
        "--beam-size",
        type=_ranged("beam_size"),
        default=1,
        help=f"beam search: sequences kept ({_span('beam_size')}; {beam})",
    )
    generate.add_argument(
        "--branch-factor",
        type=_ranged("branch_factor"),
        default=1,
        help=f"beam search: ways each is extended ({_span('branch_factor')})",
    )
    generate.add_argument(
        "--steps-per-iteration",
        type=_ranged("steps_per_iteration"),
        default=1,
        help=f"beam search: steps between prunings ({_span('steps_per_iteration')})",
    )
    melodies = generate.add_mutually_exclusive_group()
    melodies.add_argument(
        "--variations-of",
        type=Path,
        default=None,
        metavar="FILE",
        help="models that make variations (note_vae): --num-outputs variations of the melody "
        "in FILE (MIDI or MusicXML, its track and bars chosen by --track and --primer-bars; "
        "ABC: its first tune)",
    )
    melodies.add_argument(
        "--blend",
        type=Path,
        nargs=2,
        default=None,
        metavar=("A", "B"),
        help="models that blend (note_vae): --blend-steps melodies from the melody in file A "
        "to the one in file B (read as --variations-of reads one), and <name>_in_order.mid "
        "(and .wav with --wav) playing them one after the other",
    )
    generate.add_argument(
        "--distance",
        type=_ranged("distance"),
        default=None,
        help=f"with --variations-of: how far they stray from it ({_span('distance')}; 0 is the "
        "melody as the model reads it, 0.1-0.3 close, 1 loosely related; default 0.3)",
    )
    generate.add_argument(
        "--blend-steps",
        type=_ranged("blend_steps"),
        default=None,
        help=f"with --blend: melodies from A to B, both included ({_span('blend_steps')}; "
        "default 5)",
    )
    generate.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    generate.add_argument(
        "--instrument",
        default="Piano",
        help="General MIDI instrument of the written files: a name such as Piano, Strings, "
        "Flute, 'Lead synth', or a program number 0-127",
    )
    generate.add_argument(
        "--wav", action="store_true", help="also render each melody to WAV with FluidSynth"
    )
    generate.add_argument(
        "--abc",
        action="store_true",
        help="also write each melody as ABC (.abc; an ABC model writes its own text anyway)",
    )
    generate.add_argument(
        "--musicxml",
        action="store_true",
        help="also write each melody as MusicXML (.musicxml), in its key and meter",
    )
    generate.add_argument("--out", required=True, type=Path, help="folder for the MIDI files")
    generate.add_argument("--name", default=None, help="file name prefix (default: melody_<time>)")

    originality = commands.add_parser(
        "originality",
        help="do generated melodies copy training melodies? (and listen-free sanity figures)",
        description="Generate melodies with no primer in the model's own key, find for each "
        "the longest run of notes (pitch and time to the next onset) that a training melody "
        "holds note for note, and compare with the held-out melodies of the dataset.",
    )
    originality.add_argument(
        "--checkpoint",
        required=True,
        type=Path,
        help="a training run folder or a saved model folder",
    )
    originality.add_argument(
        "--data", required=True, type=Path, help="the dataset folder the model was trained on"
    )
    originality.add_argument(
        "--num",
        type=_ranged("originality_num"),
        default=100,
        help=f"melodies to generate ({_span('originality_num')}; default 100)",
    )
    originality.add_argument(
        "--bars",
        type=_ranged("originality_bars"),
        default=8,
        help=f"length of each melody in 4/4 bars ({_span('originality_bars')}; default 8)",
    )
    originality.add_argument(
        "--temperature",
        type=_ranged("temperature"),
        default=1.0,
        help=f"sampling temperature ({_span('temperature')}; default 1)",
    )
    originality.add_argument(
        "--seed", type=_ranged("seed"), default=0, help=f"random seed ({_span('seed')})"
    )
    originality.add_argument(
        "--window",
        choices=["start", "random"],
        default="start",
        help="which bars of each held-out melody to compare: its first ones (default) or a "
        "window at a random bar line (seeded)",
    )
    originality.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    originality.add_argument(
        "--json", type=Path, default=None, metavar="FILE", help="also write the figures as JSON"
    )
    _structure_flags(originality, default=64)

    validity = commands.add_parser(
        "validity",
        help="do an ABC model's tunes parse, fill their bars and balance their repeats?",
        description="Sample tunes from a model that writes ABC (abc_char, abc_transformer) "
        "with no primer and judge each: does abc2midi parse it, do its full bars last what M: "
        "and L: say, do its repeats and endings balance; the same for the dataset's real "
        "held-out tunes beside them.",
    )
    validity.add_argument(
        "--checkpoint", required=True, type=Path, help="a training run folder or a saved model"
    )
    validity.add_argument(
        "--data", required=True, type=Path, help="the dataset the model was trained on"
    )
    validity.add_argument(
        "--num",
        type=_ranged("originality_num"),
        default=200,
        help=f"tunes to sample ({_span('originality_num')}; default 200)",
    )
    validity.add_argument(
        "--bars",
        type=_ranged("originality_bars"),
        default=48,
        help=f"length limit, in 4/4 bars ({_span('originality_bars')}): abc_char 120 "
        "characters and 40 a bar, abc_transformer 16 tokens a bar up to its longest tune "
        "(default 48: 2,040 characters, or the longest tune; above the longest training "
        "tune, so tunes end on their own)",
    )
    validity.add_argument(
        "--temperature",
        type=_ranged("temperature"),
        default=1.0,
        help=f"sampling temperature ({_span('temperature')}; default 1)",
    )
    validity.add_argument(
        "--seed", type=_ranged("seed"), default=0, help=f"random seed ({_span('seed')})"
    )
    validity.add_argument(
        "--no-bar-check",
        action="store_true",
        help="judge the model's raw samples: no bar is written again (see generate)",
    )
    validity.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    validity.add_argument(
        "--json", type=Path, default=None, metavar="FILE", help="also write the figures as JSON"
    )

    controls = commands.add_parser(
        "controls",
        help="do an ABC model's tunes come out in the meter, key and dance type asked?",
        description="Ask a model that writes ABC for tunes with the meters, keys, modes and "
        "dance types of the dataset's held-out tunes (as often as they occur), and judge "
        "each: does it parse, is it in the meter asked (M: and full bars), in the key asked "
        "(K: and notes in its scale), does it read as the type asked (each type's rule); "
        "beside the same figures for the real held-out tunes, and for another ABC model "
        "asked the same (--compare).",
    )
    controls.add_argument(
        "--checkpoint", required=True, type=Path, help="a training run folder or a saved model"
    )
    controls.add_argument(
        "--data", required=True, type=Path, help="the dataset the model was trained on"
    )
    controls.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="OTHER_MODEL",
        help="another model that writes ABC (e.g. an abc_char model), asked the same",
    )
    controls.add_argument(
        "--num",
        type=_ranged("originality_num"),
        default=200,
        help=f"tunes to ask of each model ({_span('originality_num')}; default 200)",
    )
    controls.add_argument(
        "--bars",
        type=_ranged("originality_bars"),
        default=48,
        help=f"length limit, in 4/4 bars ({_span('originality_bars')}; default 48, as "
        "validity: tunes end on their own)",
    )
    controls.add_argument(
        "--temperature",
        type=_ranged("temperature"),
        default=1.0,
        help=f"sampling temperature ({_span('temperature')}; default 1)",
    )
    controls.add_argument(
        "--seed", type=_ranged("seed"), default=0, help=f"random seed ({_span('seed')})"
    )
    controls.add_argument(
        "--no-bar-check",
        action="store_true",
        help="judge the models' raw samples: no bar is written again (see generate)",
    )
    controls.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    controls.add_argument(
        "--json", type=Path, default=None, metavar="FILE", help="also write the figures as JSON"
    )

    latent = commands.add_parser(
        "latent",
        help="what a note VAE's code space gives: random codes and blends, measured",
        description="For a model that writes from a latent code (note_vae): decode random "
        "codes and compare their pitch-class, interval and length histograms with the "
        "dataset's held-out melodies (beside its training melodies' own overlap), and blend "
        "pairs of held-out melodies, measuring how far each step is from both ends (note "
        "edit distance, pitches and rhythm apart, and with a note kept only whole).",
    )
    latent.add_argument(
        "--checkpoint", required=True, type=Path, help="a training run folder or a saved model"
    )
    latent.add_argument(
        "--data", required=True, type=Path, help="the dataset the model was trained on"
    )
    latent.add_argument(
        "--samples",
        type=_ranged("latent_samples"),
        default=256,
        help=f"melodies from random codes ({_span('latent_samples')}; default 256)",
    )
    latent.add_argument(
        "--pairs",
        type=_ranged("latent_pairs"),
        default=64,
        help=f"pairs of held-out melodies to blend ({_span('latent_pairs')}; default 64)",
    )
    latent.add_argument(
        "--blend-steps",
        type=_ranged("blend_steps"),
        default=8,
        help=f"steps of each blend, both ends included ({_span('blend_steps')}; default 8)",
    )
    latent.add_argument(
        "--temperature",
        type=_ranged("temperature"),
        default=1.0,
        help=f"sampling temperature of the random codes' melodies ({_span('temperature')}; "
        "default 1)",
    )
    latent.add_argument(
        "--seed", type=_ranged("seed"), default=0, help=f"random seed ({_span('seed')})"
    )
    latent.add_argument(
        "--json", type=Path, default=None, metavar="FILE", help="also write the figures as JSON"
    )
    return parser


def _time_signature(text: str) -> tuple[int, int]:
    """'4/4' as (4, 4), for argparse."""
    parts = text.split("/")
    if len(parts) == 2 and all(part.strip().isdigit() for part in parts):
        numerator, denominator = (int(part) for part in parts)
        if numerator > 0 and denominator in (1, 2, 4, 8, 16, 32):
            return numerator, denominator
    raise argparse.ArgumentTypeError(f"{text!r} is not a time signature such as 4/4, 3/4 or 6/8")


def _run_build(args) -> None:
    from melodygen.core.family import get_family

    options = {
        "min_bars": args.min_bars,
        "max_steps": args.max_steps,
        "min_unique_pitches": args.min_unique_pitches,
        "gap_bars": args.gap_bars,
        "time_signature": args.time_signature,
        "transpositions": args.transpose or (),
        "transpose_to_key": args.transpose_to_key,
        "abc_chords": args.abc_chords,
    }
    if args.like is not None:
        summary = _build_like(args, options)
    else:
        summary = get_family(args.family or DEFAULT_FAMILY).build_dataset(
            args.input,
            args.output,
            config=args.config,
            eval_ratio=args.eval_ratio,
            options=options,
            workers=args.workers,
            progress=not args.quiet,
        )
    print(summary.format())
    print(f"dataset written to {args.output}")


def _build_like(args, options: dict):
    """``dataset build --like CHECKPOINT``: the model's family builds data it reads."""
    from melodygen.core.checkpoint import info_family, read_model_info

    model_dir, info = read_model_info(args.like)
    family = info_family(info)
    if args.family is not None and args.family != family.name:
        raise MelodyGenError(
            f"--like {model_dir} is a {family.title} model, not {args.family}; leave out --family"
        )
    config = family.configuration(info)
    if args.config is not None and args.config != config:
        raise MelodyGenError(
            f"--like {model_dir} is {config or 'a model without configurations'}, not "
            f"{args.config}; leave out --config"
        )
    return family.build_dataset_like(
        info, model_dir, args.input, args.output, eval_ratio=args.eval_ratio, options=options,
        workers=args.workers, progress=not args.quiet,
    )  # fmt: skip


def _run_dataset(args) -> None:
    """``dataset build`` or ``dataset explore``."""
    if args.dataset_command == "explore":
        _run_explore(args)
    else:
        _run_build(args)


def _run_explore(args) -> None:
    from melodygen.explore import DEFAULT_MAX_FILES, explore, write_outputs
    from melodygen.io.music import ExtractionParams

    _check_output_folder(args.output, "--output")
    params = ExtractionParams(
        min_bars=args.min_bars,
        max_steps=args.max_steps,
        min_unique_pitches=args.min_unique_pitches,
        gap_bars=args.gap_bars,
        time_signature=args.time_signature,
    )
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(unit="file", desc="exploring")

    def on_file(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        exploration = explore(
            args.input,
            params,
            max_files=args.max_files or DEFAULT_MAX_FILES,
            workers=args.workers,
            on_file=on_file if bar is not None else None,
        )
    finally:
        if bar is not None:
            bar.close()
    with _writing(args.output):
        written = write_outputs(exploration, args.output)
    print("\n".join(exploration.summary_lines()))
    figures = sum(1 for name in written if name.endswith(".png"))
    print(
        f"written to {args.output}: report.html, {figures} figures (PNG + CSV), "
        "songs.csv, problems.csv"
    )


def _run_train(args) -> None:
    from melodygen.core.train import train

    result = train(
        data=args.data,
        run_dir=args.run_dir,
        config=args.config,
        steps=args.steps,
        hparams=args.hparams,
        eval_every=args.eval_every,
        early_stopping=args.early_stopping,
        seed=args.seed,
        progress=not args.quiet,
        time_limit=None if args.time_limit is None else args.time_limit * 60,
        init_from=args.init_from,
    )
    best = f", best eval loss {result.best_eval_loss:.4f}" if result.best_eval_loss else ""
    print(f"trained to step {result.steps}{best}; model saved in {result.model_dir}")


def _structure_flags(parser, default: int) -> None:
    """``--structure-tunes`` and ``--structure-per-primer``: the structure figure's held-out
    melodies continued from their first 2 bars (:mod:`melodygen.core.structure`)."""
    parser.add_argument(
        "--structure-tunes",
        type=_ranged("structure_tunes"),
        default=default,
        metavar="N",
        help="structure figure: continue the first 2 bars of N held-out melodies of 16+ bars "
        "to 16 bars and count bars 9-16 that repeat the bar 1, 2, 4 or 8 bars before, beside "
        f"the same real melodies ({_span('structure_tunes')}; default {default}"
        + (", none" if not default else "")
        + ")",
    )
    parser.add_argument(
        "--structure-per-primer",
        type=_ranged("structure_per_primer"),
        default=1,
        metavar="K",
        help=f"continuations of each held-out melody ({_span('structure_per_primer')}; default 1)",
    )


def _run_evaluate(args) -> None:
    from melodygen.core.evaluate import (
        evaluate,
        evaluate_files,
        format_ranking,
        format_report,
        ranking_rows,
    )

    if (args.data is None) == (args.input is None):
        raise MelodyGenError(
            "evaluate needs either --data DATASET or --input FILES_OR_DIRS, not "
            + ("both" if args.data is not None else "neither")
        )
    if args.input is not None:
        if args.split is not None:
            raise MelodyGenError("--split goes with --data; with --input every file is held out")
        if args.structure_tunes:
            raise MelodyGenError(
                "--structure-tunes goes with --data: it continues a dataset's held-out melodies"
            )
        rows = evaluate_files(args.checkpoint, args.input, held_out=args.held_out)
        print(format_ranking(rows))
        if args.json:
            _write_json(args.json, {"inputs": args.input, "ranking": rows})
        return
    if args.held_out is not None:
        raise MelodyGenError("--held-out goes with --input; a dataset has its own split")
    split = args.split or "eval"
    reports = [
        evaluate(
            checkpoint,
            args.data,
            split=split,
            structure_tunes=args.structure_tunes,
            structure_per_primer=args.structure_per_primer,
        )
        for checkpoint in args.checkpoint
    ]
    print("\n\n".join(format_report(figures) for figures in reports))
    if len(reports) > 1:
        print()
        print(format_ranking(ranking_rows(reports)))
    if args.json:
        _write_json(args.json, reports[0] if len(reports) == 1 else {"models": reports})


def _melody_file(path: Path, args):
    """A melody to vary or blend: a MIDI or MusicXML file's track and bars as
    ``--primer-midi`` reads them (a Primer), or an ABC file's first tune as parsed (a
    NoteSequence, its accents kept)."""
    from melodygen.io.music import load_note_sequences
    from melodygen.io.primer import midi_primer

    if path.suffix.lower() != ".abc":
        return midi_primer(path, track=args.track, bars=args.primer_bars)
    if args.track is not None or args.primer_bars is not None:
        raise MelodyGenError(f"{path.name}: --track and --primer-bars read MIDI and MusicXML files")
    return load_note_sequences(path)[0]


def _run_generate(args) -> None:
    from melodygen import notation
    from melodygen.core.checkpoint import model_family
    from melodygen.core.form import DEFAULT_SECTION_BARS, FREE, form_length_steps, parse_form
    from melodygen.core.generation import (
        DEFAULT_BLEND_STEPS,
        DEFAULT_DISTANCE,
        GenerationRequest,
        bars_to_steps,
        load_generator,
    )
    from melodygen.io.primer import midi_primer, parse_primer
    from melodygen.render import Synth, program_number, write_wav

    melodies = args.variations_of is not None or args.blend is not None
    if args.primer_midi is not None:
        primer = midi_primer(args.primer_midi, track=args.track, bars=args.primer_bars)
    else:
        if (args.track is not None or args.primer_bars is not None) and not melodies:
            raise MelodyGenError(
                "--track and --primer-bars go with --primer-midi, --variations-of or --blend"
            )
        primer = parse_primer(args.primer)
    if args.distance is not None and args.variations_of is None:
        raise MelodyGenError("--distance goes with --variations-of")
    if args.blend_steps is not None and args.blend is None:
        raise MelodyGenError("--blend-steps goes with --blend")
    variations_of = _melody_file(args.variations_of, args) if args.variations_of else None
    blend = tuple(_melody_file(path, args) for path in args.blend) if args.blend else None
    from melodygen.theory import key_name, parse_meter

    meter = parse_meter(args.meter) or primer.meter
    bars = args.bars if args.bars is not None else 8
    length = args.steps if args.steps is not None else bars_to_steps(bars, meter)
    form = parse_form(args.form)
    if form == FREE and (args.section_bars is not None or args.vary_repeats):
        raise MelodyGenError("--section-bars and --vary-repeats go with --form (AABB, ...)")
    section_bars = DEFAULT_SECTION_BARS if args.section_bars is None else args.section_bars
    if form != FREE and args.bars is None and args.steps is None:
        length = form_length_steps(form, section_bars, meter, primer.events)  # the form's
    request = GenerationRequest(
        primer=primer,
        length_steps=length,
        # None without --meter: the primer's (4/4 without one), or an ABC model's own choice
        time_signature=parse_meter(args.meter) if args.meter else None,
        key=parse_key(args.key),
        mode=args.mode.strip().lower().replace(" ", "_"),
        in_scale=args.in_scale,
        qpm=args.bpm,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        min_pitch=args.min_pitch,
        max_pitch=args.max_pitch,
        num_outputs=args.num_outputs,
        seed=args.seed,
        beam_size=args.beam_size,
        branch_factor=args.branch_factor,
        steps_per_iteration=args.steps_per_iteration,
        include_primer=not args.exclude_primer,
        rhythm=args.rhythm,
        title=args.title,
        text_primer=None if args.abc_primer is None else args.abc_primer.replace("\\n", "\n"),
        check_bars=not args.no_bar_check,
        variations_of=variations_of,
        distance=DEFAULT_DISTANCE if args.distance is None else args.distance,
        blend=blend,
        blend_steps=DEFAULT_BLEND_STEPS if args.blend_steps is None else args.blend_steps,
        form=form,
        section_bars=section_bars,
        vary_repeats=args.vary_repeats,
    )
    request.validate()  # before loading the model: bad requests fail fast
    if melodies or form != FREE:  # a family that cannot do it says so, before loading
        request.check_family(model_family(args.checkpoint))
    _check_output_folder(args.out, "--out")
    program = program_number(args.instrument)
    synth = Synth() if args.wav else None  # says why audio is unavailable before generating
    generator = load_generator(args.checkpoint, device=args.device)
    result = generator.generate(request)
    prefix = args.name or time.strftime("melody_%Y%m%d-%H%M%S")
    width = max(2, len(str(len(result.melodies))))
    for melody in result.melodies:
        path = args.out / f"{prefix}_{melody.index + 1:0{width}d}.mid"
        if melody.text is not None:
            with _writing(path.with_suffix(".abc")):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.with_suffix(".abc").write_text(notation.abc_text(melody))
        if melody.problem is not None:
            print(f"{path.with_suffix('.abc')}  (not playable: no MIDI written)")
            print(f"note: {path.with_suffix('.abc').name}: {melody.problem}", file=sys.stderr)
            continue
        with _writing(path):
            melody.write_midi(path, program=program)
        if melody.text is not None:
            print(path.with_suffix(".abc"))
        print(f"{path}  ({melody.steps} steps, log-likelihood {melody.log_likelihood:.1f})")
        if melody.sections:
            print("  form: " + ", ".join(s.label(melody.meter) for s in melody.sections))
        if synth is not None:
            with _writing(path.with_suffix(".wav")):
                print(write_wav(path.with_suffix(".wav"), synth.render(melody, program=program)))
        _write_notation(args, melody, path)
    if blend is not None:
        _write_in_order(args, result.melodies, prefix, program, synth)
    key = ""
    if result.key is not None:
        origin = {
            "chosen": "as asked",
            "key signature": "the primer's key signature",
            "estimated": "estimated from the primer",
        }.get(result.key_source, "the model's own")
        key = f" in {key_name(result.key, result.mode)} ({origin}), {request.meter}"
    print(
        f"{len(result.melodies)} melodies from {generator.description}{key} in "
        f"{result.seconds:.2f} s written to {args.out}"
    )
    for line in [*result.notices, *result.warnings]:
        print(f"note: {line}", file=sys.stderr)


def _write_in_order(args, melodies, prefix: str, program: int, synth) -> None:
    """``--blend``: its steps one after the other as one MIDI file (and WAV with --wav)."""
    from melodygen.io.music import note_seq
    from melodygen.render import in_order, write_wav

    sequence = in_order([melody.to_note_sequence(program=program) for melody in melodies])
    path = args.out / f"{prefix}_in_order.mid"
    with _writing(path):
        note_seq.sequence_proto_to_midi_file(sequence, str(path))
    print(f"{path}  (the {len(melodies)} steps in order, {sequence.total_time:.1f} s)")
    if synth is not None:
        with _writing(path.with_suffix(".wav")):
            print(write_wav(path.with_suffix(".wav"), synth.render(sequence, program=program)))


def _write_notation(args, melody, path: Path) -> None:
    """``--abc`` and ``--musicxml``: the melody's sheet music beside its MIDI file (an ABC
    model's own .abc is written already); a melody that cannot be notated is a note."""
    from melodygen import notation

    title = path.stem
    try:
        if args.abc and melody.text is None:
            text = notation.abc_text(melody, title=title)
            with _writing(path.with_suffix(".abc")):
                path.with_suffix(".abc").write_text(text)
            print(path.with_suffix(".abc"))
        if args.musicxml:
            data = notation.musicxml_bytes(melody, title=title)
            with _writing(path.with_suffix(".musicxml")):
                path.with_suffix(".musicxml").write_bytes(data)
            print(path.with_suffix(".musicxml"))
    except notation.NotationError as error:
        print(f"note: {path.name}: no sheet music: {error}", file=sys.stderr)


def _run_originality(args) -> None:
    from melodygen.core.originality import format_report, originality_report

    figures = originality_report(
        args.checkpoint,
        args.data,
        num=args.num,
        bars=args.bars,
        temperature=args.temperature,
        seed=args.seed,
        window=args.window,
        device=args.device,
        structure_tunes=args.structure_tunes,
        structure_per_primer=args.structure_per_primer,
    )
    print(format_report(figures))
    if args.json:
        _write_json(args.json, figures)


def _run_validity(args) -> None:
    from melodygen.core.validity import format_validity, validity_report

    if args.json:
        _check_output_folder(args.json.parent, "--json")
    report = validity_report(
        args.checkpoint,
        args.data,
        num=args.num,
        seed=args.seed,
        temperature=args.temperature,
        bars=args.bars,
        device=args.device,
        check_bars=not args.no_bar_check,
    )
    print(format_validity(report))
    if args.json:
        _write_json(args.json, report)


def _run_controls(args) -> None:
    from melodygen.core.controls import controls_report, format_controls

    if args.json:
        _check_output_folder(args.json.parent, "--json")
    report = controls_report(
        args.checkpoint,
        args.data,
        compare=args.compare,
        num=args.num,
        seed=args.seed,
        temperature=args.temperature,
        bars=args.bars,
        device=args.device,
        check_bars=not args.no_bar_check,
    )
    print(format_controls(report))
    if args.json:
        _write_json(args.json, report)


def _run_latent(args) -> None:
    from melodygen.core.checkpoint import info_family, read_model_info

    if args.json:
        _check_output_folder(args.json.parent, "--json")
    _, info = read_model_info(args.checkpoint)
    family = info_family(info)
    report = family.latent_report(
        args.checkpoint,
        args.data,
        samples=args.samples,
        pairs=args.pairs,
        steps=args.blend_steps,
        seed=args.seed,
        temperature=args.temperature,
    )
    print(family.latent_lines(report))
    if args.json:
        _write_json(args.json, report)


def _check_output_folder(path: Path, flag: str) -> None:
    """Refuse an output folder that cannot be made, before any time is spent generating."""
    for folder in (path, *path.parents):
        if not folder.exists():
            continue
        if not folder.is_dir():
            raise MelodyGenError(
                f"{flag} {path}: {folder} is a file, not a folder; choose another folder"
            )
        if not os.access(folder, os.W_OK | os.X_OK):
            raise MelodyGenError(f"{flag} {path}: no permission to write in {folder}")
        return


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn a failed write (disk full, a file where a folder should be) into one line."""
    try:
        yield
    except OSError as error:
        raise MelodyGenError(f"could not write {path}: {error.strerror or error}") from None


def _write_json(path: Path, figures: dict) -> None:
    """Write figures as JSON (``--json``), failing in one line."""
    _check_output_folder(path.parent, "--json")
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"figures written to {path}")


_NEGATIVE_VALUE_FLAGS = ("--transpose",)
"""Flags whose values may start with "-" yet are not plain numbers (``-5:7``)."""


def _attach_negative_values(argv: list[str]) -> list[str]:
    """``--transpose -5:7`` as ``--transpose=-5:7``: argparse takes ``-5:7`` for a flag."""
    joined: list[str] = []
    values = iter(argv)
    for item in values:
        if item in _NEGATIVE_VALUE_FLAGS:
            following = next(values, None)
            if following is not None and following[:2].startswith("-") and following[1:2].isdigit():
                joined.append(f"{item}={following}")
                continue
            joined.append(item)
            if following is not None:
                joined.append(following)
            continue
        joined.append(item)
    return joined


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_attach_negative_values(sys.argv[1:] if argv is None else argv))
    _quiet_tensorflow()
    handlers = {
        "dataset": _run_dataset,
        "train": _run_train,
        "evaluate": _run_evaluate,
        "generate": _run_generate,
        "originality": _run_originality,
        "validity": _run_validity,
        "controls": _run_controls,
        "latent": _run_latent,
    }
    try:
        handlers[args.command](args)
    except MelodyGenError as error:
        message = " ".join(str(error).splitlines())  # one line, whatever a path holds
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
