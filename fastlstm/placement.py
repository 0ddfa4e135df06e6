"""Where a backend's arrays live, and how the functional core moves them across the boundary.

The functional core validates and converts every input the same way for every backend,
through one of these objects: :class:`HostArrays` (NumPy, the reference and cpu backends)
or ``fastlstm.backends.cuda.placement.DeviceArrays``. The shape checks are shared; only where the
numbers go differs.
"""
import numpy as np

from . import buffers
from .validation import as_float_array, real_array


def check_sequence_input(name, shape, feature_size, batch_first):
    """Raise ValueError unless ``shape`` is a 3-d (T, B, F) / (B, T, F) shape with F = ``feature_size``
    and at least one sequence."""
    layout = "(B, T, features)" if batch_first else "(T, B, features)"
    if len(shape) != 3:
        raise ValueError(f"{name}: expected a 3-d array {layout} or an unbatched 2-d (T, features), "
                         f"got shape {tuple(shape)}")
    if shape[2] != feature_size:
        raise ValueError(f"{name}: expected {feature_size} features in the last axis of {layout}, "
                         f"got shape {tuple(shape)}")
    if shape[0 if batch_first else 1] < 1:
        raise ValueError(f"{name}: expected at least one sequence in the batch, got shape {tuple(shape)}")


def is_converted(value, dtype):
    """Whether ``value`` already is what :meth:`HostArrays.convert` makes of it: a C-contiguous
    NumPy array (not a subclass) of ``dtype``, which it returns as it is."""
    return type(value) is np.ndarray and value.dtype == dtype and value.flags.c_contiguous


class HostArrays:
    """NumPy in, NumPy out."""

    def convert(self, name, value, dtype):
        """``value`` as a C-contiguous array of ``dtype`` (not copied when it already is one)."""
        return value if is_converted(value, dtype) else as_float_array(name, value, dtype)

    def copy(self, name, value, dtype):
        """``value`` as a new C-contiguous array of ``dtype``, never the caller's."""
        return np.array(real_array(name, value, dtype), dtype=dtype, order="C", copy=True)

    def time_major_copy(self, name, value, dtype, batch_first, feature_size):
        """A new C-contiguous (T, B, F) array of ``dtype``: the tape keeps it, never the caller's."""
        array = real_array(name, value, dtype)
        check_sequence_input(name, array.shape, feature_size, batch_first)
        if batch_first:
            array = array.transpose(1, 0, 2)
        copy = buffers.empty(array.shape, dtype)
        copy[...] = array
        return copy

    def time_major_input(self, name, value, dtype, batch_first, feature_size):
        """A C-contiguous (T, B, F) array of ``dtype`` to read, not keep: the caller's own array
        where it already is one (an inference call without lengths neither keeps nor clears it),
        else a copy."""
        if not batch_first and is_converted(value, dtype) and value.ndim == 3:
            check_sequence_input(name, value.shape, feature_size, batch_first)
            return value
        return self.time_major_copy(name, value, dtype, batch_first, feature_size)

    def clear_padding(self, array, lengths):
        """Zero ``array[t, b]`` for every step t past ``lengths[b]``, in place (only ever applied
        to a copy the functional core made)."""
        array[np.arange(array.shape[0])[:, None] >= lengths[None, :]] = 0

    def as_dtype(self, array, dtype):
        """A backend's result as a C-contiguous array of ``dtype`` (the reference computes in float64)."""
        return np.ascontiguousarray(array, dtype=dtype)

    def host(self, value):
        """``value`` as a NumPy array (lengths, which are checked on the host)."""
        return np.asarray(value)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype)

    def empty(self, shape, dtype):
        return np.empty(shape, dtype)

    def assign(self, destination, index, value):
        """``destination[index] = value``."""
        destination[index] = value

    def time_major(self, array):
        """(B, T, F) → a C-contiguous (T, B, F), or back (the same swap)."""
        return np.ascontiguousarray(array.transpose(1, 0, 2))

    def times(self, array, mask):
        """array ⊙ mask (broadcast over the leading axes), a new array."""
        return array * mask

    def result(self, array, on_device):
        """What the caller gets back: the array itself."""
        return array
