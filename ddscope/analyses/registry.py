"""The analyses of a run, in one place: the extract rules, the summary columns and the figures are made from it.

Imported by the rules when the workflow loads: keep it free of numpy, xarray and torch.

ANALYSES: each entry says which artifact of the run the analysis reads (`curves` or `activations`), whether
it also needs the dataset (the inputs of the probe samples), and whether it runs on torch (its job then sets
torch's thread count; importing torch costs seconds, so the others never do). The analysis itself lives in
ddscope/analyses/<name>.py as `extract_<name>(...)` (the dataset), `CF_ATTRS` (long_name and units of each of its
variables and coordinates, ddscope.artifacts.describe; docs/outputs.md lists them) and `summary_columns(ds)` (its
columns of tables/runs.csv).

FIGURES: figures/<figure>.png, one plot_<figure> job each, drawn by ddscope.plots.FIGURE_FUNCTIONS[figure]
from the named inputs listed (`curves`: every run's curves.nc; an analysis: every run's metric file). A figure
with `"sweep": True` draws across a sweep (config `sweep`, depth × width): it exists only in a study with one,
and its function also gets `sweep` (model -> {depth, width}).
"""

from __future__ import annotations

from importlib import import_module

TRAINING = "Epoch-wise double descent"
REPRESENTATIONS = "Representation dynamics and neural collapse"
MODEL_WISE = "Model-wise double descent (sweep)"

ANALYSES = {
    "double_descent": {"reads": "curves", "dataset": False, "torch": False},
    "separation": {"reads": "activations", "dataset": False, "torch": False},
    "large_activation": {"reads": "activations", "dataset": True, "torch": False},
    "routing": {"reads": "activations", "dataset": False, "torch": False},
    "cka": {"reads": "activations", "dataset": False, "torch": True},
    "probes": {"reads": "activations", "dataset": False, "torch": True},
    "collapse": {"reads": "activations", "dataset": False, "torch": True},
}

FIGURES = {
    "curves": {"inputs": ["curves", "double_descent"], "category": TRAINING},
    "double_descent": {"inputs": ["double_descent"], "category": TRAINING},
    "separation": {"inputs": ["separation"], "category": TRAINING},
    "large_activation": {"inputs": ["large_activation", "double_descent"], "category": TRAINING},
    "routing": {"inputs": ["routing"], "category": TRAINING},
    "cka": {"inputs": ["cka"], "category": REPRESENTATIONS},
    "probes": {"inputs": ["probes"], "category": REPRESENTATIONS},
    "collapse": {"inputs": ["collapse"], "category": REPRESENTATIONS},
    "model_wise_heatmaps": {"inputs": ["double_descent", "separation"], "category": MODEL_WISE, "sweep": True},
    "model_wise": {"inputs": ["double_descent", "separation"], "category": MODEL_WISE, "sweep": True},
}


def analysis_module(name: str):
    """ddscope/analyses/<name>.py, imported when first asked for (it may import torch: never at load time)."""
    if name not in ANALYSES:
        raise ValueError(f"unknown analysis {name!r} (registered: {', '.join(ANALYSES)})")
    return import_module(f"ddscope.analyses.{name}")
