"""gradflow's default method: embedded Dormand-Prince 5(4) with per-neuron relative error
control, Cartesian or polar variables, and frozen activation patterns for ReLU.

Design (details and measurements in docs/dynamics.md):

* Variables. Balanced ReLU neurons are integrated as (u_j, rho_j = log ||w_j||)
  (``PolarRep``): the growth e^(G t) of the alignment phase is then linear in
  rho, the error is absolute in (u, rho), i.e. relative in (w, v) at every
  scale from eps to O(100), and the exact alignment phase and Filippov sliding
  below are built on them. Other networks, p > 1 included, use (W, v, b) with
  the error of neuron j measured relative to ||(w_j, v_j)||, and for activations
  1-homogeneous in w every step is projected back onto the conserved
  ||v_j||^2 - ||w_j||^2 (``project``); at p > 1 that was cheaper at equal error
  than the polar variables (benchmarks/bench_error_norm.py). Either way no atol exists.
* Error norm. err = max_j ||e_j|| / rtol with e_j the embedded estimate of
  neuron j's relative error, so every neuron, however small, is accurate to
  rtol per step. In polar variables ||e_j||^2 = (direction_weight e_u)^2 + e_rho^2
  (default weight 1; smaller weights trade accuracy at a given rtol for fewer
  evaluations, see docs/dynamics.md). ``error_weight='network'``
  multiplies by the significance ||theta_j|| / max_k ||theta_k|| instead
  (cheaper, but measured 400x less accurate at p=3: neurons that are small
  during the alignment phase grow large later and keep their error).
* ReLU (p = 1). Inside a step the activation pattern M_ij = [<w_j, x_i> > 0] is
  held at its value at the step start (sliding pairs excluded), so the stages
  see a smooth field and the embedded estimate is meaningful. After the step
  the pattern is recomputed and the entries that changed are replayed in time
  order on the step's linear model (``switching.order_crossings``: each switch
  bends the other samples' z from its crossing fraction s on), which says of
  each whether and when it crossed and of which kind:
  - transversal (the new side's field carries on): neuron j is corrected by
    the missing push (1 - s) h s_j P(u_j) omega_i x_i (first-order correction,
    the remaining error is O(((1 - s) h)^2)); that remainder, estimated as
    (1 - s) h |jump| min(1, h rate_j) with rate_j the neuron's relative speed,
    times the neuron's significance ||theta_j|| / max ||theta|| must stay below
    ``switch_tol``, else the step is rejected and shortened; it also caps the
    growth of the next step (error ~ h^2);
  - sliding (the new side's field points back; needs s_j y_i < 0): the pair
    joins neuron j's sliding set S_j, the neuron is projected onto
    <u_j, x_i> = 0, and from then on sample i enters with the Filippov
    multiplier lambda_ij in (0, 1) that keeps d<u_j, x_i>/dt = 0 (one small
    least-squares solve per sliding neuron and evaluation). A pair leaves S_j
    to the inactive (lambda <= 0) or active (lambda >= 1) side; the time it was
    held past that (lambda linear over the step) counts in the switching error.
  The Cartesian variables (unbalanced networks) slide the same way, on
  <w_j, x_i> = 0; ``sliding='chatter'`` lets sliding pairs chatter instead.
* ReLU alignment phase. While max|f| < ``exact_fmax`` (default rtol) the loss weights
  are constant up to a relative O(max|f|), the neurons decouple and each moves on a
  great circle between pattern switches: ``relu_exact`` advances them exactly (macro
  steps that keep max|f| below the threshold), then the DP5 scheme takes over.
"""
from __future__ import annotations

import math

import numpy as np

from .._validate import check_choice, check_real
from ..model import TwoLayerParams
from ._base import FlowSolver, StepFailure, end_slack, hermite
from .fields import CartesianRep, FlowProblem, NonFiniteError, PolarRep, polar_applicable
from .relu_exact import exact_relu_step
from .switching import NONE, SLIDE, TRANSVERSAL, order_crossings
from .tableaus import DP5, DP5_DENSE

_FAC_MIN, _FAC_MAX, _SAFETY = 0.2, 5.0, 0.9
_NONFINITE_TRIES = 10
_PI_BETA = 0.04


def _fraction_past(z0, z1):
    """Fraction of a step spent past a surface that z crossed linearly from z0 to z1."""
    return np.abs(z1) / np.maximum(np.abs(z0) + np.abs(z1), 1e-300)


def rejected_step_factor(err: float) -> float:
    """Shrink factor of a rejected DP5 step with scaled error ``err`` > 1."""
    return max(_FAC_MIN, _SAFETY * err ** (-1.0 / 5.0))


def accepted_step_factor(err: float, controller: str, err_old: float,
                         rejected_last: bool) -> tuple[float, float]:
    """Growth factor of the next step after an accepted one, and the new ``err_old``.

    'i': the classical h err^(-1/5). 'pi': Gustafsson's PI controller in Hairer's DOPRI5
    form, fac = err^(-(0.2 - 0.75 beta)) err_old^beta with beta = 0.04, and no growth
    right after a rejection; it damps the step-size oscillation that otherwise makes
    about one step in six a rejected one.
    """
    if controller == "i":
        fac = _FAC_MAX if err == 0 else min(_FAC_MAX, max(_FAC_MIN, _SAFETY * err ** -0.2))
        return fac, err_old
    e = max(err, 1e-10)
    fac = _SAFETY * e ** -(0.2 - 0.75 * _PI_BETA) * err_old ** _PI_BETA
    fac = min(_FAC_MAX, max(_FAC_MIN, fac))
    if rejected_last:
        fac = min(fac, 1.0)
    return fac, max(e, 1e-4)


class GradFlowSolver(FlowSolver):
    """Adaptive DP5(4) in polar or relative Cartesian variables, with ReLU pattern control.

    Options
    -------
    rtol: per-neuron relative tolerance per step (default 1e-6).
    switch_tol: tolerance on the pattern-switching error of significant neurons
        (p=1 only; default 1e-4).
    switch_order: 2 (default): the switching error after the jump correction is
        estimated as tau h |jump| min(1, h |rate_j|) (second order); 1: tau h |jump|.
    sliding: 'filippov' (default) or 'chatter' (p=1 only).
    variables: 'auto' (polar for balanced ReLU networks, else Cartesian), 'polar' or
        'cartesian'.
    project: Cartesian variables: after every step (and at save times) project each
        neuron onto ||v_j||^2 - ||w_j||^2 = its initial value, which the flow conserves
        for activations 1-homogeneous in w. 'auto' (default): exactly then; True, False.
    error_weight: 'neuron' (default): the error of neuron j is measured relative to
        itself, ||e_j|| / ||theta_j|| (every neuron accurate, however small); 'network':
        relative to the largest neuron, ||e_j|| / max_k ||theta_k||.
    direction_weight: polar variables only: the error of neuron j is
        sqrt(direction_weight^2 ||e_u||^2 + e_rho^2) (default 1). Direction errors contract
        toward isolated extremal vectors while log-norm errors persist, so p > 2 runs can
        use e.g. 0.1: 0-30% fewer evaluations at equal final error, measured in
        docs/dynamics.md, but a larger error at equal rtol; worse for p = 2 and ReLU.
    controller: 'pi' (default): PI step-size control (Hairer's DOPRI5 form: fewer rejected
        steps; measured 9-35% fewer evaluations at equal error for p > 1, neutral for
        ReLU, docs/dynamics.md); 'i': the classical h_new = h 0.9 err^(-1/5).
    freeze: 'auto' (freeze patterns iff the activation is ReLU), True or False.
    exact_fmax: ReLU in polar variables only: while max_i |f(x_i)| <= exact_fmax the
        flow is advanced by its exact per-neuron solution (great circles between pattern
        switches, ``relu_exact``) with the loss weights frozen per macro step, whose
        relative error is bounded by max|f|. Default None means rtol; 0 disables.
    first_step: initial step (default chosen from the field's size).
    max_step: largest allowed step (default inf).
    """

    name = "gradflow"
    order = 5
    supports_checkpoint = True
    # The embedded 5(4) FSAL pair and its 4th-order continuous extension (rows: stages,
    # columns: powers s^1..s^4). Class data so that a benchmark can try another pair of the
    # same orders in a subclass (benchmarks/p3_alternatives.py); the controller assumes 5(4).
    tableau = DP5
    dense_matrix = DP5_DENSE
    OPTIONS = {"rtol": 1e-6, "switch_tol": 1e-4, "variables": "auto", "freeze": "auto",
               "error_weight": "neuron", "sliding": "filippov", "switch_order": 2,
               "first_step": None, "max_step": math.inf, "exact_fmax": None,
               "direction_weight": 1.0, "controller": "pi", "project": "auto"}

    @classmethod
    def validate_options(cls, o: dict) -> dict:
        o["rtol"] = check_real("rtol", o["rtol"], 1e-14, 1.0)
        o["switch_tol"] = check_real("switch_tol", o["switch_tol"], 0.0, lo_open=True)
        check_choice("variables", o["variables"], ("auto", "polar", "cartesian"))
        check_choice("sliding", o["sliding"], ("filippov", "chatter"))
        if o["switch_order"] not in (1, 2):
            raise ValueError(f"`switch_order` must be 1 or 2, got {o['switch_order']!r}")
        check_choice("error_weight", o["error_weight"], ("network", "neuron"))
        o["direction_weight"] = check_real("direction_weight", o["direction_weight"], 0.0, 1.0,
                                           lo_open=True)
        check_choice("controller", o["controller"], ("i", "pi"))
        check_choice("project", o["project"], ("auto", True, False))
        check_choice("freeze", o["freeze"], ("auto", True, False))
        if o["first_step"] is not None:
            o["first_step"] = check_real("first_step", o["first_step"], 0.0, lo_open=True)
        if o["exact_fmax"] is not None:
            o["exact_fmax"] = check_real("exact_fmax", o["exact_fmax"], 0.0)
        if o["max_step"] != math.inf:
            o["max_step"] = check_real("max_step", o["max_step"], 0.0, lo_open=True)
        return o

    def __init__(self, problem: FlowProblem, params0: TwoLayerParams, t0: float,
                 t_bound: float, **options):
        super().__init__(problem, params0, t0, t_bound, **options)
        o = self.options
        var = o["variables"]
        if var == "auto":
            # polar only where it pays: ReLU (exact alignment phase, Filippov sliding); for
            # p > 1 Cartesian steps were cheaper at equal error (benchmarks/bench_error_norm.py)
            var = ("polar" if problem.is_relu and polar_applicable(problem, params0)
                   else "cartesian")
        project = o["project"]
        if project == "auto":
            project = var == "cartesian" and problem.act.homogeneity == 1.0
        if o["direction_weight"] != 1.0 and var != "polar":
            raise ValueError("`direction_weight` applies to `variables`='polar' only (the "
                             f"{var} variables have no direction/norm split)")
        if project and var == "polar":
            raise ValueError("`project` applies to `variables`='cartesian' (the polar "
                             "variables conserve the invariants by construction)")
        self.rep = (PolarRep(problem, params0) if var == "polar"
                    else CartesianRep(problem, params0, conserve=bool(project)))
        self.variables = var
        self.freeze = problem.is_relu if o["freeze"] == "auto" else bool(o["freeze"])
        if self.freeze and not problem.is_relu:
            raise ValueError("`freeze`=True needs a ReLU activation (prelu with p=1, or relu)")
        self.rtol = o["rtol"]
        self.direction_weight = o["direction_weight"]
        self.y = self.rep.pack(params0)
        h, n = self.rep.h, problem.n
        self.mask = self.rep.preact(self.y) > 0 if self.freeze else None
        self.S = np.zeros((n, h), dtype=bool) if self.freeze else None
        self.filippov = self.freeze and o["sliding"] == "filippov"
        self.s = getattr(self.rep, "s", None)
        self.k, self.loss, self.f = self.rep.field(self.y)
        self.nfev = 1
        self.y_old, self.k_old = self.y, self.k
        self.h = o["first_step"] or self._initial_step()
        self.n_switch_rejected = 0
        self._K = None
        thr = o["rtol"] if o["exact_fmax"] is None else o["exact_fmax"]
        self.exact_fmax = thr
        # exact alignment phase: ReLU, polar variables, single output; left for good once
        # max|f| exceeds the threshold
        self.exact = bool(self.freeze and var == "polar" and thr > 0
                          and self._fmax_bound(self.y) < thr)
        self._ev = 0.0  # switch work of the exact phase, in units of field evaluations
        self._exact_old = None

    def _initial_step(self) -> float:
        """h0 = 0.1 rtol^(1/5) / (largest relative rate of change of a neuron)."""
        rate = float(np.max(self.rep.neuron_error(self.k, self.y, self.y)))
        h = 0.1 * self.rtol ** 0.2 / max(rate, 1e-12)
        return min(h, self.t_bound - self.t) if self.t_bound > self.t else h

    def _omega(self, f) -> np.ndarray:
        """Loss weights -dL/df_i, times the input scale (what multiplies x_i in the field)."""
        _, g = self.problem.dlogits(f)
        om = -g
        return om if self.problem.xscale is None else om * self.problem.xscale

    def _count_switches(self, switches: int) -> None:
        """A switch costs two products with X (n x D): 1/h of a field evaluation."""
        self._ev += switches / self.rep.h
        whole = int(self._ev)
        self.nfev += whole
        self._ev -= whole

    def _leave_exact(self) -> None:
        self.exact = False
        if not self.filippov and self.S.any():  # chattering mode keeps no sliding sets
            self.mask = np.where(self.S, self.rep.preact(self.y) > 0, self.mask)
            self.S = np.zeros_like(self.S)
            self.k, self.loss, self.f = self.rep.field(self.y, self.mask, self.S)
            self.nfev += 1
        self.h = self.options["first_step"] or self._initial_step()

    def _fmax_bound(self, y) -> float:
        """max_i sum_j r_j^2 relu(<u_j, x_i>) >= max|f|, with no cancellation between the
        neurons' signs: max|f| itself can be ~0 while the neurons are not (a duplicated
        neuron with opposite output signs), and then bounds neither the phase nor its growth."""
        U, rho = self.rep.split(y)
        return float(np.max(np.maximum(self.problem.X @ U.T, 0.0) @ np.exp(2.0 * rho)))

    def _exact_step(self) -> bool:
        """One macro step of the exact ReLU alignment flow; False when the phase is over.

        The step H keeps the predicted max|f| below ``exact_fmax``: f grows at most at rate
        2 max_j |a_j| with |a_j|^2 = |du_j/dt|^2 + (drho_j/dt)^2.
        """
        fmax = self._fmax_bound(self.y)
        if fmax >= self.exact_fmax:
            return False
        dU, drho = self.rep.split(self.k)
        amax = float(np.sqrt(np.max(np.sum(dU * dU, axis=1) + drho**2)))
        room = math.log(self.exact_fmax / fmax) if fmax > 0 else math.inf
        if room < 0.05:  # too close to the threshold for a useful step
            return False
        H = min(self.t_bound - self.t, self.options["max_step"],
                room / (2.0 * amax) if amax > 0 else math.inf)
        if not math.isfinite(H):
            H = self.t_bound - self.t
        U, rho = self.rep.split(self.y)
        om = self._omega(self.f)
        U1, rho1, mask1, S1, sw = exact_relu_step(U, rho, self.s, self.problem.X, om,
                                                  self.mask, self.S, H, self.problem.groups)
        y_new = np.concatenate([U1.ravel(), rho1])
        k_new, loss_new, f_new = self.rep.field(y_new, mask1, S1)
        self.nfev += 1
        self._count_switches(sw)
        self._exact_old = (self.mask, self.S, om)
        self.y_old, self.k_old, self.t_old = self.y, self.k, self.t
        self.y, self.k, self.loss, self.f = y_new, k_new, loss_new, f_new
        self.mask, self.S = mask1, S1
        self._K = None
        self.t = self.t_bound if self.t + H >= self.t_bound else self.t + H
        self.n_steps += 1
        return True

    def step(self) -> None:
        if self.exact:
            if self._exact_step():
                return
            self._leave_exact()
        self._exact_old = None
        tab = self.tableau
        rep = self.rep
        mask, S = self.mask, self.S
        nonfinite = 0
        while True:
            h = min(self.h, self.options["max_step"], self.t_bound - self.t)
            if self.t_bound - (self.t + h) <= end_slack(self.t_bound):
                h = self.t_bound - self.t  # no rounding remainder left before t_bound
            if h <= 16 * np.spacing(max(abs(self.t), 1.0)):
                raise StepFailure(f"step size {h:.3g} underflows at t={self.t:.6g}")
            K = [self.k]
            try:
                # overflow in a trial stage is reported as NonFiniteError, not as warnings
                with np.errstate(over="ignore", invalid="ignore"):
                    for i in range(1, tab.stages):
                        yi = self.y + h * sum(tab.A[i, m] * K[m] for m in range(i)
                                              if tab.A[i, m] != 0.0)
                        ki, loss_i, f_i = rep.field(yi, mask, S)
                        self.nfev += 1
                        K.append(ki)
                    y_new = yi  # FSAL: the last stage is evaluated at the new solution
                    err_vec = h * sum(c * k for c, k in zip(tab.b_err, K) if c != 0.0)
                    err = self._error(err_vec, y_new)
                if not math.isfinite(err):
                    raise NonFiniteError("nan", f"error estimate is not finite at t={self.t:.6g}")
            except NonFiniteError:
                # An overlong trial step can overflow where the flow does not (a large
                # first_step at p = 3): reject and shrink. Only a state that stays
                # non-finite over _NONFINITE_TRIES shrinks (h / 5^10) ends the run.
                nonfinite += 1
                if nonfinite > _NONFINITE_TRIES:
                    raise
                self.h = h * _FAC_MIN
                self.n_rejected += 1
                self._rejected_last = True
                continue
            if err > 1.0:
                self.h = h * rejected_step_factor(err)
                self.n_rejected += 1
                self._rejected_last = True
                continue
            y_new = rep.finalize(y_new)
            new = (K[-1], loss_i, f_i, getattr(rep, "last_lambda", None))
            y_plain = y_new
            if self.freeze:
                new = self._update_pattern(y_new, new, h)
                if new is None:  # a significant neuron crossed too far: shorter step
                    continue
            break
        k_new, loss_new, f_new, y_new = new[0], new[1], new[2], new[4] if len(new) > 4 else y_new
        self.y_old, self.k_old, self.t_old = self.y, self.k, self.t
        self.y, self.k, self.loss, self.f = y_new, k_new, loss_new, f_new
        self._K = np.array(K)
        # switch corrections and sliding projections move the step end off the RK
        # polynomial: the dense output blends them in linearly, so it ends at the state
        self._dense_fix = None if y_new is y_plain else y_new - y_plain
        self.t = self.t_bound if self.t + h >= self.t_bound else self.t + h
        self.n_steps += 1
        fac = self._step_factor(err)
        if self.freeze and self._sw > 0:
            # the switching error also sets the next step (it grows like h^order)
            q = self.options["switch_order"]
            fac = min(fac, max(_FAC_MIN, _SAFETY * (self.options["switch_tol"] / self._sw)
                               ** (1.0 / q)))
        self.h = h * fac

    _sw = 0.0
    n_induced = 0  # pairs pushed across their surface by a switch correction (diagnostic)
    _dense_fix = None
    _err_old = 1e-4
    _rejected_last = False

    def _step_factor(self, err: float) -> float:
        """``accepted_step_factor`` with this solver's controller and its PI memory."""
        fac, self._err_old = accepted_step_factor(err, self.options["controller"],
                                                  self._err_old, self._rejected_last)
        self._rejected_last = False
        return fac

    def _z_at_start(self, ii, jj) -> np.ndarray:
        """<w_j, x_i> (polar: <u_j, x_i>) at the step start, for the pairs (ii, jj) only."""
        return (self.problem.X[ii] * self.rep.split(self.y)[0][jj]).sum(axis=1)

    def _switch_rejects(self, per_neuron, y_new, h: float) -> bool:
        """Record the step's switching error (max_j of neuron j's error times its
        significance) and refuse the step (shortening it) when it exceeds switch_tol."""
        self._sw = sw = float(np.max(per_neuron * self.rep.significance(y_new)))
        tol = self.options["switch_tol"]
        if not sw > tol:
            return False
        self.h = h * min(0.9, max(0.1, 0.9 * tol / sw))
        self.n_rejected += 1
        self.n_switch_rejected += 1
        return True

    def _lambda_at_start(self) -> np.ndarray:
        """Filippov multipliers (n, h) at the step start (one field evaluation per step start)."""
        if self._lam_start is None or self._lam_start[0] != self.t:
            self.rep.field(self.y, self.mask, self.S)
            self.nfev += 1
            self._lam_start = (self.t, self.rep.last_lambda)
        return self._lam_start[1]

    def _release_error(self, out_lo, out_hi, lam, y_new, f_new, h, other_event):
        """Per-neuron error of releasing sliding pairs only at the step end.

        Past the time where its multiplier lambda left [0, 1] a pair was still held on its
        surface: the sliding field differs from the released side's by |lambda - bound| x
        the pair's push. With lambda linear in time between the step's ends the time past
        is the fraction tau = |lambda1 - bound| / |lambda1 - lambda0| of the step and the
        error the triangle tau h |lambda1 - bound| |push| / 2; where another event of the
        neuron in the same step made lambda jump, the rectangle (no 1/2). Pairs that only
        began to slide in this step count the whole step.
        """
        i3, j3 = np.nonzero(out_lo | out_hi)
        lam1 = lam[i3, j3]
        past = np.abs(lam1 - np.where(out_hi[i3, j3], 1.0, 0.0))
        was = self.S[i3, j3]
        tau = np.ones(len(i3))
        if was.any():
            lam0 = self._lambda_at_start()[i3[was], j3[was]]
            tau[was] = np.clip(past[was] / np.maximum(np.abs(lam1[was] - lam0), 1e-300),
                               0.0, 1.0)
        shape = np.where(other_event[j3] | ~was, 1.0, 0.5)
        _, g = self.problem.dlogits(f_new)
        push = self.rep.jump(y_new, np.abs(g))[i3, j3]
        return np.bincount(j3, weights=shape * tau * h * past * push, minlength=self.rep.h)

    _lam_start = None

    def _order_crossings(self, y_new, ii, jj, z0, z1, crossed, slide_ok, g, h):
        """``switching.order_crossings`` for every neuron with crossed pairs.

        Returns each pair's kind and crossing fraction and the corrections dY (h, D).
        """
        X, rep = self.problem.X, self.rep
        kind = np.full(len(ii), NONE)
        s_ev = np.full(len(ii), np.nan)
        dY = np.zeros((rep.h, X.shape[1]))
        push = rep.push_vectors(y_new, ii, jj, g)
        for j in np.unique(jj[crossed]):
            sel = np.nonzero(crossed & (jj == j))[0]
            held = np.nonzero(self.S[:, j])[0]  # surfaces it already slides on
            Js = rep.push_vectors(y_new, held, np.full(len(held), j), g)
            kind[sel], s_ev[sel], dY[j] = order_crossings(
                X[ii[sel]], z0[sel], z1[sel], push[sel], slide_ok[sel], h, X[held], Js)
        return kind, s_ev, dY

    def _update_pattern(self, y_new, new, h):
        """Pattern bookkeeping after an accepted RK step (p = 1); None means reject.

        Entries whose sign changed are replayed in time order (``_order_crossings``) and
        classified: transversal (the new side's field carries on) -> corrected, error
        tau h |jump| x significance checked against switch_tol; sliding (it points back,
        only possible when s_j y_i < 0) -> the pair joins the sliding set and the neuron
        is projected onto the surface. Sliding pairs whose multiplier lambda left (0, 1)
        are released to that side, their time held past it counted (``_release_error``).
        """
        rep, pb = self.rep, self.problem
        mask, S = self.mask, self.S
        Z1 = rep.preact(y_new)
        changed = ((Z1 > 0) != mask) & ~S
        self._sw = 0.0
        mask1, S1 = mask.copy(), S.copy()
        k_new, loss_new, f_new, lam = new
        per_neuron = np.zeros(rep.h)  # switching error of each neuron in this step
        if changed.any():
            mask1[changed] = Z1[changed] > 0
            k_new, loss_new, f_new = rep.field(y_new, mask1, S1)
            self.nfev += 1
            ii, jj = np.nonzero(changed)
            z1 = Z1[ii, jj]
            z0 = self._z_at_start(ii, jj)
            # a pair whose pattern disagreed with its sign already at the step start (left a
            # sliding surface) did not cross during this step: resynchronise it, no error
            crossed = (z0 > 0) != (z1 > 0)
            _, g = pb.dlogits(f_new)
            jump = rep.jump(y_new, np.abs(g))[ii, jj]
            # a new side that points back makes a sliding pair (Filippov); for balanced
            # neurons only possible for s_j y_i < 0, a check against rounding
            slide_ok = crossed & self.filippov
            if self.s is not None:
                slide_ok &= self.s[jj] * pb.y[ii] < 0
            kind, s_ev, dY = self._order_crossings(y_new, ii, jj, z0, z1, crossed, slide_ok,
                                                   g, h)
            transversal, slide = kind == TRANSVERSAL, kind == SLIDE
            # crossed in the frozen step but not in the replay (an earlier switch of the
            # neuron turned it away): the pattern stays
            stay = crossed & (kind == NONE)
            mask1[ii[stay], jj[stay]] = mask[ii[stay], jj[stay]]
            tau = np.where(transversal, 1.0 - s_ev, 0.0)  # fraction of the step past it
            # error of neuron j: time on the wrong side x jump (transversal), or the distance
            # it is moved back onto the surface (a new sliding pair)
            if self.options["switch_order"] == 2:
                # after the correction what remains is second order: the jump itself changes
                # over the tau h past the surface at the neuron's relative rate of change
                # the larger of the rates after and before the step: a neuron that just
                # lost its last active sample has zero rate after it, which hid its error
                rate = np.maximum(rep.neuron_error(k_new, y_new, y_new),
                                  rep.neuron_error(self.k, self.y, self.y))[jj]
                jump = jump * np.minimum(1.0, h * rate)
            # the distance moved back onto a surface relative to the neuron (u is a unit
            # vector; in Cartesian variables the neuron's size ||(w_j, v_j)||)
            wn = np.ones(rep.h) if self.variables == "polar" else rep.neuron_sizes(y_new)
            per_pair = np.where(transversal, tau * h * jump,
                                np.where(slide, np.abs(z1) / (pb.xnorm[ii] * wn[jj]), 0.0))
            per_neuron = np.bincount(jj, weights=per_pair, minlength=rep.h)
            if self._switch_rejects(per_neuron, y_new, h):
                return None
            # Switched pairs spent tau h on their new side with the old pattern: add the
            # missing pushes (first-order correction, leaves an O((tau h)^2) error).
            if np.any(dY):
                # back onto the conserved v^2 - ||w||^2 (Cartesian) / unit sphere (polar):
                # the pushes are added after the step's own projection
                y_new = rep.finalize(rep.shift(y_new, dY))
            if np.any(slide):
                S1[ii[slide], jj[slide]] = True
                if pb.groups is not None:  # a shared surface: its other samples slide too
                    S1 = pb.groups.spread(S1)
            if S1.any():
                y_new = rep.project_sliding(y_new, S1)
            if np.any(dY) or S1.any() or np.any(stay):
                # the corrections move other pairs too: take the pattern of the corrected state
                free = ~S1
                Zc = rep.preact(y_new)
                induced = free & ((Zc > 0) != mask1)
                if induced.any():
                    # A correction pushed another sample of the neuron across its surface (a
                    # switch's jump moves the neuron toward it). That sample spent part of
                    # the step on its new side with no correction of its own: a first-order
                    # error, time on the new side x jump. The corrected path from the step
                    # start bends toward the new side, so it crosses no earlier than the
                    # chord from z0 to z_c: that chord's time bounds the error.
                    i2, j2 = np.nonzero(induced)
                    tau2 = _fraction_past(self._z_at_start(i2, j2), Zc[i2, j2])
                    jump2 = rep.jump(y_new, np.abs(g))[i2, j2]
                    half = 0.5 * tau2 * h
                    per_neuron = per_neuron + np.bincount(j2, weights=half * jump2,
                                                          minlength=rep.h)
                    self.n_induced += int(induced.sum())
                    if self._switch_rejects(per_neuron, y_new, h):
                        return None
                    flip2 = np.where(Zc[i2, j2] > 0, 1.0, -1.0)
                    y_new = rep.finalize(rep.add_jump(y_new, i2, j2, half * flip2, g))
                    Zc = rep.preact(y_new)
                mask1[free] = (Zc > 0)[free]
                k_new, loss_new, f_new = rep.field(y_new, mask1, S1)
                self.nfev += 1
            lam = getattr(rep, "last_lambda", None)
        if S1.any() and not changed.any():
            # keep sliding neurons exactly on their surfaces (removes the O(rtol) drift)
            y_new = rep.project_sliding(y_new, S1)
        if S1.any() and lam is not None:
            out_lo, out_hi = S1 & (lam <= 0.0), S1 & (lam >= 1.0)
            if out_lo.any() or out_hi.any():
                per_neuron = per_neuron + self._release_error(
                    out_lo, out_hi, lam, y_new, f_new, h, np.any(changed, axis=0))
                if self._switch_rejects(per_neuron, y_new, h):
                    return None
                S1 &= ~(out_lo | out_hi)
                mask1[out_lo], mask1[out_hi] = False, True
                k_new, loss_new, f_new = rep.field(y_new, mask1, S1)
                self.nfev += 1
        self.mask, self.S = mask1, S1
        return (k_new, loss_new, f_new, None, y_new)

    def _error(self, e, y_new) -> float:
        """max_j weight_j ||e_j||_rel / rtol (see ``error_weight``)."""
        # only the polar variables split a neuron into direction and log-norm
        kw = {"direction_weight": self.direction_weight} if self.variables == "polar" else {}
        err = self.rep.neuron_error(e, self.y, y_new, **kw)
        if self.options["error_weight"] == "network":
            err = err * np.maximum(self.rep.significance(self.y), self.rep.significance(y_new))
        return float(np.max(err)) / self.rtol

    def params(self) -> TwoLayerParams:
        return self.rep.unpack(self.y)

    def dense(self, ts) -> list[TwoLayerParams]:
        """The pair's 4th-order continuous extension in the integration variables.

        After an exact alignment step: the exact flow from the step start (its switch work
        counts in ``nfev``).
        """
        h = self.t - self.t_old
        if self._exact_old is not None:
            return self._dense_exact(ts)
        if getattr(self, "_K", None) is None:  # no stage data (e.g. just resumed): Hermite
            ys = hermite(ts, self.t_old, self.t, self.y_old, self.y, self.k_old, self.k)
            return [self.rep.unpack(self.rep.finalize(y)) for y in ys]
        out = []
        for t in np.atleast_1d(ts):
            s = 0.0 if h == 0 else (t - self.t_old) / h
            coef = self.dense_matrix @ (s ** np.arange(1, 5))
            # finalize: interpolated states get the same projection as step ends
            y = self.y_old + h * (coef @ self._K)
            if self._dense_fix is not None:
                y = y + s * self._dense_fix
            out.append(self.rep.unpack(self.rep.finalize(y)))
        return out

    def _dense_exact(self, ts) -> list[TwoLayerParams]:
        ts = np.atleast_1d(np.asarray(ts, dtype=float))
        mask, S, om = self._exact_old
        U, rho = self.rep.split(self.y_old)
        t_cur, out = self.t_old, {}
        for k in np.argsort(ts):
            U, rho, mask, S, sw = exact_relu_step(U, rho, self.s, self.problem.X, om, mask, S,
                                                  max(float(ts[k]) - t_cur, 0.0),
                                                  self.problem.groups)
            self._count_switches(sw)
            t_cur = max(float(ts[k]), t_cur)
            out[k] = self.rep.unpack(np.concatenate([U.ravel(), rho]))
        return [out[k] for k in range(len(ts))]

    def state_dict(self) -> dict:
        return {**self._counters(), "y": self.y, "k": self.k, "f": self.f, "y_old": self.y_old,
                "k_old": self.k_old, "h": self.h, "n_switch_rejected": self.n_switch_rejected,
                "mask": self.mask if self.freeze else np.zeros(0),
                "S": self.S if self.freeze else np.zeros(0),
                "K": self._K if getattr(self, "_K", None) is not None else np.zeros(0),
                "dense_fix": np.zeros(0) if self._dense_fix is None else self._dense_fix,
                "n_induced": self.n_induced,
                "exact": self.exact, "ev": self._ev, "err_old": self._err_old,
                "rejected_last": self._rejected_last,
                "exact_old": (np.concatenate([self._exact_old[0].ravel(), self._exact_old[1].ravel(),
                                              self._exact_old[2]]).astype(float)
                              if self._exact_old is not None else np.zeros(0))}

    def load_state_dict(self, s: dict) -> None:
        self._load_counters(s)
        self.y, self.k, self.f = s["y"].copy(), s["k"].copy(), s["f"].copy()
        self.y_old, self.k_old = s["y_old"].copy(), s["k_old"].copy()
        self.h, self.n_switch_rejected = float(s["h"]), int(s["n_switch_rejected"])
        self.n_induced = int(s.get("n_induced", 0))
        self._K = s["K"].copy() if s["K"].size else None
        fix = s.get("dense_fix", np.zeros(0))
        self._dense_fix = fix.copy() if fix.size else None
        if self.freeze:
            self.mask, self.S = s["mask"].astype(bool), s["S"].astype(bool)
        self.exact, self._ev = bool(s.get("exact", False)), float(s.get("ev", 0.0))
        self._err_old = float(s.get("err_old", 1e-4))
        self._rejected_last = bool(s.get("rejected_last", False))
        old = s.get("exact_old", np.zeros(0))
        self._exact_old = None
        if old.size:
            nh = self.mask.size
            self._exact_old = (old[:nh].reshape(self.mask.shape) > 0.5,
                               old[nh:2 * nh].reshape(self.mask.shape) > 0.5, old[2 * nh:].copy())
