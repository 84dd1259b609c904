"""Small initialisations (THEORY.md section 3), reproducible from a seed."""
from __future__ import annotations

import numpy as np

from .config import InitConfig, ModelConfig
from .model import TwoLayerParams


def init_params(
    model: ModelConfig,
    init: InitConfig,
    D: int,
    centres: np.ndarray | None = None,
    dtype=np.float64,
) -> TwoLayerParams:
    """Draw initial parameters for a width-h network on R^D.

    balanced:    w_j = eps g_j, g_j ~ N(0, I/D); v_j = s_j ||w_j|| (vector outputs:
                 a random direction of norm ||w_j||), so v_j^2 - ||w_j||^2 = 0.
    independent: every entry of W and v iid N(0, eps^2), as the reference code.
    nudged:      balanced, but each direction is (1-delta) g/||g|| + delta mu_target,
                 renormalised to norm eps (needs ``centres``).
    The output bias starts at zero.
    """
    if isinstance(D, bool) or not isinstance(D, (int, np.integer)) or D < 1:
        raise ValueError(f"`D` must be a positive integer, got {D!r}")
    rng = np.random.default_rng(init.seed)
    h, C = model.width, model.n_outputs
    vshape = (h,) if C == 1 else (h, C)
    if init.mode == "independent":
        W = init.eps * rng.standard_normal((h, D))
        v = init.eps * rng.standard_normal(vshape)
    else:
        G = rng.standard_normal((h, D)) / np.sqrt(D)
        if init.mode == "nudged":
            if centres is None:
                raise ValueError("`centres` are required for init mode 'nudged'")
            centres = np.asarray(centres)
            if init.target >= centres.shape[0]:
                raise ValueError(
                    f"`target` must be < K={centres.shape[0]} (a centre index), got {init.target}"
                )
            mu = centres[init.target] / np.linalg.norm(centres[init.target])
            U = G / np.linalg.norm(G, axis=1, keepdims=True)
            U = (1.0 - init.delta) * U + init.delta * mu
            G = U / np.linalg.norm(U, axis=1, keepdims=True)
        W = init.eps * G
        norms = np.linalg.norm(W, axis=1)
        if C == 1:
            v = rng.choice([-1.0, 1.0], size=h) * norms
        else:
            dirs = rng.standard_normal((h, C))
            v = dirs / np.linalg.norm(dirs, axis=1, keepdims=True) * norms[:, None]
    b = (np.zeros(()) if C == 1 else np.zeros(C)) if model.bias else None
    center = np.zeros(D) if model.center_input else None
    return TwoLayerParams(W.astype(dtype), v.astype(dtype),
                          None if b is None else b.astype(dtype),
                          None if center is None else center.astype(dtype))
