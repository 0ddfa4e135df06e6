"""The names every compiled copy of the cells' math and the backends' step templates binds.

Each is an :class:`~fastlstm.rebinding.Unbound` placeholder until a backend binds it
(:func:`fastlstm.rebinding.rebind`): the dtype's activations and constants, and the arities and
phase tables of a cell's :class:`~.spec.CellSpec`, which :func:`template_constants` computes
once for both backends. A cell module imports the activations and constants it uses from
here and declares only its own options' placeholders; the backends' templates import the rest.
"""
import numpy as np

from ..rebinding import Unbound

sigmoid = Unbound("sigmoid")
tanh = Unbound("tanh")
ONE = Unbound("ONE")
ZERO = Unbound("ZERO")
# the cell's compiled scalar math
cell_forward = Unbound("cell_forward")
cell_backward = Unbound("cell_backward")
# from the spec, by template_constants
GATES, STATES, FOLDED = Unbound("GATES"), Unbound("STATES"), Unbound("FOLDED")
ZERO_GATES, ZERO_STATES = Unbound("ZERO_GATES"), Unbound("ZERO_STATES")
ZERO_PLANES, ZERO_VECTORS = Unbound("ZERO_PLANES"), Unbound("ZERO_VECTORS")
FORWARD_PHASES, FORWARD_GATES = Unbound("FORWARD_PHASES"), Unbound("FORWARD_GATES")
FORWARD_SOURCES = Unbound("FORWARD_SOURCES")
BACKWARD_PHASES, BACKWARD_GATES = Unbound("BACKWARD_PHASES"), Unbound("BACKWARD_GATES")
BACKWARD_PROJECTS, STAGED = Unbound("BACKWARD_PROJECTS"), Unbound("STAGED")
READS_NEW, DIFFERS = Unbound("READS_NEW"), Unbound("DIFFERS")
# per loop: the regularisers that run inside it
RECURRENT_DROPOUT, ZONEOUT = Unbound("RECURRENT_DROPOUT"), Unbound("ZONEOUT")


def template_constants(spec, dtype):
    """The dtype's constants and the spec's arities and phase tables, by the names above.

    Parameters
    ----------
    spec : fastlstm.cells.spec.CellSpec
    dtype : numpy.dtype

    Returns
    -------
    dict
        Name -> value (numbers and tuples, frozen into every compiled copy).
    """
    zero = dtype.type(0)
    count = len(spec.gates)
    return dict(
        ONE=dtype.type(1), ZERO=zero,
        GATES=count, STATES=len(spec.states), FOLDED=spec.folded_gates,
        ZERO_GATES=(zero,) * count, ZERO_STATES=(zero,) * len(spec.states),
        ZERO_PLANES=(zero,) * len(spec.planes), ZERO_VECTORS=(zero,) * len(spec.vectors),
        FORWARD_PHASES=len(spec.forward), FORWARD_GATES=tuple(p.gates for p in spec.forward),
        FORWARD_SOURCES=tuple(p.source for p in spec.forward),
        BACKWARD_PHASES=len(spec.backward), BACKWARD_GATES=tuple(p.gates for p in spec.backward),
        BACKWARD_PROJECTS=tuple(p.projects for p in spec.backward),
        STAGED=tuple(p.projects != (0, count) for p in spec.backward),
        READS_NEW=spec.reads_new_state, DIFFERS=spec.recurrent_gradient_differs,
    )


class CompiledCell:
    """A cell's math compiled for one dtype, with the constants every template binds: what each
    backend's kernels object starts from.

    Parameters
    ----------
    cell : fastlstm.cells.Cell
    dtype : numpy.dtype
    activations : dict
        ``sigmoid`` and ``tanh`` as the backend compiled them for ``dtype``.
    compile_math : callable ``(function, suffix, bindings) -> compiled function``
        The backend's compiler of scalar math, which each copy is inlined into.

    Attributes
    ----------
    cell : fastlstm.cells.Cell
    spec : fastlstm.cells.spec.CellSpec
    dtype : numpy.dtype
    name : str, unique per cell, options and dtype
    constants : dict
        :func:`template_constants` plus ``cell_forward`` and ``cell_backward``, the compiled math.
    """

    def __init__(self, cell, dtype, activations, compile_math):
        self.cell, self.spec, self.dtype = cell, cell.spec, np.dtype(dtype)
        self.name = f"{self.spec.name}_{self.dtype.name}"
        self.constants = template_constants(self.spec, self.dtype)
        math = dict(activations, ONE=self.constants["ONE"], ZERO=self.constants["ZERO"], **dict(self.spec.bindings))
        self.constants.update(cell_forward=compile_math(cell.module.forward, self.name, math),
                              cell_backward=compile_math(cell.module.backward, self.name, math))
