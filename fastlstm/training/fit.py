"""Training loops: :func:`fit` (mini-batches, an optimiser, a progress bar) and
:func:`minimize` (the whole problem handed to SciPy's L-BFGS)."""
from dataclasses import dataclass, field

import numpy as np

from .optimisers import clip_by_global_norm, global_norm


@dataclass
class History:
    """What :func:`fit` saw.

    Attributes
    ----------
    loss : list of float
        Each epoch's mean training loss over its batches.
    batch_loss : list of float
        Every batch's loss, in order.
    validation_loss : list of float
        Each epoch's validation loss (empty without validation data).
    gradient_norm : list of float
        Every batch's global gradient norm before clipping.
    """

    loss: list = field(default_factory=list)
    batch_loss: list = field(default_factory=list)
    validation_loss: list = field(default_factory=list)
    gradient_norm: list = field(default_factory=list)


def _batches(data, epoch):
    """An epoch's batches: ``data(epoch)`` when callable, else ``data`` itself (a sequence)."""
    batches = data(epoch) if callable(data) else data
    for batch in batches:
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            raise ValueError("data: expected batches (x, target) or (x, target, lengths), "
                             f"got {type(batch).__name__}")
        yield batch if len(batch) == 3 else (batch[0], batch[1], None)


def fit(model, loss, optimiser, data, epochs=1, clip_norm=None, validation=None, progress=True, rng=None):
    """Train ``model`` with ``optimiser`` on mini-batches.

    Parameters
    ----------
    model : SequenceModel
    loss : callable
        One of :mod:`fastlstm.training.losses`.
    optimiser : SGD or Adam
        Built over ``model.params``.
    data : sequence of batches, or callable epoch -> iterable of batches
        Each batch ``(x, target)`` or ``(x, target, lengths)``; a callable can shuffle per epoch.
    epochs : int
    clip_norm : float, optional
        Clip the gradients by this global norm before each step.
    validation : tuple (x, target) or (x, target, lengths), optional
        Evaluated (in inference mode) after each epoch.
    progress : bool
        Show a ``tqdm`` progress bar over the epochs with the latest losses.
    rng : numpy.random.Generator, optional
        Where the regularisers' masks come from (the layer's own generator if None).

    Returns
    -------
    History
    """
    def epoch_gradients(epoch):
        for x, target, lengths in _batches(data, epoch):
            yield model.loss_and_gradients(loss, x, target, lengths, training=True, rng=rng)

    validation_loss = None if validation is None else (lambda: evaluate(model, loss, *validation))
    return train_epochs(optimiser, epoch_gradients, epochs, clip_norm, validation_loss, progress)


def train_epochs(optimiser, epoch_gradients, epochs, clip_norm=None, validation_loss=None, progress=True):
    """The loop of :func:`fit` (and of ``fastlstm.dask.fit``): steps, clipping, History, progress bar.

    Parameters
    ----------
    optimiser : SGD or Adam
    epoch_gradients : callable epoch -> iterable of (loss value, grads)
        Each batch's loss and gradients at the current parameters (computed as it is iterated,
        so after the previous batch's step).
    epochs : int
    clip_norm : float, optional
    validation_loss : callable () -> float, optional
        The validation loss at the current parameters, called after each epoch.
    progress : bool

    Returns
    -------
    History
    """
    from tqdm import tqdm

    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"epochs: expected a non-negative integer, got {epochs!r}")
    history = History()
    bar = tqdm(range(epochs), disable=not progress, desc="training", unit="epoch")
    for epoch in bar:
        losses = []
        for value, grads in epoch_gradients(epoch):
            if not np.isfinite(value):
                raise FloatingPointError(f"fit: the loss became {value} at epoch {epoch}; lower the learning "
                                         "rate or clip the gradients (clip_norm=)")
            if clip_norm is not None:
                grads, norm = clip_by_global_norm(grads, clip_norm)
            else:
                norm = global_norm(grads)
            optimiser.step(grads)
            losses.append(value)
            history.gradient_norm.append(norm)
        if not losses:
            raise ValueError(f"data: epoch {epoch} had no batches")
        history.batch_loss.extend(losses)
        history.loss.append(float(np.mean(losses)))
        postfix = {"loss": f"{history.loss[-1]:.4g}"}
        if validation_loss is not None:
            history.validation_loss.append(validation_loss())
            postfix["validation"] = f"{history.validation_loss[-1]:.4g}"
        bar.set_postfix(postfix)
    return history


def evaluate(model, loss, x, target, lengths=None):
    """The loss of ``model`` on (x, target) in inference mode (no dropout, no tape kept)."""
    return model.apply_loss(loss, predict(model, x, lengths), target, lengths)[0]


def predict(model, x, lengths=None):
    """The model's output in inference mode (no dropout, no tape kept)."""
    return model.forward(x, lengths, training=False, tape=False)


class FlatObjective:
    """A model's loss on fixed data as a function of one flat float64 vector, for SciPy.

    ``objective(theta)`` sets the model's parameters to ``theta`` and returns ``(loss,
    gradient)``, the form ``scipy.optimize.minimize(..., jac=True)`` takes. Forwards run
    in inference mode (deterministic: no dropout masks, which L-BFGS's line search needs).
    """

    def __init__(self, model, loss, x, target, lengths=None):
        self.model, self.loss = model, loss
        self.data = (x, target, lengths)
        self.names = list(model.params)
        self.shapes = [model.params[n].shape for n in self.names]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.evaluations = 0

    def initial(self):
        """The model's current parameters, flattened (float64)."""
        return np.concatenate([self.model.params[n].ravel() for n in self.names]).astype(np.float64)

    def assign(self, theta):
        """Copy ``theta`` into the model's parameter arrays (in place)."""
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (sum(self.sizes),):
            raise ValueError(f"theta: expected shape ({sum(self.sizes)},), got {theta.shape}")
        params = self.model.params
        offset = 0
        for name, shape, size in zip(self.names, self.shapes, self.sizes):
            params[name][...] = theta[offset:offset + size].reshape(shape)
            offset += size

    def __call__(self, theta):
        self.assign(theta)
        self.evaluations += 1
        value, grads = self.model.loss_and_gradients(self.loss, *self.data, training=False)
        return value, np.concatenate([np.asarray(grads[n], np.float64).ravel() for n in self.names])


def minimize(model, loss, x, target, lengths=None, method="L-BFGS-B", max_iterations=200, **options):
    """Fit a small model on all its data with ``scipy.optimize.minimize`` (L-BFGS by default).

    Parameters
    ----------
    model : SequenceModel
    loss : callable
    x, target, lengths : the whole training set
    method : str
        Any gradient-based method of ``scipy.optimize.minimize``.
    max_iterations : int
    **options
        Further ``options`` for SciPy.

    Returns
    -------
    scipy.optimize.OptimizeResult
        The model's parameters are left at ``result.x``.
    """
    from scipy.optimize import minimize as scipy_minimize

    objective = FlatObjective(model, loss, x, target, lengths)
    result = scipy_minimize(objective, objective.initial(), jac=True, method=method,
                            options=dict(maxiter=max_iterations, **options))
    objective.assign(result.x)
    return result
