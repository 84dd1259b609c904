"""MNIST from IDX files (optionally .gz), with md5 verification.

Search order for the folder holding the files: an explicit ``path``, then
``$GRADFLOW_DATA`` (and its ``mnist/`` subfolder), then ``~/.cache/gradflow``
(and ``mnist/``). When only the 10k test split is present, a seeded train/test
split of it is made, and the return value and the log say so.
"""
from __future__ import annotations

import gzip
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._validate import check_bool, check_int, check_real

log = logging.getLogger(__name__)

FILES = {
    "train_images": ("train-images-idx3-ubyte", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_labels": ("train-labels-idx1-ubyte", "d53e105ee54ea40749a09fcbcd1e9432"),
    "test_images": ("t10k-images-idx3-ubyte", "9fb629c4189551a2d022fa330f9573f3"),
    "test_labels": ("t10k-labels-idx1-ubyte", "ec29112dd5afa0611ce80d1b7f02629c"),
}
# md5 sums above are of the canonical .gz files. Uncompressed files have no checksum here:
# with `verify=True` they are checked for shape and label range only (``_pair``).

LABEL_MAPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "digits": lambda d: d.astype(np.int64),
    "parity": lambda d: (d % 2).astype(np.int64),
}


@dataclass
class MNIST:
    """Images as float arrays in [0, 1] (flattened (n, 784) or (n, 28, 28)), labels int64.

    ``center`` is the mean training image that was subtracted (None if not centred).
    ``split_note`` says how train/test were formed (official split or seeded split).
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    center: np.ndarray | None
    n_classes: int
    source: Path
    official_split: bool
    split_note: str
    digits_train: np.ndarray = field(repr=False, default=None)
    digits_test: np.ndarray = field(repr=False, default=None)


def candidate_dirs(path: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched, in order."""
    dirs: list[Path] = []
    if path is not None:
        dirs.append(Path(path))
    env = os.environ.get("GRADFLOW_DATA")
    if env:
        dirs += [Path(env), Path(env) / "mnist"]
    cache = Path.home() / ".cache" / "gradflow"
    dirs += [cache, cache / "mnist"]
    return dirs


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def md5sum(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip-compressed if it ends in .gz) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (EOFError, gzip.BadGzipFile) as e:  # truncated or not gzip: name the file
        raise ValueError(f"`path` {path} is not a readable IDX file: {e}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"`path` {path} is not an IDX file (bad magic number)")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"`path` {path}: unknown IDX element type 0x{data[2]:02x}")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    arr = np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"`path` {path}: IDX header shape {shape} does not match its data")
    return arr.reshape(shape)


def _pair(images: Path, labels: Path, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Images in [0, 1] and digit labels of one split, checked against each other."""
    X = read_idx(images)
    d = read_idx(labels).astype(np.int64)
    if X.ndim != 3 or X.shape[1:] != (28, 28) or d.ndim != 1 or len(X) != len(d):
        raise ValueError(f"MNIST files {images.name} / {labels.name} do not form a split: "
                         f"images {X.shape} (expected (n, 28, 28)), labels {d.shape} (n,)")
    if d.size and (d.min() < 0 or d.max() > 9):
        raise ValueError(f"MNIST labels in {labels} must be digits 0..9, got {d.min()}..{d.max()}")
    return X.astype(dtype) / 255.0, d


def _locate(path, verify: bool) -> tuple[Path, dict[str, Path]]:
    searched = candidate_dirs(path)
    for folder in searched:
        test = {k: _find(folder, FILES[k][0]) for k in ("test_images", "test_labels")}
        if all(test.values()):
            found = dict(test)
            train = {k: _find(folder, FILES[k][0]) for k in ("train_images", "train_labels")}
            if all(train.values()):
                found.update(train)
            if verify:
                for key, file in found.items():
                    if file.suffix == ".gz" and md5sum(file) != FILES[key][1]:
                        raise ValueError(
                            f"md5 mismatch for {file}: expected {FILES[key][1]}; the file is "
                            "corrupt or not the canonical MNIST release")
            return folder, found
    where = "\n  ".join(str(d) for d in searched)
    raise FileNotFoundError(
        "MNIST IDX files (t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz], and "
        f"optionally the train-* pair) were not found. Looked in:\n  {where}\n"
        "Pass `path=`, set $GRADFLOW_DATA, or copy the files to ~/.cache/gradflow/mnist "
        "(on these machines: ../shared/data/mnist holds the 10k test split).")


def mnist_source(path: str | os.PathLike | None = None) -> dict | None:
    """Which MNIST files ``load_mnist(path)`` would read: the folder and each file's name
    and size (None when none are found). Cheap (no reading, no md5), so caches can key on
    it: adding the official train split to a searched folder changes it."""
    try:
        folder, files = _locate(path, verify=False)
    except FileNotFoundError:
        return None
    return {"folder": str(folder.resolve()),
            "files": {k: [f.name, f.stat().st_size] for k, f in sorted(files.items())}}


def load_mnist(
    path: str | os.PathLike | None = None,
    labels: str | Callable[[np.ndarray], np.ndarray] = "digits",
    center: bool = False,
    flatten: bool = True,
    test_fraction: float = 0.2,
    seed: int = 0,
    verify: bool = True,
    dtype=np.float32,
) -> MNIST:
    """Load MNIST as arrays in [0, 1].

    labels: 'digits' (10 classes), 'parity' (digit mod 2) or a function digits -> labels.
    center: subtract the mean training image (stored in ``.center``).
    test_fraction, seed: used only when just the 10k test split is present; then a
    seeded split of it gives train and test, and ``split_note`` says so.
    """
    if callable(labels):
        label_fn = labels
    elif labels in LABEL_MAPS:
        label_fn = LABEL_MAPS[labels]
    else:
        raise ValueError(f"`labels` must be 'digits', 'parity' or a callable, got {labels!r}")
    check_real("test_fraction", test_fraction, 0.0, 1.0, lo_open=True, hi_open=True)
    seed = check_int("seed", seed, 0)
    for name, flag in (("center", center), ("flatten", flatten), ("verify", verify)):
        check_bool(name, flag)
    folder, files = _locate(path, verify)
    Xt, dt = _pair(files["test_images"], files["test_labels"], dtype)
    if "train_images" in files:
        Xtr, dtr = _pair(files["train_images"], files["train_labels"], dtype)
        official, note = True, "official MNIST split (60k train / 10k test)"
    else:
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(Xt))
        n_test = int(round(test_fraction * len(Xt)))
        if not 1 <= n_test < len(Xt):
            raise ValueError(f"`test_fraction` {test_fraction:g} of the {len(Xt)} images leaves "
                             f"an empty split; use a value in [{1 / len(Xt):.2g}, "
                             f"{1 - 1 / len(Xt):.6g}]")
        te, tr = perm[:n_test], perm[n_test:]
        Xtr, dtr, Xt, dt = Xt[tr], dt[tr], Xt[te], dt[te]
        official = False
        note = (f"only the 10k MNIST test split was found in {folder}; train/test are a seeded "
                f"split of it (seed={seed}, {len(tr)} train / {len(te)} test)")
        log.warning(note)
    c = None
    if center:
        c = Xtr.mean(axis=0)
        Xtr, Xt = Xtr - c, Xt - c
    if flatten:
        Xtr, Xt = Xtr.reshape(len(Xtr), -1), Xt.reshape(len(Xt), -1)
        c = None if c is None else c.reshape(-1)
    ytr, yt = np.asarray(label_fn(dtr)), np.asarray(label_fn(dt))
    n_classes = int(max(ytr.max(), yt.max())) + 1
    return MNIST(Xtr, ytr, Xt, yt, c, n_classes, folder, official, note, dtr, dt)
