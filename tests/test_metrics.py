"""Alignment metrics on constructed trajectories with known answers (issue 6)."""
from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from gradflow.metrics import (
    Trajectory,
    alignment_end,
    check_paper_results,
    column_names,
    contributions,
    direction_cosines,
    dominant_neurons,
    extremal_directions,
    fitting_phase,
    heatmap_order,
    load_paper_results,
    nearest_extremal,
    neuron_metrics,
    paper_arrays_from_trajectories,
    save_paper_results,
    summarize_alignment,
)

K, K1, D = 6, 4, 12
CENTRES = np.eye(K, D)
LABELS = np.array([1.0, 1, 1, 1, -1, -1])
MU_PLUS = CENTRES[:K1].sum(0) / np.sqrt(K1)
MU_MINUS = CENTRES[K1:].sum(0) / np.sqrt(K - K1)
# Exact constructions: every tolerance below is float64 round-off (1e-12) unless stated.
TOL = 1e-12


def _placed_net():
    """Neurons placed exactly at known directions, with contributions 4, 3, 2, 1, 0.001.

    0: +, at mu_3      1: +, at mubar_+     2: -, at mubar_-     3: -, at mu_6
    4: +, direction (mu_6 + 0.5 mu_1)/|.|  (tiny; its nearest *positive* candidate is mu_1)
    """
    dirs = np.stack([CENTRES[2], MU_PLUS, MU_MINUS, CENTRES[5],
                     (CENTRES[5] + 0.5 * CENTRES[0]) / np.sqrt(1.25)])
    r = np.array([4.0, 3.0, 2.0, 1.0, 1e-3])
    signs = np.array([1.0, 1, -1, -1, 1])
    # Balanced neurons: ||w_j|| = |v_j| = sqrt(r_j), so |v_j| ||w_j|| = r_j.
    W = dirs * np.sqrt(r)[:, None]
    v = signs * np.sqrt(r)
    return W, v, r


def _traj_from(W, v, t=(0.0, 1.0), **kw):
    T = len(t)
    return Trajectory(np.array(t), np.repeat(W[None], T, 0), np.repeat(v[None], T, 0),
                      centres=CENTRES, subclass_labels=LABELS, **kw)


def test_extremal_directions_closed_form():
    E, s = extremal_directions(CENTRES, LABELS)
    assert column_names(K) == ["mubar_+", "mubar_-"] + [f"mu_{k}" for k in range(1, K + 1)]
    np.testing.assert_allclose(E[0], MU_PLUS, atol=TOL)
    np.testing.assert_allclose(E[1], MU_MINUS, atol=TOL)
    np.testing.assert_allclose(E[2:], CENTRES, atol=TOL)
    np.testing.assert_array_equal(s, [1, -1, 1, 1, 1, 1, -1, -1])
    # <mu_k, mubar_+> = 1/sqrt(K1) for a positive centre (THEORY.md section 1).
    np.testing.assert_allclose(E[2:6] @ E[0], 1 / np.sqrt(K1), atol=TOL)


def test_per_neuron_cosines_nearest_and_contribution():
    W, v, r = _placed_net()
    cos = direction_cosines(W, CENTRES, LABELS)
    np.testing.assert_allclose(cos[0], [0.5, 0, 0, 0, 1, 0, 0, 0], atol=TOL)  # mu_3
    np.testing.assert_allclose(cos[1, :2], [1, 0], atol=TOL)  # mubar_+
    np.testing.assert_allclose(cos[1, 2:], [0.5] * 4 + [0, 0], atol=TOL)
    np.testing.assert_allclose(cos[2, 6:], [1 / np.sqrt(2)] * 2, atol=TOL)
    idx, ncos = nearest_extremal(W, v, CENTRES, LABELS)
    np.testing.assert_array_equal(idx[:4], [4, 0, 1, 7])  # mu_3, mubar_+, mubar_-, mu_6
    np.testing.assert_allclose(ncos[:4], 1.0, atol=TOL)
    # Neuron 4 points mostly at the negative centre mu_6, but it is positive: only
    # [mubar_+, mu_1..mu_4] are candidates and mu_1 (cos 0.5/sqrt(1.25)) wins.
    assert idx[4] == 2
    np.testing.assert_allclose(ncos[4], 0.5 / np.sqrt(1.25), atol=TOL)
    np.testing.assert_allclose(contributions(W, v), r, rtol=TOL)


def test_vector_outputs_use_all_candidates_and_norm_contribution():
    W, _, _ = _placed_net()
    V = np.array([[3.0, 4.0]] * W.shape[0])  # ||v_j|| = 5
    np.testing.assert_allclose(contributions(W, V), 5 * np.linalg.norm(W, axis=1), rtol=TOL)
    idx, _ = nearest_extremal(W, V, CENTRES, LABELS)
    assert idx[4] == 7  # unsigned: the negative centre mu_6 is allowed now


def test_dominant_neurons_smallest_set():
    r = np.array([1.0, 4.0, 0.001, 3.0, 2.0])
    # Sorted: 4, 3, 2, 1 (sum 10 of 10.001 >= 99%): four neurons, largest first.
    np.testing.assert_array_equal(dominant_neurons(r), [1, 3, 4, 0])
    np.testing.assert_array_equal(dominant_neurons(r, mass=0.5), [1, 3])
    assert dominant_neurons(r, mass=1.0).size == 5
    assert dominant_neurons(np.zeros(3)).size == 0
    with pytest.raises(ValueError, match="`mass` must lie in"):
        dominant_neurons(r, mass=0.0)


def test_summary_on_placed_neurons():
    W, v, _ = _placed_net()
    s = summarize_alignment(_traj_from(W, v))
    assert s.dominant == [0, 1, 2, 3]
    # Dominant: mu_3 and mu_6 aligned to centres, mubar_+ and mubar_- to class averages.
    assert s.frac_aligned_centres == 0.5
    assert s.frac_aligned_averages == 0.5
    assert s.covered_centres == [2, 5]
    assert s.to_dict()["n_covered_centres"] == 2


def test_effective_numbers_closed_form():
    # m orthogonal neurons of equal norm: stable rank m and participation ratio m.
    m = 4
    W = 0.3 * CENTRES[:m]
    v = 0.3 * np.array([1.0, 1, 1, 1])
    s = summarize_alignment(_traj_from(W, v))
    assert abs(s.stable_rank_W - m) < 1e-12
    assert abs(s.participation_ratio - m) < 1e-12
    assert s.frac_aligned_centres == 1.0 and s.covered_centres == [0, 1, 2, 3]


def test_rotation_trajectory_cosines_and_nearest_switch():
    # One positive neuron rotating from mu_2 to mu_1: u(t) = cos(phi) mu_1 + sin(phi) mu_2.
    t = np.linspace(0.0, 1.0, 21)
    phi = (np.pi / 2) * (1 - t) + 1e-3  # offset avoids the exact tie at phi = pi/4
    U = np.cos(phi)[:, None] * CENTRES[0] + np.sin(phi)[:, None] * CENTRES[1]
    traj = Trajectory(t, U[:, None, :], np.ones((t.size, 1)), centres=CENTRES,
                      subclass_labels=LABELS)
    nm = neuron_metrics(traj)
    np.testing.assert_allclose(nm.cosines[:, 0, 2], np.cos(phi), atol=TOL)
    np.testing.assert_allclose(nm.cosines[:, 0, 0], (np.cos(phi) + np.sin(phi)) / 2, atol=TOL)
    expect = np.where(phi < np.pi / 4, 2, 3)  # mu_1 once past 45 degrees, mu_2 before
    np.testing.assert_array_equal(nm.nearest[:, 0], expect)
    np.testing.assert_allclose(nm.nearest_centre_cos()[:, 0], np.maximum(np.cos(phi),
                                                                         np.sin(phi)), atol=TOL)
    np.testing.assert_allclose(nm.own_average_cos()[:, 0], nm.cosines[:, 0, 0], atol=TOL)


def test_alignment_end_given_loss_and_output_bound():
    W, v, _ = _placed_net()
    assert alignment_end(_traj_from(W, v, alignment_end_time=5.0)) == (5.0, "given")
    # L(t) = min(1, tau/t): crosses 0.9 L(t_0) at exactly tau/0.9; -log L is linear in
    # log t on each side of the grid point tau, so the log-t interpolation is exact.
    t = np.geomspace(0.1, 100.0, 61)
    tau = t[20]  # = 1.0 up to round-off
    loss = np.minimum(1.0, tau / t)
    tr = Trajectory(t, np.ones((61, 1, D)), np.ones((61, 1)), loss=loss)
    te, how = alignment_end(tr)
    assert how == "loss" and abs(te - tau / 0.9) < 1e-9 * te
    # Without a loss: B(t) = sum_j |v_j| ||w_j|| = b t^2 reaches 0.1 at sqrt(0.1 / b).
    b = 1e-3
    n = np.sqrt(b) * t  # ||w|| = |v| = sqrt(B)
    Wt = n[:, None, None] * CENTRES[0][None, None, :]
    tr2 = Trajectory(t, Wt, n[:, None])
    te2, how2 = alignment_end(tr2)
    assert how2 == "output-bound" and abs(te2 - np.sqrt(0.1 / b)) < 1e-9 * te2
    te3, how3 = alignment_end(tr2, output_level=1e9)
    assert np.isnan(te3) and how3 == "not-reached"


def test_fitting_phase_slopes_power_laws():
    # L = 1/t and ||theta|| = sqrt(2) t^0.5 after t_align: slopes -1 and 0.5 exactly.
    t = np.geomspace(1.0, 1e4, 41)
    n = np.sqrt(t)
    tr = Trajectory(t, n[:, None, None] * CENTRES[0][None, None, :], n[:, None], loss=1 / t)
    f = fitting_phase(tr, 10.0)
    assert abs(f["loss_loglog_slope"] + 1) < 1e-9
    assert abs(f["norm_log_slope"] - 0.5) < 1e-9
    assert abs(f["norm_growth"] - np.sqrt(1e4 / 10.0)) < 1e-9 * f["norm_growth"]
    assert np.isnan(fitting_phase(tr, float("nan"))["norm_growth"])


def test_heatmap_order_groups_by_sign_then_column():
    W, v, r = _placed_net()
    cos = direction_cosines(W, CENTRES, LABELS)
    order = heatmap_order(cos, np.sign(v), r)
    # positives first: mubar_+ (col 0) before mu_1-ish (col 2 via neuron 4? its argmax is
    # mu_6, col 7) ... by argmax column: neuron 1 (col 0), neuron 0 (col 4), neuron 4 (col 7);
    # then negatives: neuron 2 (col 1), neuron 3 (col 7).
    np.testing.assert_array_equal(order, [1, 0, 4, 2, 3])


def test_trajectory_roundtrip_and_from_any(tmp_path):
    W, v, _ = _placed_net()
    tr = _traj_from(W, v, t=(0.0, 0.5, 2.0), loss=np.array([1.0, 0.9, 0.1]),
                    meta={"p": 3.0, "K": K})
    back = Trajectory.load(tr.save(tmp_path / "a.npz"))
    for k in ("t", "W", "v", "loss", "centres", "subclass_labels"):
        np.testing.assert_array_equal(getattr(back, k), getattr(tr, k))
    assert back.meta == {"p": 3.0, "K": K} and back.alignment_end_time is None
    tr2 = Trajectory.load(_traj_from(W, v, alignment_end_time=0.7).save(tmp_path / "b.npz"))
    assert tr2.alignment_end_time == 0.7 and tr2.loss is None
    # An engine-like object with torch tensors and a list of snapshots.
    sol = types.SimpleNamespace(t=torch.tensor([0.0, 1.0]), W=[torch.tensor(W)] * 2,
                                v=torch.tensor(np.stack([v, v])), loss=None,
                                alignment_end_time=torch.tensor(0.3))
    tr3 = Trajectory.from_any(sol, centres=CENTRES, subclass_labels=LABELS)
    assert tr3.W.shape == (2, 5, D) and tr3.alignment_end_time == pytest.approx(0.3)
    assert Trajectory.from_any({"t": [0.0], "W": W[None], "v": v[None]}).width == 5


def test_trajectory_bad_input_messages():
    W, v, _ = _placed_net()
    with pytest.raises(ValueError, match="`t` must have length T=2"):
        Trajectory(np.zeros(3), np.stack([W, W]), np.stack([v, v]))
    with pytest.raises(ValueError, match="`t` must be strictly increasing"):
        Trajectory(np.array([1.0, 1.0]), np.stack([W, W]), np.stack([v, v]))
    with pytest.raises(ValueError, match="`v` must have shape"):
        Trajectory(np.array([0.0, 1.0]), np.stack([W, W]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="`subclass_labels` are required"):
        Trajectory(np.array([0.0]), W[None], v[None], centres=CENTRES)
    with pytest.raises(ValueError, match="missing \\['W'\\]"):
        Trajectory.from_any({"t": [0.0], "v": v[None]})
    with pytest.raises(ValueError, match="`centres` and `subclass_labels` are needed"):
        summarize_alignment(Trajectory(np.array([0.0]), W[None], v[None]))
    # review fixes: each of these used to pass silently (NaN cosines, a dropped centre,
    # an unchecked early return, an IndexError)
    with pytest.raises(ValueError, match="`subclass_labels` must hold \\+1 or -1"):
        extremal_directions(CENTRES, np.array([1.0, 0, 1, 1, -1, -1]))
    zero = CENTRES.copy()
    zero[1] = 0.0
    with pytest.raises(ValueError, match="`centres` must be non-zero"):
        direction_cosines(W, zero, LABELS)
    with pytest.raises(ValueError, match="`alignment_end_time` must be a finite time"):
        _traj_from(W, v, alignment_end_time=np.inf)
    with pytest.raises(ValueError, match="`loss_fraction`"):
        alignment_end(_traj_from(W, v, alignment_end_time=0.5), loss_fraction=5.0)
    with pytest.raises(ValueError, match="initial loss is nan"):
        alignment_end(_traj_from(W, v, loss=np.array([np.nan, 1.0])))
    with pytest.raises(ValueError, match="`index` must be <= 1"):
        _traj_from(W, v).at(7)


def test_paper_schema_roundtrip_and_errors(tmp_path):
    W, v, _ = _placed_net()
    arr = paper_arrays_from_trajectories({1: _traj_from(W, v), 3: _traj_from(W, v)})
    np.testing.assert_allclose(arr["cosines"][0], direction_cosines(W, CENTRES, LABELS),
                               atol=TOL)
    res = dict(arr, alphas=np.array([0.1, 0.2]), sup_distance=np.ones((2, 3, 2)),
               radii=np.linspace(0, 1, 5), robust_accuracy=np.ones((2, 3, 5)))
    back = load_paper_results(save_paper_results(tmp_path / "paper.npz", res))
    assert int(back["K"]) == K and back["cosines"].shape == (2, 5, K + 2)
    with pytest.raises(ValueError, match="missing key `radii`"):
        check_paper_results({k: x for k, x in res.items() if k != "radii"})
    with pytest.raises(ValueError, match="`robust_accuracy` must have shape"):
        check_paper_results(dict(res, robust_accuracy=np.ones((2, 3, 4))))
    with pytest.raises(ValueError, match="`cosines` must have shape"):
        check_paper_results(dict(res, cosines=np.ones((2, 5, K))))
    with pytest.raises(ValueError, match="`ps` must hold pReLU exponents p >= 1"):
        check_paper_results(dict(res, ps=np.array([-3.0, 1.0])))
    with pytest.raises(ValueError, match="`robust_accuracy` must hold fractions"):
        check_paper_results(dict(res, robust_accuracy=5 * np.ones((2, 3, 5))))
    with pytest.raises(ValueError, match="`radii` must be attack radii >= 0"):
        check_paper_results(dict(res, radii=np.linspace(-1, 1, 5)))


def test_metrics_never_import_matplotlib():
    code = "import sys, gradflow.metrics; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_gradient_descent_alignment_matches_theory():
    """Short real GD run (THEORY.md 4-5): p=1 neurons end at mubar_+-, p=3 at the centres."""
    from gradflow.config import DataConfig, InitConfig, ModelConfig
    from gradflow.data import make_subclass_data
    from gradflow.init import init_params
    from gradflow.model import loss_and_grad

    dcfg = DataConfig(K=6, K1=3, D=30, alpha=0.05, n=300, sizes="equal", seed=1)
    data = make_subclass_data(dcfg)
    out = {}
    for p, steps in ((1.0, 200), (3.0, 600)):
        mcfg = ModelConfig(width=60, p=p)
        params = init_params(mcfg, InitConfig(eps=1e-5, seed=2), dcfg.D)
        ts, Ws, vs = [], [], []
        for _ in range(steps):
            _, g = loss_and_grad(params, data.X, data.y, mcfg)
            params.W -= 0.5 * g.W
            params.v -= 0.5 * g.v
        ts.append(steps * 0.5)
        Ws.append(params.W.copy())
        vs.append(params.v.copy())
        out[p] = summarize_alignment(Trajectory(np.array(ts), np.array(Ws), np.array(vs),
                                                centres=data.centres,
                                                subclass_labels=data.subclass_labels))
    # cos > 0.99 is reachable at alpha = 0.05: the noise tilts directions by O(alpha/sqrt(n/K)).
    # Coverage of all 6 centres needs a neuron in every basin: with ~30 neurons per sign and 3
    # basins each, a miss has probability ~3 (2/3)^30 ~ 1e-5 (and the seed is fixed).
    assert out[1.0].frac_aligned_averages == 1.0 and out[1.0].frac_aligned_centres == 0.0
    assert out[3.0].frac_aligned_centres == 1.0 and out[3.0].n_covered_centres == 6


def test_summarize_index_and_negative_contributions_rejected():
    W, v, _ = _placed_net()
    traj = _traj_from(W, v)  # 2 snapshots: valid indices -2..1
    assert summarize_alignment(traj, index=-2).time == 0.0
    for bad in (2, -3, 1.0):
        with pytest.raises(ValueError, match=r"`index` must be an integer in \[-2, 1\]"):
            summarize_alignment(traj, index=bad)
    with pytest.raises(ValueError, match="`contrib` must be >= 0"):
        dominant_neurons(np.array([1.0, -0.5, 2.0]))
