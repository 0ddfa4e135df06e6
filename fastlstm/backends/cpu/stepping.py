"""One step of inference through a whole layer stack, in one compiled call (:meth:`layer.step`).

A streaming caller runs one time step at a time, often of one sequence: the time loops of
:mod:`.loops` would pack the recurrent weights per call and cost ~80 µs of Python around
their kernels. Here one compiled function (:func:`step_stack`, one per cell and dtype, whatever
the number of layers) runs every layer of one step: each layer's input and recurrent projections, then the cell's
math (its module's ``forward``, compiled once by :class:`.kernels.CellKernels`, with the
phase tables of its :class:`~fastlstm.cells.spec.CellSpec`: the reset-before GRU's second
phase projects r ⊙ h), then zoneout's inference expectation. Nothing is saved for a backward.

The projections read the parameters where they are, row-major (G·H, K): a caller's optimiser
updates them in place between steps, and a packed copy would go stale. :func:`project` takes
the weight rows a tile at a time (8 rows of one sequence, 4 rows of 4 sequences, and the
edges), sums each (row, sequence)'s products in a SIMD vector along K (:func:`_dots`, LLVM
vector IR: masked loads for the last lanes, no scalar loop), and folds a tile's vectors into
its sums with a shuffle tree that adds every sum's lanes in the same order, whatever its tile:
a unit's value never depends on the tiling or on the other sequences of the batch.

The step runs in the calling thread, with no parallel region: measured on the project's 2-core
machines, splitting each layer's units over two threads (a region per layer and phase) made an
LSTM or GRU step at H = 256 30–45 % faster on an idle machine, but beside one busy process 2–7×
slower than one thread (and once 800×, a GRU step of 12 ms: a region waits for its descheduled
thread), and the step is what a latency-bound caller runs. The projections are bound by reading
the weights (75–85 GB/s here: from L2 up to ~1 MiB of weights per layer, then L3). The
parameters arrive as a table of addresses (``addresses``), one argument whatever the stack, so
that a call costs ~0.5 µs of dispatch; the caller keeps the arrays alive.
"""
import sys

import numpy as np
from llvmlite import ir
from numba import carray, njit, types
from numba.core import cgutils
from numba.core.extending import intrinsic, overload

from ...cells.bound import (FOLDED, FORWARD_GATES, FORWARD_PHASES, FORWARD_SOURCES, GATES, ONE, STATES,
                            ZERO_GATES, ZERO_PLANES, ZERO_STATES, ZERO_VECTORS, cell_forward)
from ...cells.spec import RECURRENT_INPUT
from ...rebinding import Unbound, kernel_stamp, rebind
from .activations import FASTMATH, widest_vectors
from .kernels import cached_on_disk, kernels_for
from .tiles import VECTOR_BYTES
from .unit_values import at, gather_gates, gather_planes, scatter_planes, tuple_setitem

# per compiled copy: the phase of :func:`step_phase`, the copies :func:`step_stack` calls, the dtype
PHASE = Unbound("PHASE")
PHASE_0, PHASE_1, PHASE_2 = Unbound("PHASE_0"), Unbound("PHASE_1"), Unbound("PHASE_2")
DTYPE = Unbound("DTYPE")

def _row_sums(builder, vectors, width):
    """Fold ``vectors`` (each one row's partial sums in ``width`` lanes; a power of two of them,
    at most ``width``) into one vector holding every row's sum.

    Returns the vector and ``order``: lane k holds the sum of row ``order[k]``. Each row's lanes
    are added in the same pairs, (j, j + n/2) for n = width, width/2, …, 2, however many rows
    are folded together.
    """
    index = ir.IntType(32)

    def shuffle(a, b, lanes):
        lanes = lanes + [0] * (width - len(lanes))
        return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(index, width), lanes))

    orders = [[row] for row in range(len(vectors))]
    group = width
    while len(vectors) > 1:          # pairs of vectors into one: each group's halves added
        half, groups = group // 2, width // group
        low = [q * group + j + side * width for q in range(groups) for side in (0, 1) for j in range(half)]
        high = [lane + half for lane in low]
        combined, combined_orders = [], []
        for a in range(0, len(vectors), 2):
            first, second = vectors[a], vectors[a + 1]
            combined.append(builder.fadd(shuffle(first, second, low), shuffle(first, second, high)))
            combined_orders.append([row for pair in zip(orders[a], orders[a + 1]) for row in pair])
        vectors, orders, group = combined, combined_orders, half
    vector, order = vectors[0], orders[0]
    while group > 1:                 # the groups' halves within the one vector
        half = group // 2
        low = [q * group + j for q in range(len(order)) for j in range(half)]
        vector = builder.fadd(shuffle(vector, vector, low), shuffle(vector, vector, [lane + half for lane in low]))
        group = half
    return vector, order


def _dots(rows, sequences):
    """An intrinsic ``dots(out, out_row, column, weight, first, source, source_row)``: for i <
    ``rows`` and c < ``sequences``, ``out[out_row + c, column + i] = Σ_k weight[first + i, k] ·
    source[source_row + c, k]``.

    ``weight`` (N, K) and ``source`` (·, K) have contiguous rows; ``out`` too. Each sum's products
    are added in one SIMD vector of partial sums along K (fused multiply-adds, each chunk of K
    loading every weight row and every sequence once; the last K mod lanes by masked loads), then
    folded by :func:`_row_sums`: the same operations for one sum whatever the tile it is in.
    """
    @intrinsic
    def dots(typingctx, out, out_row, column, weight, first, source, source_row):
        if not out.dtype == weight.dtype == source.dtype:
            return None      # a typing error: the kernel reads all three as one dtype
        signature = types.void(out, types.intp, types.intp, weight, types.intp, source, types.intp)

        def codegen(context, builder, signature, arguments):
            out_array, weight_array, source_array = (context.make_array(signature.args[k])(
                context, builder, arguments[k]) for k in (0, 3, 5))
            float_type = context.get_value_type(signature.args[3].dtype)
            itemsize = context.get_abi_sizeof(float_type)
            width = VECTOR_BYTES // itemsize
            vector_type = ir.VectorType(float_type, width)
            vector_pointer = vector_type.as_pointer()
            index_type = arguments[1].type
            byte = ir.IntType(8).as_pointer()

            def constant(value):
                return ir.Constant(index_type, value)

            def row_address(array, row):
                stride = cgutils.unpack_tuple(builder, array.strides)[0]
                return builder.gep(builder.bitcast(array.data, byte), [builder.mul(row, stride)])

            def vector_at(row_start, offset):
                return builder.bitcast(builder.gep(row_start, [offset]), vector_pointer)

            kind = f"v{width}{'f32' if itemsize == 4 else 'f64'}"
            mask_type = ir.VectorType(ir.IntType(1), width)
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector_type, [vector_type] * 3),
                                                 f"llvm.fma.{kind}")
            masked_load = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
                vector_type, [vector_pointer, ir.IntType(32), mask_type, vector_type]), f"llvm.masked.load.{kind}.p0")
            alignment = ir.Constant(ir.IntType(32), itemsize)
            zero = ir.Constant(vector_type, None)

            inner = cgutils.unpack_tuple(builder, weight_array.shape)[1]
            weight_rows = [row_address(weight_array, builder.add(arguments[4], constant(i))) for i in range(rows)]
            source_rows = [row_address(source_array, builder.add(arguments[6], constant(c)))
                           for c in range(sequences)]
            pairs = [(i, c) for c in range(sequences) for i in range(rows)]
            sums = {pair: cgutils.alloca_once_value(builder, zero) for pair in pairs}

            def accumulate(offset, load):
                x = [load(vector_at(source_rows[c], offset)) for c in range(sequences)]
                for i in range(rows):
                    w = load(vector_at(weight_rows[i], offset))
                    for c in range(sequences):
                        builder.store(builder.call(fma, [w, x[c], builder.load(sums[i, c])]), sums[i, c])

            whole = builder.udiv(inner, constant(width))
            with cgutils.for_range(builder, whole) as loop:
                accumulate(builder.mul(loop.index, constant(width * itemsize)),
                           lambda pointer: builder.load(pointer, align=itemsize))
            left = builder.sub(inner, builder.mul(whole, constant(width)))
            with builder.if_then(builder.icmp_unsigned("!=", left, constant(0))):
                lanes = ir.Constant(ir.VectorType(index_type, width), list(range(width)))
                limit = builder.insert_element(ir.Constant(ir.VectorType(index_type, width), ir.Undefined), left,
                                               ir.Constant(ir.IntType(32), 0))
                limit = builder.shuffle_vector(limit, ir.Constant(ir.VectorType(index_type, width), ir.Undefined),
                                               ir.Constant(ir.VectorType(ir.IntType(32), width), None))
                mask = builder.icmp_signed("<", lanes, limit)
                accumulate(builder.mul(builder.mul(whole, constant(width)), constant(itemsize)),
                           lambda pointer: builder.call(masked_load, [pointer, alignment, mask, zero]))

            out_rows = [builder.bitcast(row_address(out_array, builder.add(arguments[1], constant(c))),
                                        float_type.as_pointer()) for c in range(sequences)]
            for start in range(0, len(pairs), width):          # at most ``width`` sums folded together
                chunk = pairs[start:start + width]
                vector, order = _row_sums(builder, [builder.load(sums[pair]) for pair in chunk], width)
                for lane, k in enumerate(order):
                    i, c = chunk[k]
                    target = builder.gep(out_rows[c], [builder.add(arguments[2], constant(i))])
                    builder.store(builder.extract_element(vector, ir.Constant(ir.IntType(32), lane)), target)
            return context.get_dummy_value()
        return signature, codegen
    return dots


# the tiles: 8 weight rows of one sequence (at B = 1, eight independent sums hide the FMA latency),
# 4 rows × 4 sequences (each chunk of a weight row then serves four sequences), and the edges
_ROWS_8, _ROWS_4, _ROWS_2, _ROWS_1 = (_dots(rows, 1) for rows in (8, 4, 2, 1))
_TILE_4x4 = _dots(4, 4)


@njit(cache=True, error_model="numpy", nogil=True)
def project(weight, first, last, source, out):
    """``out[r, j] = weight[j] · source[r]`` for the weight rows j in [first, last), every row r of
    ``source``.

    Parameters
    ----------
    weight : ndarray, shape (N, K), rows contiguous
    first, last : int, the rows projected (their results land in the same columns of ``out``)
    source : ndarray, shape (B, K), rows contiguous
    out : ndarray, shape (B, ≥ last), rows contiguous; written
    """
    batch = source.shape[0]
    tiled = batch // 4 * 4
    j = first
    while j + 8 <= last:   # a group's rows stay in L1 while every sequence passes over them
        for r in range(0, tiled, 4):
            _TILE_4x4(out, r, j, weight, j, source, r)
            _TILE_4x4(out, r, j + 4, weight, j + 4, source, r)
        for r in range(tiled, batch):
            _ROWS_8(out, r, j, weight, j, source, r)
        j += 8
    if j + 4 <= last:
        for r in range(0, tiled, 4):
            _TILE_4x4(out, r, j, weight, j, source, r)
        for r in range(tiled, batch):
            _ROWS_4(out, r, j, weight, j, source, r)
        j += 4
    if j + 2 <= last:
        for r in range(batch):
            _ROWS_2(out, r, j, weight, j, source, r)
        j += 2
    if j < last:
        for r in range(batch):
            _ROWS_1(out, r, j, weight, j, source, r)


# ---------------------------------------------------------------- the parameters, read where they are

@intrinsic
def pointer_to(typingctx, address, like):
    """The integer ``address`` as a pointer to values of ``like``'s dtype (for ``numba.carray``)."""
    signature = types.CPointer(like.dtype)(types.intp, like)

    def codegen(context, builder, signature, arguments):
        return builder.inttoptr(arguments[0], context.get_value_type(signature.return_type))
    return signature, codegen


def vectors_from(addresses, hidden, like, zeros):
    """The tuple of the (H,) arrays at ``addresses[4]``, ``addresses[5]``, …, as many as ``zeros`` has
    entries: one layer's element-wise parameters (the peepholes)."""
    return tuple(addresses[4 + k] for k in range(len(zeros)))


def state_at(h, c, layer, r, u, zeros):
    """``(h[layer, r, u],)``, or ``(h[…], c[…])`` when ``zeros`` has two entries (the LSTM)."""
    return (h[layer, r, u], c[layer, r, u])[:len(zeros)]


def vectors_at(vectors, u, zeros):
    """``(vectors[0][u], vectors[1][u], …)``, as many as ``zeros`` has: the peepholes of unit u."""
    return tuple(vectors[k][u] for k in range(len(zeros)))


def _count(tuple_type):
    return len(tuple_type.types) if hasattr(tuple_type, "types") else tuple_type.count


def _tuple_function(name, parameters, entry, count, empty="zeros"):
    """``name(parameters)`` returning the tuple of ``entry.format(k=k)`` for k < ``count`` (``empty``
    when ``count`` is 0), written out entry by entry: constant indices, no tuple in memory."""
    body = "".join(entry.format(k=k) + ", " for k in range(count))
    namespace = {"at": at, "carray": carray, "pointer_to": pointer_to}
    exec(f"def {name}({parameters}):\n    return ({body})\n" if count else
         f"def {name}({parameters}):\n    return {empty}\n", namespace)
    return namespace[name]


@overload(vectors_from)
def _vectors_from(addresses, hidden, like, zeros):
    return _tuple_function("vectors_from", "addresses, hidden, like, zeros",
                           "carray(pointer_to(addresses[{k} + 4], like), (hidden,))", _count(zeros), "()")


@overload(state_at)
def _state_at(h, c, layer, r, u, zeros):
    if _count(zeros) == 1:
        return lambda h, c, layer, r, u, zeros: (h[at(layer), at(r), at(u)],)
    return lambda h, c, layer, r, u, zeros: (h[at(layer), at(r), at(u)], c[at(layer), at(r), at(u)])


@overload(vectors_at)
def _vectors_at(vectors, u, zeros):
    return _tuple_function("vectors_at", "vectors, u, zeros", "vectors[{k}][at(u)]", _count(zeros))


# ---------------------------------------------------------------- the templates

def step_phase(layer, source, h_in, c_in, weight_ih, weight_hh, bias_ih, bias_hh, vectors, zone, work, planes,
               out):
    """Forward phase ``PHASE`` of one layer's step, every sequence and unit.

    Phase 0 first projects ``source`` (the layer's input, (B, I_l)) onto ``weight_ih``, biases
    folded in, into ``work[0]`` (B, G·H). Each phase projects its source (h, or a plane an
    earlier phase wrote into ``planes`` (K, 1, B, H)) onto its gates' rows of ``weight_hh``
    into ``work[1]``, then runs the cell's math per (sequence, unit); the last phase applies
    zoneout (``zone``: the zoned states' p, in inference; may be empty) and writes the new
    states into ``out`` (S, L, B, H) at ``layer``.

    The unit loop reads one scratch array and writes one (two for a cell with more phases):
    few enough pointers for LLVM's run-time alias checks, so that it vectorises.
    """
    widest_vectors()
    phase = PHASE
    batch, hidden = h_in.shape[1], h_in.shape[2]
    ax, ah = work[0], work[1]
    g0, g1 = FORWARD_GATES[phase]
    if phase == 0:
        project(weight_ih, 0, GATES * hidden, source, ax)
        for r in range(batch):
            for j in range(FOLDED * hidden):
                ax[at(r), at(j)] += bias_ih[at(j)] + bias_hh[at(j)]
            for j in range(FOLDED * hidden, GATES * hidden):
                ax[at(r), at(j)] += bias_ih[at(j)]
    if FORWARD_SOURCES[phase] == RECURRENT_INPUT:
        recurrent = h_in[layer]
    else:
        recurrent = planes[FORWARD_SOURCES[phase], 0]
    project(weight_hh, g0 * hidden, g1 * hidden, recurrent, ah)
    for r in range(batch):
        for j in range(max(g0, FOLDED) * hidden, g1 * hidden):
            ah[at(r), at(j)] += bias_hh[at(j)]
    last = phase == FORWARD_PHASES - 1
    zoned = zone.shape[0]
    keep = ZERO_STATES
    for s in range(STATES):
        if s < zoned:
            keep = tuple_setitem(keep, s, zone[at(s)])
    for r in range(batch):
        for u in range(hidden):
            a_x = gather_gates(ax, r, u, hidden, ZERO_GATES)
            if g1 - g0 == GATES:
                a_h = gather_gates(ah, r, u, hidden, ZERO_GATES)
            else:
                a_h = ZERO_GATES
                for g in range(g0, g1):
                    a_h = tuple_setitem(a_h, g, ah[at(r), at(g * hidden + u)])
            state = state_at(h_in, c_in, layer, r, u, ZERO_STATES)
            saved = gather_planes(planes, 0, r, u, ZERO_PLANES) if phase > 0 else ZERO_PLANES
            new, values = cell_forward(phase, a_x, a_h, state, state[0], vectors_at(vectors, u, ZERO_VECTORS), saved)
            if FORWARD_PHASES > 1:
                scatter_planes(planes, 0, r, u, values)
            if last:
                for s in range(STATES):
                    if s < zoned:
                        new = tuple_setitem(new, s, keep[s] * state[s] + (ONE - keep[s]) * new[s])
                scatter_planes(out, layer, r, u, new)


def step_stack(x, h_in, c_in, addresses, zone, out, y):
    """One step of every layer: the new states into ``out`` (S, L, B, H), the top layer's h into
    ``y`` (B, H).

    Parameters
    ----------
    x : ndarray (B, I), C-contiguous
    h_in, c_in : ndarray (L, B, H), the state before the step (``c_in`` is ``h_in`` but for the LSTM)
    addresses : ndarray (L, 4 + V) int64
        Per layer, where its parameters' values start: ``weight_ih`` (G·H, I_l), ``weight_hh``
        (G·H, H), ``bias_ih``, ``bias_hh`` (G·H,), then the cell's V element-wise (H,) vectors;
        each C-contiguous, of the kernel's dtype (as ``x``, the states, ``out`` and ``y``), alive for
        the call (the caller holds them).
    zone : ndarray (S_z,), zoneout's probability per state, S_z ≤ S (empty: no zoneout)
    out, y : written

    Returns
    -------
    int
        0; 1 when the arrays' shapes disagree (nothing is then written).
    """
    states, layers, batch, hidden = out.shape
    if states != STATES or x.shape[0] != batch or h_in.shape != out.shape[1:] or c_in.shape != out.shape[1:] \
            or y.shape[0] != batch or y.shape[1] != hidden or addresses.shape[0] != layers \
            or addresses.shape[1] != 4 + len(ZERO_VECTORS) or zone.shape[0] > STATES:
        return 1
    width = GATES * hidden
    work = np.empty((2, batch, width), DTYPE)
    planes = np.empty((len(ZERO_PLANES) if FORWARD_PHASES > 1 else 0, 1, batch, hidden), DTYPE)
    for layer in range(layers):
        source = x if layer == 0 else out[0, layer - 1]
        row = addresses[layer]
        weight_ih = carray(pointer_to(row[0], work), (width, source.shape[1]))   # of the layer's dtype
        weight_hh = carray(pointer_to(row[1], work), (width, hidden))
        bias_ih = carray(pointer_to(row[2], work), (width,))
        bias_hh = carray(pointer_to(row[3], work), (width,))
        vectors = vectors_from(row, hidden, work, ZERO_VECTORS)
        PHASE_0(layer, source, h_in, c_in, weight_ih, weight_hh, bias_ih, bias_hh, vectors, zone, work, planes, out)
        if FORWARD_PHASES > 1:
            PHASE_1(layer, source, h_in, c_in, weight_ih, weight_hh, bias_ih, bias_hh, vectors, zone, work, planes,
                    out)
        if FORWARD_PHASES > 2:
            PHASE_2(layer, source, h_in, c_in, weight_ih, weight_hh, bias_ih, bias_hh, vectors, zone, work, planes,
                    out)
    for r in range(batch):
        for u in range(hidden):
            y[at(r), at(u)] = out[0, at(layers - 1), at(r), at(u)]
    return 0


_compiled = {}


def step_kernel(cell, dtype):
    """The compiled :func:`step_stack` of ``cell`` and ``dtype``, built on first use (it compiles on
    its first call, or loads from Numba's on-disk cache).

    Parameters
    ----------
    cell : fastlstm.cells.Cell
    dtype : numpy dtype, float32 or float64

    Returns
    -------
    numba dispatcher
    """
    dtype = np.dtype(dtype)
    key = (cell, dtype)
    if key not in _compiled:
        kernels = kernels_for(cell, dtype)
        suffix = f"{kernels.name}_{kernel_stamp()}"
        options = dict(cache=True, error_model="numpy", nogil=True, fastmath=set(FASTMATH))
        bindings = dict(kernels.constants, DTYPE=dtype.type, project=project)
        phases = [njit(**options)(rebind(step_phase, f"{suffix}_p{phase}", PHASE=phase, **bindings))
                  for phase in range(len(cell.spec.forward))]
        phases += [phases[0]] * (3 - len(phases))     # never called: the cell has fewer phases
        _compiled[key] = njit(**options)(rebind(
            step_stack, suffix, PHASE_0=phases[0], PHASE_1=phases[1], PHASE_2=phases[2], **bindings))
        if not cached_on_disk(_compiled[key]):
            print(f"fastlstm: compiling {cell.label} {dtype.name} step kernel, first use only", file=sys.stderr,
                  flush=True)
    return _compiled[key]
