"""One phase of one time step, for a block of rows and units, every cell: templates.

:mod:`.kernels` binds these per cell and dtype (the cell's math ``cell_forward`` /
``cell_backward``, its arities and phase tables from its :class:`~fastlstm.cells.spec.CellSpec`,
the dtype's constants) and per loop (which regularisers run inside it: ``RECURRENT_DROPOUT``,
``ZONEOUT``), then compiles them; a loop (:mod:`.loops`) calls them on its blocks. A block is
the rows [r0, r1) of the running sequences and the hidden units [u0, u1).

Forward, a phase projects its source (h ⊙ m, or a tape plane an earlier phase wrote) onto its
gates' rows of ``weight_hh`` for the block's units (:mod:`.projection`), then runs the cell's
math on every (row, unit); the last phase also applies zoneout and writes the new state (and
h ⊙ m for the next step under recurrent dropout). Backward, a phase runs the cell's math
(:func:`backward_pointwise`), then, once every unit's gradients are written,
:func:`backward_projection` sends its gates' gradients back through ``weight_hh``: into the
next phase's ``projected``, or, in the last phase, to h.

The arrays of one direction arrive as one structure (:class:`ForwardArrays`,
:class:`BackwardArrays`); a regulariser that is off has empty arrays there, never read.
"""
from typing import NamedTuple

import numpy as np

from ...cells.spec import RECURRENT_INPUT
from ...rebinding import Unbound
from ...cells.bound import (BACKWARD_GATES, BACKWARD_PHASES, BACKWARD_PROJECTS, DIFFERS, FOLDED, FORWARD_GATES, FORWARD_PHASES,
    FORWARD_SOURCES, GATES, ONE, READS_NEW, RECURRENT_DROPOUT, STAGED, STATES, ZERO, ZERO_GATES,
    ZERO_PLANES, ZERO_STATES, ZERO_VECTORS, ZONEOUT, cell_backward, cell_forward)
from .activations import widest_vectors
from .calls import value_at
from .projection import project, projected_at
from .tiles import lanes_of, product_at
from .unit_values import (at, gather_gates, gather_planes, gather_strided, gather_vectors, scatter_planes,
                          tuple_setitem, vector_part, vector_parts)

# The phase a compiled copy runs: a constant, so that its loops over the gates have constant
# bounds, unroll, and leave the loop over the units to the vectoriser.
PHASE = Unbound("PHASE")
# Whether the forward writes the tape planes: in training, and wherever a later phase of the
# step reads them; an inference call of a one-phase cell writes none (fewer stores, and fewer
# arrays for the gate loop's run-time alias checks, which it runs once per row).
KEEP_TAPE = Unbound("KEEP_TAPE")
# Whether a block's units past its last whole SIMD vector run as one more whole vector
# (:func:`.unit_values.vector_parts`): compiled in only where the layer's H leaves such units,
# since the loop that can do it runs a block narrower than one vector several times slower.
VECTOR_TAIL = Unbound("VECTOR_TAIL")
# The type of the direction's arrays (:class:`ForwardArrays` or :class:`BackwardArrays`) a
# compiled copy reads at the address it is given: passed by value, their ~150 words cost a call
# ~25 ns more (measured), at every phase of every step.
ARRAYS = Unbound("ARRAYS")


class ForwardArrays(NamedTuple):
    """One direction's arrays for the forward loop (the batch sorted by non-increasing length).

    Attributes
    ----------
    xproj : (n, B, G·H), the segment's input projections with the folded biases (step t at t − t0)
    states : (S, T+1, B, H), states[:, 0] set on entry
    tape : (K, T, B, H), or (K, 1, B, H) in inference (every step reuses slot 0)
    panels : flat, the recurrent weights packed per unit block and phase (:func:`.units.forward_panels`)
    panel_starts : (blocks, phases) int64, where each block's panels of each phase start
    bias_hh : (G·H,), of which the loop adds the unfolded gates' part
    vectors : (V, H), the cell's element-wise parameters
    work : (blocks, G·B·H), each block's projections
    active : (T,) int64, the sequences still running at each step
    bounds : (blocks + 1,) int64, the unit blocks
    mask : (B, H) recurrent dropout's keep-mask, or empty
    inputs : (T+1, B, H) what ``weight_hh`` sees at each step, h ⊙ mask, or (2, B, H) alternating
        in inference, or empty
    zone : (S_z, T, B, H) zoneout's keep-previous indicators in the direction's time, or empty
    candidates : (S, T+1, B, H) receives the cell's new states before zoneout, or empty
    phase_code : (3,) int64, the addresses of the compiled copies of :func:`forward_phase`, one per
        phase (:mod:`.calls`; the loops call them)
    walk_code : int, the address of the tile kernel (:func:`.tiles.walk_address`)
    """

    xproj: np.ndarray
    states: np.ndarray
    tape: np.ndarray
    panels: np.ndarray
    panel_starts: np.ndarray
    bias_hh: np.ndarray
    vectors: np.ndarray
    work: np.ndarray
    active: np.ndarray
    bounds: np.ndarray
    mask: np.ndarray
    inputs: np.ndarray
    zone: np.ndarray
    candidates: np.ndarray
    phase_code: np.ndarray
    walk_code: int


class BackwardArrays(NamedTuple):
    """One direction's arrays for the backward loop.

    Attributes
    ----------
    dy : (T, B, H) in the direction's time
    states, tape, candidates, mask, inputs, zone, vectors, active, bounds : as the forward left them
        (inputs with T+1 slots)
    dstates : (2, S, B, H), the state gradients, used alternately (see :mod:`.loops`)
    dgx : (n, B, G·H), zero on entry: the segment's gradients of the input-side pre-activations
    dgh : (n, B, G·H), the same of the recurrent side (``dgx`` itself where they coincide)
    panels : flat, the recurrent weights packed per unit block and phase (:func:`.units.backward_panels`)
    panel_starts : (blocks, phases) int64, where each block's panels of each phase start
    work : (blocks, B·G·H), each block's back-projections
    stage : (P, B·G·H): per backward phase that sends back only some gates, their gradients,
        contiguous per row
    norms : (T, B) receives ‖∂L/∂h_t‖ of every step, or empty
    pointwise_code, projection_code : (3,) int64, the addresses of the compiled copies of
        :func:`backward_pointwise` and :func:`backward_projection`, one per phase
    walk_code : int, the address of the tile kernel (:func:`.tiles.walk_address`)
    """

    dy: np.ndarray
    states: np.ndarray
    tape: np.ndarray
    candidates: np.ndarray
    mask: np.ndarray
    inputs: np.ndarray
    zone: np.ndarray
    vectors: np.ndarray
    active: np.ndarray
    bounds: np.ndarray
    dstates: np.ndarray
    dgx: np.ndarray
    dgh: np.ndarray
    panels: np.ndarray
    panel_starts: np.ndarray
    work: np.ndarray
    stage: np.ndarray
    norms: np.ndarray
    pointwise_code: np.ndarray
    projection_code: np.ndarray
    walk_code: int


def forward_phase(t, slot, step, rec_slot, next_slot, r0, r1, u0, u1, block, work, address):
    """Forward phase ``PHASE`` of step t for rows [r0, r1) and units [u0, u1), unit block ``block``.

    ``slot`` is the tape's slot for step t, ``step`` its index in the segment's ``xproj``;
    ``rec_slot`` and ``next_slot`` index ``a.inputs`` for steps t and t + 1; ``work`` is the
    block's row of ``a.work``; ``address`` that of the direction's :class:`ForwardArrays` ``a``
    (:func:`.calls.address_of_value`).
    """
    widest_vectors()
    a = value_at(address, ARRAYS)
    phase = PHASE
    # the arrays as locals: an array taken from the structure inside the loop is a reference
    # count update per use, a call that stops the vectoriser
    states, tape, inputs, mask, zone, candidates = a.states, a.tape, a.inputs, a.mask, a.zone, a.candidates
    bias_hh, vectors_hv = a.bias_hh, a.vectors
    hidden = states.shape[3]
    g0, g1 = FORWARD_GATES[phase]
    source = FORWARD_SOURCES[phase]
    width = u1 - u0
    if source == RECURRENT_INPUT:
        projected_source = inputs[rec_slot] if RECURRENT_DROPOUT else states[0, t]
    else:
        projected_source = tape[source, slot]
    project(a.walk_code, projected_source[r0:r1], a.panels, a.panel_starts[block, phase], g1 - g0, width, work)
    last = phase == FORWARD_PHASES - 1
    x_t = a.xproj[step]
    stride = projected_at(1, 0, 0, g1 - g0, width)   # from one gate's value to the next's
    for r in range(r0, r1):
        parts = vector_parts(width, lanes_of(work), VECTOR_TAIL)
        for part in range(parts):
            k0, count = vector_part(part, parts, width, lanes_of(work))
            for j in range(count):
                k = k0 + j
                u = u0 + k
                ax = gather_gates(x_t, r, u, hidden, ZERO_GATES)
                first = projected_at(0, r - r0, k, g1 - g0, width)
                if g1 - g0 == GATES:   # the phase projects every gate: one tuple, written out
                    ah = gather_strided(work, first, stride, ZERO_GATES)
                else:
                    ah = ZERO_GATES
                    for g in range(g0, g1):
                        ah = tuple_setitem(ah, g, work[at(first + (g - g0) * stride)])
                for g in range(max(g0, FOLDED), g1):
                    ah = tuple_setitem(ah, g, ah[g] + bias_hh[at(g * hidden + u)])
                state = gather_planes(states, t, r, u, ZERO_STATES)
                rec = inputs[at(rec_slot), at(r), at(u)] if RECURRENT_DROPOUT else state[0]
                saved = gather_planes(tape, slot, r, u, ZERO_PLANES) if phase > 0 else ZERO_PLANES
                vectors = gather_vectors(vectors_hv, u, ZERO_VECTORS)
                new, planes = cell_forward(phase, ax, ah, state, rec, vectors, saved)
                if KEEP_TAPE:
                    scatter_planes(tape, slot, r, u, planes)
                if last:
                    if ZONEOUT:
                        if candidates.shape[0] > 0:
                            scatter_planes(candidates, t + 1, r, u, new)
                        for s in range(STATES):
                            if s < zone.shape[0]:
                                d = zone[at(s), at(t), at(r), at(u)]
                                new = tuple_setitem(new, s, d * state[s] + (ONE - d) * new[s])
                    scatter_planes(states, t + 1, r, u, new)
                    if RECURRENT_DROPOUT:
                        inputs[at(next_slot), at(r), at(u)] = new[0] * mask[at(r), at(u)]


def backward_pointwise(t, step, r0, r1, u0, u1, work, dnext, dprev, address):
    """The math of backward phase ``PHASE`` of step t, rows [r0, r1), units [u0, u1).

    Phase 0 reads the gradient reaching the step's output state (``dnext``, plus ``dy`` for h),
    splits it under zoneout, and writes ``dprev`` (the gradient reaching the previous state:
    what skips the cell, and what the math sends directly); later phases read ``projected`` from
    the block's work and add to ``dprev``. ``address``: that of the direction's
    :class:`BackwardArrays` ``a``.
    """
    widest_vectors()
    a = value_at(address, ARRAYS)
    phase = PHASE
    states, tape, inputs, mask, zone, candidates = a.states, a.tape, a.inputs, a.mask, a.zone, a.candidates
    dy, dgx, dgh, stage, vectors_hv = a.dy, a.dgx, a.dgh, a.stage, a.vectors
    hidden = states.shape[3]
    g0, g1 = BACKWARD_GATES[phase]
    width = u1 - u0
    for r in range(r0, r1):
        # a later phase adds to dprev: run once per unit
        parts = vector_parts(width, lanes_of(work), VECTOR_TAIL and phase == 0)
        for part in range(parts):
            k0, count = vector_part(part, parts, width, lanes_of(work))
            for j in range(count):
                k = k0 + j
                u = u0 + k
                state = gather_planes(states, t, r, u, ZERO_STATES)
                new = gather_planes(states, t + 1, r, u, ZERO_STATES)
                if ZONEOUT:
                    if candidates.shape[0] > 0:
                        for s in range(STATES):
                            if READS_NEW[s]:
                                new = tuple_setitem(new, s, candidates[at(s), at(t + 1), at(r), at(u)])
                saved = gather_planes(tape, t, r, u, ZERO_PLANES)
                vectors = gather_vectors(vectors_hv, u, ZERO_VECTORS)
                rec = inputs[at(t), at(r), at(u)] if RECURRENT_DROPOUT else state[0]
                dnew = ZERO_STATES
                skipped = ZERO_STATES
                projected = ZERO
                if phase == 0:
                    for s in range(STATES):
                        gradient = dnext[at(s), at(r), at(u)]
                        if s == 0:
                            gradient += dy[at(t), at(r), at(u)]
                        if ZONEOUT:
                            if s < zone.shape[0]:
                                d = zone[at(s), at(t), at(r), at(u)]
                                skipped = tuple_setitem(skipped, s, d * gradient)
                                gradient = (ONE - d) * gradient
                        dnew = tuple_setitem(dnew, s, gradient)
                else:
                    projected = work[at((r - r0) * width + k)]
                dax, dah, direct, drec = cell_backward(phase, dnew, saved, state, new, rec, vectors, projected)
                for g in range(g0, g1):
                    dgx[at(step), at(r), at(g * hidden + u)] = dax[g]
                    if DIFFERS:
                        dgh[at(step), at(r), at(g * hidden + u)] = dah[g]
                    for p in range(BACKWARD_PHASES):
                        p0, p1 = BACKWARD_PROJECTS[p]
                        if STAGED[p] and p0 <= g < p1:
                            stage[at(p), at((r * (p1 - p0) + g - p0) * hidden + u)] = dah[g]
                for s in range(STATES):
                    value = direct[s]
                    if s == 0:
                        value += drec * mask[at(r), at(u)] if RECURRENT_DROPOUT else drec
                    if phase == 0:
                        dprev[at(s), at(r), at(u)] = value + skipped[s] if ZONEOUT else value
                    else:
                        dprev[at(s), at(r), at(u)] += value


def backward_projection(step, r0, r1, u0, u1, block, work, dprev, address):
    """Send backward phase ``PHASE``'s projected gates' gradients of rows [r0, r1) back through
    their ``weight_hh`` rows, for units [u0, u1) (unit block ``block``): into the block's work
    (the next phase's ``projected``), or, after the last phase, added to the gradient reaching h
    (⊙ mask). ``address``: that of the direction's :class:`BackwardArrays` ``a``."""
    a = value_at(address, ARRAYS)
    phase = PHASE
    hidden = a.states.shape[3]
    p0, p1 = BACKWARD_PROJECTS[phase]
    rows, width, inner = r1 - r0, u1 - u0, (p1 - p0) * hidden
    if STAGED[phase]:
        gradients = a.stage[phase, r0 * inner:r1 * inner].reshape(rows, inner)
    else:
        gradients = a.dgh[step, r0:r1]
    panels = a.panels[a.panel_starts[block, phase]:]
    out = work[:rows * width].reshape(rows, width)
    product_at(a.walk_code, gradients, panels, out)
    if phase == BACKWARD_PHASES - 1:
        mask = a.mask
        for r in range(r0, r1):
            for k in range(width):
                value = out[at(r - r0), at(k)]
                if RECURRENT_DROPOUT:
                    value *= mask[at(r), at(u0 + k)]
                dprev[at(0), at(r), at(u0 + k)] += value
