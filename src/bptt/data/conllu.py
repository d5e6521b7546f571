"""CoNLL-U files (Universal Dependencies) for tagging: read words and tags, write predictions.

A sentence is a block of lines ended by a blank line; "#" lines are comments;
every other line has ten tab-separated columns

    ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC

As UD specifies, ID is an integer for a (syntactic) word, a range "1-2" for a
multi-word token (its surface form: "don't" = "do" + "n't", it carries no tag)
and a decimal "8.1" for an empty node (enhanced graphs only). A tagger tags
words: ranges and empty nodes are kept for writing and skipped otherwise.

Parsing and writing are the `conllu` package's (an optional extra, imported
only here); this module first checks each line itself, so that a malformed
file is a DataError naming the file, the line and what was expected. Plain
text (one sentence per line, tokens split on whitespace) is read too, for
prediction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bptt.data.text import read_text
from bptt.errors import DataError, UsageError

COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")
TAG_COLUMNS = ("upos", "xpos")
_WORD_ID = re.compile(r"[1-9][0-9]*\Z")
_RANGE_ID = re.compile(r"[1-9][0-9]*-[1-9][0-9]*\Z")
_EMPTY_ID = re.compile(r"[0-9]+\.[1-9][0-9]*\Z")


@dataclass
class Sentence:
    """words: the FORMs of the words (ranges and empty nodes left out); tags: their tags in the
    chosen column (None for "_" or plain text); lines: the file line of each word;
    tokens: the conllu.TokenList to write predictions into (None for plain text)."""

    words: list[str]
    tags: list[str | None]
    lines: list[int]
    tokens: object = None


def _conllu():
    try:
        import conllu
    except ImportError:
        raise UsageError(
            "reading CoNLL-U needs the conllu package: pip install 'bptt[train]' (or pip install conllu)"
        ) from None
    return conllu


def looks_like_conllu(path: Path, text: str) -> bool:
    """A .conllu/.conll file, or one whose first non-comment line has tab-separated columns."""
    if path.suffix.lower() in (".conllu", ".conll"):
        return True
    for line in text.split("\n"):
        if line.strip() and not line.startswith("#"):
            return "\t" in line
    return False


def read(path: Path | str, column: str = "upos", encoding: str = "utf-8") -> list[Sentence]:
    """The sentences of a CoNLL-U file, every line checked; DataError `path:line: ...` if malformed."""
    path = Path(path)
    text = read_text(path, encoding)
    blocks = list(_blocks(text))
    for start, lines in blocks:
        _check_block(path, start, lines)
    conllu = _conllu()
    out = []
    for start, lines in blocks:
        try:  # block by block, so that an error names its sentence's first line
            parsed = conllu.parse("\n".join(lines) + "\n\n")
        except Exception as e:  # noqa: BLE001 - conllu raises several kinds; every one is the file's fault
            raise DataError(f"{path}:{start}: not valid CoNLL-U ({' '.join(str(e).split())})") from None
        if len(parsed) != 1:
            raise DataError(f"{path}:{start}: found {len(parsed)} sentences in one block, expected 1")
        tokens = parsed[0]
        words, tags, where = [], [], []
        for (i, _line), tok in zip(((i, l) for i, l in enumerate(lines) if not l.startswith("#")), tokens):
            if isinstance(tok["id"], int):
                words.append(tok["form"])
                tags.append(tok[column])
                where.append(start + i)
        out.append(Sentence(words, tags, where, tokens))
    if not out:
        raise DataError(f"{path}: no sentence found, expected CoNLL-U (ten tab-separated columns per word)")
    return out


def _blocks(text: str):
    """(first line number, lines) of each sentence block."""
    lines, start = [], None
    for n, line in enumerate(text.split("\n"), 1):
        if line.strip():
            if start is None:
                start = n
            lines.append(line)
        elif lines:
            yield start, lines
            lines, start = [], None
    if lines:
        yield start, lines


def _check_block(path: Path, start: int, lines: list[str]) -> None:
    expected_id, n_words, last_range = 1, 0, None
    for n, line in enumerate(lines, start):
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise DataError(
                f"{path}:{n}: found {len(cols)} tab-separated columns, expected 10 "
                f"({' '.join(c.upper() for c in COLUMNS)})"
            )
        empty = next((c for c, v in zip(COLUMNS, cols) if not v.strip()), None)
        if empty is not None:
            raise DataError(f"{path}:{n}: empty {empty.upper()}, expected a value or '_'")
        tid = cols[0]
        if _WORD_ID.match(tid):
            if int(tid) != expected_id:
                raise DataError(
                    f"{path}:{n}: word ID {tid}, expected {expected_id} (IDs count 1, 2, ... in each sentence)"
                )
            expected_id += 1
            n_words += 1
        elif _RANGE_ID.match(tid):
            first, last = map(int, tid.split("-"))
            if first != expected_id or last <= first:
                raise DataError(
                    f"{path}:{n}: range {tid}, expected {expected_id}-N with N > {expected_id} "
                    "(a multi-word token spans the words that follow it)"
                )
            last_range = (n, tid, last)
        elif not _EMPTY_ID.match(tid):
            raise DataError(f"{path}:{n}: ID {tid!r}, expected an integer, a range like 1-2 or an empty node like 1.1")
    if n_words == 0:
        raise DataError(f"{path}:{start}: a sentence without words, expected at least one line with an integer ID")
    if last_range is not None and last_range[2] > n_words:
        n, tid, _ = last_range
        raise DataError(f"{path}:{n}: range {tid}, but the sentence has {n_words} words")


def require_tags(path: Path | str, sentences: list[Sentence], column: str) -> None:
    """DataError at the first word whose tag is missing ("_")."""
    for s in sentences:
        for word, tag, line in zip(s.words, s.tags, s.lines):
            if tag is None or tag == "_":
                raise DataError(
                    f"{path}:{line}: word {word!r} has no {column.upper()} (found '_'), expected a tag"
                    + (" (this treebank may have no XPOS: try --column upos)" if column == "xpos" else "")
                )


def read_plain(path: Path | str, encoding: str = "utf-8") -> list[Sentence]:
    """One sentence per non-blank line, tokens split on whitespace."""
    path = Path(path)
    out = []
    for n, line in enumerate(read_text(path, encoding).split("\n"), 1):
        words = line.split()
        if words:
            out.append(Sentence(words, [None] * len(words), [n] * len(words)))
    return out


def read_any(path: Path | str, column: str = "upos", encoding: str = "utf-8") -> tuple[list[Sentence], bool]:
    """(sentences, is_conllu): CoNLL-U if the file looks like it, else plain text."""
    path = Path(path)
    if looks_like_conllu(path, read_text(path, encoding)):
        return read(path, column, encoding), True
    return read_plain(path, encoding), False


def write(sentences: list[Sentence], predicted: list[list[str]], column: str = "upos") -> str:
    """CoNLL-U text: each sentence with `column` of its words set to the predicted tags.

    Sentences read from CoNLL-U keep every other column, comment, range and empty node;
    plain-text sentences become words with ID, FORM and the tag ("_" elsewhere)."""
    conllu = _conllu()
    parts = []
    for s, tags in zip(sentences, predicted):
        if s.tokens is None:
            rows = [
                {c: "_" for c in COLUMNS} | {"id": i, "form": w, column: t}
                for i, (w, t) in enumerate(zip(s.words, tags), 1)
            ]
            tokens = conllu.models.TokenList(rows, metadata={"text": " ".join(s.words)})
        else:
            tokens, it = s.tokens, iter(tags)
            for tok in tokens:
                if isinstance(tok["id"], int):
                    tok[column] = next(it)
        parts.append(tokens.serialize())
    return "".join(parts)
