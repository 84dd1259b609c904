"""MNIST for studies: one place that resolves the data folder and cuts the splits."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._validate import check_int
from ..mnist import MNIST, load_mnist, mnist_source

# ../shared/data/mnist beside the source checkout (gradflow/studies/mnist.py -> parents[3]).
_CHECKOUT_SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"


@dataclass
class StudyMNIST:
    """The loaded data, the training set cut to ``n_train`` and the first ``n_eval``
    test points as float32/int64 tensors (the points every attack is run on)."""

    data: MNIST
    X_train: np.ndarray
    y_train: np.ndarray
    X_eval: torch.Tensor
    y_eval: torch.Tensor


def mnist_folder(path: str | None) -> str | None:
    """An explicit ``path``; else None (the loader's own search: $GRADFLOW_DATA,
    ~/.cache/gradflow) when either is set up; else ../shared/data/mnist beside the checkout."""
    if path:
        return path
    if os.environ.get("GRADFLOW_DATA") or (Path.home() / ".cache" / "gradflow").is_dir():
        return None
    return str(_CHECKOUT_SHARED)


def study_mnist_source(cfg: dict) -> dict | None:
    """The MNIST files a study config would read (``gradflow.mnist.mnist_source``): pass it
    as ``Study(data_key=...)`` so that the cache key follows the files found."""
    return mnist_source(mnist_folder(cfg["mnist_path"]))


def load_study_mnist(cfg: dict, seed: int, labels="digits") -> StudyMNIST:
    """MNIST as a study config asks for it: keys ``mnist_path``, ``test_fraction``,
    ``n_train`` (0: all) and ``n_eval``; inputs in [0, 1], not centred."""
    n_train = check_int("n_train", cfg["n_train"], 0)  # a negative one would slice from the end
    check_int("n_eval", cfg["n_eval"], 1)
    data = load_mnist(mnist_folder(cfg["mnist_path"]), labels=labels, center=False,
                      test_fraction=cfg["test_fraction"], seed=seed)
    n_train = n_train or len(data.y_train)
    n = min(int(cfg["n_eval"]), len(data.y_test))
    return StudyMNIST(data, data.X_train[:n_train], data.y_train[:n_train],
                      torch.as_tensor(data.X_test[:n], dtype=torch.float32),
                      torch.as_tensor(data.y_test[:n]))
