"""Optimization threshold of a small-init two-layer ReLU student of a teacher (Boursier & Flammarion).

Setting. Inputs x ~ N(0, I_d). The teacher is either linear, f*(x) = β·x with |β| = 1, or a two-layer ReLU
network f*(x) = s Σ_k c_k relu(v_k·x) with unit v_k, signs c_k = ±1 and s chosen so that E[f*(x)²] = 1
(exactly, from the arc-cosine kernel). Labels y = f*(x) + ε, ε ~ N(0, noise_var). The student is
f(x) = Σ_j a_j relu(w_j·x) of width m, no biases, with a small balanced initialisation: every neuron starts
with |w_j| = |a_j| = init_scale, w_j uniform on the sphere, sign(a_j) = ±1 at random. It is trained on the
mean squared error (1/n) Σ_i (f(x_i) − y_i)² by full-batch gradient descent (or Adam) for a fixed number of
steps. Losses reported are that MSE on the training set (noisy labels) and the test loss
(1/n_test) Σ (f(x) − f*(x))² on a fixed test set against the noiseless teacher, i.e. the excess risk
(add noise_var for the expected loss on noisy test labels).

Seeds. `seed` (the study's) draws the teacher and the test set; a run seed s draws one pool of training
inputs and label noise and the student's initialisation. The training set of size n is the first n samples of
the pool of seed s (nested over n), and every n starts from the same initial student for that s.

Early alignment. The teacher directions are ±β for the linear teacher (neurons with a_j > 0 align with β,
those with a_j < 0 with −β) and the v_k for a ReLU teacher. A neuron's alignment is its largest cosine with a
teacher direction, max_k cos(w_j, u_k) in [−1, 1]. The early phase ends at the first recorded step at which the
training loss has fallen by `early_loss_drop` (a fraction) below its initial value: until then neuron norms stay
near init_scale and only directions move. `aligned_fraction` is the fraction of neurons whose alignment is at
least `align_threshold` then (a neuron with w_j = 0 has no direction and counts as not aligned).

Optimization threshold. A run interpolates when its final training loss is below
`interpolation_tol` · noise_var. A grid point n interpolates when at least `majority` of its seeds do. The
estimated threshold is the smallest n of the grid from which on no larger grid point interpolates, i.e. the grid
point after the largest interpolating one (isolated non-interpolating points below it are treated as noise:
the threshold is where interpolation stops for good). If the largest n still interpolates, the threshold is
beyond the grid: +inf. If no n interpolates, it is the smallest n (the threshold is at most n_min); use
`threshold_bracketed` to tell these apart.

Nothing here imports torch, xarray or h5py at module level: the Snakefile imports this module (for the n grid)
at parse time.
"""

from __future__ import annotations

import math

import numpy as np

TEACHERS = ("linear", "relu")
OPTIMIZERS = ("gd", "adam")
SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"

# config keys each rule depends on (and gets as params): a change reruns exactly what reads it
TEACHER_KEYS = ["seed", "d", "teacher", "teacher_neurons", "n_test"]
DATA_KEYS = ["seed", "noise_var", "seeds"]
TRAIN_KEYS = ["width", "init_scale", "optimizer", "lr", "betas", "steps", "record_points"]
SWEEP_KEYS = ["interpolation_tol", "majority", "align_threshold", "early_loss_drop"]


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


# --- grids ----------------------------------------------------------------------------------------------


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


# --- teacher and data -----------------------------------------------------------------------------------


def _rng(*keys: int) -> np.random.Generator:
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
    rng = _rng(seed, 0)
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
    x = _rng(seed, 1).standard_normal((n_test, d)).astype(np.float32)
    return x, teacher_output(teacher, x, kind)


def sample_data(teacher: dict, kind: str, d: int, n: int, noise_var: float, seed: int,
                run_seed: int) -> dict[str, np.ndarray]:
    """Training set of size n for run seed `run_seed`: `x` [n, d], `y` [n] (noisy labels), `noise` [n].

    Inputs and noise come from their own streams, so the set of size n is the first n samples of any larger one.
    """
    x = _rng(seed, 2, run_seed).standard_normal((n, d)).astype(np.float32)
    noise = (math.sqrt(noise_var) * _rng(seed, 3, run_seed).standard_normal(n)).astype(np.float32)
    return {"x": x, "y": teacher_output(teacher, x, kind) + noise, "noise": noise}


def training_sets(teacher: dict, kind: str, d: int, n: int, noise_var: float, seed: int,
                  run_seeds: list[int]) -> dict[str, np.ndarray]:
    """sample_data for every run seed, stacked: `x` [S, n, d], `y` [S, n], `noise` [S, n], `seeds` [S]."""
    sets = [sample_data(teacher, kind, d, n, noise_var, seed, s) for s in run_seeds]
    out = {k: np.stack([s[k] for s in sets]) for k in ("x", "y", "noise")}
    out["seeds"] = np.asarray(run_seeds, dtype=np.int64)
    return out


def init_student(width: int, d: int, init_scale: float, seed: int, run_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Balanced small initialisation: w_j uniform on the sphere of radius init_scale, a_j = ±init_scale."""
    rng = _rng(seed, 4, run_seed)
    w = rng.standard_normal((width, d))
    w *= init_scale / np.linalg.norm(w, axis=1, keepdims=True)
    a = init_scale * rng.choice([-1.0, 1.0], size=width)
    return w.astype(np.float32), a.astype(np.float32)


# --- alignment ------------------------------------------------------------------------------------------


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


# --- optimization threshold -----------------------------------------------------------------------------


def interpolating_points(interpolates: np.ndarray, majority: float = 0.5) -> np.ndarray:
    """Per grid point: does it interpolate? `interpolates` is [n] (bool or fraction of seeds) or [n, seed] bool;
    a point interpolates when at least `majority` of its seeds do."""
    a = np.asarray(interpolates, dtype=np.float64)
    frac = a.mean(axis=-1) if a.ndim == 2 else a
    return frac >= majority


def estimate_threshold(n_values, interpolates, majority: float = 0.5) -> float:
    """Smallest grid n from which on the student no longer interpolates (see the module docstring).

    +inf: it still interpolates at the largest n (the threshold lies beyond the grid). n_values[0]: it never
    interpolates (the threshold is at most the smallest n). Non-monotone flags: the grid point after the last
    interpolating one.
    """
    n = np.asarray(n_values, dtype=np.float64)
    if n.ndim != 1 or not n.size or np.any(np.diff(n) <= 0):
        raise ValueError("n_values must be a non-empty increasing 1-d grid")
    points = interpolating_points(interpolates, majority)
    if points.shape != n.shape:
        raise ValueError(f"interpolation flags of shape {points.shape} do not match {n.size} grid points")
    if not points.any():
        return float(n[0])
    last = int(np.flatnonzero(points)[-1])
    return math.inf if last == n.size - 1 else float(n[last + 1])


def threshold_bracketed(n_values, n_threshold: float) -> bool:
    """True when the grid brackets the threshold: some n below it interpolates and it is on the grid."""
    return bool(np.isfinite(n_threshold) and n_threshold > float(np.min(n_values)))


def is_monotone(points: np.ndarray) -> bool:
    """Interpolating grid points form a prefix of the grid (interpolates, then never again)."""
    p = np.asarray(points, dtype=bool)
    return bool(not np.any(~p[:-1] & p[1:]))


# --- training -------------------------------------------------------------------------------------------


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
    import torch

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
        from .optim import adam_moments, adam_step

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


def run_dataset(n: int, seeds, result: dict, attrs: dict):
    """One n's runs as an xarray Dataset over (seed, step, neuron)."""
    import xarray as xr

    seeds = np.asarray(seeds, dtype=np.int64)
    m = result["cosine"].shape[-1]
    coords = {"seed": seeds, "step": result["steps"], "neuron": np.arange(m)}
    ds = xr.Dataset(
        {
            "train_loss": (("seed", "step"), result["train_loss"].astype(np.float64)),
            "test_loss": (("seed", "step"), result["test_loss"].astype(np.float64)),
            "cosine": (("seed", "step", "neuron"), result["cosine"].astype(np.float32)),
            "neuron_norm": (("seed", "step", "neuron"), result["neuron_norm"].astype(np.float32)),
            "a_final": (("seed", "neuron"), result["a"].astype(np.float32)),
        },
        coords=coords,
        attrs={"n": int(n), **attrs},
    )
    ds.train_loss.attrs["description"] = "mean squared error on the training set (noisy labels)"
    ds.test_loss.attrs["description"] = "mean squared error against the noiseless teacher on the test set"
    ds.cosine.attrs["description"] = "largest cosine between each neuron's w_j and a teacher direction"
    ds.neuron_norm.attrs["description"] = "|w_j| of each neuron"
    return ds


# --- artifacts (what the rules write and read) ----------------------------------------------------------


def teacher_artifact(spec: dict) -> tuple[dict[str, np.ndarray], dict]:
    """data/teacher.h5 from the teacher keys: teacher parameters, directions and the test set."""
    from .artifacts import sha256_arrays

    kind, d = spec["teacher"], spec["d"]
    teacher = make_teacher(kind, d, spec.get("teacher_neurons", 1), spec["seed"])
    x_test, y_test = make_test_set(teacher, kind, d, spec["n_test"], spec["seed"])
    arrays = {**teacher, "directions": teacher_directions(teacher, kind), "x_test": x_test, "y_test": y_test}
    attrs = {"kind": kind, "d": d, "neurons": int(teacher["teacher_w"].shape[0]), "seed": spec["seed"],
             "n_test": spec["n_test"], "content_sha256": sha256_arrays(*arrays.values()),
             "description": "x ~ N(0, I_d); y_test = f*(x_test) without noise; see ddscope/threshold.py"}
    return arrays, attrs


TEACHER_ARRAYS = ["teacher_w", "teacher_a", "directions", "x_test", "y_test"]
DATA_ARRAYS = ["x", "y", "noise", "seeds"]


def read_teacher(path) -> tuple[dict[str, np.ndarray], dict]:
    from .artifacts import read_h5_verified

    return read_h5_verified(path, TEACHER_ARRAYS)


def data_artifact(teacher: dict, teacher_attrs: dict, n: int, spec: dict) -> tuple[dict[str, np.ndarray], dict]:
    """data/train_n<n>.h5: the training sets of size n of every run seed (nested prefixes of one pool per seed)."""
    from .artifacts import ArtifactError, sha256_arrays

    if spec["seed"] != teacher_attrs["seed"]:
        raise ArtifactError(f"teacher file was made with seed {teacher_attrs['seed']}, not {spec['seed']}; rerun it")
    arrays = training_sets(teacher, teacher_attrs["kind"], int(teacher_attrs["d"]), n, spec["noise_var"],
                           spec["seed"], list(spec["seeds"]))
    attrs = {"n": int(n), "noise_var": float(spec["noise_var"]), "seed": spec["seed"],
             "teacher_sha256": teacher_attrs["content_sha256"],
             "content_sha256": sha256_arrays(*(arrays[k] for k in DATA_ARRAYS))}
    return arrays, attrs


def read_training_set(path, teacher_attrs: dict) -> tuple[dict[str, np.ndarray], dict]:
    from .artifacts import ArtifactError, read_h5_verified

    arrays, attrs = read_h5_verified(path, DATA_ARRAYS)
    if attrs.get("teacher_sha256") != teacher_attrs.get("content_sha256"):
        raise ArtifactError(f"{path}: made from a different teacher than the current data/teacher.h5; delete it and rerun")
    return arrays, attrs


def train_run(teacher_path, data_path, spec: dict, log=None):
    """Train the students of every seed on the training sets of one n; returns run_dataset's Dataset."""
    teacher, t_attrs = read_teacher(teacher_path)
    data, d_attrs = read_training_set(data_path, t_attrs)
    seeds = [int(s) for s in data["seeds"]]
    d, n = int(t_attrs["d"]), int(d_attrs["n"])
    inits = [init_student(spec["width"], d, spec["init_scale"], int(d_attrs["seed"]), s) for s in seeds]
    w0, a0 = np.stack([w for w, _ in inits]), np.stack([a for _, a in inits])

    def progress(step, train, test):
        if log is not None:
            log.info(f"n={n} step {step:>7}: train loss {np.array2string(train, precision=3)}, "
                     f"test loss {np.array2string(test, precision=3)}")

    result = train_students(data["x"], data["y"], teacher["x_test"], teacher["y_test"], w0, a0,
                            teacher["directions"], spec["steps"], spec["lr"], spec["optimizer"],
                            spec.get("betas", (0.9, 0.999)), step_grid(spec["steps"], spec["record_points"]),
                            log=progress)
    diverged = ~np.isfinite(result["train_loss"][:, -1])
    if diverged.any() and log is not None:
        log.warning(f"n={n}: training diverged for seeds {np.asarray(seeds)[diverged].tolist()} "
                    f"(non-finite loss); lower threshold.lr")
    attrs = {"noise_var": d_attrs["noise_var"], "teacher": t_attrs["kind"], "d": d,
             "teacher_sha256": t_attrs["content_sha256"], "data_sha256": d_attrs["content_sha256"],
             **{f"train_{k}": (list(v) if isinstance(v, (list, tuple)) else v) for k, v in spec.items()}}
    return run_dataset(n, seeds, result, attrs)


# --- the sweep ------------------------------------------------------------------------------------------


def build_sweep(runs: list, criteria: dict, noise_var: float, attrs: dict | None = None):
    """The sweep over (n, seed, step) from the per-n datasets (run_dataset), with the threshold estimate.

    criteria: interpolation_tol, majority, align_threshold, early_loss_drop (see the module docstring).
    """
    import xarray as xr

    runs = sorted(runs, key=lambda r: r.attrs["n"])
    n_values = np.asarray([r.attrs["n"] for r in runs], dtype=np.int64)
    stacked = xr.concat([r[["train_loss", "test_loss", "cosine"]] for r in runs], dim="n", join="outer",
                        coords="minimal", compat="override")
    stacked = stacked.assign_coords(n=n_values)
    train, test, cos = stacked.train_loss, stacked.test_loss, stacked.cosine
    final_train = train.isel(step=-1)
    final_test = test.isel(step=-1)
    interpolates = final_train < criteria["interpolation_tol"] * noise_var
    points = interpolating_points(interpolates.values, criteria["majority"])
    n_threshold = estimate_threshold(n_values, points.astype(float), 1.0)
    per_seed = np.array([estimate_threshold(n_values, interpolates.values[:, i].astype(float), 1.0)
                         for i in range(interpolates.sizes["seed"])])

    early = early_phase_end(train.values, criteria["early_loss_drop"])  # n, seed
    idx = np.where(early >= 0, early, 0)
    cos_np = cos.values  # n seed step neuron
    early_cos = np.take_along_axis(cos_np, idx[:, :, None, None], axis=2)[:, :, 0, :]
    early_cos = np.where((early >= 0)[:, :, None], early_cos, np.nan)
    steps = stacked.step.values
    frac = aligned_fraction(early_cos, criteria["align_threshold"])
    frac = np.where(early >= 0, frac, np.nan)
    frac_curve = aligned_fraction(cos_np, criteria["align_threshold"])

    dims2 = ("n", "seed")
    ds = xr.Dataset(
        {
            "train_loss": train,
            "test_loss": test,
            "final_train_loss": final_train.drop_vars("step"),
            "final_test_loss": final_test.drop_vars("step"),
            "interpolates": interpolates.drop_vars("step"),
            "interpolating_fraction": interpolates.drop_vars("step").astype(float).mean("seed"),
            "early_step": (dims2, np.where(early >= 0, steps[idx], -1).astype(np.int64)),
            "early_cosine": (dims2 + ("neuron",), early_cos.astype(np.float32)),
            "aligned_fraction": (dims2, frac),
            "aligned_fraction_curve": (("n", "seed", "step"), frac_curve),
            "final_cosine": (dims2 + ("neuron",), cos_np[:, :, -1, :].astype(np.float32)),
            "n_threshold": ((), n_threshold),
            "n_threshold_seed": (("seed",), per_seed),
        },
        coords={"n": n_values, "seed": stacked.seed.values, "step": steps, "neuron": stacked.neuron.values},
    )
    descriptions = {
        "train_loss": "training MSE (noisy labels) at the recorded steps",
        "test_loss": "test MSE against the noiseless teacher (excess risk) at the recorded steps",
        "interpolates": f"final train loss < interpolation_tol · noise_var = {criteria['interpolation_tol'] * noise_var:g}",
        "interpolating_fraction": "fraction of seeds that interpolate",
        "early_step": "end of the early phase: first recorded step with train loss <= (1 - early_loss_drop) x initial; -1: never",
        "early_cosine": "largest cosine of each neuron with a teacher direction at the end of the early phase",
        "aligned_fraction": "fraction of neurons with early_cosine >= align_threshold",
        "aligned_fraction_curve": "fraction of neurons with cosine >= align_threshold at each recorded step",
        "final_cosine": "largest cosine of each neuron with a teacher direction at the last step",
        "n_threshold": "smallest grid n from which on no grid point interpolates (inf: beyond the grid)",
        "n_threshold_seed": "n_threshold estimated from each seed alone",
    }
    for name, text in descriptions.items():
        ds[name].attrs["description"] = text
    ds.attrs.update(attrs or {})
    ds.attrs.update({
        "noise_var": float(noise_var),
        **{k: float(v) for k, v in criteria.items()},
        "n_threshold": float(n_threshold),
        "threshold_bracketed": int(threshold_bracketed(n_values, n_threshold)),
        "interpolation_monotone": int(is_monotone(points)),
    })
    return ds


# --- findings -------------------------------------------------------------------------------------------


def _fmt_n(value: float) -> str:
    return "beyond the grid (∞)" if math.isinf(value) else f"{value:g}"


def findings_rows(ds) -> list[tuple[str, str, str, str]]:
    """Rows (claim, measured, criterion, verdict) of the threshold study, every number from the sweep."""
    n = ds.n.values.astype(float)
    n_star = float(ds.n_threshold)
    test = ds.final_test_loss.mean("seed").values
    train = ds.final_train_loss.mean("seed").values
    frac_interp = ds.interpolating_fraction.values
    majority, tol = ds.attrs["majority"], ds.attrs["interpolation_tol"]
    noise_var = ds.attrs["noise_var"]
    bracketed = bool(ds.attrs["threshold_bracketed"])
    below, beyond = n < n_star, n >= n_star
    seeds = ", ".join(_fmt_n(v) for v in ds.n_threshold_seed.values)

    measured = [f"n* = {_fmt_n(n_star)} (per seed: {seeds})"]
    if below.any():
        measured.append(f"interpolating regime n = {n[below].min():g}–{n[below].max():g}: "
                        f"train {np.mean(train[below]):.3g}, test {np.mean(test[below]):.3g}")
    if beyond.any():
        measured.append(f"n = {n[beyond].min():g}–{n[beyond].max():g}: train {np.mean(train[beyond]):.3g} "
                        f"(σ² = {noise_var:g}), test {np.mean(test[beyond]):.3g}")
    if bracketed:
        i = int(np.flatnonzero(beyond)[0])
        measured.append(f"test at n = {n[i - 1]:g} vs {n[i]:g}: {test[i - 1]:.3g} vs {test[i]:.3g}")
    if not ds.attrs["interpolation_monotone"]:
        measured.append("interpolation is not monotone in n")
    criterion = (f"interpolates: final train MSE < {tol:g}·σ²; a grid n interpolates when ≥ {majority:.0%} of seeds do; "
                 "supported if the grid brackets n* and the mean test loss (mean over seeds, then over grid points) "
                 "for n ≥ n* is below that for n < n*")
    if not bracketed:
        verdict = INCONCLUSIVE
    else:
        verdict = SUPPORTED if np.mean(test[beyond]) < np.mean(test[below]) else NOT_SUPPORTED
    rows = [("Optimization threshold: a small-init two-layer ReLU student interpolates noisy labels below some n*; "
             "from n* on it no longer does, and its test loss is lower than in the interpolating regime",
             "; ".join(measured), criterion, verdict)]

    frac = ds.aligned_fraction.mean("seed").values
    thr = ds.attrs["align_threshold"]
    ok = np.isfinite(frac)
    measured = (f"aligned fraction at the end of the early phase: n = {n[0]:g}: {frac[0]:.2f}, "
                f"n = {n[-1]:g}: {frac[-1]:.2f}; median early step {np.median(ds.early_step.values):g}")
    criterion = (f"aligned: largest cosine with a teacher direction ≥ {thr:g}; supported if the fraction at the largest n "
                 f"is ≥ {majority:.0%} and larger than at the smallest n")
    if not ok[0] or not ok[-1] or len(n) < 2:
        verdict = INCONCLUSIVE
    else:
        verdict = SUPPORTED if frac[-1] >= majority and frac[-1] > frac[0] else NOT_SUPPORTED
    rows.append(("Early alignment: with small initialisation the neurons align with the teacher directions before "
                 "they grow, and more of them do the larger n", measured, criterion, verdict))
    return rows


def findings_fragment(study: str, rows) -> str:
    """A markdown table with the columns of findings.md; rows numbered T1, T2, … (to merge into findings.md)."""
    lines = [f"<!-- threshold study `{study}`: generated by rule threshold_findings from threshold_sweep.nc -->",
             "| # | claim | measured | criterion | verdict |", "|---|---|---|---|---|"]
    for i, (claim, measured, criterion, verdict) in enumerate(rows, 1):
        lines.append(f"| T{i} | {claim} | {measured} | {criterion} | **{verdict}** |")
    return "\n".join(lines) + "\n"
