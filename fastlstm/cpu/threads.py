"""Who owns the cores: Numba's threads inside the time loops, BLAS everywhere else.

A BLAS call that spins up its own threads inside a Numba parallel region fights it for
the same cores, so the recurrent GEMMs inside the loops run single-threaded BLAS on each
Numba thread's row block, and the large GEMMs before and after the loops keep BLAS's
own threads.
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
