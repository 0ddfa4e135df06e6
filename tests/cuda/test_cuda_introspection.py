"""Introspection on the cuda backend: gate values from its tape; the norms it does not record."""
import numpy as np
import pytest

from fastlstm import functional
from fastlstm.introspection import gate_activations
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


def test_cuda_says_it_does_not_record_state_gradient_norms():
    problem = make_problem("gru", 2, 1, 2, 2, np.float64, seed=1)
    config = with_backend(problem["config"], "cuda")
    _, _, tape = functional.forward(config, problem["params"], problem["x"], problem["state"])
    with pytest.raises(NotImplementedError, match="state_gradient_norms are not recorded by the GPU loops"):
        functional.backward(tape, problem["dy"], state_gradient_norms=True)
