"""A tiny CIFAR-10 in the exact on-disk format of the official `cifar-10-batches-py` folder.

Each batch is a pickle of a dict with bytes keys (as the Python-2 originals load with encoding="bytes"):
b"batch_label" (bytes), b"labels" (list of int), b"data" (uint8 [n, 3072], channel-major: 1024 red, then
1024 green, then 1024 blue values, each a 32x32 image row by row), b"filenames" (list of bytes);
plus batches.meta with b"label_names". Channels get clearly different intensity ranges so that tests can
tell them apart and check per-channel statistics.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
LABEL_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
# (low, high) pixel range of the red, green and blue channel
CHANNEL_RANGES = [(150, 256), (60, 140), (0, 40)]


def write_cifar10_fixture(folder, n_per_batch: int = 20, seed: int = 0) -> Path:
    """Write data_batch_1..5, test_batch and batches.meta into `folder` (created); returns the folder.

    Pass `<data_dir>/cifar-10-batches-py` to build what ddscope.data.read_cifar10(data_dir) expects.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, name in enumerate(BATCHES):
        channels = [rng.integers(lo, hi, size=(n_per_batch, 1024)) for lo, hi in CHANNEL_RANGES]
        data = np.concatenate(channels, axis=1).astype(np.uint8)
        labels = [int(c) for c in rng.permutation(np.arange(n_per_batch) % 10)]
        batch_label = b"testing batch 1 of 1" if name == "test_batch" else f"training batch {i + 1} of 5".encode()
        batch = {
            b"batch_label": batch_label,
            b"labels": labels,
            b"data": data,
            b"filenames": [f"fixture_{name}_{j:05d}.png".encode() for j in range(n_per_batch)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    meta = {b"num_cases_per_batch": n_per_batch, b"label_names": LABEL_NAMES, b"num_vis": 3072}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return folder


def load_fixture_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """The raw uint8 pixels and labels of one batch, read independently of ddscope."""
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    return np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
