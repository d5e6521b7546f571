"""Real-time recurrent learning (Williams & Zipser 1989): the exact gradient, in forward mode.

A second, independent way to compute dL/dtheta of a one-layer Elman RNN.
Instead of sweeping back through time, carry the sensitivities of the state
to every recurrent parameter forward with it:

    P_t = dh_t/dtheta    (H x n for each sequence; n = number of parameters)
    P_t = diag(f'(a_t)) (W P_{t-1} + I_t)            (P_t = P_{t-1} on a padded step)

where I_t = da_t/dtheta with h_{t-1} held fixed, block by block:

    da_t/dU[i, (j, d)] = [i = j] x_{t,d}     da_t/dW[i, (j, l)] = [i = j] h_{t-1,l}
    da_t/db[i, j]      = [i = j]             da_t/dE[i, (v, e)] = U[i, e] [id_t = v]  (embedding)

and P_0 = dh_0/dtheta: the identity for a given h_0 (so dL/dh_0 comes out
too), diag(1 - h_0^2) (cond, 1) for the one-to-many map h_0 = tanh(Q cond + q).
The loss then needs only the gradient the head puts on each h_t directly
(no recursion through time):

    dL/dtheta = sum_t (dL/dh_t)_direct P_t  (+ (dL/dh_T)_direct P_T for a final-state head)

Cost: W P_{t-1} is H x H x n with n >= H^2, so O(H^4) work per step and
sequence and O(H^3) memory, against BPTT's O(H^2) per step (and O(T H) memory
for the stored states). RTRL is online (nothing stored over time) but only
practical for small networks; here it is a check on BPTT (tests compare
the two in float64 to 1e-9) and `bptt gradcheck --method rtrl`.

Independent of BPTT: this module runs its own forward pass (h_t, and f'(a_t)
from a_t with f and f' written out here), its own head, pooling, loss and
dL/dz (from the heads' definitions, not `bptt.layers.losses`), its own
reduction weights and head gradients, and its own recursion through time. It
shares with `RNNModel` only the parameters and the checking and time-major
layout of the inputs and targets (`RNNModel._prepare`, `_prepare_targets`).
So a bug in the model's forward pass, f', loss gradient, head or sweep makes
the two disagree (tests/test_rtrl.py).

Supported: one unidirectional layer, any nonlinearity, head, mode and
pooling, float or token inputs (one-hot or an embedding), masks, loss masks,
h_0, one-to-many. Refused with a ValueError: stacked or bidirectional layers,
per-output horizons, and input / output / weight dropout in training mode.
"""

from __future__ import annotations

import numpy as np

from bptt import checks as validate
from bptt.errors import UsageError
from bptt.layers import elman


def check_supported(model, horizon=None) -> None:
    """UsageError naming what RTRL (as implemented here) does not cover."""
    if not isinstance(model.cell, elman.Elman):
        raise UsageError(f"rtrl: written out for the Elman cell, got cell={model.cell.name!r}")
    if model.num_layers != 1:
        raise UsageError(f"rtrl: one recurrent layer only, got num_layers={model.num_layers}")
    if model.bidirectional:
        raise UsageError("rtrl: forward mode runs left to right, a bidirectional layer is not supported")
    if horizon is not None:
        raise UsageError("rtrl: computes the full gradient; a per-output horizon is a truncated objective")
    if model.feature_vocab_sizes:
        raise UsageError("rtrl: token inputs with one embedding table only; feature id columns are not supported")
    if model.mode == "many-to-one" and "," in model.pooling:
        raise UsageError(f"rtrl: one pooling at a time, got pooling={model.pooling!r}")
    if model.training and (model.input_dropout or model.output_dropout or model.weight_dropout):
        raise UsageError(
            "rtrl: written out without dropout masks; expected input_dropout, output_dropout and weight_dropout 0 "
            "(or the model in evaluation mode)"
        )


def _check_memory(B: int, H: int, n: int, dtype) -> None:
    """UsageError before allocating when the (B, H, n) sensitivities (three live copies:
    P, the immediate Jacobian, the new P) would not fit in the available memory."""
    from bptt.training import resources

    need = 3 * B * H * n * np.dtype(dtype).itemsize
    have = resources.available_memory()
    if have is not None and need > resources.USABLE_FRACTION * have:
        raise UsageError(
            f"rtrl: the sensitivities dh_t/dtheta need {need / 2**30:.1f} GiB ({B} x {H} x {n:,}), "
            f"{have / 2**30:.1f} GiB is available: RTRL is for small networks"
        )


def _blocks(model, D: int) -> list[tuple[str, int]]:
    """(name, size) of the columns of P: the layer's U, W, b, then the embedding and the h_0 map."""
    H, p = model.hidden_size, model.params
    out = [("rnn0.U", H * D), ("rnn0.W", H * H)]
    if model.bias:
        out.append(("rnn0.b", H))
    if model.embedding_size is not None:
        out.append(("embed.E", p["embed.E"].size))
    if model.mode == "one-to-many":
        out += [("h0map.Q", p["h0map.Q"].size), ("h0map.q", H)]
    return out


# f and f' written out here, not taken from bptt.layers.activations: f'(a) from a itself
_F = {
    "tanh": (np.tanh, lambda a: 1.0 - np.tanh(a) ** 2),
    "relu": (lambda a: np.maximum(a, 0.0), lambda a: (a > 0).astype(a.dtype)),
    "sigmoid": (lambda a: 0.5 * (1.0 + np.tanh(0.5 * a)), lambda a: 0.25 * (1.0 - np.tanh(0.5 * a) ** 2)),
    "identity": (lambda a: a, np.ones_like),
}


def _forward(model, X, real, h0):
    """h_t = f(U x_t + W h_{t-1} + b), h_t = h_{t-1} on padded steps.

    X (T, B, D) floats, real (T, B) bool, h0 (B, H). Returns (Hs (T+1, B, H) with
    Hs[0] = h_0, fp (T, B, H) = f'(a_t))."""
    p = model.params
    f, df = _F[model.nonlinearity]
    T, B = X.shape[:2]
    Hs = np.empty((T + 1, B, model.hidden_size), dtype=p["rnn0.W"].dtype)
    Hs[0] = h0
    fp = np.empty_like(Hs[1:])
    for t in range(T):
        a = X[t] @ p["rnn0.U"].T + Hs[t] @ p["rnn0.W"].T
        if model.bias:
            a = a + p["rnn0.b"]
        Hs[t + 1] = np.where(real[t][:, None], f(a), Hs[t])
        fp[t] = df(a)
    return Hs, fp


def _loss_rows(head: str, Z: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row loss L_n and dL_n/dz_n for rows Z (N, K), from the heads' definitions:
    softmax + cross-entropy, sigmoid + binary cross-entropy, identity + squared error (no 1/2)."""
    if head == "softmax":
        shifted = Z - Z.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(shifted).sum(axis=1))
        rows = np.arange(len(Z))
        dZ = np.exp(shifted - log_norm[:, None])
        dZ[rows, Y] -= 1.0
        return log_norm - shifted[rows, Y], dZ
    if head == "sigmoid":
        y_hat = 0.5 * (1.0 + np.tanh(0.5 * Z))
        return (np.logaddexp(0.0, Z) - Y * Z).sum(axis=1), y_hat - Y
    return ((Z - Y) ** 2).sum(axis=1), 2.0 * (Z - Y)


def _head(model, Hs, real, targets, loss_mask):
    """The head and its loss on the states Hs: (loss, {"head.V", "head.c"}, dL/dh_t from the
    head on every step (T, B, H), dL/dh_T on the final state (B, H))."""
    p, K, head = model.params, model.output_size, model.head
    V, c = p[model.head_key], p["head.c"]  # V is E itself with tie_weights
    T, B = real.shape
    H = Hs[1:]
    seq = model.mode in ("many-to-many", "one-to-many")
    dtop, dlast = np.zeros_like(H), np.zeros_like(Hs[0])
    if seq:
        Y = model._prepare_targets(targets, (B, T))
        Y = np.swapaxes(Y, 0, 1)  # (T, B[, K]), time-major as H
        terms = real.copy()
        if loss_mask is not None:
            lm = validate.array("loss_mask", loss_mask, (2,), "bool").astype(bool)
            validate.shape("loss_mask", lm, (B, T))
            terms &= lm.T
        feat = H.reshape(T * B, -1)
    else:
        if loss_mask is not None:
            raise UsageError(f"loss_mask: only for sequence outputs, got mode={model.mode!r}")
        Y = model._prepare_targets(targets, (B,))
        terms = np.ones(B, bool)
        kind = "last" if model.mode == "one-to-one" else model.pooling
        if kind == "last":
            feat = Hs[T]
        elif kind == "mean":
            feat = (H * real[:, :, None]).sum(axis=0) / real.sum(axis=0)[:, None]
        else:
            masked = np.where(real[:, :, None], H, -np.inf)
            arg = masked.argmax(axis=0)  # (B, H): the step of each unit's maximum
            feat = np.take_along_axis(H, arg[None], axis=0)[0]
    if head == "softmax":
        terms = terms & (Y != model.ignore_index)
        Y = np.where(terms, Y, 0)
    Zf = feat @ V.T + c
    Yf = Y.reshape(-1) if head == "softmax" else Y.reshape(len(Zf), K).astype(Zf.dtype)
    per, dZ = _loss_rows(head, Zf, Yf)
    w = terms.reshape(-1).astype(Zf.dtype)
    if model.reduction == "sum-over-time":
        w /= B
    elif model.reduction == "mean":
        w /= max(int(terms.sum()) * (1 if head == "softmax" else K), 1)
    loss = float(np.dot(w, per))
    dZ *= w[:, None]
    grads = {"head.V": dZ.T @ feat, "head.c": dZ.sum(axis=0)}
    dfeat = dZ @ V
    if seq:
        dtop = dfeat.reshape(T, B, -1)
    elif kind == "last":
        dlast = dfeat
    elif kind == "mean":
        dtop = real[:, :, None] * (dfeat / real.sum(axis=0)[:, None])[None]
    else:
        np.put_along_axis(dtop, arg[None], dfeat[None], axis=0)
    return loss, grads, dtop, dlast


def loss_and_grads(model, inputs, targets, mask=None, h0=None, *, cond=None, loss_mask=None, return_state=False):
    """(loss, grads) as `RNNModel.loss_and_grads`, every gradient by RTRL.

    With return_state=True also {"dh0": (1, B, H)}. Runs in the model's dtype
    (use model.astype(np.float64) to compare with BPTT).
    """
    check_supported(model)
    p, H = model.params, model.hidden_size
    X, m, h0, cond = model._prepare(inputs, mask, h0, cond)  # validation and time-major layout only
    W, U = p["rnn0.W"], p["rnn0.U"]
    T, B = X.shape[0], X.shape[1]
    real = np.ones((T, B), bool) if m is None else m
    ids = X if model.embedding_size is not None else None
    if ids is not None:
        X = p["embed.E"][ids]  # (T, B, Em)
    elif X.dtype.kind in "iu":
        X = np.eye(U.shape[1], dtype=W.dtype)[X]  # one-hot (T, B, V)
    h0map = None
    if cond is not None:
        h0map = np.tanh(cond @ p["h0map.Q"].T + p["h0map.q"])  # (B, H), one layer
        h0 = h0map
    else:
        h0 = np.zeros((B, H), W.dtype) if h0 is None else h0[0]
    Hs, fp = _forward(model, X, real, h0)
    loss, grads, dtop, dhn = _head(model, Hs, real, targets, loss_mask)
    D = X.shape[2]
    blocks = _blocks(model, D)
    n = sum(size for _, size in blocks)
    _check_memory(B, H, n, W.dtype)
    start = {}
    col = 0
    for name, size in blocks:
        start[name] = col
        col += size
    eye = np.eye(H, dtype=W.dtype)

    P = np.zeros((B, H, n), dtype=W.dtype)  # dh_0/dtheta
    Ph0 = np.broadcast_to(eye, (B, H, H)).copy()  # dh_t/dh_0, per sequence
    if h0map is not None:
        s = 1.0 - h0map**2  # (B, H)
        C = cond.shape[1]
        P[:, :, start["h0map.Q"] : start["h0map.Q"] + H * C] = np.einsum("bi,ij,bc->bijc", s, eye, cond).reshape(
            B, H, H * C
        )
        P[:, :, start["h0map.q"] : start["h0map.q"] + H] = s[:, :, None] * eye
    total = np.zeros(n, dtype=W.dtype)
    dh0 = np.zeros((B, H), dtype=W.dtype)

    for t in range(T):
        imm = np.zeros((B, H, n), dtype=W.dtype)  # I_t = da_t/dtheta at fixed h_{t-1}
        c = start["rnn0.U"]
        imm[:, :, c : c + H * D] = np.einsum("ij,bd->bijd", eye, X[t]).reshape(B, H, H * D)
        c = start["rnn0.W"]
        imm[:, :, c : c + H * H] = np.einsum("ij,bl->bijl", eye, Hs[t]).reshape(B, H, H * H)
        if model.bias:
            c = start["rnn0.b"]
            imm[:, :, c : c + H] = eye
        if ids is not None:
            Em = model.embedding_size
            c = start["embed.E"]
            for b in range(B):  # da_t/dE[:, (id, e)] = U[:, e]
                v = ids[t, b]
                imm[b, :, c + v * Em : c + (v + 1) * Em] += U
        new = fp[t][:, :, None] * (np.einsum("ij,bjn->bin", W, P) + imm)
        new_h0 = fp[t][:, :, None] * np.einsum("ij,bjk->bik", W, Ph0)
        keep = ~real[t]
        new[keep], new_h0[keep] = P[keep], Ph0[keep]  # padded step: h_t = h_{t-1}
        P, Ph0 = new, new_h0
        g = dtop[t]  # (B, H): dL/dh_t from the head at step t
        total += np.einsum("bh,bhn->n", g, P)
        dh0 += np.einsum("bh,bhk->bk", g, Ph0)
    # the final-state head ("last" pooling): h_T is each sequence's last real state
    total += np.einsum("bh,bhn->n", dhn, P)
    dh0 += np.einsum("bh,bhk->bk", dhn, Ph0)

    for name, size in blocks:
        grads[name] = total[start[name] : start[name] + size].reshape(p[name].shape)
    if model.tie_weights:  # E is also the head's V: its gradient is the sum of both uses
        grads["embed.E"] = grads["embed.E"] + grads.pop("head.V")
    grads = {k: grads[k] for k in p}
    if return_state:
        return loss, grads, {"dh0": dh0[None]}
    return loss, grads
