"""The CPU's projection kernel against NumPy's product, on every remainder of its blocks; the
backward's packed weights against the slices they stand for; the choices of the rate model."""
import numpy as np
import pytest

from fastlstm import tuning
from fastlstm.backends.cpu.projection import dot_rows, dot_rows_faster, transposed_panels_pay
from fastlstm.backends.cpu.units import pack_backward_panels, transpose_into


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dot_rows_matches_numpy_for_every_row_and_column_remainder(dtype):
    rng = np.random.default_rng(0)
    for rows in range(1, 10):             # blocks of four rows, two or three left over, one left over
        for count in (1, 3, 4, 5, 8, 11):
            for inner in (1, 7, 40):
                a = rng.standard_normal((rows, inner)).astype(dtype)
                w = rng.standard_normal((count, inner)).astype(dtype)
                out = np.full((rows, count), np.nan, dtype)
                dot_rows(a, w, out)
                expected = a.astype(np.float64) @ w.astype(np.float64).T
                tolerance = 1e-12 if dtype == np.float64 else 1e-5
                np.testing.assert_allclose(out, expected, rtol=tolerance, atol=tolerance * inner,
                                           err_msg=f"rows {rows}, columns {count}, inner {inner}")


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("projects", [((0, 4),), ((2, 3), (0, 2))])   # LSTM; GRU, reset gate before
def test_backward_panels_hold_each_blocks_columns_per_phase(projects, transposed):
    hidden = 13
    gates = max(g1 for _, g1 in projects)
    weight = np.random.default_rng(1).standard_normal((gates * hidden, hidden))
    for bounds in (np.array([0, hidden]), np.array([0, 3, 7, 13])):
        panels = pack_backward_panels(weight, bounds, projects, transposed)
        for u0, u1 in zip(bounds[:-1], bounds[1:]):
            start = gates * hidden * u0
            for g0, g1 in projects:
                columns = weight[g0 * hidden:g1 * hidden, u0:u1]
                block = panels[start:start + columns.size]
                expected = columns.T if transposed else columns
                np.testing.assert_array_equal(block.reshape(expected.shape), expected)
                start += columns.size


def test_transpose_into_matches_numpy_on_tile_remainders():
    for shape in ((1, 1), (8, 8), (9, 17), (40, 3)):
        source = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
        out = np.full(shape[::-1], np.nan, np.float32)
        transpose_into(source, out)
        np.testing.assert_array_equal(out, source.T)


def test_the_rate_model_takes_dot_rows_for_few_rows_and_blas_for_many_rows_of_a_short_k():
    assert all(dot_rows_faster(1, inner) for inner in (16, 256, 4096))
    assert not dot_rows_faster(256, 64)
    assert dot_rows_faster(64, 1024) and not dot_rows_faster(64, 32)
    for inner in (16, 64, 256, 1024):        # one change of kernel along the rows, none back
        choices = [dot_rows_faster(rows, inner) for rows in range(1, 513)]
        assert choices == sorted(choices, reverse=True)


def test_transposed_panels_pay_only_over_enough_products():
    lstm = ((0, 4),)
    assert not transposed_panels_pay(1, 1, 1024, lstm, 4)       # one product: a 16 MB transpose for nothing
    assert transposed_panels_pay(100 * 16, 16, 256, lstm, 4)
    assert not transposed_panels_pay(10 ** 6, 512, 16, lstm, 4)  # BLAS is faster there anyway
    with tuning.override(cost_transpose_bytes_per_ns=1):
        slow = [n for n in range(1, 2000) if transposed_panels_pay(n, 8, 256, lstm, 4)][0]
    with tuning.override(cost_transpose_bytes_per_ns=8):
        fast = [n for n in range(1, 2000) if transposed_panels_pay(n, 8, 256, lstm, 4)][0]
    assert fast < slow
