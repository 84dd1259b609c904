"""Shared test fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny torch problems: one intra-op thread avoids OpenMP hand-off costs on a busy
    2-core machine (measured 7-20x faster there)."""
    from gradflow.backend import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def mnist_dir():
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"shared MNIST test split not found at {SHARED_MNIST}")
    return SHARED_MNIST
