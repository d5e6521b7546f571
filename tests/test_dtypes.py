"""No float64 in float32 hot paths: every float buffer a float32 model's forward pass
keeps, its dL/dZ, every gradient and dL/dh_0 are float32 (a stray float64 would
double the memory traffic and drop the GEMMs to DGEMM)."""

import dataclasses
import itertools

import numpy as np
import pytest

from helpers import INPUT_KINDS, make_batch, make_model, random_h0


def _float_arrays(obj, path="fwd"):
    """Every float ndarray reachable from a Forward (fields, caches, pooling info)."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "f":
            yield path, obj
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield from _float_arrays(getattr(obj, f.name), f"{path}.{f.name}")
    elif isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            yield from _float_arrays(item, f"{path}[{i}]")


def _cases():
    modes = ("many-to-many", "many-to-one", "one-to-many", "one-to-one")
    for kind, mode, (layers, bi), every in itertools.product(INPUT_KINDS, modes, ((1, False), (2, True)), (None, 2)):
        if mode == "one-to-many" and bi:
            continue
        for pooling in ("mean", "max") if mode == "many-to-one" else ("last",):
            yield pytest.param(
                kind,
                mode,
                layers,
                bi,
                every,
                pooling,
                id=f"{kind}-{mode}-{pooling}-L{layers}-{'bi' if bi else 'uni'}-k{every}",
            )


@pytest.mark.parametrize("kind,mode,layers,bi,every,pooling", list(_cases()))
def test_float32_model_keeps_float32_everywhere(kind, mode, layers, bi, every, pooling):
    rng = np.random.default_rng(0)
    opts = dict(mode=mode, num_layers=layers, bidirectional=bi, dropout=0.2, checkpoint_every=every, pooling=pooling)
    model = make_model(kind, **opts)
    x, y, cond = make_batch(model, rng, B=3, T=5)
    mask = None if mode == "one-to-one" else np.array([5, 3, 2])
    h0 = None if mode == "one-to-many" else random_h0(model, rng, 3)  # float64 from the user
    fwd = model.forward(x, mask, h0, cond=cond)
    loss, dZ = model.loss(fwd, y)
    grads, dh0 = model.backward(fwd, dZ)
    found = list(_float_arrays(fwd)) + [("dZ", dZ), ("dh0", dh0)] + [(f"grad {k}", g) for k, g in grads.items()]
    assert any(name.startswith("fwd.caches") for name, _ in found)
    wrong = {name: a.dtype.name for name, a in found if a.dtype != np.float32}
    assert not wrong, wrong
    assert isinstance(loss, float)
