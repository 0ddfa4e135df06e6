"""pytest-benchmark timings of the benchmark's shapes table, and of every cell variant.

    python -m pytest bench/test_speed.py --benchmark-group-by=group --benchmark-sort=name
    python -m pytest bench/test_speed.py -k "table and 7a" --benchmark-columns=median,iqr,rounds
    FASTLSTM_BENCH_QUICK=1 python -m pytest bench/test_speed.py     # T shortened as in `bench --quick`
    python -m pytest bench/test_speed.py --benchmark-json=out.json  # keep the numbers

(Not part of the test suite: ``testpaths`` is ``tests``.)

Four groups of benchmarks:

- ``test_table``: each row of :data:`fastlstm.benchmark.shapes.SHAPES` (ids like ``2-float32``,
  ``2-float64``) on each contender: fastlstm, and the row's peers (PyTorch, ONNX Runtime), with
  the same weights and inputs. "inference" rows time a forward only (fastlstm ``tape=False``,
  PyTorch under ``inference_mode``, ONNX Runtime ``session.run``); "training" rows a forward
  and the backward of the whole sequence. A peer that is not installed is skipped.
- ``test_cpu_on_every_table_shape``: the cpu backend on each table shape, forward
  (inference) and forward+backward (training), float32 and float64.
- ``test_cpu_cells``: the cpu backend on every cell variant at T=100, B=32, I=H=128, both
  dtypes, both modes.
- ``test_reference_cells``: the float64 ``"reference"`` backend on every cell variant at
  T=20, B=8, I=H=32, forward and forward+backward.

Threads: every contender runs with Numba's thread count (``NUMBA_NUM_THREADS``, by default
the number of cores): NumPy's BLAS through threadpoolctl, PyTorch through
``torch.set_num_threads`` (and one inter-op thread), ONNX Runtime through
``intra_op_num_threads`` (and ``inter_op_num_threads = 1``). Each
callable is run once before timing, so compilation and session set-up are not timed.

pytest-benchmark runs contenders one after another, not interleaved; for fastlstm/peer
ratios measured round by round use ``python -m fastlstm bench``.
"""
import os

import pytest
from threadpoolctl import threadpool_limits

from fastlstm.benchmark.peers import PEER_BUILDERS, build_fastlstm, load_peers, numba_threads
from fastlstm.benchmark.shapes import SHAPES, BenchShape, gemm_flops, quick_steps

# PyTorch must start its threads before Numba's (see fastlstm.benchmark.peers.load_peers).
load_peers(numba_threads())

QUICK = os.environ.get("FASTLSTM_BENCH_QUICK", "") not in ("", "0")

VARIANTS = {
    "LSTM": ("lstm", {}),
    "LSTM+peephole": ("lstm", {"peephole": True}),
    "GRU": ("gru", {"reset_after": True}),
    "GRU(reset_after=False)": ("gru", {"reset_after": False}),
    "RNN(tanh)": ("rnn", {"nonlinearity": "tanh"}),
    "RNN(relu)": ("rnn", {"nonlinearity": "relu"}),
}


def variant_shape(variant, size, batch, steps, mode, dtype):
    cell, options = VARIANTS[variant]
    return BenchShape(id=variant, cell=cell, options=tuple(sorted(options.items())), input_size=size,
                      hidden_size=size, batch=batch, steps=steps, mode=mode, dtype=dtype, peers=(),
                      target=1.0)


def time_contender(benchmark, shape, contender, backend="cpu"):
    """Build ``contender`` on ``shape``, run it once untimed, then let pytest-benchmark time it."""
    if QUICK:
        shape = shape.replace(steps=quick_steps(shape.steps))
    layer = shape.make_layer(backend=backend, seed=0)
    x, dy = shape.make_inputs(seed=0)
    builder = build_fastlstm if contender == "fastlstm" else PEER_BUILDERS[contender]
    built = builder(shape, layer, x, dy)
    if not built.available:
        pytest.skip(built.reason)
    benchmark.extra_info.update(
        cell=shape.label, input_size=shape.input_size, hidden_size=shape.hidden_size, batch=shape.batch,
        steps=shape.steps, mode=shape.mode, dtype=shape.dtype, contender=contender, backend=backend,
        gemm_flops=gemm_flops(shape), version=built.version)
    with threadpool_limits(limits=numba_threads(), user_api="blas"):
        built.run()
        benchmark(built.run)


TABLE = [pytest.param(shape, contender, id=f"{shape.id}-{shape.dtype}-{contender}")
         for shape in SHAPES for contender in ("fastlstm",) + shape.peers]


@pytest.mark.parametrize("shape, contender", TABLE)
def test_table(benchmark, shape, contender):
    benchmark.group = f"table {shape.key}: {shape.label} {shape.mode} {shape.dtype}"
    time_contender(benchmark, shape, contender)


TABLE_SHAPES = [s for s in SHAPES if s.dtype == "float32"]


@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", TABLE_SHAPES, ids=[s.id for s in TABLE_SHAPES])
def test_cpu_on_every_table_shape(benchmark, shape, dtype, mode):
    """The cpu backend on each table shape in both modes and both dtypes (the table itself
    times each shape in one mode and dtype only)."""
    benchmark.group = f"cpu {shape.id}: {shape.label} {mode} {dtype}"
    time_contender(benchmark, shape.replace(dtype=dtype, mode=mode), "fastlstm")


@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_cpu_cells(benchmark, variant, dtype, mode):
    benchmark.group = f"cpu cells {dtype}: T=100 B=32 I=H=128 {mode}"
    time_contender(benchmark, variant_shape(variant, 128, 32, 100, mode, dtype), "fastlstm")


@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_reference_cells(benchmark, variant, mode):
    benchmark.group = f"reference cells: T=20 B=8 I=H=32 {mode}"
    time_contender(benchmark, variant_shape(variant, 32, 8, 20, mode, "float64"), "fastlstm",
                   backend="reference")
