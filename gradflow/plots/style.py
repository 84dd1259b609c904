"""One figure style for every gradflow plot.

- Sizes: one paper column is ``COLUMN`` = 3.4 in wide, a double column ``DOUBLE`` = 7.0 in.
- Fonts: 8 pt text, 7 pt ticks and legends (readable when printed at column width).
- Colours: the Okabe-Ito colour-blind-safe palette; positive neurons / class
  +1 in ``POS`` (blue), negative in ``NEG`` (vermillion); per-p colours from ``p_colour``.
- Colour maps: perceptually uniform 'viridis' for cosines (``CMAP_COSINE``).
- Output: PNG (200 dpi) and vector PDF via ``save_figure``.

matplotlib is switched to the non-interactive Agg backend on import, so no
display is ever needed.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

COLUMN = 3.4
DOUBLE = 7.0

# Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "skyblue": "#56B4E9", "green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7",
}
PALETTE = [OKABE_ITO[k] for k in ("blue", "vermillion", "green", "orange", "purple",
                                  "skyblue", "yellow", "black")]
POS = OKABE_ITO["blue"]
NEG = OKABE_ITO["vermillion"]
THEORY_RELU = OKABE_ITO["black"]
THEORY_OPT = OKABE_ITO["green"]
CMAP_COSINE = "viridis"
SHADE_ALIGN = "#E8E8E8"
SHADE_FIT = "#FFFFFF"

RC = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "legend.handlelength": 1.6,
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "xtick.minor.size": 1.5,
    "ytick.minor.size": 1.5,
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    "pdf.fonttype": 42,  # embed TrueType, so the text stays editable/searchable
    "mathtext.fontset": "dejavusans",
    "image.cmap": CMAP_COSINE,
}

_P_ORDER: list[float] = [1.0, 3.0, 2.0, 4.0, 1.5, 5.0]


def p_colour(p: float) -> str:
    """A fixed colour per pReLU power p (p=1 blue, p=3 vermillion, ...), consistent across figures."""
    p = float(p)
    if p in _P_ORDER:
        return PALETTE[_P_ORDER.index(p)]
    return PALETTE[(len(_P_ORDER) + int(round(10 * p))) % len(PALETTE)]


def p_label(p: float) -> str:
    """Legend label for a power p: 'ReLU (p=1)' or 'pReLU p=3'."""
    p = float(p)
    return "ReLU (p=1)" if p == 1.0 else f"pReLU p={p:g}"


_ACTIVATION_LABELS = {"relu": "ReLU", "softplus": "softplus", "silu": "SiLU", "gelu": "GELU",
                      "elu": "ELU", "tanh": "tanh"}


def activation_label(name: str) -> str:
    """Display name of an activation as the studies name it ('silu' -> 'SiLU',
    'capped_relu_1' -> 'capped ReLU beta=1', 'prelu3' -> 'pReLU p=3', 'relu_p3' -> 'ReLU^3
    (unnormalised)'); unknown names are returned unchanged."""
    if name in _ACTIVATION_LABELS:
        return _ACTIVATION_LABELS[name]
    if name.startswith("capped_relu_"):
        return rf"capped ReLU $\beta$={name[len('capped_relu_'):]}"
    if name.startswith("prelu"):
        return f"pReLU p={name[len('prelu'):]}"
    if name.startswith("relu_p"):
        return f"ReLU$^{{{name[len('relu_p'):]}}}$ (unnormalised)"
    return name


@contextmanager
def paper_style() -> Iterator[None]:
    """Context manager applying the gradflow rcParams (restored on exit)."""
    with plt.rc_context(RC):
        yield


def new_figure(width: str | float = "column", aspect: float = 0.75, nrows: int = 1,
               ncols: int = 1, **subplot_kw):
    """Figure of the given width ('column', 'double' or inches) and height = aspect * width.

    Call inside ``paper_style()``. Returns (fig, axes) as ``plt.subplots`` does,
    with constrained layout so labels never overlap.
    """
    w = {"column": COLUMN, "double": DOUBLE}.get(width, width)
    if not isinstance(w, (int, float)) or w <= 0:
        raise ValueError(f"`width` must be 'column', 'double' or a positive number, got {width!r}")
    return plt.subplots(nrows, ncols, figsize=(w, aspect * w), layout="constrained", **subplot_kw)


def save_figure(fig, out: str | os.PathLike, formats: Sequence[str] = ("png", "pdf"),
                close: bool = True) -> list[Path]:
    """Save ``fig`` as <out>.png and <out>.pdf (any suffix on ``out`` is replaced).

    Returns the written paths. Writes go to the final name directly; figures
    are derived outputs that a rerun recreates.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out.with_suffix("." + fmt)
        fig.savefig(path, format=fmt)
        paths.append(path)
    if close:
        plt.close(fig)
    return paths


def mark_time(ax, t: float, label: str | None = "alignment end", **kw) -> None:
    """Vertical dotted line at time t (skipped when t is nan/None)."""
    if t is None or t != t:
        return
    style = dict(color="0.3", lw=0.8, ls=":", zorder=1)
    style.update(kw)
    ax.axvline(t, label=label, **style)


def panel_label(ax, letter: str, text: str = "") -> None:
    """'(a)'-style panel label at the top-left corner, followed by an optional short title."""
    ax.set_title(f"({letter}) {text}".rstrip(), loc="left", fontsize=7, pad=3)
