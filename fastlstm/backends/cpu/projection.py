"""The recurrent projections of one block of rows and units, forward and backward.

Both run the tile kernel (:func:`.tiles.product_at`) on the recurrent weights packed once per call, per unit block
and phase (:func:`.units.forward_panels`, :func:`.units.backward_panels`): no BLAS call per
step (which would re-pack the weights every time), the same kernel for one row as for many.

Forward, a phase's projection of the block's rows onto its gates' rows of ``weight_hh`` for
the block's units is left in the block's work as (row, gate, unit), :func:`projected_at`;
backward, a phase's gate gradients go back through the same rows of ``weight_hh`` to the
block's units of h.
"""
from numba import njit

from .tiles import product_at


@njit(cache=True, inline="always", error_model="numpy")
def project(walk_code, source, panels, start, gates, width, out_flat):
    """Project the running rows' recurrent input onto ``gates`` gates of a block of units.

    Parameters
    ----------
    walk_code : int, :func:`.tiles.walk_address` of the dtype
    source : ndarray, shape (rows, H), rows contiguous: what ``weight_hh`` multiplies
    panels : ndarray, flat, the call's forward panels; the block's and phase's begin at ``start``
    start : int
    gates, width : int, the phase's gates and the block's units
    out_flat : ndarray, flat, at least rows·gates·width values; afterwards (gate g, row r, unit
        k of the block) is at :func:`projected_at` (g, r, k).
    """
    rows = source.shape[0]
    product_at(walk_code, source, panels[start:], out_flat[:rows * gates * width].reshape(rows, gates * width))


@njit(cache=True, inline="always", error_model="numpy")
def projected_at(gate, row, k, gates, width):
    """Where :func:`project` left (gate, row, unit k of the block) of ``gates`` gates for a block
    ``width`` units wide."""
    return (row * gates + gate) * width + k
