"""Benchmark: all-pairs linear CKA (stacked centred Grams, one matmul) vs a pairwise Python loop.

The loop is what common CKA libraries do: for each of the E(E+1)/2 epoch pairs, centre both feature
matrices and evaluate ||YᵀX||²_F / (||XᵀX||_F ||YᵀY||_F) (ddscope.analyses.cka.linear_cka_pair), here in the
inputs' dtype (float32), as those libraries do. Both sides use the same torch thread count.
A few pairs are also checked against a float64 evaluation of the same formula. Wall and CPU times are
printed: on a shared machine the CPU-time ratio is the steadier of the two.

    python benchmarks/cka_allpairs.py                 # 100 epochs × 1000 probes × 512 units
    python benchmarks/cka_allpairs.py --epochs 30 --threads 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ddscope.analyses.cka import choose_form, linear_cka_all_pairs, linear_cka_pair  # noqa: E402


def make_features(epochs: int, samples: int, units: int, seed: int) -> np.ndarray:
    """A layer drifting over training: post-ReLU features of a slowly rotating random map, float32."""
    rng = np.random.default_rng(seed)
    inputs = rng.standard_normal((samples, 64)).astype(np.float32)
    w = rng.standard_normal((64, units)).astype(np.float32)
    feats = np.empty((epochs, samples, units), dtype=np.float32)
    for t in range(epochs):
        w = w + 0.1 * rng.standard_normal(w.shape).astype(np.float32)
        feats[t] = np.maximum(inputs @ w, 0.0)
    return feats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--units", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch threads for both (default: all cores)")
    parser.add_argument("--debiased", action="store_true")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    parser.add_argument("--check-pairs", type=int, default=5, help="pairs also evaluated in float64")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    feats = make_features(args.epochs, args.samples, args.units, args.seed)
    n_pairs = args.epochs * (args.epochs + 1) // 2
    form = choose_form(args.epochs, args.samples, args.units)
    print(f"features: {args.epochs} epochs x {args.samples} samples x {args.units} units, float32; "
          f"threads: {torch.get_num_threads()}; debiased: {args.debiased}")

    linear_cka_all_pairs(feats[:2], debiased=args.debiased)  # warm-up (thread pool, allocator)
    start, cpu = time.perf_counter(), time.process_time()
    fast = linear_cka_all_pairs(feats, debiased=args.debiased)
    t_fast, c_fast = time.perf_counter() - start, time.process_time() - cpu

    loop = np.eye(args.epochs)
    tensors = [torch.from_numpy(f) for f in feats]
    start, cpu = time.perf_counter(), time.process_time()
    for s in range(args.epochs):
        for t in range(s, args.epochs):
            loop[s, t] = loop[t, s] = linear_cka_pair(tensors[s], tensors[t], debiased=args.debiased,
                                                      dtype=torch.float32)
    t_loop, c_loop = time.perf_counter() - start, time.process_time() - cpu

    diff = float(np.max(np.abs(fast - loop)))
    rng = np.random.default_rng(args.seed + 1)
    pairs = [tuple(rng.integers(0, args.epochs, 2)) for _ in range(args.check_pairs)]
    ref64 = [linear_cka_pair(feats[s], feats[t], debiased=args.debiased) for s, t in pairs]
    err_fast = max((abs(fast[s, t] - r) for (s, t), r in zip(pairs, ref64)), default=0.0)
    err_loop = max((abs(loop[s, t] - r) for (s, t), r in zip(pairs, ref64)), default=0.0)

    print(f"all-pairs ({form} form, one matmul per block): {t_fast:.3f} s wall, {c_fast:.3f} s CPU")
    print(f"pairwise loop over {n_pairs} pairs: {t_loop:.3f} s wall, {c_loop:.3f} s CPU")
    print(f"speed-up: {t_loop / t_fast:.1f}x wall ({c_loop / c_fast:.1f}x CPU time)")
    verdict = "OK" if diff <= args.tolerance else "FAIL"
    print(f"max |all-pairs - loop| = {diff:.2e} (tolerance {args.tolerance:g}): {verdict}")
    print(f"max error vs float64 on {len(pairs)} pairs: all-pairs {err_fast:.2e}, loop {err_loop:.2e}")
    return 0 if diff <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
