"""Memory estimates: the parameter count is RNNModel's exactly, and a run that cannot fit
is refused before anything is allocated, with a hint for the part that is too big."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bptt import RNNModel
from bptt.errors import UsageError
from bptt.training import resources

GIB = 2**30


def kinds():
    """(estimate_memory kwargs, RNNModel kwargs) over inputs, layers, directions, bias, cond."""
    inputs = [
        ({"input_size": 11, "embedding_size": 4}, {"vocab_size": 11, "embedding_size": 4}),
        ({"input_size": 11}, {"vocab_size": 11}),
        ({"input_size": 5, "tokens": False}, {"input_size": 5}),
    ]
    for (est_in, model_in), L, bidir, bias, mode in itertools.product(
        inputs, [1, 3], [False, True], [True, False], ["many-to-many", "one-to-many"]
    ):
        if mode == "one-to-many" and bidir:
            continue
        cond = 2 if mode == "one-to-many" else None
        shared = dict(hidden_size=6, num_layers=L, bias=bias, cond_size=cond)
        yield (
            {**est_in, **shared, "output_size": 7, "num_directions": 2 if bidir else 1, "steps": 3, "batch_size": 2},
            {**model_in, **shared, "output_size": 7, "bidirectional": bidir, "mode": mode},
        )


@pytest.mark.parametrize("est_kw,model_kw", list(kinds()))
def test_parameter_count_is_the_models(est_kw, model_kw):
    model = RNNModel(**model_kw)
    est = resources.estimate_memory(**est_kw)
    assert est.parameters == sum(p.size for p in model.params.values())
    assert est.parameter_bytes == 7 * est.parameters * 4  # Adam, float32: weights, 2 moments, their snapshot, gradients


@pytest.mark.parametrize("est_kw,model_kw", list(kinds()))
def test_estimate_model_reads_the_models_own_keywords(est_kw, model_kw):
    """The estimate every command uses, from the RNNModel keywords it is about to build with."""
    est = resources.estimate_model(model_kw, steps=3, batch_size=2)
    assert est.parameters == sum(p.size for p in RNNModel(**model_kw).params.values())
    assert est == resources.estimate_memory(**est_kw, sequence_outputs=True)


def test_activations_scale_with_t_b_and_dtype():
    base = dict(input_size=100, embedding_size=8, hidden_size=16, num_layers=2, output_size=100)
    a = resources.estimate_memory(**base, steps=10, batch_size=4)
    b = resources.estimate_memory(**base, steps=20, batch_size=8, dtype="float64")
    assert (a.state_bytes, a.output_bytes) == (3 * 10 * 4 * (2 * 16 + 8) * 4, 3 * 10 * 4 * 100 * 4)
    assert (b.state_bytes, b.output_bytes) == (8 * a.state_bytes, 8 * a.output_bytes)
    one = resources.estimate_memory(**base, steps=10, batch_size=4, sequence_outputs=False)
    assert one.output_bytes == a.output_bytes // 10
    sgd = resources.estimate_memory(**base, steps=10, batch_size=4, optimizer="sgd")
    assert sgd.parameter_bytes == 3 * a.parameter_bytes // 7


def test_huge_sizes_do_not_overflow():
    V, H = 10**10, 10**8
    est = resources.estimate_memory(input_size=V, hidden_size=H, output_size=V, steps=10**4, batch_size=10**3)
    assert est.parameters == V * H + H * H + H + V * (H + 1)
    assert est.total > 2**64  # Python ints, not int64


@pytest.mark.parametrize("bad", [dict(hidden_size=0), dict(steps=-1), dict(optimizer="lbfgs")])
def test_bad_sizes_are_value_errors(bad):
    kw = dict(input_size=3, hidden_size=4, output_size=3, steps=5, batch_size=2) | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        resources.estimate_memory(**kw)


def test_check_memory_names_the_largest_part_and_its_hint():
    params = resources.estimate_memory(
        input_size=50_000, embedding_size=512, hidden_size=2048, output_size=50_000, steps=2, batch_size=1
    )
    outputs = resources.estimate_memory(
        input_size=50_000, embedding_size=16, hidden_size=16, output_size=50_000, steps=500, batch_size=256
    )
    states = resources.estimate_memory(
        input_size=5, hidden_size=4096, num_layers=4, output_size=5, steps=1000, batch_size=256
    )
    for est, part, hint in (
        (params, "parameters and their copies", "--hidden-size or --num-layers"),
        (outputs, "outputs of 500 steps x 256 sequences", "fewer outputs"),
        (states, "hidden states of 1000 steps x 256 sequences", "--batch-size, --seq-length"),
    ):
        with pytest.raises(UsageError) as e:
            resources.check_memory(est, available=GIB)
        message = str(e.value)
        assert part in message and hint in message and "1.0 GiB is available" in message, message
        assert "\n" not in message
    with pytest.raises(UsageError, match="use fewer labels"):
        resources.check_memory(outputs, {"outputs": "fewer labels"}, available=GIB)


def test_check_memory_passes_what_fits_and_where_memory_is_unknown(monkeypatch):
    est = resources.estimate_memory(input_size=100, hidden_size=64, output_size=100, steps=50, batch_size=32)
    resources.check_memory(est, available=10 * est.total)
    with pytest.raises(UsageError):
        resources.check_memory(est, available=int(est.total / resources.USABLE_FRACTION) - 1)
    monkeypatch.setattr(resources, "available_memory", lambda: None)
    resources.check_memory(est)  # not Linux: no check, no error


def test_available_memory_reads_proc_meminfo(monkeypatch):
    """MemAvailable in bytes from the file's kB; None when the file or the line is missing
    or malformed. On Linux the real file gives a positive number (None would skip every check)."""
    import io
    from pathlib import Path

    if Path("/proc/meminfo").exists():
        have = resources.available_memory()
        assert isinstance(have, int) and have > 0, have
    files = {
        "MemTotal:        8000000 kB\nMemFree:          100000 kB\nMemAvailable:    1234567 kB\n": 1234567 * 1024,
        "MemTotal:        8000000 kB\nMemFree:          100000 kB\n": None,  # kernels before 3.14
        "MemAvailable:    lots kB\n": None,
        "MemAvailable:\n": None,
    }
    for text, expected in files.items():

        def fake_open(path, *args, text=text, **kw):
            assert path == "/proc/meminfo", path
            return io.StringIO(text)

        monkeypatch.setattr(resources, "open", fake_open, raising=False)
        assert resources.available_memory() == expected, text

    def missing(path, *args, **kw):
        raise FileNotFoundError(path)

    monkeypatch.setattr(resources, "open", missing, raising=False)
    assert resources.available_memory() is None


def test_default_run_fits_in_a_gigabyte():
    """The default `bptt train` (2 x 256, embedding 64, 103 characters, 50 x 32 windows) is small."""
    est = resources.estimate_memory(
        input_size=103, embedding_size=64, hidden_size=256, num_layers=2, output_size=103, steps=50, batch_size=32
    )
    assert est.parameters == 246_567  # as `bptt train` prints
    assert est.total < GIB / 10
    assert np.isclose(est.parameter_bytes, 7 * 4 * 246_567)
