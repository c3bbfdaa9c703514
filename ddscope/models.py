"""The networks of the study, each a stack of recorded layers and a linear classifier `out`.

- `mlp`: fully connected ReLU layers (mlpN = N linear layers = N−1 hidden ReLU layers);
- `cnn`: the 5-layer CNN of Nakkiran et al. 2019 (four conv–BN–ReLU–max-pool stages of k, 2k, 4k, 8k channels);
- `resnet18`: the pre-activation ResNet-18 of width k of Nakkiran et al. 2019 (stages of k, 2k, 4k, 8k channels);
- `vit`: a vision transformer (patch and position embeddings, pre-norm blocks, class token or mean pooling).

Convolutional and transformer networks are 1-D on signals (MNIST-1D: 1 channel × 40) and 2-D on images
(CIFAR-10: 3 × 32 × 32), from the dataset's input shape. `hidden_and_logits(x)` gives one [N, width] array per
recorded layer: a block's output after its nonlinearity, conv features averaged over positions (one value per
channel) and transformer tokens pooled as the classifier pools them. The last recorded layer is always exactly
what `out` reads, so the classifier's weights and the last layer's geometry (neural collapse) belong together.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn

from .config import DeviceError, layer_widths


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


def _conv(dims: int):
    return nn.Conv1d if dims == 1 else nn.Conv2d


def _batch_norm(dims: int):
    return nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d


def _as_signal(x: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
    """[N, C·L] or [N, C·H·W] as stored (channel-major) -> [N, C, L] or [N, C, H, W]."""
    return x.reshape(len(x), *in_shape)


def _position_mean(x: torch.Tensor) -> torch.Tensor:
    """[N, C, positions...] -> [N, C]: one value per channel."""
    return x.flatten(2).mean(2)


class _ConvNet(nn.Module):
    """A stem, conv blocks each recorded averaged over positions, and a linear classifier on the last."""

    def hidden_and_logits(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        x, acts = self.stem(_as_signal(x, self.in_shape)), []
        for block in self.blocks:
            x = block(x)
            acts.append(_position_mean(x))
        return acts, self.out(acts[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden_and_logits(x)[1]


class CNN(_ConvNet):
    """The 5-layer CNN of Nakkiran et al. 2019 (App. B; their code's make_cnn): four stages conv 3×3 (stride 1,
    padding 1) → BatchNorm → ReLU → max-pool, of k, 2k, 4k, 8k channels, the pools of sizes 1, 2, 2 and 8, then a
    linear layer.

    The last pool is global (adaptive): on 32×32 images the sizes go 32 → 32 → 16 → 8 → 1, the paper's pool of 8;
    on a 1-D signal of 40 they go 40 → 40 → 20 → 10 → 1. Recorded: each stage's pooled output averaged over
    positions (the last stage has one position left: the classifier's input).
    """

    def __init__(self, in_shape: tuple[int, ...], width: int, n_classes: int):
        super().__init__()
        self.in_shape, dims = tuple(in_shape), len(in_shape) - 1
        conv, bn = _conv(dims), _batch_norm(dims)
        pool = nn.MaxPool1d if dims == 1 else nn.MaxPool2d
        last = nn.AdaptiveMaxPool1d(1) if dims == 1 else nn.AdaptiveMaxPool2d(1)
        widths = [width, 2 * width, 4 * width, 8 * width]
        channels = [in_shape[0], *widths]
        pools = [nn.Identity(), pool(2), pool(2), last]
        self.stem = nn.Identity()
        self.blocks = nn.ModuleList(
            nn.Sequential(conv(a, b, 3, padding=1), bn(b), nn.ReLU(), p)  # with biases, as the authors' code
            for a, b, p in zip(channels[:-1], channels[1:], pools))
        self.out = nn.Linear(widths[-1], n_classes)


class PreActBlock(nn.Module):
    """He et al. 2016's pre-activation basic block: BN → ReLU → conv 3×3 → BN → ReLU → conv 3×3, plus the input
    (through a 1×1 conv on the pre-activated input when the shape changes), as in kuangliu/pytorch-cifar."""

    def __init__(self, dims: int, in_channels: int, channels: int, stride: int):
        super().__init__()
        conv, bn = _conv(dims), _batch_norm(dims)
        self.bn1, self.bn2 = bn(in_channels), bn(channels)
        self.conv1 = conv(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.conv2 = conv(channels, channels, 3, stride=1, padding=1, bias=False)
        self.shortcut = (conv(in_channels, channels, 1, stride=stride, bias=False)
                         if stride != 1 or in_channels != channels else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(_ConvNet):
    """The pre-activation ResNet-18 of width k of Nakkiran et al. 2019 (App. B): conv 3×3 to k channels, four
    stages of two PreActBlocks of k, 2k, 4k, 8k channels (strides 1, 2, 2, 2), global average pooling, linear.

    A pre-activation block ends in the residual sum, with no nonlinearity of its own (the next block's BN-ReLU
    follows): recorded is that sum averaged over positions, eight layers; the last is the classifier's input.
    """

    def __init__(self, in_shape: tuple[int, ...], width: int, n_classes: int):
        super().__init__()
        self.in_shape, dims = tuple(in_shape), len(in_shape) - 1
        self.stem = _conv(dims)(in_shape[0], width, 3, stride=1, padding=1, bias=False)
        blocks, channels = [], width
        for stage, stride in zip((1, 2, 4, 8), (1, 2, 2, 2)):
            for s in (stride, 1):
                blocks.append(PreActBlock(dims, channels, stage * width, s))
                channels = stage * width
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Linear(channels, n_classes)


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + MHA(LN(x)), then x + MLP(LN(x)) with a GELU hidden layer."""

    def __init__(self, width: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class ViT(nn.Module):
    """A vision transformer (Dosovitskiy et al. 2021): non-overlapping patches of `patch` (1-D: `patch` samples,
    2-D: patch × patch pixels) embedded to `width`, a learned position embedding, `depth` pre-norm blocks, a final
    LayerNorm, then the class token (`pool: cls`) or the mean over tokens (`pool: mean`) to a linear classifier.

    Recorded: every block's output, pooled as the classifier pools (its class token, or the token mean), so each
    layer is read the way the classifier reads the last; the last layer passes the final LayerNorm first.
    """

    def __init__(self, in_shape: tuple[int, ...], width: int, depth: int, heads: int, patch: int, n_classes: int,
                 pool: str = "cls", mlp_ratio: int = 4):
        super().__init__()
        self.in_shape, dims = tuple(in_shape), len(in_shape) - 1
        self.pool = pool
        self.embed = _conv(dims)(in_shape[0], width, patch, stride=patch)
        tokens = math.prod(n // patch for n in in_shape[1:]) + (pool == "cls")
        self.cls = nn.Parameter(torch.zeros(1, 1, width)) if pool == "cls" else None
        self.position = nn.Parameter(torch.randn(1, tokens, width) * 0.02)
        self.blocks = nn.ModuleList(EncoderBlock(width, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, n_classes)

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0] if self.pool == "cls" else x.mean(1)

    def hidden_and_logits(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        x = self.embed(_as_signal(x, self.in_shape)).flatten(2).transpose(1, 2)  # [N, tokens, width]
        if self.cls is not None:
            x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1)
        x, acts = x + self.position, []
        for i, block in enumerate(self.blocks, 1):
            x = block(x)
            acts.append(self._pooled(self.norm(x) if i == len(self.blocks) else x))
        return acts, self.out(acts[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden_and_logits(x)[1]


def build_model(entry: dict, in_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """The network of a model entry of the config (`arch` mlp when absent) for inputs of `in_shape`."""
    arch = entry.get("arch", "mlp")
    if arch == "mlp":
        model = MLP(math.prod(in_shape), entry["hidden"], n_classes)
    elif arch == "cnn":
        model = CNN(in_shape, entry["width"], n_classes)
    elif arch == "resnet18":
        model = PreActResNet18(in_shape, entry["width"], n_classes)
    elif arch == "vit":
        model = ViT(in_shape, entry["width"], entry["depth"], entry["heads"], entry["patch"], n_classes,
                    entry.get("pool", "cls"), entry.get("mlp_ratio", 4))
    else:
        raise ValueError(f"unknown arch {arch!r}")
    model.layer_widths = layer_widths(entry)
    return model


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
