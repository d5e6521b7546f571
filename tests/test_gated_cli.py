"""--cell lstm | gru through the CLI: every task trains, its checkpoint records the cell and
resumes exactly, generate / evaluate / predict / gradcheck / diagnose run on it, and what
is not built (RTRL for the gated cells) is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bptt.cli import main
from bptt.training import checkpoint

EX = Path(__file__).parent.parent / "examples"
SMALL = ["--hidden-size", "8", "--batch-size", "8"]
LONGMEM = ["--batches-per-epoch", "3", "--eval-every", "3", "--valid-size", "50", "--test-size", "50"]


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def weights(run: Path) -> dict:
    return checkpoint.load(run).params


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("the cat sat on the mat. the dog sat on the log.\n" * 30, encoding="utf-8")
    return path


TASKS = {
    "tag": ["--task", "tag", "--data", EX / "tag-train.conllu", "--embedding-size", "8"],
    "classify": ["--task", "classify", "--data", EX / "sentiment3.csv", "--pooling", "mean", "--bidirectional"],
    "regress": ["--task", "regress", "--data", EX / "regress-steps.csv"],
    "spell": ["--task", "spell", "--max-number", "99"],
    "adding": ["--task", "adding", "--length", "10", *LONGMEM],
    "copy": ["--task", "copy", "--length", "5", *LONGMEM],
    "temporal-order": ["--task", "temporal-order", "--length", "10", *LONGMEM],
}


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_every_task_trains_and_resumes_exactly_with_a_gated_cell(tmp_path, capsys, task):
    cell = "lstm" if task in ("tag", "regress", "adding", "temporal-order") else "gru"
    common = ["train", *TASKS[task], *SMALL, "--cell", cell]
    if cell == "lstm":
        common += ["--forget-bias", "1"]
    assert cli(capsys, *common, "--out", tmp_path / "a", "--max-epochs", "2")[0] == 0
    ckpt = checkpoint.load(tmp_path / "a")
    assert ckpt.model_config["cell"] == cell
    assert ckpt.model_config["forget_bias"] == (1.0 if cell == "lstm" else 0.0)
    assert (cell == "gru") == ("rnn0.bn" in ckpt.params)
    assert cli(capsys, *common, "--out", tmp_path / "b", "--max-epochs", "1")[0] == 0
    assert cli(capsys, "train", "--resume", tmp_path / "b", "--max-epochs", "2")[0] == 0
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    data = {"tag": EX / "tag-dev.conllu", "classify": EX / "sentiment3.csv", "regress": EX / "regress-steps.csv"}
    extra = ["--data", data[task]] if task in data else []
    if task in ("adding", "copy", "temporal-order"):  # tested when training ends
        assert json.loads((tmp_path / "a" / "result.json").read_text())["length"] > 0
    else:
        code, out, _ = cli(capsys, "evaluate", tmp_path / "a", *extra, "--json")
        assert code == 0 and json.loads(out)
    if task == "tag":
        assert cli(capsys, "predict", tmp_path / "a", "--data", EX / "tag-dev.conllu")[0] == 0
    if task == "spell":
        code, out, _ = cli(capsys, "generate", tmp_path / "a", "--cond", "7 42")
        assert code == 0 and [line.split("\t")[0] for line in out.splitlines()] == ["7", "42"]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_language_model_trains_generates_evaluates_and_resumes_exactly(tmp_path, capsys, corpus, cell):
    """The stateful TBPTT trainer carries every state part (h and c) across chunks and checkpoints."""
    common = ["train", "--data", corpus, "--cell", cell, "--hidden-size", "8", "--embedding-size", "4"]
    common += ["--seq-length", "8", "--batch-size", "4", "--eval-every", "10", "--samples", "0"]
    assert cli(capsys, *common, "--out", tmp_path / "a", "--max-epochs", "2")[0] == 0
    assert cli(capsys, *common, "--out", tmp_path / "b", "--max-epochs", "1")[0] == 0
    assert cli(capsys, "train", "--resume", tmp_path / "b", "--max-epochs", "2")[0] == 0
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert checkpoint.load(tmp_path / "a").model_config["cell"] == cell
    code, out, _ = cli(capsys, "generate", tmp_path / "a", "--prime", "the ", "--length", "20", "--seed", "1")
    assert code == 0 and out.startswith("the ")
    code, out, _ = cli(capsys, "evaluate", tmp_path / "a", "--data", corpus, "--json")
    assert code == 0 and json.loads(out)["bits_per_char"] > 0


@pytest.mark.parametrize(
    "argv",
    [
        ["--cell", "lstm", "--num-layers", "2", "--bidirectional", "--uneven", "--h0"],
        ["--cell", "gru", "--num-layers", "2", "--uneven", "--h0", "--checkpoint-every", "2"],
        ["--cell", "lstm", "--backprop-steps", "6", "--seq-length", "3"],
        ["--cell", "gru", "--horizon", "2", "--uneven"],
        # layer 0's gradients here are all ~1e-4 of the loss: eps 3e-3 keeps the differences' rounding below 1e-6
        [
            "--cell",
            "lstm",
            "--mode",
            "many-to-one",
            "--pooling",
            "max",
            "--uneven",
            "--dropout",
            "0.3",
            "--num-layers",
            "2",
            "--eps",
            "3e-3",
        ],
    ],
    ids=["lstm-bi-h0c0", "gru-recompute", "lstm-tbptt", "gru-horizon", "lstm-max-dropout"],
)
def test_gradcheck_command(capsys, argv):
    code, out, _ = (
        cli(capsys, "gradcheck", *argv, "--seq-length", "4", "--json")
        if "--seq-length" not in argv
        else cli(capsys, "gradcheck", *argv, "--json")
    )
    report = json.loads(out)
    assert code == 0 and report["ok"], report
    if "--h0" in argv and "lstm" in argv:
        assert {"h0", "c0"} <= set(report["max_relative_error"])


def test_rtrl_is_refused_for_gated_cells_in_one_line(capsys):
    for cell in ("lstm", "gru"):
        code, out, err = cli(capsys, "gradcheck", "--cell", cell, "--method", "rtrl")
        assert code == 2 and err.count("\n") == 1 and "rtrl" in err and cell in err


def test_diagnose_a_gated_run(tmp_path, capsys, corpus):
    run = tmp_path / "r"
    argv = ["train", "--data", corpus, "--cell", "lstm", "--hidden-size", "6", "--num-layers", "1"]
    argv += ["--seq-length", "8", "--batch-size", "4", "--max-epochs", "1", "--samples", "0", "--out", run]
    assert cli(capsys, *argv)[0] == 0
    code, out, _ = cli(capsys, "diagnose", run, "--data", corpus, "--out", tmp_path / "d", "--no-plot")
    assert code == 0 and "||dc_t/dc_k||_2" in out and "gates: i mean" in out
    report = json.loads((tmp_path / "d" / "diagnose.json").read_text())
    layer = report["layers"][0]
    assert layer["cell"] == "lstm" and set(layer["saturation"]) == {"i", "f", "o", "near"}
    assert len(layer["jacobian"]["c"]["spectral"]) == len(layer["jacobian"]["spectral"])


def test_bench_has_gated_rows_and_compares_their_gradients_first(capsys):
    argv = ["bench", "--sections", "step,profile,memory", "--configs", "char-small-B1", "--cells", "lstm,gru"]
    argv += ["--rounds", "1", "--seconds", "0.01", "--lengths", "20"]
    code, out, _ = cli(capsys, *argv)
    assert code == 0
    for expected in ("char-small-B1 lstm", "char-small-B1 gru", "lstm         20", "gru          20"):
        assert expected in out
    assert "char-small-B1 " not in out.replace("char-small-B1 lstm", "").replace("char-small-B1 gru", "")
    with pytest.raises(SystemExit) as e:  # argparse: one line, exit 2
        main(["bench", "--cells", "lstm,rnn"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "--cells" in err and "elman, lstm, gru" in err


@pytest.mark.parametrize("cell, hidden, forget_bias, layers", [("lstm", 256, 1.0, 1), ("gru", 148, 0.0, 2)])
def test_language_model_defaults_of_the_gated_cells(tmp_path, capsys, corpus, cell, hidden, forget_bias, layers):
    """`bptt train --cell lstm|gru` takes the cell's own defaults (LSTM 1 x 256, GRU 2 x 148); flags still win."""
    argv = ["train", "--data", corpus, "--cell", cell, "--seq-length", "8", "--batch-size", "2"]
    argv += ["--max-epochs", "0.01", "--samples", "0"]
    assert cli(capsys, *argv, "--out", tmp_path / "a")[0] == 0
    config = checkpoint.load(tmp_path / "a").model_config
    assert (config["hidden_size"], config["forget_bias"], config["num_layers"]) == (hidden, forget_bias, layers)
    if cell == "lstm":
        assert cli(capsys, *argv, "--hidden-size", "8", "--forget-bias", "0", "--out", tmp_path / "b")[0] == 0
        config = checkpoint.load(tmp_path / "b").model_config
        assert (config["hidden_size"], config["forget_bias"]) == (8, 0.0)
