"""What a layer call of one shape builds the same way every time, kept per thread for the next call.

A training call's forward and backward each choose a plan, lease scratch buffers (a segment's
projections or gate gradients, each block's work), lease buffers for the packed weights and
look up the addresses of the compiled code they run: the same for every call of a shape. At
small shapes that costs as much as the arithmetic (an LSTM 16 → 64, B 1, T 50 training call:
~0.1 ms of its 0.47). A *setup* holds them, built on a shape's first call and reused while the
thread calls that shape again; each call still packs the weights it is given, into the kept
buffers (their values change between training steps), and allocates what it returns or keeps
on its tape.

Each thread keeps the setups of its last ``prepared_calls`` shapes, holding at most
``prepared_bytes`` together (the least recently used making room; the same knobs as prepared
inference calls, :mod:`.prepared`, with a budget of their own); a setup larger than that is
built at every call. A setup's buffers serve one call at a time (each thread has its own) and
none reaches a result or a tape.
"""
import threading
from collections import OrderedDict

from ... import tuning

_local = threading.local()


def _setups():
    setups = getattr(_local, "setups", None)
    if setups is None:
        setups = _local.setups = OrderedDict()
    return setups


def kept(key, build):
    """The setup this thread keeps under ``key``, or a new one from ``build()`` (an object with
    an ``nbytes`` attribute), kept if it fits the budget.

    ``key`` must be equal only for calls that can share a setup, and hold every object whose
    ``id`` it uses (a setup keeps its key alive, so that no other object takes those ids)."""
    setups = _setups()
    setup = setups.get(key)
    if setup is not None:
        setups.move_to_end(key)
        return setup
    setup = build()
    budget = tuning.get("prepared_bytes")
    if setup.nbytes <= budget:
        setups[key] = setup
        # the least recently used first; the new setup, last, fits alone
        while len(setups) > tuning.get("prepared_calls") or sum(s.nbytes for s in setups.values()) > budget:
            setups.popitem(last=False)
    return setup


def clear():
    """Forget this thread's setups (their memory returns when nothing else holds it)."""
    _setups().clear()
