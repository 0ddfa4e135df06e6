"""The cuda backend's own tests (``tests/cuda``), run under the CUDA simulator.

``NUMBA_ENABLE_CUDASIM=1`` must be set before ``numba.cuda`` is imported, so they run in a
pytest process of their own, with tiny shapes and few Hypothesis examples (a few minutes of one
core, beside the rest of the suite: tests/background.py). On a machine with a GPU, run them on the device instead:
``FASTLSTM_CUDA_TESTS=1 python -m pytest tests/cuda``.
"""
import os
import sys
from pathlib import Path

import pytest

import background

pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")

TESTS = Path(__file__).parent

SUITE = background.command(
    "cuda suite", [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TESTS / "cuda")],
    dict(os.environ, NUMBA_ENABLE_CUDASIM="1", FASTLSTM_CUDA_TESTS="1",
         FASTLSTM_EXAMPLES=os.environ.get("FASTLSTM_CUDA_EXAMPLES", "2")), cwd=TESTS.parent)


@pytest.mark.background(SUITE)
def test_cuda_suite_under_the_simulator():
    completed = background.result(SUITE)
    assert completed.returncode == 0, completed.stdout[-8000:] + completed.stderr[-4000:]
    assert " passed" in completed.stdout.splitlines()[-1], completed.stdout[-2000:]
