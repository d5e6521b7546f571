"""The text-data layer: the built-in corpus, read_text's refusals, Vocab, split and Streams."""

import json

import numpy as np
import pytest

from bptt.data.streams import Streams
from bptt.data.text import EOS, UNK, Vocab, builtin_corpus, read_text, split
from bptt.errors import DataError, UsageError

# ---- the built-in corpus ----------------------------------------------------


def test_builtin_corpus_is_large_and_deterministic():
    text = builtin_corpus()
    assert len(text) > 100_000 and len(set(text)) > 50
    assert text == builtin_corpus()
    assert "\r" not in text and text.endswith("\n")


# ---- read_text ----------------------------------------------------------------


def write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


BAD_FILES = [
    ("missing.txt", None, "utf-8", "missing.txt: no such file"),
    ("empty.txt", b"", "utf-8", "empty.txt: is empty (0 bytes)"),
    ("blank.txt", b" \n\t\r\n", "utf-8", "blank.txt: is empty (only whitespace)"),
    ("binary.bin", b"\x00\x01\x02abc", "utf-8", "binary.bin: looks like a binary file"),
    (
        "latin1.txt",
        "café\n".encode("latin-1"),
        "utf-8",
        "latin1.txt: is not utf-8 text (invalid byte 0xe9 at offset 3); pass --encoding to choose another encoding",
    ),
    ("corpus.txt", b"hello\n", "nope", "corpus.txt: --encoding nope: unknown encoding name"),
]


@pytest.mark.parametrize("name,data,encoding,message", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_read_text_refuses_bad_input_naming_the_file(tmp_path, name, data, encoding, message):
    path = tmp_path / name if data is None else write(tmp_path, name, data)
    with pytest.raises(DataError) as e:
        read_text(path, encoding)
    assert message in str(e.value)


def test_read_text_refuses_a_directory(tmp_path):
    with pytest.raises(DataError, match="is a directory, expected a text file") as e:
        read_text(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_read_text_decodes_the_encoding_it_is_given(tmp_path):
    path = write(tmp_path, "latin1.txt", "café\n".encode("latin-1"))
    assert read_text(path, encoding="latin-1") == "café\n"
    assert read_text(write(tmp_path, "u16.txt", "añb\n".encode("utf-16")), encoding="utf-16") == "añb\n"


def test_read_text_normalises_line_ends(tmp_path):
    assert read_text(write(tmp_path, "crlf.txt", b"a\r\nb\rc\n")) == "a\nb\nc\n"


# ---- Vocab: characters ------------------------------------------------------


def test_char_vocab_is_sorted_distinct_characters_and_round_trips():
    text = "hello, world\n"
    v = Vocab(text)
    assert v.level == "char" and v.itos == sorted(set(text)) and len(v) == len(set(text))
    assert v.stoi == {c: i for i, c in enumerate(v.itos)} and v.unk_id is None
    ids = v.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (len(text),)
    assert v.decode(ids) == text


def test_char_vocab_names_an_unknown_character_and_where_it_is():
    v = Vocab("abc\n")
    with pytest.raises(DataError) as e:
        v.encode("ab\ncaz", source="prime.txt")
    assert "prime.txt:2:3: character 'z' is not in the model's vocabulary (U+007A)" in str(e.value)


# ---- Vocab: words -----------------------------------------------------------

WORDS = "the cat sat\nthe dog sat\nThe end\n"


def test_word_vocab_counts_sentence_ends_and_unk_first():
    v = Vocab(WORDS, level="word")
    assert v.itos[0] == UNK and v.unk_id == 0
    assert v.itos[1:4] == [EOS, "sat", "the"]  # by frequency (3, 2, 2), ties alphabetically
    assert set(v.itos) == {UNK, EOS, "the", "The", "cat", "sat", "dog", "end"}
    assert EOS not in Vocab(WORDS, level="word", sentence_ends=False).itos


def test_word_vocab_min_freq_max_size_lowercase():
    assert Vocab(WORDS, level="word", min_freq=2).itos == [UNK, EOS, "sat", "the"]
    assert Vocab(WORDS, level="word", max_size=3).itos == [UNK, EOS, "sat"]
    assert Vocab(WORDS, level="word", lowercase=True).itos[:3] == [UNK, EOS, "the"]  # "the" x3 ties <eos>: alphabetical


def test_word_encode_maps_unknown_words_to_unk_and_decode_restores_lines():
    v = Vocab(WORDS, level="word", min_freq=2)
    ids = v.encode("the cat sat\nthe end\n")
    assert [v.itos[i] for i in ids] == ["the", UNK, "sat", EOS, "the", UNK, EOS]
    assert v.decode(ids) == "the <unk> sat\nthe <unk>\n"
    full = Vocab(WORDS, level="word")
    assert full.decode(full.encode(WORDS)) == WORDS


@pytest.mark.parametrize("level", ["char", "word"])
def test_vocab_json_round_trip(level):
    v = Vocab(WORDS, level=level, lowercase=True)
    d = json.loads(json.dumps(v.to_json()))
    w = Vocab.from_json(d)
    assert w.to_json() == v.to_json() and w.unk_id == v.unk_id
    assert np.array_equal(w.encode(WORDS), v.encode(WORDS))


GOOD = {"level": "word", "lowercase": False, "sentence_ends": True, "itos": [UNK, "a"]}
MALFORMED = [
    ([UNK], "expected a dict"),
    ({k: v for k, v in GOOD.items() if k != "itos"}, "expected a dict with keys"),
    ({**GOOD, "extra": 1}, "expected a dict with keys"),
    ({**GOOD, "level": "byte"}, "level 'byte', expected char or word"),
    ({**GOOD, "lowercase": "no"}, "lowercase is 'no', expected true or false"),
    ({**GOOD, "itos": []}, "non-empty list"),
    ({**GOOD, "itos": [UNK, 3]}, "non-empty list"),
    ({**GOOD, "itos": ["a", "b"]}, "without <unk>"),
    ({**GOOD, "itos": [UNK, "a", "a"]}, "token 'a' appears twice"),
    ({**GOOD, "level": "char", "itos": ["a", "bc"]}, "char-level token 'bc'"),
]


@pytest.mark.parametrize("d,message", MALFORMED)
def test_vocab_from_malformed_json_is_a_data_error(d, message):
    with pytest.raises(DataError, match="vocabulary: ") as e:
        Vocab.from_json(d)
    assert message in str(e.value)


# ---- split ------------------------------------------------------------------


def test_split_holds_out_the_contiguous_end():
    ids = np.arange(100)
    train, valid = split(ids, 0.1)
    assert np.array_equal(train, np.arange(90)) and np.array_equal(valid, np.arange(90, 100))


def test_split_refuses_parts_shorter_than_the_minimum():
    with pytest.raises(DataError, match="20 tokens would split into 19 for training and 1 for validation"):
        split(np.arange(20), 0.05)
    with pytest.raises(DataError, match="each part needs at least 10"):
        split(np.arange(50), 0.1, min_length=10)
    with pytest.raises(UsageError, match="--valid-fraction: got 1"):
        split(np.arange(50), 1.0)


# ---- Streams ----------------------------------------------------------------


def test_streams_shapes_and_targets_shifted_by_one():
    ids = np.arange(103)
    s = Streams(ids, batch_size=4, seq_length=7)  # n = 102 // 4 = 25 positions per stream
    assert (s.length, s.n_chunks) == (25, 4)
    shapes = [X.shape for X, _ in (s.chunk(k) for k in range(s.n_chunks))]
    assert shapes == [(4, 7), (4, 7), (4, 7), (4, 4)]  # the last chunk is shorter, not dropped
    for k in range(s.n_chunks):
        X, Y = s.chunk(k)
        assert np.array_equal(Y, X + 1)  # ids are positions: the target is the next token
    with pytest.raises(IndexError):
        s.chunk(4)


def test_chunks_concatenated_per_stream_reconstruct_contiguous_streams():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, size=1000)
    s = Streams(ids, batch_size=5, seq_length=30)
    X = np.concatenate([x for x, _ in s], axis=1)
    Y = np.concatenate([y for _, y in s], axis=1)
    n = s.length
    for b in range(5):
        assert np.array_equal(X[b], ids[b * n : (b + 1) * n])  # stream b is the b-th contiguous 1/B
        assert np.array_equal(Y[b], ids[b * n + 1 : (b + 1) * n + 1])


def test_streams_are_read_only_views():
    s = Streams(np.arange(50), 2, 5)
    X, _ = s.chunk(0)
    with pytest.raises(ValueError):
        X[0, 0] = 7


def test_cursor_resumes_mid_epoch_exactly():
    ids = np.arange(200)
    a = Streams(ids, 3, 10)  # 7 chunks per epoch
    it = iter(a)
    for _ in range(3):
        next(it)
    assert a.cursor == {"epoch": 0, "chunk": 3}
    saved = json.loads(json.dumps(a.cursor))
    rest = [x for x, _ in it]
    assert a.cursor == {"epoch": 1, "chunk": 0}

    b = Streams(ids, 3, 10)
    b.cursor = saved
    assert all(np.array_equal(x, y) for (x, _), y in zip(b, rest, strict=True))
    assert b.cursor == {"epoch": 1, "chunk": 0}
    assert len(list(b)) == b.n_chunks and b.cursor == {"epoch": 2, "chunk": 0}


@pytest.mark.parametrize(
    "cursor", [{"epoch": 0}, {"epoch": -1, "chunk": 0}, {"epoch": 0, "chunk": 7}, {"epoch": 0, "chunk": 1.0}, [0, 1]]
)
def test_a_bad_cursor_is_a_data_error(cursor):
    with pytest.raises(DataError, match="cursor: found"):
        Streams(np.arange(200), 3, 10).cursor = cursor


def test_too_short_corpus_says_how_many_tokens_are_needed():
    with pytest.raises(DataError) as e:
        Streams(np.arange(100), batch_size=10, seq_length=10)
    msg = str(e.value)
    assert "100 tokens, but --batch-size 10 x --seq-length 10 needs at least 101" in msg
    assert "smaller --batch-size or --seq-length" in msg
    assert len(Streams(np.arange(101), 10, 10).chunk(0)[0][0]) == 10
