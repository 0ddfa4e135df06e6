"""The recurrent projection of one block of units: ``h @ W_hhᵀ`` restricted to its gates.

Forward, the block's weight rows are used in place, contiguous along the state (H) axis, and
each step's product is :func:`dot_rows` (register-blocked dot products) or a single-threaded
BLAS GEMM (a transposed operand: no copy), whichever :func:`dot_rows_faster` models faster.
BLAS packs the weights on every call, a cost its rate recovers only over many rows; dot_rows
has a fixed cost per output (its horizontal sums), recovered over a long K. Measured on one
core of the project's machines (``bench/projection_kernels.py``, bench/RESULTS.md), OpenBLAS
runs at 36–40 / 53–57 / 69–73 / 78–81 GFLOP/s at 16 / 32 / 64 / 128 rows whatever H, and
dot_rows at 45 / 62 / 74 / 80 / 85 at K = 64 / 128 / 256 / 512 / 1024 whatever the rows
(4 to 128); the model's constants are those two curves' fits.
Backward, the block's columns of the weights are packed once per call, per phase
(:func:`.units.pack_backward_panels`), and the block's gradients go back through them the same
way, dot_rows (K the phase's gates × H) or BLAS by the same model, where the call is long
enough for the transposition dot_rows needs to pay (:func:`transposed_panels_pay`); else
BLAS on the panels as they are (:func:`.steps.backward_projection`).
"""
import numpy as np
from numba import njit

from ... import tuning


# one core's modelled GFLOP/s: dot_rows DOT_PEAK · K / (K + DOT_HALF_K), BLAS BLAS_PEAK · rows / (rows + BLAS_HALF_ROWS)
DOT_PEAK, DOT_HALF_K = 90, 60
BLAS_PEAK, BLAS_HALF_ROWS = 95, 24


_FASTMATH = {"reassoc", "contract"}


def _row_block(count):
    """A compiled ``block(a, b, w, n, out)``: out[b + i, n + j] = a[b + i] · w[n + j] for every
    i < ``count`` and j < 4, written out: ``count`` × 4 running sums, each row of ``a`` and of
    ``w`` loaded once per k for all the products it is in (one function per ``count``: the sums
    must be named variables for LLVM to keep them in registers)."""
    rows, cols = range(count), range(4)
    source = "\n".join([
        "def block(a, b, w, n, out):",
        "    zero = a.dtype.type(0)",
        "".join(f"    a{i} = a[b + {i}]\n" for i in rows) + "".join(f"    w{j} = w[n + {j}]\n" for j in cols),
        "    " + " = ".join(f"s{i}{j}" for i in rows for j in cols) + " = zero",
        "    for k in range(a.shape[1]):",
        "".join(f"        x{i} = a{i}[k]\n" for i in rows) + "".join(f"        y{j} = w{j}[k]\n" for j in cols),
        "".join(f"        s{i}{j} += x{i} * y{j}\n" for i in rows for j in cols),
        "".join(f"    out[b + {i}, n + {j}] = s{i}{j}\n" for i in rows for j in cols),
    ])
    namespace = {}
    exec(source, namespace)
    return njit(inline="always", fastmath=_FASTMATH, error_model="numpy")(namespace["block"])


_BLOCK_4, _BLOCK_3, _BLOCK_2, _BLOCK_1 = (_row_block(count) for count in (4, 3, 2, 1))


@njit(cache=True, fastmath=_FASTMATH, error_model="numpy")
def dot_rows(a, w, out):
    """out[b, n] = a[b] · w[n] for every row b of a (rows, K) and n of w (N, K), rows and
    columns contiguous along K.

    Register-blocked: four rows of ``w`` at a time against four rows of ``a`` (then the three,
    two or one left), up to sixteen running sums, each of the rows loaded once per k for all
    its products; ``reassoc`` lets LLVM vectorise the sums along K. The columns past a multiple
    of four take one at a time.
    """
    zero = a.dtype.type(0)
    rows, count, inner = a.shape[0], w.shape[0], a.shape[1]
    n = 0
    while n + 4 <= count:
        b = 0
        while b + 4 <= rows:
            _BLOCK_4(a, b, w, n, out)
            b += 4
        left = rows - b
        if left == 3:
            _BLOCK_3(a, b, w, n, out)
        elif left == 2:
            _BLOCK_2(a, b, w, n, out)
        elif left == 1:
            _BLOCK_1(a, b, w, n, out)
        n += 4
    while n < count:
        w0 = w[n]
        for b in range(rows):
            a0 = a[b]
            total = zero
            for k in range(inner):
                total += a0[k] * w0[k]
            out[b, n] = total
        n += 1


@njit(cache=True, inline="always", error_model="numpy")
def project(h, weight, g0, g1, u0, u1, out_flat):
    """Project the running sequences' recurrent input onto gates [g0, g1) of units [u0, u1).

    Parameters
    ----------
    h : ndarray, shape (rows, H), C-contiguous: what ``weight`` multiplies
    weight : ndarray, shape (G·H, H), the recurrent weights as stored (gate g, unit j in row g·H + j)
    g0, g1, u0, u1 : int
    out_flat : ndarray, flat, at least (g1 − g0)·rows·(u1 − u0) values; afterwards value
        (gate g, row r, unit u0 + k) is at :func:`projected_at` (g − g0, r, k).

    Every unit ([0, H)): the gates' weight rows are contiguous, one product (rows, (g1 − g0)·H).
    A block of units: one product per gate, (rows, u1 − u0) each.
    """
    rows, hidden, width = h.shape[0], weight.shape[1], u1 - u0
    if width == hidden:
        out = out_flat[:rows * (g1 - g0) * hidden].reshape(rows, (g1 - g0) * hidden)
        _product(h, weight[g0 * hidden:g1 * hidden], out)
        return
    for g in range(g0, g1):
        start = (g - g0) * rows * width
        _product(h, weight[g * hidden + u0:g * hidden + u1], out_flat[start:start + rows * width].reshape(rows, width))


@njit(cache=True, inline="always", error_model="numpy")
def dot_rows_rate(inner):
    """Modelled GFLOP/s (flops per ns) of one core's :func:`dot_rows` at K = ``inner``."""
    return DOT_PEAK * inner / (inner + DOT_HALF_K)


@njit(cache=True, inline="always", error_model="numpy")
def blas_rate(rows):
    """Modelled GFLOP/s of one core's BLAS GEMM of ``rows`` rows (its packing recovered over the rows)."""
    return BLAS_PEAK * rows / (rows + BLAS_HALF_ROWS)


@njit(cache=True, inline="always", error_model="numpy")
def dot_rows_faster(rows, inner):
    """Whether :func:`dot_rows` is modelled faster than BLAS for ``rows`` rows by K = ``inner``."""
    return dot_rows_rate(inner) >= blas_rate(rows)


def transposed_panels_pay(products, rows, hidden, projects, itemsize):
    """Whether a backward call gains more from :func:`dot_rows` on transposed panels than the
    transposition costs (:func:`.units.pack_backward_panels`).

    Parameters
    ----------
    products : int, the (step, sequence) pairs the call sends back through the weights
    rows : int, the most rows one block projects at a step
    hidden : int
    projects : tuple of (g0, g1), the gate blocks each backward phase projects
    itemsize : int
    """
    gain, weights = 0.0, 0
    for g0, g1 in projects:
        inner = (g1 - g0) * hidden
        weights += inner * hidden
        dot, blas = dot_rows_rate(inner), blas_rate(rows)
        if dot > blas:
            gain += products * 2.0 * inner * hidden * (1.0 / blas - 1.0 / dot)
    return gain > weights * itemsize / tuning.get("cost_transpose_bytes_per_ns")


@njit(cache=True, inline="always", error_model="numpy")
def _product(h, weight_rows, out):
    """out = h @ weight_rowsᵀ."""
    if dot_rows_faster(h.shape[0], h.shape[1]):
        dot_rows(h, weight_rows, out)
    else:
        np.dot(h, weight_rows.T, out)


@njit(cache=True, inline="always", error_model="numpy")
def projected_at(gate, row, k, gates, rows, width, hidden):
    """Where :func:`project` left (gate, row, unit u0 + k) of ``gates`` gates, ``rows`` rows and a
    block ``width`` units wide."""
    if width == hidden:
        return (row * gates + gate) * hidden + k
    return (gate * rows + row) * width + k
