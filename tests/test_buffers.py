"""The pool of large per-call arrays: a block is reused only after every array over it is gone,
blocks serve nearby sizes, and what the pool keeps stays bounded."""
import numpy as np

import fastlstm
from fastlstm import buffers, functional, tuning
from support import run_in_threads

SHAPE = (64, 64, 64)   # 2 MiB of float64: pooled


def _address(array):
    return array.__array_interface__["data"][0]


def test_a_released_array_is_handed_out_again():
    first = buffers.empty(SHAPE, np.float64)
    address = _address(first)
    del first
    assert _address(buffers.empty(SHAPE, np.float64)) == address


def test_an_array_is_not_reused_while_it_or_a_view_of_it_lives():
    first = buffers.empty(SHAPE, np.float64)
    view = first[3]
    held = [first.reshape(-1)[::7], memoryview(first[1])]
    address = _address(first)
    del first
    second = buffers.empty(SHAPE, np.float64)
    assert _address(second) != address
    assert not np.shares_memory(second, view)
    del view, second
    third = buffers.empty(SHAPE, np.float64)
    assert _address(third) != address          # the strided view and the memoryview still hold it
    assert all(not np.shares_memory(third, np.asarray(h)) for h in held)


def test_small_arrays_are_not_pooled_but_aligned():
    before = buffers.statistics()["leased_bytes"]
    small = buffers.empty((8, 9), np.float32)
    aligned = buffers.empty((8, 9), np.float32, aligned=True)
    assert buffers.statistics()["leased_bytes"] == before
    for array in (small, aligned):
        assert array.shape == (8, 9) and array.dtype == np.float32 and array.flags.c_contiguous
    assert _address(aligned) % buffers.ALIGNMENT == 0


def test_pooled_arrays_are_aligned_and_of_the_asked_shape():
    for shape, dtype in (((300, 32, 256), np.float32), ((1000, 1001), np.float64), ((3, 5, 7, 4999), np.float32)):
        array = buffers.empty(shape, dtype)
        assert array.shape == shape and array.dtype == dtype and array.flags.c_contiguous
        assert _address(array) % buffers.ALIGNMENT == 0


def test_size_classes_round_up_by_at_most_a_quarter():
    for nbytes in list(range(8, 5000)) + [(1 << 20) + 1, 3 << 20, 12345678]:
        capacity = buffers.size_class(nbytes)
        assert nbytes <= capacity <= 1.25 * nbytes


def test_arrays_of_nearby_sizes_share_blocks():
    buffers.release_free()
    addresses = set()
    lengths = range(100, 301, 7)         # a (T, 32, 256) float32 array, T growing: 3.3 to 9.8 MB
    for steps in lengths:
        array = buffers.empty((steps, 32, 256), np.float32)
        addresses.add(_address(array))
        del array
    spanned = {buffers.size_class(steps * 32 * 256 * 4) for steps in lengths}
    assert len(addresses) <= len(spanned) <= 8       # of 29 distinct sizes


def test_free_bytes_never_exceed_the_most_leased_at_once():
    buffers.release_free()
    rng = np.random.default_rng(0)
    for _ in range(200):                 # a call pattern of 1-4 live arrays of random sizes
        live = [buffers.empty((int(rng.integers(1 << 18, 1 << 21)),), np.float32)
                for _ in range(int(rng.integers(1, 5)))]
        del live
        stats = buffers.statistics()
        assert stats["free_bytes"] <= stats["peak_leased_bytes"]
    assert stats["peak_leased_bytes"] <= 4 * 1.25 * (4 << 21) + 4 * buffers.ALIGNMENT


def test_the_free_limit_tunable_bounds_the_pool():
    buffers.release_free()
    with tuning.override(pool_max_free_bytes=3 << 20):
        arrays = [buffers.empty((1 << 20,), np.uint8) for _ in range(8)]
        del arrays
        assert buffers.statistics()["free_bytes"] <= 3 << 20


def test_training_calls_of_many_lengths_make_few_blocks():
    buffers.release_free()
    layer = fastlstm.LSTM(8, 64, seed=0)
    rng = np.random.default_rng(0)
    before = buffers.statistics()["allocated"]
    for _ in range(30):
        x = rng.standard_normal((int(rng.integers(100, 301)), 32, 8)).astype(np.float32)
        y, _ = layer(x)
        layer.backward(np.ones_like(y))
    stats = buffers.statistics()
    assert stats["allocated"] - before <= 12
    assert stats["free_bytes"] + stats["leased_bytes"] <= 3 * stats["peak_leased_bytes"]


def test_concurrent_leases_never_share_memory():
    found = []

    def work(seed):
        rng = np.random.default_rng(seed)
        for _ in range(50):
            arrays = [buffers.empty((int(rng.integers(1 << 17, 1 << 19)),), np.float64) for _ in range(3)]
            for value, array in enumerate(arrays):
                array[...] = seed * 10 + value
            for value, array in enumerate(arrays):
                if not np.all(array == seed * 10 + value):
                    found.append(seed)

    run_in_threads(work, range(4))
    assert not found


def test_outputs_kept_by_the_caller_survive_later_calls():
    layer = fastlstm.LSTM(64, 64, seed=0, dtype="float64")
    rng = np.random.default_rng(0)
    x1, x2 = rng.standard_normal((2,) + SHAPE)
    y1, _ = layer(x1)
    dx1, _ = layer.backward(np.ones_like(y1))
    kept = y1.copy(), dx1.copy()
    y2, _ = layer(x2)
    dx2, _ = layer.backward(np.ones_like(y2))
    np.testing.assert_array_equal(y1, kept[0])
    np.testing.assert_array_equal(dx1, kept[1])
    assert not np.shares_memory(y1, y2) and not np.shares_memory(dx1, dx2)


def test_tapes_kept_alive_are_not_overwritten_by_later_forwards():
    layer = fastlstm.GRU(64, 64, seed=0, dtype="float64")
    rng = np.random.default_rng(1)
    x1, x2 = rng.standard_normal((2,) + SHAPE)
    dy = rng.standard_normal(SHAPE)
    _, _, tape1 = functional.forward(layer.config, layer.params, x1)
    alone = functional.backward(tape1, dy)
    _, _, tape1 = functional.forward(layer.config, layer.params, x1)
    functional.forward(layer.config, layer.params, x2)       # its arrays are released at once
    _, _, tape2 = functional.forward(layer.config, layer.params, x2)
    again = functional.backward(tape1, dy)
    np.testing.assert_array_equal(again.dx, alone.dx)
    for name in alone.grads:
        np.testing.assert_array_equal(again.grads[name], alone.grads[name])
    assert tape2 is not None
