"""Epoch-wise double descent from learning curves: known dips, monotone curves, flags, NetCDF output."""

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from synthetic import make_curves

from ddscope.double_descent import DEFAULT_PARAMS, dip_and_peak, extract_double_descent, moving_average

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
PARAMS = dict(DEFAULT_PARAMS)
SCALARS = ["dd_depth", "dd_recovery", "epochwise_double_descent", "t_fit_clean", "t_fit_noisy", "benign_overfitting",
           "test_error_min_epoch", "test_error_min", "test_error_peak_epoch", "test_error_peak", "test_error_final",
           "test_loss_min_epoch", "test_loss_min", "test_loss_peak_epoch", "test_loss_peak", "test_loss_final",
           "phase1_end", "phase2_end"]


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
    assert set(SCALARS) <= set(ds.data_vars)
    assert ds.test_error_min_epoch == pytest.approx(20, abs=window)
    assert ds.test_error_min == pytest.approx(0.30, abs=0.01)
    assert ds.test_error_peak_epoch == pytest.approx(80, abs=window)
    assert ds.test_error_peak == pytest.approx(0.45, abs=0.01)
    assert ds.test_error_final == pytest.approx(0.35, abs=0.01)
    assert ds.dd_depth == pytest.approx(0.15, abs=0.02)
    assert ds.dd_recovery == pytest.approx(0.10, abs=0.02)
    assert bool(ds.epochwise_double_descent)
    # the loss has the same shape here (3 x error)
    assert ds.test_loss_min_epoch == ds.test_error_min_epoch and ds.test_loss_peak_epoch == ds.test_error_peak_epoch
    # phases follow the dip and the peak; the fit epochs come from the raw train curves
    assert ds.phase1_end == ds.test_error_min_epoch and ds.phase2_end == ds.test_error_peak_epoch
    assert ds.t_fit_clean == pytest.approx(15, abs=1) and ds.t_fit_noisy == pytest.approx(100, abs=1)
    assert ds.test_error_smooth.dims == ("epoch",) and ds.test_error_smooth.sizes["epoch"] == 151
    assert ds.attrs["smooth_window"] == window and ds.attrs["min_depth"] == PARAMS["min_depth"]


def test_benign_needs_noisy_fit_and_recovery():
    # final 0.35 vs minimum 0.30: benign only with a tolerance that covers the gap
    assert not bool(extract_double_descent(make_curves(), PARAMS).benign_overfitting)
    assert bool(extract_double_descent(make_curves(), {**PARAMS, "benign_tolerance": 0.06}).benign_overfitting)
    full_recovery = make_curves(test_error=((0, 0.9), (20, 0.3), (80, 0.45), (150, 0.3)))
    ds = extract_double_descent(full_recovery, PARAMS)
    assert bool(ds.benign_overfitting) and bool(ds.epochwise_double_descent)
    never_fitted = extract_double_descent(make_curves(test_error=((0, 0.9), (20, 0.3), (80, 0.45), (150, 0.3)),
                                                      fit_noisy_epoch=None), PARAMS)
    assert np.isnan(never_fitted.t_fit_noisy) and not bool(never_fitted.benign_overfitting)
    assert np.isnan(extract_double_descent(make_curves(fit_clean_epoch=None, fit_noisy_epoch=None), PARAMS).t_fit_clean)


def test_monotone_curve_is_not_double_descent():
    ds = extract_double_descent(make_curves(test_error=((0, 0.9), (30, 0.4), (150, 0.3))), PARAMS)
    assert not bool(ds.epochwise_double_descent)
    assert ds.dd_depth == pytest.approx(0.0, abs=1e-9)
    assert ds.test_error_min_epoch == 150 and ds.test_error_min == pytest.approx(0.3, abs=0.005)
    assert np.isnan(ds.phase1_end) and np.isnan(ds.phase2_end)
    # small evaluation noise on a monotone curve stays below min_depth after smoothing
    noisy = extract_double_descent(make_curves(test_error=((0, 0.9), (30, 0.4), (150, 0.3)), noise=0.003), PARAMS)
    assert not bool(noisy.epochwise_double_descent)
    assert noisy.test_error_min == pytest.approx(0.3, abs=0.005) and noisy.test_error_min_epoch > 120
    assert bool(noisy.benign_overfitting)  # noisy fitted, final error at the (global) minimum


def test_rise_without_recovery_is_not_double_descent():
    ds = extract_double_descent(make_curves(test_error=((0, 0.9), (20, 0.3), (150, 0.45))), PARAMS)
    assert ds.dd_depth > 0.1 and ds.dd_recovery == pytest.approx(0.0, abs=1e-6)
    assert not bool(ds.epochwise_double_descent)


def test_noisy_sparse_evaluations():
    epochs = np.arange(0, 301, 3)  # eval_every = 3, epochs in the coordinate
    knots = ((0, 0.9), (40, 0.3), (160, 0.45), (300, 0.35))
    ds = extract_double_descent(make_curves(epochs=epochs, test_error=knots, fit_noisy_epoch=200, noise=0.01, seed=3),
                                PARAMS)
    assert bool(ds.epochwise_double_descent)
    assert ds.test_error_min_epoch == pytest.approx(40, abs=15)
    assert ds.test_error_peak_epoch == pytest.approx(160, abs=20)
    assert ds.test_error_peak == pytest.approx(0.45, abs=0.02)
    assert float(ds.t_fit_noisy) in set(epochs.tolist())


def test_writes_netcdf(tmp_path):
    ds = extract_double_descent(make_curves(), PARAMS)
    ds.to_netcdf(tmp_path / "dd.nc", engine="h5netcdf")
    back = xr.open_dataset(tmp_path / "dd.nc", engine="h5netcdf").load()
    assert back.epochwise_double_descent.dtype == bool and bool(back.epochwise_double_descent)
    np.testing.assert_allclose(back.test_error_smooth, ds.test_error_smooth)
    assert back.attrs["fit_accuracy"] == PARAMS["fit_accuracy"]
