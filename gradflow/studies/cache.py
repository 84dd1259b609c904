"""Result cache keyed by the hash of the full effective configuration.

Layout under the cache root (default ``.gradflow_cache`` in the working
directory, or ``$GRADFLOW_CACHE``)::

    runs/<kind>/<name>/<key>/      a finished run: summary.json, arrays.npz, ...
    cells/<task>/<key>.json        one finished sweep cell

``key = config_hash(config, extra={kind, name})``, which includes
``gradflow.__version__`` and a fingerprint of the library's source: a changed field,
a new code version or an edited solver gives a new key,
so stale results are never reused. A run is built in a hidden staging folder and
renamed into place only when complete, so a crash (even ``kill -9``) never
leaves a half-written entry that looks finished.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..config import config_hash
from ..io import atomic_write_bytes, current_umask, load_json, save_json

DEFAULT_CACHE_DIR = ".gradflow_cache"
COMPLETE = "COMPLETE"


def default_cache_dir() -> Path:
    """``$GRADFLOW_CACHE`` if set, else ``./.gradflow_cache``."""
    return Path(os.environ.get("GRADFLOW_CACHE", DEFAULT_CACHE_DIR))


def run_key(config: Mapping[str, Any], kind: str, name: str, code: str = "",
            data: Any = None) -> str:
    """Hash of (kind, name, full config, gradflow version, ``code`` fingerprint, ``data``
    identity, e.g. which input files were found)."""
    extra = {"kind": kind, "name": name}
    if code:
        extra["code"] = code
    if data is not None:
        extra["data"] = data
    return config_hash(dict(config), extra=extra)


class RunCache:
    """Folders of finished runs, one per config hash."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def entry(self, kind: str, name: str, key: str) -> Path:
        return self.root / "runs" / kind / name / key

    def is_complete(self, path: Path) -> bool:
        return (path / COMPLETE).is_file()

    @contextmanager
    def staging(self, kind: str, name: str, key: str) -> Iterator[Path]:
        """Yield an empty private folder; on success it becomes the cache entry atomically."""
        final = self.entry(kind, name, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{key}.", suffix=".staging"))
        try:
            # mkdtemp gives 0700; the entry should get mkdir's mode so a shared cache is readable
            os.chmod(tmp, 0o777 & ~current_umask())
            yield tmp
            atomic_write_bytes(tmp / COMPLETE, b"")
            _install(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def _install(tmp: Path, final: Path, tries: int = 5) -> None:
    """Rename the finished folder ``tmp`` to ``final``, replacing an older entry.

    The old entry is renamed aside before ours goes in (never deleted in place, where a
    reader could see it half gone); when an identical concurrent run puts its entry there
    in between, ours replaces that one on the next try."""
    for _ in range(tries):
        aside = final.parent / f".{final.name}.{uuid.uuid4().hex}.old"
        try:
            os.replace(final, aside)
        except FileNotFoundError:
            aside = None
        try:
            os.replace(tmp, final)
            return
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        finally:
            if aside is not None:
                shutil.rmtree(aside, ignore_errors=True)
    raise OSError(f"could not install the cache entry {final}: it kept being replaced")


def publish(src: Path, dst: Path) -> list[Path]:
    """Copy every file of the run folder ``src`` into ``dst`` (atomically per file)."""
    dst.mkdir(parents=True, exist_ok=True)
    if src.resolve() == dst.resolve():
        return [p for p in src.rglob("*") if p.is_file()]
    copied = []
    for f in sorted(src.rglob("*")):
        if f.is_file() and f.name != COMPLETE:
            target = dst / f.relative_to(src)
            atomic_write_bytes(target, f.read_bytes())
            copied.append(target)
    return copied


class CellCache:
    """One JSON record per finished sweep cell: ``cells/<task>/<key>.json``."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def path(self, task: str, key: str) -> Path:
        safe = task.replace(":", "__").replace("/", "_")
        return self.root / "cells" / safe / f"{key}.json"

    def get(self, task: str, key: str) -> dict | None:
        p = self.path(task, key)
        if not p.is_file():
            return None
        try:
            return load_json(p)
        except (OSError, ValueError):
            return None  # unreadable record: treat as missing, the cell is recomputed

    def put(self, task: str, key: str, record: Mapping[str, Any]) -> Path:
        return save_json(self.path(task, key), dict(record))
