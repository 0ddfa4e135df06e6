"""How the cuda backend takes arrays in and gives them back.

With ``backend="cuda"`` an input may be

* a NumPy array or array-like: validated like the CPU path (``validation.real_array``),
  converted on the host and copied in; results are copied back out (:func:`to_host`);
* any object with ``__cuda_array_interface__`` (CuPy arrays, PyTorch CUDA tensors, Numba
  device arrays): used in place on the device through a view (:func:`device_view`), never
  modified and never copied to the host. What the backend keeps is always a NEW
  C-contiguous device array of the layer's dtype, made by one cast/copy kernel
  (:func:`to_device`, :func:`time_major_copy`), so the caller's memory is never aliased.

Under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) Numba's device arrays are simulated
and carry no ``__cuda_array_interface__``; they are recognised by Numba's own
``__cuda_ndarray__`` marker and take the same device path.

The kernels use a 1-D grid over the destination's flattened (C-order) index, decomposed
into the n-d index inside the kernel, so any source strides (transposed, sliced, reversed
views) are read correctly. Each kernel only stores into the destination, which converts
the source element to the destination dtype. ``numba.cuda`` is imported when this module
is, but a failed import only surfaces (as a clear RuntimeError) when the module is used.
"""
from __future__ import annotations

import os

import numpy as np

from ...validation import check_ndim, real_array

try:
    from numba import cuda
except Exception as error:  # noqa: BLE001 — numba-cuda missing or broken: said by require_gpu
    cuda = None
    _IMPORT_ERROR = error
else:
    _IMPORT_ERROR = None

_PREFIX = "backend 'cuda': "
_THREADS = 256          # threads per block (fewer when there are fewer elements)
_REAL_KINDS = "fiub"    # float, signed int, unsigned int, bool


# --------------------------------------------------------------------------------------
# Kernels (plain Python functions, compiled with numba.cuda.jit on first use)
# --------------------------------------------------------------------------------------

def _copy_1d(src, dst):
    """dst[i] = src[i]; ``dst`` is C-contiguous, ``src`` any strides, same shape."""
    index = cuda.grid(1)
    if index < dst.size:
        dst[index] = src[index]


def _copy_2d(src, dst):
    """dst[i, j] = src[i, j]."""
    index = cuda.grid(1)
    if index < dst.size:
        j = index % dst.shape[1]
        i = index // dst.shape[1]
        dst[i, j] = src[i, j]


def _copy_3d(src, dst):
    """dst[i, j, k] = src[i, j, k]."""
    index = cuda.grid(1)
    if index < dst.size:
        k = index % dst.shape[2]
        rest = index // dst.shape[2]
        j = rest % dst.shape[1]
        i = rest // dst.shape[1]
        dst[i, j, k] = src[i, j, k]


def _swap01_3d(src, dst):
    """dst[i, j, k] = src[j, i, k]: (B, T, F) → (T, B, F) (or back), cast on the way."""
    index = cuda.grid(1)
    if index < dst.size:
        k = index % dst.shape[2]
        rest = index // dst.shape[2]
        j = rest % dst.shape[1]
        i = rest // dst.shape[1]
        dst[i, j, k] = src[j, i, k]


def _fill_zero(dst):
    """dst[i] = 0 for a 1-d contiguous ``dst``."""
    index = cuda.grid(1)
    if index < dst.size:
        dst[index] = 0


def _times_repeated(src, mask, dst):
    """dst[i] = src[i] · mask[i mod mask.size] over flat C-contiguous arrays: the mask repeats
    over src's leading axes."""
    index = cuda.grid(1)
    if index < dst.size:
        dst[index] = src[index] * mask[index % mask.size]


def _clear_padding_3d(array, lengths):
    """array[t, b, :] = 0 wherever t >= lengths[b], in place."""
    index = cuda.grid(1)
    if index < array.size:
        k = index % array.shape[2]
        rest = index // array.shape[2]
        b = rest % array.shape[1]
        t = rest // array.shape[1]
        if t >= lengths[b]:
            array[t, b, k] = 0


_COPY_FUNCTIONS = {1: _copy_1d, 2: _copy_2d, 3: _copy_3d}
_KERNELS: dict = {}


def _require_module():
    """``numba.cuda``, or the RuntimeError saying why it cannot be imported."""
    if cuda is None:
        raise RuntimeError(
            f"{_PREFIX}numba.cuda cannot be imported ({type(_IMPORT_ERROR).__name__}: "
            f"{_IMPORT_ERROR}); install the CUDA extra with pip install \"fastlstm[cuda]\" "
            "(it brings numba-cuda), or use backend='cpu'") from _IMPORT_ERROR
    return cuda


def _kernel(function):
    """The ``numba.cuda.jit`` dispatcher for one of the kernel functions above (made once)."""
    kernel = _KERNELS.get(function)
    if kernel is None:
        kernel = _require_module().jit(cache=True)(function)
        _KERNELS[function] = kernel
    return kernel


def _empty(shape, dtype):
    """A new device array on a block of the backend's pool (:mod:`.workspace`)."""
    from . import workspace

    return workspace.empty(shape, dtype)


def copied_in(array):
    """A new device array (a block of the pool) holding the C-contiguous host ``array``, any dtype."""
    result = _empty(array.shape, array.dtype)
    if array.size:
        result.copy_to_device(array)
    return result


def _launch(function, size, *args):
    """Launch ``function``'s kernel over ``size`` elements (nothing to do when size is 0)."""
    if size == 0:
        return
    threads = min(_THREADS, size)
    blocks = (size + threads - 1) // threads
    _kernel(function)[blocks, threads](*args)


# --------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------

def is_device_array(value) -> bool:
    """Whether ``value`` lives on the GPU and is taken in place.

    Parameters
    ----------
    value : object
        Anything.

    Returns
    -------
    bool
        True when ``value`` exposes ``__cuda_array_interface__`` (CuPy, PyTorch CUDA
        tensors, Numba device arrays), or is a Numba device array (``__cuda_ndarray__``,
        which is how the CUDA simulator's arrays are recognised); False otherwise
        (NumPy arrays, lists, scalars, ...).
    """
    if isinstance(value, np.ndarray):
        return False
    if getattr(value, "__cuda_ndarray__", False) is True:
        return True
    try:
        return getattr(value, "__cuda_array_interface__", None) is not None
    except Exception:  # noqa: BLE001 — e.g. a CPU torch tensor's property raises
        return False


def require_gpu():
    """Raise RuntimeError unless the cuda backend can run here.

    Raises
    ------
    RuntimeError
        When ``numba.cuda`` cannot be imported (numba-cuda is not installed: the message
        says ``pip install "fastlstm[cuda]"``), or when ``numba.cuda.is_available()`` is
        False (no usable CUDA GPU, driver or NVVM; the message includes Numba's reason
        when it has one and suggests ``backend='cpu'``). Under the CUDA simulator
        (``NUMBA_ENABLE_CUDASIM=1``) ``is_available()`` is True and nothing is raised.
    """
    cuda_module = _require_module()
    if cuda_module.is_available():
        _require_compilable()
        return
    reason = _unavailable_reason()
    detail = f" ({reason})" if reason else ""
    raise RuntimeError(
        f"{_PREFIX}no usable CUDA GPU was found: numba.cuda.is_available() is False{detail}. "
        "Use backend='cpu', or run on a machine with an NVIDIA GPU and driver "
        "(NUMBA_ENABLE_CUDASIM=1 runs the CUDA simulator, for testing only).")


def _require_compilable():
    """Raise RuntimeError when numba-cuda's compiler cannot load next to this NumPy.

    numba-cuda loads its NumPy implementations on the first kernel compile; a version that
    registers functions this NumPy no longer has (numba-cuda 0.30 and ``np.row_stack``,
    removed in NumPy 2.5) would otherwise fail there, deep in a kernel launch."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return
    try:
        import numba.cuda.np.arrayobj  # noqa: F401
    except Exception as error:  # noqa: BLE001 — reported, with its cause
        import numba_cuda

        raise RuntimeError(
            f"{_PREFIX}numba-cuda {getattr(numba_cuda, '__version__', '?')} cannot compile kernels with "
            f"NumPy {np.__version__} ({type(error).__name__}: {error}); install a NumPy that this "
            "numba-cuda supports (e.g. pip install 'numpy<2.5') or a newer numba-cuda") from error


def _unavailable_reason():
    """Numba's reason why CUDA is unavailable, on one line, or None."""
    try:
        from numba.cuda.cudadrv import driver as driver_module

        error = driver_module.driver.initialization_error
        if error is not None:
            text = " ".join(str(error).split()).rstrip(".")
            return f"driver: {text}" if text else type(error).__name__
        from numba.cuda.cudadrv import nvvm

        if not nvvm.is_available():
            return "the NVVM compiler library was not found"
    except Exception:  # noqa: BLE001 — the reason is a courtesy, never a second failure
        return None
    return None


def device_view(name, value, dtype=None):
    """A Numba device array viewing ``value``'s GPU memory, without copying.

    Parameters
    ----------
    name : str
        The argument's name, for error messages.
    value : object with ``__cuda_array_interface__`` (or a Numba device array)
        Any shape and strides.
    dtype : {np.float32, np.float64}, optional
        The dtype the caller will convert to; only used in the error message.

    Returns
    -------
    numba.cuda.cudadrv.devicearray.DeviceNDArray
        Same shape, strides and dtype as ``value``, sharing its memory (``value`` itself
        when it already is a Numba device array).

    Raises
    ------
    TypeError
        When ``value`` is not a device array, or its dtype is not real numbers
        (float, signed or unsigned integer, bool), e.g. complex.
    """
    cuda_module = _require_module()
    if getattr(value, "__cuda_ndarray__", False) is True:
        view = value
    elif is_device_array(value):
        if not hasattr(cuda_module, "as_cuda_array"):
            raise TypeError(f"{name}: the CUDA simulator cannot use {type(value).__name__} "
                            "(real GPU memory); pass a NumPy array or a numba.cuda device array")
        # The kernels run on the legacy default stream, which already waits for work queued
        # on a producer's default stream (CAI stream 1 or 2): numba's host-side
        # synchronisation is only needed for other streams.
        stream = value.__cuda_array_interface__.get("stream")
        view = cuda_module.as_cuda_array(value, sync=stream not in (None, 1, 2))
    else:
        raise TypeError(f"{name}: expected an object with __cuda_array_interface__, "
                        f"got {type(value).__name__}")
    if np.dtype(view.dtype).kind not in _REAL_KINDS:
        target = (f"real numbers convertible to {np.dtype(dtype).name}" if dtype is not None
                  else "real numbers (float, integer or bool)")
        raise TypeError(f"{name}: expected {target}, got a device array of dtype {view.dtype}")
    return view


def to_device(name, value, dtype):
    """A NEW C-contiguous device array of ``dtype`` holding ``value``.

    Parameters
    ----------
    name : str
        The argument's name, for error messages.
    value : array-like or device array, shape (n,), (n, m) or (n, m, k)
        Host inputs are validated with ``validation.real_array`` (same messages as the CPU
        path), converted on the host and copied in. Device inputs (any strides) are cast
        and copied by one kernel on the device: no host round trip, and ``value`` is never
        modified nor aliased.
    dtype : {np.float32, np.float64}
        The result's dtype.

    Returns
    -------
    DeviceNDArray, same shape as ``value``
        C-contiguous, of ``dtype``, a new array (a block of the pool, shared with no live array).

    Raises
    ------
    TypeError
        When the numbers are not real (e.g. complex, strings).
    ValueError
        When ``value`` has fewer than 1 or more than 3 dimensions.
    """
    _require_module()
    dtype = np.dtype(dtype)
    if is_device_array(value):
        view = device_view(name, value, dtype)
        shape = tuple(view.shape)
        _check_ndim_1_to_3(name, shape)
        result = _empty(shape, dtype)
        _launch(_COPY_FUNCTIONS[len(shape)], result.size, view, result)
        return result
    array = real_array(name, value, dtype)
    _check_ndim_1_to_3(name, array.shape)
    return copied_in(np.ascontiguousarray(array, dtype=dtype))


def _check_ndim_1_to_3(name, shape):
    if not 1 <= len(shape) <= 3:
        raise ValueError(f"{name}: expected a 1-d, 2-d or 3-d array, got shape {tuple(shape)}")


def time_major_copy(name, value, dtype, batch_first):
    """A NEW C-contiguous (T, B, F) device array of ``dtype`` from a 3-d input.

    Parameters
    ----------
    name : str
        The argument's name, for error messages.
    value : array-like or device array, shape (B, T, F) if ``batch_first`` else (T, B, F)
        As for :func:`to_device`: host inputs are validated, converted (and transposed)
        on the host and copied in; device inputs, of any strides, are cast and
        transposed together by ONE kernel, never modified nor aliased.
    dtype : {np.float32, np.float64}
        The result's dtype.
    batch_first : bool
        Whether ``value``'s first two axes are (B, T); they are swapped to (T, B).

    Returns
    -------
    DeviceNDArray, shape (T, B, F)
        C-contiguous, of ``dtype``, a new array (a block of the pool); equal to
        ``np.ascontiguousarray(value.transpose(1, 0, 2) if batch_first else value, dtype)``.

    Raises
    ------
    TypeError
        When the numbers are not real.
    ValueError
        When ``value`` is not 3-d. Axis sizes are not checked here.
    """
    _require_module()
    dtype = np.dtype(dtype)
    layout = "(B, T, features)" if batch_first else "(T, B, features)"
    if is_device_array(value):
        view = device_view(name, value, dtype)
        check_ndim(name, view, 3, layout)
        shape = tuple(view.shape)
        if batch_first:
            shape = (shape[1], shape[0], shape[2])
        result = _empty(shape, dtype)
        _launch(_swap01_3d if batch_first else _copy_3d, result.size, view, result)
        return result
    array = real_array(name, value, dtype)
    check_ndim(name, array, 3, layout)
    if batch_first:
        array = array.transpose(1, 0, 2)
    return copied_in(np.ascontiguousarray(array, dtype=dtype))


def clear_padding(array, lengths):
    """Zero the steps of ``array`` past each sequence's length, in place, by one kernel.

    Parameters
    ----------
    array : DeviceNDArray, shape (T, B, F)
        C-contiguous; a copy the caller owns.
    lengths : ndarray of int64, shape (B,), on the host
    """
    _require_module()
    _launch(_clear_padding_3d, array.size, array, device_lengths(lengths))


_LENGTHS = {}
_MAX_LENGTHS = 64


def device_lengths(lengths):
    """The host ``lengths`` as a device int64 array, copied in once per distinct value and kept
    (no kernel writes lengths): a call with lengths seen before copies nothing to the device.

    Parameters
    ----------
    lengths : ndarray of int, shape (B,), on the host

    Returns
    -------
    DeviceNDArray of int64, shape (B,)
        Shared between calls; never to be written.
    """
    array = np.ascontiguousarray(lengths, np.int64)
    key = array.tobytes()
    device = _LENGTHS.get(key)
    if device is None:
        if len(_LENGTHS) >= _MAX_LENGTHS:
            _LENGTHS.clear()
        device = _LENGTHS[key] = copied_in(array)
    return device


def batch_major(array):
    """The (T, B, F) device ``array`` as a NEW C-contiguous (B, T, F) device array.

    Parameters
    ----------
    array : DeviceNDArray, shape (T, B, F)
        Any strides and dtype; not modified.

    Returns
    -------
    DeviceNDArray, shape (B, T, F)
        Same dtype, C-contiguous, made by one kernel.
    """
    _require_module()
    view = device_view("array", array)
    check_ndim("array", view, 3, "(T, B, features)")
    time, batch, features = tuple(view.shape)
    result = _empty((batch, time, features), view.dtype)
    _launch(_swap01_3d, result.size, view, result)
    return result


def zeros(shape, dtype):
    """A C-contiguous device array of zeros, filled on the device.

    Parameters
    ----------
    shape : int or tuple of int
        Any shape (size 0 included).
    dtype : {np.float32, np.float64}

    Returns
    -------
    DeviceNDArray, shape ``shape``
        All zeros; no host array of that size is made or copied.
    """
    _require_module()
    result = _empty(shape, np.dtype(dtype))
    if result.size:
        _launch(_fill_zero, result.size, result.reshape(result.size))
    return result


def times(array, mask):
    """array ⊙ mask, the mask repeated over ``array``'s leading axes, as a new device array.

    Parameters
    ----------
    array : DeviceNDArray, C-contiguous, shape (..., *mask.shape)
        Not modified.
    mask : ndarray or DeviceNDArray, shape ``array.shape[k:]`` for some k
        Host masks are copied in.

    Returns
    -------
    DeviceNDArray, shape and dtype of ``array``
    """
    _require_module()
    mask_shape = tuple(np.shape(mask))
    if tuple(array.shape[len(array.shape) - len(mask_shape):]) != mask_shape:
        raise ValueError(f"mask: expected the trailing shape of {tuple(array.shape)}, got {mask_shape}")
    if not is_device_array(mask):
        mask = copied_in(np.ascontiguousarray(mask, dtype=array.dtype))
    result = _empty(array.shape, array.dtype)
    if result.size:
        _launch(_times_repeated, result.size, array.reshape(array.size), mask.reshape(mask.size),
                result.reshape(result.size))
    return result


def to_host(array):
    """The device ``array`` copied into a new NumPy array.

    Parameters
    ----------
    array : DeviceNDArray, any shape
        Not modified.

    Returns
    -------
    numpy.ndarray
        Same shape, dtype and values (``array.copy_to_host()``).
    """
    return array.copy_to_host()


def ptx_signatures(dtype):
    """Every kernel, with the source layouts it is launched with, for destination ``dtype``.

    For checking that the kernels compile for a real GPU without one::

        for function, signature in ptx_signatures(np.float32):
            numba.cuda.compile_ptx(function, signature, cc=(9, 0))

    Parameters
    ----------
    dtype : {np.float32, np.float64}
        The destination dtype.

    Returns
    -------
    list of (function, numba signature)
        The kernels' Python functions (what their dispatchers' ``.py_func`` is), each
        with ``void(src, dst)``: ``src`` of float32, float64, int64 and bool in the general
        'A' layout plus a C-contiguous one of ``dtype`` (1-, 2- and 3-d), ``dst`` a
        C-contiguous array of ``dtype``; the zero fill, ``void(dst)``; and the masked copy,
        ``void(src, mask, dst)``, all flat C-contiguous arrays of ``dtype``.
    """
    from numba.core import types

    dst_type = types.float32 if np.dtype(dtype) == np.float32 else types.float64
    sources = [types.float32, types.float64, types.int64, types.boolean]
    entries = []
    for function, ndim in [(_copy_1d, 1), (_copy_2d, 2), (_copy_3d, 3), (_swap01_3d, 3)]:
        dst = types.Array(dst_type, ndim, "C")
        for source in sources:
            entries.append((function, types.void(types.Array(source, ndim, "A"), dst)))
        entries.append((function, types.void(types.Array(dst_type, ndim, "C"), dst)))
    entries.append((_fill_zero, types.void(types.Array(dst_type, 1, "C"))))
    flat = types.Array(dst_type, 1, "C")
    entries.append((_times_repeated, types.void(flat, flat, flat)))
    return entries
