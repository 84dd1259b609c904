"""ReLU (p = 1) from an unbalanced init: Filippov sliding against chattering.

Unbalanced networks run in Cartesian variables. Before sliding sets existed there,
sliding pairs chattered (``sliding='chatter'``, kept as an option): the same run with
both, against fine RK4 from the same initial state (dt 0.005; dt 0.01 agrees to ~4e-5).

    python benchmarks/p1_unbalanced.py
"""
from __future__ import annotations

import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # threaded BLAS: 20-40x slower here
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from _report import write_report  # noqa: E402

from gradflow.config import DataConfig, InitConfig, ModelConfig  # noqa: E402
from gradflow.data import make_subclass_data  # noqa: E402
from gradflow.dynamics import simulate  # noqa: E402
from gradflow.init import init_params  # noqa: E402

CONFIG = {"K": 10, "K1": 6, "D": 100, "n": 500, "alpha": 0.1, "width": 50, "eps": 1e-6,
          "init": "independent", "T": 150.0, "reference": "rk4 dt 0.005"}


def main() -> None:
    c = CONFIG
    data = make_subclass_data(DataConfig(K=c["K"], K1=c["K1"], D=c["D"], alpha=c["alpha"],
                                         n=c["n"], seed=0))
    mc = ModelConfig(width=c["width"], p=1.0)
    P = init_params(mc, InitConfig(eps=c["eps"], mode="independent", seed=0), c["D"])
    T = c["T"]
    ref = simulate(data, mc, P, solver="rk4", options={"dt": 0.005}, t_max=T, save_at=[T],
                   progress=False).theta[-1]
    rows, metrics = [], {}
    for sliding in ("filippov", "chatter"):
        for tol in (1e-3, 1e-4, 1e-5):
            t0 = time.perf_counter()
            s = simulate(data, mc, P, t_max=T, save_at=[T], progress=False,
                         options={"sliding": sliding, "switch_tol": tol})
            err = float(np.linalg.norm(s.theta[-1] - ref) / np.linalg.norm(ref))
            metrics[f"{sliding} switch_tol {tol:g}"] = {"nfev": s.nfev, "error": err,
                                                       "wall_s": time.perf_counter() - t0}
            rows.append(f"| {sliding} | {tol:g} | {s.nfev} | {err:.2e} |")
            print(rows[-1], flush=True)
    md = ("Relative error of theta(T) against RK4 dt 0.005, same initial state.\n\n"
          "| sliding | switch_tol | nfev | rel. error |\n|---|---|---|---|\n" + "\n".join(rows))
    write_report("p1_unbalanced", "python benchmarks/p1_unbalanced.py", CONFIG, metrics, [],
                 md)


if __name__ == "__main__":
    main()
