"""A recurrent stack with a linear readout: the model the training tools work on."""
import numpy as np

from ..validation import check_bool, check_choice
from .readout import Linear

HEADS = ("sequence", "final")


class SequenceModel:
    """A recurrent layer (``fastlstm.LSTM``/``GRU``/``RNN``) followed by a :class:`Linear` readout.

    Parameters
    ----------
    recurrent : fastlstm layer
    out_features : int
    head : {"sequence", "final"}
        ``"sequence"``: the readout of every step's output, (T, B, O) (or (B, T, O) with
        ``batch_first``). ``"final"``: the readout of the last layer's final hidden state,
        both directions concatenated, (B, O): one prediction per sequence (after its last
        valid step with ``lengths``).
    seed : int, optional
        The readout's initialisation.
    learn_initial_state : bool, default False
        Learn the recurrent layer's initial state: parameters ``"initial_state.h"`` (and, for
        the LSTM, ``"initial_state.c"``), each (num_layers·D, H), zeros at first, shared by
        every sequence of a batch; their gradients are the initial-state gradients the
        backward returns, summed over the batch.

    Attributes
    ----------
    params : dict
        Every parameter, ``"recurrent.<name>"``, ``"readout.<name>"`` (and ``"initial_state.<h|c>"``):
        the layers' own arrays, so that an optimiser updating them in place trains the model.
    """

    def __init__(self, recurrent, out_features, head="sequence", seed=None, learn_initial_state=False):
        self.recurrent = recurrent
        self.head = check_choice("head", head, HEADS)
        config = recurrent.config
        self.readout = Linear(config.output_size, out_features, config.dtype.__name__, seed)
        self.initial_state = None
        if check_bool("learn_initial_state", learn_initial_state):
            shape = (config.num_layers * config.directions, config.hidden_size)
            self.initial_state = {name: np.zeros(shape, config.dtype) for name in config.cell.spec.states}

    @property
    def out_features(self):
        return self.readout.out_features

    @property
    def params(self):
        return {**{f"recurrent.{k}": v for k, v in self.recurrent.params.items()},
                **{f"readout.{k}": v for k, v in self.readout.params.items()},
                **{f"initial_state.{k}": v for k, v in (self.initial_state or {}).items()}}

    @property
    def time_axis(self):
        """Where time is in the model's inputs and sequence outputs."""
        return 1 if self.recurrent.config.batch_first else 0

    def forward(self, x, lengths=None, training=None, rng=None, tape=True):
        """The readout's output: (T, B, O) / (B, T, O) for ``head="sequence"``, (B, O) for ``"final"``.

        Parameters
        ----------
        x : array_like, (T, B, I), or (B, T, I) with ``batch_first``
        lengths : array_like of int, shape (B,), optional
        training : bool, optional
            Overrides the recurrent layer's train/eval mode for this call (regularisers).
        rng : numpy.random.Generator, optional
        tape : bool, default True
            ``False``: inference only, nothing kept for :meth:`backward` (faster, less memory).
        """
        y, final = self.recurrent(x, self._initial_state(x), lengths=lengths, tape=tape, training=training,
                                  rng=rng)
        h = final[0] if isinstance(final, tuple) else final
        self._final_shape = h.shape
        if self.head == "sequence":
            return self.readout(y)
        config = self.recurrent.config
        last = h[-config.directions:]                          # (D, B, H), or (D, H) unbatched
        return self.readout(np.concatenate(list(last), axis=-1))

    def _initial_state(self, x):
        """The learnt initial state broadcast over x's batch (None when it is not learnt)."""
        if self.initial_state is None:
            return None
        shape = np.shape(x)
        if len(shape) == 2:                                    # one unbatched sequence
            states = tuple(self.initial_state.values())
        else:
            batch = shape[0] if self.recurrent.config.batch_first else shape[1] if len(shape) > 1 else 0
            states = tuple(np.broadcast_to(s[:, None, :], (s.shape[0], batch, s.shape[1]))
                           for s in self.initial_state.values())
        return states if len(states) > 1 else states[0]

    __call__ = forward

    def backward(self, d_output, state_gradient_norms=False):
        """Gradients of every parameter (keyed like :attr:`params`) from the loss's gradient.

        Parameters
        ----------
        d_output : ndarray, the shape of the last forward's output
        state_gradient_norms : bool
            Also record ‖∂L/∂h_t‖ in ``recurrent.state_gradient_norms`` (:mod:`fastlstm.introspection`).

        Returns
        -------
        dict of ndarray
        """
        d_features = self.readout.backward(d_output)
        config = self.recurrent.config
        if self.head == "sequence":
            _, dstate0 = self.recurrent.backward(d_features, state_gradient_norms=state_gradient_norms)
        else:
            hidden = config.hidden_size
            dh = np.zeros(self._final_shape, config.dtype)
            for d in range(config.directions):
                dh[-config.directions + d] = d_features[..., d * hidden:(d + 1) * hidden]
            dstate = (dh, np.zeros_like(dh)) if config.cell.kind == "lstm" else dh
            _, dstate0 = self.recurrent.backward(np.zeros(self._output_shape(), config.dtype), dstate,
                                                 state_gradient_norms=state_gradient_norms)
        grads = {**{f"recurrent.{k}": v for k, v in self.recurrent.grads.items()},
                 **{f"readout.{k}": v for k, v in self.readout.grads.items()}}
        if self.initial_state is not None:
            dstate0 = dstate0 if isinstance(dstate0, tuple) else (dstate0,)
            for name, d in zip(self.initial_state, dstate0):
                grads[f"initial_state.{name}"] = d if d.ndim == 2 else d.sum(axis=1)
        return grads

    def _output_shape(self):
        tape = self.recurrent.tape
        config = self.recurrent.config
        steps, batch = tape.steps, tape.batch
        if tape.unbatched:
            return (steps, config.output_size)
        return (batch, steps, config.output_size) if config.batch_first else (steps, batch, config.output_size)

    def loss_and_gradients(self, loss, x, target, lengths=None, training=None, rng=None):
        """One forward and backward: (loss value, gradients keyed like :attr:`params`).

        ``loss`` is one of :mod:`fastlstm.training.losses` (``loss(output, target, lengths,
        time_axis)``); with ``head="final"`` lengths only shape the recurrent pass.
        """
        value, d_output = self.apply_loss(loss, self.forward(x, lengths, training, rng), target, lengths)
        return value, self.backward(d_output)

    def apply_loss(self, loss, output, target, lengths=None):
        """``loss`` (one of :mod:`fastlstm.training.losses`) of an output of this model's head:
        (value, gradient with respect to ``output``); lengths mask the steps of a sequence head."""
        if self.head == "sequence":
            return loss(output, target, lengths, self.time_axis)
        return loss(output, target)
