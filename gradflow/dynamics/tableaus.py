"""Runge-Kutta coefficient tables, stored as data (scipy style).

An explicit tableau has nodes ``c`` (s,), the strictly lower-triangular matrix
``A`` (s, s), weights ``b`` (s,) of the propagated solution and, for embedded
pairs, ``b_err`` = b - b_hat, the weights of the local error estimate.
``order`` is the order of ``b``; ``err_order`` the order of the embedded one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tableau:
    name: str
    c: np.ndarray
    A: np.ndarray
    b: np.ndarray
    order: int
    b_err: np.ndarray | None = None
    err_order: int | None = None
    fsal: bool = False

    @property
    def stages(self) -> int:
        return len(self.c)


def _tab(name, c, A, b, order, b_hat=None, err_order=None, fsal=False) -> Tableau:
    c = np.array(c, dtype=float)
    s = len(c)
    Am = np.zeros((s, s))
    for i, row in enumerate(A):
        Am[i + 1, : len(row)] = row
    b = np.array(b, dtype=float)
    b_err = None if b_hat is None else b - np.array(b_hat, dtype=float)
    return Tableau(name, c, Am, b, order, b_err, err_order, fsal)


EULER = _tab("euler", [0.0], [], [1.0], 1)

RK4 = _tab("rk4", [0, 1 / 2, 1 / 2, 1],
           [[1 / 2], [0, 1 / 2], [0, 0, 1]],
           [1 / 6, 1 / 3, 1 / 3, 1 / 6], 4)

# Dormand & Prince (1980), RK5(4)7M: 5th-order solution, 4th-order embedded
# estimate, first-same-as-last (the 7th stage is the next step's 1st).
DP5 = _tab(
    "dp5",
    [0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1],
    [
        [1 / 5],
        [3 / 40, 9 / 40],
        [44 / 45, -56 / 15, 32 / 9],
        [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
        [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
        [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
    ],
    [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0],
    5,
    b_hat=[5179 / 57600, 0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40],
    err_order=4,
    fsal=True,
)

# Continuous extension of DP5 (4th order, Shampine 1986), y(t0 + s h) =
# y0 + h sum_i K_i (P[i] . [s, s^2, s^3, s^4]). Read from scipy's RK45 class, which
# publishes the same Dormand-Prince pair.
def _dp5_dense() -> np.ndarray:
    from scipy.integrate import RK45

    return np.array(RK45.P, dtype=float)


DP5_DENSE = _dp5_dense()

TABLEAUS = {t.name: t for t in (EULER, RK4, DP5)}
