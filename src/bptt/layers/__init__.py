"""Differentiable pieces, one per file: forward(...) -> out, cache and backward(dout, cache) -> grads."""
