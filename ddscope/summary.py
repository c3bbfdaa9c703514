"""tables/runs.csv (one row per run) and tables/summary.csv (mean ± std over seeds).

Each analysis contributes columns through one function below; a per-layer quantity becomes one
column per layer (`<name>_l<layer>`), and `..._last` stands for the last hidden layer, so models of
different depth share columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .config import parse_run

ID_COLUMNS = ["run", "model", "noise", "loss", "seed"]
GROUP_COLUMNS = ["model", "noise", "loss"]


def _scalars(ds: xr.Dataset) -> dict:
    return {k: float(v) for k, v in ds.data_vars.items() if v.ndim == 0}


def _per_layer(values: xr.DataArray, name: str) -> dict:
    out = {f"{name}_l{int(l)}": float(values.sel(layer=l)) for l in values.layer.values}
    out[f"{name}_last"] = float(values.isel(layer=-1))
    return out


def _double_descent(ds: xr.Dataset) -> dict:
    return _scalars(ds)


def _separation(ds: xr.Dataset) -> dict:
    final = ds.separation_mean.isel(epoch=-1)
    return {**_per_layer(final, "separation_final"),
            "separation_first_minus_last": float(final.isel(layer=0) - final.isel(layer=-1))}


def _large_activation(ds: xr.Dataset) -> dict:
    peak = ds.ratio.max("epoch")
    layer = int(peak.idxmax("layer"))
    at_last = ds.sel(analysed_epoch=ds.analysed_epoch[-1], layer=layer)
    return {**_per_layer(ds.onset_epoch, "onset_epoch"), **_per_layer(peak, "ratio_max"),
            "large_layer": layer, "large_layer_fraction": layer / ds.sizes["layer"],
            "large_ratio": float(peak.sel(layer=layer)),
            "large_input_r2": float(at_last.input_r2),
            "large_output_eta2": float(at_last.output_eta2.max("target"))}


def _routing(ds: xr.Dataset) -> dict:
    final = ds.routing_margin.isel(epoch=-1, layer=-1)
    return {"routing_margin_correct": float(final.sel(correctness="correct")),
            "routing_margin_incorrect": float(final.sel(correctness="incorrect"))}


def _collapse(ds: xr.Dataset) -> dict:
    return {f"{k}_final": float(ds[k].isel(epoch=-1)) for k in ds.data_vars if ds[k].dims == ("epoch",)}


def _cka(ds: xr.Dataset) -> dict:
    """Late change of each layer: 1 − CKA(the recorded epoch nearest half-way through training, the final epoch)."""
    epochs = ds.epoch.values
    mid = epochs[np.argmin(np.abs(epochs - epochs[-1] / 2))]
    change = 1 - ds.cka.sel(epoch=mid, epoch_other=epochs[-1])
    return {**_per_layer(change, "cka_late_change"), "cka_late_epoch": float(mid)}


def _probes(ds: xr.Dataset) -> dict:
    final = ds.probe_accuracy.isel(epoch=-1)
    return {**_per_layer(final.sel(target="test"), "probe_test_final")}


SUMMARIES = {"double_descent": _double_descent, "separation": _separation, "large_activation": _large_activation,
             "routing": _routing, "collapse": _collapse, "cka": _cka, "probes": _probes}


def run_row(run: str, metrics: dict[str, xr.Dataset], curves: xr.Dataset | None = None) -> dict:
    row = {"run": run, **parse_run(run)}
    if curves is not None:
        final = curves.isel(epoch=-1)
        for split in curves.split.values:
            row[f"final_accuracy_{split}"] = float(final.accuracy.sel(split=split))
    for name, ds in metrics.items():
        row.update(SUMMARIES[name](ds))
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
