"""Closed-form l2 robust radii at a subclass centre, derived with sympy (THEORY.md s. 6).

Setting: K orthonormal centres, K1 positive and K2 = K - K1 negative, the point
x = mu_1 (a centre of class c), K_o = number of subclasses of the opposite class.
In the coordinates z_k = <x, mu_k> (the orthogonal complement of the span does
not enter either classifier) the radius is min ||d|| such that the sign flips.

F (two neurons). Symmetric ansatz: own coordinate 1+a, the other K_c-1 own
coordinates b, the K_o opposite ones c. On the piece <x,mu_+> = <x,mu_-> the
Lagrangian of  min a^2+(K_c-1)b^2+K_o c^2  s.t.  1+a+(K_c-1)b-K_o c = 0  gives
a = b = -c = -1/K, radius 1/sqrt(K); the other piece (<x, mu_own> = 0) gives
1/sqrt(K_c) >= 1/sqrt(K). Hence radius_F = 1/sqrt(K), independent of K1.

F_p. Ansatz: own coordinate 1-a, m of the K_o opposite coordinates raised to t
(the others untouched: moving them only costs norm). The Lagrangian of
min a^2 + m t^2  s.t.  (1-a)^p = m t^p  gives a = c/(1+c), c = m^(1-2/p), so
r(m)^2 = c/(1+c) = 1/(1 + m^(2/p-1)). r is decreasing in m for p < 2 (use all
m = K_o opposite centres) and increasing for p > 2 (use m = 1):
    1 <= p <= 2:  r = 1/sqrt(1 + K_o^(2/p-1));   p >= 2:  r = sqrt(2)/2.
Ceiling: two centres of opposite classes are sqrt(2) apart, so no classifier
has radius above sqrt(2)/2 at both.

The ``derive_*`` functions redo this algebra in sympy (the tests run them); the
float functions below are what the rest of gradflow calls.
"""
from __future__ import annotations

import math

import numpy as np
import sympy as sp
from scipy.optimize import minimize

from .._validate import check_choice, check_int, check_real

RADIUS_CEILING = math.sqrt(2.0) / 2.0


def derive_radius_F() -> sp.Expr:
    """Sympy derivation of the radius of F at a centre; returns 1/sqrt(K1 + K2) (simplified).

    Solves the Lagrange conditions of both boundary pieces with the symmetric
    ansatz and returns the smaller radius (as an expression in K1, K2 > 0).
    """
    a, b, c, lam = sp.symbols("a b c lam", real=True)
    Kc, Ko = sp.symbols("K_c K_o", positive=True)
    cost = a**2 + (Kc - 1) * b**2 + Ko * c**2
    # piece 1: <x, mu_own> = <x, mu_opp>  (both relu active)
    g1 = 1 + a + (Kc - 1) * b - Ko * c
    sol1 = sp.solve([sp.diff(cost + lam * g1, s) for s in (a, b, c)] + [g1], [a, b, c, lam],
                    dict=True)[0]
    r1 = sp.sqrt(sp.simplify(cost.subs(sol1)))
    # piece 2: <x, mu_own> = 0, opposite coordinates untouched (c = 0)
    g2 = 1 + a + (Kc - 1) * b
    cost2 = cost.subs(c, 0)
    sol2 = sp.solve([sp.diff(cost2 + lam * g2, s) for s in (a, b)] + [g2], [a, b, lam],
                    dict=True)[0]
    r2 = sp.sqrt(sp.simplify(cost2.subs(sol2)))
    # r1 = 1/sqrt(Kc+Ko) <= 1/sqrt(Kc) = r2 since Ko > 0
    if not sp.simplify(r1**-2 - r2**-2 - Ko) == 0:
        raise RuntimeError("derivation failed: unexpected piece radii")
    K1, K2 = sp.symbols("K1 K2", positive=True)
    return sp.simplify(r1.subs({Kc: K1, Ko: K2}))


def derive_radius_Fp_given_m() -> tuple[sp.Expr, sp.Symbol, sp.Symbol]:
    """Sympy derivation of r(m, p)^2 = 1/(1 + m^(2/p-1)) for the m-centre attack on F_p.

    Eliminates the multiplier from the two stationarity equations of
    a^2 + m t^2 + lam ((1-a)^p - m t^p), substitutes the constraint
    t = (1-a) m^(-1/p), and solves for a. Returns (r^2, m, p).
    """
    a, t, lam, m, p, u = sp.symbols("a t lam m p u", positive=True)
    L = a**2 + m * t**2 + lam * ((1 - a) ** p - m * t**p)
    lam_a = sp.solve(sp.diff(L, a), lam)[0]
    lam_t = sp.solve(sp.diff(L, t), lam)[0]
    t_of_a = (1 - a) * m ** (-1 / p)
    # lam_a = lam_t  <=>  a (1-a)^(1-p) = t^(2-p)  <=>  a = (1-a)^(p-1) t^(2-p)
    ratio = sp.powsimp(sp.expand_power_base(lam_a / lam_t, force=True), force=True)
    # ratio = 1 is the equation a = a / ratio = (1-a)^(p-1) t^(2-p)
    eq = sp.Eq(a, sp.powsimp(sp.expand_power_base(a / ratio.subs(t, t_of_a), force=True),
                             force=True))
    sols = sp.solve(eq.subs(a, 1 - u), u)
    if len(sols) != 1:
        raise RuntimeError(f"derivation failed: expected one root, got {sols}")
    a_star = 1 - sols[0]
    r2 = a_star**2 + m * t_of_a.subs(a, a_star) ** 2
    r2 = sp.simplify(sp.powsimp(sp.expand_power_base(r2, force=True), force=True))
    return r2, m, p


def derive_radius_Fp(p_value, K_o: int) -> sp.Expr:
    """Exact sympy value of the F_p radius at a centre for a given p and K_o.

    Takes r(m)^2 from ``derive_radius_Fp_given_m`` and minimises it over the
    number m in {1..K_o} of attacked opposite centres (exactly, in sympy).
    """
    r2, m, p = derive_radius_Fp_given_m()
    pv = sp.nsimplify(p_value)
    candidates = [sp.nsimplify(r2.subs({p: pv, m: k})) for k in range(1, int(K_o) + 1)]
    return sp.sqrt(sp.Min(*candidates))


def radius_F(K: int) -> float:
    """l2 radius of F at any subclass centre (orthonormal centres): 1/sqrt(K)."""
    K = check_int("K", K, 2)
    return 1.0 / math.sqrt(K)


def radius_Fp(p: float, K: int, K1: int, from_class: int = 1) -> float:
    """l2 radius of F_p at a centre of class ``from_class`` (orthonormal centres).

    1/sqrt(1 + K_o^(2/p - 1)) for 1 <= p <= 2 and sqrt(2)/2 for p >= 2, where
    K_o = K - K1 (from a positive centre) or K1 (from a negative centre).
    """
    p = check_real("p", p, 1.0)
    K = check_int("K", K, 2)
    K1 = check_int("K1", K1, 1, K - 1)
    if from_class not in (1, -1) or isinstance(from_class, bool):
        raise ValueError(f"`from_class` must be +1 or -1, got {from_class!r}")
    K_o = K - K1 if from_class == 1 else K1
    if p >= 2.0:
        return RADIUS_CEILING
    return 1.0 / math.sqrt(1.0 + K_o ** (2.0 / p - 1.0))


def radius_ceiling() -> float:
    """sqrt(2)/2: no classifier is robust beyond it at both of two opposite centres."""
    return RADIUS_CEILING


def radius_closed_form(kind: str, K: int, K1: int, p: float = 1.0, from_class: int = 1) -> float:
    """Dispatch to ``radius_F`` ('F') or ``radius_Fp`` ('Fp')."""
    check_choice("kind", kind, ("F", "Fp"))
    if kind == "F":
        check_int("K1", K1, 1, check_int("K", K, 2) - 1)
        return radius_F(K)
    return radius_Fp(p, K, K1, from_class)


def numeric_radius_at_centre(kind: str, K: int, K1: int, p: float = 1.0, from_class: int = 1,
                             n_starts: int = 30, seed: int = 0) -> float:
    """Radius at a centre by constrained minimisation (SLSQP), independent of the closed forms.

    Minimises ||d||^2 subject to c * g(mu + d) <= 0 (g = F or F_p, c the class of
    the centre mu) in the K coordinates of standard-basis centres, from
    ``n_starts`` random starts of random scale, and returns the smallest
    ||d|| among converged feasible solutions.
    """
    from .classifiers import ideal_F, ideal_Fp

    check_choice("kind", kind, ("F", "Fp"))
    K = check_int("K", K, 2)
    K1 = check_int("K1", K1, 1, K - 1)
    p = check_real("p", p, 1.0)
    n_starts = check_int("n_starts", n_starts, 1)
    if from_class not in (1, -1) or isinstance(from_class, bool):
        raise ValueError(f"`from_class` must be +1 or -1, got {from_class!r}")
    labels = np.where(np.arange(K) < K1, 1.0, -1.0)
    clf = ideal_F(np.eye(K), labels) if kind == "F" else ideal_Fp(np.eye(K), labels, p)
    x0 = np.eye(K)[0 if from_class == 1 else K - 1]

    def con(d):
        return -from_class * clf.score_z((x0 + d)[None])[0]

    def con_jac(d):
        return -from_class * clf.grad_z((x0 + d)[None])[0]

    rng = np.random.default_rng(seed)
    best = np.inf
    for _ in range(n_starts):
        d0 = rng.standard_normal(K) * rng.uniform(0.1, 1.0) / np.sqrt(K)
        res = minimize(lambda d: d @ d, d0, jac=lambda d: 2 * d, method="SLSQP",
                       constraints=[{"type": "ineq", "fun": con, "jac": con_jac}],
                       options={"ftol": 1e-15, "maxiter": 500})
        # accept only (numerically) feasible points: the sign has flipped up to 1e-12
        if con(res.x) >= -1e-12:
            best = min(best, float(np.linalg.norm(res.x)))
    return best
