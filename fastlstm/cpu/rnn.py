"""Plain RNN step functions for the CPU time loops: h' = act(W_ih x + b_ih + W_hh h + b_hh).

No tape planes: the derivative of tanh and of relu both follow from h' itself.
``RELU`` is bound per specialisation.
"""
import numpy as np

from .activations import tanh
from .base import CellKernels
from .specialise import specialise

RELU = False


def rnn_step_forward(t, b0, b1, xproj, states, tape, weights, work):
    w_hh_t, b_hh = weights
    hproj = work[0]
    hidden = states.shape[3]
    np.dot(states[0, t][b0:b1], w_hh_t, hproj[b0:b1])
    for b in range(b0, b1):
        for j in range(hidden):
            a = xproj[t, b, j] + hproj[b, j] + b_hh[j]
            if RELU:
                states[0, t + 1, b, j] = 0.0 if a < 0 else a  # NaN stays NaN
            else:
                states[0, t + 1, b, j] = tanh(a)


def rnn_step_backward(t, b0, b1, dy, states, tape, dnext, dprev, dgx, dgh, weights, work):
    (w_hh,) = weights
    hidden = states.shape[3]
    da = dgx[t]
    for b in range(b0, b1):
        for j in range(hidden):
            dh = dnext[0, b, j] + dy[t, b, j]
            h_new = states[0, t + 1, b, j]
            if RELU:
                da[b, j] = dh if h_new > 0 else 0.0
            else:
                da[b, j] = dh * (1 - h_new * h_new)
    np.dot(da[b0:b1], w_hh, dprev[0][b0:b1])


class RNNKernels(CellKernels):
    """What the shared CPU driver needs to run a tanh or relu RNN."""

    def __init__(self, cell):
        relu = cell.nonlinearity == "relu"
        suffix = cell.nonlinearity
        super().__init__(cell, f"rnn_{suffix}",
                         specialise(rnn_step_forward, suffix, RELU=relu),
                         specialise(rnn_step_backward, suffix, RELU=relu))
