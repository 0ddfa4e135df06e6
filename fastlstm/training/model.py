"""A recurrent stack with a linear readout: the model the training tools work on."""
import numpy as np

from ..validation import check_choice
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

    Attributes
    ----------
    params : dict
        Every parameter, ``"recurrent.<name>"`` and ``"readout.<name>"``: the layers' own arrays,
        so that an optimiser updating them in place trains the model.
    """

    def __init__(self, recurrent, out_features, head="sequence", seed=None):
        self.recurrent = recurrent
        self.head = check_choice("head", head, HEADS)
        config = recurrent.config
        self.readout = Linear(config.output_size, out_features, config.dtype.__name__, seed)

    @property
    def params(self):
        return {**{f"recurrent.{k}": v for k, v in self.recurrent.params.items()},
                **{f"readout.{k}": v for k, v in self.readout.params.items()}}

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
        y, final = self.recurrent(x, lengths=lengths, tape=tape, training=training, rng=rng)
        if self.head == "sequence":
            return self.readout(y)
        h = final[0] if isinstance(final, tuple) else final
        config = self.recurrent.config
        last = h[-config.directions:]                          # (D, B, H)
        return self.readout(np.concatenate(list(last), axis=-1))

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
            self.recurrent.backward(d_features, state_gradient_norms=state_gradient_norms)
        else:
            hidden = config.hidden_size
            dh = np.zeros(config.state_shape(self.recurrent.tape.batch), config.dtype)
            for d in range(config.directions):
                dh[-config.directions + d] = d_features[:, d * hidden:(d + 1) * hidden]
            dstate = (dh, np.zeros_like(dh)) if config.cell.kind == "lstm" else dh
            self.recurrent.backward(np.zeros(self._output_shape(), config.dtype), dstate,
                                    state_gradient_norms=state_gradient_norms)
        return {**{f"recurrent.{k}": v for k, v in self.recurrent.grads.items()},
                **{f"readout.{k}": v for k, v in self.readout.grads.items()}}

    def _output_shape(self):
        tape = self.recurrent.tape
        config = self.recurrent.config
        steps, batch = tape.steps, tape.batch
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
