"""The abc_char family: a character LSTM over ABC text, trained tiny here on tunes written
in code; dataset, training with resume, evaluation in bits per note, generation, the CLI
and hostile model files."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from melodygen.cli import main
from melodygen.core.checkpoint import MODEL_JSON, load_model, read_model_info
from melodygen.core.family import get_family
from melodygen.core.generation import GenerationRequest, load_generator
from melodygen.core.split import song_is_eval
from melodygen.errors import ConfigError, DatasetError, ModelFileError
from melodygen.families.abc_char.configs import HParams
from melodygen.families.abc_char.vocab import SPECIAL

pytestmark = pytest.mark.skipif(shutil.which("abc2midi") is None, reason="needs abc2midi")

TINY = "embedding_size=8,rnn_layer_sizes=[16],batch_size=4,learning_rate=0.02,dropout=0.0"
EVAL_RATIO = 0.3
BARS = [
    "GAB c2d|e2d c2B|",
    "d2B G2A|B2A G3|",
    "ded cBA|B2G A2F|",
    "G3 G2A|B2c d2e|",
    "fed e2d|c2A B3|",
]


def _tune(number: int, title: str) -> str:
    rng = np.random.default_rng(number)
    body = " ".join(BARS[i] for i in rng.integers(0, len(BARS), 4))
    return (
        f"X:{number}\nT:{title}\n% a comment\nS:somebody\nM:6/8\nR:jig\nK:G\n"
        f'|:"G"{body[:-1]}:|\n|:{body[:-1]}|]\n'
    )


def _eval_refs(count: int) -> set[int]:
    return {n for n in range(1, count + 1) if song_is_eval(f"book{n}.mid", EVAL_RATIO)}


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    """24 jigs; the held-out ones have an é in their title, which no training tune has."""
    folder = tmp_path_factory.mktemp("abc")
    held_out = _eval_refs(24)
    assert 0 < len(held_out) < 24
    tunes = [_tune(n, "Jig é" if n in held_out else f"Jig number {n}") for n in range(1, 25)]
    path = folder / "book.abc"
    path.write_text("\n".join(tunes))
    return path


@pytest.fixture(scope="module")
def dataset(book, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("data") / "abc"
    get_family("abc_char").build_dataset(
        [book], output, eval_ratio=EVAL_RATIO, workers=2, progress=False
    )
    return output


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory) -> Path:
    from melodygen.core.train import train

    run = tmp_path_factory.mktemp("runs") / "abc"
    train(dataset, run, steps=40, eval_every=20, hparams=TINY, progress=False)
    return run


@pytest.fixture(scope="module")
def fluent(dataset, tmp_path_factory) -> Path:
    """A model trained long enough to write most of its jigs' bars whole (5 s)."""
    from melodygen.core.train import train

    run = tmp_path_factory.mktemp("runs") / "fluent"
    hparams = "embedding_size=16,rnn_layer_sizes=[64],batch_size=8,learning_rate=0.01,dropout=0.0"
    train(dataset, run, steps=300, eval_every=100, hparams=hparams, progress=False)
    return run


def test_dataset_vocabulary_from_training_text_and_unknown_characters_reported(book, dataset):
    family = get_family("abc_char")
    opened = family.open_dataset(dataset)
    meta = json.loads((dataset / "dataset.json").read_text())
    assert meta["family"] == "abc_char"
    train, held = opened.load("train"), opened.load("eval")
    assert len(held) == len(_eval_refs(24)) and len(train) + len(held) == 24
    assert set(opened.vocab.chars) == set("".join(train.texts))
    assert "é" not in opened.vocab.chars
    accents = sum(text.count("é") for text in held.texts)
    assert accents == len(held)
    assert meta["summary"]["unknown_eval"] == {"é": accents}
    # canonical text: comments and S: dropped, chord symbols dropped by default
    assert all("%" not in text and "S:" not in text and '"' not in text for text in train.texts)
    assert all(name.startswith("book") and name.endswith(".mid") for name in train.names)
    summary = family.build_dataset([book], dataset.parent / "again", eval_ratio=EVAL_RATIO)
    assert "'é' x" in summary.format() and "unknown in eval" in summary.format()
    # the ids of a held-out tune hold <unk> where the é was
    assert (held.tune(0) == 1).sum() == held.texts[0].count("é")


def test_chords_kept_with_the_option(book, tmp_path):
    get_family("abc_char").build_dataset(
        [book], tmp_path / "d", eval_ratio=EVAL_RATIO, options={"abc_chords": True}
    )
    opened = get_family("abc_char").open_dataset(tmp_path / "d")
    assert '"' in opened.vocab.chars and opened.metadata["chords"] is True


def test_default_network_is_the_seeds_size():
    hparams = HParams()
    assert hparams.parameter_count(86) == 1_904_214
    from melodygen.families.abc_char.network import build_model

    assert build_model(86, hparams).count_params() == 1_904_214


@pytest.mark.parametrize(
    "override",
    ["dropout=1.5", "rnn_layer_sizes=[100000]", "batch_size=0", "learning_rate=nan", "nope=1"],
)
def test_bad_hyperparameters_are_one_line(dataset, override):
    family = get_family("abc_char")
    with pytest.raises(ConfigError) as caught:
        family.new_model_info(family.open_dataset(dataset), override)
    assert "\n" not in str(caught.value) and str(caught.value).startswith("--hparams")


def test_training_resumes_and_evaluation_agrees_with_bits_per_note(dataset, trained, tmp_path):
    from melodygen.core.evaluate import evaluate
    from melodygen.core.train import train

    _, info = read_model_info(trained / "model")
    assert info.family == "abc_char" and info.training["step"] == 40
    # resume: the same run folder trains on from its newest checkpoint
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    result = train(dataset, run, steps=50, eval_every=10, hparams=TINY, progress=False)
    assert result.steps == 50
    _, resumed = read_model_info(run / "model")
    assert [(h["from_step"], h["to_step"]) for h in resumed.training["history"]] == [
        (0, 40),
        (40, 50),
    ]
    figures = evaluate(trained, dataset)
    held = get_family("abc_char").open_dataset(dataset).load("eval")
    assert figures["steps"] == int(held.lengths.sum())
    assert figures["nll"] < math.log(len(info.vocab.chars) + len(SPECIAL))  # it learned
    assert 0 < figures["accuracy"] <= 1 and figures["perplexity"] == pytest.approx(
        math.exp(figures["nll"])
    )
    # bits per note: the characters' total NLL in bits over the notes the tunes play
    assert figures["notes"] == int(held.notes.sum())
    assert figures["bits"] == pytest.approx(figures["nll"] * figures["steps"] / math.log(2))
    assert figures["bits_per_note_pooled"] == pytest.approx(figures["bits"] / figures["notes"])


def test_score_tunes_reads_the_tunes_text(dataset, trained):
    from melodygen.families.abc_char.family import TEXT_ANNOTATION
    from melodygen.io.abc import parse_tune

    family = get_family("abc_char")
    model, info = load_model(trained / "model")
    held = family.open_dataset(dataset).load("eval")
    by_dataset = {
        s.name: s for s in family.score_dataset(model, info, family.open_dataset(dataset), "eval")
    }
    tunes = []
    for name, text in zip(held.names, held.texts, strict=True):
        sequence = parse_tune(text)
        sequence.text_annotations.add(time=0.0, text=TEXT_ANNOTATION + text)
        tunes.append((name, [sequence]))
    scores = family.score_tunes(model, info, tunes)
    assert len(scores) == len(held)
    for score in scores:
        assert score.bits == pytest.approx(by_dataset[score.name].bits, rel=1e-5)
        assert score.notes == by_dataset[score.name].notes
    # a melody without its text (from MIDI, say) is written as ABC and scored too
    plain = family.score_tunes(model, info, [("midi", [parse_tune(held.texts[0])])])
    assert len(plain) == 1 and plain[0].bits > 0 and plain[0].notes > 0


def test_generation_is_reproducible_and_keeps_the_asked_header(trained):
    generator = load_generator(trained / "model")
    request = dict(
        num_outputs=3,
        seed=7,
        time_signature="6/8",
        key=2,
        rhythm="jig",
        title="New jig",
        length_steps=8 * 12,
    )
    first = generator.generate(GenerationRequest(**request))
    again = generator.generate(GenerationRequest(**request))
    other = generator.generate(GenerationRequest(**{**request, "seed": 8}))
    texts = [m.text for m in first.melodies]
    assert texts == [m.text for m in again.melodies]
    assert texts != [m.text for m in other.melodies]
    assert len(texts) == 3
    for melody in first.melodies:
        assert melody.text.startswith("T:New jig\nM:6/8\nR:jig\nK:D\n")
        assert len(melody.text) <= 120 + 40 * 8
        if melody.problem is None:
            assert melody.events and melody.sequence.notes and melody.key == 2
        else:
            assert melody.events == [] and "\n" not in melody.problem
    # without a title the model writes the T: line itself; the asked fields follow
    untitled = generator.generate(GenerationRequest(num_outputs=2, seed=1, time_signature="6/8"))
    for melody in untitled.melodies:
        lines = melody.text.split("\n")
        assert lines[0].startswith("T:") and lines[1] == "M:6/8" and lines[2].startswith("K:")


def test_bar_checking_writes_bad_bars_again_and_keeps_the_score_true(fluent):
    """With check_bars a tune's bad bars are written again (from the state at the bar line
    before them), so more tunes have full bars than the raw samples; each tune's
    log-likelihood is still exactly the model's score of the text it ends with."""
    from melodygen.families.abc_char.family import _nats, _split_of
    from melodygen.families.abc_char.generate import length_limit
    from melodygen.io.abc import check_validity

    generator = load_generator(fluent / "model")
    results = {}
    for check in (False, True):
        melodies = []
        for seed in range(3):
            request = GenerationRequest(
                num_outputs=8, seed=seed, length_steps=24 * 12, check_bars=check
            )
            melodies += generator.generate(request).melodies
        results[check] = melodies
    raw = [check_validity(m.text) for m in results[False]]
    checked = [check_validity(m.text) for m in results[True]]
    assert sum(v.full_bars for v in checked) > sum(v.full_bars for v in raw)
    assert sum(v.valid for v in checked) >= sum(v.valid for v in raw)
    model, info = load_model(fluent / "model")
    for melodies in results.values():
        ended = [m for m in melodies if len(m.text) < length_limit(request)]  # wrote <end>
        assert ended
        split = _split_of(info, [m.text for m in ended])
        nats = _nats(model, split, np.arange(len(ended)), 8)
        for melody, value in zip(ended, nats, strict=True):
            assert -melody.log_likelihood == pytest.approx(value, rel=1e-4, abs=1e-3)


CHORDS_AND_FIELDS = "GABc dedc|[Ac]BA G2 ABc|[K:D] d2 [Ac][Bd] c2 B2|(3:2:3ABc d2 e4|]\n"
"""Four full bars of 4/4 (L:1/8) with chords, chord runs, an inline field and a tuplet's
colons: nothing in them is a bar line."""


def _judged_as_sampled(
    body: str, header: str = "M:4/4\nL:1/8\nK:G\n", opening: str | None = None, end=False
) -> list[tuple]:
    """(text before the character, verdict, bars) for each character of ``body`` that a
    bar-checking row judges after the forced ``opening``, each character taken as drawn
    whatever the verdict; ``end``: then <end> is drawn, and its verdict is the last."""
    from melodygen.families.abc_char.generate import Template, _Row, _Snapshot
    from melodygen.families.abc_char.vocab import END

    row = _Row(Template((header, opening or "")), limit=10_000)
    for char in header + (opening or ""):  # forced
        row.take(1, char, 0.0, -1)
    assert row.free
    if opening is None:
        row.keep(_Snapshot(len(row.chars), None, 0, 0.0, 0))  # as after an empty opening
    judged = []
    for char_id, char in [(1, char) for char in body] + ([(END, "")] if end else []):
        verdict, bars = row.judge(char_id, char)
        if verdict == "keep":
            row.keep(_Snapshot(len(row.chars), None, 0, row.score, bars))
        if verdict or char_id == END:
            judged.append((row.body(), verdict, bars))
        row.take(char_id, char, 0.0, -1)
    return judged


def test_bar_checking_judges_whole_bar_lines_not_chords_or_inline_fields():
    """A [ after a bar line (a chord [Ac], an inline field [K:D]) completes it, and the
    bars are judged up to the bar line only; a chord's ] and an inline field's or a
    tuplet's colons are no bar line (they sent rows back, as an 'unexpected [')."""
    bars = CHORDS_AND_FIELDS.split("|")
    ends = [len("|".join(bars[: n + 1])) + 1 for n in range(3)] + [len(CHORDS_AND_FIELDS) - 1]
    assert _judged_as_sampled(CHORDS_AND_FIELDS) == [
        (CHORDS_AND_FIELDS[:end], "keep", number) for number, end in enumerate(ends, start=1)
    ]
    # a short bar before a chord is still written again
    short = "GABc dedc|[Ac]BA G2 A|[K:D] d2"
    assert _judged_as_sampled(short)[:2] == [
        ("GABc dedc|", "keep", 1),
        ("GABc dedc|[Ac]BA G2 A|", "rewind", 0),
    ]


def test_bar_checking_passes_over_a_repeat_problem_kept_before():
    """A repeat problem kept once (here the opening's |: while another is open) fails no
    later bar, and the tune may end (its repeats were all checked every bar)."""
    opening = "|:GAB A2G|:E2D D3|"
    judged = _judged_as_sampled(
        "GAB A2G|E2D D3:|\n", "M:6/8\nL:1/8\nK:G\n", opening=opening, end=True
    )
    assert judged == [
        (opening, "keep", 2),
        (opening + "GAB A2G|", "keep", 3),
        (opening + "GAB A2G|E2D D3:|", "keep", 4),
        (opening + "GAB A2G|E2D D3:|\n", "", 0),  # <end>: not written again
    ]


def test_a_tune_that_does_not_parse_comes_back_with_its_problem():
    """A tune the model wrote that abc2midi cannot read (here: a header, no music) keeps
    its text and gets its reason; its NoteSequence is empty, never an exception."""
    from melodygen.families.abc_char.generate import read_melody

    melody, _ = read_melody("T:Only a header\nM:6/8\nK:G\n", -4.0, 1)
    assert melody.problem and "\n" not in melody.problem
    assert melody.events == [] and melody.text.startswith("T:Only a header")
    assert len(melody.sequence.notes) == 0  # an empty melody still makes a NoteSequence


def test_request_text_fields_are_checked():
    from melodygen.core.generation import GenerationError

    for bad in (
        {"rhythm": "x" * 41},
        {"title": "two\nlines"},
        {"text_primer": "K:G\n" + "a" * 5000},
        {"text_primer": "K:G\x00"},
    ):
        with pytest.raises(GenerationError) as caught:
            GenerationRequest(**bad).validate()
        assert "\n" not in str(caught.value)


def test_cli_builds_trains_and_generates_abc(book, tmp_path, capsys, monkeypatch):
    data, run, out = tmp_path / "data", tmp_path / "run", tmp_path / "out"
    assert main(["dataset", "build", "--family", "abc_char", "--input", str(book),
                 "--output", str(data), "--eval-ratio", "0.3", "--quiet"]) == 0  # fmt: skip
    assert "unknown in eval" in capsys.readouterr().out
    assert main(["train", "--data", str(data), "--run-dir", str(run), "--steps", "4",
                 "--eval-every", "2", "--hparams", TINY, "--quiet"]) == 0  # fmt: skip
    assert main(["generate", "--checkpoint", str(run), "--out", str(out), "--name", "tune",
                 "--num-outputs", "2", "--seed", "3", "--rhythm", "jig", "--meter", "6/8",
                 "--key", "G", "--title", "Cli jig"]) == 0  # fmt: skip
    for index in (1, 2):
        abc = (out / f"tune_{index:02d}.abc").read_text()
        assert abc.startswith("X:1\nT:Cli jig\nM:6/8\nR:jig\nK:G\n")
    capsys.readouterr()
    # An opening no tune could continue: one line, nothing written.
    assert main(["generate", "--checkpoint", str(run), "--out", str(out), "--name", "bad",
                 "--seed", "1", "--abc-primer", "K:G\\n[[GAB"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unbalanced" in err
    assert not list(out.glob("bad_*"))
    # A tune the model wrote that cannot be read: its .abc and a note, no .mid.
    from melodygen.families.abc_char import generate

    real = generate.read_melody
    monkeypatch.setattr(
        generate, "read_melody", lambda text, score, index: real("T:x\nK:G\n", score, index)
    )
    assert main(["generate", "--checkpoint", str(run), "--out", str(out), "--name", "odd",
                 "--seed", "1"]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert (out / "odd_01.abc").is_file() and not (out / "odd_01.mid").exists()
    assert "note: odd_01.abc: " in captured.err


@pytest.mark.parametrize(
    "change",
    [
        {"vocab": ["ab"]},
        {"vocab": list(map(chr, range(40, 2000)))},
        {"vocab": "abc"},
        {"hparams": {"rnn_layer_sizes": [10**9]}},
        {"hparams": {"embedding_size": -1}},
        {"hparams": "big"},
        {"config": "attention_rnn"},
        {"chords": "yes"},
        {"surprise": 1},
        {"vocab_size": 3},
    ],
)
def test_hostile_model_file_is_one_line(trained, tmp_path, capsys, change):
    model = tmp_path / "model"
    shutil.copytree(trained / "model", model)
    values = json.loads((model / MODEL_JSON).read_text())
    for key, value in change.items():
        if key == "hparams" and isinstance(value, dict):
            values["hparams"] = {**values["hparams"], **value}
        else:
            values[key] = value
    (model / MODEL_JSON).write_text(json.dumps(values))
    with pytest.raises(ModelFileError) as caught:
        read_model_info(model)
    assert "\n" not in str(caught.value) and MODEL_JSON in str(caught.value)
    assert main(["generate", "--checkpoint", str(model), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_a_model_refuses_data_with_another_vocabulary(trained, dataset, tmp_path):
    other = tmp_path / "book.abc"
    other.write_text("X:1\nT:Q\nM:4/4\nK:C\nCDEF GABc|cBAG FEDC|]\n")
    get_family("abc_char").build_dataset([other], tmp_path / "d", eval_ratio=0.0)
    from melodygen.core.evaluate import evaluate

    with pytest.raises(DatasetError, match="vocabulary"):
        evaluate(trained, tmp_path / "d")


def test_without_abc2midi_every_abc_path_says_so_first(tmp_path, monkeypatch, capsys):
    """A missing parser is one line naming it, not a bad tune or a lowered temperature."""
    from melodygen.cli import main

    root = Path(__file__).resolve().parent.parent
    book = tmp_path / "book.abc"
    book.write_text("X:1\nT:a\nM:4/4\nL:1/8\nK:G\nGABc dedB|\n")
    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda name: None if name == "abc2midi" else real_which(name)
    )
    for argv in (
        [
            "dataset",
            "build",
            "--family",
            "abc_char",
            "--input",
            str(book),
            "--output",
            str(tmp_path / "d"),
            "--quiet",
        ],
        [
            "evaluate",
            "--checkpoint",
            str(root / "checkpoints" / "folk_basic_rnn"),
            "--input",
            str(book),
        ],
    ):
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2 and "abc2midi is not installed" in err and len(err.splitlines()) == 1


def test_a_tune_in_a_meter_no_bar_can_hold_comes_back_with_its_problem():
    """The model may write M:124/1; that tune is shown with its reason, the others stand."""
    from melodygen.families.abc_char.generate import read_melody

    melody, _ = read_melody("X:1\nT:x\nM:124/1\nL:1/8\nK:G\nGABc|\n", -3.0, 0)
    assert melody.events == [] and "124/1" in melody.problem
    assert melody.text.startswith("X:1")


def test_a_generated_tune_is_parsed_by_abc2midi_once(monkeypatch):
    """read_melody parses the tune and check_validity reuses it: one abc2midi run a tune."""
    import subprocess

    from melodygen.families.abc_char.generate import read_melody

    real = subprocess.run
    runs = []

    def counting(command, *args, **kwargs):
        if "abc2midi" in str(command[0]):
            runs.append(command)
        return real(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", counting)
    melody, validity = read_melody("X:1\nT:x\nM:6/8\nL:1/8\nK:G\n|:GAB c2d:|\n", -3.0, 0)
    assert melody.problem is None and validity.parses and validity.valid
    assert len(runs) == 1


def test_a_broken_opening_is_refused_and_dropped_fields_are_said(trained, capsys):
    """An opening no tune could continue is one line, not 'sample again'; fields the
    header does not hold (X:, S:) are left out with a notice."""
    from melodygen.cli import main
    from melodygen.errors import MelodyGenError

    generator = load_generator(trained / "model")
    broken = GenerationRequest(text_primer="M:6/8\nK:G\n|:GAB [c2d|", num_outputs=1, seed=1)
    with pytest.raises(MelodyGenError, match="the ABC opening cannot be read as music"):
        generator.generate(broken)
    code = main(
        [
            "generate",
            "--checkpoint",
            str(trained / "model"),
            "--out",
            "/tmp/never",
            "--abc-primer",
            "M:6/8\\nK:G\\n|:GAB [c2d|",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "cannot be read as music" in err
    fine = GenerationRequest(text_primer="X:4\nS:a book\nM:6/8\nK:G\n|:GAB", num_outputs=1)
    notices = generator.primer_notices(fine)
    assert any("X:, S: left out" in line for line in notices), notices
