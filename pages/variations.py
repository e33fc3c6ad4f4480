"""Variations and blends: new melodies from random codes, variations of a melody, a blend
of two, from the models whose family makes them (``studio.variation_models``).

Only layout lives here; ``melodygen.studio`` makes everything shown or downloaded. As on
the Generate page, models and the synthesizer load once per process on a background
thread (``pages.common.loader``, one for both pages), settings are kept under one key of
their own (``SAVED``, ``pages.common.KeptSettings``) so another page does not reset them,
parameters sit in a form (nothing runs until a button of it is pressed), results stay in
``st.session_state``, and every bad input is one line on the page. Widget keys start
with ``vary_``: session state is shared with the Generate page, whose result
(``"result"``) is one of the melodies offered here.
"""

from __future__ import annotations

import logging
import os

import streamlit as st

from melodygen import studio
from melodygen.errors import MelodyGenError
from melodygen.io.primer import Primer, parse_primer
from melodygen.limits import RANGES
from melodygen.render import INSTRUMENTS, SOUNDFONT_ENV
from pages.common import KeptSettings, loader, wait_for

logger = logging.getLogger("melodygen.app")

if not st.session_state.get("studio_routed"):  # opened before app.py ran: go through it
    st.session_state["studio_target"] = "pages/variations.py"
    st.switch_page("app.py")

TYPED, FILE, GENERATED = "Typed notes", "A file", "A Generate page result"
SOURCES = [TYPED, FILE, GENERATED]
SETTINGS = studio.VariationSettings()
INITIAL = {
    "vary_kind": SETTINGS.kind,
    "vary_count": SETTINGS.count,
    "vary_steps": SETTINGS.steps,
    "vary_distance": SETTINGS.distance,
    "vary_temperature": SETTINGS.temperature,
    "vary_seed": SETTINGS.seed,
    "vary_bpm": int(SETTINGS.bpm),
    "vary_instrument": "Piano",
    **{f"vary_source_{slot}": TYPED for slot in (1, 2)},
    **{f"vary_text_{slot}": "" for slot in (1, 2)},
    **{f"vary_bars_{slot}": 4 for slot in (1, 2)},
}
FIELDS = ("count", "steps", "distance", "temperature", "seed", "bpm")
FORM = [f"vary_{name}" for name in FIELDS] + [
    f"vary_{n}_{s}" for n in ("text", "bars", "pick") for s in (1, 2)
]
SAVED = "variation_settings"
# Drawn for some kinds and sources only: restored just before they are drawn.
LATER = tuple(f"vary_{n}_{s}" for n in ("text", "bars", "pick", "track") for s in (1, 2))
kept = KeptSettings(SAVED, INITIAL, LATER)
saved, restored, save, put = kept.saved, kept.restored, kept.save, kept.put


@st.cache_data(show_spinner=False, max_entries=8)
def read_file(name: str, data: bytes) -> studio.MidiUpload:
    return studio.read_melody_upload(name, data)


@st.cache_data(show_spinner=False, max_entries=32)
def typed_melody(text: str) -> Primer:
    return parse_primer(text)


@st.cache_data(show_spinner=False, max_entries=32)
def file_melody(name: str, data: bytes, track: int, bars: int) -> Primer:
    return studio.upload_primer(read_file(name, data), track, bars)


@st.cache_data(show_spinner=False, max_entries=32)
def melody_picture(primer: Primer, qpm: float) -> bytes:
    """A melody's piano roll at the tempo the run will use, half the page wide."""
    return studio.melody_png(primer, qpm=qpm)


st.title("Variations and blends")

# Model ----------------------------------------------------------------------------------------
entries = studio.discover_models()
models = studio.variation_models(entries)
if not models:
    where = "" if entries else f" (none at all in {studio.checkpoints_dir()})"
    st.info(
        f"No model here makes variations or blends{where}: they come from models whose "
        "family writes melodies from codes, such as a Note VAE. The README says how to train one."
    )
    st.stop()
by_name = {entry.name: entry for entry in models}
if st.session_state.get("vary_model") not in by_name:
    put("vary_model", models[0].name)
entry = by_name[
    st.selectbox(
        "Model",
        list(by_name),
        key="vary_model",
        on_change=save,
        args=("vary_model",),
        format_func=lambda n: f"{by_name[n].label} ({by_name[n].family})",
        help="The models whose family makes variations and blends.",
    )
]
st.caption(entry.description)
if entry.model_problem:
    st.error(f"The model {entry.name} could not be loaded: {entry.model_problem}")
    st.stop()
model_future = loader().model(entry.path, entry.stamp, entry.name)
synth_future = loader().synth(os.environ.get(SOUNDFONT_ENV))  # after the model, on one thread


@st.fragment(run_every=1.0)
def loading_message() -> None:
    """Shown while the model loads; once it is there, the whole page is drawn again."""
    if model_future.done():
        st.rerun()
    st.info(
        f"Loading the model in the background ({loader().waited(model_future):.0f} s so far), "
        "once per server. Choose the melodies and settings meanwhile; the button waits for it.",
        icon=":material/hourglass_top:",
    )


if not model_future.done():
    loading_message()
elif model_future.exception() is not None:
    error = model_future.exception()
    why = (
        str(error).replace(str(entry.path), entry.name)  # never the server's folders
        if isinstance(error, MelodyGenError)
        else "the terminal has details"
    )
    st.error(f"The model {entry.name} could not be loaded: {why}")
    st.stop()

kinds = studio.variation_kinds(entry)
if st.session_state.get("vary_kind") not in kinds:
    put("vary_kind", kinds[0])
kind = st.radio(
    "Make",
    kinds,
    key="vary_kind",
    on_change=save,
    args=("vary_kind",),
    horizontal=True,
    help="New melodies from random codes; variations of one melody; or a blend that runs "
    "from one melody to another in steps.",
)
slots = {studio.VARIATIONS: {1: "Melody to vary"}, studio.BLEND: {1: "From", 2: "To"}}.get(kind, {})

# Melodies: where each comes from (outside the form: a file and its track redraw the page) -----
uploads: dict[int, studio.MidiUpload | None] = {}
tracks: dict[int, int | None] = {}
problems: dict[int, str] = {}
for column, (slot, label) in zip(st.columns(max(1, len(slots))), slots.items(), strict=False):
    with column:
        st.subheader(label)
        source = st.radio(
            "Take it from",
            SOURCES,
            key=f"vary_source_{slot}",
            on_change=save,
            args=(f"vary_source_{slot}",),
            horizontal=True,
        )
        uploads[slot] = tracks[slot] = None
        if source != FILE:
            continue
        uploaded = st.file_uploader(
            "MIDI, MusicXML or ABC file",
            type=None,  # any file: one of another kind gets a message saying why not
            key=f"vary_file_{slot}",
            max_upload_size=studio.MAX_UPLOAD_MB,
            help=f"MIDI (.mid), MusicXML (.musicxml, .mxl) or ABC (.abc: its first tune), at "
            f"most {studio.MAX_UPLOAD_MB} MB; you choose the track and bars.",
        )
        new_file = False
        if uploaded is not None:
            new_file = saved.get(f"vary_upload_id_{slot}") != uploaded.file_id
            saved[f"vary_upload_{slot}"] = (uploaded.name, uploaded.getvalue())
            saved[f"vary_upload_id_{slot}"] = uploaded.file_id
        elif saved.get(f"vary_upload_{slot}"):
            st.caption(f"Using {saved[f'vary_upload_{slot}'][0]}, uploaded before.")
        if not saved.get(f"vary_upload_{slot}"):
            problems[slot] = "upload a file, or take the melody from somewhere else"
            st.info("Upload a file to take its opening bars as the melody.")
            continue
        try:
            upload = read_file(*saved[f"vary_upload_{slot}"])
        except MelodyGenError as error:
            problems[slot] = str(error)
            st.error(problems[slot])
            continue
        except Exception:  # a reader's bug must not follow the user around the page
            logger.exception("reading the upload failed")
            problems[slot] = "this file could not be read; the terminal running the app has details"
            st.error(problems[slot])
            continue
        key = restored(f"vary_track_{slot}")
        if new_file or st.session_state.get(key) not in upload.usable:
            put(key, studio.default_track(upload))
        st.dataframe(
            [
                {
                    "track": t.index,
                    "name": t.name or "-",
                    "instrument": t.instrument_name,
                    "notes": t.note_count,
                    "remark": upload.notes.get(t.index, ""),
                }
                for t in upload.tracks
            ],
            hide_index=True,
        )
        uploads[slot] = upload
        tracks[slot] = st.selectbox(
            "Track",
            upload.usable,
            key=key,
            on_change=save,
            args=(key,),
            format_func=lambda i, upload=upload: studio.track_label(upload.tracks[i]),
        )
        if tracks[slot] in upload.notes:
            st.caption(f"Track {tracks[slot]}: {upload.notes[tracks[slot]]}.")

# Settings: nothing happens until a button of the form is pressed -------------------------------
melodies: dict[int, object] = {}
with st.form("vary_settings"):
    for column, slot in zip(st.columns(max(1, len(slots))), slots, strict=False):
        with column:
            source = st.session_state.get(f"vary_source_{slot}", TYPED)
            melody = None
            if source == TYPED:
                text = st.text_area(
                    "Notes",
                    key=restored(f"vary_text_{slot}"),
                    placeholder="C4 E4 G4:2 r:2 | C5 - -",
                    height=68,
                    help=studio.SYNTAX_HINT,
                )
                try:
                    melody = typed_melody(text)
                except MelodyGenError as error:
                    problems[slot] = str(error)
                    st.error(problems[slot])
                else:
                    if not melody.pitches():
                        problems[slot] = "type a few notes, or take the melody from elsewhere"
                        st.info("Type a few notes, then press Check melodies.")
            elif source == FILE and uploads.get(slot) is not None:
                bars = st.number_input(
                    "Bars to use", min_value=1, max_value=32, key=restored(f"vary_bars_{slot}")
                )
                try:
                    melody = file_melody(*saved[f"vary_upload_{slot}"], tracks[slot], int(bars))
                except MelodyGenError as error:
                    problems[slot] = str(error)
                    st.error(problems[slot])
            elif source == GENERATED:
                last = st.session_state.get("result")
                choices = studio.generated_choices(last)
                if not choices:
                    problems[slot] = "generate on the Generate page first, then come back"
                    st.info("Nothing generated yet: generate on the Generate page, then come back.")
                else:
                    key = restored(f"vary_pick_{slot}")
                    if st.session_state.get(key) not in choices:
                        st.session_state[key] = next(iter(choices))
                    index = st.selectbox("Melody", list(choices), key=key, format_func=choices.get)
                    melody = last.melodies[index].sequence  # its own timing and dynamics
            if melody is not None and slot not in problems:
                melodies[slot] = melody
                if isinstance(melody, Primer):
                    st.image(
                        melody_picture(melody, float(saved["vary_bpm"])),
                        width=int(studio.RESULT_WIDTH * 100),  # as drawn: 425 px
                    )
    if any(st.session_state.get(f"vary_source_{slot}") == TYPED for slot in slots):
        st.caption(
            f"{studio.SYNTAX_HINT} Notes are checked, and drawn, when you press Check melodies."
        )
        st.form_submit_button("Check melodies", on_click=save, args=FORM)
    if kind == studio.VARIATIONS:
        if st.session_state.get("vary_distance") not in studio.DISTANCES:
            st.session_state["vary_distance"] = min(
                studio.DISTANCES, key=lambda d: abs(d - float(saved["vary_distance"]))
            )
        st.select_slider(
            "Distance",
            studio.DISTANCES,
            key="vary_distance",
            format_func=studio.distance_label,
            help="How far the variations stray: from almost the same melody to loosely "
            "related ones.",
        )
    left, right = st.columns(2)
    if kind == studio.BLEND:
        left.slider(
            "Steps",
            min_value=studio.MIN_BLEND_STEPS,
            max_value=studio.MAX_BLEND_STEPS,
            key="vary_steps",
            help="Melodies from the first to the second, both included.",
        )
    else:
        left.slider(
            "Variations" if kind == studio.VARIATIONS else "Melodies",
            min_value=1,
            max_value=studio.MAX_VARIATIONS,
            key="vary_count",
        )
    right.slider(
        "Temperature",
        min_value=0.1,
        max_value=2.0,
        step=0.05,
        key="vary_temperature",
        help="Lower: safer, more predictable. Higher: wilder, more surprising.",
    )
    left, right = st.columns(2)
    left.number_input(
        "Seed",
        min_value=0,
        max_value=RANGES["seed"].high,
        step=1,
        key="vary_seed",
        placeholder="random",
        help="The same seed and settings give the same melodies; empty: new ones each time.",
    )
    right.number_input("Tempo (BPM)", min_value=20, max_value=300, step=1, key="vary_bpm")
    submitted = st.form_submit_button(
        {studio.VARIATIONS: "Make variations", studio.BLEND: "Blend"}.get(kind, "Make melodies"),
        type="primary",
        icon=":material/auto_awesome:",
        on_click=save,
        args=FORM,
    )

st.selectbox(
    "Instrument",
    list(INSTRUMENTS),
    key="vary_instrument",
    on_change=save,
    args=("vary_instrument",),
    help="General MIDI sound for the audio and the MIDI files; changing it makes nothing new.",
)

if submitted:
    problem = next(iter(problems.values()), None)
    if problem:
        st.error(f"Fix the melodies first: {problem}")
    else:
        try:
            settings = studio.VariationSettings(
                kind=kind,
                **{
                    name: st.session_state.get(f"vary_{name}", saved[f"vary_{name}"])
                    for name in FIELDS
                },
            )
            request = settings.to_request(melodies.get(1), melodies.get(2))
            model = wait_for(model_future, "the model")
            with st.spinner("Writing melodies..."):
                st.session_state["variation_result"] = studio.make_variations(model, request)
        except MelodyGenError as error:
            st.error(f"Cannot make them: {error}")
        except Exception:
            logger.exception("variations failed")
            st.error("Making them failed unexpectedly; the terminal running the app has details.")

# Results --------------------------------------------------------------------------------------
result = st.session_state.get("variation_result")
if result is not None:
    st.subheader("Results")
    synth, audio_reason = wait_for(synth_future, "the synthesizer")
    instrument = st.session_state["vary_instrument"]
    count = len(result.melodies)
    noun = result.item_label.lower() + ("s" if count != 1 else "")
    st.caption(
        f"{count} {noun} from {result.model_name}, seed {result.seed}, made in "
        f"{result.seconds:.2f} s."
    )
    for line in result.notices:
        st.caption(line)
    for line in result.warnings:
        st.warning(line, icon=":material/warning:")
    if synth is None:
        st.warning(
            f"Audio is unavailable: {audio_reason}. Piano rolls and MIDI downloads still work."
        )
    try:
        if result.item_label == "Step":  # a blend: a row of rolls, one player for all of them
            steps, whole = result.steps(instrument, synth)
            st.caption(
                f"The whole blend, step by step with a second between them ({whole.seconds:.0f} s):"
            )
            if whole.wav is not None:
                st.audio(whole.wav, format=studio.MIME_TYPES["wav"])
            files = st.container(horizontal=True)
            files.download_button(
                "Whole blend (MIDI)",
                whole.midi,
                file_name=f"{whole.stem}.mid",
                mime=studio.MIME_TYPES["mid"],
                on_click="ignore",
                icon=":material/download:",
                key="whole_mid",
            )
            if whole.wav is not None:
                files.download_button(
                    "Whole blend (WAV)",
                    lambda wav=whole.wav: wav,
                    file_name=f"{whole.stem}.wav",
                    mime=studio.MIME_TYPES["wav"],
                    on_click="ignore",
                    icon=":material/download:",
                    key="whole_wav",
                )
            row = st.container(horizontal=True)  # wraps when narrow
            for item in steps:
                with row.container(border=True, width=int(studio.STEP_WIDTH * 100) + 30):
                    st.image(item.png)
                    buttons = st.container(horizontal=True)
                    for label, data, suffix in [("MIDI", item.midi, "mid")] + (
                        [("WAV", lambda wav=item.wav: wav, "wav")] if item.wav is not None else []
                    ):
                        buttons.download_button(
                            label,
                            data,
                            file_name=f"{item.stem}.{suffix}",
                            mime=studio.MIME_TYPES[suffix],
                            on_click="ignore",
                            icon=":material/download:",
                            key=f"step_{suffix}_{item.index}",
                        )
        else:
            download_all = st.empty()  # filled once every melody is there
            for item in result.iter_files(instrument, synth):
                if item.index % 2 == 0:
                    cards = st.columns(2)
                with cards[item.index % 2].container(border=True):
                    if item.problem is not None:
                        st.error(f"{result.item_label} {item.index + 1}: {item.problem}")
                        continue
                    st.image(item.png)
                    if item.svg is not None:
                        st.image(item.svg, width="stretch")
                    elif item.notation_problem:
                        st.caption(f"No score: {item.notation_problem}")
                    if item.wav is not None:
                        st.audio(item.wav, format=studio.MIME_TYPES["wav"])
                    buttons = st.container(horizontal=True)
                    files = [("MIDI", item.midi, "mid")]
                    if item.wav is not None:
                        files.append(("WAV", lambda wav=item.wav: wav, "wav"))
                    if item.abc is not None:
                        files.append(("ABC", item.abc, "abc"))
                    if item.musicxml is not None:
                        files.append(("MusicXML", item.musicxml, "musicxml"))
                    for label, data, suffix in files:
                        buttons.download_button(
                            label,
                            data,
                            file_name=f"{item.stem}.{suffix}",
                            mime=studio.MIME_TYPES[suffix],
                            on_click="ignore",
                            icon=":material/download:",
                            key=f"vary_{suffix}_{item.index}",
                        )
            download_all.download_button(
                "Download all (zip)",
                lambda: result.zip(instrument, synth),
                file_name=result.archive_name,
                mime=studio.MIME_TYPES["zip"],
                on_click="ignore",
                icon=":material/folder_zip:",
                key="vary_download_all",
            )
    except MelodyGenError as error:
        st.error(f"Cannot render the results: {error}")
    except Exception:
        logger.exception("rendering failed")
        st.error("Rendering failed unexpectedly; the terminal running the app has details.")
