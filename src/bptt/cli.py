"""The `bptt` command: parse, dispatch to a subcommand, and turn errors into one line.

Errors that are the user's (bad options, bad data, a bad checkpoint, a file
that cannot be read or written, not enough memory) print `bptt: error: ...` on
one line and exit 2; an unexpected internal error prints
one line with a hint to re-run with --debug (which shows the traceback) and
exits 1. SIGINT (Ctrl-C) and SIGTERM during training save a checkpoint first and
exit 130 and 143 (128 + the signal's number). Output into a pipe that closes
early (`bptt generate RUN | head`) ends the command quietly, with status 0, as
for any Unix filter.

Under an MPI launcher (`mpirun -n N bptt train ...`, `bptt.training.distributed`)
only rank 0 prints to stdout; the other ranks' errors go to stderr as
`bptt: rank R: error: ...`.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys

from bptt import __version__
from bptt.errors import BpttError, Interrupted


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line too (no usage dump), exit 2; every option's help shows its default."""

    def __init__(self, *args, **kwargs):
        from bptt.training.options import HelpFormatter

        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        if message.startswith("unrecognized arguments: "):
            message = self.unrecognized(message.removeprefix("unrecognized arguments: ").split())
        self.exit(2, f"bptt: error: {message} (see: {self.prog} --help)\n")

    def unrecognized(self, extra: list[str]) -> str:
        """'unrecognized arguments: ...', with the closest option of this parser to a mistyped flag."""
        message = f"unrecognized arguments: {' '.join(extra)}"
        options = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
        for flag in (a.split("=", 1)[0] for a in extra if a.startswith("--")):
            close = difflib.get_close_matches(flag, options, n=1, cutoff=0.6)
            if close:
                return f"{message}; did you mean {close[0]}?"
        return message


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
    from bptt.commands import bench, diagnose, evaluate, export, generate, plot, predict, report, train

    return [train, generate, evaluate, predict, plot, report, diagnose, bench, export]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    parser = build_parser()
    try:
        try:
            args, extra = parser.parse_known_args(argv)
        except SystemExit:  # --help, --version, a usage error: what they printed must reach the pipe now
            sys.stdout.flush()
            raise
    except BrokenPipeError:  # ... and the pipe had closed
        _silence_stdout()
        return 0
    if not getattr(args, "run", None):
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        parser.print_help()
        return 2
    if extra:  # said by the subcommand's parser: its options are the ones to suggest, its --help the one to read
        _subparser(parser, args.command).error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv = argv[argv.index(args.command) + 1 :]  # the subcommand's own flags, for config merging
    prefix = "bptt:"
    try:
        prefix = _mpi_rank_prefix()
        code = int(args.run(args) or 0)
        sys.stdout.flush()  # here, so that a closed pipe is caught below and not at exit
        return code
    except BrokenPipeError:  # the reader went away (`| head`): a normal end for a filter
        _silence_stdout()
        return 0
    except Interrupted as e:
        print(f"{prefix} interrupted: {e}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("bptt: interrupted", file=sys.stderr)
        return 130
    except (BpttError, ValueError) as e:
        if debug:
            raise
        print(f"{prefix} error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # a file that cannot be read or written: permissions, a full disk, a missing directory
        if debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"{prefix} error: {where}{_one_line(e) if not e.strerror else e.strerror}", file=sys.stderr)
        return 2
    except MemoryError as e:
        if debug:
            raise
        print(
            f"{prefix} error: out of memory ({_one_line(e)}); use smaller sizes (--hidden-size, --batch-size, "
            "--seq-length, --vocab-size)",
            file=sys.stderr,
        )
        return 2
    except Exception as e:  # noqa: BLE001 - the last line of defence
        if debug:
            raise
        print(
            f"{prefix} internal error: {type(e).__name__}: {_one_line(e)} (re-run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        from bptt.training import lock

        lock.release_all()  # the run directory this command wrote into is free again


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return actions[0].choices[command]


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that Python's flush at exit does not hit the closed pipe again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _mpi_rank_prefix() -> str:
    """Under an MPI launcher with several ranks: silence stdout but on rank 0 and return the
    prefix of this rank's error lines; "bptt:" otherwise (mpi4py is imported only under a launcher)."""
    from bptt.training import distributed

    if not distributed.launched_by_mpi():
        return "bptt:"
    comm = distributed.communicator()
    if comm.is_root:
        return "bptt:"
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    return f"bptt: rank {comm.rank}:"


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
