"""Storage pre-flight checks and URL handling (the real S3 and shared-filesystem runs: test_storage.py)."""

import pytest

from ddscope.storage import StorageError, check_fs, check_storage, s3_storage_options, split_s3_url


def test_split_s3_url():
    assert split_s3_url("s3://bkt/a/b/") == ("bkt", "a/b")
    assert split_s3_url("s3://bkt") == ("bkt", "")
    with pytest.raises(StorageError, match="not an s3://"):
        split_s3_url("bkt/a")


def test_fs_prefix_may_be_created(tmp_path):
    check_fs(str(tmp_path / "new" / "prefix"))


def test_fs_prefix_under_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="not a writable directory"):
        check_storage("fs", str(tmp_path / "file" / "prefix"), None)


def test_unreachable_endpoint_is_one_line():
    class Settings:
        endpoint_url, access_key, secret_key, token, region = "http://127.0.0.1:9", "ACCESSKEY", "SECRET", None, None

    with pytest.raises(StorageError, match="cannot connect to the endpoint"):
        check_storage("s3", "s3://bkt/prefix", Settings())


def test_no_provider_is_nothing_to_check():
    check_storage(None, None, None)


def test_storage_options_from_the_plugin_variables(monkeypatch):
    monkeypatch.setenv("SNAKEMAKE_STORAGE_S3_ACCESS_KEY", "KEY123")
    monkeypatch.setenv("SNAKEMAKE_STORAGE_S3_SECRET_KEY", "SECRET")
    monkeypatch.setenv("SNAKEMAKE_STORAGE_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    assert s3_storage_options() == {"key": "KEY123", "secret": "SECRET", "endpoint_url": "http://127.0.0.1:9000"}
    monkeypatch.delenv("SNAKEMAKE_STORAGE_S3_SECRET_KEY")
    assert s3_storage_options("http://other") == {"endpoint_url": "http://other"}
