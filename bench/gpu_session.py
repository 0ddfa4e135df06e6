"""One prepared GPU session: versions, plans, agreement, the cuBLAS step GEMM, timings vs cuDNN, host vs GPU time.

Made for a short loan of one GPU (under 7 minutes)::

    python bench/gpu_session.py --out gpu_session.json

and, without a GPU, end to end under Numba's CUDA simulator on tiny shapes (the test suite
runs this)::

    NUMBA_ENABLE_CUDASIM=1 python bench/gpu_session.py --simulate --out /tmp/session.json

Sections, in this order, each written to the JSON file as soon as it is done and each
guarded (an exception is recorded as the section's ``error`` and the next section runs):

``environment``
    Python, NumPy, Numba, numba-cuda, PyTorch, CUDA, cuDNN, the GPU and its compute capability.
``plans``
    The recurrent loop fastlstm picks (forward and backward) for each shape of
    ``bench/cuda_vs_cudnn.py`` (the DeepBench shapes; tiny ones with ``--simulate``).
``agreement``
    Every cell variant, float32 and float64, each loop forced (persistent, per-step and the
    large-batch GEMM loop, :mod:`fastlstm.backends.cuda.plan`), two
    bidirectional layers with lengths: the cuda backend against the float64 reference
    (:func:`fastlstm.tolerances.judged`), and against PyTorch's cuDNN on the same weights where
    the cell has a PyTorch counterpart and torch has CUDA (``cudnn`` says why not otherwise):
    ``|fastlstm − cuDNN| ≤ fastlstm's allowance + cuDNN's own error``. ``passed`` is over every
    case run.
``step_gemm``
    The GEMM loop's cuBLAS step GEMM (CuPy's binding, ``cuda_step_gemm="cublas"``, never run
    before this script): against the numba GEMM and a float64 host product on the loop's own
    operand layouts (a transposed weight view, column slices of the product and of the gate
    gradients; float32 and float64); the GEMM loop with each step GEMM against the reference
    (the LSTM with peepholes, both GRUs, the RNN; both dtypes); and the GEMM loop's time per
    call with each on the training shapes (while under 70 % of the budget is spent). Without
    CuPy's cuBLAS (and under ``--simulate``) it records that it was skipped and why.
``timings``
    ``cuda_vs_cudnn.measure`` on each shape (fastlstm vs cuDNN, same inputs, TF32 off), or,
    without torch CUDA, fastlstm's own time per call.
``host_vs_gpu``
    For one inference and one training shape: a call's host time (until it returns), its GPU
    time (CUDA events), and the device allocations and pool leases per call after the first.
``loops``
    fastlstm's time per call on each shape with each loop forced, beside the one the rule
    picks: the data to check the rule's batch threshold (``plan.GEMM_MIN_BATCH``).

``--budget-s`` (default 400) bounds the whole run: a section that would start after it, and
agreement cases past their share, are recorded as not reached.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
LOOPS = ("persistent", "per-step", "gemm")
DTYPES = ("float32", "float64")


class Session:
    """The JSON file, rewritten after every section."""

    def __init__(self, path, budget_s):
        self.path = Path(path)
        self.start = time.perf_counter()
        self.budget_s = budget_s
        self.data = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "simulated": SIMULATED, "sections": {}}
        self.write()

    def elapsed(self):
        return time.perf_counter() - self.start

    def write(self):
        self.data["elapsed_s"] = round(self.elapsed(), 2)
        temporary = self.path.with_suffix(self.path.suffix + ".part")
        temporary.write_text(json.dumps(self.data, indent=1, default=_plain))
        temporary.replace(self.path)

    def section(self, name, work):
        """Run ``work(self)`` and record what it returns, or its error; print a line."""
        if self.elapsed() > self.budget_s:
            self.data["sections"][name] = {"not_reached": f"budget of {self.budget_s} s spent"}
        else:
            began = time.perf_counter()
            try:
                result = work(self)
            except Exception as error:  # noqa: BLE001 — recorded; the next section still runs
                result = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
            result["seconds"] = round(time.perf_counter() - began, 2)
            self.data["sections"][name] = result
        self.write()
        summary = {k: v for k, v in self.data["sections"][name].items() if not isinstance(v, (list, dict))}
        print(f"[{self.elapsed():6.1f} s] {name}: {json.dumps(summary, default=_plain)[:300]}", flush=True)


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _torch_cuda():
    """torch when it has CUDA, else (None, why)."""
    try:
        import torch
    except ImportError as error:
        return None, f"torch is not installed ({error})"
    if SIMULATED or not torch.cuda.is_available():
        return None, "torch has no CUDA device here" + (" (CUDA simulator)" if SIMULATED else "")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    return torch, None


# ---------------------------------------------------------------- shapes

def _shapes(simulate):
    from fastlstm.benchmark.shapes import CUDNN_SHAPES

    if not simulate:
        return list(CUDNN_SHAPES)
    from dataclasses import replace

    # the same rows, tiny: the simulator runs every GPU thread as a Python thread
    return [replace(CUDNN_SHAPES[0], hidden_size=3, input_size=3, batch=1, steps=2),
            replace(CUDNN_SHAPES[3], hidden_size=3, input_size=3, batch=2, steps=2)]


def _describe(shape):
    return f"{shape.id} {shape.label} H={shape.hidden_size} B={shape.batch} T={shape.steps} {shape.mode}"


# ---------------------------------------------------------------- sections

def environment(session):
    import numba

    info = dict(python=platform.python_version(), numpy=np.__version__, numba=numba.__version__,
                machine=platform.machine(), simulated=SIMULATED)
    try:
        import numba_cuda

        info["numba_cuda"] = getattr(numba_cuda, "__version__", "?")
    except ImportError:
        info["numba_cuda"] = None
    from numba import cuda

    if not SIMULATED:
        device = cuda.get_current_device()
        info.update(gpu=device.name.decode() if isinstance(device.name, bytes) else str(device.name),
                    compute_capability=list(device.compute_capability),
                    driver=".".join(map(str, cuda.cudadrv.driver.driver.get_version())))
    torch, why = _torch_cuda()
    try:
        import torch as installed

        info["torch"] = installed.__version__
    except ImportError:
        info["torch"] = None
    if torch is not None:
        info.update(torch_cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                    torch_gpu=torch.cuda.get_device_name())
    else:
        info["cudnn"] = f"skipped: {why}"
    for optional in ("cupy", "nvmath"):
        try:
            info[optional] = __import__(optional).__version__
        except Exception:  # noqa: BLE001
            info[optional] = None
    from fastlstm.backends.cuda import gemm_loop

    chosen = gemm_loop.step_gemm("auto")
    info["step_gemm_auto"] = f"{chosen.name} ({chosen.reason})"
    return info


def plans(session):
    from numba import cuda

    rows = []
    for shape in _shapes(session.simulate):
        layer = shape.make_layer(backend="cuda", seed=0)
        x = cuda.to_device(np.zeros((shape.steps, shape.batch, shape.input_size), layer.config.dtype))
        layer(x)
        layer.backward(cuda.to_device(np.zeros((shape.steps, shape.batch, shape.hidden_size), layer.config.dtype)))
        tape = layer.tape.layer_tapes[0]
        rows.append(dict(shape=_describe(shape), forward=tape.forward_loop.describe(),
                         backward=tape.backward_loop.describe()))
        print(f"  {rows[-1]['shape']}: {rows[-1]['forward']}", flush=True)
    return {"shapes": rows}


def _problem(variant, dtype, simulate, seed):
    from fastlstm.cells import VARIANTS, make_cell
    from fastlstm.config import make_config
    from fastlstm.initialisation import init_parameters

    kind, options = VARIANTS[variant]
    steps, batch, inputs, hidden, layers = (2, 2, 2, 2, 1) if simulate else (7, 5, 9, 24, 2)
    config = make_config(make_cell(kind=kind, **options), inputs, hidden, num_layers=layers, bidirectional=True,
                         dtype=dtype, backend="cuda")
    rng = np.random.default_rng(seed)
    params = {k: v.astype(dtype) for k, v in init_parameters(config, seed).items()}
    parts = 2 if kind == "lstm" else 1
    shape = config.state_shape(batch)
    state = tuple(rng.standard_normal(shape).astype(dtype) for _ in range(parts))
    dstate = tuple(rng.standard_normal(shape).astype(dtype) for _ in range(parts))
    lengths = np.maximum(1, steps - np.arange(batch) % steps).astype(np.int64)   # ≥ 1: cuDNN packs them
    return dict(config=config, params=params, x=rng.standard_normal((steps, batch, inputs)).astype(dtype),
                state=state if parts == 2 else state[0], dstate=dstate if parts == 2 else dstate[0],
                dy=rng.standard_normal((steps, batch, config.output_size)).astype(dtype), lengths=lengths)


def _flat(y, final, dx, dstate0, grads):
    out = {"y": y, "dx": dx}
    for name, state in (("final", final), ("dstate0", dstate0)):
        for k, s in enumerate(state if isinstance(state, tuple) else (state,)):
            out[f"{name}[{k}]"] = s
    out.update({f"grad[{k}]": v for k, v in grads.items()})
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def _run_fastlstm(problem, backend, dtype=None):
    from dataclasses import replace

    from fastlstm import functional

    config = replace(problem["config"], backend=backend, dtype=np.dtype(dtype or problem["config"].dtype))
    params = {k: v.astype(config.dtype) for k, v in problem["params"].items()}
    cast = (lambda s: tuple(p.astype(config.dtype) for p in s)) if isinstance(problem["state"], tuple) else \
        (lambda s: s.astype(config.dtype))
    y, final, tape = functional.forward(config, params, problem["x"].astype(config.dtype), cast(problem["state"]),
                                        problem["lengths"])
    dx, dstate0, grads, _ = functional.backward(tape, problem["dy"].astype(config.dtype), cast(problem["dstate"]))
    return _flat(y, final, dx, dstate0, grads)


def _run_cudnn(torch, problem, variant):
    """The same problem through torch.nn.LSTM/GRU/RNN on the GPU (cuDNN), packed sequences."""
    from fastlstm.cells import VARIANTS

    kind, options = VARIANTS[variant]
    config = problem["config"]
    dtype = {"float32": torch.float32, "float64": torch.float64}[np.dtype(config.dtype).name]
    module_class = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind]
    extra = {"nonlinearity": options["nonlinearity"]} if kind == "rnn" else {}
    module = module_class(config.input_size, config.hidden_size, config.num_layers, bidirectional=True,
                          dtype=dtype, device="cuda", **extra)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            parameter.copy_(torch.from_numpy(problem["params"][name]))
    device = dict(device="cuda", dtype=dtype)
    x = torch.tensor(problem["x"], requires_grad=True, **device)
    is_lstm = kind == "lstm"
    state = tuple(torch.tensor(s, requires_grad=True, **device) for s in problem["state"]) if is_lstm else \
        torch.tensor(problem["state"], requires_grad=True, **device)
    lengths = torch.from_numpy(problem["lengths"])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    out, final = module(packed, state)
    y, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=x.shape[0])
    finals = final if is_lstm else (final,)
    dstates = problem["dstate"] if is_lstm else (problem["dstate"],)
    loss = (y * torch.tensor(problem["dy"], **device)).sum()
    loss = loss + sum((f * torch.tensor(d, **device)).sum() for f, d in zip(finals, dstates))
    loss.backward()
    grads = {name: p.grad.cpu().numpy() for name, p in module.named_parameters()}
    dstate0 = tuple(s.grad.cpu().numpy() for s in state) if is_lstm else state.grad.cpu().numpy()
    final_host = tuple(f.detach().cpu().numpy() for f in finals)
    return _flat(y.detach().cpu().numpy(), final_host if is_lstm else final_host[0], x.grad.cpu().numpy(),
                 dstate0, grads)


def agreement(session):
    from fastlstm import tuning
    from fastlstm.cells import VARIANTS
    from fastlstm.tolerances import judged, naive_float32_backend

    naive_backend = naive_float32_backend()
    torch, why = _torch_cuda()
    cases = []
    for variant in sorted(VARIANTS):
        for dtype in DTYPES:
            for loop in LOOPS:
                cases.append((variant, dtype, loop))
    if session.simulate:   # every variant once; each loop with both dtypes among them
        cases = [(variant, DTYPES[i % 2], LOOPS[i % 3]) for i, variant in enumerate(sorted(VARIANTS))]
    deadline = session.start + session.budget_s * 0.6
    rows, references = [], {}
    for variant, dtype, loop in cases:
        if time.perf_counter() > deadline:
            rows.append(dict(variant=variant, dtype=dtype, loop=loop, not_reached="the agreement's time share"))
            continue
        row = dict(variant=variant, dtype=dtype, loop=loop)
        try:
            problem = _problem(variant, dtype, session.simulate, seed=len(rows))
            key = (variant, dtype)
            if key not in references:
                references[key] = (_run_fastlstm(problem, "reference", "float64"),
                                   _run_fastlstm(problem, naive_backend, "float32") if dtype == "float32"
                                   else None)
            expected, naive = references[key]
            with tuning.override(cuda_loop=loop):
                ours = _run_fastlstm(problem, "cuda")
            verdicts = judged(ours, expected, np.dtype(dtype), naive)
            row["reference_ok"] = all(v["ok"] for v in verdicts.values())
            row["worst_vs_reference"] = max(verdicts.items(), key=lambda kv: kv[1]["error"] / max(kv[1]["allowed"],
                                                                                                   1e-300))
            kind, options = VARIANTS[variant]
            if torch is None:
                row["cudnn"] = f"skipped: {why}"
            elif options.get("peephole") or (kind == "gru" and not options.get("reset_after", True)):
                row["cudnn"] = "skipped: no PyTorch counterpart"
            else:
                theirs = _run_cudnn(torch, problem, variant)
                theirs_verdicts = judged(theirs, expected, np.dtype(dtype), naive)
                differences = {name: float(np.max(np.abs(ours[name] - theirs[name]), initial=0.0)) for name in ours}
                bad = {name: d for name, d in differences.items()
                       if d > verdicts[name]["allowed"] + theirs_verdicts[name]["error"]}
                row["cudnn"] = dict(ok=not bad, max_difference=max(differences.values()), off=bad)
            row["ok"] = row["reference_ok"] and (not isinstance(row["cudnn"], dict) or row["cudnn"]["ok"])
        except Exception as error:  # noqa: BLE001 — one case's failure is recorded, the others run
            row.update(ok=False, error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc())
        rows.append(row)
        print(f"  {variant} {dtype} {loop}: {'ok' if row.get('ok') else 'FAILED'}", flush=True)
        session.data["sections"]["agreement"] = {"cases": rows, "partial": True}
        session.write()
    run = [r for r in rows if "not_reached" not in r]
    cudnn_run = sum(isinstance(r.get("cudnn"), dict) for r in run)
    return {"cases": rows, "passed": bool(run) and all(r["ok"] for r in run), "run": len(run),
            "cases_not_reached": len(rows) - len(run), "cudnn_compared": cudnn_run,
            "cudnn": "compared" if cudnn_run else f"skipped: {why or 'no case reached it'}"}


def _layer_call(shape, layer, x, dy):
    """One call of ``shape``'s mode: an inference forward, or a training forward and backward."""
    def call():
        if shape.mode == "inference":
            layer(x, tape=False)
        else:
            layer(x)
            layer.backward(dy)
    return call


def _time_fastlstm_only(shape, calls):
    """fastlstm's median wall time per call (ms), host inputs on the simulator, device ones on a GPU."""
    from numba import cuda

    layer = shape.make_layer(backend="cuda", seed=0)
    dtype = layer.config.dtype
    x = cuda.to_device(np.random.default_rng(0).standard_normal((shape.steps, shape.batch, shape.input_size))
                       .astype(dtype))
    dy = cuda.to_device(np.ones((shape.steps, shape.batch, shape.hidden_size), dtype))

    call = _layer_call(shape, layer, x, dy)
    call()
    samples = []
    for _ in range(calls):
        began = time.perf_counter()
        call()
        cuda.synchronize()
        samples.append((time.perf_counter() - began) * 1e3)
    return statistics.median(samples)


def timings(session):
    torch, why = _torch_cuda()
    rows = []
    for shape in _shapes(session.simulate):
        if session.elapsed() > session.budget_s * 0.9:
            rows.append(dict(shape=_describe(shape), not_reached="budget"))
            continue
        if torch is None:
            rows.append(dict(shape=_describe(shape), fastlstm_ms=_time_fastlstm_only(shape, 1 if session.simulate
                                                                                       else 20),
                             cudnn=f"skipped: {why}"))
        else:
            import cuda_vs_cudnn

            result = cuda_vs_cudnn.measure(torch, shape, session.rounds, session.block_ms)
            result["shape"] = _describe(shape)
            result["met"] = result["ratio"] <= result["target"]
            rows.append(result)
        print(f"  {rows[-1]['shape']}: " + ", ".join(f"{k}={rows[-1][k]:.3f}" if isinstance(rows[-1][k], float)
                                                      else f"{k}={rows[-1][k]}" for k in
                                                      ("fastlstm_ms", "cudnn_ms", "ratio") if k in rows[-1]),
              flush=True)
    return {"shapes": rows, "cudnn": "compared" if torch is not None else f"skipped: {why}",
            "note": "simulator times are not GPU times" if SIMULATED else
            "median block time of back-to-back calls between CUDA events (bench/cuda_vs_cudnn.py)"}


def host_vs_gpu(session):
    from numba import cuda

    from fastlstm.backends.cuda import workspace

    rows = []
    picks = [s for s in _shapes(session.simulate) if s.mode == "inference"][:1] + \
        [s for s in _shapes(session.simulate) if s.mode == "training"][:1]
    calls = 1 if session.simulate else 20
    for shape in picks:
        layer = shape.make_layer(backend="cuda", seed=0)
        layer.params = {name: cuda.to_device(value) for name, value in layer.params.items()}
        dtype = layer.config.dtype
        x = cuda.to_device(np.ones((shape.steps, shape.batch, shape.input_size), dtype))
        dy = cuda.to_device(np.ones((shape.steps, shape.batch, shape.hidden_size), dtype))

        call = _layer_call(shape, layer, x, dy)
        call()
        cuda.synchronize()
        before = workspace.statistics()
        host, gpu = [], []
        for _ in range(calls):
            cuda.synchronize()
            if not SIMULATED:
                start, end = cuda.event(), cuda.event()
                start.record()
            began = time.perf_counter()
            call()
            host.append((time.perf_counter() - began) * 1e3)
            if not SIMULATED:
                end.record()
                end.synchronize()
                gpu.append(cuda.event_elapsed_time(start, end))
        after = workspace.statistics()
        rows.append(dict(shape=_describe(shape), host_ms=statistics.median(host),
                         gpu_ms=statistics.median(gpu) if gpu else None,
                         allocations_per_call=(after["allocations"] - before["allocations"]) / calls,
                         leases_per_call=(after["leases"] - before["leases"]) / calls,
                         meaning="host_ms: until the call returns (launches are asynchronous); gpu_ms: CUDA "
                                 "events around it; GPU-bound when gpu_ms >> host_ms, host-bound when equal"))
        print(f"  {rows[-1]['shape']}: host {rows[-1]['host_ms']:.3f} ms, gpu {rows[-1]['gpu_ms']} ms, "
              f"{rows[-1]['allocations_per_call']} allocations per call", flush=True)
    return {"shapes": rows}


def loops(session):
    from fastlstm import tuning
    from fastlstm.backends.cuda import plan

    rows = []
    calls = 1 if session.simulate else 5
    for shape in _shapes(session.simulate):
        row = dict(shape=_describe(shape), rule=f"gemm from batch {plan.GEMM_MIN_BATCH} (plans: the loop picked)")
        for loop in LOOPS:
            if session.elapsed() > session.budget_s * 0.95:
                row[f"{loop}_ms"] = "not reached: budget"
                continue
            try:
                with tuning.override(cuda_loop=loop):
                    row[f"{loop}_ms"] = _time_fastlstm_only(shape, calls)
            except Exception as error:  # noqa: BLE001 — one loop's failure is recorded, the others run
                row[f"{loop}_ms"] = f"error: {type(error).__name__}: {error}"
        rows.append(row)
        print(f"  {row['shape']}: " + ", ".join(
            f"{loop} " + (f"{value:.3f} ms" if isinstance(value, float) else value)
            for loop, value in ((loop, row[f"{loop}_ms"]) for loop in LOOPS)), flush=True)
        session.data["sections"]["loops"] = {"shapes": rows, "partial": True}
        session.write()
    return {"shapes": rows, "note": "simulator times are not GPU times" if SIMULATED else
            "median wall time per call of back-to-back calls, each followed by a synchronisation"}


# the GEMM loop's operands, as (B, H, gates, gate rows [g0, g1) of the product): the LSTM's all four gates,
# the reset-before GRU's last (its second phase), a batch and width off the tiles, one sequence
STEP_GEMM_SHAPES = ((64, 256, 4, (0, 4)), (33, 100, 3, (2, 3)), (1, 7, 3, (0, 2)))
STEP_GEMM_VARIANTS = ("lstm_peephole", "gru", "gru_reset_before", "rnn_tanh")


def _product_check(matmul, a, b, region, columns, expected, bound):
    """Run ``matmul(a, b, region[:, columns])`` (``region`` filled with a sentinel first) and say
    how far the product is from ``expected`` relative to ``bound``, and whether the rest of
    ``region`` kept the sentinel."""
    from numba import cuda

    sentinel = 12345.0
    region.copy_to_device(np.full(region.shape, sentinel, region.dtype))
    matmul(a, b, region[:, columns])
    cuda.synchronize()
    whole = region.copy_to_host()
    index = (slice(None), columns)
    result = whole[index].astype(np.float64)
    mask = np.ones(whole.shape, bool)
    mask[index] = False
    ratio = float(np.max(np.abs(result - expected) / bound, initial=0.0))
    return result, dict(error_over_bound=ratio, ok=bool(ratio <= 1.0 and np.all(whole[mask] == sentinel)),
                        rest_untouched=bool(np.all(whole[mask] == sentinel)))


def _step_gemm_products(cublas_matmul):
    """cuBLAS and the numba GEMM on the loop's layouts, each against a float64 host product:
    |x − exact| ≤ 2·K·u·(|a| @ |b|) (u the dtype's unit roundoff; a bound any correct GEMM meets)."""
    from numba import cuda

    from fastlstm.backends.cuda import gemm, gemm_loop

    rows = []
    rng = np.random.default_rng(3)
    for dtype in DTYPES:
        unit = np.finfo(dtype).eps / 2
        for batch, hidden, gates, (g0, g1) in STEP_GEMM_SHAPES:
            weight_hh = rng.standard_normal((gates * hidden, hidden)).astype(dtype)
            w = cuda.to_device(weight_hh)
            columns = slice(g0 * hidden, g1 * hidden)
            # forward: h (B, H) @ weight_hh[rows]ᵀ into projection[:, rows]
            h = rng.standard_normal((batch, hidden)).astype(dtype)
            projection = cuda.device_array((batch, gates * hidden), dtype)
            # backward: dG[:, rows] (B, r) @ weight_hh[rows] into (B, H)
            gradients = rng.standard_normal((batch, gates * hidden)).astype(dtype)
            d_gradients = cuda.to_device(gradients)
            back = cuda.device_array((batch, hidden), dtype)
            cases = (("forward", cuda.to_device(h), gemm.transposed(w[columns]), projection, columns,
                      h.astype(np.float64), weight_hh[columns].T.astype(np.float64)),
                     ("backward", d_gradients[:, columns], w[columns], back, slice(None),
                      gradients[:, columns].astype(np.float64), weight_hh[columns].astype(np.float64)))
            for name, a, b, region, out_columns, a_host, b_host in cases:
                expected = a_host @ b_host
                bound = 2 * a_host.shape[1] * unit * (np.abs(a_host) @ np.abs(b_host)) + np.finfo(dtype).tiny
                ours, cublas_row = _product_check(cublas_matmul, a, b, region, out_columns, expected, bound)
                theirs, numba_row = _product_check(gemm_loop.numba_matmul, a, b, region, out_columns, expected,
                                                   bound)
                rows.append(dict(dtype=dtype, product=name, shape=f"({batch}, {a.shape[1]}) @ ({b.shape[0]}, "
                                 f"{b.shape[1]})", cublas=cublas_row, numba=numba_row,
                                 max_cublas_minus_numba=float(np.max(np.abs(ours - theirs), initial=0.0)),
                                 ok=cublas_row["ok"] and numba_row["ok"]))
                print(f"  {dtype} {name} {rows[-1]['shape']}: cuBLAS {cublas_row}, numba {numba_row}", flush=True)
    return rows


def _step_gemm_agreement(session):
    from fastlstm import tuning
    from fastlstm.tolerances import judged, naive_float32_backend

    naive_backend = naive_float32_backend()
    rows = []
    for variant in STEP_GEMM_VARIANTS:
        for dtype in DTYPES:
            problem = _problem(variant, dtype, session.simulate, seed=len(rows))
            expected = _run_fastlstm(problem, "reference", "float64")
            naive = _run_fastlstm(problem, naive_backend, "float32") if dtype == "float32" else None
            for choice in ("numba", "cublas"):
                row = dict(variant=variant, dtype=dtype, step_gemm=choice)
                try:
                    with tuning.override(cuda_loop="gemm", cuda_step_gemm=choice):
                        verdicts = judged(_run_fastlstm(problem, "cuda"), expected, np.dtype(dtype), naive)
                    row["ok"] = all(v["ok"] for v in verdicts.values())
                    row["worst_vs_reference"] = max(verdicts.items(), key=lambda kv: kv[1]["error"] /
                                                    max(kv[1]["allowed"], 1e-300))
                except Exception as error:  # noqa: BLE001 — recorded; the other cases run
                    row.update(ok=False, error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc())
                rows.append(row)
                print(f"  {variant} {dtype} gemm loop, {choice} step GEMM: {'ok' if row['ok'] else 'FAILED'}",
                      flush=True)
    return rows


def _step_gemm_timings(session):
    from fastlstm import tuning

    rows = []
    for shape in _shapes(session.simulate):
        if shape.mode != "training":
            continue
        row = dict(shape=_describe(shape))
        for choice in ("numba", "cublas"):
            if session.elapsed() > session.budget_s * 0.7:   # the later sections' share
                row[f"{choice}_ms"] = "not reached: budget"
                continue
            try:
                with tuning.override(cuda_loop="gemm", cuda_step_gemm=choice):
                    row[f"{choice}_ms"] = _time_fastlstm_only(shape, 5)
            except Exception as error:  # noqa: BLE001 — recorded; the other runs go on
                row[f"{choice}_ms"] = f"error: {type(error).__name__}: {error}"
        rows.append(row)
        print(f"  {row['shape']}: gemm loop, numba step GEMM {row['numba_ms']}, cuBLAS {row['cublas_ms']} (ms)",
              flush=True)
    return rows


def step_gemm(session):
    from fastlstm.backends.cuda import gemm_loop

    try:
        cublas = gemm_loop.step_gemm("cublas")
    except RuntimeError as error:
        return {"skipped": str(error)}
    auto = gemm_loop.step_gemm("auto")
    result = {"auto_picks": f"{auto.name} ({auto.reason})"}
    result["products"] = _step_gemm_products(cublas.matmul)
    session.data["sections"]["step_gemm"] = dict(result, partial=True)
    session.write()
    result["agreement"] = _step_gemm_agreement(session)
    session.data["sections"]["step_gemm"] = dict(result, partial=True)
    session.write()
    result["passed"] = all(r["ok"] for r in result["products"]) and all(r["ok"] for r in result["agreement"])
    result["timings"] = _step_gemm_timings(session)
    result["note"] = ("timings: the GEMM loop forced, median wall time per call of back-to-back calls, each "
                      "followed by a synchronisation")
    return result


SECTIONS = (("environment", environment), ("plans", plans), ("agreement", agreement), ("step_gemm", step_gemm),
            ("timings", timings), ("host_vs_gpu", host_vs_gpu), ("loops", loops))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_session.json", help="the JSON file, written as the run goes")
    parser.add_argument("--simulate", action="store_true",
                        help="tiny shapes, for NUMBA_ENABLE_CUDASIM=1 (set it in the environment)")
    parser.add_argument("--budget-s", type=float, default=400.0, help="the whole run's time bound")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per shape")
    parser.add_argument("--block-ms", type=float, default=100.0, help="length of one timed block")
    args = parser.parse_args(argv)
    if args.simulate and not SIMULATED:
        parser.error("--simulate needs NUMBA_ENABLE_CUDASIM=1 in the environment (set before numba loads)")
    session = Session(args.out, args.budget_s)
    session.simulate, session.rounds, session.block_ms = args.simulate, args.rounds, args.block_ms
    for name, work in SECTIONS:
        session.section(name, work)
    session.data["finished"] = True
    session.write()
    errors = [name for name, value in session.data["sections"].items() if "error" in value]
    print(f"done in {session.elapsed():.1f} s; {args.out}" + (f"; sections with errors: {errors}" if errors else ""))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
