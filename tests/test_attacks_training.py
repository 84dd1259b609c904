"""Adversarial-training hooks: exact steps on a linear model, ball constraints, and training."""
from __future__ import annotations

import pytest
import torch

from gradflow.attacks.radius import attack_radius
from gradflow.attacks.training import fgsm_hook, pgd_hook, smooth_surrogate
from gradflow.config import DataConfig, ModelConfig
from gradflow.data import make_subclass_data
from gradflow.torch_model import TwoLayerNet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _linear_net(D=5):
    net = TwoLayerNet(ModelConfig(width=1, activation="relu"), D)
    with torch.no_grad():
        net.W.copy_(torch.tensor([[1.0, 2.0, 0.0, 0.0, 2.0]], dtype=torch.float64))
        net.v.copy_(torch.tensor([1.0], dtype=torch.float64))
    return net


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_fgsm_hook_exact_on_active_relu(norm):
    net = _linear_net()
    x = torch.tensor([[3.0, 3.0, 0.0, 0.0, 3.0]], dtype=torch.float64)  # f = relu(15) = 15
    y = torch.tensor([1.0], dtype=torch.float64)
    eps = 0.5
    xa = fgsm_hook(eps, norm)(x, y, net)
    # f is linear on the ball, so one step lowers f by exactly eps ||w||_dual (3 or 5)
    drop = eps * (3.0 if norm == "l2" else 5.0)
    assert net(xa).item() == pytest.approx(15.0 - drop, abs=1e-12)


def test_pgd_hook_stays_in_ball_and_raises_loss():
    dat = make_subclass_data(DataConfig(K=4, K1=2, D=10, alpha=0.2, n=64), backend="torch")
    torch.manual_seed(0)
    net = TwoLayerNet(ModelConfig(width=16, activation="relu"), 10)
    net.train()
    for norm, eps in [("l2", 0.3), ("linf", 0.05)]:
        hook = pgd_hook(eps, steps=5, norm=norm, seed=1)
        xa = hook(dat.X, dat.y, net)
        d = (xa - dat.X).norm(dim=1) if norm == "l2" else (xa - dat.X).abs().amax(1)
        assert torch.all(d <= eps * (1 + 1e-12))
        assert net.training  # mode restored
        assert all(p.grad is None for p in net.parameters())  # parameters untouched
        clean = torch.exp(-dat.y * net(dat.X)).mean()
        adv = torch.exp(-dat.y * net(xa)).mean()
        assert adv > clean


class _Scores(torch.nn.Module):
    """f(x) = <w, x>: a score model with known exact radii |f| / ||w||."""

    def __init__(self, w):
        super().__init__()
        self.register_buffer("w", w)

    def forward(self, x):
        return x @ self.w


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hooks_move_confidently_classified_points(dtype):
    # margins ~1e3 (f = 400 <w, x>): the exponential loss's gradient exp(-m) grad m is
    # exactly 0 in both dtypes, so the hooks used to return x unchanged. On a linear model
    # a normalised step of length eps = 1.2 x the largest exact l2 radius breaks every point.
    g = torch.Generator().manual_seed(0)
    w = (400 * torch.randn(10, generator=g, dtype=torch.float64)).to(dtype)
    x = torch.randn(32, 10, generator=g, dtype=torch.float64).to(dtype)
    model = _Scores(w)
    y = torch.sign(model(x)).detach()
    m = y * model(x).detach()
    assert m.median() > 800
    eps = float(1.2 * (m / w.norm()).max())
    for hook in [fgsm_hook(eps, "l2"), pgd_hook(eps, 4, norm="l2", random_start=False)]:
        xa = hook(x, y, model)
        assert torch.all(y * model(xa) < 0)


def test_hook_bounds_checked():
    net = _linear_net()
    for bad in [5.0, (1.0, 0.0), (0.0,)]:
        with pytest.raises(ValueError, match=r"`bounds` must be None or a pair \(lo, hi\)"):
            fgsm_hook(0.1, bounds=bad)
    x = torch.full((2, 5), 1.5, dtype=torch.float64)  # outside [0, 1]
    y = torch.ones(2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"`x` must lie inside `bounds` \[0, 1\]"):
        pgd_hook(0.1, 2, bounds=(0.0, 1.0))(x, y, net)


def test_hooks_check_labels_like_the_attacks():
    net = _linear_net()
    x = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    # {0, 1} labels on a scores model: the y = 0 rows had zero gradient and stayed put
    with pytest.raises(ValueError, match=r"`y` must hold labels in \{-1, \+1\}"):
        fgsm_hook(0.1, "l2")(x, torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64), net)


def test_smooth_surrogate_needs_a_relu_forward():
    for cfg in (ModelConfig(width=4, p=3.0), ModelConfig(width=4, activation="softplus")):
        with pytest.raises(ValueError, match="`net` must be a ReLU net"):
            smooth_surrogate(TwoLayerNet(cfg, 5))
    smooth_surrogate(TwoLayerNet(ModelConfig(width=4, p=1.0), 5))  # pReLU p = 1 is ReLU
    smooth_surrogate(TwoLayerNet(ModelConfig(width=4, p=3.0), 5), activation="softplus")


def test_smooth_surrogate_shares_parameters():
    net = TwoLayerNet(ModelConfig(width=8, activation="relu"), 6)
    sur = smooth_surrogate(net)
    x = torch.randn(4, 6, dtype=torch.float64)
    # forward is ReLU in both; only the backward differs
    assert torch.equal(net(x), sur(x))
    assert sur.W is net.W and sur.v is net.v
    xg = x.clone().requires_grad_(True)
    (g_sur,) = torch.autograd.grad(sur(xg).sum(), xg)
    a = sur.cfg.a
    expected = (torch.sigmoid(a * (x @ net.W.T)) * net.v) @ net.W
    assert torch.allclose(g_sur, expected, atol=1e-12)


def _adv_train(activation, hook_factory, steps=150):
    cfg = DataConfig(K=4, K1=2, D=20, alpha=0.2, n=200)
    dat = make_subclass_data(cfg, backend="torch")
    torch.manual_seed(0)
    net = TwoLayerNet(ModelConfig(width=30, activation=activation), cfg.D)
    hook = hook_factory(net)
    opt = torch.optim.Adam(net.parameters(), 2e-2)
    for _ in range(steps):
        xb = dat.X if hook is None else hook(dat.X, dat.y, net)
        opt.zero_grad()
        torch.exp(-dat.y * net(xb)).mean().backward()
        opt.step()
    test = make_subclass_data(cfg, "test", n=100, backend="torch")
    return attack_radius(net, test.X, test.y).upper


def test_adversarial_training_enlarges_radius():
    # l2 eps = 0.3 on data whose best achievable radius is ~sqrt(2)/2: every AT variant must
    # raise the median verified radius of plain training by at least 10%
    base = _adv_train("relu", lambda net: None).median()
    variants = {
        "fgsm": _adv_train("relu", lambda net: fgsm_hook(0.3, "l2")),
        "pgd": _adv_train("relu", lambda net: pgd_hook(0.3, 3, norm="l2")),
        "smooth-backward": _adv_train("relu", lambda net: pgd_hook(
            0.3, 1, 0.3, norm="l2", random_start=False, grad_model=smooth_surrogate(net))),
        "smooth-both": _adv_train("softplus", lambda net: pgd_hook(0.3, 1, 0.3, norm="l2",
                                                                   random_start=False)),
    }
    for name, r in variants.items():
        assert r.median() > 1.1 * base, name


def test_hook_plugs_into_backend_train():
    from gradflow.backend.train import TrainConfig, train

    dat = make_subclass_data(DataConfig(K=4, K1=2, D=20, alpha=0.2, n=200))
    torch.manual_seed(0)
    net = TwoLayerNet(ModelConfig(width=30, activation="relu"), 20)
    calls = []
    hook = pgd_hook(0.3, 2, norm="l2")

    def counting(x, y, model):
        calls.append(x.shape[0])
        return hook(x, y, model)

    res = train(net, dat, TrainConfig(optimizer="adam", lr=2e-2, epochs=3, batch_size=50,
                                      progress=False), perturb=counting)
    assert res.status == "success"
    assert sum(calls) == 3 * 200  # every minibatch of every epoch went through the hook
