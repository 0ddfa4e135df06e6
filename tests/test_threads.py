"""Calls from several Python threads: BLAS's thread count afterwards, one layer object shared."""
import os
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import fastlstm
from fastlstm.backends.cpu.blas import mkl_library
from fastlstm.backends.cpu.threads import kernel_blas, single_threaded_blas
from support import run_in_threads


def _blas_threads():
    """{path: threads} of every BLAS loaded but the MKL fastlstm loads for itself (its sequential
    layer: one thread whatever is asked)."""
    own_mkl = None if mkl_library() is None else os.path.realpath(mkl_library()._name)
    return {info["filepath"]: info["num_threads"] for info in threadpool_info()
            if info["user_api"] == "blas" and os.path.realpath(info["filepath"]) != own_mkl}


def test_overlapping_holds_restore_what_the_first_found_whatever_the_order_they_leave_in():
    kernel_blas()                                # loads the kernels' BLAS, so that the limit below reaches it
    with threadpool_limits(limits=2, user_api="blas"):
        entered, first_left, done = threading.Event(), threading.Event(), threading.Event()
        seen_inside = []

        def second():
            with single_threaded_blas():
                entered.set()
                first_left.wait(10)
                seen_inside.append(_blas_threads())     # the first call has left; this one has not
            done.set()

        with single_threaded_blas():
            thread = threading.Thread(target=second)
            thread.start()
            entered.wait(10)
        first_left.set()
        done.wait(10)
        thread.join()
        held = {library.filepath for library in kernel_blas()}
        assert held and all(n == 1 for path, n in seen_inside[0].items() if path in held)
        assert all(n == 2 for path, n in seen_inside[0].items() if path not in held)   # NumPy's own
        assert all(n == 2 for n in _blas_threads().values()), _blas_threads()


def test_concurrent_training_calls_leave_blas_as_they_found_it():
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        rng = np.random.default_rng(0)
        x = rng.standard_normal((20, 4, 8)).astype(np.float32)
        layers = [fastlstm.LSTM(8, 16, seed=seed) for seed in range(3)]
        layers[0](x)                             # compile outside the threads

        def work(layer):
            for _ in range(20):
                y, _ = layer(x)
                layer.backward(np.ones_like(y))

        run_in_threads(work, layers)
        assert _blas_threads() == before


class _BlockingInput:
    """An input whose conversion to an array waits until released: holds a call open."""

    def __init__(self, array):
        self.array, self.converting, self.release = array, threading.Event(), threading.Event()

    def __array__(self, dtype=None, copy=None):
        self.converting.set()
        self.release.wait(10)
        return self.array if dtype is None else self.array.astype(dtype)


def test_a_layer_refuses_a_call_while_another_thread_is_inside_one():
    layer = fastlstm.GRU(3, 4, seed=0)
    x = np.ones((5, 2, 3), np.float32)
    blocking = _BlockingInput(x)
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(layer(blocking)))
    thread.start()
    assert blocking.converting.wait(10)
    try:
        with pytest.raises(RuntimeError, match="another thread"):
            layer(x)
        with pytest.raises(RuntimeError, match="another thread"):
            layer.backward(np.ones((5, 2, 4), np.float32))
    finally:
        blocking.release.set()
        thread.join()
    assert len(outcome) == 1
    np.testing.assert_array_equal(outcome[0][0], layer(x)[0])      # the first call ran undisturbed


def test_a_backward_in_another_thread_than_its_forward_is_refused():
    layer = fastlstm.RNN(3, 4, seed=0)
    layer(np.ones((5, 2, 3), np.float32))
    errors = []

    def backward():
        try:
            layer.backward(np.ones((5, 2, 4), np.float32))
        except RuntimeError as error:
            errors.append(str(error))

    thread = threading.Thread(target=backward)
    thread.start()
    thread.join()
    assert len(errors) == 1 and "another thread" in errors[0]
    layer.backward(np.ones((5, 2, 4), np.float32))        # in the forward's own thread it runs


def test_the_functional_api_with_explicit_tapes_is_safe_from_many_threads():
    layer = fastlstm.LSTM(3, 8, seed=0, dtype="float64")
    rng = np.random.default_rng(2)
    inputs = [rng.standard_normal((12, 3, 3)) for _ in range(4)]
    dy = np.ones((12, 3, 8))

    def train(x):
        _, _, tape = fastlstm.functional.forward(layer.config, layer.params, x)
        return fastlstm.functional.backward(tape, dy).grads

    expected = [train(x) for x in inputs]
    mismatches = []

    def work(k):
        for _ in range(15):
            grads = train(inputs[k])
            if any(not np.array_equal(grads[n], expected[k][n]) for n in grads):
                mismatches.append(k)

    run_in_threads(work, range(4))
    assert not mismatches


@pytest.mark.parametrize("environment, expected", [
    ({}, "10000"),                                   # the default: sleep after 10,000 spins
    ({"GOMP_SPINCOUNT": "5"}, "5"),                  # the user's choice is kept
    ({"OMP_WAIT_POLICY": "active"}, None),           # and so is a wait policy
])
def test_import_lets_openmp_threads_sleep_in_barriers_unless_the_user_chose(environment, expected):
    """GNU OpenMP reads GOMP_SPINCOUNT once, when it loads: ``import fastlstm`` sets it before
    Numba's first parallel region loads OpenMP (bench/under_load.py measures what it changes)."""
    import os
    import subprocess
    import sys

    code = ("import os, numpy as np, fastlstm; "
            "assert not [l for l in open('/proc/self/maps') if 'libgomp' in l], 'OpenMP loaded before fastlstm'; "
            "print(os.environ.get('GOMP_SPINCOUNT'))")
    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    completed = subprocess.run([sys.executable, "-c", code], env=dict(base, **environment), capture_output=True,
                               text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip() == str(expected)
