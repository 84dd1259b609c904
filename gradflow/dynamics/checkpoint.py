"""Atomic checkpoints of a running simulation (solver state + recorded snapshots).

One npz file holds the solver's ``state_dict`` (keys ``s/<name>``), the driver's
recorded snapshots (``d/<name>``) and a JSON string with the scalars and the
run fingerprint. Resuming checks the fingerprint, so a checkpoint is never
continued with different data, parameters, method, options or save times.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..io import load_npz, save_npz


def fingerprint(*items) -> str:
    """sha256 over arrays (their bytes, dtype and shape) and JSON-able items."""
    h = hashlib.sha256()
    for it in items:
        if isinstance(it, np.ndarray):
            h.update(str((it.dtype.str, it.shape)).encode())
            h.update(np.ascontiguousarray(it).tobytes())
        else:
            h.update(json.dumps(it, sort_keys=True, default=repr).encode())
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike, solver_state: dict, driver_arrays: dict,
                    scalars: dict) -> Path:
    arrays, meta = {}, {"scalars": scalars, "solver": {}}
    for k, v in solver_state.items():
        if isinstance(v, np.ndarray):
            arrays[f"s/{k}"] = v
        else:
            meta["solver"][k] = v
    for k, v in driver_arrays.items():
        arrays[f"d/{k}"] = np.asarray(v)
    arrays["meta"] = np.array(json.dumps(meta))
    return save_npz(path, **arrays)


def load_checkpoint(path: str | os.PathLike) -> tuple[dict, dict, dict]:
    """Return (solver_state, driver_arrays, scalars) written by ``save_checkpoint``."""
    z = load_npz(path)
    meta = json.loads(str(z["meta"]))
    solver = dict(meta["solver"])
    solver.update({k[2:]: v for k, v in z.items() if k.startswith("s/")})
    driver = {k[2:]: v for k, v in z.items() if k.startswith("d/")}
    return solver, driver, meta["scalars"]
