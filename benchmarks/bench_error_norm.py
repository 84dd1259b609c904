"""Which variables and error norm the default `gradflow` method should use for p > 1.

Until this benchmark the default integrated balanced pReLU neurons of every p in polar
variables with the classical step-size controller; it now uses polar variables for ReLU
only (exact alignment phase, Filippov sliding), Cartesian variables with invariant
projection for p > 1, and the PI controller.

For several activation powers and initial draws of the benchmark configuration
(bench_gradient_flow.py: D=100, K=10, K1=6, n=500, alpha=0.1, h=50, eps=1e-6, T=350),
every candidate runs at rtol 3e-4 ... 1e-6 (half decades) from the same initial state and is
compared with a DOP853 reference (rtol 1e-11) from the same run. Reported: the
evaluations each candidate needs for relative error 1e-5 and 1e-4 of theta(T) (log-log
interpolation on its cost-error frontier), the ratio to the previous (polar) default,
and the error at rtol 3e-5 (whether rtol keeps its meaning). At p = 2 the errors fall
only slowly with rtol (2e-5 .. 3e-5 at rtol 1e-6), so only the 1e-4 column
exists there; at
p > 2 the rtol range (3e-4 .. 1e-6) mostly stays below 1e-4 ("-": not bracketed).

Candidates: polar variables with direction_weight 1 and 0.1, and Cartesian variables
with the invariants projected back after each step, with the classical step-size
controller ('i') and, the new default, the PI controller (the projection moves the state by
O(rtol) and did not change the evaluation counts of the benchmark run). To first order a Cartesian neuron error ||e_j|| / ||theta_j|| of a balanced neuron is
sqrt(e_u^2 / 2 + e_rho^2), a polar error with direction weight 1/sqrt(2).

Usage: python benchmarks/bench_error_norm.py [--quick]   (about 10 minutes; --quick: p=3 only)
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from _report import target, write_report  # noqa: E402
from bench_gradient_flow import DATA, EPS, cost_at_error, rel_err, run  # noqa: E402

from gradflow.config import InitConfig, ModelConfig  # noqa: E402
from gradflow.data import make_subclass_data  # noqa: E402
from gradflow.init import init_params  # noqa: E402

T = 350.0
RTOLS = (3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)
CANDIDATES = {"polar, w=1 (previous default)": {"variables": "polar", "controller": "i"},
              "polar, w=0.1": {"variables": "polar", "direction_weight": 0.1, "controller": "i"},
              "cartesian, projected": {"variables": "cartesian", "project": True,
                                       "controller": "i"},
              "cartesian, projected, PI (default)": {"variables": "cartesian", "project": True,
                                                     "controller": "pi"}}
LEVELS = (1e-5, 1e-4)
CASES = ((3.0, 0), (3.0, 7), (4.0, 0), (2.5, 0), (2.0, 0))


def run_case(data, p, seed):
    mc = ModelConfig(width=50, p=p)
    P0 = init_params(mc, InitConfig(eps=EPS, seed=seed), DATA.D)

    def go(solver, opts):
        return run(data, mc, P0, T, solver, opts)[0]

    ref = go("DOP853", {"rtol": 1e-11, "atol": 1e-22}).theta[-1]
    out = {}
    for name, opts in CANDIDATES.items():
        rows = []
        for rt in RTOLS:
            s = go("gradflow", {**opts, "rtol": rt})
            rows.append({"rtol": rt, "nfev": s.nfev, "error": rel_err(s.theta[-1], ref)})
        out[name] = {"rows": rows, "error_at_rtol_3e-5": rows[RTOLS.index(3e-5)]["error"],
                     **{f"nfev_at_{lv:g}": cost_at_error(rows, lv) for lv in LEVELS}}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="p=3, seed 0 only")
    args = ap.parse_args(argv)
    data = make_subclass_data(DATA)
    cases = CASES[:1] if args.quick else CASES
    metrics, md = {}, []
    names = list(CANDIDATES)
    md.append("Evaluations for relative error 1e-5 / 1e-4 of theta(T), ratio to the previous "
              "default in brackets, error at rtol 3e-5 after the semicolon:\n")
    md.append("| p, init seed | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    ratios = {lv: [] for lv in LEVELS}
    for p, seed in cases:
        res = run_case(data, p, seed)
        metrics[f"p={p:g}, seed={seed}"] = res
        cells = []
        for k in names:
            parts = []
            for lv in LEVELS:
                n, n0 = res[k][f"nfev_at_{lv:g}"], res[names[0]][f"nfev_at_{lv:g}"]
                if np.isnan(n):
                    parts.append("-")
                else:
                    parts.append(f"{n:.0f}" + ("" if np.isnan(n0) else f" ({n / n0:.2f})"))
                if k == names[-1] and np.isfinite(n / n0):
                    ratios[lv].append(n / n0)
            cells.append(" / ".join(parts) + f"; {res[k]['error_at_rtol_3e-5']:.1e}")
        md.append(f"| {p:g}, {seed} | " + " | ".join(cells) + " |")
        print(md[-1], flush=True)
    targets = []
    for lv in LEVELS:
        r = ratios[lv]
        if not r:  # e.g. --quick: no case brackets this error level
            md.append(f"\nError {lv:g}: no case brackets it with the rtol range.")
            continue
        md.append(f"\nDefault / previous default at error {lv:g}: geometric mean "
                  f"{np.exp(np.mean(np.log(r))):.2f}, worst {max(r):.2f} ({len(r)} cases).")
        targets.append(target(f"default / previous default evaluations at error {lv:g}, worst",
                              "<= 1", round(max(r), 2), max(r) <= 1))
    cmd = "python benchmarks/bench_error_norm.py" + (" --quick" if args.quick else "")
    config = {"data": DATA.to_dict(), "width": 50, "eps": EPS, "T": T, "rtols": RTOLS,
              "levels": LEVELS,
              "cases": cases, "candidates": CANDIDATES}
    write_report("error_norm", cmd, config, metrics, targets, "\n".join(md))


if __name__ == "__main__":
    main()
