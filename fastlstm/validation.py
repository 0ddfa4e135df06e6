"""Checks at the public boundary: every message names the argument, what was expected and
what was given. Nothing here touches a kernel."""
from __future__ import annotations

import numbers

import numpy as np

DTYPES = {"float32": np.float32, "float64": np.float64}


def check_choice(name, value, choices):
    """Raise ValueError unless ``value`` is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: expected one of {tuple(choices)}, got {value!r}")
    return value


def check_bool(name, value):
    """Raise TypeError unless ``value`` is a bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def check_positive_int(name, value):
    """Raise unless ``value`` is an integer ≥ 1 (bools are rejected)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value}")
    return int(value)


def check_seed(name, value):
    """Raise unless ``value`` is None or an integer ≥ 0 (bools are rejected)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected None or a non-negative integer, got {value!r}")
    if value < 0:
        raise ValueError(f"{name}: expected None or a non-negative integer, got {value}")
    return int(value)


def check_generator(name, value):
    """Raise TypeError unless ``value`` is None or a ``numpy.random.Generator``."""
    if value is not None and not isinstance(value, np.random.Generator):
        raise TypeError(f"{name}: expected None or a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(value).__name__}")
    return value


def resolve_dtype(value):
    """Map ``"float32"``/``"float64"`` (or the matching NumPy dtypes) to a NumPy scalar type.

    ``None``, which NumPy reads as float64, is refused: the dtype is said, never guessed.
    """
    if value is None:
        raise ValueError("dtype: expected 'float32' or 'float64', got None")
    try:
        key = np.dtype(value).name
    except TypeError:
        key = None
    if key not in DTYPES:
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {value!r}")
    return DTYPES[key]


def real_array(name, value, dtype):
    """``value`` as an array (not converted), if its numbers convert to the float ``dtype``.

    Real numbers (floats, integers, booleans) convert; anything else — complex numbers,
    strings, objects — raises TypeError.
    """
    array = np.asarray(value)
    if array.dtype.kind not in "fiub":
        raise TypeError(f"{name}: expected real numbers convertible to {np.dtype(dtype).name}, "
                        f"got an array of dtype {array.dtype}")
    return array


def as_float_array(name, value, dtype):
    """Convert ``value`` to a C-contiguous array of ``dtype`` (see :func:`real_array`)."""
    return np.ascontiguousarray(real_array(name, value, dtype), dtype=dtype)


def check_names(name, given, expected):
    """Raise ValueError unless the keys of ``given`` are exactly ``expected`` (parameter names)."""
    if given.keys() == expected.keys():
        return
    missing = sorted(set(expected) - set(given))
    unknown = sorted(set(given) - set(expected))
    if missing or unknown:
        raise ValueError(f"{name}: expected the names {sorted(expected)}; missing {missing}, unexpected {unknown}")


def check_shape(name, array, expected, meaning):
    """Raise ValueError unless ``array.shape == expected``; ``meaning`` spells the axes."""
    if array.shape != tuple(expected):
        raise ValueError(f"{name}: expected shape {tuple(expected)} {meaning}, got {array.shape}")


def check_ndim(name, array, ndim, meaning):
    """Raise ValueError unless ``array`` has ``ndim`` dimensions."""
    if array.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d array {meaning}, got shape {array.shape}")
