"""Dataset building: summary, deterministic song split, stored encodings, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import PHRASES, write_tune

from melodygen.core.split import song_is_eval
from melodygen.errors import DatasetError, InputFileError
from melodygen.families.melody_rnn.configs import CONFIGS, get_config
from melodygen.families.melody_rnn.dataset import (
    MelodyDataset,
    build_dataset,
    encode_melody,
)
from melodygen.families.melody_rnn.encoding import make_encoding


@pytest.mark.parametrize("config", list(CONFIGS))
def test_build_writes_splits_matching_the_encoding(tune_folder: Path, tmp_path: Path, config):
    output = tmp_path / "data"
    summary = build_dataset([tune_folder], config, output, eval_ratio=0.25, progress=False)

    assert summary.files_read == 13
    assert [Path(f).name for f, _ in summary.files_failed] == ["broken.mid"]
    assert "not a MIDI file" in summary.files_failed[0][1]
    assert summary.melodies_kept == 12
    assert summary.songs["train"] > 0 and summary.songs["eval"] > 0
    # 8 bars end with the last note-off (127 events), minus the first event (no label).
    assert summary.total_steps == 12 * (8 * 16 - 2)

    dataset = MelodyDataset.open(output)
    encoding = make_encoding(get_config(config))
    assert dataset.input_size == encoding.input_size
    assert dataset.num_classes == encoding.num_classes
    train, evaluation = dataset.load("train"), dataset.load("eval")
    assert len(train) + len(evaluation) == 12
    assert not set(train.sources) & set(evaluation.sources)
    for split in (train, evaluation):
        for index in range(len(split)):
            events = split.melody_events(index)
            inputs, targets = encode_melody(encoding, events)
            rows = slice(split.offsets[index], split.offsets[index + 1])
            np.testing.assert_array_equal(split.inputs[rows], inputs)
            np.testing.assert_array_equal(split.targets[rows], targets)
            assert split.targets[rows, 0].max() < encoding.num_classes
    metadata = json.loads((output / "dataset.json").read_text())
    assert metadata["summary"]["melodies_kept"] == 12
    assert metadata["encoding"]["config"] == config


def test_split_is_by_song_and_deterministic(tune_folder: Path, tmp_path: Path):
    first = build_dataset(
        [tune_folder], "basic_rnn", tmp_path / "a", eval_ratio=0.3, progress=False
    )
    second = build_dataset(
        [tune_folder], "basic_rnn", tmp_path / "b", eval_ratio=0.3, workers=1, progress=False
    )
    assert first.songs == second.songs
    for split in ("train", "eval"):
        a = MelodyDataset.open(tmp_path / "a").load(split)
        b = MelodyDataset.open(tmp_path / "b").load(split)
        assert list(a.sources) == list(b.sources)
        np.testing.assert_array_equal(a.inputs, b.inputs)
    assert song_is_eval("x.mid", 0.0) is False
    assert song_is_eval("x.mid", 0.999999) is True


def test_transposition_augments_only_the_training_split(tune_folder: Path, tmp_path: Path):
    plain = build_dataset(
        [tune_folder], "mono_rnn", tmp_path / "plain", eval_ratio=0.25, progress=False
    )
    augmented = build_dataset(
        [tune_folder],
        "mono_rnn",
        tmp_path / "aug",
        eval_ratio=0.25,
        transpositions=range(-2, 3),
        progress=False,
    )
    assert augmented.melodies["train"] == 5 * plain.melodies["train"]
    assert augmented.melodies["eval"] == plain.melodies["eval"]
    train = MelodyDataset.open(tmp_path / "aug").load("train")
    lowest = {
        int(train.melody_events(i)[train.melody_events(i) >= 0].min()) for i in range(len(train))
    }
    assert len(lowest) > 4  # really shifted, not copies


def test_transposing_to_a_key_folds_transpositions_back(tune_folder: Path, tmp_path: Path):
    summary = build_dataset(
        [tune_folder],
        "basic_rnn",
        tmp_path / "d",
        eval_ratio=0.25,
        transpositions=[0, 12],
        progress=False,
    )
    # An octave up is squashed back into the same range and key: counted, not stored twice.
    assert summary.dropped["duplicate_transpositions"] == summary.melodies["train"]


def test_no_usable_melodies_is_a_clear_error(tmp_path: Path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "empty.mid").write_bytes(b"")
    write_tune(folder / "short.mid", PHRASES[0], bars=2)  # shorter than min_bars
    with pytest.raises(DatasetError, match="no usable melodies in 2 file"):
        build_dataset([folder], "basic_rnn", tmp_path / "out", progress=False)


def test_missing_input_and_empty_folder(tmp_path: Path):
    with pytest.raises(InputFileError, match="no such file or folder"):
        build_dataset([tmp_path / "nowhere"], "basic_rnn", tmp_path / "out", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError):
        build_dataset([tmp_path / "empty"], "basic_rnn", tmp_path / "out", progress=False)


def test_opening_something_that_is_not_a_dataset(tmp_path: Path):
    with pytest.raises(DatasetError, match="does not exist"):
        MelodyDataset.open(tmp_path / "missing")
    with pytest.raises(DatasetError, match="not a MelodyGen dataset"):
        MelodyDataset.open(tmp_path)
    (tmp_path / "dataset.json").write_text("{broken")
    with pytest.raises(DatasetError, match="damaged"):
        MelodyDataset.open(tmp_path)
