"""The classic vanishing/exploding-gradient picture on the adding problem, measured.

For each configuration and seed, train on the adding problem (sum variant,
Le et al. 2015) at growing T with the same budget, stop at the first T it
fails, and print how many seeds solved each T and the longest T solved
(test MSE < 0.01 on 10,000 fresh sequences, `bptt train --task adding`):

    tanh          a tanh RNN, PyTorch's default init, no clipping
    tanh+clip     the same with global-norm clipping at 1 (Pascanu et al. 2013)
    irnn          ReLU with W = I (Le, Jaitly & Hinton 2015), no clipping
    irnn+clip     the same with clipping at 1
    lstm          an LSTM (`--cell lstm`), forget-gate bias 1 (Jozefowicz et al. 2015), clipping at 1
    gru           a GRU (`--cell gru`), clipping at 1

--task temporal-order runs the same chains on Hochreiter & Schmidhuber's
temporal-order problem instead (its own pass criterion, `bptt train --task
temporal-order`).

Every run is an ordinary `bptt train` run directory under --out (with
--diagnostics, so grad-norms.jsonl holds every update's gradient norms), so
`bptt diagnose` and `bptt plot` work on each. The table goes to stdout and to
OUT/table.md and OUT/results.json.

    python examples/classic_adding.py --out runs/classic
    python examples/classic_adding.py --configs lstm,gru --lengths 200 --out runs/gated
    python examples/classic_adding.py --task temporal-order --configs lstm --lengths 100 --out runs/order
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from bptt.cli import main as bptt

CONFIGS = {
    "tanh": ["--nonlinearity", "tanh", "--init", "pytorch", "--no-clip-norm"],
    "tanh+clip": ["--nonlinearity", "tanh", "--init", "pytorch", "--clip-norm", "1"],
    "irnn": ["--nonlinearity", "relu", "--init", "identity", "--no-clip-norm"],
    "irnn+clip": ["--nonlinearity", "relu", "--init", "identity", "--clip-norm", "1"],
    "lstm": ["--cell", "lstm", "--forget-bias", "1", "--clip-norm", "1"],
    "gru": ["--cell", "gru", "--clip-norm", "1"],
}
TASKS = {"adding": ["--task", "adding", "--variant", "sum"], "temporal-order": ["--task", "temporal-order"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/classic"))
    p.add_argument("--lengths", default="10,20,50,100,200,400")
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--task", choices=list(TASKS), default="adding")
    p.add_argument("--seeds", default="0,1,2", help="one chain of growing T per configuration and seed")
    p.add_argument("--max-epochs", default="200", help="x 100 updates of 32 sequences")
    p.add_argument("--max-time", default="600", help="seconds per run")
    p.add_argument("--jobs", type=int, default=2, help="chains run in parallel (processes)")
    p.add_argument("--table-only", action="store_true", help="no training: the table of the runs already in --out")
    args = p.parse_args()
    lengths = [int(t) for t in args.lengths.split(",")]
    configs, seeds = args.configs.split(","), args.seeds.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    chains = [(name, seed) for seed in seeds for name in configs]
    results = []
    if args.table_only:
        results = [r for name, seed in chains for T in lengths if (r := _finished(args.out, name, seed, T))]
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for chain in pool.map(
                _chain, [c[0] for c in chains], [c[1] for c in chains], [lengths] * len(chains), [args] * len(chains)
            ):
                results += chain
    table = _table(results, configs, seeds, lengths)
    print(table)
    if not args.table_only:
        (args.out / "table.md").write_text(table + "\n")
        (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


def _chain(name: str, seed: str, lengths: list[int], args) -> list[dict]:
    """Train `name` with `seed` at each T in turn, up to the first T it fails."""
    results = []
    for T in lengths:
        run_dir = args.out / f"{name}-s{seed}-T{T}"
        argv = [
            "train",
            *TASKS[args.task],
            "--length",
            str(T),
            *CONFIGS[name],
            "--hidden-size",
            "64",
            "--optimizer",
            "adam",
            "--lr",
            "1e-3",
            "--batch-size",
            "32",
            "--max-epochs",
            args.max_epochs,
            "--max-time",
            args.max_time,
            "--eval-every",
            "100",
            "--seed",
            seed,
            "--diagnostics",
            "--out",
            str(run_dir),
            "--overwrite",
        ]
        start = time.time()
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = bptt(argv)
        log = buf.getvalue()
        (args.out / f"{name}-s{seed}-T{T}.log").write_text(" ".join(["bptt", *argv]) + "\n" + log)
        if code != 0:
            r = {
                "length": T,
                "solved": False,
                "error": f"exit {code}: {log.strip().splitlines()[-1] if log.strip() else ''}",
            }
        else:
            r = json.loads((run_dir / "result.json").read_text())
            r["rollbacks"] = log.count("rolled back")
            r["clipped_updates"] = _clipped(run_dir)
        r.update(config=name, seed=seed, wall_seconds=round(time.time() - start, 1))
        results.append(r)
        print(
            f"{name:10s} seed {seed} T={T:<4d} {'PASS' if r['solved'] else 'FAIL'}  test loss {r.get('test_loss', float('nan')):.4f}  "
            f"updates {r.get('updates', '-')}  clipped {r.get('clipped_updates', '-')}  rollbacks {r.get('rollbacks', '-')}  "
            f"{r['wall_seconds']} s",
            flush=True,
        )
        if not r["solved"]:
            break
    return results


def _finished(out: Path, name: str, seed: str, T: int) -> dict | None:
    """The result of a run already in `out`, or None."""
    run_dir = out / f"{name}-s{seed}-T{T}"
    if not (run_dir / "result.json").exists():
        if (out / f"{name}-s{seed}-T{T}.log").exists() and (run_dir / "checkpoint.json").exists():
            return {
                "config": name,
                "seed": seed,
                "length": T,
                "solved": False,
                "error": "stopped without a result, see its log",
            }
        return None  # not run (or still running)
    r = json.loads((run_dir / "result.json").read_text())
    r.update(config=name, seed=seed, clipped_updates=_clipped(run_dir))
    return r


def _clipped(run_dir: Path) -> int:
    path = run_dir / "grad-norms.jsonl"
    if not path.exists():
        return 0
    return sum(json.loads(line)["clipped"] for line in path.read_text().splitlines() if line.strip())


def _table(results, configs, seeds, lengths) -> str:
    """One row per configuration: at each T, seeds that solved it / seeds that reached it (a chain
    stops at its first failure), and the median updates of those that solved it."""
    rows = [
        "| configuration | " + " | ".join(f"T={T}" for T in lengths) + " | longest T solved (all seeds / any seed) |",
        "|---|" + "---|" * (len(lengths) + 1),
    ]
    for name in configs:
        cells, all_best, any_best = [], "none", "none"
        for T in lengths:
            rs = [r for r in results if r["config"] == name and r["length"] == T]
            ok = [r for r in rs if r["solved"]]
            if len(ok) == len(seeds):
                all_best = str(T)
            if ok:
                any_best = str(T)
            upd = f", {int(np.median([r['updates'] for r in ok]))} upd" if ok else ""
            cells.append(f"{len(ok)}/{len(rs)}{upd}" if rs else "-")
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {all_best} / {any_best} |")
    for r in results:
        if r.get("error"):
            rows.append("")
            rows.append(f"Stopped with an error: {r['config']} seed {r['seed']} T={r['length']} ({r['error']}).")
    timed = [r for r in results if not r["solved"] and "max time" in str(r.get("stop_reason"))]
    if timed:
        rows.append("")
        rows.append(
            "Failed at the time limit before the update limit: "
            + ", ".join(f"{r['config']} seed {r['seed']} T={r['length']} ({r['updates']} updates)" for r in timed)
            + "."
        )
    return "\n".join(rows)


if __name__ == "__main__":
    raise SystemExit(main())
