"""Bad input to the dataset tasks: one line naming the file, the line and what was expected;
exit 2; no run directory, no output file."""

from __future__ import annotations

from pathlib import Path

import pytest

from bptt.cli import main

EX = Path(__file__).resolve().parents[1] / "examples"
WORD = "1\tdogs\tdog\tNOUN\tNNS\t_\t0\troot\t_\t_"
GOOD = f"# text = dogs bark\n{WORD}\n2\tbark\tbark\tVERB\tVBP\t_\t1\tdep\t_\t_\n\n"

CONLLU = {
    "wrong column count": ("# c\n1\tdogs\tdog\tNOUN\n\n", "bad.conllu:2: found 4 tab-separated columns, expected 10"),
    "non-integer ID": (f"{WORD}\nx\tbark\tbark\tVERB\t_\t_\t1\tdep\t_\t_\n\n", "bad.conllu:2: ID 'x', expected an integer, a range like 1-2"),
    "IDs out of order": (f"{WORD}\n3\tbark\tbark\tVERB\t_\t_\t1\tdep\t_\t_\n\n", "bad.conllu:2: word ID 3, expected 2"),
    "a tag missing": (GOOD + f"{WORD}\n2\tbark\tbark\t_\t_\t_\t1\tdep\t_\t_\n\n", "bad.conllu:6: word 'bark' has no UPOS (found '_'), expected a tag"),
    "only a range": ("1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n\n", "bad.conllu:1: a sentence without words"),
    "empty file": ("\n\n", "bad.conllu: is empty"),
}


def run(capsys, tmp_path, *argv):
    out = tmp_path / "run"
    code = main([*map(str, argv), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("bptt: error: "), err
    assert not out.exists(), "nothing may be written for bad input"
    return err


@pytest.mark.parametrize("case", list(CONLLU))
def test_malformed_conllu(tmp_path, capsys, case):
    text, message = CONLLU[case]
    (tmp_path / "bad.conllu").write_text(text)
    err = run(capsys, tmp_path, "train", "--task", "tag", "--data", tmp_path / "bad.conllu")
    assert message in err


def test_tag_only_in_validation(tmp_path, capsys):
    (tmp_path / "train.conllu").write_text(GOOD)
    (tmp_path / "dev.conllu").write_text(GOOD + "1\tquickly\tquickly\tADV\t_\t_\t0\troot\t_\t_\n\n")
    err = run(capsys, tmp_path, "train", "--task", "tag", "--data", tmp_path / "train.conllu", "--valid", tmp_path / "dev.conllu")
    assert "dev.conllu:5: UPOS tag 'ADV' does not occur in the training data, expected one of: NOUN, VERB" in err


TSV = {
    "no tab": ("great film\t1\nawful film\n", "bad.tsv:2: no tab, expected TEXT<TAB>LABEL"),
    "empty line": ("great film\t1\n\nawful\t0\n", "bad.tsv:2: empty line, expected TEXT<TAB>LABEL"),
    "empty label": ("great film\t1\nawful film\t \n", "bad.tsv:2: empty label, expected a label after the text"),
    "empty text": ("great film\t1\n\t0\n", "bad.tsv:2: empty text"),
    "one label": ("great film\t1\ngood\t1\n", "every example has label '1', expected at least two labels"),
}


@pytest.mark.parametrize("case", list(TSV))
def test_malformed_tsv(tmp_path, capsys, case):
    text, message = TSV[case]
    (tmp_path / "bad.tsv").write_text(text)
    assert message in run(capsys, tmp_path, "train", "--task", "classify", "--data", tmp_path / "bad.tsv")


def test_label_only_in_validation(tmp_path, capsys):
    (tmp_path / "train.tsv").write_text("great film\tpos\nawful film\tneg\n")
    (tmp_path / "dev.tsv").write_text("fine\tpos\nso so\tmeh\n")
    err = run(capsys, tmp_path, "train", "--task", "classify", "--data", tmp_path / "train.tsv", "--valid", tmp_path / "dev.tsv")
    assert "dev.tsv:2: label 'meh' does not occur in the training data, expected one of: neg, pos" in err


def test_csv_without_the_named_column(tmp_path, capsys):
    err = run(capsys, tmp_path, "train", "--task", "classify", "--data", EX / "sentiment3.csv", "--label-column", "sentiment")
    assert "sentiment3.csv:1: no column 'sentiment' in the header (found: id, text, label)" in err


def test_csv_row_with_missing_field(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("text,label\ngood film,1\nbad film\n")
    assert "bad.csv:3: found 1 fields, expected 2" in run(capsys, tmp_path, "train", "--task", "classify", "--data", tmp_path / "bad.csv")


REGRESS = {
    "not a number": ("input,target\n0.1 0.2,0.3\n0.1 x,0.2\n", "bad.csv:3: input '0.1 x', expected numbers"),
    "target steps": ("input,target\n0.1 0.2,0.3\n0.1 0.2 0.3,0.1 0.2\n", "bad.csv:3: 2 target steps for 3 input steps"),
    "features differ": ("input,target\n0.1 0.2,0.3\n0.1:1 0.2:1,0.2\n", "bad.csv:3: 2 input features per step, expected 1"),
    "no target column": ("x,target\n0.1,0.3\n", "bad.csv:1: no column 'input' in the header (found: x, target)"),
}


@pytest.mark.parametrize("case", list(REGRESS))
def test_malformed_regression_csv(tmp_path, capsys, case):
    text, message = REGRESS[case]
    (tmp_path / "bad.csv").write_text(text)
    assert message in run(capsys, tmp_path, "train", "--task", "regress", "--data", tmp_path / "bad.csv")


def test_options_that_do_not_fit(tmp_path, capsys):
    assert "--features: got 'stem'" in run(capsys, tmp_path, "train", "--task", "tag", "--data", EX / "tag-dev.conllu", "--features", "suffix,stem")
    assert "--task classify: --data FILE is required" in run(capsys, tmp_path, "train", "--task", "classify")
    assert "--bidirectional" in run(capsys, tmp_path, "train", "--task", "spell", "--bidirectional")


def test_predict_refuses_and_writes_nothing(tmp_path, capsys):
    r = tmp_path / "r"
    assert main(["train", "--task", "regress", "--data", str(EX / "regress.csv"), "--out", str(r), "--max-epochs", "1", "--hidden-size", "4"]) == 0
    capsys.readouterr()
    assert main(["generate", str(r)]) == 2 and "a --task regress run generates nothing" in capsys.readouterr().err
    (tmp_path / "wide.csv").write_text("input\n0.1:2 0.3:1\n")
    capsys.readouterr()
    code = main(["predict", str(r), "--data", str(tmp_path / "wide.csv"), "--out", str(tmp_path / "pred.txt")])
    err = capsys.readouterr().err
    assert code == 2 and "wide.csv:2: 2 input features per step, expected 1" in err
    assert not (tmp_path / "pred.txt").exists()



@pytest.mark.parametrize("task", [["--task", "tag", "--data", EX / "tag-dev.conllu"],
                                  ["--task", "classify", "--data", EX / "sentiment3.csv"],
                                  ["--task", "regress", "--data", EX / "regress.csv"],
                                  ["--task", "spell"]], ids=["tag", "classify", "regress", "spell"])  # fmt: skip
def test_a_model_too_big_for_memory_is_refused_first(tmp_path, capsys, monkeypatch, task):
    from bptt import resources

    monkeypatch.setattr(resources, "available_memory", lambda: 2**12)  # 4 KiB
    assert "training needs about" in run(capsys, tmp_path, "train", *task)
