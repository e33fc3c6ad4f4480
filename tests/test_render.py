"""Rendering: real audio from the bundled SoundFont, WAV files, and piano-roll pictures."""

from __future__ import annotations

import ctypes.util
import io
import sys
import threading
import wave

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from melodygen import render
from melodygen.core.generation import GeneratedMelody
from melodygen.errors import MelodyGenError
from melodygen.theory import Meter

RATE = render.SAMPLE_RATE
HOLD, OFF = -2, -1

# Three 4/4 bars at 16 steps each: four quarter notes (each sounding three steps), a bar
# of rest, then a half note and two quarter notes held to the end.
BAR_1 = [60, HOLD, HOLD, OFF, 64, HOLD, HOLD, OFF, 67, HOLD, HOLD, OFF, 72, HOLD, HOLD, OFF]
BAR_2 = [HOLD] * 16
BAR_3 = [72] + [HOLD] * 7 + [67] + [HOLD] * 3 + [64] + [HOLD] * 3
EVENTS = BAR_1 + BAR_2 + BAR_3


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


def seconds(start: float, end: float) -> slice:
    return slice(int(start * RATE), int(end * RATE))


def onset_after(samples: np.ndarray, time: float, threshold: float = 0.05) -> float:
    """Time of the first sample at or after ``time`` louder than ``threshold``."""
    start = int(time * RATE)
    return (start + int(np.argmax(np.abs(samples[start:]) > threshold))) / RATE


@pytest.fixture(scope="module")
def synth() -> render.Synth:
    ok, reason = render.audio_available()
    assert ok, reason
    return render.Synth()


@pytest.fixture(scope="module")
def piano(synth: render.Synth) -> np.ndarray:
    return synth.render(EVENTS, program=0, qpm=120)


def test_soundfont_is_bundled_small_and_licensed() -> None:
    assert render.DEFAULT_SOUNDFONT.is_file()
    assert render.DEFAULT_SOUNDFONT.stat().st_size < 20 * 2**20
    folder = render.DEFAULT_SOUNDFONT.parent
    assert "GNU GENERAL PUBLIC LICENSE" in (folder / "COPYING").read_text()
    assert "TimGM6mb" in (folder / "README.md").read_text()
    ok, reason = render.audio_available()
    assert ok and "TimGM6mb.sf2" in reason


def test_melody_sounds_for_its_length_and_rests_are_silent(piano: np.ndarray) -> None:
    length = len(EVENTS) * 0.125  # 48 sixteenths at 120 BPM: 6 seconds
    assert piano.dtype == np.float32 and piano.ndim == 1
    assert len(piano) == round((length + render.RELEASE_SECONDS) * RATE)
    assert np.abs(piano).max() <= 1.0
    loud = rms(piano[seconds(0.0, 1.9)])
    assert loud > 0.05
    # The last note of bar 1 stops at 1.875 s; bar 2 is a rest. Once the release has
    # decayed, the rest is close to silent, until bar 3 starts at 4 s.
    assert rms(piano[seconds(2.6, 3.95)]) < 0.01 * loud
    assert onset_after(piano, 2.6) == pytest.approx(4.0, abs=0.01)
    # The last bar sounds until the melody ends, then only the release tail remains.
    assert rms(piano[seconds(5.0, 6.0)]) > 0.2 * loud
    assert rms(piano[-int(0.2 * RATE) :]) < 0.05 * loud


def test_tempo_scales_duration_and_timing(synth: render.Synth, piano: np.ndarray) -> None:
    slow = synth.render(EVENTS, program=0, qpm=60)
    assert len(slow) == round((len(EVENTS) * 0.25 + render.RELEASE_SECONDS) * RATE)
    assert len(slow) - len(piano) == round(6.0 * RATE)
    # Bar 3 starts at 4 s at 120 BPM and at 8 s at 60 BPM.
    assert onset_after(slow, 5.2) == pytest.approx(8.0, abs=0.01)
    assert rms(slow[seconds(5.2, 7.9)]) < 0.01 * rms(slow[seconds(0.0, 3.8)])


def test_instruments_sound_different(synth: render.Synth, piano: np.ndarray) -> None:
    flute = synth.render(EVENTS, program="Flute", qpm=120)
    lead = synth.render(EVENTS, program=render.INSTRUMENTS["Lead synth"], qpm=120)
    strings = synth.render(EVENTS, program=48, qpm=120)
    for other in (flute, lead, strings):
        assert other.shape == piano.shape
        assert rms(other) > 0.02
        assert abs(np.corrcoef(piano, other)[0, 1]) < 0.5
    assert abs(np.corrcoef(flute, lead)[0, 1]) < 0.5


def test_reused_synth_gives_identical_audio(synth: render.Synth, piano: np.ndarray) -> None:
    synth.render(BAR_3 + BAR_1, program=48, qpm=97)  # leaves nothing behind
    again = synth.render(EVENTS, program=0, qpm=120)
    np.testing.assert_array_equal(again, piano)


def test_concurrent_renders_match_serial_ones(synth: render.Synth, piano: np.ndarray) -> None:
    results: dict[int, np.ndarray] = {}

    def work(index: int) -> None:
        results[index] = synth.render(EVENTS, program=0 if index % 2 == 0 else 73, qpm=120)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flute = synth.render(EVENTS, program=73, qpm=120)
    for index, samples in results.items():
        np.testing.assert_array_equal(samples, piano if index % 2 == 0 else flute)


def test_generated_melody_and_note_sequence_render_alike(synth: render.Synth) -> None:
    melody = GeneratedMelody(events=EVENTS, primer_steps=16, log_likelihood=0.0, qpm=150.0)
    from_melody = render.render_audio(melody, program="Piano", synth=synth)
    assert len(from_melody) == round((len(EVENTS) * 0.1 + render.RELEASE_SECONDS) * RATE)
    np.testing.assert_array_equal(from_melody, synth.render(EVENTS, qpm=150))
    sequence = melody.to_note_sequence()
    from_sequence = synth.render(sequence)
    assert sequence.total_time == pytest.approx(len(EVENTS) * 0.1)  # the last note ends it
    np.testing.assert_allclose(from_sequence, from_melody, atol=1e-6)


def test_stereo_and_unnormalized(synth: render.Synth, piano: np.ndarray) -> None:
    stereo = synth.render(EVENTS, qpm=120, stereo=True)
    assert stereo.shape == (len(piano), 2)
    assert np.corrcoef(stereo.mean(axis=1), piano)[0, 1] > 0.9999  # the same mix, in stereo
    raw = synth.render(EVENTS, qpm=120, normalize=False)
    assert 0 < np.abs(raw).max() < 1.0
    np.testing.assert_allclose(raw / np.abs(raw).max() * render.PEAK_LEVEL, piano, atol=1e-5)


def test_wav_bytes_parse_back(piano: np.ndarray, tmp_path) -> None:
    data = render.wav_bytes(piano, RATE)
    with wave.open(io.BytesIO(data)) as reader:
        assert reader.getnchannels() == 1
        assert reader.getsampwidth() == 2
        assert reader.getframerate() == RATE
        assert reader.getnframes() == len(piano)
        frames = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    np.testing.assert_allclose(frames / 32767.0, piano, atol=1 / 32767)

    stereo = np.stack([piano, -piano], axis=1)
    path = render.write_wav(tmp_path / "out" / "tune.wav", stereo, 22050)
    with wave.open(str(path)) as reader:
        assert (reader.getnchannels(), reader.getframerate()) == (2, 22050)
        assert reader.getnframes() == len(piano)

    ints = (piano * 1000).astype(np.int16)
    with wave.open(io.BytesIO(render.wav_bytes(ints))) as reader:
        assert np.array_equal(np.frombuffer(reader.readframes(len(ints)), "<i2"), ints)


def test_bad_requests_say_what_is_wrong(synth: render.Synth) -> None:
    assert render.program_number("flute") == 73
    assert render.program_number("48") == 48
    with pytest.raises(render.RenderError, match="unknown instrument 'kazoo'"):
        synth.render(EVENTS, program="kazoo")
    with pytest.raises(render.RenderError, match="0-127"):
        synth.render(EVENTS, program=128)
    with pytest.raises(render.RenderError, match="out of range"):
        synth.render([60, 200])
    with pytest.raises(render.RenderError, match="tempo"):
        synth.render(EVENTS, qpm=0)


def test_events_to_notes_reads_events_as_note_seq_does() -> None:
    from melodygen.io.music import note_seq

    events = [HOLD, 60, HOLD, 62, OFF, HOLD, 62, 62, HOLD, OFF, 70, HOLD]
    expected = [
        (round(n.start_time / 0.125), round(n.end_time / 0.125), n.pitch)
        for n in note_seq.Melody(events).to_sequence(qpm=120).notes
    ]
    assert render.events_to_notes(events) == expected
    assert render.events_to_notes([]) == []


# Audio unavailable ---------------------------------------------------------------------------


@pytest.fixture
def no_fluidsynth(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without libfluidsynth: pyfluidsynth's own import fails as it would there."""
    monkeypatch.setattr(render, "_FLUID", None)
    monkeypatch.setattr(render, "_DEFAULT_SYNTH", None)
    monkeypatch.delitem(sys.modules, "fluidsynth", raising=False)
    monkeypatch.delenv("HOMEBREW_PREFIX", raising=False)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)


def test_missing_library_is_reported_not_raised(no_fluidsynth: None) -> None:
    ok, reason = render.audio_available()
    assert not ok
    assert reason == render.LIBRARY_MISSING
    assert "install the Debian package fluidsynth" in reason
    for attempt in (
        lambda: render.Synth(),
        lambda: render.render_audio(EVENTS),
        lambda: render.default_synth(),
    ):
        with pytest.raises(render.AudioUnavailableError) as caught:
            attempt()
        assert str(caught.value) == reason
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert issubclass(render.AudioUnavailableError, MelodyGenError)
    # Pictures and WAV files need no FluidSynth.
    assert render.figure_png(render.piano_roll(EVENTS)).startswith(b"\x89PNG\r\n\x1a\n")
    assert render.wav_bytes(np.zeros(10, np.float32))[:4] == b"RIFF"


def test_missing_or_bad_soundfont(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nothing.sf2"
    ok, reason = render.audio_available(missing)
    assert not ok and reason.startswith(f"SoundFont not found: {missing}")
    with pytest.raises(render.AudioUnavailableError, match="SoundFont not found"):
        render.Synth(soundfont=missing)

    monkeypatch.setenv(render.SOUNDFONT_ENV, str(missing))
    ok, reason = render.audio_available()
    assert not ok and render.SOUNDFONT_ENV in reason

    fake = tmp_path / "fake.sf2"
    fake.write_bytes(b"RIFF\0\0\0\0WAVEjunk")
    monkeypatch.setenv(render.SOUNDFONT_ENV, str(fake))
    with pytest.raises(render.AudioUnavailableError, match="is not a SoundFont"):
        render.Synth()


def test_soundfont_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(render.SOUNDFONT_ENV, str(render.DEFAULT_SOUNDFONT))
    assert render.resolve_soundfont() == render.DEFAULT_SOUNDFONT


# Piano roll ---------------------------------------------------------------------------------


def test_piano_roll_shows_primer_and_generated_notes_apart() -> None:
    melody = GeneratedMelody(events=EVENTS, primer_steps=16, log_likelihood=0.0, qpm=120.0)
    fig = render.piano_roll(melody, title="Melody 1")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    collections = {c.get_gid(): c for c in ax.collections if isinstance(c, PolyCollection)}
    assert set(collections) == {"primer", "generated"}
    assert len(collections["primer"].get_paths()) == 4  # the four notes of bar 1
    assert len(collections["generated"].get_paths()) == 3
    primer_colour = tuple(collections["primer"].get_facecolor()[0])
    generated_colour = tuple(collections["generated"].get_facecolor()[0])
    assert primer_colour != generated_colour
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["primer", "generated"]

    labels = [tick.get_text() for tick in ax.get_yticklabels()]
    assert set(labels) == {"C4", "E4", "G4", "C5"}
    low, high = ax.get_ylim()
    assert low < 60 and high > 72 and high - low < 20  # the range used, padded a little
    assert ax.get_xlim() == (1.0, 4.0)  # three bars, numbered from 1
    assert "120 BPM" in ax.get_xlabel()
    assert ax.get_title(loc="left") == "Melody 1"

    png = render.figure_png(fig)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 5000


def test_piano_roll_of_plain_events_and_of_silence() -> None:
    fig = render.piano_roll(BAR_3, qpm=90)
    ax = fig.axes[0]
    gids = [c.get_gid() for c in ax.collections if isinstance(c, PolyCollection)]
    assert gids == ["generated"]
    assert ax.get_legend() is None
    assert "90 BPM" in ax.get_xlabel()
    empty = render.piano_roll([HOLD] * 8)
    assert render.figure_png(empty).startswith(b"\x89PNG")


def test_figure_png_closes_pyplot_figures() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    fig = plt.figure()
    fig.add_subplot().plot([0, 1], [0, 1])
    assert len(plt.get_fignums()) == before + 1
    assert render.figure_png(fig).startswith(b"\x89PNG")
    assert len(plt.get_fignums()) == before
    render.figure_png(render.piano_roll(EVENTS))
    assert len(plt.get_fignums()) == before  # piano rolls never join pyplot's list


def test_piano_roll_is_readable_at_the_size_it_is_shown() -> None:
    # 16 bars over more than three octaves, shown 425 px wide (two cards in a row).
    rng = np.random.default_rng(3)
    events = [int(p) if i % 2 == 0 else HOLD for i, p in enumerate(rng.integers(48, 90, 256))]
    melody = GeneratedMelody(events=events, primer_steps=32, log_likelihood=0.0, qpm=120.0)
    fig = render.piano_roll(melody, title="Variation 1")
    renderer = fig.canvas.get_renderer()
    scale = 425 / fig.bbox.width  # displayed size per figure pixel at the figure's dpi
    ax = fig.axes[0]
    for labels in (ax.get_yticklabels(), ax.get_xticklabels()):
        boxes = [label.get_window_extent(renderer) for label in labels if label.get_text()]
        assert len(boxes) >= 2
        assert min(box.height for box in boxes) * scale >= 11  # pixels on screen
        for first, second in zip(boxes, boxes[1:], strict=False):
            assert not first.overlaps(second)
    assert ax.xaxis.label.get_window_extent(renderer).height * scale >= 11
    png = render.figure_png(fig)
    width = int.from_bytes(png[16:20], "big")
    assert width >= 2 * 425  # sharp on high-density screens


def test_piano_roll_follows_the_meter_key_and_tempo() -> None:
    # 4 bars of 3/4 (12 steps each) in D minor: B flat, and the leading tone C sharp.
    events = [65, HOLD, 70, HOLD, 61, HOLD, 65] + [HOLD] * 41
    melody = GeneratedMelody(
        events=events,
        primer_steps=0,
        log_likelihood=0.0,
        qpm=96.0,
        meter=Meter(3, 4),
        key=2,
        mode="minor",
    )
    ax = render.piano_roll(melody).axes[0]
    assert ax.get_xlim() == (1.0, 5.0)
    assert ax.get_xlabel() == "bar (3/4, 96 BPM)"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["C#4", "F4", "Bb4"]
    sharps = render.piano_roll(events, meter=Meter(6, 8), key=4).axes[0]  # E major
    assert [t.get_text() for t in sharps.get_yticklabels()] == ["C#4", "F4", "A#4"]
    assert sharps.get_xlim() == (1.0, 5.0) and "6/8" in sharps.get_xlabel()
