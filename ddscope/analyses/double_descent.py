"""Epoch-wise double descent of one run, from its learning curves (curves.nc).

The paper judges double descent on the test loss; ddscope measures the test loss and the test error alike
and keeps one flag per curve, each named for its curve. Definitions (all on the *smoothed* test curves,
evaluated epochs only):

- smoothing: centred moving average over `smooth_window` evaluations (index i averages the
  evaluations i - (w-1)//2 .. i + w//2 that exist and are not NaN); at the edges the window is
  truncated, never padded, so the curve does not shrink toward 0.
- first minimum and later peak: the pair of evaluations i <= j that maximises s[j] - s[i], i.e. the
  bottom and top of the largest rise of the curve (its maximum draw-up; robust to early transients,
  which are smaller than the double-descent bump). The minimum is the lowest point before that rise,
  the peak is the highest point after the minimum. Ties: the latest such peak, then the earliest
  minimum before it. If the largest rise is below the curve's rise threshold (min_depth for the error,
  min_depth_loss x the curve's lowest value for the loss: no real rise, e.g. monotone or noisy decreasing
  curves), the minimum is the global minimum and the peak the highest point after it, so the reported
  minimum is never the bottom of a noise wiggle; a monotone decreasing curve has min = peak = its last
  evaluation and depth 0.
- final level: the last value of the smoothed curve (= the mean of the last (w-1)//2 + 1 evaluations).
- dd_depth = peak - min, dd_recovery = peak - final (test error, in error units);
  test_loss_depth, test_loss_recovery the same for the test loss (in loss units).
- double_descent_test_error: dd_depth >= min_depth AND dd_recovery >= min_depth: the
  test error really rises and then really falls again (min_depth is absolute: the error lies in [0, 1]).
- double_descent_test_loss: test_loss_depth >= min_depth_loss x test_loss_min AND test_loss_recovery >=
  min_depth_loss x test_loss_peak: the loss rises by at least that fraction of the level it rises from
  and falls by at least that fraction of the level it falls from. Relative, because the loss has no fixed
  scale (nats; it grows without bound as wrong predictions become confident, 1 -> 12 in the default
  study, and its floor depends on the loss function, e.g. label smoothing).
- t_fit_clean / t_fit_noisy: first evaluated epoch with *raw* train_clean / train_noisy_assigned
  accuracy >= fit_accuracy; NaN if never (or if the split is all NaN, e.g. no noisy samples).
- test_error_fall_after_fit: the highest smoothed test error from t_fit_noisy on minus the final level
  (NaN if the noise was never fitted): how much the test error improves once the noisy labels are fitted.
- regeneralises_after_fit (the paper's benign overfitting): the noisy labels are fitted after the first
  test-error minimum (phase2_end defined: the error had stopped falling while the noise was memorised) AND
  test_error_fall_after_fit >= min_depth: test performance improves again after the noise is perfectly
  fitted. A test error that falls all along (fitted before its minimum) does not *re*-generalise.
- benign_overfitting (a stricter claim than the paper's): t_fit_noisy is defined AND final test
  error <= test_error_min + benign_tolerance. A run without noisy samples sets neither flag.
- phases, from training events, for every run (with or without double descent): phase 1 (clean samples
  learned, test error falls) = [first epoch, phase1_end], phase1_end = epoch of the first minimum of the
  smoothed test error (test_error_min_epoch; NaN only if the test curve is all NaN); phase 2 (noisy labels
  being memorised, test error rises) = (phase1_end, phase2_end], phase2_end = t_fit_noisy; phase 3 (noise
  fitted; with double descent the test error falls again) = after phase2_end, i.e. it starts when the
  noisy labels are fitted. phase2_end is NaN when the noise is never fitted, or fitted no later than
  phase1_end (then there is no phase 2).

Epoch scalars are float64 (NaN when undefined); flags are bool in memory; `write_metric` stores them
as int8 0/1 and `open_metric` returns int8.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from ddscope.summary import scalar_columns

DEFAULT_PARAMS = {"smooth_window": 5, "min_depth": 0.01, "min_depth_loss": 0.05, "fit_accuracy": 0.99,
                  "benign_tolerance": 0.01}


def moving_average(y: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over `window` points, truncated (not padded) at the edges, NaN-aware."""
    y = np.asarray(y, dtype=np.float64)
    window = max(int(window), 1)
    n = y.shape[0]
    valid = np.isfinite(y)
    csum = np.concatenate([[0.0], np.cumsum(np.where(valid, y, 0.0))])
    ccnt = np.concatenate([[0], np.cumsum(valid)])
    idx = np.arange(n)
    lo = np.clip(idx - (window - 1) // 2, 0, n)
    hi = np.clip(idx + window // 2 + 1, 0, n)
    cnt = ccnt[hi] - ccnt[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, (csum[hi] - csum[lo]) / np.maximum(cnt, 1), np.nan)


def dip_and_peak(s: np.ndarray, min_rise: float = 0.0) -> tuple[int, int]:
    """Indices (i_min, i_peak) of the largest rise s[j] - s[i], i <= j (see module docstring).

    A largest rise below `min_rise` gives the global minimum and the highest point after it.
    Returns (-1, -1) when the curve is all NaN.
    """
    s = np.asarray(s, dtype=np.float64)
    finite = np.isfinite(s)
    if not finite.any():
        return -1, -1
    masked = np.where(finite, s, np.nan)
    running_min = np.fmin.accumulate(np.where(finite, s, np.inf))
    rise = np.where(finite, s - running_min, -np.inf)
    best = rise.max()
    if best < min_rise or best <= 0:
        i = int(np.nanargmin(masked))
        after = masked[i:]
        j = i + int(np.flatnonzero(after == np.nanmax(after))[-1])
        return i, j
    j = int(np.flatnonzero(rise == best)[-1])
    i = int(np.nanargmin(masked[: j + 1]))
    return i, j


def first_epoch_at_least(epochs: np.ndarray, values: np.ndarray, level: float) -> float:
    """First epoch with values >= level (NaN never counts); NaN if never."""
    hit = np.flatnonzero(np.asarray(values, dtype=np.float64) >= level)
    return float(epochs[hit[0]]) if hit.size else np.nan


def _curve_summary(epochs: np.ndarray, smooth: np.ndarray, prefix: str, min_rise: float) -> dict:
    """First minimum, later peak and final level of one smoothed curve, and the rise and fall between them."""
    i, j = dip_and_peak(smooth, min_rise)
    finite = np.flatnonzero(np.isfinite(smooth))
    if i < 0:
        return {f"{prefix}_{name}": np.nan
                for name in ("min_epoch", "min", "peak_epoch", "peak", "final", "depth", "recovery")}
    out = {
        f"{prefix}_min_epoch": float(epochs[i]),
        f"{prefix}_min": float(smooth[i]),
        f"{prefix}_peak_epoch": float(epochs[j]),
        f"{prefix}_peak": float(smooth[j]),
        f"{prefix}_final": float(smooth[finite[-1]]),
    }
    out[f"{prefix}_depth"] = out[f"{prefix}_peak"] - out[f"{prefix}_min"]
    out[f"{prefix}_recovery"] = out[f"{prefix}_peak"] - out[f"{prefix}_final"]
    return out


def fall_after(epochs: np.ndarray, smooth: np.ndarray, epoch: float) -> float:
    """Highest value of `smooth` from `epoch` on minus its final value; NaN if `epoch` is NaN or past the end."""
    after = np.asarray(smooth, dtype=np.float64)[np.asarray(epochs) >= epoch]  # NaN epoch: nothing selected
    after = after[np.isfinite(after)]
    return float(after.max() - after[-1]) if after.size else np.nan


def extract_double_descent(curves: xr.Dataset, params: dict) -> xr.Dataset:
    """Double-descent summary of one run's curves.nc (definitions: module docstring).

    params = config analyses.double_descent (smooth_window, min_depth, min_depth_loss, fit_accuracy,
    benign_tolerance); missing keys take the schema defaults.
    """
    p = {**DEFAULT_PARAMS, **(params or {})}
    epochs = np.asarray(curves["epoch"].values)
    acc = curves["accuracy"]
    test_error = 1.0 - np.asarray(acc.sel(split="test").values, dtype=np.float64)
    test_loss = np.asarray(curves["loss"].sel(split="test").values, dtype=np.float64)
    err_s = moving_average(test_error, p["smooth_window"])
    loss_s = moving_average(test_loss, p["smooth_window"])
    loss_floor = np.nanmin(loss_s) if np.isfinite(loss_s).any() else np.nan

    out = {}
    out.update(_curve_summary(epochs, err_s, "test_error", p["min_depth"]))
    # the test error's rise and fall keep DESIGN.md's names (the interface notebooks read)
    out["dd_depth"], out["dd_recovery"] = out.pop("test_error_depth"), out.pop("test_error_recovery")
    out.update(_curve_summary(epochs, loss_s, "test_loss", p["min_depth_loss"] * loss_floor))
    # NaN compares False: a curve without finite values has no double descent
    dd_error = bool(out["dd_depth"] >= p["min_depth"] and out["dd_recovery"] >= p["min_depth"])
    dd_loss = bool(out["test_loss_depth"] >= p["min_depth_loss"] * out["test_loss_min"]
                   and out["test_loss_recovery"] >= p["min_depth_loss"] * out["test_loss_peak"])

    t_fit_clean = first_epoch_at_least(epochs, acc.sel(split="train_clean").values, p["fit_accuracy"])
    t_fit_noisy = first_epoch_at_least(epochs, acc.sel(split="train_noisy_assigned").values, p["fit_accuracy"])
    fall = fall_after(epochs, err_s, t_fit_noisy)
    fitted = bool(np.isfinite(t_fit_noisy))
    out["t_fit_clean"] = t_fit_clean
    out["t_fit_noisy"] = t_fit_noisy
    out["test_error_fall_after_fit"] = fall
    out["phase1_end"] = out["test_error_min_epoch"]
    out["phase2_end"] = t_fit_noisy if t_fit_noisy > out["phase1_end"] else np.nan

    data_vars = {name: ((), np.float64(value)) for name, value in out.items()}
    flags = {
        "double_descent_test_loss": dd_loss,
        "double_descent_test_error": dd_error,
        "regeneralises_after_fit": bool(np.isfinite(out["phase2_end"])) and fall >= p["min_depth"],
        "benign_overfitting": fitted and out["test_error_final"] <= out["test_error_min"] + p["benign_tolerance"],
    }
    data_vars.update({name: ((), np.bool_(value)) for name, value in flags.items()})
    data_vars["test_error_smooth"] = (("epoch",), err_s)
    data_vars["test_loss_smooth"] = (("epoch",), loss_s)
    ds = xr.Dataset(data_vars, coords={"epoch": epochs})
    descriptions = {
        "test_error_smooth": "1 - test accuracy, centred moving average",
        "test_loss_smooth": "test loss, centred moving average",
        "dd_depth": "test_error_peak - test_error_min (smoothed)",
        "dd_recovery": "test_error_peak - test_error_final (smoothed)",
        "test_loss_depth": "test_loss_peak - test_loss_min (smoothed)",
        "test_loss_recovery": "test_loss_peak - test_loss_final (smoothed)",
        "double_descent_test_loss": "test loss rises by >= min_depth_loss x its first minimum, then falls by "
                                    ">= min_depth_loss x its peak",
        "double_descent_test_error": "test error rises by >= min_depth, then falls by >= min_depth",
        "test_error_fall_after_fit": "highest smoothed test error from t_fit_noisy on - final level",
        "regeneralises_after_fit": "noisy labels fitted after the first minimum, test error falls by >= min_depth "
                                   "afterwards",
        "benign_overfitting": "noisy labels fitted and final test error <= first minimum + benign_tolerance",
        "phase1_end": "end of phase 1 (clean learned): epoch of the first test-error minimum",
        "phase2_end": "end of phase 2 (noise being memorised): t_fit_noisy, the epoch the noisy labels are fitted",
    }
    for name, text in descriptions.items():
        ds[name].attrs["description"] = text
    ds.attrs.update({
        "analysis": "double_descent",
        "smooth_window": int(p["smooth_window"]),
        "min_depth": float(p["min_depth"]),
        "min_depth_loss": float(p["min_depth_loss"]),
        "fit_accuracy": float(p["fit_accuracy"]),
        "benign_tolerance": float(p["benign_tolerance"]),
    })
    return ds


def summary_columns(ds: xr.Dataset, metrics: dict) -> dict:
    """This analysis's columns of tables/runs.csv (ddscope.summary): every scalar variable (levels, epochs,
    depths and recoveries of both curves, the fit epochs, the phases; flags as 0/1)."""
    return scalar_columns(ds)
