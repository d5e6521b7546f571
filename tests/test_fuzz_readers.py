"""Property-based tests of the readers of user files: any input gives a result or the
documented error (DataError / UsageError, one line), never another exception.

The checkpoint loader's fuzzers are in test_checkpoint.py. The tasks' readers are fuzzed
here too: CoNLL-U (`bptt.data.conllu`), labelled TSV/CSV and regression CSV
(`bptt.data.tabular`) and the speller's numbers, with arbitrary bytes and with files
built from the right pieces put together wrongly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bptt.commands.plot import read_metrics
from bptt.commands.train import add_parser
from bptt.data.text import Vocab, read_text, split
from bptt.errors import DataError, UsageError
from bptt.training.config import config_argv

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ENCODINGS = st.sampled_from(["utf-8", "latin-1", "utf-16", "utf-32", "cp1252", "ascii", "shift_jis", "nope"])
# text that looks like text: lines, words, odd characters, \r, NUL, surrogates are excluded by st.text
TEXTS = st.text(st.characters(codec="utf-8"), max_size=200) | st.text(" \n\r\tab\u00e9\u4e2d\U0001f600<>", max_size=50)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


def one_line(e: Exception) -> None:
    assert "\n" not in str(e) and "\r" not in str(e), str(e)


def outcome(call, errors):
    """(call(), None), or (None, the error) when it raises one of `errors`; anything else propagates."""
    try:
        return call(), None
    except errors as e:
        return None, e


@contextlib.contextmanager
def written(data: bytes, name: str = "f.txt"):
    """A file holding `data`, removed afterwards."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(data)
        yield path


@FUZZ
@given(data=st.binary(max_size=400), encoding=ENCODINGS)
@example(data=b"\xef\xbb\xbfhello", encoding="utf-8")
@example(data=b"\xff\xfeh\x00i\x00", encoding="utf-16")
@example(data=b"a\x00b", encoding="utf-8")
def test_read_text_any_bytes(data, encoding):
    with written(data) as path:
        text, error = outcome(lambda: read_text(path, encoding), DataError)
    if error is not None:
        assert str(path) in str(error)
        one_line(error)
    else:
        assert isinstance(text, str) and text.strip() and "\r" not in text


@FUZZ
@given(
    text=TEXTS,
    level=st.sampled_from(["char", "word"]),
    lowercase=st.booleans(),
    min_freq=st.integers(1, 3),
    max_size=st.none() | st.integers(1, 10),
    ends=st.booleans(),
    other=TEXTS,
)
def test_vocab_build_encode_decode_any_text(text, level, lowercase, min_freq, max_size, ends, other):
    kw = dict(lowercase=lowercase, min_freq=min_freq, max_size=max_size, sentence_ends=ends) if level == "word" else {}
    vocab, error = outcome(lambda: Vocab(text, level=level, **kw), DataError)
    if error is not None:  # char level, an empty text: no vocabulary to build
        assert level == "char" and text == ""
        one_line(error)
        return
    again = Vocab.from_json(json.loads(json.dumps(vocab.to_json())))
    assert again.itos == vocab.itos
    ids = vocab.encode(text)
    assert ids.dtype == np.int64 and ((0 <= ids) & (ids < max(len(vocab), 1))).all()
    if level == "char":
        assert vocab.decode(ids) == text
    _, error = outcome(lambda: vocab.encode(other, source="other.txt"), DataError)
    if error is not None:  # char level: a character the vocabulary lacks, named with its place
        assert level == "char" and str(error).startswith("other.txt:")
        one_line(error)


@FUZZ
@given(
    d=JSON_VALUES
    | st.fixed_dictionaries(
        {"level": JSON_VALUES, "lowercase": JSON_VALUES, "sentence_ends": JSON_VALUES, "itos": JSON_VALUES}
    )
)
@example(d={"level": "char", "lowercase": False, "sentence_ends": True, "itos": ["a", "a"]})
@example(d={"level": "word", "lowercase": False, "sentence_ends": True, "itos": ["the"]})
def test_vocab_from_any_json(d):
    vocab, error = outcome(lambda: Vocab.from_json(d), DataError)
    if error is not None:
        one_line(error)
    else:
        assert vocab.to_json() == d


@FUZZ
@given(n=st.integers(0, 50), fraction=st.floats(allow_nan=True, allow_infinity=True), minimum=st.integers(0, 5))
def test_split_any_fraction(n, fraction, minimum):
    ids = np.arange(n)
    parts, error = outcome(lambda: split(ids, fraction, minimum), (DataError, UsageError))
    if error is not None:
        one_line(error)
        return
    train, valid = parts
    assert len(train) >= minimum and len(valid) >= minimum and np.array_equal(np.concatenate([train, valid]), ids)


@FUZZ
@given(
    data=st.binary(max_size=300)
    | st.lists(JSON_VALUES, max_size=4).map(lambda rs: "\n".join(map(json.dumps, rs)).encode())
)
def test_read_metrics_any_bytes(data):
    with written(data, "metrics.jsonl") as path:
        records, error = outcome(lambda: read_metrics(path), DataError)
    if error is not None:
        assert str(path) in str(error)
        one_line(error)
    else:
        assert records and all(isinstance(r, dict) and "step" in r and "train_loss" in r for r in records)


def _train_parser() -> argparse.ArgumentParser:
    sub = argparse.ArgumentParser(prog="bptt").add_subparsers()
    add_parser(sub)
    return sub.choices["train"]


TRAIN_PARSER = _train_parser()


@FUZZ
@given(
    data=st.binary(max_size=200)
    | st.dictionaries(
        st.sampled_from(["hidden-size", "lr", "lowercase", "data", "seed", "x"]), JSON_VALUES, max_size=4
    ).map(lambda d: json.dumps(d).encode()),
    suffix=st.sampled_from([".json", ".toml"]),
)
def test_config_any_bytes(data, suffix):
    with written(data, "cfg" + suffix) as path:
        argv, error = outcome(lambda: config_argv(path, TRAIN_PARSER), (UsageError, DataError))
    if error is not None:
        assert str(path) in str(error)
        one_line(error)
    else:
        assert all(isinstance(a, str) for a in argv)


# ---- the tasks' readers ------------------------------------------------------------

CONLLU_IDS = st.sampled_from(
    ["1", "2", "3", "4", "1-2", "2-3", "3-2", "1-9", "1.1", "0.1", "0", "-1", "x", "", " ", "01"]
)
CONLLU_FIELDS = st.sampled_from(
    ["_", "NOUN", "VERB", "", " ", "0", "1", "X", "root", "0:root", "A=B", "a|b", "don't", "é", "#"]
)
GOOD_FIELDS = st.sampled_from(
    ["_", "dogs", "NOUN", "VERB", "Number=Plur", "0", "root", "0:root", "SpaceAfter=No", "é", "a b"]
)


@st.composite
def conllu_lines(draw, i: int) -> str:
    """Word i of a sentence: mostly well formed, sometimes one thing wrong (its ID, a field, the column count)."""
    cols = [str(i), *(draw(GOOD_FIELDS) for _ in range(9))]
    cols[6] = "0"  # HEAD
    cols[8] = draw(st.sampled_from(["_", "0:root"]))  # DEPS
    wrong = draw(st.sampled_from(["none"] * 6 + ["id", "field", "count", "range", "empty node"]))
    if wrong == "id":
        cols[0] = draw(CONLLU_IDS)
    elif wrong == "field":
        cols[draw(st.integers(1, 9))] = draw(CONLLU_FIELDS)
    elif wrong == "count":
        cols = cols[: draw(st.integers(1, 9))] if draw(st.booleans()) else cols + ["_"]
    elif wrong == "range":  # a multi-word token before word i
        return "\t".join([f"{i}-{draw(st.integers(i - 1, i + 2))}", "don't", *["_"] * 8]) + "\n" + "\t".join(cols)
    elif wrong == "empty node":
        return "\t".join(cols) + "\n" + "\t".join([f"{i}.1", "x", "x", "NOUN", "_", "_", "_", "_", f"{i}:dep", "_"])
    return "\t".join(cols)


@st.composite
def conllu_texts(draw) -> str:
    """Sentences that look like CoNLL-U, some of them wrong in one place: see conllu_lines."""
    blocks = []
    for _ in range(draw(st.integers(1, 3))):
        lines = draw(st.lists(st.sampled_from(["# sent_id = 1", "# text = a b", "#"]), max_size=2))
        lines += [draw(conllu_lines(i)) for i in range(1, draw(st.integers(0, 4)) + 1)]
        blocks.append("\n".join(lines))
    return draw(st.sampled_from(["\n\n"] * 3 + ["\n\n\n", "\n \n"])).join(blocks) + draw(
        st.sampled_from(["", "\n", "\n\n"])
    )


@FUZZ
@given(data=st.binary(max_size=300) | conllu_texts().map(str.encode), column=st.sampled_from(["upos", "xpos"]))
@example(data=b"1-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n1\tdo\tdo\tAUX\t_\t_\t0\troot\t_\t_\n\n", column="upos")
@example(data=b"1\tdo\tdo\tAUX\t_\t_\tX\troot\t_\t_\n\n", column="upos")
@example(data=b"1\tdo\tdo\tAUX\t_\t_\t0\troot\tx\tA\n\n", column="upos")
def test_read_conllu_any_bytes(data, column):
    from bptt.data import conllu

    with written(data, "f.conllu") as path:
        sentences, error = outcome(lambda: conllu.read(path, column), DataError)
        if error is None:
            _, error = outcome(lambda: conllu.require_tags(path, sentences, column), DataError)
            # what was read is written back and read again to the same words
            tags = [["T"] * len(s.words) for s in sentences]
            path.write_text(conllu.write(sentences, tags, column))
            again = conllu.read(path, column)
            assert [s.words for s in again] == [s.words for s in sentences]
            assert all(t == "T" for s in again for t in s.tags)
    if error is not None:
        assert str(path) in str(error)
        one_line(error)
    else:
        assert sentences and all(s.words and len(s.words) == len(s.tags) == len(s.lines) for s in sentences)


@FUZZ
@given(data=st.binary(max_size=200) | TEXTS.map(str.encode), suffix=st.sampled_from([".conllu", ".txt"]))
def test_read_any_conllu_or_plain(data, suffix):
    from bptt.data import conllu

    with written(data, "f" + suffix) as path:
        result, error = outcome(lambda: conllu.read_any(path), DataError)
        if error is None:
            sentences, _ = result
            text = conllu.write(sentences, [["X"] * len(s.words) for s in sentences])
            assert text.count("\n\n") == len(sentences)
    if error is not None:
        assert str(path) in str(error)
        one_line(error)


TABLE_CELLS = st.sampled_from(
    [
        "good film",
        "1",
        "0",
        "pos",
        "",
        " ",
        '"',
        '"a,b"',
        "a\tb",
        "x\ny",
        "é",
        "0.1 0.2",
        "0.1:2",
        "0.3",
        "-1 2",
        "nan",
        "inf",
        "1e999",
        "-3",
        "text",
        "input",
    ]
)
HEADERS = st.sampled_from(
    [[], ["text", "label"], ["sentence", "label"], ["input", "target"], ["id", "text", "label"], ["x"]]
)


NUMBER_CELLS = (
    st.sampled_from(["0.1", "0.1 0.2", "-1 2 3", "7", "0.5 -0.5 1e3"])  # good ones, half the time
    | st.sampled_from(["0.1:2", "0.1:2 0.3:1", "1 2:3", "0.5 x", "nan", "1e999", "", " "])
)


@st.composite
def tables(draw, cells=TABLE_CELLS, headers=HEADERS, seps=("\t", ",")) -> str:
    """A header (or none), then rows of cells joined by tabs or commas, sometimes a row with one cell
    too few or too many, sometimes the other separator."""
    sep = draw(st.sampled_from(seps))
    header = draw(headers)
    width = len(header) or draw(st.integers(1, 3))
    rows = [header] if header else []
    rows += [
        [draw(cells) for _ in range(draw(st.sampled_from([width] * 6 + [width - 1, width + 1])))]
        for _ in range(draw(st.integers(0, 5)))
    ]
    return "\n".join(draw(st.sampled_from([sep] * 6 + ["\t", ","])).join(r) for r in rows) + draw(
        st.sampled_from(["", "\n"])
    )


COLUMN_NAMES = st.none() | st.sampled_from(["text", "label", "sentence", "input", "target", "x"])


@FUZZ
@given(
    data=st.binary(max_size=300) | tables().map(str.encode),
    suffix=st.sampled_from([".tsv", ".csv", ".txt"]),
    text_column=COLUMN_NAMES,
    label_column=COLUMN_NAMES,
)
@example(data=b"\xef\xbb\xbftext,label\ngood,1\n", suffix=".csv", text_column=None, label_column=None)
@example(data=b"text,text,label\ngood,x,1\n", suffix=".csv", text_column=None, label_column=None)
def test_read_labelled_and_texts_any_bytes(data, suffix, text_column, label_column):
    from bptt.data.tabular import read_labelled, read_texts

    with written(data, "f" + suffix) as path:
        examples, error = outcome(lambda: read_labelled(path, text_column, label_column), DataError)
        texts, texts_error = outcome(lambda: read_texts(path, text_column), DataError)
    for e in (error, texts_error):
        if e is not None:
            assert str(path) in str(e)
            one_line(e)
    if error is None:
        assert examples and all(e.text.strip() and e.label.strip() and e.line >= 1 for e in examples)
        if data.startswith(b"\xef\xbb\xbf"):
            assert not examples[0].text.startswith("\ufeff")
    if texts_error is None:
        assert all(isinstance(t, str) for t in texts)


@FUZZ
@given(
    data=st.binary(max_size=300)
    | tables(
        NUMBER_CELLS, st.sampled_from([["input", "target"]] * 4 + [[], ["input"], ["target", "input"]]), (",",)
    ).map(str.encode),
    need_targets=st.booleans(),
)
@example(data=b"input,target\n0.1 0.2,0.3\n0.1:1 0.2,0.2\n", need_targets=True)
@example(data=b"input,target\n1e999,0\n", need_targets=True)
def test_read_sequences_any_bytes(data, need_targets):
    from bptt.data.tabular import read_sequences

    with written(data, "f.csv") as path:
        rows, error = outcome(lambda: read_sequences(path, need_targets=need_targets), DataError)
    if error is not None:
        assert str(path) in str(error)
        one_line(error)
        return
    D = rows[0][0].shape[1]
    for x, y, line in rows:
        assert x.ndim == 2 and x.shape[0] >= 1 and x.shape[1] == D and np.isfinite(x).all() and line >= 2
        assert (y is None) == (not need_targets)
        if y is not None:
            assert y.ndim == 2 and y.shape[0] >= 1 and np.isfinite(y).all()


@FUZZ
@given(
    text=TEXTS
    | st.lists(st.integers(-5, 30).map(str) | st.sampled_from(["x", "1.5", "", "-", "٣", "1_0"]), max_size=6).map(
        " ".join
    )
)
def test_spell_numbers_any_text(text):
    from bptt.tasks.spell import parse_numbers

    numbers, error = outcome(lambda: parse_numbers(text, {"max_number": 20}, "n.txt"), UsageError)
    if error is not None:
        assert str(error).startswith("n.txt")
        one_line(error)
    else:
        assert numbers and all(isinstance(n, int) and 0 <= n <= 20 for n in numbers)
