"""The docs cannot go stale: what README.md and docs/*.md point at exists.

- every `bptt.module.name` in backticks imports and resolves;
- every function named in the "code" column of a table is such a name, and resolves;
- every relative link and image resolves to a file in the repository (and a
  `#fragment`, to a heading of that file);
- every repository path in backticks (`tests/...`, `examples/...`, ...) and every
  mention of a markdown file, here and in the sources, names a file in the repository;
- every `bptt ...` command line in a code block parses with the real argument
  parser (`bptt.cli.build_parser`; nothing is run).
"""

import argparse
import importlib
import re
import shlex
from pathlib import Path

import pytest

from bptt.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
SOURCES = sorted(
    p
    for folder in ("src", "tests", "examples", "benchmarks")
    for p in (ROOT / folder).rglob("*.py")
    if "__pycache__" not in p.parts
)
REPO_DIRS = ("src/", "tests/", "examples/", "benchmarks/", "docs/", ".ci/")


def _id(p: Path) -> str:
    return str(p.relative_to(ROOT))


# ---------------------------------------------------------------- markdown structure


def fences(text: str) -> list[tuple[int, str, list[str]]]:
    """The fenced code blocks: (line number of the opening fence, language, lines)."""
    blocks, lang, start, body = [], None, 0, []
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            if lang is None:
                lang, start, body = line[3:].strip(), n, []
            else:
                blocks.append((start, lang, body))
                lang = None
        elif lang is not None:
            body.append(line)
    assert lang is None, f"a code block opened on line {start} is never closed"
    return blocks


def prose(text: str) -> str:
    """The text outside code blocks."""
    out, inside = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
        elif not inside:
            out.append(line)
    return "\n".join(out)


def tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Markdown tables outside code blocks: (header cells, rows of cells)."""
    found, lines = [], prose(text).splitlines()
    i = 0
    while i < len(lines) - 1:
        if lines[i].startswith("|") and re.fullmatch(r"\|[-:| ]+\|", lines[i + 1].strip()):
            header = _cells(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            found.append((header, rows))
        else:
            i += 1
    return found


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def code_spans(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", text)


# ---------------------------------------------------------------- (a), (b) code names


def resolve(name: str):
    parts = name.split(".")
    for i in range(len(parts), 0, -1):  # the longest importable module prefix, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(name)


def dotted_names(text: str) -> list[str]:
    return sorted({m for span in code_spans(text) for m in re.findall(r"\b(bptt(?:\.\w+)+)", span)})


def unresolved(names) -> list[str]:
    missing = []
    for name in names:
        try:
            resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
    return missing


@pytest.mark.parametrize("doc", DOCS, ids=_id)
def test_every_named_code_object_exists(doc):
    missing = unresolved(dotted_names(doc.read_text(encoding="utf-8")))
    assert not missing, f"{_id(doc)} names code that does not exist: {missing}"


def table_functions(text: str) -> tuple[list[str], list[str]]:
    """The code spans of every table column headed "code" or "function": (names, spans that are not names)."""
    names, bad = [], []
    for header, rows in tables(text):
        columns = [i for i, h in enumerate(header) if h.lower() in ("code", "function", "functions")]
        for row in rows:
            for i in columns:
                for span in code_spans(row[i] if i < len(row) else ""):
                    (names if re.fullmatch(r"bptt(\.\w+)+", span) else bad).append(span)
    return names, bad


@pytest.mark.parametrize("doc", DOCS, ids=_id)
def test_every_function_a_table_names_exists(doc):
    names, bad = table_functions(doc.read_text(encoding="utf-8"))
    assert not bad, f"{_id(doc)}: a table's code column names {bad}; write the full name, bptt.module.function"
    missing = unresolved(names)
    assert not missing, f"{_id(doc)}: a table names functions that do not exist: {missing}"


def test_the_readme_maps_the_math_to_the_code():
    names, _ = table_functions((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(names) >= 15


def test_the_derivation_points_at_the_code():
    names = dotted_names((ROOT / "docs" / "derivation.md").read_text(encoding="utf-8"))
    assert len(names) >= 20


# ---------------------------------------------------------------- (c) links and files


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*|_(?=\W)|(?<=\W)_", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(m) for m in re.findall(r"^#+ (.+)$", prose(path.read_text(encoding="utf-8")), re.M)}


def link_problems(doc: Path, text: str) -> list[str]:
    problems = []
    for target in re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose(text)):
        if re.match(r"[a-z]+:", target):  # https:, mailto: -- not a file
            continue
        path, _, fragment = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if path.startswith("/") or not file.is_relative_to(ROOT):
            problems.append(f"{target} (outside the repository)")
        elif not file.is_file():
            problems.append(f"{target} (no such file)")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            problems.append(f"{target} (no heading #{fragment} in {_id(file)})")
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=_id)
def test_every_relative_link_resolves(doc):
    problems = link_problems(doc, doc.read_text(encoding="utf-8"))
    assert not problems, f"{_id(doc)} links to what does not exist: {problems}"


def path_problems(text: str) -> list[str]:
    """Repository paths in backticks (`tests/test_x.py`, `examples/make_data.py`) that do not exist."""
    problems = []
    for span in code_spans(text):
        for word in span.split():
            if word.startswith(REPO_DIRS) and not (ROOT / word.rstrip(",.:;")).exists():
                problems.append(word)
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=_id)
def test_every_repository_path_exists(doc):
    problems = path_problems(doc.read_text(encoding="utf-8"))
    assert not problems, f"{_id(doc)} names files that are not in the repository: {problems}"


def markdown_mentions(text: str, *, docs_only: bool = False) -> set[str]:
    """Markdown file names in `text`; in source code only those that name documentation
    (docs/x.md, or an upper-case name such as README.md), not files a program writes."""
    pattern = r"(?:docs/[\w./-]*|\b[A-Z][A-Z0-9_-]*)\.md\b" if docs_only else r"[\w./-]*\w\.md\b"
    return set(re.findall(pattern, text))


def mentions_outside(path: Path, text: str) -> list[str]:
    """Markdown files mentioned in `text` that exist neither beside `path`, nor at the root, nor in docs/."""
    return sorted(
        m
        for m in markdown_mentions(text, docs_only=path.suffix == ".py")
        if not any((base / m).resolve().is_file() for base in (path.parent, ROOT, ROOT / "docs"))
    )


@pytest.mark.parametrize("path", DOCS + [p for p in SOURCES if p != Path(__file__).resolve()], ids=_id)
def test_every_markdown_file_mentioned_is_in_the_repository(path):
    missing = mentions_outside(path, path.read_text(encoding="utf-8"))
    assert not missing, f"{_id(path)} refers to files that are not in the repository: {missing}"


# ---------------------------------------------------------------- (d) command lines


def command_lines(text: str) -> list[tuple[int, str]]:
    """Every shell command shown in a code block, continuation lines joined: (line, command).

    ```sh, ```bash, ```shell: every line is a command; ```console, ```text: only
    lines after a `$ ` prompt (the rest is output). Every block must say which.
    """
    out = []
    for start, lang, body in fences(text):
        assert lang, f"the code block on line {start} has no language (sh, console, text, python, ...)"
        if lang not in ("sh", "bash", "shell", "console", "text"):
            continue
        prompt = lang in ("console", "text")
        n, pending = start, ""
        for offset, line in enumerate(body, 1):
            if not pending:
                if prompt and not line.startswith("$ "):
                    continue
                n = start + offset
                line = line[2:] if prompt else line
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            command, pending = pending + line, ""
            if command.strip():
                out.append((n, command.strip()))
    return out


def bptt_invocations(command: str) -> list[list[str]]:
    """The argument lists of the `bptt` calls in one shell command line.

    Handled explicitly: comments, `&&`, `||`, `;` and `|` between commands,
    `VAR=value` and `env -u VAR` before one, redirections after. A `...`
    (an elided argument) is refused: a shown command must be complete.
    """
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    calls, current = [], []
    for token in list(lexer) + [";"]:
        if token in (";", "&&", "||", "|", "&"):
            calls.append(current)
            current = []
        else:
            current.append(token)
    found = []
    for words in calls:
        if ">" in words or "<" in words or ">>" in words:  # redirection: the words before it
            words = words[: min(words.index(r) for r in (">", "<", ">>") if r in words)]
        while words and (re.fullmatch(r"[A-Za-z_]\w*=\S*", words[0]) or words[0] == "env"):
            words = words[3:] if words[:2] == ["env", "-u"] else words[1:]
        if words and words[0] == "bptt":
            found.append(words[1:])
    return found


def parse_error(args: list[str], capsys) -> str | None:
    """What the real parser says about `bptt ARGS`, or None if it accepts them (nothing runs)."""
    if "..." in args:
        return "'...' in a shown command: write it out in full"
    try:
        parsed = build_parser().parse_args(args)
    except SystemExit as e:
        message = capsys.readouterr().err.strip()
        return None if e.code == 0 else message or f"exit {e.code}"
    if not getattr(parsed, "run", None):
        return "no command"
    return None


@pytest.mark.parametrize("doc", DOCS, ids=_id)
def test_every_command_shown_parses(doc, capsys):
    errors = []
    for line, command in command_lines(doc.read_text(encoding="utf-8")):
        for args in bptt_invocations(command):
            error = parse_error(args, capsys)
            if error:
                errors.append(f"line {line}: bptt {shlex.join(args)}: {error}")
    assert not errors, f"{_id(doc)}:\n" + "\n".join(errors)


def test_the_readme_shows_commands():
    commands = command_lines((ROOT / "README.md").read_text(encoding="utf-8"))
    assert sum(len(bptt_invocations(c)) for _, c in commands) >= 2


def known_options() -> set[str]:
    """Every option of `bptt` and its commands, and of the scripts in examples/ and benchmarks/."""
    parser = build_parser()
    options = {o for action in parser._actions for o in action.option_strings}
    for action in parser._actions:
        for command in (getattr(action, "choices", None) or {}).values():
            if isinstance(command, argparse.ArgumentParser):
                options |= {o for a in command._actions for o in a.option_strings}
    for script in sorted((ROOT / "examples").glob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py")):
        options |= set(re.findall(r"""add_argument\(\s*["'](--[\w-]+)""", script.read_text(encoding="utf-8")))
    return options


# inline commands of other programs, whose options are theirs (`tensorboard --logdir runs`)
OTHER_PROGRAMS = {"tensorboard", "mpirun", "mpiexec", "pip", "chromium"}


def unknown_options(text: str, options: set[str]) -> list[str]:
    """Options named in inline code (`--seq-length k1`) that nothing accepts; the command
    lines in code blocks are parsed whole by test_every_command_shown_parses."""
    spans = [span for span in code_spans(prose(text)) if span.split(" ", 1)[0] not in OTHER_PROGRAMS]
    named = {o for span in spans for o in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", span)}
    return sorted(named - options)


@pytest.mark.parametrize("doc", DOCS, ids=_id)
def test_every_option_named_exists(doc):
    unknown = unknown_options(doc.read_text(encoding="utf-8"), known_options())
    assert not unknown, f"{_id(doc)} names options that no command accepts: {unknown}"


# ---------------------------------------------------------------- (e) the Python shown runs


def python_blocks(text: str) -> list[tuple[int, str]]:
    return [(start, "\n".join(body)) for start, lang, body in fences(text) if lang == "python"]


# pages whose Python needs a trained run: another test runs it on one, named here
RUN_ELSEWHERE = {"deployment.md": "tests/test_export.py::test_cli_run_deployed_without_bptt"}


def test_the_python_run_elsewhere_is_run():
    for page, where in RUN_ELSEWHERE.items():
        path, name = where.split("::")
        assert python_blocks((ROOT / "docs" / page).read_text(encoding="utf-8")), page
        assert f"def {name}(" in (ROOT / path).read_text(encoding="utf-8"), where


@pytest.mark.slow
@pytest.mark.parametrize(
    "doc",
    [d for d in DOCS if python_blocks(d.read_text(encoding="utf-8")) and d.name not in RUN_ELSEWHERE],
    ids=_id,
)
def test_the_python_shown_runs(doc, capsys):
    for start, code in python_blocks(doc.read_text(encoding="utf-8")):
        exec(compile(code, f"{_id(doc)}, the block on line {start}", "exec"), {})


# ---------------------------------------------------------------- the checks catch what they should


def test_the_checks_catch_stale_docs(capsys, tmp_path):
    doc = tmp_path / "x.md"
    assert unresolved(["bptt.layers.elman.no_such_function"]) == ["bptt.layers.elman.no_such_function"]
    assert table_functions("| math | code |\n|---|---|\n| h | `elman.forward` |\n")[1] == ["elman.forward"]
    assert link_problems(ROOT / "README.md", "[a](docs/missing.md) ![b](docs/default-run-loss.png)") == [
        "docs/missing.md (no such file)"
    ]
    assert link_problems(ROOT / "README.md", "[a](docs/cli.md#no-such-heading)")
    assert link_problems(doc, "[a](../outside.md)")
    assert path_problems("`tests/test_missing.py` and `tests/test_docs.py`") == ["tests/test_missing.py"]
    assert mentions_outside(ROOT / "README.md", "see NOTES-ELSEWHERE.md") == ["NOTES-ELSEWHERE.md"]
    assert mentions_outside(ROOT / "src" / "x.py", "(NOTES.md section 5) writes OUT/table.md") == ["NOTES.md"]
    assert parse_error(["train", "--no-such-option"], capsys)
    assert parse_error(["train", "--hidden-size", "-3"], capsys)
    assert parse_error(["generate"], capsys)  # RUN_DIR missing
    assert parse_error(["train", "..."], capsys)
    assert parse_error(["train", "--max-epochs", "2"], capsys) is None
    assert unknown_options("`--seq-length k1 --no-such-flag`", known_options()) == ["--no-such-flag"]
    shown = (
        "```sh\nOPENBLAS_NUM_THREADS=1 bptt bench --rounds 3 | tee out  # c\nenv -u X bptt train \\\n  --lr 0.1\n```\n"
    )
    calls = [args for _, c in command_lines(shown) for args in bptt_invocations(c)]
    assert calls == [["bench", "--rounds", "3"], ["train", "--lr", "0.1"]]
    assert command_lines("```text\nbptt 51,571\n$ bptt plot runs/x\n```\n") == [(3, "bptt plot runs/x")]
