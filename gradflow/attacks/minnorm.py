"""Minimum-norm l2 attack: search, ray root-finding and boundary refinement.

For a point x with margin m(x) > 0 it looks for the smallest ||d||_2 with
m(x + d) < 0, in three stages; every stage keeps a verified adversarial point,
so the final distance is always an upper bound on the true radius.

1. Starts.
   - DeepFool steps (Moosavi-Dezfooli et al. 2016) from x on the margin:
     d <- d - (1 + overshoot) m(x+d) / ||g||^2 g, g = grad m(x + d), until m < 0.
   - Anchor points: the ``anchor_starts`` nearest anchors (default: the batch
     itself) that the model puts in another class than y. Their segment from x
     crosses the decision boundary, which is found without gradients. Anchors
     matter where gradients are blind, e.g. at a subclass centre of
     F_3 = sum_{k+} relu(x_k)^3 - sum_{k-} relu(x_k)^3, where every directional
     derivative towards the other class vanishes.
2. Ray root-finding. Along a unit direction u, the boundary distance
   r(u) = min{t > 0 : m(x + t u) <= 0} is bracketed and located by the Illinois
   variant of regula falsi (forward passes only); the adversarial end of the
   bracket is kept, so m(x + t u) < 0 is verified.
3. Refinement. A boundary point z = x + r(u) u is a local minimum of the
   distance only if u = -g/||g|| with g = grad m(z) (the KKT condition). Each
   refinement step moves the direction towards that target,
   u' = normalise(u + beta (-g/||g|| - u)), finds r(u') and keeps u' if
   r(u') < r(u); beta grows by 1.5 after a success and halves after a failure
   (a derivative-free safeguard for kinks of piecewise-linear networks). The
   first guess of r(u') is the linearisation t = <g, z - x> / <g, u'>.

Each sample records which start produced its final point (``info['method']``:
'deepfool' or 'anchor') and the cosine between u and -g/||g|| at the last point
where the refinement evaluated g (``info['kkt_cos']``; 1 at a smooth local minimum).
When the last refinement step was accepted that is the point before it, so the value
is a diagnostic of the previous direction, not a certificate of the final one; NaN
without refinement (``refine_steps=0``).
"""
from __future__ import annotations

import torch

from .._validate import check_int, check_real
from .base import Attack, AttackContext, expand_like
from .norms import unit_rows

METHODS = ("deepfool", "anchor")


def _unit(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(d / ||d||, ||d||) per row; zero rows give a zero direction (see ``unit_rows``)."""
    return unit_rows(d), torch.linalg.vector_norm(d.reshape(d.shape[0], -1), dim=1)


def ray_root(ctx: AttackContext, x, u, t_lo, m_lo, t_hi, m_hi, idx, iters: int = 12,
             rtol: float = 1e-7):
    """Shrink brackets [t_lo, t_hi] with m(x + t_lo u) > 0 > m(x + t_hi u), per row.

    Illinois regula falsi, trials clamped 1e-4 of the width inside the bracket; returns the adversarial end
    t_hi (verified m < 0) and its margin. Rows whose bracket is already narrower
    than ``rtol * t_hi`` are not evaluated any more.
    """
    side = torch.zeros_like(t_lo)  # +1: last update moved t_hi, -1: moved t_lo
    fl, fh = m_lo.clone(), m_hi.clone()
    for _ in range(iters):
        act = (t_hi - t_lo) > rtol * t_hi
        if not act.any():
            break
        a = torch.nonzero(act).flatten()
        tl, th, ml, mh = t_lo[a], t_hi[a], fl[a], fh[a]
        t = th - mh * (th - tl) / (mh - ml)
        w = th - tl
        # keep the trial strictly inside the bracket; a secant that lands on an end
        # (the root is already known to about 1e-4 w) still shrinks the bracket 1e4-fold
        t = torch.where(torch.isfinite(t), t, 0.5 * (tl + th))
        t = torch.minimum(torch.maximum(t, tl + 1e-4 * w), th - 1e-4 * w)
        m = ctx.margin(x[a] + expand_like(t, x[a]) * u[a], idx[a])
        adv = m < 0
        s = side[a]
        # Illinois: halve the stale end's value when the same end moves twice in a row
        ml = torch.where(adv & (s > 0), 0.5 * ml, ml)
        mh = torch.where(~adv & (s < 0), 0.5 * mh, mh)
        t_hi[a] = torch.where(adv, t, th)
        fh[a] = torch.where(adv, m, mh)
        m_hi[a] = torch.where(adv, m, m_hi[a])
        t_lo[a] = torch.where(adv, tl, t)
        fl[a] = torch.where(adv, ml, m)
        side[a] = torch.where(adv, 1.0, -1.0).to(side.dtype)
    return t_hi, m_hi


def past_ties(ctx: AttackContext, x, u, r, ok) -> torch.Tensor:
    """x + r u for the rows in ``ok`` (x elsewhere), nudged outwards until the whole batch
    evaluates them as adversarial.

    A root found row by row can evaluate to a tie (m = 0) in a batch of another
    composition (round-off in the last bits). The nudge scales with the dtype (1 + 1e-9
    rounds to 1 in float32): 4, 16, 64, 256, 1024 ulps, at most 1364 ulps in all (1.6e-4
    relative in float32, 3e-13 in float64); one or two settle all ties in practice.
    """
    r_safe = torch.where(ok, r, torch.zeros_like(r))
    x_adv = x + expand_like(r_safe, x) * u
    ulp = torch.finfo(x.dtype).eps
    for k in range(5):
        bad = ok & ~(ctx.margin(x_adv) < 0)
        if not bad.any():
            break
        r_safe = torch.where(bad, r_safe * (1 + 4.0 ** (k + 1) * ulp), r_safe)
        x_adv = x + expand_like(r_safe, x) * u
    return torch.where(expand_like(ok, x), x_adv, x)


class MinNormL2(Attack):
    """Minimum-norm l2 attack giving a verified per-sample radius (upper bound).

    Parameters (keyword-only)
    -------------------------
    search_steps: DeepFool steps in stage 1 (overshoot ``overshoot``).
    anchors: tensor (N, ...) of candidate points of other classes; default the batch.
    anchor_starts: how many nearest other-class anchors to try per sample.
    refine_steps: gradient evaluations spent on stage 3 per refined start.
    root_iters, rtol: ray root-finding iterations and relative bracket width.
    refine_all: refine both the best DeepFool and the best anchor start (default),
    else only the better of the two.
    """

    name = "minnorm"
    minimum_norm = True
    norms = ("l2",)

    def __init__(self, *, search_steps: int = 20, overshoot: float = 0.02,
                 anchors: torch.Tensor | None = None, anchor_starts: int = 8,
                 refine_steps: int = 40, root_iters: int = 12, rtol: float = 1e-7,
                 refine_all: bool = True, seed: int = 0, bounds=None, norm="l2"):
        super().__init__(norm=norm, seed=seed, bounds=bounds)
        if bounds is not None:
            raise ValueError("`bounds` is not supported by MinNormL2 (rays may leave the box); "
                             "use PGD with bounds instead")
        self.search_steps = check_int("search_steps", search_steps, 0)
        self.overshoot = check_real("overshoot", overshoot, 0.0, 1.0)
        if anchors is not None and not (isinstance(anchors, torch.Tensor) and anchors.dim() >= 2
                                        and torch.is_floating_point(anchors)):
            raise ValueError("`anchors` must be None or a floating-point torch tensor of shape "
                             f"(N, ...) like the inputs, got "
                             f"{getattr(anchors, 'shape', type(anchors).__name__)}")
        self.anchors = anchors
        self.anchor_starts = check_int("anchor_starts", anchor_starts, 0)
        self.refine_steps = check_int("refine_steps", refine_steps, 0)
        self.root_iters = check_int("root_iters", root_iters, 1)
        self.rtol = check_real("rtol", rtol, 0.0, 0.1, lo_open=True)
        self.refine_all = bool(refine_all)

    # -- stage 1 -----------------------------------------------------------------------
    def _deepfool(self, ctx, x, m0):
        n = x.shape[0]
        d = torch.zeros_like(x)
        found = torch.zeros(n, dtype=torch.bool, device=x.device)
        idx = torch.nonzero(m0 > 0).flatten()
        for _ in range(self.search_steps):
            if idx.numel() == 0:
                break
            m, g = ctx.margin_grad(x[idx] + d[idx], idx)
            hit = m < 0
            found[idx[hit]] = True
            gn2 = g.reshape(g.shape[0], -1).pow(2).sum(1)
            ok = ~hit & (gn2 > 0)
            idx, m, g, gn2 = idx[ok], m[ok], g[ok], gn2[ok]
            step = (1.0 + self.overshoot) * m / gn2
            d[idx] = d[idx] - expand_like(step, g) * g
        if idx.numel():
            found[idx] = ctx.margin(x[idx] + d[idx], idx) < 0
        return d, found

    def _anchor_starts(self, ctx, x, y, m0):
        """Directions and lengths to the nearest anchors of another class (inf if none)."""
        n = x.shape[0]
        best_u = torch.zeros_like(x)
        best_t = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
        if self.anchor_starts == 0:
            return best_u, best_t
        A = x if self.anchors is None else self.anchors.to(device=x.device, dtype=x.dtype)
        if A.shape[1:] != x.shape[1:]:
            raise ValueError(f"`anchors` must have shape (N, {', '.join(map(str, x.shape[1:]))}) "
                             f"to match the inputs `x`, got {tuple(A.shape)}")
        with torch.no_grad():
            fA = ctx.model(A)
        if fA.dim() == 1:
            predA = torch.sign(fA)  # class of anchor; other class for row i if predA != y_i
            other = predA[None, :] != y[:, None].to(fA.dtype)
            other &= predA[None, :] != 0
        else:
            other = fA.argmax(1)[None, :] != y[:, None]
        flatx, flatA = x.reshape(n, -1), A.reshape(A.shape[0], -1)
        dist = torch.cdist(flatx, flatA)
        dist = torch.where(other, dist, torch.full_like(dist, float("inf")))
        k = min(self.anchor_starts, A.shape[0])
        dk, jk = torch.topk(dist, k, dim=1, largest=False)
        for c in range(k):
            rows = torch.nonzero(torch.isfinite(dk[:, c]) & (m0 > 0)).flatten()
            if rows.numel() == 0:
                continue
            u, t = _unit(A[jk[rows, c]] - x[rows])
            mh = ctx.margin(x[rows] + expand_like(t, u) * u, rows)
            ok = mh < 0  # the anchor itself is adversarial for this label
            rows, u, t, mh = rows[ok], u[ok], t[ok], mh[ok]
            t, _ = ray_root(ctx, x[rows], u, torch.zeros_like(t), m0[rows].clone(), t.clone(),
                            mh, rows, self.root_iters, self.rtol)
            better = t < best_t[rows]
            best_t[rows[better]] = t[better]
            best_u[rows[better]] = u[better]
        return best_u, best_t

    # -- stage 3 -----------------------------------------------------------------------
    def _refine(self, ctx, x, u, r, m0, rows):
        """Refine boundary points x + r u of ``rows``; returns (u, r, kkt_cos)."""
        u, r = u.clone(), r.clone()
        beta = torch.ones_like(r)
        cos = torch.full_like(r, float("nan"))
        idx = torch.arange(rows.numel(), device=x.device)
        for _ in range(self.refine_steps):
            if idx.numel() == 0:
                break
            xa, ua, ra, g_rows = x[idx], u[idx], r[idx], rows[idx]
            z = xa + expand_like(ra, xa) * ua
            m, g = ctx.margin_grad(z, g_rows)
            v, gn = _unit(-g)
            flat = lambda t: t.reshape(t.shape[0], -1)  # noqa: E731
            cos[idx] = (flat(v) * flat(ua)).sum(1)
            live = gn > 0
            ba = beta[idx]
            un, _ = _unit(ua + expand_like(ba, ua) * (v - ua))
            # linearised boundary distance along u': <g, z - x> / <g, u'>
            gu = (flat(g) * flat(un)).sum(1)
            t_est = ra * (flat(g) * flat(ua)).sum(1) / gu
            t_est = torch.where((gu < 0) & torch.isfinite(t_est) & (t_est > 0), t_est, ra)
            # bracket around the guess, then around [0, 1.5 r] as a fallback
            t_hi = torch.minimum(t_est * 1.001, ra * 1.5)
            m_hi = ctx.margin(xa + expand_like(t_hi, xa) * un, g_rows)
            t_lo = t_est * 0.999
            m_lo = ctx.margin(xa + expand_like(t_lo, xa) * un, g_rows)
            lo_bad = (m_lo <= 0) | (t_lo >= t_hi)
            t_lo = torch.where(lo_bad, torch.zeros_like(t_lo), t_lo)
            m_lo = torch.where(lo_bad, m0[g_rows], m_lo)
            ok = (m_hi < 0) & live & (t_hi < ra)
            t_new = t_hi.clone()
            if ok.any():
                a = torch.nonzero(ok).flatten()
                t_new[a], _ = ray_root(ctx, xa[a], un[a], t_lo[a], m_lo[a], t_hi[a].clone(),
                                       m_hi[a], g_rows[a], self.root_iters, self.rtol)
            better = ok & (t_new < ra)
            u[idx[better]] = un[better]
            r[idx[better]] = t_new[better]
            beta[idx] = torch.where(better, torch.clamp(1.5 * ba, max=1.0), 0.5 * ba)
            # stop rows whose step has collapsed or that already satisfy KKT tightly
            done = (beta[idx] < 1e-4) | ~live | (cos[idx] > 1 - 1e-12)
            idx = idx[~done]
        return u, r, cos

    def _run(self, ctx: AttackContext, x, y, eps):
        n = x.shape[0]
        m0 = ctx.margin(x)
        d, found = self._deepfool(ctx, x, m0)
        # boundary along the DeepFool direction
        u_df, t_df = _unit(d)
        t_df = torch.where(found, t_df, torch.full_like(t_df, float("inf")))
        rows = torch.nonzero(found).flatten()
        if rows.numel():
            mh = ctx.margin(x[rows] + d[rows], rows)
            t_df[rows], _ = ray_root(ctx, x[rows], u_df[rows], torch.zeros_like(t_df[rows]),
                                     m0[rows].clone(), t_df[rows].clone(), mh, rows,
                                     self.root_iters, self.rtol)
        u_an, t_an = self._anchor_starts(ctx, x, y, m0)
        starts = [(u_df, t_df), (u_an, t_an)]
        if not self.refine_all:
            pick = t_an < t_df
            u1 = torch.where(expand_like(pick, x), u_an, u_df)
            starts = [(u1, torch.minimum(t_an, t_df))]
            labels = [torch.where(pick, 1, 0)]
        else:
            labels = [torch.zeros(n, dtype=torch.long, device=x.device),
                      torch.ones(n, dtype=torch.long, device=x.device)]
        best_r = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
        best_u = torch.zeros_like(x)
        method = torch.full((n,), -1, dtype=torch.long, device=x.device)
        kkt = torch.full((n,), float("nan"), dtype=x.dtype, device=x.device)
        for (u0, t0), lab in zip(starts, labels):
            rows = torch.nonzero(torch.isfinite(t0)).flatten()
            if rows.numel() == 0:
                continue
            u, r, cos = self._refine(ctx, x[rows], u0[rows], t0[rows], m0, rows)
            better = r < best_r[rows]
            b = rows[better]
            best_r[b], best_u[b], method[b], kkt[b] = r[better], u[better], lab[b], cos[better]
        if eps is not None:  # a budget caps the search: points beyond it do not count
            best_r = torch.where(best_r <= eps, best_r, torch.full_like(best_r, float("inf")))
        ok = torch.isfinite(best_r)
        ctx.info.update({"method": [METHODS[i] if i >= 0 else "none" for i in method.tolist()],
                           "kkt_cos": kkt})
        return past_ties(ctx, x, best_u, best_r, ok)
