"""The look shared by every figure: colours, the band over seeds and how it is drawn, axes, layout, saving.

Colours mean the same in every figure: one per model (`model_colors`), one per layer depth (`layer_colors`:
layer l has the same colour in every model), one per split; the threshold study reuses the same palette.
Figures are built without pyplot (no global state; `save_figure` renders them with Agg, atomically).
"""

from __future__ import annotations

import math
import textwrap
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.scale import SymmetricalLogTransform
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, SymmetricalLogLocator

from ..artifacts import atomic_path

# --- colours and line styles ----------------------------------------------------------------------------

RED, GREEN, BLUE, PURPLE, VIOLET, DARK = "#d73027", "#1a9850", "#2b6cb0", "#9e65c2", "#7b3294", "#222222"
SEQUENTIAL_CMAP = "viridis"  # layers by depth, training-set sizes n

SPLITS = ("train_all", "train_clean", "train_noisy_assigned", "train_noisy_original", "test")
SPLIT_STYLE = {  # colour, label
    "train_all": (DARK, "train, all (assigned labels)"),
    "train_clean": (GREEN, "train, clean"),
    "train_noisy_assigned": (RED, "train, noisy vs assigned (wrong) label"),
    "train_noisy_original": (PURPLE, "train, noisy vs original (true) label"),
    "test": (BLUE, "test"),
}
PHASES = (  # colour, label
    ("#9ecae1", "phase 1: clean samples learned, test loss falls"),
    ("#fcae91", "phase 2: noisy labels memorised, test loss rises"),
    ("#a1d99b", "phase 3: noisy labels fitted (with double descent, test loss falls again)"),
)
PHASE_ALPHA = 0.35
REFERENCE_COLORS = {"clean": GREEN, "noisy": RED}
CORRECTNESS_STYLE = {"correct": "-", "incorrect": "--"}
VARIANT_STYLES = ("-", "--", ":", "-.")
# threshold study: train (noisy labels) and test loss as the noisy-train and test splits above
TRAIN_COLOR, TEST_COLOR, ALIGN_COLOR, FINAL_COLOR, THRESHOLD_COLOR = RED, BLUE, GREEN, VIOLET, "#444444"


def model_colors(models) -> dict[str, str]:
    """One colour per model, in the order given (the study's order: the same in every figure)."""
    return {m: f"C{i % 10}" for i, m in enumerate(dict.fromkeys(models))}


def layer_colors(n_layers: int) -> list:
    """Colours of layers 1..n_layers (deep = dark to light): layer l has the same colour in every model."""
    cmap = matplotlib.colormaps[SEQUENTIAL_CMAP]
    return [cmap(0.85 * i / max(n_layers - 1, 1)) for i in range(n_layers)]


# --- statistics over seeds ------------------------------------------------------------------------------

BANDS = ("std", "sem", "minmax")
BAND_LABEL = {"std": "mean ± std over seeds", "sem": "mean ± s.e.m. over seeds", "minmax": "mean, min–max over seeds"}
BAND_ALPHA = 0.2


def band_stats(values, band: str = "std", axis: int = -1):
    """(mean, low, high) over `axis` (the seeds), NaN-aware; one seed gives low = high = mean.

    band: std (mean ± sample std), sem (mean ± std / sqrt(n)), minmax (min and max).
    """
    if band not in BANDS:
        raise ValueError(f"band must be one of {', '.join(BANDS)}, not {band!r}")
    v = np.asarray(values, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(v, axis=axis)
        if band == "minmax":
            return mean, np.nanmin(v, axis=axis), np.nanmax(v, axis=axis)
        count = np.sum(np.isfinite(v), axis=axis)
        sd = np.where(count > 1, np.nanstd(v, axis=axis, ddof=1), 0.0)
        if band == "sem":
            sd = sd / np.sqrt(np.maximum(count, 1))
    return mean, mean - sd, mean + sd


def seed_band(da: xr.DataArray, band: str = "std", dim: str = "seed"):
    """`band_stats` over the dimension `dim`; an array without it is one seed."""
    if dim not in da.dims:
        da = da.expand_dims(dim)
    return band_stats(da.values, band, axis=da.get_axis_num(dim))


def seed_mean(da: xr.DataArray, dim: str = "seed") -> xr.DataArray:
    """NaN-aware mean over `dim` (the array itself without it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return da.mean(dim, skipna=True) if dim in da.dims else da


def finite_mean(values) -> float:
    """Mean of the finite values (NaN if none)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def line_band(ax, x, da: xr.DataArray, band: str, color, label=None, ls="-", lw=1.6, alpha=BAND_ALPHA,
              positive=False, bounds=None, zorder=2, **kw):
    """The mean over seeds as a line, the band around it shaded; returns the line.

    positive: a log axis, the band's lower edge kept drawable; bounds: (low, high) the band stays within.
    """
    mean, lo, hi = seed_band(da, band)
    if positive:
        floor = np.nanmin(np.where(mean > 0, mean, np.nan)) if np.any(mean > 0) else 1e-12
        lo = np.where(lo > 0, lo, floor * 0.5)
    if bounds is not None:
        lo, hi = np.clip(lo, *bounds), np.clip(hi, *bounds)
    ax.fill_between(x, lo, hi, color=color, alpha=alpha, linewidth=0, zorder=zorder - 1)
    (line,) = ax.plot(x, mean, color=color, ls=ls, lw=lw, label=label, zorder=zorder, **kw)
    return line


# --- axes -----------------------------------------------------------------------------------------------

EPOCH_LABEL = "epoch (log scale; 0 = initialisation)"
SYMLOG = {"base": 10, "linthresh": 1.0, "linscale": 0.4}  # epochs / steps: linear below 1, so 0 shows


def symlog_axis(ax, which: str = "x", values=None, label: str | None = None, linscale=SYMLOG["linscale"]) -> None:
    """Symmetric-log x or y axis (linear below 1, so 0 shows), plain-number ticks, limits of `values`."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("symlog", linthresh=SYMLOG["linthresh"], linscale=linscale)
    axis.set_major_locator(SymmetricalLogLocator(base=10, linthresh=SYMLOG["linthresh"]))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(SymmetricalLogLocator(base=10, linthresh=SYMLOG["linthresh"], subs=np.arange(2, 10)))
    axis.set_minor_formatter(NullFormatter())
    if values is not None and len(values):
        (ax.set_xlim if which == "x" else ax.set_ylim)(float(np.min(values)), float(np.max(values)))
    if label:
        (ax.set_xlabel if which == "x" else ax.set_ylabel)(label)


def epoch_axis(ax, epochs=None, label: bool = True) -> None:
    """The epoch x axis of every figure."""
    symlog_axis(ax, "x", epochs, EPOCH_LABEL if label else None)


def epoch_yaxis(ax, label: str | None = None) -> None:
    """The y axis of an epoch × epoch heatmap: the same scale and ticks as `epoch_axis`."""
    symlog_axis(ax, "y", None, label)


def symlog_edges(epochs) -> np.ndarray:
    """Cell edges for a heatmap over `epochs` on the symlog axis: midpoints in the axis' own coordinates."""
    t = SymmetricalLogTransform(SYMLOG["base"], SYMLOG["linthresh"], SYMLOG["linscale"])
    epochs = np.asarray(epochs, dtype=np.float64)
    x = t.transform(epochs.reshape(-1, 1)).ravel()
    if x.size == 1:
        mid = np.array([x[0] - 0.5, x[0] + 0.5])
    else:
        inner = (x[1:] + x[:-1]) / 2
        mid = np.concatenate([[x[0] - (inner[0] - x[0])], inner, [x[-1] + (x[-1] - inner[-1])]])
    edges = t.inverted().transform(mid.reshape(-1, 1)).ravel()
    if x.size > 1:  # first and last cells end at the recorded range, aligned with the line plots above
        edges[0], edges[-1] = epochs[0], epochs[-1]
    return edges


def log_y(ax) -> None:
    """Log y axis with plain-number ticks; under a decade of range, evenly readable ticks (1.4, 1.6, ...)."""
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    if lo > 0 and hi / lo < 8:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
    elif lo > 0 and hi / lo < 1000:
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    else:
        ax.yaxis.set_major_locator(LogLocator(base=10))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:.3g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(lo, hi)


def gridlines(ax) -> None:
    ax.grid(alpha=0.3, lw=0.5)


def title(ax, text: str, color=None, **kw) -> None:
    """Panel title; coloured (bold) with the colour of the panel's model."""
    ax.set_title(text, color=color or "black", fontsize=10, fontweight="bold" if color else "normal", **kw)


def no_data(ax, text="no data") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4", fontsize=9)


# --- figure ---------------------------------------------------------------------------------------------


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    fig.get_layout_engine().set(w_pad=0.04, h_pad=0.04, hspace=0.03, wspace=0.03)
    return fig


def panel_blocks(n_panels: int, max_cols: int) -> tuple[int, int]:
    """(columns, rows of panels) for n_panels wrapped after max_cols."""
    n_cols = max(1, min(n_panels, max_cols))
    return n_cols, max(1, math.ceil(n_panels / n_cols))


def panel_grid(fig: Figure, n_panels: int, rows_per_panel: int, max_cols: int, height_ratios=None):
    """Axes for n_panels conditions, each a column of `rows_per_panel` axes, wrapped after max_cols.

    Returns a list (one per condition) of lists of axes (top to bottom); unused slots are removed.
    """
    n_cols, n_blocks = panel_blocks(n_panels, max_cols)
    ratios = list(height_ratios or [1] * rows_per_panel) * n_blocks
    axes = fig.subplots(rows_per_panel * n_blocks, n_cols, squeeze=False, gridspec_kw={"height_ratios": ratios})
    out = []
    for i in range(n_blocks * n_cols):
        b, c = divmod(i, n_cols)
        col = [axes[b * rows_per_panel + r, c] for r in range(rows_per_panel)]
        if i < n_panels:
            out.append(col)
        else:
            for ax in col:
                ax.remove()
    return out


def figure_legend(fig: Figure, handles, ncol: int, **kw) -> None:
    """The figure's legend, below the panels."""
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize=8.5, frameon=False, **kw)


def suptitle(fig: Figure, text: str, fontsize: float = 11) -> None:
    """Figure title, each line wrapped to the figure's width."""
    width = max(30, int(fig.get_figwidth() * 72 / (0.55 * fontsize)))
    lines = [textwrap.fill(line, width) for line in text.split("\n")]
    fig.suptitle("\n".join(lines), fontsize=fontsize)


def save_figure(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    """Write the figure (format from the path's suffix) atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    return path
