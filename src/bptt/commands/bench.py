"""`bptt bench`: time bptt against PyTorch in this process (see `bptt.bench`).

Sections: step (one training step per configuration, against torch, and its
fraction of the roofline: the step's FLOPs at the SGEMM rate of the same round),
profile (where a bptt step's time goes), generate (sampling at batch 1), memory
(full BPTT against checkpoint_every="auto" for growing T; needs no torch), jax
(only when JAX is installed), mpi (only when asked for: N ranks under mpirun
against one process, docs/distributed.md), converge (time to a target validation loss on the
built-in corpus, bptt and torch from the same weights on the same batches; not
run unless named: it trains for minutes). Every section but memory needs torch.
Each run first prints the machine: CPU, BLAS and its kernel, threads, load.
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


def _configs_text() -> str:
    rows = ["step/profile configurations (K vocabulary, H hidden, T steps, B batch):"]
    for name, (K, H, T, B, mode) in bench.CONFIGS.items():
        rows.append(f"  {name:<18} K={K:<6} H={H:<4} T={T:<5} B={B:<3} {mode}")
    rows.append("converge configurations (built-in corpus, Adam, clip-norm 5; target in nats/token):")
    for name, c in bench.CONVERGE.items():
        rows.append(
            f"  {name:<18} {c['level']}, {c['layers']} x {c['H']}, B={c['B']}, T={c['T']}, lr={c['lr']:g}, "
            f"target {c['target']:g}"
        )
    return "\n".join(rows)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="time bptt against PyTorch (steps, generation, memory, time to quality)",
        description=__doc__,
        epilog=_configs_text(),
    )
    p.add_argument(
        "--sections",
        type=_names(bench.SECTIONS, "comma-separated sections"),
        default=list(bench.DEFAULT_SECTIONS),
        help=f"from {', '.join(bench.SECTIONS)} (default: all but mpi and converge)",
    )
    p.add_argument(
        "--configs",
        type=_names(list(bench.CONFIGS), "comma-separated configurations"),
        default=list(bench.CONFIGS),
        help="comma-separated, from: "
        + "; ".join(
            f"{name} (K={K}, H={H}, T={T}, B={B}, {mode})" for name, (K, H, T, B, mode) in bench.CONFIGS.items()
        )
        + " (default: all)",
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
    p.add_argument(
        "--converge-configs",
        type=_names(list(bench.CONVERGE), "comma-separated converge configurations"),
        default=list(bench.CONVERGE),
        help="comma-separated, for --sections converge, from: " + ", ".join(bench.CONVERGE),
    )
    p.add_argument(
        "--target",
        type=positive_float,
        default=None,
        help="converge: validation loss, nats/token (default: per config)",
    )
    p.add_argument(
        "--budget", type=positive_float, default=120.0, help="converge: training seconds per side and config at most"
    )
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
        converge_configs=args.converge_configs,
        target=args.target,
        budget=args.budget,
        cells=args.cells,
    )
    return 0
