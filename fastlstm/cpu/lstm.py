"""LSTM step functions for the CPU time loops (gate order i, f, g, o).

Tape planes per step: i, f, g, o and tanh(c'). ``PEEPHOLE`` is bound per specialisation.
"""
import numpy as np

from .activations import sigmoid, tanh
from .base import CellKernels
from .specialise import specialise

PEEPHOLE = False


def lstm_step_forward(t, b0, b1, xproj, states, tape, weights, work):
    w_hh_t, b_hh, peep = weights
    hproj = work[0]
    hidden = states.shape[3]
    h_prev = states[0, t]
    c_prev = states[1, t]
    np.dot(h_prev[b0:b1], w_hh_t, hproj[b0:b1])
    for b in range(b0, b1):
        for j in range(hidden):
            c = c_prev[b, j]
            a_i = xproj[t, b, j] + hproj[b, j] + b_hh[j]
            a_f = xproj[t, b, hidden + j] + hproj[b, hidden + j] + b_hh[hidden + j]
            a_g = xproj[t, b, 2 * hidden + j] + hproj[b, 2 * hidden + j] + b_hh[2 * hidden + j]
            a_o = xproj[t, b, 3 * hidden + j] + hproj[b, 3 * hidden + j] + b_hh[3 * hidden + j]
            if PEEPHOLE:
                a_i += peep[0, j] * c
                a_f += peep[1, j] * c
            i = sigmoid(a_i)
            f = sigmoid(a_f)
            g = tanh(a_g)
            c_new = f * c + i * g
            if PEEPHOLE:
                a_o += peep[2, j] * c_new
            o = sigmoid(a_o)
            tanh_c = tanh(c_new)
            states[1, t + 1, b, j] = c_new
            states[0, t + 1, b, j] = o * tanh_c
            tape[t, 0, b, j] = i
            tape[t, 1, b, j] = f
            tape[t, 2, b, j] = g
            tape[t, 3, b, j] = o
            tape[t, 4, b, j] = tanh_c


def lstm_step_backward(t, b0, b1, dy, states, tape, dnext, dprev, dgx, dgh, weights, work):
    w_hh, peep = weights
    hidden = states.shape[3]
    c_prev = states[1, t]
    da = dgx[t]
    for b in range(b0, b1):
        for j in range(hidden):
            i = tape[t, 0, b, j]
            f = tape[t, 1, b, j]
            g = tape[t, 2, b, j]
            o = tape[t, 3, b, j]
            tanh_c = tape[t, 4, b, j]
            dh = dnext[0, b, j] + dy[t, b, j]
            da_o = dh * tanh_c * o * (1 - o)
            dc = dnext[1, b, j] + dh * o * (1 - tanh_c * tanh_c)
            if PEEPHOLE:
                dc += da_o * peep[2, j]
            da_i = dc * g * i * (1 - i)
            da_f = dc * c_prev[b, j] * f * (1 - f)
            da_g = dc * i * (1 - g * g)
            dc_prev = dc * f
            if PEEPHOLE:
                dc_prev += da_i * peep[0, j] + da_f * peep[1, j]
            dprev[1, b, j] = dc_prev
            da[b, j] = da_i
            da[b, hidden + j] = da_f
            da[b, 2 * hidden + j] = da_g
            da[b, 3 * hidden + j] = da_o
    np.dot(da[b0:b1], w_hh, dprev[0][b0:b1])


class LSTMKernels(CellKernels):
    """What the shared CPU driver needs to run an LSTM (with or without peepholes)."""

    tape_planes = 5

    def __init__(self, cell):
        suffix = "peephole" if cell.peephole else "plain"
        super().__init__(cell, f"lstm_{suffix}",
                         specialise(lstm_step_forward, suffix, PEEPHOLE=cell.peephole),
                         specialise(lstm_step_backward, suffix, PEEPHOLE=cell.peephole))

    def _peepholes(self, params):
        if self.cell.peephole:
            return np.stack([params["weight_ci"], params["weight_cf"], params["weight_co"]])
        w_hh = params["weight_hh"]
        return np.zeros((0, w_hh.shape[1]), w_hh.dtype)

    def forward_weights(self, params):
        return super().forward_weights(params) + (self._peepholes(params),)

    def backward_weights(self, params):
        return super().backward_weights(params) + (self._peepholes(params),)

    def vector_gradients(self, dgx, states, tape):
        if not self.cell.peephole:
            return {}
        hidden = states.shape[3]
        c_prev, c_new = states[1, :-1], states[1, 1:]
        return {
            "weight_ci": np.einsum("tbj,tbj->j", dgx[..., :hidden], c_prev),
            "weight_cf": np.einsum("tbj,tbj->j", dgx[..., hidden:2 * hidden], c_prev),
            "weight_co": np.einsum("tbj,tbj->j", dgx[..., 3 * hidden:], c_new),
        }
