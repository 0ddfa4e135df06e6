"""Optimisers over a dict of parameter arrays, and clipping by the global gradient norm.

An optimiser holds the dict it was given and updates its arrays in place at each
:meth:`step`, so a layer whose ``params`` are those arrays sees the new values (as with
PyTorch's optimisers). Gradients are dicts with the same keys.
"""
import numpy as np


def _check_rate(name, value, low=0.0, high=np.inf, closed_low=True):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    inside = (low <= value if closed_low else low < value) and value < high
    if not inside:
        interval = f"{'[' if closed_low else '('}{low}, {high})"
        raise ValueError(f"{name}: expected a number in {interval}, got {value!r}")
    return float(value)


class _Optimiser:
    def __init__(self, params):
        if not isinstance(params, dict) or not params:
            raise TypeError(f"params: expected a non-empty dict of arrays, got {type(params).__name__}")
        for name, value in params.items():
            if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
                raise TypeError(f"params[{name!r}]: expected a float ndarray (updated in place), "
                                f"got {type(value).__name__}")
        self.params = params
        self.steps = 0

    def _gradients(self, grads):
        if not isinstance(grads, dict) or set(grads) != set(self.params):
            got = sorted(grads) if isinstance(grads, dict) else type(grads).__name__
            raise ValueError(f"grads: expected a dict with the keys {sorted(self.params)}, got {got}")
        out = {}
        for name, value in grads.items():
            value = np.asarray(value)
            if value.shape != self.params[name].shape:
                raise ValueError(f"grads[{name!r}]: expected shape {self.params[name].shape}, got {value.shape}")
            out[name] = value
        return out


class SGD(_Optimiser):
    """Stochastic gradient descent with (optionally Nesterov) momentum and L2 weight decay.

    v ← μ v + (g + λ θ);  θ ← θ − lr · v  (Nesterov: θ ← θ − lr · (g + λ θ + μ v)).

    Parameters
    ----------
    params : dict of float ndarray
    lr : float > 0
    momentum : float in [0, 1)
    weight_decay : float ≥ 0
    nesterov : bool
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params)
        self.lr = _check_rate("lr", lr, 0.0, closed_low=False)
        self.momentum = _check_rate("momentum", momentum, 0.0, 1.0)
        self.weight_decay = _check_rate("weight_decay", weight_decay)
        self.nesterov = bool(nesterov)
        self.velocity = {name: np.zeros_like(value) for name, value in params.items()}

    def step(self, grads):
        """Update every parameter in place from ``grads`` (a dict keyed like ``params``)."""
        grads = self._gradients(grads)
        for name, theta in self.params.items():
            g = grads[name] + self.weight_decay * theta if self.weight_decay else grads[name]
            v = self.velocity[name]
            v *= self.momentum
            v += g
            theta -= self.lr * (g + self.momentum * v if self.nesterov else v)
        self.steps += 1


class Adam(_Optimiser):
    """Adam (Kingma & Ba 2015), bias-corrected, with optional decoupled weight decay (AdamW).

    m ← β₁ m + (1 − β₁) g;  v ← β₂ v + (1 − β₂) g²;
    θ ← θ − lr · (m̂ / (√v̂ + ε) + λ θ), with m̂ = m / (1 − β₁ᵗ), v̂ = v / (1 − β₂ᵗ).

    Parameters
    ----------
    params : dict of float ndarray
    lr : float > 0
    betas : pair of float in [0, 1)
    eps : float > 0
    weight_decay : float ≥ 0
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params)
        self.lr = _check_rate("lr", lr, 0.0, closed_low=False)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        self.betas = (_check_rate("betas[0]", betas[0], 0.0, 1.0), _check_rate("betas[1]", betas[1], 0.0, 1.0))
        self.eps = _check_rate("eps", eps, 0.0, closed_low=False)
        self.weight_decay = _check_rate("weight_decay", weight_decay)
        self.first = {name: np.zeros_like(value) for name, value in params.items()}
        self.second = {name: np.zeros_like(value) for name, value in params.items()}

    def step(self, grads):
        """Update every parameter in place from ``grads`` (a dict keyed like ``params``)."""
        grads = self._gradients(grads)
        self.steps += 1
        beta1, beta2 = self.betas
        correction1, correction2 = 1 - beta1 ** self.steps, 1 - beta2 ** self.steps
        for name, theta in self.params.items():
            g = grads[name]
            m, v = self.first[name], self.second[name]
            m *= beta1
            m += (1 - beta1) * g
            v *= beta2
            v += (1 - beta2) * g * g
            update = (m / correction1) / (np.sqrt(v / correction2) + self.eps)
            if self.weight_decay:
                update = update + self.weight_decay * theta
            theta -= self.lr * update


def global_norm(grads):
    """√(Σ over every array of Σ g²), in float64."""
    return float(np.sqrt(sum(np.sum(np.square(g, dtype=np.float64)) for g in grads.values())))


def clip_by_global_norm(grads, max_norm):
    """Scale every gradient by min(1, max_norm / ‖g‖), ‖g‖ the global norm over all of them.

    Parameters
    ----------
    grads : dict of ndarray
        Not modified.
    max_norm : float > 0

    Returns
    -------
    clipped : dict of ndarray, new arrays where scaled
    norm : float, the global norm before clipping
    """
    max_norm = _check_rate("max_norm", max_norm, 0.0, closed_low=False)
    norm = global_norm(grads)
    if not np.isfinite(norm):
        raise FloatingPointError(f"grads: the global gradient norm is {norm}; clipping cannot repair it")
    if norm <= max_norm:
        return dict(grads), norm
    scale = max_norm / norm
    return {name: (g * scale).astype(g.dtype) for name, g in grads.items()}, norm
