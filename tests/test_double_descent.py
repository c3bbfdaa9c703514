"""Epoch-wise double descent from learning curves: known dips, monotone curves, flags, NetCDF output."""

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from synthetic import make_curves

from ddscope.analyses.double_descent import (DEFAULT_PARAMS, dip_and_peak, extract_double_descent, moving_average,
                                             summary_columns)

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
PARAMS = dict(DEFAULT_PARAMS)
SCALARS = ["dd_depth", "dd_recovery", "test_loss_depth", "test_loss_recovery",
           "double_descent_test_error", "double_descent_test_loss", "t_fit_clean", "t_fit_noisy",
           "test_error_fall_after_fit", "regeneralises_after_fit", "benign_overfitting",
           "test_error_min_epoch", "test_error_min", "test_error_peak_epoch", "test_error_peak", "test_error_final",
           "test_loss_min_epoch", "test_loss_min", "test_loss_peak_epoch", "test_loss_peak", "test_loss_final",
           "phase1_end", "phase2_end"]


def with_test_loss(curves: xr.Dataset, knots) -> xr.Dataset:
    """A copy of `curves` whose test loss is piecewise linear through the (epoch, loss) knots."""
    knots = np.asarray(knots, dtype=np.float64)
    loss = curves["loss"].copy()
    loss.loc[{"split": "test"}] = np.interp(curves["epoch"].values, knots[:, 0], knots[:, 1])
    return curves.assign(loss=loss)


def test_defaults_match_schema():
    schema = yaml.safe_load(SCHEMA.read_text())["properties"]["analyses"]["properties"]["double_descent"]
    assert {k: v["default"] for k, v in schema["properties"].items()} == DEFAULT_PARAMS


def test_moving_average_keeps_level_at_edges():
    y = np.full(11, 0.4)
    np.testing.assert_allclose(moving_average(y, 5), 0.4)
    np.testing.assert_allclose(moving_average(np.arange(7.0), 1), np.arange(7.0))
    s = moving_average(np.arange(10.0), 4)  # even window: i-1 .. i+2
    assert s[0] == pytest.approx(1.0) and s[-1] == pytest.approx(8.5)
    with_gap = moving_average(np.array([1.0, np.nan, 3.0]), 3)
    np.testing.assert_allclose(with_gap, [1.0, 2.0, 3.0])


def test_dip_and_peak_picks_largest_rise():
    s = np.array([0.9, 0.5, 0.55, 0.4, 0.6, 0.5, 0.45])
    assert dip_and_peak(s) == (3, 4)
    assert dip_and_peak(np.linspace(1, 0, 5)) == (4, 4)  # monotone: min = peak = last
    assert dip_and_peak(np.full(3, np.nan)) == (-1, -1)
    # a rise below min_rise is a wiggle: the minimum is then the global one
    wiggle = np.array([0.9, 0.5, 0.505, 0.4, 0.41, 0.3, 0.302, 0.301])
    assert dip_and_peak(wiggle) == (3, 4)
    assert dip_and_peak(wiggle, min_rise=0.05) == (5, 6)


def test_known_dip_is_found():
    window = PARAMS["smooth_window"]
    ds = extract_double_descent(make_curves(), PARAMS)  # 0.9 -> 0.3 @20 -> 0.45 @80 -> 0.35 @150
    assert set(SCALARS) <= set(ds.data_vars) and all(ds[name].ndim == 0 for name in SCALARS)
    assert ds.test_error_min_epoch == pytest.approx(20, abs=window)
    assert ds.test_error_min == pytest.approx(0.30, abs=0.01)
    assert ds.test_error_peak_epoch == pytest.approx(80, abs=window)
    assert ds.test_error_peak == pytest.approx(0.45, abs=0.01)
    assert ds.test_error_final == pytest.approx(0.35, abs=0.01)
    assert ds.dd_depth == pytest.approx(0.15, abs=0.02)
    assert ds.dd_recovery == pytest.approx(0.10, abs=0.02)
    assert bool(ds.double_descent_test_error)
    # the loss has the same shape here (3 x error): same epochs, 3 x the rise and fall, flagged too
    assert ds.test_loss_min_epoch == ds.test_error_min_epoch and ds.test_loss_peak_epoch == ds.test_error_peak_epoch
    assert float(ds.test_loss_depth) == pytest.approx(3 * float(ds.dd_depth), rel=1e-4)
    assert float(ds.test_loss_recovery) == pytest.approx(3 * float(ds.dd_recovery), rel=1e-4)
    assert bool(ds.double_descent_test_loss)
    # phase 1 ends at the dip, phase 2 when the noisy labels are fitted (not at the peak)
    assert ds.t_fit_clean == pytest.approx(15, abs=1) and ds.t_fit_noisy == pytest.approx(100, abs=1)
    assert ds.phase1_end == ds.test_error_min_epoch and ds.phase2_end == ds.t_fit_noisy
    assert ds.test_error_smooth.dims == ("epoch",) and ds.test_error_smooth.sizes["epoch"] == 151
    assert ds.attrs["smooth_window"] == window and ds.attrs["min_depth"] == PARAMS["min_depth"]
    assert ds.attrs["min_depth_loss"] == PARAMS["min_depth_loss"]


def test_loss_and_error_flags_are_independent():
    """The paper's curve (test loss) and ddscope's (test error) can disagree; each flag follows its own curve."""
    monotone_error = make_curves(test_error=((0, 0.9), (30, 0.4), (150, 0.3)))
    loss_bump = with_test_loss(monotone_error, ((0, 2.3), (20, 1.0), (90, 12.0), (150, 8.0)))
    ds = extract_double_descent(loss_bump, PARAMS)
    assert bool(ds.double_descent_test_loss) and not bool(ds.double_descent_test_error)
    assert ds.test_loss_min == pytest.approx(1.0, abs=0.15) and ds.test_loss_peak == pytest.approx(12.0, abs=0.3)
    assert ds.test_loss_recovery == pytest.approx(4.0, abs=0.3)
    # a loss that rises monotonically (the default study's mlp3) has no double descent, the error bump does
    rising_loss = with_test_loss(make_curves(), ((0, 2.3), (20, 1.0), (150, 14.0)))
    ds = extract_double_descent(rising_loss, PARAMS)
    assert not bool(ds.double_descent_test_loss) and bool(ds.double_descent_test_error)
    assert ds.test_loss_recovery == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
def test_loss_threshold_is_relative(scale):
    """min_depth_loss is a fraction of the loss's own level: rescaling the loss changes no flag."""
    base = make_curves(test_error=((0, 0.9), (30, 0.4), (150, 0.3)))
    for bump, expected in ((0.10, True), (0.03, False)):  # peak and fall back as fractions of the levels
        knots = ((0, 2.0 * scale), (20, scale), (80, (1 + bump) * scale), (150, scale))
        ds = extract_double_descent(with_test_loss(base, knots), PARAMS)
        assert bool(ds.double_descent_test_loss) is expected, (scale, bump)
        ratio = float(ds.test_loss_depth / ds.test_loss_min)  # a rise below the threshold counts as a wiggle: 0
        assert ratio == pytest.approx(bump, abs=0.01) if expected else ratio < PARAMS["min_depth_loss"]


def test_returns_to_first_minimum_needs_noisy_fit_and_full_recovery():
    # final 0.35 vs minimum 0.30: returns only with a tolerance that covers the gap
    assert not bool(extract_double_descent(make_curves(), PARAMS).benign_overfitting)
    assert bool(extract_double_descent(make_curves(), {**PARAMS, "benign_tolerance": 0.06}).benign_overfitting)
    full_recovery = make_curves(test_error=((0, 0.9), (20, 0.3), (80, 0.45), (150, 0.3)))
    ds = extract_double_descent(full_recovery, PARAMS)
    assert bool(ds.benign_overfitting) and bool(ds.double_descent_test_error)
    never_fitted = extract_double_descent(make_curves(test_error=((0, 0.9), (20, 0.3), (80, 0.45), (150, 0.3)),
                                                      fit_noisy_epoch=None), PARAMS)
    assert np.isnan(never_fitted.t_fit_noisy) and np.isnan(never_fitted.test_error_fall_after_fit)
    assert not bool(never_fitted.benign_overfitting) and not bool(never_fitted.regeneralises_after_fit)
    assert np.isnan(extract_double_descent(make_curves(fit_clean_epoch=None, fit_noisy_epoch=None), PARAMS).t_fit_clean)


def test_regeneralises_after_fit_is_the_fall_after_the_noise_is_fitted():
    # noise fitted at 100 (error ~0.42 there), final 0.35: it improves after the fit without reaching the minimum
    ds = extract_double_descent(make_curves(), PARAMS)
    assert ds.test_error_fall_after_fit == pytest.approx(0.45 - 20 / 70 * 0.1 - 0.35, abs=0.01)
    assert bool(ds.regeneralises_after_fit) and not bool(ds.benign_overfitting)
    # the fall is measured from the highest point after the fit, so a later peak counts
    late_fit = extract_double_descent(make_curves(fit_noisy_epoch=60), PARAMS)
    assert float(late_fit.test_error_fall_after_fit) == pytest.approx(float(late_fit.dd_recovery), abs=1e-9)
    # recovered before the noise was fitted: double descent, but no improvement after the fit
    early_fall = make_curves(test_error=((0, 0.9), (20, 0.3), (80, 0.45), (110, 0.35), (150, 0.35)),
                             fit_noisy_epoch=130)
    ds = extract_double_descent(early_fall, PARAMS)
    assert bool(ds.double_descent_test_error) and not bool(ds.regeneralises_after_fit)
    assert ds.test_error_fall_after_fit == pytest.approx(0.0, abs=1e-6)
    # fitted at the last epoch: nothing comes after
    at_end = extract_double_descent(make_curves(fit_noisy_epoch=150), PARAMS)
    assert at_end.t_fit_noisy >= 149 and not bool(at_end.regeneralises_after_fit)


def test_phases_exist_without_double_descent():
    """phase1_end is the first test-error minimum of every run; phase2_end the noisy fit, when it comes later."""
    rise = extract_double_descent(make_curves(test_error=((0, 0.9), (20, 0.3), (150, 0.45))), PARAMS)
    assert not bool(rise.double_descent_test_error)
    assert rise.phase1_end == pytest.approx(20, abs=PARAMS["smooth_window"]) and rise.phase2_end == rise.t_fit_noisy
    never_fitted = extract_double_descent(make_curves(fit_noisy_epoch=None), PARAMS)
    assert np.isfinite(never_fitted.phase1_end) and np.isnan(never_fitted.phase2_end)
    # noise fitted (100) before the test error stops falling (150): no phase 2
    monotone = extract_double_descent(make_curves(test_error=((0, 0.9), (30, 0.4), (150, 0.3))), PARAMS)
    assert monotone.phase1_end == 150 and np.isnan(monotone.phase2_end)


def test_monotone_curve_is_not_double_descent():
    ds = extract_double_descent(make_curves(test_error=((0, 0.9), (30, 0.4), (150, 0.3))), PARAMS)
    assert not bool(ds.double_descent_test_error) and not bool(ds.double_descent_test_loss)
    assert ds.dd_depth == pytest.approx(0.0, abs=1e-9)
    assert ds.test_error_min_epoch == 150 and ds.test_error_min == pytest.approx(0.3, abs=0.005)
    # small evaluation noise on a monotone curve stays below min_depth after smoothing
    noisy = extract_double_descent(make_curves(test_error=((0, 0.9), (30, 0.4), (150, 0.3)), noise=0.003), PARAMS)
    assert not bool(noisy.double_descent_test_error) and not bool(noisy.double_descent_test_loss)
    assert noisy.test_error_min == pytest.approx(0.3, abs=0.005) and noisy.test_error_min_epoch > 120
    assert bool(noisy.benign_overfitting)  # noisy fitted, final error at the (global) minimum
    # it falls after the fit (0.34 -> 0.30), but it was falling all along: no phase 2, no re-generalisation
    assert noisy.test_error_fall_after_fit > PARAMS["min_depth"] and np.isnan(noisy.phase2_end)
    assert not bool(noisy.regeneralises_after_fit)


def test_rise_without_recovery_is_not_double_descent():
    ds = extract_double_descent(make_curves(test_error=((0, 0.9), (20, 0.3), (150, 0.45))), PARAMS)
    assert ds.dd_depth > 0.1 and ds.dd_recovery == pytest.approx(0.0, abs=1e-6)
    assert not bool(ds.double_descent_test_error) and not bool(ds.double_descent_test_loss)


def test_all_nan_curves_give_nan_and_no_flags():
    curves = make_curves()
    curves = curves.assign(accuracy=curves.accuracy.where(curves.split != "test"),
                           loss=curves.loss.where(curves.split != "test"))
    ds = extract_double_descent(curves, PARAMS)
    assert all(np.isnan(ds[name]) for name in ("dd_depth", "test_loss_recovery", "phase1_end", "phase2_end",
                                               "test_error_fall_after_fit"))
    assert not any(bool(ds[name]) for name in ("double_descent_test_error", "double_descent_test_loss",
                                               "regeneralises_after_fit", "benign_overfitting"))


def test_noisy_sparse_evaluations():
    epochs = np.arange(0, 301, 3)  # eval_every = 3, epochs in the coordinate
    knots = ((0, 0.9), (40, 0.3), (160, 0.45), (300, 0.35))
    ds = extract_double_descent(make_curves(epochs=epochs, test_error=knots, fit_noisy_epoch=200, noise=0.01, seed=3),
                                PARAMS)
    assert bool(ds.double_descent_test_error) and bool(ds.double_descent_test_loss)
    assert ds.test_error_min_epoch == pytest.approx(40, abs=15)
    assert ds.test_error_peak_epoch == pytest.approx(160, abs=20)
    assert ds.test_error_peak == pytest.approx(0.45, abs=0.02)
    assert float(ds.t_fit_noisy) in set(epochs.tolist()) and ds.phase2_end == ds.t_fit_noisy


def test_summary_columns_are_the_scalars():
    ds = extract_double_descent(make_curves(), PARAMS)
    columns = summary_columns(ds, {})
    assert set(columns) == set(SCALARS) and "test_error_smooth" not in columns
    assert columns["double_descent_test_loss"] == 1.0 and columns["benign_overfitting"] == 0.0


def test_writes_netcdf(tmp_path):
    ds = extract_double_descent(make_curves(), PARAMS)
    ds.to_netcdf(tmp_path / "dd.nc", engine="h5netcdf")
    back = xr.open_dataset(tmp_path / "dd.nc", engine="h5netcdf").load()
    assert back.double_descent_test_loss.dtype == bool and bool(back.double_descent_test_loss)
    np.testing.assert_allclose(back.test_error_smooth, ds.test_error_smooth)
    assert back.attrs["fit_accuracy"] == PARAMS["fit_accuracy"]
