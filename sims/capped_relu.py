"""Study `capped_relu`: capped ReLU a(z; beta) = max(0, min(z, beta)) in MNIST MLPs.

Sooksatra et al. (2024) claim that capping a hidden layer's ReLU makes MLPs more robust,
more so for smaller beta and for the narrowest (bottleneck) layer; that beta = 0.01
underfits; and that the distance between clean and adversarial hidden activations,
||h_l(x_adv) - h_l(x)||, grows through ReLU layers and is damped by the cap. They
publish no code or numbers, so this study states its own.

For each architecture (widths, e.g. 784-256-64-256-10 and the reversed 784-64-256-64-10),
each cap beta in ``betas`` ('none' = plain ReLU) and each placement (hidden layer 1, 2, 3,
or 'all'), an MLP is trained with Adam on cross-entropy, without and (``fgsm_train``) with
FGSM adversarial training (l-inf, ``at_eps``). Each model is measured on ``n_eval`` test
points in the pixel box [0, 1]:

- clean accuracy; PGD robust accuracy (l-inf at ``linf_eps``, l2 at ``l2_eps``);
- per hidden layer l: mean ||h_l(x_adv) - h_l(x)|| (l2 and l-inf) at the final l-inf PGD
  iterate, absolute and relative to the mean ||h_l(x)||;
- the gradient-masking check: on ``n_mask`` correctly classified points, the gradient-only
  minimum-norm l2 radius (DeepFool + boundary refinement) against a gradient-free
  ray-search radius. A configuration is flagged when the gradient attacks report a robust
  accuracy at l2 radius ``l2_eps`` at least ``mask_gap`` higher than the gradient-free
  attack does on the same points: that apparent robustness is an artefact of zero gradients.

Uses only the public API.
"""
from __future__ import annotations

import numpy as np
import torch

from gradflow.attacks import (
    PGD,
    MinNormL2,
    RaySearchL2,
    check_gradient_masking,
    fgsm_hook,
    pgd_hook,
)
from gradflow.backend import MLP, TrainConfig, torch_threads, train
from gradflow.studies import (
    Study,
    StudyOutput,
    load_study_mnist,
    make_check,
    register_study,
    study_mnist_source,
)

DEFAULTS = {
    "archs": ["bottleneck", "reversed"],
    "widths": {"bottleneck": [256, 64, 256], "reversed": [64, 256, 64]},
    "betas": [0.01, 0.1, 1.0, 10.0, 100.0], "uncapped": True,
    "placements": ["1", "2", "3", "all"],
    "epochs": 20, "batch_size": 128, "lr": 1e-3, "n_train": 0, "test_fraction": 0.2,
    "fgsm_train": True, "at_placements": ["1", "2", "3", "all"], "at_eps": 0.1, "n_eval": 1000, "linf_eps": 0.1, "l2_eps": 1.5,
    "pgd_steps": 50, "n_mask": 64, "ray_steps": 300, "mask_gap": 0.1, "mnist_path": "",
    "threads": 1,
}
PRESETS = {
    "smoke": {"archs": ["bottleneck"], "widths": {"bottleneck": [128, 32, 128]},
              "betas": [0.01], "placements": ["1"], "epochs": 4, "n_train": 4000,
              "fgsm_train": False,
              "n_eval": 200, "pgd_steps": 10, "n_mask": 24, "ray_steps": 100},
    "quick": {"archs": ["bottleneck"], "betas": [0.01, 0.1, 1.0], "at_placements": ["2", "all"],
              "epochs": 3, "n_eval": 300, "pgd_steps": 20, "n_mask": 32, "ray_steps": 100},
    "paper": {"threads": 0},
}


def _validate(cfg: dict) -> None:
    if not cfg["archs"] or any(a not in cfg["widths"] for a in cfg["archs"]):
        raise ValueError(f"`archs` must be a non-empty list of keys of `widths` "
                         f"({sorted(cfg['widths'])}), got {cfg['archs']}")
    for name, widths in cfg["widths"].items():
        if len(widths) != 3 or any(int(w) < 1 for w in widths):
            raise ValueError(f"`widths.{name}` must list 3 hidden widths >= 1, got {widths}")
    if any(not b > 0 for b in cfg["betas"]):
        raise ValueError(f"`betas` entries must be > 0, got {cfg['betas']}")
    for key in ("placements", "at_placements"):
        for pl in cfg[key]:
            if pl not in ("1", "2", "3", "all"):
                raise ValueError(f"`{key}` entries must be '1', '2', '3' or 'all', got {pl!r}")
    for key in ("epochs", "batch_size", "n_eval", "pgd_steps", "n_mask"):
        if int(cfg[key]) < 1:
            raise ValueError(f"`{key}` must be >= 1, got {cfg[key]}")
    for key in ("lr", "at_eps", "linf_eps", "l2_eps"):
        if not float(cfg[key]) > 0:
            raise ValueError(f"`{key}` must be > 0, got {cfg[key]}")
    if not 0 < float(cfg["mask_gap"]) < 1:
        raise ValueError(f"`mask_gap` must be in (0, 1), got {cfg['mask_gap']}")


def _specs(beta, placement) -> list[str]:
    cap = "relu" if beta == "none" else f"capped_relu:beta={float(beta):g}"
    return [cap if placement in ("all", str(i)) else "relu" for i in (1, 2, 3)]


def _configs(cfg: dict) -> list[tuple[str, object, object]]:
    """(arch, beta, placement); the uncapped net appears once per architecture."""
    out = []
    for arch in cfg["archs"]:
        for beta in cfg["betas"]:
            out += [(arch, float(beta), pl) for pl in cfg["placements"]]
        if cfg["uncapped"]:
            out.append((arch, "none", "all"))
    return out


def _tag(arch, beta, pl, at: bool) -> str:
    b = "none" if beta == "none" else f"{float(beta):g}"
    return f"{arch}_b{b}_L{pl}{'_fgsm' if at else ''}"


@torch.no_grad()
def _layer_distances(model: MLP, X, X_adv) -> np.ndarray:
    """(L, 4): mean ||dh||_2, mean ||dh||_inf, and both divided by the mean clean ||h||."""
    rows = []
    for h, ha in zip(model.features(X), model.features(X_adv)):
        d = ha - h
        l2 = float(d.norm(dim=1).mean())
        li = float(d.abs().amax(dim=1).mean())
        rows.append([l2, li, l2 / max(float(h.norm(dim=1).mean()), 1e-12),
                     li / max(float(h.abs().amax(dim=1).mean()), 1e-12)])
    return np.array(rows)


def _measure(model: MLP, X, y, cfg: dict, seed: int) -> dict:
    steps = int(cfg["pgd_steps"])
    box = (0.0, 1.0)
    linf = PGD(norm="linf", steps=steps, loss="cross_entropy", bounds=box, seed=seed)
    l2 = PGD(norm="l2", steps=steps, loss="cross_entropy", bounds=box, seed=seed)
    r_inf = linf(model, X, y, float(cfg["linf_eps"]))
    r_l2 = l2(model, X, y, float(cfg["l2_eps"]))
    # final PGD iterate, successful or not, for the layer-wise distances
    x_adv = pgd_hook(float(cfg["linf_eps"]), steps=steps, norm="linf", loss="cross_entropy",
                     random_start=False, bounds=box, seed=seed)(X, y, model)
    dist = _layer_distances(model, X, x_adv)
    # masking: on the first n_mask correctly classified points, the gradient-only min-norm
    # radius (inf where the gradient attack finds nothing) vs a gradient-free ray search
    sub = torch.nonzero(r_l2.clean_correct).flatten()[:int(cfg["n_mask"])]
    Xs, ys = X[sub], y[sub]
    grad_res = MinNormL2(anchor_starts=0, seed=seed)(model, Xs, ys)
    g_rad = torch.where(grad_res.success, grad_res.distance,
                        torch.full_like(grad_res.distance, float("inf")))
    ray = RaySearchL2(steps=int(cfg["ray_steps"]), n_random=10, anchors=X, seed=seed)
    rep = check_gradient_masking(model, Xs, ys, gradient_radius=g_rad, subset=max(len(sub), 1),
                                 rtol=0.5, attack=ray, seed=seed, warn=False)
    eps2 = float(cfg["l2_eps"])
    # robust accuracy at eps2 on the checked points, relative to those points (all correct):
    # gradient view = PGD-l2 and the gradient min-norm radius both fail to break the point
    pgd_sub = r_l2.robust.cpu().numpy()[sub.cpu().numpy()][rep.indices]
    acc_grad = float(np.mean(pgd_sub & (rep.gradient_radius > eps2))) if rep.indices.size else 0.0
    acc_free = float(np.mean(rep.free_radius > eps2)) if rep.indices.size else 0.0
    acc_best = float(np.mean(pgd_sub & (rep.gradient_radius > eps2) & (rep.free_radius > eps2))
                     ) if rep.indices.size else 0.0
    return {"clean": float(r_inf.clean_correct.double().mean()),
            "linf": r_inf.robust_accuracy(), "l2": r_l2.robust_accuracy(), "dist": dist,
            "acc_grad_subset": acc_grad, "acc_free_subset": acc_free,
            # absolute l2 robust accuracy against the best of all attacks (PGD, gradient
            # min-norm, gradient-free), estimated as clean accuracy x checked-point rate
            "best_abs": float(r_inf.clean_correct.double().mean()) * acc_best,
            "flagged_fraction": rep.fraction,
            "masked": bool(acc_grad - acc_free >= float(cfg["mask_gap"])),
            "checked": int(rep.indices.size)}


def _train_one(cfg, widths, specs, Xtr, ytr, at: bool, ctx) -> MLP:
    torch.manual_seed(ctx.seed)
    model = MLP(784, widths, specs, n_outputs=10)
    hook = fgsm_hook(float(cfg["at_eps"]), "linf", loss="cross_entropy", bounds=(0.0, 1.0)) \
        if at else None
    tcfg = TrainConfig(optimizer="adam", lr=float(cfg["lr"]), epochs=int(cfg["epochs"]),
                       batch_size=int(cfg["batch_size"]), loss="cross_entropy", dtype="float32",
                       device=ctx.device, seed=ctx.seed, n_snapshots=0, eval_every=0,
                       rank_every=0, progress=ctx.progress)
    train(model, (Xtr, ytr), tcfg, perturb=hook, throw=True)
    model.eval()
    for q in model.parameters():
        q.requires_grad_(False)
    return model.cpu()


def run(cfg: dict, ctx) -> StudyOutput:
    with torch_threads(int(cfg["threads"])):  # one thread: intra-op threads thrash when loaded
        return _run(cfg, ctx)


def _run(cfg: dict, ctx) -> StudyOutput:
    m = load_study_mnist(cfg, ctx.seed)
    data, Xtr, ytr, X, y = m.data, m.X_train, m.y_train, m.X_eval, m.y_eval
    modes = [False, True] if cfg["fgsm_train"] else [False]
    res, arrays, metrics = {}, {}, {"split_note": data.split_note}
    for arch, beta, pl in _configs(cfg):
        for at in modes:
            if at and beta != "none" and pl not in cfg["at_placements"]:
                continue
            tag = _tag(arch, beta, pl, at)
            ctx.log(f"capped_relu: {tag}")
            model = _train_one(cfg, cfg["widths"][arch], _specs(beta, pl), Xtr, ytr, at, ctx)
            r = _measure(model, X, y, cfg, ctx.seed)
            res[(arch, beta, pl, at)] = r
            arrays[f"{tag}_layer_dist"] = r["dist"]
            for k in ("clean", "linf", "l2", "best_abs", "acc_grad_subset", "acc_free_subset",
                      "flagged_fraction", "masked"):
                metrics[f"{tag}_{k}"] = r[k]
    checks = _checks(cfg, res, modes)
    table = [[_tag(a, b, p, at), r["clean"], r["linf"], r["l2"], r["best_abs"],
              r["acc_grad_subset"], r["acc_free_subset"], float(r["masked"])]
             for (a, b, p, at), r in res.items()]
    arrays["table_rows"] = np.array([t[0] for t in table])
    arrays["table"] = np.array([t[1:] for t in table], dtype=float)
    arrays["table_columns"] = np.array(["clean", "pgd_linf", "pgd_l2", "all_attack_l2_est",
                                        "grad_l2_checked", "free_l2_checked", "masked"])
    metrics["masked_configs"] = [t[0] for t in table if t[-1]]
    return StudyOutput(checks=checks, arrays=arrays, metrics=metrics)


def _checks(cfg: dict, res: dict, modes) -> list:
    checks = []
    numeric = sorted(float(b) for b in cfg["betas"])
    for arch in cfg["archs"]:
        for at in modes:
            sfx = f" ({arch}{', FGSM-AT' if at else ''})"
            base = res.get((arch, "none", "all", at))
            for pl in cfg["placements"]:
                rows = [res[(arch, b, pl, at)] for b in numeric if (arch, b, pl, at) in res]
                if not rows:
                    continue
                pgd = [r["linf"] for r in rows]
                free = [r["best_abs"] for r in rows]
                checks.append(make_check(
                    f"PGD l-inf robust acc decreases with beta {numeric}, cap on layer {pl}{sfx}",
                    theory="non-increasing in beta (paper claim)", measured=pgd,
                    agrees=bool(np.all(np.diff(pgd) <= 0.02)) if len(rows) > 1 else None))
                # 0.02 above: sampling noise of n_eval points
                checks.append(make_check(
                    f"l2 robust acc vs all attacks (est.) decreases with beta, cap on layer {pl}"
                    f"{sfx}", theory="non-increasing in beta (paper claim)", measured=free,
                    agrees=bool(np.all(np.diff(free) <= 0.05)) if len(rows) > 1 else None))
                # 0.05 above: the estimate rests on n_mask points only
                r0 = rows[0]
                constant = r0["clean"] < 0.2  # ~chance (0.1): the net is (nearly) constant
                checks.append(make_check(
                    f"masking check fires for beta={numeric[0]:g} on layer {pl}{sfx} "
                    f"[grad vs gradient-free l2 acc at {float(cfg['l2_eps']):g}, correct pts]",
                    theory="gradient attacks overstate robustness (THEORY 8 caution)",
                    measured=[r0["acc_grad_subset"], r0["acc_free_subset"]],
                    agrees=None if constant else r0["masked"]))
            smallest = res.get((arch, numeric[0], "all", at)) if numeric else None
            if smallest is not None and base is not None:
                checks.append(make_check(
                    f"beta={numeric[0]:g} on all layers underfits: clean acc vs uncapped{sfx}",
                    theory="lower (paper claim)", measured=[smallest["clean"], base["clean"]],
                    agrees=bool(smallest["clean"] < base["clean"] - 0.02)))
            if base is not None:
                d = base["dist"][:, 2]
                checks.append(make_check(
                    f"uncapped ReLU: relative l2 hidden distance grows from layer 1 to 3{sfx}",
                    theory="grows (paper claim)", measured=d.tolist(), agrees=bool(d[-1] > d[0])))
                checks.append(make_check(
                    f"uncapped ReLU: masking check silent{sfx}", theory="not masked",
                    measured=[base["acc_grad_subset"], base["acc_free_subset"]],
                    agrees=not base["masked"]))
                for b in numeric:
                    r = res.get((arch, b, "all", at))
                    if r is None:
                        continue
                    checks.append(make_check(
                        f"cap beta={b:g} on all layers damps the last-layer relative l2 distance"
                        f"{sfx}", theory="smaller than uncapped (paper claim)",
                        measured=[r["dist"][-1, 2], base["dist"][-1, 2]],
                        agrees=bool(r["dist"][-1, 2] < base["dist"][-1, 2])))
            if len(numeric) >= 2:
                b = numeric[1]  # the second-smallest cap: trainable, still binding
                per = {int(pl): res[(arch, b, pl, at)] for pl in ("1", "2", "3")
                       if (arch, b, pl, at) in res}
                if len(per) == 3:
                    narrow = int(np.argmin(cfg["widths"][arch])) + 1
                    for key, what in (("linf", "PGD l-inf"), ("best_abs", "all-attack l2")):
                        vals = {k: r[key] for k, r in per.items()}
                        checks.append(make_check(
                            f"beta={b:g}: capping the narrowest layer ({narrow}) is most robust "
                            f"({what} acc, cap on layer 1, 2, 3){sfx}",
                            theory="narrowest layer best (paper claim)",
                            measured=list(vals.values()),
                            agrees=bool(max(vals, key=vals.get) == narrow)))
    return checks


def _parse_tag(tag: str) -> tuple[str, str, str, bool]:
    """Inverse of `_tag`: (arch, beta string, placement, FGSM-trained)."""
    at = tag.endswith("_fgsm")
    core = tag[: -len("_fgsm")] if at else tag
    rest, pl = core.rsplit("_L", 1)
    arch, beta = rest.rsplit("_b", 1)
    return arch, beta, pl, at


def _beta_key(beta: str) -> float:
    return np.inf if beta == "none" else float(beta)


def plot(arrays: dict, summary: dict, fig_dir) -> list:
    """(a) clean / robust accuracy per configuration, masked ones flagged; (b) layer distances."""
    from matplotlib.lines import Line2D

    from gradflow.plots import OKABE_ITO, new_figure, panel_label, paper_style, save_figure

    rows = [str(r) for r in arrays["table_rows"]]
    T = arrays["table"]
    parsed = {r: _parse_tag(r) for r in rows}
    archs = list(dict.fromkeys(a for a, _, _, _ in parsed.values()))
    pl_order = {"1": 0, "2": 1, "3": 2, "all": 3}
    # rows top to bottom: plain ReLU first, then decreasing cap beta; standard before FGSM-AT
    order = sorted(range(len(rows)), key=lambda i: (
        archs.index(parsed[rows[i]][0]), -_beta_key(parsed[rows[i]][1]), parsed[rows[i]][3],
        pl_order.get(parsed[rows[i]][2], 9)))

    def label(r):
        arch, beta, pl, at = parsed[r]
        where = "all layers" if pl == "all" else f"layer {pl}"
        s = "ReLU, no cap" if beta == "none" else rf"$\beta$={beta}, {where}"
        s += " + FGSM-AT" if at else ""
        return f"{arch}: {s}" if len(archs) > 1 else s

    metrics = [("clean", dict(marker="o", mfc="white", mec=OKABE_ITO["black"])),
               (r"PGD $\ell_\infty$", dict(marker="o", color=OKABE_ITO["blue"])),
               (r"PGD $\ell_2$", dict(marker="s", color=OKABE_ITO["orange"])),
               (r"$\ell_2$, best of all attacks", dict(marker="^", color=OKABE_ITO["vermillion"]))]
    pl_colour = {"1": OKABE_ITO["green"], "2": OKABE_ITO["purple"], "3": OKABE_ITO["skyblue"],
                 "all": OKABE_ITO["black"]}
    groups = sorted({(a, b) for a, b, _, _ in parsed.values()},
                    key=lambda g: (archs.index(g[0]), -_beta_key(g[1])))
    betas = list(dict.fromkeys(b for _, b in groups))
    ncol = min(len(betas), 2)
    nrow = -(-len(betas) // ncol)
    with paper_style():
        fig = new_figure("double", aspect=max(0.5, 0.15 + 0.022 * len(rows)))[0]
        fig.clear()
        fa, fb = fig.subfigures(1, 2, width_ratios=[1.1, 1.0], wspace=0.02)
        ax = fa.subplots()
        yy = np.arange(len(rows))[::-1]
        for y, i in zip(yy, order):
            g = groups.index(parsed[rows[i]][:2])
            if g % 2 == 0:
                ax.axhspan(y - 0.5, y + 0.5, color="0.93", lw=0, zorder=0)
            ax.plot([T[i, 1:4].min(), T[i, 0]], [y, y], color="0.6", lw=0.6, zorder=1)
            if T[i, 6] > 0:
                ax.axhspan(y - 0.5, y + 0.5, color=OKABE_ITO["vermillion"], alpha=0.15, lw=0)
                ax.text(1.01, y, "masked", color=OKABE_ITO["vermillion"], fontsize=6,
                        va="center", ha="left", fontweight="bold")
        for j, (lab, kw) in enumerate(metrics):
            ax.plot(T[order, j], yy, ls="none", ms=3.5, label=lab, zorder=3, **kw)
        ax.axvline(0.1, color="0.4", ls=":", lw=0.8, zorder=1)
        ax.set_yticks(yy, [label(rows[i]) for i in order], fontsize=6)
        for tick, i in zip(ax.get_yticklabels(), order):
            if T[i, 6] > 0:
                tick.set_color(OKABE_ITO["vermillion"])
        ax.set(xlabel="accuracy (dotted: chance)", xlim=(0, 1.13), ylim=(-0.6, len(rows) - 0.4))
        ax.tick_params(axis="y", length=0)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.11), ncols=2, handletextpad=0.3)
        panel_label(ax, "a", "accuracy (red: masking flagged)")
        axb = np.atleast_1d(fb.subplots(nrow, ncol, sharex=True, sharey=True)).ravel()
        for k, beta in enumerate(betas):
            a = axb[k]
            for r in rows:
                arch, b, pl, at = parsed[r]
                if b != beta:
                    continue
                d = arrays[f"{r}_layer_dist"][:, 2]
                a.plot(np.arange(1, d.size + 1), d, color="0.5" if b == "none" else pl_colour[pl],
                       ls="--" if at else "-", marker="os"[archs.index(arch) % 2], ms=2.5,
                       lw=1.0)
            a.set_title("plain ReLU (no cap)" if beta == "none" else rf"cap $\beta$ = {beta}",
                        fontsize=7, pad=2)
            a.set(yscale="log", xticks=[1, 2, 3])
        for a in axb[len(betas):]:
            a.set_visible(False)
        for a in axb[(nrow - 1) * ncol:]:
            a.set_xlabel("hidden layer")
        for a in axb[::ncol]:
            a.set_ylabel(r"$\|\Delta h\|_2\,/\,\|h\|_2$")
        handles = [Line2D([], [], color=c, label="all layers" if p == "all" else f"layer {p}")
                   for p, c in pl_colour.items()
                   if any(q == p and bb != "none" for _, bb, q, _ in parsed.values())]
        handles += [Line2D([], [], color="0.3", label="standard")]
        if any(at for _, _, _, at in parsed.values()):
            handles += [Line2D([], [], color="0.3", ls="--", label="FGSM-AT")]
        if len(archs) > 1:
            handles += [Line2D([], [], color="0.3", marker="os"[i % 2], ls="none", label=a)
                        for i, a in enumerate(archs)]
        fb.legend(handles=handles, loc="outside lower center", ncols=3, title="capped layer",
                  title_fontsize=7)
        fb.suptitle(r"(b) hidden-layer change $x \to x_{adv}$ (PGD $\ell_\infty$)",
                    fontsize=7, x=0.02, ha="left")
        widths = summary["effective_config"].get("widths", {})
        nets = ", ".join(f"784-{'-'.join(map(str, widths[a]))}-10" if a in widths else a
                         for a in archs)
        fig.suptitle(rf"Capped ReLU $\max(0, \min(z, \beta))$ in MNIST MLPs ({nets}): "
                     "does a cap give robustness, or only masked gradients?", fontsize=8)
        path = fig_dir / "capped_relu.png"
        save_figure(fig, path, formats=("png",))
    return [path]


register_study(Study(name="capped_relu", run=run, plot=plot, defaults=DEFAULTS, presets=PRESETS,
                     validate=_validate, data_key=study_mnist_source,
                     description="Capped ReLU per hidden layer of MNIST MLPs: PGD robustness, "
                                 "layer-wise distances, FGSM training, gradient-masking verdict."))
