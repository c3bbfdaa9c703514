"""Large activation: planted huge unit, ratio floor, ridge R^2 on inputs, correlation ratio with labels."""

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from synthetic import make_activations, make_x_probe, with_values, write_zarr

from ddscope.large_activation import (DEFAULT_PARAMS, correlation_ratio,
                                      extract_large_activation, ridge_cv_r2)

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
PARAMS = dict(DEFAULT_PARAMS)
T0 = 4  # position of the epoch from which the planted unit is large


def _plant(acts, layer=2, unit=7, t0=T0, value=None):
    """Unit `unit` of `layer` gets `value` [sample] (default 100 x its usual level) from epoch position t0 on."""
    name = f"act_{layer}"
    a = acts[name].values.astype(np.float32)
    if value is None:
        value = 100.0 * a[t0:, :, unit].mean() * np.ones(a.shape[1]) + a[t0:, :, unit].mean(axis=0)
    a[t0:, :, unit] = value
    return with_values(acts, name, a)


@pytest.fixture(scope="module")
def acts():
    return make_activations(n_epochs=10, n_per_subset=(80, 40, 40), widths=(16, 12, 10), n_classes=4, seed=7)


def test_defaults_match_schema():
    schema = yaml.safe_load(SCHEMA.read_text())["properties"]["analyses"]["properties"]["large_activation"]
    assert {k: v["default"] for k, v in schema["properties"].items()} == DEFAULT_PARAMS


def test_planted_unit_is_found_with_its_onset(acts):
    ds = extract_large_activation(_plant(acts), make_x_probe(acts), PARAMS)
    epochs = acts.epoch.values
    assert ds.onset_epoch.sel(layer=2) == epochs[T0]
    assert np.isnan(ds.onset_epoch.sel(layer=[1, 3])).all()
    assert (ds.top_unit.sel(layer=2).isel(epoch=slice(T0, None)) == 7).all()
    assert (ds.ratio.sel(layer=2).isel(epoch=slice(T0, None)) >= PARAMS["ratio_threshold"]).all()
    assert (ds.ratio.sel(layer=2).isel(epoch=slice(None, T0)) < PARAMS["ratio_threshold"]).all()
    assert (ds.ratio >= 1.0).all() and np.isfinite(ds.ratio).all()
    np.testing.assert_allclose(ds.top_value, ds.unit_max.max("unit"), rtol=1e-6)
    np.testing.assert_allclose(ds.ratio, ds.top_value / ds.median_unit_max, rtol=1e-5)


def test_unit_max_is_padded_per_layer(acts):
    ds = extract_large_activation(acts, make_x_probe(acts), PARAMS)
    assert list(ds.width.values) == [16, 12, 10] and ds.sizes["unit"] == 16
    assert np.isnan(ds.unit_max.sel(layer=3).isel(unit=slice(10, None))).all()
    assert np.isfinite(ds.unit_max.sel(layer=3).isel(unit=slice(None, 10))).all()
    expected = np.abs(acts.act_2.values.astype(np.float32)).max(axis=1)
    np.testing.assert_allclose(ds.unit_max.sel(layer=2).isel(unit=slice(None, 12)), expected)


def test_ratio_stays_finite_with_dead_units(acts):
    a = acts.act_1.values.astype(np.float32)
    a[:, :, :10] = 0.0  # 10 of 16 units dead: median 0
    a[0] = 0.0  # epoch 0: the whole layer is dead
    ds = extract_large_activation(with_values(acts, "act_1", a), make_x_probe(acts), PARAMS)
    ratio = ds.ratio.sel(layer=1).values
    assert np.isfinite(ratio).all() and ratio[0] == 0.0
    np.testing.assert_allclose(ratio[1:], ds.top_value.sel(layer=1)[1:] / PARAMS["median_floor"], rtol=1e-5)


def test_ridge_r2_linear_vs_noise():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 20)) * rng.uniform(0.1, 10, size=20)  # unequal scales: standardised per fold
    linear = x @ rng.standard_normal(20) + 3.0
    noise = rng.standard_normal(300)
    r2 = ridge_cv_r2(x, np.stack([linear, noise, np.full(300, 2.5)], axis=1), alpha=1.0, n_folds=5)
    assert r2[0] > 0.99 and r2[1] < 0.05 and r2[2] == 0.0
    assert ridge_cv_r2(x, linear, alpha=1.0, n_folds=5) == pytest.approx(r2[0])


def test_ridge_dual_matches_primal():
    """D > n takes the dual (kernel) path; it must equal the primal closed form."""
    rng = np.random.default_rng(1)
    n, d, alpha, folds = 30, 50, 2.0, 3
    x, y = rng.standard_normal((n, d)), rng.standard_normal(n)
    fold = np.arange(n) % folds
    pred = np.empty(n)
    for f in range(folds):
        tr, te = fold != f, fold == f
        mu, sd = x[tr].mean(0), x[tr].std(0)
        xtr, xte = (x[tr] - mu) / sd, (x[te] - mu) / sd
        w = np.linalg.solve(xtr.T @ xtr + alpha * np.eye(d), xtr.T @ (y[tr] - y[tr].mean()))
        pred[te] = xte @ w + y[tr].mean()
    expected = 1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert ridge_cv_r2(x, y, alpha, folds) == pytest.approx(expected, rel=1e-8)


def test_correlation_ratio():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 5, size=2000)
    assert correlation_ratio(np.array([0.0, 3.0, 7.0, 1.0, -2.0])[labels], labels, 5) == pytest.approx(1.0)
    assert correlation_ratio(rng.standard_normal(2000), labels, 5) < 0.01
    assert correlation_ratio(np.full(2000, 4.2), labels, 5) == 0.0
    both = correlation_ratio(np.stack([labels * 1.0, rng.standard_normal(2000)]), labels, 5)  # broadcast
    assert both.shape == (2,) and both[0] == pytest.approx(1.0)


def test_input_r2_and_output_eta2_of_planted_unit(acts):
    x = make_x_probe(acts, dim=12)
    rng = np.random.default_rng(3)
    follows_input = 200.0 + 10.0 * (x @ rng.standard_normal(12))
    ds_in = extract_large_activation(_plant(acts, value=follows_input), x, PARAMS)
    follows_label = 200.0 + 20.0 * acts.y_assigned.values
    ds_out = extract_large_activation(_plant(acts, value=follows_label), x, PARAMS)
    pure_noise = 200.0 + 10.0 * rng.standard_normal(acts.sizes["sample"])
    ds_noise = extract_large_activation(_plant(acts, value=pure_noise), x, PARAMS)

    after = ds_in.analysed_epoch >= acts.epoch.values[T0]
    assert after.sum() >= 2 and (ds_in.analysed_top_unit.sel(layer=2)[after] == 7).all()
    assert (ds_in.input_r2.sel(layer=2)[after] > 0.95).all()
    assert (ds_out.input_r2.sel(layer=2)[after] < 0.2).all()
    assert (ds_noise.input_r2.sel(layer=2)[after] < 0.2).all()

    eta_label = ds_out.output_eta2.sel(layer=2)[after]
    assert (eta_label.sel(target="assigned") > 0.99).all()
    assert (eta_label.sel(target="original") < eta_label.sel(target="assigned")).all()  # noisy probes disagree
    assert (ds_noise.output_eta2.sel(layer=2)[after] < 0.15).all()
    eta = ds_in.output_eta2.values
    assert ((eta >= 0) & (eta <= 1)).all()
    assert ds_in.output_eta2.dims == ("analysed_epoch", "layer", "target")
    assert list(ds_in.target.values) == ["assigned", "original", "predicted"]


def test_predicted_target_uses_logits(acts):
    planted = _plant(acts, value=200.0 + 20.0 * acts.y_assigned.values)
    logits = np.zeros(acts.logits.shape, dtype=np.float32)
    logits[:, np.arange(acts.sizes["sample"]), acts.y_assigned.values] = 5.0  # predicts the assigned label
    ds = extract_large_activation(with_values(planted, "logits", logits), make_x_probe(acts), PARAMS)
    eta = ds.output_eta2.sel(layer=2)[ds.analysed_epoch >= acts.epoch.values[T0]]
    np.testing.assert_allclose(eta.sel(target="predicted"), eta.sel(target="assigned"), atol=1e-6)


def test_bad_x_probe_is_refused(acts):
    with pytest.raises(ValueError, match="x_probe"):
        extract_large_activation(acts, np.zeros((3, 4), dtype=np.float32), PARAMS)


def test_lazy_zarr_and_netcdf(acts, tmp_path):
    planted = _plant(acts)
    x = make_x_probe(acts).reshape(-1, 2, 5)  # image-like inputs are flattened
    write_zarr(planted, tmp_path / "activations.zarr")
    lazy = xr.open_zarr(tmp_path / "activations.zarr", consolidated=False)
    ds = extract_large_activation(lazy, x, {"n_epochs": 4})
    ref = extract_large_activation(planted, x, {"n_epochs": 4})
    assert ds.sizes["analysed_epoch"] == 4
    xr.testing.assert_allclose(ds, ref)
    ds.to_netcdf(tmp_path / "large_activation.nc", engine="h5netcdf")
    back = xr.open_dataset(tmp_path / "large_activation.nc", engine="h5netcdf").load()
    xr.testing.assert_allclose(back, ds)
    assert back.attrs["ratio_threshold"] == PARAMS["ratio_threshold"]


def test_probe_inputs_follow_the_store_and_refuse_another_dataset(tmp_path):
    from ddscope.analyses import probe_inputs
    from ddscope.artifacts import ArtifactError, sha256_arrays, write_h5

    acts = make_activations()
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.standard_normal((600, 5)).astype(np.float32), "y_train": np.zeros(600, np.int64),
              "x_test": rng.standard_normal((300, 5)).astype(np.float32), "y_test": np.zeros(300, np.int64)}
    sha = sha256_arrays(*arrays.values())
    write_h5(tmp_path / "dataset.h5", arrays, {"content_sha256": sha})
    x = probe_inputs(tmp_path / "dataset.h5", acts.assign_attrs(dataset_sha256=sha))
    test = acts.subset.values == "test"
    np.testing.assert_array_equal(x[test], arrays["x_test"][acts.sample.values[test]])
    np.testing.assert_array_equal(x[~test], arrays["x_train"][acts.sample.values[~test]])
    with pytest.raises(ArtifactError, match="not the dataset run r1 was trained on"):
        probe_inputs(tmp_path / "dataset.h5", acts.assign_attrs(dataset_sha256="0" * 64, run="r1"))
