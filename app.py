"""MelodyGen studio: ``streamlit run app.py`` (or ``make run``) opens it in the browser.

The pages live in pages/ and only lay out widgets; what they show and offer for
download comes from ``melodygen.studio``. Logs go to the terminal that runs the app.
"""

from __future__ import annotations

import logging
import os

import streamlit as st

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter quiet

if not logging.getLogger("melodygen").handlers:
    handler = logging.StreamHandler()  # stderr: the terminal running streamlit
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("melodygen").addHandler(handler)
    logging.getLogger("melodygen").setLevel(logging.INFO)

st.set_page_config(page_title="MelodyGen studio", page_icon=":material/music_note:", layout="wide")

# Until some session has run this file, Streamlit serves a deep link (say /models) straight
# from pages/, skipping it; such a page sends the visitor here first, naming itself.
st.session_state["studio_routed"] = True
pages = [
    st.Page("pages/generate.py", title="Generate", icon=":material/piano:", default=True),
    st.Page("pages/models.py", title="Models", icon=":material/monitoring:"),
    st.Page("pages/about.py", title="About and help", icon=":material/help:"),
]
page = st.navigation(pages)
if target := st.session_state.pop("studio_target", None):
    st.switch_page(target)
page.run()
