"""The character-level word encoder (bptt.layers.char_encoder): x_t = [E[w_t]; E_f[...]; enc(chars_t)].

Every gradient (character table, both character cells, word and feature tables, the
word-level cells, the head) against central finite differences in float64 for the
three cells, 1-2 word-level layers, uneven sentences, words of different lengths
(and repeated words, which the encoder computes once); padding of sentences and of
words never changes a result; the loss and every gradient against torch
(nn.Embedding + bidirectional nn.LSTM over packed characters -> concat -> nn.LSTM);
inputs refused in one line; and `bptt train --task tag --char-hidden-size` end to end.

Many-to-one (the classifier's model): every gradient against finite differences
under each pooling (last, mean, max, mean,max), bidirectional, uneven sentences,
for the three cells, and the mean,max / sigmoid case against torch; and `bptt train
--task classify --char-hidden-size` end to end: training, evaluate, predict,
--resume, --folds, word dropout keeping the characters.
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
    kw.setdefault("output_size", K)
    return RNNModel(
        vocab_size=V,
        embedding_size=3,
        hidden_size=3,
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


def _torch_outputs(model, x, chars, lengths):
    """The torch twin of an LSTM `model` with a character encoder: nn.Embedding + bidirectional
    nn.LSTM over each word's packed characters, the two final h states concatenated to the
    word's nn.Embedding row, a bidirectional nn.LSTM over the sentence (packed). Returns
    (P: the model's parameters as leaf tensors, out: (B, T, 2H) top outputs, 0 at padding,
    valid: (B, T) bool, grads: a function giving P's expected gradients under the model's names
    once the loss has been backpropagated)."""
    import torch

    nn = torch.nn
    P = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    H, Hc, Dc = model.hidden_size, model.char_hidden_size, model.char_embedding_size

    def lstm(prefix, D, H):
        rnn = nn.LSTM(D, H, batch_first=True, bidirectional=True, dtype=torch.float64)
        with torch.no_grad():
            for suffix, name in (("", prefix), ("_reverse", prefix + "_reverse")):
                getattr(rnn, f"weight_ih_l0{suffix}").copy_(P[f"{name}.U"])
                getattr(rnn, f"weight_hh_l0{suffix}").copy_(P[f"{name}.W"])
                getattr(rnn, f"bias_ih_l0{suffix}").copy_(P[f"{name}.b"])
                getattr(rnn, f"bias_hh_l0{suffix}").zero_()
        return rnn

    char_rnn, word_rnn = lstm("char_rnn", Dc, Hc), lstm("rnn0", model.embedding_size + 2 * Hc, H)
    Bn, Tn = x.shape
    valid = torch.arange(Tn)[None, :] < torch.as_tensor(lengths)[:, None]
    words = torch.as_tensor(chars)[valid]  # (N, C): the real tokens
    n_chars = (words != 0).sum(1)
    packed = nn.utils.rnn.pack_padded_sequence(P["char.E"][words], n_chars, batch_first=True, enforce_sorted=False)
    _, (hn, _) = char_rnn(packed)
    enc = torch.zeros(Bn, Tn, 2 * Hc, dtype=torch.float64)
    enc[valid] = torch.cat([hn[0], hn[1]], dim=1)
    xt = torch.cat([P["embed.E"][torch.as_tensor(x)], enc], dim=2)
    packed = nn.utils.rnn.pack_padded_sequence(xt, torch.as_tensor(lengths), batch_first=True, enforce_sorted=False)
    out, _ = nn.utils.rnn.pad_packed_sequence(word_rnn(packed)[0], batch_first=True, total_length=Tn)

    def grads():
        expected = {k: P[k].grad for k in ("embed.E", "char.E", "head.V", "head.c")}
        for rnn, prefix in ((char_rnn, "char_rnn"), (word_rnn, "rnn0")):
            for suffix, name in (("", prefix), ("_reverse", prefix + "_reverse")):
                expected[f"{name}.U"] = getattr(rnn, f"weight_ih_l0{suffix}").grad
                expected[f"{name}.W"] = getattr(rnn, f"weight_hh_l0{suffix}").grad
                expected[f"{name}.b"] = getattr(rnn, f"bias_ih_l0{suffix}").grad
        return expected

    return P, out, valid, grads


def _assert_grads_match(grads, expected):
    assert set(expected) == set(grads)
    for k, g in expected.items():
        np.testing.assert_allclose(grads[k], g.numpy(), rtol=1e-10, atol=1e-12, err_msg=k)


def test_parity_with_torch():
    """The model against `_torch_outputs`, then nn.Linear and the mean cross-entropy over the
    real words: the loss and every gradient."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    model = _model(cell="lstm")
    x, chars, y, lengths = _batch(rng)
    loss, grads = model.loss_and_grads(x, y, lengths, chars=chars)
    P, out, valid, expected = _torch_outputs(model, x, chars, lengths)
    z = (out @ P["head.V"].T + P["head.c"])[valid]
    tl = torch.nn.functional.cross_entropy(z, torch.as_tensor(y)[valid])
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-12)
    _assert_grads_match(grads, expected())


def test_many_to_one_parity_with_torch():
    """The classifier's default model (mean,max pooling, two labels: the sigmoid head): the
    torch outputs' mean and max over each sentence's real words, concatenated, then nn.Linear
    and the mean binary cross-entropy: the loss and every gradient."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    model = _model(cell="lstm", mode="many-to-one", pooling="mean,max", head="sigmoid", output_size=1)
    x, chars, _, lengths = _batch(rng)
    y = rng.integers(0, 2, B).astype(np.float64)
    loss, grads = model.loss_and_grads(x, y, lengths, chars=chars)
    P, out, valid, expected = _torch_outputs(model, x, chars, lengths)
    m = valid[..., None].to(torch.float64)
    mean = (out * m).sum(1) / m.sum(1)
    mx = out.masked_fill(~valid[..., None], float("-inf")).max(1).values
    z = (torch.cat([mean, mx], dim=1) @ P["head.V"].T + P["head.c"])[:, 0]
    tl = torch.nn.functional.binary_cross_entropy_with_logits(z, torch.as_tensor(y))
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-12)
    _assert_grads_match(grads, expected())


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("pooling", ["last", "mean", "max", "mean,max"])
def test_many_to_one_gradients_match_finite_differences(cell, pooling):
    """The classifier's model: bidirectional, sentences of 5, 2 and 4 words (padding in the
    batch), a repeated word; K labels (softmax) for last and mean, two (sigmoid) for max and
    mean,max. Every parameter, the character encoder's included."""
    rng = np.random.default_rng(len(pooling) + 5 * len(cell))
    binary = "max" in pooling
    model = _model(
        cell=cell,
        mode="many-to-one",
        pooling=pooling,
        head="sigmoid" if binary else "softmax",
        output_size=1 if binary else K,
    )
    x, chars, _, lengths = _batch(rng)
    y = rng.integers(0, 2, B).astype(np.float64) if binary else rng.integers(0, K, B)
    report = gradcheck(model, x, y, lengths, chars=chars, max_entries=24)
    assert set(report) == set(model.params)
    assert {"char.E", "char_rnn.U", "char_rnn.W", "char_rnn_reverse.U", "char_rnn_reverse.W"} <= set(report)
    assert {"rnn0_reverse.U", "embed.E", "head.V"} <= set(report)
    assert max(report.values()) < 1e-6, report


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
    from bptt.interop import to_torch

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
    code, _, err = cli(capsys, "export", run, "--out", tmp_path / "m.onnx")  # tests/test_export.py runs such files
    assert code == 0 and (tmp_path / "m.onnx").is_file()


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


# ---- the classifier -----------------------------------------------------------------


def texts(path: Path, n: int, seed: int) -> Path:
    """n generated texts (TSV): filler words, then a made-up word (seen about once) whose ending,
    "-ful" or "-less", is the label; some words capitalised and some characters rare."""
    rng = np.random.default_rng(seed)
    filler = ["the", "a", "film", "was", "very", "plot", "Ñandú"]
    lines = []
    for _ in range(n):
        label = ["neg", "pos"][rng.integers(2)]
        stem = "".join(rng.choice(list("bcdfgklmnprstvz"), rng.integers(2, 5)))
        word = stem + ("ful" if label == "pos" else "less")
        words = [*rng.choice(filler, rng.integers(1, 4)), word.capitalize() if rng.random() < 0.3 else word]
        lines.append(" ".join(words) + "\t" + label)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


CLASSIFY = ["train", "--task", "classify", "--batch-size", "8", *FAST]


def test_classify_with_characters_trains_evaluates_and_predicts(tmp_path, capsys):
    train, dev = texts(tmp_path / "train.tsv", 40, 0), texts(tmp_path / "dev.tsv", 12, 1)
    run = tmp_path / "c"
    code, out, _ = cli(
        capsys, *CLASSIFY, "--data", train, "--valid", dev, "--lowercase", "--out", run, "--max-epochs", "2"
    )
    assert code == 0 and "characters" in out and "character encoder 2 x 4 lstm" in out
    ckpt = checkpoint.load(run)
    cfg, extra = ckpt.model_config, ckpt.train_state["options"]["extra"]
    assert cfg["char_hidden_size"] == 4 and cfg["char_vocab_size"] == len(extra["chars"])
    assert extra["chars"][:2] == ["<pad>", "<unk>"] and "Ñ" in extra["chars"]  # as written, before --lowercase
    assert "ñandú" in extra["vocab"]["itos"]
    code, out, _ = cli(capsys, "evaluate", run, "--data", dev, "--json")
    best_state = checkpoint.load(run / "best").train_state["progress"]
    assert code == 0 and json.loads(out)["accuracy"] == pytest.approx(best_state["best_valid"])
    (tmp_path / "new.txt").write_text("the Zorbful film\nß€ kelpless\n")  # unseen words and characters
    code, out, _ = cli(capsys, "predict", run, "--data", tmp_path / "new.txt")
    lines = out.splitlines()
    assert code == 0 and lines[0] == "label\tp_neg\tp_pos" and len(lines) == 3


def test_classify_word_dropout_keeps_the_characters():
    from bptt.tasks import classify

    X = [np.array([3, 4, 5]), np.array([6])]
    C = [np.array([[2, 3, 0], [4, 0, 0], [5, 6, 7]]), np.array([[2, 2]])]
    b = classify.make_batch(X, np.array([0, 1]), [0, 1], False, np.random.default_rng(0), 1.0, C)
    assert not b.inputs.any()  # every word dropped
    np.testing.assert_array_equal(b.chars[0], C[0])
    np.testing.assert_array_equal(b.chars[1], [[2, 2, 0], [0, 0, 0], [0, 0, 0]])


def test_classify_with_characters_resumes_exactly(tmp_path, capsys):
    from helpers import assert_same_run

    data = texts(tmp_path / "t.tsv", 40, 2)
    args = [*CLASSIFY, "--data", data, "--char-cell", "gru", "--seed", "3"]
    assert cli(capsys, *args, "--out", tmp_path / "a", "--max-epochs", "2")[0] == 0
    assert cli(capsys, *args, "--out", tmp_path / "b", "--max-epochs", "1")[0] == 0
    code, out, _ = cli(capsys, "train", "--resume", tmp_path / "b", "--max-epochs", "2")
    assert code == 0 and "resuming" in out
    assert "char_rnn_reverse.W" in checkpoint.load(tmp_path / "a").params
    assert_same_run(tmp_path / "a", tmp_path / "b")


def test_classify_folds_with_characters(tmp_path, capsys):
    from bptt import tasks
    from bptt.tasks import classify

    data = texts(tmp_path / "t.tsv", 30, 3)
    code, out, _ = cli(capsys, *CLASSIFY, "--data", data, "--folds", "2", "--out", tmp_path / "cv", "--max-epochs", "1")
    assert code == 0 and "character encoder 2 x 4" in out
    cv = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert sum(f["n"] for f in cv["per_fold"]) == 30
    for k in (1, 2):
        model, _, extra, _ = tasks.task_of(tmp_path / "cv" / f"fold-{k}")
        assert model.char_hidden_size == 4 and model.config.char_vocab_size == len(extra["chars"])
        assert classify.heldout_report(model.eval(), extra)["accuracy"] == cv["accuracy"][k - 1]


def test_the_encoder_is_on_by_default_at_word_level(tmp_path, capsys):
    """The shared --char-hidden-size: tag's default 100, classify's 50 at word level (docs/recipes.md)
    and none at character level, where a given one is refused; 0 turns it off."""
    data = texts(tmp_path / "t.tsv", 20, 4)
    small = ("--data", data, "--hidden-size", "4", "--embedding-size", "4", "--char-embedding-size", "2",
             "--max-epochs", "1")  # fmt: skip
    code, out, _ = cli(capsys, "train", "--task", "classify", *small, "--out", tmp_path / "c")
    ckpt = checkpoint.load(tmp_path / "c")
    assert code == 0 and ckpt.model_config["char_hidden_size"] == 50 and "character encoder 2 x 50 lstm" in out
    assert ckpt.train_state["options"]["extra"]["chars"][:2] == ["<pad>", "<unk>"]
    for flags, name in [(("--char-hidden-size", "0"), "off"), (("--level", "char"), "chars")]:
        code, out, _ = cli(capsys, "train", "--task", "classify", *small, *flags, "--out", tmp_path / name)
        ckpt = checkpoint.load(tmp_path / name)
        assert code == 0 and ckpt.model_config["char_hidden_size"] is None and "character encoder" not in out
        assert "chars" not in ckpt.train_state["options"]["extra"]
    code, out, _ = cli(
        capsys, "train", "--task", "tag", "--data", EX / "tag-dev.conllu", "--hidden-size", "4",
        "--embedding-size", "4", "--char-embedding-size", "2", "--out", tmp_path / "t", "--max-epochs", "0.05",
    )  # fmt: skip
    assert code == 0 and checkpoint.load(tmp_path / "t").model_config["char_hidden_size"] == 100


def test_the_tagger_is_an_lstm_at_both_levels_by_default_and_cell_wins(tmp_path, capsys):
    """tag's default --cell lstm (docs/recipes.md) also sets the character encoder's cell; a --cell the
    user gives wins at both levels."""
    args = ("--data", EX / "tag-dev.conllu", "--hidden-size", "4", "--embedding-size", "4", "--char-embedding-size", "2",
            "--char-hidden-size", "3", "--max-epochs", "0.05")  # fmt: skip
    code, out, _ = cli(capsys, "train", "--task", "tag", *args, "--out", tmp_path / "d")
    assert code == 0 and "1 x 4 lstm" in out and "character encoder 2 x 3 lstm" in out
    assert checkpoint.load(tmp_path / "d").model_config["cell"] == "lstm"
    code, out, _ = cli(capsys, "train", "--task", "tag", *args, "--cell", "elman", "--out", tmp_path / "e")
    assert code == 0 and "1 x 4 tanh RNN" in out and "character encoder 2 x 3 elman" in out
