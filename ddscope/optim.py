"""Adam written out, for the small full-batch problems whose gradients ddscope computes by hand.

torch.optim.Adam's constructor imports torch._dynamo (about 1.5 s per process), which dominated the short
analysis jobs that train linear probes; the update itself is a few elementwise ops.
"""

from __future__ import annotations

import torch


def adam_moments(params: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Zero first and second moments for each parameter."""
    return [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]


@torch.no_grad()
def adam_step(params, grads, moments, step: int, lr: float, betas=(0.9, 0.999), eps: float = 1e-8) -> None:
    """One Adam update (Kingma & Ba, with bias correction) of `params` in place; `step` counts from 1."""
    b1, b2 = betas
    for p, g, (m, v) in zip(params, grads, moments):
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        p.addcdiv_(m, (v / (1 - b2**step)).sqrt_().add_(eps), value=-lr / (1 - b1**step))
