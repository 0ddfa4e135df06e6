"""The GRU cell (gate order r, z, n, as PyTorch), in both published variants.

    (the equations: ``EQUATIONS`` below)

``reset_after=True`` is PyTorch's, cuDNN's and ONNX's ``linear_before_reset=1``; ``b_hn`` then
stays inside the step (it is multiplied by r), and the tape keeps W_hn h + b_hn.
``reset_after=False`` is Cho et al. (2014), ONNX's ``linear_before_reset=0`` and Keras'
``reset_after=False``: the candidate's projection needs every unit's r, so a step has two
phases (r and z, then the projection of r ⊙ h and n), and the tape keeps r ⊙ h.
"""
from ..rebinding import Unbound
from .bound import ONE, ZERO, sigmoid, tanh
from .spec import Activation, BackwardPhase, CellSpec, ForwardPhase

# σ the logistic sigmoid, ⊙ the element-wise product, x the step input, h (and c) the state
EQUATIONS = """\
    r  = σ(W_ir x + b_ir + W_hr h + b_hr)
    z  = σ(W_iz x + b_iz + W_hz h + b_hz)
    n  = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))       # reset_after=True (default)
    n  = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)       # reset_after=False
    h' = (1 − z) ⊙ n + z ⊙ h
"""

OPTIONS = {"reset_after": True}
VARIANTS = {"gru": {}, "gru_reset_before": {"reset_after": False}}

RESET_AFTER = Unbound("RESET_AFTER")

_RESET_H = 3   # the reset-before tape plane r ⊙ h, projected in the second phase


def check_options(reset_after):
    """Raise TypeError unless ``reset_after`` is a bool; return the options as a dict."""
    from ..validation import check_bool

    return {"reset_after": check_bool("reset_after", reset_after)}


def spec(reset_after):
    """The :class:`CellSpec` of a GRU with the reset gate after or before the projection."""
    if reset_after:
        forward_phases = (ForwardPhase((0, 3)),)
        backward_phases = (BackwardPhase((0, 3), (0, 3)),)
    else:
        forward_phases = (ForwardPhase((0, 2)), ForwardPhase((2, 3), source=_RESET_H))
        # z and n from dh; then r from what n's projection sends back to r ⊙ h
        backward_phases = (BackwardPhase((1, 3), (2, 3)), BackwardPhase((0, 1), (0, 2)))
    return CellSpec(
        kind="gru",
        label="GRU" if reset_after else "GRU(reset_after=False)",
        gates=("r", "z", "n"),
        states=("h",),
        vectors=(),
        planes=("r", "z", "n", "hn" if reset_after else "rh"),
        folded_gates=2 if reset_after else 3,
        forward=forward_phases,
        backward=backward_phases,
        reads_new_state=(False,),
        recurrent_gradient_differs=bool(reset_after),   # ∂(W_hn h + b_hn) = r ⊙ ∂a_n
        vector_gradients=(),
        activations=(Activation("reset", 0, "sigmoid"), Activation("update", 1, "sigmoid"),
                     Activation("candidate", 2, "tanh")),
        bindings=(("RESET_AFTER", bool(reset_after)),),
    )


def forward(phase, ax, ah, state, rec, vectors, saved):
    """One unit's step (phase of a step): ``((h',), (r, z, n, W_hn h + b_hn or r ⊙ h))``.

    ``rec`` is h ⊙ m; in the reset-before variant's second phase ``ah[2]`` is W_hn (r ⊙ rec).
    """
    h = state[0]
    if RESET_AFTER:
        r = sigmoid(ax[0] + ah[0])
        z = sigmoid(ax[1] + ah[1])
        hn = ah[2]
        n = tanh(ax[2] + r * hn)
        return (n + z * (h - n),), (r, z, n, hn)
    if phase == 0:
        r = sigmoid(ax[0] + ah[0])
        return state, (r, sigmoid(ax[1] + ah[1]), ZERO, r * rec)
    r, z, _, rh = saved
    n = tanh(ax[2] + ah[2])
    return (n + z * (h - n),), (r, z, n, rh)


def backward(phase, dnew, saved, state, new, rec, vectors, projected):
    """One unit's gradients (phase of a step).

    reset_after: r, z, n at once; ``dah`` of n is r ⊙ ``dax`` of n. reset_before: z and n
    first; then, from ``projected`` = ∂L/∂(r ⊙ rec), the reset gate and the direct part of
    ∂L/∂rec.
    """
    r, z, n, plane = saved
    h = state[0]
    if RESET_AFTER or phase == 0:
        dh = dnew[0]
        da_n = dh * (ONE - z) * (ONE - n * n)
        da_z = dh * (h - n) * z * (ONE - z)
        if RESET_AFTER:
            da_r = da_n * plane * r * (ONE - r)
            return (da_r, da_z, da_n), (da_r, da_z, da_n * r), (dh * z,), ZERO
        return (ZERO, da_z, da_n), (ZERO, da_z, da_n), (dh * z,), ZERO
    da_r = projected * rec * r * (ONE - r)
    return (da_r, ZERO, ZERO), (da_r, ZERO, ZERO), (ZERO,), projected * r
