"""Memory-saving BPTT (checkpoint_every) gives the gradients of full BPTT.

Same weights, same batch, once with every state kept and once with every k-th
state kept and the rest recomputed: loss, every gradient, dL/dh_0 and h_n agree
to 1e-12 in float64, across modes, masks, layers, directions and input kinds.
"""

import itertools
import zlib

import numpy as np
import pytest

from bptt import gradcheck
from bptt.cli import main as cli_main
from bptt.layers import recompute
from helpers import INPUT_KINDS, make_batch, make_model, random_h0

MODES = ("many-to-many", "many-to-one", "one-to-one", "one-to-many")


def _cases():
    for i, (layers, bi, mode, masked, every) in enumerate(
        itertools.product((1, 2), (False, True), MODES, (False, True), (1, 3, "auto"))
    ):
        if mode == "one-to-many" and bi or mode == "one-to-one" and masked:
            continue
        pooling = ("last", "mean", "max")[i % 3]
        yield pytest.param(
            layers,
            bi,
            mode,
            masked,
            every,
            INPUT_KINDS[i % 3],
            pooling,
            id=f"L{layers}-{'bi' if bi else 'uni'}-{mode}-{'mask' if masked else 'full'}-k{every}-{INPUT_KINDS[i % 3]}-{pooling}",
        )


@pytest.mark.parametrize("layers,bi,mode,masked,every,kind,pooling", list(_cases()))
def test_checkpointed_bptt_equals_full_bptt(layers, bi, mode, masked, every, kind, pooling):
    rng = np.random.default_rng(zlib.crc32(repr((layers, bi, mode, masked, every, kind)).encode()))
    opts = dict(num_layers=layers, bidirectional=bi, mode=mode, dtype="float64", dropout=0.3 if layers == 2 else 0.0)
    if mode == "many-to-one":
        opts["pooling"] = pooling
    full = make_model(kind, **opts)
    ckpt = make_model(kind, checkpoint_every=every, **opts)
    ckpt.params = {k: v.copy() for k, v in full.params.items()}
    x, y, cond = make_batch(full, rng, B=3, T=7)
    mask = np.array([7, 4, 1]) if masked else None
    h0 = random_h0(full, rng, 3) if mode != "one-to-many" else None
    results = [
        m.loss_and_grads(x, y, mask, h0, cond=cond, rng=np.random.default_rng(5), return_state=True)
        for m in (full, ckpt)
    ]
    (l1, g1, s1), (l2, g2, s2) = results
    assert abs(l1 - l2) < 1e-12
    assert set(g1) == set(g2)
    for name in g1:
        np.testing.assert_allclose(g2[name], g1[name], rtol=0, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(s2["dh0"], s1["dh0"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(s2["hn"], s1["hn"], rtol=0, atol=1e-12)


def test_checkpointed_bptt_passes_gradcheck():
    rng = np.random.default_rng(0)
    model = make_model("one-hot", num_layers=2, bidirectional=True, checkpoint_every=2)
    x, y, _ = make_batch(model, rng, B=2, T=5)
    report = gradcheck(model, x, y, np.array([5, 3]), random_h0(model, rng, 2))
    assert max(report.values()) < 1e-6, report


def test_gradcheck_command_takes_checkpoint_every(capsys):
    assert cli_main(["gradcheck", "--checkpoint-every", "auto", "--num-layers", "2", "--uneven", "--h0"]) == 0
    assert "below threshold" in capsys.readouterr().out


def test_state_after_is_recomputed_from_the_checkpoint_before_it():
    rng = np.random.default_rng(1)
    full = make_model("features", num_layers=2, dtype="float64")
    ckpt = make_model("features", num_layers=2, dtype="float64", checkpoint_every=3)
    ckpt.params = full.params
    x, _, _ = make_batch(full, rng, B=2, T=8)
    f1, f2 = full.forward(x, [8, 5]), ckpt.forward(x, [8, 5])
    for steps in range(9):
        np.testing.assert_array_equal(ckpt.state_after(f2, steps), full.state_after(f1, steps))
    for c1, c2 in zip(f1.caches, f2.caches):  # all states at once, for diagnostics and RTRL
        np.testing.assert_array_equal(c2[0].full().Hs, c1[0].Hs)


def test_only_checkpoints_and_not_every_state_are_kept():
    model = make_model("one-hot", hidden_size=4, mode="many-to-one", checkpoint_every="auto")
    x = np.random.default_rng(2).integers(0, 6, (2, 100))
    fwd = model.forward(x)
    cache = fwd.caches[0][0]
    assert cache.every == 10 and [c.shape for c in cache.checkpoints] == [(10, 2, 4)]
    assert fwd.feat.shape == (2, 4)  # the head reads h_T only: no (T, B, H) output was built


@pytest.mark.parametrize("every", [0, -1, 1.5, "sqrt", True])
def test_bad_checkpoint_every_is_refused(every):
    with pytest.raises(ValueError, match="checkpoint_every"):
        make_model("features", checkpoint_every=every)


def test_horizon_is_refused_with_checkpointing():
    model = make_model("one-hot", checkpoint_every=2)
    x, y, _ = make_batch(model, np.random.default_rng(3))
    with pytest.raises(ValueError, match="horizon.*checkpoint_every=None"):
        model.loss_and_grads(x, y, horizon=2)


def test_auto_segment_length_is_ceil_sqrt_t():
    assert [recompute.resolve_every("auto", T) for T in (1, 2, 4, 5, 100, 101, 10_000)] == [1, 2, 2, 3, 10, 11, 100]


def test_diagnostics_read_the_recomputed_states():
    from bptt.analysis import diagnostics

    rng = np.random.default_rng(4)
    full = make_model(
        "features", num_layers=2, bidirectional=True, mode="many-to-one", pooling="mean", hidden_size=4, dtype="float64"
    )
    ckpt = make_model(
        "features",
        num_layers=2,
        bidirectional=True,
        mode="many-to-one",
        pooling="mean",
        hidden_size=4,
        dtype="float64",
        checkpoint_every=2,
    )
    ckpt.params = full.params
    x, y, _ = make_batch(full, rng, B=3, T=6)
    r1, r2 = (diagnostics.diagnose(m, x, y, np.array([6, 2, 4]), heatmap=False) for m in (full, ckpt))
    for l1, l2 in zip(r1["layers"], r2["layers"]):
        for t in ("W", "U", "b"):
            np.testing.assert_allclose(l2["lag_sums"][t], l1["lag_sums"][t], rtol=0, atol=1e-12)
