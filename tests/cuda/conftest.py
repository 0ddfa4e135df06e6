"""The cuda backend's tests: run in their own pytest process.

Under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, which must be set before ``numba.cuda``
is imported, hence the separate process) they use tiny shapes; on a real GPU the same tests
run as they are. ``tests/test_cuda_suite.py`` starts this process from the main suite; by hand:
``FASTLSTM_CUDA_TESTS=1 NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda``.
"""
import os

import numpy as np
import pytest

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


@pytest.fixture(autouse=True)
def uninitialised_device_memory_is_nan(monkeypatch):
    """Under the simulator, new device arrays of floats start as NaN instead of whatever the
    host allocator left there: a kernel that reads memory nobody wrote (even to multiply it by
    zero) then fails every time, as it might on a GPU, not by chance."""
    if not SIMULATED:
        return
    from numba import cuda

    allocate = cuda.device_array

    def nan_filled(shape, dtype=np.float64, *args, **kwargs):
        array = allocate(shape, dtype, *args, **kwargs)
        if np.dtype(dtype).kind == "f" and array.size:
            array.copy_to_device(np.full(array.shape, np.nan, dtype))
        return array

    monkeypatch.setattr(cuda, "device_array", nan_filled)


def pytest_collection_modifyitems(config, items):
    from numba import cuda

    if not cuda.is_available():
        skip = pytest.mark.skip(reason="no CUDA GPU and NUMBA_ENABLE_CUDASIM is not 1")
        for item in items:
            item.add_marker(skip)
