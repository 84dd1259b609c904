"""Parameter grids for sweeps: the YAML schema and its expansion into cells.

Schema (see docs/cli.md)::

    task: gd                  # a registered cell runner, or "package.module:function"
    name: p-vs-alpha          # optional; default: the file name
    base:                     # the config shared by every cell (merged over the task defaults)
      data: {K: 4, K1: 2}
    grid:                     # axes, cartesian product; dotted keys or nested mappings
      model.p: [1.0, 3.0]
      data.alpha: [0.05, 0.1]
    zip:                      # optional: axes varied together (equal lengths)
      data.K: [4, 8]
      data.K1: [2, 4]

Cells = product(grid axes) x rows(zip), in file order; each cell's config is
``base`` with that cell's values set at the dotted keys.
"""
from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..studies.config import deep_merge, load_yaml, parse_override, set_dotted

TOP_KEYS = ("task", "name", "base", "grid", "zip")


def _flatten_axes(section: str, node: Any, prefix: str = "",
                  axes: dict[str, list] | None = None) -> dict[str, list]:
    if not isinstance(node, Mapping):
        raise ValueError(f"`{section}` must be a mapping of dotted keys to lists of values, "
                         f"got {node!r}")
    axes = {} if axes is None else axes
    for k, v in node.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            _flatten_axes(section, v, prefix=f"{key}.", axes=axes)
        elif isinstance(v, (list, tuple)):
            if not v:
                raise ValueError(f"axis `{section}.{key}` must be a non-empty list of values")
            if key in axes:  # e.g. `a.b: [..]` and `a: {b: [..]}`: one would silently win
                raise ValueError(f"axis `{section}.{key}` is given twice (as a dotted key and "
                                 "as a nested mapping); give it once")
            if section == "grid":  # zip rows are checked as rows (SweepSpec.from_dict)
                _no_repeats(f"axis `{section}.{key}`", "value", v)
            axes[key] = list(v)
        else:
            raise ValueError(f"axis `{section}.{key}` must be a list of values, got {v!r} "
                             f"(write [{v!r}] for a single value, or put it in `base`)")
    return axes


def _no_repeats(what: str, item: str, values) -> None:
    seen = []  # a list, not a set: values may be unhashable (lists, mappings)
    for x in values:
        if x in seen:
            raise ValueError(f"{what} repeats the {item} {x!r} (the cell would run twice)")
        seen.append(x)


@dataclass(frozen=True)
class SweepSpec:
    """A parsed, checked grid file (see the module docstring)."""

    task: str
    base: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list] = field(default_factory=dict)
    zip: dict[str, list] = field(default_factory=dict)
    name: str = "sweep"

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], name: str = "sweep") -> SweepSpec:
        unknown = sorted(set(doc) - set(TOP_KEYS))
        if unknown:
            raise ValueError(f"unknown grid key(s) {unknown}; allowed: {list(TOP_KEYS)}")
        if "task" not in doc:
            raise ValueError("grid file needs a `task` key naming the cell runner (e.g. task: gd)")
        task = doc["task"]
        if not isinstance(task, str) or not task:
            raise ValueError(f"`task` must be a task name, got {task!r}")
        base = doc.get("base") or {}
        if not isinstance(base, Mapping):
            raise ValueError(f"`base` must be a mapping, got {base!r}")
        grid = _flatten_axes("grid", doc.get("grid") or {})
        zipped = _flatten_axes("zip", doc.get("zip") or {})
        if not grid and not zipped:
            raise ValueError("the grid is empty: give at least one axis under `grid` (or `zip`)")
        both = sorted(set(grid) & set(zipped))
        if both:
            raise ValueError(f"axis key(s) {both} appear in both `grid` and `zip`")
        keys = list(grid) + list(zipped)
        nested = sorted((a, b) for a in keys for b in keys if b.startswith(a + "."))
        if nested:  # one axis would overwrite part of the other's values, cell by cell
            a, b = nested[0]
            raise ValueError(f"axis `{b}` lies inside axis `{a}`; vary it inside `{a}`'s "
                             f"values or move `{a}`'s other keys to `base`")
        lengths = {k: len(v) for k, v in zipped.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"`zip` axes must have equal lengths, got {lengths}")
        _no_repeats("`zip`", "row", [dict(zip(zipped, row)) for row in zip(*zipped.values())])
        name = doc.get("name", name)
        if not isinstance(name, str) or not name.strip() or "/" in name:
            raise ValueError(f"`name` must be a non-empty name without '/', got {name!r}")
        return cls(task=task, base=dict(base), grid=grid, zip=zipped, name=name)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "name": self.name, "base": self.base,
                "grid": self.grid, "zip": self.zip}

    @property
    def axes(self) -> list[str]:
        return list(self.grid) + list(self.zip)

    def cells(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(axis values, config) for every cell, in a deterministic order."""
        zip_rows = [dict(zip(self.zip, vals)) for vals in zip(*self.zip.values())] or [{}]
        out = []
        for combo in itertools.product(*self.grid.values()):
            for zrow in zip_rows:
                values = {**dict(zip(self.grid, combo)), **zrow}
                cfg = deep_merge(self.base, {})
                for key, v in values.items():  # a copy: cells must not share mutable values
                    set_dotted(cfg, key, copy.deepcopy(v))
                out.append((values, cfg))
        return out


def load_grid(path: str | Path, overrides: Iterable[str] = ()) -> SweepSpec:
    """Read a grid YAML file, apply ``key=value`` overrides to it, and check it."""
    doc = load_yaml(path, what="grid")
    for text in overrides:
        _override(doc, *parse_override(text))
    return SweepSpec.from_dict(doc, name=Path(path).stem)


def _override(doc: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` in a grid document; ``grid.a.b=..`` replaces the axis ``a.b`` however the
    file spells it (``a.b: [..]`` or ``a: {b: [..]}``), so an override never adds a twin."""
    section, _, axis = key.partition(".")
    if section in ("grid", "zip") and axis and isinstance(doc.get(section), Mapping):
        flat = _flatten_axes(section, doc[section])
        if axis in flat:  # the flat form is valid schema and keeps the axis order
            doc[section] = {k: (value if k == axis else v) for k, v in flat.items()}
            return
    set_dotted(doc, key, value)


def expand_grid(spec: SweepSpec) -> list[dict[str, Any]]:
    """The configs of all cells (see ``SweepSpec.cells``)."""
    return [cfg for _, cfg in spec.cells()]
