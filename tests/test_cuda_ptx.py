"""Every cuda kernel compiles for a real device (PTX for compute capability 9.0, through NVVM).

The simulator runs kernels as Python and accepts code that NVVM rejects (e.g. a device
function returning an array view), so this is checked apart from it, in the main test
process (no simulator), wherever numba-cuda and NVVM are installed; no GPU is needed.
"""
import numpy as np
import pytest

from support import CELL_VARIANTS

cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
CC = (9, 0)
DTYPES = [np.float32, np.float64]


class _TargetDevice:
    compute_capability = CC


@pytest.fixture(scope="module")
def nvvm():
    """Skip where NVVM is missing; device functions compile for CC with no GPU present."""
    import numba.cuda.dispatcher as dispatcher

    if cuda.config.ENABLE_CUDASIM:
        pytest.skip("the CUDA simulator has no compiler")
    try:
        cuda.compile_ptx(lambda a: None, "void(float32[:])", cc=CC)
    except Exception as error:  # NvvmSupportError and friends: no NVVM here
        pytest.skip(f"NVVM is not available: {error}")
    saved = dispatcher.get_current_device
    dispatcher.get_current_device = _TargetDevice   # device functions ask the current device for its CC
    yield
    dispatcher.get_current_device = saved


def _compile_all(signatures):
    for function, signature in signatures:
        ptx, _ = cuda.compile_ptx(function, signature, cc=CC)
        assert ".visible .entry" in ptx, function.__name__
        yield function.__name__, ptx


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
@pytest.mark.parametrize("regularised", [False, True], ids=["plain", "recurrent_dropout+zoneout"])
def test_recurrent_kernels_compile(nvvm, variant, dtype, regularised):
    from fastlstm.cells import make_cell
    from fastlstm.backends.cuda.compiled import CellKernels

    kernels = CellKernels(make_cell(**CELL_VARIANTS[variant]), dtype)
    compiled = dict(_compile_all(kernels.ptx_signatures(recurrent_dropout=regularised, zoneout=regularised)))
    assert len(compiled) == 7
    for name, ptx in compiled.items():
        # the persistent loops synchronise the whole grid; the per-step ones must not
        assert ("cudaCGSynchronize" in ptx) == name.startswith(("forward_persistent", "backward_persistent")), name
        # the lane groups' shared-memory sums; the GEMM loop's pointwise kernels have none (a thread per unit)
        assert ("bar.sync" in ptx) != name.startswith(("forward_pointwise", "backward_pointwise")), name


@pytest.mark.parametrize("dtype", DTYPES)
def test_array_and_gemm_kernels_compile(nvvm, dtype):
    from fastlstm.backends.cuda import arrays, gemm

    signatures = arrays.ptx_signatures(dtype) + gemm.ptx_signatures(dtype)
    assert len(list(_compile_all(signatures))) == len(signatures)
