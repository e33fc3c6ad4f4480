"""Model families: the shipped models unchanged by the move, a second family end to end,
the ``family`` field, and fine-tuning (``--init-from``) in the shared training loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from toy_family import NAME as TOY
from toy_family import ToyFamily
from toy_family import build_dataset as build_toy_dataset

from melodygen.cli import main
from melodygen.core.checkpoint import MODEL_JSON, load_model, model_family, read_model_info
from melodygen.core.evaluate import evaluate, evaluate_files
from melodygen.core.family import DEFAULT_FAMILY, families, get_family
from melodygen.core.generation import GenerationRequest, load_generator
from melodygen.core.originality import originality_report
from melodygen.core.train import train
from melodygen.errors import CheckpointError, ModelFileError
from melodygen.families.melody_rnn.dataset import build_dataset
from melodygen.io.primer import parse_primer

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = json.loads((Path(__file__).parent / "fixtures" / "shipped_melodies.json").read_text())
TINY = "rnn_layer_sizes=[16,16],batch_size=4,learning_rate=0.03,dropout_keep_prob=1.0"


@pytest.fixture(scope="module")
def toy():
    """The toy family, registered for this module's tests only (as a plug-in would be)."""
    from melodygen.core import family as registry

    families()  # the built-in ones first, as an installation has them
    patch = pytest.MonkeyPatch()
    toy = ToyFamily()
    patch.setitem(registry._REGISTRY, TOY, toy)
    yield toy
    patch.undo()


# The shipped checkpoints ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_models_generate_what_they_did_before_families(name: str) -> None:
    """tests/fixtures/shipped_melodies.json was written by the code before the move to
    families (commit ef270e9): same seed, same request, the same events and likelihood."""
    generator = load_generator(ROOT / "checkpoints" / name)
    for row in SHIPPED[name]:
        case = {k: v for k, v in row["case"].items() if k not in ("name", "primer")}
        result = generator.generate(
            GenerationRequest(primer=parse_primer(row["case"]["primer"]), **case)
        )
        assert len(result.melodies) == len(row["melodies"])
        for melody, expected in zip(result.melodies, row["melodies"], strict=True):
            assert melody.events == expected["events"], row["case"]["name"]
            assert melody.log_likelihood == pytest.approx(expected["log_likelihood"], abs=1e-3)


def test_shipped_model_files_have_no_family_field_and_are_melody_rnns() -> None:
    for name in SHIPPED:
        values = json.loads((ROOT / "checkpoints" / name / MODEL_JSON).read_text())
        assert "family" not in values
        assert model_family(ROOT / "checkpoints" / name).name == DEFAULT_FAMILY == "melody_rnn"


# The family field -------------------------------------------------------------------------


def test_new_models_record_their_family(tune_folder: Path, tmp_path: Path) -> None:
    build_dataset([tune_folder], "basic_rnn", tmp_path / "data", eval_ratio=0.3, progress=False)
    assert json.loads((tmp_path / "data" / "dataset.json").read_text())["family"] == "melody_rnn"
    result = train(
        tmp_path / "data", tmp_path / "run", steps=2, eval_every=2, hparams=TINY, progress=False
    )
    assert json.loads((result.model_dir / MODEL_JSON).read_text())["family"] == "melody_rnn"
    _, info = read_model_info(result.model_dir)
    assert info.family == "melody_rnn"


def _with_family(source: Path, target: Path, family: object) -> Path:
    target.mkdir(parents=True)
    for file in source.iterdir():
        (target / file.name).write_bytes(file.read_bytes())
    values = json.loads((source / MODEL_JSON).read_text())
    values["family"] = family
    (target / MODEL_JSON).write_text(json.dumps(values))
    return target


@pytest.mark.parametrize("family", ["no_such_family", 7, "x" * 500])
def test_a_model_of_an_unknown_family_is_one_line(tmp_path: Path, family, capsys) -> None:
    folder = _with_family(ROOT / "checkpoints" / "folk_basic_rnn", tmp_path / "m", family)
    with pytest.raises(ModelFileError, match="family") as error:
        load_model(folder)
    assert "\n" not in str(error.value) and len(str(error.value)) < 300
    code = main(["generate", "--checkpoint", str(folder), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "family" in err


# A second family, end to end --------------------------------------------------------------


def test_a_second_family_trains_resumes_and_generates(toy, tune_folder, tmp_path) -> None:
    assert get_family(TOY) is toy and toy in families()
    data = tmp_path / "data"
    build = ["dataset", "build", "--family", TOY, "--input", str(tune_folder), "--output"]
    assert main([*build, str(data), "--eval-ratio", "0.3", "--quiet"]) == 0
    assert json.loads((data / "dataset.json").read_text())["family"] == TOY
    first = train(data, tmp_path / "run", steps=4, eval_every=2, progress=False)
    assert first.steps == 4 and first.best_eval_loss is not None
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 2, 4]
    assert records[-1]["eval"]["nll"] < records[0]["eval"]["nll"]  # it learns
    again = train(data, tmp_path / "run", steps=6, eval_every=2, progress=False)
    assert again.steps == 6
    model_dir, info = read_model_info(again.model_dir)
    assert info.family == TOY and len(info.training["history"]) == 2  # resumed, not restarted
    generator = load_generator(again.model_dir)
    result = generator.generate(GenerationRequest(length_steps=32, num_outputs=2, seed=3))
    assert len(result.melodies) == 2 and all(m.pitches() for m in result.melodies)
    assert result.melodies[0].sequence.notes  # the shared result type, as a NoteSequence
    same = generator.generate(GenerationRequest(length_steps=32, num_outputs=2, seed=3))
    assert [m.events for m in same.melodies] == [m.events for m in result.melodies]
    figures = evaluate(again.model_dir, data)
    scores = toy.score_dataset(load_model(again.model_dir)[0], info, toy.open_dataset(data), "eval")
    assert figures["bits_per_note_pooled"] == pytest.approx(
        sum(s.bits for s in scores) / sum(s.notes for s in scores)
    )
    # Bits per note ranks models of different families on the same tunes.
    melody_rnn = ROOT / "checkpoints" / "folk_basic_rnn"
    rows = evaluate_files([again.model_dir, melody_rnn], [tune_folder])
    assert {row["family"] for row in rows} == {TOY, "melody_rnn"}
    # The same tunes, the same notes: only the bits differ.
    assert rows[0]["notes"] == rows[1]["notes"] and rows[0]["tunes"] == rows[1]["tunes"]
    assert all(row["coverage"] == 1.0 for row in rows)  # monophonic tunes: every note scored
    report = originality_report(again.model_dir, data, num=4, bars=2, seed=1)
    assert report["settings"]["model_kind"] == toy.title
    assert report["generated"]["sanity"]["melodies"] == 4
    assert report["settings"]["train_melodies"] == len(toy.open_dataset(data).load("train"))


def test_a_second_family_fine_tunes_from_its_own_model(toy, tune_folder, tmp_path) -> None:
    data = build_toy_dataset([tune_folder], tmp_path / "data")
    base = train(data, tmp_path / "base", steps=4, eval_every=4, progress=False)
    tuned = train(
        data, tmp_path / "tuned", steps=2, eval_every=2, progress=False, init_from=base.model_dir
    )
    records = [
        json.loads(x) for x in (tmp_path / "tuned" / "metrics.jsonl").read_text().splitlines()
    ]
    base_records = [
        json.loads(x) for x in (tmp_path / "base" / "metrics.jsonl").read_text().splitlines()
    ]
    # Step 0 of the tuned run evaluates the base model's weights, not fresh ones.
    assert records[0]["eval"]["nll"] == pytest.approx(base_records[-1]["eval"]["nll"], rel=1e-5)
    _, info = read_model_info(tuned.model_dir)
    assert info.training["init_from"]["checkpoint"] == str(base.model_dir.resolve())
    assert info.training["history"][0]["init_from"]["step"] == 4


# Fine-tuning a Melody RNN -------------------------------------------------------------------


def test_init_from_starts_a_melody_rnn_run_from_another_models_weights(tune_folder, tmp_path):
    build_dataset([tune_folder], "basic_rnn", tmp_path / "data", eval_ratio=0.3, progress=False)
    base = train(
        tmp_path / "data", tmp_path / "base", steps=4, eval_every=4, hparams=TINY, progress=False
    )
    code = main(
        [
            "train",
            "--data",
            str(tmp_path / "data"),
            "--run-dir",
            str(tmp_path / "tuned"),
            "--steps",
            "2",
            "--eval-every",
            "2",
            "--init-from",
            str(tmp_path / "base"),
            "--hparams",
            "learning_rate=0.001",
            "--quiet",
        ]
    )
    assert code == 0
    model, info = load_model(tmp_path / "tuned")
    assert info.hparams.rnn_layer_sizes == (16, 16)  # the base model's network
    assert info.hparams.learning_rate == 0.001  # how it trains may change
    assert info.training["init_from"]["checkpoint"] == str(base.model_dir.resolve())
    base_records = [
        json.loads(x) for x in (tmp_path / "base" / "metrics.jsonl").read_text().splitlines()
    ]
    records = [
        json.loads(x) for x in (tmp_path / "tuned" / "metrics.jsonl").read_text().splitlines()
    ]
    assert records[0]["eval"]["nll"] == pytest.approx(base_records[-1]["eval"]["nll"], rel=1e-4)


def test_init_from_refuses_what_cannot_start_a_run(tune_folder, tmp_path, capsys) -> None:
    build_dataset([tune_folder], "basic_rnn", tmp_path / "data", eval_ratio=0.3, progress=False)
    lookback = ROOT / "checkpoints" / "folk_lookback_rnn"
    with pytest.raises(CheckpointError, match="--init-from"):
        train(tmp_path / "data", tmp_path / "a", steps=2, init_from=lookback, progress=False)
    basic = ROOT / "checkpoints" / "folk_basic_rnn"
    with pytest.raises(CheckpointError, match="shape"):
        train(
            tmp_path / "data",
            tmp_path / "b",
            steps=2,
            init_from=basic,
            progress=False,
            hparams="rnn_layer_sizes=[8,8]",
        )
    for bad in (tmp_path / "missing", tune_folder / "tune01.mid"):
        code = main(
            [
                "train",
                "--data",
                str(tmp_path / "data"),
                "--run-dir",
                str(tmp_path / "c"),
                "--steps",
                "2",
                "--init-from",
                str(bad),
                "--quiet",
            ]
        )
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
    assert not (tmp_path / "c" / "checkpoints").exists()


# The shared result type ---------------------------------------------------------------------


def _sequence(notes: list[tuple[int, float, float, int]], qpm: float = 120.0):
    from note_seq.protobuf import music_pb2

    sequence = music_pb2.NoteSequence()
    sequence.tempos.add(qpm=qpm)
    sequence.time_signatures.add(numerator=3, denominator=4)
    for pitch, start, end, velocity in notes:
        sequence.notes.add(pitch=pitch, start_time=start, end_time=end, velocity=velocity)
    sequence.total_time = max(end for _, _, end, _ in notes)
    return sequence


def test_a_melody_made_as_a_note_sequence_keeps_its_timing_and_sits_on_the_grid() -> None:
    from melodygen.core.generation import GeneratedMelody

    # At 120 qpm a step is 0.125 s: a quarter, a triplet eighth pair, a loud half note.
    source = _sequence(
        [(60, 0.0, 0.5, 80), (62, 0.5, 0.6667, 90), (64, 0.6667, 0.8333, 90), (67, 1.0, 2.0, 127)]
    )
    melody = GeneratedMelody.from_sequence(
        source, log_likelihood=-3.5, text="X:1\nK:C\nC2 D/E/ G4|"
    )
    assert melody.events == [60, -2, -2, -2, 62, 64, -2, -1, 67, -2, -2, -2, -2, -2, -2, -2]
    assert str(melody.meter) == "3/4" and melody.qpm == 120.0 and melody.text.startswith("X:1")
    heard = melody.to_note_sequence(program=40, name="Violin")
    assert [(n.pitch, round(n.start_time, 4), n.velocity, n.program) for n in heard.notes] == [
        (60, 0.0, 80, 40),
        (62, 0.5, 90, 40),
        (64, 0.6667, 90, 40),
        (67, 1.0, 127, 40),
    ]
    assert heard.instrument_infos[0].name == "Violin"
    assert source.notes[0].program == 0  # the family's own sequence is not changed


def test_where_notes_overlap_the_grid_keeps_the_highest() -> None:
    from melodygen.core.generation import sequence_events

    chord_then_line = _sequence(
        [(60, 0.0, 0.5, 100), (64, 0.0, 0.5, 100), (67, 0.25, 0.5, 100), (55, 0.5, 0.75, 100)]
    )
    assert sequence_events(chord_then_line) == [64, -2, 67, -2, 55, -2]


def test_a_resumed_fine_tuning_run_still_says_where_it_started(toy, tune_folder, tmp_path):
    data = build_toy_dataset([tune_folder], tmp_path / "data")
    base = train(data, tmp_path / "base", steps=2, eval_every=2, progress=False)
    train(data, tmp_path / "tuned", steps=2, eval_every=2, progress=False, init_from=base.model_dir)
    again = train(data, tmp_path / "tuned", steps=4, eval_every=2, progress=False)
    _, info = read_model_info(again.model_dir)
    assert info.training["init_from"]["checkpoint"] == str(base.model_dir.resolve())
    assert [stretch.get("init_from") is not None for stretch in info.training["history"]] == [
        True,
        False,
    ]
    # Fine-tuning the fine-tuned model keeps the chain.
    third = train(
        data, tmp_path / "third", steps=2, eval_every=2, progress=False, init_from=again.model_dir
    )
    _, info = read_model_info(third.model_dir)
    assert info.training["init_from"]["init_from"]["checkpoint"] == str(base.model_dir.resolve())


def test_runs_refuse_what_the_family_cannot_do_in_one_line(toy, tune_folder, tmp_path, capsys):
    data = build_toy_dataset([tune_folder], tmp_path / "toy")
    build_dataset([tune_folder], "basic_rnn", tmp_path / "rnn", eval_ratio=0.3, progress=False)
    rnn = train(
        tmp_path / "rnn", tmp_path / "rnn_run", steps=2, eval_every=2, hparams=TINY, progress=False
    )
    toy_run = train(data, tmp_path / "toy_run", steps=2, eval_every=2, progress=False)
    cases = [
        # a model of another family to start from
        [
            "train",
            "--data",
            str(data),
            "--run-dir",
            str(tmp_path / "x"),
            "--init-from",
            str(rnn.model_dir),
        ],
        # a family without configurations given one
        [
            "dataset",
            "build",
            "--family",
            TOY,
            "--config",
            "basic_rnn",
            "--input",
            str(tune_folder),
            "--output",
            str(tmp_path / "y"),
        ],
        # a Melody RNN dataset without one
        ["dataset", "build", "--input", str(tune_folder), "--output", str(tmp_path / "z")],
        # a toy run resumed with hyperparameters
        [
            "train",
            "--data",
            str(data),
            "--run-dir",
            str(tmp_path / "toy_run"),
            "--steps",
            "4",
            "--hparams",
            "hidden=4",
        ],
        # a toy model evaluated on a Melody RNN dataset
        ["evaluate", "--checkpoint", str(toy_run.model_dir), "--data", str(tmp_path / "rnn")],
    ]
    for argv in cases:
        code = main([*argv, "--quiet"] if argv[0] != "evaluate" else argv)
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), (argv, err)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_dataset_of_an_unknown_family_is_one_line(tune_folder, tmp_path, capsys) -> None:
    build_dataset([tune_folder], "basic_rnn", tmp_path / "data", eval_ratio=0.3, progress=False)
    meta = tmp_path / "data" / "dataset.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "family": "harpsichord_gan"}))
    code = main(["train", "--data", str(tmp_path / "data"), "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "harpsichord_gan" in err and len(err.splitlines()) == 1


def test_a_tunebooks_tune_and_its_own_midi_file_fall_in_the_same_split() -> None:
    from melodygen.core.split import song_ids, song_is_eval, tunebook_song_id

    class Tune:  # what song_ids reads of a NoteSequence
        def __init__(self, number: int) -> None:
            self.reference_number = number

    root = Path("/data/nottingham/abc")
    ids = song_ids(root / "jigs.abc", root, [Tune(12), Tune(13), Tune(0)])
    assert ids == ["jigs12.mid", "jigs13.mid", "jigs3.mid"]  # X:0 or none: its place
    assert tunebook_song_id("more/reels.abc", 7) == "more/reels7.mid"
    midi = song_ids(
        Path("/data/nottingham/melody/jigs12.mid"), Path("/data/nottingham/melody"), [1]
    )
    assert midi == ["jigs12.mid"]
    assert song_is_eval(ids[0], 0.5) == song_is_eval(midi[0], 0.5)


def test_every_family_names_a_tunebooks_tunes_alike(tmp_path) -> None:
    """A book numbered as Nottingham's are (unique X: numbers), with a refused tune, and a
    lone tune: the melody reader and the ABC model's dataset give every tune the same song
    id, so the two families split it alike. (Books whose X: numbers repeat, such as
    music21's fife books, are not named alike yet: see the README, "ABC input".)"""
    from melodygen.core.evaluate import read_tunes
    from melodygen.families.abc_char.dataset import CharDataset
    from melodygen.families.abc_char.dataset import build_dataset as build_abc

    tune = "T:{t}\nM:4/4\nL:1/8\nK:G\n|:GABc dedB|cBAG FGAF:|\n"
    folder = tmp_path / "books"
    folder.mkdir()
    (folder / "reels.abc").write_text(
        "X:3\n" + tune.format(t="a") + "\nX:7\n" + tune.format(t="b") + "\n"
        "X:9\nT:refused\nM:4/4\nK:G\n|[GAB|\n\nX:12\n" + tune.format(t="c")
    )
    (folder / "lone.abc").write_text("X:1\n" + tune.format(t="alone"))
    tunes, _ = read_tunes([folder])
    melody_names = {name for name, _ in tunes}
    build_abc([folder], tmp_path / "abc", eval_ratio=0.5, progress=False)
    data = CharDataset.open(tmp_path / "abc")
    abc_names = set(data.load("train").names) | set(data.load("eval").names)
    assert melody_names == abc_names == {"reels3.mid", "reels7.mid", "reels12.mid", "lone.abc"}
