"""Training loop: full-batch GD, minibatch SGD and Adam, with metrics and checkpoints.

One entry point, ``train(model, data, cfg)``. It runs

    theta_{k+1} = theta_k - eta * grad L_B(theta_k),   L_B = (1/|B|) sum_{i in B} l(y_i f(x_i))

with B the full training set for ``optimizer='gd'`` (the forward-Euler
discretisation of the gradient flow d theta/dt = -grad L), a seeded random
minibatch for 'sgd', or Adam's update for 'adam'.

Time convention: after k optimiser steps the model time is ``t = k * lr``. For
GD this is exactly the gradient-flow time the step approximates, so GD
snapshots and ODE solutions can be compared at equal t; for SGD it is the
time of the flow on the minibatch losses, and for Adam it is only a label.

Failures are results: a NaN or an overflow (non-finite loss or parameters, or
exponential-loss margins saturating at ``gradflow.losses.exp_cap``) stops the
run with ``status`` 'nan' / 'overflow' and keeps every metric recorded so far.
"""
from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .._validate import check_choice, check_int, check_real, store
from ..config import _ConfigMixin
from ..data import SubclassData
from ..io import atomic_write_bytes
from ..losses import LOSSES, exp_cap, torch_loss
from ..torch_model import TwoLayerNet
from .device import DTYPES, check_device_spec, resolve_device, resolve_dtype
from .metrics import gram_small_side, stable_rank_gram

OPTIMIZERS = ("gd", "sgd", "adam")
STATUSES = ("success", "nan", "overflow", "stopped")

Perturb = Callable[[torch.Tensor, torch.Tensor, nn.Module], torch.Tensor]
HISTORY_KEYS = ("epoch", "step", "t", "batch_loss", "loss", "train_acc", "test_loss", "test_acc",
                "rank_H", "rank_W", "time")


@dataclass(frozen=True)
class TrainConfig(_ConfigMixin):
    """How to train (validated on construction; every field is plain data).

    optimizer:   'gd' (full batch, one step per epoch), 'sgd' (minibatches) or 'adam'.
    lr:          step size eta > 0.
    epochs:      passes over the training set (>= 0).
    batch_size:  minibatch size for 'sgd'/'adam' (>= 1; ignored by 'gd').
    loss:        'exponential', 'logistic' (labels +-1, one output) or 'cross_entropy'.
    momentum, weight_decay: torch SGD options (0 = plain gradient steps).
    betas, adam_eps: Adam options.
    dtype:       'float32' or 'float64'; device: 'auto' (CUDA if available), 'cpu', 'cuda[:N]'.
    seed:        seeds the minibatch order and torch's global RNG (for user hooks that draw
                 from it; gradflow's attack hooks carry their own generator).
    n_snapshots: two-layer nets only: about this many (W, v, loss) snapshots on a
                 log-spaced step schedule, including step 0 and the last step (0 = off).
    eval_every:  full train/test metrics every this many epochs (and at the end); 0 = never
                 (rows then hold only the mean minibatch loss of every epoch: the
                 fastest setting, used by the benchmarks; margin saturation is then
                 not checked, non-finite values still are).
    rank_every:  stable ranks every this many epochs (0 = never; they cost an eigvalsh).
    eval_batch:  samples per block when evaluating (bounds memory).
    progress:    show a tqdm bar over epochs.
    """

    optimizer: str = "sgd"
    lr: float = 0.1
    epochs: int = 10
    batch_size: int = 100
    loss: str = "exponential"
    momentum: float = 0.0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    dtype: str = "float64"
    device: str = "auto"
    seed: int = 0
    n_snapshots: int = 32
    eval_every: int = 1
    rank_every: int = 1
    eval_batch: int = 8192
    progress: bool = True

    def __post_init__(self):
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        store(self, "lr", check_real("lr", self.lr, 0.0, lo_open=True))
        store(self, "epochs", check_int("epochs", self.epochs, 0))
        store(self, "batch_size", check_int("batch_size", self.batch_size, 1))
        check_choice("loss", self.loss, LOSSES)
        store(self, "momentum", check_real("momentum", self.momentum, 0.0, 1.0, hi_open=True))
        store(self, "weight_decay", check_real("weight_decay", self.weight_decay, 0.0))
        try:
            betas = tuple(self.betas)
        except TypeError:
            betas = ()
        if len(betas) != 2:
            raise ValueError(f"`betas` must be a pair (beta1, beta2), got {self.betas!r}")
        for b in betas:
            check_real("betas", b, 0.0, 1.0, hi_open=True)
        object.__setattr__(self, "betas", tuple(float(b) for b in betas))
        store(self, "adam_eps", check_real("adam_eps", self.adam_eps, 0.0, lo_open=True))
        check_choice("dtype", self.dtype, tuple(DTYPES))
        check_device_spec(self.device)
        store(self, "seed", check_int("seed", self.seed, 0))
        store(self, "n_snapshots", check_int("n_snapshots", self.n_snapshots, 0))
        store(self, "eval_every", check_int("eval_every", self.eval_every, 0))
        store(self, "rank_every", check_int("rank_every", self.rank_every, 0))
        store(self, "eval_batch", check_int("eval_batch", self.eval_batch, 1))
        if not isinstance(self.progress, bool):
            raise ValueError(f"`progress` must be True or False, got {self.progress!r}")

    def steps_per_epoch(self, n: int) -> int:
        return 1 if self.optimizer == "gd" else math.ceil(n / self.batch_size)


@dataclass
class Snapshots:
    """Parameter trajectory on a log-spaced schedule, with the ODE Solution's field names.

    t (T,) model time k*lr; step (T,) optimiser steps k; W (T, h, D); v (T, h)
    or (T, h, C); loss (T,) full training loss at those parameters; b (T,) or
    (T, C) output bias when the net has one. ``gradflow.metrics.Trajectory.from_any``
    reads it like the ODE engine's ``Solution``.
    """

    t: np.ndarray
    step: np.ndarray
    W: np.ndarray
    v: np.ndarray
    loss: np.ndarray
    status: str = "success"
    message: str = ""
    b: np.ndarray | None = None


@dataclass
class TrainResult:
    """What ``train`` returns: per-epoch metrics, snapshots, status, and the trained model.

    ``history[key]`` is a float array with one entry per evaluated epoch (epoch 0 is
    the initial state) for key in ``HISTORY_KEYS``; the same arrays are attributes
    (``result.loss``, ``result.test_acc``, ...). ``status`` is 'success', 'nan',
    'overflow' or 'stopped' (by the callback); ``message`` says why.
    """

    status: str
    message: str
    history: dict[str, np.ndarray]
    snapshots: Snapshots | None
    model: nn.Module
    config: TrainConfig
    steps: int
    epochs_done: int
    wall_time: float
    device: str = "cpu"
    extra: dict = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return self.status == "success"

    def __getattr__(self, name: str):
        if name != "history" and name in HISTORY_KEYS:
            return self.history[name]
        raise AttributeError(name)


# -- data -----------------------------------------------------------------------------------


def _as_tensors(data, name: str, loss: str, dtype, device,
                n_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, SubclassData):
        X, y = data.X, data.y
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        X, y = data
    else:
        raise ValueError(f"`{name}` must be a SubclassData or an (X, y) pair, got "
                         f"{type(data).__name__}")
    X = torch.as_tensor(X).to(device=device, dtype=dtype)
    y = torch.as_tensor(y).to(device=device)
    if X.dim() < 2 or X.shape[0] != y.shape[0] or y.dim() != 1 or X.shape[0] == 0:
        raise ValueError(f"`{name}`: X (n, features...) and y (n,) must hold the same number "
                         f"(>= 1) of samples; got X {tuple(X.shape)}, y {tuple(y.shape)}")
    if not bool(torch.isfinite(X).all()):
        raise ValueError(f"`{name}`: X must be finite (contains NaN or inf)")
    if loss == "cross_entropy":
        if y.is_floating_point() and not torch.equal(y, y.round()):
            raise ValueError(f"`{name}`: cross_entropy needs integer class labels")
        y = y.long()
        if n_classes is not None and not bool(((y >= 0) & (y < n_classes)).all()):
            raise ValueError(f"`{name}`: cross_entropy labels must lie in [0, {n_classes - 1}] "
                             f"(the model's {n_classes} outputs); got {int(y.min())} .. "
                             f"{int(y.max())}")
    else:
        y = y.to(dtype)
        if not bool(torch.all((y == 1) | (y == -1))):
            raise ValueError(f"`{name}`: loss {loss!r} needs labels in {{-1, +1}}")
    return X, y


# -- evaluation -----------------------------------------------------------------------------


def _weight_matrix(model: nn.Module) -> torch.Tensor | None:
    if isinstance(model, TwoLayerNet):
        return model.W
    getter = getattr(model, "weight_matrix", None)
    return getter() if callable(getter) else None


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, loss: str, *,
             block: int = 8192, rank: bool = False) -> dict[str, float]:
    """Mean loss, accuracy, min margin and (optionally) the stable rank of the hidden features.

    Accuracy: sign(f) = y for binary losses, argmax f = y for cross-entropy.
    rank_H = ||H||_F^2 / ||H||_2^2 of H = model.hidden(X), via G = H^T H summed over blocks.
    """
    check_choice("loss", loss, LOSSES)
    check_int("block", block, 1)
    total, correct, min_margin = 0.0, 0.0, math.inf
    G = None
    hidden = getattr(model, "hidden", None) if rank else None
    for i in range(0, X.shape[0], block):
        xb, yb = X[i:i + block], y[i:i + block]
        if hidden is not None:
            H = hidden(xb)
            f = _head(model, H, xb)
            Hd = H.reshape(H.shape[0], -1).to(torch.float64)
            G = Hd.T @ Hd if G is None else G + Hd.T @ Hd
        else:
            f = model(xb)
        total += float(torch_loss(f, yb, loss, reduction="none").sum())
        if loss == "cross_entropy":
            correct += float((f.argmax(dim=1) == yb).sum())
        else:
            z = yb * f
            correct += float((z > 0).sum())
            min_margin = min(min_margin, float(z.min()))
    n = X.shape[0]
    out = {"loss": total / n, "acc": correct / n, "min_margin": min_margin}
    out["rank_H"] = float(stable_rank_gram(G)) if G is not None else math.nan
    return out


def _head(model: nn.Module, H: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The output computed from already-evaluated hidden features (avoids a second pass)."""
    if isinstance(model, TwoLayerNet):
        f = H @ model.v
        return f + model.b if model.b is not None else f
    return model(x)


def snapshot_steps(total_steps: int, n_snapshots: int) -> np.ndarray:
    """Step indices 0 and round(logspace(0, log10(total), n-1)), deduplicated (log-spaced)."""
    total_steps = check_int("total_steps", total_steps, 0)
    n_snapshots = check_int("n_snapshots", n_snapshots, 0)
    if n_snapshots == 0:
        return np.zeros(0, dtype=np.int64)
    if total_steps == 0 or n_snapshots == 1:
        return np.array([0], dtype=np.int64)
    ks = np.round(np.logspace(0.0, np.log10(total_steps), n_snapshots - 1)).astype(np.int64)
    return np.unique(np.concatenate([[0], ks, [total_steps]]))


def _failure(params: list[torch.Tensor], batch_loss: float) -> tuple[str, str] | None:
    bad_nan = any(bool(torch.isnan(p).any()) for p in params)
    bad_inf = any(bool(torch.isinf(p).any()) for p in params)
    if bad_nan or math.isnan(batch_loss):
        return "nan", "NaN in the parameters or the loss"
    if bad_inf or math.isinf(batch_loss):
        return "overflow", "infinite parameters or loss"
    return None


# -- checkpoint -----------------------------------------------------------------------------

_RESUME_FREE = ("epochs", "progress", "eval_batch")


def _save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load_checkpoint(path: Path, cfg: TrainConfig) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=False)
    saved = state["config"]
    diff = sorted(k for k, v in cfg.to_dict().items()
                  if k not in _RESUME_FREE and _norm(saved.get(k)) != _norm(v))
    if diff:
        raise ValueError(f"`cfg` differs from the checkpoint's config in {diff}; resume needs "
                         "the same settings (only epochs, progress and eval_batch may change)")
    if cfg.epochs < state["epoch"]:  # would return the longer run as if it were this one
        raise ValueError(f"`epochs` must be >= {state['epoch']}, the epochs the checkpoint "
                         f"{path} has already done, to resume from it; got {cfg.epochs}")
    return state


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


# -- the loop -------------------------------------------------------------------------------


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """torch optimiser for ``cfg``: SGD for 'gd'/'sgd', Adam for 'adam'."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps,
                                weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def train(model: nn.Module, data, cfg: TrainConfig, *, test_data=None,
          perturb: Perturb | None = None, checkpoint: str | Path | None = None,
          checkpoint_every: int = 1, resume: bool = False,
          callback: Callable[[int, dict], bool | None] | None = None,
          throw: bool = False) -> TrainResult:
    """Train ``model`` on ``data`` and return a ``TrainResult``.

    Parameters
    ----------
    model:      any ``nn.Module`` mapping (n, ...) inputs to (n,) margins or (n, C)
                logits; it is moved to ``cfg.device``/``cfg.dtype`` in place.
                ``TwoLayerNet`` also gets (W, v) snapshots; ``model.hidden(x)``
                (if present) gives the hidden features for rank_H and
                ``model.W`` / ``model.weight_matrix()`` the W for rank_W.
    data:       ``SubclassData`` or an (X, y) pair; labels +-1 for binary losses,
                integer classes for cross-entropy. ``test_data`` likewise.
    perturb:    adversarial-training hook ``perturb(x, y, model) -> x_adv`` applied to
                every minibatch before the step (its result is detached; gradients it
                leaves on the parameters are cleared). A hook with private random
                state should expose ``state_dict()``/``load_state_dict()``: the
                checkpoint stores it, so resume stays exact (hooks drawing from
                torch's global RNG are covered already).
    checkpoint: file written atomically every ``checkpoint_every`` epochs and at
                the end; with ``resume=True`` an existing file is loaded and
                training continues to the identical result an uninterrupted run gives.
                Raising ``epochs`` on resume extends a finished run: the parameters are
                those of one run with the new ``epochs``, but the history keeps the old
                final epoch's row and the snapshot schedule (log-spaced over the total
                steps) changes at the resume point.
    callback:   ``callback(epoch, row)`` after each evaluated epoch; True stops the
                run with status 'stopped'.
    throw:      raise ``RuntimeError`` instead of returning a failed status.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"`cfg` must be a TrainConfig, got {type(cfg).__name__}")
    check_int("checkpoint_every", checkpoint_every, 1)
    if resume and checkpoint is None:
        raise ValueError("`resume=True` needs `checkpoint` (the file to resume from)")
    if perturb is not None and not callable(perturb):
        raise ValueError("`perturb` must be callable as perturb(x, y, model) -> x_adv")
    device, dtype = resolve_device(cfg.device), resolve_dtype(cfg.dtype)
    n_out = getattr(getattr(model, "cfg", None), "n_outputs", None)
    if n_out is None:  # MLP has n_outputs; SmallCNN has n_classes (>= 2)
        n_out = getattr(model, "n_outputs", getattr(model, "n_classes", None))
    if n_out is not None:
        from ..losses import check_loss
        check_loss(cfg.loss, n_out)
    model.to(device=device, dtype=dtype)
    X, y = _as_tensors(data, "data", cfg.loss, dtype, device, n_out)
    test = None if test_data is None else _as_tensors(test_data, "test_data", cfg.loss, dtype,
                                                      device, n_out)
    n = X.shape[0]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg)
    spe = cfg.steps_per_epoch(n)
    total_steps = spe * cfg.epochs
    snap_set = set(snapshot_steps(total_steps, cfg.n_snapshots).tolist()) \
        if isinstance(model, TwoLayerNet) else set()
    gen = torch.Generator().manual_seed(cfg.seed)
    hist = {k: [] for k in HISTORY_KEYS}
    snaps = {"t": [], "step": [], "W": [], "v": [], "loss": [], "b": []}
    status, message, step, epoch, elapsed = "success", "", 0, 0, 0.0
    ckpt = Path(checkpoint) if checkpoint is not None else None

    if resume and ckpt is not None and ckpt.exists():
        st = _load_checkpoint(ckpt, cfg)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optim"])
        gen.set_state(st["gen"])
        torch.set_rng_state(st["torch_rng"])
        if device.type == "cuda" and st.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(st["cuda_rng"], device)
        if st.get("perturb") is not None and hasattr(perturb, "load_state_dict"):
            perturb.load_state_dict(st["perturb"])
        hist, snaps = st["history"], st["snapshots"]
        step, epoch, elapsed = st["step"], st["epoch"], st["elapsed"]
        status, message = st["status"], st["message"]
        if status == "stopped":  # a callback pause, not a failure: carry on
            status, message = "success", ""
    else:
        torch.manual_seed(cfg.seed)

    t0 = time.perf_counter() - elapsed
    cap = exp_cap(dtype)

    def record(ep: int, batch_loss: float, with_rank: bool) -> dict:
        if cfg.eval_every == 0:
            tr = {"loss": math.nan, "acc": math.nan, "min_margin": math.nan, "rank_H": math.nan}
            te, with_rank = None, False
        else:
            tr = evaluate(model, X, y, cfg.loss, block=cfg.eval_batch, rank=with_rank)
            te = evaluate(model, *test, cfg.loss, block=cfg.eval_batch) if test else None
        W = _weight_matrix(model) if with_rank else None
        row = {"epoch": ep, "step": step, "t": step * cfg.lr, "batch_loss": batch_loss,
               "loss": tr["loss"], "train_acc": tr["acc"],
               "test_loss": te["loss"] if te else math.nan,
               "test_acc": te["acc"] if te else math.nan, "rank_H": tr["rank_H"],
               "rank_W": float(stable_rank_gram(gram_small_side(W))) if W is not None
               else math.nan,
               "time": time.perf_counter() - t0}
        for k in HISTORY_KEYS:
            hist[k].append(float(row[k]))
        row["min_margin"] = tr["min_margin"]
        return row

    def take_snapshot() -> None:
        snaps["t"].append(step * cfg.lr)
        snaps["step"].append(step)
        snaps["W"].append(model.W.detach().cpu().numpy().copy())
        snaps["v"].append(model.v.detach().cpu().numpy().copy())
        if model.b is not None:
            snaps["b"].append(model.b.detach().cpu().numpy().copy())
        snaps["loss"].append(evaluate(model, X, y, cfg.loss, block=cfg.eval_batch)["loss"])

    def save() -> None:
        if ckpt is None:
            return
        _save_checkpoint(ckpt, {
            "model": model.state_dict(), "optim": opt.state_dict(), "gen": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "perturb": perturb.state_dict() if hasattr(perturb, "state_dict") else None,
            "history": hist, "snapshots": snaps, "step": step, "epoch": epoch,
            "elapsed": time.perf_counter() - t0, "status": status, "message": message,
            "config": cfg.to_dict()})

    def saturated(row: dict) -> bool:
        return cfg.loss == "exponential" and -row["min_margin"] >= cap

    if epoch == 0 and not hist["epoch"]:
        row = record(0, math.nan, cfg.rank_every > 0)
        if saturated(row):
            status, message = "overflow", f"exponential-loss margins below -{cap:.0f} at start"

    bar = tqdm(range(epoch, cfg.epochs), disable=not cfg.progress, desc="train", leave=False)
    for _ in bar:
        if status != "success":
            break
        perm = None if cfg.optimizer == "gd" else torch.randperm(n, generator=gen).to(device)
        running = torch.zeros((), dtype=dtype, device=device)
        for b in range(spe):
            if step in snap_set:
                take_snapshot()
            if perm is None:
                xb, yb = X, y
            else:
                idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                xb, yb = X[idx], y[idx]
            if perturb is not None:
                xb = perturb(xb, yb, model).detach()
            opt.zero_grad(set_to_none=True)
            batch = torch_loss(model(xb), yb, cfg.loss)
            batch.backward()
            opt.step()
            running += batch.detach()
            step += 1
        epoch += 1
        batch_loss = float(running) / spe
        fail = _failure(params, batch_loss)
        due = (cfg.eval_every == 0 or epoch % cfg.eval_every == 0 or epoch == cfg.epochs
               or fail is not None)
        if due:
            with_rank = cfg.rank_every > 0 and (epoch % cfg.rank_every == 0 or epoch == cfg.epochs)
            row = record(epoch, batch_loss, with_rank and fail is None)
            bar.set_postfix(loss=f"{row['loss']:.3g}", acc=f"{row['train_acc']:.3f}")
            if fail is None and saturated(row):
                fail = ("overflow", f"exponential-loss margins reached -{cap:.0f} (exp would "
                        f"overflow {dtype}); lower lr or stop earlier")
        if fail is not None:
            status, message = fail[0], f"{fail[1]} after epoch {epoch} (step {step})"
        elif due and callback is not None and callback(epoch, row):
            status, message = "stopped", f"stopped by callback after epoch {epoch}"
        if ckpt is not None and (epoch % checkpoint_every == 0 or epoch == cfg.epochs
                                 or status != "success"):
            save()
    bar.close()
    if status == "success" and step in snap_set and (not snaps["step"] or snaps["step"][-1] != step):
        take_snapshot()
        save()
    if status == "success":
        message = message or f"trained {epoch} epoch(s), {step} step(s)"
    result = TrainResult(
        status=status, message=message,
        history={k: np.asarray(v, dtype=np.float64) for k, v in hist.items()},
        snapshots=_stack_snapshots(snaps, status, message) if snap_set else None,
        model=model, config=cfg, steps=step, epochs_done=epoch,
        wall_time=time.perf_counter() - t0, device=str(device))
    if throw and status not in ("success", "stopped"):
        raise RuntimeError(f"training failed: {status}: {message}")
    return result


def _stack_snapshots(snaps: dict, status: str, message: str) -> Snapshots | None:
    if not snaps["step"]:
        return None
    return Snapshots(t=np.asarray(snaps["t"], dtype=np.float64),
                     step=np.asarray(snaps["step"], dtype=np.int64),
                     W=np.stack(snaps["W"]), v=np.stack(snaps["v"]),
                     loss=np.asarray(snaps["loss"], dtype=np.float64),
                     status=status, message=message,
                     b=np.stack(snaps["b"]) if snaps.get("b") else None)
