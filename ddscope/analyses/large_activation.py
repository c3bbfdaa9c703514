"""Large activation: a single hidden unit whose value dwarfs the others, and what it encodes.

Per (epoch, layer), over all probes (clean, noisy, test):

- unit_max[t, l, u] = max_s |a_l(x_s)[u]|; padded with NaN past the layer's width (`layer_width`[layer]);
- top_value = max_u unit_max, top_unit = its argmax (first on ties), median_unit_max = median_u unit_max;
- ratio = top_value / max(median_unit_max, median_floor). The floor (config analyses.large_activation.
  median_floor, in activation units) keeps the ratio finite when more than half of the units are dead
  (median 0): such a layer gets ratio = top_value / median_floor, a dead layer (top 0) gets 0.
- onset_epoch[l] = first recorded epoch with ratio >= ratio_threshold (NaN if never).

At `n_epochs` analysed epochs (ddscope.analyses.epochs.spread_epoch_indices, shared with probes: log-spaced
over the recorded schedule, first and last recorded epoch included), for the top unit of each layer at that
epoch, over the *train* probes only (clean + noisy: their inputs are the training inputs the network fitted;
test probes are left out so that both measures use the same samples):

- input_r2 = cross-validated ridge R^2 of the unit's value on the input x. Folds are interleaved
  (train probe i in fold i mod cv_folds: deterministic, and balanced whatever the probe order);
  features are standardised with the training fold's mean and std (constant features only centred);
  the intercept is not penalised; closed form (primal if D <= n_train_fold, else dual). R^2 pools the
  out-of-fold predictions: 1 - sum (v - v_hat)^2 / sum (v - mean v)^2, so it is <= 1 and can be < 0
  for a unit the input does not predict. A constant unit gets 0.
- output_r2[target] = the same cross-validated ridge R^2 (same folds, same penalty) of the unit's value on the
  one-hot label (assigned, original, or predicted class): the output-side estimator like the input side's, so
  the two can be compared (eta^2 below is in-sample and not comparable with an out-of-sample R^2).
- typical_input_r2, typical_output_r2[target]: the same two for the layer's *typical* units, the TYPICAL_UNITS
  units whose max |a| ranks nearest the median of the layer at that epoch, averaged over them: the control a
  large unit is held against (a layer-1 unit of an MLP is a piecewise-linear function of the input by
  construction, so its input R^2 is high whether or not it is large).
- output_eta2[target] = correlation ratio eta^2 = between-class sum of squares / total sum of squares
  of the unit's value grouped by the assigned label, the original label, or the predicted class
  (argmax of the logits at that epoch). In [0, 1]; a constant unit gets 0.

The verdicts' quantities (summary_columns -> tables/runs.csv; locate_large_activation, which the figure marks
too) use *trained* epochs only: epoch 0 is the initialisation, where a random layer can already show a large
ratio; it is reported beside them, never judged. Of L hidden layers, the shallow half is layers 1..ceil(L/2)
(shallow_half; the paper's MLP7, MLP5, MLP3: layers 1-3, 1-2, 1; the middle layer of an odd depth counts as
shallow), where the paper locates the large activation; the deep half is the rest.

- ratio_max_l<k> = max of ratio over the trained epochs in layer k (NaN if none is recorded);
- large_layer = the shallow layer with the largest ratio_max (first on ties); large_ratio = its ratio_max,
  large_epoch = the trained epoch it is reached (first on ties), large_ratio_init = its ratio at epoch 0
  (NaN if epoch 0 is not recorded);
- large_second_to_top = second-largest / largest unit_max in large_layer at large_epoch: how single the large
  activation is (near 0: one unit dwarfs all; near 1: two units are alike);
- large_deep_layer, large_deep_ratio = the same over the deep half (NaN without one), for contrast;
- large_analysed_epoch = the analysed epoch > 0 nearest to large_epoch on the log1p scale of the picker (so the
  unit tested is the one that was large, not whatever unit tops the layer at another time); at it, for the top
  unit of large_layer: large_input_r2 = input_r2, large_output_eta2 = output_eta2 maximised over the targets,
  and large_same_unit = 1 if that unit is the top unit at large_epoch too, else 0; large_output_r2 = output_r2
  maximised over the targets, large_typical_input_r2 and large_typical_output_r2 (max over the targets) the
  typical units' values there.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ddscope.analyses.epochs import spread_epoch_indices
from ddscope.analyses.activations import layer_numbers, load, load_by_sample, probe_info
from ddscope.artifacts import coordinates, describe
from ddscope.summary import per_layer_columns

DEFAULT_PARAMS = {"ratio_threshold": 10.0, "n_epochs": 8, "ridge_alpha": 1.0, "cv_folds": 5, "median_floor": 1e-3}
TARGETS = ("assigned", "original", "predicted")
TYPICAL_UNITS = 8
CF_ATTRS = {
    **coordinates("epoch", "layer"),
    "unit": ("hidden unit", "1"),
    "analysed_epoch": ("analysed training epoch", "epoch"),
    "target": ("label the unit is tested against", "1"),
    "unit_max": ("max |activation| over the probes", "1"),
    "layer_width": ("layer width", "1"),
    "top_value": ("largest unit's max |activation|", "1"),
    "top_unit": ("largest unit", "1"),
    "median_unit_max": ("median unit's max |activation|", "1"),
    "ratio": ("largest / median unit's max |activation|", "1"),
    "onset_epoch": ("first epoch with ratio >= ratio_threshold", "epoch"),
    "analysed_top_unit": ("largest unit at the analysed epoch", "1"),
    "input_r2": ("cross-validated ridge R² of the largest unit on the input", "1"),
    "output_eta2": ("correlation ratio η² of the largest unit with the label", "1"),
    "output_r2": ("cross-validated ridge R² of the largest unit on the one-hot label", "1"),
    "typical_input_r2": ("cross-validated ridge R² of typical units on the input", "1"),
    "typical_output_r2": ("cross-validated ridge R² of typical units on the one-hot label", "1"),
}


def ridge_cv_r2(x: np.ndarray, y: np.ndarray, alpha: float, n_folds: int) -> np.ndarray:
    """Cross-validated ridge R^2 of each column of y [n, M] (or [n]) on x [n, D] (module docstring).

    All targets share the folds, so each fold is solved once for every column at the same time.
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64)
    squeeze = y.ndim == 1
    y = y.reshape(len(y), -1)
    n, d = x.shape
    if n < 2:
        out = np.full(y.shape[1], np.nan)
        return out[0] if squeeze else out
    n_folds = int(min(max(n_folds, 2), n))
    fold = np.arange(n) % n_folds
    pred = np.empty_like(y)
    for f in range(n_folds):
        te, tr = fold == f, fold != f
        mu = x[tr].mean(axis=0)
        sd = x[tr].std(axis=0)
        sd = np.where(sd > 1e-12 * (1.0 + np.abs(mu)), sd, 1.0)
        xtr = (x[tr] - mu) / sd
        xte = (x[te] - mu) / sd
        ym = y[tr].mean(axis=0)
        yc = y[tr] - ym
        if d <= xtr.shape[0]:
            w = np.linalg.solve(xtr.T @ xtr + alpha * np.eye(d), xtr.T @ yc)
        else:
            w = xtr.T @ np.linalg.solve(xtr @ xtr.T + alpha * np.eye(xtr.shape[0]), yc)
        pred[te] = xte @ w + ym
    ss_res = ((y - pred) ** 2).sum(axis=0)
    ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    constant = ss_tot <= 1e-12 * n * (1.0 + (y ** 2).mean(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(constant, 0.0, 1.0 - ss_res / np.where(constant, 1.0, ss_tot))
    return r2[0] if squeeze else r2


def correlation_ratio(values: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """eta^2 of values [..., n] grouped by labels (broadcastable to values); 0 for a constant."""
    v = np.asarray(values, dtype=np.float64)
    labels = np.broadcast_to(np.asarray(labels), v.shape)
    onehot = (labels[..., None] == np.arange(n_classes)).astype(np.float64)  # [..., n, K]
    counts = onehot.sum(axis=-2)
    mean = v.mean(axis=-1, keepdims=True)
    dev = v - mean
    class_dev = np.einsum("...n,...nk->...k", dev, onehot)  # sum over the class of (v - mean)
    with np.errstate(invalid="ignore", divide="ignore"):
        between = np.where(counts > 0, class_dev ** 2 / np.maximum(counts, 1), 0.0).sum(axis=-1)
    total = (dev ** 2).sum(axis=-1)
    constant = total <= 1e-12 * v.shape[-1] * (1.0 + (v ** 2).mean(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        eta2 = np.where(constant, 0.0, between / np.where(constant, 1.0, total))
    return np.clip(eta2, 0.0, 1.0)


def extract_large_activation(acts: xr.Dataset, x_probe: np.ndarray, params: dict) -> xr.Dataset:
    """Large-activation statistics of one run (definitions: module docstring).

    x_probe: the probes' inputs [S, ...] in the order of acts.sample (flattened to [S, D]); only the
    rows of train probes are used. params = config analyses.large_activation (defaults filled).
    """
    p = {**DEFAULT_PARAMS, **(params or {})}
    layers = layer_numbers(acts)
    info = probe_info(acts)
    k = info["n_classes"]
    epochs = np.asarray(acts["epoch"].values)
    n_samples = info["y_assigned"].shape[0]
    x = np.asarray(x_probe)
    if x.shape[0] != n_samples:
        raise ValueError(f"x_probe has {x.shape[0]} rows, the activations have {n_samples} probe samples")
    x = x.reshape(n_samples, -1)
    train = info["clean"] | info["noisy"]

    widths = [int(acts[f"act_{layer}"].shape[-1]) for layer in layers]
    n_e, n_l, u_max = len(epochs), len(layers), max(widths)
    unit_max = np.full((n_e, n_l, u_max), np.nan, dtype=np.float32)
    idx_a = spread_epoch_indices(epochs, p["n_epochs"])
    top_at = np.zeros((len(idx_a), n_l, int(train.sum())), dtype=np.float32)  # top unit's value, train probes
    typical_at = np.zeros((len(idx_a), n_l, TYPICAL_UNITS, int(train.sum())), dtype=np.float32)

    top_value = np.zeros((n_e, n_l), dtype=np.float32)
    top_unit = np.zeros((n_e, n_l), dtype=np.int64)
    median = np.zeros((n_e, n_l), dtype=np.float32)
    train_idx = np.flatnonzero(train)
    for li, layer in enumerate(layers):
        a = load_by_sample(acts, f"act_{layer}")  # [sample, epoch, unit]
        um = np.maximum(a.max(axis=0), -a.min(axis=0))  # [epoch, unit] max |a| over probes, without an |a| copy
        unit_max[:, li, : widths[li]] = um
        top_unit[:, li] = np.where(np.isnan(um), -np.inf, um).argmax(axis=1)
        top_value[:, li] = um[np.arange(n_e), top_unit[:, li]]
        median[:, li] = np.median(um, axis=1)
        top_at[:, li, :] = a[train_idx[None, :], idx_a[:, None], top_unit[idx_a, li][:, None]]
        typical = typical_units(um[idx_a], TYPICAL_UNITS)  # [analysed, TYPICAL_UNITS]
        typical_at[:, li] = a[train_idx[None, None, :], idx_a[:, None, None], typical[..., None]]
        del a

    ratio = top_value / np.maximum(median, np.float32(p["median_floor"]))
    reached = ratio >= p["ratio_threshold"]
    onset = np.where(reached.any(axis=0), epochs[reached.argmax(axis=0)].astype(np.float64), np.nan)

    # what the top unit follows, at the analysed epochs
    r2 = ridge_cv_r2(x[train], top_at.reshape(-1, top_at.shape[-1]).T, p["ridge_alpha"], p["cv_folds"])
    r2 = r2.reshape(len(idx_a), n_l)
    predicted = load(acts, "logits", idx_a).argmax(axis=-1)[:, train]  # [analysed, n_train]
    if train_idx.size:
        eta2 = np.stack([
            correlation_ratio(top_at, info["y_assigned"][train], k),
            correlation_ratio(top_at, info["y_original"][train], k),
            correlation_ratio(top_at, predicted[:, None, :], k),
        ], axis=-1)
    else:
        eta2 = np.full((len(idx_a), n_l, len(TARGETS)), np.nan)
    n_a, n_tr = len(idx_a), int(train_idx.size)
    typical_r2 = ridge_cv_r2(x[train], typical_at.reshape(-1, n_tr).T, p["ridge_alpha"], p["cv_folds"])
    typical_r2 = typical_r2.reshape(n_a, n_l, TYPICAL_UNITS).mean(axis=-1)
    labels = {"assigned": np.broadcast_to(info["y_assigned"][train], (n_a, n_tr)),
              "original": np.broadcast_to(info["y_original"][train], (n_a, n_tr)), "predicted": predicted}
    out_r2 = np.full((n_a, n_l, len(TARGETS)), np.nan)
    typical_out_r2 = np.full((n_a, n_l, len(TARGETS)), np.nan)
    for ai in range(n_a if n_tr else 0):
        for ti, target in enumerate(TARGETS):
            onehot = (labels[target][ai][:, None] == np.arange(k)).astype(np.float64)
            values = np.concatenate([top_at[ai].T, typical_at[ai].reshape(n_l * TYPICAL_UNITS, n_tr).T], axis=1)
            r2_all = ridge_cv_r2(onehot, values, p["ridge_alpha"], p["cv_folds"])
            out_r2[ai, :, ti] = r2_all[:n_l]
            typical_out_r2[ai, :, ti] = r2_all[n_l:].reshape(n_l, TYPICAL_UNITS).mean(axis=-1)

    ds = xr.Dataset(
        {
            "unit_max": (("epoch", "layer", "unit"), unit_max),
            "layer_width": (("layer",), np.asarray(widths, dtype=np.int64)),
            "top_value": (("epoch", "layer"), top_value.astype(np.float32)),
            "top_unit": (("epoch", "layer"), top_unit),
            "median_unit_max": (("epoch", "layer"), median.astype(np.float32)),
            "ratio": (("epoch", "layer"), ratio.astype(np.float32)),
            "onset_epoch": (("layer",), onset),
            "analysed_top_unit": (("analysed_epoch", "layer"), top_unit[idx_a]),
            "input_r2": (("analysed_epoch", "layer"), r2.astype(np.float32)),
            "output_eta2": (("analysed_epoch", "layer", "target"), eta2.astype(np.float32)),
            "output_r2": (("analysed_epoch", "layer", "target"), out_r2.astype(np.float32)),
            "typical_input_r2": (("analysed_epoch", "layer"), typical_r2.astype(np.float32)),
            "typical_output_r2": (("analysed_epoch", "layer", "target"), typical_out_r2.astype(np.float32)),
        },
        coords={"epoch": epochs, "layer": np.asarray(layers), "unit": np.arange(u_max),
                "analysed_epoch": epochs[idx_a], "target": list(TARGETS)},
    )
    ds["unit_max"].attrs["description"] = "max over all probes of |a|; NaN for units past the layer's width"
    ds["ratio"].attrs["description"] = "top_value / max(median_unit_max, median_floor)"
    ds["onset_epoch"].attrs["description"] = "first epoch with ratio >= ratio_threshold (NaN if never)"
    ds["input_r2"].attrs["description"] = "cross-validated ridge R^2 of the top unit on the input (train probes)"
    ds["output_eta2"].attrs["description"] = "correlation ratio of the top unit with a label (train probes)"
    ds["output_r2"].attrs["description"] = "cross-validated ridge R^2 of the top unit on the one-hot label"
    ds["typical_input_r2"].attrs["description"] = (
        f"input_r2 of the {TYPICAL_UNITS} units ranked nearest the layer's median unit max, averaged")
    ds["typical_output_r2"].attrs["description"] = (
        f"output_r2 of the {TYPICAL_UNITS} units ranked nearest the layer's median unit max, averaged")
    ds.attrs.update({
        "analysis": "large_activation",
        "ratio_threshold": float(p["ratio_threshold"]),
        "n_epochs": int(p["n_epochs"]),
        "ridge_alpha": float(p["ridge_alpha"]),
        "cv_folds": int(p["cv_folds"]),
        "median_floor": float(p["median_floor"]),
        "n_train_probes": int(train.sum()),
        "input_dim": int(x.shape[1]),
    })
    return describe(ds, CF_ATTRS)


def typical_units(unit_max: np.ndarray, n: int) -> np.ndarray:
    """[E, n] indices of the n units whose max |a| ranks nearest the median of each row of unit_max [E, U]
    (units may repeat in a layer narrower than n)."""
    order = np.argsort(np.where(np.isnan(unit_max), np.inf, unit_max), axis=1, kind="stable")
    width = int(np.isfinite(unit_max).sum(axis=1).min()) if unit_max.size else 0
    start = max(0, width // 2 - n // 2)
    ranks = np.clip(np.arange(start, start + n), 0, max(width - 1, 0))
    return order[:, ranks]


def _max_target(values: np.ndarray) -> float:
    return float(np.nanmax(values)) if np.isfinite(values).any() else np.nan


def shallow_half(n_layers: int) -> int:
    """How many of `n_layers` hidden layers form the shallow half: ceil(L/2) (module docstring)."""
    return (int(n_layers) + 1) // 2


def _trained_ratio(ds: xr.Dataset) -> np.ndarray:
    """ratio [epoch, layer] with -inf at epoch 0 and at NaN: maxima and argmaxima then see trained values only."""
    ratio = ds["ratio"].transpose("epoch", "layer").values.astype(np.float64)
    trained = (ds["epoch"].values > 0)[:, None] & np.isfinite(ratio)
    return np.where(trained, ratio, -np.inf)


def trained_ratio_max(ds: xr.Dataset) -> xr.DataArray:
    """ratio_max per layer: the largest ratio over trained epochs (epoch > 0); NaN where there is none."""
    peak = np.max(_trained_ratio(ds), axis=0, initial=-np.inf)
    return xr.DataArray(np.where(np.isfinite(peak), peak, np.nan), dims=("layer",), coords={"layer": ds["layer"]})


LOCATED = ("large_layer", "large_ratio", "large_epoch", "large_ratio_init", "large_second_to_top",
           "large_deep_layer", "large_deep_ratio", "large_analysed_epoch", "large_input_r2", "large_output_eta2",
           "large_same_unit", "large_output_r2", "large_typical_input_r2", "large_typical_output_r2")


def locate_large_activation(ds: xr.Dataset) -> dict:
    """The large activation the verdicts judge, in the shallow half over trained epochs (module docstring).

    One run's dataset (no `seed` dim); returns the LOCATED columns as floats, NaN where the data cannot say
    (no trained epoch, an all-NaN half, no analysed epoch after 0).
    """
    out = dict.fromkeys(LOCATED, np.nan)
    ratio = _trained_ratio(ds)
    peak = np.max(ratio, axis=0, initial=-np.inf)
    layers, epochs = ds["layer"].values, ds["epoch"].values
    n_shallow = shallow_half(len(layers))

    def largest(positions: np.ndarray):
        return positions[int(np.argmax(peak[positions]))] if np.isfinite(peak[positions]).any() else None

    deep = largest(np.arange(n_shallow, len(layers)))
    if deep is not None:
        out.update(large_deep_layer=float(layers[deep]), large_deep_ratio=float(peak[deep]))
    li = largest(np.arange(n_shallow))
    if li is None:
        return out
    ti = int(np.argmax(ratio[:, li]))
    out.update(large_layer=float(layers[li]), large_ratio=float(peak[li]), large_epoch=float(epochs[ti]))
    init = np.flatnonzero(epochs == 0)
    if init.size:
        out["large_ratio_init"] = float(ds["ratio"].isel(epoch=init[0], layer=li))
    units = ds["unit_max"].isel(epoch=ti, layer=li).values
    units = np.sort(units[np.isfinite(units)])[::-1]
    if units.size >= 2 and units[0] > 0:
        out["large_second_to_top"] = float(units[1] / units[0])

    analysed = ds["analysed_epoch"].values
    after_init = np.flatnonzero(analysed > 0)
    if after_init.size:
        ai = int(after_init[np.argmin(np.abs(np.log1p(analysed[after_init]) - np.log1p(epochs[ti])))])
        at = ds.isel(analysed_epoch=ai, layer=li)
        out.update(large_analysed_epoch=float(analysed[ai]), large_input_r2=float(at["input_r2"]),
                   large_output_eta2=_max_target(at["output_eta2"].values),
                   large_output_r2=_max_target(at["output_r2"].values) if "output_r2" in at else np.nan,
                   large_typical_input_r2=float(at["typical_input_r2"]) if "typical_input_r2" in at else np.nan,
                   large_typical_output_r2=_max_target(at["typical_output_r2"].values)
                   if "typical_output_r2" in at else np.nan,
                   large_same_unit=float(at["analysed_top_unit"] == ds["top_unit"].isel(epoch=ti, layer=li)))
    return out


def summary_columns(ds: xr.Dataset, metrics: dict) -> dict:
    """This analysis's columns of tables/runs.csv (ddscope.summary; definitions: module docstring)."""
    return {**per_layer_columns(ds.onset_epoch, "onset_epoch"),
            **per_layer_columns(trained_ratio_max(ds), "ratio_max"), **locate_large_activation(ds)}
