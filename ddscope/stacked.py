"""Training steps of several MLP runs at once: one batched forward and backward, each member's own Adam.

A step of a small MLP is overhead, not arithmetic (a batch-128 matmul of width 128 fills neither a CPU core nor
a GPU), so runs that share a dataset and a shape are stepped together: layer l of every member is one batched
matmul over [members, batch, width]. Each member keeps its own nn.Module (its parameters are the leaves), its
own torch.optim.Adam, batch order and labels; only the arithmetic of forward and backward is batched.

Bit-identity with a run trained alone (tests/test_stacked.py checks it on the shipped shapes): the batched
forward slices compute what nn.Linear computes, and the hand-written backward computes every member's weight
gradient as nn.Linear does (grad_outᵀ · input, not (inputᵀ · grad_out)ᵀ, whose rounding differs); the loss is
the sum of the members' own mean losses, so each member's gradient is exactly its own.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .models import MLP


def stackable(spec: dict) -> bool:
    """Whether a run's step has a batched form here: MLPs without augmentation (their training draws nothing
    from the global RNG, so members cannot disturb each other's random streams)."""
    return spec.get("arch", "mlp") == "mlp" and spec.get("augment", "none") == "none"


def stack_shape(spec: dict) -> tuple | None:
    """What members of one stack must share (None: the run trains alone)."""
    return ("mlp", tuple(spec["hidden"]), spec["batch_size"], spec["epochs"]) if stackable(spec) else None


class _StackedLinear(torch.autograd.Function):
    """out[m] = x[m] · w[m]ᵀ + b[m] for every member m, with nn.Linear's own backward per member."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        grad_x = torch.bmm(grad, w) if ctx.needs_input_grad[0] else None
        return grad_x, torch.bmm(grad.transpose(1, 2), x), grad.sum(1)


def stacked_logits(models: list[MLP], x: torch.Tensor) -> torch.Tensor:
    """[members, batch, classes] logits of members' MLPs on their own batches x [members, batch, features]."""
    layers = [[*m.hidden, m.out] for m in models]
    for depth in range(len(layers[0])):
        w = torch.stack([member[depth].weight for member in layers])
        b = torch.stack([member[depth].bias for member in layers])
        x = _StackedLinear.apply(x, w, b)
        if depth < len(layers[0]) - 1:
            x = torch.relu(x)
    return x


def stacked_step(models: list[nn.Module], opts: list[torch.optim.Optimizer], xb: torch.Tensor, yb: torch.Tensor,
                 smoothing: list[float]) -> None:
    """One training step of every member: xb [members, batch, features], yb [members, batch]."""
    logits = stacked_logits(models, xb)
    loss = sum(F.cross_entropy(logits[m], yb[m], label_smoothing=s) for m, s in enumerate(smoothing))
    for opt in opts:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in opts:
        opt.step()


class GraphedStackedStep:
    """The whole step of a stack (forward, backward, every member's Adam) captured once as a CUDA graph.

    Its kernels are the stack's batched ones: a few dozen launches per step whatever the number of members.
    Batches are copied into static buffers; a last partial batch runs eagerly.
    """

    def __init__(self, models, opts, smoothing):
        self.models, self.opts, self.smoothing = models, opts, smoothing
        self.graph = None

    def __call__(self, xb, yb):
        if self.graph is None:
            # an eager warm-up step on a side stream is a real step of training, then the next one is captured
            self.xs, self.ys = xb.clone(), yb.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                stacked_step(self.models, self.opts, self.xs, self.ys, self.smoothing)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            for opt in self.opts:
                opt.zero_grad(set_to_none=True)
            with torch.cuda.graph(self.graph):
                logits = stacked_logits(self.models, self.xs)
                loss = sum(F.cross_entropy(logits[m], self.ys[m], label_smoothing=s)
                           for m, s in enumerate(self.smoothing))
                loss.backward()
                for opt in self.opts:
                    opt.step()
            return
        self.xs.copy_(xb)
        self.ys.copy_(yb)
        self.graph.replay()


def stacked_train_epoch(models, opts, x: torch.Tensor, ys: list[torch.Tensor], batch_size: int,
                        shuffles: list[torch.Generator], smoothing: list[float],
                        graphed: GraphedStackedStep | None = None) -> None:
    """One epoch of every member: each in the order of its own permutation, with its own labels `ys[m]`.

    The same permutations and batches as ddscope.train.train_epoch draws for each member alone.
    """
    perms = torch.stack([torch.randperm(len(x), generator=g) for g in shuffles]).to(x.device, non_blocking=True)
    y = torch.stack(ys)
    for i in range(0, len(x), batch_size):
        idx = perms[:, i:i + batch_size]
        xb, yb = x[idx], torch.gather(y, 1, idx)
        if graphed is not None and idx.shape[1] == batch_size:
            graphed(xb, yb)
        else:
            stacked_step(models, opts, xb, yb, smoothing)


def stacking_is_exact(models: list[nn.Module], opts: list[torch.optim.Optimizer], n_features: int,
                      batch_sizes: list[int], smoothing: list[float]) -> bool:
    """Whether a batched step gives every member the bits of its solo step here (this BLAS, thread count and
    device), tried on copies of the members with random batches of each size a job steps with.

    With one thread per job it holds on the CPUs tested; with several, a BLAS may split a solo matmul across
    threads differently from the batched one (it does at small widths here), and then a job steps its
    members one after another instead.
    """
    device = next(models[0].parameters()).device
    gen = torch.Generator().manual_seed(0)
    copies = [[copy.deepcopy(m) for m in models] for _ in range(2)]
    optims = [[type(o)(c.parameters(), **o.defaults) for c, o in zip(cs, opts)] for cs in copies]
    for b in batch_sizes:
        x = torch.randn(len(models), b, n_features, generator=gen).to(device)
        y = torch.randint(0, models[0].out.out_features, (len(models), b), generator=gen).to(device)
        for m, o, xm, ym, s in zip(copies[0], optims[0], x, y, smoothing):
            loss = F.cross_entropy(m(xm), ym, label_smoothing=s)
            o.zero_grad(set_to_none=True)
            loss.backward()
            o.step()
        stacked_step(copies[1], optims[1], x, y, smoothing)
    # bitwise, so that a member that diverges (NaN) in both is still the same
    same = lambda p, q: torch.equal(p.detach().reshape(-1).view(torch.uint8), q.detach().reshape(-1).view(torch.uint8))  # noqa: E731
    return all(same(p, q) for a, b in zip(*copies) for p, q in zip(a.parameters(), b.parameters()))
