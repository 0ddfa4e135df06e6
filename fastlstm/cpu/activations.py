"""The shared scalar activations (``fastlstm.gatemath``) compiled for the CPU, per dtype.

float64 uses the library ``exp`` for sigmoid and ``gatemath.tanh_float64`` (≤ 2 ulp, 40% of
the library ``tanh``'s time); float32 uses the rational approximations, which LLVM
vectorises (``math.exp``/``math.tanh`` are scalar library calls: no SVML).
``error_model="numpy"``: a division by zero follows IEEE rules instead of raising, which
is what lets a loop containing one vectorise.
"""
import numpy as np
from numba import njit

from .. import gatemath


def _compile(function):
    return njit(cache=True, inline="always", error_model="numpy")(function)


_FLOAT64 = {name: _compile(f) for name, f in gatemath.activations_for(np.float64).items()}
_FLOAT32 = {name: _compile(f) for name, f in gatemath.activations_for(np.float32).items()}


# What the step templates import; every compiled copy rebinds them for its dtype.
sigmoid, tanh = _FLOAT64["sigmoid"], _FLOAT64["tanh"]


def bindings_for(dtype):
    """The globals a step template needs for ``dtype``: ``sigmoid``, ``tanh``, ``ONE``, ``ZERO``."""
    dtype = np.dtype(dtype)
    functions = _FLOAT32 if dtype == np.float32 else _FLOAT64
    return dict(functions, ONE=dtype.type(1), ZERO=dtype.type(0))
