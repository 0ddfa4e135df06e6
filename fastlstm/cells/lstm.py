"""The LSTM cell (gate order i, f, g, o, as PyTorch), optionally with peephole connections.

    (the equations: ``EQUATIONS`` below)

Without peepholes (the default) the ``w_c*`` terms are absent. The peepholes are Gers &
Schmidhuber (2000) as Graves (2013) writes them. Both biases fold into the input projection.
"""
from ..rebinding import Unbound
from .bound import ONE, ZERO, sigmoid, tanh
from .spec import Activation, BackwardPhase, CellSpec, ForwardPhase, VectorGradient

# σ the logistic sigmoid, ⊙ the element-wise product, x the step input, h (and c) the state
EQUATIONS = """\
    i  = σ(W_ii x + b_ii + W_hi h + b_hi + w_ci ⊙ c)
    f  = σ(W_if x + b_if + W_hf h + b_hf + w_cf ⊙ c)
    g  = tanh(W_ig x + b_ig + W_hg h + b_hg)
    c' = f ⊙ c + i ⊙ g
    o  = σ(W_io x + b_io + W_ho h + b_ho + w_co ⊙ c')      # the output gate sees the new c
    h' = o ⊙ tanh(c')
"""

OPTIONS = {"peephole": False}
VARIANTS = {"lstm": {}, "lstm_peephole": {"peephole": True}}

# bound per compiled copy: the dtype's activations and constants, and the option
PEEPHOLE = Unbound("PEEPHOLE")


def check_options(peephole):
    """Raise TypeError unless ``peephole`` is a bool; return the options as a dict."""
    from ..validation import check_bool

    return {"peephole": check_bool("peephole", peephole)}


def spec(peephole):
    """The :class:`CellSpec` of an LSTM with or without peepholes."""
    return CellSpec(
        kind="lstm",
        label="LSTM+peephole" if peephole else "LSTM",
        gates=("i", "f", "g", "o"),
        states=("h", "c"),
        vectors=("weight_ci", "weight_cf", "weight_co") if peephole else (),
        planes=("i", "f", "g", "o", "tanh_c"),
        folded_gates=4,
        forward=(ForwardPhase((0, 4)),),
        backward=(BackwardPhase((0, 4), (0, 4)),),
        reads_new_state=(False, peephole),   # ∂weight_co reads c'
        recurrent_gradient_differs=False,
        vector_gradients=(VectorGradient(0, 0, 1, False), VectorGradient(1, 1, 1, False),
                          VectorGradient(2, 3, 1, True)) if peephole else (),
        activations=(Activation("input", 0, "sigmoid"), Activation("forget", 1, "sigmoid"),
                     Activation("cell", 2, "tanh"), Activation("output", 3, "sigmoid")),
        bindings=(("PEEPHOLE", bool(peephole)),),
    )


def forward(phase, ax, ah, state, rec, vectors, saved):
    """One unit's step: ``((h', c'), (i, f, g, o, tanh c'))``."""
    c = state[1]
    a_i = ax[0] + ah[0]
    a_f = ax[1] + ah[1]
    a_g = ax[2] + ah[2]
    a_o = ax[3] + ah[3]
    if PEEPHOLE:
        w_ci, w_cf, w_co = vectors
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
    return (o * tanh_c, c_new), (i, f, g, o, tanh_c)


def backward(phase, dnew, saved, state, new, rec, vectors, projected):
    """One unit's gradients: ``(da, da, (0, ∂c), 0)`` with ``da`` the four gates' (both sides)."""
    dh, dc_next = dnew
    i, f, g, o, tanh_c = saved
    c_prev = state[1]
    da_o = dh * tanh_c * o * (ONE - o)
    dc = dc_next + dh * o * (ONE - tanh_c * tanh_c)
    if PEEPHOLE:
        w_ci, w_cf, w_co = vectors
        dc += da_o * w_co
    da_i = dc * g * i * (ONE - i)
    da_f = dc * c_prev * f * (ONE - f)
    da_g = dc * i * (ONE - g * g)
    dc_prev = dc * f
    if PEEPHOLE:
        dc_prev += da_i * w_ci + da_f * w_cf
    da = (da_i, da_f, da_g, da_o)
    return da, da, (ZERO, dc_prev), ZERO
