"""ONNX models of one LSTM or GRU layer, built in memory with ``onnx.helper`` from a
fastlstm layer's parameters.

ONNX orders gates differently from PyTorch (and fastlstm): LSTM weights are stacked
i, o, f, c (PyTorch: i, f, g, o) and peepholes i, o, f; GRU weights z, r, h (PyTorch:
r, z, n). Biases are one vector per direction, ``[Wb, Rb]``. ``onnx`` is imported only
when a model is built.
"""
from __future__ import annotations

import numpy as np

# Row blocks of PyTorch's stacked weights, in ONNX's gate order.
LSTM_BLOCKS = (0, 3, 1, 2)   # i, o, f, c  <-  i, f, g, o
GRU_BLOCKS = (1, 0, 2)       # z, r, h     <-  r, z, n
OPSET = 14
# Pinned rather than onnx's newest, which an older onnxruntime refuses to load; IR 8 covers opset 14.
IR_VERSION = 8


def _reorder(array, blocks, hidden_size):
    """Stack the (hidden_size, ...) row blocks of ``array`` in the order ``blocks``."""
    return np.concatenate([array[b * hidden_size:(b + 1) * hidden_size] for b in blocks], axis=0)


def onnx_weights(cell, params, hidden_size, dtype=np.float32):
    """ONNX's ``W``, ``R``, ``B`` (and ``P``) inputs from layer 0's forward-direction parameters.

    Parameters
    ----------
    cell : {"lstm", "gru"}
    params : dict
        fastlstm/PyTorch names: ``weight_ih_l0`` (G·H, I), ``weight_hh_l0`` (G·H, H),
        ``bias_ih_l0``, ``bias_hh_l0`` (G·H,), and for peephole LSTMs ``weight_ci_l0``,
        ``weight_cf_l0``, ``weight_co_l0`` (H,).
    hidden_size : int
    dtype : numpy dtype of the results

    Returns
    -------
    dict
        ``W`` (1, G·H, I), ``R`` (1, G·H, H), ``B`` (1, 2·G·H), and ``P`` (1, 3·H) when the
        parameters have peepholes.
    """
    blocks = {"lstm": LSTM_BLOCKS, "gru": GRU_BLOCKS}[cell]
    H = hidden_size
    weights = {
        "W": _reorder(params["weight_ih_l0"], blocks, H)[None],
        "R": _reorder(params["weight_hh_l0"], blocks, H)[None],
        "B": np.concatenate([_reorder(params["bias_ih_l0"], blocks, H),
                             _reorder(params["bias_hh_l0"], blocks, H)])[None],
    }
    if cell == "lstm" and "weight_ci_l0" in params:
        weights["P"] = np.concatenate([params["weight_ci_l0"], params["weight_co_l0"],
                                       params["weight_cf_l0"]])[None]
    return {name: np.ascontiguousarray(value, dtype=dtype) for name, value in weights.items()}


def recurrent_model(cell, params, input_size, hidden_size, reset_after=True):
    """An ONNX model of one unidirectional LSTM or GRU layer, weights stored as initializers.

    Parameters
    ----------
    cell : {"lstm", "gru"}
    params : dict
        The layer's parameters (see :func:`onnx_weights`); a peephole LSTM's ``P`` comes
        from ``weight_ci_l0``, ``weight_cf_l0``, ``weight_co_l0``.
    input_size, hidden_size : int
    reset_after : bool
        GRU only: ``True`` is ONNX ``linear_before_reset=1`` (PyTorch's GRU), ``False`` is
        ``linear_before_reset=0`` (Cho et al. 2014).

    Returns
    -------
    onnx.ModelProto
        Input ``X`` float32 (T, B, I) with symbolic T and B; outputs ``Y`` (T, 1, B, H),
        ``Y_h`` (1, B, H) and, for the LSTM, ``Y_c`` (1, B, H).
    """
    from onnx import TensorProto, checker, helper, numpy_helper

    weights = onnx_weights(cell, params, hidden_size)
    # Optional ONNX inputs are positional; an empty name leaves one out.
    if cell == "lstm":
        op_inputs = ["X", "W", "R", "B", "", "", "", "P" if "P" in weights else ""]
        outputs = ["Y", "Y_h", "Y_c"]
        attributes = {}
    elif cell == "gru":
        op_inputs = ["X", "W", "R", "B"]
        outputs = ["Y", "Y_h"]
        attributes = {"linear_before_reset": int(bool(reset_after))}
    else:
        raise ValueError(f"cell: ONNX models exist for 'lstm' and 'gru', got {cell!r}")
    while op_inputs[-1] == "":
        op_inputs.pop()
    node = helper.make_node(cell.upper(), op_inputs, outputs, hidden_size=hidden_size,
                            direction="forward", **attributes)
    state_shape = [1, "B", hidden_size]
    graph = helper.make_graph(
        [node], f"fastlstm_{cell}",
        inputs=[helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", input_size])],
        outputs=[helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", 1, "B", hidden_size])]
        + [helper.make_tensor_value_info(name, TensorProto.FLOAT, state_shape) for name in outputs[1:]],
        initializer=[numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION, producer_name="fastlstm.benchmark")
    checker.check_model(model)
    return model
