"""Benchmarks against PyTorch in the same process: training steps, generation, memory.

step        one training step (forward over T, full BPTT, SGD update) of bptt
            against torch.nn.RNN(nonlinearity="tanh") (or nn.LSTM, nn.GRU for the
            lstm and gru rows) + nn.Linear + cross-entropy
            + torch.optim.SGD, same initial weights and data; the gradients are
            compared first (a timing is only honest if both compute the same
            thing). Both are timed in interleaved rounds; tokens/s (median, min,
            max) and the median of the per-round ratios bptt / torch. A second
            table is the roofline: the step's FLOPs (`step_flops`, counted by
            hand) at the float32 SGEMM rate (1024^3, timed in every round next to
            the step) as the machine's limit in tokens/s, and bptt's fraction of
            it; and the tokens/s of running only the step's matrix products
            (same shapes, same BLAS, timed in the same rounds).
profile     where one bptt step's time goes: forward, loss, backward, update.
generate    sampling at batch 1 (temperature 1), bptt.generate.sample against a
            torch eager loop (nn.RNN step, nn.Linear, softmax, multinomial).
memory      peak memory (tracemalloc, which sees NumPy's buffers) and time of one
            training step against T, full BPTT against checkpoint_every="auto".
jax         with JAX installed: a jitted lax.scan of the same step at batch 1.
mpi         (only when asked for) data-parallel updates under mpirun: one process
            with all BLAS threads against N ranks with one BLAS thread each, the
            same global batch; tokens/s and the shares of the update spent
            computing, waiting for the slowest rank and in the Allreduce of
            the gradient buffer (docs/distributed.md).
converge    time to a target validation loss on the built-in corpus, bptt against
            torch from the same initial weights on the same batches (`converge`).

Every section prints the machine first (`machine`): CPU model, cores, NumPy's BLAS
and its kernel, OPENBLAS_CORETYPE, thread counts and the load average.

The machine may be shared: rounds interleave the contenders so that load hits
both alike, and medians are reported. Entry points: `bptt bench` and
benchmarks/bench_step.py.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import statistics
import time
import tracemalloc

import numpy as np

CONFIGS = {  # name: (K, H, T, B, mode)
    "char-small-B1": (65, 128, 50, 1, "many-to-many"),
    "char-small-B32": (65, 128, 50, 32, "many-to-many"),
    "char-medium": (65, 512, 100, 32, "many-to-many"),
    "word": (10000, 256, 35, 20, "many-to-many"),
    "long-many-to-one": (8, 128, 1000, 16, "many-to-one"),
}
SECTIONS = ("step", "profile", "generate", "memory", "jax", "mpi", "converge")
DEFAULT_SECTIONS = SECTIONS[:-2]  # mpi starts mpirun, converge trains for minutes: only when asked for
CELLS = ("elman", "lstm", "gru")  # a row per configuration and cell in step, profile and memory
GATES = {"elman": 1, "lstm": 4, "gru": 3}  # row blocks of U, W: the recurrent GEMM is (B, H) x (H, G*H)
LR = 1e-3


def import_torch():
    """torch, or a UsageError that says how to get it."""
    try:
        import torch
    except ImportError:
        from bptt.errors import UsageError

        raise UsageError(
            "the step, generate and jax benchmarks compare against PyTorch, which is not installed: "
            "pip install 'bptt[torch]' (or run only --sections memory)"
        ) from None
    return torch


def threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo (Linux) or platform.processor()."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "CPU unknown"


def cpu_flags() -> str:
    """The widest x86 vector extension the CPU reports (avx512f, avx2, ...), or ""."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return ""
    return next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), "")


def blas_libs() -> list[dict]:
    """NumPy's BLAS libraries as threadpoolctl sees them (name, version, kernel, threads); [] without it."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [i for i in threadpool_info() if i["user_api"] == "blas"]


def blas_name() -> str:
    """NumPy's BLAS, e.g. "openblas 0.3.31 (kernel Haswell, pthreads), 2 threads", when threadpoolctl can tell."""
    libs = []
    for i in blas_libs():
        kernel = ", ".join(x for x in (i.get("architecture"), i.get("threading_layer")) if x)
        libs.append(
            f"{i['internal_api']} {i.get('version') or ''}{f' (kernel {kernel})' if kernel else ''}, "
            f"{i['num_threads']} threads"
        )
    return ", ".join(libs) or "BLAS unknown"


def load() -> str:
    """The 1-minute load average against the cores: other jobs on a shared machine."""
    if not hasattr(os, "getloadavg"):
        return "load average unknown"
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def machine(torch=None) -> dict[str, str]:
    """What a table describes: CPU, cores, NumPy and its BLAS (kernel = OpenBLAS's core type),
    OPENBLAS_CORETYPE, torch and its threads, the load. Printed above every bench run."""
    info = {
        "cpu": cpu_model() + (f" ({cpu_flags()})" if cpu_flags() else ""),
        "cores": f"{os.cpu_count()} logical, {threads()} usable",
        "numpy": f"{np.__version__}, {blas_name()}",
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "unset"),
        "bptt threads": f"BLAS {', '.join(str(i['num_threads']) for i in blas_libs()) or 'unknown'}, "
        "one Python thread for the time loops, one more for gated-cell weight gradients",
    }
    if torch is not None:
        cap = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", lambda: "?")()
        mkl = "MKL" if torch.backends.mkl.is_available() else "no MKL"
        onednn = "oneDNN" if torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled else "no oneDNN"
        info["torch"] = (
            f"{torch.__version__} ({mkl}, {onednn}, CPU capability {cap}), {torch.get_num_threads()} threads"
        )
    info["load"] = load()
    return info


def print_machine(out=print, torch=None) -> None:
    for key, value in machine(torch).items():
        out(f"# {key + ':':<19} {value}")


def time_it(fn, seconds: float) -> float:
    """Calls per second over about `seconds` (at least one call)."""
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


# Seconds to wait before timing each contender. After a multi-threaded call OpenBLAS's worker
# threads spin-wait for 2^28 cycles (about 0.1 s here) before they sleep, and torch's OpenMP threads
# do the same for a shorter time: without a pause the contender timed next shares its cores with
# the previous one's spinning threads. On the project's 2-core machine torch, timed right after
# bptt's step, lost 8% to 15% of its tokens/s on char-medium, word and long-many-to-one (nothing
# on char-small-B32, whose bptt step runs on one BLAS thread): docs/performance.md, 2026-12-01.
SETTLE = 0.3


def interleaved(fns: dict, rounds: int, seconds: float, per_call: float = 1.0) -> dict[str, list[float]]:
    """{name: [rate per round]}: each round times every fn in turn, each after a pause of
    min(SETTLE, seconds); rate = calls/s * per_call."""
    for fn in fns.values():
        fn()  # warm up
    rates: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            time.sleep(min(SETTLE, seconds))
            rates[name].append(time_it(fn, seconds) * per_call)
    return rates


def ratio(a: list[float], b: list[float]) -> float:
    """Median of the per-round ratios a / b."""
    return statistics.median(x / y for x, y in zip(a, b))


def spread(v: list[float]) -> str:
    return f"{statistics.median(v):>10,.0f} {min(v):>9,.0f} {max(v):>9,.0f}"


# ---- one training step --------------------------------------------------------


def step_setup(K: int, H: int, T: int, B: int, mode: str, seed: int = 0, cell: str = "elman"):
    """The same network, weights and batch on both sides: (model, bptt_step, torch_step, check).

    bptt uses one-hot token inputs (a gather of columns of U), torch the one-hot
    vectors as float features into nn.RNN (nn.LSTM, nn.GRU for those cells); U, W,
    b, V, c start equal (b = torch's bias_ih + bias_hh; see `bptt.interop`).
    check() asserts that the gradients agree.
    """
    torch = import_torch()
    from bptt import RNNModel
    from bptt.interop import from_torch
    from bptt.training.optim import SGD

    torch.manual_seed(seed)
    if cell == "elman":
        rnn = torch.nn.RNN(K, H, nonlinearity="tanh", batch_first=True)
    else:
        rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](K, H, batch_first=True)
    lin = torch.nn.Linear(H, K)
    features = from_torch(rnn, lin, mode=mode, reduction="mean")
    model = RNNModel(vocab_size=K, hidden_size=H, output_size=K, mode=mode, reduction="mean", cell=cell)
    model.params = {k: v.copy() for k, v in features.params.items()}
    rng = np.random.default_rng(seed)
    x = rng.integers(0, K, (B, T))
    y = rng.integers(0, K, (B, T) if mode == "many-to-many" else (B,))
    xt = torch.nn.functional.one_hot(torch.tensor(x), K).float()
    yt = torch.tensor(y).reshape(-1)
    torch_params = list(rnn.parameters()) + list(lin.parameters())
    torch_opt = torch.optim.SGD(torch_params, lr=LR)
    opt = SGD(lr=LR)

    def torch_loss():
        out, hn = rnn(xt)
        hn = hn[0] if cell == "lstm" else hn  # (h_n, c_n)
        z = lin(out if mode == "many-to-many" else hn[-1])
        return torch.nn.functional.cross_entropy(z.reshape(-1, K), yt)

    def torch_step():
        torch_opt.zero_grad(set_to_none=False)
        torch_loss().backward()
        torch_opt.step()

    def bptt_step():
        _, grads = model.loss_and_grads(x, y)
        opt.step(model.params, grads)

    def check():
        _, grads = model.loss_and_grads(x, y)
        torch_opt.zero_grad(set_to_none=False)
        torch_loss().backward()
        pairs = {
            "rnn0.U": rnn.weight_ih_l0,
            "rnn0.W": rnn.weight_hh_l0,
            "rnn0.b": rnn.bias_ih_l0,
            "head.V": lin.weight,
            "head.c": lin.bias,
        }
        expected = {name: t.grad.numpy() for name, t in pairs.items()}
        if cell == "gru":  # b_hn: the reset gate multiplies it, so bptt keeps it apart as bn
            expected["rnn0.bn"] = rnn.bias_hh_l0.grad.numpy()[2 * H :]
        assert set(expected) == set(grads)
        for name, g in expected.items():
            np.testing.assert_allclose(grads[name], g, rtol=2e-3, atol=1e-5, err_msg=name)

    return model, bptt_step, torch_step, check


def step_flops(K: int, H: int, T: int, B: int, mode: str, gates: int = 1) -> dict[str, int]:
    """Floating-point operations of one training step (one-hot inputs, one recurrent layer, softmax
    head, SGD), counted by hand: {"gemm": ..., "elementwise": ..., "total": ...}.

    N = T*B output rows (B for many-to-one). A multiply-add is 2 FLOPs, tanh and exp 1 each.
    For the Elman cell (gates = 1), exactly:
      forward   U x_t + b: a gather and T*B*H adds; h_{t-1} W^T: 2TBH^2; + and tanh: 2TBH;
                head Z = feat V^T + c: 2NHK + NK; softmax cross-entropy (max, subtract, exp,
                sum, scale, -1 at y): 5NK
      backward  dL/dfeat = dZ V: 2NHK; dV = dZ^T feat: 2NHK; dc: NK;
                delta_t W: 2TBH^2; (1 - h^2) and its product, + the carried term: 4TBH;
                dW = sum delta^T h_{t-1}: 2TBH^2; db: TBH; dU (a scatter-add of delta): TBH
      update    p - lr g: 2 per parameter, P = HK + H^2 + H + KH + K
    A gated cell with G gate blocks (LSTM 4, GRU 3) has every recurrent GEMM G times as wide
    (exact); its gate arithmetic is an estimate: per unit and step, 3G forward (the two adds and
    the gate nonlinearity) + 5 for the state update, three times that backward, 2G for db and dU.
    """
    G = gates
    N = T * B if mode == "many-to-many" else B
    P = G * H * K + G * H * H + G * H + K * H + K
    gemm = 3 * 2 * T * B * G * H * H + 3 * 2 * N * H * K
    head = N * K + 5 * N * K + N * K
    if G == 1:
        cell = T * B * H + 2 * T * B * H + 4 * T * B * H + 2 * T * B * H
    else:
        cell = (4 * (3 * G + 5) + 2 * G) * T * B * H
    elementwise = cell + head + 2 * P
    return {"gemm": gemm, "elementwise": elementwise, "total": gemm + elementwise}


def step_gemms(K: int, H: int, T: int, B: int, mode: str, seed: int = 0, gates: int = 1):
    """The matrix products one step cannot avoid, alone: (run, flops).

    Forward h_{t-1} W^T for t = 1..T; the head V h (every step, or the last);
    backward dV, dL/dh = dZ V, delta_t W for t = T..1, and dW over all T*B rows.
    (U x_t is a gather for one-hot inputs: no GEMM.) W is (G*H, H) for a cell with
    G gates (`GATES`). Same shapes, float32, out=, and the same BLAS thread policy
    as RNNModel (`bptt.blas`). Every operand keeps its values from call to call (h in
    tanh's range, W ~ 1/sqrt(H)): nothing drifts towards subnormal floats, which are
    many times slower on some CPUs.
    """
    from bptt import blas

    rng = np.random.default_rng(seed)
    f = lambda *shape: rng.uniform(-1, 1, shape).astype(np.float32)  # noqa: E731
    N = T * B if mode == "many-to-many" else B
    G = gates
    h, W, a, delta, dh = f(B, H), f(G * H, H) / np.float32(H**0.5), f(B, G * H), f(B, G * H), f(B, H)
    feat, V, Z, dV, dfeat = f(N, H), f(K, H), f(N, K), f(K, H), f(N, H)
    D, Hprev, dW = f(T * B, G * H), f(T * B, H), f(G * H, H)
    WT = W.T
    loop = int(np.sqrt(G)) * H  # blas.loop_threads(B, n) bounds B n^2 multiply-adds per step

    def run():
        with blas.threads_for(T * B * H * max(G * H, K), blas.STEP_SMALL):
            with blas.loop_threads(B, loop):
                for _ in range(T):
                    np.matmul(h, WT, out=a)
            np.matmul(feat, V.T, out=Z)
            np.matmul(Z.T, feat, out=dV)
            np.matmul(Z, V, out=dfeat)
            with blas.loop_threads(B, loop):
                for _ in range(T):
                    np.matmul(delta, W, out=dh)
            np.matmul(D.T, Hprev, out=dW)

    return run, step_flops(K, H, T, B, mode, gates=G)["gemm"]


def run_step(configs: list[str], rounds: int, seconds: float, out=print, cells=("elman",)) -> None:
    torch = import_torch()
    n = 1024
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    c = np.empty_like(a)
    sgemm = functools.partial(np.matmul, a, a, out=c)  # timed in every round, next to the step
    print_machine(out, torch)
    out(f"{'config':<22} {'bptt tok/s (med, min, max)':>30} {'torch tok/s (med, min, max)':>30} {'ratio':>6}")
    rows = []
    for config, cell in [(c, cell) for c in configs for cell in cells]:
        name = config if cell == "elman" else f"{config} {cell}"
        K, H, T, B, mode = CONFIGS[config]
        _, bptt_step, torch_step, check = step_setup(K, H, T, B, mode, cell=cell)
        check()
        gemms, gemm_flops = step_gemms(K, H, T, B, mode, gates=GATES[cell])
        total = step_flops(K, H, T, B, mode, gates=GATES[cell])["total"]
        r = interleaved({"bptt": bptt_step, "torch": torch_step, "gemm": gemms, "sgemm": sgemm}, rounds, seconds)
        tok = {k: [v * B * T for v in r[k]] for k in ("bptt", "torch", "gemm")}
        out(f"{name:<22} {spread(tok['bptt']):>30} {spread(tok['torch']):>30} {ratio(r['bptt'], r['torch']):>6.2f}")
        sgemm_flops = [v * 2 * n**3 for v in r["sgemm"]]
        roof = [v * B * T / total for v in sgemm_flops]  # tokens/s if every FLOP ran at that round's SGEMM rate
        rows.append(
            dict(
                name=name,
                gflop=total / 1e9,
                gemm_share=gemm_flops / total,
                bptt_gflops=statistics.median(r["bptt"]) * total / 1e9,
                sgemm=statistics.median(sgemm_flops) / 1e9,
                roof=statistics.median(roof),
                of_roof=ratio(tok["bptt"], roof),
                gemm_only=statistics.median(tok["gemm"]),
                of_gemm=ratio(r["bptt"], r["gemm"]),
            )
        )
    out("")
    out(
        "roofline: the step's FLOPs (bench.step_flops) at the SGEMM 1024^3 rate of the same round, as tokens/s;"
        " GEMM-only: the step's matrix products alone (per-round ratios, medians)"
    )
    out(
        f"{'config':<22} {'GFLOP/step':>10} {'GEMM':>5} {'bptt GFLOP/s':>12} {'SGEMM GFLOP/s':>13} "
        f"{'roofline tok/s':>14} {'bptt of it':>10} {'GEMM-only tok/s':>15} {'bptt of it':>10}"
    )
    for w in rows:
        out(
            f"{w['name']:<22} {w['gflop']:>10.3f} {w['gemm_share']:>5.0%} {w['bptt_gflops']:>12.1f} {w['sgemm']:>13.1f} "
            f"{w['roof']:>14,.0f} {w['of_roof']:>10.0%} {w['gemm_only']:>15,.0f} {w['of_gemm']:>10.0%}"
        )


def run_profile(configs: list[str], rounds: int, out=print, cells=("elman",)) -> None:
    """Where one bptt step's time goes: forward, loss (softmax CE), backward, update;
    medians over `rounds` steps, in milliseconds and as shares of their sum."""
    from bptt import RNNModel
    from bptt.training.optim import SGD

    out(f"profile of one bptt step, ms (median of {rounds} steps) and share")
    out(f"{'config':<22} {'forward':>15} {'loss':>15} {'backward':>15} {'SGD update':>15} {'step':>8}")
    for config, cell in [(c, cell) for c in configs for cell in cells]:
        name = config if cell == "elman" else f"{config} {cell}"
        K, H, T, B, mode = CONFIGS[config]
        model = RNNModel(vocab_size=K, hidden_size=H, output_size=K, mode=mode, reduction="mean", cell=cell)
        rng = np.random.default_rng(0)
        x, y = rng.integers(0, K, (B, T)), rng.integers(0, K, (B, T) if mode == "many-to-many" else (B,))
        opt = SGD(lr=LR)
        phases: dict[str, list[float]] = {"forward": [], "loss": [], "backward": [], "update": []}
        for _ in range(rounds + 1):
            t0 = time.perf_counter()
            fwd = model.forward(x)
            t1 = time.perf_counter()
            _, dZ = model.loss(fwd, y)
            t2 = time.perf_counter()
            grads, _ = model.backward(fwd, dZ)
            t3 = time.perf_counter()
            opt.step(model.params, grads)
            t4 = time.perf_counter()
            for key, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                phases[key].append(dt * 1e3)
        med = {k: statistics.median(v[1:]) for k, v in phases.items()}  # the first is a warm-up
        total = sum(med.values())
        cells = " ".join(f"{med[k]:>8.2f} {med[k] / total:>5.0%} " for k in phases)
        out(f"{name:<22} {cells}{total:>8.2f}")


# ---- time to quality ------------------------------------------------------------

# Targets: 1.5 nats = 2.16 bits per character, which `bptt train`'s default model (2 x 256, embedding 64) passes
# after 200 to 400 updates (docs/language-models.md); 6.5 nats = perplexity 665 on words. Chosen
# for a run of a few minutes on a quiet 2-core machine, not yet calibrated there: --target overrides.
CONVERGE = {  # name: level, layers, H, B, T, lr, target validation loss (nats per token)
    "char-2x256": dict(level="char", layers=2, H=256, B=32, T=50, lr=2e-3, target=1.5),
    "char-1x512": dict(level="char", layers=1, H=512, B=32, T=50, lr=2e-3, target=1.5),
    "word-1x256": dict(level="word", layers=1, H=256, B=20, T=35, lr=2e-3, target=6.5, vocab=10000),
}
CLIP_NORM = 5.0


def converge_data(spec: dict, text: str | None = None):
    """(train ids, valid ids, K) of the built-in corpus (or `text`), as `bptt train` splits it (5% held out)."""
    from bptt.data.text import Vocab, builtin_corpus, split

    text = builtin_corpus() if text is None else text
    kw = {"max_size": spec["vocab"]} if spec["level"] == "word" and spec.get("vocab") else {}
    vocab = Vocab(text, level=spec["level"], **kw)
    train, valid = split(vocab.encode(text), 0.05)
    return train, valid, len(vocab)


def converge_setup(spec: dict, K: int, seed: int = 0):
    """The same network on both sides: (bptt model, torch rnn, torch linear).

    torch.nn.RNN(K, H, num_layers) + nn.Linear(H, K) on one-hot inputs; the bptt
    RNNModel(vocab_size=K) takes their weights through bptt.interop.from_torch
    (b = bias_ih + bias_hh). torch's bias_hh is then folded into bias_ih and frozen at 0,
    so that both sides train one bias per layer (two would each take an Adam step)."""
    torch = import_torch()
    from bptt import RNNModel
    from bptt.interop import from_torch

    torch.manual_seed(seed)
    rnn = torch.nn.RNN(K, spec["H"], num_layers=spec["layers"], nonlinearity="tanh", batch_first=True)
    lin = torch.nn.Linear(spec["H"], K)
    with torch.no_grad():  # one bias per layer as in bptt: torch's two would each take an Adam step
        for layer in range(spec["layers"]):
            getattr(rnn, f"bias_ih_l{layer}").add_(getattr(rnn, f"bias_hh_l{layer}"))
            getattr(rnn, f"bias_hh_l{layer}").zero_().requires_grad_(False)
    features = from_torch(rnn, lin, reduction="mean")
    model = RNNModel(vocab_size=K, hidden_size=spec["H"], num_layers=spec["layers"], output_size=K, reduction="mean")
    for name, value in features.params.items():
        model.params[name][...] = value
    return model, rnn, lin


def converge(
    spec: dict, text: str | None = None, target: float | None = None, budget: float = 120.0, eval_every: int = 50
) -> dict:
    """Train bptt and torch side by side, update for update, to a validation loss of `target` nats.

    Same initial weights (`converge_setup`), the same chunks in the same order (B streams
    of the corpus, T steps per update, h carried across updates and reset each epoch),
    Adam(lr) and global-norm clipping at 5 on both sides. Only the updates are timed
    (each side's own clock; the sides take turns in blocks of `eval_every` updates, each block
    after a pause of SETTLE, so that load hits both alike and neither is timed while the
    other's threads still spin);
    every `eval_every` updates both are evaluated with the same code
    (bptt.training.tbptt.evaluate_stream; torch's weights read through from_torch).
    A side stops when it reaches the target; both stop when `budget` seconds of
    training have passed on each side still running.
    Returns {side: {"seconds", "updates", "valid", "reached"}} and "target".
    """
    torch = import_torch()
    from bptt.data.streams import Streams
    from bptt.interop import from_torch
    from bptt.training import clipping
    from bptt.training.optim import Adam
    from bptt.training.tbptt import evaluate_stream

    target = spec["target"] if target is None else target
    train, valid, K = converge_data(spec, text)
    model, rnn, lin = converge_setup(spec, K)
    streams = Streams(train, spec["B"], spec["T"])
    opt = Adam(lr=spec["lr"])
    tparams = [p for p in list(rnn.parameters()) + list(lin.parameters()) if p.requires_grad]
    topt = torch.optim.Adam(tparams, lr=spec["lr"])
    h = {"bptt": model.zero_state(spec["B"]), "torch": torch.zeros(spec["layers"], spec["B"], spec["H"])}

    def bptt_update(X, Y):
        _, grads, state = model.loss_and_grads(X, Y, h0=h["bptt"], return_state=True)
        clipping.clip_global_norm(grads, CLIP_NORM)
        opt.step(model.params, grads)
        h["bptt"] = state["hn"]

    def torch_update(X, Y):
        x = torch.nn.functional.one_hot(torch.from_numpy(np.ascontiguousarray(X)), K).float()
        topt.zero_grad(set_to_none=False)
        o, hn = rnn(x, h["torch"])
        loss = torch.nn.functional.cross_entropy(lin(o).reshape(-1, K), torch.tensor(Y).reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tparams, CLIP_NORM)
        topt.step()
        h["torch"] = hn.detach()

    twin = converge_setup(spec, K)[0]  # evaluates torch's weights with bptt's evaluator

    def valid_loss(side: str) -> float:
        if side == "torch":
            for name, value in from_torch(rnn, lin, reduction="mean").params.items():
                twin.params[name][...] = value
        return evaluate_stream(model if side == "bptt" else twin, valid)

    sides = {"bptt": bptt_update, "torch": torch_update}
    zero = {"bptt": lambda: model.zero_state(spec["B"]), "torch": lambda: torch.zeros_like(h["torch"])}
    res = {s: {"seconds": 0.0, "updates": 0, "valid": float("nan"), "reached": False} for s in sides}
    running = set(sides)
    k = 0
    while running:
        block = []  # the next eval_every chunks; None where a new epoch starts every stream over from h = 0
        for _ in range(eval_every):
            if k == streams.n_chunks:
                k = 0
                block.append(None)
            block.append(streams.chunk(k))
            k += 1
        for side in sorted(running):
            time.sleep(SETTLE)  # the other side's BLAS or OpenMP threads stop spinning first
            for chunk in block:
                if chunk is None:
                    h[side] = zero[side]()
                    continue
                t0 = time.perf_counter()
                sides[side](*chunk)
                res[side]["seconds"] += time.perf_counter() - t0
                res[side]["updates"] += 1
        for side in sorted(running):
            res[side]["valid"] = valid_loss(side)
            res[side]["reached"] = res[side]["valid"] <= target
            if res[side]["reached"] or res[side]["seconds"] >= budget:
                running.discard(side)
    res["target"] = target
    return res


def run_converge(names: list[str], target: float | None, budget: float, eval_every: int = 50, out=print) -> None:
    """Time to a target validation loss for each configuration of `names` (see `converge`)."""
    torch = import_torch()
    print_machine(out, torch)
    out(
        f"time to target validation loss (nats/token) on the built-in corpus: same initial weights, data order, "
        f"Adam, clip-norm {CLIP_NORM}; training time only, evaluated every {eval_every} updates; budget {budget:g} s"
    )
    out(f"{'config':<12} {'target':>6} {'bptt s':>8} {'updates':>7} {'torch s':>8} {'updates':>7} {'torch/bptt':>10}")
    for name in names:
        spec = CONVERGE[name]
        r = converge(spec, target=target, budget=budget, eval_every=eval_every)
        cells = []
        for side in ("bptt", "torch"):
            x = r[side]
            s = f"{x['seconds']:.2f}" if x["reached"] else f">{x['seconds']:.0f}"
            cells.append(f"{s:>8} {x['updates']:>7}")
        both = r["bptt"]["reached"] and r["torch"]["reached"]
        ratio_s = f"{r['torch']['seconds'] / r['bptt']['seconds']:.2f}" if both else "-"
        out(f"{name:<12} {r['target']:>6.2f} {cells[0]} {cells[1]} {ratio_s:>10}")
        if not both:
            missed = " and ".join(side for side in ("bptt", "torch") if not r[side]["reached"])
            out(
                f"  {missed}: not reached within the budget; last valid loss bptt {r['bptt']['valid']:.3f}, "
                f"torch {r['torch']['valid']:.3f}"
            )


# ---- generation ---------------------------------------------------------------


def run_generate(rounds: int, seconds: float, length: int = 200, out=print) -> None:
    """Sampling tokens/s at batch 1 on char-small (K=65, H=128), temperature 1."""
    torch = import_torch()
    from bptt.generate import sample

    K, H = CONFIGS["char-small-B1"][:2]
    model, _, _, _ = step_setup(K, H, 1, 1, "many-to-many")
    torch.manual_seed(0)
    rnn = torch.nn.RNN(K, H, nonlinearity="tanh")
    lin = torch.nn.Linear(H, K)
    eye = torch.eye(K)
    prime = np.array([1, 2, 3])
    rng = np.random.default_rng(0)

    def bptt_generate():
        sample(model, prime, length, rng=rng)

    @torch.no_grad()
    def torch_generate():
        h = torch.zeros(1, 1, H)
        for token in prime[:-1]:
            _, h = rnn(eye[int(token)].view(1, 1, K), h)
        token = int(prime[-1])
        for _ in range(length):
            o, h = rnn(eye[token].view(1, 1, K), h)
            p = torch.softmax(lin(o[0, 0]), dim=0)
            token = int(torch.multinomial(p, 1))

    r = interleaved({"bptt": bptt_generate, "torch": torch_generate}, rounds, seconds, per_call=length)
    out(f"generation, batch 1, K={K}, H={H}, {length} tokens per call; tokens/s (med, min, max)")
    out(f"{'bptt':<8} {spread(r['bptt'])}")
    out(f"{'torch':<8} {spread(r['torch'])}")
    out(f"ratio {ratio(r['bptt'], r['torch']):.2f}")


# ---- memory -------------------------------------------------------------------


def run_memory(
    lengths: list[int], rounds: int = 3, K: int = 8, H: int = 128, B: int = 16, out=print, cells=("elman",)
) -> None:
    """Peak memory and time of one many-to-one training step (forward, BPTT) against T,
    full BPTT against checkpoint_every="auto", per cell; times are medians of interleaved rounds."""
    from bptt import RNNModel
    from bptt.layers import recompute

    out(
        f"memory: many-to-one, K={K}, H={H}, B={B}, float32; peak = tracemalloc peak during loss_and_grads; "
        f"time: median of {rounds} interleaved rounds"
    )
    out(
        f"{'cell':<6} {'T':>8} {'full MB':>9} {'full s':>8} {'ckpt MB':>9} {'ckpt s':>8} {'k':>5} {'memory':>7} {'time':>6}"
    )
    for cell, T in [(cell, T) for cell in cells for T in lengths]:
        rng = np.random.default_rng(T)
        x, y = rng.integers(0, K, (B, T)), rng.integers(0, K, B)
        models, peaks, grads = [], [], []
        for every in (None, "auto"):
            model = RNNModel(
                vocab_size=K, hidden_size=H, output_size=K, mode="many-to-one", checkpoint_every=every, cell=cell
            )
            tracemalloc.start()
            _, g = model.loss_and_grads(x, y)
            peaks.append(tracemalloc.get_traced_memory()[1] / 2**20)
            tracemalloc.stop()
            models.append(model)
            grads.append(g)
        for name, g in grads[0].items():  # the same gradients, to float32 rounding
            err = np.abs(grads[1][name] - g).max() / max(np.abs(g).max(), 1e-30)
            assert err < 1e-4, f"{name}: checkpointed gradient differs from full BPTT by {err:.1e} (relative)"
        del grads
        times = interleaved({i: functools.partial(m.loss_and_grads, x, y) for i, m in enumerate(models)}, rounds, 0.0)
        t0, t1 = (1 / statistics.median(times[i]) for i in (0, 1))
        k = recompute.resolve_every("auto", T)
        out(
            f"{cell:<6} {T:>8,} {peaks[0]:>9.1f} {t0:>8.3f} {peaks[1]:>9.1f} {t1:>8.3f} {k:>5} {peaks[1] / peaks[0]:>7.1%} {t1 / t0:>6.2f}"
        )


# ---- JAX (optional) -----------------------------------------------------------


def run_jax(rounds: int, seconds: float, out=print) -> None:
    """bptt against a jitted JAX lax.scan of the same step, char-small-B1 (one-hot, mean CE, SGD)."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        out("jax: not installed, skipped (pip install jax to compare against a jitted lax.scan)")
        return
    from bptt.training.optim import SGD

    name = "char-small-B1"
    K, H, T, B, mode = CONFIGS[name]
    model, _, _, _ = step_setup(K, H, T, B, mode)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, K, (B, T)), rng.integers(0, K, (B, T))
    p0 = {k: jnp.asarray(v) for k, v in model.params.items()}

    def loss_fn(p, x, y):
        def cell(h, ids):
            h = jnp.tanh(p["rnn0.U"].T[ids] + h @ p["rnn0.W"].T + p["rnn0.b"])
            return h, h

        _, hs = jax.lax.scan(cell, jnp.zeros((B, H), jnp.float32), x.T)
        z = hs @ p["head.V"].T + p["head.c"]  # (T, B, K)
        logp = jax.nn.log_softmax(z, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, y.T[:, :, None], axis=-1))

    @jax.jit
    def jax_update(p, x, y):
        g = jax.grad(loss_fn)(p, x, y)
        return {k: p[k] - LR * g[k] for k in p}

    xj, yj = jnp.asarray(x), jnp.asarray(y)
    state = {"p": p0}
    g_jax = jax.grad(loss_fn)(p0, xj, yj)
    _, g_bptt = model.loss_and_grads(x, y)
    for k in g_bptt:
        np.testing.assert_allclose(np.asarray(g_jax[k]), g_bptt[k], rtol=2e-3, atol=1e-5, err_msg=k)
    opt = SGD(lr=LR)

    def bptt_step():
        _, grads = model.loss_and_grads(x, y)
        opt.step(model.params, grads)

    def jax_step():
        state["p"] = jax_update(state["p"], xj, yj)
        jax.block_until_ready(state["p"])

    r = interleaved({"bptt": bptt_step, "jax": jax_step}, rounds, seconds, per_call=B * T)
    out(f"jax {jax.__version__} (jit, lax.scan), {name}; tokens/s (med, min, max)")
    out(f"{'bptt':<8} {spread(r['bptt'])}")
    out(f"{'jax':<8} {spread(r['jax'])}")
    out(f"ratio {ratio(r['bptt'], r['jax']):.2f}")


# ---- MPI data parallelism ------------------------------------------------------


def mpi_updates(name: str, steps: int, rows: int | None = None) -> dict:
    """Run `steps` data-parallel updates (loss_and_grads on this rank's rows of the global batch,
    Barrier, Allreduce of the flat gradient buffer, SGD step) of configuration `name` after one
    warm-up; this rank's seconds in each part, its rows and the gradient bytes. Runs in every
    rank (or alone, in one process); the global batch must divide by the ranks. rows: compute on
    only the first `rows` of this rank's block (the cost of a smaller batch per rank)."""
    from bptt import RNNModel
    from bptt.training import distributed
    from bptt.training.optim import SGD

    comm = distributed.communicator()
    K, H, T, B, mode = CONFIGS[name]
    model = RNNModel(vocab_size=K, hidden_size=H, output_size=K, mode=mode, reduction="mean")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, K, (B, T)), rng.integers(0, K, (B, T))
    block = comm.rows(B)
    if rows is not None:
        block = slice(block.start, block.start + rows)
    opt = SGD(lr=LR)
    times = {"compute": 0.0, "wait": 0.0, "allreduce": 0.0, "step": 0.0}
    cpu = 0.0  # the compute's CPU time: what it costs on an idle core (one BLAS thread), whatever the load
    barrier = getattr(getattr(comm, "comm", None), "Barrier", lambda: None)
    for i in range(steps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        _, grads = model.loss_and_grads(x[block], y[block])
        t1, c1 = time.perf_counter(), time.process_time()
        barrier()
        t2 = time.perf_counter()
        comm.allreduce(grads, 1.0 / comm.size, [0.0])
        t3 = time.perf_counter()
        opt.step(model.params, grads)
        t4 = time.perf_counter()
        if i:  # the first update is a warm-up
            for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[key] += dt
            cpu += c1 - c0
    return {
        "compute_cpu": cpu,
        "ranks": comm.size,
        "rows": block.stop - block.start,
        "tokens": steps * B * T,
        "bytes": sum(g.nbytes for g in grads.values()),
        "seconds": sum(times.values()),
        **times,
    }


def print_mpi_updates(name: str, steps: int) -> None:
    """`mpi_updates` in every rank of an mpirun; rank 0 prints the result as a JSON line."""
    import json

    from bptt.training import distributed

    result = mpi_updates(name, steps)
    if distributed.communicator().is_root:
        print(json.dumps(result))


def run_mpi(configs: list[str], rounds: int, ranks: int = 2, repeats: int = 3, out=print) -> None:
    """One process with the machine's BLAS threads against `ranks` ranks with one BLAS thread
    each (mpirun from the `mpi` extra), `rounds` timed updates per configuration, the two
    alternated `repeats` times (medians); then the compute per row at 1 row per rank, and the
    projection of docs/distributed.md."""
    import json
    import shutil
    import subprocess
    import sys

    from bptt.errors import UsageError

    mpirun = shutil.which("mpirun", path=os.path.dirname(sys.executable)) or shutil.which("mpirun")
    if mpirun is None:
        raise UsageError("the mpi benchmark needs mpirun and mpi4py: pip install 'bptt[mpi]'")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # Open MPI refuses root unless told twice
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")

    def launch(name: str) -> dict:
        code = f"from bptt.bench import print_mpi_updates; print_mpi_updates({name!r}, {rounds})"
        done = subprocess.run(
            [mpirun, "-n", str(ranks), sys.executable, "-c", code], env=env, capture_output=True, text=True
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode or not lines:
            raise UsageError(f"mpirun -n {ranks} failed: {' '.join(done.stderr.split()[-40:])}")
        return json.loads(lines[-1])

    def median_run(results: list[dict]) -> dict:
        return sorted(results, key=lambda r: r["seconds"])[len(results) // 2]

    out(
        f"mpi: 1 process ({blas_name()}) against {ranks} ranks with 1 BLAS thread each; {rounds} updates, "
        f"alternated {repeats} times (medians); {load()}"
    )
    out(
        f"{'config':<14} {'grad MB':>8} {'1 proc tok/s':>13} {f'{ranks} ranks tok/s':>13} {'speed-up':>8} "
        f"{'compute':>8} {'wait':>6} {'allreduce':>9} {'allreduce ms':>12}"
    )
    measured = {}
    for name in configs:
        ones, manys = [], []
        for _ in range(repeats):
            ones.append(mpi_updates(name, rounds))
            manys.append(launch(name))
        one, many = median_run(ones), median_run(manys)
        rate1, rate = one["tokens"] / one["seconds"], many["tokens"] / many["seconds"]
        total = many["seconds"]
        out(
            f"{name:<14} {many['bytes'] / 1e6:>8.2f} {rate1:>13,.0f} {rate:>13,.0f} {rate / rate1:>8.2f} "
            f"{many['compute'] / total:>8.0%} {many['wait'] / total:>6.0%} {many['allreduce'] / total:>9.1%} "
            f"{many['allreduce'] / rounds * 1e3:>12.2f}"
        )
        measured[name] = (many["compute_cpu"] / rounds / many["rows"], many["step"] / rounds, many["bytes"])
    out("")
    out(
        "compute per row on 1 BLAS thread (t_row, CPU time: what an idle core takes, whatever the load): "
        "with B/ranks rows per rank (above), with 1 row per rank"
    )
    rows_one = {}
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    for name in configs:
        with threadpool_limits(1) if threadpool_limits else contextlib.nullcontext():
            r = median_run([mpi_updates(name, rounds, rows=1) for _ in range(repeats)])
        rows_one[name] = max(r["compute_cpu"] / rounds, measured[name][0])  # a row never costs less alone
        out(f"{name:<14} {measured[name][0] * 1e3:>8.2f} ms {rows_one[name] * 1e3:>8.2f} ms")
    out("")
    out(
        "projected speed-up over one rank (docs/distributed.md): an update of b rows per rank takes "
        "b t_row + t_step + 2(N-1)/N S / bandwidth + latency log2 N; t_row, t_step, S measured above "
        "(1 BLAS thread), latency assumed " + ", ".join(f"{lat * 1e6:g} us at {gbit:g} Gb/s" for gbit, lat in NETWORKS)
    )
    out(
        "N=...: B rows per rank (global batch N B); strong: global batch B on 8 ranks, their rows at the "
        f"cost of 1 row per rank (a lower bound); b*: rows per rank (at that cost) below which communication "
        f"and step outweigh compute at N={PROJECT_N[-1]}"
    )
    out(
        f"{'config':<14} {'t_row ms':>8} {'t_step ms':>9} {'network':>8} "
        + " ".join(f"{f'N={n}':>7}" for n in PROJECT_N)
        + f" {'b* rows':>8} {'strong':>14}"
    )
    for name, (t_row, t_step, nbytes) in measured.items():
        B = CONFIGS[name][3]
        for gbit, latency in NETWORKS:
            cells = []
            for n in PROJECT_N:
                comm_s = allreduce_seconds(n, nbytes, gbit, latency)
                cells.append(f"{n * (B * t_row + t_step) / (B * t_row + t_step + comm_s):>7.1f}")
            big = allreduce_seconds(PROJECT_N[-1], nbytes, gbit, latency)
            t_1 = rows_one[name]
            strong = (B * t_row + t_step) / (B / 8 * t_1 + t_step + allreduce_seconds(8, nbytes, gbit, latency))
            out(
                f"{name:<14} {t_row * 1e3:>8.2f} {t_step * 1e3:>9.2f} {f'{gbit:g} Gb/s':>8} "
                + " ".join(cells)
                + f" {(big + t_step) / t_1:>8.1f} {f'{strong:.1f} (N=8)':>14}"
            )


NETWORKS = ((10.0, 20e-6), (100.0, 2e-6))  # (Gb/s, assumed per-message latency in seconds)
PROJECT_N = (8, 64, 512)


def allreduce_seconds(n: int, nbytes: int, gbit: float, latency: float) -> float:
    """Ring (bandwidth) plus tree (latency) Allreduce: 2(n-1)/n S / bandwidth + latency log2 n."""
    return 2 * (n - 1) / n * nbytes / (gbit * 1e9 / 8) + latency * math.log2(n)


def run(
    sections: list[str],
    configs: list[str],
    rounds: int,
    seconds: float,
    lengths: list[int],
    gen_length: int = 200,
    torch_threads: int | None = None,
    out=print,
    converge_configs: list[str] | None = None,
    target: float | None = None,
    budget: float = 120.0,
    cells=CELLS,
) -> None:
    """Run the chosen sections in order, printing as they finish.

    torch_threads: torch.set_num_threads (default: the cores, as NumPy's BLAS uses).
    converge_configs, target, budget: for the converge section (`run_converge`).
    """
    if set(sections) & {"step", "generate", "converge"}:
        import_torch().set_num_threads(torch_threads or threads())
    for i, section in enumerate(sections):
        if i:
            out(f"[{load()}]")
            out("")
        if section == "step":
            run_step(configs, rounds, seconds, out, cells)
        elif section == "profile":
            run_profile(configs, rounds * 3, out, cells)
        elif section == "generate":
            run_generate(rounds, seconds, gen_length, out=out)
        elif section == "memory":
            run_memory(lengths, rounds, out=out, cells=cells)
        elif section == "jax":
            run_jax(rounds, seconds, out)
        elif section == "mpi":
            run_mpi([c for c in configs if CONFIGS[c][4] == "many-to-many"], rounds, out=out)
        elif section == "converge":
            run_converge(converge_configs or list(CONVERGE), target, budget, out=out)
    out(f"[{load()}]")
