"""The sweep over n: which grid points interpolate and the estimated threshold (defined in the package docstring),
whether the runs have stopped moving, the break of the test loss at the threshold, and threshold_sweep.nc.

Convergence. Training has a fixed budget of T steps, so a run that does not interpolate may be at a spurious
stationary point (the paper's non-interpolating solution) or merely slow. A run has converged when its train
loss stayed within `converged_tol` (relative) of its final value over the last half of training
(`final_rel_change`, from the last recorded step at or before T/2). A grid point is `point_converged` when all
of its non-interpolating runs have converged.

Break at the threshold. The test loss falls with n for any estimator, so the loss past n* is not compared with
the loss at smaller n but with the trend of each regime in n (a regression discontinuity on the log-log plane,
`break_at_threshold`): a least-squares line of log test loss on log n through the interpolating runs below n*, one
through the non-interpolating runs of the converged grid points from n* on, both evaluated where the regimes
meet, √(n_last · n*) with n_last the grid point before n*. Their ratio `test_break` is the change at n* net of
the smooth trends; below 1 the non-interpolating students generalise better than interpolating ones would at
the same n.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from ddscope.artifacts import describe
from ddscope.threshold.student import aligned_fraction, early_phase_end


def interpolating_points(interpolates: np.ndarray, majority: float = 0.5) -> np.ndarray:
    """Per grid point: does it interpolate? `interpolates` is [n] (bool or fraction of seeds) or [n, seed] bool;
    a point interpolates when at least `majority` of its seeds do."""
    a = np.asarray(interpolates, dtype=np.float64)
    frac = a.mean(axis=-1) if a.ndim == 2 else a
    return frac >= majority


def estimate_threshold(n_values, interpolates, majority: float = 0.5) -> float:
    """Smallest grid n from which on the student no longer interpolates (see the module docstring).

    +inf: it still interpolates at the largest n (the threshold lies beyond the grid). n_values[0]: it never
    interpolates (the threshold is at most the smallest n). Non-monotone flags: the grid point after the last
    interpolating one.
    """
    n = np.asarray(n_values, dtype=np.float64)
    if n.ndim != 1 or not n.size or np.any(np.diff(n) <= 0):
        raise ValueError("n_values must be a non-empty increasing 1-d grid")
    points = interpolating_points(interpolates, majority)
    if points.shape != n.shape:
        raise ValueError(f"interpolation flags of shape {points.shape} do not match {n.size} grid points")
    if not points.any():
        return float(n[0])
    last = int(np.flatnonzero(points)[-1])
    return math.inf if last == n.size - 1 else float(n[last + 1])


def threshold_bracketed(n_values, n_threshold: float) -> bool:
    """True when the grid brackets the threshold: some n below it interpolates and it is on the grid."""
    return bool(np.isfinite(n_threshold) and n_threshold > float(np.min(n_values)))


def is_monotone(points: np.ndarray) -> bool:
    """Interpolating grid points form a prefix of the grid (interpolates, then never again)."""
    p = np.asarray(points, dtype=bool)
    return bool(not np.any(~p[:-1] & p[1:]))


def final_rel_change(train_loss: np.ndarray, steps) -> np.ndarray:
    """How far the train loss still moves at the end: max |L(t) − L(T)| / L(T) over the recorded steps t from the
    last one at or before T/2 to the last, T (train_loss [..., step]).

    The absolute value counts rises (GD spikes) as movement too. A final loss of exactly 0 gives 0 when the loss
    was 0 over the whole window and inf otherwise; a non-finite loss (diverged) gives NaN.
    """
    loss = np.asarray(train_loss, dtype=np.float64)
    steps = np.asarray(steps)
    if steps.ndim != 1 or steps.size != loss.shape[-1] or np.any(np.diff(steps) <= 0):
        raise ValueError(f"steps must be the increasing recorded steps of the last axis ({loss.shape[-1]}), "
                         f"got {steps}")
    start = int(np.flatnonzero(steps <= steps[-1] / 2)[-1])
    final = loss[..., -1:]
    moved = np.abs(loss[..., start:] - final).max(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = moved / final[..., 0]
    rel = np.where(final[..., 0] == 0, np.where(moved == 0, 0.0, np.inf), rel)
    return np.where(np.isfinite(loss[..., start:]).all(axis=-1), rel, np.nan)


def point_converged(interpolates: np.ndarray, converged: np.ndarray) -> np.ndarray:
    """Per grid point ([n, seed] flags): have all its non-interpolating runs converged? (True where all interpolate.)"""
    return np.all(np.asarray(interpolates, dtype=bool) | np.asarray(converged, dtype=bool), axis=-1)


def loglog_trend(n: np.ndarray, loss: np.ndarray) -> tuple[float, float]:
    """Least-squares line log(loss) = intercept + slope·log(n) through the points (n_i, loss_i);
    (NaN, NaN) with fewer than two distinct n (no trend can be fitted)."""
    n, loss = np.asarray(n, dtype=np.float64), np.asarray(loss, dtype=np.float64)
    if np.any(loss <= 0) or not np.all(np.isfinite(loss)):
        raise ValueError("loglog_trend needs positive finite losses")
    if np.unique(n).size < 2:
        return math.nan, math.nan
    slope, intercept = np.polyfit(np.log(n), np.log(loss), 1)
    return float(intercept), float(slope)


def break_at_threshold(n_values, test_loss, interpolates, converged, n_threshold: float) -> dict:
    """The break of the test loss at n* net of each regime's trend in n (see the module docstring).

    test_loss, interpolates, converged: [n, seed]. Returns `n_below` / `n_beyond` (the grid points whose runs
    each line goes through), `slope_below` / `slope_beyond`, the lines at `n_cut` = √(n_last · n*),
    `trend_below` / `trend_beyond`, and `ratio` = trend_beyond / trend_below. All NaN when the grid does not
    bracket n*; a side with fewer than two grid points has no line (NaN slope, trend and ratio).
    """
    n = np.asarray(n_values, dtype=np.float64)
    test = np.asarray(test_loss, dtype=np.float64)
    fits = np.asarray(interpolates, dtype=bool)
    done = np.asarray(converged, dtype=bool)
    if test.shape != fits.shape or test.shape != done.shape or test.shape[0] != n.size:
        raise ValueError(f"test loss {test.shape}, interpolates {fits.shape}, converged {done.shape} do not match "
                         f"{n.size} grid points")
    nan = {"ratio": math.nan, "n_cut": math.nan, "trend_below": math.nan, "trend_beyond": math.nan,
           "slope_below": math.nan, "slope_beyond": math.nan, "n_below": np.array([]), "n_beyond": np.array([])}
    if not threshold_bracketed(n, n_threshold):
        return nan
    grid_n = np.broadcast_to(n[:, None], test.shape)
    below = fits & (grid_n < n_threshold)
    beyond = ~fits & (grid_n >= n_threshold) & point_converged(fits, done)[:, None]
    intercept_b, slope_b = loglog_trend(grid_n[below], test[below])
    intercept_a, slope_a = loglog_trend(grid_n[beyond], test[beyond])
    n_cut = math.sqrt(float(n[n < n_threshold][-1]) * n_threshold)
    trend_below = math.exp(intercept_b + slope_b * math.log(n_cut))
    trend_beyond = math.exp(intercept_a + slope_a * math.log(n_cut))
    return {"ratio": trend_beyond / trend_below, "n_cut": n_cut, "trend_below": trend_below,
            "trend_beyond": trend_beyond, "slope_below": slope_b, "slope_beyond": slope_a,
            "n_below": np.unique(grid_n[below]), "n_beyond": np.unique(grid_n[beyond])}


_STUDENT_CF_ATTRS = {
    "seed": ("run seed", "1"),
    "step": ("gradient step", "step"),
    "neuron": ("student neuron", "1"),
    "train_loss": ("training MSE", "1"),
    "test_loss": ("test MSE against the teacher", "1"),
}
RUN_CF_ATTRS = {
    **_STUDENT_CF_ATTRS,
    "cosine": ("largest cosine with a teacher direction", "1"),
    "neuron_norm": ("neuron norm |w_j|", "1"),
    "a_final": ("final output weight a_j", "1"),
}
SWEEP_CF_ATTRS = {
    "n": ("training-set size", "1"),
    **_STUDENT_CF_ATTRS,
    "final_train_loss": ("final training MSE", "1"),
    "final_test_loss": ("final test MSE against the teacher", "1"),
    "interpolates": ("interpolates (1 = yes)", "1"),
    "interpolating_fraction": ("fraction of seeds that interpolate", "1"),
    "early_step": ("end of the early phase", "step"),
    "early_cosine": ("largest cosine with a teacher direction at the end of the early phase", "1"),
    "aligned_fraction": ("fraction of aligned neurons at the end of the early phase", "1"),
    "aligned_fraction_curve": ("fraction of aligned neurons", "1"),
    "final_cosine": ("final largest cosine with a teacher direction", "1"),
    "n_threshold": ("optimization threshold n*", "1"),
    "n_threshold_seed": ("optimization threshold n* of one seed", "1"),
    "final_rel_change": ("relative change of the training MSE over the last half", "1"),
    "converged": ("converged (1 = yes)", "1"),
    "point_converged": ("every non-interpolating run converged (1 = yes)", "1"),
    "test_break": ("test-loss trend beyond / below n*", "1"),
    "test_break_n": ("training-set size the trends are compared at", "1"),
    "test_trend_below": ("test-MSE trend of the interpolating runs below n*", "1"),
    "test_trend_beyond": ("test-MSE trend of the non-interpolating runs beyond n*", "1"),
    "test_slope_below": ("log-log slope of the test MSE below n*", "1"),
    "test_slope_beyond": ("log-log slope of the test MSE beyond n*", "1"),
    "break_fit_below": ("grid point in the trend below n* (1 = yes)", "1"),
    "break_fit_beyond": ("grid point in the trend beyond n* (1 = yes)", "1"),
}


def run_dataset(n: int, seeds, result: dict, attrs: dict):
    """One n's runs as an xarray Dataset over (seed, step, neuron)."""
    seeds = np.asarray(seeds, dtype=np.int64)
    m = result["cosine"].shape[-1]
    coords = {"seed": seeds, "step": result["steps"], "neuron": np.arange(m)}
    ds = xr.Dataset(
        {
            "train_loss": (("seed", "step"), result["train_loss"].astype(np.float64)),
            "test_loss": (("seed", "step"), result["test_loss"].astype(np.float64)),
            "cosine": (("seed", "step", "neuron"), result["cosine"].astype(np.float32)),
            "neuron_norm": (("seed", "step", "neuron"), result["neuron_norm"].astype(np.float32)),
            "a_final": (("seed", "neuron"), result["a"].astype(np.float32)),
        },
        coords=coords,
        attrs={"n": int(n), **attrs},
    )
    ds.train_loss.attrs["description"] = "mean squared error on the training set (noisy labels)"
    ds.test_loss.attrs["description"] = "mean squared error against the noiseless teacher on the test set"
    ds.cosine.attrs["description"] = "largest cosine between each neuron's w_j and a teacher direction"
    ds.neuron_norm.attrs["description"] = "|w_j| of each neuron"
    return describe(ds, RUN_CF_ATTRS)


def build_sweep(runs: list, criteria: dict, noise_var: float, attrs: dict | None = None):
    """The sweep over (n, seed, step) from the per-n datasets (run_dataset), with the threshold estimate.

    criteria: interpolation_tol, majority, align_threshold, early_loss_drop, converged_tol, and break_ratio
    (the bar of the findings' T1 verdict, kept in the attributes; see the package docstring).
    """
    runs = sorted(runs, key=lambda r: r.attrs["n"])
    n_values = np.asarray([r.attrs["n"] for r in runs], dtype=np.int64)
    stacked = xr.concat([r[["train_loss", "test_loss", "cosine"]] for r in runs], dim="n", join="outer",
                        coords="minimal", compat="override")
    stacked = stacked.assign_coords(n=n_values)
    train, test, cos = stacked.train_loss, stacked.test_loss, stacked.cosine
    final_train = train.isel(step=-1)
    final_test = test.isel(step=-1)
    interpolates = final_train < criteria["interpolation_tol"] * noise_var
    points = interpolating_points(interpolates.values, criteria["majority"])
    n_threshold = estimate_threshold(n_values, points.astype(float), 1.0)
    per_seed = np.array([estimate_threshold(n_values, interpolates.values[:, i].astype(float), 1.0)
                         for i in range(interpolates.sizes["seed"])])
    rel_change = final_rel_change(train.values, train.step.values)  # n, seed
    with np.errstate(invalid="ignore"):
        converged = rel_change < criteria["converged_tol"]
    points_converged = point_converged(interpolates.values, converged)
    jump = break_at_threshold(n_values, final_test.values, interpolates.values, converged, n_threshold)

    early = early_phase_end(train.values, criteria["early_loss_drop"])  # n, seed
    idx = np.where(early >= 0, early, 0)
    cos_np = cos.values  # n seed step neuron
    early_cos = np.take_along_axis(cos_np, idx[:, :, None, None], axis=2)[:, :, 0, :]
    early_cos = np.where((early >= 0)[:, :, None], early_cos, np.nan)
    steps = stacked.step.values
    frac = aligned_fraction(early_cos, criteria["align_threshold"])
    frac = np.where(early >= 0, frac, np.nan)
    frac_curve = aligned_fraction(cos_np, criteria["align_threshold"])

    dims2 = ("n", "seed")
    ds = xr.Dataset(
        {
            "train_loss": train,
            "test_loss": test,
            "final_train_loss": final_train.drop_vars("step"),
            "final_test_loss": final_test.drop_vars("step"),
            "interpolates": interpolates.drop_vars("step"),
            "interpolating_fraction": interpolates.drop_vars("step").astype(float).mean("seed"),
            "early_step": (dims2, np.where(early >= 0, steps[idx], -1).astype(np.int64)),
            "early_cosine": (dims2 + ("neuron",), early_cos.astype(np.float32)),
            "aligned_fraction": (dims2, frac),
            "aligned_fraction_curve": (("n", "seed", "step"), frac_curve),
            "final_cosine": (dims2 + ("neuron",), cos_np[:, :, -1, :].astype(np.float32)),
            "n_threshold": ((), n_threshold),
            "n_threshold_seed": (("seed",), per_seed),
            "final_rel_change": (dims2, rel_change),
            "converged": (dims2, converged),
            "point_converged": (("n",), points_converged),
            "test_break": ((), jump["ratio"]),
            "test_break_n": ((), jump["n_cut"]),
            "test_trend_below": ((), jump["trend_below"]),
            "test_trend_beyond": ((), jump["trend_beyond"]),
            "test_slope_below": ((), jump["slope_below"]),
            "test_slope_beyond": ((), jump["slope_beyond"]),
            "break_fit_below": (("n",), np.isin(n_values, jump["n_below"])),
            "break_fit_beyond": (("n",), np.isin(n_values, jump["n_beyond"])),
        },
        coords={"n": n_values, "seed": stacked.seed.values, "step": steps, "neuron": stacked.neuron.values},
    )
    descriptions = {
        "train_loss": "training MSE (noisy labels) at the recorded steps",
        "test_loss": "test MSE against the noiseless teacher (excess risk) at the recorded steps",
        "interpolates": f"final train loss < interpolation_tol · noise_var = {criteria['interpolation_tol'] * noise_var:g}",
        "interpolating_fraction": "fraction of seeds that interpolate",
        "early_step": "end of the early phase: first recorded step with train loss <= (1 - early_loss_drop) x initial; -1: never",
        "early_cosine": "largest cosine of each neuron with a teacher direction at the end of the early phase",
        "aligned_fraction": "fraction of neurons with early_cosine >= align_threshold",
        "aligned_fraction_curve": "fraction of neurons with cosine >= align_threshold at each recorded step",
        "final_cosine": "largest cosine of each neuron with a teacher direction at the last step",
        "n_threshold": "smallest grid n from which on no grid point interpolates (inf: beyond the grid)",
        "n_threshold_seed": "n_threshold estimated from each seed alone",
        "final_rel_change": "max |train loss - final| / final over the recorded steps from the last one <= steps/2 on",
        "converged": f"final_rel_change < converged_tol = {criteria['converged_tol']:g}: the train loss has stopped moving",
        "point_converged": "every non-interpolating run of this n has converged",
        "test_break": "test_trend_beyond / test_trend_below: the change of test loss at n* net of each regime's "
                      "trend in n (NaN: not estimable)",
        "test_break_n": "where the two trends are compared: sqrt(grid n before n* x n*)",
        "test_trend_below": "log-log least-squares trend of test loss of the interpolating runs below n*, at test_break_n",
        "test_trend_beyond": "the same for the non-interpolating runs of the break_fit_beyond grid points",
        "test_slope_below": "slope of that trend (d log test loss / d log n), interpolating runs below n*",
        "test_slope_beyond": "slope of that trend, non-interpolating runs of the break_fit_beyond grid points",
        "break_fit_below": "grid points below n* whose interpolating runs the below trend is fitted to (needs two)",
        "break_fit_beyond": "grid points from n* on with every non-interpolating run converged, whose "
                            "non-interpolating runs the beyond trend is fitted to (needs two)",
    }
    for name, text in descriptions.items():
        ds[name].attrs["description"] = text
    ds.attrs.update(attrs or {})
    ds.attrs.update({
        "noise_var": float(noise_var),
        **{k: float(v) for k, v in criteria.items()},
        "n_threshold": float(n_threshold),
        "threshold_bracketed": int(threshold_bracketed(n_values, n_threshold)),
        "interpolation_monotone": int(is_monotone(points)),
    })
    return describe(ds, SWEEP_CF_ATTRS)
