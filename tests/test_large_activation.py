"""Large activation: planted huge unit, ratio floor, ridge R^2 on inputs, correlation ratio with labels."""

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from synthetic import make_activations, make_x_probe, with_values, write_zarr

from ddscope.analyses.large_activation import (DEFAULT_PARAMS, LOCATED, correlation_ratio, extract_large_activation,
                                               locate_large_activation, ridge_cv_r2, shallow_half, summary_columns,
                                               typical_units)

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
    assert list(ds.layer_width.values) == [16, 12, 10] and ds.sizes["unit"] == 16
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


def test_output_r2_is_the_input_side_estimator_on_the_label_and_typical_units_are_the_control(acts):
    """output_r2 is a cross-validated ridge R² like input_r2 (so the two compare like with like); the typical units
    are the ones ranked nearest the median, and are never the planted top unit."""
    x = make_x_probe(acts, dim=12)
    follows_label = 200.0 + 20.0 * acts.y_assigned.values
    ds = extract_large_activation(_plant(acts, value=follows_label), x, PARAMS)
    rng = np.random.default_rng(3)
    ds_in = extract_large_activation(_plant(acts, value=200.0 + 10.0 * (x @ rng.standard_normal(12))), x, PARAMS)
    after = ds.analysed_epoch >= acts.epoch.values[T0]
    assert (ds.output_r2.sel(layer=2, target="assigned")[after] > 0.95).all()
    assert (ds_in.output_r2.sel(layer=2)[after].max("target") < 0.3).all()
    assert ds.typical_input_r2.dims == ("analysed_epoch", "layer")
    assert ds.typical_output_r2.dims == ("analysed_epoch", "layer", "target")
    assert np.isfinite(ds.typical_input_r2).all() and (ds.typical_output_r2 <= 1).all()
    um = np.array([[3.0, 1.0, 2.0, 9.0, 5.0]])
    assert sorted(typical_units(um, 2)[0]) == [0, 2]  # ranks 1..2 of 0..4 (median rank 2): values 2, 3
    loc = locate_large_activation(ds)  # the shallow half's top unit (layer 1 here), its control beside it
    assert all(np.isfinite(loc[k]) for k in ("large_output_r2", "large_typical_input_r2", "large_typical_output_r2"))


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


# --- the verdicts' quantities: trained epochs, shallow half (summary_columns) ----------------------------


@pytest.mark.parametrize("n_layers, n_shallow", [(1, 1), (2, 1), (3, 2), (4, 2), (6, 3)])
def test_shallow_half(n_layers, n_shallow):
    """The paper's MLP3/5/7 (2/4/6 hidden layers): layers 1, 1-2, 1-3; an odd depth keeps its middle layer."""
    assert shallow_half(n_layers) == n_shallow


def _set(acts, layer, unit, positions, value):
    """Unit `unit` of `layer` takes `value` [sample] at the epoch positions `positions`."""
    name = f"act_{layer}"
    a = acts[name].values.astype(np.float32)
    a[positions, :, unit] = value
    return with_values(acts, name, a)


@pytest.fixture(scope="module")
def acts4():
    """Four hidden layers: shallow half 1-2, deep half 3-4."""
    return make_activations(n_epochs=10, n_per_subset=(80, 40, 40), widths=(16, 12, 10, 10), n_classes=4, seed=11)


def test_initialisation_never_decides_and_the_shallow_unit_is_tested(acts4):
    """The issue's case: the largest ratio of any layer is a deep layer's at epoch 0; over trained epochs the
    large unit is in layer 1 and follows the input. Columns report the trained shallow unit, init beside it."""
    x = make_x_probe(acts4, dim=12)
    follows_input = 200.0 + 10.0 * (x @ np.random.default_rng(4).standard_normal(12))
    planted = _set(acts4, 4, 3, [0], 1000.0)  # deep layer, initialisation only
    planted = _set(planted, 1, 5, slice(T0, None), follows_input)
    ds = extract_large_activation(planted, x, PARAMS)
    assert int(ds.ratio.max("epoch").idxmax("layer")) == 4 and ds.ratio.sel(epoch=0, layer=4) > 100  # at init

    cols = summary_columns(ds, {})
    trained = ds.ratio.sel(epoch=ds.epoch > 0)
    for layer in (1, 2, 3, 4):
        assert cols[f"ratio_max_l{layer}"] == pytest.approx(float(trained.sel(layer=layer).max()))
    assert cols["ratio_max_last"] == cols["ratio_max_l4"] < PARAMS["ratio_threshold"]  # trained: ordinary
    assert cols["large_layer"] == 1 and cols["large_ratio"] == cols["ratio_max_l1"] > 10 * PARAMS["ratio_threshold"]
    assert cols["large_epoch"] >= acts4.epoch.values[T0]
    assert cols["large_ratio_init"] == pytest.approx(float(ds.ratio.sel(epoch=0, layer=1)))
    assert cols["large_ratio_init"] < PARAMS["ratio_threshold"]
    assert cols["large_deep_layer"] in (3, 4) and cols["large_deep_ratio"] < PARAMS["ratio_threshold"]
    assert cols["large_second_to_top"] < 0.05  # one unit dwarfs the rest
    assert cols["large_analysed_epoch"] > 0 and cols["large_same_unit"] == 1.0
    assert cols["large_input_r2"] > 0.95 and cols["large_output_eta2"] < 0.2
    assert set(LOCATED) <= set(cols) and all(isinstance(v, float) for v in cols.values())


def test_a_larger_deep_unit_is_reported_beside_the_shallow_one(acts4):
    x = make_x_probe(acts4, dim=12)
    planted = _set(acts4, 2, 1, slice(T0, None), 50.0 + 0.1 * acts4.y_assigned.values)
    planted = _set(planted, 3, 2, slice(T0, None), 5000.0 + 10.0 * acts4.y_assigned.values)  # follows the labels
    cols = summary_columns(extract_large_activation(planted, x, PARAMS), {})
    assert cols["large_layer"] == 2 and cols["large_deep_layer"] == 3
    assert cols["large_deep_ratio"] > 50 * cols["large_ratio"] > 0
    assert cols["large_output_eta2"] > 0.9  # the shallow unit's own test, not the deep unit's


def test_the_analysed_epoch_nearest_the_peak_is_used_never_initialisation(acts4):
    x = make_x_probe(acts4, dim=12)
    epochs = acts4.epoch.values
    for position in (1, 6):  # epoch 1: nearer to analysed epoch 0 than to some later ones
        ds = extract_large_activation(_set(acts4, 2, 4, [position], 500.0), x, {"n_epochs": 4})
        cols = summary_columns(ds, {})
        analysed = ds.analysed_epoch.values
        assert analysed[0] == 0 and cols["large_layer"] == 2 and cols["large_epoch"] == epochs[position]
        later = analysed[analysed > 0]
        expected = later[np.argmin(np.abs(np.log1p(later) - np.log1p(epochs[position])))]
        assert cols["large_analysed_epoch"] == expected
        at = ds.sel(analysed_epoch=expected, layer=2)
        assert cols["large_input_r2"] == pytest.approx(float(at.input_r2))
        assert cols["large_same_unit"] == float(at.analysed_top_unit == 4)


def test_two_equal_units_are_not_a_single_large_activation(acts4):
    x = make_x_probe(acts4, dim=12)
    planted = _set(_set(acts4, 1, 2, slice(T0, None), 300.0), 1, 9, slice(T0, None), 300.0)
    cols = summary_columns(extract_large_activation(planted, x, PARAMS), {})
    assert cols["large_layer"] == 1 and cols["large_second_to_top"] == pytest.approx(1.0, abs=1e-3)


def test_missing_data_gives_nan_columns(acts4):
    x = make_x_probe(acts4, dim=12)
    init_only = summary_columns(extract_large_activation(acts4.isel(epoch=[0]), x, PARAMS), {})
    assert all(np.isnan(init_only[c]) for c in LOCATED)
    assert np.isnan([v for k, v in init_only.items() if k.startswith("ratio_max_")]).all()

    no_init = summary_columns(extract_large_activation(acts4.isel(epoch=slice(1, None)), x, PARAMS), {})
    assert np.isnan(no_init["large_ratio_init"]) and np.isfinite(no_init["large_ratio"])

    ds = extract_large_activation(acts4, x, PARAMS)
    shallow_nan = summary_columns(ds.assign(ratio=ds.ratio.where(ds.layer > 2)), {})
    assert np.isnan(shallow_nan["large_layer"]) and np.isnan(shallow_nan["large_input_r2"])
    assert np.isfinite(shallow_nan["large_deep_ratio"])  # the deep half is still reported
    one_layer = summary_columns(ds.sel(layer=[1]), {})
    assert one_layer["large_layer"] == 1 and np.isnan(one_layer["large_deep_layer"])


def test_probe_inputs_follow_the_store_and_refuse_another_dataset(tmp_path):
    from ddscope.analyses.compute import probe_inputs
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
