"""The study registry and the ``sims/`` discovery convention.

A study is a script ``sims/<name>.py`` that imports only the public API and,
at import, calls ``register_study(Study(name=<name>, ...))``. Studies are found
by file name in the folders of ``$GRADFLOW_SIMS`` (``os.pathsep``-separated)
and then in the ``sims/`` folder of the source checkout; a script is imported
only when its study is requested, so a study whose dependencies are missing
never breaks the others.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import check_against

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
REQUIRED_PRESETS = ("quick", "paper")
_REGISTRY: dict[str, Study] = {}


class StudyUnavailable(ValueError):
    """A study exists but cannot be loaded (a module it needs is missing)."""


@dataclass(frozen=True)
class Study:
    """A registered study.

    run(config, ctx) -> StudyOutput       computes checks, metrics and raw arrays;
    plot(arrays, summary, fig_dir) -> [paths]  makes figures from saved results only;
    defaults: the config schema and default values (a nested dict);
    presets: name -> overrides of ``defaults``; 'quick' and 'paper' are required
             (a 'smoke' preset for the test suite is customary);
    validate(config): optional extra check, raises ValueError naming the key.
    data_key(config) -> JSON-able: optional identity of data the run reads from outside its
             config (e.g. ``study_mnist_source``: which MNIST files were found); part of the
             cache key, so new data files never return a result computed from the old ones.
    """

    name: str
    run: Callable[..., Any]
    defaults: Mapping[str, Any]
    presets: Mapping[str, Mapping[str, Any]]
    description: str = ""
    plot: Callable[..., Any] | None = None
    validate: Callable[[dict], None] | None = None
    data_key: Callable[[dict], Any] | None = None

    @property
    def fingerprint(self) -> str:
        """sha256 of the source file defining ``run`` ('' if unknown): part of the cache key,
        so editing a study script never reuses results of the old code."""
        try:
            path = inspect.getsourcefile(self.run)
            return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16] if path else ""
        except (TypeError, OSError):
            return ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(f"`name` must be a lower-case identifier, got {self.name!r}")
        if not callable(self.run):
            raise ValueError("`run` must be callable: run(config, ctx) -> StudyOutput")
        if self.plot is not None and not callable(self.plot):
            raise ValueError("`plot` must be callable or None")
        for p in REQUIRED_PRESETS:
            if p not in self.presets:
                raise ValueError(f"study {self.name!r}: `presets` must define {REQUIRED_PRESETS}")
        for overrides in self.presets.values():
            check_against(self.defaults, overrides)  # a preset may not invent keys


def register_study(study: Study) -> Study:
    """Add ``study`` to the registry (re-registering a name replaces it) and return it."""
    if not isinstance(study, Study):
        raise ValueError(f"`study` must be a Study, got {type(study).__name__}")
    _REGISTRY[study.name] = study
    return study


def sims_paths() -> list[Path]:
    """Folders searched for study scripts, in priority order."""
    paths = [Path(p) for p in os.environ.get("GRADFLOW_SIMS", "").split(os.pathsep) if p]
    checkout = Path(__file__).resolve().parents[2] / "sims"
    if checkout.is_dir():
        paths.append(checkout)
    return paths


def _script_for(name: str) -> Path | None:
    for folder in sims_paths():
        f = folder / f"{name}.py"
        if f.is_file():
            return f
    return None


def available_studies() -> list[str]:
    """Names of registered studies and of study scripts found on the search path."""
    names = set(_REGISTRY)
    for folder in sims_paths():
        names.update(f.stem for f in folder.glob("*.py")
                     if not f.stem.startswith("_") and _NAME_RE.match(f.stem))
    return sorted(names)


def get_study(name: str) -> Study:
    """Return the study ``name``, importing ``sims/<name>.py`` on first use."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"`study` must be a lower-case name, got {name!r}")
    if name in _REGISTRY:
        return _REGISTRY[name]
    script = _script_for(name)
    if script is None:
        known = ", ".join(available_studies()) or "(none)"
        raise ValueError(f"unknown study `{name}`; available studies: {known}")
    modname = f"gradflow_sims.{name}"
    spec = importlib.util.spec_from_file_location(modname, script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except ImportError as err:
        sys.modules.pop(modname, None)
        raise StudyUnavailable(f"study `{name}` is not available: {err}") from None
    if name not in _REGISTRY:
        raise ValueError(f"{script} did not call register_study(Study(name={name!r}, ...))")
    return _REGISTRY[name]
