"""Signal separation: cosine of clean vs noisy class means, per layer and epoch.

cos_clean_noisy[t, l, c, k] = cos(mu_clean[t, l, c], mu_noisy_k[t, l, c]) where mu_clean groups the
clean probes by their label (assigned == original for clean samples) and mu_noisy_k groups the
noisy probes by their assigned (k = assigned) or original (k = original) label. A class without
clean or noisy probes gives NaN (never a spurious 0); a zero mean vector (dead layer) gives 0, as
in ddscope.analyses.stats.cosine. separation_mean[t, l] = nanmean over classes of the assigned-label
cosines.

Columns of tables/runs.csv: `separation_final_l<k>` / `_last` (separation_mean at the last recorded epoch) and
`separation_first_minus_last` (first minus last hidden layer there); the trend over training per layer,
`separation_trend_l<k>` / `_last` = separation_mean at the last recorded epoch minus at
`separation_trend_start`, the recorded epoch nearest the end of phase 1 (stats.trend_start_epoch), from which
the noisy labels are memorised: negative = the layer separates noisy from clean samples more as learning
goes on. `separation_trend_original_l<k>` / `_last` and `separation_final_original_l<k>` / `_last`: the same
with the noisy probes grouped by their original label (nanmean over classes of the original-label cosines).

Which grouping the claim is judged on (findings.md row 4): the original label. Kubo et al. 2026 compare the
mean activations of clean and noisy training data per class c (their §2, "signal separation"); the text
available to ddscope (the abstract and a summary of §2) does not show whether a noisy sample's class is its
assigned or its original label. Under the assigned label the outcome is forced: memorising label c makes the
last layer map the sample towards class c, so that cosine must *rise* whatever the data. Under the original
label a separation is a finding: noisy samples of true class c moved away from the clean samples of class c.
Both are stored (label_kind) and both are reported.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ddscope.analyses.activations import layer_numbers, load_by_sample, probe_info
from ddscope.analyses.stats import class_means_by_epoch, masked_cosine, nanmean, trend_start_epoch
from ddscope.artifacts import coordinates, describe
from ddscope.summary import per_layer_columns

LABEL_KINDS = ("assigned", "original")
CF_ATTRS = {
    **coordinates("epoch", "layer", "class"),
    "label_kind": ("label the noisy probes are grouped by", "1"),
    "cos_clean_noisy": ("cosine of the clean and noisy class means", "1"),
    "n_clean": ("clean probes per class", "1"),
    "n_noisy": ("noisy probes per class", "1"),
    "separation_mean": ("cosine of the clean and noisy class means, mean over classes", "1"),
}


def class_mean_cosine(cos_clean_noisy: xr.DataArray, label_kind: str = "assigned") -> xr.DataArray:
    """nanmean over classes of cos_clean_noisy for one label kind, e.g. [epoch, layer] (separation_mean: assigned)."""
    return cos_clean_noisy.sel(label_kind=label_kind, drop=True).reduce(nanmean, dim="class").astype(np.float32)


def extract_separation(acts: xr.Dataset, params: dict | None = None) -> xr.Dataset:
    """cos_clean_noisy [epoch, layer, class, label_kind] and separation_mean [epoch, layer]."""
    layers = layer_numbers(acts)
    info = probe_info(acts)
    k = info["n_classes"]
    epochs = np.asarray(acts["epoch"].values)
    cos = np.full((len(epochs), len(layers), k, len(LABEL_KINDS)), np.nan, dtype=np.float32)
    n_clean = np.bincount(info["y_assigned"][info["clean"]], minlength=k)[:k]
    n_noisy = np.stack([np.bincount(info[f"y_{kind}"][info["noisy"]], minlength=k)[:k] for kind in LABEL_KINDS], -1)
    for li, layer in enumerate(layers):
        a = load_by_sample(acts, f"act_{layer}")  # [sample, epoch, unit]
        mu_clean, _ = class_means_by_epoch(a, info["y_assigned"], k, mask=info["clean"])  # [epoch, class, unit]
        for ki, kind in enumerate(LABEL_KINDS):
            mu_noisy, _ = class_means_by_epoch(a, info[f"y_{kind}"], k, mask=info["noisy"])
            cos[:, li, :, ki] = masked_cosine(mu_clean, mu_noisy, (n_clean > 0) & (n_noisy[:, ki] > 0))
        del a
    ds = xr.Dataset(
        {
            "cos_clean_noisy": (("epoch", "layer", "class", "label_kind"), cos),
            "n_clean": (("class",), np.asarray(n_clean, dtype=np.int64)),
            "n_noisy": (("class", "label_kind"), np.asarray(n_noisy, dtype=np.int64)),
        },
        coords={"epoch": epochs, "layer": np.asarray(layers), "class": np.arange(k),
                "label_kind": list(LABEL_KINDS)},
    )
    ds["separation_mean"] = class_mean_cosine(ds["cos_clean_noisy"])
    ds["cos_clean_noisy"].attrs["description"] = (
        "cos(mu_clean[c], mu_noisy[c]); noisy probes grouped by assigned or original label; "
        "NaN if a class has no probes")
    ds["separation_mean"].attrs["description"] = "nanmean over classes of cos_clean_noisy (label_kind = assigned)"
    ds["n_clean"].attrs["description"] = "clean probes per class"
    ds["n_noisy"].attrs["description"] = "noisy probes per class, grouped by assigned / original label"
    ds.attrs.update({"analysis": "separation", "n_classes": k, "n_layers": len(layers)})
    return describe(ds, CF_ATTRS)


def summary_columns(ds: xr.Dataset, metrics: dict) -> dict:
    """This analysis's columns of tables/runs.csv (ddscope.summary; see the module docstring)."""
    final = ds.separation_mean.isel(epoch=-1)
    start = trend_start_epoch(ds.epoch.values, metrics.get("double_descent"))
    original = class_mean_cosine(ds.cos_clean_noisy, "original")
    return {**per_layer_columns(final, "separation_final"),
            "separation_first_minus_last": float(final.isel(layer=0) - final.isel(layer=-1)),
            **per_layer_columns(final - ds.separation_mean.sel(epoch=start), "separation_trend"),
            **per_layer_columns(original.isel(epoch=-1) - original.sel(epoch=start), "separation_trend_original"),
            **per_layer_columns(original.isel(epoch=-1), "separation_final_original"),
            "separation_trend_start": start}
