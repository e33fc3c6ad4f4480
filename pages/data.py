"""Data: explore a collection of the user's own MIDI and ABC files before training on it.

Only layout lives here. ``melodygen.uploads.explore_uploads`` checks the uploads (sizes,
counts, unsafe zips: one line each), saves the music files in this session's private
folder (``uploads.SessionFiles``) and explores them (``melodygen.explore``); the page keeps
the numbers, the figures' PNGs and the report in ``st.session_state`` (so reruns redraw
nothing), and the folder only for the Train page, until the next exploration, the user's
*Delete* or the session's end. Nothing runs until the form's button is pressed. Widget
keys start with ``data_``.
"""

from __future__ import annotations

import logging

import streamlit as st

from melodygen import uploads
from melodygen.errors import MelodyGenError, one_line
from melodygen.explore import FIGURES, Table, draw, figure_png, write_report

logger = logging.getLogger("melodygen.app")

if not st.session_state.get("studio_routed"):  # opened before app.py ran: go through it
    st.session_state["studio_target"] = "pages/data.py"
    st.switch_page("app.py")

RESULT = "data_result"

st.title("Data")
st.markdown(
    "See what a collection of your own music holds before training on it: its instruments, "
    "song and melody lengths, notes per bar, pitch range, keys, meters, tempos and dance "
    "types, and which melodies MelodyGen's training would keep and why the others are "
    "dropped. Every figure's numbers download as CSV, and the whole page as one HTML report."
)
st.caption(
    uploads.limits_text(uploads.MAX_FILES)
    + " Nothing you upload is kept after your visit: the music files wait in a private "
    "folder of your session, so that the Train page can train on them without a second "
    "upload, and are deleted when you explore again, press Delete or leave the studio."
)

with st.form("data_form", border=False):
    files = st.file_uploader(
        "MIDI, ABC or zip files",
        type=None,  # any file: one of another kind is listed as a problem, saying why
        accept_multiple_files=True,
        key="data_files",
        max_upload_size=uploads.MAX_FILE_MB,
        help=f"Select many files at once, or a .zip of a folder (at most {uploads.MAX_FILE_MB} "
        "MB each). Other files (a README, cover art) are listed as problems and left out.",
    )
    submitted = st.form_submit_button("Explore", type="primary", icon=":material/bar_chart:")


def explored(items: list[tuple[str, bytes]]) -> dict | None:
    """The exploration, its tables, figures and report; None (and one line) if refused."""
    bar = st.progress(0.0, text=f"Reading {len(items):,} uploads...")

    def on_file(done: int, total: int) -> None:
        bar.progress(done / total, text=f"Read {done:,} of {total:,} music files")

    keep, done = uploads.SessionFiles(), False
    try:
        exploration = uploads.explore_uploads(
            items, max_files=uploads.MAX_FILES, on_file=on_file, keep=keep
        )
        bar.progress(1.0, text="Drawing the figures...")
        tables = exploration.tables()
        images = {name: figure_png(draw(tables[name])) for name in FIGURES}
        report = write_report(exploration, images, tables)
        done = True
    except MelodyGenError as error:
        st.error(one_line(error, limit=400), icon=":material/error:")
        return None
    except Exception:
        logger.exception("exploring uploads failed")
        st.error("Exploring failed unexpectedly; the terminal running the app has details.")
        return None
    finally:
        bar.empty()
        if not done:  # refused or failed: no file waits
            keep.discard()
    st.session_state[uploads.SESSION_FILES_KEY] = keep
    return {"exploration": exploration, "tables": tables, "images": images, "report": report}


def forget_files() -> None:
    """Delete the session's kept files (a new exploration, or the user's button)."""
    kept = st.session_state.pop(uploads.SESSION_FILES_KEY, None)
    if kept is not None:
        kept.discard()


if submitted:
    st.session_state.pop(RESULT, None)
    forget_files()
    if not files:
        st.info("Choose some MIDI, ABC or zip files first.", icon=":material/upload_file:")
    else:
        result = explored([(file.name, file.getvalue()) for file in files])
        if result is not None:
            st.session_state[RESULT] = result


def csv_button(table: Table, label: str = "CSV", where=st) -> None:
    where.download_button(
        label,
        table.csv_text(),
        file_name=f"{table.name}.csv",
        mime="text/csv",
        on_click="ignore",
        icon=":material/download:",
        key=f"data_csv_{table.name}",
    )


def show_table(table: Table) -> None:
    """A table as a dataframe; "" (no value) in a column of numbers becomes an empty cell."""
    columns = {}
    for index, name in enumerate(table.columns):
        values = [row[index] for row in table.rows]
        if any(isinstance(value, (int, float)) for value in values):
            values = [None if value == "" else value for value in values]
        columns[name] = values
    st.dataframe(columns, hide_index=True, width="stretch")


# Results --------------------------------------------------------------------------------------
result = st.session_state.get(RESULT)
if result is not None:
    exploration = result["exploration"]
    tables: dict[str, Table] = result["tables"]
    st.subheader("Summary")
    counts = st.columns(4)
    counts[0].metric("Files", f"{len(exploration.files):,}")
    counts[1].metric("Songs", f"{len(exploration.songs):,}")
    counts[2].metric("Melodies kept", f"{exploration.extraction.get('melodies_kept', 0):,}")
    counts[3].metric("Files with problems", f"{exploration.files_with_problems:,}")
    st.caption("  \n".join(line.strip() for line in exploration.summary_lines()))
    kept = st.session_state.get(uploads.SESSION_FILES_KEY)
    if kept is not None and kept.available:
        line = st.container(horizontal=True, vertical_alignment="center")
        line.caption(
            f"The {kept.describe()} wait for the Train page (choose *the files explored on "
            "the Data page* there) until you explore again or leave."
        )
        line.button("Delete them now", key="data_forget", on_click=forget_files)
    downloads = st.container(horizontal=True)
    downloads.download_button(
        "Report (HTML, one page)",
        result["report"],
        file_name="report.html",
        mime="text/html",
        on_click="ignore",
        icon=":material/download:",
        key="data_report",
    )
    downloads.download_button(
        "Everything (zip: report, PNG and CSV)",
        lambda: uploads.exploration_zip(exploration, result["images"], tables),
        file_name="exploration.zip",
        mime="application/zip",
        on_click="ignore",
        icon=":material/download:",
        key="data_zip",
    )

    st.subheader("Figures")
    for start in range(0, len(FIGURES), 2):
        for column, name in zip(st.columns(2), FIGURES[start : start + 2], strict=False):
            with column.container(border=True):
                table = tables[name]
                st.image(result["images"][name], caption=table.note)
                csv_button(table, f"{name}.csv")

    st.subheader(f"Songs ({len(tables['songs'].rows):,})")
    show_table(tables["songs"])
    csv_button(tables["songs"], "songs.csv")

    st.subheader(f"Problems ({len(tables['problems'].rows):,})")
    if tables["problems"].rows:
        show_table(tables["problems"])
        csv_button(tables["problems"], "problems.csv")
    else:
        st.caption("Every file was read and gives at least one melody.")
