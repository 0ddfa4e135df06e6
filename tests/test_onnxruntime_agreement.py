"""The benchmark's peers compute what fastlstm computes: ONNX Runtime running the layer's ONNX
model (:func:`fastlstm.interop.to_onnx`), and PyTorch's modules, fed the weights of a fastlstm
layer, agree with the float64 reference on the same weights and inputs."""
import numpy as np
import pytest

from fastlstm.benchmark import peers
from fastlstm.benchmark.shapes import BenchShape

ATOL = 1e-5  # float32 peers against the float64 oracle on O(1) values: a few float32 ulps


def small_shape(cell, mode="inference", dtype="float32", peers_=("onnxruntime",), **options):
    # I ≠ H and T, B distinct, so that a transposed or misplaced weight block cannot pass.
    return BenchShape(id="t", cell=cell, options=tuple(sorted(options.items())), input_size=5,
                      hidden_size=4, batch=3, steps=7, mode=mode, dtype=dtype, peers=peers_, target=1.0)


def reference_run(shape, layer, x):
    """The float64 reference on ``layer``'s weights (as the peer received them) and ``x``."""
    oracle = shape.make_layer(backend="reference", dtype="float64")
    oracle.params = {name: np.asarray(value, np.float64) for name, value in layer.params.items()}
    return oracle(np.asarray(x, np.float64))


CELLS = [
    ("lstm", {}),
    ("lstm", {"peephole": True}),
    ("gru", {"reset_after": True}),
    ("gru", {"reset_after": False}),
    ("rnn", {"nonlinearity": "tanh"}),
    ("rnn", {"nonlinearity": "relu"}),
]


@pytest.mark.parametrize("cell, options", CELLS, ids=["lstm", "lstm_peephole", "gru", "gru_reset_before", "rnn_tanh",
                                                      "rnn_relu"])
def test_onnxruntime_peer_matches_reference(cell, options):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    shape = small_shape(cell, **options)
    layer = shape.make_layer(seed=3)
    x, dy = shape.make_inputs(seed=4)
    contender = peers.build_onnxruntime(shape, layer, x, dy, threads=1)
    assert contender.available, contender.reason

    outputs = contender.run()
    y, final = reference_run(shape, layer, x)

    assert outputs[0].shape == (shape.steps, shape.batch, shape.hidden_size)
    np.testing.assert_allclose(outputs[0], y, rtol=0, atol=ATOL)
    finals = final if cell == "lstm" else (final,)
    assert len(outputs) == 1 + len(finals)
    for got, expected in zip(outputs[1:], finals):
        np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


def test_peephole_weights_reach_the_onnx_model():
    """Peepholes change the output, so the test above would see them misplaced or dropped."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    shape = small_shape("lstm", peephole=True)
    layer = shape.make_layer(seed=3)
    x, _ = shape.make_inputs(seed=4)
    with_peepholes = peers.build_onnxruntime(shape, layer, x, threads=1).run()[0]
    plain = small_shape("lstm")
    without = dict(layer.params)
    for name in ("weight_ci_l0", "weight_cf_l0", "weight_co_l0"):
        without.pop(name)
    plain_layer = plain.make_layer()
    plain_layer.params = without
    assert np.abs(peers.build_onnxruntime(plain, plain_layer, x, threads=1).run()[0]
                  - with_peepholes).max() > 1e-3


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_torch_peer_forward_matches_reference(cell):
    pytest.importorskip("torch")
    shape = small_shape(cell, peers_=("torch",))
    layer = shape.make_layer(seed=5)
    x, dy = shape.make_inputs(seed=6)
    contender = peers.build_torch(shape, layer, x, dy, threads=1)
    assert contender.available, contender.reason

    y_t, final_t = contender.run()
    y, final = reference_run(shape, layer, x)

    np.testing.assert_allclose(y_t.numpy(), y, rtol=0, atol=ATOL)
    for got, expected in zip(final_t if cell == "lstm" else (final_t,), final if cell == "lstm" else (final,)):
        np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=ATOL)


def test_peers_decline_what_they_cannot_run():
    peephole = small_shape("lstm", peers_=("torch",), peephole=True)
    layer = peephole.make_layer()
    x, dy = peephole.make_inputs()
    assert not peers.build_torch(peephole, layer, x, dy).available
    training = small_shape("gru", mode="training")
    layer = training.make_layer()
    x, dy = training.make_inputs()
    declined = peers.build_onnxruntime(training, layer, x, dy)
    assert declined.run is None and "inference" in declined.reason
