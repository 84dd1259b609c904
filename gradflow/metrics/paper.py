"""Input schema of the combined "paper figure" (reference Section 5.1 figure, panels a-e).

A study saves one dict of arrays (flat, so it fits one ``.npz``); P powers p,
R repeats, A noise levels, M radii, h neurons, K subclasses:

=================  ============  ==================================================
key                shape         meaning
=================  ============  ==================================================
``K``              ()            number of subclasses (theory line 1/sqrt(K))
``ps``             (P,)          the pReLU powers, e.g. [1, 3]
``alphas``         (A,)          noise levels of panel (a)
``sup_distance``   (P, R, A)     sup_{||x||=1} |c f(x) - F(x)| (F for p=1, F_p for p>2)
``contributions``  (P, h)        |v_j| ||w_j|| of one trained net per p (panel b)
``signs``          (P, h)        sign(v_j) of the same nets
``cosines``        (P, h, K+2)   cos(w_j, E_m), columns [mubar_+, mubar_-, mu_1..mu_K]
                                 (panels c, d; the dominant rows are chosen here)
``radii``          (M,)          l2 attack radii of panel (e)
``robust_accuracy`` (P, R, M)    robust test accuracy per p, repeat and radius
``heatmap_alpha``  () optional   alpha of the nets shown in panels (b-d), for titles
=================  ============  ==================================================

``paper_arrays_from_trajectories`` fills the panel (b-d) keys from saved
trajectories; ``check_paper_results`` validates a dict and says which key is
wrong; ``save_paper_results``/``load_paper_results`` store it as one npz.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..io import load_npz, save_npz
from .alignment import contributions, direction_cosines
from .trajectory import Trajectory

PAPER_KEYS = ("K", "ps", "alphas", "sup_distance", "contributions", "signs", "cosines",
              "radii", "robust_accuracy")
OPTIONAL_KEYS = ("heatmap_alpha",)


def _arr(d: Mapping, key: str, ndim: int, finite: bool = True) -> np.ndarray:
    if key not in d:
        raise ValueError(f"paper results are missing key `{key}`; required keys: {PAPER_KEYS}")
    a = np.asarray(d[key], dtype=np.float64)
    if a.ndim != ndim:
        raise ValueError(f"`{key}` must be {ndim}-dimensional, got shape {a.shape}")
    if finite and not np.all(np.isfinite(a)):
        raise ValueError(f"`{key}` must be finite (contains NaN or inf)")
    return a


def check_paper_results(d: Mapping) -> dict[str, np.ndarray]:
    """Validate a paper-figure results dict (see the module docstring); return float arrays.

    Raises ValueError naming the first missing or mis-shaped key.
    """
    unknown = sorted(set(d) - set(PAPER_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in paper results; allowed: "
                         f"{PAPER_KEYS + OPTIONAL_KEYS}")
    K = _arr(d, "K", 0)
    if K != int(K) or K < 2:
        raise ValueError(f"`K` must be an integer >= 2, got {K}")
    K = int(K)
    out: dict = {"K": np.asarray(K)}
    ps = out["ps"] = _arr(d, "ps", 1)
    if np.any(ps < 1):
        raise ValueError(f"`ps` must hold pReLU exponents p >= 1, got {ps}")
    P = ps.size
    alphas = out["alphas"] = _arr(d, "alphas", 1)
    if np.any(alphas < 0):
        raise ValueError(f"`alphas` must be noise levels >= 0, got {alphas}")
    radii = out["radii"] = _arr(d, "radii", 1)
    if np.any(radii < 0):
        raise ValueError(f"`radii` must be attack radii >= 0, got {radii}")
    # NaN is allowed in measured curves (a failed repeat); the band ignores it.
    sd = out["sup_distance"] = _arr(d, "sup_distance", 3, finite=False)
    if sd.shape[0] != P or sd.shape[2] != alphas.size:
        raise ValueError(f"`sup_distance` must have shape (P={P}, repeats, A={alphas.size}), "
                         f"got {sd.shape}")
    ra = out["robust_accuracy"] = _arr(d, "robust_accuracy", 3, finite=False)
    if ra.shape[0] != P or ra.shape[2] != radii.size:
        raise ValueError(f"`robust_accuracy` must have shape (P={P}, repeats, M={radii.size}), "
                         f"got {ra.shape}")
    if np.any((ra < 0) | (ra > 1)):  # (NaN compares False: failed repeats stay allowed)
        raise ValueError("`robust_accuracy` must hold fractions in [0, 1]")
    c = out["contributions"] = _arr(d, "contributions", 2)
    if c.shape[0] != P:
        raise ValueError(f"`contributions` must have shape (P={P}, h), got {c.shape}")
    h = c.shape[1]
    s = out["signs"] = _arr(d, "signs", 2)
    if s.shape != (P, h):
        raise ValueError(f"`signs` must have shape (P={P}, h={h}), got {s.shape}")
    cos = out["cosines"] = _arr(d, "cosines", 3)
    if cos.shape != (P, h, K + 2):
        raise ValueError(f"`cosines` must have shape (P={P}, h={h}, K+2={K + 2}) with columns "
                         f"[mubar_+, mubar_-, mu_1..mu_K], got {cos.shape}")
    if "heatmap_alpha" in d:
        out["heatmap_alpha"] = _arr(d, "heatmap_alpha", 0)
    return out


def paper_arrays_from_trajectories(trajs: Mapping[float, Trajectory],
                                   index: int = -1) -> dict[str, np.ndarray]:
    """The panel (b-d) keys (K, ps, contributions, signs, cosines) from one trajectory per p.

    Uses snapshot ``index`` (default: the last) of each trajectory, which must
    carry its centres and subclass labels and have the same width.
    """
    ps = sorted(float(p) for p in trajs)
    cs, ss, coss = [], [], []
    K = None
    for p in ps:
        tr = trajs[p] if p in trajs else trajs[int(p)]
        if tr.centres is None or tr.subclass_labels is None:
            raise ValueError(f"trajectory for p={p:g} must carry `centres` and `subclass_labels`")
        if tr.v.ndim != 2:
            raise ValueError("the paper figure needs scalar-output nets (`v` of shape (T, h))")
        W, v = tr.at(index)
        cs.append(contributions(W, v))
        ss.append(np.sign(v))
        coss.append(direction_cosines(W, tr.centres, tr.subclass_labels))
        if K is not None and tr.centres.shape[0] != K:
            raise ValueError(f"trajectories must share the centres, got K={K} and "
                             f"K={tr.centres.shape[0]} (p={p:g})")
        K = tr.centres.shape[0]
    widths = {c.size for c in cs}
    if len(widths) != 1:
        raise ValueError(f"trajectories must have the same width, got {sorted(widths)}")
    return {"K": np.asarray(K), "ps": np.array(ps), "contributions": np.stack(cs),
            "signs": np.stack(ss), "cosines": np.stack(coss)}


def save_paper_results(path: str | os.PathLike, results: Mapping) -> Path:
    """Validate and write the results dict as one npz (atomic)."""
    return save_npz(path, **check_paper_results(results))


def load_paper_results(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read and validate a file written by ``save_paper_results``."""
    return check_paper_results(load_npz(path))
