"""Each cell's element-wise step math, one hidden unit of one sequence at a time.

Plain Python scalar functions, like :mod:`fastlstm.gatemath`, so that every backend compiles
the same code for itself (``cuda.jit(device=True)`` in the GPU kernels). The names below
are placeholders that each compiled copy rebinds (see :mod:`fastlstm.rebinding`): the
activations and constants for the dtype, and the cell's options, which the compiler then
folds away.

Pre-activations arrive with every bias that can be folded into the input projection already
in them: ``a_*`` is ``W_i* x + b_i* + W_h* h + b_h*`` (and, for the GRU's candidate, the parts
described at :func:`gru_candidate`).
"""
import math

sigmoid = None   # rebound: the dtype's logistic function
tanh = math.tanh  # rebound: the dtype's hyperbolic tangent
ONE = 1.0         # rebound: 1 in the dtype
ZERO = 0.0        # rebound: 0 in the dtype
PEEPHOLE = False  # rebound: the LSTM's peephole option
RELU = False      # rebound: the RNN's nonlinearity is relu


def lstm_forward(a_i, a_f, a_g, a_o, c, w_ci, w_cf, w_co):
    """One LSTM unit: gates, new cell state and output.

    Returns ``(i, f, g, o, c_new, tanh_c_new, h_new)``; the peephole weights are read only
    with ``PEEPHOLE``, and the output gate's peephole sees the new cell state.
    """
    if PEEPHOLE:
        a_i += w_ci * c
        a_f += w_cf * c
    i = sigmoid(a_i)
    f = sigmoid(a_f)
    g = tanh(a_g)
    c_new = f * c + i * g
    if PEEPHOLE:
        a_o += w_co * c_new
    o = sigmoid(a_o)
    tanh_c = tanh(c_new)
    return i, f, g, o, c_new, tanh_c, o * tanh_c


def lstm_backward(dh, dc_next, i, f, g, o, tanh_c, c_prev, w_ci, w_cf, w_co):
    """Gradients through one LSTM unit.

    ``dh`` and ``dc_next`` reach the unit's new h and c. Returns
    ``(da_i, da_f, da_g, da_o, dc_prev)``: the gate pre-activation gradients and the
    gradient reaching the previous cell state (peephole paths included).
    """
    da_o = dh * tanh_c * o * (ONE - o)
    dc = dc_next + dh * o * (ONE - tanh_c * tanh_c)
    if PEEPHOLE:
        dc += da_o * w_co
    da_i = dc * g * i * (ONE - i)
    da_f = dc * c_prev * f * (ONE - f)
    da_g = dc * i * (ONE - g * g)
    dc_prev = dc * f
    if PEEPHOLE:
        dc_prev += da_i * w_ci + da_f * w_cf
    return da_i, da_f, da_g, da_o, dc_prev


def gru_candidate(a_n, z, h):
    """The GRU's candidate n = tanh(a_n) and new state h' = (1 − z) n + z h, as ``(n, h_new)``.

    ``a_n`` is ``W_in x + b_in + r ⊙ (W_hn h + b_hn)`` (reset_after) or
    ``W_in x + b_in + W_hn (r ⊙ h) + b_hn`` (reset_before).
    """
    n = tanh(a_n)
    return n, n + z * (h - n)


def gru_backward(dh, z, n, h):
    """Gradients through h' = (1 − z) n + z h and n = tanh(a_n).

    Returns ``(da_z, da_n, dh_direct)``: the z and candidate pre-activation gradients and
    the part of the gradient reaching h that does not pass through a weight matrix.
    """
    da_n = dh * (ONE - z) * (ONE - n * n)
    da_z = dh * (h - n) * z * (ONE - z)
    return da_z, da_n, dh * z


def sigmoid_gradient(d_out, s):
    """The gradient reaching a logistic gate's pre-activation, given its value ``s``."""
    return d_out * s * (ONE - s)


def rnn_forward(a):
    """h' = tanh(a), or relu(a) with ``RELU`` (a NaN stays NaN)."""
    if RELU:
        return ZERO if a < ZERO else a
    return tanh(a)


def rnn_backward(dh, h_new):
    """The gradient reaching the pre-activation, from the unit's output ``h_new``."""
    if RELU:
        return dh if h_new > ZERO else ZERO
    return dh * (ONE - h_new * h_new)
