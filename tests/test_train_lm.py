"""`bptt train / generate / evaluate` end to end on small text: exact resume after a
signal, rollback on a NaN, TBPTT windows, config files, and bad input."""

import json
import os
import signal

import numpy as np
import pytest

from bptt.cli import main
from bptt.data.text import Vocab
from bptt.model import RNNModel
from bptt.training import checkpoint
from bptt.training import tbptt as train
from helpers import poison_gradient

TEXT = ("the quick brown fox jumps over the lazy dog.\n" * 8 + "a stitch in time saves nine.\n" * 8) * 3
SMALL = [
    "--hidden-size",
    "16",
    "--num-layers",
    "1",
    "--embedding-size",
    "8",
    "--batch-size",
    "4",
    "--seq-length",
    "10",
    "--eval-every",
    "5",
    "--samples",
    "0",
    "--max-epochs",
    "3",
]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


def weights(run_dir):
    return checkpoint.load(run_dir).params


def test_train_generate_evaluate(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(corpus), "--out", str(out), *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "best validation bits per character" in printed
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"train_loss", "valid_loss", "train_bpc", "valid_bpc", "tokens_per_s", "grad_norm", "lr"} <= set(lines[0])
    assert lines[-1]["valid_loss"] < lines[0]["valid_loss"]  # it learns
    assert main(["generate", str(out), "--prime", "the ", "--length", "30", "--seed", "1"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("the ") and len(first.rstrip("\n")) == 34
    assert main(["generate", str(out), "--prime", "the ", "--length", "30", "--seed", "1"]) == 0
    assert capsys.readouterr().out == first  # seeded
    assert main(["generate", str(out), "--greedy", "--length", "5"]) == 0
    assert "loops" in capsys.readouterr().err
    assert main(["evaluate", str(out), "--data", str(corpus), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tokens"] == len(TEXT) and result["bits_per_char"] > 0
    pytest.importorskip("matplotlib")
    assert main(["plot", str(out)]) == 0
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (out / "metrics.jsonl").write_text("{oops\n")
    assert main(["plot", str(out)]) == 2
    assert "metrics.jsonl:1: not a JSON line" in capsys.readouterr().err


def _interrupt_at(step, monkeypatch):
    """Deliver a real SIGINT to this process right after update `step`."""

    def progress():
        def update(state, loss, total):
            if state["step"] == step:
                os.kill(os.getpid(), signal.SIGINT)

        return update

    monkeypatch.setattr(train, "default_progress", progress)


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--backprop-steps", "16", "--dropout", "0.2", "--num-layers", "2"],
        ["--horizon", "4", "--optimizer", "momentum"],
    ],
)
def test_resume_after_sigint_is_bit_identical(corpus, tmp_path, monkeypatch, capsys, extra):
    opts = ["--data", str(corpus), *SMALL, *extra]
    assert main(["train", *opts, "--out", str(tmp_path / "straight")]) == 0
    _interrupt_at(7, monkeypatch)  # between two evaluations
    assert main(["train", *opts, "--out", str(tmp_path / "cut")]) == 130
    assert "--resume" in capsys.readouterr().err
    assert checkpoint.load(tmp_path / "cut").train_state["progress"]["step"] == 7
    monkeypatch.undo()
    assert main(["train", "--resume", str(tmp_path / "cut")]) == 0
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "cut")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_nan_rolls_back_lowers_lr_and_names_the_tensor(corpus, tmp_path, monkeypatch, capsys):
    poison_gradient(monkeypatch, 8, "rnn0.W")
    assert main(["train", "--data", str(corpus), "--out", str(tmp_path / "r"), *SMALL]) == 0
    out = capsys.readouterr().out
    assert "the gradient of rnn0.W is not finite at step 8; rolled back to step 5, lr 0.002 -> 0.001" in out
    assert checkpoint.load(tmp_path / "r").train_state["lr"] == pytest.approx(0.001)


def test_divergence_stops_after_max_rollbacks(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(RNNModel, "loss", lambda self, fwd, y, lm=None: (float("nan"), fwd.Z))
    assert main(["train", "--data", str(corpus), "--out", str(tmp_path / "r"), *SMALL, "--max-rollbacks", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training diverged: the loss is nan" in err[0] and "after 2 rollbacks" in err[0]
    assert not (tmp_path / "r").exists()  # it failed before its first checkpoint: nothing is left behind


def test_a_non_finite_loss_names_the_time_step_of_the_chunk():
    """The first step whose logits are not finite, counted within the new chunk (the window
    of TBPTT(4, 6) also holds 2 steps before it)."""
    model = RNNModel(vocab_size=5, embedding_size=3, hidden_size=3, nonlinearity="relu", dtype="float64", seed=0)
    ids = np.random.default_rng(0).integers(0, 4, 100)
    opts = train.TrainOptions(seq_length=4, backprop_steps=6, batch_size=2, optimizer="sgd", lr=0.1)
    trainer = train.Trainer(model, ids, None, None, opts, log=lambda *a: None)
    X, Y = trainer.streams.chunk(0)
    with np.errstate(all="ignore"):
        trainer.update(X, Y)  # a finite first window: the next one starts 2 steps early
        X, Y = np.array(trainer.streams.chunk(1)[0]), trainer.streams.chunk(1)[1]
        X[1, 1] = 4
        model.params["embed.E"][4] = np.inf  # relu(inf) = inf from that step on
        with pytest.raises(train.NonFinite, match=r"^the loss is (nan|inf) at time step 1 of the chunk$"):
            trainer.update(X, Y)


def test_tbptt_windows_start_from_the_carried_state(corpus):
    """With frozen weights, each TBPTT(k1, k2) window starts from the state that a single
    forward pass over the whole stream has at the window's first step."""
    vocab = Vocab(TEXT)
    ids = vocab.encode(TEXT)
    model = RNNModel(vocab_size=len(vocab), hidden_size=8, num_layers=2, dtype="float64")
    opts = train.TrainOptions(seq_length=3, backprop_steps=7, batch_size=2, optimizer="sgd", lr=1e-300, clip_norm=None)
    t = train.Trainer(model, ids, None, None, opts)
    full = model.forward(t.streams.inputs[:, :30])
    for n in range(1, 10):
        X, Y = t.streams.chunk(n - 1)
        t.update(X, Y)
        end = 3 * n
        start = max(end + 3 - 7, 0)  # the next window's first step
        assert t.history.shape[1] == end - start
        np.testing.assert_allclose(t.h, model.state_after(full, start), rtol=1e-12, atol=1e-14)


def test_config_file(corpus, tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(
        json.dumps(
            {
                "hidden-size": 12,
                "seq_length": 10,
                "num-layers": 1,
                "batch-size": 4,
                "max-epochs": 1,
                "samples": 0,
                "eval-every": 50,
                "data": str(corpus),
            }
        )
    )
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "r"), "--hidden-size", "10"]) == 0
    assert checkpoint.load(tmp_path / "r").model_config["hidden_size"] == 10  # the flag wins
    toml = tmp_path / "cfg.toml"
    toml.write_text(
        f'hidden-size = 9\nnum-layers = 1\nbatch-size = 4\nseq-length = 10\nmax-epochs = 1\nsamples = 0\ndata = "{corpus}"\n'
    )
    assert main(["train", "--config", str(toml), "--out", str(tmp_path / "r2")]) == 0
    assert checkpoint.load(tmp_path / "r2").model_config["hidden_size"] == 9


BAD = [
    (["--data", "{tmp}/missing.txt"], "missing.txt: no such file"),
    (["--data", "{tmp}/empty.txt"], "empty.txt: is empty"),
    (["--data", "{tmp}/binary.bin"], "binary.bin: looks like a binary file"),
    (["--data", "{tmp}/latin1.txt"], "latin1.txt: is not utf-8 text (invalid byte 0xe9 at offset 3); pass --encoding"),
    (["--data", "{tmp}/short.txt"], "corpus"),
    (
        ["--data", "{tmp}/corpus.txt", "--backprop-steps", "5"],
        "--backprop-steps: got 5, expected at least --seq-length (10)",
    ),
    (["--data", "{tmp}/corpus.txt", "--horizon", "3", "--num-layers", "2"], "--horizon"),
    (["--data", "{tmp}/corpus.txt", "--lr", "nan"], "argument --lr: got nan, expected a positive finite number"),
    (["--data", "{tmp}/corpus.txt", "--hidden-size", "-4"], "argument --hidden-size: got -4"),
    (["--data", "{tmp}/corpus.txt", "--bogus"], "unrecognized arguments: --bogus"),
    (["--data", "{tmp}/corpus.txt", "--encoding", "nope"], "--encoding nope: unknown encoding name"),
    (["--config", "{tmp}/bad.json"], "bad.json: unknown option 'hiden_size'"),
    (["--resume", "{tmp}/corpus.txt"], "corpus.txt: is a file, expected a run directory"),
    (["--resume", "{tmp}/nowhere"], "nowhere: no such run directory"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_input_one_line_exit_2_nothing_written(args, message, tmp_path, capsys):
    (tmp_path / "corpus.txt").write_text(TEXT)
    (tmp_path / "empty.txt").write_text(" \n")
    (tmp_path / "binary.bin").write_bytes(b"\x00\x01\x02abc")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "short.txt").write_text("ab")
    (tmp_path / "bad.json").write_text('{"hiden_size": 3}')
    out = tmp_path / "run"
    argv = ["train", *SMALL[:10], *[a.format(tmp=tmp_path) for a in args], "--out", str(out)]
    with pytest.raises(SystemExit) if "argument" in message or "unrecognized" in message else _nothing() as e:
        code = main(argv)
    code = e.value.code if e is not None else code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0], err
    assert not out.exists()


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_existing_run_dir_is_refused_without_resume_or_overwrite(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(corpus), "--out", str(out), *SMALL]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["train", "--data", str(corpus), "--out", str(out), *SMALL]) == 2
    assert "already exists; pass --resume" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing lost
    assert main(["train", "--data", str(corpus), "--out", str(out), *SMALL, "--overwrite"]) == 0


def test_generate_bad_prime_and_bad_run(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(corpus), "--out", str(out), *SMALL]) == 0
    capsys.readouterr()
    assert main(["generate", str(out), "--prime", "Z€"]) == 2
    assert "character 'Z' is not in the model's vocabulary" in capsys.readouterr().err
    (out / "checkpoint.json").write_text("{")
    assert main(["generate", str(out), "--last"]) == 2
    assert "checkpoint.json: not valid JSON" in capsys.readouterr().err


def test_corpus_shorter_than_one_chunk_per_stream(tmp_path, capsys):
    path = tmp_path / "tiny.txt"
    path.write_text("hello world, " * 10)
    assert main(["train", "--data", str(path), "--out", str(tmp_path / "r"), "--valid-fraction", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "training tokens, but --batch-size 32 x --seq-length 50 needs at least 1,601" in err
    assert not (tmp_path / "r").exists()


def test_a_vocabulary_too_big_for_memory_is_refused_before_training(tmp_path, capsys, monkeypatch):
    from bptt.training import resources

    monkeypatch.setattr(resources, "available_memory", lambda: 64 * 2**20)  # a 64 MiB machine
    words = " ".join(f"w{i}" for i in range(20000)) + "\n"
    path = tmp_path / "words.txt"
    path.write_text(words * 2)
    assert main(["train", "--data", str(path), "--level", "word", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "GiB is available; use a smaller --vocab-size or a higher --min-freq" in err
    assert not (tmp_path / "r").exists()


def test_word_level_with_unk_and_perplexity(corpus, tmp_path, capsys):
    out = tmp_path / "words"
    assert (
        main(
            [
                "train",
                "--data",
                str(corpus),
                "--level",
                "word",
                "--min-freq",
                "2",
                "--lowercase",
                "--out",
                str(out),
                *SMALL,
                "--seq-length",
                "4",
            ]
        )
        == 0
    )
    assert "best validation perplexity" in capsys.readouterr().out
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["valid_ppl"] == pytest.approx(np.exp(record["valid_loss"]))
    assert main(["generate", str(out), "--prime", "The zebra", "--length", "6", "--seed", "0"]) == 0  # zebra -> <unk>
    assert capsys.readouterr().out.startswith("The zebra ")


def test_nesterov_and_step_decay_from_the_command_line(corpus, tmp_path, capsys):
    out = tmp_path / "r"
    assert (
        main(
            [
                "train",
                "--data",
                str(corpus),
                "--out",
                str(out),
                *SMALL,
                "--max-epochs",
                "4",
                "--optimizer",
                "momentum",
                "--nesterov",
                "--lr",
                "0.1",
                "--lr-decay",
                "0.5",
                "--lr-decay-every",
                "2",
            ]
        )
        == 0
    )
    train_state = checkpoint.load(out).train_state
    assert train_state["optimizer"]["nesterov"] is True
    assert train_state["lr"] == pytest.approx(0.1 * 0.5 * 0.5)  # after epochs 2 and 4
    assert main(["train", "--data", str(corpus), "--out", str(tmp_path / "s"), *SMALL, "--nesterov"]) == 2
    assert "--nesterov: needs --optimizer momentum, got --optimizer adam" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_evaluate_reads_the_checkpoint_once(corpus, tmp_path, monkeypatch, capsys):
    """Finding the run's task and evaluating it share one load (every file's sha256 is checked on load)."""
    out = tmp_path / "r"
    assert main(["train", "--data", str(corpus), "--out", str(out), *SMALL, "--max-epochs", "1"]) == 0
    loads = []
    real_load = checkpoint.load
    monkeypatch.setattr(checkpoint, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    assert main(["evaluate", str(out), "--data", str(corpus)]) == 0
    assert "bits_per_char" in capsys.readouterr().out and len(loads) == 1
