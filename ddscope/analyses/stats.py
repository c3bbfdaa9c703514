"""Shared statistics (each formula once) over recorded activations (vectorised over leading epoch/layer axes).

Arrays follow activations.zarr: a[..., sample, unit]. Everything is computed in float32 or wider,
whatever the stored dtype.
"""

from __future__ import annotations

import warnings

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


def class_means_by_epoch(a_by_sample: np.ndarray, labels, n_classes: int, mask=None):
    """features.class_means of a [sample, epoch, unit] array, returned as (means [epoch, class, unit], counts)."""
    n_s, n_e = a_by_sample.shape[:2]
    means, counts = class_means(a_by_sample.reshape(n_s, -1), labels, n_classes, mask=mask)
    return means.reshape((n_classes, n_e) + a_by_sample.shape[2:]).swapaxes(0, 1), counts


def masked_cosine(u: np.ndarray, v: np.ndarray, defined: np.ndarray) -> np.ndarray:
    """features.cosine over the last axis, NaN where not `defined` (broadcast over leading axes)."""
    with np.errstate(invalid="ignore"):
        out = cosine(u, v)
    return np.where(defined, out, np.nan).astype(np.float32)


def nanmean(a: np.ndarray, axis) -> np.ndarray:
    """np.nanmean without the all-NaN warning (all-NaN slices give NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def cosine_to_class_means(a: np.ndarray, means: np.ndarray, classes: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """cos(a[t, s], means[t, classes[t, s]]) for a [epoch, sample, unit], means [epoch, class, unit].

    The same number as ddscope.analyses.stats.cosine(a, means gathered by class) (0 for a zero vector,
    clipped to [-1, 1]; NaN means give NaN), computed as one batched product with every class mean
    instead of gathering a mean per sample: [epoch, sample, class] dots, then the predicted class.
    """
    a = np.asarray(a, dtype=np.float32)
    means = np.asarray(means, dtype=np.float32)
    dots = np.matmul(a, means.swapaxes(-1, -2))  # [epoch, sample, class]
    dot = np.take_along_axis(dots, classes[..., None], axis=-1)[..., 0]
    mean_sq = np.take_along_axis(np.einsum("eku,eku->ek", means, means), classes, axis=-1)
    norm = np.sqrt(np.einsum("esu,esu->es", a, a) * mean_sq)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(norm > eps, dot / np.maximum(norm, eps), 0.0)
    out = np.where(np.isnan(norm), np.nan, out)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def trend_start_epoch(epochs, double_descent=None) -> float:
    """The recorded epoch from which the trends over training (separation, collapse) are measured.

    The one nearest the end of phase 1 (`phase1_end` of the run's double_descent dataset: the first minimum
    of the smoothed test error, after which the noisy labels are memorised); if that is undefined (NaN, or
    no double_descent analysis), the one nearest `t_fit_clean` (clean samples fitted); else the first trained
    recorded epoch (the first after epoch 0, the initialisation). Ties go to the earlier epoch.
    """
    epochs = np.asarray(epochs, dtype=np.float64)
    for name in ("phase1_end", "t_fit_clean"):
        target = float(double_descent[name]) if double_descent is not None and name in double_descent else np.nan
        if np.isfinite(target):
            return float(epochs[np.argmin(np.abs(epochs - target))])
    trained = epochs[epochs > 0]
    return float(trained[0] if trained.size else epochs[0])
