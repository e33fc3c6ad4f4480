"""Generation: incremental = full forward pass, keys and scales, seeds, beam search, CLI."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from melodygen.cli import main
from melodygen.core.checkpoint import build_network, save_model
from melodygen.core.generation import GenerationError, GenerationRequest, bars_to_steps
from melodygen.errors import CheckpointError
from melodygen.families.melody_rnn.configs import CONFIGS, HParams
from melodygen.families.melody_rnn.generate import MODES, MelodyGenerator, StepModel
from melodygen.families.melody_rnn.model_file import ModelInfo
from melodygen.io.primer import Primer, parse_primer
from melodygen.theory import KeyNameError, Meter, parse_key


def make_checkpoint(folder: Path, config: str, seed: int = 0) -> Path:
    """A small untrained network saved as a real checkpoint (random weights are enough here)."""
    import keras

    keras.utils.set_random_seed(seed)
    hparams = HParams(rnn_layer_sizes=(16, 16), attn_length=6 if config == "attention_rnn" else 0)
    info = ModelInfo.for_config(config, hparams)
    return save_model(folder / config, build_network(info), info)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    return {config: make_checkpoint(folder, config) for config in CONFIGS}


@pytest.fixture(scope="module")
def generators(checkpoints) -> dict[str, MelodyGenerator]:
    return {config: MelodyGenerator(path) for config, path in checkpoints.items()}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_stepping_gives_the_logits_of_a_full_forward_pass(generators, config):
    generator = generators[config]
    rng = np.random.default_rng(1)
    events = rng.choice([-2, -2, -1, 60, 62, 64, 65, 67, 69], size=50)
    events[0] = 60
    inputs = generator.encoding.inputs(events)
    full = np.asarray(generator.model(inputs[None], training=False))[0]
    steps = StepModel(generator.model)
    states = steps.initial_state(1)
    for position in range(len(events)):
        logits, states = steps.step(inputs[position : position + 1], states)
        np.testing.assert_allclose(logits[0], full[position], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("config", ["lookback_rnn", "attention_rnn"])
def test_scores_are_the_melody_log_likelihood_with_repeat_labels_folded_in(generators, config):
    from melodygen.families.melody_rnn.dataset import encode_melody
    from melodygen.families.melody_rnn.metrics import event_log_probs

    generator = generators[config]
    request = GenerationRequest(
        primer=parse_primer("C4 E4 G4 C5"), length_steps=80, num_outputs=3, seed=2
    )
    melodies = generator.generate(request).melodies
    encoding = generator.encoding
    for melody in melodies:
        events = np.array(melody.events)
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
        expected = picked[melody.primer_steps - 1 :].sum()
        assert melody.log_likelihood == pytest.approx(expected, rel=1e-4)


def test_same_seed_same_melodies_and_primer_kept(generators):
    generator = generators["lookback_rnn"]
    request = GenerationRequest(
        primer=parse_primer("C4 D4 E4 F4"), length_steps=64, num_outputs=4, seed=7
    )
    first = generator.generate(request).melodies
    second = generator.generate(request).melodies
    assert [m.events for m in first] == [m.events for m in second]
    assert len({tuple(m.events) for m in first}) > 1  # the variations differ
    other = generator.generate(GenerationRequest(**{**request.__dict__, "seed": 8})).melodies
    assert [m.events for m in other] != [m.events for m in first]
    for melody in first:
        assert melody.steps == 64 and melody.primer_steps == 16
        assert melody.events[:16] == request.primer.events
    without = generator.generate(GenerationRequest(**{**request.__dict__, "include_primer": False}))
    assert [m.events for m in without.melodies] == [m.events[16:] for m in first]


@pytest.mark.parametrize("config", ["basic_rnn", "attention_rnn", "mono_rnn"])
@pytest.mark.parametrize(("key", "mode"), [("D", "minor"), ("F#", "major"), ("A", "dorian")])
def test_in_scale_keeps_every_pitch_in_the_scale(generators, config, key, mode):
    request = GenerationRequest(
        length_steps=128,
        key=parse_key(key),
        mode=mode,
        in_scale=True,
        num_outputs=8,
        seed=3,
        temperature=1.5,
        min_pitch=50,
        max_pitch=90,
    )
    scale = {(parse_key(key) + i) % 12 for i in MODES[mode][0]}
    melodies = generators[config].generate(request).melodies
    pitches = [p for m in melodies for p in m.pitches()]
    assert len(pitches) > 20
    assert {p % 12 for p in pitches} <= scale
    assert 50 <= min(pitches) and max(pitches) <= 90


def test_key_transposes_the_same_samples(generators):
    generator = generators["basic_rnn"]
    in_c = generator.generate(GenerationRequest(length_steps=64, key=0, seed=11, num_outputs=3))
    in_d = generator.generate(GenerationRequest(length_steps=64, key=2, seed=11, num_outputs=3))
    in_a_minor = generator.generate(
        GenerationRequest(length_steps=64, key=9, mode="minor", seed=11, num_outputs=3)
    )
    assert in_d.transpose == 2 and in_a_minor.transpose == 0  # A minor is C major's relative
    for c, d, a in zip(in_c.melodies, in_d.melodies, in_a_minor.melodies, strict=True):
        assert d.events == [e + 2 if e >= 0 else e for e in c.events]
        assert a.events == c.events


def test_beam_search_returns_the_most_likely_candidate(generators):
    generator = generators["attention_rnn"]
    request = GenerationRequest(
        length_steps=40,
        num_outputs=3,
        seed=5,
        beam_size=4,
        branch_factor=2,
        steps_per_iteration=3,
    )
    result = generator.generate(request)
    candidates, scores = generator.last_beam_candidates
    assert len(scores) == 3 * 4 * 2
    for index, melody in enumerate(result.melodies):
        group = scores[index * 8 : (index + 1) * 8]
        assert melody.log_likelihood == pytest.approx(group.max())
        assert melody.log_likelihood > np.median(group) or np.allclose(group, group.max())
    # A plain sample of the same request scores no better than the beam's pick on average.
    plain = generator.generate(GenerationRequest(length_steps=40, num_outputs=3, seed=5))
    assert np.mean([m.log_likelihood for m in plain.melodies]) <= np.mean(
        [m.log_likelihood for m in result.melodies]
    )


def test_top_k_one_is_greedy(generators):
    generator = generators["mono_rnn"]
    request = GenerationRequest(length_steps=32, num_outputs=3, seed=1, top_k=1)
    melodies = generator.generate(request).melodies
    assert melodies[0].events == melodies[1].events == melodies[2].events
    top_p = generator.generate(GenerationRequest(length_steps=32, num_outputs=2, top_p=1e-9))
    assert top_p.melodies[0].events == melodies[0].events


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"temperature": 0}, "temperature must be above 0"),
        ({"temperature": -1}, "temperature must be above 0"),
        ({"primer": Primer(events=[60] + [-2] * 40), "length_steps": 32}, "longer than"),
        ({"mode": "bebop"}, "unknown mode"),
        ({"num_outputs": 0}, "number of outputs"),
        ({"top_p": 1.5}, "top-p"),
        ({"min_pitch": 80, "max_pitch": 70}, "pitch range"),
    ],
)
def test_bad_requests_are_clear_errors(generators, changes, message):
    with pytest.raises(GenerationError, match=message):
        generators["basic_rnn"].generate(GenerationRequest(**changes))


def test_bad_keys_and_checkpoints(tmp_path: Path):
    assert parse_key("Bb") == 10 and parse_key("c#") == 1 and parse_key(None) is None
    with pytest.raises(KeyNameError, match="unknown key"):
        parse_key("H")
    with pytest.raises(CheckpointError, match="does not exist"):
        MelodyGenerator(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="not a MelodyGen checkpoint"):
        MelodyGenerator(tmp_path)


def test_cli_generate_writes_midi_files(checkpoints, tmp_path: Path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "generate",
            "--checkpoint",
            str(checkpoints["attention_rnn"]),
            "--primer",
            "D4 F4 A4 D5",
            "--key",
            "D",
            "--mode",
            "minor",
            "--in-scale",
            "--bpm",
            "100",
            "--bars",
            "4",
            "--num-outputs",
            "3",
            "--seed",
            "7",
            "--out",
            str(out),
            "--name",
            "tune",
            "--wav",
            "--instrument",
            "Flute",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    files = sorted(out.glob("*.mid"))
    assert [f.name for f in files] == ["tune_01.mid", "tune_02.mid", "tune_03.mid"]
    for wav in sorted(out.glob("*.wav")):
        with wave.open(str(wav)) as audio:  # 4 bars at 100 BPM plus the release tail
            assert 9.6 <= audio.getnframes() / audio.getframerate() <= 11.0
    assert len(list(out.glob("*.wav"))) == 3
    scale = {(2 + i) % 12 for i in MODES["minor"][0]}
    for file in files:
        midi = pretty_midi.PrettyMIDI(str(file))
        notes = midi.instruments[0].notes
        assert [n.pitch for n in notes[:4]] == [62, 65, 69, 74]
        assert {n.pitch % 12 for n in notes} <= scale
        assert midi.get_tempo_changes()[1][0] == pytest.approx(100)
        assert midi.instruments[0].program == 73  # flute
        assert midi.get_end_time() <= 4 * 4 * 60 / 100 + 1e-6
    assert "3 melodies from attention_rnn in D minor (as asked), 4/4 in " in captured.out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--primer", "C4 H4"], "H4"),
        (["--temperature", "0"], "temperature must be above 0"),
        (["--primer", "C4:64", "--bars", "2"], "longer than"),
        (["--key", "X"], "unknown key"),
        (["--instrument", "Kazoo"], "Kazoo"),
        (["--primer-midi", "{tmp}/missing.mid"], "missing.mid"),
    ],
)
def test_cli_generate_errors_exit_2(checkpoints, tmp_path: Path, capsys, argv, message):
    try:  # a number out of range is refused by the argument parser itself (exit status 2)
        code = main(
            ["generate", "--checkpoint", str(checkpoints["basic_rnn"]), "--out", str(tmp_path)]
            + [a.format(tmp=tmp_path) for a in argv]
        )
    except SystemExit as exit:
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    code = main(["generate", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert code == 2 and "does not exist" in capsys.readouterr().err


# Meter, key, downbeat, notices and warnings ------------------------------------------------


def test_meter_carries_into_the_melody_and_its_midi_file(generators, tmp_path: Path):
    generator = generators["attention_rnn"]
    primer = parse_primer("3/4 D4 F#4 A4 | D5:12")
    assert primer.meter == Meter(3, 4)
    request = GenerationRequest(
        primer=primer, length_steps=bars_to_steps(4, primer.meter), num_outputs=2, seed=3
    )
    assert request.length_steps == 48
    result = generator.generate(request)
    for melody in result.melodies:
        assert melody.meter == Meter(3, 4) and melody.steps == 48
    path = result.melodies[0].write_midi(tmp_path / "waltz.mid", name="Waltz 1")
    midi = pretty_midi.PrettyMIDI(str(path))
    assert [(t.numerator, t.denominator, t.time) for t in midi.time_signature_changes] == [
        (3, 4, 0.0)
    ]
    assert [k.key_number for k in midi.key_signature_changes] == [2]  # D major
    assert midi.instruments[0].name == "Waltz 1"
    # A meter chosen in the request wins over the primer's.
    assert GenerationRequest(time_signature="6/8").meter == Meter(6, 8)
    chosen = generator.generate(
        GenerationRequest(**{**request.__dict__, "time_signature": Meter(6, 8)})
    )
    assert chosen.melodies[0].meter == Meter(6, 8)
    assert [m.events for m in chosen.melodies] == [m.events for m in result.melodies]


def test_auto_key_uses_the_primer_key_and_mode(generators):
    generator = generators["basic_rnn"]
    # A typed D minor arpeggio is continued in D minor (B flats), not in C major.
    d_minor = parse_primer("D4 F4 A4 D5 A4 F4 D4:8")
    request = GenerationRequest(
        primer=d_minor, length_steps=128, num_outputs=8, seed=4, in_scale=True, temperature=1.5
    )
    result = generator.generate(request)
    assert (result.key, result.mode, result.key_source) == (2, "minor", "estimated")
    assert result.transpose == 5  # D minor's relative major F, from the model's C
    pitches = {p % 12 for m in result.melodies for p in m.pitches()}
    assert 10 in pitches and 11 not in pitches  # Bb, never B
    # A file's key signature (G major) is used as given: F sharps, never F naturals.
    g_major = Primer(
        events=[67, -2, 71, -2, 74, -2], key=7, mode="major", key_source="key signature"
    )
    result = generator.generate(GenerationRequest(**{**request.__dict__, "primer": g_major}))
    assert (result.key, result.mode, result.transpose) == (7, "major", -5)
    pitches = {p % 12 for m in result.melodies for p in m.pitches()}
    assert 6 in pitches and 5 not in pitches
    assert result.melodies[0].key_name == "G major"


def rest_loving(checkpoint: Path) -> MelodyGenerator:
    """A generator whose network strongly prefers no-events and note-offs (rests, holds)."""
    generator = MelodyGenerator(checkpoint)
    bias = generator.model.get_layer("logits").bias
    values = bias.numpy()
    values[np.isin(generator._label_events, [-2, -1])] += 8.0
    bias.assign(values)
    return generator


def test_without_primer_every_variation_starts_on_the_downbeat(checkpoints):
    generator = rest_loving(checkpoints["basic_rnn"])
    request = GenerationRequest(length_steps=32, num_outputs=8, seed=2)
    for melody in generator.generate(request).melodies:
        assert melody.events[0] >= 0
    late = generator.generate(GenerationRequest(**{**request.__dict__, "start_on_downbeat": False}))
    assert all(melody.events[0] < 0 for melody in late.melodies)


def test_settings_that_leave_no_choice_are_warned_about(generators, checkpoints):
    generator = generators["basic_rnn"]
    plain = generator.generate(GenerationRequest(length_steps=32, num_outputs=2, seed=1))
    assert plain.warnings == []
    greedy = generator.generate(GenerationRequest(length_steps=32, num_outputs=2, seed=1, top_k=1))
    assert len(greedy.warnings) == 1 and greedy.warnings[0].startswith("Top-k 1 ")
    # E4-F#4 in C major: three notes, two of them in the key.
    narrow = generator.generate(
        GenerationRequest(length_steps=32, key=0, min_pitch=64, max_pitch=66, seed=1)
    )
    assert narrow.warnings == [
        "Only E4, F4, F#4 can be played (2 in C major): the melody will mostly repeat them; "
        "widen the range between the lowest and highest note."
    ]
    beam = rest_loving(checkpoints["basic_rnn"]).generate(
        GenerationRequest(length_steps=64, num_outputs=2, seed=1, beam_size=4, branch_factor=2)
    )
    assert any("beam search" in warning for warning in beam.warnings)


def test_primer_notes_moved_into_the_model_range_are_reported(generators):
    generator = generators["basic_rnn"]
    high = GenerationRequest(primer=parse_primer("C8 E8 G8 C9 G9"), key=0, length_steps=48, seed=1)
    notices = generator.primer_notices(high)
    assert notices == [
        "The primer's notes C8-G9 are outside what this model plays here (C3-B5): "
        "they are moved down by octaves, to C5-G5."
    ]
    assert generator.generate(high).notices == notices
    in_range = GenerationRequest(primer=parse_primer("C4 E4 G4"), key=0, length_steps=48)
    assert generator.primer_notices(in_range) == []


def test_cli_generate_in_a_meter(checkpoints, tmp_path: Path, capsys):
    # A 6/8 jig from a MIDI primer in 6/8 with a pickup: --bars counts 6/8 bars (12 steps),
    # the files say 6/8; --time-signature overrides it.
    midi = pretty_midi.PrettyMIDI(initial_tempo=120)
    lead = pretty_midi.Instrument(0, name="Fiddle")
    step = 0.125
    lead.notes = [
        pretty_midi.Note(100, p, (10 + 2 * i) * step, (12 + 2 * i) * step)
        for i, p in enumerate([62, 66, 69, 74])
    ]
    midi.instruments.append(lead)
    midi.time_signature_changes = [pretty_midi.TimeSignature(6, 8, 0.0)]
    primer = tmp_path / "jig.mid"
    midi.write(str(primer))
    base = ["generate", "--checkpoint", str(checkpoints["basic_rnn"]), "--seed", "1"]
    assert (
        main([*base, "--primer-midi", str(primer), "--bars", "4", "--out", str(tmp_path / "a")])
        == 0
    )
    (file,) = (tmp_path / "a").glob("*.mid")
    written = pretty_midi.PrettyMIDI(str(file))
    assert [(t.numerator, t.denominator) for t in written.time_signature_changes] == [(6, 8)]
    assert written.instruments[0].notes[0].start == pytest.approx(10 * step)  # the pickup's beat
    out = capsys.readouterr().out
    assert "(48 steps" in out and "6/8 in" in out
    assert (
        main([*base, "--time-signature", "3/4", "--bars", "2", "--out", str(tmp_path / "b")]) == 0
    )
    (file,) = (tmp_path / "b").glob("*.mid")
    assert pretty_midi.PrettyMIDI(str(file)).time_signature_changes[0].numerator == 3
    assert "(24 steps" in capsys.readouterr().out


def test_leaving_the_primer_out_keeps_the_bar_lines_of_the_meter(generators):
    """A 3/4 primer of two beats, left out: the output starts at its bar line, the primer's
    beats silent, so what was generated on beat 3 stays on beat 3."""
    generator = generators["basic_rnn"]
    request = GenerationRequest(
        primer=parse_primer("3/4 D4 F4"), length_steps=36, num_outputs=3, seed=1
    )
    whole = generator.generate(request).melodies
    without = generator.generate(
        GenerationRequest(**{**request.__dict__, "include_primer": False})
    ).melodies
    for full, cut in zip(whole, without, strict=True):
        assert full.meter == cut.meter == Meter(3, 4) and full.primer_steps == 8
        assert cut.primer_steps == 0 and cut.steps == 36
        assert cut.events[:8] == [-2] * 8  # the primer's two beats, now silent
        tail = full.events[9:]
        assert cut.events[9:] == tail
        assert cut.events[8] == (-2 if full.events[8] == -1 else full.events[8])


def test_a_compiled_step_keeps_one_concrete_function_per_argument_shape():
    import tensorflow as tf

    from melodygen.core.generation import compile_step

    step = compile_step(lambda x, states: (x * 2.0, [state + x for state in states]))
    x, states = tf.ones((2, 3)), [tf.zeros((2, 3))]
    doubled, states = step(x, states)
    np.testing.assert_array_equal(doubled, np.full((2, 3), 2.0))
    _, states = step(x + 1.0, states)
    np.testing.assert_array_equal(states[0], np.full((2, 3), 3.0))
    step(tf.ones((4, 3)), [tf.zeros((4, 3))])
    assert len(step._concrete) == 2  # (2, 3) once, however often, and (4, 3)
    doubled, _ = step(np.ones((2, 3), np.float32), [np.zeros((2, 3), np.float32)])
    np.testing.assert_array_equal(doubled, np.full((2, 3), 2.0))  # NumPy: the tf.function
    assert len(step._concrete) == 2
