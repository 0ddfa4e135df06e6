"""LSTM step functions for the CPU time loops (gate order i, f, g, o).

Tape planes per step: i, f, g, o and tanh(c'). ``PEEPHOLE`` is bound per specialisation,
and so are ``sigmoid``, ``tanh`` and ``ONE`` per dtype (see ``kernels``). Both biases are
already in ``xproj`` (see ``CellKernels.folded_bias``).

Forward, one phase: the block's projections, then its gate pass. Backward, two phases:
the gate derivatives of the block's units, then (once every block's are written) the
block's columns of ``dh_{t−1} = dG_t W_hh``.
"""
import numpy as np

from .activations import sigmoid, tanh  # rebound per dtype (see CellKernels)
from .base import CellKernels
from .projection import backproject, gate_block, project

PEEPHOLE = False
ONE = 1.0


def lstm_step_forward(phase, t, slot, rows, u0, u1, xproj, states, source, tape, weights, work):
    w_hh, peep = weights
    batch, hidden = states.shape[2], states.shape[3]
    width = u1 - u0
    project(source[:rows], w_hh, 4, u0, u1, work[0], batch)
    p_i, p_f = gate_block(work[0], batch, hidden, 0, u0, u1, rows), gate_block(work[0], batch, hidden, 1, u0, u1, rows)
    p_g, p_o = gate_block(work[0], batch, hidden, 2, u0, u1, rows), gate_block(work[0], batch, hidden, 3, u0, u1, rows)
    w_ci, w_cf, w_co = peep[0, u0:u1], peep[1, u0:u1], peep[2, u0:u1]
    for b in range(rows):
        x_row = xproj[b]
        p_i_row, p_f_row, p_g_row, p_o_row = p_i[b], p_f[b], p_g[b], p_o[b]
        x_i, x_f = x_row[u0:u1], x_row[hidden + u0:hidden + u1]
        x_g, x_o = x_row[2 * hidden + u0:2 * hidden + u1], x_row[3 * hidden + u0:3 * hidden + u1]
        c_prev, c_out, h_out = states[1, t, b, u0:u1], states[1, t + 1, b, u0:u1], states[0, t + 1, b, u0:u1]
        i_out, f_out, g_out = tape[slot, 0, b, u0:u1], tape[slot, 1, b, u0:u1], tape[slot, 2, b, u0:u1]
        o_out, tanh_c_out = tape[slot, 3, b, u0:u1], tape[slot, 4, b, u0:u1]
        for k in range(width):
            c = c_prev[k]
            a_i = x_i[k] + p_i_row[k]
            a_f = x_f[k] + p_f_row[k]
            a_g = x_g[k] + p_g_row[k]
            a_o = x_o[k] + p_o_row[k]
            if PEEPHOLE:
                a_i += w_ci[k] * c
                a_f += w_cf[k] * c
            i = sigmoid(a_i)
            f = sigmoid(a_f)
            g = tanh(a_g)
            c_new = f * c + i * g
            if PEEPHOLE:
                a_o += w_co[k] * c_new
            o = sigmoid(a_o)
            tanh_c = tanh(c_new)
            c_out[k] = c_new
            h_out[k] = o * tanh_c
            i_out[k] = i
            f_out[k] = f
            g_out[k] = g
            o_out[k] = o
            tanh_c_out[k] = tanh_c


def lstm_step_backward(phase, t, rows, u0, u1, dy, states, source, mask, tape, dnext, dprev, dgates, weights,
                       work):
    panels, peep = weights
    hidden = states.shape[3]
    if phase == 1:
        backproject(dgates[:rows], panels, u0, u1, work[0], dprev[0], False, mask)
        return
    width = u1 - u0
    w_ci, w_cf, w_co = peep[0, u0:u1], peep[1, u0:u1], peep[2, u0:u1]
    for b in range(rows):
        i_row, f_row, g_row = tape[t, 0, b, u0:u1], tape[t, 1, b, u0:u1], tape[t, 2, b, u0:u1]
        o_row, tanh_c_row = tape[t, 3, b, u0:u1], tape[t, 4, b, u0:u1]
        dh_next, dc_next, dy_row = dnext[0, b, u0:u1], dnext[1, b, u0:u1], dy[t, b, u0:u1]
        c_prev, dc_prev_out = states[1, t, b, u0:u1], dprev[1, b, u0:u1]
        da_row = dgates[b]
        da_i_out, da_f_out = da_row[u0:u1], da_row[hidden + u0:hidden + u1]
        da_g_out, da_o_out = da_row[2 * hidden + u0:2 * hidden + u1], da_row[3 * hidden + u0:3 * hidden + u1]
        for k in range(width):
            i, f, g, o, tanh_c = i_row[k], f_row[k], g_row[k], o_row[k], tanh_c_row[k]
            dh = dh_next[k] + dy_row[k]
            da_o = dh * tanh_c * o * (ONE - o)
            dc = dc_next[k] + dh * o * (ONE - tanh_c * tanh_c)
            if PEEPHOLE:
                dc += da_o * w_co[k]
            da_i = dc * g * i * (ONE - i)
            da_f = dc * c_prev[k] * f * (ONE - f)
            da_g = dc * i * (ONE - g * g)
            dc_prev = dc * f
            if PEEPHOLE:
                dc_prev += da_i * w_ci[k] + da_f * w_cf[k]
            dc_prev_out[k] = dc_prev
            da_i_out[k] = da_i
            da_f_out[k] = da_f
            da_g_out[k] = da_g
            da_o_out[k] = da_o


class LSTMKernels(CellKernels):
    """What the shared CPU driver needs to run an LSTM (with or without peepholes)."""

    tape_planes = 5
    template_forward = staticmethod(lstm_step_forward)
    template_backward = staticmethod(lstm_step_backward)
    backward_phases = 2

    def __init__(self, cell, dtype):
        self.backward_reads_new_state = cell.peephole   # weight_co's gradient reads c_t
        suffix = "peephole" if cell.peephole else "plain"
        super().__init__(cell, dtype, f"lstm_{suffix}", PEEPHOLE=cell.peephole)

    def _peepholes(self, params):
        if self.cell.peephole:
            return np.stack([params["weight_ci"], params["weight_cf"], params["weight_co"]])
        w_hh = params["weight_hh"]
        return np.zeros((3, w_hh.shape[1]), w_hh.dtype)

    def forward_weights(self, params, bounds):
        return super().forward_weights(params, bounds) + (self._peepholes(params),)

    def backward_weights(self, params, bounds):
        return super().backward_weights(params, bounds) + (self._peepholes(params),)

    def vector_gradients(self, dgx, states, tape, t0, t1, new_states):
        if not self.cell.peephole:
            return {}
        hidden = states.shape[3]
        c_prev, c_new = states[1, t0:t1], new_states[1, t0 + 1:t1 + 1]
        return {
            "weight_ci": np.einsum("tbj,tbj->j", dgx[..., :hidden], c_prev),
            "weight_cf": np.einsum("tbj,tbj->j", dgx[..., hidden:2 * hidden], c_prev),
            "weight_co": np.einsum("tbj,tbj->j", dgx[..., 3 * hidden:], c_new),
        }
