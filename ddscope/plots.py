"""Figures of the epoch-wise double-descent, representation (CKA, probes) and neural-collapse analyses:
one function per figure, all runs of a study.

Every function takes the loaded per-run datasets as a mapping run id -> xr.Dataset (run ids like
`mlp7-sym30-ce-s0`), groups the runs by condition (model, noise, loss) and draws, for each condition,
the mean over seeds with a shaded band (`band`: std | sem | minmax; one seed gives a degenerate band).
Epochs are drawn on a symmetric-log axis, linear below 1, so that epoch 0 (initialisation) shows.

Colours mean the same in every figure: one per model (`model_colors`: lines of overlays, panel titles
of per-model panels), one per layer depth (`layer_colors`: layer l has the same colour in every model),
one per split. Functions return a matplotlib Figure built without pyplot (no global state, Agg canvas);
`save_figure` writes it atomically.
"""

from __future__ import annotations

import math
import textwrap
import warnings
from collections.abc import Mapping
from pathlib import Path

import matplotlib
import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, SymmetricalLogLocator

from .artifacts import atomic_path
from .config import parse_run

BANDS = ("std", "sem", "minmax")
FIGURES = ("curves", "double_descent", "separation", "large_activation", "routing", "cka", "probes", "collapse")
SPLITS = ("train_all", "train_clean", "train_noisy_assigned", "train_noisy_original", "test")
SPLIT_STYLE = {  # colour, label
    "train_all": ("#222222", "train, all (assigned labels)"),
    "train_clean": ("#1a9850", "train, clean"),
    "train_noisy_assigned": ("#d73027", "train, noisy vs assigned (wrong) label"),
    "train_noisy_original": ("#9e65c2", "train, noisy vs original (true) label"),
    "test": ("#2b6cb0", "test"),
}
PHASES = (  # colour, label
    ("#9ecae1", "phase 1: clean samples learned, test error falls"),
    ("#fcae91", "phase 2: noisy labels memorised, test error rises"),
    ("#a1d99b", "phase 3: noise fitted, test error falls again"),
)
PHASE_ALPHA = 0.35
REFERENCE_COLORS = {"clean": "#1a9850", "noisy": "#d73027"}
CORRECTNESS_STYLE = {"correct": "-", "incorrect": "--"}
VARIANT_STYLES = ("-", "--", ":", "-.")
EPOCH_LABEL = "epoch (log scale; 0 = initialisation)"
BAND_LABEL = {"std": "mean ± std over seeds", "sem": "mean ± s.e.m. over seeds", "minmax": "mean, min–max over seeds"}
BAND_ALPHA = 0.2


# --- runs, conditions, colours --------------------------------------------------------------------------


def condition_of(run: str) -> str:
    """`mlp7-sym30-ce` for run `mlp7-sym30-ce-s0`: the runs that differ only by seed."""
    p = parse_run(run)
    return f"{p['model']}-{p['noise']}-{p['loss']}"


def group_seeds(runs: Mapping[str, xr.Dataset]) -> dict[str, xr.Dataset]:
    """Condition -> the runs' datasets stacked along a new `seed` dim (in the mapping's order).

    Epochs (and other coordinates) are joined outer: a seed lacking an epoch gets NaN there.
    """
    groups: dict[str, list[tuple[int, xr.Dataset]]] = {}
    for run, ds in runs.items():
        groups.setdefault(condition_of(run), []).append((parse_run(run)["seed"], ds))
    out = {}
    for cond, items in groups.items():
        seeds = [s for s, _ in items]
        dsets = [ds.drop_attrs() if hasattr(ds, "drop_attrs") else ds for _, ds in items]
        dsets = [d.map(lambda v: v.astype(np.float64) if v.dtype.kind in "biu" else v) for d in dsets]
        stacked = xr.concat(dsets, dim="seed", data_vars="all", coords="minimal", compat="override", join="outer")
        out[cond] = stacked.assign_coords(seed=np.asarray(seeds)).assign_attrs(items[0][1].attrs)
    return out


def _models(conditions) -> list[str]:
    models: list[str] = []
    for cond in conditions:
        model = cond.split("-")[0]
        if model not in models:
            models.append(model)
    return models


def model_colors(models) -> dict[str, str]:
    """One colour per model, in the order given (the study's order: the same in every figure)."""
    return {m: f"C{i % 10}" for i, m in enumerate(dict.fromkeys(models))}


def layer_colors(n_layers: int) -> list:
    """Colours of layers 1..n_layers (deep = dark to light): layer l has the same colour in every model."""
    cmap = matplotlib.colormaps["viridis"]
    return [cmap(0.85 * i / max(n_layers - 1, 1)) for i in range(n_layers)]


def condition_labels(conditions) -> dict[str, str]:
    """Short labels: only the parts (model, noise, loss) that vary between the conditions."""
    parts = [c.split("-") for c in conditions]
    varies = [len({p[i] for p in parts}) > 1 for i in range(3)]
    varies[0] = True
    return {c: " · ".join(x for x, v in zip(p, varies) if v) for c, p in zip(conditions, parts)}


def variant_styles(conditions) -> dict[str, str]:
    """Line style per (noise, loss) variant, so that conditions of one model differ by style, not colour."""
    variants = list(dict.fromkeys("-".join(c.split("-")[1:]) for c in conditions))
    return {c: VARIANT_STYLES[variants.index("-".join(c.split("-")[1:])) % len(VARIANT_STYLES)] for c in conditions}


def _subtitle(conditions, band: str, extra: str = "") -> str:
    parts = [c.split("-") for c in conditions]
    common = [f"{k}: {parts[0][i]}" for i, k in ((1, "noise"), (2, "loss")) if len({p[i] for p in parts}) == 1]
    text = ", ".join(common + [BAND_LABEL[band]])
    return f"{text}{'; ' + extra if extra else ''}"


# --- statistics over seeds ------------------------------------------------------------------------------


def seed_band(da: xr.DataArray, band: str = "std", dim: str = "seed"):
    """(mean, low, high) over `dim`, NaN-aware; a single seed gives low = high = mean.

    band: std (mean ± sample std), sem (mean ± std / sqrt(n)), minmax (min and max).
    """
    if band not in BANDS:
        raise ValueError(f"band must be one of {', '.join(BANDS)}, not {band!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if dim not in da.dims:
            v = np.asarray(da.values, dtype=np.float64)
            return v, v, v
        mean = da.mean(dim, skipna=True)
        if band == "minmax":
            return mean.values, da.min(dim, skipna=True).values, da.max(dim, skipna=True).values
        n = da.count(dim)
        sd = da.std(dim, ddof=1, skipna=True).where(n > 1, 0.0)
        if band == "sem":
            sd = sd / np.sqrt(n.where(n > 0, 1))
    return mean.values, (mean - sd).values, (mean + sd).values


def _nanmean(values) -> float:
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def _line_band(ax, x, da, band, color, label=None, ls="-", lw=1.6, alpha=BAND_ALPHA, positive=False, zorder=2,
               **kw):
    mean, lo, hi = seed_band(da, band)
    if positive:  # log axes: keep the band's lower edge drawable
        floor = np.nanmin(np.where(mean > 0, mean, np.nan)) if np.any(mean > 0) else 1e-12
        lo = np.where(lo > 0, lo, floor * 0.5)
    ax.fill_between(x, lo, hi, color=color, alpha=alpha, linewidth=0, zorder=zorder - 1)
    (line,) = ax.plot(x, mean, color=color, ls=ls, lw=lw, label=label, zorder=zorder, **kw)
    return line


# --- axes -----------------------------------------------------------------------------------------------


def epoch_axis(ax, epochs=None, label: bool = True) -> None:
    """Symmetric-log epoch axis (linear below 1, so epoch 0 shows), plain-number ticks."""
    ax.set_xscale("symlog", linthresh=1.0, linscale=0.4)
    ax.xaxis.set_major_locator(SymmetricalLogLocator(base=10, linthresh=1.0))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_locator(SymmetricalLogLocator(base=10, linthresh=1.0, subs=np.arange(2, 10)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if epochs is not None and len(epochs):
        ax.set_xlim(float(np.min(epochs)), float(np.max(epochs)))
    if label:
        ax.set_xlabel(EPOCH_LABEL)


def epoch_yaxis(ax, label: str | None = None) -> None:
    """The y axis of an epoch × epoch heatmap: the same symmetric-log scale and ticks as `epoch_axis`."""
    ax.set_yscale("symlog", linthresh=1.0, linscale=0.4)
    ax.yaxis.set_major_locator(SymmetricalLogLocator(base=10, linthresh=1.0))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_locator(SymmetricalLogLocator(base=10, linthresh=1.0, subs=np.arange(2, 10)))
    ax.yaxis.set_minor_formatter(NullFormatter())
    if label:
        ax.set_ylabel(label)


def log_y(ax) -> None:
    """Log y axis with plain-number ticks; under a decade of range, evenly readable ticks (1.4, 1.6, ...)."""
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    plain = FuncFormatter(lambda y, _: f"{y:.3g}")
    if lo > 0 and hi / lo < 8:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
    elif lo > 0 and hi / lo < 1000:
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    else:
        ax.yaxis.set_major_locator(LogLocator(base=10))
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(lo, hi)


def _symlog_edges(epochs) -> np.ndarray:
    """Cell edges for a heatmap over `epochs` on the symlog axis: midpoints in the axis' own coordinates."""
    from matplotlib.scale import SymmetricalLogTransform

    t = SymmetricalLogTransform(10, 1.0, 0.4)  # the same as epoch_axis
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


def _grid(fig: Figure, n_panels: int, rows_per_panel: int, max_cols: int, height_ratios=None, sharex=False):
    """Axes for n_panels conditions, each a column of `rows_per_panel` axes, wrapped after max_cols.

    Returns a list (one per condition) of lists of axes (top to bottom); unused slots are removed.
    """
    n_cols, n_blocks = _blocks(n_panels, max_cols)
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


def _title(ax, text: str, color=None, **kw) -> None:
    ax.set_title(text, color=color or "black", fontsize=10, fontweight="bold" if color else "normal", **kw)


def _no_data(ax, text="no data") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4", fontsize=9)


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    fig.get_layout_engine().set(w_pad=0.04, h_pad=0.04, hspace=0.03, wspace=0.03)
    return fig


def _suptitle(fig: Figure, text: str, fontsize: float = 11) -> None:
    """Figure title, each line wrapped to the figure's width."""
    width = max(30, int(fig.get_figwidth() * 72 / (0.55 * fontsize)))
    lines = [textwrap.fill(line, width) for line in text.split("\n")]
    fig.suptitle("\n".join(lines), fontsize=fontsize)


def _conditions(runs: Mapping[str, xr.Dataset], what: str):
    """(seed-stacked groups, conditions, model colours, condition labels) of the runs of one figure."""
    if not runs:
        raise ValueError(f"{what}: no runs to plot")
    groups = group_seeds(runs)
    conds = list(groups)
    return groups, conds, model_colors(_models(conds)), condition_labels(conds)


def _layer_palette(groups: Mapping[str, xr.Dataset]) -> tuple[int, list]:
    """(deepest model's number of hidden layers, a colour per layer)."""
    n_layers_max = max(int(ds.sizes["layer"]) for ds in groups.values())
    return n_layers_max, layer_colors(n_layers_max)


def _blocks(n_panels: int, max_cols: int) -> tuple[int, int]:
    """(columns, rows of panels) for n_panels wrapped after max_cols."""
    n_cols = max(1, min(n_panels, max_cols))
    return n_cols, max(1, math.ceil(n_panels / n_cols))


# --- curves ---------------------------------------------------------------------------------------------


def phase_boundaries(dd: xr.Dataset) -> tuple[float, float, int, int]:
    """(mean phase1_end, mean phase2_end, seeds with phases, seeds) of a seed-stacked double_descent dataset."""
    p1 = np.atleast_1d(np.asarray(dd["phase1_end"].values, dtype=np.float64))
    p2 = np.atleast_1d(np.asarray(dd["phase2_end"].values, dtype=np.float64))
    ok = np.isfinite(p1) & np.isfinite(p2)
    return _nanmean(p1[ok]), _nanmean(p2[ok]), int(ok.sum()), int(p1.size)


def _shade_phases(ax, p1, p2, e_first, e_last) -> None:
    if not (np.isfinite(p1) and np.isfinite(p2)):
        return
    for (color, _), (a, b) in zip(PHASES, [(e_first, p1), (p1, p2), (p2, e_last)]):
        if b > a:
            ax.axvspan(a, b, color=color, alpha=PHASE_ALPHA, linewidth=0, zorder=0)


def plot_curves(curves: Mapping[str, xr.Dataset], double_descent: Mapping[str, xr.Dataset],
                band: str = "std") -> Figure:
    """Loss and accuracy of the five splits over epochs, one row per model, the three phases shaded."""
    groups, conds, colors, labels = _conditions(curves, "curves")
    dd_groups = group_seeds(double_descent) if double_descent else {}
    fig = _new_figure(11, 1.2 + 2.7 * len(conds))
    axes = fig.subplots(len(conds), 2, squeeze=False)
    for row, cond in enumerate(conds):
        ds = groups[cond]
        epochs = ds["epoch"].values
        ax_loss, ax_acc = axes[row]
        if cond in dd_groups:
            p1, p2, n_ok, n = phase_boundaries(dd_groups[cond])
        else:
            p1 = p2 = math.nan
            n_ok, n = 0, ds.sizes.get("seed", 1)
        for ax in (ax_loss, ax_acc):
            _shade_phases(ax, p1, p2, epochs.min(), epochs.max())
        for split in SPLITS:
            if split not in ds["split"].values:
                continue
            color, label = SPLIT_STYLE[split]
            _line_band(ax_loss, epochs, ds["loss"].sel(split=split), band, color, label, positive=True)
            _line_band(ax_acc, epochs, ds["accuracy"].sel(split=split), band, color, label)
        log_y(ax_loss)
        ax_loss.set_ylabel("loss (log scale)")
        ax_acc.set_ylabel("accuracy")
        ax_acc.set_ylim(-0.02, 1.02)
        if n_ok == 0:
            note = "no epoch-wise double descent: phases undefined"
        elif n_ok < n:
            note = f"phases: mean boundaries of the {n_ok}/{n} seeds with double descent"
        else:
            note = f"phases: mean boundaries over {n} seed{'s' if n > 1 else ''}"
        for ax, what in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            epoch_axis(ax, epochs, label=row == len(conds) - 1)
            _title(ax, f"{labels[cond]} — {what}", colors[cond.split('-')[0]], loc="left")
            ax.grid(alpha=0.3, lw=0.5)
        ax_acc.text(0.99, 0.03, note, transform=ax_acc.transAxes, ha="right", va="bottom", fontsize=7.5,
                    color="0.25", bbox=dict(facecolor="white", alpha=0.75, edgecolor="none", pad=1.5))
    handles = [Line2D([], [], color=SPLIT_STYLE[s][0], lw=2, label=SPLIT_STYLE[s][1]) for s in SPLITS]
    handles += [Patch(facecolor=c, alpha=PHASE_ALPHA, label=label) for c, label in PHASES]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8.5, frameon=False)
    _suptitle(fig, "Learning curves per split and the three phases of epoch-wise double descent\n"
                 + _subtitle(conds, band))
    return fig


# --- double descent -------------------------------------------------------------------------------------


def plot_double_descent(double_descent: Mapping[str, xr.Dataset], band: str = "std") -> Figure:
    """Smoothed test error and test loss of every model overlaid, first minimum and later peak marked."""
    groups, conds, colors, labels = _conditions(double_descent, "double_descent")
    styles = variant_styles(conds)
    fig = _new_figure(12, 5.2)
    axes = fig.subplots(1, 2, squeeze=False)[0]
    panels = (("test_error", "test error (smoothed)", False), ("test_loss", "test loss (smoothed, log scale)", True))
    for ax, (var, ylabel, log) in zip(axes, panels):
        marks = []  # (epoch, value, text, colour, above)
        for k, cond in enumerate(conds):
            ds = groups[cond]
            epochs = ds["epoch"].values
            color, ls = colors[cond.split("-")[0]], styles[cond]
            n = ds.sizes.get("seed", 1)
            n_dd = int(np.nansum(np.atleast_1d(ds["epochwise_double_descent"].values).astype(float)))
            label = f"{labels[cond]} (double descent in {n_dd}/{n} seed{'s' if n > 1 else ''})"
            _line_band(ax, epochs, ds[f"{var}_smooth"], band, color, label, ls=ls, positive=log)
            e_min, v_min = _nanmean(ds[f"{var}_min_epoch"]), _nanmean(ds[f"{var}_min"])
            e_peak, v_peak = _nanmean(ds[f"{var}_peak_epoch"]), _nanmean(ds[f"{var}_peak"])
            if np.isfinite(e_min) and np.isfinite(v_min):
                ax.plot([e_min], [v_min], "o", ms=7, mfc="white", mec=color, mew=2, zorder=5, clip_on=False)
                marks.append((e_min, v_min, f"min @ {e_min:.0f}", color, False, k))
            if np.isfinite(e_peak) and np.isfinite(v_peak) and np.isfinite(e_min) and e_peak > e_min:
                ax.plot([e_peak], [v_peak], "^", ms=8, color=color, mec="black", mew=0.6, zorder=5, clip_on=False)
                marks.append((e_peak, v_peak, f"peak @ {e_peak:.0f}", color, True, k))
        epoch_axis(ax, np.concatenate([groups[c]["epoch"].values for c in conds]))
        ax.margins(y=0.15)
        if log:
            log_y(ax)
        for e, v, text, color, above, k in marks:
            frac = ax.transAxes.inverted().transform(ax.transData.transform((e, v)))[0]
            ha = "right" if frac > 0.8 else "left" if frac < 0.2 else "center"
            dy = (12 + 10 * (k % 3)) * (1 if above else -1)
            ax.annotate(text, (e, v), xytext=(0, dy), textcoords="offset points", ha=ha,
                        va="bottom" if above else "top", fontsize=7.5, color=color,
                        arrowprops=dict(arrowstyle="-", color=color, lw=0.6, shrinkA=0, shrinkB=4))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, lw=0.5)
        _title(ax, ylabel.split(" (")[0].capitalize(), loc="left")
    handles = [Line2D([], [], marker="o", ls="none", mfc="white", mec="black", mew=1.5, ms=7,
                      label="first minimum (mean epoch over seeds)"),
               Line2D([], [], marker="^", ls="none", color="0.5", mec="black", mew=0.6, ms=8,
                      label="later peak (mean epoch over seeds)")]
    model_handles, model_labels = axes[0].get_legend_handles_labels()
    fig.legend(handles=model_handles + handles, labels=model_labels + [h.get_label() for h in handles],
               loc="outside lower center", ncol=min(3, len(model_handles) + 2), fontsize=8.5, frameon=False)
    _suptitle(fig, "Epoch-wise double descent: test error falls, rises while the noise is memorised, falls again\n"
                 + _subtitle(conds, band, "peak shown only where it comes after the minimum"))
    return fig


# --- separation -----------------------------------------------------------------------------------------


def plot_separation(separation: Mapping[str, xr.Dataset], band: str = "std", max_cols: int = 3) -> Figure:
    """Per model: separation_mean per layer over epochs (lines) and as an epoch x layer heatmap."""
    groups, conds, colors, labels = _conditions(separation, "separation")
    n_layers_max, lcolors = _layer_palette(groups)
    n_cols, n_blocks = _blocks(len(conds), max_cols)
    fig = _new_figure(1.5 + 4.0 * n_cols, 1.4 + 5.6 * n_blocks)
    cells = _grid(fig, len(conds), 2, max_cols, height_ratios=[1.25, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = {c: groups[c]["separation_mean"].mean("seed", skipna=True) for c in conds}
    finite = np.concatenate([m.values[np.isfinite(m.values)] for m in means.values()] + [np.array([])])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmax - vmin < 1e-6:
        vmin, vmax = vmin - 0.05, vmax + 0.05
    mesh = None
    for cond, (ax_line, ax_map) in zip(conds, cells):
        ds = groups[cond]
        epochs = ds["epoch"].values
        layers = ds["layer"].values
        for layer in layers:
            _line_band(ax_line, epochs, ds["separation_mean"].sel(layer=layer), band, lcolors[int(layer) - 1],
                       f"layer {int(layer)}")
        epoch_axis(ax_line, epochs, label=False)
        ax_line.set_ylabel("cos(clean, noisy class means)\nlower = more separated")
        ax_line.grid(alpha=0.3, lw=0.5)
        _title(ax_line, f"{labels[cond]}: separation per layer", colors[cond.split('-')[0]], loc="left")
        ax_line.legend(fontsize=7.5, loc="best", ncol=1 + len(layers) // 4, handlelength=1.5)
        m = means[cond].transpose("layer", "epoch").values
        if np.isfinite(m).any():
            mesh = ax_map.pcolormesh(_symlog_edges(epochs), np.arange(len(layers) + 1) + 0.5, m,
                                     cmap="magma", vmin=vmin, vmax=vmax, shading="flat")
        else:
            _no_data(ax_map, "all NaN (no clean or noisy probes)")
        epoch_axis(ax_map, None)
        ax_map.set_xlim(_symlog_edges(epochs)[[0, -1]])
        ax_map.set_yticks(np.arange(1, len(layers) + 1), [str(int(layer)) for layer in layers])
        ax_map.set_ylim(len(layers) + 0.5, 0.5)
        ax_map.set_ylabel("hidden layer (1 = input side)")
        _title(ax_map, f"{labels[cond]}: epoch × layer, mean over seeds", colors[cond.split('-')[0]], loc="left")
    if mesh is not None:
        cbar = fig.colorbar(mesh, ax=[c[1] for c in cells], shrink=0.9, pad=0.01, aspect=25)
        cbar.set_label("cos(clean, noisy class means)\n(lower = more separated)")
    _suptitle(fig, "Signal separation: cosine of the class means of clean vs noisy training probes (assigned labels)\n"
                 + _subtitle(conds, band))
    return fig


# --- large activation -----------------------------------------------------------------------------------


def plot_large_activation(large_activation: Mapping[str, xr.Dataset],
                          double_descent: Mapping[str, xr.Dataset] | None = None,
                          band: str = "std", max_cols: int = 3) -> Figure:
    """Per model: top/median unit ratio per layer with test error (top); what the top unit follows (bottom)."""
    groups, conds, colors, labels = _conditions(large_activation, "large_activation")
    dd_groups = group_seeds(double_descent) if double_descent else {}
    n_layers_max, lcolors = _layer_palette(groups)
    n_cols, n_blocks = _blocks(len(conds), max_cols)
    fig = _new_figure(1.0 + 5.0 * n_cols, 1.8 + 7.6 * n_blocks)
    cells = _grid(fig, len(conds), 2, max_cols, height_ratios=[1, 1.05])
    threshold = _nanmean([groups[c].attrs.get("ratio_threshold", math.nan) for c in conds])
    for cond, (ax_ratio, ax_sc) in zip(conds, cells):
        ds = groups[cond]
        epochs = ds["epoch"].values
        layers = ds["layer"].values
        color_model = colors[cond.split("-")[0]]
        # top: ratio per layer (log), threshold, onset per seed; test error on a twin axis
        for layer in layers:
            _line_band(ax_ratio, epochs, ds["ratio"].sel(layer=layer), band, lcolors[int(layer) - 1],
                       positive=True)
        if np.isfinite(threshold):
            ax_ratio.axhline(threshold, color="0.3", ls="--", lw=1.1, zorder=1)
            onset = ds["onset_epoch"].transpose("seed", "layer").values if "seed" in ds["onset_epoch"].dims \
                else ds["onset_epoch"].values[None]
            never = "" if np.isfinite(onset).any() else ": never reached"
            ax_ratio.text(0.97, threshold, f"threshold {threshold:g}{never}", transform=ax_ratio.get_yaxis_transform(),
                          ha="right", va="center", fontsize=7.5, color="0.25", zorder=7,
                          bbox=dict(facecolor="white", edgecolor="none", alpha=0.85, pad=1.0))
            for li, layer in enumerate(layers):
                hit = onset[:, li][np.isfinite(onset[:, li])]
                if hit.size == 0:  # never reached (an empty unclipped line would break the layout)
                    continue
                ax_ratio.plot(hit, np.full(hit.shape, threshold), "v", ms=7, color=lcolors[int(layer) - 1],
                              mec="black", mew=0.5, zorder=6, clip_on=False)
        log_y(ax_ratio)
        ax_ratio.set_ylabel("top / median unit max |a|\n(log scale)")
        ax_ratio.grid(alpha=0.3, lw=0.5)
        epoch_axis(ax_ratio, epochs)
        _title(ax_ratio, f"{labels[cond]}: largest vs typical unit", color_model, loc="left")
        if cond in dd_groups:
            tw = ax_ratio.twinx()
            dd = dd_groups[cond]
            _line_band(tw, dd["epoch"].values, dd["test_error_smooth"], band, "black", lw=1.0, alpha=0.08)
            tw.set_ylabel("test error (smoothed)", color="0.2")
            tw.set_ylim(0, min(1.0, max(0.05, 1.1 * float(np.nanmax(dd["test_error_smooth"].values)))))
            epoch_axis(tw, epochs, label=False)
        # bottom: input R^2 vs output eta^2 of the top unit, per layer and analysed epoch (mean over seeds)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            eta = ds["output_eta2"].max("target", skipna=True)
            if "seed" in eta.dims:
                eta = eta.mean("seed", skipna=True)
            r2 = ds["input_r2"].mean("seed", skipna=True) if "seed" in ds["input_r2"].dims else ds["input_r2"]
        a_epochs = ds["analysed_epoch"].values
        sizes = 12 + 80 * np.linspace(0, 1, len(a_epochs)) ** 1.5
        plotted = False
        for layer in layers:
            x = eta.sel(layer=layer).values
            y = r2.sel(layer=layer).values
            ok = np.isfinite(x) & np.isfinite(y)
            c = lcolors[int(layer) - 1]
            if ok.any():
                plotted = True
                ax_sc.plot(x[ok], y[ok], "-", color=c, lw=0.8, alpha=0.45, zorder=2)
                ax_sc.scatter(x[ok], y[ok], s=sizes[ok], color=c, edgecolor="black", linewidth=0.4, zorder=3,
                              alpha=0.9)
        if not plotted:
            _no_data(ax_sc, "no analysed epochs with finite values")
        y_lo = min(-0.05, float(np.nanmin(r2.values)) - 0.05) if np.isfinite(r2.values).any() else -0.05
        ax_sc.plot([0, 1], [0, 1], color="0.4", ls=":", lw=1, zorder=1)
        ax_sc.set_xlim(-0.02, 1.02)
        ax_sc.set_ylim(max(y_lo, -1.5), 1.02)
        ax_sc.set_aspect("auto")
        ax_sc.text(0.03, 0.97, "above diagonal:\nfollows input patterns", transform=ax_sc.transAxes, ha="left",
                   va="top", fontsize=7.5, color="0.3")
        ax_sc.text(0.97, 0.03, "below diagonal:\nfollows labels", transform=ax_sc.transAxes, ha="right",
                   va="bottom", fontsize=7.5, color="0.3")
        ax_sc.set_xlabel("output η² of the top unit\n(best of assigned / original / predicted label)")
        ax_sc.set_ylabel("input R² of the top unit\n(cross-validated ridge)")
        ax_sc.grid(alpha=0.3, lw=0.5)
        _title(ax_sc, f"{labels[cond]}: what the top unit follows", color_model, loc="left")
    handles = [Line2D([], [], color=lcolors[i], lw=2.5, label=f"layer {i + 1}") for i in range(n_layers_max)]
    handles += [Line2D([], [], color="0.3", ls="--", label=f"ratio threshold ({threshold:g})"),
                Line2D([], [], marker="v", ls="none", color="0.6", mec="black", mew=0.5, label="onset epoch (per seed)"),
                Line2D([], [], color="black", lw=1, label="test error (right axis)"),
                Line2D([], [], marker="o", ls="none", color="0.6", ms=3, label="early analysed epoch"),
                Line2D([], [], marker="o", ls="none", color="0.6", ms=9, label="late analysed epoch")]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)), fontsize=8.5, frameon=False)
    _suptitle(fig, "Large activation: a single hidden unit much larger than the others, and what it encodes\n"
                 + _subtitle(conds, band, "ratio = largest unit's max |activation| / median unit's, over all probes"))
    return fig


# --- routing --------------------------------------------------------------------------------------------


def plot_routing(routing: Mapping[str, xr.Dataset], band: str = "std", max_cols: int = 3) -> Figure:
    """Per model: cosine of test samples to the clean / noisy class mean of their predicted class."""
    groups, conds, colors, labels = _conditions(routing, "routing")
    n_layers_max, lcolors = _layer_palette(groups)
    n_cols, n_blocks = _blocks(len(conds), max_cols)
    fig = _new_figure(1.0 + 4.2 * n_cols, 1.6 + 6.4 * n_blocks)
    cells = _grid(fig, len(conds), 2, max_cols, height_ratios=[1.2, 1])
    for cond, (ax_top, ax_margin) in zip(conds, cells):
        ds = groups[cond]
        epochs = ds["epoch"].values
        layers = ds["layer"].values
        last = int(layers.max())
        color_model = colors[cond.split("-")[0]]
        for corr in ("correct", "incorrect"):
            for ref in ("clean", "noisy"):
                da = ds["routing"].sel(layer=last, correctness=corr, reference=ref)
                _line_band(ax_top, epochs, da, band, REFERENCE_COLORS[ref], ls=CORRECTNESS_STYLE[corr])
        epoch_axis(ax_top, epochs, label=False)
        ax_top.set_ylabel("cos(test activation,\nclass mean of predicted class)")
        ax_top.grid(alpha=0.3, lw=0.5)
        _title(ax_top, f"{labels[cond]}: last hidden layer ({last})", color_model, loc="left")
        for layer in layers:
            for corr in ("correct", "incorrect"):
                da = ds["routing_margin"].sel(layer=layer, correctness=corr)
                _line_band(ax_margin, epochs, da, band, lcolors[int(layer) - 1], ls=CORRECTNESS_STYLE[corr],
                           lw=1.3, alpha=0.12)
        ax_margin.axhline(0, color="0.3", lw=0.8)
        epoch_axis(ax_margin, epochs)
        ax_margin.set_ylabel("clean − noisy cosine\n(> 0: closer to clean signal)")
        ax_margin.grid(alpha=0.3, lw=0.5)
        _title(ax_margin, f"{labels[cond]}: routing margin, every layer", color_model, loc="left")
    handles = [Line2D([], [], color=REFERENCE_COLORS["clean"], lw=2, label="to clean class mean"),
               Line2D([], [], color=REFERENCE_COLORS["noisy"], lw=2, label="to noisy class mean"),
               Line2D([], [], color="0.3", ls="-", lw=1.6, label="correct test predictions"),
               Line2D([], [], color="0.3", ls="--", lw=1.6, label="incorrect test predictions")]
    handles += [Line2D([], [], color=lcolors[i], lw=2.5, label=f"layer {i + 1} (margin)") for i in range(n_layers_max)]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)), fontsize=8.5, frameon=False)
    _suptitle(fig, "Routing: do test samples line up with the clean or the noisy training signal of their predicted "
                 "class?\n" + _subtitle(conds, band, "class means of clean / noisy training probes by assigned label"))
    return fig


# --- representation dynamics: CKA, probes ---------------------------------------------------------------


PROBE_TARGET_STYLE = {  # line style, label
    "test": ("-", "test probes, true label"),
    "noisy_original": ("--", "noisy train probes, original (true) label"),
    "noisy_assigned": (":", "noisy train probes, assigned (wrong) label"),
}
COLLAPSE_TOP = (  # variable, title, y label, log
    ("nc1", "NC1: within- / between-class variability", "tr(Σ_W Σ_B⁺)/K (log scale)\nlower = more collapsed", True),
    ("nc1_clean", "NC1 of the clean probes only", "tr(Σ_W Σ_B⁺)/K (log scale)\nlower = more collapsed", True),
    ("dilation", "Dilation of the noisy samples", "noisy / clean mean distance\nto the clean class mean", False),
)
COLLAPSE_BOTTOM = (  # variable, title, y label
    ("nc2_equinorm", "NC2: equal norms of class means", "std / mean of ||μ_c − μ_G||\n(→ 0)"),
    ("nc2_equiangle", "NC2: equal angles of class means", "std of the cosines\nbetween class means (→ 0)"),
    ("nc3", "NC3: classifier aligned with class means", "||W/||W|| − M/||M||||²\n(→ 0)"),
    ("nc4", "NC4: network = nearest class centre", "fraction of train probes\nwhere they agree (→ 1)"),
)


def _seed_mean(da: xr.DataArray) -> xr.DataArray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return da.mean("seed", skipna=True) if "seed" in da.dims else da


def _epoch_heatmap(ax, epochs, matrix, cmap, vmin=0.0, vmax=1.0, xlabel=True, ylabel=True):
    """An epoch × epoch matrix (rows = y = `epoch`, columns = x = `epoch_other`) on symlog axes; square."""
    edges = _symlog_edges(epochs)
    mesh = ax.pcolormesh(edges, edges, np.asarray(matrix, dtype=np.float64), cmap=cmap, vmin=vmin, vmax=vmax,
                         shading="flat", rasterized=True)
    epoch_axis(ax, None, label=False)
    epoch_yaxis(ax, "epoch" if ylabel else None)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(edges[0], edges[-1])
    ax.set_box_aspect(1)
    ax.tick_params(labelsize=7.5)
    if xlabel:
        ax.set_xlabel("epoch", fontsize=8.5)
    return mesh


def plot_cka(cka: Mapping[str, xr.Dataset], band: str = "std") -> Figure:
    """Per condition (row): CKA to the final epoch per layer (left), epoch × epoch CKA per hidden layer."""
    groups, conds, colors, labels = _conditions(cka, "cka")
    n_layers_max, lcolors = _layer_palette(groups)
    fig = _new_figure(1.6 + 2.75 * (n_layers_max + 1), 1.9 + 2.75 * len(conds))
    axes = fig.subplots(len(conds), n_layers_max + 1, squeeze=False)
    mesh, maps = None, []
    for row, cond in enumerate(conds):
        ds = groups[cond]
        epochs = ds["epoch"].values
        layers = [int(layer) for layer in ds["layer"].values]
        last = epochs[-1]
        color_model = colors[cond.split("-")[0]]
        ax_line = axes[row, 0]
        for layer in layers:
            da = ds["cka"].sel(layer=layer, epoch_other=last)
            _line_band(ax_line, epochs, da, band, lcolors[layer - 1], f"layer {layer}", marker="o", ms=2.5)
        epoch_axis(ax_line, epochs, label=row == len(conds) - 1)
        ax_line.set_ylim(-0.03, 1.03)
        ax_line.set_box_aspect(1)
        ax_line.set_ylabel(f"CKA with the final epoch ({last:g})")
        ax_line.grid(alpha=0.3, lw=0.5)
        ax_line.tick_params(labelsize=7.5)
        _title(ax_line, f"{labels[cond]}: CKA to final epoch", color_model, loc="left")
        mean = _seed_mean(ds["cka"]).transpose("layer", "epoch", "epoch_other")
        for col in range(1, n_layers_max + 1):
            ax = axes[row, col]
            if col > len(layers):
                ax.remove()
                continue
            layer = layers[col - 1]
            mesh = _epoch_heatmap(ax, epochs, mean.sel(layer=layer).values, "viridis",
                                  xlabel=row == len(conds) - 1, ylabel=col == 1)
            maps.append(ax)
            _title(ax, f"{labels[cond]} · layer {layer}", color_model, loc="left")
    if mesh is not None:
        cbar = fig.colorbar(mesh, ax=maps, shrink=0.8, pad=0.01, aspect=30)
        cbar.set_label("linear CKA between two epochs, mean over seeds\n(1 = same representation up to rotation "
                       "and scale)")
    handles = [Line2D([], [], color=lcolors[i], lw=2.5, marker="o", ms=3, label=f"layer {i + 1}")
               for i in range(n_layers_max)]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(8, len(handles)), fontsize=8.5, frameon=False,
               title="left column: hidden layer (1 = input side), " + BAND_LABEL[band], title_fontsize=8.5)
    _suptitle(fig, "Representation dynamics: linear CKA of each hidden layer with itself across epochs\n"
                 + _subtitle(conds, band, "all probe samples; heatmaps: mean over seeds"))
    return fig


def plot_probes(probes: Mapping[str, xr.Dataset], band: str = "std", max_cols: int = 4) -> Figure:
    """Per condition: linear-probe accuracy per layer (top), agreement of the probes across epochs (below)."""
    groups, conds, colors, labels = _conditions(probes, "probes")
    n_layers_max, lcolors = _layer_palette(groups)
    n_cols, n_blocks = _blocks(len(conds), max_cols)
    fig = _new_figure(1.4 + 3.9 * n_cols, 1.6 + 9.4 * n_blocks)
    cells = _grid(fig, len(conds), 3, max_cols, height_ratios=[1.0, 1.0, 1.0])
    mesh, maps = None, []
    for cond, (ax_acc, *ax_maps) in zip(conds, cells):
        ds = groups[cond]
        epochs = ds["epoch"].values
        layers = [int(layer) for layer in ds["layer"].values]
        color_model = colors[cond.split("-")[0]]
        targets = [str(t) for t in ds["target"].values]
        for layer in layers:
            for target, (ls, _) in PROBE_TARGET_STYLE.items():
                if target not in targets:
                    continue
                da = ds["probe_accuracy"].sel(layer=layer, target=target)
                _line_band(ax_acc, epochs, da, band, lcolors[layer - 1], ls=ls, lw=1.4, alpha=0.08, marker="o",
                           ms=2.5)
        epoch_axis(ax_acc, epochs)
        ax_acc.set_ylim(-0.02, 1.02)
        ax_acc.set_ylabel("probe accuracy\n(probe trained on clean probes)")
        ax_acc.grid(alpha=0.3, lw=0.5)
        _title(ax_acc, f"{labels[cond]}: linear probe per layer", color_model, loc="left")
        mean = _seed_mean(ds["agreement"]).transpose("layer", "epoch", "epoch_other")
        shown = list(dict.fromkeys([layers[0], layers[-1]]))
        for ax, layer in zip(ax_maps, shown + [None] * (2 - len(shown))):
            if layer is None:
                ax.set_axis_off()
                _no_data(ax, "only one hidden layer")
                continue
            m = mean.sel(layer=layer).values
            if not np.isfinite(m).any():
                _no_data(ax, "no test probes: agreement undefined")
                ax.set_box_aspect(1)
                continue
            mesh = _epoch_heatmap(ax, epochs, m, "cividis")
            maps.append(ax)
            where = "first" if layer == layers[0] else "last"
            _title(ax, f"{labels[cond]}: agreement, layer {layer} ({where})", color_model, loc="left")
    if mesh is not None:
        cbar = fig.colorbar(mesh, ax=maps, shrink=0.6, pad=0.01, aspect=30)
        cbar.set_label("agreement of two epochs' probes\n(fraction of test probes, same predicted class)")
    handles = [Line2D([], [], color=lcolors[i], lw=2.5, label=f"layer {i + 1}") for i in range(n_layers_max)]
    handles += [Line2D([], [], color="0.3", ls=ls, lw=1.6, label=label) for ls, label in PROBE_TARGET_STYLE.values()]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles) if len(handles) <= 8 else 4,
               fontsize=8.5, frameon=False)
    _suptitle(fig, "Linear probes per layer: what each layer's representation makes linearly readable, epoch by "
                 "epoch\n" + _subtitle(conds, band, "probes trained on clean probes with their true labels; "
                                                    "heatmaps: mean over seeds"))
    return fig


# --- neural collapse ------------------------------------------------------------------------------------


def plot_collapse(collapse: Mapping[str, xr.Dataset], band: str = "std") -> Figure:
    """NC1, NC1 on clean probes and dilation (top), NC2–NC4 (bottom) over epochs, all conditions overlaid."""
    groups, conds, colors, labels = _conditions(collapse, "collapse")
    styles = variant_styles(conds)
    fig = _new_figure(15, 8.6)
    gs = fig.add_gridspec(2, 12)
    top = [fig.add_subplot(gs[0, 4 * i:4 * i + 4]) for i in range(3)]
    bottom = [fig.add_subplot(gs[1, 3 * i:3 * i + 3]) for i in range(4)]
    all_epochs = np.concatenate([groups[c]["epoch"].values for c in conds])
    panels = [(ax, var, title, ylabel, log) for ax, (var, title, ylabel, log) in zip(top, COLLAPSE_TOP)]
    panels += [(ax, var, title, ylabel, False) for ax, (var, title, ylabel) in zip(bottom, COLLAPSE_BOTTOM)]
    for ax, var, title, ylabel, log in panels:
        drawn = False
        for cond in conds:
            ds = groups[cond]
            if var not in ds:
                continue
            da = ds[var].where(np.isfinite(ds[var]))  # inf dilation (collapsed clean samples) is not drawable
            if log:
                da = da.where(da > 0)
            if not np.isfinite(da.values).any():
                continue
            drawn = True
            _line_band(ax, ds["epoch"].values, da, band, colors[cond.split("-")[0]], labels[cond], ls=styles[cond],
                       positive=log)
        if var == "dilation":
            ax.axhline(1.0, color="0.3", ls="--", lw=1.0, zorder=1)
            ax.text(0.98, 1.0, "1 = noisy as close as clean ", transform=ax.get_yaxis_transform(), ha="right",
                    va="top", fontsize=7.5, color="0.25", zorder=6,
                    bbox=dict(facecolor="white", alpha=0.75, edgecolor="none", pad=1.0))
        if var == "nc4":
            ax.set_ylim(-0.02, 1.02)
        if not drawn:
            _no_data(ax, "no noisy probes: dilation undefined" if var == "dilation" else "all NaN")
        elif log:
            log_y(ax)
        epoch_axis(ax, all_epochs, label=ax in bottom)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.grid(alpha=0.3, lw=0.5)
        _title(ax, title, loc="left")
    handles, texts = [], []
    for cond in conds:
        handles.append(Line2D([], [], color=colors[cond.split("-")[0]], ls=styles[cond], lw=2))
        texts.append(labels[cond])
    fig.legend(handles=handles, labels=texts, loc="outside lower center", ncol=min(6, len(handles)), fontsize=8.5,
               frameon=False)
    layers = sorted({int(groups[c].attrs.get("layer", -1)) for c in conds})
    where = "last hidden layer" + (f" ({', '.join(map(str, layers))})" if layers and layers[0] > 0 else "")
    _suptitle(fig, "Neural collapse under label noise: the last hidden layer's class structure over training\n"
                 + _subtitle(conds, band, f"{where}, train probes with their assigned labels"))
    return fig


# --- output ---------------------------------------------------------------------------------------------


def save_figure(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    """Write the figure (format from the path's suffix) atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    return path
