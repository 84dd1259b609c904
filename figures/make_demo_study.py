"""A small stand-in study that fills the paper-figure schema (demo only).

Until the synthetic-studies module produces the real Section 5.1 results, this
script trains small nets with ``make_demo_runs.run_gd`` and measures, with
deliberately simple estimators:

- sup-distance: c = E[f F] / E[f^2] on the training data, then
  sup_{||x||=1} |c f(x) - F(x)| by projected gradient ascent on the sphere from
  random starts plus the class averages (F for p=1, F_3 for p=3);
- robust accuracy: l2 PGD on the margin y f(x) (40 steps of 2.5 eps / 40,
  projected on the eps-ball), on 300 test points.

Output: figures/out/runs/paper_demo.npz (schema in gradflow.metrics.paper).
Small: K=10, D=100, width 50, alphas {0.02, 0.1, 0.2}, 2 repeats.

    python3 figures/make_demo_study.py [--out figures/out/runs]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gradflow.config import DataConfig, ModelConfig
from gradflow.data import make_subclass_data
from gradflow.metrics import paper_arrays_from_trajectories, save_paper_results
from gradflow.model import TwoLayerParams
from gradflow.torch_model import to_torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_demo_runs import run_gd  # noqa: E402


def ideal(x: torch.Tensor, centres: torch.Tensor, labels: torch.Tensor, p: float) -> torch.Tensor:
    """F (p=1): relu(<x,mu_+>) - relu(<x,mu_->); F_p: sum_k y_k relu(<x,mu_k>)^p."""
    if p == 1:
        mp, mm = centres[labels > 0].sum(0), centres[labels < 0].sum(0)
        return torch.relu(x @ mp) - torch.relu(x @ mm)
    return (torch.relu(x @ centres.T) ** p * labels).sum(1)


def sup_distance(net, X, centres, labels, p, n_starts=256, steps=300, lr=0.05, seed=0):
    with torch.no_grad():
        f, F = net(X), ideal(X, centres, labels, p)
        c = (f * F).mean() / (f * f).mean()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_starts, X.shape[1], generator=g, dtype=X.dtype)
    x = torch.cat([x, centres[labels > 0].sum(0, keepdim=True), centres[labels < 0].sum(0,
                                                                                         keepdim=True)])
    x = x / x.norm(dim=1, keepdim=True)
    for _ in range(steps):
        x.requires_grad_(True)
        d = (c * net(x) - ideal(x, centres, labels, p)).abs().sum()
        (grad,) = torch.autograd.grad(d, x)
        with torch.no_grad():
            x = x + lr * grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-30)
            x = x / x.norm(dim=1, keepdim=True)
    with torch.no_grad():
        return float((c * net(x) - ideal(x, centres, labels, p)).abs().max())


def robust_accuracy(net, X, y, radii, steps=40):
    out = []
    for eps in radii:
        if eps == 0:
            with torch.no_grad():
                out.append(float((torch.sign(net(X)) == y).double().mean()))
            continue
        delta = torch.zeros_like(X)
        step = 2.5 * eps / steps
        for _ in range(steps):
            delta.requires_grad_(True)
            margin = (y * net(X + delta)).sum()
            (g,) = torch.autograd.grad(margin, delta)
            with torch.no_grad():
                delta = delta - step * g / g.norm(dim=1, keepdim=True).clamp_min(1e-30)
                n = delta.norm(dim=1, keepdim=True)
                delta = delta * torch.clamp(eps / n.clamp_min(1e-30), max=1.0)
        with torch.no_grad():
            out.append(float((y * net(X + delta) > 0).double().mean()))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "runs")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ps, alphas, repeats = (1.0, 3.0), np.array([0.02, 0.1, 0.2]), 2
    radii = np.linspace(0, 1.5, 11)
    sd = np.zeros((2, repeats, alphas.size))
    ra = np.zeros((2, repeats, radii.size))
    heat = {}
    t0 = time.perf_counter()
    for i, p in enumerate(ps):
        for r in range(repeats):
            for a, alpha in enumerate(alphas):
                traj = run_gd(p, seed=r, alpha=float(alpha), t_max=6000.0, n_snap=20)
                dcfg = DataConfig.from_dict(traj.meta["data"])
                mcfg = ModelConfig(width=traj.width, p=p)
                W, v = traj.at(-1)
                net = to_torch(TwoLayerParams(W, v), mcfg)
                tr = make_subclass_data(dcfg, "train", backend="torch")
                sd[i, r, a] = sup_distance(net, tr.X, tr.centres, tr.subclass_labels, p, seed=r)
                if a == 1:  # alpha = 0.1: robust accuracy and the panel (b-d) net
                    te = make_subclass_data(dcfg, "test", n=300, backend="torch")
                    ra[i, r] = robust_accuracy(net, te.X, te.y, radii)
                    if r == 0:
                        heat[p] = traj
                print(f"p={p:g} repeat={r} alpha={alpha:g}: sup-distance {sd[i, r, a]:.3g} "
                      f"({time.perf_counter() - t0:.0f}s)", flush=True)
    res = dict(paper_arrays_from_trajectories(heat), alphas=alphas, sup_distance=sd, radii=radii,
               robust_accuracy=ra, heatmap_alpha=np.asarray(0.1))
    path = save_paper_results(args.out / "paper_demo.npz", res)
    print(f"robust accuracy p=1: {ra[0].mean(0).round(2)}\n"
          f"robust accuracy p=3: {ra[1].mean(0).round(2)}\n-> {path}")


if __name__ == "__main__":
    main()
