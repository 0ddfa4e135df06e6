"""The shared scalar activations (:mod:`fastlstm.cells.activations`) compiled for the CPU, per dtype.

float64 uses the library ``exp`` for sigmoid and ``tanh_float64`` (≤ 2 ulp, 40% of
the library ``tanh``'s time); float32 uses the rational approximations, which LLVM
vectorises (``math.exp``/``math.tanh`` are scalar library calls: no SVML).
``error_model="numpy"``: a division by zero follows IEEE rules instead of raising, which
is what lets a loop containing one vectorise.
"""
import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from ...cells import activations as scalar
from .tiles import VECTOR_BYTES

# The cell math's compile flags: LLVM may fuse a product and a sum into one FMA, rounded once.
# Measured on an LSTM's gate pass (float32, AVX-512): 13 % faster; the activations' error bounds
# (fastlstm.cells.activations) are measured compiled so, by tests/test_activations.py too.
# Every copy the cell math is inlined into compiles with them (the flags are the caller's).
FASTMATH = frozenset({"contract"})

# LLVM's x86 targets vectorise loops with 256-bit registers even where AVX-512 has 512 (a guard
# against the clock drops of early AVX-512 cores); the tile walk runs 512-bit FMAs anyway. An
# LSTM's gate pass (float32, 16 × 256 units, one core, the same bits): 4.45 → 3.55 ns a unit.
_WIDEST_VECTORS = f'"prefer-vector-width"="{8 * VECTOR_BYTES}"'


@intrinsic
def widest_vectors(typingctx):
    """Let LLVM vectorise the function this is called in (not inlined anywhere: the attribute is
    the function's) with the host's widest SIMD registers: its ``prefer-vector-width``. Where
    llvmlite's function attributes cannot carry it, nothing (the loops keep LLVM's choice)."""
    def codegen(context, builder, signature, arguments):
        attributes = builder.function.attributes
        if isinstance(attributes, set) and hasattr(attributes, "_to_list"):
            set.add(attributes, _WIDEST_VECTORS)     # llvmlite accepts only its known names through add()
        return context.get_dummy_value()
    return types.void(), codegen


_compiled = {}


def compiled_activations(dtype):
    """``sigmoid`` and ``tanh`` for ``dtype``, compiled once per process, as a dict."""
    dtype = np.dtype(dtype)
    if dtype not in _compiled:
        _compiled[dtype] = scalar.activations_for(dtype, njit(cache=True, inline="always", error_model="numpy",
                                                              fastmath=set(FASTMATH)))
    return dict(_compiled[dtype])
