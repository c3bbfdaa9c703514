"""tables/runs.csv (one row per run) and tables/summary.csv (mean ± std over seeds).

Each analysis contributes columns through summary_columns(ds, metrics) in its module
(ddscope/analyses/<name>.py; `metrics` holds the run's other analyses, e.g. its phases); a per-layer quantity
becomes one column per layer (`<name>_l<layer>`), and `..._last` stands for the last hidden layer, so models of
different depth share columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .analyses.registry import analysis_module
from .config import parse_run

ID_COLUMNS = ["run", "model", "noise", "loss", "seed"]
GROUP_COLUMNS = ["model", "noise", "loss"]


def scalar_columns(ds: xr.Dataset) -> dict:
    return {k: float(v) for k, v in ds.data_vars.items() if v.ndim == 0}


def per_layer_columns(values: xr.DataArray, name: str) -> dict:
    out = {f"{name}_l{int(l)}": float(values.sel(layer=l)) for l in values.layer.values}
    out[f"{name}_last"] = float(values.isel(layer=-1))
    return out


def run_row(run: str, metrics: dict[str, xr.Dataset], curves: xr.Dataset | None = None) -> dict:
    row = {"run": run, **parse_run(run)}
    if curves is not None:
        final = curves.isel(epoch=-1)
        for split in curves.split.values:
            row[f"final_accuracy_{split}"] = float(final.accuracy.sel(split=split))
    for name, ds in metrics.items():
        row.update(analysis_module(name).summary_columns(ds, metrics))
    return row


def runs_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).sort_values(ID_COLUMNS[1:]).reset_index(drop=True)


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of every numeric column, per (model, noise, loss); n_seeds counts the runs."""
    numeric = [c for c in runs.columns if c not in ID_COLUMNS and pd.api.types.is_numeric_dtype(runs[c])]
    grouped = runs.groupby(GROUP_COLUMNS, sort=True)[numeric]
    mean, std = grouped.mean(), grouped.std(ddof=1)
    out = pd.concat({"mean": mean, "std": std}, axis=1)
    out.columns = [f"{col}_{stat}" for stat, col in out.columns]
    out = out[[f"{c}_{s}" for c in numeric for s in ("mean", "std")]]
    out.insert(0, "n_seeds", runs.groupby(GROUP_COLUMNS).size())
    return out.reset_index()


def finite(values) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    return a[np.isfinite(a)]
