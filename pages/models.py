"""Models: every shipped checkpoint's card (data, size, training, held-out figures) and curves."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from melodygen import studio

# Curves shown first, in this order; any other figure in the log follows.
PREFERRED = ["loss", "nll", "label_nll", "perplexity", "accuracy", "event_accuracy"]
CURVE_LABELS = {
    "loss": "loss",
    "nll": "NLL per step",
    "label_nll": "label NLL",
    "perplexity": "perplexity",
    "accuracy": "accuracy",
    "event_accuracy": "event accuracy",
    "no_event_accuracy": "no-event accuracy",
}

if not st.session_state.get("studio_routed"):  # opened before app.py ran: go through it
    st.session_state["studio_target"] = "pages/models.py"
    st.switch_page("app.py")

st.title("Models")
models = studio.discover_models()
if not models:
    st.warning(
        f"No trained model found in {studio.checkpoints_dir()}. Put a checkpoint folder there "
        f"(one with melodygen.json), or set {studio.CHECKPOINTS_ENV} to a folder that holds some."
    )
    st.stop()
st.caption(
    f"{len(models)} model{'s' if len(models) != 1 else ''} in {studio.checkpoints_dir()}. "
    "Held-out figures are measured on songs the model never trained on: lower NLL and "
    "perplexity, and higher event accuracy, mean it predicts real melodies better."
)

for entry in models:
    with st.container(border=True):
        st.subheader(entry.label)
        st.markdown(f"{entry.description}  \n`{entry.name}`")
        for problem in entry.problems:
            st.info(f"Card incomplete: {problem}; showing what the checkpoint itself says.")
        facts = studio.card_facts(entry)
        for column, (group, rows) in zip(st.columns(len(facts)), facts.items(), strict=True):
            column.markdown(f"**{group}**")
            column.markdown("\n".join(f"- {label}: {value}" for label, value in rows))

        curves = studio.metric_curves(studio.read_metrics(entry.metrics_path))
        if curves:
            names = [n for n in PREFERRED if n in curves]
            names += sorted(n for n in curves if n not in names)
            for tab, name in zip(
                st.tabs([CURVE_LABELS.get(n, n) for n in names]), names, strict=True
            ):
                frame = pd.DataFrame(curves[name]).set_index("step")
                tab.line_chart(frame, x_label="training step", y_label=CURVE_LABELS.get(name, name))
        else:
            st.caption("No training log (metrics.jsonl) ships with this model.")

        details = ("originality", "originality_held_out", "sanity", "originality_settings")
        extras = {k: entry.card[k] for k in details if entry.card.get(k)}
        commands = entry.card.get("commands") or []
        if extras or commands:
            with st.expander("Originality, sanity checks and the commands that made it"):
                for key, value in extras.items():
                    st.markdown(f"**{key.replace('_', ' ').capitalize()}**")
                    st.json(value, expanded=False)
                if commands:
                    st.code("\n".join(str(c) for c in commands), language="bash")
