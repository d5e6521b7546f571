"""One training step of bptt against torch.nn.RNN in the same process (and more).

A thin entry point: the benchmark lives in the package (`bptt.bench`) so that
`bptt bench` runs it from an installed copy. Same options as `bptt bench`:

    python benchmarks/bench_step.py --sections step --rounds 7 --seconds 0.5
"""

import sys

from bptt.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
