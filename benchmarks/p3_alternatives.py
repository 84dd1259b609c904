"""Measured alternatives to the default method on the p=3 benchmark, and two diagnostics.

The numbers behind the "alternatives" and "p = 2" paragraphs of docs/dynamics.md, all on
the configuration of bench_gradient_flow.py (T = 350 for p = 3), from the same initial
state, against a DOP853 reference (rtol 1e-11):

1. Stability or accuracy: the largest Jacobian eigenvalue of the field along the default
   run (power iteration on finite differences) against the accepted step sizes.
2. Error norms in polar variables: the RMS over neurons instead of the maximum, and the
   direction weight 1/sqrt(2) (the first-order weighting of the Cartesian norm).
3. An 8th-order pair: scipy's DOP853 coefficients (``scipy.integrate._ivp``, data only)
   driven with this engine's per-neuron relative norm, Cartesian variables and invariant
   projection, classical controller. An experiment, not a library method.
4. p = 2: how well the DOP853 reference itself is converged (rtol 1e-11 vs 1e-12), and
   the default at rtol 1e-9, to tell the method's error from the reference's.

Usage: python benchmarks/p3_alternatives.py   (about 8 minutes: the p = 2 references
need ~1.1 million evaluations)
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from _report import write_report  # noqa: E402
from bench_gradient_flow import DATA, EPS, cost_at_error, rel_err, run  # noqa: E402
from scipy.integrate._ivp import dop853_coefficients as dop  # noqa: E402

from gradflow.config import InitConfig, ModelConfig  # noqa: E402
from gradflow.data import make_subclass_data  # noqa: E402
from gradflow.dynamics.adaptive import GradFlowSolver  # noqa: E402
from gradflow.dynamics.fields import CartesianRep, FlowProblem  # noqa: E402
from gradflow.init import init_params  # noqa: E402

T = 350.0
RTOLS = (1e-4, 3e-5, 1e-5, 3e-6)


def spectral_radius(rep, y, iters=60):
    """Largest |eigenvalue| of dF/dy at y by power iteration on finite differences."""
    f0 = rep.field(y)[0]
    v = np.random.default_rng(0).standard_normal(y.size)
    v /= np.linalg.norm(v)
    lam = 0.0
    for _ in range(iters):
        d = 1e-7 * max(1.0, float(np.linalg.norm(y)))
        jv = (rep.field(y + d * v)[0] - f0) / d
        lam = float(np.linalg.norm(jv))
        v = jv / lam
    return lam


def stability(pb, P0):
    """Accepted steps of the default run and the Jacobian's spectral radius at some times."""
    sol = GradFlowSolver(pb, P0, 0.0, T, rtol=3e-5)
    checks, rows, steps = [5.0, 15.0, 30.0, 60.0, 90.0, 120.0, 200.0, 300.0], [], []
    while sol.t < T:
        t0 = sol.t
        sol.step()
        steps.append((t0, sol.t - t0))
        if checks and sol.t >= checks[0]:
            checks.pop(0)
            rows.append({"t": sol.t, "spectral_radius": spectral_radius(sol.rep, sol.y)})
    h_align = [h for t, h in steps if 5.0 <= t <= 130.0]
    return {"radii": rows, "step_min_5_130": min(h_align), "step_max_5_130": max(h_align),
            "nfev": sol.nfev}


class RMSSolver(GradFlowSolver):
    """The default method with the RMS over neurons instead of the maximum."""

    def _error(self, e, y_new):
        err = self.rep.neuron_error(e, self.y, y_new, self.direction_weight)
        return float(np.sqrt(np.mean(err**2))) / self.rtol


def solver_curve(pb, P0, ref, cls, opts):
    rows = []
    for rt in RTOLS:
        s = cls(pb, P0, 0.0, T, rtol=rt, **opts)
        while s.t < T:
            s.step()
        theta = np.concatenate([s.params().W.ravel(), s.params().v.ravel()])
        rows.append({"rtol": rt, "nfev": s.nfev, "error": rel_err(theta, ref)})
    return rows


def dop853_run(pb, P0, ref, rtol):
    """DOP853 with the per-neuron relative norm (scipy's 5th/3rd-order error combination)."""
    A, B, E3, E5 = dop.A[:12, :12], dop.B, dop.E3, dop.E5
    rep = CartesianRep(pb, P0, conserve=True)
    y = rep.pack(P0)
    k = rep.field(y)[0]
    nfev, t = 1, 0.0
    h = 0.1 * rtol ** 0.125 / float(np.max(rep.neuron_error(k, y, y)))
    while t < T:
        h = min(h, T - t)
        K = np.empty((13, y.size))
        K[0] = k
        for s in range(1, 12):
            K[s] = rep.field(y + h * (A[s, :s] @ K[:s]))[0]
        y_new = y + h * (B @ K[:12])
        K[12] = rep.field(y_new)[0]
        nfev += 12
        e5 = rep.neuron_error(h * (E5 @ K), y, y_new) / rtol
        e3 = rep.neuron_error(h * (E3 @ K), y, y_new) / rtol
        den = np.sqrt(e5**2 + 0.01 * e3**2)
        err = float(np.max(np.divide(e5**2, den, out=np.zeros_like(den), where=den > 0)))
        if err > 1.0:
            h *= max(0.2, 0.9 * err ** -0.125)
            continue
        y, k, t = rep.finalize(y_new), K[12], t + h
        h *= 10.0 if err == 0 else min(10.0, max(0.2, 0.9 * err ** -0.125))
    P = rep.unpack(y)
    return {"rtol": rtol, "nfev": nfev,
            "error": rel_err(np.concatenate([P.W.ravel(), P.v.ravel()]), ref)}


def main():
    data = make_subclass_data(DATA)
    mc = ModelConfig(width=50, p=3.0)
    P0 = init_params(mc, InitConfig(eps=EPS), DATA.D)
    pb = FlowProblem(data.X, data.y, mc)
    ref = run(data, mc, P0, T, "DOP853", {"rtol": 1e-11, "atol": 1e-22})[0].theta[-1]
    metrics, md = {}, []

    st = stability(pb, P0)
    metrics["stability"] = st
    radii = [r["spectral_radius"] for r in st["radii"]]
    md.append("Stability or accuracy (default, rtol 3e-5): largest Jacobian eigenvalue "
              + ", ".join(f"{r['spectral_radius']:.3g} (t={r['t']:.0f})" for r in st["radii"])
              + f"; DP5 is stable to h ~ 3.3 / {max(radii):.2f} = {3.3 / max(radii):.1f}, the "
              f"accepted steps for 5 <= t <= 130 are {st['step_min_5_130']:.2f} .. "
              f"{st['step_max_5_130']:.2f}.\n")

    variants = {
        "polar, max norm, w=1, I (previous default)": (GradFlowSolver,
                                                       {"variables": "polar", "controller": "i"}),
        "polar, RMS norm, w=1, I": (RMSSolver, {"variables": "polar", "controller": "i"}),
        "polar, max norm, w=1/sqrt(2), I": (GradFlowSolver, {"variables": "polar",
                                                             "controller": "i",
                                                             "direction_weight": 2 ** -0.5}),
    }
    md.append("| variant (p = 3) | runs: nfev at error (rtol 1e-4 .. 3e-6) | nfev at 1e-5 |\n"
              "|---|---|---|")
    curves = {name: solver_curve(pb, P0, ref, cls, opts)
              for name, (cls, opts) in variants.items()}
    curves["DOP853 pair, Cartesian, projected, I"] = [dop853_run(pb, P0, ref, rt)
                                                      for rt in (1e-3, 3e-4, 1e-4, 3e-5)]
    for name, rows in curves.items():
        metrics[name] = {"rows": rows, "nfev_at_1e-5": cost_at_error(rows, 1e-5)}
        md.append(f"| {name} | " + ", ".join(f"{r['nfev']} at {r['error']:.1e}" for r in rows)
                  + f" | {metrics[name]['nfev_at_1e-5']:.0f} |")

    mc2 = ModelConfig(width=50, p=2.0)
    P2 = init_params(mc2, InitConfig(eps=EPS), DATA.D)
    r11 = run(data, mc2, P2, T, "DOP853", {"rtol": 1e-11, "atol": 1e-22})[0]
    r12 = run(data, mc2, P2, T, "DOP853", {"rtol": 1e-12, "atol": 1e-23})[0]
    g9 = run(data, mc2, P2, T, "gradflow", {"rtol": 1e-9})[0]
    g6 = run(data, mc2, P2, T, "gradflow", {"rtol": 1e-6})[0]
    metrics["p2"] = {"dop853_1e-11_vs_1e-12": rel_err(r11.theta[-1], r12.theta[-1]),
                     "nfev_1e-11": r11.nfev, "nfev_1e-12": r12.nfev,
                     "default_rtol_1e-9_error": rel_err(g9.theta[-1], r12.theta[-1]),
                     "default_rtol_1e-6_error": rel_err(g6.theta[-1], r12.theta[-1])}
    m2 = metrics["p2"]
    md.append(f"\np = 2: DOP853 rtol 1e-11 vs 1e-12 differ by {m2['dop853_1e-11_vs_1e-12']:.1e} "
              f"({m2['nfev_1e-11']} and {m2['nfev_1e-12']} evaluations); the default's error "
              f"against the latter: {m2['default_rtol_1e-6_error']:.1e} at rtol 1e-6, "
              f"{m2['default_rtol_1e-9_error']:.1e} at rtol 1e-9.")
    config = {"data": DATA.to_dict(), "width": 50, "eps": EPS, "T": T, "rtols": RTOLS}
    write_report("p3_alternatives", "python benchmarks/p3_alternatives.py", config, metrics, [],
                 "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
