"""The language model's own defaults: `bptt train`'s are the character model's, --level word and
--cell lstm/gru set theirs (flags given win), and every other task keeps the values it had before
(clipping at 5, no learning-rate decay) unless it sets its own."""

import pytest

from bptt import tasks
from bptt.cli import build_parser
from bptt.tasks import lm
from bptt.training.config import parse_with_config
from bptt.training.options import task_defaults


def parsed(*flags):
    args = build_parser().parse_args(["train", *flags])
    args.argv = list(flags)
    args = parse_with_config(args)
    tasks.apply_defaults(args)
    if args.task == "lm":
        task_defaults(args, **lm.CELL_DEFAULTS.get(args.cell, {}))
        task_defaults(args, **lm.LEVEL_DEFAULTS.get(args.level, {}))
    return args


def test_the_character_model_defaults():
    a = parsed()
    assert (a.clip_norm, a.lr_decay, a.lr_decay_after, a.dropout) == (2.0, 0.8, 5, 0.0)
    assert (a.batch_size, a.seq_length, a.lr, a.hidden_size, a.max_epochs) == (32, 50, 2e-3, 256, 10.0)


def test_word_level_and_lstm_defaults_and_flags_win():
    w = parsed("--level", "word")
    assert (w.batch_size, w.seq_length, w.lr, w.clip_norm, w.dropout) == (8, 35, 5e-4, 2.0, 0.2)
    assert parsed("--level", "word", "--clip-norm", "3").clip_norm == 3.0
    lstm = parsed("--cell", "lstm")
    assert (lstm.hidden_size, lstm.num_layers, lstm.lr, lstm.forget_bias) == (256, 1, 4e-3, 1.0)
    assert (lstm.max_epochs, lstm.clip_norm) == (10.0, 2.0)
    assert parsed("--cell", "lstm", "--num-layers", "2", "--lr", "1e-3").num_layers == 2


@pytest.mark.parametrize("task", ["tag", "classify", "regress", "spell"])
def test_other_tasks_keep_their_clipping_and_schedule(task):
    a = parsed("--task", task)
    assert (a.clip_norm, a.lr_decay, a.lr_decay_after) == (5.0, 1.0, 0)
    assert parsed("--task", task, "--clip-norm", "3").clip_norm == 3.0


def test_the_long_memory_tasks_have_no_learning_rate_decay():
    a = parsed("--task", "adding")
    assert a.lr_decay == 1.0  # and their own --clip-norm 1 when they run
