"""Cosine of clean vs noisy class means: bounds, identity, invariances, empty sets, lazy zarr input; the summary
columns, final values and trends over epochs from the end of phase 1."""

import warnings

import numpy as np
import pytest
import xarray as xr
from synthetic import make_activations, with_values, write_zarr

from ddscope.analyses.activations import layer_numbers
from ddscope.analyses.separation import extract_separation, summary_columns
from ddscope.analyses.stats import trend_start_epoch


def _label_driven(acts, label: str, seed: int = 0):
    """Every train probe's activations = a prototype of its `label` (times a per-epoch scale)."""
    rng = np.random.default_rng(seed)
    k = acts.attrs["n_classes"]
    y = acts[label].values
    for layer in layer_numbers(acts):
        name = f"act_{layer}"
        n_e, _, width = acts[name].shape
        proto = rng.uniform(0.1, 1.0, size=(k, width))
        scale = np.linspace(0.5, 2.0, n_e)[:, None, None]
        acts = with_values(acts, name, scale * proto[y][None])
    return acts


def test_shape_coords_and_bounds():
    acts = make_activations(n_epochs=6, widths=(16, 12, 8), n_classes=4, seed=1)
    ds = extract_separation(acts)
    assert ds.cos_clean_noisy.dims == ("epoch", "layer", "class", "label_kind")
    assert list(ds.layer.values) == [1, 2, 3] and list(ds.label_kind.values) == ["assigned", "original"]
    np.testing.assert_array_equal(ds.epoch, acts.epoch)
    cos = ds.cos_clean_noisy.values
    assert np.isfinite(cos).all() and (cos >= -1 - 1e-6).all() and (cos <= 1 + 1e-6).all()
    np.testing.assert_allclose(ds.separation_mean, ds.cos_clean_noisy.sel(label_kind="assigned").mean("class"),
                               rtol=1e-6)
    assert ds.n_clean.sum() == (acts.subset == "clean").sum() and (ds.n_noisy.sum("class") == 24).all()


def test_cosine_is_one_when_class_means_coincide():
    acts = make_activations(n_epochs=5, widths=(10, 6), n_classes=3, seed=2)
    by_assigned = extract_separation(_label_driven(acts, "y_assigned"))
    np.testing.assert_allclose(by_assigned.cos_clean_noisy.sel(label_kind="assigned"), 1.0, atol=1e-3)
    np.testing.assert_allclose(by_assigned.separation_mean, 1.0, atol=1e-3)
    assert (by_assigned.cos_clean_noisy.sel(label_kind="original") < 0.999).any()
    by_original = extract_separation(_label_driven(acts, "y_original"))
    np.testing.assert_allclose(by_original.cos_clean_noisy.sel(label_kind="original"), 1.0, atol=1e-3)


def test_invariant_to_scaling_noisy_activations():
    acts = make_activations(n_epochs=4, widths=(12,), n_classes=3, seed=3)
    noisy = (acts.subset == "noisy").values
    a = acts.act_1.values.astype(np.float32)
    a[:, noisy] *= 4.0
    scaled = extract_separation(with_values(acts, "act_1", a))
    np.testing.assert_allclose(scaled.cos_clean_noisy, extract_separation(acts).cos_clean_noisy, atol=2e-3)


def test_noisy_probes_move_from_original_to_assigned():
    # synthetic memorisation: noisy probes follow their original label at init, their assigned label at the end
    ds = extract_separation(make_activations(n_epochs=8, n_per_subset=60, widths=(32,), n_classes=4, noise=0.1))
    first, last = ds.cos_clean_noisy.isel(epoch=0, layer=0), ds.cos_clean_noisy.isel(epoch=-1, layer=0)
    assert (first.sel(label_kind="original") > first.sel(label_kind="assigned")).all()
    assert (last.sel(label_kind="assigned") > last.sel(label_kind="original")).all()


def test_empty_noisy_set_gives_nan_without_warnings():
    acts = make_activations(n_per_subset=(20, 0, 20), widths=(8, 8), seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = extract_separation(acts)
    assert np.isnan(ds.cos_clean_noisy).all() and np.isnan(ds.separation_mean).all()
    assert (ds.n_noisy == 0).all()


def test_class_without_noisy_probes_is_nan_only_there():
    acts = make_activations(n_epochs=3, widths=(8,), n_classes=3, seed=5)
    noisy = (acts.subset == "noisy").values
    y = acts.y_assigned.values.copy()
    y[noisy & (y == 2)] = 0  # no noisy probe is assigned class 2 any more
    acts = acts.assign_coords(y_assigned=("sample", y))
    cos = extract_separation(acts).cos_clean_noisy.sel(label_kind="assigned")
    assert np.isnan(cos.sel({"class": 2})).all() and np.isfinite(cos.sel({"class": [0, 1]})).all()


def test_lazy_zarr_gives_the_same_and_writes_netcdf(tmp_path):
    acts = make_activations(n_epochs=5, widths=(8, 6), seed=6)
    write_zarr(acts, tmp_path / "activations.zarr")
    lazy = xr.open_zarr(tmp_path / "activations.zarr", consolidated=False)
    ds = extract_separation(lazy)
    np.testing.assert_allclose(ds.cos_clean_noisy, extract_separation(acts).cos_clean_noisy, atol=1e-6)
    ds.to_netcdf(tmp_path / "separation.nc", engine="h5netcdf")
    back = xr.open_dataset(tmp_path / "separation.nc", engine="h5netcdf").load()
    np.testing.assert_allclose(back.cos_clean_noisy, ds.cos_clean_noisy)
    assert list(back.label_kind.values) == ["assigned", "original"]


def phases(phase1_end=np.nan, t_fit_clean=np.nan) -> xr.Dataset:
    """The part of a run's double_descent dataset that the trends read."""
    return xr.Dataset({"phase1_end": ((), float(phase1_end)), "t_fit_clean": ((), float(t_fit_clean))})


def test_trend_start_epoch_is_the_recorded_epoch_nearest_the_end_of_phase_1():
    epochs = [0, 1, 2, 3, 5, 9, 16, 30]
    assert trend_start_epoch(epochs, phases(phase1_end=12.0, t_fit_clean=2.0)) == 9.0  # the nearest
    assert trend_start_epoch(epochs, phases(phase1_end=4.0)) == 3.0  # a tie goes to the earlier epoch
    assert trend_start_epoch(epochs, phases(phase1_end=500.0)) == 30.0
    assert trend_start_epoch(epochs, phases(t_fit_clean=17.0)) == 16.0  # phase 1 undefined: clean fitted
    assert trend_start_epoch(epochs, phases()) == 1.0  # neither: the first trained epoch
    assert trend_start_epoch(epochs, None) == 1.0 and trend_start_epoch([0], None) == 0.0


def test_summary_columns_trend_per_layer_for_both_label_kinds():
    # synthetic memorisation: noisy probes move from their original class's prototype to their assigned one's
    ds = extract_separation(make_activations(n_epochs=8, n_per_subset=60, widths=(32, 16), n_classes=4, noise=0.1))
    start = float(ds.epoch.values[3])
    cols = summary_columns(ds, {"double_descent": phases(phase1_end=start)})
    assert cols["separation_trend_start"] == start
    for layer, key in ((1, "l1"), (2, "l2"), (2, "last")):
        mean = ds.separation_mean.sel(layer=layer)
        assert cols[f"separation_final_{key}"] == pytest.approx(float(mean.isel(epoch=-1)))
        assert cols[f"separation_trend_{key}"] == pytest.approx(float(mean.isel(epoch=-1) - mean.sel(epoch=start)))
        original = ds.cos_clean_noisy.sel(layer=layer, label_kind="original").mean("class")
        assert cols[f"separation_trend_original_{key}"] == pytest.approx(
            float(original.isel(epoch=-1) - original.sel(epoch=start)), abs=1e-6)
        # joining their assigned class brings the noisy probes closer to it, away from their original class
        assert cols[f"separation_trend_{key}"] > 0 > cols[f"separation_trend_original_{key}"]
    first_minus_last = cols["separation_final_l1"] - cols["separation_final_l2"]
    assert cols["separation_first_minus_last"] == pytest.approx(first_minus_last)


def test_summary_columns_without_noisy_probes_are_nan():
    ds = extract_separation(make_activations(n_per_subset=(20, 0, 20), widths=(8, 8), seed=4))
    cols = summary_columns(ds, {"double_descent": phases(phase1_end=3.0)})
    assert all(np.isnan(v) for k, v in cols.items() if k != "separation_trend_start")
