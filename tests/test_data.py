"""Datasets (ddscope.data): CIFAR-10 from the python pickles (with a tiny on-disk fixture), its download path
(never touching the network), per-channel standardisation, MNIST-1D generated offline, and dataset.h5 hashes."""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.request

import h5py
import numpy as np
import pytest
from cifar_fixture import BATCHES, CHANNEL_RANGES, load_fixture_batch, write_cifar10_fixture

import ddscope.data
from ddscope.artifacts import DATASET_ARRAYS, ArtifactError, read_dataset, sha256_arrays, write_h5
from ddscope.data import CIFAR10_FILES, DatasetError, make_mnist1d, prepare_dataset, read_cifar10

N = 20  # images per fixture batch


@pytest.fixture
def cifar_dir(tmp_path):
    """data_dir holding cifar-10-batches-py/ with 5 x 20 training and 20 test images."""
    data_dir = tmp_path / "cifar10"
    write_cifar10_fixture(data_dir / "cifar-10-batches-py", n_per_batch=N, seed=0)
    return data_dir


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if anything tries to download."""

    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(urllib.request, "urlretrieve", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def raw_fixture(data_dir):
    folder = data_dir / "cifar-10-batches-py"
    train = [load_fixture_batch(folder / name) for name in BATCHES[:5]]
    test = load_fixture_batch(folder / "test_batch")
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), test[0], test[1])


def files_under(path) -> list[str]:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*")) if path.exists() else []


# --- reading CIFAR-10 ---------------------------------------------------------------------------------


def test_fixture_has_the_official_layout(cifar_dir):
    folder = cifar_dir / "cifar-10-batches-py"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*CIFAR10_FILES, "batches.meta"])
    x, y = load_fixture_batch(folder / "data_batch_1")
    assert x.dtype == np.uint8 and x.shape == (N, 3072)
    assert sorted(set(y.tolist())) == list(range(10))


def test_read_cifar10(cifar_dir, no_network):
    got = read_cifar10(cifar_dir)
    x_train, y_train, x_test, y_test = raw_fixture(cifar_dir)
    assert got["x_train"].shape == (5 * N, 3072) and got["x_train"].dtype == np.float32
    assert got["x_test"].shape == (N, 3072) and got["x_test"].dtype == np.float32
    assert got["y_train"].dtype == np.int64 and got["y_test"].dtype == np.int64
    np.testing.assert_array_equal(got["y_train"], y_train)
    np.testing.assert_array_equal(got["y_test"], y_test)
    np.testing.assert_allclose(got["x_train"], x_train / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_allclose(got["x_test"], x_test / 255.0, rtol=0, atol=1e-7)
    assert 0.0 <= got["x_train"].min() and got["x_train"].max() <= 1.0
    assert got["channels"] == 3
    # the batches are concatenated in order data_batch_1..5
    np.testing.assert_array_equal(got["y_train"][:N], load_fixture_batch(cifar_dir / "cifar-10-batches-py/data_batch_1")[1])
    raw = hashlib.sha256(b"".join((cifar_dir / "cifar-10-batches-py" / f).read_bytes() for f in CIFAR10_FILES))
    assert got["raw_sha256"] == raw.hexdigest()


def test_prepare_cifar10_standardises_per_channel(cifar_dir, no_network):
    arrays, attrs = prepare_dataset({"name": "cifar10", "data_dir": str(cifar_dir), "download": False})
    assert list(arrays) == DATASET_ARRAYS
    x_train_raw, y_train, x_test_raw, y_test = raw_fixture(cifar_dir)
    raw = (x_train_raw / 255.0).reshape(-1, 3, 1024)  # channel-major: R, G, B blocks of 1024
    mean, std = raw.mean(axis=(0, 2)), raw.std(axis=(0, 2))
    # the fixture's channels differ, so a wrong (interleaved) layout would give other statistics
    for c, (lo, hi) in enumerate(CHANNEL_RANGES):
        assert lo / 255 <= mean[c] <= hi / 255
    np.testing.assert_allclose(attrs["norm_mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(attrs["norm_std"], std, rtol=1e-6)
    x = arrays["x_train"].reshape(-1, 3, 1024).astype(np.float64)
    np.testing.assert_allclose(x.mean(axis=(0, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=(0, 2)), 1.0, atol=1e-5)
    # the test set uses the training statistics
    expected_test = ((x_test_raw / 255.0).reshape(-1, 3, 1024) - mean[:, None]) / std[:, None]
    np.testing.assert_allclose(arrays["x_test"], expected_test.reshape(-1, 3072), atol=1e-5)
    assert arrays["x_train"].dtype == np.float32 and arrays["x_test"].dtype == np.float32
    np.testing.assert_array_equal(arrays["y_train"], y_train)
    np.testing.assert_array_equal(arrays["y_test"], y_test)
    assert attrs["name"] == "cifar10"
    assert "cifar-10-batches-py" in attrs["source"]
    assert attrs["n_classes"] == 10
    assert "standardisation" in attrs["normalisation"]
    assert attrs["content_sha256"] == sha256_arrays(*(arrays[k] for k in DATASET_ARRAYS))
    assert len(attrs["sha256"]) == 64


def test_missing_files_name_the_folder_and_the_files(cifar_dir, no_network):
    folder = cifar_dir / "cifar-10-batches-py"
    (folder / "data_batch_2").unlink()
    (folder / "test_batch").unlink()
    with pytest.raises(DatasetError) as info:
        read_cifar10(cifar_dir, download=False)
    message = str(info.value)
    assert str(folder) in message
    assert "data_batch_2" in message and "test_batch" in message
    assert "data_batch_1" not in message.split("lacks")[-1].split(".")[0]
    assert "download" in message, "says how to get the data"


def test_missing_folder(tmp_path, no_network):
    with pytest.raises(DatasetError) as info:
        prepare_dataset({"name": "cifar10", "data_dir": str(tmp_path / "nowhere"), "download": False})
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in message
    for name in CIFAR10_FILES:
        assert name in message
    assert not (tmp_path / "nowhere").exists(), "download: false creates nothing"


def test_truncated_batch(cifar_dir, no_network):
    path = cifar_dir / "cifar-10-batches-py" / "data_batch_3"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="data_batch_3"):
        read_cifar10(cifar_dir)


def test_garbage_batch(cifar_dir, no_network):
    (cifar_dir / "cifar-10-batches-py" / "test_batch").write_bytes(b"<html>404 not found</html>")
    with pytest.raises(DatasetError, match="test_batch"):
        read_cifar10(cifar_dir)


def test_batch_with_wrong_shape(cifar_dir, no_network):
    import pickle

    path = cifar_dir / "cifar-10-batches-py" / "data_batch_4"
    with open(path, "wb") as f:
        pickle.dump({b"labels": [0, 1], b"data": np.zeros((2, 1024), np.uint8)}, f, protocol=2)
    with pytest.raises(DatasetError, match="data_batch_4"):
        read_cifar10(cifar_dir)


# --- downloading (never the real network) -----------------------------------------------------------------


def test_unreachable_download_leaves_nothing(tmp_path, monkeypatch):
    def unreachable(url, filename=None, *args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlretrieve", unreachable)
    data_dir = tmp_path / "data"
    with pytest.raises(DatasetError) as info:
        read_cifar10(data_dir, download=True)
    assert "could not download" in str(info.value)
    assert "cifar-10-batches-py" in str(info.value), "says where to put the data by hand"
    assert files_under(data_dir) == []


def test_download_cut_off_midway_leaves_nothing(tmp_path, monkeypatch):
    def cut_off(url, filename, *args, **kwargs):
        with open(filename, "wb") as f:
            f.write(b"\x1f\x8b" + b"\0" * 1000)
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(urllib.request, "urlretrieve", cut_off)
    data_dir = tmp_path / "data"
    with pytest.raises(DatasetError):
        read_cifar10(data_dir, download=True)
    assert files_under(data_dir) == []


def test_unreachable_url(tmp_path):
    """A URL that cannot be fetched (a file:// URL, so no network is involved) is a DatasetError."""
    data_dir = tmp_path / "data"
    with pytest.raises(DatasetError, match="could not download"):
        ddscope.data.download_cifar10(data_dir, url=(tmp_path / "absent.tar.gz").as_uri())
    assert files_under(data_dir) == []


def test_md5_mismatch_leaves_nothing(tmp_path, monkeypatch):
    def fake(url, filename, *args, **kwargs):
        with open(filename, "wb") as f:
            f.write(b"this is not the CIFAR-10 archive")
        return filename, None

    monkeypatch.setattr(urllib.request, "urlretrieve", fake)
    data_dir = tmp_path / "data"
    with pytest.raises(DatasetError, match="md5"):
        read_cifar10(data_dir, download=True)
    assert files_under(data_dir) == []


@pytest.fixture
def fixture_archive(tmp_path):
    """A cifar-10-python.tar.gz of the fixture, laid out like the official one, and its md5."""
    source = write_cifar10_fixture(tmp_path / "src" / "cifar-10-batches-py", n_per_batch=N, seed=1)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="cifar-10-batches-py")
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def test_successful_download(tmp_path, monkeypatch, fixture_archive):
    archive, md5 = fixture_archive
    calls = []

    def serve(url, filename, *args, **kwargs):
        calls.append(url)
        shutil.copyfile(archive, filename)
        return filename, None

    monkeypatch.setattr(urllib.request, "urlretrieve", serve)
    monkeypatch.setattr(ddscope.data, "CIFAR10_MD5", md5)
    data_dir = tmp_path / "data"
    got = read_cifar10(data_dir, download=True)
    assert calls == [ddscope.data.CIFAR10_URL]
    assert got["x_train"].shape == (5 * N, 3072) and got["x_test"].shape == (N, 3072)
    expected = raw_fixture(tmp_path / "src")
    np.testing.assert_array_equal(got["y_train"], expected[1])
    np.testing.assert_allclose(got["x_test"], expected[2] / 255.0, atol=1e-7)
    # only the extracted folder is left: no archive, no temporary directory
    assert files_under(data_dir) == sorted(
        ["cifar-10-batches-py"] + [f"cifar-10-batches-py/{f}" for f in [*CIFAR10_FILES, "batches.meta"]])
    # a second read finds the files and does not download again
    read_cifar10(data_dir, download=True)
    assert len(calls) == 1


def test_present_data_is_not_downloaded(cifar_dir, no_network):
    arrays, _ = prepare_dataset({"name": "cifar10", "data_dir": str(cifar_dir), "download": True})
    assert arrays["x_train"].shape == (5 * N, 3072)


# --- MNIST-1D (generated, never downloaded) ------------------------------------------------------------------


@pytest.fixture
def no_mnist1d_download(monkeypatch, no_network):
    import mnist1d.data

    def refuse(*args, **kwargs):
        raise AssertionError("mnist1d's downloader was called")

    monkeypatch.setattr(mnist1d.data, "get_dataset", refuse)
    monkeypatch.setattr(mnist1d.data.requests, "get", refuse)


@pytest.fixture(scope="module")
def mnist1d_small():
    return make_mnist1d(200, 100, seed=0)


def test_make_mnist1d_shapes(mnist1d_small, no_mnist1d_download):
    d = mnist1d_small
    assert d["x_train"].shape == (200, 40) and d["x_train"].dtype == np.float32
    assert d["x_test"].shape == (100, 40) and d["x_test"].dtype == np.float32
    assert d["y_train"].shape == (200,) and d["y_train"].dtype == np.int64
    assert d["y_test"].shape == (100,) and d["y_test"].dtype == np.int64
    assert set(np.unique(d["y_train"])) <= set(range(10)) and len(np.unique(d["y_train"])) == 10
    assert d["channels"] == 1
    assert np.isfinite(d["x_train"]).all()


def test_make_mnist1d_sizes_not_multiple_of_ten(no_mnist1d_download):
    d = make_mnist1d(205, 97, seed=3)
    assert d["x_train"].shape == (205, 40) and d["x_test"].shape == (97, 40)
    assert len(d["y_train"]) == 205 and len(d["y_test"]) == 97


def test_make_mnist1d_is_deterministic(mnist1d_small, no_mnist1d_download):
    again = make_mnist1d(200, 100, seed=0)
    other = make_mnist1d(200, 100, seed=1)
    for k in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(again[k], mnist1d_small[k])
    assert not np.array_equal(other["x_train"], mnist1d_small["x_train"])


def test_prepare_mnist1d(no_mnist1d_download):
    arrays, attrs = prepare_dataset({"name": "mnist1d", "n_train": 200, "n_test": 100, "seed": 0})
    assert list(arrays) == DATASET_ARRAYS
    x = arrays["x_train"].astype(np.float64)
    assert abs(x.mean()) < 1e-5 and abs(x.std() - 1) < 1e-5
    assert attrs["name"] == "mnist1d" and "mnist1d" in attrs["source"]
    assert attrs["n_classes"] == 10
    assert len(attrs["norm_mean"]) == len(attrs["norm_std"]) == 1
    assert attrs["content_sha256"] == sha256_arrays(*(arrays[k] for k in DATASET_ARRAYS))


def test_dataset_file_round_trip_and_tampering(tmp_path, no_mnist1d_download):
    arrays, attrs = prepare_dataset({"name": "mnist1d", "n_train": 200, "n_test": 100, "seed": 0})
    path = tmp_path / "data" / "dataset.h5"
    write_h5(path, arrays, attrs)
    got, got_attrs = read_dataset(path)
    for k in DATASET_ARRAYS:
        np.testing.assert_array_equal(got[k], arrays[k])
        assert got[k].dtype == arrays[k].dtype
    assert got_attrs["content_sha256"] == attrs["content_sha256"]
    with h5py.File(path, "r+") as f:
        f["x_train"][3, 7] += 0.5
    with pytest.raises(ArtifactError, match="content_sha256"):
        read_dataset(path)
    read_dataset(path, verify=False)  # an explicit opt-out still reads


def test_unknown_dataset_name():
    with pytest.raises(DatasetError, match="dataset.name"):
        prepare_dataset({"name": "imagenet"})
