"""The plain (Elman) recurrent cell: h' = act(W_ih x + b_ih + W_hh h + b_hh), act tanh or relu.

Nothing is saved on the tape: the derivative of either activation follows from h' itself,
which the backward reads. Both biases fold into the input projection. With ``relu``
activations are unbounded: values beyond the dtype's range become inf (and inf − inf NaN),
as IEEE arithmetic says; a NaN pre-activation stays NaN.
"""
from ..rebinding import Unbound
from .bound import ONE, ZERO, tanh
from .spec import NEW_STATE, Activation, BackwardPhase, CellSpec, ForwardPhase

# act is tanh or relu; x the step input, h the state
EQUATIONS = """\
    h' = act(W_ih x + b_ih + W_hh h + b_hh)
"""

NONLINEARITIES = ("tanh", "relu")
OPTIONS = {"nonlinearity": "tanh"}
VARIANTS = {"rnn_tanh": {}, "rnn_relu": {"nonlinearity": "relu"}}

RELU = Unbound("RELU")


def check_options(nonlinearity):
    """Raise ValueError unless ``nonlinearity`` is "tanh" or "relu"; return the options as a dict."""
    from ..validation import check_choice

    return {"nonlinearity": check_choice("nonlinearity", nonlinearity, NONLINEARITIES)}


def spec(nonlinearity):
    """The :class:`CellSpec` of a tanh or relu RNN."""
    return CellSpec(
        kind="rnn",
        label=f"RNN({nonlinearity})",
        gates=("a",),
        states=("h",),
        vectors=(),
        planes=(),
        folded_gates=1,
        forward=(ForwardPhase((0, 1)),),
        backward=(BackwardPhase((0, 1), (0, 1)),),
        reads_new_state=(True,),   # the activation's derivative, from h'
        recurrent_gradient_differs=False,
        vector_gradients=(),
        activations=(Activation("hidden", NEW_STATE, "relu" if nonlinearity == "relu" else "tanh"),),
        bindings=(("RELU", nonlinearity == "relu"),),
    )


def forward(phase, ax, ah, state, rec, vectors, saved):
    """One unit's step: ``((h',), ())``."""
    a = ax[0] + ah[0]
    if RELU:
        return (ZERO if a < ZERO else a,), ()
    return (tanh(a),), ()


def backward(phase, dnew, saved, state, new, rec, vectors, projected):
    """One unit's gradients: ``((da,), (da,), (0,), 0)``."""
    dh = dnew[0]
    h_new = new[0]
    if RELU:
        da = dh if h_new > ZERO else ZERO
    else:
        da = dh * (ONE - h_new * h_new)
    return (da,), (da,), (ZERO,), ZERO
