"""The cuda backend's tests: run in their own pytest process.

Under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, which must be set before ``numba.cuda``
is imported, hence the separate process) they use tiny shapes; on a real GPU the same tests
run as they are. ``tests/test_cuda_suite.py`` starts this process from the main suite; by hand:
``FASTLSTM_CUDA_TESTS=1 NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda``.
"""
import os

import pytest

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def pytest_collection_modifyitems(config, items):
    from numba import cuda

    if not cuda.is_available():
        skip = pytest.mark.skip(reason="no CUDA GPU and NUMBA_ENABLE_CUDASIM is not 1")
        for item in items:
            item.add_marker(skip)
