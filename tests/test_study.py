"""open_study / open_activations on a real two-model, two-seed study (the tiny config plus an MLP5 of another
width), so the join meets everything a sweep brings: runs of different depth (layers padded with NaN), of
different width (units padded), several seeds, a missing combination; read locally and from S3.

The study runs once per pytest process (study_dir); tests/test_cli.py uses the same one.
"""

from __future__ import annotations

import copy
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import run_snakemake
from tiny_study import TINY, write_config

from ddscope.analyses.compute import open_metric
from ddscope.analyses.registry import ANALYSES
from ddscope.artifacts import read_netcdf, write_netcdf
from ddscope.config import parse_run
from ddscope.study import RUN_COORDS, RUN_DIMS, StudyError, open_activations, open_study

pytestmark = pytest.mark.slow

CONFIG = copy.deepcopy(TINY)
CONFIG["models"]["mlp5"] = {"hidden": [24, 24, 24, 24]}  # deeper and wider than mlp3 ([16, 16])
CONFIG["train"]["seeds"] = [0, 1]
RUNS = [f"{m}-sym30-ce-s{s}" for m in ("mlp3", "mlp5") for s in (0, 1)]
NODES = ["curves", *ANALYSES]
_STUDY: dict[str, Path] = {}


def tiny_study_dir(tmp_path_factory) -> Path:
    """results/tiny of the two-model study, run at most once per pytest process (both test modules use it)."""
    if "root" not in _STUDY:
        start = time.perf_counter()
        workdir = tmp_path_factory.mktemp("study")
        # the runs and their metrics only: figures, tables and findings (a quarter of the time) are not read here
        targets = [f"results/tiny/metrics/{run}/{analysis}.nc" for run in RUNS for analysis in ANALYSES]
        result = run_snakemake(workdir, *targets, configfile=write_config(workdir, CONFIG), timeout=900)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
        _STUDY["root"] = workdir / "results" / "tiny"
        print(f"\n[wall time] two-model tiny study: {time.perf_counter() - start:.1f} s", flush=True)
    return _STUDY["root"]


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    return tiny_study_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def tree(study_dir) -> xr.DataTree:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return open_study(study_dir)


def run_file(study: Path, node: str, run: str) -> xr.Dataset:
    """A run's own file of a node, read the way the workflow reads it."""
    if node == "curves":
        return read_netcdf(study / "runs" / run / "curves.nc")
    return open_metric(study / "metrics" / run / f"{node}.nc")


def copy_tables(study: Path, to: Path) -> Path:
    """curves.nc and metrics of a study, without the activations (all open_study reads)."""
    for curves in study.glob("runs/*/curves.nc"):
        (to / curves.relative_to(study)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(curves, to / curves.relative_to(study))
    shutil.copytree(study / "metrics", to / "metrics")
    return to



def test_nodes_share_one_run_grid_with_sweep_coordinates(tree, study_dir):
    assert sorted(tree.children) == sorted(NODES)
    assert tree.attrs["study"] == "tiny" and Path(tree.attrs["study_root"]) == study_dir
    for node in NODES:
        ds = tree[node].to_dataset()
        assert ds["model"].values.tolist() == ["mlp3", "mlp5"], node  # ordered by depth
        assert ds["depth"].values.tolist() == [3, 5] and ds["width"].values.tolist() == [16, 24], node
        assert ds["noise"].values.tolist() == ["sym30"] and ds["rate"].values.tolist() == [0.3], node
        assert ds["kind"].values.tolist() == ["symmetric"], node
        assert ds["loss"].values.tolist() == ["ce"] and ds["seed"].values.tolist() == [0, 1], node
        for name, var in ds.data_vars.items():
            assert var.dims[:4] == RUN_DIMS, f"{node}.{name}: {var.dims}"
        assert not {"run", "run_model", "content_sha256", "train_config_sha256"} & set(ds.attrs), node
    assert tree["separation"]["layer"].values.tolist() == [1, 2, 3, 4]
    assert tree["large_activation"]["unit"].values.tolist() == list(range(24))
    assert tree["curves"]["cross_entropy"].attrs["units"] == "nat"  # the file's CF attributes come along
    for node in NODES:  # and the run coordinates have their own
        assert all(tree[node][name].attrs["long_name"] for name in RUN_COORDS), node


def test_every_value_equals_the_runs_own_file(tree, study_dir):
    """Each run's slice of every variable is its file's variable where the file has coordinates, NaN elsewhere
    (a shallower or narrower model's padding), for all runs, nodes and variables."""
    checked = 0
    for run in RUNS:
        labels = parse_run(run)
        for node in NODES:
            own = run_file(study_dir, node, run)
            joined = tree[node].to_dataset().sel({d: labels[d] for d in RUN_DIMS})
            for name, var in own.data_vars.items():
                got = joined[name]
                assert set(got.dims) == set(var.dims), f"{run} {node}.{name}"
                # the file's values at their coordinates...
                inside = got.sel({d: own[d].values for d in var.dims if d in own.coords}).transpose(*var.dims)
                np.testing.assert_array_equal(inside.values, var.values.astype(np.float64),
                                              err_msg=f"{run} {node}.{name}")
                # ...and only NaN padding around them
                expected = var.astype(np.float64).reindex({d: got[d] for d in var.dims if d in own.coords})
                np.testing.assert_array_equal(got.transpose(*var.dims).values, expected.values,
                                              err_msg=f"{run} {node}.{name} (padding)")
                checked += 1
    assert checked >= len(RUNS) * 40
    mlp3 = tree["separation"]["separation_mean"].sel(model="mlp3")
    assert mlp3.sel(layer=[3, 4]).isnull().all() and mlp3.sel(layer=[1, 2]).notnull().all()
    unit_max = tree["large_activation"]["unit_max"]
    assert unit_max.sel(model="mlp3", unit=slice(16, None)).isnull().all()


def test_older_files_open_under_todays_names(tree, study_dir, tmp_path):
    """A study from before the renames (curves.nc `loss`, large_activation.nc `width`) opens as today's."""
    study = copy_tables(study_dir, tmp_path / "results" / "tiny")
    run = RUNS[0]
    for path, new, old in [(study / "runs" / run / "curves.nc", "cross_entropy", "loss"),
                           (study / "metrics" / run / "large_activation.nc", "layer_width", "width")]:
        write_netcdf(read_netcdf(path).rename_vars({new: old}), path)
        assert old in xr.open_dataset(path).data_vars
    older = open_study(study)
    for node in ("curves", "large_activation"):
        xr.testing.assert_identical(older[node].to_dataset(), tree[node].to_dataset())
    assert "layer_width" in open_metric(study / "metrics" / run / "large_activation.nc")


def test_a_missing_combination_is_nan_and_the_rest_is_kept(study_dir, tmp_path):
    study = copy_tables(study_dir, tmp_path / "results" / "tiny")
    (study / "metrics" / "mlp5-sym30-ce-s1" / "cka.nc").unlink()
    shutil.rmtree(study / "runs" / "mlp5-sym30-ce-s1")
    tree = open_study(study)
    cka = tree["cka"]["cka"]
    assert cka.sel(model="mlp5", seed=1).isnull().all()
    assert cka.sel(model="mlp5", seed=0).notnull().any() and cka.sel(model="mlp3", seed=1).notnull().any()
    assert tree["curves"]["accuracy"].sel(model="mlp5", seed=1).isnull().all()
    # the run still has its other metrics, and its depth and width come from mlp5's other run
    assert tree["collapse"]["nc1"].sel(model="mlp5", seed=1).notnull().all()
    assert tree["cka"]["width"].sel(model="mlp5").item() == 24


def test_open_activations_is_lazy_and_takes_a_tree_or_a_path(tree, study_dir):
    run = "mlp5-sym30-ce-s1"
    from_tree, from_path = open_activations(tree, run), open_activations(study_dir, run)
    assert not from_tree["act_4"].variable._in_memory  # nothing read yet
    assert from_tree.sizes["unit_4"] == 24 and from_tree.attrs["run"] == run
    np.testing.assert_array_equal(from_tree["act_4"].values, from_path["act_4"].values)


def test_a_directory_without_runs_is_not_a_study(tmp_path):
    with pytest.raises(StudyError, match="not a study"):
        open_study(tmp_path)
    with pytest.raises(StudyError, match="no such directory"):
        open_study(tmp_path / "nothing")


def test_a_study_in_s3_opens_with_the_local_values(tree, study_dir):
    """The same tree from an S3 prefix (rclone serve s3 over a copy of the study; about 5 s)."""
    from s3_server import S3Server

    with S3Server() as s3:
        prefix = "lab/results/tiny"
        copy_tables(study_dir, s3.root / s3.bucket / prefix)
        run = "mlp3-sym30-ce-s0"
        shutil.copytree(study_dir / "runs" / run / "activations.zarr",
                        s3.root / s3.bucket / prefix / "runs" / run / "activations.zarr")
        remote = open_study(s3.url(prefix), storage_options=s3.storage_options)
        assert remote.attrs["study_root"] == s3.url(prefix)
        for node in NODES:
            xr.testing.assert_identical(remote[node].to_dataset(), tree[node].to_dataset())
        acts = open_activations(remote, run, storage_options=s3.storage_options)
        np.testing.assert_array_equal(acts["act_2"].values, open_activations(tree, run)["act_2"].values)
