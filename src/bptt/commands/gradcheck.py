"""`bptt gradcheck`: check BPTT by finite differences (or RTRL) on a model built from training options.

Builds a small random problem for the architecture the options describe
(layers, directions, activation, head, mode, uneven lengths, h_0, and a
truncation: chunked/TBPTT(k1, k2) windows or a per-output horizon), runs
`bptt.analysis.gradcheck` in float64 and prints the max relative error per tensor.
With --method rtrl the reference is real-time recurrent learning
(`bptt.analysis.rtrl`, forward-mode exact gradients) instead of finite differences.
Exit status 1 when any tensor is above the threshold.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from bptt import RNNModel, gradcheck
from bptt.errors import UsageError
from bptt.training.options import (
    add_model_options,
    model_kwargs,
    non_negative_int,
    pooling_list,
    positive_float,
    positive_int,
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "gradcheck",
        help="check every gradient against finite differences (float64)",
        description=__doc__,
        usage="%(prog)s [options]",
    )
    add_model_options(p, {"hidden_size": 4})
    g = p.add_argument_group("problem")
    g.add_argument("--input", choices=["tokens", "features"], default="tokens", help="token ids or float features")
    g.add_argument("--vocab-size", type=positive_int, default=7, help="for --input tokens")
    g.add_argument("--input-size", type=positive_int, default=3, help="for --input features")
    g.add_argument(
        "--feature-columns",
        type=non_negative_int,
        default=0,
        help="tokens: this many extra id columns (tagger affixes), 5 ids each",
    )
    g.add_argument("--output-size", type=positive_int, default=None, help="K (default: vocab size, or 3)")
    g.add_argument("--head", choices=["softmax", "sigmoid", "linear"], default="softmax", help="output layer and loss")
    g.add_argument(
        "--mode",
        choices=["many-to-many", "many-to-one", "one-to-many", "one-to-one"],
        default="many-to-many",
        help="where inputs enter and outputs leave",
    )
    g.add_argument(
        "--pooling", type=pooling_list, default="last", help="over time, many-to-one: last, mean, max or a comma list"
    )
    g.add_argument("--reduction", choices=["sum-over-time", "mean", "sum"], default="sum-over-time", help="of the loss")
    g.add_argument("--batch-size", type=positive_int, default=3, help="sequences")
    g.add_argument("--seq-length", type=positive_int, default=6, help="T (with --backprop-steps: k1)")
    g.add_argument("--uneven", action="store_true", help="random lengths in 1..T and a mask")
    g.add_argument("--h0", action="store_true", help="a random initial state, its gradient checked too")
    t = p.add_argument_group("truncation")
    t.add_argument(
        "--backprop-steps",
        type=positive_int,
        default=None,
        help="TBPTT(k1, k2): a window of k2 steps from a fixed state, loss on its last k1 = --seq-length",
    )
    t.add_argument("--horizon", type=positive_int, default=None, help="per-output horizon tau (one layer)")
    c = p.add_argument_group("check")
    c.add_argument(
        "--method",
        choices=["fd", "rtrl"],
        default="fd",
        help="compare BPTT with finite differences (fd) or with real-time recurrent learning (rtrl)",
    )
    c.add_argument(
        "--threshold", type=positive_float, default=None, help="max relative error (default: 1e-6 fd, 1e-9 rtrl)"
    )
    c.add_argument("--eps", type=positive_float, default=1e-3, help="central-difference step")
    c.add_argument("--max-entries", type=positive_int, default=200, help="entries per tensor, sampled beyond")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def check_memory(args, model_kw: dict) -> None:
    """Refuse sizes whose float64 check would not fit in memory, before allocating (`bptt.training.resources`)."""
    from bptt.training import resources

    # optimizer "sgd", float64: weights, gradients and the finite-difference copy
    est = resources.estimate_model(
        {**model_kw, "dtype": "float64"},
        steps=args.backprop_steps or args.seq_length,
        batch_size=args.batch_size,
        optimizer="sgd",
    )
    resources.check_memory(est, what="the gradient check")


def run(args: argparse.Namespace) -> int:
    rng = np.random.default_rng(args.seed)
    tokens = args.input == "tokens"
    K = args.output_size or (args.vocab_size if tokens and args.head == "softmax" else 3)
    kw = model_kwargs(args)
    if not tokens:
        kw.pop("embedding_size")
    if args.mode == "one-to-many":
        kw["cond_size"] = 2
    F = args.feature_columns
    if F:
        if not tokens or args.embedding_size is None:
            raise UsageError("--feature-columns: needs --input tokens and --embedding-size")
        kw.update(feature_vocab_sizes=[5] * F, feature_embedding_size=2)
    kw.update({"vocab_size": args.vocab_size} if tokens else {"input_size": args.input_size})
    kw.update(output_size=K, head=args.head, mode=args.mode, pooling=args.pooling, reduction=args.reduction)
    check_memory(args, kw)
    model = RNNModel(**kw)
    k1 = args.seq_length
    k2 = args.backprop_steps or k1
    if k2 < k1:
        raise UsageError(f"--backprop-steps: got {k2}, expected k2 >= --seq-length (k1 = {k1})")
    B, T = args.batch_size, (1 if args.mode == "one-to-one" else k2)
    x = rng.integers(0, args.vocab_size, (B, T)) if tokens else rng.standard_normal((B, T, args.input_size))
    if F:
        x = np.concatenate([x[:, :, None], rng.integers(0, 5, (B, T, F))], axis=2)
    seq = args.mode in ("many-to-many", "one-to-many")
    lead = (B, T) if seq else (B,)
    if args.head == "softmax":
        y = rng.integers(0, K, lead)
    else:
        y = rng.random(lead + (K,)) if args.head == "sigmoid" else rng.standard_normal(lead + (K,))
    mask = rng.integers(1, T + 1, B) if args.uneven and args.mode != "one-to-one" else None
    nd = 2 if args.bidirectional else 1
    h0 = None
    loss_mask = None
    if args.backprop_steps is not None:
        if args.mode != "many-to-many" or args.bidirectional:
            raise UsageError("--backprop-steps: TBPTT windows need a unidirectional many-to-many model")
        # the state that starts a window comes from the past: a constant, as in TBPTT
        h0 = _random_state(model, rng, (args.num_layers, B, args.hidden_size))
        loss_mask = np.zeros((B, T), bool)
        loss_mask[:, T - k1 :] = True
    if args.h0 and args.mode != "one-to-many":
        h0 = _random_state(model, rng, (args.num_layers * nd, B, args.hidden_size))
    cond = rng.standard_normal((B, 2)) if args.mode == "one-to-many" else None
    if args.method == "rtrl":
        report = _against_rtrl(model, x, y, mask, h0, cond, loss_mask, args.horizon)
    else:
        report = gradcheck(
            model,
            x,
            y,
            mask,
            h0,
            cond=cond,
            loss_mask=loss_mask,
            horizon=args.horizon,
            eps=args.eps,
            max_entries=args.max_entries,
            seed=args.seed,
        )
    if args.threshold is None:
        args.threshold = 1e-9 if args.method == "rtrl" else 1e-6
    worst = max(report.values())
    ok = worst < args.threshold
    if args.json:
        print(json.dumps({"ok": ok, "method": args.method, "threshold": args.threshold, "max_relative_error": report}))
    else:
        width = max(map(len, report))
        for name, err in report.items():
            mark = "ok" if err < args.threshold else "FAIL"
            print(f"{name:<{width}}  {err:.2e}  {mark}")
        print(f"max relative error {worst:.2e} ({'below' if ok else 'ABOVE'} threshold {args.threshold:g})")
    return 0 if ok else 1


def _random_state(model, rng, shape):
    """A random initial state: an array (L * dirs, B, H), or a tuple of them for a cell whose
    state has several parts (the LSTM's (h0, c0)), every part's gradient checked."""
    parts = tuple(0.5 * rng.standard_normal(shape) for _ in range(model.cell.n_states))
    return parts[0] if len(parts) == 1 else parts


def _against_rtrl(model, x, y, mask, h0, cond, loss_mask, horizon) -> dict[str, float]:
    """Max relative error per tensor between BPTT and RTRL (`bptt.analysis.rtrl`), both in float64."""
    from bptt.analysis import rtrl
    from bptt.analysis.gradcheck import relative_error

    try:
        rtrl.check_supported(model, horizon)
    except ValueError as e:
        raise UsageError(f"--method rtrl: {str(e).removeprefix('rtrl: ')}") from None
    m = model.astype(np.float64)
    _, bptt_grads, bptt_state = m.loss_and_grads(x, y, mask, h0, cond=cond, loss_mask=loss_mask, return_state=True)
    _, rtrl_grads, rtrl_state = rtrl.loss_and_grads(
        m, x, y, mask, h0, cond=cond, loss_mask=loss_mask, return_state=True
    )
    report = {k: relative_error(bptt_grads[k], rtrl_grads[k]) for k in m.params}
    if h0 is not None:
        report["h0"] = relative_error(bptt_state["dh0"], rtrl_state["dh0"])
    return report
