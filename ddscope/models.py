"""The networks of the study: fully connected ReLU MLPs (mlpN = N linear layers = N−1 hidden ReLU layers)."""

from __future__ import annotations

import torch
from torch import nn


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


def resolve_device(name: str) -> torch.device:
    """`auto`: CUDA when visible, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device is {name!r} but no CUDA device is visible")
    return device
