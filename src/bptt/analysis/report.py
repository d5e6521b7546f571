"""One self-contained HTML page per run: what was trained, how the loss went, where the gradient flowed.

`read_run(run_dir)` gathers what a run directory holds (the checkpoint, metrics.jsonl,
grad-norms.jsonl from --diagnostics, diagnose.json from `bptt diagnose`, result.json
of a long-memory task, samples.txt of a language model); `render(run, ...)` turns it,
with what the caller measured on data (an evaluation with its confusion matrix, a
table of examples), into HTML whose scripts and images are all inline
(bptt.analysis.charts): it opens with the network off. The gradient-flow figures are
the ones `bptt diagnose` draws: ||dh_t/dh_k|| against the lag t - k, and the norm of
each (t, k) term of dL/dW,

    dL/dW = sum_t sum_{k<=t} (dL_t/dh_t) (prod_{i=k+1}^{t} diag(f'(a_i)) W) diag(f'(a_k)) h_{k-1}^T,

as a heatmap over (t, k). Every string from the run is escaped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bptt.analysis.charts import HOVER_JS, esc, fmt, heatmap, line_chart
from bptt.errors import DataError

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 0 20px 40px; color: #222; }
h1 { font-size: 22px; margin: 18px 0 4px; } h2 { font-size: 18px; border-bottom: 1px solid #ddd; margin-top: 28px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
table { border-collapse: collapse; margin: 6px 0 12px; } td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
th { background: #f6f6f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre, code { background: #f6f6f6; font: 12.5px/1.4 ui-monospace, monospace; } pre { padding: 8px; overflow-x: auto; white-space: pre-wrap; }
figure.plot { position: relative; display: inline-block; margin: 6px 16px 12px 0; vertical-align: top; }
figure.plot svg { max-width: 100%; height: auto; font-size: 11px; fill: #333; }
svg .title { font-size: 13px; font-weight: 600; } svg .grid { stroke: #eee; }
.tip { position: absolute; display: none; pointer-events: none; background: rgba(255,255,255,.95);
  border: 1px solid #888; padding: 3px 6px; font: 12px ui-monospace, monospace; white-space: pre; z-index: 2; }
.key { margin-right: 14px; white-space: nowrap; } .swatch { display: inline-block; width: 12px; height: 3px; margin: 0 4px 3px 0; }
.note { color: #666; } .bad { color: #b00; } table.confusion td { text-align: right; min-width: 2.2em; }
details { margin: 6px 0; }
"""


# ---- reading a run ------------------------------------------------------------------------


def read_run(run_dir: Path) -> dict:
    """What run_dir holds: {"dir", "model", "ckpt", "metrics", "grad_norms", "diagnose", "result",
    "samples"} (None for what the run does not have). CheckpointError for an unusable checkpoint,
    DataError for a missing or empty metrics.jsonl or an unreadable run file."""
    from bptt.training.checkpoint import read_jsonl
    from bptt.training.runs import load_run

    model, ckpt = load_run(run_dir)
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise DataError(f"{path}: missing (no evaluation was logged in this run yet)")
    metrics = read_jsonl(path, ("step", "train_loss"))
    if not metrics:
        raise DataError(f"{path}: empty (no evaluation was logged in this run yet)")
    grads = run_dir / "grad-norms.jsonl"
    return {
        "dir": run_dir,
        "model": model,
        "ckpt": ckpt,
        "metrics": metrics,
        "grad_norms": read_jsonl(grads, ("step", "grad_norm", "clipped", "norms")) if grads.is_file() else None,
        "diagnose": _json_object(run_dir / "diagnose.json"),
        "result": _json_object(run_dir / "result.json"),
        "samples": (run_dir / "samples.txt").read_text("utf-8", errors="replace")
        if (run_dir / "samples.txt").is_file()
        else None,
    }


def _json_object(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise DataError(f"{path}: not valid JSON") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object")
    return value


def task_extra(run: dict) -> dict:
    from bptt.training.runs import task_extra as extra_of

    return extra_of(run["ckpt"])


# ---- the page -----------------------------------------------------------------------------


def render(
    run: dict,
    evaluation: dict | None = None,
    examples: dict | None = None,
    notes: list[str] | None = None,
) -> str:
    """The HTML page of a run.

    evaluation: {"title": str, "metrics": {name: number}, "labels": [...], "confusion": K x K,
    "per_class": {...}} (confusion and per_class optional). examples: {"title": str,
    "header": [...], "rows": [[cell, ...]], "wrong": [bool per row]} or {"title", "text"}.
    notes: lines shown near the top (what could not be computed, and why).
    """
    from bptt.version import __version__

    model, ckpt = run["model"], run["ckpt"]
    extra = task_extra(run)
    title = f"bptt run {run['dir']}"
    sections = [
        _overview(run, extra),
        _configuration(ckpt, extra),
        _model(model),
        _curves(run, extra),
        _result(run["result"]),
        _evaluation(evaluation),
        _examples(examples, run["samples"]),
        _gradient_flow(run),
    ]
    body = "".join(s for s in sections if s)
    top = "".join(f'<p class="note">{esc(n)}</p>' for n in notes or [])
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f'<meta name="generator" content="bptt {esc(__version__)}"><style>{CSS}</style></head>'
        f"<body><h1>{esc(title)}</h1>{top}{body}<script>{HOVER_JS}</script></body></html>\n"
    )


def _table(rows: list[tuple], header: tuple | None = None, cls: str = "") -> str:
    def cell(v, tag="td"):
        if isinstance(v, bool) or v is None:
            return f"<{tag}>{esc(v)}</{tag}>"
        if isinstance(v, (int, float, np.integer, np.floating)):
            text = f"{v:,}" if isinstance(v, (int, np.integer)) else fmt(float(v))
            return f'<{tag} class="num">{esc(text)}</{tag}>'
        return f"<{tag}>{esc(v)}</{tag}>"

    head = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f'<table class="{cls}">{head}{body}</table>'


def _short(value, limit: int = 120) -> str:
    """A config value on one line: long lists and dicts are summarised."""
    if isinstance(value, dict):
        if "itos" in value and isinstance(value["itos"], list):
            return f"vocabulary of {len(value['itos']):,} entries"
        text = json.dumps(value)
    elif isinstance(value, list):
        text = (
            ", ".join(map(str, value))
            if len(value) <= 20
            else f"{len(value):,} entries: " + ", ".join(map(str, value[:12])) + ", ..."
        )
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _overview(run: dict, extra: dict) -> str:
    progress = run["ckpt"].train_state.get("progress", {}) if isinstance(run["ckpt"].train_state, dict) else {}
    last = run["metrics"][-1]
    rows = [("task", extra.get("task", "lm")), ("updates", progress.get("step", last.get("step")))]
    for key in ("epoch", "tokens", "elapsed", "rollbacks"):
        if isinstance(progress.get(key), (int, float)):
            rows.append((key if key != "elapsed" else "seconds training", progress[key]))
    rows += [(f"last {k.replace('_', ' ')}", v) for k, v in last.items() if k.startswith(("train_", "valid_"))]
    return '<h2 id="summary">Summary</h2>' + _table(rows)


def _configuration(ckpt, extra: dict) -> str:
    options = ckpt.train_state.get("options", {}) if isinstance(ckpt.train_state, dict) else {}
    options = options if isinstance(options, dict) else {}
    command = options.get("command")
    if isinstance(command, list) and command:
        import shlex

        line = f"<pre>{esc(' '.join(shlex.quote(str(a)) for a in command))}</pre>"
    else:
        line = '<p class="note">The command line was not recorded (a run made before bptt recorded it).</p>'
    train_rows = [(k, _short(v)) for k, v in options.items() if k not in ("extra", "command")]
    model_rows = [(k, _short(v)) for k, v in ckpt.model_config.items()]
    data_rows = [(k, _short(v)) for k, v in extra.items() if not k.endswith("sha256")]
    return (
        '<h2 id="configuration">Command and configuration</h2>'
        + line
        + "<details><summary>model</summary>"
        + _table(model_rows, ("option", "value"))
        + "</details><details><summary>training</summary>"
        + _table(train_rows, ("option", "value"))
        + "</details>"
        + (f"<details><summary>task data</summary>{_table(data_rows, ('key', 'value'))}</details>" if data_rows else "")
    )


def describe(model) -> str:
    """One line: "bidirectional 2 x 64 tanh RNN, many-to-one, softmax head"."""
    cell = str(getattr(model, "cell", "rnn"))  # an LSTM or GRU model names its cell
    unit = f"{model.nonlinearity} RNN" if cell.lower() in ("rnn", "elman") else cell.upper()
    kind = f"{'bidirectional ' if model.bidirectional else ''}{model.num_layers} x {model.hidden_size} {unit}"
    return f"{kind}, {model.mode}, {model.head} head, {model.dtype}"


def _model(model) -> str:
    rows = [(k, " x ".join(map(str, v.shape)) or "scalar", int(v.size)) for k, v in model.params.items()]
    total = sum(r[2] for r in rows)
    return (
        f'<h2 id="model">Model</h2><p>{esc(describe(model))}: <b>{total:,}</b> parameters.</p>'
        "<details><summary>tensors</summary>" + _table(rows, ("tensor", "shape", "parameters")) + "</details>"
    )


def _curves(run: dict, extra: dict) -> str:
    records = run["metrics"]
    char = "train_bpc" in records[0]
    unit, key = ("bits per character", "bpc") if char else ("loss", "loss")
    losses = [
        (
            f"{split} {key}",
            [r["step"] for r in records if f"{split}_{key}" in r],
            [r[f"{split}_{key}"] for r in records if f"{split}_{key}" in r],
        )
        for split in ("train", "valid")
    ]
    charts = [line_chart(losses, "Loss", "update", unit, log=False)]
    others = sorted({k for r in records for k in r if k.startswith("valid_") and k not in ("valid_loss", "valid_bpc")})
    if others:
        charts.append(
            line_chart(
                [(k.removeprefix("valid_").replace("_", " "), *_column(records, k)) for k in others],
                "Validation metrics",
                "update",
                "value",
            )
        )
    charts.append(
        line_chart(
            [("gradient norm", *_column(records, "grad_norm"))],
            "Gradient norm at each evaluation",
            "update",
            "global norm (before clipping)",
            log=True,
        )
    )
    lr = _column(records, "lr")
    if len(set(lr[1])) > 1:
        charts.append(line_chart([("learning rate", *lr)], "Learning rate", "update", "lr", log=True))
    return '<h2 id="curves">Training curves</h2>' + "".join(charts)


def _column(records: list[dict], key: str) -> tuple[list, list]:
    rows = [
        (r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float)) and not isinstance(r[key], bool)
    ]
    return [s for s, _ in rows], [v for _, v in rows]


def _result(result: dict | None) -> str:
    if not result:
        return ""
    rows = [(k.replace("_", " "), v if isinstance(v, (int, float, bool)) else _short(v)) for k, v in result.items()]
    solved = result.get("solved")
    verdict = (
        ""
        if solved is None
        else f"<p><b>{'solved' if solved else 'not solved'}</b> ({esc(result.get('criterion', ''))})</p>"
    )
    return '<h2 id="result">Test result</h2>' + verdict + _table(rows)


def _evaluation(ev: dict | None) -> str:
    if not ev:
        return ""
    out = f'<h2 id="evaluation">{esc(ev["title"])}</h2>' + _table(
        [(k.replace("_", " "), v) for k, v in ev["metrics"].items()]
    )
    if ev.get("confusion") is not None:
        out += "<h3>Confusion matrix</h3>" + confusion_table(ev["confusion"], ev["labels"])
    if ev.get("per_class"):
        rows = [(name, c["precision"], c["recall"], c["f1"], c["support"]) for name, c in ev["per_class"].items()]
        out += (
            "<details><summary>per class</summary>"
            + _table(rows, ("class", "precision", "recall", "F1", "support"))
            + "</details>"
        )
    return out


def confusion_table(C, labels: list[str], max_labels: int = 30) -> str:
    """Rows true, columns predicted, each cell shaded by its share of the row (the most frequent
    classes if there are more than max_labels); hover a cell for its count and share."""
    C = np.asarray(C, dtype=np.int64)
    keep = np.argsort(-C.sum(axis=1), kind="stable")[:max_labels]
    keep = keep[C.sum(axis=1)[keep] + C.sum(axis=0)[keep] > 0]
    head = "<tr><th>true \\ predicted</th>" + "".join(f"<th>{esc(labels[j])}</th>" for j in keep) + "</tr>"
    rows = []
    for i in keep:
        total = max(int(C[i].sum()), 1)
        cells = []
        for j in keep:
            share = C[i, j] / total
            colour = f"rgba(31,119,180,{0.08 + 0.8 * share:.3f})" if C[i, j] else "#fff"
            tip = f"true {labels[i]}, predicted {labels[j]}: {C[i, j]:,} ({100 * share:.1f}% of the row)"
            cells.append(f'<td style="background:{colour}" title="{esc(tip)}">{C[i, j]:,}</td>')
        rows.append(f"<tr><th>{esc(labels[i])}</th>{''.join(cells)}</tr>")
    more = (
        ""
        if len(keep) == len(labels)
        else f'<p class="note">the {len(keep)} most frequent of {len(labels)} classes</p>'
    )
    return f'<table class="confusion">{head}{"".join(rows)}</table>{more}'


def _examples(examples: dict | None, samples: str | None) -> str:
    out = ""
    if samples:
        out += '<h2 id="samples">Samples written at the end of training</h2><pre>' + esc(samples) + "</pre>"
    if not examples:
        return out
    out += f'<h2 id="examples">{esc(examples["title"])}</h2>'
    if "text" in examples:
        return out + f"<pre>{esc(examples['text'])}</pre>"
    wrong = examples.get("wrong") or [False] * len(examples["rows"])
    head = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in examples["header"]) + "</tr>"
    rows = "".join(
        f'<tr class="{"bad" if bad else ""}">' + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
        for row, bad in zip(examples["rows"], wrong)
    )
    return (
        out
        + f"<table>{head}{rows}</table>"
        + ('<p class="note">rows in red: the prediction is wrong</p>' if any(wrong) else "")
    )


# ---- gradient flow ------------------------------------------------------------------------


def _gradient_flow(run: dict) -> str:
    out = '<h2 id="gradients">How the gradient flowed</h2>'
    records = run["grad_norms"]
    if records:
        out += _grad_history(records)
    else:
        out += (
            '<p class="note">No gradient-norm history: train with <code>--diagnostics</code> to record every '
            "update's gradient norm per tensor (grad-norms.jsonl).</p>"
        )
    if run["diagnose"]:
        out += _diagnose(run["diagnose"])
    else:
        out += (
            f'<p class="note">No diagnostics: <code>bptt diagnose {esc(run["dir"])}</code> measures '
            "||dh_t/dh_k|| by lag and each (t, k) term of the gradient; run it, then this report again.</p>"
        )
    return out


def _grad_history(records: list[dict]) -> str:
    names = list(dict.fromkeys(k for r in records for k in r["norms"]))
    steps = [r["step"] for r in records]
    series = [(n, steps, [_number(r["norms"].get(n)) for r in records]) for n in names]
    series.append(("global", steps, [_number(r["grad_norm"]) for r in records]))
    clipped = [r["step"] for r in records if r["clipped"]]
    marks = [(s, f"update {s}: clipped") for s in clipped[:2000]]
    note = f"{len(records):,} updates, {len(clipped):,} clipped" + (" (red ticks along the top)" if clipped else "")
    if len(records) > 800:
        note += "; each point is the largest norm in its bucket of updates"
    chart = line_chart(
        series,
        "Gradient norm per tensor, every update",
        "update",
        "norm before clipping",
        log=True,
        marks=marks,
        note=note,
    )
    rows = []
    for n, _, ys in series:
        v = np.array([y for y in ys if y is not None], float)
        if v.size:
            rows.append((n, float(np.median(v)), float(v.max()), float(v[-1])))
    return chart + _table(rows, ("tensor", "median", "max", "last"))


def _number(v):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _diagnose(d: dict) -> str:
    out = f"<h3>bptt diagnose</h3><p>{esc(d.get('data', ''))}; loss {esc(fmt(_number(d.get('loss'))))}</p>"
    layers = d.get("layers") if isinstance(d.get("layers"), list) else []
    for layer in layers:
        if isinstance(layer, dict):
            out += _diagnose_layer(layer)
    return out


def _diagnose_layer(layer: dict) -> str:
    name = str(layer.get("name", "layer"))
    out = f"<h3>{esc(name)}</h3>"
    spectrum = layer.get("spectrum")
    if isinstance(spectrum, dict):
        out += _table([(k.replace("_", " "), v) for k, v in spectrum.items() if not isinstance(v, (list, dict))])
    jac = layer.get("jacobian")
    charts = []
    if isinstance(jac, dict) and isinstance(jac.get("lag"), list):
        lag = jac["lag"]
        series = [
            (f"||{k}||" if not k.startswith("||") else k, lag, v)
            for k, v in jac.items()
            if k not in ("lag", "sequences") and isinstance(v, list) and len(v) == len(lag)
        ]
        rates = ", ".join(
            f"{k.removeprefix('rate_')} x{fmt(v)}" for k, v in jac.items() if k.startswith("rate_") and _number(v)
        )
        charts.append(
            line_chart(
                series,
                f"{name}: ||dh_t/dh_k|| by lag",
                "lag t - k",
                "norm",
                log=True,
                note=f"fitted rate per step: {rates}" if rates else "",
            )
        )
    contrib = layer.get("contributions")
    if isinstance(contrib, dict):
        series = [
            (f"dL/d{k}", list(range(len(v["norm_by_lag"]))), v["norm_by_lag"])
            for k, v in contrib.items()
            if isinstance(v, dict) and isinstance(v.get("norm_by_lag"), list)
        ]
        charts.append(
            line_chart(series, f"{name}: gradient by lag", "lag t - k", "||sum of the (t, t - lag) terms||", log=True)
        )
    heat = layer.get("heatmap")
    W = heat.get("W") if isinstance(heat, dict) else None
    if isinstance(W, list) and W and isinstance(W[0], list):
        charts.append(_heat(np.array(W, float), name))
    out += "".join(charts)
    if isinstance(contrib, dict):
        buckets = list(
            dict.fromkeys(b for v in contrib.values() if isinstance(v, dict) for b in v.get("share_by_lag_bucket", {}))
        )
        rows = [
            (f"dL/d{k}", *(f"{100 * v['share_by_lag_bucket'].get(b, 0):.1f}%" for b in buckets))
            for k, v in contrib.items()
            if isinstance(v, dict) and isinstance(v.get("share_by_lag_bucket"), dict)
        ]
        if rows:
            out += "<p>Share of the gradient by lag t - k:</p>" + _table(rows, ("", *(f"lag {b}" for b in buckets)))
    return out


def _heat(heat: np.ndarray, name: str) -> str:
    rows = np.flatnonzero((heat > 0).any(axis=1))
    if 0 < len(rows) <= 3:  # a final-state head: the loss enters at one step only
        series = [(f"t = {t}", list(range(t + 1)), heat[t, : t + 1].tolist()) for t in rows]
        return line_chart(
            series,
            f"{name}: ||(t, k) term of dL/dW||",
            "k (where the gradient lands)",
            "norm",
            log=True,
            note="the loss enters at the last step only",
        )
    return heatmap(
        heat,
        f"{name}: ||(t, k) term of dL/dW||",
        "k (where the gradient lands)",
        "t (where the loss enters)",
        note="the terms above the diagonal (k > t) are zero: a step's loss reaches only the past",
    )
