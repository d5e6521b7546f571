"""Property-based tests of the readers of user files: any input gives a result or the
documented error (DataError / UsageError, one line), never another exception.

The checkpoint loader's fuzzers are in test_checkpoint.py. The CoNLL-U, TSV and CSV
readers get theirs here when those tasks land.
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
from bptt.commands.train import add_parser, config_argv
from bptt.data.text import Vocab, read_text, split
from bptt.errors import DataError, UsageError

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
@given(text=TEXTS, level=st.sampled_from(["char", "word"]), lowercase=st.booleans(), min_freq=st.integers(1, 3),
       max_size=st.none() | st.integers(1, 10), ends=st.booleans(), other=TEXTS)  # fmt: skip
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
@given(d=JSON_VALUES | st.fixed_dictionaries({"level": JSON_VALUES, "lowercase": JSON_VALUES,
                                              "sentence_ends": JSON_VALUES, "itos": JSON_VALUES}))  # fmt: skip
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
@given(data=st.binary(max_size=300) | st.lists(JSON_VALUES, max_size=4).map(lambda rs: "\n".join(map(json.dumps, rs)).encode()))
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
@given(data=st.binary(max_size=200) | st.dictionaries(st.sampled_from(["hidden-size", "lr", "lowercase", "data", "seed", "x"]),
                                                      JSON_VALUES, max_size=4).map(lambda d: json.dumps(d).encode()),
       suffix=st.sampled_from([".json", ".toml"]))  # fmt: skip
def test_config_any_bytes(data, suffix):
    with written(data, "cfg" + suffix) as path:
        argv, error = outcome(lambda: config_argv(path, TRAIN_PARSER), (UsageError, DataError))
    if error is not None:
        assert str(path) in str(error)
        one_line(error)
    else:
        assert all(isinstance(a, str) for a in argv)
