"""Shared feature statistics over recorded activations (vectorised over leading epoch/layer axes).

Arrays follow activations.zarr: a[..., sample, unit]. Everything is computed in float32 or wider,
whatever the stored dtype.
"""

from __future__ import annotations

import numpy as np


def as_float(a, dtype=np.float32) -> np.ndarray:
    """Stored activations are float16; compute in float32 (float64 when asked)."""
    return np.asarray(a, dtype=np.promote_types(np.asarray(a).dtype, dtype) if np.asarray(a).dtype != np.float16 else dtype)


def class_means(a: np.ndarray, labels: np.ndarray, n_classes: int, mask: np.ndarray | None = None):
    """Mean of a[..., s, :] over samples s with labels[s] == c (and mask[s]).

    Returns (means [..., K, U], counts [K]); classes without samples get NaN means.
    """
    labels = np.asarray(labels)
    onehot = (labels[:, None] == np.arange(n_classes)[None, :]).astype(np.float64)
    if mask is not None:
        onehot *= np.asarray(mask, dtype=bool)[:, None]
    counts = onehot.sum(axis=0)
    a = as_float(a)
    sums = np.einsum("...su,sk->...ku", a, onehot.astype(a.dtype), optimize=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None].astype(a.dtype)
    means[..., counts == 0, :] = np.nan
    return means, counts.astype(np.int64)


def cosine(u: np.ndarray, v: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """Cosine similarity along `axis`, broadcasting; 0 where either vector is (near) zero, NaN where either
    has NaN (e.g. the mean of a class without samples), otherwise within [-1, 1]."""
    u = as_float(u)
    v = as_float(v)
    dot = np.sum(u * v, axis=axis)
    norm = np.sqrt(np.sum(u * u, axis=axis) * np.sum(v * v, axis=axis))
    out = np.where(norm > eps, dot / np.maximum(norm, eps), 0.0)
    return np.clip(np.where(np.isnan(norm), np.nan, out), -1.0, 1.0)
