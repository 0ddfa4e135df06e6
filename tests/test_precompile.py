"""Compiling on first use says so on stderr, once; ``fastlstm.precompile`` fills the on-disk cache
so that the first call of what it compiled says nothing. Each run is a fresh process over a
cache directory of the test's own (``NUMBA_CACHE_DIR``), so nothing is cached before."""
import os
import subprocess
import sys

import pytest

import fastlstm

CALL = ("import numpy as np, fastlstm; "
        "fastlstm.RNN(1, 2, seed=0, dtype='{dtype}', nonlinearity='{nonlinearity}')"
        "(np.zeros((3, 1, 1), '{dtype}'), tape=False)")


def _python(code, cache):
    environment = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    environment.pop("FASTLSTM_CPU_LOOP", None)
    completed = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True,
                               timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed.stderr


def test_the_first_compile_says_so_once_and_a_cached_run_says_nothing(tmp_path):
    code = CALL.format(dtype="float32", nonlinearity="tanh")
    first = _python(code, tmp_path)
    assert first.count("fastlstm: compiling RNN(tanh) float32 kernels, first use only") == 1, first
    assert "compiling" not in _python(code, tmp_path)


def test_precompile_fills_the_cache_for_what_it_was_asked(tmp_path):
    _python("import fastlstm; fastlstm.precompile(cells=['rnn_relu'], dtypes=['float64'], strategies=['single'], "
            "training=False)", tmp_path)
    assert "compiling" not in _python(CALL.format(dtype="float64", nonlinearity="relu"), tmp_path)


def test_precompile_fills_the_cache_of_the_step_kernel(tmp_path):
    step = "import numpy as np, fastlstm; fastlstm.GRU(1, 2, seed=0).step(np.zeros(1))"
    _python("import fastlstm; fastlstm.precompile(cells=['gru'], dtypes=['float32'], strategies=['single'], "
            "training=False, streaming=True)", tmp_path)
    assert "compiling" not in _python(step, tmp_path)


def test_the_step_kernel_says_when_it_compiles(tmp_path):
    step = "import numpy as np, fastlstm; fastlstm.RNN(1, 2, seed=0).step(np.zeros(1))"
    first = _python(step, tmp_path)
    assert first.count("fastlstm: compiling RNN(tanh) float32 step kernel, first use only") == 1, first


@pytest.mark.parametrize("arguments, message", [
    (dict(cells=["lstm2"]), "cells: expected names from"),
    (dict(dtypes=["float16"]), "dtypes: expected 'float32' and/or 'float64', got \\['float16'\\]"),
    (dict(strategies=["auto"]), "strategies: expected names from"),
])
def test_precompile_rejects_unknown_names(arguments, message):
    with pytest.raises(ValueError, match=message):
        fastlstm.precompile(**arguments)


def test_importing_the_package_loads_no_numba():
    """``import fastlstm`` loads NumPy only (the package docstring's promise): Numba, and with it
    ~0.2 s of imports, waits for the first call that needs a kernel."""
    done = subprocess.run([sys.executable, "-c", "import sys, fastlstm; print(sorted(m for m in sys.modules "
                           "if m.split('.')[0] in ('numba', 'llvmlite')))"], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]", done.stdout
