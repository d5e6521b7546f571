"""`bptt bench` runs from the installed package (not a timed test: it only has to run,
check the gradients it compares, and say clearly what it needs)."""

import sys

import numpy as np
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


def test_step_flops_match_a_hand_count():
    from bptt.bench import step_flops

    # K=3, H=2, T=4, B=1: N = 4 output rows, P = HK + H^2 + H + KH + K = 6 + 4 + 2 + 6 + 3 = 21 parameters
    gemm = (
        2 * 4 * 2 * 2  # forward h_{t-1} W^T, T*B rows of (H, H)
        + 2 * 4 * 2 * 3  # head Z = feat V^T
        + 2 * 4 * 3 * 2  # dL/dfeat = dZ V
        + 2 * 3 * 4 * 2  # dV = dZ^T feat
        + 2 * 4 * 2 * 2  # delta_t W
        + 2 * 2 * 4 * 2  # dW = sum delta^T h
    )
    elementwise = (
        8  # U x_t + b: T*B*H adds
        + 16  # + and tanh
        + 12
        + 60  # + c, softmax cross-entropy 5 per logit
        + 12  # dc
        + 32  # (1 - h^2), its product, the carried term
        + 8
        + 8  # db, dU
        + 42  # SGD, 2 per parameter
    )
    assert step_flops(3, 2, 4, 1, "many-to-many") == {"gemm": gemm, "elementwise": elementwise, "total": 438}
    assert gemm + elementwise == 438
    # many-to-one: the head and its gradients see only the B last states
    m2o = step_flops(3, 2, 4, 1, "many-to-one")
    assert m2o["gemm"] == gemm - 3 * 2 * 3 * 2 * 3  # 3 head GEMMs over 1 row instead of 4


def test_machine_header_names_cpu_blas_threads_and_load():
    import torch

    from bptt import bench

    info = bench.machine(torch)
    for key in ("cpu", "cores", "numpy", "OPENBLAS_CORETYPE", "bptt threads", "torch", "load"):
        assert info[key], key
    assert "threads" in info["torch"] and "load average" in info["load"]
    lines = []
    bench.print_machine(lines.append, torch)
    assert lines[0].startswith("# cpu:")


def test_bench_help_lists_the_configurations(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    from bptt import bench

    for name in (*bench.CONFIGS, *bench.CONVERGE):
        assert name in out


TINY = dict(level="char", layers=2, H=12, B=4, T=10, lr=1e-2, target=2.6)
TEXT = "the quick brown fox jumps over the lazy dog. " * 60


def test_converge_starts_both_sides_from_the_same_weights():
    from bptt.bench import converge_data, converge_setup

    _, _, K = converge_data(TINY, TEXT)
    model, rnn, lin = converge_setup(TINY, K)
    p = model.params
    for layer in range(2):
        np.testing.assert_array_equal(p[f"rnn{layer}.U"], getattr(rnn, f"weight_ih_l{layer}").detach().numpy())
        np.testing.assert_array_equal(p[f"rnn{layer}.W"], getattr(rnn, f"weight_hh_l{layer}").detach().numpy())
        np.testing.assert_array_equal(p[f"rnn{layer}.b"], getattr(rnn, f"bias_ih_l{layer}").detach().numpy())
        bias_hh = getattr(rnn, f"bias_hh_l{layer}")  # one trained bias per layer on both sides
        assert not bias_hh.requires_grad and not bias_hh.detach().numpy().any()
    np.testing.assert_array_equal(p["head.V"], lin.weight.detach().numpy())
    np.testing.assert_array_equal(p["head.c"], lin.bias.detach().numpy())


@pytest.mark.slow
def test_converge_reaches_a_lenient_target_on_both_sides():
    from bptt.bench import converge

    r = converge(TINY, TEXT, budget=60.0, eval_every=10)
    assert r["target"] == 2.6
    for side in ("bptt", "torch"):
        assert r[side]["reached"], (side, r)
        assert r[side]["valid"] <= 2.6 and r[side]["updates"] % 10 == 0 and r[side]["seconds"] > 0
    # the same model, data and optimizer: both get there after the same number of updates (to float round-off)
    assert abs(r["bptt"]["updates"] - r["torch"]["updates"]) <= 10


def test_converge_table_prints_both_times_and_the_ratio(monkeypatch):
    from bptt import bench

    real = bench.converge_data
    monkeypatch.setattr(bench, "converge_data", lambda spec, text=None: real(spec, TEXT))
    monkeypatch.setitem(bench.CONVERGE, "tiny", TINY)
    lines = []
    bench.run_converge(["tiny"], 100.0, 60.0, eval_every=5, out=lines.append)  # any loss is below 100 nats
    assert lines[0].startswith("# cpu:")
    row = next(line.split() for line in lines if line.startswith("tiny"))
    assert row[1] == "100.00" and row[3] == row[5] == "5"  # both stopped at the first evaluation
    assert float(row[6]) > 0 and float(row[2]) >= 0 and float(row[4]) >= 0  # torch/bptt, seconds each
