"""Figures across a sweep (config `sweep`: one family of models over a depth × width grid): model-wise and
epoch-wise double descent side by side, as in Nakkiran et al. 2019 (Fig. 2).

Each figure takes the named inputs of its rule (run id -> xr.Dataset) and `sweep` (model -> {depth, width},
ddscope.config.sweep_models); runs of models outside the sweep are left out. Runs are grouped into panels, one
per depth and (noise, loss) variant; within a panel one row per width, seeds stacked. Test error and loss are the
smoothed curves of the double_descent analysis (the curves its first minimum and final level are read from);
the internal metric is `separation_mean` of the last hidden layer (cos of the clean and noisy class means).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from ..config import parse_condition, parse_noise_tag, parse_run
from .runs import group_seeds
from .style import (BAND_LABEL, BLUE, DARK, GREEN, epoch_axis, figure_legend, finite_mean, gridlines, line_band,
                    new_figure, no_data, seed_mean, suptitle, symlog_edges, title)

# colour scales of test error and loss end at this percentile of their values: the first epochs, near chance,
# would otherwise take most of the range and flatten the double-descent bumps (the bar shows the cut as an arrow)
TOP_PERCENTILE = 98
# the epochs at which the model-wise curves are read: (key, legend label, colour, line style, marker)
EPOCH_VIEWS = (
    ("final", "final epoch", DARK, "-", "o"),
    ("own_min", "each width at its own first minimum (early stopping)", GREEN, ":", "v"),
    ("fixed_min", "fixed epoch: first minimum of the widest model", BLUE, "--", "s"),
)
HEATMAP_ROWS = (  # (input, variable, title, colour-bar label, colour map, log colour scale, top percentile)
    ("double_descent", "test_error_smooth", "test error", "test error (smoothed)", "viridis", False, TOP_PERCENTILE),
    ("double_descent", "test_loss_smooth", "test loss", "test loss (smoothed, log scale)", "viridis", True,
     TOP_PERCENTILE),
    ("separation", "separation_mean", "last-layer separation",
     "cos(clean, noisy class means), last hidden layer\n(lower = more separated)", "magma", False, 100),
)
PLAIN = FuncFormatter(lambda v, _: f"{v:.3g}")
MARK_STYLE = {"mec": "white", "mew": 1.4, "ms": 6, "ls": "none", "zorder": 5}


# --- runs -> panels -------------------------------------------------------------------------------------


def sweep_panels(runs: Mapping[str, xr.Dataset], sweep: Mapping[str, Mapping]) -> dict[tuple, dict[int, xr.Dataset]]:
    """(depth, noise, loss) -> width -> that model's dataset with its seeds stacked; depths, noise rates and
    widths ascending. Models not in `sweep` are left out."""
    groups = group_seeds({run: ds for run, ds in runs.items() if parse_run(run)["model"] in sweep})
    panels: dict[tuple, dict[int, xr.Dataset]] = {}
    for cond, ds in groups.items():
        p = parse_condition(cond)
        grid = sweep[p["model"]]
        panels.setdefault((int(grid["depth"]), p["noise"], p["loss"]), {})[int(grid["width"])] = ds
    order = sorted(panels, key=lambda k: (k[0], parse_noise_tag(k[1])[1], k[2]))
    return {k: dict(sorted(panels[k].items())) for k in order}


def panel_label(key: tuple, keys) -> str:
    """`depth 3 · sym20`, the loss added when the study has several."""
    depth, noise, loss = key
    several_losses = len({k[2] for k in keys}) > 1
    return f"depth {depth} ({depth - 1} hidden) · {noise}" + (f" · {loss}" if several_losses else "")


def shared_parts(keys) -> str:
    """`noise: sym20, loss: ce`: what every panel shares."""
    parts = [f"{name}: {values.pop()}" for name, values in
             (("noise", {k[1] for k in keys}), ("loss", {k[2] for k in keys})) if len(values) == 1]
    return ", ".join(parts)


def _last_layer(da: xr.DataArray) -> xr.DataArray:
    return da.isel(layer=-1) if "layer" in da.dims else da


def width_epoch_matrix(by_width: Mapping[int, xr.Dataset], var: str) -> xr.DataArray:
    """Mean over seeds of `var` (its last hidden layer if per layer) as [width, epoch], epochs joined outer."""
    widths = list(by_width)
    rows = [seed_mean(_last_layer(by_width[w][var])).drop_vars("layer", errors="ignore") for w in widths]
    return xr.concat(rows, dim=pd.Index(widths, name="width"), join="outer")


def width_edges(widths) -> np.ndarray:
    """Cell edges of the widths on a log axis: geometric midpoints, the outer cells as wide as their neighbours."""
    w = np.log2(np.asarray(widths, dtype=np.float64))
    if w.size == 1:
        mid = np.array([w[0] - 0.5, w[0] + 0.5])
    else:
        inner = (w[1:] + w[:-1]) / 2
        mid = np.concatenate([[w[0] - (inner[0] - w[0])], inner, [w[-1] + (w[-1] - inner[-1])]])
    return 2.0 ** mid


def width_axis(ax, widths, which: str = "x", label: bool = True) -> None:
    """A log axis of the swept widths, ticked at each of them."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log", base=2)
    axis.set_major_locator(FixedLocator([float(w) for w in widths]))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(NullLocator())
    if label:
        (ax.set_xlabel if which == "x" else ax.set_ylabel)("width (units per hidden layer, log scale)")


def values_at(da: xr.DataArray, epochs) -> np.ndarray:
    """Per seed, `da` [seed, epoch] at that seed's epoch (the nearest one it has); NaN where the epoch is NaN."""
    if "seed" not in da.dims:
        da = da.expand_dims("seed")
    epochs = np.broadcast_to(np.asarray(epochs, dtype=np.float64), (da.sizes["seed"],))
    out = np.full(da.sizes["seed"], np.nan)
    for i, epoch in enumerate(epochs):
        if np.isfinite(epoch):
            row = da.isel(seed=i).dropna("epoch")
            if row.sizes["epoch"]:
                out[i] = float(row.sel(epoch=epoch, method="nearest"))
    return out


def _seeds(ds: xr.Dataset, var: str) -> np.ndarray:
    return np.atleast_1d(np.asarray(ds[var].values, dtype=np.float64))




def fixed_min_epoch(by_width: Mapping[int, xr.Dataset]) -> float:
    """The fixed early epoch of the model-wise curves: the widest model's first-minimum epoch (mean over seeds)."""
    return finite_mean(by_width[max(by_width)]["test_error_min_epoch"])


def model_wise_values(dd: Mapping[int, xr.Dataset], metric: Mapping[int, xr.Dataset] | None = None,
                      var: str = "test_error_smooth") -> dict[str, xr.DataArray]:
    """For each view of EPOCH_VIEWS: `var` [width, seed] at that epoch.

    `dd`: width -> seed-stacked double_descent; `metric`: width -> the seed-stacked dataset holding `var` (default:
    `dd` itself). final: its last epoch; own_min: each run's own first-minimum epoch; fixed_min: one epoch for all
    widths (fixed_min_epoch). An epoch the metric was not recorded at is read at the nearest recorded one.
    """
    metric = dd if metric is None else metric
    e_fixed = fixed_min_epoch(dd)
    widths = list(dd)
    out = {key: [] for key, *_ in EPOCH_VIEWS}
    n_seeds = max(dd[w].sizes.get("seed", 1) for w in widths)
    for w in widths:
        if w not in metric:
            for key in out:
                out[key].append(np.full(n_seeds, np.nan))
            continue
        da = _last_layer(metric[w][var].reindex(seed=dd[w]["seed"].values))  # the seeds of the run's epochs
        views = {"final": values_at(da, da["epoch"].values.max()),
                 "own_min": values_at(da, _seeds(dd[w], "test_error_min_epoch")),
                 "fixed_min": values_at(da, e_fixed)}
        for key, v in views.items():
            out[key].append(np.pad(v, (0, n_seeds - v.size), constant_values=np.nan))
    return {key: xr.DataArray(np.array(rows), dims=("width", "seed"), coords={"width": widths})
            for key, rows in out.items()}


def interpolation_width(dd: Mapping[int, xr.Dataset]) -> float:
    """Smallest width whose noisy training labels were fitted (t_fit_noisy defined) in at least half its seeds."""
    for w, ds in dd.items():
        fitted = np.isfinite(_seeds(ds, "t_fit_noisy"))
        if fitted.size and fitted.mean() >= 0.5:
            return float(w)
    return float("nan")


# --- heatmaps over epoch × width ------------------------------------------------------------------------


def _mark_epochs(ax, dd: Mapping[int, xr.Dataset], curve: str) -> None:
    """On a heatmap row per width (means over seeds): the first minimum of `curve` (test_error | test_loss;
    circle), its later peak where the run has epoch-wise double descent in that curve (flag
    double_descent_<curve> in at least half the seeds; triangle), and the epoch the noisy labels are fitted
    (cross)."""
    for w, ds in dd.items():
        e_min, e_peak = finite_mean(ds[f"{curve}_min_epoch"]), finite_mean(ds[f"{curve}_peak_epoch"])
        if np.isfinite(e_min):
            ax.plot([e_min], [w], "o", mfc="none", **MARK_STYLE)
        if finite_mean(ds[f"double_descent_{curve}"]) >= 0.5 and np.isfinite(e_peak):
            ax.plot([e_peak], [w], "^", mfc="none", **MARK_STYLE)
        t_fit = finite_mean(ds["t_fit_noisy"])
        if np.isfinite(t_fit):
            ax.plot([t_fit], [w], "x", **MARK_STYLE)


def colour_norm(matrices, log: bool, top: float = 100):
    """One colour scale for a row of heatmaps: from the smallest value to the `top` percentile; (norm, clipped)."""
    values = np.concatenate([m.values[np.isfinite(m.values)].ravel() for m in matrices] + [np.array([])])
    if log:
        values = values[values > 0]
    if not values.size:
        return Normalize(0, 1), False
    lo, hi = float(values.min()), float(np.percentile(values, top))
    clipped = hi < values.max()
    if hi - lo < 1e-9:
        lo, hi = lo - 0.05 * abs(lo or 1), hi + 0.05 * abs(hi or 1)
    return (LogNorm(lo, hi) if log else Normalize(lo, hi)), clipped


def plot_model_wise_heatmaps(double_descent: Mapping[str, xr.Dataset], separation: Mapping[str, xr.Dataset],
                             band: str = "std", sweep: Mapping[str, Mapping] | None = None) -> Figure:
    """Test error, test loss and last-layer separation over epoch × width, one column per depth and variant."""
    if not sweep:
        raise ValueError("model_wise_heatmaps: the study has no sweep (config key `sweep`)")
    dd = sweep_panels(double_descent, sweep)
    if not dd:
        raise ValueError("model_wise_heatmaps: no runs of the sweep's models")
    inputs = {"double_descent": dd, "separation": sweep_panels(separation, sweep) if separation else {}}
    keys = list(dd)
    fig = new_figure(2.2 + 4.4 * len(keys), 1.6 + 3.1 * len(HEATMAP_ROWS))
    axes = fig.subplots(len(HEATMAP_ROWS), len(keys), squeeze=False)
    for r, (source, var, what, cbar_label, cmap, log, top) in enumerate(HEATMAP_ROWS):
        matrices = {k: width_epoch_matrix(inputs[source][k], var) for k in keys if k in inputs[source]}
        norm, clipped = colour_norm(matrices.values(), log, top)
        mesh = None
        for c, key in enumerate(keys):
            ax = axes[r, c]
            widths = list(dd[key])
            if key in matrices and np.isfinite(matrices[key].values).any():
                m = matrices[key].reindex(width=widths)
                epochs = m["epoch"].values
                mesh = ax.pcolormesh(symlog_edges(epochs), width_edges(widths), m.values, cmap=cmap, norm=norm,
                                     shading="flat")
                ax.set_xlim(symlog_edges(epochs)[[0, -1]])
                _mark_epochs(ax, dd[key], "test_loss" if var == "test_loss_smooth" else "test_error")
            else:
                no_data(ax, f"no {what}" + (" (no noisy probes)" if source == "separation" else ""))
            epoch_axis(ax, None, label=r == len(HEATMAP_ROWS) - 1)
            width_axis(ax, widths, "y", label=c == 0)
            ax.set_ylim(width_edges(widths)[[0, -1]])
            title(ax, f"{panel_label(key, keys)}: {what}", loc="left")
        if mesh is not None:
            cbar = fig.colorbar(mesh, ax=list(axes[r]), shrink=0.95, pad=0.01, aspect=18,
                                extend="max" if clipped else "neither")
            cbar.set_label(cbar_label, fontsize=8.5)
            if log:  # plain numbers, also on the minor ticks that a range under a decade labels
                cbar.ax.yaxis.set_major_formatter(PLAIN)
                cbar.ax.yaxis.set_minor_formatter(PLAIN)
    handles = [Line2D([], [], marker="o", mfc="none", mec="black", ls="none", label="first minimum (mean epoch)"),
               Line2D([], [], marker="^", mfc="none", mec="black", ls="none",
                      label="later peak, where epoch-wise double descent (mean epoch)"),
               Line2D([], [], marker="x", color="black", ls="none",
                      label="noisy labels fitted (t_fit_noisy; mean epoch)")]
    figure_legend(fig, handles, ncol=3 if len(keys) > 1 else 1)
    suptitle(fig, "Model-wise and epoch-wise double descent over epoch × width\n"
                  + "; ".join(filter(None, [shared_parts(keys), "mean over seeds", "markers: test error (loss row: "
                                            "test loss)"])))
    return fig


# --- model-wise curves at fixed epochs -----------------------------------------------------------------


def plot_model_wise(double_descent: Mapping[str, xr.Dataset], separation: Mapping[str, xr.Dataset],
                    band: str = "std", sweep: Mapping[str, Mapping] | None = None) -> Figure:
    """Test error (top) and last-layer separation (bottom) against width at the final epoch, at each run's first
    minimum and at one fixed early epoch; one column per depth and variant."""
    if not sweep:
        raise ValueError("model_wise: the study has no sweep (config key `sweep`)")
    dd = sweep_panels(double_descent, sweep)
    if not dd:
        raise ValueError("model_wise: no runs of the sweep's models")
    sep = sweep_panels(separation, sweep) if separation else {}
    keys = list(dd)
    fig = new_figure(1.8 + 4.4 * len(keys), 8.2)
    axes = fig.subplots(2, len(keys), squeeze=False, sharey="row")
    for c, key in enumerate(keys):
        widths = list(dd[key])
        rows = ((axes[0, c], model_wise_values(dd[key]), "test error (smoothed)", "test error"),
                (axes[1, c], model_wise_values(dd[key], sep.get(key, {}), "separation_mean"),
                 "cos(clean, noisy class means), last hidden layer\n(lower = more separated)",
                 "last-layer separation"))
        e_fixed = fixed_min_epoch(dd[key])
        w_fit = interpolation_width(dd[key])
        for ax, views, ylabel, what in rows:
            drawn = False
            for view, label, color, ls, marker in EPOCH_VIEWS:
                da = views[view]
                if np.isfinite(da.values).any():
                    drawn = True
                    line_band(ax, widths, da, band, color, label, ls=ls, marker=marker, ms=4)
            if not drawn:
                no_data(ax, f"no {what}")
            if np.isfinite(w_fit):
                ax.axvline(w_fit, color="0.35", ls="-.", lw=1.0, zorder=1)
                ax.text(w_fit, 0.02, f" noisy labels fitted\n from width {w_fit:g}", transform=ax.get_xaxis_transform(),
                        ha="left", va="bottom", fontsize=7.5, color="0.3")
            width_axis(ax, widths, "x", label=ax is axes[1, c])
            gridlines(ax)
            if c == 0:
                ax.set_ylabel(ylabel)
            note = f"; fixed epoch {e_fixed:.0f}" if np.isfinite(e_fixed) else ""
            title(ax, f"{panel_label(key, keys)}: {what}{note}", loc="left")
    handles = [Line2D([], [], color=color, ls=ls, marker=marker, ms=4, label=label)
               for _, label, color, ls, marker in EPOCH_VIEWS]
    figure_legend(fig, handles, ncol=3 if len(keys) > 1 else 1)
    suptitle(fig, "Model-wise double descent: test error and last-layer separation against width, "
                  "at fixed epochs\n" + ", ".join(filter(None, [shared_parts(keys), BAND_LABEL[band]])))
    return fig
