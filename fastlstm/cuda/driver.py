"""One layer (every direction) on the GPU: the batched GEMMs around the recurrent loops.

Forward: ONE GEMM projects every step's input for both directions (the directions' input
weights stacked, the foldable recurrent biases added), then each direction's recurrent loop
(:mod:`.plan` picks persistent or per-step). Backward: each direction's loop runs in reverse
and writes its gate gradients twice, in natural time next to the other direction's for the
input side, and in its own time for the recurrent side; then ``dx``, the stacked
``weight_ih`` gradient and the input biases are one GEMM or reduction each for both
directions, and ``weight_hh``, ``bias_hh`` and the peepholes one each per direction.

Everything stays on the device; arrays are numba device arrays, C-contiguous, of the
layer's dtype. Lengths are handled in the kernels: a finished sequence carries its state,
its outputs and gradients are zero, and the reverse direction reads each sequence from its
own last valid step.

Recurrent dropout and zoneout run inside the loops (:mod:`.recurrent`): each direction's
mask and indicators are copied in once per call, empty arrays where a regulariser is off.
"""
import os
from dataclasses import dataclass

import numpy as np
from numba import cuda

from . import arrays, gemm, plan
from .compiled import fold_bias, kernels_for

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
_VECTOR_THREADS = 128


@dataclass
class LayerTape:
    """What one layer's forward keeps for its backward (device arrays)."""

    kernels: object
    params: list       # per direction, dict of device arrays
    x: object          # (T, B, I)
    lengths: object    # (B,) int64, T where no lengths were given
    w_ih: object       # (D·G·H, I), the directions' input weights stacked
    states: list       # per direction, (S, T+1, B, H), in the direction's own time
    tapes: list        # per direction, (K, T, B, H), the cell's saved activations
    forward_loop: plan.LoopPlan
    regularisers: list = None             # per direction, (mask, zone_h, zone_c, candidates) or None
    backward_loop: plan.LoopPlan = None   # set by the backward


def _launch_1d(kernel, count, *args):
    if count > 0:
        kernel[-(-count // _VECTOR_THREADS), _VECTOR_THREADS](*args)


def _stack_rows(parts, dtype):
    """The 2-D device arrays ``parts`` concatenated along their first axis."""
    out = cuda.device_array((sum(p.shape[0] for p in parts),) + tuple(parts[0].shape[1:]), dtype)
    row = 0
    for part in parts:
        out[row:row + part.shape[0]].copy_to_device(part)
        row += part.shape[0]
    return out


def _vectors(kernels, p, hidden, dtype):
    """The cell's (V, H) element-wise parameters: peepholes, or the GRU's b_hn."""
    cell = kernels.cell
    if cell.kind == "lstm" and cell.peephole:
        return _stack_rows([p[name].reshape(1, hidden) for name in cell.vector_names], dtype)
    if cell.kind == "gru" and cell.reset_after:
        return p["bias_hh"][2 * hidden:].reshape(1, hidden)
    if hidden not in kernels.zero_vectors:
        kernels.zero_vectors[hidden] = arrays.zeros((3 if cell.kind == "lstm" else 1, hidden), dtype)
    return kernels.zero_vectors[hidden]


def _resident_blocks(kernel, args):
    """``max_resident_blocks`` for :func:`plan.choose`: asks the compiled kernel."""
    if SIMULATED:
        return lambda threads, shared_bytes: None
    compiled = kernel.compile(tuple(kernel.typeof_pyval(a) for a in args))
    return lambda threads, shared_bytes: compiled.max_cooperative_grid_blocks(threads, shared_bytes)


def _loop_plan(kernels, which, args, batch, hidden):
    """The :class:`plan.LoopPlan` of a layer whose persistent kernel ``which`` takes ``args``
    (+ units and lanes); the same for every call with this batch and width."""
    key = (which, batch, hidden, plan.LOOP)
    if key not in kernels.plans:
        kernels.plans[key] = plan.choose(kernels.layout.gates, batch, hidden, kernels.dtype.itemsize,
                                         _resident_blocks(getattr(kernels, which), args + (1, 1)))
    return kernels.plans[key]


_full_lengths = {}


def _lengths(lengths, batch, steps):
    """Device (B,) int64 lengths; when none were given, T for all, kept on the device between calls."""
    if lengths is not None:
        return cuda.to_device(lengths)
    if (batch, steps) not in _full_lengths:
        if len(_full_lengths) > 64:
            _full_lengths.clear()
        _full_lengths[batch, steps] = cuda.to_device(np.full(batch, steps, np.int64))
    return _full_lengths[batch, steps]


def _empty(ndim, dtype):
    """A size-0 device array: a regulariser that is off."""
    return cuda.device_array((0,) * ndim, dtype)


def _regularisers(kernels, recurrent, zoneout, direction, steps, batch, hidden, keep_tape):
    """One direction's (mask, zone_h, zone_c, candidates) as the loops take them.

    ``recurrent``: per direction, a (B, H) mask or None; ``zoneout``: per direction, (d_h, d_c),
    each (T, B, H), 0-d (the expectation) or None. Candidates are kept (training with a tape)
    where the backward reads the new state before zoneout: the RNN's h, the peephole LSTM's c.
    """
    dtype, cell = kernels.dtype, kernels.cell
    mask = None if recurrent is None else recurrent[direction]
    mask = _empty(2, dtype) if mask is None else arrays.to_device("recurrent mask", mask, dtype)
    zones = (None, None) if zoneout is None else zoneout[direction]
    on_device = []
    for d in zones:
        if d is None:
            on_device.append(_empty(3, dtype))
        else:
            on_device.append(arrays.to_device("zoneout", np.reshape(d, np.shape(d) if np.ndim(d) else (1, 1, 1)),
                                              dtype))
    zone_h, zone_c = on_device
    needs_candidates = (cell.kind == "rnn" and zones[0] is not None) or \
        (cell.kind == "lstm" and cell.peephole and zones[1] is not None)
    # zeros: padded steps are never written, and ∂weight_co multiplies them by zero gradients
    candidates = arrays.zeros((steps, batch, hidden), dtype) if keep_tape and needs_candidates \
        else _empty(3, dtype)
    return mask, zone_h, zone_c, candidates


def _run_loop(kernels, which, loop, steps, phases, args, reverse=False):
    """Launch a layer's recurrent loop as ``loop`` says: one cooperative launch, or one per phase of each step."""
    if steps == 0:
        return
    if loop.kind == "persistent":
        getattr(kernels, f"{which}_persistent")[loop.blocks, loop.threads, 0, loop.shared_bytes](
            *args, loop.units_per_block, loop.lanes)
        return
    step = getattr(kernels, f"{which}_step")[loop.blocks, loop.threads, 0, loop.shared_bytes]
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        for phase in range(phases):
            step(t, phase, *args, loop.lanes)


def forward_layer(kernels, params, x, state, lengths, keep_tape=True, recurrent=None, zoneout=None):
    """Run one layer, every direction, forward.

    Parameters
    ----------
    kernels : compiled.CellKernels
    params : list of dict of device arrays
        Per direction (forward first), the layer's parameters.
    x : device array, shape (T, B, I)
    state : list of tuple of device arrays
        Per direction, the initial state tensors, each (B, H).
    lengths : ndarray of int64, shape (B,), or None
    keep_tape : bool
        ``False``: inference; one tape slot is reused and the tape is ``None``.
    recurrent : list of (ndarray (B, H) or None), per direction, optional
        Recurrent dropout's keep-masks (:mod:`fastlstm.regularisation`).
    zoneout : list of pair, per direction, optional
        Zoneout's indicators for h and c: each (T, B, H) in natural time, 0-d (p), or None.

    Returns
    -------
    y : device array, shape (T, B, D·H); zero past each sequence's end
    final : list of tuple of device arrays, per direction, each (B, H)
    tape : LayerTape, or None
    """
    steps, batch, inputs = x.shape
    dtype = kernels.dtype
    layout = kernels.layout
    hidden = params[0]["weight_hh"].shape[1]
    gate_width = layout.gates * hidden
    directions = len(params)
    lengths = _lengths(lengths, batch, steps)

    w_ih = _stack_rows([p["weight_ih"] for p in params], dtype)
    bias = cuda.device_array(directions * gate_width, dtype)
    for d, p in enumerate(params):
        _launch_1d(fold_bias, gate_width, p["bias_ih"], p["bias_hh"], layout.folded_gates * hidden,
                   bias[d * gate_width:(d + 1) * gate_width])
    xproj = cuda.device_array((steps, batch, directions * gate_width), dtype)
    gemm.matmul(x.reshape(steps * batch, inputs), gemm.transposed(w_ih),
                xproj.reshape(steps * batch, directions * gate_width), bias=bias)

    y = cuda.device_array((steps, batch, directions * hidden), dtype)
    finals, all_states, all_tapes, all_regularisers = [], [], [], []
    for direction, p in enumerate(params):
        states = cuda.device_array((len(state[direction]), steps + 1, batch, hidden), dtype)
        for k, s in enumerate(state[direction]):
            states[k, 0].copy_to_device(s)
        tape = cuda.device_array((layout.tape_planes, steps if keep_tape else 1, batch, hidden), dtype)
        regularisers = _regularisers(kernels, recurrent, zoneout, direction, steps, batch, hidden, keep_tape)
        args = (xproj, states, tape, y, lengths, p["weight_hh"].reshape(-1), _vectors(kernels, p, hidden, dtype),
                direction, 1 if keep_tape else 0) + regularisers
        loop = _loop_plan(kernels, "forward_persistent", args, batch, hidden)
        _run_loop(kernels, "forward", loop, steps, layout.forward_phases, args)
        finals.append(tuple(_copy(states[k, steps], dtype) for k in range(states.shape[0])))
        all_states.append(states)
        all_tapes.append(tape)
        all_regularisers.append(regularisers)
    if not keep_tape:
        return y, finals, None
    return y, finals, LayerTape(kernels, params, x, lengths, w_ih, all_states, all_tapes, loop, all_regularisers)


def _copy(array, dtype):
    out = cuda.device_array(array.shape, dtype)
    out.copy_to_device(array)
    return out


def backward_layer(tape, dy, dstate, norms=None):
    """Backpropagate through one layer's forward.

    Parameters
    ----------
    tape : LayerTape
    dy : device array, shape (T, B, D·H); entries past a sequence's end are ignored
    dstate : list of tuple of device arrays, per direction, each (B, H); or None
    norms : ndarray, shape (D, T, B), optional
        Receives ‖∂L/∂h_t‖ of every step in natural time (host memory), NaN past each end.

    Returns
    -------
    dx : device array, shape (T, B, I); zero past each sequence's end
    dstate0 : list of tuple of device arrays, per direction
    grads : list of dict of device arrays, per direction
    """
    kernels, x = tape.kernels, tape.x
    layout, dtype = kernels.layout, kernels.dtype
    steps, batch, inputs = x.shape
    hidden = tape.params[0]["weight_hh"].shape[1]
    gate_width = layout.gates * hidden
    directions = len(tape.params)
    rows = steps * batch

    dgx = cuda.device_array((steps, batch, directions * gate_width), dtype)
    dstates0, grads = [], []
    for direction, p in enumerate(tape.params):
        states, saved = tape.states[direction], tape.tapes[direction]
        state_count = states.shape[0]
        carry = arrays.zeros((state_count, batch, hidden), dtype)
        if dstate is not None:
            for k in range(state_count):
                carry[k].copy_to_device(dstate[direction][k])
        dgh = cuda.device_array((steps, batch, gate_width), dtype)
        w_t = arrays.to_device("weight_hh", gemm.transposed(p["weight_hh"]), dtype).reshape(-1)
        regularisers = tape.regularisers[direction]
        mask, candidates = regularisers[0], regularisers[3]
        record = _empty(3, dtype) if norms is None else arrays.zeros((steps, batch, hidden), dtype)
        args = (dy, states, saved, dgh, dgx, carry, tape.lengths, w_t, _vectors(kernels, p, hidden, dtype),
                direction) + regularisers + (record,)
        loop = _loop_plan(kernels, "backward_persistent", args, batch, hidden)
        tape.backward_loop = loop
        _run_loop(kernels, "backward", loop, steps, layout.backward_phases, args, reverse=True)
        finish = plan.per_step(1, batch, hidden, dtype.itemsize, "")
        if steps > 0:
            kernels.backward_finish[finish.blocks, finish.threads, 0, finish.shared_bytes](dgh, carry, w_t, mask,
                                                                                          finish.lanes)
        dstates0.append(tuple(carry[k] for k in range(state_count)))
        grads.append(_recurrent_gradients(kernels, dgh.reshape(rows, gate_width), states, saved, mask, candidates,
                                          hidden, dtype))
        if norms is not None:
            norms[direction] = _record_norms(record.copy_to_host(), tape.lengths.copy_to_host())

    dgx_rows = dgx.reshape(rows, directions * gate_width)
    dx = cuda.device_array((steps, batch, inputs), dtype)
    gemm.matmul(dgx_rows, tape.w_ih, dx.reshape(rows, inputs))
    dw_ih = cuda.device_array((directions * gate_width, inputs), dtype)
    gemm.matmul(gemm.transposed(dgx_rows), x.reshape(rows, inputs), dw_ih)
    db_ih = cuda.device_array(directions * gate_width, dtype)
    gemm.column_sums(dgx_rows, db_ih)
    for direction, direction_grads in enumerate(grads):
        block = slice(direction * gate_width, (direction + 1) * gate_width)
        direction_grads["weight_ih"] = dw_ih[block]
        direction_grads["bias_ih"] = db_ih[block]
    return dx, dstates0, grads


def _record_norms(record, lengths):
    """(T, B): the norm over the units of each recorded state gradient, NaN past each sequence's end."""
    valid = np.arange(record.shape[0])[:, None] < lengths[None, :]
    return np.where(valid, np.sqrt(np.sum(np.square(record, dtype=np.float64), axis=-1)), np.nan)


def _recurrent_gradients(kernels, dgh, states, saved, mask, candidates, hidden, dtype):
    """weight_hh, bias_hh and the peepholes from one direction's (T·B, G·H) gate gradients;
    weight_hh saw h ⊙ mask (a (B, H) recurrent-dropout mask, or none when empty) and the peephole
    on o the candidate c (before zoneout) where ``candidates`` holds it."""
    cell, layout = kernels.cell, kernels.layout
    steps, batch = states.shape[1] - 1, states.shape[2]
    rows = steps * batch
    h_prev = states[0, :steps]
    if mask.size:
        h_prev = arrays.times(h_prev, mask)
    h_prev = h_prev.reshape(rows, hidden)
    dw_hh = cuda.device_array((layout.gates * hidden, hidden), dtype)
    if cell.kind == "gru" and not cell.reset_after:
        gemm.matmul(gemm.transposed(dgh[:, :2 * hidden]), h_prev, dw_hh[:2 * hidden])
        gemm.matmul(gemm.transposed(dgh[:, 2 * hidden:]), saved[3].reshape(rows, hidden), dw_hh[2 * hidden:])
    else:
        gemm.matmul(gemm.transposed(dgh), h_prev, dw_hh)
    db_hh = cuda.device_array(layout.gates * hidden, dtype)
    gemm.column_sums(dgh, db_hh)
    grads = {"weight_hh": dw_hh, "bias_hh": db_hh}
    if cell.kind == "lstm" and cell.peephole:
        c_prev = states[1, :steps].reshape(rows, hidden)
        c_new = (candidates if candidates.size else states[1, 1:]).reshape(rows, hidden)
        for name, gate, c in (("weight_ci", 0, c_prev), ("weight_cf", 1, c_prev), ("weight_co", 3, c_new)):
            grads[name] = cuda.device_array(hidden, dtype)
            gemm.column_dots(dgh[:, gate * hidden:(gate + 1) * hidden], c, grads[name])
    return grads
