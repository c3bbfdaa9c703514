"""The threshold study end to end: a tiny grid built for real by snakemake in a temp dir (about 20 s of CPU),
its files checked against ddscope/threshold.py, then dry runs after config changes schedule exactly the jobs
that depend on them (parsed from the "Job stats" table).

Targets are always named (file paths), so rules that later issues add to `rule all` do not run here.
"""

from __future__ import annotations

import copy

import h5py
import numpy as np
import pytest
import xarray as xr
import yaml
from conftest import run_snakemake, scheduled_jobs

from ddscope.threshold.artifacts import DATA_ARRAYS, TEACHER_ARRAYS
from ddscope.threshold.keys import step_grid
from ddscope.threshold.sweep import estimate_threshold

TINY = {
    "study": "tiny",
    "threshold": {
        "d": 3,
        "n_min": 4,
        "n_max": 64,
        "n_points": 2,
        "seeds": [0, 1],
        "width": 10,
        "init_scale": 1.0e-3,
        "steps": 400,
        "record_points": 15,
        "n_test": 500,
    },
    "figures": {"dpi": 50},
}
ROOT = "results/tiny"
TARGETS = [
    f"{ROOT}/threshold/threshold_sweep.nc",
    f"{ROOT}/figures/threshold_loss.png",
    f"{ROOT}/figures/threshold_alignment.png",
    f"{ROOT}/findings.md",
]
PLOT_RULES = {"threshold_plot_loss": 1, "threshold_plot_alignment": 1}

pytestmark = pytest.mark.slow


def write_config(workdir, name: str, config: dict):
    path = workdir / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def changed(**changes) -> dict:
    """TINY with threshold.<key> (or figures.<key> for `figures_<key>`) changed."""
    config = copy.deepcopy(TINY)
    for key, value in changes.items():
        if key.startswith("figures_"):
            config["figures"][key.removeprefix("figures_")] = value
        else:
            config["threshold"][key] = value
    return config


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A workdir in which snakemake has built every threshold output of the tiny study."""
    workdir = tmp_path_factory.mktemp("threshold_workflow")
    config = write_config(workdir, "tiny.yaml", TINY)
    proc = run_snakemake(workdir, *TARGETS, configfile=config, cores=2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return workdir


def dry_run(workdir, config: dict) -> dict[str, int]:
    path = write_config(workdir, "changed.yaml", config)
    proc = run_snakemake(workdir, "-n", *TARGETS, configfile=path, cores=2)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return scheduled_jobs(proc.stdout + "\n" + proc.stderr)


def open_nc(path) -> xr.Dataset:
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()


# --- the files ------------------------------------------------------------------------------------------


def test_teacher_file(study):
    with h5py.File(study / f"{ROOT}/threshold/data/teacher.h5") as f:
        assert sorted(f) == sorted(TEACHER_ARRAYS)
        assert f["teacher_w"].shape == (1, 3) and f["directions"].shape == (2, 3)
        assert f["x_test"].shape == (500, 3) and f["y_test"].shape == (500,)
        x, y, w = f["x_test"][()], f["y_test"][()], f["teacher_w"][()]
        attrs = dict(f.attrs)
    np.testing.assert_allclose(y, x @ w[0], rtol=1e-5, atol=1e-5)  # noiseless linear teacher
    assert attrs["kind"] == "linear" and attrs["d"] == 3 and len(attrs["content_sha256"]) == 64


def test_training_sets_are_nested_over_n(study):
    sets = {}
    for n in (4, 64):
        with h5py.File(study / f"{ROOT}/threshold/data/train_n{n}.h5") as f:
            assert sorted(f) == sorted(DATA_ARRAYS)
            sets[n] = {k: f[k][()] for k in f}
            assert f.attrs["n"] == n and f.attrs["noise_var"] == 0.25
        assert sets[n]["x"].shape == (2, n, 3) and sets[n]["y"].shape == (2, n)
        assert sets[n]["seeds"].tolist() == [0, 1]
    np.testing.assert_array_equal(sets[4]["x"], sets[64]["x"][:, :4])
    np.testing.assert_array_equal(sets[4]["y"], sets[64]["y"][:, :4])


def test_per_n_runs(study):
    steps = step_grid(400, 15)
    for n in (4, 64):
        ds = open_nc(study / f"{ROOT}/threshold/runs/n{n}.nc")
        assert ds.attrs["n"] == n
        assert dict(ds.sizes) == {"seed": 2, "step": len(steps), "neuron": 10}
        assert ds.step.values.tolist() == steps
        for name in ("train_loss", "test_loss", "cosine", "neuron_norm"):
            assert np.isfinite(ds[name].values).all(), name


def test_sweep_dataset(study):
    ds = open_nc(study / TARGETS[0])
    assert dict(ds.sizes) == {"n": 2, "seed": 2, "step": len(step_grid(400, 15)), "neuron": 10}
    assert ds.n.values.tolist() == [4, 64]
    dims = {
        "train_loss": ("n", "seed", "step"),
        "test_loss": ("n", "seed", "step"),
        "aligned_fraction_curve": ("n", "seed", "step"),
        "final_train_loss": ("n", "seed"),
        "final_test_loss": ("n", "seed"),
        "interpolates": ("n", "seed"),
        "aligned_fraction": ("n", "seed"),
        "early_step": ("n", "seed"),
        "early_cosine": ("n", "seed", "neuron"),
        "final_cosine": ("n", "seed", "neuron"),
        "interpolating_fraction": ("n",),
        "n_threshold_seed": ("seed",),
        "n_threshold": (),
        "final_rel_change": ("n", "seed"),
        "converged": ("n", "seed"),
        "point_converged": ("n",),
        "break_fit_below": ("n",),
        "break_fit_beyond": ("n",),
        "test_break": (),
        "test_break_n": (),
        "test_trend_below": (),
        "test_trend_beyond": (),
        "test_slope_below": (),
        "test_slope_beyond": (),
    }
    for name, expected in dims.items():
        assert ds[name].dims == expected, name
        assert ds[name].attrs.get("description"), name
    np.testing.assert_array_equal(ds.final_train_loss, ds.train_loss.isel(step=-1))
    assert ds.interpolates.dtype == bool
    np.testing.assert_array_equal(ds.interpolates, ds.final_train_loss < 0.01 * 0.25)
    expected = estimate_threshold(ds.n.values, ds.interpolates.values, ds.attrs["majority"])
    assert float(ds.n_threshold) == expected == ds.attrs["n_threshold"]
    cos = ds.early_cosine.values
    assert np.all((cos[np.isfinite(cos)] >= -1) & (cos[np.isfinite(cos)] <= 1))
    assert np.all((ds.aligned_fraction.values >= 0) & (ds.aligned_fraction.values <= 1))
    assert ds.attrs["teacher"] == "linear" and ds.attrs["train_steps"] == 400
    # the tiny grid already shows it: 4 samples are fitted, 64 are not
    assert ds.interpolates.sel(n=4).all() and not ds.interpolates.sel(n=64).any()
    assert ds.attrs["converged_tol"] == 0.01 and ds.attrs["break_ratio"] == 0.5  # schema defaults
    np.testing.assert_array_equal(ds.converged, ds.final_rel_change < 0.01)
    # one grid point below n* = 64: no trend of the interpolating regime, so no break estimate
    assert ds.break_fit_below.values.tolist() == [True, False] and np.isnan(float(ds.test_break))


def test_every_file_describes_every_variable(study):
    """CF long_name and units on every variable and coordinate, Conventions on every file (as the noisy-label
    study's, tests/test_outputs.py)."""
    from test_outputs import study_files, undescribed

    files = study_files(study / ROOT / "threshold")
    assert len(files) == 6  # teacher, two training sets, two runs, the sweep
    assert {f.name: undescribed(f) for f in files if undescribed(f)} == {}


def test_figures_and_findings(study):
    for name in ("threshold_loss", "threshold_alignment"):
        data = (study / f"{ROOT}/figures/{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    text = (study / f"{ROOT}/findings.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| T")]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 6 and cells[5].strip("*") in ("supported", "not supported", "inconclusive")
        assert "Boursier & Flammarion 2025" in cells[2]
    assert "n* = 64" in rows[0] and "converged" in rows[0]
    assert rows[0].endswith("**inconclusive** |")  # a break needs two grid points on each side of n*


def test_logs_and_benchmarks(study):
    logs = study / f"{ROOT}/logs"
    for name in ("threshold_teacher.log", "threshold_data/n4.log", "threshold_train/n64.log",
                 "threshold_sweep.log", "threshold_plot_loss.log", "threshold_findings.log"):
        assert (logs / name).stat().st_size > 0, name
    assert "step" in (logs / "threshold_train/n64.log").read_text()
    assert (study / f"{ROOT}/benchmarks/threshold_train/n4.tsv").exists()


# --- reruns ---------------------------------------------------------------------------------------------


def test_unchanged_config_schedules_nothing(study):
    assert dry_run(study, TINY) == {}


def test_figure_setting_reruns_only_the_plots(study):
    assert dry_run(study, changed(figures_dpi=60)) == PLOT_RULES
    assert dry_run(study, changed(figures_band="minmax")) == PLOT_RULES


def test_criteria_rerun_the_sweep_not_training(study):
    after_sweep = {"threshold_sweep": 1, "threshold_findings": 1, "findings": 1, **PLOT_RULES}
    assert dry_run(study, changed(interpolation_tol=0.02)) == after_sweep
    assert dry_run(study, changed(align_threshold=0.8)) == after_sweep
    assert dry_run(study, changed(converged_tol=0.05)) == after_sweep
    assert dry_run(study, changed(break_ratio=0.3)) == after_sweep


def test_training_setting_reruns_training_not_data(study):
    jobs = dry_run(study, changed(lr=0.1))
    assert jobs == {"threshold_train": 2, "threshold_sweep": 1, "threshold_findings": 1, "findings": 1, **PLOT_RULES}


def test_new_grid_point_trains_only_it(study):
    jobs = dry_run(study, changed(n_points=3))  # grid 4, 16, 64
    assert jobs == {"threshold_data": 1, "threshold_train": 1, "threshold_sweep": 1, "threshold_findings": 1, "findings": 1,
                    **PLOT_RULES}


def test_keys_nobody_uses_rerun_nothing(study):
    # a linear teacher ignores teacher_neurons, gradient descent ignores betas, the run ignores threads
    assert dry_run(study, changed(teacher_neurons=7, betas=[0.8, 0.99], threads=2)) == {}


def test_bad_grid_is_one_line_before_any_job(study):
    path = write_config(study, "bad.yaml", changed(n_min=100))
    proc = run_snakemake(study, "-n", *TARGETS, configfile=path)
    assert proc.returncode != 0
    assert "ddscope: config error: threshold.n_min: 100 is larger than threshold.n_max: 64" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_one_config_can_hold_both_studies(tmp_path):
    """A config with models and a threshold: section schedules both studies and one findings.md from both (the
    default study: 3 models × 3 seeds × 2 noise rates = 18 training jobs)."""
    from conftest import REPO

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["threshold"] = TINY["threshold"]
    path = write_config(tmp_path, "both.yaml", config)
    proc = run_snakemake(tmp_path, "-n", "--printshellcmds", configfile=path, cores=1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = scheduled_jobs(proc.stdout)
    assert jobs["train"] == 18 and jobs["threshold_train"] == 2 and jobs["findings"] == 1
    findings_job = proc.stdout[proc.stdout.index("rule findings:"):].split("\n\n")[0]
    assert "tables/runs.csv" in findings_job and "threshold/findings_rows.md" in findings_job
