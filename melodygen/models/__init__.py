"""Networks and the registry of their configurations."""

from melodygen.models.configs import CONFIGS, HParams, MelodyRnnConfig, get_config

__all__ = ["CONFIGS", "HParams", "MelodyRnnConfig", "get_config"]
