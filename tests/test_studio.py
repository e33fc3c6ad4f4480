"""The studio's library module, without Streamlit: catalog, primers, results as real files."""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import time
import wave
import zipfile
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from studio_fixtures import CARD, LEAD, cluster, drums_only, make_checkpoints, midi_file, song

from melodygen import studio
from melodygen.core.generation import GenerationError, GenerationRequest
from melodygen.errors import InputFileError, MelodyGenError
from melodygen.io.primer import PrimerError, parse_primer
from melodygen.render import SAMPLE_RATE, events_to_notes
from melodygen.theory import Meter


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    return make_checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(scope="module")
def model(checkpoints) -> studio.SharedModel:
    return studio.SharedModel(checkpoints / "folk_attention_rnn")


@pytest.fixture(scope="module")
def synth():
    synth, reason = studio.load_synth()
    assert synth is not None, reason
    return synth


@pytest.fixture(scope="module")
def result(model) -> studio.StudioResult:
    settings = studio.StudioSettings(bars=4, bpm=150, variations=3, seed=5, in_scale=True)
    return studio.generate(model, settings.to_request(parse_primer("C4 E4 G4 C5")))


# Catalog ------------------------------------------------------------------------------------


def test_catalog_reads_cards_and_works_out_what_is_missing(checkpoints, monkeypatch):
    monkeypatch.setenv(studio.CHECKPOINTS_ENV, str(checkpoints))
    assert studio.checkpoints_dir() == checkpoints
    entries = studio.discover_models()
    assert [e.name for e in entries] == ["folk_attention_rnn", "pop_basic_rnn"]
    folk, pop = entries
    assert (folk.style, folk.config, folk.description) == (
        "folk",
        "attention_rnn",
        CARD["description"],
    )
    assert folk.label == "Folk · attention_rnn" and folk.problems == ()
    # No card: style from the folder name, configuration from melodygen.json.
    assert (pop.style, pop.config) == ("pop", "basic_rnn")
    assert pop.description == "basic_rnn, 1x8 LSTM: no model card"  # as its family says
    assert (pop.family, pop.kind) == ("Melody RNN", "Melody RNN · basic_rnn")
    assert pop.problems == ("no card.json",)
    assert pop.stamp > 0


def test_a_styles_default_model_comes_first(tmp_path, checkpoints):
    """The release marks one model per style ``studio_default``: the pickers open with it."""
    for name, default in (("folk_attention_rnn", False), ("folk_zz_rnn", True)):
        folder = tmp_path / name
        folder.mkdir()
        for file in ("melodygen.json", "model.weights.h5"):
            (folder / file).write_bytes((checkpoints / "folk_attention_rnn" / file).read_bytes())
        card = {**CARD, "name": name, "config": name.removeprefix("folk_")}
        (folder / "card.json").write_text(
            json.dumps(card | ({"studio_default": True} if default else {}))
        )
    assert [e.name for e in studio.discover_models(tmp_path)] == [
        "folk_zz_rnn",
        "folk_attention_rnn",
    ]
    plain = {**CARD, "name": "folk_zz_rnn", "config": "zz_rnn"}  # no longer the default
    (tmp_path / "folk_zz_rnn" / "card.json").write_text(json.dumps(plain))
    assert [e.name for e in studio.discover_models(tmp_path)] == [
        "folk_attention_rnn",
        "folk_zz_rnn",
    ]


def test_catalog_survives_broken_cards_and_missing_folders(tmp_path, checkpoints):
    assert studio.discover_models(tmp_path / "absent") == []
    assert studio.discover_models(tmp_path) == []
    copy = tmp_path / "mine"
    copy.mkdir()
    for name in ("melodygen.json", "model.weights.h5"):
        (copy / name).write_bytes((checkpoints / "pop_basic_rnn" / name).read_bytes())
    (copy / "card.json").write_text("{not json")
    (entry,) = studio.discover_models(tmp_path)
    assert (entry.style, entry.config) == ("custom", "basic_rnn")
    assert "card.json could not be read" in entry.problems[0]


def test_card_facts_show_data_size_training_and_metrics(checkpoints, model):
    folk = studio.discover_models(checkpoints)[0]
    facts = studio.card_facts(folk)
    assert list(facts) == ["Data", "Model", "Training", "Held-out metrics", "Originality"]
    data = dict(facts["Data"])
    assert data["source"].startswith("Nottingham (GPL-3.0)")
    assert data["training melodies"] == "844"
    size = dict(facts["Model"])["size"]
    assert f"{model.generator.model.count_params():,} weights" in size
    assert dict(facts["Training"])["time"] == "1 h 30 min"
    assert dict(facts["Held-out metrics"])["perplexity (lower is better)"] == "1.510"
    assert dict(facts["Originality"]) == {
        "verdict": "ok",
        "melodies copying > 2 bars (held-out songs)": "4% (12%)",
        "longest copied run": "2.5 bars",
        "notes in key (held-out songs)": "93% (97%)",
        "notes per bar (held-out songs)": "5.10 (n/a)",
    }
    sized = dataclasses.replace(folk, card={**CARD, "size_bytes": 3 * 2**20, "parameters": 1234})
    assert dict(studio.card_facts(sized)["Model"])["size"] == "3.0 MB, 1,234 weights"
    bare = studio.card_facts(studio.discover_models(checkpoints)[1])
    assert list(bare) == ["Model"]  # nothing invented


def test_training_log_becomes_curves(checkpoints, tmp_path):
    records = studio.read_metrics(checkpoints / "folk_attention_rnn" / "metrics.jsonl")
    assert [(r["step"], r["split"]) for r in records][:3] == [
        (0, "eval"),
        (200, "train"),
        (200, "eval"),
    ]
    curves = studio.metric_curves(records)
    assert curves["nll"]["step"] == [0, 200, 400, 600]
    assert curves["nll"]["eval"][0] == 3.6
    assert curves["loss"] == {"step": [200, 400, 600], "train": [1.8, 1.6, 1.4]}
    assert "steps" not in curves and "seconds" not in curves
    # Flat lines with a split key, and junk lines, are read too.
    flat = tmp_path / "flat.jsonl"
    flat.write_text(
        '{"step": 10, "split": "train", "loss": 1.0}\nnot json\n[1]\n{"split": "eval"}\n'
        '{"step": 10, "split": "eval", "loss": 2.0}\n'
    )
    assert studio.metric_curves(studio.read_metrics(flat)) == {
        "loss": {"step": [10], "train": [1.0], "eval": [2.0]}
    }
    assert studio.read_metrics(tmp_path / "missing.jsonl") == []


def test_data_credits_name_each_source_once(checkpoints):
    entries = studio.discover_models(checkpoints)
    assert [s["name"] for s in studio.data_credits(entries + entries)] == ["Nottingham"]


# Settings -----------------------------------------------------------------------------------


def test_settings_become_a_checked_request():
    request = studio.StudioSettings(key="D", mode="dorian", bars=4, top_k=0, top_p=1.0).to_request(
        parse_primer("D4 F4")
    )
    assert (request.key, request.mode, request.length_steps) == (2, "dorian", 64)
    assert request.top_k is None and request.top_p is None
    assert isinstance(request.seed, int)  # drawn, so the page can show it
    auto = studio.StudioSettings(top_k=5, top_p=0.9, seed=3).to_request(parse_primer(""))
    assert (auto.key, auto.top_k, auto.top_p, auto.seed) == (None, 5, 0.9, 3)
    with pytest.raises(studio.StudioError, match="at least 3 bars"):
        studio.StudioSettings(bars=2).to_request(parse_primer("C4:16 D4:16"))
    with pytest.raises(GenerationError, match="temperature"):
        studio.StudioSettings(temperature=0).to_request(parse_primer(""))
    with pytest.raises(studio.StudioError, match="variations"):
        studio.StudioSettings(variations=9).to_request(parse_primer(""))


# Uploads ------------------------------------------------------------------------------------


def test_upload_lists_tracks_and_gives_a_primer():
    upload = studio.read_midi_upload("song.mid", song())
    assert [(t.name, t.is_drum, t.note_count) for t in upload.tracks] == [
        ("Drums", True, 8),
        ("Piano", False, 6),
        ("MELODY", False, 8),
    ]
    assert upload.usable == [1, 2]
    assert upload.notes == {0: "drums", 1: "chords: the top note of each is kept"}
    assert studio.default_track(upload) == 2
    assert studio.track_label(upload.tracks[2]) == "2: MELODY (Flute), 8 notes"

    primer = studio.upload_primer(upload, 2, bars=1)
    assert primer.pitches() == list(LEAD[0])
    assert primer.steps == 16 and primer.qpm == 100.0
    assert "song.mid" in primer.description
    whole = studio.upload_primer(upload, 2, bars=None)
    assert whole.pitches() == [*LEAD[0], *LEAD[1]]
    assert studio.upload_primer(upload, 1, bars=1).pitches() == [55]  # top note of the chord
    with pytest.raises(PrimerError, match="track 0 of song.mid cannot be used: drums"):
        studio.upload_primer(upload, 0, bars=1)


@pytest.mark.parametrize(
    ("name", "data", "error", "message"),
    [
        ("notes.txt", b"C4 E4", studio.StudioError, "only MIDI files"),
        ("big.mid", b"MThd" + bytes(studio.MAX_UPLOAD_BYTES), studio.StudioError, "at most 1 MB"),
        ("empty.mid", b"", studio.StudioError, "empty"),
        ("fake.mid", b"RIFX not a midi file", studio.StudioError, "not a MIDI file"),
        ("cut.mid", song()[:60], InputFileError, "cut.mid: the MIDI file is truncated"),
        ("drums.mid", drums_only(), PrimerError, "only drums"),
        ("dense.mid", cluster(), PrimerError, "more than 32 notes at once"),
        ("silent.mid", midi_file([("Empty", 0, False, [])]), PrimerError, "contains no notes"),
    ],
)
def test_bad_uploads_are_refused_with_a_reason(name, data, error, message):
    with pytest.raises(error, match=message) as caught:
        studio.read_midi_upload(name, data)
    assert "melodygen-upload" not in str(caught.value)  # the user's name, not a temp path
    assert isinstance(caught.value, MelodyGenError)


# Results ------------------------------------------------------------------------------------


def test_shared_model_serves_two_threads_at_once(model):
    requests = [GenerationRequest(length_steps=32, num_outputs=2, seed=s) for s in (1, 2)]
    expected = [[m.events for m in model.generate(r).melodies] for r in requests]
    got: dict[int, list] = {}

    def run(index: int) -> None:
        got[index] = [m.events for m in model.generate(requests[index]).melodies]

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [got[0], got[1]] == expected


def test_variations_render_to_png_midi_and_wav(result, synth):
    assert len(result.melodies) == 3
    files = result.files("Flute", synth)
    again = result.files("Flute", synth)
    assert all(a is b for a, b in zip(again, files, strict=True))  # made once per instrument
    for melody, item in zip(result.melodies, files, strict=True):
        assert melody.events[:16] == parse_primer("C4 E4 G4 C5").events
        assert item.png.startswith(b"\x89PNG\r\n\x1a\n")
        assert item.stem.startswith("melodygen_folk_attention_rnn_")
        midi = pretty_midi.PrettyMIDI(io.BytesIO(item.midi))
        assert midi.instruments[0].program == 73  # flute
        assert round(midi.get_tempo_changes()[1][0]) == 150
        expected = [(s, e, p) for s, e, p in events_to_notes(melody.events)]
        step = 60 / 150 / 4
        notes = sorted(
            (round(n.start / step), round(n.end / step), n.pitch) for n in midi.instruments[0].notes
        )
        assert notes == expected
        with wave.open(io.BytesIO(item.wav)) as reader:
            assert (reader.getnchannels(), reader.getframerate()) == (1, SAMPLE_RATE)
            frames = reader.getnframes()
            samples = np.frombuffer(reader.readframes(frames), dtype="<i2") / 32768.0
        # 4 bars of 4/4 at 150 BPM is 6.4 s, plus the 1-second release tail.
        assert frames == pytest.approx((6.4 + 1.0) * SAMPLE_RATE, abs=64)
        assert np.sqrt(np.mean(samples**2)) > 0.02  # real sound, not silence
        assert np.abs(samples[: int(6.4 * SAMPLE_RATE)]).max() > 0.5
    piano = result.files("Piano", synth)
    assert piano[0].wav != files[0].wav and piano[0].png == files[0].png


def test_variations_come_one_by_one_and_a_consumer_may_stop(result, synth):
    stream = studio.iter_variations(result, "Oboe", synth)
    first = next(stream)
    assert first.index == 0 and first.wav is not None and first.png.startswith(b"\x89PNG")
    stream.close()  # the page stopped (an error, a new click): nothing more is made
    items = result.iter_files("Oboe", synth)
    assert [next(items).index, next(items).index] == [0, 1]
    items.close()
    assert (68, True) not in result._files  # only complete sets are kept
    assert [item.index for item in result.iter_files("Oboe", synth)] == [0, 1, 2]
    assert (68, True) in result._files


class AnswersAtOnce:
    """An executor whose jobs are done by the time ``submit`` returns."""

    def submit(self, function, *arguments):
        done = Future()
        done.set_result(function(*arguments))
        return done


def test_a_render_job_done_before_its_callback_is_attached_does_not_hang_the_pool():
    """A worker may answer before the pool attaches its callback; the callback then runs
    in the submitting thread, which must not be holding the pool's lock (it did once:
    a page waited for ever)."""

    pool = studio.RenderPool(workers=1)
    pool._executor = AnswersAtOnce()
    answers: list = []
    worker = threading.Thread(
        target=lambda: answers.extend(pool.submit(len, (word,)).result() for word in ("ab", "abc"))
    )
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive() and answers == [2, 3]
    assert pool._running == 0 and not pool._waiting


def test_later_variations_wait_while_a_session_generates():
    """While any session generates (or waits for the model), only first variations are
    rendered: the generations get the cores, and every session hears something sooner."""
    pool = studio.RenderPool(workers=1)
    pool._executor = AnswersAtOnce()
    with pool.generating():
        later = pool.submit(len, ("abc",), priority=studio.URGENT)
        first = pool.submit(len, ("ab",), priority=0)
        assert first.result() == 2
        assert not later._future.done() and len(pool._waiting) == 1
    assert later._future.done() and later.result() == 3
    assert pool._running == 0 and not pool._waiting


def test_a_held_render_job_waits_no_longer_than_max_hold(monkeypatch):
    """Sessions that keep generating (or a generation that never ends) do not hold a
    page's later variations for ever: after MAX_HOLD they are rendered anyway."""
    monkeypatch.setattr(studio, "MAX_HOLD", 0.3)
    pool = studio.RenderPool(workers=1)
    pool._executor = AnswersAtOnce()
    with pool.generating():
        started = time.monotonic()
        later = pool.submit(len, ("abc",), priority=studio.URGENT + 1)
        assert not later._future.done()
        assert later._future.result(timeout=10) == 3  # released by the pool's timer
        assert time.monotonic() - started >= 0.3


def test_a_render_pool_makes_the_same_files_in_worker_processes(result, synth):
    """Worker processes (spawned, without TensorFlow) render byte for byte what the page's
    thread would, most urgent job first; a stopped run leaves nothing queued; a pool whose
    workers are gone still gives every file (made in the caller's thread)."""
    pool = studio.RenderPool(workers=1)
    try:
        pids = {future.result(timeout=120) for future in pool.start(synth)}
        assert pids and threading.get_native_id() not in pids
        here = studio.render_variations(result, "Cello", synth)
        there = studio.render_variations(result, "Cello", synth, pool=pool)
        for mine, theirs in zip(here, there, strict=True):
            for name in ("png", "midi", "wav", "abc", "musicxml", "notation_problem"):
                assert getattr(mine, name) == getattr(theirs, name), name
            # The same score; verovio numbers its elements afresh in each process.
            assert without_ids(mine.svg) == without_ids(theirs.svg)
        # The lowest priority goes first: a later session's first variation does not wait
        # behind an earlier session's last ones.
        order = []
        blocker = pool.submit(time_sleep, (0.5,))
        late = pool.submit(len, ("later",), priority=3)
        urgent = pool.submit(len, ("urgent!",), priority=0)
        for name, job in (("late", late), ("urgent", urgent)):
            job._future.add_done_callback(lambda _, name=name: order.append(name))
        blocker.result()
        assert (urgent.result(), late.result()) == (7, 5) and order == ["urgent", "late"]
        stream = studio.iter_variations(result, "Cello", synth, pool=pool)
        next(stream)
        stream.close()
        assert all(job[3].cancelled() for job in pool._waiting)  # skipped, never run
    finally:
        pool.close()
    # Closed (or broken): the caller's thread makes the files instead.
    again = studio.render_variations(result, "Cello", synth, pool=pool)
    assert [item.wav for item in again] == [item.wav for item in here]


def without_ids(svg: str) -> str:
    import re

    ids = sorted(set(re.findall(r'id="([^"]+)"', svg)), key=len, reverse=True)
    return re.sub("|".join(map(re.escape, ids)), "", svg) if ids else svg


def time_sleep(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


def test_without_audio_the_rest_still_renders(result):
    files = studio.render_variations(result, "Piano", None)
    assert all(item.wav is None and item.midi.startswith(b"MThd") for item in files)


def test_download_all_zip_holds_every_file_and_the_settings(result, synth):
    archive = zipfile.ZipFile(io.BytesIO(result.zip("Piano", synth)))
    names = archive.namelist()
    stems = [item.stem for item in result.files("Piano", synth)]
    extensions = ("mid", "png", "wav", "abc", "musicxml")
    assert names == [f"{s}.{ext}" for s in stems for ext in extensions] + ["settings.json"]
    assert archive.read(names[1]) == result.files("Piano", synth)[0].png
    settings = json.loads(archive.read("settings.json"))
    assert settings["key"] == "C major" and settings["key_source"] == "estimated"
    assert settings["request"]["key"] == "Auto" and settings["time_signature"] == "4/4"
    assert settings["seed"] == 5 and settings["model"] == "folk_attention_rnn"
    assert settings["instrument"] == "Piano"
    assert settings["primer"]["notes"] == "C4 E4 G4 C5"
    assert settings["request"]["length_steps"] == 64
    assert archive.read(names[0]) == result.files("Piano", synth)[0].midi
    assert result.archive_name == stems[0].rsplit("_", 1)[0] + ".zip"


@pytest.mark.parametrize(("key", "mode"), [("Auto", "major"), ("F#", "minor"), ("Bb", "dorian")])
def test_continue_turns_a_result_into_the_next_primer(model, key, mode):
    settings = studio.StudioSettings(key=key, mode=mode, bars=4, variations=4, seed=21)
    first = studio.generate(model, settings.to_request(parse_primer("A3 C4 E4 A4")))
    for index, melody in enumerate(first.melodies):
        follow = studio.continuation(first, index)
        assert follow.bars == 8  # 4 bars, plus at least 4 more
        # Auto: the primer's key and mode (A minor, estimated from its notes).
        assert follow.mode == (mode if key != "Auto" else "minor") and follow.key is not None
        if key != "Auto":
            assert follow.key == key
        primer = parse_primer(follow.text)
        assert primer.steps == melody.steps
        assert events_to_notes(primer.events) == events_to_notes(melody.events)
        # In the key it came from, the engine keeps every note of the primer where it was
        # (in another key it may fold notes near the model's range by an octave).
        again = studio.StudioSettings(key=follow.key, mode=follow.mode, bars=follow.bars, seed=1)
        (grown,) = studio.generate(model, again.to_request(primer)).melodies[:1]
        assert grown.steps == 128 and grown.primer_steps == 64
        assert events_to_notes(grown.events[:64]) == events_to_notes(melody.events)
    assert studio.continuation(first, 0, max_bars=6).bars == 6  # capped
    with pytest.raises(studio.StudioError, match="already 4 bars long, the most"):
        studio.continuation(first, 0, max_bars=4)


def test_primer_preview_and_missing_soundfont(monkeypatch, tmp_path):
    assert studio.primer_png(parse_primer("C4 D4 E4")).startswith(b"\x89PNG")
    # The preview shows the tempo and meter the run will use, in the primer's key.
    roll = studio.primer_roll(parse_primer("D4 F4 A4 Bb4"), qpm=90, meter=Meter(3, 4)).axes[0]
    assert roll.get_xlabel() == "bar (3/4, 90 BPM)"
    assert "Bb4" in [t.get_text() for t in roll.get_yticklabels()]
    monkeypatch.setenv("MELODYGEN_SOUNDFONT", str(tmp_path / "none.sf2"))
    synth, reason = studio.load_synth()
    assert synth is None and "SoundFont not found" in reason


# Meter, key, notices, warnings, downloads ---------------------------------------------------


def test_length_in_bars_follows_the_meter_and_limits_are_said_up_front():
    waltz = parse_primer("3/4 D4 F#4 A4")
    request = studio.StudioSettings(bars=4).to_request(waltz)  # From primer: 3/4
    assert (request.length_steps, request.meter) == (48, Meter(3, 4))
    jig = studio.StudioSettings(bars=4, meter="6/8").to_request(parse_primer("D4 F#4 A4"))
    assert (jig.length_steps, str(jig.meter)) == (48, "6/8")
    march = studio.StudioSettings(bars=8, meter="2/4").to_request(parse_primer(""))
    assert march.length_steps == 64 and studio.METER_CHOICES[1:] == ["4/4", "3/4", "6/8", "2/4"]
    # A 188-bar primer: the limit is said next to the primer, in bars a musician can set.
    long = parse_primer("C4:16 " * 188)
    settings = studio.StudioSettings(bars=64)
    problem = studio.primer_problem(long, settings)
    assert problem == (
        "this primer is 188 bars of 4/4 long, and the studio makes melodies of at most "
        "64 bars, primer included: use at most 63 bars of it"
    )
    with pytest.raises(studio.StudioError, match="use at most 63 bars of it"):
        settings.to_request(long)
    assert studio.primer_problem(parse_primer("C4:16"), settings) is None
    with pytest.raises(studio.StudioError, match=r"primer is 1 bar long, .* in 1 bar: .* 2 bars$"):
        studio.StudioSettings(bars=1).to_request(parse_primer("C4:16"))
    with pytest.raises(studio.StudioError, match=r"lowest note \(C5\) is above the highest \(C4\)"):
        studio.StudioSettings(min_pitch=72, max_pitch=60).to_request(parse_primer(""))


def test_primer_notices_and_result_warnings_reach_the_page(model):
    settings = studio.StudioSettings(key="C", bars=4, variations=2, seed=1)
    high = parse_primer("C8 E8 G8 C9 G9")
    (notice,) = studio.primer_notices(model, high, settings)
    assert notice.startswith("The primer's notes C8-G9 are outside what this model plays")
    assert studio.primer_notices(model, parse_primer("C4 E4"), settings) == []
    result = studio.generate(model, settings.to_request(high))
    assert result.notices == [notice] and result.warnings == []
    greedy = dataclasses.replace(settings, top_k=1)
    warned = studio.generate(model, greedy.to_request(parse_primer("C4 E4")))
    assert warned.warnings and warned.warnings[0].startswith("Top-k 1 ")
    assert studio.generate(model, settings.to_request(parse_primer(""))).melodies[0].events[0] >= 0


def test_midi_download_names_its_track_and_carries_meter_and_key(model):
    settings = studio.StudioSettings(key="G", bars=4, variations=1, seed=2, meter="3/4")
    result = studio.generate(model, settings.to_request(parse_primer("G4 B4 D5")))
    (item,) = studio.render_variations(result, "Violin", None)
    midi = pretty_midi.PrettyMIDI(io.BytesIO(item.midi))
    assert midi.instruments[0].name == "MelodyGen folk_attention_rnn variation 1"
    assert [(t.numerator, t.denominator) for t in midi.time_signature_changes] == [(3, 4)]
    assert [k.key_number for k in midi.key_signature_changes] == [7]  # G major
    assert result.settings()["key"] == "G major" and result.settings()["bars"] == 4
    assert result.key_name == "G major"


def test_musicxml_uploads_are_read_and_other_kinds_say_why_not(tmp_path):
    from music21 import key, meter, note, stream

    part = stream.Part()
    part.partName = "Fiddle"
    part.append([meter.TimeSignature("6/8"), key.KeySignature(-1)])
    part.append([note.Note(p, quarterLength=0.5) for p in ["F4", "A4", "C5", "F5", "C5", "A4"] * 2])
    path = Path(stream.Score([part]).write("mxl", str(tmp_path / "jig.mxl")))
    upload = studio.read_upload("jig.mxl", path.read_bytes())
    assert upload.name == "jig.mxl" and upload.usable == [0]
    primer = studio.upload_primer(upload, 0, bars=1)
    assert primer.meter == Meter(6, 8) and primer.steps == 12
    assert primer.key_label() == "F major (from the file's key signature)"
    assert primer.description == "bar 1 of track 0 'Fiddle' in jig.mxl"
    with pytest.raises(studio.StudioError, match="recorded sound, and MelodyGen reads notes"):
        studio.read_upload("take.wav", b"RIFF0000WAVEfmt ")
    with pytest.raises(PrimerError, match="not a readable MusicXML file"):
        studio.read_upload("broken.musicxml", b"<score-partwise><part>")
    assert studio.read_upload("song.mid", song()).usable == [1, 2]


def test_continue_a_waltz_keeps_its_meter_and_key_spelling(model):
    settings = studio.StudioSettings(key="F", bars=4, variations=1, seed=8)
    first = studio.generate(model, settings.to_request(parse_primer("3/4 F4 A4 C5 | Bb4:12")))
    follow = studio.continuation(first, 0)
    assert follow.meter == "3/4" and follow.text.startswith("3/4 ")
    assert "A#" not in follow.text  # F major is written with flats
    primer = parse_primer(follow.text)
    assert primer.meter == Meter(3, 4) and primer.events == first.melodies[0].events
    assert follow.bars == 8  # 4 bars of 3/4, plus 4 more
