"""A process's first call compiled by two processes at once.

A first training call from a cold cache compiles ~30 functions one after the other, seconds on
one core while the others idle (an LSTM 8 → 32: ~9 s on this project's 2-core machines). About
half of that is the cell's own code (its phases and loops, :data:`.kernels.CELL_CODE`); the
rest — the packing of the weights, the tile walk, the products, the parallel regions and block
functions — every cell shares. So the calling process starts a helper process that compiles the
shared code into the on-disk cache while it compiles the cell's, both by going through the call
(a training call's forward and backward, or an inference call's prepared stack) without running
anything (:func:`.calls.compiling_only`), each finding by the types of the call's arrays exactly
the functions the call needs; then it waits for the helper and makes the call, which loads the
helper's code from the cache. (An inference call also compiles its directions' whole runs
itself, so that the two shares take about as long.)

Nothing depends on the helper: if it cannot start, fails or is slow, what it did not cache is
compiled by the call as before (the same code, so the same results). Its output goes nowhere.
The knob ``compile_helper`` (0: none) turns it off; where the shared code is compiled or cached
already, none starts (a call that lacks only the cell's code compiles it as before).
"""
import os
import pickle
import subprocess
import sys

import numpy as np
from numba import config as numba_config
from numba import get_num_threads, set_num_threads

from ... import tuning
from .calls import compiling_only, compiling_only_for
from .kernels import CELL_CODE, cached_on_disk, kernels_for
from .strategy import choose, held_threads
from .tiles import walk

# The longest a call waits for its helper (seconds) before compiling what is left itself.
HELPER_WAIT = 300

_checked = set()   # the configurations already looked at in this process


def warm_training_call(kernels, params, x, state, lengths, in_the_loop):
    """Before a process's first training call, from a cold cache: compile the cell's code of the
    call's forward and backward here and the rest in a helper process, at once.

    Arguments as :func:`.driver.forward_layer`'s (with ``keep_tape`` True); none is modified.
    """
    if walk.overloads or compiling_only_for() is not None:   # every call after a process's first
        return
    recurrent_dropout = in_the_loop is not None and in_the_loop[0].recurrent_mask is not None
    zoneout = in_the_loop is not None and any(d is not None for d in in_the_loop[0].zoneout)
    if _cold(kernels, len(params), x, params[0]["weight_hh"].shape[1], True, recurrent_dropout, zoneout):
        _both(dict(kind="training", cell=kernels.cell, dtype=x.dtype.str, params=params, x=x, state=state,
                   lengths=lengths, in_the_loop=in_the_loop),
              lambda: compile_training(kernels, params, x, state, lengths, in_the_loop, CELL_CODE.__contains__))


def warm_inference_call(config, kernels, params, x, state):
    """Before a process's first inference call, from a cold cache: the same for the stack's
    prepared call (:func:`.prepared.infer`; arguments as its, validated; none is modified)."""
    if walk.overloads or compiling_only_for() is not None:
        return
    if _cold(kernels, config.directions, x, config.hidden_size, False, False, False):
        _both(dict(kind="inference", config=config, dtype=x.dtype.str, params=params, x=x, state=state),
              lambda: compile_inference(config, kernels, params, x, state, _calls_own_inference))


def _calls_own_inference(dispatcher):
    """What an inference call compiles itself: the cell's code, and its directions' whole runs
    (:func:`.prepared._run_direction`, ~1 s: else the helper would have the longer share)."""
    from .prepared import is_direction_run

    return dispatcher in CELL_CODE or is_direction_run(dispatcher)


def _cold(kernels, directions, x, hidden, training, recurrent_dropout, zoneout):
    """Whether a first call of this configuration compiles from a cold cache (and may start a
    helper): its forward loop not compiled nor cached, nor the tile walk (the shared code)."""
    key = (kernels, directions, x.shape[1], hidden, training, recurrent_dropout, zoneout, tuning.state(),
           held_threads())
    if key in _checked or not tuning.get("compile_helper") or getattr(sys, "frozen", False) or _cores() < 2:
        return False
    _checked.add(key)
    plan = choose(kernels.spec, x.shape[1], hidden, directions, x.dtype.itemsize, training)
    loop = kernels.forward_loop(plan.loop_kind, recurrent_dropout, zoneout, training)
    return not (compiled(loop) or cached_on_disk(walk))


# The payload's entries sent as their arrays' shapes (the helper needs their types only).
_OUTLINED = ("params", "x", "state", "in_the_loop")


def _cores():
    """The CPUs this process may run on (a helper on the same one would only take turns with it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _both(payload, compile_own):
    """Start the helper on ``payload`` (with the knobs' overrides and the thread count), run
    ``compile_own()``, then wait for the helper."""
    sent = {name: _outline(value) if name in _OUTLINED else value for name, value in payload.items()}
    helper = _start_helper(dict(sent, overrides=tuning.overrides(), threads=get_num_threads()))
    compile_own()
    if helper is not None:
        try:
            helper.wait(HELPER_WAIT)
        except subprocess.TimeoutExpired:
            helper.kill()
            helper.wait()


def compiled(dispatcher):
    """Whether ``dispatcher`` is compiled in this process or cached on disk (for some types)."""
    return bool(dispatcher.overloads) or cached_on_disk(dispatcher)


def compile_training(kernels, params, x, state, lengths, in_the_loop, compiles):
    """Go through a training call's forward and backward compiling, and running nothing
    (:func:`.calls.compiling_only`): of the functions found, those ``compiles(dispatcher)`` accepts."""
    from .driver import backward_layer, forward_layer

    with compiling_only(compiles), np.errstate(all="ignore"):
        forward = forward_layer(kernels, params, x, state, lengths, True, in_the_loop)
        backward_layer(forward.tape, np.zeros(forward.y.shape, x.dtype), None)


def compile_inference(config, kernels, params, x, state, compiles):
    """The same for a stack's prepared inference call."""
    from .prepared import infer

    with compiling_only(compiles), np.errstate(all="ignore"):
        infer(config, kernels, params, params, x, state)


class _Zeros:
    """An array's shape and dtype, sent to the helper in its place."""

    def __init__(self, array):
        self.shape, self.dtype = array.shape, array.dtype.str

    def array(self):
        return np.zeros(self.shape, self.dtype)


def _replaced(value, replace):
    """``value`` with ``replace(v)`` in place of each ``v`` in it that is not a dict, list or tuple."""
    if isinstance(value, dict):
        return {name: _replaced(v, replace) for name, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_replaced(v, replace) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_replaced(v, replace) for v in value)
    return replace(value)


def _outline(value):
    """``value`` with every array larger than a few values replaced by a :class:`_Zeros`."""
    return _replaced(value, lambda v: _Zeros(v) if isinstance(v, np.ndarray) and v.size > 64 else v)


def _filled(value):
    """The inverse of :func:`_outline`, zeros in place of each :class:`_Zeros`."""
    return _replaced(value, lambda v: v.array() if isinstance(v, _Zeros) else v)


def _start_helper(payload):
    """The helper process (:func:`helper_main`), given ``payload``; None where it cannot start."""
    if not sys.executable:
        return None
    import fastlstm

    # this very package first on the helper's path (before its working directory's)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(fastlstm.__file__)))
    code = (f"import sys; sys.path.insert(0, {package_parent!r}); "
            "from fastlstm.backends.cpu.warming import helper_main; helper_main()")
    try:
        data = pickle.dumps(payload)
        helper = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
    except (OSError, ValueError, pickle.PicklingError, TypeError, AttributeError):
        return None
    try:
        helper.stdin.write(data)
        helper.stdin.close()
    except OSError:
        helper.kill()
        helper.wait()
        return None
    return helper


def helper_main():
    """The helper process: compile the shared code of the call described on stdin (a pickled
    payload of :func:`warm_training_call` or :func:`warm_inference_call`) into Numba's on-disk cache."""
    payload = pickle.load(sys.stdin.buffer)
    set_num_threads(min(payload["threads"], numba_config.NUMBA_NUM_THREADS))
    dtype = np.dtype(payload["dtype"])
    params, x, state = _filled(payload["params"]), _filled(payload["x"]), _filled(payload["state"])
    with tuning.override(**payload["overrides"]):
        if payload["kind"] == "training":
            compile_training(kernels_for(payload["cell"], dtype), params, x, state, payload["lengths"],
                             _filled(payload["in_the_loop"]), lambda dispatcher: dispatcher not in CELL_CODE)
        else:
            config = payload["config"]
            compile_inference(config, kernels_for(config.cell, dtype), params, x, state,
                              lambda dispatcher: not _calls_own_inference(dispatcher))
