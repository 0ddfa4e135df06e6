"""Compile one template function into several specialised, cacheable Numba functions.

The time loop is written once and the cells differ only in their step functions; options
such as ``PEEPHOLE`` are module-level constants the step reads. Numba freezes global
values at compile time, so binding different globals to a copy of the same code yields a
specialised function with dead branches removed. Each copy gets its own qualified name,
which is what Numba's on-disk cache is keyed by, so ``cache=True`` works for every copy
(closures would not: their cache keys are not stable across processes).

Numba's cache is invalidated by changes to the template's own source file only; a
reinstall rewrites every file, which is enough for users.
"""
from numba import njit

from ..rebinding import rebind


def specialise(template, suffix, parallel=False, **bindings):
    """Return ``njit(template)`` compiled with ``bindings`` as its globals.

    Parameters
    ----------
    template : function
        A plain Python function whose free globals include the keys of ``bindings``.
    suffix : str
        Appended to the function's name; must be unique per set of bindings.
    parallel : bool
        Passed to ``numba.njit``. Division follows IEEE rules (``error_model="numpy"``),
        which the loop vectoriser needs.
    **bindings
        Global names to (re)bind for this copy: Numba dispatchers, ints, bools.
    """
    return njit(cache=True, parallel=parallel, error_model="numpy")(rebind(template, suffix, **bindings))
