"""Label noise (ddscope.noise): exact, seeded flips and stratified probe subsets; the label file round trip."""

from __future__ import annotations

import math
from fractions import Fraction

import h5py
import numpy as np
import pytest
from scipy import stats

from ddscope.artifacts import CONVENTIONS, LABEL_ARRAYS, ArtifactError, read_h5, read_labels, sha256_arrays, write_h5
from ddscope.config import n_flipped
from ddscope.noise import flip_labels, make_noisy_labels, stratified_sample

K = 10


def labels(n: int, seed: int = 0, k: int = K, skewed: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = np.linspace(1, 3, k) if skewed else np.ones(k)
    return rng.choice(k, size=n, p=p / p.sum()).astype(np.int64)


def round_half_up(rate: float, n: int) -> int:
    """round(rate·N) with halves up, computed on the decimal the user wrote (exact rational arithmetic)."""
    return math.floor(Fraction(repr(rate)) * n + Fraction(1, 2))


# --- the number of flips -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rate, n, expected",
    [
        (0.3, 600, 180),
        (0.3, 16000, 4800),
        (0.3, 50000, 15000),
        (0.25, 10, 3),  # 2.5 -> 3 (Python's round() would give 2)
        (0.5, 5, 3),  # 2.5 -> 3
        (0.5, 9, 5),  # 4.5 -> 5 (round() gives 4)
        (0.1, 5, 1),  # 0.5 -> 1 (round() gives 0)
        (0.3, 7, 2),  # 2.1 -> 2
        (0.3, 8, 2),  # 2.4 -> 2
        (0.3, 9, 3),  # 2.7 -> 3
        (0.0, 1000, 0),
        (0.999, 1000, 999),
    ],
)
@pytest.mark.parametrize("kind", ["symmetric", "pairflip"])
def test_exact_number_of_flips(kind, rate, n, expected):
    assert n_flipped(rate, n) == expected
    y_noisy, is_noisy = flip_labels(labels(n), kind, rate, K, seed=3)
    assert is_noisy.dtype == bool and is_noisy.shape == (n,)
    assert int(is_noisy.sum()) == expected
    assert int((y_noisy != labels(n)).sum()) == expected


def test_n_flipped_matches_round_half_up_on_a_grid():
    rates = [0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 0.8, 0.9]
    for rate in rates:
        for n in range(1, 401):
            assert n_flipped(rate, n) == round_half_up(rate, n), (rate, n)


@pytest.mark.parametrize("rate, n", [(0.29, 50), (0.35, 90), (0.29, 750), (0.35, 170)])
def test_n_flipped_rounds_decimal_halves_up(rate, n):
    assert n_flipped(rate, n) == round_half_up(rate, n)


def test_rate_zero_flips_nothing():
    y = labels(500)
    for kind in ("symmetric", "pairflip"):
        y_noisy, is_noisy = flip_labels(y, kind, 0.0, K, seed=0)
        assert not is_noisy.any()
        np.testing.assert_array_equal(y_noisy, y)
    arrays, attrs = make_noisy_labels(y, labels(100, 1), "symmetric", 0.0, K, 0, {"clean": 50, "noisy": 20, "test": 30})
    assert attrs["n_flipped"] == 0 and attrs["rate_realised"] == 0.0
    assert len(arrays["probe_noisy"]) == 0 and len(arrays["probe_clean"]) == 50


@pytest.mark.parametrize("rate", [1.0, 1.5, -0.1])
def test_rate_outside_unit_interval_is_rejected(rate):
    with pytest.raises(ValueError, match="rate"):
        flip_labels(labels(10), "symmetric", rate, K, seed=0)


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="symmetric, pairflip"):
        flip_labels(labels(10), "asymmetric", 0.3, K, seed=0)


# --- where the flips go ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["symmetric", "pairflip"])
@pytest.mark.parametrize("k", [2, 3, 10, 100])
def test_every_flip_changes_the_class(kind, k):
    y = labels(3000, k=k)
    y_noisy, is_noisy = flip_labels(y, kind, 0.45, k, seed=5)
    assert np.all(y_noisy[is_noisy] != y[is_noisy])
    np.testing.assert_array_equal(y_noisy[~is_noisy], y[~is_noisy])
    assert y_noisy.min() >= 0 and y_noisy.max() < k
    assert y_noisy.dtype == np.int64


def test_pairflip_moves_to_the_next_class():
    y = labels(2000)
    y_noisy, is_noisy = flip_labels(y, "pairflip", 0.4, K, seed=1)
    np.testing.assert_array_equal(y_noisy[is_noisy], (y[is_noisy] + 1) % K)
    assert set(y[is_noisy] == K - 1) == {True, False}, "the wrap-around K-1 -> 0 is exercised"


def _other_class_chi2_p(y: np.ndarray, y_noisy: np.ndarray, is_noisy: np.ndarray, k: int) -> float:
    """p-value of 'the new class is uniform over the K-1 other classes', per original class (K·(K-1) cells)."""
    observed, expected = [], []
    for c in range(k):
        new = y_noisy[is_noisy & (y == c)]
        counts = np.bincount(new, minlength=k)
        others = [j for j in range(k) if j != c]
        observed += list(counts[others])
        expected += [len(new) / (k - 1)] * (k - 1)
    return stats.chisquare(observed, expected, ddof=k - 1).pvalue


def test_symmetric_new_class_is_uniform_over_other_classes():
    y = labels(40000, seed=11)
    y_noisy, is_noisy = flip_labels(y, "symmetric", 0.5, K, seed=2024)
    assert _other_class_chi2_p(y, y_noisy, is_noisy, K) > 1e-3
    # the test has power: a biased rule (pairflip) fails it
    y_pair, is_pair = flip_labels(y, "pairflip", 0.5, K, seed=2024)
    assert _other_class_chi2_p(y, y_pair, is_pair, K) < 1e-3


def test_flipped_samples_are_spread_over_classes():
    y = labels(40000, seed=12, skewed=True)
    _, is_noisy = flip_labels(y, "symmetric", 0.3, K, seed=7)
    table = np.array([[np.sum(is_noisy & (y == c)), np.sum(~is_noisy & (y == c))] for c in range(K)])
    assert stats.chi2_contingency(table).pvalue > 1e-3


def test_smaller_rate_flips_a_subset_of_a_larger_one():
    y = labels(1000)
    _, low = flip_labels(y, "symmetric", 0.2, K, seed=9)
    _, high = flip_labels(y, "symmetric", 0.3, K, seed=9)
    assert np.all(high[low])


# --- seeds -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["symmetric", "pairflip"])
def test_same_seed_same_arrays_different_seed_different_flips(kind):
    y = labels(1000)
    a = flip_labels(y, kind, 0.3, K, seed=4)
    b = flip_labels(y.copy(), kind, 0.3, K, seed=4)
    c = flip_labels(y, kind, 0.3, K, seed=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    assert not np.array_equal(a[0], c[0])


# Pinned once (numpy 2.4.6): a change of the flip or probe algorithm, or of numpy's streams, must be deliberate,
# because it changes every label file and every run downstream.
PINNED_FLIPS = {
    "symmetric": "ad4a800715e92b1014516a80b5f3512687522f2b0b30d2988c16106929843eed",
    "pairflip": "99bc9fa215fc6f15238f7d1b5df09fca2543d1569e11b8c7003868f65dcbbc03",
}
PINNED_LABEL_FILE = "39eedd975fd739340ca0882e2e1121c6aedf8a22e99dc43b9b7a6844cda5be3d"
PINNED_Y_NOISY = "efb4f3ec5e7f873c134b2c632d9435418f0e546784c2212f898776aba4d033b2"


@pytest.mark.parametrize("kind", ["symmetric", "pairflip"])
def test_flips_are_pinned(kind):
    y_noisy, is_noisy = flip_labels(np.arange(100) % 10, kind, 0.3, 10, seed=123)
    assert sha256_arrays(y_noisy, is_noisy) == PINNED_FLIPS[kind]


def test_label_file_arrays_are_pinned():
    arrays, attrs = make_noisy_labels(np.arange(200) % 10, np.arange(50) % 10, "symmetric", 0.3, 10, 123,
                                      {"clean": 20, "noisy": 10, "test": 10})
    assert sha256_arrays(*(arrays[k] for k in LABEL_ARRAYS)) == PINNED_LABEL_FILE
    assert attrs["sha256"] == PINNED_Y_NOISY


# --- probes and attrs ---------------------------------------------------------------------------------


def _assert_stratified(picked: np.ndarray, candidates: np.ndarray, y: np.ndarray, size: int):
    assert len(picked) == size == len(np.unique(picked))
    assert np.all(np.isin(picked, candidates))
    assert np.all(np.diff(picked) > 0), "sorted"
    classes, counts = np.unique(y[candidates], return_counts=True)
    quota = counts * size / counts.sum()
    got = np.array([np.sum(y[picked] == c) for c in classes])
    assert np.all(np.abs(got - quota) < 1), (got, quota)


@pytest.fixture(scope="module")
def label_set():
    y_train, y_test = labels(5000, seed=1, skewed=True), labels(1500, seed=2, skewed=True)
    sizes = {"clean": 333, "noisy": 257, "test": 401}
    arrays, attrs = make_noisy_labels(y_train, y_test, "symmetric", 0.3, K, 17, sizes, dataset_sha256="abc")
    return y_train, y_test, sizes, arrays, attrs


def test_probes_sizes_subsets_and_strata(label_set):
    y_train, y_test, sizes, arrays, _ = label_set
    idx = np.arange(len(y_train))
    is_noisy = arrays["is_noisy"]
    _assert_stratified(arrays["probe_clean"], idx[~is_noisy], arrays["y_noisy"], sizes["clean"])
    _assert_stratified(arrays["probe_noisy"], idx[is_noisy], arrays["y_noisy"], sizes["noisy"])
    _assert_stratified(arrays["probe_test"], np.arange(len(y_test)), y_test, sizes["test"])
    assert not is_noisy[arrays["probe_clean"]].any(), "probe_clean holds only clean samples"
    assert is_noisy[arrays["probe_noisy"]].all(), "probe_noisy holds only noisy samples"
    for name in ("probe_clean", "probe_noisy", "probe_test"):
        assert arrays[name].dtype == np.int64


def test_probe_proportions_close_to_population(label_set):
    y_train, _, sizes, arrays, _ = label_set
    population = np.bincount(y_train, minlength=K) / len(y_train)
    clean = np.bincount(arrays["y_noisy"][arrays["probe_clean"]], minlength=K) / sizes["clean"]
    assert np.abs(clean - population).max() < 0.03


def test_noisy_probes_are_capped_by_the_flips():
    y = labels(200)
    arrays, attrs = make_noisy_labels(y, labels(50, 3), "pairflip", 0.1, K, 0, {"clean": 10, "noisy": 100, "test": 5})
    assert attrs["n_flipped"] == 20
    assert len(arrays["probe_noisy"]) == 20


def test_probe_choice_is_seeded(label_set):
    y_train, y_test, sizes, arrays, _ = label_set
    again, _ = make_noisy_labels(y_train, y_test, "symmetric", 0.3, K, 17, sizes, dataset_sha256="abc")
    other, _ = make_noisy_labels(y_train, y_test, "symmetric", 0.3, K, 18, sizes, dataset_sha256="abc")
    for name in LABEL_ARRAYS:
        np.testing.assert_array_equal(arrays[name], again[name])
    assert not np.array_equal(arrays["probe_test"], other["probe_test"])


def test_stratified_sample_rejects_too_many():
    with pytest.raises(ValueError):
        stratified_sample(labels(10), np.arange(10), 11, np.random.default_rng(0))
    assert len(stratified_sample(labels(10), np.arange(10), 0, np.random.default_rng(0))) == 0


def test_attrs(label_set):
    y_train, _, _, arrays, attrs = label_set
    n = len(y_train)
    assert attrs["kind"] == "symmetric"
    assert attrs["rate_nominal"] == 0.3
    assert attrs["n_flipped"] == 1500 == int(arrays["is_noisy"].sum())
    assert attrs["rate_realised"] == pytest.approx(1500 / n)
    assert attrs["seed"] == 17
    assert attrs["flips_change_class"] is True
    assert attrs["sha256"] == sha256_arrays(arrays["y_noisy"])
    assert attrs["dataset_sha256"] == "abc"
    np.testing.assert_array_equal(arrays["y_original"], y_train)


# --- the label file -------------------------------------------------------------------------------------


def test_write_read_round_trip(tmp_path, label_set):
    _, _, _, arrays, attrs = label_set
    path = tmp_path / "labels" / "sym30.h5"
    write_h5(path, arrays, attrs)
    got, got_attrs = read_labels(path, dataset_attrs={"content_sha256": "abc"})
    assert list(got) == LABEL_ARRAYS
    for name in LABEL_ARRAYS:
        np.testing.assert_array_equal(got[name], arrays[name])
        assert got[name].dtype == arrays[name].dtype
    assert got_attrs == {**attrs, "Conventions": CONVENTIONS}
    assert [p.name for p in path.parent.iterdir()] == ["sym30.h5"], "no temporary file left behind"


def test_two_writes_give_identical_datasets(tmp_path, label_set):
    _, _, _, arrays, attrs = label_set
    write_h5(tmp_path / "a.h5", arrays, attrs)
    write_h5(tmp_path / "b.h5", arrays, attrs)
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        assert list(a) == list(b) == LABEL_ARRAYS
        for name in LABEL_ARRAYS:
            assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape
            assert a[name][()].tobytes() == b[name][()].tobytes()
            # track_times=False: no creation/modification times in the object headers
            for f in (a, b):
                info = h5py.h5o.get_info(f[name].id)
                assert info.ctime == info.mtime == 0
        assert list(a.attrs) == list(b.attrs)
        for key in a.attrs:
            assert np.array_equal(a.attrs[key], b.attrs[key]), key


def test_tampered_y_noisy_is_detected(tmp_path, label_set):
    _, _, _, arrays, attrs = label_set
    path = tmp_path / "sym30.h5"
    write_h5(path, arrays, attrs)
    with h5py.File(path, "r+") as f:
        f["y_noisy"][0] = (f["y_noisy"][0] + 1) % K
    with pytest.raises(ArtifactError, match="sha256"):
        read_labels(path)


def test_labels_from_another_dataset_are_detected(tmp_path, label_set):
    _, _, _, arrays, attrs = label_set
    write_h5(tmp_path / "sym30.h5", arrays, attrs)
    with pytest.raises(ArtifactError, match="different dataset"):
        read_labels(tmp_path / "sym30.h5", dataset_attrs={"content_sha256": "not-abc"})


def test_missing_or_truncated_file_is_an_artifact_error(tmp_path, label_set):
    _, _, _, arrays, attrs = label_set
    with pytest.raises(ArtifactError, match="missing"):
        read_h5(tmp_path / "absent.h5")
    write_h5(tmp_path / "full.h5", arrays, attrs)
    data = (tmp_path / "full.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError):
        read_labels(tmp_path / "cut.h5")
