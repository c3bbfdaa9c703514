"""Reading and writing the workflow's HDF5 artifacts, atomically and with content hashes, and describing them.

Content hashes (sha256 over the arrays' bytes, not the file's) are what downstream steps check:
an HDF5 file's bytes change with library versions, its arrays do not.

Every variable and coordinate of every file a study writes carries the CF attributes `long_name` and `units`
(what xarray's .plot() puts on its axes), and every file the global `Conventions`. Each writer describes its
variables from one table {name: (long_name, units)} (`describe`, `cf_attrs`): the HDF5 layouts below, the
curves here, the activations in ddscope/recording.py, each analysis as CF_ATTRS beside its extract function,
the threshold runs and sweep in ddscope/threshold/sweep.py. A variable a table leaves out, or an entry without
its variable, is an error; docs/outputs.md lists the tables (python -m ddscope.describe_docs).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
from pathlib import Path

import h5py
import numpy as np


class ArtifactError(RuntimeError):
    """A missing, corrupted or mismatched artifact. Reported as one line."""


class TrainingFailed(RuntimeError):
    """A run whose training diverged (its loss stopped being finite). Reported as one line."""


# in runs/<run>/trained/ of a run whose training failed in its stack's job: why
FAILED = "FAILED"


CONVENTIONS = "CF-1.10"
# coordinates several files share; a file's table takes the ones it has with coordinates(...)
COORDINATES = {
    "epoch": ("training epoch", "epoch"),
    "epoch_other": ("other training epoch", "epoch"),
    "layer": ("hidden layer", "1"),
    "class": ("class", "1"),
}


def coordinates(*names: str) -> dict[str, tuple[str, str]]:
    return {name: COORDINATES[name] for name in names}


def _template(key: str) -> re.Pattern:
    return re.compile(re.escape(key).replace(re.escape("<l>"), r"(\d+)"))


def cf_attrs(names, table: dict[str, tuple[str, str]]) -> dict[str, dict[str, str]]:
    """{name: {long_name, units}} for every name of a file, from its table {name: (long_name, units)}.

    A key with `<l>` (`act_<l>`) stands for every layer number (act_1, act_2, ...) and its long_name gets the
    number. Raises ValueError for a name the table does not describe and for an entry no name matches, so a
    file and its table (and docs/outputs.md, made from the table) cannot drift apart.
    """
    names = [str(n) for n in names]
    out, used = {}, set()
    for name in names:
        if name in table:
            key, number = name, None
        else:
            match = next(((k, m) for k in table if "<l>" in k and (m := _template(k).fullmatch(name))), None)
            if match is None:
                raise ValueError(f"variable {name!r} has no long_name and units: add it to its file's table "
                                 f"(one of {', '.join(table)})")
            key, number = match[0], match[1].group(1)
        long_name, units = table[key]
        if not long_name or not units:
            raise ValueError(f"{key}: long_name and units must not be empty")
        out[name] = {"long_name": long_name if number is None else long_name.replace("<l>", number),
                     "units": units}
        used.add(key)
    unused = [k for k in table if k not in used]
    if unused:
        raise ValueError(f"described but not in the file: {', '.join(unused)} (remove them from the table)")
    return out


def describe(ds, table: dict[str, tuple[str, str]]):
    """A copy of the Dataset `ds` with long_name and units on every variable and coordinate (cf_attrs; other
    attrs such as `description` are kept) and the global Conventions."""
    ds = ds.copy(deep=False)
    for name, attrs in cf_attrs(ds.variables, table).items():
        ds.variables[name].attrs.update(attrs)
    ds.attrs["Conventions"] = CONVENTIONS
    return ds


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


def h5_layout(names) -> dict[str, tuple[str, str]]:
    """The table of the HDF5 file kind (H5_LAYOUTS) whose arrays are `names`."""
    for table in H5_LAYOUTS.values():
        if set(table) == set(names):
            return table
    raise ArtifactError(f"arrays {', '.join(names)} are no file of H5_LAYOUTS: describe them (write_h5's variables)")


def write_h5(path: str | Path, arrays: dict[str, np.ndarray], attrs: dict,
             variables: dict[str, tuple[str, str]] | None = None) -> None:
    """Write arrays and attrs atomically; no timestamps, so equal arrays give equal datasets.

    Each array gets long_name and units from `variables` (default: the H5_LAYOUTS table of these arrays), the
    file the global Conventions.
    """
    described = cf_attrs(arrays, variables if variables is not None else h5_layout(arrays))
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=True) as f:
        for name, value in arrays.items():
            dataset = f.create_dataset(name, data=value, track_times=False)
            dataset.attrs.update(described[name])
        for key, value in attrs.items():
            f.attrs[key] = value
        f.attrs["Conventions"] = CONVENTIONS


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


DATASET_CF_ATTRS = {
    "x_train": ("training input (standardised)", "1"),
    "y_train": ("training label", "1"),
    "x_test": ("test input (standardised)", "1"),
    "y_test": ("test label", "1"),
}
DATASET_ARRAYS = list(DATASET_CF_ATTRS)  # the order of content_sha256


def read_dataset(path: str | Path, verify: bool = True) -> tuple[dict[str, np.ndarray], dict]:
    """Load data/dataset.h5 and check its arrays against the content hash written with them."""
    return read_h5_verified(path, DATASET_ARRAYS) if verify else read_h5(path, DATASET_ARRAYS)


LABEL_CF_ATTRS = {
    "y_original": ("original training label", "1"),
    "y_noisy": ("assigned training label", "1"),
    "is_noisy": ("label flipped (1 = yes)", "1"),
    "probe_clean": ("training-set index of a clean probe", "1"),
    "probe_noisy": ("training-set index of a noisy probe", "1"),
    "probe_test": ("test-set index of a test probe", "1"),
}
LABEL_ARRAYS = list(LABEL_CF_ATTRS)  # the order of content_sha256


def read_labels(path: str | Path, dataset_attrs: dict | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Load labels/<noise>.h5, check every array against content_sha256 (y_noisy also against sha256) and
    (optionally) that it was made from this dataset."""
    arrays, attrs = read_h5_verified(path, LABEL_ARRAYS)
    if sha256_arrays(arrays["y_noisy"]) != attrs.get("sha256"):
        raise ArtifactError(f"{path}: y_noisy does not match its recorded sha256 (corrupted?); delete it and rerun")
    if dataset_attrs is not None and attrs.get("dataset_sha256") != dataset_attrs.get("content_sha256"):
        raise ArtifactError(f"{path}: made from a different dataset than the current data/dataset.h5; delete it and rerun")
    return arrays, attrs


# the threshold study's HDF5 files (read by ddscope/threshold/artifacts.py)
TEACHER_CF_ATTRS = {
    "teacher_w": ("teacher input weight", "1"),
    "teacher_a": ("teacher output weight", "1"),
    "directions": ("teacher direction", "1"),
    "x_test": ("test input", "1"),
    "y_test": ("noiseless teacher output on the test input", "1"),
}
TRAINING_SET_CF_ATTRS = {
    "x": ("training input", "1"),
    "y": ("noisy training label", "1"),
    "noise": ("label noise", "1"),
    "seeds": ("run seed", "1"),
}
H5_LAYOUTS = {
    "data/dataset.h5": DATASET_CF_ATTRS,
    "labels/<noise>.h5": LABEL_CF_ATTRS,
    "threshold/data/teacher.h5": TEACHER_CF_ATTRS,
    "threshold/data/train_n<n>.h5": TRAINING_SET_CF_ATTRS,
}

CURVES_CF_ATTRS = {
    **coordinates("epoch"),
    "split": ("evaluation split", "1"),
    "cross_entropy": ("cross-entropy", "nat"),
    "accuracy": ("accuracy", "1"),
}
# variables an older file has under another name (they clashed with open_study's run coordinates `loss`, `width`)
FORMER_NAMES = {"curves": {"loss": "cross_entropy"}, "large_activation": {"width": "layer_width"}}


def current_names(ds, kind: str):
    """A `kind` file ('curves' or an analysis) with today's variable names: an older file's are renamed."""
    former = {old: new for old, new in FORMER_NAMES.get(kind, {}).items() if old in ds.data_vars and new not in ds}
    return ds.rename_vars(former) if former else ds


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


def promote_trained_run(trained: str | Path, activations: str | Path, curves: str | Path, model: str | Path,
                        spec: dict) -> None:
    """Move a run's outputs from runs/<run>/trained/ (its stack's training job) to their places, after checking
    that they are complete and were trained from `spec` (rule train)."""
    from .config import train_config_text

    trained = Path(trained)
    if (trained / FAILED).exists():
        raise TrainingFailed(f"{spec['run']}: {(trained / FAILED).read_text().strip()} (its training log has "
                             "every epoch; its last checkpoint stays in its work/)")
    recorded = read_netcdf(trained / "curves.nc").attrs.get("train_config")
    if recorded != train_config_text(spec):
        raise ArtifactError(f"{trained}: trained from another config than the run's; delete it to retrain")
    for name, dest in (("activations.zarr", activations), ("curves.nc", curves), ("model.pt", model)):
        src, dest = trained / name, Path(dest)
        if not src.exists():
            raise ArtifactError(f"{src}: missing (its training job did not finish); delete {trained} to retrain")
        if dest.is_dir():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
