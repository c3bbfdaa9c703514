"""Datasets: MNIST-1D generated offline, CIFAR-10 from the standard `cifar-10-batches-py` pickles."""

from __future__ import annotations

import hashlib
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from .artifacts import ArtifactError, sha256_arrays

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


class DatasetError(RuntimeError):
    """A dataset that cannot be found or read; the message says what to do."""


# --- MNIST-1D -------------------------------------------------------------------------------------


def make_mnist1d(n_train: int, n_test: int, seed: int) -> dict:
    """Generate MNIST-1D offline (never its downloader). Returns raw float32 arrays and labels."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    n = n_train + n_test
    args.num_samples = -(-n // 10) * 10  # the generator makes num_samples // 10 per class
    args.train_split = 1.0
    args.seed = seed
    d = make_dataset(args)
    x = np.concatenate([d["x"], d["x_test"]]).astype(np.float32)
    y = np.concatenate([d["y"], d["y_test"]]).astype(np.int64)
    return {
        "x_train": x[:n_train], "y_train": y[:n_train], "x_test": x[n_train:n], "y_test": y[n_train:n],
        "channels": 1, "source": f"mnist1d.data.make_dataset (mnist1d package, seed {seed})",
    }


# --- CIFAR-10 -------------------------------------------------------------------------------------


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def download_cifar10(data_dir: Path, url: str | None = None) -> None:
    """Fetch the official python archive, check its md5, extract; leaves nothing behind on failure."""
    url = url or CIFAR10_URL
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir) as tmp:
        archive = Path(tmp) / "cifar-10-python.tar.gz"
        try:
            urllib.request.urlretrieve(url, archive)
        except OSError as e:
            raise DatasetError(
                f"could not download CIFAR-10 from {url} ({e}); download cifar-10-python.tar.gz by hand and "
                f"extract it so that {data_dir}/cifar-10-batches-py/ holds {', '.join(CIFAR10_FILES)}") from None
        if (md5 := _md5(archive)) != CIFAR10_MD5:
            raise DatasetError(f"downloaded CIFAR-10 archive has md5 {md5}, expected {CIFAR10_MD5}; try again")
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        shutil.move(str(Path(tmp) / "cifar-10-batches-py"), data_dir / "cifar-10-batches-py")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        x = np.asarray(batch[b"data"], dtype=np.uint8)
        y = np.asarray(batch[b"labels"], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError) as e:
        raise DatasetError(f"{path}: not a readable CIFAR-10 python batch ({type(e).__name__}); "
                           "replace it with the file from the official cifar-10-python.tar.gz") from None
    if x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(y):
        raise DatasetError(f"{path}: expected data [n, 3072] and n labels, got {x.shape} and {len(y)}")
    return x, y


def read_cifar10(data_dir: str | Path, download: bool = False) -> dict:
    """Read cifar-10-batches-py from data_dir (downloading first if allowed). Pixels scaled to [0, 1]."""
    folder = Path(data_dir) / "cifar-10-batches-py"
    missing = [f for f in CIFAR10_FILES if not (folder / f).exists()]
    if missing and download:
        download_cifar10(Path(data_dir))
        missing = [f for f in CIFAR10_FILES if not (folder / f).exists()]
    if missing:
        raise DatasetError(
            f"CIFAR-10 not found: {folder}/ lacks {', '.join(missing)}. Put the extracted cifar-10-batches-py/ "
            f"folder of the official cifar-10-python.tar.gz (md5 {CIFAR10_MD5}) there, "
            "or set dataset.download: true on a machine with internet access")
    batches = [_read_cifar_batch(folder / f) for f in CIFAR10_FILES]
    raw = hashlib.sha256()
    for f in CIFAR10_FILES:
        raw.update((folder / f).read_bytes())
    x_train = np.concatenate([b[0] for b in batches[:5]])
    y_train = np.concatenate([b[1] for b in batches[:5]])
    return {
        "x_train": x_train.astype(np.float32) / 255.0, "y_train": y_train,
        "x_test": batches[5][0].astype(np.float32) / 255.0, "y_test": batches[5][1],
        "channels": 3, "source": f"cifar-10-batches-py in {folder}", "raw_sha256": raw.hexdigest(),
    }


# --- normalisation and the artifact ---------------------------------------------------------------


def standardise(x_train: np.ndarray, x_test: np.ndarray, channels: int):
    """Standardise per channel with training statistics. Features are laid out channel-major (CIFAR: 3×1024)."""
    n, d = x_train.shape
    xt = x_train.reshape(n, channels, d // channels).astype(np.float64)
    mean = xt.mean(axis=(0, 2))
    std = xt.std(axis=(0, 2))
    std = np.where(std > 0, std, 1.0)

    def apply(x):
        return ((x.reshape(len(x), channels, -1) - mean[:, None]) / std[:, None]).reshape(len(x), d).astype(np.float32)

    return apply(x_train), apply(x_test), mean, std


def prepare_dataset(dataset_cfg: dict) -> tuple[dict[str, np.ndarray], dict]:
    """Build the arrays and attrs of data/dataset.h5 from the `dataset` config section."""
    name = dataset_cfg["name"]
    if name == "mnist1d":
        raw = make_mnist1d(dataset_cfg["n_train"], dataset_cfg["n_test"], dataset_cfg["seed"])
    elif name == "cifar10":
        raw = read_cifar10(dataset_cfg["data_dir"], dataset_cfg["download"])
    else:
        raise DatasetError(f"dataset.name: unknown dataset {name!r}")
    raw_sha = raw.get("raw_sha256") or sha256_arrays(raw["x_train"], raw["y_train"], raw["x_test"], raw["y_test"])
    x_train, x_test, mean, std = standardise(raw["x_train"], raw["x_test"], raw["channels"])
    arrays = {"x_train": x_train, "y_train": raw["y_train"], "x_test": x_test, "y_test": raw["y_test"]}
    for k in ("y_train", "y_test"):
        if arrays[k].min() < 0:
            raise ArtifactError(f"{name}: negative labels in {k}")
    attrs = {
        "name": name,
        "source": raw["source"],
        "sha256": raw_sha,
        "content_sha256": sha256_arrays(*arrays.values()),
        "normalisation": "per-channel standardisation with training mean/std",
        "norm_mean": mean,
        "norm_std": std,
        "n_classes": int(max(arrays["y_train"].max(), arrays["y_test"].max()) + 1),
    }
    return arrays, attrs
