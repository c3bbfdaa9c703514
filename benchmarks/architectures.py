"""Benchmark: one training epoch of each architecture of configs/architectures.yaml, ddscope against plain PyTorch.

    python benchmarks/architectures.py                   # MNIST-1D shapes of the CPU study, 1 thread
    python benchmarks/architectures.py --device cuda --dataset cifar10

For every model of the study, in one process, on the same data and model (same initial weights):
  1. ddscope: ddscope.train.train_epoch (data on the device, batches are slices of a permutation, fused Adam,
     CUDA graphs on a GPU) followed by ddscope.train.evaluate (all five splits, as every evaluated epoch does);
  2. plain: a DataLoader over a TensorDataset (shuffle=True), default Adam, and an evaluation loop over a
     DataLoader of the training and test sets, as research code usually does.
Prints the median time per epoch of --repeats epochs after one warm-up, and plain ÷ ddscope.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from ddscope.config import INPUT_SHAPE, study_config, validate_config
from ddscope.models import build_model, resolve_device
from ddscope.train import _Data, evaluate, graphed_step, make_optimizer, train_epoch
from train_epoch import dataloader_epoch, timed  # benchmarks/train_epoch.py


def synthetic_data(n_train: int, n_test: int, shape: tuple[int, ...], rng: np.random.Generator) -> tuple[dict, dict]:
    dim = math.prod(shape)
    data = {"x_train": rng.standard_normal((n_train, dim), dtype=np.float32),
            "x_test": rng.standard_normal((n_test, dim), dtype=np.float32),
            "y_test": rng.integers(0, 10, n_test)}
    y = rng.integers(0, 10, n_train)
    noisy = rng.random(n_train) < 0.3
    labels = {"y_noisy": np.where(noisy, (y + 1) % 10, y), "y_original": y, "is_noisy": noisy,
              "probe_clean": np.arange(10), "probe_noisy": np.arange(10, 20), "probe_test": np.arange(10)}
    return data, labels


def plain_epoch(model, opt, train_loader, eval_loaders, device) -> None:
    """Train one epoch, then evaluate as ddscope does: the training set once against both labellings, the test set."""
    dataloader_epoch(model, opt, train_loader, device)
    model.eval()
    with torch.no_grad():
        for loader in eval_loaders:
            for xb, *ys in loader:
                logits = model(xb.to(device))
                for y in ys:
                    F.cross_entropy(logits, y.to(device)).item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/architectures.yaml", help="the study whose models and sizes to use")
    p.add_argument("--dataset", choices=list(INPUT_SHAPE), help="input shape (default: the study's dataset)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    config = validate_config(study_config([args.config]))
    dataset = args.dataset or config["dataset"]["name"]
    shape, device = INPUT_SHAPE[dataset], resolve_device(args.device)
    n_train, n_test = config["dataset"]["n_train"], config["dataset"]["n_test"]
    t = config["train"]
    data, labels = synthetic_data(n_train, n_test, shape, np.random.default_rng(0))
    d = _Data(data, labels, device)
    print(f"{dataset} {shape}, {n_train} train + {n_test} test samples, batch {t['batch_size']}, {device}, "
          f"{torch.get_num_threads()} thread(s)")
    print(f"{'model':<10} {'params':>9} {'ddscope s/epoch':>16} {'plain s/epoch':>14} {'plain/ddscope':>14}")
    for name, entry in config["models"].items():
        torch.manual_seed(0)
        model = build_model(entry, shape, 10).to(device).eval()
        opt = make_optimizer(model, t, device)
        shuffle = torch.Generator().manual_seed(0)
        graphed = graphed_step(model, opt, 0.0, device)

        def ddscope_epoch():
            train_epoch(model, opt, d.x_train, d.y_assigned, t["batch_size"], shuffle, 0.0, graphed)
            evaluate(model, d, t["eval_batch_size"]).cpu()

        ours = timed(ddscope_epoch, device, args.repeats)
        torch.manual_seed(0)
        model = build_model(entry, shape, 10).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=t["lr"])
        train_set = TensorDataset(torch.from_numpy(data["x_train"]), torch.from_numpy(labels["y_noisy"]))
        tensors = lambda *arrays: TensorDataset(*map(torch.from_numpy, arrays))  # noqa: E731
        loaders = [DataLoader(tensors(data["x_train"], labels["y_noisy"], labels["y_original"]), batch_size=1024),
                   DataLoader(tensors(data["x_test"], data["y_test"]), batch_size=1024)]
        train_loader = DataLoader(train_set, batch_size=t["batch_size"], shuffle=True)
        plain = timed(lambda: plain_epoch(model, opt, train_loader, loaders, device), device, args.repeats)
        n_params = sum(q.numel() for q in model.parameters())
        print(f"{name:<10} {n_params:>9} {ours:>16.3f} {plain:>14.3f} {plain / ours:>13.2f}x")


if __name__ == "__main__":
    main()
