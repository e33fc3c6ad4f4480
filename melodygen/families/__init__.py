"""Model families: one folder each, reached through melodygen.core.family."""
