"""Epoch-wise double descent of one run, from its learning curves (curves.nc).

Kubo et al. 2026 (arXiv 2601.08316) and its authors' JSAI 2025 paper define epoch-wise double descent on the
*test loss*: it falls while the clean labels are learned (phase 1), rises while the noisy labels are learned
(phase 2), and falls again once they are fitted perfectly (phase 3). ddscope measures that curve and, in the same
form, the test error; each flag is named for its curve. Definitions (smoothed curves, evaluated epochs only):

- smoothing: centred moving average over `smooth_window` evaluations (index i averages the evaluations
  i - (w-1)//2 .. i + w//2 that exist and are not NaN); truncated at the edges, never padded.
- noise of a curve (`<curve>_noise`, the standard error of one evaluation): for the test error the larger of
  the binomial standard error of the test set, sqrt(p(1-p)/n_test) at the highest of its first-minimum, peak and
  final levels (params n_test; without it only the second term), and the curve's own jitter; for the test loss
  the jitter alone (a mean loss has no binomial form). Jitter = 1.4826 x the median absolute deviation of the
  raw curve's first differences / sqrt(2): robust to the trend and to a few spikes.
- a change of the smoothed curve counts only when it exceeds `noise_sigmas` x sqrt(2) x its noise (the
  difference of two evaluations; no credit is taken for the smoothing, since consecutive evaluations of one
  network on one test set are correlated) and, for the rise, the effect-size floor (min_depth for the error in
  error units, min_depth_loss x the loss's lowest value for the loss).
- first minimum and peak: the pair of evaluations i <= j that maximises s[j] - s[i] (the largest rise, robust to
  early transients). A largest rise below the rise threshold is no rise: the minimum is then the global
  minimum and the peak the highest point after it (a monotone decreasing curve: both at its last evaluation).
- final level: the last value of the smoothed curve.
- `<curve>_depth` (the rise, peak - min; `dd_depth` for the error), `<curve>_recovery` (peak - final;
  `dd_recovery` for the error): DESIGN.md's quantities, kept.
- `<curve>_fall_after_fit`: the smoothed level at the later of the peak and t_fit_noisy minus the final level,
  the fall in phase 3, after the noisy labels are fitted (NaN if they never are; a run without noisy samples,
  a 0 %-noise control, counts from the peak). A value of the smoothed curve
  at one epoch, not the maximum of a noisy series (which is biased upward by the noise).
- `<curve>_recovery_ratio` = fall_after_fit / depth: how much of the bump phase 3 takes back (1: all of it);
  0 when the rise or the fall does not clear its threshold, or the noise is never fitted (nothing is taken back
  that the noise does not explain). The per-seed effect the findings judge.
- `double_descent_<curve>`: the rise clears its threshold, the fall after the fit clears the noise threshold,
  and recovery_ratio >= min_recovery (default 1/2). So a net that memorises noise (its loss rising by 5-11 nats)
  and takes back a fifth of it is not called a double descent, and neither is jitter on a plateau.
- t_fit_clean / t_fit_noisy: first evaluated epoch with *raw* train_clean / train_noisy_assigned accuracy
  >= fit_accuracy; NaN if never (or no noisy samples).
- t_noisy_onset: the onset of noisy-label fitting, the first evaluated epoch at which the smoothed accuracy on
  the noisy samples' assigned labels exceeds chance 1/K by noise_sigmas binomial standard errors of the noisy set
  (params n_classes, n_noisy; without n_noisy, by the jitter of that curve). clean_learned_at_onset: the
  fraction of the clean training accuracy's gain (first evaluation -> last) reached at t_noisy_onset (1: the
  clean labels were learned before the noisy ones began to be fitted).
- phases (Kubo et al.): phase 1 (clean learned, test loss falls) = [first epoch, phase1_end], phase1_end = the
  epoch of the first minimum of the smoothed test loss (test_loss_min_epoch); phase 2 (noisy labels learned,
  test loss rises) = (phase1_end, phase2_end], phase2_end = t_fit_noisy; phase 3 (noise fitted) = after
  phase2_end. phase2_end is NaN when the noise is never fitted or fitted no later than phase1_end.
- regeneralises_after_fit (the paper's "strong re-generalization ... even after perfectly fitting noisy
  training data"): the noise is fitted after phase1_end, the test error's fall after the fit clears its noise
  threshold, and test_error_recovery_ratio >= min_recovery.
- benign_overfitting (stricter: back to the first minimum): t_fit_noisy defined AND final test error <=
  test_error_min + max(benign_tolerance, noise_sigmas x sqrt(2) x test_error_noise).
  A run without noisy samples sets neither flag.

Epoch scalars are float64 (NaN when undefined); flags are bool in memory; `write_metric` stores them as int8 0/1.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ddscope.artifacts import coordinates, current_names, describe
from ddscope.summary import scalar_columns

DEFAULT_PARAMS = {"smooth_window": 5, "min_depth": 0.01, "min_depth_loss": 0.05, "min_recovery": 0.5,
                  "noise_sigmas": 3.0, "fit_accuracy": 0.99, "benign_tolerance": 0.01}
# not config keys: the rule passes them from the dataset and the run's noise rate
SIZE_PARAMS = ("n_test", "n_noisy", "n_classes")
CURVE_FIELDS = ("min_epoch", "min", "peak_epoch", "peak", "final", "depth", "recovery", "noise",
                "fall_after_fit", "recovery_ratio")


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


def jitter(y: np.ndarray) -> float:
    """Standard deviation of one evaluation's noise, from the raw curve's first differences: 1.4826 x their
    median absolute deviation / sqrt(2) (robust to the trend and to a few spikes); NaN with < 3 finite values."""
    y = np.asarray(y, dtype=np.float64)
    d = np.diff(y[np.isfinite(y)])
    if d.size < 2:
        return np.nan
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def binomial_se(p, n) -> float:
    """Standard error of an accuracy (or error rate) p measured on n samples; NaN without n."""
    if not n:
        return np.nan
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    return float(np.sqrt(p * (1.0 - p) / float(n)))


def change_threshold(noise: float, sigmas: float) -> float:
    """The smallest change between two evaluations that noise of `noise` per evaluation does not explain."""
    return float(sigmas * np.sqrt(2.0) * noise) if np.isfinite(noise) else 0.0


def curve_summary(epochs: np.ndarray, smooth: np.ndarray, noise_of, floor: float, t_fit: float,
                  sigmas: float) -> dict:
    """First minimum, peak, final level, rise, fall after the fit and recovery ratio of one smoothed curve.

    `noise_of(levels)` gives the curve's noise from its (min, peak, final) levels; `floor` is the rise's
    effect-size floor. Also returns `rise_threshold` and `fall_threshold` (not stored: the flags use them).
    """
    finite = np.flatnonzero(np.isfinite(smooth))
    if not finite.size:
        return {**{name: np.nan for name in CURVE_FIELDS}, "rise_threshold": np.inf, "fall_threshold": np.inf}
    # the noise depends on the levels, the levels on the rise threshold: one pass with the global levels first
    rough = noise_of((np.nanmin(smooth), np.nanmax(smooth), smooth[finite[-1]]))
    i, j = dip_and_peak(smooth, max(floor, change_threshold(rough, sigmas)))
    out = {"min_epoch": float(epochs[i]), "min": float(smooth[i]), "peak_epoch": float(epochs[j]),
           "peak": float(smooth[j]), "final": float(smooth[finite[-1]])}
    out["noise"] = noise_of((out["min"], out["peak"], out["final"]))
    out["depth"] = out["peak"] - out["min"]
    out["recovery"] = out["peak"] - out["final"]
    start = max(out["peak_epoch"], t_fit) if not np.isnan(t_fit) else np.nan
    after = np.flatnonzero((epochs >= start) & np.isfinite(smooth))  # NaN start: nothing selected
    out["fall_after_fit"] = float(smooth[after[0]] - out["final"]) if after.size else np.nan
    out["rise_threshold"] = max(floor, change_threshold(out["noise"], sigmas))
    out["fall_threshold"] = change_threshold(out["noise"], sigmas)
    # nothing is taken back that the noise explains, or before the fit: then the share is 0, not a ratio of noise
    real = out["depth"] >= out["rise_threshold"] and out["fall_after_fit"] >= out["fall_threshold"]
    out["recovery_ratio"] = out["fall_after_fit"] / out["depth"] if real else 0.0
    return out


def is_recovery(c: dict, min_recovery: float) -> bool:
    """A fall after the fit above the noise that takes back at least min_recovery of the rise (NaN: False)."""
    return bool(c["fall_after_fit"] >= c["fall_threshold"] and c["recovery_ratio"] >= min_recovery)


def noisy_onset(epochs, noisy_acc, smooth_window: int, n_classes: int, n_noisy, sigmas: float) -> float:
    """t_noisy_onset: first evaluation at which the smoothed assigned-label accuracy of the noisy samples exceeds
    chance (1/K) by `sigmas` binomial standard errors of the noisy set (its jitter without n_noisy)."""
    chance = 1.0 / n_classes
    se = binomial_se(chance, n_noisy)
    if not np.isfinite(se):
        se = jitter(noisy_acc)
    return first_epoch_at_least(epochs, moving_average(noisy_acc, smooth_window), chance + sigmas * se)


def gain_reached(values: np.ndarray, epochs: np.ndarray, epoch: float) -> float:
    """Fraction of the gain of `values` (first finite evaluation -> last) reached at `epoch`; NaN if undefined."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(v))
    at = np.flatnonzero((epochs >= epoch) & np.isfinite(v))
    if ok.size < 2 or not at.size or not v[ok[-1]] > v[ok[0]]:
        return np.nan
    return float((v[at[0]] - v[ok[0]]) / (v[ok[-1]] - v[ok[0]]))


DESCRIPTIONS = {
    "test_error_smooth": "1 - test accuracy, centred moving average",
    "test_loss_smooth": "test loss, centred moving average",
    "dd_depth": "test error: peak - first minimum (smoothed)",
    "dd_recovery": "test error: peak - final level (smoothed)",
    "test_loss_depth": "test loss: peak - first minimum (smoothed)",
    "test_loss_recovery": "test loss: peak - final level (smoothed)",
    "test_error_noise": "standard error of one test-error evaluation: max(binomial SE of the test set, jitter)",
    "test_loss_noise": "standard error of one test-loss evaluation: the curve's jitter (MAD of first differences)",
    "test_error_fall_after_fit": "smoothed test error at max(peak, t_fit_noisy) - final level (phase 3's fall)",
    "test_loss_fall_after_fit": "smoothed test loss at max(peak, t_fit_noisy) - final level (phase 3's fall)",
    "test_error_recovery_ratio": "test_error_fall_after_fit / dd_depth: the share of the bump taken back (0 within "
                                 "noise or without a fit)",
    "test_loss_recovery_ratio": "test_loss_fall_after_fit / test_loss_depth: the share of the bump taken back (0 "
                                "within noise or without a fit)",
    "double_descent_test_loss": "test loss rises above its noise, and falls after the noisy labels are fitted "
                                "by >= min_recovery of the rise and above its noise",
    "double_descent_test_error": "the same for the test error",
    "regeneralises_after_fit": "noisy labels fitted after phase 1, then the test error falls by >= min_recovery "
                               "of its rise, above its noise",
    "benign_overfitting": "noisy labels fitted and final test error <= first minimum + max(benign_tolerance, "
                          "noise threshold)",
    "t_fit_clean": "first epoch with train_clean accuracy >= fit_accuracy",
    "t_fit_noisy": "first epoch with train_noisy_assigned accuracy >= fit_accuracy",
    "t_noisy_onset": "onset of noisy-label fitting: smoothed train_noisy_assigned accuracy above chance + "
                     "noise_sigmas binomial SE",
    "clean_learned_at_onset": "fraction of the clean train accuracy's gain reached at t_noisy_onset",
    "phase1_end": "end of phase 1 (clean learned): epoch of the first test-loss minimum",
    "phase2_end": "end of phase 2 (noise being memorised): t_fit_noisy, the epoch the noisy labels are fitted",
}


def _curve_cf_attrs(curve: str, what: str, units: str) -> dict[str, tuple[str, str]]:
    """long_name and units of the CURVE_FIELDS of one curve (`what` names it on an axis)."""
    fields = {
        "min_epoch": (f"epoch of the first {what} minimum", "epoch"),
        "min": (f"first {what} minimum (smoothed)", units),
        "peak_epoch": (f"epoch of the {what} peak", "epoch"),
        "peak": (f"{what} peak (smoothed)", units),
        "final": (f"final {what} (smoothed)", units),
        "depth": (f"{what} rise (peak - first minimum)", units),
        "recovery": (f"{what} fall (peak - final)", units),
        "noise": (f"standard error of one {what} evaluation", units),
        "fall_after_fit": (f"{what} fall after the noisy labels are fitted", units),
        "recovery_ratio": (f"share of the {what} rise taken back after the fit", "1"),
    }
    return {f"{curve}_{k}": fields[k] for k in CURVE_FIELDS}


CF_ATTRS = {
    **coordinates("epoch"),
    "test_error_smooth": ("test error (smoothed)", "1"),
    "test_loss_smooth": ("test loss (smoothed)", "nat"),
    **_curve_cf_attrs("test_error", "test error", "1"),
    **_curve_cf_attrs("test_loss", "test loss", "nat"),
    "t_fit_clean": ("epoch the clean labels are fitted", "epoch"),
    "t_fit_noisy": ("epoch the noisy labels are fitted", "epoch"),
    "t_noisy_onset": ("onset of noisy-label fitting", "epoch"),
    "clean_learned_at_onset": ("share of the clean accuracy gain reached at the onset", "1"),
    "phase1_end": ("end of phase 1", "epoch"),
    "phase2_end": ("end of phase 2", "epoch"),
    "double_descent_test_loss": ("double descent of the test loss (1 = yes)", "1"),
    "double_descent_test_error": ("double descent of the test error (1 = yes)", "1"),
    "regeneralises_after_fit": ("re-generalises after fitting the noisy labels (1 = yes)", "1"),
    "benign_overfitting": ("benign overfitting (1 = yes)", "1"),
}
# the test error's rise and fall keep DESIGN.md's names (the interface notebooks read)
CF_ATTRS["dd_depth"] = CF_ATTRS.pop("test_error_depth")
CF_ATTRS["dd_recovery"] = CF_ATTRS.pop("test_error_recovery")


def extract_double_descent(curves: xr.Dataset, params: dict) -> xr.Dataset:
    """Double-descent summary of one run's curves.nc (definitions: module docstring).

    params = config analyses.double_descent (smooth_window, min_depth, min_depth_loss, min_recovery,
    noise_sigmas, fit_accuracy, benign_tolerance; missing keys take the schema defaults), and optionally the
    sizes the noise is computed from: n_test, n_noisy (the run's noisy training samples), n_classes (default 10).
    """
    p = {**DEFAULT_PARAMS, "n_test": None, "n_noisy": None, "n_classes": 10, **(params or {})}
    curves = current_names(curves, "curves")
    sigmas = float(p["noise_sigmas"])
    epochs = np.asarray(curves["epoch"].values)
    acc = curves["accuracy"]
    raw_error = 1.0 - np.asarray(acc.sel(split="test").values, dtype=np.float64)
    raw_loss = np.asarray(curves["cross_entropy"].sel(split="test").values, dtype=np.float64)
    err_s = moving_average(raw_error, p["smooth_window"])
    loss_s = moving_average(raw_loss, p["smooth_window"])
    noisy_acc = np.asarray(acc.sel(split="train_noisy_assigned").values, dtype=np.float64)
    clean_acc = np.asarray(acc.sel(split="train_clean").values, dtype=np.float64)

    t_fit_clean = first_epoch_at_least(epochs, clean_acc, p["fit_accuracy"])
    t_fit_noisy = first_epoch_at_least(epochs, noisy_acc, p["fit_accuracy"])
    error_jitter, loss_jitter = jitter(raw_error), jitter(raw_loss)

    def error_noise(levels):
        return float(np.nanmax([binomial_se(max(levels, key=lambda q: q * (1 - q)), p["n_test"]), error_jitter]))

    loss_floor = p["min_depth_loss"] * np.nanmin(loss_s) if np.isfinite(loss_s).any() else np.nan
    # a run without noisy samples (a 0 %-noise control) has no fit to wait for: its fall counts from the peak
    t_phase3 = t_fit_noisy if np.isfinite(noisy_acc).any() else -np.inf
    err = curve_summary(epochs, err_s, error_noise, p["min_depth"], t_phase3, sigmas)
    loss = curve_summary(epochs, loss_s, lambda levels: loss_jitter, loss_floor, t_phase3, sigmas)

    out = {f"test_error_{k}": err[k] for k in CURVE_FIELDS}
    out.update({f"test_loss_{k}": loss[k] for k in CURVE_FIELDS})
    # the test error's rise and fall keep DESIGN.md's names (the interface notebooks read)
    out["dd_depth"], out["dd_recovery"] = out.pop("test_error_depth"), out.pop("test_error_recovery")
    onset = noisy_onset(epochs, noisy_acc, p["smooth_window"], int(p["n_classes"]), p["n_noisy"], sigmas)
    out.update(t_fit_clean=t_fit_clean, t_fit_noisy=t_fit_noisy, t_noisy_onset=onset,
               clean_learned_at_onset=gain_reached(clean_acc, epochs, onset))
    out["phase1_end"] = out["test_loss_min_epoch"]
    out["phase2_end"] = t_fit_noisy if t_fit_noisy > out["phase1_end"] else np.nan

    fitted = bool(np.isfinite(t_fit_noisy))
    # NaN compares False: a curve without finite values, or a run whose noise is never fitted, has no flag set
    tolerance = max(p["benign_tolerance"], err["fall_threshold"])
    flags = {
        "double_descent_test_loss": bool(loss["depth"] >= loss["rise_threshold"]) and is_recovery(loss, p["min_recovery"]),
        "double_descent_test_error": bool(err["depth"] >= err["rise_threshold"]) and is_recovery(err, p["min_recovery"]),
        "regeneralises_after_fit": bool(np.isfinite(out["phase2_end"])) and is_recovery(err, p["min_recovery"]),
        "benign_overfitting": fitted and bool(out["test_error_final"] <= out["test_error_min"] + tolerance),
    }
    data_vars = {name: ((), np.float64(value)) for name, value in out.items()}
    data_vars.update({name: ((), np.bool_(value)) for name, value in flags.items()})
    data_vars["test_error_smooth"] = (("epoch",), err_s)
    data_vars["test_loss_smooth"] = (("epoch",), loss_s)
    ds = xr.Dataset(data_vars, coords={"epoch": epochs})
    for name, text in DESCRIPTIONS.items():
        ds[name].attrs["description"] = text
    ds.attrs.update({"analysis": "double_descent", "phases": "Kubo et al. 2026: phase 1 ends at the first "
                     "test-loss minimum, phase 2 at t_fit_noisy",
                     **{k: float(p[k]) for k in DEFAULT_PARAMS if k != "smooth_window"},
                     "smooth_window": int(p["smooth_window"]),
                     **{k: int(p[k]) for k in SIZE_PARAMS if p[k]}})
    return describe(ds, CF_ATTRS)


def summary_columns(ds: xr.Dataset, metrics: dict) -> dict:
    """This analysis's columns of tables/runs.csv (ddscope.summary): every scalar variable (levels, epochs,
    rises, falls, noise and recovery ratios of both curves, the fit and onset epochs, the phases; flags as 0/1)."""
    return scalar_columns(ds)
