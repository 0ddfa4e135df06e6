"""``python -m fastlstm check``: every available backend against the reference, on this machine."""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from . import functional
from .backends import get_backend
from .cells import VARIANTS, make_variant
from .config import make_config
from .initialisation import init_parameters
from .tolerances import judged, naive_float32_backend

FAST_BACKENDS = ["cpu", "cuda"]


def _available_backends(out):
    """The fast backends that run here; says why the cuda backend does not, when it does not."""
    available = []
    for name in FAST_BACKENDS:
        try:
            get_backend(name)
        except RuntimeError as error:
            out(f"{name}: not available here: {error}")
            continue
        available.append(name)
    return available


def _run(config, params, x, dy):
    start = time.perf_counter()
    y, final, tape = functional.forward(config, params, x)
    dx, _, grads, _ = functional.backward(tape, dy)
    elapsed = time.perf_counter() - start
    loop = getattr(tape.layer_tapes[0], "forward_loop", None)
    return dict(y=y, dx=dx, **grads), elapsed, loop


def _worst(verdicts):
    """(the largest error / max|reference|, the largest error / allowed) over the arrays."""
    tiny = np.finfo(np.float64).tiny
    relative = max(v["error"] / max(v["max_reference"], tiny) for v in verdicts.values())
    share = max(v["error"] / v["allowed"] if v["allowed"] > 0 else (0.0 if v["error"] == 0 else np.inf)
                for v in verdicts.values())
    return relative, share


def check(steps=20, batch=8, input_size=16, hidden_size=32, seed=0, out=print, backends=None):
    """Run each cell, dtype and fast backend against the reference and print a table.

    A backend passes by the rule the tests apply (:func:`fastlstm.tolerances.judged`, with the
    float32 slack measured on the same problem).

    Parameters
    ----------
    steps, batch, input_size, hidden_size : int, the problem's T, B, I and H
    seed : int, of the problem's numbers and parameters
    out : callable, where each line of the table goes
    backends : list of str, optional
        The backends to check (a registered one included); by default every fast backend
        that runs here.

    Returns
    -------
    bool
        True when every error is within :mod:`fastlstm.tolerances`.
    """
    rng = np.random.default_rng(seed)
    x64 = rng.standard_normal((steps, batch, input_size))
    dy64 = rng.standard_normal((steps, batch, hidden_size))
    header = f"{'cell':<24}{'dtype':<9}{'backend':<11}{'max rel error':>15}{'of allowed':>12}" \
             f"{'first call':>12}{'fwd+bwd':>11}"
    out(f"fastlstm check: T={steps} B={batch} I={input_size} H={hidden_size}, errors relative to "
        f"the float64 reference; 'of allowed' is the worst array's error over what fastlstm.tolerances "
        f"allows it (the rule the tests apply; at most 1 passes)")
    backends = _available_backends(out) if backends is None else list(backends)
    out(header)
    out("-" * len(header))
    all_ok = True
    loops = []
    for variant in VARIANTS:
        cell = make_variant(variant)
        for dtype in ("float32", "float64"):
            ref_config = make_config(cell, input_size, hidden_size, dtype="float64", backend="reference")
            params = init_parameters(make_config(cell, input_size, hidden_size, dtype=dtype), seed)
            expected, _, _ = _run(ref_config, params, x64.astype(dtype), dy64.astype(dtype))
            naive = None
            if dtype == "float32":
                naive_config = make_config(cell, input_size, hidden_size, dtype="float32")
                naive, _, _ = _run(replace(naive_config, backend=naive_float32_backend()), params,
                                   x64.astype(dtype), dy64.astype(dtype))
            for backend in backends:
                config = replace(make_config(cell, input_size, hidden_size, dtype=dtype), backend=backend)
                x, dy = x64.astype(dtype), dy64.astype(dtype)
                _, first, _ = _run(config, params, x, dy)
                result, elapsed, loop = _run(config, params, x, dy)
                if loop is not None and dtype == "float32":
                    loops.append(f"{cell.label}: {loop.describe()}")
                verdicts = judged(result, expected, dtype, naive)
                ok = all(v["ok"] for v in verdicts.values())
                relative, share = _worst(verdicts)
                all_ok &= ok
                out(f"{cell.label:<24}{dtype:<9}{backend:<11}{relative:>15.2e}{share:>12.1e}"
                    f"{first * 1e3:>10.0f}ms{elapsed * 1e3:>9.2f}ms" + ("" if ok else "  FAIL"))
    if loops:
        out("cuda recurrent loops at this size (float32; FASTLSTM_CUDA_LOOP=persistent, per-step or gemm forces one):")
        for line in loops:
            out(f"  {line}")
    out("all within tolerance" if all_ok else "SOME BACKENDS ARE OFF THE REFERENCE")
    return all_ok
