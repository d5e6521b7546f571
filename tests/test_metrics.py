"""Metrics against hand-computed values and brute force."""

import numpy as np
import pytest

from bptt.training import metrics


def test_precision_recall_f1_by_hand():
    y = np.array([0, 0, 1, 1, 1, 2])
    p = np.array([0, 1, 1, 1, 0, 1])
    r = metrics.classification_report(y, p, ["a", "b", "c"])
    assert r["accuracy"] == pytest.approx(3 / 6)
    assert r["confusion"] == [[1, 1, 0], [1, 2, 0], [0, 1, 0]]
    assert r["per_class"]["a"]["precision"] == pytest.approx(1 / 2) and r["per_class"]["a"]["recall"] == pytest.approx(
        1 / 2
    )
    assert r["per_class"]["b"]["precision"] == pytest.approx(2 / 4) and r["per_class"]["b"]["recall"] == pytest.approx(
        2 / 3
    )
    assert r["per_class"]["b"]["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert r["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    f1s = [0.5, 2 * 0.5 * (2 / 3) / (0.5 + 2 / 3), 0.0]
    assert r["macro_f1"] == pytest.approx(np.mean(f1s))


def test_roc_auc_equals_pairwise_count_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) + 0.3 * y, 1)  # many ties
    pos, neg = s[y == 1], s[y == 0]
    brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    assert metrics.roc_auc(y, s) == pytest.approx(brute, rel=1e-12)
    assert metrics.roc_auc(np.ones(3), np.arange(3)) is None


def test_regression_errors():
    r = metrics.regression_report(np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.0, 1.0]))
    assert r["mse"] == pytest.approx((0.25 + 0 + 4) / 3) and r["mae"] == pytest.approx(2.5 / 3)
