"""Calling compiled functions through the addresses of their machine code.

A compiled function that calls another by name links the callee's code and optimises it again
as part of itself; in a parallel region Numba compiles the region's body and two wrappers, each
linking everything it calls, and types the body twice (one more compiled copy of each callee).
The kernels call the phases of a step (:mod:`.loops`), the rows loop, the tile walk
(:mod:`.tiles`) and the blocks of the backend's one parallel region (:mod:`.regions`) through
their addresses instead, passed in at run time: each piece is compiled once, alone, and what
calls it links nothing of it.

The callee is compiled by :func:`address_of` for the types of the values it will be given (the
caller's values are converted to those types: integers, and arrays of the same dimensions and
dtype, whose layout Numba passes alike), and called with Numba's own calling convention.

A function compiled once for callers of every type passes their values on by address too:
:func:`address_of_value` gives the address of a value on a compiled caller's stack (valid until
the caller returns), and :func:`value_at` reads it back in a callee compiled for its type;
:class:`Stored` keeps a value at an address of its own, for as long as it lives.
"""
import contextlib
import functools
import threading

import numpy as np
from numba import njit, typeof, types
from numba.core import cgutils
from numba.extending import intrinsic


# Options of a function called only from compiled code (directly, or through its address): no
# wrapper that converts Python objects, nor a C one (each a function more to compile).
COMPILED_CALLERS_ONLY = dict(no_cpython_wrapper=True, no_cfunc_wrapper=True)


def _call_codegen(context, builder, signature, values):
    callee_types = tuple(types.unliteral(t) for t in signature.args[1:])
    arguments = [context.cast(builder, value, given, taken)
                 for value, given, taken in zip(values[1:], signature.args[1:], callee_types)]
    function_type = context.call_conv.get_function_type(types.none, callee_types)
    pointer = builder.inttoptr(values[0], function_type.as_pointer())
    status, _ = context.call_conv.call_function(builder, pointer, types.none, callee_types, arguments)
    with cgutils.if_unlikely(builder, status.is_error):
        context.call_conv.return_status_propagate(builder, status)
    return context.get_dummy_value()


@functools.lru_cache(maxsize=None)
def compiled_call(count):
    """An intrinsic ``call(address, a0, …, a{count − 1})`` calling the compiled function (returning
    nothing) at ``address`` with those ``count`` arguments. (Numba's intrinsics take no ``*args``.)"""
    names = ", ".join(f"a{k}" for k in range(count))
    namespace = {"types": types, "codegen": _call_codegen}
    exec(f"def call(typingctx, address, {names}):\n"
         f"    return types.void(types.intp, {names}), codegen\n", namespace)
    return intrinsic(namespace["call"])


@intrinsic
def address_of_value(typingctx, value):
    """The address (intp) of a copy of ``value`` in the calling function's frame: valid until that
    function returns, and read back by :func:`value_at` with ``value``'s type."""
    def codegen(context, builder, signature, values):
        slot = cgutils.alloca_once_value(builder, values[0])
        return builder.ptrtoint(slot, context.get_value_type(types.intp))
    return types.intp(value), codegen


def _borrowed(context, builder, value_type, value):
    """``value`` with the memory-manager pointer of each of its arrays set to null: Numba then
    counts no references to them (its reference counts treat null as nothing to count)."""
    if isinstance(value_type, types.Array):
        array = context.make_array(value_type)(context, builder, value=value)
        array.meminfo = cgutils.get_null_value(array.meminfo.type)
        return array._getvalue()
    if isinstance(value_type, types.BaseTuple):
        for index, member_type in enumerate(value_type.types):
            member = _borrowed(context, builder, member_type, builder.extract_value(value, index))
            value = builder.insert_value(value, member, index)
    return value


@intrinsic
def value_at(typingctx, address, kind):
    """The value of type ``kind`` (a type reference: arrays, or tuples and structures of them and
    of numbers) stored at ``address`` by :func:`address_of_value`, its arrays borrowed: valid while
    the function that stored it runs, and costing no reference counting."""
    value_type = kind.instance_type

    def codegen(context, builder, signature, values):
        pointer = builder.inttoptr(values[0], context.get_value_type(value_type).as_pointer())
        return _borrowed(context, builder, value_type, builder.load(pointer))
    return value_type(types.intp, kind), codegen


@intrinsic
def values_at(typingctx, address, count, dtype):
    """The ``count`` values of ``dtype`` (a NumPy scalar type) at ``address`` as a 1-D array,
    borrowed (no reference is counted): valid while what owns that memory holds it."""
    value_type = dtype.instance_type
    array_type = types.Array(value_type, 1, "C")

    def codegen(context, builder, signature, values):
        from numba.np.arrayobj import populate_array

        array = context.make_array(array_type)(context, builder)
        data = builder.inttoptr(values[0], context.get_value_type(value_type).as_pointer())
        size = context.get_constant(types.intp, context.get_abi_sizeof(context.get_value_type(value_type)))
        populate_array(array, data=data, shape=[values[1]], strides=[size], itemsize=size, meminfo=None)
        return array._getvalue()
    return array_type(types.intp, types.intp, dtype), codegen


@intrinsic
def borrowed(typingctx, value):
    """``value`` (an array, or a tuple or structure of arrays and numbers) with its arrays
    borrowed, as :func:`value_at` gives them: no reference counting where it is used, valid while
    the caller holds the original."""
    def codegen(context, builder, signature, values):
        return _borrowed(context, builder, signature.args[0], values[0])
    return value(value), codegen


@intrinsic
def _value_bytes(typingctx, value):
    """The size in bytes of ``value`` as compiled code holds it (what :func:`_store_at` writes)."""
    def codegen(context, builder, signature, values):
        size = context.get_abi_sizeof(context.get_value_type(signature.args[0]))
        return context.get_constant(types.intp, size)
    return types.intp(value), codegen


@intrinsic
def _store_at(typingctx, address, value):
    """Write ``value`` at ``address`` as :func:`value_at` reads it (no reference is counted)."""
    def codegen(context, builder, signature, values):
        pointer = builder.inttoptr(values[0], context.get_value_type(signature.args[1]).as_pointer())
        builder.store(values[1], pointer)
        return context.get_dummy_value()
    return types.void(types.intp, value), codegen


@njit(cache=True)
def _stored_bytes(value):
    """A new byte array holding ``value`` as compiled code holds it."""
    stored = np.empty(_value_bytes(value) + 64, np.uint8)
    _store_at(stored.ctypes.data + (-stored.ctypes.data) % 64, value)
    return stored


class Stored:
    """A value (arrays, numbers, tuples and structures of them) kept at a fixed address, where
    compiled code reads it with :func:`value_at` for as long as this object lives: a call from
    Python then passes one integer, where passing the value converts each of its arrays (a
    microsecond or two for a direction's arrays).

    Attributes
    ----------
    value : the value; held, so that its arrays outlive every read
    address : int
    """

    __slots__ = ("value", "address", "_bytes")

    def __init__(self, value):
        self.value = value
        if compiling_only_for() is not None:     # nowhere: nothing reads it (:func:`compiling_only`)
            compile_for(_stored_bytes, value)
            self._bytes, self.address = None, 0
            return
        self._bytes = _stored_bytes(value)
        self.address = self._bytes.ctypes.data + (-self._bytes.ctypes.data) % 64


try:
    from numba._dispatcher import compute_fingerprint    # what Numba's dispatcher keys its types by
except ImportError:                                      # not a public name: typing is the fallback
    compute_fingerprint = None


def type_key(value):
    """A key that is equal for two values of the same Numba type: Numba's dispatcher's fingerprint
    of it (a microsecond, where typing takes tens), else its type; None for a value with neither."""
    try:
        if compute_fingerprint is not None:
            return type(value), compute_fingerprint(value)
    except (TypeError, ValueError):
        pass
    try:
        return typeof(value)
    except (TypeError, ValueError):
        return None


def address_of(dispatcher, *arguments):
    """The address of ``dispatcher``'s machine code for the types of ``arguments`` (Python ints:
    ``intp``; a Numba type stands for itself), compiling it if need be.

    Parameters
    ----------
    dispatcher : numba Dispatcher, of a function returning nothing
    *arguments : example values of its arguments

    Returns
    -------
    int
    """
    compiles = compiling_only_for()
    if compiles is not None and not compiles(dispatcher):
        return _nothing_address()
    return _compiled_address(dispatcher, tuple(
        types.intp if isinstance(value, int) else value if isinstance(value, types.Type)
        else dispatcher.typeof_pyval(value) for value in arguments))


def _compiled_address(dispatcher, signature):
    """The address of ``dispatcher``'s machine code for ``signature``, compiled if need be."""
    dispatcher.compile(signature)
    compiled = dispatcher.overloads[signature]
    return compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)


class _Dry(threading.local):
    compiles = None      # outside a compiling_only block (a class default: no AttributeError per look-up)


_dry = _Dry()


@contextlib.contextmanager
def compiling_only(compiles):
    """Within the ``with`` block (this thread only), the backend compiles its code and runs none
    of it: a call's Python path goes on as usual to find, by the types of its real arrays, every
    compiled function the call needs, but where it would run one it compiles it instead
    (:func:`compile_for`), and of those it finds, compiles only the ones ``compiles(dispatcher)``
    accepts (the others' addresses are a function that does nothing). What the block computes is
    meaningless and must be dropped; nothing found in it is remembered (:class:`AddressBook`,
    :mod:`.kept`). :mod:`.warming` compiles a process's first call's code this way, in two
    processes at once."""
    previous = _dry.compiles
    _dry.compiles = compiles
    try:
        yield
    finally:
        _dry.compiles = previous


def compiling_only_for():
    """The ``compiles`` of the :func:`compiling_only` block this thread is in, or None (code runs)."""
    return _dry.compiles


def compile_for(dispatcher, *arguments):
    """In a :func:`compiling_only` block, in place of ``dispatcher(*arguments)``: compile it for
    those arguments' types, if the block compiles it."""
    if compiling_only_for()(dispatcher):
        dispatcher.compile(tuple(dispatcher.typeof_pyval(value) for value in arguments))


@njit(cache=True, **COMPILED_CALLERS_ONLY)
def _nothing():
    """What a :func:`compiling_only` block's addresses of code it does not compile point at: never
    called there (nothing runs), and harmless if it were (it reads no argument)."""


@functools.lru_cache(maxsize=1)
def _nothing_address():
    return _compiled_address(_nothing, ())


class AddressBook:
    """Addresses (or arrays of them) found once per key and remembered (see :func:`type_key`)."""

    def __init__(self):
        self._found = {}

    def get(self, key, find):
        """The value remembered under ``key``, or ``find()`` (remembered unless ``key`` holds a None,
        or in a :func:`compiling_only` block)."""
        value = self._found.get(key) if None not in key else None
        if value is None:
            value = find()
            if None not in key and compiling_only_for() is None:
                self._found[key] = value
        return value
