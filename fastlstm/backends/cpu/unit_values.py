"""The unit-value helpers of :mod:`fastlstm.backends.unit_values`, compiled for the CPU, and how a
block's loop over its units is split into SIMD vectors."""
from numba import njit
from numba.core.extending import overload
from numba.cpython.unsafe.tuple import tuple_setitem

from ..unit_values import (at, gather_gates, gather_planes, gather_strided, gather_vectors, register,
                           scatter_planes)

register(overload, tuple_setitem, "cpu")

__all__ = ["at", "gather_gates", "gather_planes", "gather_strided", "gather_vectors", "scatter_planes",
           "tuple_setitem", "vector_part", "vector_parts", "vector_tail"]


@njit(inline="always")
def vector_tail(hidden, lanes):
    """Whether a layer of ``hidden`` units leaves, past its last whole vector of ``lanes``, units
    worth one more whole vector (:func:`vector_parts`)."""
    return hidden > lanes and 4 * (hidden % lanes) >= lanes


@njit(inline="always")
def vector_parts(width, lanes, overlap):
    """How many loops run a block's ``width`` units, SIMD vectors of ``lanes``: 2 where the units
    past the last whole vector may run as one more whole vector, ending at the block's last unit
    (``overlap``: the loop's work on a unit writes the same values however often it runs), and
    are at least a quarter of a vector; else 1. A unit of the vectorised loop's scalar remainder
    costs several of a vector's (measured: an LSTM step of 3 rows and 31 units 1.5 µs, of 32
    units 0.9 µs; 0.9 µs at 31 with the overlap), a whole vector about three."""
    return 2 if overlap and vector_tail(width, lanes) else 1


@njit(inline="always")
def vector_part(part, parts, width, lanes):
    """(first unit, units) of loop ``part`` of ``parts`` (:func:`vector_parts`): every unit; or
    the whole vectors, then the last ``lanes`` units (recomputing some of the first loop's)."""
    if parts == 1:
        return 0, width
    if part == 0:
        return 0, width - width % lanes
    return width - lanes, lanes
