"""The networks of the study: fully connected ReLU MLPs (mlpN = N linear layers = N−1 hidden ReLU layers)."""

from __future__ import annotations

import os

import torch
from torch import nn

from .config import DeviceError


class MLP(nn.Module):
    """Linear → ReLU for each hidden width, then a linear classifier.

    Initialisation is PyTorch's default for nn.Linear (Kaiming-uniform weights with a=√5, i.e.
    U(−1/√fan_in, 1/√fan_in), and biases U(−1/√fan_in, 1/√fan_in)), fixed by the run's seed.
    """

    def __init__(self, in_dim: int, hidden: list[int], n_classes: int):
        super().__init__()
        widths = [in_dim, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Linear(widths[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return self.out(x)

    def hidden_and_logits(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Post-ReLU output of every hidden layer, and the logits."""
        acts = []
        for layer in self.hidden:
            x = torch.relu(layer(x))
            acts.append(x)
        return acts, self.out(x)


def resolve_device(name: str, gpus: int = 0) -> torch.device:
    """`auto`: CUDA when visible, else CPU; but a job that asked the scheduler for GPUs (train.gpus >= 1)
    must train on one, never silently on the CPU."""
    if name == "auto":
        if gpus and not torch.cuda.is_available():
            raise DeviceError(f"train.gpus is {gpus} but this job sees no GPU (CUDA_VISIBLE_DEVICES="
                              f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); check the partition's "
                              "GPUs, or set train.gpus: 0 to train on CPUs")
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"train.device is {name!r} but no CUDA device is visible; use train.device: auto or cpu")
    return device
