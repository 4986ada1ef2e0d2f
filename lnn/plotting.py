"""The book's figure style and small plotting helpers shared by every chapter.

Figures keep an opaque white background so they stay readable in the HTML's dark mode, use a colour-blind-safe
palette, and label axes with symbols. Call :func:`use_book_style` once at the top of a chapter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt

__all__ = ["use_book_style", "panel_grid", "PALETTE", "depth_colors"]

#: Okabe-Ito colours, distinguishable under the common colour-vision deficiencies.
PALETTE: list[str] = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


def use_book_style() -> None:
    """Set matplotlib defaults for the book: white opaque figures (readable in dark mode), the Okabe-Ito
    cycle, a grid, and a size that fits the page.

    The style of every figure in :doc:`/book/01_preliminaries` and after.

    Examples
    --------
    >>> import matplotlib as mpl
    >>> from lnn.plotting import use_book_style
    >>> use_book_style()
    >>> mpl.rcParams["axes.grid"]
    True
    """
    mpl.rcParams.update(
        {
            "figure.figsize": (6.4, 3.6),
            "figure.dpi": 110,
            "savefig.dpi": 110,
            "figure.facecolor": "white",
            "axes.facecolor": "white",
            "savefig.facecolor": "white",
            "savefig.transparent": False,
            "axes.prop_cycle": mpl.cycler(color=PALETTE),
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.frameon": False,
            "font.size": 10,
            "axes.titlesize": 11,
            "figure.constrained_layout.use": True,
        }
    )


def depth_colors(depths: Sequence[int]) -> dict[int, str]:
    """One palette colour per depth, stable across the chapters' figures.

    One colour per depth, as in :doc:`/book/02_optimization`.

    Examples
    --------
    >>> from lnn.plotting import depth_colors
    >>> sorted(depth_colors([1, 2, 3]))
    [1, 2, 3]
    """
    return {d: PALETTE[i % len(PALETTE)] for i, d in enumerate(depths)}


def panel_grid(n: int, *, ncols: int = 3, size: tuple[float, float] = (2.6, 2.2), sharey: bool = False):
    """A figure with ``n`` panels in rows of ``ncols``; returns ``(fig, axes)`` with ``axes`` a flat list of the
    ``n`` used panels (the rest are hidden). Used for the static counterparts of the widget explorers.

    The panels of :doc:`/book/03_implicit_bias`.

    Examples
    --------
    >>> from lnn.plotting import panel_grid
    >>> fig, axes = panel_grid(5, ncols=3)
    >>> len(axes), len(fig.axes), sum(ax.get_visible() for ax in fig.axes)
    (5, 6, 5)
    """
    nrows = math.ceil(n / ncols)
    cols = min(n, ncols)
    fig, axes = plt.subplots(nrows, cols, figsize=(size[0] * cols, size[1] * nrows), sharey=sharey, squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]
