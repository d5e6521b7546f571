"""Optimizers, clipping and learning-rate schedules, checked against torch and by hand.

Parity: the same float64 tensors and gradient sequences through bptt.training.optim and
torch.optim, 20 steps, every parameter and buffer to rtol 1e-12. Resuming:
state_dict -> JSON / bytes -> load_state_dict mid-run continues bit for bit.
Tests that need torch import it themselves; the rest run on NumPy alone.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from bptt.errors import CheckpointError, UsageError
from bptt.training import clipping, optim, schedules

SHAPES = {"rnn0.W": (4, 4), "rnn0.b": (4,), "head.V": (2, 3, 4)}
STEPS = 20
LR = 0.05

# (factory name, options): options use torch's names; "momentum" means SGD with momentum 0.9.
CASES = [
    ("sgd", {}),
    ("sgd", {"weight_decay": 0.1}),
    ("momentum", {}),
    ("momentum", {"nesterov": True}),
    ("momentum", {"momentum": 0.5, "dampening": 0.3, "weight_decay": 0.05}),
    ("momentum", {"momentum": 0.8, "nesterov": True, "weight_decay": 0.1}),
    ("adagrad", {}),
    ("adagrad", {"initial_accumulator_value": 0.1, "eps": 1e-6, "lr_decay": 0.01, "weight_decay": 0.1}),
    ("rmsprop", {}),
    ("rmsprop", {"centered": True}),
    ("rmsprop", {"alpha": 0.9, "momentum": 0.8, "centered": True, "weight_decay": 0.1}),
    ("adam", {}),
    ("adam", {"betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("adam", {"amsgrad": True}),
    ("adamw", {}),
    ("adamw", {"weight_decay": 0.1, "betas": (0.8, 0.99), "eps": 1e-6}),
    ("adamw", {"weight_decay": 0.05, "amsgrad": True}),
    ("adamw", {"weight_decay": 0.0}),
]
IDS = [name + "".join(f"-{k}={v}" for k, v in kw.items()) for name, kw in CASES]
TORCH = {"sgd": "SGD", "momentum": "SGD", "adagrad": "Adagrad", "rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW"}


def make_params(dtype=np.float64, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}


def grad_sequence(dtype=np.float64, steps=STEPS, seed=1) -> list[dict[str, np.ndarray]]:
    """Gradients of varied scale per step, so adaptive methods see changing magnitudes."""
    rng = np.random.default_rng(seed)
    return [
        {k: (rng.standard_normal(s) * 10.0 ** rng.uniform(-2, 1)).astype(dtype) for k, s in SHAPES.items()}
        for _ in range(steps)
    ]


def run(name, kw, params, grads, lr=LR, halve_at=10):
    """Steps through `grads`; lr is halved before step `halve_at`, as a schedule would."""
    opt = optim.make_optimizer(name, lr, **kw)
    for i, g in enumerate(grads):
        if i == halve_at:
            opt.lr *= 0.5
        opt.step(params, g)
    return opt


# ---- parity with torch.optim ------------------------------------------------


@pytest.mark.parametrize("name, kw", CASES, ids=IDS)
def test_matches_torch_optim(name, kw):
    torch = pytest.importorskip("torch")
    params, grads = make_params(), grad_sequence()
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    tkw = dict(kw)
    if name == "momentum":
        tkw.setdefault("momentum", 0.9)
    topt = getattr(torch.optim, TORCH[name])(list(tparams.values()), lr=LR, foreach=False, **tkw)
    opt = optim.make_optimizer(name, LR, **kw)
    for i, g in enumerate(grads):
        if i == 10:  # the lr is read at every step: a schedule may change it
            opt.lr *= 0.5
            topt.param_groups[0]["lr"] *= 0.5
        for k, t in tparams.items():
            t.grad = torch.tensor(g[k])
        topt.step()
        opt.step(params, g)
    for k, t in tparams.items():
        np.testing.assert_allclose(params[k], t.detach().numpy(), rtol=1e-12, atol=1e-15, err_msg=k)
        for buf, tval in topt.state[t].items():
            if buf == "step" or tval is None:
                continue
            np.testing.assert_allclose(
                opt.state[f"{buf}.{k}"], tval.numpy(), rtol=1e-12, atol=1e-15, err_msg=f"{buf}.{k}"
            )
    assert {s.split(".", 1)[0] for s in opt.state} <= set(type(opt).buffers)


def test_sgd_is_the_lecture_notes_rule():
    params, grads = make_params(), grad_sequence(steps=1)
    expected = {k: v - LR * grads[0][k] for k, v in params.items()}
    optim.make_optimizer("sgd", LR).step(params, grads[0])
    for k in params:
        np.testing.assert_array_equal(params[k], expected[k])


def test_grads_are_left_untouched():
    params, grads = make_params(), grad_sequence(steps=3)
    before = [{k: v.copy() for k, v in g.items()} for g in grads]
    run("adam", {"weight_decay": 0.1}, params, grads)
    for g, b in zip(grads, before):
        for k in g:
            np.testing.assert_array_equal(g[k], b[k])


# ---- float32 ----------------------------------------------------------------


@pytest.mark.parametrize("name, kw", CASES, ids=IDS)
def test_float32_stays_float32(name, kw):
    p32, g32 = make_params(np.float32), grad_sequence(np.float32)
    p64 = {k: v.astype(np.float64) for k, v in p32.items()}
    g64 = [{k: v.astype(np.float64) for k, v in g.items()} for g in g32]
    ids = {k: id(v) for k, v in p32.items()}
    opt = run(name, kw, p32, g32)
    run(name, kw, p64, g64)
    assert {k: id(v) for k, v in p32.items()} == ids  # updated in place, not replaced
    assert all(v.dtype == np.float32 for v in p32.values())
    assert all(v.dtype == np.float32 for v in opt.state.values())
    for k in p32:
        np.testing.assert_allclose(p32[k], p64[k], rtol=1e-4, atol=1e-4, err_msg=k)


@pytest.mark.parametrize("name, kw", CASES, ids=IDS)
def test_a_step_allocates_no_temporaries(name, kw):
    """After the first step, an update is in-place ufuncs into cached scratch arrays."""
    rng = np.random.default_rng(0)
    params = {"big.W": rng.standard_normal((256, 256)).astype(np.float32)}  # 256 KiB
    grads = {"big.W": rng.standard_normal((256, 256)).astype(np.float32)}
    opt = optim.make_optimizer(name, LR, **kw)
    opt.step(params, grads)
    opt.step(params, grads)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        opt.step(params, grads)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 1024, f"{peak} bytes allocated in one step"


# ---- resuming ---------------------------------------------------------------


def _through_storage(arrays, meta):
    """What a checkpoint does: arrays to bytes (read-only on the way back), meta to JSON."""
    arrays = {k: np.frombuffer(v.tobytes(), dtype=v.dtype).reshape(v.shape) for k, v in arrays.items()}
    return arrays, json.loads(json.dumps(meta, allow_nan=False))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name, kw", CASES, ids=IDS)
def test_resume_is_bit_identical(name, kw, dtype):
    grads = grad_sequence(dtype)
    straight = make_params(dtype)
    run(name, kw, straight, grads, halve_at=7)

    params = make_params(dtype)
    opt = run(name, kw, params, grads[:10], halve_at=7)
    arrays, meta = opt.state_dict()
    saved = {k: v.copy() for k, v in params.items()}
    for g in grads[10:]:  # the live optimizer goes on: the snapshot must not change with it
        opt.step(params, g)
    arrays, meta = _through_storage(arrays, meta)

    fresh = optim.make_optimizer(name, 1.0, **kw)  # lr and step count come from the checkpoint
    fresh.load_state_dict(arrays, meta)
    for g in grads[10:]:
        fresh.step(saved, g)
    for k in straight:
        assert straight[k].tobytes() == params[k].tobytes() == saved[k].tobytes(), k
    assert fresh.lr == opt.lr and fresh.t == opt.t == STEPS


def test_resume_through_safetensors():
    st = pytest.importorskip("safetensors.numpy")
    grads = grad_sequence(np.float32)
    straight, params = make_params(np.float32), make_params(np.float32)
    run("adam", {"amsgrad": True}, straight, grads, halve_at=7)
    opt = run("adam", {"amsgrad": True}, params, grads[:10], halve_at=7)
    arrays, meta = opt.state_dict()
    arrays = st.load(st.save(arrays))
    fresh = optim.make_optimizer("adam", LR, amsgrad=True)
    fresh.load_state_dict(arrays, json.loads(json.dumps(meta)))
    for g in grads[10:]:
        fresh.step(params, g)
    for k in straight:
        np.testing.assert_array_equal(params[k], straight[k])


def test_load_state_dict_restores_hyperparameters():
    opt = optim.make_optimizer("adam", LR, betas=(0.5, 0.6), eps=1e-3)
    fresh = optim.make_optimizer("adam", 1.0)
    fresh.load_state_dict(*_through_storage(*opt.state_dict()))
    assert (fresh.lr, fresh.betas, fresh.eps, fresh.t) == (LR, (0.5, 0.6), 1e-3, 0)


def test_load_state_dict_rejects_other_state():
    params, grads = make_params(), grad_sequence(steps=1)
    adam = run("adam", {}, params, grads)
    with pytest.raises(CheckpointError, match="Adam"):
        optim.make_optimizer("rmsprop", LR).load_state_dict(*adam.state_dict())
    arrays, meta = adam.state_dict()
    with pytest.raises(CheckpointError, match="bogus"):
        optim.make_optimizer("adam", LR).load_state_dict({"bogus.rnn0.W": arrays["exp_avg.rnn0.W"]}, meta)
    arrays["exp_avg.rnn0.W"] = np.zeros((2, 2))
    fresh = optim.make_optimizer("adam", LR)
    fresh.load_state_dict(arrays, meta)
    with pytest.raises(CheckpointError, match="shape"):
        fresh.step(params, grads[0])


@pytest.mark.parametrize(
    "name, kw", [c for c in CASES if c[0] != "sgd"], ids=[i for i in IDS if not i.startswith("sgd")]
)
def test_loaded_buffers_adopt_the_models_dtype_and_refuse_another_shape(name, kw):
    """A checkpoint written by a float64 run, resumed by a float32 one: every buffer becomes
    float32 at the first step and the run goes on as if it had been float32 throughout
    (to float32 rounding); a buffer of another shape is a CheckpointError naming it."""
    g64, g32 = grad_sequence(np.float64), grad_sequence(np.float32)
    p64, p32 = make_params(np.float64), make_params(np.float32)
    opt64, opt32 = run(name, kw, p64, g64[:5]), run(name, kw, p32, g32[:5])
    arrays, meta = opt64.state_dict()
    fresh = optim.make_optimizer(name, 1.0, **kw)
    fresh.load_state_dict(arrays, meta)
    resumed = {k: v.astype(np.float32) for k, v in p64.items()}
    for g in g32[5:]:
        fresh.step(resumed, g)
        opt32.step(p32, g)
    assert all(v.dtype == np.float32 for v in fresh.state.values())
    for k in p32:
        assert resumed[k].dtype == np.float32
        np.testing.assert_allclose(resumed[k], p32[k], rtol=1e-4, atol=1e-5, err_msg=k)
    key = sorted(arrays)[0]
    arrays[key] = np.zeros((2, 2))
    fresh = optim.make_optimizer(name, 1.0, **kw)
    fresh.load_state_dict(arrays, meta)
    with pytest.raises(CheckpointError, match=f"optimizer state '{key}': shape \\(2, 2\\)"):
        fresh.step(make_params(np.float32), g32[0])


# ---- options ----------------------------------------------------------------


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_factory_defaults_are_torchs(name):
    opt = optim.make_optimizer(name, 0.1)
    _, meta = opt.state_dict()
    expected = {
        "sgd": {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0},
        "momentum": {"momentum": 0.9, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0},
        "adagrad": {"lr_decay": 0.0, "eps": 1e-10, "initial_accumulator_value": 0.0, "weight_decay": 0.0},
        "rmsprop": {"alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "centered": False, "weight_decay": 0.0},
        "adam": {"betas": [0.9, 0.999], "eps": 1e-8, "amsgrad": False, "weight_decay": 0.0},
        "adamw": {"betas": [0.9, 0.999], "eps": 1e-8, "amsgrad": False, "weight_decay": 0.01},
    }[name]
    assert {k: meta[k] for k in expected} == expected


@pytest.mark.parametrize("name", ["adamax", "SGD", "", None])
def test_unknown_optimizer(name):
    with pytest.raises(UsageError, match="--optimizer"):
        optim.make_optimizer(name, 0.1)


@pytest.mark.parametrize("lr", [0, 0.0, -1e-3, float("nan"), float("inf"), "0.1", None, True])
@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_bad_lr(name, lr):
    with pytest.raises(UsageError, match="--lr"):
        optim.make_optimizer(name, lr)


@pytest.mark.parametrize(
    "name, kw, option",
    [
        ("sgd", {"nesterov": True}, "nesterov"),
        ("momentum", {"nesterov": True, "dampening": 0.1}, "nesterov"),
        ("momentum", {"momentum": -0.1}, "momentum"),
        ("sgd", {"weight_decay": float("nan")}, "weight_decay"),
        ("adam", {"betas": (0.9, 1.0)}, "betas"),
        ("adam", {"eps": -1.0}, "eps"),
        ("adagrad", {"initial_accumulator_value": -1.0}, "initial_accumulator_value"),
        ("rmsprop", {"alpha": -0.5}, "alpha"),
        ("sgd", {"betas": (0.9, 0.99)}, "betas"),
    ],
)
def test_bad_options_name_the_option(name, kw, option):
    with pytest.raises(UsageError, match=option):
        optim.make_optimizer(name, 0.1, **kw)


def test_core_imports_without_torch():
    code = "import sys, bptt.training.optim, bptt.training.clipping, bptt.training.schedules; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- clipping ---------------------------------------------------------------


def scaled_grads(dtype=np.float64, scale=10.0):
    return {k: v * scale for k, v in grad_sequence(dtype, steps=1, seed=7)[0].items()}


def test_clip_global_norm_matches_torch():
    torch = pytest.importorskip("torch")
    grads = scaled_grads()
    tensors = [torch.tensor(v, requires_grad=True) for v in grads.values()]
    for t, v in zip(tensors, grads.values()):
        t.grad = torch.tensor(v)
    total = float(torch.nn.utils.clip_grad_norm_(tensors, 1.0, foreach=False))
    norm, clipped = clipping.clip_global_norm(grads, 1.0)
    assert clipped and norm == pytest.approx(total, rel=1e-12) and norm > 1.0
    for v, t in zip(grads.values(), tensors):  # torch divides by norm + 1e-6, Algorithm 1 by norm
        np.testing.assert_allclose(v, t.grad.numpy() * (norm + 1e-6) / norm, rtol=1e-12)


def test_clip_global_norm_is_algorithm_1():
    grads = scaled_grads()
    flat = np.concatenate([v.ravel() for v in grads.values()])
    before = np.linalg.norm(flat)
    norm, clipped = clipping.clip_global_norm(grads, 2.0)
    assert clipped and norm == pytest.approx(before, rel=1e-14)
    for k, v in grads.items():  # one common factor: directions are kept
        np.testing.assert_allclose(v, scaled_grads()[k] * 2.0 / before, rtol=1e-14)
    assert clipping.global_norm(grads) == pytest.approx(2.0, rel=1e-14)


def test_clip_global_norm_below_threshold_leaves_grads_alone():
    grads = scaled_grads(scale=0.01)
    copy = {k: v.copy() for k, v in grads.items()}
    norm, clipped = clipping.clip_global_norm(grads, 100.0)
    assert not clipped and 0 < norm < 100.0
    for k in grads:
        np.testing.assert_array_equal(grads[k], copy[k])


def test_float32_norm_accumulates_in_float64():
    grads = scaled_grads(np.float32, scale=1.0)
    grads["big"] = np.full(1_000_003, 0.1, np.float32)  # long float32 sums drift
    exact = math.sqrt(sum(float(np.sum(v.astype(np.float64) ** 2)) for v in grads.values()))
    assert clipping.global_norm(grads) == pytest.approx(exact, rel=1e-13)
    norm, clipped = clipping.clip_global_norm(grads, 1.0)
    assert clipped and all(v.dtype == np.float32 for v in grads.values())
    assert clipping.global_norm(grads) == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_norm_is_returned_not_applied(bad):
    grads = scaled_grads()
    grads["rnn0.b"][1] = bad
    copy = {k: v.copy() for k, v in grads.items()}
    norm, clipped = clipping.clip_global_norm(grads, 1.0)
    assert not math.isfinite(norm) and not clipped
    norms = clipping.clip_per_tensor_norm(grads, 1.0)
    assert not math.isfinite(norms["rnn0.b"])
    np.testing.assert_array_equal(grads["rnn0.b"], copy["rnn0.b"])  # NaN == NaN here
    assert clipping.global_norm({"a": np.array([1e200, 1e200])}) == pytest.approx(math.sqrt(2) * 1e200)


def test_clip_per_tensor_norm_matches_torch():
    torch = pytest.importorskip("torch")
    grads = scaled_grads()
    grads["rnn0.b"] *= 1e-3  # one tensor stays below the threshold
    expected = {}
    for k, v in grads.items():
        t = torch.tensor(v, requires_grad=True)
        t.grad = torch.tensor(v)
        expected[k] = (float(torch.nn.utils.clip_grad_norm_([t], 1.0)), t.grad.numpy())
    norms = clipping.clip_per_tensor_norm(grads, 1.0)
    for k, (tnorm, tgrad) in expected.items():
        assert norms[k] == pytest.approx(tnorm, rel=1e-12)
        if tnorm > 1.0:
            np.testing.assert_allclose(grads[k], tgrad * (tnorm + 1e-6) / tnorm, rtol=1e-12)
            assert np.linalg.norm(grads[k]) == pytest.approx(1.0, rel=1e-14)
        else:
            np.testing.assert_array_equal(grads[k], tgrad)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_clip_value_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    grads = scaled_grads(dtype, scale=1.0)
    expected = {}
    for k, v in grads.items():
        t = torch.tensor(v, requires_grad=True)
        t.grad = torch.tensor(v)
        torch.nn.utils.clip_grad_value_([t], 0.5)
        expected[k] = t.grad.numpy()
    n_expected = sum(int(np.sum(np.abs(v) > 0.5)) for v in grads.values())
    assert clipping.clip_value(grads, 0.5) == n_expected > 0
    for k in grads:
        assert grads[k].dtype == dtype
        np.testing.assert_array_equal(grads[k], expected[k])


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), None])
def test_bad_thresholds(bad):
    grads = scaled_grads()
    with pytest.raises(UsageError, match="--clip-norm"):
        clipping.clip_global_norm(grads, bad)
    with pytest.raises(UsageError, match="--clip-norm"):
        clipping.clip_per_tensor_norm(grads, bad)
    with pytest.raises(UsageError, match="--clip-value"):
        clipping.clip_value(grads, bad)


# ---- schedules --------------------------------------------------------------


def lrs_by_epoch(schedule, opt, epochs):
    out = []
    for e in range(1, epochs + 1):
        schedule.step(e)
        out.append(opt.lr)
    return out


def test_step_decay_every_epoch():
    opt = optim.make_optimizer("sgd", 1.0)
    assert lrs_by_epoch(schedules.StepDecay(opt, 0.5), opt, 4) == [0.5, 0.25, 0.125, 0.0625]


def test_step_decay_is_char_rnns():
    """char-rnn: at the end of epoch e, lr *= 0.97 if e >= learning_rate_decay_after (10)."""
    opt = optim.make_optimizer("sgd", 2e-3)
    lrs = lrs_by_epoch(schedules.StepDecay(opt, 0.97, start=10), opt, 13)
    lr, expected = 2e-3, []
    for e in range(1, 14):
        if e >= 10:
            lr *= 0.97
        expected.append(lr)
    assert lrs == expected and lrs[8] == 2e-3 and lrs[9] == 2e-3 * 0.97


def test_step_decay_every_k_epochs():
    opt = optim.make_optimizer("sgd", 1.0)
    lrs = lrs_by_epoch(schedules.StepDecay(opt, 0.1, every=3, start=2), opt, 9)
    assert lrs == pytest.approx([1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 1e-3, 1e-3], rel=1e-15)


def test_step_decay_counts_each_epoch_once():
    a, b = optim.make_optimizer("sgd", 1.0), optim.make_optimizer("sgd", 1.0)
    sa, sb = schedules.StepDecay(a, 0.5, start=2), schedules.StepDecay(b, 0.5, start=2)
    for e in (1, 2, 3, 4, 5):
        sa.step(e)
    for e in (0, 2, 2, 5, 3):  # repeats, a jump and a step back
        sb.step(e)
    assert a.lr == b.lr == 0.5**4  # epochs 2, 3, 4 and 5


def test_exponential_decay():
    opt = optim.make_optimizer("adam", 1.0)
    lrs = lrs_by_epoch(schedules.ExponentialDecay(opt, 0.9), opt, 5)
    assert lrs == pytest.approx([0.9**e for e in range(1, 6)], rel=1e-15)  # torch's ExponentialLR
    opt = optim.make_optimizer("adam", 1.0)
    lrs = lrs_by_epoch(schedules.ExponentialDecay(opt, 0.9, start=3), opt, 5)
    assert lrs == pytest.approx([1, 1, 0.9, 0.81, 0.729], rel=1e-15)


METRICS = [
    5.0,
    4.0,
    4.0,
    3.9999,
    4.1,
    3.0,
    3.0,
    float("nan"),
    3.0,
    3.0,
    2.9999,
    2.0,
    2.5,
    2.5,
    2.5,
    2.5,
    1.0,
    1.0,
    1.0,
    1.0,
    1.0,
    1.0,
]


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"patience": 0},
        {"factor": 0.1, "patience": 1, "min_lr": 0.002},
        {"patience": 1, "cooldown": 2, "threshold": 0.1},
    ],
)
def test_reduce_on_plateau_matches_torch(kw):
    torch = pytest.importorskip("torch")
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    tkw = {"factor": 0.5, "patience": 2, **kw}  # bptt's defaults halve after 2; torch's are 0.1 and 10
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, mode="min", threshold_mode="rel", **tkw)
    opt = optim.make_optimizer("sgd", 0.1)
    sched = schedules.ReduceOnPlateau(opt, **kw)
    ours, theirs = [], []
    for m in METRICS:
        tsched.step(m)
        sched.step(m)
        ours.append(opt.lr)
        theirs.append(topt.param_groups[0]["lr"])
    assert ours == theirs and len(set(ours)) > 2


def test_reduce_on_plateau_by_hand():
    opt = optim.make_optimizer("sgd", 1.0)
    sched = schedules.ReduceOnPlateau(opt, factor=0.5, patience=2, min_lr=0.3)
    lrs = []
    for m in [3, 2, 2, 2, 1.99999, 2, 2, 2, 2, 2, 2]:  # 1.99999 is within the 1e-4 relative threshold
        sched.step(m)
        lrs.append(opt.lr)
    assert lrs == [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.3, 0.3, 0.3, 0.3]


@pytest.mark.parametrize(
    "make, feed",
    [
        (lambda o: schedules.StepDecay(o, 0.5, every=2, start=1), list(range(1, 9))),
        (lambda o: schedules.ExponentialDecay(o, 0.9, start=2), list(range(1, 9))),
        (lambda o: schedules.ReduceOnPlateau(o, patience=1, cooldown=1), METRICS[:16]),
        (lambda o: schedules.ReduceOnPlateau(o), [1.0, 2.0] + METRICS),
    ],
)
def test_schedule_state_round_trip(make, feed):
    a = optim.make_optimizer("sgd", 1.0)
    sa = make(a)
    for x in feed:
        sa.step(x)
    half = len(feed) // 2
    b = optim.make_optimizer("sgd", 1.0)
    sb = make(b)
    for x in feed[:half]:
        sb.step(x)
    state, lr = json.loads(json.dumps(sb.state_dict(), allow_nan=False)), b.lr
    c = optim.make_optimizer("sgd", lr)
    sc = make(c)
    sc.load_state_dict(state)
    for x in feed[half:]:
        sc.step(x)
    assert c.lr == a.lr
    assert json.dumps(sc.state_dict()) == json.dumps(sa.state_dict())


def test_fresh_plateau_state_is_json():
    state = schedules.ReduceOnPlateau(optim.make_optimizer("sgd", 1.0)).state_dict()
    assert json.loads(json.dumps(state, allow_nan=False))["best"] == "inf"


@pytest.mark.parametrize(
    "make, option",
    [
        (lambda o: schedules.StepDecay(o, 0.0), "--lr-decay"),
        (lambda o: schedules.StepDecay(o, float("nan")), "--lr-decay"),
        (lambda o: schedules.StepDecay(o, 0.5, every=0), "every"),
        (lambda o: schedules.StepDecay(o, 0.5, start=-1), "--lr-decay-after"),
        (lambda o: schedules.ExponentialDecay(o, -0.9), "gamma"),
        (lambda o: schedules.ReduceOnPlateau(o, factor=1.0), "factor"),
        (lambda o: schedules.ReduceOnPlateau(o, patience=-1), "patience"),
        (lambda o: schedules.ReduceOnPlateau(o, min_lr=-1.0), "min_lr"),
    ],
)
def test_bad_schedule_options(make, option):
    with pytest.raises(UsageError, match=option):
        make(optim.make_optimizer("sgd", 1.0))


@pytest.mark.parametrize("name, kw", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [False, True])
def test_blocked_updates_are_the_whole_array_updates_bit_for_bit(name, kw, dtype, threads, monkeypatch):
    """Large parameters are updated in cache-sized blocks (on two threads from PARALLEL on):
    the same elementwise operations, so the same bits as whole-array passes."""
    grads = grad_sequence(dtype, steps=6)
    whole = make_params(dtype)
    run(name, kw, whole, grads, halve_at=3)
    monkeypatch.setattr(optim, "BLOCK", 5)  # head.V has 24 elements: 5 blocks, the last one short
    monkeypatch.setattr(optim, "PARALLEL", 20 if threads else 10**9)
    blocked = make_params(dtype)
    opt = run(name, kw, blocked, grads, halve_at=3)
    for k in whole:
        np.testing.assert_array_equal(blocked[k], whole[k], err_msg=k)
    assert all(v.dtype == dtype for v in opt.state.values())


def test_float32_norm_in_blocks_is_the_float64_norm(monkeypatch):
    """A large float32 gradient's norm is summed block by block in float64: the float64 norm to round-off."""
    rng = np.random.default_rng(3)
    g = (rng.standard_normal((7, 11)) * 1e3).astype(np.float32)
    want = math.sqrt(float(np.sum(g.astype(np.float64) ** 2)))
    monkeypatch.setattr(clipping, "BLOCK", 10)  # 77 elements: 8 blocks, the last one short
    assert clipping.tensor_norm(g) == pytest.approx(want, rel=1e-14)
    big = np.full(20, 3e38, np.float32)  # float64 squares do not overflow; the norm is finite
    assert clipping.tensor_norm(big) == pytest.approx(3e38 * math.sqrt(20), rel=1e-7)
    assert math.isnan(clipping.tensor_norm(np.array([1.0] * 15 + [np.nan], np.float32)))


FORKED = """
import os, numpy as np
from bptt.training import optim
optim.PARALLEL, optim.BLOCK = 10, 4
opt, p, g = optim.Adam(), {"x": np.ones(40)}, {"x": np.ones(40)}
from bptt import blas
while len(blas.pool()._threads) < 2:  # both of the pool's threads started, and idle
    opt.step(p, g)
pid = os.fork()
if pid == 0:
    opt.step(p, g)  # the child's pool has no threads: a new one is made
    os._exit(0)
_, status = os.waitpid(pid, 0)
raise SystemExit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_updates_on_two_threads_without_hanging():
    r = subprocess.run([sys.executable, "-c", FORKED], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
