"""Why `bptt bench` pauses before it times each contender (`bptt.bench.SETTLE`).

After a multi-threaded call, OpenBLAS's worker threads spin for a while before they sleep. torch
timed right after bptt's step then shares its cores with them. This times torch's step right
after bptt's, once at once and once after a pause of SETTLE seconds, in alternating rounds, and
prints torch's tokens/s both ways and the median per-round ratio:

    python benchmarks/pause_between_contenders.py char-medium word char-small-B32 --rounds 8
"""

from __future__ import annotations

import argparse
import statistics
import time

from bptt import bench


def main(args) -> None:
    for config in args.configs:
        K, H, T, B, mode = bench.CONFIGS[config]
        _, bptt_step, torch_step, check = bench.step_setup(K, H, T, B, mode)
        check()
        rates: dict[str, list[float]] = {"at once": [], "after the pause": []}
        for _ in range(args.rounds):
            for name, rate in rates.items():
                bench.time_it(bptt_step, args.seconds)
                if name == "after the pause":
                    time.sleep(bench.SETTLE)
                rate.append(bench.time_it(torch_step, args.seconds) * B * T)
        ratio = statistics.median(b / a for a, b in zip(*rates.values()))
        cells = ", ".join(f"{name} {statistics.median(v):,.0f}" for name, v in rates.items())
        print(f"{config:<18} torch tok/s: {cells}; after / at once {ratio:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="+", choices=sorted(bench.CONFIGS))
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=0.5)
    main(parser.parse_args())
