"""Study `alignment_time`: duration of the alignment phase against log(1/eps), by the ODE engine.

Gradient flow (``simulate``) of a pReLU two-layer net from a balanced init of
scale eps, p in {1, 3}, K=10, K1=6 orthonormal subclasses with small noise.
The alignment phase ends when max_i |f(x_i)| reaches 0.1 (the engine's
``alignment_end_time``). THEORY.md section 4: neurons grow like
exp(G* t) with G* = max_u G(u), and f ~ ||w||^2, so

    T_align(eps) = log(1/eps) / G* + const,

with G* = sqrt(K1)/K for p = 1 (at mubar_+) and 1/K for p = 3 (at a centre mu_k).
Predictions tested: the fitted slope of T_align against log(1/eps) equals 1/G*
for each p (G* from the Theory module's population potential), the ratio of
the slopes p=3/p=1 equals sqrt(K1), and the top neuron has aligned with the
predicted extremal direction at T_align.

Uses only the public API.
"""
from __future__ import annotations

import numpy as np

from gradflow import DataConfig, InitConfig, ModelConfig
from gradflow.dynamics import Stop, simulate
from gradflow.metrics import contributions, direction_cosines
from gradflow.studies import Study, StudyOutput, make_check, register_study
from gradflow.theory import population_potential

DEFAULTS = {
    "K": 10, "K1": 6, "D": 40, "n": 1000, "alpha": 0.02, "width": 40,
    "eps": [float(e) for e in np.logspace(-2, -10, 9)], "ps": [1.0, 3.0], "seeds": 3,
    "rtol": 1e-6, "norm_cap": 1.0,
}
PRESETS = {
    "smoke": {"D": 12, "n": 100, "width": 8, "eps": [1e-2, 1e-4, 1e-6], "seeds": 1,
              "rtol": 1e-5},
    "quick": {"D": 20, "n": 400, "width": 20, "eps": [1e-2, 1e-4, 1e-6, 1e-8, 1e-10],
              "seeds": 1},
    "paper": {},
}


def _validate(cfg: dict) -> None:
    DataConfig(K=cfg["K"], K1=cfg["K1"], D=cfg["D"], n=cfg["n"], alpha=cfg["alpha"])
    if 2 * cfg["K1"] < cfg["K"]:
        # the predictions below follow the positive class (G* at mubar_+ or mu_k); with
        # K2 > K1 the negative neurons grow first (gradflow.theory.alignment_rate)
        raise ValueError(f"`K1` must be >= K - K1 = {cfg['K'] - cfg['K1']} for this study "
                         f"(the positive class must be the larger one), got {cfg['K1']}")
    e = cfg["eps"]
    if len(e) < 2 or any(not 0 < x < 1 for x in e) or any(b >= a for a, b in zip(e, e[1:])):
        raise ValueError(f"`eps` must be >= 2 decreasing values in (0, 1), got {e}")
    if sorted(cfg["ps"]) != [1.0, 3.0]:
        raise ValueError(f"`ps` must be [1.0, 3.0], got {cfg['ps']}")
    for key in ("width", "seeds"):
        if cfg[key] < 1:
            raise ValueError(f"`{key}` must be an integer >= 1, got {cfg[key]}")
    for key in ("rtol", "norm_cap"):
        if not cfg[key] > 0:
            raise ValueError(f"`{key}` must be > 0, got {cfg[key]}")


def g_star(K: int, K1: int, p: float) -> tuple[float, np.ndarray]:
    """(max_u G(u), argmax) of the population potential over the candidates mubar_+ and mu_1
    (the maximisers for p <= 2 and p >= 2, THEORY.md section 4); standard-basis centres."""
    C = np.eye(K)
    lab = np.where(np.arange(K) < K1, 1.0, -1.0)
    cands = np.vstack([np.where(lab > 0, 1.0, 0.0) / np.sqrt(K1), C[0]])
    G = population_potential(cands, C, lab, p)
    return float(G.max()), cands[int(np.argmax(G))]


def run(cfg: dict, ctx) -> StudyOutput:
    K, K1, ps, eps = cfg["K"], cfg["K1"], cfg["ps"], np.asarray(cfg["eps"])
    S = cfg["seeds"]
    T = np.full((len(ps), S, eps.size), np.nan)
    align_cos = np.full((len(ps), S, eps.size), np.nan)
    nfev = np.zeros((len(ps), S, eps.size), dtype=int)
    gs = {p: g_star(K, K1, p)[0] for p in ps}
    for i, p in enumerate(ps):
        for s in range(S):
            seed = ctx.seed * 1009 + s
            data = DataConfig(K=K, K1=K1, D=cfg["D"], n=cfg["n"], alpha=cfg["alpha"],
                              sizes="equal", seed=seed)
            for j, e in enumerate(eps):
                ctx.log(f"alignment_time: p={p:g} seed {s} eps={e:.0e}")
                # stop at neuron size norm_cap (f ~ size^2 = O(1)): just past the alignment end
                t_max = 3.0 * np.log(1.0 / e) / gs[p] + 200.0
                sol = simulate(data, ModelConfig(width=cfg["width"], p=p),
                               InitConfig(eps=float(e), mode="balanced", seed=seed),
                               stop=Stop(t_max=t_max, norm_cap=cfg["norm_cap"]), save_at=2,
                               progress=False, options={"rtol": cfg["rtol"]})
                nfev[i, s, j] = sol.nfev
                if sol.alignment_end_time is not None:
                    T[i, s, j] = sol.alignment_end_time
                W, v = sol.W[-1], sol.v[-1]
                top = int(np.argmax(contributions(W, v)))
                C = np.eye(K, cfg["D"])
                lab = np.where(np.arange(K) < K1, 1.0, -1.0)
                cos = direction_cosines(W[top:top + 1], C, lab)[0]
                # p = 1: the class average of the neuron's sign; p = 3: the best centre
                own = 0 if v[top] > 0 else 1
                align_cos[i, s, j] = cos[own] if p == 1.0 else cos[2:].max()
    x = np.log(1.0 / eps)
    slope = np.full((len(ps), S), np.nan)
    intercept = np.full((len(ps), S), np.nan)
    for i in range(len(ps)):
        for s in range(S):
            if np.all(np.isfinite(T[i, s])):
                slope[i, s], intercept[i, s] = np.polyfit(x, T[i, s], 1)
    m = slope.mean(axis=1)
    i1, i3 = ps.index(1.0), ps.index(3.0)
    checks = [
        # 5%: the sample potential differs from the population G* by O(alpha^2 + 1/sqrt(n/K)),
        # and the noise alpha tilts the maximiser; both are a few percent here.
        make_check("p=1 slope dT_align/dlog(1/eps) = 1/G* = K/sqrt(K1)", theory=1 / gs[1.0],
                   measured=m[i1], rtol=0.05),
        make_check("p=3 slope dT_align/dlog(1/eps) = 1/G* = K", theory=1 / gs[3.0],
                   measured=m[i3], rtol=0.05),
        make_check("slope ratio p=3 / p=1 = sqrt(K1)", theory=np.sqrt(K1),
                   measured=m[i3] / m[i1], rtol=0.05),
        # 0.99: at the alignment end the top neuron has turned onto its extremal vector
        # up to O(alpha) tilt and the O(eps) remainder of its initial direction.
        make_check("p=1 top neuron cos with its class average at T_align (min over runs, "
                   "eps <= 1e-4)", theory=1.0,
                   measured=float(np.nanmin(align_cos[i1][:, eps <= 1e-4])),
                   agrees=bool(np.nanmin(align_cos[i1][:, eps <= 1e-4]) > 0.99)),
        make_check("p=3 top neuron cos with a centre at T_align (min over runs, eps <= 1e-4)",
                   theory=1.0, measured=float(np.nanmin(align_cos[i3][:, eps <= 1e-4])),
                   agrees=bool(np.nanmin(align_cos[i3][:, eps <= 1e-4]) > 0.99)),
    ]
    arrays = {"eps": eps, "ps": np.asarray(ps), "T_align": T, "slope": slope,
              "intercept": intercept, "align_cos": align_cos, "nfev": nfev,
              "G_star": np.asarray([gs[p] for p in ps])}
    metrics = {"slope_p1": float(m[i1]), "slope_p3": float(m[i3]),
               "theory_slope_p1": 1 / gs[1.0], "theory_slope_p3": 1 / gs[3.0],
               "intercept_p1": float(intercept[i1].mean()),
               "intercept_p3": float(intercept[i3].mean()), "total_nfev": int(nfev.sum())}
    return StudyOutput(checks=checks, arrays=arrays, metrics=metrics)


def plot(arrays: dict, summary: dict, fig_dir) -> list:
    """T_align against log(1/eps) per p with the fitted and predicted slopes."""
    import matplotlib.pyplot as plt

    from gradflow.plots import new_figure, p_colour, p_label, paper_style, save_figure

    eps, ps, T = arrays["eps"], arrays["ps"], arrays["T_align"]
    x = np.log(1.0 / eps)
    with paper_style():
        fig, ax = new_figure("column", 0.75)
        for i, p in enumerate(ps):
            c = p_colour(float(p))
            for s in range(T.shape[1]):
                ax.plot(x, T[i, s], "o", color=c, ms=3,
                        label=f"{p_label(float(p))} (ODE)" if s == 0 else None)
            b = float(np.nanmean(arrays["intercept"][i]))
            g = float(arrays["G_star"][i])
            ax.plot(x, b + x / g, "--", color=c, lw=0.8,
                    label=f"slope 1/G* = {1 / g:.3g} (theory)")
        ax.set_xlabel(r"$\log(1/\epsilon)$")
        ax.set_ylabel("alignment-phase end $T$ (max$|f|$ = 0.1)")
        K1 = summary["effective_config"]["K1"]
        ax.set_title(f"predicted slope ratio p3/p1 = sqrt(K1) = {np.sqrt(K1):.3f}", fontsize=7)
        ax.legend(fontsize=6)
        path = fig_dir / "alignment_time.png"
        save_figure(fig, path)
        plt.close(fig)
    return [path]


register_study(Study(name="alignment_time", run=run, plot=plot, defaults=DEFAULTS,
                     presets=PRESETS, validate=_validate,
                     description="Alignment-phase duration vs log(1/eps) by the ODE engine: "
                                 "slopes 1/G*, ratio sqrt(K1)."))
