"""The simulate / train / radius commands: their config schemas and what they write.

Each run folder holds ``effective_config.yaml``, ``summary.json`` (kind, status,
metrics) and its arrays; simulate and train also write ``params.npz`` (the final
W, v[, b, center]) so ``radius`` can measure the saved model. The heavy modules
(gradflow.dynamics, gradflow.backend, gradflow.attacks) are imported inside the
functions, so a command loads only what it uses.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import DataConfig, InitConfig, ModelConfig
from ..io import load_npz, save_json, save_npz
from ..model import TwoLayerParams
from .config import load_yaml

#: The small default problem shared by `gradflow simulate/train` and the sweep tasks.
DEFAULT_PROBLEM: dict[str, Any] = {
    "data": DataConfig(K=4, K1=2, D=20, alpha=0.1, n=200).to_dict(),
    "model": ModelConfig(width=20).to_dict(),
    "init": InitConfig(eps=1e-3).to_dict(),
    "loss": "exponential",
    "n_test": 1000,
    "top": 4,
}

SIMULATE_DEFAULTS: dict[str, Any] = {**DEFAULT_PROBLEM, "solver": "gradflow", "options": {},
                                     "t_max": 100.0, "save_at": 100}
RADIUS_DEFAULTS: dict[str, Any] = {"n_points": 200, "split": "test", "lower": "auto"}

#: The reference Section 5.1 network and data (THEORY.md section 7) for --preset paper.
PAPER_PROBLEM: dict[str, Any] = {
    "data": {"K": 10, "K1": 6, "D": 1000, "n": 20000, "alpha": 0.1},
    "model": {"width": 2000, "p": 1.0},
    "init": {"eps": 1e-7, "mode": "independent"},
    "n_test": 20000,
}
SIMULATE_PRESETS = {"quick": {}, "paper": {**PAPER_PROBLEM, "t_max": 2000.0}}
TRAIN_PRESETS = {"quick": {"train": {"optimizer": "gd", "lr": 0.5, "epochs": 200}},
                 "paper": {**PAPER_PROBLEM, "train": {"optimizer": "sgd", "lr": 0.2, "epochs": 401,
                                                      "batch_size": 100, "dtype": "float32",
                                                      "n_snapshots": 0, "eval_every": 10,
                                                      "rank_every": 0}}}
RADIUS_PRESETS = {"quick": {}, "paper": {"n_points": 2000}}


def train_defaults() -> dict[str, Any]:
    from ..backend import TrainConfig

    tc = TrainConfig().to_dict()
    tc.pop("device")  # the common --device option sets it
    tc["betas"] = list(tc["betas"])
    tc["progress"] = False
    return {**DEFAULT_PROBLEM, "train": tc}


def save_params(path: Path, params: TwoLayerParams) -> None:
    arrays = {"W": params.W, "v": params.v}
    if params.b is not None:
        arrays["b"] = params.b
    if params.center is not None:
        arrays["center"] = params.center
    save_npz(path, **arrays)


def load_params(path: Path) -> TwoLayerParams:
    a = load_npz(path)
    return TwoLayerParams(a["W"], a["v"], a.get("b"), a.get("center"))


def compute_simulate(cfg: dict[str, Any], folder: Path, progress: bool = False) -> dict:
    """Integrate the gradient flow with ``gradflow.dynamics.simulate``; save solution + params."""
    from ..dynamics import simulate
    from ..sweep.gd import build_problem, summarise

    problem = build_problem(cfg)
    sol = simulate(problem.train, problem.model, problem.params, loss=cfg["loss"],
                   solver=cfg["solver"], options=cfg["options"] or None, t_max=cfg["t_max"],
                   save_at=cfg["save_at"], progress=progress)
    sol.save(folder / "solution")
    final = sol.params_at(-1)
    save_params(folder / "params.npz", final)
    summary = {"kind": "simulate", "status": sol.status, "message": sol.message,
               "metrics": summarise(problem, final, time=float(sol.t[-1]),
                                    alignment_end_time=sol.alignment_end_time,
                                    nfev=sol.nfev, wall_time=sol.wall_time)}
    save_json(folder / "summary.json", summary)
    return summary


def compute_train(cfg: dict[str, Any], folder: Path, device: str, progress: bool = False) -> dict:
    """Train with ``gradflow.backend.train`` from the same init; save history + params."""
    from ..backend import TrainConfig, make_two_layer, train
    from ..sweep.gd import build_problem, summarise
    from ..torch_model import from_torch

    problem = build_problem(cfg)
    tc = dict(cfg["train"], device=device, progress=progress, betas=tuple(cfg["train"]["betas"]))
    tcfg = TrainConfig.from_dict(tc)
    net = make_two_layer(problem.model, problem.init, problem.data_cfg.D,
                         centres=problem.train.centres, dtype=tcfg.dtype, device=device)
    res = train(net, problem.train, tcfg, test_data=problem.test)
    final = from_torch(res.model)
    final = TwoLayerParams(np.asarray(final.W, float), np.asarray(final.v, float),
                           None if final.b is None else np.asarray(final.b, float),
                           None if final.center is None else np.asarray(final.center, float))
    save_params(folder / "params.npz", final)
    save_npz(folder / "history.npz", **{k: np.asarray(v) for k, v in res.history.items()})
    summary = {"kind": "train", "status": res.status, "message": res.message,
               "metrics": summarise(problem, final, epochs=res.epochs_done,
                                    wall_time=res.wall_time)}
    save_json(folder / "summary.json", summary)
    return summary


def read_model_dir(model_dir: str | Path) -> tuple[dict, TwoLayerParams]:
    """The effective config and final parameters saved by simulate/train in ``model_dir``."""
    d = Path(model_dir)
    if not d.is_dir():
        raise ValueError(f"model folder `{d}` does not exist")
    for name in ("effective_config.yaml", "params.npz"):
        if not (d / name).is_file():
            raise ValueError(f"`{d}` is not a saved model: {name} is missing "
                             "(run `gradflow simulate` or `gradflow train` first)")
    cfg = load_yaml(d / "effective_config.yaml")
    if not {"data", "model"} <= set(cfg):
        raise ValueError(f"`{d / 'effective_config.yaml'}` lacks the data/model sections")
    return cfg, load_params(d / "params.npz")


def compute_radius(model_dir: Path, cfg: dict[str, Any], folder: Path, seed: int,
                   device: str) -> dict:
    """Per-sample l2 radius brackets of a saved model at data points (gradflow.attacks)."""
    import torch

    from ..attacks.radius import attack_radius
    from ..data import make_subclass_data
    from ..torch_model import to_torch

    mcfg, params = read_model_dir(model_dir)
    data_cfg = DataConfig.from_dict(mcfg["data"])
    model = ModelConfig.from_dict(mcfg["model"])
    net = to_torch(params, model, dtype=torch.float64, device=device)
    k = cfg["n_points"]
    if cfg["split"] == "train":
        # the training points themselves: a draw's noise depends on n, so draw all n
        if k > data_cfg.n:
            raise ValueError(f"`n_points` must be <= {data_cfg.n} (the model's training set) "
                             f"with split 'train', got {k}")
        data = make_subclass_data(data_cfg, "train")
    else:
        data = make_subclass_data(data_cfg, "test", n=k)
    X, labels, subclass = data.X[:k], data.y[:k], data.subclass[:k]
    x = torch.as_tensor(X, dtype=torch.float64, device=device)
    y = torch.as_tensor(labels, dtype=torch.float64, device=device)
    t0 = time.perf_counter()
    res = attack_radius(net, x, y, lower=cfg["lower"], seed=seed)
    lower, upper = res.lower.cpu().numpy(), res.upper.cpu().numpy()
    save_npz(folder / "radii.npz", lower=lower, upper=upper,
             clean_correct=res.clean_correct.cpu().numpy(), subclass=subclass)
    K = data_cfg.K
    summary = {"kind": "radius", "model_dir": str(model_dir), "metrics": {
        "median_upper": float(np.median(upper)), "median_lower": float(np.median(lower)),
        "clean_accuracy": float(res.clean_correct.float().mean()),
        "theory_relu_solution": 1.0 / np.sqrt(K), "theory_best": np.sqrt(2) / 2,
        "wall_time": time.perf_counter() - t0}}
    save_json(folder / "summary.json", summary)
    return summary
