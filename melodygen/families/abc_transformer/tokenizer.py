"""Tune bodies as BPE tokens: Hugging Face ``tokenizers``, fitted on training bodies only.

A body (the canonical ABC after the ``K:`` line, :func:`melodygen.io.abc.clean_tune`) is
first cut into pieces that no token may cross (the pre-tokenizer), then each piece into
the learned tokens:

- isolated, each a piece of its own: bar lines with their repeat signs and endings
  (``|``, ``||``, ``|]``, ``[|``, ``|:``, ``:|``, ``::``, ``:||``, ``|1``, ``:|2``, ``[1``,
  ``[2``; what the cleaned Nottingham and folk_abc bodies hold), line breaks (a line is a
  phrase), body field lines (``K:D``) and inline fields (``[K:D]``);
- the rest at spaces, the space going with the beam group after it (`` c2d``): a token is
  then a beam group or part of one, never the end of one group and the start of the next.

Frequent bar lines are single tokens (the fitted vocabulary of 1,000 on the real data
has every bar line that occurs over ~30 times as one). The BPE model has no byte fallback:
a character the training bodies never held is ``<unk>``, counted and reported, never
dropped; the decode joins the tokens' text, so every training body decodes to itself
(``dataset build`` checks each one). Ids 0-3 are ``<pad>``, ``<unk>``, ``<s>``, ``</s>``.

The fitted tokenizer is saved as its JSON (``Tokenizer.to_str()``) in ``dataset.json`` and
in the model's ``melodygen.json``, and checked on load with plain ``json`` (no
``tokenizers`` needed to train a built dataset): a BPE model with a sane vocabulary, each
merge joining two of its tokens into a third, the special tokens at their ids and this
module's pre-tokenizer and decoder. Where ``tokenizers`` is installed the tokenizer is
then built on load too, so that whatever else it refuses is one line then, not an
exception at the first tune encoded.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from melodygen.errors import one_line
from melodygen.families.abc_transformer.configs import MAX_BODY_VOCABULARY

PAD, UNK, START, END = 0, 1, 2, 3
SPECIAL = ("<pad>", "<unk>", "<s>", "</s>")

BAR_LINE = r"\[\||:*\|+\]?:*(?:\d+(?:[,-]\d+)*)?|::+|\[\d+(?:[,-]\d+)*"
"""A bar line with its repeat signs and a variant ending written on it (``:|2``), ``::``,
or a bracketed ending (``[1``, ``[1,3``)."""
ISOLATED = r"^[KMLQ]:[^\n]*|\[[A-Za-z]:[^\]\n]*\]|" + BAR_LINE + r"|\n"
"""What is cut out as a piece of its own (Oniguruma syntax, ``^`` at every line start)."""


def _split(pattern: dict, behavior: str) -> dict:
    return {"type": "Split", "pattern": pattern, "behavior": behavior, "invert": False}


PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [
        _split({"Regex": ISOLATED}, "Isolated"),
        _split({"String": " "}, "MergedWithNext"),
    ],
}
"""The pre-tokenizer as ``tokenizers`` writes it in JSON: a saved tokenizer must hold this."""
DECODER = {"type": "Fuse"}
MAX_TOKENIZER_CHARS = 900_000
MAX_TOKEN_CHARS = 400


class TokenizerError(ValueError):
    """A saved tokenizer that is not one this family fitted (the reason, one line)."""


def bar_lines(text: str) -> list[str]:
    """The bar-line pieces of a body (what the pre-tokenizer isolates as bar lines)."""
    return [m.group(0) for m in re.finditer(BAR_LINE, text)]


@dataclass(frozen=True)
class BodyTokenizer:
    """A fitted BPE tokenizer of tune bodies (see the module docstring)."""

    json_text: str
    """``Tokenizer.to_str()``: what is saved."""
    tokens: tuple[str, ...]
    """Each id's text, in id order."""
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def fit(cls, texts: Sequence[str], vocab_size: int) -> BodyTokenizer:
        """A tokenizer fitted on ``texts`` (training bodies) with up to ``vocab_size`` tokens."""
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

        tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL[UNK]))
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(ISOLATED), behavior="isolated"),
                pre_tokenizers.Split(" ", behavior="merged_with_next"),
            ]
        )
        tokenizer.decoder = decoders.Fuse()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=list(SPECIAL), show_progress=False
        )
        tokenizer.train_from_iterator(texts, trainer)
        return cls.from_json(tokenizer.to_str())

    @classmethod
    def from_json(cls, text: object) -> BodyTokenizer:
        """The tokenizer a saved JSON holds, checked whole (and built, where ``tokenizers``
        is installed); TokenizerError says why not."""
        tokenizer = cls(text, check_tokenizer_json(text))  # type: ignore[arg-type]
        try:
            from tokenizers import Tokenizer
        except ImportError:  # training a built dataset needs no tokenizers
            return tokenizer
        try:
            tokenizer._cache["hf"] = Tokenizer.from_str(text)
        except BaseException as error:  # noqa: BLE001 - Rust panics are BaseExceptions
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise
            raise TokenizerError(f"cannot be built ({one_line(error, 120)})") from None
        return tokenizer

    @property
    def size(self) -> int:
        return len(self.tokens)

    @property
    def alphabet(self) -> frozenset[str]:
        """The single characters it knows (any other is ``<unk>``)."""
        if "alphabet" not in self._cache:
            self._cache["alphabet"] = frozenset(
                t for t in self.tokens[len(SPECIAL) :] if len(t) == 1
            )
        return self._cache["alphabet"]

    @property
    def hf(self):
        """The ``tokenizers.Tokenizer`` (built on first use)."""
        if "hf" not in self._cache:
            from tokenizers import Tokenizer

            self._cache["hf"] = Tokenizer.from_str(self.json_text)
        return self._cache["hf"]

    def encode(self, text: str) -> np.ndarray:
        """The ids of ``text`` (no ``<s>``/``</s>``), int32."""
        return np.asarray(self.hf.encode(text).ids, np.int32)

    def encode_all(self, texts: Iterable[str]) -> list[np.ndarray]:
        return [np.asarray(e.ids, np.int32) for e in self.hf.encode_batch(list(texts))]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``: the tokens' text joined; specials left out, ``<unk>`` as
        U+FFFD."""
        parts = []
        for value in ids:
            value = int(value)
            if value >= len(SPECIAL):
                parts.append(self.tokens[value])
            elif value == UNK:
                parts.append("\ufffd")
        return "".join(parts)

    def unknown_in(self, text: str) -> Counter:
        """The characters of ``text`` outside the vocabulary, with their counts."""
        alphabet = self.alphabet
        return Counter(char for char in text if char not in alphabet)


def check_tokenizer_json(text: object) -> tuple[str, ...]:
    """The tokens (in id order) of a tokenizer's JSON that this family fitted: a BPE model,
    2 to ``MAX_BODY_VOCABULARY`` distinct tokens with ids 0..n-1, the special tokens at
    their ids, this module's pre-tokenizer and decoder, no normalizer. Anything else raises
    TokenizerError with the reason."""
    if not isinstance(text, str):
        raise TokenizerError(f"must be a tokenizer's JSON text, not {type(text).__name__}")
    if len(text) > MAX_TOKENIZER_CHARS:
        raise TokenizerError(f"is over {MAX_TOKENIZER_CHARS:,} characters")
    try:
        values = json.loads(text)
    except (ValueError, RecursionError):
        raise TokenizerError("is not valid JSON") from None
    if not isinstance(values, dict) or not isinstance(values.get("model"), dict):
        raise TokenizerError("is not a tokenizer (no model)")
    model = values["model"]
    if model.get("type") != "BPE":
        raise TokenizerError(f"must be a BPE tokenizer, not {str(model.get('type'))[:20]!r}")
    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or not len(SPECIAL) < len(vocab) <= MAX_BODY_VOCABULARY:
        raise TokenizerError(
            f"must have {len(SPECIAL) + 1} to {MAX_BODY_VOCABULARY} tokens in its vocab"
        )
    tokens: list[str | None] = [None] * len(vocab)
    for token, index in vocab.items():
        if (
            not isinstance(index, int)
            or isinstance(index, bool)
            or not 0 <= index < len(vocab)
            or tokens[index] is not None
            or not 0 < len(token) <= MAX_TOKEN_CHARS
        ):
            raise TokenizerError("vocab must give distinct tokens the ids 0 to n-1")
        tokens[index] = token
    for index, token in enumerate(SPECIAL):
        if tokens[index] != token:
            raise TokenizerError(f"must hold the special token {token} as id {index}")
    merges = model.get("merges")
    if not isinstance(merges, list) or len(merges) >= len(vocab):
        raise TokenizerError("merges must be a list shorter than the vocab")
    for merge in merges:
        pair = merge.split(" ") if isinstance(merge, str) else merge
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(p, str) and p in vocab for p in pair)
        ):
            raise TokenizerError("merges must join pairs of tokens of the vocab")
        if pair[0] + pair[1] not in vocab:
            raise TokenizerError("merges must make tokens of the vocab (a merge's is not)")
    expected_model = {
        "unk_token": SPECIAL[UNK],
        "dropout": None,
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "byte_fallback": False,
    }
    for key, value in expected_model.items():
        if model.get(key) != value:
            raise TokenizerError(f"model {key} must be {json.dumps(value)}")
    if values.get("normalizer") is not None or values.get("post_processor") is not None:
        raise TokenizerError("must have no normalizer or post-processor")
    if values.get("pre_tokenizer") != PRE_TOKENIZER:
        raise TokenizerError("has another pre-tokenizer than this MelodyGen's")
    if values.get("decoder") != DECODER:
        raise TokenizerError("must have the Fuse decoder")
    added = values.get("added_tokens")
    if not isinstance(added, list) or len(added) > len(SPECIAL):
        raise TokenizerError("added_tokens must be the special tokens only")
    for item in added:
        if not isinstance(item, dict) or item.get("content") not in SPECIAL:
            raise TokenizerError("added_tokens must be the special tokens only")
        if item.get("id") != SPECIAL.index(item["content"]):
            raise TokenizerError("added_tokens must be the special tokens only")
    return tuple(tokens)  # type: ignore[arg-type]
