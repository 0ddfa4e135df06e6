"""pytest-benchmark timings of one forward+backward per cell.

    python -m pytest bench/ --benchmark-group-by=param:shape

(not part of the test suite: ``testpaths`` is ``tests``.) For side-by-side ratios against
PyTorch in one interleaved run, use ``python bench/side_by_side.py``.
"""
import numpy as np
import pytest

import fastlstm

CELLS = {
    "LSTM": (fastlstm.LSTM, {}),
    "LSTM+peephole": (fastlstm.LSTM, {"peephole": True}),
    "GRU": (fastlstm.GRU, {}),
    "GRU(reset_after=False)": (fastlstm.GRU, {"reset_after": False}),
    "RNN(tanh)": (fastlstm.RNN, {}),
    "RNN(relu)": (fastlstm.RNN, {"nonlinearity": "relu"}),
}
SHAPES = {"cpu": (100, 32, 128), "reference": (20, 8, 32)}  # (T, B, I=H)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_forward_backward(benchmark, backend, cell, dtype):
    steps, batch, size = SHAPES[backend]
    cls, options = CELLS[cell]
    layer = cls(size, size, dtype=dtype, backend=backend, seed=0, **options)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps, batch, size)).astype(dtype)
    dy = rng.standard_normal((steps, batch, size)).astype(dtype)
    benchmark.extra_info["shape"] = f"T={steps} B={batch} I=H={size}"

    def step():
        layer(x)
        layer.backward(dy)

    step()  # compile outside the timing
    benchmark(step)
