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


class FakeSolution:
    """Stand-in for dynamics.Solution where a test checks only the simulate call site:
    holds the initial parameters and writes a placeholder npz."""

    status, message, nfev, wall_time, alignment_end_time = "success", "", 3, 0.0, None
    t = np.array([0.0, 1.0])

    def __init__(self, params):
        self.p = params

    def save(self, path):
        Path(str(path) + ".npz").write_bytes(b"x")

    def params_at(self, i):
        return self.p


@pytest.fixture
def fake_solution():
    """The ``FakeSolution`` class (a fixture, as conftest is not importable by tests)."""
    return FakeSolution


@pytest.fixture
def mnist_dir():
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"shared MNIST test split not found at {SHARED_MNIST}")
    return SHARED_MNIST
