"""The cuda backend's own tests (``tests/cuda``), run under the CUDA simulator.

``NUMBA_ENABLE_CUDASIM=1`` must be set before ``numba.cuda`` is imported, so they run in a
pytest process of their own, with tiny shapes and few Hypothesis examples (a few minutes on
two cores). On a machine with a GPU, run them on the device instead:
``FASTLSTM_CUDA_TESTS=1 python -m pytest tests/cuda``.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")

TESTS = Path(__file__).parent


def test_cuda_suite_under_the_simulator():
    environment = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", FASTLSTM_CUDA_TESTS="1",
                       FASTLSTM_EXAMPLES=os.environ.get("FASTLSTM_CUDA_EXAMPLES", "2"))
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TESTS / "cuda")],
        cwd=TESTS.parent, env=environment, capture_output=True, text=True, timeout=1500)
    assert completed.returncode == 0, completed.stdout[-8000:] + completed.stderr[-4000:]
    assert " passed" in completed.stdout.splitlines()[-1], completed.stdout[-2000:]
