"""Exact, seeded label noise and the fixed probe subsets shared by every run."""

from __future__ import annotations

import numpy as np

from .artifacts import sha256_arrays
from .config import n_flipped


def flip_labels(y: np.ndarray, kind: str, rate: float, n_classes: int, seed: int):
    """Flip exactly round(rate·N) labels, each to a different class.

    symmetric: the new class is uniform over the K−1 other classes; pairflip: c → c+1 mod K.
    Returns (y_noisy, is_noisy). The flipped set for a smaller rate is a prefix of one permutation,
    so with one seed the noisy samples of 20 % are a subset of those of 30 %.
    """
    if not 0 <= rate < 1:
        raise ValueError(f"noise rate must be in [0, 1), got {rate}")
    y = np.asarray(y, dtype=np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    flipped = np.sort(order[: n_flipped(rate, len(y))])
    if kind == "symmetric":
        offset = rng.integers(1, n_classes, size=len(flipped))
    elif kind == "pairflip":
        offset = np.ones(len(flipped), dtype=np.int64)
    else:
        raise ValueError(f"unknown noise kind {kind!r} (allowed: symmetric, pairflip)")
    y_noisy = y.copy()
    y_noisy[flipped] = (y[flipped] + offset) % n_classes
    is_noisy = np.zeros(len(y), dtype=bool)
    is_noisy[flipped] = True
    return y_noisy, is_noisy


def stratified_sample(labels: np.ndarray, candidates: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Pick `size` of `candidates` with class proportions as in labels[candidates] (largest remainder). Sorted."""
    if size > len(candidates):
        raise ValueError(f"cannot pick {size} of {len(candidates)} samples")
    if size == 0:
        return np.zeros(0, dtype=np.int64)
    classes, counts = np.unique(labels[candidates], return_counts=True)
    quota = counts * size / counts.sum()
    take = np.floor(quota).astype(int)
    remainder_order = np.argsort(-(quota - take), kind="stable")
    take[remainder_order[: size - take.sum()]] += 1
    picked = [rng.choice(candidates[labels[candidates] == c], t, replace=False) for c, t in zip(classes, take)]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def make_noisy_labels(y_train, y_test, kind, rate, n_classes, seed, probe_sizes, dataset_sha256=""):
    """Arrays and attrs of labels/<noise>.h5. probe_sizes: {'clean': n, 'noisy': n, 'test': n}."""
    y_noisy, is_noisy = flip_labels(y_train, kind, rate, n_classes, seed)
    # a separate stream for probes, so probe choice never shifts the flips
    rng = np.random.default_rng([seed, 1])
    idx = np.arange(len(y_train))
    arrays = {
        "y_original": np.asarray(y_train, dtype=np.int64),
        "y_noisy": y_noisy,
        "is_noisy": is_noisy,
        "probe_clean": stratified_sample(y_noisy, idx[~is_noisy], probe_sizes["clean"], rng),
        "probe_noisy": stratified_sample(y_noisy, idx[is_noisy], min(probe_sizes["noisy"], int(is_noisy.sum())), rng),
        "probe_test": stratified_sample(np.asarray(y_test), np.arange(len(y_test)), probe_sizes["test"], rng),
    }
    n_flip = int(is_noisy.sum())
    attrs = {
        "kind": kind,
        "rate_nominal": float(rate),
        "rate_realised": n_flip / len(y_train),
        "n_flipped": n_flip,
        "seed": int(seed),
        "n_classes": int(n_classes),
        "flips_change_class": bool(np.all(y_noisy[is_noisy] != arrays["y_original"][is_noisy])),
        "sha256": sha256_arrays(y_noisy),
        "content_sha256": sha256_arrays(*arrays.values()),  # every array, in LABEL_ARRAYS order
        "dataset_sha256": dataset_sha256,
    }
    return arrays, attrs
