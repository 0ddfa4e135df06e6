"""The unit-value helpers of :mod:`fastlstm.backends.unit_values`, compiled for the CPU."""
from numba.core.extending import overload
from numba.cpython.unsafe.tuple import tuple_setitem

from ..unit_values import (at, gather_gates, gather_planes, gather_strided, gather_vectors, register,
                           scatter_planes)

register(overload, tuple_setitem, "cpu")

__all__ = ["at", "gather_gates", "gather_planes", "gather_strided", "gather_vectors", "scatter_planes",
           "tuple_setitem"]
