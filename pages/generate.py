"""Generate (the landing page): model, primer, settings, then listen, look and download.

Only layout lives here; ``melodygen.studio`` makes everything shown or downloaded.
What is slow to load (TensorFlow, the model and its compiled step, the synthesizer)
loads once per process on a background thread (``pages.common.loader``: a
``studio.BackgroundLoader`` held by ``st.cache_resource``), so the page is usable at once
and shared by every browser session. Settings and results stay in ``st.session_state``:
changing the instrument or downloading a file never generates again, and other pages
never reset them.

Settings are kept under one key of their own (``SAVED``, ``pages.common.KeptSettings``),
not in the widgets' keys: Streamlit drops a widget's value when a run does not draw it
(another page, another primer source). Widgets start from the saved value when they are
(re)drawn and save theirs when changed (form widgets when the form is submitted), so the
form always shows the values Generate uses.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import streamlit as st

from melodygen import studio
from melodygen.errors import MelodyGenError
from melodygen.io.primer import Primer, parse_primer
from melodygen.limits import RANGES, SECTION_BARS
from melodygen.render import INSTRUMENTS, SOUNDFONT_ENV, note_name
from pages.common import KeptSettings, loader, wait_for

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
    "meter": DEFAULTS.meter,
    "rhythm": DEFAULTS.rhythm,
    "title": DEFAULTS.title,
    "abc_primer": DEFAULTS.abc_primer,
    "form": DEFAULTS.form,
    "section_bars": DEFAULTS.section_bars,
    "vary_repeats": DEFAULTS.vary_repeats,
    "instrument": "Piano",
}
# Widgets inside the settings form: saved when the form is submitted.
FORM = [n for n in INITIAL if n not in ("primer_source", "instrument")]
SAVED = "studio_settings"
# Drawn for some primer sources only: restored just before they are drawn (a value set
# in a run that does not draw its widget would linger and win over the saved one later).
LATER = ("primer_text", "primer_bars", "primer_track")
kept = KeptSettings(SAVED, INITIAL, LATER)
saved, restored, save, put = kept.saved, kept.restored, kept.save, kept.put


@st.cache_data(show_spinner=False, max_entries=32)
def primer_picture(primer: Primer, qpm: float, meter: str) -> bytes:
    """The primer's piano roll at the tempo and in the meter the run will use."""
    return studio.primer_png(
        primer, qpm=qpm, meter=studio.StudioSettings(meter=meter).meter_for(primer)
    )


@st.cache_data(show_spinner=False, max_entries=32)
def primer_score(primer: Primer, qpm: float, meter: str) -> str | None:
    """The primer's score (SVG), or None when it has none to show."""
    try:
        return studio.primer_svg(
            primer, qpm=qpm, meter=studio.StudioSettings(meter=meter).meter_for(primer)
        )
    except MelodyGenError:
        return None


def sample_again() -> None:
    """Button callback: generate the last request again with a new seed."""
    st.session_state["sample_again"] = True


@st.cache_data(show_spinner=False, max_entries=8)
def read_upload(name: str, data: bytes) -> studio.MidiUpload:
    return studio.read_upload(name, data)


# A primer is read once per text or file, track and bars, not on every run of the page:
# reading one parses the file again and estimates its key with music21.
@st.cache_data(show_spinner=False, max_entries=32)
def typed_primer(text: str) -> Primer:
    return parse_primer(text)


@st.cache_data(show_spinner=False, max_entries=32)
def uploaded_primer(name: str, data: bytes, track: int, bars: int) -> Primer:
    return studio.upload_primer(read_upload(name, data), track, bars)


def continue_from(index: int) -> None:
    """Button callback: the chosen variation becomes the typed primer of the next run.

    The model pickers switch to the model that made it, so it is continued by the same one.
    """
    result = st.session_state.get("result")
    if result is None or index >= len(result.melodies):
        return
    try:
        follow = studio.continuation(result, index)
    except MelodyGenError as error:
        st.session_state["notice"] = ("error", str(error))
        return
    made_by = {entry.name: entry for entry in studio.discover_models()}.get(result.model_name)
    if made_by is None:
        st.session_state["notice"] = (
            "error",
            f"The model that made this variation ({result.model_name}) is no longer there.",
        )
        return
    put("style", made_by.style)
    put("model", made_by.name)
    put("primer_source", TYPED)
    put("primer_text", follow.text)
    put("bars", follow.bars)
    put("mode", follow.mode)
    put("meter", studio.FROM_PRIMER)  # a meter other than 4/4 is written first in the text
    put("form", studio.FREE)  # the whole tune is the primer now: longer than a section
    key = ""
    if follow.key is not None:
        put("key", follow.key)
        key = f" in {follow.key} {studio.mode_label(follow.mode)}"
    st.session_state["notice"] = (
        "success",
        f"Variation {index + 1} is now the primer, to be continued by {made_by.label}. "
        f"The length is set to {follow.bars} bars{key}: press Generate to continue it.",
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
    put("style", styles[0])
left, right = st.columns(2)
style = left.selectbox(
    "Style",
    styles,
    key="style",
    on_change=save,
    args=("style",),
    format_func=lambda s: s.replace("_", " ").title(),
    help="The music the model learned from.",
)
names = [entry.name for entry in models if entry.style == style]
if st.session_state.get("model") not in names:
    put("model", names[0])
# Models of one family are named by configuration; of several, by family and configuration.
several = len({by_name[n].family for n in names}) > 1
named = [by_name[n].kind if several else by_name[n].config for n in names]
model_labels = {n: k if named.count(k) == 1 else n for n, k in zip(names, named, strict=True)}
entry = by_name[
    right.selectbox(
        "Configuration",
        names,
        key="model",
        on_change=save,
        args=("model",),
        format_func=lambda n, labels=model_labels: labels.get(n, n),
        help="The network design; the Models page compares them.",
    )
]
st.caption(entry.description)
if entry.model_problem:  # damaged, or of a family this installation lacks: no load to try
    st.error(f"The model {entry.name} could not be loaded: {entry.model_problem}")
    st.stop()
options = studio.request_options(entry)  # what the model's family reads: its controls
shown_controls = studio.controls(options)
model_future = loader().model(entry.path, entry.stamp, entry.name)
synth_future = loader().synth(os.environ.get(SOUNDFONT_ENV))  # after the model, on one thread
# Results are rendered in worker processes shared by every session (both cores; the model's
# generation here does not wait for Python's lock behind rendering); they start after both.
render_pool = loader().render_pool(os.environ.get(SOUNDFONT_ENV))


@st.fragment(run_every=1.0)
def loading_message() -> None:
    """Shown while the model loads; once it is there, the whole page is drawn again."""
    if model_future.done():
        st.rerun()
    st.info(
        f"Loading the model in the background ({loader().waited(model_future):.0f} s so far): "
        "TensorFlow, the weights and the compiled generation step, once per server. Choose "
        "the primer and settings meanwhile; Generate waits for it.",
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

# Primer ---------------------------------------------------------------------------------------
notice = st.session_state.pop("notice", None)
if "primer" in shown_controls:
    st.subheader("Primer")
    if notice:
        (st.success if notice[0] == "success" else st.error)(notice[1])
    source = st.radio(
        "Start from",
        [NOTHING, TYPED, MIDI],
        key="primer_source",
        on_change=save,
        args=("primer_source",),
        horizontal=True,
        help="Opening notes the model continues; with nothing, it starts on its own.",
    )
else:  # the model reads no note primer (an ABC model takes an ABC opening in the form)
    if notice:
        (st.success if notice[0] == "success" else st.error)(notice[1])
    source = NOTHING
primer = Primer(events=[], description="no primer")
primer_problem = None
upload = track = None
new_file = False
if source == MIDI:
    uploaded = st.file_uploader(
        "MIDI file",
        type=None,  # any file: one of another kind gets a message saying why it cannot be used
        key="primer_file",
        max_upload_size=studio.MAX_UPLOAD_MB,
        help=f"MIDI (.mid) or MusicXML (.musicxml, .mxl), at most {studio.MAX_UPLOAD_MB} MB; "
        "you choose the track and bars. Audio (.wav, .mp3) holds sound, not notes: export "
        "MIDI or MusicXML from the program that made it.",
    )
    if uploaded is not None:
        new_file = saved.get("upload_id") != uploaded.file_id
        saved["upload"] = (uploaded.name, uploaded.getvalue())
        saved["upload_id"] = uploaded.file_id
    elif saved.get("upload"):  # uploaded before another page was visited: still the primer
        st.caption(f"Using {saved['upload'][0]}, uploaded before; upload a file to replace it.")
    if not saved.get("upload"):
        primer_problem = "choose a MIDI file, or start from nothing"
        st.info("Upload a MIDI file to take its opening bars as the primer.")
    else:
        try:
            upload = read_upload(*saved["upload"])
        except MelodyGenError as error:
            primer_problem = str(error)
            st.error(primer_problem)
        except Exception:  # a reader's bug must not follow the user around the page
            logger.exception("reading the upload failed")
            primer_problem = "this file could not be read; the terminal running the app has details"
            st.error(primer_problem)
        else:
            if new_file or st.session_state.get(restored("primer_track")) not in upload.usable:
                put("primer_track", studio.default_track(upload))
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
            track = st.selectbox(
                "Track",
                upload.usable,
                key=restored("primer_track"),
                on_change=save,
                args=("primer_track",),
                format_func=lambda i: studio.track_label(upload.tracks[i]),
            )

# Settings: nothing happens until a button of the form is pressed -------------------------------
# Typed notes and the bars of a file are in the form too: a text box commits its text when
# it loses focus, and the page drawn again then would swallow the click on Generate.
with st.form("settings"):
    if source == TYPED:
        text = st.text_area(
            "Notes",
            key=restored("primer_text"),
            placeholder="C4 E4 G4:2 r:2 | C5 - -",
            height=68,
            help=studio.SYNTAX_HINT,
        )
        st.caption(
            f"{studio.SYNTAX_HINT} The notes are checked, and their piano roll drawn, when "
            "you press Check notes (or Ctrl+Enter) or Generate."
        )
        st.form_submit_button("Check notes", on_click=save, args=FORM)
        try:
            primer = typed_primer(text)
        except MelodyGenError as error:
            primer_problem = str(error)
            st.error(primer_problem)
    elif upload is not None:
        left, right = st.columns([1, 3])
        bars = left.number_input(
            "Bars to use", min_value=1, max_value=32, key=restored("primer_bars")
        )
        right.form_submit_button("Use these bars", on_click=save, args=FORM)
        try:
            primer = uploaded_primer(*saved["upload"], track, int(bars))
        except MelodyGenError as error:
            primer_problem = str(error)
            st.error(primer_problem)
        else:
            if track in upload.notes:
                st.caption(f"Track {track}: {upload.notes[track]}.")
            if new_file and primer.qpm:
                put("bpm", int(min(300, max(20, round(primer.qpm)))))
                st.caption(f"Tempo set to the file's {primer.qpm:g} BPM.")
    if primer.events and primer_problem is None:
        shown = studio.StudioSettings(meter=saved.get("meter", studio.FROM_PRIMER))
        meter = shown.meter_for(primer)
        st.image(
            primer_picture(primer, float(saved["bpm"]), saved.get("meter", studio.FROM_PRIMER))
        )
        score = primer_score(primer, float(saved["bpm"]), saved.get("meter", studio.FROM_PRIMER))
        if score is not None:
            st.image(score, caption="The primer as a score", width="stretch")
        key = f" Key: {primer.key_label()}." if primer.key_label() else ""
        length = primer.steps / meter.steps_per_bar
        st.caption(
            f"Primer: {primer.description}, {length:g} bar{'' if length == 1 else 's'} of "
            f"{meter}.{key}"
        )
        too_long = studio.primer_problem(primer, shown)
        if too_long:
            st.warning(f"This primer is too long: {too_long}.")
        if model_future.done() and model_future.exception() is None:
            shown = studio.StudioSettings(key=saved["key"], mode=saved["mode"])
            for line in studio.primer_notices(model_future.result(), primer, shown):
                st.caption(line)
    if {"title", "rhythm", "abc_primer"} & shown_controls:
        st.subheader("Tune")
        left, right = st.columns(2)
        if "title" in shown_controls:
            left.text_input(
                "Title (T:)",
                key="title",
                max_chars=200,
                placeholder="the model's own",
                help="The tune's title; empty: the model writes one.",
            )
        if "rhythm" in shown_controls:
            right.text_input(
                "Rhythm (R:)",
                key="rhythm",
                max_chars=40,
                placeholder="jig, reel, hornpipe, polka...",
                help="The dance type, as ABC's R: field names it; empty: none asked for.",
            )
        if "abc_primer" in shown_controls:
            st.text_area(
                "ABC opening",
                key="abc_primer",
                max_chars=4000,
                height=96,
                placeholder="M:6/8\nK:G\n|:GAB c2d|",
                help="Header fields (M:, L:, K:, R:) and/or the opening bars, typed or pasted; "
                "the model writes on from there. Fields set above win over the same fields here.",
            )
    st.subheader("Music")
    left, middle, right = st.columns(3)
    if "key" in shown_controls:
        left.selectbox(
            "Key",
            studio.KEY_CHOICES,
            key="key",
            help="Key of the result. Auto keeps the primer's key (C major / A minor without "
            "one); an ABC model writes its own K: line.",
        )
    if "mode" in shown_controls:
        middle.selectbox("Mode", studio.MODE_CHOICES, key="mode", format_func=studio.mode_label)
    if "in_scale" in shown_controls:
        right.toggle("Stay in scale", key="in_scale", help="Only notes of the key and mode.")
    if "meter" in shown_controls:
        right.selectbox(
            "Meter",
            studio.METER_CHOICES,
            key="meter",
            format_func=lambda m: (
                "The model's own"
                if m == studio.FROM_PRIMER and "primer" not in shown_controls
                else m
            ),
            help="Time signature of the result: bar lines, the length in bars, the MIDI file. "
            "From primer: the primer file's (or one typed first, like 3/4 D4 F#4 A4), else "
            "4/4; an ABC model writes its own M: line.",
        )
    left, middle, right = st.columns(3)
    if "bpm" in shown_controls:
        left.number_input("Tempo (BPM)", min_value=20, max_value=300, step=1, key="bpm")
    if "bars" in shown_controls:
        middle.number_input(
            "Length in bars",
            min_value=1,
            max_value=studio.MAX_BARS,
            step=1,
            key="bars",
            help=f"Total length in bars of the meter, primer included; at most {studio.MAX_BARS} "
            "(a form sets its own length).",
        )
    if "seed" in shown_controls:
        right.number_input(
            "Seed",
            min_value=0,
            max_value=RANGES["seed"].high,
            step=1,
            key="seed",
            placeholder="random",
            help="The same seed and settings give the same melodies; empty: new ones each time.",
        )
    if "form" in shown_controls:
        left, middle, right = st.columns(3)
        left.selectbox(
            "Form",
            studio.FORM_CHOICES,
            key="form",
            format_func=lambda f: "Free (no form)" if f == studio.FREE else f,
            help="Sections that return: AABB plays section A twice, then B twice. The "
            "primer is the start of A; the form sets the length, and the tune ends on the "
            "key's tonic. Free: the model goes where it likes.",
        )
        middle.selectbox(
            "Section bars",
            SECTION_BARS,
            key="section_bars",
            help="Bars of each section (a jig's or reel's part is 8).",
        )
        right.toggle(
            "Vary repeats",
            key="vary_repeats",
            help="Off: a returning section is played note for note. On: it keeps its first "
            "half and ends anew, like first and second endings.",
        )
        words = studio.StudioSettings(
            form=saved.get("form", studio.FREE),
            section_bars=saved.get("section_bars", DEFAULTS.section_bars),
            meter=saved.get("meter", studio.FROM_PRIMER),
        ).form_words(primer)
        if words:
            st.caption(words)
    left, right = st.columns(2)
    if "temperature" in shown_controls:
        left.slider(
            "Temperature",
            min_value=0.1,
            max_value=2.0,
            step=0.05,
            key="temperature",
            help="Lower: safer, more predictable. Higher: wilder, more surprising.",
        )
    if "variations" in shown_controls:
        right.slider("Variations", min_value=1, max_value=studio.MAX_VARIATIONS, key="variations")
    advanced = {"beam", "top_k", "top_p", "pitch_range"} & shown_controls
    with st.expander("Advanced") if advanced else st.container():
        left, middle, right = st.columns(3)
        if "beam" in shown_controls:
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
        if "top_k" in shown_controls:
            left.number_input(
                "Top-k (0 = off)",
                min_value=0,
                max_value=128,
                key="top_k",
                help="Choose only among the k likeliest next events.",
            )
        if "top_p" in shown_controls:
            right.slider(
                "Top-p (1 = off)",
                min_value=0.05,
                max_value=1.0,
                step=0.05,
                key="top_p",
                help="Choose only among the likeliest events that together hold this probability.",
            )
        if "pitch_range" in shown_controls:
            left, right = st.columns(2)
            pitches = list(range(128))
            left.selectbox("Lowest note", pitches, key="min_pitch", format_func=note_name)
            right.selectbox("Highest note", pitches, key="max_pitch", format_func=note_name)
    submitted = st.form_submit_button(
        "Generate", type="primary", icon=":material/music_note:", on_click=save, args=FORM
    )

st.selectbox(
    "Instrument",
    list(INSTRUMENTS),
    key="instrument",
    on_change=save,
    args=("instrument",),
    help="General MIDI sound for the audio and the MIDI files; changing it does not generate.",
)


def run(request_of) -> None:
    """Generate with the request ``request_of()`` makes; errors as one line on the page."""
    try:
        request = request_of()
        model = wait_for(model_future, "the model")
        # A still line, not st.spinner: a spinning icon keeps the browser drawing frames
        # (a tenth of a core per window while sessions wait their turn for the model).
        busy = st.empty()
        busy.caption(":material/hourglass_top: Generating...")
        try:
            st.session_state["result"] = studio.generate(model, request, render_pool)
        finally:
            busy.empty()
    except MelodyGenError as error:
        st.error(f"Cannot generate: {error}")
    except Exception:
        logger.exception("generation failed")
        st.error("Generation failed unexpectedly; the terminal running the app has details.")


if submitted:
    if primer_problem and "primer" in shown_controls:
        st.error(f"Fix the primer first: {primer_problem}")
    else:
        settings = studio.StudioSettings(
            **{
                f.name: st.session_state.get(f.name, saved.get(f.name, getattr(DEFAULTS, f.name)))
                for f in dataclasses.fields(studio.StudioSettings)
            }
        )
        run(lambda: settings.to_request(primer, options))
elif st.session_state.pop("sample_again", False) and st.session_state.get("result") is not None:
    last = st.session_state["result"]
    if last.model_name == entry.name:  # the model that made it is the one loaded here
        run(lambda: studio.sample_again(last))
    else:
        st.error(f"Choose {last.model_name} again to sample its tunes again.")

# Results --------------------------------------------------------------------------------------
result = st.session_state.get("result")
if result is not None:
    st.subheader("Results")
    synth, audio_reason = wait_for(synth_future, "the synthesizer")
    instrument = st.session_state["instrument"]
    count = len(result.melodies)
    st.caption(
        f"{count} variation{'s' if count != 1 else ''} from {result.model_name}, seed "
        f"{result.seed}, generated in {result.seconds:.2f} s. Grey notes on shaded bars are "
        "the primer; blue notes are new."
        + (f" Key: {result.key_label}." if result.key_label else "")
    )
    if result.form_label:
        st.caption(result.form_label + ". Red lines and letters mark the sections.")
    for line in result.notices:
        st.caption(line)
    for line in result.warnings:
        st.warning(line, icon=":material/warning:")
    if synth is None:
        st.warning(
            f"Audio is unavailable: {audio_reason}. Piano rolls and MIDI downloads still work."
        )
    download_all = st.empty()  # filled once every variation is there
    # Each variation is shown as soon as it is rendered: the first can be played while the
    # others are still being drawn. Big files (WAV, zip) are handed over only when their
    # button is pressed, so they are not copied into the server's media store every run.
    try:
        for item in result.iter_files(instrument, synth, render_pool):
            if item.index % 2 == 0:
                row = st.columns(2)
            with row[item.index % 2].container(border=True):
                if item.problem is not None:
                    # A tune its family could not read: its text and why, never a traceback.
                    st.error(
                        f"Variation {item.index + 1} could not be read as music: {item.problem}"
                    )
                    st.code(item.text or item.abc or "", language=None)
                    left, right = st.columns([1, 2])
                    if item.abc is not None:
                        left.download_button(
                            "ABC",
                            item.abc,
                            file_name=f"{item.stem}.abc",
                            mime=studio.MIME_TYPES["abc"],
                            on_click="ignore",
                            icon=":material/download:",
                            key=f"abc_{item.index}",
                        )
                    right.button(
                        "Sample again",
                        key=f"again_{item.index}",
                        on_click=sample_again,
                        icon=":material/casino:",
                        help="Generate again with the same settings and a new seed.",
                    )
                    continue
                st.image(item.png)
                if item.svg is not None:
                    st.image(item.svg, width="stretch")
                elif item.notation_problem:
                    st.caption(f"No score: {item.notation_problem}")
                if item.text is not None:
                    st.code(item.text, language=None)
                if item.wav is not None:
                    st.audio(item.wav, format=studio.MIME_TYPES["wav"])
                row_of_files = st.container(horizontal=True)  # wraps when narrow
                files = [("MIDI", item.midi, "mid")]
                if item.wav is not None:
                    files.append(("WAV", lambda wav=item.wav: wav, "wav"))
                if item.abc is not None:
                    files.append(("ABC", item.abc, "abc"))
                if item.musicxml is not None:
                    files.append(("MusicXML", item.musicxml, "musicxml"))
                for label, data, suffix in files:
                    row_of_files.download_button(
                        label,
                        data,
                        file_name=f"{item.stem}.{suffix}",
                        mime=studio.MIME_TYPES[suffix],
                        on_click="ignore",
                        icon=":material/download:",
                        key=f"{suffix}_{item.index}",
                    )
                if result.continuable:
                    st.button(
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
