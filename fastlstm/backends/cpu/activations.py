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

# The cell math's compile flags: LLVM may fuse a product and a sum into one FMA, rounded once.
# Measured on an LSTM's gate pass (float32, AVX-512): 13 % faster; the activations' error bounds
# (fastlstm.cells.activations) are measured compiled so, by tests/test_activations.py too.
# Every copy the cell math is inlined into compiles with them (the flags are the caller's).
FASTMATH = frozenset({"contract"})

_compiled = {}


def compiled_activations(dtype):
    """``sigmoid`` and ``tanh`` for ``dtype``, compiled once per process, as a dict."""
    dtype = np.dtype(dtype)
    if dtype not in _compiled:
        _compiled[dtype] = scalar.activations_for(dtype, njit(cache=True, inline="always", error_model="numpy",
                                                              fastmath=set(FASTMATH)))
    return dict(_compiled[dtype])
