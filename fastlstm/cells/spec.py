"""What a backend reads about a cell: its :class:`CellSpec`.

A cell module (``lstm.py``, ``gru.py``, ``rnn.py``) states its spec and writes its scalar
math once. The backends' loops are generic: they gather one hidden unit's pre-activations,
states, element-wise parameters and saved values into tuples, call the cell's math, and
scatter what it returns; every decision that differs between cells (how many gates, which
biases fold into the input projection, what is projected in which phase, what the backward
reads) is a field of the spec.

The math of a cell, for one hidden unit u of one sequence at one step::

    forward(phase, ax, ah, state, rec, vectors, saved) -> (new_state, planes)
    backward(phase, dnew, saved, state, new, rec, vectors, projected) -> (dax, dah, dprev, drec)

``ax`` (G values) is the input side of each gate's pre-activation (``W_i x + b_i`` plus the
folded part of ``b_h``), ``ah`` (G values) the recurrent side (``W_h rec`` plus the unfolded
part of ``b_h``); ``state`` the S states before the step, ``rec`` the recurrent input
``h ⊙ m`` (``h`` without recurrent dropout), ``vectors`` the V element-wise parameters,
``saved`` the K tape planes written so far in this step (zeros in phase 0). ``new_state``
(S values) is the cell's new state before zoneout, ``planes`` (K values) what the tape keeps.

Backward, ``dnew`` is the gradient reaching the cell's new states (zeros after phase 0),
``new`` the new states before zoneout (where ``reads_new_state`` says the math reads them),
``projected`` the gradient the previous backward phase sent back through ``weight_hh`` (0 in
phase 0). The math returns the gradients of ``ax`` and ``ah`` for its phase's gates, the
gradients reaching the previous states directly (not through ``weight_hh``), and ``drec``, the
gradient reaching the recurrent input directly. Everything through ``weight_hh`` is the loop's.
"""
from __future__ import annotations

from dataclasses import dataclass

# A forward phase whose projection reads the recurrent input h ⊙ m (and not a tape plane).
RECURRENT_INPUT = -1
# An introspected activation that is the cell's new state 0 (h) rather than a tape plane.
NEW_STATE = -1


@dataclass(frozen=True)
class ForwardPhase:
    """One forward phase: a projection through some rows of ``weight_hh``, then the math.

    Attributes
    ----------
    gates : (int, int)
        The gate blocks [g0, g1) whose ``ah`` this phase projects (the others are 0 in ``ah``).
    source : int
        What is projected: ``RECURRENT_INPUT`` (h ⊙ m), or the tape plane of that index
        (written by an earlier phase of the same step, e.g. the reset-before GRU's r ⊙ h).
    """

    gates: tuple
    source: int = RECURRENT_INPUT


@dataclass(frozen=True)
class BackwardPhase:
    """One backward phase: the math, then a projection back through some rows of ``weight_hh``.

    Attributes
    ----------
    gates : (int, int)
        The gate blocks [g0, g1) whose ``dax``/``dah`` this phase's math returns.
    projects : (int, int)
        The gate blocks whose ``dah`` are then sent back through their ``weight_hh`` rows: to the
        next phase's ``projected`` (every phase but the last), or, in the last phase, to the
        recurrent input (and so, times the dropout mask, to h).
    """

    gates: tuple
    projects: tuple


@dataclass(frozen=True)
class VectorGradient:
    """The gradient of an element-wise parameter: Σ over steps and sequences of one gate's
    ``dax`` times one state.

    Attributes
    ----------
    vector : int, its index in ``CellSpec.vectors``
    gate : int
    state : int
    new : bool
        The state the step produced (before zoneout) instead of the one it started from.
    """

    vector: int
    gate: int
    state: int
    new: bool


@dataclass(frozen=True)
class Activation:
    """A value introspection reports (:mod:`fastlstm.introspection`).

    Attributes
    ----------
    name : str, e.g. ``"forget"``
    plane : int, the tape plane holding it, or ``NEW_STATE`` (the cell's new h, before zoneout)
    saturates : {"sigmoid", "tanh", "relu"}
        Where its gradient vanishes: near 0 and 1, near ±1, or at 0.
    """

    name: str
    plane: int
    saturates: str


@dataclass(frozen=True)
class CellSpec:
    """Everything about a cell that is not its math.

    Attributes
    ----------
    kind : str
    label : str, e.g. ``"LSTM+peephole"``
    gates : tuple of str
        Gate blocks of width H in ``weight_ih``/``weight_hh``, in the weights' order.
    states : tuple of str
        The state tensors, h first.
    vectors : tuple of str
        The element-wise (H,) parameters the math reads, in its order.
    planes : tuple of str
        The values saved on the tape per step and unit, in their order.
    folded_gates : int
        The leading gate blocks of ``bias_hh`` added to the input projection before the loop;
        the others are added to ``ah`` inside it.
    forward, backward : tuple of ForwardPhase, tuple of BackwardPhase
        The phases of one step. In a loop that splits the hidden units over threads, each
        projection is preceded by a barrier.
    reads_new_state : tuple of bool
        Per state: whether the backward (its math, or a vector gradient) reads the state the
        step produced. Under zoneout the cell's own new value is then kept apart for it.
    recurrent_gradient_differs : bool
        Whether some gate's ``dah`` differs from its ``dax`` (so the backward stores both).
    vector_gradients : tuple of VectorGradient
    activations : tuple of Activation
    bindings : tuple of (str, object)
        The options the math reads as module globals, bound when it is compiled.
    """

    kind: str
    label: str
    gates: tuple
    states: tuple
    vectors: tuple
    planes: tuple
    folded_gates: int
    forward: tuple
    backward: tuple
    reads_new_state: tuple
    recurrent_gradient_differs: bool
    vector_gradients: tuple
    activations: tuple
    bindings: tuple

    def __post_init__(self):
        count = len(self.gates)
        for phase in self.forward:
            assert 0 <= phase.gates[0] < phase.gates[1] <= count, phase
            assert phase.source == RECURRENT_INPUT or 0 <= phase.source < len(self.planes), phase
        # the weight_hh gradient's rows are the forward phases' gates, in order
        assert [g for phase in self.forward for g in range(*phase.gates)] == list(range(count)), self.forward
        for phase in self.backward:
            assert 0 <= phase.gates[0] < phase.gates[1] <= count, phase
            assert 0 <= phase.projects[0] < phase.projects[1] <= count, phase
        assert len(self.reads_new_state) == len(self.states)
        assert 0 < self.folded_gates <= count

    @property
    def name(self) -> str:
        """A unique identifier of the cell and its options, usable in function names."""
        options = "_".join(f"{k}{int(v) if isinstance(v, bool) else v}" for k, v in self.bindings)
        return f"{self.kind}_{options}" if options else self.kind
