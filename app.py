"""MelodyGen studio: ``streamlit run app.py`` (or ``make run``) opens it in the browser.

The pages live in pages/ and only lay out widgets; what they show and offer for
download comes from ``melodygen.studio``. Logs go to the terminal that runs the app.
"""

from __future__ import annotations

import logging
import sys
from contextlib import nullcontext

import streamlit as st

if not logging.getLogger("melodygen").handlers:
    handler = logging.StreamHandler()  # stderr: the terminal running streamlit
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("melodygen").addHandler(handler)
    logging.getLogger("melodygen").setLevel(logging.INFO)

st.set_page_config(page_title="MelodyGen studio", page_icon=":material/music_note:", layout="wide")
# The server's first run imports the studio's libraries (seconds on a busy machine): the
# page says it is starting meanwhile. TensorFlow and the model load later, in the background.
starting = "melodygen.studio" not in sys.modules
with st.spinner("Starting the studio...", show_time=True) if starting else nullcontext():
    from melodygen import studio
studio.quiet_tensorflow()  # before TensorFlow is imported: no CUDA probe error without a GPU
# Generation gives Python's lock back at every TensorFlow call: switch threads often, so it
# gets it back soon from the other sessions' page runs (studio.SWITCH_INTERVAL says why).
sys.setswitchinterval(studio.SWITCH_INTERVAL)

# Streamlit's stale elements (``data-stale``) dim in one step, not in a one-second fade.
# (A comment, not a docstring: Streamlit's magic would write a bare string on the page.)
STALE_STYLE = '[data-stale="true"] { transition: opacity 0s linear 0.5s !important; }'

# Until some session has run this file, Streamlit serves a deep link (say /models) straight
# from pages/, skipping it; such a page sends the visitor here first, naming itself.
st.session_state["studio_routed"] = True
pages = [
    st.Page("pages/generate.py", title="Generate", icon=":material/piano:", default=True),
    st.Page("pages/variations.py", title="Variations and blends", icon=":material/shuffle:"),
    st.Page("pages/data.py", title="Data", icon=":material/bar_chart:"),
    st.Page("pages/train.py", title="Train", icon=":material/school:"),
    st.Page("pages/models.py", title="Models", icon=":material/monitoring:"),
    st.Page("pages/about.py", title="About and help", icon=":material/help:"),
]
page = st.navigation(pages)
# While a page runs, Streamlit fades what it has not drawn again yet (the last results,
# below a generation) over one second: some 60 repaints of every picture on the page.
# With the browser on the same cores as the server (the studio on a laptop), that took a
# third of the browsers' CPU in the seconds a musician waits for the first audio; the page
# dims in one step instead, after the same half second (benchmarks/README.md, eighth look).
st.html(f"<style>{STALE_STYLE}</style>")
if target := st.session_state.pop("studio_target", None):
    st.switch_page(target)
page.run()
