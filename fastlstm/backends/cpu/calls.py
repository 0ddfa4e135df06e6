"""Calling compiled functions through the addresses of their machine code.

A compiled function that calls another by name links the callee's code and optimises it again
as part of itself; in a parallel region Numba compiles the region's body and two wrappers, each
linking everything it calls, and types the body twice (one more compiled copy of each callee).
The kernels call the phases of a step (:mod:`.loops`), the rows loop (:mod:`.blocks`) and the
tile walk (:mod:`.tiles`) through their addresses instead, passed in at run time: each piece is
compiled once, alone, and what calls it links nothing of it (a first training call compiled in
16 s before, 8 s after).

The callee is compiled by :func:`address_of` for the types of the values it will be given (the
caller's values are converted to those types: integers, and arrays of the same dimensions and
dtype, whose layout Numba passes alike), and called with Numba's own calling convention.
"""
import functools

from numba import typeof, types
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
    signature = tuple(types.intp if isinstance(value, int) else value if isinstance(value, types.Type)
                      else dispatcher.typeof_pyval(value) for value in arguments)
    dispatcher.compile(signature)
    compiled = dispatcher.overloads[signature]
    return compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)


class AddressBook:
    """Addresses (or arrays of them) found once per key and remembered (see :func:`type_key`)."""

    def __init__(self):
        self._found = {}

    def get(self, key, find):
        """The value remembered under ``key``, or ``find()`` (remembered unless ``key`` holds a None)."""
        value = self._found.get(key) if None not in key else None
        if value is None:
            value = find()
            if None not in key:
                self._found[key] = value
        return value
