"""Who owns the cores: Numba's threads, for the whole of a backward call.

OpenBLAS's threads spin for a while after each call, and so do Numba's after each
parallel region; when both pools are live on 2 cores they take turns badly (measured:
an LSTM forward at T=100, B=32, H=128 took 32 ms with one pool and 114 ms with both).
The forward calls no BLAS (its products are the tile kernel's, :mod:`.tiles`); the backward's
weight gradients are BLAS GEMMs, so during a backward the BLAS the kernels use is held to one
thread: each runs single-threaded on its Numba thread's block of rows or columns (``gemm``).
"""
import os
import threading
from contextlib import contextmanager

_lock = threading.Lock()
_libraries = None     # threadpoolctl's controllers of the BLAS the kernels call
_holders = 0          # calls inside single_threaded_blas now, in every Python thread
_found = None         # the thread counts the first of them found, restored by the last


def kernel_blas():
    """threadpoolctl's controllers of the BLAS libraries the kernels call.

    Numba's ``np.dot`` calls the BLAS of ``scipy.linalg.cython_blas``: where SciPy ships its
    own (a wheel's ``scipy.libs``), that library alone, so NumPy's BLAS is never limited;
    otherwise (one system BLAS for both) every BLAS loaded.

    Returns
    -------
    list of threadpoolctl LibController
    """
    global _libraries
    with _lock:
        if _libraries is None:
            import scipy
            import scipy.linalg.cython_blas  # noqa: F401  load it, so that threadpoolctl finds it
            from threadpoolctl import ThreadpoolController

            everything = ThreadpoolController().select(user_api="blas").lib_controllers
            scipy_root = os.path.dirname(os.path.realpath(scipy.__file__))
            own = [library for library in everything
                   if os.path.realpath(library.filepath).startswith((scipy_root + os.sep, scipy_root + ".libs" + os.sep))]
            _libraries = own or everything
        return _libraries


def _set_threads(libraries, counts):
    for library, count in zip(libraries, counts):
        # threadpoolctl lets only one Python thread at a time set OpenBLAS's process-wide pool,
        # and silently ignores the others; the hold below is process-wide, so take it over.
        release = getattr(type(library), "clear_controlling_thread", None)
        if release is not None:
            release()
        library.set_num_threads(count)
        if release is not None:
            release()


@contextmanager
def single_threaded_blas():
    """Hold the BLAS the kernels call (:func:`kernel_blas`) to one thread inside the ``with`` block.

    The limit is process-wide, so concurrent calls share it: the first to enter sets it, and
    the last to leave restores exactly what the first found, whatever order they leave in.
    """
    global _holders, _found
    libraries = kernel_blas()
    with _lock:
        if _holders == 0:
            _found = [library.num_threads for library in libraries]
            _set_threads(libraries, [1] * len(libraries))
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                _set_threads(libraries, _found)

