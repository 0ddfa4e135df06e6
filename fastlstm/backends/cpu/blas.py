"""The BLAS GEMM the kernels call, called from compiled code on views with leading dimensions.

Numba's ``np.dot`` takes contiguous arrays only, so a product of a slice of columns copies the
slice first, and it cannot add into its output. :func:`gemm_at` passes a row-major view (its
start and row stride) straight to ``?gemm`` and accumulates (``beta`` 1), as BLAS itself allows.
The function's address is found at run time and reaches the kernels as an integer, so that
their cached machine code holds no address of this process.

Which ``?gemm``: the ``cpu_blas`` knob. ``'auto'`` takes Intel MKL where PyPI's ``mkl`` is
installed beside the interpreter (its ``libmkl_rt``, :func:`mkl_library`), else the one of
``scipy.linalg.cython_blas`` (the BLAS SciPy ships, OpenBLAS in its wheels, which Numba's
``np.dot`` calls too). Single-threaded, at the shapes of the weight gradients and of a ``dx`` of
few inputs, MKL's ``sgemm`` took 0.38–0.93 of OpenBLAS's time from 2 Mflop a call on this
project's machines, but 0.94–1.15 of it below 1 Mflop (OpenBLAS's small-matrix path), so
``'auto'`` leaves calls under ``mkl_min_flops`` to SciPy's (``bench/blas_gemm.py``); and float64
too: MKL's ``dgemm`` workspace raised a float64 training step's peak memory by 2.4–3.4 MiB
(table rows 2 and 5, ``python -m fastlstm.benchmark.memory``), where ``sgemm``'s is offset.
"""
import ctypes
import functools
import glob
import os
import sys
import threading

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ... import tuning

# MKL's service functions' values (mkl_service.h)
_MKL_INTERFACE_LP64 = 0       # 32-bit integers, as SciPy's cython_blas and the intrinsics below pass
_MKL_THREADING_SEQUENTIAL = 1


def gemm_address(dtype, flops=None):
    """The address of the ``?gemm`` (Fortran interface, 32-bit integers) the kernels call for
    products of ``flops`` each: ``sgemm`` (float32) or ``dgemm`` (float64), MKL's where
    :func:`runs_mkl`, else SciPy's.

    Parameters
    ----------
    dtype : numpy.dtype, float32 or float64
    flops : float, optional, the flops of each call

    Returns
    -------
    int

    Raises
    ------
    RuntimeError
        With ``cpu_blas='mkl'`` where MKL cannot be used (:func:`mkl_library`).
    """
    return _gemm_address(np.dtype(dtype), runs_mkl(dtype, flops))


def runs_mkl(dtype, flops=None):
    """Whether the kernels' ``?gemm`` for calls of ``flops`` each (None: unknown) is MKL's: as the
    ``cpu_blas`` knob chooses; with ``'auto'``, for float32 calls of at least ``mkl_min_flops`` (or
    of unknown size) where MKL can be used (:func:`mkl_library`).

    Raises
    ------
    RuntimeError
        With ``cpu_blas='mkl'`` where MKL cannot be used.
    """
    choice, dtype = tuning.get("cpu_blas"), np.dtype(dtype)
    if choice == "scipy" or (choice == "auto" and (dtype == np.float64 or (
            flops is not None and flops < tuning.get("mkl_min_flops")))):
        return False
    if mkl_library() is not None:
        return True
    if choice == "mkl":
        raise RuntimeError("cpu_blas='mkl': no usable MKL: expected PyPI's mkl (pip install mkl) installed "
                           f"beside this interpreter ({sys.prefix}) and not yet loaded by another library of "
                           "this process")
    return False


@functools.lru_cache(maxsize=None)
def _gemm_address(dtype, mkl):
    name = {np.dtype(np.float32): "sgemm", np.dtype(np.float64): "dgemm"}[dtype]
    if mkl:
        return ctypes.cast(getattr(mkl_library(), name + "_"), ctypes.c_void_p).value
    return _scipy_gemm_address(name)


def _scipy_gemm_address(name):
    from scipy.linalg import cython_blas

    capsule = cython_blas.__pyx_capi__[name]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return get_pointer(capsule, get_name(capsule))


def library_name():
    """Which library :func:`gemm_address` takes now for a large call: ``'MKL'`` (``'MKL (float32)'``
    under ``'auto'``) or ``"SciPy's"`` (reports)."""
    if tuning.get("cpu_blas") == "mkl":
        return "MKL"
    return "MKL (float32)" if runs_mkl(np.float32) else "SciPy's"


def mkl_library():
    """PyPI's MKL (``libmkl_rt`` in the interpreter's ``lib``), loaded for the kernels and made
    sequential, or None where there is none or another library of the process loaded it first.

    Each ``?gemm`` the kernels call runs on one Numba thread's block, so MKL's own threads
    would only compete with Numba's: the runtime library is set to MKL's sequential layer, and to
    32-bit integers, before its first call. Those settings are the process's: a library loaded
    first that uses the same ``libmkl_rt`` (a NumPy built on it) keeps its own, and this returns
    None; one loading it later gets them (set ``FASTLSTM_CPU_BLAS=scipy`` to leave MKL alone).

    Returns
    -------
    ctypes.CDLL or None
    """
    if not _mkl:
        with _mkl_lock:          # once per process: a second load would find the first's library
            if not _mkl:
                _mkl.append(_load_mkl())
    return _mkl[0]


_mkl, _mkl_lock = [], threading.Lock()


def _load_mkl():
    paths = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")))
    if not paths:
        return None
    try:
        ctypes.CDLL(paths[-1], mode=getattr(os, "RTLD_NOLOAD", 4))
        return None                                   # loaded before: another library's MKL
    except OSError:
        pass
    try:
        library = ctypes.CDLL(paths[-1])
        interface = library.MKL_Set_Interface_Layer(_MKL_INTERFACE_LP64)
        layer = library.MKL_Set_Threading_Layer(_MKL_THREADING_SEQUENTIAL)
    except (OSError, AttributeError):
        return None
    if interface != _MKL_INTERFACE_LP64 or layer != _MKL_THREADING_SEQUENTIAL:
        return None
    return library


def _gemm_intrinsic(name, a_transposed, b_transposed):
    """The typing and code of intrinsic ``name`` calling ``?gemm('T' if a_transposed else 'N', 'T' if
    b_transposed else 'N', …)``: :func:`gemm_at`, :func:`product_at` or :func:`product_transposed_at`."""
    def gemm(typingctx, address, columns, rows, inner, a, a_start, a_stride, b, b_start, b_stride, beta, c,
             c_start, c_stride):
        dtype = a.dtype
        if not (b.dtype == dtype and c.dtype == dtype and dtype in (types.float32, types.float64)):
            raise TypeError("gemm: a, b and c must be float32 or float64 alike")
        signature = types.void(types.intp, types.intp, types.intp, types.intp, a, types.intp, types.intp, b,
                               types.intp, types.intp, beta, c, types.intp, types.intp)

        def codegen(context, builder, signature, values):
            (address, columns, rows, inner, a, a_start, a_stride, b, b_start, b_stride, beta, c, c_start,
             c_stride) = values
            value_type = context.get_value_type(dtype)
            integer = ir.IntType(32)
            character = ir.IntType(8)

            def slot(value, value_ir_type):
                pointer = cgutils.alloca_once(builder, value_ir_type)
                builder.store(value, pointer)
                return pointer

            def count(value):
                return slot(builder.trunc(value, integer), integer)

            def leading(value, least):
                larger = builder.icmp_signed(">", value, least)
                return count(builder.select(larger, value, least))

            def data(array_type, array, start):
                return builder.gep(context.make_array(array_type)(context, builder, array).data, [start])

            one = context.get_constant(types.intp, 1)

            def at_least_one(value):
                return builder.select(builder.icmp_signed(">", value, one), value, one)

            # BLAS asks ldc >= max(1, columns) (its m); lda >= max(1, inner) (its k) transposed, else
            # max(1, columns); ldb >= max(1, rows) (its n) transposed, else max(1, inner)
            arguments = [
                slot(ir.Constant(character, ord("T" if a_transposed else "N")), character),
                slot(ir.Constant(character, ord("T" if b_transposed else "N")), character),
                count(columns), count(rows), count(inner),
                slot(ir.Constant(value_type, 1.0), value_type),
                data(signature.args[4], a, a_start),
                leading(a_stride, at_least_one(inner if a_transposed else columns)),
                data(signature.args[7], b, b_start), leading(b_stride, at_least_one(rows if b_transposed else inner)),
                slot(context.cast(builder, beta, signature.args[10], dtype), value_type),
                data(signature.args[11], c, c_start), leading(c_stride, at_least_one(columns)),
            ]
            pointer = ir.PointerType(value_type)
            function_type = ir.FunctionType(ir.VoidType(), [character.as_pointer()] * 2 + [integer.as_pointer()] * 3 + [
                pointer, pointer, integer.as_pointer(), pointer, integer.as_pointer(), pointer, pointer,
                integer.as_pointer()])
            builder.call(builder.inttoptr(address, function_type.as_pointer()), arguments)
            return context.get_dummy_value()
        return signature, codegen
    gemm.__name__ = gemm.__qualname__ = name
    return gemm


gemm_at = intrinsic(_gemm_intrinsic("gemm_at", False, True))
gemm_at.__doc__ = """``c (+)= bᵀ a``, row-major: ``c[i, j] = beta·c[i, j] + Σ_k b[k, i]·a[k, j]`` for i < ``rows``,
j < ``columns``, k < ``inner``, with ``a`` viewed as (``inner`` × ``columns``) from flat offset
``a_start`` with row stride ``a_stride`` (in values of the dtype), ``b`` as (``inner`` ×
``rows``) and ``c`` as (``rows`` × ``columns``) alike; ``beta`` 0: ``c`` is not read.

Signature ``gemm_at(address, columns, rows, inner, a, a_start, a_stride, b, b_start, b_stride,
beta, c, c_start, c_stride)``. Column-major, that is BLAS's ``C = A·Bᵀ + beta·C`` with C
(``columns`` × ``rows``), A (``columns`` × ``inner``) and B (``rows`` × ``inner``):
``?gemm('N', 'T', …)`` at ``address`` (:func:`gemm_address` of the arrays' dtype).
"""

product_at = intrinsic(_gemm_intrinsic("product_at", False, False))
product_at.__doc__ = """``c (+)= b a``, row-major: ``c[i, j] = beta·c[i, j] + Σ_k b[i, k]·a[k, j]`` for i < ``rows``,
j < ``columns``, k < ``inner``, with ``a`` viewed as (``inner`` × ``columns``) from flat offset
``a_start`` with row stride ``a_stride``, ``b`` as (``rows`` × ``inner``) and ``c`` as (``rows`` ×
``columns``) alike; the arguments as :func:`gemm_at`'s. Column-major, BLAS's ``C = A·B + beta·C``
with C (``columns`` × ``rows``), A (``columns`` × ``inner``), B (``inner`` × ``rows``):
``?gemm('N', 'N', …)``.
"""

product_transposed_at = intrinsic(_gemm_intrinsic("product_transposed_at", True, False))
product_transposed_at.__doc__ = """``c (+)= b aᵀ``, row-major: ``c[i, j] = beta·c[i, j] + Σ_k b[i, k]·a[j, k]``
for i < ``rows``, j < ``columns``, k < ``inner``, with ``a`` viewed as (``columns`` × ``inner``) from flat offset
``a_start`` with row stride ``a_stride`` (a weight as stored, (N, K)), ``b`` as (``rows`` ×
``inner``) and ``c`` as (``rows`` × ``columns``); the arguments as :func:`gemm_at`'s. Column-major,
BLAS's ``C = Aᵀ·B + beta·C`` with C (``columns`` × ``rows``), A (``inner`` × ``columns``) and B
(``inner`` × ``rows``): ``?gemm('T', 'N', …)``.
"""
