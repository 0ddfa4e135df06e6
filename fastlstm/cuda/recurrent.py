"""The recurrent time loops on the GPU, as templates that ``compiled`` binds per cell and dtype.

Work split: a *lane group* of ``lanes`` threads (a power of two, at most a warp) owns one
(sequence b, hidden unit u) pair of a step. Its lanes split the recurrent dot products over
the previous state (lane l takes k = l, l + lanes, ...: neighbouring lanes read neighbouring
memory), the partial sums meet in shared memory, and lane 0 does the cell's element-wise
math (:mod:`fastlstm.cellmath`) and writes the new state, the saved activations (the tape)
and the output. Backward, the group forms the gradient reaching its unit's state from the
later step's gate gradients, and lane 0 its unit's gate gradients.

Two ways to run the loop, with the same per-group code (``forward_round``/``backward_round``):

- **persistent**: one cooperative launch for all steps. Block j owns units
  ``[j·U, (j+1)·U)``; it copies its share of the recurrent weights into shared memory once
  and keeps it there for every step, its groups take its (b, u) pairs in rounds, and the
  grid synchronises once per phase of a step (``cuda.cg.this_grid().sync()``).
- **per step**: one launch per phase of each step, one group per (b, u), weights read from
  global memory (through L2) at every step. Used when the weights do not fit on chip.

Weight layouts, both with the dot product's index contiguous: forward, unit u's gate g row
of ``weight_hh`` starts at ``u · unit_stride + g · gate_stride`` (global memory: weight_hh
itself, (G·H, H); shared memory: ``[unit][gate][k]``); backward, unit u's column of
``weight_hh`` starts at ``u · G·H`` (global memory: weight_hhᵀ, (H, G·H); shared memory:
``[unit][row]``). After a block's weights, shared memory holds the groups' partial sums
(``blockDim.x · GATES`` values).

Names bound per cell and dtype (placeholders here): ``DTYPE``, ``ZERO``, ``GATES``, the
phase counts, ``FINISH_GATES`` (the gate blocks whose gradients reach h through
``weight_hh`` at the start of a backward step: all but the reset-before GRU's candidate),
``RESET_AFTER``, the cell's ``forward_unit``/``backward_unit`` and the cellmath functions.

Regularisers inside the loop (:mod:`fastlstm.regularisation`), each an argument that is an
empty array when off, so that the plain loop's arithmetic is untouched:

- ``mask``, (B, H) or (0, 0): recurrent dropout, the state feeding ``weight_hh`` is h ⊙ mask;
  backward, the gradient the projection sends to h is multiplied by it.
- ``zone_h`` / ``zone_c``, (T, B, H) in natural time, (1, 1, 1) holding p (inference), or
  (0, 0, 0): zoneout, state = d·previous + (1 − d)·new; backward, (1 − d)·g goes through the
  cell and d·g skips to the previous state.
- ``candidates``, (T, B, H) or (0, 0, 0): the cell's new state before zoneout where the
  backward reads it (the RNN's h for its derivative, the peephole LSTM's c for ∂weight_co).

Introspection: ``record``, (T, B, H) or (0, 0, 0), receives the gradient reaching each valid
step's h (natural time) when ``state_gradient_norms`` are asked for.
"""
from numba import cuda

from ..cellmath import (gru_backward, gru_candidate, lstm_backward, lstm_forward, rnn_backward,
                        rnn_forward, sigmoid, sigmoid_gradient)

DTYPE = None
ZERO = 0.0
ONE = 1.0
GATES = 1
FORWARD_PHASES = 1
BACKWARD_PHASES = 1
FINISH_GATES = 1
RESET_AFTER = True


def forward_unit(phase, t, b, u, acc, xproj, states, tape, y, lengths, vectors, direction, slot, mask, zone_h,
                 zone_c, candidates):  # pragma: no cover
    raise NotImplementedError("bound per cell")


def backward_unit(phase, t, b, u, projected, keep, dy, states, tape, dgh, dgx, carry, lengths, vectors, direction,
                  zone_h, zone_c, candidates, record):  # pragma: no cover
    raise NotImplementedError("bound per cell")


# ---------------------------------------------------------------- the lane groups' dot products

def forward_gates(phase):
    """The gate blocks [g0, g1) projected in a forward phase: the reset-before GRU projects
    r and z from h in phase 0 and the candidate from r ⊙ h in phase 1; other cells, all."""
    if FORWARD_PHASES == 1:
        return 0, GATES
    return (0, 2) if phase == 0 else (2, 3)


def backward_rows(phase, hidden):
    """The gate rows [r0, r1) a backward phase projects back: phase 0 those reaching h from
    the later step; the reset-before GRU's phase 1 the candidate's, reaching r ⊙ h."""
    if phase == 0:
        return 0, FINISH_GATES * hidden
    return 2 * hidden, 3 * hidden


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
                  xproj, states, tape, y, lengths, vectors, direction, slot, mask, zone_h, zone_c, candidates):
    """Lane group ``threadIdx.x // lanes`` does (b, u) pair ``item`` of ``items`` (b = item // width,
    u = u0 + item % width; weights of that unit at ``(item % width) · unit_stride``)."""
    hidden = states.shape[3]
    lane = cuda.threadIdx.x % lanes
    at = scratch + (cuda.threadIdx.x // lanes) * GATES * lanes
    active = item < items
    b, c = item // width, item % width
    g0, g1 = forward_gates(phase)
    if active and t < lengths[b]:
        # the reset-before GRU's phase 1 projects r ⊙ h (tape plane 3, masked already); everything else h
        if phase == 0:
            project_gates(states[0, t, b], mask, b, mask.shape[0] > 0, w, c * unit_stride, gate_stride, g0, g1,
                          partial, at, lane, lanes)
        else:
            project_gates(tape[3, slot, b], mask, b, False, w, c * unit_stride, gate_stride, g0, g1, partial, at,
                          lane, lanes)
    sum_lanes(partial, at, GATES, lane, lanes, active)
    if active and lane == 0:
        acc = cuda.local.array(GATES, DTYPE)
        for g in range(g0, g1):
            acc[g] = partial[at + g * lanes]
        forward_unit(phase, t, b, u0 + c, acc, xproj, states, tape, y, lengths, vectors, direction, slot, mask,
                     zone_h, zone_c, candidates)
    cuda.syncthreads()


def backward_round(phase, t, item, items, width, u0, w, partial, scratch, lanes,
                   dy, states, tape, dgh, dgx, carry, lengths, vectors, direction, mask, zone_h, zone_c, candidates,
                   record):
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
        keep = mask_at(mask, b, u0 + c)
        projected = partial[at] * keep if phase == 0 else partial[at]
        backward_unit(phase, t, b, u0 + c, projected, keep, dy, states, tape, dgh, dgx, carry, lengths, vectors,
                      direction, zone_h, zone_c, candidates, record)
    cuda.syncthreads()


# ---------------------------------------------------------------- helpers every cell uses

def mask_at(mask, b, u):
    """Recurrent dropout's keep value at (b, u): 1 without recurrent dropout."""
    if mask.shape[0] == 0:
        return ONE
    return mask[b, u]


def zone_at(zone, tt, b, u):
    """Zoneout's keep-previous indicator at natural time tt, (b, u), from (T, B, H) or (1, 1, 1)."""
    return zone[tt if zone.shape[0] > 1 else 0, b if zone.shape[1] > 1 else 0, u if zone.shape[2] > 1 else 0]


def zone_out(zone, tt, b, u, previous, new):
    """d·previous + (1 − d)·new; ``new`` itself without zoneout."""
    if zone.shape[0] == 0:
        return new
    d = zone_at(zone, tt, b, u)
    return d * previous + (ONE - d) * new


def zone_split(zone, tt, b, u, gradient):
    """(through, skipped): (1 − d)·g reaches the cell's new state, d·g skips to the previous one."""
    if zone.shape[0] == 0:
        return gradient, ZERO
    d = zone_at(zone, tt, b, u)
    return (ONE - d) * gradient, d * gradient


def record_gradient(record, tt, b, u, dh):
    """Keep the gradient reaching h at natural time tt, for ‖∂L/∂h_t‖ (introspection)."""
    if record.shape[0] > 0:
        record[tt, b, u] = dh


def keep_candidate(candidates, slot, b, u, value):
    """Save the cell's new state before zoneout where the backward needs it."""
    if candidates.shape[0] > 0:
        candidates[slot, b, u] = value

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


# ---------------------------------------------------------------- per-cell units: lane 0 of a group

def lstm_forward_unit(phase, t, b, u, acc, xproj, states, tape, y, lengths, vectors, direction, slot, mask, zone_h,
                      zone_c, candidates):
    hidden = states.shape[3]
    length = lengths[b]
    if t >= length:
        padded_forward(t, b, u, states, tape, y, slot, direction, hidden)
        return
    tt = time_of(t, length, direction)
    x = xproj[tt, b]
    base = direction * 4 * hidden + u
    i, f, g, o, c_new, tanh_c, h_new = lstm_forward(
        x[base] + acc[0], x[base + hidden] + acc[1], x[base + 2 * hidden] + acc[2],
        x[base + 3 * hidden] + acc[3], states[1, t, b, u], vectors[0, u], vectors[1, u], vectors[2, u])
    keep_candidate(candidates, slot, b, u, c_new)
    h_new = zone_out(zone_h, tt, b, u, states[0, t, b, u], h_new)
    states[0, t + 1, b, u] = h_new
    states[1, t + 1, b, u] = zone_out(zone_c, tt, b, u, states[1, t, b, u], c_new)
    tape[0, slot, b, u] = i
    tape[1, slot, b, u] = f
    tape[2, slot, b, u] = g
    tape[3, slot, b, u] = o
    tape[4, slot, b, u] = tanh_c
    y[tt, b, direction * hidden + u] = h_new


def lstm_backward_unit(phase, t, b, u, projected, keep, dy, states, tape, dgh, dgx, carry, lengths, vectors,
                       direction, zone_h, zone_c, candidates, record):
    hidden = states.shape[3]
    dh, tt = incoming_gradient(t, b, u, projected, dy, carry, lengths, dgh, dgx, direction, hidden)
    if tt < 0:
        return
    record_gradient(record, tt, b, u, dh)
    dh, dh_skipped = zone_split(zone_h, tt, b, u, dh)
    dc, dc_skipped = zone_split(zone_c, tt, b, u, carry[1, b, u])
    da_i, da_f, da_g, da_o, dc_prev = lstm_backward(
        dh, dc, tape[0, t, b, u], tape[1, t, b, u], tape[2, t, b, u], tape[3, t, b, u],
        tape[4, t, b, u], states[1, t, b, u], vectors[0, u], vectors[1, u], vectors[2, u])
    carry[0, b, u] = dh_skipped
    carry[1, b, u] = dc_prev + dc_skipped
    store_gradient(t, tt, b, u, 0, da_i, da_i, dgh, dgx, direction, hidden)
    store_gradient(t, tt, b, u, 1, da_f, da_f, dgh, dgx, direction, hidden)
    store_gradient(t, tt, b, u, 2, da_g, da_g, dgh, dgx, direction, hidden)
    store_gradient(t, tt, b, u, 3, da_o, da_o, dgh, dgx, direction, hidden)


def gru_forward_unit(phase, t, b, u, acc, xproj, states, tape, y, lengths, vectors, direction, slot, mask, zone_h,
                     zone_c, candidates):
    """Tape planes: r, z, n and W_hn h + b_hn (reset_after) or r ⊙ h (reset_before; r ⊙ h ⊙ mask
    under recurrent dropout)."""
    hidden = states.shape[3]
    length = lengths[b]
    if t >= length:
        if phase == FORWARD_PHASES - 1:
            padded_forward(t, b, u, states, tape, y, slot, direction, hidden)
        return
    tt = time_of(t, length, direction)
    x = xproj[tt, b]
    base = direction * 3 * hidden + u
    h = states[0, t, b, u]
    if RESET_AFTER:
        r = sigmoid(x[base] + acc[0])
        z = sigmoid(x[base + hidden] + acc[1])
        hn = acc[2] + vectors[0, u]
        n, h_new = gru_candidate(x[base + 2 * hidden] + r * hn, z, h)
        tape[3, slot, b, u] = hn
    elif phase == 0:
        r = sigmoid(x[base] + acc[0])
        tape[0, slot, b, u] = r
        tape[1, slot, b, u] = sigmoid(x[base + hidden] + acc[1])
        tape[3, slot, b, u] = r * (h * mask_at(mask, b, u))
        return
    else:
        r = tape[0, slot, b, u]
        z = tape[1, slot, b, u]
        n, h_new = gru_candidate(x[base + 2 * hidden] + acc[2], z, h)
    h_new = zone_out(zone_h, tt, b, u, h, h_new)
    states[0, t + 1, b, u] = h_new
    tape[0, slot, b, u] = r
    tape[1, slot, b, u] = z
    tape[2, slot, b, u] = n
    y[tt, b, direction * hidden + u] = h_new


def gru_backward_unit(phase, t, b, u, projected, keep, dy, states, tape, dgh, dgx, carry, lengths, vectors,
                      direction, zone_h, zone_c, candidates, record):
    """reset_before, phase 1: ``projected`` is the gradient reaching r ⊙ h ⊙ mask, from every
    unit's da_n of phase 0; ``keep`` is the unit's recurrent-dropout mask value."""
    hidden = states.shape[3]
    length = lengths[b]
    if phase == 1:
        if t < length:
            r = tape[0, t, b, u]
            da_r = sigmoid_gradient(projected * (states[0, t, b, u] * keep), r)
            carry[0, b, u] += projected * r * keep
            store_gradient(t, time_of(t, length, direction), b, u, 0, da_r, da_r, dgh, dgx, direction, hidden)
        return
    dh, tt = incoming_gradient(t, b, u, projected, dy, carry, lengths, dgh, dgx, direction, hidden)
    if tt < 0:
        return
    record_gradient(record, tt, b, u, dh)
    dh, dh_skipped = zone_split(zone_h, tt, b, u, dh)
    r, z, n = tape[0, t, b, u], tape[1, t, b, u], tape[2, t, b, u]
    da_z, da_n, dh_direct = gru_backward(dh, z, n, states[0, t, b, u])
    carry[0, b, u] = dh_direct + dh_skipped
    store_gradient(t, tt, b, u, 1, da_z, da_z, dgh, dgx, direction, hidden)
    if RESET_AFTER:
        da_r = sigmoid_gradient(da_n * tape[3, t, b, u], r)
        store_gradient(t, tt, b, u, 0, da_r, da_r, dgh, dgx, direction, hidden)
        store_gradient(t, tt, b, u, 2, da_n, da_n * r, dgh, dgx, direction, hidden)
    else:
        store_gradient(t, tt, b, u, 2, da_n, da_n, dgh, dgx, direction, hidden)


def rnn_forward_unit(phase, t, b, u, acc, xproj, states, tape, y, lengths, vectors, direction, slot, mask, zone_h,
                     zone_c, candidates):
    hidden = states.shape[3]
    length = lengths[b]
    if t >= length:
        padded_forward(t, b, u, states, tape, y, slot, direction, hidden)
        return
    tt = time_of(t, length, direction)
    h_new = rnn_forward(xproj[tt, b, direction * hidden + u] + acc[0])
    keep_candidate(candidates, slot, b, u, h_new)
    h_new = zone_out(zone_h, tt, b, u, states[0, t, b, u], h_new)
    states[0, t + 1, b, u] = h_new
    y[tt, b, direction * hidden + u] = h_new


def rnn_backward_unit(phase, t, b, u, projected, keep, dy, states, tape, dgh, dgx, carry, lengths, vectors,
                      direction, zone_h, zone_c, candidates, record):
    hidden = states.shape[3]
    dh, tt = incoming_gradient(t, b, u, projected, dy, carry, lengths, dgh, dgx, direction, hidden)
    if tt < 0:
        return
    record_gradient(record, tt, b, u, dh)
    dh, dh_skipped = zone_split(zone_h, tt, b, u, dh)
    h_new = candidates[t, b, u] if candidates.shape[0] > 0 else states[0, t + 1, b, u]
    da = rnn_backward(dh, h_new)
    carry[0, b, u] = dh_skipped
    store_gradient(t, tt, b, u, 0, da, da, dgh, dgx, direction, hidden)


# ---------------------------------------------------------------- kernels

def block_units(units_per_block, hidden):
    """This block's units [u0, u1)."""
    u0 = cuda.blockIdx.x * units_per_block
    return u0, min(hidden, u0 + units_per_block)


def forward_persistent(xproj, states, tape, y, lengths, w, vectors, direction, keep, mask, zone_h, zone_c,
                       candidates, units_per_block, lanes):
    """Every step in one cooperative launch; w is weight_hh, (G·H, H), flattened."""
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
    for t in range(xproj.shape[0]):
        for phase in range(FORWARD_PHASES):
            for first in range(0, batch * width, groups):
                forward_round(phase, t, first + cuda.threadIdx.x // lanes, batch * width, width, u0, shared,
                              GATES * hidden, hidden, shared, scratch, lanes, xproj, states, tape, y, lengths,
                              vectors, direction, t * keep, mask, zone_h, zone_c, candidates)
            grid.sync()


def forward_step(t, phase, xproj, states, tape, y, lengths, w, vectors, direction, keep, mask, zone_h, zone_c,
                 candidates, lanes):
    """One phase of step t: a lane group per (b, u), weights (weight_hh) from global memory."""
    hidden, batch = states.shape[3], states.shape[2]
    partial = cuda.shared.array(0, DTYPE)
    item = cuda.blockIdx.x * (cuda.blockDim.x // lanes) + cuda.threadIdx.x // lanes
    forward_round(phase, t, item, batch * hidden, hidden, 0, w, hidden, hidden * hidden, partial, 0, lanes,
                  xproj, states, tape, y, lengths, vectors, direction, t * keep, mask, zone_h, zone_c, candidates)


def backward_persistent(dy, states, tape, dgh, dgx, carry, lengths, w_t, vectors, direction, mask, zone_h, zone_c,
                        candidates, record, units_per_block, lanes):
    """Every step backward in one cooperative launch; w_t is weight_hhᵀ, (H, G·H), flattened."""
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
    for t in range(dgh.shape[0] - 1, -1, -1):
        for phase in range(BACKWARD_PHASES):
            for first in range(0, batch * width, groups):
                backward_round(phase, t, first + cuda.threadIdx.x // lanes, batch * width, width, u0, shared,
                               shared, scratch, lanes, dy, states, tape, dgh, dgx, carry, lengths, vectors,
                               direction, mask, zone_h, zone_c, candidates, record)
            grid.sync()


def backward_step(t, phase, dy, states, tape, dgh, dgx, carry, lengths, w_t, vectors, direction, mask, zone_h,
                  zone_c, candidates, record, lanes):
    """One phase of backward step t: a lane group per (b, u), weights (weight_hhᵀ) from global memory."""
    hidden, batch = states.shape[3], states.shape[2]
    partial = cuda.shared.array(0, DTYPE)
    item = cuda.blockIdx.x * (cuda.blockDim.x // lanes) + cuda.threadIdx.x // lanes
    backward_round(phase, t, item, batch * hidden, hidden, 0, w_t, partial, 0, lanes, dy, states, tape, dgh,
                   dgx, carry, lengths, vectors, direction, mask, zone_h, zone_c, candidates, record)


def backward_finish(dgh, carry, w_t, mask, lanes):
    """After the first step: carry[0] += what step 0's gate gradients send to the initial h
    (through h ⊙ mask under recurrent dropout)."""
    hidden, batch = carry.shape[2], carry.shape[1]
    partial = cuda.shared.array(0, DTYPE)
    lane = cuda.threadIdx.x % lanes
    at = (cuda.threadIdx.x // lanes) * lanes
    item = cuda.blockIdx.x * (cuda.blockDim.x // lanes) + cuda.threadIdx.x // lanes
    active = item < batch * hidden and dgh.shape[0] > 0
    b, u = item // hidden, item % hidden
    if active:
        partial[at + lane] = lane_dot(dgh[0, b], w_t, u * GATES * hidden, 0, FINISH_GATES * hidden, lane, lanes)
    sum_lanes(partial, at, 1, lane, lanes, active)
    if active and lane == 0:
        carry[0, b, u] += partial[at] * mask_at(mask, b, u)


def fold_bias(bias_ih, bias_hh, folded, out):
    """out[j] = bias_ih[j] + bias_hh[j] for j < folded, bias_ih[j] after."""
    j = cuda.grid(1)
    if j < out.shape[0]:
        out[j] = bias_ih[j] + bias_hh[j] if j < folded else bias_ih[j]
