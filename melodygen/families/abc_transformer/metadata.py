"""A tune's metadata as the encoder reads it: meter, unit, key, dance type and title words.

Each tune gives :data:`~melodygen.families.abc_transformer.configs.META_SLOTS` encoder
tokens, one slot per field: ``M:6/8``, ``L:1/8``, ``K:7`` (the tonic's pitch class),
``mode:major``, ``R:jig``, then up to ``TITLE_WORDS`` lower-cased title words ``T:silver``
and ``<pad>`` after them (masked). All come from one vocabulary built from the training
tunes only and saved with the model. A field left empty, or holding a value the training
tunes never had, is that field's own learned "unknown" token (``M:?``, ``K:?``, ``R:?``;
a title word seen fewer than twice is ``T:?``), so any subset of controls can be asked.

Meters are written as fractions (``C`` is 4/4, ``C|`` 2/2); a tune without ``L:`` has
ABC's default unit (1/16 below a 3/4 bar, else 1/8), so the unit is always known.

:class:`HeaderTable` keeps how often each (meter, unit, key, type) went together in
training: generation fills the fields a request leaves open from a training tune that
agrees with the ones it asks, so the header it writes (``M:``, ``L:``, ``K:``) is one a
real tune had.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from fractions import Fraction

import numpy as np

from melodygen.families.abc_transformer import dance
from melodygen.families.abc_transformer.configs import (
    FIXED_FIELDS,
    MAX_META_VOCABULARY,
    TITLE_WORDS,
)
from melodygen.io.abc import AbcTune, key_and_mode
from melodygen.theory import MODES, MeterError, parse_meter

FIELDS = ("meter", "unit", "tonic", "mode", "rhythm")
PREFIX = {
    "meter": "M:",
    "unit": "L:",
    "tonic": "K:",
    "mode": "mode:",
    "rhythm": "R:",
    "title": "T:",
}
PAD_TOKEN = "<pad>"
PAD = 0
SPECIAL_TOKENS = (PAD_TOKEN, *(PREFIX[name] + "?" for name in (*FIELDS, "title")))
"""``<pad>`` (id 0), then each field's "unknown" token, the title's last."""
MIN_TITLE_COUNT = 2
"""A title word is in the vocabulary when at least this many training titles hold it."""
MAX_TITLE_VOCABULARY = 2000
MAX_TOKEN_CHARS = 60


def meter_text(meter: str | None) -> str | None:
    """An ``M:`` value as a fraction ("6/8"; ``C`` 4/4, ``C|`` 2/2), None when it has none."""
    if not meter:
        return None
    text = {"C": "4/4", "C|": "2/2"}.get(meter.strip(), meter.strip())
    try:
        return str(parse_meter(text))
    except MeterError:
        return None


def unit_text(unit: str | None, meter: str | None) -> str:
    """An ``L:`` value ("1/8"), or ABC's default for the meter when there is none."""
    match = re.match(r"^\s*1\s*/\s*(\d{1,2})\s*$", unit or "")
    if match and int(match.group(1)) in (1, 2, 4, 8, 16, 32, 64):
        return f"1/{int(match.group(1))}"
    if meter is None:
        return "1/8"
    numerator, denominator = (int(part) for part in meter.split("/"))
    return "1/16" if Fraction(numerator, denominator) < Fraction(3, 4) else "1/8"


def title_words(title: str | None) -> tuple[str, ...]:
    """The first ``TITLE_WORDS`` words of a title, lower-cased, apostrophes dropped."""
    words = re.findall(r"[^\W_]+", (title or "").lower().replace("'", ""))
    return tuple(words[:TITLE_WORDS])


@dataclass(frozen=True)
class Metadata:
    """What the encoder reads of one tune; None (or no title words) is "unknown"."""

    meter: str | None = None
    """A fraction: "6/8"."""
    unit: str | None = None
    """The unit note length: "1/8"."""
    tonic: int | None = None
    """The key's tonic, a pitch class (0 = C)."""
    mode: str | None = None
    """One of :data:`melodygen.theory.MODES`: "major", "dorian"."""
    rhythm: str | None = None
    """The dance type (:data:`~melodygen.families.abc_transformer.dance.DANCE_TYPES`)."""
    title: tuple[str, ...] = ()
    """Title words (:func:`title_words`)."""

    @classmethod
    def of_tune(cls, tune: AbcTune, rhythm: str | None) -> Metadata:
        """The metadata of a cleaned tune, with its dance type found elsewhere."""
        meter = meter_text(tune.meter)
        key = key_and_mode(tune.key)
        return cls(
            meter=meter,
            unit=unit_text(tune.unit, meter),
            tonic=key[0] if key else None,
            mode=key[1] if key else None,
            rhythm=rhythm,
            title=title_words(tune.title),
        )

    def tokens(self) -> list[str]:
        """One token per slot: the fields, then the title words and ``<pad>``."""
        found = [
            PREFIX[name] + ("?" if getattr(self, name) is None else str(getattr(self, name)))
            for name in FIELDS
        ]
        words = [PREFIX["title"] + word for word in self.title[:TITLE_WORDS]]
        return found + words + [PAD_TOKEN] * (TITLE_WORDS - len(words))

    def to_dict(self) -> dict:
        values = asdict(self)
        values["title"] = list(self.title)
        return values

    @classmethod
    def from_dict(cls, values: object) -> Metadata:
        """Saved metadata (a dataset's ``<split>.json``), checked whole: each field a value
        this family writes (:func:`field_value_problem`) or null, the title a list of
        words. ValueError says why not; keys of no field are passed over."""
        if not isinstance(values, dict):
            raise ValueError(f"metadata must be a JSON object, not {_kind(values)}")
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in values.items() if key in known}
        for name in FIELDS:
            value = values.get(name)
            problem = None if value is None else field_value_problem(name, value)
            if problem:
                raise ValueError(f"metadata {name} {problem}")
        title = values.get("title", [])
        if not isinstance(title, list) or any(field_value_problem("title", w) for w in title):
            raise ValueError("metadata title must be a list of title words")
        values["title"] = tuple(title)
        return cls(**values)


@dataclass(frozen=True)
class MetaVocabulary:
    """The encoder's tokens: :data:`SPECIAL_TOKENS`, then each value seen in training."""

    tokens: tuple[str, ...]

    @classmethod
    def build(cls, metadata: Iterable[Metadata]) -> MetaVocabulary:
        """The vocabulary of the training tunes' metadata (title words seen twice or more,
        the commonest ``MAX_TITLE_VOCABULARY``)."""
        values: set[str] = set()
        words: Counter = Counter()
        for item in metadata:
            values.update(token for token in item.tokens()[:FIXED_FIELDS] if token[-2:] != ":?")
            words.update(set(item.title))
        common = [w for w, n in words.most_common(MAX_TITLE_VOCABULARY) if n >= MIN_TITLE_COUNT]
        titles = [PREFIX["title"] + word for word in sorted(common)]
        return cls((*SPECIAL_TOKENS, *sorted(values, key=_field_order), *titles))

    @classmethod
    def from_list(cls, tokens: object) -> MetaVocabulary:
        """A saved vocabulary, checked whole; ValueError says why not."""
        if not isinstance(tokens, list) or not len(SPECIAL_TOKENS) <= len(tokens):
            raise ValueError("must be a list of tokens")
        if len(tokens) > MAX_META_VOCABULARY:
            raise ValueError(f"must hold at most {MAX_META_VOCABULARY} tokens")
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"must start with {', '.join(SPECIAL_TOKENS)}")
        for token in tokens:
            if (
                not isinstance(token, str)
                or len(token) > MAX_TOKEN_CHARS
                or not (token == PAD_TOKEN or token.startswith(tuple(PREFIX.values())))
            ):
                raise ValueError("must hold field tokens such as M:6/8 or T:word")
        if len(set(tokens)) != len(tokens):
            raise ValueError("holds a token twice")
        for token in tokens[len(SPECIAL_TOKENS) :]:
            name = next(name for name, prefix in PREFIX.items() if token.startswith(prefix))
            text = token[len(PREFIX[name]) :]
            value: object = text
            if name == "tonic" and text.isdigit() and text == str(int(text)):
                value = int(text)  # K:7
            problem = field_value_problem(name, value)
            if problem:
                raise ValueError(f"token {token[:40]!r}: {PREFIX[name]} {problem}")
        return cls(tuple(tokens))

    @property
    def size(self) -> int:
        return len(self.tokens)

    @property
    def index(self) -> dict[str, int]:
        return {token: i for i, token in enumerate(self.tokens)}

    def encode(self, metadata: Metadata) -> np.ndarray:
        """Ids [META_SLOTS] int32; a value outside the vocabulary is its field's unknown."""
        index = self.index
        unknown = [index[PREFIX[name] + "?"] for name in (*FIELDS, *["title"] * TITLE_WORDS)]
        ids = [index.get(token, unknown[slot]) for slot, token in enumerate(metadata.tokens())]
        return np.asarray(ids, np.int32)

    def known(self, name: str) -> list[str]:
        """The values of a field the model knows ("6/8", "jig"), as saved."""
        prefix = PREFIX[name]
        return [t[len(prefix) :] for t in self.tokens if t.startswith(prefix) and t[-2:] != ":?"]

    def to_list(self) -> list[str]:
        return list(self.tokens)


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def field_value_problem(name: str, value: object) -> str | None:
    """Why ``value`` is no value this family writes for field ``name`` (of :data:`FIELDS`
    or "title"), or None: a meter as :func:`meter_text` writes it ("6/8"), a unit as
    :func:`unit_text` does ("1/8"), a tonic 0-11 (an int), a mode of
    :data:`melodygen.theory.MODES`, a dance type of :data:`~.dance.DANCE_TYPES`, one
    title word. A saved file holding anything else is damaged or hostile: an unseen
    tonic would fail ``int()`` later, and a dance type with a newline would write header
    lines of its own into every tune."""
    if name == "tonic":
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 12:
            return None
        return "must be a pitch class 0 to 11"
    if not isinstance(value, str) or not value or len(value) > MAX_TOKEN_CHARS:
        return f"must be text of 1 to {MAX_TOKEN_CHARS} characters"
    if name == "meter":
        return None if meter_text(value) == value else "must be a meter such as 6/8"
    if name == "unit":
        return None if unit_text(value, None) == value else "must be a unit such as 1/8"
    if name == "mode":
        return None if value in MODES else f"must be one of {', '.join(MODES)}"
    if name == "rhythm":
        return None if dance.normalise(value) == value else "must be a dance type"
    return None if title_words(value) == (value,) else "must be one title word"


def _field_order(token: str) -> tuple[int, str]:
    for position, prefix in enumerate(PREFIX[name] for name in FIELDS):
        if token.startswith(prefix):
            return position, token
    return len(FIELDS), token


@dataclass(frozen=True)
class HeaderTable:
    """How many training tunes had each (meter, unit, tonic, mode, type) together."""

    rows: tuple[tuple[Metadata, int], ...]

    @classmethod
    def build(cls, metadata: Iterable[Metadata]) -> HeaderTable:
        counts = Counter(
            replace(item, title=())
            for item in metadata
            if None not in (item.meter, item.unit, item.tonic, item.mode)
        )
        return cls(tuple(sorted(counts.items(), key=lambda row: (-row[1], str(row[0])))))

    def fill(self, asked: Metadata, rng: np.random.Generator) -> Metadata:
        """``asked`` with its open fields (None) taken from one training tune, drawn by how
        common it is among those that agree with the most asked fields (all of them, else
        meter and type, else meter, else any tune). Meter, unit, tonic and mode are always
        filled (the header needs them); the dance type only when the drawn tune had one."""
        for names in (FIELDS, ("meter", "rhythm"), ("meter",), ()):
            found = [
                (row, count)
                for row, count in self.rows
                if all(getattr(asked, n) in (None, getattr(row, n)) for n in names)
            ]
            if found:
                break
        row = Metadata("4/4", "1/8", 0, "major")  # an empty table: C major in 4/4
        if found:
            weights = np.array([count for _, count in found], np.float64)
            row = found[int(rng.choice(len(found), p=weights / weights.sum()))][0]
        values = {name: getattr(asked, name) for name in FIELDS}
        for name in ("meter", "tonic", "mode", "rhythm"):
            if values[name] is None:
                values[name] = getattr(row, name)
        if values["unit"] is None:
            same = values["meter"] == row.meter
            values["unit"] = row.unit if same else unit_text(None, values["meter"])
        return replace(asked, **values)

    def to_list(self) -> list[list]:
        return [[m.meter, m.unit, m.tonic, m.mode, m.rhythm, n] for m, n in self.rows]

    @classmethod
    def from_list(cls, rows: object) -> HeaderTable:
        """A saved table, checked whole; ValueError says why not."""
        if not isinstance(rows, list) or len(rows) > 100_000:
            raise ValueError("must be a list of at most 100,000 rows")
        table = []
        for row in rows:
            if not isinstance(row, list) or len(row) != 6:
                raise ValueError("rows must be [meter, unit, tonic, mode, type, count]")
            meter, unit, tonic, mode, rhythm, count = row
            if (
                not all(isinstance(v, str) and len(v) <= 20 for v in (meter, unit))
                or meter_text(meter) != meter
                or unit_text(unit, meter) != unit
                or not (isinstance(tonic, int) and not isinstance(tonic, bool) and 0 <= tonic < 12)
                or mode not in MODES
                or not (rhythm is None or field_value_problem("rhythm", rhythm) is None)
                or not (isinstance(count, int) and not isinstance(count, bool) and count >= 1)
            ):
                raise ValueError("rows must be [meter, unit, tonic 0-11, mode, type, count]")
            table.append((Metadata(meter, unit, tonic, mode, rhythm), count))
        return cls(tuple(table))
