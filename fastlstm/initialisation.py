"""Initial parameter values: named, seeded schemes.

``"uniform"`` (the default, PyTorch's)
    Every parameter from U(−1/√H, 1/√H).
``"keras"`` (Keras' defaults)
    ``weight_ih`` Glorot-uniform over the whole (G·H, I) matrix, U(−a, a) with
    a = √(6 / (I + G·H)); ``weight_hh`` with orthonormal columns over the whole (G·H, H)
    matrix (Keras' ``Orthogonal`` on its (H, G·H) ``recurrent_kernel``); biases 0, and the
    LSTM's forget-gate bias 1 (Keras' ``unit_forget_bias=True``); peepholes 0.
``"orthogonal"`` (Saxe et al. 2014, per gate)
    Each gate's (H, H) block of ``weight_hh`` orthogonal, each gate's (H, I) block of
    ``weight_ih`` with orthonormal rows (H ≤ I) or columns (H > I); biases and peepholes 0.

``forget_bias`` (LSTM only; Jozefowicz et al. 2015 recommend 1.0) sets the forget gate's bias:
its block of ``bias_ih`` to ``forget_bias`` and of ``bias_hh`` to 0, so that their sum, the
bias the gate sees, is ``forget_bias``.

Every scheme draws in float64, in the order of :meth:`fastlstm.config.LayerConfig.parameter_shapes`,
from ``numpy.random.default_rng(seed)``, and then casts: float32 and float64 layers with the
same seed hold the same numbers up to rounding.
"""
from __future__ import annotations

import numbers

import numpy as np

from .validation import check_choice, check_seed

SCHEMES = ("uniform", "keras", "orthogonal")
# The forget gate's block in the LSTM's gate order i, f, g, o.
FORGET_GATE = 1


def check_forget_bias(cell, forget_bias, bias=True):
    """Raise unless ``forget_bias`` is None, or a finite real number for an LSTM with biases."""
    if forget_bias is None:
        return None
    if isinstance(forget_bias, (bool, np.bool_)) or not isinstance(forget_bias, numbers.Real):
        raise TypeError(f"forget_bias: expected None or a real number, got {forget_bias!r}")
    if not np.isfinite(forget_bias):
        raise ValueError(f"forget_bias: expected a finite number, got {forget_bias!r}")
    if cell.kind != "lstm":
        raise ValueError(f"forget_bias: only the LSTM has a forget gate; got {forget_bias!r} for a {cell.label}")
    if not bias:
        raise ValueError(f"forget_bias: the layer has bias=False, so no bias to set; got {forget_bias!r}")
    return float(forget_bias)


def init_parameters(config, seed=None, scheme="uniform", forget_bias=None) -> dict[str, np.ndarray]:
    """Every parameter of a layer, drawn by ``scheme``.

    Parameters
    ----------
    config : fastlstm.config.LayerConfig
    seed : int or None
    scheme : {"uniform", "keras", "orthogonal"}
    forget_bias : float or None
        LSTM only: the forget gate's bias (``None``: the scheme's, 1.0 for ``"keras"``).

    Returns
    -------
    dict
        name -> ndarray of ``config.dtype``, the names and shapes of ``config.parameter_shapes()``.
    """
    rng = np.random.default_rng(check_seed("seed", seed))
    scheme = check_choice("init", scheme, SCHEMES)
    forget_bias = check_forget_bias(config.cell, forget_bias, config.bias)
    if scheme == "keras" and forget_bias is None and config.cell.kind == "lstm" and config.bias:
        forget_bias = 1.0
    hidden = config.hidden_size
    gates = config.cell.gates
    params = {}
    for name, shape in config.parameter_shapes().items():
        base = name.rsplit("_l", 1)[0]
        if scheme == "uniform":
            bound = 1.0 / np.sqrt(hidden)
            value = rng.uniform(-bound, bound, size=shape)
        elif base == "weight_ih" and scheme == "keras":
            bound = np.sqrt(6.0 / (shape[0] + shape[1]))
            value = rng.uniform(-bound, bound, size=shape)
        elif base == "weight_hh" and scheme == "keras":
            value = _orthonormal(rng, *shape)
        elif base in ("weight_ih", "weight_hh"):
            value = np.concatenate([_orthonormal(rng, hidden, shape[1]) for _ in range(gates)])
        else:
            value = np.zeros(shape)
        if forget_bias is not None and base in ("bias_ih", "bias_hh"):
            value[FORGET_GATE * hidden:(FORGET_GATE + 1) * hidden] = forget_bias if base == "bias_ih" else 0.0
        params[name] = value.astype(config.dtype)
    return params


def _orthonormal(rng, rows, columns):
    """A (rows, columns) matrix with orthonormal columns (rows ≥ columns) or rows, Haar-distributed."""
    tall = rows >= columns
    gaussian = rng.standard_normal((rows, columns) if tall else (columns, rows))
    q, r = np.linalg.qr(gaussian)
    q *= np.sign(np.diag(r))          # the sign convention that makes Q uniformly distributed
    return q if tall else q.T
