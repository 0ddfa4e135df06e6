"""Plain RNN step functions for the CPU time loops: h' = act(W_ih x + b_ih + W_hh h + b_hh).

No tape planes: the derivative of tanh and of relu both follow from h' itself. ``RELU``
is bound per specialisation; both biases are folded into ``xproj``.
"""

from .activations import tanh  # rebound per dtype (see CellKernels)
from .base import CellKernels
from .projection import backproject, gate_block, project

RELU = False
ONE = 1.0
ZERO = 0.0


def rnn_step_forward(phase, t, slot, rows, u0, u1, xproj, states, source, tape, weights, work):
    (w_hh,) = weights
    batch, hidden = states.shape[2], states.shape[3]
    width = u1 - u0
    project(source[:rows], w_hh, 1, u0, u1, work[0], batch)
    proj = gate_block(work[0], batch, hidden, 0, u0, u1, rows)
    for b in range(rows):
        x_row, p_row, h_out = xproj[b, u0:u1], proj[b], states[0, t + 1, b, u0:u1]
        for k in range(width):
            a = x_row[k] + p_row[k]
            if RELU:
                h_out[k] = ZERO if a < ZERO else a  # NaN stays NaN
            else:
                h_out[k] = tanh(a)


def rnn_step_backward(phase, t, rows, u0, u1, dy, states, source, mask, tape, dnext, dprev, dgates, weights,
                      work):
    (panels,) = weights
    if phase == 1:
        backproject(dgates[:rows], panels, u0, u1, work[0], dprev[0], False, mask)
        return
    width = u1 - u0
    for b in range(rows):
        dh_next, dy_row, h_new, da = dnext[0, b, u0:u1], dy[t, b, u0:u1], states[0, t + 1, b, u0:u1], \
            dgates[b, u0:u1]
        for k in range(width):
            dh = dh_next[k] + dy_row[k]
            if RELU:
                da[k] = dh if h_new[k] > ZERO else ZERO
            else:
                da[k] = dh * (ONE - h_new[k] * h_new[k])


class RNNKernels(CellKernels):
    """What the shared CPU driver needs to run a tanh or relu RNN."""

    backward_phases = 2
    backward_reads_new_state = step_backward_reads_new_state = True   # h_t, for the activation's derivative
    template_forward = staticmethod(rnn_step_forward)
    template_backward = staticmethod(rnn_step_backward)

    def __init__(self, cell, dtype):
        super().__init__(cell, dtype, f"rnn_{cell.nonlinearity}", RELU=cell.nonlinearity == "relu")
