"""Inference calls prepared once and reused.

A layer stack's forward builds the same things on every call of a shape: each layer's plan,
buffers, weights packed for the tile kernel, loops' arrays and the addresses of their compiled
code. At small shapes building them, and checking and converting the call's arguments, cost
more than the arithmetic. An inference call (no tape, no lengths, no in-loop regulariser) keeps
them, per thread, for the calls of the last few shapes and parameter arrays, and reuses them
while the parameters hold the values they were packed from: every call digests the
parameters' bytes and compares the digest with the one taken when they were packed
(:mod:`.digest`: each byte read once, a part per thread for large parameters; packing
costs more), so a parameter changed in place is packed again.

A call whose arguments already conform (:meth:`Prepared.conforms`: the NumPy arrays, dtype,
shapes and layout a call of the entry's shape converts its arguments to) is served before the
functional core converts anything (:func:`serve`); any other call is validated and converted
first, then served (:func:`infer`).

A prepared call runs each direction of each layer in one compiled call
(:func:`_run_direction`): its initial state set, each segment's input projection and time loop,
its outputs and final state written, all inside, at the addresses kept for it (a call from
Python passes only the call's own arrays).

A thread's entries hold at most ``prepared_bytes`` together (buffers, packed weights and the
copies; the least recently used entry makes room) and ``prepared_calls`` entries; a call needing
more is built every time. Building costs ~0.9 ms of Python and packing at an LSTM 38 → 249, B 17,
T 115 call (10 MiB: 11 % of its 8 ms, measured), so the budget is set where calls are long enough
for that to vanish.
The buffers of an entry are used by one call at a time: each thread has its own entries, and
nothing a call returns is one of them.
"""
import copy
import functools
import threading
from collections import OrderedDict

import numpy as np
from numba import typeof

from ... import buffers, tuning
from ...placement import HostArrays, is_converted
from .calls import Stored, address_of_value, compile_for, compiled_call, compiling_only_for, value_at
from .digest import Digest
from .driver import forward_work
from .gemm import matmul_split
from .loops import rows
from .outputs import EVERY_STEP, NATURAL_TIME, output_split, output_steps
from .regions import VALUES, all_blocks, block_code, each_block_code, stamped, type_name
from .strategy import held_threads
from .warming import warm_inference_call

_local = threading.local()
_HOST = HostArrays()


class Prepared:
    """A whole stack's inference call of one shape, ready to run.

    Attributes
    ----------
    config : fastlstm.config.LayerConfig
    names : tuple of str, the parameters' names (in the order of the caller's dict)
    arrays : tuple of ndarray, the parameters packed into the runs (the caller's own arrays)
    shapes : tuple of tuple of int, their shapes when packed (an array reshaped in place is not held)
    dtype : numpy.dtype, the layer's
    digest : .digest.Digest of the arrays' bytes when packed, or None (an entry not kept)
    runs : list, per layer, of a list, per direction, of (index in the state's first axis,
        :class:`.calls.Stored` values of :func:`_run_direction`, its compiled copy)
    between : list of ndarray (T, B, D·H), the outputs of the layers below the last, alternately
    no_state : tuple of empty arrays standing for the state when none is given
    output_shape, final_shape : the shapes of a call's ``y`` (T, B, D·H) and final states (S, L·D, B, H)
    pooled : whether ``y`` comes from the pool (:func:`fastlstm.buffers.empty`; else ``numpy.empty``)
    nbytes : int, the bytes it keeps when kept (buffers, packed weights)
    held_blocks : int, the most unit blocks of a loop whose blocks each hold a thread
        (:func:`.loops.forward_units_held`), 0 if none: it is run only while as many run at once
    """

    __slots__ = ("config", "names", "arrays", "shapes", "dtype", "digest", "runs", "between", "no_state",
                 "output_shape", "final_shape", "pooled", "nbytes", "held_blocks")

    def __init__(self, config, names, arrays, runs, between, steps, batch, held_blocks=0):
        self.config, self.names, self.arrays, self.runs, self.between = config, names, arrays, runs, between
        self.shapes = tuple(array.shape for array in arrays)
        self.dtype = np.dtype(config.dtype)
        self.digest = None
        self.no_state = tuple(np.empty((0, 0, 0), self.dtype) for _ in range(config.cell.state_count))
        self.output_shape = (steps, batch, config.output_size)
        self.final_shape = (config.cell.state_count,) + config.state_shape(batch)
        self.pooled = steps * batch * config.output_size * self.dtype.itemsize >= tuning.get("pool_min_bytes")
        self.nbytes = _held_bytes(self)
        self.held_blocks = held_blocks

    def holds(self, params):
        """Whether ``params`` (a dict) holds the entry's arrays, in their shapes and layout, with
        the bytes they were packed from."""
        if self.held_blocks and held_threads() < self.held_blocks:
            return False      # the threads changed since it was built: a held loop's barrier would never open
        dtype = self.dtype
        for name, array, shape in zip(self.names, self.arrays, self.shapes):
            if params.get(name) is not array or array.shape != shape or not is_converted(array, dtype):
                return False
        # each array's memory is where it was: an array's data moves only with its size
        # (ndarray.resize), which its shape would show
        return len(params) == len(self.names) and self.digest.unchanged()

    def keep_digest(self):
        """Take the digest of the parameters' bytes that :meth:`holds` compares theirs with."""
        self.digest = Digest(self.arrays)

    def conforms(self, x, state):
        """Whether ``x`` and ``state`` need no conversion (:func:`~fastlstm.placement.is_converted`:
        C-contiguous NumPy arrays of the layer's dtype), ``x`` of the entry's shape (its key) and
        each state part (L·D, B, H)."""
        dtype = self.dtype
        if not is_converted(x, dtype):
            return False
        if state is None:
            return True
        if self.config.cell.state_count == 1:
            parts = (state,)
        elif type(state) is tuple and len(state) == self.config.cell.state_count:
            parts = state
        else:
            return False
        shape = self.config.state_shape(x.shape[0 if self.config.batch_first else 1])
        return all(is_converted(s, dtype) and s.shape == shape for s in parts)

    def __call__(self, x, state):
        """Run the stack on ``x`` (T, B, I), C-contiguous, of the layer's dtype.

        Parameters
        ----------
        x : ndarray (T, B, I)
        state : tuple of ndarray, each (L·D, B, H), C-contiguous, of the layer's dtype; or None (zeros)

        Returns
        -------
        y : ndarray (T, B, D·H), new
        final : tuple of ndarray, each (L·D, B, H), new (views of one array)
        """
        final = np.empty(self.final_shape, self.dtype)
        y = (buffers.empty if self.pooled else np.empty)(self.output_shape, self.dtype)
        given = state is not None
        state = state if given else self.no_state
        layer_input, last = x, len(self.runs) - 1
        for layer, runs in enumerate(self.runs):
            output = y if layer == last else self.between[layer % 2]
            for index, values, run in runs:
                run(values.address, layer_input, state, output, final, index, given)
            layer_input = output
        return y, tuple(final)

    def compile_runs(self, x, state):
        """In a :func:`.calls.compiling_only` block: compile what a call (arguments as
        :meth:`__call__`'s) and :meth:`holds` would run: a call of a copy whose runs compile."""
        compiling = copy.copy(self)
        compiling.runs = [[(index, values, functools.partial(compile_for, run)) for index, values, run in runs]
                          for runs in self.runs]
        compiling.pooled = False
        compiling(x, state)
        Digest(self.arrays)


def _entries():
    entries = getattr(_local, "entries", None)
    if entries is None:
        entries = _local.entries = OrderedDict()
    return entries


def _key(config, params, shape):
    """An entry's key: the config, the time-major input shape, the parameter arrays in the order
    of the caller's dict, and the tuning knobs. Objects by id: an entry holds the config and the
    arrays, so no other object takes their ids while it lives (and a config is hashed in ~0.5 µs)."""
    return id(config), shape, tuple(map(id, params.values())), tuning.state()


def serve(config, params, x, state):
    """The results of an inference call already prepared whose arguments conform, before any
    conversion; None for any other call (the functional core then validates it and calls
    :func:`infer`).

    Parameters
    ----------
    config : fastlstm.config.LayerConfig
    params : the call's ``params``, unchecked
    x : the call's ``x``, unchecked: served when it is a C-contiguous ndarray of the layer's dtype,
        (T, B, I) or with ``batch_first`` (B, T, I), of a shape prepared before
    state : the call's ``state``, unchecked

    Returns
    -------
    (y, final) as :func:`infer`, ``y`` (B, T, D·H) with ``batch_first``; or None
    """
    if type(x) is not np.ndarray or type(params) is not dict or x.ndim != 3:
        return None
    shape = (x.shape[1], x.shape[0], x.shape[2]) if config.batch_first else x.shape
    entry = _entries().get(_key(config, params, shape))
    if entry is None or not entry.conforms(x, state) or not entry.holds(params):
        return None
    state = state if type(state) is not np.ndarray else (state,)
    if config.batch_first:
        y, final = entry(_HOST.time_major(x), state)
        return _HOST.time_major(y), final
    return entry(x, state)


def infer(config, kernels, params, given, x, state):
    """Run an inference call on validated arguments, prepared once per shape and parameters.

    Parameters
    ----------
    config : fastlstm.config.LayerConfig
    kernels : .kernels.CellKernels of the config's cell and dtype
    params : dict of ndarray, every parameter of the stack, C-contiguous, of the layer's dtype
        (converted; biases of zeros for a layer without them)
    given : the caller's ``params`` dict: an entry is kept only when ``params`` holds its arrays
        themselves (a later call can then be recognised by them)
    x : ndarray (T, B, I), C-contiguous, of the layer's dtype
    state : tuple of ndarray, each (L·D, B, H), or None (zeros)

    Returns
    -------
    y : ndarray (T, B, D·H)
    final : tuple of ndarray, each (L·D, B, H)
        (None in a :func:`.calls.compiling_only` block, which compiles the call's code instead.)
    """
    names = tuple(given)
    if compiling_only_for() is not None:
        _build(config, kernels, params, names, x.shape).compile_runs(x, state)
        return None
    kept = all(params[name] is given[name] for name in names)
    key = _key(config, given, x.shape)
    entries = _entries()
    entry = entries.get(key) if kept else None
    if entry is not None and entry.holds(given):
        entries.move_to_end(key)
        return entry(x, state)
    entries.pop(key, None)
    warm_inference_call(config, kernels, params, x, state)
    entry = _build(config, kernels, params, names, x.shape)
    budget = tuning.get("prepared_bytes")
    if kept and entry.nbytes <= budget:
        entry.keep_digest()
        entries[key] = entry
        # the least recently used first; the new entry, last, fits alone
        while len(entries) > tuning.get("prepared_calls") or sum(e.nbytes for e in entries.values()) > budget:
            entries.popitem(last=False)
    return entry(x, state)


def _build(config, kernels, params, names, shape):
    steps, batch = shape[:2]
    dtype = np.dtype(config.dtype)
    runs, held_blocks = [], 0
    for layer in range(config.num_layers):
        layer_params = [config.layer_parameters(params, layer, d) for d in range(config.directions)]
        inputs = config.layer_input_size(layer)
        work = forward_work(kernels, layer_params, (steps, batch, inputs), np.full(steps, batch), None, None, None,
                            None, False)
        held_blocks = max(held_blocks, work.plan.blocks if work.plan.held else 0)
        layer_runs = []
        for direction, run in enumerate(work.directions):
            values = Stored(_direction_values(work, run, direction, inputs, dtype, config.output_size))
            layer_runs.append((layer * config.directions + direction, values, _run_direction_for(values.value)))
        runs.append(layer_runs)
    between = [buffers.empty((steps, batch, config.output_size), dtype) for _ in range(min(2, config.num_layers - 1))]
    return Prepared(config, names, tuple(params[name] for name in names), runs, between, steps, batch, held_blocks)


# the integers of a direction's run (``codes`` of :func:`_direction_values`)
DIRECTION, ROWS_LOOP, LOOP, EACH, BLOCK, MATMUL, PANEL, OUTPUT, OUTPUT_BLOCKS, EACH_OUTPUT = range(10)
# per segment: its steps t0, t1 and its input projection's blocks (:func:`.gemm.matmul_split`):
# their count, row blocks, column blocks, the region that runs them (0: this thread) and the
# product's code (the tile kernel's walk, or a ``?gemm``)
T0, T1, BLOCKS, ROW_BLOCKS, COLUMN_BLOCKS, EACH_BLOCK, PRODUCT = range(7)


def _direction_values(work, run, direction, inputs, dtype, output_size):
    """What :func:`_run_direction` reads for one direction of a layer's ``work`` (a
    :class:`.driver.ForwardWork`; ``run`` its :class:`.driver.DirectionWork`): (arrays, row bounds,
    input panels, input bias, codes, segments, gathered), ``gathered`` room for a segment's inputs
    in the reverse direction's time (empty forward)."""
    batch, gate_width = work.xproj.shape[1:]
    segment_rows = work.xproj.shape[0] * batch
    block, _, _, _, panel, _ = matmul_split(segment_rows, inputs, gate_width, dtype, run.input_blas)
    segments = []
    for t0, t1, _ in work.segments:
        rows = (t1 - t0) * batch
        _, product, row_blocks, column_blocks, _, parallel = matmul_split(rows, inputs, gate_width, dtype,
                                                                          run.input_blas)
        blocks = row_blocks * column_blocks
        segments.append((t0, t1, blocks, row_blocks, column_blocks, each_block_code() if parallel and blocks > 1 else 0,
                         product))
    gathered = buffers.empty((segment_rows if direction else 0, inputs), dtype)
    # values of the types the projection's blocks are given (a segment's rows of x, or of gathered)
    projection = (np.empty((1, inputs), dtype), run.input_panels, work.xproj.reshape(segment_rows, gate_width),
                  run.bias)
    loop_code, each, code = run.addresses()
    # the direction's h written into its columns of y by blocks of steps (:func:`.outputs.output_steps`),
    # on every thread for a large y
    steps = run.arrays.states.shape[1] - 1
    output = (run.arrays.states, NATURAL_TIME, EVERY_STEP, np.empty((0, 0, 0), dtype))
    output_blocks, parallel = output_split(steps, steps * batch * output_size * dtype.itemsize)
    each_output = each_block_code() if parallel and output_blocks > 1 else 0
    codes = np.array([direction, work.plan.kind != "units", loop_code, each, code, block_code(block, projection),
                      panel, block_code(output_steps, output), output_blocks, each_output], np.int64)
    return run.arrays, work.plan.row_bounds, run.input_panels, run.bias, codes, np.array(segments, np.int64), gathered


call_units_loop = compiled_call(5)   # forward_loop(a, t0, t1, each_block_code, block_code)


def _run_direction(address, x, state, y, final, index, given):
    """One direction of one layer of a prepared call, on the values at ``address``
    (:func:`_direction_values`; a copy compiled per their type binds ``VALUES``).

    Parameters
    ----------
    address : int
    x : ndarray (T, B, I), the layer's input
    state : tuple of ndarray, each (L·D, B, H): the initial state is ``state[s][index]`` if ``given``, else 0
    y : ndarray (T, B, D·H), receives the direction's h in natural time, in its columns
    final : ndarray (S, L·D, B, H), receives the direction's final state at ``index``
    index : int, the layer-direction's place in the state's first axis
    given : bool
    """
    a, row_bounds, input_panels, bias, codes, segments, gathered = value_at(address, VALUES)
    steps, batch, inputs = x.shape
    states = a.states
    hidden = states.shape[3]
    direction = codes[DIRECTION]
    for s in range(states.shape[0]):
        for b in range(batch):
            for u in range(hidden):
                if given:
                    states[s, 0, b, u] = state[s][index, b, u]
                else:
                    states[s, 0, b, u] = 0
    x_rows = x.reshape(steps * batch, inputs)
    xproj = a.xproj.reshape(a.xproj.shape[0] * batch, a.xproj.shape[2])
    for k in range(segments.shape[0]):
        t0, t1 = segments[k, T0], segments[k, T1]
        count = (t1 - t0) * batch
        if direction == 0:
            source = x_rows[t0 * batch:t1 * batch]
        else:   # step t of the reverse direction reads x[T − 1 − t]
            source = gathered[:count]
            for t in range(t0, t1):
                for b in range(batch):
                    for i in range(inputs):
                        source[(t - t0) * batch + b, i] = x[steps - 1 - t, b, i]
        all_blocks(segments[k, EACH_BLOCK], codes[MATMUL], segments[k, BLOCKS],
                   address_of_value((source, input_panels, xproj[:count], bias)), segments[k, PRODUCT],
                   segments[k, ROW_BLOCKS], segments[k, COLUMN_BLOCKS], codes[PANEL], 0, 0, 0)
        if codes[ROWS_LOOP]:
            rows(codes[EACH], codes[BLOCK], codes[LOOP], a, row_bounds, address_of_value((a, row_bounds)), t0, t1)
        else:
            call_units_loop(codes[LOOP], a, t0, t1, codes[EACH], codes[BLOCK])
    # (empty arrays made here: a global one would be a read-only constant, of another type)
    every_step = (np.empty((0, 0), np.int64), np.empty((0, 0), np.bool_))
    all_blocks(codes[EACH_OUTPUT], codes[OUTPUT], codes[OUTPUT_BLOCKS],
               address_of_value((states, every_step[0], every_step[1], y)), direction * hidden, codes[OUTPUT_BLOCKS],
               direction, 0, 0, 0, 0)
    for s in range(states.shape[0]):
        for b in range(batch):
            for u in range(hidden):
                final[s, index, b, u] = states[s, steps, b, u]


_run_directions = {}


def _run_direction_for(values):
    """The compiled :func:`_run_direction` for the type of ``values``, compiled on first use."""
    values_type = typeof(values)
    run = _run_directions.get(values_type)
    if run is None:
        run = _run_directions[values_type] = stamped(_run_direction, "prepared_" + type_name(values_type),
                                                     VALUES=values_type)
    return run


def is_direction_run(dispatcher):
    """Whether ``dispatcher`` is a compiled copy of :func:`_run_direction`."""
    return any(run is dispatcher for run in _run_directions.values())


def _held_bytes(entry):
    """Bytes of the arrays an entry holds (buffers, packed weights), each counted once."""
    seen = {id(array): array.nbytes for array in entry.between}
    for runs in entry.runs:
        for _, values, _ in runs:
            for array in (*values.value[0], *values.value[1:]):
                if hasattr(array, "nbytes"):
                    seen[id(array)] = array.nbytes
    return sum(seen.values())


def clear():
    """Forget this thread's prepared calls (their memory returns when nothing else holds it)."""
    _entries().clear()
