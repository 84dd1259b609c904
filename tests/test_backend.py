"""Tests of the torch backend: training loop, metrics, checkpoints, devices, models, configs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gradflow.backend import (
    MLP,
    SmallCNN,
    TrainConfig,
    evaluate,
    make_two_layer,
    resolve_device,
    resolve_dtype,
    snapshot_steps,
    stable_rank_torch,
    train,
)
from gradflow.backend.metrics import stable_rank_gram
from gradflow.config import DataConfig, InitConfig, ModelConfig
from gradflow.data import make_subclass_data
from gradflow.linalg import stable_rank
from gradflow.model import loss_and_grad
from gradflow.torch_model import export_reference_checkpoint, load_reference_checkpoint

DATA = DataConfig(K=4, K1=2, D=12, alpha=0.2, n=120, seed=3)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def quiet(**kw) -> TrainConfig:
    """A small float64 CPU config with the progress bar off."""
    base = dict(optimizer="sgd", lr=0.2, epochs=4, batch_size=32, dtype="float64", device="cpu",
                progress=False, n_snapshots=6)
    base.update(kw)
    return TrainConfig(**base)


def small_net(p=1.0, eps=0.1, seed=0, width=8, **model_kw):
    return make_two_layer(ModelConfig(width=width, p=p, **model_kw), InitConfig(eps=eps, seed=seed),
                          DATA.D)


@pytest.fixture(scope="module")
def data():
    return make_subclass_data(DATA, "train"), make_subclass_data(DATA, "test")


# -- stable rank ----------------------------------------------------------------------------


def _with_singular_values(s, shape, seed=0):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((shape[0], len(s))))
    V, _ = np.linalg.qr(rng.standard_normal((shape[1], len(s))))
    return (U * s) @ V.T


@pytest.mark.parametrize("shape", [(40, 7), (7, 40)])
def test_stable_rank_on_constructed_matrices(shape):
    s = np.array([3.0, 2.0, 1.0, 0.5])
    M = _with_singular_values(s, shape)
    exact = np.sum(s**2) / s[0] ** 2  # ||M||_F^2 / ||M||_2^2 from the singular values
    # float64 eigvalsh of a 7x7 Gram matrix: rounding only, so 1e-12 relative.
    assert float(stable_rank_torch(torch.tensor(M))) == pytest.approx(exact, rel=1e-12)
    assert stable_rank(M) == pytest.approx(exact, rel=1e-12)
    # r equal singular values give exactly r; rank one gives 1; zero gives 0.
    assert float(stable_rank_torch(torch.tensor(_with_singular_values([2.0] * 5, shape)))) \
        == pytest.approx(5.0, rel=1e-12)
    assert float(stable_rank_torch(torch.tensor(np.outer(np.arange(1.0, shape[0] + 1),
                                                         np.ones(shape[1]))))) \
        == pytest.approx(1.0, rel=1e-12)
    assert float(stable_rank_torch(torch.zeros(shape, dtype=torch.float64))) == 0.0


def test_stable_rank_batched_and_float32():
    Ms = np.stack([_with_singular_values(s, (30, 6), seed=i)
                   for i, s in enumerate(([1.0], [1.0, 1.0, 1.0], [4.0, 2.0]))])
    got = stable_rank_torch(torch.tensor(Ms, dtype=torch.float32)).numpy()
    # float32 inputs (7 significant digits) promoted to float64: 1e-5 relative.
    np.testing.assert_allclose(got, [1.0, 3.0, 1.25], rtol=1e-5)


def test_training_metrics_are_stable_ranks_of_H_and_W(data):
    tr, te = data
    net = small_net(p=2.0, eps=0.3)
    res = train(net, tr, quiet(epochs=2), test_data=te)
    H = net.hidden(torch.as_tensor(tr.X)).detach().numpy()
    # Gram-eigvalsh vs numpy SVD definition, float64: 1e-10 relative.
    assert res.rank_H[-1] == pytest.approx(stable_rank(H), rel=1e-10)
    assert res.rank_W[-1] == pytest.approx(stable_rank(net.W.detach().numpy()), rel=1e-10)
    G = torch.tensor(H.T @ H)
    assert float(stable_rank_gram(G)) == pytest.approx(stable_rank(H), rel=1e-10)


# -- GD is the Euler discretisation; time convention ---------------------------------------


def test_gd_equals_numpy_euler_steps(data):
    tr, _ = data
    mc = ModelConfig(width=6, p=3.0)
    net = make_two_layer(mc, InitConfig(eps=0.5, seed=1), DATA.D)
    theta = net.to_params()
    eta, steps = 0.05, 15
    res = train(net, tr, quiet(optimizer="gd", lr=eta, epochs=steps, n_snapshots=40))
    for _ in range(steps):
        _, g = loss_and_grad(theta, tr.X, tr.y, mc)
        theta.W -= eta * g.W
        theta.v -= eta * g.v
    got = net.to_params()
    # Hand-derived numpy gradient vs torch autograd, float64, 15 steps: 1e-12 absolute.
    np.testing.assert_allclose(got.W, theta.W, atol=1e-12, rtol=0)
    np.testing.assert_allclose(got.v, theta.v, atol=1e-12, rtol=0)
    assert res.steps == steps and np.allclose(res.t, res.step * eta)
    snaps = res.snapshots
    assert snaps.step[0] == 0 and snaps.step[-1] == steps
    np.testing.assert_allclose(snaps.t, snaps.step * eta, rtol=1e-15)
    np.testing.assert_array_equal(snaps.W[-1], got.W)  # the last snapshot is the final state
    assert snaps.loss[-1] == pytest.approx(res.loss[-1], rel=1e-14)


def test_snapshot_schedule_is_log_spaced():
    ks = snapshot_steps(10_000, 20)
    assert ks[0] == 0 and ks[-1] == 10_000 and np.all(np.diff(ks) > 0)
    ratios = ks[2:] / ks[1:-1]
    # log spacing: consecutive ratios 10^(4/18) ~ 1.67 once rounding no longer matters.
    assert np.allclose(ratios[-8:], 10 ** (4 / 18), rtol=0.02)
    assert list(snapshot_steps(0, 5)) == [0] and len(snapshot_steps(50, 0)) == 0


# -- losses, accuracy, optimisers -----------------------------------------------------------


@pytest.mark.parametrize("optimizer,loss", [("sgd", "exponential"), ("adam", "logistic"),
                                            ("gd", "logistic")])
def test_training_reduces_loss_and_reports_accuracy(data, optimizer, loss):
    tr, te = data
    net = small_net(eps=0.3)
    lr = 0.02 if optimizer == "adam" else 0.5
    epochs = 60 if optimizer == "gd" else 15  # about 60 steps either way (4 minibatches/epoch)
    res = train(net, tr, quiet(optimizer=optimizer, loss=loss, lr=lr, epochs=epochs),
                test_data=te)
    assert res.success and res.loss[-1] < res.loss[0]
    f = net(torch.as_tensor(te.X)).detach().numpy()
    assert res.test_acc[-1] == pytest.approx(np.mean(np.sign(f) == te.y), abs=1e-15)
    assert res.train_acc[-1] > 0.9  # separable data (alpha=0.2, orthonormal centres)


def test_cross_entropy_mlp_and_cnn():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 1, 28, 28))
    y = rng.integers(0, 3, 64)
    cfg = quiet(optimizer="adam", lr=1e-3, loss="cross_entropy", epochs=2, dtype="float32")
    cnn = SmallCNN("param_softplus:a=10", n_classes=3, channels=(4, 8), hidden=16)
    res = train(cnn, (X, y), cfg)
    assert res.success and res.snapshots is None and math.isfinite(res.rank_H[-1])
    f = cnn(torch.as_tensor(X, dtype=torch.float32)).argmax(1).numpy()
    assert res.train_acc[-1] == pytest.approx(np.mean(f == y), abs=1e-12)
    mlp = MLP(784, [32, 8, 32], ["relu", "capped_relu:beta=0.1", "relu"], n_outputs=3)
    assert train(mlp, (X.reshape(64, -1), y), cfg).success


def test_mlp_per_layer_activations():
    torch.manual_seed(0)
    mlp = MLP(10, [16, 4, 16], ["relu", "capped_relu:beta=0.05", "silu"], n_outputs=1,
              dtype=torch.float64)
    x = 10 * torch.randn(50, 10, dtype=torch.float64)
    h1, h2, h3 = mlp.features(x)
    assert h1.shape == (50, 16) and h2.shape == (50, 4) and h3.shape == (50, 16)
    h1, h2 = h1.detach(), h2.detach()
    assert float(h1.min()) >= 0 and float(h2.max()) <= 0.05 and float(h2.min()) >= 0
    assert mlp(x).shape == (50,)
    with pytest.raises(ValueError, match="`activation`.*relu_p"):
        MLP(10, [4], ["prelu:p=2"])


def test_relu_softplus_grad_model_is_relu_forward_smooth_backward():
    torch.manual_seed(0)
    a = MLP(5, [7], ["relu"], n_outputs=1, dtype=torch.float64)
    b = MLP(5, [7], ["relu_softplus_grad:a=10"], n_outputs=1, dtype=torch.float64)
    b.load_state_dict(a.state_dict())
    x = torch.randn(9, 5, dtype=torch.float64, requires_grad=True)
    assert torch.equal(a(x), b(x))  # identical forward pass
    ga, = torch.autograd.grad(a(x).sum(), x)
    gb, = torch.autograd.grad(b(x).sum(), x)
    assert not torch.allclose(ga, gb)  # the backward pass uses sigmoid(10 z), not 1[z > 0]


# -- failures are results -------------------------------------------------------------------


def test_nan_stops_with_status_and_keeps_metrics(data):
    tr, _ = data
    calls = []

    def poison(x, y, model):  # a perturbation hook that turns NaN at the 10th minibatch
        calls.append(1)
        return x * math.nan if len(calls) >= 10 else x

    res = train(small_net(), tr, quiet(epochs=6), perturb=poison)
    assert res.status == "nan" and "epoch 3" in res.message and not res.success
    assert list(res.epoch) == [0, 1, 2, 3] and np.all(np.isfinite(res.loss[:3]))
    with pytest.raises(RuntimeError, match="nan"):
        train(small_net(), tr, quiet(epochs=6), perturb=lambda x, y, m: x * math.nan, throw=True)


def test_exponential_overflow_is_detected(data):
    tr, _ = data
    net = small_net(eps=1.0)
    with torch.no_grad():  # margins ~ -1e4 push exp(-z) past the float64 cap (~700)
        net.v.fill_(-1e4)
        net.W.copy_(torch.abs(net.W.detach()) * 1e2)
    y_pos = (tr.X, np.ones(tr.n))
    res = train(net, y_pos, quiet(epochs=3))
    assert res.status == "overflow" and "margins" in res.message and len(res.loss) == 1


# -- perturbation hook ----------------------------------------------------------------------


def test_perturb_hook_gradients_do_not_leak(data):
    tr, _ = data
    seen = {}

    def leaky_identity(x, y, model):
        # An attack computes gradients through the model; those must not reach the step.
        seen.setdefault("rows", []).append(x.shape[0])
        seen["model"] = model
        x = x.clone().requires_grad_(True)
        (model(x) * y).sum().backward()
        return x

    ref = train(small_net(), tr, quiet())
    net = small_net()
    got = train(net, tr, quiet(), perturb=leaky_identity)
    # 120 samples in minibatches of 32: 32, 32, 32, 24 per epoch, 4 epochs.
    assert seen["model"] is net and seen["rows"] == [32, 32, 32, 24] * 4
    np.testing.assert_array_equal(got.loss, ref.loss)  # bitwise: same ops in the same order
    np.testing.assert_array_equal(net.W.detach().numpy(), ref.model.W.detach().numpy())


def test_fgsm_style_hook_changes_training(data):
    tr, _ = data

    def fgsm(x, y, model, eps=0.1):
        x = x.clone().requires_grad_(True)
        loss = torch.exp(-y * model(x)).mean()
        g, = torch.autograd.grad(loss, x)
        return x + eps * g.sign()

    clean = train(small_net(), tr, quiet())
    adv = train(small_net(), tr, quiet(), perturb=fgsm)
    assert adv.success and not np.allclose(adv.batch_loss[1:], clean.batch_loss[1:])


# -- reproducibility and checkpoints --------------------------------------------------------


def _drop_time(h):
    return {k: v for k, v in h.items() if k != "time"}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_gives_identical_result(data, tmp_path, optimizer):
    tr, te = data
    cfg = quiet(optimizer=optimizer, lr=0.05 if optimizer == "adam" else 0.3, epochs=6,
                n_snapshots=12)
    full = train(small_net(), tr, cfg, test_data=te)
    ck = tmp_path / "run.ckpt"
    part = train(small_net(), tr, cfg, test_data=te, checkpoint=ck,
                 callback=lambda epoch, row: epoch == 3)
    assert part.status == "stopped" and part.epochs_done == 3
    # A fresh process would rebuild the model from scratch: use a differently seeded net.
    resumed = train(small_net(seed=99), tr, cfg, test_data=te, checkpoint=ck, resume=True)
    assert resumed.status == "success" and resumed.epochs_done == 6
    for k, v in _drop_time(full.history).items():
        np.testing.assert_array_equal(resumed.history[k], v, err_msg=k)  # bitwise identical
    np.testing.assert_array_equal(resumed.model.W.detach().numpy(), full.model.W.detach().numpy())
    np.testing.assert_array_equal(resumed.snapshots.W, full.snapshots.W)
    np.testing.assert_array_equal(resumed.snapshots.t, full.snapshots.t)
    with pytest.raises(ValueError, match="`cfg` differs.*lr"):
        train(small_net(), tr, cfg.replace(lr=0.123), checkpoint=ck, resume=True)
    # fewer epochs than the checkpoint holds would hand back the longer run
    with pytest.raises(ValueError, match="`epochs` must be >= 6.*got 3"):
        train(small_net(), tr, cfg.replace(epochs=3), checkpoint=ck, resume=True)


def test_evaluation_schedule_does_not_change_training(data):
    tr, te = data
    every = train(small_net(), tr, quiet(eval_every=1), test_data=te)
    never = train(small_net(), tr, quiet(eval_every=0), test_data=te)
    sparse = train(small_net(), tr, quiet(eval_every=3), test_data=te)
    np.testing.assert_array_equal(never.model.W.detach().numpy(), every.model.W.detach().numpy())
    np.testing.assert_array_equal(never.batch_loss, every.batch_loss)
    assert list(never.epoch) == [0, 1, 2, 3, 4] and np.all(np.isnan(never.loss))
    assert list(sparse.epoch) == [0, 3, 4]  # every 3rd epoch plus the last
    np.testing.assert_array_equal(sparse.test_acc, every.test_acc[[0, 3, 4]])


def test_seeded_runs_are_reproducible_and_seed_matters(data):
    tr, _ = data
    a = train(small_net(), tr, quiet(seed=5))
    b = train(small_net(), tr, quiet(seed=5))
    c = train(small_net(), tr, quiet(seed=6))
    np.testing.assert_array_equal(a.loss, b.loss)
    assert not np.array_equal(a.loss, c.loss)  # a different minibatch order


def test_trained_model_reference_checkpoint_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    D, C, n = 20, 3, 90
    X = rng.random((n, D))
    y = rng.integers(0, C, n)
    mc = ModelConfig(width=16, p=2.0, normalize_input=True, center_input=True, bias=True,
                     n_outputs=C)
    net = make_two_layer(mc, InitConfig(eps=0.5, seed=0), D)
    with torch.no_grad():
        net.center.copy_(torch.as_tensor(X.mean(0)))
    res = train(net, (X, y), quiet(optimizer="adam", lr=0.02, loss="cross_entropy", epochs=5))
    assert res.success and res.loss[-1] < res.loss[0]
    state = export_reference_checkpoint(net)
    assert state["prelulayer.W"].shape == (D, 16) and state["center"].shape == (1, D)
    path = tmp_path / "ref.pt"
    torch.save(state, path)
    back = load_reference_checkpoint(str(path), p=2.0, dtype=torch.float64)
    x = torch.as_tensor(X)
    # float64 end to end, same operations: agreement to rounding (1e-12).
    torch.testing.assert_close(back(x), net(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(back.W, net.W, rtol=0, atol=0)


# -- devices --------------------------------------------------------------------------------


def test_device_auto_falls_back_to_cpu(monkeypatch, data):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="`device`.*CUDA is not available"):
        resolve_device("cuda")
    res = train(small_net(), data[0], quiet(device="auto", epochs=1))
    assert res.success and res.device == "cpu" and res.model.W.device.type == "cpu"


def test_device_auto_prefers_cuda_when_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


# -- bad configuration ----------------------------------------------------------------------


@pytest.mark.parametrize("kw,name", [
    ({"optimizer": "lbfgs"}, "optimizer"), ({"loss": "hinge"}, "loss"), ({"lr": 0.0}, "lr"),
    ({"lr": -1.0}, "lr"), ({"batch_size": 0}, "batch_size"), ({"epochs": -1}, "epochs"),
    ({"dtype": "float16"}, "dtype"), ({"momentum": 1.0}, "momentum"),
    ({"betas": (0.9,)}, "betas"), ({"n_snapshots": -2}, "n_snapshots"),
    ({"eval_every": -1}, "eval_every"), ({"lr": float("nan")}, "lr"),
    ({"betas": 0.9}, "betas"), ({"device": "gpu"}, "device"), ({"device": "cuda:x"}, "device"),
    ({"device": "cuda:"}, "device"),
])
def test_bad_train_config_names_the_parameter(kw, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        TrainConfig(**kw)


def test_bad_inputs_name_the_parameter(data):
    with pytest.raises(ValueError, match="`activations`.*one entry per hidden layer"):
        MLP(10, [8, 4], ["relu"])
    with pytest.raises(ValueError, match=r"`widths\[1\]`"):
        MLP(10, [8, 0], "relu")
    with pytest.raises(ValueError, match="`device`"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="`dtype`"):
        resolve_dtype(torch.int32)
    with pytest.raises(ValueError, match="`loss`"):
        train(small_net(), data[0], quiet(loss="cross_entropy"))
    with pytest.raises(ValueError, match="`data`.*-1, \\+1"):
        train(small_net(), (data[0].X, np.zeros(DATA.n)), quiet())
    with pytest.raises(ValueError, match="`data`"):
        train(small_net(), data[0].X, quiet())
    # an (n, 1) output times (n,) labels would broadcast to an (n, n) loss
    column = torch.nn.Sequential(torch.nn.Linear(DATA.D, 4, dtype=torch.float64),
                                 torch.nn.ReLU(), torch.nn.Linear(4, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"outputs `f` of the labels' shape \(n,\)"):
        train(column, data[0], quiet())
    with pytest.raises(ValueError, match="`total_steps` must be"):
        snapshot_steps(-5, 3)
    with pytest.raises(ValueError, match="`n_snapshots` must be"):
        snapshot_steps(10, -2)
    with pytest.raises(ValueError, match="`perturb`"):
        train(small_net(), data[0], quiet(), perturb=3)
    with pytest.raises(ValueError, match="`data`: X must be finite"):
        train(small_net(), (data[0].X * np.nan, data[0].y), quiet())
    with pytest.raises(ValueError, match="`resume=True` needs `checkpoint`"):
        train(small_net(), data[0], quiet(), resume=True)
    X3 = torch.randn(20, 4, dtype=torch.float64)
    mlp3 = MLP(4, [5], "relu", n_outputs=3, dtype="float64")
    for bad in (5, -1):
        with pytest.raises(ValueError, match=r"`data`: cross_entropy labels must lie in \[0, 2\]"):
            train(mlp3, (X3, torch.full((20,), bad)), quiet(loss="cross_entropy"))
    with pytest.raises(ValueError, match="`x` must have 4 features"):
        mlp3(torch.randn(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="`block`"):
        evaluate(mlp3, X3, torch.zeros(20, dtype=torch.long), "cross_entropy", block=0)
    with pytest.raises(ValueError, match="`loss`"):
        evaluate(mlp3, X3, torch.zeros(20, dtype=torch.long), "hinge")
    with pytest.raises(ValueError, match="`bias`"):
        MLP(4, [5], "relu", bias="yes")
    with pytest.raises(ValueError, match="`channels`"):
        SmallCNN(channels=32)


def test_config_round_trip():
    cfg = TrainConfig(optimizer="adam", betas=[0.8, 0.99])
    assert cfg.betas == (0.8, 0.99)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_evaluate_blocks_agree(data):
    tr, _ = data
    net = small_net(p=3.0, eps=0.5)
    X, y = torch.as_tensor(tr.X), torch.as_tensor(tr.y)
    a = evaluate(net, X, y, "logistic", block=7, rank=True)
    b = evaluate(net, X, y, "logistic", block=10_000, rank=True)
    # Summation in blocks vs at once: float64 rounding only.
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-13)
    assert a["rank_H"] == pytest.approx(b["rank_H"], rel=1e-12) and a["acc"] == b["acc"]


def test_snapshots_feed_the_alignment_metrics(data):
    metrics = pytest.importorskip("gradflow.metrics")
    tr, _ = data
    res = train(small_net(p=3.0, eps=1e-3), tr, quiet(epochs=5, n_snapshots=10))
    traj = metrics.Trajectory.from_any(res.snapshots, centres=tr.centres,
                                       subclass_labels=tr.subclass_labels)
    np.testing.assert_array_equal(traj.t, res.snapshots.t)
    assert traj.W.shape == (len(res.snapshots.t), 8, DATA.D)
    np.testing.assert_array_equal(traj.loss, res.snapshots.loss)


def test_attack_hooks_plug_in(data, tmp_path):
    training = pytest.importorskip("gradflow.attacks.training")
    tr, _ = data
    clean = train(small_net(), tr, quiet())
    adv = train(small_net(), tr, quiet(), perturb=training.fgsm_hook(0.05, norm="l2"))
    assert adv.success and not np.allclose(adv.batch_loss[1:], clean.batch_loss[1:])


class _CountingHook:
    """A hook with private state: identity, but counts calls (checkpointed via state_dict)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, y, model):
        self.calls += 1
        return x + 1e-3 * self.calls  # depends on the state, so a lost state changes results

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, st):
        self.calls = st["calls"]


def test_resume_restores_hook_state(data, tmp_path):
    tr, _ = data
    full = train(small_net(), tr, quiet(), perturb=_CountingHook())
    ck = tmp_path / "hook.ckpt"
    train(small_net(), tr, quiet(), perturb=_CountingHook(), checkpoint=ck,
          callback=lambda e, row: e == 2)
    resumed = train(small_net(), tr, quiet(), perturb=_CountingHook(), checkpoint=ck, resume=True)
    np.testing.assert_array_equal(resumed.model.W.detach().numpy(), full.model.W.detach().numpy())


def test_resume_restores_the_random_starts_of_a_pgd_hook(data, tmp_path):
    from gradflow.attacks import pgd_hook

    tr, _ = data

    def hook():  # random starts from the hook's own generator (1.3e-3 off before the fix)
        return pgd_hook(0.05, steps=2, norm="l2")

    full = train(small_net(), tr, quiet(), perturb=hook())
    ck = tmp_path / "pgd.ckpt"
    train(small_net(), tr, quiet(), perturb=hook(), checkpoint=ck, callback=lambda e, row: e == 2)
    resumed = train(small_net(), tr, quiet(), perturb=hook(), checkpoint=ck, resume=True)
    np.testing.assert_array_equal(resumed.model.W.detach().numpy(), full.model.W.detach().numpy())


def test_loss_must_fit_the_output_count(data):
    with pytest.raises(ValueError, match="`loss`"):
        train(MLP(DATA.D, [4], "relu", n_outputs=1), data[0], quiet(loss="cross_entropy"))
    with pytest.raises(ValueError, match="`loss`"):
        train(SmallCNN(n_classes=3, channels=(2, 2), hidden=4), (np.zeros((4, 784)),
                                                                 np.ones(4)), quiet())


def test_torch_threads_restores_and_validates():
    from gradflow.backend import torch_threads

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(0):  # 0: leave torch's setting alone
        assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match=r"`threads` must be an integer >= 0"):
        with torch_threads(-1):
            pass
