"""Draw the figure gallery from saved results only (no simulation here).

Inputs (written by make_demo_runs.py / make_demo_study.py, or by the studies):
    <runs>/traj_p1.npz, <runs>/traj_p3.npz   Trajectory files
    <runs>/paper_demo.npz                     paper-figure results (optional)
Outputs: <out>/*.png, *.pdf and neuron_directions_p1.gif; with --docs, small
PNG copies of a few figures in docs/img/.

    python3 figures/make_gallery.py [--runs figures/out/runs] [--out figures/out/gallery] [--docs]
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from gradflow import plots
from gradflow.metrics import Trajectory, load_paper_results

ROOT = Path(__file__).resolve().parent
DOC_FIGURES = ("trajectories_p1", "trajectories_p3", "directions_p1", "directions_p3",
               "heatmap_p3_times", "loss_norm_p3", "paper_demo")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=ROOT / "out" / "runs")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "gallery")
    ap.add_argument("--docs", action="store_true", help="copy a few PNGs to docs/img/")
    args = ap.parse_args(argv)
    out = args.out
    for p in (1, 3):
        tr = Trajectory.load(args.runs / f"traj_p{p}.npz")
        plots.plot_neuron_trajectories(tr, out=out / f"trajectories_p{p}")
        plots.plot_neuron_directions(tr, out=out / f"directions_p{p}")
        plots.plot_cosine_heatmap(tr, out=out / f"heatmap_p{p}")
        plots.plot_contributions(tr, out=out / f"contributions_p{p}")
        plots.plot_loss_and_norm(tr, out=out / f"loss_norm_p{p}")
        if p == 3:
            plots.plot_neuron_directions(tr, plane=("mu_1", "mu_2"), out=out / "directions_p3_mu12")
            t = tr.t
            plots.plot_cosine_heatmap(tr, times=[t[t > 0][0] * 20, t[-1] / 2.5, t[-1]],
                                      out=out / "heatmap_p3_times")
        gif = plots.animate_neuron_directions(tr, out / f"neuron_directions_p{p}.gif")
        print(f"{gif}: {gif.stat().st_size / 1e3:.0f} kB")
    paper = args.runs / "paper_demo.npz"
    if paper.exists():
        res = load_paper_results(paper)
        plots.paper_figure(res, out=out / "paper_demo")
        ps = list(res["ps"])
        plots.plot_robust_accuracy(res["radii"], {p: res["robust_accuracy"][i]
                                                  for i, p in enumerate(ps)},
                                   K=int(res["K"]), out=out / "robust_accuracy_demo")
        plots.plot_sup_distance(res["alphas"], {p: res["sup_distance"][i]
                                                for i, p in enumerate(ps)},
                                out=out / "sup_distance_demo")
    if args.docs:
        img = ROOT.parent / "docs" / "img"
        img.mkdir(parents=True, exist_ok=True)
        for name in DOC_FIGURES:
            src = out / f"{name}.png"
            if src.exists():
                shutil.copyfile(src, img / src.name)
        shutil.copyfile(out / "neuron_directions_p1.gif", img / "neuron_directions_p1.gif")
    print(f"gallery written to {out}")


if __name__ == "__main__":
    main()
