"""Export a trained RNNModel to ONNX: the function `RNNModel.predict` computes, runnable
without bptt or NumPy (onnxruntime, or any ONNX runtime).

The graph computes, batch-first as predict does (docs/deployment.md names every
input and output):

    x_t   = [E[id_t]; E_1[f1_t]; ...] (Gather), the column U[:, id_t] (one-hot ids), or features;
            with a character encoder [...; h->_n; h<-_1], its two cells run over each token's
            characters (input chars, 0 after the last one) as one more bidirectional layer
    h^l_t = cell(h^{l-1}_t, state^l_{t-1})                each layer, each direction; Elman:
            f(U^l h^{l-1}_t + W^l h^l_{t-1} + b^l), or an LSTM or GRU (bptt.layers.lstm, gru)
    z     = V h^L_t + c on every step, or V pool(h^L) + c  (many-to-one: last | mean | max)
    y^    = g(z)  (softmax | sigmoid | identity), zero at padded steps of a sequence output

with the same padding rule as bptt: a step at or past sequence_lens[b] leaves the
state alone, so hn holds each sequence's state after its own last real step and a
reverse direction starts there.

A recurrent layer becomes one of two things (`recurrence`):

    "op"    ONNX's own recurrent operator, in its documented layout. Elman is the RNN
            operator: W = U (H, D), R = W (H, H), B = [b; 0] (2H,), f = Tanh | Relu |
            Sigmoid, and identity as Affine(alpha=1, beta=0) (an optional activation
            of the standard; onnxruntime has it). LSTM: bptt's gate blocks i, f, g, o
            reordered to ONNX's i, o, f, c, B = [b; 0]. GRU: r, z, n reordered to z, r, h,
            linear_before_reset=1 (torch's GRU), B = [b; (0, 0, bn)]. The default for
            float32 models.
    "scan"  a Scan over one step of the cell, state_t = where(t < len, step(a_t, state_{t-1}),
            state_{t-1}) with a_t = U x_t + b computed for every step before it.
            onnxruntime has no float64 kernel for RNN/LSTM/GRU, so this is the default
            (and the only choice) for float64 models.

Each cell maps to ONNX through small functions, one line per cell in OP_LAYOUTS,
FROM_OP, SCAN_STEPS and N_STATES; a cell without them is refused in one line
before anything is written. onnx is imported inside the functions: `import bptt`
never needs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bptt.errors import BpttError, UsageError
from bptt.model import SEQUENCE_MODES, RNNModel

OPSET = 17
RECURRENCES = ("op", "scan")
STATE_PARTS = ("h", "c")  # a cell's state: (h,) or (h, c); inputs h0, c0 and outputs hn, cn
NO_LENGTH = np.iinfo(np.int64).max  # the default sequence_lens: every sequence runs to the end


def _onnx():
    try:
        import onnx
    except ImportError:
        raise BpttError("the onnx package is needed to export: pip install 'bptt[onnx]'") from None
    return onnx


# ---- per-cell maps ------------------------------------------------------------

# ONNX RNN op activations for bptt's nonlinearities: (name, alpha, beta)
_OP_ACTIVATIONS = {
    "tanh": ("Tanh", None, None),
    "relu": ("Relu", None, None),
    "sigmoid": ("Sigmoid", None, None),
    "identity": ("Affine", 1.0, 0.0),
}
_SCAN_ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid", "identity": "Identity"}


def _elman_op(model: RNNModel, name: str) -> dict:
    """One direction of an Elman layer as ONNX RNN inputs: W (H, D), R (H, H), B (2H,) or None."""
    p, H = model.params, model.hidden_size
    b = p.get(f"{name}.b")
    act, alpha, beta = _OP_ACTIVATIONS[model.nonlinearity]
    attrs = {"activations": [act]}
    if alpha is not None:
        attrs["activation_alpha"], attrs["activation_beta"] = [alpha], [beta]
    return {
        "op": "RNN",
        "W": p[f"{name}.U"],
        "R": p[f"{name}.W"],
        "B": None if b is None else np.concatenate([b, np.zeros(H, b.dtype)]),
        "attrs": attrs,
    }


def _elman_step(g: _Graph, model: RNNModel, name: str, a_t: str, state: list[str]) -> list[str]:
    """The body of one Elman step: h_t = f(a_t + h_{t-1} W^T), a_t = U x_t + b given."""
    WT = g.const(np.ascontiguousarray(model.params[f"{name}.W"].T), f"{name}.W_T")
    s = g.op("Add", a_t, g.op("MatMul", state[0], WT))
    return [g.op(_SCAN_ACTIVATIONS[model.nonlinearity], s)]


def _elman_from_op(W: np.ndarray, R: np.ndarray, B: np.ndarray | None) -> dict[str, np.ndarray]:
    """The inverse of _elman_op for one direction: U = W, W = R, b = Wb + Rb."""
    params = {"U": W, "W": R}
    if B is not None:
        H = R.shape[0]
        params["b"] = B[:H] + B[H:]
    return params


def _blocks(a: np.ndarray, order: tuple[int, ...], H: int) -> np.ndarray:
    """Row blocks of H (axis 0) of a in the given order."""
    return np.concatenate([a[k * H : (k + 1) * H] for k in order], axis=0)


def _lstm_op(model: RNNModel, name: str) -> dict:
    """LSTM: bptt's gate blocks i, f, g, o -> ONNX's i, o, f, c; B = [b; 0]."""
    p, H = model.params, model.hidden_size
    b = p.get(f"{name}.b")
    order = (0, 3, 1, 2)
    return {
        "op": "LSTM",
        "W": _blocks(p[f"{name}.U"], order, H),
        "R": _blocks(p[f"{name}.W"], order, H),
        "B": None if b is None else np.concatenate([_blocks(b, order, H), np.zeros(4 * H, b.dtype)]),
        "attrs": {},
    }


def _lstm_from_op(W: np.ndarray, R: np.ndarray, B: np.ndarray | None) -> dict[str, np.ndarray]:
    """The inverse of _lstm_op for one direction."""
    H = R.shape[1]
    order = (0, 2, 3, 1)  # ONNX i, o, f, c -> bptt i, f, g, o
    params = {"U": _blocks(W, order, H), "W": _blocks(R, order, H)}
    if B is not None:
        params["b"] = _blocks(B[: 4 * H] + B[4 * H :], order, H)
    return params


def _lstm_step(g: _Graph, model: RNNModel, name: str, a_t: str, state: list[str]) -> list[str]:
    """i, f, o = sigma, g = tanh of a_t + h W^T (blocks i, f, g, o); c = f c + i g; h = o tanh(c)."""
    H = model.hidden_size
    WT = g.const(np.ascontiguousarray(model.params[f"{name}.W"].T), f"{name}.W_T")
    s = g.op("Add", a_t, g.op("MatMul", state[0], WT))
    i, f, gg, o = g.op("Split", s, g.ints([H] * 4), axis=1, outputs=4)
    i, f, o, gg = g.op("Sigmoid", i), g.op("Sigmoid", f), g.op("Sigmoid", o), g.op("Tanh", gg)
    c = g.op("Add", g.op("Mul", f, state[1]), g.op("Mul", i, gg))
    return [g.op("Mul", o, g.op("Tanh", c)), c]


def _gru_op(model: RNNModel, name: str) -> dict:
    """GRU: bptt's r, z, n -> ONNX's z, r, h with linear_before_reset=1; Wb = b, Rb = (0, 0, bn)."""
    p, H = model.params, model.hidden_size
    b, bn = p.get(f"{name}.b"), p.get(f"{name}.bn")
    order = (1, 0, 2)
    B = None
    if b is not None:
        B = np.concatenate([_blocks(b, order, H), np.zeros(2 * H, b.dtype), bn])
    return {
        "op": "GRU",
        "W": _blocks(p[f"{name}.U"], order, H),
        "R": _blocks(p[f"{name}.W"], order, H),
        "B": B,
        "attrs": {"linear_before_reset": 1},
    }


def _gru_from_op(W: np.ndarray, R: np.ndarray, B: np.ndarray | None) -> dict[str, np.ndarray]:
    """The inverse of _gru_op for one direction: b = Wb + (Rb_r, Rb_z, 0) in bptt's order, bn = Rb_h."""
    H = R.shape[1]
    order = (1, 0, 2)  # ONNX z, r, h -> bptt r, z, n (the same swap)
    params = {"U": _blocks(W, order, H), "W": _blocks(R, order, H)}
    if B is not None:
        Wb, Rb = B[: 3 * H], B[3 * H :]
        params["b"] = _blocks(Wb + np.concatenate([Rb[: 2 * H], np.zeros(H, B.dtype)]), order, H)
        params["bn"] = Rb[2 * H :]
    return params


def _gru_step(g: _Graph, model: RNNModel, name: str, a_t: str, state: list[str]) -> list[str]:
    """r, z = sigma(a + h W^T), n = tanh(a_n + r (W_n h + bn)), h = (1 - z) n + z h."""
    H = model.hidden_size
    WT = g.const(np.ascontiguousarray(model.params[f"{name}.W"].T), f"{name}.W_T")
    q = g.op("MatMul", state[0], WT)
    ar, az, an = g.op("Split", a_t, g.ints([H] * 3), axis=1, outputs=3)
    qr, qz, qn = g.op("Split", q, g.ints([H] * 3), axis=1, outputs=3)
    if f"{name}.bn" in model.params:
        qn = g.op("Add", qn, g.const(model.params[f"{name}.bn"], f"{name}.bn"))
    r, z = g.op("Sigmoid", g.op("Add", ar, qr)), g.op("Sigmoid", g.op("Add", az, qz))
    n = g.op("Tanh", g.op("Add", an, g.op("Mul", r, qn)))
    h = g.op("Add", n, g.op("Mul", z, g.op("Sub", state[0], n)))  # (1 - z) n + z h = n + z (h - n)
    return [h]


# one line per cell: how its direction becomes an ONNX operator, the inverse, one Scan step, its state parts
OP_LAYOUTS = {"elman": _elman_op, "lstm": _lstm_op, "gru": _gru_op}
FROM_OP = {"elman": _elman_from_op, "lstm": _lstm_from_op, "gru": _gru_from_op}
SCAN_STEPS = {"elman": _elman_step, "lstm": _lstm_step, "gru": _gru_step}
N_STATES = {"elman": 1, "lstm": 2, "gru": 1}


def cell_of(model: RNNModel) -> str:
    """The registry name of the model's cell (a model from before the cells is Elman)."""
    cell = getattr(model, "cell", None)  # a bptt.layers.cell.Cell
    return getattr(cell, "name", cell) or "elman"


def config_of(model: RNNModel) -> dict:
    """The model's options as plain JSON values (what RNNModel(**options) rebuilds)."""
    config = model.config
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def check_exportable(model: RNNModel, recurrence: str | None = None) -> str:
    """The recurrence to use ("op" or "scan"); UsageError in one line for what cannot be exported."""
    cell = cell_of(model)
    if recurrence is None:
        recurrence = "scan" if model.dtype == "float64" else "op"
    if recurrence not in RECURRENCES:
        raise UsageError(f"recurrence: got {recurrence!r}, expected one of {', '.join(RECURRENCES)}")
    cells = [cell, cell_of(_CharLayer(model))] if _has_chars(model) else [cell]  # the encoder's cell may differ
    for c in cells:
        if c not in OP_LAYOUTS or c not in SCAN_STEPS:
            raise UsageError(f"export: a {c!r} cell has no ONNX mapping yet, expected one of {', '.join(OP_LAYOUTS)}")
    if recurrence == "op" and model.dtype != "float32":
        raise UsageError(
            f"recurrence 'op': onnxruntime runs RNN/LSTM/GRU in float32 only, the model is {model.dtype};"
            " use recurrence 'scan'"
        )
    return recurrence


def _has_chars(model: RNNModel) -> bool:
    return getattr(model, "char_hidden_size", None) is not None


class _CharLayer:
    """The character encoder seen as one bidirectional layer of hidden size H_c, with the
    attributes the layer writers read (parameters "char_rnn.<name>", "char_rnn_reverse.<name>")."""

    bidirectional = True

    def __init__(self, model: RNNModel):
        self.params, self.dtype = model.params, model.dtype
        self.cell = model.char_rnn
        self.hidden_size = model.char_hidden_size
        self.nonlinearity = getattr(model.char_rnn, "nonlinearity", "tanh")

    def layer_names(self, layer: int) -> list[str]:
        return ["char_rnn", "char_rnn_reverse"]


# ---- a small graph builder ----------------------------------------------------


class _Graph:
    """Nodes and initializers with fresh names; sub() makes a Scan body that shares names and constants."""

    def __init__(self, root: _Graph | None = None):
        self.nodes, self.inits = [], []
        self.root = root  # a Scan body keeps its constants in the outer graph (an outer-scope reference)
        self.counter = root.counter if root is not None else [0]
        self.consts: dict[str, str] = {}

    def fresh(self, stem: str) -> str:
        self.counter[0] += 1
        return f"{stem}_{self.counter[0]}"

    def const(self, array, name: str | None = None) -> str:
        """An initializer holding `array` (named `name`, once, if given)."""
        if self.root is not None:
            return self.root.const(array, name)
        onnx = _onnx()
        if name is not None and name in self.consts:
            return self.consts[name]
        key = name or self.fresh("const")
        self.inits.append(onnx.numpy_helper.from_array(np.asarray(array), key))
        if name is not None:
            self.consts[name] = key
        return key

    def ints(self, values) -> str:
        return self.const(np.asarray(values, dtype=np.int64))

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs):
        """Add a node; return its output name (or the list of them when outputs > 1)."""
        onnx = _onnx()
        names = [self.fresh(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(onnx.helper.make_node(op_type, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names

    def sub(self) -> _Graph:
        return _Graph(self.root or self)


# ---- the network --------------------------------------------------------------


def build(model: RNNModel, *, recurrence: str | None = None, metadata: dict | None = None):
    """The ONNX ModelProto of `model` in evaluation mode (no dropout), checked with full checking.

    metadata: str -> JSON-able values stored as the model's metadata_props (JSON strings).
    """
    onnx = _onnx()
    from onnx import TensorProto, helper

    recurrence = check_exportable(model, recurrence)
    dt = np.dtype(model.dtype)
    elem = helper.np_dtype_to_tensor_dtype(dt)
    H, L, nd, N = model.hidden_size, model.num_layers, model.num_directions, model.num_layers * model.num_directions
    one, seq = model.mode == "one-to-one", model.mode in SEQUENCE_MODES
    g = _Graph()
    inputs, outputs = [], []

    # inputs, made time-major
    F = len(model.feature_vocab_sizes or ())
    step_shape = ([1 + F] if F else []) if model.uses_tokens else [model.input_size]
    kind = TensorProto.INT64 if model.uses_tokens else elem
    lead = ["batch"] if one else ["batch", "time"]
    inputs.append(helper.make_tensor_value_info("inputs", kind, lead + step_shape, doc_string=_DOCS["inputs"]))
    x = g.op("Unsqueeze", "inputs", g.ints([1])) if one else "inputs"
    X = g.op("Transpose", x, perm=[1, 0] + ([2] if step_shape else []))  # (T, B[, C])
    T = g.op("Shape", X, start=0, end=1)  # (1,) int64
    B = g.op("Shape", X, start=1, end=2)
    if one:
        lens = g.op("Expand", g.ints([1]), B)
    else:
        inputs.append(
            helper.make_tensor_value_info("sequence_lens", TensorProto.INT64, ["batch"], doc_string=_DOCS["lens"])
        )
        g.const(np.array([NO_LENGTH], np.int64), "sequence_lens")
        lens = g.op("Min", g.op("Expand", "sequence_lens", B), T)  # (B,)
    steps = g.op("Range", g.ints(0), g.op("Squeeze", T, g.ints([0])), g.ints(1))
    mask = g.op("Less", g.op("Unsqueeze", steps, g.ints([1])), g.op("Unsqueeze", lens, g.ints([0])))  # (T, B) bool

    # the initial state: optional inputs h0 (, c0), or h_0 = tanh(Q cond + q) for one-to-many (c_0 = 0)
    parts = STATE_PARTS[: N_STATES[cell_of(model)]]
    full = g.op("Concat", g.ints([N]), B, g.ints([H]), axis=0)  # (N, B, H)
    state0 = []
    for part in parts:
        if model.mode == "one-to-many" and part == "h":
            inputs.append(
                helper.make_tensor_value_info("cond", elem, ["batch", model.cond_size], doc_string=_DOCS["cond"])
            )
            Q, q = model.params["h0map.Q"], model.params["h0map.q"]
            a = g.op("MatMul", "cond", g.const(np.ascontiguousarray(Q.T), "h0map.Q_T"))
            a = g.op("Add", a, g.const(q, "h0map.q"))
            state0.append(g.op("Transpose", g.op("Reshape", g.op("Tanh", a), g.ints([-1, L, H])), perm=[1, 0, 2]))
        elif model.mode == "one-to-many":
            state0.append(g.op("Expand", g.const(np.zeros((N, 1, H), dt)), full))
        else:
            inputs.append(
                helper.make_tensor_value_info(f"{part}0", elem, [N, "batch", H], doc_string=_DOCS[f"{part}0"])
            )
            g.const(np.zeros((N, 1, H), dt), f"{part}0")
            state0.append(g.op("Expand", f"{part}0", full))

    # x_t
    ids = model.uses_tokens and model.embedding_size is None
    if model.embedding_size is not None:
        tables = ["embed.E"] + [f"embed{f}.E" for f in range(1, F + 1)]  # column f of the ids reads table f
        cols = [g.op("Gather", X, g.ints(f), axis=2) for f in range(1 + F)] if F else [X]
        rows = [g.op("Gather", g.const(model.params[name], name), col) for name, col in zip(tables, cols)]
        layer_in = rows[0] if len(rows) == 1 else g.op("Concat", *rows, axis=2)
    else:
        layer_in = X
    if _has_chars(model):
        chars_info = helper.make_tensor_value_info(
            "chars", TensorProto.INT64, lead + ["chars"], doc_string=_DOCS["chars"]
        )
        inputs.insert(1, chars_info)  # next to the tokens it spells
        chars = g.op("Unsqueeze", "chars", g.ints([1])) if one else "chars"
        enc = _char_encoder(g, model, recurrence, g.op("Transpose", chars, perm=[1, 0, 2]), T, B, mask)
        layer_in = g.op("Concat", layer_in, enc, axis=2)

    # the layers; state_n[k]: the final state parts of every layer so far, (dirs, B, H) each
    state_n = [[] for _ in parts]
    for layer in range(L):
        s0_l = [g.op("Slice", s0, g.ints([layer * nd]), g.ints([(layer + 1) * nd]), g.ints([0])) for s0 in state0]
        run = _layer_op if recurrence == "op" else _layer_scan
        layer_in, sn_l = run(g, model, layer, layer_in, ids and layer == 0, s0_l, lens, mask)
        for k, sn in enumerate(sn_l):
            state_n[k].append(sn)
    for part, sn in zip(parts, state_n):
        sn = g.op("Concat", *sn, axis=0) if L > 1 else sn[0]
        g.nodes.append(helper.make_node("Identity", [sn], [f"{part}n"]))

    # the head
    c = g.const(model.params["head.c"], "head.c")
    if model.tie_weights:  # V is the embedding table itself: the graph holds it once
        VT = g.op("Transpose", g.const(model.params["embed.E"], "embed.E"), perm=[1, 0])
    else:
        VT = g.const(np.ascontiguousarray(model.params["head.V"].T), "head.V_T")
    mask3 = g.op("Unsqueeze", mask, g.ints([2]))  # (T, B, 1)
    if seq:
        Z = g.op("Add", g.op("MatMul", layer_in, VT), c)  # (T, B, K)
        Y = g.op("Mul", _head(g, model.head, Z), g.op("Cast", mask3, to=elem))
        g.nodes.append(helper.make_node("Transpose", [Y], ["outputs"], perm=[1, 0, 2]))
        out_shape = ["batch", "time", model.output_size]
    else:
        feats = []  # one per pooling, concatenated as bptt.layers.pooling.forward
        for kind in ("last",) if one else model.pooling.split(","):
            if kind == "last":
                top = g.op("Slice", "hn", g.ints([(L - 1) * nd]), g.ints([N]), g.ints([0]))  # (dirs, B, H)
                feats.append(g.op("Reshape", g.op("Transpose", top, perm=[1, 0, 2]), g.ints([0, -1])))
            elif kind == "mean":
                m = g.op("Cast", mask3, to=elem)
                total = g.op("ReduceSum", g.op("Mul", layer_in, m), g.ints([0]), keepdims=0)
                feats.append(g.op("Div", total, g.op("ReduceSum", m, g.ints([0]), keepdims=0)))
            else:
                masked = g.op("Where", mask3, layer_in, g.const(np.array(-np.inf, dt)))
                feats.append(g.op("ReduceMax", masked, axes=[0], keepdims=0))
        feat = feats[0] if len(feats) == 1 else g.op("Concat", *feats, axis=1)
        Z = g.op("Add", g.op("MatMul", feat, VT), c)
        g.nodes.append(helper.make_node("Identity", [_head(g, model.head, Z)], ["outputs"]))
        out_shape = ["batch", model.output_size]
    outputs.append(helper.make_tensor_value_info("outputs", elem, out_shape, doc_string=_DOCS["outputs"][model.head]))
    for part in parts:
        outputs.append(helper.make_tensor_value_info(f"{part}n", elem, [N, "batch", H], doc_string=_DOCS[f"{part}n"]))

    graph = helper.make_graph(g.nodes, "bptt", inputs, outputs, g.inits, doc_string=_graph_doc(model, recurrence))
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="bptt",
        producer_version=_version(),
        doc_string="exported by bptt.export.to_onnx; see docs/deployment.md",
    )
    props = {"config": config_of(model), "recurrence": recurrence, "cell": cell_of(model)}
    props.update(metadata or {})
    helper.set_model_props(proto, {k: json.dumps(v) for k, v in props.items()})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _head(g: _Graph, head: str, Z: str) -> str:
    """y^ = g(z) over the last axis."""
    if head == "softmax":
        return g.op("Softmax", Z, axis=-1)
    if head == "sigmoid":
        return g.op("Sigmoid", Z)
    return Z


def _char_encoder(g: _Graph, model, recurrence: str, chars: str, T: str, B: str, mask: str) -> str:
    """enc(w_t) = [h->_n; h<-_1] (T, B, 2 H_c) of chars (T, B, C): both cells over the T*B
    tokens' characters, each token's length its non-zero ids; zeros at padded tokens, as bptt."""
    view, Hc = _CharLayer(model), model.char_hidden_size
    flat = g.op("Reshape", chars, g.op("Concat", g.ints([-1]), g.op("Shape", chars, start=2, end=3), axis=0))
    n = g.op("ReduceSum", g.op("Cast", g.op("Not", g.op("Equal", flat, g.ints(0))), to=7), g.ints([1]), keepdims=0)
    ids = g.op("Transpose", flat, perm=[1, 0])  # (C, N) time-major, N = T * B tokens
    C, N = g.op("Shape", ids, start=0, end=1), g.op("Shape", ids, start=1, end=2)
    e = g.op("Gather", g.const(model.params["char.E"], "char.E"), ids)  # (C, N, D_c)
    steps = g.op("Range", g.ints(0), g.op("Squeeze", C, g.ints([0])), g.ints(1))
    cmask = g.op("Less", g.op("Unsqueeze", steps, g.ints([1])), g.op("Unsqueeze", n, g.ints([0])))  # (C, N)
    zero = g.op(
        "Expand",
        g.const(np.zeros((2, 1, Hc), np.dtype(model.dtype))),
        g.op("Concat", g.ints([2]), N, g.ints([Hc]), axis=0),
    )
    s0 = [zero] * N_STATES[cell_of(view)]
    run = _layer_op if recurrence == "op" else _layer_scan
    _, (h_n, *_) = run(g, view, 0, e, False, s0, n, cmask)  # h_n (2, N, H_c)
    enc = g.op("Reshape", g.op("Transpose", h_n, perm=[1, 0, 2]), g.op("Concat", T, B, g.ints([2 * Hc]), axis=0))
    return g.op("Where", g.op("Unsqueeze", mask, g.ints([2])), enc, g.const(np.array(0, np.dtype(model.dtype))))


def _layer_op(g: _Graph, model, layer, x, ids, s0_l, lens, mask):
    """One layer, both directions, as one ONNX recurrent node. s0_l: the initial state parts,
    (dirs, B, H) each. Returns (out (T, B, dirs*H), the final state parts (dirs, B, H) each).

    For one-hot ids the input is the gathered columns of every direction's U, [U_d[:, id_t]]
    (T, B, dirs*gH), and each direction's W picks its own block (an exact 0/1 matrix).
    """
    names = model.layer_names(layer)
    key = f"{names[0]}.op"  # rnn{layer}.op, or char_rnn.op for the character encoder
    maps = [OP_LAYOUTS[cell_of(model)](model, name) for name in names]
    Ws = [m["W"] for m in maps]
    if ids:
        x = g.op("Gather", g.const(np.concatenate([w.T for w in Ws], axis=1), f"{key}.X_table"), x)
        rows = Ws[0].shape[0]
        Ws = [np.eye(rows, rows * len(Ws), rows * d, dtype=Ws[0].dtype) for d in range(len(Ws))]
    W, R = g.const(np.stack(Ws), f"{key}.W"), g.const(np.stack([m["R"] for m in maps]), f"{key}.R")
    Bs = [m["B"] for m in maps]
    B = "" if Bs[0] is None else g.const(np.stack(Bs), f"{key}.B")
    # per-direction attributes (lists: activations, their alpha and beta) run forward then reverse
    attrs = {
        k: sum((m["attrs"][k] for m in maps), []) if isinstance(v, list) else v for k, v in maps[0]["attrs"].items()
    }
    direction = "bidirectional" if model.bidirectional else "forward"
    lens32 = g.op("Cast", lens, to=6)  # int32, as the operator wants
    op = maps[0]["op"]
    Y, *sn = g.op(
        op,
        x,
        W,
        R,
        B,
        lens32,
        *s0_l,
        outputs=1 + len(s0_l),
        hidden_size=model.hidden_size,
        direction=direction,
        **attrs,
    )
    out = g.op("Reshape", g.op("Transpose", Y, perm=[0, 2, 1, 3]), g.ints([0, 0, -1]))  # (T, B, dirs*H)
    empty = g.op("Unsqueeze", g.op("Equal", lens, g.ints(0)), g.ints([0, 2]))  # (1, B, 1)
    return out, [g.op("Where", empty, s0, s) for s0, s in zip(s0_l, sn)]  # no steps: the state stays, as in bptt


def _layer_scan(g: _Graph, model, layer, x, ids, s0_l, lens, mask):
    """One layer as a Scan per direction; arguments and results as `_layer_op`."""
    onnx = _onnx()
    from onnx import helper

    p, H = model.params, model.hidden_size
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(model.dtype))
    cell = cell_of(model)
    mask3 = g.op("Unsqueeze", mask, g.ints([2]))  # (T, B, 1)
    outs, sns = [], []
    for d, name in enumerate(model.layer_names(layer)):
        UT = g.const(np.ascontiguousarray(p[f"{name}.U"].T), f"{name}.U_T")
        A = g.op("Gather", UT, x) if ids else g.op("MatMul", x, UT)  # U x_t for every t
        if f"{name}.b" in p:
            A = g.op("Add", A, g.const(p[f"{name}.b"], f"{name}.b"))
        body = g.sub()
        n_states = N_STATES[cell]
        state = [body.fresh("state") for _ in range(n_states)]
        a_t, m_t = body.fresh("a_t"), body.fresh("m_t")
        new = SCAN_STEPS[cell](body, model, name, a_t, state)
        kept = [body.op("Where", m_t, s_new, s) for s_new, s in zip(new, state)]  # padding keeps the state
        y = body.op("Identity", kept[0])
        gate_rows = p[f"{name}.U"].shape[0]
        body_graph = helper.make_graph(
            body.nodes,
            body.fresh("step"),
            [helper.make_tensor_value_info(s, elem, ["batch", H]) for s in state]
            + [
                helper.make_tensor_value_info(a_t, elem, ["batch", gate_rows]),
                helper.make_tensor_value_info(m_t, onnx.TensorProto.BOOL, ["batch", 1]),
            ],
            [helper.make_tensor_value_info(s, elem, ["batch", H]) for s in kept]
            + [helper.make_tensor_value_info(y, elem, ["batch", H])],
            body.inits,
        )
        start = [
            g.op("Squeeze", g.op("Slice", s0, g.ints([d]), g.ints([d + 1]), g.ints([0])), g.ints([0])) for s0 in s0_l
        ]
        reverse = [1] if d == 1 else [0]
        res = g.op(
            "Scan",
            *start,
            A,
            mask3,
            outputs=n_states + 1,
            body=body_graph,
            num_scan_inputs=2,
            scan_input_directions=reverse * 2,
            scan_output_directions=reverse,
        )
        sns.append([g.op("Unsqueeze", s, g.ints([0])) for s in res[:n_states]])
        outs.append(res[-1])
    out = outs[0] if len(outs) == 1 else g.op("Concat", *outs, axis=2)
    return out, [dirs[0] if len(dirs) == 1 else g.op("Concat", *dirs, axis=0) for dirs in zip(*sns)]


# ---- documentation carried in the file ----------------------------------------

_DOCS = {
    "inputs": "batch-first: token ids int64 (batch, time) or (batch, time, 1 + F) with feature columns, "
    "or features (batch, time, input_size); one-to-one models drop the time axis",
    "chars": "int64 (batch, time, chars): each token's character ids, 0 after its last character "
    "(a model with a character encoder); one-to-one models drop the time axis",
    "lens": "optional, int64 (batch,): real steps of each sequence (steps at or past it are padding); "
    "default: every step is real",
    "c0": "optional, (layers * directions, batch, hidden_size): initial cell states (LSTM); default zeros",
    "cn": "(layers * directions, batch, hidden_size): each sequence's cell state after its last real step (LSTM)",
    "h0": "optional, (layers * directions, batch, hidden_size): initial states in torch's h_0 layout; default zeros",
    "cond": "(batch, cond_size): the conditioning vector mapped to h_0 = tanh(Q cond + q)",
    "outputs": {
        "softmax": "class probabilities, (batch, time, K) with zeros at padded steps or (batch, K)",
        "sigmoid": "probabilities of each output, (batch, time, K) with zeros at padded steps or (batch, K)",
        "linear": "predicted values, (batch, time, K) with zeros at padded steps or (batch, K)",
    },
    "hn": "(layers * directions, batch, hidden_size): each sequence's state after its last real step "
    "(a reverse direction: after its first step), torch's h_n layout",
}


def _graph_doc(model: RNNModel, recurrence: str) -> str:
    chars = (
        f"character encoder 2 x {model.char_hidden_size} {cell_of(_CharLayer(model))}, " if _has_chars(model) else ""
    )
    return (
        f"bptt {cell_of(model)} RNN, {model.num_layers} layer(s), hidden {model.hidden_size}, "
        f"{'bidirectional, ' if model.bidirectional else ''}{model.nonlinearity}, {model.mode}, {chars}"
        f"{model.head} head, {model.dtype}, recurrence {recurrence!r}"
    )


def _version() -> str:
    from bptt import __version__

    return __version__


# ---- the entry point ----------------------------------------------------------


def to_onnx(
    model: RNNModel,
    path,
    *,
    recurrence: str | None = None,
    vocab: list[str] | None = None,
    labels: list[str] | None = None,
    metadata: dict | None = None,
) -> Path:
    """Write `model` as an ONNX file at `path` (atomically: the old file or the whole new one).

    recurrence: "op" (ONNX's RNN operator; default for float32) or "scan" (default and
    only choice for float64). vocab / labels: the token of each input id and the name of
    each output, stored as metadata (JSON lists under "vocab" / "labels") so that
    a user can decode outputs; metadata: more str -> JSON-able entries.
    Refuses (UsageError, one line) what it cannot export, before writing anything.
    """
    from bptt.training.checkpoint import atomic_write_bytes

    extra = dict(metadata or {})
    if vocab is not None:
        extra["vocab"] = list(vocab)
    if labels is not None:
        extra["labels"] = list(labels)
    proto = build(model, recurrence=recurrence, metadata=extra)
    path = Path(path)
    atomic_write_bytes(path, proto.SerializeToString())
    return path


# ---- and back ---------------------------------------------------------------------


def from_onnx(path) -> RNNModel:
    """The RNNModel a file written by `to_onnx` holds: its configuration from the metadata
    entry "config", its parameters read back from the graph's weights in their ONNX layouts."""
    onnx = _onnx()
    from onnx import numpy_helper

    from bptt.errors import DataError

    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    if "config" not in meta:
        raise DataError(f"{path}: no 'config' entry in its metadata, expected a file written by bptt export")
    config = json.loads(meta["config"])
    model = RNNModel(**config)
    tensors = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    params = {}
    for name in model.params:
        if name in tensors:  # embeddings and biases are stored as they are
            params[name] = tensors[name]
        elif name.endswith((".U", ".W", ".Q", ".V")) and f"{name}_T" in tensors:  # stored transposed for MatMul
            params[name] = np.ascontiguousarray(tensors[f"{name}_T"].T)
    if json.loads(meta.get("recurrence", '"scan"')) == "op":
        layers = [(model, layer) for layer in range(model.num_layers)]
        layers += [(_CharLayer(model), 0)] if _has_chars(model) else []
        for owner, layer in layers:
            names = owner.layer_names(layer)
            key = f"{names[0]}.op"
            W, R, B = tensors[f"{key}.W"], tensors[f"{key}.R"], tensors.get(f"{key}.B")
            for d, name in enumerate(names):
                W_d = W[d]
                if f"{key}.X_table" in tensors:  # one-hot ids: the operator's W was gathered, its W picks it
                    rows = R.shape[1]
                    W_d = np.ascontiguousarray(tensors[f"{key}.X_table"][:, d * rows : (d + 1) * rows].T)
                local = FROM_OP[cell_of(owner)](W_d, R[d], None if B is None else B[d])
                params.update({f"{name}.{k}": v for k, v in local.items() if f"{name}.{k}" in model.params})
    missing = sorted(set(model.params) - set(params))
    if missing:
        raise DataError(f"{path}: no weights for {', '.join(missing)}, expected a file written by bptt export")
    for k, v in params.items():
        if v.shape != model.params[k].shape or v.dtype != model.params[k].dtype:
            raise DataError(
                f"{path}: {k} is {v.dtype} {v.shape}, expected {model.params[k].dtype} {model.params[k].shape}"
            )
        model.params[k] = v
    return model.eval()
