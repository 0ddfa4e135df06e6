"""The large-batch loop (per step a GEMM and a pointwise kernel) against the float64 reference,
the rule that picks the loop, and what the loop launches per step.

Each case forces the loop (``cuda_loop="gemm"``); the persistent and per-step loops are
covered the same way by ``test_cuda_matches_reference.py``. Under the simulator the shapes are
tiny (every GPU thread is a Python thread), the loop's per-step GEMMs are the numba tiled GEMM
(what the knob ``cuda_step_gemm``'s "auto" picks there; its cuBLAS branch: ``test_step_gemm.py``),
and, to keep the simulator's time small, the GEMMs and column reductions around the loop (the
input projections and the weight gradients, the same for every loop and tested with the other
loops and in ``test_gemm.py``) are exact host products on the simulator's arrays.
"""
import numpy as np
import pytest

from conftest import SIMULATED
from fastlstm import functional, tuning
from fastlstm.backends.cuda import gemm_loop, plan, weights, workspace
from support import CELL_VARIANTS, assert_matches_reference, make_problem, run, state_parts, with_backend
from test_cuda_regularisation import _run as run_regularised
from test_workspace import counted

DTYPES = [np.float32, np.float64]


@pytest.fixture(autouse=True)
def host_products_around_the_loop(monkeypatch):
    """Under the simulator: the driver's GEMMs and column reductions outside the loop as NumPy
    products on the simulated device arrays' memory (the loop's own GEMM, ``numba_matmul``, stays
    the numba kernel)."""
    if not SIMULATED:
        return
    from fastlstm.backends.cuda import gemm

    def matmul(a, b, out, bias=None, accumulate=False):
        product = a._ary @ b._ary
        if accumulate:
            product = product + out._ary
        if bias is not None:
            product = product + bias._ary
        out._ary[...] = product

    def column_sums(a, out, accumulate=False):
        out._ary[...] = a._ary.sum(axis=0, dtype=out.dtype) + (out._ary if accumulate else 0)

    def column_dots(a, b, out, accumulate=False):
        out._ary[...] = (a._ary * b._ary).sum(axis=0, dtype=out.dtype) + (out._ary if accumulate else 0)

    assert gemm_loop.numba_matmul is gemm.matmul
    assert gemm_loop.step_gemm().matmul is gemm_loop.numba_matmul   # "auto" under the simulator
    for name, host in (("matmul", matmul), ("column_sums", column_sums), ("column_dots", column_dots)):
        monkeypatch.setattr(gemm, name, host)


def _gemm_loop():
    return tuning.override(cuda_loop="gemm")


def _check(problem, dtype):
    naive = run(problem, "reference-float32") if dtype == np.float32 else None
    with _gemm_loop():
        result = run(problem, "cuda")
    assert_matches_reference(result, run(problem, "reference"), dtype, naive)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
def test_the_gemm_loop_matches_the_reference(variant, dtype):
    """An initial state and final-state gradients, a sequence that ends early and one that is
    empty (its rows of every step's GEMM are never read); two directions in float64 (one in
    float32, to halve the simulator's GEMMs: the directions' code does not depend on the dtype)."""
    problem = make_problem(variant, 2, 3, 2, 2, dtype, seed=11, lengths=np.array([2, 1, 0]),
                           bidirectional=dtype == np.float64, param_scale=2.0)
    _check(problem, dtype)


def test_the_gemm_loop_without_biases_matches_the_reference():
    """``bias=False``: the pointwise kernel adds the (zero) unfolded recurrent bias of the GRU's n."""
    problem = make_problem("gru", 2, 2, 2, 2, np.float64, seed=12, bias=False)
    _check(problem, np.float64)


@pytest.mark.parametrize("variant", ["gru_reset_before", "lstm_peephole"])
def test_the_gemm_loop_in_inference_matches_the_reference(variant):
    """Without a tape one slot is reused: the reset-before GRU's second GEMM reads r ⊙ h from it."""
    problem = make_problem(variant, 2, 2, 2, 3, np.float64, seed=13, lengths=np.array([2, 1]))
    arguments = (problem["params"], problem["x"], problem["state"], problem["lengths"])
    expected, expected_final, _ = functional.forward(with_backend(problem["config"], "reference"), *arguments,
                                                     tape=False)
    with _gemm_loop():
        y, final, tape = functional.forward(with_backend(problem["config"], "cuda"), *arguments, tape=False)
    assert tape is None
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-12)
    for ours, theirs in zip(state_parts(final), state_parts(expected_final)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("variant, rates", [
    ("lstm_peephole", dict(recurrent_dropout=0.5, zoneout=0.3, zoneout_cell=0.6)),
    ("gru_reset_before", dict(recurrent_dropout=0.5, zoneout=0.4)),
])
def test_the_gemm_loop_runs_the_in_loop_regularisers(variant, rates):
    """Replaying the reference's masks: recurrent dropout (the GEMM's input is h ⊙ mask, written by
    the previous step's pointwise kernel) and zoneout (the peepholes' gradient reads c' before
    zoneout), lengths and both directions."""
    problem = make_problem(variant, 2, 2, 2, 2, np.float64, seed=14, lengths=np.array([2, 1]), bidirectional=True,
                           param_scale=2.0)
    expected, tape = run_regularised(problem, "reference", rates, training=True, rng=np.random.default_rng(2))
    with _gemm_loop():
        result, _ = run_regularised(problem, "cuda", rates, masks=tape.masks)
    for name, value in expected.items():
        np.testing.assert_allclose(result[name], value, rtol=1e-9, atol=1e-11, err_msg=f"{rates} {name}")


# ---------------------------------------------------------------- what one step launches

def _training_call(problem):
    config = with_backend(problem["config"], "cuda")
    _, _, tape = functional.forward(config, problem["params"], problem["x"], problem["state"], problem["lengths"])
    functional.backward(tape, problem["dy"], problem["dstate"])
    return tape


@pytest.mark.skipif(not SIMULATED, reason="counts launches through the simulator")
@pytest.mark.parametrize("variant, forward_phases, backward_phases", [("rnn_tanh", 1, 1),
                                                                     ("gru_reset_before", 2, 2)])
def test_each_step_launches_one_gemm_and_one_pointwise_kernel_per_phase(monkeypatch, variant, forward_phases,
                                                                       backward_phases):
    """One more step adds, per phase, a GEMM and a pointwise kernel forward and backward, and
    nothing else; the step GEMMs are T·phases forward and T·phases − 1 backward (none from after
    the last step). The phases are the cell's (the reset-before GRU projects h, then r ⊙ h)."""
    launches, step_gemms = [], []
    original = gemm_loop.numba_matmul
    for steps in (1, 2):
        calls = []
        monkeypatch.setattr(gemm_loop, "numba_matmul", lambda *a, **k: (calls.append(1), original(*a, **k)))
        problem = make_problem(variant, steps, 1, 1, 1, np.float32, seed=15)
        with _gemm_loop(), counted(monkeypatch) as counts:
            tape = _training_call(problem)
        assert tape.layer_tapes[0].forward_loop.kind == tape.layer_tapes[0].backward_loop.kind == "gemm"
        launches.append(counts["launches"])
        step_gemms.append(len(calls))
    assert launches[1] - launches[0] == 2 * (forward_phases + backward_phases), launches
    assert step_gemms == [forward_phases + backward_phases - 1, 2 * (forward_phases + backward_phases) - 1]


def test_a_gemm_loop_training_call_allocates_nothing_after_the_first_of_its_shape(monkeypatch):
    problem = make_problem("lstm", 2, 2, 1, 2, np.float32, seed=16, lengths=np.array([2, 1]))
    workspace.POOL.clear()
    weights.clear()
    per_call = []
    for _ in range(2):
        with _gemm_loop(), counted(monkeypatch) as counts:
            _training_call(problem)
        per_call.append(counts["allocations"])
    assert per_call[0] > 0 and per_call[1] == 0, per_call


# ---------------------------------------------------------------- the rule

def _never_asked(threads, shared_bytes):
    raise AssertionError("the GEMM loop's plan must not compile the persistent kernel to size it")


def _holds(blocks):
    return lambda threads, shared_bytes: blocks


def test_the_rule_takes_the_gemm_loop_from_its_batch_on():
    """Float32 LSTM, H = 256, on a GPU holding 500 blocks: persistent below ``GEMM_MIN_BATCH``
    sequences, the GEMM loop from it, its pointwise kernel a thread per (sequence, unit)."""
    below = plan.choose(4, plan.GEMM_MIN_BATCH - 1, 256, 4, _holds(500), loop="auto")
    assert below.kind == "persistent"
    at = plan.choose(4, plan.GEMM_MIN_BATCH, 256, 4, _never_asked, loop="auto")
    assert at.kind == "gemm" and at.blocks * at.threads >= plan.GEMM_MIN_BATCH * 256
    assert (at.blocks - 1) * at.threads < plan.GEMM_MIN_BATCH * 256
    assert "gemm" in at.describe() and str(plan.GEMM_MIN_BATCH) in at.reason


def test_the_rule_keeps_per_step_for_small_batches_whose_weights_do_not_fit():
    assert plan.choose(4, 2, 4096, 4, _holds(64), loop="auto").kind == "per-step"


@pytest.mark.parametrize("loop", ["persistent", "per-step", "gemm"])
@pytest.mark.parametrize("batch", [1, 128])
def test_each_loop_can_be_forced_at_any_batch(loop, batch):
    chosen = plan.choose(3, batch, 64, 8, _holds(500) if loop != "gemm" else _never_asked, loop=loop)
    assert chosen.kind == loop
    with tuning.override(cuda_loop=loop):
        assert plan.forced_loop() == loop


def test_an_unknown_loop_is_refused():
    with pytest.raises(ValueError, match="cuda_loop.*expected one of .*'gemm'"):
        with tuning.override(cuda_loop="cublas"):
            pass
