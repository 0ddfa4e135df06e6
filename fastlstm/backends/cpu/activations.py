"""The shared scalar activations (:mod:`fastlstm.cells.activations`) compiled for the CPU, per dtype.

float64 uses the library ``exp`` for sigmoid and ``tanh_float64`` (≤ 2 ulp, 40% of
the library ``tanh``'s time); float32 uses the rational approximations, which LLVM
vectorises (``math.exp``/``math.tanh`` are scalar library calls: no SVML).
``error_model="numpy"``: a division by zero follows IEEE rules instead of raising, which
is what lets a loop containing one vectorise.
"""
import numpy as np
from numba import njit

from ...cells import activations as scalar

_compiled = {}


def compiled_activations(dtype):
    """``sigmoid`` and ``tanh`` for ``dtype``, compiled once per process, as a dict."""
    dtype = np.dtype(dtype)
    if dtype not in _compiled:
        _compiled[dtype] = {name: njit(cache=True, inline="always", error_model="numpy")(function)
                            for name, function in scalar.activations_for(dtype).items()}
    return dict(_compiled[dtype])
