"""Model families: one folder each, reached through melodygen.core.family."""

BUILTIN = (
    "melodygen.families.melody_rnn.family",
    "melodygen.families.abc_char.family",
    "melodygen.families.abc_transformer.family",
    "melodygen.families.note_vae.family",
)
"""Modules that register the families every installation has, imported on first use."""
