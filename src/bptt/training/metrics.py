"""Evaluation metrics: accuracy, per-class precision/recall/F1, confusion matrix, ROC AUC, MSE/MAE.

For class c with true positives tp_c, false positives fp_c, false negatives fn_c:

    precision_c = tp_c / (tp_c + fp_c),  recall_c = tp_c / (tp_c + fn_c),
    F1_c = 2 precision_c recall_c / (precision_c + recall_c)     (0 where undefined)

macro averages are the plain means over classes that occur in the truth or the
predictions. ROC AUC is the probability that a random positive scores above a
random negative (ties count half): the Mann-Whitney U statistic from ranks.
"""

from __future__ import annotations

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, K: int) -> np.ndarray:
    """C[i, j] = number of examples of true class i predicted as j, (K, K)."""
    return np.bincount(np.asarray(y_true) * K + np.asarray(y_pred), minlength=K * K).reshape(K, K)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if y_true.size else 0.0


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros(np.shape(a), dtype=np.float64), where=np.asarray(b) > 0)


def per_class(C: np.ndarray) -> dict[str, np.ndarray]:
    """precision, recall, f1 and support (true count) per class, from a confusion matrix."""
    tp = np.diag(C).astype(np.float64)
    precision = _safe_div(tp, C.sum(axis=0))
    recall = _safe_div(tp, C.sum(axis=1))
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": C.sum(axis=1)}


def classification_report(y_true, y_pred, labels: list[str]) -> dict:
    """accuracy, macro P/R/F1, and per-class P/R/F1/support, plus the confusion matrix."""
    K = len(labels)
    C = confusion(y_true, y_pred, K)
    pc = per_class(C)
    seen = (C.sum(axis=0) + C.sum(axis=1)) > 0
    report = {"accuracy": accuracy(y_true, y_pred), "n": int(C.sum())}
    for k in ("precision", "recall", "f1"):
        report[f"macro_{k}"] = float(pc[k][seen].mean()) if seen.any() else 0.0
    report["per_class"] = {
        labels[i]: {k: float(pc[k][i]) if k != "support" else int(pc[k][i]) for k in pc} for i in range(K) if seen[i]
    }
    report["confusion"] = C.tolist()
    return report


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve for 0/1 truth; None when only one class is present."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="stable")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    for a, b in zip(starts, ends):  # ties share the mean rank
        ranks[order[a:b]] = (a + b + 1) / 2
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def regression_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """mse and mae over every value."""
    err = np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64)
    return {"mse": float((err**2).mean()), "mae": float(np.abs(err).mean()), "n": int(err.size)}


def format_confusion(C, labels: list[str], max_labels: int = 30) -> str:
    """The confusion matrix as text: rows true, columns predicted (the most frequent classes if many)."""
    C = np.asarray(C)
    keep = np.argsort(-C.sum(axis=1), kind="stable")[:max_labels]
    keep = keep[C.sum(axis=1)[keep] + C.sum(axis=0)[keep] > 0]
    names = [labels[i] for i in keep]
    w = max(5, max(len(n) for n in names) + 1, len(str(C.max())) + 1)
    lines = ["true \\ pred".ljust(w) + "".join(n.rjust(w) for n in names)]
    for i, n in zip(keep, names):
        lines.append(n.ljust(w) + "".join(str(C[i, j]).rjust(w) for j in keep))
    return "\n".join(lines)


def format_report(report: dict) -> str:
    """accuracy and macro line, then one line per class."""
    lines = [
        f"accuracy {report['accuracy']:.4f} on {report['n']:,} | macro precision {report['macro_precision']:.4f} "
        f"recall {report['macro_recall']:.4f} F1 {report['macro_f1']:.4f}"
    ]
    if "roc_auc" in report and report["roc_auc"] is not None:
        lines[0] += f" | ROC AUC {report['roc_auc']:.4f}"
    w = max(5, *(len(k) for k in report["per_class"]))
    lines.append(f"{'class'.ljust(w)}  precision  recall      F1  support")
    for k, v in report["per_class"].items():
        lines.append(f"{k.ljust(w)}  {v['precision']:9.4f}  {v['recall']:6.4f}  {v['f1']:6.4f}  {v['support']:7d}")
    return "\n".join(lines)


def plot_confusion(C, labels: list[str], path) -> None:
    """A PNG of the row-normalised confusion matrix (needs matplotlib, the plot extra)."""
    from bptt.errors import UsageError

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'bptt[plot]'") from None
    import io

    from bptt.training.checkpoint import atomic_write_bytes

    C = np.asarray(C, dtype=np.float64)
    norm = _safe_div(C, C.sum(axis=1, keepdims=True))
    n = len(labels)
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * n + 2), max(3.5, 0.45 * n + 1.5)))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=90)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, label="fraction of the true class")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
