"""Neural-collapse metrics: collapsed features, planted dilation, NC1 against the direct formula, extract_collapse."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import ddscope.collapse as collapse
from ddscope.collapse import VARIABLES, collapse_metrics, dilation, extract_collapse, nc1, nc2

K, P = 4, 12


def simplex_means(k=K, p=P, seed=0, scale=3.0):
    """Centred class means forming a simplex ETF (rotated into p dims) plus a common offset."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((p, k)))
    etf = (np.eye(k) - 1.0 / k) @ q.T  # [k, p], rows centred, equal norms, cos = −1/(k−1)
    return scale * etf + rng.standard_normal(p)


def labels(n, k=K):
    return np.tile(np.arange(k), n // k + 1)[:n]


def test_perfect_collapse():
    means = simplex_means()
    n_clean, n_noisy = 40, 12
    y = labels(n_clean + n_noisy)
    clean = np.arange(len(y)) < n_clean
    h = means[y][None].repeat(3, axis=0)  # 3 epochs, every sample on its class mean
    w = 2.5 * (means - means.mean(0))  # classifier = scaled centred means
    logits = (h - means.mean(0)) @ w.T  # the bias absorbs the global mean
    out = collapse_metrics(h, logits, w[None].repeat(3, axis=0), y, clean, ~clean, K)
    np.testing.assert_allclose(out["nc1"], 0.0, atol=1e-12)
    np.testing.assert_allclose(out["nc1_clean"], 0.0, atol=1e-12)
    np.testing.assert_allclose(out["nc4"], 1.0)
    np.testing.assert_allclose(out["nc3"], 0.0, atol=1e-12)
    np.testing.assert_allclose(out["nc2_equinorm"], 0.0, atol=1e-12)
    np.testing.assert_allclose(out["nc2_equiangle"], 0.0, atol=1e-12)
    np.testing.assert_allclose(out["nc2_maxangle"], 0.0, atol=1e-12)
    assert np.isnan(out["dilation"]).all()  # 0/0: no spread at all
    # a network whose predictions ignore the features agrees with the nearest class centre only by chance
    random_logits = np.random.default_rng(0).standard_normal(logits.shape)
    shuffled = collapse_metrics(h, random_logits, w[None].repeat(3, axis=0), y, clean, ~clean, K)
    assert shuffled["nc4"].max() < 0.6


def spread_features(noisy_spread, n_clean=400, n_noisy=200, seed=1, sigma=0.5):
    rng = np.random.default_rng(seed)
    means = simplex_means()
    y = labels(n_clean + n_noisy)
    clean = np.arange(len(y)) < n_clean
    spread = np.where(clean, sigma, sigma * noisy_spread)[:, None]
    h = means[y] + spread * rng.standard_normal((len(y), P))
    return h[None], y, clean


def test_dilation_planted_far_vs_like_clean():
    h, y, clean = spread_features(noisy_spread=4.0)
    assert dilation(h, y, clean, ~clean, K)[0] == pytest.approx(4.0, rel=0.1)
    h, y, clean = spread_features(noisy_spread=1.0)
    assert dilation(h, y, clean, ~clean, K)[0] == pytest.approx(1.0, abs=0.05)
    # no noisy probes: undefined
    assert np.isnan(dilation(h, y, clean, np.zeros_like(clean), K)).all()


def test_dilation_is_about_the_assigned_class():
    """Noisy samples sitting on the clean mean of their original class are far from their assigned class."""
    rng = np.random.default_rng(2)
    means = simplex_means()
    y_orig = labels(300)
    clean = np.arange(300) < 200
    y_assigned = np.where(clean, y_orig, (y_orig + 1) % K)
    h = means[y_orig] + 0.3 * rng.standard_normal((300, P))
    assert dilation(h[None], y_assigned, clean, ~clean, K)[0] > 3.0
    assert dilation(h[None], y_orig, clean, ~clean, K)[0] == pytest.approx(1.0, abs=0.1)


def test_nc1_matches_direct_formula_and_shrinks_with_spread():
    rng = np.random.default_rng(3)
    y = labels(90)
    means = simplex_means()
    h = means[y] + rng.standard_normal((2, 90, P)) * np.array([0.2, 1.0])[:, None, None]
    got = nc1(h, y, K)
    for e in range(2):
        mu = np.stack([h[e, y == c].mean(0) for c in range(K)])
        dev = h[e] - mu[y]
        sw = dev.T @ dev / len(y)
        mc = mu - mu.mean(0)
        sb = mc.T @ mc / K
        direct = np.trace(sw @ np.linalg.pinv(sb, rcond=1e-8, hermitian=True)) / K
        assert got[e] == pytest.approx(direct, rel=1e-8)
    assert got[0] < got[1]
    # within-class spread only along a direction orthogonal to the class means does not count
    null = np.linalg.svd(means - means.mean(0))[2][-1]  # orthogonal to all centred means
    coef = rng.standard_normal(90)
    coef -= np.array([coef[y == c].mean() for c in range(K)])[y]  # class means stay exactly on the simplex
    h_null = means[y] + coef[:, None] * null
    assert nc1(h_null[None], y, K)[0] == pytest.approx(0.0, abs=1e-9)
    # all-zero (dead) layer: class means coincide, NC1 undefined
    assert np.isnan(nc1(np.zeros((1, 90, P)), y, K)).all()


def test_nc2_on_known_geometry():
    # centred means with norms 1 and 3 on a line (K = 2): cosine −1 exactly
    eqn, eqa, maxa = nc2(np.array([[[1.0, 0.0], [-3.0, 0.0]]]) + 5.0)
    assert eqn[0] == pytest.approx(0.0)  # centring with the mean of means makes them ±2
    assert eqa[0] == pytest.approx(0.0) and maxa[0] == pytest.approx(0.0)
    # K = 3 orthonormal means: after centring an equilateral triangle, i.e. a simplex ETF
    eqn, eqa, maxa = nc2(np.eye(3)[None])
    assert eqn[0] == pytest.approx(0.0, abs=1e-12) and eqa[0] == pytest.approx(0.0, abs=1e-12)
    # unequal norms and angles
    m = np.array([[[2.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]])
    eqn, eqa, maxa = nc2(m)
    c = m[0] - m[0].mean(0)
    norms = np.linalg.norm(c, axis=1)
    assert eqn[0] == pytest.approx(norms.std(ddof=1) / norms.mean())
    cos = (c / norms[:, None]) @ (c / norms[:, None]).T
    off = cos[~np.eye(3, dtype=bool)]
    assert eqa[0] == pytest.approx(off.std(ddof=1)) and eqa[0] > 0.05
    assert maxa[0] == pytest.approx(np.abs(off + 0.5).mean())


def make_acts(n_epochs=5, n=(60, 20, 40), seed=0):
    """Features collapse over epochs: spread around simplex class means (assigned labels) shrinks."""
    rng = np.random.default_rng(seed)
    subset = np.array(["clean"] * n[0] + ["noisy"] * n[1] + ["test"] * n[2])
    s = len(subset)
    y_original = labels(s)
    y_assigned = np.where(subset == "noisy", (y_original + 1) % K, y_original)
    means = simplex_means()
    spread = np.geomspace(2.0, 0.01, n_epochs)[:, None, None]
    h = means[y_assigned][None] + spread * rng.standard_normal((n_epochs, s, P))
    w = np.broadcast_to(3 * (means - means.mean(0)), (n_epochs, K, P))
    logits = (h - means.mean(0)) @ w.transpose(0, 2, 1)  # a bias absorbs the global mean
    return xr.Dataset(
        {"act_1": (("epoch", "sample", "unit_1"), rng.standard_normal((n_epochs, s, 5)).astype(np.float16)),
         "act_2": (("epoch", "sample", "unit_2"), h.astype(np.float16)),
         "logits": (("epoch", "sample", "class"), logits.astype(np.float16)),
         "w_out": (("epoch", "class", "unit_2"), w.astype(np.float16))},
        coords={"epoch": [0, 1, 3, 10, 30][:n_epochs], "sample": np.arange(s), "subset": ("sample", subset),
                "y_assigned": ("sample", y_assigned), "y_original": ("sample", y_original)},
        attrs={"n_layers": 2, "n_classes": K},
    )


def test_extract_collapse_dataset_chunks_and_netcdf(tmp_path, monkeypatch):
    acts = make_acts()
    ds = extract_collapse(acts, {"pinv_rcond": 1e-6})
    assert set(VARIABLES) <= set(ds.data_vars)
    for name in VARIABLES:
        assert ds[name].dims == ("epoch",)
    assert list(ds["epoch"].values) == [0, 1, 3, 10, 30]
    assert ds.attrs["layer"] == 2
    nc1_values = ds["nc1"].values
    assert np.all(np.diff(nc1_values) < 0) and nc1_values[-1] < 1e-3
    assert ds["nc4"].values[-1] == 1.0
    assert ds["nc3"].values[-1] < 1e-3
    assert ds["nc2_equiangle"].values[-1] < 0.02
    assert not np.isnan(ds["dilation"]).any()
    # chunking over epochs does not change anything
    monkeypatch.setattr(collapse, "CHUNK_BYTES", 1)
    chunked = extract_collapse(acts, {"pinv_rcond": 1e-6})
    for name in VARIABLES:
        np.testing.assert_allclose(chunked[name].values, ds[name].values, rtol=1e-12)
    path = tmp_path / "collapse.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    back = xr.open_dataset(path, engine="h5netcdf")
    for name in VARIABLES:
        np.testing.assert_array_equal(back[name].values, ds[name].values)
    assert back.attrs["pinv_rcond"] == 1e-6
    back.close()
