"""Feature id columns (the tagger's prefix/suffix/shape): x_t = [E[w_t]; E_1[f1_t]; ...].

Every gradient against finite differences, the loss and every gradient against
torch (nn.Embedding per column, torch.cat, nn.RNN, nn.Linear, CrossEntropyLoss),
and the inputs refused when they do not fit."""

import numpy as np
import pytest

from bptt import RNNModel, gradcheck

torch = pytest.importorskip("torch")


def _model(**kw):
    kw.setdefault("dtype", "float64")
    return RNNModel(
        vocab_size=6,
        embedding_size=3,
        feature_vocab_sizes=[4, 5],
        feature_embedding_size=2,
        hidden_size=3,
        output_size=3,
        **kw,
    )


def _ids(rng, B=3, T=5):
    return np.stack([rng.integers(0, 6, (B, T)), rng.integers(0, 4, (B, T)), rng.integers(0, 5, (B, T))], axis=-1)


@pytest.mark.parametrize("bi", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("mode", ["many-to-many", "many-to-one"])
def test_gradients_match_finite_differences(bi, layers, mode):
    rng = np.random.default_rng(layers + 2 * bi)
    model = _model(bidirectional=bi, num_layers=layers, mode=mode, pooling="mean")
    y = rng.integers(0, 3, (3, 5) if mode == "many-to-many" else (3,))
    report = gradcheck(model, _ids(rng), y, np.array([5, 2, 4]))
    assert {"embed.E", "embed1.E", "embed2.E"} <= set(report)
    assert max(report.values()) < 1e-6, report


@pytest.mark.parametrize("bi", [False, True])
def test_parity_with_torch(bi):
    rng = np.random.default_rng(5)
    model = _model(bidirectional=bi, reduction="mean")
    x, y = _ids(rng), rng.integers(0, 3, (3, 5))
    loss, grads = model.loss_and_grads(x, y)
    P = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    xt = torch.tensor(x)
    emb = torch.cat([P["embed.E"][xt[..., 0]], P["embed1.E"][xt[..., 1]], P["embed2.E"][xt[..., 2]]], dim=2)
    rnn = torch.nn.RNN(7, 3, batch_first=True, bidirectional=bi, dtype=torch.float64)
    with torch.no_grad():
        for suffix, name in [("", "rnn0"), ("_reverse", "rnn0_reverse")][: 1 + bi]:
            getattr(rnn, f"weight_ih_l0{suffix}").copy_(P[f"{name}.U"])
            getattr(rnn, f"weight_hh_l0{suffix}").copy_(P[f"{name}.W"])
            getattr(rnn, f"bias_ih_l0{suffix}").copy_(P[f"{name}.b"])
            getattr(rnn, f"bias_hh_l0{suffix}").zero_()
    out, _ = rnn(emb)
    z = out @ P["head.V"].T + P["head.c"]
    tl = torch.nn.functional.cross_entropy(z.reshape(-1, 3), torch.tensor(y).reshape(-1))
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-12)
    for k in ("embed.E", "embed1.E", "embed2.E", "head.V", "head.c"):
        np.testing.assert_allclose(grads[k], P[k].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=k)
    for suffix, name in [("", "rnn0"), ("_reverse", "rnn0_reverse")][: 1 + bi]:
        np.testing.assert_allclose(
            grads[f"{name}.U"], getattr(rnn, f"weight_ih_l0{suffix}").grad.numpy(), rtol=1e-10, atol=1e-12
        )
        np.testing.assert_allclose(
            grads[f"{name}.W"], getattr(rnn, f"weight_hh_l0{suffix}").grad.numpy(), rtol=1e-10, atol=1e-12
        )


def test_rebuilt_from_its_config_and_refuses_bad_inputs():
    model = _model()
    again = RNNModel(model.config)
    assert {k: v.shape for k, v in again.params.items()} == {k: v.shape for k, v in model.params.items()}
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="expected"):
        model.forward(rng.integers(0, 4, (3, 5)))  # the feature columns are missing
    bad = _ids(rng)
    bad[0, 0, 2] = 5
    with pytest.raises(ValueError, match=r"inputs\[..., 2\]: found 5"):
        model.forward(bad)
    with pytest.raises(ValueError, match="needs embedding_size"):
        RNNModel(vocab_size=6, feature_vocab_sizes=[3], output_size=2)
    with pytest.raises(ValueError, match="feature columns cannot"):
        model.step(np.zeros(2, int), np.zeros((1, 2, 3)))
