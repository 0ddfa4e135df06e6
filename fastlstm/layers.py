"""The layer classes: a thin, stateful shell over :mod:`fastlstm.functional`."""
from __future__ import annotations

import inspect
import textwrap
import threading
import warnings
from collections.abc import Mapping

import numpy as np

from . import functional, streaming
from .backends import get_backend
from .cells import gru, lstm, make_cell, rnn
from .config import make_config
from .initialisation import check_forget_bias, init_parameters
from .regularisation import RATES, make_regularisation
from .validation import as_float_array, check_bool, check_names


def _layer_docstring(summary, equations, cell_options, calls, extra_regularisers=""):
    """A layer class's numpydoc docstring: the parts every layer shares around its own."""
    equations = textwrap.indent(equations, "    ")
    return f"""{summary}

    For each step, with x the step input and h (and c) the previous state::

{equations}
    Parameters
    ----------
    input_size : int
        I, the features of each step's input.
    hidden_size : int
        H, the units of each state.
    num_layers : int, default 1
        Layers stacked: layer k > 0 reads layer k − 1's output. Every argument after this
        one is keyword-only.
    bidirectional : bool, default False
        Run each layer forwards and backwards in time; its output concatenates the two
        along features (forward first), and reverse-direction parameters end in ``_reverse``.
    batch_first : bool, default False
        ``x`` and ``y`` are (B, T, features) instead of (T, B, features).
    bias : bool, default True
        ``False``: no ``bias_ih``/``bias_hh`` parameters (PyTorch's ``bias=False``).
{cell_options}    dtype : {{"float32", "float64"}}, default "float32"
    backend : {{"cpu", "reference", "cuda"}}, default "cpu"
    seed : int or None
        Seed of the initialisation and of the regularisers' masks.
    init : {{"uniform", "keras", "orthogonal"}}, default "uniform"
        The initialisation scheme (:mod:`fastlstm.initialisation`): ``"uniform"`` is PyTorch's
        U(−1/√H, 1/√H); ``"keras"`` Glorot-uniform ``weight_ih``, orthogonal ``weight_hh``, zero
        biases (and an LSTM forget bias of 1); ``"orthogonal"`` orthogonal gate blocks, zero biases.
    dropout : float in [0, 1)
        Dropout on each layer's output but the last's (PyTorch's ``dropout``).
    input_dropout, recurrent_dropout : float in [0, 1)
        Variational dropout of the layer input and of the state feeding the gates: one mask
        per sequence, drawn per call, used at every step (Keras' ``dropout``/``recurrent_dropout``).
    zoneout : float in [0, 1)
        Each unit of h keeps its previous value with this probability (Krueger et al. 2017).
{extra_regularisers}    weight_dropout : float in [0, 1)
        DropConnect on ``weight_hh``, one mask per call (AWD-LSTM).

    Regularisers act in training mode only (the default; :meth:`train`, :meth:`eval`, or
    ``training=`` per call); :mod:`fastlstm.regularisation` states their exact semantics.

    Calls: {calls}
    States are (num_layers·D, B, H), layer-major then direction, D = 2 if bidirectional. An
    unbatched ``x`` of shape (T, I) gives ``y`` (T, D·H) and states (num_layers·D, H).
    """


class _OneCallAtATime:
    """Holds a layer's lock for one call (a class: a generator-based context manager costs a
    microsecond more, a tenth of a small inference call)."""

    __slots__ = ("layer", "method")

    def __init__(self, layer, method):
        self.layer, self.method = layer, method

    def __enter__(self):
        if not self.layer._busy.acquire(blocking=False):
            raise RuntimeError(
                f"{self.method}: this {type(self.layer).__name__} is running a forward or backward in another "
                f"thread; a layer keeps its last forward's tape, so one object serves one thread at a time. Use a "
                f"layer per thread, or fastlstm.functional.forward/backward, which pass the tape explicitly")

    def __exit__(self, *exception):
        self.layer._busy.release()


class _RecurrentLayer:
    """Parameters, the tape of the last forward, and the gradients of the last backward."""

    def __init__(self, cell, input_size, hidden_size, num_layers, bidirectional, batch_first,
                 dtype, backend, seed, bias=True, init="uniform", forget_bias=None, **rates):
        if rates.get("dropout") and num_layers == 1:
            warnings.warn(f"dropout={rates['dropout']} acts between stacked layers, after every layer but the "
                          f"last: with num_layers=1 it does nothing", UserWarning, stacklevel=3)
        self.config = make_config(cell, input_size, hidden_size, num_layers, bidirectional,
                                  batch_first, dtype, backend, make_regularisation(cell, **rates), bias)
        get_backend(self.config.backend)  # backend="cuda" without a GPU fails here, clearly
        forget_bias = check_forget_bias(cell, forget_bias, self.config.bias)
        self._params = init_parameters(self.config, seed, init, forget_bias)      # checks seed and init
        self._initialisation = {"seed": seed, "init": init}
        if forget_bias is not None:
            self._initialisation["forget_bias"] = forget_bias
        # the masks' stream: reproducible from seed, independent of the initialisation's
        self.rng = np.random.default_rng(None if seed is None else [seed, 1])
        self.training = True
        self.grads = None
        self.state_gradient_norms = None
        self._tape = None
        self._tape_thread = None      # the thread whose forward made the tape
        self._inference = False
        self._busy = threading.Lock()
        self._stepper = None          # streaming.Stepper of step(), prepared on its first call

    def __getstate__(self):
        state = dict(self.__dict__)
        del state["_busy"]
        state["_stepper"] = None      # compiled code and the parameters' addresses: prepared again
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._busy = threading.Lock()

    def _one_call_at_a_time(self, method):
        """A context manager raising RuntimeError, before anything runs, when another thread is
        inside a call of this layer."""
        return _OneCallAtATime(self, method)

    def train(self, mode=True):
        """Training mode (the default): forwards apply the regularisers with fresh masks.

        Returns the layer, so that ``layer.train()`` and ``layer.eval()`` chain.
        """
        self.training = check_bool("mode", mode)
        return self

    def eval(self):
        """Inference mode: no dropout; zoneout mixes in its expectation. Deterministic."""
        return self.train(False)

    @property
    def params(self):
        """dict: parameter name -> ndarray, PyTorch's names and shapes (the README's "Contract").

        Assign a whole dict, or replace or update entries in place; names and shapes are
        checked at the next forward. The backward uses the values the forward ran with,
        so update parameters after ``backward``, not between ``forward`` and ``backward``.
        """
        return self._params

    @params.setter
    def params(self, value):
        if not isinstance(value, dict):
            raise TypeError(f"params: expected a dict of arrays, got {type(value).__name__}")
        self._params = dict(value)

    @property
    def tape(self):
        """The :class:`fastlstm.functional.Tape` of the last forward; None after ``tape=False``.

        :mod:`fastlstm.introspection` reads the gate values from it.
        """
        return self._tape

    def __call__(self, x, state=None, lengths=None, *, tape=True, training=None, rng=None):
        return self.forward(x, state, lengths, tape=tape, training=training, rng=rng)

    def forward(self, x, state=None, lengths=None, *, tape=True, training=None, rng=None):
        """Run the layer forward and keep the tape for :meth:`backward`.

        Parameters
        ----------
        x : array_like, shape (T, B, I), or (B, T, I) with ``batch_first=True``
        state : optional initial state, each (num_layers·D, B, H); zeros when ``None``
        lengths : optional (B,) integers in [0, T], each sequence's number of valid steps
        tape : bool, default True
            ``False`` runs inference: nothing is kept for :meth:`backward` (faster, less
            memory), and a following ``backward`` raises.
        training : bool, optional
            Overrides :attr:`training` (set by :meth:`train` / :meth:`eval`) for this call.
        rng : numpy.random.Generator, optional
            Draw this call's masks from ``rng`` instead of the layer's own :attr:`rng`.

        Returns
        -------
        y : ndarray, shape (T, B, D·H), or (B, T, D·H) with ``batch_first=True``
        final_state : the state after the last step, shaped like ``state``
        """
        with self._one_call_at_a_time("forward"):
            self._tape = None
            self._inference = not tape
            training = self.training if training is None else check_bool("training", training)
            y, final_state, self._tape = functional.forward(self.config, self._params, x, state, lengths, tape=tape,
                                                            training=training, rng=self.rng if rng is None else rng)
            self._tape_thread = threading.get_ident()
            return y, final_state

    def backward(self, dy, dstate=None, *, state_gradient_norms=False):
        """Gradients of the last forward; sets (does not accumulate) :attr:`grads`.

        Parameters
        ----------
        dy : array_like, the shape of the last forward's ``y``
        dstate : optional gradient with respect to the final state, shaped like it
        state_gradient_norms : bool, default False
            Also set :attr:`state_gradient_norms`: ‖∂L/∂h_t‖, shape (num_layers, D, T, B),
            NaN past each sequence's end (:mod:`fastlstm.introspection`).

        Returns
        -------
        dx : ndarray, the shape of ``x``
        dstate0 : gradient with respect to the initial state, shaped like the state
        """
        with self._one_call_at_a_time("backward"):
            if self._tape is None and self._inference:
                raise RuntimeError("backward: the last forward ran with tape=False (inference) and kept "
                                   "nothing to differentiate; run forward with tape=True")
            if self._tape is None:
                raise RuntimeError("backward: call forward first; there is no forward to differentiate")
            if self._tape_thread != threading.get_ident():
                raise RuntimeError(
                    "backward: the last forward of this layer ran in another thread, which may since have "
                    "replaced the tape; run forward and backward in one thread, or use "
                    "fastlstm.functional.forward/backward, which pass the tape explicitly")
            self.grads = None  # the previous gradients are not kept alive through this backward
            self.state_gradient_norms = None
            result = functional.backward(self._tape, dy, dstate, state_gradient_norms=state_gradient_norms)
            self.grads, self.state_gradient_norms = result.grads, result.norms
            return result.dx, result.dstate

    def step(self, x_t, state=None):
        """One step of inference: what :meth:`forward` computes for one time step with
        ``training=False, tape=False`` (no dropout, zoneout at its expectation, every layer).

        Run it in a loop to stream a sequence: T calls, each fed the state the last returned,
        give the same outputs as one :meth:`forward` of the T steps. With ``backend="cpu"`` one
        compiled call runs every layer, in the calling thread (prepared on the first call;
        parameters updated in place or reassigned are used by the next call); other backends
        run :meth:`forward` on one step. A bidirectional layer cannot stream.

        Parameters
        ----------
        x_t : array_like, shape (B, I), or (I,) for one unbatched sequence
        state : optional, the state before the step, shaped like :meth:`forward`'s final state:
            (num_layers, B, H) each, ``(h, c)`` for the LSTM; (num_layers, H) when ``x_t`` is
            unbatched. ``None`` means zeros. Never modified.

        Returns
        -------
        y_t : ndarray, shape (B, H), or (H,): the top layer's new h
        state : the state after the step, new arrays shaped like ``state``

        Raises
        ------
        ValueError
            For a bidirectional layer, and for an ``x_t`` or ``state`` of the wrong shape.
        """
        stepper = getattr(self, "_stepper", None)
        if stepper is None or not stepper.current(self.config, self._params):
            stepper = self._stepper = streaming.prepare(self.config, self._params)
        return stepper(x_t, state)

    def state_dict(self):
        """A copy of every parameter: name -> ndarray, PyTorch's names (``module.state_dict()``).

        Returns
        -------
        dict
            New arrays, in the order of :meth:`fastlstm.config.LayerConfig.parameter_shapes`.
        """
        return {name: np.array(self._params[name], copy=True) for name in self.config.parameter_shapes()}

    def load_state_dict(self, state_dict):
        """Set every parameter from ``state_dict`` (PyTorch's names; e.g. a ``state_dict()`` or
        ``torch_module.state_dict()`` converted with ``{k: v.numpy() ...}``).

        The names must be exactly this layer's and the shapes theirs; values are converted to
        the layer's dtype and copied (the layer never shares memory with ``state_dict``).
        Nothing changes when any entry is wrong.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict: expected a mapping of parameter name -> array, "
                            f"got {type(state_dict).__name__}")
        expected = self.config.parameter_shapes()
        check_names("state_dict", state_dict, expected)
        loaded = {}
        for name, shape in expected.items():
            value = np.array(as_float_array(f"state_dict[{name!r}]", state_dict[name], self.config.dtype),
                             copy=True)
            if value.shape != shape:
                raise ValueError(f"state_dict[{name!r}]: expected shape {shape}, got {value.shape}")
            loaded[name] = value
        self._params = loaded

    def init_arguments(self):
        """The constructor's arguments: ``type(layer)(**layer.init_arguments())`` builds a layer of the
        same configuration (drawing its own parameters from the same seed and scheme).

        Returns
        -------
        dict
            Plain values (int, float, bool, str, None): JSON-serialisable.
        """
        c = self.config
        arguments = {"input_size": c.input_size, "hidden_size": c.hidden_size, "num_layers": c.num_layers,
                     "bidirectional": c.bidirectional, "batch_first": c.batch_first, "bias": c.bias,
                     **dict(c.cell.options), "dtype": c.dtype.__name__, "backend": c.backend,
                     **self._initialisation}
        for name in inspect.signature(type(self).__init__).parameters:
            if name in RATES:
                arguments[name] = getattr(c.regularisation, name)
        return arguments

    def __repr__(self):
        c = self.config
        return (f"{type(self).__name__}({c.input_size}, {c.hidden_size}, num_layers={c.num_layers}, "
                f"bidirectional={c.bidirectional}, batch_first={c.batch_first}, "
                f"cell={c.cell.label!r}, dtype={c.dtype.__name__!r}, backend={c.backend!r})")


class LSTM(_RecurrentLayer):
    __doc__ = _layer_docstring(
        "Long short-term memory layer, optionally with peephole connections (gate order i, f, g, o).",
        lstm.EQUATIONS,
        """    peephole : bool, default False
        Add the peepholes ``weight_ci``, ``weight_cf``, ``weight_co`` (H,) per layer-direction;
        without them the w_c* terms are absent.
    forget_bias : float or None, default None
        The forget gate's initial bias (its ``bias_ih`` block; its ``bias_hh`` block 0):
        Jozefowicz et al. (2015) recommend 1.0 for long memories. ``None``: the ``init`` scheme's.
""",
        "``y, (h_n, c_n) = lstm(x, state=None, lengths=None)`` and\n"
        "    ``dx, (dh0, dc0) = lstm.backward(dy, dstate=None)``.",
        """    zoneout_cell : float in [0, 1)
        Zoneout of the cell state c.
""")

    def __init__(self, input_size, hidden_size, num_layers=1, *, bidirectional=False, batch_first=False,
                 bias=True, peephole=False, dtype="float32", backend="cpu", seed=None, init="uniform",
                 forget_bias=None, dropout=0.0, input_dropout=0.0, recurrent_dropout=0.0, zoneout=0.0,
                 zoneout_cell=0.0, weight_dropout=0.0):
        super().__init__(make_cell("lstm", peephole=peephole), input_size, hidden_size, num_layers,
                         bidirectional, batch_first, dtype, backend, seed, bias, init, forget_bias, dropout=dropout,
                         input_dropout=input_dropout, recurrent_dropout=recurrent_dropout, zoneout=zoneout,
                         zoneout_cell=zoneout_cell, weight_dropout=weight_dropout)


class GRU(_RecurrentLayer):
    __doc__ = _layer_docstring(
        "Gated recurrent unit layer, in both published variants (gate order r, z, n).",
        gru.EQUATIONS,
        """    reset_after : bool, default True
        ``True``: PyTorch's, cuDNN's and ONNX's ``linear_before_reset=1``. ``False``: Cho et
        al. (2014), ONNX's ``linear_before_reset=0``, Keras' ``reset_after=False``.
""",
        "``y, h_n = gru(x, state=None, lengths=None)`` and ``dx, dh0 = gru.backward(dy, dstate=None)``.")

    def __init__(self, input_size, hidden_size, num_layers=1, *, bidirectional=False, batch_first=False,
                 bias=True, reset_after=True, dtype="float32", backend="cpu", seed=None, init="uniform",
                 dropout=0.0, input_dropout=0.0, recurrent_dropout=0.0, zoneout=0.0, weight_dropout=0.0):
        super().__init__(make_cell("gru", reset_after=reset_after), input_size, hidden_size,
                         num_layers, bidirectional, batch_first, dtype, backend, seed, bias, init, dropout=dropout,
                         input_dropout=input_dropout, recurrent_dropout=recurrent_dropout, zoneout=zoneout,
                         weight_dropout=weight_dropout)


class RNN(_RecurrentLayer):
    __doc__ = _layer_docstring(
        "Plain (Elman) recurrent layer.",
        rnn.EQUATIONS,
        """    nonlinearity : {"tanh", "relu"}, default "tanh"
        act. With ``"relu"`` activations are unbounded: values beyond the dtype's range
        become inf (and inf − inf NaN) as IEEE arithmetic says; nothing raises.
""",
        "``y, h_n = rnn(x, state=None, lengths=None)`` and ``dx, dh0 = rnn.backward(dy, dstate=None)``.")

    def __init__(self, input_size, hidden_size, num_layers=1, *, bidirectional=False, batch_first=False,
                 bias=True, nonlinearity="tanh", dtype="float32", backend="cpu", seed=None, init="uniform",
                 dropout=0.0, input_dropout=0.0, recurrent_dropout=0.0, zoneout=0.0, weight_dropout=0.0):
        super().__init__(make_cell("rnn", nonlinearity=nonlinearity), input_size, hidden_size,
                         num_layers, bidirectional, batch_first, dtype, backend, seed, bias, init, dropout=dropout,
                         input_dropout=input_dropout, recurrent_dropout=recurrent_dropout, zoneout=zoneout,
                         weight_dropout=weight_dropout)
