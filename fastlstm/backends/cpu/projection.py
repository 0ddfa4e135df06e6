"""The recurrent projection of one block of units: ``h @ W_hhᵀ`` restricted to its gates.

Forward, the block's weight rows are used in place, contiguous along the state (H) axis.
With many sequences that is a single-threaded BLAS GEMM (a transposed operand: no copy);
with up to ``SMALL_BATCH`` of them BLAS spends its time packing the weights on every call,
and :func:`dot_rows` (register-blocked dot products) does the step: measured on one core of
the project's machines (``bench/projection_kernels.py``, bench/RESULTS.md), 64–79 GFLOP/s
against BLAS's 23–75 at 4–16 rows by H 256–512; at 32 and 64 rows BLAS is faster (108 and
131 against 75).
Backward, the block's columns of the weights are packed once per call (``units``) and the
block's gradients are one BLAS GEMM against them (:func:`.steps.backward_projection`).
"""
import numpy as np
from numba import njit


SMALL_BATCH = 16


@njit(cache=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def dot_rows(a, w, out):
    """out[b, n] = a[b] · w[n] for every row b of a (rows, K) and n of w (N, K), rows and
    columns contiguous along K.

    Register-blocked: four rows of ``a`` by four rows of ``w`` at a time, sixteen running sums,
    each of the eight rows loaded once per k for four products; ``reassoc`` lets LLVM vectorise
    the sums along K. The remainders (rows, then columns, past a multiple of four) take one row
    or column at a time.
    """
    zero = a.dtype.type(0)
    rows, count, inner = a.shape[0], w.shape[0], a.shape[1]
    n = 0
    while n + 4 <= count:
        w0, w1, w2, w3 = w[n], w[n + 1], w[n + 2], w[n + 3]
        b = 0
        while b + 4 <= rows:
            a0, a1, a2, a3 = a[b], a[b + 1], a[b + 2], a[b + 3]
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
            s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
            for k in range(inner):
                x0, x1, x2, x3 = a0[k], a1[k], a2[k], a3[k]
                y0, y1, y2, y3 = w0[k], w1[k], w2[k], w3[k]
                s00 += x0 * y0
                s01 += x0 * y1
                s02 += x0 * y2
                s03 += x0 * y3
                s10 += x1 * y0
                s11 += x1 * y1
                s12 += x1 * y2
                s13 += x1 * y3
                s20 += x2 * y0
                s21 += x2 * y1
                s22 += x2 * y2
                s23 += x2 * y3
                s30 += x3 * y0
                s31 += x3 * y1
                s32 += x3 * y2
                s33 += x3 * y3
            out[b, n], out[b, n + 1], out[b, n + 2], out[b, n + 3] = s00, s01, s02, s03
            out[b + 1, n], out[b + 1, n + 1], out[b + 1, n + 2], out[b + 1, n + 3] = s10, s11, s12, s13
            out[b + 2, n], out[b + 2, n + 1], out[b + 2, n + 2], out[b + 2, n + 3] = s20, s21, s22, s23
            out[b + 3, n], out[b + 3, n + 1], out[b + 3, n + 2], out[b + 3, n + 3] = s30, s31, s32, s33
            b += 4
        while b < rows:
            a0 = a[b]
            s00 = s01 = s02 = s03 = zero
            for k in range(inner):
                x0 = a0[k]
                s00 += x0 * w0[k]
                s01 += x0 * w1[k]
                s02 += x0 * w2[k]
                s03 += x0 * w3[k]
            out[b, n], out[b, n + 1], out[b, n + 2], out[b, n + 3] = s00, s01, s02, s03
            b += 1
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
def _product(h, weight_rows, out):
    """out = h @ weight_rowsᵀ."""
    if h.shape[0] <= SMALL_BATCH:
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
