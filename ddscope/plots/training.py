"""Training figures: learning curves per split with the three phases shaded, epoch-wise double descent."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ddscope.artifacts import current_names

from .runs import conditions, group_seeds, subtitle, variant_styles
from .style import (PHASE_ALPHA, PHASES, SPLIT_STYLE, SPLITS, epoch_axis, figure_legend, finite_mean, gridlines,
                    line_band, log_y, new_figure, suptitle, title)


def phase_boundaries(dd: xr.Dataset) -> tuple[float, float, int, int]:
    """(mean phase1_end, mean phase2_end, seeds with both, seeds) of a seed-stacked double_descent dataset.

    phase1_end is the first test-error minimum and phase2_end the epoch the noisy labels are fitted (NaN if never,
    or not after that minimum), so runs with and without double descent alike have phases."""
    p1 = np.atleast_1d(np.asarray(dd["phase1_end"].values, dtype=np.float64))
    p2 = np.atleast_1d(np.asarray(dd["phase2_end"].values, dtype=np.float64))
    ok = np.isfinite(p1) & np.isfinite(p2)
    return finite_mean(p1[ok]), finite_mean(p2[ok]), int(ok.sum()), int(p1.size)


def shade_phases(ax, p1, p2, e_first, e_last) -> None:
    """Shade the three phases between the first epoch, the two boundaries and the last epoch."""
    if not (np.isfinite(p1) and np.isfinite(p2)):
        return
    for (color, _), (a, b) in zip(PHASES, [(e_first, p1), (p1, p2), (p2, e_last)]):
        if b > a:
            ax.axvspan(a, b, color=color, alpha=PHASE_ALPHA, linewidth=0, zorder=0)


def _phase_note(n_ok: int, n: int) -> str:
    if n_ok == 0:
        return "noisy labels not fitted after the first test-error minimum: phases undefined"
    if n_ok < n:
        return f"phases: mean boundaries of the {n_ok}/{n} seeds that fitted the noise after the first minimum"
    return f"phases: mean boundaries over {n} seed{'s' if n > 1 else ''}"


def plot_curves(curves: Mapping[str, xr.Dataset], double_descent: Mapping[str, xr.Dataset],
                band: str = "std") -> Figure:
    """Loss and accuracy of the five splits over epochs, one row per model, the three phases shaded."""
    curves = {run: current_names(ds, "curves") for run, ds in curves.items()}
    groups, conds, colors, labels = conditions(curves, "curves")
    dd_groups = group_seeds(double_descent) if double_descent else {}
    fig = new_figure(11, 1.2 + 2.7 * len(conds))
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
            shade_phases(ax, p1, p2, epochs.min(), epochs.max())
        for split in SPLITS:
            if split not in ds["split"].values:
                continue
            color, label = SPLIT_STYLE[split]
            line_band(ax_loss, epochs, ds["cross_entropy"].sel(split=split), band, color, label, positive=True)
            line_band(ax_acc, epochs, ds["accuracy"].sel(split=split), band, color, label)
        log_y(ax_loss)
        ax_loss.set_ylabel("loss (log scale)")
        ax_acc.set_ylabel("accuracy")
        ax_acc.set_ylim(-0.02, 1.02)
        for ax, what in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            epoch_axis(ax, epochs, label=row == len(conds) - 1)
            title(ax, f"{labels[cond]} — {what}", colors[cond], loc="left")
            gridlines(ax)
        ax_acc.text(0.99, 0.03, _phase_note(n_ok, n), transform=ax_acc.transAxes, ha="right", va="bottom",
                    fontsize=7.5, color="0.25", bbox=dict(facecolor="white", alpha=0.75, edgecolor="none", pad=1.5))
    handles = [Line2D([], [], color=SPLIT_STYLE[s][0], lw=2, label=SPLIT_STYLE[s][1]) for s in SPLITS]
    handles += [Patch(facecolor=c, alpha=PHASE_ALPHA, label=label) for c, label in PHASES]
    figure_legend(fig, handles, ncol=3)
    suptitle(fig, "Learning curves per split and the three phases of epoch-wise double descent\n"
                  + subtitle(conds, band))
    return fig


def _mark_extremes(ax, ds: xr.Dataset, var: str, color, k: int, marks: list) -> None:
    """Mark the first minimum and the later peak of `var` (mean epoch and value over seeds)."""
    e_min, v_min = finite_mean(ds[f"{var}_min_epoch"]), finite_mean(ds[f"{var}_min"])
    e_peak, v_peak = finite_mean(ds[f"{var}_peak_epoch"]), finite_mean(ds[f"{var}_peak"])
    if np.isfinite(e_min) and np.isfinite(v_min):
        ax.plot([e_min], [v_min], "o", ms=7, mfc="white", mec=color, mew=2, zorder=5, clip_on=False)
        marks.append((e_min, v_min, f"min @ {e_min:.0f}", color, False, k))
    if np.isfinite(e_peak) and np.isfinite(v_peak) and np.isfinite(e_min) and e_peak > e_min:
        ax.plot([e_peak], [v_peak], "^", ms=8, color=color, mec="black", mew=0.6, zorder=5, clip_on=False)
        marks.append((e_peak, v_peak, f"peak @ {e_peak:.0f}", color, True, k))


def _annotate(ax, marks) -> None:
    """Label the marks once the axis is final, staggered so that nearby labels do not overlap."""
    for e, v, text, color, above, k in marks:
        frac = ax.transAxes.inverted().transform(ax.transData.transform((e, v)))[0]
        ha = "right" if frac > 0.8 else "left" if frac < 0.2 else "center"
        dy = (12 + 10 * (k % 3)) * (1 if above else -1)
        ax.annotate(text, (e, v), xytext=(0, dy), textcoords="offset points", ha=ha,
                    va="bottom" if above else "top", fontsize=7.5, color=color,
                    arrowprops=dict(arrowstyle="-", color=color, lw=0.6, shrinkA=0, shrinkB=4))


def plot_double_descent(double_descent: Mapping[str, xr.Dataset], band: str = "std") -> Figure:
    """Smoothed test error and test loss of every model overlaid, first minimum and later peak marked."""
    groups, conds, colors, labels = conditions(double_descent, "double_descent")
    styles = variant_styles(conds)
    fig = new_figure(12, 5.2)
    axes = fig.subplots(1, 2, squeeze=False)[0]
    panels = (("test_error", "test error (smoothed)", False), ("test_loss", "test loss (smoothed, log scale)", True))
    for ax, (var, ylabel, log) in zip(axes, panels):
        marks = []  # (epoch, value, text, colour, above, condition index)
        for k, cond in enumerate(conds):
            ds = groups[cond]
            n = ds.sizes.get("seed", 1)
            n_dd = {curve: int(np.nansum(np.atleast_1d(ds[f"double_descent_{curve}"].values).astype(float)))
                    for curve in ("test_loss", "test_error")}
            label = (f"{labels[cond]} (double descent: test loss {n_dd['test_loss']}/{n}, "
                     f"test error {n_dd['test_error']}/{n} seed{'s' if n > 1 else ''})")
            line_band(ax, ds["epoch"].values, ds[f"{var}_smooth"], band, colors[cond], label, ls=styles[cond],
                      positive=log)
            _mark_extremes(ax, ds, var, colors[cond], k, marks)
        epoch_axis(ax, np.concatenate([groups[c]["epoch"].values for c in conds]))
        ax.margins(y=0.15)
        if log:
            log_y(ax)
        _annotate(ax, marks)
        ax.set_ylabel(ylabel)
        gridlines(ax)
        title(ax, ylabel.split(" (")[0].capitalize(), loc="left")
    handles = [Line2D([], [], marker="o", ls="none", mfc="white", mec="black", mew=1.5, ms=7,
                      label="first minimum (mean epoch over seeds)"),
               Line2D([], [], marker="^", ls="none", color="0.5", mec="black", mew=0.6, ms=8,
                      label="later peak (mean epoch over seeds)")]
    model_handles, model_labels = axes[0].get_legend_handles_labels()
    figure_legend(fig, model_handles + handles, ncol=min(3, len(model_handles) + 2),
                  labels=model_labels + [h.get_label() for h in handles])
    suptitle(fig, "Epoch-wise double descent: test error falls, rises while the noise is memorised, falls again\n"
                  + subtitle(conds, band, "peak shown only where it comes after the minimum"))
    return fig
