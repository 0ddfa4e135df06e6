"""``python -m fastlstm check`` runs, prints its table and exits 0."""
import os
import sys

import pytest

import background
from fastlstm.cells import VARIANTS, make_variant

CHECK = [sys.executable, "-m", "fastlstm", "check"]
CPU_CHECK = background.command(
    "check (cpu)", CHECK + ["--steps", "4", "--batch", "3", "--input-size", "5", "--hidden-size", "6"],
    dict(os.environ, NUMBA_ENABLE_CUDASIM="0"), timeout=600)
CUDA_CHECK = background.command(
    "check (cuda simulator)", CHECK + ["--steps", "2", "--batch", "2", "--input-size", "2", "--hidden-size", "3"],
    dict(os.environ, NUMBA_ENABLE_CUDASIM="1"), timeout=600)


def _check(name):
    result = background.result(name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all within tolerance" in result.stdout
    return result.stdout


def _measured(stdout, backend):
    rows = [line.split() for line in stdout.splitlines()]
    return {(row[0], row[1], row[2]) for row in rows if len(row) >= 7 and row[2] == backend}


def _every_cell(backend):
    return {(make_variant(v).label, d, backend) for v in VARIANTS for d in ("float32", "float64")}


@pytest.mark.background(CPU_CHECK)
def test_check_command_prints_every_cell_and_passes():
    stdout = _check(CPU_CHECK)
    assert _measured(stdout, "cpu") == _every_cell("cpu")


@pytest.mark.background(CUDA_CHECK)
def test_check_command_runs_the_cuda_backend_and_shows_its_loops():
    pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
    stdout = _check(CUDA_CHECK)
    assert _measured(stdout, "cuda") == _every_cell("cuda")
    loops = [line.strip() for line in stdout.splitlines() if line.startswith("  ")]
    assert [line.split(":")[0] for line in loops] == [make_variant(v).label for v in VARIANTS]
    assert all(": persistent: " in line for line in loops), loops


class _OffsetBackend:
    """The cpu backend, with ``offset`` added to every dx: a backend off the reference by a known amount."""

    def __init__(self, offset):
        from fastlstm.backends import get_backend

        self.cpu, self.offset = get_backend("cpu"), offset
        self.name, self.arrays = f"offset-{offset:g}", self.cpu.arrays

    def is_device_array(self, value):
        return False

    def forward_layer(self, *args, **kwargs):
        return self.cpu.forward_layer(*args, **kwargs)

    def backward_layer(self, *args, **kwargs):
        result = self.cpu.backward_layer(*args, **kwargs)
        return result._replace(dx=result.dx + self.offset)


def test_check_passes_a_backend_by_the_rule_the_tests_apply():
    """dx off by rtol·max|dx| + a share of atol: the tests' rule (fastlstm.tolerances) passes it
    when the share is below 1, and so must check (it once judged error/max|dx| <= rtol alone)."""
    import numpy as np

    from fastlstm import backends, check, functional
    from fastlstm.config import make_config
    from fastlstm.initialisation import init_parameters
    from fastlstm.tolerances import tolerance

    sizes = dict(steps=4, batch=3, input_size=5, hidden_size=6)
    rng = np.random.default_rng(0)                       # check's own problem, for its dx scale
    x = rng.standard_normal((4, 3, 5))
    dy = rng.standard_normal((4, 3, 6))
    rtol, atol, _ = tolerance(np.float64)
    verdicts = {}
    for share in (0.5, 3.0):
        lstm = make_variant("lstm")
        config = make_config(lstm, 5, 6, dtype="float64", backend="reference")
        params = init_parameters(config, 0)
        _, _, tape = functional.forward(config, params, x)
        scale = np.abs(functional.backward(tape, dy).dx).max()
        offset = rtol * scale + share * atol
        backend = _OffsetBackend(offset)
        backends.register(backend.name, backend)
        lines = []
        check.check(**sizes, out=lines.append, backends=[backend.name])
        row = next(line for line in lines if line.startswith("LSTM ") and " float64 " in line)
        verdicts[share] = not row.endswith("FAIL")
    assert verdicts == {0.5: True, 3.0: False}
