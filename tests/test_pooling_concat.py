"""Concatenated pooling (pooling="mean,max", ...): the head reads [p_1; p_2; ...], so V is
(K, n * F); every parameter and h0 checked against central differences in float64 for the
three cells, one and two directions, two layers, uneven masks and the memory-saving mode; and
the single poolings unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from bptt import RNNModel
from bptt.analysis.gradcheck import gradcheck
from bptt.errors import UsageError
from bptt.layers import pooling
from helpers import make_batch, make_model, random_h0

COMBINED = ("mean,max", "last,mean,max", "max,last")


@pytest.mark.parametrize("spec", COMBINED)
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("bi", [False, True], ids=["uni", "bi"])
def test_combined_pooling_matches_finite_differences(spec, cell, bi):
    rng = np.random.default_rng(len(spec) + 7 * bi)
    model = make_model(
        "embedding", mode="many-to-one", pooling=spec, cell=cell, bidirectional=bi, num_layers=2, dtype="float64"
    )
    F = model.hidden_size * model.num_directions
    assert model.params["head.V"].shape == (3, len(spec.split(",")) * F)
    x, y, _ = make_batch(model, rng, B=4, T=5)
    h0 = random_h0(model, rng, 4) if cell != "lstm" else None
    report = gradcheck(model, x, y, np.array([5, 2, 4, 1]), h0, max_entries=60)
    assert set(report) == set(model.params) | ({"h0"} if h0 is not None else set())
    assert max(report.values()) < 1e-6, report


@pytest.mark.parametrize("head", ["sigmoid", "linear"])
def test_combined_pooling_other_heads_and_recompute(head):
    rng = np.random.default_rng(11)
    model = make_model(
        "features", mode="many-to-one", pooling="mean,max", head=head, bidirectional=True, checkpoint_every=2
    )
    x, y, _ = make_batch(model, rng, B=3, T=6)
    report = gradcheck(model, x, y, np.array([6, 3, 5]))
    assert max(report.values()) < 1e-6, report


def test_combined_is_the_concatenation_of_the_single_poolings():
    """Z = V [p_mean; p_max] + c with p_k what the single-pooling model computes."""
    rng = np.random.default_rng(3)
    both = make_model("embedding", mode="many-to-one", pooling="last,mean,max", bidirectional=True, seed=5)
    x, _, _ = make_batch(both, rng, B=3, T=5)
    lengths = np.array([5, 2, 3])
    fwd = both.forward(x, lengths)
    F = both.hidden_size * 2
    V = both.params["head.V"]
    for k, kind in enumerate(("last", "mean", "max")):
        one = RNNModel(both.config, pooling=kind)
        one.params = dict(both.params, **{"head.V": V[:, k * F : (k + 1) * F].copy()})
        one.params["head.c"] = np.zeros_like(both.params["head.c"])
        np.testing.assert_array_equal(one.forward(x, lengths).feat, fwd.feat[:, k * F : (k + 1) * F])


def test_single_poolings_keep_their_shapes():
    for kind in ("last", "mean", "max"):
        model = make_model("features", mode="many-to-one", pooling=kind, bidirectional=True)
        assert model.params["head.V"].shape == (3, 6)
        assert model.pooling == kind


def test_pooling_spec_is_normalised_and_checked():
    assert make_model("features", mode="many-to-one", pooling=" mean , max").pooling == "mean,max"
    assert pooling.parse("max,last") == ("max", "last")
    for bad in ("mean,mean", "median", "", "mean,", 3):
        with pytest.raises(UsageError, match="pooling: got .* expected one or more of last, mean, max"):
            make_model("features", mode="many-to-one", pooling=bad)


@pytest.mark.parametrize("locked", [False, True], ids=["per-step", "locked"])
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_combined_pooling_with_every_dropout_site(cell, locked):
    """Output dropout on h_t reaches every pooled part, "last" included (read from the outputs)."""
    rng = np.random.default_rng(5 + locked)
    model = make_model(
        "embedding", mode="many-to-one", pooling="last,mean,max", cell=cell, bidirectional=True, num_layers=2,
        dropout=0.3, input_dropout=0.3, output_dropout=0.4, variational_dropout=locked, dtype="float64",
    )  # fmt: skip
    x, y, _ = make_batch(model, rng, B=4, T=5)
    report = gradcheck(model, x, y, np.array([5, 2, 4, 1]), max_entries=60)
    assert set(report) == set(model.params)
    assert max(report.values()) < 1e-6, report
    fwd = model.forward(x, np.array([5, 2, 4, 1]), rng=np.random.default_rng(0))
    assert (fwd.out_drop == 0).any() and fwd.out_drop.shape[0] == (1 if locked else 5)
