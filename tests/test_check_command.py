"""``python -m fastlstm check`` runs, prints its table and exits 0."""
import os
import subprocess
import sys

import pytest

from fastlstm.cells import VARIANTS, make_variant

SIZES = ["--steps", "4", "--batch", "3", "--input-size", "5", "--hidden-size", "6"]


def _check(environment=None, sizes=SIZES):
    result = subprocess.run([sys.executable, "-m", "fastlstm", "check", *sizes], capture_output=True, text=True,
                            timeout=600, env=environment)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all within tolerance" in result.stdout
    return result.stdout


def _measured(stdout, backend):
    rows = [line.split() for line in stdout.splitlines()]
    return {(row[0], row[1], row[2]) for row in rows if len(row) >= 7 and row[2] == backend}


def _every_cell(backend):
    return {(make_variant(v).label, d, backend) for v in VARIANTS for d in ("float32", "float64")}


def test_check_command_prints_every_cell_and_passes():
    stdout = _check(dict(os.environ, NUMBA_ENABLE_CUDASIM="0"))
    assert _measured(stdout, "cpu") == _every_cell("cpu")


def test_check_command_runs_the_cuda_backend_and_shows_its_loops():
    pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
    stdout = _check(dict(os.environ, NUMBA_ENABLE_CUDASIM="1"),
                    ["--steps", "2", "--batch", "2", "--input-size", "2", "--hidden-size", "3"])
    assert _measured(stdout, "cuda") == _every_cell("cuda")
    loops = [line.strip() for line in stdout.splitlines() if line.startswith("  ")]
    assert [line.split(":")[0] for line in loops] == [make_variant(v).label for v in VARIANTS]
    assert all(": persistent: " in line for line in loops), loops
