"""One training step of bptt against torch.nn.RNN, in the same process.

A step is: forward over T, full BPTT, and an SGD update, for a token model
with one-hot inputs and a softmax over K classes (the loss at every step, or
at the last step for the many-to-one configuration). Both sides start from
the same weights and data; their gradients are compared first (a timing is
only honest if they compute the same thing). The two are then timed in
interleaved rounds, and the script prints tokens/s (median, min, max) for
each and the median of the per-round ratios bptt / torch. It also measures
float32 GEMM GFLOP/s in the same run, for scale.

    python benchmarks/bench_step.py [--rounds 7] [--seconds 0.5] [--configs char-small-B1,...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

CONFIGS = {  # name: (K, H, T, B, mode)
    "char-small-B1": (65, 128, 50, 1, "many-to-many"),
    "char-small-B32": (65, 128, 50, 32, "many-to-many"),
    "char-medium": (65, 512, 100, 32, "many-to-many"),
    "word": (10000, 256, 35, 20, "many-to-many"),
    "long-many-to-one": (8, 128, 1000, 16, "many-to-one"),
}


def gemm_gflops(seconds: float = 0.5, n: int = 1024) -> float:
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = a.copy()
    c = np.empty_like(a)
    np.matmul(a, b, out=c)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        np.matmul(a, b, out=c)
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def setup(K, H, T, B, mode, seed=0):
    import torch

    from bptt import RNNModel
    from bptt.interop import from_torch

    torch.manual_seed(seed)
    rnn = torch.nn.RNN(K, H, batch_first=True)
    lin = torch.nn.Linear(H, K)
    model = from_torch(rnn, lin, mode=mode, reduction="mean")
    # one-hot token inputs: same U, taken as columns instead of multiplied by one-hot rows
    tok = RNNModel(vocab_size=K, hidden_size=H, output_size=K, mode=mode, reduction="mean")
    tok.params = {k: v.copy() for k, v in model.params.items()}
    rng = np.random.default_rng(seed)
    x = rng.integers(0, K, (B, T))
    y = rng.integers(0, K, (B, T) if mode == "many-to-many" else (B,))
    xt = torch.nn.functional.one_hot(torch.tensor(x), K).float()
    yt = torch.tensor(y)
    opt = torch.optim.SGD(list(rnn.parameters()) + list(lin.parameters()), lr=1e-3)

    def torch_step():
        opt.zero_grad(set_to_none=False)
        out, hn = rnn(xt)
        z = lin(out if mode == "many-to-many" else hn[-1])
        loss = torch.nn.functional.cross_entropy(z.reshape(-1, K), yt.reshape(-1))
        loss.backward()
        opt.step()
        return loss

    def bptt_step():
        loss, grads = tok.loss_and_grads(x, y)
        for k, g in grads.items():
            p = tok.params[k]
            p -= 1e-3 * g
        return loss

    return tok, rnn, lin, bptt_step, torch_step, x, y


def check_gradients(tok, rnn, lin, x, y, mode):
    """bptt's gradients equal torch's at the same weights (float32 tolerance)."""
    import torch

    K = tok.output_size
    _, grads = tok.loss_and_grads(x, y)
    rnn.zero_grad()
    lin.zero_grad()
    out, hn = rnn(torch.nn.functional.one_hot(torch.tensor(x), K).float())
    z = lin(out if mode == "many-to-many" else hn[-1])
    torch.nn.functional.cross_entropy(z.reshape(-1, K), torch.tensor(y).reshape(-1)).backward()
    pairs = {"rnn0.U": rnn.weight_ih_l0, "rnn0.W": rnn.weight_hh_l0, "rnn0.b": rnn.bias_ih_l0, "head.V": lin.weight, "head.c": lin.bias}
    for name, t in pairs.items():
        np.testing.assert_allclose(grads[name], t.grad.numpy(), rtol=2e-3, atol=1e-5, err_msg=name)


def time_it(fn, seconds: float) -> float:
    """Steps per second over about `seconds`."""
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.5, help="per side per round")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    args = ap.parse_args()
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    print(f"torch {torch.__version__}, numpy {np.__version__}, {threads} threads; "
          f"float32 GEMM {gemm_gflops():.1f} GFLOP/s")  # fmt: skip
    print(f"{'config':<18} {'bptt tok/s (med, min, max)':>30} {'torch tok/s (med, min, max)':>30} {'ratio':>6}")
    for name in args.configs.split(","):
        K, H, T, B, mode = CONFIGS[name]
        tok, rnn, lin, bptt_step, torch_step, x, y = setup(K, H, T, B, mode)
        check_gradients(tok, rnn, lin, x, y, mode)
        bptt_step(), torch_step()  # warm up
        ours, theirs, ratios = [], [], []
        for _ in range(args.rounds):
            a = time_it(bptt_step, args.seconds) * B * T
            b = time_it(torch_step, args.seconds) * B * T
            ours.append(a)
            theirs.append(b)
            ratios.append(a / b)
        fmt = lambda v: f"{statistics.median(v):>10,.0f} {min(v):>9,.0f} {max(v):>9,.0f}"  # noqa: E731
        print(f"{name:<18} {fmt(ours):>30} {fmt(theirs):>30} {statistics.median(ratios):>6.2f}")


if __name__ == "__main__":
    main()
