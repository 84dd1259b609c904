"""Run configurations: YAML files, ``--set key=value`` overrides, and schema checks.

A run's *effective* configuration is built in a fixed order, later layers
winning:  defaults  <-  preset  <-  YAML file  <-  ``--set`` overrides  <-  flags.
Every layer is checked against the defaults (the schema): an unknown key or a
value of the wrong type raises ``ValueError`` naming the dotted key in backticks.
"""
from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .._validate import check_int

_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?)$")

#: A schema value of FREE accepts any value (and any sub-keys) at that key.
FREE = None


class _Loader(yaml.SafeLoader):
    """SafeLoader whose floats follow YAML 1.2: PyYAML (YAML 1.1) reads 1e-4 as a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def _yaml_load(text: str):
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def load_yaml(path: str | Path, what: str = "config") -> dict[str, Any]:
    """Read a YAML mapping from ``path``; missing, unreadable or non-mapping files raise ValueError."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{what} file `{p}` does not exist")
    if not p.is_file():
        raise ValueError(f"{what} file `{p}` is not a regular file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read {what} file `{p}`: {err}") from None
    try:
        data = _yaml_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"cannot parse YAML in {what} file `{p}`{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(
            f"{what} file `{p}` must hold a mapping of keys to values, got {type(data).__name__}")
    return data


def dump_yaml(cfg: Mapping[str, Any]) -> str:
    """YAML text of a config (keys in insertion order, block style)."""
    return yaml.safe_dump(_plain(cfg), sort_keys=False, default_flow_style=False)


def _plain(o: Any) -> Any:
    """Convert tuples and numpy scalars to YAML-safe builtins."""
    if isinstance(o, Mapping):
        return {str(k): _plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_plain(v) for v in o]
    if hasattr(o, "item") and callable(o.item):
        return o.item()
    return o


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key.sub=value``; the value is read as YAML (so 3, 0.1, true, [1, 2] are typed)."""
    if "=" not in text:
        raise ValueError(f"override `{text}` must have the form key=value (e.g. data.alpha=0.1)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not _KEY_RE.match(key):
        raise ValueError(f"override key `{key}` is not a dotted name like data.alpha")
    try:
        value = _yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML: keep the text, the schema check reports a type error
    return key, value


def set_dotted(cfg: dict[str, Any], key: str, value: Any) -> None:
    """Set ``cfg['a']['b'] = value`` for key 'a.b', creating sub-mappings as needed."""
    parts = key.split(".")
    node = cfg
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        elif not isinstance(nxt, dict):
            raise ValueError(f"`{'.'.join(parts[:i + 1])}` is a value, not a section; "
                             f"cannot set `{key}`")
        node = nxt
    node[parts[-1]] = value


def apply_overrides(cfg: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``cfg`` with every ``key=value`` override applied in order."""
    out = copy.deepcopy(cfg)
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(out, key, value)
    return out


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive merge: mappings merge key by key, anything else in ``update`` replaces."""
    out = copy.deepcopy(dict(base))
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def check_against(schema: Mapping[str, Any], cfg: Mapping[str, Any], prefix: str = "") -> dict:
    """Check ``cfg`` against ``schema`` (a defaults dict) and return a type-normalised copy.

    Rules, by the type of the default: bool needs a bool; int needs an int;
    float accepts int or float (returned as float, finite); str needs a str;
    list needs a list; dict recurses; a default of ``FREE`` (None) accepts anything.
    Unknown keys raise ValueError listing the allowed ones.
    """
    if not isinstance(cfg, Mapping):
        raise ValueError(f"`{prefix.rstrip('.') or 'config'}` must be a mapping, got {cfg!r}")
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if key not in schema:
            allowed = ", ".join(sorted(map(str, schema))) or "(none)"
            raise ValueError(f"unknown config key `{name}`; allowed keys here: {allowed}")
        out[key] = _check_value(name, schema[key], value)
    return out


def check_str_keys(name: str, value: Any) -> Any:
    """Every mapping key inside ``value`` must be a string: configs are hashed as JSON with
    sorted keys, and YAML's ``{1: 2}`` would break that (or collide with ``{'1': 2}``)."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"`{name}` keys must be strings, got the key {k!r} "
                                 f"(quote it: '{k}')")
            check_str_keys(f"{name}.{k}", v)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_str_keys(f"{name}[{i}]", v)
    return value


def _check_value(name: str, default: Any, value: Any) -> Any:
    if default is FREE:
        return copy.deepcopy(check_str_keys(name, value))
    if isinstance(value, Mapping) and not isinstance(default, Mapping):
        # typically --set name.key=... on a plain value, e.g. solver.rtol for options.rtol
        raise ValueError(f"`{name}` is a single value (default {default!r}), not a section "
                         f"with keys; got {dict(value)!r}")
    if isinstance(default, Mapping):
        if not default:  # an empty mapping default is a free-form section
            if not isinstance(value, Mapping):
                raise ValueError(f"`{name}` must be a mapping, got {value!r}")
            return copy.deepcopy(dict(check_str_keys(name, value)))
        return check_against(default, value, prefix=f"{name}.")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"`{name}` must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"`{name}` must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"`{name}` must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"`{name}` must be finite, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"`{name}` must be a string, got {value!r}")
        return value
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"`{name}` must be a list, got {value!r}")
        if default:  # check the elements against the first default element
            return [_check_value(f"{name}[{i}]", default[0], v) for i, v in enumerate(value)]
        return list(value)
    return copy.deepcopy(value)


def check_seed(seed: Any) -> int:
    """Seeds are integers >= 0."""
    return check_int("seed", seed, 0)


def check_device(device: Any) -> str:
    """'cpu', 'cuda' or 'cuda:N' (the torch backend's devices); a CUDA device must actually
    be present."""
    if not isinstance(device, str) or not _DEVICE_RE.match(device):
        raise ValueError(f"`device` must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"`device` {device!r} was requested but CUDA is not available here")
        idx = int(device.split(":")[1]) if ":" in device else 0
        if idx >= torch.cuda.device_count():
            raise ValueError(f"`device` {device!r}: only {torch.cuda.device_count()} CUDA "
                             "device(s) present")
    return device
