"""Regularisers: dropout between layers, variational dropout, zoneout and DropConnect.

Rates are fixed per layer (:class:`Regularisation`, part of the layer's config). In
training mode each forward call draws its masks (:func:`draw_masks`) from a NumPy
generator and keeps them on the tape, so that a backward, or a test, can replay them; in
inference nothing is random: dropout is off and zoneout mixes in its expectation.

Semantics (the cells' equations with these changes; every keep-mask is inverted-scaled,
its kept entries are 1/(1 − p)):

- ``dropout``: the output of every layer but the last is multiplied by a (T, B, D·H) mask
  (PyTorch's ``nn.LSTM(dropout=p)``).
- ``input_dropout`` (variational, Gal & Ghahramani 2016; Keras ``dropout``): each layer's input
  x_t is multiplied by one (B, I) mask drawn per call and used at every step, the same for
  all gates and both directions.
- ``recurrent_dropout`` (variational; Keras ``recurrent_dropout``): the state feeding the gates
  through ``weight_hh`` is h_{t−1} ⊙ m, one (B, H) mask per layer-direction used at every
  step and by every gate (for the reset-before GRU: r ⊙ (h ⊙ m)); the state carried on
  (c, and the GRU's z ⊙ h) is not masked.
- ``zoneout`` / ``zoneout_cell`` (Krueger et al. 2017): after the cell has computed its new
  state, each unit keeps its previous value with probability p: h_t = d ⊙ h_{t−1} +
  (1 − d) ⊙ h̃_t with d ∈ {0, 1} drawn per step, unit and sequence (not scaled); in
  inference d = p. The LSTM's c likewise with ``zoneout_cell``; h̃_t is computed from the
  new, not zoned-out, c (o ⊙ tanh(f c_{t−1} + i g)), as in the paper.
- ``weight_dropout`` (DropConnect, Wan et al. 2013, as AWD-LSTM applies it): ``weight_hh``
  times one (G·H, H) mask per layer-direction and call; its gradient flows to the
  undropped weights through the same mask.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

RATES = ("dropout", "input_dropout", "recurrent_dropout", "zoneout", "zoneout_cell", "weight_dropout")


@dataclass(frozen=True)
class Regularisation:
    """A layer's regularisation rates, each a probability in [0, 1)."""

    dropout: float = 0.0
    input_dropout: float = 0.0
    recurrent_dropout: float = 0.0
    zoneout: float = 0.0
    zoneout_cell: float = 0.0
    weight_dropout: float = 0.0

    def __bool__(self):
        return bool(self.dropout or self.input_dropout or self.recurrent_dropout or self.zoneout
                    or self.zoneout_cell or self.weight_dropout)


def make_regularisation(cell, **rates):
    """Validate the rates (each a real number in [0, 1)) and build a :class:`Regularisation`."""
    checked = {}
    for name in RATES:
        value = rates.get(name, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name}: expected a probability in [0, 1), got {type(value).__name__}")
        if not 0.0 <= float(value) < 1.0:
            raise ValueError(f"{name}: expected a probability in [0, 1), got {value!r}")
        checked[name] = float(value)
    unknown = sorted(set(rates) - set(RATES))
    if unknown:
        raise TypeError(f"unexpected regularisation arguments {unknown}; expected some of {list(RATES)}")
    if checked["zoneout_cell"] and len(cell.spec.states) < 2:
        raise ValueError(f"zoneout_cell: only the LSTM has a cell state; got {checked['zoneout_cell']} "
                         f"for a {cell.label}")
    return Regularisation(**checked)


@dataclass
class Masks:
    """Everything random (or, in inference, expected) in one forward call.

    Per layer (lists of length ``num_layers``); ``None`` where a regulariser is off.

    Attributes
    ----------
    inputs : list of ndarray (B, I_l)
        Inverted-scaled keep-mask on the layer's input, every step and direction.
    outputs : list of ndarray (T, B, D·H)
        Inverted-scaled keep-mask on the layer's output (never on the last layer).
    recurrent : list of list of ndarray (B, H)
        Per direction, inverted-scaled keep-mask on h_{t−1} feeding ``weight_hh``.
    weights : list of list of ndarray (G·H, H)
        Per direction, inverted-scaled keep-mask on ``weight_hh``.
    zoneout : list of list of tuple
        Per direction, (d_h, d_c): the zoneout keep-previous indicators, each (T, B, H) in
        natural time in training, a 0-d array holding p in inference, or None.
    """

    inputs: list
    outputs: list
    recurrent: list
    weights: list
    zoneout: list

    def as_dtype(self, dtype):
        """These masks in ``dtype`` (a replay may run at another precision than the draw)."""
        def cast(value):
            if value is None:
                return None
            if isinstance(value, (list, tuple)):
                return type(value)(cast(v) for v in value)
            return np.asarray(value).astype(dtype, copy=False)
        return Masks(*(cast(getattr(self, f.name)) for f in fields(self)))


def _keep(rng, p, shape, dtype):
    """An inverted-scaled keep-mask: 0 with probability p, else 1/(1 − p)."""
    from .bernoulli import bernoulli   # Numba: loaded on the first regularised call only

    return bernoulli(rng, p, shape, 0.0, 1.0 / (1.0 - p), dtype)


def _zoneout(rng, p, shape, dtype, training):
    if not p:
        return None
    if not training:
        return np.asarray(p, dtype)
    from .bernoulli import bernoulli

    return bernoulli(rng, p, shape, 1.0, 0.0, dtype)


def needs_masks(config, training):
    """Whether a forward call of ``config`` has masks (:func:`draw_masks` gives None otherwise):
    some rate is set, and the call trains or zoneout mixes in its expectation."""
    rates = config.regularisation
    return bool(rates) and bool(training or rates.zoneout or rates.zoneout_cell)


def draw_masks(config, steps, batch, training, rng):
    """The masks of one forward call.

    Parameters
    ----------
    config : fastlstm.config.LayerConfig
    steps, batch : int
    training : bool
        ``False``: no dropout masks, zoneout at its expectation; ``rng`` is not used.
    rng : numpy.random.Generator

    Returns
    -------
    Masks, or None when the call needs none (every rate 0; or inference without zoneout).
    Draws, in this order, per layer: the input mask, then per direction the recurrent,
    weight and zoneout (h, then c) masks, then the output mask.
    """
    if not needs_masks(config, training):
        return None
    rates = config.regularisation
    dtype, hidden, directions = config.dtype, config.hidden_size, config.directions
    masks = Masks([], [], [], [], [])
    for layer in range(config.num_layers):
        inputs = config.layer_input_size(layer)
        on = training
        masks.inputs.append(_keep(rng, rates.input_dropout, (batch, inputs), dtype)
                            if on and rates.input_dropout else None)
        recurrent, weights, zoneout = [], [], []
        for _ in range(directions):
            recurrent.append(_keep(rng, rates.recurrent_dropout, (batch, hidden), dtype)
                             if on and rates.recurrent_dropout else None)
            weights.append(_keep(rng, rates.weight_dropout, (config.cell.gates * hidden, hidden), dtype)
                           if on and rates.weight_dropout else None)
            zoneout.append((_zoneout(rng, rates.zoneout, (steps, batch, hidden), dtype, training),
                            _zoneout(rng, rates.zoneout_cell, (steps, batch, hidden), dtype, training)))
        masks.recurrent.append(recurrent)
        masks.weights.append(weights)
        masks.zoneout.append(zoneout)
        last = layer == config.num_layers - 1
        masks.outputs.append(_keep(rng, rates.dropout, (steps, batch, directions * hidden), dtype)
                             if on and rates.dropout and not last else None)
    return masks
