"""Shared writer for benchmark results.

Each benchmark calls ``write_report``: it saves benchmarks/results/<name>.json
(config, metrics, machine, targets) and replaces the benchmark's own section of
docs/benchmarks.md (between HTML comment markers), so benchmarks never clobber
each other's text.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gradflow.io import atomic_write_text, replace_marked_section, save_json  # noqa: E402


def machine_info() -> dict:
    import numpy as np
    import torch

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def target(metric: str, target_desc: str, measured, met: bool | None) -> dict:
    """One row of the ``targets`` list."""
    return {"metric": metric, "target": target_desc, "measured": measured, "met": met}


def write_report(name: str, command: str, config: dict, metrics: dict, targets: list[dict],
                 markdown: str) -> Path:
    """Write benchmarks/results/<name>.json and the section ``name`` of docs/benchmarks.md.

    ``markdown`` is the body of the section (tables); the heading, command line,
    machine line and target table are added here.
    """
    machine = machine_info()
    save_json(ROOT / "benchmarks" / "results" / f"{name}.json",
              {"name": name, "command": command, "config": config, "metrics": metrics,
               "machine": machine, "targets": targets})
    rows = "\n".join(
        f"| {t['metric']} | {t['target']} | {_fmt(t['measured'])} | "
        f"{'yes' if t['met'] else ('n/a' if t['met'] is None else '**no**')} |" for t in targets)
    section = (
        f"<!-- bench:{name} -->\n## {name}\n\n"
        f"Command: `{command}`  \n"
        f"Machine: {machine['processor']}, {machine['cpu_count']} cores, torch {machine['torch']}"
        f"{', GPU ' + machine['gpu'] if 'gpu' in machine else ', no GPU'}; run {machine['date']}\n\n"
        f"| target metric | target | measured | met |\n|---|---|---|---|\n{rows}\n\n"
        f"{markdown.strip()}\n<!-- /bench:{name} -->"
    )
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text() if doc.exists() else (
        "# Benchmarks\n\nEach section is written by its script in `benchmarks/`; rerun the command "
        "shown to refresh it. Ratios are measured against a baseline in the same run, because "
        "absolute times on shared machines are noisy.\n")
    text = replace_marked_section(text, f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->",
                                  section, "<!-- bench:", str(doc))
    atomic_write_text(doc, text)
    return doc


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)
