"""A saved training trajectory: the common input of every metric and figure.

``Trajectory`` holds snapshots of a two-layer network's parameters at times
t_0 < t_1 < ... < t_{T-1}:

    W (T, h, D)   first-layer rows w_j(t)
    v (T, h)      output weights v_j(t)   (or (T, h, C) for C outputs)
    loss (T,)     training loss L(t), optional
    alignment_end_time   end of the alignment phase, optional (the ODE engine
                         may set it; otherwise ``alignment_end`` estimates it)
    centres (K, D), subclass_labels (K,)  the data geometry, optional but
                         needed by the centre-based metrics and figures
    meta          JSON-serialisable dict (p, K, K1, alpha, seed, ...)

``Trajectory.from_any`` accepts anything with those attributes (the ODE
engine's ``Solution``, the torch backend's snapshot record, a dict) and converts
torch tensors and lists of snapshots to numpy. ``save``/``load`` round-trip
through one ``.npz`` file written atomically by ``gradflow.io``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._validate import check_array, check_int
from ..io import load_npz, save_npz

_ARRAY_FIELDS = ("t", "W", "v", "loss", "centres", "subclass_labels")


def _to_numpy(x) -> np.ndarray | None:
    """numpy view of x (torch tensors detached to CPU; lists of snapshots stacked)."""
    if x is None:
        return None
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        return x.detach().cpu().numpy()
    if isinstance(x, (list, tuple)) and x and not np.isscalar(x[0]):
        return np.stack([_to_numpy(s) for s in x])
    return np.asarray(x)


@dataclass
class Trajectory:
    """Parameter snapshots (t, W, v) of a two-layer net, plus optional loss and data geometry."""

    t: np.ndarray
    W: np.ndarray
    v: np.ndarray
    loss: np.ndarray | None = None
    alignment_end_time: float | None = None
    centres: np.ndarray | None = None
    subclass_labels: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.t = check_array("t", _to_numpy(self.t), ndim=1).astype(np.float64)
        self.W = check_array("W", _to_numpy(self.W), ndim=3).astype(np.float64)
        self.v = check_array("v", _to_numpy(self.v)).astype(np.float64)
        T, h, D = self.W.shape
        if self.t.shape[0] != T:
            raise ValueError(f"`t` must have length T={T} (one time per snapshot of `W`), "
                             f"got {self.t.shape[0]}")
        if T >= 2 and np.any(np.diff(self.t) <= 0):
            raise ValueError("`t` must be strictly increasing")
        if self.v.ndim not in (2, 3) or self.v.shape[:2] != (T, h):
            raise ValueError(f"`v` must have shape (T, h)=({T}, {h}) or (T, h, C), "
                             f"got {self.v.shape}")
        if self.loss is not None:
            self.loss = check_array("loss", _to_numpy(self.loss), ndim=1,
                                    finite=False).astype(np.float64)
            if self.loss.shape[0] != T:
                raise ValueError(f"`loss` must have length T={T}, got {self.loss.shape[0]}")
        if self.alignment_end_time is not None:
            a = float(np.asarray(_to_numpy(self.alignment_end_time)))
            if np.isinf(a) or a < 0:  # nan means "not reached" (the engine's convention)
                raise ValueError(f"`alignment_end_time` must be a finite time >= 0 or "
                                 f"None/nan, got {a}")
            self.alignment_end_time = None if np.isnan(a) else a
        if self.centres is not None:
            self.centres = check_array("centres", _to_numpy(self.centres), ndim=2)
            if self.centres.shape[1] != D:
                raise ValueError(f"`centres` must have shape (K, D={D}), got {self.centres.shape}")
            if self.subclass_labels is None:
                raise ValueError("`subclass_labels` are required when `centres` are given")
        if self.subclass_labels is not None:
            lab = check_array("subclass_labels", _to_numpy(self.subclass_labels), ndim=1)
            if self.centres is None or lab.shape[0] != self.centres.shape[0]:
                raise ValueError("`subclass_labels` must have one entry (+1 or -1) per centre")
            if not np.all(np.isin(lab, (-1, 1))):
                raise ValueError("`subclass_labels` must contain only +1 and -1")
            self.subclass_labels = lab.astype(np.float64)
        self.meta = dict(self.meta or {})

    # ---- shape helpers -------------------------------------------------
    @property
    def n_times(self) -> int:
        return self.W.shape[0]

    @property
    def width(self) -> int:
        return self.W.shape[1]

    @property
    def dim(self) -> int:
        return self.W.shape[2]

    def at(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(W, v) at snapshot ``index`` (negative indices count from the end)."""
        T = len(self.t)
        index = check_int("index", index, -T, T - 1)
        return self.W[index], self.v[index]

    def index_at_time(self, time: float) -> int:
        """Index of the last snapshot with t <= ``time`` (0 if ``time`` precedes them all)."""
        return int(max(np.searchsorted(self.t, time, side="right") - 1, 0))

    def param_norm(self) -> np.ndarray:
        """||theta(t)|| = sqrt(||W(t)||_F^2 + ||v(t)||^2), shape (T,)."""
        return np.sqrt(np.sum(self.W**2, axis=(1, 2))
                       + np.sum(self.v.reshape(self.n_times, -1) ** 2, axis=1))

    def with_geometry(self, centres, subclass_labels) -> Trajectory:
        """A copy that carries the data geometry (shares the big arrays)."""
        return Trajectory(self.t, self.W, self.v, self.loss, self.alignment_end_time,
                          centres, subclass_labels, dict(self.meta))

    # ---- conversion ----------------------------------------------------
    @classmethod
    def from_any(cls, obj: Any, *, centres=None, subclass_labels=None,
                 meta: dict | None = None) -> Trajectory:
        """Build a Trajectory from any object (or mapping) with t, W, v [, loss, ...].

        Works for the ODE engine's ``Solution``, the torch backend's snapshot
        record, a ``dict`` or a loaded npz. Missing optional fields become None;
        ``centres``/``subclass_labels``/``meta`` given here override the object's.
        """
        if isinstance(obj, Trajectory):
            src: Mapping = obj.__dict__
        elif isinstance(obj, Mapping):
            src = obj
        else:
            src = {k: getattr(obj, k) for k in (*_ARRAY_FIELDS, "alignment_end_time", "meta")
                   if hasattr(obj, k)}
        missing = [k for k in ("t", "W", "v") if src.get(k) is None]
        if missing:
            raise ValueError(f"`obj` must provide t, W and v; missing {missing} "
                             f"(got {type(obj).__name__})")
        return cls(
            t=src["t"], W=src["W"], v=src["v"], loss=src.get("loss"),
            alignment_end_time=src.get("alignment_end_time"),
            centres=src.get("centres") if centres is None else centres,
            subclass_labels=(src.get("subclass_labels") if subclass_labels is None
                             else subclass_labels),
            meta=dict(src.get("meta") or {}) | dict(meta or {}),
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write one compressed .npz (atomic). Absent optional fields are simply left out."""
        arrays = {k: getattr(self, k) for k in _ARRAY_FIELDS if getattr(self, k) is not None}
        if self.alignment_end_time is not None:
            arrays["alignment_end_time"] = np.float64(self.alignment_end_time)
        # Stored as a unicode array so loading needs no pickle.
        arrays["meta_json"] = np.array(json.dumps(self.meta, default=_json_default))
        return save_npz(path, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Trajectory:
        """Read a file written by ``save``."""
        d = load_npz(path)
        meta = json.loads(str(d.pop("meta_json"))) if "meta_json" in d else {}
        aet = d.pop("alignment_end_time", None)
        return cls(alignment_end_time=None if aet is None else float(aet), meta=meta,
                   **{k: d.get(k) for k in _ARRAY_FIELDS})


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"`meta` values must be JSON serialisable, got {type(o).__name__}")
