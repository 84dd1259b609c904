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
5. Another 5(4) pair: Tsitouras's (2011) pair, whose error coefficients are smaller than
   Dormand-Prince's, in place of DP5 in the default method (same variables, norm,
   projection and PI controller), on a dense grid of 18 rtols (5e-4 .. 1e-5) for p = 3
   (two init seeds), 4, 2.5 and 2. A cost-error curve from a few rtols is noisy (the error
   is not monotone in rtol), so each curve is summarised by a least-squares power law
   nfev = a error^b over the grid, its cost at 1e-5, the scatter of the runs around it, and
   the cheapest run at error <= 1e-5. An experiment, not a library method.
6. Variable-order multistep methods, which need one or two evaluations per step instead of
   six: scipy's VODE in Adams mode (orders 1-12) and LSODA (Adams, switching to BDF when
   stiff), through ``scipy.integrate.ode`` on the Cartesian field, rtol 1e-4 .. 1e-6 with
   the atol = rtol * 1e-7 that bench_gradient_flow.py gives scipy's RK45 (matched to eps).

7. The direction weight in Cartesian variables: neuron j's error split into its part along
   w_j (with the v_j part: the norm) and its part across w_j (the direction), the latter
   weighted by 0.3 or 0.1 as `direction_weight` does in polar variables (directions
   contract near isolated extremal vectors), init seeds 0 and 7. An experiment, not a
   library option.

Usage: python benchmarks/p3_alternatives.py   (about 20 minutes: the p = 2 references
need ~1.1 million evaluations)
"""
from __future__ import annotations

import os
from dataclasses import replace

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from _report import write_report  # noqa: E402
from bench_gradient_flow import DATA, EPS, cost_at_error, rel_err, run, theta_of  # noqa: E402
from scipy.integrate import ode  # noqa: E402
from scipy.integrate._ivp import dop853_coefficients as dop  # noqa: E402

from gradflow.config import InitConfig, ModelConfig  # noqa: E402
from gradflow.data import make_subclass_data  # noqa: E402
from gradflow.dynamics.adaptive import GradFlowSolver  # noqa: E402
from gradflow.dynamics.fields import CartesianRep, FlowProblem  # noqa: E402
from gradflow.dynamics.tableaus import _tab  # noqa: E402
from gradflow.init import init_params  # noqa: E402

T = 350.0
RTOLS = (1e-4, 3e-5, 1e-5, 3e-6)
TANGENT_RTOLS = (1e-4, 5e-5, 3e-5, 1e-5)
GRID = tuple(float(r) for r in np.geomspace(5e-4, 1e-5, 18))

# Tsitouras, "Runge-Kutta pairs of order 5(4) satisfying only the first column simplifying
# assumption", Comput. Math. Appl. 62 (2011) 770-775: nodes, rows of A (the last row is the
# 5th-order weights: FSAL), b - b_hat, and the 4th-order continuous extension (rows:
# stages, columns: powers s^1..s^4). Data only; checked against the order conditions below.
TSIT5_C = [0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0]
TSIT5_A = [[0.161],
           [-0.008480655492356989, 0.335480655492357],
           [2.8971530571054935, -6.359448489975075, 4.3622954328695815],
           [5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525],
           [5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401,
            -0.028269050394068383],
           [0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742,
            -3.290069515436081, 2.324710524099774]]
TSIT5_BERR = [-0.00178001105222577714, -0.0008164344596567469, 0.007880878010261995,
              -0.1447110071732629, 0.5823571654525552, -0.45808210592918697, 1.0 / 66.0]
TSIT5_DENSE = [[1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216],
               [0.0, 0.1317, -0.2234, 0.1017],
               [0.0, 3.9302962368947516, -5.941033872131505, 2.490627285651253],
               [0.0, -12.411077166933676, 30.33818863028232, -16.548102889244902],
               [0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928],
               [0.0, -27.896526289197286, 65.09189467479366, -34.87065786149661],
               [0.0, 1.5, -4.0, 2.5]]


def order_defects(A, c, b, theta=1.0):
    """|sum_i b_i Phi_i(tree) - theta^|tree| / gamma(tree)| for the 17 trees of order <= 5
    (b may be the continuous weights b(theta)), as a dict order -> largest defect."""
    Ac, Ac2, Ac3 = A @ c, A @ c**2, A @ c**3
    trees = {1: [(b.sum(), 1)], 2: [(b @ c, 2)],
             3: [(b @ c**2, 3), (b @ Ac, 6)],
             4: [(b @ c**3, 4), (b @ (c * Ac), 8), (b @ Ac2, 12), (b @ (A @ Ac), 24)],
             5: [(b @ c**4, 5), (b @ (c**2 * Ac), 10), (b @ (Ac * Ac), 20), (b @ (c * Ac2), 15),
                 (b @ (c * (A @ Ac)), 30), (b @ Ac3, 20), (b @ (A @ (c * Ac)), 40),
                 (b @ (A @ Ac2), 60), (b @ (A @ (A @ Ac)), 120)]}
    return {q: max(abs(v - theta**q / g) for v, g in rows) for q, rows in trees.items()}


def tsit5_tableau():
    """The Tsitouras pair as a Tableau, after checking its orders (5, embedded 4, dense 4)."""
    tab = _tab("tsit5", TSIT5_C, TSIT5_A, TSIT5_A[-1] + [0.0], 5, fsal=True)
    tab = replace(tab, b_err=np.array(TSIT5_BERR), err_order=4)
    dense = np.array(TSIT5_DENSE)
    checks = [order_defects(tab.A, tab.c, tab.b), order_defects(tab.A, tab.c, tab.b - tab.b_err)]
    checks += [order_defects(tab.A, tab.c, dense @ s ** np.arange(1, 5), s)
               for s in (0.3, 0.7, 1.0)]
    orders = (5, 4, 4, 4, 4)
    for defects, q in zip(checks, orders):
        if max(d for k, d in defects.items() if k <= q) > 1e-13:
            raise RuntimeError(f"Tsitouras coefficients fail an order-{q} condition: {defects}")
    if np.abs(dense @ np.ones(4) - tab.b).max() > 1e-13:
        raise RuntimeError("Tsitouras continuous extension does not end at the 5th-order step")
    return tab, dense


class Tsit5Solver(GradFlowSolver):
    """The default method with Tsitouras's 5(4) pair in place of Dormand-Prince's."""

    tableau, dense_matrix = tsit5_tableau()


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


class TangentWeightSolver(GradFlowSolver):
    """The default method (Cartesian) with neuron j's error component across w_j weighted."""

    tangent_weight = 1.0

    def _error(self, e, y_new):
        eW, ev, _ = self.rep.split(e)
        W, _, _ = self.rep.split(self.y)
        u = W / np.linalg.norm(W, axis=1, keepdims=True)
        radial = np.sum(eW * u, axis=1)
        across = eW - radial[:, None] * u
        num = np.sqrt(self.tangent_weight**2 * np.sum(across * across, axis=1)
                      + radial**2 + ev**2)
        den = np.maximum(self.rep.neuron_sizes(self.y), self.rep.neuron_sizes(y_new))
        return float(np.max(num / den)) / self.rtol


def solver_curve(pb, P0, ref, cls, opts, rtols=RTOLS):
    rows = []
    for rt in rtols:
        s = cls(pb, P0, 0.0, T, rtol=rt, **opts)
        while s.t < T:
            s.step()
        rows.append({"rtol": rt, "nfev": s.nfev, "error": rel_err(theta_of(s.params()), ref)})
    return rows


def power_law(rows, err=1e-5):
    """Least-squares fit log nfev = log a + b log error over the runs: the fitted cost at
    `err`, the exponent b, the runs' scatter around the fit (a factor in nfev) and the
    cheapest run with error <= err."""
    le = np.log([r["error"] for r in rows])
    ln = np.log([r["nfev"] for r in rows])
    b, a = np.polyfit(le, ln, 1)
    ok = [r["nfev"] for r in rows if r["error"] <= err]
    return {"nfev_at": float(np.exp(a + b * np.log(err))), "exponent": float(b),
            "scatter": float(np.exp(np.std(ln - (a + b * le)))),
            "cheapest_at_or_below": min(ok) if ok else None}


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
            "error": rel_err(theta_of(P), ref)}


def multistep_run(pb, P0, ref, integrator, rtol):
    """scipy.integrate.ode's `integrator` ('vode' in Adams mode, or 'lsoda') from 0 to T."""
    rep = CartesianRep(pb, P0)
    nfev = 0

    def fun(t, y):
        nonlocal nfev
        nfev += 1
        return rep.field(y)[0]

    kw = {"method": "adams"} if integrator == "vode" else {}
    r = ode(fun).set_integrator(integrator, rtol=rtol, atol=rtol * 1e-7, nsteps=10**6, **kw)
    r.set_initial_value(rep.pack(P0), 0.0)
    y = r.integrate(T)
    ok = r.successful()
    return {"rtol": rtol, "nfev": nfev, "error": rel_err(y, ref) if ok else float("nan"),
            "success": ok}


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

    md.append("\nTsitouras 5(4) against Dormand-Prince 5(4) in the default method, 18 rtols "
              "5e-4 .. 1e-5 (power law nfev = a error^b fitted over the runs; scatter: the "
              "runs' spread around it as a factor in nfev):\n\n"
              "| p, init seed | DP5: nfev at 1e-5 (fit), b, scatter; cheapest run <= 1e-5 "
              "| Tsit5: same | ratio of fits |\n|---|---|---|---|")
    metrics["tsit5"] = []
    for p, seed in ((3.0, 0), (3.0, 7), (4.0, 0), (2.5, 0), (2.0, 0)):
        mcg = ModelConfig(width=50, p=p)
        Pg = init_params(mcg, InitConfig(eps=EPS, seed=seed), DATA.D)
        pbg = FlowProblem(data.X, data.y, mcg)
        if (p, seed) == (3.0, 0):
            refg = ref
        elif (p, seed) == (2.0, 0):
            refg = r12.theta[-1]
        else:
            refg = run(data, mcg, Pg, T, "DOP853", {"rtol": 1e-11, "atol": 1e-22})[0].theta[-1]
        fits = {}
        for name, cls in (("dp5", GradFlowSolver), ("tsit5", Tsit5Solver)):
            rows = solver_curve(pbg, Pg, refg, cls, {}, GRID)
            fits[name] = {"rows": rows, **power_law(rows)}
        metrics["tsit5"].append({"p": p, "seed": seed, **fits})

        def cell(f):
            return (f"{f['nfev_at']:.0f}, {f['exponent']:.2f}, {f['scatter']:.2f}; "
                    f"{f['cheapest_at_or_below'] or '-'}")
        md.append(f"| {p:g}, {seed} | {cell(fits['dp5'])} | {cell(fits['tsit5'])} | "
                  f"{fits['tsit5']['nfev_at'] / fits['dp5']['nfev_at']:.2f} |")
    md.append("\nVariable-order multistep methods (p = 3, Cartesian field, atol = rtol * 1e-7; "
              "nfev at 1e-5 interpolated as in the first table):\n\n"
              "| method | runs: nfev at error (rtol 1e-4, 3e-5, 1e-5, 3e-6, 1e-6) "
              "| nfev at 1e-5 |\n|---|---|---|")
    metrics["multistep"] = {}
    for name, integ in (("VODE, Adams", "vode"), ("LSODA", "lsoda")):
        rows = [multistep_run(pb, P0, ref, integ, rt) for rt in RTOLS + (1e-6,)]
        metrics["multistep"][name] = {"rows": rows, "nfev_at_1e-5": cost_at_error(
            [r for r in rows if r["success"]], 1e-5)}
        md.append(f"| {name} | " + ", ".join(f"{r['nfev']} at {r['error']:.1e}" for r in rows)
                  + f" | {metrics['multistep'][name]['nfev_at_1e-5']:.0f} |")
    md.append("\nDirection weight in Cartesian variables (error across w_j weighted; weight 1 is "
              "the default; rtol 1e-4, 5e-5, 3e-5, 1e-5; nfev at 1e-5 interpolated, ratio to "
              "weight 1 in brackets):\n\n| init seed | weight | runs: nfev at error "
              "| nfev at 1e-5 |\n|---|---|---|---|")
    metrics["cartesian_direction_weight"] = []
    for seed in (0, 7):
        Ps = init_params(mc, InitConfig(eps=EPS, seed=seed), DATA.D)
        refs = ref if seed == 0 else run(data, mc, Ps, T, "DOP853",
                                         {"rtol": 1e-11, "atol": 1e-22})[0].theta[-1]
        base = None
        for weight in (1.0, 0.3, 0.1):
            cls = type("Weighted", (TangentWeightSolver,), {"tangent_weight": weight})
            rows = solver_curve(pb, Ps, refs, cls, {}, TANGENT_RTOLS)
            at = cost_at_error(rows, 1e-5)
            base = at if base is None else base
            metrics["cartesian_direction_weight"].append(
                {"seed": seed, "weight": weight, "rows": rows, "nfev_at_1e-5": at})
            md.append(f"| {seed} | {weight:g} | "
                      + ", ".join(f"{r['nfev']} at {r['error']:.1e}" for r in rows)
                      + f" | {at:.0f} ({at / base:.2f}) |")
    config = {"data": DATA.to_dict(), "width": 50, "eps": EPS, "T": T, "rtols": RTOLS,
              "grid": GRID}
    write_report("p3_alternatives", "python benchmarks/p3_alternatives.py", config, metrics, [],
                 "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
