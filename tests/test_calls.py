"""Calls through the address of compiled code (fastlstm.backends.cpu.calls), which every CPU
kernel makes: the callee gets the caller's values, converted to its own types, in a serial
function and inside a parallel region; and the keys under which addresses are remembered tell
types apart."""
from typing import NamedTuple

import numpy as np
import pytest
from numba import njit, prange, types

from fastlstm.backends.cpu.calls import COMPILED_CALLERS_ONLY, AddressBook, address_of, compiled_call, type_key

call_4 = compiled_call(4)


class Pair(NamedTuple):
    source: np.ndarray
    target: np.ndarray


@njit(cache=False, **COMPILED_CALLERS_ONLY)
def _scaled_row(row, factor, scratch, pair):
    """pair.target[row] = pair.source[row] · factor + scratch[0]"""
    for k in range(pair.source.shape[1]):
        pair.target[row, k] = pair.source[row, k] * factor + scratch[0]


@njit(cache=False)
def _serial(address, pair, scratch):
    for row in range(pair.source.shape[0]):
        call_4(address, row, 3, scratch[row], pair)     # 3: a literal, converted to the callee's int64


@njit(cache=False, parallel=True)
def _parallel(address, pair, scratch):
    for row in prange(pair.source.shape[0]):
        call_4(address, row, 3, scratch[row], pair)


@pytest.mark.parametrize("caller", [_serial, _parallel], ids=["serial", "parallel region"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_call_through_an_address_runs_the_callee_on_the_callers_values(caller, dtype):
    rng = np.random.default_rng(0)
    pair = Pair(rng.standard_normal((7, 5)).astype(dtype), np.zeros((7, 5), dtype))
    scratch = rng.standard_normal((7, 2)).astype(dtype)
    address = address_of(_scaled_row, 0, 0, scratch[0], pair)
    caller(address, pair, scratch)
    # the callee's arithmetic: float × int64 is float64, rounded once into the target
    expected = (pair.source.astype(np.float64) * 3 + scratch[:, :1].astype(np.float64)).astype(dtype)
    np.testing.assert_array_equal(pair.target, expected)


def test_a_numba_type_stands_for_itself_and_an_array_layout_is_passed_alike():
    pair = Pair(np.arange(12.0).reshape(3, 4), np.zeros((3, 4)))
    scratch = np.full((3, 2), 0.5)
    # compiled for a non-contiguous scratch row type, called with contiguous rows: one data model
    address = address_of(_scaled_row, 0, 0, types.Array(types.float64, 1, "A"), pair)
    _serial(address, pair, scratch)
    np.testing.assert_array_equal(pair.target, pair.source * 3 + 0.5)


def test_type_keys_are_equal_for_equal_types_only():
    a32, b32 = np.zeros((2, 3), np.float32), np.ones((4, 5), np.float32)
    assert type_key(a32) == type_key(b32)
    assert type_key(a32) != type_key(a32.astype(np.float64))
    assert type_key(a32) != type_key(np.zeros(3, np.float32))
    assert type_key(Pair(a32, a32)) == type_key(Pair(b32, b32))
    assert type_key(Pair(a32, a32)) != type_key(Pair(a32, a32.astype(np.float64)))


def test_an_address_book_finds_each_key_once():
    book, found = AddressBook(), []

    def find():
        found.append(1)
        return 42
    assert book.get(("x", 1), find) == 42 and book.get(("x", 1), find) == 42
    assert found == [1]
    assert book.get(("x", None), find) == 42 and book.get(("x", None), find) == 42   # no key: not kept
    assert found == [1, 1, 1]
