"""Batched ensembles: R independent two-layer nets trained in one computation.

Member r has its own parameters (W_r, v_r), data (X_r, y_r), pReLU exponent p_r
and minibatch order. Stacking them as W (R, h, D), v (R, h) and minibatches
X_B (R, B, D), every step is one batched matmul chain

    f_r = sigma_{p_r}(X_{B,r} W_r^T) v_r,    L = sum_r L_r,  L_r = (1/B) sum_b l(y_rb f_rb),

and one optimiser step on the stacked tensors. Because L is a sum of
independent terms, dL/dW_r = dL_r/dW_r, and SGD/Adam act elementwise, so member
r follows exactly the trajectory of ``train`` run alone with the same configs
and seed (each member draws its minibatch permutation from its own generator
seeded like the sequential run). In float64 on CPU the two agree to rounding
(the tests check 1e-10).

Memory is bounded by splitting the members into chunks that run one after the
other; members with equal ``DataConfig`` share one copy of their data.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .._validate import check_int, check_real
from ..config import DataConfig, InitConfig, ModelConfig
from ..data import make_subclass_data
from ..init import init_params
from ..losses import BINARY_LOSSES, exp_cap, torch_loss
from ..model import TwoLayerParams
from ..torch_model import norm_divided
from .device import resolve_device, resolve_dtype
from .metrics import gram_small_side, stable_rank_gram
from .models import make_two_layer
from .train import Snapshots, TrainConfig, TrainResult, make_optimizer, snapshot_steps, train

MEMBER_KEYS = ("batch_loss", "loss", "train_acc", "test_loss", "test_acc", "rank_H", "rank_W")


@dataclass(frozen=True)
class EnsembleMember:
    """One network of an ensemble: its model, initialisation, data and minibatch seed.

    ``seed`` plays the role of ``TrainConfig.seed`` in the equivalent single run.
    """

    model: ModelConfig
    init: InitConfig
    data: DataConfig
    seed: int = 0

    def __post_init__(self):
        for name, typ in (("model", ModelConfig), ("init", InitConfig), ("data", DataConfig)):
            if not isinstance(getattr(self, name), typ):
                raise ValueError(f"`{name}` must be a {typ.__name__}, got "
                                 f"{type(getattr(self, name)).__name__}")
        check_int("seed", self.seed, 0)


@dataclass
class EnsembleResult:
    """Per-member outcome of ``train_ensemble``.

    history: 'epoch', 'step', 't' (E,) shared by all members, and for each key in
    ``MEMBER_KEYS`` an (R, E) array. The E rows are the union of the members' own
    evaluation epochs (those ``train_member`` records: the schedule, and the epoch
    a member failed at); a member's entries are NaN where it has no row of its own
    (after it failed, and at another member's failure epoch). W (R, h, D), v (R, h)
    and b (R,) are the final parameters (a failed member's as they were when it
    failed: it is frozen from then on); status/message are per member.
    snapshots: one ``Snapshots`` per member (or None when ``n_snapshots`` = 0), ending
    where a failed member stopped.
    """

    members: list[EnsembleMember]
    config: TrainConfig
    status: list[str]
    message: list[str]
    history: dict[str, np.ndarray]
    W: np.ndarray
    v: np.ndarray
    b: np.ndarray | None
    snapshots: list[Snapshots] | None
    wall_time: float
    device: str
    chunks: list[int] = field(default_factory=list)

    @property
    def R(self) -> int:
        return len(self.members)

    def params(self, r: int) -> TwoLayerParams:
        """Final parameters of member r as float64 numpy ``TwoLayerParams``."""
        b = None if self.b is None else np.asarray(self.b[r], dtype=np.float64)
        return TwoLayerParams(self.W[r].astype(np.float64), self.v[r].astype(np.float64), b)


class BatchedTwoLayer(nn.Module):
    """R two-layer nets as one module: f (R, B) = sigma_p(X W^T) v, X (R, B, D), W (R, h, D).

    sigma_p(x; w) = phi(<w, x>) / ||w||^q [/ ||x||^q], with phi and q per member
    (pReLU: phi = relu^p, q = p - 1). When all members share the activation,
    the exact ``TwoLayerNet`` operations are used.
    """

    def __init__(self, models: Sequence[ModelConfig], W: torch.Tensor, v: torch.Tensor,
                 b: torch.Tensor | None):
        super().__init__()
        self.W = nn.Parameter(W)
        self.v = nn.Parameter(v)
        self.b = nn.Parameter(b) if b is not None else None
        acts = [m.activation_obj() for m in models]
        self.normalize_input = models[0].normalize_input
        # sigma 1-homogeneous in w: phi is (q+1)-homogeneous, phi(z)/r^q = phi(z/r) r
        self._homogeneous = acts[0].homogeneity == 1.0
        if all(_same_activation(a, acts[0]) for a in acts):
            self.phi, self.q, self.p = acts[0].torch_fn, acts[0].w_power, None
        else:  # prelu / relu_p with member-specific p
            p = torch.tensor([a.params["p"] for a in acts], dtype=W.dtype, device=W.device)
            self.p = p[:, None, None]
            q = torch.tensor([a.w_power for a in acts], dtype=W.dtype, device=W.device)
            self.q = q[:, None, None]
            self.phi = None
        # relu-power activations get the hand-derived gradient (``loss_and_grad``).
        self.analytic = all(m.activation in ("prelu", "relu_p", "relu") for m in models)
        if self.analytic:
            ps = [a.params.get("p", 1.0) for a in acts]
            self._p_all = ps[0] if len(set(ps)) == 1 else None

    @torch.no_grad()
    def loss_and_grad(self, X: torch.Tensor, y: torch.Tensor, loss: str,
                      cap: float) -> torch.Tensor:
        """Per-member mean losses L_r (R,); stores dL_r/dW_r etc. in ``.grad`` (relu^p only).

        The exact gradient of ``gradflow.model.loss_and_grad``, batched: with
        g = dL/df (R, B), s = ||w||^-q [||x||^-q], P = relu(Z)^p s and dP = p relu(Z)^(p-1) s
        (both evaluated through Z/||w||, see ``_norm_divisor``),
          dL/dv = P^T g,   dL/dW = (g v^T * dP)^T X - q (v dL/dv) W / ||w||^2,
          dL/db = sum_b g.
        One pass without autograd: cheaper when per-step overhead dominates. The (R, B, h)
        arrays are updated in place (three allocations per step instead of ~11): fewer
        multi-MB temporaries for the allocator to place, and less time spent placing them.
        """
        W, v, q = self.W, self.v, self.q
        Z = torch.bmm(X, W.transpose(1, 2))
        inactive = Z <= 0  # relu' = 0 there (applied to the W-gradient below)
        wd = self._norm_divisor()
        has_q = wd is not None
        if has_q:
            Z.div_(wd)
        P = Z.clamp_(min=0.0)  # relu, in place: Z is not needed any more
        p = self._p_all if self._p_all is not None else self.p
        if isinstance(p, float) and p == 1.0:
            dP = None  # relu' = 1 on the active entries
        else:  # (per-member p: 0^0 = 1 for p = 1 members, masked by `inactive` below)
            dP = P.pow(p - 1.0)
            P.mul_(dP)
            dP.mul_(p)
        if has_q:  # back to relu(Z)^p ||w||^-q and its Z-derivative p relu(Z)^(p-1) ||w||^-q
            P.mul_(wd ** (p - q))
            dP = wd ** (-q) if dP is None else dP.mul_(wd ** (p - 1.0 - q))
            if self.normalize_input:
                xs = X.pow(2).sum(dim=2, keepdim=True).pow(-0.5 * q)
                P.mul_(xs)
                dP = dP * xs
        f = torch.bmm(P, v.unsqueeze(2)).squeeze(2)
        if self.b is not None:
            f = f + self.b[:, None]
        z = y * f
        if loss == "exponential":
            e = torch.exp(torch.clamp(-z, max=cap))
            losses, dz = e.mean(dim=1), -e * (-z <= cap).to(z.dtype)
        else:
            losses, dz = torch.nn.functional.softplus(-z).mean(dim=1), -torch.sigmoid(-z)
        g = y * dz / z.shape[1]
        grad_v = torch.bmm(P.transpose(1, 2), g.unsqueeze(2)).squeeze(2)
        A = g.unsqueeze(2) * v.unsqueeze(1)
        if dP is not None:
            A.mul_(dP)
        A.masked_fill_(inactive, 0.0)
        grad_W = torch.bmm(A.transpose(1, 2), X)
        if has_q:
            qr = q.reshape(-1, 1) if isinstance(q, torch.Tensor) else q
            grad_W -= (qr * grad_v * v / W.pow(2).sum(dim=2)).unsqueeze(2) * W
        W.grad, v.grad = grad_W, grad_v
        if self.b is not None:
            self.b.grad = g.sum(dim=1)
        return losses

    def _norm_divisor(self) -> torch.Tensor | None:
        """||w_j|| as (R, 1, h) for the members with q != 0 (1 for the others), or None
        when no member divides by a norm.

        phi(z)/||w||^q is evaluated as phi(z/||w||) ||w||^(p-q) for relu^p, the form of
        ``gradflow.torch_model.norm_divided`` (which says why)."""
        q = self.q
        if not (isinstance(q, torch.Tensor) or q != 0):
            return None
        wd = self.W.pow(2).sum(dim=2).sqrt().unsqueeze(1)
        if isinstance(q, torch.Tensor):  # members with q = 0 (relu_p) are not rescaled
            wd = torch.where(q != 0, wd, torch.ones_like(wd))
        return wd

    def hidden(self, X: torch.Tensor) -> torch.Tensor:
        """Hidden features (R, B, h)."""
        Z = torch.bmm(X, self.W.transpose(1, 2))
        q, wd = self.q, self._norm_divisor()
        if wd is None:
            return self.phi(Z) if self.phi is not None else torch.relu(Z) ** self.p
        if self.phi is None:  # relu^p with member-specific p (q = 0 members: wd = 1)
            S = torch.relu(Z / wd) ** self.p * wd ** (self.p - q)
        else:
            S = norm_divided(self.phi, Z, wd, q, self._homogeneous)
        if self.normalize_input:
            S = S * X.pow(2).sum(dim=2, keepdim=True).pow(-0.5 * q)
        return S

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        f = torch.bmm(self.hidden(X), self.v.unsqueeze(2)).squeeze(2)
        return f + self.b[:, None] if self.b is not None else f


def _same_activation(a, b) -> bool:
    # exact parameters: ``spec`` rounds them to 6 digits ({:g}), so p = 3 and 3.000001
    # would share one activation
    return a.name == b.name and a.params == b.params


def _check_members(members: Sequence[EnsembleMember], cfg: TrainConfig) -> None:
    if len(members) == 0:
        raise ValueError("`members` must hold at least one EnsembleMember")
    for i, m in enumerate(members):
        if not isinstance(m, EnsembleMember):
            raise ValueError(f"`members[{i}]` must be an EnsembleMember, got {type(m).__name__}")
    m0 = members[0]
    if cfg.loss not in BINARY_LOSSES:
        raise ValueError(f"`loss` must be one of {BINARY_LOSSES} for ensembles, got {cfg.loss!r}")
    for i, m in enumerate(members):
        mc = m.model
        if mc.n_outputs != 1 or mc.center_input:
            raise ValueError(f"`members[{i}].model`: ensembles support one output and no input "
                             "centring")
        for name in ("width", "bias", "normalize_input", "activation"):
            if getattr(mc, name) != getattr(m0.model, name):
                raise ValueError(f"`members[{i}].model.{name}` must equal members[0]'s "
                                 f"({getattr(m0.model, name)!r}); got {getattr(mc, name)!r}")
        if mc.activation not in ("prelu", "relu_p") and \
                not _same_activation(mc.activation_obj(), m0.model.activation_obj()):
            raise ValueError(f"`members[{i}].model`: only 'prelu'/'relu_p' may vary p across "
                             "members; other activations must be identical")
        for name in ("D", "n"):
            if getattr(m.data, name) != getattr(m0.data, name):
                raise ValueError(f"`members[{i}].data.{name}` must equal members[0]'s "
                                 f"({getattr(m0.data, name)}); got {getattr(m.data, name)}")


def member_bytes(member: EnsembleMember, cfg: TrainConfig, test: bool) -> int:
    """Rough device memory of one member: parameters, gradients, optimiser state,
    step activations, evaluation blocks, rank Gram matrices and (unshared) data."""
    h, D, n = member.model.width, member.data.D, member.data.n
    item = 4 if cfg.dtype == "float32" else 8
    states = 2 if cfg.optimizer == "adam" else (1 if cfg.momentum > 0 else 0)
    B = n if cfg.optimizer == "gd" else min(cfg.batch_size, n)
    blk = min(cfg.eval_batch, n)
    per = (2 + states) * h * D * item + 5 * B * h * item + B * D * item
    per += 3 * blk * h * item + blk * D * item + (2 * h * h * 8 if cfg.rank_every else 0)
    per += (2 if test else 1) * n * (D + 1) * item
    return int(per)


def auto_chunk(members: Sequence[EnsembleMember], cfg: TrainConfig, device: torch.device,
               test: bool, memory_gb: float | None) -> int:
    """Members per chunk so that a chunk fits ``memory_gb`` (default: 70% of free GPU
    memory on CUDA, no limit on the CPU)."""
    if memory_gb is None:
        if device.type != "cuda":
            return len(members)
        free, _ = torch.cuda.mem_get_info(device)
        budget = 0.7 * free
    else:
        budget = check_real("memory_gb", memory_gb, 0.0, lo_open=True) * 2**30
    per = member_bytes(members[0], cfg, test)
    return max(1, min(len(members), int(budget // per)))


def train_ensemble(members: Sequence[EnsembleMember], cfg: TrainConfig, *, test: bool = True,
                   chunk_size: int | None = None, memory_gb: float | None = None) -> EnsembleResult:
    """Train every member with ``cfg`` in batched chunks; see the module docstring.

    Member r matches ``train_member(members[r], cfg, test=test)`` (same data, init,
    minibatch order, metrics schedule). ``test`` also evaluates on each member's
    test split (n samples). ``chunk_size`` (members per chunk) defaults to what
    ``memory_gb`` (or the free GPU memory) allows.
    """
    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"`cfg` must be a TrainConfig, got {type(cfg).__name__}")
    members = list(members)
    _check_members(members, cfg)
    device, dtype = resolve_device(cfg.device), resolve_dtype(cfg.dtype)
    if chunk_size is None:
        chunk_size = auto_chunk(members, cfg, device, test, memory_gb)
    check_int("chunk_size", chunk_size, 1)
    t0 = time.perf_counter()
    parts = [_train_chunk(members[i:i + chunk_size], cfg, device, dtype, test, i, len(members))
             for i in range(0, len(members), chunk_size)]
    hist = _merge_histories([p["history"] for p in parts])
    snaps = None
    if cfg.n_snapshots > 0:
        snaps = [s for p in parts for s in p["snapshots"]]
    return EnsembleResult(
        members=members, config=cfg,
        status=[s for p in parts for s in p["status"]],
        message=[s for p in parts for s in p["message"]], history=hist,
        W=np.concatenate([p["W"] for p in parts]), v=np.concatenate([p["v"] for p in parts]),
        b=None if parts[0]["b"] is None else np.concatenate([p["b"] for p in parts]),
        snapshots=snaps, wall_time=time.perf_counter() - t0, device=str(device),
        chunks=[len(p["status"]) for p in parts])


def _merge_histories(hists: list[dict]) -> dict:
    """One history for all chunks: rows on the union of their epochs, NaN-filled (chunks
    differ where a member failed off the schedule or a whole chunk stopped early)."""
    epoch = np.unique(np.concatenate([h["epoch"] for h in hists]))
    out = {"epoch": epoch, "step": np.empty(len(epoch)), "t": np.empty(len(epoch))}
    for k in MEMBER_KEYS:
        out[k] = np.full((sum(h[k].shape[0] for h in hists), len(epoch)), np.nan)
    r0 = 0
    for h in hists:
        pos = np.searchsorted(epoch, h["epoch"])
        out["step"][pos], out["t"][pos] = h["step"], h["t"]
        R = h[MEMBER_KEYS[0]].shape[0]
        for k in MEMBER_KEYS:
            out[k][r0:r0 + R, pos] = h[k]
        r0 += R
    return out


def _unique_data(configs: list[DataConfig], split: str, dtype, device):
    keys: dict[DataConfig, int] = {}
    index = [keys.setdefault(c, len(keys)) for c in configs]
    first = next(iter(keys))
    X = torch.empty((len(keys), first.n, first.D), dtype=dtype, device=device)
    y = torch.empty((len(keys), first.n), dtype=dtype, device=device)
    for i, c in enumerate(keys):  # one dataset at a time: host memory stays O(n D)
        d = make_subclass_data(c, split)
        X[i] = torch.as_tensor(d.X).to(device=device, dtype=dtype)
        y[i] = torch.as_tensor(d.y).to(device=device, dtype=dtype)
    return X, y, torch.tensor(index, device=device)


@torch.no_grad()
def _evaluate(net: BatchedTwoLayer, X, y, idx, loss: str, block: int, rank=None):
    """Per-member loss, accuracy, min margin; rank_H for the members where the boolean
    (R,) mask ``rank`` is True (NaN elsewhere: a failed member's NaN features would
    break the batched eigvalsh)."""
    R = idx.shape[0]
    n = X.shape[1]
    total = torch.zeros(R, dtype=torch.float64, device=X.device)
    correct = torch.zeros_like(total)
    min_margin = torch.full_like(total, math.inf)
    G = None
    for i in range(0, n, block):
        xb, yb = X[idx, i:i + block], y[idx, i:i + block]
        H = net.hidden(xb)
        f = torch.bmm(H, net.v.unsqueeze(2)).squeeze(2)
        if net.b is not None:
            f = f + net.b[:, None]
        total += torch_loss(f, yb, loss, reduction="none").sum(1).double()
        z = yb * f
        correct += (z > 0).sum(1).double()
        min_margin = torch.minimum(min_margin, z.min(1).values.double())
        if rank is not None:
            Hd = H.double()
            g = Hd.transpose(1, 2) @ Hd
            G = g if G is None else G + g
    out = {"loss": (total / n).cpu().numpy(), "acc": (correct / n).cpu().numpy(),
           "min_margin": min_margin.cpu().numpy()}
    out["rank_H"] = _masked_rank(G, rank, R)
    return out


def _masked_rank(G, mask, R: int) -> np.ndarray:
    out = np.full(R, np.nan)
    if mask is not None and mask.any():
        sel = torch.as_tensor(np.flatnonzero(mask), device=G.device)
        out[mask] = stable_rank_gram(G[sel]).cpu().numpy()
    return out


def _train_chunk(members: list[EnsembleMember], cfg: TrainConfig, device, dtype, test: bool,
                 offset: int, total: int) -> dict:
    R = len(members)
    D, n = members[0].data.D, members[0].data.n
    X, y, idx = _unique_data([m.data for m in members], "train", dtype, device)
    test = test and cfg.eval_every > 0  # no evaluations, no test data in memory
    test_set = _unique_data([m.data for m in members], "test", dtype, device) if test else None
    inits = [init_params(m.model, m.init, D) for m in members]
    W0 = torch.stack([torch.as_tensor(p.W) for p in inits]).to(device=device, dtype=dtype)
    v0 = torch.stack([torch.as_tensor(p.v) for p in inits]).to(device=device, dtype=dtype)
    b0 = None
    if members[0].model.bias:
        b0 = torch.stack([torch.as_tensor(p.b) for p in inits]).to(device=device, dtype=dtype)
    net = BatchedTwoLayer([m.model for m in members], W0, v0, b0)
    params = [p for p in net.parameters()]
    opt = make_optimizer(params, cfg)
    spe = cfg.steps_per_epoch(n)
    snap_steps = set(snapshot_steps(spe * cfg.epochs, cfg.n_snapshots).tolist())
    gens = [torch.Generator().manual_seed(m.seed) for m in members]
    same_data = bool(torch.equal(idx, torch.arange(X.shape[0], device=device)))
    X_flat, y_flat, row0 = X.reshape(-1, D), y.reshape(-1), idx[:, None] * n
    cap = exp_cap(dtype)
    alive = np.ones(R, dtype=bool)
    status, message = ["success"] * R, [""] * R
    hist = {k: [] for k in ("epoch", "step", "t", *MEMBER_KEYS)}
    snaps = {"t": [], "step": [], "W": [], "v": [], "loss": [], "b": []}
    step = 0
    end_step = np.full(R, np.iinfo(np.int64).max)  # a failed member's last step
    frozen = None  # (indices, parameter values) of the failed members

    def record(ep: int, batch_loss: np.ndarray, rows_of: np.ndarray,
               rank_of: np.ndarray) -> np.ndarray:
        """One history row holding the members in ``rows_of`` (NaN for the others);
        returns which of them have saturated exponential-loss margins."""
        nanR = np.full(R, np.nan)
        rank = rank_of & rows_of
        rank = rank if rank.any() else None  # no Gram matrices to accumulate
        if cfg.eval_every == 0:  # only the minibatch loss (see TrainConfig.eval_every)
            tr = {"loss": nanR, "acc": nanR, "min_margin": nanR, "rank_H": nanR}
            te, rank = None, None
        else:
            tr = _evaluate(net, X, y, idx, cfg.loss, cfg.eval_batch, rank)
            te = _evaluate(net, *test_set, cfg.loss, cfg.eval_batch) if test else None
        rank_W = nanR if rank is None else _masked_rank(gram_small_side(net.W), rank, R)
        hist["epoch"].append(ep)
        hist["step"].append(step)
        hist["t"].append(step * cfg.lr)
        rows = {"batch_loss": batch_loss, "loss": tr["loss"], "train_acc": tr["acc"],
                "test_loss": te["loss"] if te else nanR, "test_acc": te["acc"] if te else nanR,
                "rank_H": tr["rank_H"], "rank_W": rank_W}
        for k in MEMBER_KEYS:
            hist[k].append(np.where(rows_of, rows[k], np.nan))
        sat = -tr["min_margin"] >= cap if cfg.loss == "exponential" else np.zeros(R, bool)
        return sat & rows_of

    def take_snapshot() -> None:
        snaps["t"].append(step * cfg.lr)
        snaps["step"].append(step)
        snaps["W"].append(net.W.detach().cpu().numpy().copy())
        snaps["v"].append(net.v.detach().cpu().numpy().copy())
        if net.b is not None:
            snaps["b"].append(net.b.detach().cpu().numpy().copy())
        snaps["loss"].append(_evaluate(net, X, y, idx, cfg.loss, cfg.eval_batch)["loss"])

    def fail(mask: np.ndarray, kind: str, why: str, ep: int) -> None:
        nonlocal frozen
        new = mask & alive
        if not new.any():
            return
        for r in np.flatnonzero(new):
            status[r], message[r] = kind, f"{why} after epoch {ep} (step {step})"
        alive[new], end_step[new] = False, step
        # A failed member stops where it failed, as train() does: its parameters are
        # restored after every later step (its NaNs stay its own: every operation is
        # per member), and it gets no more rows or snapshots.
        dead = torch.as_tensor(np.flatnonzero(~alive), device=device)
        frozen = (dead, [p.detach()[dead].clone() for p in params])

    fail(record(0, np.full(R, np.nan), np.ones(R, dtype=bool), np.full(R, cfg.rank_every > 0)),
         "overflow", "exponential-loss margins saturated", 0)
    bar = tqdm(range(cfg.epochs), disable=not cfg.progress, leave=False,
               desc=f"ensemble {offset + 1}-{offset + R}/{total}")
    for epoch in bar:
        if not alive.any():
            break
        perm = None
        if cfg.optimizer != "gd":
            perm = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)
        running = torch.zeros(R, dtype=dtype, device=device)
        for k in range(spe):
            if step in snap_steps:
                take_snapshot()
            if perm is None:
                xb, yb = (X, y) if same_data else (X[idx], y[idx])
            else:  # rows idx_r * n + perm_r[batch] of the flattened data (one gather)
                rows = (row0 + perm[:, k * cfg.batch_size:(k + 1) * cfg.batch_size]).reshape(-1)
                xb = X_flat.index_select(0, rows).view(R, -1, D)
                yb = y_flat.index_select(0, rows).view(R, -1)
            opt.zero_grad(set_to_none=True)
            if net.analytic:
                losses = net.loss_and_grad(xb, yb, cfg.loss, cap)
            else:
                losses = torch_loss(net(xb), yb, cfg.loss, reduction="none").mean(dim=1)
                losses.sum().backward()
            opt.step()
            if frozen is not None:
                with torch.no_grad():
                    for prm, val in zip(params, frozen[1]):
                        prm[frozen[0]] = val
            running += losses.detach()
            step += 1
        ep = epoch + 1
        batch_loss = (running / spe).double().cpu().numpy()
        with torch.no_grad():
            p_nan = torch.isnan(net.W).flatten(1).any(1) | torch.isnan(net.v).flatten(1).any(1)
            p_inf = torch.isinf(net.W).flatten(1).any(1) | torch.isinf(net.v).flatten(1).any(1)
        bad_nan = p_nan.cpu().numpy() | np.isnan(batch_loss)
        bad_inf = (p_inf.cpu().numpy() | np.isinf(batch_loss)) & ~bad_nan
        bad = (bad_nan | bad_inf) & alive
        scheduled = cfg.eval_every == 0 or ep % cfg.eval_every == 0 or ep == cfg.epochs
        if scheduled or bad.any():
            # train() records a failing run's last epoch off the schedule, without ranks
            rows_of = alive.copy() if scheduled else bad
            rank_due = cfg.rank_every > 0 and (ep % cfg.rank_every == 0 or ep == cfg.epochs)
            sat = record(ep, batch_loss, rows_of,
                         alive & ~bad if rank_due else np.zeros(R, dtype=bool))
            fail(sat & ~bad, "overflow", "exponential-loss margins saturated", ep)
        fail(bad_nan, "nan", "NaN in the parameters or the loss", ep)
        fail(bad_inf, "overflow", "infinite parameters or loss", ep)
        if alive.any():
            bar.set_postfix(loss=f"{np.mean(batch_loss[alive]):.3g}", alive=int(alive.sum()))
    bar.close()
    if step in snap_steps and (not snaps["step"] or snaps["step"][-1] != step):
        take_snapshot()
    for r in range(R):
        if status[r] == "success":
            message[r] = f"trained {cfg.epochs} epoch(s), {step} step(s)"
    out_hist = {k: np.asarray(hist[k], dtype=np.float64) for k in ("epoch", "step", "t")}
    for k in MEMBER_KEYS:
        out_hist[k] = np.stack(hist[k], axis=1)
    snapshots = None
    if cfg.n_snapshots > 0 and snaps["step"]:
        Ws, vs, ls = np.stack(snaps["W"], 1), np.stack(snaps["v"], 1), np.stack(snaps["loss"], 1)
        bs = np.stack(snaps["b"], 1) if snaps["b"] else None
        st = np.asarray(snaps["step"], dtype=np.int64)
        snapshots = []
        for r in range(R):
            keep = st < end_step[r]  # train() takes no snapshot at or after a failure
            snapshots.append(Snapshots(
                t=np.asarray(snaps["t"], dtype=np.float64)[keep], step=st[keep],
                W=Ws[r][keep], v=vs[r][keep], loss=ls[r][keep], status=status[r],
                message=message[r], b=None if bs is None else bs[r][keep]))
    return {"history": out_hist, "status": status, "message": message,
            "W": net.W.detach().cpu().numpy(), "v": net.v.detach().cpu().numpy(),
            "b": None if net.b is None else net.b.detach().cpu().numpy(),
            "snapshots": snapshots or [None] * R}


def train_member(member: EnsembleMember, cfg: TrainConfig, *, test: bool = True) -> TrainResult:
    """Train one member alone with ``train`` (the sequential baseline of ``train_ensemble``)."""
    tr = make_subclass_data(member.data, "train")
    te = make_subclass_data(member.data, "test") if test else None
    net = make_two_layer(member.model, member.init, member.data.D, dtype=cfg.dtype,
                         device=cfg.device)
    return train(net, tr, cfg.replace(seed=member.seed), test_data=te)


# -- the paper-scale synthetic experiment (THEORY.md section 7) -----------------------------

PAPER_TRAIN = TrainConfig(optimizer="sgd", lr=0.2, epochs=401, batch_size=100,
                          loss="exponential", dtype="float32", device="auto", n_snapshots=0,
                          eval_every=10, rank_every=0, eval_batch=2000)


def paper_members(p_values: Sequence[float] = (1.0, 3.0), alphas: Sequence[float] | None = None,
                  repeats: int = 5, *, width: int = 2000, D: int = 1000, n: int = 20000,
                  K: int = 10, K1: int = 6, eps: float = 1e-7) -> list[EnsembleMember]:
    """The members of the Section 5.1 experiment: p x alpha x repeat (2 x 15 x 5 = 150).

    Width-2000 pReLU nets without bias, W and v drawn iid N(0, eps^2) with eps = 1e-7
    (InitConfig mode 'independent'), data K=10, K1=6, D=1000, n=20000 per split.
    Run (alpha index a, repeat r) uses seed a * repeats + r for its data, its
    initialisation and its minibatch order, so the p values see identical data,
    initial directions and batches (a paired comparison).
    """
    alphas = np.linspace(0.01, 0.3, 15) if alphas is None else np.asarray(alphas, dtype=float)
    check_int("repeats", repeats, 1)
    out = []
    for p in p_values:
        for a, alpha in enumerate(alphas):
            for r in range(repeats):
                seed = a * repeats + r
                out.append(EnsembleMember(
                    model=ModelConfig(width=width, activation="prelu", p=float(p)),
                    init=InitConfig(eps=eps, mode="independent", seed=seed),
                    data=DataConfig(K=K, K1=K1, D=D, alpha=float(alpha), n=n, seed=seed),
                    seed=seed))
    return out


def paper_scale_ensemble(cfg: TrainConfig = PAPER_TRAIN, members=None, **kwargs) -> EnsembleResult:
    """All 150 trainings of the synthetic experiment as one (chunked) ensemble call."""
    return train_ensemble(paper_members() if members is None else members, cfg, **kwargs)
