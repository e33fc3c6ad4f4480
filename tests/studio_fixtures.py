"""Tiny checkpoints and MIDI files made in code, shared by the studio, app and browser tests."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pretty_midi

CARD = {
    "name": "folk_attention_rnn",
    "style": "folk",
    "config": "attention_rnn",
    "description": "Folk tunes from the Nottingham collection, attention over two bars",
    "hparams": {"rnn_layer_sizes": [8], "attn_length": 4},
    "data": {
        "sources": [
            {
                "name": "Nottingham",
                "licence": "GPL-3.0",
                "url": "https://github.com/jukedeck/nottingham-dataset",
            }
        ],
        "train_melodies": 844,
        "eval_melodies": 96,
        "train_steps": 359707,
        "transpositions": "none (all in C)",
    },
    "training": {"steps": 400, "batch_size": 128, "wall_seconds": 5400.0, "machine": "1 GPU"},
    "metrics": {
        "nll": 0.4123,
        "perplexity": 1.51,
        "accuracy": 0.871,
        "event_accuracy": 0.612,
        "no_event_accuracy": 0.93,
        "label_nll": 0.4,
        "steps": 42674,
    },
    "originality": {"median_bars": 1.2, "max_bars": 2.5, "share_over_2_bars": 0.04},
    "originality_held_out": {"median_bars": 1.5, "max_bars": 6.0, "share_over_2_bars": 0.115},
    "sanity": {
        "generated": {"in_key_share": 0.93, "notes_per_bar": 5.1},
        "held_out": {"in_key_share": 0.97, "notes_per_bar": float("nan")},
    },
    "verdict": {"status": "ok", "reasons": []},
    "commands": ["melodygen train --config attention_rnn --data data/folk --run-dir runs/folk"],
}


def training_log() -> str:
    """metrics.jsonl as melodygen.core.train writes it: step 0 evaluated, then train and eval."""
    lines = [{"step": 0, "seconds": 0.0, "eval": {"nll": 3.6, "perplexity": 36.6, "steps": 90}}]
    for step in (200, 400, 600):
        lines.append(
            {
                "step": step,
                "seconds": step / 10,
                "train": {"loss": 2.0 - step / 1000, "label_nll": 2.0 - step / 1000},
                "eval": {"nll": 2.0 - step / 900, "perplexity": 5.0, "steps": 90},
            }
        )
    return "\n".join(json.dumps(line) for line in lines) + "\n"


def make_checkpoints(root: Path) -> Path:
    """Two tiny random models: folk_attention_rnn with card and log, pop_basic_rnn bare."""
    import keras

    from melodygen.core.checkpoint import build_network, save_model
    from melodygen.families.melody_rnn.configs import HParams
    from melodygen.families.melody_rnn.model_file import ModelInfo

    keras.utils.set_random_seed(0)
    for name, config in (("folk_attention_rnn", "attention_rnn"), ("pop_basic_rnn", "basic_rnn")):
        hparams = HParams(rnn_layer_sizes=(8,), attn_length=4 if config == "attention_rnn" else 0)
        info = ModelInfo.for_config(config, hparams)
        save_model(root / name, build_network(info), info)
    (root / "folk_attention_rnn" / "card.json").write_text(json.dumps(CARD))
    (root / "folk_attention_rnn" / "metrics.jsonl").write_text(training_log())
    (root / "notes").mkdir()  # a folder without a model is not listed
    return root


def midi_file(tracks: list[tuple[str, int, bool, list[tuple[int, float, float]]]], qpm=100.0):
    """MIDI bytes: tracks of (name, program, is_drum, [(pitch, start, end) in seconds])."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=qpm)
    for name, program, is_drum, notes in tracks:
        instrument = pretty_midi.Instrument(program=program, is_drum=is_drum, name=name)
        for pitch, start, end in notes:
            instrument.notes.append(pretty_midi.Note(90, pitch, start, end))
        midi.instruments.append(instrument)
    buffer = io.BytesIO()
    midi.write(buffer)
    return buffer.getvalue()


QUARTER = 0.6  # seconds per quarter note at 100 BPM
LEAD = [(72, 74, 76, 77), (79, 77, 76, 74)]  # two bars of quarter notes


def song() -> bytes:
    """Drums, a chordal piano, and a MELODY track of two bars, at 100 BPM."""
    drums = [(36, i * QUARTER, i * QUARTER + 0.1) for i in range(8)]
    chords = [(p, 0.0, 4 * QUARTER) for p in (48, 52, 55)]
    chords += [(p, 4 * QUARTER, 8 * QUARTER) for p in (50, 53, 57)]
    lead = [
        (pitch, (bar * 4 + beat) * QUARTER, (bar * 4 + beat + 1) * QUARTER)
        for bar, pitches in enumerate(LEAD)
        for beat, pitch in enumerate(pitches)
    ]
    return midi_file(
        [("Drums", 0, True, drums), ("Piano", 0, False, chords), ("MELODY", 73, False, lead)]
    )


def drums_only() -> bytes:
    return midi_file([("Kit", 0, True, [(36, i * 0.5, i * 0.5 + 0.1) for i in range(8)])])


def cluster() -> bytes:
    """One track striking 60 notes at once, twice: no melody can be read from it."""
    notes = [(p, t, t + 1.0) for t in (0.0, 1.2) for p in range(40, 100)]
    return midi_file([("Cluster", 0, False, notes)])


VAE = "folk_vae_tiny"
"""The tiny note_vae model :func:`make_vae_checkpoint` adds."""


def make_vae_checkpoint(root: Path, scratch: Path) -> Path:
    """A tiny ``note_vae`` model (``vae_tiny``) trained 12 steps on 8 songs written in code
    (test_note_vae's), saved as ``root/folk_vae_tiny``; ``scratch`` holds the songs, data
    and run."""
    import shutil

    from test_note_vae import write_song

    from melodygen.core.family import get_family
    from melodygen.core.train import train

    songs = scratch / "songs"
    songs.mkdir(parents=True)
    for index in range(8):
        write_song(songs / f"piece{index:02d}.mid", shift=index, named=index % 2 == 0)
    data, run = scratch / "data", scratch / "run"
    family = get_family("note_vae")
    family.build_dataset([songs], data, config="vae_tiny", workers=1, progress=False)
    train(data, run, steps=12, eval_every=12, progress=False)
    shutil.copytree(run / "model", root / VAE)
    return root / VAE
