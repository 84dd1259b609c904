"""Frozen, self-validating configuration dataclasses.

Every field is checked in ``__post_init__``; an invalid value raises
``ValueError`` naming the field and its allowed range. Configs are plain data:
``to_dict``/``from_dict`` round-trip them, and ``config_hash`` keys cached results.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ._validate import check_bool, check_choice, check_int, check_real, store

CENTRE_MODES = ("basis", "random-orthonormal", "correlated")
SIZE_MODES = ("random", "equal")
INIT_MODES = ("balanced", "independent", "nudged")


class _ConfigMixin:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown key(s) {unknown} for {cls.__name__}; allowed keys: {sorted(known)}"
            )
        return cls(**d)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class DataConfig(_ConfigMixin):
    """Gaussian-subclass data (THEORY.md section 1).

    K subclasses with unit centres mu_1..mu_K in R^D; subclasses 1..K1 carry
    label +1, the rest -1. A sample is x = mu_k + N(0, alpha^2/D I), so the noise
    norm is about alpha.
    """

    K: int = 10
    K1: int = 6
    D: int = 100
    alpha: float = 0.1
    n: int = 500
    centres: str = "basis"
    cosine: float = 0.0
    sizes: str = "random"
    seed: int = 0

    def __post_init__(self):
        store(self, "K", check_int("K", self.K, 2))
        store(self, "K1", check_int("K1", self.K1, 1, self.K - 1))
        store(self, "D", check_int("D", self.D, self.K))
        store(self, "alpha", check_real("alpha", self.alpha, 0.0))
        store(self, "n", check_int("n", self.n, 1))
        check_choice("centres", self.centres, CENTRE_MODES)
        # The Gram matrix (1-c) I + c 11^T is positive definite iff -1/(K-1) < c < 1.
        lo = -1.0 / (self.K - 1)
        store(self, "cosine",
              check_real("cosine", self.cosine, lo, 1.0, lo_open=True, hi_open=True))
        if self.centres != "correlated" and self.cosine != 0.0:
            raise ValueError("`cosine` is only used with centres='correlated'; leave it at 0.0")
        check_choice("sizes", self.sizes, SIZE_MODES)
        store(self, "seed", check_int("seed", self.seed, 0))

    @property
    def K2(self) -> int:
        return self.K - self.K1


@dataclass(frozen=True)
class ModelConfig(_ConfigMixin):
    """Two-layer network f(x) = sum_j v_j sigma(x; w_j) (+ b).

    ``activation`` is a registered name (see ``gradflow.activations``); ``p`` is
    used by 'prelu' and 'relu_p', ``beta`` by 'capped_relu', ``a`` by
    'param_softplus'. ``normalize_input`` divides pReLU by ||x||^(p-1);
    ``center_input`` subtracts a centre vector held with the parameters.
    """

    width: int = 50
    activation: str = "prelu"
    p: float = 1.0
    beta: float = 1.0
    a: float = 10.0
    normalize_input: bool = False
    center_input: bool = False
    bias: bool = False
    n_outputs: int = 1

    def __post_init__(self):
        from .activations import available

        store(self, "width", check_int("width", self.width, 1))
        check_choice("activation", self.activation, available())
        store(self, "p", check_real("p", self.p, 1.0))
        store(self, "beta", check_real("beta", self.beta, 0.0, lo_open=True))
        store(self, "a", check_real("a", self.a, 0.0, lo_open=True))
        for name in ("normalize_input", "center_input", "bias"):
            store(self, name, check_bool(name, getattr(self, name)))
        store(self, "n_outputs", check_int("n_outputs", self.n_outputs, 1))

    def activation_obj(self):
        from .activations import get_activation

        return get_activation(self.activation, p=self.p, beta=self.beta, a=self.a)


@dataclass(frozen=True)
class InitConfig(_ConfigMixin):
    """Small initialisation (THEORY.md section 3).

    balanced:    w_j = eps g_j, g_j ~ N(0, I/D); v_j = s_j ||w_j|| with random sign s_j.
    independent: W and v entries drawn iid N(0, eps^2) (the reference code).
    nudged:      balanced, with direction (1-delta) g_j/||g_j|| + delta mu_target renormalised.
    """

    eps: float = 1e-6
    mode: str = "balanced"
    delta: float = 0.0
    target: int = 0
    seed: int = 0

    def __post_init__(self):
        store(self, "eps", check_real("eps", self.eps, 0.0, lo_open=True))
        check_choice("mode", self.mode, INIT_MODES)
        store(self, "delta", check_real("delta", self.delta, 0.0, 1.0))
        store(self, "target", check_int("target", self.target, 0))
        if self.mode != "nudged" and (self.delta != 0.0 or self.target != 0):
            # they would change the config hash without changing the run
            raise ValueError(f"`delta` and `target` are only used with mode='nudged'; leave "
                             f"them at 0 for mode={self.mode!r}")
        store(self, "seed", check_int("seed", self.seed, 0))


@functools.lru_cache(maxsize=1)
def library_fingerprint() -> str:
    """sha256 of the numerical library's source (every ``gradflow/**/*.py`` but ``plots/``).

    Part of every result key: a changed solver default or formula must not reuse results
    computed by the old code even when the version string did not change.
    """
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("plots/"):
            continue
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def config_hash(*configs, extra: dict | None = None, length: int = 16) -> str:
    """Stable hash of configs plus extra data, the gradflow version and its source.

    Results are stored under this key, so any changed field, a new code version or an
    edit of the library's numerical code (``library_fingerprint``) gives a new key and
    stale results are never reused.
    """
    from . import __version__

    payload = {
        "version": __version__,
        "library": library_fingerprint(),
        "configs": [
            {"type": type(c).__name__, **(c.to_dict() if hasattr(c, "to_dict") else c)}
            for c in configs
        ],
        "extra": extra or {},
    }
    blob = json.dumps(payload, sort_keys=True, default=repr).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
