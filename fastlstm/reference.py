"""The oracle: a float64 NumPy transcription of the cells' equations, one step at a time.

The equations are each cell module's ``EQUATIONS`` (:mod:`fastlstm.cells`) and the README's
Contract; this module writes them out again on whole arrays, independently of the kernels.

Every fast backend is tested against this module, so it favours being obviously right
over being fast: one Python loop over time, one line per equation, and a backward pass
that applies the chain rule to those same lines in reverse.

All functions work on one layer and one direction. Shapes: ``x`` (T, B, I); each state
tensor (B, H); parameters named as in :meth:`fastlstm.cells.Cell.parameter_shapes`. Adding a cell means
writing its step and its step back here and listing them in ``_EQUATIONS``.
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

def _recurrent_input(h, mask):
    """The state as ``weight_hh`` sees it: h, or h ⊙ m under recurrent dropout."""
    return h if mask is None else h * mask


def _lstm_step(p, x, state, peephole, mask):
    h, c = state
    h_rec = _recurrent_input(h, mask)
    ai, af, ag, ao = _split(x @ p["weight_ih"].T + p["bias_ih"] + h_rec @ p["weight_hh"].T + p["bias_hh"], 4)
    if peephole:
        ai = ai + p["weight_ci"] * c
        af = af + p["weight_cf"] * c
    i, f, g = sigmoid(ai), sigmoid(af), np.tanh(ag)
    c_new = f * c + i * g
    if peephole:
        ao = ao + p["weight_co"] * c_new
    o = sigmoid(ao)
    h_new = o * np.tanh(c_new)
    saved = dict(x=x, h=h, h_rec=h_rec, c=c, i=i, f=f, g=g, o=o, c_new=c_new, h_new=h_new)
    return (h_new, c_new), saved


def _gru_step(p, x, state, reset_after, mask):
    (h,) = state
    h_rec = _recurrent_input(h, mask)
    W_hr, W_hz, W_hn = np.split(p["weight_hh"], 3, axis=0)
    b_hr, b_hz, b_hn = _split(p["bias_hh"], 3)
    ax_r, ax_z, ax_n = _split(x @ p["weight_ih"].T + p["bias_ih"], 3)
    r = sigmoid(ax_r + h_rec @ W_hr.T + b_hr)
    z = sigmoid(ax_z + h_rec @ W_hz.T + b_hz)
    if reset_after:
        ah_n = h_rec @ W_hn.T + b_hn
        n = np.tanh(ax_n + r * ah_n)
    else:
        ah_n = (r * h_rec) @ W_hn.T + b_hn
        n = np.tanh(ax_n + ah_n)
    h_new = (1.0 - z) * n + z * h
    saved = dict(x=x, h=h, h_rec=h_rec, r=r, z=z, n=n, ah_n=ah_n, h_new=h_new)
    return (h_new,), saved


def _rnn_step(p, x, state, nonlinearity, mask):
    (h,) = state
    h_rec = _recurrent_input(h, mask)
    a = x @ p["weight_ih"].T + p["bias_ih"] + h_rec @ p["weight_hh"].T + p["bias_hh"]
    h_new = np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0.0)
    saved = dict(x=x, h=h, h_rec=h_rec, a=a, h_new=h_new)
    return (h_new,), saved


def _step(cell, p, x, state, mask):
    step, _ = _EQUATIONS[cell.kind]
    return step(p, x, state, mask=mask, **dict(cell.options))


def _zoneout_at(d, t):
    """Step t's zoneout indicators: from a (T, B, H) array, or the expectation p (0-d)."""
    return d if d.ndim == 0 else d[t]


def _zone_out(previous, new, zoneout, t):
    """Each unit keeps its previous value where d = 1: d ⊙ previous + (1 − d) ⊙ new."""
    return tuple(n if d is None else _zoneout_at(d, t) * s + (1.0 - _zoneout_at(d, t)) * n
                 for s, n, d in zip(previous, new, zoneout))


def forward(cell, params, x, state, dtype=np.float64, recurrent_mask=None, zoneout=(None, None)):
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
    recurrent_mask : ndarray, shape (B, H), optional
        Recurrent dropout: ``weight_hh`` sees h ⊙ recurrent_mask (:mod:`fastlstm.regularisation`).
    zoneout : pair of (ndarray (T, B, H), 0-d ndarray or None)
        Zoneout indicators for h and c: a unit keeps its previous value in proportion d.

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
    mask = None if recurrent_mask is None else np.asarray(recurrent_mask, dtype)
    zoneout = tuple(None if d is None else np.asarray(d, dtype) for d in zoneout)
    y = np.zeros((x.shape[0], x.shape[1], p["weight_hh"].shape[1]), dtype)
    steps = []
    for t in range(x.shape[0]):
        new_state, saved = _step(cell, p, x[t], state, mask)
        state = _zone_out(state, new_state, zoneout, t)
        y[t] = state[0]
        steps.append(saved)
    return y, state, dict(cell=cell, params=p, steps=steps, state_count=len(state), mask=mask,
                          zoneout=zoneout)


# ---------------------------------------------------------------- backward, one step per cell

def _masked(dh_rec, mask):
    """The gradient reaching h from what ``weight_hh`` saw (h ⊙ m under recurrent dropout)."""
    return dh_rec if mask is None else dh_rec * mask


def _lstm_step_back(p, s, through, grads, peephole, mask):
    dh, dc = through
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
    grads["weight_hh"] += da.T @ s["h_rec"]
    grads["bias_ih"] += da.sum(axis=0)
    grads["bias_hh"] += da.sum(axis=0)
    return da @ p["weight_ih"], (_masked(da @ p["weight_hh"], mask), dc_prev)


def _gru_step_back(p, s, through, grads, reset_after, mask):
    (dh,) = through
    r, z, n, h, h_rec = s["r"], s["z"], s["n"], s["h"], s["h_rec"]
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
        grads["weight_hh"] += dah.T @ h_rec
        dh_prev = dh_prev + _masked(dah @ p["weight_hh"], mask)
    else:
        d_rh = da_n @ W_hn
        da_r = d_rh * h_rec * r * (1.0 - r)
        dah = np.concatenate([da_r, da_z, da_n], axis=-1)
        grads["weight_hh"] += np.concatenate([da_r.T @ h_rec, da_z.T @ h_rec, da_n.T @ (r * h_rec)], axis=0)
        dh_prev = dh_prev + _masked(d_rh * r + da_r @ W_hr + da_z @ W_hz, mask)
    dax = np.concatenate([da_r, da_z, da_n], axis=-1)
    grads["weight_ih"] += dax.T @ s["x"]
    grads["bias_ih"] += dax.sum(axis=0)
    grads["bias_hh"] += dah.sum(axis=0)
    return dax @ p["weight_ih"], (dh_prev,)


def _rnn_step_back(p, s, through, grads, nonlinearity, mask):
    (dh,) = through
    if nonlinearity == "tanh":
        da = dh * (1.0 - s["h_new"] ** 2)
    else:
        da = dh * (s["a"] > 0.0)
    grads["weight_ih"] += da.T @ s["x"]
    grads["weight_hh"] += da.T @ s["h_rec"]
    grads["bias_ih"] += da.sum(axis=0)
    grads["bias_hh"] += da.sum(axis=0)
    return da @ p["weight_ih"], (_masked(da @ p["weight_hh"], mask),)


# Each cell's equations, forward and backward, by kind: (step, step_back), taking the cell's
# options as keywords.
_EQUATIONS = {
    "lstm": (_lstm_step, _lstm_step_back),
    "gru": (_gru_step, _gru_step_back),
    "rnn": (_rnn_step, _rnn_step_back),
}


def backward(tape, dy, dstate=None, norms=None):
    """Backpropagate through one layer-direction forward.

    Parameters
    ----------
    tape : dict
        The tape returned by :func:`forward`.
    dy : ndarray, shape (T, B, H)
        Gradient of the loss with respect to ``y``.
    dstate : tuple of ndarray or None
        Gradient with respect to the final state (each (B, H)); ``None`` means zeros.
    norms : ndarray, shape (T, B), optional
        Receives ‖∂L/∂h_t‖ at every step: the gradient reaching the state after step t from
        the later steps, plus dy[t].

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
    mask, zoneout = tape.get("mask"), tape.get("zoneout", (None, None))
    for t in reversed(range(T)):
        if norms is not None:
            norms[t] = np.linalg.norm(dstate[0] + dy[t], axis=-1)
        through, skipped = _zoneout_backward((dstate[0] + dy[t],) + tuple(dstate[1:]), zoneout, t)
        _, step_back = _EQUATIONS[cell.kind]
        dx[t], dstate = step_back(p, steps[t], through, grads, mask=mask, **dict(cell.options))
        dstate = tuple(d if k is None else d + k for d, k in zip(dstate, skipped))
    return dx, dstate, grads


def _zoneout_backward(gradients, zoneout, t):
    """Split the gradients reaching step t's output state: (1 − d) ⊙ g goes through the
    cell's new state, d ⊙ g skips the step to the previous state (None without zoneout)."""
    through, skipped = [], []
    for g, d in zip(gradients, zoneout):
        if d is None:
            through.append(g)
            skipped.append(None)
        else:
            through.append((1.0 - _zoneout_at(d, t)) * g)
            skipped.append(_zoneout_at(d, t) * g)
    return through, skipped


# ---------------------------------------------------------------- a whole layer: directions and lengths

def _sequences(batch, steps, lengths):
    """(b, n_b) for each sequence: all of them at once when there are no lengths."""
    if lengths is None:
        return [(slice(0, batch), steps)]
    return [(slice(b, b + 1), int(lengths[b])) for b in range(batch)]


def _sequence_zoneout(zoneout, n, rows, direction):
    """A direction's zoneout indicators for one sequence's steps, in the direction's time."""
    def part(d):
        if d is None or d.ndim == 0:
            return d
        return d[:n, rows] if direction == 0 else d[:n, rows][::-1]
    return tuple(part(d) for d in zoneout)


def forward_layer(cell, params, x, state, lengths=None, dtype=np.float64, recurrent=None, zoneout=None):
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
    recurrent : list of (ndarray (B, H) or None), per direction, optional
        Recurrent dropout masks (see :func:`forward`).
    zoneout : list of pair, per direction, optional
        Zoneout indicators for h and c, each (T, B, H) in natural time, 0-d, or None.

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
            mask = None if recurrent is None or recurrent[direction] is None else recurrent[direction][rows]
            zones = (None, None) if zoneout is None else _sequence_zoneout(zoneout[direction], n, rows, direction)
            y_seq, final_seq, tape_seq = forward(cell, p, seq, tuple(s[rows] for s in state[direction]), dtype,
                                                 mask, zones)
            y[:n, rows, direction * hidden:(direction + 1) * hidden] = y_seq if direction == 0 else y_seq[::-1]
            for k, s in enumerate(final_seq):
                final[k][rows] = s
            direction_tapes.append((rows, n, tape_seq))
        finals.append(tuple(final))
        tapes.append(direction_tapes)
    return y, finals, dict(tapes=tapes, steps=steps, batch=batch, inputs=x.shape[2], hidden=hidden,
                           dtype=dtype)


def backward_layer(tape, dy, dstate=None, norms=None):
    """Backpropagate through :func:`forward_layer`.

    Parameters
    ----------
    tape : dict, from :func:`forward_layer`
    dy : ndarray, shape (T, B, D·H); entries past a sequence's end are ignored
    dstate : list of tuple of ndarray, per direction, each (B, H); or None (zeros)
    norms : ndarray, shape (D, T, B), optional
        Receives ‖∂L/∂h_t‖ of every valid step, in natural time (see :func:`backward`).

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
            norms_seq = None if norms is None else np.empty((n, dy_seq.shape[1]))
            dx_seq, dstate0_seq, grads_seq = backward(tape_seq, dy_seq, dfinal, norms_seq)
            if norms is not None:
                norms[direction, :n, rows] = norms_seq if direction == 0 else norms_seq[::-1]
            dx[:n, rows] += dx_seq if direction == 0 else dx_seq[::-1]
            if dstate0 is None:
                dstate0 = [np.zeros((tape["batch"], hidden), dtype) for _ in dstate0_seq]
            for k, d in enumerate(dstate0_seq):
                dstate0[k][rows] = d
            grads = grads_seq if grads is None else {k: grads[k] + v for k, v in grads_seq.items()}
        dstates0.append(tuple(dstate0))
        all_grads.append(grads)
    return dx, dstates0, all_grads
