"""The analyses of a run, in one place: the extract rules, the summary and the figures are made from this list.

Imported by the rules when the workflow loads: keep it free of numpy, xarray and torch.
Each entry says which artifact of the run the analysis reads (`curves` or `activations`), whether it also
needs the dataset (the inputs of the probe samples), and whether it runs on torch (its job then sets
torch's thread count; importing torch costs seconds, so the others never do).
"""

from __future__ import annotations

ANALYSES = {
    "double_descent": {"reads": "curves", "dataset": False, "torch": False},
    "separation": {"reads": "activations", "dataset": False, "torch": False},
    "large_activation": {"reads": "activations", "dataset": True, "torch": False},
    "routing": {"reads": "activations", "dataset": False, "torch": False},
    "cka": {"reads": "activations", "dataset": False, "torch": True},
    "probes": {"reads": "activations", "dataset": False, "torch": True},
    "collapse": {"reads": "activations", "dataset": False, "torch": True},
}
