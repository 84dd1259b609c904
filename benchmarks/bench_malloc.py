"""Peak memory and time of batched GD with and without gradflow's fixed mmap threshold.

gradflow/_malloc.py holds glibc's mmap threshold at 128 KiB on import (docs/backend.md,
"Memory"). Without it the batched GD of sims/p_sweep.py's paper preset (7 nets, n = 1000,
D = 40, width 100) can grow the heap without bound; with it every multi-MB temporary is a
fresh mapping, which costs page faults. This script measures both effects on that
problem: each setting runs in its own subprocess (the threshold is per process), the two
alternate `--repeats` times, and the table gives every run's wall time and peak RSS.

Usage: python benchmarks/bench_malloc.py [--steps 400] [--repeats 3]   (~2 min)
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap

import numpy as np
from _report import ROOT, write_report

RUN = textwrap.dedent('''
    import resource, sys, time
    import gradflow
    from gradflow.backend import EnsembleMember, TrainConfig, train_ensemble
    from gradflow.config import DataConfig, InitConfig, ModelConfig
    data = DataConfig(K=10, K1=6, D=40, n=1000, alpha=0.05, sizes="equal", seed=0)
    members = [EnsembleMember(model=ModelConfig(width=100, p=p), init=InitConfig(eps=1e-4),
                              data=data) for p in (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)]
    t0 = time.perf_counter()
    train_ensemble(members, TrainConfig(optimizer="gd", lr=0.2, epochs=int(sys.argv[1]),
                   dtype="float64", device="cpu", n_snapshots=0, eval_every=0, rank_every=0,
                   progress=False), test=False)
    print(gradflow._malloc.MMAP_THRESHOLD_FIXED, time.perf_counter() - t0,
          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)
''')


def one(steps: int, keep: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    env.pop("GRADFLOW_KEEP_MALLOC", None)
    if keep:
        env["GRADFLOW_KEEP_MALLOC"] = "1"
    out = subprocess.run([sys.executable, "-c", RUN, str(steps)], capture_output=True,
                         text=True, env=env, timeout=1800, check=True).stdout.split()
    return {"fixed": out[0] == "True", "wall_s": float(out[1]), "peak_gb": float(out[2])}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    if args.steps < 1 or args.repeats < 1:
        raise SystemExit("--steps and --repeats must be >= 1")
    runs = []
    for i in range(args.repeats):
        for keep in (False, True):
            r = one(args.steps, keep)
            runs.append(r)
            print(f"repeat {i}: threshold fixed={r['fixed']}: {r['wall_s']:.1f} s, "
                  f"peak {r['peak_gb']:.2f} GB", flush=True)
    fix = [r for r in runs if r["fixed"]]
    raw = [r for r in runs if not r["fixed"]]
    md = [f"Batched GD, 7 nets (p = 1 .. 4), n = 1000, D = 40, width 100, float64, "
          f"{args.steps} steps, default torch threads; each run a fresh process, the two "
          "settings alternating.", "",
          "| setting | wall s (each run) | peak RSS GB (each run) |", "|---|---|---|"]
    for name, rs in (("threshold fixed (default)", fix), ("glibc dynamic (GRADFLOW_KEEP_MALLOC=1)",
                                                         raw)):
        walls = ", ".join(f"{r['wall_s']:.1f}" for r in rs)
        peaks = ", ".join(f"{r['peak_gb']:.2f}" for r in rs)
        md.append(f"| {name} | {walls} | {peaks} |")
    ratio = float(np.median([r["wall_s"] for r in fix]) / np.median([r["wall_s"] for r in raw]))
    peak_fix = max(r["peak_gb"] for r in fix)
    peak_raw = max(r["peak_gb"] for r in raw)
    md += ["", f"Median wall time, fixed / dynamic: {ratio:.2f}. Peak RSS: at most "
           f"{peak_fix:.2f} GB fixed, up to {peak_raw:.2f} GB dynamic (the dynamic heap's "
           "growth depends on the allocation order, so it varies between runs)."]
    targets = [{"metric": "peak RSS with the fixed threshold (GB)", "target": "<= 1",
                "measured": round(peak_fix, 3), "met": bool(peak_fix <= 1.0)},
               {"metric": "median wall, fixed / dynamic", "target": "information",
                "measured": round(ratio, 3), "met": None}]
    write_report("malloc", "python benchmarks/bench_malloc.py",
                 {"steps": args.steps, "repeats": args.repeats}, {"runs": runs}, targets,
                 "\n".join(md))


if __name__ == "__main__":
    main()
