"""A first training call compiled by two processes at once (fastlstm.backends.cpu.warming): going
through a call without running it runs nothing and leaves nothing behind; from a cold cache the
helper process compiles the code every cell shares while the call compiles the cell's; and the
call's answers match the reference whether the helper works, fails, or is off. The cold-cache runs
are fresh processes over a cache directory of the test's own (``NUMBA_CACHE_DIR``)."""
import json
import os
import subprocess
import sys

from dataclasses import replace

import numpy as np
import pytest

from fastlstm import functional
from fastlstm.regularisation import make_regularisation
from fastlstm.backends.cpu import kept, prepared, tiles
from fastlstm.backends.cpu.calls import compiling_only
from fastlstm.backends.cpu.kernels import kernels_for
from fastlstm.backends.cpu.warming import compile_inference

from support import LOOP_STRATEGIES, loop_strategy, make_problem, state_parts, with_backend

TESTS = os.path.dirname(os.path.abspath(__file__))


def test_nothing_runs_in_a_compiling_only_block():
    matrix = np.arange(12.0, dtype=np.float32).reshape(3, 4)
    panels = np.full(tiles.panels_size(3, 4, np.float32), np.nan, np.float32)
    with compiling_only(lambda dispatcher: True):
        tiles.pack(matrix, 0, 4, panels)
    assert np.isnan(panels).all()
    tiles.pack(matrix, 0, 4, panels)
    assert not np.isnan(panels).any()


def _training_call(problem, config, masks):
    y, final, tape = functional.forward(config, problem["params"], problem["x"], problem["state"],
                                        problem["lengths"], masks=masks)
    dx, dstate0, grads, _ = functional.backward(tape, problem["dy"], problem["dstate"])
    return [y, dx, *state_parts(final), *state_parts(dstate0), *(grads[name] for name in sorted(grads))]


@pytest.mark.parametrize("loop", LOOP_STRATEGIES)
@pytest.mark.parametrize("variant, bidirectional, rates", [
    ("lstm_peephole", True, {}), ("gru", False, dict(recurrent_dropout=0.3, zoneout=0.2)), ("rnn_relu", True, {})])
def test_a_call_gone_through_compiling_nothing_leaves_its_inputs_and_later_calls_alone(variant, bidirectional,
                                                                                        rates, loop):
    """Every address found in the block is a function that does nothing: a later call that used one
    (kept, remembered) would answer wrongly."""
    problem = make_problem(variant, 9, 5, 3, 16, np.float32, seed=41, lengths=np.array([9, 4, 9, 0, 6]),
                           bidirectional=bidirectional)
    regularisation = make_regularisation(problem["config"].cell, **rates) if rates else None
    reference = replace(with_backend(problem["config"], "reference"), regularisation=regularisation)
    _, _, tape = functional.forward(reference, problem["params"], problem["x"], problem["state"], problem["lengths"],
                                    training=bool(rates), rng=np.random.default_rng(3))
    masks = tape.masks if rates else None
    expected = _training_call(problem, reference, masks)
    cpu = replace(problem["config"], regularisation=regularisation)
    given = {name: value.copy() for name, value in problem.items() if isinstance(value, np.ndarray)}
    params = {name: value.copy() for name, value in problem["params"].items()}
    kept.clear()
    with loop_strategy(loop):
        with compiling_only(lambda dispatcher: False), np.errstate(all="ignore"):
            _training_call(problem, cpu, masks)
        for name, value in [*given.items(), *params.items()]:
            np.testing.assert_array_equal(problem.get(name, problem["params"].get(name)), value, err_msg=name)
        got = _training_call(problem, cpu, masks)
    for index, (g, e) in enumerate(zip(got, expected)):
        np.testing.assert_allclose(g, e, rtol=2e-4, atol=2e-5, err_msg=f"output {index}")


def test_an_inference_call_gone_through_compiling_nothing_leaves_later_calls_alone():
    problem = make_problem("gru_reset_before", 7, 3, 4, 16, np.float32, seed=45, num_layers=2, bidirectional=True)
    config, params, x = problem["config"], problem["params"], problem["x"]
    prepared.clear()
    compile_inference(config, kernels_for(config.cell, np.float32), params, x, None, lambda dispatcher: False)
    y, final, _ = functional.forward(config, params, x, tape=False)
    expected_y, expected_final, _ = functional.forward(with_backend(config, "reference"), params, x, tape=False)
    np.testing.assert_allclose(y, expected_y, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(final, expected_final, rtol=2e-4, atol=2e-5)


_FIRST_CALL = r"""
import json, sys
sys.path.insert(0, {tests!r})
import numpy as np
from numba.core import event

compiled = []
class Compiles(event.Listener):
    depth = 0
    def on_start(self, ev):
        if self.depth == 0:
            compiled.append(ev.data["dispatcher"].py_func.__name__)
        self.depth += 1
    def on_end(self, ev):
        self.depth -= 1
event.register("numba:compile", Compiles())

{setup}
from support import assert_matches_reference, make_problem, run, with_backend
from fastlstm import functional
from fastlstm.backends.cpu.kernels import CELL_CODE
problem = make_problem("lstm", 12, 3, 4, 16, np.float32, seed=43, bidirectional=True, num_layers={layers})
if {training}:
    result = run(problem, "cpu")
    assert_matches_reference(result, run(problem, "reference"), np.float32)
else:
    got = functional.forward(problem["config"], problem["params"], problem["x"], tape=False)
    expected = functional.forward(with_backend(problem["config"], "reference"), problem["params"], problem["x"],
                                  tape=False)
    np.testing.assert_allclose(got[0], expected[0], rtol=2e-4, atol=2e-5)
cell_code = sorted({{d.py_func.__name__ for d in CELL_CODE}})
print(json.dumps(dict(compiled=compiled, cell_code=cell_code)))
"""


def _first_call(tmp_path, setup="", training=True):
    environment = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), FASTLSTM_COMPILE_HELPER="1")
    environment.pop("FASTLSTM_CPU_LOOP", None)
    code = _FIRST_CALL.format(tests=TESTS, setup=setup, training=training, layers=1 if training else 2)
    completed = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True,
                               timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _shared(names, cell_code):
    """The names among ``names`` of functions compiled for every cell (not the cell's phases and loops,
    nor what they inline, nor a prepared call's whole direction)."""
    return {name for name in names
            if name not in cell_code and name != "vector_tail" and not name.startswith("_run_direction")}


@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
def test_from_a_cold_cache_the_helper_compiles_the_shared_code_and_the_call_the_cells(tmp_path, training):
    outcome = _first_call(tmp_path, training=training)
    # what the call compiled itself: the cell's code (and the placeholder of the addresses it did
    # not compile while going through the call); every shared function came from the helper's cache
    assert set(outcome["cell_code"]) & set(outcome["compiled"])
    assert _shared(outcome["compiled"], outcome["cell_code"]) <= {"_nothing"}


def test_a_helper_that_fails_leaves_the_call_to_compile_everything(tmp_path):
    """(And so the listener above sees the shared code where the call compiles it.)"""
    failing = ("import subprocess\n"
               "_popen = subprocess.Popen\n"
               "subprocess.Popen = lambda arguments, **options: _popen("
               "[sys.executable, '-c', 'import sys; sys.exit(3)'], **options)\n")
    outcome = _first_call(tmp_path, setup=failing)
    shared = _shared(outcome["compiled"], outcome["cell_code"])
    assert "walk" in shared and any(name.startswith("rows_block") for name in shared), shared
