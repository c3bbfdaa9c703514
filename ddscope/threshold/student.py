"""The student: its small balanced initialisation, full-batch training of every seed at once, and the
alignment of its neurons with the teacher directions."""

from __future__ import annotations

import numpy as np
import torch

from ddscope.optim import adam_moments, adam_step
from ddscope.threshold.keys import OPTIMIZERS, step_grid
from ddscope.threshold.teacher import rng_for


def init_student(width: int, d: int, init_scale: float, seed: int, run_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Balanced small initialisation: w_j uniform on the sphere of radius init_scale, a_j = ±init_scale."""
    rng = rng_for(seed, 4, run_seed)
    w = rng.standard_normal((width, d))
    w *= init_scale / np.linalg.norm(w, axis=1, keepdims=True)
    a = init_scale * rng.choice([-1.0, 1.0], size=width)
    return w.astype(np.float32), a.astype(np.float32)


def alignment_cosines(w: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """max_k cos(w_j, u_k) for neuron weights w [..., m, d] and unit directions u [K, d] -> [..., m].

    A neuron with w_j = 0 has no direction: NaN.
    """
    w = np.asarray(w, dtype=np.float64)
    u = np.asarray(directions, dtype=np.float64)
    u = u / np.linalg.norm(u, axis=-1, keepdims=True)
    norm = np.linalg.norm(w, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (w @ u.T) / norm[..., None]
    cos = np.where(norm[..., None] > 0, cos, np.nan)
    return np.clip(cos.max(axis=-1), -1.0, 1.0)


def aligned_fraction(cosines: np.ndarray, threshold: float) -> np.ndarray:
    """Fraction of neurons (last axis) with alignment >= threshold; NaN cosines count as not aligned."""
    c = np.asarray(cosines, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (np.nan_to_num(c, nan=-np.inf) >= threshold).mean(axis=-1)


def early_phase_end(train_loss: np.ndarray, drop: float) -> np.ndarray:
    """Index (into the recorded steps, last axis) of the end of the early phase: the first at which the loss is
    at most (1 − drop) × its initial value; −1 where it never drops that much."""
    loss = np.asarray(train_loss, dtype=np.float64)
    below = loss <= (1.0 - drop) * loss[..., :1]
    return np.where(below.any(axis=-1), below.argmax(axis=-1), -1)


def train_students(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, w0: np.ndarray,
                   a0: np.ndarray, directions: np.ndarray, steps: int, lr: float, optimizer: str = "gd",
                   betas=(0.9, 0.999), record_steps: list[int] | None = None, eps: float = 1e-8,
                   log=None) -> dict[str, np.ndarray]:
    """Train S students at once (one per run seed) by full-batch GD or Adam on the MSE, with manual gradients.

    x [S, n, d], y [S, n], w0 [S, m, d], a0 [S, m]; the test set x_test [T, d], y_test [T] is shared.
    Returns, at every recorded step (the parameters after that many updates): `train_loss`, `test_loss`
    [S, steps], `cosine` [S, steps, m] (alignment_cosines), `neuron_norm` [S, steps, m] (|w_j|); and the final
    `w` [S, m, d], `a` [S, m]. Gradients (for r_i = 2(f(x_i) − y_i)/n, G_j = Σ_i r_i 1[w_j·x_i > 0] x_i):
    ∂L/∂w_j = a_j G_j and ∂L/∂a_j = Σ_i r_i relu(w_j·x_i) = w_j·G_j.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {optimizer!r}")
    record_steps = sorted(set(record_steps if record_steps is not None else step_grid(steps, 50)) | {0, steps})
    f32 = dict(dtype=torch.float32)
    X = torch.as_tensor(np.asarray(x), **f32).contiguous()  # S n d
    XT = X.transpose(1, 2).contiguous()  # S d n
    Y = torch.as_tensor(np.asarray(y), **f32)
    Xt = torch.as_tensor(np.asarray(x_test), **f32)
    Yt = torch.as_tensor(np.asarray(y_test), **f32)
    U = torch.as_tensor(np.asarray(directions), **f32)
    U = U / U.norm(dim=1, keepdim=True)
    W = torch.as_tensor(np.asarray(w0), **f32).clone()
    A = torch.as_tensor(np.asarray(a0), **f32).clone()
    n = X.shape[1]
    if optimizer == "adam":
        moments = adam_moments([W, A])

    rec = {k: [] for k in ("train_loss", "test_loss", "cosine", "neuron_norm")}

    def record(train_loss):
        with torch.inference_mode():
            ft = torch.bmm(A.unsqueeze(1), torch.einsum("smd,td->smt", W, Xt).clamp_min(0)).squeeze(1)
            norm = W.norm(dim=-1)
            cos = (W @ U.T).amax(dim=-1) / norm
            cos = torch.where(norm > 0, cos.clamp(-1, 1), torch.nan)
            rec["train_loss"].append(train_loss)
            rec["test_loss"].append(((ft - Yt) ** 2).mean(dim=1))
            rec["cosine"].append(cos)
            rec["neuron_norm"].append(norm)

    recorded = set(record_steps)
    log_at = set(record_steps[:: max(len(record_steps) // 10, 1)]) | {steps}
    with torch.inference_mode():
        for t in range(steps + 1):
            Z = torch.bmm(W, XT)  # S m n
            E = torch.bmm(A.unsqueeze(1), Z.clamp_min(0)).squeeze(1) - Y  # S n
            if t in recorded:
                record((E * E).mean(dim=1))
                if log is not None and t in log_at:
                    log(t, rec["train_loss"][-1].numpy(), rec["test_loss"][-1].numpy())
            if t == steps:
                break
            # r_i 1[w_j·x_i > 0] in one fused kernel (ReLU's backward): over twice as fast as (Z > 0) * r
            R = torch.ops.aten.threshold_backward((E * (2.0 / n)).unsqueeze(1).expand_as(Z), Z, 0)  # S m n
            G = torch.bmm(R, X)  # S m d
            gW = A.unsqueeze(2) * G
            gA = (W * G).sum(dim=-1)
            if optimizer == "gd":
                W -= lr * gW
                A -= lr * gA
            else:
                adam_step([W, A], [gW, gA], moments, t + 1, lr, betas, eps)
    out = {k: torch.stack(v, dim=1).numpy() for k, v in rec.items()}  # stacked along the step axis
    out["steps"] = np.asarray(record_steps, dtype=np.int64)
    out["w"], out["a"] = W.numpy(), A.numpy()
    return out
