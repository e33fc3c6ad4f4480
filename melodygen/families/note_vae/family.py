"""A MusicVAE-style note model as a MelodyGen family: the object the rest reaches.

Music as notes (pitch, duration class, velocity class; rests as notes of their own) in
windows of 32 (:mod:`~melodygen.families.note_vae.notes`,
:mod:`~melodygen.families.note_vae.dataset`); a bidirectional LSTM encoder, a Gaussian
code and an LSTM decoder (:mod:`~melodygen.families.note_vae.network`); the generator
decodes random codes, variations of a melody and blends of two
(:mod:`~melodygen.families.note_vae.generate`). Held-out figures: the negative ELBO per
note and in bits per played note (an upper bound on the NLL), the same without the
velocity part (beside the families that write no velocity), its reconstruction and KL
parts, and the accuracy of each note part, teacher-forced and from the code alone
(:mod:`~melodygen.families.note_vae.scoring`). How prior samples' pitch classes,
intervals and lengths overlap the held-out melodies':
:func:`~melodygen.families.note_vae.features.overlap_report`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from melodygen.core.family import Batch, Family, TuneScore, model_label, register
from melodygen.errors import CheckpointError, ConfigError, DatasetError
from melodygen.families.note_vae import dataset as data
from melodygen.families.note_vae.configs import CONFIGS, CONFIGURATION_WORDS, HParams, get_config
from melodygen.families.note_vae.dataset import NoteDataset, NoteSplit
from melodygen.families.note_vae.model_file import FAMILY, VaeModelInfo, max_weight_values

LN2 = math.log(2)


def _layout(hparams: HParams) -> str:
    """How the code carries a window's notes, in words (see :class:`HParams`)."""
    if not (hparams.note_readout or hparams.place_code or hparams.word_dropout):
        return "MusicVAE's: the code from the encoder's final states, read at every step"
    return (
        f"note by note: each note's encoder output projected to {hparams.note_readout} "
        f"values into the code, the code projected to {hparams.place_code} values for each "
        f"place the decoder writes, {hparams.word_dropout:.0%} of previous notes hidden from "
        "the decoder in training"
    )


def _sizes(layers: Sequence[int]) -> str:
    return f"{len(layers)}x{layers[0]}" if len(set(layers)) == 1 else "-".join(map(str, layers))


class NoteVaeFamily(Family):
    """The ``note_vae`` family (see the module docstring)."""

    name = FAMILY
    title = "Note VAE"
    summary = "new phrases from random codes, variations of a melody and blends of two"

    # Saved models
    def read_info(self, values: dict, source: str | Path) -> VaeModelInfo:
        return VaeModelInfo.from_dict(values, source)

    def build_network(self, info: VaeModelInfo):
        from melodygen.families.note_vae.network import build_model

        return build_model(*info.classes.sizes, info.hparams)

    def max_weight_values(self, info: VaeModelInfo) -> int:
        return max_weight_values(info)

    def describe(self, info: VaeModelInfo) -> str:
        hparams = info.hparams
        return (
            f"{info.config}, {_sizes(hparams.encoder_sizes)} encoder, "
            f"{_sizes(hparams.decoder_sizes)} decoder, {hparams.latent_size}-d code"
        )

    def configuration(self, info: VaeModelInfo) -> str:
        return info.config

    def configurations(self) -> dict[str, str]:
        return dict(CONFIGURATION_WORDS)

    def model_facts(self, info: VaeModelInfo) -> list[tuple[str, str]]:
        hparams = info.hparams
        encoder = " x ".join(map(str, hparams.encoder_sizes))
        decoder = " x ".join(map(str, hparams.decoder_sizes))
        durations, velocities = info.classes.sizes
        return [
            ("encoder", f"{encoder} bidirectional LSTM"),
            ("decoder", f"{decoder} LSTM"),
            ("code", f"{hparams.latent_size} dimensions"),
            (
                "notes",
                f"129 pitches (rest included), {durations} durations, {velocities} velocities",
            ),
            (
                "KL",
                f"beta up to {hparams.max_beta:g} over {hparams.beta_anneal_steps:,} steps, "
                f"{hparams.free_bits:g} free bits per window",
            ),
            ("window", f"{data.WINDOW} notes"),
            ("layout", _layout(hparams)),
        ]

    # Data
    def build_dataset(
        self,
        inputs: Sequence[str | Path],
        output: str | Path,
        config: str | None = None,
        eval_ratio: float = 0.1,
        options: dict | None = None,
        workers: int | None = None,
        progress: bool = True,
    ):
        if config is not None and config not in CONFIGS:
            raise ConfigError(
                f"{config} is not a {self.title} configuration; choose one of "
                f"{', '.join(CONFIGS)} (or leave out --config)"
            )
        options = dict(options or {})
        return data.build_dataset(
            inputs,
            output,
            config=config,
            eval_ratio=eval_ratio,
            transpositions=options.get("transpositions") or (),
            workers=workers,
            progress=progress,
        )

    def build_dataset_like(
        self,
        info: VaeModelInfo,
        model_dir: Path,
        inputs: Sequence[str | Path],
        output: str | Path,
        eval_ratio: float = 0.1,
        options: dict | None = None,
        workers: int | None = None,
        progress: bool = True,
    ):
        """The notes read with the base's duration and velocity classes (its network has
        exactly these outputs); one the base lacks is read as the nearest, counted."""
        options = dict(options or {})
        return data.build_dataset(
            inputs, output, config=info.config, eval_ratio=eval_ratio,
            transpositions=options.get("transpositions") or (), workers=workers,
            progress=progress, classes=info.classes, like=model_label(model_dir),
        )  # fmt: skip

    def open_dataset(self, path: str | Path) -> NoteDataset:
        return NoteDataset.open(path)

    def new_model_info(self, dataset: NoteDataset, hparams: str | dict | None) -> VaeModelInfo:
        try:
            chosen = get_config(dataset.config).hparams.override(hparams)
            chosen.validate(*dataset.classes.sizes)
        except ConfigError as error:
            raise ConfigError(f"--hparams: {error}") from None
        return VaeModelInfo(config=dataset.config, hparams=chosen, classes=dataset.classes)

    def check_fits(self, info: VaeModelInfo, model_dir: Path, dataset: NoteDataset) -> None:
        if info.classes != dataset.classes:
            raise DatasetError(
                f"{dataset.path} has other note classes than the model in {model_dir} "
                f"({dataset.classes.describe()}; the model: {info.classes.describe()}); a note "
                "VAE reads only data built with its own classes (build it from the same "
                "training songs)"
            )

    def check_config(self, dataset: NoteDataset, config: str) -> None:
        if config != dataset.config:
            raise DatasetError(
                f"dataset {dataset.path} was built for {dataset.config}, not {config}; rebuild "
                f"it with --config {config}, train with --config {dataset.config}, or change "
                "the network with --hparams"
            )

    def with_hparams(self, info: VaeModelInfo, hparams: str | dict | None) -> VaeModelInfo:
        if not hparams:
            return info
        try:
            requested = info.hparams.override(hparams)
            requested.validate(*info.classes.sizes)
        except ConfigError as error:
            raise ConfigError(f"--hparams: {error}") from None
        if requested.network_shape() != info.hparams.network_shape():
            raise CheckpointError(
                "--hparams may change how the model trains (learning_rate, batch_size, "
                "dropout, clip_norm, max_beta, beta_anneal_steps, free_bits), not the "
                "network's shape: the weights would not fit"
            )
        return VaeModelInfo(info.config, requested, info.classes, dict(info.training))

    # Training
    def training_batches(self, split: NoteSplit, info: VaeModelInfo, seed: int) -> Iterator[Batch]:
        return data.training_batches(split, info.hparams.batch_size, seed, info.hparams.latent_size)

    def evaluation_batches(self, split: NoteSplit, info: VaeModelInfo) -> list[Batch]:
        return data.evaluation_batches(split, info.hparams.batch_size, info.hparams.latent_size)

    def compile(self, model, info: VaeModelInfo) -> None:
        import keras

        from melodygen.families.note_vae.network import VaeLoss, make_metrics

        sizes = info.classes.sizes
        model.compile(
            optimizer=keras.optimizers.Adam(
                learning_rate=info.hparams.learning_rate, global_clipnorm=info.hparams.clip_norm
            ),
            loss=VaeLoss(*sizes, info.hparams.free_bits),
            metrics=make_metrics(*sizes),
        )

    def evaluate_batches(self, model, batches: list[Batch], info: VaeModelInfo) -> dict:
        from melodygen.families.note_vae.scoring import evaluate_batches

        return evaluate_batches(model, batches, info)

    def selection_metric(self, info: VaeModelInfo) -> str:
        """The held-out training objective at full beta (``objective``), not the negative
        ELBO: with free bits the ELBO counts the code's first bits, which training does
        not pay for, so it would prefer an untrained model whose code carries nothing."""
        return "objective"

    def progress_figures(self, figures: dict, split: str) -> str:
        parts = []
        for key, label in (
            ("nll", "nelbo"),
            ("objective", "objective"),
            ("recon_nll", "recon"),
            ("kl", "kl"),
            ("beta", "beta"),
            ("pitch_accuracy", "pitch acc"),
            ("code_pitch_duration_accuracy", "code pitch+dur acc"),
        ):
            if key in figures:
                parts.append(f"{label} {figures[key]:.3f}")
        return " ".join(parts)

    def figure_labels(self) -> dict[str, str]:
        return {
            "nll": "negative ELBO per note (nats; reconstruction + KL, an upper bound on the "
            "NLL; lower is better)",
            "bits_per_note": "bits per note (the negative ELBO in bits per played note)",
            "no_velocity_bits_per_note": "bits per note without velocity (the negative ELBO "
            "less the velocity NLL, in bits per played note: pitches and lengths, as the "
            "Melody RNNs' and ABC models' bits per note, which pay nothing for velocity)",
            "objective": "held-out training objective per note (nats: reconstruction NLL plus "
            "max_beta x the KL past the free bits, per window, over the notes; what picks the "
            "model kept)",
            "recon_nll": "reconstruction NLL per note (nats; pitch, duration and velocity)",
            "kl": "KL per window (nats the code carries about its 32 notes)",
            "pitch_accuracy": "pitch accuracy (teacher-forced reconstruction)",
            "duration_accuracy": "duration accuracy (teacher-forced reconstruction)",
            "velocity_accuracy": "velocity accuracy (teacher-forced reconstruction)",
            "code_pitch_accuracy": "pitch accuracy from the code (greedy decoding of each "
            "window's code mean, no teacher forcing, position by position)",
            "code_duration_accuracy": "duration accuracy from the code (greedy decoding of "
            "each window's code mean, no teacher forcing, position by position)",
            "code_velocity_accuracy": "velocity accuracy from the code (greedy decoding of "
            "each window's code mean, played notes, position by position)",
            "code_pitch_duration_accuracy": "pitch and duration accuracy from the code (both "
            "right, greedy decoding of each window's code mean, position by position)",
            "code_note_accuracy": "note accuracy from the code (pitch, duration and velocity "
            "all right, greedy decoding of each window's code mean, position by position)",
            "steps": "notes evaluated",
        }

    def configuration_description(self, name: str) -> str:
        return get_config(name).description

    def selection_words(self, info: VaeModelInfo) -> str:
        return "the evaluation with the lowest held-out training objective per note"

    def figure_lines(self, figures: dict) -> list[str]:
        """The report's lines; a figure an older evaluation lacks is left out."""
        lines = [
            f"{'negative ELBO:':<20}{figures['nll']:.4f} nats per note "
            f"({figures['bits_per_note']:.4f} bits per played note, an upper bound)",
        ]
        if "no_velocity_bits_per_note" in figures:
            lines.append(
                f"{'':<20}{figures['no_velocity_bits_per_note']:.4f} bits per played note "
                "without velocity (as the Melody RNNs and ABC models count)"
            )
        lines += [
            f"{'reconstruction:':<20}{figures['recon_nll']:.4f} nats per note",
            f"{'KL:':<20}{figures['kl']:.3f} nats per window",
            f"{'accuracy:':<20}pitch {figures['pitch_accuracy']:.4f}, duration "
            f"{figures['duration_accuracy']:.4f}, velocity {figures['velocity_accuracy']:.4f} "
            "(teacher-forced)",
        ]
        if "code_note_accuracy" in figures:
            lines.append(
                f"{'':<20}pitch {figures['code_pitch_accuracy']:.4f}, duration "
                f"{figures['code_duration_accuracy']:.4f}, velocity "
                f"{figures['code_velocity_accuracy']:.4f}, whole note "
                f"{figures['code_note_accuracy']:.4f} (from the code alone)"
            )
        if "code_pitch_duration_accuracy" in figures:
            lines.append(
                f"{'':<20}pitch and duration {figures['code_pitch_duration_accuracy']:.4f} "
                "(from the code alone: the melody as written, dynamics aside)"
            )
        return lines

    # Evaluation
    def score_tunes(self, model, info: VaeModelInfo, tunes: Sequence) -> list[TuneScore]:
        """Each tune's melodies read as the dataset build reads songs, scored window by window
        (:mod:`~melodygen.families.note_vae.scoring`); a tune with no melody of at least a
        window's notes is left out."""
        from melodygen.families.note_vae.notes import NoMelodyError, melody_notes, played_notes
        from melodygen.families.note_vae.scoring import song_bits

        pieces: list[tuple[str, np.ndarray]] = []
        for name, sequences in tunes:
            for sequence in sequences:
                try:
                    pieces.append((name, info.classes.encode(melody_notes(sequence))))
                except NoMelodyError:
                    continue
        bits = song_bits(model, [notes for _, notes in pieces], info)
        return _summed(
            (name, value, played_notes(notes))
            for (name, notes), value in zip(pieces, bits, strict=True)
            if value is not None
        )

    def score_dataset(self, model, info: VaeModelInfo, dataset: NoteDataset, split: str):
        from melodygen.families.note_vae.notes import played_notes
        from melodygen.families.note_vae.scoring import song_bits

        loaded = dataset.load(split)
        songs = [loaded.song(index) for index in range(len(loaded.names))]
        bits = song_bits(model, songs, info)
        return _summed(
            (name, value, played_notes(notes))
            for name, notes, value in zip(loaded.names, songs, bits, strict=True)
            if value is not None
        )

    def grid_melodies(self, dataset: NoteDataset, split: str) -> tuple[list, list[str]]:
        """Each song's notes as a melody on the sixteenth-note grid (at 120 BPM, 4/4)."""
        from melodygen.core.generation import sequence_events
        from melodygen.families.note_vae.notes import to_sequence

        loaded = dataset.load(split)
        melodies = [
            np.array(sequence_events(to_sequence(dataset.classes.decode(loaded.song(index)))))
            for index in range(len(loaded.names))
        ]
        return melodies, list(loaded.names)

    # Generation
    def request_options(self) -> frozenset[str]:
        """Sampling, tempo, meter and pitch range, and variations of a melody and blends of
        two; no primer, key, length or beam search (a melody is one decoded window)."""
        return frozenset(
            {
                "qpm",
                "time_signature",
                "temperature",
                "top_k",
                "top_p",
                "min_pitch",
                "max_pitch",
                "num_outputs",
                "seed",
                "variations_of",
                "distance",
                "blend",
                "blend_steps",
            }
        )

    def latent_report(self, checkpoint: str | Path, dataset: str | Path, **settings) -> dict:
        from melodygen.families.note_vae.features import latent_report

        return latent_report(checkpoint, dataset, **settings)

    def latent_lines(self, report: dict) -> str:
        from melodygen.families.note_vae.features import format_latent

        return format_latent(report)

    def load_generator(self, checkpoint: str | Path, device: str = "auto"):
        from melodygen.families.note_vae.generate import VaeGenerator

        return VaeGenerator(checkpoint, device=device)


def _summed(rows) -> list[TuneScore]:
    """One score per song name, its pieces' bits and notes summed, in first-seen order."""
    totals: dict[str, list] = {}
    for name, bits, notes in rows:
        entry = totals.setdefault(name, [0.0, 0])
        entry[0] += bits
        entry[1] += notes
    return [
        TuneScore(name, float(bits), notes) for name, (bits, notes) in totals.items() if notes > 0
    ]


FAMILY_OBJECT = register(NoteVaeFamily())
