"""Brute-force references for the theory tests (no tests here; independent of gradflow.theory's solvers)."""
from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import minimize


def slsqp_radius(x, clf, n_random=20, seed=0, target=None):
    """min ||d|| s.t. s g(x + d) <= 0 by SLSQP in the full input space, many starts.

    Starts: towards each opposite centre, towards the mean of the m opposite centres
    with the largest <x, mu_k> (m = 2..K_o), and random directions.
    """
    s = np.sign(clf.numpy(x)) if target is None else target
    C = clf.centres
    rng = np.random.default_rng(seed)

    def con(d):
        return -s * clf.numpy(x + d)

    def jac(d):
        return -s * (clf.grad_z(((x + d) @ C.T)[None])[0] @ C)

    opp = np.flatnonzero(clf.labels * s < 0)
    opp = opp[np.argsort(-(C[opp] @ x))]
    starts = [C[k] - x for k in opp]
    starts += [C[opp[:m]].mean(0) - x for m in range(2, len(opp) + 1)]
    starts += [rng.standard_normal(x.size) * rng.uniform(0.1, 1.0) for _ in range(n_random)]
    best = np.inf
    for d0 in starts:
        r = minimize(lambda d: d @ d, 0.5 * d0, jac=lambda d: 2 * d, method="SLSQP",
                     constraints=[{"type": "ineq", "fun": con, "jac": jac}],
                     options={"ftol": 1e-15, "maxiter": 500})
        if con(r.x) >= -1e-12:
            best = min(best, float(np.linalg.norm(r.x)))
    return best


def enumerate_radius_F1(x, clf):
    """Exact radius of F_1 (piecewise linear): enumerate the 2^K sign patterns of
    z = C x; in each region F_1 is linear, so the problem is a convex QP (SLSQP)."""
    s = np.sign(clf.numpy(x))
    C, K = clf.centres, clf.K
    best = np.inf
    for sig in itertools.product([0.0, 1.0], repeat=K):
        sig = np.array(sig)
        side = 2 * sig - 1
        w = -s * (sig * clf.labels) @ C
        cons = [{"type": "ineq", "fun": lambda d, side=side: side * ((x + d) @ C.T),
                 "jac": lambda d, side=side: side[:, None] * C},
                {"type": "ineq", "fun": lambda d, w=w: np.array([w @ (x + d)]),
                 "jac": lambda d, w=w: w[None, :]}]
        r = minimize(lambda d: d @ d, np.zeros_like(x), jac=lambda d: 2 * d, method="SLSQP",
                     constraints=cons, options={"ftol": 1e-15, "maxiter": 300})
        if r.success and min(cons[0]["fun"](r.x).min(), cons[1]["fun"](r.x)[0]) >= -1e-10:
            best = min(best, float(np.linalg.norm(r.x)))
    return best
