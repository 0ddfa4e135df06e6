"""Who owns the cores: Numba's threads, for the whole of a forward or backward call.

OpenBLAS's threads spin for a while after each call, and so do Numba's after each
parallel region; when both pools are live on 2 cores they take turns badly (measured:
an LSTM forward at T=100, B=32, H=128 took 32 ms with one pool and 114 ms with both).
So inside a call BLAS is held to one thread: every GEMM runs single-threaded on each
Numba thread's share of it (a block of hidden units in the time loops, a block of rows
or columns in ``gemm``).
"""
from contextlib import contextmanager

_controller = None


def _blas_controller():
    global _controller
    if _controller is None:
        import scipy.linalg.cython_blas  # noqa: F401  the BLAS Numba calls; load it so it is found
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


@contextmanager
def single_threaded_blas():
    """Hold every loaded BLAS library to one thread inside the ``with`` block."""
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


def chunk_count(batch):
    """How many row blocks a batch of ``batch`` sequences is split into."""
    from numba import get_num_threads

    return max(1, min(get_num_threads(), batch))
