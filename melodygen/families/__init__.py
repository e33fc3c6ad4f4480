"""Model families: one folder each, reached through melodygen.core.family."""

BUILTIN = (
    "melodygen.families.melody_rnn.family",
    "melodygen.families.abc_char.family",
)
"""Modules that register the families every installation has, imported on first use."""
