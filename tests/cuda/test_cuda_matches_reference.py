"""Hypothesis properties: the cuda backend against the float64 reference, for every cell,
option and both recurrent loops (persistent and per-step)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import SIMULATED
from fastlstm import tuning
from support import CELL_VARIANTS, assert_matches_reference, make_problem, run

# The simulator runs every GPU thread as a Python thread: tiny shapes there.
SIZE = 3 if SIMULATED else 24
LOOPS = ["persistent", "per-step"]


def forced_loop(loop):
    """Run the recurrent loops as ``loop`` ("persistent" or "per-step")."""
    return tuning.override(cuda_loop=loop)


@st.composite
def problems(draw, variant):
    steps, batch = draw(st.integers(1, SIZE)), draw(st.integers(1, SIZE))
    lengths = draw(st.one_of(st.none(), st.lists(st.integers(0, steps), min_size=batch, max_size=batch)))
    return dict(
        variant=variant, steps=steps, batch=batch, inputs=draw(st.integers(1, SIZE)),
        hidden=draw(st.integers(1, SIZE)), dtype=draw(st.sampled_from([np.float32, np.float64])),
        seed=draw(st.integers(0, 2**32 - 1)), x_scale=draw(st.sampled_from([0.3, 1.0, 30.0, 300.0])),
        param_scale=draw(st.sampled_from([1.0, 3.0])),
        with_state=draw(st.booleans()), with_dstate=draw(st.booleans()),
        lengths=None if lengths is None else np.array(lengths),
        num_layers=draw(st.integers(1, 2)), bidirectional=draw(st.booleans()),
        batch_first=draw(st.booleans()),
    )


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
@given(data=st.data())
def test_cuda_matches_reference(variant, loop, data):
    options = data.draw(problems(variant))
    problem = make_problem(**options)
    dtype = options["dtype"]
    naive = run(problem, "reference-float32") if dtype == np.float32 else None
    with forced_loop(loop):
        result = run(problem, "cuda")
    assert_matches_reference(result, run(problem, "reference"), dtype, naive)


@pytest.mark.skipif(SIMULATED, reason="real GPUs only: the simulator runs one block, slowly")
@pytest.mark.parametrize("loop", LOOPS + ["gemm"])   # the GEMM loop under the simulator: test_gemm_loop.py
@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
@pytest.mark.parametrize("hidden, batch", [(200, 5), (67, 40)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_matches_reference_across_blocks(variant, loop, hidden, batch, dtype):
    """Widths that spread the persistent loop over many blocks, with several rounds of lane
    groups per block and a last block with fewer units (and the GEMM loop over several tiles)."""
    problem = make_problem(variant=variant, steps=6, batch=batch, inputs=9, hidden=hidden, dtype=dtype,
                           seed=hidden + batch, x_scale=1.0, param_scale=1.0, with_state=True, with_dstate=True,
                           lengths=np.arange(batch) % 7, num_layers=2, bidirectional=True, batch_first=False)
    with forced_loop(loop):
        result = run(problem, "cuda")
    naive = run(problem, "reference-float32") if dtype == np.float32 else None
    assert_matches_reference(result, run(problem, "reference"), dtype, naive)


@pytest.mark.parametrize("variant, loop", [("lstm_peephole", "persistent"), ("gru", "per-step")])
def test_cuda_without_biases_matches_the_reference(variant, loop):
    """``bias=False``: no bias parameters, and no bias added (the functional core passes zeros)."""
    problem = make_problem(variant=variant, steps=2, batch=2, inputs=2, hidden=2, dtype=np.float64, seed=9,
                           lengths=np.array([2, 1]), bidirectional=True, bias=False)
    assert not any(name.startswith("bias") for name in problem["params"])
    with forced_loop(loop):
        result = run(problem, "cuda")
    assert_matches_reference(result, run(problem, "reference"), np.float64)
