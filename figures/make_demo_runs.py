"""Small demo trajectories for the figure gallery (plain gradient descent, no engine needed).

Trains the reference two-layer pReLU net with full-batch gradient descent (the
forward-Euler discretisation of gradient flow, t = step * eta) on a small
Gaussian-subclass problem, for p in {1, 3}, and saves snapshots at
log-spaced times as ``Trajectory`` files:

    figures/out/runs/traj_p1.npz, traj_p3.npz

Gallery figures are then drawn from these files only (``make_gallery.py``).
An ODE-engine ``Solution`` is saved the same way with
``Trajectory.from_any(solution).save(...)``.

    python3 figures/make_demo_runs.py [--out figures/out/runs] [--seed 0]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from gradflow.config import DataConfig, InitConfig, ModelConfig
from gradflow.data import make_subclass_data
from gradflow.init import init_params
from gradflow.metrics import Trajectory
from gradflow.model import loss_and_grad

ROOT = Path(__file__).resolve().parent


def run_gd(p: float, *, seed: int = 0, eta: float = 0.5, t_max: float = 4000.0,
           loss_target: float = 0.02, n_snap: int = 160, width: int = 50,
           alpha: float = 0.1) -> Trajectory:
    """Full-batch GD on the exponential loss; snapshots at log-spaced times up to t_max."""
    dcfg = DataConfig(K=10, K1=6, D=100, alpha=alpha, n=500, seed=seed)
    mcfg = ModelConfig(width=width, p=float(p))
    icfg = InitConfig(eps=1e-6, mode="balanced", seed=seed + 1)
    data = make_subclass_data(dcfg)
    params = init_params(mcfg, icfg, dcfg.D)
    n_steps = int(round(t_max / eta))
    snap_steps = np.unique(np.concatenate(
        [[0], np.round(np.geomspace(1, n_steps, n_snap)).astype(int)]))
    ts, Ws, vs, losses = [], [], [], []
    k = 0
    for step in range(n_steps + 1):
        value, g = loss_and_grad(params, data.X, data.y, mcfg)
        if step == snap_steps[k]:
            ts.append(step * eta)
            Ws.append(params.W.copy())
            vs.append(params.v.copy())
            losses.append(value)
            k += 1
            if value < loss_target and step > 0:
                break
            if k == snap_steps.size:
                break
        params.W -= eta * g.W
        params.v -= eta * g.v
    meta = dict(p=float(p), K=dcfg.K, K1=dcfg.K1, D=dcfg.D, alpha=alpha, n=dcfg.n,
                width=width, eps=icfg.eps, eta=eta, seed=seed, integrator="gradient descent",
                data=dcfg.to_dict())
    return Trajectory(np.array(ts), np.array(Ws), np.array(vs), np.array(losses),
                      centres=data.centres, subclass_labels=data.subclass_labels, meta=meta)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "runs")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for p, t_max in ((1, 3000.0), (3, 6000.0)):
        t0 = time.perf_counter()
        traj = run_gd(p, seed=args.seed, t_max=t_max)
        path = traj.save(args.out / f"traj_p{p}.npz")
        print(f"p={p}: {traj.n_times} snapshots to t={traj.t[-1]:.0f}, "
              f"final loss {traj.loss[-1]:.4f}, {time.perf_counter() - t0:.1f}s -> {path}")


if __name__ == "__main__":
    main()
