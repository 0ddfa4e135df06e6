"""The oracle's backward against central finite differences of its own forward (float64).

The loss is L = Σ dy·y + Σ dstate·final_state with random dy and dstate, so its gradient
with respect to any input is exactly what ``backward(dy, dstate)`` must return.
"""
import numpy as np
import pytest

from fastlstm import reference
from fastlstm.cells import make_cell

from support import CELL_VARIANTS, numeric_gradient

EPS = 1e-6


def _loss(cell, params, x, state, dy, dstate):
    y, final, _ = reference.forward(cell, params, x, state)
    return float(np.sum(dy * y) + sum(np.sum(d * s) for d, s in zip(dstate, final)))


@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
@pytest.mark.parametrize("with_dstate", [False, True])
def test_reference_backward_matches_finite_differences(variant, with_dstate):
    rng = np.random.default_rng(7)
    cell = make_cell(**CELL_VARIANTS[variant])
    steps, batch, inputs, hidden = 4, 3, 3, 2
    params = {name: rng.uniform(-0.8, 0.8, shape)
              for name, shape in cell.parameter_shapes(inputs, hidden).items()}
    x = rng.standard_normal((steps, batch, inputs))
    state = tuple(rng.standard_normal((batch, hidden)) for _ in range(cell.state_count))
    dy = rng.standard_normal((steps, batch, hidden))
    dstate = tuple(rng.standard_normal((batch, hidden)) if with_dstate else np.zeros((batch, hidden))
                   for _ in range(cell.state_count))

    _, _, tape = reference.forward(cell, params, x, state)
    dx, dstate0, grads = reference.backward(tape, dy, dstate if with_dstate else None)

    def f():
        return _loss(cell, params, x, state, dy, dstate)

    checks = [("x", dx, x)] + [(f"state[{k}]", dstate0[k], state[k]) for k in range(len(state))]
    checks += [(f"params[{name}]", grads[name], params[name]) for name in params]
    assert set(grads) == set(params)
    for name, analytic, array in checks:
        numeric = numeric_gradient(f, array, EPS)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8, err_msg=name)
