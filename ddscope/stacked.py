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


class _StackedMLP(torch.autograd.Function):
    """Logits [members, batch, classes] of every member's MLP, with nn.Linear's and ReLU's own backward per member.

    Computes with the stacked weights (StackedParams: each member's parameters are views into them) and
    returns the gradients of the members' own parameters, the inputs autograd tracks, so each member's
    .grad and Adam are a solo run's. One autograd node for the whole network keeps Python out of the step.
    """

    @staticmethod
    def forward(ctx, x, stacked, *member_params):
        hs = [x]
        for depth, (w, b) in enumerate(zip(stacked.w, stacked.b)):
            z = torch.baddbmm(b.unsqueeze(1), hs[-1], w.transpose(1, 2))
            hs.append(torch.relu(z) if depth < len(stacked.w) - 1 else z)
        ctx.stacked = stacked
        ctx.save_for_backward(*hs[:-1])
        return hs[-1]

    @staticmethod
    def backward(ctx, grad):
        hs, stacked = ctx.saved_tensors, ctx.stacked
        grads_w, grads_b = [None] * len(hs), [None] * len(hs)
        for depth in reversed(range(len(hs))):
            if depth < len(hs) - 1:
                grad = torch.ops.aten.threshold_backward(grad, hs[depth + 1], 0)  # ReLU's own backward
            grads_w[depth] = torch.bmm(grad.transpose(1, 2), hs[depth])  # grad_outᵀ · input, as nn.Linear
            grads_b[depth] = grad.sum(1)
            if depth > 0:
                grad = torch.bmm(grad, stacked.w[depth])
        per_member = [g[m] for m in range(stacked.members) for gw, gb in zip(grads_w, grads_b) for g in (gw, gb)]
        return (None, None, *per_member)


class StackedParams:
    """The members' weights and biases, layer by layer, in stacked tensors [members, ...]; each member's
    parameters become views into them (values unchanged), so a step reads them without copying and each
    member's Adam updates its own slice in place."""

    def __init__(self, models: list[MLP]):
        layers = [[*m.hidden, m.out] for m in models]
        self.members, self.w, self.b = len(models), [], []
        for depth in range(len(layers[0])):
            w = torch.stack([member[depth].weight.detach() for member in layers])
            b = torch.stack([member[depth].bias.detach() for member in layers])
            for m, member in enumerate(layers):
                member[depth].weight.data, member[depth].bias.data = w[m], b[m]
            self.w.append(w)
            self.b.append(b)
        self.params = [p for member in layers for layer in member for p in (layer.weight, layer.bias)]


def stacked_logits(stacked: StackedParams, x: torch.Tensor) -> torch.Tensor:
    """[members, batch, classes] logits of the members' MLPs on their own batches x [members, batch, features]."""
    return _StackedMLP.apply(x, stacked, *stacked.params)


def stacked_step(stacked: StackedParams, opts: list[torch.optim.Optimizer], xb: torch.Tensor, yb: torch.Tensor,
                 smoothing: list[float], zero_grad: bool = True) -> None:
    """One training step of every member: xb [members, batch, features], yb [members, batch].

    `zero_grad=False` inside a CUDA graph capture, whose backward writes fresh gradients on every replay.
    """
    logits = stacked_logits(stacked, xb)
    loss = sum(F.cross_entropy(logits[m], yb[m], label_smoothing=s) for m, s in enumerate(smoothing))
    if zero_grad:
        for opt in opts:
            opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in opts:
        opt.step()


def stacked_train_epoch(stacked: StackedParams, opts, x: torch.Tensor, ys: list[torch.Tensor], batch_size: int,
                        shuffles: list[torch.Generator], smoothing: list[float], graphed=None) -> None:
    """One epoch of every member: each in the order of its own permutation, with its own labels `ys[m]`.

    The same permutations and batches as ddscope.train.train_epoch draws for each member alone; with `graphed`
    (ddscope.train.GraphedStep, CUDA) full batches are replayed from one CUDA graph of the whole stack's step.
    """
    perms = torch.stack([torch.randperm(len(x), generator=g) for g in shuffles]).to(x.device, non_blocking=True)
    y = torch.stack(ys)
    for i in range(0, len(x), batch_size):
        idx = perms[:, i:i + batch_size]
        xb, yb = x[idx], torch.gather(y, 1, idx)
        if graphed is not None and idx.shape[1] == batch_size:
            graphed(xb, yb)
        else:
            stacked_step(stacked, opts, xb, yb, smoothing)


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
    stacked = StackedParams(copies[1])
    for b in batch_sizes:
        x = torch.randn(len(models), b, n_features, generator=gen).to(device)
        y = torch.randint(0, models[0].out.out_features, (len(models), b), generator=gen).to(device)
        for m, o, xm, ym, s in zip(copies[0], optims[0], x, y, smoothing):
            loss = F.cross_entropy(m(xm), ym, label_smoothing=s)
            o.zero_grad(set_to_none=True)
            loss.backward()
            o.step()
        stacked_step(stacked, optims[1], x, y, smoothing)
    # bitwise, so that a member that diverges (NaN) in both is still the same
    same = lambda p, q: torch.equal(p.detach().reshape(-1).view(torch.uint8), q.detach().reshape(-1).view(torch.uint8))  # noqa: E731
    return all(same(p, q) for a, b in zip(*copies) for p, q in zip(a.parameters(), b.parameters()))
