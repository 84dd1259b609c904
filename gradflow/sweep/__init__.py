"""Parameter sweeps on Dask distributed, cached and resumable per cell.

``run_sweep(load_grid('grid.yaml'))`` expands the grid, skips cells already in
the cache, runs the rest on a Dask cluster and writes a tidy CSV (one row per
cell: config columns, then metric columns). Cell runners live in a registry
(``register_task``); built-ins: 'gd' (full-batch gradient descent, foundation
only), 'echo' (cluster smoke test), 'simulate' (ODE engine), 'train' (torch).
"""
from __future__ import annotations

from . import gd as _gd  # noqa: F401  (registers the 'gd' task)
from .engine import SweepResult, cell_key, run_cell, run_sweep
from .grid import SweepSpec, expand_grid, load_grid
from .tasks import Task, available_tasks, get_task, register_task

__all__ = ["SweepResult", "SweepSpec", "Task", "available_tasks", "cell_key", "expand_grid",
           "get_task", "load_grid", "register_task", "run_cell", "run_sweep"]
