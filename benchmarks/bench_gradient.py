"""Cost of one numpy gradient evaluation against the two bare GEMMs it contains.

The gradient of the two-layer loss needs Z = X W^T and grad_W = A^T X; all else
is elementwise. Target: gradient <= 1.5x the two GEMMs at the two larger sizes.

    python benchmarks/bench_gradient.py [--quick]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from _report import target, write_report

from gradflow import ModelConfig, TwoLayerParams, loss_and_grad

SIZES = [(500, 100, 50), (5000, 1000, 500), (20000, 1000, 2000)]


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, BLAS threads)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_size(n: int, D: int, h: int, p: float, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, D)) / np.sqrt(D)
    y = np.sign(rng.standard_normal(n))
    W = rng.standard_normal((h, D)) / np.sqrt(D)
    v = rng.standard_normal(h) / np.sqrt(h)
    params, cfg = TwoLayerParams(W, v), ModelConfig(width=h, p=p)
    A = rng.standard_normal((n, h))

    def gemms():
        X @ W.T
        A.T @ X

    # Interleave the two measurements so machine noise hits both alike.
    t_grad, t_gemm = [], []
    for _ in range(3):
        t_grad.append(best_time(lambda: loss_and_grad(params, X, y, cfg), repeats))
        t_gemm.append(best_time(gemms, repeats))
    tg, te = min(t_grad), min(t_gemm)
    return {"n": n, "D": D, "h": h, "p": p, "grad_s": tg, "gemms_s": te, "ratio": tg / te}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the largest size")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    sizes = SIZES[:2] if args.quick else SIZES
    rows = []
    for n, D, h in sizes:
        for p in (1.0, 3.0):
            try:
                r = bench_size(n, D, h, p, args.repeats if n < 20000 else 2)
            except MemoryError:
                r = {"n": n, "D": D, "h": h, "p": p, "skipped": "out of memory"}
            rows.append(r)
            print(r, flush=True)
    targets = [
        target(f"grad / GEMMs, (n,D,h)=({r['n']},{r['D']},{r['h']}), p={r['p']:g}", "<= 1.5",
               round(r["ratio"], 3), r["ratio"] <= 1.5)
        for r in rows if "ratio" in r and r["n"] >= 5000
    ]
    table = "| n | D | h | p | gradient (ms) | two GEMMs (ms) | ratio |\n|---|---|---|---|---|---|---|\n"
    table += "\n".join(
        f"| {r['n']} | {r['D']} | {r['h']} | {r['p']:g} | {1e3 * r['grad_s']:.2f} | "
        f"{1e3 * r['gemms_s']:.2f} | {r['ratio']:.2f} |" for r in rows if "ratio" in r)
    cmd = "python benchmarks/bench_gradient.py" + (" --quick" if args.quick else "")
    write_report("bench_gradient", cmd, {"sizes": sizes, "repeats": args.repeats},
                 {"rows": rows}, targets,
                 "One float64 loss-and-gradient evaluation (exponential loss, pReLU) against "
                 "the two bare GEMMs it contains (X W^T and A^T X), best of repeats, "
                 "interleaved.\n\n" + table)


if __name__ == "__main__":
    main()
