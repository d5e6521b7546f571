"""Convert between torch.nn.RNN (+ nn.Linear head, + nn.Embedding) and bptt.RNNModel.

    torch                                  bptt
    weight_ih_l{k}          (H, D)         rnn{k}.U
    weight_hh_l{k}          (H, H)         rnn{k}.W
    bias_ih_l{k} + bias_hh_l{k}  (H,)      rnn{k}.b     (back: bias_ih = b, bias_hh = 0)
    ..._l{k}_reverse                       rnn{k}_reverse.*
    Linear.weight, .bias    (K, H·dirs)    head.V, head.c
    Embedding.weight        (V, E)         embed.E

Both compute the same function: PyTorch's h_t = tanh(x_t W_ih^T + b_ih + h_{t-1}
W_hh^T + b_hh) is bptt's a_t = U x_t + W h_{t-1} + b with the two biases
summed. torch is optional: it is imported inside the functions.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from bptt.model import RNNModel


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("PyTorch is needed for bptt.interop: pip install torch") from None
    return torch


class TorchModules(NamedTuple):
    rnn: object  # torch.nn.RNN, batch_first=True
    linear: object  # torch.nn.Linear
    embedding: object | None  # torch.nn.Embedding, or None for float inputs


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def from_torch(rnn, linear=None, embedding=None, **model_options) -> RNNModel:
    """A bptt model computing what `rnn` (and `linear`, `embedding`) compute.

    model_options are passed to RNNModel (head, mode, pooling, reduction, ...);
    any that contradict the torch modules raise ValueError naming the option.
    """
    torch = _torch()
    if not isinstance(rnn, torch.nn.RNN):
        raise ValueError(f"rnn: got {type(rnn).__name__}, expected torch.nn.RNN")
    dtype = {torch.float32: "float32", torch.float64: "float64"}.get(rnn.weight_hh_l0.dtype)
    if dtype is None:
        raise ValueError(f"rnn: weights are {rnn.weight_hh_l0.dtype}, expected float32 or float64")
    derived = dict(hidden_size=rnn.hidden_size, num_layers=rnn.num_layers, nonlinearity=rnn.nonlinearity,
                   bias=rnn.bias, bidirectional=rnn.bidirectional, dtype=dtype)  # fmt: skip
    if rnn.num_layers > 1 and rnn.dropout:
        derived["dropout"] = float(rnn.dropout)
    if embedding is not None:
        derived.update(vocab_size=embedding.num_embeddings, embedding_size=embedding.embedding_dim)
        if embedding.embedding_dim != rnn.input_size:
            raise ValueError(f"embedding: embedding_dim={embedding.embedding_dim}, expected rnn.input_size={rnn.input_size}")
    else:
        derived["input_size"] = rnn.input_size
    if linear is not None:
        derived["output_size"] = linear.out_features
        if linear.in_features != rnn.hidden_size * (2 if rnn.bidirectional else 1):
            raise ValueError(f"linear: in_features={linear.in_features}, expected {rnn.hidden_size * (2 if rnn.bidirectional else 1)}")
    for k, v in derived.items():
        if k in model_options and model_options[k] != v:
            raise ValueError(f"{k}: got {model_options[k]!r}, but the torch modules have {v!r}")
    model = RNNModel(**{**model_options, **derived})
    p = model.params
    for layer in range(rnn.num_layers):
        for suffix in ("", "_reverse")[: model.num_directions]:
            name = f"rnn{layer}{suffix}"
            p[f"{name}.U"][...] = _np(getattr(rnn, f"weight_ih_l{layer}{suffix}"))
            p[f"{name}.W"][...] = _np(getattr(rnn, f"weight_hh_l{layer}{suffix}"))
            if rnn.bias:
                b = getattr(rnn, f"bias_ih_l{layer}{suffix}") + getattr(rnn, f"bias_hh_l{layer}{suffix}")
                p[f"{name}.b"][...] = _np(b)
    if linear is not None:
        p["head.V"][...] = _np(linear.weight)
        if linear.bias is not None:
            p["head.c"][...] = _np(linear.bias)
        else:
            p["head.c"][...] = 0
    if embedding is not None:
        p["embed.E"][...] = _np(embedding.weight)
    return model


def to_torch(model: RNNModel) -> TorchModules:
    """torch modules (batch_first=True) computing what `model` computes."""
    torch = _torch()
    if model.nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity: torch.nn.RNN has tanh and relu only, the model uses {model.nonlinearity!r}")
    if model.uses_tokens and model.embedding_size is None:
        raise ValueError("vocab_size without embedding_size: one-hot inputs have no torch.nn.RNN counterpart; "
                         "use an embedding_size, or pass one-hot features with input_size")  # fmt: skip
    dt = {"float32": torch.float32, "float64": torch.float64}[model.dtype]
    D = model.embedding_size or model.input_size
    rnn = torch.nn.RNN(D, model.hidden_size, num_layers=model.num_layers, nonlinearity=model.nonlinearity,
                       bias=model.bias, batch_first=True, dropout=model.dropout if model.num_layers > 1 else 0.0,
                       bidirectional=model.bidirectional, dtype=dt)  # fmt: skip
    p = model.params
    with torch.no_grad():
        for layer in range(model.num_layers):
            for suffix in ("", "_reverse")[: model.num_directions]:
                name = f"rnn{layer}{suffix}"
                getattr(rnn, f"weight_ih_l{layer}{suffix}").copy_(torch.from_numpy(p[f"{name}.U"]))
                getattr(rnn, f"weight_hh_l{layer}{suffix}").copy_(torch.from_numpy(p[f"{name}.W"]))
                if model.bias:
                    getattr(rnn, f"bias_ih_l{layer}{suffix}").copy_(torch.from_numpy(p[f"{name}.b"]))
                    getattr(rnn, f"bias_hh_l{layer}{suffix}").zero_()
        K, F = p["head.V"].shape
        linear = torch.nn.Linear(F, K, dtype=dt)
        linear.weight.copy_(torch.from_numpy(p["head.V"]))
        linear.bias.copy_(torch.from_numpy(p["head.c"]))
        embedding = None
        if model.embedding_size is not None:
            embedding = torch.nn.Embedding(model.vocab_size, model.embedding_size, dtype=dt)
            embedding.weight.copy_(torch.from_numpy(p["embed.E"]))
    return TorchModules(rnn, linear, embedding)
