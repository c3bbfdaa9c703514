"""What the threshold rules write and read: data/teacher.h5, the training set of each n, one training run."""

from __future__ import annotations

import numpy as np

from ddscope.artifacts import TEACHER_CF_ATTRS, TRAINING_SET_CF_ATTRS, ArtifactError, read_h5_verified, sha256_arrays
from ddscope.threshold.keys import step_grid
from ddscope.threshold.student import init_student, train_students
from ddscope.threshold.sweep import run_dataset
from ddscope.threshold.teacher import make_teacher, make_test_set, teacher_directions, training_sets


def teacher_artifact(spec: dict) -> tuple[dict[str, np.ndarray], dict]:
    """data/teacher.h5 from the teacher keys: teacher parameters, directions and the test set."""
    kind, d = spec["teacher"], spec["d"]
    teacher = make_teacher(kind, d, spec.get("teacher_neurons", 1), spec["seed"])
    x_test, y_test = make_test_set(teacher, kind, d, spec["n_test"], spec["seed"])
    arrays = {**teacher, "directions": teacher_directions(teacher, kind), "x_test": x_test, "y_test": y_test}
    attrs = {"kind": kind, "d": d, "neurons": int(teacher["teacher_w"].shape[0]), "seed": spec["seed"],
             "n_test": spec["n_test"], "content_sha256": sha256_arrays(*arrays.values()),
             "description": "x ~ N(0, I_d); y_test = f*(x_test) without noise; see ddscope/threshold.py"}
    return arrays, attrs


# the order of content_sha256; write_h5 describes the arrays from these tables
TEACHER_ARRAYS = list(TEACHER_CF_ATTRS)
DATA_ARRAYS = list(TRAINING_SET_CF_ATTRS)


def read_teacher(path) -> tuple[dict[str, np.ndarray], dict]:
    return read_h5_verified(path, TEACHER_ARRAYS)


def data_artifact(teacher: dict, teacher_attrs: dict, n: int, spec: dict) -> tuple[dict[str, np.ndarray], dict]:
    """data/train_n<n>.h5: the training sets of size n of every run seed (nested prefixes of one pool per seed)."""
    if spec["seed"] != teacher_attrs["seed"]:
        raise ArtifactError(f"teacher file was made with seed {teacher_attrs['seed']}, not {spec['seed']}; rerun it")
    arrays = training_sets(teacher, teacher_attrs["kind"], int(teacher_attrs["d"]), n, spec["noise_var"],
                           spec["seed"], list(spec["seeds"]))
    attrs = {"n": int(n), "noise_var": float(spec["noise_var"]), "seed": spec["seed"],
             "teacher_sha256": teacher_attrs["content_sha256"],
             "content_sha256": sha256_arrays(*(arrays[k] for k in DATA_ARRAYS))}
    return arrays, attrs


def read_training_set(path, teacher_attrs: dict) -> tuple[dict[str, np.ndarray], dict]:
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
