"""What the threshold rules import when the workflow loads: the config keys each rule depends on and the
grids of sample sizes and recorded steps. Standard library only (the Snakefile imports it at parse time)."""

from __future__ import annotations

import math

TEACHERS = ("linear", "relu")
OPTIMIZERS = ("gd", "adam")





# config keys each rule depends on (and gets as params): a change reruns exactly what reads it
TEACHER_KEYS = ["seed", "d", "teacher", "teacher_neurons", "n_test"]
DATA_KEYS = ["seed", "noise_var", "seeds"]
TRAIN_KEYS = ["width", "init_scale", "optimizer", "lr", "betas", "steps", "record_points"]
SWEEP_KEYS = ["interpolation_tol", "majority", "align_threshold", "early_loss_drop", "converged_tol", "break_ratio"]


def rule_params(threshold: dict | None, keys: list[str]) -> dict:
    """The `threshold` config keys a rule uses ({} in a study without a threshold section).

    Keys that do not matter for this config are dropped, so changing them reruns nothing
    (`teacher_neurons` for a linear teacher, `betas` for gradient descent).
    """
    if not threshold:
        return {}
    out = {k: threshold[k] for k in keys if k in threshold}
    if out.get("teacher") == "linear":
        out.pop("teacher_neurons", None)
    if threshold.get("optimizer") == "gd":
        out.pop("betas", None)
    return out


def n_grid(n_min: int, n_max: int, points: int) -> list[int]:
    """`points` log-spaced sample sizes from n_min to n_max (both included), rounded; duplicates dropped."""
    if n_min < 1 or n_max < n_min:
        raise ValueError(f"n grid needs 1 <= n_min <= n_max, got n_min={n_min}, n_max={n_max}")
    if points <= 1 or n_max == n_min:
        return sorted({n_min, n_max}) if points > 1 else [n_min]
    lo, hi = math.log(n_min), math.log(n_max)
    return sorted({int(round(math.exp(lo + (hi - lo) * k / (points - 1)))) for k in range(points)})


def step_grid(steps: int, points: int) -> list[int]:
    """Recorded steps: 0 (initialisation), then `points` log-spaced steps from 1 to `steps` (rounded, unique)."""
    if steps < 1:
        return [0]
    out = {0, 1, steps}
    for k in range(points):
        out.add(int(round(math.exp(math.log(steps) * k / max(points - 1, 1)))))
    return sorted(s for s in out if 0 <= s <= steps)
