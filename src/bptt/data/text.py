"""Text corpora and vocabularies for language models.

`builtin_corpus` is a text that ships with Python itself (the help topics of
the standard library, `pydoc_data.topics`), so the default run needs no
download. `read_text` reads a user's file and says exactly what is wrong with
it. `Vocab` maps characters or words to ids 0..V-1 and back.

Word level tokenisation is deliberately simple and documented: the text is
split on whitespace (optionally lowercased), and each line end becomes the
end-of-sentence token "<eos>" (as in the Penn Treebank language-model setup).
Words rarer than `min_freq`, or beyond the `max_size` most frequent, become
"<unk>".
"""

from __future__ import annotations

import codecs
from collections import Counter
from pathlib import Path

import numpy as np

from bptt.errors import DataError

BUILTIN_NAME = "python-help"
UNK, EOS = "<unk>", "<eos>"


def builtin_corpus() -> str:
    """The standard library's help-topic texts, joined in sorted topic order."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k].strip("\n") for k in sorted(topics)) + "\n"


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """The whole file as text with \\n line ends; DataError naming the file if it cannot be."""
    path = Path(path)
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError(f"--encoding {encoding}: unknown encoding name") from None
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a text file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror})") from None
    if b"\x00" in data[:65536] and not encoding.lower().replace("-", "").startswith("utf16"):
        raise DataError(f"{path}: looks like a binary file (NUL bytes), expected text")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: is not {encoding} text (invalid byte 0x{data[e.start]:02x} at offset {e.start}); "
                        "pass --encoding to choose another encoding") from None  # fmt: skip
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise DataError(f"{path}: is empty, expected text")
    return text


def words(text: str, lowercase: bool = False, sentence_ends: bool = True) -> list[str]:
    """Whitespace tokens; each line end becomes <eos> when sentence_ends."""
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
    """Characters or words <-> ids. `itos[i]` is the token of id i; `stoi` the inverse."""

    def __init__(self, text: str | None = None, level: str = "char", *, lowercase: bool = False, min_freq: int = 1,
                 max_size: int | None = None, sentence_ends: bool = True, itos: list[str] | None = None):  # fmt: skip
        if level not in ("char", "word"):
            raise DataError(f"level: got {level!r}, expected char or word")
        self.level, self.lowercase, self.sentence_ends = level, lowercase, sentence_ends
        if itos is None:
            itos = self._build(text or "", min_freq, max_size)
        self.itos = list(itos)
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise DataError("vocabulary: a token appears twice")
        self.unk_id = self.stoi.get(UNK) if level == "word" else None

    def _build(self, text: str, min_freq: int, max_size: int | None) -> list[str]:
        if self.level == "char":
            return sorted(set(text))
        counts = Counter(words(text, self.lowercase, self.sentence_ends))
        # most frequent first, ties alphabetically: deterministic
        ranked = sorted((w for w, c in counts.items() if c >= min_freq and w != UNK), key=lambda w: (-counts[w], w))
        if max_size is not None:
            ranked = ranked[: max(max_size - 1, 0)]
        return [UNK] + ranked

    def __len__(self) -> int:
        return len(self.itos)

    def tokens(self, text: str) -> list[str]:
        return list(text) if self.level == "char" else words(text, self.lowercase, self.sentence_ends)

    def encode(self, text: str, source: str = "text") -> np.ndarray:
        """ids (int64) of the text's tokens. Word level: unknown words -> <unk>. Char level:
        an unknown character is a DataError naming it and its line."""
        toks = self.tokens(text)
        if self.level == "word":
            return np.fromiter((self.stoi.get(t, self.unk_id) for t in toks), dtype=np.int64, count=len(toks))
        try:
            return np.fromiter((self.stoi[c] for c in toks), dtype=np.int64, count=len(toks))
        except KeyError as e:
            c = e.args[0]
            line = text[: text.index(c)].count("\n") + 1
            raise DataError(f"{source}:{line}: character {c!r} is not in the model's vocabulary") from None

    def decode(self, ids) -> str:
        if self.level == "char":
            return "".join(self.itos[int(i)] for i in ids)
        return " ".join(self.itos[int(i)] for i in ids).replace(f" {EOS} ", "\n").replace(EOS, "\n")

    def to_json(self) -> dict:
        return {"level": self.level, "lowercase": self.lowercase, "sentence_ends": self.sentence_ends, "itos": self.itos}

    @classmethod
    def from_json(cls, d) -> "Vocab":
        ok = (isinstance(d, dict) and d.get("level") in ("char", "word") and isinstance(d.get("itos"), list)
              and all(isinstance(s, str) for s in d["itos"]) and len(d["itos"]) > 0)  # fmt: skip
        if not ok or (d["level"] == "word" and UNK not in d["itos"]):
            raise DataError("vocabulary: malformed (expected level char|word and a non-empty list of strings)")
        return cls(level=d["level"], lowercase=bool(d.get("lowercase", False)),
                   sentence_ends=bool(d.get("sentence_ends", True)), itos=d["itos"])  # fmt: skip


def split(ids: np.ndarray, valid_fraction: float = 0.05, min_length: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid): the last `valid_fraction` of the ids held out, contiguous."""
    n_valid = int(round(len(ids) * valid_fraction))
    if n_valid < min_length or len(ids) - n_valid < min_length:
        raise DataError(f"corpus: {len(ids)} tokens are too few to hold out {valid_fraction:g} for validation "
                        f"(each part needs at least {min_length}); pass --valid FILE or a longer text")  # fmt: skip
    return ids[:-n_valid], ids[-n_valid:]
