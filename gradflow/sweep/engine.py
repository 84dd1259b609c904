"""Running a sweep on Dask distributed, cell by cell, resumably.

Every cell is keyed by ``config_hash(cell config, task, gradflow version and source)``
plus the task function's source (``Task.code``). A cell whose record is in the
cache is skipped; every other cell is submitted to the cluster, and its record is
written atomically (by the worker, and again by the client if the worker's disk
is not shared) the moment it finishes. So a sweep killed at any point (``kill -9``
included) loses only the cells that were running, and a rerun computes exactly
the missing cells. Failed cells are not cached: a rerun retries them.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import config_hash
from ..io import atomic_write_text, check_dir_path, save_json
from ..studies.cache import CellCache
from ..studies.config import dump_yaml
from .grid import SweepSpec
from .tasks import check_metrics, get_task

_SCHEDULER_RE = re.compile(r"^(tcp|tls|ucx|ws|wss|inproc)://\S+$")
#: results.csv columns written by the engine; a metric of the same name is renamed metric.<name>
RESERVED_COLUMNS = ("cell", "status", "wall_s", "error")


@dataclass
class SweepResult:
    """Outcome of ``run_sweep``: the CSV path and how many cells were cached, run, failed."""

    csv: Path
    out_dir: Path
    n_cells: int
    n_cached: int
    n_run: int
    failures: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return len(self.failures)


def cell_key(task: str, cfg: Mapping[str, Any], code: str = "") -> str:
    """Cache key of one cell: hash of its full config, the task, the gradflow version and
    source, and ``code`` (the fingerprint of the task function's source, ``Task.code``)."""
    extra = {"kind": "cell", "task": task}
    if code:
        extra["code"] = code
    return config_hash(dict(cfg), extra=extra)


def run_cell(task_ref: str, cfg: dict[str, Any], key: str, record_path: str | None) -> dict:
    """Run one cell (on a worker). Never raises: a failure comes back as status 'error'."""
    t0 = time.perf_counter()
    try:
        metrics = check_metrics(get_task(task_ref).fn(cfg))
    except Exception as err:  # noqa: BLE001 - a failed cell is a result, reported per cell
        return {"key": key, "status": "error", "config": cfg, "metrics": {},
                "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc(limit=5)}
    record = {"key": key, "status": "ok", "task": task_ref, "config": cfg, "metrics": metrics,
              "wall_s": time.perf_counter() - t0, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
              "host": os.uname().nodename, "pid": os.getpid()}
    if record_path is not None:
        try:
            save_json(record_path, record)
        except OSError:
            pass  # not a shared disk: the client writes the record when it arrives
    return record


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        elif isinstance(v, (list, tuple, Mapping)):
            out[f"{prefix}{k}"] = json.dumps(v)
        else:
            out[f"{prefix}{k}"] = v
    return out


def _open_client(scheduler: str | None, workers: int | None):
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:
        raise ValueError(f"sweeps need dask distributed, which is not available: {err}") from None
    if scheduler is not None:
        if not _SCHEDULER_RE.match(scheduler):
            raise ValueError(f"`scheduler` must be an address like tcp://host:8786, "
                             f"got {scheduler!r}")
        try:
            return Client(scheduler, timeout="10s"), None
        except (OSError, TimeoutError) as err:
            raise ValueError(f"cannot connect to the Dask scheduler at {scheduler}: {err}") from None
    n = workers if workers is not None else len(os.sched_getaffinity(0))
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR)
    return Client(cluster), cluster


def run_sweep(spec: SweepSpec, *, out: str | Path | None = None,
              cache_dir: str | Path | None = None, scheduler: str | None = None,
              workers: int | None = None, client=None, force: bool = False,
              progress: bool = False) -> SweepResult:
    """Run every cell of ``spec`` not already cached and write ``<out>/results.csv``.

    Cluster: ``client`` (an existing ``distributed.Client``, e.g. on a
    dask-jobqueue SLURMCluster), else ``scheduler`` (address of a running
    scheduler), else a LocalCluster of ``workers`` processes (default: one per
    available core) with one thread each. ``force`` recomputes cached cells.
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ValueError(f"`workers` must be an integer >= 1, got {workers!r}")
    task = get_task(spec.task)
    out_dir = Path(out) if out is not None else Path("runs") / f"sweep-{spec.name}"
    check_dir_path(out_dir, "out")  # fail before the cluster starts, not after the cells ran
    cache = CellCache(cache_dir)
    check_dir_path(cache.root, "cache_dir")
    code = task.code  # hashes the task's source file: once, not per cell
    cells = []
    for i, (values, raw) in enumerate(spec.cells()):
        try:
            cfg = task.prepare(raw)
        except ValueError as err:
            raise ValueError(f"grid cell {i} ({_describe(values)}): {err}") from None
        cells.append((values, cfg, cell_key(task.name, cfg, code)))
    unique = {key: cfg for _, cfg, key in cells}
    todo = {k: c for k, c in unique.items() if force or cache.get(task.name, k) is None}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "effective_grid.yaml", dump_yaml(spec.to_dict()))
    failures: dict[str, dict] = {}
    if todo:
        failures = _compute(task.name, todo, cache, client, scheduler, workers, progress)
    rows, config_cols, metric_cols = [], [], []
    for _values, cfg, key in cells:
        rec = failures.get(key) or cache.get(task.name, key) or {"status": "missing"}
        flat = _flatten(cfg)
        metrics = _metric_columns(rec.get("metrics", {}), flat)
        config_cols += [c for c in flat if c not in config_cols]
        metric_cols += [c for c in metrics if c not in metric_cols]
        rows.append({"cell": key, "status": rec["status"], **flat, **metrics,
                     "wall_s": rec.get("wall_s"), "error": rec.get("error", "")})
    # Fixed column order (not the first row's), so it does not depend on which cells failed.
    columns = ["cell", "status", *config_cols, *metric_cols, "wall_s", "error"]
    csv_path = out_dir / "results.csv"
    atomic_write_text(csv_path, _to_csv(rows, columns))
    return SweepResult(csv=csv_path, out_dir=out_dir, n_cells=len(unique),
                       n_cached=len(unique) - len(todo), n_run=len(todo),
                       failures=list(failures.values()), rows=rows)


def _metric_columns(metrics: Mapping[str, Any], config_cols: Mapping[str, Any]
                    ) -> dict[str, Any]:
    """Metrics keyed by CSV column: a name taken by the engine's columns or the config is
    prefixed ``metric.`` (repeatedly, if that is taken too), so no value is overwritten."""
    out: dict[str, Any] = {}
    for m, v in metrics.items():
        col = m
        while col in RESERVED_COLUMNS or col in config_cols or col in out or (
                col != m and col in metrics):
            col = f"metric.{col}"
        out[col] = v
    return out


def _compute(task_name: str, todo: dict[str, dict], cache: CellCache, client, scheduler,
             workers, progress: bool) -> dict[str, dict]:
    from distributed import as_completed
    from tqdm.auto import tqdm

    own_client, cluster = (client, None) if client is not None else _open_client(scheduler,
                                                                                   workers)
    failures = {}
    try:
        futures = {own_client.submit(run_cell, task_name, cfg, key,
                                     str(cache.path(task_name, key)), key=f"cell-{key}",
                                     pure=False): key
                   for key, cfg in todo.items()}
        with tqdm(total=len(futures), desc="cells", disable=not progress, unit="cell") as bar:
            for fut in as_completed(futures):
                key = futures[fut]
                try:
                    rec = fut.result()
                except Exception as err:  # noqa: BLE001 - e.g. KilledWorker: the cell crashed
                    # its worker (segfault, OOM, os._exit); the other cells still count
                    hint = ("the worker process died running this cell (a crash, out of "
                            "memory or an exit); " if type(err).__name__ == "KilledWorker" else "")
                    rec = {"key": key, "status": "error", "config": todo[key], "metrics": {},
                           "error": f"{type(err).__name__}: {hint}{err}"}
                if rec["status"] == "ok":
                    if cache.get(task_name, rec["key"]) is None:
                        cache.put(task_name, rec["key"], rec)
                else:
                    failures[rec["key"]] = rec
                bar.update(1)
    finally:
        if client is None:
            own_client.close()
            if cluster is not None:
                cluster.close()
    return failures


def _describe(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


def _to_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
