"""The oracle: a float64 NumPy transcription of DESIGN.md's equations, one step at a time.

Every fast backend is tested against this module, so it favours being obviously right
over being fast: one Python loop over time, one line per equation, and a backward pass
that applies the chain rule to those same lines in reverse.

All functions work on one layer and one direction. Shapes: ``x`` (T, B, I); each state
tensor (B, H); parameters named as in :meth:`fastlstm.cells.Cell.parameter_shapes`.
"""
from __future__ import annotations

import numpy as np


def sigmoid(a):
    """The logistic function, written through tanh so that large |a| cannot overflow exp."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def _split(a, parts):
    return np.split(a, parts, axis=-1)


def _as(params, dtype):
    return {name: np.asarray(value, dtype=dtype) for name, value in params.items()}


# ---------------------------------------------------------------- forward, one step per cell

def _lstm_step(p, x, state, peephole):
    h, c = state
    ai, af, ag, ao = _split(x @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"], 4)
    if peephole:
        ai = ai + p["weight_ci"] * c
        af = af + p["weight_cf"] * c
    i, f, g = sigmoid(ai), sigmoid(af), np.tanh(ag)
    c_new = f * c + i * g
    if peephole:
        ao = ao + p["weight_co"] * c_new
    o = sigmoid(ao)
    h_new = o * np.tanh(c_new)
    saved = dict(x=x, h=h, c=c, i=i, f=f, g=g, o=o, c_new=c_new)
    return (h_new, c_new), saved


def _gru_step(p, x, state, reset_after):
    (h,) = state
    W_hr, W_hz, W_hn = np.split(p["weight_hh"], 3, axis=0)
    b_hr, b_hz, b_hn = _split(p["bias_hh"], 3)
    ax_r, ax_z, ax_n = _split(x @ p["weight_ih"].T + p["bias_ih"], 3)
    r = sigmoid(ax_r + h @ W_hr.T + b_hr)
    z = sigmoid(ax_z + h @ W_hz.T + b_hz)
    if reset_after:
        ah_n = h @ W_hn.T + b_hn
        n = np.tanh(ax_n + r * ah_n)
    else:
        ah_n = (r * h) @ W_hn.T + b_hn
        n = np.tanh(ax_n + ah_n)
    h_new = (1.0 - z) * n + z * h
    saved = dict(x=x, h=h, r=r, z=z, n=n, ah_n=ah_n)
    return (h_new,), saved


def _rnn_step(p, x, state, nonlinearity):
    (h,) = state
    a = x @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"]
    h_new = np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0.0)
    saved = dict(x=x, h=h, a=a, h_new=h_new)
    return (h_new,), saved


def _step(cell, p, x, state):
    if cell.kind == "lstm":
        return _lstm_step(p, x, state, cell.peephole)
    if cell.kind == "gru":
        return _gru_step(p, x, state, cell.reset_after)
    return _rnn_step(p, x, state, cell.nonlinearity)


def forward(cell, params, x, state, dtype=np.float64):
    """Run one layer-direction forward.

    ``dtype`` is the arithmetic's precision: float64 for the oracle; the tests also run the
    same equations in float32 to measure how well conditioned a float32 problem is.

    Parameters
    ----------
    cell : fastlstm.cells.Cell
    params : dict of ndarray
        One layer-direction's parameters (names without suffix).
    x : ndarray, shape (T, B, I)
    state : tuple of ndarray
        ``(h0,)`` or, for the LSTM, ``(h0, c0)``; each (B, H).

    Returns
    -------
    y : ndarray, shape (T, B, H)
        The hidden state after every step.
    final_state : tuple of ndarray
        The state after the last step, each (B, H).
    tape : dict
        What :func:`backward` needs.
    """
    p = _as(params, dtype)
    x = np.asarray(x, dtype=dtype)
    state = tuple(np.asarray(s, dtype=dtype) for s in state)
    y = np.zeros((x.shape[0], x.shape[1], p["weight_hh"].shape[1]), dtype)
    steps = []
    for t in range(x.shape[0]):
        state, saved = _step(cell, p, x[t], state)
        y[t] = state[0]
        steps.append(saved)
    return y, state, dict(cell=cell, params=p, steps=steps, state_count=len(state))


# ---------------------------------------------------------------- backward, one step per cell

def _lstm_step_back(p, s, dh, dc, grads, peephole):
    tanh_c = np.tanh(s["c_new"])
    do = dh * tanh_c
    da_o = do * s["o"] * (1.0 - s["o"])
    dc = dc + dh * s["o"] * (1.0 - tanh_c ** 2)
    if peephole:
        dc = dc + da_o * p["weight_co"]
    da_i = dc * s["g"] * s["i"] * (1.0 - s["i"])
    da_f = dc * s["c"] * s["f"] * (1.0 - s["f"])
    da_g = dc * s["i"] * (1.0 - s["g"] ** 2)
    dc_prev = dc * s["f"]
    if peephole:
        dc_prev = dc_prev + da_i * p["weight_ci"] + da_f * p["weight_cf"]
        grads["weight_ci"] += (da_i * s["c"]).sum(axis=0)
        grads["weight_cf"] += (da_f * s["c"]).sum(axis=0)
        grads["weight_co"] += (da_o * s["c_new"]).sum(axis=0)
    da = np.concatenate([da_i, da_f, da_g, da_o], axis=-1)
    grads["weight_ih"] += da.T @ s["x"]
    grads["weight_hh"] += da.T @ s["h"]
    grads["bias_ih"] += da.sum(axis=0)
    grads["bias_hh"] += da.sum(axis=0)
    return da @ p["weight_ih"], (da @ p["weight_hh"], dc_prev)


def _gru_step_back(p, s, dh, grads, reset_after):
    r, z, n, h = s["r"], s["z"], s["n"], s["h"]
    W_hr, W_hz, W_hn = np.split(p["weight_hh"], 3, axis=0)
    dn = dh * (1.0 - z)
    da_z = dh * (h - n) * z * (1.0 - z)
    da_n = dn * (1.0 - n ** 2)
    dh_prev = dh * z
    if reset_after:
        dr = da_n * s["ah_n"]
        dah_n = da_n * r
        da_r = dr * r * (1.0 - r)
        dah = np.concatenate([da_r, da_z, dah_n], axis=-1)
        grads["weight_hh"] += dah.T @ h
        dh_prev = dh_prev + dah @ p["weight_hh"]
    else:
        d_rh = da_n @ W_hn
        da_r = d_rh * h * r * (1.0 - r)
        dah = np.concatenate([da_r, da_z, da_n], axis=-1)
        grads["weight_hh"] += np.concatenate([da_r.T @ h, da_z.T @ h, da_n.T @ (r * h)], axis=0)
        dh_prev = dh_prev + d_rh * r + da_r @ W_hr + da_z @ W_hz
    dax = np.concatenate([da_r, da_z, da_n], axis=-1)
    grads["weight_ih"] += dax.T @ s["x"]
    grads["bias_ih"] += dax.sum(axis=0)
    grads["bias_hh"] += dah.sum(axis=0)
    return dax @ p["weight_ih"], (dh_prev,)


def _rnn_step_back(p, s, dh, grads, nonlinearity):
    if nonlinearity == "tanh":
        da = dh * (1.0 - s["h_new"] ** 2)
    else:
        da = dh * (s["a"] > 0.0)
    grads["weight_ih"] += da.T @ s["x"]
    grads["weight_hh"] += da.T @ s["h"]
    grads["bias_ih"] += da.sum(axis=0)
    grads["bias_hh"] += da.sum(axis=0)
    return da @ p["weight_ih"], (da @ p["weight_hh"],)


def backward(tape, dy, dstate=None):
    """Backpropagate through one layer-direction forward.

    Parameters
    ----------
    tape : dict
        The tape returned by :func:`forward`.
    dy : ndarray, shape (T, B, H)
        Gradient of the loss with respect to ``y``.
    dstate : tuple of ndarray or None
        Gradient with respect to the final state (each (B, H)); ``None`` means zeros.

    Returns
    -------
    dx : ndarray, shape (T, B, I)
    dstate0 : tuple of ndarray
        Gradient with respect to the initial state.
    grads : dict of ndarray
        Gradient of every parameter, same names and shapes as the parameters.
    """
    cell, p, steps = tape["cell"], tape["params"], tape["steps"]
    dtype = p["weight_ih"].dtype
    dy = np.asarray(dy, dtype=dtype)
    T, B, H = dy.shape
    grads = {name: np.zeros_like(value) for name, value in p.items()}
    if dstate is None:
        dstate = tuple(np.zeros((B, H), dtype) for _ in range(tape["state_count"]))
    dstate = tuple(np.asarray(d, dtype=dtype) for d in dstate)
    dx = np.zeros((T, B, p["weight_ih"].shape[1]), dtype)
    for t in reversed(range(T)):
        dh = dstate[0] + dy[t]
        if cell.kind == "lstm":
            dx[t], dstate = _lstm_step_back(p, steps[t], dh, dstate[1], grads, cell.peephole)
        elif cell.kind == "gru":
            dx[t], dstate = _gru_step_back(p, steps[t], dh, grads, cell.reset_after)
        else:
            dx[t], dstate = _rnn_step_back(p, steps[t], dh, grads, cell.nonlinearity)
    return dx, dstate, grads


# ---------------------------------------------------------------- a whole layer: directions and lengths

def _sequences(batch, steps, lengths):
    """(b, n_b) for each sequence: all of them at once when there are no lengths."""
    if lengths is None:
        return [(slice(0, batch), steps)]
    return [(slice(b, b + 1), int(lengths[b])) for b in range(batch)]


def forward_layer(cell, params, x, state, lengths=None, dtype=np.float64):
    """One layer, every direction, with PyTorch's packed-sequence semantics spelled out.

    Each sequence runs on its own valid steps only: the forward direction over
    ``x[:n_b, b]``, the reverse direction over the same steps in reverse order. Outputs past
    a sequence's end are 0 and its final state is the one after its last valid step.

    Parameters
    ----------
    cell : fastlstm.cells.Cell
    params : list of dict
        One parameter dict per direction (forward first).
    x : ndarray, shape (T, B, I)
    state : list of tuple of ndarray
        Per direction, the initial state tensors, each (B, H).
    lengths : ndarray of int, shape (B,), or None (every sequence has T steps)

    Returns
    -------
    y : ndarray, shape (T, B, D·H)
    final : list of tuple of ndarray, per direction, each (B, H)
    tape : dict
    """
    steps, batch, _ = x.shape
    hidden = params[0]["weight_hh"].shape[1]
    y = np.zeros((steps, batch, len(params) * hidden), dtype)
    finals, tapes = [], []
    for direction, p in enumerate(params):
        final = [np.array(s, dtype=dtype) for s in state[direction]]
        direction_tapes = []
        for rows, n in _sequences(batch, steps, lengths):
            seq = x[:n, rows] if direction == 0 else x[:n, rows][::-1]
            y_seq, final_seq, tape_seq = forward(cell, p, seq, tuple(s[rows] for s in state[direction]), dtype)
            y[:n, rows, direction * hidden:(direction + 1) * hidden] = y_seq if direction == 0 else y_seq[::-1]
            for k, s in enumerate(final_seq):
                final[k][rows] = s
            direction_tapes.append((rows, n, tape_seq))
        finals.append(tuple(final))
        tapes.append(direction_tapes)
    return y, finals, dict(tapes=tapes, steps=steps, batch=batch, inputs=x.shape[2], hidden=hidden,
                           dtype=dtype)


def backward_layer(tape, dy, dstate=None):
    """Backpropagate through :func:`forward_layer`.

    Parameters
    ----------
    tape : dict, from :func:`forward_layer`
    dy : ndarray, shape (T, B, D·H); entries past a sequence's end are ignored
    dstate : list of tuple of ndarray, per direction, each (B, H); or None (zeros)

    Returns
    -------
    dx : ndarray, shape (T, B, I); 0 past each sequence's end
    dstate0 : list of tuple of ndarray, per direction
    grads : list of dict, per direction
    """
    hidden, dtype = tape["hidden"], tape["dtype"]
    dx = np.zeros((tape["steps"], tape["batch"], tape["inputs"]), dtype)
    dstates0, all_grads = [], []
    for direction, direction_tapes in enumerate(tape["tapes"]):
        grads, dstate0 = None, None
        for rows, n, tape_seq in direction_tapes:
            dy_seq = dy[:n, rows, direction * hidden:(direction + 1) * hidden]
            if direction == 1:
                dy_seq = dy_seq[::-1]
            dfinal = None if dstate is None else tuple(d[rows] for d in dstate[direction])
            dx_seq, dstate0_seq, grads_seq = backward(tape_seq, dy_seq, dfinal)
            dx[:n, rows] += dx_seq if direction == 0 else dx_seq[::-1]
            if dstate0 is None:
                dstate0 = [np.zeros((tape["batch"], hidden), dtype) for _ in dstate0_seq]
            for k, d in enumerate(dstate0_seq):
                dstate0[k][rows] = d
            grads = grads_seq if grads is None else {k: grads[k] + v for k, v in grads_seq.items()}
        dstates0.append(tuple(dstate0))
        all_grads.append(grads)
    return dx, dstates0, all_grads
