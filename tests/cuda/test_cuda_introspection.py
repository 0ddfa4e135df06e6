"""Introspection on the cuda backend: gate values from its tape, ‖∂L/∂h_t‖ from its backward loops."""
from dataclasses import replace

import numpy as np
import pytest

from fastlstm import functional
from fastlstm.introspection import gate_activations
from fastlstm.regularisation import make_regularisation
from support import make_problem, with_backend


@pytest.mark.parametrize("variant", ["lstm", "gru_reset_before", "rnn_tanh"])
def test_cuda_gate_activations_match_the_reference(variant):
    problem = make_problem(variant, 4, 3, 2, 3, np.float64, seed=4, lengths=np.array([4, 0, 2]),
                           bidirectional=True, param_scale=2.0)
    tapes = []
    for backend in ("reference", "cuda"):
        config = with_backend(problem["config"], backend)
        tapes.append(functional.forward(config, problem["params"], problem["x"], problem["state"],
                                        problem["lengths"])[2])
    for expected, got in zip(gate_activations(tapes[0]), gate_activations(tapes[1])):
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-10, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("variant", ["lstm_peephole", "gru_reset_before", "rnn_relu"])
def test_cuda_state_gradient_norms_match_the_reference(variant):
    """With lengths, both directions, recurrent dropout and zoneout replayed."""
    problem = make_problem(variant, 4, 3, 2, 3, np.float64, seed=7, lengths=np.array([4, 0, 3]),
                           bidirectional=True, param_scale=2.0)
    rates = dict(recurrent_dropout=0.3, zoneout=0.4, dropout=0.2)
    norms, masks = [], None
    for backend in ("reference", "cuda"):
        config = with_backend(problem["config"], backend)
        config = replace(config, regularisation=make_regularisation(config.cell, **rates))
        _, _, tape = functional.forward(config, problem["params"], problem["x"], problem["state"],
                                        problem["lengths"], training=True, rng=np.random.default_rng(0), masks=masks)
        masks = tape.masks
        norms.append(functional.backward(tape, problem["dy"], problem["dstate"], state_gradient_norms=True)[3])
    np.testing.assert_array_equal(np.isnan(norms[1]), np.isnan(norms[0]))
    np.testing.assert_allclose(norms[1], norms[0], rtol=1e-10, atol=1e-13)
