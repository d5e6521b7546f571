"""Options from a TOML or JSON file (`bptt train --config FILE`), merged under the command line's.

The file's keys are option names; each becomes its flag, so argparse checks
every value exactly as it checks the command line, and flags given on the
command line win.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

from bptt.errors import UsageError


def config_argv(path: Path, parser: argparse.ArgumentParser) -> list[str]:
    """A config file's keys as command-line flags, so argparse validates them the same way."""
    from bptt.data.text import read_text

    text = read_text(path)
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                raise UsageError(f"{path}: TOML needs Python 3.11 (or use a .json config)") from None
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (ValueError, TypeError) as e:
        raise UsageError(f"{path}: not valid {'TOML' if path.suffix.lower() == '.toml' else 'JSON'}: {e}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a table of option = value")
    known = {a.dest: a for a in parser._actions}
    argv: list[str] = []
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest not in known or dest in ("config", "help"):
            raise UsageError(f"{path}: unknown option {key!r}")
        flag = known[dest].option_strings[0]
        if isinstance(known[dest], argparse._StoreTrueAction):
            if not isinstance(value, bool):
                raise UsageError(f"{path}: {key} expects true or false, got {value!r}")
            argv += [flag] if value else []
        elif isinstance(value, (dict, list)) or value is None:
            raise UsageError(f"{path}: {key} expects a single value, got {value!r}")
        else:
            argv += [flag, str(value)]
    return argv


def parse_with_config(args: argparse.Namespace) -> argparse.Namespace:
    """Re-parse the command line on top of the config file's options (flags win).

    Sets args.given: the destinations of every option given explicitly, on the
    command line or in the config file (see `task_defaults`).
    """
    from_file: list[str] = []
    if args.config is not None:
        parser = args.parser
        from_file = config_argv(args.config, parser)
        said = io.StringIO()
        try:
            with contextlib.redirect_stderr(said):  # argparse's one line, to name the config file in it
                parser.parse_args(from_file)
        except SystemExit:
            why = said.getvalue().strip().removeprefix("bptt: error: ").split(" (see: ")[0]
            raise UsageError(f"{args.config}: {why or 'an option value is out of range'}") from None
        merged = parser.parse_args(from_file + list(args.argv))
        merged.argv = args.argv
        args = merged
    args.given = _given(args.parser, from_file + list(args.argv))
    return args


def _given(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    flags = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    return {a.dest for a in parser._actions if flags & set(a.option_strings)}
