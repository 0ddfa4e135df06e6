"""Hidden units split into blocks, one per thread, and the weights packed per block.

Inside a time step every thread owns a contiguous block of hidden units ``[u0, u1)`` for
all running sequences: it computes the recurrent projections of its units' gates and
then their gate math (backward: its units' gate derivatives, then its units' columns of
the gradient reaching the previous state). A thread therefore reads only its own share
of the recurrent weights (which stay in its cache from step to step when they fit), and
a batch of one sequence is split across the cores as well as a batch of many.
"""
import numpy as np


def unit_bounds(hidden, blocks):
    """(blocks + 1,) int64 boundaries splitting ``hidden`` units into near-equal blocks."""
    blocks = max(1, min(blocks, hidden))
    return (np.arange(blocks + 1) * hidden) // blocks


def pack_backward_panels(weight, bounds):
    """Each block's columns of ``weight``: the right operand of ``dgates @ panel``.

    Parameters
    ----------
    weight : ndarray, shape (R, H)
    bounds : ndarray, shape (blocks + 1,)

    Returns
    -------
    ndarray, shape (R·H,): block [u0, u1) holds ``weight[:, u0:u1]``, (R, u1 − u0).
    """
    return np.concatenate([np.ascontiguousarray(weight[:, u0:u1]).ravel()
                           for u0, u1 in zip(bounds[:-1], bounds[1:])])
