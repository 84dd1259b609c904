"""Ideal classifiers of the Gaussian-subclass model (THEORY.md sections 5-6).

All three depend on an input x only through its projections z_k = <x, mu_k> onto
the K centres (rows of ``centres``, any unit or non-unit, orthogonal or
correlated centres), with subclass labels y_k in {-1, +1}:

    F(x)     = relu(<x, mu_+>) - relu(<x, mu_->),   mu_+- = sum of the +-1 centres
    F_p(x)   = sum_k y_k relu(<x, mu_k>)^p          (p >= 1; p = 1 is NOT F)
    Bayes(x) = log sum_{y_k=+1} w_k N(x; mu_k, s^2 I) - log sum_{y_k=-1} w_k N(x; mu_k, s^2 I)
             = LSE_{k+}(log w_k + (<x,mu_k> - ||mu_k||^2/2)/s^2)
               - LSE_{k-}(log w_k + (<x,mu_k> - ||mu_k||^2/2)/s^2),   s^2 = alpha^2 / D,

the log posterior odds of the mixture (the ||x||^2 terms cancel). Each
classifier is callable on a numpy array (float64) or a torch tensor (computed
on the tensor's device and dtype, differentiable by autograd); inputs are (n, D)
or a single (D,) point. ``score_z``/``grad_z``/``hess_z`` give the value and
derivatives as functions of z, which the exact-radius solver uses.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.special import logsumexp, softmax

from .._validate import check_array, check_choice, check_real

KINDS = ("F", "Fp", "bayes")


def check_centres_labels(centres, labels) -> tuple[np.ndarray, np.ndarray]:
    """Validate (K, D) centres and (K,) labels in {-1, +1} with both classes present."""
    if isinstance(centres, torch.Tensor):
        centres = centres.detach().cpu().numpy()
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    C = check_array("centres", centres, ndim=2).astype(np.float64)
    y = check_array("labels", labels, ndim=1).astype(np.float64)
    if C.shape[0] < 2 or C.shape[1] < C.shape[0]:
        raise ValueError(f"`centres` must have shape (K, D) with 2 <= K <= D, got {C.shape}")
    if y.shape[0] != C.shape[0]:
        raise ValueError(f"`labels` must have length K={C.shape[0]}, got {y.shape[0]}")
    if not np.all(np.abs(y) == 1.0) or np.all(y == 1.0) or np.all(y == -1.0):
        raise ValueError("`labels` must contain only -1 and +1, with both classes present")
    if np.linalg.matrix_rank(C) < C.shape[0]:
        raise ValueError("`centres` must be linearly independent (rank K)")
    return C, y


@dataclass(frozen=True, eq=False)
class IdealClassifier:
    """One of F, F_p or the Bayes classifier; see the module docstring for the formulas.

    Build it with ``ideal_F``, ``ideal_Fp``, ``bayes_classifier`` or ``from_data``.
    """

    kind: str
    centres: np.ndarray
    labels: np.ndarray
    p: float = 1.0
    alpha: float | None = None
    weights: np.ndarray | None = None
    _torch_cache: dict = field(default_factory=dict, repr=False)

    @property
    def K(self) -> int:
        return self.centres.shape[0]

    @property
    def D(self) -> int:
        return self.centres.shape[1]

    @property
    def mu_plus(self) -> np.ndarray:
        return self.centres[self.labels > 0].sum(axis=0)

    @property
    def mu_minus(self) -> np.ndarray:
        return self.centres[self.labels < 0].sum(axis=0)

    @property
    def name(self) -> str:
        if self.kind == "F":
            return "F"
        return f"F_{self.p:g}" if self.kind == "Fp" else f"Bayes(alpha={self.alpha:g})"

    # -- as functions of z = C x ----------------------------------------------------
    def _bayes_logits(self, Z):
        s2 = self.alpha**2 / self.D
        half = 0.5 * np.sum(self.centres**2, axis=1)
        return np.log(self.weights) + (Z - half) / s2, 1.0 / s2

    def score_z(self, Z: np.ndarray) -> np.ndarray:
        """Classifier value from projections Z (N, K) -> (N,)."""
        pos, neg = self.labels > 0, self.labels < 0
        if self.kind == "F":
            return np.maximum(Z[:, pos].sum(1), 0.0) - np.maximum(Z[:, neg].sum(1), 0.0)
        if self.kind == "Fp":
            return np.maximum(Z, 0.0) ** self.p @ self.labels
        A, _ = self._bayes_logits(Z)
        return logsumexp(A[:, pos], axis=1) - logsumexp(A[:, neg], axis=1)

    def grad_z(self, Z: np.ndarray) -> np.ndarray:
        """d score / d z, shape (N, K) (relu'(0) taken as 0)."""
        if self.kind == "F":
            pos, neg = self.labels > 0, self.labels < 0
            gp = (Z[:, pos].sum(1) > 0).astype(np.float64)
            gn = (Z[:, neg].sum(1) > 0).astype(np.float64)
            return gp[:, None] * pos - gn[:, None] * neg
        if self.kind == "Fp":
            if self.p == 1.0:
                return (Z > 0) * self.labels
            return self.p * np.maximum(Z, 0.0) ** (self.p - 1.0) * self.labels
        A, c = self._bayes_logits(Z)
        return c * (self._softmax_mask(A, self.labels > 0) - self._softmax_mask(A, self.labels < 0))

    def hess_z(self, Z: np.ndarray) -> np.ndarray:
        """d^2 score / d z^2, shape (N, K, K). F and F_1 are piecewise linear: zero."""
        N, K = Z.shape
        if self.kind == "F" or (self.kind == "Fp" and self.p == 1.0):
            return np.zeros((N, K, K))
        if self.kind == "Fp":
            with np.errstate(divide="ignore"):
                d = self.p * (self.p - 1.0) * np.where(
                    Z > 0, np.maximum(Z, 1e-300) ** (self.p - 2.0), 0.0)
            H = np.zeros((N, K, K))
            H[:, np.arange(K), np.arange(K)] = d * self.labels
            return H
        A, c = self._bayes_logits(Z)
        H = np.zeros((N, K, K))
        for mask, sign in ((self.labels > 0, 1.0), (self.labels < 0, -1.0)):
            P = self._softmax_mask(A, mask)
            H += sign * c * c * (P[:, :, None] * np.eye(K) - P[:, :, None] * P[:, None, :])
        return H

    @staticmethod
    def _softmax_mask(A, mask):
        P = np.zeros_like(A)
        P[:, mask] = softmax(A[:, mask], axis=1)
        return P

    # -- on inputs x ----------------------------------------------------------------
    def __call__(self, x):
        """Classifier values at x: (n, D) -> (n,), (D,) -> scalar; numpy or torch."""
        if isinstance(x, torch.Tensor):
            return self.torch(x)
        return self.numpy(x)

    def numpy(self, x) -> np.ndarray:
        X = check_array("x", x).astype(np.float64, copy=False)
        single = X.ndim == 1
        X = np.atleast_2d(X)
        if X.ndim != 2 or X.shape[1] != self.D:
            raise ValueError(f"`x` must have shape (n, {self.D}) or ({self.D},), got {np.shape(x)}")
        out = self.score_z(X @ self.centres.T)
        return out[0] if single else out

    def torch(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.D or x.dim() not in (1, 2):
            raise ValueError(f"`x` must have shape (n, {self.D}) or ({self.D},), "
                             f"got {tuple(x.shape)}")
        key = (x.device, x.dtype)
        if key not in self._torch_cache:
            self._torch_cache[key] = tuple(
                torch.as_tensor(a, device=x.device, dtype=x.dtype)
                for a in (self.centres, self.labels, np.log(self.weights)
                          if self.weights is not None else np.zeros(self.K)))
        C, y, logw = self._torch_cache[key]
        Z = x @ C.T
        pos, neg = y > 0, y < 0
        if self.kind == "F":
            return torch.relu(Z[..., pos].sum(-1)) - torch.relu(Z[..., neg].sum(-1))
        if self.kind == "Fp":
            R = torch.relu(Z)
            return (R if self.p == 1.0 else R**self.p) @ y
        s2 = self.alpha**2 / self.D
        A = logw + (Z - 0.5 * (C * C).sum(-1)) / s2
        return torch.logsumexp(A[..., pos], -1) - torch.logsumexp(A[..., neg], -1)


def ideal_F(centres, labels) -> IdealClassifier:
    """F(x) = relu(<x, mu_+>) - relu(<x, mu_->), the ReLU implicit-bias solution."""
    C, y = check_centres_labels(centres, labels)
    return IdealClassifier("F", C, y)


def ideal_Fp(centres, labels, p: float) -> IdealClassifier:
    """F_p(x) = sum_k y_k relu(<x, mu_k>)^p, the pReLU (p > 2) solution; p >= 1."""
    p = check_real("p", p, 1.0)
    C, y = check_centres_labels(centres, labels)
    return IdealClassifier("Fp", C, y, p=p)


def bayes_classifier(centres, labels, alpha: float, weights=None) -> IdealClassifier:
    """Log posterior odds of the mixture sum_k w_k N(mu_k, alpha^2/D I) (default w_k = 1/K)."""
    C, y = check_centres_labels(centres, labels)
    alpha = check_real("alpha", alpha, 0.0, lo_open=True)
    if weights is None:
        w = np.full(C.shape[0], 1.0 / C.shape[0])
    else:
        w = check_array("weights", weights, ndim=1).astype(np.float64)
        if w.shape[0] != C.shape[0] or np.any(w <= 0) or abs(w.sum() - 1.0) > 1e-9:
            raise ValueError(f"`weights` must be {C.shape[0]} positive numbers summing to 1")
    return IdealClassifier("bayes", C, y, alpha=alpha, weights=w)


def from_data(data, kind: str, p: float | None = None, alpha: float | None = None,
              weights=None) -> IdealClassifier:
    """The ideal classifier ``kind`` ('F', 'Fp', 'bayes') for a ``SubclassData`` split.

    'Fp' uses ``p`` (default: required); 'bayes' uses ``alpha`` (default: the data's alpha).
    """
    check_choice("kind", kind, KINDS)
    C, y = data.centres, data.subclass_labels
    if kind == "F":
        return ideal_F(C, y)
    if kind == "Fp":
        if p is None:
            raise ValueError("`p` is required for kind='Fp'")
        return ideal_Fp(C, y, p)
    return bayes_classifier(C, y, data.config.alpha if alpha is None else alpha, weights)
