"""Benchmark of the gradient-flow engine on the issue's benchmark configuration.

D=100, K=10, K1=6, n=500, alpha=0.1, h=50, eps=1e-6, balanced init, exponential
loss; T=350 for p=3 and T=150 for p=1. Every method starts from the same initial
parameters and is compared with a tight reference computed in the same run
(p=3: scipy DOP853 rtol 1e-11; p=1: RK4 with dt=0.005, whose own error is
estimated from dt=0.01). Reported: gradient evaluations (nfev), wall time,
relative error ||theta(T) - theta_ref(T)|| / ||theta_ref(T)||, invariant drift.
Gradient descent ("gd", forward Euler) is first order, so its error is fitted as
C*eta from two step sizes and the step (and evaluations T/eta) needed for the
default method's error is reported as the baseline at equal error.

Usage: python benchmarks/bench_gradient_flow.py [--quick]
"""
from __future__ import annotations

import argparse
import os

# One BLAS thread: the (n x D) x (D x h) products are small, and on a shared
# machine threaded BLAS was measured 20-40x slower per evaluation.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import time  # noqa: E402

import numpy as np  # noqa: E402
from _report import target, write_report  # noqa: E402

from gradflow.config import DataConfig, InitConfig, ModelConfig  # noqa: E402
from gradflow.data import make_subclass_data  # noqa: E402
from gradflow.dynamics import simulate  # noqa: E402
from gradflow.dynamics.fields import CartesianRep, FlowProblem  # noqa: E402
from gradflow.init import init_params  # noqa: E402

DATA = DataConfig(K=10, K1=6, D=100, alpha=0.1, n=500)
EPS = 1e-6


def run(data, mc, P0, T, solver, options):
    t0 = time.perf_counter()
    s = simulate(data, mc, P0, solver=solver, options=options, t_max=T, save_at=[0.0, T],
                 progress=False)
    return s, time.perf_counter() - t0


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def theta_of(P):
    """Flattened (W, v) of one TwoLayerParams, ordered as Solution.theta (no bias here)."""
    return np.concatenate([P.W.ravel(), P.v.ravel()])


def bench_p(p, T, ref_solver, ref_opts, methods, gd_etas, data):
    mc = ModelConfig(width=50, p=p)
    P0 = init_params(mc, InitConfig(eps=EPS), DATA.D)
    ref, ref_wall = run(data, mc, P0, T, ref_solver, ref_opts)
    rows = [{"method": ref_solver, "options": ref_opts, "nfev": ref.nfev, "wall_s": ref_wall,
             "error": 0.0, "drift": ref.invariant_drift, "status": ref.status, "reference": True}]
    for solver, opts in methods:
        s, wall = run(data, mc, P0, T, solver, opts)
        rows.append({"method": solver, "options": opts, "nfev": s.nfev, "wall_s": wall,
                     "error": rel_err(s.theta[-1], ref.theta[-1]), "drift": s.invariant_drift,
                     "status": s.status, "n_rejected": s.n_rejected,
                     "loss_T": float(s.loss[-1])})
    gd = []
    for eta in gd_etas:
        s, wall = run(data, mc, P0, T, "gd", {"eta": eta})
        gd.append({"method": "gd", "options": {"eta": eta}, "nfev": s.nfev, "wall_s": wall,
                   "error": rel_err(s.theta[-1], ref.theta[-1]), "drift": s.invariant_drift,
                   "status": s.status})
    rows += gd
    # first-order fit error = C eta through the gd runs (log-space mean of C)
    C = float(np.exp(np.mean([np.log(r["error"] / r["options"]["eta"]) for r in gd])))
    slope = (float(np.polyfit(np.log(gd_etas), np.log([r["error"] for r in gd]), 1)[0])
             if len(gd) > 1 else float("nan"))
    return rows, C, slope, float(ref.loss[-1])


def cost_at_error(rows, err):
    """Evaluations a method needs for relative error `err`: log-log interpolation on its
    cost-error frontier (runs not beaten in both) between the two runs that bracket it
    (nan if none do: no extrapolation)."""
    pts, best = [], np.inf
    for n, e in sorted((r["nfev"], r["error"]) for r in rows if r["error"] > 0):
        if e < best:
            pts.append((e, n))
            best = e
    pts.sort()
    le, ln = np.log([e for e, _ in pts]), np.log([n for _, n in pts])
    i = int(np.searchsorted(le, np.log(err)))
    if i == 0 or i == len(pts):
        return float("nan")  # not bracketed by the runs: no extrapolation
    slope = (ln[i] - ln[i - 1]) / (le[i] - le[i - 1])
    return float(np.exp(ln[i - 1] + slope * (np.log(err) - le[i - 1])))


def field_cost(n, D, h, reps=30):
    cfg = DataConfig(K=10, K1=6, D=D, alpha=0.1, n=n)
    data = make_subclass_data(cfg)
    mc = ModelConfig(width=h, p=3.0)
    P0 = init_params(mc, InitConfig(eps=EPS), D)
    pb = FlowProblem(data.X, data.y, mc)
    rep = CartesianRep(pb, P0, conserve=True)  # the default's variables for p=3
    y = rep.pack(P0)
    rep.field(y)
    t0 = time.perf_counter()
    for _ in range(reps):
        rep.field(y)
    return (time.perf_counter() - t0) / reps


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="coarser reference and fewer runs")
    args = ap.parse_args(argv)
    data = make_subclass_data(DATA)
    metrics = {}
    md = []

    p3_methods = [("gradflow", {"rtol": r}) for r in (1e-4, 3e-5, 1e-5, 1e-6)]
    # baseline in the same run: the previous default, polar variables
    prev = {"variables": "polar", "controller": "i"}
    p3_methods += [("gradflow", {"rtol": r, **prev}) for r in (1e-4, 3e-5, 1e-5, 1e-6)]
    # option: polar direction errors weighted 0.1 (they contract; log-norm errors persist)
    p3_methods += [("gradflow", {"rtol": r, "variables": "polar", "direction_weight": 0.1})
                   for r in (1e-4, 3e-5, 1e-5, 3e-6)]
    # the classical controller in the default variables
    p3_methods += [("gradflow", {"rtol": r, "controller": "i"}) for r in (3e-5, 1e-5)]
    # scipy baselines as cost-error curves (their cost at equal error is interpolated), with
    # atol = rtol * 1e-7, i.e. scaled to the initial parameter components (~1e-7 at eps=1e-6):
    # the best use of an absolute tolerance, which needs knowing eps
    p3_methods += [("RK45", {"rtol": r, "atol": float(f"{r * 1e-7:.0e}")})
                   for r in (1e-5, 3e-6, 1e-6, 1e-7)]
    p3_methods += [("DOP853", {"rtol": r, "atol": float(f"{r * 1e-7:.0e}")})
                   for r in (1e-3, 1e-4, 1e-5, 1e-7)]
    rows3, C3, s3, loss3 = bench_p(3.0, 350.0, "DOP853", {"rtol": 1e-11, "atol": 1e-22},
                                   p3_methods, [0.1, 0.05] if not args.quick else [0.1], data)
    # RK4 across the switching surfaces converges with order 1-2 here (this run's rk4 row:
    # dt 0.01 is 5.5e-5 off dt 0.005), so dt 0.01 was within 3x of the default's error
    ref1_dt = 0.02 if args.quick else 0.005
    p1_methods = [("gradflow", {"switch_tol": st}) for st in (1e-3, 3e-4, 1e-4)]
    p1_methods += [("gradflow", {"switch_tol": 1e-3, "sliding": "chatter"}),
                   ("gradflow", {"switch_tol": 1e-4, "sliding": "chatter"})]
    # baseline in the same run: the previous default, without the exact alignment phase
    p1_methods += [("gradflow", {"switch_tol": st, "exact_fmax": 0.0}) for st in (1e-3, 1e-4)]
    p1_methods += [("gradflow", {"switch_tol": 1e-4, "sliding": "chatter", "exact_fmax": 0.0})]
    # the classical step-size controller (default before the PI controller)
    p1_methods += [("gradflow", {"switch_tol": st, "controller": "i"}) for st in (1e-3, 1e-4)]
    p1_methods += [("rk4", {"dt": 2 * ref1_dt})]
    rows1, C1, s1, loss1 = bench_p(1.0, 150.0, "rk4", {"dt": ref1_dt}, p1_methods,
                                   [0.1, 0.05] if not args.quick else [0.1], data)

    def candidate(r):  # gradflow rows, not the exact_fmax=0 baselines of p=1
        return r["method"] == "gradflow" and r["options"].get("exact_fmax") != 0.0

    def best(rows, tol):
        ok = [r for r in rows if candidate(r) and r["error"] <= tol]
        return min(ok, key=lambda r: r["nfev"]) if ok else None

    def gd_equal(C, err, T):
        return T / (err / C)  # gd evaluations (one per step) for error `err`

    targets = []
    for p, rows, tol, budget, C, T in ((3, rows3, 1e-5, 250, C3, 350.0),
                                       (1, rows1, 1e-3, 1000, C1, 150.0)):
        b = best(rows, tol)
        if b is None:
            b = min((r for r in rows if candidate(r)), key=lambda r: r["error"])
        gd_n = gd_equal(C, b["error"], T)
        targets.append(target(f"p={p}: nfev at error <= {tol:g}", f"<= {budget}",
                              f"{b['nfev']} at error {b['error']:.2e} ({b['options']})",
                              b["nfev"] <= budget and b["error"] <= tol))
        targets.append(target(f"p={p}: gd evals / gradflow evals at equal error", ">= 10",
                              round(gd_n / b["nfev"], 1), gd_n / b["nfev"] >= 10))
        metrics[f"p{p}"] = {"rows": rows, "gd_error_per_eta": C, "best": b,
                            "gd_evals_equal_error": gd_n}
    metrics["p3"]["gd_fitted_order"], metrics["p1"]["gd_fitted_order"] = s3, s1

    for p, rows, T, lossT in ((3, rows3, 350, loss3), (1, rows1, 150, loss1)):
        md.append(f"### p = {p}, T = {T} (reference loss at T: {lossT:.3g})\n")
        md.append("| method | options | nfev | wall (s) | rel. error theta(T) | invariant drift "
                  "| status |\n|---|---|---|---|---|---|---|")
        for r in rows:
            ref = " (reference)" if r.get("reference") else ""
            md.append(f"| {r['method']}{ref} | {r['options']} | {r['nfev']} | {r['wall_s']:.2f} "
                      f"| {r['error']:.2e} | {r['drift']:.1e} | {r['status']} |")
        C = metrics[f"p{p}"]["gd_error_per_eta"]
        md.append(f"\ngd error ~ {C:.3g} * eta (fitted order "
                  f"{metrics[f'p{p}']['gd_fitted_order']:.2f}); at the best gradflow error "
                  f"{metrics[f'p{p}']['best']['error']:.2e} gd needs "
                  f"{metrics[f'p{p}']['gd_evals_equal_error']:.3g} evaluations.\n")

    # p=3: cost at equal error against the scipy baselines (log-log interpolation of each
    # method's cost-error curve; the issue quotes RK45 at 494 evaluations for error 1.3e-6)
    eq = {}
    md.append("### p = 3: evaluations at equal error (same run, log-log interpolated)\n")
    md.append("| error | gradflow (default) | gradflow polar (previous default) | gradflow polar, "
              "direction_weight 0.1 | RK45 | DOP853 | RK45 / gradflow default |\n"
              "|---|---|---|---|---|---|---|")
    curves = {"gradflow": [r for r in rows3 if r["method"] == "gradflow"
                           and set(r["options"]) == {"rtol"}],
              "gradflow_polar": [r for r in rows3 if r["method"] == "gradflow"
                                 and set(r["options"]) == {"rtol", "variables", "controller"}],
              "gradflow_polar_dw0.1": [r for r in rows3
                                       if r["options"].get("direction_weight") == 0.1],
              "RK45": [r for r in rows3 if r["method"] == "RK45"],
              "DOP853": [r for r in rows3 if r["method"] == "DOP853" and not r.get("reference")]}
    for err in (1e-5, 1.3e-6):
        c = eq[f"{err:g}"] = {k: cost_at_error(v, err) for k, v in curves.items()}
        c["RK45_over_gradflow"] = c["RK45"] / c["gradflow"]
        md.append(f"| {err:g} | " + " | ".join(f"{c[k]:.0f}" for k in curves)
                  + f" | {c['RK45_over_gradflow']:.2f} |")
    n13 = eq["1.3e-06"]["RK45"]
    metrics["p3"]["evals_at_equal_error"] = eq
    md.append("\nContext for the p=3 target: the issue quotes scipy RK45 at about 494 evaluations "
              "for error 1.3e-6 (its tolerances and data draw are not stated). On this draw, with "
              f"atol = rtol * 1e-7, RK45 needs {n13:.0f} at that error, {n13 / 494:.2f}x as many. "
              "The target (250) is applied unchanged above. At error 1e-5 scipy with an atol "
              "matched to eps needs "
              f"{eq['1e-05']['RK45'] / eq['1e-05']['gradflow']:.2f}x (RK45) and "
              f"{eq['1e-05']['DOP853'] / eq['1e-05']['gradflow']:.2f}x (DOP853) the default's "
              "evaluations; the default needs no atol (none exists) and conserves the "
              "invariants (docs/dynamics.md).\n")

    def find(rows, options):
        return next(r for r in rows if r["method"] == "gradflow" and r["options"] == options)

    def same_run_table(title, label, pairs):
        """Rows compared in the same run: (key, baseline row, new row) -> ratios and a table."""
        md.append(f"### {title} (same run)\n")
        md.append(f"| {label} | nfev before / after | error before / after |\n|---|---|---|")
        ratios = {}
        for key, old_r, new_r in pairs:
            ratios[key] = {"nfev_ratio": old_r["nfev"] / new_r["nfev"],
                           "error_ratio": old_r["error"] / new_r["error"]}
            md.append(f"| {key} | {old_r['nfev']} / {new_r['nfev']} = "
                      f"{ratios[key]['nfev_ratio']:.2f} | {old_r['error']:.2e} / "
                      f"{new_r['error']:.2e} = {ratios[key]['error_ratio']:.2f} |")
        md.append("")
        return ratios

    # p=3: Cartesian variables with invariant projection (default) vs polar (before)
    metrics["p3"]["cartesian_vs_polar"] = same_run_table(
        "p = 3: polar variables and classical controller (previous default, before) vs "
        "Cartesian with projection and PI controller (default, after)", "rtol",
        [(f"rtol={rt:g}", find(rows3, {"rtol": rt, **prev}),
          find(rows3, {"rtol": rt})) for rt in (1e-4, 3e-5, 1e-5)])
    # p=1: exact alignment phase vs the previous default (exact_fmax=0), same switch_tol
    pairs = []
    for st, sl in ((1e-3, None), (1e-4, None), (1e-4, "chatter")):
        opts = {"switch_tol": st, **({"sliding": sl} if sl else {})}
        pairs.append((f"switch_tol={st:g}" + (f", {sl}" if sl else ""),
                      find(rows1, {**opts, "exact_fmax": 0.0}), find(rows1, opts)))
    metrics["p1"]["exact_phase_vs_without"] = same_run_table(
        "p = 1: exact alignment phase vs without it (before)", "switch_tol, sliding", pairs)
    metrics["p1"]["pi_vs_i_controller"] = same_run_table(
        "p = 1: classical controller (before) vs PI controller (default, after)", "switch_tol",
        [(f"switch_tol={st:g}", find(rows1, {"switch_tol": st, "controller": "i"}),
          find(rows1, {"switch_tol": st})) for st in (1e-3, 1e-4)])

    # cost scaling: per-evaluation time of the field (Cartesian, p=3), one BLAS thread
    base = field_cost(500, 100, 50)
    scal = {"base_ms": base * 1e3}
    md.append("### Cost scaling (time per field evaluation, relative to n=500, D=100, h=50: "
              f"{base * 1e3:.2f} ms)\n")
    md.append("| varied | value | time / base |\n|---|---|---|")
    for name, vals in (("n", (250, 1000, 2000)), ("D", (50, 200, 400)), ("h", (25, 100, 200))):
        for v in vals:
            kw = {"n": 500, "D": 100, "h": 50}
            kw[name] = v
            r = field_cost(**kw) / base
            scal[f"{name}={v}"] = r
            md.append(f"| {name} | {v} | {r:.2f} |")
    # evaluations needed vs n and h (p=3, rtol 1e-5): step counts depend on the dynamics
    md.append("\n| p=3, gradflow rtol 1e-5 | nfev |\n|---|---|")
    for n, h in ((250, 50), (1000, 50), (500, 25), (500, 100)):
        cfg = DATA.replace(n=n)
        d2 = make_subclass_data(cfg)
        mc = ModelConfig(width=h, p=3.0)
        s = simulate(d2, mc, InitConfig(eps=EPS), options={"rtol": 1e-5}, t_max=350.0,
                     save_at=[0.0, 350.0], progress=False)
        scal[f"nfev n={n} h={h}"] = s.nfev
        md.append(f"| n={n}, h={h} | {s.nfev} |")
    metrics["scaling"] = scal
    md.append("\nPer evaluation the cost is two GEMMs, O(n D h): it grows linearly in each "
              "of n, D and h once they are large enough to leave the fixed Python overhead.")

    cmd = "python benchmarks/bench_gradient_flow.py" + (" --quick" if args.quick else "")
    config = {"data": DATA.to_dict(), "width": 50, "eps": EPS, "init": "balanced",
              "loss": "exponential", "T": {"p3": 350, "p1": 150}, "quick": args.quick,
              "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS")}
    write_report("gradient_flow", cmd, config, metrics, targets, "\n".join(md))
    for t in targets:
        print(t)


if __name__ == "__main__":
    main()
