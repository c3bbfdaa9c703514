"""Routing of test samples to clean vs noisy class signals: planted geometry, counts, empty groups, lazy zarr."""

import warnings

import numpy as np
import xarray as xr
from synthetic import make_activations, with_values, write_zarr

from ddscope.analyses.stats import cosine
from ddscope.analyses.routing import extract_routing
from ddscope.analyses.stats import cosine_to_class_means


def _planted(seed: int = 0, n_per_subset=(60, 30, 60), n_classes: int = 4, widths=(24, 16)):
    """Clean and noisy class signals on disjoint units; correct test probes sit near the clean mean of their
    predicted class, incorrect ones near the noisy mean of it. Logits fix the predictions."""
    acts = make_activations(n_epochs=6, n_per_subset=n_per_subset, widths=widths, n_classes=n_classes, seed=seed)
    rng = np.random.default_rng(seed + 100)
    k, n_e, n_s = n_classes, acts.sizes["epoch"], acts.sizes["sample"]
    subset = acts.subset.values
    y_true, y_assigned = acts.y_original.values, acts.y_assigned.values
    test = subset == "test"
    # predictions: the first half of the test probes right, the rest wrong (a different class), changing per epoch
    y_hat = np.tile(y_assigned, (n_e, 1))
    wrong = np.zeros((n_e, n_s), dtype=bool)
    for t in range(n_e):
        idx = np.flatnonzero(test)
        bad = rng.choice(idx, size=len(idx) // 2 - t, replace=False)
        wrong[t, bad] = True
        y_hat[t, bad] = (y_true[bad] + rng.integers(1, k, size=len(bad))) % k
    logits = np.where(np.arange(k) == y_hat[..., None], 5.0, 0.0)
    acts = with_values(acts, "logits", logits)
    for l, width in enumerate(widths, start=1):
        half = width // 2
        clean_proto = np.zeros((k, width))
        clean_proto[:, :half] = rng.uniform(0.2, 1.0, size=(k, half))
        noisy_proto = np.zeros((k, width))
        noisy_proto[:, half:] = rng.uniform(0.2, 1.0, size=(k, width - half))
        a = np.where((subset == "noisy")[None, :, None], noisy_proto[y_assigned][None], clean_proto[y_assigned][None])
        a = np.broadcast_to(a, (n_e, n_s, width)).copy()
        a[:, test] = np.where(wrong[:, test, None], noisy_proto[y_hat[:, test]], clean_proto[y_hat[:, test]])
        a = np.maximum(a + 0.05 * rng.standard_normal(a.shape), 0.0)
        acts = with_values(acts, f"act_{l}", a)
    return acts, (~wrong[:, test]).sum(axis=1)


def test_cosine_to_class_means_matches_features_cosine():
    rng = np.random.default_rng(0)
    a = np.maximum(rng.standard_normal((5, 40, 12)), 0).astype(np.float32)
    a[0, 3] = 0.0  # a zero vector: cosine 0
    means = rng.standard_normal((5, 4, 12)).astype(np.float32)
    means[1, 2] = np.nan  # a class without samples
    classes = rng.integers(0, 4, size=(5, 40))
    gathered = means[np.arange(5)[:, None], classes]
    expected = cosine(a, gathered)
    got = cosine_to_class_means(a, means, classes)
    assert got[0, 3] == 0.0
    nan = (classes == 2) & (np.arange(5) == 1)[:, None]
    assert np.isnan(got[nan]).all()
    np.testing.assert_allclose(got[~nan], expected[~nan], atol=1e-5)


def test_margin_sign_follows_planted_geometry():
    acts, n_correct = _planted()
    ds = extract_routing(acts)
    assert ds.routing.dims == ("epoch", "layer", "correctness", "reference")
    assert list(ds.layer.values) == [1, 2]
    np.testing.assert_array_equal(ds.n_correct, n_correct)
    np.testing.assert_array_equal(ds.n_correct + ds.n_incorrect, (acts.subset == "test").sum())
    assert (ds.routing_margin.sel(correctness="correct") > 0.5).all()
    assert (ds.routing_margin.sel(correctness="incorrect") < -0.5).all()
    np.testing.assert_allclose(ds.routing_margin,
                               ds.routing.sel(reference="clean") - ds.routing.sel(reference="noisy"), atol=1e-6)
    r = ds.routing.values
    assert np.isfinite(r).all() and (r >= -1 - 1e-6).all() and (r <= 1 + 1e-6).all()


def test_synthetic_run_is_bounded():
    ds = extract_routing(make_activations(n_epochs=5, widths=(12, 8, 6), seed=3))
    finite = ds.routing.values[np.isfinite(ds.routing.values)]
    assert finite.size and (np.abs(finite) <= 1 + 1e-6).all()
    assert ds.sizes["layer"] == 3


def test_empty_groups_give_nan_without_warnings():
    acts, _ = _planted(n_per_subset=(40, 0, 30))  # no noisy probes at all
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = extract_routing(acts)
    assert np.isnan(ds.routing.sel(reference="noisy")).all()
    assert np.isfinite(ds.routing.sel(reference="clean")).all()
    # all predictions right: the incorrect group is empty
    perfect = np.where(np.arange(acts.sizes["class"]) == acts.y_original.values[:, None], 5.0, 0.0)
    acts = with_values(acts, "logits", np.broadcast_to(perfect, acts.logits.shape))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = extract_routing(acts)
    assert (ds.n_incorrect == 0).all() and np.isnan(ds.routing.sel(correctness="incorrect")).all()


def test_lazy_zarr_and_netcdf(tmp_path):
    acts, _ = _planted(seed=2)
    write_zarr(acts, tmp_path / "activations.zarr")
    lazy = xr.open_zarr(tmp_path / "activations.zarr", consolidated=False)
    ds = extract_routing(lazy)
    xr.testing.assert_allclose(ds, extract_routing(acts))
    ds.to_netcdf(tmp_path / "routing.nc", engine="h5netcdf")
    back = xr.open_dataset(tmp_path / "routing.nc", engine="h5netcdf").load()
    xr.testing.assert_allclose(back, ds)
    assert list(back.reference.values) == ["clean", "noisy"]
