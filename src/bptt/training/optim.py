"""Optimizers that update a flat dict of parameters in place, step for step as torch.optim.

With g = dL/dtheta (+ wd theta when weight_decay is set: L2, added to the
gradient as torch does) and t the number of steps taken, including this one:

    SGD       theta <- theta - lr g                            (the lecture notes' rule)
    momentum  v <- mu v + (1 - dampening) g  (v = g at t = 1);  theta <- theta - lr v
              nesterov: theta <- theta - lr (g + mu v)
    Adagrad   s <- s + g^2  (s starts at initial_accumulator_value)
              theta <- theta - lr / (1 + (t - 1) lr_decay) * g / (sqrt(s) + eps)
    RMSprop   s <- alpha s + (1 - alpha) g^2;  d = sqrt(s) + eps
              centered: a <- alpha a + (1 - alpha) g;  d = sqrt(s - a^2) + eps
              theta <- theta - lr g / d;  momentum: b <- mu b + g / d, theta <- theta - lr b
    Adam      m <- beta1 m + (1 - beta1) g;  v <- beta2 v + (1 - beta2) g^2   (amsgrad: v^ = max(v^, v))
              theta <- theta - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    AdamW     theta <- theta - lr wd theta (decoupled: wd is not added to g), then the Adam step
              (Loshchilov & Hutter 2019; torch.optim.AdamW, default wd 0.01)

Defaults are torch's; the operations run in torch's order, so a float64 run
matches torch.optim to rounding (tests/test_optim.py). Every update is done
with in-place ufuncs into scratch arrays of the parameter's dtype, so a
float32 model stays float32 and a step allocates nothing after the first.
A parameter of more than BLOCK elements is updated block by block (the same
operations on each slice, so the same numbers bit for bit) with block-sized
scratch that stays in cache, and from PARALLEL elements on the blocks are
shared by two threads (NumPy's ufuncs release the GIL). On the word model's
5.2M float32 parameters an Adam update took 1.42x less CPU time blocked and
1.85x less wall time blocked on two threads than in whole passes (medians of 30
interleaved rounds under load, docs/performance.md); plain SGD, two passes,
gained nothing and is not blocked.

`state_dict()` gives (arrays, meta): per-parameter buffers named
"<buffer>.<param>" (torch's buffer names, e.g. "exp_avg.rnn0.W") for
safetensors, and JSON metadata (class, lr, step count, hyperparameters).
`load_state_dict` restores both, as torch does, so a resumed run continues
bit for bit.
"""

from __future__ import annotations

import inspect

import numpy as np

from bptt import blas, checks
from bptt.errors import CheckpointError, UsageError

OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw")
BLOCK = 65536  # elements per block: the update's arrays of one block stay in cache
PARALLEL = 2**20  # elements from which a parameter's blocks are shared by two threads


def check_lr(lr) -> None:
    """lr must be a finite number > 0 (0 would make every step a no-op)."""
    checks.POSITIVE_NUMBER.check("--lr", lr)


class Optimizer:
    """Base: `lr`, a step counter `t`, buffers in `state` keyed "<buffer>.<param>".

    Subclasses name their buffers and hyperparameters and implement `_update`
    for one parameter; `step` applies it to every parameter in `params`.
    """

    buffers: tuple[str, ...] = ()
    hyper: tuple[str, ...] = ("weight_decay",)
    decoupled = False  # True: weight_decay shrinks theta in `_update` (AdamW), not added to g

    def __init__(self, lr: float, weight_decay: float = 0.0):
        check_lr(lr)
        checks.NON_NEGATIVE_NUMBER.check("weight_decay", weight_decay)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.t = 0
        self.state: dict[str, np.ndarray] = {}
        self._scratch: dict[tuple, np.ndarray] = {}

    # ---- the update --------------------------------------------------------

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """One update of every parameter, in place; `grads` is left untouched."""
        self.t += 1
        for name, p in params.items():
            g = grads[name]
            if g.shape != p.shape:  # a mismatch would broadcast silently into out=
                raise UsageError(f"grads[{name!r}]: shape {g.shape}, expected {p.shape} like the parameter")
            if self.weight_decay and not self.decoupled:
                g = np.multiply(p, p.dtype.type(self.weight_decay), out=self._tmp(p, 0))
                g += grads[name]  # torch: grad.add(param, alpha=wd)
            self._update(name, p, g)

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:  # pragma: no cover
        raise NotImplementedError

    def _tmp(self, p: np.ndarray, slot: int, worker: int = 0) -> np.ndarray:
        """Scratch array shaped like p; slot 0 holds the decayed gradient, 1 and 2 the update."""
        key = (p.shape, p.dtype.str, slot, worker)
        a = self._scratch.get(key)
        if a is None:
            a = self._scratch[key] = np.empty(p.shape, p.dtype)
        return a

    def _apply(self, math, p: np.ndarray, g: np.ndarray, *bufs: np.ndarray) -> None:
        """math(p, g, *bufs, tmp1, tmp2): one update, in place, on whole arrays or on
        matching slices of them (elementwise, so the numbers are the same either way)."""
        arrays = (p, g, *bufs)
        if p.size <= BLOCK or not all(a.flags.c_contiguous for a in arrays):
            math(*arrays, self._tmp(p, 1), self._tmp(p, 2))
            return
        flat = [a.reshape(-1) for a in arrays]
        n = p.size

        def blocks(start: int, stop: int, worker: int) -> None:
            t1 = self._tmp(flat[0][:BLOCK], 1, worker)
            t2 = self._tmp(flat[0][:BLOCK], 2, worker)
            for s in range(start, stop, BLOCK):
                e = min(s + BLOCK, stop)
                math(*(a[s:e] for a in flat), t1[: e - s], t2[: e - s])

        blas.halves(blocks, n, BLOCK, n >= PARALLEL)

    def _buffer(self, kind: str, name: str, p: np.ndarray, fill: float = 0.0) -> np.ndarray:
        key = f"{kind}.{name}"
        buf = self.state.get(key)
        if buf is None:
            buf = self.state[key] = np.full(p.shape, fill, p.dtype)
        elif buf.shape != p.shape or buf.dtype != p.dtype:
            buf = self.state[key] = self._adopt(key, buf, p)
        return buf

    @staticmethod
    def _adopt(key: str, buf: np.ndarray, p: np.ndarray) -> np.ndarray:
        """A loaded buffer made to fit its parameter: same shape required, dtype follows the model."""
        if buf.shape != p.shape:
            raise CheckpointError(f"optimizer state {key!r}: shape {buf.shape}, the parameter is {p.shape}")
        return buf.astype(p.dtype)

    # ---- checkpoints -------------------------------------------------------

    def state_dict(self) -> tuple[dict[str, np.ndarray], dict]:
        """(arrays, meta): copies of the buffers, and JSON-able lr, step count and hyperparameters."""
        meta = {"optimizer": type(self).__name__, "lr": self.lr, "t": self.t}
        for h in self.hyper:
            v = getattr(self, h)
            meta[h] = list(v) if isinstance(v, tuple) else v
        return {k: v.copy() for k, v in self.state.items()}, meta

    def load_state_dict(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """Restore buffers, lr, step count and hyperparameters (torch's load_state_dict does too)."""
        cls = type(self).__name__
        if meta.get("optimizer") != cls:
            raise CheckpointError(f"optimizer state is for {meta.get('optimizer')!r}, this run uses {cls!r}")
        for key in arrays:
            if key.split(".", 1)[0] not in self.buffers or "." not in key:
                kinds = ", ".join(self.buffers) or "none"
                raise CheckpointError(f"optimizer state {key!r}: not a {cls} buffer ({kinds})")
        check_meta(meta, self.hyper)
        try:
            type(self)(meta["lr"], **{h: tuple(meta[h]) if h == "betas" else meta[h] for h in self.hyper})
        except UsageError as e:  # each value is in range, but not together (nesterov without momentum)
            raise CheckpointError(f"optimizer {e}") from None
        for key, buf in arrays.items():
            if buf.dtype.kind != "f" or not np.isfinite(buf).all():
                raise CheckpointError(f"optimizer state {key!r}: {buf.dtype} values, expected finite floats")
        # copies: later steps must not write into the caller's arrays (a snapshot kept for rollback)
        self.state = {k: np.array(v) for k, v in arrays.items()}
        self.lr, self.t = float(meta["lr"]), meta["t"]
        for h in self.hyper:
            setattr(self, h, tuple(meta[h]) if isinstance(meta[h], list) else meta[h])

    def check_buffers(self, params: dict[str, np.ndarray]) -> None:
        """Every buffer belongs to a parameter of `params` and has its shape; CheckpointError otherwise."""
        for key, buf in self.state.items():
            name = key.split(".", 1)[1]
            if name not in params:
                raise CheckpointError(f"optimizer state {key!r}: the model has no parameter {name!r}")
            if buf.shape != params[name].shape:
                raise CheckpointError(
                    f"optimizer state {key!r}: shape {buf.shape}, the parameter is {params[name].shape}"
                )


UNIT = checks.Expect("a number in [0, 1]", lambda v: checks.is_real(v) and 0 <= v <= 1)
FLAG = checks.Expect("true or false", lambda v: isinstance(v, bool))
BETAS = checks.Expect(
    "two numbers in [0, 1)", lambda v: isinstance(v, list) and len(v) == 2 and all(map(checks.FRACTION.ok, v))
)

# what a checkpoint's optimizer metadata may hold, stricter than the constructors where those
# follow torch (a momentum of 1 or more, an alpha above 1 make no sense to resume)
META = {
    "lr": checks.POSITIVE_NUMBER,
    "t": checks.NON_NEGATIVE_INT,
    "weight_decay": checks.NON_NEGATIVE_NUMBER,
    "momentum": checks.FRACTION,
    "dampening": UNIT,
    "nesterov": FLAG,
    "lr_decay": checks.NON_NEGATIVE_NUMBER,
    "eps": UNIT,
    "initial_accumulator_value": checks.NON_NEGATIVE_NUMBER,
    "alpha": UNIT,
    "centered": FLAG,
    "betas": BETAS,
    "amsgrad": FLAG,
}


def check_meta(meta: dict, hyper: tuple[str, ...]) -> None:
    """lr, t and every hyperparameter in `hyper` present in `meta` with a type and value in range
    (`META`); CheckpointError naming the first key that is not."""
    for key in ("lr", "t", *hyper):
        if key not in meta:
            raise CheckpointError(f"optimizer {key!r} missing")
        if not META[key].ok(meta[key]):
            raise CheckpointError(f"optimizer {key!r} is {meta[key]!r}, expected {META[key].words}")


class SGD(Optimizer):
    """torch.optim.SGD: plain (momentum=0), heavy-ball momentum, or Nesterov momentum."""

    buffers = ("momentum_buffer",)
    hyper = ("momentum", "dampening", "nesterov", "weight_decay")

    def __init__(
        self,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ):
        super().__init__(lr, weight_decay)
        checks.NON_NEGATIVE_NUMBER.check("momentum", momentum)
        checks.FINITE_NUMBER.check("dampening", dampening)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise UsageError("nesterov: needs momentum > 0 and dampening 0")
        self.momentum, self.dampening, self.nesterov = float(momentum), float(dampening), bool(nesterov)

    def _update(self, name, p, g):
        dt = p.dtype.type
        lr, mu = dt(self.lr), dt(self.momentum)
        if not self.momentum:  # two passes: blocking bought nothing here (1.04x CPU time)
            step = np.multiply(g, lr, out=self._tmp(p, 1))
            p -= step  # torch: param.add_(g, alpha=-lr), the same number
            return
        key = f"momentum_buffer.{name}"
        v = self.state.get(key)
        first = v is None
        if first:  # torch: the first step sets v = g, undamped
            v = self.state[key] = np.array(g, dtype=p.dtype)
        elif v.shape != p.shape or v.dtype != p.dtype:
            v = self.state[key] = self._adopt(key, v, p)
        damp = dt(1 - self.dampening) if self.dampening else None
        nesterov = self.nesterov

        def heavy_ball(p, g, v, d, step):
            if not first:
                v *= mu
                if damp is not None:
                    v += np.multiply(g, damp, out=step)
                else:
                    v += g
            if nesterov:  # torch: grad.add(buf, alpha=momentum)
                np.multiply(v, mu, out=d)
                d += g
                np.multiply(d, lr, out=step)
            else:
                np.multiply(v, lr, out=step)
            p -= step

        self._apply(heavy_ball, p, g, v)


class Adagrad(Optimizer):
    """torch.optim.Adagrad (Duchi et al. 2011): per-element rates from the sum of squared gradients."""

    buffers = ("sum",)
    hyper = ("lr_decay", "eps", "initial_accumulator_value", "weight_decay")

    def __init__(
        self,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
    ):
        super().__init__(lr, weight_decay)
        checks.NON_NEGATIVE_NUMBER.check("lr_decay", lr_decay)
        checks.NON_NEGATIVE_NUMBER.check("initial_accumulator_value", initial_accumulator_value)
        checks.NON_NEGATIVE_NUMBER.check("eps", eps)
        self.lr_decay, self.eps = float(lr_decay), float(eps)
        self.initial_accumulator_value = float(initial_accumulator_value)

    def _update(self, name, p, g):
        dt = p.dtype.type
        s = self._buffer("sum", name, p, self.initial_accumulator_value)
        eps, clr = dt(self.eps), dt(self.lr / (1 + (self.t - 1) * self.lr_decay))

        def adagrad(p, g, s, d, step):
            s += np.multiply(g, g, out=d)
            np.sqrt(s, out=d)
            d += eps
            np.multiply(g, clr, out=step)  # torch's addcdiv order: (value * g) / d
            step /= d
            p -= step

        self._apply(adagrad, p, g, s)


class RMSprop(Optimizer):
    """torch.optim.RMSprop (Tieleman & Hinton 2012): eps added outside the square root."""

    buffers = ("square_avg", "grad_avg", "momentum_buffer")
    hyper = ("alpha", "eps", "momentum", "centered", "weight_decay")

    def __init__(
        self,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ):
        super().__init__(lr, weight_decay)
        checks.NON_NEGATIVE_NUMBER.check("alpha", alpha)
        checks.NON_NEGATIVE_NUMBER.check("eps", eps)
        checks.NON_NEGATIVE_NUMBER.check("momentum", momentum)
        self.alpha, self.eps = float(alpha), float(eps)
        self.momentum, self.centered = float(momentum), bool(centered)

    def _update(self, name, p, g):
        dt = p.dtype.type
        a, one_a, eps, lr, mu = dt(self.alpha), dt(1 - self.alpha), dt(self.eps), dt(self.lr), dt(self.momentum)
        bufs = [self._buffer("square_avg", name, p)]
        centered, momentum = self.centered, self.momentum > 0
        if centered:
            bufs.append(self._buffer("grad_avg", name, p))
        if momentum:
            bufs.append(self._buffer("momentum_buffer", name, p))

        def rmsprop(p, g, s, *rest):
            *rest, d, step = rest
            s *= a
            np.multiply(g, one_a, out=d)  # torch's addcmul order: (value * g) * g
            d *= g
            s += d
            if centered:
                m = rest[0]
                _lerp(m, g, one_a, d)
                np.multiply(m, m, out=d)
                np.subtract(s, d, out=d)
                np.sqrt(d, out=d)
            else:
                np.sqrt(s, out=d)
            d += eps
            if momentum:
                b = rest[-1]
                b *= mu
                b += np.divide(g, d, out=step)
                np.multiply(b, lr, out=step)
            else:
                np.multiply(g, lr, out=step)
                step /= d
            p -= step

        self._apply(rmsprop, p, g, *bufs)


class Adam(Optimizer):
    """torch.optim.Adam (Kingma & Ba 2015), L2 weight decay (not AdamW), optional AMSGrad."""

    buffers = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    hyper = ("betas", "eps", "amsgrad", "weight_decay")

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ):
        super().__init__(lr, weight_decay)
        ok = len(tuple(betas)) == 2 and all(checks.FRACTION.ok(b) for b in betas)
        checks.require("betas", betas, ok, "two numbers in [0, 1)")
        checks.NON_NEGATIVE_NUMBER.check("eps", eps)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps, self.amsgrad = float(eps), bool(amsgrad)

    def _update(self, name, p, g):
        dt, (b1, b2) = p.dtype.type, self.betas
        bufs = [self._buffer("exp_avg", name, p), self._buffer("exp_avg_sq", name, p)]
        amsgrad = self.amsgrad
        if amsgrad:
            bufs.append(self._buffer("max_exp_avg_sq", name, p))
        bias1, bias2 = 1 - b1**self.t, 1 - b2**self.t  # in Python floats (double), as torch
        one_b1, beta2, one_b2 = dt(1 - b1), dt(b2), dt(1 - b2)
        root2, eps, lr1 = dt(bias2**0.5), dt(self.eps), dt(self.lr / bias1)

        def adam(p, g, m, v, *rest):
            *rest, d, step = rest
            _lerp(m, g, one_b1, d)
            v *= beta2
            np.multiply(g, one_b2, out=d)
            d *= g
            v += d
            if amsgrad:
                v = np.maximum(rest[0], v, out=rest[0])
            np.sqrt(v, out=d)
            d /= root2
            d += eps
            np.multiply(m, lr1, out=step)
            step /= d
            p -= step

        self._apply(adam, p, g, *bufs)


class AdamW(Adam):
    """torch.optim.AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay,
    theta <- theta (1 - lr wd) before the Adam step, the gradient left as it is."""

    decoupled = True

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ):
        super().__init__(lr, betas, eps, weight_decay, amsgrad)

    def _update(self, name, p, g):
        if self.weight_decay:
            p *= p.dtype.type(1 - self.lr * self.weight_decay)  # torch: param.mul_(1 - lr * weight_decay)
        super()._update(name, p, g)


def _lerp(m: np.ndarray, g: np.ndarray, w, tmp: np.ndarray) -> None:
    """m <- m + w (g - m) in place: torch's lerp_ for w < 0.5, i.e. (1 - w) m + w g."""
    np.subtract(g, m, out=tmp)
    tmp *= w
    m += tmp


CLASSES = {"sgd": SGD, "momentum": SGD, "adagrad": Adagrad, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW}


def default_weight_decay(name: str) -> float:
    """The weight decay --optimizer `name` uses unless given (torch's: 0.01 for adamw, else 0)."""
    if name not in CLASSES:
        raise UsageError(f"--optimizer: got {name!r}, expected one of {', '.join(OPTIMIZERS)}")
    return inspect.signature(CLASSES[name]).parameters["weight_decay"].default


def make_optimizer(name: str, lr: float, **kw) -> Optimizer:
    """By CLI name: sgd | momentum (SGD, momentum 0.9 unless given) | adagrad | rmsprop | adam | adamw.

    Keyword options are the class's (torch's names); anything else is a UsageError.
    """
    if name not in CLASSES:
        raise UsageError(f"--optimizer: got {name!r}, expected one of {', '.join(OPTIMIZERS)}")
    cls = CLASSES[name]
    known = set(inspect.signature(cls).parameters) - {"lr"}
    for k in kw:
        if k not in known:
            raise UsageError(f"{k}: not an option of --optimizer {name} (options: {', '.join(sorted(known))})")
    if name == "momentum":
        kw.setdefault("momentum", 0.9)
    return cls(lr, **kw)
