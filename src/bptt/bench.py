"""Benchmarks against PyTorch in the same process: training steps, generation, memory.

step        one training step (forward over T, full BPTT, SGD update) of bptt
            against torch.nn.RNN(nonlinearity="tanh") (or nn.LSTM, nn.GRU for the
            lstm and gru rows) + nn.Linear + cross-entropy
            + torch.optim.SGD, same initial weights and data; the gradients are
            compared first (a timing is only honest if both compute the same
            thing). Both are timed in interleaved rounds; tokens/s (median, min,
            max) and the median of the per-round ratios bptt / torch. A second
            table puts bptt against the GEMMs alone: the step's GEMM FLOPs over
            its time, as a fraction of float32 SGEMM GFLOP/s (1024^3, timed in
            every round next to the step), and against the "GEMM-bound
            ceiling", the tokens/s of running only the step's matrix products
            (same shapes, same BLAS, timed in the same rounds).
profile     where one bptt step's time goes: forward, loss, backward, update.
generate    sampling at batch 1 (temperature 1), bptt.generate.sample against a
            torch eager loop (nn.RNN step, nn.Linear, softmax, multinomial).
memory      peak memory (tracemalloc, which sees NumPy's buffers) and time of one
            training step against T, full BPTT against checkpoint_every="auto".
jax         with JAX installed: a jitted lax.scan of the same step at batch 1.

The machine may be shared: rounds interleave the contenders so that load hits
both alike, and medians are reported. Entry points: `bptt bench` and
benchmarks/bench_step.py.
"""

from __future__ import annotations

import functools
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
SECTIONS = ("step", "profile", "generate", "memory", "jax")
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


def blas_name() -> str:
    """NumPy's BLAS, e.g. "openblas 0.3.31", when threadpoolctl can tell."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS unknown"
    libs = [
        f"{i['internal_api']} {i.get('version') or ''}, {i['num_threads']} threads"
        for i in threadpool_info()
        if i["user_api"] == "blas"
    ]
    return ", ".join(libs) or "BLAS unknown"


def load() -> str:
    """The 1-minute load average against the cores: other jobs on a shared machine."""
    if not hasattr(os, "getloadavg"):
        return "load average unknown"
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def time_it(fn, seconds: float) -> float:
    """Calls per second over about `seconds` (at least one call)."""
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


def interleaved(fns: dict, rounds: int, seconds: float, per_call: float = 1.0) -> dict[str, list[float]]:
    """{name: [rate per round]}: each round times every fn in turn; rate = calls/s * per_call."""
    for fn in fns.values():
        fn()  # warm up
    rates: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
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


def step_gemms(K: int, H: int, T: int, B: int, mode: str, seed: int = 0, gates: int = 1):
    """The matrix products one step cannot avoid, alone: (run, flops).

    Forward h_{t-1} W^T for t = 1..T; the head V h (every step, or the last);
    backward dV, dL/dh = dZ V, delta_t W for t = T..1, and dW over all T*B rows.
    (U x_t is a gather for one-hot inputs: no GEMM.) W is (G*H, H) for a cell with
    G gates (`GATES`). Same shapes, float32, out=, and the same BLAS thread policy
    as RNNModel (`bptt.blas`).
    """
    from bptt import blas

    rng = np.random.default_rng(seed)
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    N = T * B if mode == "many-to-many" else B
    G = gates
    h, W, buf = f(B, H), f(G * H, H) * 0.01, f(B, G * H)
    feat, V, Z, dV, dfeat = f(N, H), f(K, H), f(N, K), f(K, H), f(N, H)
    D, Hprev, dW = f(T * B, G * H), f(T * B, H), f(G * H, H)
    WT = W.T
    loop = int(np.sqrt(G)) * H  # blas.loop_threads(B, n) bounds B n^2 multiply-adds per step

    def run():
        with blas.threads_for(T * B * H * max(G * H, K), blas.STEP_SMALL):
            with blas.loop_threads(B, loop):
                for _ in range(T):
                    np.matmul(h, WT, out=buf)
            np.matmul(feat, V.T, out=Z)
            np.matmul(Z.T, feat, out=dV)
            np.matmul(Z, V, out=dfeat)
            with blas.loop_threads(B, loop):
                for _ in range(T):
                    np.matmul(buf, W, out=h)
            np.matmul(D.T, Hprev, out=dW)

    flops = 2 * (3 * T * B * G * H * H + 3 * N * H * K)
    return run, flops


def run_step(configs: list[str], rounds: int, seconds: float, out=print, cells=("elman",)) -> None:
    torch = import_torch()
    n = 1024
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    c = np.empty_like(a)
    sgemm = functools.partial(np.matmul, a, a, out=c)  # timed in every round, next to the step
    out(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__} ({blas_name()}); {load()}"
    )
    out(f"{'config':<22} {'bptt tok/s (med, min, max)':>30} {'torch tok/s (med, min, max)':>30} {'ratio':>6}")
    gemm_rows = []
    for config, cell in [(c, cell) for c in configs for cell in cells]:
        name = config if cell == "elman" else f"{config} {cell}"
        K, H, T, B, mode = CONFIGS[config]
        _, bptt_step, torch_step, check = step_setup(K, H, T, B, mode, cell=cell)
        check()
        gemms, flops = step_gemms(K, H, T, B, mode, gates=GATES[cell])
        r = interleaved({"bptt": bptt_step, "torch": torch_step, "gemm": gemms, "sgemm": sgemm}, rounds, seconds)
        tok = {k: [v * B * T for v in r[k]] for k in ("bptt", "torch", "gemm")}
        out(f"{name:<22} {spread(tok['bptt']):>30} {spread(tok['torch']):>30} {ratio(r['bptt'], r['torch']):>6.2f}")
        peak = statistics.median(r["sgemm"]) * 2 * n**3 / 1e9
        gflops = statistics.median(r["bptt"]) * flops / 1e9
        of_sgemm = ratio(r["bptt"], r["sgemm"]) * flops / (2 * n**3)  # per round, against that round's SGEMM
        gemm_rows.append(
            (name, flops, gflops, peak, of_sgemm, statistics.median(tok["gemm"]), ratio(r["bptt"], r["gemm"]))
        )
    out("")
    out(
        "GEMM-bound ceiling: SGEMM 1024^3 and the step's GEMMs alone, timed in the same rounds (per-round ratios, medians)"
    )
    out(
        f"{'config':<22} {'GFLOP/step':>10} {'bptt GFLOP/s':>12} {'SGEMM GFLOP/s':>13} {'of SGEMM':>8} {'GEMM-only tok/s':>15} {'bptt of it':>10}"
    )
    for name, flops, gflops, peak, of_sgemm, ceiling, frac in gemm_rows:
        out(
            f"{name:<22} {flops / 1e9:>10.3f} {gflops:>12.1f} {peak:>13.1f} {of_sgemm:>8.0%} {ceiling:>15,.0f} {frac:>10.0%}"
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


def run(
    sections: list[str],
    configs: list[str],
    rounds: int,
    seconds: float,
    lengths: list[int],
    gen_length: int = 200,
    torch_threads: int | None = None,
    out=print,
    cells=CELLS,
) -> None:
    """Run the chosen sections in order, printing as they finish.

    torch_threads: torch.set_num_threads (default: the cores, as NumPy's BLAS uses).
    """
    if set(sections) & {"step", "generate"}:
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
    out(f"[{load()}]")
