"""Runs and conditions of a figure: seeds stacked per condition, condition labels, colours and styles.

Run names follow the study's grammar `<model>-<noise>-<loss>-s<seed>` (ddscope.config: parse_run,
condition_of, parse_condition); a condition is a run name without its seed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from ..config import condition_of, parse_condition, parse_run
from .style import BAND_LABEL, VARIANT_STYLES, layer_colors, model_colors

PARTS = ("model", "noise", "loss")


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


def model_of(cond: str) -> str:
    return parse_condition(cond)["model"]


def condition_colors(conditions) -> dict[str, str]:
    """Condition -> the colour of its model."""
    colors = model_colors(model_of(c) for c in conditions)
    return {c: colors[model_of(c)] for c in conditions}


def condition_labels(conditions) -> dict[str, str]:
    """Short labels: only the parts (model, noise, loss) that vary between the conditions."""
    parsed = {c: parse_condition(c) for c in conditions}
    varies = [k == "model" or len({p[k] for p in parsed.values()}) > 1 for k in PARTS]
    return {c: " · ".join(p[k] for k, v in zip(PARTS, varies) if v) for c, p in parsed.items()}


def variant_styles(conditions) -> dict[str, str]:
    """Line style per (noise, loss) variant, so that conditions of one model differ by style, not colour."""
    variant = {c: (parse_condition(c)["noise"], parse_condition(c)["loss"]) for c in conditions}
    order = list(dict.fromkeys(variant.values()))
    return {c: VARIANT_STYLES[order.index(v) % len(VARIANT_STYLES)] for c, v in variant.items()}


def subtitle(conditions, band: str, extra: str = "") -> str:
    """The second title line: what all conditions share (noise, loss), the band, `extra`."""
    parsed = [parse_condition(c) for c in conditions]
    common = [f"{k}: {parsed[0][k]}" for k in ("noise", "loss") if len({p[k] for p in parsed}) == 1]
    text = ", ".join(common + [BAND_LABEL[band]])
    return f"{text}{'; ' + extra if extra else ''}"


def conditions(runs: Mapping[str, xr.Dataset], what: str):
    """(seed-stacked groups, conditions, colour per condition, label per condition) of one figure's runs."""
    if not runs:
        raise ValueError(f"{what}: no runs to plot")
    groups = group_seeds(runs)
    conds = list(groups)
    return groups, conds, condition_colors(conds), condition_labels(conds)


def layer_palette(groups: Mapping[str, xr.Dataset]) -> tuple[int, list]:
    """(deepest model's number of hidden layers, a colour per layer)."""
    n_layers_max = max(int(ds.sizes["layer"]) for ds in groups.values())
    return n_layers_max, layer_colors(n_layers_max)
