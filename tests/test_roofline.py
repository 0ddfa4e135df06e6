"""bench/roofline.py's arithmetic: the bound of a table row from a given machine's peak and bandwidths."""
import importlib.util
from pathlib import Path

import pytest

from fastlstm.benchmark.shapes import select_shapes

_spec = importlib.util.spec_from_file_location("roofline", Path(__file__).parents[1] / "bench" / "roofline.py")
roofline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(roofline)

MACHINE = {"sgemm_gflops": {1: 100.0, 2: 200.0}, "dgemm_gflops": {1: 50.0, 2: 100.0},
           "bandwidth_gbs": {"L1/1": 200.0, "L2/1": 100.0, "L3/1": 90.0, "L3/2": 150.0,
                             "memory/1": 25.0, "memory/2": 40.0}}
MIB = 1024 * 1024


def _row(key):
    return next(s for s in select_shapes() if s.key == key)


def test_a_one_row_inference_streams_each_cores_half_of_the_weights_from_its_l2():
    shape = _row("1")                                     # LSTM 256, B 1, T 150: W_hh 1 MiB, 512 KiB a core
    roof = roofline.bound(shape, MACHINE)
    flops = 2 * 150 * 1 * (256 + 256) * 4 * 256
    assert roof["flops"] == pytest.approx(flops)
    assert roof["level"] == "L2"
    assert roof["stream_s"] == pytest.approx(150 * MIB / (2 * 100e9))
    assert roof["bound_s"] == pytest.approx(max(flops / 200e9, 150 * MIB / 200e9))


def test_weights_past_a_cores_l2_stream_from_the_shared_l3_at_the_two_core_rate():
    shape = _row("4")                                     # LSTM 1024, B 4, T 25: W_hh 16 MiB
    roof = roofline.bound(shape, MACHINE)
    assert roof["level"] == "L3"
    assert roof["stream_s"] == pytest.approx(25 * 16 * MIB / 150e9)


def test_training_reads_the_weights_twice_a_step_and_float64_uses_the_dgemm_peak():
    shape = _row("2/float64")                             # LSTM 256, B 64, T 150 training, float64
    roof = roofline.bound(shape, MACHINE)
    flops = 3 * 2 * 150 * 64 * (256 + 256) * 4 * 256
    assert roof["flops"] == pytest.approx(flops)
    assert roof["flops_s"] == pytest.approx(flops / 100e9)
    assert roof["stream_s"] == pytest.approx(150 * 2 * 2 * MIB / (2 * 100e9))   # 2 MiB, 1 MiB a core: L2
    assert roof["limit"] == "flops"


@pytest.mark.parametrize("per_core, level", [(32 * 1024, "L1"), (32 * 1024 + 4, "L2"), (MIB, "L2"),
                                             (MIB + 4, "L3"), (16 * MIB, "L3"), (16 * MIB + 4, "memory")])
def test_weight_levels_follow_the_capacities(per_core, level):
    assert roofline.weight_level(per_core)[0] == level
