"""Generate (the landing page): model, primer, settings, then listen, look and download.

Only layout lives here; ``melodygen.studio`` makes everything shown or downloaded.
Models and the synthesizer load once per process (``st.cache_resource``) and are
shared by every browser session; results stay in ``st.session_state``, so changing
the instrument or downloading a file never generates again.
"""

from __future__ import annotations

import logging
import os

import streamlit as st

from melodygen import studio
from melodygen.errors import MelodyGenError
from melodygen.primer import Primer, parse_primer
from melodygen.render import INSTRUMENTS, SOUNDFONT_ENV, note_name

logger = logging.getLogger("melodygen.app")

if not st.session_state.get("studio_routed"):  # opened before app.py ran: go through it
    st.session_state["studio_target"] = "pages/generate.py"
    st.switch_page("app.py")

NOTHING, TYPED, MIDI = "Nothing", "Typed notes", "MIDI file"
DEFAULTS = studio.StudioSettings()
INITIAL = {
    "primer_source": NOTHING,
    "primer_text": "",
    "primer_bars": 2,
    "key": DEFAULTS.key,
    "mode": DEFAULTS.mode,
    "in_scale": DEFAULTS.in_scale,
    "bpm": int(DEFAULTS.bpm),
    "bars": DEFAULTS.bars,
    "temperature": DEFAULTS.temperature,
    "variations": DEFAULTS.variations,
    "seed": DEFAULTS.seed,
    "beam_size": DEFAULTS.beam_size,
    "branch_factor": DEFAULTS.branch_factor,
    "steps_per_iteration": DEFAULTS.steps_per_iteration,
    "top_k": DEFAULTS.top_k,
    "top_p": DEFAULTS.top_p,
    "min_pitch": DEFAULTS.min_pitch,
    "max_pitch": DEFAULTS.max_pitch,
    "instrument": "Piano",
}
# Streamlit forgets a widget's value when a run does not draw it (another page, another
# primer source); writing the values back keeps them, and the defaults fill the rest.
for name in [*INITIAL, "style", "model", "primer_track"]:
    if name in st.session_state:
        st.session_state[name] = st.session_state[name]
for name, value in INITIAL.items():
    st.session_state.setdefault(name, value)


@st.cache_resource(show_spinner="Loading the model...", max_entries=8)
def load_model(path: str, stamp: float, name: str) -> studio.SharedModel:
    """One loaded model per checkpoint (and file date) for the whole server."""
    model = studio.SharedModel(path, name=name)
    model.warm_up(DEFAULTS.variations)
    logger.info("loaded model %s from %s", name, path)
    return model


@st.cache_resource(show_spinner="Loading the synthesizer...")
def load_synth(soundfont_setting: str | None):
    """The synthesizer and SoundFont, once per process; (None, reason) without audio."""
    return studio.load_synth()


@st.cache_data(show_spinner=False, max_entries=32)
def primer_picture(events: tuple[int, ...], qpm: float | None, description: str) -> bytes:
    return studio.primer_png(Primer(events=list(events), qpm=qpm, description=description))


@st.cache_data(show_spinner=False, max_entries=8)
def read_upload(name: str, data: bytes) -> studio.MidiUpload:
    return studio.read_midi_upload(name, data)


def continue_from(index: int) -> None:
    """Button callback: the chosen variation becomes the typed primer of the next run."""
    result = st.session_state.get("result")
    if result is None or index >= len(result.melodies):
        return
    try:
        follow = studio.continuation(result, index)
    except MelodyGenError as error:
        st.session_state["notice"] = ("error", str(error))
        return
    st.session_state["primer_source"] = TYPED
    st.session_state["primer_text"] = follow.text
    st.session_state["bars"] = follow.bars
    st.session_state["mode"] = follow.mode
    key = ""
    if follow.key is not None:
        st.session_state["key"] = follow.key
        key = f" in {follow.key} {studio.mode_label(follow.mode)}"
    st.session_state["notice"] = (
        "success",
        f"Variation {index + 1} is now the primer. The length is set to {follow.bars} bars"
        f"{key}: press Generate to continue it.",
    )


st.title("Generate")

# Model ----------------------------------------------------------------------------------------
models = studio.discover_models()
if not models:
    st.error(
        f"No trained model found in {studio.checkpoints_dir()}. Put a checkpoint folder "
        f"there (one with melodygen.json), or set {studio.CHECKPOINTS_ENV} to a folder "
        "that holds some; the README says how to train one."
    )
    st.stop()
by_name = {entry.name: entry for entry in models}
styles = sorted({entry.style for entry in models})
if st.session_state.get("style") not in styles:
    st.session_state["style"] = styles[0]
left, right = st.columns(2)
style = left.selectbox(
    "Style",
    styles,
    key="style",
    format_func=lambda s: s.replace("_", " ").title(),
    help="The music the model learned from.",
)
names = [entry.name for entry in models if entry.style == style]
if st.session_state.get("model") not in names:
    st.session_state["model"] = names[0]
configs = [by_name[n].config for n in names]
entry = by_name[
    right.selectbox(
        "Configuration",
        names,
        key="model",
        format_func=lambda n: by_name[n].config if configs.count(by_name[n].config) == 1 else n,
        help="The network design; the Models page compares them.",
    )
]
st.caption(entry.description)
try:
    model = load_model(str(entry.path), entry.stamp, entry.name)
except MelodyGenError as error:
    st.error(f"The model {entry.name} could not be loaded: {error}")
    st.stop()

# Primer ---------------------------------------------------------------------------------------
st.subheader("Primer")
notice = st.session_state.pop("notice", None)
if notice:
    (st.success if notice[0] == "success" else st.error)(notice[1])
source = st.radio(
    "Start from",
    [NOTHING, TYPED, MIDI],
    key="primer_source",
    horizontal=True,
    help="Opening notes the model continues; with nothing, it starts on its own.",
)
primer = Primer(events=[], description="no primer")
primer_problem = None
if source == TYPED:
    text = st.text_area(
        "Notes",
        key="primer_text",
        placeholder="C4 E4 G4:2 r:2 | C5 - -",
        height=68,
        help=studio.SYNTAX_HINT,
    )
    st.caption(studio.SYNTAX_HINT)
    try:
        primer = parse_primer(text)
    except MelodyGenError as error:
        primer_problem = str(error)
        st.error(primer_problem)
elif source == MIDI:
    uploaded = st.file_uploader(
        "MIDI file",
        type=["mid", "midi"],
        key="primer_file",
        max_upload_size=studio.MAX_UPLOAD_MB,
        help=f"A .mid file of at most {studio.MAX_UPLOAD_MB} MB; you choose the track and bars.",
    )
    if uploaded is None:
        primer_problem = "choose a MIDI file, or start from nothing"
        st.info("Upload a MIDI file to take its opening bars as the primer.")
    else:
        try:
            upload = read_upload(uploaded.name, uploaded.getvalue())
        except MelodyGenError as error:
            primer_problem = str(error)
            st.error(primer_problem)
        else:
            new_file = st.session_state.get("primer_file_id") != uploaded.file_id
            if new_file or st.session_state.get("primer_track") not in upload.usable:
                st.session_state["primer_track"] = studio.default_track(upload)
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
            left, right = st.columns([3, 1])
            track = left.selectbox(
                "Track",
                upload.usable,
                key="primer_track",
                format_func=lambda i: studio.track_label(upload.tracks[i]),
            )
            bars = right.number_input("Bars to use", min_value=1, max_value=32, key="primer_bars")
            try:
                primer = studio.upload_primer(upload, track, int(bars))
            except MelodyGenError as error:
                primer_problem = str(error)
                st.error(primer_problem)
            else:
                if track in upload.notes:
                    st.caption(f"Track {track}: {upload.notes[track]}.")
                if new_file and primer.qpm:
                    st.session_state["bpm"] = int(min(300, max(20, round(primer.qpm))))
                    st.caption(f"Tempo set to the file's {primer.qpm:g} BPM.")
            st.session_state["primer_file_id"] = uploaded.file_id
if primer.events and primer_problem is None:
    st.image(primer_picture(tuple(primer.events), primer.qpm, primer.description))
    st.caption(f"Primer: {primer.description}, {primer.steps / 16:g} bars.")

# Settings: nothing happens until Generate is pressed -----------------------------------------
with st.form("settings"):
    st.subheader("Music")
    left, middle, right = st.columns(3)
    left.selectbox(
        "Key",
        studio.KEY_CHOICES,
        key="key",
        help="Key of the result. Auto keeps the primer's key (C major / A minor without one).",
    )
    middle.selectbox("Mode", studio.MODE_CHOICES, key="mode", format_func=studio.mode_label)
    right.toggle("Stay in scale", key="in_scale", help="Only notes of the key and mode.")
    left, middle, right = st.columns(3)
    left.number_input("Tempo (BPM)", min_value=20, max_value=300, step=1, key="bpm")
    middle.number_input(
        "Length in bars",
        min_value=1,
        max_value=studio.MAX_BARS,
        step=1,
        key="bars",
        help="Total length, primer included (4/4 bars).",
    )
    right.number_input(
        "Seed",
        min_value=0,
        max_value=2**31 - 1,
        step=1,
        key="seed",
        placeholder="random",
        help="The same seed and settings give the same melodies; empty: new ones each time.",
    )
    left, right = st.columns(2)
    left.slider(
        "Temperature",
        min_value=0.1,
        max_value=2.0,
        step=0.05,
        key="temperature",
        help="Lower: safer, more predictable. Higher: wilder, more surprising.",
    )
    right.slider("Variations", min_value=1, max_value=studio.MAX_VARIATIONS, key="variations")
    with st.expander("Advanced"):
        left, middle, right = st.columns(3)
        left.number_input(
            "Beam size",
            min_value=1,
            max_value=8,
            key="beam_size",
            help="Above 1: keep this many candidate melodies and return the likeliest.",
        )
        middle.number_input("Branch factor", min_value=1, max_value=8, key="branch_factor")
        right.number_input(
            "Steps per iteration", min_value=1, max_value=16, key="steps_per_iteration"
        )
        left, right = st.columns(2)
        left.number_input(
            "Top-k (0 = off)",
            min_value=0,
            max_value=128,
            key="top_k",
            help="Choose only among the k likeliest next events.",
        )
        right.slider(
            "Top-p (1 = off)",
            min_value=0.05,
            max_value=1.0,
            step=0.05,
            key="top_p",
            help="Choose only among the likeliest events that together hold this probability.",
        )
        left, right = st.columns(2)
        pitches = list(range(128))
        left.selectbox("Lowest note", pitches, key="min_pitch", format_func=note_name)
        right.selectbox("Highest note", pitches, key="max_pitch", format_func=note_name)
    submitted = st.form_submit_button("Generate", type="primary", icon=":material/music_note:")

st.selectbox(
    "Instrument",
    list(INSTRUMENTS),
    key="instrument",
    help="General MIDI sound for the audio and the MIDI files; changing it does not generate.",
)

if submitted:
    if primer_problem:
        st.error(f"Fix the primer first: {primer_problem}")
    else:
        settings = studio.StudioSettings(
            key=st.session_state["key"],
            mode=st.session_state["mode"],
            in_scale=st.session_state["in_scale"],
            bpm=st.session_state["bpm"],
            bars=st.session_state["bars"],
            temperature=st.session_state["temperature"],
            variations=st.session_state["variations"],
            seed=st.session_state["seed"],
            beam_size=st.session_state["beam_size"],
            branch_factor=st.session_state["branch_factor"],
            steps_per_iteration=st.session_state["steps_per_iteration"],
            top_k=st.session_state["top_k"],
            top_p=st.session_state["top_p"],
            min_pitch=st.session_state["min_pitch"],
            max_pitch=st.session_state["max_pitch"],
        )
        try:
            request = settings.to_request(primer)
            with st.spinner("Generating..."):
                st.session_state["result"] = studio.generate(model, request)
        except MelodyGenError as error:
            st.error(f"Cannot generate: {error}")
        except Exception:
            logger.exception("generation failed")
            st.error("Generation failed unexpectedly; the terminal running the app has details.")

# Results --------------------------------------------------------------------------------------
result = st.session_state.get("result")
if result is not None:
    st.subheader("Results")
    synth, audio_reason = load_synth(os.environ.get(SOUNDFONT_ENV))
    instrument = st.session_state["instrument"]
    count = len(result.melodies)
    st.caption(
        f"{count} variation{'s' if count != 1 else ''} from {result.model_name}, seed "
        f"{result.seed}, generated in {result.seconds:.2f} s. Grey notes on shaded bars are "
        "the primer; blue notes are new."
    )
    if synth is None:
        st.warning(
            f"Audio is unavailable: {audio_reason}. Piano rolls and MIDI downloads still work."
        )
    download_all = st.empty()  # filled once every variation is there
    # Each variation is shown as soon as it is rendered: the first can be played while the
    # others are still being drawn. Big files (WAV, zip) are handed over only when their
    # button is pressed, so they are not copied into the server's media store every run.
    try:
        for item in result.iter_files(instrument, synth):
            if item.index % 2 == 0:
                row = st.columns(2)
            with row[item.index % 2].container(border=True):
                st.image(item.png)
                if item.wav is not None:
                    st.audio(item.wav, format=studio.MIME_TYPES["wav"])
                left, middle, right = st.columns([1, 1, 2])
                left.download_button(
                    "MIDI",
                    item.midi,
                    file_name=f"{item.stem}.mid",
                    mime=studio.MIME_TYPES["mid"],
                    on_click="ignore",
                    icon=":material/download:",
                    key=f"midi_{item.index}",
                )
                if item.wav is not None:
                    middle.download_button(
                        "WAV",
                        lambda wav=item.wav: wav,
                        file_name=f"{item.stem}.wav",
                        mime=studio.MIME_TYPES["wav"],
                        on_click="ignore",
                        icon=":material/download:",
                        key=f"wav_{item.index}",
                    )
                right.button(
                    "Continue this one",
                    key=f"continue_{item.index}",
                    on_click=continue_from,
                    args=(item.index,),
                    help="Use this variation as the primer and generate further.",
                )
    except MelodyGenError as error:
        st.error(f"Cannot render the results: {error}")
    except Exception:
        logger.exception("rendering failed")
        st.error("Rendering failed unexpectedly; the terminal running the app has details.")
    else:
        download_all.download_button(
            "Download all (zip)",
            lambda: result.zip(instrument, synth),
            file_name=result.archive_name,
            mime=studio.MIME_TYPES["zip"],
            on_click="ignore",
            icon=":material/folder_zip:",
            key="download_all",
        )
