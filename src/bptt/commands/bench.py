"""`bptt bench`: time bptt against PyTorch in this process (see `bptt.bench`).

Sections: step (one training step per configuration, and its fraction of the
GEMM-bound ceiling), profile (where a bptt step's time goes), generate (sampling at batch 1), memory (full BPTT against
checkpoint_every="auto" for growing T; needs no torch), jax (only when JAX is
installed). The step and generate sections need torch.
"""

from __future__ import annotations

import argparse

from bptt import bench
from bptt.errors import UsageError
from bptt.training.options import positive_float, positive_int


def _names(allowed, what: str):
    def parse(text: str) -> list[str]:
        names = [n for n in text.split(",") if n]
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"got {text!r}, expected {what} from: {', '.join(allowed)}")
        return names

    return parse


def _lengths(text: str) -> list[int]:
    return [positive_int(n) for n in text.split(",")]


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="time bptt against PyTorch (steps, generation, memory)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--sections", type=_names(bench.SECTIONS, "comma-separated sections"), default=list(bench.SECTIONS))
    p.add_argument(
        "--configs", type=_names(list(bench.CONFIGS), "comma-separated configurations"), default=list(bench.CONFIGS)
    )
    p.add_argument(
        "--cells",
        type=_names(bench.CELLS, "comma-separated cells"),
        default=list(bench.CELLS),
        help="a row per configuration and cell in step, profile and memory (against nn.RNN, nn.LSTM, nn.GRU)",
    )
    p.add_argument("--rounds", type=positive_int, default=7, help="interleaved rounds (medians are reported)")
    p.add_argument("--seconds", type=positive_float, default=0.5, help="per contender per round")
    p.add_argument("--lengths", type=_lengths, default=[1000, 10000, 100000], help="T for the memory section")
    p.add_argument(
        "--torch-threads", type=positive_int, default=None, help="torch.set_num_threads (default: the cores)"
    )
    p.add_argument("--gen-length", type=positive_int, default=200, help="tokens per call in the generate section")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.rounds < 1:
        raise UsageError("--rounds: expected at least 1")
    bench.run(
        args.sections,
        args.configs,
        args.rounds,
        args.seconds,
        args.lengths,
        args.gen_length,
        args.torch_threads,
        out=lambda line: print(line, flush=True),
        cells=args.cells,
    )
    return 0
