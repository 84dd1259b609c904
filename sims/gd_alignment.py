"""Study `gd_alignment`: the alignment phase of gradient descent from a small initialisation.

Full-batch GD (the forward-Euler discretisation of gradient flow) of a pReLU
two-layer net on Gaussian-subclass data, balanced init of scale eps, p in {1, 3}.
Predictions tested (THEORY.md sections 3-5, population limit alpha -> 0, equal sizes):

1. p = 1: the dominant neurons align with the class averages mubar_+/-.
2. p = 3: the dominant neurons align with individual centres mu_k.
3. During the alignment phase the dominant neuron grows like exp(G* t), G* = max G:
   G* = sqrt(K1)/K for p = 1 and 1/K for p = 3. For GD with step lr the exact
   discrete analogue is the factor (1 + lr G*) per step, i.e. rate log(1 + lr G*)/lr.
4. The ratio of the two growth rates (p=3 over p=1) is 1/sqrt(K1).
5. GD conserves v_j^2 - ||w_j||^2 only up to O(lr) at a fixed time T: halving the
   step halves the drift (ratio 2), measured between steps lr/2 and lr/4.

Uses only the public API (gradflow foundation + gradflow.studies).
"""
from __future__ import annotations

import numpy as np

from gradflow import (
    DataConfig,
    InitConfig,
    ModelConfig,
    forward,
    init_params,
    loss_and_grad,
    make_subclass_data,
)
from gradflow.studies import Study, StudyOutput, make_check, register_study

DEFAULTS = {
    "K": 4, "K1": 2, "D": 40, "n": 400, "alpha": 0.05, "width": 30, "eps": 1e-5,
    "lr": 0.2, "t_max": 80.0, "window": [1e-4, 1e-2], "top": 4,
}
PRESETS = {
    "smoke": {"D": 20, "n": 200, "width": 20},
    "quick": {},
    "paper": {"K": 10, "K1": 6, "D": 200, "n": 4000, "width": 200, "eps": 1e-7, "lr": 0.1,
              "t_max": 200.0},
}


def _validate(cfg: dict) -> None:
    DataConfig(K=cfg["K"], K1=cfg["K1"], D=cfg["D"], n=cfg["n"], alpha=cfg["alpha"])
    for key in ("lr", "t_max", "eps"):
        if not cfg[key] > 0:
            raise ValueError(f"`{key}` must be > 0, got {cfg[key]}")
    lo, hi = (cfg["window"] + [0, 0])[:2]
    if len(cfg["window"]) != 2 or not 0 < lo < hi:
        raise ValueError(f"`window` must be [lo, hi] with 0 < lo < hi, got {cfg['window']}")
    # top neurons are a slice of the width; 0 or a negative count would slice silently wrong
    if not 1 <= cfg["top"] <= cfg["width"]:
        raise ValueError(f"`top` must be an integer in [1, width={cfg['width']}], "
                         f"got {cfg['top']}")


def _gd(cfg: dict, p: float, lr: float, seed: int) -> dict:
    """Run GD to time t_max; record log||w_j||, max_i |f(x_i)| per step and the final state."""
    data_cfg = DataConfig(K=cfg["K"], K1=cfg["K1"], D=cfg["D"], n=cfg["n"], alpha=cfg["alpha"],
                          sizes="equal", seed=seed)
    model = ModelConfig(width=cfg["width"], p=p)
    data = make_subclass_data(data_cfg)
    params = init_params(model, InitConfig(eps=cfg["eps"], seed=seed), data_cfg.D)
    c0 = params.invariant()
    steps = int(round(cfg["t_max"] / lr))
    log_norm = np.empty((steps + 1, model.width))
    fmax = np.empty(steps + 1)
    for k in range(steps + 1):
        log_norm[k] = np.log(np.linalg.norm(params.W, axis=1))
        fmax[k] = np.abs(forward(params, data.X, model)).max()
        if k == steps:
            break
        _, g = loss_and_grad(params, data.X, data.y, model)
        params.W -= lr * g.W
        params.v -= lr * g.v
    return {"data": data, "params": params, "t": lr * np.arange(steps + 1),
            "log_norm": log_norm, "fmax": fmax,
            "drift": float(np.abs(params.invariant() - c0).max())}


def _growth_rate(run: dict, window) -> float:
    """Least-squares slope of log||w_top|| against t while window[0] <= max|f| <= window[1]."""
    top = int(np.argmax(run["log_norm"][-1]))
    mask = (run["fmax"] >= window[0]) & (run["fmax"] <= window[1])
    if mask.sum() < 3:
        return float("nan")
    return float(np.polyfit(run["t"][mask], run["log_norm"][mask, top], 1)[0])


def _cosines(run: dict, top: int) -> tuple[np.ndarray, np.ndarray]:
    """|cos| of the top neurons (by |v_j| ||w_j||) with [mubar_+, mubar_-, mu_1..mu_K]."""
    P, d = run["params"], run["data"]
    norms = np.linalg.norm(P.W, axis=1)
    idx = np.argsort(np.abs(P.v) * norms)[::-1][:top]
    targets = np.vstack([d.mubar_plus, d.mubar_minus, d.centres])
    return (P.W[idx] / norms[idx, None]) @ targets.T, np.sign(P.v[idx])


def run(cfg: dict, ctx) -> StudyOutput:
    K, K1, lr, top = cfg["K"], cfg["K1"], cfg["lr"], cfg["top"]
    runs = {p: _gd(cfg, p, lr, ctx.seed) for p in (1.0, 3.0)}
    half, quarter = (_gd(cfg, 1.0, lr / d, ctx.seed) for d in (2, 4))
    g_star = {1.0: np.sqrt(K1) / K, 3.0: 1.0 / K}
    rate = {p: _growth_rate(r, cfg["window"]) for p, r in runs.items()}
    theory_rate = {p: float(np.log1p(lr * g) / lr) for p, g in g_star.items()}
    cos = {p: _cosines(r, top) for p, r in runs.items()}
    cls_align = float(np.abs(cos[1.0][0][:, :2]).max(axis=1).mean())
    ctr_align = float(np.abs(cos[3.0][0][:, 2:]).max(axis=1).mean())
    drift_ratio = half["drift"] / quarter["drift"]
    checks = [
        # 0.95: the noise (alpha) and finite n tilt the maximiser by O(alpha) from mubar_+/-.
        make_check("p=1: top neurons align with mubar_+/- (mean |cos|)", theory=1.0,
                   measured=cls_align, agrees=cls_align > 0.95),
        make_check("p=3: top neurons align with centres mu_k (mean |cos|)", theory=1.0,
                   measured=ctr_align, agrees=ctr_align > 0.95),
        # 10%: G on the sample differs from the population G* by O(alpha + 1/sqrt(n)).
        make_check("p=1 growth rate of the top neuron = log(1+lr sqrt(K1)/K)/lr",
                   theory=theory_rate[1.0], measured=rate[1.0], rtol=0.10),
        make_check("p=3 growth rate of the top neuron = log(1+lr/K)/lr",
                   theory=theory_rate[3.0], measured=rate[3.0], rtol=0.10),
        # 5%: the ratio cancels most of the sample-vs-population error in G*.
        make_check("growth-rate ratio p=3 / p=1 (-> 1/sqrt(K1) as lr -> 0)",
                   theory=theory_rate[3.0] / theory_rate[1.0], measured=rate[3.0] / rate[1.0],
                   rtol=0.05),
        # 10%: first order means the ratio -> 2 as lr -> 0; O(lr) corrections remain (~5%).
        make_check("GD invariant drift is first order in lr: drift(lr/2)/drift(lr/4)",
                   theory=2.0, measured=drift_ratio, rtol=0.10),
    ]
    arrays = {"t_p1": runs[1.0]["t"], "t_p3": runs[3.0]["t"],
              "log_norm_p1": runs[1.0]["log_norm"], "log_norm_p3": runs[3.0]["log_norm"],
              "fmax_p1": runs[1.0]["fmax"], "fmax_p3": runs[3.0]["fmax"],
              "cos_p1": cos[1.0][0], "cos_p3": cos[3.0][0],
              "sign_p1": cos[1.0][1], "sign_p3": cos[3.0][1]}
    accuracy = {f"train_acc_p{int(p)}": float(np.mean(
        np.sign(forward(r["params"], r["data"].X, ModelConfig(width=cfg["width"], p=p)))
        == r["data"].y)) for p, r in runs.items()}
    metrics = {"growth_rate_p1": rate[1.0], "growth_rate_p3": rate[3.0],
               "theory_rate_p1": theory_rate[1.0], "theory_rate_p3": theory_rate[3.0],
               "drift_lr": runs[1.0]["drift"], "drift_half_lr": half["drift"],
               "drift_quarter_lr": quarter["drift"], **accuracy}
    return StudyOutput(checks=checks, arrays=arrays, metrics=metrics)


def plot(arrays: dict, summary: dict, fig_dir) -> list:
    """(a) log||w_j|| of every neuron against t, with the predicted slope; (b) cosine heatmaps."""
    import matplotlib.pyplot as plt

    cfg = summary["effective_config"]
    K = cfg["K"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for p, colour in ((1, "C0"), (3, "C3")):
        t, ln = arrays[f"t_p{p}"], arrays[f"log_norm_p{p}"]
        axes[0].plot(t, ln, color=colour, lw=0.5, alpha=0.4)
        top = int(np.argmax(ln[-1]))
        axes[0].plot(t, ln[:, top], color=colour, lw=2, label=f"p={p} top neuron")
        rate = summary["metrics"][f"theory_rate_p{p}"]
        axes[0].plot(t, ln[0, top] + rate * t, color=colour, ls="--", lw=1,
                     label=f"slope {rate:.3f} (theory)")
    axes[0].set(xlabel="t", ylabel="log ||w_j||", title="(a) alignment-phase growth",
                ylim=(None, 2))
    axes[0].legend(fontsize=7)
    cols = ["mubar+", "mubar-"] + [f"mu{k + 1}" for k in range(K)]
    for ax, p in zip(axes[1:], (1, 3)):
        im = ax.imshow(arrays[f"cos_p{p}"], vmin=-1, vmax=1, cmap="RdBu_r", aspect="auto")
        ax.set(xticks=range(len(cols)), yticks=range(arrays[f"cos_p{p}"].shape[0]), title=f"({'bc'[p == 3]}) cos, top neurons, p={p}",
               ylabel="neuron (by contribution)")
        ax.set_xticklabels(cols, rotation=60, fontsize=7)
    fig.colorbar(im, ax=axes[1:], shrink=0.8)
    out = fig_dir / "gd_alignment.png"
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return [out]


register_study(Study(name="gd_alignment", run=run, plot=plot, defaults=DEFAULTS,
                     presets=PRESETS, validate=_validate,
                     description="Alignment phase of full-batch GD: directions, growth rates, "
                                 "invariant drift, for p = 1 and 3."))
