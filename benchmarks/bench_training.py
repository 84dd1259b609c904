"""Benchmark the torch backend's training loop and batched ensembles.

Measured in one run, each against its baseline in the same process:

1. CPU steps/s, width 2000, D=1000, batch 100 (float32, SGD, exponential loss):
   ``gradflow.backend.train`` vs a plain torch loop over the same ``TwoLayerNet``
   (permute, slice, forward, loss, backward, step: what the reference code does).
   Target: no slower (ratio >= ~1 within noise).
2. Ensemble speed-up, R=8 two-layer nets, width 50, D=100, batch 100:
   ``train_ensemble`` vs 8 sequential ``train`` runs. Target >= 3x on CPU.
   Also the large size (width 2000, D=1000), for information.
3. GPU (``--paper``, needs CUDA): the paper-scale synthetic experiment, all 150
   trainings batched, with a sequential baseline of a few runs extrapolated.
   Target: < 10 min on one H100. Without a GPU the rows say "not measured".

Timings take the best of ``--repeats`` interleaved repetitions (a shared
machine is noisy; the minimum is the least disturbed run).

    python benchmarks/bench_training.py [--quick] [--paper] [--repeats 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import target, write_report  # noqa: E402

from gradflow.backend import (  # noqa: E402
    EnsembleMember,
    TrainConfig,
    make_two_layer,
    paper_members,
    torch_threads,
    train,
    train_ensemble,
    train_member,
)
from gradflow.backend.ensemble import PAPER_TRAIN  # noqa: E402
from gradflow.config import DataConfig, InitConfig, ModelConfig  # noqa: E402
from gradflow.data import make_subclass_data  # noqa: E402
from gradflow.losses import torch_loss  # noqa: E402


def _fast_cfg(**kw) -> TrainConfig:
    """Training only: no evaluations, snapshots or ranks (what a plain loop does)."""
    base = dict(optimizer="sgd", lr=0.2, batch_size=100, loss="exponential", dtype="float32",
                device="cpu", progress=False, n_snapshots=0, eval_every=0, rank_every=0)
    base.update(kw)
    return TrainConfig(**base)


def plain_loop(net, X, y, epochs: int, batch: int, lr: float, seed: int) -> None:
    """The straightforward torch loop: shuffle, slice, forward, loss, backward, step."""
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    n = X.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss = torch_loss(net(X[idx]), y[idx], "exponential")
            loss.backward()
            opt.step()


def bench_single(width: int, D: int, n: int, epochs: int, repeats: int) -> dict:
    data_cfg = DataConfig(D=D, n=n, alpha=0.1, seed=0)
    data = make_subclass_data(data_cfg)
    X = torch.as_tensor(data.X, dtype=torch.float32)
    y = torch.as_tensor(data.y, dtype=torch.float32)
    mc, ic = ModelConfig(width=width, p=1.0), InitConfig(eps=1e-3, mode="independent")
    cfg = _fast_cfg(epochs=epochs)
    cfg_metrics = cfg.replace(eval_every=1, rank_every=0)
    steps = cfg.steps_per_epoch(n) * epochs
    best = {"plain": float("inf"), "gradflow": float("inf"), "gradflow_metrics": float("inf")}
    warm = make_two_layer(mc, ic, D, dtype="float32")  # first-call costs stay out of the timing
    plain_loop(warm, X[:200], y[:200], 1, 100, cfg.lr, 0)
    train(warm, (X[:200], y[:200]), cfg.replace(epochs=1))
    for _ in range(repeats):
        net = make_two_layer(mc, ic, D, dtype="float32")
        t = time.perf_counter()
        plain_loop(net, X, y, epochs, 100, cfg.lr, 0)
        best["plain"] = min(best["plain"], time.perf_counter() - t)
        for key, c in (("gradflow", cfg), ("gradflow_metrics", cfg_metrics)):
            net = make_two_layer(mc, ic, D, dtype="float32")
            t = time.perf_counter()
            res = train(net, (X, y), c)
            best[key] = min(best[key], time.perf_counter() - t)
            if not res.success:
                raise RuntimeError(res.message)
    rates = {k: steps / v for k, v in best.items()}
    return {"steps": steps, "best_seconds": best, "steps_per_s": rates,
            "ratio_gradflow_over_plain": rates["gradflow"] / rates["plain"],
            "ratio_with_metrics_over_plain": rates["gradflow_metrics"] / rates["plain"]}


def bench_ensemble(R: int, width: int, D: int, n: int, epochs: int, repeats: int) -> dict:
    members = [EnsembleMember(ModelConfig(width=width, p=1.0 if r % 2 == 0 else 3.0),
                              InitConfig(eps=1e-3, mode="independent", seed=r),
                              DataConfig(D=D, n=n, alpha=0.1, seed=r), seed=r) for r in range(R)]
    cfg = _fast_cfg(epochs=epochs)
    best_b, best_s = float("inf"), float("inf")
    train_ensemble(members[:2], cfg.replace(epochs=1), test=False)  # warm-up, untimed
    for _ in range(repeats):
        t = time.perf_counter()
        ens = train_ensemble(members, cfg, test=False)
        best_b = min(best_b, time.perf_counter() - t)
        t = time.perf_counter()
        seq = [train_member(m, cfg, test=False) for m in members]
        best_s = min(best_s, time.perf_counter() - t)
        if not all(s == "success" for s in ens.status) or not all(r.success for r in seq):
            raise RuntimeError("a benchmark training failed")
    steps = cfg.steps_per_epoch(n) * epochs
    return {"R": R, "steps_per_member": steps, "batched_s": best_b, "sequential_s": best_s,
            "speedup": best_s / best_b,
            "member_steps_per_s_batched": R * steps / best_b,
            "member_steps_per_s_sequential": R * steps / best_s}


def bench_paper(seq_runs: int = 2, seq_epochs: int = 3) -> dict:
    """All 150 paper-scale trainings batched on the GPU, plus an extrapolated sequential baseline."""
    if not torch.cuda.is_available():
        raise RuntimeError("--paper needs a CUDA device")
    members = paper_members()
    cfg = PAPER_TRAIN.replace(device="cuda", progress=True)
    t = time.perf_counter()
    ens = train_ensemble(members, cfg)
    torch.cuda.synchronize()
    batched = time.perf_counter() - t
    seq_cfg = cfg.replace(epochs=seq_epochs, eval_every=0, progress=False)
    t = time.perf_counter()
    for m in members[:seq_runs]:
        train_member(m, seq_cfg, test=False)
    torch.cuda.synchronize()
    per_epoch = (time.perf_counter() - t) / (seq_runs * seq_epochs)
    sequential = per_epoch * cfg.epochs * len(members)
    ok = sum(s == "success" for s in ens.status)
    return {"device": torch.cuda.get_device_name(0), "members": len(members),
            "chunks": ens.chunks, "batched_s": batched, "sequential_extrapolated_s": sequential,
            "speedup": sequential / batched, "n_success": ok,
            "seq_baseline": f"{seq_runs} runs x {seq_epochs} epochs, extrapolated"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test, no report)")
    ap.add_argument("--paper", action="store_true", help="also run the paper scale on CUDA")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    threads = torch.get_num_threads()
    if args.quick:
        single = bench_single(64, 50, 400, 1, 1)
        small = bench_ensemble(4, 10, 20, 200, 1, 1)
        print(single, small)
        return 0
    single = bench_single(2000, 1000, 2000, 3, args.repeats)
    # The small ensemble is overhead-bound; one thread keeps OpenMP hand-offs on a
    # shared machine from dominating either side of the comparison.
    with torch_threads(1):
        small = bench_ensemble(8, 50, 100, 2000, 20, args.repeats)
    large = bench_ensemble(8, 2000, 1000, 500, 2, max(1, args.repeats - 1))
    paper = bench_paper() if args.paper else None

    metrics = {"single": single, "ensemble_small": small, "ensemble_large": large,
               "paper": paper, "torch_threads": threads}
    targets = [
        target("CPU steps/s gradflow / plain loop (w2000, D1000, b100)", ">= 1 (no slower)",
               round(single["ratio_gradflow_over_plain"], 3),
               single["ratio_gradflow_over_plain"] >= 0.95),
        target("ensemble speed-up R=8 (w50, D100, b100, CPU)", ">= 3x",
               round(small["speedup"], 2), small["speedup"] >= 3.0),
        target("ensemble speed-up R=8 (w2000, D1000, b100, CPU)", "information",
               round(large["speedup"], 2), None),
    ]
    if paper:
        targets.append(target(f"paper scale, 150 trainings on {paper['device']}", "< 600 s",
                              round(paper["batched_s"], 1), paper["batched_s"] < 600))
    else:
        targets.append(target("paper scale, 150 trainings on one H100", "< 600 s",
                              "not measured", None))
    rs = single["steps_per_s"]
    md = [
        "Single model, CPU, float32, SGD, width 2000, D=1000, batch 100, "
        f"{single['steps']} steps, {threads} torch threads:\n",
        "| loop | steps/s | ratio to plain |", "|---|---|---|",
        f"| plain torch loop | {rs['plain']:.2f} | 1 |",
        f"| gradflow `train` (eval_every=0) | {rs['gradflow']:.2f} | "
        f"{single['ratio_gradflow_over_plain']:.3f} |",
        f"| gradflow `train`, full train metrics every epoch | {rs['gradflow_metrics']:.2f} | "
        f"{single['ratio_with_metrics_over_plain']:.3f} |", "",
        "Ensembles, R=8, SGD batch 100, float32, CPU (batched `train_ensemble` vs 8 sequential "
        "`train` runs, data generation included in both):\n",
        "| size | threads | batched s | sequential s | speed-up |", "|---|---|---|---|---|",
        f"| width 50, D=100, {small['steps_per_member']} steps | 1 | {small['batched_s']:.2f} | "
        f"{small['sequential_s']:.2f} | {small['speedup']:.2f}x |",
        f"| width 2000, D=1000, {large['steps_per_member']} steps | {threads} | "
        f"{large['batched_s']:.2f} | {large['sequential_s']:.2f} | {large['speedup']:.2f}x |", "",
    ]
    if paper:
        md += [f"Paper scale on {paper['device']}: 150 trainings in {paper['batched_s']:.0f} s "
               f"(chunks {paper['chunks']}, {paper['n_success']} succeeded); sequential "
               f"baseline ({paper['seq_baseline']}) {paper['sequential_extrapolated_s']:.0f} s, "
               f"speed-up {paper['speedup']:.1f}x."]
    else:
        md += ["GPU rows: **not measured** (no GPU was lent to this session). Run "
               "`python benchmarks/bench_training.py --paper` on a CUDA machine: it trains all "
               "150 paper-scale runs with `gradflow.backend.paper_scale_ensemble`'s settings "
               "and extrapolates a sequential baseline from 2 runs x 3 epochs."]
    cmd = "python benchmarks/bench_training.py" + (" --paper" if args.paper else "")
    config = {"repeats": args.repeats, "single": "w2000 D1000 n2000 3 epochs",
              "ensemble_small": "R8 w50 D100 n2000 20 epochs",
              "ensemble_large": "R8 w2000 D1000 n500 2 epochs"}
    write_report("training", cmd, config, metrics, targets, "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
