"""Rendering melodies for people: piano-roll pictures and audio.

Audio comes from FluidSynth (through pyfluidsynth) and a General MIDI SoundFont,
rendered offline to a NumPy array: no sound card, no audio driver, no temporary
files. A :class:`Synth` loads the SoundFont once and renders any number of
melodies, one at a time under a lock, so one instance can serve every session of
the web app. Each render runs on a fresh, lightweight FluidSynth engine that
shares the loaded SoundFont. A reused engine keeps the previous render's reverb
tail and voice state, so the same melody would not sound the same twice.

Audio is optional. Without the FluidSynth library or the SoundFont, the rest of
MelodyGen still works: :func:`audio_available` says why audio is missing, and
every audio entry point raises :class:`AudioUnavailableError` with that reason.

Piano rolls use Matplotlib's Agg canvas directly (never pyplot's global figure
list), so rendering works without a display and figures do not pile up in a
long-running server.
"""

from __future__ import annotations

import ctypes
import importlib
import io
import math
import os
import sys
import threading
import wave
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from melodygen.errors import MelodyGenError
from melodygen.theory import FOUR_FOUR, STEPS_PER_QUARTER, Meter, pitch_name

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from melodygen.core.form import Section
    from melodygen.core.generation import GeneratedMelody

__all__ = [
    "DEFAULT_SOUNDFONT",
    "GENERATED_COLOUR",
    "INSTRUMENTS",
    "PRIMER_COLOUR",
    "SAMPLE_RATE",
    "SOUNDFONT_ENV",
    "AudioUnavailableError",
    "Note",
    "RenderError",
    "Synth",
    "audio_available",
    "default_synth",
    "events_to_notes",
    "figure_png",
    "in_order",
    "note_name",
    "piano_roll",
    "program_number",
    "render_audio",
    "resolve_soundfont",
    "wav_bytes",
    "write_wav",
]

SAMPLE_RATE = 44100
DISPLAY_PPI = 100
"""Screen pixels per figure inch a piano roll is designed for: ``width=4.25`` is a
picture shown 425 px wide, where 9-point text is 12.5 px high."""
PNG_DPI = 2 * DISPLAY_PPI
"""PNG pixels per inch: twice the display density, sharp on high-density screens."""
DEFAULT_QPM = 120.0
DEFAULT_VELOCITY = 100
# Seconds rendered after the melody's last step, so the last note can ring and decay.
RELEASE_SECONDS = 1.0
# The end of the release tail fades out over this long, so a cut reverb never clicks.
FADE_SECONDS = 0.1
# Peak level of normalized audio: -1 dBFS leaves headroom for lossy encoders.
PEAK_LEVEL = 0.89
# FluidSynth computes audio in blocks of 64 samples and applies MIDI events between
# blocks; events are placed on block boundaries (1.5 ms at 44.1 kHz) so every render
# starts aligned and the same input gives the same samples.
_BLOCK = 64
_MELODY_CHANNEL = 0
_DRUM_CHANNEL = 9
_FLUID_OK = 0
_FLUID_WARN = 2
_REVERB_SEND = 40  # MIDI CC 91: a little room around the melody
_CHORUS_SEND = 0  # MIDI CC 93: chorus smears a solo line

SOUNDFONT_ENV = "MELODYGEN_SOUNDFONT"
DEFAULT_SOUNDFONT = Path(__file__).resolve().parent.parent / "soundfonts" / "TimGM6mb.sf2"

LIBRARY_MISSING = (
    "FluidSynth library not found: install the Debian package fluidsynth (make run does it)"
)
PYFLUIDSYNTH_MISSING = (
    "the Python package pyfluidsynth is not installed: pip install -r requirements.txt"
)

# Musician-friendly names for General MIDI programs (0-based), for menus and the CLI.
INSTRUMENTS: dict[str, int] = {
    "Piano": 0,
    "Bright piano": 1,
    "Electric piano": 4,
    "Harpsichord": 6,
    "Music box": 10,
    "Vibraphone": 11,
    "Marimba": 12,
    "Organ": 16,
    "Church organ": 19,
    "Accordion": 21,
    "Harmonica": 22,
    "Nylon guitar": 24,
    "Steel guitar": 25,
    "Electric guitar": 27,
    "Bass": 33,
    "Violin": 40,
    "Cello": 42,
    "Pizzicato strings": 45,
    "Harp": 46,
    "Strings": 48,
    "Choir": 52,
    "Trumpet": 56,
    "French horn": 60,
    "Brass section": 61,
    "Alto sax": 65,
    "Oboe": 68,
    "Clarinet": 71,
    "Flute": 73,
    "Recorder": 74,
    "Pan flute": 75,
    "Ocarina": 79,
    "Lead synth": 80,
    "Saw lead": 81,
    "Warm pad": 89,
    "Kalimba": 108,
    "Steel drums": 114,
}


class RenderError(MelodyGenError):
    """A rendering request that cannot be carried out as asked (bad program, bad events)."""


class AudioUnavailableError(RenderError):
    """Audio cannot be rendered on this machine; the message says what is missing and the fix."""


# Notes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    """One note to sound, in seconds: the common ground of melodies and NoteSequences."""

    pitch: int
    start: float
    end: float
    velocity: int = DEFAULT_VELOCITY
    is_drum: bool = False


def note_name(pitch: int, key: int | None = None, mode: str = "major") -> str:
    """Scientific pitch name (60 -> C4), as the primer note syntax writes it: sharps, or
    spelled in ``key`` and ``mode`` when given (70 is Bb4 in D minor, A#4 in E major)."""
    return pitch_name(pitch, key, mode)


def events_to_notes(events: Sequence[int]) -> list[tuple[int, int, int]]:
    """Melody events as ``(start_step, end_step, pitch)`` notes, as ``note_seq.Melody`` reads them.

    A note lasts until the next note-on or note-off; one still sounding at the end lasts
    to the end of the events.
    """
    notes: list[tuple[int, int, int]] = []
    current: tuple[int, int] | None = None  # (start step, pitch)
    for step, event in enumerate(events):
        event = int(event)
        if event < -2 or event > 127:
            raise RenderError(
                f"event {step} ({event}) is out of range: events are MIDI pitches 0-127, "
                "-1 (note-off) or -2 (no event)"
            )
        if event == -2:
            continue
        if current is not None:
            notes.append((current[0], step, current[1]))
            current = None
        if event >= 0:
            current = (step, event)
    if current is not None:
        notes.append((current[0], len(events), current[1]))
    return notes


def _step_seconds(qpm: float) -> float:
    if not qpm > 0 or not math.isfinite(qpm):
        raise RenderError(f"tempo must be above 0 BPM (got {qpm})")
    return 60.0 / qpm / STEPS_PER_QUARTER


def _melody_parts(
    music: GeneratedMelody | Sequence[int], primer_steps: int | None, qpm: float | None
) -> tuple[list[int], int, float]:
    """Events, primer length and tempo of a GeneratedMelody or a plain event list."""
    if hasattr(music, "events"):
        events = [int(e) for e in music.events]
        primer = music.primer_steps if primer_steps is None else primer_steps
        tempo = float(music.qpm) if qpm is None else float(qpm)
    else:
        events = [int(e) for e in music]
        primer = primer_steps or 0
        tempo = DEFAULT_QPM if qpm is None else float(qpm)
    return events, max(0, int(primer)), tempo


def _notes_and_length(music: Any, qpm: float | None, velocity: int) -> tuple[list[Note], float]:
    """Notes in seconds and the music's length: a melody's full step count, or a sequence's end.

    A GeneratedMelody whose family made it as a NoteSequence finer than the grid (its
    ``source``: triplets, velocities) is heard as that sequence; others from their events.
    """
    if getattr(music, "source", None) is not None and hasattr(music, "to_note_sequence"):
        music = music.to_note_sequence()
    if hasattr(music, "notes") and hasattr(music, "total_time"):  # a note_seq NoteSequence
        notes = [
            Note(int(n.pitch), float(n.start_time), float(n.end_time), int(n.velocity), n.is_drum)
            for n in music.notes
        ]
        length = max([float(music.total_time)] + [n.end for n in notes])
        return notes, length
    events, _, tempo = _melody_parts(music, None, qpm)
    step = _step_seconds(tempo)
    notes = [
        Note(pitch, start * step, end * step, velocity)
        for start, end, pitch in events_to_notes(events)
    ]
    return notes, len(events) * step


IN_ORDER_GAP_SECONDS = 1.0
"""Silence between two melodies played in order (:func:`in_order`): enough to hear where
one ends and the next begins, short enough to hear them as a sequence."""


def in_order(
    melodies: Sequence[GeneratedMelody | Any], gap_seconds: float = IN_ORDER_GAP_SECONDS
) -> Any:
    """Melodies one after the other as one NoteSequence, ``gap_seconds`` of silence between
    them: a blend's steps heard in order, as one audio or MIDI file.

    Each melody (a GeneratedMelody, heard as its own sequence with its velocities, or a
    NoteSequence) starts where the one before ends (its total time, rests at the end
    included) plus the gap. Tempo, meter and key are the first melody's; notes keep their
    times in seconds, so a later melody at another tempo sounds as it did alone.
    """
    from melodygen.io.music import note_seq

    if not math.isfinite(gap_seconds) or gap_seconds < 0:
        raise RenderError(f"the gap between melodies must be 0 s or more (got {gap_seconds})")
    sequences = [
        melody.to_note_sequence() if hasattr(melody, "to_note_sequence") else melody
        for melody in melodies
    ]
    if not sequences:
        raise RenderError("no melodies to play in order")
    joined = note_seq.NoteSequence()
    joined.ticks_per_quarter = sequences[0].ticks_per_quarter or note_seq.STANDARD_PPQ
    joined.tempos.extend(sequences[0].tempos[:1])
    joined.time_signatures.extend(sequences[0].time_signatures[:1])
    joined.key_signatures.extend(sequences[0].key_signatures[:1])
    joined.instrument_infos.extend(sequences[0].instrument_infos[:1])
    start = 0.0
    for sequence in sequences:
        end = max([float(sequence.total_time)] + [n.end_time for n in sequence.notes])
        for note in sequence.notes:
            copied = joined.notes.add()
            copied.CopyFrom(note)
            copied.instrument = 0  # one track: the first melody's
            copied.start_time = start + note.start_time
            copied.end_time = start + note.end_time
        joined.total_time = start + end
        start += end + gap_seconds
    return joined


def program_number(program: int | str) -> int:
    """A General MIDI program 0-127 from a number or an :data:`INSTRUMENTS` name."""
    if isinstance(program, str):
        text = program.strip()
        if text.isdigit():
            return program_number(int(text))
        for name, number in INSTRUMENTS.items():
            if name.lower() == text.lower():
                return number
        raise RenderError(
            f"unknown instrument {program!r}: choose one of {', '.join(INSTRUMENTS)} "
            "or a General MIDI program number 0-127"
        )
    if isinstance(program, bool) or not 0 <= int(program) <= 127:
        raise RenderError(f"General MIDI program must be 0-127 (got {program})")
    return int(program)


# FluidSynth loading -------------------------------------------------------------------------


def resolve_soundfont(soundfont: str | Path | None = None) -> Path:
    """The SoundFont to use: the argument, else $MELODYGEN_SOUNDFONT, else the bundled one.

    Raises:
        AudioUnavailableError: the chosen file is missing or is not a SoundFont.
    """
    if soundfont is not None:
        path, origin = Path(soundfont), "given"
    elif os.environ.get(SOUNDFONT_ENV):
        path, origin = Path(os.environ[SOUNDFONT_ENV]), f"set by ${SOUNDFONT_ENV}"
    else:
        path, origin = DEFAULT_SOUNDFONT, "bundled with MelodyGen"
    path = path.expanduser()
    if not path.is_file():
        hint = (
            f"restore soundfonts/ from the repository or set {SOUNDFONT_ENV} to a .sf2 file"
            if origin == "bundled with MelodyGen"
            else "check the path"
        )
        raise AudioUnavailableError(f"SoundFont not found: {path} ({origin}): {hint}")
    with path.open("rb") as handle:
        header = handle.read(12)
    if header[:4] != b"RIFF" or header[8:12] != b"sfbk":
        raise AudioUnavailableError(f"{path} is not a SoundFont (.sf2 or .sf3) file")
    return path


class _Fluid:
    """pyfluidsynth plus the few C functions it does not wrap, bound once per process."""

    def __init__(self, module: Any) -> None:
        cfunc = module.cfunc
        c_void_p, c_int = ctypes.c_void_p, ctypes.c_int
        self.module = module
        self.write_float = cfunc(
            "fluid_synth_write_float",
            c_int,
            ("synth", c_void_p, 1),
            ("len", c_int, 1),
            ("lout", c_void_p, 1),
            ("loff", c_int, 1),
            ("lincr", c_int, 1),
            ("rout", c_void_p, 1),
            ("roff", c_int, 1),
            ("rincr", c_int, 1),
        )
        self.get_sfont_by_id = cfunc(
            "fluid_synth_get_sfont_by_id", c_void_p, ("synth", c_void_p, 1), ("id", c_int, 1)
        )
        self.add_sfont = cfunc(
            "fluid_synth_add_sfont", c_int, ("synth", c_void_p, 1), ("sfont", c_void_p, 1)
        )
        self.remove_sfont = cfunc(
            "fluid_synth_remove_sfont", c_int, ("synth", c_void_p, 1), ("sfont", c_void_p, 1)
        )
        self.set_log_function = cfunc(
            "fluid_set_log_function",
            c_void_p,
            ("level", c_int, 1),
            ("fun", c_void_p, 1),
            ("data", c_void_p, 1),
        )
        version = cfunc("fluid_version_str", ctypes.c_char_p)
        self.version = version().decode() if version else "?"
        needed = (self.write_float, self.get_sfont_by_id, self.add_sfont, self.remove_sfont)
        if any(function is None for function in needed):
            raise AudioUnavailableError(
                f"the FluidSynth library ({self.version}) is too old: MelodyGen needs FluidSynth 2 "
                "(Debian package fluidsynth)"
            )


_FLUID: _Fluid | None = None
_FLUID_LOCK = threading.Lock()


def _load_fluidsynth() -> _Fluid:
    """Import pyfluidsynth (which loads libfluidsynth) on first use, turning failures into words.

    ``import fluidsynth`` raises ImportError when libfluidsynth is not installed and
    OSError when it cannot be loaded, so it is never imported at module level.
    """
    global _FLUID
    with _FLUID_LOCK:
        if _FLUID is not None:
            return _FLUID
        try:
            module = importlib.import_module("fluidsynth")
        except ModuleNotFoundError as error:
            if error.name == "fluidsynth":
                raise AudioUnavailableError(PYFLUIDSYNTH_MISSING) from None
            raise AudioUnavailableError(f"{LIBRARY_MISSING} ({error})") from None
        except ImportError:
            raise AudioUnavailableError(LIBRARY_MISSING) from None
        except OSError as error:
            raise AudioUnavailableError(
                f"the FluidSynth library could not be loaded ({error}): "
                "reinstall the Debian package fluidsynth"
            ) from None
        if not hasattr(module, "cfunc") or not hasattr(module, "Synth"):
            raise AudioUnavailableError(
                "the installed 'fluidsynth' Python module is not pyfluidsynth: "
                "pip uninstall fluidsynth, then pip install -r requirements.txt"
            )
        _FLUID = _Fluid(module)
        return _FLUID


def audio_available(soundfont: str | Path | None = None) -> tuple[bool, str]:
    """Whether audio can be rendered here, and a sentence saying with what, or why not.

    Cheap: it checks the library and the SoundFont file without loading the SoundFont.
    """
    try:
        path = resolve_soundfont(soundfont)
        fluid = _load_fluidsynth()
    except AudioUnavailableError as error:
        return False, str(error)
    return True, f"FluidSynth {fluid.version} with SoundFont {path.name}"


# Audio --------------------------------------------------------------------------------------


class Synth:
    """FluidSynth with a SoundFont loaded once; renders melodies offline, one at a time.

    Safe to share between threads: renders take turns under a lock. Each render uses a
    fresh FluidSynth engine (about half a millisecond to make) that borrows the loaded
    SoundFont, so identical input always gives identical samples.
    """

    def __init__(
        self,
        soundfont: str | Path | None = None,
        sample_rate: int = SAMPLE_RATE,
        gain: float = 0.5,
    ) -> None:
        self.soundfont = resolve_soundfont(soundfont)
        self._fluid = _load_fluidsynth()
        self.sample_rate = int(sample_rate)
        self.gain = float(gain)
        self._lock = threading.Lock()
        holder = self._new_engine()
        sfid = holder.sfload(str(self.soundfont))
        if sfid < 0:
            holder.delete()
            raise AudioUnavailableError(
                f"FluidSynth could not load the SoundFont {self.soundfont}: "
                "the file is damaged or not a .sf2/.sf3 SoundFont"
            )
        self._holder = holder
        self._sfont = self._fluid.get_sfont_by_id(holder.synth, sfid)
        self._close = weakref.finalize(self, holder.delete)

    @property
    def version(self) -> str:
        return self._fluid.version

    def close(self) -> None:
        """Free the SoundFont now instead of when the Synth is garbage-collected."""
        with self._lock:
            self._close()

    def __enter__(self) -> Synth:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _new_engine(self) -> Any:
        return self._fluid.module.Synth(
            gain=self.gain,
            samplerate=float(self.sample_rate),
            channels=16,
            **{"synth.reverb.active": 1, "synth.chorus.active": 0},
        )

    def render(
        self,
        music: GeneratedMelody | Any,
        program: int | str = 0,
        *,
        qpm: float | None = None,
        velocity: int = DEFAULT_VELOCITY,
        tail: float = RELEASE_SECONDS,
        stereo: bool = False,
        normalize: bool = True,
    ) -> np.ndarray:
        """Samples of a GeneratedMelody, a NoteSequence or an event list, as float32 in [-1, 1].

        A GeneratedMelody of any family is rendered as it is heard: from its grid events
        (at ``qpm`` and ``velocity`` when given), or from the family's own NoteSequence
        when it has one (``GeneratedMelody.source``, played with its own timing and
        velocities). The result lasts the music's length (a melody's full step count at
        its tempo, or a NoteSequence's total time) plus ``tail`` seconds of release, at
        ``self.sample_rate``; mono (frames,) or, with ``stereo``, (frames, 2). Every note
        uses ``program`` (drum notes of a NoteSequence use the drum kit). ``normalize``
        scales the peak to -1 dBFS, so instruments of different loudness play alike.
        """
        preset = program_number(program)
        if not 1 <= velocity <= 127:
            raise RenderError(f"velocity must be 1-127 (got {velocity})")
        notes, length = _notes_and_length(music, qpm, int(velocity))
        rate = self.sample_rate
        frames = int(round((length + max(0.0, tail)) * rate))
        blocks = -(-frames // _BLOCK)
        events: list[tuple[int, int, int, int, int]] = []  # (block, on?, channel, pitch, vel)
        for note in notes:
            if not 0 <= note.pitch <= 127:
                continue
            channel = _DRUM_CHANNEL if note.is_drum else _MELODY_CHANNEL
            on = int(round(note.start * rate / _BLOCK))
            off = max(on + 1, int(round(note.end * rate / _BLOCK)))
            if on >= blocks:
                continue
            events.append((on, 1, channel, note.pitch, note.velocity))
            events.append((min(off, blocks), 0, channel, note.pitch, 0))
        events.sort()  # note-offs before note-ons in the same block: repeated pitches re-strike
        with self._lock:
            if not self._close.alive:
                raise RenderError("this Synth was closed")
            out = self._render_events(events, blocks, preset)
        out = out[:frames]
        fade = min(frames, int(FADE_SECONDS * rate))
        if fade:
            out[frames - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)[:, None]
        samples = out if stereo else out.mean(axis=1)
        peak = float(np.abs(samples).max()) if samples.size else 0.0
        if normalize and peak > 0:
            samples *= PEAK_LEVEL / peak
        elif peak > 1:
            np.clip(samples, -1.0, 1.0, out=samples)
        return np.ascontiguousarray(samples, dtype=np.float32)

    def _render_events(
        self, events: list[tuple[int, int, int, int, int]], blocks: int, preset: int
    ) -> np.ndarray:
        """Run one fresh engine over the events; the caller holds the lock."""
        fluid = self._fluid
        engine = self._new_engine()
        out = np.zeros((blocks * _BLOCK, 2), dtype=np.float32)
        try:
            sfid = fluid.add_sfont(engine.synth, self._sfont)
            engine.program_select(_MELODY_CHANNEL, sfid, 0, preset)
            engine.program_select(_DRUM_CHANNEL, sfid, 128, 0)
            for channel in (_MELODY_CHANNEL, _DRUM_CHANNEL):
                engine.cc(channel, 91, _REVERB_SEND)
                engine.cc(channel, 93, _CHORUS_SEND)
            position = 0
            for block, is_on, channel, pitch, vel in [*events, (blocks, 0, -1, 0, 0)]:
                count = (block - position) * _BLOCK
                if count > 0:
                    pointer = out[position * _BLOCK :].ctypes.data
                    status = fluid.write_float(engine.synth, count, pointer, 0, 2, pointer, 1, 2)
                    if status != _FLUID_OK:
                        raise RenderError("FluidSynth failed to render audio")
                    position = block
                if channel < 0:
                    break
                if is_on:
                    engine.noteon(channel, pitch, vel)
                else:
                    engine.noteoff(channel, pitch)
        finally:
            # Removing the borrowed SoundFont makes FluidSynth reset every channel's program
            # and warn, once per channel, that no preset is left: expected, so kept quiet.
            previous = fluid.set_log_function(_FLUID_WARN, None, None)
            try:
                fluid.remove_sfont(engine.synth, self._sfont)
            finally:
                fluid.set_log_function(_FLUID_WARN, previous, None)
                engine.delete()
        return out


_DEFAULT_SYNTH: Synth | None = None
_DEFAULT_LOCK = threading.Lock()


def default_synth() -> Synth:
    """The process-wide Synth with the default SoundFont, made on first use."""
    global _DEFAULT_SYNTH
    with _DEFAULT_LOCK:
        if _DEFAULT_SYNTH is None:
            _DEFAULT_SYNTH = Synth()
        return _DEFAULT_SYNTH


def render_audio(
    music: GeneratedMelody | Any,
    program: int | str = 0,
    synth: Synth | None = None,
    **options: Any,
) -> np.ndarray:
    """Render a melody, NoteSequence or event list to float32 samples at 44.1 kHz.

    Uses ``synth`` or the process-wide :func:`default_synth`; ``options`` are those of
    :meth:`Synth.render` (qpm, velocity, tail, stereo, normalize).

    Raises:
        AudioUnavailableError: FluidSynth or the SoundFont is missing (the message says which).
    """
    return (synth or default_synth()).render(music, program, **options)


def wav_bytes(samples: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM WAV file contents, for a download button or an audio player.

    ``samples`` is mono (frames,) or (frames, channels); floats are taken as [-1, 1]
    and clipped, int16 is written as is.
    """
    data = np.asarray(samples)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or data.shape[1] < 1:
        raise RenderError(f"samples must be (frames,) or (frames, channels), got {data.shape}")
    if data.dtype != np.int16:
        if not np.issubdtype(data.dtype, np.floating):
            raise RenderError(f"samples must be float or int16, got {data.dtype}")
        data = np.round(np.clip(data, -1.0, 1.0) * 32767.0).astype(np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(data.shape[1])
        writer.setsampwidth(2)
        writer.setframerate(int(rate))
        writer.writeframes(np.ascontiguousarray(data).astype("<i2").tobytes())
    return buffer.getvalue()


def write_wav(path: str | Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    """Write samples as a 16-bit PCM WAV file, making folders as needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(wav_bytes(samples, rate))
    return path


# Piano roll ---------------------------------------------------------------------------------

PRIMER_COLOUR = "#9aa3ad"
GENERATED_COLOUR = "#2563a8"
_PRIMER_EDGE = "#5f6872"
_GENERATED_EDGE = "#163c66"
_PRIMER_BACKGROUND = "#f1efe9"
_SECTION_COLOUR = "#b5472c"
"""Section lines and letters of a form: a warm red, apart from the notes' blue and grey."""
_BLACK_KEY_ROW = (0.45, 0.5, 0.6, 0.1)  # translucent: shows over the primer shading
_PITCH_PADDING = 2


def piano_roll(
    melody: GeneratedMelody | Sequence[int],
    primer_steps: int | None = None,
    qpm: float | None = None,
    title: str | None = None,
    *,
    width: float = 4.25,
    meter: Meter | None = None,
    key: int | None = None,
    mode: str | None = None,
    sections: Sequence[Section] | None = None,
) -> Figure:
    """A piano-roll picture of a melody: time in bars and beats, pitch by note name.

    Primer notes are grey and generated notes blue (a legend says which), drawn as two
    separate collections with gids ``primer`` and ``generated``. ``primer_steps``,
    ``qpm``, ``meter``, ``key`` and ``mode`` default to the melody's own (0, 120 BPM,
    4/4 and sharps for a plain event list). Bar lines follow the meter, beat lines its
    beats (dotted quarters in 6/8); note names are spelled in the key.

    Sized for the screen: ``width`` inches is the width it is shown at in hundreds of
    pixels (:data:`DISPLAY_PPI`; 4.25 is a picture 425 px wide), with text of 9 points
    (12.5 px there) and only as many note names and bar numbers as fit without
    touching. Save it with :func:`figure_png` at :data:`PNG_DPI` for sharp text.

    A melody with a form (``sections``, by default the melody's own) gets a heavy line
    where each section starts and its letter at the top (``A'``: a varied repeat), so the
    returning sections can be seen.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PatchCollection, PolyCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FixedLocator

    events, primer, tempo = _melody_parts(melody, primer_steps, qpm)
    meter = meter or getattr(melody, "meter", None) or FOUR_FOUR
    key = key if key is not None else getattr(melody, "key", None)
    mode = mode or getattr(melody, "mode", None) or "major"
    bar_steps, beat_steps = meter.steps_per_bar, meter.steps_per_beat
    notes = events_to_notes(events)
    steps = max(len(events), 1)
    bars = max(1, math.ceil(steps / bar_steps))
    pitches = sorted({pitch for _, _, pitch in notes})
    low, high = (pitches[0], pitches[-1]) if pitches else (60, 72)
    low, high = max(0, low - _PITCH_PADDING), min(127, high + _PITCH_PADDING)
    rows = high - low + 1

    font = 9.0
    margins = (0.55, 0.1, 0.42, 0.3)  # left, right, bottom, top, in inches
    height = min(4.0, max(2.2, margins[2] + margins[3] + 0.06 * rows))
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    # Fixed margins in inches: a layout engine would lay the figure out on every draw,
    # doubling the time to make a PNG.
    fig.subplots_adjust(
        left=margins[0] / width,
        right=1 - margins[1] / width,
        bottom=margins[2] / height,
        top=1 - margins[3] / height,
    )
    ax = fig.add_subplot()
    plot_width = width - margins[0] - margins[1]
    plot_height = height - margins[2] - margins[3]

    def x(step: float) -> float:  # steps to bars, bar 1 starting at 1
        return 1.0 + step / bar_steps

    end = x(bars * bar_steps)
    ax.set_xlim(1.0, end)
    ax.set_ylim(low - 0.5, high + 0.5)
    # Rows, bar and beat lines are one collection each: one artist per line would make
    # drawing a piano roll several times slower.
    black_keys = [p for p in range(low, high + 1) if p % 12 in (1, 3, 6, 8, 10)]
    if black_keys:
        rows_of_black_keys = PatchCollection(
            [Rectangle((1.0, p - 0.5), end - 1.0, 1.0) for p in black_keys],
            facecolors=[_BLACK_KEY_ROW],
            linewidths=0,
            zorder=0.5,
        )  # not a PolyCollection: those are the notes
        ax.add_collection(rows_of_black_keys, autolim=False)
    if primer > 0:
        ax.axvspan(1.0, x(min(primer, steps)), color=_PRIMER_BACKGROUND, lw=0, zorder=0)
    beat_width = plot_width * DISPLAY_PPI / (bars * meter.beats_per_bar)  # px per beat
    across = ax.get_xaxis_transform()  # x in data, y from the bottom (0) to the top (1)
    if beat_width >= 6 and meter.beats_per_bar > 1:
        beats = [x(step) for step in range(0, bars * bar_steps + 1, beat_steps)]
        ax.vlines(beats, 0, 1, transform=across, colors="#dde1e6", lw=0.5, zorder=1)
    if bars <= 128:
        bar_starts = [1.0 + bar for bar in range(bars + 1)]
        ax.vlines(bar_starts, 0, 1, transform=across, colors="#9099a3", lw=0.9, zorder=1.5)
    sections = getattr(melody, "sections", ()) if sections is None else sections
    _draw_sections(ax, sections, x, font, across)

    boxes: dict[bool, list[list[tuple[float, float]]]] = {True: [], False: []}
    gap = 0.4 / (plot_width * DISPLAY_PPI) * (end - 1.0)  # 0.4 px keeps repeated notes apart
    for start, stop, pitch in notes:
        x0, x1 = x(start), max(x(start) + gap, x(stop) - gap)
        y0, y1 = pitch - 0.4, pitch + 0.4
        boxes[start < primer].append([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
    for is_primer, label, face, edge in (
        (True, "primer", PRIMER_COLOUR, _PRIMER_EDGE),
        (False, "generated", GENERATED_COLOUR, _GENERATED_EDGE),
    ):
        if boxes[is_primer]:
            collection = PolyCollection(
                boxes[is_primer], facecolors=face, edgecolors=edge, linewidths=0.5, zorder=3
            )
            collection.set_label(label)
            collection.set_gid(label)
            ax.add_collection(collection)

    # Note names: as many as fit one above the other with a little air (a label is
    # about 1.4 font heights), preferring the notes the melody plays.
    label_px = font / 72 * DISPLAY_PPI * 1.4
    row_px = plot_height * DISPLAY_PPI / rows
    spacing = max(1, math.ceil(label_px / row_px))  # semitones between labels
    shown = _spread(pitches or [low, high], spacing)
    ax.yaxis.set_major_locator(FixedLocator(shown))
    ax.set_yticklabels([note_name(p, key, mode) for p in shown])
    ax.tick_params(axis="both", labelsize=font, length=2, pad=2)
    # Bar numbers: as many as fit (about 3 characters each), on whole bars.
    most = max(1, int(plot_width * DISPLAY_PPI / (font / 72 * DISPLAY_PPI * 2.6)))
    steps_between = (1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100)
    every = next((n for n in steps_between if bars / n <= most), math.ceil(bars / most))
    ax.set_xticks([1.0 + bar for bar in range(0, bars, every)])
    ax.set_xticklabels([str(1 + bar) for bar in range(0, bars, every)])
    ax.set_xlabel(f"bar ({meter}, {tempo:g} BPM)", fontsize=font, labelpad=1)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if title:
        # y given: nothing sits above the axes, so Matplotlib's search for a free spot
        # (a quarter of the drawing time) would put the title at 1.0 anyway.
        ax.set_title(title, fontsize=font + 1, loc="left", y=1.0, pad=3)
    if primer > 0 and notes:
        ax.legend(
            loc="lower right",
            bbox_to_anchor=(1.0, 1.0),
            ncols=2,
            fontsize=font,
            frameon=False,
            handlelength=1.0,
            columnspacing=0.8,
            borderaxespad=0.1,
            borderpad=0.1,
        )
    return fig


def _draw_sections(ax: Any, sections: Sequence[Section], x: Any, font: float, across) -> None:
    """Section starts as heavy lines (gid ``sections``) and letters at the top of the roll
    (each a text with gid ``section-<letter>``)."""
    if not sections:
        return
    starts = [x(section.start) for section in sections]
    lines = ax.vlines(starts, 0, 1, transform=across, colors=_SECTION_COLOUR, lw=1.8, zorder=2)
    lines.set_gid("sections")
    for section, start in zip(sections, starts, strict=True):
        mark = section.letter + ("'" if section.kind == "varied" else "")
        text = ax.text(
            start,
            0.99,
            f" {mark}",
            transform=across,
            ha="left",
            va="top",
            fontsize=font,
            fontweight="bold",
            color=_SECTION_COLOUR,
            zorder=4,
        )
        text.set_gid(f"section-{section.letter}")


def _spread(pitches: list[int], spacing: int) -> list[int]:
    """The lowest and highest pitch and, between them, pitches at least ``spacing`` apart."""
    if spacing <= 1 or len(pitches) <= 1:
        return list(pitches)
    chosen = [pitches[0]]
    top = pitches[-1]
    for pitch in pitches[1:-1]:
        if pitch - chosen[-1] >= spacing and top - pitch >= spacing:
            chosen.append(pitch)
    if top - chosen[-1] >= spacing:
        chosen.append(top)
    elif len(chosen) > 1:
        chosen[-1] = top
    return chosen


def figure_png(fig: Figure, dpi: int = PNG_DPI, close: bool = True) -> bytes:
    """PNG bytes of a figure (drawn by Agg); with ``close``, release it from pyplot if tracked.

    Figures from :func:`piano_roll` are never tracked by pyplot, so they are freed with
    their last reference; closing matters only for figures made with ``pyplot``.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    if close and "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(fig)
    return buffer.getvalue()
