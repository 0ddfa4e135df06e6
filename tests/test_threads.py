"""Calls from several Python threads: BLAS's thread count afterwards, one layer object shared."""
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import fastlstm
from fastlstm.backends.cpu.threads import kernel_blas, single_threaded_blas


def _blas_threads():
    """{path: threads} of every BLAS loaded."""
    return {info["filepath"]: info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}


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
        errors = []

        def work(layer):
            try:
                for _ in range(20):
                    y, _ = layer(x)
                    layer.backward(np.ones_like(y))
            except Exception as error:           # surfaced below, in the test's thread
                errors.append(error)

        threads = [threading.Thread(target=work, args=(layer,)) for layer in layers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert _blas_threads() == before
