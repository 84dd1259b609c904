"""Registry of sweep cell runners: name -> function(config dict) -> metrics dict.

A task declares ``defaults`` (its config schema: every cell config is merged
over them and checked, so a typo fails before any cell runs) and may declare
``validate(config)``, which raises ValueError for a bad cell before the
cluster starts. Metrics are a flat mapping of names to numbers, strings or
bools. A task can also be named "package.module:function" (no defaults check).

A task's ``code`` (a hash of the source file defining its function) is part of
every cell's cache key, so editing a task never reuses results of the old code;
a module that changed on disk since it was imported is reloaded first (so a
long-lived worker runs the code the key was computed from).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..studies.config import FREE, check_against, check_str_keys, deep_merge

_TASKS: dict[str, Task] = {}
_LOADED: dict[str, str] = {}  # module name -> hash of its source file when imported


def _file_hash(path: str | None) -> str:
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()[:16]
    except (TypeError, OSError):
        return ""


def source_fingerprint(fn: Callable) -> str:
    """sha256 of the file defining ``fn`` (the whole file, so helpers it calls count too);
    of its own source if that file cannot be read; '' if neither can be found."""
    try:
        code = _file_hash(inspect.getsourcefile(fn))
        return code or hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:16]
    except (TypeError, OSError):  # a builtin, or code typed at a prompt
        return ""


def _import_current(module: str):
    """Import ``module``; reload it if its file changed since this process imported it."""
    mod = importlib.import_module(module)
    now = _file_hash(getattr(mod, "__file__", None))
    if _LOADED.setdefault(module, now) != now:
        mod = importlib.reload(mod)
        _LOADED[module] = now
    return mod


@dataclass(frozen=True)
class Task:
    """A cell runner. ``defaults`` of FREE (None) means the config is passed unchecked."""

    name: str
    fn: Callable[[dict[str, Any]], Mapping[str, Any]]
    defaults: Mapping[str, Any] | None = FREE
    description: str = ""
    validate: Callable[[dict[str, Any]], None] | None = None

    @property
    def code(self) -> str:
        """Fingerprint of the task function's source file: part of each cell's cache key."""
        return source_fingerprint(self.fn)

    def prepare(self, cell: Mapping[str, Any]) -> dict[str, Any]:
        """The full cell config: defaults <- cell, checked against the defaults."""
        if self.defaults is FREE:
            cfg = deep_merge({}, check_str_keys("config", cell))
        else:
            cfg = check_against(self.defaults, deep_merge(self.defaults, cell))
        if self.validate is not None:
            self.validate(cfg)
        return cfg


def register_task(name: str, *, defaults: Mapping[str, Any] | None = FREE,
                  description: str = "", validate: Callable[[dict], None] | None = None):
    """Decorator: ``@register_task('gd', defaults={...})`` over ``def run(cfg) -> metrics``."""
    def wrap(fn):
        _TASKS[name] = Task(name, fn, defaults, description or (fn.__doc__ or "").strip(),
                            validate)
        return fn
    return wrap


def available_tasks() -> list[str]:
    return sorted(_TASKS)


def get_task(ref: str) -> Task:
    """A registered task by name, or any importable function as 'package.module:function'."""
    if ref in _TASKS:
        return _TASKS[ref]
    if ":" in ref:
        module, _, attr = ref.partition(":")
        try:
            fn = getattr(_import_current(module), attr)
        except (ImportError, AttributeError, SyntaxError) as err:
            raise ValueError(f"`task` {ref!r} cannot be imported: {err}") from None
        if not callable(fn):
            raise ValueError(f"`task` {ref!r} is not callable")
        return Task(ref, fn)
    raise ValueError(f"unknown `task` {ref!r}; registered tasks: {', '.join(available_tasks())} "
                     "(or give 'package.module:function')")


def check_metrics(metrics: Any) -> dict[str, Any]:
    """Metrics must be a flat mapping of str -> number | str | bool | None."""
    if not isinstance(metrics, Mapping):
        raise TypeError(f"a task must return a mapping of metrics, got {type(metrics).__name__}")
    out = {}
    for k, v in metrics.items():
        if hasattr(v, "item") and callable(v.item):
            v = v.item()
        if v is not None and not isinstance(v, (int, float, str, bool)):
            raise TypeError(f"metric {k!r} must be a scalar, got {type(v).__name__}")
        out[str(k)] = v
    return out


# --- built-in tasks ---------------------------------------------------------------------------

ECHO_DEFAULTS = {"x": 0.0, "y": 0.0, "sleep": 0.0, "log": "", "fail": False}


@register_task("echo", defaults=ECHO_DEFAULTS)
def echo(cfg: dict[str, Any]) -> dict[str, Any]:
    """Cluster smoke test: value = x^2 + y after sleeping ``sleep`` s; appends a line to ``log``.

    Use it to check a cluster (and the cache/resume logic) without real work.
    """
    if cfg["log"]:
        with open(cfg["log"], "a") as fh:  # one short O_APPEND write: safe across processes
            fh.write(f"start x={cfg['x']!r} y={cfg['y']!r} pid={os.getpid()}\n")
    time.sleep(cfg["sleep"])
    if cfg["fail"]:
        raise RuntimeError("echo cell asked to fail (fail=true)")
    return {"value": cfg["x"] ** 2 + cfg["y"], "pid": os.getpid()}

