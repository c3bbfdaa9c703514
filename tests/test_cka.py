"""Linear CKA: properties of the estimator, all-pairs vs pairwise reference, degenerate layers, extract_cka."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.stats import ortho_group

from ddscope.analyses.cka import choose_form, extract_cka, linear_cka_all_pairs, linear_cka_pair


def drifting_layer(n_epochs=10, n=80, p=12, seed=0, dtype=np.float32):
    """Post-ReLU features of a random map that drifts over 'epochs': CKA between 0 and 1."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6))
    w = rng.standard_normal((6, p))
    out = []
    for _ in range(n_epochs):
        w = w + 0.5 * rng.standard_normal(w.shape)
        out.append(np.maximum(x @ w + 0.3 * rng.standard_normal((n, p)), 0))
    return np.stack(out).astype(dtype)


def pairwise(feats, debiased=False):
    e = len(feats)
    return np.array([[linear_cka_pair(feats[s], feats[t], debiased=debiased) for t in range(e)] for s in range(e)])


def gram_cka_reference(x, y, debiased=False):
    """Kornblith et al.'s Gram-space CKA (center_gram with unbiased=True: zeroed diagonals, U-centring)."""

    def center(g):
        g = g.copy()
        n = len(g)
        if debiased:
            np.fill_diagonal(g, 0)
            means = g.sum(0) / (n - 2)
            means -= means.sum() / (2 * (n - 1))
            g -= means[:, None] + means[None, :]
            np.fill_diagonal(g, 0)
        else:
            h = np.eye(n) - 1 / n
            g = h @ g @ h
        return g

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    gx, gy = center(x @ x.T), center(y @ y.T)
    return np.sum(gx * gy) / (np.linalg.norm(gx) * np.linalg.norm(gy))


@pytest.mark.parametrize("debiased", [False, True])
def test_self_similarity_and_reference_formulas(debiased):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((50, 7)), rng.standard_normal((50, 9)) + rng.standard_normal((50, 1))
    assert linear_cka_pair(x, x, debiased=debiased) == pytest.approx(1.0, abs=1e-12)
    # feature-space formula (incl. the debiased U-statistic) equals the Gram-space one
    assert linear_cka_pair(x, y, debiased=debiased) == pytest.approx(gram_cka_reference(x, y, debiased), abs=1e-10)
    # uncentred inputs: centring is part of the estimator
    assert linear_cka_pair(x + 5, y - 3, debiased=debiased) == pytest.approx(linear_cka_pair(x, y, debiased), abs=1e-10)


def test_invariance_to_isotropic_scaling_and_orthogonal_maps():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((60, 10)), rng.standard_normal((60, 10))
    y = y + x @ rng.standard_normal((10, 10))  # correlated with x
    q = ortho_group.rvs(10, random_state=3)
    base = linear_cka_pair(x, y)
    assert 0.05 < base < 0.99
    assert linear_cka_pair(3.7 * x, y) == pytest.approx(base, abs=1e-10)
    assert linear_cka_pair(x @ q, 0.01 * y) == pytest.approx(base, abs=1e-10)
    # the all-pairs version too (as two 'epochs' of one layer)
    both = np.stack([x, y]).astype(np.float32)
    moved = np.stack([2.5 * x @ q, y @ q.T]).astype(np.float32)
    assert linear_cka_all_pairs(both)[0, 1] == pytest.approx(base, abs=1e-5)
    assert linear_cka_all_pairs(moved)[0, 1] == pytest.approx(base, abs=1e-5)


def test_independent_features_low_and_debiased_near_zero():
    rng = np.random.default_rng(4)
    n, p = 2000, 10
    feats = rng.standard_normal((2, n, p)).astype(np.float32)
    biased = linear_cka_all_pairs(feats)[0, 1]
    debiased = linear_cka_all_pairs(feats, debiased=True)[0, 1]
    assert biased < 0.02  # ≈ p/n-sized bias
    assert abs(debiased) < 0.005
    # with fewer samples the biased estimator is visibly biased upward, the debiased one stays near 0
    small = rng.standard_normal((2, 50, 40))
    assert linear_cka_all_pairs(small)[0, 1] > 0.3
    assert abs(linear_cka_all_pairs(small, debiased=True)[0, 1]) < 0.1


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("form", ["gram", "feature"])
@pytest.mark.parametrize("chunk", [None, 3])
def test_all_pairs_equals_pairwise_reference(debiased, form, chunk):
    feats = drifting_layer()
    got = linear_cka_all_pairs(feats, debiased=debiased, form=form, chunk=chunk)
    ref = pairwise(feats, debiased)
    assert got.shape == (10, 10)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert np.array_equal(got, got.T)
    assert np.all(np.diag(got) == 1.0)
    assert 0.0 < got.min() < 0.9  # the layer does drift


def test_float16_input_and_form_choice():
    feats = drifting_layer(n_epochs=4, dtype=np.float16)
    ref = pairwise(feats.astype(np.float32))
    np.testing.assert_allclose(linear_cka_all_pairs(feats), ref, atol=1e-5)
    assert choose_form(50, 1500, 256) == "gram"
    assert choose_form(50, 1000, 8) == "feature"


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("form", ["gram", "feature"])
def test_constant_and_all_zero_layers_give_no_nan(debiased, form):
    feats = drifting_layer(n_epochs=6)
    feats[1] = 0.0  # dead layer
    feats[2] = 0.7  # constant layer
    feats[4, :, :] = feats[4, :1, :]  # every sample identical (constant per unit)
    got = linear_cka_all_pairs(feats, debiased=debiased, form=form)
    assert not np.isnan(got).any()
    assert np.all(np.diag(got) == 1.0)
    for t in (1, 2, 4):
        assert np.all(np.delete(got[t], t) == 0.0) and np.all(np.delete(got[:, t], t) == 0.0)
    ok = [0, 3, 5]
    np.testing.assert_allclose(got[np.ix_(ok, ok)], pairwise(feats[ok], debiased), atol=1e-5)
    assert np.array_equal(got, got.T)


def make_acts(n_epochs=5, n_layers=2, units=(9, 7), n=(30, 10, 20), n_classes=3, seed=0):
    """Tiny activations.zarr-like dataset (in memory), float16 like the real one."""
    rng = np.random.default_rng(seed)
    subset = np.array(["clean"] * n[0] + ["noisy"] * n[1] + ["test"] * n[2])
    s = len(subset)
    y_original = rng.integers(0, n_classes, s)
    y_assigned = np.where(subset == "noisy", (y_original + 1) % n_classes, y_original)
    data = {}
    for layer in range(1, n_layers + 1):
        data[f"act_{layer}"] = (("epoch", "sample", f"unit_{layer}"),
                                drifting_layer(n_epochs, s, units[layer - 1], seed + layer).astype(np.float16))
    data["act_2"][1][1][:] = 0  # layer 2 dead at the second epoch
    data["logits"] = (("epoch", "sample", "class"), rng.standard_normal((n_epochs, s, n_classes)).astype(np.float16))
    data["w_out"] = (("epoch", "class", f"unit_{n_layers}"),
                     rng.standard_normal((n_epochs, n_classes, units[-1])).astype(np.float16))
    return xr.Dataset(
        data,
        coords={"epoch": np.arange(n_epochs) ** 2, "sample": np.arange(s), "subset": ("sample", subset),
                "y_assigned": ("sample", y_assigned), "y_original": ("sample", y_original)},
        attrs={"n_layers": n_layers, "n_classes": n_classes},
    )


@pytest.mark.parametrize("debiased", [False, True])
def test_extract_cka_dataset_and_netcdf(tmp_path, debiased):
    acts = make_acts()
    ds = extract_cka(acts, {"debiased": debiased, "max_mem_mb": 64})
    assert ds["cka"].dims == ("layer", "epoch", "epoch_other")
    assert list(ds["layer"].values) == [1, 2]
    assert list(ds["epoch"].values) == [0, 1, 4, 9, 16]
    assert ds.attrs["debiased"] == int(debiased)
    cka = ds["cka"].values
    assert not np.isnan(cka).any()
    assert np.all(cka[:, range(5), range(5)] == 1.0)
    np.testing.assert_array_equal(cka, cka.transpose(0, 2, 1))
    ref = pairwise(acts["act_1"].values.astype(np.float32), debiased)
    np.testing.assert_allclose(cka[0], ref, atol=1e-5)
    assert np.all(cka[1, 1, [0, 2, 3, 4]] == 0.0)  # the dead epoch of layer 2
    path = tmp_path / "cka.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    back = xr.open_dataset(path, engine="h5netcdf")
    np.testing.assert_array_equal(back["cka"].values, cka)
    assert back.attrs["debiased"] == int(debiased)
    back.close()
