"""Copies of a template function with some of its global names bound to other values.

Both backends write a piece of math once, as a plain Python function that reads its
options, constants and helper functions as module globals, and compile specialised copies
of it: Numba freezes global values at compile time, so each copy's dead branches vanish.
Each copy gets its own qualified name, which is what Numba's on-disk cache is keyed by, so
``cache=True`` works for every copy (closures would not: their cache keys are not stable
across processes).
"""
import types


def rebind(template, suffix, **bindings):
    """Return a copy of ``template`` whose globals include ``bindings``.

    Parameters
    ----------
    template : function
        A plain Python function whose free globals include the keys of ``bindings``.
    suffix : str
        Appended to the copy's name; must be unique per set of bindings.
    **bindings
        Global names to (re)bind for this copy: compiled functions, numbers, bools.

    Returns
    -------
    function
        Named ``f"{template.__name__}_{suffix}"``; ``template`` is unchanged.
    """
    namespace = dict(template.__globals__)
    namespace.update(bindings)
    name = f"{template.__name__}_{suffix}"
    function = types.FunctionType(template.__code__, namespace, name, template.__defaults__)
    function.__qualname__ = name
    return function
