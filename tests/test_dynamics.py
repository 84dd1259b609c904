"""Tests of the gradient-flow engine against mathematics: closed forms, orders, invariants."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.special import expi

from gradflow.config import DataConfig, InitConfig, ModelConfig
from gradflow.data import make_subclass_data
from gradflow.dynamics import SOLVERS, Solution, Stop, simulate
from gradflow.dynamics.fields import CartesianRep, FlowProblem, PolarRep
from gradflow.dynamics.tableaus import DP5, RK4
from gradflow.init import init_params
from gradflow.model import TwoLayerParams, loss_and_grad


def _ei_inverse(target: float, lo: float, hi: float = 50.0) -> float:
    return brentq(lambda A: expi(A) - target, lo, hi, xtol=1e-15, rtol=1e-15)


# ---------------------------------------------------------------- exact solutions
def _one_neuron_run(solver, options, a0=0.1, T=20.0):
    X, y = np.ones((1, 1)), np.ones(1)
    P = TwoLayerParams(np.array([[a0]]), np.array([a0]))
    return simulate(X=X, y=y, model=ModelConfig(width=1, p=1.0), init=P, solver=solver,
                    options=options, t_max=T, save_at=[0.0, T / 2, T], progress=False)


@pytest.mark.parametrize("solver,options,tol", [
    ("gradflow", {"rtol": 1e-8}, 1e-8),
    ("gradflow", {"rtol": 1e-8, "variables": "cartesian"}, 1e-8),
    ("DOP853", {"rtol": 1e-10, "atol": 1e-14}, 1e-10),
])
def test_exact_relu_single_neuron(solver, options, tol):
    # x=1, y=1, w=v=a: d(a^2)/dt = 2 a^2 exp(-a^2)  =>  Ei(a^2(t)) - Ei(a0^2) = 2t.
    a0, T = 0.1, 20.0
    sol = _one_neuron_run(solver, options, a0, T)
    assert sol.status == "success"
    for t, W in zip(sol.t[1:], sol.W[1:]):
        A = _ei_inverse(expi(a0**2) + 2 * t, a0**2)
        err = abs(W[0, 0] ** 2 - A) / A
        # global error within 100 tolerance units (20 time units of error accumulation;
        # the mid-point comes from the dense output, O(h^4) Hermite interpolation).
        assert err < 100 * tol, (t, err)


@pytest.mark.parametrize("p,c", [(3.0, 1.5), (2.5, 0.8)])
def test_exact_aligned_neuron_p_gt_1(p, c):
    # Derived here: X = [c e1, c e2], y = [+1, -1]; neuron 1: w = a e1, v = +a;
    # neuron 2: w = b e2, v = -b. Each neuron only sees its own sample, stays aligned
    # (P_perp(e_k) e_k = 0), and B = a^2 c^p obeys dB/dt = (2/n) c^p B exp(-B)/2*2 with
    # n = 2, i.e. Ei(B(t)) - Ei(B0) = c^p t.
    a0, b0, T = 0.05, 0.2, 30.0
    X = c * np.eye(2, 3)
    P = TwoLayerParams(np.array([[a0, 0, 0], [0, b0, 0]]), np.array([a0, -b0]))
    sol = simulate(X=X, y=np.array([1.0, -1.0]), model=ModelConfig(width=2, p=p), init=P,
                   options={"rtol": 1e-9}, t_max=T, save_at=[0.0, T], progress=False)
    for k, r0 in enumerate((a0, b0)):
        B0 = r0**2 * c**p
        B = _ei_inverse(expi(B0) + c**p * T, B0)
        err = abs(sol.norms[-1, k] ** 2 * c**p - B) / B
        assert err < 100 * 1e-9, err  # 100 tolerance units
        # the direction never leaves e_k
        assert abs(sol.directions[-1, k, k] - 1.0) < 1e-12


# ---------------------------------------------------------------- fields
def _small(p=3.0, h=6, n=40, D=12, eps=0.3, mode="balanced", seed=1):
    dc = DataConfig(K=4, K1=2, D=D, alpha=0.2, n=n, seed=seed)
    data = make_subclass_data(dc)
    mc = ModelConfig(width=h, p=p)
    return data, mc, init_params(mc, InitConfig(eps=eps, mode=mode, seed=seed), D)


@pytest.mark.parametrize("p", [1.0, 2.5, 3.0])
def test_fields_match_loss_and_grad(p):
    data, mc, P = _small(p)
    pb = FlowProblem(data.X, data.y, mc)
    _, grad = loss_and_grad(P, data.X, data.y, mc)
    cart = CartesianRep(pb, P)
    dy, _, _ = cart.field(cart.pack(P))
    # same formula, different evaluation order: agreement to rounding (1e-12 relative)
    np.testing.assert_allclose(dy, -cart.pack(grad), rtol=1e-12, atol=1e-14)
    if p == 1.0:  # the frozen pattern at the current point is the exact field
        dym, _, _ = cart.field(cart.pack(P), cart.preact(cart.pack(P)) > 0)
        np.testing.assert_array_equal(dym, dy)
    # polar: dw = r (drho u + du), dv = s r drho
    pol = PolarRep(pb, P)
    yp = pol.pack(P)
    k, _, _ = pol.field(yp)
    dU, drho = pol.split(k)
    U, rho = pol.split(yp)
    r = np.exp(rho)
    np.testing.assert_allclose(r[:, None] * (drho[:, None] * U + dU), -grad.W, rtol=1e-10,
                               atol=1e-14)
    np.testing.assert_allclose(pol.s * r * drho, -grad.v, rtol=1e-10, atol=1e-14)


def test_tableau_identities():
    import scipy.integrate as si

    for tab in (DP5, RK4):
        np.testing.assert_allclose(tab.A.sum(axis=1), tab.c, atol=1e-15)  # row sums = nodes
        assert abs(tab.b.sum() - 1) < 1e-15
        # third-order conditions hold for both (sum b c^2 = 1/3, sum b A c = 1/6)
        assert abs(tab.b @ tab.c**2 - 1 / 3) < 1e-14
        assert abs(tab.b @ tab.A @ tab.c - 1 / 6) < 1e-14
    np.testing.assert_allclose(DP5.A[:6, :5], si.RK45.A, atol=1e-15)
    np.testing.assert_allclose(DP5.b[:6], si.RK45.B, atol=1e-15)
    assert abs(DP5.b_err.sum()) < 1e-15  # the embedded pair differs by a consistent estimate


# ---------------------------------------------------------------- orders
@pytest.mark.parametrize("solver,key,steps,order", [
    ("gd", "eta", [0.1, 0.05, 0.025], 1),
    ("rk4", "dt", [0.4, 0.2, 0.1], 4),
])
def test_fixed_step_convergence_order(solver, key, steps, order):
    data, mc, P = _small(p=3.0, eps=0.5)
    T = 4.0
    ref = simulate(data, mc, P, solver="DOP853", options={"rtol": 1e-12, "atol": 1e-14},
                   t_max=T, save_at=[0, T], progress=False).theta[-1]
    errs = []
    for hstep in steps:
        th = simulate(data, mc, P, solver=solver, options={key: hstep}, t_max=T,
                      save_at=[0, T], progress=False).theta[-1]
        errs.append(np.linalg.norm(th - ref) / np.linalg.norm(ref))
    slope = np.polyfit(np.log(steps), np.log(errs), 1)[0]
    assert abs(slope - order) < 0.2, (errs, slope)  # the tolerance on the slope


# ---------------------------------------------------------------- agreement with references
def test_default_matches_tight_reference_p3():
    data, mc, P = _small(p=3.0, h=8, n=60, D=16, eps=1e-3)
    T = 120.0
    ref = simulate(data, mc, P, solver="DOP853", options={"rtol": 1e-11, "atol": 1e-22},
                   t_max=T, save_at=[0, T], progress=False)
    sol = simulate(data, mc, P, t_max=T, save_at=[0, T], progress=False)
    assert sol.loss[-1] < 0.5 * sol.loss[0]  # the run left the alignment phase
    err = np.linalg.norm(sol.theta[-1] - ref.theta[-1]) / np.linalg.norm(ref.theta[-1])
    assert err < 1e-5, err  # the accuracy target for p = 3


def test_default_matches_fine_rk4_p1():
    data, mc, P = _small(p=1.0, h=8, n=60, D=16, eps=1e-3)
    T = 60.0
    ref = simulate(data, mc, P, solver="rk4", options={"dt": 0.005}, t_max=T,
                   save_at=[0, T], progress=False)
    sol = simulate(data, mc, P, t_max=T, save_at=[0, T], progress=False)
    assert sol.loss[-1] < 0.5
    err = np.linalg.norm(sol.theta[-1] - ref.theta[-1]) / np.linalg.norm(ref.theta[-1])
    assert err < 1e-3, err  # the accuracy target for p = 1


# ---------------------------------------------------------------- benchmark config
@pytest.fixture(scope="module")
def bench_data():
    return make_subclass_data(DataConfig(K=10, K1=6, D=100, alpha=0.1, n=500))


def _top(sol, m=5):
    contrib = np.abs(sol.v[-1]) * sol.norms[-1]
    return np.argsort(contrib)[::-1][:m]


def test_alignment_picture_p1(bench_data):
    mc = ModelConfig(width=50, p=1.0)
    sol = simulate(bench_data, mc, InitConfig(eps=1e-6), t_max=150.0,
                   options={"switch_tol": 1e-2}, progress=False)
    U = sol.directions[-1][_top(sol)]
    cos = np.maximum(U @ bench_data.mubar_plus, U @ bench_data.mubar_minus)
    assert np.all(cos > 0.99), cos  # the threshold
    assert sol.loss[-1] < 1e-2
    assert np.all(np.diff(sol.loss) <= 1e-12 * sol.loss[:-1])  # gradient flow: L non-increasing
    assert sol.invariant_drift < 1e-6


def test_alignment_picture_p3(bench_data):
    mc = ModelConfig(width=50, p=3.0)
    sol = simulate(bench_data, mc, InitConfig(eps=1e-6), t_max=350.0, progress=False)
    D = sol.directions[-1]
    cos_top = np.max(D[_top(sol)] @ bench_data.centres.T, axis=1)
    assert np.all(cos_top > 0.99), cos_top
    big = sol.norms[-1] > 0.1 * sol.norms[-1].max()
    covered = set(np.argmax(D[big] @ bench_data.centres.T, axis=1)[
        np.max(D[big] @ bench_data.centres.T, axis=1) > 0.99])
    assert len(covered) >= 8, covered
    assert sol.loss[-1] < 1e-2
    assert np.all(np.diff(sol.loss) <= 0)
    assert sol.invariant_drift < 1e-8
    assert 0 < sol.alignment_end_time < 350


def test_invariant_drift_cartesian_small():
    # Default-suite version of the check below on a small config (same bound, same rtol).
    data, mc, P = _small(p=3.0, h=8, n=60, D=16, eps=1e-4)
    sol = simulate(data, mc, P, t_max=150.0, progress=False,
                   options={"variables": "cartesian", "rtol": 1e-9})
    assert sol.loss[-1] < 0.1 and sol.invariant_drift < 1e-8, sol.invariant_drift
    assert np.all(np.diff(sol.loss) <= 0)


@pytest.mark.slow
def test_invariant_drift_cartesian_p3(bench_data):
    # The polar variables conserve v_j^2 - ||w_j||^2 exactly; the Cartesian path must
    # conserve it to the tolerance: the bound 1e-8 for p = 3.
    mc = ModelConfig(width=50, p=3.0)
    sol = simulate(bench_data, mc, InitConfig(eps=1e-6), t_max=350.0, progress=False,
                   options={"variables": "cartesian", "rtol": 1e-9})
    assert sol.status == "success"
    assert sol.invariant_drift < 1e-8, sol.invariant_drift
    assert np.all(np.diff(sol.loss) <= 0)


def test_project_invariants_is_the_nearest_point():
    # Independent check of the closed form: constrained least squares by scipy (SLSQP).
    from scipy.optimize import minimize

    from gradflow.dynamics.fields import project_invariants

    rng = np.random.default_rng(3)
    for c0 in (0.0, 0.7, -0.4):
        W, v = rng.standard_normal((1, 3)), rng.standard_normal(1)
        Wp, vp = project_invariants(W, v, np.array([c0]))
        assert abs(vp[0] ** 2 - np.sum(Wp**2) - c0) < 1e-13
        x0 = np.concatenate([W[0], v])
        res = minimize(lambda x, x0=x0: np.sum((x - x0) ** 2), x0, method="SLSQP", tol=1e-14,
                       constraints={"type": "eq",
                                    "fun": lambda x, c=c0: x[3] ** 2 - x[:3] @ x[:3] - c})
        np.testing.assert_allclose(np.concatenate([Wp[0], vp]), res.x, atol=1e-6)
    # vector outputs; a point on the level set does not move; a neuron at 0 stays there
    W, v = rng.standard_normal((5, 4)), rng.standard_normal((5, 2))
    W[4], v[4] = 0.0, 0.0
    c0 = np.sum(v**2, axis=1) - np.sum(W**2, axis=1)
    Wp, vp = project_invariants(W, v, c0)
    np.testing.assert_allclose(Wp, W, rtol=0, atol=1e-15)
    np.testing.assert_allclose(vp, v, rtol=0, atol=1e-15)
    Wp, vp = project_invariants(W * 1.01, v, c0)
    np.testing.assert_allclose(np.sum(vp**2, 1) - np.sum(Wp**2, 1), c0, rtol=0, atol=1e-13)


def test_default_p3_is_cartesian_with_projection():
    """p > 1: Cartesian variables (cheaper at equal error, benchmarks/bench_error_norm.py) with
    the invariants restored after every step and at every save time. Without the projection
    the same run drifts by ~rtol (measured 8e-7 here), with it to rounding (4e-16)."""
    from gradflow.dynamics.adaptive import GradFlowSolver

    data, mc, P = _small(p=3.0, eps=1e-4, h=8, n=60, D=16)
    pb = FlowProblem(data.X, data.y, mc)
    solver = GradFlowSolver(pb, P, 0.0, 1.0)
    assert solver.variables == "cartesian" and solver.rep.c0 is not None
    assert GradFlowSolver(FlowProblem(data.X, data.y, ModelConfig(width=8, p=1.0)), P, 0.0,
                          1.0).variables == "polar"
    kw = dict(t_max=150.0, progress=False)
    on = simulate(data, mc, P, options={"rtol": 1e-6}, **kw)
    off = simulate(data, mc, P, options={"rtol": 1e-6, "project": False}, **kw)
    assert on.loss[-1] < 0.1 and np.all(np.diff(on.loss) <= 0)
    assert on.invariant_drift < 1e-13, on.invariant_drift
    assert off.invariant_drift > 1e-10, off.invariant_drift
    # the projection moves the state by O(rtol): the two runs agree to the tolerance
    rel = np.linalg.norm(on.theta[-1] - off.theta[-1]) / np.linalg.norm(off.theta[-1])
    assert rel < 1e-4, rel


# ---------------------------------------------------------------- run management
@pytest.mark.parametrize("p,eps,t_max,max_steps,every,options", [
    (1.0, 1e-2, 40.0, 7, 3, {}),
    # the PI controller (default) carries state (previous error, last step rejected)
    (3.0, 1e-3, 60.0, 9, 4, {"controller": "pi", "rtol": 1e-7}),
    (3.0, 1e-3, 60.0, 9, 4, {"controller": "i", "rtol": 1e-7}),
])
def test_resume_is_bit_identical(tmp_path, p, eps, t_max, max_steps, every, options):
    data, mc, P = _small(p=p, eps=eps)
    kw = dict(t_max=t_max, options=options, progress=False)
    full = simulate(data, mc, P, **kw)
    ck = tmp_path / "run.ckpt.npz"
    part = simulate(data, mc, P, stop=Stop(t_max=t_max, max_steps=max_steps), checkpoint=ck,
                    checkpoint_every=every, options=options, progress=False)
    assert part.status == "max_steps"
    resumed = simulate(data, mc, P, checkpoint=ck, **kw)
    assert resumed.status == "success"
    for name in ("t", "W", "v", "loss", "fmax"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(full, name))
    assert (resumed.nfev, resumed.n_steps, resumed.n_rejected) == (
        full.nfev, full.n_steps, full.n_rejected)
    with pytest.raises(ValueError, match="`checkpoint`.*different run"):
        simulate(data, mc, P, checkpoint=ck, t_max=t_max + 1.0, options=options,
                 progress=False)


def test_direction_weight_default_and_rationale():
    """p = 3: direction errors contract toward the extremal vectors, log-norm errors persist.

    A perturbation of size d of the largest neuron's direction at t=15 (p=3, alignment
    phase, which ends near t=48 here) has shrunk by more than 10x at t=40, while the same
    perturbation of its log-norm is still there (within 20%). This is the rationale of the
    ``direction_weight`` option (default 1; docs/dynamics.md says when it pays).
    """
    from gradflow.dynamics.adaptive import GradFlowSolver

    data, mc, P = _small(p=3.0, eps=1e-8, h=6, n=60)
    pb = FlowProblem(data.X, data.y, mc)
    assert GradFlowSolver(pb, P, 0.0, 1.0).direction_weight == 1.0
    assert GradFlowSolver(pb, P, 0.0, 1.0).options["controller"] == "pi"
    polar = GradFlowSolver(pb, P, 0.0, 1.0, variables="polar", direction_weight=0.5)
    assert polar.direction_weight == 0.5

    opts = {"rtol": 1e-10, "direction_weight": 1.0, "variables": "polar"}
    mid = simulate(data, mc, P, options=opts, t_max=15.0, save_at=[0.0, 15.0], progress=False)
    P15 = mid.params_at(-1)
    j = int(np.argmax(mid.norms[-1]))
    T = 25.0
    base = simulate(data, mc, P15, options=opts, t_max=T, save_at=[0.0, T], progress=False)
    d = 1e-4
    rng = np.random.default_rng(0)
    u = P15.W[j] / np.linalg.norm(P15.W[j])
    e = rng.standard_normal(u.size)
    e -= (e @ u) * u
    u_new = u + d * e / np.linalg.norm(e)
    W_dir = P15.W.copy()
    W_dir[j] = np.linalg.norm(P15.W[j]) * u_new / np.linalg.norm(u_new)
    W_rho, v_rho = P15.W.copy(), P15.v.copy()
    W_rho[j] *= np.exp(d)
    v_rho[j] *= np.exp(d)
    dirs = simulate(data, mc, TwoLayerParams(W_dir, P15.v.copy()), options=opts, t_max=T,
                    save_at=[0.0, T], progress=False)
    rhos = simulate(data, mc, TwoLayerParams(W_rho, v_rho), options=opts, t_max=T,
                    save_at=[0.0, T], progress=False)
    du = np.linalg.norm(dirs.directions[-1, j] - base.directions[-1, j])
    drho = abs(np.log(rhos.norms[-1, j] / base.norms[-1, j]))
    assert du < d / 10, du  # measured: 2e-8 d
    assert 0.8 * d < drho < 1.2 * d, drho  # measured: 0.9998 d


@pytest.mark.parametrize("rep_cls", [CartesianRep, PolarRep])
def test_interrupt_then_resume(tmp_path, monkeypatch, rep_cls):
    data, mc, P = _small(p=3.0, eps=1e-2)
    kw = dict(t_max=30.0, options={"variables": rep_cls.name}, progress=False)
    full = simulate(data, mc, P, **kw)
    calls = {"n": 0}
    orig = rep_cls.field

    def flaky(self, y, mask=None, sliding=None):
        calls["n"] += 1
        if calls["n"] == 40:
            raise KeyboardInterrupt
        return orig(self, y, mask, sliding)

    ck = tmp_path / "c.npz"
    monkeypatch.setattr(rep_cls, "field", flaky)
    part = simulate(data, mc, P, checkpoint=ck, **kw)
    monkeypatch.setattr(rep_cls, "field", orig)
    assert part.status == "interrupted"
    resumed = simulate(data, mc, P, checkpoint=ck, **kw)
    np.testing.assert_array_equal(resumed.W, full.W)
    np.testing.assert_array_equal(resumed.loss, full.loss)


def test_nan_injection_gives_status(monkeypatch):
    data, mc, P = _small(p=3.0, eps=1e-2)
    orig = CartesianRep.field
    calls = {"n": 0}

    def poisoned(self, y, mask=None, sliding=None):
        calls["n"] += 1
        if calls["n"] > 30:
            y = y.copy()
            y[0] = np.nan
        return orig(self, y, mask, sliding)

    monkeypatch.setattr(CartesianRep, "field", poisoned)
    sol = simulate(data, mc, P, t_max=30.0, options={"variables": "cartesian"}, progress=False)
    assert sol.status == "nan" and "NaN" in sol.message
    assert 0 < sol.t[-1] < 30.0 and np.all(np.isfinite(sol.W))  # trajectory kept
    with pytest.raises(RuntimeError, match="status 'nan'"):
        simulate(data, mc, P, t_max=30.0, options={"variables": "cartesian"}, progress=False,
                 throw=True)


def test_overflow_gives_status():
    # A huge neuron pushing a +1 sample to margin -1e4: exp(1e4) overflows float64.
    P = TwoLayerParams(np.array([[100.0]]), np.array([-100.0]))
    sol = simulate(X=np.ones((1, 1)), y=np.ones(1), model=ModelConfig(width=1), init=P,
                   t_max=1.0, progress=False)
    assert sol.status == "overflow" and "overflow" in sol.message


def test_stops_and_alignment_time():
    data, mc, P = _small(p=3.0, eps=1e-4, h=8)
    sol = simulate(data, mc, P, stop=Stop(t_max=500.0, loss_target=0.3), progress=False)
    assert sol.status == "loss_target" and sol.loss[-1] <= 0.3 < sol.loss[-2]
    # f grows like exp(2 G t): the located alignment end has max|f| close to 0.1
    i = np.searchsorted(sol.t, sol.alignment_end_time)
    assert sol.fmax[i - 1] < 0.1 <= sol.fmax[i]
    cap = simulate(data, mc, P, stop=Stop(t_max=500.0, norm_cap=1.0), progress=False)
    assert cap.status == "norm_cap" and cap.norms[-1].max() >= 0.7


def test_default_save_times_are_log_spaced():
    data, mc, P = _small()
    sol = simulate(data, mc, P, t_max=10.0, progress=False)
    assert sol.t[0] == 0 and sol.t[-1] == 10.0 and len(sol.t) == 100
    ratios = sol.t[2:] / sol.t[1:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)


def test_save_load_roundtrip(tmp_path):
    data, mc, P = _small()
    sol = simulate(data, mc, P, t_max=5.0, save_at=5, progress=False)
    sol.save(tmp_path / "sol")
    back = Solution.load(tmp_path / "sol.npz")
    for name in ("t", "W", "v", "loss", "X", "y"):
        np.testing.assert_array_equal(getattr(back, name), getattr(sol, name))
    assert back.status == sol.status and back.nfev == sol.nfev
    assert back.metadata["model"] == mc.to_dict()
    p2 = back.params_at(-1)
    np.testing.assert_array_equal(p2.W, sol.W[-1])


def test_same_initial_state_for_every_method():
    data, mc, P = _small(p=3.0)
    for name in ("gradflow", "gd", "rk4", "RK45"):
        sol = simulate(data, mc, P, solver=name, t_max=1.0, save_at=[0.0, 1.0], progress=False)
        np.testing.assert_array_equal(sol.W[0], P.W)


def test_unbalanced_init_uses_cartesian_path():
    data, mc, P = _small(p=3.0, mode="independent", eps=0.3)
    sol = simulate(data, mc, P, t_max=20.0, progress=False)
    assert sol.metadata["variables"] == "cartesian"
    ref = simulate(data, mc, P, solver="DOP853", options={"rtol": 1e-11, "atol": 1e-16},
                   t_max=20.0, save_at=[0, 20.0], progress=False)
    err = np.linalg.norm(sol.theta[-1] - ref.theta[-1]) / np.linalg.norm(ref.theta[-1])
    assert err < 1e-4, err
    assert sol.invariant_drift < 1e-5


# ---------------------------------------------------------------- validation
def test_bad_inputs_raise():
    data, mc, P = _small()
    with pytest.raises(ValueError, match="`solver` must be one of"):
        simulate(data, mc, P, solver="euler2", progress=False)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['atol'\]"):
        simulate(data, mc, P, options={"atol": 1e-9}, progress=False)
    with pytest.raises(ValueError, match="`rtol`"):
        simulate(data, mc, P, options={"rtol": -1.0}, progress=False)
    with pytest.raises(ValueError, match="`eta`"):
        simulate(data, mc, P, solver="gd", options={"eta": 0.0}, progress=False)
    with pytest.raises(ValueError, match="`t_max`"):
        Stop(t_max=-1.0)
    with pytest.raises(ValueError, match="`save_at`"):
        simulate(data, mc, P, t_max=1.0, save_at=[0.5, 0.2], progress=False)
    with pytest.raises(ValueError, match="exactly one of `init`"):
        simulate(data, mc, progress=False)
    with pytest.raises(ValueError, match="`model` must be a ModelConfig"):
        simulate(data, None, P)
    with pytest.raises(ValueError, match="`checkpoint` is not supported"):
        simulate(data, mc, P, solver="RK45", checkpoint="x.npz", progress=False)
    with pytest.raises(ValueError, match="`variables`='polar'"):
        Pi = init_params(mc, InitConfig(mode="independent"), data.D)
        simulate(data, mc, Pi, options={"variables": "polar"}, progress=False)
    assert {"gradflow", "gd", "rk4", "RK45", "DOP853", "LSODA"} <= set(SOLVERS)
    with pytest.raises(ValueError, match=r"`direction_weight` must lie in \(0.0, 1.0\]"):
        simulate(data, mc, P, options={"direction_weight": 0.0}, progress=False)
    with pytest.raises(ValueError, match=r"`direction_weight` must lie in \(0.0, 1.0\]"):
        simulate(data, mc, P, options={"direction_weight": 2.0}, progress=False)
    with pytest.raises(ValueError, match="`controller` must be one of"):
        simulate(data, mc, P, options={"controller": "pid"}, progress=False)
    with pytest.raises(ValueError, match="`project` must be one of 'auto', True, False"):
        simulate(data, mc, P, options={"project": "yes"}, progress=False)
    with pytest.raises(ValueError, match="`project`=True needs an activation that is 1-homog"):
        simulate(data, ModelConfig(width=6, activation="tanh"), P, options={"project": True},
                 progress=False)
    with pytest.raises(ValueError, match="`project` applies to `variables`='cartesian'"):
        simulate(data, mc, P, options={"project": True, "variables": "polar"}, progress=False)
    with pytest.raises(ValueError, match="`direction_weight` applies to `variables`='polar'"):
        simulate(data, mc, P, options={"direction_weight": 0.5}, progress=False)
    # were a TypeError, a numpy message without the name, and a silent truthy resume
    with pytest.raises(ValueError, match="`options` must be a dict"):
        simulate(data, mc, P, options=[1, 2], progress=False)
    with pytest.raises(ValueError, match="`save_at` must be a count >= 2 or an increasing"):
        simulate(data, mc, P, save_at="abc", progress=False)
    with pytest.raises(ValueError, match="`resume` must be True or False"):
        simulate(data, mc, P, resume="no", progress=False)
    with pytest.raises(ValueError, match="`progress` must be True, False or None"):
        simulate(data, mc, P, progress="yes")


def test_cross_entropy_relu_logits_runs_and_matches_reference():
    # Multi-class (C=3) ReLU logits use the Cartesian path with frozen patterns.
    rng = np.random.default_rng(3)
    X = rng.standard_normal((30, 6))
    y = rng.integers(0, 3, size=30).astype(float)
    mc = ModelConfig(width=5, p=1.0, n_outputs=3)
    P = init_params(mc, InitConfig(eps=0.3, seed=2), 6)
    sol = simulate(X=X, y=y, model=mc, init=P, loss="cross_entropy", t_max=5.0,
                   save_at=[0, 5.0], options={"switch_tol": 1e-5}, progress=False)
    ref = simulate(X=X, y=y, model=mc, init=P, loss="cross_entropy", solver="rk4",
                   options={"dt": 0.005}, t_max=5.0, save_at=[0, 5.0], progress=False)
    assert sol.status == "success" and sol.metadata["variables"] == "cartesian"
    err = np.linalg.norm(sol.theta[-1] - ref.theta[-1]) / np.linalg.norm(ref.theta[-1])
    assert err < 1e-3, err  # the p = 1 accuracy target
