"""Reading and writing the workflow's HDF5 artifacts, atomically and with content hashes.

Content hashes (sha256 over the arrays' bytes, not the file's) are what downstream steps check:
an HDF5 file's bytes change with library versions, its arrays do not.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import h5py
import numpy as np


class ArtifactError(RuntimeError):
    """A missing, corrupted or mismatched artifact. Reported as one line."""


def sha256_arrays(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary sibling path; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_h5(path: str | Path, arrays: dict[str, np.ndarray], attrs: dict) -> None:
    """Write arrays and attrs atomically; no timestamps, so equal arrays give equal datasets."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=True) as f:
        for name, value in arrays.items():
            f.create_dataset(name, data=value, track_times=False)
        for key, value in attrs.items():
            f.attrs[key] = value


def read_h5(path: str | Path, names: list[str] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: missing (run the workflow to create it)")
    try:
        with h5py.File(path, "r") as f:
            arrays = {k: f[k][()] for k in (names or list(f.keys()))}
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except (OSError, KeyError) as e:
        raise ArtifactError(f"{path}: unreadable or incomplete HDF5 file ({e}); delete it and rerun") from None
    return arrays, attrs


def sha256_dataset(ds) -> str:
    """Content hash of an xarray Dataset: every variable and coordinate (name, dims, dtype, shape, bytes)."""
    h = hashlib.sha256()
    for name in sorted(map(str, ds.variables)):
        values = np.asarray(ds.variables[name].values)
        h.update(f"{name}{ds.variables[name].dims}{values.shape}".encode())
        if values.dtype.kind in "OUS":  # strings come back from NetCDF as objects: hash their text
            h.update("\0".join(map(str, values.ravel())).encode())
        else:
            h.update(sha256_arrays(values).encode())
    return h.hexdigest()


def write_netcdf(ds, path: str | Path) -> None:
    """Write a Dataset atomically with its content hash (attr content_sha256), which read_netcdf checks."""
    ds = ds.assign_attrs(content_sha256=sha256_dataset(ds))
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")


def read_netcdf(path: str | Path, fileobj=None):
    """Load a NetCDF artifact and check it against its content_sha256: a flipped byte is one line, not a number.

    `fileobj` reads from an open (e.g. s3fs) file instead of the path, which then only names it in errors.
    """
    import xarray as xr

    if fileobj is None and not Path(path).exists():
        raise ArtifactError(f"{path}: missing (run the workflow to create it)")
    try:
        with xr.open_dataset(path if fileobj is None else fileobj, engine="h5netcdf") as ds:
            ds = ds.load()
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ArtifactError(f"{path}: unreadable NetCDF file ({type(e).__name__}: {e}); "
                            "delete it and rerun the job that makes it") from None
    recorded = ds.attrs.get("content_sha256")
    if recorded is None:
        raise ArtifactError(f"{path}: has no content_sha256 (written by an older ddscope?); "
                            "delete it and rerun the job that makes it")
    if sha256_dataset(ds) != recorded:
        raise ArtifactError(f"{path}: contents do not match their recorded content_sha256 (corrupted?); "
                            "delete it and rerun the job that makes it")
    return ds


def read_h5_verified(path: str | Path, names: list[str]) -> tuple[dict[str, np.ndarray], dict]:
    """Load arrays `names` and check them, in that order, against the content_sha256 written with them."""
    arrays, attrs = read_h5(path, names)
    if sha256_arrays(*(arrays[k] for k in names)) != attrs.get("content_sha256"):
        raise ArtifactError(f"{path}: arrays do not match their recorded content_sha256 (corrupted?); "
                            "delete it and rerun")
    return arrays, attrs


DATASET_ARRAYS = ["x_train", "y_train", "x_test", "y_test"]


def read_dataset(path: str | Path, verify: bool = True) -> tuple[dict[str, np.ndarray], dict]:
    """Load data/dataset.h5 and check its arrays against the content hash written with them."""
    return read_h5_verified(path, DATASET_ARRAYS) if verify else read_h5(path, DATASET_ARRAYS)


LABEL_ARRAYS = ["y_original", "y_noisy", "is_noisy", "probe_clean", "probe_noisy", "probe_test"]


def read_labels(path: str | Path, dataset_attrs: dict | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Load labels/<noise>.h5, check every array against content_sha256 (y_noisy also against sha256) and
    (optionally) that it was made from this dataset."""
    arrays, attrs = read_h5_verified(path, LABEL_ARRAYS)
    if sha256_arrays(arrays["y_noisy"]) != attrs.get("sha256"):
        raise ArtifactError(f"{path}: y_noisy does not match its recorded sha256 (corrupted?); delete it and rerun")
    if dataset_attrs is not None and attrs.get("dataset_sha256") != dataset_attrs.get("content_sha256"):
        raise ArtifactError(f"{path}: made from a different dataset than the current data/dataset.h5; delete it and rerun")
    return arrays, attrs


def netcdf_attrs(params: dict) -> dict:
    """Parameters as NetCDF-safe attrs: bools become 0/1, None becomes "none", lists stay lists."""
    out = {}
    for key, value in (params or {}).items():
        if isinstance(value, (bool, np.bool_)):
            value = int(value)
        elif value is None:
            value = "none"
        elif isinstance(value, dict):
            value = repr(value)
        out[key] = value
    return out
