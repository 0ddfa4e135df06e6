"""fastlstm layers to ONNX models (:func:`to_onnx`) and back (:func:`from_onnx`).

A layer of L stacked layers becomes L ONNX ``LSTM``/``GRU``/``RNN`` nodes, one per layer
(both directions in one node, ``direction="bidirectional"``), with the shaping nodes between
them: a node's ``Y`` is (T, D, B, H) and the next node reads (T, B, D·H). The weights are
initializers in ONNX's gate orders (:mod:`fastlstm.interop.gates`): LSTM i, o, f, c and
peepholes ``P`` = [i, o, f]; GRU z, r, h; ``B`` = [Wb, Rb] per direction.

:func:`from_onnx` reads such models back, and those of ``torch.onnx.export(..., dynamo=False)``
for ``nn.LSTM``/``nn.GRU``/``nn.RNN``: one chain of recurrent nodes of one kind, every other node
only shaping or routing tensors. It runs the graph's routing nodes in ONNX's reference evaluator
(``onnx.reference``) with the recurrent nodes replaced by recorders that return distinct probe
values; from what each node receives it reads its (folded) weights and checks that the first
node reads the graph input (or its (B, T) transpose: ``batch_first``), that each further node
reads the previous one's output laid out as (T, B, D·H), and how the initial states and the
sequence lengths reach each node.

ONNX Runtime (1.32) runs the LSTM, GRU and RNN nodes in float32 only: a float64 layer's model
(``DOUBLE`` tensors) is valid ONNX and runs in ``onnx.reference``, but ONNX Runtime's CPU
provider refuses it ("LSTM operator does not support double yet"); ``to_onnx(layer,
dtype="float32")`` writes a float32 model of a float64 layer.

``onnx`` is imported only inside these functions.
"""
from __future__ import annotations

import os

import numpy as np

from ..validation import check_bool, check_names, resolve_dtype
from .gates import from_peer, to_peer

#: The opset written by default: the oldest with ``layout`` on LSTM/GRU/RNN (14), so that older
#: ONNX Runtimes load the model too; the IR version is the oldest that opset needs.
OPSET = 14
MIN_OPSET = 14

OP_TYPES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
CELL_KINDS = {op: kind for kind, op in OP_TYPES.items()}
#: Each recurrent op's inputs, by position (ONNX's names).
NODE_INPUTS = {
    "LSTM": ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"),
    "GRU": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
    "RNN": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
}
WEIGHT_INPUTS = ("W", "R", "B", "P")
STATE_INPUTS = {"LSTM": ("initial_h", "initial_c"), "GRU": ("initial_h",), "RNN": ("initial_h",)}
#: The activations fastlstm's cells apply, per direction, in ONNX's spelling (lower-cased).
DEFAULT_ACTIVATIONS = {"LSTM": ("sigmoid", "tanh", "tanh"), "GRU": ("sigmoid", "tanh"), "RNN": ("tanh",)}
RNN_NONLINEARITIES = ("tanh", "relu")
#: Ops that only shape, route or convert tensors; any other op in a graph is refused.
#: (``Dropout`` is the identity in inference, which is what ONNX Runtime runs.)
ROUTING_OPS = frozenset({
    "Transpose", "Squeeze", "Unsqueeze", "Reshape", "Flatten", "Concat", "Split", "Slice", "Gather",
    "Shape", "Size", "Constant", "ConstantOfShape", "Expand", "Identity", "Cast", "Dropout",
})


# ---------------------------------------------------------------------------------------------
# fastlstm -> ONNX
# ---------------------------------------------------------------------------------------------

def to_onnx(layer, path=None, *, opset=OPSET, sequence_lens=False, initial_state=False, dtype=None):
    """An ONNX model of ``layer``'s inference (``layer.forward(..., training=False)``).

    Parameters
    ----------
    layer : fastlstm.LSTM, fastlstm.GRU or fastlstm.RNN
        Any ``num_layers``, ``bidirectional``, ``batch_first``, ``bias``, peepholes, GRU
        ``reset_after`` and RNN ``nonlinearity``. Dropout-type regularisers (``dropout``,
        ``input_dropout``, ``recurrent_dropout``, ``weight_dropout``) act in training only and
        are left out (whatever the layer's training mode); ``zoneout``/``zoneout_cell`` change
        the inference too and are refused.
    path : str or os.PathLike, optional
        Also save the model there (``onnx.save``).
    opset : int, default 14
        The ``ai.onnx`` opset; from 14 to the installed ``onnx``'s newest.
    sequence_lens : bool, default False
        Add the graph input ``sequence_lens`` int32 (B,): each sequence's valid steps, as
        fastlstm's ``lengths`` (outputs past a sequence's end are 0, its final state is the one
        after its last valid step). For a sequence of length 0 ONNX Runtime (1.32) answers a
        zero final state where fastlstm answers the initial state.
    initial_state : bool, default False
        Add the graph inputs ``initial_h`` (and, for the LSTM, ``initial_c``), each
        (num_layers·D, B, H): fastlstm's ``state``. Without them every layer starts from zeros.
    dtype : {"float32", "float64"} or None
        The model's float type; ``None`` is the layer's. ONNX Runtime runs float32 only.

    Returns
    -------
    onnx.ModelProto
        Graph inputs ``X`` (T, B, I), or (B, T, I) with ``batch_first`` (a Transpose feeds the
        first node), and the optional ones above; outputs ``Y`` (T, B, D·H), or (B, T, D·H) with
        ``batch_first``, ``Y_h`` (num_layers·D, B, H) and, for the LSTM, ``Y_c`` likewise. T and
        B are symbolic. One recurrent node per layer, named ``LSTM_l{k}`` (``GRU_l{k}``,
        ``RNN_l{k}``), its weights the initializers ``W_l{k}`` (D, G·H, I_k), ``R_l{k}``
        (D, G·H, H), ``B_l{k}`` (D, 2·G·H; left out with ``bias=False``) and ``P_l{k}``
        (D, 3·H; peephole LSTMs).

    Raises
    ------
    TypeError
        ``layer`` is not a fastlstm layer, or an option has the wrong type.
    ValueError
        The layer has zoneout, its parameters do not have the layer's names and shapes, or
        ``opset`` is out of range.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    config = _exportable_config(layer)
    opset = _check_opset(opset, onnx)
    sequence_lens = check_bool("sequence_lens", sequence_lens)
    initial_state = check_bool("initial_state", initial_state)
    dtype = config.dtype if dtype is None else resolve_dtype(dtype)
    params = _checked_params(layer, config)

    op_type = OP_TYPES[config.cell.kind]
    hidden, directions, layers = config.hidden_size, config.directions, config.num_layers
    element = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    nodes, initializers = [], []

    constants = set()

    def int64_constant(name, values):
        if name not in constants:
            constants.add(name)
            initializers.append(numpy_helper.from_array(np.asarray(values, np.int64), name))
        return name

    x_dims = ["B", "T", config.input_size] if config.batch_first else ["T", "B", config.input_size]
    graph_inputs = [helper.make_tensor_value_info("X", element, x_dims)]
    layer_input = "X"
    if config.batch_first:
        nodes.append(helper.make_node("Transpose", ["X"], ["X_time_major"], perm=[1, 0, 2]))
        layer_input = "X_time_major"
    lengths = ""
    if sequence_lens:
        graph_inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["B"]))
        lengths = "sequence_lens"
    state_names = STATE_INPUTS[op_type]
    state_dims = [layers * directions, "B", hidden]
    if initial_state:
        graph_inputs += [helper.make_tensor_value_info(name, element, state_dims) for name in state_names]
    final_names = ("Y_h", "Y_c")[:len(state_names)]

    for k in range(layers):
        weights = _onnx_weights(config, params, k, dtype)
        initializers += [numpy_helper.from_array(value, f"{name}_l{k}") for name, value in weights.items()]
        states = [_layer_state(nodes, int64_constant, name, k, directions, layers) if initial_state else ""
                  for name in state_names]
        op_inputs = [layer_input, f"W_l{k}", f"R_l{k}", f"B_l{k}" if "B" in weights else "", lengths, *states,
                     f"P_l{k}" if "P" in weights else ""]
        while op_inputs[-1] == "":          # optional inputs are positional; trailing ones are left out
            op_inputs.pop()
        finals = list(final_names) if layers == 1 else [f"{name}_l{k}" for name in final_names]
        nodes.append(helper.make_node(op_type, op_inputs, [f"Y_l{k}", *finals], name=f"{op_type}_l{k}",
                                      hidden_size=hidden, **_node_attributes(config)))
        last = k == layers - 1
        layer_input = "Y" if last else f"X_l{k + 1}"
        _merge_directions(nodes, int64_constant, f"Y_l{k}", layer_input, directions, hidden,
                          batch_first=last and config.batch_first)
    if layers > 1:
        nodes += [helper.make_node("Concat", [f"{name}_l{k}" for k in range(layers)], [name], axis=0)
                  for name in final_names]

    y_dims = ["B", "T", config.output_size] if config.batch_first else ["T", "B", config.output_size]
    graph = helper.make_graph(
        nodes, f"fastlstm_{config.cell.kind}", graph_inputs,
        [helper.make_tensor_value_info("Y", element, y_dims)]
        + [helper.make_tensor_value_info(name, element, state_dims) for name in final_names],
        initializer=initializers, doc_string=repr(layer))
    opset_imports = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opset_imports, producer_name="fastlstm",
                              ir_version=helper.find_min_ir_version_for(opset_imports))
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model


def _exportable_config(layer):
    from ..layers import GRU, LSTM, RNN

    if not isinstance(layer, (LSTM, GRU, RNN)):
        raise TypeError(f"layer: expected a fastlstm.LSTM, GRU or RNN, got {type(layer).__name__}")
    config = layer.config
    for name in ("zoneout", "zoneout_cell"):
        rate = getattr(config.regularisation, name)
        if rate:
            raise ValueError(
                f"layer: {name}={rate}: in inference a zoned-out layer keeps a mix of each state and its "
                f"previous value (p·h_(t-1) + (1 - p)·h_t), which ONNX's {OP_TYPES[config.cell.kind]} node "
                f"cannot express; export a layer without {name}")
    return config


def _check_opset(opset, onnx):
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, (bool, np.bool_)) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"opset: expected an integer from {MIN_OPSET} to {newest}, got {opset!r}")
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset: expected an integer from {MIN_OPSET} to {newest} (the installed onnx's "
                         f"newest), got {opset}")
    return int(opset)


def _checked_params(layer, config):
    """``layer.params`` as arrays, checked against the layer's names and shapes."""
    params = layer.params
    expected = config.parameter_shapes()
    check_names("layer.params", params, expected)
    arrays = {name: np.asarray(params[name]) for name in expected}
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise ValueError(f"layer.params[{name!r}]: expected shape {shape}, got {arrays[name].shape}")
    return arrays


def _onnx_weights(config, params, layer, dtype):
    """ONNX's ``W``, ``R`` and, when the layer has them, ``B`` and ``P`` of stacked layer ``layer``.

    Returns
    -------
    dict
        ``W`` (D, G·H, I_k), ``R`` (D, G·H, H), ``B`` (D, 2·G·H), ``P`` (D, 3·H), each in ONNX's gate
        order, of ``dtype``.
    """
    kind, hidden = config.cell.kind, config.hidden_size
    suffixes = [config.suffix(layer, d) for d in range(config.directions)]

    def onnx_order(name):
        return np.stack([to_peer(params[name + s], kind, "onnx", hidden) for s in suffixes])

    weights = {"W": onnx_order("weight_ih"), "R": onnx_order("weight_hh")}
    if config.bias:
        weights["B"] = np.concatenate([onnx_order("bias_ih"), onnx_order("bias_hh")], axis=1)
    if config.cell.vector_names:
        weights["P"] = np.stack([
            to_peer(np.concatenate([params[f"weight_c{gate}{s}"] for gate in "ifo"]), "peepholes", "onnx", hidden)
            for s in suffixes])
    return {name: np.ascontiguousarray(value, dtype=dtype) for name, value in weights.items()}


def _node_attributes(config):
    """The recurrent node's attributes besides ``hidden_size``."""
    attributes = {"direction": "bidirectional" if config.bidirectional else "forward"}
    cell = config.cell
    if cell.kind == "gru":
        attributes["linear_before_reset"] = int(cell.reset_after)
    if cell.kind == "rnn" and cell.nonlinearity == "relu":
        attributes["activations"] = ["Relu"] * config.directions
    return attributes


def _layer_state(nodes, int64_constant, name, layer, directions, layers):
    """Layer ``layer``'s rows [layer·D, (layer + 1)·D) of the graph input ``name`` (the input itself
    for one layer)."""
    from onnx import helper

    if layers == 1:
        return name
    sliced = f"{name}_l{layer}"
    nodes.append(helper.make_node(
        "Slice", [name, int64_constant(f"{sliced}_start", [layer * directions]),
                  int64_constant(f"{sliced}_end", [(layer + 1) * directions]), int64_constant("axis_0", [0])],
        [sliced]))
    return sliced


def _merge_directions(nodes, int64_constant, source, target, directions, hidden, batch_first):
    """Nodes laying ONNX's ``Y`` (T, D, B, H) out as (T, B, D·H), or (B, T, D·H) with ``batch_first``."""
    from onnx import helper

    if directions == 1:
        time_major = target + "_time_major" if batch_first else target
        nodes.append(helper.make_node("Squeeze", [source, int64_constant("axis_1", [1])], [time_major]))
        if batch_first:
            nodes.append(helper.make_node("Transpose", [time_major], [target], perm=[1, 0, 2]))
        return
    transposed = source + "_transposed"
    nodes.append(helper.make_node("Transpose", [source], [transposed],
                                  perm=[2, 0, 1, 3] if batch_first else [0, 2, 1, 3]))
    nodes.append(helper.make_node("Reshape", [transposed, int64_constant("merged_shape", [0, 0, directions * hidden])],
                                  [target]))


# ---------------------------------------------------------------------------------------------
# ONNX -> fastlstm
# ---------------------------------------------------------------------------------------------

def from_onnx(path_or_model, *, dtype=None, backend="cpu"):
    """A trainable fastlstm layer computing what an ONNX model of recurrent nodes computes.

    Parameters
    ----------
    path_or_model : str, os.PathLike, bytes or onnx.ModelProto
        A model whose recurrent nodes are ``LSTM``, ``GRU`` or ``RNN`` (all of one kind, one
        node per stacked layer, node k reading node k−1's output) and whose other nodes only
        shape or route tensors (Transpose, Squeeze, Unsqueeze, Reshape, Concat, Slice, Gather,
        Shape, Constant, ConstantOfShape, Expand, Identity, Cast, ...): what :func:`to_onnx`
        writes, and what ``torch.onnx.export(module, ..., dynamo=False)`` writes for
        ``nn.LSTM``/``nn.GRU``/``nn.RNN``. Weights may be initializers or computed from
        constants by such nodes.
    dtype : {"float32", "float64"} or None
        The layer's dtype; ``None`` takes the weights' (float32 or float64).
    backend : {"cpu", "reference", "cuda"}, default "cpu"

    Returns
    -------
    fastlstm.LSTM, fastlstm.GRU or fastlstm.RNN
        ``num_layers`` the number of nodes; ``bidirectional`` from ``direction``;
        ``batch_first`` when a Transpose of the graph input feeds the first node; ``bias``
        when a node has ``B`` (nodes without it get zero biases); ``peephole`` when an LSTM
        node has ``P``; GRU ``reset_after`` from ``linear_before_reset``; RNN ``nonlinearity``
        from ``activations``. The graph input feeding the first node's ``X`` is the layer's
        ``x``, the one feeding ``sequence_lens`` its ``lengths``, and those feeding ``initial_h``
        (``initial_c``), sliced per layer, its ``state``; where a node's initial state is
        absent or zero the layer's ``state=None`` reproduces it.

    Raises
    ------
    TypeError
        ``path_or_model`` is none of the accepted types.
    ValueError
        The model holds what fastlstm does not implement, named: ``clip``, activations other
        than the cell's own (and RNN ``Relu``), ``input_forget=1``, ``layout=1``,
        ``direction="reverse"``, recurrent nodes of mixed kinds or hidden sizes, any op that
        computes (Add, MatMul, ...), weights computed from graph inputs, initial states or
        lengths that are not one graph input for every node, or recurrent nodes that do not
        form one chain.
    """
    import fastlstm

    model = _load_model(path_or_model)
    graph = model.graph
    recurrent = _recurrent_nodes(graph)
    op_type = recurrent[0].op_type
    options = [_node_options(node) for node in recurrent]
    _check_same(recurrent, options)
    _check_constant_weights(graph, recurrent)
    records, probes = _trace(model, recurrent)

    directions = 2 if options[0]["direction"] == "bidirectional" else 1
    batch_first = _check_chain(recurrent, records, probes)
    hidden = _checked_weights(recurrent, records, options, directions)
    _check_shared_inputs(recurrent, records, probes, directions)

    weight_dtype = records[0]["W"].dtype
    if dtype is None:
        if weight_dtype not in (np.float32, np.float64):
            raise ValueError(f"path_or_model: the weights are {weight_dtype}; pass dtype='float32' or "
                             f"'float64' to convert them")
        dtype = weight_dtype.name
    kind = CELL_KINDS[op_type]
    cell_options = {}
    if kind == "lstm":
        cell_options["peephole"] = any(record["P"] is not None for record in records)
    elif kind == "gru":
        cell_options["reset_after"] = options[0]["linear_before_reset"] == 1
    else:
        cell_options["nonlinearity"] = options[0]["nonlinearity"]
    bias = any(record["B"] is not None for record in records)
    layer = {"lstm": fastlstm.LSTM, "gru": fastlstm.GRU, "rnn": fastlstm.RNN}[kind](
        records[0]["W"].shape[2], hidden, len(recurrent), bidirectional=directions == 2, batch_first=batch_first,
        bias=bias, dtype=dtype, backend=backend, **cell_options)
    layer.load_state_dict(_fastlstm_params(layer.config, records))
    return layer


def _load_model(path_or_model):
    import onnx

    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model
    if isinstance(path_or_model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(path_or_model))
    if isinstance(path_or_model, (str, os.PathLike)):
        return onnx.load(os.fspath(path_or_model))
    raise TypeError(f"path_or_model: expected a path, the bytes of a model or an onnx.ModelProto, "
                    f"got {type(path_or_model).__name__}")


def _describe(node):
    return f"{node.op_type} node {node.name!r}" if node.name else f"{node.op_type} node (outputs {list(node.output)})"


def _recurrent_nodes(graph):
    """The graph's recurrent nodes, in graph order; refuses every op that is neither recurrent nor routing."""
    recurrent = []
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise ValueError(f"{_describe(node)} of domain {node.domain!r}: from_onnx reads only standard "
                             f"ai.onnx recurrent and routing nodes")
        if node.op_type in CELL_KINDS:
            recurrent.append(node)
        elif node.op_type not in ROUTING_OPS:
            raise ValueError(
                f"{_describe(node)}: op {node.op_type} computes; from_onnx reads models whose nodes are LSTM, "
                f"GRU or RNN and, around them, only ops that shape or route tensors ({sorted(ROUTING_OPS)})")
    if not recurrent:
        raise ValueError("path_or_model: the graph has no LSTM, GRU or RNN node")
    kinds = sorted({node.op_type for node in recurrent})
    if len(kinds) > 1:
        raise ValueError(f"path_or_model: mixed recurrent cells {kinds}; a fastlstm layer stacks one kind of cell")
    return recurrent


def _node_options(node):
    """The recurrent node's direction, hidden_size and cell options; refuses what fastlstm does not implement."""
    from onnx import helper

    attributes = {}
    for attribute in node.attribute:
        value = helper.get_attribute_value(attribute)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list):
            value = [v.decode() if isinstance(v, bytes) else v for v in value]
        attributes[attribute.name] = value
    where = _describe(node)
    if "clip" in attributes:
        raise ValueError(f"{where}: clip={attributes['clip']}: fastlstm's cells do not clip their gate inputs")
    if attributes.get("input_forget", 0):
        raise ValueError(f"{where}: input_forget={attributes['input_forget']} (coupled input and forget gates): "
                         f"fastlstm's LSTM has independent gates")
    if attributes.get("layout", 0):
        raise ValueError(f"{where}: layout={attributes['layout']} (batch-major X, Y and states inside the node) "
                         f"is not read; export with layout=0 (the default)")
    direction = attributes.get("direction", "forward")
    if direction not in ("forward", "bidirectional"):
        raise ValueError(f"{where}: direction={direction!r}: fastlstm layers run 'forward' or 'bidirectional'")
    options = {"direction": direction, "hidden_size": attributes.get("hidden_size"),
               "linear_before_reset": attributes.get("linear_before_reset", 0)}
    defaults = DEFAULT_ACTIVATIONS[node.op_type]
    activations = [name.lower() for name in attributes.get("activations", [])] or list(defaults)
    groups = [tuple(activations[i:i + len(defaults)]) for i in range(0, len(activations), len(defaults))]
    if node.op_type == "RNN":
        allowed = [(name,) for name in RNN_NONLINEARITIES]
        options["nonlinearity"] = groups[0][0]
    else:
        allowed = [defaults]
    if len(activations) % len(defaults) or any(group not in allowed or group != groups[0] for group in groups):
        expected = " or ".join(str(list(a) * (2 if direction == "bidirectional" else 1)) for a in allowed)
        raise ValueError(f"{where}: activations={attributes['activations']}: fastlstm's {node.op_type} applies "
                         f"{expected} (case-insensitive), the same in both directions")
    return options


def _check_same(recurrent, options):
    """Every node has the first node's direction and cell options."""
    for node, node_options in zip(recurrent[1:], options[1:]):
        for name in ("direction", "linear_before_reset", "nonlinearity"):
            if node_options.get(name) != options[0].get(name):
                raise ValueError(f"{_describe(node)}: {name}={node_options.get(name)!r}, but "
                                 f"{_describe(recurrent[0])} has {options[0].get(name)!r}: a fastlstm layer "
                                 f"has one {name} for all its layers")


def _check_constant_weights(graph, recurrent):
    """Every recurrent node's W, R, B and P depend on constants only (not on graph inputs or other nodes)."""
    constant = {initializer.name for initializer in graph.initializer}
    recurrent_ids = {id(node) for node in recurrent}
    for node in graph.node:
        if id(node) in recurrent_ids:
            for name, tensor in zip(NODE_INPUTS[node.op_type], node.input):
                if name in WEIGHT_INPUTS and tensor and tensor not in constant:
                    raise ValueError(f"{_describe(node)}: its input {name} ({tensor!r}) is computed from graph "
                                     f"inputs or other nodes' outputs; fastlstm's parameters are fixed weights")
        elif all(tensor in constant for tensor in node.input if tensor):
            constant.update(node.output)


def _trace(model, recurrent):
    """Run the graph in ``onnx.reference`` with recorders in place of the recurrent nodes.

    Every graph input is fed a probe of distinct values (integers + 0.5 for floats); each
    recorder returns fresh distinct probes for ``Y`` (T, D, B, H), ``Y_h`` and ``Y_c``
    (D, B, H).

    Returns
    -------
    records : list of dict
        Per recurrent node (graph order): the value each of its inputs received (None where
        absent), by ONNX's input name.
    probes : dict
        ``"inputs"``: graph input name -> its probe; ``"outputs"``: per recurrent node, its
        ``Y`` probe.
    """
    from onnx import helper
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.op_run import OpRun

    counter = [0]

    def fresh(shape, dtype):
        size = int(np.prod(shape, dtype=np.int64))
        values = np.arange(counter[0], counter[0] + size).reshape(shape)
        counter[0] += size
        return (values + 0.5).astype(dtype) if np.issubdtype(dtype, np.floating) else values.astype(dtype)

    records, outputs = [], []

    class Recorder(OpRun):
        op_domain = ""

        def _run(self, *inputs, **attributes):
            node = self.onnx_node
            values = dict.fromkeys(NODE_INPUTS[node.op_type])
            values.update({name: value for name, value in zip(NODE_INPUTS[node.op_type], inputs)
                           if value is not None})
            x, w, r = values["X"], values["W"], values["R"]
            if np.ndim(x) != 3 or np.ndim(w) != 3 or np.ndim(r) != 3:
                raise ValueError(f"{_describe(node)}: expected X (T, B, I), W (D, G·H, I) and R (D, G·H, H), got "
                                 f"shapes {np.shape(x)}, {np.shape(w)}, {np.shape(r)}")
            steps, batch = x.shape[:2]
            directions, hidden = w.shape[0], r.shape[2]
            records.append(values)
            y = fresh((steps, directions, batch, hidden), x.dtype)
            outputs.append(y)
            results = [y] + [fresh((directions, batch, hidden), x.dtype) for _ in STATE_INPUTS[node.op_type]]
            return tuple(results[:len(node.output)])

    recorders = [type(op, (Recorder,), {}) for op in CELL_KINDS]
    initializers = {initializer.name for initializer in model.graph.initializer}
    sizes = {}
    feeds = {}
    for value_info in model.graph.input:
        if value_info.name in initializers:
            continue
        tensor_type = value_info.type.tensor_type
        if not value_info.type.HasField("tensor_type") or not tensor_type.HasField("shape"):
            raise ValueError(f"path_or_model: graph input {value_info.name!r} declares no tensor shape; from_onnx "
                             f"runs the graph's routing on inputs of the declared shapes")
        shape = []
        for dim in tensor_type.shape.dim:
            if dim.HasField("dim_value") and dim.dim_value > 0:
                shape.append(dim.dim_value)
            else:                                   # symbolic: distinct sizes from 2 up, one per name
                key = dim.dim_param or object()
                shape.append(sizes.setdefault(key, 2 + len(sizes)))
        feeds[value_info.name] = fresh(tuple(shape), helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
    try:
        ReferenceEvaluator(model, new_ops=recorders).run(None, feeds)
    except ValueError:
        raise
    except Exception as error:      # the routing does not run on inputs of the declared shapes
        raise ValueError(f"path_or_model: the graph's routing nodes fail on inputs of the declared shapes "
                         f"{ {name: probe.shape for name, probe in feeds.items()} }: {error}") from error
    if len(records) != len(recurrent):
        raise ValueError(f"path_or_model: {len(recurrent)} recurrent nodes, but {len(records)} ran")
    return records, {"inputs": feeds, "outputs": outputs}


def _checked_weights(recurrent, records, options, directions):
    """Check every node's weight shapes (and hidden_size) against the first node's; returns H."""
    hidden = records[0]["R"].shape[2]
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[recurrent[0].op_type]
    for k, (node, record, node_options) in enumerate(zip(recurrent, records, options)):
        where = _describe(node)
        if node_options["hidden_size"] is not None and node_options["hidden_size"] != record["R"].shape[2]:
            raise ValueError(f"{where}: hidden_size={node_options['hidden_size']}, but R is "
                             f"{record['R'].shape}")
        if record["R"].shape[2] != hidden:
            raise ValueError(f"{where}: hidden_size {record['R'].shape[2]}, but {_describe(recurrent[0])} has "
                             f"{hidden}: a fastlstm layer has one hidden_size for all its layers")
        inputs = record["W"].shape[2] if k == 0 else directions * hidden
        expected = {"W": (directions, gates * hidden, inputs), "R": (directions, gates * hidden, hidden),
                    "B": (directions, 2 * gates * hidden), "P": (directions, 3 * hidden)}
        for name, shape in expected.items():
            value = record.get(name)
            if value is not None and value.shape != shape:
                raise ValueError(f"{where}: expected {name} of shape {shape} (direction={node_options['direction']!r},"
                                 f" hidden_size={hidden}), got {value.shape}")
    return hidden


def _time_major(y_probe):
    """ONNX's Y (T, D, B, H) laid out as the next layer reads it, (T, B, D·H)."""
    steps, directions, batch, hidden = y_probe.shape
    return y_probe.transpose(0, 2, 1, 3).reshape(steps, batch, directions * hidden)


def _equal(a, b):
    return a is not None and b is not None and a.shape == b.shape and np.array_equal(a, b)


def _check_chain(recurrent, records, probes):
    """Node 0 reads a graph input (as (T, B, I) or transposed from (B, T, I)), each further node the
    previous node's Y as (T, B, D·H). Returns batch_first."""
    graph_inputs = probes["inputs"]
    x = records[0]["X"]
    batch_first = None
    for probe in graph_inputs.values():
        if _equal(x, probe):
            batch_first = False
        elif probe.ndim == 3 and _equal(x, probe.transpose(1, 0, 2)):
            batch_first = True
        if batch_first is not None:
            break
    if batch_first is None:
        raise ValueError(f"{_describe(recurrent[0])}: its X is not a graph input as (T, B, I), nor one as "
                         f"(B, T, I) transposed: from_onnx reads models whose first recurrent node reads the "
                         f"graph's input")
    for k in range(1, len(recurrent)):
        if not _equal(records[k]["X"], _time_major(probes["outputs"][k - 1])):
            raise ValueError(
                f"{_describe(recurrent[k])}: its X is not {_describe(recurrent[k - 1])}'s output Y laid out as "
                f"(T, B, D·H): from_onnx reads one chain of recurrent nodes, each reading the previous one's "
                f"output (more than one chain, or a routing that changes the values, is not a fastlstm layer)")
    return batch_first


def _check_shared_inputs(recurrent, records, probes, directions):
    """``sequence_lens`` is absent from every node or one graph input for all; each initial state is
    absent or zero for every node, or layer k's slice of one (L·D, B, H) graph input for node k."""
    graph_inputs = probes["inputs"]
    sources = {}
    for k, (node, record) in enumerate(zip(recurrent, records)):
        where = _describe(node)
        lengths = record["sequence_lens"]
        if lengths is not None:
            names = [name for name, probe in graph_inputs.items() if _equal(lengths, probe)]
            if not names:
                raise ValueError(f"{where}: its sequence_lens is not a graph input; fastlstm takes lengths "
                                 f"per call (lengths=)")
            sources.setdefault("sequence_lens", {})[k] = names[0]
        for state in STATE_INPUTS[node.op_type]:
            value = record[state]
            if value is None or not np.any(value):
                continue
            rows = slice(k * directions, (k + 1) * directions)
            names = [name for name, probe in graph_inputs.items()
                     if probe.ndim == 3 and probe.shape[0] == len(recurrent) * directions
                     and _equal(value, probe[rows])]
            if not names:
                raise ValueError(
                    f"{where}: its {state} is neither zero nor rows [{rows.start}:{rows.stop}] of a graph input of "
                    f"shape (num_layers·D, B, H): a fastlstm layer takes one initial state for all its layers")
            sources.setdefault(state, {})[k] = names[0]
    for state, per_node in sources.items():
        if len(per_node) != len(recurrent) or len(set(per_node.values())) != 1:
            fed = {_describe(recurrent[k]): name for k, name in per_node.items()}
            raise ValueError(f"{state}: graph inputs feed {fed}, but not one graph input every recurrent node: a "
                             f"fastlstm layer takes {state.replace('initial_', 'one ')} for all its layers")


def _fastlstm_params(config, records):
    """fastlstm's parameters (PyTorch's names and gate order) from each node's ONNX weights."""
    kind, hidden = config.cell.kind, config.hidden_size
    gate_rows = config.cell.gates * hidden
    params = {}
    for k, record in enumerate(records):
        for d in range(config.directions):
            suffix = config.suffix(k, d)
            params["weight_ih" + suffix] = from_peer(record["W"][d], kind, "onnx", hidden)
            params["weight_hh" + suffix] = from_peer(record["R"][d], kind, "onnx", hidden)
            if config.bias:
                bias = record["B"][d] if record["B"] is not None else np.zeros(2 * gate_rows, record["W"].dtype)
                params["bias_ih" + suffix] = from_peer(bias[:gate_rows], kind, "onnx", hidden)
                params["bias_hh" + suffix] = from_peer(bias[gate_rows:], kind, "onnx", hidden)
            if config.cell.vector_names:
                peepholes = record["P"][d] if record["P"] is not None else np.zeros(3 * hidden, record["W"].dtype)
                for gate, vector in zip("ifo", np.split(from_peer(peepholes, "peepholes", "onnx", hidden), 3)):
                    params[f"weight_c{gate}{suffix}"] = vector
    return params
