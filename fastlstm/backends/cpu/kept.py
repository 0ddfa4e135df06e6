"""What a layer call of one shape builds the same way every time, kept per thread for the next call.

A training call's forward and backward each choose a plan, lease scratch buffers (a segment's
projections or gate gradients, each block's work), lease buffers for the packed weights, look
up the addresses of the compiled code they run and split each packing and product into blocks
(its *runner*, which takes the call's arrays and buffers as arguments): the same for every call
of a shape. At
small shapes that costs a good part of the call (an LSTM 16 → 64, B 1, T 50 training call, one
thread: ~65 µs of its 440), and at larger ones building it again costs more than the buffers'
leases (an LSTM 8 → 64, B 32, T 200 training call: ~0.3 ms of its 8). A *setup* holds them,
built on a shape's first call and reused while the thread calls that shape again; each call
still packs the weights it is given, into the setup's buffers (their values change between
training steps), and allocates what it returns or keeps on its tape.

Each thread keeps its last ``prepared_calls`` setups (the least recently used making room). A
setup keeps its buffers (its *scratch*, :class:`KeepsScratch`) between calls only where they
hold at most ``kept_setup_bytes``; larger ones are leased from the pool for each call and
returned when it ends: a kept forward's buffers would live through the backward, whose own
would then come on top of them (leased per call, the backward reuses the forward's blocks).
A setup's buffers serve one call at a time (each thread has its own) and none reaches a result
or a tape.
"""
import threading
from collections import OrderedDict

from ... import tuning
from .calls import compiling_only_for

_local = threading.local()


def _setups():
    setups = getattr(_local, "setups", None)
    if setups is None:
        setups = _local.setups = OrderedDict()
    return setups


def kept(key, build):
    """The setup this thread keeps under ``key``, or a new one from ``build()``, kept.

    ``key`` must be equal only for calls that can share a setup, and hold every object whose
    ``id`` it uses (a setup keeps its key alive, so that no other object takes those ids). In a
    :func:`.calls.compiling_only` block, a new setup, never kept (its addresses lead nowhere)."""
    if compiling_only_for() is not None:
        return build()
    setups = _setups()
    setup = setups.get(key)
    if setup is not None:
        setups.move_to_end(key)
        return setup
    setup = setups[key] = build()
    while len(setups) > tuning.get("prepared_calls"):
        setups.popitem(last=False)      # the least recently used
    return setup


class KeepsScratch:
    """A setup whose buffers for one call its ``new_scratch()`` builds (an object with an
    ``nbytes`` attribute); :meth:`scratch` gives a call the ones kept from the last call, or new ones."""

    kept_scratch = None

    def scratch(self):
        """This call's buffers: those kept from the setup's last call, or new ones, kept for the
        next call if they hold at most ``kept_setup_bytes``."""
        scratch = self.kept_scratch if self.kept_scratch is not None else self.new_scratch()
        self.kept_scratch = scratch if scratch.nbytes <= tuning.get("kept_setup_bytes") else None
        return scratch


def clear():
    """Forget this thread's setups (their memory returns when nothing else holds it)."""
    _setups().clear()
