"""Neural collapse under label noise (Papyan et al. 2020; memorization–dilation, Nguyen et al. 2023).

Everything is measured on the last hidden layer L at every recorded epoch, vectorised over epochs (in
chunks of epochs), in float64, on the train probes (clean + noisy) with their assigned labels, unless
stated otherwise. h_i are the features, y_i the assigned labels, N the number of samples, K the number of
classes present among them, μ_c the class means, μ_G = mean of the class means (the global mean of a
class-balanced set; probe sets are stratified by assigned class) and M the centred class means
μ_c − μ_G, rows of a [K, U] matrix.

- `nc1` = tr(Σ_W Σ_B⁺)/K with Σ_W = (1/N) Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ and Σ_B = (1/K) MᵀM.
  Σ_B has rank ≤ K−1, so its pseudo-inverse comes from `eigh` of the K×K matrix MMᵀ (same non-zero
  spectrum), batched over epochs, keeping eigenvalues above `pinv_rcond` × the largest. NaN when all
  class means coincide (Σ_B = 0, e.g. a dead layer). The memorization–dilation code computes the same
  (validate_NC.py: eval_model, `collapse_metric`).
- `nc1_clean`: the same on the clean train probes only.
- Memorization and dilation after Nguyen, Levie, Lienen, Hüllermeier, Kutyniok, "Memorization-Dilation: Modeling
  Neural Collapse Under Noise" (ICLR 2023). Both measure Euclidean distances to the clean class means μ̃_c (mean
  of the clean probes of class c; for clean samples assigned = original label), the official code's
  `uncorrupted_centroids` (github.com/julilien/MemorizationDilation, metrics.py: get_centroids_by_corruption).
  Two forms of each:
  - the official code's forms, to hold against the paper's figures: `memorization_sum` = the distances of the
    noisy probes to the clean mean of their *original* class, summed per original class, then averaged over
    classes (exp_utils/fourclass_exp_utils.py: determine_memorization); it grows with the number of noisy probes.
    `dilation_std` [epoch, class] = the standard deviation (ddof 0, numpy's default as in the code) of the clean
    probes' distances to their class's clean mean (metrics.py: get_uncorrupted_stddevs); `dilation_std_mean` its
    mean over classes.
  - ddscope's scale-normalised variants, which runs of different feature scales (noise levels, losses) can be
    compared by, and which are not the paper's numbers: `memorization_normalized` = the *mean* distance of the
    noisy probes to the clean mean of their original class, and `dilation_normalized` = the *mean* distance of
    the clean probes to their class's clean mean, both in units of s = sqrt(mean_c ||μ̃_c − mean_c' μ̃_c'||²), the
    RMS distance of the clean class means from their centre (invariant to a scale and a shift of the features).
    The mean distance is used rather than the standard deviation because in high dimension the distances
    concentrate and their standard deviation stops following the spread.
  A noisy sample still mapped like its original class sits in that class's cloud (memorization_normalized ≈
  dilation_normalized); memorising its assigned label moves it away, so memorization grows.
  NaN when fewer than two classes have clean probes or their means coincide (s ≤ 1e-10 × the features' RMS
  norm, e.g. a dead layer; the normalised forms); memorization is NaN without noisy probes (noisy probes whose
  original class has no clean probe are left out); a class without clean probes has NaN dilation_std.
- `noisy_clean_distance_ratio` = mean distance of noisy samples to the clean mean of their *assigned* class,
  over the mean distance of clean samples to their class's clean mean. Not a quantity of the
  memorization–dilation paper: it *falls* as the noisy labels are memorised (the noisy samples join their
  assigned class). The clean distances are leave-one-out (the sample's own contribution removed from the
  mean: exactly n_c/(n_c−1) × the in-sample distance) so that both sides are out-of-sample distances and
  noisy samples distributed like clean ones give ≈ 1. Classes with fewer than two clean samples are left
  out of the clean side, classes without clean samples out of the noisy side; NaN without noisy probes,
  NaN for fully collapsed features (0/0; distances below 1e-10 × the features' RMS norm count as 0), inf
  when only the clean samples are collapsed.
- `nc2_equinorm` = std/mean of ||M_c|| over classes; `nc2_equiangle` = std of the off-diagonal cosines
  between the M_c (Papyan et al. Fig. 4); `nc2_maxangle` = mean over off-diagonal pairs of
  |cos + 1/(K−1)| (Papyan et al. Fig. 5). Standard deviations use ddof=1, as Papyan et al.'s code (torch.std).
- `nc3` = ||W/||W||_F − M/||M||_F||²_F with W = w_out [class, unit] (rows of present classes), not centred.
- `nc4` = fraction of train probes on which the network's prediction (argmax of the logits) equals the
  nearest-class-centre classification argmin_c ||h_i − μ_c|| (1 = full agreement).

Columns of tables/runs.csv: `<name>_final` for every [epoch] variable; `memorization_normalized_trend` and
`dilation_normalized_trend`, the
value at the last recorded epoch minus that at `collapse_trend_start`, the recorded epoch nearest the end of
phase 1 (stats.trend_start_epoch), when the noisy labels start being memorised.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ddscope.artifacts import coordinates, describe, netcdf_attrs
from ddscope.analyses.stats import class_means, trend_start_epoch
from ddscope.analyses.activations import subsets

VARIABLES = ("nc1", "nc1_clean", "memorization_normalized", "dilation_normalized", "memorization_sum",
             "dilation_std_mean", "noisy_clean_distance_ratio", "nc2_equinorm", "nc2_equiangle", "nc2_maxangle", "nc3",
             "nc4")
DEFAULTS = {"pinv_rcond": 1e-6}
CHUNK_BYTES = 256 * 2**20
CF_ATTRS = {
    **coordinates("epoch", "class"),
    "nc1": ("NC1: within- over between-class variability", "1"),
    "nc1_clean": ("NC1 of the clean probes", "1"),
    "memorization_normalized": ("memorization (scale-normalised)", "1"),
    "dilation_normalized": ("dilation (scale-normalised)", "1"),
    "memorization_sum": ("memorization (official code: summed distances)", "1"),
    "dilation_std_mean": ("dilation (official code), mean over classes", "1"),
    "noisy_clean_distance_ratio": ("noisy / clean distance to the class's clean mean", "1"),
    "nc2_equinorm": ("NC2 equinorm: std / mean of class-mean norms", "1"),
    "nc2_equiangle": ("NC2 equiangularity: std of class-mean cosines", "1"),
    "nc2_maxangle": ("NC2 max-angle: mean |cos + 1/(K-1)|", "1"),
    "nc3": ("NC3: distance of classifier and class means", "1"),
    "nc4": ("NC4: agreement with the nearest class centre", "1"),
    "dilation_std": ("dilation (official code: std of distances)", "1"),
}


def nc1(h: np.ndarray, y: np.ndarray, n_classes: int, rcond: float = 1e-6) -> np.ndarray:
    """tr(Σ_W Σ_B⁺)/K for h [E, N, U] with labels y [N] → [E] (see the module docstring)."""
    h = np.asarray(h, dtype=np.float64)
    y = np.asarray(y)
    means, counts = class_means(h, y, n_classes)
    present = counts > 0
    k = int(present.sum())
    if k < 2:
        return np.full(h.shape[0], np.nan)
    m = means[:, present]
    m = m - m.mean(1, keepdims=True)  # [E, K, U] centred class means
    dev = h - means[:, y]  # [E, N, U] within-class deviations
    lam, vec = np.linalg.eigh(m @ m.transpose(0, 2, 1))  # MMᵀ = U Λ Uᵀ, ascending
    # Σ_B = MᵀM/K has eigenpairs (λ_k/K, v_k = Mᵀu_k/√λ_k); v_kᵀ Σ_W v_k = mean_i ((h_i − μ_{y_i})·v_k)²
    q = (dev @ m.transpose(0, 2, 1)) @ vec  # [E, N, K]: (h_i − μ_{y_i})·Mᵀu_k = √λ_k (…)·v_k
    lam_max = lam[:, -1:]
    keep = (lam > rcond * lam_max) & (lam_max > 0)
    safe = np.where(keep, lam, 1.0)
    sw_along_v = np.mean(q**2, axis=1) / safe  # v_kᵀ Σ_W v_k
    trace = np.sum(np.where(keep, sw_along_v * k / safe, 0.0), axis=1)
    return np.where(keep.any(1), trace / k, np.nan)


def _round_off(h: np.ndarray) -> np.ndarray:
    """1e-10 × the RMS norm of the features [E]: distances below it are round-off of the means, not spread."""
    return 1e-10 * np.sqrt(np.mean(np.sum(h**2, axis=-1), axis=1))


def clean_class_geometry(h: np.ndarray, labels: np.ndarray, clean: np.ndarray, n_classes: int):
    """Clean class means μ̃ [E, K, U] (NaN for classes without clean samples) and their scale s [E]: the RMS
    distance of the clean class means from their centre (NaN with fewer than two classes, or means that
    coincide). `labels` may be the assigned or the original labels: they agree on clean samples."""
    means, counts = class_means(h, labels, n_classes, mask=clean)
    present = counts > 0
    if present.sum() < 2:
        return means, np.full(h.shape[0], np.nan)
    m = means[:, present]
    scale = np.sqrt(np.mean(np.sum((m - m.mean(1, keepdims=True)) ** 2, axis=-1), axis=1))
    return means, np.where(scale > _round_off(h), scale, np.nan)


def memorization(h: np.ndarray, y_original: np.ndarray, clean: np.ndarray, noisy: np.ndarray,
                 n_classes: int) -> np.ndarray:
    """Mean distance of the noisy samples to the clean mean of their original class, over the scale of the
    clean class means, for h [E, N, U] → [E] (see the module docstring)."""
    h = np.asarray(h, dtype=np.float64)
    y_original = np.asarray(y_original)
    clean, noisy = np.asarray(clean, bool), np.asarray(noisy, bool)
    means, scale = clean_class_geometry(h, y_original, clean, n_classes)
    dist = np.linalg.norm(h[:, noisy] - means[:, y_original[noisy]], axis=-1)  # NaN: original class without clean
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nansum(dist, 1) / np.isfinite(dist).sum(1) / scale


def dilation(h: np.ndarray, y: np.ndarray, clean: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean distance of the clean samples to their class's clean mean, over the scale of the clean class
    means, for h [E, N, U] → [E] (see the module docstring)."""
    h = np.asarray(h, dtype=np.float64)
    y = np.asarray(y)
    clean = np.asarray(clean, bool)
    if not clean.any():
        return np.full(h.shape[0], np.nan)
    means, scale = clean_class_geometry(h, y, clean, n_classes)
    return np.linalg.norm(h[:, clean] - means[:, y[clean]], axis=-1).mean(1) / scale


def memorization_sum(h: np.ndarray, y_original: np.ndarray, clean: np.ndarray, noisy: np.ndarray,
                     n_classes: int) -> np.ndarray:
    """The official code's memorization for h [E, N, U] → [E]: distances of the noisy samples to the clean mean of
    their original class, summed per original class, averaged over the classes that have noisy samples."""
    h = np.asarray(h, dtype=np.float64)
    y_original = np.asarray(y_original)
    clean, noisy = np.asarray(clean, bool), np.asarray(noisy, bool)
    means, _ = class_means(h, y_original, n_classes, mask=clean)
    dist = np.linalg.norm(h[:, noisy] - means[:, y_original[noisy]], axis=-1)  # NaN: original class without clean
    onehot = (y_original[noisy][:, None] == np.arange(n_classes)).astype(np.float64)  # [N_noisy, K]
    present = onehot.sum(0) > 0
    sums = np.nan_to_num(dist) @ onehot  # [E, K]
    has_clean = np.isfinite(means[:, :, 0])  # [E, K]
    keep = present[None, :] & has_clean
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(keep.any(1), (sums * keep).sum(1) / keep.sum(1), np.nan)


def dilation_std(h: np.ndarray, y: np.ndarray, clean: np.ndarray, n_classes: int) -> np.ndarray:
    """The official code's dilation for h [E, N, U] → [E, K]: per class, the standard deviation (ddof 0) of the
    clean samples' distances to their class's clean mean; NaN for a class without clean samples."""
    h = np.asarray(h, dtype=np.float64)
    y = np.asarray(y)
    clean = np.asarray(clean, bool)
    out = np.full((h.shape[0], n_classes), np.nan)
    means, counts = class_means(h, y, n_classes, mask=clean)
    dist = np.linalg.norm(h[:, clean] - means[:, y[clean]], axis=-1)  # [E, N_clean]
    for c in np.flatnonzero(counts > 0):
        out[:, c] = dist[:, y[clean] == c].std(axis=1)
    return out


def noisy_clean_distance_ratio(h: np.ndarray, y: np.ndarray, clean: np.ndarray, noisy: np.ndarray,
                               n_classes: int) -> np.ndarray:
    """Mean distance of noisy samples to their assigned class's clean mean over that of clean samples
    (leave-one-out) for h [E, N, U] → [E]."""
    h = np.asarray(h, dtype=np.float64)
    y = np.asarray(y)
    clean, noisy = np.asarray(clean, bool), np.asarray(noisy, bool)
    if not noisy.any():
        return np.full(h.shape[0], np.nan)
    means, counts = class_means(h, y, n_classes, mask=clean)
    dist = np.linalg.norm(h - means[:, y], axis=-1)  # [E, N], NaN for classes without clean samples
    # round-off of the means is no spread: collapsed features give 0/0 = NaN, not a ratio of round-off errors
    tiny = _round_off(h)[:, None]
    dist = np.where(dist <= tiny, 0.0, dist)
    n_c = counts[y].astype(np.float64)
    loo = np.where(n_c >= 2, n_c / np.maximum(n_c - 1, 1), np.nan)
    d_noisy, d_clean = np.where(noisy, dist, np.nan), np.where(clean, dist * loo, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):  # mean over finite entries; 0/0 → NaN, x/0 → inf
        d_noisy = np.nansum(d_noisy, 1) / np.isfinite(d_noisy).sum(1)
        d_clean = np.nansum(d_clean, 1) / np.isfinite(d_clean).sum(1)
        return d_noisy / d_clean


def nc2(means: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equinorm, equiangle and max-angle for class means [E, K, U] (uncentred; classes all present)."""
    k = means.shape[1]
    m = means - means.mean(1, keepdims=True)
    norms = np.linalg.norm(m, axis=-1)  # [E, K]
    with np.errstate(invalid="ignore", divide="ignore"):
        equinorm = norms.std(1, ddof=1) / norms.mean(1)
        unit = m / np.where(norms > 0, norms, np.nan)[..., None]
        cos = unit @ unit.transpose(0, 2, 1)
    off = ~np.eye(k, dtype=bool)
    cos_off = cos[:, off]  # [E, K(K−1)]
    equiangle = cos_off.std(1, ddof=1)
    maxangle = np.abs(cos_off + 1.0 / (k - 1)).mean(1)
    return equinorm, equiangle, maxangle


def nc3(w: np.ndarray, means: np.ndarray) -> np.ndarray:
    """||W/||W||_F − M/||M||_F||²_F for w [E, K, U] and class means [E, K, U] (centred here)."""
    w = np.asarray(w, dtype=np.float64)
    m = means - means.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        wn = w / np.linalg.norm(w, axis=(1, 2))[:, None, None]
        mn = m / np.linalg.norm(m, axis=(1, 2))[:, None, None]
    return np.sum((wn - mn) ** 2, axis=(1, 2))


def nc4(h: np.ndarray, logits: np.ndarray, means: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Fraction of samples where argmax logits == nearest class mean, h [E, N, U], logits [E, N, C]."""
    h = np.asarray(h, dtype=np.float64)
    sq = -2.0 * (h @ np.nan_to_num(means).transpose(0, 2, 1)) + np.nansum(means**2, axis=-1)[:, None, :]
    sq[..., ~present] = np.inf  # ||h||² is common to all classes
    ncc = sq.argmin(-1)
    net = np.asarray(logits).argmax(-1)
    return (ncc == net).mean(1)


def collapse_metrics(h, logits, w_out, y, y_original, clean, noisy, n_classes: int, rcond: float = 1e-6) -> dict:
    """All collapse metrics for one chunk of epochs: h [E, N, U] (train probes), logits [E, N, C],
    w_out [E, C, U], assigned and original labels y, y_original [N], masks clean/noisy [N].
    Returns {name: [E]}."""
    h = np.asarray(h, dtype=np.float64)
    y = np.asarray(y)
    clean = np.asarray(clean, bool)
    means, counts = class_means(h, y, n_classes)
    present = counts > 0
    out = {"nc1": nc1(h, y, n_classes, rcond)}
    out["nc1_clean"] = nc1(h[:, clean], y[clean], n_classes, rcond) if clean.any() else np.full(len(h), np.nan)
    out["memorization_normalized"] = memorization(h, y_original, clean, noisy, n_classes)
    out["dilation_normalized"] = dilation(h, y, clean, n_classes)
    out["memorization_sum"] = memorization_sum(h, y_original, clean, noisy, n_classes)
    out["dilation_std"] = dilation_std(h, y, clean, n_classes)
    with np.errstate(invalid="ignore"):
        out["dilation_std_mean"] = np.nanmean(out["dilation_std"], axis=1) if clean.any() else np.full(len(h), np.nan)
    out["noisy_clean_distance_ratio"] = noisy_clean_distance_ratio(h, y, clean, noisy, n_classes)
    if present.sum() >= 2:
        eqn, eqa, maxa = nc2(means[:, present])
        out["nc2_equinorm"], out["nc2_equiangle"], out["nc2_maxangle"] = eqn, eqa, maxa
        out["nc3"] = nc3(np.asarray(w_out)[:, present], means[:, present])
    else:
        for name in ("nc2_equinorm", "nc2_equiangle", "nc2_maxangle", "nc3"):
            out[name] = np.full(len(h), np.nan)
    out["nc4"] = nc4(h, logits, means, present)
    return out


def extract_collapse(acts: xr.Dataset, params: dict | None = None) -> xr.Dataset:
    """Collapse metrics [epoch] of the last hidden layer on the train probes (clean + noisy), assigned labels.

    params: the `analyses.collapse` config block (pinv_rcond). Loads the last layer in chunks of epochs.
    """
    params = {**DEFAULTS, **(params or {})}
    n_layers = int(acts.attrs["n_layers"])
    n_classes = int(acts.attrs["n_classes"])
    subset = subsets(acts)
    train = np.flatnonzero((subset == "clean") | (subset == "noisy"))
    if train.size == 0:
        raise ValueError("collapse: no train probe samples (clean or noisy)")
    y = np.asarray(acts["y_assigned"].values, dtype=np.int64)[train]
    y_original = np.asarray(acts["y_original"].values, dtype=np.int64)[train]
    clean, noisy = subset[train] == "clean", subset[train] == "noisy"
    act = acts[f"act_{n_layers}"]
    epochs = np.asarray(acts["epoch"].values)
    n_units = act.shape[-1]
    chunk = int(max(1, CHUNK_BYTES // (4 * train.size * n_units * 8)))
    results = {name: [] for name in (*VARIABLES, "dilation_std")}
    for e0 in range(0, len(epochs), chunk):
        sel = {"epoch": slice(e0, e0 + chunk)}
        h = act.isel(sel).values[:, train]
        logits = acts["logits"].isel(sel).values[:, train].astype(np.float32)
        w_out = acts["w_out"].isel(sel).values.astype(np.float64)
        chunk_out = collapse_metrics(h, logits, w_out, y, y_original, clean, noisy, n_classes,
                                     float(params["pinv_rcond"]))
        for name in results:
            results[name].append(chunk_out[name])
    descriptions = {
        "nc1": "tr(Sigma_W Sigma_B^+)/K, train probes (clean + noisy), assigned labels",
        "nc1_clean": "tr(Sigma_W Sigma_B^+)/K, clean train probes",
        "memorization_normalized": "ddscope's scale-normalised memorization (not the paper's number): mean distance of "
                                   "noisy probes to the clean mean of their original class / RMS distance of the "
                                   "clean class means from their centre",
        "dilation_normalized": "ddscope's scale-normalised dilation (not the paper's number): mean distance of clean "
                               "probes to their class's clean mean / RMS distance of the clean class means from "
                               "their centre",
        "memorization_sum": "memorization as in the official Memorization-Dilation code: distances of noisy probes "
                            "to the clean mean of their original class, summed per class, mean over classes",
        "dilation_std_mean": "mean over classes of dilation_std",
        "noisy_clean_distance_ratio": "mean distance of noisy probes to their assigned class's clean mean "
                                      "/ same for clean probes (leave-one-out); falls as noise is memorised",
        "nc2_equinorm": "std/mean of the norms of the centred class means",
        "nc2_equiangle": "std of the off-diagonal cosines between centred class means",
        "nc2_maxangle": "mean |cos + 1/(K-1)| over off-diagonal pairs of centred class means",
        "nc3": "||W/||W||_F - M/||M||_F||_F^2, W = w_out, M = centred class means",
        "nc4": "fraction of train probes where the network's prediction equals the nearest class centre",
    }
    data = {name: ("epoch", np.concatenate(results[name]).astype(np.float64), {"description": descriptions[name]})
            for name in VARIABLES}
    data["dilation_std"] = (("epoch", "class"), np.concatenate(results["dilation_std"]).astype(np.float64),
                            {"description": "dilation as in the official Memorization-Dilation code: per class, std "
                                            "(ddof 0) of the clean probes' distances to their class's clean mean"})
    ds = xr.Dataset(
        data, coords={"epoch": epochs, "class": np.arange(n_classes)},
        attrs={"analysis": "collapse", "layer": n_layers, "labels": "assigned",
               "samples": "train probes (clean + noisy)",
               "n_train": int(train.size), "n_noisy": int(noisy.sum()), **netcdf_attrs(params)},
    )
    return describe(ds, CF_ATTRS)


def summary_columns(ds: xr.Dataset, metrics: dict) -> dict:
    """This analysis's columns of tables/runs.csv (ddscope.summary; see the module docstring)."""
    out = {f"{k}_final": float(ds[k].isel(epoch=-1)) for k in ds.data_vars if ds[k].dims == ("epoch",)}
    start = trend_start_epoch(ds.epoch.values, metrics.get("double_descent"))
    for name in ("memorization_normalized", "dilation_normalized"):
        out[f"{name}_trend"] = float(ds[name].isel(epoch=-1) - ds[name].sel(epoch=start))
    out["collapse_trend_start"] = start
    return out
