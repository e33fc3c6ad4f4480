"""Names and constants of music theory, one place each (melodygen.theory).

One key reader (:func:`melodygen.theory.parse_key`) serves the CLI's key flags, the
generation request and the studio, so a spelling is taken or refused the same way
everywhere; note names agree with pretty_midi's; and no module but theory.py defines
the step grid or a table of note names (a source scan, so a new copy fails here).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pretty_midi
import pytest

from melodygen import cli, studio, theory
from melodygen.errors import MelodyGenError
from melodygen.io.primer import parse_primer
from melodygen.render import note_name
from melodygen.theory import (
    FLAT_NAMES,
    KEY_NAMES,
    MODES,
    SHARP_NAMES,
    KeyNameError,
    key_name,
    parse_key,
    pitch_name,
)

PACKAGE = Path(__file__).resolve().parents[1] / "melodygen"

ACCEPTED = [
    ("C", 0),
    ("c", 0),
    (" D ", 2),
    ("C#", 1),
    ("c#", 1),
    ("Db", 1),
    ("DB", 1),
    ("D\u266d", 1),
    ("C\u266f", 1),
    ("F#", 6),
    ("Gb", 6),
    ("Bb", 10),
    ("bb", 10),
    ("B", 11),
    ("B#", 0),
    ("Cb", 11),
    ("E#", 5),
    ("Fb", 4),
    ("0", 0),
    ("7", 7),
    ("11", 11),
]
NO_KEY = ["", "  ", "none", "None", "auto", "AUTO"]
REFUSED = [
    ("H", "unknown key 'H': use a note name such as C, F#, Bb"),
    ("C major", "unknown key 'C major': use a note name such as C, F#, Bb"),
    ("Cbb", "unknown key 'Cbb': use a note name such as C, F#, Bb"),
    ("C##", "unknown key 'C##': use a note name such as C, F#, Bb"),
    ("Dx", "unknown key 'Dx': use a note name such as C, F#, Bb"),
    ("12", "key 12 is not a pitch class 0-11"),
    ("-1", "unknown key '-1': use a note name such as C, F#, Bb"),
    ("config", "unknown key 'config': use a note name such as C, F#, Bb"),
    ("9" * 5000, "unknown key '99999999999999999...': use a note name such as C, F#, Bb"),
]


# The one key reader ---------------------------------------------------------------------


@pytest.mark.parametrize(("text", "pitch_class"), ACCEPTED)
def test_parse_key_reads_every_spelling(text, pitch_class):
    assert parse_key(text) == pitch_class


def test_parse_key_reads_pitch_classes_and_no_key():
    assert [parse_key(value) for value in range(12)] == list(range(12))
    assert parse_key(None) is None
    for text in NO_KEY:
        assert parse_key(text) is None
    for value in (12, -1, True, 3.0):
        with pytest.raises(KeyNameError):
            parse_key(value)


@pytest.mark.parametrize(("text", "message"), REFUSED)
def test_parse_key_refuses_in_one_line(text, message):
    with pytest.raises(KeyNameError) as caught:
        parse_key(text)
    assert str(caught.value) == message
    assert isinstance(caught.value, MelodyGenError)


def test_every_caller_uses_the_one_reader():
    from melodygen import cli

    assert cli.parse_key is parse_key  # --key, --transpose-to-key
    assert studio.parse_key is parse_key


def _transpose_to_key(text: str):
    args = ["dataset", "build", "--input", "in", "--config", "basic_rnn", "--output", "out"]
    return cli.build_parser().parse_args([*args, "--transpose-to-key", text]).transpose_to_key


def _cli_generate_key(monkeypatch, tmp_path: Path, capsys, text: str):
    """The key ``melodygen generate --key TEXT`` puts in its request, or its error line."""
    request_type = type(studio.StudioSettings(seed=1).to_request(parse_primer("")))
    seen = []

    def stop(request):
        seen.append(request.key)
        raise MelodyGenError("stopped before loading a model")

    argv = ["generate", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "o")]
    with monkeypatch.context() as patch:
        patch.setattr(request_type, "validate", stop)
        assert cli.main([*argv, "--key", text]) == 2
    error = capsys.readouterr().err.strip()
    return seen[0] if seen else error


def _studio_key(text: str):
    return studio.StudioSettings(key=text, seed=1).to_request(parse_primer("")).key


@pytest.mark.parametrize(("text", "pitch_class"), ACCEPTED)
def test_cli_and_studio_take_the_same_spellings(monkeypatch, tmp_path, capsys, text, pitch_class):
    assert _transpose_to_key(text) == pitch_class
    assert _cli_generate_key(monkeypatch, tmp_path, capsys, text) == pitch_class
    assert _studio_key(text) == pitch_class


def test_cli_and_studio_read_no_key_alike(monkeypatch, tmp_path, capsys):
    for text in ["none", "auto"]:
        assert _transpose_to_key(text) is None
        assert _cli_generate_key(monkeypatch, tmp_path, capsys, text) is None
        assert _studio_key(text) is None
    assert _transpose_to_key("config") == "config"  # the dataset flag's own extra word


@pytest.mark.parametrize(("text", "message"), REFUSED[:-1])
def test_cli_and_studio_refuse_with_the_same_words(monkeypatch, tmp_path, capsys, text, message):
    if text != "config":
        with pytest.raises(SystemExit):
            _transpose_to_key(text)
        assert capsys.readouterr().err.strip().endswith(f"--transpose-to-key: {message}")
    assert _cli_generate_key(monkeypatch, tmp_path, capsys, text) == f"error: {message}"
    with pytest.raises(KeyNameError) as caught:
        _studio_key(text)
    assert str(caught.value) == message


def test_studio_key_choices_are_the_theory_names():
    assert studio.KEY_CHOICES[1:] == list(KEY_NAMES)
    assert KEY_NAMES == ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
    assert [parse_key(name) for name in studio.KEY_CHOICES[1:]] == list(range(12))


# Note names -----------------------------------------------------------------------------


def test_note_names_are_pretty_midis():
    assert SHARP_NAMES == tuple(pretty_midi.note_number_to_name(60 + pc)[:-1] for pc in range(12))
    assert FLAT_NAMES == ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
    for pitch in range(128):
        assert pitch_name(pitch) == note_name(pitch) == pretty_midi.note_number_to_name(pitch)


@pytest.mark.parametrize("mode", list(MODES))
def test_spelled_note_names_round_trip_through_pretty_midi(mode):
    for tonic in range(12):
        for pitch in range(128):
            name = pitch_name(pitch, tonic, mode)
            assert pretty_midi.note_name_to_number(name) == pitch, (tonic, mode, name)
            assert note_name(pitch, tonic, mode) == name


def test_key_names_read_back_as_their_tonic():
    for mode in MODES:
        for tonic in range(12):
            tonic_name = key_name(tonic, mode).split()[0]
            assert parse_key(tonic_name) == tonic, key_name(tonic, mode)
            assert tonic_name in (SHARP_NAMES[tonic], FLAT_NAMES[tonic])
    assert key_name(3, "minor") == "Eb minor" and key_name(8, "minor") == "G# minor"
    assert key_name(1) == "Db major" and key_name(6) == "Gb major"


def test_typed_notes_agree_with_pretty_midi():
    names = [
        f"{letter}{sign}{octave}"
        for octave in (0, 4, 8)
        for letter in "CDEFGAB"
        for sign in ("", "#", "b")
    ]
    for name in [*names, "C-1", "B#3", "Cb4", "E#4", "Fb4", "c4", "bb4"]:
        assert parse_primer(name).events[0] == pretty_midi.note_name_to_number(name), name
    assert parse_primer("F##4 Gbb4").events[::4] == [67, 65]


# One place each: a scan of the package's source ------------------------------------------

GRID_NAMES = {
    "STEPS_PER_BAR",
    "STEPS_PER_QUARTER",
    "STEPS_PER_WHOLE",
    "NOTES_PER_OCTAVE",
    "NOTE_OFF",
    "NO_EVENT",
}
_NOTE_NAME = re.compile(r"^[A-G]([#b\u266f\u266d]|B)?$", re.IGNORECASE)
_SCALES = {MODES[mode][0] for mode in MODES}


def _is_note_name_table(node: ast.expr) -> bool:
    """A list, tuple, set or dict (by its keys) of five or more note-name strings."""
    if isinstance(node, ast.Dict):
        items = node.keys
    elif isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = node.elts
    else:
        return False
    names = [
        item.value
        for item in items
        if isinstance(item, ast.Constant)
        and isinstance(item.value, str)
        and _NOTE_NAME.match(item.value)
    ]
    return len(names) >= 5


def _is_scale(node: ast.expr) -> bool:
    """A literal tuple or list of a mode's intervals, such as (0, 2, 4, 5, 7, 9, 11)."""
    if not isinstance(node, (ast.List, ast.Tuple)):
        return False
    values = tuple(item.value for item in node.elts if isinstance(item, ast.Constant))
    return len(values) == len(node.elts) and values in _SCALES


def theory_copies(source: str) -> list[str]:
    """Where ``source`` defines the step grid, a note-name table or a scale of its own."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        names = {target.id for target in targets if isinstance(target, ast.Name)}
        if names & GRID_NAMES:
            found.append(f"line {node.lineno}: {', '.join(sorted(names & GRID_NAMES))}")
        for part in ast.walk(value):
            if _is_note_name_table(part):
                found.append(f"line {node.lineno}: a table of note names")
            elif _is_scale(part):
                found.append(f"line {node.lineno}: a scale")
    return found


def test_the_scan_finds_copies():
    assert theory_copies("STEPS_PER_BAR = 16\nx: int = 1\n") == ["line 1: STEPS_PER_BAR"]
    assert theory_copies("class A:\n    NOTES_PER_OCTAVE: int = 12\n")
    assert theory_copies('NAMES = ["C", "C#", "D", "Eb", "E", "F"]\n')
    assert theory_copies('KEYS = {"DB": 1, "EB": 3, "GB": 6, "AB": 8, "BB": 10}\n')
    assert theory_copies('PCS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}\n')
    assert theory_copies("MAJOR = (0, 2, 4, 5, 7, 9, 11)\n")
    assert not theory_copies('from melodygen.theory import STEPS_PER_BAR\nx = ("A", "B")\n')
    assert theory_copies(Path(theory.__file__).read_text(encoding="utf-8"))


def test_only_theory_defines_the_grid_and_note_names():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 10
    copies = {
        str(path.relative_to(PACKAGE.parent)): found
        for path in modules
        if path.name != "theory.py" or path.parent != PACKAGE
        if (found := theory_copies(path.read_text(encoding="utf-8")))
    }
    assert copies == {}, "import these from melodygen.theory instead"
