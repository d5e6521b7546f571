"""RNNModel: inputs -> stacked recurrent layers -> a head and its loss, with exact BPTT.

The model only composes layers from `bptt.layers`; the recurrence itself is a
cell (`bptt.layers.cell.Cell`, chosen by name from `bptt.layers.cells.CELLS`,
Elman by default). The whole network, for layers l = 1..L (and a reverse
direction if bidirectional, whose outputs are concatenated with the forward ones):

    x_t            = E[id_t] (embedding), the one-hot of id_t, or the float features;
                     with feature columns f = 1..F, x_t = [E[id_t]; E_1[f1_t]; ...; E_F[fF_t]]
                     and with a character encoder, [...; enc(chars_t)] (`bptt.layers.char_encoder`)
    h^l_t          = cell^l(x = h^{l-1}_t, state^l_{t-1}),   h^0_t = x_t
                     (training: x_t, each h^l_t below the top and h^L_t as the head reads it
                     are multiplied by dropout masks, `bptt.layers.dropout`, and each
                     direction's recurrent matrix W^l may be too: W^l * M^l, weight dropout)
                     (Elman: h^l_t = f(U^l h^{l-1}_t + W^l h^l_{t-1} + b^l))
    z_t            = V h^L_t + c                    (many-to-many, one-to-many)
    z              = V pool(h^L_1..h^L_T) + c       (many-to-one, one-to-one)
    y^             = g(z),  L = sum_t w_t L_t(y_t, y^_t)

`loss_and_grads` runs the forward pass once and BPTT once (O(T)) and returns
dL/dtheta for every parameter, keyed exactly like `params`: "embed.E",
"embed{f}.E" for the feature columns f = 1..F (suffix, shape, ... ids),
"rnn{l}.<name>", "rnn{l}_reverse.<name>" for each of the cell's parameters
(Elman: U, W, b), "head.V", "head.c" and, for one-to-many, "h0map.Q", "h0map.q"
(h_0 = tanh(Q cond + q), one block per layer, `bptt.layers.h0map`), and with a
character encoder "char.E" (the character table), "char_rnn.<name>" and
"char_rnn_reverse.<name>" (its two cells).

Inputs are batch-first, as users pass them: ids (B, T) (or (B, T, 1 + F) with
feature columns: column 0 the token, column f the f-th feature's id), features (B, T, D),
masks (B, T) or lengths (B,), and with a character encoder chars (B, T, C): the
character ids of each token, 0 = padding after its last character. Inside, everything is time-major (T, B, ...).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from bptt import blas
from bptt import checks as validate
from bptt.errors import UsageError
from bptt.layers import activations, cells, char_encoder, dense, embedding, h0map, losses, recompute
from bptt.layers import dropout as dropout_layer
from bptt.layers import init as initializers
from bptt.layers import pooling as pooling_layer

CHAR_PREFIXES = {"fwd": "char_rnn", "rev": "char_rnn_reverse"}  # char_encoder's directions -> parameter names


def _char_key(local: str) -> str:
    """char_encoder's local name -> the model's: "E" -> "char.E", "fwd.U" -> "char_rnn.U", "rev.U" -> "char_rnn_reverse.U"."""
    if local == "E":
        return "char.E"
    direction, name = local.split(".", 1)
    return f"{CHAR_PREFIXES[direction]}.{name}"


def _local_char_key(key: str) -> str | None:
    """The inverse of `_char_key`, None for a parameter outside the character encoder."""
    if key == "char.E":
        return "E"
    prefix, _, name = key.partition(".")
    for direction, p in CHAR_PREFIXES.items():
        if prefix == p:
            return f"{direction}.{name}"
    return None


MODES = ("many-to-many", "many-to-one", "one-to-many", "one-to-one")
SEQUENCE_MODES = ("many-to-many", "one-to-many")
DTYPES = ("float32", "float64")


@dataclass
class Forward:
    """Everything one forward pass produced, kept for the backward pass.

    Z: logits, (T, B, K) for sequence outputs or (B, K) for one per sequence.
    hn: (L * dirs, B, H) final h states, torch's h_n layout.
    state_n: every part of the final state, a tuple of (L * dirs, B, H) ((hn,) for Elman).
    state0: the initial state, a tuple of (L * dirs, B, H); h0 = state0[0].
    """

    Z: np.ndarray
    hn: np.ndarray
    h0: np.ndarray
    X: np.ndarray  # first-layer input, time-major: ids (T, B) or (T, B, 1 + F), or floats (T, B, D)
    ids: np.ndarray | None  # token ids (T, B) when an embedding was used
    mask: np.ndarray | None  # (T, B) bool
    caches: list = field(default_factory=list)  # [layer][direction] the cell's cache (or recompute.Cache)
    drops: list = field(default_factory=list)  # dropout scale masks between layers
    in_drop: np.ndarray | None = None  # input dropout mask on x_t, (T, B, D) or (1, B, D) locked
    out_drop: np.ndarray | None = None  # output dropout mask on h^L_t, (T, B, F) or (1, B, F)
    weight_drops: dict = field(default_factory=dict)  # layer name -> weight dropout mask M on its W
    feat: np.ndarray | None = None  # head input, (T*B, F) or (B, F)
    pool: tuple | None = None  # pooling bookkeeping for many-to-one
    cond: np.ndarray | None = None
    h0map: np.ndarray | None = None  # tanh(Q cond + q), (B, L*H)
    state_n: tuple = ()
    state0: tuple = ()
    chars: object = None  # the character encoder's cache (bptt.layers.char_encoder.Cache)

    @property
    def T(self) -> int:
        return self.X.shape[0]

    @property
    def final_state(self):
        """state_n as a model takes h0: the (L * dirs, B, H) array for a one-part state, else the tuple."""
        return self.state_n[0] if len(self.state_n) == 1 else self.state_n


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a model's architecture, validated on construction.
    Option names are torch's/Keras's; `RNNModel(config)` builds the model, and
    `to_dict()` is what a checkpoint stores (`RNNModel(**d)` reads it back).

    input_size      features per step for float inputs (B, T, D); or
    vocab_size      for token ids (B, T); with embedding_size an embedding
                    table E (V, E), without it one-hot inputs (U is (H, V))
    feature_vocab_sizes   token models with an embedding: sizes of F more id columns
                    (affixes, word shape, ...), each with a table E_f (size_f, feature_embedding_size)
                    whose rows are concatenated to E[id_t]; inputs are then (B, T, 1 + F)
    hidden_size     H;  num_layers: L;  bidirectional: two directions per layer
    cell            the recurrent cell, a name in bptt.layers.cells.CELLS (default "elman")
    forget_bias     lstm only: added to the forget gate's bias at initialisation (0: none)
    nonlinearity    f: tanh | relu | sigmoid | identity (the cells that support it);  bias: b on or off
    dropout         inverted dropout between layers, training only
    input_dropout   inverted dropout on the first layer's inputs x_t (the embeddings), training only
    output_dropout  inverted dropout on the top layer's outputs h^L_t before pooling / the head
                    (pooling "last": on the final-state features the head reads), training only
    variational_dropout  every dropout mask drawn once per sequence, (1, B, D), and shared by
                    all time steps (locked dropout, Gal & Ghahramani 2016)
    weight_dropout  DropConnect on every recurrent layer's hidden-to-hidden matrix W (the
                    weight-dropped LSTM, Merity et al. 2018): each forward pass in training runs
                    with W * M, M ~ Bernoulli(1 - p) / (1 - p) of W's shape, one draw per layer and
                    direction shared by every sequence and step; dL/dW = dL/d(W * M) * M
    output_size     K (defaults to vocab_size for token models)
    head            softmax (cross-entropy) | sigmoid (binary CE) | linear (squared error)
    mode            many-to-many | many-to-one | one-to-many | one-to-one
    pooling         many-to-one only: last | mean | max, or a comma list of them ("mean,max"),
                    whose pooled vectors are concatenated (V is then (K, n * F))
    cond_size       one-to-many only: size of the conditioning vector mapped to h_0
    reduction       sum-over-time (lecture notes: sum over t, mean over sequences) | mean | sum
    ignore_index    softmax targets equal to it carry no loss (torch's -100)
    init, init_scale  pytorch | xavier | orthogonal | identity | spectral (see bptt.layers.init)
    dtype           float32 (default) | float64;  seed: every random draw
    checkpoint_every  memory-saving BPTT: keep every k-th state, recompute the rest
                    (k, or "auto" for sqrt(T); see bptt.layers.recompute); None: keep all
    char_hidden_size  H_c: a character-level word encoder (bptt.layers.char_encoder), a
                    bidirectional cell over each token's characters whose two final h
                    states (2 H_c) are concatenated to x_t; None: none. Needs embedding_size;
                    inputs then take chars (B, T, C) (0 = padding)
    char_vocab_size   characters (id 0 padding, id 1 unknown);  char_embedding_size: D_c
    char_cell       the encoder's cell (None: the model's `cell`, with its options)
    tie_weights     the head's V is the embedding table E itself (Press & Wolf 2017): z_t = E h_t + c.
                    Needs a softmax sequence head over the vocabulary (output_size = vocab_size)
                    and a head input as wide as the embedding (hidden_size x directions =
                    embedding_size); params then hold "embed.E" and no "head.V", and dL/dE is
                    the sum of its two uses. E starts as a head's V would (uniform +-1/sqrt(E)).
    """

    input_size: int | None = None
    vocab_size: int | None = None
    embedding_size: int | None = None
    feature_vocab_sizes: tuple[int, ...] | None = None
    feature_embedding_size: int = 16
    hidden_size: int = 64
    output_size: int | None = None
    num_layers: int = 1
    nonlinearity: str = "tanh"
    bias: bool = True
    bidirectional: bool = False
    dropout: float = 0.0
    input_dropout: float = 0.0
    output_dropout: float = 0.0
    variational_dropout: bool = False
    weight_dropout: float = 0.0
    head: str = "softmax"
    mode: str = "many-to-many"
    pooling: str = "last"
    cond_size: int | None = None
    reduction: str = "sum-over-time"
    ignore_index: int = -100
    init: str = "pytorch"
    init_scale: float = 1.0
    dtype: str = "float32"
    seed: int = 0
    checkpoint_every: int | str | None = None
    cell: str = "elman"
    forget_bias: float = 0.0
    char_vocab_size: int | None = None
    char_embedding_size: int = 16
    char_hidden_size: int | None = None
    char_cell: str | None = None
    tie_weights: bool = False

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        put("dtype", np.dtype(self.dtype).name)
        validate.choice("cell", self.cell, cells.CELLS)
        if (self.input_size is None) == (self.vocab_size is None):
            raise UsageError("input_size / vocab_size: give exactly one (features or token ids)")
        validate.positive_int("input_size", self.input_size, allow_none=True)
        validate.positive_int("vocab_size", self.vocab_size, allow_none=True)
        validate.positive_int("embedding_size", self.embedding_size, allow_none=True)
        if self.embedding_size is not None and self.vocab_size is None:
            raise UsageError("embedding_size: needs vocab_size (an embedding is for token ids)")
        if self.feature_vocab_sizes is not None:
            if self.embedding_size is None:
                raise UsageError(
                    "feature_vocab_sizes: needs embedding_size (feature columns are embedded next to the token)"
                )
            sizes = tuple(int(n) for n in self.feature_vocab_sizes)
            for f, n in enumerate(sizes, 1):
                validate.positive_int(f"feature_vocab_sizes[{f - 1}]", n)
            validate.positive_int("feature_embedding_size", self.feature_embedding_size)
            put("feature_vocab_sizes", sizes or None)
        validate.positive_int("hidden_size", self.hidden_size)
        validate.positive_int("num_layers", self.num_layers)
        if (
            self.output_size is None
            and self.head == "softmax"
            and self.vocab_size is not None
            and self.mode in SEQUENCE_MODES
        ):
            put("output_size", self.vocab_size)
        if self.output_size is None:
            raise UsageError("output_size: required (the number of outputs K of the head)")
        validate.positive_int("output_size", self.output_size)
        validate.choice("nonlinearity", self.nonlinearity, activations.NONLINEARITIES)
        for name in ("dropout", "input_dropout", "output_dropout", "weight_dropout"):
            validate.probability(name, getattr(self, name))
        if self.input_dropout > 0 and self.vocab_size is not None and self.embedding_size is None:
            raise UsageError(
                "input_dropout: one-hot token inputs are looked up, not multiplied; "
                "expected embedding_size (or float inputs)"
            )
        if not isinstance(self.variational_dropout, (bool, np.bool_)):
            raise UsageError(f"variational_dropout: got {self.variational_dropout!r}, expected True or False")
        validate.choice("head", self.head, losses.HEADS)
        validate.choice("mode", self.mode, MODES)
        put("pooling", ",".join(pooling_layer.parse(self.pooling)))
        validate.choice("reduction", self.reduction, losses.REDUCTIONS)
        validate.choice("init", self.init, initializers.SCHEMES)
        validate.choice("dtype", self.dtype, DTYPES)
        recompute.check_every(self.checkpoint_every)
        if self.mode == "one-to-many":
            validate.positive_int("cond_size", self.cond_size)
            if self.bidirectional:
                raise UsageError("bidirectional: a one-to-many model generates left to right, expected False")
        elif self.cond_size is not None:
            raise UsageError(f"cond_size: only for mode='one-to-many', got mode={self.mode!r}")
        if self.head == "softmax" and self.output_size < 2:
            raise UsageError(f"output_size: got {self.output_size}, a softmax head needs at least 2 classes")
        fb = self.forget_bias
        if isinstance(fb, bool) or not isinstance(fb, numbers.Real) or not math.isfinite(fb):
            raise UsageError(f"forget_bias: got {fb!r}, expected a finite number")
        put("forget_bias", float(self.forget_bias))
        cells.make_cell(self.cell, **self.cell_options())  # the cell's own refusals, here
        put("feature_embedding_size", int(self.feature_embedding_size))
        self._check_char_encoder()
        put("bias", bool(self.bias))
        put("bidirectional", bool(self.bidirectional))
        put("dropout", float(self.dropout))
        put("input_dropout", float(self.input_dropout))
        put("output_dropout", float(self.output_dropout))
        put("variational_dropout", bool(self.variational_dropout))
        put("weight_dropout", float(self.weight_dropout))
        put("ignore_index", int(self.ignore_index))
        put("init_scale", float(self.init_scale))
        put("seed", int(self.seed))
        put("tie_weights", bool(self.tie_weights))
        if self.tie_weights:
            self._check_tying()

    def _check_tying(self) -> None:
        """tie_weights needs E (V, E) to fit as the head's V (K, H * dirs): UsageError naming what does not."""
        if self.vocab_size is None or self.embedding_size is None:
            raise UsageError("tie_weights: needs token inputs with an embedding table (vocab_size and embedding_size)")
        if self.head != "softmax" or self.mode not in SEQUENCE_MODES:
            raise UsageError(
                f"tie_weights: the head must predict the next token (a softmax head in a sequence mode), "
                f"got head={self.head!r}, mode={self.mode!r}"
            )
        if self.output_size != self.vocab_size:
            raise UsageError(f"tie_weights: output_size ({self.output_size}) must equal vocab_size ({self.vocab_size})")
        dirs = 2 if self.bidirectional else 1
        if self.hidden_size * dirs != self.embedding_size:
            width = f"hidden_size ({self.hidden_size})" + (" x 2 directions" if dirs == 2 else "")
            raise UsageError(
                f"tie_weights: the head's input, {width} = {self.hidden_size * dirs}, must equal embedding_size "
                f"({self.embedding_size}); set --embedding-size {self.hidden_size * dirs} or --hidden-size "
                f"{self.embedding_size // dirs if self.embedding_size % dirs == 0 else self.embedding_size}"
            )

    def _check_char_encoder(self) -> None:
        validate.positive_int("char_hidden_size", self.char_hidden_size, allow_none=True)
        if self.char_hidden_size is None:
            if self.char_vocab_size is not None or self.char_cell is not None:
                raise UsageError("char_vocab_size / char_cell: need char_hidden_size (the character encoder)")
            return
        if self.embedding_size is None:
            raise UsageError(
                "char_hidden_size: needs embedding_size (the character encoding is concatenated to the word's embedding)"
            )
        validate.positive_int("char_vocab_size", self.char_vocab_size)
        if self.char_vocab_size < 2:
            raise UsageError(f"char_vocab_size: got {self.char_vocab_size}, expected at least 2 (padding and unknown)")
        validate.positive_int("char_embedding_size", self.char_embedding_size)
        if self.char_cell is not None:
            validate.choice("char_cell", self.char_cell, cells.CELLS)
        for name in ("char_vocab_size", "char_embedding_size", "char_hidden_size"):
            object.__setattr__(self, name, int(getattr(self, name)))

    def char_cell_options(self) -> dict:
        """The character encoder's cell name and options: the model's own unless char_cell names another."""
        if self.char_cell is None or self.char_cell == self.cell:
            return {"name": self.cell, **self.cell_options()}
        return {"name": self.char_cell}

    def cell_options(self) -> dict:
        """The keyword options of the cell's constructor: nonlinearity, and forget_bias when set."""
        options = {"nonlinearity": self.nonlinearity}
        if self.forget_bias != 0:
            options["forget_bias"] = self.forget_bias
        return options

    def to_dict(self) -> dict:
        """The options as plain JSON values (what a checkpoint stores)."""
        d = dataclasses.asdict(self)
        if d["feature_vocab_sizes"] is not None:
            d["feature_vocab_sizes"] = list(d["feature_vocab_sizes"])
        return d

    def replace(self, **changes) -> ModelConfig:
        """A copy with some options changed (validated again)."""
        return dataclasses.replace(self, **changes)


class RNNModel:
    """A stacked recurrent network with a head, trained by exact BPTT.

    RNNModel(config) with a `ModelConfig`, or RNNModel(**options) with its
    fields as keywords (RNNModel(config, **changes) for a changed copy). Every
    option is also readable as an attribute: model.hidden_size is
    model.config.hidden_size. model.cell is the `bptt.layers.cell.Cell` object,
    model.config.cell its registry name.
    """

    def __init__(self, config: ModelConfig | None = None, /, **options):
        if config is None:
            config = ModelConfig(**options)
        elif not isinstance(config, ModelConfig):
            raise TypeError(f"config: got {type(config).__name__}, expected a ModelConfig (or keyword options)")
        elif options:
            config = config.replace(**options)
        self.config = config
        self.cell = cells.make_cell(config.cell, **config.cell_options())
        self.char_rnn = None if config.char_hidden_size is None else cells.make_cell(**config.char_cell_options())
        self.rng = np.random.default_rng(config.seed)
        self.training = True
        self.params = self._init_params()

    # ---- structure ---------------------------------------------------------

    @property
    def kind(self) -> str:
        """What the recurrent layers are, for summaries: "tanh RNN" for Elman, else the cell's name."""
        return f"{self.nonlinearity} RNN" if self.config.cell == "elman" else self.config.cell

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def uses_tokens(self) -> bool:
        return self.vocab_size is not None

    def layer_names(self, layer: int) -> list[str]:
        """Parameter prefixes of one layer: ["rnn{l}"] or ["rnn{l}", "rnn{l}_reverse"]."""
        names = [f"rnn{layer}"]
        if self.bidirectional:
            names.append(f"rnn{layer}_reverse")
        return names

    def _cell_params(self, name: str) -> dict[str, np.ndarray]:
        """The cell parameters of one layer direction under their local names ("U", "W", ...)."""
        n = len(name) + 1
        return {k[n:]: v for k, v in self.params.items() if k.startswith(name) and k[len(name)] == "."}

    def _init_params(self) -> dict[str, np.ndarray]:
        dt, H, rng = np.dtype(self.dtype), self.hidden_size, self.rng
        params: dict[str, np.ndarray] = {}
        if self.embedding_size is not None:
            params["embed.E"] = rng.standard_normal((self.vocab_size, self.embedding_size)).astype(dt)
            D = self.embedding_size
            for f, n in enumerate(self.feature_vocab_sizes or (), 1):
                params[f"embed{f}.E"] = rng.standard_normal((n, self.feature_embedding_size)).astype(dt)
                D += self.feature_embedding_size
            if self.char_hidden_size is not None:
                D += 2 * self.char_hidden_size
        else:
            D = self.vocab_size if self.uses_tokens else self.input_size
        for layer in range(self.num_layers):
            for name in self.layer_names(layer):
                p = self.cell.init(D, H, self.bias, rng, self.init, self.init_scale, dt)
                params.update((f"{name}.{k}", v) for k, v in p.items())
            D = H * self.num_directions
        D *= max(len(self._pool_kinds()), 1)  # the pooled vectors side by side (many-to-one)
        V, params["head.c"] = initializers.linear(rng, self.output_size, D, dt)
        if self.tie_weights:  # E is the head's V: scaled as a head's V, not N(0, 1) (logits of std ~sqrt(E))
            params["embed.E"] = V
        else:
            params["head.V"] = V
        if self.mode == "one-to-many":
            Q, q = initializers.linear(rng, self.num_layers * H, self.cond_size, dt)
            params["h0map.Q"], params["h0map.q"] = Q, q
        if self.char_hidden_size is not None:  # drawn last: models without it draw exactly as before
            Vc, Dc, Hc = self.char_vocab_size, self.char_embedding_size, self.char_hidden_size
            p = char_encoder.init(self.char_rnn, Vc, Dc, Hc, self.bias, rng, self.init, self.init_scale, dt)
            params.update((_char_key(k), v) for k, v in p.items())
        return params

    @property
    def head_key(self) -> str:
        """The parameter the head uses as V: "head.V", or "embed.E" when tie_weights."""
        return "embed.E" if self.tie_weights else "head.V"

    def _char_params(self) -> dict:
        """The character encoder's parameters under char_encoder's local names ("E", "fwd.U", "rev.U", ...)."""
        return {local: self.params[_char_key(local)] for local in self._char_locals}

    @property
    def _char_locals(self) -> list[str]:
        return [k for k in map(_local_char_key, self.params) if k is not None]

    def train(self, mode: bool = True) -> RNNModel:
        """Training mode (dropout on), as torch's module.train()."""
        self.training = bool(mode)
        return self

    def eval(self) -> RNNModel:
        return self.train(False)

    def astype(self, dtype) -> RNNModel:
        """A copy of the model with every parameter in `dtype` (float64 for gradient checks)."""
        other = RNNModel(self.config, dtype=np.dtype(dtype).name)
        other.params = {k: v.astype(dtype) for k, v in self.params.items()}
        other.training = self.training
        return other

    def zero_state(self, batch_size: int):
        """The zero initial state for every layer and direction: (L * dirs, B, H) for a
        one-part state (Elman), a tuple of such arrays (h0, c0) for a two-part one."""
        shape = (self.num_layers * self.num_directions, batch_size, self.hidden_size)
        return self._joined(tuple(np.zeros(shape, self.dtype) for _ in range(self.cell.n_states)))

    def _joined(self, parts: tuple):
        """A state as users see it: the array itself for one part, the tuple otherwise."""
        return parts[0] if self.cell.n_states == 1 else tuple(parts)

    # ---- inputs ------------------------------------------------------------

    def _prepare(self, inputs, mask, h0, cond):
        """Validate batch-first inputs and return them time-major: (X, mask, h0, cond)."""
        one = self.mode == "one-to-one"
        if self.uses_tokens and self.feature_vocab_sizes:
            ids = validate.array("inputs", inputs, (2, 3) if one else (3,), "int")
            if ids.ndim == 2:
                ids = ids[:, None, :]
            validate.shape("inputs", ids, (None, None, 1 + len(self.feature_vocab_sizes)))
            for f, n in enumerate([self.vocab_size, *self.feature_vocab_sizes]):
                validate.in_range(f"inputs[..., {f}]", ids[..., f], 0, n)
            X = np.ascontiguousarray(ids.transpose(1, 0, 2))
        elif self.uses_tokens:
            ids = validate.array("inputs", inputs, (1, 2) if one else (2,), "int")
            if ids.ndim == 1:
                ids = ids[:, None]
            validate.in_range("inputs", ids, 0, self.vocab_size)
            X = np.ascontiguousarray(ids.T)
        else:
            x = validate.array("inputs", inputs, (2, 3) if one else (3,), "float")
            if x.ndim == 2:
                x = x[:, None, :]
            if x.shape[2] != self.input_size:
                raise UsageError(f"inputs: got {x.shape[2]} features per step, expected input_size={self.input_size}")
            X = np.ascontiguousarray(x.transpose(1, 0, 2), dtype=self.dtype)
        T, B = X.shape[0], X.shape[1]
        if T == 0 or B == 0:
            raise UsageError(f"inputs: got {B} sequences of {T} steps, expected at least one step")
        if one and T != 1:
            raise UsageError(f"inputs: mode='one-to-one' takes one step per example, got T={T}")
        mask = self._prepare_mask(mask, B, T)
        if self.mode == "one-to-many":
            if cond is None:
                raise UsageError("cond: required for mode='one-to-many' (the conditioning vector, (B, cond_size))")
            if h0 is not None:
                raise UsageError("h0: a one-to-many model computes h_0 from cond, do not pass both")
            cond = validate.array("cond", cond, (2,), "float")
            validate.shape("cond", cond, (B, self.cond_size))
            cond = cond.astype(self.dtype)
        elif cond is not None:
            raise UsageError(f"cond: only for mode='one-to-many', got mode={self.mode!r}")
        state0 = None if h0 is None else self._prepare_state(h0, B)
        return X, mask, state0, cond

    def _prepare_chars(self, chars, B: int, T: int) -> np.ndarray | None:
        """chars (B, T, C) (one-to-one: (B, C)) -> time-major (T, B, C) ids, checked; None without an encoder."""
        if self.char_hidden_size is None:
            if chars is not None:
                raise UsageError("chars: this model has no character encoder (char_hidden_size=None), expected None")
            return None
        if chars is None:
            raise UsageError("chars: required by a model with a character encoder, expected (B, T, C) character ids")
        one = self.mode == "one-to-one"
        c = validate.array("chars", chars, (2, 3) if one else (3,), "int")
        if c.ndim == 2:
            c = c[:, None, :]
        validate.shape("chars", c, (B, T, None))
        validate.in_range("chars", c, 0, self.char_vocab_size)
        if ((c[..., 1:] != char_encoder.PAD) & (c[..., :-1] == char_encoder.PAD)).any():
            raise UsageError("chars: a character after padding (id 0), expected each word's characters first, then 0s")
        return np.ascontiguousarray(c.transpose(1, 0, 2))

    def _prepare_state(self, h0, B: int) -> tuple:
        """h0 (L * dirs, B, H), or for a cell with a state of n parts a tuple of n such arrays
        (a bare array is the h part, the others start at zero) -> a tuple of parts."""
        names = self.cell.state_names
        shape = (self.num_layers * self.num_directions, B, self.hidden_size)
        if isinstance(h0, (tuple, list)):
            if len(h0) != len(names):
                raise UsageError(
                    f"h0: got a tuple of {len(h0)} arrays, expected {len(names)} ({', '.join(names)}) for cell={self.cell.name!r}"
                )
            given = list(h0)
        else:
            given = [h0] + [None] * (len(names) - 1)
        parts = []
        for part, name in zip(given, names):
            arg = "h0" if len(names) == 1 else f"h0 ({name}0)"
            if part is None:
                parts.append(np.zeros(shape, self.dtype))
                continue
            part = validate.array(arg, part, (2, 3), "float")
            if part.ndim == 2 and shape[0] == 1:
                part = part[None]
            validate.shape(arg, part, shape)
            parts.append(part.astype(self.dtype))
        return tuple(parts)

    def _prepare_mask(self, mask, B: int, T: int) -> np.ndarray | None:
        """A (B, T) mask or (B,) lengths -> a time-major (T, B) bool mask, or None."""
        if mask is None:
            return None
        if self.mode == "one-to-one":
            raise UsageError("mask: mode='one-to-one' has one step per example, expected no mask")
        m = np.asarray(mask)
        if m.ndim == 1:
            lengths = validate.array("mask", m, (1,), "int")
            validate.shape("mask (lengths)", lengths, (B,))
            validate.in_range("mask (lengths)", lengths, 0, T + 1)
            m = np.arange(T)[None, :] < lengths[:, None]
        else:
            m = validate.array("mask", m, (2,), "bool").astype(bool)
            validate.shape("mask", m, (B, T))
        if self.mode in ("many-to-one",) and not m.any(axis=1).all():
            b = int(np.flatnonzero(~m.any(axis=1))[0])
            raise UsageError(f"mask: sequence {b} has no valid step, expected at least one per sequence")
        return np.ascontiguousarray(m.T)

    # ---- forward -----------------------------------------------------------

    @blas.single_thread_when_small
    def forward(self, inputs, mask=None, h0=None, *, cond=None, rng=None, chars=None) -> Forward:
        """Run the network; return a `Forward` holding logits Z, final states hn and caches.

        Dropout (input_dropout, dropout, output_dropout) is applied when
        `self.training`, with masks drawn from `rng` (default: the model's own
        seeded Generator) and kept in the Forward for the backward pass.
        chars: (B, T, C) character ids of every token, for a model with a
        character encoder (input dropout then covers its columns of x_t too).
        """
        X, mask, state0, cond = self._prepare(inputs, mask, h0, cond)
        chars = self._prepare_chars(chars, X.shape[1], X.shape[0])
        B = X.shape[1]
        fwd = Forward(Z=None, hn=None, h0=None, X=X, ids=None, mask=mask, cond=cond)
        if cond is not None:
            state0, fwd.h0map = self._state_from_cond(cond)
        if state0 is None:
            state0 = self._parts(self.zero_state(B))
        fwd.state0, fwd.h0 = state0, state0[0]
        if self.embedding_size is not None:
            fwd.ids = X
            layer_in = self._embed(X)
            if chars is not None:
                enc, fwd.chars = char_encoder.forward(self.char_rnn, self._char_params(), chars, mask)
                layer_in = np.concatenate([layer_in, enc], axis=2)
        else:
            layer_in = X
        finals = []
        rng = self.rng if rng is None else rng
        fwd.in_drop = self._dropout_mask(rng, layer_in.shape, self.input_dropout)
        layer_in = dropout_layer.forward(layer_in, fwd.in_drop)
        for layer in range(self.num_layers):
            outs, caches = [], []
            runner = self._runner(layer)
            for d, name in enumerate(self.layer_names(layer)):
                k = layer * self.num_directions + d
                params = self._cell_params(name)
                M = self._weight_mask(rng, params["W"])
                if M is not None:
                    fwd.weight_drops[name] = M
                    params["W"] = dropout_layer.forward(params["W"], M)
                out, state_n, cache = runner.forward(
                    params, layer_in, tuple(s[k] for s in state0), mask, reverse=d == 1
                )
                outs.append(out)
                caches.append(cache)
                finals.append(state_n)
            layer_in = outs[0] if len(outs) == 1 or outs[0] is None else np.concatenate(outs, axis=2)
            fwd.caches.append(caches)
            drop = None
            if layer < self.num_layers - 1:
                drop = self._dropout_mask(rng, layer_in.shape, self.dropout)
                layer_in = dropout_layer.forward(layer_in, drop)
            fwd.drops.append(drop)
        fwd.state_n = tuple(np.stack(part) for part in zip(*finals))
        fwd.hn = fwd.state_n[0]
        # output dropout, on what the head reads: h^L_t, or the final states for pooling "last"
        top_shape = (1, B, self.num_directions * self.hidden_size) if self._reads_last else layer_in.shape
        fwd.out_drop = self._dropout_mask(rng, top_shape, self.output_dropout)
        self._head_forward(fwd, layer_in)
        return fwd

    @property
    def _reads_last(self) -> bool:
        """True when the head reads the final states (one-to-one, many-to-one with pooling "last" alone)."""
        return self._pool_kinds() == ("last",)

    def _dropout_mask(self, rng, shape: tuple, p: float) -> np.ndarray | None:
        """A dropout mask for an input of time-major `shape` (T, B, D) (locked: (1, B, D) when
        variational_dropout), or None when not training or p == 0."""
        if not self.training or p == 0:
            return None
        return dropout_layer.make_mask(rng, shape, p, self.dtype, locked=self.variational_dropout)

    def _weight_mask(self, rng, W: np.ndarray) -> np.ndarray | None:
        """A weight dropout mask M of W's shape (one draw for every sequence and step), or None
        when not training or weight_dropout == 0. Under MPI every rank draws the whole M from
        the generator they share (`bptt.training.distributed`), so each rank runs the same W * M."""
        if not self.training or self.weight_dropout == 0:
            return None
        rng = getattr(rng, "shared", rng)
        return dropout_layer.make_mask(rng, W.shape, self.weight_dropout, self.dtype)

    def _state_from_cond(self, cond: np.ndarray) -> tuple[tuple, np.ndarray]:
        """One-to-many: (state0 as a tuple of parts, the h0map cache) from cond (B, cond_size).
        h_0 = tanh(Q cond + q) (`bptt.layers.h0map`); other state parts start at zero."""
        h, act = h0map.forward(self.params["h0map.Q"], self.params["h0map.q"], cond, self.num_layers)
        return (h,) + tuple(np.zeros_like(h) for _ in range(self.cell.n_states - 1)), act

    def initial_state(self, cond) -> np.ndarray | tuple:
        """A one-to-many model's initial state from cond (B, cond_size), in the form `step` takes:
        (L, B, H), or a tuple for a two-part state."""
        if self.mode != "one-to-many":
            raise UsageError(f"cond: only for mode='one-to-many', got mode={self.mode!r}")
        cond = validate.array("cond", cond, (2,), "float")
        validate.shape("cond", cond, (None, self.cond_size))
        return self._joined(self._state_from_cond(cond.astype(self.dtype))[0])

    def _parts(self, state) -> tuple:
        """A state as users pass it (array or tuple) -> a tuple of parts."""
        return tuple(state) if isinstance(state, (tuple, list)) else (state,)

    def _runner(self, layer: int):
        """What runs one layer's cells: the cell itself, or the memory-saving wrapper
        around it, which skips the top layer's output when the head reads only the
        final states (pooling "last")."""
        if self.checkpoint_every is None:
            return self.cell
        keep_out = layer < self.num_layers - 1 or not self._reads_last
        return recompute.Recomputed(self.cell, every=self.checkpoint_every, keep_out=keep_out)

    def _pool_kinds(self) -> tuple[str, ...]:
        """What the head reads: ("last",) for one-to-one, the poolings for many-to-one, () for sequences."""
        if self.mode in SEQUENCE_MODES:
            return ()
        return ("last",) if self.mode == "one-to-one" else pooling_layer.parse(self.pooling)

    def _tables(self) -> list[tuple[str, int, int]]:
        """(parameter name, vocabulary size, width) of each embedding table, in input-column order."""
        tables = [("embed.E", self.vocab_size, self.embedding_size)]
        for f, n in enumerate(self.feature_vocab_sizes or (), 1):
            tables.append((f"embed{f}.E", n, self.feature_embedding_size))
        return tables

    def _embed(self, X: np.ndarray) -> np.ndarray:
        """x_t = [E[id_t]; E_1[f1_t]; ...]: X (T, B) or (T, B, 1 + F) ids -> (T, B, D)."""
        if X.ndim == 2:
            return embedding.forward(self.params["embed.E"], X)
        return np.concatenate(
            [embedding.forward(self.params[name], X[..., f]) for f, (name, _, _) in enumerate(self._tables())], axis=2
        )

    def _embed_backward(self, dX: np.ndarray, X: np.ndarray, grads: dict) -> None:
        """dL/dE and dL/dE_f: each table gets the scatter-add of its slice of dL/dx."""
        if X.ndim == 2:
            grads["embed.E"] = embedding.backward(dX, X, self.vocab_size)
            return
        start = 0
        for f, (name, n, width) in enumerate(self._tables()):
            grads[name] = embedding.backward(dX[..., start : start + width], X[..., f], n)
            start += width

    def _head_forward(self, fwd: Forward, top: np.ndarray | None) -> None:
        """Z = V h + c on every step, or on the pooled vector (many-to-one, one-to-one);
        h is the top layer's output times fwd.out_drop (output dropout), if set."""
        V, c = self.params[self.head_key], self.params["head.c"]
        if not self._reads_last:
            top = dropout_layer.forward(top, fwd.out_drop)
        if self.mode in SEQUENCE_MODES:
            T, B, F = top.shape
            fwd.feat = top.reshape(T * B, F)
            fwd.Z = dense.forward(V, c, fwd.feat).reshape(T, B, -1)
            return
        kinds = self._pool_kinds()
        if kinds == ("last",):  # the final states themselves; the outputs may not have been kept
            L1 = (self.num_layers - 1) * self.num_directions
            feat, info = np.concatenate(list(fwd.hn[L1:]), axis=1), None
            feat = dropout_layer.forward(feat, None if fwd.out_drop is None else fwd.out_drop[0])
        else:
            feat, info = pooling_layer.forward(kinds, top, fwd.mask, self.num_directions)
        fwd.feat, fwd.pool = feat, (kinds, info)
        fwd.Z = dense.forward(V, c, feat)

    # ---- loss --------------------------------------------------------------

    def loss(self, fwd: Forward, targets, loss_mask=None) -> tuple[float, np.ndarray]:
        """L and dL/dZ (same shape as fwd.Z) for the head's loss.

        loss_mask: optional (B, T) bool, the steps that carry a loss (sequence
        modes); padded steps and ignore_index targets never do.
        """
        Z = fwd.Z
        K = self.output_size
        seq = Z.ndim == 3
        B = Z.shape[1] if seq else Z.shape[0]
        lead = (B, fwd.T) if seq else (B,)
        Y = self._prepare_targets(targets, lead)
        if seq:
            Y = np.ascontiguousarray(np.swapaxes(Y, 0, 1))  # time-major
        valid = np.ones(Y.shape[: len(lead)], dtype=bool)
        if seq and fwd.mask is not None:
            valid &= fwd.mask
        if loss_mask is not None:
            if not seq:
                raise UsageError(f"loss_mask: only for sequence outputs, got mode={self.mode!r}")
            lm = validate.array("loss_mask", loss_mask, (2,), "bool").astype(bool)
            validate.shape("loss_mask", lm, lead)
            valid &= lm.T
        if self.head == "softmax":
            valid &= Y != self.ignore_index
            Y = np.where(valid, Y, 0)
        w = losses.row_weights(valid.reshape(-1), B, self.reduction, 1 if self.head == "softmax" else K, Z.dtype)
        Zf = Z.reshape(-1, K)
        Yf = Y.reshape(-1) if self.head == "softmax" else Y.reshape(-1, K).astype(Z.dtype)
        loss, dZ = losses.LOSSES[self.head](Zf, Yf, w)
        return loss, dZ.reshape(Z.shape)

    def _prepare_targets(self, targets, lead: tuple) -> np.ndarray:
        K = self.output_size
        if self.head == "softmax":
            Y = validate.array("targets", targets, (len(lead),), "int")
            validate.shape("targets", Y, lead)
            validate.in_range("targets", Y, 0, K, allowed=(self.ignore_index,))
            return Y
        Y = validate.array("targets", targets, (len(lead), len(lead) + 1), "float")
        if Y.ndim == len(lead):
            if K != 1:
                raise UsageError(f"targets: got shape {Y.shape}, expected {lead + (K,)} for output_size={K}")
            Y = Y[..., None]
        validate.shape("targets", Y, lead + (K,))
        if self.head == "sigmoid" and ((Y < 0) | (Y > 1)).any():
            raise UsageError("targets: a sigmoid head takes targets in [0, 1], found values outside")
        return Y

    # ---- backward ----------------------------------------------------------

    def head_backward(self, fwd: Forward, dZ: np.ndarray):
        """The head's part of the backward pass, no recursion through time.

        Returns (grads {"head.V", "head.c"}, dtop, dhn) (dL/dV under "head.V" even when V is
        tied to E: `backward` adds it to dL/dE): dtop (T, B, F) = dL/dh^L_t
        from the head on every step (None for "last" pooling), dhn (L * dirs, B, H)
        the gradient on the final states (nonzero only for "last" pooling).
        """
        H, nd = self.hidden_size, self.num_directions
        V = self.params[self.head_key]
        g, dfeat = dense.backward(dZ.reshape(-1, V.shape[0]), fwd.feat, V)
        grads = {"head.V": g["V"], "head.c": g["c"]}
        T, B = fwd.T, fwd.h0.shape[1]
        dtop, dhn = None, np.zeros_like(fwd.hn)
        if fwd.pool is None:
            dtop = dfeat.reshape(T, B, -1)
        else:
            kinds, info = fwd.pool
            if kinds == ("last",):
                dfeat = dropout_layer.backward(dfeat, None if fwd.out_drop is None else fwd.out_drop[0])
                L1 = (self.num_layers - 1) * nd
                for d in range(nd):
                    dhn[L1 + d] = dfeat[:, d * H : (d + 1) * H]
            else:
                dtop = pooling_layer.backward(kinds, dfeat, info, T)
        if not self._reads_last:
            dtop = dropout_layer.backward(dtop, fwd.out_drop)
        return grads, dtop, dhn

    @blas.single_thread_when_small
    def backward(self, fwd: Forward, dZ: np.ndarray, horizon: int | None = None, *, taps: dict | None = None):
        """BPTT from dL/dZ back to every parameter and to h_0.

        Returns (grads, dh0): grads keyed like `params`, dh0 (L * dirs, B, H) the
        gradient on the initial state (a tuple (dh0, dc0) for a two-part state).
        horizon: per-output truncation (see `bptt.layers.truncation`), or None for exact BPTT.
        taps: if a dict, receives taps[(layer, direction)] = (dout, dhn), the
        gradients that enter each layer direction from above (what
        `bptt.analysis.diagnostics` and `bptt.analysis.rtrl` need).
        """
        p, H, nd = self.params, self.hidden_size, self.num_directions
        grads, dtop, dhn = self.head_backward(fwd, dZ)
        dstate_n = (dhn,) + tuple(np.zeros_like(s) for s in fwd.state_n[1:])
        dstate0 = tuple(np.zeros_like(s) for s in fwd.state0)
        for layer in range(self.num_layers - 1, -1, -1):
            dtop = dropout_layer.backward(dtop, fwd.drops[layer])
            need_dX = layer > 0 or self.embedding_size is not None
            runner = self._runner(layer)
            dX_total = None
            for d, name in enumerate(self.layer_names(layer)):
                dout = None if dtop is None else dtop[:, :, d * H : (d + 1) * H]
                k = layer * nd + d
                if taps is not None:
                    taps[(layer, d)] = (dout, dhn[k].copy())
                dX, g, ds0 = runner.backward(
                    dout, tuple(s[k] for s in dstate_n), fwd.caches[layer][d], need_dX, horizon
                )
                for part, ds in zip(dstate0, ds0):
                    part[k] = ds
                if name in fwd.weight_drops:  # W was used as W * M: dL/dW = dL/d(W * M) * M
                    g["W"] = dropout_layer.backward(g["W"], fwd.weight_drops[name])
                grads.update((f"{name}.{key}", v) for key, v in g.items())
                if dX is not None:
                    dX_total = dX if dX_total is None else dX_total + dX
            dtop = dX_total
        if self.embedding_size is not None:
            dtop = dropout_layer.backward(dtop, fwd.in_drop)
            if fwd.chars is not None:  # the last 2 H_c columns of dL/dx_t go to the character encoder
                Hc2 = 2 * self.char_hidden_size
                g = char_encoder.backward(self.char_rnn, self._char_params(), dtop[..., -Hc2:], fwd.chars)
                grads.update((_char_key(k), v) for k, v in g.items())
                dtop = dtop[..., :-Hc2]
            self._embed_backward(dtop, fwd.ids, grads)
        if self.tie_weights:  # E is used twice, as the embedding and as V: dL/dE is the sum of both
            grads["embed.E"] += grads.pop("head.V")
        if fwd.cond is not None:
            g = h0map.backward(dstate0[0], fwd.h0map, fwd.cond, p["h0map.Q"])
            grads["h0map.Q"], grads["h0map.q"] = g["Q"], g["q"]
        return {k: grads[k] for k in p}, self._joined(dstate0)

    # ---- public API --------------------------------------------------------

    def loss_and_grads(
        self,
        inputs,
        targets,
        mask=None,
        h0=None,
        *,
        cond=None,
        loss_mask=None,
        horizon: int | None = None,
        rng=None,
        return_state: bool = False,
        chars=None,
    ):
        """One forward pass and one BPTT sweep: (loss, grads), grads keyed like `params`.

        inputs: ids (B, T) or features (B, T, D) (one-to-one: (B,) or (B, D));
        targets: class ids (B, T) / (B,) for softmax, values (B, T[, K]) / (B[, K]) otherwise;
        mask: (B, T) bool or lengths (B,); h0: (L * dirs, B, H) (a tuple (h0, c0) for a
        two-part state); cond: (B, cond_size) for one-to-many; chars: (B, T, C) character
        ids (0 = padding) for a model with a character encoder. With return_state=True
        also returns {"hn", "dh0"}, and {"cn", "dc0"} for a two-part state (h, c).
        """
        if horizon is not None:
            from bptt.layers.truncation import check_horizon

            check_horizon(self, horizon)
        fwd = self.forward(inputs, mask, h0, cond=cond, rng=rng, chars=chars)
        loss, dZ = self.loss(fwd, targets, loss_mask)
        grads, dstate0 = self.backward(fwd, dZ, horizon)
        if return_state:
            state = {}
            for name, sn, ds0 in zip(self.cell.state_names, fwd.state_n, self._parts(dstate0)):
                state[f"{name}n"], state[f"d{name}0"] = sn, ds0
            return loss, grads, state
        return loss, grads

    def state_after(self, fwd: Forward, steps: int):
        """The state of every layer after `steps` steps of a forward pass, (L, B, H) (a tuple
        of such arrays for a two-part state): what a truncated-BPTT window hands to the
        next one. Unidirectional only."""
        if self.bidirectional:
            raise UsageError("state_after: a bidirectional layer has no single state at step t")
        per_layer = [caches[0].state(steps) for caches in fwd.caches]
        return self._joined(tuple(np.stack(part) for part in zip(*per_layer)))

    def step(self, ids: np.ndarray, h):
        """One time step for generation: ids (B,) tokens, h (L, B, H) (a tuple for a two-part
        state) -> (logits (B, K), new state of the same form).

        Each layer's cell.step in turn (Elman: h_t^l = f(U^l x_t + W^l h_{t-1}^l + b^l)),
        then z_t = V h_t^L + c, with no dropout. Token models only; unidirectional only.
        """
        p = self.params
        if self.feature_vocab_sizes:
            raise UsageError("step: generation feeds back tokens alone, a model with feature columns cannot")
        if self.char_hidden_size is not None:
            raise UsageError("step: generation feeds back tokens alone, a model with a character encoder cannot")
        x = p["embed.E"][ids] if self.embedding_size is not None else ids
        parts = self._parts(h)
        new = []
        for layer in range(self.num_layers):
            x, state = self.cell.step(self._cell_params(f"rnn{layer}"), x, tuple(s[layer] for s in parts))
            new.append(state)
        return dense.forward(p[self.head_key], p["head.c"], x), self._joined(
            tuple(np.stack(part) for part in zip(*new))
        )

    def predict(self, inputs, mask=None, h0=None, *, cond=None, chars=None) -> np.ndarray:
        """y^ = g(z): probabilities (softmax, sigmoid) or values (linear), batch-first.

        Sequence modes give (B, T, K), with zeros at padded steps; the others (B, K).
        Runs in evaluation mode (no dropout).
        """
        training, self.training = self.training, False
        try:
            fwd = self.forward(inputs, mask, h0, cond=cond, chars=chars)
        finally:
            self.training = training
        Y = losses.output(self.head, fwd.Z)
        if Y.ndim == 3:
            if fwd.mask is not None:
                Y = Y * fwd.mask[:, :, None]
            Y = np.ascontiguousarray(Y.transpose(1, 0, 2))
        return Y


def _config_property(name: str) -> property:
    return property(lambda self: getattr(self.config, name), doc=f"model.config.{name}")


for _field in dataclasses.fields(ModelConfig):
    if _field.name != "cell":  # model.cell is the Cell object; model.config.cell its name
        setattr(RNNModel, _field.name, _config_property(_field.name))
