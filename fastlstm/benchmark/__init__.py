"""The benchmark behind ``python -m fastlstm bench`` and ``bench/test_speed.py``.

- :mod:`.shapes` the shapes table and the GEMM flop count;
- :mod:`.peers` contenders: fastlstm, PyTorch and ONNX Runtime with the same weights;
- :mod:`.timing` interleaved timing and its statistics;
- :mod:`.suite` runs the table; :mod:`.report` prints it (and writes JSON);
- :mod:`.machine` CPU, versions, measured sgemm speed;
- :mod:`.memory` peak memory of a training step, in a fresh process;
- :mod:`.command` the command-line options.

PyTorch, ONNX and ONNX Runtime are optional: they are imported only when a peer is built.
"""
from .shapes import SHAPES, BenchShape, gemm_flops, select_shapes

__all__ = ["SHAPES", "BenchShape", "gemm_flops", "select_shapes"]
