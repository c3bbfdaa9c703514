"""Neural-collapse metrics: collapsed features, memorization and dilation (Nguyen et al. 2023) against their direct
formulas and on planted geometry, the noisy/clean distance ratio, NC1 against the direct formula, extract_collapse
and its summary columns (trends from the end of phase 1)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ddscope.analyses import collapse
from ddscope.analyses.collapse import (VARIABLES, collapse_metrics, dilation, extract_collapse, memorization, nc1, nc2,
                                      noisy_clean_distance_ratio, summary_columns)

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
    y_original = np.where(clean, y, (y + 1) % K)  # noisy samples memorised: on the mean of their assigned class
    h = means[y][None].repeat(3, axis=0)  # 3 epochs, every sample on its class mean
    w = 2.5 * (means - means.mean(0))  # classifier = scaled centred means
    logits = (h - means.mean(0)) @ w.T  # the bias absorbs the global mean
    out = collapse_metrics(h, logits, w[None].repeat(3, axis=0), y, y_original, clean, ~clean, K)
    np.testing.assert_allclose(out["nc1"], 0.0, atol=1e-12)
    np.testing.assert_allclose(out["nc1_clean"], 0.0, atol=1e-12)
    np.testing.assert_allclose(out["nc4"], 1.0)
    np.testing.assert_allclose(out["nc3"], 0.0, atol=1e-12)
    np.testing.assert_allclose(out["nc2_equinorm"], 0.0, atol=1e-12)
    np.testing.assert_allclose(out["nc2_equiangle"], 0.0, atol=1e-12)
    np.testing.assert_allclose(out["nc2_maxangle"], 0.0, atol=1e-12)
    np.testing.assert_allclose(out["dilation_normalized"], 0.0, atol=1e-12)  # the clean classes are points
    # two vertices of a simplex ETF are sqrt(2K/(K−1)) apart in units of its RMS radius
    np.testing.assert_allclose(out["memorization_normalized"], np.sqrt(2 * K / (K - 1)), rtol=1e-12)
    assert np.isnan(out["noisy_clean_distance_ratio"]).all()  # 0/0: no spread at all
    # a network whose predictions ignore the features agrees with the nearest class centre only by chance
    random_logits = np.random.default_rng(0).standard_normal(logits.shape)
    shuffled = collapse_metrics(h, random_logits, w[None].repeat(3, axis=0), y, y_original, clean, ~clean, K)
    assert shuffled["nc4"].max() < 0.6


def spread_features(noisy_spread, n_clean=400, n_noisy=200, seed=1, sigma=0.5):
    rng = np.random.default_rng(seed)
    means = simplex_means()
    y = labels(n_clean + n_noisy)
    clean = np.arange(len(y)) < n_clean
    spread = np.where(clean, sigma, sigma * noisy_spread)[:, None]
    h = means[y] + spread * rng.standard_normal((len(y), P))
    return h[None], y, clean


def test_noisy_clean_distance_ratio_planted_far_vs_like_clean():
    h, y, clean = spread_features(noisy_spread=4.0)
    assert noisy_clean_distance_ratio(h, y, clean, ~clean, K)[0] == pytest.approx(4.0, rel=0.1)
    h, y, clean = spread_features(noisy_spread=1.0)
    assert noisy_clean_distance_ratio(h, y, clean, ~clean, K)[0] == pytest.approx(1.0, abs=0.05)
    # no noisy probes: undefined
    assert np.isnan(noisy_clean_distance_ratio(h, y, clean, np.zeros_like(clean), K)).all()


def noisy_near(memorised: bool, n=400, n_clean=300, sigma=0.3, seed=2):
    """Features around simplex class means; noisy samples (the last n − n_clean) sit in the cloud of their
    assigned class (memorised) or of their original class (not memorised). Returns h [1, n, P], y_assigned,
    y_original, clean."""
    rng = np.random.default_rng(seed)
    y_orig = labels(n)
    clean = np.arange(n) < n_clean
    y_assigned = np.where(clean, y_orig, (y_orig + 1) % K)
    h = simplex_means()[y_assigned if memorised else y_orig] + sigma * rng.standard_normal((n, P))
    return h[None], y_assigned, y_orig, clean


def test_memorization_and_the_ratio_move_in_opposite_directions():
    """Memorising the noise moves noisy samples away from their original class (memorization rises) and onto their
    assigned class (the noisy/clean distance ratio falls to ≈ 1): the ratio is not a memorization index."""
    far, close = noisy_near(memorised=True), noisy_near(memorised=False)
    mem = {name: memorization(h, y_orig, clean, ~clean, K)[0] for name, (h, _, y_orig, clean) in
           (("memorised", far), ("not", close))}
    ratio = {name: noisy_clean_distance_ratio(h, y, clean, ~clean, K)[0] for name, (h, y, _, clean) in
             (("memorised", far), ("not", close))}
    dil = dilation(close[0], close[1], close[3], K)[0]
    assert mem["not"] == pytest.approx(dil, rel=0.1)  # a noisy sample not memorised is like a clean one
    assert mem["memorised"] > 2 * mem["not"] and mem["memorised"] > np.sqrt(2 * K / (K - 1))
    assert ratio["memorised"] == pytest.approx(1.0, abs=0.1) and ratio["not"] > 2 * ratio["memorised"]


def test_memorization_and_dilation_match_direct_formulas():
    """Per-sample loops over the clean class means, in units of their RMS distance from their centre."""
    rng = np.random.default_rng(4)
    h, y, y_orig, clean = noisy_near(memorised=True, n=120, n_clean=80)
    h = h + rng.standard_normal(h.shape)  # unstructured spread as well
    mu = np.stack([h[0, clean & (y == c)].mean(0) for c in range(K)])
    s = np.sqrt(np.mean(np.sum((mu - mu.mean(0)) ** 2, axis=1)))
    direct_mem = np.mean([np.linalg.norm(h[0, i] - mu[y_orig[i]]) for i in np.flatnonzero(~clean)]) / s
    direct_dil = np.mean([np.linalg.norm(h[0, i] - mu[y[i]]) for i in np.flatnonzero(clean)]) / s
    assert memorization(h, y_orig, clean, ~clean, K)[0] == pytest.approx(direct_mem, rel=1e-10)
    assert dilation(h, y, clean, K)[0] == pytest.approx(direct_dil, rel=1e-10)
    # scale- and shift-invariant, and the clean means are the same whichever labels give them
    moved = 7.0 * h + 3.0
    assert memorization(moved, y_orig, clean, ~clean, K)[0] == pytest.approx(direct_mem, rel=1e-10)
    assert dilation(moved, y_orig, clean, K)[0] == pytest.approx(direct_dil, rel=1e-10)


def test_dilation_grows_with_the_clean_spread():
    h, y, clean = spread_features(noisy_spread=1.0, sigma=0.2)
    wide, _, _ = spread_features(noisy_spread=1.0, sigma=0.8)
    small, large = dilation(h, y, clean, K)[0], dilation(wide, y, clean, K)[0]
    assert large == pytest.approx(4 * small, rel=0.15) and small > 0


def test_memorization_and_dilation_undefined_cases():
    h, y, y_orig, clean = noisy_near(memorised=True)
    assert np.isnan(memorization(h, y_orig, clean, np.zeros_like(clean), K)).all()  # no noisy probes
    assert np.isfinite(dilation(h, y, clean, K)).all()  # … dilation is about the clean ones
    assert np.isnan(dilation(h, y, np.zeros_like(clean), K)).all()  # no clean probes
    dead = np.zeros_like(h)  # all class means coincide: no scale
    assert np.isnan(memorization(dead, y_orig, clean, ~clean, K)).all() and np.isnan(dilation(dead, y, clean, K)).all()
    one_class = clean & (y == 0)  # one clean class: no scale between class means
    assert np.isnan(dilation(h, y, one_class, K)).all()
    # noisy probes whose original class has no clean probe are left out, the others still count
    no_clean_0 = clean & (y != 0)
    assert np.isfinite(memorization(h, y_orig, no_clean_0, ~clean, K)).all()


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


def make_acts(n_epochs=5, n=(60, 20, 40), seed=0, drift=False):
    """Features collapse over epochs: spread around simplex class means (assigned labels) shrinks. drift: the
    noisy samples move from the mean of their original class (epoch 0) to that of their assigned class (last
    epoch), i.e. the network memorises them, instead of sitting on their assigned class throughout."""
    rng = np.random.default_rng(seed)
    subset = np.array(["clean"] * n[0] + ["noisy"] * n[1] + ["test"] * n[2])
    s = len(subset)
    y_original = labels(s)
    y_assigned = np.where(subset == "noisy", (y_original + 1) % K, y_original)
    means = simplex_means()
    spread = np.geomspace(2.0, 0.01, n_epochs)[:, None, None]
    tau = np.linspace(0.0, 1.0, n_epochs)[:, None, None] if drift else np.ones((n_epochs, 1, 1))
    centre = (1 - tau) * means[y_original][None] + tau * means[y_assigned][None]
    h = centre + spread * rng.standard_normal((n_epochs, s, P))
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
    for name in ("memorization_normalized", "dilation_normalized", "noisy_clean_distance_ratio"):
        assert np.isfinite(ds[name]).all(), name
    # the clean classes collapse: spread 0.01 in P dims around means at RMS radius 3·sqrt((K−1)/K)
    assert np.all(np.diff(ds["dilation_normalized"].values) < 0)
    assert ds["dilation_normalized"].values[-1] == pytest.approx(0.01 * np.sqrt(P) / (3 * np.sqrt((K - 1) / K)), rel=0.2)
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


def test_memorising_the_noise_raises_memorization_and_lowers_the_ratio():
    ds = extract_collapse(make_acts(drift=True))
    mem, ratio = ds["memorization_normalized"].values, ds["noisy_clean_distance_ratio"].values
    assert np.all(np.diff(mem[1:]) > 0) and mem[-1] == pytest.approx(np.sqrt(2 * K / (K - 1)), rel=0.05)
    assert ratio[-1] < ratio[2]  # the old `dilation` falls while the noise is memorised
    assert "not the paper's number" in ds["memorization_normalized"].attrs["description"]


def phases(phase1_end=np.nan, t_fit_clean=np.nan) -> xr.Dataset:
    """The part of a run's double_descent dataset that the trends read."""
    return xr.Dataset({"phase1_end": ((), float(phase1_end)), "t_fit_clean": ((), float(t_fit_clean))})


def test_summary_columns_final_values_and_trends_from_the_end_of_phase_1():
    ds = extract_collapse(make_acts(drift=True))  # epochs 0, 1, 3, 10, 30
    cols = summary_columns(ds, {"double_descent": phases(phase1_end=4.0, t_fit_clean=2.0)})
    assert {f"{name}_final" for name in VARIABLES} <= set(cols)
    assert cols["collapse_trend_start"] == 3.0  # the recorded epoch nearest phase1_end
    for name in ("memorization_normalized", "dilation_normalized"):
        assert cols[f"{name}_final"] == float(ds[name].values[-1])
        assert cols[f"{name}_trend"] == pytest.approx(ds[name].values[-1] - ds[name].values[2])
    assert cols["memorization_normalized_trend"] > 0 and cols["dilation_normalized_trend"] < 0
    # phase1_end undefined: the clean-fit epoch; neither: the first trained epoch; no double_descent analysis alike
    assert summary_columns(ds, {"double_descent": phases(t_fit_clean=9.0)})["collapse_trend_start"] == 10.0
    assert summary_columns(ds, {"double_descent": phases()})["collapse_trend_start"] == 1.0
    assert summary_columns(ds, {})["collapse_trend_start"] == 1.0


def test_summary_columns_without_noisy_probes():
    ds = extract_collapse(make_acts(n=(60, 0, 40)))
    cols = summary_columns(ds, {"double_descent": phases(phase1_end=3.0)})
    assert np.isnan(cols["memorization_normalized_final"]) and np.isnan(cols["memorization_normalized_trend"])
    assert np.isfinite(cols["dilation_normalized_final"]) and np.isfinite(cols["dilation_normalized_trend"])


def test_official_forms_match_direct_loops():
    """memorization_sum and dilation_std as the official Memorization-Dilation code computes them (a sum of the
    noisy distances per original class, averaged over classes; np.std, ddof 0, of the clean distances per class),
    against plain loops over samples."""
    from ddscope.analyses.collapse import dilation_std, memorization_sum

    rng = np.random.default_rng(3)
    n, units = 60, 5
    y = labels(n)
    clean = rng.random(n) < 0.7
    y_orig = np.where(clean, y, (y + 2) % K)
    h = rng.normal(size=(2, n, units))
    mus = {c: h[:, clean & (y == c)].mean(axis=1) for c in range(K)}
    sums = [sum(np.linalg.norm(h[:, i] - mus[y_orig[i]], axis=-1) for i in np.flatnonzero(~clean & (y_orig == c)))
            for c in range(K) if (~clean & (y_orig == c)).any()]
    np.testing.assert_allclose(memorization_sum(h, y_orig, clean, ~clean, K), np.mean(sums, axis=0), rtol=1e-12)
    direct = np.stack([np.std([np.linalg.norm(h[:, i] - mus[c], axis=-1) for i in np.flatnonzero(clean & (y == c))],
                              axis=0) for c in range(K)], axis=1)
    np.testing.assert_allclose(dilation_std(h, y, clean, K), direct, rtol=1e-12)
    # the sum grows with the number of noisy probes, the normalised mean does not
    doubled = np.concatenate([h, h[:, ~clean]], axis=1)
    y2, yo2, c2 = (np.concatenate([a, a[~clean]]) for a in (y, y_orig, clean))
    assert memorization_sum(doubled, yo2, c2, ~c2, K)[0] == pytest.approx(2 * memorization_sum(h, y_orig, clean, ~clean, K)[0])
    assert memorization(doubled, yo2, c2, ~c2, K)[0] == pytest.approx(memorization(h, y_orig, clean, ~clean, K)[0])
