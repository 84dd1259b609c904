"""Study `gf_vs_sgd`: one initial state trained by gradient flow, full-batch GD and SGD.

A pReLU net (p in {1, 3}) with a small balanced init on K=10, K1=6 Gaussian
subclasses is trained to the same time T (t = lr x steps) by
- the ODE engine (gradient flow, adaptive DP5, ``simulate``),
- full-batch GD with the reference step lr = 0.2 (``simulate(solver='gd')``:
  forward Euler of the same flow),
- SGD with lr = 0.2, batch 100 (the reference protocol, ``gradflow.backend.train``),
all from identical parameters. Compared: which directions the dominant neurons
reach (cosines with [mubar_+, mubar_-, mu_1..mu_K], covered centres) and the
per-sample l2 radii at test points.

Predictions: GD is O(lr) from the flow, and in the alignment phase minibatch
noise is too small to move a neuron to another basin (the noise of the
gradient scales with the neuron's own size), so all three reach the same
extremal vectors: the class averages for p = 1, the same set of centres for
p = 3; hence the same radii, 1/sqrt(K) and sqrt(2)/2.

Uses only the public API.
"""
from __future__ import annotations

import numpy as np
import torch

from gradflow import DataConfig, InitConfig, ModelConfig, init_params, make_subclass_data, to_torch
from gradflow.attacks import attack_radius
from gradflow.backend import TrainConfig, torch_threads, train
from gradflow.dynamics import Stop, simulate
from gradflow.metrics import Trajectory, direction_cosines, summarize_alignment
from gradflow.studies import Study, StudyOutput, make_check, register_study

METHODS = ("ode", "gd", "sgd")
DEFAULTS = {
    "K": 10, "K1": 6, "D": 40, "n": 2000, "alpha": 0.05, "width": 100, "eps": 1e-4,
    "ps": [1.0, 3.0], "lr": 0.2, "batch_size": 100, "t_end": 600.0, "n_test": 200,
    "ode_rtol": 1e-4, "threads": 0,
}
PRESETS = {
    "smoke": {"D": 12, "n": 200, "width": 20, "t_end": 200.0, "n_test": 16, "ode_rtol": 1e-3,
              "threads": 1},
    "quick": {"D": 20, "n": 400, "width": 40, "t_end": 400.0, "n_test": 60, "threads": 1},
    "paper": {},
}


def _validate(cfg: dict) -> None:
    DataConfig(K=cfg["K"], K1=cfg["K1"], D=cfg["D"], n=cfg["n"], alpha=cfg["alpha"])
    if sorted(cfg["ps"]) != [1.0, 3.0]:
        raise ValueError(f"`ps` must be [1.0, 3.0], got {cfg['ps']}")
    for key in ("eps", "lr", "t_end", "ode_rtol"):
        if not cfg[key] > 0:
            raise ValueError(f"`{key}` must be > 0, got {cfg[key]}")
    for key in ("width", "batch_size", "n_test"):
        if cfg[key] < 1:
            raise ValueError(f"`{key}` must be an integer >= 1, got {cfg[key]}")
    if cfg["n"] % cfg["batch_size"]:
        raise ValueError(f"`n` must be a multiple of `batch_size` (so SGD time = lr x steps "
                         f"matches exactly), got n={cfg['n']}, batch_size={cfg['batch_size']}")
    if cfg["threads"] < 0:
        raise ValueError(f"`threads` must be >= 0, got {cfg['threads']}")


def _train_all(cfg: dict, p: float, seed: int, device: str) -> dict:
    """Final (W, v) of the three methods from one initial state, all at time t_end."""
    data_cfg = DataConfig(K=cfg["K"], K1=cfg["K1"], D=cfg["D"], n=cfg["n"], alpha=cfg["alpha"],
                          sizes="equal", seed=seed)
    model = ModelConfig(width=cfg["width"], p=p)
    data = make_subclass_data(data_cfg)
    params0 = init_params(model, InitConfig(eps=cfg["eps"], mode="balanced", seed=seed),
                          data_cfg.D)
    steps = int(round(cfg["t_end"] / cfg["lr"]))
    t_end = steps * cfg["lr"]
    out = {"data_cfg": data_cfg, "model": model, "data": data}
    sol = simulate(data, model, params=params0, stop=Stop(t_max=t_end), save_at=2,
                   progress=False, options={"rtol": cfg["ode_rtol"], "error_weight": "network"})
    out["ode"] = sol.params_at(-1)
    gd = simulate(data, model, params=params0, solver="gd", options={"eta": cfg["lr"]},
                  stop=Stop(t_max=t_end), save_at=2, progress=False)
    out["gd"] = gd.params_at(-1)
    net = to_torch(params0, model)
    epochs = steps * cfg["batch_size"] // cfg["n"]
    train(net, data, TrainConfig(optimizer="sgd", lr=cfg["lr"], epochs=epochs,
                                 batch_size=cfg["batch_size"], loss="exponential",
                                 dtype="float64", device=device, seed=seed, n_snapshots=0,
                                 eval_every=0, rank_every=0, progress=False))
    out["sgd"] = net.to("cpu").to_params()
    out["status"] = [sol.status, gd.status]
    return out


def run(cfg: dict, ctx) -> StudyOutput:
    K, ps = cfg["K"], cfg["ps"]
    with torch_threads(cfg["threads"]):
        res = {p: _train_all(cfg, p, ctx.seed, ctx.device) for p in ps}
        radii, cos, summ = {}, {}, {}
        for p in ps:
            r = res[p]
            test = make_subclass_data(r["data_cfg"], "test", n=cfg["n_test"])
            X, y = torch.as_tensor(test.X), torch.as_tensor(test.y)
            for m in METHODS:
                P = r[m]
                net = to_torch(P, r["model"])
                radii[p, m] = attack_radius(net, X, y, lower="none", seed=ctx.seed).upper.numpy()
                cos[p, m] = direction_cosines(P.W, test.centres, test.subclass_labels)
                summ[p, m] = summarize_alignment(Trajectory(
                    t=np.zeros(1), W=P.W[None], v=P.v[None], centres=test.centres,
                    subclass_labels=test.subclass_labels))
    med = {k: float(np.median(v)) for k, v in radii.items()}
    r_f, r_opt = 1 / np.sqrt(K), np.sqrt(2) / 2
    checks = []
    for m in METHODS:
        s1, s3 = summ[1.0, m], summ[3.0, m]
        checks.append(make_check(f"{m}: p=1 dominant neurons aligned with mubar_+/- (fraction)",
                                 theory=1.0, measured=s1.frac_aligned_averages,
                                 agrees=s1.frac_aligned_averages >= 0.9))
        checks.append(make_check(f"{m}: p=3 centres covered by aligned dominant neurons",
                                 theory=K, measured=s3.n_covered_centres,
                                 agrees=s3.n_covered_centres == K))
        # 15%: test points are O(alpha) from their centre, and training stops at a finite time
        checks.append(make_check(f"{m}: p=1 median radius = 1/sqrt(K)", theory=r_f,
                                 measured=med[1.0, m], rtol=0.15))
        checks.append(make_check(f"{m}: p=3 median radius = sqrt(2)/2", theory=r_opt,
                                 measured=med[3.0, m], rtol=0.15))
    same = summ[3.0, "ode"].covered_centres == summ[3.0, "gd"].covered_centres == \
        summ[3.0, "sgd"].covered_centres
    checks.append(make_check("p=3: ODE, GD and SGD cover the same centres", theory=True,
                             measured=same, agrees=same))
    for p in ps:
        spread = max(med[p, m] for m in METHODS) / min(med[p, m] for m in METHODS) - 1
        # 5%: same extremal vectors => same limit classifier; the rest is O(lr) and noise
        checks.append(make_check(f"p={p:g}: median radii of ODE, GD, SGD agree (max/min - 1)",
                                 theory=0.0, measured=spread, atol=0.05))
    arrays = {"ps": np.asarray(ps)}
    for p in ps:
        for m in METHODS:
            arrays[f"radii_p{p:g}_{m}"] = radii[p, m]
            arrays[f"cos_p{p:g}_{m}"] = cos[p, m]
            arrays[f"contrib_p{p:g}_{m}"] = np.abs(res[p][m].v) * np.linalg.norm(res[p][m].W,
                                                                                 axis=1)
            arrays[f"signs_p{p:g}_{m}"] = np.sign(res[p][m].v)
    metrics = {f"median_radius_p{p:g}_{m}": med[p, m] for p in ps for m in METHODS}
    metrics.update({f"covered_p3_{m}": summ[3.0, m].covered_centres for m in METHODS})
    metrics["status"] = sorted({s for p in ps for s in res[p]["status"]})
    return StudyOutput(checks=checks, arrays=arrays, metrics=metrics)


def plot(arrays: dict, summary: dict, fig_dir) -> list:
    """Cosine heatmaps of the dominant neurons (rows: p; columns: ODE, GD, SGD) and radii."""
    import matplotlib.pyplot as plt

    from gradflow.metrics import column_names, dominant_neurons
    from gradflow.plots import draw_cosine_heatmap, new_figure, paper_style, save_figure, tex_column

    K = summary["effective_config"]["K"]
    ps = [float(p) for p in arrays["ps"]]
    cols = column_names(K)
    with paper_style():
        fig, axes = new_figure("double", 0.5, nrows=len(ps), ncols=len(METHODS) + 1)
        for i, p in enumerate(ps):
            for j, m in enumerate(METHODS):
                c = arrays[f"contrib_p{p:g}_{m}"]
                dom = dominant_neurons(c, 0.99)
                im, _ = draw_cosine_heatmap(axes[i, j], arrays[f"cos_p{p:g}_{m}"][dom],
                                            arrays[f"signs_p{p:g}_{m}"][dom], cols,
                                            contrib=c[dom], colorbar=False,
                                            ylabel=f"p={p:g}: dominant ({dom.size})")
                axes[i, j].set_xticks(range(K + 2), [tex_column(n) for n in cols], rotation=90,
                                      fontsize=5)
                axes[i, j].set_title(f"{m.upper()}, p={p:g}", fontsize=7)
            ax = axes[i, -1]
            # drawn thick-to-thin so that coinciding curves stay visible
            for j, m in enumerate(METHODS):
                r = np.sort(np.minimum(arrays[f"radii_p{p:g}_{m}"], 2.0))
                ax.plot(r, np.linspace(0, 1, r.size), label=m.upper(), lw=3.0 - j,
                        ls=("-", "--", ":")[j], color=f"C{j}")
            ax.axvline(1 / np.sqrt(K), color="0.4", ls="--", lw=0.7, label="1/sqrt(K)")
            ax.axvline(np.sqrt(2) / 2, color="0.2", ls="-.", lw=0.7, label="sqrt(2)/2")
            ax.set(xlabel="per-sample l2 radius", ylabel="fraction of test points",
                   title=f"radius CDF, p={p:g}")
            ax.legend(fontsize=5)
        fig.colorbar(im, ax=axes[:, :len(METHODS)], shrink=0.6, extend="min", label="cosine")
        path = fig_dir / "gf_vs_sgd.png"
        save_figure(fig, path)
        plt.close(fig)
    return [path]


register_study(Study(name="gf_vs_sgd", run=run, plot=plot, defaults=DEFAULTS, presets=PRESETS,
                     validate=_validate,
                     description="Gradient flow vs full-batch GD vs SGD from one initial state: "
                                 "alignment and radii."))
