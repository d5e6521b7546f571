"""`bptt train --task regress`: float sequences -> numbers, with the identity head and MSE.

    many-to-one  (one target per sequence):  y^ = V pool(h) + c
    many-to-many (one target per step):      y^_t = V h_t + c
    L = mean of (y^ - y)^2 over valid steps and outputs: the MSE itself
        (bptt.layers.losses.squared_error with reduction="mean"; dL/dz = 2 (y^ - y) / n)

The data is a CSV (see `bptt.data.tabular`): an input column of steps and a
target column with one value (or vector) per sequence or per step; which of
the two the file holds decides the mode, and every line must agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bptt.errors import DataError
from bptt.tasks import common


def add_options(p) -> None:
    g = p.add_argument_group("regression (--task regress)")
    g.add_argument("--input-column", default="input", help="CSV column of the input steps")
    g.add_argument("--target-column", default="target", help="CSV column of the targets")


def read(path, extra: dict, need_targets: bool = True):
    from bptt.data.tabular import read_sequences

    return read_sequences(path, extra["input_column"], extra["target_column"], extra["encoding"], need_targets)


def mode_of(rows, path) -> str:
    """many-to-one if every target is one value (vector), many-to-many if every target has one per step."""
    per_step = [y.shape[0] == x.shape[0] and x.shape[0] > 1 for x, y, _ in rows]
    one = [y.shape[0] == 1 for x, y, _ in rows]
    if all(one):
        return "many-to-one"
    if all(p or o and x.shape[0] == 1 for p, o, (x, _, _) in zip(per_step, one, rows)):
        return "many-to-many"
    x, y, n = next(r for r, o in zip(rows, one) if not o and r[1].shape[0] != r[0].shape[0])
    raise DataError(
        f"{path}:{n}: {y.shape[0]} target steps for {x.shape[0]} input steps, expected 1 (many-to-one) or "
        f"{x.shape[0]} (many-to-many) as the file's other lines"
    )


def check_like(rows, extra: dict, path) -> None:
    """Inputs and targets of the width the run was trained on, targets in its mode."""
    for x, y, n in rows:
        if x.shape[1] != extra["input_size"]:
            raise DataError(f"{path}:{n}: {x.shape[1]} input features per step, expected {extra['input_size']}")
        if y is None:
            continue
        if y.shape[1] != extra["output_size"]:
            raise DataError(f"{path}:{n}: {y.shape[1]} target values per step, expected {extra['output_size']}")
        want = 1 if extra["mode"] == "many-to-one" else x.shape[0]
        if y.shape[0] != want:
            raise DataError(f"{path}:{n}: {y.shape[0]} target steps, expected {want} ({extra['mode']})")


def make_batch(rows, idx, mode: str):
    from bptt.data.batching import Batch, pad

    inputs, lengths = pad([rows[i][0] for i in idx])
    K = rows[idx[0]][1].shape[1] if rows[idx[0]][1] is not None else 1
    if rows[idx[0]][1] is None:
        targets = np.zeros((len(idx), K) if mode == "many-to-one" else inputs.shape[:2] + (K,))
    elif mode == "many-to-one":
        targets = np.stack([rows[i][1][0] for i in idx])
    else:
        targets = pad([rows[i][1] for i in idx])[0]
    return Batch(inputs, targets, mask=lengths)


def load(extra: dict, fresh: bool) -> common.Data:
    from bptt.data.batching import SequenceSource
    from bptt.training import distributed
    from bptt.training.batches import loss_sum

    rows = read(extra["data"], extra)
    part, held_out, _ = common.split(len(rows), extra)
    train = [rows[i] for i in part]
    if fresh:
        extra["mode"] = mode_of(train, extra["data"])
        extra["input_size"], extra["output_size"] = int(train[0][0].shape[1]), int(train[0][1].shape[1])
    check_like(train, extra, extra["data"])
    lengths = np.array([len(x) for x, _, _ in train])
    source = SequenceSource(
        lengths, extra["batch_size"], lambda idx, rng: make_batch(train, idx, extra["mode"]), seed=extra["seed"]
    )
    evaluate = None
    if extra["valid"] is not None or held_out is not None:
        valid = read(extra["valid"], extra) if extra["valid"] else [rows[i] for i in held_out]
        check_like(valid, extra, extra["valid"] or extra["data"])
        batches = common.eval_batches(
            [len(x) for x, _, _ in valid], extra["batch_size"], lambda idx: make_batch(valid, idx, extra["mode"])
        )

        def evaluate(model):  # under MPI: each rank its shard of the batches, the sums summed
            comm = distributed.communicator()
            mine = comm.shard(batches)
            total, count, squared, absolute, n = comm.sum(
                [*loss_sum(model, mine), *error_sums(model, mine, extra["mode"])]
            )
            n = max(n, 1)
            return {
                "valid_loss": float(total / max(count, 1)),
                "valid_mse": float(squared / n),
                "valid_mae": float(absolute / n),
            }

    summary = (
        f"{extra['data']}: {len(train):,} sequences of {extra['input_size']} feature(s) per step, "
        f"{lengths.min()}-{lengths.max()} steps, {extra['output_size']} target(s) {'per step' if extra['mode'] == 'many-to-many' else 'per sequence'}"
        + (f"; valid {common.valid_name(extra)}" if common.has_valid(extra) else "")
    )
    return common.Data(source, evaluate, summary)


def error_sums(model, batches, mode: str) -> tuple[float, float, int]:
    """(sum of squared errors, sum of absolute errors, number of target values) over every target
    value (valid steps only): MSE and MAE are the sums over the count."""
    err = []
    for b in batches:
        y = model.predict(b.inputs, b.mask)
        if mode == "many-to-many":
            valid = np.arange(y.shape[1])[None, :] < b.mask[:, None]
            err.append(np.asarray(y[valid], np.float64) - np.asarray(b.targets[valid], np.float64))
        else:
            err.append(np.asarray(y, np.float64) - np.asarray(b.targets, np.float64))
    err = np.concatenate(err).ravel() if err else np.zeros(0)
    return float((err**2).sum()), float(np.abs(err).sum()), int(err.size)


def run(args) -> int:
    from bptt.training.options import model_kwargs, task_defaults

    task_defaults(args, hidden_size=32, num_layers=1, max_epochs=20.0, pooling="last")
    extra = common.data_extra(args, "regress")
    extra.update(
        input_column=args.input_column, target_column=args.target_column, batch_size=args.batch_size, seed=args.seed
    )
    data = load(extra, fresh=True)
    kw = model_kwargs(args)
    kw.pop("embedding_size")
    kw.update(
        input_size=extra["input_size"],
        output_size=extra["output_size"],
        mode=extra["mode"],
        head="linear",
        pooling=args.pooling,
        reduction="mean",
        dtype=args.dtype,
    )
    monitor = "valid_mse" if common.has_valid(extra) else "valid_loss"
    return common.build_and_fit(args, extra, data, kw, f"{Path(args.data).stem}-regress", monitor, "min")


def resume(args, model, ckpt, opts) -> int:
    return common.resume_task(args, model, ckpt, opts, load)


def _predicted(model, extra: dict, rows) -> list[np.ndarray]:
    from bptt.data.batching import sorted_batches

    out: list = [None] * len(rows)
    for idx in sorted_batches(np.array([len(x) for x, _, _ in rows]), 64):
        b = make_batch(rows, idx, extra["mode"])
        y = model.predict(b.inputs, b.mask)
        for row, i in enumerate(idx):
            out[i] = y[row] if extra["mode"] == "many-to-one" else y[row, : len(rows[i][0])]
    return out


def predict(model, extra: dict, path: Path, args) -> str:
    """One line per input row: the predicted value(s), in the input notation (steps by spaces, features by ':')."""
    rows = read(path, extra, need_targets=False)
    check_like(rows, extra, path)
    lines = []
    for y in _predicted(model, extra, rows):
        steps = y[None] if y.ndim == 1 else y
        lines.append(" ".join(":".join(f"{v:.6g}" for v in s) for s in steps))
    return "\n".join(lines) + "\n"


def evaluate(model, extra: dict, path: Path, args) -> dict:
    from bptt.training import metrics

    rows = read(path, extra)
    check_like(rows, extra, path)
    pred = _predicted(model, extra, rows)
    true = [y[0] if extra["mode"] == "many-to-one" else y for _, y, _ in rows]
    return metrics.regression_report(
        np.concatenate([t.ravel() for t in true]), np.concatenate([p.ravel() for p in pred])
    )
