"""The large-batch recurrent loop: per phase of each step, one GEMM, then one pointwise kernel.

Forward, step t (direction time), each forward phase of the cell (one for the LSTM, the RNN
and the reset-after GRU; two for the reset-before GRU, whose second phase projects r ⊙ h):

1. GEMM: ``ah[:, g0·H:g1·H] = source @ weight_hh[g0·H:g1·H]ᵀ``, with ``source`` the (B, H)
   states h_t (h_t ⊙ mask under recurrent dropout, which the previous step's pointwise kernel
   wrote) or the tape plane the phase projects;
2. pointwise (``forward_pointwise`` of :mod:`.recurrent`): a thread per (b, u) runs the cell's
   math on its ``ah`` values, exactly as the other loops do (``forward_unit``).

Backward, step t from the last, each backward phase k:

1. GEMM: ``projection = dG[:, r0·H:r1·H] @ weight_hh[r0·H:r1·H]``, where dG are the gate
   gradients of step t + 1 (k = 0, the rows the last phase projects) or of this step (k > 0,
   the rows phase k − 1 projects); none at the last step's phase 0;
2. pointwise (``backward_pointwise``): a thread per (b, u) runs ``backward_unit``, which
   writes the step's gate gradients for both sides and the carried state gradients.

What step 0's gate gradients send to the initial state, and the weight gradients (large GEMMs
over every step), are the driver's, as for the other loops. Every sequence's rows take part in
every step's GEMM; finished sequences are handled by the pointwise kernels (their rows of the
product are never read).

The per-step GEMM is :data:`step_matmul`: the numba tiled GEMM of :mod:`.gemm`. It is the
one place where a cuBLAS GEMM (CuPy's or nvmath-python's, when installed) would plug in: any
function ``(a, b, out)`` computing ``out = a @ b`` for device arrays of any strides, on the
default stream, without allocating and without synchronising the host. None does yet: no
cuBLAS branch has been written or run.
"""
from ...cells.spec import RECURRENT_INPUT
from . import arrays, gemm, workspace

step_matmul = gemm.matmul


def forward(loops, loop, spec, weight_hh, xproj, states, tape, y, lengths, vectors, bias_hh, direction, keep, reg):
    """Run one direction's forward loop, every step.

    Parameters
    ----------
    loops : the compiled kernels (``forward_pointwise``), of the cell, dtype and regularisers
    loop : .plan.LoopPlan of kind "gemm"
    spec : fastlstm.cells.spec.CellSpec
    weight_hh : device array, (G·H, H)
    xproj, states, tape, y, lengths, vectors, bias_hh, direction, keep, reg
        As the persistent kernel takes them (:func:`.recurrent.forward_persistent`): xproj
        (T, B, D·G·H), states (S, T+1, B, H) with states[:, 0] set, tape (K, T or 1, B, H),
        y (T, B, D·H), lengths (B,), vectors (V, H), bias_hh (G·H,), keep 1 to keep every
        step's tape (training) or 0, reg the direction's :class:`.recurrent.InLoop`.
    """
    steps, batch, hidden = xproj.shape[0], states.shape[2], states.shape[3]
    if steps == 0:
        return
    ah = workspace.empty((batch, len(spec.gates) * hidden), states.dtype)
    masked = reg.mask.size > 0
    rec = arrays.times(states[0, 0], reg.mask) if masked else workspace.empty((0, 0), states.dtype)
    pointwise = loops.forward_pointwise[loop.blocks, loop.threads]
    for t in range(steps):
        slot = t * keep
        for index, phase in enumerate(spec.forward):
            g0, g1 = phase.gates[0] * hidden, phase.gates[1] * hidden
            if phase.source == RECURRENT_INPUT:
                source = rec if masked else states[0, t]
            else:
                source = tape[phase.source, slot]
            step_matmul(source, gemm.transposed(weight_hh[g0:g1]), ah[:, g0:g1])
            pointwise(t, index, ah, xproj, states, tape, y, lengths, vectors, bias_hh, direction, keep, reg, rec)


def backward(loops, loop, spec, weight_hh, dy, states, tape, dgh, dgx, carry, lengths, vectors, direction, reg,
             record):
    """Run one direction's backward loop, every step from the last.

    Parameters
    ----------
    loops : the compiled kernels (``backward_pointwise``)
    loop : .plan.LoopPlan of kind "gemm"
    spec : fastlstm.cells.spec.CellSpec
    weight_hh : device array, (G·H, H)
    dy, states, tape, dgh, dgx, carry, lengths, vectors, direction, reg, record
        As the persistent kernel takes them (:func:`.recurrent.backward_persistent`): dgh
        (T, B, G·H) receives the recurrent side's gate gradients in the direction's time, dgx
        (T, B, D·G·H) the input side's in natural time, carry (S, B, H) the state gradients
        (the final states' on entry).
    """
    steps, batch, hidden = dgh.shape[0], states.shape[2], states.shape[3]
    if steps == 0:
        return
    projection = workspace.empty((batch, hidden), states.dtype)
    pointwise = loops.backward_pointwise[loop.blocks, loop.threads]
    phases = spec.backward
    for t in range(steps - 1, -1, -1):
        for index in range(len(phases)):
            source_t = t + 1 if index == 0 else t
            r0, r1 = (phases[-1] if index == 0 else phases[index - 1]).projects
            if source_t < steps:
                rows = slice(r0 * hidden, r1 * hidden)
                step_matmul(dgh[source_t][:, rows], weight_hh[rows], projection)
            pointwise(t, index, projection, dy, states, tape, dgh, dgx, carry, lengths, vectors, direction, reg,
                      record)

