"""The time loops every cell shares, as templates :mod:`.kernels` binds and compiles.

Each loop walks time sequentially. A step is the cell's phases (:mod:`.steps`); in each,
every thread runs one block of hidden units (``prange`` over the blocks of ``bounds``, see
:mod:`.units`) for every running sequence, and the end of the ``prange`` is the barrier after
which the next projection may read what all blocks wrote. Numba's threads own the cores
during the loop; the BLAS library is held to one thread meanwhile (:mod:`.threads`).

The batch is sorted by non-increasing length, so at step t the sequences still running are
the first ``active[t]`` rows; the others carry their state (and state gradient) unchanged and
cost no work.

``forward_phase``, ``backward_pointwise``, ``backward_projection`` (each a switch calling the
compiled copy of its phase, see :mod:`.steps`), the phase counts and ``RECORD_NORMS`` are
placeholders that every compiled copy binds.
"""
import numpy as np
from numba import njit, prange

from ...rebinding import Unbound
from ...cells.bound import BACKWARD_PHASES, FORWARD_PHASES

forward_phase = Unbound("forward_phase")
backward_pointwise = Unbound("backward_pointwise")
backward_projection = Unbound("backward_projection")
RECORD_NORMS = Unbound("RECORD_NORMS")


@njit(cache=True, error_model="numpy")
def record_state_gradient(t, running, dy, dnext, norms):
    """Before backward step t: norms[t, b] = ‖∂L/∂h_t‖ of each running row, the gradient from
    the later steps plus dy[t] (introspection)."""
    for b in range(running):
        g_row, dy_row = dnext[0, b], dy[t, b]
        total = 0.0
        for u in range(g_row.shape[0]):
            g = g_row[u] + dy_row[u]
            total += g * g
        norms[t, b] = np.sqrt(total)


@njit(cache=True, error_model="numpy")
def carry_states(states, t, running):
    """Finished sequences keep their state: states[:, t + 1, b] = states[:, t, b] for b ≥ running.

    (A helper, not an array expression: in a ``parallel=True`` loop that would become a
    parallel region of its own, and cost seconds of compiling.)"""
    for k in range(states.shape[0]):
        for b in range(running, states.shape[2]):
            states[k, t + 1, b] = states[k, t, b]


@njit(cache=True, error_model="numpy")
def carry_gradients(dprev, dnext, running):
    """Finished sequences pass their state gradient through: dprev[:, b] = dnext[:, b] for b ≥ running."""
    for k in range(dprev.shape[0]):
        for b in range(running, dprev.shape[1]):
            dprev[k, b] = dnext[k, b]


def forward_loop(a, t0, t1):
    """Run steps ``t0`` … ``t1 − 1`` forward (``a``: :class:`.steps.ForwardArrays`).

    On entry ``a.states[:, t0]`` holds the state before step t0 (and, under recurrent dropout,
    ``a.inputs`` its h ⊙ mask); on return ``a.states[:, t0 + 1 … t1]`` are filled.
    """
    batch = a.states.shape[2]
    blocks = a.bounds.shape[0] - 1
    keep = 1 if a.tape.shape[1] == a.states.shape[1] - 1 else 0
    every_input = a.inputs.shape[0] == a.states.shape[1]
    for t in range(t0, t1):
        running = a.active[t]
        rec_slot, next_slot = (t, t + 1) if every_input else (t % 2, (t + 1) % 2)
        if running > 0:
            for phase in range(FORWARD_PHASES):
                for block in prange(blocks):
                    forward_phase(phase, t, t * keep, t - t0, rec_slot, next_slot, 0, running, a.bounds[block],
                                  a.bounds[block + 1], a.work[block], a)
        if running < batch:
            carry_states(a.states, t, running)


def backward_loop(a, t0, t1):
    """Run steps ``t1 − 1`` down to ``t0`` backward (``a``: :class:`.steps.BackwardArrays`).

    ``a.dstates`` (2, S, B, H) is a pair of state-gradient buffers used alternately: on entry
    ``a.dstates[(t1 − t0) % 2]`` holds the gradient of the state after step t1 − 1, on return
    ``a.dstates[0]`` holds the gradient of the state before step t0. ``a.dgx``/``a.dgh``, zero
    on entry, receive the steps' gate gradients; rows past a sequence's end stay zero and pass
    the state gradient through. A step is one region per backward phase plus one: region p
    projects phase p − 1's gradients back (p > 0) and runs phase p's math (p < P), both on
    the block's own units.
    """
    batch = a.dy.shape[1]
    blocks = a.bounds.shape[0] - 1
    for t in range(t1 - 1, t0 - 1, -1):
        step = t - t0
        dnext = a.dstates[(step + 1) % 2]
        dprev = a.dstates[step % 2]
        running = a.active[t]
        if running > 0:
            if RECORD_NORMS:
                record_state_gradient(t, running, a.dy, dnext, a.norms)
            for region in range(BACKWARD_PHASES + 1):
                for block in prange(blocks):
                    u0, u1 = a.bounds[block], a.bounds[block + 1]
                    work = a.work[block]
                    if region > 0:
                        backward_projection(region - 1, step, 0, running, u0, u1, work, dprev, a)
                    if region < BACKWARD_PHASES:
                        backward_pointwise(region, t, step, 0, running, u0, u1, work, dnext, dprev, a)
        if running < batch:
            carry_gradients(dprev, dnext, running)
