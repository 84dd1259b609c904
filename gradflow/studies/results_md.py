"""docs/results.md: one marker-delimited section per (study, preset).

Each study run replaces only the text between its own markers::

    <!-- results:sec51:quick -->
    ...
    <!-- /results:sec51:quick -->

so studies (and presets) never clobber each other. The read-modify-write is
done under an exclusive file lock, so two studies finishing together are safe.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..io import atomic_write_text, replace_marked_section
from .summary import count_verdicts, verdict_table

HEADER = (
    "# Results\n\n"
    "Each section below is written by `gradflow reproduce <study>`; rerun the command shown to "
    "refresh it. Verdicts come from the study's `summary.json` `checks` list "
    "(prediction / theory / paper / measured / agrees?).\n"
)


def default_results_md() -> Path | None:
    """The repository's docs/results.md when gradflow runs from a source checkout, else None."""
    root = Path(__file__).resolve().parents[2]
    return root / "docs" / "results.md" if (root / "docs").is_dir() else None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock = path.with_name(f".{path.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        try:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        except ImportError:  # not POSIX: fall back to the atomic rename alone
            pass
        yield


def markers(study: str, preset: str) -> tuple[str, str]:
    return f"<!-- results:{study}:{preset} -->", f"<!-- /results:{study}:{preset} -->"


def render_section(summary: Mapping[str, Any], command: str,
                   figures: Sequence[str | Path] = ()) -> str:
    """Markdown body for one study run: command, provenance, verdict table, figures."""
    counts = count_verdicts(summary["checks"])
    lines = [
        f"## {summary['study']} ({summary['preset']} preset)",
        "",
        f"Command: `{command}`  ",
        f"Config hash `{summary['config_hash']}`, gradflow {summary['gradflow_version']}, "
        f"device {summary['device']}, wall time {summary['wall_time_s']:.1f} s, "
        f"run {summary['created']}.",
        "",
        f"Verdicts: {counts['agree']} agree, {counts['disagree']} disagree, "
        f"{counts['no_verdict']} without verdict.",
        "",
        verdict_table(summary["checks"], markdown=True) if summary["checks"] else "(no checks)",
    ]
    if figures:
        lines += ["", "Figures: " + ", ".join(f"`{f}`" for f in figures)]
    return "\n".join(lines)


def update_results_md(path: str | Path, study: str, preset: str, body: str) -> Path:
    """Insert or replace the (study, preset) section of the markdown file at ``path``."""
    path = Path(path)
    start, end = markers(study, preset)
    section = f"{start}\n{body.strip()}\n{end}"
    with _locked(path):
        text = path.read_text(encoding="utf-8") if path.exists() else HEADER
        text = replace_marked_section(text, start, end, section, "<!-- results:", str(path))
        atomic_write_text(path, text)
    return path
