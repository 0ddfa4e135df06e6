"""The recurrent time loops on the GPU, as templates that ``compiled`` binds per cell and dtype.

Work split: a *lane group* of ``lanes`` threads (a power of two, at most a warp) owns one
(sequence b, hidden unit u) pair of a step. Its lanes split the recurrent dot products over
the previous state (lane l takes k = l, l + lanes, ...: neighbouring lanes read neighbouring
memory), the partial sums meet in shared memory, and lane 0 does the cell's element-wise
math (its module's ``forward``/``backward``, :mod:`fastlstm.cells`) and writes the new state, the saved activations (the tape)
and the output. Backward, the group forms the gradient reaching its unit's state from the
later step's gate gradients, and lane 0 its unit's gate gradients.

Three ways to run the loop; the first two with the same per-group code
(``forward_round``/``backward_round``), the third with the same per-unit code
(``forward_unit``/``backward_unit``):

- **persistent**: one cooperative launch for all steps. Block j owns units
  ``[j·U, (j+1)·U)``; it copies its share of the recurrent weights into shared memory once
  and keeps it there for every step, its groups take its (b, u) pairs in rounds, and the
  grid synchronises once per phase of a step (``cuda.cg.this_grid().sync()``).
- **per step**: one launch per phase of each step, one group per (b, u), weights read from
  global memory (through L2) at every step. Used when the weights do not fit on chip.
- **GEMM** (:mod:`.gemm_loop`): per phase of each step, one GEMM of the B rows it projects
  against ``weight_hh``'s rows (:mod:`.gemm`), then one pointwise launch, a thread per
  (b, u), that runs the unit (``forward_pointwise``/``backward_pointwise``). For large batches.

Weight layouts, both with the dot product's index contiguous: forward, unit u's gate g row
of ``weight_hh`` starts at ``u · unit_stride + g · gate_stride`` (global memory: weight_hh
itself, (G·H, H); shared memory: ``[unit][gate][k]``); backward, unit u's column of
``weight_hh`` starts at ``u · G·H`` (global memory: weight_hhᵀ, (H, G·H); shared memory:
``[unit][row]``). After a block's weights, shared memory holds the groups' partial sums
(``blockDim.x · GATES`` values).

Names bound per cell and dtype (placeholders here): ``DTYPE``, ``ZERO``, ``ONE``, the cell's
math ``cell_forward``/``cell_backward`` and the arities and phase tables of its spec
(:mod:`fastlstm.cells.spec`): ``GATES``, ``STATES``, ``FOLDED`` (the leading gate blocks of
``bias_hh`` already in ``xproj``; the loop adds the others' to the projection), the tuples of
zeros that give the math's arities, ``FORWARD_GATES``/``FORWARD_SOURCES`` per forward phase,
``BACKWARD_GATES``/``BACKWARD_PROJECTS`` per backward phase, ``READS_NEW``; and per compiled
loop the regularisers inside it, ``RECURRENT_DROPOUT`` and ``ZONEOUT``.

Kernel arguments: each kernel takes one structure holding every array and scalar of its
direction and call (:class:`ForwardDirection` or :class:`BackwardDirection`, built once per
direction and call by the driver and passed to every launch of that call), then the step, the
phase and the launch geometry, as far as it needs them. The device functions below take the
fields themselves.

A direction's in-loop regularisers arrive as one structure ``reg`` (:class:`InLoop`), its
fields empty arrays where a regulariser is off (never read then):

- ``mask``, (B, H): recurrent dropout, the state feeding ``weight_hh`` is h ⊙ mask; backward,
  the gradient the projection sends to h is multiplied by it.
- ``zone``, (S_z, T, B, H) in natural time, or (S_z, 1, 1, 1) holding each state's p
  (inference): zoneout, state = d·previous + (1 − d)·new; backward, (1 − d)·g goes through
  the cell and d·g skips to the previous state.
- ``candidates``, (S, T, B, H): the cell's new states before zoneout, kept where the backward
  reads them (``CellSpec.reads_new_state``).

Introspection: ``record``, (T, B, H) or (0, 0, 0), receives the gradient reaching each valid
step's h (natural time) when ``state_gradient_norms`` are asked for.
"""
from typing import NamedTuple

from numba import cuda

from ...cells.spec import RECURRENT_INPUT
from ...rebinding import Unbound
from ...cells.bound import (BACKWARD_GATES, BACKWARD_PHASES, BACKWARD_PROJECTS, FOLDED, FORWARD_GATES, FORWARD_PHASES,
    FORWARD_SOURCES, GATES, ONE, READS_NEW, RECURRENT_DROPOUT, STATES, ZERO, ZERO_GATES, ZERO_PLANES,
    ZERO_STATES, ZERO_VECTORS, ZONEOUT, cell_backward, cell_forward)
from .unit_values import gather_planes, gather_vectors, scatter_planes, tuple_setitem

DTYPE = Unbound("DTYPE")


class InLoop(NamedTuple):
    """One direction's in-loop regularisers, as the kernels take them (see the module's text)."""

    mask: object
    zone: object
    candidates: object


class ForwardDirection(NamedTuple):
    """Everything one direction's forward kernels read and write in one call.

    Attributes
    ----------
    xproj : (T, B, D·G·H)
        Every step's input projection, natural time, the directions side by side.
    states : (S, T+1, B, H)
        The direction's states in its own time, states[:, 0] set on entry.
    tape : (K, T, B, H), or (K, 1, B, H) in inference (one slot reused)
        The cell's saved planes.
    y : (T, B, D·H)
        The layer's output, natural time.
    lengths : (B,) int64
    weights : (G·H·H,)
        weight_hh, (G·H, H), flattened (read by the persistent and per-step loops).
    vectors : (V, H)
        The cell's element-wise parameters (the LSTM's peepholes), (0, 0) without.
    bias_hh : (G·H,)
    projection : (B, G·H), or (0, 0) outside the GEMM loop
        The GEMM loop's step product ``source @ weight_hh[rows]ᵀ``.
    masked_state : (B, H), or (0, 0)
        The GEMM loop under recurrent dropout: h' ⊙ mask, the next step's GEMM input.
    reg : InLoop
    direction : int
        0 forward, 1 reverse.
    keep : int
        1 keeps every step's tape (training), 0 reuses slot 0 (inference).
    """

    xproj: object
    states: object
    tape: object
    y: object
    lengths: object
    weights: object
    vectors: object
    bias_hh: object
    projection: object
    masked_state: object
    reg: InLoop
    direction: int
    keep: int


class BackwardDirection(NamedTuple):
    """Everything one direction's backward kernels read and write in one call.

    Attributes
    ----------
    dy : (T, B, D·H)
        The output's gradient, natural time (read only at valid steps).
    states : (S, T+1, B, H)
    tape : (K, T, B, H)
        The forward's states and saved planes.
    dgh : (T, B, G·H)
        Receives the recurrent side's gate gradients, the direction's time.
    dgx : (T, B, D·G·H)
        Receives the input side's gate gradients, natural time, the directions side by side.
    carry : (S, B, H)
        The state gradients carried to the previous step (the final states' on entry; the
        initial states' on exit, after ``backward_finish``).
    lengths : (B,) int64
    weights : (H·G·H,)
        weight_hhᵀ, (H, G·H), flattened.
    vectors : (V, H), or (0, 0)
    projection : (B, H), or (0, 0) outside the GEMM loop
        The GEMM loop's step product of gate gradients and ``weight_hh``'s rows.
    record : (T, B, H), or (0, 0, 0)
        Receives the gradient reaching each valid step's h (introspection).
    reg : InLoop
    direction : int
    """

    dy: object
    states: object
    tape: object
    dgh: object
    dgx: object
    carry: object
    lengths: object
    weights: object
    vectors: object
    projection: object
    record: object
    reg: InLoop
    direction: int


# ---------------------------------------------------------------- the lane groups' dot products

def backward_rows(phase, hidden):
    """The gate rows [r0, r1) a backward phase projects back: phase 0 those of the last backward
    phase, reaching h from the later step; phase k > 0 those phase k − 1 sends to phase k."""
    g0, g1 = BACKWARD_PROJECTS[BACKWARD_PHASES - 1] if phase == 0 else BACKWARD_PROJECTS[phase - 1]
    return g0 * hidden, g1 * hidden


def lane_dot(source, w, base, first, stop, lane, lanes):
    """Σ source[k] · w[base + k] over this lane's k in [first, stop)."""
    total = ZERO
    for k in range(first + lane, stop, lanes):
        total += source[k] * w[base + k]
    return total


def lane_dot_masked(source, mask, w, base, first, stop, lane, lanes):
    """Σ source[k] · mask[k] · w[base + k] over this lane's k in [first, stop)."""
    total = ZERO
    for k in range(first + lane, stop, lanes):
        total += source[k] * mask[k] * w[base + k]
    return total


def project_gates(source, mask, b, masked, w, base, gate_stride, g0, g1, partial, at, lane, lanes):
    """This lane's share of each gate g in [g0, g1) of a unit's projection of ``source``
    (⊙ mask[b] when ``masked``), stored at partial[at + g·lanes + lane]; the unit's gate g row
    of weights starts at base + g·gate_stride."""
    for g in range(g0, g1):
        row = base + g * gate_stride
        if masked:
            total = lane_dot_masked(source, mask[b], w, row, 0, source.shape[0], lane, lanes)
        else:
            total = lane_dot(source, w, row, 0, source.shape[0], lane, lanes)
        partial[at + g * lanes + lane] = total


def sum_lanes(partial, at, count, lane, lanes, active):
    """partial[at + j·lanes] = Σ over the group's lanes, for j < count (tree, in shared
    memory). Every thread of the block calls it: it synchronises the block."""
    cuda.syncthreads()
    half = lanes // 2
    while half > 0:
        if active and lane < half:
            for j in range(count):
                partial[at + j * lanes + lane] += partial[at + j * lanes + lane + half]
        cuda.syncthreads()
        half //= 2


def forward_round(phase, t, item, items, width, u0, w, unit_stride, gate_stride, partial, scratch, lanes,
                  xproj, states, tape, y, lengths, vectors, bias_hh, direction, slot, reg):
    """Lane group ``threadIdx.x // lanes`` does (b, u) pair ``item`` of ``items`` (b = item // width,
    u = u0 + item % width; weights of that unit at ``(item % width) · unit_stride``)."""
    lane = cuda.threadIdx.x % lanes
    at = scratch + (cuda.threadIdx.x // lanes) * GATES * lanes
    active = item < items
    b, c = item // width, item % width
    g0, g1 = FORWARD_GATES[phase]
    source = FORWARD_SOURCES[phase]
    if active and t < lengths[b]:
        if source == RECURRENT_INPUT:
            project_gates(states[0, t, b], reg.mask, b, RECURRENT_DROPOUT, w, c * unit_stride, gate_stride, g0, g1,
                          partial, at, lane, lanes)
        else:   # a plane an earlier phase wrote (the reset-before GRU's r ⊙ h ⊙ mask)
            project_gates(tape[source, slot, b], reg.mask, b, False, w, c * unit_stride, gate_stride, g0, g1, partial,
                          at, lane, lanes)
    sum_lanes(partial, at, GATES, lane, lanes, active)
    if active and lane == 0:
        acc = cuda.local.array(GATES, DTYPE)
        for g in range(g0, g1):
            acc[g] = partial[at + g * lanes]
        forward_unit(phase, t, b, u0 + c, acc, xproj, states, tape, y, lengths, vectors, bias_hh, direction, slot,
                     reg)
    cuda.syncthreads()


def backward_round(phase, t, item, items, width, u0, w, partial, scratch, lanes,
                   dy, states, tape, dgh, dgx, carry, lengths, vectors, direction, reg, record):
    """As :func:`forward_round`, backward: the weights of unit ``u0 + item % width`` at
    ``(item % width) · G·H``. Phase 0's projection reached h ⊙ mask: times the unit's mask."""
    hidden = states.shape[3]
    lane = cuda.threadIdx.x % lanes
    at = scratch + (cuda.threadIdx.x // lanes) * lanes
    active = item < items
    b, c = item // width, item % width
    source_t = t + 1 if phase == 0 else t
    if active:
        partial[at + lane] = ZERO
        if source_t < dgh.shape[0]:
            r0, r1 = backward_rows(phase, hidden)
            partial[at + lane] = lane_dot(dgh[source_t, b], w, c * GATES * hidden, r0, r1, lane, lanes)
    sum_lanes(partial, at, 1, lane, lanes, active)
    if active and lane == 0:
        keep = mask_at(reg.mask, b, u0 + c)
        projected = partial[at] * keep if phase == 0 else partial[at]
        backward_unit(phase, t, b, u0 + c, projected, keep, dy, states, tape, dgh, dgx, carry, lengths, vectors,
                      direction, reg, record)
    cuda.syncthreads()


# ---------------------------------------------------------------- helpers of the units

def mask_at(mask, b, u):
    """Recurrent dropout's keep value at (b, u): 1 without recurrent dropout."""
    if not RECURRENT_DROPOUT:
        return ONE
    return mask[b, u]


def zone_at(zone, s, tt, b, u):
    """Zoneout's keep-previous indicator of state s at natural time tt, (b, u), from
    (S_z, T, B, H) or (S_z, 1, 1, 1)."""
    return zone[s, tt if zone.shape[1] > 1 else 0, b if zone.shape[2] > 1 else 0, u if zone.shape[3] > 1 else 0]


def record_gradient(record, tt, b, u, dh):
    """Keep the gradient reaching h at natural time tt, for ‖∂L/∂h_t‖ (introspection)."""
    if record.shape[0] > 0:
        record[tt, b, u] = dh


def time_of(t, length, direction):
    """The natural time of the direction's step t of a sequence with ``length`` valid steps."""
    return t if direction == 0 else length - 1 - t


def carry_state(states, t, b, u):
    """A finished sequence keeps its state: states[:, t + 1] = states[:, t] at (b, u)."""
    for s in range(states.shape[0]):
        states[s, t + 1, b, u] = states[s, t, b, u]


def clear_gradients(t, b, u, dgh, dgx, direction, hidden):
    """Zero gradients at a padded step (direction time t, natural time t too)."""
    base = direction * GATES * hidden
    for g in range(GATES):
        dgh[t, b, g * hidden + u] = ZERO
        dgx[t, b, base + g * hidden + u] = ZERO


def store_gradient(t, tt, b, u, gate, dx_value, dh_value, dgh, dgx, direction, hidden):
    """One gate's pre-activation gradient: for the input side (natural time) and the recurrent side."""
    dgx[tt, b, direction * GATES * hidden + gate * hidden + u] = dx_value
    dgh[t, b, gate * hidden + u] = dh_value


def incoming_gradient(t, b, u, projected, dy, carry, lengths, dgh, dgx, direction, hidden):
    """The gradient reaching unit u's output at step t (carried, from the later step, and dy),
    and the step's natural time. Past the sequence's end the gradient is carried on, the
    step's gate gradients are zero, and the time is -1."""
    length = lengths[b]
    dh = carry[0, b, u] + projected
    if t >= length:
        carry[0, b, u] = dh
        clear_gradients(t, b, u, dgh, dgx, direction, hidden)
        return dh, -1
    tt = time_of(t, length, direction)
    return dh + dy[tt, b, direction * hidden + u], tt


def padded_forward(t, b, u, states, tape, y, slot, direction, hidden):
    """A finished sequence at step t: state carried, output 0, tape 0 (the weight gradients
    multiply it by zero gradients, which must not meet stale NaNs)."""
    carry_state(states, t, b, u)
    y[t, b, direction * hidden + u] = ZERO
    for k in range(tape.shape[0]):
        tape[k, slot, b, u] = ZERO


# ---------------------------------------------------------------- one unit: lane 0 of a group, every cell

def forward_unit(phase, t, b, u, acc, xproj, states, tape, y, lengths, vectors, bias_hh, direction, slot, reg):
    """Forward phase ``phase`` of step t at (b, u): gather the unit's values, run the cell's math,
    write the tape and, after the last phase, zoneout, the new state and the output."""
    hidden = states.shape[3]
    length = lengths[b]
    if t >= length:
        if phase == FORWARD_PHASES - 1:
            padded_forward(t, b, u, states, tape, y, slot, direction, hidden)
        return
    tt = time_of(t, length, direction)
    g0, g1 = FORWARD_GATES[phase]
    x = xproj[tt, b]
    base = direction * GATES * hidden + u
    ax = ZERO_GATES
    ah = ZERO_GATES
    for g in range(GATES):
        ax = tuple_setitem(ax, g, x[base + g * hidden])
    for g in range(g0, g1):
        value = acc[g]
        if g >= FOLDED:
            value += bias_hh[g * hidden + u]
        ah = tuple_setitem(ah, g, value)
    state = gather_planes(states, t, b, u, ZERO_STATES)
    rec = state[0] * mask_at(reg.mask, b, u)
    saved = gather_planes(tape, slot, b, u, ZERO_PLANES) if phase > 0 else ZERO_PLANES
    new, planes = cell_forward(phase, ax, ah, state, rec, gather_vectors(vectors, u, ZERO_VECTORS), saved)
    scatter_planes(tape, slot, b, u, planes)
    if phase == FORWARD_PHASES - 1:
        if ZONEOUT:
            if reg.candidates.shape[0] > 0:
                scatter_planes(reg.candidates, slot, b, u, new)
            for s in range(STATES):
                if s < reg.zone.shape[0]:
                    d = zone_at(reg.zone, s, tt, b, u)
                    new = tuple_setitem(new, s, d * state[s] + (ONE - d) * new[s])
        scatter_planes(states, t + 1, b, u, new)
        y[tt, b, direction * hidden + u] = new[0]


def backward_unit(phase, t, b, u, projected, keep, dy, states, tape, dgh, dgx, carry, lengths, vectors, direction,
                  reg, record):
    """Backward phase ``phase`` of step t at (b, u). Phase 0: ``projected`` is what the later step
    sends back to h (⊙ mask); it and the carried gradients reach the step's output, split by
    zoneout. Later phases: ``projected`` is what the previous phase sent back. The cell's math
    gives the gate gradients (stored for both sides) and what reaches the previous state
    directly (``carry``); ``keep`` is the unit's recurrent-dropout mask value."""
    hidden = states.shape[3]
    length = lengths[b]
    dnew = ZERO_STATES
    skipped = ZERO_STATES
    if phase == 0:
        dh, tt = incoming_gradient(t, b, u, projected, dy, carry, lengths, dgh, dgx, direction, hidden)
        if tt < 0:
            return
        record_gradient(record, tt, b, u, dh)
        for s in range(STATES):
            gradient = dh if s == 0 else carry[s, b, u]
            if ZONEOUT:
                if s < reg.zone.shape[0]:
                    d = zone_at(reg.zone, s, tt, b, u)
                    skipped = tuple_setitem(skipped, s, d * gradient)
                    gradient = (ONE - d) * gradient
            dnew = tuple_setitem(dnew, s, gradient)
        projected = ZERO
    else:
        if t >= length:
            return
        tt = time_of(t, length, direction)
    state = gather_planes(states, t, b, u, ZERO_STATES)
    new = gather_planes(states, t + 1, b, u, ZERO_STATES)
    if ZONEOUT:
        if reg.candidates.shape[0] > 0:
            for s in range(STATES):
                if READS_NEW[s]:
                    new = tuple_setitem(new, s, reg.candidates[s, t, b, u])
    dax, dah, direct, drec = cell_backward(phase, dnew, gather_planes(tape, t, b, u, ZERO_PLANES), state, new,
                                           state[0] * keep, gather_vectors(vectors, u, ZERO_VECTORS), projected)
    g0, g1 = BACKWARD_GATES[phase]
    for g in range(g0, g1):
        store_gradient(t, tt, b, u, g, dax[g], dah[g], dgh, dgx, direction, hidden)
    for s in range(STATES):
        value = direct[s] + drec * keep if s == 0 else direct[s]
        if phase == 0:
            carry[s, b, u] = value + skipped[s]
        else:
            carry[s, b, u] += value


# ---------------------------------------------------------------- kernels

def block_units(units_per_block, hidden):
    """This block's units [u0, u1)."""
    u0 = cuda.blockIdx.x * units_per_block
    return u0, min(hidden, u0 + units_per_block)


def forward_persistent(forward, units_per_block, lanes):
    """Every step in one cooperative launch, ``forward`` a :class:`ForwardDirection`; block j
    holds its units' rows of ``forward.weights`` (weight_hh) in shared memory."""
    states, w = forward.states, forward.weights
    hidden, batch = states.shape[3], states.shape[2]
    u0, u1 = block_units(units_per_block, hidden)
    width = u1 - u0
    shared = cuda.shared.array(0, DTYPE)
    for index in range(cuda.threadIdx.x, width * GATES * hidden, cuda.blockDim.x):
        unit_gate, k = index // hidden, index % hidden
        c, g = unit_gate // GATES, unit_gate % GATES
        shared[index] = w[(g * hidden + u0 + c) * hidden + k]
    scratch = units_per_block * GATES * hidden
    cuda.syncthreads()
    grid = cuda.cg.this_grid()
    groups = cuda.blockDim.x // lanes
    for t in range(forward.xproj.shape[0]):
        for phase in range(FORWARD_PHASES):
            for first in range(0, batch * width, groups):
                forward_round(phase, t, first + cuda.threadIdx.x // lanes, batch * width, width, u0, shared,
                              GATES * hidden, hidden, shared, scratch, lanes, forward.xproj, states, forward.tape,
                              forward.y, forward.lengths, forward.vectors, forward.bias_hh, forward.direction,
                              t * forward.keep, forward.reg)
            grid.sync()


def forward_step(forward, t, phase, lanes):
    """One phase of step t: a lane group per (b, u), weights (``forward.weights``, weight_hh)
    from global memory."""
    states = forward.states
    hidden, batch = states.shape[3], states.shape[2]
    partial = cuda.shared.array(0, DTYPE)
    item = cuda.blockIdx.x * (cuda.blockDim.x // lanes) + cuda.threadIdx.x // lanes
    forward_round(phase, t, item, batch * hidden, hidden, 0, forward.weights, hidden, hidden * hidden, partial, 0,
                  lanes, forward.xproj, states, forward.tape, forward.y, forward.lengths, forward.vectors,
                  forward.bias_hh, forward.direction, t * forward.keep, forward.reg)


def backward_persistent(backward, units_per_block, lanes):
    """Every step backward in one cooperative launch, ``backward`` a :class:`BackwardDirection`;
    block j holds its units' columns of weight_hh (rows of ``backward.weights``) in shared memory."""
    states, w_t = backward.states, backward.weights
    hidden, batch = states.shape[3], states.shape[2]
    u0, u1 = block_units(units_per_block, hidden)
    width = u1 - u0
    shared = cuda.shared.array(0, DTYPE)
    for index in range(cuda.threadIdx.x, width * GATES * hidden, cuda.blockDim.x):
        shared[index] = w_t[u0 * GATES * hidden + index]
    scratch = units_per_block * GATES * hidden
    cuda.syncthreads()
    grid = cuda.cg.this_grid()
    groups = cuda.blockDim.x // lanes
    for t in range(backward.dgh.shape[0] - 1, -1, -1):
        for phase in range(BACKWARD_PHASES):
            for first in range(0, batch * width, groups):
                backward_round(phase, t, first + cuda.threadIdx.x // lanes, batch * width, width, u0, shared,
                               shared, scratch, lanes, backward.dy, states, backward.tape, backward.dgh,
                               backward.dgx, backward.carry, backward.lengths, backward.vectors, backward.direction,
                               backward.reg, backward.record)
            grid.sync()


def backward_step(backward, t, phase, lanes):
    """One phase of backward step t: a lane group per (b, u), weights (``backward.weights``,
    weight_hhᵀ) from global memory."""
    states = backward.states
    hidden, batch = states.shape[3], states.shape[2]
    partial = cuda.shared.array(0, DTYPE)
    item = cuda.blockIdx.x * (cuda.blockDim.x // lanes) + cuda.threadIdx.x // lanes
    backward_round(phase, t, item, batch * hidden, hidden, 0, backward.weights, partial, 0, lanes, backward.dy,
                   states, backward.tape, backward.dgh, backward.dgx, backward.carry, backward.lengths,
                   backward.vectors, backward.direction, backward.reg, backward.record)


def backward_finish(backward, lanes):
    """After the first step: carry[0] += what step 0's gate gradients send to the initial h
    (through h ⊙ mask under recurrent dropout)."""
    dgh, carry, w_t = backward.dgh, backward.carry, backward.weights
    hidden, batch = carry.shape[2], carry.shape[1]
    partial = cuda.shared.array(0, DTYPE)
    lane = cuda.threadIdx.x % lanes
    at = (cuda.threadIdx.x // lanes) * lanes
    item = cuda.blockIdx.x * (cuda.blockDim.x // lanes) + cuda.threadIdx.x // lanes
    active = item < batch * hidden and dgh.shape[0] > 0
    b, u = item // hidden, item % hidden
    if active:
        r0, r1 = backward_rows(0, hidden)
        partial[at + lane] = lane_dot(dgh[0, b], w_t, u * GATES * hidden, r0, r1, lane, lanes)
    sum_lanes(partial, at, 1, lane, lanes, active)
    if active and lane == 0:
        carry[0, b, u] += partial[at] * mask_at(backward.reg.mask, b, u)


# ---------------------------------------------------------------- the GEMM loop's pointwise kernels

def forward_pointwise(forward, t, phase):
    """Phase ``phase`` of step t after its GEMM: one thread per (b, u) runs the unit's math
    (:func:`forward_unit`) on ``forward.projection``, (B, G·H), of which the phase's gate columns
    hold ``source @ weight_hh[rows]ᵀ``. Under recurrent dropout, after the last phase,
    ``forward.masked_state`` (B, H) receives h' ⊙ mask: the next step's GEMM input."""
    states, reg = forward.states, forward.reg
    hidden, batch = states.shape[3], states.shape[2]
    item = cuda.grid(1)
    if item < batch * hidden:
        b, u = item // hidden, item % hidden
        g0, g1 = FORWARD_GATES[phase]
        acc = cuda.local.array(GATES, DTYPE)
        for g in range(g0, g1):
            acc[g] = forward.projection[b, g * hidden + u]
        forward_unit(phase, t, b, u, acc, forward.xproj, states, forward.tape, forward.y, forward.lengths,
                     forward.vectors, forward.bias_hh, forward.direction, t * forward.keep, reg)
        if RECURRENT_DROPOUT and phase == FORWARD_PHASES - 1:
            forward.masked_state[b, u] = states[0, t + 1, b, u] * reg.mask[b, u]


def backward_pointwise(backward, t, phase):
    """Phase ``phase`` of backward step t after its GEMM: one thread per (b, u) runs the unit's
    gradients (:func:`backward_unit`); ``backward.projection`` (B, H) is what the rows
    :func:`backward_rows` names of the later step's (phase 0) or this step's (later phases) gate
    gradients send back through ``weight_hh`` (not read at the last step's phase 0: nothing
    comes from after the sequence)."""
    states, dgh, reg = backward.states, backward.dgh, backward.reg
    hidden, batch = states.shape[3], states.shape[2]
    item = cuda.grid(1)
    if item < batch * hidden:
        b, u = item // hidden, item % hidden
        source_t = t + 1 if phase == 0 else t
        value = backward.projection[b, u] if source_t < dgh.shape[0] else ZERO
        keep = mask_at(reg.mask, b, u)
        projected = value * keep if phase == 0 else value
        backward_unit(phase, t, b, u, projected, keep, backward.dy, states, backward.tape, dgh, backward.dgx,
                      backward.carry, backward.lengths, backward.vectors, backward.direction, reg, backward.record)


def fold_bias(bias_ih, bias_hh, folded, out):
    """out[j] = bias_ih[j] + bias_hh[j] for j < folded, bias_ih[j] after."""
    j = cuda.grid(1)
    if j < out.shape[0]:
        out[j] = bias_ih[j] + bias_hh[j] if j < folded else bias_ih[j]
