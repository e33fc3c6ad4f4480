"""Magenta's Melody RNNs (basic, mono, lookback, attention) as a MelodyGen family."""
