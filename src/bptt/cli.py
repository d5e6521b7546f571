"""The `bptt` command: parse, dispatch to a subcommand, and turn errors into one line.

Errors that are the user's (bad options, bad data, a bad checkpoint, a file
that cannot be read or written, not enough memory) print `bptt: error: ...` on
one line and exit 2; an unexpected internal error prints
one line with a hint to re-run with --debug (which shows the traceback) and
exits 1. SIGINT (Ctrl-C) and SIGTERM during training save a checkpoint first and
exit 130 and 143 (128 + the signal's number).
"""

from __future__ import annotations

import argparse
import sys

from bptt import __version__
from bptt.errors import BpttError, Interrupted


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line too (no usage dump), exit 2."""

    def error(self, message: str):
        self.exit(2, f"bptt: error: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from bptt.commands import gradcheck

    parser = _Parser(prog="bptt", description="Recurrent networks trained by backpropagation through time, in NumPy.")
    parser.add_argument("--version", action="version", version=f"bptt {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an internal error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in _command_modules() + [gradcheck]:
        module.add_parser(sub)
    return parser


def _command_modules() -> list:
    from bptt.commands import bench, diagnose, evaluate, export, generate, plot, predict, train

    return [train, generate, evaluate, predict, plot, diagnose, bench, export]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    args.argv = argv[argv.index(args.command) + 1 :]  # the subcommand's own flags, for config merging
    try:
        return int(args.run(args) or 0)
    except Interrupted as e:
        print(f"bptt: interrupted: {e}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("bptt: interrupted", file=sys.stderr)
        return 130
    except (BpttError, ValueError) as e:
        if debug:
            raise
        print(f"bptt: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # a file that cannot be read or written: permissions, a full disk, a missing directory
        if debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"bptt: error: {where}{_one_line(e) if not e.strerror else e.strerror}", file=sys.stderr)
        return 2
    except MemoryError as e:
        if debug:
            raise
        print(
            f"bptt: error: out of memory ({_one_line(e)}); use smaller sizes (--hidden-size, --batch-size, "
            "--seq-length, --vocab-size)",
            file=sys.stderr,
        )
        return 2
    except Exception as e:  # noqa: BLE001 - the last line of defence
        if debug:
            raise
        print(
            f"bptt: internal error: {type(e).__name__}: {_one_line(e)} (re-run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
