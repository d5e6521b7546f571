"""Convert between torch.nn.RNN (+ nn.Linear head, + nn.Embedding) and bptt.RNNModel.

    torch                                       bptt
    RNN.weight_ih_l{k}             (H, D)       rnn{k}.U
    RNN.weight_hh_l{k}             (H, H)       rnn{k}.W
    RNN.bias_ih_l{k} + bias_hh_l{k} (H,)        rnn{k}.b   (back: bias_ih = b, bias_hh = 0)
    RNN.*_l{k}_reverse                          rnn{k}_reverse.*
    Linear.weight, Linear.bias     (K, H*dirs)  head.V, head.c  (no Linear bias: c = 0)
    Embedding.weight               (V, E)       embed.E

Both compute the same function: torch's h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
is bptt's h_t = f(U x_t + W h_{t-1} + b) with the two biases summed. D is the
input size (E with an embedding); layer k > 0 takes D = H * dirs.

Not covered: a one-to-many model's h0map (h_0 = tanh(Q cond + q)) has no
nn.RNN counterpart; it is torch.tanh(nn.Linear(cond_size, L*H)(cond)) reshaped
(B, L, H) -> (L, B, H), and to_torch leaves it out. An Embedding's padding_idx
(torch zeroes that row's gradient) is not carried over.

torch is optional: it is imported inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from bptt.errors import UsageError
from bptt.model import RNNModel

if TYPE_CHECKING:
    import torch


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("PyTorch is needed for bptt.interop: pip install torch") from None
    return torch


class TorchModules(NamedTuple):
    """What to_torch returns: run embedding (if any), then rnn, then linear."""

    rnn: torch.nn.RNN  # batch_first=True
    linear: torch.nn.Linear  # (K, H * dirs)
    embedding: torch.nn.Embedding | None  # (V, E); None for float feature inputs


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def from_torch(
    rnn: torch.nn.RNN,
    linear: torch.nn.Linear | None = None,
    embedding: torch.nn.Embedding | None = None,
    **model_options,
) -> RNNModel:
    """A bptt model computing what embedding -> rnn -> linear compute.

    rnn: any num_layers, bidirectional, bias, tanh/relu, batch_first either way.
    linear: the head, in_features = H * dirs; None lets RNNModel initialise it
    (then give output_size). embedding: token ids in (vocab_size and
    embedding_size from it), else float features of rnn.input_size.
    The dtype (float32/float64) is the torch weights'. model_options go to
    RNNModel (head, mode, pooling, reduction, ...); an option that contradicts
    the modules raises UsageError naming it.
    """
    torch = _torch()
    if not isinstance(rnn, torch.nn.RNN):
        raise UsageError(f"rnn: got {type(rnn).__name__}, expected torch.nn.RNN")
    tdt = rnn.weight_hh_l0.dtype
    dtype = {torch.float32: "float32", torch.float64: "float64"}.get(tdt)
    if dtype is None:
        raise UsageError(f"rnn: weights are {tdt}, expected float32 or float64")
    dirs = 2 if rnn.bidirectional else 1
    derived = dict(
        hidden_size=rnn.hidden_size,
        num_layers=rnn.num_layers,
        nonlinearity=rnn.nonlinearity,
        bias=rnn.bias,
        bidirectional=rnn.bidirectional,
        dtype=dtype,
    )
    if rnn.num_layers > 1:
        derived["dropout"] = float(rnn.dropout)
    if embedding is not None:
        if not isinstance(embedding, torch.nn.Embedding):
            raise UsageError(f"embedding: got {type(embedding).__name__}, expected torch.nn.Embedding")
        if embedding.max_norm is not None:
            raise UsageError("embedding: max_norm renormalises rows in the forward pass, bptt has no counterpart")
        if embedding.embedding_dim != rnn.input_size:
            got, want = embedding.embedding_dim, rnn.input_size
            raise UsageError(f"embedding: embedding_dim={got}, expected rnn.input_size={want}")
        derived.update(vocab_size=embedding.num_embeddings, embedding_size=embedding.embedding_dim)
    else:
        derived["input_size"] = rnn.input_size
    if linear is not None:
        if not isinstance(linear, torch.nn.Linear):
            raise UsageError(f"linear: got {type(linear).__name__}, expected torch.nn.Linear")
        if linear.in_features != rnn.hidden_size * dirs:
            got, want = linear.in_features, rnn.hidden_size * dirs
            raise UsageError(f"linear: in_features={got}, expected hidden_size * dirs = {want}")
        derived["output_size"] = linear.out_features
    for what, mod in (("linear", linear), ("embedding", embedding)):
        if mod is not None and mod.weight.dtype != tdt:
            raise UsageError(f"{what}: weights are {mod.weight.dtype}, expected {tdt} like the rnn")
    if model_options.get("cell", "elman") != "elman":
        raise UsageError(f"cell: torch.nn.RNN is the Elman cell, got cell={model_options['cell']!r}")
    for k, v in derived.items():
        if k in model_options and model_options[k] != v:
            raise UsageError(f"{k}: got {model_options[k]!r}, but the torch modules have {v!r}")
    model = RNNModel(**{**model_options, **derived})
    p = model.params
    for layer in range(rnn.num_layers):
        for suffix in ("", "_reverse")[:dirs]:
            name = f"rnn{layer}{suffix}"
            p[f"{name}.U"][...] = _np(getattr(rnn, f"weight_ih_l{layer}{suffix}"))
            p[f"{name}.W"][...] = _np(getattr(rnn, f"weight_hh_l{layer}{suffix}"))
            if rnn.bias:
                b = getattr(rnn, f"bias_ih_l{layer}{suffix}") + getattr(rnn, f"bias_hh_l{layer}{suffix}")
                p[f"{name}.b"][...] = _np(b)
    if linear is not None:
        p["head.V"][...] = _np(linear.weight)
        p["head.c"][...] = 0 if linear.bias is None else _np(linear.bias)
    if embedding is not None:
        p["embed.E"][...] = _np(embedding.weight)
    return model


def to_torch(model: RNNModel) -> TorchModules:
    """torch modules computing what `model` computes: rnn (batch_first=True,
    bias_ih = b, bias_hh = 0), linear (K, H * dirs), embedding (V, E) or None.

    Raises UsageError for what nn.RNN cannot express: sigmoid/identity
    nonlinearities and one-hot token inputs (vocab_size without embedding_size).
    """
    torch = _torch()
    if model.config.cell != "elman":
        raise UsageError(f"cell: torch.nn.RNN is the Elman cell, the model uses cell={model.config.cell!r}")
    if model.nonlinearity not in ("tanh", "relu"):
        raise UsageError(f"nonlinearity: torch.nn.RNN has tanh and relu only, the model uses {model.nonlinearity!r}")
    if model.uses_tokens and model.embedding_size is None:
        raise UsageError(
            "vocab_size without embedding_size: one-hot inputs have no torch.nn.RNN counterpart; "
            "use an embedding_size, or pass one-hot features with input_size"
        )
    dt = {"float32": torch.float32, "float64": torch.float64}[model.dtype]
    p = model.params

    def put(param: torch.Tensor, key: str) -> None:
        param.copy_(torch.tensor(p[key]))

    D = model.embedding_size or model.input_size
    rnn = torch.nn.RNN(
        D,
        model.hidden_size,
        num_layers=model.num_layers,
        nonlinearity=model.nonlinearity,
        bias=model.bias,
        batch_first=True,
        dropout=model.dropout if model.num_layers > 1 else 0.0,
        bidirectional=model.bidirectional,
        dtype=dt,
    )
    K, F = p["head.V"].shape
    linear = torch.nn.Linear(F, K, dtype=dt)
    embedding = None
    if model.embedding_size is not None:
        embedding = torch.nn.Embedding(model.vocab_size, model.embedding_size, dtype=dt)
    with torch.no_grad():
        for layer in range(model.num_layers):
            for suffix in ("", "_reverse")[: model.num_directions]:
                name = f"rnn{layer}{suffix}"
                put(getattr(rnn, f"weight_ih_l{layer}{suffix}"), f"{name}.U")
                put(getattr(rnn, f"weight_hh_l{layer}{suffix}"), f"{name}.W")
                if model.bias:
                    put(getattr(rnn, f"bias_ih_l{layer}{suffix}"), f"{name}.b")
                    getattr(rnn, f"bias_hh_l{layer}{suffix}").zero_()
        put(linear.weight, "head.V")
        put(linear.bias, "head.c")
        if embedding is not None:
            put(embedding.weight, "embed.E")
    rnn.train(model.training)
    return TorchModules(rnn, linear, embedding)
