"""What the studio's pages share: the process's model loader and settings that survive
other pages.

Not a page itself (``app.py`` lists the pages). The library never imports Streamlit, so
this lives beside the pages rather than in ``melodygen.studio``.
"""

from __future__ import annotations

import streamlit as st

from melodygen import studio


@st.cache_resource
def loader() -> studio.BackgroundLoader:
    """The process's loader: models and the synthesizer, loaded on a background thread.
    One for every page and session, so each model is loaded once per server."""
    return studio.BackgroundLoader(warm_up_rows=studio.StudioSettings().variations)


def wait_for(future, what: str):
    """The future's result, with a spinner while it is not there yet."""
    if not future.done():
        with st.spinner(f"Waiting for {what} to finish loading..."):
            return future.result()
    return future.result()


class KeptSettings:
    """A page's settings under one key of their own in ``st.session_state``.

    Streamlit drops a widget's value when a run does not draw it (another page, another
    source), so widgets start from the value kept here when they are (re)drawn and keep
    theirs when changed. Widgets drawn only some of the time (``later``) are restored just
    before they are drawn: a value set in a run that does not draw its widget would linger
    and win over the kept one later."""

    def __init__(self, key: str, initial: dict, later: tuple[str, ...] = ()) -> None:
        self.saved: dict = st.session_state.setdefault(key, dict(initial))
        for name, value in self.saved.items():
            if name not in later and name not in st.session_state:  # not drawn last run
                st.session_state[name] = value

    def restored(self, name: str) -> str:
        """The key of a widget of ``later``, with its kept value restored if Streamlit
        dropped it."""
        if name not in st.session_state and name in self.saved:
            st.session_state[name] = self.saved[name]
        return name

    def save(self, *names: str) -> None:
        """Widget callback: keep the widgets' values (by key) as the page's settings."""
        for name in names:
            if name in st.session_state:
                self.saved[name] = st.session_state[name]

    def put(self, name: str, value) -> None:
        """Set a setting and its widget (callbacks and code above the widget only)."""
        self.saved[name] = st.session_state[name] = value
