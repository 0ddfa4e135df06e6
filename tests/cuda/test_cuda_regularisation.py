"""The cuda backend's regularisers against the float64 reference, given the reference's masks."""
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fastlstm import functional
from fastlstm.regularisation import RATES, make_regularisation
from support import CELL_VARIANTS, assert_matches_reference, make_problem, state_parts, with_backend
from test_cuda_matches_reference import LOOPS, forced_loop, problems


def _config(problem, backend, rates):
    config = with_backend(problem["config"], backend)
    return replace(config, regularisation=make_regularisation(config.cell, **rates))


def _run(problem, backend, rates, **how):
    """Forward (with ``how``: training and rng, or masks) and backward; every output, flat."""
    args = (problem["params"], problem["x"], problem["state"], problem["lengths"])
    y, final, tape = functional.forward(_config(problem, backend, rates), *args, **how)
    dx, dstate0, grads, _ = functional.backward(tape, problem["dy"], problem["dstate"])
    out = {"y": y, "dx": dx}
    out.update({f"final[{k}]": s for k, s in enumerate(state_parts(final))})
    out.update({f"dstate0[{k}]": s for k, s in enumerate(state_parts(dstate0))})
    out.update({f"grad[{k}]": v for k, v in grads.items()})
    return out, tape


@settings(max_examples=2 * settings().max_examples)
@given(data=st.data())
def test_cuda_matches_the_reference_with_the_same_masks(data):
    """Any cell, rates, training or inference, either loop: replaying the reference's masks, the
    cuda backend's forward and backward match it. (One property over the cells keeps the
    simulator's share of CI small; each cell's in-loop code has its own test below.)"""
    variant = data.draw(st.sampled_from(sorted(CELL_VARIANTS)), label="variant")
    options = data.draw(problems(variant))
    problem = make_problem(**options)
    names = [n for n in RATES if n != "zoneout_cell" or variant.startswith("lstm")]
    rates = {n: data.draw(st.sampled_from([0.0, 0.3, 0.7]), label=n) for n in names}
    training = data.draw(st.booleans(), label="training")
    expected, tape = _run(problem, "reference", rates, training=training, rng=np.random.default_rng(0))
    assume(tape.masks is not None)   # otherwise the plain layer, covered by test_cuda_matches_reference
    with forced_loop(data.draw(st.sampled_from(LOOPS), label="loop")):
        result, _ = _run(problem, "cuda", rates, masks=tape.masks)
    naive = None
    if options["dtype"] == np.float32:
        naive, _ = _run(problem, "reference-float32", rates, masks=tape.masks)
    assert_matches_reference(result, expected, options["dtype"], naive)


@pytest.mark.parametrize("variant", ["lstm_peephole", "gru_reset_before", "rnn_tanh"])
def test_cuda_in_loop_regularisers_one_at_a_time(variant):
    """Each in-loop regulariser alone (the others' arrays empty), with lengths and both directions."""
    problem = make_problem(variant, 4, 3, 2, 3, np.float64, seed=3, lengths=np.array([4, 1, 3]),
                           bidirectional=True, param_scale=2.0)
    alone = [dict(recurrent_dropout=0.5), dict(zoneout=0.5)]
    if variant.startswith("lstm"):
        alone.append(dict(zoneout_cell=0.5))
    for rates in alone:
        expected, tape = _run(problem, "reference", rates, training=True, rng=np.random.default_rng(1))
        result, _ = _run(problem, "cuda", rates, masks=tape.masks)
        for name, value in expected.items():
            np.testing.assert_allclose(result[name], value, rtol=1e-9, atol=1e-11, err_msg=f"{rates} {name}")
