"""A tiny abc_char model made in code, whose tunes are known before it is asked.

Its output layer's biases make ``<end>`` by far the likeliest character and the newline
the next: it writes nothing of its own. A header line left to it (``T:`` when no title is
asked) comes out empty, and the tune ends right after the text it was asked for (the
header fields and the ABC opening). So an ABC opening of whole bars gives a tune that
parses, and a request with no opening gives a header with no music: a tune that cannot
be read, with its reason. Used by the studio, app and browser tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TUNES = (
    "T:A jig\nM:6/8\nL:1/8\nQ:1/4=120\nR:jig\nK:G\n|:GAB c2d|e2d c2B|ded cBA|B2G A2F:|\n",
    "T:A reel\nM:4/4\nL:1/8\nR:reel\nK:Dm\n|:d2fd cAGF|E2^CE DEFA|[1 d4:|[2 d2z2|]\n",
)
OPENING = "|:GAB c2d|e2d c2B|ded cBA|B2G A2F:|"
"""Four bars of a jig in G: with ``M:6/8`` and ``K:G`` asked, the tune the model writes."""
CARD = {
    "name": "folk_abc_char",
    "style": "folk",
    "description": "Folk tunes as ABC text, written a character at a time",
}


def make_abc_checkpoint(root: Path, name: str = "folk_abc_char") -> Path:
    """A saved abc_char model under ``root/name`` (with a card) that writes only what it
    is asked for (see the module docstring); returns its folder."""
    import keras

    from melodygen.core.checkpoint import save_model
    from melodygen.core.family import get_family
    from melodygen.families.abc_char.configs import HParams
    from melodygen.families.abc_char.model_file import CharModelInfo
    from melodygen.families.abc_char.vocab import END, Vocabulary

    keras.utils.set_random_seed(0)
    chars = set("".join(TUNES)) | set("ABCDEFGabcdefgz|:[]1234/^_=,' \nTMLQRKjigrelD.-")
    vocab = Vocabulary(tuple(sorted(chars)))
    info = CharModelInfo(
        config="char_seed",
        hparams=HParams(embedding_size=4, rnn_layer_sizes=(8,), dropout=0.0, batch_size=2),
        vocab=vocab,
    )
    family = get_family("abc_char")
    model = family.build_network(info)
    logits = model.get_layer("logits")
    kernel, bias = (np.asarray(w) for w in logits.get_weights())
    bias = np.zeros_like(bias)
    bias[END] = 40.0
    bias[vocab.index["\n"]] = 20.0
    logits.set_weights([np.zeros_like(kernel), bias])
    folder = root / name
    save_model(folder, model, info)
    (folder / "card.json").write_text(json.dumps(CARD))
    return folder
