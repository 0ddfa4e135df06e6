"""GRU step functions for the CPU time loops (gate order r, z, n).

reset_after=True: n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)); one 3H-wide recurrent
projection per step. Tape planes: r, z, n, W_hn h + b_hn. ``b_hn`` stays in the step;
the other recurrent biases are folded into ``xproj``. The recurrent projection's
gradient equals the input projection's except in n (r ⊙ da_n instead of da_n): each
step forms it in a workspace, and the weight gradient after the loop forms r ⊙ da_n
again block by block, so no (T, B, H) array of it is kept.

reset_after=False: n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn). The candidate's
projection needs every unit's r, so a forward step has two phases: the r and z
projections and gates, which write r ⊙ h onto the tape, then the candidate's projection
of r ⊙ h and its gate. Backward has three: the z and n derivatives; then the gradient
reaching r ⊙ h and the r derivatives; then the gradient reaching h. Tape planes: r, z,
n, r ⊙ h. Every bias is folded into ``xproj``.
"""
import numpy as np

from .activations import sigmoid, tanh  # rebound per dtype (see CellKernels)
from .base import NO_SCALE, CellKernels
from .gemm import weight_gradient
from .projection import backproject, backproject_block, gate_block, project
from .threads import chunk_count
from .units import pack_backward_panels

ONE = 1.0


def gru_step_forward(phase, t, slot, rows, u0, u1, xproj, states, source, tape, weights, work):
    w_hh, b_hn = weights
    batch, hidden = states.shape[2], states.shape[3]
    width = u1 - u0
    project(source[:rows], w_hh, 3, u0, u1, work[0], batch)
    p_r, p_z = gate_block(work[0], batch, hidden, 0, u0, u1, rows), gate_block(work[0], batch, hidden, 1, u0, u1, rows)
    p_n = gate_block(work[0], batch, hidden, 2, u0, u1, rows)
    b_n = b_hn[u0:u1]
    for b in range(rows):
        x_row, p_r_row, p_z_row, p_n_row = xproj[b], p_r[b], p_z[b], p_n[b]
        x_r, x_z, x_n = x_row[u0:u1], x_row[hidden + u0:hidden + u1], x_row[2 * hidden + u0:2 * hidden + u1]
        h_prev, h_out = states[0, t, b, u0:u1], states[0, t + 1, b, u0:u1]
        r_out, z_out, n_out, hn_out = (tape[slot, 0, b, u0:u1], tape[slot, 1, b, u0:u1],
                                       tape[slot, 2, b, u0:u1], tape[slot, 3, b, u0:u1])
        for k in range(width):
            r = sigmoid(x_r[k] + p_r_row[k])
            z = sigmoid(x_z[k] + p_z_row[k])
            hn = p_n_row[k] + b_n[k]
            n = tanh(x_n[k] + r * hn)
            h_out[k] = n + z * (h_prev[k] - n)
            r_out[k] = r
            z_out[k] = z
            n_out[k] = n
            hn_out[k] = hn


def gru_step_backward(phase, t, rows, u0, u1, dy, states, source, mask, tape, dnext, dprev, dgates, weights,
                      work):
    (panels,) = weights
    recurrent_gradient, dh_work = work
    hidden = states.shape[3]
    if phase == 1:
        backproject(recurrent_gradient[:rows], panels, u0, u1, dh_work, dprev[0], True, mask)
        return
    width = u1 - u0
    for b in range(rows):
        r_row, z_row, n_row, hn_row = (tape[t, 0, b, u0:u1], tape[t, 1, b, u0:u1],
                                       tape[t, 2, b, u0:u1], tape[t, 3, b, u0:u1])
        dh_next, dy_row, h_prev, dh_prev_out = dnext[0, b, u0:u1], dy[t, b, u0:u1], states[0, t, b, u0:u1], \
            dprev[0, b, u0:u1]
        x_row, h_row = dgates[b], recurrent_gradient[b]
        dx_r, dx_z, dx_n = x_row[u0:u1], x_row[hidden + u0:hidden + u1], x_row[2 * hidden + u0:2 * hidden + u1]
        dh_r, dh_z, dh_n = h_row[u0:u1], h_row[hidden + u0:hidden + u1], h_row[2 * hidden + u0:2 * hidden + u1]
        for k in range(width):
            r, z, n = r_row[k], z_row[k], n_row[k]
            dh = dh_next[k] + dy_row[k]
            da_n = dh * (ONE - z) * (ONE - n * n)
            da_z = dh * (h_prev[k] - n) * z * (ONE - z)
            da_r = da_n * hn_row[k] * r * (ONE - r)
            dx_r[k] = da_r
            dx_z[k] = da_z
            dx_n[k] = da_n
            dh_r[k] = da_r
            dh_z[k] = da_z
            dh_n[k] = da_n * r
            dh_prev_out[k] = dh * z


def gru_reset_before_step_forward(phase, t, slot, rows, u0, u1, xproj, states, source, tape, weights, work):
    w_rz, w_n = weights
    batch, hidden = states.shape[2], states.shape[3]
    width = u1 - u0
    if phase == 0:
        project(source[:rows], w_rz, 2, u0, u1, work[0], batch)
        p_r, p_z = gate_block(work[0], batch, hidden, 0, u0, u1, rows), gate_block(work[0], batch, hidden, 1, u0, u1, rows)
        for b in range(rows):
            x_row, p_r_row, p_z_row = xproj[b], p_r[b], p_z[b]
            x_r, x_z = x_row[u0:u1], x_row[hidden + u0:hidden + u1]
            h_prev = source[b, u0:u1]
            r_out, z_out, rh_out = tape[slot, 0, b, u0:u1], tape[slot, 1, b, u0:u1], tape[slot, 3, b, u0:u1]
            for k in range(width):
                r = sigmoid(x_r[k] + p_r_row[k])
                r_out[k] = r
                z_out[k] = sigmoid(x_z[k] + p_z_row[k])
                rh_out[k] = r * h_prev[k]
        return
    project(tape[slot, 3, :rows], w_n, 1, u0, u1, work[1], batch)
    p_n = gate_block(work[1], batch, hidden, 0, u0, u1, rows)
    for b in range(rows):
        x_n, p_row = xproj[b, 2 * hidden + u0:2 * hidden + u1], p_n[b]
        h_prev, h_out = states[0, t, b, u0:u1], states[0, t + 1, b, u0:u1]
        z_row, n_out = tape[slot, 1, b, u0:u1], tape[slot, 2, b, u0:u1]
        for k in range(width):
            n = tanh(x_n[k] + p_row[k])
            n_out[k] = n
            h_out[k] = n + z_row[k] * (h_prev[k] - n)


def gru_reset_before_step_backward(phase, t, rows, u0, u1, dy, states, source, mask, tape, dnext, dprev, dgates,
                                   weights, work):
    panels_rz, panels_n = weights
    da_n_rows, da_rz, d_rh_work, dh_work = work
    hidden = states.shape[3]
    width = u1 - u0
    if phase == 0:
        for b in range(rows):
            z_row, n_row = tape[t, 1, b, u0:u1], tape[t, 2, b, u0:u1]
            dh_next, dy_row, h_prev = dnext[0, b, u0:u1], dy[t, b, u0:u1], states[0, t, b, u0:u1]
            dh_prev_out = dprev[0, b, u0:u1]
            dx_z, dx_n = dgates[b, hidden + u0:hidden + u1], dgates[b, 2 * hidden + u0:2 * hidden + u1]
            da_n_out, da_z_out = da_n_rows[b, u0:u1], da_rz[b, hidden + u0:hidden + u1]
            for k in range(width):
                z, n = z_row[k], n_row[k]
                dh = dh_next[k] + dy_row[k]
                da_n = dh * (ONE - z) * (ONE - n * n)
                da_z = dh * (h_prev[k] - n) * z * (ONE - z)
                dx_z[k] = da_z
                dx_n[k] = da_n
                da_n_out[k] = da_n
                da_z_out[k] = da_z
                dh_prev_out[k] = dh * z
    elif phase == 1:
        d_rh = backproject_block(da_n_rows[:rows], panels_n, u0, u1, d_rh_work, dy.shape[1])
        masked = mask.shape[0] > 0
        for b in range(rows):
            r_row, h_prev, d_rh_row = tape[t, 0, b, u0:u1], source[b, u0:u1], d_rh[b]
            dx_r, da_r_out, dh_prev_out = dgates[b, u0:u1], da_rz[b, u0:u1], dprev[0, b, u0:u1]
            for k in range(width):
                r = r_row[k]
                da_r = d_rh_row[k] * h_prev[k] * r * (ONE - r)
                dx_r[k] = da_r
                da_r_out[k] = da_r
                if masked:
                    dh_prev_out[k] += d_rh_row[k] * r * mask[b, u0 + k]
                else:
                    dh_prev_out[k] += d_rh_row[k] * r
    else:
        backproject(da_rz[:rows], panels_rz, u0, u1, dh_work, dprev[0], True, mask)


class GRUKernels(CellKernels):
    """What the shared CPU driver needs to run a GRU with reset_after=True."""

    tape_planes = 4
    backward_phases = 2
    template_forward = staticmethod(gru_step_forward)
    template_backward = staticmethod(gru_step_backward)

    def __init__(self, cell, dtype):
        super().__init__(cell, dtype, "gru")

    def folded_bias(self, params):
        hidden = params["weight_hh"].shape[1]
        bias = params["bias_hh"].copy()
        bias[2 * hidden:] = 0
        return bias

    def forward_weights(self, params, bounds):
        hidden = params["weight_hh"].shape[1]
        return (params["weight_hh"], params["bias_hh"][2 * hidden:])

    def backward_work(self, batch, hidden, dtype):
        return (np.empty((batch, 3 * hidden), dtype),) + super().backward_work(batch, hidden, dtype)

    def recurrent_gradients(self, dgx, inputs, tape, t0, t1):
        """Rows of r and z take dgx's gradients; rows of n take r ⊙ da_n, formed block by block."""
        hidden = inputs.shape[2]
        rows = dgx.reshape(-1, 3 * hidden)
        h_prev = inputs[t0:t1].reshape(-1, hidden)
        chunks = chunk_count(len(rows))
        weight_rz, bias_rz = weight_gradient(rows, 0, 2 * hidden, h_prev, NO_SCALE[rows.dtype], 0, chunks)
        weight_n, bias_n = weight_gradient(rows, 2 * hidden, 3 * hidden, h_prev, tape[t0:t1], 0, chunks)
        return {"weight_hh": np.concatenate([weight_rz, weight_n]),
                "bias_hh": np.concatenate([bias_rz, bias_n])}


class GRUResetBeforeKernels(CellKernels):
    """What the shared CPU driver needs to run a GRU with reset_after=False."""

    tape_planes = 4
    forward_phases = 2
    backward_phases = 3
    template_forward = staticmethod(gru_reset_before_step_forward)
    template_backward = staticmethod(gru_reset_before_step_backward)

    def __init__(self, cell, dtype):
        super().__init__(cell, dtype, "gru_reset_before")

    def forward_weights(self, params, bounds):
        w_hh, hidden = params["weight_hh"], params["weight_hh"].shape[1]
        return (w_hh[:2 * hidden], w_hh[2 * hidden:])

    def backward_weights(self, params, bounds):
        w_hh, hidden = params["weight_hh"], params["weight_hh"].shape[1]
        return (pack_backward_panels(w_hh[:2 * hidden], bounds), pack_backward_panels(w_hh[2 * hidden:], bounds))

    def forward_work(self, batch, hidden, dtype):
        return (np.empty(batch * 2 * hidden, dtype), np.empty(batch * hidden, dtype))

    def backward_work(self, batch, hidden, dtype):
        return (np.empty((batch, hidden), dtype), np.empty((batch, 2 * hidden), dtype),
                np.empty(batch * hidden, dtype), np.empty(batch * hidden, dtype))

    def recurrent_gradients(self, dgx, inputs, tape, t0, t1):
        """Rows of r and z see h_{t−1}; rows of n see r ⊙ h_{t−1} (on the tape)."""
        hidden = inputs.shape[2]
        rows = dgx.reshape(-1, 3 * hidden)
        chunks = chunk_count(len(rows))
        h_prev = inputs[t0:t1].reshape(-1, hidden)
        reset_h = np.ascontiguousarray(tape[t0:t1, 3]).reshape(-1, hidden)
        weight_rz, bias_rz = weight_gradient(rows, 0, 2 * hidden, h_prev, NO_SCALE[rows.dtype], 0, chunks)
        weight_n, bias_n = weight_gradient(rows, 2 * hidden, 3 * hidden, reset_h, NO_SCALE[rows.dtype], 0, chunks)
        return {"weight_hh": np.concatenate([weight_rz, weight_n]),
                "bias_hh": np.concatenate([bias_rz, bias_n])}
