"""The simulate driver around the solvers: interrupts, resume, stop conditions, persistence,
step ends and input checks (defects found in review, each reproduced before the fix)."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from gradflow.config import DataConfig, InitConfig, ModelConfig
from gradflow.data import make_subclass_data
from gradflow.dynamics import Solution, Stop, simulate
from gradflow.dynamics.reduced import Potential, find_extremal_vectors
from gradflow.init import init_params
from gradflow.model import TwoLayerParams

SIM = sys.modules["gradflow.dynamics.simulate"]


def small(p=3.0, eps=0.3, width=6, bias=False, center_input=False):
    data = make_subclass_data(DataConfig(K=4, K1=2, D=10, alpha=0.2, n=40, seed=1))
    mc = ModelConfig(width=width, p=p, bias=bias, center_input=center_input)
    return data, mc, init_params(mc, InitConfig(eps=eps, seed=1), 10)


def same_run(a: Solution, b: Solution):
    for name in ("t", "W", "v", "loss", "fmax"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert (a.nfev, a.n_steps, a.n_rejected, a.alignment_end_time) == \
        (b.nfev, b.n_steps, b.n_rejected, b.alignment_end_time)


@pytest.mark.parametrize("where,call", [("forward", 2), ("forward", 25),
                                        ("crossing_time", 1)])
def test_ctrl_c_anywhere_resumes_bit_identically(where, call, tmp_path, monkeypatch):
    # Ctrl-C used to be checkpointed mid-bookkeeping: save times recorded twice (t not
    # monotone), a wrong alignment-end time, or nfev of a half-done step.
    data, mc, P = small(eps=1e-3)
    kw = dict(t_max=60.0, progress=False, save_at=40)
    full = simulate(data, mc, P, **kw)
    orig, calls = getattr(SIM, where), {"n": 0}

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return orig(*a, **k)

    ck = tmp_path / "run.npz"
    monkeypatch.setattr(SIM, where, interrupted)
    part = simulate(data, mc, P, checkpoint=ck, **kw)
    monkeypatch.setattr(SIM, where, orig)
    assert part.status == "interrupted" and np.all(np.diff(part.t) > 0)
    same_run(simulate(data, mc, P, checkpoint=ck, **kw), full)


@pytest.mark.parametrize("stop", [Stop(t_max=500.0, loss_target=0.3),
                                  Stop(t_max=500.0, norm_cap=1.0)])
def test_a_finished_run_is_not_continued_on_rerun(stop, tmp_path):
    data, mc, P = small(eps=1e-3)
    ck = tmp_path / "run.npz"
    first = simulate(data, mc, P, stop=stop, checkpoint=ck, progress=False)
    again = simulate(data, mc, P, stop=stop, checkpoint=ck, progress=False)
    assert first.status in ("loss_target", "norm_cap") and again.status == first.status
    same_run(again, first)


def test_checkpoint_of_other_bias_or_centre_is_refused(tmp_path):
    data, _, P = small()
    mc = ModelConfig(width=6, p=3.0, bias=True, center_input=True)
    a = TwoLayerParams(P.W, P.v, np.array(0.0), np.zeros(10))
    b = TwoLayerParams(P.W, P.v, np.array(0.5), np.full(10, 0.3))
    ck = tmp_path / "run.npz"
    simulate(data, mc, a, stop=Stop(t_max=5.0, max_steps=3), checkpoint=ck, progress=False)
    with pytest.raises(ValueError, match="`checkpoint`.*different run"):
        simulate(data, mc, b, t_max=5.0, checkpoint=ck, progress=False)


def test_dotted_names_do_not_overwrite_each_other(tmp_path):
    data, mc, P = small()
    s1 = simulate(data, mc, P, t_max=1.0, progress=False)
    s2 = simulate(data, mc, P, solver="gd", options={"eta": 0.1}, t_max=1.0, progress=False)
    assert s1.save(tmp_path / "run_p1.5").name == "run_p1.5.npz"
    s2.save(tmp_path / "run_p1.7")
    assert Solution.load(tmp_path / "run_p1.5").method == "gradflow"
    assert Solution.load(tmp_path / "run_p1.7.npz").method == "gd"
    np.testing.assert_array_equal(Solution.load(tmp_path / "run_p1.5.json").W, s1.W)


def test_steps_end_exactly_at_t_max():
    # Ten steps of 0.1 add up to one ulp below 1: that remainder used to be a step of its
    # own (gd: 11 steps) or an underflow failure (the default with max_step 0.1).
    data, mc, P = small()
    gd = simulate(data, mc, P, solver="gd", options={"eta": 0.1}, t_max=1.0, progress=False)
    assert gd.n_steps == 10 and gd.t[-1] == 1.0
    rk4 = simulate(data, mc, P, solver="rk4", options={"dt": 0.1}, t_max=1.0, progress=False)
    assert rk4.n_steps == 10
    d = simulate(data, mc, P, options={"max_step": 0.1, "first_step": 0.1}, t_max=1.0,
                 progress=False)
    assert d.status == "success" and d.t[-1] == 1.0


def test_invariant_drift_is_measured_from_the_initial_state():
    data, mc, P = small()
    kw = dict(solver="gd", options={"eta": 0.2}, t_max=40.0, progress=False)
    with_t0 = simulate(data, mc, P, save_at=[0.0, 20.0, 40.0], **kw)
    without = simulate(data, mc, P, save_at=[20.0, 40.0], **kw)
    # gd drifts by O(eta^2) per step, so the drift is far from 0 in both
    assert with_t0.invariant_drift > 1e-4
    assert without.invariant_drift == pytest.approx(with_t0.invariant_drift, rel=1e-12)


def test_an_overlong_trial_step_is_rejected_not_fatal():
    # p = 3 from norm 0.5: a first trial step of 10 overflows the stages; the flow does not.
    data, mc, P = small(eps=0.5)
    s = simulate(data, mc, P, t_max=200.0, options={"first_step": 10.0}, progress=False)
    assert s.status == "success" and s.n_rejected >= 1


def test_reduced_flow_p1_isolated_class_average_in_a_small_population():
    # QR on the rank-deficient tangent projection kept near-radial probe directions, so
    # mubar_+ looked flat (curvature -2e-4) and the result was reported degenerate.
    pot = Potential.population(np.eye(4), np.array([1.0, 1.0, -1.0, -1.0]), 1.0)
    res = find_extremal_vectors(pot, n_starts=60, sign=1.0, t_max=500.0, seed=0)
    assert not res.degenerate
    assert any(e.kind == "class average +" and e.isolated for e in res.extrema)


def test_driver_inputs_are_checked():
    data, mc, P = small()
    with pytest.raises(ValueError, match="`params`.b must be None"):
        simulate(data, mc, TwoLayerParams(P.W, P.v, np.array(0.7)), t_max=1.0)
    with pytest.raises(ValueError, match="`params`.b must be given"):
        simulate(data, ModelConfig(width=6, p=3.0, bias=True), P, t_max=1.0)
    with pytest.raises(ValueError, match=r"`params`.v must have shape \(6, 3\)"):
        simulate(X=data.X, y=np.zeros(40), model=ModelConfig(width=6, n_outputs=3), params=P,
                 loss="cross_entropy", t_max=1.0)
    with pytest.raises(ValueError, match="`t0`"):
        simulate(data, mc, P, t_max=1.0, t0=float("nan"))
    pot = Potential.population(np.eye(4), np.array([1.0, 1.0, -1.0, -1.0]), 3.0)
    with pytest.raises(ValueError, match="`cluster_tol`"):
        find_extremal_vectors(pot, n_starts=4, cluster_tol=-1.0)
    with pytest.raises(ValueError, match="`flat_tol`"):
        find_extremal_vectors(pot, n_starts=4, flat_tol=-5.0)


def test_alignment_end_is_located_on_the_dense_output():
    # Log-linear interpolation between step ends was off by ~6e-4 (relative) at p = 1;
    # regula falsi on the dense output agrees with a dense sampling of the same run.
    data, mc, P = small(p=1.0, eps=1e-3)
    ts = np.linspace(0.0, 40.0, 4001)
    s = simulate(data, mc, P, t_max=40.0, save_at=ts, progress=False)
    i = int(np.argmax(s.fmax >= 0.1))
    sampled = np.interp(np.log(0.1), np.log(s.fmax[i - 1:i + 1]), s.t[i - 1:i + 1])
    # sampling step 0.01 with log-linear interpolation inside it: error ~1e-6 relative
    assert s.alignment_end_time == pytest.approx(sampled, rel=1e-5)


@pytest.mark.parametrize("solver,options", [
    ("LSODA", {"rtol": 1e-6, "atol": 1e-12}), ("BDF", {"rtol": 1e-6, "atol": 1e-12}),
    ("Radau", {"rtol": 1e-6, "atol": 1e-12}), ("RK45", {"rtol": 1e-6, "atol": 1e-12}),
    ("DOP853", {"rtol": 1e-6, "atol": 1e-12}), ("rk4", {"dt": 0.1}), ("gd", {"eta": 0.1})])
def test_nfev_counts_every_field_evaluation(solver, options, monkeypatch):
    # the scipy wrappers evaluated the loss at accepted states scipy had not evaluated
    # (every LSODA / BDF / Radau step) without counting it: LSODA 55 counted, 82 made
    import gradflow.dynamics.fields as fields

    calls = [0]
    field = fields.CartesianRep.field

    def counted(self, *a, **kw):
        calls[0] += 1
        return field(self, *a, **kw)

    monkeypatch.setattr(fields.CartesianRep, "field", counted)
    data = make_subclass_data(DataConfig(K=4, K1=2, D=10, n=40, alpha=0.1))
    model = ModelConfig(width=6, p=3.0)
    s = simulate(data, model, init_params(model, InitConfig(eps=1e-2), 10), solver=solver,
                 options=options, t_max=20.0, save_at=[0.0, 5.0, 20.0], progress=False)
    assert s.status == "success" and s.nfev == calls[0]
