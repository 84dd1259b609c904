"""Study framework: registry, runner, caching, summary schema and verdict tables.

A study is a script ``sims/<name>.py`` that registers a :class:`Study`; run it
with ``run_study(name, preset)`` or ``gradflow reproduce <name>``. See docs/cli.md.
"""
from __future__ import annotations

from .mnist import StudyMNIST, load_study_mnist, study_mnist_source
from .registry import Study, StudyUnavailable, available_studies, get_study, register_study
from .runner import StudyContext, StudyOutput, StudyRun, replot, resolve_config, run_study
from .summary import Check, make_check, validate_summary, verdict_table, within

__all__ = [
    "Check", "Study", "StudyMNIST", "load_study_mnist", "study_mnist_source", "StudyContext", "StudyOutput", "StudyRun", "StudyUnavailable",
    "available_studies", "get_study", "make_check", "register_study", "replot",
    "resolve_config", "run_study", "validate_summary", "verdict_table", "within",
]
