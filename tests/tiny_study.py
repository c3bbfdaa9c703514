"""The smallest whole study (one MLP3, 12 epochs) and a comparison of two copies of its artifacts.

Used by the tests that run a study somewhere else than a local directory (S3, a shared filesystem, Slurm)
and check that it gives the same values as a local run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
import yaml
from conftest import run_snakemake

TINY = {
    "study": "tiny",
    "dataset": {"name": "mnist1d", "n_train": 400, "n_test": 200},
    "noise": {"rates": [0.3]},
    "probes": {"clean": 30, "noisy": 20, "test": 30},
    "models": {"mlp3": {"hidden": [16, 16]}},
    "train": {"seeds": [0], "epochs": 12, "checkpoint_every": 2, "batch_size": 64, "threads": 1},
    "record": {"epochs": {"first": 3, "log_count": 4}},
    "analyses": {"probes": {"n_epochs": 3, "steps": 20}, "large_activation": {"n_epochs": 3}},
}
RUN = "mlp3-sym30-ce-s0"


def write_config(workdir: Path, config: dict = TINY, name: str = "tiny.yaml") -> Path:
    path = Path(workdir) / name
    path.write_text(yaml.safe_dump(config))
    return path


def run_local(workdir: Path, config: dict = TINY) -> Path:
    """Run the study in a local directory; returns results/<study>."""
    result = run_snakemake(workdir, configfile=write_config(workdir, config), timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return Path(workdir) / "results" / config["study"]


def assert_same_dataset(a: xr.Dataset, b: xr.Dataset, what: str) -> None:
    """Equal variables, coordinates and values (NaN equal to NaN), bit for bit."""
    assert set(a.variables) == set(b.variables), what
    for name in a.variables:
        va, vb = a[name].values, b[name].values
        assert va.dtype == vb.dtype and va.shape == vb.shape, f"{what}: {name}"
        if va.dtype.kind == "f":
            assert np.array_equal(va, vb, equal_nan=True), f"{what}: {name} differs"
        else:
            assert np.array_equal(va, vb), f"{what}: {name} differs"
