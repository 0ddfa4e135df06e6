"""One layer (every direction) on the CPU: the batched GEMMs around the shared time loops.

Every GEMM runs on Numba's threads (``gemm``). Time is processed in segments of a few
thousand (step, sequence) rows, so that no array of every step's gate values is held:
forward, one GEMM projects a segment's inputs, then the specialised forward loop runs
its steps; backward runs the segments from the last step back, and after each its rows'
``dx``, input- and recurrent-weight gradients and bias sums are one GEMM or reduction
each. What a training step keeps from forward to backward is the tape (the states and
the cell's saved activations) and the input.

Variable lengths: the batch is sorted by non-increasing length on entry (and unsorted on
exit), so that at each step the sequences still running are a prefix of the rows and
finished ones cost neither GEMM rows nor gate work. The reverse direction reads each
sequence backwards from its own last valid step, through a per-sequence time index.
"""
from dataclasses import dataclass

import numpy as np

from .. import buffers
from . import loops
from .base import NO_SCALE
from .gemm import matmul, weight_gradient
from .specialise import specialise
from .threads import chunk_count, single_threaded_blas
from .units import unit_bounds

_compiled_loops = {}

# (step, sequence) rows of gate values held at once: a segment's GEMMs are still large,
# and no (T, B, G·H) array of every step is allocated.
SEGMENT_ROWS = 1024
# ... or, for narrow layers, as many rows as fill this many bytes of gate values: fewer
# segments, so less Python and dispatch around them.
SEGMENT_BYTES = 4 << 20


def _loops_for(kernels):
    if kernels.name not in _compiled_loops:
        _compiled_loops[kernels.name] = (
            specialise(loops.forward_loop, kernels.name, parallel=True, step_forward=kernels.step_forward,
                       FORWARD_PHASES=kernels.forward_phases),
            specialise(loops.backward_loop, kernels.name, parallel=True, step_backward=kernels.step_backward,
                       BACKWARD_PHASES=kernels.backward_phases),
        )
    return _compiled_loops[kernels.name]


@dataclass
class LayerTape:
    """What one layer's forward keeps for its backward (everything in sorted batch order)."""

    kernels: object
    params: list         # per direction, dict of ndarray
    x: np.ndarray        # (T, B, I), the layer's input
    order: np.ndarray    # (B,) the sort applied to the batch, or None
    active: np.ndarray   # (T,) how many sequences run at each step
    reverse: tuple       # fancy index reading a (T, B, ...) array in per-sequence reverse time
    states: list         # per direction, (S, T+1, B, H): every state from the initial one on
    saved: list          # per direction, (T, K, B, H): the cell's saved activations
    zones: list = None   # per direction, zoneout (S, T, B, H) in the direction's time, or None
    candidates: list = None  # per direction, (S, T+1, B, H): the states the cell computed, before zoneout
    masks: list = None   # per direction, the recurrent dropout mask (B, H), or None
    inputs: list = None  # per direction, (T, B, H): what weight_hh saw, h ⊙ mask; or None


def _reverse_index(steps, batch, lengths):
    """(time, row) index arrays mapping t < n_b to n_b − 1 − t and padded steps to themselves."""
    t = np.arange(steps)[:, None]
    n = np.full(batch, steps) if lengths is None else lengths
    time = np.where(t < n[None, :], n[None, :] - 1 - t, t)
    return time, np.broadcast_to(np.arange(batch)[None, :], (steps, batch))


def _in_direction(array, direction, reverse):
    return np.ascontiguousarray(array) if direction == 0 else np.ascontiguousarray(array[reverse])


def _no_zoneout(dtype):
    """The empty (S, T, B, H) arrays the loops take when there is no zoneout."""
    return np.empty((0, 1, 0, 0), dtype)


def _no_mask(dtype):
    """The empty (B, H) mask and (T, B, H) recurrent inputs the loops take without recurrent dropout."""
    return np.empty((0, 0), dtype), np.empty((0, 0, 0), dtype)


def _zone(zoneout, state_count, shape, dtype, order, direction, reverse):
    """One direction's zoneout indicators as the loops read them: (S_z, T, B, H), in sorted
    batch order and the direction's time, for the first S_z states (those up to the last
    one with zoneout; 0 for a state without). No copy in the common case (h only, forward
    direction, no lengths)."""
    zoned = max(k + 1 for k, d in enumerate(zoneout[:state_count]) if d is not None)
    parts = []
    for d in zoneout[:zoned]:
        d = np.zeros(shape, dtype) if d is None else np.broadcast_to(np.asarray(d, dtype), shape)
        parts.append(_in_direction(d if order is None else d[:, order], direction, reverse))
    return parts[0][None] if zoned == 1 else np.stack(parts)


def _segment_index(direction, reverse, t0, t1):
    """Index of a (T, B, ...) array giving the direction's steps t0 … t1 − 1 (in its own time)."""
    return slice(t0, t1) if direction == 0 else (reverse[0][t0:t1], reverse[1][t0:t1])


def forward_layer(kernels, params, x, state, lengths, keep_tape=True, zoneout=None, recurrent=None):
    """Run one layer, every direction, forward.

    Parameters
    ----------
    kernels : a cell's kernel adaptor (e.g. ``LSTMKernels``)
    params : list of dict of ndarray
        Per direction (forward first), C-contiguous parameters of the layer's dtype.
    x : ndarray, shape (T, B, I)
        C-contiguous, of the layer's dtype; kept by reference on the tape.
    state : list of tuple of ndarray
        Per direction, the initial state tensors, each (B, H).
    lengths : ndarray of int64, shape (B,), or None
    keep_tape : bool
        ``False``: inference; the saved activations are not kept and the tape is ``None``.
    zoneout : list of pair, per direction, optional
        Zoneout indicators for h and c (:mod:`fastlstm.regularisation`): each (T, B, H) in
        natural time, a 0-d array (inference: the probability), or None.
    recurrent : list of (ndarray (B, H) or None), per direction, optional
        Recurrent dropout masks: ``weight_hh`` sees h ⊙ mask.

    Returns
    -------
    y : ndarray, shape (T, B, D·H); zero past each sequence's end
    final : list of tuple of ndarray, per direction, each (B, H)
    tape : LayerTape, or None
    """
    with single_threaded_blas():
        return _forward_layer(kernels, params, x, state, lengths, keep_tape, zoneout, recurrent)


def _forward_layer(kernels, params, x, state, lengths, keep_tape, zoneout, recurrent):
    forward_loop, _ = _loops_for(kernels)
    steps, batch, inputs = x.shape
    directions = len(params)
    hidden = params[0]["weight_hh"].shape[1]
    gate_width = kernels.cell.gates * hidden
    dtype = x.dtype
    order = None
    if lengths is not None:
        order = np.argsort(-lengths, kind="stable")
        lengths, x = lengths[order], np.ascontiguousarray(x[:, order])
        state = [tuple(s[order] for s in direction_state) for direction_state in state]
        active = (lengths[None, :] > np.arange(steps)[:, None]).sum(axis=1)
    else:
        active = np.full(steps, batch)
    reverse = _reverse_index(steps, batch, lengths)

    segment = _segment_steps(batch, gate_width, dtype)
    chunks = chunk_count(min(segment, steps) * batch)
    xproj = buffers.empty((min(segment, steps), batch, gate_width), dtype)
    bounds = unit_bounds(hidden, chunk_count(hidden))

    y = buffers.empty((steps, batch, directions * hidden), dtype)
    valid = active[:, None] > np.arange(batch)[None, :]      # (T, B), in sorted order
    finals, all_states, all_saved, zones, all_candidates, masks, all_inputs = [], [], [], [], [], [], []
    for direction, p in enumerate(params):
        state_count = len(state[direction])
        zone, candidates = _no_zoneout(dtype), _no_zoneout(dtype)
        if zoneout is not None and any(d is not None for d in zoneout[direction]):
            zone = _zone(zoneout[direction], state_count, (steps, batch, hidden), dtype, order, direction, reverse)
            if keep_tape and kernels.backward_reads_new_state:
                # padded rows are multiplied by zero gradients: no stale NaNs there
                candidates = (buffers.empty if lengths is None else buffers.zeros)(
                    (state_count, steps + 1, batch, hidden), dtype)
        mask, recurrent_inputs = _no_mask(dtype)
        if recurrent is not None and recurrent[direction] is not None:
            mask = np.ascontiguousarray(recurrent[direction] if order is None else recurrent[direction][order],
                                        dtype=dtype)
            # padded rows meet zero gradients in the weight gradient: no stale NaNs there
            recurrent_inputs = (buffers.empty if lengths is None else buffers.zeros)(
                (steps if keep_tape else 1, batch, hidden), dtype)
        states = buffers.empty((state_count, steps + 1, batch, hidden), dtype)
        for k, s in enumerate(state[direction]):
            states[k, 0] = s
        # Padded steps never write the tape; after-loop GEMMs multiply it by zero gradients,
        # which must not meet uninitialised NaNs. Inference reuses one slot for every step.
        allocate = buffers.empty if lengths is None else buffers.zeros
        saved = allocate((steps if keep_tape else 1, kernels.tape_planes, batch, hidden), dtype)
        weights, work = kernels.forward_weights(p, bounds), kernels.forward_work(batch, hidden, dtype)
        bias = p["bias_ih"] + kernels.folded_bias(p)
        for t0 in range(0, steps, segment):
            t1 = min(steps, t0 + segment)
            x_rows = x[_segment_index(direction, reverse, t0, t1)]
            xproj_segment = xproj[:t1 - t0]
            matmul(x_rows.reshape(-1, inputs), p["weight_ih"].T, xproj_segment.reshape(-1, gate_width), chunks)
            xproj_segment += bias
            forward_loop(xproj_segment, states, saved, weights, work, bounds, active, t0, t1, zone, candidates,
                         mask, recurrent_inputs)
        h = states[0, 1:] if direction == 0 else states[0, 1:][reverse]
        if lengths is not None:
            h = np.where(valid[..., None], h, 0)
        y[..., direction * hidden:(direction + 1) * hidden] = h
        finals.append(tuple(states[k, steps] for k in range(len(state[direction]))))
        all_states.append(states)
        all_saved.append(saved)
        zones.append(zone if zone.shape[0] else None)
        all_candidates.append(candidates if candidates.shape[0] else None)
        masks.append(mask if mask.shape[0] else None)
        all_inputs.append(recurrent_inputs if mask.shape[0] else None)
    tape = LayerTape(kernels, params, x, order, active, reverse, all_states, all_saved, zones,
                     all_candidates, masks, all_inputs) if keep_tape else None
    return _unsort(y, order, axis=1), _unsort_states(finals, order), tape


def _segment_steps(batch, gate_width, dtype):
    """Steps per segment: SEGMENT_ROWS rows, or more when that many are under SEGMENT_BYTES."""
    rows = max(SEGMENT_ROWS, SEGMENT_BYTES // (gate_width * np.dtype(dtype).itemsize))
    return max(1, -(-rows // batch))


def _accumulate(total, part):
    for name, value in part.items():
        if name in total:
            total[name] += value
        else:
            total[name] = value


def _input_gradients(dgx, weight_ih, x, dx, direction, index, chunks):
    """A segment's input-side gradients: its dx rows (written by the forward direction,
    added by the reverse one at the natural time of each of its steps, ``index`` from
    :func:`_segment_index`) and its share of ``weight_ih`` and ``bias_ih``."""
    inputs, rows = x.shape[2], dgx.reshape(-1, dgx.shape[-1])
    x_rows = x[index].reshape(-1, inputs)
    if direction == 0:
        matmul(rows, weight_ih, dx[index].reshape(-1, inputs), chunks)
    else:
        dx_segment = buffers.empty(dgx.shape[:2] + (inputs,), x.dtype)
        matmul(rows, weight_ih, dx_segment.reshape(-1, inputs), chunks)
        dx[index] += dx_segment
    weight, bias = weight_gradient(rows, 0, rows.shape[1], x_rows, NO_SCALE[x.dtype], 0, chunks)
    return {"weight_ih": weight, "bias_ih": bias}


def _unsort(array, order, axis):
    """Undo the batch sort along ``axis`` (``order`` None: no sort, ``array`` itself)."""
    if order is None:
        return array
    out = np.empty_like(array)
    index = [slice(None)] * array.ndim
    index[axis] = order
    out[tuple(index)] = array
    return out


def _unsort_states(per_direction, order):
    """Per-direction state tensors, unsorted and never views into the tape's buffers."""
    if order is None:
        return [tuple(s.copy() for s in states) for states in per_direction]
    return [tuple(_unsort(s, order, axis=0) for s in states) for states in per_direction]


def backward_layer(tape, dy, dstate, norms=None):
    """Backpropagate through one layer's forward.

    Parameters
    ----------
    tape : LayerTape
    dy : ndarray, shape (T, B, D·H); entries past a sequence's end are ignored
    dstate : list of tuple of ndarray, per direction, each (B, H); or None
    norms : ndarray, shape (D, T, B), optional
        Receives ‖∂L/∂h_t‖ of every step in natural time, NaN past each sequence's end.

    Returns
    -------
    dx : ndarray, shape (T, B, I); zero past each sequence's end
    dstate0 : list of tuple of ndarray, per direction
    grads : list of dict of ndarray, per direction
    """
    with single_threaded_blas():
        return _backward_layer(tape, dy, dstate, norms)


def _backward_layer(tape, dy, dstate, norms):
    kernels, x, order = tape.kernels, tape.x, tape.order
    _, backward_loop = _loops_for(kernels)
    steps, batch, inputs = x.shape
    hidden = tape.params[0]["weight_hh"].shape[1]
    gate_width = kernels.cell.gates * hidden
    dtype = x.dtype
    if order is not None:
        dy = dy[:, order]
        dstate = None if dstate is None else [tuple(d[order] for d in ds) for ds in dstate]

    segment = _segment_steps(batch, gate_width, dtype)
    chunks = chunk_count(min(segment, steps) * batch)
    dgx = buffers.empty((min(segment, steps), batch, gate_width), dtype)
    dx = buffers.empty((steps, batch, inputs), dtype)
    bounds = unit_bounds(hidden, chunk_count(hidden))
    dstates0, grads = [], []
    for direction, p in enumerate(tape.params):
        states, saved = tape.states[direction], tape.saved[direction]
        state_count = states.shape[0]
        dstates = np.zeros((2, state_count, batch, hidden), dtype)
        dy_dir = _in_direction(dy[..., direction * hidden:(direction + 1) * hidden], direction, tape.reverse)
        zone, skipped, new_states = _no_zoneout(dtype), np.empty((0, 0, 0), dtype), states
        if tape.zones[direction] is not None:
            zone = tape.zones[direction]
            if tape.candidates[direction] is not None:
                new_states = tape.candidates[direction]
            skipped = np.empty((zone.shape[0], batch, hidden), dtype)
            dy_dir = np.array(dy_dir)   # the loop folds its rows into the state gradient
        loop_states = new_states if kernels.step_backward_reads_new_state else states
        mask, recurrent_inputs = _no_mask(dtype)
        weight_hh_saw = states[0]
        if tape.masks[direction] is not None:
            mask, recurrent_inputs = tape.masks[direction], tape.inputs[direction]
            weight_hh_saw = recurrent_inputs
        weights, work = kernels.backward_weights(p, bounds), kernels.backward_work(batch, hidden, dtype)
        loop_norms = np.full((steps, batch), np.nan) if norms is not None else np.empty((0, 0))
        direction_grads = {}
        for t1 in range(steps, 0, -segment) if steps else [0]:  # T = 0: one empty segment, zero gradients
            t0 = max(0, t1 - segment)
            # The loop reads the incoming state gradient from dstates[(t1 - t0) % 2] and leaves
            # the outgoing one in dstates[0].
            if t1 == steps:
                for k in range(state_count):
                    dstates[(t1 - t0) % 2, k] = 0 if dstate is None else dstate[direction][k]
            elif (t1 - t0) % 2:
                dstates[1] = dstates[0]
            dgx_segment = dgx[:t1 - t0]
            dgx_segment[...] = 0
            backward_loop(dy_dir, loop_states, saved, dstates, dgx_segment, weights, work, bounds, tape.active, t0,
                          t1, zone, skipped, mask, recurrent_inputs, loop_norms)
            _accumulate(direction_grads, kernels.recurrent_gradients(dgx_segment, weight_hh_saw, saved, t0, t1))
            _accumulate(direction_grads, kernels.vector_gradients(dgx_segment, states, saved, t0, t1, new_states))
            _accumulate(direction_grads, _input_gradients(
                dgx_segment, p["weight_ih"], x, dx, direction, _segment_index(direction, tape.reverse, t0, t1),
                chunks))
        grads.append(direction_grads)
        dstates0.append(tuple(dstates[0, k] for k in range(state_count)))
        if norms is not None:
            norms[direction] = _unsort(_in_direction(loop_norms, direction, tape.reverse), order, axis=1)
    return _unsort(dx, order, axis=1), _unsort_states(dstates0, order), grads
