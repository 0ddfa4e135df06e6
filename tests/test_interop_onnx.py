"""fastlstm.interop.to_onnx / from_onnx against the real peers: ONNX Runtime running the exported
model, ONNX's own reference evaluator (float64, which ONNX Runtime does not run), and PyTorch's
modules and their ``torch.onnx.export`` files."""
import warnings

import numpy as np
import pytest

import fastlstm
from fastlstm.interop import from_onnx, to_onnx

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

# T ≠ B and I ≠ H (and D·H ≠ I), so that a swapped axis or a misplaced weight block cannot pass.
STEPS, BATCH, INPUTS, HIDDEN = 5, 3, 4, 3
# Some < T. Not 0: for an empty sequence ONNX Runtime 1.32 answers a zero final state where fastlstm
# (and PyTorch) answer the initial state.
LENGTHS = np.array([5, 2, 3])
ATOL = 1e-5     # float32 against float32 on O(1) values: a few ulps of each side's rounding

CLASSES = {"lstm": fastlstm.LSTM, "gru": fastlstm.GRU, "rnn": fastlstm.RNN}
# (cell, options, num_layers, bidirectional, batch_first): every option, and each of 1/2 layers,
# uni/bidirectional and time/batch-major, for every cell.
CASES = [
    ("lstm", {}, 1, False, False),
    ("lstm", {}, 2, True, True),
    ("lstm", {"peephole": True}, 2, True, False),
    ("lstm", {"peephole": True, "bias": False}, 1, False, True),
    ("gru", {"reset_after": True}, 2, False, True),
    ("gru", {"reset_after": False}, 2, True, False),
    ("gru", {"reset_after": False, "bias": False}, 1, True, True),
    ("rnn", {"nonlinearity": "tanh"}, 2, True, True),
    ("rnn", {"nonlinearity": "relu"}, 1, False, False),
    ("rnn", {"nonlinearity": "relu", "bias": False}, 2, True, False),
]


def case_id(case):
    cell, options, layers, bidirectional, batch_first = case
    words = [cell] + [f"{k}={v}" for k, v in options.items()] + [f"L{layers}"]
    return "-".join(words + (["bi"] if bidirectional else []) + (["batch_first"] if batch_first else []))


def make_layer(case, dtype="float32", seed=0, **extra):
    cell, options, layers, bidirectional, batch_first = case
    return CLASSES[cell](INPUTS, HIDDEN, layers, bidirectional=bidirectional, batch_first=batch_first,
                         dtype=dtype, seed=seed, **options, **extra)


def make_inputs(layer, dtype=np.float32, seed=1, steps=STEPS, batch=BATCH):
    """x in the layer's layout and a random initial state (a tuple for the LSTM)."""
    config = layer.config
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, steps, INPUTS) if config.batch_first else (steps, batch, INPUTS))
    states = [rng.standard_normal(config.state_shape(batch)).astype(dtype) for _ in range(config.cell.state_count)]
    return x.astype(dtype), tuple(states) if len(states) == 2 else states[0]


def state_parts(state):
    return state if isinstance(state, tuple) else (state,)


def session(model):
    return onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def feeds_for(x, state=None, lengths=None):
    """ONNX Runtime's feeds of a :func:`to_onnx` model."""
    feeds = {"X": x}
    if lengths is not None:
        feeds["sequence_lens"] = lengths.astype(np.int32)
    if state is not None:
        feeds.update(zip(("initial_h", "initial_c"), state_parts(state)))
    return feeds


def assert_outputs_equal(peer_outputs, y, final, atol=ATOL):
    np.testing.assert_allclose(y, peer_outputs[0], rtol=1e-5, atol=atol, err_msg="Y")
    finals = state_parts(final)
    assert len(peer_outputs) == 1 + len(finals)
    for name, ours, theirs in zip(("Y_h", "Y_c"), finals, peer_outputs[1:]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=atol, err_msg=name)


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("optional_inputs", [False, True], ids=["plain", "lengths_and_state"])
def test_exported_model_runs_in_onnxruntime_like_the_layer(case, optional_inputs):
    layer = make_layer(case)
    x, state = make_inputs(layer)
    lengths = LENGTHS if optional_inputs else None
    state = state if optional_inputs else None
    model = to_onnx(layer, sequence_lens=optional_inputs, initial_state=optional_inputs)

    outputs = session(model).run(None, feeds_for(x, state, lengths))
    y, final = layer.forward(x, state, lengths, training=False, tape=False)

    assert_outputs_equal(outputs, y, final)
    recurrent = [node for node in model.graph.node if node.op_type in ("LSTM", "GRU", "RNN")]
    assert len(recurrent) == layer.config.num_layers


def test_time_and_batch_are_symbolic():
    layer = make_layer(("lstm", {}, 2, True, True))
    model = to_onnx(layer)
    assert [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == ["B", "T", INPUTS]
    run = session(model)
    for steps, batch in [(STEPS, BATCH), (2, 1)]:
        x, _ = make_inputs(layer, steps=steps, batch=batch)
        assert_outputs_equal(run.run(None, {"X": x}), *layer.forward(x, training=False, tape=False))


def test_dropout_type_regularisers_export_the_inference_graph():
    layer = fastlstm.GRU(INPUTS, HIDDEN, 2, seed=0, dropout=0.5, input_dropout=0.3, recurrent_dropout=0.2,
                         weight_dropout=0.4)
    x, _ = make_inputs(layer)
    outputs = session(to_onnx(layer)).run(None, {"X": x})
    assert_outputs_equal(outputs, *layer.forward(x, training=False, tape=False))


@pytest.mark.parametrize("case", [CASES[2], CASES[5], CASES[7]], ids=case_id)
def test_float64_model_matches_onnx_reference_evaluator(case):
    """ONNX Runtime has no float64 LSTM/GRU/RNN kernels; ONNX's reference evaluator runs the DOUBLE
    model (it ignores sequence_lens and has no Relu, hence these cases and no lengths). The layer runs
    fastlstm's float64 reference backend (test_cpu_matches_reference ties the cpu kernels to it), which
    compiles nothing."""
    from onnx.reference import ReferenceEvaluator

    layer = make_layer(case, dtype="float64", backend="reference")
    x, state = make_inputs(layer, dtype=np.float64)
    model = to_onnx(layer, initial_state=True)
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.DOUBLE

    outputs = ReferenceEvaluator(model).run(None, feeds_for(x, state))
    assert_outputs_equal(outputs, *layer.forward(x, state, training=False, tape=False), atol=1e-12)


def test_float64_layer_exports_a_float32_model_for_onnxruntime():
    layer = make_layer(CASES[2], dtype="float64", backend="reference")
    x, state = make_inputs(layer, dtype=np.float64)
    model = to_onnx(layer, dtype="float32", initial_state=True)
    outputs = session(model).run(None, feeds_for(x.astype(np.float32), tuple(s.astype(np.float32)
                                                                          for s in state)))
    assert_outputs_equal(outputs, *layer.forward(x, state, training=False, tape=False))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_round_trip_is_bitwise(case, dtype, tmp_path):
    layer = make_layer(case, dtype=dtype)
    before = layer.state_dict()
    path = tmp_path / "layer.onnx"
    model = to_onnx(layer, path, sequence_lens=True, initial_state=True)
    onnx.checker.check_model(model, full_check=True)
    assert onnx.load(str(path)).SerializeToString() == model.SerializeToString()

    back = from_onnx(path)

    assert back.config == layer.config
    assert back.params.keys() == layer.params.keys()
    for name, value in layer.params.items():
        assert back.params[name].dtype == value.dtype and np.array_equal(back.params[name], value), name
        assert np.array_equal(value, before[name]), f"to_onnx modified {name}"


def test_from_onnx_converts_to_the_requested_dtype_and_backend():
    layer = make_layer(CASES[1])
    back = from_onnx(to_onnx(layer).SerializeToString(), dtype="float64", backend="reference")
    assert (back.config.dtype, back.config.backend) == (np.float64, "reference")
    for name, value in layer.params.items():
        assert back.params[name].dtype == np.float64 and np.array_equal(back.params[name], value), name


def test_zoneout_is_refused_by_name():
    with pytest.raises(ValueError, match="zoneout=0.1"):
        to_onnx(fastlstm.GRU(INPUTS, HIDDEN, zoneout=0.1))
    with pytest.raises(ValueError, match="zoneout_cell=0.2"):
        to_onnx(fastlstm.LSTM(INPUTS, HIDDEN, zoneout_cell=0.2))


def test_bad_arguments_are_refused():
    layer = fastlstm.LSTM(INPUTS, HIDDEN)
    with pytest.raises(TypeError, match="layer: expected a fastlstm"):
        to_onnx(object())
    with pytest.raises(ValueError, match="opset: expected an integer from 14"):
        to_onnx(layer, opset=13)
    with pytest.raises(TypeError, match="sequence_lens: expected True or False"):
        to_onnx(layer, sequence_lens="yes")
    layer.params = {name: value for name, value in layer.params.items() if name != "bias_hh_l0"}
    with pytest.raises(ValueError, match=r"layer.params: .*missing \['bias_hh_l0'\]"):
        to_onnx(layer)
    with pytest.raises(TypeError, match="path_or_model: expected a path"):
        from_onnx(42)


# --- models of PyTorch's exporter ------------------------------------------------------------

TORCH_CASES = [
    ("LSTM", {"num_layers": 2, "bidirectional": True}),
    ("GRU", {"num_layers": 2, "bidirectional": True}),
    ("RNN", {"num_layers": 2, "bidirectional": True, "nonlinearity": "relu"}),
    ("GRU", {"num_layers": 2, "batch_first": True}),
    ("RNN", {"bias": False}),
    ("LSTM", {"batch_first": True, "bias": False, "static": True}),
    ("LSTM", {"num_layers": 2, "bidirectional": True, "with_state": True}),
]


def torch_export(torch, module, args, path, input_names, output_names, dynamic_axes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # the exporter's notes on batch_first and the legacy API
        torch.onnx.export(module, args, str(path), dynamo=False, input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes)


@pytest.mark.parametrize("kind, options", TORCH_CASES,
                         ids=[f"{k}-" + "-".join(f"{a}={b}" for a, b in o.items()) for k, o in TORCH_CASES])
def test_torch_export_reads_back_as_the_same_layer(kind, options, tmp_path):
    torch = pytest.importorskip("torch")
    options = dict(options)
    static, with_state = options.pop("static", False), options.pop("with_state", False)
    torch.manual_seed(0)
    module = getattr(torch.nn, kind)(INPUTS, HIDDEN, **options).eval()
    batch_first = options.get("batch_first", False)
    directions = 2 if options.get("bidirectional") else 1
    rng = np.random.default_rng(2)
    x = rng.standard_normal((BATCH, STEPS, INPUTS) if batch_first else (STEPS, BATCH, INPUTS)).astype(np.float32)
    state_shape = (options.get("num_layers", 1) * directions, BATCH, HIDDEN)
    is_lstm = kind == "LSTM"
    state, state_names, args = None, [], (torch.from_numpy(x),)
    if with_state:
        parts = tuple(rng.standard_normal(state_shape).astype(np.float32) for _ in range(2 if is_lstm else 1))
        state = parts if is_lstm else parts[0]
        state_names = ["h0", "c0"][:len(parts)]
        torch_state = tuple(torch.from_numpy(part) for part in parts)
        args += (torch_state if is_lstm else torch_state[0],)
    dynamic_axes = None if static else {"x": {0: "B", 1: "T"} if batch_first else {0: "T", 1: "B"},
                                        **{name: {1: "B"} for name in state_names}}
    path = tmp_path / "torch.onnx"
    torch_export(torch, module, args, path, ["x", *state_names], ["y", "h", "c"][:3 if is_lstm else 2], dynamic_axes)

    layer = from_onnx(path)
    y, final = layer.forward(x, state, training=False, tape=False)

    assert (layer.config.num_layers, layer.config.bidirectional, layer.config.batch_first, layer.config.bias) == \
        (module.num_layers, module.bidirectional, module.batch_first, module.bias)
    feeds = {"x": x, **dict(zip(state_names, state_parts(state) if with_state else ()))}
    ort_outputs = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert_outputs_equal(ort_outputs, y, final)
    with torch.no_grad():
        y_t, final_t = module(*args)
    torch_outputs = [y_t.numpy()] + [s.numpy() for s in (final_t if is_lstm else (final_t,))]
    assert_outputs_equal(torch_outputs, y, final)


# --- refusals ---------------------------------------------------------------------------------

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def handmade_model(op_types=("LSTM", "LSTM"), hidden_sizes=(HIDDEN, HIDDEN), between=None, parallel=False,
                   weight_input=False, **attributes):
    """X -> node 0 -> Squeeze -> [``between``] -> node 1 ..., each node unidirectional, built with onnx.helper.

    ``parallel``: every node reads X (two chains); ``weight_input``: node 0's W is a graph input.
    """
    rng = np.random.default_rng(0)
    nodes, initializers = [], [numpy_helper.from_array(np.array([1], np.int64), "axis_1")]
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", INPUTS])]
    layer_input, input_size = "X", INPUTS
    for k, (op_type, hidden) in enumerate(zip(op_types, hidden_sizes)):
        rows = GATES[op_type] * hidden
        weights = {f"W{k}": rng.standard_normal((1, rows, input_size)), f"R{k}": rng.standard_normal((1, rows, hidden))}
        for name, value in weights.items():
            if weight_input and name == "W0":
                inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
            else:
                initializers.append(numpy_helper.from_array(value.astype(np.float32), name))
        nodes.append(helper.make_node(op_type, [layer_input, f"W{k}", f"R{k}"], [f"Y{k}", f"Y_h{k}"],
                                      name=f"{op_type.lower()}{k}", hidden_size=hidden, **attributes))
        nodes.append(helper.make_node("Squeeze", [f"Y{k}", "axis_1"], [f"S{k}"]))
        layer_input, input_size = f"S{k}", hidden
        if between == "MatMul":
            mixing = rng.standard_normal((hidden, hidden)).astype(np.float32)
            initializers.append(numpy_helper.from_array(mixing, f"M{k}"))
            nodes.append(helper.make_node("MatMul", [f"S{k}", f"M{k}"], [f"P{k}"]))
            layer_input = f"P{k}"
        if parallel:
            layer_input, input_size = "X", INPUTS
    graph = helper.make_graph(nodes, "handmade", inputs,
                              [helper.make_tensor_value_info(f"S{len(op_types) - 1}", TensorProto.FLOAT, None)],
                              initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=7)


def test_handmade_model_reads_back():
    """The builder below makes readable models: each refusal is the one change it names."""
    model = handmade_model()
    layer = from_onnx(model)
    assert (layer.config.num_layers, layer.config.bias, layer.config.cell.kind) == (2, False, "lstm")
    x, _ = make_inputs(layer)
    np.testing.assert_allclose(layer.forward(x, training=False, tape=False)[0], session(model).run(None, {"X": x})[0],
                               rtol=1e-5, atol=ATOL)


REFUSALS = [
    ({"clip": 3.0}, "clip=3.0"),
    ({"input_forget": 1}, "input_forget=1"),
    ({"layout": 1}, "layout=1"),
    ({"activations": ["Sigmoid", "Tanh", "Relu"]}, "activations="),
    ({"direction": "reverse"}, "direction='reverse'"),
    ({"between": "MatMul"}, "op MatMul computes"),
    ({"op_types": ("LSTM", "GRU")}, r"mixed recurrent cells \['GRU', 'LSTM'\]"),
    ({"hidden_sizes": (HIDDEN, HIDDEN + 1)}, "one hidden_size"),
    ({"parallel": True}, "one chain"),
    ({"weight_input": True}, "input W .* fixed weights"),
]


@pytest.mark.parametrize("changes, message", REFUSALS, ids=[
    "clip", "input_forget", "layout", "activations", "reverse", "matmul_between", "mixed_cells", "hidden_sizes",
    "two_chains", "weights_from_input"])
def test_unsupported_models_are_refused_by_name(changes, message):
    with pytest.raises(ValueError, match=message):
        from_onnx(handmade_model(**changes))
