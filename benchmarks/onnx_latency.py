"""Latency at batch 1: a language-model run in onnxruntime (its `bptt export` file) against bptt.

    python benchmarks/onnx_latency.py RUN_DIR [--steps 2000] [--length 100] [--rounds 5]

Two measurements, each the median of --rounds rounds, one BLAS/onnxruntime thread:

    step      one generation step, as `bptt generate` takes it: bptt's RNNModel.step on
              one token and the state, against one onnxruntime call with inputs (1, 1)
              and h0 (the previous call's hn); the same greedy tokens in both
    sequence  a whole sequence of --length tokens at batch 1: RNNModel.predict against
              one onnxruntime call

Prints one line per measurement; the largest difference between the two's outputs too.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def median_time(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--steps", type=int, default=2000, help="generation steps per round")
    parser.add_argument("--length", type=int, default=100, help="tokens in the sequence measurement")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import onnxruntime as ort
    from threadpoolctl import threadpool_limits

    from bptt.export import to_onnx
    from bptt.training.runs import load_run

    model, _ = load_run(args.run_dir)
    path = to_onnx(model, Path(tempfile.mkdtemp()) / "model.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def bptt_steps():
        h, token = model.zero_state(1), 0
        for _ in range(args.steps):
            z, h = model.step(np.array([token]), h)
            token = int(z[0].argmax())

    def ort_steps():
        h, token = model.zero_state(1), 0
        for _ in range(args.steps):
            probs, h = sess.run(None, {"inputs": np.array([[token]]), "h0": h})
            token = int(probs[0, 0].argmax())

    ids = np.random.default_rng(0).integers(0, model.vocab_size, (1, args.length))
    with threadpool_limits(1):
        diff = float(np.abs(sess.run(None, {"inputs": ids})[0] - model.predict(ids)).max())
        rows = [
            ("step", args.steps, median_time(bptt_steps, args.rounds), median_time(ort_steps, args.rounds)),
            (
                f"sequence of {args.length}",
                1,
                median_time(lambda: model.predict(ids), args.rounds),
                median_time(lambda: sess.run(None, {"inputs": ids}), args.rounds),
            ),
        ]
    print(
        f"{model.num_layers} x {model.hidden_size} {model.nonlinearity} RNN, vocabulary "
        f"{model.vocab_size}, {model.dtype}; onnxruntime {ort.__version__}; max |difference| {diff:.1e}"
    )
    for name, n, t_bptt, t_ort in rows:
        print(
            f"{name:>16}: bptt {1e6 * t_bptt / n:9.1f} us, onnxruntime {1e6 * t_ort / n:9.1f} us "
            f"({t_bptt / t_ort:.1f}x)"
        )


if __name__ == "__main__":
    main()
