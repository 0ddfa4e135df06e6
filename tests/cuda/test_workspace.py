"""The cuda backend's host side: device memory reused across calls (``workspace``), parameters'
device copies kept while their values do not change (``weights``), launches per call."""
import contextlib

import numpy as np
import pytest
from numba import cuda

from conftest import SIMULATED
from fastlstm import functional, tuning
from fastlstm.backends.cuda import weights, workspace
from support import assert_matches_reference, make_problem, run, with_backend


@contextlib.contextmanager
def counted(monkeypatch):
    """Count device allocations (``cuda.device_array``/``to_device``/``device_array_like``) and,
    under the simulator, kernel launches, while the block runs."""
    counts = {"allocations": 0, "launches": 0}
    with monkeypatch.context() as patch:
        for name in ("device_array", "to_device", "device_array_like"):
            original = getattr(cuda, name)

            def counting(*args, _original=original, **kwargs):
                counts["allocations"] += 1
                return _original(*args, **kwargs)

            patch.setattr(cuda, name, counting)
        if SIMULATED:
            from numba.cuda.simulator import kernel as simulator

            launch = simulator.FakeCUDAKernel.__call__

            def counting_launch(self, *args):
                if not self._device and not simulator._kernel_context:
                    counts["launches"] += 1
                return launch(self, *args)

            patch.setattr(simulator.FakeCUDAKernel, "__call__", counting_launch)
        yield counts


def _training_call(config, params, problem):
    y, final, tape = functional.forward(config, params, problem["x"], problem["state"], problem["lengths"])
    return functional.backward(tape, problem["dy"], problem["dstate"])


def test_a_training_call_allocates_nothing_after_the_first_of_its_shape(monkeypatch):
    """A bidirectional layer, lengths, peepholes, host inputs and parameters."""
    problem = make_problem("lstm_peephole", 2, 2, 2, 2, np.float32, seed=1, lengths=np.array([2, 0]),
                           bidirectional=True)
    config = with_backend(problem["config"], "cuda")
    workspace.POOL.clear()
    weights.clear()
    per_call = []
    with tuning.override(cuda_loop="persistent"):
        for _ in range(3):
            with counted(monkeypatch) as counts:
                _training_call(config, problem["params"], problem)
            per_call.append(dict(counts))
    assert per_call[0]["allocations"] > 0          # the counter sees the backend's allocations
    assert [c["allocations"] for c in per_call[1:]] == [0, 0], per_call
    if SIMULATED:
        assert per_call[1]["launches"] == per_call[2]["launches"] > 0


@pytest.mark.skipif(not SIMULATED, reason="counts the simulator's copies")
def test_a_call_on_device_inputs_copies_nothing_from_the_host_after_the_first(monkeypatch):
    """Device x and dy, host parameters left unchanged, lengths seen before: no host-to-device copy
    (each would synchronise the host with the device)."""
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    problem = make_problem("rnn_tanh", 2, 2, 2, 2, np.float32, seed=6, lengths=np.array([1, 2]))
    config = with_backend(problem["config"], "cuda")
    x, dy = cuda.to_device(problem["x"]), cuda.to_device(problem["dy"])
    copies = []
    original = FakeCUDAArray.copy_to_device

    def counting(self, ary, *args, **kwargs):
        if isinstance(ary, np.ndarray):
            copies.append(ary.shape)
        return original(self, ary, *args, **kwargs)

    for call in range(2):
        copies.clear()
        with monkeypatch.context() as patch:
            patch.setattr(FakeCUDAArray, "copy_to_device", counting)
            _, _, tape = functional.forward(config, problem["params"], x, lengths=problem["lengths"])
            functional.backward(tape, dy)
        assert copies if call == 0 else not copies, copies


@pytest.mark.skipif(not SIMULATED, reason="counts launches through the simulator")
def test_the_persistent_loop_launches_as_often_for_any_length(monkeypatch):
    launches = []
    for steps in (1, 3):
        problem = make_problem("rnn_relu", steps, 1, 1, 2, np.float32, seed=2)
        config = with_backend(problem["config"], "cuda")
        with tuning.override(cuda_loop="persistent"), counted(monkeypatch) as counts:
            _training_call(config, problem["params"], problem)
        launches.append(counts["launches"])
    assert launches[0] == launches[1], launches


def test_an_in_place_update_of_host_parameters_is_seen():
    """Parameters changed in place between calls (an optimiser's step) reach the next call, its
    backward included (weight_hh transposed, folded biases, stacked peepholes)."""
    dtype = np.float64
    problem = make_problem("lstm_peephole", 2, 2, 2, 2, dtype, seed=3, bidirectional=True)
    params = problem["params"]
    config = with_backend(problem["config"], "cuda")
    _training_call(config, params, problem)
    for name, value in params.items():
        value *= dtype(0.5) if "weight" in name else dtype(-1.5)
    assert_matches_reference(run(dict(problem, config=config), "cuda"), run(problem, "reference"), dtype)


def test_a_tape_keeps_the_weights_its_forward_ran_with():
    """A parameter changed in place after a forward, and a forward with the new values, leave the
    first tape's backward as it was: cached device copies are never overwritten."""
    problem = make_problem("gru", 2, 2, 2, 2, np.float64, seed=4)
    params = problem["params"]
    config = with_backend(problem["config"], "cuda")
    expected = run(problem, "reference")
    _, _, tape = functional.forward(config, params, problem["x"], problem["state"])
    saved = {name: value.copy() for name, value in params.items()}
    for value in params.values():
        value += 0.25
    functional.forward(config, params, problem["x"], problem["state"])
    dx, dstate0, grads, _ = functional.backward(tape, problem["dy"], problem["dstate"])
    np.testing.assert_allclose(dx, expected["dx"], rtol=1e-10, atol=1e-12)
    for name in saved:
        np.testing.assert_allclose(grads[name], expected[f"grad[{name}]"], rtol=1e-10, atol=1e-12, err_msg=name)


def test_device_results_are_never_overwritten_by_a_later_call():
    problem = make_problem("rnn_tanh", 2, 2, 2, 2, np.float64, seed=5)
    config = with_backend(problem["config"], "cuda")
    first, _, _ = functional.forward(config, problem["params"], cuda.to_device(problem["x"]), tape=False)
    kept = first.copy_to_host()
    for _ in range(2):
        functional.forward(config, problem["params"], cuda.to_device(2 * problem["x"]), tape=False)
    np.testing.assert_array_equal(first.copy_to_host(), kept)


def test_a_block_returns_to_the_pool_when_its_last_view_dies():
    pool = workspace.Pool()
    array = pool.empty((4, 3), np.float32)
    view = array[1:]
    del array
    assert pool.statistics()["free_blocks"] == 0     # the view still uses it
    del view
    assert pool.statistics()["free_blocks"] == 1
    again = pool.empty((3, 4), np.float32)            # same size: the same block
    assert pool.statistics()["allocations"] == 1 and pool.statistics()["free_blocks"] == 0
    other = pool.empty((5, 100), np.float32)          # another size: a new one
    assert pool.statistics()["allocations"] == 2
    del again, other


def test_every_lease_of_floats_starts_as_nan_under_the_simulator():
    if not SIMULATED:
        pytest.skip("the simulator's poisoning only")
    pool = workspace.Pool()
    array = pool.empty(6, np.float64)
    array.copy_to_device(np.zeros(6))
    del array
    assert np.isnan(pool.empty(6, np.float64).copy_to_host()).all()


def test_free_blocks_beyond_the_limit_are_given_back():
    pool = workspace.Pool(max_free_bytes=2 * workspace.ALIGNMENT)
    arrays = [pool.empty(workspace.ALIGNMENT // 4, np.float32) for _ in range(3)]
    del arrays
    assert pool.statistics()["free_blocks"] == 2
    pool.clear()
    assert pool.statistics()["free_blocks"] == 0
