"""The teacher, its test set and the nested training sets (see the package docstring for the setting)."""

from __future__ import annotations

import math

import numpy as np

from ddscope.threshold.keys import TEACHERS


def rng_for(*keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in keys]))


def relu_kernel(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """E[relu(u·x) relu(v·x)] for x ~ N(0, I) and unit rows u, v (arc-cosine kernel of degree 1)."""
    cos = np.clip(u @ v.T, -1.0, 1.0)
    theta = np.arccos(cos)
    return (np.sin(theta) + (np.pi - theta) * cos) / (2 * np.pi)


def make_teacher(kind: str, d: int, neurons: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """The teacher's parameters: `teacher_w` [k, d] (unit rows) and `teacher_a` [k].

    linear: k = 1, f*(x) = teacher_w[0]·x (teacher_a = [1]). relu: k = `neurons`,
    f*(x) = Σ_k teacher_a[k] relu(teacher_w[k]·x) with teacher_a = ±s (signs alternate, + first) scaled so
    that E[f*(x)²] = 1.
    """
    if kind not in TEACHERS:
        raise ValueError(f"teacher kind must be one of {', '.join(TEACHERS)}, not {kind!r}")
    rng = rng_for(seed, 0)
    k = 1 if kind == "linear" else int(neurons)
    if k < 1 or d < 1:
        raise ValueError("a teacher needs d >= 1 and at least one neuron")
    w = rng.standard_normal((k, d))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    if kind == "linear":
        a = np.ones(1)
    else:
        signs = np.where(np.arange(k) % 2 == 0, 1.0, -1.0)
        second_moment = float(signs @ relu_kernel(w, w) @ signs)
        a = signs / math.sqrt(second_moment)
    return {"teacher_w": w.astype(np.float32), "teacher_a": a.astype(np.float32)}


def teacher_output(teacher: dict, x: np.ndarray, kind: str) -> np.ndarray:
    """f*(x) for inputs x [..., d]."""
    w = np.asarray(teacher["teacher_w"], dtype=np.float64)
    a = np.asarray(teacher["teacher_a"], dtype=np.float64)
    z = np.asarray(x, dtype=np.float64) @ w.T
    if kind == "linear":
        return (z @ a).astype(np.float32)
    return (np.maximum(z, 0.0) @ a).astype(np.float32)


def teacher_directions(teacher: dict, kind: str) -> np.ndarray:
    """Unit directions [K, d] that the student's neurons align with: ±β (linear) or the v_k (ReLU)."""
    w = np.asarray(teacher["teacher_w"], dtype=np.float64)
    w = w / np.linalg.norm(w, axis=1, keepdims=True)
    return (np.concatenate([w, -w]) if kind == "linear" else w).astype(np.float32)


def make_test_set(teacher: dict, kind: str, d: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed test set: inputs [n_test, d] and the noiseless teacher outputs [n_test]."""
    x = rng_for(seed, 1).standard_normal((n_test, d)).astype(np.float32)
    return x, teacher_output(teacher, x, kind)


def sample_data(teacher: dict, kind: str, d: int, n: int, noise_var: float, seed: int,
                run_seed: int) -> dict[str, np.ndarray]:
    """Training set of size n for run seed `run_seed`: `x` [n, d], `y` [n] (noisy labels), `noise` [n].

    Inputs and noise come from their own streams, so the set of size n is the first n samples of any larger one.
    """
    x = rng_for(seed, 2, run_seed).standard_normal((n, d)).astype(np.float32)
    noise = (math.sqrt(noise_var) * rng_for(seed, 3, run_seed).standard_normal(n)).astype(np.float32)
    return {"x": x, "y": teacher_output(teacher, x, kind) + noise, "noise": noise}


def training_sets(teacher: dict, kind: str, d: int, n: int, noise_var: float, seed: int,
                  run_seeds: list[int]) -> dict[str, np.ndarray]:
    """sample_data for every run seed, stacked: `x` [S, n, d], `y` [S, n], `noise` [S, n], `seeds` [S]."""
    sets = [sample_data(teacher, kind, d, n, noise_var, seed, s) for s in run_seeds]
    out = {k: np.stack([s[k] for s in sets]) for k in ("x", "y", "noise")}
    out["seeds"] = np.asarray(run_seeds, dtype=np.int64)
    return out
