"""Perturbation hooks for adversarial training: ``perturb(x, y, model) -> x_adv``.

Each hook returns the attack's final iterate (not only successful points), as
adversarial training maximises the loss inside the ball (Madry et al. 2018):

    FGSM:  x_adv = x + eps s(grad_x l(x, y))                 (one gradient)
    PGD-k: d_{j+1} = Proj_eps(d_j + a s(grad_x l(x + d_j, y))), j < k, d_0 random or 0

with s the norm's steepest-ascent direction. The gradient is taken on
``grad_model`` when given (a surrogate used only for the attack direction) and
on the trained model otherwise. Smooth adversarial training (Xie et al. 2020):

- smooth in the backward pass only: train a net with activation
  'relu_softplus_grad' (ReLU forward, sigmoid(a z) backward) and use it as is,
  or keep a ReLU net and pass ``grad_model=smooth_surrogate(net)``;
- smooth in both passes: train a net with a smooth activation ('softplus',
  'param_softplus', 'silu', 'gelu', 'elu').

The model is put in eval mode during the attack and restored afterwards, and
parameter gradients are not touched (``torch.autograd.grad`` w.r.t. x only).
"""
from __future__ import annotations

import torch
from torch import nn

from .._validate import check_choice, check_int, check_real
from ..torch_model import TwoLayerNet
from .base import (
    ATTACK_LOSSES,
    TORCH_SEED_MAX,
    attack_direction_loss,
    check_bounds,
    check_in_bounds,
    check_inputs,
    check_labels,
    clip_to_box,
)
from .norms import get_norm


class PerturbHook:
    """``perturb(x, y, model) -> x_adv``: k steps of normalised ascent in the eps-ball.

    steps=1 with step_size=eps and no random start is FGSM. The random start is
    drawn from a generator seeded by ``seed`` (a new draw per call); ``state_dict`` /
    ``load_state_dict`` carry that generator through a training checkpoint, so a resumed
    run draws what the uninterrupted one would have.
    """

    def __init__(self, eps: float, *, steps: int = 1, step_size: float | None = None,
                 norm: str = "linf", loss: str = "auto", random_start: bool = False,
                 grad_model: nn.Module | None = None, bounds: tuple[float, float] | None = None,
                 seed: int = 0):
        self.eps = check_real("eps", eps, 0.0)
        self.steps = check_int("steps", steps, 1)
        self.step_size = (self.eps if steps == 1 else 2.5 * self.eps / steps) if step_size is None \
            else check_real("step_size", step_size, 0.0, lo_open=True)
        self.norm = get_norm(norm)
        self.loss = check_choice("loss", loss, ATTACK_LOSSES)
        self.random_start = bool(random_start)
        self.grad_model = grad_model
        self.bounds = check_bounds(bounds)
        self.seed = check_int("seed", seed, 0, TORCH_SEED_MAX)
        self._gen: dict[str, torch.Generator] = {}

    def _generator(self, device) -> torch.Generator:
        key = str(device)
        if key not in self._gen:
            self._gen[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._gen[key]

    def state_dict(self) -> dict:
        """The random-start generators' states, by device (``gradflow.backend.train``
        saves this in its checkpoints)."""
        return {"generators": {k: g.get_state() for k, g in self._gen.items()}}

    def load_state_dict(self, state: dict) -> None:
        self._gen = {}
        for key, st in state.get("generators", {}).items():
            self._gen[key] = torch.Generator(device=key)
            self._gen[key].set_state(st)

    def _clip(self, z, x0=None):
        return clip_to_box(z, self.bounds, x0)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, model: nn.Module) -> torch.Tensor:
        net = self.grad_model if self.grad_model is not None else model
        was_training = net.training
        net.eval()
        try:
            x, y = check_inputs(x.detach(), y)
            check_in_bounds(x, self.bounds)
            if self.random_start:
                d = self.norm.random_in_ball(x.shape, self.eps, self._generator(x.device),
                                             x.dtype, x.device)
            else:
                d = torch.zeros_like(x)
            for i in range(self.steps):
                with torch.enable_grad():
                    xg = self._clip(x + d).requires_grad_(True)
                    out = net(xg)
                    if i == 0:  # {0, 1} labels on scores would silently not perturb
                        y = check_labels(out, y)
                    # only the direction is used; this one does not underflow on
                    # confidently classified points (see ``attack_direction_loss``)
                    ell = attack_direction_loss(out, y, self.loss).sum()
                    (g,) = torch.autograd.grad(ell, xg)
                step = self.step_size * self.norm.steepest(g)
                d = self.norm.project(d + step, self.eps)
            return self._clip(x + d, x).detach()
        finally:
            net.train(was_training)


def fgsm_hook(eps: float, norm: str = "linf", *, loss: str = "auto",
              grad_model: nn.Module | None = None, bounds=None) -> PerturbHook:
    """FGSM adversarial training hook: x + eps s(grad_x loss)."""
    return PerturbHook(eps, steps=1, step_size=eps, norm=norm, loss=loss, random_start=False,
                       grad_model=grad_model, bounds=bounds)


def pgd_hook(eps: float, steps: int = 10, step_size: float | None = None, norm: str = "linf", *,
             loss: str = "auto", random_start: bool = True, grad_model: nn.Module | None = None,
             bounds=None, seed: int = 0) -> PerturbHook:
    """PGD-k adversarial training hook (default step 2.5 eps / k, random start)."""
    return PerturbHook(eps, steps=steps, step_size=step_size, norm=norm, loss=loss,
                       random_start=random_start, grad_model=grad_model, bounds=bounds, seed=seed)


def smooth_surrogate(net: TwoLayerNet, activation: str = "relu_softplus_grad",
                     a: float = 10.0) -> TwoLayerNet:
    """A TwoLayerNet sharing ``net``'s parameters with another activation.

    Default: ReLU forward with the parametric-softplus derivative sigmoid(a z)
    backward, for smooth adversarial training with a ReLU net (Xie et al. 2020).
    The parameters are the same tensors, so the surrogate follows training.
    """
    if not isinstance(net, TwoLayerNet):
        raise ValueError("`net` must be a TwoLayerNet")
    relu_forward = net.act.name == "relu" or (net.act.name in ("prelu", "relu_p")
                                              and net.act.params.get("p") == 1.0)
    if activation == "relu_softplus_grad" and not relu_forward:
        # its forward pass is ReLU: the gradient would belong to another model
        raise ValueError(f"`net` must be a ReLU net (activation 'relu', or prelu / relu_p "
                         f"with p = 1) for the 'relu_softplus_grad' surrogate, got "
                         f"{net.act.name!r} with {net.act.params}")
    cfg = net.cfg.replace(activation=activation, a=a)
    sur = TwoLayerNet(cfg, net.W.shape[1], dtype=net.W.dtype, device=net.W.device)
    sur.W, sur.v, sur.b = net.W, net.v, net.b
    sur.center = net.center
    return sur


__all__ = ["PerturbHook", "fgsm_hook", "pgd_hook", "smooth_surrogate"]
