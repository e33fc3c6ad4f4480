"""MelodyGen: melody generation with Keras re-implementations of Magenta's Melody RNN."""

__version__ = "0.1.0"
