"""Epoch-wise double descent of one run, from its learning curves (curves.nc).

Definitions (all on the *smoothed* test curves, evaluated epochs only):

- smoothing: centred moving average over `smooth_window` evaluations (index i averages the
  evaluations i - (w-1)//2 .. i + w//2 that exist and are not NaN); at the edges the window is
  truncated, never padded, so the curve does not shrink toward 0.
- first minimum and later peak: the pair of evaluations i <= j that maximises s[j] - s[i], i.e. the
  bottom and top of the largest rise of the curve (its maximum draw-up; robust to early transients,
  which are smaller than the double-descent bump). The minimum is the lowest point before that rise,
  the peak is the highest point after the minimum. Ties: the latest such peak, then the earliest
  minimum before it. If the largest rise is below min_depth (no real rise: monotone or noisy
  decreasing curves), the minimum is the global minimum and the peak the highest point after it, so
  the reported minimum is never the bottom of a noise wiggle; a monotone decreasing curve has
  min = peak = its last evaluation and depth 0. The same rule (and min_depth) serves the test loss.
- final level: the last value of the smoothed curve (= the mean of the last (w-1)//2 + 1 evaluations).
- dd_depth = peak - min, dd_recovery = peak - final (of the test error; test_loss_depth /
  test_loss_recovery for the loss).
- epochwise_double_descent: dd_depth >= min_depth AND dd_recovery >= min_depth: the test error
  really rises and then really falls again.
- t_fit_clean / t_fit_noisy: first evaluated epoch with *raw* train_clean / train_noisy_assigned
  accuracy >= fit_accuracy; NaN if never (or if the split is all NaN, e.g. no noisy samples).
- benign_overfitting: t_fit_noisy is defined (noisy labels were fitted) AND final test error <=
  first-minimum test error + benign_tolerance. A run without noisy samples is never benign.
- phases (test error): phase 1 (clean samples learned, test error falls) = [first epoch,
  phase1_end] with phase1_end = epoch of the first minimum; phase 2 (noisy samples being memorised
  while test error rises) = (phase1_end, phase2_end] with phase2_end = epoch of the peak; phase 3
  (noisy fitted, test error falls again) = after phase2_end. Without epoch-wise double descent
  (flag false) the phases are undefined and both boundaries are NaN.

Epoch scalars are float64 (NaN when undefined); flags are bool in memory; `write_metric` stores them
as int8 0/1 and `open_metric` returns int8.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

DEFAULT_PARAMS = {"smooth_window": 5, "min_depth": 0.01, "fit_accuracy": 0.99, "benign_tolerance": 0.01}


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
    i, j = dip_and_peak(smooth, min_rise)
    finite = np.flatnonzero(np.isfinite(smooth))
    if i < 0:
        nan = np.nan
        return {f"{prefix}_min_epoch": nan, f"{prefix}_min": nan, f"{prefix}_peak_epoch": nan,
                f"{prefix}_peak": nan, f"{prefix}_final": nan}
    return {
        f"{prefix}_min_epoch": float(epochs[i]),
        f"{prefix}_min": float(smooth[i]),
        f"{prefix}_peak_epoch": float(epochs[j]),
        f"{prefix}_peak": float(smooth[j]),
        f"{prefix}_final": float(smooth[finite[-1]]),
    }


def extract_double_descent(curves: xr.Dataset, params: dict) -> xr.Dataset:
    """Double-descent summary of one run's curves.nc (definitions: module docstring).

    params = config analyses.double_descent (smooth_window, min_depth, fit_accuracy, benign_tolerance);
    missing keys take the schema defaults.
    """
    p = {**DEFAULT_PARAMS, **(params or {})}
    epochs = np.asarray(curves["epoch"].values)
    acc = curves["accuracy"]
    test_error = 1.0 - np.asarray(acc.sel(split="test").values, dtype=np.float64)
    test_loss = np.asarray(curves["loss"].sel(split="test").values, dtype=np.float64)
    err_s = moving_average(test_error, p["smooth_window"])
    loss_s = moving_average(test_loss, p["smooth_window"])

    out = {}
    out.update(_curve_summary(epochs, err_s, "test_error", p["min_depth"]))
    out.update(_curve_summary(epochs, loss_s, "test_loss", p["min_depth"]))
    dd_depth = out["test_error_peak"] - out["test_error_min"]
    dd_recovery = out["test_error_peak"] - out["test_error_final"]
    out["dd_depth"] = dd_depth
    out["dd_recovery"] = dd_recovery
    out["test_loss_depth"] = out["test_loss_peak"] - out["test_loss_min"]
    out["test_loss_recovery"] = out["test_loss_peak"] - out["test_loss_final"]
    dd = bool(dd_depth >= p["min_depth"] and dd_recovery >= p["min_depth"])  # NaN compares False

    t_fit_clean = first_epoch_at_least(epochs, acc.sel(split="train_clean").values, p["fit_accuracy"])
    t_fit_noisy = first_epoch_at_least(epochs, acc.sel(split="train_noisy_assigned").values, p["fit_accuracy"])
    benign = bool(np.isfinite(t_fit_noisy)
                  and out["test_error_final"] <= out["test_error_min"] + p["benign_tolerance"])
    out["t_fit_clean"] = t_fit_clean
    out["t_fit_noisy"] = t_fit_noisy
    out["phase1_end"] = out["test_error_min_epoch"] if dd else np.nan
    out["phase2_end"] = out["test_error_peak_epoch"] if dd else np.nan

    data_vars = {name: ((), np.float64(value)) for name, value in out.items()}
    data_vars["epochwise_double_descent"] = ((), np.bool_(dd))
    data_vars["benign_overfitting"] = ((), np.bool_(benign))
    data_vars["test_error_smooth"] = (("epoch",), err_s)
    data_vars["test_loss_smooth"] = (("epoch",), loss_s)
    ds = xr.Dataset(data_vars, coords={"epoch": epochs})
    ds["test_error_smooth"].attrs["description"] = "1 - test accuracy, centred moving average"
    ds["dd_depth"].attrs["description"] = "test_error_peak - test_error_min (smoothed)"
    ds["dd_recovery"].attrs["description"] = "test_error_peak - test_error_final (smoothed)"
    ds["phase1_end"].attrs["description"] = "end of phase 1 (clean learned): epoch of the first test-error minimum"
    ds["phase2_end"].attrs["description"] = "end of phase 2 (noise memorised, test error rises): epoch of the peak"
    ds.attrs.update({
        "analysis": "double_descent",
        "smooth_window": int(p["smooth_window"]),
        "min_depth": float(p["min_depth"]),
        "fit_accuracy": float(p["fit_accuracy"]),
        "benign_tolerance": float(p["benign_tolerance"]),
    })
    return ds
