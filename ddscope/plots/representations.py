"""Representation dynamics per condition: linear CKA of each layer across epochs, linear probes per layer and
the agreement of the probes across epochs (epoch × epoch heatmaps, mean over seeds)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .runs import conditions, layer_palette, subtitle
from .style import (BAND_LABEL, epoch_axis, epoch_yaxis, figure_legend, gridlines, line_band, new_figure, no_data,
                    panel_blocks, panel_grid, seed_mean, suptitle, symlog_edges, title)

PROBE_TARGET_STYLE = {  # line style, label
    "test": ("-", "test probes, true label"),
    "noisy_original": ("--", "noisy train probes, original (true) label"),
    "noisy_assigned": (":", "noisy train probes, assigned (wrong) label"),
}


def epoch_heatmap(ax, epochs, matrix, cmap, vmin=0.0, vmax=1.0, xlabel=True, ylabel=True):
    """An epoch × epoch matrix (rows = y = `epoch`, columns = x = `epoch_other`) on symlog axes; square."""
    edges = symlog_edges(epochs)
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
    groups, conds, colors, labels = conditions(cka, "cka")
    n_layers_max, lcolors = layer_palette(groups)
    fig = new_figure(1.6 + 2.75 * (n_layers_max + 1), 1.9 + 2.75 * len(conds))
    axes = fig.subplots(len(conds), n_layers_max + 1, squeeze=False)
    mesh, maps = None, []
    for row, cond in enumerate(conds):
        ds = groups[cond]
        epochs = ds["epoch"].values
        layers = [int(layer) for layer in ds["layer"].values]
        last = epochs[-1]
        bottom = row == len(conds) - 1
        ax_line = axes[row, 0]
        for layer in layers:
            da = ds["cka"].sel(layer=layer, epoch_other=last)
            line_band(ax_line, epochs, da, band, lcolors[layer - 1], f"layer {layer}", marker="o", ms=2.5)
        epoch_axis(ax_line, epochs, label=bottom)
        ax_line.set_ylim(-0.03, 1.03)
        ax_line.set_box_aspect(1)
        ax_line.set_ylabel(f"CKA with the final epoch ({last:g})")
        gridlines(ax_line)
        ax_line.tick_params(labelsize=7.5)
        title(ax_line, f"{labels[cond]}: CKA to final epoch", colors[cond], loc="left")
        mean = seed_mean(ds["cka"]).transpose("layer", "epoch", "epoch_other")
        for col in range(1, n_layers_max + 1):
            ax = axes[row, col]
            if col > len(layers):
                ax.remove()
                continue
            layer = layers[col - 1]
            mesh = epoch_heatmap(ax, epochs, mean.sel(layer=layer).values, "viridis", xlabel=bottom, ylabel=col == 1)
            maps.append(ax)
            title(ax, f"{labels[cond]} · layer {layer}", colors[cond], loc="left")
    if mesh is not None:
        cbar = fig.colorbar(mesh, ax=maps, shrink=0.8, pad=0.01, aspect=30)
        cbar.set_label("linear CKA between two epochs, mean over seeds\n(1 = same representation up to rotation "
                       "and scale)")
    handles = [Line2D([], [], color=lcolors[i], lw=2.5, marker="o", ms=3, label=f"layer {i + 1}")
               for i in range(n_layers_max)]
    figure_legend(fig, handles, ncol=min(8, len(handles)),
                  title="left column: hidden layer (1 = input side), " + BAND_LABEL[band], title_fontsize=8.5)
    suptitle(fig, "Representation dynamics: linear CKA of each hidden layer with itself across epochs\n"
                  + subtitle(conds, band, "all probe samples; heatmaps: mean over seeds"))
    return fig


def plot_probes(probes: Mapping[str, xr.Dataset], band: str = "std", max_cols: int = 4) -> Figure:
    """Per condition: linear-probe accuracy per layer (top), agreement of the probes across epochs (below)."""
    groups, conds, colors, labels = conditions(probes, "probes")
    n_layers_max, lcolors = layer_palette(groups)
    n_cols, n_blocks = panel_blocks(len(conds), max_cols)
    fig = new_figure(1.4 + 3.9 * n_cols, 1.6 + 9.4 * n_blocks)
    cells = panel_grid(fig, len(conds), 3, max_cols, height_ratios=[1.0, 1.0, 1.0])
    mesh, maps = None, []
    for cond, (ax_acc, *ax_maps) in zip(conds, cells):
        ds = groups[cond]
        epochs = ds["epoch"].values
        layers = [int(layer) for layer in ds["layer"].values]
        targets = [str(t) for t in ds["target"].values]
        for layer in layers:
            for target, (ls, _) in PROBE_TARGET_STYLE.items():
                if target not in targets:
                    continue
                da = ds["probe_accuracy"].sel(layer=layer, target=target)
                line_band(ax_acc, epochs, da, band, lcolors[layer - 1], ls=ls, lw=1.4, alpha=0.08, marker="o", ms=2.5)
        epoch_axis(ax_acc, epochs)
        ax_acc.set_ylim(-0.02, 1.02)
        ax_acc.set_ylabel("probe accuracy\n(probe trained on clean probes)")
        gridlines(ax_acc)
        title(ax_acc, f"{labels[cond]}: linear probe per layer", colors[cond], loc="left")
        mean = seed_mean(ds["agreement"]).transpose("layer", "epoch", "epoch_other")
        shown = list(dict.fromkeys([layers[0], layers[-1]]))
        for ax, layer in zip(ax_maps, shown + [None] * (2 - len(shown))):
            if layer is None:
                ax.set_axis_off()
                no_data(ax, "only one hidden layer")
                continue
            m = mean.sel(layer=layer).values
            if not np.isfinite(m).any():
                no_data(ax, "no test probes: agreement undefined")
                ax.set_box_aspect(1)
                continue
            mesh = epoch_heatmap(ax, epochs, m, "cividis")
            maps.append(ax)
            where = "first" if layer == layers[0] else "last"
            title(ax, f"{labels[cond]}: agreement, layer {layer} ({where})", colors[cond], loc="left")
    if mesh is not None:
        cbar = fig.colorbar(mesh, ax=maps, shrink=0.6, pad=0.01, aspect=30)
        cbar.set_label("agreement of two epochs' probes\n(fraction of test probes, same predicted class)")
    handles = [Line2D([], [], color=lcolors[i], lw=2.5, label=f"layer {i + 1}") for i in range(n_layers_max)]
    handles += [Line2D([], [], color="0.3", ls=ls, lw=1.6, label=label) for ls, label in PROBE_TARGET_STYLE.values()]
    figure_legend(fig, handles, ncol=len(handles) if len(handles) <= 8 else 4)
    suptitle(fig, "Linear probes per layer: what each layer's representation makes linearly readable, epoch by "
                  "epoch\n" + subtitle(conds, band, "probes trained on clean probes with their true labels; "
                                                    "heatmaps: mean over seeds"))
    return fig
