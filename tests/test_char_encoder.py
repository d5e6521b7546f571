"""The character-level word encoder (bptt.layers.char_encoder): x_t = [E[w_t]; E_f[...]; enc(chars_t)].

Every gradient (character table, both character cells, word and feature tables, the
word-level cells, the head) against central finite differences in float64 for the
three cells, 1-2 word-level layers, uneven sentences, words of different lengths
(and repeated words, which the encoder computes once); padding of sentences and of
words never changes a result; the loss and every gradient against torch
(nn.Embedding + bidirectional nn.LSTM over packed characters -> concat -> nn.LSTM);
inputs refused in one line; and `bptt train --task tag --char-hidden-size` end to end.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bptt import RNNModel, gradcheck
from bptt.cli import main
from bptt.training import checkpoint

EX = Path(__file__).resolve().parents[1] / "examples"
B, T, C, V, VC, K = 3, 5, 6, 6, 7, 3


def _model(**kw):
    kw.setdefault("dtype", "float64")
    kw.setdefault("bidirectional", True)
    return RNNModel(
        vocab_size=V,
        embedding_size=3,
        hidden_size=3,
        output_size=K,
        reduction="mean",
        char_vocab_size=VC,
        char_embedding_size=2,
        char_hidden_size=3,
        **kw,
    )


def _chars(rng, lengths):
    """(B, T, C) ids: word (b, t) has lengths[b, t] characters in 1..VC-1, then 0s."""
    ids = rng.integers(1, VC, (*lengths.shape, C))
    return np.where(np.arange(C) < lengths[..., None], ids, 0)


def _batch(rng, features=False):
    word_lengths = rng.integers(1, C + 1, (B, T))
    word_lengths[0, 0] = C
    chars = _chars(rng, word_lengths)
    chars[1, 1] = chars[0, 0]  # a repeated word: encoded once, its two gradients added
    ids = rng.integers(0, V, (B, T))
    x = np.stack([ids, rng.integers(0, 4, (B, T))], axis=-1) if features else ids
    return x, chars, rng.integers(0, K, (B, T)), np.array([5, 2, 4])


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_gradients_match_finite_differences(cell, layers):
    rng = np.random.default_rng(layers + 3 * len(cell))
    model = _model(cell=cell, num_layers=layers, feature_vocab_sizes=[4], feature_embedding_size=2)
    x, chars, y, lengths = _batch(rng, features=True)
    report = gradcheck(model, x, y, lengths, chars=chars, max_entries=40)
    assert set(report) == set(model.params)
    assert {"char.E", "char_rnn.U", "char_rnn_reverse.W", "embed.E", "embed1.E", "rnn0.U", "head.V"} <= set(report)
    assert max(report.values()) < 1e-6, report


def test_gradients_with_its_own_cell_and_an_empty_word():
    """char_cell differs from the word-level cell; a real token without characters encodes as 0."""
    rng = np.random.default_rng(7)
    model = _model(cell="gru", char_cell="lstm", mode="many-to-one", pooling="mean", bidirectional=False)
    x, chars, _, lengths = _batch(rng)
    chars[2, 3] = 0
    report = gradcheck(model, x, rng.integers(0, K, B), lengths, chars=chars, max_entries=40)
    assert "char_rnn.b" in report and model.char_rnn.name == "lstm"
    assert max(report.values()) < 1e-6, report


@pytest.mark.parametrize("locked", [False, True])
def test_gradients_with_dropout_on_the_encoding(locked):
    """Input dropout covers x_t's character columns too: the same mask scales their gradient."""
    rng = np.random.default_rng(11)
    model = _model(input_dropout=0.4, output_dropout=0.2, variational_dropout=locked)
    x, chars, y, lengths = _batch(rng)
    report = gradcheck(model, x, y, lengths, chars=chars, max_entries=40)
    assert max(report.values()) < 1e-6, report


def test_the_unused_rows_get_no_gradient():
    rng = np.random.default_rng(1)
    model = _model()
    x, chars, y, lengths = _batch(rng)
    chars[chars == 5] = 6  # character 5 never occurs
    _, grads = model.loss_and_grads(x, y, lengths, chars=chars)
    assert not grads["char.E"][0].any() and not grads["char.E"][5].any()  # padding, and an unseen character
    assert grads["char.E"][6].any()


def test_padding_never_changes_results():
    """More padded tokens (any word and characters in them) and more padding after every word."""
    rng = np.random.default_rng(2)
    model = _model(cell="lstm", num_layers=2)
    x, chars, y, lengths = _batch(rng)
    loss, grads = model.loss_and_grads(x, y, lengths, chars=chars)
    p = model.predict(x, lengths, chars=chars)
    x2 = np.concatenate([x, rng.integers(0, V, (B, 2))], axis=1)
    y2 = np.concatenate([y, rng.integers(0, K, (B, 2))], axis=1)
    chars2 = np.zeros((B, T + 2, C + 3), int)
    chars2[:, :T, :C] = chars
    chars2[:, T:, :2] = rng.integers(1, VC, (B, 2, 2))
    for b, n in enumerate(lengths):  # garbage characters in the padded tokens of each sentence
        chars2[b, n:T, 0] = rng.integers(1, VC, T - n)
    loss2, grads2 = model.loss_and_grads(x2, y2, lengths, chars=chars2)
    assert loss2 == pytest.approx(loss, rel=1e-12)
    for k in grads:
        np.testing.assert_allclose(grads2[k], grads[k], rtol=1e-10, atol=1e-14, err_msg=k)
    np.testing.assert_allclose(model.predict(x2, lengths, chars=chars2)[:, :T], p, rtol=1e-12, atol=1e-15)


def test_parity_with_torch():
    """nn.Embedding + bidirectional nn.LSTM over each word's packed characters, the two final h
    states concatenated to the word's nn.Embedding row, a bidirectional nn.LSTM over the
    sentence (packed), nn.Linear and the mean cross-entropy: the loss and every gradient."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    rng = np.random.default_rng(3)
    model = _model(cell="lstm")
    x, chars, y, lengths = _batch(rng)
    loss, grads = model.loss_and_grads(x, y, lengths, chars=chars)
    P = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}

    def lstm(prefix, D, H):
        rnn = nn.LSTM(D, H, batch_first=True, bidirectional=True, dtype=torch.float64)
        with torch.no_grad():
            for suffix, name in (("", prefix), ("_reverse", prefix + "_reverse")):
                getattr(rnn, f"weight_ih_l0{suffix}").copy_(P[f"{name}.U"])
                getattr(rnn, f"weight_hh_l0{suffix}").copy_(P[f"{name}.W"])
                getattr(rnn, f"bias_ih_l0{suffix}").copy_(P[f"{name}.b"])
                getattr(rnn, f"bias_hh_l0{suffix}").zero_()
        return rnn

    char_rnn, word_rnn = lstm("char_rnn", 2, 3), lstm("rnn0", 3 + 6, 3)
    valid = torch.arange(T)[None, :] < torch.as_tensor(lengths)[:, None]
    words = torch.as_tensor(chars)[valid]  # (N, C): the real tokens
    n_chars = (words != 0).sum(1)
    packed = nn.utils.rnn.pack_padded_sequence(P["char.E"][words], n_chars, batch_first=True, enforce_sorted=False)
    _, (hn, _) = char_rnn(packed)
    enc = torch.zeros(B, T, 6, dtype=torch.float64)
    enc[valid] = torch.cat([hn[0], hn[1]], dim=1)
    xt = torch.cat([P["embed.E"][torch.as_tensor(x)], enc], dim=2)
    packed = nn.utils.rnn.pack_padded_sequence(xt, torch.as_tensor(lengths), batch_first=True, enforce_sorted=False)
    out, _ = nn.utils.rnn.pad_packed_sequence(word_rnn(packed)[0], batch_first=True, total_length=T)
    z = (out @ P["head.V"].T + P["head.c"])[valid]
    tl = nn.functional.cross_entropy(z, torch.as_tensor(y)[valid])
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-12)
    expected = {k: P[k].grad for k in ("embed.E", "char.E", "head.V", "head.c")}
    for rnn, prefix in ((char_rnn, "char_rnn"), (word_rnn, "rnn0")):
        for suffix, name in (("", prefix), ("_reverse", prefix + "_reverse")):
            expected[f"{name}.U"] = getattr(rnn, f"weight_ih_l0{suffix}").grad
            expected[f"{name}.W"] = getattr(rnn, f"weight_hh_l0{suffix}").grad
            expected[f"{name}.b"] = getattr(rnn, f"bias_ih_l0{suffix}").grad
    assert set(expected) == set(grads)
    for k, g in expected.items():
        np.testing.assert_allclose(grads[k], g.numpy(), rtol=1e-10, atol=1e-12, err_msg=k)


def test_rebuilt_from_its_config_and_refuses_bad_inputs():
    model = _model(dtype="float32")
    again = RNNModel(**json.loads(json.dumps(model.config.to_dict())))
    assert {k: v.shape for k, v in again.params.items()} == {k: v.shape for k, v in model.params.items()}
    assert model.params["rnn0.U"].shape == (3, 3 + 2 * 3)
    rng = np.random.default_rng(0)
    x, chars, _, lengths = _batch(rng)
    with pytest.raises(ValueError, match="chars: required"):
        model.forward(x, lengths)
    with pytest.raises(ValueError, match=r"chars: .*expected"):
        model.forward(x, lengths, chars=chars[:, :4])
    bad = chars.copy()
    bad[0, 0, 0] = 0  # a hole before the word's characters
    with pytest.raises(ValueError, match="a character after padding"):
        model.forward(x, lengths, chars=bad)
    with pytest.raises(ValueError, match="chars: found 7"):
        model.forward(x, lengths, chars=np.where(chars > 0, 7, 0))
    with pytest.raises(ValueError, match="no character encoder"):
        RNNModel(vocab_size=V, embedding_size=3, output_size=K).forward(x, chars=chars)
    with pytest.raises(ValueError, match="needs embedding_size"):
        RNNModel(vocab_size=V, output_size=K, char_vocab_size=VC, char_hidden_size=2)
    with pytest.raises(ValueError, match="char_vocab_size"):
        RNNModel(vocab_size=V, embedding_size=3, output_size=K, char_hidden_size=2)
    with pytest.raises(ValueError, match="character encoder cannot"):
        RNNModel(vocab_size=V, embedding_size=3, char_vocab_size=VC, char_hidden_size=2).step(
            np.zeros(2, int), np.zeros((1, 2, 64), "float32")
        )
    torch = pytest.importorskip("torch")  # noqa: F841
    from bptt.export import check_exportable
    from bptt.interop import to_torch

    with pytest.raises(ValueError, match="character encoder"):
        check_exportable(model)
    with pytest.raises(ValueError, match="character encoder"):
        to_torch(model)


# ---- the tagger ---------------------------------------------------------------------


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


FAST = ["--hidden-size", "8", "--embedding-size", "8", "--char-hidden-size", "4", "--char-embedding-size", "3"]


def test_tag_with_characters_trains_predicts_and_evaluates(tmp_path, capsys):
    run = tmp_path / "tag"
    train = ["train", "--task", "tag", "--data", EX / "tag-train.conllu", "--valid", EX / "tag-dev.conllu"]
    code, out, _ = cli(capsys, *train, "--out", run, "--max-epochs", "1", "--char-cell", "gru", *FAST)
    assert code == 0 and "characters" in out and "character encoder 2 x 4 gru" in out
    ckpt = checkpoint.load(run)
    cfg, chars = ckpt.model_config, ckpt.train_state["options"]["extra"]["chars"]
    assert cfg["char_hidden_size"] == 4 and cfg["char_vocab_size"] == len(chars) and chars[:2] == ["<pad>", "<unk>"]
    (tmp_path / "plain.txt").write_text("the dorvel walked .\nKelpu ßø€ sing\n")  # characters never seen
    code, _, _ = cli(capsys, "predict", run, "--data", tmp_path / "plain.txt", "--out", tmp_path / "plain.conllu")
    import conllu

    assert code == 0 and [len(s) for s in conllu.parse((tmp_path / "plain.conllu").read_text())] == [4, 3]
    code, out, _ = cli(capsys, "evaluate", run / "best", "--json")
    best_state = checkpoint.load(run / "best").train_state["progress"]
    assert code == 0 and json.loads(out)["accuracy"] == pytest.approx(best_state["best_valid"])
    code, _, err = cli(capsys, "export", run, "--out", tmp_path / "m.onnx")
    assert code != 0 and "character encoder" in err and len(err.strip().splitlines()) == 1


def test_tag_with_characters_resumes_exactly(tmp_path, capsys):
    common = ["train", "--task", "tag", "--data", EX / "tag-dev.conllu", "--word-dropout", "0.2", "--batch-size", "16"]
    common += [*FAST, "--features", "suffix"]
    assert cli(capsys, *common, "--out", tmp_path / "a", "--max-epochs", "2")[0] == 0
    assert cli(capsys, *common, "--out", tmp_path / "b", "--max-epochs", "1")[0] == 0
    code, out, _ = cli(capsys, "train", "--resume", tmp_path / "b", "--max-epochs", "2")
    assert code == 0 and "resuming" in out
    a, b = checkpoint.load(tmp_path / "a").params, checkpoint.load(tmp_path / "b").params
    assert "char_rnn_reverse.W" in a
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
