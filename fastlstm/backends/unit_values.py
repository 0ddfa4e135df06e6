"""One hidden unit's values as tuples, for the cells' scalar math, and back into arrays.

The time loops of both backends are generic over the cells: at each (sequence r, unit u) they
gather the unit's gate pre-activations, states, tape planes and element-wise parameters into
tuples as long as the cell has of each (given as tuples of zeros: their length is a
compile-time constant), call the cell's math and scatter what it returns. The functions below
are the plain Python meaning, which the CUDA simulator runs; :func:`register` gives each a
compiled overload for one Numba target (``"cpu"`` from :mod:`.cpu.unit_values`, ``"cuda"``
from :mod:`.cuda.unit_values`), in which an empty tuple (the RNN keeps no tape planes)
compiles to nothing and, on the CPU, LLVM keeps the tuples in registers and vectorises the
loop over u.

Every compiled index goes through :func:`at`: Numba wraps a negative signed index around (a
select per access), which turns consecutive loads into gathers and stops the vectoriser; an
unsigned index has no such check. Indices are computed as signed integers and converted at
the access, never mixed with unsigned ones in arithmetic (Numba would promote the sum to
float64).
"""
from numba import types


def at(index):
    """``index`` as an unsigned integer (compiled), for an array access without wrap-around."""
    return index


def tuple_setitem(values, index, value):
    """A copy of the tuple ``values`` with entry ``index`` replaced by ``value``."""
    return values[:index] + (value,) + values[index + 1:]


def gather_planes(array, i, r, u, zeros):
    """``(array[0, i, r, u], array[1, i, r, u], …)``, as many values as ``zeros`` has."""
    return tuple(array[k, i, r, u] for k in range(len(zeros)))


def gather_vectors(array, u, zeros):
    """``(array[0, u], array[1, u], …)``, as many values as ``zeros`` has."""
    return tuple(array[k, u] for k in range(len(zeros)))


def gather_gates(array, r, u, width, zeros):
    """``(array[r, u], array[r, width + u], array[r, 2·width + u], …)``: a row's gate blocks."""
    return tuple(array[r, g * width + u] for g in range(len(zeros)))


def gather_strided(array, start, stride, zeros):
    """``(array[start], array[start + stride], array[start + 2·stride], …)``, as many as ``zeros`` has."""
    return tuple(array[start + g * stride] for g in range(len(zeros)))


def scatter_planes(array, i, r, u, values):
    """``array[k, i, r, u] = values[k]`` for every k."""
    for k in range(len(values)):
        array[k, i, r, u] = values[k]


def _length(tuple_type):
    return len(tuple_type.types) if hasattr(tuple_type, "types") else tuple_type.count


def _tuple_function(name, parameters, entry, count):
    """A function ``name(parameters)`` returning the tuple of ``entry.format(g=g)`` for g < ``count``,
    written out entry by entry: a loop of ``tuple_setitem`` at a run-time index is a tuple in memory
    for LLVM, which then keeps the loop over the units scalar."""
    body = "".join(entry.format(g=g) + ", " for g in range(count))
    namespace = {"at": at}
    exec(f"def {name}({parameters}):\n    return ({body})\n", namespace)
    return namespace[name]


def register(overload, setitem, target):
    """Give every function above a compiled overload for ``target``.

    Parameters
    ----------
    overload : the target's ``numba...extending.overload``
    setitem : the target's compiled ``tuple_setitem`` (``numba...unsafe.tuple``)
    target : {"cpu", "cuda"}
    """
    @overload(at, target=target, inline="always")
    def _at(index):
        return lambda index: types.uintp(index)

    @overload(gather_planes, target=target)
    def _gather_planes(array, i, r, u, zeros):
        if _length(zeros) == 0:
            return lambda array, i, r, u, zeros: zeros

        def impl(array, i, r, u, zeros):
            out = zeros
            for k in range(len(zeros)):
                out = setitem(out, k, array[at(k), at(i), at(r), at(u)])
            return out
        return impl

    @overload(gather_vectors, target=target)
    def _gather_vectors(array, u, zeros):
        if _length(zeros) == 0:
            return lambda array, u, zeros: zeros

        def impl(array, u, zeros):
            out = zeros
            for k in range(len(zeros)):
                out = setitem(out, k, array[at(k), at(u)])
            return out
        return impl

    @overload(gather_gates, target=target)
    def _gather_gates(array, r, u, width, zeros):
        def impl(array, r, u, width, zeros):
            out = zeros
            for g in range(len(zeros)):
                out = setitem(out, g, array[at(r), at(g * width + u)])
            return out
        return impl

    @overload(gather_strided, target=target)
    def _gather_strided(array, start, stride, zeros):
        return _tuple_function("gather_strided", "array, start, stride, zeros", "array[at(start + {g} * stride)]",
                               _length(zeros))

    @overload(scatter_planes, target=target)
    def _scatter_planes(array, i, r, u, values):
        if _length(values) == 0:
            return lambda array, i, r, u, values: None

        def impl(array, i, r, u, values):
            for k in range(len(values)):
                array[at(k), at(i), at(r), at(u)] = values[k]
        return impl
