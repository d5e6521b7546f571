"""The rate at which a norm shrinks or grows with the lag: ||dh_t/dh_k|| ~ r^(t - k).

A least-squares line through (lag, log norm) has slope log r; r < 1 is a
vanishing gradient, r > 1 an exploding one. Shared by the Elman and the gated
cells' diagnostics.
"""

from __future__ import annotations

import math

import numpy as np


def fit_rate(lag: np.ndarray, log_norm: np.ndarray) -> float | None:
    """exp(slope) of a least-squares line through (lag, log norm), finite points only: the factor per step."""
    ok = np.isfinite(log_norm)
    if ok.sum() < 2:
        return None
    slope = np.polyfit(lag[ok].astype(float), log_norm[ok], 1)[0]
    return float(math.exp(slope))
