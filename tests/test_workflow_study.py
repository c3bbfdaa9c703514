"""A tiny study end to end (train, every analysis, tables, findings, figures, report) and its reruns."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from conftest import run_snakemake, scheduled_jobs
from test_report import assert_captions_attached, intro_analysis_lines, report_parts

from ddscope.analyses.activations import open_activations
from ddscope.findings import CLAIMS

TINY = {
    "study": "tiny",
    "dataset": {"name": "mnist1d", "n_train": 600, "n_test": 200},
    "noise": {"rates": [0.3]},
    "probes": {"clean": 40, "noisy": 30, "test": 40},
    "models": {"mlp3": {"hidden": [16, 16]}, "mlp5": {"hidden": [16, 16, 16, 16]}},
    "train": {"seeds": [0], "epochs": 6, "checkpoint_every": 2, "batch_size": 64},
    "record": {"epochs": {"first": 2, "log_count": 3}},
    "analyses": {"probes": {"n_epochs": 3, "steps": 20}, "large_activation": {"n_epochs": 3}},
}
RUNS = ["mlp3-sym30-ce-s0", "mlp5-sym30-ce-s0"]
ANALYSES = ["double_descent", "separation", "large_activation", "routing", "cka", "probes", "collapse"]
# the dimensions ../shared/DESIGN.md gives the analyses' variables
DESIGN_DIMS = {
    "double_descent": {"test_error_smooth": ("epoch",)},
    "separation": {"cos_clean_noisy": ("epoch", "layer", "class", "label_kind"), "separation_mean": ("epoch", "layer")},
    "large_activation": {"ratio": ("epoch", "layer"), "onset_epoch": ("layer",)},
    "routing": {"routing": ("epoch", "layer", "correctness", "reference")},
    "cka": {"cka": ("layer", "epoch", "epoch_other")},
    "probes": {"agreement": ("layer", "epoch", "epoch_other")},
    "collapse": {"nc1": ("epoch",)},
}
FIGURES = ["curves", "double_descent", "separation", "large_activation", "routing", "cka", "probes", "collapse"]


def write_config(workdir, config, name="config.yaml"):
    path = workdir / name
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("study")
    result = run_snakemake(workdir, configfile=write_config(workdir, TINY), timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return workdir


def dry_run(workdir, config) -> dict[str, int]:
    result = run_snakemake(workdir, "-n", configfile=write_config(workdir, config, "changed.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    return scheduled_jobs(result.stdout + result.stderr)


def changed(section, key, value):
    config = copy.deepcopy(TINY)
    config.setdefault(section, {})
    node = config[section]
    *parents, leaf = key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return config


def test_every_output_exists_with_its_variables(study):
    root = study / "results" / "tiny"
    for run in RUNS:
        acts = open_activations(root / "runs" / run / "activations.zarr")
        n_layers = 2 if run.startswith("mlp3") else 4
        assert {f"act_{l}" for l in range(1, n_layers + 1)} | {"logits", "w_out"} == set(acts.data_vars)
        assert {"epoch", "sample", "subset", "y_assigned", "y_original"} <= set(acts.coords)
        curves = xr.open_dataset(root / "runs" / run / "curves.nc")
        assert set(curves.data_vars) == {"cross_entropy", "accuracy"}
        assert (root / "runs" / run / "model.pt").stat().st_size > 0
        expected = {
            "double_descent": {"dd_depth", "dd_recovery", "test_loss_depth", "test_loss_recovery",
                               "double_descent_test_loss", "double_descent_test_error", "t_fit_clean", "t_fit_noisy",
                               "regeneralises_after_fit", "benign_overfitting", "phase1_end", "phase2_end",
                               "test_error_smooth"},
            "separation": {"cos_clean_noisy", "separation_mean"},
            "large_activation": {"top_value", "top_unit", "median_unit_max", "ratio", "onset_epoch", "input_r2",
                                 "output_eta2"},
            "routing": {"routing", "routing_margin"},
            "cka": {"cka"},
            "probes": {"probe_accuracy", "agreement"},
            "collapse": {"nc1", "nc1_clean", "dilation_normalized", "dilation_std", "memorization_sum", "nc2_equinorm", "nc2_equiangle", "nc3", "nc4"},
        }
        for analysis, names in expected.items():
            ds = xr.open_dataset(root / "metrics" / run / f"{analysis}.nc")
            assert names <= set(ds.data_vars), (analysis, names - set(ds.data_vars))
            assert ds.attrs["run"] == run and ds.attrs["train_config_sha256"] == curves.attrs["train_config_sha256"]
            for name, dims in DESIGN_DIMS[analysis].items():  # dimension names are part of the interface too
                assert ds[name].dims == dims, (analysis, name)
        cka = xr.open_dataset(root / "metrics" / run / "cka.nc").cka
        diagonal = np.diagonal(cka.values, axis1=1, axis2=2)
        np.testing.assert_allclose(diagonal[diagonal > 0], 1, atol=1e-5)  # 0 only for a dead layer
    runs = pd.read_csv(root / "tables" / "runs.csv")
    assert list(runs.run) == RUNS and {"dd_depth", "separation_final_l1", "dilation_normalized_final"} <= set(runs.columns)
    summary = pd.read_csv(root / "tables" / "summary.csv")
    assert {"dd_depth_mean", "dd_depth_std", "n_seeds"} <= set(summary.columns)
    findings = (root / "findings.md").read_text()
    claims = [line for line in findings.splitlines() if line.startswith("| ") and line[2].isdigit()]
    verdicts = ("**supported** |", "**not supported** |", "**inconclusive** |")
    assert len(claims) == len(CLAIMS) and all(line.rstrip().endswith(verdicts) for line in claims)
    for figure in FIGURES:
        png = root / "figures" / f"{figure}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure


def test_report_is_self_contained(study):
    report = study / "report.html"
    result = run_snakemake(study, "--report", report, configfile=write_config(study, TINY))
    assert result.returncode == 0, result.stderr[-3000:]
    html = report.read_text(errors="replace")
    assert report.stat().st_size > 50_000  # figures are embedded, not linked
    for figure in FIGURES:
        assert f"{figure}.png" in html, figure
    intro, captions, _ = report_parts(html)
    for line in intro_analysis_lines():  # the intro describes every analysis of the registry
        assert line in intro, line
    assert_captions_attached(captions, "results/tiny", FIGURES)


def test_nothing_to_do_after_a_run(study):
    assert dry_run(study, TINY) == {}


def test_figure_setting_reruns_only_plots(study):
    jobs = dry_run(study, changed("figures", "dpi", 80))
    assert set(jobs) - {"all"} == {f"plot_{f}" for f in FIGURES}


def test_analysis_threshold_reruns_that_analysis_and_its_readers(study):
    jobs = dry_run(study, changed("analyses", "large_activation.ratio_threshold", 3.0))
    assert jobs.get("extract_large_activation") == len(RUNS)
    assert not {"train", "extract_separation", "extract_cka", "extract_double_descent"} & set(jobs)
    assert "summarize" in jobs and "findings" in jobs and "plot_large_activation" in jobs


def test_findings_criterion_reruns_only_findings(study):
    assert set(dry_run(study, changed("analyses", "findings.majority", 0.9))) - {"all"} == {"findings"}


def test_new_seed_trains_only_the_new_runs(study):
    jobs = dry_run(study, changed("train", "seeds", [0, 1]))
    assert jobs["train"] == len(RUNS) and jobs["extract_cka"] == len(RUNS)
    # each model's new seed is a stack of its own: the finished seed 0 is not trained again with it
    assert {j for j in jobs if j.startswith("train_stack_")} == {"train_stack_mlp3_sym30_ce_s1",
                                                                  "train_stack_mlp5_sym30_ce_s1"}
    assert "prepare_dataset" not in jobs and "make_noisy_labels" not in jobs


def test_learning_rate_retrains(study):
    jobs = dry_run(study, changed("train", "lr", 3e-3))
    assert jobs["train"] == len(RUNS) and "prepare_dataset" not in jobs


@pytest.mark.parametrize("section, key, value", [
    ("train", "device", "cpu"), ("train", "threads", 2), ("train", "eval_batch_size", 100),
    ("train", "checkpoint_every", 5), ("train", "gpus", 0), ("analyses", "cka.max_mem_mb", 64),
    ("train", "stack", 1), ("train", "stack", 8),
])
def test_execution_settings_rerun_nothing(study, section, key, value):
    # they say how a result is computed, not what it is: a finished study stays finished
    assert dry_run(study, changed(section, key, value)) == {}


def test_training_asks_for_a_gpu_only_when_the_study_trains_on_gpus(study):
    def train_resources(config):
        result = run_snakemake(study, "-n", "--forcerun", "train", configfile=write_config(study, config, "gpu.yaml"))
        assert result.returncode == 0, result.stderr[-3000:]
        out = result.stdout + result.stderr
        block = out[out.index("rule train_stack_"):]
        return block[block.index("resources:"):].splitlines()[0]

    assert "gpu=" not in train_resources(TINY)  # the default (device auto, gpus 0) fits a CPU partition
    # one --set-resources for every stack's training job, whatever its rule's name
    result = run_snakemake(study, "-n", "--forcerun", "train", "--set-resources", "train_stack:slurm_partition=gpu",
                           configfile=write_config(study, TINY, "gpu.yaml"))
    out = result.stdout + result.stderr
    requests = [line for line in out.splitlines() if line.strip().startswith("resources:")]
    assert sum("slurm_partition=gpu" in line for line in requests) == len(RUNS), out[-3000:]
    assert "gpu=1" in train_resources(changed("train", "gpus", 1))
    assert "gpu=1" in train_resources(changed("train", "device", "cuda"))


def test_forcerun_train_retrains_through_the_stacks(study):
    """`--forcerun train` reaches the training: each run's stack job makes its trained/ again."""
    result = run_snakemake(study, "-n", "--forcerun", "train", "--until", "train",
                           configfile=write_config(study, TINY, "force.yaml"))
    jobs = scheduled_jobs(result.stdout + result.stderr)
    assert jobs["train"] == len(RUNS) and {"train_stack_mlp3_sym30_ce_s0", "train_stack_mlp5_sym30_ce_s0"} <= set(jobs)
    assert not {j for j in jobs if j.startswith("extract_")}


def test_activation_store_opens_with_plain_xarray_without_warnings(study):
    # a directory() output holds Snakemake's .snakemake_timestamp; consolidated metadata keeps zarr from listing it
    store = study / "results" / "tiny" / "runs" / RUNS[0] / "activations.zarr"
    assert (store / ".snakemake_timestamp").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        acts = xr.open_zarr(store)
        assert float(acts.act_1.isel(epoch=-1).mean()) >= 0


def test_double_descent_criterion_reruns_that_analysis_and_its_readers_only(study):
    """min_recovery changes the double-descent flags and what reads them (the trends start at its phases), never
    the training or the activation analyses."""
    jobs = dry_run(study, changed("analyses", "double_descent.min_recovery", 0.7))
    assert jobs.get("extract_double_descent") == len(RUNS)
    assert not {"train", "extract_separation", "extract_cka", "extract_collapse"} & set(jobs)
    assert "summarize" in jobs and "findings" in jobs
    assert set(dry_run(study, changed("analyses", "findings.margin_se", 3.0))) - {"all"} == {"findings"}
