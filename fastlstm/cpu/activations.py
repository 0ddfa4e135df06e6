"""The shared scalar activations (``fastlstm.gatemath``) compiled for the CPU."""
from numba import njit

from .. import gatemath

sigmoid = njit(cache=True, inline="always")(gatemath.sigmoid)
tanh = njit(cache=True, inline="always")(gatemath.tanh)
