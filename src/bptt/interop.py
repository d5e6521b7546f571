"""Convert between torch.nn.RNN / nn.LSTM / nn.GRU (+ nn.Linear head, + nn.Embedding) and bptt.RNNModel.

    torch                                       bptt
    RNN.weight_ih_l{k}             (H, D)       rnn{k}.U
    RNN.weight_hh_l{k}             (H, H)       rnn{k}.W
    RNN.bias_ih_l{k} + bias_hh_l{k} (H,)        rnn{k}.b   (back: bias_ih = b, bias_hh = 0)
    LSTM.weight_ih_l{k}           (4H, D)       rnn{k}.U   gates i, f, g, o in both (cell="lstm")
    LSTM.weight_hh_l{k}           (4H, H)       rnn{k}.W
    LSTM.bias_ih_l{k} + bias_hh_l{k} (4H,)      rnn{k}.b   (back: bias_ih = b, bias_hh = 0)
    GRU.weight_ih_l{k}            (3H, D)       rnn{k}.U   gates r, z, n in both (cell="gru")
    GRU.weight_hh_l{k}            (3H, H)       rnn{k}.W
    GRU.bias_ih_l{k} + (bias_hh_l{k}[:2H], 0)   rnn{k}.b   (back: bias_ih = b, bias_hh = (0, 0, bn))
    GRU.bias_hh_l{k}[2H:]          (H,)         rnn{k}.bn  (b_hn sits inside r * (W_n h + b_hn))
    *.*_l{k}_reverse                            rnn{k}_reverse.*
    Linear.weight, Linear.bias     (K, H*dirs)  head.V, head.c  (no Linear bias: c = 0)
    Embedding.weight               (V, E)       embed.E
    linear.weight = embedding.weight            tie_weights=True: embed.E alone, no head.V
                                                (Press & Wolf 2017; the Parameter is shared both ways)

Each pair computes the same function: torch's h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
is bptt's h_t = f(U x_t + W h_{t-1} + b) with the two biases summed, and the
gated cells are torch's own equations (`bptt.layers.lstm`, `bptt.layers.gru`).
D is the input size (E with an embedding); layer k > 0 takes D = H * dirs.

Not covered: a one-to-many model's h0map (h_0 = tanh(Q cond + q)) has no
nn.RNN counterpart; it is torch.tanh(nn.Linear(cond_size, L*H)(cond)) reshaped
(B, L, H) -> (L, B, H), and to_torch leaves it out. An Embedding's padding_idx
(torch zeroes that row's gradient) is not carried over, nor an LSTM's proj_size
(refused).

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

    rnn: torch.nn.RNN | torch.nn.LSTM | torch.nn.GRU  # batch_first=True
    linear: torch.nn.Linear  # (K, H * dirs)
    embedding: torch.nn.Embedding | None  # (V, E); None for float feature inputs


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _cell_of(torch, rnn) -> str:
    """The bptt cell of a torch recurrent module (its exact class: nn.RNN, nn.LSTM or nn.GRU)."""
    cells = {torch.nn.RNN: "elman", torch.nn.LSTM: "lstm", torch.nn.GRU: "gru"}
    if type(rnn) not in cells:
        raise UsageError(f"rnn: got {type(rnn).__name__}, expected torch.nn.RNN, nn.LSTM or nn.GRU")
    if getattr(rnn, "proj_size", 0):
        raise UsageError(f"rnn: an LSTM with proj_size={rnn.proj_size} has no bptt counterpart, expected 0")
    return cells[type(rnn)]


def from_torch(
    rnn: torch.nn.RNN | torch.nn.LSTM | torch.nn.GRU,
    linear: torch.nn.Linear | None = None,
    embedding: torch.nn.Embedding | None = None,
    **model_options,
) -> RNNModel:
    """A bptt model computing what embedding -> rnn -> linear compute.

    rnn: nn.RNN (tanh/relu), nn.LSTM (no proj_size) or nn.GRU (the model's cell follows),
    any num_layers, bidirectional, bias, batch_first either way.
    linear: the head, in_features = H * dirs; None lets RNNModel initialise it
    (then give output_size). embedding: token ids in (vocab_size and
    embedding_size from it), else float features of rnn.input_size.
    The dtype (float32/float64) is the torch weights'. model_options go to
    RNNModel (head, mode, pooling, reduction, ...); an option that contradicts
    the modules raises UsageError naming it.
    """
    torch = _torch()
    cell = _cell_of(torch, rnn)
    tdt = rnn.weight_hh_l0.dtype
    dtype = {torch.float32: "float32", torch.float64: "float64"}.get(tdt)
    if dtype is None:
        raise UsageError(f"rnn: weights are {tdt}, expected float32 or float64")
    dirs = 2 if rnn.bidirectional else 1
    derived = dict(
        cell=cell,
        hidden_size=rnn.hidden_size,
        num_layers=rnn.num_layers,
        nonlinearity=rnn.nonlinearity if cell == "elman" else "tanh",
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
        if embedding is not None:
            derived["tie_weights"] = linear.weight is embedding.weight
    for what, mod in (("linear", linear), ("embedding", embedding)):
        if mod is not None and mod.weight.dtype != tdt:
            raise UsageError(f"{what}: weights are {mod.weight.dtype}, expected {tdt} like the rnn")
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
                b_ih = _np(getattr(rnn, f"bias_ih_l{layer}{suffix}"))
                b_hh = _np(getattr(rnn, f"bias_hh_l{layer}{suffix}"))
                if cell == "gru":  # b_hn stays apart: the reset gate multiplies it
                    H = rnn.hidden_size
                    b_ih[: 2 * H] += b_hh[: 2 * H]
                    p[f"{name}.b"][...] = b_ih
                    p[f"{name}.bn"][...] = b_hh[2 * H :]
                else:
                    p[f"{name}.b"][...] = b_ih + b_hh
    if linear is not None:
        if not model.tie_weights:
            p["head.V"][...] = _np(linear.weight)
        p["head.c"][...] = 0 if linear.bias is None else _np(linear.bias)
    if embedding is not None:
        p["embed.E"][...] = _np(embedding.weight)
    return model


def to_torch(model: RNNModel) -> TorchModules:
    """torch modules computing what `model` computes: rnn (nn.RNN, nn.LSTM or nn.GRU after the
    model's cell; batch_first=True, bias_ih = b, bias_hh = 0, for the GRU bias_hh = (0, 0, bn)),
    linear (K, H * dirs), embedding (V, E) or None; for a model with tie_weights, linear.weight is
    embedding.weight (one Parameter, as torch's word_language_model ties them).

    Raises UsageError for what torch cannot express: sigmoid/identity
    nonlinearities, a cell torch does not have, and one-hot token inputs
    (vocab_size without embedding_size).
    """
    torch = _torch()
    modules = {"elman": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
    if model.char_hidden_size is not None:
        raise UsageError("char_hidden_size: a model with a character encoder has no torch conversion yet")
    if model.cell.name not in modules:
        raise UsageError(f"cell: torch has no counterpart of the {model.cell.name!r} cell, expected elman, lstm or gru")
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
    extra = {"nonlinearity": model.nonlinearity} if model.cell.name == "elman" else {}
    rnn = modules[model.cell.name](
        D,
        model.hidden_size,
        num_layers=model.num_layers,
        **extra,
        bias=model.bias,
        batch_first=True,
        dropout=model.dropout if model.num_layers > 1 else 0.0,
        bidirectional=model.bidirectional,
        dtype=dt,
    )
    K, F = p[model.head_key].shape
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
                    b_hh = getattr(rnn, f"bias_hh_l{layer}{suffix}")
                    b_hh.zero_()
                    if model.cell.name == "gru":
                        put(b_hh[2 * model.hidden_size :], f"{name}.bn")
        put(linear.bias, "head.c")
        if embedding is not None:
            put(embedding.weight, "embed.E")
        if model.tie_weights:
            linear.weight = embedding.weight
        else:
            put(linear.weight, "head.V")
    rnn.train(model.training)
    return TorchModules(rnn, linear, embedding)
