"""Benchmark: ddscope's training epoch against a typical DataLoader loop and the matmul compute bound.

    python benchmarks/train_epoch.py                       # the paper's MLP7 shapes, 10 000 samples, CPU
    python benchmarks/train_epoch.py --n 50000 --device cuda   # CIFAR-10-sized, on a GPU

Measures, in one process on the same data and model shapes:
  1. ddscope: ddscope.train.train_epoch (tensors on the device, batches are slices of a permutation, fused Adam);
  2. reference: torch DataLoader over a TensorDataset, shuffle=True, default Adam, as research code usually does;
  3. compute bound: only the forward and backward matmuls of every batch (torch.mm on preallocated tensors);
  4. recording: ddscope's epoch plus recording the probes into a Zarr store (as at every recorded epoch),
     and that cost amortised over the default schedule.
Prints each time (median of --repeats epochs after one warm-up) and the ratios.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from ddscope.config import record_epochs
from ddscope.models import MLP, resolve_device
from ddscope.recording import ActivationStore
from ddscope.train import graphed_step, make_optimizer, record, train_epoch


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def dataloader_epoch(model, opt, loader, device) -> None:
    """One epoch as research code usually trains: batches from a DataLoader, copied to the device."""
    model.train()
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10000, help="training samples")
    p.add_argument("--dim", type=int, default=3072)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--layers", type=int, default=6, help="hidden layers (MLP7 = 6)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--probes", type=int, default=1500, help="probe samples recorded per epoch")
    p.add_argument("--epochs", type=int, default=300, help="run length, to amortise the recording schedule")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    hidden = [args.width] * args.layers
    g = torch.Generator().manual_seed(0)
    x_cpu = torch.randn(args.n, args.dim, generator=g)
    y_cpu = torch.randint(0, args.classes, (args.n,), generator=g)
    x, y = x_cpu.to(device), y_cpu.to(device)
    spec = {"lr": 1e-4, "betas": (0.9, 0.999), "weight_decay": 0.0}
    print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else f'{args.threads} threads'}), "
          f"n={args.n}, {args.dim} -> {args.width} x{args.layers} -> {args.classes}, batch {args.batch}")

    def fresh():
        torch.manual_seed(0)
        return MLP(args.dim, hidden, args.classes).to(device)

    # 1. ddscope
    model = fresh()
    opt = make_optimizer(model, spec, device)
    shuffle = torch.Generator().manual_seed(0)
    graphed = graphed_step(model, opt, 0.0, device)
    t_ours = timed(lambda: train_epoch(model, opt, x, y, args.batch, shuffle, graphed=graphed), device, args.repeats)

    # 2. reference loop
    ref = fresh()
    ref_opt = torch.optim.Adam(ref.parameters(), lr=spec["lr"])
    loader = DataLoader(TensorDataset(x_cpu, y_cpu), batch_size=args.batch, shuffle=True)

    t_ref = timed(lambda: dataloader_epoch(ref, ref_opt, loader, device), device, args.repeats)

    # 3. compute bound: forward (x W^T), backward (grad_in = g W, grad_W = g^T x) matmuls of every batch
    widths = [args.dim, *hidden, args.classes]
    ws = [torch.randn(o, i, device=device) for i, o in zip(widths[:-1], widths[1:])]
    acts = [torch.randn(args.batch, w, device=device) for w in widths]
    n_batches = -(-args.n // args.batch)

    def matmuls_only():
        for _ in range(n_batches):
            for l, w in enumerate(ws):
                torch.mm(acts[l], w.t(), out=acts[l + 1])
            for l in reversed(range(len(ws))):
                grad_out = acts[l + 1]
                torch.mm(grad_out.t(), acts[l])  # weight gradient
                if l > 0:
                    torch.mm(grad_out, ws[l], out=acts[l])  # input gradient

    t_bound = timed(matmuls_only, device, args.repeats)

    # 4. recording: ddscope epoch + probe forward + zarr write of one epoch (waited for)
    probes = x[: args.probes]
    with tempfile.TemporaryDirectory() as tmp:
        schedule = record_epochs({"epochs": {"first": 10, "log_count": 40}}, args.epochs)
        coords = {"sample": np.arange(args.probes), "subset": np.array(["clean"] * args.probes),
                  "y_assigned": np.zeros(args.probes, dtype=np.int64), "y_original": np.zeros(args.probes, dtype=np.int64)}
        store = ActivationStore.create(f"{tmp}/a.zarr", list(range(args.repeats + 2)), coords, hidden,
                                       args.classes, "float16", {})
        slot = itertools.count()

        def recorded_epochs():
            # as in training: the write of one epoch overlaps with the next epochs, waited for at the end
            for _ in range(args.repeats):
                train_epoch(model, opt, x, y, args.batch, shuffle, graphed=graphed)
                store.write_async(next(slot) % (args.repeats + 2), record(model, probes, "float16"))
            store.wait()

        t_rec = timed(recorded_epochs, device, 1) / args.repeats
    overhead_each = t_rec / t_ours - 1
    overhead_run = overhead_each * len(schedule) / args.epochs

    print(f"1. ddscope epoch            {t_ours:8.3f} s")
    print(f"2. reference DataLoader     {t_ref:8.3f} s   reference / ddscope = {t_ref / t_ours:.2f}x")
    print(f"3. matmul compute bound     {t_bound:8.3f} s   ddscope / bound     = {t_ours / t_bound:.2f}x")
    print(f"4. epoch with recording     {t_rec:8.3f} s   overhead per recorded epoch = {100 * overhead_each:.1f} %,"
          f" over the default schedule ({len(schedule)} of {args.epochs} epochs recorded) = {100 * overhead_run:.1f} %")


if __name__ == "__main__":
    main()
