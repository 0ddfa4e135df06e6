"""Every block of rows of a "sequences" plan in one parallel region, each running the compiled
rows loop (:func:`.loops.forward_rows`, :func:`.loops.backward_rows`) through its address
(:mod:`.calls`): the region links nothing of the loop, so it is compiled once per dtype and
direction for every cell, and the rows loop once, for one block (the calling thread) as for several.
"""
from numba import njit, prange

from .calls import AddressBook, address_of, compiled_call, type_key

call_rows_loop = compiled_call(6)


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def every_block(address, arrays, t0, t1, row_bounds, work):
    """The rows loop at ``address`` on every block of rows: block k's rows are
    [row_bounds[k], row_bounds[k + 1]), its scratch ``work[k]``.

    Parameters
    ----------
    address : int, :func:`rows_loop_address`
    arrays : .steps.ForwardArrays or .steps.BackwardArrays
    t0, t1 : int, the segment's steps
    row_bounds : ndarray (blocks + 1,) int64
    work : ndarray (blocks, n)
    """
    for block in prange(row_bounds.shape[0] - 1):
        call_rows_loop(address, arrays, t0, t1, row_bounds[block], row_bounds[block + 1], work[block])


_rows_loops = AddressBook()


def rows_loop_address(loop, arrays):
    """The address of the rows loop ``loop`` (a dispatcher) compiled for ``arrays``."""
    return _rows_loops.get((loop, type_key(arrays)), lambda: address_of(loop, arrays, 0, 0, 0, 0, arrays.work[0]))
