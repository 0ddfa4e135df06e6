"""Losses with their gradients, honouring sequence lengths.

Each returns ``(loss, gradient)``: the scalar loss and its gradient with respect to the
prediction, shaped like it. With ``lengths`` the prediction is a sequence, (T, B, ...) or,
with ``time_axis=1``, (B, T, ...); steps at or past a sequence's length count for nothing
(their gradient is 0) and the mean is over the valid steps only.
"""
import numpy as np

from ..validation import real_array


def valid_steps(lengths, shape, time_axis):
    """The (T, B) or (B, T) boolean mask of steps before each sequence's length, or None."""
    if lengths is None:
        return None
    if time_axis not in (0, 1):
        raise ValueError(f"time_axis: expected 0 (T, B, ...) or 1 (B, T, ...), got {time_axis!r}")
    if len(shape) < 2:
        raise ValueError(f"prediction: expected a sequence (T, B, ...) or (B, T, ...) with lengths, got shape {shape}")
    lengths = np.asarray(lengths)
    steps, batch = (shape[0], shape[1]) if time_axis == 0 else (shape[1], shape[0])
    if lengths.dtype.kind not in "iu" or lengths.shape != (batch,):
        raise ValueError(f"lengths: expected {batch} integers, one per sequence, got {lengths.dtype} "
                         f"of shape {lengths.shape}")
    if batch and (lengths.min() < 0 or lengths.max() > steps):
        raise ValueError(f"lengths: expected values in [0, {steps}], got [{lengths.min()}, {lengths.max()}]")
    valid = np.arange(steps)[:, None] < lengths[None, :]
    return valid if time_axis == 0 else valid.T


def _weights(valid, shape, dtype):
    """Per-entry weights 1/count over the valid entries (broadcast to ``shape``)."""
    if valid is None:
        count = int(np.prod(shape))
        if count == 0:
            raise ValueError("prediction: expected at least one entry, got an empty array")
        return np.broadcast_to(np.asarray(1.0 / count, dtype), shape)
    mask = valid.reshape(valid.shape + (1,) * (len(shape) - 2)).astype(dtype)
    count = mask.sum() * np.prod(shape[2:])
    if count == 0:
        raise ValueError("lengths: every sequence is empty; the mean over no steps is undefined")
    return np.broadcast_to(mask / count, shape)


def mean_squared_error(prediction, target, lengths=None, time_axis=0):
    """Mean of (prediction − target)² over every (valid) entry.

    Parameters
    ----------
    prediction : ndarray, any shape; (T, B, ...) or (B, T, ...) with ``lengths``
    target : array_like, the shape of ``prediction``
    lengths : array_like of int, shape (B,), optional
    time_axis : {0, 1}
        Where time is when ``lengths`` is given.

    Returns
    -------
    loss : float
    d_prediction : ndarray, the shape and dtype of ``prediction``
    """
    prediction = np.asarray(prediction)
    target = real_array("target", target, prediction.dtype)
    if target.shape != prediction.shape:
        raise ValueError(f"target: expected the prediction's shape {prediction.shape}, got {target.shape}")
    weights = _weights(valid_steps(lengths, prediction.shape, time_axis), prediction.shape, prediction.dtype)
    error = prediction - target
    loss = float(np.sum(weights * error * error, dtype=np.float64))
    return loss, (2 * weights * error).astype(prediction.dtype)


def softmax_cross_entropy(logits, labels, lengths=None, time_axis=0):
    """Mean of −log softmax(logits)[label] over every (valid) position.

    Parameters
    ----------
    logits : ndarray, shape (..., C)
        (T, B, C) or (B, T, C) with ``lengths``; (B, C) for one label per sequence.
    labels : array_like of int, shape ``logits.shape[:-1]``, values in [0, C)
        Ignored (may be anything in range) at invalid steps.
    lengths : array_like of int, shape (B,), optional
    time_axis : {0, 1}

    Returns
    -------
    loss : float
    d_logits : ndarray, the shape and dtype of ``logits``
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim < 1 or labels.shape != logits.shape[:-1]:
        raise ValueError(f"labels: expected shape {logits.shape[:-1]} (the logits' without classes), "
                         f"got {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels: expected integer class indices, got dtype {labels.dtype}")
    classes = logits.shape[-1]
    valid = valid_steps(lengths, logits.shape, time_axis)
    used = labels if valid is None else np.where(valid, labels, 0)
    if used.size and (used.min() < 0 or used.max() >= classes):
        raise ValueError(f"labels: expected class indices in [0, {classes}), got [{used.min()}, {used.max()}]")
    weights = _weights(valid, labels.shape + (1,), logits.dtype)[..., 0]
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    picked = np.take_along_axis(log_probabilities, used[..., None], axis=-1)[..., 0]
    loss = float(-np.sum(weights * picked, dtype=np.float64))
    gradient = np.exp(log_probabilities)
    np.put_along_axis(gradient, used[..., None], np.take_along_axis(gradient, used[..., None], axis=-1) - 1, axis=-1)
    return loss, (gradient * weights[..., None]).astype(logits.dtype)
