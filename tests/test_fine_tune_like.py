"""Fine-tuning on data whose classes or characters the base never saw: ``dataset build
--like BASE`` encodes the user's files with the base's own note classes (note_vae) or
vocabulary (abc_char), counts what it lacks in one line, and the fine-tune trains and
loads; a Melody RNN base (whose encoding is its configuration's) keeps working, and the
training job passes ``--like`` for a fine-tune."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import PHRASES, write_tune
from test_note_vae import write_song

from melodygen.cli import main
from melodygen.core.checkpoint import load_model, read_model_info
from melodygen.core.family import get_family
from melodygen.core.generation import GenerationRequest, load_generator
from melodygen.core.train import train
from melodygen.errors import DatasetError
from melodygen.jobs import encoding_notice

CHAR_TINY = "embedding_size=8,rnn_layer_sizes=[16],batch_size=4,learning_rate=0.02,dropout=0.0"


def build(capsys, *flags: str) -> tuple[int, str, str]:
    code = main(["dataset", "build", "--workers", "1", "--quiet", *flags])
    out, err = capsys.readouterr()
    return code, out, err


# note_vae ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vae_base(tmp_path_factory) -> Path:
    """A tiny note VAE trained a few steps on songs of eighths, quarters and dotted quarters
    at velocities 40, 80 and 120."""
    songs = tmp_path_factory.mktemp("vae_songs")
    for index in range(8):
        write_song(songs / f"piece{index:02d}.mid", shift=index, named=False)
    data = tmp_path_factory.mktemp("vae_data") / "data"
    get_family("note_vae").build_dataset(
        [songs], data, config="vae_tiny", eval_ratio=0.2, workers=1, progress=False
    )
    run = tmp_path_factory.mktemp("vae_run") / "run"
    train(data, run, steps=4, eval_every=2, progress=False)
    return run


def test_a_note_vae_fine_tunes_on_files_whose_classes_it_lacks(vae_base, tmp_path, capsys):
    files = tmp_path / "mine"
    files.mkdir()
    for index in range(10):  # quarter notes held 3 sixteenths at velocity 90
        write_tune(files / f"t{index}.mid", PHRASES[index % 4], bars=16, transpose=index % 3)
    # Built as usual, the classes are fitted to these files, and the base cannot read them.
    code, _, err = build(capsys, "--family", "note_vae", "--config", "vae_tiny",
                         "--input", str(files), "--output", str(tmp_path / "own"))  # fmt: skip
    assert code == 0, err
    _, info = read_model_info(vae_base)
    own = get_family("note_vae").open_dataset(tmp_path / "own")
    assert own.classes != info.classes
    with pytest.raises(DatasetError, match="other note classes"):
        get_family("note_vae").check_fits(info, vae_base, own)
    # --like reads them with the base's classes and says, in one line, what it lacked.
    code, out, err = build(capsys, "--like", str(vae_base), "--input", str(files),
                           "--output", str(tmp_path / "like"))  # fmt: skip
    assert code == 0, err
    like = get_family("note_vae").open_dataset(tmp_path / "like")
    assert like.classes == info.classes and like.config == info.config
    line = next(x for x in out.splitlines() if x.startswith("classes:"))
    assert f"the base model's ({vae_base.name}/model)" in line
    assert "read as the nearest class" in line
    mapped = json.loads((tmp_path / "like" / "dataset.json").read_text())["summary"]["mapped"]
    assert mapped["velocity"] > 0  # 90 is none of 40, 80, 120
    assert encoding_notice(out).startswith("classes: the base model's")
    # The fine-tune trains from the base and loads.
    run = tmp_path / "tuned"
    train(tmp_path / "like", run, steps=2, eval_every=1, init_from=vae_base, progress=False)
    model, tuned = load_model(run)
    assert tuned.classes == info.classes and tuned.training["init_from"]
    result = load_generator(run).generate(GenerationRequest(length_steps=32, seed=1))
    assert result.melodies and result.melodies[0].sequence.notes


def test_like_refuses_another_family_or_configuration_in_one_line(vae_base, tmp_path, capsys):
    files = tmp_path / "mine"
    files.mkdir()
    write_tune(files / "t.mid", PHRASES[0], bars=16)
    for flags, words in (
        (("--family", "abc_char"), "is a Note VAE model, not abc_char"),
        (("--config", "melody_vae"), "not melody_vae; leave out --config"),
    ):
        code, _, err = build(capsys, "--like", str(vae_base), *flags, "--input", str(files),
                             "--output", str(tmp_path / "d"))  # fmt: skip
        assert code == 2 and err.count("\n") == 1 and words in err, err
    code, _, err = build(capsys, "--like", str(tmp_path / "none"), "--input", str(files),
                         "--output", str(tmp_path / "d"))  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err


# abc_char ---------------------------------------------------------------------------------

JIG = "X:{n}\nT:Jig {n}\nM:6/8\nL:1/8\nK:G\n|:GAB c2d|e2d c2B|d2B G2A|B2A G3:|\n"
# Sharps (^), a rest (z) and a title letter the jigs never held.
REEL = "X:{n}\nT:Reel ü {n}\nM:4/4\nL:1/8\nK:D\n|:^FGAB z2 ^cd|e2d2 ^c2A2|B2A2 F2D2|E4 D4:|\n"


@pytest.mark.skipif(shutil.which("abc2midi") is None, reason="needs abc2midi")
def test_an_abc_char_model_fine_tunes_on_characters_it_lacks(tmp_path, capsys):
    book = tmp_path / "jigs.abc"
    book.write_text("\n".join(JIG.format(n=n) for n in range(1, 13)))
    get_family("abc_char").build_dataset(
        [book], tmp_path / "base_data", eval_ratio=0.2, workers=1, progress=False
    )
    base = tmp_path / "base"
    train(tmp_path / "base_data", base, steps=4, eval_every=2, hparams=CHAR_TINY, progress=False)
    _, info = read_model_info(base)
    mine = tmp_path / "reels.abc"
    mine.write_text("\n".join(REEL.format(n=n) for n in range(1, 13)))
    assert set("^zü") - set(info.vocab.chars) == set("^zü")
    code, out, err = build(capsys, "--like", str(base), "--input", str(mine),
                           "--output", str(tmp_path / "like"))  # fmt: skip
    assert code == 0, err
    like = get_family("abc_char").open_dataset(tmp_path / "like")
    assert like.vocab == info.vocab
    line = next(x for x in out.splitlines() if x.startswith("vocabulary:"))
    assert f"the base model's ({base.name}/model, " in line and "read as <unk>" in line
    assert "'^'" in line and "'z'" in line
    unknown = json.loads((tmp_path / "like" / "dataset.json").read_text())["summary"]
    assert unknown["unknown_train"]["^"] > 0
    run = tmp_path / "tuned"
    train(tmp_path / "like", run, steps=2, eval_every=1, init_from=base, progress=False)
    _, tuned = load_model(run)
    assert tuned.vocab == info.vocab
    result = load_generator(run).generate(GenerationRequest(seed=3, length_steps=64))
    assert "\ufffd" not in result.melodies[0].text  # <unk> is never written


# melody_rnn -------------------------------------------------------------------------------


def test_a_melody_rnn_base_builds_as_its_configuration(tmp_path, capsys):
    from studio_fixtures import make_checkpoints

    shipped = make_checkpoints(tmp_path / "checkpoints")
    files = tmp_path / "mine"
    files.mkdir()
    for index in range(6):
        write_tune(files / f"t{index}.mid", PHRASES[index % 4])
    base = shipped / "pop_basic_rnn"
    code, out, err = build(capsys, "--like", str(base), "--input", str(files),
                           "--output", str(tmp_path / "like"))  # fmt: skip
    assert code == 0, err
    family = get_family("melody_rnn")
    dataset = family.open_dataset(tmp_path / "like")
    _, info = read_model_info(base)
    family.check_fits(info, base, dataset)
    assert dataset.spec.config == "basic_rnn" and encoding_notice(out) is None


# abc_transformer --------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("abc2midi") is None, reason="needs abc2midi")
def test_an_abc_transformer_dataset_like_a_model_keeps_its_tokenizer(tmp_path):
    from melodygen.families.abc_transformer import dataset as data

    family = get_family("abc_transformer")
    book = tmp_path / "jigs.abc"
    book.write_text("\n".join(JIG.format(n=n) for n in range(1, 13)))
    family.build_dataset([book], tmp_path / "base_data", config="transformer_tiny",
                         eval_ratio=0.2, workers=1, progress=False)  # fmt: skip
    info = family.new_model_info(family.open_dataset(tmp_path / "base_data"), None)
    mine = tmp_path / "reels.abc"
    mine.write_text("\n".join(REEL.format(n=n) for n in range(1, 13)))
    summary = family.build_dataset_like(
        info, tmp_path / "base", [mine], tmp_path / "like", eval_ratio=0.2, workers=1,
        progress=False,
    )  # fmt: skip
    like = family.open_dataset(tmp_path / "like")
    family.check_fits(info, tmp_path / "base", like)  # the base reads it
    assert like.tokenizer.tokens == info.tokenizer.tokens and len(like.load("train")) > 0
    line = next(x for x in summary.format().splitlines() if x.startswith("vocabulary:"))
    assert "the base model's (base, " in line and "read as <unk>" in line, line
    assert summary.unknown_train["^"] > 0
    assert summary.unknown_meta["meter"] > 0  # 4/4: the jigs held only 6/8
    # Built on its own, it would have a tokenizer the base cannot read.
    data.build_dataset([mine], tmp_path / "own", config="transformer_tiny", eval_ratio=0.2,
                       workers=1, progress=False)  # fmt: skip
    with pytest.raises(DatasetError):
        family.check_fits(info, tmp_path / "base", family.open_dataset(tmp_path / "own"))
