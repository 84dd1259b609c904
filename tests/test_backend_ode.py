"""Full-batch GD in the torch backend tracks the gradient flow with O(eta) error.

GD theta_{k+1} = theta_k - eta grad L(theta_k) is forward Euler for
d theta/dt = -grad L, so at a fixed time T = K eta its global error is
C eta + O(eta^2). We fit the slope of log(error) against log(eta) and require
1 +- 0.2. The flow is computed two ways: an independent tight scipy DOP853
solve on the numpy gradient ``gradflow.model.loss_and_grad`` (always), and the
gradient-flow engine ``gradflow.dynamics.simulate`` (when it is installed).
pReLU with p = 3 keeps the vector field C^2, so Euler's order is not spoiled by kinks.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from gradflow.backend import TrainConfig, train
from gradflow.config import DataConfig, InitConfig, ModelConfig
from gradflow.data import make_subclass_data
from gradflow.init import init_params
from gradflow.model import TwoLayerParams, loss_and_grad
from gradflow.torch_model import to_torch

DATA = DataConfig(K=4, K1=2, D=6, alpha=0.2, n=40, seed=1)
MODEL = ModelConfig(width=4, p=3.0)
T = 1.0
ETAS = np.array([0.04, 0.02, 0.01, 0.005])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def problem():
    data = make_subclass_data(DATA, "train")
    params0 = init_params(MODEL, InitConfig(eps=0.5, seed=2), DATA.D)
    return data, params0


def _flow_scipy(data, params0: TwoLayerParams) -> np.ndarray:
    h, D = params0.W.shape

    def rhs(_, y):
        p = TwoLayerParams(y[:h * D].reshape(h, D), y[h * D:])
        _, g = loss_and_grad(p, data.X, data.y, MODEL, "exponential")
        return -np.concatenate([g.W.ravel(), g.v])

    y0 = np.concatenate([params0.W.ravel(), params0.v])
    sol = solve_ivp(rhs, (0.0, T), y0, method="DOP853", rtol=1e-11, atol=1e-13)
    assert sol.success
    return sol.y[:, -1]


def _flow_engine(data, params0: TwoLayerParams) -> np.ndarray:
    dyn = pytest.importorskip("gradflow.dynamics")
    sol = dyn.simulate(X=data.X, y=data.y, model=MODEL, params=params0.copy(),
                       loss="exponential", solver="DOP853",
                       options={"rtol": 1e-11, "atol": 1e-13}, t_max=T, save_at=[0.0, T],
                       progress=False)
    assert sol.success and sol.t[-1] == pytest.approx(T, abs=1e-12)
    return np.concatenate([sol.W[-1].ravel(), sol.v[-1]])


def _gd_errors(data, params0, reference: np.ndarray) -> np.ndarray:
    errs = []
    for eta in ETAS:
        steps = int(round(T / eta))
        net = to_torch(params0, MODEL, dtype=torch.float64)
        cfg = TrainConfig(optimizer="gd", lr=float(eta), epochs=steps, loss="exponential",
                          dtype="float64", device="cpu", progress=False, n_snapshots=0,
                          eval_every=steps, rank_every=0)
        res = train(net, data, cfg)
        assert res.success and res.t[-1] == pytest.approx(T, rel=1e-12)  # t = k * eta
        theta = np.concatenate([net.W.detach().numpy().ravel(), net.v.detach().numpy()])
        errs.append(np.max(np.abs(theta - reference)))
    return np.asarray(errs)


@pytest.mark.parametrize("flow", [_flow_scipy, _flow_engine], ids=["scipy-DOP853", "simulate"])
def test_gd_converges_to_gradient_flow_at_first_order(problem, flow):
    data, params0 = problem
    reference = flow(data, params0)
    errs = _gd_errors(data, params0, reference)
    slope = np.polyfit(np.log(ETAS), np.log(errs), 1)[0]
    print(f"GD vs flow at T={T}: eta={ETAS.tolist()} max-abs error={errs.tolist()} "
          f"slope={slope:.3f}")
    # Euler: error = C eta + O(eta^2), so the fitted log-log slope is 1 up to the
    # O(eta) correction; 0.2 leaves room for that at eta=0.04 and nothing else.
    assert abs(slope - 1.0) < 0.2
    # The errors are far above the reference's accuracy (DOP853 at rtol 1e-11), so the
    # slope measures GD, not the reference; and halving eta must shrink the error.
    assert errs.min() > 1e-7 and np.all(np.diff(errs) < 0)
    # The trajectory moved a lot compared with the error: the test is not vacuous.
    moved = np.max(np.abs(reference - np.concatenate([params0.W.ravel(), params0.v])))
    assert errs[-1] < 0.05 * moved
