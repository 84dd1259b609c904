"""The p = 3 target of issue 3 across draws of the benchmark problem.

Issue 3 asks for <= 250 gradient evaluations at relative error <= 1e-5 of theta(T) on the
p = 3 benchmark configuration (D=100, K=10, K1=6, n=500, alpha=0.1, width 50, eps=1e-6,
balanced init, exponential loss, T = 350), and quotes scipy RK45 at "about 494 evaluations
at 1.3e-6" without its tolerances or its draw of the data and the initial state.
bench_gradient_flow.py measures one draw (data seed 0, init seed 0), where RK45 needs about
715 evaluations for 1.3e-6. This script repeats that measurement on several draws (data
seed = init seed = s), each against its own DOP853 reference (rtol 1e-11), to see how much
the cost depends on the draw:

- the default method (`gradflow`) at rtol 3e-4 .. 1e-5, and scipy RK45 at rtol 3e-5 .. 3e-7
  (atol = rtol * 1e-7, small enough for parameters of size eps = 1e-6);
- evaluations at error 1e-5 and 1.3e-6, log-log interpolated on each method's runs
  (`cost_at_error` of bench_gradient_flow.py, no extrapolation).

Usage: python benchmarks/p3_draws.py [--draws 16]   (about 4 s per draw on one core)
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from _report import write_report  # noqa: E402
from bench_gradient_flow import DATA, EPS, cost_at_error, rel_err  # noqa: E402

from gradflow.config import DataConfig, InitConfig, ModelConfig  # noqa: E402
from gradflow.data import make_subclass_data  # noqa: E402
from gradflow.dynamics import simulate  # noqa: E402
from gradflow.init import init_params  # noqa: E402

T = 350.0
REF = ("DOP853", {"rtol": 1e-11, "atol": 1e-22})
GRADFLOW_RTOLS = (3e-4, 1e-4, 5e-5, 3e-5, 1e-5)
RK45_RTOLS = (3e-5, 1e-5, 3e-6, 1e-6, 3e-7)
TARGET_NFEV, TARGET_ERR, ISSUE_RK45_ERR = 250, 1e-5, 1.3e-6


def one_draw(seed: int) -> dict:
    cfg = DataConfig(K=DATA.K, K1=DATA.K1, D=DATA.D, alpha=DATA.alpha, n=DATA.n, seed=seed)
    data = make_subclass_data(cfg)
    mc = ModelConfig(width=50, p=3.0)
    P0 = init_params(mc, InitConfig(eps=EPS, seed=seed), cfg.D)

    def go(solver, opts):
        return simulate(data, mc, P0, solver=solver, options=opts, t_max=T, save_at=[0.0, T],
                        progress=False)

    ref = go(*REF)
    out = {"seed": seed, "ref_nfev": ref.nfev, "loss_T": float(ref.loss[-1])}
    for name, solver, runs in (
            ("gradflow", "gradflow", [{"rtol": r} for r in GRADFLOW_RTOLS]),
            ("RK45", "RK45", [{"rtol": r, "atol": r * 1e-7} for r in RK45_RTOLS])):
        rows = []
        for opts in runs:
            s = go(solver, opts)
            rows.append({"options": opts, "nfev": s.nfev, "status": s.status,
                         "error": rel_err(s.theta[-1], ref.theta[-1])})
        out[name] = {"runs": rows, "nfev_at_1e-5": cost_at_error(rows, TARGET_ERR),
                     "nfev_at_1.3e-6": cost_at_error(rows, ISSUE_RK45_ERR)}
    return out


def _fmt(x):
    return "-" if not np.isfinite(x) else f"{x:.0f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, default=16, help="number of draws (seeds 0..N-1)")
    args = ap.parse_args(argv)
    if args.draws < 1:
        raise SystemExit("--draws must be >= 1")
    draws = []
    for s in range(args.draws):
        d = one_draw(s)
        draws.append(d)
        print(f"seed {s}: gradflow {_fmt(d['gradflow']['nfev_at_1e-5'])} at 1e-5, RK45 "
              f"{_fmt(d['RK45']['nfev_at_1e-5'])} at 1e-5 and "
              f"{_fmt(d['RK45']['nfev_at_1.3e-6'])} at 1.3e-6, loss(T) {d['loss_T']:.4f}",
              flush=True)

    def column(name, key):
        return np.array([d[name][key] for d in draws], dtype=float)

    g5, r5, r13 = (column("gradflow", "nfev_at_1e-5"), column("RK45", "nfev_at_1e-5"),
                   column("RK45", "nfev_at_1.3e-6"))
    ratio = r5 / g5
    md = ["Each draw: data seed = init seed = s, its own DOP853 reference (rtol 1e-11). "
          "Evaluations at the error, log-log interpolated on the method's runs "
          f"(gradflow rtol {', '.join(f'{r:g}' for r in GRADFLOW_RTOLS)}; RK45 rtol "
          f"{', '.join(f'{r:g}' for r in RK45_RTOLS)}, atol = rtol * 1e-7).", "",
          "| seed | loss at T | gradflow at 1e-5 | RK45 at 1e-5 | RK45 / gradflow | "
          "RK45 at 1.3e-6 |", "|---|---|---|---|---|---|"]
    for d, a, b, c, q in zip(draws, g5, r5, r13, ratio):
        md.append(f"| {d['seed']} | {d['loss_T']:.4f} | {_fmt(a)} | {_fmt(b)} | "
                  f"{q:.2f} | {_fmt(c)} |")

    def stats(x):
        x = x[np.isfinite(x)]
        return (f"{np.min(x):.0f} / {np.median(x):.0f} / {np.max(x):.0f}" if len(x)
                else "-")

    md.append(f"| min / median / max | | {stats(g5)} | {stats(r5)} | "
              f"{np.nanmin(ratio):.2f} / {np.nanmedian(ratio):.2f} / {np.nanmax(ratio):.2f} | "
              f"{stats(r13)} |")
    md += ["", f"The issue quotes RK45 at about 494 evaluations for error 1.3e-6; here RK45 "
           f"needs {stats(r13)} (min / median / max over {len(draws)} draws) at that error. "
           f"The target ({TARGET_NFEV} at 1e-5) is compared with the median draw."]
    high = [d for d in draws if d["loss_T"] > 1e-2]
    if high:  # the issue states the loss is below 1e-2 at T; say where that fails
        seeds = ", ".join(str(d["seed"]) for d in high)
        losses = ", ".join(f"{d['loss_T']:.3f}" for d in high)
        md += ["", f"{len(high)} of {len(draws)} draws end above loss 1e-2 at T (seeds {seeds}: "
               f"{losses}); the issue's statement that the loss is below 1e-2 at T holds for "
               "the others."]
    best = float(np.nanmedian(g5))
    targets = [{"metric": "p=3: gradflow nfev at error <= 1e-5, median over draws",
                "target": f"<= {TARGET_NFEV}", "measured": round(best, 1),
                "met": bool(best <= TARGET_NFEV)}]
    config = {"data": {**DATA.to_dict(), "seed": "0..N-1"}, "eps": EPS, "width": 50, "p": 3.0,
              "T": T, "reference": REF, "gradflow_rtols": GRADFLOW_RTOLS,
              "rk45_rtols": RK45_RTOLS, "draws": args.draws}
    metrics = {"draws": draws, "gradflow_nfev_at_1e-5": g5.tolist(),
               "rk45_nfev_at_1e-5": r5.tolist(), "rk45_nfev_at_1.3e-6": r13.tolist()}
    write_report("p3_draws", "python benchmarks/p3_draws.py", config, metrics, targets,
                 "\n".join(md))


if __name__ == "__main__":
    main()
