"""The CPU's small-batch projection kernel against NumPy's product, on every remainder of its blocks."""
import numpy as np
import pytest

from fastlstm.backends.cpu.projection import dot_rows


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
