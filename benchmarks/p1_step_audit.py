"""Per-step audit of the ReLU (p = 1) switching-error estimate.

Every accepted DP5 step of a run on the small test configuration (K=4, K1=2, D=16,
alpha=0.2, n=60, width 8, eps=1e-5, T=60) is redone by fine RK4 (dt = h / 4000) from
the same step start, and the step's actual error (each neuron's relative error times its
significance, the solver's own norm) is compared with its switching-error estimate
(``_sw``, floored at rtol 1e-6 because it leaves out the DP5 error of the smooth part).
A step counts as under-estimated when its actual error is more than 3x that.
Exact alignment-phase macro steps are skipped: they carry no switching estimate and
RK4 at h / 4000 across their ~50 switches per neuron is itself ~1e-4 off.

    python benchmarks/p1_step_audit.py        (about 3 minutes)
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # threaded BLAS: 20-40x slower here
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from _report import target, write_report  # noqa: E402

from gradflow.config import DataConfig, InitConfig, ModelConfig  # noqa: E402
from gradflow.data import make_subclass_data  # noqa: E402
from gradflow.dynamics import Stop, simulate  # noqa: E402
from gradflow.dynamics.adaptive import GradFlowSolver  # noqa: E402
from gradflow.dynamics.fields import FlowProblem  # noqa: E402
from gradflow.init import init_params  # noqa: E402

CONFIG = {"K": 4, "K1": 2, "D": 16, "alpha": 0.2, "n": 60, "width": 8, "eps": 1e-5,
          "seed": 1, "T": 60.0, "rk4_steps_per_step": 4000, "factor": 3.0, "floor": 1e-6}
SETTINGS = {"default": {}, "exact_fmax=0": {"exact_fmax": 0.0}}


def audit(X, y, mc, P, options: dict) -> dict:
    c = CONFIG
    sol = GradFlowSolver(FlowProblem(X, y, mc), P, 0.0, c["T"], **options)
    steps, bad = 0, []
    while sol.t < c["T"]:
        sol.step()
        if sol._exact_old is not None:  # an exact alignment-phase macro step
            continue
        steps += 1
        h = sol.t - sol.t_old
        ref = simulate(X=X, y=y, model=mc, params=sol.rep.unpack(sol.y_old), solver="rk4",
                       options={"dt": h / c["rk4_steps_per_step"]}, stop=Stop(t_max=h),
                       save_at=[h], progress=False).params_at(0)
        a = sol.params()
        size = np.sqrt(np.sum(ref.W**2, axis=1) + ref.v**2)
        err_j = np.sqrt(np.sum((a.W - ref.W) ** 2, axis=1) + (a.v - ref.v) ** 2) / size
        actual = float(np.max(err_j * size / size.max()))
        estimate = max(sol._sw, c["floor"])
        if actual > c["factor"] * estimate:
            bad.append({"t": sol.t, "h": h, "actual": actual, "estimate": sol._sw})
    worst = max(bad, key=lambda b: b["actual"], default=None)
    return {"steps": steps, "nfev": sol.nfev, "under_estimated": len(bad), "worst": worst,
            "steps_under_estimated": bad}


def main() -> None:
    c = CONFIG
    data = make_subclass_data(DataConfig(K=c["K"], K1=c["K1"], D=c["D"], alpha=c["alpha"],
                                         n=c["n"], seed=c["seed"]))
    mc = ModelConfig(width=c["width"], p=1.0)
    P = init_params(mc, InitConfig(eps=c["eps"], seed=c["seed"]), c["D"])
    X, y = np.asarray(data.X), np.asarray(data.y)
    metrics, targets = {}, []
    md = ["Steps whose actual error is more than 3x their switching-error estimate (floored "
          "at 1e-6), against RK4 dt h/4000 from each step's start.\n",
          "| setting | DP5 steps | nfev | under-estimated steps | worst: actual / estimate |",
          "|---|---|---|---|---|"]
    for name, opts in SETTINGS.items():
        m = audit(X, y, mc, P, opts)
        metrics[name] = m
        w = m["worst"]
        worst = "-" if w is None else (f"{w['actual']:.1e} / {w['estimate']:.1e} "
                                       f"(t = {w['t']:.2f})")
        md.append(f"| {name} | {m['steps']} | {m['nfev']} | {m['under_estimated']} | {worst} |")
        print(md[-1], flush=True)
        targets.append(target(f"{name}: steps more than 3x above their estimate", "0",
                              m["under_estimated"], m["under_estimated"] == 0))
    write_report("p1_step_audit", "python benchmarks/p1_step_audit.py", CONFIG, metrics,
                 targets, "\n".join(md))


if __name__ == "__main__":
    main()
