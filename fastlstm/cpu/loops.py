"""The two time loops every cell shares, as templates for :func:`specialise`.

Each loop walks time sequentially and, inside a step, splits the batch into ``nchunks``
row blocks that run in parallel (``prange``). A block's work is the cell's step function:
its slice of the recurrent GEMM followed by its fused gate pass. Numba's threads own the
cores during the loop; the BLAS library is held to one thread meanwhile (see ``threads``).

``step_forward`` and ``step_backward`` below are placeholders that every specialised copy
rebinds to a cell's compiled step functions.
"""
from numba import prange


def step_forward(t, b0, b1, xproj, states, tape, weights, work):  # pragma: no cover
    raise NotImplementedError("bound by specialise()")


def step_backward(t, b0, b1, dy, states, tape, dnext, dprev, dgx, dgh, weights, work):  # pragma: no cover
    raise NotImplementedError("bound by specialise()")


def forward_loop(xproj, states, tape, weights, work, nchunks, active):
    """Run ``T`` steps forward.

    xproj (T, B, G·H) input projections; states (S, T+1, B, H) with states[:, 0] set on
    entry, filled on return; tape (T, K, B, H) the cell's saved activations. The batch is
    sorted by non-increasing length, so at step t the rows still running are the first
    active[t]; the others carry their state unchanged and cost no gate work.
    """
    steps, batch = xproj.shape[0], xproj.shape[1]
    for t in range(steps):
        running = active[t]
        chunks = min(nchunks, running)
        for chunk in prange(chunks):
            b0 = chunk * running // chunks
            b1 = (chunk + 1) * running // chunks
            step_forward(t, b0, b1, xproj, states, tape, weights, work)
        if running < batch:
            states[:, t + 1, running:] = states[:, t, running:]


def backward_loop(dy, states, tape, dstates, dgx, dgh, weights, work, nchunks, active):
    """Run ``T`` steps backward.

    dstates (2, S, B, H) is a pair of state-gradient buffers used alternately; on entry
    dstates[T % 2] holds the gradient of the final state, on return dstates[0] holds the
    gradient of the initial state. dgx, dgh (T, B, G·H), zero on entry, receive the
    gradients of the gate pre-activations with respect to the input and the recurrent
    projections; rows past a sequence's end stay zero and pass the state gradient through.
    """
    steps, batch = dy.shape[0], dy.shape[1]
    for t in range(steps - 1, -1, -1):
        dnext = dstates[(t + 1) % 2]
        dprev = dstates[t % 2]
        running = active[t]
        chunks = min(nchunks, running)
        for chunk in prange(chunks):
            b0 = chunk * running // chunks
            b1 = (chunk + 1) * running // chunks
            step_backward(t, b0, b1, dy, states, tape, dnext, dprev, dgx, dgh, weights, work)
        if running < batch:
            dprev[:, running:] = dnext[:, running:]
