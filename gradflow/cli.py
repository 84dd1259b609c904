"""The ``gradflow`` command line: simulate, train, radius, reproduce, sweep, plot, demo, list.

Every run takes an optional YAML config (``--config``) whose values are
overridden by ``--set key=value`` and the common flags (``--preset``,
``--seed``, ``--device``, ``--out``). Results are cached under the hash of the
effective config (saved as effective_config.yaml beside the results), so an
unchanged rerun is instant. A user error prints one line on stderr and exits
with status 2; ``--traceback`` (or GRADFLOW_TRACEBACK=1) shows the full trace.
See docs/cli.md.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_USER_ERROR = 2
DEMO_STUDIES = ("sec51", "radius_vs_k")


class UserError(Exception):
    """A problem with the user's input: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print the usage block; we want one line
        raise UserError(f"{self.prog}: {message}")


# --- argument types: raise ArgumentTypeError so argparse names the option ---------------------

def _int_at_least(lo: int):
    """argparse type: an integer >= lo (the message names the bound)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, got {value}")
        return value

    return parse


_seed = _int_at_least(0)
_positive_int = _int_at_least(1)


def _override(text: str) -> str:
    from .studies.config import parse_override

    try:
        parse_override(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


# --- parser -----------------------------------------------------------------------------------

def _common(run: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("common options")
    if run:
        g.add_argument("-c", "--config", metavar="YAML", help="YAML config file")
        g.add_argument("--set", dest="overrides", action="append", default=[], type=_override,
                       metavar="KEY=VALUE", help="override a config value (repeatable), "
                       "e.g. --set data.alpha=0.1")
        g.add_argument("--preset", help="quick (default) or paper")
        g.add_argument("--seed", type=_seed, help="random seed (integer >= 0)")
        g.add_argument("--device", help="cpu, cuda or cuda:N (default cpu)")
    g.add_argument("--out", metavar="DIR", help="output folder")
    g.add_argument("--cache-dir", metavar="DIR",
                   help="result cache (default $GRADFLOW_CACHE or ./.gradflow_cache)")
    g.add_argument("--force", action="store_true", help="recompute even if cached")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    g.add_argument("--traceback", action="store_true", help="show tracebacks of errors")
    return p


def _results_md_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results-md", metavar="FILE",
                   help="markdown file to update (default: the checkout's docs/results.md)")
    p.add_argument("--no-results-md", action="store_true", help="do not update results.md")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (built on demand, never at import)."""
    parser = _Parser(prog="gradflow", description="Gradient-flow dynamics of two-layer networks "
                     "and their adversarial robustness. See docs/cli.md.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"gradflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = _common(run=True)
    noconf = _common(run=False)

    p = sub.add_parser("simulate", parents=[run], help="integrate the gradient flow (ODE engine)",
                       description="Integrate dtheta/dt = -grad L with gradflow.dynamics.simulate."
                       " Writes solution.npz/json, params.npz, summary.json.")
    p.set_defaults(func=cmd_simulate)
    p = sub.add_parser("train", parents=[run], help="train with the PyTorch backend",
                       description="Train with gradflow.backend.train (gd/sgd/adam) from the same "
                       "initialisation. Writes params.npz, history.npz, summary.json.")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("radius", parents=[run], help="per-sample l2 radii of a saved model",
                       description="Measure per-sample l2 robustness radii (gradflow.attacks) of "
                       "a model folder written by `gradflow simulate` or `gradflow train`.")
    p.add_argument("model_dir", help="folder holding params.npz and effective_config.yaml")
    p.set_defaults(func=cmd_radius)
    p = sub.add_parser("reproduce", parents=[run], help="run a study (sims/<study>.py)",
                       description="Run a registered study and print its verdict table. "
                       "`gradflow list` shows the studies.")
    p.add_argument("study", help="study name, e.g. sec51")
    _results_md_opts(p)
    p.set_defaults(func=cmd_reproduce)
    p = sub.add_parser("sweep", parents=[noconf], help="run a parameter grid on Dask",
                       description="Expand a grid YAML file and run its cells on Dask distributed;"
                       " cached cells are skipped, results go to <out>/results.csv.")
    p.add_argument("grid", help="grid YAML file (task, base, grid, zip)")
    p.add_argument("--set", dest="overrides", action="append", default=[], type=_override,
                   metavar="KEY=VALUE", help="override a key of the grid file, e.g. base.steps=100")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="address of a running Dask scheduler, e.g. tcp://host:8786")
    p.add_argument("--workers", type=_positive_int, metavar="N",
                   help="LocalCluster worker processes (default: one per core)")
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser("plot", parents=[noconf], help="re-make figures from a result folder",
                       description="Re-draw the figures of a study or simulate run from its saved "
                       "results only.")
    p.add_argument("result_dir", help="folder with summary.json")
    p.set_defaults(func=cmd_plot)
    p = sub.add_parser("demo", parents=[noconf], help="quick presets of sec51 and radius_vs_k",
                       description="Run sec51 and radius_vs_k at the quick preset and print the "
                       "verdict tables and figure paths.")
    _results_md_opts(p)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("list", help="list studies and sweep tasks",
                       description="List the registered studies and sweep tasks.")
    p.set_defaults(func=cmd_list)
    return parser


# --- helpers ----------------------------------------------------------------------------------

def _progress(args) -> bool:
    return not args.quiet and sys.stderr.isatty()


def _results_md(args):
    if args.no_results_md:
        return False
    return args.results_md if args.results_md else True


def _print_run(kind: str, out: Path, cached: bool, key: str, summary: dict) -> None:
    state = "cached" if cached else "computed"
    print(f"{kind}: {state} (config hash {key}) -> {out}")
    for name, value in summary.get("metrics", {}).items():
        print(f"  {name:<22} {value:.6g}" if isinstance(value, float) else f"  {name:<22} {value}")


#: Config sections whose ``seed`` the run-level seed sets (simulate / train).
SEEDED_SECTIONS = ("data", "init", "train")


def _resolve_run(kind: str, defaults: dict, presets: dict, args) -> dict:
    from .studies import Study, resolve_config

    spec = Study(name=kind, run=lambda *a: None, defaults=defaults, presets=presets)
    cfg = resolve_config(spec, args.preset, args.config, args.overrides, args.seed, args.device)
    if kind in ("simulate", "train"):
        _apply_run_seed(cfg, args)
    return cfg


def _apply_run_seed(cfg: dict, args) -> None:
    """A given run seed (``--seed S``, or ``seed`` in the config file or --set) sets
    data.seed, init.seed and train.seed: only those seeds drive simulate/train, so otherwise
    --seed would change the cache key and nothing else. A section seed given explicitly
    (``--set data.seed=3`` or ``data: {seed: 3}`` in the file) is more specific and wins."""
    from .studies.config import apply_overrides, load_yaml

    explicit = apply_overrides(load_yaml(args.config) if args.config else {}, args.overrides)
    if args.seed is None and "seed" not in explicit:
        return
    for section in SEEDED_SECTIONS:
        given = explicit.get(section)
        if section in cfg and not (isinstance(given, dict) and "seed" in given):
            cfg[section]["seed"] = cfg["seed"]


def _check_output_paths(args) -> None:
    """Fail on an output path that cannot be a folder (or file) before any computing, with
    the option's name (the library would raise FileExistsError or NotADirectoryError late)."""
    from .io import check_dir_path, check_file_path

    if getattr(args, "out", None):
        check_dir_path(args.out, "--out")
    if getattr(args, "cache_dir", None):
        check_dir_path(args.cache_dir, "--cache-dir")
    if getattr(args, "results_md", None) and not args.no_results_md:
        check_file_path(args.results_md, "--results-md")


def _out(args, kind: str, key: str) -> Path:
    return Path(args.out) if args.out else Path("runs") / f"{kind}-{key[:10]}"


# --- commands ---------------------------------------------------------------------------------

def cmd_simulate(args, argv) -> int:
    from .io import load_json
    from .studies.cache import run_key
    from .studies.runner import cached_run
    from .studies.runs import SIMULATE_DEFAULTS, SIMULATE_PRESETS, compute_simulate

    cfg = _resolve_run("simulate", SIMULATE_DEFAULTS, SIMULATE_PRESETS, args)
    from .sweep.gd import build_configs

    build_configs(cfg)
    params = {k: v for k, v in cfg.items() if k not in ("preset", "seed", "device")}
    out = _out(args, "simulate", run_key(cfg, "simulate", "simulate"))
    out, cached, key = cached_run("simulate", "simulate", cfg,
                                  lambda d: compute_simulate(params, d, _progress(args)),
                                  out=out, cache_dir=args.cache_dir, force=args.force)
    _print_run("simulate", out, cached, key, load_json(out / "summary.json"))
    return 0


def cmd_train(args, argv) -> int:
    from .io import load_json
    from .studies.cache import run_key
    from .studies.runner import cached_run
    from .studies.runs import TRAIN_PRESETS, compute_train, train_defaults

    cfg = _resolve_run("train", train_defaults(), TRAIN_PRESETS, args)
    from .sweep.gd import build_configs

    build_configs(cfg)
    from .backend import TrainConfig

    TrainConfig.from_dict(dict(cfg["train"], betas=tuple(cfg["train"]["betas"])))  # check early
    params = {k: v for k, v in cfg.items() if k not in ("preset", "seed", "device")}
    out = _out(args, "train", run_key(cfg, "train", "train"))
    out, cached, key = cached_run(
        "train", "train", cfg, lambda d: compute_train(params, d, cfg["device"], _progress(args)),
        out=out, cache_dir=args.cache_dir, force=args.force)
    _print_run("train", out, cached, key, load_json(out / "summary.json"))
    return 0


def cmd_radius(args, argv) -> int:
    from .io import load_json
    from .studies.cache import run_key
    from .studies.runner import cached_run
    from .studies.runs import RADIUS_DEFAULTS, RADIUS_PRESETS, compute_radius, read_model_dir

    cfg = _resolve_run("radius", RADIUS_DEFAULTS, RADIUS_PRESETS, args)
    if cfg["n_points"] < 1:
        raise UserError(f"`n_points` must be >= 1, got {cfg['n_points']}")
    if cfg["split"] not in ("train", "test"):
        raise UserError(f"`split` must be 'train' or 'test', got {cfg['split']!r}")
    if cfg["lower"] not in ("auto", "lipschitz", "none"):
        raise UserError(f"`lower` must be 'auto', 'lipschitz' or 'none', got {cfg['lower']!r}")
    model_dir = Path(args.model_dir)
    read_model_dir(model_dir)
    digest = hashlib.sha256((model_dir / "params.npz").read_bytes()
                            + (model_dir / "effective_config.yaml").read_bytes()).hexdigest()
    keyed = {**cfg, "model_sha256": digest}
    out = _out(args, "radius", run_key(keyed, "radius", "radius"))
    out, cached, key = cached_run(
        "radius", "radius", keyed,
        lambda d: compute_radius(model_dir, cfg, d, cfg["seed"], cfg["device"]),
        out=out, cache_dir=args.cache_dir, force=args.force)
    _print_run("radius", out, cached, key, load_json(out / "summary.json"))
    return 0


def _report_study(run) -> None:
    from .studies import verdict_table

    s = run.summary
    state = "cached result" if run.cached else f"computed in {s['wall_time_s']:.1f} s"
    print(f"\n== {s['study']} ({s['preset']} preset): {state}; config hash {run.key}")
    print(verdict_table(s["checks"]) if s["checks"] else "(this study reports no checks)")
    print(f"results: {run.out_dir}")
    for f in run.figures:
        print(f"figure:  {f}")


def cmd_reproduce(args, argv) -> int:
    from .studies import run_study

    run = run_study(args.study, args.preset, config_file=args.config, overrides=args.overrides,
                    seed=args.seed, device=args.device, out=args.out, cache_dir=args.cache_dir,
                    force=args.force, results_md=_results_md(args),
                    command="gradflow " + shlex.join(argv), progress=_progress(args))
    _report_study(run)
    return 0


def cmd_demo(args, argv) -> int:
    from .studies import available_studies, run_study

    names = available_studies()
    missing = [n for n in DEMO_STUDIES if n not in names]
    if missing:  # e.g. gradflow installed without its checkout, whose sims/ holds them
        raise UserError(f"demo studies not found: {', '.join(missing)} (studies are the "
                        "scripts in the checkout's sims/ folder or in $GRADFLOW_SIMS; "
                        "`gradflow list` shows the registered ones)")
    base = Path(args.out) if args.out else Path("runs") / "demo"
    for name in DEMO_STUDIES:
        run = run_study(name, "quick", out=base / name, cache_dir=args.cache_dir,
                        force=args.force, results_md=_results_md(args),
                        command=f"gradflow reproduce {name} --preset quick",
                        progress=_progress(args))
        _report_study(run)
    return 0


def cmd_sweep(args, argv) -> int:
    from .sweep import load_grid, run_sweep

    spec = load_grid(args.grid, args.overrides)
    res = run_sweep(spec, out=args.out, cache_dir=args.cache_dir, scheduler=args.scheduler,
                    workers=args.workers, force=args.force, progress=_progress(args))
    print(f"sweep {spec.name!r} (task {spec.task}): {res.n_cells} cells, {res.n_cached} cached, "
          f"{res.n_run} run, {res.n_failed} failed -> {res.csv}")
    for f in res.failures[:10]:
        print(f"  failed cell {f['key']}: {f['error']}", file=sys.stderr)
    return 1 if res.failures else 0


def cmd_plot(args, argv) -> int:
    from .io import load_json
    from .studies import replot

    d = Path(args.result_dir)
    if not (d / "summary.json").is_file():
        raise UserError(f"`{d}` is not a result folder (no summary.json inside)")
    try:
        summary = load_json(d / "summary.json")
    except ValueError as err:
        raise UserError(f"cannot read `{d / 'summary.json'}`: {err}") from None
    if not isinstance(summary, dict):
        raise UserError(f"`{d / 'summary.json'}` must hold a JSON object (a run summary), "
                        f"got a {type(summary).__name__}")
    if "study" in summary:
        figures = replot(d)
    elif summary.get("kind") == "simulate":
        figures = _plot_simulation(d)
    else:
        raise UserError(f"`{d}` holds a {summary.get('kind', 'unknown')!r} run, which has no "
                        "figures to draw")
    for f in figures:
        print(f"figure: {f}")
    return 0


def _plot_simulation(d: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    from .config import DataConfig
    from .data import make_centres
    from .dynamics import Solution
    from .metrics import Trajectory
    from .plots.dynamics import plot_cosine_heatmap, plot_loss_and_norm
    from .studies.config import load_yaml

    cfg = load_yaml(d / "effective_config.yaml")
    data_cfg = DataConfig.from_dict(cfg["data"])
    labels = [1.0 if k < data_cfg.K1 else -1.0 for k in range(data_cfg.K)]
    traj = Trajectory.from_any(Solution.load(d / "solution"), centres=make_centres(data_cfg),
                               subclass_labels=labels)
    out = d / "figures"
    out.mkdir(exist_ok=True)
    plot_loss_and_norm(traj, out=out / "loss_and_norm.png")
    plot_cosine_heatmap(traj, out=out / "cosine_heatmap.png")
    return [out / "loss_and_norm.png", out / "cosine_heatmap.png"]


def cmd_list(args, argv) -> int:
    from .studies import available_studies
    from .sweep import available_tasks

    print("studies:     " + (", ".join(available_studies()) or "(none)"))
    print("sweep tasks: " + ", ".join(available_tasks()))
    return 0


# --- entry point ------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    show_tb = "--traceback" in argv or os.environ.get("GRADFLOW_TRACEBACK") == "1"
    from .studies import StudyUnavailable

    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            raise UserError("a command is required; run `gradflow --help` to list them")
        _check_output_paths(args)
        return args.func(args, argv)
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else 0
    # OS errors about a path the user chose (a file where a folder must be, no permission)
    # are user errors too; other OS errors (disk full, I/O) keep their traceback.
    except (UserError, StudyUnavailable, ValueError, FileNotFoundError, FileExistsError,
            NotADirectoryError, IsADirectoryError, PermissionError) as err:
        if show_tb:
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"gradflow: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("gradflow: interrupted (finished results are cached; rerun to resume)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
