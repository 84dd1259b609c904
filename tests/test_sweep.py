"""Sweeps: grid expansion, a real LocalCluster run, caching, failures, and kill -9 + resume."""
from __future__ import annotations

import csv
import importlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gradflow.sweep import SweepSpec, cell_key, expand_grid, get_task, load_grid, run_sweep
from gradflow.sweep.gd import gd_cell

ROOT = Path(__file__).resolve().parents[1]


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _csv(path):
    with open(path) as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


TASKS = textwrap.dedent('''
    import os

    def collide(cfg):
        """Metrics named like the engine's own columns; the first cell (x=0) fails."""
        if cfg["x"] == 0:
            raise RuntimeError("first cell fails")
        return {"v": cfg["x"], "error": 0.5, "wall_s": 99.0, "cell": "c", "status": "s",
                "x": -1}

    def crash(cfg):
        """Kills its worker process on x=1, like a segfault or the OOM killer."""
        if cfg["x"] == 1:
            os._exit(1)
        return {"v": cfg["x"]}
''')
EDITABLE = "def run(cfg):\n    return {{'v': cfg['x'] + {offset}}}\n"


def test_grid_expansion_product_and_zip(tmp_path):
    f = tmp_path / "g.yaml"
    f.write_text("task: echo\nbase: {y: 1.0}\ngrid:\n  x: [1.0, 2.0, 3.0]\n"
                 "zip:\n  sleep: [0.0, 0.01]\n  fail: [false, true]\n")
    spec = load_grid(f)
    cells = expand_grid(spec)
    assert len(cells) == 3 * 2 and spec.name == "g"
    assert cells[1] == {"y": 1.0, "x": 1.0, "sleep": 0.01, "fail": True}
    nested = SweepSpec.from_dict({"task": "gd", "grid": {"model": {"p": [1.0, 3.0]}}})
    assert nested.grid == {"model.p": [1.0, 3.0]}
    over = load_grid(f, ["grid.x=[5.0]", "base.y=2.0"])
    assert [c["x"] for c in expand_grid(over)] == [5.0, 5.0]
    with pytest.raises(ValueError, match="repeats the value"):
        SweepSpec.from_dict({"task": "echo", "grid": {"x": [1, 1]}})
    with pytest.raises(ValueError, match="unknown grid key"):
        SweepSpec.from_dict({"task": "echo", "grid": {"x": [1]}, "bsae": {}})


def test_cell_keys_depend_on_every_value():
    task = get_task("gd")
    a = task.prepare({})
    b = task.prepare({"data": {"alpha": 0.2}})
    assert cell_key("gd", a) == cell_key("gd", task.prepare({}))
    assert cell_key("gd", a) != cell_key("gd", b) != cell_key("echo", b)
    with pytest.raises(ValueError, match=r"unknown config key `model\.pp`"):
        task.prepare({"model": {"pp": 1}})


def test_gd_cells_on_the_cluster(tmp_path, client):
    """The real 'gd' task through the cluster: p=3 cells align with centres, p=1 with mubar."""
    spec = SweepSpec.from_dict({"task": "gd", "base": {"steps": 200},
                                "grid": {"model.p": [1.0, 3.0]}})
    res = run_sweep(spec, out=tmp_path / "o", cache_dir=tmp_path / "c", client=client)
    rows = {float(r["model.p"]): r for r in _rows(res.csv)}
    assert float(rows[1.0]["top_cos_class"]) > 0.95 and float(rows[3.0]["top_cos_centre"]) > 0.95
    assert rows[1.0]["data.alpha"] == "0.1" and rows[1.0]["status"] == "ok"


def test_gd_task_matches_theory():
    """p=1 neurons end on mubar_+/-, p=3 on single centres (THEORY.md 4-5); GD drift is O(lr)."""
    task = get_task("gd")
    m1 = gd_cell(task.prepare({"model": {"p": 1.0}}))
    m3 = gd_cell(task.prepare({"model": {"p": 3.0}}))
    # 0.95: alpha=0.1 noise tilts the extremal directions by O(alpha).
    assert m1["top_cos_class"] > 0.95 and m1["top_cos_centre"] < 0.8
    assert m3["top_cos_centre"] > 0.95 and m3["top_cos_class"] < 0.8
    assert m1["train_acc"] == 1.0 and m1["test_acc"] > 0.99 and m1["final_loss"] < 0.01
    # First order: halving lr (same time lr*steps) halves the drift; 25% allows O(lr) terms.
    d1 = gd_cell(task.prepare({"lr": 0.2, "steps": 500}))["max_invariant_drift"]
    d2 = gd_cell(task.prepare({"lr": 0.1, "steps": 1000}))["max_invariant_drift"]
    assert 1.5 < d1 / d2 < 2.5


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    """A folder of task modules importable here and on the workers (via PYTHONPATH)."""
    d = tmp_path_factory.mktemp("tasks")
    (d / "gf_fix_tasks.py").write_text(TASKS)
    (d / "gf_fix_edit.py").write_text(EDITABLE.format(offset=0))
    old_path, old_env = list(sys.path), os.environ.get("PYTHONPATH")
    sys.path.insert(0, str(d))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(d), old_env]))
    importlib.invalidate_caches()
    yield d
    sys.path[:] = old_path
    if old_env is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old_env


@pytest.fixture(scope="module")
def client(task_dir):
    """One real LocalCluster (2 processes, 1 thread each) shared by the in-process tests. Its
    scheduler gives up on a cell after the first worker the cell kills (the default retries
    it on 3 more workers, which only makes the crash test slow)."""
    import logging

    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.CRITICAL)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_local_cluster_sweep_csv_cache_and_failures(tmp_path, client):
    log = tmp_path / "log.txt"
    f = tmp_path / "g.yaml"
    f.write_text(f"task: echo\nbase: {{log: '{log}'}}\ngrid:\n  x: [0.0, 1.0, 2.0]\n"
                 "  y: [0.0, 10.0]\n")
    spec = load_grid(f)
    res = run_sweep(spec, out=tmp_path / "out", cache_dir=tmp_path / "c", client=client)
    assert (res.n_cells, res.n_cached, res.n_run, res.n_failed) == (6, 0, 6, 0)
    rows = _rows(res.csv)
    assert len(rows) == 6 and {"cell", "status", "x", "y", "value", "pid", "wall_s"} <= set(rows[0])
    assert all(float(r["value"]) == float(r["x"]) ** 2 + float(r["y"]) for r in rows)
    assert len({r["pid"] for r in rows}) == 2  # spread over both worker processes
    # rerun: everything cached, no cluster started, nothing recomputed
    t0 = time.perf_counter()
    res2 = run_sweep(spec, out=tmp_path / "out", cache_dir=tmp_path / "c", workers=2)
    assert res2.n_cached == 6 and res2.n_run == 0 and time.perf_counter() - t0 < 2.0
    assert len(log.read_text().splitlines()) == 6
    # a failing cell is reported, not cached, and the others complete
    bad = load_grid(f, ["grid.fail=[false, true]", "grid.x=[0.0]", "grid.y=[0.0]"])
    res3 = run_sweep(bad, out=tmp_path / "out3", cache_dir=tmp_path / "c", client=client)
    assert res3.n_failed == 1 and "asked to fail" in res3.failures[0]["error"]
    statuses = sorted(r["status"] for r in _rows(res3.csv))
    assert statuses == ["error", "ok"]


def test_kill_9_then_resume_recomputes_nothing(tmp_path, client):
    """Start `gradflow sweep` in a subprocess, kill -9 its whole process group mid-way, rerun
    (in-process on the shared cluster, to save a second interpreter start): finished cells are
    not recomputed and every cell ends up in the CSV."""
    log = tmp_path / "log.txt"
    cache = tmp_path / "cache"
    grid = tmp_path / "grid.yaml"
    n_cells = 12
    grid.write_text(f"task: echo\nbase: {{sleep: 0.4, log: '{log}'}}\n"
                    f"grid:\n  x: {[float(i) for i in range(n_cells)]}\n")
    cmd = [sys.executable, "-m", "gradflow.cli", "sweep", str(grid), "--out", str(tmp_path / "o"),
           "--cache-dir", str(cache), "--workers", "2", "-q"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cells = cache / "cells" / "echo"
    deadline = time.time() + 90
    try:
        while time.time() < deadline and len(list(cells.glob("*.json"))) < 3:
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker processes
        proc.wait()
    # A worker process that outlives the kill briefly (slow to notice on a loaded machine)
    # may still finish its cell: wait until the records stop changing, so `done` is final.
    done, stable_since = None, time.time()
    while time.time() - stable_since < 1.5 and time.time() < deadline + 10:
        now = {p.stem for p in cells.glob("*.json")}
        if now != done:
            done, stable_since = now, time.time()
        time.sleep(0.1)
    assert 3 <= len(done) < n_cells, "the kill must land mid-sweep"
    started_before = len(log.read_text().splitlines())
    res = run_sweep(load_grid(grid), out=tmp_path / "o", cache_dir=cache, client=client)
    assert (res.n_cells, res.n_cached, res.n_failed) == (n_cells, len(done), 0)
    rows = _rows(tmp_path / "o" / "results.csv")
    assert len(rows) == n_cells and all(r["status"] == "ok" for r in rows)
    assert sorted(float(r["x"]) for r in rows) == [float(i) for i in range(n_cells)]
    # the rerun started exactly the cells that had no record: none of the finished ones
    restarted = log.read_text().splitlines()[started_before:]
    xs_done = {float(row["x"]) for row in rows if row["cell"] in done}
    xs_restarted = {float(line.split()[1].split("=")[1]) for line in restarted}
    assert xs_done.isdisjoint(xs_restarted)
    assert len(restarted) == n_cells - len(done)


def test_gd_task_equals_torch_backend_full_batch_gd():
    """The numpy 'gd' task and the torch backend's full-batch GD ('train' task) take the same
    steps from the same initial state, so they agree to float64 rounding (1e-9 relative allows
    a different summation order over 100 steps)."""
    pytest.importorskip("gradflow.backend")
    gd = get_task("gd")
    tr = get_task("train")
    a = gd.fn(gd.prepare({"lr": 0.5, "steps": 100}))
    b = tr.fn(tr.prepare({"options": {"optimizer": "gd", "lr": 0.5, "epochs": 100}}))
    for key in ("final_loss", "max_invariant_drift", "top_cos_class", "top_cos_centre"):
        assert b[key] == pytest.approx(a[key], rel=1e-9, abs=1e-15), key
    assert b["status"] == "success"


def test_reserved_metric_names_are_prefixed_and_columns_fixed(tmp_path, client):
    """Metrics named cell/status/wall_s/error (or like a config key) keep their values under
    metric.<name>; the column order does not depend on which cell failed (here the first)."""
    spec = SweepSpec.from_dict({"task": "gf_fix_tasks:collide", "grid": {"x": [0, 1, 2]}})
    res = run_sweep(spec, out=tmp_path / "o", cache_dir=tmp_path / "c", client=client)
    header, rows = _csv(res.csv)
    assert header == ["cell", "status", "x", "v", "metric.error", "metric.wall_s",
                      "metric.cell", "metric.status", "metric.x", "wall_s", "error"]
    assert [r["status"] for r in rows] == ["error", "ok", "ok"]
    assert "first cell fails" in rows[0]["error"] and rows[1]["error"] == ""
    assert rows[1]["metric.error"] == "0.5" and rows[1]["metric.wall_s"] == "99.0"
    assert rows[1]["x"] == "1" and rows[1]["metric.x"] == "-1"
    assert float(rows[1]["wall_s"]) < 99.0


def test_editing_a_custom_task_recomputes_its_cells(tmp_path, task_dir, client):
    grid = {"task": "gf_fix_edit:run", "grid": {"x": [1, 2]}}
    kw = {"out": tmp_path / "o", "cache_dir": tmp_path / "c", "client": client}
    res = run_sweep(SweepSpec.from_dict(grid), **kw)
    assert [r["v"] for r in _csv(res.csv)[1]] == ["1", "2"]
    assert run_sweep(SweepSpec.from_dict(grid), **kw).n_cached == 2
    # a different length as well as content: the .pyc check is on (mtime, size)
    (task_dir / "gf_fix_edit.py").write_text(EDITABLE.format(offset=100))
    assert get_task("gf_fix_edit:run").fn({"x": 1}) == {"v": 101}  # reloaded here too
    res = run_sweep(SweepSpec.from_dict(grid), **kw)
    assert (res.n_cached, res.n_run) == (0, 2)
    # the workers (which had imported the old module) ran the new code too
    assert [r["v"] for r in _csv(res.csv)[1]] == ["101", "102"]


# Last: it kills a worker of the shared cluster (its nanny restarts it).
def test_a_cell_that_kills_its_worker_is_an_error_row(tmp_path, client):
    spec = SweepSpec.from_dict({"task": "gf_fix_tasks:crash", "grid": {"x": [0, 1, 2]}})
    res = run_sweep(spec, out=tmp_path / "o", cache_dir=tmp_path / "c", client=client)
    _, rows = _csv(res.csv)
    assert len(rows) == 3 and rows[1]["status"] == "error"
    assert "KilledWorker" in rows[1]["error"] and "worker process died" in rows[1]["error"]
    # a cell that shared the dying worker at that moment (under load) may die with it;
    # any other outcome than ok or that error would be a real failure
    for r in (rows[0], rows[2]):
        assert r["status"] == "ok" or "KilledWorker" in r["error"]
    assert res.n_failed == 1 and res.failures[0]["status"] == "error"
