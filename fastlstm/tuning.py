"""Every tunable of the library, in one place.

**Read at call time** (:func:`get`): host-side choices the backends make on each call. Each
has a default here, may be set by an environment variable (read when the value is asked for,
not at import), and may be overridden for a block of code with :func:`override`, which is
what tests and experiments use instead of patching module globals::

    with fastlstm.tuning.override(segment_rows=8):
        layer(x)

Overrides are per thread (and per asyncio task): a ``with`` block in one thread does not
change another's calls.

**Frozen into compiled kernels** (:data:`FROZEN`): constants the kernels are compiled with.
Numba bakes them into the machine code it caches on disk, so changing one means editing
the module that defines it and letting the cache recompile; they are listed here so that
they are found in one place.
"""
from __future__ import annotations

import contextvars
import os
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Tunable:
    """One knob read at call time.

    Attributes
    ----------
    name : str
    default : int or str
    help : str
    environment : str or None, the environment variable that sets it
    choices : tuple or None, the allowed values of a str knob
    """

    name: str
    default: object
    help: str
    environment: str = None
    choices: tuple = None

    def parse(self, value, where):
        """``value`` checked (and converted from a string) for this knob; ``where`` names its origin."""
        if self.choices is not None:
            if value not in self.choices:
                raise ValueError(f"{where}: expected one of {self.choices}, got {value!r}")
            return value
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected a non-negative integer, got {value!r}") from None
        if isinstance(value, bool) or number < 0 or (not isinstance(value, str) and number != value):
            raise ValueError(f"{where}: expected a non-negative integer, got {value!r}")
        return number


TUNABLES = {t.name: t for t in (
    Tunable("segment_rows", 1024,
            "cpu: (step, sequence) rows of gate values held at once by a layer's forward and backward"),
    Tunable("segment_bytes", 4 << 20,
            "cpu: ... or, for narrow layers, as many rows as fill this many bytes (fewer segments)"),
    Tunable("cpu_loop", "auto",
            "cpu: how a layer call shares its time loops among threads: 'auto' (the cost model of "
            "fastlstm.backends.cpu.strategy), 'sequences' (blocks of batch rows, no barrier per step), 'single' "
            "(one thread per direction) or 'units' (each step split by hidden units)",
            environment="FASTLSTM_CPU_LOOP", choices=("auto", "sequences", "single", "units")),
    Tunable("cpu_units_sync", "barrier",
            "cpu: how the 'units' loop's blocks wait for one another after each phase of a step: 'barrier' (each "
            "block held by one thread for a segment, in one parallel region, where every block has a thread of "
            "its own) or 'regions' (a parallel region per phase); the same blocks and bits",
            environment="FASTLSTM_CPU_UNITS_SYNC", choices=("barrier", "regions")),
    Tunable("batch_rows", 2,
            "cpu: fewest batch rows in the largest block of the 'sequences' loop (its blocks are near-equal: B 3 "
            "runs as blocks of 1 and 2 rows where the cost model says so, 11-27 % faster than 3 on one thread from "
            "H 64, 4-26 % slower at H 16; B 2 as one block: two blocks of one row measured 1-28 % slower up to "
            "H 64; bench/blocks_together.py --batches 2 3)"),
    Tunable("cost_threads", 2,
            "cpu cost model: the threads it plans for (the plan, like every split, follows the shapes and the "
            "knobs, never NUMBA_NUM_THREADS, so that results do not depend on the thread count)",
            environment="FASTLSTM_COST_THREADS"),
    Tunable("cost_call_ns", 200,
            "cpu cost model: ns of fixed cost of one block's phase of one step (calls, loop set-up)"),
    Tunable("cost_row_ns", 100,
            "cpu cost model: ns of fixed cost per batch row of one block's phase of one step (the gate pass's "
            "vector loop set-up, measured 80-110 on this project's machines)"),
    Tunable("cost_gate_ps", 200,
            "cpu cost model: ps per gate value of a phase's gate pass (activations and state update)"),
    Tunable("cost_peak_flops_per_ns", 100,
            "cpu cost model: one thread's recurrent-projection flops per ns with many rows (the tile kernel: "
            "104-117 from 4 rows)"),
    Tunable("cost_half_rate_rows", 1,
            "cpu cost model: the rows at which a projection runs at half that rate (one row streams the weights)"),
    Tunable("cost_stream_bytes_per_ns", 20,
            "cpu cost model: bytes per ns one thread streams recurrent weights that are not in its cache (the "
            "tile kernel's rate from L3 on this project's Intel Xeon: 19-22, an LSTM 512 or 384 step at B 8 or "
            "12 split by sequences; bench/strategy_cost.py)"),
    Tunable("cost_cache_bytes", 5 << 18,
            "cpu cost model: recurrent weights up to this size stay in a thread's cache from step to step (5/8 "
            "of a 2 MiB L2: the step's other data shares it, and in a busy phase another tenant's thread on the "
            "same core; 1.25 MiB of weights ran from cache in a quiet phase, not in a busy one, 2.36 never)"),
    Tunable("cost_exchange_ps", 2000,
            "cpu cost model: ps per state value of a 'units' loop's step that another thread wrote, per phase "
            "(the cache lines of h crossing cores; the loop ran 1.2-2.6 ns per row x unit slower than split "
            "sequences at B 7-40, H 160-300, with its weights in cache; fitted with cost_cache_bytes and "
            "cost_stream_bytes_per_ns on 16 shapes in three runs: bench/strategy_cost.py)"),
    Tunable("cost_units_margin", 25,
            "cpu cost model: percent by which the 'units' loop must model faster to be chosen (its per-step "
            "barriers collapse beside a busy process)"),
    Tunable("cost_barrier_ns", 500,
            "cpu cost model: ns of one barrier of the held 'units' loop (cache lines exchanged, the later "
            "thread's wait; measured 330 alone on this project's 2-core machines)"),
    Tunable("cost_held_margin", 5,
            "cpu cost model: percent by which the 'units' loop with held blocks (a yielding barrier per phase) "
            "must model faster to be chosen"),
    Tunable("cost_region_ns", 3000,
            "cpu cost model: ns of one parallel region of the 'units' loop (fork, barrier, shared cache lines)"),
    Tunable("step_units", 64,
            "cpu: fewest hidden units in one block of a time step's parallel work"),
    Tunable("gemm_rows", 64,
            "cpu: fewest rows in one block of the GEMMs around the time loops"),
    Tunable("gemm_blocks", 4,
            "cpu: blocks a GEMM around the time loops is split into at least, by whole panels of columns when it "
            "has too few rows"),
    Tunable("gradient_columns", 64,
            "cpu: fewest rows of a weight gradient (gate columns) in one of its blocks"),
    Tunable("gradient_partials", 4,
            "cpu: most row blocks a small weight gradient is summed over in parallel (each holds a partial "
            "gradient; they are added in order)"),
    Tunable("gradient_partial_bytes", 1 << 20,
            "cpu: most bytes of the partial gradients of a weight gradient summed by row blocks (a larger one is "
            "split by its rows, gate columns, and summed in place: at 1-4 MiB of partials, 0.93-1.00 of the time "
            "and no partials' memory, so that an LSTM 256 training step at B 64 peaks 4 MiB lower)"),
    Tunable("gradient_blocks", 4,
            "cpu: most blocks a weight gradient is split into (each one BLAS call over every row: fewer, "
            "larger calls pack their inputs fewer times)"),
    Tunable("max_blocks", 16,
            "cpu: most blocks one piece of parallel work is split into (the splits depend on shapes and these "
            "knobs only, never on the thread count, so that results do not either)"),
    Tunable("parallel_flops", 1 << 22,
            "cpu: fewest flops of a GEMM around the time loops that runs its blocks across threads (smaller ones "
            "run them one after the other: the same blocks and bits, no parallel region to wait in), each byte of "
            "its rows and output counted as parallel_byte_flops flops"),
    Tunable("parallel_byte_flops", 6,
            "cpu: flops a GEMM around the time loops counts for each byte of the rows it reads and the output it "
            "writes: one thread writes a large output at ~16 bytes per ns and multiplies at ~100 flops per ns, so "
            "a product of one or two inputs (a projection of a few million values) is worth two threads"),
    Tunable("cpu_blas", "auto",
            "cpu: the BLAS of the weight gradients and of a dx of few inputs (fastlstm/backends/cpu/blas.py): "
            "'auto' (Intel MKL for float32 calls of at least mkl_min_flops where PyPI's mkl is installed beside the "
            "interpreter and no other library of the process loaded it first, set to its sequential layer; else "
            "SciPy's), 'mkl' (every call; an error where it cannot be used) or 'scipy' (the BLAS of "
            "scipy.linalg.cython_blas, OpenBLAS in SciPy's wheels)",
            environment="FASTLSTM_CPU_BLAS", choices=("auto", "mkl", "scipy")),
    Tunable("mkl_min_flops", 1 << 20,
            "cpu: with cpu_blas 'auto', the fewest flops of one BLAS call that MKL runs; smaller ones SciPy's BLAS "
            "(one thread: MKL took 0.94-1.15 of OpenBLAS's time below 1 Mflop, its small-matrix path, and 0.38-0.93 "
            "from 2 Mflop; bench/blas_gemm.py)"),
    Tunable("mkl_product_rows", 512,
            "cpu: where MKL runs (cpu_blas), the fewest rows of an input projection that runs on MKL's GEMM "
            "instead of the tile kernel, with at least mkl_product_side inputs and outputs (2 threads: MKL took "
            "0.79-0.97 of the tile kernel's time there, 1.00-1.05 at 256 rows; bench/blas_gemm.py --products)"),
    Tunable("mkl_product_side", 256,
            "cpu: the fewest inputs, and outputs, of an input projection on MKL's GEMM (mkl_product_rows): with "
            "fewer inputs MKL took 0.98-1.54 of the tile kernel's time (K 32-128), with fewer outputs 0.96-1.48 "
            "(N 128)"),
    Tunable("pool_min_bytes", 1 << 20,
            "cpu: arrays of at least this size come from the buffer pool (smaller ones from the C heap)"),
    Tunable("pool_max_free_bytes", 1 << 30,
            "cpu: the pool keeps at most this many free bytes (and never more than it ever lent at once); "
            "beyond that it releases the blocks returned longest ago"),
    Tunable("prepared_bytes", 64 << 20,
            "cpu: the most bytes one thread's prepared inference calls hold together (their buffers and packed "
            "weights; the least recently used call makes room): each is prepared once per thread and shape and "
            "reused while the parameters keep their values; a call needing more is built every time (0: never)"),
    Tunable("prepared_calls", 4,
            "cpu: prepared inference calls each thread keeps (the most recently used), and as many setups of "
            "training calls (a shape's forward and its backward one each)"),
    Tunable("kept_setup_bytes", 1 << 20,
            "cpu: the most bytes of a training call's buffers (scratch and packed weights) its setup keeps for the "
            "thread's next call of its shape (fastlstm/backends/cpu/kept.py); larger ones are leased for every call "
            "(the plan and addresses are kept either way): a kept forward's buffers would live through the backward "
            "and raise a training step's peak memory (0: never)"),
    Tunable("compile_helper", 1,
            "cpu: 1: a process's first call (training or inference) from a cold cache compiles the code every "
            "cell shares in a helper process while it compiles the cell's own (fastlstm/backends/cpu/warming.py); "
            "0: all of it in the calling process", environment="FASTLSTM_COMPILE_HELPER"),
    Tunable("cuda_loop", "auto", "cuda: the recurrent loop, 'auto' (by the plan's rule: fastlstm/backends/cuda/"
            "plan.py) or forced: 'persistent', 'per-step' or 'gemm' (per step a GEMM and a pointwise kernel)",
            environment="FASTLSTM_CUDA_LOOP", choices=("auto", "persistent", "per-step", "gemm")),
    Tunable("cuda_reductions", "atomic",
            "cuda: how the bias and element-wise parameters' gradients combine their row blocks: 'atomic' "
            "(last bits may vary from run to run) or 'ordered' (a scratch array and one more kernel: the same "
            "bits every run)", environment="FASTLSTM_CUDA_REDUCTIONS", choices=("atomic", "ordered")),
    Tunable("cuda_step_gemm", "auto",
            "cuda: the GEMM loop's per-step GEMM: 'auto' (cuBLAS through CuPy when CuPy's cuBLAS loads and the "
            "backend is not the CUDA simulator, else the numba GEMM), 'numba' (the tiled GEMM of fastlstm/backends/"
            "cuda/gemm.py) or 'cublas' (an error where it cannot load); see fastlstm/backends/cuda/gemm_loop.py",
            environment="FASTLSTM_CUDA_STEP_GEMM", choices=("auto", "numba", "cublas")),
)}

# Constants compiled into cached kernels (module: name). Edit them there.
FROZEN = {
    "fastlstm.backends.cpu.tiles": "TILE_ROWS, TILE_VECTORS: the rows and SIMD vectors of columns of the "
                                    "recurrent projections' register tile; CHUNK_ROWS, DEPTH: the rows and "
                                    "inner values a product takes at a time",
    "fastlstm.cells.activations": "the float32 activations' coefficients and saturation points",
}

_overrides = contextvars.ContextVar("fastlstm_tuning_overrides", default={})


def get(name):
    """The current value of the knob ``name``: an :func:`override`, else its environment
    variable, else its default."""
    if name not in TUNABLES:
        raise KeyError(f"tuning: unknown knob {name!r}; the knobs are {sorted(TUNABLES)}")
    overrides = _overrides.get()
    if name in overrides:
        return overrides[name]
    tunable = TUNABLES[name]
    if tunable.environment and os.environ.get(tunable.environment):
        return tunable.parse(os.environ[tunable.environment], tunable.environment)
    return tunable.default


_ENVIRONMENT = tuple(t.environment for t in TUNABLES.values() if t.environment)


# os.environ's own mapping of encoded names (POSIX CPython), read without os.environ's
# per-lookup encoding and KeyError: where it is not there, os.environ.get
_ENVIRONMENT_DATA = getattr(os.environ, "_data", None) if os.name == "posix" else None
_ENVIRONMENT_KEYS = tuple(os.fsencode(name) for name in _ENVIRONMENT) if _ENVIRONMENT_DATA is not None else ()


def state():
    """A token equal for two calls that see the same value of every knob: the overrides in force
    and the knobs' environment variables (cheaper than reading every knob)."""
    if _ENVIRONMENT_DATA is not None:
        environment = tuple(map(_ENVIRONMENT_DATA.get, _ENVIRONMENT_KEYS))
    else:
        environment = tuple(os.environ.get(name) for name in _ENVIRONMENT)
    return tuple(_overrides.get().items()), environment


@contextmanager
def override(**values):
    """Set some knobs for the calls made inside the ``with`` block (this thread or task only).

    Raises
    ------
    KeyError
        For an unknown knob.
    ValueError
        For a value the knob does not take.
    """
    unknown = sorted(set(values) - set(TUNABLES))
    if unknown:
        raise KeyError(f"tuning.override: unknown knobs {unknown}; the knobs are {sorted(TUNABLES)}")
    checked = {name: TUNABLES[name].parse(value, f"tuning.override({name}=...)") for name, value in values.items()}
    token = _overrides.set({**_overrides.get(), **checked})
    try:
        yield
    finally:
        _overrides.reset(token)


def overrides():
    """The :func:`override` values in force in this thread or task, as a dict (to apply in another
    process)."""
    return dict(_overrides.get())


def describe():
    """Every knob, its current value and what it does, one per line."""
    lines = [f"{name} = {get(name)!r}: {t.help}" + (f" (environment {t.environment})" if t.environment else "")
             for name, t in TUNABLES.items()]
    lines += [f"frozen in {module}: {text}" for module, text in FROZEN.items()]
    return "\n".join(lines)
