"""Animated GIF of neuron directions moving during the alignment phase (pillow writer)."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.animation import FuncAnimation, PillowWriter

from ..metrics.alignment import alignment_end
from ..metrics.trajectory import Trajectory
from .dynamics import _centre_points, draw_directions, plane_basis
from .style import paper_style

MAX_GIF_BYTES = 2_000_000


def animate_neuron_directions(traj: Trajectory, out: str | os.PathLike, *,
                              plane=("mubar_+", "mubar_-"), n_frames: int = 24, fps: int = 6,
                              t_stop: float | None = None, size_in: float = 2.6,
                              dpi: int = 80) -> Path:
    """Write a GIF of the projected directions u_j(t) (see ``plot_neuron_directions``).

    Frames are the snapshots nearest to ``n_frames`` log-spaced times from the
    first positive time to ``t_stop`` (default: 1.5 x the alignment end, capped
    at the last snapshot). Small by construction (a ``size_in`` inch square at
    ``dpi``, few frames); raises ValueError if the file exceeds 2 MB anyway.
    Returns the path (suffix forced to .gif).
    """
    if not isinstance(n_frames, int) or n_frames < 2 or n_frames > 200:
        raise ValueError(f"`n_frames` must be an integer in [2, 200], got {n_frames!r}")
    out = Path(out).with_suffix(".gif")
    out.parent.mkdir(parents=True, exist_ok=True)
    basis, labels = plane_basis(traj, plane)
    pts = _centre_points(traj, basis)
    pos = np.nonzero(traj.t > 0)[0]
    t0 = traj.t[pos[0]] if pos.size else traj.t[0]
    if t_stop is None:
        t_align, _ = alignment_end(traj)
        t_stop = 1.5 * t_align if np.isfinite(t_align) else traj.t[-1]
    t_stop = min(float(t_stop), float(traj.t[-1]))
    times = np.geomspace(t0, t_stop, n_frames) if t0 > 0 else np.linspace(t0, t_stop, n_frames)
    frames = list(dict.fromkeys(traj.index_at_time(t) for t in times))  # unique, ordered
    with paper_style():
        fig, ax = plt.subplots(figsize=(size_in, size_in), dpi=dpi, layout="constrained")

        def draw(k):
            ax.clear()
            draw_directions(ax, traj, frames[k], basis, labels, pts)
            ax.set_xlabel(rf"$e_1$ = {labels[0]}", fontsize=7)
            ax.set_ylabel(rf"$e_2$ = {labels[1]}", fontsize=7)
            ax.set_title(f"$t$ = {traj.t[frames[k]]:.3g}", fontsize=7)

        anim = FuncAnimation(fig, draw, frames=len(frames))
        anim.save(out, writer=PillowWriter(fps=fps), dpi=dpi)
        plt.close(fig)
    size = out.stat().st_size
    if size > MAX_GIF_BYTES:
        raise ValueError(f"GIF is {size} bytes > {MAX_GIF_BYTES}; lower `n_frames`, `size_in` "
                         "or `dpi`")
    return out
