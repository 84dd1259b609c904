"""Batched ensembles reproduce R sequential ``train`` runs (float64, CPU, to 1e-10)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gradflow.backend import (
    PAPER_TRAIN,
    BatchedTwoLayer,
    EnsembleMember,
    TrainConfig,
    paper_members,
    train_ensemble,
    train_member,
)
from gradflow.backend.ensemble import auto_chunk, member_bytes
from gradflow.config import DataConfig, InitConfig, ModelConfig
from gradflow.losses import torch_loss
from gradflow.torch_model import TwoLayerNet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def members(eps=(0.05, 0.05, 0.05, 0.05)):
    """Four members differing in init seed, p, alpha, data seed and minibatch seed."""
    spec = [(1.0, 0.1, 0), (3.0, 0.1, 0), (1.0, 0.25, 1), (2.0, 0.05, 2)]
    return [EnsembleMember(ModelConfig(width=10, p=p), InitConfig(eps=eps[i], seed=i),
                           DataConfig(K=4, K1=2, D=16, alpha=alpha, n=90, seed=ds), seed=7 + i)
            for i, (p, alpha, ds) in enumerate(spec)]


def cfg_for(optimizer: str, **kw) -> TrainConfig:
    base = dict(optimizer=optimizer, lr=0.02 if optimizer == "adam" else 0.4, epochs=5,
                batch_size=32, dtype="float64", device="cpu", progress=False, n_snapshots=8,
                eval_every=2)
    base.update(kw)
    return TrainConfig(**base)


def rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.mark.parametrize("optimizer,loss", [("sgd", "exponential"), ("adam", "logistic"),
                                            ("gd", "exponential")])
def test_ensemble_matches_sequential_runs(optimizer, loss):
    ms = members()
    cfg = cfg_for(optimizer, loss=loss)
    ens = train_ensemble(ms, cfg)
    assert ens.R == 4 and ens.status == ["success"] * 4
    for r, m in enumerate(ms):
        seq = train_member(m, cfg)
        P = seq.model.to_params()
        # Same operations up to batched-vs-single BLAS summation order, float64,
        # ~20 steps: rounding only, so 1e-10 relative (the bound).
        assert rel(ens.W[r], P.W) < 1e-10 and rel(ens.v[r], P.v) < 1e-10
        np.testing.assert_array_equal(ens.history["epoch"], seq.epoch)
        np.testing.assert_array_equal(ens.history["t"], seq.t)
        for key in ("loss", "train_acc", "test_loss", "test_acc", "rank_H", "rank_W"):
            np.testing.assert_allclose(ens.history[key][r], seq.history[key], rtol=1e-10,
                                       err_msg=key)
        np.testing.assert_allclose(ens.history["batch_loss"][r][1:], seq.batch_loss[1:],
                                   rtol=1e-10)
        s_e, s_s = ens.snapshots[r], seq.snapshots
        np.testing.assert_array_equal(s_e.step, s_s.step)
        assert rel(s_e.W, s_s.W) < 1e-10 and rel(s_e.v, s_s.v) < 1e-10
        np.testing.assert_allclose(s_e.loss, s_s.loss, rtol=1e-10)
        np.testing.assert_allclose(ens.params(r).W, ens.W[r])


@pytest.mark.parametrize("ps,normalize,bias,loss", [
    ((1.0, 3.0, 2.5), False, False, "exponential"), ((3.0, 3.0, 3.0), True, True, "logistic"),
    ((1.0, 1.0, 1.0), False, True, "exponential")])
def test_hand_derived_batched_gradient_equals_autograd(ps, normalize, bias, loss):
    torch.manual_seed(0)
    R, B, h, D = len(ps), 7, 5, 4
    models = [ModelConfig(width=h, p=p, normalize_input=normalize, bias=bias) for p in ps]
    W = torch.randn(R, h, D, dtype=torch.float64)
    v = torch.randn(R, h, dtype=torch.float64)
    b = torch.randn(R, dtype=torch.float64) if bias else None
    X = torch.randn(R, B, D, dtype=torch.float64)
    y = torch.sign(torch.randn(R, B, dtype=torch.float64))
    net = BatchedTwoLayer(models, W.clone(), v.clone(), None if b is None else b.clone())
    assert net.analytic
    losses = net.loss_and_grad(X, y, loss, cap=700.0)
    mine = [net.W.grad.clone(), net.v.grad.clone()] + ([net.b.grad.clone()] if bias else [])
    net.zero_grad()
    ref = torch_loss(net(X), y, loss, reduction="none").mean(dim=1)
    ref.sum().backward()
    theirs = [net.W.grad, net.v.grad] + ([net.b.grad] if bias else [])
    # Two exact formulas for the same derivative in float64: rounding only (1e-12).
    torch.testing.assert_close(losses, ref.detach(), rtol=1e-12, atol=0)
    for a, g in zip(mine, theirs):
        torch.testing.assert_close(a, g, rtol=1e-12, atol=1e-14)


def test_float32_ensemble_from_a_tiny_init_matches_its_member_run():
    # relu(Z)^6 is ~2e-44 here, subnormal in float32: the batched gradient must rescale by
    # ||w|| as TwoLayerNet does (it lost 79% of the first gradient and ended 1.2e-2 off).
    m = EnsembleMember(ModelConfig(width=20, p=6.0), InitConfig(eps=1e-7, seed=0),
                       DataConfig(K=4, K1=2, D=30, alpha=0.1, n=100, seed=0), seed=0)
    kw = dict(optimizer="sgd", lr=0.2, epochs=3, batch_size=20, device="cpu", progress=False,
              n_snapshots=0, eval_every=1, rank_every=0)
    ref = train_member(m, TrainConfig(dtype="float64", **kw)).model.to_params()
    one = train_member(m, TrainConfig(dtype="float32", **kw)).model.to_params()
    ens = train_ensemble([m], TrainConfig(dtype="float32", **kw))
    # float32 rounding over 15 steps (measured 3.4e-7 for both): 1e-5 leaves room
    assert rel(one.W, ref.W) < 1e-5
    assert rel(ens.W[0], ref.W) < 1e-5 and rel(ens.W[0], one.W) < 1e-5


def test_mixed_relu_p_and_prelu_members_gradient_equals_autograd():
    torch.manual_seed(1)
    models = [ModelConfig(width=5, activation="relu_p", p=2.0), ModelConfig(width=5, p=3.0),
              ModelConfig(width=5, activation="relu_p", p=1.5)]
    W = torch.randn(3, 5, 4, dtype=torch.float64)
    v = torch.randn(3, 5, dtype=torch.float64)
    X = torch.randn(3, 7, 4, dtype=torch.float64)
    y = torch.sign(torch.randn(3, 7, dtype=torch.float64))
    net = BatchedTwoLayer(models, W.clone(), v.clone(), None)
    assert net.analytic and net.phi is None
    net.loss_and_grad(X, y, "exponential", cap=700.0)
    mine = [net.W.grad.clone(), net.v.grad.clone()]
    net.zero_grad()
    torch_loss(net(X), y, "exponential", reduction="none").mean(dim=1).sum().backward()
    # each member alone through TwoLayerNet's autograd: the batched module is that net
    for r, m in enumerate(models):
        one = TwoLayerNet(m, 4)
        with torch.no_grad():
            one.W.copy_(W[r])
            one.v.copy_(v[r])
        torch_loss(one(X[r]), y[r], "exponential").backward()
        # two exact formulas for one derivative in float64: rounding only
        torch.testing.assert_close(mine[0][r], one.W.grad, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(net.W.grad[r], one.W.grad, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(mine[1][r], one.v.grad, rtol=1e-12, atol=1e-14)


def test_members_really_differ():
    # Guard against a vacuous match: the four trajectories are distinct.
    ens = train_ensemble(members(), cfg_for("sgd", n_snapshots=0))
    finals = ens.history["loss"][:, -1]
    assert len(np.unique(np.round(finals, 12))) == 4


def test_chunking_does_not_change_results():
    cfg = cfg_for("sgd", n_snapshots=0)
    whole = train_ensemble(members(), cfg)
    parts = train_ensemble(members(), cfg, chunk_size=3)
    assert parts.chunks == [3, 1]
    # Each member's arithmetic is independent of its chunk mates: rounding only.
    assert rel(parts.W, whole.W) < 1e-12
    np.testing.assert_allclose(parts.history["loss"], whole.history["loss"], rtol=1e-12)


def test_a_failing_member_does_not_disturb_the_others():
    good = train_ensemble(members(), cfg_for("sgd", n_snapshots=0))
    # Member 1 starts at norm 30 (p=3): its loss is ~3e8, SGD with lr 0.4 explodes and
    # by epoch 2 its margins pass the float64 exp cap (~700): status 'overflow'.
    bad = train_ensemble(members(eps=(0.05, 30.0, 0.05, 0.05)), cfg_for("sgd", n_snapshots=0))
    assert bad.status[1] == "overflow" and "margins saturated after epoch 2" in bad.message[1]
    assert [bad.status[r] for r in (0, 2, 3)] == ["success"] * 3
    for r in (0, 2, 3):
        assert rel(bad.W[r], good.W[r]) < 1e-12
    # The failing epoch's row is kept (as in ``train``); later rows are NaN.
    np.testing.assert_array_equal(bad.history["epoch"], [0, 2, 4, 5])
    assert bad.history["loss"][1, 1] > 1e300 and np.all(np.isnan(bad.history["loss"][1, 2:]))


def _assert_matches_sequential(ens, ms, cfg):
    """Member r of ``ens`` is ``train_member(ms[r], cfg)``: status, final parameters (NaNs
    included), the history rows of its own epochs (NaN in every other row) and snapshots."""
    epochs = list(ens.history["epoch"])
    for r, m in enumerate(ms):
        seq = train_member(m, cfg)
        assert (ens.status[r], ens.message[r]) == (seq.status, seq.message)
        net = seq.model  # its raw tensors: to_params() refuses NaN
        # float64, a handful of steps: rounding only (1e-10), NaN where the run blew up
        for a, b in ((ens.W[r], net.W), (ens.v[r], net.v), (ens.b[r], net.b)):
            b = b.detach().numpy()
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-300)
        own = [epochs.index(e) for e in seq.epoch]
        others = np.setdiff1d(np.arange(len(epochs)), own)
        for key in ("loss", "train_acc", "test_acc", "rank_H", "rank_W", "batch_loss"):
            np.testing.assert_allclose(ens.history[key][r][own], seq.history[key], rtol=1e-10,
                                       err_msg=key)
            assert np.all(np.isnan(ens.history[key][r][others])), key
        s_e, s_s = ens.snapshots[r], seq.snapshots
        np.testing.assert_array_equal(s_e.step, s_s.step)
        for a, b in ((s_e.W, s_s.W), (s_e.v, s_s.v), (s_e.b, s_s.b), (s_e.loss, s_s.loss)):
            np.testing.assert_allclose(a, b, rtol=1e-10)


def _blowing_up_members():
    """Member 1 (norm 5, lr 1e6) goes NaN in epoch 2, off the eval schedule (every 3rd
    epoch); member 0 (norm 1e-5) trains on to epoch 6."""
    data = DataConfig(K=4, K1=2, D=16, alpha=0.1, n=90, seed=0)
    model = ModelConfig(width=10, p=3.0, activation="relu_p", bias=True)
    cfg = TrainConfig(optimizer="sgd", lr=1e6, epochs=6, batch_size=32, loss="logistic",
                      dtype="float64", device="cpu", progress=False, n_snapshots=12,
                      eval_every=3, rank_every=1)
    return [EnsembleMember(model, InitConfig(eps=e, seed=0), data, seed=1)
            for e in (1e-5, 5.0)], cfg


@pytest.mark.parametrize("chunk_size", [None, 1])
def test_a_member_going_nan_is_frozen_and_matches_its_own_run(chunk_size):
    # Before: the NaN member kept training, its NaN Gram matrix broke the batched
    # eigvalsh of the next rank evaluation (losing every member), the off-schedule
    # failure row was filled in for the healthy member too, and chunks of different
    # row counts could not be concatenated.
    ms, cfg = _blowing_up_members()
    ens = train_ensemble(ms, cfg, chunk_size=chunk_size)
    assert ens.status == ["success", "nan"]
    np.testing.assert_array_equal(ens.history["epoch"], [0, 2, 3, 6])
    _assert_matches_sequential(ens, ms, cfg)


def test_p_values_equal_to_six_digits_are_still_different_members():
    # Activation.spec rounds p to 6 digits; the ensemble must compare the exact values.
    data = DataConfig(K=4, K1=2, D=16, alpha=0.1, n=90, seed=0)
    cfg = cfg_for("sgd", epochs=2, n_snapshots=0)
    ms = [EnsembleMember(ModelConfig(width=10, p=p), InitConfig(eps=0.5, seed=0), data, seed=1)
          for p in (3.0, 3.000001)]
    ens = train_ensemble(ms, cfg)
    for r, m in enumerate(ms):
        assert rel(ens.W[r], train_member(m, cfg).model.to_params().W) < 1e-10
    capped = [EnsembleMember(ModelConfig(width=10, activation="capped_relu", beta=b),
                             InitConfig(eps=0.5, seed=0), data) for b in (1.0, 1.0000004)]
    with pytest.raises(ValueError, match=r"`members\[1\].model`"):
        train_ensemble(capped, cfg)


def test_member_saturated_at_start_fails_alone():
    ms = members()
    ms[2] = EnsembleMember(ms[2].model, InitConfig(eps=200.0, seed=2), ms[2].data, seed=9)
    ens = train_ensemble(ms, cfg_for("gd", n_snapshots=0, epochs=2))
    assert ens.status == ["success", "success", "overflow", "success"]
    assert "after epoch 0" in ens.message[2]


def test_ensemble_rejects_incompatible_members():
    ms = members()
    other = EnsembleMember(ModelConfig(width=11), ms[0].init, ms[0].data)
    with pytest.raises(ValueError, match=r"`members\[4\].model.width`"):
        train_ensemble(ms + [other], cfg_for("sgd"))
    other = EnsembleMember(ms[0].model, ms[0].init, ms[0].data.replace(n=91))
    with pytest.raises(ValueError, match=r"`members\[4\].data.n`"):
        train_ensemble(ms + [other], cfg_for("sgd"))
    other = EnsembleMember(ModelConfig(width=10, activation="capped_relu", beta=2.0),
                           ms[0].init, ms[0].data)
    with pytest.raises(ValueError, match=r"`members\[4\].model.activation`"):
        train_ensemble(ms + [other], cfg_for("sgd"))
    with pytest.raises(ValueError, match="`loss`"):
        train_ensemble(ms, cfg_for("sgd", loss="cross_entropy"))
    with pytest.raises(ValueError, match="`members`"):
        train_ensemble([], cfg_for("sgd"))
    with pytest.raises(ValueError, match="`chunk_size`"):
        train_ensemble(ms, cfg_for("sgd"), chunk_size=0)
    with pytest.raises(ValueError, match="`seed`"):
        EnsembleMember(ms[0].model, ms[0].init, ms[0].data, seed=-1)


def test_paper_scale_members_follow_theory_section_7():
    ms = paper_members()
    assert len(ms) == 150  # 2 p values x 15 alphas x 5 repeats
    m = ms[0]
    assert (m.model.width, m.data.D, m.data.n, m.data.K, m.data.K1) == (2000, 1000, 20000, 10, 6)
    assert m.init.mode == "independent" and m.init.eps == 1e-7 and not m.model.bias
    alphas = sorted({x.data.alpha for x in ms})
    np.testing.assert_allclose(alphas, np.linspace(0.01, 0.3, 15))
    # The p=1 and p=3 halves are paired: identical data, init and minibatch seeds.
    assert [x.data for x in ms[:75]] == [x.data for x in ms[75:]]
    assert {x.model.p for x in ms[:75]} == {1.0} and {x.model.p for x in ms[75:]} == {3.0}
    assert len({(x.data.alpha, x.data.seed) for x in ms[:75]}) == 75
    c = PAPER_TRAIN
    assert (c.optimizer, c.lr, c.batch_size, c.epochs, c.loss) == ("sgd", 0.2, 100, 401,
                                                                  "exponential")
    # Memory model: one paper member in float32 needs ~0.1-0.3 GB, so an 80 GB GPU
    # budget of 40 GB holds all 150 in one chunk while 2 GB forces several.
    per = member_bytes(m, c, test=True)
    assert 5e7 < per < 5e8
    cpu = torch.device("cpu")
    assert auto_chunk(ms, c, cpu, True, memory_gb=40.0) == 150
    assert 1 <= auto_chunk(ms, c, cpu, True, memory_gb=2.0) < 150


@pytest.mark.gpu
def test_ensemble_on_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    cpu = train_ensemble(members(), cfg_for("sgd", n_snapshots=0))
    gpu = train_ensemble(members(), cfg_for("sgd", n_snapshots=0, device="cuda"))
    # Different BLAS, float64, ~15 steps: rounding-level differences only.
    assert rel(gpu.W, cpu.W) < 1e-9
