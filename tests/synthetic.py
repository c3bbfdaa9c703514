"""Small synthetic datasets in the exact formats training writes (activations.zarr, curves.nc).

Shared by the unit tests of the analyses and the end-to-end tests:

- make_activations(...) -> xr.Dataset shaped like activations.zarr (float16 act_<l>, logits, w_out);
- make_x_probe(acts, dim) -> probe inputs [S, dim] float32;
- with_values(ds, name, values) -> a copy of ds with one variable replaced (dtype and dims kept);
- write_zarr(ds, path) -> store it as training does (one epoch per chunk, not consolidated);
- make_curves(...) -> xr.Dataset shaped like curves.nc with a known test-error shape.

Activations follow class prototypes: clean and test probes follow their true label, noisy probes drift
from the prototype of their original label (epoch 0) to that of their assigned label (last epoch), i.e.
the network memorises the noise; logits are the last layer's activations times a fixed w_out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

SPLITS = ["train_all", "train_clean", "train_noisy_assigned", "train_noisy_original", "test"]
SUBSETS = ("clean", "noisy", "test")


def default_epochs(n_epochs: int, first: int = 4) -> np.ndarray:
    """Recorded epochs like the workflow's schedule: 0..first-1, then roughly log-spaced, strictly increasing."""
    out = list(range(min(first, n_epochs)))
    rest = n_epochs - len(out)
    if rest > 0:
        geo = np.geomspace(first, first * 2 ** (rest / 2 + 1), rest)
        for value in geo:
            out.append(max(int(round(value)), out[-1] + 1))
    return np.asarray(out, dtype=np.int64)


def _counts(n_per_subset) -> tuple[int, int, int]:
    if np.isscalar(n_per_subset):
        return (int(n_per_subset),) * 3
    clean, noisy, test = n_per_subset
    return int(clean), int(noisy), int(test)


def make_activations(n_epochs: int = 8, n_per_subset=24, widths=(16, 12), n_classes: int = 4, seed: int = 0,
                     epochs=None, shuffle: bool = True, noise: float = 0.3, dtype=np.float16) -> xr.Dataset:
    """An activations.zarr-shaped dataset held in memory.

    n_per_subset: an int, or (clean, noisy, test) probe counts (noisy may be 0). Labels are stratified
    (sample i of a subset has true class i mod K); noisy probes get a different assigned class.
    shuffle mixes the subsets' order so that nothing may rely on it.
    """
    rng = np.random.default_rng(seed)
    k = n_classes
    epochs = default_epochs(n_epochs) if epochs is None else np.asarray(epochs, dtype=np.int64)
    n_e = len(epochs)
    counts = _counts(n_per_subset)
    subset = np.concatenate([np.full(n, name) for name, n in zip(SUBSETS, counts)]).astype("<U5")
    y_original = np.concatenate([rng.permutation(np.arange(n) % k) for n in counts]).astype(np.int64)
    y_assigned = y_original.copy()
    noisy = subset == "noisy"
    y_assigned[noisy] = (y_original[noisy] + rng.integers(1, k, size=noisy.sum())) % k
    n_train = counts[0] + counts[1]
    sample = np.concatenate([rng.choice(10 * n_train + 10, size=n_train, replace=False),
                             rng.choice(10 * counts[2] + 10, size=counts[2], replace=False)]).astype(np.int64)
    order = rng.permutation(len(subset)) if shuffle else np.arange(len(subset))
    subset, y_original, y_assigned, sample = subset[order], y_original[order], y_assigned[order], sample[order]
    noisy = subset == "noisy"
    n_s = len(subset)

    # weight on the assigned-label prototype: 0 for clean/test; grows 0 -> 1 over epochs for noisy probes
    tau = np.linspace(0.0, 1.0, n_e)[:, None, None]
    mix = np.where(noisy[None, :, None], tau, 0.0)
    scale = np.linspace(0.5, 1.5, n_e)[:, None, None]
    data_vars = {}
    for l, width in enumerate(widths, start=1):
        proto = rng.uniform(0.0, 1.0, size=(k, width)) * (rng.random((k, width)) < 0.6)
        signal = (1 - mix) * proto[y_original][None] + mix * proto[y_assigned][None]
        a = np.maximum(scale * signal + noise * rng.standard_normal((n_e, n_s, width)), 0.0)
        data_vars[f"act_{l}"] = (("epoch", "sample", f"unit_{l}"), a.astype(dtype))
        last, last_proto = a, proto
    w_out = (last_proto - last_proto.mean(axis=0, keepdims=True)).astype(np.float32)
    logits = np.einsum("esu,ku->esk", last, w_out)
    data_vars["logits"] = (("epoch", "sample", "class"), logits.astype(dtype))
    w_out = np.broadcast_to(w_out, (n_e,) + w_out.shape)
    data_vars["w_out"] = (("epoch", "class", f"unit_{len(widths)}"), w_out.astype(dtype))
    return xr.Dataset(
        data_vars,
        coords={"epoch": epochs, "sample": sample, "subset": ("sample", subset),
                "y_assigned": ("sample", y_assigned), "y_original": ("sample", y_original),
                "class": np.arange(k)},
        attrs={"n_layers": len(widths), "n_classes": k},
    )


def make_x_probe(acts: xr.Dataset, dim: int = 10, seed: int = 1) -> np.ndarray:
    """Standard-normal probe inputs [S, dim] float32, one row per acts.sample."""
    return np.random.default_rng(seed).standard_normal((acts.sizes["sample"], dim)).astype(np.float32)


def with_values(ds: xr.Dataset, name: str, values) -> xr.Dataset:
    """Copy of ds whose variable `name` holds `values` (same dims; cast to the stored dtype)."""
    out = ds.copy()
    out[name] = (ds[name].dims, np.asarray(values).astype(ds[name].dtype))
    return out


def write_zarr(ds: xr.Dataset, path: str | Path) -> Path:
    """Write like training does: one epoch per chunk, not consolidated.

    Open it with xr.open_zarr(path, consolidated=False).
    """
    encoding = {name: {"chunks": (1,) + var.shape[1:]} for name, var in ds.data_vars.items() if var.dims[0] == "epoch"}
    # variable-length strings: zarr v3 has no spec for numpy's fixed-width '<U' (it warns), it has one for these
    ds = ds.assign_coords(subset=("sample", ds["subset"].values.astype(object)))
    ds.to_zarr(path, mode="w", consolidated=False, encoding=encoding)
    return Path(path)


def make_curves(epochs=None, test_error=((0, 0.9), (20, 0.3), (80, 0.45), (150, 0.35)), fit_clean_epoch=15,
                fit_noisy_epoch=100, noise: float = 0.0, seed: int = 0) -> xr.Dataset:
    """A curves.nc-shaped dataset with a piecewise-linear test error through the (epoch, error) knots.

    Train accuracies ramp linearly: train_clean reaches 1 at fit_clean_epoch, train_noisy_assigned
    starts rising there and reaches 1 at fit_noisy_epoch (None: never fitted, they stop at 0.9 / 0.5).
    Test loss = 3 x test error (same shape). noise: std of Gaussian noise added to the test error.
    """
    knots = np.asarray(test_error, dtype=np.float64)
    epochs = np.arange(int(knots[-1, 0]) + 1) if epochs is None else np.asarray(epochs, dtype=np.int64)
    rng = np.random.default_rng(seed)
    err = np.interp(epochs, knots[:, 0], knots[:, 1]) + noise * rng.standard_normal(len(epochs))
    err = np.clip(err, 0.0, 1.0)
    t_clean = fit_clean_epoch if fit_clean_epoch is not None else 1e9
    clean = np.clip(0.1 + 0.9 * epochs / max(t_clean, 1), 0.0, 1.0 if fit_clean_epoch is not None else 0.9)
    t0, t1 = t_clean if fit_clean_epoch is not None else 0, fit_noisy_epoch if fit_noisy_epoch is not None else 1e9
    noisy = np.clip((epochs - t0) / max(t1 - t0, 1), 0.0, 1.0 if fit_noisy_epoch is not None else 0.5)
    noisy_original = 0.8 * (1.0 - noisy)
    accuracy = np.stack([0.7 * clean + 0.3 * noisy, clean, noisy, noisy_original, 1.0 - err], axis=1)
    loss = -np.log(np.clip(accuracy, 1e-3, 1.0))
    loss[:, -1] = 3.0 * err
    return xr.Dataset(
        {"cross_entropy": (("epoch", "split"), loss.astype(np.float32)),
         "accuracy": (("epoch", "split"), accuracy.astype(np.float32))},
        coords={"epoch": epochs, "split": SPLITS},
    )
