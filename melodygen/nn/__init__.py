"""Shared network layers: the LSTM stack, the attention RNN and the compiled CPU kernels
under them. Their class and attribute names are where the shipped weights are stored."""
