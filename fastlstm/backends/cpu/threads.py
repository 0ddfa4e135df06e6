"""Who owns the cores: Numba's threads, for the whole of a backward call.

OpenBLAS's threads spin for a while after each call, and so do Numba's after each
parallel region; when both pools are live on 2 cores they take turns badly (measured:
an LSTM forward at T=100, B=32, H=128 took 32 ms with one pool and 114 ms with both).
The forward calls no BLAS but MKL (its products are the tile kernel's, :mod:`.tiles`, but the
large input projections where MKL runs, :func:`.gemm.on_blas`); the backward's weight gradients are BLAS
GEMMs, so during a backward the BLAS the kernels use is held to one thread: each runs
single-threaded on its Numba thread's block of rows or columns (``gemm``). Where that BLAS is MKL
(:mod:`.blas`), fastlstm loads it on its sequential layer: one thread always, nothing to hold.

Numba's threads wait at the end of each parallel region, and the loops that split a step's
units over the threads (``strategy``) end a region every step. GNU OpenMP, Numba's ``omp``
threading layer, spins 300,000 times before a waiting thread sleeps: when another process
takes a core, the spinning thread keeps its core while the thread it waits for is descheduled.
Measured on the project's 2-core machines beside one busy process (``bench/under_load.py``),
two training calls slowed 4.2× and 3.7× with that default; with ``GOMP_SPINCOUNT=10000`` (a few
µs of spinning, longer than a step's barrier waits on an idle machine) 1.8× and 1.9×, at the
same speed alone; ``OMP_WAIT_POLICY=passive`` (no spinning) 1.6× and 1.9×, but a barrier per
step then costs a wake-up: an LSTM 256, B 1, T 150 inference call took 9.4 ms instead of 2.0.
"""
import os
import threading
from contextlib import contextmanager

# GNU OpenMP's spins before a waiting thread sleeps (its default: 300,000).
BARRIER_SPIN_COUNT = "10000"


def yield_in_barriers():
    """Let Numba's OpenMP threads sleep after :data:`BARRIER_SPIN_COUNT` spins at a barrier, unless the
    user chose (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` set). ``import fastlstm`` calls it.

    GNU OpenMP reads them once, when it loads: at Numba's first parallel region, or earlier when
    another library loads it (PyTorch's CPU wheel bundles the ``libgomp.so.1`` that Numba then
    shares: ``import torch`` before ``import fastlstm`` keeps the default). Setting
    ``GOMP_SPINCOUNT=10000`` in the environment applies it whatever the order.

    Returns
    -------
    bool
        Whether it set ``GOMP_SPINCOUNT``.
    """
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return False
    os.environ["GOMP_SPINCOUNT"] = BARRIER_SPIN_COUNT
    return True

_lock = threading.Lock()
_libraries = None     # threadpoolctl's controllers of the BLAS the kernels call
_holders = 0          # calls inside single_threaded_blas now, in every Python thread
_found = None         # the thread counts the first of them found, restored by the last
_counts = None        # a _Counts of kernel_blas()


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


class _Counts:
    """Get and set the thread counts of BLAS libraries: an OpenBLAS on its own threads (a
    process-wide pool) through its C functions directly (two calls of a few hundred ns, where
    threadpoolctl's controller took ~15 µs for a hold and its release), any other through
    threadpoolctl."""

    def __init__(self, libraries):
        self.libraries = libraries
        self.direct = [self._c_functions(library) for library in libraries]

    @staticmethod
    def _c_functions(library):
        symbol = getattr(library, "_get_symbol", None)       # threadpoolctl's, with the build's affixes
        if symbol is None or library.internal_api != "openblas" or library.threading_layer == "openmp":
            return None
        get, set_ = symbol("openblas_get_num_threads"), symbol("openblas_set_num_threads")
        return None if get is None or set_ is None else (get, set_)

    def get(self):
        return [library.num_threads if direct is None else direct[0]()
                for library, direct in zip(self.libraries, self.direct)]

    def set(self, counts):
        for library, direct, count in zip(self.libraries, self.direct, counts):
            if direct is None:
                _set_threads(library, count)
            else:
                direct[1](count)


def _set_threads(library, count):
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
    global _holders, _found, _counts
    if _counts is None:
        _counts = _Counts(kernel_blas())      # the same controllers whichever thread makes them first
    counts = _counts
    with _lock:
        if _holders == 0:
            _found = counts.get()
            counts.set([1] * len(_found))
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                counts.set(_found)

