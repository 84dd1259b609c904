"""Every figure is drawn from a saved, re-loaded result only and writes a PNG and a PDF."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

import gradflow
import gradflow.model
from gradflow.metrics import Trajectory, paper_arrays_from_trajectories, save_paper_results
from gradflow.metrics.paper import load_paper_results

K, K1, D, H = 6, 4, 10, 12
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rotating_trajectory() -> Trajectory:
    """h neurons turning from random directions to the centres/averages; norms grow as e^t."""
    rng = np.random.default_rng(0)
    centres = np.eye(K, D)
    labels = np.array([1.0] * K1 + [-1.0] * (K - K1))
    signs = np.array([1.0, -1.0] * (H // 2))
    targets = np.array([(centres[j % K1] if s > 0 else centres[K1 + j % (K - K1)])
                        for j, s in enumerate(signs)])
    targets[0] = centres[:K1].sum(0) / 2  # one neuron heads to mubar_+
    start = rng.standard_normal((H, D))
    t = np.concatenate([[0.0], np.geomspace(0.1, 50.0, 30)])
    lam = (1 - np.exp(-t / 5))[:, None, None]
    U = (1 - lam) * start[None] + lam * targets[None]
    U /= np.linalg.norm(U, axis=2, keepdims=True)
    norm = 1e-4 * np.exp(np.minimum(t, 12.0))  # growth stops: f = O(1) at t ~ 12
    W = U * norm[:, None, None]
    v = signs[None, :] * norm[:, None]
    loss = np.where(t < 12.0, 1.0, 12.0 / np.maximum(t, 1e-9))
    return Trajectory(t, W, v, loss=loss, centres=centres, subclass_labels=labels,
                      meta={"p": 3.0})


def _raise(*_a, **_k):
    raise AssertionError("a figure function tried to recompute a simulation")


@pytest.fixture
def no_recompute(monkeypatch):
    """Make every model evaluation and simulation entry point raise."""
    for mod in (gradflow.model, gradflow):
        for name in ("forward", "hidden", "loss", "loss_and_grad"):
            monkeypatch.setattr(mod, name, _raise, raising=False)
    for modname, funcs in (("gradflow.dynamics", ("simulate", "solve")),
                           ("gradflow.training", ("train", "train_torch"))):
        stub = types.ModuleType(modname)
        for f in funcs:
            setattr(stub, f, _raise)
        monkeypatch.setitem(sys.modules, modname, stub)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A trajectory and a paper-results file written to disk (the only inputs of the plots)."""
    d = tmp_path_factory.mktemp("saved")
    tr = _rotating_trajectory()
    traj_path = tr.save(d / "traj.npz")
    rng = np.random.default_rng(1)
    arr = paper_arrays_from_trajectories({1.0: tr, 3.0: tr})
    radii = np.linspace(0, 1.5, 7)
    res = dict(arr, alphas=np.linspace(0.01, 0.3, 4),
               sup_distance=np.abs(rng.normal(0.05, 0.01, (2, 3, 4))),
               radii=radii,
               robust_accuracy=np.clip(1 - radii[None, None, :] * rng.uniform(0.5, 1.5, (2, 3, 1)),
                                       0, 1),
               heatmap_alpha=np.asarray(0.1))
    paper_path = save_paper_results(d / "paper.npz", res)
    return traj_path, paper_path


def _check_written(out):
    png, pdf = out.with_suffix(".png"), out.with_suffix(".pdf")
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 2000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000


def test_trajectory_figures_from_loaded_file(saved, tmp_path, no_recompute):
    from gradflow import plots

    tr = Trajectory.load(saved[0])
    calls = {
        "traj": lambda o: plots.plot_neuron_trajectories(tr, out=o),
        "dirs": lambda o: plots.plot_neuron_directions(tr, plane=("mu_1", "mu_2"), out=o),
        "dirs_avg": lambda o: plots.plot_neuron_directions(tr, times=[0.1, 50.0], out=o),
        "heat": lambda o: plots.plot_cosine_heatmap(tr, times=[1.0, 50.0], out=o),
        "contrib": lambda o: plots.plot_contributions(tr, out=o),
        "loss": lambda o: plots.plot_loss_and_norm(tr, out=o),
    }
    for name, call in calls.items():
        call(tmp_path / name)
        _check_written(tmp_path / name)


def test_contributions_cutoff_label_in_legend(tmp_path, no_recompute):
    """The mass-cutoff label lives in the legend, so it cannot overlap it (no free text)."""
    from gradflow import plots

    rng = np.random.default_rng(3)
    scale = np.r_[np.full(4, 1.0), np.full(16, 1e-3)]  # 4 neurons carry > 99% of the mass
    W = rng.standard_normal((2, 20, D))
    W /= np.linalg.norm(W, axis=2, keepdims=True)
    W *= scale[None, :, None]
    v = np.r_[1.0, -1.0, 1.0, -1.0, np.ones(16)][None].repeat(2, 0) * scale
    fig = plots.plot_contributions(Trajectory(np.array([0.0, 1.0]), W, v), out=tmp_path / "c")
    ax = fig.axes[0]
    assert not ax.texts
    assert "99% of total (left)" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_robustness_figures_from_arrays(tmp_path, no_recompute):
    from gradflow import plots

    rng = np.random.default_rng(2)
    radii = np.linspace(0, 1.5, 11)
    acc = {1.0: np.clip(1 - 2 * radii + rng.normal(0, 0.02, (3, 11)), 0, 1),
           3.0: np.clip(1.2 - radii + rng.normal(0, 0.02, (3, 11)), 0, 1)}
    plots.plot_robust_accuracy(radii, acc, K=10, out=tmp_path / "acc")
    lo = rng.uniform(0.2, 0.3, 200)
    hi = lo + rng.uniform(0, 0.05, 200)
    hi[:5] = np.inf  # never broken within the budget
    plots.plot_radius_histogram(lo, hi, K=10, out=tmp_path / "hist")
    Ks = [4, 10, 16, 32]
    med = {1.0: 1 / np.sqrt(Ks), 3.0: np.full(4, 0.69)}
    iv = {p: np.stack([m * 0.95, m * 1.05], 1) for p, m in med.items()}
    plots.plot_radius_vs_K(Ks, med, iv, out=tmp_path / "rk")
    plots.plot_sup_distance(np.linspace(0.01, 0.3, 5),
                            {1.0: rng.uniform(0.03, 0.09, (5, 5)),
                             3.0: rng.uniform(1e-6, 1e-5, (5, 5))}, out=tmp_path / "sd")
    for name in ("acc", "hist", "rk", "sd"):
        _check_written(tmp_path / name)


def test_radius_vs_K_drops_cells_not_run(tmp_path, no_recompute):
    """A NaN row (a K the method skipped) must not abort the figure."""
    from gradflow import plots

    Ks = [4, 8, 16]
    med = {1.0: np.array([0.5, np.nan, 0.25])}
    iv = {1.0: np.array([[0.45, 0.55], [np.nan, np.nan], [0.2, np.inf]])}
    fig = plots.plot_radius_vs_K(Ks, med, iv, out=tmp_path / "rk")
    _check_written(tmp_path / "rk")
    x = fig.axes[0].lines[0].get_xdata()
    assert list(x) == [4, 16]


def test_paper_figure_from_saved_npz(saved, tmp_path, no_recompute):
    from gradflow import plots

    fig = plots.paper_figure(load_paper_results(saved[1]), out=tmp_path / "paper")
    _check_written(tmp_path / "paper")
    assert len([ax for ax in fig.axes if ax.get_label() != "<colorbar>"]) >= 5


def test_gif_written_and_small(saved, tmp_path, no_recompute):
    from gradflow import plots

    path = plots.animate_neuron_directions(Trajectory.load(saved[0]), tmp_path / "dirs",
                                           n_frames=8)
    data = path.read_bytes()
    assert data[:6] in (b"GIF87a", b"GIF89a")
    assert 1000 < len(data) <= plots.MAX_GIF_BYTES


def test_bad_inputs_name_the_argument(saved):
    from gradflow import plots

    tr = Trajectory.load(saved[0])
    with pytest.raises(ValueError, match="`plane` entries must be one of"):
        plots.plot_neuron_directions(tr, plane=("mu_1", "nu_2"))
    with pytest.raises(ValueError, match="`plane` vectors are parallel"):
        plots.plot_neuron_directions(tr, plane=("mu_1", "mu_1"))
    with pytest.raises(ValueError, match=r"`accuracy\[1.0\]` must have shape"):
        plots.plot_robust_accuracy(np.linspace(0, 1, 5), {1.0: np.ones(4)})
    with pytest.raises(ValueError, match="`lower` must be <= `upper`"):
        plots.plot_radius_histogram(np.array([0.5]), np.array([0.4]))
    with pytest.raises(ValueError, match="`n_frames` must be an integer"):
        plots.animate_neuron_directions(tr, "x.gif", n_frames=1)
    bare = Trajectory(tr.t, tr.W, tr.v)
    with pytest.raises(ValueError, match="must carry `centres`"):
        plots.plot_cosine_heatmap(bare)


def test_activation_label_names_every_study_family():
    from gradflow.plots.style import activation_label

    assert [activation_label(n) for n in ("relu", "silu", "gelu", "elu", "softplus", "tanh")] \
        == ["ReLU", "SiLU", "GELU", "ELU", "softplus", "tanh"]
    assert activation_label("capped_relu_0.5") == r"capped ReLU $\beta$=0.5"
    assert activation_label("prelu3") == "pReLU p=3"
    assert activation_label("relu_p2") == "ReLU$^{2}$ (unnormalised)"
    assert activation_label("param_softplus") == "param_softplus"  # unknown: unchanged
