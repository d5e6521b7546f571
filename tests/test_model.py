"""RNNModel's public contract: options, shapes, dtypes, seeds, initialisers and argument errors."""

import numpy as np
import pytest

from bptt import RNNModel
from helpers import make_batch, make_model


def test_float32_by_default_and_everywhere():
    rng = np.random.default_rng(0)
    model = make_model("embedding", num_layers=2, bidirectional=True)
    assert all(p.dtype == np.float32 for p in model.params.values())
    x, y, _ = make_batch(model, rng)
    loss, grads, state = model.loss_and_grads(x, y, np.array([4, 2, 3]), return_state=True)
    assert all(g.dtype == np.float32 for g in grads.values())
    assert state["hn"].dtype == np.float32 and state["dh0"].dtype == np.float32
    fwd = model.forward(x)
    for layer in fwd.caches:
        for cache in layer:
            assert cache.Hs.dtype == np.float32
    assert model.predict(x).dtype == np.float32


def test_float64_on_request_and_astype():
    model = make_model("features", dtype="float64")
    assert all(p.dtype == np.float64 for p in model.params.values())
    m32 = model.astype(np.float32)
    assert m32.dtype == "float32" and all(p.dtype == np.float32 for p in m32.params.values())


def test_parameter_names_and_shapes():
    model = RNNModel(vocab_size=10, embedding_size=4, hidden_size=5, num_layers=2, bidirectional=True)
    shapes = {k: v.shape for k, v in model.params.items()}
    assert shapes == {
        "embed.E": (10, 4),
        "rnn0.U": (5, 4),
        "rnn0.W": (5, 5),
        "rnn0.b": (5,),
        "rnn0_reverse.U": (5, 4),
        "rnn0_reverse.W": (5, 5),
        "rnn0_reverse.b": (5,),
        "rnn1.U": (5, 10),
        "rnn1.W": (5, 5),
        "rnn1.b": (5,),
        "rnn1_reverse.U": (5, 10),
        "rnn1_reverse.W": (5, 5),
        "rnn1_reverse.b": (5,),
        "head.V": (10, 10),
        "head.c": (10,),
    }
    assert model.output_size == 10  # a token many-to-many softmax model predicts the vocabulary


def test_one_to_many_parameters():
    model = RNNModel(vocab_size=8, hidden_size=4, num_layers=2, mode="one-to-many", cond_size=3)
    assert model.params["h0map.Q"].shape == (8, 3) and model.params["h0map.q"].shape == (8,)


def test_same_seed_same_model_and_different_seed_different():
    a, b, c = (RNNModel(input_size=3, hidden_size=4, output_size=2, seed=s) for s in (1, 1, 2))
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert any(not np.array_equal(a.params[k], c.params[k]) for k in a.params)


def test_initialisers():
    H = 64
    torchlike = RNNModel(input_size=3, hidden_size=H, output_size=2)
    assert np.abs(torchlike.params["rnn0.W"]).max() <= 1 / np.sqrt(H)
    orth = RNNModel(input_size=3, hidden_size=H, output_size=2, init="orthogonal", init_scale=1.0, dtype="float64")
    W = orth.params["rnn0.W"]
    np.testing.assert_allclose(W @ W.T, np.eye(H), atol=1e-12)
    irnn = RNNModel(input_size=3, hidden_size=H, output_size=2, init="identity", init_scale=0.5, nonlinearity="relu")
    np.testing.assert_array_equal(irnn.params["rnn0.W"], 0.5 * np.eye(H, dtype=np.float32))
    assert not irnn.params["rnn0.b"].any()
    xav = RNNModel(input_size=3, hidden_size=H, output_size=2, init="xavier")
    assert np.abs(xav.params["rnn0.U"]).max() <= np.sqrt(6 / (H + 3))


def test_predict_shapes_and_probabilities():
    rng = np.random.default_rng(1)
    m2m = make_model("one-hot", output_size=4)
    x = rng.integers(0, 6, (2, 5))
    p = m2m.predict(x, np.array([5, 3]))
    assert p.shape == (2, 5, 4)
    np.testing.assert_allclose(p[0].sum(-1), 1, rtol=1e-5)
    assert not p[1, 3:].any()
    m2o = make_model("features", mode="many-to-one", head="sigmoid", output_size=1)
    assert m2o.predict(rng.standard_normal((2, 5, 3))).shape == (2, 1)
    o2o = make_model("features", mode="one-to-one", head="linear", output_size=2)
    assert o2o.predict(rng.standard_normal((4, 3))).shape == (4, 2)


def test_dropout_only_in_training():
    rng = np.random.default_rng(2)
    model = make_model("features", num_layers=2, dropout=0.5)
    x, y, _ = make_batch(model, rng)
    a = model.loss_and_grads(x, y)[0]
    b = model.loss_and_grads(x, y)[0]
    assert a != b  # fresh masks each call
    model.eval()
    assert model.loss_and_grads(x, y)[0] == model.loss_and_grads(x, y)[0]
    np.testing.assert_array_equal(model.predict(x), model.train().predict(x))  # predict never drops


def test_sum_over_time_is_the_lecture_notes_loss():
    """L = (1/B) sum_b sum_t -log y^_bt[y_bt], computed by hand from predict()."""
    rng = np.random.default_rng(3)
    model = make_model("one-hot", dtype="float64")
    x = rng.integers(0, 6, (2, 4))
    y = rng.integers(0, 3, (2, 4))
    p = model.predict(x)
    by_hand = -np.log(np.take_along_axis(p, y[..., None], -1)).sum() / 2
    assert model.loss_and_grads(x, y)[0] == pytest.approx(by_hand, rel=1e-12)


BAD_OPTIONS = [
    (dict(hidden_size=0), "hidden_size: got 0"),
    (dict(hidden_size=2.5), "hidden_size: got 2.5"),
    (dict(num_layers=-1), "num_layers"),
    (dict(nonlinearity="gelu"), "nonlinearity: got 'gelu', expected one of tanh, relu, sigmoid, identity"),
    (dict(head="softplus"), "head: got 'softplus'"),
    (dict(mode="many-to-few"), "mode: got 'many-to-few'"),
    (dict(pooling="median", mode="many-to-one"), "pooling: got 'median'"),
    (dict(dropout=1.0), "dropout: got 1.0, expected a number in [0, 1)"),
    (dict(dtype="float16"), "dtype: got 'float16'"),
    (dict(init="he"), "init: got 'he'"),
    (dict(reduction="avg"), "reduction: got 'avg'"),
    (dict(mode="one-to-many"), "cond_size: got None"),
    (dict(mode="one-to-many", cond_size=2, bidirectional=True), "bidirectional"),
    (dict(cond_size=2), "cond_size: only for mode='one-to-many'"),
]


@pytest.mark.parametrize("options,message", BAD_OPTIONS)
def test_bad_options_name_the_argument(options, message):
    base = dict(input_size=3, hidden_size=4, output_size=2)
    with pytest.raises(ValueError) as e:
        RNNModel(**{**base, **options})
    assert message in str(e.value)


def test_needs_exactly_one_input_kind():
    with pytest.raises(ValueError, match="give exactly one"):
        RNNModel(hidden_size=4, output_size=2)
    with pytest.raises(ValueError, match="give exactly one"):
        RNNModel(input_size=3, vocab_size=4, hidden_size=4, output_size=2)


def test_bad_arrays_name_the_argument():
    rng = np.random.default_rng(4)
    tok = make_model("one-hot")
    feat = make_model("features")
    x = rng.integers(0, 6, (2, 4))
    y = rng.integers(0, 3, (2, 4))
    cases = [
        (lambda: tok.loss_and_grads(x.astype(float), y), "inputs: got dtype float64, expected integer token ids"),
        (lambda: tok.loss_and_grads(np.full((2, 4), 6), y), "inputs: found 6, expected values in [0, 6)"),
        (lambda: tok.loss_and_grads(x[0], y), "inputs: got an array of shape (4,), expected 2-D"),
        (lambda: tok.loss_and_grads(x, np.full((2, 4), 3)), "targets: found 3, expected values in [0, 3) (or -100)"),
        (lambda: tok.loss_and_grads(x, y[:, :3]), "targets: got shape (2, 3), expected (2, 4)"),
        (lambda: tok.loss_and_grads(x, y, np.ones((2, 5), bool)), "mask: got shape (2, 5), expected (2, 4)"),
        (lambda: tok.loss_and_grads(x, y, np.array([4, 5])), "mask (lengths): found 5, expected values in [0, 5)"),
        (lambda: tok.loss_and_grads(x, y, np.full((2, 4), 0.5)), "mask: got dtype float64, expected booleans"),
        (lambda: tok.loss_and_grads(x, y, h0=np.zeros((1, 3, 3))), "h0: got shape (1, 3, 3), expected (1, 2, 3)"),
        (
            lambda: feat.loss_and_grads(rng.standard_normal((2, 4, 5)), y),
            "inputs: got 5 features per step, expected input_size=3",
        ),
        (lambda: feat.loss_and_grads(np.full((2, 4, 3), np.nan), y), "inputs: contains NaN"),
        (lambda: tok.loss_and_grads(np.zeros((2, 0), int), y[:, :0]), "expected at least one step"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError) as e:
            call()
        assert message in str(e.value), (message, str(e.value))


def test_many_to_one_needs_a_valid_step_per_sequence():
    model = make_model("features", mode="many-to-one")
    with pytest.raises(ValueError, match="sequence 1 has no valid step"):
        model.loss_and_grads(np.zeros((2, 3, 3)), np.array([0, 1]), np.array([3, 0]))


def test_sigmoid_targets_must_be_probabilities():
    model = make_model("features", head="sigmoid", output_size=1)
    with pytest.raises(ValueError, match=r"targets in \[0, 1\]"):
        model.loss_and_grads(np.zeros((2, 3, 3)), np.full((2, 3), 2.0))


def test_config_is_a_frozen_dataclass_and_both_ways_of_building_agree():
    import dataclasses

    from bptt import ModelConfig

    config = ModelConfig(vocab_size=7, hidden_size=5, num_layers=2, seed=3)
    assert config.output_size == 7 and config.cell == "elman"  # defaults resolved on construction
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.hidden_size = 6
    a, b = RNNModel(config), RNNModel(vocab_size=7, hidden_size=5, num_layers=2, seed=3)
    assert a.config == b.config and a.config.hidden_size == a.hidden_size == 5
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    wider = RNNModel(config, hidden_size=6)
    assert wider.config.hidden_size == 6 and config.hidden_size == 5
    assert RNNModel(**config.to_dict()).config == config  # what a checkpoint stores reads back
    with pytest.raises(ValueError, match="hidden_size: got 0"):
        ModelConfig(vocab_size=7, hidden_size=0)
    with pytest.raises(TypeError, match="expected a ModelConfig"):
        RNNModel({"vocab_size": 7})
    with pytest.raises(ValueError, match="forget_bias: not an option of the elman cell"):
        ModelConfig(vocab_size=7, forget_bias=1.0)  # the cell's own refusal, raised by the config
