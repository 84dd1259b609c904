"""Atomic, crash-safe writes. Every result file goes through here.

A write goes to a temporary file in the same folder, is flushed and fsynced,
then renamed over the target: a reader (or a resumed run) sees the old file or
the new one, never a torn one.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (os.umask is a
    set-and-restore that would briefly affect files created by other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_dir_path(path: str | os.PathLike, name: str) -> Path:
    """Check that ``path`` is, or can be created as, a folder; ValueError naming ``name``.

    Called before long computations so that a bad output path fails at once, not after
    the results exist.
    """
    path = Path(path)
    p = _blocking_file((path, *path.parents))
    if p is not None:
        why = "is a file" if p == path else f"cannot be created: `{p}` is a file"
        raise ValueError(f"`{name}` must be a folder, but `{path}` {why}")
    return path


def check_file_path(path: str | os.PathLike, name: str) -> Path:
    """Check that ``path`` can be written as a file (ValueError naming ``name`` otherwise)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"`{name}` must be a file, but `{path}` is a folder")
    p = _blocking_file(path.parents)
    if p is not None:
        raise ValueError(f"`{name}` `{path}` cannot be created: `{p}` is a file, not a folder")
    return path


def _blocking_file(candidates) -> Path | None:
    """The first existing path among ``candidates`` (a path and then its parents) when it is
    a file, so no folder can be created below it; None when it is a folder or none exists."""
    for p in candidates:
        if p.exists():
            return None if p.is_dir() else p
    return None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            if hasattr(os, "fchmod"):  # mkstemp gives 0600: use open()'s mode, so shared
                os.fchmod(fh.fileno(), 0o666 & ~current_umask())  # caches stay readable
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def replace_marked_section(text: str, start: str, end: str, section: str, family: str,
                           where: str = "the file") -> str:
    """``text`` with the part from marker ``start`` to marker ``end`` replaced by ``section``
    (appended when neither marker is there).

    ``family`` is the prefix every start marker of the file shares (e.g. ``<!-- results:``).
    Damaged markers (a start without its end, duplicates, or another section's start between
    them) raise ValueError instead of rewriting: a lazy start..end match would otherwise
    swallow every section up to the next matching end marker.
    """
    n_start, n_end = text.count(start), text.count(end)
    if n_start == 0 and n_end == 0:
        return text.rstrip() + "\n\n" + section + "\n"
    i, j = text.find(start), text.find(end)
    if n_start != 1 or n_end != 1 or j < i or family in text[i + len(start):j]:
        raise ValueError(f"{where}: the section markers {start} ... {end} are damaged "
                         f"({n_start} start and {n_end} end markers, or another section inside); "
                         "repair them by hand so that the section has one of each")
    return text[:i] + section + text[j + len(end):]


def _jsonable(o: Any):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (numpy arrays and scalars converted)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_jsonable, allow_nan=True) + "\n")


def load_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def save_npz(path: str | os.PathLike, **arrays) -> Path:
    """Atomically write a compressed npz of ``arrays``."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
