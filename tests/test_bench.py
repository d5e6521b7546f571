"""`bptt bench` runs from the installed package (not a timed test: it only has to run,
check the gradients it compares, and say clearly what it needs)."""

import sys

import pytest

from bptt.cli import main


def test_bench_runs_every_section_it_is_given(capsys):
    assert (
        main(
            [
                "bench",
                "--sections",
                "step,generate,memory",
                "--configs",
                "char-small-B1",
                "--rounds",
                "1",
                "--seconds",
                "0.01",
                "--lengths",
                "30",
                "--gen-length",
                "10",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    for expected in ("char-small-B1", "GEMM-only tok/s", "generation, batch 1", "ckpt MB"):
        assert expected in out


def test_bench_says_torch_is_missing(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    assert main(["bench", "--sections", "step"]) == 2
    err = capsys.readouterr().err
    assert "PyTorch, which is not installed" in err and "pip install" in err


def test_bench_refuses_an_unknown_configuration(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "--configs", "char-huge"])
    assert e.value.code == 2
    assert "expected comma-separated configurations from: char-small-B1" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_mpi_section_runs_two_ranks(capsys, monkeypatch):
    from test_distributed import mpi_env

    for name in ("PYTHONPATH", "OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"):
        monkeypatch.setenv(name, mpi_env()[name])
    args = ["bench", "--sections", "mpi", "--configs", "char-small-B32", "--rounds", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 ranks tok/s" in out and "char-small-B32" in out
