"""Where the p=3 benchmark's gradient evaluations go, and what per-neuron steps could save.

Issue 3 asks for <= 250 gradient evaluations at relative error <= 1e-5 on the p=3
benchmark configuration (that of bench_gradient_flow.py, T = 350). This script measures,
in one run and from the same initial state:

1. Phase breakdown of the shared-step `gradflow` method: evaluations spent before max|f| reaches 1e-5
   (loss weights constant to 1e-5: the neurons are decoupled), before it reaches 0.1
   (end of the alignment phase) and in total.
2. Shared steps: the error norm is the maximum over neurons. Replacing it by the
   k-th largest neuron error gives the evaluations a shared-step method would need if the
   k-1 worst neurons were integrated elsewhere for free (an optimistic bound for any
   two-level multirate scheme).
3. Oracle per-neuron integration: every neuron integrated alone with its own adaptive DP5
   steps (same error norm and controller as `gradflow`), given the reference loss
   weights omega(t) (a cubic spline of the reference f(t), saved every 0.05). Its cost
   sum_j stages_j / h in gradient-evaluation units is what a perfect multirate method with
   free coupling would pay; its error is open loop (no feedback through f).
4. Where the error is made: the default at rtol 1e-4 up to t1 and at rtol 1e-9 after it
   (one continuous run; rtol switched at the first step end >= t1), and the reverse, so
   the final error can be attributed to the part of the run that was loose.
5. Goal-oriented weights, oracle: the error target is on theta(T), and a relative error
   made in neuron j carries over to theta(T) roughly in proportion to neuron j's final
   size, so the per-neuron error is weighted by ||theta_j(T)|| / max_k ||theta_k(T)|| taken
   from the reference (unknown to a real method). What this saves bounds any a-priori
   weighting by predicted significance.
6. The oracle at equal error: its cost-error curve and the shared step's over rtol
   1e-4 .. 2e-6 in the default variables, each interpolated at error 1e-5 (the oracle's
   error is ~20x the shared step's at the same rtol, so equal rtol is no fair comparison).

The settings are the polar variables with the classical controller (the default for p=3
before benchmarks/bench_error_norm.py) and the current default (Cartesian variables with
the invariant projection and the PI controller); the oracle uses each setting's variables,
norm and controller.

Usage: python benchmarks/p3_cost_analysis.py   (a few minutes on one core)
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from _report import write_report  # noqa: E402
from bench_gradient_flow import DATA, EPS, cost_at_error, rel_err, theta_of  # noqa: E402
from scipy.interpolate import CubicSpline  # noqa: E402

from gradflow.config import InitConfig, ModelConfig  # noqa: E402
from gradflow.data import make_subclass_data  # noqa: E402
from gradflow.dynamics import simulate  # noqa: E402
from gradflow.dynamics.adaptive import (  # noqa: E402
    GradFlowSolver,
    accepted_step_factor,
    rejected_step_factor,
)
from gradflow.dynamics.fields import FlowProblem, PolarRep, project_invariants  # noqa: E402
from gradflow.dynamics.tableaus import DP5  # noqa: E402
from gradflow.init import init_params  # noqa: E402
from gradflow.model import forward, gradient_from_features  # noqa: E402

T = 350.0
# rtols of the oracle-vs-shared comparison at equal error (brackets 1e-5 for both)
MATCH_RTOLS = (1e-4, 3e-5, 1e-5, 5e-6, 2e-6)
# the polar variables with the classical controller (the default for p=3 until
# bench_error_norm.py), with and without the direction weight, and the current default
# (Cartesian variables, projection, PI controller) at two tolerances around error 1e-5
SETTINGS = ({"rtol": 1e-5, "direction_weight": 1.0, "variables": "polar", "controller": "i"},
            {"rtol": 3e-5, "direction_weight": 0.1, "variables": "polar", "controller": "i"},
            {"rtol": 1e-4}, {"rtol": 3e-5})


def label(opts):
    if opts.get("variables") == "polar":
        return f"polar, rtol {opts['rtol']:g}, w {opts['direction_weight']:g}"
    return f"default (Cartesian), rtol {opts['rtol']:g}"


class WeightedSolver(GradFlowSolver):
    """gradflow with each neuron's relative error multiplied by a fixed weight."""

    weights = None

    def _error(self, e, y_new):
        return float(np.max(self.rep.neuron_error(e, self.y, y_new) * self.weights)) / self.rtol


class KthSolver(GradFlowSolver):
    """gradflow with the error norm = k-th largest neuron error (k=1: the usual maximum)."""

    kth = 1

    def _error(self, e, y_new):
        kw = {"direction_weight": self.direction_weight} if self.variables == "polar" else {}
        err = self.rep.neuron_error(e, self.y, y_new, **kw)
        return float(np.sort(err)[-self.kth]) / self.rtol


def shared_run(pb, P0, opts, kth=1):
    sol = KthSolver(pb, P0, 0.0, T, **opts)
    sol.kth = kth
    marks = []
    while sol.t < T:
        sol.step()
        marks.append((sol.t, sol.nfev, float(np.max(np.abs(sol.f)))))
    return sol, marks


def switched_run(pb, P0, t1, before, after):
    """The default method with rtol `before` until the first step end >= t1, then `after`."""
    sol = GradFlowSolver(pb, P0, 0.0, T, rtol=before)
    n1 = None
    while sol.t < T:
        if n1 is None and sol.t >= t1:
            sol.rtol, n1 = after, sol.nfev
        sol.step()
    return sol, (sol.nfev if n1 is None else n1)


def _alone(field, norm, finalize, y, t_end, rtol, controller):
    """One neuron with its own DP5 steps; returns (y(t_end), stages, accepted, rejected).

    Same tableau and step-size controllers ('i' or 'pi') as GradFlowSolver."""
    A, c, b_err = DP5.A, DP5.c, DP5.b_err
    t, h, err_old, rejected_last = 0.0, 0.1, 1e-4, False
    k = field(t, y)
    stages, n_ok, rejected = 1, 0, 0
    while t < t_end:
        h = min(h, t_end - t)
        K = [k]
        for i in range(1, 7):
            yi = y + h * sum(A[i, m] * K[m] for m in range(i) if A[i, m] != 0.0)
            K.append(field(t + c[i] * h, yi))
            stages += 1
        err = norm(h * sum(cc * kk for cc, kk in zip(b_err, K) if cc != 0.0), y, yi) / rtol
        if err > 1.0:
            h *= rejected_step_factor(err)
            rejected, rejected_last = rejected + 1, True
            continue
        y, k, t = finalize(yi), K[-1], t + h
        n_ok += 1
        fac, err_old = accepted_step_factor(err, controller, err_old, rejected_last)
        h, rejected_last = h * fac, False
    return y, stages, n_ok, rejected


def per_neuron(pb, P0, omega, opts, t_end):
    """Each neuron alone with its own DP5 steps, loss weights omega(t) given.

    Polar: (u_j, rho_j) with the direction weight and the classical controller (the polar
    default when this was written). Cartesian (the current default): (w_j, v_j) with the
    relative norm, the PI controller and the projection onto v_j^2 - ||w_j||^2 = c_j(0);
    its field is model.gradient_from_features with dL/df = -omega(t) handed in.
    """
    X, rtol, h_width = pb.X, opts["rtol"], P0.W.shape[0]
    if opts.get("variables") == "polar":
        rep = PolarRep(pb, P0)
        U0, rho0 = rep.split(rep.pack(P0))
        p, dw = rep.p, opts["direction_weight"]
        starts = [np.concatenate([U0[j], [rho0[j]]]) for j in range(h_width)]

        def make(j):
            sj = rep.s[j]

            def field(t, y):
                u = y[:-1] / np.linalg.norm(y[:-1])
                a = np.maximum(X @ u, 0.0)
                w = omega(t)
                g = sj * p * (X.T @ (w * a ** (p - 1)))
                return np.concatenate([g - (g @ u) * u, [sj * (w @ a**p)]])

            def norm(e, y0, y1):
                return float(np.sqrt(dw**2 * (e[:-1] @ e[:-1]) + e[-1] ** 2))

            def finalize(y):
                return np.concatenate([y[:-1] / np.linalg.norm(y[:-1]), y[-1:]])

            return field, norm, finalize, "i"

        def to_theta(finals):
            r = np.exp([y[-1] for y in finals])
            return np.concatenate([(np.array([y[:-1] for y in finals]) * r[:, None]).ravel(),
                                   rep.s * r])

    else:
        c0 = P0.invariant()
        starts = [np.concatenate([P0.W[j], [P0.v[j]]]) for j in range(h_width)]

        def make(j):
            def field(t, y):
                W, v = y[None, :-1], y[-1:]
                phi, dphi = pb.act.both(X @ W.T)
                _, _, _, gW, gv = gradient_from_features(
                    X, W, v, None, phi, dphi, pb.q, pb.xscale, lambda f: (0.0, -omega(t)))
                return -np.concatenate([gW[0], gv])

            def norm(e, y0, y1):
                return float(np.linalg.norm(e) / max(np.linalg.norm(y0), np.linalg.norm(y1)))

            def finalize(y):
                W, v = project_invariants(y[None, :-1], y[-1:], c0[j:j + 1])
                return np.concatenate([W[0], v])

            return field, norm, finalize, "pi"

        def to_theta(finals):
            return np.concatenate([np.array([y[:-1] for y in finals]).ravel(),
                                   [y[-1] for y in finals]])

    stages, steps, rejected, finals = 0, [], 0, []
    for j in range(h_width):
        field, norm, finalize, controller = make(j)
        y, st, n_ok, rj = _alone(field, norm, finalize, starts[j], t_end, rtol, controller)
        stages, rejected = stages + st, rejected + rj
        steps.append(n_ok)
        finals.append(y)
    return {"evals": stages / h_width, "mean_steps": float(np.mean(steps)),
            "max_steps": int(np.max(steps)), "rejected_per_neuron": rejected / h_width,
            "theta": to_theta(finals)}


def main():
    data = make_subclass_data(DATA)
    mc = ModelConfig(width=50, p=3.0)
    P0 = init_params(mc, InitConfig(eps=EPS), DATA.D)
    pb = FlowProblem(data.X, data.y, mc)
    ts = np.linspace(0.0, T, 7001)
    ref = simulate(data, mc, P0, solver="DOP853", options={"rtol": 1e-11, "atol": 1e-22},
                   t_max=T, save_at=ts, progress=False)
    F = np.array([forward(ref.params_at(i), data.X, mc) for i in range(len(ts))])
    theta_ref = ref.theta[-1]
    fspline = CubicSpline(ts, F)
    yv, n = data.y, len(data.y)

    def omega(t):  # exponential loss: -dL/df_i = y_i exp(-y_i f_i) / n
        return yv * np.exp(-yv * fspline(t)) / n

    metrics, md = {"settings": []}, []
    md.append("| setting | gradflow (shared step): nfev to max\\|f\\| = 1e-5 / 0.1 / T "
              "| error | per-neuron oracle: evals to t(1e-5) / T | oracle open-loop error |"
              "\n|---|---|---|---|---|")
    for opts in SETTINGS:
        sol, marks = shared_run(pb, P0, opts)
        err = rel_err(theta_of(sol.params()), theta_ref)
        t5, n5 = next((t, nf) for t, nf, fm in marks if fm >= 1e-5)
        n1 = next(nf for t, nf, fm in marks if fm >= 0.1)
        kth = {k: shared_run(pb, P0, opts, kth=k)[0].nfev for k in (5, 10, 25)}
        part = per_neuron(pb, P0, omega, opts, t5)
        full = per_neuron(pb, P0, omega, opts, T)
        full_err = rel_err(full.pop("theta"), theta_ref)
        part.pop("theta")
        row = {"options": opts, "nfev": sol.nfev, "error": err, "t_f_1e-5": t5,
               "nfev_to_f_1e-5": n5, "nfev_to_f_0.1": n1, "kth_largest_nfev": kth,
               "oracle_to_f_1e-5": part, "oracle_full": {**full, "open_loop_error": full_err}}
        metrics["settings"].append(row)
        md.append(f"| {label(opts)} | {n5} (t={t5:.0f}) / {n1} "
                  f"/ {sol.nfev} | {err:.2e} | {part['evals']:.0f} / {full['evals']:.0f} "
                  f"(mean {full['mean_steps']:.1f} steps per neuron, max {full['max_steps']}) "
                  f"| {full_err:.2e} |")
    md.append("\n| setting | shared step, error norm = k-th largest neuron error:"
              " nfev for k = 1 / 5 / 10 / 25 |\n|---|---|")
    for row in metrics["settings"]:
        o, kth = row["options"], row["kth_largest_nfev"]
        md.append(f"| {label(o)} | {row['nfev']} / {kth[5]} / "
                  f"{kth[10]} / {kth[25]} |")
    s0, s1, c4, c3 = metrics["settings"]
    md.append(
        f"\nReading: the fitting phase (max|f| > 0.1) alone costs the shared-step method "
        f"{s0['nfev'] - s0['nfev_to_f_0.1']} / {s1['nfev'] - s1['nfev_to_f_0.1']} / "
        f"{c4['nfev'] - c4['nfev_to_f_0.1']} / {c3['nfev'] - c3['nfev_to_f_0.1']} evaluations "
        f"(rows in order); with direction_weight 0.1 that leaves "
        f"{250 - (s1['nfev'] - s1['nfev_to_f_0.1'])} for the whole alignment phase, of which "
        f"the decoupled part alone (max|f| < 1e-5) costs even the oracle per-neuron "
        f"integrator {s1['oracle_to_f_1e-5']['evals']:.0f}. So per-neuron steps in the "
        f"decoupled phase only cannot reach 250. A per-neuron integrator over the whole run, "
        f"handed the exact loss weights for free, needs {s0['oracle_full']['evals']:.0f} "
        f"evaluations in the polar variables at the strict norm (open-loop error "
        f"{s0['oracle_full']['open_loop_error']:.1e}), "
        f"{c4['oracle_full']['evals']:.0f} / {c3['oracle_full']['evals']:.0f} in the default "
        f"variables (open-loop errors {c4['oracle_full']['open_loop_error']:.1e} / "
        f"{c3['oracle_full']['open_loop_error']:.1e}), and "
        f"{s1['oracle_full']['evals']:.0f} with direction_weight 0.1, whose open-loop error "
        f"({s1['oracle_full']['open_loop_error']:.1e}) says nothing about the closed loop. "
        "A multirate method pays these per-neuron costs plus its coupling, so it could "
        "meet the target only where the oracle is well below 250 at error 1e-5; none "
        "exists in gradflow (docs/dynamics.md).")
    loose, tight = 1e-4, 1e-9
    md.append(f"\nWhere the error is made (default, rtol {loose:g} on one part and {tight:g} on "
              f"the rest; the whole run at {loose:g}: error {c4['error']:.1e}):\n\n"
              f"| t1 | [0, t1] loose: evaluations in it, error at T | [0, t1] tight, rest "
              "loose: error at T |\n|---|---|---|")
    metrics["error_split"] = []
    for t1 in (2.0, 5.0, 10.0, 20.0, 40.0, 100.0, 200.0):
        sol_a, n_a = switched_run(pb, P0, t1, loose, tight)
        sol_b, _ = switched_run(pb, P0, t1, tight, loose)
        e_a = rel_err(theta_of(sol_a.params()), theta_ref)
        e_b = rel_err(theta_of(sol_b.params()), theta_ref)
        metrics["error_split"].append({"t1": t1, "loose_first_nfev": n_a,
                                       "loose_first_error": e_a, "tight_first_error": e_b})
        md.append(f"| {t1:g} | {n_a}, {e_a:.1e} | {e_b:.1e} |")
    PT = ref.params_at(len(ts) - 1)
    size_T = np.sqrt(np.sum(PT.W**2, axis=1) + PT.v**2)
    weights = size_T / size_T.max()
    rows = []
    for rtol in (1e-4, 3e-5, 1e-5):
        sol = WeightedSolver(pb, P0, 0.0, T, rtol=rtol)
        sol.weights = weights
        while sol.t < T:
            sol.step()
        rows.append({"rtol": rtol, "nfev": sol.nfev,
                     "error": rel_err(theta_of(sol.params()), theta_ref)})
    plain = [{"nfev": s["nfev"], "error": s["error"]} for s in (c4, c3)]
    metrics["oracle_weights"] = {"final_size_quantiles": np.quantile(weights, [0.25, 0.5, 0.75]),
                                 "rows": rows, "nfev_at_1e-5": cost_at_error(rows, 1e-5),
                                 "default_nfev_at_1e-5": cost_at_error(plain, 1e-5)}
    ow = metrics["oracle_weights"]
    q = ow["final_size_quantiles"]
    md.append(f"\nGoal-oriented weights, oracle (neuron j's error times its final size "
              f"relative to the largest, from the reference; quartiles of those weights "
              f"{q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f}): "
              + ", ".join(f"rtol {r['rtol']:g}: {r['nfev']} at {r['error']:.1e}" for r in rows)
              + f"; nfev at 1e-5 {ow['nfev_at_1e-5']:.0f}, against "
              f"{ow['default_nfev_at_1e-5']:.0f} for the unweighted default (rtol 1e-4 and "
              "3e-5 rows above). Most neurons end large, so knowing which ones matter saves "
              "little.")
    metrics["oracle_weights"]["final_size_quantiles"] = [float(x) for x in q]

    # The per-neuron oracle at equal error: its open-loop error at a given rtol is ~20x the
    # shared step's, so compare the two cost-error curves at error 1e-5 (default variables).
    match = {"oracle": [], "shared": []}
    # the default's rows above (rtol 1e-4, 3e-5) already hold both runs: reuse them
    done = {r["options"]["rtol"]: r for r in metrics["settings"] if set(r["options"]) == {"rtol"}}
    for rtol in MATCH_RTOLS:
        if rtol in done:
            row = done[rtol]
            oracle = (row["oracle_full"]["evals"], row["oracle_full"]["open_loop_error"])
            shared = (row["nfev"], row["error"])
        else:
            full = per_neuron(pb, P0, omega, {"rtol": rtol}, T)
            oracle = (full["evals"], rel_err(full["theta"], theta_ref))
            sol, _ = shared_run(pb, P0, {"rtol": rtol})
            shared = (sol.nfev, rel_err(theta_of(sol.params()), theta_ref))
        match["oracle"].append({"rtol": rtol, "nfev": oracle[0], "error": oracle[1]})
        match["shared"].append({"rtol": rtol, "nfev": shared[0], "error": shared[1]})
    for key in ("oracle", "shared"):
        match[f"{key}_nfev_at_1e-5"] = cost_at_error(match[key], 1e-5)
    metrics["oracle_matched_error"] = match
    md.append("\nThe per-neuron oracle at equal error (default variables, open-loop error for "
              "the oracle):\n\n| rtol | oracle: evaluations, error | shared step: nfev, "
              "error |\n|---|---|---|")
    for o, s_ in zip(match["oracle"], match["shared"]):
        md.append(f"| {o['rtol']:g} | {o['nfev']:.0f}, {o['error']:.1e} | {s_['nfev']}, "
                  f"{s_['error']:.1e} |")
    md.append(f"\nAt error 1e-5 (interpolated): oracle {match['oracle_nfev_at_1e-5']:.0f}, "
              f"shared step {match['shared_nfev_at_1e-5']:.0f} evaluations. A multirate "
              "method pays at least about the oracle's cost plus its coupling, unless feedback "
              "through f makes its closed-loop error much smaller than the oracle's open-loop "
              "one.")
    write_report("p3_cost_analysis", "python benchmarks/p3_cost_analysis.py",
                 {"data": DATA.to_dict(), "width": 50, "eps": EPS, "T": T,
                  "settings": list(SETTINGS), "oracle_spline_dt": 0.05}, metrics, [],
                 "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
