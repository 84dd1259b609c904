"""Study `smooth_at`: smooth adversarial training (Xie et al. 2020) at MNIST scale.

Xie et al. replace ReLU by a smooth activation in adversarial training with single-step
PGD and report, for ResNet-50 on ImageNet at l-inf 4/255 (PGD-50), robust accuracy
SiLU 42.3% > GELU 41.5% > ELU 40.7% > ReLU 33.0% (clean 69.7 / 69.9 / 69.0 / 68.8).

Here, for a small CNN and an MLP and each activation in ``activations`` (ReLU, softplus,
parametric softplus log(1 + exp(a z))/a with a = 10, SiLU, GELU, ELU, and ReLU in the
forward pass with the parametric-softplus derivative sigmoid(a z) in the backward pass),
a network is trained with single-step l-inf PGD adversarial training,

    x_adv = Proj_{||d||_inf <= eps, x + d in [0, 1]}(x + eps sign(grad_x CE(f(x), y))),

(``at_random_start`` adds a uniform random start) with Adam, and evaluated on ``n_eval``
test points with PGD-k (k in ``pgd_steps``, step 2.5 eps / k, cross-entropy) at the same eps.
The ranking by PGD-50 robust accuracy is compared with the paper's, with the binomial
standard error sqrt(a (1 - a) / n) of every accuracy so that ties are called ties.
Uses only the public API.
"""
from __future__ import annotations

import numpy as np
import torch

from gradflow.attacks import PGD, pgd_hook
from gradflow.backend import MLP, SmallCNN, TrainConfig, torch_threads, train
from gradflow.studies import (
    Study,
    StudyOutput,
    load_study_mnist,
    make_check,
    register_study,
    study_mnist_source,
)

PAPER_RANK = ["silu", "gelu", "elu", "relu"]  # ImageNet ResNet-50, PGD-50 robust accuracy
PAPER = {"silu": (69.7, 42.3), "gelu": (69.9, 41.5), "elu": (69.0, 40.7), "relu": (68.8, 33.0)}
ACTIVATIONS = {"relu": "relu", "softplus": "softplus", "param_softplus": "param_softplus:a=10",
               "silu": "silu", "gelu": "gelu", "elu": "elu",
               "relu_softplus_grad": "relu_softplus_grad:a=10"}

DEFAULTS = {
    "archs": ["cnn", "mlp"], "activations": list(ACTIVATIONS), "cnn_channels": [32, 64],
    "cnn_hidden": 128, "mlp_widths": [512, 512], "epochs": 20, "batch_size": 128, "lr": 1e-3,
    "n_train": 0, "test_fraction": 0.2, "eps": 0.1, "at_random_start": False,
    "n_eval": 1000, "pgd_steps": [10, 50, 200], "rank_steps": 50, "mnist_path": "",
    "threads": 1,
}
PRESETS = {
    "smoke": {"archs": ["mlp"], "activations": ["relu", "silu"], "mlp_widths": [64],
              "epochs": 2, "n_train": 2000, "n_eval": 200, "pgd_steps": [10], "rank_steps": 10},
    "quick": {"cnn_channels": [4, 8], "cnn_hidden": 32, "mlp_widths": [128, 128],
              "epochs": 2, "n_eval": 300, "pgd_steps": [10, 50, 200]},
    "paper": {"threads": 0},
}


def _validate(cfg: dict) -> None:
    if not cfg["archs"] or any(a not in ("cnn", "mlp") for a in cfg["archs"]):
        raise ValueError(f"`archs` must be a non-empty list from ('cnn', 'mlp'), got "
                         f"{cfg['archs']}")
    bad = [a for a in cfg["activations"] if a not in ACTIVATIONS]
    if not cfg["activations"] or bad:
        raise ValueError(f"`activations` must be a non-empty list from {list(ACTIVATIONS)}, "
                         f"got unknown {bad}")
    for key in ("epochs", "batch_size", "n_eval", "cnn_hidden", "rank_steps"):
        if int(cfg[key]) < 1:
            raise ValueError(f"`{key}` must be >= 1, got {cfg[key]}")
    if not cfg["pgd_steps"] or any(int(k) < 1 for k in cfg["pgd_steps"]):
        raise ValueError(f"`pgd_steps` must be a non-empty list of integers >= 1, got "
                         f"{cfg['pgd_steps']}")
    if int(cfg["rank_steps"]) not in [int(k) for k in cfg["pgd_steps"]]:
        raise ValueError(f"`rank_steps` must be one of `pgd_steps` {cfg['pgd_steps']}, got "
                         f"{cfg['rank_steps']}")
    for key in ("lr", "eps"):
        if not float(cfg[key]) > 0:
            raise ValueError(f"`{key}` must be > 0, got {cfg[key]}")


def _model(cfg: dict, arch: str, spec: str) -> torch.nn.Module:
    if arch == "cnn":
        return SmallCNN(activation=spec, channels=tuple(int(c) for c in cfg["cnn_channels"]),
                        hidden=int(cfg["cnn_hidden"]))
    return MLP(784, [int(w) for w in cfg["mlp_widths"]], spec, n_outputs=10)


def _train_eval(cfg: dict, arch: str, act: str, Xtr, ytr, X, y, ctx) -> dict:
    torch.manual_seed(ctx.seed)  # same initial weights for every activation of an arch
    model = _model(cfg, arch, ACTIVATIONS[act])
    eps, box = float(cfg["eps"]), (0.0, 1.0)
    hook = pgd_hook(eps, steps=1, step_size=eps, norm="linf", loss="cross_entropy",
                    random_start=bool(cfg["at_random_start"]), bounds=box, seed=ctx.seed)
    tcfg = TrainConfig(optimizer="adam", lr=float(cfg["lr"]), epochs=int(cfg["epochs"]),
                       batch_size=int(cfg["batch_size"]), loss="cross_entropy", dtype="float32",
                       device=ctx.device, seed=ctx.seed, n_snapshots=0, eval_every=0,
                       rank_every=0, progress=ctx.progress)
    res = train(model, (Xtr, ytr), tcfg, perturb=hook, throw=True)
    model = model.cpu().eval()
    for q in model.parameters():
        q.requires_grad_(False)
    out = {"batch_loss": res.history["batch_loss"]}
    for k in cfg["pgd_steps"]:
        atk = PGD(norm="linf", steps=int(k), loss="cross_entropy", bounds=box, seed=ctx.seed)
        r = atk(model, X, y, eps)
        out[f"pgd{int(k)}"] = r.robust_accuracy()
        out["clean"] = float(r.clean_correct.double().mean())
    return out


def run(cfg: dict, ctx) -> StudyOutput:
    with torch_threads(int(cfg["threads"])):  # one thread: intra-op threads thrash when loaded
        return _run(cfg, ctx)


def _run(cfg: dict, ctx) -> StudyOutput:
    m = load_study_mnist(cfg, ctx.seed)
    data, Xtr, ytr, X, y = m.data, m.X_train, m.y_train, m.X_eval, m.y_eval
    acts = list(cfg["activations"])
    ks = [int(k) for k in cfg["pgd_steps"]]
    arrays, metrics, checks = {"activations": np.array(acts), "pgd_steps": np.array(ks)}, {}, []
    metrics["split_note"] = data.split_note
    rk = f"pgd{int(cfg['rank_steps'])}"
    for arch in cfg["archs"]:
        res = {}
        for act in acts:
            ctx.log(f"smooth_at: {arch} {act}")
            res[act] = _train_eval(cfg, arch, act, Xtr, ytr, X, y, ctx)
            arrays[f"{arch}_{act}_batch_loss"] = res[act]["batch_loss"]
        table = np.array([[res[a]["clean"]] + [res[a][f"pgd{k}"] for k in ks] for a in acts])
        arrays[f"{arch}_table"] = table  # rows: activations; columns: clean, PGD-k...
        for a in acts:
            metrics[f"{arch}_{a}_clean"] = res[a]["clean"]
            for k in ks:
                metrics[f"{arch}_{a}_pgd{k}"] = res[a][f"pgd{k}"]
        rob = {a: res[a][rk] for a in acts}
        ranking = sorted(acts, key=lambda a: -rob[a])
        metrics[f"{arch}_ranking_{rk}"] = ranking
        se = {a: float(np.sqrt(max(rob[a] * (1 - rob[a]), 1e-12) / len(y))) for a in acts}
        present = [a for a in PAPER_RANK if a in rob]
        if len(present) >= 2:
            order = sorted(present, key=lambda a: -rob[a])
            pairs = [(present[i], present[j]) for i in range(len(present))
                     for j in range(i + 1, len(present))]
            concordant = sum(rob[a] > rob[b] for a, b in pairs)
            checks.append(make_check(
                f"{arch}: {rk} robust-accuracy ranking of {present}",
                theory=" > ".join(present), paper=[PAPER[a][1] / 100 for a in present],
                measured=" > ".join(f"{a} {rob[a]:.3f}" for a in order),
                agrees=bool(order == present)))
            metrics[f"{arch}_paper_pairs_concordant"] = f"{concordant}/{len(pairs)}"
        if "relu" in rob:
            smooth = [a for a in ("silu", "gelu", "elu", "softplus", "param_softplus") if a in rob]
            for a in smooth:
                gap = rob[a] - rob["relu"]
                # 2 combined standard errors: a smaller gap is a tie at this n_eval
                sig = 2 * float(np.hypot(se[a], se["relu"]))
                checks.append(make_check(
                    f"{arch}: {a} beats relu in {rk} robust accuracy by > 2 SE ({sig:.3f})",
                    theory="smooth > relu", measured=[rob[a], rob["relu"]],
                    paper=[PAPER[a][1] / 100, PAPER["relu"][1] / 100] if a in PAPER else None,
                    agrees=bool(gap > sig)))
            if "relu_softplus_grad" in rob:
                a = "relu_softplus_grad"
                sig = 2 * float(np.hypot(se[a], se["relu"]))
                checks.append(make_check(
                    f"{arch}: smooth backward only (ReLU forward) beats relu by > 2 SE",
                    theory="smooth backward > relu", measured=[rob[a], rob["relu"]],
                    agrees=bool(rob[a] - rob["relu"] > sig)))
        if len(ks) >= 2:  # stronger attacks can only lower the accuracy (evaluation sanity)
            mono = all(np.all(np.diff(table[i, 1:]) <= 0.01) for i in range(len(acts)))
            checks.append(make_check(f"{arch}: PGD-{ks} accuracy non-increasing in steps",
                                     theory="non-increasing", measured=table[:, 1:].tolist(),
                                     agrees=bool(mono)))
    return StudyOutput(checks=checks, arrays=arrays, metrics=metrics)


# tick labels broken over two lines; the rest come from gradflow.plots.activation_label
_ACT_NAMES = {"param_softplus": "param.\nsoftplus", "relu_softplus_grad": "ReLU,\nsoftplus grad"}


def plot(arrays: dict, summary: dict, fig_dir) -> list:
    """Clean and PGD-k robust accuracy per activation, one panel per architecture."""
    from gradflow.plots import (
        OKABE_ITO,
        activation_label,
        new_figure,
        panel_label,
        paper_style,
        save_figure,
    )

    cfg = summary["effective_config"]
    acts = [str(a) for a in arrays["activations"]]
    ks = [int(k) for k in arrays["pgd_steps"]]
    names = {"cnn": "small CNN", "mlp": "MLP"}
    pgd_cols = [OKABE_ITO[c] for c in ("skyblue", "blue", "vermillion", "orange", "purple")]
    cols = ["0.72"] + [pgd_cols[j % len(pgd_cols)] for j in range(len(ks))]
    labels = ["clean"] + [f"PGD-{k}" for k in ks]
    with paper_style():
        n = len(cfg["archs"])
        fig, axes = new_figure("double", aspect=0.34, ncols=n, sharey=True, squeeze=False)
        x = np.arange(len(acts))
        for i, (ax, arch) in enumerate(zip(axes[0], cfg["archs"])):
            T = arrays[f"{arch}_table"]
            w = 0.84 / T.shape[1]
            for j, (lab, col) in enumerate(zip(labels, cols)):
                ax.bar(x + (j - T.shape[1] / 2 + 0.5) * w, T[:, j], width=w, color=col,
                       label=lab, lw=0)
            ax.axhline(0.1, color="0.3", ls=":", lw=0.8, label="chance")
            ax.set_xticks(x, [_ACT_NAMES.get(a) or activation_label(a) for a in acts], fontsize=6.5)
            ax.tick_params(axis="x", length=0)
            ax.set(ylim=(0, 1), xlim=(-0.55, len(acts) - 0.45))
            if i == 0:
                ax.set_ylabel("accuracy")
            panel_label(ax, "abcdefgh"[i], names.get(arch, arch))
        h, lab = axes[0, 0].get_legend_handles_labels()
        fig.legend(h[1:] + h[:1], lab[1:] + lab[:1], loc="outside lower center",
                   ncols=len(labels) + 1)
        fig.suptitle(rf"Single-step adversarial training with smooth activations, MNIST: "
                     rf"clean and PGD-$k$ $\ell_\infty$ accuracy at $\varepsilon$={cfg['eps']:g}",
                     fontsize=8)
        path = fig_dir / "smooth_at.png"
        save_figure(fig, path, formats=("png",))
    return [path]


register_study(Study(name="smooth_at", run=run, plot=plot, defaults=DEFAULTS, presets=PRESETS,
                     validate=_validate, data_key=study_mnist_source,
                     description="Single-step PGD adversarial training with smooth activations "
                                 "(CNN, MLP on MNIST), PGD-10/50/200; ranking vs Xie et al."))
