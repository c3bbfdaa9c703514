"""The data stages end to end: a tiny MNIST-1D study built for real by snakemake in a temp dir, its HDF5 files
checked against DESIGN.md, then dry runs after config changes schedule exactly the jobs that depend on them.

Targets are always named (file paths), so rules that later issues add to `rule all` do not run here.
"""

from __future__ import annotations

import copy
import re

import h5py
import numpy as np
import pytest
import yaml
from conftest import run_snakemake, scheduled_jobs

from ddscope.artifacts import DATASET_ARRAYS, LABEL_ARRAYS, read_dataset, read_labels, sha256_arrays
from ddscope.noise import make_noisy_labels

TINY = {
    "study": "tiny",
    "dataset": {"name": "mnist1d", "n_train": 600, "n_test": 200, "seed": 5},
    "noise": {"kind": "symmetric", "rates": [0.3], "seed": 3},
    "probes": {"clean": 60, "noisy": 30, "test": 40},
    "models": {"mlp3": {"hidden": [8, 8]}},
    "train": {"losses": ["ce"], "seeds": [0], "epochs": 4, "batch_size": 64},
    "record": {"epochs": {"first": 2, "log_count": 2}},
}
DATASET = "results/tiny/data/dataset.h5"
LABELS = "results/tiny/labels/{}.h5"


def write_config(workdir, name: str, config: dict):
    path = workdir / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A workdir in which snakemake has built dataset.h5 and labels/sym30.h5 of the tiny study."""
    workdir = tmp_path_factory.mktemp("workflow_data")
    config = write_config(workdir, "tiny.yaml", TINY)
    proc = run_snakemake(workdir, DATASET, LABELS.format("sym30"), configfile=config, cores=2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return workdir


def dry_run(workdir, config: dict, *targets: str) -> tuple[dict[str, int], str]:
    path = write_config(workdir, "changed.yaml", config)
    proc = run_snakemake(workdir, "-n", *(targets or (DATASET, LABELS.format("sym30"))), configfile=path, cores=2)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return scheduled_jobs(proc.stdout + "\n" + proc.stderr), proc.stdout


def changed(path: str, value) -> dict:
    config = copy.deepcopy(TINY)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node[key]
    node[last] = value
    return config


# --- the files ---------------------------------------------------------------------------------------


def test_dataset_file(study):
    path = study / DATASET
    with h5py.File(path) as f:
        assert sorted(f) == sorted(DATASET_ARRAYS)
        for split, n in (("train", 600), ("test", 200)):
            x, y = f[f"x_{split}"], f[f"y_{split}"]
            assert x.dtype == np.float32 and x.shape == (n, 40)
            assert y.dtype == np.int64 and y.shape == (n,)
        attrs = dict(f.attrs)
    assert attrs["name"] == "mnist1d"
    assert "mnist1d" in attrs["source"] and "seed 5" in attrs["source"]
    assert re.fullmatch(r"[0-9a-f]{64}", attrs["sha256"])
    assert "mean/std" in attrs["normalisation"]
    assert len(attrs["norm_mean"]) == len(attrs["norm_std"]) == 1
    arrays, _ = read_dataset(path)  # content hash checked
    x = arrays["x_train"].astype(np.float64)
    assert abs(x.mean()) < 1e-4 and abs(x.std() - 1) < 1e-4
    assert set(np.unique(arrays["y_train"])) == set(range(10))


def test_label_file(study):
    dataset, dataset_attrs = read_dataset(study / DATASET)
    path = study / LABELS.format("sym30")
    arrays, attrs = read_labels(path, dataset_attrs)  # y_noisy hash and dataset link checked
    with h5py.File(path) as f:
        assert sorted(f) == sorted(LABEL_ARRAYS)
    n = 600
    assert arrays["y_original"].dtype == np.int64 and arrays["y_original"].shape == (n,)
    assert arrays["y_noisy"].dtype == np.int64 and arrays["y_noisy"].shape == (n,)
    assert arrays["is_noisy"].dtype == bool and arrays["is_noisy"].shape == (n,)
    np.testing.assert_array_equal(arrays["y_original"], dataset["y_train"])
    assert [len(arrays[f"probe_{s}"]) for s in ("clean", "noisy", "test")] == [60, 30, 40]
    assert not arrays["is_noisy"][arrays["probe_clean"]].any()
    assert arrays["is_noisy"][arrays["probe_noisy"]].all()
    assert arrays["probe_test"].max() < 200
    assert attrs["kind"] == "symmetric"
    assert attrs["rate_nominal"] == 0.3
    assert attrs["n_flipped"] == 180 == int(arrays["is_noisy"].sum())
    assert attrs["rate_realised"] == pytest.approx(0.3)
    assert attrs["seed"] == 3
    assert bool(attrs["flips_change_class"]) is True
    assert np.all(arrays["y_noisy"][arrays["is_noisy"]] != arrays["y_original"][arrays["is_noisy"]])
    assert attrs["sha256"] == sha256_arrays(arrays["y_noisy"])


def test_label_file_equals_the_library_result(study):
    """The rule passes the right seed and probe sizes: the file holds exactly what ddscope.noise computes."""
    dataset, dataset_attrs = read_dataset(study / DATASET)
    expected, _ = make_noisy_labels(dataset["y_train"], dataset["y_test"], "symmetric", 0.3, 10, 3,
                                    TINY["probes"], dataset_attrs["content_sha256"])
    got, _ = read_labels(study / LABELS.format("sym30"))
    for name in LABEL_ARRAYS:
        np.testing.assert_array_equal(got[name], expected[name])


def test_logs_and_benchmarks(study):
    for path in ("results/tiny/logs/prepare_dataset.log", "results/tiny/logs/make_noisy_labels/sym30.log",
                 "results/tiny/benchmarks/prepare_dataset.tsv", "results/tiny/benchmarks/make_noisy_labels/sym30.tsv"):
        assert (study / path).is_file(), path
    assert "flipped 180 of 600" in (study / "results/tiny/logs/make_noisy_labels/sym30.log").read_text()


# --- incremental reruns (dry runs against the built study) ---------------------------------------------


def test_scheduled_jobs_parser():
    text = """Building DAG of jobs...
Job stats:
job                  count
-----------------  -------
prepare_dataset          1
make_noisy_labels        2
total                    3

Reasons:
"""
    assert scheduled_jobs(text) == {"prepare_dataset": 1, "make_noisy_labels": 2}
    assert scheduled_jobs("Nothing to be done (all requested files are present and up to date).") == {}


def test_unchanged_config_schedules_nothing(study):
    jobs, stdout = dry_run(study, TINY)
    assert jobs == {}
    assert "Nothing to be done" in stdout


def test_noise_seed_reruns_labels_only(study):
    jobs, _ = dry_run(study, changed("noise.seed", 4))
    assert jobs == {"make_noisy_labels": 1}


def test_probe_sizes_rerun_labels_only(study):
    jobs, _ = dry_run(study, changed("probes", {"clean": 61, "noisy": 30, "test": 40}))
    assert jobs == {"make_noisy_labels": 1}


def test_n_train_reruns_dataset_and_labels(study):
    jobs, _ = dry_run(study, changed("dataset.n_train", 700))
    assert jobs == {"prepare_dataset": 1, "make_noisy_labels": 1}


def test_second_rate_schedules_only_its_label_file(study):
    jobs, stdout = dry_run(study, changed("noise.rates", [0.3, 0.2]),
                           DATASET, LABELS.format("sym30"), LABELS.format("sym20"))
    assert jobs == {"make_noisy_labels": 1}
    assert f"output: {LABELS.format('sym20')}" in stdout
    assert f"output: {LABELS.format('sym30')}" not in stdout


def test_keys_the_data_does_not_use_rerun_nothing(study):
    """Only the keys a rule uses are its params: training keys and CIFAR-only keys leave the data alone."""
    config = changed("train.epochs", 7)
    config["dataset"]["data_dir"] = "elsewhere/cifar10"
    config["models"]["mlp5"] = {"hidden": [8, 8, 8, 8]}
    jobs, _ = dry_run(study, config)
    assert jobs == {}
