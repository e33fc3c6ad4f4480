"""phrase_rnn: lookbacks of 1, 2, 4 and 8 bars in each melody's own meter.

Labels are note_seq's lookback labels with those distances; the incremental inputs
(generation) equal the whole-melody inputs (datasets) in every meter; datasets encode each
melody in its own time signature; a tiny model builds, trains, saves, loads and generates.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from note_seq import encoder_decoder, melodies_lib, melody_encoder_decoder
from test_encoding import melodies, random_histories
from test_generate import make_checkpoint

from melodygen.cli import main
from melodygen.core.generation import GenerationRequest
from melodygen.errors import ModelFileError
from melodygen.families.melody_rnn.configs import CONFIGS, get_config
from melodygen.families.melody_rnn.dataset import (
    EncodingSpec,
    MelodyDataset,
    build_dataset,
    encode_melody,
)
from melodygen.families.melody_rnn.encoding import BAR_STEP_SLOTS, make_encoding
from melodygen.families.melody_rnn.generate import MelodyGenerator
from melodygen.families.melody_rnn.model_file import ModelInfo, validate_model_dict
from melodygen.io.primer import parse_primer
from melodygen.theory import NO_EVENT, NOTE_OFF, Meter

CONFIG = get_config("phrase_rnn")
METERS = [Meter(4, 4), Meter(3, 4), Meter(6, 8), Meter(2, 4)]
CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"


def encoding_in(meter: Meter, first_bar_line: int = 0):
    return make_encoding(CONFIG).for_meter(meter.steps_per_bar, first_bar_line)


def random_bar(rng: np.random.Generator, steps: int, low: int, high: int) -> np.ndarray:
    """A bar starting with a note-on, then note-ons, note-offs and holds."""
    kinds = rng.choice(3, size=steps, p=[0.5, 0.1, 0.4])
    bar = np.where(kinds == 0, rng.integers(low, high, size=steps), NO_EVENT)
    bar[kinds == 1] = NOTE_OFF
    bar[0] = rng.integers(low, high)
    return bar


# The encoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("meter", METERS, ids=str)
def test_sizes_stay_and_lookbacks_follow_the_meter(meter):
    base, encoding = make_encoding(CONFIG), encoding_in(meter)
    bar = meter.steps_per_bar
    assert encoding.lookback_distances == (bar, 2 * bar, 4 * bar, 8 * bar)
    assert (encoding.input_size, encoding.num_classes) == (base.input_size, base.num_classes)
    events = base.num_event_classes
    assert encoding.num_classes == events + 4
    assert encoding.input_size == 5 * events + BAR_STEP_SLOTS + 8 + 4
    assert base.lookback_distances == (16, 32, 64, 128)  # 4/4 until told the meter
    assert base.for_meter(bar) is base.for_meter(bar)  # one encoding per meter, kept


@pytest.mark.parametrize("meter", METERS, ids=str)
def test_repeat_labels_mark_4_and_8_bar_repeats(meter):
    """Bars 1-4 (A), 5-8 = A, 9-12 (C, other pitches), 13-16 = C; then 8 bars played twice."""
    rng = np.random.default_rng(meter.steps_per_bar)
    encoding = encoding_in(meter)
    bar, plain = meter.steps_per_bar, encoding.num_event_classes
    four, eight = plain + 2, plain + 3  # labels "repeat 4 bars back" and "8 bars back"
    a = np.concatenate([random_bar(rng, bar, 48, 60) for _ in range(4)])
    c = np.concatenate([random_bar(rng, bar, 72, 84) for _ in range(4)])
    events = np.concatenate([a, a, c, c])
    labels = encoding.labels(events)  # labels[i]: the event at step i + 1
    label_of = np.concatenate([[-1], labels])
    notes = events >= 0
    steps = np.arange(len(events))
    in_bars = lambda low, high: (steps >= (low - 1) * bar) & (steps < high * bar)  # noqa: E731
    # Bars 5-8 repeat 4 bars back (8 bars back does not exist yet): note-ons say so.
    assert (label_of[in_bars(5, 8) & notes] == four).all()
    # Before 8 bars, a hold takes Magenta's "repeat the last lookback" label (a no-event).
    assert (label_of[in_bars(5, 8) & (events == NO_EVENT)] == eight).all()
    # Bars 13-16 repeat C 4 bars back, not A 8 bars back (other pitches).
    assert (label_of[in_bars(13, 16) & notes] == four).all()
    flags = encoding.inputs(events)[:, -4:]
    assert flags[in_bars(5, 8), 2].all() and flags[in_bars(13, 16), 2].all()
    assert not flags[: 8 * bar, 3].any()
    # Eight bars played twice: the second time every event repeats 8 bars back (and the
    # last-listed lookback wins, as in note_seq, where a shorter one repeats too).
    eight_bars = np.concatenate([random_bar(rng, bar, 48, 84) for _ in range(8)])
    twice = np.concatenate([eight_bars, eight_bars])
    twice_labels = np.concatenate([[-1], encoding.labels(twice)])
    assert (twice_labels[8 * bar :] == eight).all()
    assert encoding.inputs(twice)[8 * bar :, -1].all()
    # Every label decodes to the event that follows.
    for melody in (events, twice):
        labels = encoding.labels(melody)
        table = encoding.label_event_classes(melody)
        decoded = table[np.arange(len(labels)), labels]
        np.testing.assert_array_equal(decoded, encoding.event_classes(melody[1:]))


@pytest.mark.parametrize("meter", METERS, ids=str)
def test_place_in_the_bar_and_phrase_follows_the_meter(meter):
    encoding = encoding_in(meter)
    bar, start = meter.steps_per_bar, 5 * encoding.num_event_classes
    events = np.tile([60, NO_EVENT, NOTE_OFF, 62], 20 * bar)[: 20 * bar]
    block = encoding.inputs(events)[:, start : start + BAR_STEP_SLOTS + 8]
    assert (block.sum(axis=1) == 2).all()
    following = np.arange(len(events)) + 1  # an input row tells where the next event falls
    np.testing.assert_array_equal(block[:, :BAR_STEP_SLOTS].argmax(axis=1), following % bar)
    np.testing.assert_array_equal(block[:, BAR_STEP_SLOTS:].argmax(axis=1), following // bar % 8)
    # A history that starts one step before its first bar line (generation's silent start).
    shifted = encoding_in(meter, first_bar_line=1).inputs(events)[:, start:]
    np.testing.assert_array_equal(shifted[1:, : BAR_STEP_SLOTS + 8], block[:-1])


@pytest.mark.parametrize("meter", METERS, ids=str)
def test_labels_and_lookbacks_are_note_seqs_with_distances_in_bars(meter):
    encoding = encoding_in(meter)
    reference = encoder_decoder.LookbackEventSequenceEncoderDecoder(
        melody_encoder_decoder.MelodyOneHotEncoding(CONFIG.min_note, CONFIG.max_note),
        list(encoding.lookback_distances),
        5,
    )
    head = 5 * encoding.num_event_classes  # events and lookbacks; the flags are the last 4
    cases = melodies(CONFIG, seed=meter.steps_per_bar)
    for events in cases[:40] + cases[-9:]:
        melody = melodies_lib.Melody([int(e) for e in events])
        expected = [reference.events_to_label(melody, i) for i in range(1, len(melody))]
        np.testing.assert_array_equal(encoding.labels(events), np.array(expected, np.int32))
        inputs = encoding.inputs(events)
        for position in range(0, len(melody), 7):
            row = np.array(reference.events_to_input(melody, position), np.float32)
            np.testing.assert_array_equal(inputs[position, :head], row[:head])
            np.testing.assert_array_equal(inputs[position, -4:], row[-4:])


@pytest.mark.parametrize("meter", METERS, ids=str)
@pytest.mark.parametrize("first_bar_line", [0, 1])
def test_inputs_at_equals_inputs(meter, first_bar_line):
    encoding = encoding_in(meter, first_bar_line)
    rng = np.random.default_rng(meter.steps_per_bar + first_bar_line)
    steps = 8 * meter.steps_per_bar + 60
    histories = random_histories(rng, CONFIG, steps)
    whole = np.stack([encoding.inputs(row) for row in histories])
    for position in range(steps):
        np.testing.assert_array_equal(encoding.inputs_at(histories, position), whole[:, position])
    for position in (0, 1, steps // 2, steps - 1):
        row = histories[3, : position + 1].astype(np.int32)
        np.testing.assert_array_equal(encoding.input_at(row, position), whole[3, position])


# Saved specs and model files ------------------------------------------------------------------


def test_the_spec_records_the_phrase_fields_and_magentas_files_stay_as_they_were():
    spec = EncodingSpec.from_config(CONFIG)
    saved = spec.to_dict()
    assert saved["encoding"] == "phrase" and saved["lookback_bars"] == [1, 2, 4, 8]
    assert saved["phrase_bars"] == 8
    assert EncodingSpec.from_dict(json.loads(json.dumps(saved))) == spec
    assert CONFIG.hparams.loss == "event"
    info = ModelInfo.for_config("phrase_rnn")
    validate_model_dict(json.loads(json.dumps(info.to_dict())))
    for broken in ({"phrase_bars": 0}, {"lookback_bars": []}, {"lookback_bars": [1, 0]}):
        values = info.to_dict()
        values["encoding"].update(broken)
        with pytest.raises(ModelFileError, match=f"encoding.{next(iter(broken))}"):
            validate_model_dict(values)
    missing = info.to_dict()
    del missing["encoding"]["phrase_bars"]
    with pytest.raises(ModelFileError, match="phrase_bars"):
        validate_model_dict(missing)
    # Magenta's configurations write the spec exactly as before (no phrase fields).
    for name, config in CONFIGS.items():
        if config.encoding != "phrase":
            assert "lookback_bars" not in EncodingSpec.from_config(config).to_dict(), name
    shipped = sorted(CHECKPOINTS.glob("*_rnn/melodygen.json"))
    assert shipped
    for path in shipped:
        stored = json.loads(path.read_text())["encoding"]
        assert EncodingSpec.from_dict(stored).to_dict() == stored, path


# Generation -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generator(tmp_path_factory) -> MelodyGenerator:
    return MelodyGenerator(make_checkpoint(tmp_path_factory.mktemp("phrase"), "phrase_rnn"))


@pytest.mark.parametrize("meter", METERS, ids=str)
@pytest.mark.parametrize("primer", ["C4 E4 G4 C5", ""])
def test_generation_scores_are_the_whole_melody_likelihood_in_its_meter(generator, meter, primer):
    from melodygen.families.melody_rnn.metrics import event_log_probs

    request = GenerationRequest(
        primer=parse_primer(primer or None),
        length_steps=10 * meter.steps_per_bar,
        time_signature=meter,
        num_outputs=2,
        seed=4,
        start_on_downbeat=False,  # no mask on the first step: the model's own probabilities
    )
    encoding = encoding_in(meter, 0 if primer else 1)
    for melody in generator.generate(request).melodies:
        events = np.array(melody.events if primer else [NO_EVENT, *melody.events])
        inputs, targets = encode_melody(encoding, events)
        logits = np.asarray(generator.model(inputs[None], training=False))
        log_probs = np.asarray(
            event_log_probs(
                targets[None].astype(np.int32),
                logits,
                np.asarray(generator.info.label_event_classes),
                encoding.num_event_classes,
            )
        )[0]
        picked = np.take_along_axis(log_probs, targets[:, 1:2].astype(int), axis=-1)[:, 0]
        expected = picked[max(melody.primer_steps - 1, 0) :].sum()
        assert melody.log_likelihood == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("meter", [Meter(3, 4), Meter(6, 8)], ids=str)
def test_a_form_is_followed_in_the_requests_meter(generator, meter):
    from melodygen.core.form import form_length_steps

    request = GenerationRequest(
        primer=parse_primer(None),
        length_steps=form_length_steps("AABA", 4, meter, []),
        time_signature=meter,
        form="AABA",
        section_bars=4,
        num_outputs=2,
        seed=1,
    )
    result = generator.generate(request)
    bar = meter.steps_per_bar
    for melody in result.melodies:
        events = np.array(melody.events)
        assert len(events) == 16 * bar
        np.testing.assert_array_equal(events[4 * bar + 1 : 8 * bar], events[1 : 4 * bar])


# From files to a trained model ----------------------------------------------------------------

PHRASE = [60, 62, 64, 65, 67, 65, 64, 62, 64, 60, 62, 59]


def write_midi(path: Path, meter: tuple[int, int], bars: int, shift: int) -> None:
    """Quarter notes (eighths in x/8), repeating PHRASE, with the time signature set."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    midi.time_signature_changes.append(pretty_midi.TimeSignature(*meter, 0.0))
    piano = pretty_midi.Instrument(program=0)
    beat = 0.5 * 4 / meter[1]
    beats = bars * meter[0]
    for index in range(beats):
        start = index * beat
        pitch = PHRASE[index % len(PHRASE)] + shift
        piano.notes.append(pretty_midi.Note(90, pitch, start, start + 0.75 * beat))
    midi.instruments.append(piano)
    midi.write(str(path))


JIG = "X:1\nT:Jig {n}\nM:6/8\nL:1/8\nQ:3/8=120\nK:G\n" + "GAB c2d|e2d c2B|ded cBA|B2G A2F|" * 4


@pytest.fixture(scope="module")
def phrase_model(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("phrase_files")
    tunes = root / "tunes"
    tunes.mkdir()
    for index, meter in enumerate([(4, 4), (3, 4), (2, 4), (4, 4), (3, 4)]):
        write_midi(tunes / f"tune{index}.mid", meter, 16, index)
    for index in range(2):
        (tunes / f"jig{index}.abc").write_text(JIG.format(n=index) + "\n")
    data, run_dir = root / "data", root / "run"
    build_dataset([tunes], "phrase_rnn", data, eval_ratio=0.3, workers=1, progress=False)
    code = main(
        [
            "train",
            "--config",
            "phrase_rnn",
            "--data",
            str(data),
            "--run-dir",
            str(run_dir),
            "--steps",
            "3",
            "--eval-every",
            "3",
            "--quiet",
            "--hparams",
            "rnn_layer_sizes=[8],batch_size=2",
        ]
    )
    assert code == 0
    return {"data": data, "run": run_dir, "root": root}


def test_the_dataset_encodes_each_melody_in_its_own_meter(phrase_model):
    dataset = MelodyDataset.open(phrase_model["data"])
    assert dataset.spec == EncodingSpec.from_config(CONFIG)
    seen = set()
    for split in ("train", "eval"):
        loaded = dataset.load(split)
        assert loaded.meters_known
        for index, bar in enumerate(loaded.steps_per_bar()):
            seen.add(tuple(int(v) for v in loaded.meters[index]))
            events = loaded.melody_events(index)
            inputs, targets = encode_melody(make_encoding(CONFIG).for_meter(int(bar)), events)
            start, end = loaded.offsets[index], loaded.offsets[index + 1]
            np.testing.assert_array_equal(loaded.inputs[start:end], inputs)
            np.testing.assert_array_equal(loaded.targets[start:end], targets)
    assert {(4, 4), (3, 4), (2, 4), (6, 8)} <= seen


def test_a_trained_phrase_model_saves_loads_and_generates(phrase_model, tmp_path, capsys):
    saved = json.loads((phrase_model["run"] / "model" / "melodygen.json").read_text())
    assert saved["config"] == "phrase_rnn" and saved["hparams"]["loss"] == "event"
    assert saved["encoding"]["lookback_bars"] == [1, 2, 4, 8]
    capsys.readouterr()
    base = ["generate", "--checkpoint", str(phrase_model["run"]), "--seed", "2"]
    free = [*base, "--out", str(tmp_path / "free"), "--bars", "8", "--time-signature", "6/8"]
    assert main(free) == 0, capsys.readouterr().err
    assert list((tmp_path / "free").glob("*.mid"))
    formed = [*base, "--out", str(tmp_path / "form"), "--form", "AABB", "--section-bars", "4"]
    assert main([*formed, "--time-signature", "3/4", "--primer", "C4 E4"]) == 0
    out = capsys.readouterr().out
    assert "form: A bars 1-4" in out
    assert list((tmp_path / "form").glob("*.mid"))
