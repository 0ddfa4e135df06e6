"""The CPU backend's one parallel region, and how every piece of parallel work reaches it.

Work shared among threads is a *block function* ``f(block, address, i0, …, i6)``: block
``block`` of some work whose arrays are at ``address`` (one value: an array, or a tuple or
structure of arrays and ints) and whose scalars are the integers i0 … i6. A block function
is a template that reads its arrays with ``value_at(address, VALUES)`` and is compiled once
per type of those values (:func:`block_code`); its caller passes them with
:func:`.calls.address_of_value`.

:func:`each_block` runs a block function's blocks in one parallel region (Numba's threads; its
end is the barrier). It takes integers only, so it is compiled once for every cell, dtype, loop
and product of the backend: a parallel region is the costliest code Numba compiles (its body,
a scheduling wrapper and the function around them, each linking what it calls), and a region
per loop, product and type of arrays cost seconds of a first call. :func:`run_blocks` runs
blocks from Python, in parallel or one after the other in the calling thread (the same blocks,
so the same bits), through a small entry compiled per type of the values (Numba's own unboxing
of the arrays: a microsecond or two, where reading them in Python took one per array).
"""
import hashlib

from numba import njit, prange, typeof

from ...rebinding import Unbound, kernel_stamp, rebind
from .calls import (COMPILED_CALLERS_ONLY, AddressBook, address_of, address_of_value, compile_for, compiled_call,
                    compiling_only_for, type_key)

INTEGERS = 7                                         # the scalars every block function takes
call_block = compiled_call(2 + INTEGERS)             # block_function(block, address, i0, …, i6)
call_each_block = compiled_call(3 + INTEGERS)        # each_block(code, count, address, i0, …, i6)

# The type of the values a compiled copy of a block function reads (bound per copy).
VALUES = Unbound("VALUES")

_OPTIONS = dict(cache=True, nogil=True, error_model="numpy")


def stamped(template, suffix=None, options=None, **bindings):
    """A copy of ``template`` with ``bindings`` (:func:`~fastlstm.rebinding.rebind`), compiled with
    the backend's options (``cache=True``, ``nogil``, NumPy's error model) and ``options``, named
    with ``suffix`` and :func:`~fastlstm.rebinding.kernel_stamp`: its machine code holds what it
    binds and the call intrinsics of :mod:`.calls` and of this module, so a cached copy must not
    outlive a change to any of them (Numba's cache checks only the template's own source file)."""
    name = kernel_stamp() if suffix is None else f"{suffix}_{kernel_stamp()}"
    return njit(**_OPTIONS, **(options or {}))(rebind(template, name, **bindings))


def _each_block(code, count, address, i0, i1, i2, i3, i4, i5, i6):
    """Blocks 0 … count − 1 of the block function at ``code``, on the values at ``address``
    with the integers i0 … i6, at once."""
    for block in prange(count):
        call_block(code, block, address, i0, i1, i2, i3, i4, i5, i6)


each_block = stamped(_each_block, options=dict(parallel=True, **COMPILED_CALLERS_ONLY))


def _all_blocks(each_block_code, code, count, address, i0, i1, i2, i3, i4, i5, i6):
    """Blocks 0 … count − 1 of the block function at ``code``: in one parallel region
    (:func:`each_block` at ``each_block_code``) if that is given and there are several, else one
    after the other in this thread."""
    if each_block_code != 0 and count > 1:
        call_each_block(each_block_code, code, count, address, i0, i1, i2, i3, i4, i5, i6)
    else:
        for block in range(count):
            call_block(code, block, address, i0, i1, i2, i3, i4, i5, i6)


all_blocks = njit(inline="always")(_all_blocks)


def _enter_blocks(each_block_code, code, count, values, i0, i1, i2, i3, i4, i5, i6):
    all_blocks(each_block_code, code, count, address_of_value(values), i0, i1, i2, i3, i4, i5, i6)


_run_blocks = stamped(_enter_blocks)


def run_blocks(template, count, values, *integers, parallel=True):
    """Run the blocks 0 … count − 1 of block function ``template`` on ``values`` (arrays, ints and
    tuples of them) with up to seven ``integers``, from Python: in one parallel region if
    ``parallel`` and there are several, else one after the other in this thread."""
    blocks_runner(template, count, values, *integers, parallel=parallel)(values)


def blocks_runner(template, count, values, *integers, parallel=True):
    """``run(values)``: :func:`run_blocks` with these arguments, on any values of the type of
    ``values``, its compiled block function and region found once."""
    code = block_code(template, values)
    each = each_block_code() if parallel and count > 1 else 0
    integers += (0,) * (INTEGERS - len(integers))
    if compiling_only_for() is not None:
        return lambda values: compile_for(_run_blocks, each, code, count, values, *integers)
    return lambda values: _run_blocks(each, code, count, values, *integers)


_addresses = AddressBook()


def each_block_code():
    """The address of :func:`each_block` (compiled, or loaded from Numba's cache, on first use)."""
    return _addresses.get(("each block",), lambda: address_of(each_block, *(0,) * (3 + INTEGERS)))


def block_code(template, values, key=None):
    """The address of block function ``template`` compiled for the type of ``values`` (a copy
    binding ``VALUES``, named after the type, so that Numba's cache keeps each); ``key``: a key
    equal for values of one type only, if known (else :func:`.calls.type_key` of ``values``)."""
    def compile_copy():
        values_type = typeof(values)
        copy = stamped(template, type_name(values_type), COMPILED_CALLERS_ONLY, VALUES=values_type)
        return address_of(copy, *(0,) * (2 + INTEGERS))
    return _addresses.get((template, type_key(values) if key is None else key), compile_copy)


def type_name(value_type):
    """A short name of the Numba type ``value_type`` for the copies compiled per type (their
    names keep each type's copy apart in Numba's cache)."""
    return hashlib.sha1(str(value_type).encode()).hexdigest()[:12]
