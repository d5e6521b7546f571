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
(`RNNModel.head_backward`, no recursion through time):

    dL/dtheta = sum_t (dL/dh_t)_direct P_t  (+ (dL/dh_T)_direct P_T for a final-state head)

Cost: W P_{t-1} is H x H x n with n >= H^2, so O(H^4) work per step and
sequence and O(H^3) memory, against BPTT's O(H^2) per step (and O(T H) memory
for the stored states). RTRL is online (nothing stored over time) but only
practical for small networks; here it is a check on BPTT (tests compare
the two in float64 to 1e-9) and `bptt gradcheck --method rtrl`.

Supported: one unidirectional layer, any nonlinearity, head, mode and
pooling, float or token inputs (one-hot or an embedding), masks, loss masks,
h_0, one-to-many. Refused with a ValueError: stacked or bidirectional layers
and per-output horizons.
"""

from __future__ import annotations

import numpy as np

from bptt.layers import activations, elman, recompute


def check_supported(model, horizon=None) -> None:
    """ValueError naming what RTRL (as implemented here) does not cover."""
    if not isinstance(model.cell, elman.Elman):
        raise ValueError(f"rtrl: written out for the Elman cell, got cell={model.cell.name!r}")
    if model.num_layers != 1:
        raise ValueError(f"rtrl: one recurrent layer only, got num_layers={model.num_layers}")
    if model.bidirectional:
        raise ValueError("rtrl: forward mode runs left to right, a bidirectional layer is not supported")
    if horizon is not None:
        raise ValueError("rtrl: computes the full gradient; a per-output horizon is a truncated objective")
    if model.feature_vocab_sizes:
        raise ValueError("rtrl: token inputs with one embedding table only; feature id columns are not supported")


def _check_memory(B: int, H: int, n: int, dtype) -> None:
    """ValueError before allocating when the (B, H, n) sensitivities (three live copies:
    P, the immediate Jacobian, the new P) would not fit in the available memory."""
    from bptt.training import resources

    need = 3 * B * H * n * np.dtype(dtype).itemsize
    have = resources.available_memory()
    if have is not None and need > resources.USABLE_FRACTION * have:
        raise ValueError(
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


def loss_and_grads(model, inputs, targets, mask=None, h0=None, *, cond=None, loss_mask=None, return_state=False):
    """(loss, grads) as `RNNModel.loss_and_grads`, the recurrent gradients by RTRL.

    With return_state=True also {"dh0": (1, B, H)}. Runs in the model's dtype
    (use model.astype(np.float64) to compare with BPTT).
    """
    check_supported(model)
    p, H = model.params, model.hidden_size
    fwd = model.forward(inputs, mask, h0, cond=cond)
    loss, dZ = model.loss(fwd, targets, loss_mask)
    grads, dtop, dhn = model.head_backward(fwd, dZ)
    cache = recompute.full(fwd.caches[0][0])
    Hs, W, U = cache.Hs, p["rnn0.W"], p["rnn0.U"]
    T, B = fwd.T, Hs.shape[1]
    ids = fwd.ids if model.embedding_size is not None else None
    if ids is not None:
        X = p["embed.E"][ids]  # (T, B, Em)
    elif cache.X.dtype.kind in "iu":
        X = np.eye(U.shape[1], dtype=W.dtype)[cache.X]  # one-hot (T, B, V)
    else:
        X = cache.X
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
    fp = activations.derivative(model.nonlinearity, Hs[1:])
    real = None if cache.pad is None else ~cache.pad[:, :, 0]  # (T, B)

    P = np.zeros((B, H, n), dtype=W.dtype)  # dh_0/dtheta
    Ph0 = np.broadcast_to(eye, (B, H, H)).copy()  # dh_t/dh_0, per sequence
    if fwd.cond is not None:
        s = 1.0 - fwd.h0map**2  # (B, H), one layer: h_0 = tanh(Q cond + q)
        C = fwd.cond.shape[1]
        P[:, :, start["h0map.Q"] : start["h0map.Q"] + H * C] = np.einsum("bi,ij,bc->bijc", s, eye, fwd.cond).reshape(
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
        if real is not None:
            keep = ~real[t]
            new[keep], new_h0[keep] = P[keep], Ph0[keep]  # padded step: h_t = h_{t-1}
        P, Ph0 = new, new_h0
        if dtop is not None:
            g = dtop[t]  # (B, H): dL/dh_t from the head at step t
            total += np.einsum("bh,bhn->n", g, P)
            dh0 += np.einsum("bh,bhk->bk", g, Ph0)
    g = dhn[0]  # the final-state head ("last" pooling): h_T is each sequence's last real state
    total += np.einsum("bh,bhn->n", g, P)
    dh0 += np.einsum("bh,bhk->bk", g, Ph0)

    for name, size in blocks:
        grads[name] = total[start[name] : start[name] + size].reshape(p[name].shape)
    grads = {k: grads[k] for k in p}
    if return_state:
        return loss, grads, {"dh0": dh0[None]}
    return loss, grads
