"""The recurrent projection of one block of units: ``h @ W_hhᵀ`` restricted to its gates.

Forward, per gate, the block's weight rows are used in place (a transposed operand for
BLAS: no copy). With many sequences that is a single-threaded BLAS GEMM; with a few
(``rows ≤ SMALL_BATCH``) BLAS spends its time packing the weights on every call, so each
weight row is instead read once per step and dotted with every running sequence's state.
Backward, the block's columns of the weights are packed once per call (``units``) and the
block's gradients are one BLAS GEMM against them (:func:`.steps.backward_projection`).
"""
import numpy as np
from numba import njit


SMALL_BATCH = 4


@njit(cache=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def _times_rows(h, weight_rows, out):
    """out[:, n] = h @ weight_rows[n] for every row n of weight_rows (N, K).

    Four weight rows at a time are read once and kept in L1 while every sequence's dot
    products with them are formed; ``reassoc`` lets LLVM vectorise the reductions.
    """
    zero = h.dtype.type(0)
    count = weight_rows.shape[0]
    n = 0
    while n + 4 <= count:
        w0, w1, w2, w3 = weight_rows[n], weight_rows[n + 1], weight_rows[n + 2], weight_rows[n + 3]
        for b in range(h.shape[0]):
            h_row = h[b]
            a0, a1, a2, a3 = zero, zero, zero, zero
            for k in range(h_row.shape[0]):
                a0 += h_row[k] * w0[k]
                a1 += h_row[k] * w1[k]
                a2 += h_row[k] * w2[k]
                a3 += h_row[k] * w3[k]
            out[b, n] = a0
            out[b, n + 1] = a1
            out[b, n + 2] = a2
            out[b, n + 3] = a3
        n += 4
    while n < count:
        w0 = weight_rows[n]
        for b in range(h.shape[0]):
            h_row = h[b]
            a0 = zero
            for k in range(h_row.shape[0]):
                a0 += h_row[k] * w0[k]
            out[b, n] = a0
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
        _times_rows(h, weight_rows, out)
    else:
        np.dot(h, weight_rows.T, out)


@njit(cache=True, inline="always", error_model="numpy")
def projected_at(gate, row, k, gates, rows, width, hidden):
    """Where :func:`project` left (gate, row, unit u0 + k) of ``gates`` gates, ``rows`` rows and a
    block ``width`` units wide."""
    if width == hidden:
        return (row * gates + gate) * hidden + k
    return (gate * rows + row) * width + k
