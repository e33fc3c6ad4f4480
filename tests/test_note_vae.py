"""The note_vae family: notes as classes from MIDI written in code, a tiny VAE trained in
the shared loop, random melodies, variations, blends, and hostile files and inputs."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

import melodygen.families.note_vae.family  # noqa: F401  registers the family
from melodygen.core.checkpoint import MODEL_JSON, latest_checkpoint, load_model, read_model_info
from melodygen.core.family import get_family
from melodygen.core.generation import GenerationError, GenerationRequest, load_generator
from melodygen.core.split import song_is_eval
from melodygen.errors import CheckpointError, ModelFileError
from melodygen.families.note_vae.configs import CONFIGS
from melodygen.families.note_vae.dataset import WINDOW, window_starts
from melodygen.families.note_vae.features import histograms, overlap, prior_overlap
from melodygen.families.note_vae.generate import blend_codes, slerp
from melodygen.families.note_vae.network import build_model
from melodygen.families.note_vae.notes import NoteClasses, melody_notes, to_sequence
from melodygen.io.music import load_note_sequences, note_seq

QUARTER = 0.5  # seconds at 120 BPM
STEP = QUARTER / 12  # one grid step
EVAL_RATIO = 0.3
# (length in quarters, or a rest as a negative length), cycled: eighths, quarters, a
# dotted quarter and a quarter rest: grid lengths 6, 12 and 18.
RHYTHM = [0.5, 0.5, 1.0, 1.5, 0.5, 0.5, 1.0, -1.0]
VELOCITIES = [40, 80, 120]
MELODY_PITCHES = [60, 62, 64, 65, 67, 69, 71, 72]


def _line(instrument: pretty_midi.Instrument, notes: int, shift: int, velocities=VELOCITIES):
    """``notes`` notes of the melody's rhythm, rests between, pitches from the scale."""
    time, played, index = 0.0, 0, 0
    while played < notes:
        length = RHYTHM[index % len(RHYTHM)]
        if length > 0:
            pitch = MELODY_PITCHES[(played * 3 + shift) % len(MELODY_PITCHES)]
            velocity = velocities[played % len(velocities)]
            # Played, not quantized: each note ends a little early (a 1/24 beat gap).
            end = time + length * QUARTER - STEP / 2
            instrument.notes.append(pretty_midi.Note(velocity, pitch, time, end))
            played += 1
        time += abs(length) * QUARTER
        index += 1
    return time


def write_song(path: Path, shift: int, named: bool) -> Path:
    """A song of 48 melody notes. ``named``: POP909's tracks (MELODY, a BRIDGE and a PIANO
    with more notes, and drums); else a Lead, a quieter Pad with fewer notes, and drums
    with the most notes of all."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    lead = pretty_midi.Instrument(program=0, name="MELODY" if named else "Lead")
    length = _line(lead, 48, shift)
    other = pretty_midi.Instrument(program=1, name="BRIDGE" if named else "Pad")
    count = 80 if named else 20  # a BRIDGE with more notes than the MELODY is not chosen
    for index in range(count):
        start = index * length / count
        other.notes.append(pretty_midi.Note(64, 84 + index % 5, start, start + 0.1))
    drums = pretty_midi.Instrument(program=0, is_drum=True, name="Drums")
    for index in range(200):
        drums.notes.append(pretty_midi.Note(100, 36, index * 0.1, index * 0.1 + 0.05))
    midi.instruments += [lead, other, drums]
    if named:
        piano = pretty_midi.Instrument(program=0, name="PIANO")
        for index in range(60):
            for pitch in (36, 40, 43):
                start = index * QUARTER
                piano.notes.append(pretty_midi.Note(50, pitch, start, start + QUARTER))
        midi.instruments.append(piano)
    midi.write(str(path))
    return path


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("songs")
    for index in range(12):
        write_song(folder / f"piece{index:02d}.mid", shift=index, named=index % 2 == 0)
    held = [index for index in range(12) if song_is_eval(f"piece{index:02d}.mid", EVAL_RATIO)]
    assert 0 < len(held) < 12
    return folder


@pytest.fixture(scope="module")
def dataset(songs, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("data") / "vae"
    get_family("note_vae").build_dataset(
        [songs], output, config="vae_tiny", eval_ratio=EVAL_RATIO, workers=2, progress=False
    )
    return output


@pytest.fixture(scope="module")
def run(dataset, tmp_path_factory) -> Path:
    from melodygen.core.train import train

    folder = tmp_path_factory.mktemp("runs") / "vae"
    train(dataset, folder, steps=20, eval_every=10, progress=False)
    return folder


@pytest.fixture(scope="module")
def generator(run):
    return load_generator(run)


# Notes and data -------------------------------------------------------------------------------


def test_the_melody_track_is_read_and_durations_and_velocities_become_classes(dataset):
    family = get_family("note_vae")
    opened = family.open_dataset(dataset)
    # Eighths, quarters and dotted quarters; the played notes' early ends are not rests.
    assert opened.classes.durations == (6, 12, 18)
    assert opened.classes.velocities == tuple(VELOCITIES)  # the melody's, not 64 or 100
    meta = json.loads((dataset / "dataset.json").read_text())
    assert meta["family"] == "note_vae" and meta["summary"]["durations_exact"] == 1.0
    train, held = opened.load("train"), opened.load("eval")
    assert len(train.names) + len(held.names) == 12 and len(held.names) > 0
    pitches = set(train.notes[:, 0].tolist()) - {0}
    assert pitches == {p + 1 for p in MELODY_PITCHES}  # no BRIDGE, PIANO, Pad or drum note
    # 48 notes and 6 quarter rests a song: windows start every 16 notes, the last at the end.
    assert all(len(train.song(i)) == 54 for i in range(len(train.names)))
    assert window_starts(54) == [0, 16, 22]
    assert len(train) == 3 * len(train.names)
    assert train.windows(np.arange(2)).shape == (2, WINDOW, 3)


def test_polyphony_is_reduced_to_the_highest_note_and_short_gaps_join_the_note_before():
    sequence = note_seq.NoteSequence()
    sequence.tempos.add(qpm=120.0)
    for pitch, start, end, velocity in [
        (60, 0.0, 0.5, 70),  # a chord's highest note is kept...
        (55, 0.0, 0.5, 30),  # ...its lower one is not
        (62, 0.5, 1.2, 90),  # overlaps the next note: cut where it starts
        (64, 1.0, 1.48, 50),  # ends a 1/24 beat early: no rest
        (65, 1.5, 2.0, 60),
        (67, 3.0, 3.5, 80),  # after a half-note rest
    ]:
        sequence.notes.add(pitch=pitch, start_time=start, end_time=end, velocity=velocity)
    notes = melody_notes(sequence)
    assert notes.tolist() == [
        [60, 12, 70],
        [62, 12, 90],
        [64, 12, 50],
        [65, 12, 60],
        [-1, 24, 0],
        [67, 12, 80],
    ]


def test_classes_are_fitted_from_the_commonest_lengths_and_velocity_quantiles():
    rng = np.random.default_rng(0)
    notes = np.stack(
        [rng.integers(60, 72, 400), rng.choice([3, 6, 12], 400), rng.integers(1, 128, 400)], 1
    )
    notes[0, 1] = 7  # heard once: no class, read as the nearest (6)
    classes = NoteClasses.fit([notes])
    assert classes.durations == (3, 6, 12)
    assert len(classes.velocities) == 8 and list(classes.velocities) == sorted(classes.velocities)
    encoded = classes.encode(notes)
    assert classes.durations[encoded[0, 1]] == 6
    decoded = classes.decode(encoded)
    assert (decoded[:, 0] == notes[:, 0]).all()
    assert np.abs(decoded[:, 2] - notes[:, 2]).max() < 20


# Training and generation --------------------------------------------------------------------


def test_the_tiny_model_trains_resumes_and_its_figures_are_named(run, dataset, songs):
    from melodygen.core.train import train

    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    family = get_family("note_vae")
    final = metrics[-1]["eval"]
    assert set(final) == set(family.figure_labels())
    assert final["nll"] < metrics[0]["eval"]["nll"]
    assert {"kl", "beta", "recon_nll"} <= set(metrics[-1]["train"])
    _, info = read_model_info(run)
    model, _ = load_model(run)
    assert model.count_params() == info.parameters
    # The annealing counts steps in the weights, so a resumed run goes on where it was.
    shutil.copytree(run, run.parent / "resumed")
    train(dataset, run.parent / "resumed", steps=25, eval_every=5, progress=False)
    resumed, _ = load_model(latest_checkpoint(run.parent / "resumed"))
    assert float(resumed.get_layer("latent").step.numpy()) == 25.0
    scores = family.score_dataset(model, info, family.open_dataset(dataset), "eval")
    assert scores and all(math.isfinite(s.bits) and s.notes == 48 for s in scores)
    tune = load_note_sequences(songs / "piece01.mid")
    (score,) = family.score_tunes(model, info, [("piece01", tune), ("empty", [])])
    assert score.name == "piece01" and score.notes == 48 and score.bits > 0
    # Each window's code noise comes from its notes: a score is the same in any batch.
    other = load_note_sequences(songs / "piece03.mid")
    together = family.score_tunes(model, info, [("piece03", other), ("piece01", tune)])
    assert together[1].bits == pytest.approx(score.bits, rel=1e-5)


def test_random_melodies_are_seeded_and_carry_the_classes_velocities(generator):
    request = GenerationRequest(num_outputs=3, seed=7, qpm=90.0)
    first, again = generator.generate(request), generator.generate(request)
    assert len(first.melodies) == 3
    for one, two in zip(first.melodies, again.melodies, strict=True):
        assert one.sequence == two.sequence and one.log_likelihood == two.log_likelihood
    sequences = [melody.sequence for melody in first.melodies]
    velocities = {note.velocity for sequence in sequences for note in sequence.notes}
    assert velocities <= set(VELOCITIES)
    quarter = 60.0 / 90.0
    lengths = {
        round((n.end_time - n.start_time) / quarter * 12) for s in sequences for n in s.notes
    }
    assert lengths <= {6, 12, 18}
    assert (
        generator.generate(GenerationRequest(num_outputs=3, seed=8)).melodies[0].sequence
        != (sequences[0])
    )


def test_variations_start_at_the_melodys_code_and_move_further_with_distance(generator, songs):
    melody = load_note_sequences(songs / "piece00.mid")[0]
    mean, _ = generator.encode(melody)
    request = GenerationRequest(num_outputs=4, seed=3)
    same = generator.variations(melody, 0.0, request)
    assert np.allclose(same.codes, mean[None, :]) and len(same.result.melodies) == 4
    assert same.result.notices == [f"its first {WINDOW} of 54 notes and rests were encoded"]
    spread = {
        distance: np.linalg.norm(
            generator.variations(melody, distance, request).codes - mean, axis=1
        )
        for distance in (0.2, 1.0)
    }
    assert spread[0.2].mean() < spread[1.0].mean()


def test_a_blend_runs_from_one_code_to_the_other(generator, songs):
    first = load_note_sequences(songs / "piece00.mid")[0]
    second = load_note_sequences(songs / "piece05.mid")[0]
    blend = generator.blend(first, second, 5, GenerationRequest(seed=1))
    assert len(blend.result.melodies) == 5
    assert np.allclose(blend.codes[0], generator.encode(first)[0], atol=1e-6)
    assert np.allclose(blend.codes[-1], generator.encode(second)[0], atol=1e-6)
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert np.allclose(slerp(a, b, 0.5), [math.sqrt(0.5), math.sqrt(0.5)])  # on the circle
    assert np.allclose(blend_codes(a, b, 3), [a, [math.sqrt(0.5)] * 2, b])


def test_prior_samples_are_compared_with_held_out_melodies(run, dataset):
    same = histograms([melody_notes(to_sequence(np.array([[60, 6, 80], [64, 12, 80]])))])
    assert overlap(same, same)["mean"] == pytest.approx(1.0)
    figures = prior_overlap(run, dataset, samples=8)
    assert set(figures) == {"pitch_class", "interval", "duration", "mean"}
    assert all(0.0 <= value <= 1.0 for value in figures.values())


# Reconstruction from the code alone, bits without velocity, prior overlap -------------------


def _window(seed: int) -> np.ndarray:
    """32 random notes as classes (C4 to B4, 3 durations, 3 velocities), a rest at 5."""
    rng = np.random.default_rng(seed)
    window = np.stack(
        [rng.integers(61, 73, WINDOW), rng.integers(0, 3, WINDOW), rng.integers(0, 3, WINDOW)], 1
    )
    window[5] = [0, 1, 0]
    return window.astype(np.int32)


def _small_vae(velocities=tuple(VELOCITIES), **hparams):
    """An untrained compiled network over 3 durations, and its info: vae_tiny with one
    64-unit decoder layer (the 16-unit pair learns a window far more slowly)."""
    from melodygen.families.note_vae.model_file import VaeModelInfo

    chosen = CONFIGS["vae_tiny"].hparams.override(
        {"decoder_sizes": [64], "encoder_sizes": [32], "learning_rate": 0.02, **hparams}
    )
    info = VaeModelInfo("vae_tiny", chosen, NoteClasses((6, 12, 18), tuple(velocities)))
    model = build_model(*info.classes.sizes, chosen)
    get_family("note_vae").compile(model, info)
    return model, info


def test_windows_a_model_memorised_come_back_from_their_codes_alone_and_not_without_them():
    import keras

    from melodygen.families.note_vae.dataset import make_batch
    from melodygen.families.note_vae.scoring import reconstruct

    keras.utils.set_random_seed(0)
    family = get_family("note_vae")
    model, info = _small_vae(max_beta=0.0, beta_anneal_steps=0)  # the code is free
    windows = np.stack([_window(1), _window(2)])
    for _ in range(200):
        model.train_on_batch(*make_batch(windows, info.hparams.latent_size, fresh=True)[:2])
    batches = [make_batch(windows, info.hparams.latent_size, rows=8)]  # 6 padding rows
    figures = family.evaluate_batches(model, batches, info)
    for part in ("pitch", "duration", "velocity"):
        assert figures[f"{part}_accuracy"] == 1.0
    for part in ("pitch", "duration", "velocity", "note"):
        assert figures[f"code_{part}_accuracy"] == 1.0, part
    assert figures["steps"] == 2 * WINDOW
    # Two windows, one decoder: only the code tells them apart. Cut it off (the initial
    # states, and the code and its place projections at every step) and both decode to
    # the same notes, so at most the positions where the windows agree can be right in both.
    init = model.get_layer("decoder_init")
    init.set_weights([np.zeros_like(w) for w in init.get_weights()])
    kernel = model.get_layer("decoder_0").cell.kernel
    cut = np.array(kernel)
    cut[info.hparams.note_width :] = 0.0
    kernel.assign(cut)
    decoded = reconstruct(model, windows, layers=1)
    assert (decoded[0] == decoded[1]).all()
    agree = (windows[0] == windows[1]).all(axis=1).mean()
    blind = family.evaluate_batches(model, batches, info)
    assert blind["code_note_accuracy"] <= (1 + agree) / 2 < 1.0
    assert blind["code_pitch_accuracy"] < 1.0


LAYOUTS = {
    "MusicVAE's": {"note_readout": 0, "place_code": 0, "word_dropout": 0.0},
    "note by note": {"note_readout": 4, "place_code": 4, "word_dropout": 0.5},
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_greedy_decoding_feeds_back_its_own_notes_as_the_whole_network_would(layout):
    """The compiled step (two layers' states in one tensor, the code's projection for the
    note's place) against the whole network, run on the notes decoded so far with its
    noise chosen so that its code is the one given: the same likeliest note at every
    position, every note fed back."""
    from melodygen.families.note_vae.generate import DecoderStep, greedy_notes
    from melodygen.families.note_vae.network import LOGVAR_RANGE, encoder_model, split_packed
    from melodygen.families.note_vae.notes import REST

    model, info = _small_vae(decoder_sizes=[16, 16], **LAYOUTS[layout])
    codes = np.random.default_rng(5).standard_normal((4, info.hparams.latent_size))
    codes = codes.astype(np.float32)
    fast = greedy_notes(DecoderStep(model, len(info.hparams.decoder_sizes)), codes)
    encoder = encoder_model(model)
    notes = np.zeros((4, WINDOW, 3), np.int32)
    for position in range(WINDOW):
        mean, logvar = encoder.predict_on_batch(notes)
        noise = (codes - mean) / np.exp(0.5 * np.clip(logvar, *LOGVAR_RANGE))
        packed = model.predict_on_batch({"notes": notes, "noise": noise.astype(np.float32)})
        heads = split_packed(np.asarray(packed), *info.classes.sizes)[:3]
        notes[:, position] = np.stack([head[:, position].argmax(-1) for head in heads], 1)
        notes[:, position, 2] *= notes[:, position, 0] != REST
    assert (fast == notes).all()
    assert fast.shape == (4, WINDOW, 3) and fast.max() > 0


def test_code_alone_accuracy_is_counted_position_by_position():
    from melodygen.families.note_vae.scoring import accuracy_by_part

    windows = np.stack([_window(1), _window(2)])
    decoded = windows.copy()
    decoded[0, 3, 0] += 1  # one wrong pitch
    decoded[0, 5, 2] = 2  # a rest's velocity: a rest has none, nothing to get wrong
    decoded[0, 7, 2] = (windows[0, 7, 2] + 1) % 3  # one wrong velocity
    decoded[1] = np.roll(windows[1], 1, axis=0)  # every note one place late
    late = np.roll(windows[1], 1, axis=0) == windows[1]
    played = (windows[..., 0] != 0).sum()
    figures = accuracy_by_part(decoded, windows)
    assert figures["pitch"] == pytest.approx((31 + late[:, 0].sum()) / 64)
    assert figures["duration"] == pytest.approx((32 + late[:, 1].sum()) / 64)
    rest_late = windows[1, :, 0] == 0
    velocity_late = (late[:, 2] & ~rest_late).sum()
    assert figures["velocity"] == pytest.approx((31 - 1 + velocity_late) / played)
    whole_late = (late[:, :2].all(1) & (late[:, 2] | rest_late)).sum()
    assert figures["note"] == pytest.approx((30 + whole_late) / 64)
    assert figures["note"] < 0.6 and accuracy_by_part(windows, windows)["note"] == 1.0


def test_bits_per_note_without_velocity_leave_out_the_velocity_head_only(run, dataset):
    from melodygen.families.note_vae.dataset import make_batch
    from melodygen.families.note_vae.network import LN2, window_figures

    family = get_family("note_vae")
    model, info = load_model(run)
    held = family.open_dataset(dataset).load("eval")
    batches = family.evaluation_batches(held, info)
    figures = family.evaluate_batches(model, batches, info)
    velocity = played = 0.0
    for inputs, targets, _ in batches:
        velocity += window_figures(model, inputs, targets, info.classes.sizes)[0][..., 2].sum()
        played += (targets[..., 0] > 0).sum()
    assert velocity > 0
    assert figures["no_velocity_bits_per_note"] == pytest.approx(
        figures["bits_per_note"] - velocity / LN2 / played, rel=1e-9
    )
    # One velocity class (Nottingham's files all play at 90): velocity costs nothing.
    model, info = _small_vae(velocities=(90,))
    windows = np.stack([_window(3), _window(4)])
    windows[..., 2] = 0
    one = family.evaluate_batches(model, [make_batch(windows, info.hparams.latent_size)], info)
    assert one["no_velocity_bits_per_note"] == pytest.approx(one["bits_per_note"], rel=1e-9)
    assert one["code_velocity_accuracy"] == 1.0


def test_evaluate_reports_and_writes_the_new_figures_for_a_card(run, dataset):
    from melodygen.core.evaluate import evaluate, format_report
    from melodygen.release import BITS_KEYS

    family = get_family("note_vae")
    figures = evaluate(run, dataset)
    card = {key: figures[key] for key in (*family.figure_labels(), *BITS_KEYS)}  # as release
    for key in ("code_pitch_accuracy", "code_note_accuracy", "no_velocity_bits_per_note"):
        assert math.isfinite(card[key]) and key in family.figure_labels()
    assert card["code_note_accuracy"] <= min(
        card["code_pitch_accuracy"], card["code_duration_accuracy"]
    )
    assert card["no_velocity_bits_per_note"] < card["bits_per_note"]
    report = format_report(figures)
    assert f"whole note {figures['code_note_accuracy']:.4f} (from the code alone" in report
    assert f"{figures['no_velocity_bits_per_note']:.4f} bits per played note without" in report
    older = {k: v for k, v in figures.items() if not k.startswith(("code_", "no_velocity"))}
    assert "from the code alone" not in "\n".join(family.figure_lines(older))


def test_prior_overlap_is_reported_beside_the_training_melodies(run, dataset, capsys, tmp_path):
    from melodygen.cli import main
    from melodygen.families.note_vae.features import format_overlap, overlap_report

    report = overlap_report(run, dataset, samples=8, seed=0)
    assert report["train_songs"] > 0 and report["samples"] == 8
    # Every song plays one rhythm over the same 8-note scale, 6 times round: the training
    # songs' pitch classes and lengths are the held-out songs', their intervals nearly.
    assert report["train"]["pitch_class"] == pytest.approx(1.0)
    assert report["train"]["duration"] == pytest.approx(1.0)
    assert 0.9 < report["train"]["interval"] < 1.0
    assert all(0.0 <= value <= 1.0 for value in report["prior"].values())
    assert report["prior"] == overlap_report(run, dataset, samples=8, seed=0)["prior"]
    assert report["prior"] == prior_overlap(run, dataset, samples=8, seed=0)
    assert "train split" in format_overlap(report)
    out = tmp_path / "latent.json"
    assert main(["latent", "--checkpoint", str(run), "--data", str(dataset)]
                + ["--samples", "8", "--pairs", "2", "--json", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "prior samples" in printed and "inner steps closer than the ends" in printed
    written = json.loads(out.read_text())
    assert written["overlap"]["prior"] == pytest.approx(report["prior"])
    assert written["blends"]["steps"] == 8
    # A damaged or wrong folder, or a model without a code: one line, exit 2.
    assert main(["latent", "--checkpoint", str(run), "--data", str(tmp_path)]) == 2
    assert "is not a MelodyGen dataset" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["latent", "--checkpoint", str(run), "--data", str(dataset), "--samples", "0"])
    assert "must be 1 to 10,000 melodies (got 0)" in capsys.readouterr().err


def test_note_distance_counts_pitches_and_rhythm_changed_inserted_or_deleted():
    from melodygen.families.note_vae.features import joint_note_distance, note_distance

    melody = np.array([[61, 3, 1], [63, 3, 2], [0, 6, 0], [65, 12, 1]])
    for distance in (note_distance, joint_note_distance):
        assert distance(melody, melody) == 0.0
        louder = melody.copy()
        louder[:, 2] = 4  # velocity is not compared
        assert distance(melody, louder) == 0.0
        shifted = np.concatenate([melody[1:], melody[:1]])  # one deleted, one inserted
        assert distance(melody, shifted) == pytest.approx(2 / 4)
        assert distance(melody, melody + 100) == 1.0
    changed = melody.copy()
    changed[1, 0] = 64  # one pitch of four: a quarter of the pitches, none of the rhythm
    assert note_distance(melody, changed) == pytest.approx(1 / 8)
    assert joint_note_distance(melody, changed) == pytest.approx(1 / 4)
    # One melody's pitches in the other's rhythm: between them, though no whole note is kept.
    other = np.array([[70, 6, 1], [72, 2, 1], [74, 2, 1], [0, 4, 0]])
    mixed = np.column_stack([melody[:, 0], other[:, 1], melody[:, 2]])
    assert note_distance(mixed, melody) == note_distance(mixed, other) == pytest.approx(1 / 2)
    assert note_distance(melody, other) == 1.0
    assert joint_note_distance(mixed, melody) == joint_note_distance(mixed, other) == 1.0


def test_blends_are_measured_from_both_ends(run, dataset, generator):
    from melodygen.families.note_vae.features import (
        blend_report,
        joint_note_distance,
        note_distance,
    )
    from melodygen.families.note_vae.generate import greedy_notes

    report = blend_report(run, dataset, pairs=2, steps=5, seed=3)
    assert report == {**blend_report(run, dataset, pairs=2, steps=5, seed=3),
                      "seconds": report["seconds"]}  # fmt: skip
    assert report["pairs"] >= 1 and report["steps"] == 5
    assert len(report["to_first"]) == len(report["to_last"]) == 5
    assert report["to_first"][0] == 0.0 and report["to_last"][-1] == 0.0
    assert report["to_first"][-1] == pytest.approx(report["ends"])
    assert 0.0 <= report["closer_share"] <= 1.0 and 0.0 <= report["smooth_share"] <= 1.0
    assert report["smooth_share"] <= report["closer_share"]
    assert report["joint"]["ends"] >= report["ends"]  # a whole note is kept less often
    # The ends are the decoded codes of the two windows: recompute one from the weights.
    from melodygen.families.note_vae.dataset import NoteDataset
    from melodygen.families.note_vae.features import held_out_windows

    windows = held_out_windows(NoteDataset.open(dataset), 2, np.random.default_rng(3))
    means = np.asarray(generator.encoder.predict_on_batch(windows)[0], np.float32)
    ends = greedy_notes(generator.steps, means)
    kept = np.mean([note_distance(ends[i], windows[i]) for i in range(2)])
    if report["pairs"] == 1:
        assert report["ends_kept"] == pytest.approx(kept)
        assert report["ends"] == pytest.approx(note_distance(ends[0], ends[1]))
        assert report["joint"]["ends"] == pytest.approx(joint_note_distance(ends[0], ends[1]))
    with pytest.raises(GenerationError, match="blend steps must be 2 to"):
        blend_report(run, dataset, pairs=2, steps=1)


# Refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, field",
    [
        ({"latent_size": -3}, "latent_size"),
        ({"encoder_sizes": [100000, 100000]}, "encoder_sizes"),
        ({"decoder_sizes": [4096, 4096, 4096, 4096]}, "weights"),
    ],
)
def test_a_hostile_model_file_is_one_line(run, tmp_path, change, field):
    folder = tmp_path / "hostile"
    shutil.copytree(run / "model", folder)
    values = json.loads((folder / MODEL_JSON).read_text())
    values["hparams"].update(change)
    (folder / MODEL_JSON).write_text(json.dumps(values))
    with pytest.raises(ModelFileError) as caught:
        load_generator(folder)
    assert field in str(caught.value) and "\n" not in str(caught.value)
    values["hparams"].update(json.loads((run / "model" / MODEL_JSON).read_text())["hparams"])
    values["velocities"] = [90, 30]
    (folder / MODEL_JSON).write_text(json.dumps(values))
    with pytest.raises(CheckpointError, match="velocities must hold at least one class"):
        load_generator(folder)


def test_bad_variation_and_blend_inputs_are_one_clear_line(generator, songs):
    melody = load_note_sequences(songs / "piece00.mid")[0]
    for call, words in [
        (lambda: generator.variations(melody, -0.5), "distance must be 0 to 4 (got -0.5)"),
        (lambda: generator.variations(melody, float("nan")), "distance must be"),
        (lambda: generator.blend(melody, melody, 1), "blend steps must be 2 to 64"),
        (lambda: generator.variations(note_seq.NoteSequence(), 0.5), "no pitched notes"),
    ]:
        with pytest.raises(GenerationError) as caught:
            call()
        assert words in str(caught.value) and "\n" not in str(caught.value)


def test_parameter_count_is_exact_for_every_configuration():
    for config in CONFIGS.values():
        if config.name == "melody_vae_big":
            continue  # 16 M weights: the formula is the same
        model = build_model(9, 8, config.hparams)
        assert model.count_params() == config.hparams.parameter_count(9, 8), config.name
    for layout in LAYOUTS.values():
        hparams = CONFIGS["vae_tiny"].hparams.override(layout)
        assert build_model(9, 8, hparams).count_params() == hparams.parameter_count(9, 8)


def test_a_model_file_from_before_the_note_by_note_layout_loads_as_musicvaes():
    """Files written before note_readout, place_code and word_dropout existed hold none of
    them: they were MusicVAE's layout, and load so (their weights fit it)."""
    from melodygen.families.note_vae.configs import HParams

    values = CONFIGS["melody_vae"].hparams.to_dict()
    for name in LAYOUTS["MusicVAE's"]:
        del values[name]
    old = HParams.from_dict(values)
    assert old.to_dict() == {**values, **LAYOUTS["MusicVAE's"]}
    assert old.network_shape() != CONFIGS["melody_vae"].hparams.network_shape()


def test_word_dropout_hides_a_share_of_previous_notes_in_training_only():
    from melodygen.families.note_vae.network import DecoderInputs

    notes = np.ones((64, WINDOW, 3), np.float32)
    code = np.zeros((64, 2), np.float32)
    layer = DecoderInputs(0.25, seed=1)
    hidden = np.asarray(layer([notes, code], training=True))[:, 1:, :3]
    assert 0.2 < (hidden == 0).all(axis=-1).mean() < 0.3
    shown = np.asarray(layer([notes, code], training=False))[:, 1:, :3]
    assert (shown == 1).all()


# Variations and blends asked in a request (as the CLI and the studio ask) -------------------


def test_a_request_asks_for_variations_and_blends_as_the_library_calls_make_them(generator, songs):
    melody = load_note_sequences(songs / "piece00.mid")[0]
    other = load_note_sequences(songs / "piece05.mid")[0]
    asked = GenerationRequest(variations_of=melody, distance=0.2, num_outputs=3, seed=5)
    made = generator.variations(melody, 0.2, GenerationRequest(num_outputs=3, seed=5)).result
    result = generator.generate(asked)
    assert [m.sequence for m in result.melodies] == [m.sequence for m in made.melodies]
    assert result.notices == made.notices and len(result.melodies) == 3
    blend = generator.generate(GenerationRequest(blend=(melody, other), blend_steps=4, seed=2))
    library = generator.blend(melody, other, 4, GenerationRequest(seed=2)).result
    assert [m.sequence for m in blend.melodies] == [m.sequence for m in library.melodies]
    # Outputs keep the model's velocity classes: audio and MIDI carry the accents.
    played = {n.velocity for m in blend.melodies for n in m.sequence.notes}
    assert played <= set(VELOCITIES) and played


def test_typed_notes_are_varied_on_the_grid_at_one_velocity(generator):
    from melodygen.core.generation import melody_sequence
    from melodygen.io.primer import parse_primer

    primer = parse_primer("3/4 D4 F#4 A4:2 r:2 | D5:8 C#5:4")
    sequence = melody_sequence(primer)
    assert [n.pitch for n in sequence.notes] == [62, 66, 69, 74, 73]
    assert {n.velocity for n in sequence.notes} == {100}
    assert sequence.time_signatures[0].numerator == 3 and sequence.tempos[0].qpm == 120.0
    result = generator.generate(GenerationRequest(variations_of=primer, num_outputs=2, seed=1))
    assert len(result.melodies) == 2
    assert "it has 6 notes and rests, fewer than the 32" in result.notices[0]
    assert "encoded repeated to fill them" in result.notices[0]  # its encoder reads 32
    window, _ = generator.melody_window(sequence)
    assert window.shape == (WINDOW, 3) and (window[6:12] == window[:6]).all()


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"distance": 4.5}, "distance must be 0 to 4 (got 4.5)"),
        ({"distance": float("nan")}, "distance must be 0 to 4"),
        ({"blend_steps": 1}, "blend steps must be 2 to 64 melodies (got 1)"),
        ({"blend_steps": 3.0}, "blend steps must be a whole number"),
        ({"variations_of": "C4 E4"}, "the melody to vary must be a Primer or a NoteSequence"),
        ({"variations_of": "empty"}, "the melody to vary has no notes"),
        ({"variations_of": "drums"}, "has no pitched notes"),
        ({"variations_of": "forever"}, "notes must run forwards, within 1 hour"),
        ({"variations_of": "nan"}, "notes must run forwards"),
        ({"variations_of": "fast"}, "sets a tempo of 1e+06 BPM"),
        ({"variations_of": "song", "blend": "two"}, "not both"),
        ({"blend": "one"}, "a blend takes two melodies"),
        ({"blend": "two", "num_outputs": 3}, "ask for 1 output, not 3"),
    ],
)
def test_bad_requested_melodies_and_numbers_are_one_line(songs, changes, words):
    from melodygen.io.primer import Primer

    song = load_note_sequences(songs / "piece00.mid")[0]

    def hostile(kind: str):
        sequence = note_seq.NoteSequence()
        sequence.tempos.add(qpm=1e6 if kind == "fast" else 120.0)
        start, end = {"forever": (0.0, 1e9), "nan": (float("nan"), 1.0)}.get(kind, (0.0, 1.0))
        sequence.notes.add(pitch=60, velocity=90, start_time=start, end_time=end)
        sequence.notes[0].is_drum = kind == "drums"
        return sequence

    melodies = {
        "song": song,
        "two": (song, song),
        "one": (song,),
        "empty": Primer(events=[-2, -2]),
        "C4 E4": "C4 E4",
        **{kind: hostile(kind) for kind in ("drums", "forever", "nan", "fast")},
    }
    request = GenerationRequest(
        **{
            name: melodies.get(value, value) if isinstance(value, str) else value
            for name, value in changes.items()
        }
    )
    with pytest.raises(GenerationError) as caught:
        request.validate()
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_a_family_that_makes_no_variations_refuses_them_in_one_line(songs):
    song = load_note_sequences(songs / "piece00.mid")[0]
    vae, rnn = get_family("note_vae"), get_family("melody_rnn")
    for request, words in [
        (GenerationRequest(variations_of=song), "variations of a melody"),
        (GenerationRequest(blend=(song, song)), "blends of two melodies"),
    ]:
        request.check_family(vae)  # reads them
        with pytest.raises(GenerationError) as caught:
            request.check_family(rnn)
        assert str(caught.value) == f"Melody RNN models make no {words}; Note VAE models do"
    GenerationRequest().check_family(rnn)  # nothing asked: nothing refused
    assert {"variations_of", "distance", "blend", "blend_steps"} <= vae.request_options()
    assert not {"variations_of", "blend"} & rnn.request_options()


def test_melodies_in_order_are_one_sequence_with_a_gap_between(generator):
    from melodygen.render import RenderError, in_order

    result = generator.generate(GenerationRequest(num_outputs=3, seed=4, qpm=100.0))
    sequences = [m.sequence for m in result.melodies]
    joined = in_order(result.melodies, gap_seconds=0.5)
    assert len(joined.notes) == sum(len(s.notes) for s in sequences)
    second = sequences[0].total_time + 0.5
    notes = [n for n in joined.notes if n.start_time >= second - 1e-9]
    assert len(notes) == len(sequences[1].notes) + len(sequences[2].notes)
    assert notes[0].start_time == pytest.approx(second + sequences[1].notes[0].start_time)
    assert [n.velocity for n in joined.notes] == [n.velocity for s in sequences for n in s.notes]
    assert joined.total_time == pytest.approx(sum(s.total_time for s in sequences) + 1.0)
    assert joined.tempos[0].qpm == 100.0
    for bad in ([], None):
        with pytest.raises(RenderError):
            in_order(result.melodies if bad is None else bad, gap_seconds=-1 if bad is None else 1)


def test_the_network_builds_when_the_keras_session_is_cleared_meanwhile(monkeypatch):
    """Streamlit calls keras.backend.clear_session() after every run of a page, from its
    script thread, which resets the counter Keras names bare ops from for every thread: a
    model then being built on the studio's loader thread had two ops called "get_item" and
    would not load. Every operation is a named layer now: a reset in the middle of a
    build (here, at each Concatenate) changes nothing."""
    import keras

    hparams = CONFIGS["vae_tiny"].hparams
    model = build_model(9, 8, hparams)
    assert all(isinstance(op, keras.layers.Layer) for op in model.operations)
    concatenate = keras.layers.Concatenate.__call__

    def cleared_first(self, *args, **kwargs):
        keras.backend.clear_session()
        return concatenate(self, *args, **kwargs)

    monkeypatch.setattr(keras.layers.Concatenate, "__call__", cleared_first)
    assert build_model(9, 8, hparams).count_params() == model.count_params()
