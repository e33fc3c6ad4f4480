"""Structure: exact shares of repeated bars, meters stored in datasets, and the reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from melodygen.cli import main
from melodygen.core.checkpoint import build_network, save_model
from melodygen.core.structure import (
    LAGS,
    StructureError,
    bar_onsets,
    held_out_for_structure,
    meter_of,
    repeat_flags,
    structure_figures,
    structure_lines,
    structure_report,
)
from melodygen.families.melody_rnn.configs import HParams
from melodygen.families.melody_rnn.dataset import MelodyDataset, build_dataset
from melodygen.families.melody_rnn.model_file import ModelInfo
from melodygen.theory import NO_EVENT, NOTE_OFF

# Melodies made in code --------------------------------------------------------------------


def bar(pitches: list[int], steps: int, staccato: bool = False) -> list[int]:
    """One bar of ``steps`` steps: the pitches as equal notes (a rest where pitch is None)."""
    length = steps // len(pitches)
    events: list[int] = []
    for pitch in pitches:
        held = [NO_EVENT] * (length - 1)
        if staccato and held:
            held[-1] = NOTE_OFF
        events += ([NOTE_OFF] if pitch is None else [pitch]) + held
    return events + [NO_EVENT] * (steps - len(events))


def tune(bars: list[list[int]]) -> np.ndarray:
    return np.array([event for item in bars for event in item], dtype=np.int64)


def distinct_bars(count: int, steps: int, start: int = 0) -> list[list[int]]:
    """Bars no two alike, not even transposed (each has its own rhythm-and-interval shape)."""
    return [bar([60, 60 + 1 + (start + index) % 11, 72 - (start + index) // 11], steps)
            for index in range(count)]  # fmt: skip


def shares(figures: dict, kind: str = "exact") -> dict[str, float]:
    return {key: value for key, value in figures[kind].items() if key != "counts"}


def test_aabb_in_six_eight_gives_its_shares_per_lag():
    steps = 12  # 6/8: twelve sixteenths a bar
    a, b = distinct_bars(4, steps), distinct_bars(4, steps, start=4)
    melody = tune(a + a + b + b)  # 4-bar sections: bars 13-16 repeat bars 9-12
    figures = structure_figures([melody], steps)
    assert figures["melodies"] == 1 and figures["bars"] == 8
    assert shares(figures) == {
        "lag_1": 0.0, "lag_2": 0.0, "lag_4": 0.5, "lag_8": 0.0, "any": 0.5, "lag_4_or_8": 0.5
    }  # fmt: skip
    assert figures["exact"]["counts"] == {
        "lag_1": 0, "lag_2": 0, "lag_4": 4, "lag_8": 0, "any": 4, "lag_4_or_8": 4
    }  # fmt: skip
    assert figures["steps_per_bar"] == {"12": 1}
    # 8-bar parts, A A: every bar from bar 9 on repeats the bar 8 before, and no other.
    eight = distinct_bars(8, steps)
    figures = structure_figures([tune(eight + eight)], steps)
    assert shares(figures) == {
        "lag_1": 0.0, "lag_2": 0.0, "lag_4": 0.0, "lag_8": 1.0, "any": 1.0, "lag_4_or_8": 1.0
    }  # fmt: skip


def test_bars_follow_the_meter():
    """The same 6/8 tune read in 4/4 bars no longer lines its repeats up with bar lines."""
    a, b = distinct_bars(4, 12), distinct_bars(4, 12, start=4)
    melody = tune(a + a + b + b)
    assert structure_figures([melody], 12)["exact"]["lag_4"] == 0.5
    assert structure_figures([melody], 16)["melodies"] == 0  # 192 steps: 12 bars of 4/4


def test_a_transposed_sequence_counts_only_with_transposition():
    steps = 16
    first = distinct_bars(8, steps)
    moved = [[event + 2 if event >= 0 else event for event in item] for item in first]
    figures = structure_figures([tune(first + moved)], steps)
    assert shares(figures)["any"] == 0.0
    assert shares(figures, "transposed") == {
        "lag_1": 0.0, "lag_2": 0.0, "lag_4": 0.0, "lag_8": 1.0, "any": 1.0, "lag_4_or_8": 1.0
    }  # fmt: skip


def test_equal_means_onsets_and_pitches_not_note_offs_and_silence_repeats_nothing():
    steps = 8  # 2/4
    legato = [bar([60, 62, 64, 65], steps)] * 16
    staccato = [bar([60, 62, 64, 65], steps, staccato=True)] * 16
    mixed = legato[:8] + staccato[8:]
    figures = structure_figures([tune(mixed)], steps)
    assert shares(figures) == {
        "lag_1": 1.0, "lag_2": 1.0, "lag_4": 1.0, "lag_8": 1.0, "any": 1.0, "lag_4_or_8": 1.0
    }  # fmt: skip
    # Another pitch or another onset step is another bar.
    other = legato[:8] + [bar([60, 62, 64, 67], steps)] * 8
    assert structure_figures([tune(other)], steps)["exact"]["lag_8"] == 0.0
    assert structure_figures([tune(other)], steps)["exact"]["lag_1"] == 7 / 8
    # Rests and held notes: nothing played, nothing repeated (though the bars are alike).
    silent = tune(legato[:8] + [[NOTE_OFF] + [NO_EVENT] * (steps - 1)] * 8)
    held = tune(legato[:8] + [[60] + [NO_EVENT] * (steps - 1)] + [[NO_EVENT] * steps] * 7)
    assert structure_figures([silent], steps)["exact"]["any"] == 0.0
    assert structure_figures([held], steps)["exact"]["counts"]["any"] == 0


def test_melodies_shorter_than_sixteen_bars_are_left_out_and_long_ones_cut():
    steps = 16
    sixteen = distinct_bars(8, steps) * 2
    short = tune(sixteen)[: 15 * steps]  # ends on the 15th bar line
    nearly = tune(sixteen)[: 15 * steps + 1]  # a note of the 16th bar: counts
    longer = tune(sixteen + distinct_bars(8, steps, start=30))  # bars 17-24 are not measured
    figures = structure_figures([short, nearly, longer], steps)
    assert figures["left_out"] == 1 and figures["melodies"] == 2 and figures["bars"] == 16
    # The cut 16th bar keeps only its first onset, so it no longer equals bar 8.
    assert figures["exact"]["counts"]["lag_8"] == 15
    # None measured: shares are None, not 0.
    empty = structure_figures([short], steps)
    assert empty["exact"]["any"] is None and empty["bars"] == 0
    kept, kept_steps = held_out_for_structure([short, nearly, longer], [steps] * 3, tunes=5)
    assert [len(m) for m in kept] == [15 * steps + 1, 16 * steps] and kept_steps == [16, 16]
    assert len(held_out_for_structure([nearly, longer], [16, 16], tunes=1)[0]) == 1


def test_per_melody_meters_and_bad_input():
    a12, a16 = distinct_bars(8, 12), distinct_bars(8, 16)
    figures = structure_figures([tune(a12 + a12), tune(a16 + distinct_bars(8, 16, 8))], [12, 16])
    assert figures["exact"]["lag_8"] == 0.5 and figures["steps_per_bar"] == {"16": 1, "12": 1}
    with pytest.raises(StructureError, match="one per melody"):
        structure_figures([tune(a12)], [12, 16])
    with pytest.raises(StructureError, match="at least one step"):
        bar_onsets([60], 0)
    assert bar_onsets([60, NO_EVENT, 62, NOTE_OFF, 64], 2) == [((0, 60),), ((0, 62),), ((0, 64),)]
    flags = repeat_flags(tune(a16 + a16), 16)
    assert flags["exact"].shape == (8, len(LAGS)) and flags["exact"][:, LAGS.index(8)].all()
    assert [str(meter_of(steps)) for steps in (16, 12, 8, 6, 7)] == [
        "4/4",
        "3/4",
        "2/4",
        "3/8",
        "7/16",
    ]


# Meters stored in datasets ----------------------------------------------------------------

SIXTEENTH = 0.125  # seconds at 120 quarter notes a minute


def write_midi(path: Path, numerator: int, denominator: int, bars: int = 16) -> Path:
    """A tune in ``numerator/denominator`` of eighth notes: odd bars alike, even bars alike,
    so every bar repeats the bar 2, 4 and 8 bars before and never the one before."""
    steps = numerator * 16 // denominator
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    midi.time_signature_changes.append(pretty_midi.TimeSignature(numerator, denominator, 0.0))
    lead = pretty_midi.Instrument(program=0, name="Lead")
    pitches = ([60, 62, 64, 65, 67, 69], [71, 72, 74, 76, 77, 79])
    for index in range(bars * steps // 2):
        start = index * 2 * SIXTEENTH
        pitch = pitches[index * 2 // steps % 2][index % (steps // 2) % 6]
        lead.notes.append(pretty_midi.Note(90, pitch, start, start + SIXTEENTH))
    midi.instruments.append(lead)
    midi.write(str(path))
    return path


ABC = """X:1
T:A jig
M:6/8
L:1/8
K:D
|:DFA dfa|bag fed|DFA dfa|gfe d3:|
|:efg afd|efg a3|efg afd|gfe d3:|
"""


@pytest.fixture(scope="module")
def meter_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("meters")
    write_midi(folder / "waltz.mid", 3, 4)
    write_midi(folder / "march.mid", 2, 4)
    write_midi(folder / "reel.mid", 4, 4)
    (folder / "jig.abc").write_text(ABC)
    output = folder / "data"
    build_dataset([folder], "basic_rnn", output, eval_ratio=0.0, progress=False, workers=1)
    return output


def test_meters_read_back_from_midi_and_abc(meter_data):
    dataset = MelodyDataset.open(meter_data)
    assert dataset.metadata["format_version"] == 2
    split = dataset.load("train")
    assert split.meters_known
    by_song = {
        Path(str(source)).stem: tuple(int(x) for x in meter)
        for source, meter in zip(split.sources, split.meters, strict=True)
    }
    jig = next(name for name in by_song if name.startswith("jig"))
    assert by_song["waltz"] == (3, 4) and by_song["march"] == (2, 4)
    assert by_song["reel"] == (4, 4) and by_song[jig] == (6, 8)
    names = [Path(str(source)).stem for source in split.sources]
    steps = dict(zip(names, split.steps_per_bar(), strict=True))
    assert (steps["waltz"], steps["march"], steps["reel"], steps[jig]) == (12, 8, 16, 12)


def test_a_meter_change_gives_each_piece_its_own_meter(tmp_path):
    """Extraction splits a file where its meter changes; each melody keeps its piece's."""
    from melodygen.io.music import extract_melodies, load_note_sequences, melody_meter

    path = write_midi(tmp_path / "change.mid", 3, 4, bars=16)
    midi = pretty_midi.PrettyMIDI(str(path))
    waltz_end = 8 * 12 * SIXTEENTH  # after 8 bars of 3/4
    midi.time_signature_changes.append(pretty_midi.TimeSignature(2, 4, waltz_end))
    midi.write(str(path))
    melodies, _ = extract_melodies(load_note_sequences(path)[0])
    assert sorted(melody_meter(melody) for melody in melodies) == [(2, 4), (3, 4)]
    assert sorted(melody.steps_per_bar for melody in melodies) == [8, 12]


def test_a_dataset_without_meters_reads_as_four_four(meter_data, tmp_path):
    """Format 1 wrote no meters: it still opens, every melody in 16-step bars."""
    old = tmp_path / "old"
    old.mkdir()
    metadata = json.loads((meter_data / "dataset.json").read_text())
    metadata["format_version"] = 1
    (old / "dataset.json").write_text(json.dumps(metadata))
    for split in ("train", "eval"):
        with np.load(meter_data / f"{split}.npz") as data:
            arrays = {name: data[name] for name in data.files if name != "meters"}
        np.savez_compressed(old / f"{split}.npz", **arrays)
    loaded = MelodyDataset.open(old).load("train")
    assert not loaded.meters_known
    assert loaded.steps_per_bar().tolist() == [16] * len(loaded)
    # A damaged meters array is one clear line.
    with np.load(meter_data / "train.npz") as data:
        arrays = {name: data[name] for name in data.files}
    arrays["meters"] = arrays["meters"][:, :1]
    np.savez_compressed(old / "train.npz", **arrays)
    with pytest.raises(Exception, match="damaged meters"):
        MelodyDataset.open(old).load("train")


# The reports, with a tiny model -----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """A 16x16 basic_rnn (untrained) and a dataset of 16-bar tunes, half held out."""
    folder = tmp_path_factory.mktemp("tiny")
    tunes = folder / "tunes"
    tunes.mkdir()
    for index, (numerator, denominator) in enumerate([(3, 4), (4, 4), (6, 8), (2, 4)] * 2):
        write_midi(tunes / f"tune{index}.mid", numerator, denominator, bars=18)
    data = folder / "data"
    build_dataset([tunes], "basic_rnn", data, eval_ratio=0.5, progress=False, workers=1)
    info = ModelInfo.for_config("basic_rnn", HParams(rnn_layer_sizes=(16, 16)))
    model = save_model(folder / "model", build_network(info), info)
    return model, data


def test_structure_report_continues_held_out_primers(tiny):
    model, data = tiny
    report = structure_report(model, data, tunes=3, per_primer=2, seed=1)
    real, generated = report["real"], report["generated"]
    assert report["settings"]["tunes"] == real["melodies"] >= 1
    assert generated["melodies"] == 2 * real["melodies"] and generated["left_out"] == 0
    # The real test tunes alternate two bars: each bar repeats at lags 2, 4 and 8, never 1.
    assert real["exact"]["any"] == 1.0 and real["exact"]["lag_8"] == 1.0
    assert real["exact"]["lag_1"] == 0.0
    assert generated["steps_per_bar"].keys() == real["steps_per_bar"].keys()
    again = structure_report(model, data, tunes=3, per_primer=2, seed=1)
    assert again["generated"] == generated  # seeded


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(item) for item in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_evaluate_and_originality_report_the_figure(tiny, capsys, tmp_path):
    model, data = tiny
    code, out, err = run(
        capsys, "evaluate", "--checkpoint", model, "--data", data, "--structure-tunes", 2,
        "--json", tmp_path / "eval.json",
    )  # fmt: skip
    assert code == 0, err
    assert "structure:" in out and "real:" in out and "8 bars 100.0%" in out
    figures = json.loads((tmp_path / "eval.json").read_text())
    assert figures["structure"]["real"]["exact"]["lag_8"] == 1.0
    structure = figures["structure"]
    assert structure["generated"]["melodies"] == structure["settings"]["tunes"]
    # Without the flag evaluate stays a pass of the network.
    code, out, err = run(capsys, "evaluate", "--checkpoint", model, "--data", data)
    assert code == 0 and "structure:" not in out, err
    code, out, err = run(
        capsys, "originality", "--checkpoint", model, "--data", data, "--num", 2, "--bars", 2,
        "--structure-tunes", 2, "--json", tmp_path / "orig.json",
    )  # fmt: skip
    assert code == 0, err
    assert "structure:" in out and "transposed:" in out
    report = json.loads((tmp_path / "orig.json").read_text())
    assert report["structure"]["real"]["bars"] == 8 * report["structure"]["settings"]["tunes"]


def test_structure_flags_out_of_range_say_the_range(tiny, capsys):
    model, data = tiny
    for argv, words in (
        (("evaluate", "--structure-tunes", -1), "must be 0 to 10,000 melodies (got -1)"),
        (("originality", "--structure-per-primer", 0), "must be 1 to 64 melodies (got 0)"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main([argv[0], "--checkpoint", str(model), "--data", str(data), *map(str, argv[1:])])
        assert exit_.value.code == 2
        assert words in capsys.readouterr().err.strip().splitlines()[-1]
    # --input reads no dataset: nothing held out to continue.
    code, _, err = run(
        capsys, "evaluate", "--checkpoint", model, "--input", data, "--structure-tunes", 2
    )
    assert code == 2 and "--structure-tunes goes with --data" in err
    assert len(err.strip().splitlines()) == 1


def test_a_family_that_cannot_continue_a_melody_says_so(tiny, monkeypatch):
    """Capabilities, not names: a generator that reads no note primer gets one line, and the
    real melodies' figure still stands beside it."""
    from melodygen.families.melody_rnn.family import MelodyRnnFamily

    options = MelodyRnnFamily.NOTE_OPTIONS - {"primer"}
    monkeypatch.setattr(MelodyRnnFamily, "request_options", lambda self: options)
    model, data = tiny
    report = structure_report(model, data, tunes=2)
    assert report["generated"] == {
        "unavailable": "not available for this model: it cannot continue a melody "
        "(its generator reads no note primer)"
    }
    assert report["real"]["bars"] == 8 * report["settings"]["tunes"]
    lines = structure_lines(report)
    assert sum("generated:" in line and "not available" in line for line in lines) == 1


# Shipped cards ----------------------------------------------------------------------------

CARDS = sorted(Path(__file__).resolve().parents[1].glob("checkpoints/*/card.json"))


def check_section(section: dict, melodies: int) -> None:
    """A figure's shares are its counts over its bars, and its counts add up."""
    assert section["melodies"] == melodies and section["bars"] == 8 * melodies
    assert sum(section["steps_per_bar"].values()) == melodies
    for kind in ("exact", "transposed"):
        counts = section[kind]["counts"]
        for key, count in counts.items():
            assert section[kind][key] == pytest.approx(count / section["bars"])
        lags = [counts[f"lag_{lag}"] for lag in LAGS]
        assert max(lags) <= counts["any"] <= min(sum(lags), section["bars"])
        assert max(counts["lag_4"], counts["lag_8"]) <= counts["lag_4_or_8"] <= counts["any"]
        assert counts["lag_4_or_8"] <= counts["lag_4"] + counts["lag_8"]
    for key, count in section["exact"]["counts"].items():
        assert count <= section["transposed"]["counts"][key]  # an exact repeat is a sequence


@pytest.mark.parametrize("card_file", CARDS, ids=[card.parent.name for card in CARDS])
def test_shipped_cards_structure_figures_add_up(card_file: Path):
    card = json.loads(card_file.read_text())
    if "structure" not in card:
        pytest.skip("this card carries no structure figure")
    structure = card["structure"]
    settings = structure["settings"]
    check_section(structure["real"], settings["tunes"])
    if "unavailable" not in structure["generated"]:
        check_section(structure["generated"], settings["tunes"] * settings["per_primer"])
        # Continuations keep their primer's meter: the same bar lengths, per_primer times.
        assert {
            k: v * settings["per_primer"] for k, v in structure["real"]["steps_per_bar"].items()
        } == structure["generated"]["steps_per_bar"]
