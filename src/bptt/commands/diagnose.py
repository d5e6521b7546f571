"""`bptt diagnose RUN_DIR`: vanishing and exploding gradients, measured on a trained model.

Takes one batch of real data (a language-model run: --data FILE or the run's
own validation text; a long-memory task run: freshly generated sequences of
its task; any other run: random inputs, said so) and reports, per layer and
direction (`bptt.analysis.diagnostics`):

  - ||dh_t/dh_k|| (spectral and Frobenius) against the lag t - k, and the
    fitted exponential rate per step;
  - the contribution of each (t, k) term to dL/dW, dL/dU, dL/db, as heatmaps,
    and summed by lag: the share of the gradient from lags 0, 1-9, 10-99, 100+;
  - sigma_max(W) and the spectral radius against Pascanu et al.'s bound
    1/gamma, and the mean |f'(a)| seen;
  - with a run trained with --diagnostics: the gradient-norm history per
    tensor and the clipping events (RUN_DIR/grad-norms.jsonl).

Writes OUT/diagnose.json (OUT: RUN_DIR unless --out) and, with matplotlib,
OUT/diagnose.png and OUT/grad-norms.png; prints a summary (or, with --json,
the JSON). The (t, k) terms cost O(T^2 B H^2): --steps caps T.
"""

from __future__ import annotations

import argparse
import io
import json
import math
from pathlib import Path

import numpy as np

from bptt.errors import DataError, UsageError
from bptt.training.options import non_negative_int, positive_int

MAX_STEPS = 1000  # above this the (t, k) heatmaps alone are T^2 x 3 x layers floats of JSON


def add_parser(sub) -> None:
    p = sub.add_parser(
        "diagnose",
        help="Jacobian norms by lag, gradient contributions per (t, k), spectra",
        description=__doc__,
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument(
        "--data", type=Path, default=None, help="language-model runs: a text (default: the run's validation text)"
    )
    p.add_argument("--encoding", default="utf-8", help="of --data")
    p.add_argument("--batch-size", type=positive_int, default=8, help="sequences in the batch")
    p.add_argument(
        "--steps",
        type=positive_int,
        default=100,
        help=f"T for language-model and random batches (at most {MAX_STEPS}); a task run uses its --length",
    )
    p.add_argument(
        "--jacobian-sequences", type=positive_int, default=8, help="sequences whose Jacobian products are measured"
    )
    p.add_argument("--seed", type=non_negative_int, default=0, help="which text offsets / generated sequences")
    p.add_argument(
        "--out", type=Path, default=None, help="directory for diagnose.json and the plots (default: RUN_DIR)"
    )
    p.add_argument("--json", action="store_true", help="print the JSON instead of the summary")
    p.add_argument("--no-plot", action="store_true", help="JSON only, even when matplotlib is installed")
    p.set_defaults(run=run)


def batch_for(model, ckpt, args) -> tuple[dict, str]:
    """({inputs, targets, mask}, description) of the batch to diagnose."""
    from bptt.training.runs import task_extra

    extra = task_extra(ckpt)
    task = extra.get("task", "lm")
    rng = np.random.default_rng([args.seed, 3])
    B = args.batch_size
    if args.steps > MAX_STEPS:
        raise UsageError(f"--steps: got {args.steps}, at most {MAX_STEPS} (the (t, k) terms cost O(T^2))")
    check_memory(model, B, args.steps)
    if task == "lm" and "vocab" in extra:
        from bptt.training.runs import lm_text_ids

        ids, name = lm_text_ids(ckpt, args.run_dir, args.data, args.encoding)
        T = min(args.steps, len(ids) - 1)
        if T < 1:
            raise DataError(f"{name}: {len(ids)} tokens, expected at least 2 to diagnose")
        starts = distinct_starts(rng, len(ids) - T, B)
        chunks = np.stack([ids[s : s + T + 1] for s in starts])
        n = len(starts)
        return {
            "inputs": chunks[:, :-1],
            "targets": chunks[:, 1:],
        }, f"{n} chunk{'s' * (n > 1)} of {T} tokens from {name}"
    if args.data is not None:
        raise UsageError(f"--data: only for language-model runs; {args.run_dir} is a {task!r} run")
    from bptt.tasks import longmem

    if task in longmem.NAMES:
        s = longmem.spec(task, extra["length"], extra.get("variant"))
        b = s.make(rng, B)
        if b.inputs.shape[1] > MAX_STEPS:
            raise UsageError(
                f"{args.run_dir}: sequences of {b.inputs.shape[1]} steps, the diagnostics take at most {MAX_STEPS}"
            )
        return {"inputs": b.inputs, "targets": b.targets, "mask": b.mask}, f"{B} fresh sequences of {s.title}"
    return _random_batch(
        model, rng, B, args.steps
    ), f"{B} random sequences of {args.steps} steps (no data for task {task!r})"


def check_memory(model, B: int, T: int) -> None:
    """Refuse a --batch-size whose batch would not fit in memory, before allocating: a training step's
    worth of it (`bptt.training.resources`), in float64, plus the per-lag sums (T H (H + D + 1))."""
    from bptt.training import resources

    est = resources.estimate_model(
        {**model.config.to_dict(), "dtype": "float64"}, steps=T, batch_size=B, optimizer="sgd"
    )
    H, D = model.hidden_size, model.embedding_size or model.input_size or model.vocab_size
    extra = 8 * (T * B * model.hidden_size + T * H * (H + D + 1) + 3 * T * T)
    resources.check_bytes(est.total + extra, f"--batch-size {B} x --steps {T}", "a smaller --batch-size or --steps")


def distinct_starts(rng, n_starts: int, B: int) -> np.ndarray:
    """At most B different offsets in 0..n_starts-1, sorted: every one when there are no more than B."""
    if n_starts <= B:
        return np.arange(n_starts)
    return np.sort(rng.choice(n_starts, size=B, replace=False))


def _random_batch(model, rng, B, T) -> dict:
    if model.mode == "one-to-one":
        T = 1
    if model.uses_tokens and model.feature_vocab_sizes:  # the token and each feature column from its own vocabulary
        x = np.stack([rng.integers(0, n, (B, T)) for n in (model.vocab_size, *model.feature_vocab_sizes)], axis=2)
    elif model.uses_tokens:
        x = rng.integers(0, model.vocab_size, (B, T))
    else:
        x = rng.standard_normal((B, T, model.input_size))
    lead = (B, T) if model.mode in ("many-to-many", "one-to-many") else (B,)
    K = model.output_size
    y = rng.integers(0, K, lead) if model.head == "softmax" else rng.random(lead + (K,))
    out = {"inputs": x if model.mode != "one-to-one" else x[:, 0], "targets": y}
    if model.mode == "one-to-many":
        out["cond"] = rng.standard_normal((B, model.cond_size))
    if model.char_hidden_size is not None:  # words of 1..8 random characters
        n = rng.integers(1, 9, (B, T))
        out["chars"] = np.where(np.arange(8) < n[..., None], rng.integers(1, model.char_vocab_size, (B, T, 8)), 0)
    return out


def progress_bar():
    """A tqdm bar on stderr when it is a terminal (the diagnostics take a while on large models), else None."""
    import sys

    try:
        from tqdm import tqdm
    except ImportError:
        return None
    if not sys.stderr.isatty():
        return None
    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc="diagnose", unit="part", file=sys.stderr, leave=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def grad_history(run_dir: Path) -> list[dict] | None:
    """The records of RUN_DIR/grad-norms.jsonl (a run trained with --diagnostics), or None."""
    path = run_dir / "grad-norms.jsonl"
    if not path.is_file():
        return None
    from bptt.training.checkpoint import read_jsonl

    return read_jsonl(path, ("step", "grad_norm", "clipped", "norms"))


def history_summary(records: list[dict]) -> dict:
    names = list(records[0]["norms"]) if records else []
    per = {}
    for k in names:
        v = np.array([r["norms"].get(k, np.nan) for r in records], float)
        per[k] = {"median": float(np.nanmedian(v)), "max": float(np.nanmax(v)), "last": float(v[-1])}
    return {
        "updates": len(records),
        "clipped": int(sum(bool(r["clipped"]) for r in records)),
        "max_grad_norm": max((r["grad_norm"] for r in records), default=None),
        "per_tensor": per,
    }


def run(args: argparse.Namespace) -> int:
    from bptt.analysis import diagnostics
    from bptt.training import lock
    from bptt.training.checkpoint import atomic_write_bytes, atomic_write_text
    from bptt.training.runs import load_run

    if args.out is None:  # it writes into the run: not while a trainer does
        lock.hold(args.run_dir, args, create=False)
    model, ckpt = load_run(args.run_dir)
    batch, source = batch_for(model, ckpt, args)
    history = grad_history(args.run_dir)
    from bptt.training.rundir import check_writable

    out = args.out or args.run_dir
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, expected a directory")
    check_writable(out, f"--out {out}" if args.out else str(out))  # before the work, not after it
    report = diagnostics.diagnose(
        model,
        batch["inputs"],
        batch["targets"],
        batch.get("mask"),
        cond=batch.get("cond"),
        chars=batch.get("chars"),
        max_sequences=args.jacobian_sequences,
        progress=progress_bar(),
    )
    result = {"run_dir": str(args.run_dir), "data": source, **diagnostics.to_json(report)}
    if history is not None:
        result["training"] = history_summary(history)
    pngs = {}
    if not args.no_plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("note: no plots (pip install 'bptt[plot]' for PNGs)")
        else:
            pngs["diagnose.png"] = plot_report(report, f"{args.run_dir}: {source}")
            if history:
                pngs["grad-norms.png"] = plot_history(history, str(args.run_dir))
    out.mkdir(parents=True, exist_ok=True)  # only now: everything has been computed
    atomic_write_text(out / "diagnose.json", json.dumps(result) + "\n")
    for name, data in pngs.items():
        atomic_write_bytes(out / name, data)
    if args.json:
        print(json.dumps(result))
    else:
        print(summary(model, result))
        print("wrote " + ", ".join(str(out / n) for n in ["diagnose.json", *pngs]))
    return 0


def summary(model, r: dict) -> str:
    lines = [f"{model.num_layers} x {model.hidden_size} {model.kind}; {r['data']}; loss {r['loss']:.4g}"]
    for layer in r["layers"]:
        s, j, c = layer["spectrum"], layer["jacobian"], layer["contributions"]
        if "saturation" in layer:  # a gated cell
            sigmas = ", ".join(f"{k[len('sigma_max_W_') :]} {v:.3g}" for k, v in s.items() if k.startswith("sigma_max"))
            lines.append(f"{layer['name']}: sigma_max(W_gate) {sigmas}")
            near = layer["saturation"]["near"]
            gates = ", ".join(
                f"{g} mean {v['mean']:.2f} (<{near:g}: {100 * v['near_0']:.0f}%, >{1 - near:g}: {100 * v['near_1']:.0f}%)"
                for g, v in layer["saturation"].items()
                if g != "near"
            )
            lines.append(f"  gates: {gates}")
        else:
            lines.append(
                f"{layer['name']}: sigma_max(W) {s['sigma_max_W']:.3g}, spectral radius {s['spectral_radius_W']:.3g}, "
                f"bound 1/gamma {s['bound']:g}{' (vanishing guaranteed)' if s['vanishing_guaranteed'] else ''}; "
                f"mean |f'(a)| {s['mean_abs_fprime']:.3g}"
            )
        for part, jp in (("h", j), ("c", j.get("c"))):
            if jp is None:
                continue
            at = ", ".join(f"lag {n}: {jp['spectral'][n - 1]:.3g}" for n in (1, 10, 100) if n <= len(jp["lag"]))
            rate = "n/a" if jp["rate_spectral"] is None else f"x{jp['rate_spectral']:.4g}"
            lines.append(f"  ||d{part}_t/d{part}_k||_2 {rate} per step (fitted); {at}")
        share = ", ".join(f"{k}: {100 * v:.1f}%" for k, v in c["W"]["share_by_lag_bucket"].items())
        lines.append(f"  dL/dW by lag t-k: {share}")
    t = r.get("training")
    if t:
        lines.append(
            f"training: {t['updates']} updates recorded, {t['clipped']} clipped, max gradient norm {t['max_grad_norm']:.3g}"
        )
    return "\n".join(lines)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def plot_report(report: dict, title: str) -> bytes:
    """One row per layer direction: ||dh_t/dh_k|| by lag, dL/dW|U|b by lag, the (t, k) heatmap of dL/dW."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    from bptt.analysis.diagnostics import by_lag

    layers = report["layers"]
    fig, axes = plt.subplots(len(layers), 3, figsize=(15, 4 * len(layers)), squeeze=False, layout="constrained")
    for row, layer in zip(axes, layers):
        j = layer["jacobian"]
        lag = np.array(j["lag"])
        if "c" in j:  # the LSTM's cell state: the carousel
            y = np.array(j["c"]["spectral"])
            row[0].semilogy(lag[y > 0], y[y > 0], "-.", label="||dc_t/dc_k|| spectral")
        for kind, style in (("spectral", "-"), ("frobenius", "--")):
            y = np.array(j[kind])
            row[0].semilogy(lag[y > 0], y[y > 0], style, label=f"{kind}")
            rate = j[f"rate_{kind}"]
            if rate is not None and (y > 0).any():
                ok = y > 0
                c = np.exp(np.mean(np.log(y[ok]) - np.log(rate) * lag[ok]))
                row[0].semilogy(
                    lag, c * rate**lag, ":", color="gray", label=f"fit x{rate:.4g}/step" if kind == "spectral" else None
                )
        s = layer["spectrum"]
        if "saturation" in layer:
            gates = ", ".join(f"{g} {v['mean']:.2f}" for g, v in layer["saturation"].items() if g != "near")
            row[0].set_title(f"{layer['name']} ({layer['cell']}): ||dh_t/dh_k||; mean gates {gates}", fontsize=9)
        else:
            row[0].set_title(
                f"{layer['name']}: ||dh_t/dh_k||; sigma_max(W) {s['sigma_max_W']:.2f},\n"
                f"spectral radius {s['spectral_radius_W']:.2f}, mean |f'(a)| {s['mean_abs_fprime']:.2f}",
                fontsize=9,
            )
        row[0].set_xlabel("lag t - k")
        row[0].legend()
        c = by_lag(layer["lag_sums"])
        for name in ("W", "U", "b"):
            y = np.array(c[name]["norm_by_lag"])
            ok = y > 0
            row[1].semilogy(np.arange(len(y))[ok], y[ok], label=f"dL/d{name}")
        row[1].set_title("dL/dtheta by lag: ||sum_t of the (t, t - lag) terms||", fontsize=9)
        row[1].set_xlabel("lag t - k")
        row[1].legend()
        heat = layer["heatmap"]["W"]
        pos = heat[heat > 0]
        rows = np.flatnonzero((heat > 0).any(axis=1))
        if 0 < len(rows) <= 3:  # a final-state head: the loss enters at one step, a heatmap would be one line
            for t in rows:
                row[2].semilogy(
                    np.arange(t + 1)[heat[t, : t + 1] > 0], heat[t, : t + 1][heat[t, : t + 1] > 0], label=f"t = {t}"
                )
            row[2].set_title("||(t, k) term of dL/dW|| (the loss enters at t only)", fontsize=9)
            row[2].set_xlabel("k (where the gradient lands)")
            row[2].legend()
            continue
        if pos.size:
            im = row[2].imshow(
                np.where(heat > 0, heat, np.nan),
                origin="lower",
                aspect="auto",
                cmap="viridis",
                norm=LogNorm(vmin=max(pos.min(), pos.max() * 1e-12), vmax=pos.max()),
            )
            fig.colorbar(im, ax=row[2])
        row[2].set_title("||(t, k) term of dL/dW||", fontsize=9)
        row[2].set_xlabel("k (where the gradient lands)")
        row[2].set_ylabel("t (where the loss enters)")
    fig.suptitle(title)
    return _png(fig)


def plot_history(records: list[dict], title: str) -> bytes:
    """Gradient norm per tensor against the update, clipping events marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r["step"] for r in records])
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name in records[0]["norms"]:
        ax.semilogy(steps, [max(r["norms"][name], 1e-300) for r in records], lw=0.8, label=name)
    ax.semilogy(steps, [r["grad_norm"] for r in records], color="black", lw=1.0, label="global")
    clipped = [r["step"] for r in records if r["clipped"]]
    if clipped:
        top = max(r["grad_norm"] for r in records if math.isfinite(r["grad_norm"]))
        ax.plot(clipped, [top * 1.5] * len(clipped), "|", color="red", label=f"clipped ({len(clipped)})")
    ax.set_xlabel("update")
    ax.set_ylabel("gradient norm (before clipping)")
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=2)
    return _png(fig)
