"""Batch inference and data-parallel training on Dask: arrays chunked along the batch.

Sequences are independent, so a batch split into chunks is a set of independent problems:
:func:`predict` runs the model forward on each chunk of a dask array, on Dask's workers;
:func:`gradients` runs each chunk's forward and backward there and adds the chunks' parts in
a tree reduction; :func:`fit` takes one optimiser step per global mini-batch from them, with
:func:`fastlstm.training.fit`'s History, progress bar, clipping and validation.

The model travels to the workers once per call: scattered to every worker
(``client.scatter(..., broadcast=True)``) when the current scheduler is a
``distributed.Client`` (or ``client=`` names one), otherwise one key of the task graph that
every chunk's task depends on. It travels without its tapes and gradients, and every task
runs a private shallow copy of it (sharing the parameter arrays), since a layer serves one
thread at a time. The layer's backend must run on the workers (``"cpu"`` or ``"reference"``).

A worker that dies is replaced and its tasks run again elsewhere (Dask's
``distributed.scheduler.allowed-failures``); a task that keeps killing workers makes the call
raise ``distributed.scheduler.KilledWorker``, or ``FutureCancelledError`` when the last worker
holding the scattered model died with it. No chunk is ever left out of a result.

Needs ``dask[array]`` (and ``distributed`` for clusters): ``pip install "fastlstm[dask]"``.
"""
import copy
import uuid

import numpy as np

from .validation import check_bool

# Parts added per task of the tree reduction in gradients().
REDUCTION_FAN_IN = 8
WORKER_BACKENDS = ("cpu", "reference")


# ---------------------------------------------------------------- public functions

def predict(layer_or_model, x, lengths=None, *, client=None):
    """The model's outputs on every sequence of a dask array, computed lazily on Dask's workers.

    Inference mode: no dropout, zoneout at its expectation, no tape kept (as
    :func:`fastlstm.training.predict`).

    Parameters
    ----------
    layer_or_model : fastlstm layer (LSTM, GRU, RNN) or fastlstm.training.SequenceModel
        Its backend must be ``"cpu"`` or ``"reference"``.
    x : dask.array.Array, shape (T, B, I), or (B, T, I) with ``batch_first``
        Chunked along the batch only: one chunk spans T and one spans I (else ``ValueError``;
        ``x.rechunk({time_axis: -1, 2: -1})`` makes it so).
    lengths : array_like or dask.array.Array of int, shape (B,), optional
        Each sequence's number of valid steps; rechunked to ``x``'s batch chunks.
    client : distributed.Client, optional
        Scatter the model to this client's workers; by default the current scheduler's client,
        if it is one. The result must then be computed on that client.

    Returns
    -------
    dask.array.Array, of the layer's dtype, chunked like ``x`` along the batch
        A layer: y, (T, B, D·H) or (B, T, D·H) (its final states are not returned). A
        SequenceModel: its output, (T, B, O) / (B, T, O) for ``head="sequence"``, (B, O) for
        ``head="final"``.
    """
    da = _dask_array()
    model, recurrent = _check_model("layer_or_model", layer_or_model, layers_too=True)
    batch = _Batch(recurrent.config, x)
    lengths_blocks = batch.lengths_blocks(lengths)
    shipped = _ship("layer_or_model", model, client)
    blocks = []
    for x_block, lengths_block, size in zip(batch.x_blocks(), lengths_blocks, batch.sizes):
        if size == 0:
            continue
        shape, _ = _output_shape(model, batch.steps, size)
        task = _delayed(_predict_chunk)(shipped, x_block, lengths_block)
        blocks.append(da.from_delayed(task, shape, dtype=recurrent.config.dtype))
    _, batch_axis = _output_shape(model, batch.steps, 0)
    return da.concatenate(blocks, axis=batch_axis)


def gradients(model, loss, x, target, lengths=None, *, training=None, rng=None, client=None):
    """The loss of ``model`` on a batch of dask arrays and its gradients, chunk by chunk on the workers.

    Equal, to rounding, to ``model.loss_and_gradients(loss, x, target, lengths)`` on the whole
    batch in one process: the losses are means over the (valid) entries, so each chunk's loss and
    gradients are weighted by its share of them (its sequences; its valid steps for a sequence
    head with ``lengths``) and the parts are added in a tree reduction, in float64.

    Regularisers: in inference mode (``training=False``, or a layer in ``eval()`` mode, or no
    regulariser set) the equality holds exactly as stated. In training mode each chunk draws
    its own masks, from ``numpy.random.default_rng([seed, chunk index])`` with one ``seed``
    drawn per call from ``rng`` (the layer's own generator if None): reproducible, and
    independent of which worker runs which chunk, but not the masks of a one-process call.

    Parameters
    ----------
    model : fastlstm.training.SequenceModel
        Its layer's backend must be ``"cpu"`` or ``"reference"``.
    loss : callable
        One of :mod:`fastlstm.training.losses` (a mean over the valid entries); shipped to the
        workers, so it must pickle.
    x : dask.array.Array, shape (T, B, I), or (B, T, I) with ``batch_first``, chunked along the batch
    target : array_like or dask.array.Array
        The shape of the model's output ((T, B, O) / (B, T, O), or (B, O) for ``head="final"``),
        or that shape without its last axis (class labels); rechunked to ``x``'s batch chunks.
    lengths : array_like or dask.array.Array of int, shape (B,), optional
    training : bool, optional
        Overrides the layer's train/eval mode (as in ``loss_and_gradients``).
    rng : numpy.random.Generator, optional
        Where each call's mask seed comes from in training mode.
    client : distributed.Client, optional
        Run on this client; by default the current scheduler (a client's, if one is current).

    Returns
    -------
    loss : float
    grads : dict of ndarray
        Keyed like ``model.params``, each of its parameter's dtype.
    """
    model, recurrent = _check_model("model", model, layers_too=False)
    client = _check_client(client)
    parts = _chunk_parts(model, loss, x, target, lengths, client, backward=True, training=training, rng=rng)
    value, sums, count = _compute(_tree_sum(parts), client)
    if count == 0:
        raise ValueError("lengths: every sequence is empty; the mean over no steps is undefined")
    params = model.params
    return value / count, {name: (sums[name] / count).astype(params[name].dtype) for name in params}


def fit(model, loss, optimiser, x, target, lengths=None, epochs=1, batch_size=None, client=None, progress=True,
        *, clip_norm=None, validation=None, rng=None):
    """Data-parallel training: one optimiser step per global mini-batch, its gradients from :func:`gradients`.

    The same loop as :func:`fastlstm.training.fit` (History, progress bar, clipping, validation,
    the check for a non-finite loss), with each mini-batch's forward and backward spread over
    Dask's workers. Mini-batches are consecutive slices of ``batch_size`` sequences, in order;
    persist ``x`` (``x = x.persist()``) when it is computed rather than loaded, so that the
    epochs do not compute it again.

    Parameters
    ----------
    model : fastlstm.training.SequenceModel
    loss : callable
        One of :mod:`fastlstm.training.losses`.
    optimiser : SGD or Adam
        Built over ``model.params`` (updated in place, in this process).
    x : dask.array.Array, shape (T, B, I), or (B, T, I) with ``batch_first``, chunked along the batch
    target : array_like or dask.array.Array, as for :func:`gradients`
    lengths : array_like or dask.array.Array of int, shape (B,), optional
    epochs : int
    batch_size : int, optional
        Sequences per step; None: the whole batch, one step per epoch.
    client : distributed.Client, optional
        By default the current scheduler (a client's, if one is current).
    progress : bool
        Show a ``tqdm`` progress bar over the epochs with the latest losses.
    clip_norm : float, optional
        Clip the gradients by this global norm before each step.
    validation : tuple (x, target) or (x, target, lengths), optional
        Evaluated in inference mode after each epoch: on the workers when its ``x`` is a dask
        array, in this process otherwise.
    rng : numpy.random.Generator, optional
        Where the regularisers' mask seeds come from (the layer's own generator if None).

    Returns
    -------
    fastlstm.training.History
    """
    from .training.fit import evaluate, train_epochs

    da = _dask_array()
    model, recurrent = _check_model("model", model, layers_too=False)
    client = _check_client(client)
    batch = _Batch(recurrent.config, x)
    if batch_size is None:
        batch_size = batch.size
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer or None, got {batch_size!r}")
    target = _Target(model, batch, target).array
    if lengths is not None:
        lengths = batch.lengths_array(lengths)
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) not in (2, 3):
            raise ValueError("validation: expected (x, target) or (x, target, lengths), "
                             f"got {type(validation).__name__}")
        distributed_validation = isinstance(validation[0], da.Array)
        if distributed_validation:
            _Target(model, _Batch(recurrent.config, validation[0], "validation[0]"), validation[1], "validation[1]")

    def select(array, axis, start):
        index = [slice(None)] * array.ndim
        index[axis] = slice(start, start + batch_size)
        return array[tuple(index)]

    def epoch_gradients(epoch):
        for start in range(0, batch.size, batch_size):
            yield gradients(model, loss, select(x, batch.axis, start),
                            select(target, _Target.batch_axis(model), start),
                            None if lengths is None else select(lengths, 0, start),
                            training=True, rng=rng, client=client)

    def validation_loss():
        if distributed_validation:
            parts = _chunk_parts(model, loss, *validation, client=client, backward=False)
            value, _, count = _compute(_tree_sum(parts), client)
            if count == 0:
                raise ValueError("validation: every sequence is empty; the mean over no steps is undefined")
            return value / count
        return evaluate(model, loss, *validation)

    return train_epochs(optimiser, epoch_gradients, epochs, clip_norm,
                        None if validation is None else validation_loss, progress)


# ---------------------------------------------------------------- the tasks (run on the workers)

def _private_copy(model):
    """A shallow copy that owns its tapes and lock and shares the parameter arrays."""
    from .training import SequenceModel
    if isinstance(model, SequenceModel):
        private = copy.copy(model)
        private.recurrent = copy.copy(model.recurrent)    # the layers' __getstate__: a lock of its own
        private.readout = copy.copy(model.readout)
        return private
    return copy.copy(model)


def _predict_chunk(model, x, lengths):
    """The model's inference output on one chunk of sequences."""
    model = _private_copy(model)
    if hasattr(model, "readout"):
        return model.forward(x, lengths, training=False, tape=False)
    y, _ = model.forward(x, None, lengths, tape=False, training=False)
    return y


def _chunk_part(model, loss, x, target, lengths, backward, training, seed):
    """(loss × count, {name: grad × count} in float64 or None, count) of one chunk of sequences.

    ``count`` is the chunk's share of the loss's normaliser: its valid steps for a sequence head
    with lengths, else its sequences (the other factors of the mean are the same in every chunk).
    """
    model = _private_copy(model)
    batch = x.shape[0] if model.recurrent.config.batch_first else x.shape[1]
    count = int(np.sum(lengths)) if lengths is not None and model.head == "sequence" else batch
    if count == 0:
        return 0.0, None, 0      # nothing counts: the loss and every gradient are 0
    if backward:
        rng = None if seed is None else np.random.default_rng(seed)
        value, grads = model.loss_and_gradients(loss, x, target, lengths, training=training, rng=rng)
        return value * count, {name: np.asarray(g, np.float64) * count for name, g in grads.items()}, count
    output = model.forward(x, lengths, training=False, tape=False)
    return model.apply_loss(loss, output, target, lengths)[0] * count, None, count


def _add_parts(*parts):
    """The sum of :func:`_chunk_part` results."""
    value = sum(part[0] for part in parts)
    count = sum(part[2] for part in parts)
    sums = None
    for _, grads, _ in parts:
        if grads is None:
            continue
        if sums is None:
            sums = {name: g.copy() for name, g in grads.items()}
        else:
            for name, g in grads.items():
                sums[name] += g
    return value, sums, count


# ---------------------------------------------------------------- graph building (this process)

def _chunk_parts(model, loss, x, target, lengths=None, client=None, backward=True, training=None, rng=None):
    """One delayed :func:`_chunk_part` per chunk of ``x`` along the batch."""
    recurrent = model.recurrent
    batch = _Batch(recurrent.config, x, "validation[0]" if not backward else "x")
    target_blocks = _Target(model, batch, target, "target" if backward else "validation[1]").blocks()
    lengths_blocks = batch.lengths_blocks(lengths)
    if not callable(loss):
        raise TypeError(f"loss: expected a callable (one of fastlstm.training.losses), got {type(loss).__name__}")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator or None, got {type(rng).__name__}")
    seeds = [None] * len(batch.sizes)
    active = recurrent.training if training is None else check_bool("training", training)
    if backward and active and bool(recurrent.config.regularisation):
        seed = int((recurrent.rng if rng is None else rng).integers(2 ** 63))
        seeds = [[seed, index] for index in range(len(batch.sizes))]
    shipped = _ship("model", model, client)
    return [_delayed(_chunk_part)(shipped, loss, x_block, target_block, lengths_block, backward, training, seed)
            for x_block, target_block, lengths_block, seed
            in zip(batch.x_blocks(), target_blocks, lengths_blocks, seeds)]


def _tree_sum(parts):
    """A tree of :func:`_add_parts` tasks over ``parts``, REDUCTION_FAN_IN at a time."""
    while len(parts) > 1:
        parts = [_delayed(_add_parts)(*parts[i:i + REDUCTION_FAN_IN]) for i in range(0, len(parts), REDUCTION_FAN_IN)]
    return parts[0]


def _compute(task, client):
    import dask
    if client is None:
        client = _current_client()
    if client is not None:
        return client.compute(task).result()
    return dask.compute(task)[0]


class _Batch:
    """A dask array x of sequences, checked against a layer's config: its batch axis and chunks."""

    def __init__(self, config, x, name="x"):
        da = _dask_array()
        self.config, self.name = config, name
        layout = "(B, T, I)" if config.batch_first else "(T, B, I)"
        if not isinstance(x, da.Array):
            raise TypeError(f"{name}: expected a dask array {layout}, got {type(x).__name__}; wrap a NumPy "
                            f"array with dask.array.from_array(x, chunks=...) chunked along the batch")
        if x.ndim != 3:
            raise ValueError(f"{name}: expected a dask array {layout} of ndim 3, got shape {x.shape}")
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{name}: expected real numbers, got dtype {x.dtype}")
        if x.shape[2] != config.input_size:
            raise ValueError(f"{name}: expected {config.input_size} input features (the layer's input_size), "
                             f"got shape {x.shape}")
        self.axis = 0 if config.batch_first else 1
        time_axis = 1 - self.axis
        if x.shape[self.axis] < 1:
            raise ValueError(f"{name}: expected at least one sequence in the batch, got shape {x.shape}")
        if any(np.isnan(size) for sizes in x.chunks for size in sizes):
            raise ValueError(f"{name}: its chunk sizes are unknown (NaN); call {name}.compute_chunk_sizes() first")
        if len(x.chunks[time_axis]) != 1 or len(x.chunks[2]) != 1:
            raise ValueError(f"{name}: expected chunks along the batch (axis {self.axis}) only, one chunk spanning "
                             f"the {x.shape[time_axis]} steps and one spanning the {x.shape[2]} features; got "
                             f"chunks {x.chunks}. Rechunk it: {name}.rechunk({{{time_axis}: -1, 2: -1}})")
        self.x = x
        self.sizes = x.chunks[self.axis]
        self.size = x.shape[self.axis]
        self.steps = x.shape[time_axis]

    def x_blocks(self):
        return list(self.x.to_delayed().ravel())

    def lengths_array(self, lengths):
        """``lengths`` checked ((B,) integers; in [0, T] when in memory) as a dask array in x's batch chunks."""
        da = _dask_array()
        if not isinstance(lengths, da.Array):
            lengths = np.asarray(lengths)
        if lengths.dtype.kind not in "iu" or lengths.shape != (self.size,):
            raise ValueError(f"lengths: expected {self.size} integers, one per sequence of {self.name}, got "
                             f"{lengths.dtype} of shape {lengths.shape}")
        if isinstance(lengths, np.ndarray):
            if lengths.size and (lengths.min() < 0 or lengths.max() > self.steps):
                raise ValueError(f"lengths: expected values in [0, {self.steps}], got "
                                 f"[{lengths.min()}, {lengths.max()}]")
            return da.from_array(lengths, chunks=(self.sizes,))
        return lengths.rechunk((self.sizes,))

    def lengths_blocks(self, lengths):
        """One delayed block of lengths per chunk of x (all None without lengths)."""
        if lengths is None:
            return [None] * len(self.sizes)
        return list(self.lengths_array(lengths).to_delayed().ravel())


class _Target:
    """A target checked against a model's output for a batch: same shape, or without the last axis."""

    def __init__(self, model, batch, target, name="target"):
        da = _dask_array()
        if not isinstance(target, da.Array):
            target = np.asarray(target)
            if target.dtype.kind not in "biuf":
                raise TypeError(f"{name}: expected real numbers or class labels, got dtype {target.dtype}")
        output, _ = _output_shape(model, batch.steps, batch.size)
        if target.shape not in (output, output[:-1]):
            raise ValueError(f"{name}: expected the model's output shape {output} (or {output[:-1]} for class "
                             f"labels), got {target.shape}")
        axis = self.batch_axis(model)
        chunks = tuple(batch.sizes if a == axis else (n,) for a, n in enumerate(target.shape))
        self.array = da.from_array(target, chunks=chunks) if isinstance(target, np.ndarray) else target.rechunk(chunks)

    @staticmethod
    def batch_axis(model):
        return 0 if model.head == "final" or model.recurrent.config.batch_first else 1

    def blocks(self):
        return list(self.array.to_delayed().ravel())


def _output_shape(model, steps, batch):
    """(shape of the model's output on ``batch`` sequences of ``steps``, its batch axis)."""
    if hasattr(model, "readout"):
        config, features = model.recurrent.config, model.out_features
        if model.head == "final":
            return (batch, features), 0
    else:
        config, features = model.config, model.config.output_size
    if config.batch_first:
        return (batch, steps, features), 0
    return (steps, batch, features), 1


def _check_model(name, model, layers_too):
    """(model, its recurrent layer), or TypeError naming what is expected."""
    from .layers import _RecurrentLayer
    from .training import SequenceModel
    if isinstance(model, SequenceModel):
        return model, model.recurrent
    if layers_too and isinstance(model, _RecurrentLayer):
        return model, model
    expected = "a fastlstm layer (LSTM, GRU, RNN) or a training.SequenceModel" if layers_too else \
        "a fastlstm.training.SequenceModel"
    raise TypeError(f"{name}: expected {expected}, got {type(model).__name__}")


def _check_client(client):
    if client is None:
        return None
    try:
        from distributed import Client
    except ImportError:
        Client = ()
    if not isinstance(client, Client):
        raise TypeError(f"client: expected a distributed.Client or None, got {type(client).__name__}")
    return client


def _current_client():
    """The distributed.Client that dask.compute would use now, or None (a local scheduler)."""
    from dask.base import get_scheduler
    try:
        from distributed import Client
    except ImportError:
        return None
    owner = getattr(get_scheduler(), "__self__", None)
    return owner if isinstance(owner, Client) else None


def _shippable(name, model):
    """A copy of ``model`` without tapes or gradients, checked to run on Dask's workers."""
    import cloudpickle
    from .training import SequenceModel
    recurrent = model.recurrent if isinstance(model, SequenceModel) else model
    backend = recurrent.config.backend
    if backend not in WORKER_BACKENDS:
        raise ValueError(f"{name}: its backend {backend!r} cannot run on Dask's workers, which get a pickled "
                         f"copy of the model and no device arrays; expected one of {WORKER_BACKENDS} (e.g. "
                         f"fastlstm.load(path, backend='cpu'), or build the layer with backend='cpu')")
    layer = copy.copy(recurrent)
    layer.grads = layer.state_gradient_norms = layer._tape = None
    if isinstance(model, SequenceModel):
        shipped = copy.copy(model)
        shipped.__dict__.pop("_final_shape", None)
        shipped.recurrent = layer
        shipped.readout = copy.copy(model.readout)
        shipped.readout.grads = shipped.readout._x = None
    else:
        shipped = layer
    try:
        cloudpickle.dumps(shipped, protocol=5, buffer_callback=lambda buffer: None)   # arrays are not copied
    except Exception as error:
        raise TypeError(f"{name}: it cannot be pickled to travel to Dask's workers "
                        f"({type(error).__name__}: {error})") from error
    return shipped


def _ship(name, model, client):
    """The model as the tasks reference it: a future scattered to every worker, or one graph key."""
    import dask
    shipped = _shippable(name, model)
    client = _check_client(client) or _current_client()
    if client is not None:
        return client.scatter([shipped], broadcast=True, hash=False)[0]
    return dask.delayed(shipped, name=f"fastlstm-model-{uuid.uuid4().hex}", traverse=False)


def _delayed(function):
    import dask
    return dask.delayed(function, pure=True)


def _dask_array():
    try:
        import dask.array
    except ImportError as error:
        raise ImportError('fastlstm.dask needs dask: pip install "dask[array]" distributed '
                          '(or pip install "fastlstm[dask]")') from error
    return dask.array
