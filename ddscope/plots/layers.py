"""Figures of what happens inside the hidden layers, per condition: separation of the clean and noisy signal,
the large activation (one unit much larger than the rest) and the routing of test samples."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ddscope.analyses.large_activation import locate_large_activation
from ddscope.analyses.separation import class_mean_cosine

from .runs import conditions, group_seeds, layer_palette, subtitle
from .style import (CORRECTNESS_STYLE, REFERENCE_COLORS, epoch_axis, figure_legend, finite_mean, gridlines,
                    line_band, log_y, new_figure, no_data, panel_blocks, panel_grid, seed_mean, suptitle,
                    symlog_edges, title)


# --- separation -----------------------------------------------------------------------------------------


def plot_separation(separation: Mapping[str, xr.Dataset], band: str = "std", max_cols: int = 3) -> Figure:
    """Per model: separation_mean per layer over epochs (lines; dashed: the noisy probes grouped by their original
    label) and as an epoch x layer heatmap."""
    groups, conds, colors, labels = conditions(separation, "separation")
    _, lcolors = layer_palette(groups)
    n_cols, n_blocks = panel_blocks(len(conds), max_cols)
    fig = new_figure(1.5 + 4.0 * n_cols, 1.4 + 5.6 * n_blocks)
    cells = panel_grid(fig, len(conds), 2, max_cols, height_ratios=[1.25, 1])
    means = {c: seed_mean(groups[c]["separation_mean"]) for c in conds}
    finite = np.concatenate([m.values[np.isfinite(m.values)] for m in means.values()] + [np.array([])])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmax - vmin < 1e-6:
        vmin, vmax = vmin - 0.05, vmax + 0.05
    mesh = None
    for cond, (ax_line, ax_map) in zip(conds, cells):
        ds = groups[cond]
        epochs = ds["epoch"].values
        layers = ds["layer"].values
        original = class_mean_cosine(ds["cos_clean_noisy"], "original")
        for layer in layers:
            line_band(ax_line, epochs, ds["separation_mean"].sel(layer=layer), band, lcolors[int(layer) - 1],
                      f"layer {int(layer)}")
            line_band(ax_line, epochs, original.sel(layer=layer), band, lcolors[int(layer) - 1], ls="--", lw=1.0,
                      alpha=0.0)
        epoch_axis(ax_line, epochs, label=False)
        ax_line.set_ylabel("cos(clean, noisy class means)\nlower = more separated")
        gridlines(ax_line)
        title(ax_line, f"{labels[cond]}: separation per layer", colors[cond], loc="left")
        handles, names = ax_line.get_legend_handles_labels()
        handles += [Line2D([], [], color="0.3", lw=1.6), Line2D([], [], color="0.3", ls="--", lw=1.0)]
        names += ["noisy by assigned label", "noisy by original label"]
        ax_line.legend(handles, names, fontsize=7.5, loc="best", ncol=1 + (len(layers) + 2) // 4, handlelength=1.5)
        m = means[cond].transpose("layer", "epoch").values
        if np.isfinite(m).any():
            mesh = ax_map.pcolormesh(symlog_edges(epochs), np.arange(len(layers) + 1) + 0.5, m,
                                     cmap="magma", vmin=vmin, vmax=vmax, shading="flat")
        else:
            no_data(ax_map, "all NaN (no clean or noisy probes)")
        epoch_axis(ax_map, None)
        ax_map.set_xlim(symlog_edges(epochs)[[0, -1]])
        ax_map.set_yticks(np.arange(1, len(layers) + 1), [str(int(layer)) for layer in layers])
        ax_map.set_ylim(len(layers) + 0.5, 0.5)
        ax_map.set_ylabel("hidden layer (1 = input side)")
        title(ax_map, f"{labels[cond]}: epoch × layer, mean over seeds", colors[cond], loc="left")
    if mesh is not None:
        cbar = fig.colorbar(mesh, ax=[c[1] for c in cells], shrink=0.9, pad=0.01, aspect=25)
        cbar.set_label("cos(clean, noisy class means)\n(lower = more separated)")
    suptitle(fig, "Signal separation: cosine of the class means of clean vs noisy training probes (noisy probes "
                  "grouped by assigned label; dashed: by original label)\n"
                  + subtitle(conds, band))
    return fig


# --- large activation -----------------------------------------------------------------------------------


def _ratio_panel(ax, ds: xr.Dataset, band: str, lcolors, threshold: float) -> None:
    """Top/median unit ratio per layer (log), the threshold and the onset epoch of each seed on it."""
    epochs, layers = ds["epoch"].values, ds["layer"].values
    for layer in layers:
        line_band(ax, epochs, ds["ratio"].sel(layer=layer), band, lcolors[int(layer) - 1], positive=True)
    if np.isfinite(threshold):
        ax.axhline(threshold, color="0.3", ls="--", lw=1.1, zorder=1)
        onset = ds["onset_epoch"].transpose("seed", "layer").values if "seed" in ds["onset_epoch"].dims \
            else ds["onset_epoch"].values[None]
        never = "" if np.isfinite(onset).any() else ": never reached"
        ax.text(0.97, threshold, f"threshold {threshold:g}{never}", transform=ax.get_yaxis_transform(),
                ha="right", va="center", fontsize=7.5, color="0.25", zorder=7,
                bbox=dict(facecolor="white", edgecolor="none", alpha=0.85, pad=1.0))
        for li, layer in enumerate(layers):
            hit = onset[:, li][np.isfinite(onset[:, li])]
            if hit.size == 0:  # never reached (an empty unclipped line would break the layout)
                continue
            ax.plot(hit, np.full(hit.shape, threshold), "v", ms=7, color=lcolors[int(layer) - 1],
                    mec="black", mew=0.5, zorder=6, clip_on=False)
    log_y(ax)
    ax.set_ylabel("top / median unit max |a|\n(log scale)")
    gridlines(ax)
    epoch_axis(ax, epochs)


def _test_error_twin(ax, dd: xr.Dataset, band: str, epochs) -> None:
    tw = ax.twinx()
    line_band(tw, dd["epoch"].values, dd["test_error_smooth"], band, "black", lw=1.0, alpha=0.08)
    tw.set_ylabel("test error (smoothed)", color="0.2")
    tw.set_ylim(0, min(1.0, max(0.05, 1.1 * float(np.nanmax(dd["test_error_smooth"].values)))))
    epoch_axis(tw, epochs, label=False)


def _follows_panel(ax, ds: xr.Dataset, lcolors) -> None:
    """Input R² vs output η² of the top unit, per layer and analysed epoch (mean over seeds)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN targets
        eta = seed_mean(ds["output_eta2"].max("target", skipna=True))
    r2 = seed_mean(ds["input_r2"])
    sizes = 12 + 80 * np.linspace(0, 1, len(ds["analysed_epoch"])) ** 1.5
    plotted = False
    for layer in ds["layer"].values:
        x, y = eta.sel(layer=layer).values, r2.sel(layer=layer).values
        ok = np.isfinite(x) & np.isfinite(y)
        c = lcolors[int(layer) - 1]
        if ok.any():
            plotted = True
            ax.plot(x[ok], y[ok], "-", color=c, lw=0.8, alpha=0.45, zorder=2)
            ax.scatter(x[ok], y[ok], s=sizes[ok], color=c, edgecolor="black", linewidth=0.4, zorder=3, alpha=0.9)
    if not plotted:
        no_data(ax, "no analysed epochs with finite values")
    y_lo = min(-0.05, float(np.nanmin(r2.values)) - 0.05) if np.isfinite(r2.values).any() else -0.05
    ax.plot([0, 1], [0, 1], color="0.4", ls=":", lw=1, zorder=1)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(max(y_lo, -1.5), 1.02)
    ax.set_aspect("auto")
    ax.text(0.03, 0.97, "above diagonal:\nfollows input patterns", transform=ax.transAxes, ha="left", va="top",
            fontsize=7.5, color="0.3")
    ax.text(0.97, 0.03, "below diagonal:\nfollows labels", transform=ax.transAxes, ha="right", va="bottom",
            fontsize=7.5, color="0.3")
    ax.set_xlabel("output η² of the top unit\n(best of assigned / original / predicted label)")
    ax.set_ylabel("input R² of the top unit\n(cross-validated ridge)")
    gridlines(ax)


def plot_large_activation(large_activation: Mapping[str, xr.Dataset],
                          double_descent: Mapping[str, xr.Dataset] | None = None,
                          band: str = "std", max_cols: int = 3) -> Figure:
    """Per model: top/median unit ratio per layer with test error (top); what the top unit follows (bottom).

    The unit the verdicts judge (ddscope.analyses.large_activation.locate_large_activation: the shallow half's
    largest ratio over trained epochs) is starred in both panels, per seed; epoch 0 (initialisation, reported
    but never judged) is shaded and its ratios drawn as open circles.
    """
    groups, conds, colors, labels = conditions(large_activation, "large_activation")
    dd_groups = group_seeds(double_descent) if double_descent else {}
    n_layers_max, lcolors = layer_palette(groups)
    n_cols, n_blocks = panel_blocks(len(conds), max_cols)
    fig = new_figure(1.0 + 5.0 * n_cols, 1.8 + 7.6 * n_blocks)
    cells = panel_grid(fig, len(conds), 2, max_cols, height_ratios=[1, 1.05])
    threshold = finite_mean([groups[c].attrs.get("ratio_threshold", math.nan) for c in conds])
    star = dict(marker="*", ms=13, ls="none", mec="black", mew=0.6, zorder=8)
    for cond, (ax_ratio, ax_sc) in zip(conds, cells):
        ds = groups[cond]
        _ratio_panel(ax_ratio, ds, band, lcolors, threshold)
        title(ax_ratio, f"{labels[cond]}: largest vs typical unit", colors[cond], loc="left")
        if cond in dd_groups:
            _test_error_twin(ax_ratio, dd_groups[cond], band, ds["epoch"].values)
        _follows_panel(ax_sc, ds, lcolors)
        title(ax_sc, f"{labels[cond]}: what the top unit follows", colors[cond], loc="left")

        epochs = ds["epoch"].values
        if epochs.size > 1 and epochs[0] == 0:  # initialisation: shaded, its ratios as open circles
            ax_ratio.axvspan(0, symlog_edges(epochs)[1], color="0.5", alpha=0.12, lw=0, zorder=0)
            init = seed_mean(ds["ratio"].isel(epoch=0)).values
            for li, value in enumerate(init):
                if np.isfinite(value) and value > 0:
                    ax_ratio.plot([0], [value], "o", ms=6, mfc="white", mec=lcolors[li], mew=1.3, zorder=7)
        located = [locate_large_activation(ds.isel(seed=i)) for i in range(ds.sizes["seed"])]
        judged = [c for c in located if np.isfinite(c["large_layer"])]
        for c in judged:
            color = lcolors[int(c["large_layer"]) - 1]
            ax_ratio.plot([c["large_epoch"]], [c["large_ratio"]], color=color, **star)
            if np.isfinite(c["large_input_r2"]) and np.isfinite(c["large_output_eta2"]):
                ax_sc.plot([c["large_output_eta2"]], [c["large_input_r2"]], color=color, **star)
        shown = [c["large_ratio"] for c in judged if c["large_ratio"] > 0]  # a dead layer's 0: not on a log axis
        if shown:  # keep every star inside its panel
            lo, hi = ax_ratio.get_ylim()
            ax_ratio.set_ylim(min(lo, min(shown) / 1.3), max(hi, max(shown) * 1.3))
        r2 = [c["large_input_r2"] for c in judged if np.isfinite(c["large_input_r2"])]
        if r2:
            lo, hi = ax_sc.get_ylim()
            ax_sc.set_ylim(max(min([lo, *(v - 0.1 for v in r2)]), -1.5), hi)
        layers = ", ".join(str(k) for k in sorted({int(c["large_layer"]) for c in judged}))
        trained = epochs[(epochs > 0) & ds["ratio"].notnull().any(("seed", "layer")).values]
        verdict = (f"verdict: layer {layers}, epochs {trained[0]:g}–{trained[-1]:g}" if judged
                   else "verdict: no trained epoch with a ratio")
        ax_ratio.text(0.02, 0.97, verdict, transform=ax_ratio.transAxes, ha="left", va="top", fontsize=8, zorder=9,
                      bbox=dict(facecolor="white", edgecolor="0.6", alpha=0.9, pad=2.0))
    handles = [Line2D([], [], color=lcolors[i], lw=2.5, label=f"layer {i + 1}") for i in range(n_layers_max)]
    handles += [Line2D([], [], color="0.3", ls="--", label=f"ratio threshold ({threshold:g})"),
                Line2D([], [], marker="v", ls="none", color="0.6", mec="black", mew=0.5,
                       label="onset epoch (per seed)"),
                Line2D([], [], color="black", lw=1, label="test error (right axis)"),
                Line2D([], [], marker="o", ls="none", color="0.6", ms=3, label="early analysed epoch"),
                Line2D([], [], marker="o", ls="none", color="0.6", ms=9, label="late analysed epoch"),
                Line2D([], [], color="0.6", **{**star, "ms": 11}, label="judged unit (per seed)"),
                Line2D([], [], marker="o", ls="none", ms=6, mfc="white", mec="0.3", mew=1.3,
                       label="initialisation (shaded), not judged")]
    figure_legend(fig, handles, ncol=max(1, min(5, int(fig.get_figwidth() / 2.6))))  # fits the width
    suptitle(fig, "Large activation: a single hidden unit much larger than the others, and what it encodes\n"
                  + subtitle(conds, band, "ratio = largest unit's max |activation| / median unit's, over all probes"))
    return fig


# --- routing --------------------------------------------------------------------------------------------


def plot_routing(routing: Mapping[str, xr.Dataset], band: str = "std", max_cols: int = 3) -> Figure:
    """Per model: cosine of test samples to the clean / noisy class mean of their predicted class."""
    groups, conds, colors, labels = conditions(routing, "routing")
    n_layers_max, lcolors = layer_palette(groups)
    n_cols, n_blocks = panel_blocks(len(conds), max_cols)
    fig = new_figure(1.0 + 4.2 * n_cols, 1.6 + 6.4 * n_blocks)
    cells = panel_grid(fig, len(conds), 2, max_cols, height_ratios=[1.2, 1])
    for cond, (ax_top, ax_margin) in zip(conds, cells):
        ds = groups[cond]
        epochs = ds["epoch"].values
        layers = ds["layer"].values
        last = int(layers.max())
        for corr in ("correct", "incorrect"):
            for ref in ("clean", "noisy"):
                da = ds["routing"].sel(layer=last, correctness=corr, reference=ref)
                line_band(ax_top, epochs, da, band, REFERENCE_COLORS[ref], ls=CORRECTNESS_STYLE[corr])
        epoch_axis(ax_top, epochs, label=False)
        ax_top.set_ylabel("cos(test activation,\nclass mean of predicted class)")
        gridlines(ax_top)
        title(ax_top, f"{labels[cond]}: last hidden layer ({last})", colors[cond], loc="left")
        for layer in layers:
            for corr in ("correct", "incorrect"):
                da = ds["routing_margin"].sel(layer=layer, correctness=corr)
                line_band(ax_margin, epochs, da, band, lcolors[int(layer) - 1], ls=CORRECTNESS_STYLE[corr],
                          lw=1.3, alpha=0.12)
        ax_margin.axhline(0, color="0.3", lw=0.8)
        epoch_axis(ax_margin, epochs)
        ax_margin.set_ylabel("clean − noisy cosine\n(> 0: closer to clean signal)")
        gridlines(ax_margin)
        title(ax_margin, f"{labels[cond]}: routing margin, every layer", colors[cond], loc="left")
    handles = [Line2D([], [], color=REFERENCE_COLORS["clean"], lw=2, label="to clean class mean"),
               Line2D([], [], color=REFERENCE_COLORS["noisy"], lw=2, label="to noisy class mean"),
               Line2D([], [], color="0.3", ls="-", lw=1.6, label="correct test predictions"),
               Line2D([], [], color="0.3", ls="--", lw=1.6, label="incorrect test predictions")]
    handles += [Line2D([], [], color=lcolors[i], lw=2.5, label=f"layer {i + 1} (margin)") for i in range(n_layers_max)]
    figure_legend(fig, handles, ncol=min(4, len(handles)))
    suptitle(fig, "Routing: do test samples line up with the clean or the noisy training signal of their predicted "
                  "class?\n" + subtitle(conds, band, "class means of clean / noisy training probes by assigned label"))
    return fig
