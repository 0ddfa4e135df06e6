"""Gate orders of fastlstm's peers, and the block permutations between them.

Every peer stacks a cell's gates as blocks of ``hidden_size`` rows (or columns), each in its
own order. An *order* here is a tuple of block indices into fastlstm's (= PyTorch's) order,
listed in the peer's order: block ``k`` of the peer's stack is block ``order[k]`` of
fastlstm's. fastlstm's orders are LSTM ``i, f, g, o``, GRU ``r, z, n``, peepholes
``i, f, o`` (``weight_ci``, ``weight_cf``, ``weight_co``).

=========  ======================  ===================  ==================
peer       LSTM                    GRU                  LSTM peepholes
=========  ======================  ===================  ==================
fastlstm   i, f, g, o              r, z, n              i, f, o
torch      i, f, g, o              r, z, n              (none)
keras      i, f, c, o              z, r, h              (none)
onnx       i, o, f, c              z, r, h              i, o, f
=========  ======================  ===================  ==================

(``c``/``g`` and ``h``/``n`` are the same gate under two names.) For example::

    onnx_W = to_peer(weight_ih, "lstm", "onnx", hidden_size)        # fastlstm -> ONNX rows
    weight_ih = from_peer(onnx_W, "lstm", "onnx", hidden_size)      # ONNX -> fastlstm rows
    keras_kernel = to_peer(weight_ih.T, "gru", "keras", H, axis=1)  # Keras stacks columns
"""
from __future__ import annotations

import numpy as np

# Blocks of fastlstm's order, listed in each peer's order.
FASTLSTM_LSTM = (0, 1, 2, 3)   # i, f, g, o
FASTLSTM_GRU = (0, 1, 2)       # r, z, n
TORCH_LSTM = (0, 1, 2, 3)      # i, f, g, o
TORCH_GRU = (0, 1, 2)          # r, z, n
KERAS_LSTM = (0, 1, 2, 3)      # i, f, c, o
KERAS_GRU = (1, 0, 2)          # z, r, h
ONNX_LSTM = (0, 3, 1, 2)       # i, o, f, c
ONNX_GRU = (1, 0, 2)           # z, r, h
ONNX_PEEPHOLES = (0, 2, 1)     # i, o, f   (fastlstm: weight_ci, weight_cf, weight_co)

#: ``ORDERS[cell][peer]``: the order of ``cell`` ("lstm", "gru", "rnn", "peepholes") in ``peer``.
ORDERS = {
    "lstm": {"fastlstm": FASTLSTM_LSTM, "torch": TORCH_LSTM, "keras": KERAS_LSTM, "onnx": ONNX_LSTM},
    "gru": {"fastlstm": FASTLSTM_GRU, "torch": TORCH_GRU, "keras": KERAS_GRU, "onnx": ONNX_GRU},
    "rnn": {"fastlstm": (0,), "torch": (0,), "keras": (0,), "onnx": (0,)},
    "peepholes": {"fastlstm": (0, 1, 2), "onnx": ONNX_PEEPHOLES},
}


def inverse_order(order):
    """The order that undoes ``order``: ``reorder_rows(reorder_rows(a, o, H), inverse_order(o), H)``
    is ``a``.

    Parameters
    ----------
    order : sequence of int
        A permutation of ``0 .. len(order) - 1``.

    Returns
    -------
    tuple of int
    """
    order = _checked_order(order)
    inverse = [0] * len(order)
    for position, block in enumerate(order):
        inverse[block] = position
    return tuple(inverse)


def reorder_rows(array, order, hidden_size, *, axis=0):
    """Restack the gate blocks of ``array`` along ``axis``: block ``k`` of the result is block
    ``order[k]`` of ``array``.

    Parameters
    ----------
    array : array_like, shape (G·H, ...) (or G·H along ``axis``)
        G gate blocks of ``hidden_size`` entries each, stacked along ``axis``.
    order : sequence of int
        A permutation of ``0 .. G - 1``, e.g. one of this module's named orders.
    hidden_size : int
        H, the length of one block.
    axis : int, default 0
        The stacking axis (``-1`` or ``1`` for Keras's ``kernel`` (I, G·H)).

    Returns
    -------
    numpy.ndarray
        A new array (never a view of ``array``) of the same shape and dtype.

    Raises
    ------
    ValueError
        ``order`` is not a permutation, or ``array``'s length along ``axis`` is not
        ``len(order) * hidden_size``.
    """
    order = _checked_order(order)
    array = np.asarray(array)
    if isinstance(hidden_size, bool) or not isinstance(hidden_size, (int, np.integer)) or hidden_size < 1:
        raise ValueError(f"hidden_size must be a positive int; got {hidden_size!r}")
    if array.ndim == 0:
        raise ValueError("array must have at least one dimension; got a scalar")
    axis = axis % array.ndim
    expected = len(order) * hidden_size
    if array.shape[axis] != expected:
        raise ValueError(
            f"array must have {len(order)} gate blocks of hidden_size={hidden_size} along axis "
            f"{axis} ({expected} entries); got shape {array.shape}")
    blocks = np.split(array, len(order), axis=axis)
    return np.concatenate([blocks[block] for block in order], axis=axis)


def reorder_columns(array, order, hidden_size):
    """:func:`reorder_rows` along the last axis (Keras's ``kernel`` (I, G·H), ``bias`` (2, G·H))."""
    return reorder_rows(array, order, hidden_size, axis=-1)


def to_peer(array, cell, peer, hidden_size, *, axis=0):
    """fastlstm's gate blocks of ``array`` restacked in ``peer``'s order.

    Parameters
    ----------
    array : array_like, G·H entries along ``axis``, in fastlstm's gate order
    cell : {"lstm", "gru", "rnn", "peepholes"}
    peer : {"fastlstm", "torch", "keras", "onnx"} ("peepholes": "fastlstm" or "onnx")
    hidden_size : int
    axis : int, default 0

    Returns
    -------
    numpy.ndarray
        A new array in ``peer``'s order.
    """
    return reorder_rows(array, peer_order(cell, peer), hidden_size, axis=axis)


def from_peer(array, cell, peer, hidden_size, *, axis=0):
    """``peer``'s gate blocks of ``array`` restacked in fastlstm's order (undoes :func:`to_peer`).

    Parameters are those of :func:`to_peer`, with ``array`` in ``peer``'s order.
    """
    return reorder_rows(array, inverse_order(peer_order(cell, peer)), hidden_size, axis=axis)


def peer_order(cell, peer):
    """``ORDERS[cell][peer]``, with a clear error for an unknown name.

    Returns
    -------
    tuple of int
    """
    if cell not in ORDERS:
        raise ValueError(f"cell must be one of {sorted(ORDERS)}; got {cell!r}")
    if peer not in ORDERS[cell]:
        raise ValueError(f"peer must be one of {sorted(ORDERS[cell])} for cell {cell!r}; got {peer!r}")
    return ORDERS[cell][peer]


def _checked_order(order):
    try:
        order = tuple(int(block) for block in order)
    except TypeError:
        raise ValueError(f"order must be a sequence of block indices; got {order!r}") from None
    if sorted(order) != list(range(len(order))) or not order:
        raise ValueError(f"order must be a permutation of 0..{len(order) - 1}; got {order!r}")
    return order


__all__ = [
    "FASTLSTM_LSTM", "FASTLSTM_GRU", "TORCH_LSTM", "TORCH_GRU", "KERAS_LSTM", "KERAS_GRU",
    "ONNX_LSTM", "ONNX_GRU", "ONNX_PEEPHOLES", "ORDERS",
    "inverse_order", "reorder_rows", "reorder_columns", "to_peer", "from_peer", "peer_order",
]
