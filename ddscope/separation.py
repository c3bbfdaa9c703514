"""Signal separation: cosine of clean vs noisy class means, per layer and epoch.

cos_clean_noisy[t, l, c, k] = cos(mu_clean[t, l, c], mu_noisy_k[t, l, c]) where mu_clean groups the
clean probes by their label (assigned == original for clean samples) and mu_noisy_k groups the
noisy probes by their assigned (k = assigned) or original (k = original) label. A class without
clean or noisy probes gives NaN (never a spurious 0); a zero mean vector (dead layer) gives 0, as
in ddscope.features.cosine. separation_mean[t, l] = nanmean over classes of the assigned-label
cosines.

This module also holds the small helpers that read activations.zarr-shaped datasets one variable
at a time (used by large_activation and routing too).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import xarray as xr

from ddscope.features import class_means, cosine

LABEL_KINDS = ("assigned", "original")


# --- reading activations.zarr-shaped datasets ------------------------------------------------------


def layer_numbers(acts: xr.Dataset) -> list[int]:
    """Hidden layers 1..L (attrs n_layers; else the act_<l> variables present)."""
    found = sorted(int(m.group(1)) for name in acts.data_vars if (m := re.fullmatch(r"act_(\d+)", str(name))))
    n = int(acts.attrs.get("n_layers", len(found)))
    missing = [l for l in range(1, n + 1) if l not in found]
    if missing:
        raise ValueError(f"activations: n_layers = {n} but act_{missing[0]} is missing")
    return list(range(1, n + 1))


def n_classes(acts: xr.Dataset) -> int:
    if "n_classes" in acts.attrs:
        return int(acts.attrs["n_classes"])
    return int(acts.sizes["class"])


def load(acts: xr.Dataset, name: str, epoch_index=None) -> np.ndarray:
    """One variable as a float32 array (all epochs, or the positional `epoch_index`), dims as stored.

    Indexing before reading keeps a lazily opened zarr from caching the array inside `acts`, so
    memory holds one layer at a time however many layers are read in turn.
    """
    var = acts[name]
    if "epoch" in var.dims:
        var = var.isel(epoch=slice(None) if epoch_index is None else epoch_index)
    return np.asarray(var.to_numpy(), dtype=np.float32)


def load_by_sample(acts: xr.Dataset, name: str) -> np.ndarray:
    """A layer's activations (epoch, sample, unit) as a C-contiguous float32 array [sample, epoch, unit].

    Samples first, so that class means over all epochs at once are one matrix product
    (class_means_by_epoch) and reductions over samples run along the outer axis; the float16 ->
    float32 cast and the transposition are one copy.
    """
    var = acts[name]
    stored = var.isel(epoch=slice(None)).to_numpy()  # isel: no caching inside a lazily opened `acts`
    out = np.empty((stored.shape[1], stored.shape[0]) + stored.shape[2:], dtype=np.float32)
    np.copyto(out, np.swapaxes(stored, 0, 1))
    return out


def class_means_by_epoch(a_by_sample: np.ndarray, labels, n_classes: int, mask=None):
    """features.class_means of a [sample, epoch, unit] array, returned as (means [epoch, class, unit], counts)."""
    n_s, n_e = a_by_sample.shape[:2]
    means, counts = class_means(a_by_sample.reshape(n_s, -1), labels, n_classes, mask=mask)
    return means.reshape((n_classes, n_e) + a_by_sample.shape[2:]).swapaxes(0, 1), counts


def probe_info(acts: xr.Dataset) -> dict:
    """Per-sample metadata as numpy arrays: subset masks and integer labels."""
    subset = np.asarray(acts["subset"].values)
    if subset.dtype.kind == "S":  # bytes
        subset = np.char.decode(subset, "utf-8")
    subset = np.asarray(subset, dtype=object)  # '<U', object and numpy StringDType (zarr v3) alike
    return {
        "clean": subset == "clean",
        "noisy": subset == "noisy",
        "test": subset == "test",
        "y_assigned": np.asarray(acts["y_assigned"].values).astype(np.int64),
        "y_original": np.asarray(acts["y_original"].values).astype(np.int64),
        "n_classes": n_classes(acts),
    }


def masked_cosine(u: np.ndarray, v: np.ndarray, defined: np.ndarray) -> np.ndarray:
    """features.cosine over the last axis, NaN where not `defined` (broadcast over leading axes)."""
    with np.errstate(invalid="ignore"):
        out = cosine(u, v)
    return np.where(defined, out, np.nan).astype(np.float32)


def nanmean(a: np.ndarray, axis) -> np.ndarray:
    """np.nanmean without the all-NaN warning (all-NaN slices give NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


# --- the analysis ---------------------------------------------------------------------------------


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
            "separation_mean": (("epoch", "layer"), nanmean(cos[..., 0], axis=-1).astype(np.float32)),
            "n_clean": (("class",), np.asarray(n_clean, dtype=np.int64)),
            "n_noisy": (("class", "label_kind"), np.asarray(n_noisy, dtype=np.int64)),
        },
        coords={"epoch": epochs, "layer": np.asarray(layers), "class": np.arange(k),
                "label_kind": list(LABEL_KINDS)},
    )
    ds["cos_clean_noisy"].attrs["description"] = (
        "cos(mu_clean[c], mu_noisy[c]); noisy probes grouped by assigned or original label; "
        "NaN if a class has no probes")
    ds["separation_mean"].attrs["description"] = "nanmean over classes of cos_clean_noisy (label_kind = assigned)"
    ds["n_clean"].attrs["description"] = "clean probes per class"
    ds["n_noisy"].attrs["description"] = "noisy probes per class, grouped by assigned / original label"
    ds.attrs.update({"analysis": "separation", "n_classes": k, "n_layers": len(layers)})
    return ds
