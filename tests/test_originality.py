"""Originality: notes from events, the training index against brute force, figures, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import PHRASES, write_tune

from melodygen.cli import main
from melodygen.core.checkpoint import build_network, save_model
from melodygen.core.generation import MAX_OUTPUTS, GenerationRequest
from melodygen.core.originality import (
    SharedRun,
    TrainingIndex,
    _suffix_array,
    cut_melodies,
    generate_in_model_space,
    key_notes,
    melody_notes,
    run_summary,
    sanity_figures,
    verdict,
)
from melodygen.families.melody_rnn.configs import HParams
from melodygen.families.melody_rnn.generate import MelodyGenerator
from melodygen.families.melody_rnn.model_file import ModelInfo
from melodygen.theory import NO_EVENT, NOTE_OFF


def events_of(notes: list[tuple[int, int]], staccato: bool = False) -> np.ndarray:
    """Melody events playing (pitch, IOI) notes back to back; staccato notes end a step early."""
    events = []
    for pitch, ioi in notes:
        held = [NO_EVENT] * (ioi - 1)
        if staccato and ioi > 1:
            held[-1] = NOTE_OFF
        events += [pitch, *held]
    return np.array(events, dtype=np.int64)


def random_notes(rng: np.random.Generator, count: int, pitches=range(60, 72)) -> list:
    return [(int(rng.choice(pitches)), int(rng.choice([1, 2, 4, 6]))) for _ in range(count)]


def brute_force_run(query: list, training: list[list]) -> tuple[int, int]:
    """(most notes, longest span) of any run of ``query`` inside one training melody."""
    best_notes = best_span = 0
    for melody in training:
        for i in range(len(query)):
            for j in range(len(melody)):
                length = 0
                while (
                    i + length < len(query)
                    and j + length < len(melody)
                    and query[i + length] == melody[j + length]
                ):
                    length += 1
                best_notes = max(best_notes, length)
                best_span = max(best_span, sum(ioi for _, ioi in query[i : i + length]))
    return best_notes, best_span


# Melodies as notes ------------------------------------------------------------------------


def test_notes_pitch_onset_and_ioi_rests_included():
    events = [NO_EVENT, NOTE_OFF, 60, NO_EVENT, NOTE_OFF, NO_EVENT, 62, 64, NO_EVENT, NOTE_OFF, -2]
    notes = melody_notes(events)
    assert notes.pitches.tolist() == [60, 62, 64]
    assert notes.onsets.tolist() == [2, 6, 7]
    # 60 sounds 2 steps then rests 2: its IOI is 4. The last note lasts to its note-off.
    assert notes.iois.tolist() == [4, 1, 2]
    assert notes.steps == len(events)
    # Without a note-off the last note lasts to the end of the melody.
    assert melody_notes(events[:-2]).iois.tolist() == [4, 1, 2]
    assert melody_notes([60, NO_EVENT, NO_EVENT]).iois.tolist() == [3]
    assert len(melody_notes([NO_EVENT, NOTE_OFF])) == 0


def test_cut_melodies_start_and_random_bar_windows():
    # Each event is its own step number, so a window's first event is where it starts.
    melodies = [np.arange(300), np.arange(100)]
    first = cut_melodies(melodies, 128)
    assert [len(m) for m in first] == [128, 100]
    assert np.array_equal(first[0], melodies[0][:128])
    starts = set()
    for seed in range(200):
        long, short = cut_melodies(melodies, 128, "random", seed=seed)
        start = int(long[0])
        assert start % 16 == 0 and start + 128 <= 300
        assert np.array_equal(long, np.arange(start, start + 128))
        assert np.array_equal(short, melodies[1])  # shorter than the window: kept whole
        starts.add(start)
    assert starts == set(range(0, 300 - 128 + 1, 16))  # every bar line that leaves room
    again = cut_melodies(melodies, 128, "random", seed=3)[0]
    assert np.array_equal(again, cut_melodies(melodies, 128, "random", seed=3)[0])


# The training index -----------------------------------------------------------------------


def test_suffix_array_matches_sorting_suffixes():
    rng = np.random.default_rng(1)
    for size in (1, 2, 7, 60, 300):
        keys = rng.integers(-3, 3, size)
        expected = sorted(range(size), key=lambda i: keys[i:].tolist())
        assert _suffix_array(keys).tolist() == expected
    assert _suffix_array(np.zeros(0, dtype=np.int64)).tolist() == []


def test_index_agrees_with_brute_force():
    rng = np.random.default_rng(2)
    # A small alphabet, so runs of several notes happen by chance.
    training = [random_notes(rng, int(rng.integers(5, 40)), pitches=[60, 62]) for _ in range(12)]
    index = TrainingIndex([events_of(m) for m in training])
    for _ in range(25):
        query = random_notes(rng, int(rng.integers(1, 30)), pitches=[60, 62])
        run = index.longest_run(events_of(query))
        assert (run.notes, run.steps) == brute_force_run(query, training)


def test_exact_copy_shares_the_whole_melody():
    rng = np.random.default_rng(3)
    training = [random_notes(rng, 40) for _ in range(30)]
    index = TrainingIndex([events_of(m) for m in training], [f"song{i}" for i in range(30)])
    run = index.longest_run(events_of(training[17]))
    assert run.notes == 40
    assert run.steps == sum(ioi for _, ioi in training[17])
    assert (run.train_melody, run.train_note, run.query_start) == (17, 0, 0)
    assert index.source(run) == "song17"
    assert (index.melodies, index.notes) == (30, 1200)


@pytest.mark.parametrize("k", [1, 3, 9])
def test_a_shared_phrase_of_k_notes_gives_k(k):
    rng = np.random.default_rng(k)
    training = [random_notes(rng, 50) for _ in range(20)]
    index = TrainingIndex([events_of(m) for m in training])
    phrase = training[5][20 : 20 + k]
    # Filler pitches below the training range never match, so the run is the phrase alone.
    before, after = random_notes(rng, 7, range(40, 52)), random_notes(rng, 6, range(40, 52))
    run = index.longest_run(events_of(before + phrase + after))
    assert run.notes == k
    assert run.steps == sum(ioi for _, ioi in phrase)
    # The run is reported where it is: melody 5 from note 20, or any other place holding it.
    assert run.query_start == 7
    found = training[run.train_melody][run.train_note : run.train_note + k]
    assert found == phrase


def test_a_transposed_copy_shares_little():
    rng = np.random.default_rng(4)
    training = [random_notes(rng, 60, pitches=range(60, 84, 2)) for _ in range(10)]
    index = TrainingIndex([events_of(m) for m in training])
    # Up a semitone every pitch is odd: nothing matches.
    up = [(pitch + 1, ioi) for pitch, ioi in training[3]]
    assert index.longest_run(events_of(up)) == SharedRun(0, 0)
    # Up a tone most pitches exist, but runs break where the copy leaves the training notes.
    up = [(pitch + 2, ioi) for pitch, ioi in training[3]]
    run = index.longest_run(events_of(up))
    assert 0 < run.notes < 10
    assert index.longest_run(events_of(training[3])).notes == 60


def test_a_different_ioi_breaks_the_run_but_note_offs_do_not():
    notes = [(40 + i, 2 + i % 3) for i in range(30)]  # all pitches different: no chance runs
    index = TrainingIndex([events_of(notes)])
    for changed in (0, 11, 29):
        query = list(notes)
        query[changed] = (query[changed][0], query[changed][1] + 1)
        run = index.longest_run(events_of(query))
        assert run.notes == max(changed, len(notes) - changed - 1)
    # Staccato playing changes when notes end, not when they start: the same run.
    assert index.longest_run(events_of(notes, staccato=True)).notes == len(notes) - 1
    last_ioi = notes[-1][1]
    staccato_end = events_of(notes, staccato=True)
    assert melody_notes(staccato_end).iois[-1] == last_ioi - 1  # the last note ends earlier


def test_runs_do_not_cross_training_melodies():
    first, second = [(60, 2), (62, 2), (64, 2)], [(65, 2), (67, 2), (69, 2)]
    index = TrainingIndex([events_of(first), events_of(second)])
    run = index.longest_run(events_of(first + second))
    assert run.notes == 3 and run.steps == 6


def test_longest_span_and_most_notes_can_come_from_different_runs():
    short_notes = [(60 + i, 1) for i in range(8)]  # 8 notes spanning half a bar
    long_notes = [(50, 16), (52, 16), (53, 16)]  # 3 notes spanning 3 bars
    index = TrainingIndex([events_of(short_notes), events_of(long_notes + [(30, 1)])])
    run = index.longest_run(events_of(short_notes + [(90, 4)] + long_notes + [(91, 4)]))
    assert run.notes == 8
    assert run.steps == 48 and run.bars == 3.0
    assert run.query_start == 9 and run.train_melody == 1


# Figures ----------------------------------------------------------------------------------


def test_key_share_and_notes_per_bar():
    c_major = melody_notes(events_of([(p, 4) for p in (60, 62, 64, 65, 67, 69, 71, 72)]))
    chromatic = melody_notes(events_of([(60 + i, 4) for i in range(12)]))
    assert key_notes(c_major) == 8
    assert key_notes(chromatic) == 7
    assert sanity_figures([c_major])["in_key_share"] == 1.0
    assert sanity_figures([chromatic])["in_key_share"] == pytest.approx(7 / 12)
    # A minor and its relative major are the same notes.
    a_minor = melody_notes(events_of([(p, 4) for p in (57, 59, 60, 62, 64, 65, 67, 69)]))
    assert key_notes(a_minor) == 8
    figures = sanity_figures([c_major, chromatic, melody_notes([NO_EVENT] * 32)])
    assert figures["in_key_share"] == pytest.approx((1 + 7 / 12) / 2)
    assert figures["in_key_share_pooled"] == pytest.approx((8 + 7) / (8 + 12))
    # 8 notes over 32 steps (2 bars), 12 over 48 (3 bars), none over 2 bars.
    assert figures["notes_per_bar"] == pytest.approx((4 + 4 + 0) / 3)
    assert figures["silent_melodies"] == 1 and figures["notes"] == 20
    eighths = melody_notes(events_of([(60, 2)] * 16))
    assert sanity_figures([eighths])["notes_per_bar"] == 8.0


def test_run_summary_thresholds_are_strict():
    runs = [SharedRun(n, s) for n, s in [(1, 0), (3, 16), (5, 32), (9, 33), (12, 64), (20, 65)]]
    summary = run_summary(runs)
    assert summary["over_2_bars"] == 3 and summary["share_over_2_bars"] == 0.5
    assert summary["over_4_bars"] == 1 and summary["share_over_4_bars"] == pytest.approx(1 / 6)
    assert summary["median_bars"] == (32 + 33) / 2 / 16
    assert summary["median_notes"] == 7
    assert summary["max_bars"] == 65 / 16 and summary["max_notes"] == 20
    assert summary["p90_bars"] == pytest.approx(np.percentile([0, 16, 32, 33, 64, 65], 90) / 16)


def test_verdict():
    def figures(share, over_4, longest=1.0, melodies=1000):
        return {
            "originality": {
                "share_over_2_bars": share,
                "over_2_bars": round(share * melodies),
                "melodies": melodies,
                "over_4_bars": over_4,
                "max_bars": longest,
            }
        }

    assert verdict(figures(0.05, 0), figures(0.07, 0)) == {"status": "ok", "reasons": []}
    assert verdict(figures(0.07, 0), figures(0.07, 1)) == {"status": "ok", "reasons": []}
    worse = verdict(figures(0.10, 0), figures(0.07, 0))
    assert worse["status"] == "defect" and "10.0%" in worse["reasons"][0]
    copied = verdict(figures(0.0, 2, 5.5), figures(0.07, 0))
    assert copied["status"] == "defect" and "5.5 bars" in copied["reasons"][0]
    # A held-out share is known to one melody in its count: 1 in 1,000 generated beside
    # none of 95 held-out is no defect; 11 in 1,000 (more than 1 in 95) is.
    assert verdict(figures(0.001, 0), figures(0.0, 0, melodies=95))["status"] == "ok"
    assert verdict(figures(0.011, 0), figures(0.0, 0, melodies=95))["status"] == "defect"


# Generation and the command line ----------------------------------------------------------


def fresh_checkpoint(folder: Path, config: str = "basic_rnn") -> Path:
    """A small untrained network saved as a real checkpoint."""
    import keras

    keras.utils.set_random_seed(0)
    info = ModelInfo.for_config(config, HParams(rnn_layer_sizes=(16, 16)))
    return save_model(folder / config, build_network(info), info)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return fresh_checkpoint(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    """A tiny basic_rnn dataset, and one for lookback_rnn to mismatch the checkpoint."""
    root = tmp_path_factory.mktemp("originality")
    tunes = root / "tunes"
    tunes.mkdir()
    for index in range(8):
        write_tune(tunes / f"tune{index}.mid", PHRASES[index % len(PHRASES)])
    built = {}
    for config in ("basic_rnn", "lookback_rnn"):
        built[config] = root / config
        argv = ["dataset", "build", "--input", str(tunes), "--config", config]
        argv += ["--output", str(built[config]), "--eval-ratio", "0.3", "--workers", "1"]
        assert main(argv + ["--quiet"]) == 0
    return built


def test_no_key_and_no_primer_generate_in_the_model_key_space(checkpoint):
    generator = MelodyGenerator(checkpoint)
    assert generator.info.spec.transpose_to_key == 0
    result = generator.generate(GenerationRequest(length_steps=32, num_outputs=3, seed=1))
    assert result.transpose == 0
    # A key request would move the melodies: the comparison must not ask for one.
    moved = generator.generate(GenerationRequest(length_steps=32, num_outputs=3, seed=1, key=2))
    assert moved.transpose == 2

    melodies = generate_in_model_space(checkpoint, MAX_OUTPUTS + 3, 32, seed=5)
    assert len(melodies) == MAX_OUTPUTS + 3 and {len(m) for m in melodies} == {32}
    pitches = np.concatenate([m[m >= 0] for m in melodies])
    assert pitches.min() >= 48 and pitches.max() < 84
    again = generate_in_model_space(checkpoint, MAX_OUTPUTS + 3, 32, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(melodies, again, strict=True))
    # Batches draw different seeds: the second batch does not repeat the first.
    assert not np.array_equal(melodies[0], melodies[MAX_OUTPUTS])


def test_cli_originality_end_to_end(checkpoint, datasets, tmp_path: Path, capsys):
    report = tmp_path / "out" / "originality.json"
    argv = ["originality", "--checkpoint", str(checkpoint), "--data", str(datasets["basic_rnn"])]
    code = main(argv + ["--num", "6", "--bars", "4", "--seed", "3", "--json", str(report)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "longest run shared with a training melody" in out and "verdict: " in out
    assert "notes in most likely key" in out and "notes per bar" in out
    figures = json.loads(report.read_text())
    sections = {"settings", "generated", "held_out", "held_out_whole", "verdict"}
    assert set(figures) == sections | {"structure"}
    # These 8-bar tunes have no 16 bars to measure structure on: said, not a zero.
    structure = figures["structure"]
    assert "no held-out melody of 16 bars" in structure["generated"]["unavailable"]
    assert structure["real"]["bars"] == 0 and structure["settings"]["tunes"] == 0
    assert "structure:" in out and "no held-out melody of 16 bars" in out
    assert figures["settings"]["steps"] == 64 and figures["settings"]["num"] == 6
    assert figures["generated"]["originality"]["melodies"] == 6
    assert figures["verdict"]["status"] in ("ok", "defect")
    # Every held-out tune repeats the phrases of a training tune: the copies are found.
    # Cut to 4 bars, a tune's 16th note ends a step early (its note-off); it still matches
    # where a training tune ends on the same note lasting as long.
    held = figures["held_out"]
    assert held["originality"]["share_over_2_bars"] == 1.0
    assert (
        held["originality"]["max_notes"] in (15, 16) and 3.5 < held["originality"]["max_bars"] <= 4
    )
    assert held["sanity"]["in_key_share"] == 1.0
    assert held["sanity"]["notes_per_bar"] == 4.0
    assert figures["held_out_whole"]["originality"]["max_notes"] == 32
    assert figures["settings"]["held_out_melodies"] == held["originality"]["melodies"]
    # --structure-tunes 0 leaves the structure figure out.
    code = main(
        argv + ["--num", "2", "--bars", "2", "--structure-tunes", "0", "--json", str(report)]
    )
    assert code == 0 and "structure" not in json.loads(report.read_text())
    assert held["longest"][0]["source"].startswith("tune")
    # An untrained network copying a tune of 4 bars by chance would be a miracle.
    assert figures["generated"]["originality"]["max_bars"] < 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--checkpoint": "{tmp}/nowhere"}, "does not exist"),
        ({"--data": "{tmp}/nowhere"}, "does not exist"),
        ({"--data": "{lookback}"}, "is encoded for lookback_rnn"),
        ({"--num": "0"}, "number of melodies must be 1 to"),
        ({"--bars": "0"}, "must be 1 to"),
        ({"--temperature": "0"}, "temperature must be above 0"),
        ({"--seed": "-1"}, "seed must be 0 to"),
    ],
)
def test_cli_originality_errors_are_one_line(
    checkpoint, datasets, tmp_path: Path, capsys, change, message
):
    options = {"--checkpoint": str(checkpoint), "--data": str(datasets["basic_rnn"])}
    options.update(
        {k: v.format(tmp=tmp_path, lookback=datasets["lookback_rnn"]) for k, v in change.items()}
    )
    try:
        code = main(["originality", *[part for item in options.items() for part in item]])
    except SystemExit as exit_info:  # a flag out of its range: argparse's usage, then one line
        code = exit_info.code
    out, err = capsys.readouterr()
    assert code == 2
    errors = [line for line in err.splitlines() if "error: " in line]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err
