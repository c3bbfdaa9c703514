"""The tiny study with its artifacts in storage: a real S3 server (`rclone serve s3` on 127.0.0.1) and a shared
filesystem prefix (the fs plugin), each compared with a local run of the same config, value for value.

    snakemake --default-storage-provider s3 --default-storage-prefix s3://<bucket>/ddscope   (keys in env vars)
    snakemake --default-storage-provider fs --default-storage-prefix <dir>/shared

Every artifact (the activations store's chunk files included) must land in storage and none in the working
directory; logs and benchmarks are left out of the comparison (Snakemake 9.27 stores them with the default
storage provider too). A wrong secret or a missing bucket must stop the run with one line, `ddscope: storage error:
...`, before any job starts and without writing anything (or creating the bucket).

Credentials go to snakemake in the S3 plugin's environment variables (tests/s3_server.py, snakemake_env),
never in the config or on the command line. Each test prints its wall time (run with -s to see them).
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path

import pytest
import xarray as xr
from conftest import run_snakemake, scheduled_jobs
from s3_server import S3Server
from tiny_study import RUN, TINY, assert_same_dataset, run_local, write_config

pytestmark = pytest.mark.slow

STUDY = f"results/{TINY['study']}"
LOCAL_ONLY = ("logs", "benchmarks")  # not compared: not artifacts (Snakemake 9.27 puts them in storage too)
MARKER = ".snakemake_timestamp"  # Snakemake's marker inside directory() outputs
S3_PREFIX = "ddscope"


def timed(what: str):
    """Context manager printing the wall time of a block."""

    class _Timer:
        def __enter__(self):
            self.start = time.perf_counter()
            return self

        def __exit__(self, *exc):
            self.seconds = time.perf_counter() - self.start
            print(f"\n[wall time] {what}: {self.seconds:.1f} s", flush=True)

    return _Timer()


@pytest.fixture(autouse=True)
def _print_wall_time(request):
    with timed(request.node.name):
        yield


def artifacts(files: list[str]) -> list[str]:
    """Paths relative to results/<study>/, without logs/, benchmarks/ and Snakemake's timestamp markers."""
    return sorted(f for f in files if f.split("/", 1)[0] not in LOCAL_ONLY and Path(f).name != MARKER)


def local_files(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in Path(root).rglob("*") if p.is_file()]


def storage_run(workdir: Path, *args, env: dict | None = None, timeout: float = 600):
    """conftest.run_snakemake with `env` as the child's environment (run_snakemake passes os.environ on)."""
    with pytest.MonkeyPatch.context() as mp:
        if env is not None:
            for key in [k for k in os.environ if k not in env]:
                mp.delenv(key)
            for key, value in env.items():
                mp.setenv(key, value)
        return run_snakemake(workdir, *args, configfile=write_config(workdir), timeout=timeout)


def s3_args(prefix: str) -> list[str]:
    return ["--default-storage-provider", "s3", "--default-storage-prefix", prefix]


def output(result) -> str:
    return result.stdout + result.stderr


def open_zarr_strict(store, **kwargs) -> xr.Dataset:
    """xr.open_zarr with every warning an error, values loaded inside."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with xr.open_zarr(store, **kwargs) as ds:
            return ds.load()


def open_netcdf(path_or_file) -> xr.Dataset:
    with xr.open_dataset(path_or_file, engine="h5netcdf") as ds:
        return ds.load()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def s3():
    with timed("start rclone serve s3"):
        server = S3Server().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> Path:
    """results/tiny of a local run."""
    with timed("local run of the tiny study"):
        return run_local(tmp_path_factory.mktemp("local"))


@pytest.fixture(scope="module")
def s3_run(s3, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("s3run")
    with timed("S3 run of the tiny study"):
        result = storage_run(workdir, *s3_args(s3.url(S3_PREFIX)), env=s3.snakemake_env())
    return workdir, result


@pytest.fixture(scope="module")
def s3_done(s3_run):
    workdir, result = s3_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return workdir


# ---------------------------------------------------------------- S3


def test_s3_run_succeeds(s3_run):
    workdir, result = s3_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    assert "Traceback" not in output(result)


def test_every_artifact_is_in_the_bucket(s3, local, s3_done):
    expected = artifacts(local_files(local))
    assert f"runs/{RUN}/activations.zarr/zarr.json" in expected or f"runs/{RUN}/activations.zarr/.zmetadata" in expected
    assert any(f.startswith(f"runs/{RUN}/activations.zarr/act_1/") for f in expected), "no chunk files locally"
    prefix = f"{S3_PREFIX}/{STUDY}/"
    keys = s3.keys(prefix)
    in_bucket = artifacts([k.removeprefix(prefix) for k in keys])
    missing, extra = sorted(set(expected) - set(in_bucket)), sorted(set(in_bucket) - set(expected))
    assert not missing and not extra, f"missing in the bucket: {missing}\nonly in the bucket: {extra}"
    # no artifact is left behind in the working directory (a script that wrote anywhere but snakemake.output
    # would leave one there)
    left_local = artifacts(local_files(s3_done / STUDY)) if (s3_done / STUDY).exists() else []
    assert left_local == [], f"artifacts written to the working directory, not storage: {left_local}"
    # logs and benchmarks are not compared: where they go is Snakemake's choice (9.27 stores both)
    for kind in LOCAL_ONLY:
        n_bucket = sum(k.removeprefix(prefix).startswith(kind + "/") for k in keys)
        n_local = len(local_files(s3_done / STUDY / kind)) if (s3_done / STUDY / kind).exists() else 0
        print(f"\n{kind}/: {n_bucket} in the bucket, {n_local} in the working directory")


def test_activations_open_from_s3_with_the_local_values(s3, local, s3_done):
    url = s3.url(f"{S3_PREFIX}/{STUDY}/runs/{RUN}/activations.zarr")
    remote = open_zarr_strict(url, storage_options=s3.storage_options)
    assert_same_dataset(open_zarr_strict(local / "runs" / RUN / "activations.zarr"), remote, "activations.zarr")
    assert remote.sizes["epoch"] > 1 and "act_1" in remote and "w_out" in remote


def test_netcdf_artifacts_from_s3_equal_the_local_files(s3, local, s3_done):
    names = [f"runs/{RUN}/curves.nc"] + sorted(
        p.relative_to(local).as_posix() for p in (local / "metrics" / RUN).glob("*.nc"))
    assert len(names) > 1, "no metrics/<run>/*.nc in the local run"
    fs = s3.filesystem()
    for name in names:
        with fs.open(s3.url(f"{S3_PREFIX}/{STUDY}/{name}"), "rb") as f:
            remote = open_netcdf(f)
        assert_same_dataset(open_netcdf(local / name), remote, name)


def test_second_s3_run_schedules_nothing(s3, s3_done):
    result = storage_run(s3_done, "-n", *s3_args(s3.url(S3_PREFIX)), env=s3.snakemake_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert scheduled_jobs(output(result)) == {}, output(result)[-4000:]


def assert_refused_before_any_job(result, workdir: Path) -> str:
    """Non-zero exit, one `ddscope: storage error:` line, no traceback, no job started; returns that line."""
    text = output(result)
    print(f"--- stderr of the refused run:\n{result.stderr.strip()}")
    assert result.returncode != 0, text[-4000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("ddscope: storage error:")]
    assert len(lines) == 1, result.stderr[-4000:]
    assert "Traceback" not in text, text[-4000:]
    assert "rule train" not in text and "localrule train" not in text, text[-4000:]
    assert not list(Path(workdir).rglob("train/*.log")), "a training job was started"
    return lines[0]


def test_wrong_secret_is_one_line_before_any_job(s3, tmp_path):
    prefix = "wrong-secret"
    env = s3.snakemake_env(secret_key="not-the-secret-" + s3.secret_key[:4])
    result = storage_run(tmp_path, *s3_args(s3.url(prefix)), env=env, timeout=300)
    assert_refused_before_any_job(result, tmp_path)
    assert s3.keys(f"{prefix}/") == [] and s3.keys(prefix) == []


def test_missing_bucket_is_one_line_before_any_job(s3, tmp_path):
    bucket = "no-such-bucket-ddscope"
    result = storage_run(tmp_path, *s3_args(f"s3://{bucket}/ddscope"), env=s3.snakemake_env(), timeout=300)
    line = assert_refused_before_any_job(result, tmp_path)
    assert bucket in line
    # nothing written: the bucket was not created behind the user's back
    assert bucket not in [b["Name"] for b in s3.client().list_buckets()["Buckets"]]
    assert not (s3.root / bucket).exists()


# ---------------------------------------------------------------- shared filesystem (fs plugin)


def test_fs_storage_prefix_holds_every_artifact_with_the_local_values(local, tmp_path):
    if shutil.which("rsync") is None:  # the fs plugin copies with rsync (FileNotFoundError: 'rsync' without it)
        pytest.skip("rsync not found: snakemake-storage-plugin-fs needs it (apt-get install rsync)")
    workdir, shared = tmp_path / "work", tmp_path / "shared"
    workdir.mkdir()
    with timed("fs run of the tiny study"):
        result = storage_run(workdir, "--default-storage-provider", "fs", "--default-storage-prefix", shared)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    stored = shared / STUDY
    expected = artifacts(local_files(local))
    in_prefix = artifacts(local_files(stored)) if stored.exists() else []
    missing, extra = sorted(set(expected) - set(in_prefix)), sorted(set(in_prefix) - set(expected))
    assert not missing and not extra, f"missing under the prefix: {missing}\nonly under the prefix: {extra}"
    left_local = artifacts(local_files(workdir / STUDY)) if (workdir / STUDY).exists() else []
    assert left_local == [], f"artifacts written to the working directory, not storage: {left_local}"
    assert_same_dataset(open_netcdf(local / "runs" / RUN / "curves.nc"),
                        open_netcdf(stored / "runs" / RUN / "curves.nc"), "curves.nc (fs)")
    assert_same_dataset(open_zarr_strict(local / "runs" / RUN / "activations.zarr"),
                        open_zarr_strict(stored / "runs" / RUN / "activations.zarr"), "activations.zarr (fs)")
