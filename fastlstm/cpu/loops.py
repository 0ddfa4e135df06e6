"""The two time loops every cell shares, as templates for :func:`specialise`.

Each loop walks time sequentially. A step is one or more phases (a cell's
``FORWARD_PHASES``/``BACKWARD_PHASES``); in each phase every thread runs the cell's step
function on its own block of hidden units (``prange`` over the blocks of ``bounds``, see
``units``) for every running sequence, and the end of the phase is the barrier after
which the next phase may read what all blocks wrote. Numba's threads own the cores
during the loop; the BLAS library is held to one thread meanwhile (see ``threads``).

``step_forward``, ``step_backward`` and the phase counts below are placeholders that
every specialised copy rebinds to a cell's compiled step functions.
"""
import numpy as np
from numba import njit, prange

FORWARD_PHASES = 1
BACKWARD_PHASES = 1


def step_forward(phase, t, slot, rows, u0, u1, xproj, states, source, tape, weights,
                 work):  # pragma: no cover
    raise NotImplementedError("bound by specialise()")


def step_backward(phase, t, rows, u0, u1, dy, states, source, mask, tape, dnext, dprev, dgates, weights,
                  work):  # pragma: no cover
    raise NotImplementedError("bound by specialise()")


@njit(cache=True, error_model="numpy")
def mask_recurrent_input(t, running, u0, u1, states, mask, out):
    """Recurrent dropout before step t: out (B, H) = h_{t−1} ⊙ mask, units [u0, u1) of the running rows."""
    for b in range(running):
        h, m, o = states[0, t, b], mask[b], out[b]
        for u in range(u0, u1):
            o[u] = h[u] * m[u]


@njit(cache=True, error_model="numpy")
def zone_out_block(t, running, u0, u1, states, zone, candidates):
    """Zoneout after step t, units [u0, u1) of the running rows: each of the first
    zone.shape[0] states keeps its previous value in proportion d = zone[k, t, b, u] (0 or 1
    in training, p in inference); the cell's new values are kept in ``candidates[:, t + 1]``
    when it has room for them."""
    if candidates.shape[1] > 1:
        for k in range(candidates.shape[0]):
            for b in range(running):
                new, kept = states[k, t + 1, b], candidates[k, t + 1, b]
                for u in range(u0, u1):
                    kept[u] = new[u]
    one = states.dtype.type(1)
    for k in range(zone.shape[0]):
        for b in range(running):
            previous, new, d_row = states[k, t, b], states[k, t + 1, b], zone[k, t, b]
            for u in range(u0, u1):
                d = d_row[u]
                new[u] = d * previous[u] + (one - d) * new[u]


@njit(cache=True, error_model="numpy")
def split_zoneout_gradient(t, running, u0, u1, dy, dnext, zone, skipped):
    """Before backward step t: the gradient reaching the zoned-out state (dnext, and dy for h)
    splits into (1 − d) ⊙ g, left in dnext for the cell (dy[t] is folded in and zeroed), and
    d ⊙ g, kept in ``skipped`` for the previous state."""
    one = dnext.dtype.type(1)
    for b in range(running):
        g_row, dy_row = dnext[0, b], dy[t, b]
        for u in range(u0, u1):
            g_row[u] += dy_row[u]
            dy_row[u] = 0
    for k in range(zone.shape[0]):
        for b in range(running):
            g_row, d_row, skip_row = dnext[k, b], zone[k, t, b], skipped[k, b]
            for u in range(u0, u1):
                g, d = g_row[u], d_row[u]
                skip_row[u] = d * g
                g_row[u] = (one - d) * g


@njit(cache=True, error_model="numpy")
def record_state_gradient(t, running, dy, dnext, norms):
    """Before backward step t: norms[t, b] = ‖∂L/∂h_t‖ of each running row, the gradient from
    the later steps plus dy[t] (introspection; the loops pass an empty ``norms`` otherwise)."""
    for b in range(running):
        g_row, dy_row = dnext[0, b], dy[t, b]
        total = 0.0
        for u in range(g_row.shape[0]):
            g = g_row[u] + dy_row[u]
            total += g * g
        norms[t, b] = np.sqrt(total)


@njit(cache=True, error_model="numpy")
def add_skipped_gradient(running, u0, u1, dprev, skipped):
    """After backward step t: the part of the gradient that zoneout sent past the step."""
    for k in range(skipped.shape[0]):
        for b in range(running):
            for u in range(u0, u1):
                dprev[k, b, u] += skipped[k, b, u]


def forward_loop(xproj, states, tape, weights, work, bounds, active, t0, t1, zone, candidates, mask, inputs):
    """Run steps ``t0`` … ``t1 − 1`` forward.

    xproj (t1 − t0, B, G·H) those steps' input projections (step t in xproj[t − t0]);
    states (S, T+1, B, H) with states[:, t0] set on entry, states[:, t0+1 … t1] filled on
    return; tape (T, K, B, H) the cell's saved activations, or (1, K, B, H) for inference,
    when every step reuses slot 0. The batch is sorted by non-increasing length, so at
    step t the rows still running are the first active[t]; the others carry their state
    unchanged and cost no work. Zoneout: zone (S, T, B, H) in the direction's time, or
    empty (no zoneout); candidates (S, T+1, B, H) receives the cell's new states (or is
    empty, in inference). Recurrent dropout: mask (B, H), or empty; inputs (T, B, H), or
    (1, B, H) for inference, receives what ``weight_hh`` sees at each step, h ⊙ mask.
    """
    batch = states.shape[2]
    blocks = bounds.shape[0] - 1
    keep = 1 if tape.shape[0] == states.shape[1] - 1 else 0
    for t in range(t0, t1):
        running = active[t]
        if running > 0:
            source = states[0, t]
            if mask.shape[0] > 0:
                source = inputs[t * keep]
                for block in prange(blocks):
                    mask_recurrent_input(t, running, bounds[block], bounds[block + 1], states, mask, source)
            zoned = zone.shape[0] > 0
            for phase in range(FORWARD_PHASES):
                for block in prange(blocks):
                    step_forward(phase, t, t * keep, running, bounds[block], bounds[block + 1],
                                 xproj[t - t0], states, source, tape, weights, work)
                    # the block's own units only: no barrier needed before the next step's
                    if zoned and phase == FORWARD_PHASES - 1:
                        zone_out_block(t, running, bounds[block], bounds[block + 1], states, zone, candidates)
        if running < batch:
            states[:, t + 1, running:] = states[:, t, running:]


def backward_loop(dy, states, tape, dstates, dgx, weights, work, bounds, active, t0, t1, zone, skipped, mask,
                  inputs, norms):
    """Run steps ``t1 − 1`` down to ``t0`` backward.

    dstates (2, S, B, H) is a pair of state-gradient buffers used alternately; on entry
    dstates[(t1 − t0) % 2] holds the gradient of the state after step t1 − 1, on return
    dstates[0] holds the gradient of the state before step t0. dgx (t1 − t0, B, G·H), zero
    on entry, receives the gradients of those steps' gate pre-activations (step t in
    dgx[t − t0]); rows past a sequence's end stay zero and pass the state gradient through.
    Zoneout: zone as in :func:`forward_loop` (or empty), skipped (S, B, H) a workspace, and
    dy then the loop's own copy (its rows are folded into the state gradient). Recurrent
    dropout: mask and inputs as the forward left them (or empty). norms: (T, B) receives each
    step's ‖∂L/∂h_t‖ (:func:`record_state_gradient`), or is empty.
    """
    batch = dy.shape[1]
    blocks = bounds.shape[0] - 1
    for t in range(t1 - 1, t0 - 1, -1):
        dnext = dstates[(t - t0 + 1) % 2]
        dprev = dstates[(t - t0) % 2]
        dgates = dgx[t - t0]
        running = active[t]
        if running > 0:
            if norms.shape[0] > 0:
                record_state_gradient(t, running, dy, dnext, norms)
            zoned = zone.shape[0] > 0
            source = inputs[t] if mask.shape[0] > 0 else states[0, t]
            for phase in range(BACKWARD_PHASES):
                for block in prange(blocks):
                    # zoneout's split and sum touch the block's own units, which the first
                    # phase reads and the last writes: they share those phases' regions
                    if zoned and phase == 0:
                        split_zoneout_gradient(t, running, bounds[block], bounds[block + 1], dy, dnext, zone,
                                               skipped)
                    step_backward(phase, t, running, bounds[block], bounds[block + 1],
                                  dy, states, source, mask, tape, dnext, dprev, dgates, weights, work)
                    if zoned and phase == BACKWARD_PHASES - 1:
                        add_skipped_gradient(running, bounds[block], bounds[block + 1], dprev, skipped)
        if running < batch:
            dprev[:, running:] = dnext[:, running:]
