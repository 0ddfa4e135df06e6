"""One layer-direction on the CPU: the batched GEMMs around the shared time loops.

Forward: one GEMM projects every time step's input, then the specialised forward loop
runs the recurrence. Backward: the specialised backward loop produces the gate
pre-activation gradients of every step; ``dx`` and the weight and bias gradients are then
each one GEMM or one reduction over all steps.
"""
from dataclasses import dataclass

import numpy as np

from . import loops
from .specialise import specialise
from .threads import chunk_count, single_threaded_blas

_compiled_loops = {}


def _loops_for(kernels):
    if kernels.name not in _compiled_loops:
        _compiled_loops[kernels.name] = (
            specialise(loops.forward_loop, kernels.name, parallel=True, step_forward=kernels.step_forward),
            specialise(loops.backward_loop, kernels.name, parallel=True, step_backward=kernels.step_backward),
        )
    return _compiled_loops[kernels.name]


@dataclass
class Tape:
    """What one layer-direction's forward keeps for its backward."""

    kernels: object
    params: dict
    x: np.ndarray       # (T, B, I), the layer's input
    states: np.ndarray  # (S, T+1, B, H), every state from the initial one on
    saved: np.ndarray   # (T, K, B, H), the cell's saved activations


def forward(kernels, params, x, state):
    """Run one layer-direction forward.

    Parameters
    ----------
    kernels : a cell's kernel adaptor (e.g. ``LSTMKernels``)
    params : dict of ndarray
        C-contiguous parameters of the layer's dtype, names without suffix.
    x : ndarray, shape (T, B, I)
        C-contiguous, of the layer's dtype; kept by reference on the tape.
    state : tuple of ndarray
        The initial state, each (B, H).

    Returns
    -------
    y : ndarray, shape (T, B, H)
    final_state : tuple of ndarray, each (B, H)
    tape : Tape
    """
    with single_threaded_blas():
        return _forward(kernels, params, x, state)


def _forward(kernels, params, x, state):
    forward_loop, _ = _loops_for(kernels)
    steps, batch, inputs = x.shape
    w_ih = params["weight_ih"]
    gate_width, hidden = w_ih.shape[0], params["weight_hh"].shape[1]
    dtype = w_ih.dtype
    xproj = np.empty((steps, batch, gate_width), dtype)
    np.matmul(x.reshape(-1, inputs), w_ih.T, out=xproj.reshape(-1, gate_width))
    xproj += params["bias_ih"]
    states = np.empty((len(state), steps + 1, batch, hidden), dtype)
    for k, s in enumerate(state):
        states[k, 0] = s
    saved = np.empty((steps, kernels.tape_planes, batch, hidden), dtype)
    forward_loop(xproj, states, saved, kernels.forward_weights(params),
                 kernels.forward_work(batch, hidden, dtype), chunk_count(batch))
    y = states[0, 1:].copy()
    final_state = tuple(states[k, steps].copy() for k in range(len(state)))
    return y, final_state, Tape(kernels, params, x, states, saved)


def backward(tape, dy, dstate):
    """Backpropagate through one layer-direction forward.

    Parameters
    ----------
    tape : Tape
    dy : ndarray, shape (T, B, H)
        C-contiguous, of the layer's dtype.
    dstate : tuple of ndarray or None
        Gradient with respect to the final state, each (B, H).

    Returns
    -------
    dx : ndarray, shape (T, B, I)
    dstate0 : tuple of ndarray, each (B, H)
    grads : dict of ndarray, the parameters' names and shapes
    """
    with single_threaded_blas():
        return _backward(tape, dy, dstate)


def _backward(tape, dy, dstate):
    kernels, params, x, states = tape.kernels, tape.params, tape.x, tape.states
    _, backward_loop = _loops_for(kernels)
    state_count, _, batch, hidden = states.shape
    steps, inputs = x.shape[0], x.shape[2]
    w_ih = params["weight_ih"]
    gate_width, dtype = w_ih.shape[0], w_ih.dtype

    dstates = np.zeros((2, state_count, batch, hidden), dtype)
    if dstate is not None:
        for k, d in enumerate(dstate):
            dstates[steps % 2, k] = d
    dgx = np.empty((steps, batch, gate_width), dtype)
    dgh = np.empty_like(dgx) if kernels.separate_recurrent_gradient else dgx
    backward_loop(dy, states, tape.saved, dstates, dgx, dgh, kernels.backward_weights(params),
                  kernels.backward_work(batch, hidden, dtype), chunk_count(batch))

    dgx_rows = dgx.reshape(-1, gate_width)
    dgh_rows = dgh.reshape(-1, gate_width)
    dx = (dgx_rows @ w_ih).reshape(steps, batch, inputs)
    grads = {
        "weight_ih": dgx_rows.T @ x.reshape(-1, inputs),
        "weight_hh": kernels.recurrent_weight_gradient(dgh, states, tape.saved),
        "bias_ih": dgx_rows.sum(axis=0),
        "bias_hh": dgh_rows.sum(axis=0),
    }
    grads.update(kernels.vector_gradients(dgx, states, tape.saved))
    return dx, tuple(dstates[0, k].copy() for k in range(state_count)), grads
