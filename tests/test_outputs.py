"""Every file a study writes describes itself: CF `long_name` and `units` on every variable and coordinate and a
global `Conventions`, walked over a finished study; the size of activations.zarr against its formula; the tables
of docs/outputs.md against the writers' tables.

The study walked is the two-model tiny study of tests/test_study.py (run at most once per pytest process);
tests/test_threshold_workflow.py walks the threshold study's files with `undescribed` too.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
import zarr
from test_study import CONFIG, RUNS, tiny_study_dir
from tiny_study import write_config

from ddscope.analyses.registry import ANALYSES
from ddscope.artifacts import CONVENTIONS, cf_attrs, describe
from ddscope.config import layer_widths, parse_noise_tag, parse_run, record_epochs, study_config, validate_config
from ddscope.describe_docs import DOCS, with_current_block
from ddscope.recording import ActivationStore
from ddscope.resources import activation_store_bytes


def study_files(root: Path) -> list[Path]:
    """Every NetCDF and HDF5 file and every Zarr store under `root`."""
    return sorted([*root.rglob("*.nc"), *root.rglob("*.h5"), *root.rglob("*.zarr")])


def undescribed(path: Path) -> list[str]:
    """What a file lacks: `<variable>.long_name` / `<variable>.units` (missing or empty), `Conventions`."""
    if path.suffix == ".h5":
        with h5py.File(path, "r") as f:
            file_attrs = dict(f.attrs)
            variables = {name: dict(dset.attrs) for name, dset in f.items()}
    else:
        opened = xr.open_zarr(path, consolidated=True) if path.suffix == ".zarr" else xr.open_dataset(
            path, engine="h5netcdf")
        with opened as ds:
            file_attrs = dict(ds.attrs)
            variables = {str(name): dict(var.attrs) for name, var in ds.variables.items()}
    missing = [] if file_attrs.get("Conventions") == CONVENTIONS else ["Conventions"]
    for name, attrs in variables.items():
        missing += [f"{name}.{key}" for key in ("long_name", "units") if not str(attrs.get(key, "")).strip()]
    return missing


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    return tiny_study_dir(tmp_path_factory)


@pytest.mark.slow
def test_every_file_of_a_study_describes_every_variable(study_dir):
    files = study_files(study_dir)
    names = {f.relative_to(study_dir).as_posix() for f in files}
    expected = {"data/dataset.h5", "labels/sym30.h5",
                *(f"runs/{run}/{name}" for run in RUNS for name in ("curves.nc", "activations.zarr")),
                *(f"metrics/{run}/{analysis}.nc" for run in RUNS for analysis in ANALYSES)}
    assert expected <= names, sorted(expected - names)
    problems = {name: missing for name, missing in ((f.relative_to(study_dir).as_posix(), undescribed(f))
                                                    for f in files) if missing}
    assert not problems, problems


def test_the_walk_reports_a_variable_a_coordinate_and_a_file_left_undescribed(tmp_path):
    ds = describe(xr.Dataset({"ratio": ("layer", np.ones(3))}, coords={"layer": [1, 2, 3]}),
                  {"layer": ("hidden layer", "1"), "ratio": ("ratio", "1")})
    ds.to_netcdf(tmp_path / "full.nc", engine="h5netcdf")
    assert undescribed(tmp_path / "full.nc") == []
    ds["ratio"].attrs.pop("units")
    ds["layer"].attrs["long_name"] = ""
    ds.drop_attrs(deep=False).to_netcdf(tmp_path / "bare.nc", engine="h5netcdf")
    assert sorted(undescribed(tmp_path / "bare.nc")) == ["Conventions", "layer.long_name", "ratio.units"]
    with h5py.File(tmp_path / "bare.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(2)).attrs["units"] = "1"
    assert undescribed(tmp_path / "bare.h5") == ["Conventions", "x.long_name"]


def test_a_table_must_describe_exactly_the_variables_of_its_file():
    table = {"epoch": ("training epoch", "epoch"), "act_<l>": ("activation of layer <l>", "1")}
    assert cf_attrs(["epoch", "act_1", "act_12"], table)["act_12"] == {"long_name": "activation of layer 12",
                                                                       "units": "1"}
    with pytest.raises(ValueError, match="'logits' has no long_name"):
        cf_attrs(["epoch", "act_1", "logits"], table)
    with pytest.raises(ValueError, match="not in the file: act_<l>"):
        cf_attrs(["epoch"], table)
    with pytest.raises(ValueError, match="must not be empty"):
        cf_attrs(["epoch"], {"epoch": ("training epoch", "")})


@pytest.mark.slow
def test_activation_store_size_is_its_formula(study_dir, tmp_path):
    """activation_store_bytes against the stores' uncompressed array bytes (within 10 %); prints the bytes on disk."""
    config = validate_config(study_config([write_config(tmp_path, CONFIG)]))
    for run in RUNS:
        store = study_dir / "runs" / run / "activations.zarr"
        group = zarr.open_group(store, mode="r", zarr_format=3)
        uncompressed = sum(array.nbytes for _, array in group.arrays())
        labels = parse_run(run)
        formula = activation_store_bytes(config, labels["model"], parse_noise_tag(labels["noise"])[1])
        on_disk = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
        chunks = sum(f.stat().st_size for f in store.rglob("c/**/*") if f.is_file())
        print(f"\n{run}: formula {formula} B, arrays {uncompressed} B uncompressed, {chunks} B of compressed "
              f"chunks, {on_disk} B on disk with metadata")
        assert abs(formula - uncompressed) <= 0.1 * uncompressed, (run, formula, uncompressed)


def test_activation_store_bytes_are_those_of_a_store_laid_out_for_the_config(tmp_path):
    """The formula against the arrays ActivationStore.create lays out, for a model of CONFIG and a 0 %-noise run."""
    config = validate_config(study_config([write_config(tmp_path, CONFIG)]))
    epochs = record_epochs(config["record"], config["train"]["epochs"])
    for model, noise_rate in [("mlp5", 0.3), ("mlp3", 0.0)]:
        probes = {**config["probes"], "noisy": 0 if noise_rate == 0 else config["probes"]["noisy"]}
        subset = np.concatenate([np.full(n, name) for name, n in probes.items()])
        coords = {"sample": np.arange(subset.size), "subset": subset,
                  "y_assigned": np.zeros(subset.size, np.int64), "y_original": np.zeros(subset.size, np.int64)}
        store = ActivationStore.create(tmp_path / f"{model}.zarr", epochs, coords,
                                       layer_widths(config["models"][model]), 10, config["record"]["dtype"], {})
        laid_out = sum(array.nbytes for _, array in store.group.arrays())
        assert activation_store_bytes(config, model, noise_rate) == laid_out, model


def test_docs_variable_tables_are_current():
    text = DOCS.read_text()
    assert with_current_block(text) == text, "docs/outputs.md is stale: run python -m ddscope.describe_docs"


def test_docs_tables_fail_when_a_variable_is_added(monkeypatch):
    from ddscope.analyses import routing

    text = DOCS.read_text()
    monkeypatch.setitem(routing.CF_ATTRS, "routing_gap", ("routing gap", "1"))
    assert with_current_block(text) != text

