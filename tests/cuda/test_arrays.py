"""``fastlstm.backends.cuda.arrays``: host and device inputs in, device arrays out, back to the host.

Run in the cuda process (see ``conftest.py``), under the simulator with tiny shapes:
``FASTLSTM_CUDA_TESTS=1 NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda/test_arrays.py``.
Every expected value is NumPy's
``np.ascontiguousarray(value.transpose(1, 0, 2) if batch_first else value, dtype)``.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numba import cuda

from fastlstm.backends.cuda import arrays

DTYPES = [np.float32, np.float64]


# ----------------------------------------------------------------------------- helpers

def _ramp(shape, dtype=np.float64):
    """Distinct, non-integer values (so a swapped axis or a wrong stride shows)."""
    values = np.arange(np.prod(shape), dtype=np.float64).reshape(shape) * 1.25 - 7.1
    return values.astype(dtype)


def _shares_memory(a, b):
    """Whether two device arrays (real or simulated) lie in the same allocation."""
    if hasattr(a, "__cuda_array_interface__"):
        from numba.cuda.cudadrv.driver import device_extents

        (start_a, end_a), (start_b, end_b) = device_extents(a), device_extents(b)
        return start_a < end_b and start_b < end_a
    return np.shares_memory(a._ary, b._ary)  # the simulator's FakeCUDAArray wraps NumPy


def _check_result(result, expected, source=None):
    """Same dtype, shape and values as ``expected``; C-contiguous; a fresh allocation."""
    assert result.dtype == expected.dtype
    assert tuple(result.shape) == expected.shape
    assert result.is_c_contiguous()
    if expected.size:   # NumPy gives empty arrays zero strides, numba-cuda C strides
        assert tuple(result.strides) == expected.strides  # ``expected`` is C-contiguous
    np.testing.assert_array_equal(arrays.to_host(result), expected)
    if source is not None:
        assert not _shares_memory(result, source)


def _permuted(device, axes):
    """A view of ``device`` with its axes permuted, sharing its memory.

    Numba's own ``DeviceNDArray.T`` makes a contiguous copy on a real GPU, so the view is
    built from the same memory with permuted strides (the simulator's ``transpose`` is
    NumPy's, a view already).
    """
    if not hasattr(device, "__cuda_array_interface__"):
        return device.transpose(axes)
    return type(device)(shape=tuple(device.shape[a] for a in axes),
                        strides=tuple(device.strides[a] for a in axes),
                        dtype=device.dtype, gpu_data=device.gpu_data)


def _device_views():
    """label → ``make()``, which gives (device base, device view of it, host base, host view).

    "Unchanged afterwards" is checked on the contiguous base: Numba copies a view with a
    negative stride to the host wrongly on a real GPU, though kernels read it correctly.
    """

    def make(shape, index, axes=None):
        host = _ramp(shape)
        device = cuda.to_device(host)
        if axes is not None:
            return device, _permuted(device, axes), host, host.transpose(axes)
        return device, device[index], host, host[index]

    return {
        "contiguous": lambda: make((3, 4, 5), (slice(None),)),
        "permuted": lambda: make((5, 3, 4), None, (1, 2, 0)),
        "swapped_01": lambda: make((4, 3, 5), None, (1, 0, 2)),
        "strided_middle": lambda: make((3, 8, 5), (slice(None), slice(None, None, 2))),
        "strided_last": lambda: make((4, 3, 10), (slice(1, None), slice(None),
                                                  slice(None, None, 3))),
        "reversed_first": lambda: make((3, 4, 5), (slice(None, None, -1),)),
    }


VIEWS = _device_views()


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_views_are_views(view):
    """The inputs below really are non-contiguous views (except "contiguous")."""
    base, source, host_base, host = VIEWS[view]()
    assert tuple(source.shape) == host.shape and tuple(source.strides) == host.strides
    assert _shares_memory(source, base)
    assert source.is_c_contiguous() == (view == "contiguous")


# ----------------------------------------------------------------------------- is_device_array

def test_is_device_array():
    host = np.zeros((2, 3))
    device = cuda.to_device(host)
    assert arrays.is_device_array(device)
    assert arrays.is_device_array(device[:, ::2])
    assert not arrays.is_device_array(host)
    assert not arrays.is_device_array([[1.0, 2.0]])
    assert not arrays.is_device_array(3.0)

    class Interface:  # what CuPy/PyTorch expose
        __cuda_array_interface__ = {"shape": (1,), "typestr": "<f4", "data": (0, False),
                                    "version": 3}

    assert arrays.is_device_array(Interface())


# ----------------------------------------------------------------------------- require_gpu

def test_require_gpu_passes_when_available():
    assert cuda.is_available()  # under the simulator too
    arrays.require_gpu()


def test_require_gpu_message_when_unavailable(monkeypatch):
    monkeypatch.setattr(arrays.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError) as info:
        arrays.require_gpu()
    message = str(info.value)
    assert message.startswith("backend 'cuda': ")
    assert "GPU" in message and "backend='cpu'" in message


def test_require_gpu_message_without_numba_cuda(monkeypatch):
    monkeypatch.setattr(arrays, "cuda", None)
    monkeypatch.setattr(arrays, "_IMPORT_ERROR", ImportError("No module named 'numba_cuda'"))
    with pytest.raises(RuntimeError) as info:
        arrays.require_gpu()
    message = str(info.value)
    assert message.startswith("backend 'cuda': ")
    assert 'pip install "fastlstm[cuda]"' in message
    assert "numba_cuda" in message


# ----------------------------------------------------------------------------- device_view

def test_device_view_does_not_copy():
    host = _ramp((3, 4))
    device = cuda.to_device(host)
    view = arrays.device_view("x", device[:, ::2])
    assert tuple(view.shape) == (3, 2) and view.dtype == np.float64
    assert _shares_memory(view, device)
    np.testing.assert_array_equal(view.copy_to_host(), host[:, ::2])


def test_device_view_rejects_complex():
    device = cuda.to_device(np.ones((2, 3), np.complex64))
    with pytest.raises(TypeError) as info:
        arrays.device_view("x", device, np.float32)
    assert str(info.value) == ("x: expected real numbers convertible to float32, "
                               "got a device array of dtype complex64")
    with pytest.raises(TypeError, match=r"^h0: expected real numbers .*complex64$"):
        arrays.device_view("h0", device)


def test_device_view_rejects_host_arrays():
    with pytest.raises(TypeError, match=r"^x: expected an object with __cuda_array_interface__, "
                                        r"got ndarray$"):
        arrays.device_view("x", np.zeros(3))


# ----------------------------------------------------------------------------- to_device

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("source_dtype", [np.float64, np.float32, np.int64, np.int32,
                                          np.uint8, np.bool_])
def test_to_device_host_input_converts(dtype, source_dtype):
    host = (_ramp((2, 3, 4)) > 0) if source_dtype is np.bool_ else _ramp((2, 3, 4), source_dtype)
    before = host.copy()
    result = arrays.to_device("x", host, dtype)
    _check_result(result, np.ascontiguousarray(host, dtype))
    np.testing.assert_array_equal(host, before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_to_device_host_noncontiguous_and_array_like(dtype):
    host = _ramp((4, 6))
    _check_result(arrays.to_device("x", host.T, dtype), np.ascontiguousarray(host.T, dtype))
    _check_result(arrays.to_device("x", host[::2, 1::2], dtype),
                  np.ascontiguousarray(host[::2, 1::2], dtype))
    _check_result(arrays.to_device("x", [1, 2.5, -3], dtype), np.array([1, 2.5, -3], dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("view", sorted(VIEWS))
def test_to_device_device_input_3d(dtype, view):
    base, source, host_base, host = VIEWS[view]()
    result = arrays.to_device("x", source, dtype)
    _check_result(result, np.ascontiguousarray(host, dtype), source)
    np.testing.assert_array_equal(base.copy_to_host(), host_base)  # source unchanged


@pytest.mark.parametrize("dtype", DTYPES)
def test_to_device_device_input_1d_2d(dtype):
    host = _ramp((5, 6))
    device = cuda.to_device(host)
    for source, expected in [(device, host), (device[:, ::2], host[:, ::2]),
                             (_permuted(device, (1, 0)), host.T),
                             (_permuted(device[1:4, ::2], (1, 0)), host[1:4, ::2].T),
                             (device[:, 3], host[:, 3]), (device[2, ::-2], host[2, ::-2]),
                             (cuda.to_device(host[0]), host[0])]:
        result = arrays.to_device("x", source, dtype)
        _check_result(result, np.ascontiguousarray(expected, dtype), source)
    np.testing.assert_array_equal(device.copy_to_host(), host)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("source_dtype", [np.float64, np.float32, np.int64, np.int32, np.bool_])
def test_to_device_device_input_converts(dtype, source_dtype):
    values = _ramp((2, 3, 4))
    host = (values > 0) if source_dtype is np.bool_ else values.astype(source_dtype)
    base = cuda.to_device(host)
    source = base[:, ::2]
    result = arrays.to_device("x", source, dtype)
    _check_result(result, np.ascontiguousarray(host[:, ::2], dtype), source)
    np.testing.assert_array_equal(base.copy_to_host(), host)


@pytest.mark.parametrize("batch_first", [False, True])
def test_device_inputs_never_go_through_the_host(monkeypatch, batch_first):
    """No copy_to_host of the source, no host→device upload: cast and copy on the device."""
    host = _ramp((3, 4, 5))
    source = cuda.to_device(host)[:, ::2]

    def refuse(*args, **kwargs):
        raise AssertionError("a host round trip")

    with monkeypatch.context() as patch:
        patch.setattr(type(source), "copy_to_host", refuse)
        patch.setattr(arrays.cuda, "to_device", refuse)
        copied = arrays.to_device("x", source, np.float32)
        time_major = arrays.time_major_copy("x", source, np.float32, batch_first)
        back = arrays.batch_major(time_major)
        flat = arrays.to_device("x", source[0], np.float64)
    expected = np.ascontiguousarray(host[:, ::2].transpose(1, 0, 2) if batch_first
                                    else host[:, ::2], np.float32)
    _check_result(copied, np.ascontiguousarray(host[:, ::2], np.float32), source)
    _check_result(time_major, expected, source)
    _check_result(back, np.ascontiguousarray(expected.transpose(1, 0, 2)), time_major)
    _check_result(flat, np.ascontiguousarray(host[0, ::2]), source)


def test_to_device_float64_to_float32_rounds_like_numpy():
    host = np.array([0.1, 1 / 3, 1e-40, 3.4e38, -2.0 ** -150, 1 + 2.0 ** -24], np.float64)
    result = arrays.to_device("x", cuda.to_device(host), np.float32)
    np.testing.assert_array_equal(arrays.to_host(result), host.astype(np.float32))


def test_to_device_many_blocks():
    """More elements than one block's threads: every block writes its share."""
    host = _ramp((3, 7, 30))  # 630 elements
    source = cuda.to_device(host)[:, :, ::2]  # 315, strided
    _check_result(arrays.to_device("x", source, np.float32),
                  np.ascontiguousarray(host[:, :, ::2], np.float32), source)


def test_to_device_empty():
    source = cuda.to_device(np.zeros((0, 3)))
    _check_result(arrays.to_device("x", source, np.float32), np.zeros((0, 3), np.float32))


def test_to_device_rejects_complex_host():
    with pytest.raises(TypeError) as info:
        arrays.to_device("x", np.ones((2, 3), np.complex128), np.float32)
    assert str(info.value) == ("x: expected real numbers convertible to float32, "
                               "got an array of dtype complex128")


def test_to_device_rejects_complex_device():
    source = cuda.to_device(np.ones((2, 3, 4), np.complex64))
    with pytest.raises(TypeError) as info:
        arrays.to_device("x", source, np.float64)
    assert str(info.value) == ("x: expected real numbers convertible to float64, "
                               "got a device array of dtype complex64")


def test_to_device_rejects_ndim():
    with pytest.raises(ValueError, match=r"^x: expected a 1-d, 2-d or 3-d array, got shape \(\)$"):
        arrays.to_device("x", np.float64(2.0), np.float32)
    with pytest.raises(ValueError, match=r"^x: .*got shape \(1, 1, 1, 2\)$"):
        arrays.to_device("x", cuda.to_device(np.zeros((1, 1, 1, 2))), np.float32)


# ----------------------------------------------------------------------------- time_major_copy

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_first", [False, True])
def test_time_major_copy_host(dtype, batch_first):
    host = _ramp((2, 3, 4))
    expected = np.ascontiguousarray(host.transpose(1, 0, 2) if batch_first else host, dtype)
    result = arrays.time_major_copy("x", host, dtype, batch_first)
    _check_result(result, expected)
    ints = np.arange(24, dtype=np.int64).reshape(2, 3, 4)
    _check_result(arrays.time_major_copy("x", ints.tolist(), dtype, batch_first),
                  np.ascontiguousarray(ints.transpose(1, 0, 2) if batch_first else ints, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("view", sorted(VIEWS))
def test_time_major_copy_device(dtype, batch_first, view):
    base, source, host_base, host = VIEWS[view]()
    expected = np.ascontiguousarray(host.transpose(1, 0, 2) if batch_first else host, dtype)
    result = arrays.time_major_copy("x", source, dtype, batch_first)
    _check_result(result, expected, source)
    np.testing.assert_array_equal(base.copy_to_host(), host_base)


@pytest.mark.parametrize("batch_first", [False, True])
def test_time_major_copy_device_int_and_bool(batch_first):
    ints = np.arange(-12, 12, dtype=np.int64).reshape(2, 3, 4)
    for host in (ints, ints % 3 == 0):
        source = cuda.to_device(host)
        expected = np.ascontiguousarray(host.transpose(1, 0, 2) if batch_first else host,
                                        np.float32)
        _check_result(arrays.time_major_copy("x", source, np.float32, batch_first), expected,
                      source)


def test_time_major_copy_many_blocks():
    host = _ramp((5, 4, 20))  # 400 elements
    source = cuda.to_device(host)
    _check_result(arrays.time_major_copy("x", source, np.float32, True),
                  np.ascontiguousarray(host.transpose(1, 0, 2), np.float32), source)


def test_time_major_copy_rejects_complex_and_ndim():
    with pytest.raises(TypeError, match=r"^x: expected real numbers convertible to float32, "
                                        r"got an array of dtype complex128$"):
        arrays.time_major_copy("x", np.ones((2, 3, 4), complex), np.float32, False)
    with pytest.raises(TypeError, match=r"^x: .*got a device array of dtype complex64$"):
        arrays.time_major_copy("x", cuda.to_device(np.ones((2, 3, 4), np.complex64)),
                               np.float32, True)
    with pytest.raises(ValueError, match=r"^x: expected a 3-d array \(B, T, features\), "
                                         r"got shape \(2, 3\)$"):
        arrays.time_major_copy("x", np.ones((2, 3)), np.float32, True)
    with pytest.raises(ValueError, match=r"^x: expected a 3-d array \(T, B, features\), "
                                         r"got shape \(2, 3\)$"):
        arrays.time_major_copy("x", cuda.to_device(np.ones((2, 3))), np.float32, False)


# ----------------------------------------------------------------------------- batch_major

@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_major(dtype):
    host = _ramp((3, 2, 4), dtype)
    source = cuda.to_device(host)
    result = arrays.batch_major(source)
    _check_result(result, np.ascontiguousarray(host.transpose(1, 0, 2)), source)
    np.testing.assert_array_equal(source.copy_to_host(), host)


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_batch_major_round_trip(view):
    base, source, host_base, host = VIEWS[view]()
    time_major = arrays.time_major_copy("x", source, np.float64, True)
    back = arrays.batch_major(time_major)
    _check_result(back, np.ascontiguousarray(host), source)
    assert not _shares_memory(back, time_major)
    np.testing.assert_array_equal(base.copy_to_host(), host_base)


def test_batch_major_rejects_non_3d():
    with pytest.raises(ValueError, match=r"^array: expected a 3-d array"):
        arrays.batch_major(cuda.to_device(np.zeros((2, 3))))


# ----------------------------------------------------------------------------- zeros, to_host

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5,), (2, 3), (3, 2, 70), (0, 4)])
def test_zeros(dtype, shape):
    result = arrays.zeros(shape, dtype)
    _check_result(result, np.zeros(shape, dtype))


def test_zeros_overwrites_reused_memory(monkeypatch):
    """The fill kernel really writes: device_array's memory is not assumed to be zero."""
    real_device_array = arrays.cuda.device_array

    def dirty_device_array(shape, dtype):
        array = real_device_array(shape, dtype)
        array.copy_to_device(np.full(shape, 7, dtype))
        return array

    monkeypatch.setattr(arrays.cuda, "device_array", dirty_device_array)
    _check_result(arrays.zeros((3, 2, 50), np.float32), np.zeros((3, 2, 50), np.float32))


def test_to_host():
    host = _ramp((2, 3, 4), np.float32)
    device = cuda.to_device(host)
    copy = arrays.to_host(device)
    assert isinstance(copy, np.ndarray) and copy.dtype == np.float32
    np.testing.assert_array_equal(copy, host)
    copy[...] = 0
    np.testing.assert_array_equal(device.copy_to_host(), host)


# ----------------------------------------------------------------------------- real-GPU build

_PTX_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from numba import cuda
    from numba.cuda.cudadrv import nvvm
    from fastlstm.backends.cuda import arrays

    if not nvvm.is_available():
        sys.exit(3)
    count = 0
    for dtype in (np.float32, np.float64):
        for function, signature in arrays.ptx_signatures(dtype):
            ptx, _ = cuda.compile_ptx(function, signature, cc=(9, 0))
            assert ".entry" in ptx, (function.__name__, signature)
            count += 1
    if not cuda.is_available():
        try:
            arrays.require_gpu()
        except RuntimeError as error:
            assert str(error).startswith("backend 'cuda': "), error
            assert "backend='cpu'" in str(error), error
        else:
            raise AssertionError("require_gpu() did not raise without a GPU")
    print(count)
""")


def test_kernels_compile_for_sm90():
    """compile_ptx for cc 9.0 (a separate process: the simulator has no compiler)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-c", _PTX_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=600, cwd=root)
    if done.returncode == 3:
        pytest.skip("NVVM is not available: cannot compile PTX here")
    assert done.returncode == 0, done.stderr[-3000:]
    expected = len(arrays.ptx_signatures(np.float32)) + len(arrays.ptx_signatures(np.float64))
    assert int(done.stdout.split()[-1]) == expected
