"""Every block of rows of a "sequences" plan in one parallel region, each running the compiled
rows loop (:func:`.loops.forward_rows`, :func:`.loops.backward_rows`) through its address.

A parallel region of Numba's is compiled as three functions more (the region's body and two
wrappers), each optimised again with all the code it links: a region calling the rows loop
directly re-compiles the whole loop three times, seconds of a first call. This region calls
the loop through the address of its compiled code, known only when it runs, so it links
nothing: it is compiled once per dtype and direction, for every cell, and the rows loop once,
for one block (the calling thread) as for several.
"""
from numba import njit, prange, types
from numba._dispatcher import compute_fingerprint
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def _call_rows_loop(typingctx, address, arrays, t0, t1, r0, r1, work):
    """``loop(arrays, t0, t1, r0, r1, work)`` for the compiled rows loop whose native code is at
    ``address`` (compiled for these argument types: Numba's calling convention)."""
    arguments = (arrays, types.intp, types.intp, types.intp, types.intp, work)
    signature = types.void(types.intp, *arguments)

    def codegen(context, builder, signature, values):
        function_type = context.call_conv.get_function_type(types.none, arguments)
        pointer = builder.inttoptr(values[0], function_type.as_pointer())
        status, _ = context.call_conv.call_function(builder, pointer, types.none, arguments, values[1:])
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        return context.get_dummy_value()
    return signature, codegen


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def every_block(address, arrays, t0, t1, row_bounds, work):
    """The rows loop at ``address`` on every block of rows: block k's rows are
    [row_bounds[k], row_bounds[k + 1]), its scratch ``work[k]``.

    Parameters
    ----------
    address : int, :func:`loop_address` of the rows loop
    arrays : .steps.ForwardArrays or .steps.BackwardArrays
    t0, t1 : int, the segment's steps
    row_bounds : ndarray (blocks + 1,) int64
    work : ndarray (blocks, n)
    """
    for block in prange(row_bounds.shape[0] - 1):
        _call_rows_loop(address, arrays, t0, t1, row_bounds[block], row_bounds[block + 1], work[block])


_addresses = {}


def loop_address(loop, arrays, work):
    """The address of the native code of ``loop`` (a rows loop's dispatcher) compiled for
    ``arrays`` and one block's ``work`` (compiling it if it is not yet), remembered per the
    arguments' types (Numba's fingerprint of them, as its dispatcher keys them: a microsecond,
    where typing them takes tens)."""
    try:
        key = (loop, type(arrays), compute_fingerprint(arrays), compute_fingerprint(work))
    except (TypeError, ValueError):    # a type without a fingerprint: typed every call
        key = None
    if key not in _addresses:
        signature = (loop.typeof_pyval(arrays), types.intp, types.intp, types.intp, types.intp,
                     loop.typeof_pyval(work))
        loop.compile(signature)
        compiled = loop.overloads[signature]
        address = compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)
        if key is None:
            return address
        _addresses[key] = address
    return _addresses[key]
