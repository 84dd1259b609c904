"""Small input checks shared by every public entry point.

Each raises ``ValueError`` whose message names the parameter (in backticks, as
scipy does) and the allowed range, so a user can fix the call without reading
the source. Never use ``assert`` for user input: it vanishes under ``python -O``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real

import numpy as np


def store(obj, name: str, value):
    """Set field ``name`` of a (frozen) dataclass to its checked value and return it.

    The checks return plain int/float: storing them means a config built with p=1 or
    K=np.int64(10) equals, hashes and serialises (JSON) like the canonical one.
    """
    object.__setattr__(obj, name, value)
    return value


def check_int(name: str, value, lo: int | None = None, hi: int | None = None) -> int:
    """Return ``value`` as int after checking it is an integer in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"`{name}` must be an integer, got {value!r}")
    value = int(value)
    if lo is not None and value < lo:
        raise ValueError(f"`{name}` must be >= {lo}{_upper(hi)}, got {value}")
    if hi is not None and value > hi:
        raise ValueError(f"`{name}` must be <= {hi} (allowed range [{lo}, {hi}]), got {value}")
    return value


def _upper(hi) -> str:
    return f" and <= {hi}" if hi is not None else ""


def check_real(
    name: str,
    value,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """Return ``value`` as float after checking it is finite and inside the interval."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"`{name}` must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite (not NaN or inf), got {value}")
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    interval = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise ValueError(f"`{name}` must lie in {interval}, got {value}")
    if hi is not None and (value > hi or (hi_open and value == hi)):
        raise ValueError(f"`{name}` must lie in {interval}, got {value}")
    return value


def check_bool(name: str, value) -> bool:
    """Return ``value`` as bool after checking it is True or False (numpy bools included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be True or False, got {value!r}")
    return bool(value)


def check_choice(name: str, value, choices: Iterable):
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_array(name: str, arr, *, ndim: int | None = None, finite: bool = True) -> np.ndarray:
    """Return ``arr`` as a numpy array after checking its rank and finiteness."""
    a = np.asarray(arr)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"`{name}` must be {ndim}-dimensional, got shape {a.shape}")
    if finite and a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
        raise ValueError(f"`{name}` must be finite (contains NaN or inf)")
    return a


def check_same(name: str, got, expected, what: str = "size") -> None:
    if got != expected:
        raise ValueError(f"`{name}` has {what} {got}, expected {expected}")
