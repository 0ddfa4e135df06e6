"""The pool of large per-call arrays: reused only when nothing else refers to them."""
import numpy as np

import fastlstm
from fastlstm import buffers, functional

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
    address = _address(first)
    del first
    second = buffers.empty(SHAPE, np.float64)
    assert _address(second) != address
    assert not np.shares_memory(second, view)


def test_small_arrays_are_not_pooled():
    small = buffers.empty((8, 8), np.float32)
    assert small.base is None


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
    np.testing.assert_array_equal(again[0], alone[0])
    for name in alone[2]:
        np.testing.assert_array_equal(again[2][name], alone[2][name])
    assert tape2 is not None
