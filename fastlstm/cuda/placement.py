"""The cuda backend's side of the functional core's boundary (see :mod:`fastlstm.placement`).

Inputs are converted to new C-contiguous device arrays of the layer's dtype on the device
(:mod:`.arrays`); results stay device arrays when the caller gave device arrays, and are
copied to the host otherwise.
"""
import numpy as np
from numba import cuda

from ..placement import check_sequence_input
from ..validation import real_array
from . import arrays


class DeviceArrays:
    """Device arrays in the kernels; NumPy or device arrays at the caller's choice."""

    is_device_array = staticmethod(arrays.is_device_array)

    def convert(self, name, value, dtype):
        return arrays.to_device(name, value, dtype)

    def time_major_copy(self, name, value, dtype, batch_first, feature_size):
        shape = arrays.device_view(name, value).shape if arrays.is_device_array(value) else \
            real_array(name, value, dtype).shape
        check_sequence_input(name, shape, feature_size, batch_first)
        return arrays.time_major_copy(name, value, dtype, batch_first)

    def as_dtype(self, array, dtype):
        return array

    def host(self, value):
        return arrays.to_host(arrays.device_view("lengths", value)) if arrays.is_device_array(value) \
            else np.asarray(value)

    def zeros(self, shape, dtype):
        return arrays.zeros(shape, dtype)

    def empty(self, shape, dtype):
        return cuda.device_array(shape, dtype)

    def assign(self, destination, index, value):
        destination[index].copy_to_device(value)

    def time_major(self, array):
        return arrays.batch_major(array)

    def result(self, array, on_device):
        return array if on_device else arrays.to_host(array)
