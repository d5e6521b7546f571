"""`bptt train`: train a model; by default a character- or word-level language model, char-rnn style.

With no arguments it trains a character model on a corpus that ships with
Python (the standard library's help topics), evaluates on a held-out tail,
and prints bits per character and samples. `--task NAME` trains one of the
other tasks (`bptt.tasks`). Options may also come from a TOML or JSON file
(`--config`), whose keys are the option names; flags given on the command
line win.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from bptt.errors import UsageError
from bptt.training.config import parse_with_config
from bptt.training.optim import OPTIMIZERS
from bptt.training.options import (
    add_model_options,
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    resumed_options,
)
from bptt.training.rundir import check_writable

DEFAULTS_NOTE = """
The defaults shown are the character language model's (--level word: --batch-size 8
--seq-length 35 --lr 0.0005 --dropout 0.2 --lr-decay-after 3; --cell lstm: --num-layers 1
--hidden-size 256 --lr 0.004 --forget-bias 1, the word level's --lr winning; --cell gru:
--hidden-size 148). Every other --task starts from
--clip-norm 5 --lr-decay 1 and sets its own for some (the long-memory tasks: --nonlinearity relu --init identity --hidden-size 64
--lr 0.001 --clip-norm 1 --max-epochs 200 --eval-every 100, the IRNN; relu and
identity for the Elman cell only; --task classify: a bidirectional --cell lstm
--forget-bias 1, --hidden-size 128 --embedding-size 128 --pooling mean,max
--input-dropout 0.3 --output-dropout 0.5 --variational-dropout --max-epochs 20
--valid-fraction 0.1 --ema 0.998, and for words --min-freq 2 --word-dropout 0.2
--char-hidden-size 50; --task tag: bidirectional --cell lstm, --hidden-size 128 --num-layers 1
--embedding-size 100 --char-hidden-size 100 --max-epochs 20 --word-dropout 0.25 --ema 0.998),
and flags you give always win. On --resume only the budget, evaluation and
output options may be given (see docs/cli.md).
"""


def add_parser(sub) -> None:
    from bptt import tasks

    p = sub.add_parser(
        "train",
        help="train a model (default: a character language model on Python's help text)",
        description=__doc__ + DEFAULTS_NOTE,
        usage="%(prog)s [options]",
    )
    p.add_argument("--task", choices=tasks.names(), default="lm", help="what to train (default: lm, a language model)")
    d = p.add_argument_group("data")
    d.add_argument("--data", type=Path, help="a UTF-8 text file (default: the built-in corpus)")
    d.add_argument("--valid", type=Path, help="validation text (default: the last --valid-fraction of --data)")
    d.add_argument(
        "--valid-fraction",
        type=fraction,
        default=0.05,
        help="without --valid: the held-out tail of --data (language models), or a seeded random share of "
        "its examples (tag, classify, regress; default there: 0.1 for classify, none for the others)",
    )
    d.add_argument("--level", choices=["char", "word"], default="char", help="tokens: characters or words")
    d.add_argument("--encoding", default="utf-8", help="of --data and --valid")
    d.add_argument("--lowercase", action="store_true", help="word level: fold case")
    d.add_argument("--min-freq", type=positive_int, default=1, help="word level: rarer words become <unk>")
    d.add_argument("--vocab-size", type=positive_int, default=None, help="word level: keep the most frequent words")
    d.add_argument("--no-sentence-ends", action="store_true", help="word level: no <eos> token at line ends")
    add_model_options(p, {"hidden_size": 256, "num_layers": 2, "embedding_size": 64})
    t = p.add_argument_group("truncated BPTT")
    t.add_argument("--seq-length", type=positive_int, default=50, help="k1: new steps per update")
    t.add_argument("--backprop-steps", type=positive_int, default=None, help="k2 >= k1: TBPTT(k1, k2) window")
    t.add_argument("--horizon", type=positive_int, default=None, help="tau: each loss backpropagates tau steps")
    t.add_argument("--batch-size", type=positive_int, default=32, help="parallel streams")
    o = p.add_argument_group("optimization")
    o.add_argument(
        "--optimizer",
        choices=list(OPTIMIZERS),
        default="adam",
        help="update rule (adamw: Adam, decoupled weight decay)",
    )
    o.add_argument(
        "--weight-decay",
        type=non_negative_float,
        default=None,
        help="wd: L2, wd theta added to the gradient (torch's weight_decay); for --optimizer adamw decoupled, "
        "theta <- theta - lr wd theta before the step (default: 0.01 for adamw, else 0)",
    )
    o.add_argument("--lr", type=positive_float, default=2e-3, help="learning rate")
    o.add_argument("--momentum", type=fraction, default=0.9, help="for --optimizer momentum")
    o.add_argument("--nesterov", action="store_true", help="Nesterov momentum, for --optimizer momentum")
    o.add_argument(
        "--lr-decay", type=positive_float, default=0.8, help="multiply lr by this every --lr-decay-every epochs"
    )
    o.add_argument(
        "--lr-decay-every", type=positive_int, default=1, help="epochs between decays (1: exponential decay)"
    )
    o.add_argument("--lr-decay-after", type=non_negative_int, default=5, help="epochs before --lr-decay starts")
    o.add_argument("--lr-plateau", action="store_true", help="halve lr when validation loss stops improving")
    o.add_argument(
        "--ema",
        type=fraction,
        default=0.0,
        metavar="DECAY",
        help="evaluate, keep and use an exponential moving average of the weights, theta_bar <- d theta_bar + "
        "(1 - d) theta after every update, d = min(DECAY, (1 + n) / (10 + n)) (Keras' ema_momentum); 0: off",
    )
    o.add_argument(
        "--clip-norm",
        type=positive_float,
        default=2.0,
        help="global gradient norm (Pascanu et al.) of the per-token mean loss: above a language model's "
        "typical norms (0.5 char, 1.2 word), below their spikes (docs/language-models.md)",
    )
    o.add_argument("--no-clip-norm", action="store_true", help="no global-norm clipping")
    o.add_argument("--clip-value", type=positive_float, default=None, help="element-wise clip (char-rnn)")
    o.add_argument("--clip-per-tensor", action="store_true", help="clip each tensor's norm separately")
    o.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="of weights and activations")
    o.add_argument(
        "--max-rollbacks", type=non_negative_int, default=5, help="non-finite losses rolled back before giving up"
    )
    o.add_argument("--rollback-factor", type=fraction, default=0.5, help="lr multiplier at each rollback")
    b = p.add_argument_group("budget and output")
    b.add_argument("--max-epochs", type=positive_float, default=10.0, help="passes over the training data")
    b.add_argument("--max-time", type=positive_float, default=None, help="seconds")
    b.add_argument("--eval-every", type=positive_int, default=200, help="updates between evaluations")
    b.add_argument("--early-stopping", type=positive_int, default=None, help="evaluations without improvement")
    b.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<corpus>-<level>[-N])")
    b.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR", help="continue a run exactly")
    b.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    b.add_argument("--keep", type=positive_int, default=1, help="checkpoints kept")
    b.add_argument(
        "--keep-best",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the best evaluation's checkpoint in RUN_DIR/best, the weights evaluate, predict, generate "
        "and export use unless given --last (default: on whenever the run has validation data, except the "
        "long-memory tasks, which test the weights they end with)",
    )
    b.add_argument("--samples", type=non_negative_int, default=3, help="samples printed at the end")
    b.add_argument("--sample-length", type=positive_int, default=200, help="tokens per sample")
    b.add_argument("--temperature", type=positive_float, default=0.8, help="of the samples (lower: more likely text)")
    b.add_argument("--config", type=Path, default=None, help="TOML or JSON file of options")
    b.add_argument(
        "--diagnostics",
        action="store_true",
        help="record every update's gradient norm per tensor and clipping to RUN_DIR/grad-norms.jsonl",
    )
    b.add_argument(
        "--tensorboard",
        action="store_true",
        help="write TensorBoard event files into the run directory (see docs/monitoring.md)",
    )
    importlib.import_module("bptt.tasks.common").add_options(p)  # shared by tag and classify
    for name in dict.fromkeys(tasks.TASKS.values()):  # a module may serve several tasks
        module = importlib.import_module(name)
        if hasattr(module, "add_options"):  # the language model's flags are the shared ones above
            module.add_options(p)
    p.set_defaults(run=run, parser=p)


def run(args: argparse.Namespace) -> int:
    """Merge --config under the command line, then start the task (or continue --resume RUN_DIR)."""
    from bptt import tasks

    args = parse_with_config(args)
    if args.resume is not None:
        if "folds" in args.given:
            raise UsageError("--folds: a cross-validation is K runs; continue one with --resume RUN_DIR/fold-k")
        return resume(args)
    tasks.check_options(args)
    tasks.apply_defaults(args)
    return tasks.module(args.task).run(args)


def resume(args) -> int:
    """Continue the run in args.resume exactly where its last checkpoint left it."""
    from bptt import tasks
    from bptt.training import lock
    from bptt.training.runs import load_run

    run_dir = args.resume
    lock.hold(run_dir, args, create=False, what=f"--resume {run_dir}")  # before reading: no save is under way
    model, ckpt = load_run(run_dir, averaged=False)  # the weights training reached, to go on from
    check_writable(run_dir, f"--resume {run_dir}")
    opts = resumed_options(args, ckpt)
    task = opts.extra.get("task", "lm")
    if task not in tasks.TASKS:
        raise UsageError(f"--resume {run_dir}: the run is of task {task!r}, which this bptt does not know")
    return tasks.module(task).resume(args, model, ckpt, opts)
