"""Batches of padded sequences: seeded, complete, bucketed; and a task's results do not depend
on how much padding a batch has or which sentences share it (bidirectional, feature columns)."""

import numpy as np
import pytest

from bptt import RNNModel
from bptt.data.batching import SequenceSource, epoch_plan, pad, sorted_batches
from bptt.tasks import tag


def test_pad_and_lengths():
    x, n = pad([np.array([1, 2, 3]), np.array([4])], value=-1)
    np.testing.assert_array_equal(x, [[1, 2, 3], [4, -1, -1]])
    np.testing.assert_array_equal(n, [3, 1])
    x, n = pad([np.ones((2, 3)), np.ones((1, 3))])
    assert x.shape == (2, 2, 3) and x[1, 1].sum() == 0


def test_epoch_plan_is_seeded_complete_and_bucketed():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 60, 1000)
    plan = epoch_plan(lengths, 16, seed=3, epoch=2)
    assert [b.tolist() for b in plan] == [b.tolist() for b in epoch_plan(lengths, 16, seed=3, epoch=2)]
    assert [b.tolist() for b in plan] != [b.tolist() for b in epoch_plan(lengths, 16, seed=3, epoch=3)]
    assert sorted(np.concatenate(plan).tolist()) == list(range(1000))
    assert len(plan) == -(-1000 // 16)
    padded = sum(len(b) * lengths[b].max() for b in plan)
    unbucketed = sum(16 * lengths[np.arange(i, min(i + 16, 1000))].max() for i in range(0, 1000, 16))
    assert padded < 0.75 * unbucketed  # bucketing saves most of the padding
    assert sorted(np.concatenate(sorted_batches(lengths, 7)).tolist()) == list(range(1000))


def test_source_batches_are_pure_functions_of_epoch_and_k():
    seen = []

    def make(idx, rng):
        seen.append(idx.tolist())
        return idx.tolist(), rng.random()

    src = SequenceSource(np.arange(1, 41), 8, make, seed=1)
    a = [src.batch(1, k) for k in range(src.n_batches)]
    src.batch(0, 2)
    b = [src.batch(1, k) for k in range(src.n_batches)]
    assert a == b


def _tagger_batches(rng, bi=True):
    extra = {
        "vocab": {"level": "word", "lowercase": False, "sentence_ends": False, "itos": ["<unk>", "a", "b", "c", "d"]},
        "feature_vocabs": [
            {"level": "word", "lowercase": False, "sentence_ends": False, "itos": ["<unk>", "a", "b", "c", "d"]}
        ],
        "features": ["suffix"],
        "affix_length": 1,
        "lowercase": False,
        "labels": ["X", "Y", "Z"],
    }
    enc = tag.Encoder(extra)
    sents = [["a", "b", "c", "d", "a"], ["b", "x"], ["c", "c", "a", "q"]]
    X = [enc.ids(s) for s in sents]
    Y = [rng.integers(0, 3, len(s)) for s in sents]
    model = RNNModel(
        vocab_size=5,
        embedding_size=3,
        feature_vocab_sizes=[5],
        feature_embedding_size=2,
        hidden_size=4,
        output_size=3,
        bidirectional=bi,
        num_layers=2,
        reduction="sum",
        dtype="float64",
    )
    return model, X, Y


@pytest.mark.parametrize("bi", [False, True])
def test_tagger_batch_equals_its_sentences_alone(bi):
    """Loss and every gradient of a padded batch = the sums over its sentences, each alone and
    unpadded; each sentence's predicted distribution the same alone as in the batch."""
    model, X, Y = _tagger_batches(np.random.default_rng(0), bi)
    batch = tag.make_batch(X, Y, np.arange(3))
    loss, grads = model.loss_and_grads(batch.inputs, batch.targets, batch.mask)
    pred = model.predict(batch.inputs, batch.mask)
    total, alone_loss = {k: np.zeros_like(v) for k, v in grads.items()}, 0.0
    for i in range(3):
        b = tag.make_batch(X, Y, np.array([i]))
        lb, gb = model.loss_and_grads(b.inputs, b.targets, b.mask)
        alone_loss += lb
        for k in total:
            total[k] += gb[k]
        np.testing.assert_allclose(model.predict(b.inputs, b.mask)[0], pred[i, : len(X[i])], rtol=1e-12, atol=1e-14)
    assert loss == pytest.approx(alone_loss, rel=1e-12)
    for k in grads:
        np.testing.assert_allclose(grads[k], total[k], rtol=1e-10, atol=1e-13, err_msg=k)


def test_word_dropout_touches_only_words_and_is_seeded():
    model, X, Y = _tagger_batches(np.random.default_rng(1))
    big = [np.tile(x, (20, 1)) for x in X]
    a = tag.make_batch(big, [np.tile(y, 20) for y in Y], np.arange(3), np.random.default_rng(5), word_dropout=0.5)
    b = tag.make_batch(big, [np.tile(y, 20) for y in Y], np.arange(3), np.random.default_rng(5), word_dropout=0.5)
    clean = tag.make_batch(big, [np.tile(y, 20) for y in Y], np.arange(3))
    np.testing.assert_array_equal(a.inputs, b.inputs)
    np.testing.assert_array_equal(a.inputs[..., 1], clean.inputs[..., 1])  # the suffix column survives
    dropped = (a.inputs[..., 0] == 0) & (clean.inputs[..., 0] != 0)
    assert 0.3 < dropped.sum() / (clean.inputs[..., 0] != 0).sum() < 0.7
