"""The result of a simulation: snapshots, diagnostics, status; saved as npz + JSON."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io import load_json, load_npz, save_json, save_npz
from ..model import TwoLayerParams

STATUSES = ("success", "loss_target", "norm_cap", "nan", "overflow", "max_steps",
            "interrupted", "failed")


@dataclass
class Solution:
    """Trajectory of a gradient flow at the save times (the last entry is the final state).

    Arrays: t (T,), W (T, h, D), v (T, h) or (T, h, C), b (T,) / (T, C) or None,
    loss (T,), fmax (T,) = max_i |f(x_i)|. Run record: status (one of STATUSES),
    message, nfev (field evaluations = loss gradients), n_steps, n_rejected,
    invariant_drift (max over saved t of max_j |c_j(t) - c_j(t0)| / max_j (v_j^2 +
    ||w_j||^2)(t), c_j = v_j^2 - ||w_j||^2, with c_j(t0) from ``invariant0``, the
    initial state's, even when t0 is not a save time), wall_time (s), alignment_end_time
    (or None), method, options, metadata (model/data/init configs, loss, ...).
    X, y, center: the training data the flow used (kept so a run can be reproduced).
    """

    t: np.ndarray
    W: np.ndarray
    v: np.ndarray
    loss: np.ndarray
    fmax: np.ndarray
    status: str
    message: str
    nfev: int
    n_steps: int
    n_rejected: int
    wall_time: float
    alignment_end_time: float | None
    method: str
    options: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    b: np.ndarray | None = None
    center: np.ndarray | None = None
    X: np.ndarray | None = None
    y: np.ndarray | None = None
    invariant0: np.ndarray | None = None

    @property
    def success(self) -> bool:
        return self.status in ("success", "loss_target", "norm_cap")

    @property
    def norms(self) -> np.ndarray:
        """||w_j(t)||, shape (T, h)."""
        return np.linalg.norm(self.W, axis=2)

    @property
    def directions(self) -> np.ndarray:
        """u_j(t) = w_j/||w_j||, shape (T, h, D) (zero rows stay zero)."""
        n = self.norms[..., None]
        return np.divide(self.W, n, out=np.zeros_like(self.W), where=n > 0)

    def _sq_norms(self) -> tuple[np.ndarray, np.ndarray]:
        """(||v_j||^2, ||w_j||^2) at every saved time, each of shape (T, h)."""
        vv = self.v**2 if self.v.ndim == 2 else np.sum(self.v**2, axis=2)
        return vv, np.sum(self.W**2, axis=2)

    @property
    def invariants(self) -> np.ndarray:
        """c_j(t) = ||v_j||^2 - ||w_j||^2, shape (T, h)."""
        vv, ww = self._sq_norms()
        return vv - ww

    @property
    def invariant_drift(self) -> float:
        vv, ww = self._sq_norms()
        c = vv - ww
        size = np.max(vv + ww, axis=1)
        c0 = c[0] if self.invariant0 is None else self.invariant0
        drift = np.max(np.abs(c - c0), axis=1)
        return float(np.max(drift / np.maximum(size, 1e-300)))

    def params_at(self, i: int) -> TwoLayerParams:
        """Parameters at save index i (negative indices allowed)."""
        return TwoLayerParams(self.W[i].copy(), self.v[i].copy(),
                              None if self.b is None else self.b[i].copy(),
                              None if self.center is None else self.center.copy())

    @property
    def theta(self) -> np.ndarray:
        """Flattened (W, v, b) per save time, shape (T, P): for error norms."""
        parts = [self.W.reshape(len(self.t), -1), self.v.reshape(len(self.t), -1)]
        if self.b is not None:
            parts.append(self.b.reshape(len(self.t), -1))
        return np.concatenate(parts, axis=1)

    # ---- persistence -------------------------------------------------------------
    _ARRAYS = ("t", "W", "v", "loss", "fmax", "b", "center", "X", "y", "invariant0")
    _SCALARS = ("status", "message", "nfev", "n_steps", "n_rejected", "wall_time",
                "alignment_end_time", "method", "options", "metadata")

    def save(self, path: str | os.PathLike) -> Path:
        """Write <path>.npz (arrays) and <path>.json (run record), both atomically."""
        base = _base(path)
        arrays = {k: getattr(self, k) for k in self._ARRAYS if getattr(self, k) is not None}
        save_npz(_with(base, ".npz"), **arrays)
        meta = {k: getattr(self, k) for k in self._SCALARS}
        meta["invariant_drift"] = self.invariant_drift
        meta["format"] = "gradflow.Solution/1"
        save_json(_with(base, ".json"), json.loads(json.dumps(meta, default=_jsonable)))
        return _with(base, ".npz")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Solution:
        base = _base(path)
        arrays = load_npz(_with(base, ".npz"))
        meta = load_json(_with(base, ".json"))
        kw = {k: meta[k] for k in cls._SCALARS}
        kw.update({k: arrays.get(k) for k in cls._ARRAYS})
        return cls(**kw)


def _base(path) -> Path:
    """The path without a trailing .npz/.json; other dots belong to the name ('run_p1.5')."""
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".npz", ".json") else p


def _with(base: Path, ext: str) -> Path:
    # not with_suffix: it would replace '.5' in 'run_p1.5' and let runs overwrite each other
    return base.with_name(base.name + ext)


def _jsonable(o: Any):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    return repr(o)
