"""Regression tests for reviewed defects of the CLI, the study runner and the sweep engine."""
from __future__ import annotations

import os

import numpy as np
import pytest

from gradflow.cli import main
from gradflow.io import atomic_write_text, load_json, save_npz
from gradflow.studies import Study, StudyOutput, run_study
from gradflow.studies.cache import CellCache, RunCache
from gradflow.sweep import SweepSpec, get_task, load_grid, run_sweep

# --- sweeps ------------------------------------------------------------------------------------

def test_output_paths_are_checked_before_the_cluster_starts(tmp_path):
    (tmp_path / "afile").write_text("")
    spec = SweepSpec.from_dict({"task": "echo", "grid": {"x": [1.0]}})
    with pytest.raises(ValueError, match=r"`out` must be a folder.*afile"):
        run_sweep(spec, out=tmp_path / "afile", cache_dir=tmp_path / "c", workers=1)
    with pytest.raises(ValueError, match=r"`cache_dir` must be a folder"):
        run_sweep(spec, out=tmp_path / "o", cache_dir=tmp_path / "afile", workers=1)


def test_an_axis_given_twice_is_an_error():
    for grid in ({"a.b": [1, 2], "a": {"b": [3]}}, {"a": {"b": [3]}, "a.b": [1, 2]}):
        with pytest.raises(ValueError, match=r"axis `grid\.a\.b` is given twice"):
            SweepSpec.from_dict({"task": "echo", "grid": grid})
    with pytest.raises(ValueError, match=r"axis `zip\.a\.b` is given twice"):
        SweepSpec.from_dict({"task": "echo", "zip": {"a.b": [1], "a": {"b": [3]}}})


def test_a_grid_override_replaces_the_axis_however_the_file_spells_it(tmp_path):
    # docs/cli.md's example: the file has `model.p: [..]`, the override `grid.model.p=[..]`
    f = tmp_path / "g.yaml"
    f.write_text("task: echo\ngrid:\n  model.p: [1.0, 3.0]\n  data:\n    alpha: [0.1, 0.2]\n"
                 "zip: {x: [1, 2]}\n")
    spec = load_grid(f, ["grid.model.p=[1, 2, 3]", "grid.data.alpha=[0.5]", "zip.x=[7, 8]",
                         "grid.init.seed=[0, 1]"])
    assert spec.grid == {"model.p": [1, 2, 3], "data.alpha": [0.5], "init.seed": [0, 1]}
    assert spec.zip == {"x": [7, 8]}
    assert len(spec.cells()) == 3 * 1 * 2 * 2


def test_an_axis_inside_another_axis_is_an_error_and_cells_share_nothing():
    # cells used to share the mapping of the outer axis, so every cell got the last alpha
    with pytest.raises(ValueError, match=r"axis `data\.alpha` lies inside axis `data`"):
        SweepSpec.from_dict({"task": "echo", "grid": {"data": [{"K": 4}, {"K": 8}]},
                             "zip": {"data.alpha": [0.05, 0.2]}})
    spec = SweepSpec.from_dict({"task": "echo", "grid": {"x": [[1, 2], [3]], "y": [0, 1]}})
    cells = spec.cells()
    cells[0][1]["x"].append(9)  # a task mutating its config must not reach other cells
    assert cells[1][1]["x"] == [1, 2] and spec.grid["x"] == [[1, 2], [3]]


def test_zip_rejects_repeated_rows_not_repeated_values():
    spec = SweepSpec.from_dict({"task": "echo", "zip": {"x": [1.0, 1.0], "y": [1.0, 2.0]}})
    assert len(spec.cells()) == 2
    with pytest.raises(ValueError, match=r"`zip` repeats the row \{'x': 1.0, 'y': 2.0\}"):
        SweepSpec.from_dict({"task": "echo", "zip": {"x": [1.0, 1.0], "y": [2.0, 2.0]}})
    with pytest.raises(ValueError, match="repeats the value"):
        SweepSpec.from_dict({"task": "echo", "grid": {"x": [1.0, 1.0]}})


def test_free_form_config_keys_must_be_strings(tmp_path):
    f = tmp_path / "g.yaml"
    f.write_text("task: os.path:join\nbase: {options: {1: 2, a: 3}}\ngrid: {x: [0]}\n")
    with pytest.raises(ValueError, match=r"grid cell 0.*`config\.options` keys must be strings"):
        run_sweep(load_grid(f), out=tmp_path / "o", cache_dir=tmp_path / "c", workers=1)


def test_train_task_scores_the_trained_bias(one_torch_thread):
    """With model.bias the 'train' task must score the trained model, bias included: full-batch
    GD in torch and the numpy 'gd' task take the same steps, so their losses agree."""
    pytest.importorskip("gradflow.backend")
    model = {"bias": True, "width": 8}
    gd, tr = get_task("gd"), get_task("train")
    a = gd.fn(gd.prepare({"lr": 0.5, "steps": 10, "model": model}))
    b = tr.fn(tr.prepare({"model": model,
                          "options": {"optimizer": "gd", "lr": 0.5, "epochs": 10}}))
    assert b["final_loss"] == pytest.approx(a["final_loss"], rel=1e-9)


# --- files --------------------------------------------------------------------------------------

@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_written_files_and_cache_folders_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        f = atomic_write_text(tmp_path / "a.txt", "x")
        cell = CellCache(tmp_path / "c").put("echo", "k", {"a": 1})
        cache = RunCache(tmp_path / "c")
        with cache.staging("study", "s", "key") as d:
            atomic_write_text(d / "f.txt", "y")
        os.umask(0o077)
        private = atomic_write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    assert f.stat().st_mode & 0o777 == 0o644 and cell.stat().st_mode & 0o777 == 0o644
    assert cache.entry("study", "s", "key").stat().st_mode & 0o777 == 0o755
    assert private.stat().st_mode & 0o777 == 0o600


# --- CLI ----------------------------------------------------------------------------------------

@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRADFLOW_CACHE", str(tmp_path / "cache"))
    (tmp_path / "afile").write_text("")
    (tmp_path / "ok.yaml").write_text("task: echo\ngrid:\n  x: [1.0]\n")
    (tmp_path / "listsum").mkdir()
    (tmp_path / "listsum" / "summary.json").write_text("[1, 2]\n")
    return tmp_path


REPRO = ["reproduce", "gd_alignment", "--preset", "smoke", "-q"]
PATH_ERRORS = {
    "out is a file": (["simulate", "--out", "afile"], "`--out`"),
    "out below a file": (["simulate", "--out", "afile/x"], "`--out`"),
    "cache-dir is a file": (["simulate", "--out", "o", "--cache-dir", "afile"], "`--cache-dir`"),
    "reproduce out": (REPRO + ["--out", "afile", "--no-results-md"], "`--out`"),
    "reproduce cache-dir": (REPRO + ["--cache-dir", "afile", "--no-results-md"], "`--cache-dir`"),
    "results-md below a file": (REPRO + ["--out", "o", "--results-md", "afile/r.md"],
                                "`--results-md`"),
    "sweep out": (["sweep", "ok.yaml", "--out", "afile"], "`--out`"),
    "int key in a free-form section": (["simulate", "--set", "options={1: 2, a: 3}"],
                                       "`options` keys must be strings"),
    "summary.json is a list": (["plot", "listsum"], "must hold a JSON object"),
}


@pytest.mark.parametrize("argv,names", list(PATH_ERRORS.values()), ids=list(PATH_ERRORS))
def test_bad_paths_and_keys_are_one_line_exit_2(env, capsys, argv, names):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gradflow: error:") and names in err[0], err
    assert not (env / "cache" / "runs").exists()  # checked before anything was computed


def test_library_checks_output_paths_before_computing(env):
    with pytest.raises(ValueError, match="`out` must be a folder"):
        run_study("gd_alignment", "smoke", out=env / "afile", results_md=False)
    with pytest.raises(ValueError, match=r"`results_md` `.*r\.md` cannot be created"):
        run_study("gd_alignment", "smoke", out=env / "o", results_md=env / "afile" / "r.md")
    assert not (env / "cache" / "runs").exists()


def test_seed_sets_the_data_init_and_train_seeds(env, capsys):
    pytest.importorskip("gradflow.backend")
    base = ["train", "-q", "--set", "train.epochs=1", "--set", "data.n=20", "--set",
            "model.width=4", "--set", "n_test=10"]
    for name, extra in (("s1", ["--seed", "1"]), ("s2", ["--seed", "2"]),
                        ("s2d", ["--seed", "2", "--set", "data.seed=5"])):
        assert main(base + extra + ["--out", name]) == 0, capsys.readouterr().err
    p1, p2 = (np.load(env / n / "params.npz")["W"] for n in ("s1", "s2"))
    assert not np.allclose(p1, p2)
    from gradflow.studies.config import load_yaml

    c2, c2d = (load_yaml(env / n / "effective_config.yaml") for n in ("s2", "s2d"))
    assert (c2["data"]["seed"], c2["init"]["seed"], c2["train"]["seed"]) == (2, 2, 2)
    # an explicit section seed wins over --seed
    assert (c2d["data"]["seed"], c2d["init"]["seed"], c2d["train"]["seed"]) == (5, 2, 2)


def test_seed_reaches_simulate(env, monkeypatch, fake_solution):
    """simulate's initial parameters (saved as params.npz by a stand-in engine) follow --seed."""
    import gradflow.dynamics as dyn

    monkeypatch.setattr(dyn, "simulate", lambda data, model, init, **kw: fake_solution(init))
    for s in ("1", "2"):
        assert main(["simulate", "-q", "--seed", s, "--out", f"s{s}"]) == 0
    assert not np.allclose(np.load(env / "s1" / "params.npz")["W"],
                           np.load(env / "s2" / "params.npz")["W"])


def _plot_x(arrays, summary, fig_dir):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot(arrays["x"])
    out = fig_dir / "x.png"
    fig.savefig(out)
    plt.close(fig)
    return [out]


def test_plot_needs_the_study_arrays(env, capsys):
    import gradflow.studies.registry as reg

    study = Study(name="fix_plot_toy", run=lambda cfg, ctx: StudyOutput(
        checks=[], arrays={"x": np.arange(3.0)}), defaults={}, plot=_plot_x,
        presets={"quick": {}, "paper": {}})
    reg.register_study(study)
    try:
        run = run_study("fix_plot_toy", out=env / "o", results_md=False)
        assert main(["plot", str(run.out_dir)]) == 0
        save_npz(run.out_dir / "arrays.npz", y=np.zeros(2))  # arrays of another study
        assert main(["plot", str(run.out_dir)]) == 2
        err = capsys.readouterr().err
        assert "study 'fix_plot_toy'" in err and "needs the array 'x'" in err and "y" in err
        (run.out_dir / "arrays.npz").unlink()
        assert main(["plot", str(run.out_dir)]) == 2
        assert "arrays.npz` is missing" in capsys.readouterr().err
        assert load_json(run.out_dir / "summary.json")["study"] == "fix_plot_toy"
    finally:
        reg._REGISTRY.pop("fix_plot_toy", None)
