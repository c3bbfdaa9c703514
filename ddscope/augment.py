"""Data augmentation of training batches (train.augment), on the device, from the run's own random stream.

`crop_flip`: the CIFAR-10 augmentation of Nakkiran et al. 2019 (and most CIFAR training): pad each image by 4
pixels with zeros, crop a random 32 × 32 window, flip it horizontally with probability ½. Offsets and flips are
drawn on the CPU from a generator seeded by the run's seed, so a run is reproducible and its resume
bit-identical (the generator's state is in the checkpoint); evaluation and recording never augment.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PAD = 4
# the augmentation stream is the run seed's, offset so that it never coincides with the shuffling stream
STREAM_OFFSET = 7_919


class CropFlip:
    def __init__(self, in_shape: tuple[int, ...], seed: int):
        if len(in_shape) != 3:
            raise ValueError(f"crop_flip needs images (channels, height, width), got input shape {in_shape}")
        self.in_shape = tuple(in_shape)
        self.generator = torch.Generator().manual_seed(seed + STREAM_OFFSET)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C·H·W] -> the same, each image shifted by up to PAD pixels (zeros shifted in) and maybe mirrored."""
        b, (c, h, w) = len(x), self.in_shape
        shift = torch.randint(0, 2 * PAD + 1, (2, b), generator=self.generator)
        flip = torch.rand(b, generator=self.generator) < 0.5
        shift, flip = shift.to(x.device, non_blocking=True), flip.to(x.device, non_blocking=True)
        padded = F.pad(x.view(b, c, h, w), (PAD, PAD, PAD, PAD))
        rows = shift[0, :, None] + torch.arange(h, device=x.device)  # [B, H]
        cols = shift[1, :, None] + torch.arange(w, device=x.device)
        cols = torch.where(flip[:, None], cols.flip(1), cols)
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        channel = torch.arange(c, device=x.device)[None, :, None, None]
        return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]].reshape(b, -1)

    def get_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


def make_augment(name: str, in_shape: tuple[int, ...], seed: int) -> CropFlip | None:
    """The augmentation a run's spec names (None for `none`)."""
    return CropFlip(in_shape, seed) if name == "crop_flip" else None
