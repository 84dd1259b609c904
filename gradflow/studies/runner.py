"""Running a study: config resolution, caching, outputs, docs/results.md.

``run_study`` does, in order:
1. effective config = defaults <- preset <- YAML file <- ``--set`` overrides <- seed/device;
2. key = hash(effective config, study name, gradflow version, study source file);
3. cache hit: reuse the finished run (instant); miss: run the study in a staging
   folder, write ``summary.json``, ``arrays.npz``, ``effective_config.yaml`` and the
   figures, then move the folder into the cache atomically;
4. copy the run into the output folder and update the study's section of
   docs/results.md.
"""
from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io import (
    atomic_write_text,
    check_dir_path,
    check_file_path,
    load_json,
    load_npz,
    save_json,
    save_npz,
)
from .cache import RunCache, publish, run_key
from .config import (
    apply_overrides,
    check_against,
    check_device,
    check_seed,
    deep_merge,
    dump_yaml,
    load_yaml,
)
from .registry import Study, get_study
from .results_md import default_results_md, render_section, update_results_md
from .summary import validate_checks, validate_summary

SUMMARY = "summary.json"
ARRAYS = "arrays.npz"
EFFECTIVE = "effective_config.yaml"
FIGURES = "figures"


@dataclass
class StudyContext:
    """What a study's ``run`` gets besides its config.

    out_dir: a private folder for any extra files (the runner writes summary,
    arrays and figures itself); seed/device/preset: the resolved common options;
    progress: whether to show progress bars (off in tests).
    """

    out_dir: Path
    preset: str
    seed: int
    device: str
    progress: bool = False

    def rng(self, *stream: int) -> np.random.Generator:
        """Independent, reproducible generator for the sub-stream ``stream`` of ``seed``."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, *stream]))

    def log(self, message: str) -> None:
        if self.progress:
            print(message, file=sys.stderr, flush=True)


@dataclass
class StudyOutput:
    """What a study's ``run`` returns: checks (Check or dict), raw arrays, scalar metrics."""

    checks: list
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class StudyRun:
    """A finished study: its summary, output folder, figure paths, and whether it was cached."""

    summary: dict[str, Any]
    out_dir: Path
    figures: list[Path]
    cached: bool
    key: str


def resolve_config(study: Study, preset: str | None = None,
                   config_file: str | Path | None = None,
                   overrides: Iterable[str] = (), seed: int | None = None,
                   device: str | None = None) -> dict[str, Any]:
    """The effective config: {'preset', 'seed', 'device', **study parameters}, fully checked.

    ``preset`` None: the config file's ``preset`` if it has one, else 'quick'."""
    schema = {"preset": "quick", "seed": 0, "device": "cpu", **study.defaults}
    layer: dict[str, Any] = {}
    if config_file is not None:
        layer = check_against(schema, load_yaml(config_file))
    layer = check_against(schema, apply_overrides(layer, overrides))
    chosen = preset if preset is not None else layer.get("preset", "quick")
    if chosen not in study.presets:
        raise ValueError(f"`preset` must be one of {', '.join(map(repr, study.presets))} for "
                         f"study {study.name!r}; got {chosen!r}")
    cfg = deep_merge({"preset": chosen, "seed": 0, "device": "cpu", **study.defaults},
                     study.presets[chosen])
    cfg = deep_merge(cfg, {k: v for k, v in layer.items() if k != "preset"})
    if seed is not None:
        cfg["seed"] = seed
    if device is not None:
        cfg["device"] = device
    cfg["seed"] = check_seed(cfg["seed"])
    cfg["device"] = check_device(cfg["device"])
    cfg = check_against(schema, cfg)
    if study.validate is not None:
        study.validate({k: v for k, v in cfg.items() if k not in ("preset", "seed", "device")})
    return cfg


def default_command(name: str, cfg: Mapping[str, Any], config_file=None,
                    overrides: Iterable[str] = ()) -> str:
    parts = ["gradflow", "reproduce", name, "--preset", str(cfg["preset"]),
             "--seed", str(cfg["seed"]), "--device", str(cfg["device"])]
    if config_file is not None:
        parts += ["--config", str(config_file)]
    for o in overrides:
        parts += ["--set", o]
    return shlex.join(parts)


def run_study(name: str, preset: str | None = None, *, config_file: str | Path | None = None,
              overrides: Iterable[str] = (), seed: int | None = None, device: str | None = None,
              out: str | Path | None = None, cache_dir: str | Path | None = None,
              force: bool = False, results_md: str | Path | None | bool = True,
              command: str | None = None, progress: bool = False) -> StudyRun:
    """Run (or fetch from the cache) the study ``name`` and publish its outputs.

    ``preset`` None: the config file's, else 'quick'. ``out`` defaults to
    runs/<name>-<preset>. ``results_md``: True for the checkout's docs/results.md, a path,
    or False/None to skip. ``force`` reruns even on a cache hit (the new result replaces
    the cached one).
    """
    study = get_study(name)
    overrides = list(overrides)
    cfg = resolve_config(study, preset, config_file, overrides, seed, device)
    command = command or default_command(name, cfg, config_file, overrides)
    data = study.data_key(cfg) if study.data_key is not None else None
    key = run_key(cfg, "study", name, code=study.fingerprint, data=data)
    cache = RunCache(cache_dir)
    out_dir = Path(out) if out is not None else Path("runs") / f"{name}-{cfg['preset']}"
    md = default_results_md() if results_md is True else (results_md or None)
    # Bad output paths fail now, not after a long computation.
    check_dir_path(cache.root, "cache_dir")
    check_dir_path(out_dir, "out")
    if md is not None:
        check_file_path(md, "results_md")
    entry = cache.entry("study", name, key)
    cached = cache.is_complete(entry) and not force
    if not cached:
        with cache.staging("study", name, key) as tmp:
            _execute(study, cfg, key, tmp, command, progress)
    publish(entry, out_dir)
    summary = load_json(out_dir / SUMMARY)
    figures = [out_dir / f for f in summary["figures"]]
    if md is not None:
        update_results_md(md, name, cfg["preset"], render_section(summary, command, figures))
    return StudyRun(summary=summary, out_dir=out_dir, figures=figures, cached=cached, key=key)


def _execute(study: Study, cfg: dict, key: str, folder: Path, command: str,
             progress: bool) -> None:
    params = {k: v for k, v in cfg.items() if k not in ("preset", "seed", "device")}
    ctx = StudyContext(out_dir=folder, preset=cfg["preset"], seed=cfg["seed"],
                       device=cfg["device"], progress=progress)
    t0 = time.perf_counter()
    result = study.run(params, ctx)
    wall = time.perf_counter() - t0
    if not isinstance(result, StudyOutput):
        raise TypeError(f"study {study.name!r}: run() must return a StudyOutput, "
                        f"got {type(result).__name__}")
    arrays = {k: np.asarray(v) for k, v in result.arrays.items()}
    save_npz(folder / ARRAYS, **arrays)
    atomic_write_text(folder / EFFECTIVE, dump_yaml(cfg))
    from .. import __version__

    summary = {
        "study": study.name, "preset": cfg["preset"], "command": command, "config_hash": key,
        "gradflow_version": __version__, "code_fingerprint": study.fingerprint,
        "effective_config": cfg,
        "checks": validate_checks(result.checks), "metrics": dict(result.metrics),
        "arrays": ARRAYS, "figures": [], "wall_time_s": wall,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"), "device": cfg["device"],
    }
    summary["figures"] = _plot(study, arrays, summary, folder)
    validate_summary(summary)
    save_json(folder / SUMMARY, summary)


def _plot(study: Study, arrays: dict, summary: dict, folder: Path) -> list[str]:
    if study.plot is None:
        return []
    import matplotlib

    matplotlib.use("Agg")  # files only; never open windows
    fig_dir = folder / FIGURES
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths = study.plot(arrays, summary, fig_dir) or []
    return [str(Path(p).resolve().relative_to(folder.resolve())) for p in paths]


def replot(result_dir: str | Path) -> list[Path]:
    """Re-make a study's figures from its saved summary.json and arrays.npz only."""
    result_dir = Path(result_dir)
    if not (result_dir / SUMMARY).is_file():
        raise ValueError(f"`{result_dir}` is not a result folder (no {SUMMARY} inside)")
    try:
        summary = load_json(result_dir / SUMMARY)
    except ValueError as err:
        raise ValueError(f"cannot read `{result_dir / SUMMARY}`: {err}") from None
    if not isinstance(summary, dict) or "study" not in summary:
        raise ValueError(f"`{result_dir / SUMMARY}` is not a study summary (no `study` key)")
    study = get_study(summary["study"])
    if study.plot is None:
        raise ValueError(f"study {study.name!r} defines no plot function")
    # Every study run saves arrays.npz: a missing one means a damaged folder, not "no arrays".
    if not (result_dir / ARRAYS).is_file():
        raise ValueError(f"`{result_dir / ARRAYS}` is missing: study {study.name!r} redraws its "
                         "figures from its saved arrays")
    arrays = load_npz(result_dir / ARRAYS)
    try:
        figures = _plot(study, arrays, summary, result_dir)
    except KeyError as err:
        missing = err.args[0] if err.args else None
        if not isinstance(missing, str) or missing in arrays:
            raise  # not a missing array: a bug in the plot function
        raise ValueError(f"study {study.name!r} cannot redraw `{result_dir}`: its plot needs the "
                         f"array {missing!r}, which `{result_dir / ARRAYS}` lacks (saved arrays: "
                         f"{', '.join(sorted(arrays)) or 'none'})") from None
    summary["figures"] = figures
    save_json(result_dir / SUMMARY, summary)
    return [result_dir / f for f in figures]


def cached_run(kind: str, name: str, cfg: Mapping[str, Any],
               compute: Callable[[Path], None], *, out: str | Path,
               cache_dir: str | Path | None = None, force: bool = False
               ) -> tuple[Path, bool, str]:
    """Generic cached run for the simulate/train/radius commands.

    ``compute(folder)`` writes its outputs into ``folder``; the effective config
    is saved beside them. Returns (output folder, whether cached, key).
    """
    key = run_key(cfg, kind, name)
    cache = RunCache(cache_dir)
    check_dir_path(cache.root, "cache_dir")  # before computing: a bad path fails at once
    check_dir_path(out, "out")
    entry = cache.entry(kind, name, key)
    cached = cache.is_complete(entry) and not force
    if not cached:
        with cache.staging(kind, name, key) as tmp:
            atomic_write_text(tmp / EFFECTIVE, dump_yaml(cfg))
            compute(tmp)
    out_dir = Path(out)
    publish(entry, out_dir)
    return out_dir, cached, key


__all__ = ["StudyContext", "StudyOutput", "StudyRun", "cached_run", "replot", "resolve_config",
           "run_study"]
