"""Study `sec51`: the reference paper's Section 5.1 (Min & Vidal, ICML 2024) on synthetic data.

pReLU two-layer nets (p in {1, 3}) trained by SGD from a tiny independent init
on K=10 orthonormal Gaussian subclasses (K1=6 positive), for several noise
levels alpha. Predictions tested (THEORY.md sections 4-7):

1. p = 1: the dominant neurons align with the class averages mubar_+/-, so the
   net is close to F(x) = relu(<x,mu_+>) - relu(<x,mu_->), whose l2 radius at a
   centre is 1/sqrt(K); robust accuracy collapses just above 1/sqrt(K).
2. p = 3: the dominant neurons align with the centres mu_k (all K covered), the
   net is close to F_3(x) = sum_k y_k relu(<x,mu_k>)^3, radius sqrt(2)/2.
3. sup-distance sup_{||x||=1} |c f(x) - F(x)|, c = E[f F]/E[f^2] (by normalised
   projected gradient ascent from random starts, as in the reference code):
   paper ~0.03..0.09 (p=1, vs F) and ~1e-5 (p=3, vs F_3).

Robust accuracy is measured twice: by the reference l2 PGD protocol at each
radius (fixed budget), and from per-sample minimum-norm radii
(acc(eps) = mean 1[r_i > eps]). The 'paper' preset is exactly THEORY.md
section 7 (150 nets, one batched ensemble; meant for a GPU: --device cuda).
The attack uses the first ``n_attack`` test points of each net (the reference
does not state its count; the paper preset uses 1000).

Uses only the public API.
"""
from __future__ import annotations

import numpy as np
import torch

from gradflow import DataConfig, InitConfig, ModelConfig, make_subclass_data, to_torch
from gradflow.attacks import (
    accuracy_from_radii,
    attack_radius,
    reference_pgd,
    robust_accuracy_curve,
)
from gradflow.backend import EnsembleMember, TrainConfig, torch_threads, train_ensemble
from gradflow.metrics import Trajectory, contributions, direction_cosines, summarize_alignment
from gradflow.studies import Study, StudyOutput, make_check, register_study
from gradflow.theory import ideal_F, ideal_Fp, sup_distance

DEFAULTS = {
    "K": 10, "K1": 6, "D": 1000, "n": 20000, "width": 2000, "epochs": 401, "lr": 0.2,
    "batch_size": 100, "eps": 1e-7, "ps": [1.0, 3.0],
    "alphas": [float(a) for a in np.linspace(0.01, 0.3, 15)], "repeats": 5,
    "train_dtype": "float32", "radii": [float(r) for r in np.linspace(0.0, 1.5, 15)],
    "n_attack": 1000, "pgd_steps": 2000, "pgd_step": 0.1, "certify": True,
    "sup_starts": 10000, "sup_steps": 2000, "sup_lr": 0.01, "heatmap_alpha_index": 0,
    "threads": 0,
}
PRESETS = {
    # the test suite's run (seconds): a larger init (eps 1e-4) shortens the alignment phase
    # log(1/eps)/G* so that SGD time epochs * (n / batch) * lr = 240 reaches the fit of p = 3
    "smoke": {"D": 30, "n": 300, "width": 40, "epochs": 400, "eps": 1e-4, "alphas": [0.05],
              "repeats": 1, "n_attack": 30, "pgd_steps": 40, "radii": [0.0, 0.25, 0.45, 0.6],
              "certify": False, "sup_starts": 50, "sup_steps": 100, "threads": 1},
    # 2 CPU cores, < 3 min: scaled-down n, D, width, reference init and lr; epochs chosen so
    # that SGD time epochs * (n / batch) * lr (= 1000) covers the alignment phase and the
    # fit of p = 3 (measured: all 10 centres covered, radius ~0.70 by t ~ 900)
    "quick": {"D": 50, "n": 500, "width": 60, "epochs": 1000, "alphas": [0.01, 0.15, 0.3],
              "repeats": 1, "n_attack": 100, "pgd_steps": 100, "sup_starts": 200,
              "sup_steps": 300, "threads": 1},
    "paper": {},
}


def _validate(cfg: dict) -> None:
    for a in cfg["alphas"]:
        DataConfig(K=cfg["K"], K1=cfg["K1"], D=cfg["D"], n=cfg["n"], alpha=a)
    for key in ("lr", "eps", "pgd_step", "sup_lr"):
        if not cfg[key] > 0:
            raise ValueError(f"`{key}` must be > 0, got {cfg[key]}")
    for key in ("width", "epochs", "batch_size", "repeats", "n_attack", "pgd_steps",
                "sup_starts", "sup_steps"):
        if cfg[key] < 1:
            raise ValueError(f"`{key}` must be an integer >= 1, got {cfg[key]}")
    if sorted(cfg["ps"]) != [1.0, 3.0]:
        raise ValueError(f"`ps` must be [1.0, 3.0] (the two regimes compared), got {cfg['ps']}")
    if not cfg["alphas"] or min(cfg["alphas"]) <= 0:
        raise ValueError("`alphas` must be a non-empty list of noise levels > 0")
    if not 0 <= cfg["heatmap_alpha_index"] < len(cfg["alphas"]):
        raise ValueError(f"`heatmap_alpha_index` must be in [0, {len(cfg['alphas'])}), "
                         f"got {cfg['heatmap_alpha_index']}")
    r = cfg["radii"]
    if len(r) < 2 or min(r) < 0 or any(b <= a for a, b in zip(r, r[1:])):
        raise ValueError("`radii` must be an increasing list of >= 2 radii >= 0")
    if cfg["n_attack"] > cfg["n"]:
        raise ValueError(f"`n_attack` must be <= n={cfg['n']}, got {cfg['n_attack']}")
    # checked here so the error names the study key, not the backend's `dtype`
    if cfg["train_dtype"] not in ("float32", "float64"):
        raise ValueError(f"`train_dtype` must be one of ['float32', 'float64'], "
                         f"got {cfg['train_dtype']!r}")
    if cfg["threads"] < 0:
        raise ValueError(f"`threads` must be >= 0 (0: leave torch's setting), got {cfg['threads']}")


def _members(cfg: dict, seed: int) -> list[EnsembleMember]:
    """p x alpha x repeat; run (a, r) uses seed a*repeats + r (+ offset) for data, init and
    batches, so both p see identical data, initial weights and batch order (paired)."""
    out = []
    for p in cfg["ps"]:
        for a, alpha in enumerate(cfg["alphas"]):
            for r in range(cfg["repeats"]):
                s = seed * 100003 + a * cfg["repeats"] + r
                out.append(EnsembleMember(
                    model=ModelConfig(width=cfg["width"], activation="prelu", p=float(p)),
                    init=InitConfig(eps=cfg["eps"], mode="independent", seed=s),
                    data=DataConfig(K=cfg["K"], K1=cfg["K1"], D=cfg["D"], alpha=float(alpha),
                                    n=cfg["n"], seed=s), seed=s))
    return out


def _measure(member: EnsembleMember, params, cfg: dict, device: str, seed: int) -> dict:
    """Robust accuracy (PGD and radii), per-sample radii, sup-distance, alignment of one net."""
    dtype = torch.float64 if device == "cpu" else torch.float32
    net = to_torch(params, member.model, dtype=dtype, device=device)
    test = make_subclass_data(member.data, "test")
    X = torch.as_tensor(test.X[:cfg["n_attack"]], dtype=dtype, device=device)
    y = torch.as_tensor(test.y[:cfg["n_attack"]], dtype=dtype, device=device)
    radii = np.asarray(cfg["radii"])
    pgd = robust_accuracy_curve(
        net, X, y, radii, method="pgd",
        attack=reference_pgd(steps=cfg["pgd_steps"], step_size=cfg["pgd_step"], seed=seed))
    rad = attack_radius(net, X, y, lower="auto" if cfg["certify"] else "none", seed=seed)
    p = member.model.p
    clf = ideal_F(test.centres, test.subclass_labels) if p == 1 else ideal_Fp(
        test.centres, test.subclass_labels, p)
    Xall = torch.as_tensor(test.X, dtype=dtype, device=device)
    # The reference metric: c = E[f F]/E[f^2] on the test data, sup over the unit sphere by
    # normalised projected gradient ascent (gradflow.theory.sup_distance).
    dist = sup_distance(net, clf, Xall, c=None, n_rounds=1, n_starts=cfg["sup_starts"],
                        n_steps=cfg["sup_steps"], step=cfg["sup_lr"], device=device,
                        dtype=dtype, seed=seed).value
    traj = Trajectory(t=np.zeros(1), W=params.W[None], v=params.v[None], centres=test.centres,
                      subclass_labels=test.subclass_labels)
    align = summarize_alignment(traj)
    with torch.no_grad():
        acc = float((torch.sign(net(Xall)) == torch.as_tensor(test.y, dtype=dtype,
                                                              device=device)).double().mean())
    return {"pgd": pgd.accuracy, "radius_acc": accuracy_from_radii(rad.upper, radii),
            "upper": rad.upper.cpu().numpy(), "lower": rad.lower.cpu().numpy(),
            "sup": dist, "align": align, "test_acc": acc,
            "contrib": contributions(params.W, params.v), "signs": np.sign(params.v),
            "cos": direction_cosines(params.W, test.centres, test.subclass_labels)}


def run(cfg: dict, ctx) -> StudyOutput:
    K, ps, alphas, R = cfg["K"], cfg["ps"], cfg["alphas"], cfg["repeats"]
    P, A = len(ps), len(alphas)
    members = _members(cfg, ctx.seed)
    tcfg = TrainConfig(optimizer="sgd", lr=cfg["lr"], epochs=cfg["epochs"],
                       batch_size=cfg["batch_size"], loss="exponential",
                       dtype=cfg["train_dtype"], device=ctx.device, n_snapshots=0,
                       eval_every=0, rank_every=0, progress=ctx.progress)
    with torch_threads(cfg["threads"]):
        ctx.log(f"sec51: training {len(members)} nets as one ensemble")
        res = train_ensemble(members, tcfg, test=False)
        out = []
        for i, m in enumerate(members):
            ctx.log(f"sec51: measuring net {i + 1}/{len(members)} (p={m.model.p:g}, "
                    f"alpha={m.data.alpha:.3g})")
            out.append(_measure(m, res.params(i), cfg, ctx.device, ctx.seed + i))
    grid = np.array(out, dtype=object).reshape(P, A, R)

    def stack(key):
        return np.array([[[grid[i, a, r][key] for r in range(R)] for a in range(A)]
                         for i in range(P)], dtype=float)

    pgd, racc, upper, lower = stack("pgd"), stack("radius_acc"), stack("upper"), stack("lower")
    sup, test_acc = stack("sup"), stack("test_acc")
    hi = cfg["heatmap_alpha_index"]
    i1, i3 = ps.index(1.0), ps.index(3.0)
    radii = np.asarray(cfg["radii"])
    # medians at the smallest alpha (closest to the alpha -> 0 theory), mean over repeats
    a0 = int(np.argmin(alphas))
    med = np.nanmedian(upper[:, a0], axis=-1).mean(axis=-1)
    al = {p: [grid[i, a0, r]["align"] for r in range(R)] for i, p in enumerate(ps)}
    frac_avg_p1 = float(np.mean([s.frac_aligned_averages for s in al[1.0]]))
    frac_ctr_p3 = float(np.mean([s.frac_aligned_centres for s in al[3.0]]))
    covered_p3 = float(np.mean([s.n_covered_centres for s in al[3.0]]))
    r_f, r_opt = 1 / np.sqrt(K), np.sqrt(2) / 2
    j_above = int(np.argmax(radii >= 1.25 * r_f))  # first grid radius clearly above 1/sqrt(K)
    j_below = int(np.nonzero(radii <= 0.8 * r_opt)[0].max())  # last one clearly below sqrt(2)/2
    acc_p1_above = float(pgd[i1, a0, :, j_above].mean())
    acc_p3_below = float(pgd[i3, a0, :, j_below].mean())
    # PGD and minimum-norm radii both give upper bounds on the true robust accuracy; where
    # PGD's is higher, the fixed-budget attack missed adversarial points the radii found
    pgd_excess = pgd - racc
    sup_p1, sup_p3 = sup[i1].mean(axis=1), sup[i3].mean(axis=1)
    checks = [
        # 0.95 not 0.99-cos all: the O(alpha) noise tilts the learnt directions slightly.
        make_check("p=1: dominant neurons aligned with mubar_+/- (fraction, cos > 0.99)",
                   theory=1.0, measured=frac_avg_p1, agrees=frac_avg_p1 >= 0.9),
        make_check("p=3: dominant neurons aligned with a centre mu_k (fraction, cos > 0.99)",
                   theory=1.0, measured=frac_ctr_p3, agrees=frac_ctr_p3 >= 0.9),
        make_check("p=3: centres covered by an aligned dominant neuron", theory=K,
                   measured=covered_p3, agrees=covered_p3 >= K - 0.5),
        # 15%: at alpha > 0 a test point sits O(alpha) away from its centre, which moves
        # the radius by O(alpha) (and by the finite-training distance to F / F_3).
        make_check(f"p=1 median l2 radius (alpha={alphas[a0]:g}) = 1/sqrt(K)", theory=r_f,
                   measured=med[i1], rtol=0.15),
        make_check(f"p=3 median l2 radius (alpha={alphas[a0]:g}) = sqrt(2)/2", theory=r_opt,
                   measured=med[i3], rtol=0.15),
        make_check("median radius ratio p=3 / p=1 (>= 1.5 required)", theory=r_opt / r_f,
                   measured=med[i3] / med[i1], agrees=bool(med[i3] / med[i1] >= 1.5)),
        # 0.1: at most one point in ten of the attacked ones survives beyond the F radius
        make_check(f"p=1 PGD robust accuracy at eps={radii[j_above]:.3g} (> 1/sqrt(K)), "
                   f"alpha={alphas[a0]:g}: collapsed", theory=0.0, paper="~0 just above 0.32",
                   measured=acc_p1_above, atol=0.1),
        make_check(f"p=3 PGD robust accuracy at eps={radii[j_below]:.3g} (< sqrt(2)/2), "
                   f"alpha={alphas[a0]:g}: intact", theory=1.0, paper="~1.0 to ~0.7", measured=acc_p3_below,
                   atol=0.1),
        # 0.1: both curves are upper bounds from different attacks on n_attack points;
        # a weaker fixed-budget PGD may miss some points the min-norm attack breaks.
        make_check("reference PGD curve = curve from min-norm radii (max over p, alpha, eps "
                   "of PGD acc - radii acc)", theory=0.0,
                   measured=float(np.abs(pgd_excess).max()), atol=0.1),
        make_check("p=1 sup-distance to F over alpha [min, max]", theory="-> 0 as alpha -> 0",
                   paper=[0.03, 0.09], measured=[float(sup_p1.min()), float(sup_p1.max())],
                   # a factor 3 around the paper's range (our nets are smaller and shorter
                   # trained in the scaled presets; the paper preset should land inside)
                   agrees=bool(0.01 <= sup_p1.min() and sup_p1.max() <= 0.27)),
        make_check("p=3 sup-distance to F_3 over alpha [min, max]", theory="-> 0 as alpha -> 0",
                   paper=1e-5, measured=[float(sup_p3.min()), float(sup_p3.max())],
                   agrees=bool(sup_p3.max() <= 1e-3)),
        make_check("p=3 is closer to its ideal classifier than p=1 at every alpha",
                   theory=True, measured=bool(np.all(sup_p3 < sup_p1)),
                   agrees=bool(np.all(sup_p3 < sup_p1))),
    ]
    paper_fig = {
        "K": np.asarray(K), "ps": np.asarray(ps), "alphas": np.asarray(alphas),
        "sup_distance": np.transpose(sup, (0, 2, 1)),
        "contributions": np.stack([grid[i, hi, 0]["contrib"] for i in range(P)]),
        "signs": np.stack([grid[i, hi, 0]["signs"] for i in range(P)]),
        "cosines": np.stack([grid[i, hi, 0]["cos"] for i in range(P)]),
        "radii": radii, "robust_accuracy": pgd[:, hi],
        "heatmap_alpha": np.asarray(alphas[hi]),
    }
    arrays = {f"paper_{k}": v for k, v in paper_fig.items()}
    arrays.update({"pgd_accuracy": pgd, "radius_accuracy": racc, "radius_upper": upper,
                   "radius_lower": lower, "sup_distance": sup, "test_accuracy": test_acc})
    metrics = {"median_radius_p1": float(med[i1]), "median_radius_p3": float(med[i3]),
               "test_accuracy_p1": float(test_acc[i1].mean()),
               "test_accuracy_p3": float(test_acc[i3].mean()),
               "pgd_excess_max_p1": float(pgd_excess[i1].max()),
               "pgd_excess_max_p3": float(pgd_excess[i3].max()),
               "sup_distance_p1": sup_p1.tolist(), "sup_distance_p3": sup_p3.tolist(),
               "train_wall_s": float(res.wall_time), "train_status": sorted(set(res.status)),
               "n_nets": len(members)}
    return StudyOutput(checks=checks, arrays=arrays, metrics=metrics)


def plot(arrays: dict, summary: dict, fig_dir) -> list:
    """Combined paper figure (a-e), robust accuracy by PGD and by radii, radius histograms."""
    from gradflow.plots import (
        paper_figure,
        plot_radius_histogram,
        plot_robust_accuracy,
        plot_sup_distance,
    )

    cfg = summary["effective_config"]
    K, ps, alphas = cfg["K"], cfg["ps"], np.asarray(cfg["alphas"])
    hi = cfg["heatmap_alpha_index"]
    radii = np.asarray(cfg["radii"])
    out = []
    paper = {k[len("paper_"):]: v for k, v in arrays.items() if k.startswith("paper_")}
    paper_figure(paper, out=fig_dir / "sec51_paper.png")
    out.append(fig_dir / "sec51_paper.png")
    for key, name in (("pgd_accuracy", "pgd"), ("radius_accuracy", "radii")):
        acc = {p: arrays[key][i, hi] for i, p in enumerate(ps)}
        fig = plot_robust_accuracy(radii, acc, K=K)
        method = ("reference l2 PGD" if name == "pgd" else "per-sample min-norm radii")
        fig.axes[0].set_title(f"{method}, alpha={alphas[hi]:g}", fontsize=7)
        path = fig_dir / f"sec51_robust_{name}.png"
        fig.savefig(path, dpi=200, bbox_inches="tight")
        out.append(path)
    sup = {p: arrays["sup_distance"][i].T for i, p in enumerate(ps)}
    fig = plot_sup_distance(alphas, sup)
    path = fig_dir / "sec51_sup_distance.png"
    fig.savefig(path, dpi=200, bbox_inches="tight")
    out.append(path)
    for i, p in enumerate(ps):
        fig = plot_radius_histogram(arrays["radius_lower"][i, hi].ravel(),
                                    arrays["radius_upper"][i, hi].ravel(), K=K,
                                    title=f"p={p:g}, alpha={alphas[hi]:g}; upper: attack, "
                                          "lower: Lipschitz certificate")
        path = fig_dir / f"sec51_radius_hist_p{p:g}.png"
        fig.savefig(path, dpi=200, bbox_inches="tight")
        out.append(path)
    import matplotlib.pyplot as plt

    plt.close("all")
    return out


register_study(Study(name="sec51", run=run, plot=plot, defaults=DEFAULTS, presets=PRESETS,
                     validate=_validate,
                     description="Reference Section 5.1: SGD-trained pReLU nets, p=1 vs p=3: "
                                 "alignment, sup-distance to F/F_3, robust accuracy vs l2 "
                                 "radius (PGD and per-sample radii)."))
