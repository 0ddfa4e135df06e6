"""Dropout, variational dropout, zoneout and DropConnect: semantics, gradients, randomness."""
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastlstm
from fastlstm import functional
from fastlstm.regularisation import RATES, draw_masks, make_regularisation
from support import (CELL_VARIANTS, LOOP_STRATEGIES, assert_matches_reference, loop_strategy, make_problem,
                     numeric_gradient, with_backend)

ALL_ON = dict(dropout=0.3, input_dropout=0.25, recurrent_dropout=0.35, zoneout=0.3, weight_dropout=0.2)


def _rates(variant, **rates):
    rates = dict(ALL_ON, **rates)
    if variant.startswith("lstm"):
        rates.setdefault("zoneout_cell", 0.4)
    return rates


def _regularised(problem, backend, **rates):
    config = with_backend(problem["config"], backend)
    return replace(config, regularisation=make_regularisation(config.cell, **rates))


# ---------------------------------------------------------------- arguments

@pytest.mark.parametrize("name", RATES)
@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, float("nan")])
def test_rates_outside_zero_one_are_a_clear_error(name, value):
    with pytest.raises(ValueError, match=f"{name}: expected a probability in \\[0, 1\\), got"):
        fastlstm.LSTM(3, 4, **{name: value})


@pytest.mark.parametrize("value", ["0.1", None, True, [0.1]])
def test_rates_that_are_not_numbers_are_a_clear_error(value):
    with pytest.raises(TypeError, match="dropout: expected a probability in \\[0, 1\\), got"):
        fastlstm.GRU(3, 4, dropout=value)


def test_zoneout_cell_is_lstm_only():
    from fastlstm.cells import make_cell
    with pytest.raises(ValueError, match="zoneout_cell: only the LSTM has a cell state"):
        make_regularisation(make_cell("gru"), zoneout_cell=0.1)


# ---------------------------------------------------------------- gradients, masks fixed

@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
def test_reference_backward_with_every_regulariser_matches_finite_differences(variant):
    lengths = np.array([3, 1, 4])
    problem = make_problem(variant, 4, 3, 2, 2, np.float64, seed=11, lengths=lengths, num_layers=2,
                           bidirectional=True, param_scale=2.0)
    config = _regularised(problem, "reference", **_rates(variant))
    params, x, state, dy, dstate = (problem[k] for k in ("params", "x", "state", "dy", "dstate"))
    state, dstate = tuple(np.atleast_3d(s) for s in _parts(state)), _parts(dstate)
    public_state = state if variant.startswith("lstm") else state[0]
    _, _, tape = functional.forward(config, params, x, public_state, lengths, training=True,
                                    rng=np.random.default_rng(5))
    masks = tape.masks
    assert masks.recurrent[0][0] is not None and masks.zoneout[1][1][0] is not None

    def loss():
        y, final, _ = functional.forward(config, params, x, public_state, lengths, masks=masks)
        return float(np.sum(dy * y) + sum(np.sum(d * s) for d, s in zip(dstate, _parts(final))))

    dx, dstate0, grads, _ = functional.backward(tape, dy, dstate if variant.startswith("lstm") else dstate[0])
    checks = [("x", dx, x)] + [(f"state[{k}]", d, s) for k, (d, s) in enumerate(zip(_parts(dstate0), state))]
    checks += [(name, grads[name], params[name]) for name in params]
    for name, analytic, array in checks:
        np.testing.assert_allclose(analytic, numeric_gradient(loss, array), rtol=1e-6, atol=1e-8, err_msg=name)


def _parts(state):
    return state if isinstance(state, tuple) else (state,)


# ---------------------------------------------------------------- the masks

def test_mask_rates_and_scaling():
    config = _regularised(make_problem("lstm", 2, 2, 2, 2, np.float64, seed=0), "reference",
                          **_rates("lstm"))
    steps, batch = 50, 400
    masks = draw_masks(replace(config, hidden_size=64, input_size=48, num_layers=2), steps, batch, True,
                       np.random.default_rng(0))
    cases = [("input_dropout", masks.inputs[0], 0.25, True), ("recurrent_dropout", masks.recurrent[1][0], 0.35, True),
             ("weight_dropout", masks.weights[0][0], 0.2, True), ("dropout", masks.outputs[0], 0.3, True),
             ("zoneout", masks.zoneout[0][0][0], 0.3, False), ("zoneout_cell", masks.zoneout[1][0][1], 0.4, False)]
    for name, mask, p, inverted in cases:
        values = np.unique(mask)
        kept = 1.0 / (1.0 - p) if inverted else 1.0
        assert set(values) <= {0.0, kept}, name
        fraction = np.mean(mask == 0.0) if inverted else np.mean(mask == 1.0)
        sigma = np.sqrt(p * (1 - p) / mask.size)
        assert abs(fraction - p) < 5 * sigma, (name, fraction, p)
    assert masks.outputs[1] is None   # never after the last layer


def test_variational_masks_are_one_per_sequence_for_every_step():
    """With input dropout only, the layer equals the plain layer on x ⊙ m for ONE (B, I) mask m."""
    problem = make_problem("gru", 6, 3, 5, 4, np.float64, seed=2)
    config = _regularised(problem, "reference", input_dropout=0.5)
    y, _, tape = functional.forward(config, problem["params"], problem["x"], training=True,
                                    rng=np.random.default_rng(1))
    mask = tape.masks.inputs[0]
    assert mask.shape == (3, 5)
    plain = with_backend(problem["config"], "reference")
    expected, _, _ = functional.forward(plain, problem["params"], problem["x"] * mask)
    np.testing.assert_array_equal(y, expected)


def test_recurrent_dropout_masks_the_state_feeding_the_gates_at_every_step():
    """A unit whose recurrent mask is 0 for sequence b never reaches the gates: zeroing that
    column of weight_hh changes nothing for b."""
    problem = make_problem("lstm", 5, 4, 3, 6, np.float64, seed=3)
    config = _regularised(problem, "reference", recurrent_dropout=0.5)
    y, _, tape = functional.forward(config, problem["params"], problem["x"], training=True,
                                    rng=np.random.default_rng(2))
    mask = tape.masks.recurrent[0][0]
    b, unit = np.argwhere(mask == 0.0)[0]
    params = dict(problem["params"])
    params["weight_hh_l0"] = params["weight_hh_l0"].copy()
    params["weight_hh_l0"][:, unit] = 0.0
    y2, _, _ = functional.forward(config, params, problem["x"], masks=tape.masks)
    np.testing.assert_array_equal(y2[:, b], y[:, b])
    kept = np.argwhere(mask != 0.0)
    b_kept, unit_kept = kept[0]
    params["weight_hh_l0"] = problem["params"]["weight_hh_l0"].copy()
    params["weight_hh_l0"][:, unit_kept] = 0.0
    y3, _, _ = functional.forward(config, params, problem["x"], masks=tape.masks)
    assert not np.array_equal(y3[:, b_kept], y[:, b_kept])


@pytest.mark.parametrize("variant", ["lstm", "gru", "rnn_tanh"])
def test_zoneout_in_inference_is_its_expectation(variant):
    """Eval: h_t = p h_{t−1} + (1 − p) h̃_t (and c likewise), step by step."""
    problem = make_problem(variant, 4, 2, 3, 5, np.float64, seed=4)
    p_h, p_c = 0.3, 0.6
    rates = dict(zoneout=p_h, **({"zoneout_cell": p_c} if variant == "lstm" else {}))
    config = _regularised(problem, "reference", **rates)
    y, final, _ = functional.forward(config, problem["params"], problem["x"], problem["state"], training=False)
    plain = with_backend(problem["config"], "reference")
    state = problem["state"]
    for t in range(4):
        _, candidate, _ = functional.forward(plain, problem["params"], problem["x"][t:t + 1], state)
        if variant == "lstm":
            state = (p_h * state[0] + (1 - p_h) * candidate[0], p_c * state[1] + (1 - p_c) * candidate[1])
        else:
            state = p_h * state + (1 - p_h) * candidate
        np.testing.assert_allclose(y[t], _parts(state)[0][0], rtol=1e-13, atol=1e-15)
    for got, expected in zip(_parts(final), _parts(state)):
        np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)


def test_inference_is_deterministic_and_mask_free():
    layer = fastlstm.LSTM(3, 4, num_layers=2, backend="reference", seed=0, **_rates("lstm"))
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    layer.eval()
    y1, _ = layer(x)
    y2, _ = layer(x)
    np.testing.assert_array_equal(y1, y2)
    assert layer._tape.masks.inputs == [None, None] and layer._tape.masks.recurrent == [[None], [None]]
    layer.train()
    y3, _ = layer(x)
    y4, _ = layer(x)
    assert not np.array_equal(y3, y4)   # fresh masks each call


def test_masks_are_reproducible_from_the_seed_and_from_a_generator():
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    a, b = (fastlstm.GRU(3, 4, backend="reference", seed=7, **ALL_ON) for _ in range(2))
    np.testing.assert_array_equal(a(x)[0], b(x)[0])
    np.testing.assert_array_equal(a(x)[0], b(x)[0])
    c = fastlstm.GRU(3, 4, backend="reference", seed=7, **ALL_ON)
    np.testing.assert_array_equal(c(x, rng=np.random.default_rng(3))[0], a(x, rng=np.random.default_rng(3))[0])


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
def test_zero_rates_reproduce_the_plain_layer_bit_for_bit(backend, variant):
    problem = make_problem(variant, 4, 3, 2, 3, np.float32, seed=9, num_layers=2, bidirectional=True,
                           lengths=np.array([4, 2, 0]))
    plain = with_backend(problem["config"], backend)
    zero = _regularised(problem, backend, **{name: 0.0 for name in RATES if name != "zoneout_cell"})
    args = (problem["params"], problem["x"], problem["state"], problem["lengths"])
    results = []
    for config, training in ((plain, False), (zero, True), (zero, False)):
        y, final, tape = functional.forward(config, *args, training=training, rng=np.random.default_rng(0))
        dx, dstate0, grads, _ = functional.backward(tape, problem["dy"], problem["dstate"])
        assert tape.masks is None
        results.append([y, *_parts(final), dx, *_parts(dstate0), *grads.values()])
    for other in results[1:]:
        for got, expected in zip(other, results[0]):
            np.testing.assert_array_equal(got, expected)


CPU_RATES = dict(dropout=0.3, input_dropout=0.25, weight_dropout=0.2, zoneout=0.3, recurrent_dropout=0.35)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
def test_cpu_matches_the_reference_with_the_same_masks(variant, training):
    problem = make_problem(variant, 5, 3, 4, 6, np.float64, seed=12, num_layers=2, bidirectional=True,
                           lengths=np.array([5, 3, 1]), param_scale=2.0)
    rates = dict(CPU_RATES, **({"zoneout_cell": 0.45} if variant.startswith("lstm") else {}))
    args = (problem["params"], problem["x"], problem["state"], problem["lengths"])
    reference = _regularised(problem, "reference", **rates)
    y, final, tape = functional.forward(reference, *args, training=training, rng=np.random.default_rng(8))
    assert tape.masks.zoneout[0][0][0] is not None
    expected = functional.backward(tape, problem["dy"], problem["dstate"])
    y_cpu, final_cpu, tape_cpu = functional.forward(_regularised(problem, "cpu", **rates), *args,
                                                    masks=tape.masks)
    got = functional.backward(tape_cpu, problem["dy"], problem["dstate"])
    np.testing.assert_allclose(y_cpu, y, rtol=1e-10, atol=1e-12)
    for g, e in zip(_parts(final_cpu), _parts(final)):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)
    for g, e in zip(_parts(got[0]) + _parts(got[1]), _parts(expected[0]) + _parts(expected[1])):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)
    for name in expected[2]:
        np.testing.assert_allclose(got[2][name], expected[2][name], rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("rates", [dict(zoneout=0.4), dict(zoneout_cell=0.5), dict(recurrent_dropout=0.5)])
@pytest.mark.parametrize("variant", ["lstm", "lstm_peephole"])
def test_cpu_one_in_loop_regulariser_matches_the_reference(variant, rates):
    problem = make_problem(variant, 6, 3, 2, 5, np.float64, seed=13, lengths=np.array([6, 2, 4]),
                           bidirectional=True, param_scale=2.0)
    args = (problem["params"], problem["x"], problem["state"], problem["lengths"])
    y, final, tape = functional.forward(_regularised(problem, "reference", **rates), *args, training=True,
                                        rng=np.random.default_rng(4))
    expected = functional.backward(tape, problem["dy"], problem["dstate"])
    y_cpu, final_cpu, tape_cpu = functional.forward(_regularised(problem, "cpu", **rates), *args, masks=tape.masks)
    got = functional.backward(tape_cpu, problem["dy"], problem["dstate"])
    for g, e in zip([y_cpu, *final_cpu, got[0], *got[1], *got[2].values()],
                    [y, *final, expected[0], *expected[1], *expected[2].values()]):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
@settings(max_examples=max(4, settings().max_examples // 4))
@given(data=st.data())
def test_cpu_matches_the_reference_with_random_rates_and_options(variant, data):
    """Hypothesis: any rates, shapes, lengths, stacks and directions, float32 or float64, training
    or inference: given the reference's masks, the cpu backend's forward and backward match."""
    steps, batch = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 5))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    lengths = data.draw(st.one_of(st.none(), st.lists(st.integers(0, steps), min_size=batch, max_size=batch)))
    problem = make_problem(variant, steps, batch, data.draw(st.integers(1, 5)), data.draw(st.integers(1, 6)), dtype,
                           data.draw(st.integers(0, 2**32 - 1)), lengths=None if lengths is None else np.array(lengths),
                           num_layers=data.draw(st.integers(1, 2)), bidirectional=data.draw(st.booleans()),
                           batch_first=data.draw(st.booleans()), param_scale=data.draw(st.sampled_from([1.0, 3.0])))
    names = [n for n in RATES if n != "zoneout_cell" or variant.startswith("lstm")]
    rates = {n: data.draw(st.sampled_from([0.0, 0.2, 0.5, 0.9])) for n in names}
    args = (problem["params"], problem["x"], problem["state"], problem["lengths"])
    y, final, tape = functional.forward(_regularised(problem, "reference", **rates), *args,
                                        training=data.draw(st.booleans()), rng=np.random.default_rng(0))
    dx, dstate0, grads, _ = functional.backward(tape, problem["dy"], problem["dstate"])
    expected = _flat(y, final, dx, dstate0, grads)
    with loop_strategy(data.draw(st.sampled_from(LOOP_STRATEGIES))):
        y, final, tape_cpu = functional.forward(_regularised(problem, "cpu", **rates), *args, masks=tape.masks)
        result = _flat(y, final, *functional.backward(tape_cpu, problem["dy"], problem["dstate"]))
    naive = None
    if dtype == np.float32:   # float32's own error on this problem, for the tolerance
        y, final, tape32 = functional.forward(_regularised(problem, "reference-float32", **rates), *args,
                                              masks=tape.masks)
        naive = _flat(y, final, *functional.backward(tape32, problem["dy"], problem["dstate"]))
    assert_matches_reference(result, expected, dtype, naive)


def _flat(y, final, dx, dstate0, grads, norms=None):
    out = {"y": y, "dx": dx}
    out.update({f"final[{k}]": s for k, s in enumerate(_parts(final))})
    out.update({f"dstate0[{k}]": s for k, s in enumerate(_parts(dstate0))})
    out.update({f"grad[{k}]": v for k, v in grads.items()})
    return out
