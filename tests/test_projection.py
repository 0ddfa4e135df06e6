"""The CPU's recurrent-projection kernel (fastlstm.backends.cpu.tiles) against NumPy's product,
on every remainder of its tiles; the packed weights against the slices they stand for."""
import numpy as np
import pytest

from fastlstm.backends.cpu.tiles import (DEPTH, TILE_ROWS, TILE_VECTORS, _panel_width, lanes, pack, pack_transposed,
                                         panels_size, product, product_bias)
from fastlstm.backends.cpu.units import backward_panels, forward_panels


def _columns(dtype):
    """Column counts around every tile boundary: a lane, a vector, a panel, two panels."""
    width = lanes(dtype)
    panel = TILE_VECTORS * width
    return sorted({1, width - 1, width, width + 1, 2 * width + 1, panel - 1, panel, panel + 1,
                   2 * panel + width + 3, 2 * panel + 2 * width + 3})


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_product_matches_numpy_on_every_tile_remainder(dtype):
    rng = np.random.default_rng(0)
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    for rows in range(1, 2 * TILE_ROWS + 4):             # every ladder of tiles, to 6 + 6 + 3
        for inner in (0, 1, 2, 7, 40, 2 * DEPTH + 5, 3 * DEPTH + 7):   # K in one part, two, three
            for columns in _columns(dtype):
                a = rng.standard_normal((rows, inner + 3)).astype(dtype)[:, 1:1 + inner]   # strided rows
                b = rng.standard_normal((inner, columns)).astype(dtype)
                panels = np.full(panels_size(inner, columns, dtype) + 5, np.nan, dtype)
                pack(b, 0, columns, panels)
                c = np.full((rows, columns + 4), 7.0, dtype)
                product(a, panels, c[:, 2:2 + columns])
                expected = a.astype(np.float64) @ b.astype(np.float64)
                where = f"rows {rows}, inner {inner}, columns {columns}"
                np.testing.assert_allclose(c[:, 2:2 + columns], expected, rtol=tolerance,
                                           atol=tolerance * max(1, inner), err_msg=where)
                assert (c[:, :2] == 7).all() and (c[:, 2 + columns:] == 7).all(), f"wrote outside c: {where}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pack_transposed_is_pack_of_the_transpose(dtype):
    rng = np.random.default_rng(1)
    width = lanes(dtype)
    for columns in _columns(dtype):
        for inner in (0, 1, width - 1, width, width + 1, 3 * width + 5):
            weight = rng.standard_normal((columns, inner)).astype(dtype)
            expected = np.full(panels_size(inner, columns, dtype), np.nan, dtype)
            pack(np.ascontiguousarray(weight.T), 0, columns, expected)
            packed = np.full_like(expected, np.nan)
            pack_transposed(weight, packed)
            np.testing.assert_array_equal(packed, expected, err_msg=f"columns {columns}, inner {inner}")


def _unpack(panels, inner, columns, dtype):
    """The (inner, columns) matrix that :func:`pack` laid out in ``panels`` (the test's reading of its layout)."""
    width = lanes(dtype)
    out = np.empty((inner, columns), dtype)
    start = 0
    for j0 in range(0, columns, TILE_VECTORS * width):
        count = min(TILE_VECTORS * width, columns - j0)
        stride = _panel_width(count, width)
        block = panels[start:start + inner * stride].reshape(inner, stride)
        out[:, j0:j0 + count] = block[:, :count]
        assert (block[:, count:] == 0).all(), "padding lanes must be zero"
        start += inner * stride
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("phases", [((0, 4),), ((0, 2), (2, 3))])   # LSTM; GRU, reset gate before
@pytest.mark.parametrize("hidden, splits", [(13, ([0, 13], [0, 3, 7, 13])),
                                            # blocks of whole SIMD vectors and a ragged one, gates of
                                            # 16 or 24 rows: lane blocks inside a gate and across two
                                            (40, ([0, 40], [0, 16, 40], [0, 24, 37, 40]))])
def test_block_panels_hold_each_blocks_weights_per_phase(dtype, phases, hidden, splits):
    gates = max(g1 for _, g1 in phases)
    weight = np.random.default_rng(2).standard_normal((gates * hidden, hidden)).astype(dtype)
    for bounds in (np.array(split) for split in splits):
        forward, forward_starts = forward_panels(weight, bounds, phases)
        backward, backward_starts = backward_panels(weight, bounds, phases)
        for block, (u0, u1) in enumerate(zip(bounds[:-1], bounds[1:])):
            for phase, (g0, g1) in enumerate(phases):
                rows = [g * hidden + u for g in range(g0, g1) for u in range(u0, u1)]
                expected = weight[rows].T                       # (H, gates·width), (gate, unit) order
                got = _unpack(forward[forward_starts[block, phase]:], hidden, len(rows), weight.dtype)
                np.testing.assert_array_equal(got, expected)
                expected = weight[g0 * hidden:g1 * hidden, u0:u1]
                got = _unpack(backward[backward_starts[block, phase]:], *expected.shape, weight.dtype)
                np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_product_bias_adds_the_bias_to_every_row(dtype):
    rng = np.random.default_rng(3)
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    for rows, inner in ((1, 9), (TILE_ROWS + 1, 9), (70, 9), (7, 2 * DEPTH + 5)):   # 70: past one chunk of rows
        for columns in _columns(dtype):
            a = rng.standard_normal((rows, inner)).astype(dtype)
            b = rng.standard_normal((inner, columns)).astype(dtype)
            bias = rng.standard_normal(columns).astype(dtype)
            panels = np.empty(panels_size(inner, columns, dtype), dtype)
            pack(b, 0, columns, panels)
            c = np.full((rows, columns), np.nan, dtype)
            product_bias(a, panels, bias, c)
            np.testing.assert_allclose(c, a.astype(np.float64) @ b + bias, rtol=tolerance, atol=10 * tolerance,
                                       err_msg=f"rows {rows}, columns {columns}")
