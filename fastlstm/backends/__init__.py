"""The backends behind the functional core: where and how a layer runs.

Each implements :class:`.protocol.Backend`: ``forward_layer`` and ``backward_layer`` for one
layer (every direction), and a tape type that answers introspection. Heavy modules load on
first use, so ``import fastlstm`` stays fast and never touches Numba or CUDA.

- ``"reference"`` (:mod:`.reference`): the float64 NumPy equations, the oracle;
- ``"cpu"`` (:mod:`.cpu`): Numba-compiled loops;
- ``"cuda"`` (:mod:`.cuda`): numba.cuda kernels, built on first use after checking for a GPU.
"""
from .cpu import CPUBackend
from .protocol import Backend, InTheLoop, LayerBackward, LayerForward, LayerTape
from .reference import ReferenceBackend

__all__ = ["Backend", "LayerTape", "InTheLoop", "LayerForward", "LayerBackward", "get_backend", "register"]

_BACKENDS = {"reference": ReferenceBackend(), "cpu": CPUBackend()}


def _cuda_backend():
    from .cuda.backend import CUDABackend

    return CUDABackend()


def get_backend(name):
    """Return the backend called ``name``.

    ``"cuda"`` is built on first use and raises RuntimeError, naming the reason, when no
    CUDA GPU (or no numba-cuda) is usable; nothing is cached then, so a later call retries.
    """
    if name == "cuda" and name not in _BACKENDS:
        _BACKENDS[name] = _cuda_backend()
    if name not in _BACKENDS:
        raise ValueError(f"backend: expected one of {tuple(sorted(set(_BACKENDS) | {'cuda'}))}, got {name!r}")
    return _BACKENDS[name]


def register(name, backend):
    """Make ``backend`` (a :class:`.protocol.Backend`) available as ``config.backend == name``.

    Layers validate their ``backend`` option against the public names; a registered backend
    is reached through the functional core with a config whose ``backend`` is ``name``.
    """
    if not isinstance(backend, Backend):
        raise TypeError(f"backend: expected an object with the Backend protocol's methods, got "
                        f"{type(backend).__name__}")
    _BACKENDS[name] = backend
