"""Model sweep tasks. 'gd': full-batch gradient descent of a two-layer net on subclass data.

theta_{k+1} = theta_k - lr grad L(theta_k),  L = (1/n) sum_i l(y_i f(x_i)),

the forward-Euler discretisation of gradient flow (THEORY.md section 3), with
the exact gradient of ``gradflow.model.loss_and_grad``. It uses only the
foundation, so it runs anywhere and is the cheap real workload for sweeps.
'simulate' and 'train' run the same problem through the ODE engine and the torch
backend; they import those modules lazily and report the same metrics.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import DataConfig, InitConfig, ModelConfig
from ..data import SubclassData, make_subclass_data
from ..init import init_params
from ..model import TwoLayerParams, forward, loss, loss_and_grad
from ..studies.runs import DEFAULT_PROBLEM
from .tasks import register_task

GD_DEFAULTS: dict[str, Any] = {**DEFAULT_PROBLEM, "lr": 0.5, "steps": 400}


@dataclass
class Problem:
    data_cfg: DataConfig
    model: ModelConfig
    init: InitConfig
    train: SubclassData
    test: SubclassData
    params: TwoLayerParams
    loss: str
    top: int


def build_configs(cfg: dict[str, Any]) -> tuple[DataConfig, ModelConfig, InitConfig]:
    """Foundation configs from the cell config; their own checks raise ValueError."""
    data = DataConfig.from_dict(cfg["data"])
    model = ModelConfig.from_dict(cfg["model"])
    init = InitConfig.from_dict(cfg["init"])
    if model.n_outputs != 1:
        raise ValueError("`model.n_outputs` must be 1: subclass data has binary labels")
    if cfg["loss"] not in ("exponential", "logistic"):
        raise ValueError(f"`loss` must be 'exponential' or 'logistic', got {cfg['loss']!r}")
    for key in ("n_test", "top"):
        if cfg[key] < 1:
            raise ValueError(f"`{key}` must be >= 1, got {cfg[key]}")
    return data, model, init


def _validate_gd(cfg: dict[str, Any]) -> None:
    build_configs(cfg)
    if not cfg["lr"] > 0:
        raise ValueError(f"`lr` must be > 0, got {cfg['lr']}")
    if cfg["steps"] < 0:
        raise ValueError(f"`steps` must be >= 0, got {cfg['steps']}")


def build_problem(cfg: dict[str, Any]) -> Problem:
    data_cfg, model, init = build_configs(cfg)
    train = make_subclass_data(data_cfg, "train")
    test = make_subclass_data(data_cfg, "test", n=cfg["n_test"])
    params = init_params(model, init, data_cfg.D, centres=train.centres)
    return Problem(data_cfg, model, init, train, test, params, cfg["loss"], cfg["top"])


def alignment(params: TwoLayerParams, data: SubclassData, top: int) -> dict[str, float]:
    """Mean over the ``top`` neurons by contribution |v_j| ||w_j|| of the largest |cos|
    between w_j and (a) the class averages mubar_+/-, (b) the centres mu_k, (c) either."""
    norms = np.linalg.norm(params.W, axis=1)
    contrib = np.abs(params.v) * norms
    idx = np.argsort(contrib)[::-1][: min(top, params.width)]
    U = params.W[idx] / np.maximum(norms[idx], np.finfo(float).tiny)[:, None]
    cls = np.abs(U @ np.stack([data.mubar_plus, data.mubar_minus]).T).max(axis=1)
    ctr = np.abs(U @ data.centres.T).max(axis=1)
    return {"top_cos_class": float(cls.mean()), "top_cos_centre": float(ctr.mean()),
            "top_cos": float(np.maximum(cls, ctr).mean())}


def summarise(problem: Problem, params: TwoLayerParams, **extra: Any) -> dict[str, Any]:
    """Final loss, train/test accuracy, max |invariant drift|, top-neuron alignment."""
    tr, te = problem.train, problem.test
    final = loss(params, tr.X, tr.y, problem.model, problem.loss)
    acc = {name: float(np.mean(np.sign(forward(params, d.X, problem.model)) == d.y))
           for name, d in (("train_acc", tr), ("test_acc", te))}
    drift = np.abs(params.invariant() - problem.params.invariant())
    return {"final_loss": float(final), **acc, "max_invariant_drift": float(drift.max()),
            **alignment(params, tr, problem.top), "finite": bool(np.isfinite(final)), **extra}


@register_task("gd", defaults=GD_DEFAULTS, validate=_validate_gd)
def gd_cell(cfg: dict[str, Any]) -> dict[str, Any]:
    """Full-batch GD for ``steps`` steps of size ``lr`` (time lr * steps of gradient flow)."""
    problem = build_problem(cfg)
    p = problem.params.copy()
    lr = cfg["lr"]
    X, y = problem.train.X, problem.train.y
    for _ in range(cfg["steps"]):
        _, g = loss_and_grad(p, X, y, problem.model, problem.loss)
        p.W -= lr * g.W
        p.v -= lr * g.v
        if g.b is not None:
            p.b = p.b - lr * g.b
    return summarise(problem, p, time=lr * cfg["steps"])


def _needs(module: str, task: str) -> Callable[[dict], None]:
    def validate(cfg: dict) -> None:
        if importlib.util.find_spec(module) is None:
            raise ValueError(f"task {task!r} is not available: module {module} is not installed "
                             "in this checkout yet")
        build_configs(cfg)
    return validate


def _model_defaults() -> dict[str, Any]:
    return {**DEFAULT_PROBLEM, "options": {}}  # options: free-form keyword arguments of the engine


@register_task("simulate", defaults=_model_defaults(),
               validate=_needs("gradflow.dynamics", "simulate"))
def simulate_cell(cfg: dict[str, Any]) -> dict[str, Any]:
    """Gradient flow by gradflow.dynamics.simulate from the gd task's data/model/init.

    ``options``: ``solver`` (default 'gradflow'), ``t_max`` (default 100) and the
    solver's own options. Same metrics as gd, plus status, alignment_end_time, nfev.
    """
    from gradflow.dynamics import simulate

    problem = build_problem(cfg)
    opts = dict(cfg["options"])
    sol = simulate(problem.train, problem.model, problem.params, loss=cfg["loss"],
                   solver=opts.pop("solver", "gradflow"), t_max=opts.pop("t_max", 100.0),
                   options=opts or None, progress=False)
    return summarise(problem, sol.params_at(-1), time=float(sol.t[-1]), status=sol.status,
                     alignment_end_time=sol.alignment_end_time, nfev=sol.nfev)


@register_task("train", defaults=_model_defaults(), validate=_needs("gradflow.backend", "train"))
def train_cell(cfg: dict[str, Any]) -> dict[str, Any]:
    """Training by gradflow.backend.train from the gd task's data/model/init.

    ``options``: TrainConfig fields (optimizer, lr, epochs, batch_size, ...; CPU,
    no snapshots by default). Same metrics as gd, plus status and epochs.
    """
    from gradflow.backend import TrainConfig, make_two_layer, train
    from gradflow.torch_model import from_torch

    problem = build_problem(cfg)
    opts = {"device": "cpu", "progress": False, "n_snapshots": 0, "rank_every": 0,
            "loss": cfg["loss"], **cfg["options"]}
    opts.setdefault("eval_every", max(1, opts.get("epochs", TrainConfig().epochs)))  # final only
    tcfg = TrainConfig.from_dict(opts)
    net = make_two_layer(problem.model, problem.init, problem.data_cfg.D,
                         centres=problem.train.centres, dtype=tcfg.dtype, device=tcfg.device)
    res = train(net, problem.train, tcfg, test_data=problem.test)
    final = from_torch(res.model)
    # keep b and center: dropping them would score a different model than the one trained
    final = TwoLayerParams(np.asarray(final.W, float), np.asarray(final.v, float),
                           None if final.b is None else np.asarray(final.b, float),
                           None if final.center is None else np.asarray(final.center, float))
    return summarise(problem, final, status=res.status, epochs=res.epochs_done)
