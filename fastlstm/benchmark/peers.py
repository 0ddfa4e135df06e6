"""Contenders: zero-argument callables that run one benchmarked step of a shape.

``build_fastlstm`` runs the fastlstm layer; ``build_torch`` and ``build_onnxruntime`` run
PyTorch and ONNX Runtime with the same weights (copied from ``layer.params``), the same
inputs and the same thread count as Numba. A peer that cannot run (package missing,
cell not supported) comes back with ``run=None`` and the reason. PyTorch and ONNX Runtime
are imported only inside the builders.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .shapes import BenchShape


@dataclass
class Contender:
    """One implementation of one shape, ready to time.

    Attributes
    ----------
    name : str
        ``"fastlstm"``, ``"torch"`` or ``"onnxruntime"``.
    run : callable or None
        Runs one step (a forward, or a forward and backward) each call; ``None`` when the
        contender is unavailable.
    reason : str
        Why ``run`` is ``None``; empty otherwise.
    version : str
        The implementation's package version, when available.
    """

    name: str
    run: Optional[Callable[[], object]]
    reason: str = ""
    version: str = ""

    @property
    def available(self) -> bool:
        return self.run is not None


def numba_threads() -> int:
    """Numba's thread count: the one every contender runs with.

    Read from Numba's configuration, which does not start Numba's thread pool (see
    :func:`load_peers`).
    """
    import numba

    return numba.config.NUMBA_NUM_THREADS


def load_peers(threads: int) -> None:
    """Import the installed peers and set their thread counts, before Numba's threads start.

    Measured here: when Numba's OpenMP thread pool is running before PyTorch is imported,
    PyTorch's GRU training step (shape 5) takes 450–500 ms instead of 165 ms. So the
    benchmark loads its peers first, as a user comparing the two should.
    """
    try:
        import torch
    except ImportError:
        return
    set_torch_threads(torch, threads)


def build_fastlstm(shape: BenchShape, layer, x, dy) -> Contender:
    """fastlstm: ``layer(x, tape=False)`` for inference, ``layer(x)`` then
    ``layer.backward(dy)`` for training.

    Parameters
    ----------
    shape : BenchShape
    layer : fastlstm layer of the shape
    x : ndarray (T, B, I)
    dy : ndarray (T, B, H)
    """
    import fastlstm

    if shape.mode == "inference":
        def run():
            return layer(x, tape=False)
    else:
        def run():
            layer(x)
            return layer.backward(dy)
    return Contender("fastlstm", run, version=fastlstm.__version__)


def _torch_unsupported(shape: BenchShape) -> str:
    options = shape.option_dict
    if shape.cell == "lstm" and options.get("peephole", False):
        return "PyTorch has no peephole LSTM"
    if shape.cell == "gru" and not options.get("reset_after", True):
        return "PyTorch's GRU is reset_after=True only"
    return ""


def set_torch_threads(torch, threads: int) -> None:
    """Give PyTorch ``threads`` intra-op threads and one inter-op thread.

    The inter-op count can be set only before PyTorch's first parallel work; after that it
    stays as it is (and is unused by a single layer's forward and backward).
    """
    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != 1:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass


def build_torch(shape: BenchShape, layer, x, dy, threads=None) -> Contender:
    """PyTorch's ``nn.LSTM``/``nn.GRU``/``nn.RNN`` with ``layer``'s weights.

    Inference runs the module under ``torch.inference_mode()``; training runs it on an
    ``x`` that requires grad, then ``y.backward(dy)``, with the parameter gradients
    cleared by ``zero_grad(set_to_none=True)`` before each step.

    Parameters
    ----------
    shape : BenchShape
    layer : fastlstm layer of the shape (its ``params`` are copied)
    x : ndarray (T, B, I)
    dy : ndarray (T, B, H)
    threads : int, optional
        Defaults to Numba's thread count.
    """
    unsupported = _torch_unsupported(shape)
    if unsupported:
        return Contender("torch", None, unsupported)
    try:
        import torch
    except ImportError as error:
        return Contender("torch", None, f"PyTorch is not installed ({error})")
    set_torch_threads(torch, numba_threads() if threads is None else threads)
    module = make_torch_module(torch, shape, layer.params)
    xt = torch.from_numpy(np.ascontiguousarray(x))
    if shape.mode == "inference":
        def run():
            with torch.inference_mode():
                return module(xt)
    else:
        xt.requires_grad_(True)
        dyt = torch.from_numpy(np.ascontiguousarray(dy))

        def run():
            module.zero_grad(set_to_none=True)
            xt.grad = None
            y, _ = module(xt)
            y.backward(dyt)
    return Contender("torch", run, version=torch.__version__)


def make_torch_module(torch, shape: BenchShape, params):
    """The PyTorch module of ``shape`` holding copies of ``params``.

    Parameters
    ----------
    torch : the imported ``torch`` module
    shape : BenchShape (its cell must be one PyTorch has)
    params : dict of ndarrays with PyTorch's names

    Returns
    -------
    torch.nn.Module
    """
    dtype = getattr(torch, shape.dtype)
    if shape.cell == "lstm":
        module = torch.nn.LSTM(shape.input_size, shape.hidden_size, dtype=dtype)
    elif shape.cell == "gru":
        module = torch.nn.GRU(shape.input_size, shape.hidden_size, dtype=dtype)
    else:
        module = torch.nn.RNN(shape.input_size, shape.hidden_size, dtype=dtype,
                              nonlinearity=shape.option_dict.get("nonlinearity", "tanh"))
    with torch.no_grad():
        for name, value in params.items():
            getattr(module, name).copy_(torch.from_numpy(np.asarray(value)))
    return module


def build_onnxruntime(shape: BenchShape, layer, x, dy=None, threads=None) -> Contender:
    """ONNX Runtime running ``layer``'s ONNX model (:func:`fastlstm.interop.to_onnx`), in memory.

    Inference only (``session.run`` on float32 ``x``); the session has ``threads``
    intra-op threads and one inter-op thread.

    Parameters
    ----------
    shape : BenchShape
    layer : fastlstm layer of the shape
    x : ndarray (T, B, I)
    dy : unused (the signature matches the other builders)
    threads : int, optional
        Defaults to Numba's thread count.
    """
    if shape.mode != "inference":
        return Contender("onnxruntime", None, "ONNX Runtime runs inference only")
    if shape.dtype != "float32":
        return Contender("onnxruntime", None, "ONNX Runtime's LSTM/GRU/RNN kernels are float32 only")
    try:
        import onnxruntime
        from ..interop import to_onnx
        model = to_onnx(layer)
    except ImportError as error:
        return Contender("onnxruntime", None, f"onnx/onnxruntime is not installed ({error})")
    session = make_session(onnxruntime, model, numba_threads() if threads is None else threads)
    feeds = {"X": np.ascontiguousarray(x, dtype=np.float32)}

    def run():
        return session.run(None, feeds)
    return Contender("onnxruntime", run, version=onnxruntime.__version__)


def make_session(onnxruntime, model, threads: int):
    """An ``InferenceSession`` of ``model`` on the CPU with ``threads`` intra-op threads."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    return onnxruntime.InferenceSession(model.SerializeToString(), options,
                                        providers=["CPUExecutionProvider"])


PEER_BUILDERS = {"torch": build_torch, "onnxruntime": build_onnxruntime}


def build_contenders(shape: BenchShape, layer, x, dy) -> list[Contender]:
    """fastlstm first, then each of the shape's peers (available or not)."""
    return [build_fastlstm(shape, layer, x, dy)] + \
        [PEER_BUILDERS[name](shape, layer, x, dy) for name in shape.peers]
