"""Copies of a template function with some of its global names bound to other values.

The cells' math and the backends' loops are written once, as plain Python functions that
read their options, constants and helper functions as module globals, and every backend
compiles specialised copies of them: Numba freezes global values at compile time, so each
copy's dead branches vanish. Each copy gets its own qualified name, which is what Numba's
on-disk cache is keyed by, so ``cache=True`` works for every copy (closures would not: their
cache keys are not stable across processes).

A template's own module holds :class:`Unbound` placeholders for the names each copy binds,
so that a copy compiled without one of them fails loudly (Numba cannot type the placeholder;
plain Python, as under the CUDA simulator, raises on any use of it) instead of running with a
default that is wrong for it (a float64 tanh in a float32 kernel, say).
"""
import functools
import hashlib
import os
import types


class Unbound:
    """A global name that every compiled copy of a template must bind (see :func:`rebind`).

    Calling it, computing with it or testing its truth raises ``RuntimeError``.
    """

    def __init__(self, name):
        self._name = name

    def _fail(self, *args, **kwargs):
        raise RuntimeError(f"{self._name} is a placeholder: the function reading it was compiled "
                           f"without binding {self._name} (see fastlstm.rebinding.rebind)")

    __call__ = __bool__ = __index__ = __float__ = __int__ = _fail
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _fail
    __neg__ = __lt__ = __le__ = __gt__ = __ge__ = __getitem__ = _fail

    def __repr__(self):
        return f"Unbound({self._name!r})"


def rebind(template, suffix, **bindings):
    """Return a copy of ``template`` whose globals include ``bindings``.

    Parameters
    ----------
    template : function
        A plain Python function whose free globals include the keys of ``bindings``.
    suffix : str
        Appended to the copy's name; must be unique per set of bindings.
    **bindings
        Global names to (re)bind for this copy: compiled functions, numbers, bools, tuples.

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


@functools.lru_cache(maxsize=None)
def source_stamp(*directories):
    """A short hash of every ``.py`` file in ``directories`` (paths inside the package), for the
    names of compiled copies.

    Numba's on-disk cache checks only the source file of the function it caches, not those of
    the functions compiled into it: a cached loop would keep running an older step or kernel
    after that module changed. A copy named with the stamp of every source its machine code
    comes from is compiled afresh whenever any of them changes.
    """
    root = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha1()
    for directory in directories:
        folder = os.path.join(root, directory)
        for name in sorted(os.listdir(folder)):
            if name.endswith(".py"):
                with open(os.path.join(folder, name), "rb") as source:
                    digest.update(name.encode() + b"\0" + source.read())
    return digest.hexdigest()[:10]


def kernel_stamp():
    """:func:`source_stamp` of the sources every CPU kernel is compiled from (the cells, the
    shared unit-value helpers, the CPU backend, this module)."""
    return source_stamp(".", "cells", "backends", os.path.join("backends", "cpu"))
