"""The one reader of recorded activations (activations.zarr): open a finished store, read one layer at a time,
and the per-sample metadata every analysis needs (subset masks, labels, the inputs of the probe samples).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import numpy as np
import xarray as xr

from ddscope.artifacts import ArtifactError, read_dataset


def open_activations(path: str | Path) -> xr.Dataset:
    """Open a finished activations.zarr lazily; refuse one whose training did not finish."""
    path = Path(path)
    try:
        # cache=False: a layer read with .values is not kept in memory after the analysis is done with it
        # consolidated=True: a finished store always has it (ActivationStore.finish), and it opens without a listing
        ds = xr.open_dataset(path, engine="zarr", consolidated=True, cache=False, chunks=None)
    except Exception as e:  # zarr raises several types for a missing or broken store
        if (path / "zarr.json").is_file() and "consolidated" in str(e).lower():
            raise ArtifactError(f"{path}: incomplete (training did not finish: no consolidated metadata); "
                                "rerun its train job") from None
        raise ArtifactError(f"{path}: not a readable Zarr store ({type(e).__name__}: {e})") from None
    if not ds.attrs.get("complete") or ds.attrs.get("n_complete") != ds.sizes["epoch"]:
        raise ArtifactError(f"{path}: incomplete ({ds.attrs.get('n_complete')} of {ds.sizes['epoch']} "
                            "recorded epochs); rerun its train job")
    return ds


# what zarr raises for a chunk whose bytes changed: the crc32c codec's mismatch, or zstd failing on the bytes
_CORRUPT_CHUNK = ("Stored and computed checksum do not match", "decompression error")


@contextlib.contextmanager
def corrupted_chunks_reported(path: str | Path):
    """Turn zarr's error for a damaged chunk, met while reading the store lazily, into one ArtifactError line."""
    try:
        yield
    except (ValueError, RuntimeError) as e:
        if not any(marker in str(e) for marker in _CORRUPT_CHUNK):
            raise
        raise ArtifactError(f"{path}: a chunk is corrupted ({str(e).split('.')[0]}); delete the store and "
                            "rerun its train job") from None


def layer_numbers(acts: xr.Dataset) -> list[int]:
    """Hidden layers 1..L (attrs n_layers; else the act_<l> variables present)."""
    found = sorted(int(m.group(1)) for name in acts.data_vars if (m := re.fullmatch(r"act_(\d+)", str(name))))
    n = int(acts.attrs.get("n_layers", len(found)))
    missing = [l for l in range(1, n + 1) if l not in found]
    if missing:
        raise ValueError(f"activations: n_layers = {n} but act_{missing[0]} is missing")
    return list(range(1, n + 1))


def n_classes(acts: xr.Dataset) -> int:
    if "n_classes" in acts.attrs:
        return int(acts.attrs["n_classes"])
    return int(acts.sizes["class"])


def load(acts: xr.Dataset, name: str, epoch_index=None) -> np.ndarray:
    """One variable as a float32 array (all epochs, or the positional `epoch_index`), dims as stored.

    Indexing before reading keeps a lazily opened zarr from caching the array inside `acts`, so
    memory holds one layer at a time however many layers are read in turn.
    """
    var = acts[name]
    if "epoch" in var.dims:
        var = var.isel(epoch=slice(None) if epoch_index is None else epoch_index)
    return np.asarray(var.to_numpy(), dtype=np.float32)


def load_by_sample(acts: xr.Dataset, name: str) -> np.ndarray:
    """A layer's activations (epoch, sample, unit) as a C-contiguous float32 array [sample, epoch, unit].

    Samples first, so that class means over all epochs at once are one matrix product
    (class_means_by_epoch) and reductions over samples run along the outer axis; the float16 ->
    float32 cast and the transposition are one copy.
    """
    var = acts[name]
    stored = var.isel(epoch=slice(None)).to_numpy()  # isel: no caching inside a lazily opened `acts`
    out = np.empty((stored.shape[1], stored.shape[0]) + stored.shape[2:], dtype=np.float32)
    np.copyto(out, np.swapaxes(stored, 0, 1))
    return out


def probe_info(acts: xr.Dataset) -> dict:
    """Per-sample metadata as numpy arrays: subset masks and integer labels."""
    subset = np.asarray(acts["subset"].values)
    if subset.dtype.kind == "S":  # bytes
        subset = np.char.decode(subset, "utf-8")
    subset = np.asarray(subset, dtype=object)  # '<U', object and numpy StringDType (zarr v3) alike
    return {
        "clean": subset == "clean",
        "noisy": subset == "noisy",
        "test": subset == "test",
        "y_assigned": np.asarray(acts["y_assigned"].values).astype(np.int64),
        "y_original": np.asarray(acts["y_original"].values).astype(np.int64),
        "n_classes": n_classes(acts),
    }


def subsets(acts: xr.Dataset) -> np.ndarray:
    """The per-sample `subset` coordinate as a plain str array, whatever zarr returned (StringDType, bytes, object)."""
    values = np.asarray(acts["subset"].values).tolist()
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=str)


def probe_inputs(dataset_path: str | Path, acts: xr.Dataset) -> np.ndarray:
    """Inputs x of the probe samples, in the store's sample order (train ids for clean/noisy, test ids for test)."""
    data, attrs = read_dataset(dataset_path)
    if acts.attrs.get("dataset_sha256", attrs["content_sha256"]) != attrs["content_sha256"]:
        raise ArtifactError(f"{dataset_path}: not the dataset run {acts.attrs.get('run')} was trained on; "
                            "rerun its train job")
    test = acts.subset.values == "test"
    ids = acts.sample.values
    x = np.empty((len(ids), data["x_train"].shape[1]), dtype=np.float32)
    x[~test] = data["x_train"][ids[~test]]
    x[test] = data["x_test"][ids[test]]
    return x
