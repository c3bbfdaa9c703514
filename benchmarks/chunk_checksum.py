"""Benchmark: what the crc32c checksum on every activations.zarr chunk costs, writing and reading.

Writes and reads a store the size of a default-study MLP7 run (51 recorded epochs × 1 500 probes, six hidden
layers of 128, float16, zstd level 1) with the store's codecs (zstd, then crc32c) and with zstd alone.
Best of --repeats runs, one process, one thread.

    python benchmarks/chunk_checksum.py
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

EPOCHS, PROBES, WIDTHS = 51, 1500, [128] * 6


def write(path: Path, codecs, data: list[np.ndarray]) -> None:
    group = zarr.open_group(path, mode="w", zarr_format=3)
    arrays = [group.create_array(f"act_{l}", shape=(EPOCHS, PROBES, w), chunks=(1, PROBES, w), dtype="float16",
                                 fill_value=np.nan, compressors=codecs) for l, w in enumerate(WIDTHS, 1)]
    for e in range(EPOCHS):
        for arr, d in zip(arrays, data):
            arr[e] = d[e]


def read(path: Path) -> None:
    group = zarr.open_group(path, mode="r", zarr_format=3)
    for name, arr in group.arrays():
        arr[:]


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    # post-ReLU-like data: half zeros, so zstd has work to do, as on real activations
    data = [np.maximum(rng.standard_normal((EPOCHS, PROBES, w)), 0).astype(np.float16) for w in WIDTHS]
    variants = {"zstd": (zarr.codecs.ZstdCodec(level=1),),
                "zstd + crc32c": (zarr.codecs.ZstdCodec(level=1), zarr.codecs.Crc32cCodec())}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, codecs in variants.items():
            path = Path(tmp) / name.replace(" ", "")
            w = best(lambda: (shutil.rmtree(path, ignore_errors=True), write(path, codecs, data)), args.repeats)
            r = best(lambda: read(path), args.repeats)
            results[name] = (w, r)
    mb = sum(d.nbytes for d in data) / 2**20
    print(f"{mb:.0f} MB of float16 activations, {EPOCHS * len(WIDTHS)} chunks")
    for name, (w, r) in results.items():
        print(f"{name:<15} write {w:.3f} s  read {r:.3f} s")
    (w0, r0), (w1, r1) = results["zstd"], results["zstd + crc32c"]
    print(f"checksum cost: write {100 * (w1 / w0 - 1):+.1f} %, read {100 * (r1 / r0 - 1):+.1f} %")


if __name__ == "__main__":
    main()
