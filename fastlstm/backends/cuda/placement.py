"""The cuda backend's side of the functional core's boundary (see :mod:`fastlstm.placement`).

``x`` is always copied (the tape keeps the copy, whose padding is then cleared); other
device inputs that already are C-contiguous arrays of the layer's dtype are read in place
(the kernels never write them); NumPy parameters are copied in once and reused while their
values stay the same (:mod:`.weights`); every other input is converted to a new C-contiguous
device array of the layer's dtype, on the device (:mod:`.arrays`) when it already lives
there. Every new device array is a block of the backend's pool (:mod:`.workspace`). Results
stay device arrays when the caller gave device arrays, and are copied to the host otherwise.
"""
import numpy as np

from ...placement import check_sequence_input
from ...validation import real_array
from . import arrays, weights, workspace


def _usable_in_place(name, value, dtype):
    """A device input the kernels can read as it is (C-contiguous, of ``dtype``), viewed without
    copying; None otherwise. The kernels never write their inputs."""
    if not arrays.is_device_array(value):
        return None
    view = arrays.device_view(name, value, dtype)
    return view if view.dtype == np.dtype(dtype) and view.is_c_contiguous() else None


class DeviceArrays:
    """Device arrays in the kernels; NumPy or device arrays at the caller's choice."""

    is_device_array = staticmethod(arrays.is_device_array)

    def convert(self, name, value, dtype):
        in_place = _usable_in_place(name, value, dtype)
        if in_place is not None:
            return in_place
        if name.startswith("params[") and not arrays.is_device_array(value):
            # the functional core names parameters "params[...]": their device copies are kept
            return weights.parameter(name, value, dtype)
        return arrays.to_device(name, value, dtype)

    def copy(self, name, value, dtype):
        return arrays.to_device(name, value, dtype)

    def time_major_copy(self, name, value, dtype, batch_first, feature_size):
        """A new C-contiguous (T, B, F) device array of ``dtype``, always a copy (one kernel for a
        device input): the tape keeps it, and the caller may change its own array afterwards."""
        shape = arrays.device_view(name, value).shape if arrays.is_device_array(value) else \
            real_array(name, value, dtype).shape
        check_sequence_input(name, shape, feature_size, batch_first)
        return arrays.time_major_copy(name, value, dtype, batch_first)

    def time_major_input(self, name, value, dtype, batch_first, feature_size):
        """:meth:`time_major_copy`: the device backend reads only its own copy of ``x``."""
        return self.time_major_copy(name, value, dtype, batch_first, feature_size)

    def clear_padding(self, array, lengths):
        arrays.clear_padding(array, lengths)

    def as_dtype(self, array, dtype):
        return array

    def host(self, value):
        return arrays.to_host(arrays.device_view("lengths", value)) if arrays.is_device_array(value) \
            else np.asarray(value)

    def zeros(self, shape, dtype):
        return arrays.zeros(shape, dtype)

    def empty(self, shape, dtype):
        return workspace.empty(shape, dtype)

    def assign(self, destination, index, value):
        destination[index].copy_to_device(value)

    def time_major(self, array):
        return arrays.batch_major(array)

    def times(self, array, mask):
        return arrays.times(array, mask)

    def result(self, array, on_device):
        return array if on_device else arrays.to_host(array)
