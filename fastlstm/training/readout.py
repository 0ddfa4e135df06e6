"""A linear readout: y = x Wᵀ + b over the last axis, with its backward."""
import numpy as np

from ..validation import as_float_array, check_positive_int, resolve_dtype


class Linear:
    """A dense layer applied to the last axis of any array.

    Parameters
    ----------
    in_features, out_features : int
    dtype : {"float32", "float64"}
    seed : int, optional
        Weights and bias uniform in ±1/√in_features (PyTorch's ``nn.Linear`` default).

    Attributes
    ----------
    params : dict
        ``weight`` (out_features, in_features), ``bias`` (out_features,).
    grads : dict or None
        Set by :meth:`backward`, keyed like ``params``.
    """

    def __init__(self, in_features, out_features, dtype="float32", seed=None):
        self.in_features = check_positive_int("in_features", in_features)
        self.out_features = check_positive_int("out_features", out_features)
        self.dtype = resolve_dtype(dtype)
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(in_features)
        self.params = {"weight": rng.uniform(-bound, bound, (out_features, in_features)).astype(self.dtype),
                       "bias": rng.uniform(-bound, bound, out_features).astype(self.dtype)}
        self.grads = None
        self._x = None

    def forward(self, x):
        """y = x Wᵀ + b.

        Parameters
        ----------
        x : array_like, shape (..., in_features)

        Returns
        -------
        ndarray, shape (..., out_features)
        """
        x = as_float_array("x", x, self.dtype)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"x: expected shape (..., {self.in_features}), got {x.shape}")
        self._x = x
        return x @ self.params["weight"].T + self.params["bias"]

    __call__ = forward

    def backward(self, dy):
        """Gradients of the last forward; sets :attr:`grads`.

        Parameters
        ----------
        dy : array_like, shape (..., out_features), the shape of the last forward's output

        Returns
        -------
        dx : ndarray, shape (..., in_features)
        """
        if self._x is None:
            raise RuntimeError("backward: call forward first")
        dy = as_float_array("dy", dy, self.dtype)
        expected = self._x.shape[:-1] + (self.out_features,)
        if dy.shape != expected:
            raise ValueError(f"dy: expected the shape of the last output {expected}, got {dy.shape}")
        rows_dy = dy.reshape(-1, self.out_features)
        rows_x = self._x.reshape(-1, self.in_features)
        self.grads = {"weight": rows_dy.T @ rows_x, "bias": rows_dy.sum(axis=0)}
        return dy @ self.params["weight"]
