"""The summary schema shared by every study, and the verdict table printed from it.

``summary.json`` holds a ``checks`` list; each check is one prediction::

    {"claim": str, "theory": value, "paper": value, "measured": value,
     "agrees": true | false | null}

``theory`` is the closed-form or predicted value, ``paper`` the reference
paper's reported value (null when it has none), ``measured`` our number, and
``agrees`` the verdict (null when no verdict is possible, e.g. nothing measured).
Values are numbers, strings, lists of numbers, or null.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from numbers import Real
from typing import Any

CHECK_KEYS = ("claim", "theory", "paper", "measured", "agrees")
SUMMARY_KEYS = ("study", "preset", "command", "config_hash", "gradflow_version",
                "effective_config", "checks", "metrics", "arrays", "figures", "wall_time_s",
                "created", "device")


@dataclass(frozen=True)
class Check:
    """One tested prediction (see the module docstring for the meaning of each field)."""

    claim: str
    theory: Any = None
    measured: Any = None
    paper: Any = None
    agrees: bool | None = None

    def __post_init__(self):
        if not isinstance(self.claim, str) or not self.claim.strip():
            raise ValueError(f"`claim` must be a non-empty string, got {self.claim!r}")
        if self.agrees is not None and not isinstance(self.agrees, bool):
            raise ValueError(f"`agrees` must be true, false or null, got {self.agrees!r}")
        for name in ("theory", "measured", "paper"):
            object.__setattr__(self, name, _clean(name, getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: d[k] for k in CHECK_KEYS}


def _clean(name: str, v: Any) -> Any:
    """JSON-safe value: numpy scalars to Python, NaN/inf to None, tuples to lists."""
    if v is None or isinstance(v, (str, bool)):
        return v
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        return [_clean(name, x) for x in v]
    if isinstance(v, Real):
        v = float(v) if not isinstance(v, int) else v
        return v if (isinstance(v, int) or math.isfinite(v)) else None
    raise ValueError(f"`{name}` must be a number, string, list or None, got {type(v).__name__}")


def make_check(claim: str, *, theory: Any, measured: Any, paper: Any = None,
               agrees: bool | None = None, rtol: float | None = None,
               atol: float | None = None) -> Check:
    """Build a Check; with ``rtol``/``atol`` and no explicit ``agrees`` the verdict is
    |measured - theory| <= atol + rtol |theory|  (null if either value is missing or NaN)."""
    if agrees is None and (rtol is not None or atol is not None):
        agrees = within(measured, theory, rtol=rtol or 0.0, atol=atol or 0.0)
    return Check(claim=claim, theory=theory, measured=measured, paper=paper, agrees=agrees)


def within(measured: Any, theory: Any, *, rtol: float = 0.0, atol: float = 0.0) -> bool | None:
    """|measured - theory| <= atol + rtol |theory|; None when a value is missing or not finite."""
    try:
        m, t = float(measured), float(theory)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(m) and math.isfinite(t)):
        return None
    return bool(abs(m - t) <= atol + rtol * abs(t))


def validate_checks(checks: Iterable[Any]) -> list[dict[str, Any]]:
    """Normalise a list of Check objects or dicts; wrong keys or types raise ValueError."""
    out = []
    for i, c in enumerate(checks):
        if isinstance(c, Check):
            out.append(c.to_dict())
            continue
        if not isinstance(c, Mapping):
            raise ValueError(f"`checks[{i}]` must be a Check or a mapping, got {type(c).__name__}")
        missing = [k for k in CHECK_KEYS if k not in c]
        extra = [k for k in c if k not in CHECK_KEYS]
        if missing or extra:
            raise ValueError(f"`checks[{i}]` must have exactly the keys {list(CHECK_KEYS)}; "
                             f"missing {missing}, unknown {extra}")
        out.append(Check(**c).to_dict())
    return out


def validate_summary(summary: Mapping[str, Any]) -> None:
    """Raise ValueError unless ``summary`` has every documented key and valid checks."""
    missing = [k for k in SUMMARY_KEYS if k not in summary]
    if missing:
        raise ValueError(f"summary is missing the key(s) {missing}")
    validate_checks(summary["checks"])


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def _verdict(a: bool | None) -> str:
    return "n/a" if a is None else ("yes" if a else "NO")


def verdict_rows(checks: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: prediction / theory / [paper] / measured / agrees?"""
    with_paper = any(c.get("paper") is not None for c in checks)
    header = ["prediction", "theory"] + (["paper"] if with_paper else []) + ["measured", "agrees?"]
    rows = []
    for c in checks:
        row = [str(c["claim"]), _fmt(c["theory"])]
        if with_paper:
            row.append(_fmt(c["paper"]))
        rows += [row + [_fmt(c["measured"]), _verdict(c["agrees"])]]
    return header, rows


def verdict_table(checks: Sequence[Mapping[str, Any]], markdown: bool = False) -> str:
    """The verdict table as aligned plain text (terminal) or as a markdown table."""
    header, rows = verdict_rows(checks)
    if markdown:
        esc = [[cell.replace("|", "\\|") for cell in r] for r in [header] + rows]
        lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

    def line(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths))

    lines = [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def count_verdicts(checks: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many checks agree, disagree, or have no verdict."""
    agrees = [c["agrees"] for c in checks]
    return {"agree": sum(a is True for a in agrees), "disagree": sum(a is False for a in agrees),
            "no_verdict": sum(a is None for a in agrees)}
