"""The abc_transformer family: BPE tokenizer, cached decoder (rows at their own positions),
dataset build with dance types, a tiny model trained through the shared loop, generation
with controls, bar checking and beam search, bad controls and hostile model files;
tunebooks written in code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import melodygen.families.abc_transformer.family  # noqa: F401  (registers the family)
from melodygen.core.checkpoint import MODEL_JSON, load_model, read_model_info, save_model
from melodygen.core.family import get_family
from melodygen.core.generation import GenerationError, GenerationRequest, load_generator
from melodygen.core.split import song_is_eval
from melodygen.errors import ConfigError, ModelFileError
from melodygen.families.abc_transformer.configs import HParams
from melodygen.families.abc_transformer.tokenizer import (
    PRE_TOKENIZER,
    UNK,
    BodyTokenizer,
    bar_lines,
)

pytestmark = pytest.mark.skipif(shutil.which("abc2midi") is None, reason="needs abc2midi")

EVAL_RATIO = 0.25
JIG = ["GAB c2d", "e2d c2B", "d2B G2A", "B2A G3", "ded cBA", "B2G A2F", "G3 G2A", "fed e2d"]
REEL = ["FAAB d2fd", "ABde fdAF", "GBBA B2AF", "DFAF G2FE", "d2fd cdec", "BcdB A2FA"]
WALTZ = ["G2 B2 d2", "c2 A2 F2", "G4 B2", "A6", "d3 c B2", "G6", "B2 c2 d2", "e4 d2"]
KINDS = {  # book, its header lines, the bars its tunes are made of
    "jig": ("book.abc", "M:6/8\nL:1/8\nR:jig\nK:{key}", JIG, ("G", "Em")),
    "waltz": ("book.abc", "M:3/4\nL:1/8\nK:{key}", WALTZ, ("G", "D")),
    "reel": ("reels.abc", "M:C|\nL:1/8\nK:{key}", REEL, ("D", "A")),
}


def _body(number: int, bars: list[str]) -> str:
    """Two repeated strains, the second with first and second endings, as folk books do."""
    rng = np.random.default_rng(number)
    a, b = ([bars[i] for i in rng.integers(0, len(bars), 4)] for _ in range(2))
    return f"|:{a[0]}|{a[1]}|{a[2]}|{a[3]}:|\n|:{b[0]}|{b[1]}|{b[2]}|[1 {b[3]}:|[2 {a[3]}|]\n"


def _tunes(kind: str, numbers: range) -> list[str]:
    book, header, bars, keys = KINDS[kind]
    title = {"jig": "Jig of {n}", "waltz": "The {n} Waltz", "reel": "Reel number {n}"}[kind]
    stem = book.removesuffix(".abc")
    tunes = []
    for n in numbers:
        body = _body(n, bars)
        if song_is_eval(f"{stem}{n}.mid", EVAL_RATIO):
            body = body.replace("c", "^c", 1)  # a sharp no training tune has
        key = keys[n % len(keys)]
        tunes.append(f"X:{n}\nT:{title.format(n=n)}\n{header.format(key=key)}\n{body}")
    return tunes


@pytest.fixture(scope="module")
def books(tmp_path_factory) -> Path:
    """book.abc: 14 jigs (R:jig) and 8 waltzes (typed by their titles); reels.abc: 10
    reels in C| without R: (typed by the file's name)."""
    folder = tmp_path_factory.mktemp("books")
    tunes = _tunes("jig", range(1, 15)) + _tunes("waltz", range(15, 23))
    (folder / "book.abc").write_text("\n".join(tunes))
    (folder / "reels.abc").write_text("\n".join(_tunes("reel", range(1, 11))))
    return folder


@pytest.fixture(scope="module")
def dataset(books, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("data") / "abc"
    summary = get_family("abc_transformer").build_dataset(
        [books], output, config="transformer_tiny", eval_ratio=EVAL_RATIO, workers=2, progress=False
    )
    (output / "summary.txt").write_text(summary.format())
    return output


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory) -> Path:
    from melodygen.core.train import train

    run = tmp_path_factory.mktemp("runs") / "abc"
    train(dataset, run, steps=30, eval_every=15, progress=False)
    return run


@pytest.fixture(scope="module")
def generator(trained):
    return load_generator(trained / "model")


@pytest.fixture(scope="module")
def fluent(dataset, tmp_path_factory) -> Path:
    """A model trained long enough to write many of its bars whole, not all (20 s on a busy
    2-core CPU): a third of its raw tunes have only full bars."""
    from melodygen.core.train import train

    run = tmp_path_factory.mktemp("runs") / "fluent"
    train(dataset, run, steps=200, eval_every=100, hparams="batch_size=8", progress=False)
    return run


def test_every_body_round_trips_and_bar_lines_are_whole_tokens(books):
    from melodygen.io.abc import tunes_in

    bodies = [tune.body for tune in tunes_in(sorted(books.glob("*.abc")))]
    tokenizer = BodyTokenizer.fit(bodies, 120)
    assert json.loads(tokenizer.json_text)["pre_tokenizer"] == PRE_TOKENIZER
    for body, ids in zip(bodies, tokenizer.encode_all(bodies), strict=True):
        assert tokenizer.decode(ids) == body
        pieces = [tokenizer.tokens[i] for i in ids]
        assert set(bar_lines(body)) <= set(pieces)  # every bar line is one token
        assert {"|:", ":|", "|", "[1", "[2", "|]"} <= set(bar_lines(body))
    # a character the training bodies never held is <unk>, and counted
    ids = tokenizer.encode("|:G~AB|\n")
    assert UNK in ids and tokenizer.unknown_in("|:G~AB|\n") == {"~": 1}
    assert tokenizer.decode(ids) == "|:G\ufffdAB|\n"


def test_cached_decoder_gives_the_full_forward_pass_logits():
    import keras

    from melodygen.core.generation import compile_step
    from melodygen.families.abc_transformer.network import build_model

    hparams = HParams(
        embedding_size=16, encoder_layers=2, decoder_layers=2, heads=2, feed_forward_size=24,
        dropout=0.1, max_tokens=32,
    )  # fmt: skip
    keras.utils.set_random_seed(1)
    model = build_model(60, 30, hparams)
    rng = np.random.default_rng(0)
    meta = rng.integers(1, 30, (3, 13)).astype("int32")
    meta[:, 9:] = 0  # title slots left empty
    body = rng.integers(4, 60, (3, 12)).astype("int32")
    body[:, 0] = 2
    full = np.asarray(model.predict_on_batch([meta, body]))
    encoder, decoder = model.get_layer("encoder"), model.get_layer("decoder")
    cross = decoder.cross_cache(encoder(meta))
    cache = decoder.empty_cache(3, 20)
    step = compile_step(decoder.step)
    for position in range(12):
        logits, cache = step(body[:, position], np.int32(position), cache, cross, meta)
        assert np.abs(np.asarray(logits) - full[:, position]).max() < 1e-4


def test_cached_decoder_with_rows_at_their_own_positions_gives_the_full_forward_pass():
    """Rows sent back to an earlier position (bar checking) write on from there: each row
    attends by its own position only, so its logits are the full forward pass's of the
    text it ends with, whatever the cache held after that position."""
    import keras

    from melodygen.core.generation import compile_step
    from melodygen.families.abc_transformer.network import build_model

    hparams = HParams(
        embedding_size=16, encoder_layers=1, decoder_layers=2, heads=2, feed_forward_size=24,
        dropout=0.0, max_tokens=32,
    )  # fmt: skip
    keras.utils.set_random_seed(2)
    model = build_model(60, 30, hparams)
    rng = np.random.default_rng(1)
    meta = rng.integers(1, 30, (3, 13)).astype("int32")
    first = rng.integers(4, 60, (3, 12)).astype("int32")
    first[:, 0] = 2
    stops, backs = (12, 8, 5), (12, 3, 1)  # row 0 runs straight; rows 1 and 2 go back
    second = first.copy()
    for row, back in enumerate(backs):
        second[row, back:] = rng.integers(4, 60, 12 - back)  # another bar from there on
    full = [np.asarray(model.predict_on_batch([meta, body])) for body in (first, second)]
    schedules = [
        [(0, p) for p in range(stop)] + [(1, p) for p in range(back, 12)]
        for stop, back in zip(stops, backs, strict=True)
    ]
    encoder, decoder = model.get_layer("encoder"), model.get_layer("decoder")
    cross = decoder.cross_cache(encoder(meta))
    cache = decoder.empty_cache(3, 16)
    step = compile_step(decoder.step)
    for t in range(max(map(len, schedules))):
        # a row that has finished steps again at its last position, as generation does
        now = [schedule[min(t, len(schedule) - 1)] for schedule in schedules]
        bodies = [(first, second)[which] for which, _ in now]
        ids = np.array([bodies[r][r, p] for r, (_, p) in enumerate(now)], np.int32)
        positions = np.array([p for _, p in now], np.int32)
        logits, cache = step(ids, positions, cache, cross, meta)
        expected = np.stack([full[which][r, p] for r, (which, p) in enumerate(now)])
        assert np.abs(np.asarray(logits) - expected).max() < 1e-4


PADDED_PAST_THE_TABLE = """
import json
import numpy as np
import keras
from melodygen.core.batches import BatchShape
from melodygen.families.abc_transformer.configs import HParams
from melodygen.families.abc_transformer.dataset import TokenSplit, pad_batch
from melodygen.families.abc_transformer.network import build_model
from melodygen.nn.text import target_nats

hparams = HParams(
    embedding_size=16, encoder_layers=1, decoder_layers=2, heads=2, feed_forward_size=24,
    dropout=0.0, max_tokens=32,
)
keras.utils.set_random_seed(3)
model = build_model(60, 30, hparams)
rng = np.random.default_rng(0)
bodies = [rng.integers(4, 60, 32), rng.integers(4, 60, 9)]  # the first: max_tokens long
split = TokenSplit(
    np.concatenate(bodies).astype(np.int32), np.array([0, 32, 41]),
    rng.integers(1, 30, (2, 13)).astype(np.int32), np.ones(2, np.int64),
)
exact = target_nats(model, *pad_batch(split, np.arange(2), BatchShape())[:2])[0]
inputs, targets, _ = pad_batch(split, np.arange(2), BatchShape(step_multiple=128, rows=4))
padded = target_nats(model, inputs, targets)[0][:2]
print(json.dumps({"backend": keras.backend.backend(), "steps": int(inputs[1].shape[1]),
                  "exact": exact.tolist(), "padded": padded.tolist()}))
"""


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_a_max_tokens_long_tune_padded_past_the_position_table_scores_as_unpadded(backend):
    """JAX batches are padded to a multiple of 128 steps: a tune of exactly max_tokens
    tokens (the build keeps it) then has padding past the max_tokens + 1 learned positions.
    Padding must never read past the table (JAX gives NaN there, which 0 x NaN spread to
    the whole batch; TensorFlow raises): the tune scores as it does unpadded."""
    import os
    import subprocess
    import sys

    pytest.importorskip(backend)
    environment = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", PADDED_PAST_THE_TABLE], capture_output=True, text=True,
        timeout=300, env=environment, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["backend"] == backend and found["steps"] == 128
    assert np.all(np.isfinite(found["padded"]))
    assert found["padded"] == pytest.approx(found["exact"], rel=1e-4)


def test_seed_network_is_the_issues_size():
    from melodygen.families.abc_transformer.configs import CONFIGS
    from melodygen.families.abc_transformer.network import build_model

    hparams = CONFIGS["transformer_seed"].hparams
    assert (hparams.embedding_size, hparams.encoder_layers, hparams.decoder_layers) == (128, 4, 4)
    assert (hparams.heads, hparams.feed_forward_size, hparams.batch_size) == (8, 512, 32)
    assert build_model(1000, 700, hparams).count_params() == hparams.parameter_count(1000, 700)


def test_dataset_types_split_tokens_and_unknown_characters(dataset):
    family = get_family("abc_transformer")
    opened = family.open_dataset(dataset)
    train, held = opened.load("train"), opened.load("eval")
    assert len(train) + len(held) == 32 and 0 < len(held) < 16
    assert all(name.endswith(".mid") for name in train.names + held.names)
    assert set(opened.meta_vocab.known("rhythm")) == {"jig", "reel", "waltz"}
    assert set(opened.meta_vocab.known("meter")) == {"6/8", "3/4", "2/2"}
    summary = opened.metadata["summary"]
    assert summary["dance_types"] == {"jig": 14, "waltz": 8, "reel": 10}
    assert summary["sources"]  # where each source's types came from: R:, file, title
    counts = next(iter(summary["sources"].values()))
    assert (counts["R:"], counts["title"], counts["file"]) == (14, 8, 10)
    assert summary["round_trip"] == len(train)  # held-out tunes hold a '^' (unknown)
    assert summary["unknown_eval"] == {"^": len(held)}
    text = (dataset / "summary.txt").read_text()
    assert "tunes kept of each type: jig 14, reel 10, waltz 8" in text
    assert "unknown in eval" in text and "round trip" in text
    # held-out ^c is <unk> in the ids; the bodies decode to the texts' bodies otherwise
    assert (held.ids == UNK).sum() == len(held)
    from melodygen.io.abc import clean_tune

    assert opened.tokenizer.decode(train.body(0)) == clean_tune(train.texts[0]).body


def test_bad_hyperparameters_are_one_line(dataset):
    family = get_family("abc_transformer")
    for override in ("heads=3", "dropout=1.5", "max_tokens=4", "embedding_size=0", "nope=1"):
        with pytest.raises(ConfigError) as caught:
            family.new_model_info(family.open_dataset(dataset), override)
        assert "\n" not in str(caught.value) and str(caught.value).startswith("--hparams")


def test_training_evaluates_and_the_model_loads_after_save(trained, dataset, tmp_path):
    from melodygen.core.evaluate import evaluate

    model, info = load_model(trained / "model")
    assert info.family == "abc_transformer" and info.training["step"] == 30
    figures = evaluate(trained, dataset)
    assert 0 < figures["nll"] < np.log(info.vocab_size) and 0 <= figures["accuracy"] <= 1
    assert figures["bits_per_note_pooled"] == pytest.approx(figures["bits"] / figures["notes"])
    save_model(tmp_path / "copy", model, info)
    again, info_again = load_model(tmp_path / "copy")
    assert info_again.tokenizer == info.tokenizer and info_again.meta_vocab == info.meta_vocab
    held = get_family("abc_transformer").open_dataset(dataset).load("eval")
    from melodygen.core.batches import BatchShape
    from melodygen.families.abc_transformer.dataset import pad_batch

    inputs, _, _ = pad_batch(held, np.arange(len(held)), BatchShape())
    assert np.allclose(model.predict_on_batch(inputs), again.predict_on_batch(inputs), atol=1e-6)


def test_generation_with_controls_is_reproducible(generator):
    request = dict(
        num_outputs=3, seed=7, time_signature="6/8", key=7, rhythm="Jig", title="New jig",
        length_steps=8 * 12,
    )  # fmt: skip
    first = generator.generate(GenerationRequest(**request))
    again = generator.generate(GenerationRequest(**request))
    texts = [m.text for m in first.melodies]
    assert texts == [m.text for m in again.melodies] and len(texts) == 3
    for number, melody in enumerate(first.melodies, start=1):
        header = f"X:{number}\nT:New jig\nM:6/8\nL:1/8\nR:jig\nK:G\n"
        assert melody.text.startswith(header) and len(melody.text) > len(header)
        if melody.problem is None:
            assert melody.events and melody.key == 7
        else:
            assert melody.events == [] and "\n" not in melody.problem
    # open controls are filled from training tunes: any header the data had
    free = generator.generate(GenerationRequest(num_outputs=4, seed=1))
    for melody in free.melodies:
        lines = melody.text.split("\n")
        assert lines[1] == "T:Untitled" and lines[2] in ("M:6/8", "M:3/4", "M:2/2")
    # an opening's bars are written first, after the header
    primed = generator.generate(
        GenerationRequest(num_outputs=2, seed=2, text_primer="M:3/4\nK:D\n|:G2 B2 d2|")
    )
    for melody in primed.melodies:
        assert "M:3/4\nL:1/8\n" in melody.text and "K:D\n|:G2 B2 d2|" in melody.text


def test_requests_of_nearby_lengths_and_row_counts_share_one_compiled_step(generator, monkeypatch):
    """The compiled decoder step is one XLA program per input shape (seconds to compile,
    milliseconds to run): the cache is allocated in multiples of 64 positions and the
    rows padded to a power of two, so 5 to 7 bars (80 to 112 tokens) and 3 or 4 tunes
    all step one shape; padding rows change no real row's logits."""
    from melodygen.families.abc_transformer.generate import cache_positions, padded_rows

    assert [cache_positions(limit, 257) for limit in (64, 65, 128, 200, 256, 257)] == [
        64, 128, 128, 257, 257, 257,
    ]  # fmt: skip
    assert [padded_rows(rows) for rows in (1, 2, 3, 4, 5, 8, 9)] == [1, 2, 4, 4, 8, 8, 16]
    shapes = set()
    step = generator.steps._step

    def spy(ids, positions, cache, cross, meta):
        shapes.add((tuple(ids.shape), tuple(cache.shape)))
        return step(ids, positions, cache, cross, meta)

    monkeypatch.setattr(generator.steps, "_step", spy)
    for bars, tunes in ((5, 3), (6, 4), (7, 3)):
        generator.write(GenerationRequest(num_outputs=tunes, seed=5, length_steps=bars * 16))
    assert len(shapes) == 1
    ((rows,), cache) = next(iter(shapes))
    assert rows == 4 and cache[2:4] == (4, 128)
    # 3 rows padded to 4 step as the full forward pass reads them
    rng = np.random.default_rng(3)
    meta = rng.integers(1, generator.meta_vocab.size, (3, 13)).astype(np.int32)
    body = rng.integers(4, generator.tokenizer.size, (3, 10)).astype(np.int32)
    body[:, 0] = 2
    full = np.asarray(generator.model.predict_on_batch([meta, body]))
    state = generator.steps.start(meta, 64)
    for position in range(10):
        positions = np.full(3, position, np.int32)
        logits, state = generator.steps.step(body[:, position], positions, state)
        assert logits.shape == full[:, position].shape
        assert np.abs(logits - full[:, position]).max() < 1e-4


@pytest.mark.parametrize("ends_at_limit", [True, False])
def test_a_tune_of_exactly_the_limit_may_still_end(generator, monkeypatch, ends_at_limit):
    """A row may write the limit's tokens and then </s> (read at position limit, the
    cache holds limit + 1): a tune of exactly the limit is not cut when the model ends
    it there; any other token drawn there cuts it, and is not written."""
    from melodygen.families.abc_transformer.tokenizer import END

    request = GenerationRequest(num_outputs=3, seed=2, length_steps=4 * 16, check_bars=False)
    limit = generator.length_limit(request)
    step = generator.steps.step
    seen = []

    def no_end_before_the_limit(ids, positions, state):
        logits, state = step(ids, positions, state)
        seen.append(int(np.max(positions)))
        logits = np.array(logits)
        logits[:, END] = np.where((positions >= limit) & ends_at_limit, 1e9, -1e9)
        return logits, state

    monkeypatch.setattr(generator.steps, "step", no_end_before_the_limit)
    written = generator.write(request)[1]
    assert max(seen) == limit
    assert [len(ids) for ids in written.ids] == [limit] * 3
    assert all(np.all(ids > END) for ids in written.ids)  # body tokens only, no <pad>
    assert list(written.ended) == [ends_at_limit] * 3


def test_beam_search_runs_and_is_reproducible(generator):
    request = dict(
        num_outputs=2, seed=3, beam_size=2, branch_factor=2, steps_per_iteration=4,
        time_signature="2/2", rhythm="reel",
    )  # fmt: skip
    first = generator.generate(GenerationRequest(**request))
    again = generator.generate(GenerationRequest(**request))
    assert len(first.melodies) == 2
    assert [m.text for m in first.melodies] == [m.text for m in again.melodies]
    assert all("M:2/2\n" in m.text and "R:reel\n" in m.text for m in first.melodies)


def test_bar_checking_writes_bad_bars_again_and_keeps_the_score_true(fluent):
    """With check_bars (the default) a bar that does not fit is written again from the
    bar line before it, so more tunes have full bars than the raw samples; each tune's
    log-likelihood is still exactly the model's score of the tokens it ends with."""
    from melodygen.families.abc_transformer.dataset import TokenSplit
    from melodygen.families.abc_transformer.family import _nats
    from melodygen.io.abc import check_validity

    generator = load_generator(fluent / "model")
    written = {}
    for check in (False, True):
        written[check] = [
            generator.write(
                GenerationRequest(num_outputs=8, seed=seed, length_steps=24 * 12, check_bars=check)
            )[1]
            for seed in range(3)
        ]
    raw = [check_validity(text) for run in written[False] for text in run.texts]
    checked = [check_validity(text) for run in written[True] for text in run.texts]
    assert sum(v.full_bars for v in checked) > sum(v.full_bars for v in raw)
    assert sum(v.valid for v in checked) >= sum(v.valid for v in raw)
    model, info = load_model(fluent / "model")
    for runs in written.values():
        for run in runs:
            ended = np.flatnonzero(run.ended)  # wrote </s>: scored with it
            assert len(ended)
            bodies = [run.ids[i] for i in ended]
            split = TokenSplit(
                np.concatenate(bodies),
                np.cumsum([0] + [len(ids) for ids in bodies]),
                np.stack([info.meta_vocab.encode(run.metadata[i]) for i in ended]),
                np.ones(len(ended), np.int64),
            )
            nats = _nats(model, split, 8)
            assert -run.scores[ended] == pytest.approx(nats, rel=1e-4, abs=1e-3)
            for i in ended:
                assert generator.tokenizer.decode(run.ids[i]) in run.texts[i]
    # generate() returns what write() wrote, read back as music
    request = GenerationRequest(num_outputs=8, seed=0, length_steps=24 * 12)
    result = generator.generate(request)
    assert [m.text for m in result.melodies] == written[True][0].texts
    assert [m.log_likelihood for m in result.melodies] == pytest.approx(written[True][0].scores)


CHORDS_AND_FIELDS = "GABc dedc|[Ac]BA G2 ABc|[K:D] d2 [Ac][Bd] c2 B2|(3:2:3ABc d2 e4|]\n"
"""Four full bars of 4/4 (L:1/8) with chords, chord runs, an inline field and a tuplet's
colons: nothing in them is a bar line."""


def _marks_as_sampled(
    body: str, header: str = "M:4/4\nL:1/8\nK:G\n", opening: str | None = None, end=False
) -> list[tuple]:
    """(text, verdict, bars) at each token of ``body`` (one token a character) that a
    bar-checking row judges after the forced ``opening``, each token taken as drawn
    whatever the verdict; ``end``: then </s> is drawn, and its verdict is the last."""
    from melodygen.families.abc_transformer.generate import _BarRow, _Mark
    from melodygen.families.abc_transformer.tokenizer import END

    tokenizer = BodyTokenizer.fit([(opening or "") + body], 5)  # a token a character
    ids = tokenizer.encode(body)
    assert len(ids) == len(body)
    row = _BarRow(header)
    if opening is None:
        row.mark = _Mark(0, 0, 0.0, 0)  # as after an empty opening
    row.body = opening or ""
    start = len(tokenizer.encode(opening or ""))
    judged = []
    for length, token in enumerate([*ids, *([END] if end else [])], start=start):
        mark, text = row.mark, row.body
        back = row.judge(int(token), tokenizer, length, 0.0)
        if back is not None:
            judged.append((text, "rewind", 0))
            row.body = text  # taken as drawn all the same
        elif row.mark is not mark:
            judged.append((row.body, "keep", row.mark.bars))
        elif token == END:
            judged.append((row.body, "", 0))
        row.take(int(token), tokenizer)
    return judged


def test_bar_checking_judges_whole_bar_lines_not_chords_or_inline_fields():
    """As abc_char's rows: a [ after a bar line (a chord, an inline field) completes it and
    the bars are judged up to it; a chord's ] and an inline field's or a tuplet's colons
    are no bar line (they sent rows back, as an 'unexpected [')."""
    bars = CHORDS_AND_FIELDS.split("|")
    ends = [len("|".join(bars[: n + 1])) + 1 for n in range(3)] + [len(CHORDS_AND_FIELDS) - 1]
    assert _marks_as_sampled(CHORDS_AND_FIELDS) == [
        (CHORDS_AND_FIELDS[:end], "keep", number) for number, end in enumerate(ends, start=1)
    ]
    short = "GABc dedc|[Ac]BA G2 A|[K:D] d2"  # a short bar before a chord: written again
    assert _marks_as_sampled(short)[:2] == [
        ("GABc dedc|", "keep", 1),
        ("GABc dedc|[Ac]BA G2 A|", "rewind", 0),
    ]


def test_bar_checking_passes_over_a_repeat_problem_kept_before():
    """As abc_char's rows: a repeat problem kept once (here the opening's |: while another
    is open) fails no later bar, and the tune may end."""
    opening = "|:GAB A2G|:E2D D3|"
    judged = _marks_as_sampled(
        "GAB A2G|E2D D3:|\n", "M:6/8\nL:1/8\nK:G\n", opening=opening, end=True
    )
    assert judged == [
        (opening, "keep", 2),
        (opening + "GAB A2G|", "keep", 3),
        (opening + "GAB A2G|E2D D3:|", "keep", 4),
        (opening + "GAB A2G|E2D D3:|\n", "", 0),  # </s>: not written again
    ]


def test_validity_report_judges_the_transformers_tunes_beside_its_held_out_tunes(
    trained, dataset, generator, capsys
):
    """melodygen validity works for any family that writes ABC: the family gives its
    held-out texts (with the dance type it reads them as) and its generator its limit."""
    from melodygen.cli import main
    from melodygen.core.validity import cut_in, cut_warning, validity_report

    family = get_family("abc_transformer")
    opened = family.open_dataset(dataset)
    texts = family.held_out_texts(opened)
    held = opened.load("eval")
    assert len(texts) == len(held)
    for text, metadata in zip(texts, held.metadata, strict=True):
        assert f"R:{metadata.rhythm}\nK:" in text  # reels.abc's are typed by the file
    report = validity_report(trained, dataset, num=3, seed=1, bars=2)
    settings, made = report["settings"], report["generated"]
    assert (settings["length_limit"], settings["length_unit"]) == (64, "tokens")
    assert report["held_out"]["tunes"] == settings["held_out_tunes"] == len(held)
    assert made["tunes"] == 3 and 0 <= made["cut_by_limit"] <= 3
    # the tunes cut, read back from the warnings, are the ones that did not write </s>
    request = GenerationRequest(num_outputs=6, seed=4, length_steps=2 * 16)
    result = generator.generate(request)
    cut = int(np.sum(~generator.write(request)[1].ended))  # 2 of 6 here
    assert cut_in(result.warnings) == cut
    for count, tunes in ((1, 1), (0, 5), (3, 5)):
        assert cut_in([cut_warning(count, tunes, 64, "tokens")] if count else []) == count
    capsys.readouterr()
    assert main(["validity", "--checkpoint", str(trained), "--data", str(dataset), "--num", "2",
                 "--bars", "2", "--no-bar-check"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "at most 64 tokens, raw samples" in out and "valid (all three)" in out


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"time_signature": "5/4"}, "meters 2/2, 3/4, 6/8"),
        ({"key": 1}, "never saw a tune in Db major; it knows the keys (tonics) D, E, G, A"),
        ({"key": 7, "mode": "major_pentatonic"}, "modes"),
        ({"rhythm": "tango"}, "unknown dance type 'tango'; the model knows jig, reel, waltz"),
        ({"rhythm": "hornpipe"}, "never saw a hornpipe; it knows the dance types jig, reel"),
        ({"text_primer": "L:1/2\nK:G\n|G2|"}, "unit lengths"),
    ],
)
def test_bad_controls_are_one_clear_line(generator, change, words):
    with pytest.raises(GenerationError) as caught:
        generator.generate(GenerationRequest(num_outputs=1, seed=1, **change))
    message = str(caught.value)
    assert "\n" not in message and words in message


def _tokenizer_with(trained, change) -> str:
    values = json.loads(read_model_info(trained / "model")[1].tokenizer.json_text)
    change(values)
    return json.dumps(values)


def _merge_out_of_vocab(values: dict) -> None:
    """The last merge joins two tokens of the vocab into text the vocab does not hold
    (``tokenizers`` raised a bare 'Token ... out of vocabulary' at the first tune)."""
    vocab, merges = values["model"]["vocab"], values["model"]["merges"]
    singles = [token for token in vocab if len(token) == 1]
    pair = next([a, b] for a in singles for b in singles if a + b not in vocab)
    merges[-1] = pair if isinstance(merges[-1], list) else " ".join(pair)


def _bare_added_token(values: dict) -> None:
    """An added token without the fields ``tokenizers`` needs: it cannot build it."""
    values["added_tokens"][0] = {"content": "<pad>", "id": 0}


def _meta_vocab_with(trained, token: str) -> list[str]:
    return read_model_info(trained / "model")[1].meta_vocab.to_list() + [token]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tokenizer", lambda trained: "not json"),
        ("tokenizer", lambda trained: 12),
        (
            "tokenizer",
            lambda trained: _tokenizer_with(trained, lambda v: v["model"].update(type="WordPiece")),
        ),
        (
            "tokenizer",
            lambda trained: _tokenizer_with(
                trained, lambda v: v["model"]["vocab"].update({f"x{i}": i for i in range(9000)})
            ),
        ),
        (
            "tokenizer",
            lambda trained: _tokenizer_with(trained, lambda v: v["model"]["vocab"].pop("</s>")),
        ),
        ("tokenizer", lambda trained: _tokenizer_with(trained, lambda v: v.update(normalizer={}))),
        ("tokenizer", lambda trained: _tokenizer_with(trained, _merge_out_of_vocab)),
        ("tokenizer", lambda trained: _tokenizer_with(trained, _bare_added_token)),
        ("meta_vocab", lambda trained: ["<pad>"]),
        ("meta_vocab", lambda trained: _meta_vocab_with(trained, "K:foo")),
        ("meta_vocab", lambda trained: _meta_vocab_with(trained, "K:12")),
        ("meta_vocab", lambda trained: _meta_vocab_with(trained, "mode:bogus")),
        ("meta_vocab", lambda trained: _meta_vocab_with(trained, "M:6/0")),
        ("meta_vocab", lambda trained: _meta_vocab_with(trained, "L:1/3")),
        ("meta_vocab", lambda trained: _meta_vocab_with(trained, "R:jig\nQ:1/4=20")),
        ("meta_vocab", lambda trained: _meta_vocab_with(trained, "T:two words")),
        ("headers", lambda trained: [["6/8", "1/8", 99, "major", None, 1]]),
        ("headers", lambda trained: [["6/8", "1/8", 7, "major", "jig\nQ:1/4=20", 1]]),
        ("hparams", lambda trained: {**HParams().to_dict(), "embedding_size": 10**9}),
        ("config", lambda trained: "attention_rnn"),
        ("surprise", lambda trained: 1),
    ],
)
def test_hostile_model_file_is_one_line(trained, tmp_path, field, value):
    model = tmp_path / "model"
    shutil.copytree(trained / "model", model)
    values = json.loads((model / MODEL_JSON).read_text())
    values[field] = value(trained)
    (model / MODEL_JSON).write_text(json.dumps(values))
    with pytest.raises(ModelFileError) as caught:
        read_model_info(model)
    message = str(caught.value)
    assert "\n" not in message and MODEL_JSON in message and field in message


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda tunes: tunes[0].update(metadata=None), "metadata must be a JSON object"),
        (lambda tunes: tunes[0]["metadata"].update(tonic="7"), "tonic must be a pitch class"),
        (lambda tunes: tunes[0]["metadata"].update(rhythm="jig\nQ:1"), "rhythm must be a"),
        (lambda tunes: tunes[0]["metadata"].update(title="word"), "title must be a list"),
        (lambda tunes: tunes[0].update(name=12), "name and text must be strings"),
        (lambda tunes: tunes.__setitem__(0, "a tune"), "tune 1 is not a JSON object"),
    ],
)
def test_damaged_split_texts_are_one_dataset_error(dataset, tmp_path, change, words):
    """A damaged <split>.json is one DatasetError line naming it (not an AttributeError
    from its metadata, nor a wrong type loaded as if it were right)."""
    from melodygen.errors import DatasetError

    copy = tmp_path / "data"
    shutil.copytree(dataset, copy)
    tunes = json.loads((copy / "eval.json").read_text())
    change(tunes)
    (copy / "eval.json").write_text(json.dumps(tunes))
    opened = get_family("abc_transformer").open_dataset(copy)
    with pytest.raises(DatasetError) as caught:
        opened.load("eval")
    message = str(caught.value)
    assert "\n" not in message and "eval.json is damaged" in message and words in message


def test_score_tunes_agrees_with_the_dataset(trained, dataset):
    from melodygen.families.abc_char.family import TEXT_ANNOTATION
    from melodygen.io.abc import parse_tune

    family = get_family("abc_transformer")
    model, info = load_model(trained / "model")
    opened = family.open_dataset(dataset)
    held = opened.load("eval")
    by_dataset = {s.name: s for s in family.score_dataset(model, info, opened, "eval")}
    tunes = []
    for name, text in zip(held.names, held.texts, strict=True):
        sequence = parse_tune(text)
        sequence.text_annotations.add(time=0.0, text=TEXT_ANNOTATION + text)
        tunes.append((name, [sequence]))
    scores = family.score_tunes(model, info, tunes)
    assert len(scores) == len(held)
    for score in scores:
        assert score.notes == by_dataset[score.name].notes
        if score.name.startswith("book"):  # reels.abc's are typed by the file, not the tune
            assert score.bits == pytest.approx(by_dataset[score.name].bits, rel=1e-5)
