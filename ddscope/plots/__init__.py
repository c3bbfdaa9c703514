"""Figures of the study: one function per figure, over all runs of a study.

Each plot_<figure> takes its named inputs (in the order of params.inputs of its rule in rules/figures.smk)
as mappings run id -> xr.Dataset (run ids like `mlp7-sym30-ce-s0`), groups the runs by condition (model,
noise, loss) and draws, for each condition, the mean over seeds with a shaded band (`band`: std | sem |
minmax; one seed gives a degenerate band). Epochs are drawn on a symmetric-log axis, linear below 1, so
that epoch 0 shows.

Modules: style (colours, the band over seeds, axes, layout, save_figure: shared by every figure), runs
(conditions of the runs), training (curves, double descent), layers (separation, large activation, routing),
representations (CKA, probes), collapse (neural collapse), sweep (across a depth × width sweep; its figures
also take `sweep`), threshold (the optimization-threshold study).
"""

from .collapse import plot_collapse
from .layers import plot_large_activation, plot_routing, plot_separation
from .representations import plot_cka, plot_probes
from .runs import condition_of, group_seeds
from .style import BANDS, band_stats, save_figure, seed_band
from . import sweep
from .threshold import PLOTS as THRESHOLD_FIGURES
from .training import plot_curves, plot_double_descent

# figure name (rule plot_<figure>, figures/<figure>.png) -> its function
FIGURE_FUNCTIONS = {
    "curves": plot_curves,
    "double_descent": plot_double_descent,
    "separation": plot_separation,
    "large_activation": plot_large_activation,
    "routing": plot_routing,
    "cka": plot_cka,
    "probes": plot_probes,
    "collapse": plot_collapse,
    **{"model_wise_heatmaps": sweep.plot_model_wise_heatmaps, "model_wise": sweep.plot_model_wise},  # sweeps only
}

__all__ = ["BANDS", "FIGURE_FUNCTIONS", "THRESHOLD_FIGURES", "band_stats", "condition_of", "group_seeds",
           "save_figure", "seed_band", "plot_curves", "plot_double_descent", "plot_separation",
           "plot_large_activation", "plot_routing", "plot_cka", "plot_probes", "plot_collapse"]
