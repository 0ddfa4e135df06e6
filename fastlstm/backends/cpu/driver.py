"""One layer (every direction) on the CPU: the batched GEMMs around the shared time loops.

Every GEMM runs on Numba's threads (:mod:`.gemm`): the forward's and ``dx``'s on the tile kernel
(:mod:`.tiles`), but the large input projections where MKL runs (:func:`.gemm.on_blas`), a ``dx``
of few inputs and the weight gradients on BLAS held to one thread per Numba thread
(:mod:`.threads`). Time is processed in segments of a few
thousand (step, sequence) rows, so that no array of every step's gate values is held:
forward, one GEMM projects a segment's inputs, then the compiled forward loop runs its
steps; backward runs the segments from the last step back, and after each its rows' ``dx``,
input- and recurrent-weight gradients and bias sums are one GEMM or reduction each. What a
training step keeps from forward to backward is the tape (:class:`LayerTape`: the states,
the cell's saved planes, the input and the in-loop regularisers' arrays).

Variable lengths: the batch is sorted by non-increasing length on entry (and unsorted on
exit), so that at each step the sequences still running are a prefix of the rows and
finished ones cost neither GEMM rows nor gate work. The reverse direction reads each
sequence backwards from its own last valid step, through a per-sequence time index.
"""
import functools
from dataclasses import dataclass, field, replace

import numpy as np

from ... import buffers, tuning
from ...cells.spec import NEW_STATE, RECURRENT_INPUT
from ..protocol import LayerBackward, LayerForward
from .calls import AddressBook, address_of, compile_for, compiling_only_for, type_key
from .gemm import gradient_runner, matmul_runner, narrow, on_blas, product_runner
from .kept import KeepsScratch, kept
from .steps import BackwardArrays, ForwardArrays
from .strategy import choose, held_threads
from .loops import (backward_units_block, backward_units_held_block, forward_units_block, forward_units_held_block,
                    rows_block, run_rows)
from .outputs import write_output
from .regions import block_code, each_block_code
from .threads import single_threaded_blas
from .tiles import pack_runner, pack_transposed_runner, panels_size, walk_address
from .units import backward_packer, forward_packer, packed_size
from .warming import warm_training_call


@dataclass
class DirectionLoop:
    """One direction's in-loop regularisers as its loops read them (sorted batch order, the
    direction's time); empty arrays where a regulariser is off."""

    mask: np.ndarray         # (B, H) recurrent dropout's keep-mask
    inputs: np.ndarray       # (T+1, B, H): what weight_hh saw, h ⊙ mask
    zone: np.ndarray         # (S_z, T, B, H) zoneout's indicators
    candidates: np.ndarray   # (S, T+1, B, H) the cell's new states before zoneout

    @property
    def recurrent_dropout(self):
        return self.mask.shape[0] > 0

    @property
    def zoneout(self):
        return self.zone.shape[0] > 0


@dataclass
class LayerTape:
    """What one layer's forward keeps for its backward (everything in sorted batch order).

    Attributes
    ----------
    kernels : .kernels.CellKernels
    params : list, per direction, dict of ndarray
    x : ndarray (T, B, I), the layer's input
    order : ndarray (B,), the sort applied to the batch, or None
    active : ndarray (T,), how many sequences run at each step
    reverse : tuple, fancy index reading a (T, B, ...) array in per-sequence reverse time (None: one direction)
    states : list, per direction, (S, T+1, B, H): every state from the initial one on
    planes : list, per direction, (K, T, B, H): the cell's saved planes, in the direction's time
    loops : list, per direction, DirectionLoop
    plan : .strategy.Plan, how the forward shared its loops (the backward does the same)
    """

    kernels: object
    params: list
    x: np.ndarray
    order: np.ndarray
    active: np.ndarray
    reverse: tuple
    states: list
    planes: list
    loops: list
    plan: object

    def gate_planes(self):
        """Per direction, the cell's activations (A, T, B, H) in natural time and the caller's
        batch order, float64, NaN past each sequence's end (see :class:`..protocol.LayerTape`)."""
        steps, batch = self.x.shape[:2]
        sorted_lengths = (np.arange(batch)[None, :] < self.active[:, None]).sum(axis=0)
        out = []
        for direction, planes in enumerate(self.planes):
            values = []
            for activation in self.kernels.spec.activations:
                if activation.plane == NEW_STATE:
                    loop = self.loops[direction]
                    source = loop.candidates if loop.candidates.shape[0] else self.states[direction]
                    plane = source[0, 1:]
                else:
                    plane = planes[activation.plane]
                values.append(_unsort(natural_time(plane, sorted_lengths, direction), self.order, axis=1))
            out.append(np.stack(values))
        return out


def reverse_index(steps, batch, lengths):
    """(time, row) index arrays mapping t < n_b to n_b − 1 − t and padded steps to themselves."""
    t = np.arange(steps)[:, None]
    n = np.full(batch, steps) if lengths is None else lengths
    time = np.where(t < n[None, :], n[None, :] - 1 - t, t)
    return time, np.broadcast_to(np.arange(batch)[None, :], (steps, batch))


def natural_time(values, lengths, direction):
    """(T, B, H) in a direction's own time -> natural time (float64), NaN past each sequence's end."""
    steps, batch = values.shape[:2]
    out = (values if direction == 0 else values[reverse_index(steps, batch, lengths)]).astype(np.float64)
    out[np.arange(steps)[:, None] >= np.asarray(lengths)[None, :]] = np.nan
    return out


def _in_direction(array, direction, reverse):
    return np.ascontiguousarray(array) if direction == 0 else np.ascontiguousarray(array[reverse])


def _segment_index(direction, reverse, t0, t1):
    """Index of a (T, B, ...) array giving the direction's steps t0 … t1 − 1 (in its own time)."""
    return slice(t0, t1) if direction == 0 else (reverse[0][t0:t1], reverse[1][t0:t1])


def _segment_steps(batch, gate_width, dtype):
    """Steps per segment: ``segment_rows`` rows, or more when that many fit in ``segment_bytes``."""
    rows = max(tuning.get("segment_rows"), tuning.get("segment_bytes") // (gate_width * np.dtype(dtype).itemsize))
    return max(1, -(-rows // batch))


def _direction_loop(spec, in_the_loop, order, shape, dtype, direction, reverse, keep_tape, allocate):
    """The :class:`DirectionLoop` of one direction: its masks and indicators sorted and in its
    time, room for the recurrent inputs (the caller sets their first step) and for the
    candidate states where needed (``allocate``: buffers.empty, or buffers.zeros where padded
    rows meet zero gradients)."""
    steps, batch, hidden = shape
    mask, inputs = np.empty((0, 0), dtype), np.empty((0, 0, 0), dtype)
    zone, candidates = np.empty((0, 0, 0, 0), dtype), np.empty((0, 0, 0, 0), dtype)
    if in_the_loop is None:
        return DirectionLoop(mask, inputs, zone, candidates)
    if in_the_loop.recurrent_mask is not None:
        mask = in_the_loop.recurrent_mask
        mask = np.ascontiguousarray(mask if order is None else mask[order], dtype=dtype)
        inputs = allocate((steps + 1 if keep_tape else 2, batch, hidden), dtype, aligned=True)
    zoned = [k for k, d in enumerate(in_the_loop.zoneout) if d is not None]
    if zoned:
        parts = []
        for d in in_the_loop.zoneout[:zoned[-1] + 1]:
            d = np.zeros(shape, dtype) if d is None else np.broadcast_to(np.asarray(d, dtype), shape)
            parts.append(_in_direction(d if order is None else d[:, order], direction, reverse))
        zone = parts[0][None] if len(parts) == 1 else np.stack(parts)
        if keep_tape and any(spec.reads_new_state[k] for k in zoned):
            candidates = allocate((len(spec.states), steps + 1, batch, hidden), dtype, aligned=True)
    return DirectionLoop(mask, inputs, zone, candidates)


def forward_layer(kernels, params, x, state, lengths, keep_tape=True, in_the_loop=None):
    """Run one layer, every direction, forward (see :class:`..protocol.Backend`).

    Parameters
    ----------
    kernels : .kernels.CellKernels
    params : list of dict of ndarray, per direction, C-contiguous, of the layer's dtype
    x : ndarray (T, B, I), C-contiguous, of the layer's dtype; kept by reference on the tape
    state : list of tuple of ndarray, per direction, each (B, H)
    lengths : ndarray of int64 (B,), or None
    keep_tape : bool
    in_the_loop : list of ..protocol.InTheLoop, per direction, or None

    Returns
    -------
    LayerForward
        y (T, B, D·H), zero past each sequence's end; the final state per direction; the
        :class:`LayerTape`, or None when ``keep_tape`` is False.
    """
    if keep_tape:
        warm_training_call(kernels, params, x, state, lengths, in_the_loop)
    steps, batch = x.shape[:2]
    hidden = params[0]["weight_hh"].shape[1]
    order = None
    if lengths is not None:
        order = np.argsort(-lengths, kind="stable")
        lengths, x = lengths[order], np.ascontiguousarray(x[:, order])
        state = [tuple(s[order] for s in direction_state) for direction_state in state]
        active = (lengths[None, :] > np.arange(steps)[:, None]).sum(axis=1)
    else:
        active = None
    reverse = reverse_index(steps, batch, lengths) if len(params) > 1 else None

    work = forward_work(kernels, params, x.shape, np.full(steps, batch) if active is None else active,
                         order, reverse, lengths, in_the_loop, keep_tape, keep=True)
    y = buffers.empty((steps, batch, len(params) * hidden), dtype=x.dtype)
    valid = None if lengths is None else active[:, None] > np.arange(batch)[None, :]   # (T, B), sorted order
    finals = run_directions(work, x, state, reverse, y, valid)
    tape = LayerTape(kernels, params, x, order, work.active, reverse, [run.arrays.states for run in work.directions],
                     [run.arrays.tape for run in work.directions], [run.loop for run in work.directions],
                     work.plan) if keep_tape else None
    return LayerForward(_unsort(y, order, axis=1), _unsort_states(finals, order), tape)


def run_directions(work, x, state, reverse, y, valid=None):
    """Run every direction of ``work`` (a :class:`ForwardWork` built for ``x``'s shape) on ``x``.

    Parameters
    ----------
    work : ForwardWork
    x : ndarray (T, B, I), C-contiguous, of the layer's dtype (sorted batch order)
    state : list, per direction, of a tuple of (B, H) arrays, one per state; or None: zeros
    reverse : the reverse direction's time index (:func:`reverse_index`), or None
    y : ndarray (T, B, D·H), receives each direction's h in natural time (0 where ``valid`` is False)
    valid : ndarray of bool (T, B), or None (every step of every sequence)

    Returns
    -------
    list, per direction, of an (S, B, H) view of the work's buffers: the final states
    """
    steps, batch, inputs = x.shape
    x_rows = x.reshape(-1, inputs)
    hidden = work.directions[0].arrays.states.shape[3]
    finals = []
    for direction, run in enumerate(work.directions):
        states = run.arrays.states
        if state is None:
            states[:, 0] = 0
        else:
            for k, s in enumerate(state[direction]):
                states[k, 0] = s
        if run.loop.recurrent_dropout:
            run.loop.inputs[0] = states[0, 0] * run.loop.mask
        for t0, t1, xproj_rows in work.segments:
            run.project(x_rows[t0 * batch:t1 * batch] if direction == 0
                        else x[_segment_index(direction, reverse, t0, t1)].reshape(-1, inputs), xproj_rows)
            run.run(t0, t1)
        write_output(states, None if direction == 0 else reverse[0], valid, y, direction * hidden)
        finals.append(states[:, steps])
    return finals


@dataclass
class DirectionWork:
    """One direction's forward, ready to run but for its initial state and its input.

    Attributes
    ----------
    loop : DirectionLoop
    input_panels : flat ndarray, ``weight_ih`` packed for the input projection (:func:`.tiles.pack_transposed`),
        or, ``input_blas``, ``weight_ih`` as stored, flattened
    bias : (G·H,), the input projection's bias: ``bias_ih`` plus the folded gates' ``bias_hh``
    arrays : .steps.ForwardArrays, states[:, 0] to be set
    run : callable ``run(t0, t1)``, the loop over a segment (:func:`_loop_runner`)
    addresses : callable, the loop's addresses for a compiled caller (:func:`loop_addresses`)
    input_blas : bool, whether the input projection runs on BLAS (:func:`.gemm.on_blas`)
    projections : dict, the input projection's runners by number of rows
    """

    loop: DirectionLoop
    input_panels: np.ndarray
    bias: np.ndarray
    arrays: ForwardArrays
    run: object
    addresses: object
    input_blas: bool
    projections: dict

    def project(self, x_rows, out):
        """out = x_rows @ weight_ihᵀ + bias: a segment's input projection (M, I) -> (M, G·H), its
        split found once per number of rows (:func:`.gemm.matmul_runner`, kept with the setup)."""
        run = _runner(self.projections, x_rows.shape[0],
                      lambda: matmul_runner(x_rows, self.input_panels, out, self.bias, self.input_blas))
        run(x_rows, self.input_panels, out, self.bias)


@dataclass
class ForwardWork:
    """A layer's forward, every direction, ready to run: its plan, the segment's input
    projections (``xproj``, reused segment after segment), the sequences running at each step
    (``active``) and the segments, each (t0, t1, the rows of ``xproj`` its projection fills,
    (t1 − t0)·B × G·H)."""

    plan: object
    xproj: np.ndarray
    active: np.ndarray
    directions: list
    segments: list


@dataclass
class _ForwardDirection:
    """One direction's part of a :class:`_ForwardSetup`: its input projection's bias, what packs
    its weights (``None`` until first packed: ``weight_ih``'s runner,
    :func:`.tiles.pack_transposed_runner`, and the recurrent weights' :class:`.units.Packer`), its
    input projections' runners by number of rows, its phases' addresses and loop for one
    ``variant`` (the arrays' type key and the regularisers in the loop). Every runner takes the
    call's arrays and buffers as arguments: the setup's buffers may be leased anew every call."""

    bias: np.ndarray
    packers: tuple = None
    projections: dict = field(default_factory=dict)
    phase_code: np.ndarray = field(default_factory=lambda: np.zeros(3, np.int64))
    variant: tuple = None
    loop: object = None
    addresses: tuple = None


@dataclass
class _ForwardScratch:
    """A forward's buffers (:class:`.kept.KeepsScratch`): the segment's input projections
    (``xproj``), each block's work, the segments; per direction, ``weight_ih`` packed and the
    recurrent weights' panels."""

    xproj: np.ndarray
    work: np.ndarray
    segments: list
    input_panels: list
    panels: list
    nbytes: int


@dataclass
class _ForwardSetup(KeepsScratch):
    """What a layer's forward of one shape builds the same way every call (:mod:`.kept`): its
    plan, whether its input projections run on BLAS (:func:`.gemm.on_blas`, decided by a full
    segment's), the directions' :class:`_ForwardDirection` and how to build its buffers."""

    plan: object
    input_blas: bool
    directions: list
    new_scratch: object


def _forward_setup(kernels, directions, shape, hidden, dtype, keep_tape):
    spec = kernels.spec
    gate_width = len(spec.gates) * hidden
    plan = choose(spec, shape[1], hidden, directions, dtype.itemsize, keep_tape)
    steps, batch, inputs = shape
    input_blas = on_blas(min(steps, _segment_steps(batch, gate_width, dtype)) * batch, inputs, gate_width, dtype)
    return _ForwardSetup(plan, input_blas, [_ForwardDirection(np.empty(gate_width, dtype)) for _ in range(directions)],
                         functools.partial(_forward_scratch, spec, plan, directions, shape, hidden, dtype, input_blas))


def _forward_scratch(spec, plan, directions, shape, hidden, dtype, input_blas):
    steps, batch, inputs = shape
    gate_width = len(spec.gates) * hidden
    segment = _segment_steps(batch, gate_width, dtype)
    xproj = buffers.empty((max(1, min(segment, steps)), batch, gate_width), dtype)
    work = buffers.empty((plan.blocks, _line_multiple(plan.block_rows * gate_width, dtype)), dtype, aligned=True)
    segments = [(t0, min(steps, t0 + segment), xproj[:min(steps, t0 + segment) - t0].reshape(-1, gate_width))
                for t0 in range(0, steps, segment)]
    input_panels = [None if input_blas
                    else buffers.empty((panels_size(inputs, gate_width, dtype),), dtype, aligned=True)
                    for _ in range(directions)]
    size = packed_size("forward", hidden, plan.unit_bounds, tuple(f.gates for f in spec.forward), dtype)
    panels = [buffers.empty((size,), dtype, aligned=True) for _ in range(directions)]
    weights = panels[0].nbytes + (0 if input_blas else input_panels[0].nbytes) + gate_width * dtype.itemsize
    nbytes = xproj.nbytes + work.nbytes + directions * weights
    return _ForwardScratch(xproj, work, segments, input_panels, panels, nbytes)


def forward_work(kernels, params, shape, active, order, reverse, lengths, in_the_loop, keep_tape, keep=False):
    """The :class:`ForwardWork` of a layer call of ``shape`` (T, B, I): its buffers, the weights
    packed, every direction's arrays and loop; the caller sets the initial states (and, under
    recurrent dropout, the first recurrent inputs). With ``keep``, what every call of the shape
    builds the same way (its plan and addresses; its scratch and packing buffers where they are
    small) is kept for the thread's next call (:mod:`.kept`): the work must then be run before the
    thread's next forward_work, and kept nowhere (its scratch serves that call)."""
    spec = kernels.spec
    steps, batch, inputs = shape
    hidden = params[0]["weight_hh"].shape[1]
    dtype = params[0]["weight_hh"].dtype
    build = functools.partial(_forward_setup, kernels, len(params), shape, hidden, dtype, keep_tape)
    setup = (kept(("forward", kernels, len(params), shape, hidden, keep_tape, tuning.state(), held_threads()), build)
             if keep else build())
    scratch = setup.scratch() if keep else setup.new_scratch()
    plan = setup.plan
    # Padded steps never write the tape; after-loop GEMMs multiply it by zero gradients,
    # which must not meet uninitialised NaNs. Inference reuses one slot for every step.
    allocate = buffers.empty if lengths is None else buffers.zeros
    phases = tuple(f.gates for f in spec.forward)
    folded = spec.folded_gates * hidden
    directions = []
    for direction, (p, own) in enumerate(zip(params, setup.directions)):
        loop = _direction_loop(spec, None if in_the_loop is None else in_the_loop[direction], order,
                               (steps, batch, hidden), dtype, direction, reverse, keep_tape, allocate)
        states = buffers.empty((len(spec.states), steps + 1, batch, hidden), dtype, aligned=True)
        planes = allocate((len(spec.planes), steps if keep_tape else 1, batch, hidden), dtype, aligned=True)
        np.add(p["bias_ih"][:folded], p["bias_hh"][:folded], out=own.bias[:folded])
        own.bias[folded:] = p["bias_ih"][folded:]
        input_panels, panels = scratch.input_panels[direction], scratch.panels[direction]
        if own.packers is None:
            own.packers = (None if setup.input_blas else pack_transposed_runner(p["weight_ih"], input_panels),
                           forward_packer(p["weight_hh"], plan.unit_bounds, phases))
        if setup.input_blas:
            input_panels = p["weight_ih"].reshape(-1)     # BLAS reads it as stored
        else:
            own.packers[0](p["weight_ih"], input_panels)
        own.packers[1].run(p["weight_hh"], panels)
        arrays = ForwardArrays(scratch.xproj, states, planes, panels, own.packers[1].starts, p["bias_hh"],
                               _vectors(spec, p, hidden, dtype), scratch.work, active, plan.unit_bounds, loop.mask,
                               loop.inputs, loop.zone, loop.candidates, own.phase_code, walk_address(dtype))
        key = type_key(arrays)
        variant = (key, loop.recurrent_dropout, loop.zoneout)
        if own.variant != variant:
            own.phase_code[:] = kernels.forward_phase_code(arrays, loop.recurrent_dropout, loop.zoneout, keep_tape,
                                                           key)
            own.loop = kernels.forward_loop(plan.loop_kind, loop.recurrent_dropout, loop.zoneout, keep_tape)
            own.addresses = _runner_addresses(plan, own.loop, arrays, key)
            own.variant = variant
        directions.append(DirectionWork(loop, input_panels, own.bias, arrays,
                                        _loop_runner(plan, own.loop, arrays, key, own.addresses),
                                        functools.partial(loop_addresses, plan, own.loop, arrays, key),
                                        setup.input_blas, own.projections))
    return ForwardWork(plan, scratch.xproj, active, directions, scratch.segments)


def _line_multiple(count, dtype):
    """``count`` values rounded up to whole cache lines (each block's scratch its own lines)."""
    per_line = buffers.ALIGNMENT // np.dtype(dtype).itemsize
    return -(-count // per_line) * per_line


def _vectors(spec, params, hidden, dtype):
    """The cell's element-wise parameters stacked (V, H)."""
    if not spec.vectors:
        return np.empty((0, hidden), dtype)
    return np.stack([params[name] for name in spec.vectors])


def _loop_runner(plan, loop, arrays, key, addresses=None):
    """``run(t0, t1)`` running ``loop`` (its ``plan.loop_kind``) on one direction's ``arrays``
    (``key``: their :func:`.calls.type_key`) over a segment: the units loop, or the rows loop on
    every block of rows (:func:`.loops.rows_block`: one block in this thread, several in one
    parallel region); ``addresses``: :func:`_runner_addresses` of the same, if known."""
    each, code, rows_loop = _runner_addresses(plan, loop, arrays, key) if addresses is None else addresses
    if plan.kind == "units":
        if compiling_only_for() is not None:
            return lambda t0, t1: compile_for(loop, arrays, t0, t1, each, code)
        return lambda t0, t1: loop(arrays, t0, t1, each, code)
    if compiling_only_for() is not None:
        return lambda t0, t1: compile_for(run_rows, each, code, rows_loop, arrays, plan.row_bounds, t0, t1)
    return lambda t0, t1: run_rows(each, code, rows_loop, arrays, plan.row_bounds, t0, t1)


def _runner_addresses(plan, loop, arrays, key):
    """What :func:`_loop_runner` runs ``loop`` with: (each_block_code, block_code, the rows loop's
    address or 0 for the units loop)."""
    return _block_addresses(plan, arrays, key) + (0 if plan.kind == "units" else _rows_loop_address(loop, arrays, key),)


def loop_addresses(plan, loop, arrays, key):
    """``(loop_code, each_block_code, block_code)``: what a compiled caller runs ``loop`` with on
    ``arrays`` (as :func:`_loop_runner`): the units loop's address, or the rows loop's, and the
    region and block function its blocks run on (``each_block_code`` 0: in the calling thread)."""
    each, code, rows_loop = _runner_addresses(plan, loop, arrays, key)
    if plan.kind == "units":
        return _units_loops.get((loop, key), lambda: address_of(loop, arrays, 0, 0, 0, 0)), each, code
    return rows_loop, each, code


def _block_addresses(plan, arrays, key):
    if plan.kind == "units":
        forward = isinstance(arrays, ForwardArrays)
        if plan.held:
            units_block = forward_units_held_block if forward else backward_units_held_block
        else:
            units_block = forward_units_block if forward else backward_units_block
        return each_block_code(), block_code(units_block, arrays, key)
    if plan.blocks == 1:
        return 0, 0
    return each_block_code(), block_code(rows_block, (arrays, plan.row_bounds), ("rows", key))


def _rows_loop_address(loop, arrays, key):
    return _rows_loops.get((loop, key), lambda: address_of(loop, arrays, 0, 0, 0, 0, arrays.work[0]))


_rows_loops = AddressBook()   # the rows loops' addresses, per loop and type of the arrays
_units_loops = AddressBook()  # the units loops'


def _accumulate(total, part):
    for name, value in part.items():
        if name in total:
            total[name] += value
        else:
            total[name] = value


def _input_gradients(dgx, weight_ih, input_panels, x, dx, direction, index, grads, accumulate, runners):
    """A segment's input-side gradients: its dx rows (written by the forward direction,
    added by the reverse one at the natural time of each of its steps, ``index`` from
    :func:`_segment_index`), from ``weight_ih`` by BLAS where dx is :func:`.gemm.narrow`, else
    from ``input_panels`` (``weight_ih`` packed by :func:`.tiles.pack`) by the tile kernel; and
    its share of ``weight_ih`` and ``bias_ih``, written (or, if ``accumulate``, added) into ``grads``.
    ``runners``: the direction's products' runners, found on first use (by segment rows)."""
    inputs, rows = x.shape[2], dgx.reshape(-1, dgx.shape[-1])
    x_rows = x[index].reshape(-1, inputs)
    out = dx[index] if direction == 0 else buffers.empty(dgx.shape[:2] + (inputs,), x.dtype)
    out_rows = out.reshape(-1, inputs)
    _runner(runners, ("dx", rows.shape[0]), lambda: _dx_runner(rows, weight_ih, input_panels, out_rows))(
        rows, weight_ih, input_panels, out_rows)
    if direction != 0:
        dx[index] += out
    weight, bias = grads["weight_ih"], grads["bias_ih"]
    run = _runner(runners, ("weight_ih", rows.shape[0], accumulate),
                  lambda: gradient_runner(rows, 0, x_rows, weight, bias, accumulate))
    run(rows, x_rows, weight, bias)


def _dx_runner(rows, weight_ih, input_panels, out):
    """``run(rows, weight_ih, input_panels, out)``: out = rows @ weight_ih, by BLAS on ``weight_ih``
    as stored where ``input_panels`` is None (a narrow dx), else by the tile kernel on the panels."""
    if input_panels is None:
        run_product = product_runner(rows, weight_ih, out)
        return lambda rows, weight_ih, input_panels, out: run_product(rows, weight_ih, out)
    no_bias = np.empty(0, out.dtype)
    run_panels = matmul_runner(rows, input_panels, out, no_bias)
    return lambda rows, weight_ih, input_panels, out: run_panels(rows, input_panels, out, no_bias)


def _runner(runners, key, build):
    """The runner ``runners`` keeps under ``key``, or ``build()``'s, kept."""
    run = runners.get(key)
    if run is None:
        run = runners[key] = build()
    return run


def _recurrent_gradients(spec, dgh, weight_hh_saw, planes, t0, t1, grads, accumulate, runners):
    """Steps t0 … t1 − 1's ``weight_hh`` and ``bias_hh`` gradients, written (or, if
    ``accumulate``, added) into ``grads``: per forward phase, its gates' Σ_t dah_tᵀ source_t as
    one GEMM (the source: h ⊙ m, or a tape plane). ``runners``: as :func:`_input_gradients`'s."""
    hidden = planes.shape[3]
    rows = dgh.reshape(-1, dgh.shape[-1])
    for number, phase in enumerate(spec.forward):
        source = (weight_hh_saw if phase.source == RECURRENT_INPUT else planes[phase.source])[t0:t1]
        source = source.reshape(-1, hidden)
        gates = slice(phase.gates[0] * hidden, phase.gates[1] * hidden)
        weight, bias = grads["weight_hh"][gates], grads["bias_hh"][gates]
        run = _runner(runners, ("weight_hh", number, rows.shape[0], accumulate),
                      lambda: gradient_runner(rows, gates.start, source, weight, bias, accumulate))
        run(rows, source, weight, bias)


def _vector_gradients(spec, dgx, states, new_states, t0, t1):
    """The element-wise parameters' gradients over steps t0 … t1 − 1 (``CellSpec.vector_gradients``)."""
    hidden = states.shape[3]
    grads = {}
    for v in spec.vector_gradients:
        state = new_states[v.state, t0 + 1:t1 + 1] if v.new else states[v.state, t0:t1]
        grads[spec.vectors[v.vector]] = np.einsum("tbj,tbj->j", dgx[..., v.gate * hidden:(v.gate + 1) * hidden], state)
    return grads


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
    """Backpropagate through one layer's forward (see :class:`..protocol.Backend`).

    Parameters
    ----------
    tape : LayerTape
    dy : ndarray, shape (T, B, D·H); entries past a sequence's end are ignored
    dstate : list of tuple of ndarray, per direction, each (B, H); or None
    norms : ndarray, shape (D, T, B), optional
        Receives ‖∂L/∂h_t‖ of every step in natural time, NaN past each sequence's end.

    Returns
    -------
    LayerBackward
        dx (T, B, I), zero past each sequence's end; the initial state's gradient and the
        parameters' gradients, per direction.
    """
    with single_threaded_blas():
        return _backward_layer(tape, dy, dstate, norms)


@dataclass
class _BackwardDirection:
    """One direction's part of a :class:`_BackwardSetup`: what packs its weights (``None`` until
    first packed: ``weight_ih``'s runner, :func:`.tiles.pack_runner`, or ``None`` where it is not
    packed, and ``weight_hh``'s :class:`.units.Packer`), the runners of its products
    (:func:`_input_gradients`), its phases' addresses and loop for one ``variant`` (the arrays'
    type key, the regularisers, the norms' record). Every runner takes the call's arrays and
    buffers as arguments: the setup's buffers may be leased anew every call."""

    packers: tuple = None
    runners: dict = field(default_factory=dict)
    pointwise_code: np.ndarray = field(default_factory=lambda: np.zeros(3, np.int64))
    projection_code: np.ndarray = field(default_factory=lambda: np.zeros(3, np.int64))
    variant: tuple = None
    loop: object = None
    addresses: tuple = None


@dataclass
class _BackwardScratch:
    """A backward's buffers (:class:`.kept.KeepsScratch`): the segment's gate gradients (``dgx``,
    and ``dgh`` where they differ), each block's work, the staged gradients; per direction, its
    state gradients, ``weight_ih`` packed (``None`` where dx is :func:`.gemm.narrow`: BLAS reads it
    as stored) and ``weight_hh``'s panels."""

    dgx: np.ndarray
    dgh: np.ndarray
    work: np.ndarray
    stage: np.ndarray
    dstates: list
    input_panels: list
    panels: list
    nbytes: int


@dataclass
class _BackwardSetup(KeepsScratch):
    """What a layer's backward of one shape and plan builds the same way every call (:mod:`.kept`):
    its steps per segment, the directions' :class:`_BackwardDirection` and how to build its buffers."""

    plan: object
    segment: int
    directions: list
    new_scratch: object


def _backward_setup(spec, plan, directions, shape, hidden, dtype):
    segment = _segment_steps(shape[1], len(spec.gates) * hidden, dtype)
    return _BackwardSetup(plan, segment, [_BackwardDirection() for _ in range(directions)],
                          functools.partial(_backward_scratch, spec, plan, directions, shape, hidden, dtype, segment))


def _backward_scratch(spec, plan, directions, shape, hidden, dtype, segment):
    steps, batch, inputs = shape
    gate_width = len(spec.gates) * hidden
    segment_shape = (max(1, min(segment, steps)), batch, gate_width)
    dgx = buffers.empty(segment_shape, dtype)
    dgh = buffers.empty(segment_shape, dtype) if spec.recurrent_gradient_differs else dgx
    work = buffers.empty((plan.blocks, _line_multiple(plan.block_rows * hidden, dtype)), dtype, aligned=True)
    staged = any(phase.projects != (0, len(spec.gates)) for phase in spec.backward)
    stage = np.empty((len(spec.backward), batch * gate_width) if staged else (0, 0), dtype)
    dstates = [buffers.empty((2, len(spec.states), batch, hidden), dtype, aligned=True) for _ in range(directions)]
    packed = not narrow(inputs, dtype)        # else dx by BLAS on weight_ih as stored
    input_panels = [buffers.empty((panels_size(gate_width, inputs, dtype),), dtype, aligned=True) if packed else None
                    for _ in range(directions)]
    size = packed_size("backward", hidden, plan.unit_bounds, tuple(phase.projects for phase in spec.backward), dtype)
    panels = [buffers.empty((size,), dtype, aligned=True) for _ in range(directions)]
    own = dstates[0].nbytes + (input_panels[0].nbytes if packed else 0) + panels[0].nbytes
    nbytes = dgx.nbytes + (dgh.nbytes if dgh is not dgx else 0) + work.nbytes + stage.nbytes + directions * own
    return _BackwardScratch(dgx, dgh, work, stage, dstates, input_panels, panels, nbytes)


def _backward_layer(tape, dy, dstate, norms):
    kernels, x, order = tape.kernels, tape.x, tape.order
    spec = kernels.spec
    steps, batch, inputs = x.shape
    hidden = tape.params[0]["weight_hh"].shape[1]
    dtype = x.dtype
    if order is not None:
        dy = dy[:, order]
        dstate = None if dstate is None else [tuple(d[order] for d in ds) for ds in dstate]

    plan = tape.plan
    if plan.held and held_threads() < plan.blocks:
        plan = replace(plan, held=False)   # the threads changed since the forward: same blocks, regions
    # keyed by the plan's id: the setup holds the plan, so no other object takes that id while it is kept
    setup = kept(("backward", kernels, id(plan), len(tape.params), x.shape, hidden, tuning.state()),
                 functools.partial(_backward_setup, spec, plan, len(tape.params), x.shape, hidden, dtype))
    scratch = setup.scratch()
    segment, dgx, dgh, work, stage = setup.segment, scratch.dgx, scratch.dgh, scratch.work, scratch.stage
    dx = buffers.empty((steps, batch, inputs), dtype)
    projects = tuple(phase.projects for phase in spec.backward)
    state_count = len(spec.states)
    dstates0, grads = [], []
    for direction, (p, own) in enumerate(zip(tape.params, setup.directions)):
        states, planes, loop = tape.states[direction], tape.planes[direction], tape.loops[direction]
        dstates, input_panels = scratch.dstates[direction], scratch.input_panels[direction]
        runners = own.runners
        dstates[...] = 0
        dy_direction = _in_direction(dy[..., direction * hidden:(direction + 1) * hidden], direction, tape.reverse)
        new_states = loop.candidates if loop.candidates.shape[0] else states
        weight_hh_saw = loop.inputs if loop.recurrent_dropout else states[0]
        loop_norms = np.full((steps, batch), np.nan) if norms is not None else np.empty((0, 0))
        panels = scratch.panels[direction]
        if own.packers is None:
            own.packers = (None if input_panels is None else pack_runner(p["weight_ih"], 0, inputs, input_panels),
                           backward_packer(p["weight_hh"], plan.unit_bounds, projects))
        own.packers[1].run(p["weight_hh"], panels)
        arrays = BackwardArrays(dy_direction, states, planes, loop.candidates, loop.mask, loop.inputs, loop.zone,
                                _vectors(spec, p, hidden, dtype), tape.active, plan.unit_bounds, dstates, dgx, dgh,
                                panels, own.packers[1].starts, work, stage, loop_norms, own.pointwise_code,
                                own.projection_code, walk_address(dtype))
        key = type_key(arrays)
        variant = (key, loop.recurrent_dropout, loop.zoneout, norms is not None)
        if own.variant != variant:
            own.pointwise_code[:], own.projection_code[:] = kernels.backward_phase_code(
                arrays, loop.recurrent_dropout, loop.zoneout, key)
            own.loop = kernels.backward_loop(plan.loop_kind, loop.recurrent_dropout, loop.zoneout, norms is not None)
            own.addresses = _runner_addresses(plan, own.loop, arrays, key)
            own.variant = variant
        if input_panels is not None:
            own.packers[0](p["weight_ih"], input_panels)
        run = _loop_runner(plan, own.loop, arrays, key, own.addresses)
        direction_grads = {name: np.empty_like(p[name]) for name in ("weight_ih", "bias_ih", "weight_hh", "bias_hh")}
        for t1 in range(steps, 0, -segment) if steps else [0]:  # T = 0: one empty segment, zero gradients
            t0 = max(0, t1 - segment)
            # The loop reads the incoming state gradient from dstates[(t1 - t0) % 2] and leaves
            # the outgoing one in dstates[0].
            if t1 == steps:
                for k in range(state_count):
                    dstates[(t1 - t0) % 2, k] = 0 if dstate is None else dstate[direction][k]
            elif (t1 - t0) % 2:
                dstates[1] = dstates[0]
            dgx_segment, dgh_segment = dgx[:t1 - t0], dgh[:t1 - t0]
            if t1 > t0 and tape.active[t1 - 1] < batch:   # rows past a sequence's end must read zero
                dgx_segment[...] = 0
                dgh_segment[...] = 0
            run(t0, t1)
            _recurrent_gradients(spec, dgh_segment, weight_hh_saw, planes, t0, t1, direction_grads, t1 < steps,
                                 runners)
            _accumulate(direction_grads, _vector_gradients(spec, dgx_segment, states, new_states, t0, t1))
            _input_gradients(dgx_segment, p["weight_ih"], input_panels, x, dx, direction,
                             _segment_index(direction, tape.reverse, t0, t1), direction_grads, t1 < steps, runners)
        grads.append(direction_grads)
        dstates0.append(tuple(dstates[0, k] for k in range(state_count)))
        if norms is not None:
            norms[direction] = _unsort(_in_direction(loop_norms, direction, tape.reverse), order, axis=1)
    return LayerBackward(_unsort(dx, order, axis=1), _unsort_states(dstates0, order), grads)
