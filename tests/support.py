"""Shared helpers: random problems and per-dtype comparison against the reference."""
import threading

import numpy as np
import pytest

from fastlstm import functional, tuning
from fastlstm.backends.cpu.blas import mkl_library
from fastlstm.cells import VARIANTS, make_cell
from fastlstm.config import make_config
from fastlstm.initialisation import init_parameters
from fastlstm.tolerances import judged, naive_float32_backend

# The reference's equations evaluated in float32: their error on a problem measures its float32
# conditioning (see fastlstm.tolerances).
NAIVE = naive_float32_backend()

# The library's own list of the six variants: tests, check and bench all run these.
CELL_VARIANTS = {name: dict(kind=kind, **options) for name, (kind, options) in VARIANTS.items()}



def make_problem(variant, steps, batch, inputs, hidden, dtype, seed, x_scale=1.0, param_scale=1.0,
                 with_state=True, with_dstate=True, lengths=None, **layer_options):
    """A layer config, parameters and random x, state, dy, dstate, all exactly of ``dtype``."""
    rng = np.random.default_rng(seed)
    cell = make_cell(**CELL_VARIANTS[variant])
    config = make_config(cell, inputs, hidden, dtype=np.dtype(dtype).name, backend="cpu", **layer_options)
    params = {k: (v * param_scale).astype(dtype) for k, v in init_parameters(config, seed).items()}
    directions = config.directions
    x = (x_scale * rng.standard_normal((steps, batch, inputs))).astype(dtype)
    if config.batch_first:
        x = np.ascontiguousarray(x.transpose(1, 0, 2))
    state_shape = config.state_shape(batch)

    def state_like():
        parts = [rng.standard_normal(state_shape).astype(dtype) for _ in range(cell.state_count)]
        return tuple(parts) if cell.kind == "lstm" else parts[0]

    y_shape = (batch, steps, directions * hidden) if config.batch_first else (steps, batch, directions * hidden)
    return dict(
        config=config, params=params, x=x,
        state=state_like() if with_state else None,
        dy=rng.standard_normal(y_shape).astype(dtype),
        dstate=state_like() if with_dstate else None,
        lengths=lengths,
    )


def with_backend(config, backend):
    """The same layer on ``backend``; the reference always computes and answers in float64."""
    from dataclasses import replace

    if backend == "reference":
        return replace(config, backend=backend, dtype=np.float64)
    if backend == "reference-float32":
        return replace(config, backend=backend, dtype=np.float32)
    return replace(config, backend=backend)


# The cpu loops' strategies (fastlstm.backends.cpu.strategy), as the property tests force them:
# "sequences" with blocks of one row and up to four blocks, so that small batches are split;
# "units" with blocks of 8 units or more, so that small layers are split: its blocks held by
# threads at a barrier (two blocks, where Numba has two threads), "units-regions" a parallel
# region per phase (up to 16 blocks).
LOOP_STRATEGIES = ("auto", "sequences", "single", "units", "units-regions")

# the BLAS libraries the cpu backend's products can call (tuning's cpu_blas); MKL where PyPI's mkl
# is installed beside the interpreter (.ci/run installs it)
BLAS_LIBRARIES = ("scipy", pytest.param("mkl", marks=pytest.mark.skipif(
    mkl_library() is None, reason="PyPI's mkl not installed beside this interpreter")))


def loop_strategy(name):
    """A ``tuning.override`` forcing the cpu loop strategy ``name`` (one of :data:`LOOP_STRATEGIES`)."""
    if name == "sequences":
        return tuning.override(cpu_loop=name, batch_rows=1, cost_threads=4)
    if name == "units":
        return tuning.override(cpu_loop=name, step_units=8, cpu_units_sync="barrier")
    if name == "units-regions":
        return tuning.override(cpu_loop="units", step_units=8, cpu_units_sync="regions")
    return tuning.override(cpu_loop=name)


def run(problem, backend):
    """Forward and backward on ``backend``; returns every output as a flat dict."""
    config = with_backend(problem["config"], backend)
    y, final, tape = functional.forward(config, problem["params"], problem["x"], problem["state"],
                                        problem.get("lengths"))
    dx, dstate0, grads, _ = functional.backward(tape, problem["dy"], problem["dstate"])
    out = {"y": y, "dx": dx}
    out.update(_flatten("final", final))
    out.update(_flatten("dstate0", dstate0))
    out.update({f"grad[{k}]": v for k, v in grads.items()})
    return out


def state_parts(state):
    """A public state (``(h, c)`` or ``h``) as a tuple of arrays."""
    return state if isinstance(state, tuple) else (state,)


def _flatten(name, state):
    if isinstance(state, tuple):
        return {f"{name}[{k}]": s for k, s in enumerate(state)}
    return {name: state}


def assert_matches_reference(result, expected, dtype, naive=None):
    """Every array within fastlstm.tolerances of the reference.

    ``naive``: the reference's equations evaluated in float32 (``run(problem,
    "reference-float32")``), whose error measures the problem's float32 conditioning.
    """
    verdicts = judged(result, expected, dtype, naive)
    bad = {name: verdict for name, verdict in verdicts.items() if not verdict["ok"]}
    assert not bad, f"arrays off the reference: {bad}"


def numeric_gradient(loss, array, eps=1e-6):
    """Central finite differences of ``loss()`` with respect to every entry of ``array``
    (perturbed in place and restored)."""
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + eps
        up = loss()
        array[index] = saved - eps
        down = loss()
        array[index] = saved
        grad[index] = (up - down) / (2 * eps)
    return grad


def run_in_threads(work, arguments):
    """Run ``work(argument)`` for every argument, each in a thread of its own, all at once; re-raise,
    in the caller's thread, the first exception any of them raised."""
    errors = []

    def guarded(argument):
        try:
            work(argument)
        except BaseException as error:      # surfaced below, in the caller's thread
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(argument,)) for argument in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
