"""Errors that carry a message meant for the person at the keyboard.

Library code raises these instead of letting a traceback from deep inside
note_seq, pretty_midi or TensorFlow reach the user; the CLI prints the message
and exits with status 2.
"""


def one_line(error: BaseException, limit: int = 200) -> str:
    """A library exception's message as one short line (for "could not be read (...)")."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class MelodyGenError(Exception):
    """Base class: the message alone tells the user what went wrong and what to do."""


class InputFileError(MelodyGenError):
    """A MIDI or ABC file could not be read or holds no usable music."""


class DatasetError(MelodyGenError):
    """A dataset folder is missing, malformed, or built for another configuration."""


class ConfigError(MelodyGenError):
    """An unknown configuration name or a bad hyperparameter override."""


class CheckpointError(MelodyGenError):
    """A checkpoint folder is missing or is not a MelodyGen checkpoint."""


class ModelFileError(CheckpointError):
    """A model's ``melodygen.json`` is malformed or asks for a network outside sane bounds."""


class TrainingDivergedError(MelodyGenError):
    """Training reached a non-finite loss; the run keeps its last good checkpoint."""
