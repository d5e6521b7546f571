"""Text corpora and vocabularies for language models.

`builtin_corpus` is a text that ships with Python itself (the help topics of
the standard library, `pydoc_data.topics`, about 0.5 MB), so the default run
needs no download. `read_text` reads a user's file and says exactly what is
wrong with it. `Vocab` maps characters or words to ids 0..V-1 and back, and
`split` holds out the end of a corpus for validation.

Word-level tokenisation is deliberately simple and documented: the text is
split on whitespace (optionally lowercased), and each line end becomes the
end-of-sentence token "<eos>" (as in the Penn Treebank language-model setup).
Words rarer than `min_freq`, or beyond the `max_size` most frequent, become
"<unk>". Character level has no "<unk>": a character the vocabulary lacks is
an error, since silently replacing it would change the text.
"""

from __future__ import annotations

import codecs
from collections import Counter
from pathlib import Path

import numpy as np

from bptt.errors import DataError, UsageError, where

BUILTIN_NAME = "python-help"
UNK, EOS = "<unk>", "<eos>"
LEVELS = ("char", "word")


def builtin_corpus() -> str:
    """The standard library's help-topic texts, joined by blank lines in sorted topic order.

    Deterministic for a given Python version (the topics change between versions)."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k].strip("\n") for k in sorted(topics)) + "\n"


def read_text(path: Path | str, encoding: str = "utf-8") -> str:
    """The whole file as text with \\n line ends; a DataError naming the file if it cannot be.

    Refused: an unknown encoding name, a missing file, a directory, a binary file
    (NUL bytes, except in UTF-16/32), bytes that do not decode, and a file that is
    empty or only whitespace."""
    path = Path(path)
    codec = _codec_name(path, encoding)
    data = read_bytes(path)
    nul = -1 if codec.startswith(("utf-16", "utf-32")) else data.find(b"\x00")  # the whole file: one memchr
    if nul >= 0:
        raise DataError(f"{path}: looks like a binary file (a NUL byte at offset {nul}), expected text")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path}: is not {encoding} text (invalid byte 0x{data[e.start]:02x} at offset {e.start}); "
            "pass --encoding to choose another encoding"
        ) from None
    text = text.removeprefix("\ufeff")  # a byte-order mark (Excel's and Notepad's UTF-8) is not text
    if not text.strip():
        what = "0 bytes" if not data else "only whitespace"
        raise DataError(f"{path}: is empty ({what}), expected text")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _codec_name(path: Path, encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise DataError(f"{path}: --encoding {encoding}: unknown encoding name (e.g. utf-8, latin-1, cp1252)") from None


def read_bytes(path: Path) -> bytes:
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a text file")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror})") from None


def words(text: str, lowercase: bool = False, sentence_ends: bool = True) -> list[str]:
    """Whitespace-separated tokens; each non-blank line ends with <eos> when sentence_ends."""
    if lowercase:
        text = text.lower()
    if not sentence_ends:
        return text.split()
    out: list[str] = []
    for line in text.split("\n"):
        toks = line.split()
        if toks:
            out.extend(toks)
            out.append(EOS)
    return out


class Vocab:
    """Characters or words <-> ids 0..V-1.

    `itos[i]` is the token of id i and `stoi` the inverse. Char level: every
    distinct character of the text, sorted by code point. Word level: "<unk>"
    (id 0) then the words seen at least `min_freq` times, most frequent first,
    ties alphabetically, at most `max_size` entries in all ("<unk>" included).
    `unk_id` is the id of "<unk>" (None at char level)."""

    def __init__(
        self,
        text: str | None = None,
        level: str = "char",
        *,
        lowercase: bool = False,
        min_freq: int = 1,
        max_size: int | None = None,
        sentence_ends: bool = True,
        itos: list[str] | None = None,
    ):
        if level not in LEVELS:
            raise UsageError(f"--level: got {level!r}, expected char or word")
        self.level, self.lowercase, self.sentence_ends = level, lowercase, sentence_ends
        self.itos = list(itos) if itos is not None else self._build(text or "", min_freq, max_size)
        if not self.itos:
            raise DataError("vocabulary: the text has no characters, expected at least one")
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            dup = next(s for s, c in Counter(self.itos).items() if c > 1)
            raise DataError(f"vocabulary: token {dup!r} appears twice, expected each once")
        self.unk_id = self.stoi.get(UNK) if level == "word" else None

    def _build(self, text: str, min_freq: int, max_size: int | None) -> list[str]:
        if self.level == "char":
            return sorted(set(text))
        counts = Counter(words(text, self.lowercase, self.sentence_ends))
        ranked = sorted((w for w, c in counts.items() if c >= min_freq and w != UNK), key=lambda w: (-counts[w], w))
        if max_size is not None:
            ranked = ranked[: max(max_size - 1, 0)]
        return [UNK] + ranked

    def __len__(self) -> int:
        return len(self.itos)

    def tokens(self, text: str) -> list[str]:
        """The text's tokens as this vocabulary splits them (characters or words)."""
        return list(text) if self.level == "char" else words(text, self.lowercase, self.sentence_ends)

    def encode(self, text: str, source: str = "text") -> np.ndarray:
        """(N,) int64 ids of the text's tokens. Word level: unknown words -> <unk>. Char level: an
        unknown character is a DataError naming it and its `source`:line:column."""
        toks = self.tokens(text)
        if self.level == "word":
            return np.fromiter((self.stoi.get(t, self.unk_id) for t in toks), dtype=np.int64, count=len(toks))
        try:
            return np.fromiter((self.stoi[c] for c in toks), dtype=np.int64, count=len(toks))
        except KeyError as e:
            raise self._unknown_char(text, e.args[0], source) from None

    def _unknown_char(self, text: str, c: str, source: str) -> DataError:
        at = text.index(c)
        line = text.count("\n", 0, at) + 1
        column = at - (text.rfind("\n", 0, at) + 1) + 1
        return DataError(
            f"{where(source, line)}:{column}: character {c!r} is not in the model's vocabulary "
            f"(U+{ord(c):04X}), expected one of its {len(self)} characters"
        )

    def decode(self, ids) -> str:
        """The text of a sequence of ids. Word level: words joined by spaces, <eos> as a line end."""
        toks = [self.itos[int(i)] for i in ids]
        if self.level == "char":
            return "".join(toks)
        lines, line = [], []
        for t in toks:
            if t == EOS:
                lines.append(" ".join(line))
                line = []
            else:
                line.append(t)
        return "\n".join(lines + [" ".join(line)])

    def to_json(self) -> dict:
        """A plain dict that `from_json` turns back into an equal vocabulary."""
        return {
            "level": self.level,
            "lowercase": self.lowercase,
            "sentence_ends": self.sentence_ends,
            "itos": list(self.itos),
        }

    @classmethod
    def from_json(cls, d) -> Vocab:
        """The vocabulary of a `to_json` dict; DataError saying what is malformed."""
        _check_json(d)
        return cls(level=d["level"], lowercase=d["lowercase"], sentence_ends=d["sentence_ends"], itos=d["itos"])


def _check_json(d) -> None:
    """Exactly the keys of `to_json`, each of its type; char tokens single characters; word level has <unk>."""
    expected = {"level", "lowercase", "sentence_ends", "itos"}
    if not isinstance(d, dict) or set(d) != expected:
        found = sorted(d) if isinstance(d, dict) else type(d).__name__
        raise DataError(f"vocabulary: found {found}, expected a dict with keys {sorted(expected)}")
    if d["level"] not in LEVELS:
        raise DataError(f"vocabulary: level {d['level']!r}, expected char or word")
    for key in ("lowercase", "sentence_ends"):
        if not isinstance(d[key], bool):
            raise DataError(f"vocabulary: {key} is {d[key]!r}, expected true or false")
    itos = d["itos"]
    if not isinstance(itos, list) or not itos or not all(isinstance(s, str) and s for s in itos):
        raise DataError("vocabulary: itos is not a non-empty list of non-empty strings")
    if d["level"] == "char" and any(len(s) != 1 for s in itos):
        bad = next(s for s in itos if len(s) != 1)
        raise DataError(f"vocabulary: char-level token {bad!r}, expected single characters")
    if d["level"] == "word" and UNK not in itos:
        raise DataError(f"vocabulary: word level without {UNK}, expected it in itos")


def split(
    ids: np.ndarray, valid_fraction: float = 0.1, min_length: int = 2, source: str = "corpus"
) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) views of the (N,) ids: the last round(N * valid_fraction) held out, contiguous.

    DataError when either part would be shorter than `min_length` tokens."""
    if not 0 < valid_fraction < 1:
        raise UsageError(f"--valid-fraction: got {valid_fraction:g}, expected a number between 0 and 1")
    n_valid = int(round(len(ids) * valid_fraction))
    if min(n_valid, len(ids) - n_valid) < min_length:
        raise DataError(
            f"{source}: {len(ids):,} tokens would split into {len(ids) - n_valid:,} for training and "
            f"{n_valid:,} for validation at --valid-fraction {valid_fraction:g}, but each part needs at "
            f"least {min_length}; pass --valid FILE or a longer text"
        )
    return ids[: len(ids) - n_valid], ids[len(ids) - n_valid :]
