"""A MusicVAE-style note model: LSTM encoder, latent code, LSTM decoder over notes."""
