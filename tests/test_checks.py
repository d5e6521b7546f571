"""One convention for a user's mistake: bptt.errors.UsageError (a ValueError too), from bptt.checks.

Every argument check of the library raises UsageError naming the argument, and the
command line's argparse types refuse a flag with the same rule and the same words.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import numpy as np
import pytest

from bptt import checks
from bptt.errors import BpttError, UsageError
from bptt.training import options

SRC = Path(__file__).resolve().parents[1] / "src" / "bptt"


def test_a_usage_error_is_a_value_error_and_a_bptt_error():
    assert issubclass(UsageError, ValueError) and issubclass(UsageError, BpttError)


def _sgd(**kw):
    from bptt.training.optim import SGD

    return SGD(**kw)


def _step_decay(**kw):
    from bptt.training.optim import SGD
    from bptt.training.schedules import StepDecay

    return StepDecay(SGD(lr=0.1), **kw)


def _plateau(**kw):
    from bptt.training.optim import SGD
    from bptt.training.schedules import ReduceOnPlateau

    return ReduceOnPlateau(SGD(lr=0.1), **kw)


def _model(**kw):
    from bptt.model import RNNModel

    return RNNModel(**{"vocab_size": 5, "hidden_size": 3, **kw})


def _clip(clip):
    from bptt.training.clipping import clip_value

    return clip_value({"W": np.ones(2)}, clip)


def _sample(**kw):
    from bptt.generate import sample

    return sample(_model(), np.array([1]), 3, **kw)


def _streams(ids):
    from bptt.data.streams import Streams

    return Streams(ids, 2, 3)


def _adding(variant):
    from bptt.data import synthetic

    return synthetic.adding(np.random.default_rng(0), 2, 20, variant)


def _estimate(**kw):
    from bptt.training import resources

    return resources.estimate_model({"vocab_size": 5, "hidden_size": 3, "output_size": 5}, steps=4, batch_size=2, **kw)


def _rtrl_two_layers():
    from bptt.analysis import rtrl

    return rtrl.check_supported(_model(num_layers=2))


MISTAKES = [
    ("model hidden_size", lambda: _model(hidden_size=0), "hidden_size: got 0, expected an integer >= 1"),
    ("model dropout", lambda: _model(dropout=1.0), "dropout: got 1.0, expected a number in [0, 1)"),
    ("model head", lambda: _model(head="tanh", output_size=2), "head: got 'tanh', expected one of"),
    ("model both inputs", lambda: _model(input_size=3), "input_size / vocab_size: give exactly one"),
    ("model ids out of range", lambda: _model().forward(np.array([[7]])), "inputs: found 7, expected values in [0, 5)"),
    ("model inputs dtype", lambda: _model().forward(np.array([[0.5]])), "inputs: got dtype float64, expected integer"),
    ("lr", lambda: _sgd(lr=-0.1), "--lr: got -0.1, expected a positive finite number"),
    ("momentum", lambda: _sgd(lr=0.1, momentum=-1), "momentum: got -1, expected a finite number >= 0"),
    ("dampening", lambda: _sgd(lr=0.1, dampening=math.inf), "dampening: got inf, expected a finite number"),
    ("lr decay", lambda: _step_decay(factor=0), "--lr-decay: got 0, expected a positive finite number"),
    ("lr decay every", lambda: _step_decay(factor=0.5, every=0), "--lr-decay-every: got 0, expected an integer >= 1"),
    ("plateau factor", lambda: _plateau(factor=1.0), "factor: got 1.0, expected a number in (0, 1)"),
    ("plateau patience", lambda: _plateau(patience=-1), "patience: got -1, expected an integer >= 0"),
    ("clip value", lambda: _clip(0.0), "--clip-value: got 0.0, expected a positive finite number"),
    ("temperature", lambda: _sample(temperature=0), "temperature: got 0, expected a positive number"),
    ("top_k", lambda: _sample(top_k=0), "top_k: got 0, expected an integer >= 1"),
    ("stream ids", lambda: _streams(np.zeros((2, 2), int)), "ids: expected a 1-D array"),
    ("adding variant", lambda: _adding("product"), "variant: got 'product', expected one of"),
    ("estimate optimizer", lambda: _estimate(optimizer="lbfgs"), "optimizer: got 'lbfgs', expected one of"),
    ("rtrl layers", _rtrl_two_layers, "rtrl: one recurrent layer only"),
]


@pytest.mark.parametrize("make, message", [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_every_argument_mistake_is_a_usage_error(make, message):
    with pytest.raises(UsageError) as caught:
        make()
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "parse, expect, bad, good",
    [
        (options.positive_float, checks.POSITIVE_NUMBER, ["nan", "inf", "0", "-1", "x"], ["1e-3", "5"]),
        (options.fraction, checks.FRACTION, ["1", "-0.1", "nan"], ["0", "0.5"]),
        (options.positive_int, checks.POSITIVE_INT, ["0", "-4", "1.5"], ["1", "64"]),
        (options.non_negative_int, checks.NON_NEGATIVE_INT, ["-1", "x"], ["0", "3"]),
    ],
)
def test_a_flag_is_refused_by_the_rule_and_in_the_words_of_its_argument(parse, expect, bad, good):
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(f"got {text}, expected {expect.words}")):
            parse(text)
    for text in good:
        assert expect.check("x", parse(text)) == parse(text)
    with pytest.raises(UsageError, match=re.escape(f"x: got None, expected {expect.words}")):
        expect.check("x", None)


def test_bools_are_not_numbers():
    for expect in (checks.POSITIVE_INT, checks.NON_NEGATIVE_INT, checks.POSITIVE_NUMBER, checks.FRACTION):
        with pytest.raises(UsageError):
            expect.check("x", True)


# Raising ValueError for a user's mistake is what the convention replaces. Left: layers/,
# whose cells are being rewritten.
ALLOWED = {}


def test_no_plain_value_error_is_raised_outside_the_allowed_places():
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        n = path.read_text().count("raise ValueError(")
        if n and not rel.startswith("layers/"):
            found[rel] = n
    assert found == ALLOWED
