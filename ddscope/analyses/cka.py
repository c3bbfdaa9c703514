"""Linear CKA of each hidden layer with itself across recorded epochs (Kornblith et al. 2019).

For one layer, X_t [n, p] are its activations on the n probe samples at epoch t and X̃_t the
column-centred X_t. With centred Gram matrices K_t = X̃_t X̃_tᵀ,

    HSIC(s, t) = <K_s, K_t>_F = ||X̃_sᵀ X̃_t||²_F,     CKA(s, t) = HSIC(s, t) / sqrt(HSIC(s, s) HSIC(t, t)).

All pairs at once: the Grams of a chunk of epochs are stacked and flattened to F [c, n²], and
G = F Fᵀ gives every pair of that chunk in one matrix product (chunks of epochs bound memory).
When p² is small against n (roughly p² < n) the feature-space form is cheaper: the cross products
X̃_sᵀ X̃_t of a chunk come out of one matrix product of the epochs' features concatenated along units.
Both forms are exact; the cheaper is chosen from the operation count.

Debiased (`debiased=True`): the unbiased HSIC estimator of Song et al. (2012), i.e. Gram diagonals zeroed
and the U-statistic correction, as in Kornblith et al.'s code and Nguyen et al. (2021). For centred
features it reduces to (d_t = row norms² of X̃_t, T_t = ||X̃_t||²_F)

    HSIC_u(s, t) ∝ ||X̃_sᵀ X̃_t||²_F − n/(n−2) d_s·d_t + T_s T_t / ((n−1)(n−2)),

so it costs the same as the biased one. It can be slightly negative; values are clipped to [−1, 1].

Degenerate layers: a layer whose centred activations vanish at epoch t (constant or all-zero layer, e.g.
dead ReLUs; ||X̃_t||_F ≤ rtol·||X_t||_F) has no defined CKA. We set CKA(t, t) = 1 and CKA(t, s) = 0
for s ≠ t (also between two degenerate epochs), so the matrix never holds NaN. The same holds when the
debiased self-similarity HSIC_u(t, t) is not above rtol × the biased one.

Each epoch's centred features are scaled to unit Frobenius norm first (CKA is scale invariant); this
keeps float32 Grams well inside range even for very large activations. Centring round-off of constant
columns (≈ 1e-7 relative in float32) stays far below the degeneracy threshold rtol = 1e-6.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from ddscope.artifacts import coordinates, describe, netcdf_attrs
from ddscope.summary import per_layer_columns

DEFAULT_MAX_BYTES = 1024 * 2**20
DEGENERATE_RTOL = 1e-6
CF_ATTRS = {**coordinates("layer", "epoch", "epoch_other"), "cka": ("linear CKA", "1")}


# --- reference: one pair at a time --------------------------------------------------------------


def linear_cka_pair(x, y, debiased: bool = False, dtype=torch.float64) -> float:
    """Linear CKA of x [n, p] and y [n, q], one pair, the way common CKA libraries compute it.

    ||ỸᵀX̃||²_F / (||X̃ᵀX̃||_F ||ỸᵀỸ||_F) on column-centred features (Kornblith et al.'s
    `feature_space_linear_cka`, including its debiased variant). Computed in `dtype` (float64 by default:
    it is the reference for tests). No degenerate-layer handling: a constant layer gives NaN.
    """
    x = torch.as_tensor(np.asarray(x)).to(dtype)
    y = torch.as_tensor(np.asarray(y)).to(dtype)
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    xty = (y.T @ x).square().sum()
    xtx = (x.T @ x).square().sum()
    yty = (y.T @ y).square().sum()
    if debiased:
        n = x.shape[0]
        dx, dy = x.square().sum(1), y.square().sum(1)
        tx, ty = dx.sum(), dy.sum()

        def correct(h, da, db, ta, tb):
            return h - n / (n - 2.0) * (da @ db) + ta * tb / ((n - 1.0) * (n - 2.0))

        xty = correct(xty, dx, dy, tx, ty)
        xtx = correct(xtx, dx, dx, tx, tx)
        yty = correct(yty, dy, dy, ty, ty)
    return float(xty / torch.sqrt(xtx * yty))


# --- all pairs ----------------------------------------------------------------------------------


def _prepare(block, dtype, rtol, need_rows):
    """Centre, scale to unit Frobenius norm; return features, row norms² (if needed), degenerate flags."""
    x = torch.as_tensor(np.asarray(block, dtype=np.float32)).to(dtype)
    scale = torch.linalg.vector_norm(x, dim=(1, 2)).double()
    x = x - x.mean(1, keepdim=True)
    norm = torch.linalg.vector_norm(x, dim=(1, 2)).double()
    degenerate = (norm <= rtol * scale) | (norm == 0)
    inv = torch.where(degenerate, 0.0, 1.0 / torch.where(degenerate, 1.0, norm))
    x.mul_(inv.to(dtype)[:, None, None])
    rows = torch.einsum("enp,enp->en", x, x).double() if need_rows else None  # d_t [c, n], sums to 1
    return x, rows, degenerate


def _gram_flat(xc):
    c, n, _ = xc.shape
    return torch.bmm(xc, xc.transpose(1, 2)).reshape(c, n * n)


def _feature_cross(xa, xb):
    """||X_aᵀ X_b||²_F for every pair of epochs of two chunks, from one matrix product."""
    ca, n, p = xa.shape
    cb = xb.shape[0]
    za = xa.permute(1, 0, 2).reshape(n, ca * p)
    zb = xb.permute(1, 0, 2).reshape(n, cb * p)
    cross = (za.T @ zb).reshape(ca, p, cb, p)
    return cross.double().square().sum((1, 3))


def choose_form(n_epochs: int, n: int, p: int) -> str:
    """'gram' (n×n Grams, then one matmul over flattened Grams) or 'feature' (p×p cross products)."""
    gram_cost = n_epochs * n * n * p + n_epochs * n_epochs * n * n / 2
    feature_cost = n_epochs * n_epochs * n * p * p / 2
    return "feature" if feature_cost < gram_cost else "gram"


def linear_cka_all_pairs(feats, debiased: bool = False, chunk: int | None = None, form: str = "auto",
                         dtype=torch.float32, max_bytes: int = DEFAULT_MAX_BYTES,
                         rtol: float = DEGENERATE_RTOL) -> np.ndarray:
    """CKA between every pair of epochs of one layer: feats [E, n, p] → [E, E] float64.

    `feats` may be any array-like sliceable along its first axis (numpy, xarray, float16 is fine); it is
    converted to `dtype` one chunk of `chunk` epochs at a time (default: all epochs if their Grams fit in
    `max_bytes`, else chunks of which two fit; Grams of later chunks are then recomputed per block row).
    `form`: 'gram', 'feature' or 'auto' (cheaper by operation count). Symmetric, diagonal exactly 1, no NaN (see the module docstring for degenerate
    layers). Uses torch's current thread count.
    """
    shape = tuple(feats.shape)
    if len(shape) != 3:
        raise ValueError(f"feats must be [epoch, sample, unit], got shape {shape}")
    n_epochs, n, p = shape
    if debiased and n < 4:
        raise ValueError(f"the debiased estimator needs at least 4 samples, got {n}")
    if form == "auto":
        form = choose_form(n_epochs, n, p)
    if form not in ("gram", "feature"):
        raise ValueError(f"form must be 'gram', 'feature' or 'auto', got {form!r}")
    if chunk is None:
        itemsize = torch.finfo(dtype).bits // 8
        if form == "gram":  # all flattened Grams (+ features) at once if they fit, else two chunks at a time
            per_epoch = (n * n + n * p) * itemsize
            chunk = n_epochs if n_epochs * per_epoch <= max_bytes else max_bytes // (2 * per_epoch)
        else:  # one block of cross products, also held in float64 while squared
            chunk = int(np.sqrt(max_bytes / ((itemsize + 8) * p * p)))
        chunk = int(max(1, min(n_epochs, chunk)))
    starts = list(range(0, n_epochs, chunk))

    hsic = np.zeros((n_epochs, n_epochs))
    rows = np.zeros((n_epochs, n))
    degenerate = np.zeros(n_epochs, dtype=bool)
    with torch.inference_mode():
        for i, a0 in enumerate(starts):
            a1 = min(a0 + chunk, n_epochs)
            xa, rows_a, deg_a = _prepare(feats[a0:a1], dtype, rtol, debiased)
            if debiased:
                rows[a0:a1] = rows_a.numpy()
            degenerate[a0:a1] = deg_a.numpy()
            fa = _gram_flat(xa) if form == "gram" else None
            for b0 in starts[i:]:
                b1 = min(b0 + chunk, n_epochs)
                if b0 == a0:
                    xb, fb = xa, fa
                else:
                    xb = _prepare(feats[b0:b1], dtype, rtol, False)[0]
                    fb = _gram_flat(xb) if form == "gram" else None
                if form == "gram":
                    block = (fa @ fb.T).double().numpy()
                else:
                    block = _feature_cross(xa, xb).numpy()
                hsic[a0:a1, b0:b1] = block
                hsic[b0:b1, a0:a1] = block.T
            del xa, fa
    hsic = (hsic + hsic.T) / 2  # exact symmetry whatever the matmul's summation order
    raw_self = np.diag(hsic).copy()  # ||K̂_t||²_F ≥ 1/min(n, p) unless degenerate
    if debiased:
        total = (~degenerate).astype(float)  # ||X̂_t||²_F after scaling
        hsic = hsic - n / (n - 2.0) * (rows @ rows.T) + np.outer(total, total) / ((n - 1.0) * (n - 2.0))
    self_sim = np.diag(hsic).copy()
    degenerate |= ~(self_sim > rtol * raw_self)  # also catches NaN; only bites for debiased
    norm = np.sqrt(np.where(degenerate, 1.0, self_sim))
    cka = np.clip(hsic / np.outer(norm, norm), -1.0, 1.0)
    cka[degenerate, :] = 0.0
    cka[:, degenerate] = 0.0
    np.fill_diagonal(cka, 1.0)
    return cka


# --- the analysis -------------------------------------------------------------------------------


def extract_cka(acts: xr.Dataset, params: dict | None = None, **kwargs) -> xr.Dataset:
    """`cka`[layer, epoch, epoch_other] for every hidden layer, on all probe samples (clean + noisy + test).

    `acts` is activations.zarr opened lazily; one layer is loaded at a time. params: the `analyses.cka`
    config block (`debiased`, `max_mem_mb`). Extra kwargs go to linear_cka_all_pairs (e.g. dtype, chunk).
    """
    params = dict(params or {})
    debiased = bool(params.get("debiased", False))
    kwargs.setdefault("max_bytes", int(params.get("max_mem_mb", DEFAULT_MAX_BYTES // 2**20)) * 2**20)
    n_layers = int(acts.attrs["n_layers"])
    epochs = np.asarray(acts["epoch"].values)
    mats = []
    for layer in range(1, n_layers + 1):
        feats = acts[f"act_{layer}"].values  # one layer: [E, S, U] in the stored dtype
        mats.append(linear_cka_all_pairs(feats, debiased=debiased, **kwargs))
        del feats
    cka = np.stack(mats).astype(np.float32) if mats else np.zeros((0, len(epochs), len(epochs)), np.float32)
    ds = xr.Dataset(
        {"cka": (("layer", "epoch", "epoch_other"), cka,
                 {"description": "CKA of the layer with itself between two recorded epochs, on all probe samples"})},
        coords={"layer": np.arange(1, n_layers + 1), "epoch": epochs, "epoch_other": epochs},
        attrs={"analysis": "cka", "samples": "all probes (clean, noisy, test)",
               "n_samples": int(acts.sizes["sample"]), **netcdf_attrs(params), "debiased": int(debiased)},
    )
    ds = describe(ds, CF_ATTRS)
    if debiased:  # the estimator is part of what the axis shows
        ds["cka"].attrs["long_name"] = "debiased linear CKA"
    return ds


def summary_columns(ds: xr.Dataset, metrics: dict) -> dict:
    """Late change of each layer: 1 − CKA(the recorded epoch nearest half-way through training, the final epoch)."""
    epochs = ds.epoch.values
    mid = epochs[np.argmin(np.abs(epochs - epochs[-1] / 2))]
    change = 1 - ds.cka.sel(epoch=mid, epoch_other=epochs[-1])
    return {**per_layer_columns(change, "cka_late_change"), "cka_late_epoch": float(mid)}
