"""The recurrent projection of one block of units: ``h @ W_hhᵀ`` restricted to its gates.

Forward, per gate, the block's weight rows are used in place (a transposed operand for
BLAS: no copy). With many sequences that is a single-threaded BLAS GEMM; with a few
(``rows ≤ SMALL_BATCH``) BLAS spends its time packing the weights on every call, so each
weight row is instead read once per step and dotted with every running sequence's state.
Backward, the block's columns of the weights are packed once per call (``units``).
"""
import numpy as np
from numba import njit

from .units import unit_block

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
def gate_block(flat, batch, hidden, gate, u0, u1, rows):
    """Block ``[u0, u1)``'s (rows, u1 − u0) projections of one gate in a projection workspace.

    The workspace ``flat`` holds (gates, B, H) values; gate g's region starts at g·B·H.
    """
    region = flat[gate * batch * hidden:(gate + 1) * batch * hidden]
    return unit_block(region, batch, u0, u1, rows)


@njit(cache=True, inline="always", error_model="numpy")
def project(h, weight, gates, u0, u1, out_flat, batch):
    """Project the running sequences' states onto block ``[u0, u1)``'s gates.

    Parameters
    ----------
    h : ndarray, shape (rows, K), the running sequences' recurrent input
    weight : ndarray, shape (gates·H, K), the recurrent weights as stored (gate g, unit j
        in row g·H + j)
    gates, u0, u1, batch : int
    out_flat : ndarray, flat workspace of gates·B·H values; afterwards
        ``gate_block(out_flat, batch, H, g, u0, u1, rows)`` holds gate g's projections.
    """
    rows = h.shape[0]
    hidden = weight.shape[0] // gates
    for g in range(gates):
        out = gate_block(out_flat, batch, hidden, g, u0, u1, rows)
        weight_rows = weight[g * hidden + u0:g * hidden + u1]
        if rows <= SMALL_BATCH:
            _times_rows(h, weight_rows, out)
        else:
            np.dot(h, weight_rows.T, out)


@njit(cache=True, inline="always", error_model="numpy")
def backproject_block(dgates, panels, u0, u1, work_flat, batch):
    """Return block ``[u0, u1)``'s (rows, u1 − u0) columns of ``dgates @ W``.

    Parameters
    ----------
    dgates : ndarray, shape (rows, R), every block's gate gradients of the running rows
    panels : ndarray, flat, ``units.pack_backward_panels(W, bounds)`` for W (R, H)
    u0, u1, batch : int
    work_flat : ndarray, flat workspace of at least B·H values, which holds the result
    """
    rows, inner = dgates.shape
    block = unit_block(work_flat, batch, u0, u1, rows)
    np.dot(dgates, unit_block(panels, inner, u0, u1, inner), block)
    return block


@njit(cache=True, inline="always", error_model="numpy")
def backproject(dgates, panels, u0, u1, work_flat, dh, accumulate, mask):
    """Block ``[u0, u1)``'s columns of ``dgates @ W``: the gradient reaching ``h_{t−1}``.

    ``dh`` (B, H): columns [u0, u1) of its first ``dgates.shape[0]`` rows receive the
    result of :func:`backproject_block`, added to what is there when ``accumulate``;
    times ``mask`` (B, H) first when it is not empty (recurrent dropout: W saw h ⊙ mask).
    """
    block = backproject_block(dgates, panels, u0, u1, work_flat, dh.shape[0])
    if mask.shape[0] > 0:
        for b in range(block.shape[0]):
            block[b] *= mask[b, u0:u1]
    for b in range(block.shape[0]):
        if accumulate:
            dh[b, u0:u1] += block[b]
        else:
            dh[b, u0:u1] = block[b]
