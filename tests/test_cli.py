"""CLI: every user error is one line on stderr with exit status 2; commands dispatch and cache."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gradflow.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Run in a temporary folder with a private cache; never touch docs/results.md."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRADFLOW_CACHE", str(tmp_path / "cache"))
    (tmp_path / "bad.yaml").write_text("data: [unclosed\n  - x: :\n")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "unknown.yaml").write_text("data:\n  Kay: 3\n")
    (tmp_path / "empty_grid.yaml").write_text("task: gd\nbase: {steps: 1}\ngrid: {}\n")
    (tmp_path / "badaxis.yaml").write_text("task: gd\ngrid:\n  model.p: 3.0\n")
    (tmp_path / "notask.yaml").write_text("grid:\n  model.p: [1.0]\n")
    (tmp_path / "badtask.yaml").write_text("task: nope\ngrid:\n  x: [1]\n")
    (tmp_path / "badcell.yaml").write_text("task: gd\ngrid:\n  data.alpha: [0.1, -1.0]\n")
    (tmp_path / "zipbad.yaml").write_text("task: echo\nzip:\n  x: [1.0, 2.0]\n  y: [1.0]\n")
    (tmp_path / "ok.yaml").write_text("task: echo\ngrid:\n  x: [1.0]\n")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    return tmp_path


BAD_INPUTS = {
    "no command": [],
    "unknown subcommand": ["frobnicate"],
    "unknown option": ["reproduce", "gd_alignment", "--frob"],
    "unknown study": ["reproduce", "no_such_study", "--no-results-md"],
    "bad study name": ["reproduce", "Bad-Name!", "--no-results-md"],
    "bad preset": ["reproduce", "gd_alignment", "--preset", "fast", "--no-results-md"],
    "negative seed": ["simulate", "--seed", "-1"],
    "non-integer seed": ["simulate", "--seed", "abc"],
    "bad device": ["simulate", "--device", "gpu7"],
    "device the backend lacks": ["train", "--device", "mps"],
    "missing config file": ["simulate", "--config", "nope.yaml"],
    "config is a folder": ["simulate", "--config", "."],
    "unreadable YAML": ["simulate", "--config", "bad.yaml"],
    "binary config": ["simulate", "--config", "binary.yaml"],
    "YAML not a mapping": ["simulate", "--config", "list.yaml"],
    "unknown key in file": ["simulate", "--config", "unknown.yaml"],
    "unknown key in --set": ["simulate", "--set", "model.widht=3"],
    "override without =": ["simulate", "--set", "model.width"],
    "bad override key": ["simulate", "--set", "3x=1"],
    "non-numeric override": ["simulate", "--set", "data.alpha=abc"],
    "float for int": ["simulate", "--set", "model.width=2.5"],
    "bad number (negative alpha)": ["simulate", "--set", "data.alpha=-0.1"],
    "bad number (K1 >= K)": ["simulate", "--set", "data.K1=9"],
    "nan override": ["simulate", "--set", "t_max=.nan"],
    "value for a section": ["simulate", "--set", "data=3"],
    "bad activation": ["simulate", "--set", "model.activation=swish9"],
    "missing grid file": ["sweep", "nope.yaml"],
    "empty grid": ["sweep", "empty_grid.yaml"],
    "axis not a list": ["sweep", "badaxis.yaml"],
    "grid without task": ["sweep", "notask.yaml"],
    "unknown task": ["sweep", "badtask.yaml"],
    "bad value in a cell": ["sweep", "badcell.yaml"],
    "zip lengths differ": ["sweep", "zipbad.yaml"],
    "zero workers": ["sweep", "ok.yaml", "--workers", "0"],
    "bad scheduler address": ["sweep", "ok.yaml", "--scheduler", "localhost"],
    "plot of a missing folder": ["plot", "no_such_dir"],
    "radius of a non-model folder": ["radius", "."],
}


@pytest.mark.parametrize("argv", list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_user_errors_are_one_line_and_exit_2(env, capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, no traceback
    assert lines[0].startswith("gradflow")
    assert "Traceback" not in err and "error" in lines[0]


def test_error_messages_name_the_problem(env, capsys):
    cases = [
        (["simulate", "--set", "data.alpha=abc"], r"`data\.alpha` must be a number"),
        (["simulate", "--set", "model.widht=3"], r"unknown config key `model\.widht`"),
        (["simulate", "--seed", "-1"], r"--seed.*>= 0"),
        (["reproduce", "no_such_study", "--no-results-md"], r"unknown study `no_such_study`.*"
                                                            r"gd_alignment"),
        (["sweep", "empty_grid.yaml"], r"grid is empty"),
        (["simulate", "--config", "bad.yaml"], r"cannot parse YAML.*line"),
        (["simulate", "--set", "data.K1=9"], r"`K1` must be <= 3"),
        # the torch backend runs on CPU or CUDA only, so the CLI offers no other device
        (["reproduce", "sec51", "--device", "mps", "--no-results-md"],
         r"`device` must be 'cpu', 'cuda' or 'cuda:N', got 'mps'"),
    ]
    import re

    for argv, pattern in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert re.search(pattern, err), (argv, err)


def test_help_for_every_subcommand(capsys):
    for cmd in ("simulate", "train", "radius", "reproduce", "sweep", "plot", "demo", "list"):
        assert main([cmd, "--help"]) == 0
        assert "usage: gradflow " + cmd in capsys.readouterr().out


def test_traceback_flag_reraises(env):
    with pytest.raises(ValueError, match="unknown config key"):
        main(["simulate", "--set", "model.widht=3", "--traceback"])


def test_module_entry_point_runs_without_parsing_at_import(monkeypatch, capsys):
    # `python -m gradflow.cli` works ...
    r = subprocess.run([sys.executable, "-m", "gradflow.cli", "list"], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and "gd_alignment" in r.stdout and "gd" in r.stdout
    # ... and (re-)importing the module parses nothing, even with a bogus sys.argv.
    import importlib

    import gradflow.cli

    monkeypatch.setattr(sys, "argv", ["gradflow", "--bogus"])
    importlib.reload(gradflow.cli)
    assert capsys.readouterr().err == ""


def test_reproduce_writes_outputs_and_second_run_is_cached(env, capsys):
    md = env / "results.md"
    argv = ["reproduce", "gd_alignment", "--preset", "smoke", "--out", "o", "--results-md",
            str(md), "-q"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "computed" in first and "prediction" in first and "agrees?" in first
    assert "figure:  o/figures/gd_alignment.png" in first
    for f in ("summary.json", "arrays.npz", "effective_config.yaml", "figures/gd_alignment.png"):
        assert (env / "o" / f).is_file(), f
    assert "<!-- results:gd_alignment:smoke -->" in md.read_text()
    assert main(argv) == 0
    assert "cached result" in capsys.readouterr().out
    # a changed config is a different key: recomputed, never the stale result
    assert main(argv + ["--set", "lr=0.1"]) == 0
    assert "computed" in capsys.readouterr().out


def test_demo_names_missing_studies(env, capsys, monkeypatch):
    monkeypatch.setattr("gradflow.studies.available_studies", lambda: ["gd_alignment"])
    assert main(["demo", "--no-results-md", "--out", "demo", "-q"]) == 2
    err = capsys.readouterr().err
    assert "demo studies not found: sec51, radius_vs_k" in err and "GRADFLOW_SIMS" in err
    assert not (env / "demo").exists()


def test_simulate_dispatch_with_a_stand_in_engine(env, capsys, monkeypatch, fake_solution):
    """The simulate call site passes the configs through and saves what comes back."""
    import gradflow.dynamics as dyn

    calls = {}

    def fake_simulate(data, model, init, **kw):
        calls.update(kw, width=model.width, n=data.n)
        return fake_solution(init)

    monkeypatch.setattr(dyn, "simulate", fake_simulate)
    assert main(["simulate", "--set", "model.width=7", "--set", "t_max=5", "--out", "s"]) == 0
    assert calls["width"] == 7 and calls["t_max"] == 5.0 and calls["loss"] == "exponential"
    assert (env / "s" / "params.npz").is_file() and (env / "s" / "effective_config.yaml").is_file()
    assert "max_invariant_drift" in capsys.readouterr().out


def test_radius_on_the_train_split_measures_the_training_points(tmp_path, monkeypatch):
    # a draw's noise depends on n, so drawing n_points < n used to give fresh points
    import yaml

    from gradflow import DataConfig, ModelConfig, init_params, make_subclass_data
    from gradflow.config import InitConfig
    from gradflow.studies.runs import compute_radius, save_params

    data_cfg, model = DataConfig(K=4, K1=2, D=12, alpha=0.1, n=40), ModelConfig(width=6, p=1.0)
    d = tmp_path / "model"
    d.mkdir()
    (d / "effective_config.yaml").write_text(yaml.safe_dump(
        {"data": data_cfg.to_dict(), "model": model.to_dict()}))
    save_params(d / "params.npz", init_params(model, InitConfig(eps=1.0), data_cfg.D))
    out = tmp_path / "out"
    out.mkdir()
    import gradflow.attacks.radius as radius_mod

    seen = []
    real = radius_mod.attack_radius
    monkeypatch.setattr(radius_mod, "attack_radius",
                        lambda net, x, y, **kw: seen.append(x.numpy().copy()) or real(net, x, y, **kw))
    cfg = {"n_points": 5, "split": "train", "lower": "none"}
    compute_radius(d, cfg, out, seed=0, device="cpu")
    np.testing.assert_array_equal(seen[0], make_subclass_data(data_cfg).X[:5])
    with pytest.raises(ValueError, match=r"`n_points` must be <= 40"):
        compute_radius(d, {**cfg, "n_points": 41}, out, seed=0, device="cpu")
