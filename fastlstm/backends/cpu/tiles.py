"""The register-blocked matrix product every projection of the CPU forward runs.

:func:`walk` computes ``c = a @ b`` (``+ bias``) for an ``a`` of rows
(a block's batch rows at a step, or a segment's inputs) and a ``b`` laid out once per call in
panels (:func:`pack`, :func:`pack_transposed`): ``weight_hhᵀ`` and ``weight_ihᵀ`` forward,
``weight_hh`` and ``weight_ih`` as stored backward. It is the micro-kernel of a GEMM: a tile of up
to ``TILE_ROWS`` rows × ``TILE_VECTORS`` SIMD vectors of columns is summed in registers over K,
each step loading one row of the panel and broadcasting one value of each of ``a``'s rows; no
packing per product, no horizontal sums, and the same code for one row as for many. Rows are taken
in chunks of ``CHUNK_ROWS`` so that a chunk of ``a`` stays in cache while every panel passes over
it, and K in parts of ``DEPTH`` to 2·``DEPTH`` values so that a panel's part stays in L1 while
every tile of the chunk passes over it (a tile adds each part to the sums the last part left in
``c``: the same FMAs in the same order, so the same bits as one pass over the whole of K). The
kernels call it through its address (:func:`product_at`, :func:`product_bias_at`, :mod:`.calls`):
it is compiled once, alone, and cached; :func:`product` and :func:`product_bias` call it from
Python.

Numba's loops cannot express it: LLVM neither keeps a tile of sums written as Numba scalars in
vector registers (measured: scalar FMAs, 4–7 GFLOP/s on one core) nor vectorises a tile held
in an array. So each tile is written in LLVM vector IR (:func:`_tile`, a Numba intrinsic),
for float32 and float64 alike, with masked stores for the columns past the last one.
Measured on one core of the project's AMD EPYC machines (``bench/projection_kernels.py``):
98–113 GFLOP/s float32 from 4 rows at K = 16 to 1024 (OpenBLAS 18–92 at the same shapes, MKL's
packed GEMM 45–95; OpenBLAS's own sgemm peak on this core is 91–100), 45 at one row, where each
step streams the weights. On one core of an Intel Xeon (Sapphire Rapids class), with the 6-row
tiles and the parts of K: 141–184 GFLOP/s at a small batch's recurrent products (7–17 rows, K
86–280, N 344–1120), where 4-row tiles over the whole of K ran at 68–158 (the panel read from L2
once per tile instead of from L1).
"""
import numba
import numpy as np
from llvmlite import binding, ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .calls import COMPILED_CALLERS_ONLY, AddressBook, address_of, compiled_call, compiling_only_for, value_at
from .regions import VALUES, blocks_runner
from .unit_values import at


def _vector_bytes():
    """The widest SIMD registers the host's LLVM target has: 64 (AVX-512), 32 (AVX2) or 16 bytes."""
    features = binding.get_host_cpu_features()
    if features.get("avx512f"):
        return 64
    if features.get("avx2") or features.get("avx"):
        return 32
    return 16


VECTOR_BYTES = _vector_bytes()
# rows × vectors of running sums: 24 registers of AVX-512's 32, 12 of AVX2's 16, with room for
# the tile's row of b and the broadcast value of a
TILE_ROWS = 6
TILE_VECTORS = 4 if VECTOR_BYTES == 64 else 2
# rows of a product taken at a time: their rows of ``a`` (64 × K values) stay in L2 while every
# panel of ``b`` passes over them
CHUNK_ROWS = 64
# the fewest values of the inner dimension taken at a time (at most twice as many): a panel's part
# (16–32 KiB of float32 or float64 with AVX-512) stays in L1 while every tile of a chunk's rows
# passes over it
DEPTH = 64


def lanes(dtype):
    """Values of ``dtype`` in one SIMD vector."""
    return VECTOR_BYTES // np.dtype(dtype).itemsize


def _splat(builder, value, vector_type):
    """``value`` in every lane of a vector."""
    single = builder.insert_element(ir.Constant(vector_type, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(single, ir.Constant(vector_type, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), vector_type.count), None))


def _tile(rows, vectors, masked):
    """An intrinsic ``tile(c, i0, j0, a, b, start, stride, columns, bias, with_bias, accumulate)``: for
    i < ``rows`` and j < ``vectors`` SIMD vectors of columns, ``c[i0 + i, j0 + j] = s + Σ_k a[i0 + i,
    k] · b[start + k·stride + j]``, where s is ``c[i0 + i, j0 + j]`` itself if ``accumulate``, else
    ``bias[j0 + j]`` if ``with_bias``, else 0 (a sum over k split in parts, one call each, is the
    same FMAs in the same order as one call over the whole: the same bits).

    ``a`` and ``c`` are 2-D arrays of one float dtype, each row contiguous (unit stride along
    the last axis; the row strides are read from the arrays); ``b`` is flat and contiguous.
    ``masked``: only the first ``columns`` columns of ``c`` are written (the last vectors' other
    lanes are masked off; ``b`` holds every lane of the vectors, padded); else ``columns`` is
    ignored.
    """
    @intrinsic
    def tile(typingctx, c, i0, j0, a, b, start, stride, columns, bias, with_bias, accumulate):
        signature = types.void(c, types.intp, types.intp, a, b, types.intp, types.intp, types.intp, bias, types.boolean,
                               types.boolean)

        def codegen(context, builder, signature, arguments):
            c_array, a_array, b_array = (context.make_array(signature.args[k])(context, builder, arguments[k])
                                         for k in (0, 3, 4))
            row0, column0, b_start, b_stride, columns_left = (arguments[k] for k in (1, 2, 5, 6, 7))
            float_type = context.get_value_type(signature.args[0].dtype)
            itemsize = context.get_abi_sizeof(float_type)
            width = VECTOR_BYTES // itemsize
            vector_type = ir.VectorType(float_type, width)
            vector_pointer = vector_type.as_pointer()
            index_type = row0.type
            byte = ir.IntType(8).as_pointer()

            def constant(value):
                return ir.Constant(index_type, value)

            def address(array, row, column):
                """Byte address of array[row, column] (row, column: index values)."""
                row_stride = cgutils.unpack_tuple(builder, array.strides)[0]
                offset = builder.add(builder.mul(row, row_stride), builder.mul(column, constant(itemsize)))
                return builder.gep(builder.bitcast(array.data, byte), [offset])

            mask_type = ir.VectorType(ir.IntType(1), width)
            masks = []
            if masked:
                index_vector = ir.VectorType(index_type, width)
                left = _splat(builder, columns_left, index_vector)
                for v in range(vectors):
                    lane = ir.Constant(index_vector, [v * width + lane for lane in range(width)])
                    masks.append(builder.icmp_signed("<", lane, left))
            alignment = ir.Constant(ir.IntType(32), itemsize)
            zero = ir.Constant(vector_type, None)
            kind = f"v{width}{'f32' if itemsize == 4 else 'f64'}"
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector_type, [vector_type] * 3),
                                                 f"llvm.fma.{kind}")
            masked_load = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
                vector_type, [vector_pointer, ir.IntType(32), mask_type, vector_type]), f"llvm.masked.load.{kind}.p0")
            masked_store = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
                ir.VoidType(), [vector_type, vector_pointer, ir.IntType(32), mask_type]), f"llvm.masked.store.{kind}.p0")

            # one row's whole tile runs two sets of sums over alternate k: its four FMAs per k would
            # otherwise each wait for their sum's previous one (the weights' stream at B = 1)
            sets = 2 if rows == 1 and not masked else 1
            sums = [[[cgutils.alloca_once_value(builder, zero) for v in range(vectors)] for _ in range(rows)]
                    for s in range(sets)]
            with builder.if_then(arguments[9]):
                bias_array = context.make_array(signature.args[8])(context, builder, arguments[8])
                for v in range(vectors):
                    pointer = builder.bitcast(builder.gep(bias_array.data, [builder.add(column0, constant(v * width))]),
                                              vector_pointer)
                    value = (builder.call(masked_load, [pointer, alignment, masks[v], zero]) if masked
                             else builder.load(pointer, align=itemsize))
                    for i in range(rows):
                        builder.store(value, sums[0][i][v])
            with builder.if_then(arguments[10]):
                for i in range(rows):
                    for v in range(vectors):
                        pointer = builder.bitcast(address(c_array, builder.add(row0, constant(i)),
                                                          builder.add(column0, constant(v * width))), vector_pointer)
                        value = (builder.call(masked_load, [pointer, alignment, masks[v], zero]) if masked
                                 else builder.load(pointer, align=itemsize))
                        builder.store(value, sums[0][i][v])
            inner = cgutils.unpack_tuple(builder, a_array.shape)[1]
            a_rows = [address(a_array, builder.add(row0, constant(i)), constant(0)) for i in range(rows)]
            b_first = builder.gep(builder.bitcast(b_array.data, byte), [builder.mul(b_start, constant(itemsize))])
            b_row_bytes = builder.mul(b_stride, constant(itemsize))

            def step(k, into):
                b_row = builder.gep(b_first, [builder.mul(k, b_row_bytes)])
                b_values = [builder.load(builder.bitcast(builder.gep(b_row, [constant(v * width * itemsize)]),
                                                         vector_pointer), align=itemsize) for v in range(vectors)]
                a_offset = builder.mul(k, constant(itemsize))
                for i in range(rows):
                    value = builder.load(builder.bitcast(builder.gep(a_rows[i], [a_offset]), float_type.as_pointer()))
                    broadcast = _splat(builder, value, vector_type)
                    for v in range(vectors):
                        builder.store(builder.call(fma, [broadcast, b_values[v], builder.load(into[i][v])]), into[i][v])

            with cgutils.for_range(builder, builder.udiv(inner, constant(sets))) as loop:
                for s in range(sets):
                    step(builder.add(builder.mul(loop.index, constant(sets)), constant(s)), sums[s])
            if sets == 2:
                with builder.if_then(builder.icmp_unsigned("!=", builder.urem(inner, constant(2)), constant(0))):
                    step(builder.sub(inner, constant(1)), sums[0])
                for i in range(rows):
                    for v in range(vectors):
                        builder.store(builder.fadd(builder.load(sums[0][i][v]), builder.load(sums[1][i][v])),
                                      sums[0][i][v])
            sums = sums[0]
            for i in range(rows):
                for v in range(vectors):
                    pointer = builder.bitcast(address(c_array, builder.add(row0, constant(i)),
                                                      builder.add(column0, constant(v * width))), vector_pointer)
                    total = builder.load(sums[i][v])
                    if masked:
                        builder.call(masked_store, [total, pointer, alignment, masks[v]])
                    else:
                        builder.store(total, pointer, align=itemsize)
            return context.get_dummy_value()
        return signature, codegen
    return tile


# The tiles, one intrinsic per shape. A chunk's rows are taken 6 at a time (TILE_ROWS) until 7
# or fewer are left (not 6), then 7 as 4 + 3 and the others in one tile: a one-row tile is bound
# by reading its panel (4 bytes per 2 flops) and costs nearly what a tile of 4 rows does, so it
# is left for a chunk of one row. The last panel (the columns past whole panels) is read by
# masked tiles of the fewest vectors (1, 2 or all TILE_VECTORS) that cover its columns, 4 rows
# at a time.
assert TILE_ROWS == 6
full_6, full_5, full_4, full_3, full_2, full_1 = (_tile(rows, TILE_VECTORS, False) for rows in (6, 5, 4, 3, 2, 1))
tail_4_1, tail_3_1, tail_2_1, tail_1_1 = (_tile(rows, 1, True) for rows in (4, 3, 2, 1))
tail_4_2, tail_3_2, tail_2_2, tail_1_2 = (_tile(rows, 2, True) for rows in (4, 3, 2, 1))
tail_4_all, tail_3_all, tail_2_all, tail_1_all = (_tile(rows, TILE_VECTORS, True) for rows in (4, 3, 2, 1))
_TAIL_VECTOR_COUNTS = tuple(sorted({1, 2, TILE_VECTORS}))


@intrinsic
def lanes_of(typingctx, array):
    """The SIMD lanes of ``array``'s dtype (a compile-time constant)."""
    count = VECTOR_BYTES // np.dtype(str(array.dtype)).itemsize

    def codegen(context, builder, signature, arguments):
        return context.get_constant(types.intp, count)
    return types.intp(array), codegen


@njit(cache=True, error_model="numpy", **COMPILED_CALLERS_ONLY)
def walk(a, panels, c, bias):
    """c = a @ b (+ bias), b packed by :func:`pack`: ``c`` walked in chunks of ``CHUNK_ROWS`` rows
    (whose rows of ``a`` stay in cache while every panel passes over them), each chunk in tiles.

    Parameters
    ----------
    a : ndarray (M, K), layout 'A', rows contiguous
    panels : ndarray, flat
    c : ndarray (M, N), layout 'A', rows contiguous; written
    bias : ndarray (N,), or empty: none
    """
    rows, columns = c.shape
    with_bias = bias.shape[0] > 0
    inner = a.shape[1]
    width = lanes_of(c)
    panel = TILE_VECTORS * width
    whole = columns // panel * panel
    left = columns - whole
    needed = (left + width - 1) // width
    # the tiles' ladders are written out: the same ladders as helpers inlined by Numba (each tile
    # an intrinsic, so no helper could take one as an argument) compiled 0.6 s longer
    for r0 in range(0, rows, CHUNK_ROWS):
        r1 = min(rows, r0 + CHUNK_ROWS)
        # K in parts of DEPTH to 2·DEPTH values; in one where one tile covers the chunk's rows
        parts = 1 if r1 - r0 <= 5 else max(1, inner // DEPTH)
        for j0 in range(0, whole, panel):
            for part in range(parts):
                k0, k1 = part * inner // parts, (part + 1) * inner // parts
                rows_part = a[:, k0:k1]
                start = j0 * inner + k0 * panel
                fresh, later = with_bias and k0 == 0, k0 > 0
                i0 = r0
                while r1 - i0 >= 8 or r1 - i0 == 6:
                    full_6(c, i0, j0, rows_part, panels, start, panel, 0, bias, fresh, later)
                    i0 += 6
                if r1 - i0 == 7:
                    full_4(c, i0, j0, rows_part, panels, start, panel, 0, bias, fresh, later)
                    i0 += 4
                if r1 - i0 == 5:
                    full_5(c, i0, j0, rows_part, panels, start, panel, 0, bias, fresh, later)
                elif r1 - i0 == 4:
                    full_4(c, i0, j0, rows_part, panels, start, panel, 0, bias, fresh, later)
                elif r1 - i0 == 3:
                    full_3(c, i0, j0, rows_part, panels, start, panel, 0, bias, fresh, later)
                elif r1 - i0 == 2:
                    full_2(c, i0, j0, rows_part, panels, start, panel, 0, bias, fresh, later)
                elif r1 - i0 == 1:
                    full_1(c, i0, j0, rows_part, panels, start, panel, 0, bias, fresh, later)
        if left > 0:
            # the last panel's stride is panel_width(left): as many vectors as its tiles read
            stride = width if needed <= 1 else (2 * width if needed <= 2 else panel)
            for part in range(parts):
                k0, k1 = part * inner // parts, (part + 1) * inner // parts
                rows_part = a[:, k0:k1]
                start = whole * inner + k0 * stride
                fresh, later = with_bias and k0 == 0, k0 > 0
                i0 = r0
                while r1 - i0 >= 6 or r1 - i0 == 4:
                    if needed <= 1:
                        tail_4_1(c, i0, whole, rows_part, panels, start, stride, left, bias, fresh, later)
                    elif needed <= 2:
                        tail_4_2(c, i0, whole, rows_part, panels, start, stride, left, bias, fresh, later)
                    else:
                        tail_4_all(c, i0, whole, rows_part, panels, start, stride, left, bias, fresh, later)
                    i0 += 4
                if r1 - i0 == 5 or r1 - i0 == 3:
                    if needed <= 1:
                        tail_3_1(c, i0, whole, rows_part, panels, start, stride, left, bias, fresh, later)
                    elif needed <= 2:
                        tail_3_2(c, i0, whole, rows_part, panels, start, stride, left, bias, fresh, later)
                    else:
                        tail_3_all(c, i0, whole, rows_part, panels, start, stride, left, bias, fresh, later)
                    i0 += 3
                if r1 - i0 == 2:
                    if needed <= 1:
                        tail_2_1(c, i0, whole, rows_part, panels, start, stride, left, bias, fresh, later)
                    elif needed <= 2:
                        tail_2_2(c, i0, whole, rows_part, panels, start, stride, left, bias, fresh, later)
                    else:
                        tail_2_all(c, i0, whole, rows_part, panels, start, stride, left, bias, fresh, later)
                    i0 += 2
                if r1 - i0 == 1:
                    if needed <= 1:
                        tail_1_1(c, i0, whole, rows_part, panels, start, stride, left, bias, fresh, later)
                    elif needed <= 2:
                        tail_1_2(c, i0, whole, rows_part, panels, start, stride, left, bias, fresh, later)
                    else:
                        tail_1_all(c, i0, whole, rows_part, panels, start, stride, left, bias, fresh, later)


def _panel_width(count, width):
    """The stride of a panel holding ``count`` columns (at most a whole panel's), ``width``
    lanes a vector: whole vectors, as many as the tile that reads it (:data:`_TAIL_VECTOR_COUNTS`)."""
    needed = -(-count // width)
    for vectors in _TAIL_VECTOR_COUNTS:
        if needed <= vectors:
            return vectors * width
    return TILE_VECTORS * width


panel_width = njit(inline="always")(_panel_width)


def panel_columns(dtype):
    """Columns of one whole panel of ``dtype`` (a product may be split between whole panels)."""
    return TILE_VECTORS * lanes(dtype)


def panels_size(inner, columns, dtype):
    """Values :func:`pack` writes for a (``inner``, ``columns``) matrix of ``dtype``."""
    width = lanes(dtype)
    panel = TILE_VECTORS * width
    whole = columns // panel * panel
    return inner * (whole + (_panel_width(columns - whole, width) if columns > whole else 0))


def pack(matrix, c0, c1, panels):
    """Lay columns [c0, c1) of ``matrix`` (K, N), C-contiguous, out as :func:`product` reads
    them: panels of ``TILE_VECTORS`` vectors of columns, each (K, panel width) and contiguous,
    one after the other; the last panel only as many whole vectors wide as the columns left
    need, its lanes past the last column zero. Large matrices' panels on every thread.

    Parameters
    ----------
    matrix : ndarray, shape (K, N), C-contiguous
    c0, c1 : int, the columns packed
    panels : ndarray, flat, at least :func:`panels_size` (K, c1 − c0) values; written
    """
    pack_runner(matrix, c0, c1, panels)(matrix, panels)


def pack_runner(matrix, c0, c1, panels):
    """``run(matrix, panels)``: :func:`pack` of columns [c0, c1) on any ``matrix`` and ``panels``
    of the shapes and types of these, its blocks and compiled code found once."""
    count = -(-(c1 - c0) // panel_columns(matrix.dtype))
    run = blocks_runner(_panel, count, (matrix, panels), c0, c1,
                        parallel=matrix.shape[0] * (c1 - c0) >= PARALLEL_PACK_VALUES)
    return lambda matrix, panels: run((matrix, panels))


def _panel(block, address, c0, c1, i2, i3, i4, i5, i6):
    """Block function (:mod:`.regions`) of :func:`pack`: panel ``block``."""
    matrix, panels = value_at(address, VALUES)
    inner, columns = matrix.shape
    source = matrix.ravel()
    width = lanes_of(panels)
    panel = TILE_VECTORS * width
    j0 = c0 + block * panel
    start = block * panel * inner                  # every panel before this one is whole
    count = min(panel, c1 - j0)
    stride = panel_width(count, width)
    for k in range(inner):
        row, first = start + k * stride, k * columns + j0
        for j in range(count):
            panels[at(row + j)] = source[at(first + j)]
        for j in range(count, stride):
            panels[at(row + j)] = 0


def _transpose_block():
    """An intrinsic ``transpose_block(source, s, s_stride, target, t, t_stride)``: the square
    block of one SIMD vector's lanes (L) ``target[t + j·t_stride + i] = source[s + i·s_stride + j]``
    for i, j < L, both flat and contiguous: L rows loaded as vectors, log2 L rounds of
    two-vector shuffles (each swapping the off-diagonal halves of blocks of half the size),
    L rows stored."""
    @intrinsic
    def transpose_block(typingctx, source, s, s_stride, target, t, t_stride):
        signature = types.void(source, types.intp, types.intp, target, types.intp, types.intp)

        def codegen(context, builder, signature, arguments):
            source_array = context.make_array(signature.args[0])(context, builder, arguments[0])
            target_array = context.make_array(signature.args[3])(context, builder, arguments[3])
            float_type = context.get_value_type(signature.args[0].dtype)
            itemsize = context.get_abi_sizeof(float_type)
            width = VECTOR_BYTES // itemsize
            vector_type = ir.VectorType(float_type, width)
            index_type = arguments[1].type

            def row_pointer(array, start, stride, row):
                offset = builder.add(start, builder.mul(stride, ir.Constant(index_type, row)))
                return builder.bitcast(builder.gep(array.data, [offset]), vector_type.as_pointer())

            rows = [builder.load(row_pointer(source_array, arguments[1], arguments[2], i), align=itemsize)
                    for i in range(width)]
            half = width // 2
            while half >= 1:
                mixed = list(rows)
                low = [j if j & half == 0 else width + j - half for j in range(width)]
                high = [j + half if j & half == 0 else width + j for j in range(width)]
                for r in range(width):
                    if r & half == 0:
                        pair = (rows[r], rows[r + half])
                        mixed[r] = builder.shuffle_vector(*pair, ir.Constant(ir.VectorType(ir.IntType(32), width), low))
                        mixed[r + half] = builder.shuffle_vector(
                            *pair, ir.Constant(ir.VectorType(ir.IntType(32), width), high))
                rows = mixed
                half //= 2
            for j in range(width):
                builder.store(rows[j], row_pointer(target_array, arguments[4], arguments[5], j), align=itemsize)
            return context.get_dummy_value()
        return signature, codegen
    return transpose_block


transpose_block = _transpose_block()


@njit(inline="always")
def _taken_row(j, first_row, chunk, chunk_stride):
    """The weight row that :func:`pack_transposed`'s column j takes (see its ``rows``)."""
    return first_row + j // chunk * chunk_stride + j % chunk


def _transposed_panel(block, address, first_row, chunk, chunk_stride, columns, i4, i5, i6):
    """Block function (:mod:`.regions`) of :func:`pack_transposed`: panel ``block`` of the
    ``columns`` rows taken (:func:`_taken_row`)."""
    weight, panels = value_at(address, VALUES)
    inner = weight.shape[1]
    source = weight.ravel()
    width = lanes_of(panels)
    panel = TILE_VECTORS * width
    j0 = block * panel
    start = j0 * inner                            # every panel before this one is whole
    count = min(panel, columns - j0)
    stride = panel_width(count, width)
    whole_columns = count // width * width
    whole_inner = inner // width * width
    for jb in range(0, whole_columns, width):
        j = j0 + jb
        if chunk_stride == chunk or j % chunk + width <= chunk:    # the lanes' rows are consecutive
            row = _taken_row(j, first_row, chunk, chunk_stride)
            for k0 in range(0, whole_inner, width):
                transpose_block(source, row * inner + k0, inner, panels, start + k0 * stride + jb, stride)
        else:
            for lane in range(width):
                row = _taken_row(j + lane, first_row, chunk, chunk_stride)
                for k in range(whole_inner):
                    panels[at(start + k * stride + jb + lane)] = source[at(row * inner + k)]
    for k in range(inner):
        target = start + k * stride
        for j in range(0 if k >= whole_inner else whole_columns, count):
            row = _taken_row(j0 + j, first_row, chunk, chunk_stride)
            panels[at(target + j)] = source[at(row * inner + k)]
        for j in range(count, stride):
            panels[at(target + j)] = 0


# matrices of at least this many values are packed by every thread, a panel each at a time
PARALLEL_PACK_VALUES = 1 << 18


def pack_transposed(weight, panels, rows=None):
    """:func:`pack` of ``weight[rows].T`` for a ``weight`` (N, K) whose rows are contiguous: the
    recurrent weights as stored, forward. Whole square blocks of a vector's lanes are
    transposed in registers (:data:`transpose_block`), the edges value by value; large weights'
    panels on every thread (the same values whichever does which).

    Parameters
    ----------
    weight : ndarray, shape (N, K), C-contiguous
    panels : ndarray, flat, at least :func:`panels_size` (K, number of rows) values; written
    rows : (first, chunk, chunk_stride, count), optional
        The rows taken, in order: ``count`` rows in chunks of ``chunk`` consecutive rows, the
        chunks ``chunk_stride`` rows apart from row ``first`` on (a block of units of some gates:
        ``(g0·H + u0, u1 − u0, H, (g1 − g0)·(u1 − u0))``); every row when None.
    """
    pack_transposed_runner(weight, panels, rows)(weight, panels)


def pack_transposed_runner(weight, panels, rows=None):
    """``run(weight, panels)``: :func:`pack_transposed` of ``rows`` on any ``weight`` and ``panels``
    of the shapes and types of these, its blocks and compiled code found once."""
    every = max(1, weight.shape[0])
    first, chunk, chunk_stride, count = (0, every, every, weight.shape[0]) if rows is None else rows
    panel_count = -(-count // panel_columns(weight.dtype))
    run = blocks_runner(_transposed_panel, panel_count, (weight, panels), first, chunk, chunk_stride, count,
                        parallel=count * weight.shape[1] >= PARALLEL_PACK_VALUES)
    return lambda weight, panels: run((weight, panels))


# The kernels call the walk through its address (:mod:`.calls`): each kernel that multiplies
# links none of its code (it is compiled once, alone), and is handed views of one layout ('A') and
# a bias array (empty: none), so that every call site shares one signature.
call_walk = compiled_call(4)
_WALK_TYPES = {dtype: (types.Array(numba.from_dtype(dtype), 2, "A"), types.Array(numba.from_dtype(dtype), 1, "C"))
               for dtype in (np.dtype(np.float32), np.dtype(np.float64))}
_walks = AddressBook()


def walk_address(dtype):
    """The address of :func:`walk`'s machine code for ``dtype`` (float32 or float64), compiled
    (or loaded from Numba's cache) on first use."""
    code = _walk_codes.get(dtype)       # by the dtype as given: hashing Numba's types costs µs
    if code is None:
        matrix, vector = _WALK_TYPES[np.dtype(dtype)]
        code = _walks.get((matrix,), lambda: address_of(walk, matrix, vector, matrix, vector))
        if compiling_only_for() is None:
            _walk_codes[dtype] = code
    return code


_walk_codes = {}


@njit(inline="always", error_model="numpy")
def product_at(walk_code, a, panels, c):
    """c = a @ b, with b (K, N) laid out by :func:`pack`, by the walk at ``walk_code``
    (:func:`walk_address` of the dtype).

    Parameters
    ----------
    walk_code : int
    a : ndarray, shape (M, K), rows contiguous (any row stride)
    panels : ndarray, flat: b packed by :func:`pack`
    c : ndarray, shape (M, N), rows contiguous (any row stride); written
    """
    call_walk(walk_code, a[:, :], panels, c[:, :], panels[:0])


@njit(inline="always", error_model="numpy")
def product_bias_at(walk_code, a, panels, bias, c):
    """c = a @ b + bias, ``bias`` (N,) added to every row (otherwise as :func:`product_at`)."""
    call_walk(walk_code, a[:, :], panels, c[:, :], bias)


def product(a, panels, c):
    """:func:`product_at` from Python (tests, benchmarks): c = a @ b, b packed by :func:`pack`."""
    _product(walk_address(c.dtype), a, panels, c)


def product_bias(a, panels, bias, c):
    """:func:`product_bias_at` from Python: c = a @ b + bias."""
    _product_bias(walk_address(c.dtype), a, panels, bias, c)


_product = njit(error_model="numpy")(product_at.py_func)
_product_bias = njit(error_model="numpy")(product_bias_at.py_func)
