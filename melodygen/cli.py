"""The ``melodygen`` command line: build datasets, train, evaluate.

Every failure the user can fix (a missing file, a bad flag value, a dataset
built for another configuration) ends with a one-line ``error: ...`` and exit
status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from melodygen import __version__
from melodygen.errors import MelodyGenError
from melodygen.models.configs import CONFIGS

KEYS = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
FLAT_KEYS = {"DB": 1, "EB": 3, "GB": 6, "AB": 8, "BB": 10}


def _quiet_tensorflow() -> None:
    """Keep TensorFlow's start-up chatter (such as CUDA probing on a CPU-only machine) quiet."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _transpositions(text: str) -> list[int]:
    """``-5:6`` (a Python-style range), ``-2,0,2`` or ``0``."""
    try:
        if ":" in text:
            low, high = (int(part) for part in text.split(":"))
            values = list(range(low, high))
        else:
            values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a range like -5:7 or a list like -2,0,2 (semitones)"
        ) from None
    if not values or any(abs(v) > 24 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: transpositions must be within ±24 semitones")
    return values


def _key(text: str):
    """A key name (C, F#, Bb), 0-11, or 'none' to keep melodies where they are."""
    upper = text.strip().upper()
    if upper == "CONFIG":
        return "config"
    if upper == "NONE":
        return None
    if upper.isdigit() and 0 <= int(upper) < 12:
        return int(upper)
    if upper in KEYS:
        return KEYS.index(upper)
    if upper in FLAT_KEYS:
        return FLAT_KEYS[upper]
    raise argparse.ArgumentTypeError(f"{text!r} is not a key: use C, F#, Bb, 0-11 or none")


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError("the eval ratio must be at least 0 and below 1")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="melodygen",
        description="Melody generation with Keras re-implementations of Magenta's Melody RNN.",
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
    build.add_argument("--config", required=True, choices=list(CONFIGS))
    build.add_argument("--output", required=True, type=Path, help="dataset folder to write")
    build.add_argument(
        "--eval-ratio",
        type=_ratio,
        default=0.1,
        help="share of songs held out for evaluation (default 0.1)",
    )
    build.add_argument(
        "--transpose",
        type=_transpositions,
        default=None,
        metavar="RANGE",
        help="augment the training split with transpositions, e.g. -5:7 "
        "(semitones; most useful with --transpose-to-key none)",
    )
    build.add_argument(
        "--transpose-to-key",
        type=_key,
        default="config",
        metavar="KEY",
        help="key melodies are moved to before encoding (C, F#, Bb, ... or none); "
        "default: the configuration's (C for all but mono_rnn)",
    )
    build.add_argument("--min-bars", type=int, default=7)
    build.add_argument("--max-steps", type=int, default=512)
    build.add_argument("--min-unique-pitches", type=int, default=5)
    build.add_argument("--gap-bars", type=float, default=1.0)
    build.add_argument(
        "--time-signature",
        type=_time_signature,
        default=None,
        metavar="N/D",
        help="read every file in this meter at one tempo, e.g. 4/4 for POP909, whose files "
        "declare 1/4 and change tempo with the recording (default: each file's own)",
    )
    build.add_argument(
        "--workers", type=_positive, default=None, help="processes to use (default: all cores)"
    )
    build.add_argument("--quiet", action="store_true", help="no progress bar")

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
        choices=list(CONFIGS),
        default=None,
        help="must match the dataset's configuration (default: the dataset's)",
    )
    train.add_argument("--steps", type=_positive, default=20000, help="total training steps")
    train.add_argument(
        "--hparams",
        default=None,
        metavar="K=V,...",
        help="override hyperparameters, e.g. batch_size=64,rnn_layer_sizes=[256,256]",
    )
    train.add_argument(
        "--eval-every",
        type=_positive,
        default=200,
        help="steps between held-out evaluations and checkpoints (default 200)",
    )
    train.add_argument(
        "--early-stopping",
        type=_positive,
        default=None,
        metavar="N",
        help="stop after N evaluations without a lower eval loss",
    )
    train.add_argument(
        "--time-limit",
        type=_positive_float,
        default=None,
        metavar="MINUTES",
        help="stop (evaluated and saved, resumable) after this many minutes of training",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = commands.add_parser("evaluate", help="held-out metrics of a model on a dataset")
    evaluate.add_argument(
        "--checkpoint",
        required=True,
        type=Path,
        help="a training run folder or a saved model folder",
    )
    evaluate.add_argument("--data", required=True, type=Path, help="dataset folder")
    evaluate.add_argument("--split", choices=["eval", "train"], default="eval")
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
        type=int,
        default=None,
        help="track of --primer-midi (default: MELODY, else the first)",
    )
    generate.add_argument(
        "--primer-bars",
        type=_positive,
        default=None,
        help="how many bars of --primer-midi to use (default: all)",
    )
    generate.add_argument(
        "--exclude-primer", action="store_true", help="leave the primer out of the output"
    )
    generate.add_argument("--key", default=None, help="key of the output, e.g. D, F#, Bb")
    generate.add_argument(
        "--mode", default="major", help="major, minor, dorian, mixolydian, ... (default major)"
    )
    generate.add_argument(
        "--in-scale", action="store_true", help="keep every generated pitch inside the key's scale"
    )
    generate.add_argument(
        "--bpm", type=float, default=None, help="tempo (default: the primer MIDI's, else 120)"
    )
    length = generate.add_mutually_exclusive_group()
    length.add_argument(
        "--bars",
        type=float,
        default=None,
        help="total length in bars, primer included (default 8)",
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
        type=_positive,
        default=None,
        help="total length in sixteenth-note steps, primer included",
    )
    generate.add_argument("--temperature", type=float, default=1.0)
    generate.add_argument("--top-k", type=int, default=None)
    generate.add_argument("--top-p", type=float, default=None)
    generate.add_argument("--min-pitch", type=int, default=0, help="lowest MIDI pitch allowed")
    generate.add_argument("--max-pitch", type=int, default=127, help="highest MIDI pitch allowed")
    generate.add_argument("--num-outputs", type=_positive, default=1)
    generate.add_argument(
        "--seed", type=int, default=None, help="same seed and request give the same melodies"
    )
    generate.add_argument("--beam-size", type=_positive, default=1)
    generate.add_argument("--branch-factor", type=_positive, default=1)
    generate.add_argument("--steps-per-iteration", type=_positive, default=1)
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
        "--num", type=int, default=100, help="melodies to generate (default 100)"
    )
    originality.add_argument(
        "--bars", type=int, default=8, help="length of each melody in 4/4 bars (default 8)"
    )
    originality.add_argument("--temperature", type=float, default=1.0)
    originality.add_argument("--seed", type=int, default=0)
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
    from melodygen.dataset import build_dataset
    from melodygen.music import ExtractionParams

    params = ExtractionParams(
        min_bars=args.min_bars,
        max_steps=args.max_steps,
        min_unique_pitches=args.min_unique_pitches,
        gap_bars=args.gap_bars,
        time_signature=args.time_signature,
    )
    summary = build_dataset(
        args.input,
        args.config,
        args.output,
        eval_ratio=args.eval_ratio,
        params=params,
        transpositions=args.transpose or (),
        transpose_to_key=args.transpose_to_key,
        workers=args.workers,
        progress=not args.quiet,
    )
    print(summary.format())
    print(f"dataset written to {args.output}")


def _run_train(args) -> None:
    from melodygen.train import train

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
    )
    best = f", best eval loss {result.best_eval_loss:.4f}" if result.best_eval_loss else ""
    print(f"trained to step {result.steps}{best}; model saved in {result.model_dir}")


def _run_evaluate(args) -> None:
    from melodygen.evaluate import evaluate, format_report

    figures = evaluate(args.checkpoint, args.data, split=args.split)
    print(format_report(figures))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")


def _run_generate(args) -> None:
    from melodygen.generate import (
        GenerationRequest,
        MelodyGenerator,
        bars_to_steps,
        parse_key,
    )
    from melodygen.primer import midi_primer, parse_primer
    from melodygen.render import Synth, program_number, write_wav

    if args.primer_midi is not None:
        primer = midi_primer(args.primer_midi, track=args.track, bars=args.primer_bars)
    else:
        if args.track is not None or args.primer_bars is not None:
            raise MelodyGenError("--track and --primer-bars go with --primer-midi")
        primer = parse_primer(args.primer)
    from melodygen.meter import parse_meter

    meter = parse_meter(args.meter) or primer.meter
    length = args.steps if args.steps is not None else bars_to_steps(args.bars or 8, meter)
    request = GenerationRequest(
        primer=primer,
        length_steps=length,
        time_signature=meter,
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
    )
    request.validate()  # before loading the model: bad requests fail fast
    program = program_number(args.instrument)
    synth = Synth() if args.wav else None  # says why audio is unavailable before generating
    generator = MelodyGenerator(args.checkpoint, device=args.device)
    result = generator.generate(request)
    prefix = args.name or time.strftime("melody_%Y%m%d-%H%M%S")
    width = max(2, len(str(len(result.melodies))))
    for melody in result.melodies:
        path = args.out / f"{prefix}_{melody.index + 1:0{width}d}.mid"
        melody.write_midi(path, program=program)
        print(f"{path}  ({melody.steps} steps, log-likelihood {melody.log_likelihood:.1f})")
        if synth is not None:
            print(write_wav(path.with_suffix(".wav"), synth.render(melody, program=program)))
    print(
        f"{len(result.melodies)} melodies from {generator.config} in {result.seconds:.2f} s "
        f"written to {args.out}"
    )


def _run_originality(args) -> None:
    from melodygen.originality import format_report, originality_report

    figures = originality_report(
        args.checkpoint,
        args.data,
        num=args.num,
        bars=args.bars,
        temperature=args.temperature,
        seed=args.seed,
        window=args.window,
        device=args.device,
    )
    print(format_report(figures))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_tensorflow()
    handlers = {
        "dataset": _run_build,
        "train": _run_train,
        "evaluate": _run_evaluate,
        "generate": _run_generate,
        "originality": _run_originality,
    }
    try:
        handlers[args.command](args)
    except MelodyGenError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
