"""GRU step functions for the CPU time loops (gate order r, z, n).

reset_after=True: n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)); one 3H-wide recurrent
GEMM per step. Tape planes: r, z, n, W_hn h + b_hn.

reset_after=False: n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn). The candidate's GEMM needs
r, so a step is a 2H-wide GEMM for r and z, a gate pass that forms r ⊙ h on the tape, an
H-wide GEMM on it, and a second gate pass. Tape planes: r, z, n, r ⊙ h.
"""
import numpy as np

from .activations import sigmoid, tanh
from .base import CellKernels
from .gemm import matmul_transposed
from .specialise import specialise
from .threads import chunk_count


def gru_step_forward(t, b0, b1, xproj, states, tape, weights, work):
    w_hh_t, b_hh = weights
    hproj = work[0]
    hidden = states.shape[3]
    h_prev = states[0, t]
    np.dot(h_prev[b0:b1], w_hh_t, hproj[b0:b1])
    for b in range(b0, b1):
        for j in range(hidden):
            r = sigmoid(xproj[t, b, j] + hproj[b, j] + b_hh[j])
            z = sigmoid(xproj[t, b, hidden + j] + hproj[b, hidden + j] + b_hh[hidden + j])
            hn = hproj[b, 2 * hidden + j] + b_hh[2 * hidden + j]
            n = tanh(xproj[t, b, 2 * hidden + j] + r * hn)
            states[0, t + 1, b, j] = n + z * (h_prev[b, j] - n)
            tape[t, 0, b, j] = r
            tape[t, 1, b, j] = z
            tape[t, 2, b, j] = n
            tape[t, 3, b, j] = hn


def gru_step_backward(t, b0, b1, dy, states, tape, dnext, dprev, dgx, dgh, weights, work):
    (w_hh,) = weights
    recurrent = work[0]
    hidden = states.shape[3]
    h_prev = states[0, t]
    da_x = dgx[t]
    da_h = dgh[t]
    for b in range(b0, b1):
        for j in range(hidden):
            r = tape[t, 0, b, j]
            z = tape[t, 1, b, j]
            n = tape[t, 2, b, j]
            dh = dnext[0, b, j] + dy[t, b, j]
            da_n = dh * (1 - z) * (1 - n * n)
            da_z = dh * (h_prev[b, j] - n) * z * (1 - z)
            da_r = da_n * tape[t, 3, b, j] * r * (1 - r)
            da_x[b, j] = da_r
            da_x[b, hidden + j] = da_z
            da_x[b, 2 * hidden + j] = da_n
            da_h[b, j] = da_r
            da_h[b, hidden + j] = da_z
            da_h[b, 2 * hidden + j] = da_n * r
            dprev[0, b, j] = dh * z
    np.dot(da_h[b0:b1], w_hh, recurrent[b0:b1])
    for b in range(b0, b1):
        for j in range(hidden):
            dprev[0, b, j] += recurrent[b, j]


def gru_reset_before_step_forward(t, b0, b1, xproj, states, tape, weights, work):
    w_hrz_t, w_hn_t, b_hh = weights
    rz_proj, n_proj = work
    hidden = states.shape[3]
    h_prev = states[0, t]
    np.dot(h_prev[b0:b1], w_hrz_t, rz_proj[b0:b1])
    for b in range(b0, b1):
        for j in range(hidden):
            r = sigmoid(xproj[t, b, j] + rz_proj[b, j] + b_hh[j])
            tape[t, 0, b, j] = r
            tape[t, 1, b, j] = sigmoid(xproj[t, b, hidden + j] + rz_proj[b, hidden + j] + b_hh[hidden + j])
            tape[t, 3, b, j] = r * h_prev[b, j]
    np.dot(tape[t, 3][b0:b1], w_hn_t, n_proj[b0:b1])
    for b in range(b0, b1):
        for j in range(hidden):
            n = tanh(xproj[t, b, 2 * hidden + j] + n_proj[b, j] + b_hh[2 * hidden + j])
            tape[t, 2, b, j] = n
            states[0, t + 1, b, j] = n + tape[t, 1, b, j] * (h_prev[b, j] - n)


def gru_reset_before_step_backward(t, b0, b1, dy, states, tape, dnext, dprev, dgx, dgh, weights, work):
    w_hrz, w_hn = weights
    da_n_rows, d_rh, da_rz, recurrent = work
    hidden = states.shape[3]
    h_prev = states[0, t]
    da = dgx[t]
    for b in range(b0, b1):
        for j in range(hidden):
            z = tape[t, 1, b, j]
            n = tape[t, 2, b, j]
            dh = dnext[0, b, j] + dy[t, b, j]
            da_n = dh * (1 - z) * (1 - n * n)
            da_z = dh * (h_prev[b, j] - n) * z * (1 - z)
            da[b, hidden + j] = da_z
            da[b, 2 * hidden + j] = da_n
            da_n_rows[b, j] = da_n
            da_rz[b, hidden + j] = da_z
            dprev[0, b, j] = dh * z
    np.dot(da_n_rows[b0:b1], w_hn, d_rh[b0:b1])
    for b in range(b0, b1):
        for j in range(hidden):
            r = tape[t, 0, b, j]
            da_r = d_rh[b, j] * h_prev[b, j] * r * (1 - r)
            da[b, j] = da_r
            da_rz[b, j] = da_r
            dprev[0, b, j] += d_rh[b, j] * r
    np.dot(da_rz[b0:b1], w_hrz, recurrent[b0:b1])
    for b in range(b0, b1):
        for j in range(hidden):
            dprev[0, b, j] += recurrent[b, j]


class GRUKernels(CellKernels):
    """What the shared CPU driver needs to run a GRU with reset_after=True."""

    tape_planes = 4
    separate_recurrent_gradient = True

    def __init__(self, cell):
        super().__init__(cell, "gru", specialise(gru_step_forward, "compiled"),
                         specialise(gru_step_backward, "compiled"))

    def backward_work(self, batch, hidden, dtype):
        return (np.empty((batch, hidden), dtype),)


class GRUResetBeforeKernels(CellKernels):
    """What the shared CPU driver needs to run a GRU with reset_after=False."""

    tape_planes = 4

    def __init__(self, cell):
        super().__init__(cell, "gru_reset_before", specialise(gru_reset_before_step_forward, "compiled"),
                         specialise(gru_reset_before_step_backward, "compiled"))

    def forward_weights(self, params):
        w_hh, hidden = params["weight_hh"], params["weight_hh"].shape[1]
        return (np.ascontiguousarray(w_hh[:2 * hidden].T), np.ascontiguousarray(w_hh[2 * hidden:].T),
                params["bias_hh"])

    def backward_weights(self, params):
        w_hh, hidden = params["weight_hh"], params["weight_hh"].shape[1]
        return (np.ascontiguousarray(w_hh[:2 * hidden]), np.ascontiguousarray(w_hh[2 * hidden:]))

    def forward_work(self, batch, hidden, dtype):
        return (np.empty((batch, 2 * hidden), dtype), np.empty((batch, hidden), dtype))

    def backward_work(self, batch, hidden, dtype):
        return (np.empty((batch, hidden), dtype), np.empty((batch, hidden), dtype),
                np.empty((batch, 2 * hidden), dtype), np.empty((batch, hidden), dtype))

    def recurrent_weight_gradient(self, dgh, states, tape):
        """Rows of r and z see h_{t−1}; rows of n see r ⊙ h_{t−1} (on the tape)."""
        hidden = states.shape[3]
        rows = dgh.reshape(-1, dgh.shape[-1])
        chunks = chunk_count(len(rows))
        h_prev = states[0, :-1].reshape(-1, hidden)
        reset_h = np.ascontiguousarray(tape[:, 3]).reshape(-1, hidden)
        return np.concatenate([
            matmul_transposed(np.ascontiguousarray(rows[:, :2 * hidden]), h_prev, chunks),
            matmul_transposed(np.ascontiguousarray(rows[:, 2 * hidden:]), reset_h, chunks)])
