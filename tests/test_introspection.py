"""Gradient-flow introspection: ‖∂L/∂h_t‖ from the backward, gate values from the forward's tape."""
from dataclasses import replace

import numpy as np
import pytest

import fastlstm
from fastlstm import functional, tuning
from fastlstm.introspection import gate_activations, gate_statistics
from fastlstm.reference import sigmoid
from fastlstm.regularisation import make_regularisation
from support import CELL_VARIANTS, loop_strategy, make_problem, with_backend


def _norms(problem, backend, rates=None, masks=None):
    config = with_backend(problem["config"], backend)
    if rates:
        config = replace(config, regularisation=make_regularisation(config.cell, **rates))
    _, _, tape = functional.forward(config, problem["params"], problem["x"], problem["state"], problem["lengths"],
                                    training=bool(rates), rng=np.random.default_rng(3), masks=masks)
    return functional.backward(tape, problem["dy"], problem["dstate"], state_gradient_norms=True), tape


@pytest.mark.parametrize("variant", ["lstm", "gru", "rnn_tanh"])
def test_state_gradient_norm_is_dy_plus_what_the_rest_of_the_sequence_sends_back(variant):
    """Independent of the backward's internals: split the sequence after step t; the gradient
    reaching h_t is dy_t plus the gradient the later steps send to their initial h."""
    problem = make_problem(variant, 6, 3, 2, 4, np.float64, seed=5, param_scale=2.0)
    config = with_backend(problem["config"], "reference")
    params, x, dy = problem["params"], problem["x"], problem["dy"]
    (_, _, _, norms), _ = _norms(problem, "reference")
    lstm = variant.startswith("lstm")
    for t in range(6):
        _, state_t, _ = functional.forward(config, params, x[:t + 1], problem["state"])
        expected = dy[t] + (problem["dstate"][0][0] if lstm else problem["dstate"][0])
        if t < 5:
            _, _, later = functional.forward(config, params, x[t + 1:], state_t)
            dstate0 = functional.backward(later, dy[t + 1:], problem["dstate"])[1]
            expected = dy[t] + (dstate0[0][0] if lstm else dstate0[0])
        np.testing.assert_allclose(norms[0, 0, t], np.linalg.norm(expected, axis=-1), rtol=1e-10)


@pytest.mark.parametrize("loop", ["auto", "units", "units-regions"])
@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
def test_cpu_state_gradient_norms_match_the_reference(variant, loop):
    """Also with the units loop split in two blocks of the five units (held at a barrier, whose
    block 0 records every unit's norm, and with a region per phase)."""
    problem = make_problem(variant, 7, 4, 3, 5, np.float64, seed=6, lengths=np.array([7, 2, 0, 5]), num_layers=2,
                           bidirectional=True, param_scale=2.0)
    rates = dict(dropout=0.3, recurrent_dropout=0.3, zoneout=0.4)
    (_, _, _, expected), tape = _norms(problem, "reference", rates)
    with loop_strategy(loop), tuning.override(step_units=2):
        (_, _, _, got), _ = _norms(problem, "cpu", rates, masks=tape.masks)
    assert got.shape == (2, 2, 7, 4)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    assert np.all(np.isnan(got[:, :, 2:, 1])) and np.all(np.isnan(got[:, :, :, 2]))
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-13)


def test_a_plain_rnns_gradient_vanishes_where_an_lstms_does_not():
    """The property the notebooks show: with the loss on the last step only, a contracting
    tanh RNN's ‖∂L/∂h_t‖ shrinks geometrically going back; an LSTM with open forget gates keeps it."""
    x = np.random.default_rng(0).standard_normal((60, 8, 4))
    dy = np.zeros((60, 8, 16))
    dy[-1] = 1.0
    rnn = fastlstm.RNN(4, 16, seed=0, dtype="float64")
    rnn.params["weight_hh_l0"] *= 0.5
    lstm = fastlstm.LSTM(4, 16, seed=0, dtype="float64")
    lstm.params["bias_hh_l0"][16:32] = 5.0   # forget gates near 1
    ratios = []
    for layer in (rnn, lstm):
        layer(x)
        layer.backward(dy, state_gradient_norms=True)
        norms = layer.state_gradient_norms[0, 0].mean(axis=1)
        ratios.append(norms[0] / norms[-1])
    assert ratios[0] < 1e-6 < 1e-2 < ratios[1]


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_gate_activations_are_the_gates_of_the_equations(backend):
    """The first step's gates, recomputed from the parameters, in natural time and the caller's
    order, both directions, NaN past each end."""
    lengths = np.array([2, 5, 0, 3])
    layer = fastlstm.LSTM(3, 4, bidirectional=True, dtype="float64", backend=backend, seed=2)
    x = np.random.default_rng(1).standard_normal((5, 4, 3))
    layer(x, lengths=lengths)
    gates = gate_activations(layer)
    for direction, suffix in enumerate(["_l0", "_l0_reverse"]):
        p = {k[:-len(suffix)]: v for k, v in layer.params.items() if k.endswith(suffix) and
             (direction == 1 or not k.endswith("_reverse"))}
        for b, n in enumerate(lengths):
            if n == 0:
                assert np.all(np.isnan(gates[direction]["forget"][:, b]))
                continue
            t = 0 if direction == 0 else n - 1      # each direction's first step, with h0 = 0
            a = x[t, b] @ p["weight_ih"].T + p["bias_ih"] + p["bias_hh"]
            np.testing.assert_allclose(gates[direction]["input"][t, b], sigmoid(a[:4]), rtol=1e-12)
            np.testing.assert_allclose(gates[direction]["forget"][t, b], sigmoid(a[4:8]), rtol=1e-12)
            np.testing.assert_allclose(gates[direction]["cell"][t, b], np.tanh(a[8:12]), rtol=1e-12)
            assert np.all(np.isnan(gates[direction]["output"][n:, b]))


@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
def test_cpu_gate_statistics_match_the_reference(variant):
    problem = make_problem(variant, 6, 4, 3, 5, np.float64, seed=8, lengths=np.array([6, 1, 0, 4]), num_layers=2,
                           bidirectional=True, param_scale=3.0)
    rates = dict(zoneout=0.3)
    (_, _, _, _), tape_ref = _norms(problem, "reference", rates)
    (_, _, _, _), tape_cpu = _norms(problem, "cpu", rates, masks=tape_ref.masks)
    for layer in range(2):
        for expected, got in zip(gate_activations(tape_ref, layer), gate_activations(tape_cpu, layer)):
            assert expected.keys() == got.keys()
            for name in expected:
                np.testing.assert_allclose(got[name], expected[name], rtol=1e-10, atol=1e-14, err_msg=name)
    for expected, got in zip(gate_statistics(tape_ref), gate_statistics(tape_cpu)):
        for e, g in zip(expected, got):
            for name in e:
                assert g[name]["saturated"] == e[name]["saturated"]
                np.testing.assert_allclose(g[name]["mean_per_step"], e[name]["mean_per_step"], rtol=1e-10)


def test_gate_statistics_see_saturation_and_open_forget_gates():
    layer = fastlstm.LSTM(2, 8, seed=0, dtype="float64")
    layer.params["bias_hh_l0"][8:16] = 8.0
    layer(np.random.default_rng(0).standard_normal((10, 3, 2)))
    forget = gate_statistics(layer)[0][0]["forget"]
    assert forget["mean"] > 0.99 and forget["saturated"] == 1.0
    assert forget["mean_per_step"].shape == (10,)
    with pytest.raises(ValueError, match=r"saturation: expected a number in \(0, 0.5\)"):
        gate_statistics(layer, saturation=0.5)
    layer(np.ones((3, 1, 2)), tape=False)
    with pytest.raises(TypeError, match="tape: expected the Tape of a forward with tape=True"):
        gate_statistics(layer)
