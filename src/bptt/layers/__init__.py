"""Differentiable pieces, one per file: each a forward and the backward that matches it.

    cell         the recurrent-cell interface (Cell): shapes, init, forward, backward, step
    cells        the registry CELLS: a name -> a Cell class; make_cell
    elman        the Elman cell h_t = f(U x_t + W h_{t-1} + b) and its fast loops
    recompute    memory-saving BPTT around any cell: every k-th state kept, the rest recomputed
    truncation   the per-output horizon: its backward sweep, and the truncated objective's states
    embedding    x_t = E[id_t] and its scatter-add gradient
    char_encoder a word read by a forward and a reverse cell over its characters, [h->_n; h<-_1]
    dense        z = V x + c, the head
    h0map        h_0 = tanh(Q cond + q), the one-to-many initial state
    dropout      inverted dropout on the inputs, between layers and on the outputs, per step or locked
    pooling      mean / max over time (many-to-one)
    activations  f and f' for the cells' nonlinearities
    losses       softmax cross-entropy, sigmoid binary cross-entropy, squared error; reductions
    init         initialisers: pytorch, xavier, orthogonal, identity, spectral

Imports nothing above itself but errors, checks and blas (the import contract checks it).
"""
