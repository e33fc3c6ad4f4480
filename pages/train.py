"""Train: fine-tune a model on your own music (or train a fresh one), and manage your models.

Only layout lives here. ``melodygen.jobs`` saves the uploads (checked by
``melodygen.uploads``) and trains in a worker process through the CLI's own path; its state
is on disk, so a reload or a second tab shows the same training. ``melodygen.user_models``
renames, deletes, zips and takes back uploaded model zips. Widget keys start with
``train_``.
"""

from __future__ import annotations

import logging
import time

import pandas as pd
import streamlit as st

from melodygen import jobs, studio, uploads, user_models
from melodygen.core.family import families, get_family
from melodygen.errors import MelodyGenError, one_line

logger = logging.getLogger("melodygen.app")

if not st.session_state.get("studio_routed"):  # opened before app.py ran: go through it
    st.session_state["studio_target"] = "pages/train.py"
    st.switch_page("app.py")

REFRESH_SECONDS = 2.0
FRESH = "A fresh model: "
EXPLORED = "The files explored on the Data page"
UPLOADED = "Files uploaded here"


def _minutes(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60} min {seconds % 60:02d} s"


def base_choices() -> dict[str, object]:
    """Picker label -> a catalog entry to fine-tune, or (family, configuration) to start fresh."""
    choices: dict[str, object] = {}
    for entry in studio.discover_models():
        if not entry.model_problem:
            choices[f"Fine-tune {entry.label}"] = entry
    for family in families():
        for config in family.configurations():
            choices[f"{FRESH}{family.title} · {config}"] = (family.name, config)
    return choices


def show_card(state: dict) -> None:
    """A finished job's model: what it learned from, and its bits per note against its base."""
    card = state.get("card") or {}
    comparison = card.get("comparison") or {}
    data, training = card.get("data") or {}, card.get("training") or {}
    st.markdown(f"**{card.get('name', state.get('model'))}**: {card.get('description', '')}")
    rows = [
        ("files", data.get("files")),
        ("training melodies", data.get("train_melodies")),
        ("held-out melodies", data.get("eval_melodies")),
        ("base model", training.get("base") or "none (fresh)"),
        ("steps", training.get("steps")),
        ("time", _minutes(training.get("wall_seconds") or 0)),
    ]
    st.markdown("\n".join(f"- {label}: {value}" for label, value in rows if value is not None))
    if data.get("encoding"):
        st.caption(f"Read with the base's encoding: {data['encoding']}")
    after, before = comparison.get("bits_per_note"), comparison.get("base_bits_per_note")
    if comparison.get("problem"):
        st.info(f"No held-out comparison: {comparison['problem']}")
    elif after is not None:
        columns = st.columns(2)
        if before is not None:
            columns[0].metric("Base: bits per note", f"{before:.3f}")
        columns[1].metric(
            "Now: bits per note",
            f"{after:.3f}",
            delta=None if before is None else f"{after - before:+.3f}",
            delta_color="inverse",  # fewer bits per note is better
        )
        st.caption(
            f"Measured on {comparison.get('tunes')} of your songs held out from training "
            f"({comparison.get('notes')} notes); lower is better."
        )


def show_curves(progress: jobs.Progress, family: str) -> None:
    curves = studio.metric_curves(progress.records)
    try:
        labels = get_family(family).figure_labels()
    except MelodyGenError:
        labels = {}
    # Figures with training and held-out curves first, in the family's order.
    ordered = [name for name in (*labels, *sorted(curves)) if name in curves]
    both = [name for name in ordered if {"train", "eval"} <= set(curves[name])]
    names = list(dict.fromkeys(both + ordered))[:3]
    if not names:
        st.caption("The curves appear after the first held-out evaluation.")
        return
    for tab, name in zip(
        st.tabs([labels.get(n, n).split(" (")[0] for n in names]), names, strict=True
    ):
        tab.line_chart(pd.DataFrame(curves[name]).set_index("step"))


@st.fragment(run_every=REFRESH_SECONDS)
def live(job_id: str) -> None:
    """The running job, redrawn every few seconds from its folder."""
    try:
        job = jobs.Job(jobs.jobs_dir() / job_id)
    except MelodyGenError as error:
        st.error(one_line(error))
        return
    progress = job.progress()
    spec = job.spec
    if progress.status in jobs.FINISHED:
        st.rerun(scope="app")  # the finished view is drawn once, outside the fragment
    step = f"step {progress.step:,}" if progress.step is not None else "starting"
    st.progress(
        progress.fraction,
        text=f"{progress.message or progress.status}: {step}, {_minutes(progress.time_left)} left",
    )
    columns = st.columns(3)
    columns[0].metric("Step", "-" if progress.step is None else f"{progress.step:,}")
    columns[1].metric("Time used", _minutes(progress.elapsed))
    columns[2].metric("Time left", _minutes(progress.time_left))
    if job.state.get("encoding"):
        st.caption(f"Read with the base's encoding: {job.state['encoding']}")
    show_curves(progress, spec.get("family", ""))
    if st.button("Cancel", key="train_cancel", icon=":material/stop:"):
        job.cancel()
        st.toast("Stopping: the best model so far is kept.")


st.title("Train")
st.markdown(
    "Teach a model your own music: fine-tune one of the models (shipped or yours) on your "
    "MIDI or ABC files, or train a fresh one, for a time you choose. Training runs in a "
    "separate process on this server, one at a time; this page (or another tab) shows its "
    "progress and can cancel it, keeping the best model so far. The new model joins your "
    "models, with a card comparing it with its base on your own held-out songs."
)

running = jobs.active_job()
current = running or jobs.latest_job()
if running is None:
    explored = st.session_state.get(uploads.SESSION_FILES_KEY)
    if explored is not None and not explored.available:
        explored = None
    with st.form("train_form", border=False):
        choices = base_choices()
        choice = st.selectbox("Start from", list(choices), key="train_base")
        source = UPLOADED
        if explored is not None:
            source = st.radio(
                "Music to train on",
                [EXPLORED, UPLOADED],
                captions=[explored.describe(), "MIDI, ABC or zip files, below"],
                key="train_source",
                horizontal=True,
            )
        files = st.file_uploader(
            "MIDI, ABC or zip files to train on",
            type=None,
            accept_multiple_files=True,
            key="train_files",
            max_upload_size=uploads.MAX_FILE_MB,
            help=uploads.limits_text(uploads.MAX_FILES),
        )
        minutes = st.number_input(
            "Time budget (minutes)",
            min_value=jobs.MIN_MINUTES,
            max_value=jobs.MAX_MINUTES,
            value=5.0,
            step=1.0,
            key="train_minutes",
            help="The whole job: reading the files, training, and the comparison at the end.",
        )
        name = st.text_input("Name of the new model (optional)", key="train_name")
        submitted = st.form_submit_button(
            "Start training", type="primary", icon=":material/school:"
        )
    st.caption(
        "Files you upload here, or explored on the Data page, are copied for the training "
        "and kept only while the model trains: its card lists their names. "
        f"{round(jobs.EVAL_RATIO * 100)}% of your songs are held out to measure it. "
        "A fine-tune reads your files with its base's own encoding (note classes, "
        "characters or tokens); what the base lacks is read as the nearest class or as "
        "unknown, and counted in one line on the new model's card."
    )
    if submitted:
        chosen = choices.get(choice)
        items = [(f.name, f.getvalue()) for f in files or []]
        use_explored = source == EXPLORED and explored is not None and explored.available
        try:
            if isinstance(chosen, tuple):
                family, config = chosen
                base = None
            else:
                family, config, base = None, None, chosen.path
            job = jobs.start_job(
                [] if use_explored else items, base=base, family=family, config=config,
                minutes=float(minutes), name=name.strip() or None,
                files=explored.folder if use_explored else None,
            )  # fmt: skip
        except MelodyGenError as error:
            st.error(one_line(error))
        else:
            logger.info("training job %s started", job.id)
            st.rerun()
else:
    st.info(
        f"Training {running.spec.get('base_name') or 'a fresh model'} "
        f"(started {running.spec.get('started_text')}); one training runs at a time."
    )

if current is not None:
    st.subheader("Training")
    if running is not None:
        live(running.id)
    else:
        state = current.state
        status = state.get("status")
        when = time.strftime("%H:%M", time.localtime(current.spec.get("started", 0)))
        if status == "failed":
            st.error(f"The training started at {when} failed: {state.get('message')}")
        else:
            word = "was cancelled; kept" if status == "cancelled" else "finished:"
            st.success(
                f"The training started at {when} {word} {state.get('model', 'no model')} "
                "is in your models (Generate and Models list it)."
                if state.get("model")
                else f"The training started at {when} was cancelled before a model was saved."
            )
            if state.get("model"):
                show_card(state)
                show_curves(current.progress(), current.spec.get("family", ""))

st.subheader("Your models")
try:
    folder = user_models.user_models_dir()
except MelodyGenError as error:
    st.error(one_line(error))
    st.stop()
mine = [entry for entry in studio.discover_models() if entry.user]
st.caption(
    f"Kept in {folder} (set {user_models.USER_MODELS_ENV} to move them). A model zip holds "
    "only its weights and JSON files."
)
for entry in mine:
    name = entry.path.name
    with st.expander(f"{entry.label}", expanded=False):
        st.markdown(entry.description)
        if entry.model_problem:
            st.error(f"This model cannot be loaded: {entry.model_problem}")
        columns = st.columns([3, 1, 1, 1])
        new_name = columns[0].text_input("New name", value=name, key=f"train_rename_{name}")
        if columns[1].button("Rename", key=f"train_do_rename_{name}"):
            try:
                user_models.rename_model(name, new_name)
            except MelodyGenError as error:
                st.error(one_line(error))
            else:
                st.rerun()
        columns[2].download_button(
            "Download",
            data=lambda name=name: user_models.model_zip(name),
            file_name=f"{name}.zip",
            mime="application/zip",
            key=f"train_download_{name}",
            on_click="ignore",
        )
        if columns[3].button("Delete", key=f"train_delete_{name}", icon=":material/delete:"):
            user_models.delete_model(name)
            st.rerun()
if not mine:
    st.caption("No models of your own yet.")

with st.form("train_upload_model", border=False):
    model_file = st.file_uploader(
        "Add a model (a .zip of its model.weights.h5 and melodygen.json)",
        type=["zip"],
        key="train_model_zip",
        max_upload_size=round(user_models.MAX_MODEL_ZIP_BYTES / 1e6),
    )
    added = st.form_submit_button("Add model", icon=":material/upload:")
if added:
    if model_file is None:
        st.error("choose a model zip to add")
    else:
        try:
            target = user_models.install_model_zip(model_file.getvalue(), model_file.name)
        except MelodyGenError as error:
            st.error(one_line(error))
        else:
            st.success(f"Added {target.name} to your models.")
