"""Calls through the address of compiled code (fastlstm.backends.cpu.calls), which every CPU
kernel makes: the callee gets the caller's values, converted to its own types, in a serial
function and inside a parallel region; values passed by address (from a compiled caller's
stack) read back as they were; and the keys under which addresses are
remembered tell types apart."""
from typing import NamedTuple

import numpy as np
import pytest
from numba import njit, prange, typeof, types

from fastlstm.backends.cpu.calls import (COMPILED_CALLERS_ONLY, AddressBook, address_of, address_of_value,
                                         compiled_call, type_key, value_at)

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


class Mixed(NamedTuple):
    matrix: np.ndarray
    column: np.ndarray
    count: int
    cube: np.ndarray


@njit(cache=False)
def _read_back(address, kind, out):
    """out[:] = (Σ matrix, Σ column, count, Σ cube, cube[1, 0, 2]) of the Mixed at ``address``."""
    values = value_at(address, kind)
    out[0] = values.matrix.sum()
    out[1] = values.column.sum()
    out[2] = values.count
    out[3] = values.cube.sum()
    out[4] = values.cube[1, 0, 2]
    values.matrix[0, 0] = -1.0           # borrowed: writes reach the caller's array


@njit(cache=False)
def _through_the_stack(values, kind, out):
    _read_back(address_of_value(values), kind, out)


def _mixed():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((6, 5))
    # a strided view, a non-contiguous column, an int and a 3-d C array: several layouts at once
    return Mixed(base[::2, 1:4], base[:, 2], 7, rng.standard_normal((2, 3, 4)))


def _expected(values):
    return [values.matrix.sum(), values.column.sum(), values.count, values.cube.sum(), values.cube[1, 0, 2]]


def test_a_value_passed_by_address_reads_back_as_it_was():
    values = _mixed()
    expected = _expected(values)
    out = np.zeros(5)
    _through_the_stack(values, typeof(values), out)
    np.testing.assert_allclose(out, expected)
    assert values.matrix[0, 0] == -1.0
