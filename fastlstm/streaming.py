"""One time step of inference at a time: the prepared stepper behind ``layer.step``.

A streaming caller (an online model, a controller, a generator feeding each output back in)
runs a layer one step at a time. ``layer.step(x_t, state)`` computes exactly what
``layer.forward(x, training=False, tape=False)`` computes for that step: no tape, no dropout,
zoneout at its inference expectation (h = p·h_prev + (1 − p)·h_new), every stacked layer.

The layer keeps a :class:`Stepper` prepared on its first ``step``: with ``backend="cpu"`` the
parameters' addresses for one compiled call per step (:mod:`fastlstm.backends.cpu.stepping`)
and the zoneout rates; other backends run the general
:func:`fastlstm.functional.forward` on a sequence of one step (correct, not fast). Parameters
are read where they are, so an optimiser's in-place update of ``layer.params[...]`` is seen by
the next step; a stepper is :meth:`Stepper.current` only while the layer holds the same
configuration, the same dict and the same array objects under the same names, and the layer
prepares a new one otherwise (a reassigned entry or dict, ``load_state_dict``). Parameters that
are not C-contiguous arrays of the layer's dtype are converted, and then the stepper is never
current: each step converts them again, so that no step runs on a stale copy.

A bidirectional layer cannot stream (its reverse direction reads the sequence from its end):
preparing its stepper raises ``ValueError``.
"""
from __future__ import annotations

from operator import is_

import numpy as np

from . import functional
from .backends import get_backend
from .placement import HostArrays
from .validation import as_float_array


def prepare(config, params):
    """The :class:`Stepper` of a layer's ``config`` and ``params`` (validated here).

    Raises
    ------
    ValueError
        For a bidirectional layer; for parameters of wrong names or shapes (as ``forward``).
    TypeError
        For parameters that are not real-valued arrays (as ``forward``).
    """
    if config.bidirectional:
        raise ValueError("step: a bidirectional layer cannot run one step at a time (bidirectional=True): its "
                         "reverse direction reads each sequence from its end. Run forward on the whole "
                         "sequence, or use a layer with bidirectional=False")
    if config.backend == "cpu":
        return CompiledStepper(config, params)
    return ForwardStepper(config, params)


class Stepper:
    """One layer configuration's and parameter dict's step: ``y_t, state = stepper(x_t, state)``.

    Parameters
    ----------
    config : fastlstm.config.LayerConfig, not bidirectional
    params : dict of ndarray, the layer's (its identity and its entries' are what
        :meth:`current` compares)
    """

    def __init__(self, config, params):
        self.config = config
        self.params = params
        self._names = tuple(params)
        self._values = tuple(params.values())
        self._dtype = np.dtype(config.dtype)
        self._layers, self._hidden = config.num_layers, config.hidden_size
        self._state_names = config.cell.spec.states
        self._part_names = (tuple(f"state[{k}] ({n})" for k, n in enumerate(self._state_names))
                            if len(self._state_names) > 1 else ("state",))

    def current(self, config, params):
        """Whether this stepper still computes ``config`` and ``params``' step: the same objects, and
        the same array objects under the same names (their values may have changed in place)."""
        return (config is self.config and params is self.params and len(params) == len(self._names)
                and all(map(is_, params.values(), self._values)) and tuple(params) == self._names)

    def __call__(self, x, state=None):
        """One step: see :meth:`fastlstm.layers.LSTM.step`."""
        raise NotImplementedError

    def _convert(self, name, value):
        return as_float_array(name, value, self._dtype)

    def _input(self, x):
        """``x`` as a (B, I) array of the dtype, B, and whether it was one unbatched (I,) vector."""
        x = self._convert("x_t", x)
        inputs = self.config.input_size
        if x.ndim == 2:
            batch, features = x.shape
            unbatched = False
        elif x.ndim == 1:
            batch, features = 1, x.shape[0]
            unbatched = True
        else:
            raise ValueError(f"x_t: expected a 2-d array (B, features), or a 1-d (features,) for one unbatched "
                             f"sequence, got shape {tuple(x.shape)}")
        if features != inputs:
            layout = "(features,)" if unbatched else "(B, features)"
            raise ValueError(f"x_t: expected {inputs} features in the last axis of {layout}, got shape "
                             f"{tuple(x.shape)}")
        if batch < 1:
            raise ValueError(f"x_t: expected at least one sequence in the batch, got shape {tuple(x.shape)}")
        return (x.reshape(1, inputs) if unbatched else x), batch, unbatched

    def _state(self, state, batch, unbatched):
        """The state as a tuple of (L, B, H) arrays of the dtype ((h,) or (h, c)); ``None`` when
        ``state`` is None."""
        if state is None:
            return None
        count = len(self._state_names)
        layers, hidden = self._layers, self._hidden
        shape = (layers, hidden) if unbatched else (layers, batch, hidden)
        if count > 1:
            if not isinstance(state, (tuple, list)) or len(state) != count:
                raise TypeError(f"state: expected a pair ({', '.join(self._state_names)}) of arrays of shape "
                                f"{shape}, got {type(state).__name__}")
        elif isinstance(state, (tuple, list)):
            raise TypeError(f"state: expected one array of shape {shape}, got a {type(state).__name__}")
        else:
            state = (state,)
        parts = []
        for k in range(count):
            name = self._part_names[k]
            array = self._convert(name, state[k])
            if array.shape != shape:
                meaning = ("(num_layers, H) for an unbatched x_t of shape (I,)" if unbatched else
                           f"(num_layers, B, H) with B = {batch}, the batch of x_t")
                raise ValueError(f"{name}: expected shape {shape} {meaning}, got {tuple(array.shape)}")
            parts.append(array.reshape(layers, 1, hidden) if unbatched else array)
        return tuple(parts)

    def _result(self, y, states, unbatched):
        """``(y, state)`` as the caller gets them: the pair (h, c) for the LSTM; unbatched shapes."""
        if unbatched:
            y = y.reshape(self._hidden)
            states = tuple(s.reshape(self._layers, self._hidden) for s in states)
        return y, (states if len(self._state_names) > 1 else states[0])


class CompiledStepper(Stepper):
    """The cpu backend's step: one compiled call runs every layer
    (:func:`fastlstm.backends.cpu.stepping.step_kernel`) on the parameters where they are."""

    def __init__(self, config, params):
        from .backends.cpu.stepping import step_kernel

        super().__init__(config, params)
        converted = functional._check_params(config, HostArrays(), params)   # names, shapes, dtypes
        self._in_place = all(converted[name] is params[name] for name in params)
        cell = config.cell
        order = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") + cell.vector_names
        self._arrays = converted            # keeps every address below valid
        self._addresses = np.array([[converted[name + config.suffix(layer, 0)].ctypes.data for name in order]
                                    for layer in range(config.num_layers)], np.int64)
        rates = config.regularisation
        zoneout = (rates.zoneout, rates.zoneout_cell)[:cell.state_count]
        zoned = max((k + 1 for k, p in enumerate(zoneout) if p), default=0)
        self._zone = np.array(zoneout[:zoned], self._dtype)
        self._kernel = step_kernel(cell, self._dtype)
        self._zeros = None                  # the last zero state, (L, B, H): read, never written

    def current(self, config, params):
        return self._in_place and super().current(config, params)

    def _convert(self, name, value):
        if type(value) is np.ndarray and value.dtype is self._dtype:
            flags = value.flags
            if flags.c_contiguous and flags.writeable:   # (read-only arrays would compile another signature)
                return value
        array = as_float_array(name, value, self._dtype)
        return array if array.flags.writeable else array.copy()

    def __call__(self, x, state=None):
        x, batch, unbatched = self._input(x)
        state = self._state(state, batch, unbatched)
        layers, hidden = self._layers, self._hidden
        if state is None:
            zeros = self._zeros
            if zeros is None or zeros.shape[1] != batch:
                zeros = self._zeros = np.zeros((layers, batch, hidden), self._dtype)
            state = (zeros, zeros)
        out = np.empty((len(self._state_names), layers, batch, hidden), self._dtype)
        y = np.empty((batch, hidden), self._dtype)
        if self._kernel(x, state[0], state[-1], self._addresses, self._zone, out, y):
            raise RuntimeError("step: the prepared parameters no longer match the layer's shapes; this is a bug")
        return self._result(y, tuple(out), unbatched)


class ForwardStepper(Stepper):
    """Any backend's step through :func:`fastlstm.functional.forward` on a sequence of one step
    (the reference's and cuda's: correct, not fast)."""

    def __init__(self, config, params):
        super().__init__(config, params)
        self._backend = get_backend(config.backend)
        functional._check_params(config, self._backend.arrays, params)   # raise now, as the cpu's does

    def _convert(self, name, value):
        if self._backend.is_device_array(value):      # read in place, or converted on the device
            return self._backend.arrays.convert(name, value, self._dtype)
        return super()._convert(name, value)         # NumPy in, NumPy out

    def __call__(self, x, state=None):
        x, batch, unbatched = self._input(x)
        state = self._state(state, batch, unbatched)
        inputs = self.config.input_size
        sequence = x.reshape((batch, 1, inputs) if self.config.batch_first else (1, batch, inputs))
        if state is not None:
            state = state if len(state) > 1 else state[0]
        y, final, _ = functional.forward(self.config, self.params, sequence, state, tape=False, training=False)
        y = y[:, 0] if self.config.batch_first else y[0]
        return self._result(y, final if isinstance(final, tuple) else (final,), unbatched)
