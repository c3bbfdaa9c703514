"""Benchmark: runs trained as one stack (train.stack) against the same runs trained one after another.

    python benchmarks/stacking.py                     # CPU, 1 thread: MNIST-1D shapes at the shipped widths
    python benchmarks/stacking.py --paper --device cuda   # the paper study's 9 runs on CIFAR-sized data
    python benchmarks/stacking.py --bits --device cuda    # stacked vs solo parameters after 1, 10, 100 epochs

CPU mode: for each width, `--members` MLPs of `--depth` hidden layers on `--n` MNIST-1D-sized samples; one epoch
of every member stepped alone (ddscope.train.train_epoch, one after another) against one stacked epoch
(ddscope.stacked.stacked_train_epoch), medians of --repeats epochs; prints the ratio and whether the stacked
members are still bit-identical to the solo ones (the job's own probe, ddscope.stacked.stacking_is_exact).

Paper mode: the paper study's shapes (MLP3, MLP5, MLP7 of width 512, three seeds each, batch 128, 50 000
training and 10 000 test samples of 3072 features, random), each epoch a training pass plus the per-epoch
evaluation on both sets, as ddscope's jobs run them (CUDA graphs on CUDA): 9 runs solo, then as 3 stacks of 3.
Prints seconds per epoch of the whole study, the fraction of the device's FP32 rate (--peak-tflops) the
arithmetic reaches, and the paper study's time extrapolated to --epochs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_epoch import sync, timed  # noqa: E402

from ddscope.models import MLP, resolve_device  # noqa: E402
from ddscope.stacked import StackedParams, stacked_step, stacked_train_epoch, stacking_is_exact  # noqa: E402
from ddscope.train import GraphedStep, evaluate, graphed_step, make_optimizer, train_epoch  # noqa: E402

SPEC = {"lr": 1e-3, "betas": (0.9, 0.999), "weight_decay": 0.0}


def members(k: int, features: int, hidden: list[int], device):
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        model = MLP(features, hidden, 10).to(device)
        out.append((model, make_optimizer(model, SPEC, device), torch.Generator().manual_seed(seed)))
    return out


def solo_epochs(ms, x, y, batch, device, graphs):
    for i, (model, opt, gen) in enumerate(ms):
        if i not in graphs:
            graphs[i] = graphed_step(model, opt, 0.0, device)
        train_epoch(model, opt, x, y, batch, gen, 0.0, graphs[i])


def stacked_epoch(ms, x, y, batch, device, graphs):
    opts = [o for _, o, _ in ms]
    if "stack" not in graphs:
        stacked = StackedParams([m for m, _, _ in ms])
        graphs["params"] = stacked
        graphs["stack"] = (GraphedStep(lambda xb, yb, z: stacked_step(stacked, opts, xb, yb, [0.0] * len(ms), z), opts)
                           if device.type == "cuda" else None)
    stacked_train_epoch(graphs["params"], opts, x, [y] * len(ms), batch, [g for _, _, g in ms], [0.0] * len(ms),
                        graphs["stack"])


def cpu_mode(args, device):
    x = torch.randn(args.n, 40, device=device)
    y = torch.randint(0, 10, (args.n,), device=device)
    print(f"{args.members} MLPs of {args.depth} hidden layers, {args.n} samples of 40 features, batch {args.batch}, "
          f"{torch.get_num_threads()} thread(s), {device}")
    print(f"{'width':>6} {'solo s/epoch':>13} {'stacked s/epoch':>16} {'speed-up':>9}  bit-identical")
    for width in args.widths:
        hidden = [width] * args.depth
        a, b = members(args.members, 40, hidden, device), members(args.members, 40, hidden, device)
        ga, gb = {}, {}
        t_solo = timed(lambda: solo_epochs(a, x, y, args.batch, device, ga), device, args.repeats)
        t_stack = timed(lambda: stacked_epoch(b, x, y, args.batch, device, gb), device, args.repeats)
        c = members(args.members, 40, hidden, device)
        exact = stacking_is_exact([m for m, _, _ in c], [o for _, o, _ in c], 40,
                                  sorted({args.batch, args.n % args.batch} - {0}), [0.0] * args.members)
        print(f"{width:>6} {t_solo:>13.3f} {t_stack:>16.3f} {t_solo / t_stack:>8.2f}×  {'yes' if exact else 'no'}")


def mlp_flops(features: int, hidden: list[int], n: int) -> float:
    widths = [features, *hidden, 10]
    return 2.0 * n * sum(a * b for a, b in zip(widths[:-1], widths[1:]))


def paper_mode(args, device):
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    n_train, n_test, features = args.n_train, args.n_test, 3072
    x, x_test = torch.randn(n_train, features, device=device), torch.randn(n_test, features, device=device)
    y, y_test = torch.randint(0, 10, (n_train,), device=device), torch.randint(0, 10, (n_test,), device=device)
    noisy = (torch.rand(n_train, device=device) < 0.3).float()
    d = SimpleNamespace(x_train=x, x_test=x_test, y_assigned=y, y_original=y, y_test=y_test,
                        masks=torch.stack([torch.ones_like(noisy), 1 - noisy, noisy]))
    depths = {"mlp3": 2, "mlp5": 4, "mlp7": 6}
    seeds = 3
    flops = sum(seeds * (3 * mlp_flops(features, [512] * h, n_train) + mlp_flops(features, [512] * h, n_train + n_test))
                for h in depths.values())
    print(f"paper study shapes: {len(depths) * seeds} runs (MLP3/5/7 × {seeds} seeds, width 512), {n_train} + {n_test} "
          f"samples, batch {args.batch}, {device}{', TF32' if args.tf32 else ', FP32'}; {flops / 1e12:.2f} TFLOP "
          "per epoch of the study (training and the evaluation)")
    groups = {name: members(seeds, features, [512] * h, device) for name, h in depths.items()}
    graphs = {name: {} for name in depths}

    def evaluations(ms):
        return [evaluate(m, d, 8192) for m, _, _ in ms]

    def study_epoch(stacked: bool):
        results = []
        for name, ms in groups.items():
            (stacked_epoch if stacked else solo_epochs)(ms, x, y, args.batch, device, graphs[name])
            results += evaluations(ms)
        torch.stack(results).cpu()  # one host transfer per epoch, as train_stack does

    peak = args.peak_tflops * 1e12
    times = {}
    for mode in ("solo", "stacked"):
        for g in graphs.values():
            g.clear()
        times[mode] = t = timed(lambda: study_epoch(mode == "stacked"), device, args.repeats)
        print(f"{mode:>8}: {t:.3f} s per epoch of the study, {flops / t / peak:.1%} of {args.peak_tflops:g} TFLOP/s; "
              f"{args.epochs} epochs: {t * args.epochs / 60:.1f} min (one job after another on one device)")
    print(f"stacked vs solo: {times['solo'] / times['stacked']:.2f}×")


def bits_mode(args, device):
    """How far stacked members drift from solo ones on this device: max |Δ parameter| after 1, 10, 100 epochs."""
    x = torch.randn(args.n, 40, device=device)
    y = torch.randint(0, 10, (args.n,), device=device)
    hidden = [args.widths[0]] * args.depth
    a, b = members(args.members, 40, hidden, device), members(args.members, 40, hidden, device)
    ga, gb = {}, {}
    print(f"{args.members} MLPs, width {hidden[0]}, {args.depth} hidden layers, {args.n} samples, {device}")
    for epoch in range(1, 101):
        solo_epochs(a, x, y, args.batch, device, ga)
        stacked_epoch(b, x, y, args.batch, device, gb)
        if epoch in (1, 10, 100):
            diff = max(float((p - q).abs().max()) for (ma, _, _), (mb, _, _) in zip(a, b)
                       for p, q in zip(ma.parameters(), mb.parameters()))
            same = all(torch.equal(p, q) for (ma, _, _), (mb, _, _) in zip(a, b)
                       for p, q in zip(ma.parameters(), mb.parameters()))
            print(f"epoch {epoch:>3}: max |stacked - solo| over parameters {diff:.3g}"
                  + (" (bit-identical)" if same else ""))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--depth", type=int, default=6, help="hidden layers (CPU mode; 6 is MLP7)")
    p.add_argument("--n", type=int, default=4000, help="training samples (CPU mode)")
    p.add_argument("--widths", type=int, nargs="+", default=[8, 32, 128, 512])
    p.add_argument("--paper", action="store_true", help="the paper study's shapes (9 runs, CIFAR-sized)")
    p.add_argument("--n-train", type=int, default=50000)
    p.add_argument("--n-test", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=1000, help="epochs to extrapolate to (paper mode)")
    p.add_argument("--peak-tflops", type=float, default=67.0, help="the device's FP32 rate (H100/H200 SXM: 67)")
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (train.tf32)")
    p.add_argument("--bits", action="store_true", help="drift of stacked from solo members after 1, 10, 100 epochs")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    (paper_mode if args.paper else bits_mode if args.bits else cpu_mode)(args, device)
    sync(device)


if __name__ == "__main__":
    main()
