"""One entry point per analysis: read a run's artifacts, call the analysis, tag the result with its source.

Each analysis returns an xarray Dataset written to metrics/<run>/<analysis>.nc. The tag (run id and the
hash of the training config it came from) lets later steps detect a metric file that belongs to another
version of the run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from ddscope.analyses.activations import corrupted_chunks_reported, open_activations, probe_inputs
from ddscope.analyses.registry import ANALYSES, analysis_module
from ddscope.artifacts import ArtifactError, current_names, read_netcdf, write_netcdf
from ddscope.config import parse_run



def _function(name: str):
    return getattr(analysis_module(name), f"extract_{name}")


def compute(name: str, run: str, source: str | Path, params: dict, dataset_path: str | Path | None = None,
            device: str = "cpu") -> xr.Dataset:
    """Run analysis `name` of run `run` on `source`: its curves.nc or its activations.zarr (ANALYSES says which)."""
    reads = ANALYSES[name]["reads"] if name in ANALYSES else None
    if reads == "curves":
        curves = read_netcdf(source)
        ds, attrs = _function(name)(curves, params), curves.attrs
    elif reads == "activations":
        acts = open_activations(source)
        with corrupted_chunks_reported(source):  # chunks are read lazily, inside the analysis
            if name == "large_activation":
                ds = _function(name)(acts, probe_inputs(dataset_path, acts), params)
            elif name == "probes":
                ds = _function(name)(acts, params, device=device)
            else:
                ds = _function(name)(acts, params)
        attrs = acts.attrs
    else:
        raise ValueError(f"unknown analysis {name!r}")
    if attrs.get("run", run) != run:
        raise ArtifactError(f"{source}: holds run {attrs['run']}, not {run}; delete it and rerun its train job")
    ds.attrs.update({f"run_{k}": v for k, v in parse_run(run).items()})
    ds.attrs.update(run=run, analysis=name, train_config_sha256=attrs["train_config_sha256"])
    return ds


def write_metric(ds: xr.Dataset, path: str | Path) -> None:
    # flags are stored as int8 0/1, which every NetCDF reader understands
    write_netcdf(ds.map(lambda v: v.astype(np.int8) if v.dtype == bool else v), path)


def open_metric(path: str | Path, train_config_sha256: str | None = None) -> xr.Dataset:
    """Load a metric file (content hash checked, an older file's variables under today's names); with a hash,
    refuse one computed from another version of the run."""
    ds = read_netcdf(path)
    ds = current_names(ds, ds.attrs.get("analysis", ""))
    if train_config_sha256 and ds.attrs.get("train_config_sha256") != train_config_sha256:
        raise ArtifactError(f"{path}: computed from another version of run {ds.attrs.get('run')}; rerun its extract job")
    return ds
