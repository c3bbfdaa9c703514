"""Artifact storage: a check of the storage a study runs on before any job starts, and reading artifacts where
they live (a local path, or an s3:// URL through s3fs).

The check runs when the workflow loads (the Snakefile calls check_storage); a wrong secret, a missing bucket or
an unreachable endpoint then stop the run with one line, before training writes anything. Left to Snakemake,
the S3 plugin reports these late and at length, and quietly creates a missing bucket.
"""

from __future__ import annotations

import os
from pathlib import Path


class StorageError(RuntimeError):
    """The study's storage cannot be used (reported as one line)."""


def split_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix")."""
    if not url.startswith("s3://") or len(url) <= 5:
        raise StorageError(f"{url!r} is not an s3://bucket/prefix URL")
    bucket, _, prefix = url[5:].partition("/")
    return bucket, prefix.strip("/")


_CREDENTIALS_HINT = ("set SNAKEMAKE_STORAGE_S3_ACCESS_KEY and SNAKEMAKE_STORAGE_S3_SECRET_KEY (or an AWS profile); "
                     "see README, 'Artifacts in S3'")


def check_s3(prefix: str, endpoint_url: str | None = None, access_key: str | None = None,
             secret_key: str | None = None, token: str | None = None, region: str | None = None) -> None:
    """List one key under the prefix with the storage plugin's settings; raise StorageError with the cause."""
    import boto3
    import botocore.exceptions as bx

    bucket, key_prefix = split_s3_url(prefix)
    where = f"{prefix} at {endpoint_url or 'AWS S3'}"
    client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region, aws_access_key_id=access_key,
                          aws_secret_access_key=secret_key, aws_session_token=token,
                          config=boto3.session.Config(retries={"max_attempts": 2, "mode": "standard"},
                                                      connect_timeout=10, read_timeout=30))
    try:
        client.list_objects_v2(Bucket=bucket, Prefix=key_prefix, MaxKeys=1)
    except bx.NoCredentialsError:
        raise StorageError(f"{where}: no credentials; {_CREDENTIALS_HINT}") from None
    except bx.EndpointConnectionError:
        raise StorageError(f"{where}: cannot connect to the endpoint (check --storage-s3-endpoint-url "
                           "or SNAKEMAKE_STORAGE_S3_ENDPOINT_URL)") from None
    except bx.ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket", "404"):
            raise StorageError(f"{where}: bucket {bucket!r} does not exist; create it first "
                               f"(e.g. `aws s3 mb s3://{bucket}`), ddscope never creates buckets") from None
        if code in ("SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "403",
                    "InvalidClientTokenId", "ExpiredToken"):
            raise StorageError(f"{where}: access refused ({code}): wrong access key or secret, or no "
                               f"permission on the bucket; {_CREDENTIALS_HINT}") from None
        raise StorageError(f"{where}: {code or type(e).__name__}: {e}") from None
    except bx.BotoCoreError as e:
        raise StorageError(f"{where}: {e}") from None


def check_fs(prefix: str) -> None:
    """A shared-filesystem prefix must exist or be creatable, and be writable."""
    path = Path(prefix)
    existing = next(p for p in [path, *path.parents] if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise StorageError(f"{prefix}: not writable ({existing} is not a writable directory)")


def check_storage(provider: str | None, prefix: str | None, settings) -> None:
    """Check the default storage of a run (`--default-storage-provider/-prefix`, the plugin's settings object)."""
    if provider == "s3":
        check_s3(prefix or "", **{k: getattr(settings, k, None) for k in
                                  ("endpoint_url", "access_key", "secret_key", "token", "region")})
    elif provider == "fs":
        check_fs(prefix or "")


def use_whole_second_s3_mtimes() -> None:
    """Make snakemake-storage-plugin-s3 (0.3.6) report every object's mtime at one precision: whole seconds.

    The plugin takes some mtimes from a bucket listing (ListObjects: milliseconds on MinIO, Ceph and
    `rclone serve s3`) and others from HEAD requests (Last-Modified: whole seconds). An input listed at
    12:00:05.270 then looks newer than an output stamped 12:00:05 by HEAD, and a finished study is
    rescheduled on every run. AWS S3 lists whole seconds itself, so there this changes nothing. Applied
    by the Snakefile when the default storage provider is s3; remove once the plugin reads one source.
    """
    import math

    from snakemake_interface_storage_plugins.io import Mtime
    from snakemake_storage_plugin_s3 import StorageObject

    if getattr(StorageObject, "_ddscope_whole_seconds", False):
        return
    inventory, mtime = StorageObject.inventory, StorageObject.mtime

    async def inventory_whole_seconds(self, cache):
        await inventory(self, cache)
        for key, value in list(cache.mtime.items()):
            if value.storage() is not None and value.storage() != math.floor(value.storage()):
                cache.mtime[key] = Mtime(storage=math.floor(value.storage()))

    StorageObject.inventory = inventory_whole_seconds
    StorageObject.mtime = lambda self: math.floor(mtime(self))
    StorageObject._ddscope_whole_seconds = True


def s3_storage_options(endpoint_url: str | None = None) -> dict:
    """fsspec/s3fs options for reading a study's artifacts on S3, with the credentials the workflow used.

    Keys come from SNAKEMAKE_STORAGE_S3_ACCESS_KEY/SECRET_KEY (what the storage plugin reads), else from the
    usual AWS variables or profile (s3fs' own lookup); the endpoint from the argument or
    SNAKEMAKE_STORAGE_S3_ENDPOINT_URL (else AWS_ENDPOINT_URL, which s3fs reads itself).
    """
    env = os.environ
    options: dict = {}
    key, secret = env.get("SNAKEMAKE_STORAGE_S3_ACCESS_KEY"), env.get("SNAKEMAKE_STORAGE_S3_SECRET_KEY")
    if key and secret:
        options.update(key=key, secret=secret)
    endpoint_url = endpoint_url or env.get("SNAKEMAKE_STORAGE_S3_ENDPOINT_URL")
    if endpoint_url:
        options["endpoint_url"] = endpoint_url
    return options


def open_netcdf(path_or_url: str | Path, storage_options: dict | None = None):
    """Open a NetCDF artifact (curves.nc, metrics/<run>/<analysis>.nc) from a path or an s3:// URL, loaded and
    checked against its content hash."""
    from .artifacts import read_netcdf

    url = str(path_or_url)
    if url.startswith("s3://"):
        import s3fs

        fs = s3fs.S3FileSystem(**(storage_options if storage_options is not None else s3_storage_options()))
        with fs.open(url, "rb") as f:
            return read_netcdf(url, fileobj=f)
    return read_netcdf(url)


def open_zarr(path_or_url: str | Path, storage_options: dict | None = None):
    """Open an activations.zarr lazily from a path or an s3:// URL (chunks are fetched when read)."""
    import xarray as xr

    url = str(path_or_url)
    if url.startswith("s3://"):
        options = storage_options if storage_options is not None else s3_storage_options()
        return xr.open_zarr(url, consolidated=True, storage_options=options)
    return xr.open_zarr(url, consolidated=True)
