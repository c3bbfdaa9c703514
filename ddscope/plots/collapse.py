"""Neural collapse under label noise: NC1–NC4, memorization and dilation (Nguyen et al. 2023), all conditions
overlaid."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .runs import conditions, subtitle, variant_styles
from .style import epoch_axis, figure_legend, gridlines, line_band, log_y, new_figure, no_data, suptitle, title

COLLAPSE_TOP = (  # variable, title, y label, log
    ("nc1", "NC1: within- / between-class variability", "tr(Σ_W Σ_B⁺)/K (log scale)\nlower = more collapsed", True),
    ("dilation_normalized", "Dilation (scale-normalised): spread of the clean classes",
     "clean probes' distance to their class's\nclean mean ÷ scale of the class means", False),
    ("memorization_normalized", "Memorization (scale-normalised): noisy samples leave their class",
     "noisy probes' distance to the clean mean\nof their original class ÷ the same scale", False),
)
COLLAPSE_BOTTOM = (  # variable, title, y label
    ("nc2_equinorm", "NC2: equal norms of class means", "std / mean of ||μ_c − μ_G||\n(→ 0)"),
    ("nc2_equiangle", "NC2: equal angles of class means", "std of the cosines\nbetween class means (→ 0)"),
    ("nc3", "NC3: classifier aligned with class means", "||W/||W|| − M/||M||||²\n(→ 0)"),
    ("nc4", "NC4: network = nearest class centre", "fraction of train probes\nwhere they agree (→ 1)"),
)


def plot_collapse(collapse: Mapping[str, xr.Dataset], band: str = "std") -> Figure:
    """NC1, dilation and memorization (top), NC2–NC4 (bottom) over epochs, all conditions overlaid."""
    groups, conds, colors, labels = conditions(collapse, "collapse")
    styles = variant_styles(conds)
    fig = new_figure(15, 8.6)
    gs = fig.add_gridspec(2, 12)
    top = [fig.add_subplot(gs[0, 4 * i:4 * i + 4]) for i in range(3)]
    bottom = [fig.add_subplot(gs[1, 3 * i:3 * i + 3]) for i in range(4)]
    all_epochs = np.concatenate([groups[c]["epoch"].values for c in conds])
    panels = [(ax, var, text, ylabel, log) for ax, (var, text, ylabel, log) in zip(top, COLLAPSE_TOP)]
    panels += [(ax, var, text, ylabel, False) for ax, (var, text, ylabel) in zip(bottom, COLLAPSE_BOTTOM)]
    for ax, var, text, ylabel, log in panels:
        drawn = False
        for cond in conds:
            ds = groups[cond]
            if var not in ds:
                continue
            da = ds[var].where(np.isfinite(ds[var]))
            if log:
                da = da.where(da > 0)
            if not np.isfinite(da.values).any():
                continue
            drawn = True
            line_band(ax, ds["epoch"].values, da, band, colors[cond], labels[cond], ls=styles[cond], positive=log)
        if var == "nc4":
            ax.set_ylim(-0.02, 1.02)
        if not drawn:
            no_data(ax, "no noisy probes: memorization undefined" if var == "memorization_normalized" else "all NaN")
        elif log:
            log_y(ax)
        epoch_axis(ax, all_epochs, label=ax in bottom)
        ax.set_ylabel(ylabel, fontsize=9)
        gridlines(ax)
        title(ax, text, loc="left")
    handles = [Line2D([], [], color=colors[c], ls=styles[c], lw=2) for c in conds]
    figure_legend(fig, handles, ncol=min(6, len(handles)), labels=[labels[c] for c in conds])
    layers = sorted({int(groups[c].attrs.get("layer", -1)) for c in conds})
    where = "last hidden layer" + (f" ({', '.join(map(str, layers))})" if layers and layers[0] > 0 else "")
    suptitle(fig, "Neural collapse under label noise: the last hidden layer's class structure over training\n"
                  + subtitle(conds, band, f"{where}, train probes with their assigned labels (memorization: "
                             "noisy probes against their original class)"))
    return fig
