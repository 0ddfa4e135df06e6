"""The unit-value helpers of :mod:`fastlstm.backends.unit_values`, compiled for ``numba.cuda``.

Under the CUDA simulator, which runs kernels as Python, their plain Python bodies run.
"""
import os

from ..unit_values import at, gather_gates, gather_planes, gather_vectors, register, scatter_planes, tuple_setitem

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    from numba.cuda.cpython.unsafe.tuple import tuple_setitem  # noqa: F811  the compiled one
    from numba.cuda.extending import overload

    register(overload, tuple_setitem, "cuda")

__all__ = ["at", "gather_gates", "gather_planes", "gather_vectors", "scatter_planes", "tuple_setitem"]
