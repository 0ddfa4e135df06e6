"""What each recurrent kernel launch of a call passes: one structure per direction
(:class:`~fastlstm.backends.cuda.recurrent.ForwardDirection` / ``BackwardDirection``), built once
per direction and call, then a few integers (step, phase, launch geometry); and the structure's
fields as the kernels' one compiled signature declares them (``CellKernels.argument_types``).

Counted under the simulator, whose kernels are Python objects seen at every launch.
"""
import contextlib

import numpy as np
import pytest
from numba import types

from conftest import SIMULATED
from fastlstm import tuning
from fastlstm.backends.cuda import compiled, recurrent
from fastlstm.backends.cuda.compiled import kernels_for
from fastlstm.cells import make_cell
from support import CELL_VARIANTS, assert_matches_reference, make_problem, run

# a kernel launch takes the direction's structure and at most this many integers
MOST_INTEGERS = 3
STRUCTURES = (recurrent.ForwardDirection, recurrent.BackwardDirection)


@contextlib.contextmanager
def recorded_launches(monkeypatch):
    """Every kernel launch of the block, as (kernel name in ``compiled._KERNELS`` or the
    function's own name, arguments)."""
    from numba.cuda.simulator import kernel as simulator

    launches = []
    launch = simulator.FakeCUDAKernel.__call__

    def recording(self, *args):
        if not self._device and not simulator._kernel_context:
            name = self.fn.__name__
            base = next((k for k in compiled._KERNELS if name.startswith(k + "_")), name)
            launches.append((base, args))
        return launch(self, *args)

    with monkeypatch.context() as patch:
        patch.setattr(simulator.FakeCUDAKernel, "__call__", recording)
        yield launches


def _conforms(value, declared):
    """Whether ``value`` (a simulated device array, an int or a NamedTuple of them) is of the
    numba type ``declared``: what the GPU's dispatcher would type it as, the array's C layout
    included."""
    if isinstance(declared, types.Array):
        array = getattr(value, "_ary", None)
        return (array is not None and array.ndim == declared.ndim and array.dtype == np.dtype(str(declared.dtype))
                and declared.layout == "C" and array.flags.c_contiguous)
    if isinstance(declared, types.BaseTuple):
        cls = getattr(declared, "instance_class", tuple)
        return (type(value) is cls and len(value) == len(declared.types)
                and all(_conforms(v, t) for v, t in zip(value, declared.types)))
    if isinstance(declared, types.Integer):
        return isinstance(value, int) and not isinstance(value, bool)
    raise AssertionError(f"unexpected declared type {declared}")


@pytest.mark.skipif(not SIMULATED, reason="records launches through the simulator")
@pytest.mark.parametrize("loop", ["persistent", "per-step", "gemm"])
def test_each_recurrent_launch_passes_one_structure_built_once_per_direction(monkeypatch, loop):
    """Two layers, bidirectional, lengths, peepholes, float64: every recurrent launch passes its
    direction's structure first and at most three integers, the structure's fields of the types
    its one signature declares; one structure per direction and pass of each layer serves all
    its launches (per step: T·phases launches share it); and the results are the reference's."""
    steps, directions, layers = 3, 2, 2
    problem = make_problem("lstm_peephole", steps, 2, 2, 2, np.float64, seed=21, lengths=np.array([3, 1]),
                           bidirectional=True, num_layers=layers, param_scale=2.0)
    with tuning.override(cuda_loop=loop), recorded_launches(monkeypatch) as launches:
        result = run(problem, "cuda")
    assert_matches_reference(result, run(problem, "reference"), np.float64)

    kernels = kernels_for(make_cell(**CELL_VARIANTS["lstm_peephole"]), np.float64)
    recurrent_launches = [(name, args) for name, args in launches if name in compiled._KERNELS]
    expected_kernels = {"persistent": {"forward_persistent", "backward_persistent", "backward_finish"},
                        "per-step": {"forward_step", "backward_step", "backward_finish"},
                        "gemm": {"forward_pointwise", "backward_pointwise", "backward_finish"}}[loop]
    assert {name for name, _ in recurrent_launches} == expected_kernels
    structures = {}
    for name, args in recurrent_launches:
        structure, integers = args[0], args[1:]
        assert isinstance(structure, STRUCTURES), (name, type(structure))
        assert len(integers) <= MOST_INTEGERS and all(isinstance(i, int) for i in integers), (name, args[1:])
        declared = kernels.argument_types(name)
        assert len(declared) == len(args), (name, len(args))
        assert all(_conforms(value, kind) for value, kind in zip(args, declared)), name
        structures.setdefault(id(structure), (structure, []))[1].append(name)
    # a forward and a backward structure per direction and layer, each used by all its launches
    kinds = sorted(type(s).__name__ for s, _ in structures.values())
    assert kinds == ["BackwardDirection"] * (directions * layers) + ["ForwardDirection"] * (directions * layers)
    phases = {"persistent": 1, "per-step": steps, "gemm": steps}[loop]   # the LSTM has one phase per step
    for structure, names in structures.values():
        if isinstance(structure, recurrent.ForwardDirection):
            assert len(names) == phases, names
        else:
            assert len(names) == phases + 1 and names[-1] == "backward_finish", names


def test_the_structures_declare_every_field_the_kernels_read():
    """Each kernel's declared signature starts with its direction's structure, whose numba type
    lists the NamedTuple's fields in order (a field added to one and not the other fails here)."""
    kernels = kernels_for(make_cell(**CELL_VARIANTS["gru"]), np.float32)
    for name in compiled._KERNELS:
        declared = kernels.argument_types(name)[0]
        structure = recurrent.ForwardDirection if name.startswith("forward") else recurrent.BackwardDirection
        assert declared.instance_class is structure, name
        assert len(declared.types) == len(structure._fields), name
        assert len(kernels.argument_types(name)) <= 1 + MOST_INTEGERS, name
