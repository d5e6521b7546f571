"""A character-level word encoder (Ling et al. 2015; Plank et al. 2016), with its exact backward.

Every word w = c_1..c_n (n its number of characters) becomes a vector from
its spelling: a character embedding, then a recurrent cell run over the
characters left to right and another right to left, and the two final h
states concatenated:

    e_j      = C[c_j]                                   (C: (V_c, D_c) character table)
    s->_j    = cell->(e_j, s->_{j-1}),   s->_0 = 0      j = 1..n
    s<-_j    = cell<-(e_j, s<-_{j+1}),   s<-_{n+1} = 0  j = n..1
    enc(w)   = [h->_n ; h<-_1]                           (2 H_c,)

The cells are any `bptt.layers.cell.Cell` (Elman, LSTM, GRU) run with a mask
over the characters, so padding after a short word never changes its
encoding: the forward cell's state stops at c_n, and the reverse cell starts
at c_n. `RNNModel` concatenates enc(w_t) to the word's embedding row,
x_t = [E[w_t]; E_1[f1_t]; ...; enc(w_t)].

Backward: the model's BPTT ends with dL/dx_t; its last 2 H_c columns are
dL/d enc(w_t) = [dL/dh->_n ; dL/dh<-_1], which are exactly the gradients on
the two cells' final states. Each cell's own BPTT (`Cell.backward` with
dstate_n = (dL/dh_n, 0, ...) and no output gradient) carries them back over
the characters to dL/de_j, and the character table gets their scatter-add,
dL/dC[v] = sum over (word, j) with c_j = v of dL/de_j.

The encoder is computed once per distinct word of a batch (the rows of
unique character ids), only for real tokens (the mask), and scattered to
every token of that word; the backward adds up the token gradients of each
word first (the gather's adjoint). Words of every length are encoded
whole; the character loop runs max n over the batch's distinct words.

Shapes: chars (T, B, C) int ids, 0 = padding after a word's characters;
mask (T, B) bool or None; returns (T, B, 2 H_c), zeros at padded tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bptt.layers import embedding
from bptt.layers.cell import Cell
from bptt.layers.embedding import scatter_add_rows

PAD = 0  # character id of padding
UNK = 1  # character id of a character the vocabulary does not have


@dataclass
class Cache:
    """What backward needs: the selection of real tokens, the distinct words and each direction's cell cache."""

    select: np.ndarray  # (T, B) bool: tokens that were encoded
    inverse: np.ndarray  # (N,) the distinct word of each selected token
    ids: np.ndarray  # (n_max, M) character ids of the M distinct words, time-major
    caches: list  # [forward cache, reverse cache]
    shape: tuple  # (T, B)


def init(cell: Cell, n_chars: int, D: int, H: int, bias: bool, rng, scheme: str, scale: float, dtype) -> dict:
    """Parameters keyed "E", "fwd.<name>", "rev.<name>": C (n_chars, D) ~ N(0, 1), and both cells (input D, hidden H)."""
    params = {"E": rng.standard_normal((n_chars, D)).astype(dtype)}
    for direction in ("fwd", "rev"):
        p = cell.init(D, H, bias, rng, scheme, scale, dtype)
        params.update((f"{direction}.{k}", v) for k, v in p.items())
    return params


def _local(params: dict, direction: str) -> dict:
    n = len(direction) + 1
    return {k[n:]: v for k, v in params.items() if k.startswith(direction + ".")}


def forward(cell: Cell, params: dict, chars: np.ndarray, mask: np.ndarray | None):
    """enc(w_t) for every token: chars (T, B, C) ids, mask (T, B) -> ((T, B, 2H), Cache)."""
    T, B = chars.shape[:2]
    H = params["fwd.W"].shape[1]  # W is (gates * H, H) in every cell
    select = np.ones((T, B), bool) if mask is None else mask.astype(bool)
    rows = chars[select]  # (N, C)
    words, inverse = np.unique(rows, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    lengths = (words != PAD).sum(axis=1)
    n_max = int(lengths.max()) if len(lengths) else 0
    ids = np.ascontiguousarray(words[:, :n_max].T)  # (n_max, M)
    E = params["E"]
    out = np.zeros((T, B, 2 * H), E.dtype)
    cache = Cache(select, inverse, ids, [], (T, B))
    if n_max == 0:  # no token has a character: every encoding is the zero initial state
        return out, cache
    X = embedding.forward(E, ids)  # (n_max, M, D)
    char_mask = ids != PAD
    finals = []
    for d, direction in enumerate(("fwd", "rev")):
        state0 = cell.zero_state(ids.shape[1], H, E.dtype)
        _, state_n, c = cell.forward(_local(params, direction), X, state0, char_mask, reverse=d == 1)
        cache.caches.append(c)
        finals.append(state_n[0])
    out[select] = np.concatenate(finals, axis=1)[inverse]
    return out, cache


def backward(cell: Cell, params: dict, dout: np.ndarray, cache: Cache) -> dict:
    """dL/dC and both cells' gradients from dL/d enc(w_t), dout (T, B, 2H); keyed like `init`'s params."""
    E = params["E"]
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    if not cache.caches:
        return grads
    H = dout.shape[2] // 2
    M = cache.ids.shape[1]
    dwords = scatter_add_rows(cache.inverse, dout[cache.select], M)  # (M, 2H): tokens of a word summed
    dX = None
    for d, direction in enumerate(("fwd", "rev")):
        dh = np.ascontiguousarray(dwords[:, d * H : (d + 1) * H])
        dstate_n = (dh,) + tuple(np.zeros_like(dh) for _ in range(cell.n_states - 1))
        dXd, g, _ = cell.backward(None, dstate_n, cache.caches[d], True, None)
        grads.update((f"{direction}.{k}", v) for k, v in g.items())
        dX = dXd if dX is None else dX + dXd
    grads["E"] = embedding.backward(dX, cache.ids, E.shape[0])
    return grads
