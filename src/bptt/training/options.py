"""Command-line options shared by every command that builds a model, and the TrainOptions they make.

`bptt train` and `bptt gradcheck` take the same model options under the same
names (those of torch.nn.RNN and char-rnn), so a gradient check can be run on
exactly the architecture a user trains. A task sets its own defaults for the
shared options with `task_defaults`; `options_from_args` and `resumed_options`
turn parsed options, or a checkpoint's, into `bptt.training.loop.TrainOptions`.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import fields

from bptt import checks
from bptt.errors import CheckpointError
from bptt.layers import cells


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description as written; each option's help ends with its default, unless it says it itself
    (a flag that is off, or an option whose default is "none", shows none)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        unset = default is None or default is False or default is argparse.SUPPRESS or default == ""
        if action.option_strings and not unset and "default" not in text:
            text += f" (default: {show_default(default)})"
        return text


def show_default(value) -> str:
    """A default as a user would type it: 0.002, 1000,10000, a path as given."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value).replace("%", "%%")


def _number(text: str, convert, expect: checks.Expect):
    """argparse type: `text` converted and checked by the rule `expect` of `bptt.checks`, or
    argparse's one line "argument --flag: got TEXT, expected <expect.words>"."""
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not expect.ok(value):
        raise argparse.ArgumentTypeError(f"got {text}, expected {expect.words}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, checks.POSITIVE_INT)


def non_negative_int(text: str) -> int:
    return _number(text, int, checks.NON_NEGATIVE_INT)


def positive_float(text: str) -> float:
    return _number(text, float, checks.POSITIVE_NUMBER)


def non_negative_float(text: str) -> float:
    return _number(text, float, checks.NON_NEGATIVE_NUMBER)


def fraction(text: str) -> float:
    return _number(text, float, checks.FRACTION)


def finite_float(text: str) -> float:
    return _number(text, float, checks.Expect("a finite number", math.isfinite))


def pooling_list(text: str) -> str:
    """argparse type: "mean,max" -> "mean,max", checked by `bptt.layers.pooling.parse`."""
    from bptt.errors import UsageError
    from bptt.layers import pooling

    try:
        return ",".join(pooling.parse(text))
    except UsageError:
        raise argparse.ArgumentTypeError(
            f"got {text}, expected one or more of {', '.join(pooling.POOLINGS)}, comma-separated, without repeats"
        ) from None


def checkpoint_every(text: str) -> int | str:
    every = checks.Expect("a positive integer or 'auto'", checks.POSITIVE_INT.ok)
    return "auto" if text == "auto" else _number(text, int, every)


def add_model_options(p: argparse.ArgumentParser, defaults: dict) -> None:
    """The architecture: every option RNNModel takes, with the CLI's defaults."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--hidden-size",
        type=positive_int,
        default=defaults.get("hidden_size", 8),
        help="H, units per layer and direction",
    )
    g.add_argument(
        "--num-layers", type=positive_int, default=defaults.get("num_layers", 1), help="stacked recurrent layers"
    )
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
    g.add_argument("--bidirectional", action="store_true", help="add a reverse-time direction to each layer")
    g.add_argument(
        "--dropout", type=fraction, default=defaults.get("dropout", 0.0), help="between layers, training only"
    )
    g.add_argument(
        "--input-dropout",
        type=fraction,
        default=defaults.get("input_dropout", 0.0),
        help="on the first layer's inputs x_t (the embeddings): embedding dropout",
    )
    g.add_argument(
        "--output-dropout",
        type=fraction,
        default=defaults.get("output_dropout", 0.0),
        help="on the top layer's outputs h_t before pooling and the head",
    )
    g.add_argument(
        "--variational-dropout",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="one dropout mask per sequence, shared by every time step (locked dropout, Gal & Ghahramani 2016); "
        "default: off, on for --task classify",
    )
    g.add_argument(
        "--weight-dropout",
        type=fraction,
        default=defaults.get("weight_dropout", 0.0),
        help="DropConnect on each recurrent layer's hidden-to-hidden matrix W, one mask per batch "
        "(the weight-dropped LSTM, Merity et al. 2018)",
    )
    g.add_argument(
        "--embedding-size",
        type=positive_int,
        default=defaults.get("embedding_size"),
        help="size of an embedding table for token inputs (unset: one-hot inputs)",
    )
    g.add_argument(
        "--init",
        choices=["pytorch", "xavier", "orthogonal", "identity", "spectral"],
        default="pytorch",
        help="initialisation of W (identity with --nonlinearity relu: the IRNN)",
    )
    g.add_argument(
        "--init-scale",
        type=positive_float,
        default=1.0,
        help="gain of orthogonal / scale of identity / spectral radius of spectral init",
    )
    g.add_argument("--no-bias", action="store_true", help="drop b (and keep c)")
    g.add_argument(
        "--seed",
        type=non_negative_int,
        default=defaults.get("seed", 0),
        help="seeds the initialisation, dropout and the data order",
    )
    g.add_argument(
        "--checkpoint-every",
        type=checkpoint_every,
        default=None,
        metavar="K|auto",
        help="memory-saving BPTT: keep every K-th hidden state and recompute the rest (auto: sqrt(T))",
    )
    g.add_argument(
        "--tie-weights",
        action="store_true",
        help="the output layer's V is the embedding table (Press & Wolf 2017); needs --embedding-size = "
        "--hidden-size (a language model sets it so when not given)",
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
        input_dropout=args.input_dropout,
        output_dropout=args.output_dropout,
        variational_dropout=args.variational_dropout,
        weight_dropout=args.weight_dropout,
        embedding_size=args.embedding_size,
        init=args.init,
        init_scale=args.init_scale,
        bias=not args.no_bias,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        tie_weights=getattr(args, "tie_weights", False),
    )


def task_defaults(args: argparse.Namespace, **defaults) -> None:
    """A task's own defaults for shared options, for every option the user did not give."""
    for dest, value in defaults.items():
        if dest not in args.given:
            setattr(args, dest, value)


def options_from_args(args):
    """The TrainOptions of parsed `bptt train` options (every field that has a flag)."""
    from bptt.training.loop import TrainOptions
    from bptt.training.optim import default_weight_decay

    opts = TrainOptions(**{f.name: getattr(args, f.name) for f in fields(TrainOptions) if hasattr(args, f.name)})
    if opts.weight_decay is None:  # saved explicitly, so a resume compares it with a value
        opts.weight_decay = default_weight_decay(opts.optimizer)
    if args.no_clip_norm:
        opts.clip_norm = None
    if getattr(args, "argv", None) is not None:
        opts.command = ["bptt", "train", *args.argv]
    return opts


def resumed_options(args, ckpt):
    """The saved TrainOptions of a run, with the changes a resume may make (`bptt.training.resumable`)."""
    from bptt.training import resumable
    from bptt.training.loop import TrainOptions

    try:
        opts = TrainOptions(**ckpt.train_state["options"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{args.resume}: checkpoint.json has no usable training options ({e})") from None
    if not isinstance(opts.extra, dict):
        raise CheckpointError(f"{args.resume}: checkpoint.json: training options 'extra' is not a JSON object")
    resumable.apply(args, opts, ckpt.model_config)  # the budget, evaluation and output flags; refuses the rest
    return opts


def add_weights_option(p) -> None:
    """`--last` of the commands that use a trained run's weights (evaluate, predict, generate, export)."""
    p.add_argument(
        "--last",
        action="store_true",
        help="use the latest checkpoint's weights, not the best evaluation's (RUN_DIR/best, when the run kept one)",
    )
