"""The large-batch recurrent loop: per phase of each step, one GEMM, then one pointwise kernel.

Forward, step t (direction time), each forward phase of the cell (one for the LSTM, the RNN
and the reset-after GRU; two for the reset-before GRU, whose second phase projects r ⊙ h):

1. GEMM: ``projection[:, g0·H:g1·H] = source @ weight_hh[g0·H:g1·H]ᵀ``, with ``source`` the
   (B, H) states h_t (h_t ⊙ mask under recurrent dropout, which the previous step's pointwise
   kernel wrote) or the tape plane the phase projects;
2. pointwise (``forward_pointwise`` of :mod:`.recurrent`): a thread per (b, u) runs the cell's
   math on its ``projection`` values, exactly as the other loops do (``forward_unit``).

Backward, step t from the last, each backward phase k:

1. GEMM: ``projection = dG[:, r0·H:r1·H] @ weight_hh[r0·H:r1·H]``, where dG are the gate
   gradients of step t + 1 (k = 0, the rows the last phase projects) or of this step (k > 0,
   the rows phase k − 1 projects); none at the last step's phase 0;
2. pointwise (``backward_pointwise``): a thread per (b, u) runs ``backward_unit``, which
   writes the step's gate gradients for both sides and the carried state gradients.

What step 0's gate gradients send to the initial state, and the weight gradients (large GEMMs
over every step), are the driver's, as for the other loops. Every sequence's rows take part in
every step's GEMM; finished sequences are handled by the pointwise kernels (their rows of the
product are never read). The pointwise kernels take the direction's
:class:`.recurrent.ForwardDirection` / :class:`.recurrent.BackwardDirection`, built once per
call by the driver, whose ``projection`` (and forward ``masked_state``) fields are this loop's
workspaces (:func:`forward_workspaces`, :func:`backward_workspace`).

The per-step GEMM is :data:`numba_matmul`: the numba tiled GEMM of :mod:`.gemm`. It is the
one place where a cuBLAS GEMM (CuPy's or nvmath-python's, when installed) would plug in: any
function ``(a, b, out)`` computing ``out = a @ b`` for device arrays of any strides, on the
default stream, without allocating and without synchronising the host. None does yet: no
cuBLAS branch has been written or run.
"""
from ...cells.spec import RECURRENT_INPUT
from . import arrays, gemm, workspace

# The numba GEMM, bound when this module loads (tests replace it here to count the step GEMMs).
numba_matmul = gemm.matmul


# ---------------------------------------------------------------- the loop

def forward_workspaces(spec, states, reg):
    """The forward loop's workspaces, for :class:`.recurrent.ForwardDirection`.

    Parameters
    ----------
    spec : fastlstm.cells.spec.CellSpec
    states : device array, (S, T+1, B, H), states[:, 0] set
    reg : .recurrent.InLoop

    Returns
    -------
    projection : device array, (B, G·H)
        The step GEMMs' product.
    masked_state : device array, (B, H) = h_0 ⊙ mask under recurrent dropout, else (0, 0)
        The first step's GEMM input; each step's pointwise kernel writes the next one's.
    """
    batch, hidden, dtype = states.shape[2], states.shape[3], states.dtype
    projection = workspace.empty((batch, len(spec.gates) * hidden), dtype)
    masked = reg.mask.size > 0
    masked_state = arrays.times(states[0, 0], reg.mask) if masked else workspace.empty((0, 0), dtype)
    return projection, masked_state


def backward_workspace(states):
    """The backward loop's step product, (B, H), for :class:`.recurrent.BackwardDirection`."""
    return workspace.empty((states.shape[2], states.shape[3]), states.dtype)


def forward(loops, loop, spec, weight_hh, direction_arrays, step_matmul):
    """Run one direction's forward loop, every step.

    Parameters
    ----------
    loops : the compiled kernels (``forward_pointwise``), of the cell, dtype and regularisers
    loop : .plan.LoopPlan of kind "gemm"
    spec : fastlstm.cells.spec.CellSpec
    weight_hh : device array, (G·H, H)
    direction_arrays : .recurrent.ForwardDirection
        The direction's arrays, its ``projection`` and ``masked_state`` from
        :func:`forward_workspaces`; passed as it is to every pointwise launch.
    step_matmul : callable, ``(a, b, out)``: out = a @ b (:data:`numba_matmul`)
    """
    states, tape = direction_arrays.states, direction_arrays.tape
    steps, hidden = direction_arrays.xproj.shape[0], states.shape[3]
    if steps == 0:
        return
    masked = direction_arrays.reg.mask.size > 0
    keep = direction_arrays.keep
    # per phase, what does not change from step to step: the weights' view and the product's columns
    phases = []
    for index, phase in enumerate(spec.forward):
        g0, g1 = phase.gates[0] * hidden, phase.gates[1] * hidden
        phases.append((index, phase.source, gemm.transposed(weight_hh[g0:g1]), direction_arrays.projection[:, g0:g1]))
    pointwise = loops.forward_pointwise[loop.blocks, loop.threads]
    for t in range(steps):
        for index, source_plane, weights, product in phases:
            if source_plane == RECURRENT_INPUT:
                source = direction_arrays.masked_state if masked else states[0, t]
            else:
                source = tape[source_plane, t * keep]
            step_matmul(source, weights, product)
            pointwise(direction_arrays, t, index)


def backward(loops, loop, spec, weight_hh, direction_arrays, step_matmul):
    """Run one direction's backward loop, every step from the last.

    Parameters
    ----------
    loops : the compiled kernels (``backward_pointwise``)
    loop : .plan.LoopPlan of kind "gemm"
    spec : fastlstm.cells.spec.CellSpec
    weight_hh : device array, (G·H, H)
    direction_arrays : .recurrent.BackwardDirection
        The direction's arrays, its ``projection`` from :func:`backward_workspace`; passed as it
        is to every pointwise launch.
    step_matmul : callable, ``(a, b, out)``: out = a @ b (:data:`numba_matmul`)
    """
    dgh, hidden = direction_arrays.dgh, direction_arrays.states.shape[3]
    steps = dgh.shape[0]
    if steps == 0:
        return
    projection = direction_arrays.projection
    phases = spec.backward
    # per phase: the later step's (phase 0) or this step's gate rows it projects, and those rows of weight_hh
    projected = []
    for index in range(len(phases)):
        r0, r1 = (phases[-1] if index == 0 else phases[index - 1]).projects
        rows = slice(r0 * hidden, r1 * hidden)
        projected.append((index, 1 if index == 0 else 0, rows, weight_hh[rows]))
    pointwise = loops.backward_pointwise[loop.blocks, loop.threads]
    for t in range(steps - 1, -1, -1):
        for index, later, rows, weights in projected:
            if t + later < steps:
                step_matmul(dgh[t + later][:, rows], weights, projection)
            pointwise(direction_arrays, t, index)
