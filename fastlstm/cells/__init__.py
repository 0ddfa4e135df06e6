"""The recurrent cells, each defined once, in a module of its own.

A cell module (:mod:`.lstm`, :mod:`.gru`, :mod:`.rnn`) holds the cell's equations in its
docstring, its options (``OPTIONS``, validated by ``check_options``), its named variants
(``VARIANTS``), its :class:`~.spec.CellSpec` (``spec(**options)``) and its scalar math
(``forward`` and ``backward``, for one hidden unit; see :mod:`.spec`), which every backend
compiles for itself: ``numba.njit`` in the CPU loops, ``numba.cuda.jit(device=True)`` in the
GPU kernels. The float64 reference (:mod:`fastlstm.reference`) transcribes the same
equations independently, on whole arrays.

Adding a cell: a module here with those names, its entry in ``MODULES``, and its reference
equations.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from . import gru, lstm, rnn
from .spec import CellSpec

MODULES = {"lstm": lstm, "gru": gru, "rnn": rnn}
CELL_KINDS = tuple(MODULES)
# Every named variant of every cell: name -> (kind, options); tests, check and bench use these.
VARIANTS = {name: (kind, dict(options)) for kind, module in MODULES.items()
            for name, options in module.VARIANTS.items()}


@dataclass(frozen=True)
class Cell:
    """One recurrent cell with its options; hashable, so it keys compiled kernels.

    Parameters
    ----------
    kind : {"lstm", "gru", "rnn"}
    options : tuple of (str, value)
        Every option of the kind, by name (``peephole`` for the LSTM, ``reset_after`` for the
        GRU, ``nonlinearity`` for the RNN), as :func:`make_cell` checked them. Each is also an
        attribute: ``cell.peephole``.
    """

    kind: str
    options: tuple = ()

    def __getattr__(self, name):
        if name.startswith("__"):      # unpickling asks for __setstate__ before the fields exist
            raise AttributeError(name)
        for key, value in object.__getattribute__(self, "options"):
            if key == name:
                return value
        raise AttributeError(f"{type(self).__name__} {self.kind!r} has no option {name!r}")

    @property
    def spec(self) -> CellSpec:
        """The cell's :class:`~.spec.CellSpec`."""
        return _spec(self.kind, self.options)

    @property
    def module(self):
        """The cell's module: its math and spec."""
        return MODULES[self.kind]

    @property
    def label(self) -> str:
        """A short human-readable name, e.g. ``"LSTM+peephole"`` or ``"GRU(reset_after=False)"``."""
        return self.spec.label

    @property
    def gates(self) -> int:
        """Number of gate blocks of width H in ``weight_ih`` and ``weight_hh``."""
        return len(self.spec.gates)

    @property
    def state_count(self) -> int:
        """Number of state tensors: 2 for the LSTM (h, c), 1 otherwise."""
        return len(self.spec.states)

    @property
    def vector_names(self) -> tuple:
        """Names of the (H,)-shaped element-wise parameters (the LSTM's peepholes)."""
        return self.spec.vectors

    def parameter_shapes(self, input_size: int, hidden_size: int) -> dict:
        """Names and shapes of one layer-direction's parameters, in a fixed order.

        Returns
        -------
        dict
            ``weight_ih`` (G·H, I), ``weight_hh`` (G·H, H), ``bias_ih`` (G·H,),
            ``bias_hh`` (G·H,), then the element-wise vectors (H,) when the cell has any.
        """
        gh = self.gates * hidden_size
        shapes = {"weight_ih": (gh, input_size), "weight_hh": (gh, hidden_size), "bias_ih": (gh,),
                  "bias_hh": (gh,)}
        for name in self.vector_names:
            shapes[name] = (hidden_size,)
        return shapes


@lru_cache(maxsize=None)
def _spec(kind, options):
    return MODULES[kind].spec(**dict(options))


def make_cell(kind: str, **options) -> Cell:
    """Build a :class:`Cell`, rejecting unknown kinds, options and option values clearly.

    Options left out take the cell's defaults (its module's ``OPTIONS``); an option of
    another cell is an error naming the cells that have it.
    """
    if kind not in MODULES:
        raise ValueError(f"cell kind: expected one of {CELL_KINDS}, got {kind!r}")
    module = MODULES[kind]
    unknown = sorted(set(options) - set(module.OPTIONS))
    if unknown:
        raise TypeError(f"{kind}: unexpected options {unknown}; its options are {sorted(module.OPTIONS)}")
    checked = module.check_options(**{**module.OPTIONS, **options})
    return Cell(kind, tuple(sorted(checked.items())))


def make_variant(name: str) -> Cell:
    """The :class:`Cell` of a named variant of ``VARIANTS`` (e.g. ``"gru_reset_before"``)."""
    if name not in VARIANTS:
        raise ValueError(f"cell variant: expected one of {tuple(VARIANTS)}, got {name!r}")
    kind, options = VARIANTS[name]
    return make_cell(kind, **options)
