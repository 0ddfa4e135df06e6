"""One layer (every direction) on the GPU: the batched GEMMs around the recurrent loops.

Forward: one GEMM per direction projects every step's input into that direction's columns
of one (T, B, D·G·H) array (the foldable recurrent biases added), then each direction's
recurrent loop (:mod:`.plan` picks persistent, per-step, or per-step GEMMs with a pointwise
kernel, :mod:`.gemm_loop`, by its documented rule). Backward: each direction's loop
runs in reverse and writes its gate gradients twice, in natural time next to the other
direction's for the input side, and in its own time for the recurrent side; then ``dx`` (the
directions' GEMMs accumulated), each direction's ``weight_ih`` gradient, the input biases (one
reduction for both), ``weight_hh``, ``bias_hh`` and the peepholes.

Everything stays on the device; arrays are numba device arrays, C-contiguous, of the
layer's dtype, every one a block of the backend's pool (:mod:`.workspace`): after the first
call of a shape a call allocates nothing. What the kernels derive from the parameters
(``weight_hh`` transposed, the folded biases, the stacked peepholes) is cached while the
parameters are cached copies of host arrays (:mod:`.weights`), made again otherwise. The
final states returned are views of the loop's state array. Lengths are handled in the
kernels: a finished sequence carries its state, its outputs and gradients are zero, and the
reverse direction reads each sequence from its own last valid step.

Recurrent dropout and zoneout run inside the loops (:mod:`.recurrent`): each direction's
mask and indicators are copied in once per call, empty arrays where a regulariser is off,
and the loops that run them are compiled with them (:mod:`.compiled`).
"""
import os
from dataclasses import dataclass

import numpy as np

from ...cells.spec import NEW_STATE, RECURRENT_INPUT
from ..protocol import LayerBackward, LayerForward
from . import arrays, gemm, gemm_loop, plan, weights, workspace
from .compiled import fold_bias
from .recurrent import BackwardDirection, ForwardDirection, InLoop

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
_VECTOR_THREADS = 128


@dataclass
class LayerTape:
    """What one layer's forward keeps for its backward (device arrays).

    Attributes
    ----------
    kernels : .compiled.CellKernels
    params : list, per direction, dict of device arrays
    x : (T, B, I)
    lengths : (B,) int64, T where no lengths were given
    states : list, per direction, (S, T+1, B, H), in the direction's own time
    planes : list, per direction, (K, T, B, H), the cell's saved planes
    forward_loop : plan.LoopPlan
    in_loop : list, per direction, .recurrent.InLoop
    backward_loop : plan.LoopPlan, set by the backward
    """

    kernels: object
    params: list
    x: object
    lengths: object
    states: list
    planes: list
    forward_loop: plan.LoopPlan
    in_loop: list
    backward_loop: plan.LoopPlan = None

    def gate_planes(self):
        """Per direction, the cell's activations (A, T, B, H) in natural time, float64 on the
        host, NaN past each sequence's end (see :class:`..protocol.LayerTape`)."""
        from ..cpu.driver import natural_time

        lengths = self.lengths.copy_to_host()
        out = []
        for direction, planes in enumerate(self.planes):
            values = []
            for activation in self.kernels.spec.activations:
                if activation.plane == NEW_STATE:
                    candidates = self.in_loop[direction].candidates
                    plane = candidates.copy_to_host()[0] if candidates.size else \
                        self.states[direction].copy_to_host()[0, 1:]
                else:
                    plane = planes.copy_to_host()[activation.plane]
                values.append(natural_time(plane, lengths, direction))
            out.append(np.stack(values))
        return out


def _launch_1d(kernel, count, *args):
    if count > 0:
        kernel[-(-count // _VECTOR_THREADS), _VECTOR_THREADS](*args)


def _stacked(parts, dtype):
    """The 1-D device arrays ``parts`` (each (H,)) as the rows of a new (len(parts), H) array."""
    out = workspace.empty((len(parts), parts[0].shape[0]), dtype)
    for row, part in enumerate(parts):
        out[row].copy_to_device(part)
    return out


def _vectors(kernels, p, hidden, dtype):
    """The cell's (V, H) element-wise parameters (the LSTM's peepholes), stacked."""
    names = kernels.spec.vectors
    if not names:
        return _empty(2, dtype)
    parts = tuple(p[name] for name in names)
    return weights.derived("stacked vectors", parts, lambda: _stacked(parts, dtype))


def _folded_bias(spec, p, hidden, dtype):
    """bias_ih with the recurrent biases of the gates that allow it (``spec.folded_gates``) added."""
    gate_width = len(spec.gates) * hidden
    out = workspace.empty(gate_width, dtype)
    _launch_1d(fold_bias, gate_width, p["bias_ih"], p["bias_hh"], spec.folded_gates * hidden, out)
    return out


def _transposed_weight_hh(p, dtype):
    """weight_hhᵀ, (H, G·H), C-contiguous, flattened (the backward loops' layout)."""
    return weights.derived("weight_hh transposed", (p["weight_hh"],),
                           lambda: arrays.to_device("weight_hh", gemm.transposed(p["weight_hh"]), dtype))


def _resident_blocks(kernel, argument_types):
    """``max_resident_blocks`` for :func:`plan.choose`: asks the kernel compiled for the types
    it is launched with (compiled only when the plan asks, i.e. not for the GEMM loop)."""
    if SIMULATED:
        return lambda threads, shared_bytes: None

    def max_resident_blocks(threads, shared_bytes):
        compiled = kernel.compile(argument_types)
        return compiled.max_cooperative_grid_blocks(threads, shared_bytes)
    return max_resident_blocks


def _loop_plan(kernels, loops, which, batch, hidden):
    """The :class:`plan.LoopPlan` of a layer whose persistent kernel is ``which``; the same for
    every call with this batch and width."""
    loop = plan.forced_loop()
    key = (which, batch, hidden, loop)
    if key not in kernels.plans:
        kernels.plans[key] = plan.choose(len(kernels.spec.gates), batch, hidden, kernels.dtype.itemsize,
                                         _resident_blocks(getattr(loops, which), kernels.argument_types(which)),
                                         loop)
    return kernels.plans[key]


def _lengths(lengths, batch, steps):
    """Device (B,) int64 lengths, T for all when none were given; copied in once per distinct
    value (:func:`.arrays.device_lengths`)."""
    return arrays.device_lengths(np.full(batch, steps, np.int64) if lengths is None else lengths)


def _empty(ndim, dtype):
    """A size-0 device array: a regulariser that is off (never read)."""
    return workspace.empty((0,) * ndim, dtype)


def _in_loop(kernels, in_the_loop, steps, batch, hidden, keep_tape):
    """One direction's :class:`.recurrent.InLoop` (empty arrays where a regulariser is off).

    ``in_the_loop``: the direction's :class:`..protocol.InTheLoop` or None. Zoneout's
    indicators are stacked per state (S_z, T, B, H), or (S_z, 1, 1, 1) holding each state's p
    in inference; candidates (S, T, B, H) are kept (training with a tape) where the backward
    reads a zoned state's new value.
    """
    dtype, spec = kernels.dtype, kernels.spec
    mask, zone, candidates = _empty(2, dtype), _empty(4, dtype), _empty(4, dtype)
    if in_the_loop is None:
        return InLoop(mask, zone, candidates)
    if in_the_loop.recurrent_mask is not None:
        mask = arrays.to_device("recurrent mask", in_the_loop.recurrent_mask, dtype)
    zoned = [k for k, d in enumerate(in_the_loop.zoneout) if d is not None]
    if zoned:
        indicators = in_the_loop.zoneout[:zoned[-1] + 1]
        training = any(np.ndim(d) for d in indicators if d is not None)
        shape = (steps, batch, hidden) if training else (1, 1, 1)
        stacked = np.stack([np.zeros(shape, dtype) if d is None else np.broadcast_to(np.asarray(d, dtype), shape)
                            for d in indicators])
        zone = arrays.copied_in(np.ascontiguousarray(stacked))
        if keep_tape and any(spec.reads_new_state[k] for k in zoned):
            # zeros: padded steps are never written, and ∂weight_co multiplies them by zero gradients
            candidates = arrays.zeros((len(spec.states), steps, batch, hidden), dtype)
    return InLoop(mask, zone, candidates)


def _run_loop(loops, which, loop, steps, phases, direction_arrays, reverse=False):
    """Launch a layer's recurrent loop as ``loop`` says: one cooperative launch, or one per phase
    of each step; every launch takes the same ``direction_arrays`` (a
    :class:`.recurrent.ForwardDirection` or :class:`.recurrent.BackwardDirection`)."""
    if steps == 0:
        return
    if loop.kind == "persistent":
        getattr(loops, f"{which}_persistent")[loop.blocks, loop.threads, 0, loop.shared_bytes](
            direction_arrays, loop.units_per_block, loop.lanes)
        return
    step = getattr(loops, f"{which}_step")[loop.blocks, loop.threads, 0, loop.shared_bytes]
    lanes = loop.lanes
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        for phase in range(phases):
            step(direction_arrays, t, phase, lanes)


def _flags(in_loop):
    """(recurrent dropout, zoneout) of a direction's :class:`.recurrent.InLoop`."""
    return in_loop.mask.size > 0, in_loop.zone.size > 0


def forward_layer(kernels, params, x, state, lengths, keep_tape=True, in_the_loop=None):
    """Run one layer, every direction, forward (see :class:`..protocol.Backend`).

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
    in_the_loop : list of ..protocol.InTheLoop, per direction, or None

    Returns
    -------
    LayerForward
        y (T, B, D·H), zero past each sequence's end; the final state per direction, each (B, H);
        the LayerTape, or None.

    Raises
    ------
    RuntimeError
        Before any kernel runs, when the tuning knob ``cuda_step_gemm`` asks for a step GEMM that
        cannot run here (:func:`.gemm_loop.step_gemm`).
    """
    step_gemm = gemm_loop.step_gemm()
    spec, dtype = kernels.spec, kernels.dtype
    steps, batch, inputs = x.shape
    hidden = params[0]["weight_hh"].shape[1]
    gate_width = len(spec.gates) * hidden
    directions = len(params)
    lengths = _lengths(lengths, batch, steps)

    rows = steps * batch
    xproj = workspace.empty((steps, batch, directions * gate_width), dtype)
    xproj_rows = xproj.reshape(rows, directions * gate_width)
    for d, p in enumerate(params):
        bias = weights.derived("folded bias", (p["bias_ih"], p["bias_hh"]),
                               lambda p=p: _folded_bias(spec, p, hidden, dtype))
        gemm.matmul(x.reshape(rows, inputs), gemm.transposed(p["weight_ih"]),
                    xproj_rows[:, d * gate_width:(d + 1) * gate_width], bias=bias)

    y = workspace.empty((steps, batch, directions * hidden), dtype)
    finals, all_states, all_planes, all_in_loop = [], [], [], []
    for direction, p in enumerate(params):
        states = workspace.empty((len(spec.states), steps + 1, batch, hidden), dtype)
        for k, s in enumerate(state[direction]):
            states[k, 0].copy_to_device(s)
        planes = workspace.empty((len(spec.planes), steps if keep_tape else 1, batch, hidden), dtype)
        in_loop = _in_loop(kernels, None if in_the_loop is None else in_the_loop[direction], steps, batch, hidden,
                           keep_tape)
        loops = kernels.loops(*_flags(in_loop))
        loop = _loop_plan(kernels, loops, "forward_persistent", batch, hidden)
        if loop.kind == "gemm":
            projection, masked_state = gemm_loop.forward_workspaces(spec, states, in_loop)
        else:
            projection = masked_state = _empty(2, dtype)
        forward = ForwardDirection(
            xproj=xproj, states=states, tape=planes, y=y, lengths=lengths, weights=p["weight_hh"].reshape(-1),
            vectors=_vectors(kernels, p, hidden, dtype), bias_hh=p["bias_hh"], projection=projection,
            masked_state=masked_state, reg=in_loop, direction=direction, keep=1 if keep_tape else 0)
        if loop.kind == "gemm":
            gemm_loop.forward(loops, loop, spec, p["weight_hh"], forward, step_gemm.matmul)
        else:
            _run_loop(loops, "forward", loop, steps, len(spec.forward), forward)
        finals.append(tuple(states[k, steps] for k in range(states.shape[0])))   # views: the caller copies
        all_states.append(states)
        all_planes.append(planes)
        all_in_loop.append(in_loop)
    if not keep_tape:
        return LayerForward(y, finals, None)
    return LayerForward(y, finals, LayerTape(kernels, params, x, lengths, all_states, all_planes, loop, all_in_loop))


def backward_layer(tape, dy, dstate, norms=None):
    """Backpropagate through one layer's forward (see :class:`..protocol.Backend`).

    Parameters
    ----------
    tape : LayerTape
    dy : device array, shape (T, B, D·H); entries past a sequence's end are ignored
    dstate : list of tuple of device arrays, per direction, each (B, H); or None
    norms : ndarray, shape (D, T, B), optional
        Receives ‖∂L/∂h_t‖ of every step in natural time (host memory), NaN past each end.

    Returns
    -------
    LayerBackward
        dx (T, B, I), zero past each sequence's end; the initial state's gradient and the
        parameters' gradients, per direction.

    Raises
    ------
    RuntimeError
        Before any kernel runs, as :func:`forward_layer`, for ``cuda_step_gemm``.
    """
    step_gemm = gemm_loop.step_gemm()
    kernels, x = tape.kernels, tape.x
    spec, dtype = kernels.spec, kernels.dtype
    steps, batch, inputs = x.shape
    hidden = tape.params[0]["weight_hh"].shape[1]
    gate_width = len(spec.gates) * hidden
    directions = len(tape.params)
    rows = steps * batch

    dgx = workspace.empty((steps, batch, directions * gate_width), dtype)
    dstates0, grads = [], []
    for direction, p in enumerate(tape.params):
        states, planes, in_loop = tape.states[direction], tape.planes[direction], tape.in_loop[direction]
        state_count = states.shape[0]
        carry = arrays.zeros((state_count, batch, hidden), dtype)
        if dstate is not None:
            for k in range(state_count):
                carry[k].copy_to_device(dstate[direction][k])
        dgh = workspace.empty((steps, batch, gate_width), dtype)
        w_t = _transposed_weight_hh(p, dtype).reshape(-1)
        record = _empty(3, dtype) if norms is None else arrays.zeros((steps, batch, hidden), dtype)
        loops = kernels.loops(*_flags(in_loop))
        loop = _loop_plan(kernels, loops, "backward_persistent", batch, hidden)
        tape.backward_loop = loop
        projection = gemm_loop.backward_workspace(states) if loop.kind == "gemm" else _empty(2, dtype)
        backward = BackwardDirection(
            dy=dy, states=states, tape=planes, dgh=dgh, dgx=dgx, carry=carry, lengths=tape.lengths, weights=w_t,
            vectors=_vectors(kernels, p, hidden, dtype), projection=projection, record=record, reg=in_loop,
            direction=direction)
        if loop.kind == "gemm":
            gemm_loop.backward(loops, loop, spec, p["weight_hh"], backward, step_gemm.matmul)
        else:
            _run_loop(loops, "backward", loop, steps, len(spec.backward), backward, reverse=True)
        finish = plan.per_step(1, batch, hidden, dtype.itemsize, "")
        if steps > 0:
            loops.backward_finish[finish.blocks, finish.threads, 0, finish.shared_bytes](backward, finish.lanes)
        dstates0.append(tuple(carry[k] for k in range(state_count)))
        grads.append(_recurrent_gradients(spec, dgh.reshape(rows, gate_width), states, planes, in_loop, hidden,
                                          dtype))
        if norms is not None:
            norms[direction] = _record_norms(record.copy_to_host(), tape.lengths.copy_to_host())

    dgx_rows = dgx.reshape(rows, directions * gate_width)
    dx = workspace.empty((steps, batch, inputs), dtype)
    db_ih = workspace.empty(directions * gate_width, dtype)
    gemm.column_sums(dgx_rows, db_ih)
    for direction, direction_grads in enumerate(grads):
        columns = dgx_rows[:, direction * gate_width:(direction + 1) * gate_width]
        gemm.matmul(columns, tape.params[direction]["weight_ih"], dx.reshape(rows, inputs), accumulate=direction > 0)
        direction_grads["weight_ih"] = workspace.empty((gate_width, inputs), dtype)
        gemm.matmul(gemm.transposed(columns), x.reshape(rows, inputs), direction_grads["weight_ih"])
        direction_grads["bias_ih"] = db_ih[direction * gate_width:(direction + 1) * gate_width]
    return LayerBackward(dx, dstates0, grads)


def _record_norms(record, lengths):
    """(T, B): the norm over the units of each recorded state gradient, NaN past each sequence's end."""
    valid = np.arange(record.shape[0])[:, None] < lengths[None, :]
    return np.where(valid, np.sqrt(np.sum(np.square(record, dtype=np.float64), axis=-1)), np.nan)


def _recurrent_gradients(spec, dgh, states, planes, in_loop, hidden, dtype):
    """weight_hh, bias_hh and the element-wise vectors' gradients from one direction's (T·B, G·H)
    recurrent-side gate gradients: per forward phase, its gates' rows of weight_hh from what they
    saw (h ⊙ mask, or a tape plane); the vectors from the spec's gates and states (the new state
    before zoneout where ``in_loop.candidates`` holds it)."""
    steps, batch = states.shape[1] - 1, states.shape[2]
    rows = steps * batch
    h_prev = states[0, :steps]
    if in_loop.mask.size:
        h_prev = arrays.times(h_prev, in_loop.mask)
    h_prev = h_prev.reshape(rows, hidden)
    dw_hh = workspace.empty((len(spec.gates) * hidden, hidden), dtype)
    for phase in spec.forward:
        g0, g1 = phase.gates
        source = h_prev if phase.source == RECURRENT_INPUT else planes[phase.source].reshape(rows, hidden)
        gemm.matmul(gemm.transposed(dgh[:, g0 * hidden:g1 * hidden]), source, dw_hh[g0 * hidden:g1 * hidden])
    db_hh = workspace.empty(len(spec.gates) * hidden, dtype)
    gemm.column_sums(dgh, db_hh)
    grads = {"weight_hh": dw_hh, "bias_hh": db_hh}
    # the vectors' gates are ones whose two sides' gradients coincide (spec.recurrent_gradient_differs
    # is False for the LSTM): dgh serves for dax
    new_states = in_loop.candidates if in_loop.candidates.size else None
    for v in spec.vector_gradients:
        if v.new:
            state = (new_states[v.state] if new_states is not None else states[v.state, 1:]).reshape(rows, hidden)
        else:
            state = states[v.state, :steps].reshape(rows, hidden)
        name = spec.vectors[v.vector]
        grads[name] = workspace.empty(hidden, dtype)
        gemm.column_dots(dgh[:, v.gate * hidden:(v.gate + 1) * hidden], state, grads[name])
    return grads
