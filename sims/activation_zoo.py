"""Study `activation_zoo`: which activations make gradient-trained two-layer nets robust on
Gaussian-subclass data, and why (none of the source papers has this study).

Network f(x) = sum_j v_j sigma(x; w_j), small balanced init of scale eps, exponential loss,
balanced classes K1 = K/2, orthonormal centres, equal subclass sizes. Trainer: full-batch
GD on the torch backend (``trainer='gd'``, default: forward Euler of the gradient flow with
step ``lr``), or the gradient flow integrated by the adaptive ODE engine
(``gradflow.dynamics.simulate``, ``trainer='ode'``; exact flow, but about 20 ms per field
evaluation at n = 800, h = 40 on this machine, too slow for the quick preset).
GD needs lr < 2 / (h c0^2) for an activation with phi(0) = c0 != 0: at f ~ 0 the loss
Hessian in v is (1/n) sum_i phi_i phi_i^T with phi_i ~ c0 (1, ..., 1), top eigenvalue h c0^2
(softplus, h = 40: lr < 0.104; lr = 0.4 overflowed). The study uses lr = min(lr, 1/(h c0^2)).
relu^p is trained by the ODE engine (``trainer_relu_p``): after its slow escape it blows up
in finite time, and GD with a fixed step scrambled the directions there (measured: centre
share 0.3-0.5 with lr = 0.4).

Prediction from the small-initialisation analysis (the alignment phase, f ~ 0). Write
phi(z) = c0 + c1 z + c2 z^2 + ... near z = 0 and m = (1/n) sum_i y_i x_i ~ (mu_+ - mu_-)/K.

* ReLU-type (pReLU p = 1, capped ReLU): while ||w_j|| << beta the cap never binds
  (<w_j, x> < beta for all data), so the alignment phase is ReLU's: positive neurons go to
  mubar_+, negative ones to mubar_-, and the trained net is close to
  F = relu(<x, mu_+>) - relu(<x, mu_->), whose radius at a centre is 1/sqrt(K).
* Smooth with c1 != 0 (softplus c1 = 1/2, SiLU 1/2, GELU 1/2, ELU 1, tanh 1): to first order
  dv_j/dt = c0 ybar + c1 <w_j, m>,  dw_j/dt = c1 v_j m + O(eps). Every neuron, whatever the
  sign of v_j, turns to +-mbar = m/||m|| = (mu_+ - mu_-)/sqrt(K) and grows at rate c1 ||m||
  = c1/sqrt(K). The net becomes a single-index model h(<mbar, x>): a linear decision
  boundary, radius |<mbar, mu_k>| = 1/sqrt(K) at every centre -- as fragile as ReLU.
  The higher Taylor terms (SiLU z^2/4, GELU z^2/sqrt(2 pi)) are O(eps) relative to c1 m
  and do not act during alignment. The constant c0 (softplus: log 2) never enters
  dw/dt (phi' has no constant from c0); it adds the same drift c0 ybar to every v_j, i.e.
  it acts as an output bias c0 sum_j v_j that fits the class imbalance ybar (0 here, with
  K1 = K/2 and equal sizes) and breaks the balance v_j^2 = ||w_j||^2.
* Lowest term of degree p > 2: pReLU p = 3 (normalised, 1-homogeneous) aligns with the
  individual centres (G = sum_k y_k relu(<u, mu_k>)^3 / K has a maximiser at every positive
  centre), giving F_3 and the radius sqrt(2)/2 for every K. The unnormalised relu^p
  follows the same direction flow with a time change, but its norm obeys
  d||w||/dt ~ ||w||^p G: escape time ~ 1/((p - 1) G eps^(p-1)), so it needs a larger init
  (``eps_relu_p``) to leave the saddle in a finite run; once it does, prediction = F_p.

So: only activations whose leading term at 0 has degree > 2 (with no linear part) are
predicted to be robust (radius ~ sqrt(2)/2, independent of K); every activation with a
linear term at 0 or a ReLU kink is predicted to give radius ~ 1/sqrt(K).

Measured for each activation and K: the directions of the dominant neurons (cosines with
mbar, mubar_+-, mu_k; the reduced alignment flow ``find_extremal_vectors`` gives the
predicted limits for the homogeneous cases), and the per-sample l2 radius
(``attack_radius``: minimum-norm attack, verified upper bound) at test points.
Uses only the public API.
"""
from __future__ import annotations

import numpy as np
import torch

from gradflow import (
    DataConfig,
    InitConfig,
    ModelConfig,
    TwoLayerParams,
    get_activation,
    make_subclass_data,
    to_torch,
)
from gradflow.attacks import attack_radius
from gradflow.backend import TrainConfig, make_two_layer, torch_threads, train
from gradflow.dynamics import Potential, Stop, find_extremal_vectors, simulate
from gradflow.studies import Study, StudyOutput, make_check, register_study

# name -> (activation, params, predicted class of solution)
ZOO = {
    "relu": ("prelu", {"p": 1.0}, "relu"),
    "capped_relu_0.1": ("capped_relu", {"beta": 0.1}, "relu"),
    "capped_relu_1": ("capped_relu", {"beta": 1.0}, "relu"),
    "capped_relu_10": ("capped_relu", {"beta": 10.0}, "relu"),
    "softplus": ("softplus", {}, "linear"),
    "silu": ("silu", {}, "linear"),
    "gelu": ("gelu", {}, "linear"),
    "elu": ("elu", {}, "linear"),
    "tanh": ("tanh", {}, "linear"),
    "prelu3": ("prelu", {"p": 3.0}, "centres"),
    "relu_p3": ("relu_p", {"p": 3.0}, "centres"),
}
KINDS = ("linear", "relu", "centres")

DEFAULTS = {
    "activations": list(ZOO), "Ks": [4, 8, 16], "D": 32, "n_per_subclass": 50, "alpha": 0.05,
    "width": 40, "eps": 1e-4, "eps_relu_p": 1e-3, "t_max": 240.0, "t_max_relu_p": 1e9,
    "trainer": "gd", "trainer_relu_p": "ode", "lr": 0.4, "n_radius": 60,
    "top_mass": 0.9, "n_starts": 64, "threads": 1,
}
PRESETS = {
    "smoke": {"activations": ["relu", "silu", "prelu3"], "Ks": [4, 8], "D": 16,
              "n_per_subclass": 15, "width": 12, "t_max": 160.0, "n_radius": 16,
              "n_starts": 16},
    "quick": {},
    "paper": {"Ks": [4, 8, 16, 32], "D": 64, "n_per_subclass": 200, "width": 100,
              "eps": 1e-6, "eps_relu_p": 1e-4, "t_max": 600.0, "t_max_relu_p": 1e12,
              "n_radius": 200, "threads": 0},
}


def _validate(cfg: dict) -> None:
    bad = [a for a in cfg["activations"] if a not in ZOO]
    if not cfg["activations"] or bad:
        raise ValueError(f"`activations` must be a non-empty list from {list(ZOO)}, got "
                         f"unknown {bad}")
    if not cfg["Ks"] or any(int(K) < 2 or int(K) % 2 or int(K) > int(cfg["D"])
                            for K in cfg["Ks"]):
        raise ValueError(f"`Ks` must hold even K with 2 <= K <= D={cfg['D']}, got {cfg['Ks']}")
    for key in ("width", "n_per_subclass", "n_radius", "n_starts"):
        if int(cfg[key]) < 1:
            raise ValueError(f"`{key}` must be >= 1, got {cfg[key]}")
    for key in ("trainer", "trainer_relu_p"):
        if cfg[key] not in ("ode", "gd"):
            raise ValueError(f"`{key}` must be 'ode' or 'gd', got {cfg[key]!r}")
    for key in ("eps", "eps_relu_p", "lr", "t_max", "t_max_relu_p", "alpha"):
        if not float(cfg[key]) > 0:
            raise ValueError(f"`{key}` must be > 0, got {cfg[key]}")
    if not 0 < float(cfg["top_mass"]) <= 1:
        raise ValueError(f"`top_mass` must be in (0, 1], got {cfg['top_mass']}")


def predicted_radius(kind: str, K: int) -> float:
    """Radius at a centre: 1/sqrt(K) for the linear and ReLU solutions, sqrt(2)/2 for F_p."""
    return float(np.sqrt(0.5)) if kind == "centres" else float(1.0 / np.sqrt(K))


def _targets(data) -> tuple[np.ndarray, list[str]]:
    """Unit rows [mbar, mubar_+, mubar_-, mu_1..mu_K] and the kind each one stands for."""
    m = data.mu_plus - data.mu_minus
    T = np.vstack([m / np.linalg.norm(m), data.mubar_plus, data.mubar_minus, data.centres])
    return T, ["linear", "relu", "relu"] + ["centres"] * data.centres.shape[0]


def _direction_kinds(W, v, data, top_mass: float) -> dict:
    """Contribution-weighted share of dominant neurons nearest (|cos|) to each kind of target.

    Contribution |v_j| ||w_j||; dominant = the largest ones holding ``top_mass`` of the total.
    """
    norms = np.linalg.norm(W, axis=1)
    c = np.abs(v) * norms
    order = np.argsort(c)[::-1]
    k = int(np.searchsorted(np.cumsum(c[order]) / c.sum(), top_mass)) + 1
    idx = order[:k]
    T, kinds = _targets(data)
    cos = np.abs((W[idx] / norms[idx, None]) @ T.T)
    best = cos.argmax(axis=1)
    share = {kd: float(c[idx][[kinds[b] == kd for b in best]].sum() / c[idx].sum())
             for kd in KINDS}
    share["mean_best_cos"] = float(np.average(cos.max(axis=1), weights=c[idx]))
    return share


def _train(name: str, K: int, cfg: dict, seed: int, device: str):
    """Train one net: the gradient flow by the adaptive ODE engine ('ode', default) or
    full-batch GD (forward Euler, 'gd'); then radii at fresh test points."""
    act, params, _ = ZOO[name]
    data_cfg = DataConfig(K=K, K1=K // 2, D=int(cfg["D"]), alpha=float(cfg["alpha"]),
                          n=K * int(cfg["n_per_subclass"]), sizes="equal", seed=seed)
    train_data = make_subclass_data(data_cfg, "train")
    test_data = make_subclass_data(data_cfg, "test", n=int(cfg["n_radius"]))
    model_cfg = ModelConfig(width=int(cfg["width"]), activation=act, **params)
    slow = act == "relu_p"  # escape time ~ 1/(G eps^(p-1)): larger init, longer horizon
    eps = float(cfg["eps_relu_p"] if slow else cfg["eps"])
    t_max = float(cfg["t_max_relu_p"] if slow else cfg["t_max"])
    init = InitConfig(eps=eps, seed=seed)
    trainer = cfg["trainer_relu_p"] if slow else cfg["trainer"]
    if trainer == "ode":
        # relu^p blows up in finite time once aligned (d||w||/dt ~ ||w||^p): stop at a small
        # loss instead of integrating into the singularity
        stop = Stop(t_max=t_max, loss_target=1e-3) if slow else Stop(t_max=t_max)
        sol = simulate(train_data, model_cfg, init, stop=stop, save_at=2, progress=False)
        status, loss = sol.status, float(sol.loss[-1])
        net = to_torch(TwoLayerParams(sol.W[-1], sol.v[-1]), model_cfg)
    else:
        net = make_two_layer(model_cfg, init, data_cfg.D)
        # stability of the constant mode: lr < 2 / (h c0^2); keep a factor 2 below it
        c0 = float(get_activation(act, **params).phi(np.zeros(1))[0])
        lr = min(float(cfg["lr"]), 1.0 / (int(cfg["width"]) * c0 ** 2)) if c0 else float(cfg["lr"])
        steps = int(round(t_max / lr))
        tcfg = TrainConfig(optimizer="gd", lr=lr, epochs=steps, loss="exponential",
                           dtype="float64", device=device, seed=seed, n_snapshots=0,
                           eval_every=steps, rank_every=0, progress=False)
        res = train(net, train_data, tcfg)
        status, loss = res.status, float(res.history["loss"][-1])
    net = net.cpu().eval()
    W, v = net.W.detach().numpy(), net.v.detach().numpy()
    X = torch.as_tensor(test_data.X)
    y = torch.as_tensor(test_data.y)
    rad = attack_radius(net, X, y, lower="none", seed=seed)
    with torch.no_grad():
        acc = float((torch.sign(net(X)) == y).double().mean())
    return {"status": status, "loss": loss, "acc": acc, "radii": rad.upper.numpy(),
            "dirs": _direction_kinds(W, v, train_data, float(cfg["top_mass"]))}


def _reduced_prediction(K: int, p: float, cfg: dict, seed: int) -> str:
    """Kind of the best maximiser of the population G_p found by the reduced alignment flow."""
    D = int(cfg["D"])
    centres = np.eye(K, D)
    labels = np.where(np.arange(K) < K // 2, 1.0, -1.0)
    res = find_extremal_vectors(Potential.population(centres, labels, p),
                                n_starts=int(cfg["n_starts"]), seed=seed, t_max=400.0)
    best = max(res.extrema, key=lambda e: e.G)
    return best.kind


def run(cfg: dict, ctx) -> StudyOutput:
    with torch_threads(int(cfg["threads"])):  # one thread: intra-op threads thrash when loaded
        return _run(cfg, ctx)


def _run(cfg: dict, ctx) -> StudyOutput:
    names, Ks = list(cfg["activations"]), [int(K) for K in cfg["Ks"]]
    med = np.full((len(names), len(Ks)), np.nan)
    share = np.full((len(names), len(Ks), len(KINDS)), np.nan)
    acc = np.full((len(names), len(Ks)), np.nan)
    metrics, checks = {}, []
    reduced = {p: [_reduced_prediction(K, p, cfg, ctx.seed) for K in Ks] for p in (1.0, 3.0)}
    metrics["reduced_flow_best_maximiser"] = {f"p{p:g}": v for p, v in reduced.items()}
    # p = 1: the population field is discontinuous where <u, mu_k> = 0, and the flow can stop
    # on such a face at the average of a subset of one class's centres (not a true maximiser)
    checks.append(make_check(
        f"reduced flow, population G_1: best limit is a class(-subset) average, K={Ks}",
        theory="class average +", measured=", ".join(reduced[1.0]),
        agrees=all("average +" in k for k in reduced[1.0])))
    checks.append(make_check(
        f"reduced flow, population G_3: best limit is a single centre, K={Ks}",
        theory="centre k", measured=", ".join(reduced[3.0]),
        agrees=all(k.startswith("centre") for k in reduced[3.0])))
    for i, name in enumerate(names):
        for j, K in enumerate(Ks):
            ctx.log(f"activation_zoo: {name} K={K}")
            r = _train(name, K, cfg, ctx.seed, ctx.device)
            med[i, j] = float(np.median(r["radii"]))
            share[i, j] = [r["dirs"][k] for k in KINDS]
            acc[i, j] = r["acc"]
            metrics[f"{name}_K{K}"] = {"status": r["status"], "train_loss": r["loss"],
                                       "test_acc": r["acc"], "median_radius": med[i, j],
                                       **r["dirs"]}
    for i, name in enumerate(names):
        kind = ZOO[name][2]
        pred = [predicted_radius(kind, K) for K in Ks]
        k = KINDS.index(kind)
        # 0.6: the dominant neurons' contribution mass must mostly sit at the predicted kind
        checks.append(make_check(
            f"{name}: dominant neurons align with the predicted '{kind}' directions "
            f"(contribution share, K={Ks})", theory=1.0, measured=share[i, :, k].tolist(),
            agrees=bool(np.all(share[i, :, k] > 0.6))))
        # 25% relative: test points sit at distance ~alpha from the centres and the trained
        # net is only close to the ideal classifier, both shift the radius by O(alpha).
        ok = bool(np.all(np.abs(med[i] - pred) <= 0.25 * np.asarray(pred)) and
                  np.all(acc[i] > 0.9))
        checks.append(make_check(f"{name}: median l2 radius vs K={Ks} matches the '{kind}' "
                                 f"prediction", theory=pred, measured=med[i].tolist(),
                                 agrees=ok))
    robust = [n for i, n in enumerate(names) if np.all(med[i] > 0.5) and np.all(acc[i] > 0.9)]
    predicted_robust = [n for n in names if ZOO[n][2] == "centres"]
    checks.append(make_check("robust set (median radius > 0.5 at every K) = leading Taylor "
                             "degree > 2", theory=", ".join(predicted_robust) or "none",
                             measured=", ".join(robust) or "none",
                             agrees=set(robust) == set(predicted_robust)))
    metrics["robust_activations"] = robust
    arrays = {"names": np.array(names), "Ks": np.array(Ks), "median_radius": med,
              "direction_share": share, "test_acc": acc,
              "predicted_radius": np.array([[predicted_radius(ZOO[n][2], K) for K in Ks]
                                            for n in names])}
    return StudyOutput(checks=checks, arrays=arrays, metrics=metrics)


def _family(name: str) -> str:
    """Which prediction an activation falls under: 'relu', 'smooth', 'prelu' or 'relu_p'."""
    if name == "relu" or name.startswith("capped_relu"):
        return "relu"
    if name.startswith("prelu"):
        return "prelu"
    if name.startswith("relu_p"):
        return "relu_p"
    return "smooth"


def plot(arrays: dict, summary: dict, fig_dir) -> list:
    """(a) median per-sample l2 radius vs K per activation, with 1/sqrt(K) and sqrt(2)/2;
    (b) share of dominant-neuron mass at linear / ReLU / centre directions (largest K)."""
    from matplotlib.ticker import NullFormatter

    from gradflow.plots import (
        OKABE_ITO,
        THEORY_OPT,
        THEORY_RELU,
        activation_label,
        new_figure,
        p_colour,
        panel_label,
        paper_style,
        save_figure,
    )

    names = [str(n) for n in arrays["names"]]
    Ks = np.asarray(arrays["Ks"], dtype=float)
    med, share = arrays["median_radius"], arrays["direction_share"]
    fam_colour = {"relu": p_colour(1), "smooth": OKABE_ITO["orange"], "prelu": p_colour(3),
                  "relu_p": OKABE_ITO["purple"]}
    fam_order = ["relu", "smooth", "prelu", "relu_p"]
    markers = "osD^vP"
    order = sorted(range(len(names)), key=lambda i: fam_order.index(_family(names[i])))
    n_fam = {f: sum(_family(n) == f for n in names) for f in fam_order}
    with paper_style():
        fig, ax = new_figure("double", aspect=0.42, ncols=2, width_ratios=[1.25, 1])
        a = ax[0]
        # y = radius * sqrt(K): the ReLU / linear prediction 1/sqrt(K) becomes the line y = 1
        kk = np.geomspace(Ks.min() * 0.8, Ks.max() * 1.25, 50)
        a.axhline(1.0, color=THEORY_RELU, ls="--", lw=0.9, zorder=1)
        a.plot(kk, np.sqrt(kk / 2), color=THEORY_OPT, ls=":", lw=1.1, zorder=4)
        a.text(kk[-1], 0.96, r"$1/\sqrt{K}$: ReLU $F$, linear boundary", fontsize=6.5,
               color=THEORY_RELU, va="top", ha="right")
        km = np.sqrt(Ks.min() * Ks.max())
        a.text(km, np.sqrt(km / 2) + 0.12, r"$\sqrt{2}/2$: $F_3$ (centres)", fontsize=6.5,
               color=THEORY_OPT, va="bottom", ha="right")
        seen: dict[str, int] = {}
        for i in order:
            fam = _family(names[i])
            j = seen[fam] = seen.get(fam, -1) + 1
            # ReLU-type left of K, smooth right of K, markers spread within a family, so that
            # activations with the same radius stay visible
            shift = {"relu": -0.075, "smooth": 0.075}.get(fam, 0.0)
            dodge = np.exp(shift + 0.03 * (j - (n_fam[fam] - 1) / 2))
            hi = fam == "prelu"
            a.plot(Ks * dodge, med[i] * np.sqrt(Ks), marker=markers[j % len(markers)],
                   color=fam_colour[fam], lw=1.8 if hi else 0.7, ms=4.5 if hi else 3,
                   mfc=fam_colour[fam] if hi else "white", mew=0.8, label=activation_label(names[i]),
                   zorder=3 if hi else 2)
        a.set(xscale="log", xlabel="number of subclasses $K$",
              ylabel=r"median $\ell_2$ radius $\times \sqrt{K}$")
        a.set_xticks(Ks, [f"{k:g}" for k in Ks])
        a.set_xlim(kk[0], kk[-1])
        a.xaxis.set_minor_formatter(NullFormatter())
        a.set_ylim(0.8, max(1.1 * np.nanmax(med * np.sqrt(Ks)), 1.2))
        a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=3, fontsize=6,
                 handlelength=1.8, columnspacing=0.8, labelspacing=0.25)
        panel_label(a, "a", r"radius in units of $1/\sqrt{K}$ (markers offset in $K$)")
        b = ax[1]
        kinds = [("linear", r"$\pm\bar m$ (linear)", fam_colour["smooth"]),
                 ("relu", r"$\bar\mu_\pm$ (ReLU $F$)", fam_colour["relu"]),
                 ("centres", r"centres $\mu_k$ ($F_3$)", fam_colour["prelu"])]
        yy = np.arange(len(names))[::-1]
        left = np.zeros(len(names))
        for k, (_, lab, col) in enumerate(kinds):
            v = share[order, -1, k]
            b.barh(yy, v, left=left, color=col, label=lab, height=0.75, lw=0)
            left += v
        b.set_yticks(yy, [activation_label(names[i]) for i in order], fontsize=6.5)
        for tick, i in zip(b.get_yticklabels(), order):
            tick.set_color(fam_colour[_family(names[i])])
        b.tick_params(axis="y", length=0)
        b.set(xlim=(0, 1), ylim=(-0.6, len(names) - 0.4),
              xlabel=f"share of dominant-neuron mass (K={int(Ks[-1])})")
        b.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=3, handlelength=1.0,
                 columnspacing=1.0)
        panel_label(b, "b", "direction the dominant neurons align with")
        fig.suptitle("Activation zoo, two-layer nets trained from small init on Gaussian-"
                     "subclass data: robustness radius and learned directions", fontsize=8)
        path = fig_dir / "activation_zoo.png"
        save_figure(fig, path, formats=("png",))
    return [path]


register_study(Study(name="activation_zoo", run=run, plot=plot, defaults=DEFAULTS,
                     presets=PRESETS, validate=_validate,
                     description="Implicit bias of small-init gradient training for many "
                                 "activations: predicted vs trained directions and radii vs K."))
