"""Initialisers for one recurrent layer's U (H, D), W (H, H), b (H,) and the head.

    "pytorch"    U, W, b ~ uniform(-1/sqrt(H), 1/sqrt(H)), as torch.nn.RNN
                 (b is bias_ih + bias_hh there, so b is the sum of two draws).
    "xavier"     U, W ~ uniform(-sqrt(6/(fan_in+fan_out)), +...) (Glorot & Bengio 2010), b = 0.
    "orthogonal" W a random orthogonal matrix times `scale` (Saxe et al. 2014),
                 U Xavier, b = 0.
    "identity"   W = scale * I (IRNN, Le, Jaitly & Hinton 2015: use with relu),
                 U ~ normal(0, 0.001), b = 0.
    "spectral"   W ~ normal(0, 1/H), then rescaled so that its spectral radius
                 max |eig(W)| is exactly `scale` (the echo-state / Pascanu et
                 al. 2013 recipe; below 1/gamma to start away from explosion),
                 U Xavier, b = 0.

Every draw comes from the numpy Generator passed in, so a seed fixes all.
"""

from __future__ import annotations

import numpy as np

SCHEMES = ("pytorch", "xavier", "orthogonal", "identity", "spectral")


def uniform(rng: np.random.Generator, shape, bound: float, dtype) -> np.ndarray:
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def xavier(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    fan_out, fan_in = shape
    return uniform(rng, shape, np.sqrt(6.0 / (fan_in + fan_out)), dtype)


def orthogonal(rng: np.random.Generator, n: int, scale: float, dtype) -> np.ndarray:
    """A Haar-random orthogonal (n, n) matrix times scale: QR of a Gaussian, signs fixed."""
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    Q *= np.sign(np.diag(R))
    return (scale * Q).astype(dtype)


def spectral_radius_scaled(rng: np.random.Generator, n: int, radius: float, dtype) -> np.ndarray:
    """A Gaussian (n, n) matrix (entries N(0, 1/n)) rescaled to spectral radius `radius`."""
    W = rng.standard_normal((n, n)) / np.sqrt(n)
    return (W * (radius / np.abs(np.linalg.eigvals(W)).max())).astype(dtype)


def recurrent_layer(rng: np.random.Generator, H: int, D: int, scheme: str, scale: float, dtype) -> dict:
    """Initial {"U": (H, D), "W": (H, H), "b": (H,)} for one layer and direction."""
    k = 1.0 / np.sqrt(H)
    if scheme == "pytorch":
        U = uniform(rng, (H, D), k, dtype)
        W = uniform(rng, (H, H), k, dtype)
        b = uniform(rng, (H,), k, dtype) + uniform(rng, (H,), k, dtype)
        return {"U": U, "W": W, "b": b}
    b = np.zeros(H, dtype=dtype)
    if scheme == "xavier":
        return {"U": xavier(rng, (H, D), dtype), "W": xavier(rng, (H, H), dtype), "b": b}
    if scheme == "orthogonal":
        return {"U": xavier(rng, (H, D), dtype), "W": orthogonal(rng, H, scale, dtype), "b": b}
    if scheme == "identity":
        U = (0.001 * rng.standard_normal((H, D))).astype(dtype)
        return {"U": U, "W": (scale * np.eye(H)).astype(dtype), "b": b}
    if scheme == "spectral":
        return {"U": xavier(rng, (H, D), dtype), "W": spectral_radius_scaled(rng, H, scale, dtype), "b": b}
    raise ValueError(f"init: got {scheme!r}, expected one of {', '.join(SCHEMES)}")


def linear(rng: np.random.Generator, K: int, H: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(V (K, H), c (K,)) as torch.nn.Linear: uniform(-1/sqrt(H), 1/sqrt(H))."""
    k = 1.0 / np.sqrt(H)
    return uniform(rng, (K, H), k, dtype), uniform(rng, (K,), k, dtype)
