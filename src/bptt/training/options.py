"""Command-line options shared by every command that builds a model.

`bptt train` and `bptt gradcheck` take the same model options under the same
names (those of torch.nn.RNN and char-rnn), so a gradient check can be run on
exactly the architecture a user trains.
"""

from __future__ import annotations

import argparse
import math

from bptt.layers import cells


def _number(text: str, convert, ok, expected: str):
    """argparse type: convert `text`, or say what was expected."""
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"got {text}, expected {expected}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    return _number(text, float, lambda v: math.isfinite(v) and v > 0, "a positive finite number")


def fraction(text: str) -> float:
    return _number(text, float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")


def finite_float(text: str) -> float:
    return _number(text, float, math.isfinite, "a finite number")


def checkpoint_every(text: str) -> int | str:
    return "auto" if text == "auto" else _number(text, int, lambda v: v >= 1, "a positive integer or 'auto'")


def add_model_options(p: argparse.ArgumentParser, defaults: dict) -> None:
    """The architecture: every option RNNModel takes, with the CLI's defaults."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--hidden-size",
        type=positive_int,
        default=defaults.get("hidden_size", 8),
        help="H, units per layer and direction",
    )
    g.add_argument("--num-layers", type=positive_int, default=defaults.get("num_layers", 1))
    g.add_argument(
        "--cell", choices=list(cells.CELLS), default="elman", help="the recurrent cell (bptt.layers.cells.CELLS)"
    )
    g.add_argument(
        "--forget-bias",
        type=finite_float,
        default=0.0,
        help="--cell lstm: added to the forget gate's bias at initialisation (1 as Jozefowicz et al. 2015)",
    )
    g.add_argument(
        "--nonlinearity", choices=["tanh", "relu", "sigmoid", "identity"], default="tanh", help="f in h_t = f(a_t)"
    )
    g.add_argument("--bidirectional", action="store_true")
    g.add_argument(
        "--dropout", type=fraction, default=defaults.get("dropout", 0.0), help="between layers, training only"
    )
    g.add_argument(
        "--embedding-size",
        type=positive_int,
        default=defaults.get("embedding_size"),
        help="an embedding table for token inputs (default: one-hot inputs)",
    )
    g.add_argument("--init", choices=["pytorch", "xavier", "orthogonal", "identity", "spectral"], default="pytorch")
    g.add_argument(
        "--init-scale",
        type=positive_float,
        default=1.0,
        help="gain of orthogonal / scale of identity / spectral radius of spectral init",
    )
    g.add_argument("--no-bias", action="store_true", help="drop b (and keep c)")
    g.add_argument("--seed", type=non_negative_int, default=defaults.get("seed", 0))
    g.add_argument(
        "--checkpoint-every",
        type=checkpoint_every,
        default=None,
        metavar="K|auto",
        help="memory-saving BPTT: keep every K-th hidden state and recompute the rest (auto: sqrt(T))",
    )


def model_kwargs(args: argparse.Namespace) -> dict:
    """RNNModel keyword arguments from parsed model options."""
    return dict(
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        cell=args.cell,
        forget_bias=args.forget_bias,
        nonlinearity=args.nonlinearity,
        bidirectional=args.bidirectional,
        dropout=args.dropout,
        embedding_size=args.embedding_size,
        init=args.init,
        init_scale=args.init_scale,
        bias=not args.no_bias,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
    )
