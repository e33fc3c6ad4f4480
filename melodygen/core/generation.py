"""Generation shared by every family: the request, the result, sampling and devices.

A :class:`GenerationRequest` is everything a user can ask of one run; each family reads
the options it understands (a key and a primer for ``melody_rnn``). A
:class:`GenerationResult` holds every melody as a note_seq ``NoteSequence`` (plus the
family's native text, such as ABC, where it has one) on MelodyGen's grid of
sixteenth-note steps, with its log-likelihood and the settings that made it; rendering
(piano roll, audio, MIDI, WAV) and the studio take this type and nothing
family-specific. :func:`load_generator` loads any saved model through its family.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from melodygen.core.form import (
    DEFAULT_SECTION_BARS,
    FREE,
    FormError,
    FormPlan,
    Section,
    check_section_bars,
    parse_form,
    plan_form,
)
from melodygen.errors import MelodyGenError
from melodygen.io.music import note_seq
from melodygen.io.primer import Primer
from melodygen.limits import MAX_BEAM_ROWS, PRIMER_MIDI, check_value
from melodygen.theory import (
    FOUR_FOUR,
    MINOR_MODES,
    MODES,
    NO_EVENT,
    NOTE_OFF,
    STEPS_PER_BAR,
    STEPS_PER_QUARTER,
    Meter,
    key_name,
    parse_meter,
    relative_major,
)

if TYPE_CHECKING:
    from note_seq import NoteSequence

    from melodygen.core.family import Family

DEFAULT_QPM = 120.0
MAX_OUTPUTS = 64
MAX_STEPS = 4096
TEXT_FIELD_LIMITS = {"rhythm": 40, "title": 200, "text_primer": 4000}
"""The most characters of each text field of a request (see GenerationRequest.validate)."""
DEFAULT_DISTANCE = 0.3
"""A variation's distance unless asked otherwise: close to its melody, not a copy."""
DEFAULT_BLEND_STEPS = 5
"""A blend's melodies unless asked otherwise: the two it joins and three between them."""
MELODY_FIELDS = {"variations_of": "variations of a melody", "blend": "blends of two melodies"}
"""The request fields that hand a family melodies to work from, with what they ask for in
words: a family that does not list a field in ``Family.request_options`` is refused it
(:meth:`GenerationRequest.check_family`) rather than ignoring it."""


class GenerationError(MelodyGenError):
    """A generation request that cannot be carried out as asked."""


@dataclass
class GenerationRequest:
    """Everything a user can ask of one generation run.

    ``length_steps`` is the total length including the primer, in sixteenth-note
    steps (16 per 4/4 bar, 12 per 3/4 or 6/8 bar: ``meter.steps_per_bar``).
    ``time_signature`` is the output's meter, None for the primer's (4/4 without
    one); the networks generate the same way in every meter (see the README,
    "Meters"). ``key`` is a pitch class (0 = C) or None to keep the primer's key
    and mode (its key signature, else estimated; the model's own, C major / A
    minor in ``mode``, when there is no primer). Pitch limits are MIDI numbers in
    the output's key. ``start_on_downbeat``: without a primer, the first step is
    a note (drawn from the model's note-ons), so bar 1 does not start with rests.
    """

    primer: Primer = field(default_factory=lambda: Primer(events=[]))
    length_steps: int = 8 * STEPS_PER_BAR
    key: int | None = None
    mode: str = "major"
    in_scale: bool = False
    qpm: float | None = None
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_pitch: int = 0
    max_pitch: int = 127
    num_outputs: int = 1
    seed: int | None = None
    beam_size: int = 1
    branch_factor: int = 1
    steps_per_iteration: int = 1
    include_primer: bool = True
    time_signature: Meter | None = None
    start_on_downbeat: bool = True
    rhythm: str | None = None
    """The dance type (ABC's ``R:``: "jig", "reel"), for families that read it."""
    title: str | None = None
    """The tune's title (ABC's ``T:``), for families that write one."""
    text_primer: str | None = None
    """The opening of a tune in the family's native text (for ``abc_char``: ABC header
    fields and/or opening bars); families without a text ignore it."""
    check_bars: bool = True
    """Families that write notation text (ABC) write a bar again when it does not last
    what the meter says or leaves a repeat unpaired, a few times at most, and a tune's
    ending again when the tune would not be valid (``BarCheck`` in
    :mod:`melodygen.io.abc`); False keeps the model's raw samples."""
    variations_of: Primer | NoteSequence | None = field(default=None, repr=False)
    """A melody to write ``num_outputs`` variations of, for families that read it
    (``Family.request_options``). A :class:`Primer` (typed notes, a file's bars) is read on
    the sixteenth-note grid at one velocity; a NoteSequence (a generated melody's own) with
    its own timing and dynamics. See :func:`melody_sequence`."""
    distance: float = DEFAULT_DISTANCE
    """How far the variations stray from ``variations_of``: 0 is the melody as the model
    reads it, 0.1-0.3 close, 1 loosely related (for ``note_vae``: the noise added to the
    melody's code, in standard deviations of the prior)."""
    blend: tuple[Primer | NoteSequence, Primer | NoteSequence] | None = field(
        default=None, repr=False
    )
    """Two melodies to blend (as ``variations_of``), for families that read it: the result
    is ``blend_steps`` melodies from the first to the second, both included."""
    blend_steps: int = DEFAULT_BLEND_STEPS
    """Melodies of a blend, its two ends included."""
    form: str = FREE
    """The tune's form ("AABB", "ABAC", ...; :mod:`melodygen.core.form`), for families that
    follow one (``Family.follows_form``); "free" lets the model wander as it likes. With a
    form, ``length_steps`` must be the form's length (:meth:`form_plan`)."""
    section_bars: int = DEFAULT_SECTION_BARS
    """Bars of each section of ``form``: 4 or 8."""
    vary_repeats: bool = False
    """A repeated section keeps the first half of its source and writes the rest anew (as
    first and second endings do); False repeats it note for note."""

    def __post_init__(self) -> None:
        # "3/4" or (3, 4) as well as a Meter; a bad one raises MeterError (a MelodyGenError).
        self.time_signature = parse_meter(self.time_signature)

    @property
    def meter(self) -> Meter:
        """The output's meter: ``time_signature``, else the primer's."""
        return self.time_signature or self.primer.meter

    def validate(self) -> None:
        """Refuse what cannot be generated, each with a message a musician can act on.

        Every number is checked against :data:`melodygen.limits.RANGES`, the table the
        CLI's flags and the studio's form are checked against, so a value is refused
        with the same words wherever it comes from.
        """

        def check(name: str, value: object) -> None:
            check_value(name, value, GenerationError)

        check("temperature", self.temperature)
        if self.mode not in MODES:
            raise GenerationError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.key is not None:
            check("key", self.key)
        check("num_outputs", self.num_outputs)
        check("length_steps", self.length_steps)
        if self.primer.steps > self.length_steps:
            raise GenerationError(
                f"the primer is {self.primer.steps} steps long, longer than the requested "
                f"{self.length_steps} steps: ask for more bars or a shorter primer"
            )
        if self.top_k is not None:
            check("top_k", self.top_k)
        if self.top_p is not None:
            check("top_p", self.top_p)
        check("min_pitch", self.min_pitch)
        check("max_pitch", self.max_pitch)
        if self.min_pitch > self.max_pitch:
            raise GenerationError("pitch range must satisfy 0 <= lowest <= highest <= 127")
        for name in ("beam_size", "branch_factor", "steps_per_iteration"):
            check(name, getattr(self, name))
        rows = self.beam_size * self.branch_factor * self.num_outputs
        if rows > MAX_BEAM_ROWS:
            raise GenerationError(
                f"beam size x branch factor x number of outputs is {rows:,}; a beam search "
                f"holds them all in memory at once, so it may be at most {MAX_BEAM_ROWS:,}"
            )
        if self.qpm is not None:
            check("bpm", self.qpm)
        elif self.primer.qpm is not None:
            check("bpm", self.primer.qpm)  # the primer's tempo is the output's
        if self.seed is not None:
            check("seed", self.seed)
        self._validate_melodies()
        self.form_plan()  # a bad form, section length or length: one line
        for name, most in TEXT_FIELD_LIMITS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, str):
                raise GenerationError(f"{name} must be text, not {type(value).__name__}")
            if len(value) > most:
                raise GenerationError(
                    f"{name} is {len(value):,} characters long; at most {most:,} are read"
                )
            if any(ord(char) < 32 and char not in "\n\r\t" for char in value):
                raise GenerationError(f"{name} holds control characters; give plain text")
            if name != "text_primer" and "\n" in value:
                raise GenerationError(f"{name} must be one line")

    def form_plan(self) -> FormPlan | None:
        """Where each section of ``form`` lies in the output (None for a free tune); refuses,
        in one line, a form with beam search or with a length other than the form's."""
        if not isinstance(self.vary_repeats, bool):
            raise GenerationError("vary_repeats must be True or False")
        check_section_bars(self.section_bars)
        if parse_form(self.form) == FREE:
            return None
        plan = plan_form(
            self.form, self.section_bars, self.meter, self.primer.events, self.vary_repeats
        )
        if self.beam_size > 1 or self.branch_factor > 1:
            raise FormError(
                f"beam search cannot follow form {plan.form}: it keeps the likeliest melodies "
                "whole and copies no section; use beam size 1 (sampling) or form free"
            )
        if self.length_steps != plan.total_steps:
            meter = f"{self.meter.numerator}/{self.meter.denominator}"
            asked = self.meter.bars(self.length_steps)
            pickup = ", a pickup bar included" if plan.pickup_steps else ""
            raise FormError(
                f"form {plan.form} of {plan.section_bars}-bar sections lasts {plan.total_bars} "
                f"bars of {meter}{pickup}, but the length asked is {asked:g} bars: leave the "
                f"length out (the form sets it) or ask for {plan.total_bars} bars"
            )
        return plan

    def _validate_melodies(self) -> None:
        """Variations and blends: their numbers in range, and melodies a model can read."""
        check_value("distance", self.distance, GenerationError)
        check_value("blend_steps", self.blend_steps, GenerationError)
        if self.variations_of is not None and self.blend is not None:
            raise GenerationError("ask for variations of a melody or a blend of two, not both")
        if self.variations_of is not None:
            check_melody(self.variations_of, "the melody to vary")
        if self.blend is None:
            return
        if not isinstance(self.blend, tuple | list) or len(self.blend) != 2:
            raise GenerationError("a blend takes two melodies: the first and the last")
        for which, melody in zip(("first", "second"), self.blend, strict=True):
            check_melody(melody, f"the {which} melody of the blend")
        if self.num_outputs != 1:
            raise GenerationError(
                f"a blend writes one melody per step ({self.blend_steps} blend steps); "
                f"ask for 1 output, not {self.num_outputs}"
            )

    def check_family(self, family: Family) -> None:
        """Refuse, in one line, variations or a blend asked of a model whose family does not
        read those fields (``Family.request_options``): its generator would ignore them and
        write unrelated melodies. The CLI and the studio call this before generating."""
        from melodygen.core.family import families

        options = family.request_options()
        for name, words in MELODY_FIELDS.items():
            if getattr(self, name) is None or name in options:
                continue
            makers = [f.title for f in families() if name in f.request_options()]
            offer = f"; {' or '.join(makers)} models do" if makers else ""
            raise GenerationError(f"{family.title} models make no {words}{offer}")
        if parse_form(self.form) != FREE and not family.follows_form():
            makers = [f.title for f in families() if f.follows_form()]
            offer = f"; {' or '.join(makers)} models do" if makers else ""
            raise FormError(
                f"{family.title} models cannot follow a form ({self.form}): use form free{offer}"
            )


def check_melody(melody: object, what: str) -> None:
    """A melody of a request (``variations_of``, ``blend``): a Primer with a note, or a
    NoteSequence within the primer file limits (:data:`melodygen.limits.PRIMER_MIDI`:
    reading a melody lays every step up to its last note out in memory)."""
    if isinstance(melody, Primer):
        if not melody.pitches():
            raise GenerationError(f"{what} has no notes; give one with at least one note")
        if melody.steps > MAX_STEPS:
            raise GenerationError(
                f"{what} is {melody.steps:,} steps long; a melody may be at most "
                f"{MAX_STEPS:,} steps ({MAX_STEPS // STEPS_PER_BAR} bars of 4/4)"
            )
        return
    if not isinstance(melody, note_seq.NoteSequence):
        raise GenerationError(
            f"{what} must be a Primer or a NoteSequence, not {type(melody).__name__}"
        )
    limits = PRIMER_MIDI
    if not any(note.velocity > 0 and not note.is_drum for note in melody.notes):
        raise GenerationError(f"{what} has no pitched notes; give one with at least one note")
    if len(melody.notes) > limits.max_notes or len(melody.tempos) > limits.max_tempo_changes:
        raise GenerationError(
            f"{what} holds {len(melody.notes):,} notes and {len(melody.tempos):,} tempos; a "
            f"melody may hold at most {limits.max_notes:,} and {limits.max_tempo_changes:,}"
        )
    for tempo in melody.tempos:
        if not limits.min_bpm <= tempo.qpm <= limits.max_bpm:  # NaN too
            raise GenerationError(
                f"{what} sets a tempo of {tempo.qpm:.4g} BPM; a melody may use tempos from "
                f"{limits.min_bpm:g} to {limits.max_bpm:g} BPM"
            )
    for note in melody.notes:
        if not 0.0 <= note.start_time <= note.end_time <= limits.max_seconds:  # NaN too
            raise GenerationError(
                f"{what} has a note from {note.start_time:.4g} s to {note.end_time:.4g} s; "
                f"notes must run forwards, within {limits.max_seconds / 3600:g} hour of the start"
            )
        if not 0 <= note.pitch <= 127:
            raise GenerationError(
                f"{what} has a note of pitch {note.pitch}; MIDI pitches are 0-127"
            )


def melody_sequence(melody: Primer | NoteSequence) -> NoteSequence:
    """A request's melody (``variations_of``, ``blend``) as a NoteSequence, what a family
    encodes: a Primer laid out at its tempo (120 BPM without one), in its meter and key,
    every note at velocity 100; a NoteSequence as it is (its timing and velocities kept)."""
    if not isinstance(melody, Primer):
        return melody
    return GeneratedMelody(
        events=list(melody.events),
        primer_steps=0,
        log_likelihood=0.0,
        qpm=float(melody.qpm or DEFAULT_QPM),
        meter=melody.meter,
        key=melody.key,
        mode=melody.mode or "major",
    ).to_note_sequence()


@dataclass
class GeneratedMelody:
    """One generated melody in the requested key, with what produced it.

    ``events`` is the melody on MelodyGen's grid (one event per sixteenth-note step: a
    MIDI pitch starts a note, ``NOTE_OFF`` ends one, ``NO_EVENT`` holds), which the piano
    roll, continuations and originality read; :attr:`sequence` is the same melody as a
    note_seq ``NoteSequence``, which MIDI, audio and notation read. A family whose music
    is finer than the grid (triplets, velocities) passes its own sequence as ``source``
    (see :meth:`from_sequence`), and that is what is heard and written.
    """

    events: list[int]
    primer_steps: int
    log_likelihood: float
    qpm: float
    index: int = 0
    meter: Meter = FOUR_FOUR
    """Time signature: bar lines every ``meter.steps_per_bar`` steps from step 0."""
    key: int | None = None
    """Tonic pitch class of the output's key (None: unknown, a model that keeps keys)."""
    mode: str = "major"
    text: str | None = None
    """The melody in the family's native text (ABC for the ABC families), else None."""
    source: NoteSequence | None = field(default=None, repr=False)
    """The family's own NoteSequence, when it has one (see the class docstring)."""
    problem: str | None = None
    """The reason the family's text could not be read as music (one line), else None;
    such a melody has no events, only its ``text``."""
    sections: tuple[Section, ...] = ()
    """The form's sections (letter, steps of ``events``, exact or varied repeat) when the
    request asked for a form, for the piano roll, the score and MIDI markers; else ()."""

    @classmethod
    def from_sequence(
        cls,
        sequence: NoteSequence,
        log_likelihood: float,
        index: int = 0,
        primer_steps: int = 0,
        text: str | None = None,
        key: int | None = None,
        mode: str = "major",
    ) -> GeneratedMelody:
        """A melody a family made as a NoteSequence: its tempo, meter and notes on the grid
        (the highest note wherever two overlap), the sequence kept as heard."""
        qpm = sequence.tempos[0].qpm if sequence.tempos else DEFAULT_QPM
        meter = FOUR_FOUR
        if sequence.time_signatures:
            signature = sequence.time_signatures[0]
            meter = parse_meter((signature.numerator, signature.denominator)) or FOUR_FOUR
        return cls(
            events=sequence_events(sequence),
            primer_steps=primer_steps,
            log_likelihood=float(log_likelihood),
            qpm=float(qpm),
            index=index,
            meter=meter,
            key=key,
            mode=mode,
            text=text,
            source=sequence,
        )

    @property
    def steps(self) -> int:
        return len(self.events)

    @property
    def sequence(self) -> NoteSequence:
        """The melody as a NoteSequence (piano, velocity 100 unless the family set them)."""
        return self.to_note_sequence()

    @property
    def key_name(self) -> str:
        """``"G major"``, or "" when the key is unknown."""
        return key_name(self.key, self.mode) if self.key is not None else ""

    def pitches(self) -> list[int]:
        return [e for e in self.events if e >= 0]

    def to_note_sequence(self, program: int = 0, velocity: int = 100, name: str = "Melody"):
        """A NoteSequence at the melody's tempo (one sixteenth per step), with its time
        signature, key signature (major/minor; other modes as their relative major's) and
        ``name`` as the instrument's (track) name. A family's own ``source`` sequence keeps
        its timing and velocities; only its program and track name are set."""
        if self.source is not None:
            sequence = copy.deepcopy(self.source)
            for note in sequence.notes:
                note.program = program
            del sequence.instrument_infos[:]
            sequence.instrument_infos.add(instrument=0, name=name)
            return sequence
        melody = note_seq.Melody(self.events)
        sequence = melody.to_sequence(velocity=velocity, program=program, qpm=self.qpm)
        sequence.time_signatures.add(
            time=0.0, numerator=self.meter.numerator, denominator=self.meter.denominator
        )
        if self.key is not None:
            minor = self.mode in MINOR_MODES
            tonic = self.key if minor else relative_major(self.key, self.mode)
            sequence.key_signatures.add(time=0.0, key=tonic, mode=1 if minor else 0)
        sequence.instrument_infos.add(instrument=0, name=name)
        sequence.total_time = max(sequence.total_time, self.steps * 15.0 / self.qpm)
        return sequence

    def write_midi(self, path: str | Path, program: int = 0, name: str = "Melody") -> Path:
        """Write a standard MIDI file (see :meth:`to_note_sequence`); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.sections:
            path.write_bytes(self.midi_bytes(program=program, name=name))
            return path
        sequence = self.to_note_sequence(program=program, name=name)
        note_seq.sequence_proto_to_midi_file(sequence, str(path))
        return path

    def midi_bytes(self, program: int = 0, name: str = "Melody") -> bytes:
        """A standard MIDI file of the melody (see :meth:`to_note_sequence`); a melody with a
        form carries each section's letter as a MIDI marker where it starts (``A'``: a
        varied repeat), which sequencers show on their timeline."""
        import io

        sequence = self.to_note_sequence(program=program, name=name)
        buffer = io.BytesIO()
        note_seq.note_sequence_to_pretty_midi(sequence).write(buffer)
        if not self.sections:
            return buffer.getvalue()
        step_seconds = 15.0 / self.qpm
        marks = [
            (
                section.start * step_seconds,
                section.letter + ("'" if section.kind == "varied" else ""),
            )
            for section in self.sections
        ]
        return _with_markers(buffer.getvalue(), marks, self.qpm)


def _with_markers(data: bytes, marks: list[tuple[float, str]], qpm: float) -> bytes:
    """MIDI ``data`` (one tempo, as a generated melody has) with a marker meta event at each
    (seconds, text) of ``marks``, in its first track."""
    import io

    import mido

    midi = mido.MidiFile(file=io.BytesIO(data))
    track = midi.tracks[0]
    ticks_per_second = midi.ticks_per_beat * qpm / 60.0
    timed, now = [], 0
    for message in track:
        now += message.time
        timed.append((now, 1, message))
    for seconds, text in marks:
        timed.append((round(seconds * ticks_per_second), 0, mido.MetaMessage("marker", text=text)))
    end = [item for item in timed if item[2].type == "end_of_track"]
    timed = sorted((item for item in timed if item[2].type != "end_of_track"), key=lambda x: x[:2])
    last = max([tick for tick, _, _ in timed] + [tick for tick, _, _ in end])
    track.clear()
    previous = 0
    for tick, _, message in timed:
        track.append(message.copy(time=tick - previous))
        previous = tick
    track.append(mido.MetaMessage("end_of_track", time=last - previous))
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


@dataclass
class GenerationResult:
    melodies: list[GeneratedMelody]
    seconds: float
    transpose: int  # semitones added to the model's output to reach the requested key
    key: int | None = None
    """Tonic of the output's key: asked for, or the primer's (see ``key_source``)."""
    mode: str = "major"
    key_source: str = ""
    """"chosen", "key signature", "estimated" (from the primer's notes) or "model"."""
    notices: list[str] = field(default_factory=list)
    """How the primer was changed to fit the model (notes moved by octaves), one line each."""
    warnings: list[str] = field(default_factory=list)
    """Settings that left the model almost no choice, and what came of it, one line each."""
    form: str = FREE
    """The form the melodies follow (each melody's ``sections`` say where), or "free"."""


def outcome_warnings(
    request: GenerationRequest, melodies: list[GeneratedMelody], warned: bool
) -> list[str]:
    """Variations that came out as held notes or on one note: one line saying so and why.

    Beam search keeps the likeliest melodies, which for these models are long held
    notes: below two new notes per bar it is named as the cause. Sampled melodies are
    only flagged below one new note per bar, or when every new note is the same pitch,
    and only when no setting was warned about already.
    """
    bar = request.meter.steps_per_bar
    beam = request.beam_size > 1 or request.branch_factor > 1
    per_bar = 2 if beam else 1
    sparse = monotone = 0
    for melody in melodies:
        new = melody.events[melody.primer_steps :]
        notes = [e for e in new if e >= 0]
        if len(new) >= bar and len(notes) < per_bar * len(new) / bar:
            sparse += 1
        elif len(notes) >= 4 and len(set(notes)) == 1:
            monotone += 1

    def share(count: int) -> str:
        if len(melodies) == 1:
            return "The variation has"
        return f"{count} of {len(melodies)} variations {'has' if count == 1 else 'have'}"

    warnings = []
    if sparse and beam:
        warnings.append(
            f"{share(sparse)} fewer than two new notes per bar: beam search keeps the "
            "likeliest melodies, and for these models those are long held notes; use beam "
            "size 1 (sampling) for livelier tunes."
        )
    elif sparse and not warned:
        warnings.append(
            f"{share(sparse)} fewer than one new note per bar; raise the temperature or "
            "generate again with another seed."
        )
    if monotone and not warned:
        warnings.append(
            f"{share(monotone)} a single repeated note; raise the temperature or widen the "
            "range between the lowest and highest note."
        )
    return warnings


def top_rows(scores: np.ndarray, groups: int, k: int) -> np.ndarray:
    """Indices of the ``k`` best rows of each output's group (rows are grouped by output)."""
    per_group = scores.reshape(groups, -1)
    best = np.argsort(-per_group, axis=1, kind="stable")[:, :k]
    return (best + np.arange(groups)[:, None] * per_group.shape[1]).reshape(-1)


def logsumexp(logits: np.ndarray) -> np.ndarray:
    peak = np.max(logits, axis=-1, keepdims=True)
    return peak + np.log(np.sum(np.exp(logits - peak), axis=-1, keepdims=True))


def sample(log_probs: np.ndarray, top_k, top_p, rng: np.random.Generator) -> np.ndarray:
    """One index per row from the (optionally truncated) distribution; never a zero one."""
    probs = np.exp(log_probs)
    if top_k is not None and top_k < probs.shape[1]:
        threshold = -np.sort(-probs, axis=1)[:, top_k - 1 : top_k]
        probs = np.where(probs >= threshold, probs, 0.0)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probs, axis=1)
        sorted_probs = np.take_along_axis(probs, order, axis=1)
        cumulative = np.cumsum(sorted_probs, axis=1) / sorted_probs.sum(axis=1, keepdims=True)
        keep_sorted = cumulative - sorted_probs / sorted_probs.sum(axis=1, keepdims=True) < top_p
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=1)
        probs = np.where(keep, probs, 0.0)
    cumulative = np.cumsum(probs, axis=1)
    draws = rng.random((len(probs), 1)) * cumulative[:, -1:]
    chosen = (cumulative <= draws).sum(axis=1)
    # Rounding can leave a draw at the very top: take the last index that has probability.
    last = probs.shape[1] - 1 - np.argmax(probs[:, ::-1] > 0, axis=1)
    return np.minimum(chosen, last)


def device_scope(device: str):
    """A context that places work on the CPU or GPU (TensorFlow); 'auto' lets TF choose."""
    import contextlib

    if device not in ("auto", "cpu", "gpu"):
        raise GenerationError(f"device must be auto, cpu or gpu (got {device!r})")
    if device == "auto":
        return contextlib.nullcontext()
    import keras

    if keras.backend.backend() != "tensorflow":
        return contextlib.nullcontext()
    import tensorflow as tf

    if device == "gpu" and not tf.config.list_physical_devices("GPU"):
        raise GenerationError("device gpu asked for, but TensorFlow sees no GPU")
    return tf.device("/GPU:0" if device == "gpu" else "/CPU:0")


def bars_to_steps(bars: float, meter: Meter | None = None) -> int:
    """Bars of ``meter`` (4/4 by default) in sixteenth-note steps: 8 bars of 3/4 are 96."""
    return int(round(bars * (meter or FOUR_FOUR).steps_per_bar))


def sequence_events(sequence: NoteSequence) -> list[int]:
    """A NoteSequence's melody on the grid: sixteenth-note steps of its first tempo, the
    highest note wherever notes overlap, ending with the sequence."""
    qpm = sequence.tempos[0].qpm if sequence.tempos else DEFAULT_QPM
    step = 60.0 / qpm / STEPS_PER_QUARTER
    length = max(1, round(max([sequence.total_time] + [n.end_time for n in sequence.notes]) / step))
    events = [NO_EVENT] * length
    sounding = [None] * length  # the pitch each step plays, to find where overlaps win
    for note in sorted(sequence.notes, key=lambda n: (n.start_time, -n.pitch)):
        start = min(length - 1, round(note.start_time / step))
        end = min(length, max(start + 1, round(note.end_time / step)))
        if sounding[start] is not None and sounding[start] >= note.pitch:
            continue
        events[start] = int(note.pitch)
        for position in range(start, end):
            sounding[position] = note.pitch
        if end < length and events[end] == NO_EVENT:
            events[end] = NOTE_OFF
    return events


class _ConcreteSteps:
    """A ``tf.function`` called through the concrete function of each argument shape.

    A generation calls its step a few hundred times with the same shapes; calling the
    ``tf.function`` itself re-derives the call's signature from its arguments every time
    (about 0.6 ms of a 1.6 ms step of a 2x512 LSTM here), and the concrete function does
    not. Arguments that are not all TensorFlow tensors go through the ``tf.function``.
    """

    def __init__(self, function) -> None:
        import tensorflow as tf

        self._tf = tf
        self._function = tf.function(function, reduce_retracing=True, jit_compile=True)
        self._concrete: dict = {}

    def __call__(self, *args):
        leaves = self._tf.nest.flatten(args)
        if not all(isinstance(leaf, self._tf.Tensor) for leaf in leaves):
            return self._function(*args)
        key = tuple((tuple(leaf.shape), leaf.dtype) for leaf in leaves)
        concrete = self._concrete.get(key)
        if concrete is None:
            concrete = self._concrete[key] = self._function.get_concrete_function(*args)
        return concrete(*args)


def compile_step(function):
    """Trace the step once per backend (tf.function / jax.jit) so each call is cheap."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _ConcreteSteps(function)
    if backend == "jax":
        import jax

        return jax.jit(function)
    return function


def load_generator(checkpoint: str | Path, device: str = "auto"):
    """Any saved model (or run folder), ready to generate, loaded through its family."""
    from melodygen.core.checkpoint import model_family

    device_scope(device)  # refuse a bad or unavailable device now, not at the first click
    return model_family(checkpoint).load_generator(checkpoint, device)
