"""Models: every shipped checkpoint's card (data, size, training, held-out figures) and curves."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from melodygen import studio


def curve_chart(columns: dict[str, list], label: str, kept: int | None) -> alt.LayerChart:
    """One figure's curves by split, the y axis fitted to the values, the kept step marked."""
    frame = pd.DataFrame(columns).melt("step", var_name="split", value_name=label).dropna()
    low, high = studio.curve_range(columns) or (0.0, 1.0)
    lines = (
        alt.Chart(frame)
        .mark_line(point=True, clip=True)  # the first, far higher values run off the top
        .encode(
            x=alt.X("step:Q", title="training step"),
            y=alt.Y(f"{label}:Q", title=label, scale=alt.Scale(domain=[low, high], zero=False)),
            color=alt.Color("split:N", title=None),
            tooltip=["step", "split", alt.Tooltip(f"{label}:Q", format=".3f")],
        )
    )
    layers = [lines]
    if kept is not None:
        marker = pd.DataFrame({"step": [kept], "text": [f"kept: step {kept:,}"]})
        rule = alt.Chart(marker).mark_rule(strokeDash=[6, 4], color="gray")
        layers.append(rule.encode(x="step:Q"))
        layers.append(
            alt.Chart(marker)
            .mark_text(align="left", dx=4, dy=-6, color="gray")
            .encode(x="step:Q", y=alt.value(0), text="text:N")
        )
    return alt.layer(*layers)


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
    f"{len(models)} model{'s' if len(models) != 1 else ''}. Held-out figures are measured "
    "on songs the model never trained on: lower NLL and "
    "perplexity, and higher event accuracy, mean it predicts real melodies better."
)

for entry in models:
    with st.container(border=True):
        st.subheader(entry.label)
        st.markdown(f"{entry.description}  \n{entry.kind} · `{entry.name}`")
        if entry.model_problem:
            st.error(f"This model cannot be loaded: {entry.model_problem}")
        for problem in entry.problems:
            if problem != entry.model_problem:
                st.info(f"Card incomplete: {problem}; showing what the checkpoint itself says.")
        facts = studio.card_facts(entry)
        for column, (group, rows) in zip(st.columns(len(facts)), facts.items(), strict=True):
            column.markdown(f"**{group}**")
            column.markdown("\n".join(f"- {label}: {value}" for label, value in rows))

        curves = studio.metric_curves(studio.read_metrics(entry.metrics_path))
        kept = studio.kept_step(entry)
        if curves and kept is not None:
            st.caption(
                f"The dashed line marks step {kept:,}, the weights that ship (the lowest "
                "held-out NLL); training went on past it."
            )
        if curves:
            labels = studio.figure_labels(entry)  # the family's figures, in its order
            names = [n for n in labels if n in curves]
            names += sorted(n for n in curves if n not in names)
            for tab, name in zip(
                st.tabs([labels.get(n, n).split(" (")[0] for n in names]), names, strict=True
            ):
                label = labels.get(name, name).split(" (")[0]
                tab.altair_chart(curve_chart(curves[name], label, kept))
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
