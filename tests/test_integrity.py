"""A flipped byte in any artifact a later rule reads is one line naming the file, never a wrong number.

Unit tests flip bytes inside the stored data of each kind of artifact (dataset.h5, labels/<noise>.h5, curves.nc,
a metric file, a chunk of activations.zarr); a workflow test corrupts a finished tiny study and forces the
readers to run again.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from conftest import run_snakemake
from tiny_study import RUN, TINY, run_local, write_config

from ddscope.analyses.compute import compute, open_metric, write_metric
from ddscope.artifacts import (ArtifactError, read_dataset, read_labels, read_netcdf, write_h5,
                               write_netcdf)
from ddscope.data import prepare_dataset
from ddscope.noise import make_noisy_labels
from ddscope.analyses.activations import open_activations
from ddscope.recording import ActivationStore


def flip(path: Path, offset: int, n: int = 8) -> None:
    """Invert n bytes of a file at offset."""
    with open(path, "r+b") as f:
        f.seek(offset)
        data = bytearray(f.read(n))
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in data))


def data_offset(path: Path, name: str) -> int:
    """File offset of the middle of an HDF5 dataset's (contiguous) data."""
    with h5py.File(path, "r") as f:
        dset = f[name]
        offset = dset.id.get_offset()
        assert offset is not None, f"{name} is not stored contiguously"
        return offset + dset.id.get_storage_size() // 2


@pytest.fixture()
def h5_artifacts(tmp_path):
    arrays, attrs = prepare_dataset({"name": "mnist1d", "n_train": 300, "n_test": 100, "seed": 0})
    write_h5(tmp_path / "dataset.h5", arrays, attrs)
    labels, lattrs = make_noisy_labels(arrays["y_train"], arrays["y_test"], "symmetric", 0.3, 10, 0,
                                       {"clean": 20, "noisy": 10, "test": 20}, attrs["content_sha256"])
    write_h5(tmp_path / "labels.h5", labels, lattrs)
    return tmp_path / "dataset.h5", tmp_path / "labels.h5"


def test_flipped_dataset_is_refused(h5_artifacts):
    dataset, _ = h5_artifacts
    read_dataset(dataset)
    flip(dataset, data_offset(dataset, "x_train"))
    with pytest.raises(ArtifactError, match="dataset.h5: .*content_sha256.*delete it and rerun"):
        read_dataset(dataset)


@pytest.mark.parametrize("array", ["probe_clean", "is_noisy", "y_noisy"])
def test_flipped_labels_are_refused(h5_artifacts, array):
    _, labels = h5_artifacts
    read_labels(labels)
    flip(labels, data_offset(labels, array), n=1)
    with pytest.raises(ArtifactError, match="labels.h5: .*delete it and rerun"):
        read_labels(labels)


def _netcdf(path: Path) -> xr.Dataset:
    ds = xr.Dataset({"loss": (("epoch", "split"), np.random.default_rng(0).random((50, 5)))},
                    coords={"epoch": np.arange(50), "split": ["a", "b", "c", "d", "e"]}, attrs={"run": RUN})
    write_netcdf(ds, path)
    return ds


def test_netcdf_roundtrip_keeps_values_and_hash(tmp_path):
    ds = _netcdf(tmp_path / "curves.nc")
    back = read_netcdf(tmp_path / "curves.nc")
    np.testing.assert_array_equal(back.loss.values, ds.loss.values)
    assert list(back.split.values) == list(ds.split.values)


def test_flipped_netcdf_is_refused(tmp_path):
    path = tmp_path / "curves.nc"
    _netcdf(path)
    flip(path, data_offset(path, "loss"))
    with pytest.raises(ArtifactError, match="curves.nc: .*delete it and rerun"):
        read_netcdf(path)


def test_flipped_metric_is_refused(tmp_path):
    path = tmp_path / "separation.nc"
    write_metric(xr.Dataset({"separation_mean": (("epoch", "layer"), np.ones((20, 3)))},
                            attrs={"run": RUN, "train_config_sha256": "x"}), path)
    open_metric(path, "x")
    flip(path, data_offset(path, "separation_mean"))
    with pytest.raises(ArtifactError, match="separation.nc: .*delete it and rerun"):
        open_metric(path, "x")


def test_truncated_netcdf_is_one_line(tmp_path):
    path = tmp_path / "curves.nc"
    _netcdf(path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match="unreadable NetCDF file"):
        read_netcdf(path)


def _store(path: Path, epochs: int = 4) -> None:
    rng = np.random.default_rng(0)
    coords = {"sample": np.arange(60), "subset": np.repeat(["clean", "noisy", "test"], 20),
              "y_assigned": rng.integers(0, 10, 60), "y_original": rng.integers(0, 10, 60)}
    store = ActivationStore.create(path, list(range(epochs)), coords, [32, 32], 10, "float16",
                                   {"run": RUN, "train_config_sha256": "x"})
    for e in range(epochs):
        arrays = {f"act_{l}": rng.random((60, 32)).astype(np.float16) for l in (1, 2)}
        arrays.update(logits=rng.random((60, 10)).astype(np.float16), w_out=rng.random((10, 32)).astype(np.float16))
        store.write(e, arrays)
    store.finish()


@pytest.mark.parametrize("damage", ["flip 8 bytes", "random bytes"])
def test_corrupted_activation_chunk_is_one_line(tmp_path, damage):
    path = tmp_path / "activations.zarr"
    _store(path)
    chunk = path / "act_1" / "c" / "2" / "0" / "0"
    if damage == "flip 8 bytes":
        flip(chunk, chunk.stat().st_size // 2)
    else:
        chunk.write_bytes(os.urandom(chunk.stat().st_size))
    with pytest.raises(ArtifactError, match=r"activations.zarr: a chunk is corrupted .*delete the store"):
        compute("separation", RUN, path, {})
    # the other layers are intact and still read
    assert open_activations(path).act_2.values.shape == (4, 60, 32)


def test_flipped_study_artifacts_stop_their_readers_with_one_line(tmp_path):
    root = run_local(tmp_path)
    config = write_config(tmp_path)
    chunk = next((root / "runs" / RUN / "activations.zarr" / "act_1" / "c").glob("3/0/0"))
    flip(chunk, chunk.stat().st_size // 2)
    curves = root / "runs" / RUN / "curves.nc"
    flip(curves, data_offset(curves, "cross_entropy"))
    result = run_snakemake(tmp_path, "--forcerun", "extract_separation", "extract_double_descent",
                           "--until", "extract_separation", "extract_double_descent", configfile=config)
    assert result.returncode != 0
    for analysis, artifact in [("separation", "activations.zarr"), ("double_descent", "curves.nc")]:
        log = (root / "logs" / f"extract_{analysis}" / f"{RUN}.log").read_text()
        errors = [line for line in log.splitlines() if "ddscope:" in line]
        assert len(errors) == 1 and artifact in errors[0] and "rerun" in errors[0], log
        assert "Traceback" not in log
        assert not (root / "metrics" / RUN / f"{analysis}.nc").exists()  # nothing half-written looks complete

