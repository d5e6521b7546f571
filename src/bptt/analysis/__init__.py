"""Checking and looking inside BPTT.

    gradcheck    BPTT against central finite differences, in float64
    rtrl         real-time recurrent learning: the same exact gradient, in forward mode
    diagnostics  Jacobian products by lag and each (t, k) term of the gradient: why BPTT is hard, measured

Imports the model and what is below it, and training's memory estimate; nothing above.
"""
