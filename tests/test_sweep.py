"""Sweeps (config `sweep`: a family of models over depth × width): config expansion and run names, the figures
across a sweep on synthetic runs, the model-wise rows of findings.md, and the workflow's scheduling of a tiny sweep.
"""

from __future__ import annotations

import copy
import io
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from conftest import REPO, SCHEMA, run_snakemake, scheduled_jobs
from synthetic import make_curves

from ddscope import findings, plots, resources
from ddscope.analyses.double_descent import extract_double_descent
from ddscope.config import (ConfigError, study_config, has_noisy_label_study, parse_run, run_names, sweep_hidden, sweep_model_name,
                            sweep_models, validate_config)
from ddscope.findings import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, SWEEP_CLAIMS, findings_rows
from ddscope.plots import sweep as sweep_plots

BASE = {
    "study": "t",
    "dataset": {"name": "mnist1d", "n_train": 600, "n_test": 200, "seed": 1},
    "noise": {"rates": [0.2]},
    "probes": {"clean": 50, "noisy": 30, "test": 40},
    "sweep": {"depths": [3, 5], "widths": [8, 64, 512]},
    "train": {"seeds": [0], "epochs": 5, "batch_size": 32},
    "record": {"epochs": {"first": 2, "log_count": 2}},
}


def validate(config: dict) -> dict:
    return validate_config(config, SCHEMA)


def with_sweep(**changes) -> dict:
    config = copy.deepcopy(BASE)
    config["sweep"].update(changes)
    return config


def config_error(config: dict) -> str:
    with pytest.raises(ConfigError) as info:
        validate(config)
    assert "\n" not in str(info.value)
    return str(info.value)


# --- config: expansion into models, run names ----------------------------------------------------------


def test_sweep_expands_into_models_depth_major():
    resolved = validate(BASE)
    assert list(resolved["models"]) == ["mlp3w8", "mlp3w64", "mlp3w512", "mlp5w8", "mlp5w64", "mlp5w512"]
    assert resolved["models"]["mlp3w512"] == {"hidden": [512, 512]}
    assert resolved["models"]["mlp5w8"] == {"hidden": [8] * 4}
    assert resolved["sweep"]["family"] == "mlp"  # the default
    assert has_noisy_label_study(resolved)
    assert sweep_models(resolved)["mlp5w64"] == {"depth": 5, "width": 64}
    assert sweep_models(validate({k: v for k, v in BASE.items() if k != "sweep"} | {"models": {"a": {"hidden": [4]}}}
                                 )) == {}
    for name, grid in sweep_models(resolved).items():
        assert name == sweep_model_name("mlp", grid["depth"], grid["width"])
        assert resolved["models"][name]["hidden"] == sweep_hidden(grid["depth"], grid["width"])
        assert len(sweep_hidden(grid["depth"], grid["width"])) == grid["depth"] - 1  # like mlp3 = 2 hidden layers


def test_named_models_come_first_and_a_family_renames():
    config = with_sweep(family="net", widths=[16])
    config["models"] = {"mlp7": {"hidden": [128] * 6}}
    resolved = validate(config)
    assert list(resolved["models"]) == ["mlp7", "net3w16", "net5w16"]


def test_run_names_are_short_and_match_the_rules_wildcard():
    names = run_names(validate(BASE))
    assert "mlp3w512-sym20-ce-s0" in names and len(names) == len(set(names)) == 6
    pattern = re.search(r'run="([^"]+)"', (REPO / "rules" / "common.smk").read_text()).group(1)
    for name in names:
        assert re.fullmatch(pattern, name), name
        assert parse_run(name)["model"] in sweep_models(validate(BASE))


def test_a_name_clash_with_another_network_names_the_key():
    config = copy.deepcopy(BASE)
    config["models"] = {"mlp3w64": {"hidden": [64, 64, 64]}}
    message = config_error(config)
    assert message.startswith("models.mlp3w64:") and "sweep" in message and "width 64" in message


def test_a_resolved_config_validates_again_unchanged():
    resolved = validate(BASE)
    assert validate(resolved) == resolved
    config = copy.deepcopy(BASE)
    config["models"] = {"mlp3w64": {"hidden": [64, 64]}}  # the same network under the same name: one model
    assert list(validate(config)["models"]).count("mlp3w64") == 1


@pytest.mark.parametrize("change, key, fragment", [
    ({"family": "mlp2"}, "sweep.family", "^([a-z][a-z_]*|resnet18)$"),
    ({"depths": [1]}, "sweep.depths", "at least 2"),
    ({"depths": [0]}, "sweep.depths[0]", ">= 1"),
    ({"widths": []}, "sweep.widths", "at least 1"),
    ({"widths": [8, 8]}, "sweep.widths", "duplicate"),
    ({"widths": [0]}, "sweep.widths[0]", ">= 1"),
    ({"width": [8]}, "sweep.width", "unknown key"),
])
def test_bad_sweeps_are_one_line_errors(change, key, fragment):
    message = config_error(with_sweep(**change))
    assert message.startswith(f"{key}:") and fragment in message, message


def test_a_sweep_without_a_dataset_is_an_error():
    config = {k: v for k, v in BASE.items() if k != "dataset"}
    assert config_error(config).startswith("dataset: required key is missing")


def test_resources_are_sized_for_generated_models():
    resolved = validate(BASE)
    narrow, wide = "mlp3w8", "mlp3w512"
    assert resources.train_runtime_min(resolved, wide) >= resources.train_runtime_min(resolved, narrow)
    assert resources.train_mem_mb(resolved, wide) >= resources.train_mem_mb(resolved, narrow)
    assert resources.extract_mem_mb(resolved, wide, "cka") >= resources.extract_mem_mb(resolved, narrow, "cka")


def test_the_model_wise_study_reaches_four_times_the_default_width():
    default = validate(yaml.safe_load((REPO / "config.yaml").read_text()))
    resolved = validate(study_config([REPO / "configs" / "model-wise.yaml"]))  # layered, as --configfile takes it
    assert max(resolved["sweep"]["widths"]) >= 4 * max(default["models"]["mlp7"]["hidden"])
    assert resolved["study"] == "model-wise" and sweep_models(resolved)


# --- figures on synthetic runs ------------------------------------------------------------------------

SWEEP = {f"mlp{d}w{w}": {"depth": d, "width": w} for d in (3, 5) for w in (8, 32, 128)}
EPOCHS = np.arange(151)
RECORDED = np.array([0, 1, 2, 4, 8, 16, 32, 64, 100, 150])


def knots(width: int) -> tuple:
    """A model-wise peak at width 32 (final error highest there); the widest model dips early, peaks, recovers."""
    final = {8: 0.40, 32: 0.55, 128: 0.30}[width]
    return ((0, 0.9), (10, 0.30), (60, 0.60), (150, final)) if width == 128 else ((0, 0.9), (150, final))


def synthetic_runs(seeds=(0, 1), noisy=True, extra_models=()):
    dd, sep = {}, {}
    for model in list(SWEEP) + list(extra_models):
        width = SWEEP.get(model, {"width": 128})["width"]
        n_layers = SWEEP.get(model, {"depth": 7})["depth"] - 1
        for seed in seeds:
            run = f"{model}-sym20-ce-s{seed}"
            curves = make_curves(epochs=EPOCHS, test_error=knots(width), fit_noisy_epoch=40 if width >= 32 else None,
                                 noise=0.005, seed=seed)
            dd[run] = extract_double_descent(curves, {"smooth_window": 3})
            values = np.linspace(0.9, 0.2, len(RECORDED))[:, None] * np.ones(n_layers) * (1.0 if noisy else np.nan)
            values[:, -1] -= width / 1000  # the last layer separates more the wider the model
            sep[run] = xr.Dataset({"separation_mean": (("epoch", "layer"), values)},
                                  coords={"epoch": RECORDED, "layer": np.arange(1, n_layers + 1)})
    return dd, sep


def draw(fig) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fig.savefig(buf, format="png", dpi=40)
    return buf.getvalue()


def test_panels_group_by_depth_with_widths_ascending_and_skip_models_outside_the_sweep():
    dd, _ = synthetic_runs(extra_models=("mlp7",))
    panels = sweep_plots.sweep_panels(dd, SWEEP)
    assert list(panels) == [(3, "sym20", "ce"), (5, "sym20", "ce")]
    assert all(list(by_width) == [8, 32, 128] for by_width in panels.values())
    assert all(ds.sizes["seed"] == 2 for by_width in panels.values() for ds in by_width.values())


def test_model_wise_values_read_the_final_the_own_minimum_and_one_fixed_epoch():
    dd, sep = synthetic_runs()
    panel = sweep_plots.sweep_panels(dd, SWEEP)[(3, "sym20", "ce")]
    views = sweep_plots.model_wise_values(panel)
    for w, ds in panel.items():
        np.testing.assert_allclose(views["final"].sel(width=w), ds["test_error_final"], atol=1e-12)
        np.testing.assert_allclose(views["own_min"].sel(width=w), ds["test_error_min"], atol=1e-12)
    e_fixed = sweep_plots.fixed_min_epoch(panel)
    assert 5 <= e_fixed <= 20  # the widest model's early dip
    np.testing.assert_allclose(views["fixed_min"].sel(width=128),
                               panel[128]["test_error_smooth"].sel(epoch=e_fixed, method="nearest"), atol=1e-12)
    final = views["final"].mean("seed").values
    assert final[1] > final[0] and final[1] > final[2]  # the synthetic model-wise peak at width 32
    # the internal metric at the nearest recorded epoch; the last layer separates more when wider
    sep_views = sweep_plots.model_wise_values(panel, sweep_plots.sweep_panels(sep, SWEEP)[(3, "sym20", "ce")],
                                              "separation_mean")
    last = sep_views["final"].mean("seed").values
    np.testing.assert_allclose(last, 0.2 - np.array([8, 32, 128]) / 1000, atol=1e-9)
    assert np.all(np.diff(last) < 0)
    assert sweep_plots.interpolation_width(panel) == 32


def test_width_edges_are_geometric_midpoints():
    edges = sweep_plots.width_edges([8, 32, 128])
    np.testing.assert_allclose(edges, [4, 16, 64, 256])
    np.testing.assert_allclose(sweep_plots.width_edges([64]), [64 / 2 ** 0.5, 64 * 2 ** 0.5])


def test_values_at_picks_the_nearest_epoch_and_keeps_nan():
    da = xr.DataArray(np.array([[0.0, 1.0, 2.0], [10.0, 11.0, np.nan]]), dims=("seed", "epoch"),
                      coords={"epoch": [0, 10, 100]})
    np.testing.assert_allclose(sweep_plots.values_at(da, [12, 90]), [1.0, 11.0])  # seed 1 lacks epoch 100
    assert np.isnan(sweep_plots.values_at(da, [np.nan, 0])[0])


def test_heatmaps_have_one_column_per_depth_and_a_row_per_quantity():
    dd, sep = synthetic_runs()
    fig = plots.FIGURE_FUNCTIONS["model_wise_heatmaps"](dd, sep, band="std", sweep=SWEEP)
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    for depth in (3, 5):
        for what in ("test error", "test loss", "last-layer separation"):
            assert f"depth {depth} ({depth - 1} hidden) · sym20: {what}" in titles
    meshes = [ax for ax in fig.axes if ax.collections and ax.get_title(loc="left")]
    assert len(meshes) == 6 and all(ax.get_yscale() == "log" for ax in meshes)
    assert len(fig.axes) == 6 + 3  # one colour bar per row
    peaks = [line for line in meshes[0].lines if line.get_marker() == "^"]
    assert [line.get_ydata()[0] for line in peaks] == [128]  # only the width with epoch-wise double descent
    assert len(draw(fig)) > 1000


def test_model_wise_curves_draw_three_epochs_per_quantity():
    dd, sep = synthetic_runs(seeds=(0,))
    fig = plots.FIGURE_FUNCTIONS["model_wise"](dd, sep, band="sem", sweep=SWEEP)
    top = fig.axes[0]
    assert top.get_xscale() == "log"
    lines = [line for line in top.lines if len(line.get_xdata()) == 3]
    assert len(lines) == 3
    final = next(line for line in lines if line.get_label() == "final epoch")
    expected = [dd[f"mlp3w{w}-sym20-ce-s0"]["test_error_final"] for w in (8, 32, 128)]
    np.testing.assert_allclose(final.get_ydata(), expected)
    assert len(draw(fig)) > 1000


def test_sweep_figures_without_noisy_probes_say_so():
    dd, sep = synthetic_runs(noisy=False)
    fig = plots.FIGURE_FUNCTIONS["model_wise_heatmaps"](dd, sep, sweep=SWEEP)
    assert any("no last-layer separation" in t.get_text() for ax in fig.axes for t in ax.texts)
    fig = plots.FIGURE_FUNCTIONS["model_wise"](dd, sep, sweep=SWEEP)
    assert any("no last-layer separation" in t.get_text() for ax in fig.axes for t in ax.texts)
    assert len(draw(fig)) > 1000


def test_sweep_figures_need_a_sweep_and_its_runs():
    dd, sep = synthetic_runs()
    for name in ("model_wise", "model_wise_heatmaps"):
        with pytest.raises(ValueError, match="no sweep"):
            plots.FIGURE_FUNCTIONS[name](dd, sep)
        with pytest.raises(ValueError, match="no runs"):
            plots.FIGURE_FUNCTIONS[name](dd, sep, sweep={"other3w8": {"depth": 3, "width": 8}})


# --- findings: the model-wise rows --------------------------------------------------------------------

GRID = {f"mlp3w{w}": {"depth": 3, "width": w} for w in (8, 16, 32, 64)}
PARAMS = {"majority": 0.5, "margin_se": 2.0, "separation_gap": 0.05, "clean_first_fraction": 0.5, "min_depth": 0.01,
          "min_recovery": 0.5, "noise_sigmas": 3.0}


def sweep_table(**columns) -> pd.DataFrame:
    """Two seeds per width of GRID (sym20, ce), then the given columns: a scalar, or one value per width."""
    rows = pd.DataFrame({"model": [m for m in GRID for _ in (0, 1)], "noise": "sym20", "loss": "ce",
                         "seed": [0, 1] * len(GRID)})
    for name, values in columns.items():
        rows[name] = np.repeat(values, 2) if np.ndim(values) else values
    return rows


def sweep_row(runs: pd.DataFrame, claim) -> tuple:
    """The row of `claim` (a function of SWEEP_CLAIMS) from findings_rows, called as the workflow does."""
    rows = findings_rows(runs, {m: 2 for m in GRID}, PARAMS, 10.0, sweep=GRID)
    name = next(c for c, _, fn in SWEEP_CLAIMS if fn is claim)
    return next(row for row in rows if row[0] == name)


def test_no_model_wise_rows_without_a_sweep():
    runs = sweep_table(test_error_final=0.4)
    names = {c for c, *_ in SWEEP_CLAIMS}
    assert not names & {row[0] for row in findings_rows(runs, {m: 2 for m in GRID}, PARAMS, 10.0)}
    assert names <= {row[0] for row in findings_rows(runs, {m: 2 for m in GRID}, PARAMS, 10.0, sweep=GRID)}


@pytest.mark.parametrize("final, noise, verdict", [
    ([0.40, 0.50, 0.45, 0.30], 0.002, SUPPORTED),       # rises to a peak at width 16, falls again at the widest
    ([0.50, 0.45, 0.40, 0.35], 0.002, NOT_SUPPORTED),   # falls monotonically
    ([0.30, 0.40, 0.45, 0.50], 0.002, NOT_SUPPORTED),   # rises and never falls
    ([0.40, 0.405, 0.40, 0.398], 0.002, NOT_SUPPORTED),  # a wiggle below min_depth
    ([0.40, 0.45, 0.43, 0.38], 0.02, NOT_SUPPORTED),   # a bump of 0.05 within 3 × √2 × a test error noise of 0.02
    ([0.40, np.nan, np.nan, np.nan], 0.002, INCONCLUSIVE),
])
def test_model_wise_double_descent(final, noise, verdict):
    runs = sweep_table(test_error_final=final, test_error_noise=noise)
    measured, criterion, got = sweep_row(runs, findings.claim_model_wise_dd)[2:]
    assert got == verdict, measured
    assert "depth 3 · sym20 · ce" in measured and "noise_sigmas" in criterion


def test_model_wise_double_descent_ignores_models_outside_the_sweep():
    runs = pd.concat([sweep_table(test_error_final=[0.40, 0.50, 0.45, 0.30], test_error_noise=0.002),
                      pd.DataFrame({"model": ["mlp7"], "noise": ["sym20"], "loss": ["ce"], "seed": [0],
                                    "test_error_final": [0.9], "test_error_noise": [0.002]})])
    measured, _, verdict = sweep_row(runs, findings.claim_model_wise_dd)[2:]
    assert verdict == SUPPORTED and "0.900" not in measured


@pytest.mark.parametrize("ratios, verdict", [
    ([0.1, 0.1, 0.8, 0.8], SUPPORTED),
    ([0.1, 0.1, 0.1, 0.1], NOT_SUPPORTED),
    ([0.8, 0.8, 0.8, 0.8], NOT_SUPPORTED),   # also the narrowest: not a matter of size
    ([np.nan] * 4, INCONCLUSIVE),
])
def test_epochwise_double_descent_in_the_widest(ratios, verdict):
    runs = sweep_table(test_error_recovery_ratio=ratios)
    measured, _, got = sweep_row(runs, findings.claim_epochwise_in_widest)[2:]
    assert got == verdict, measured


@pytest.mark.parametrize("returns, final, verdict", [
    ([0, 0, 0, 1], [0.50, 0.48, 0.45, 0.35], SUPPORTED),
    ([0, 0, 0, 0], [0.50, 0.48, 0.45, 0.44], NOT_SUPPORTED),
    ([np.nan] * 4, [np.nan] * 4, INCONCLUSIVE),
])
def test_returns_to_the_first_minimum_where(returns, final, verdict):
    runs = sweep_table(benign_overfitting=returns, regeneralises_after_fit=[0, 0, 1, 1], test_error_final=final,
                       test_error_min=0.35)
    measured, _, got = sweep_row(runs, findings.claim_returns_where)[2:]
    assert got == verdict, measured
    assert "re-generalises after the fit at widths [32, 64]" in measured
    if verdict == SUPPORTED:
        assert "back to the first minimum at widths [64]" in measured and "64: +0.000" in measured


def test_a_missing_column_is_not_measured():
    measured, _, verdict = sweep_row(sweep_table(test_error_final=0.4), findings.claim_returns_where)[2:]
    assert verdict == INCONCLUSIVE and measured.startswith("not measured")


# --- the workflow: figures scheduled only with a sweep; a new width schedules only its runs --------------

TINY = {
    "study": "sweep",
    "dataset": {"name": "mnist1d", "n_train": 300, "n_test": 100},
    "noise": {"rates": [0.2]},
    "probes": {"clean": 20, "noisy": 10, "test": 20},
    "sweep": {"depths": [3], "widths": [4, 8]},
    "train": {"seeds": [0], "epochs": 3, "batch_size": 64, "threads": 1},
    "record": {"epochs": {"first": 1, "log_count": 2}},
}


def dry_run(workdir, config: dict, *targets) -> dict[str, int]:
    path = workdir / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = run_snakemake(workdir, "-n", *targets, configfile=path, cores=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return scheduled_jobs(proc.stdout + proc.stderr)


def test_sweep_figures_are_scheduled_only_with_a_sweep(tmp_path):
    jobs = dry_run(tmp_path, TINY)
    assert jobs["plot_model_wise"] == jobs["plot_model_wise_heatmaps"] == 1 and jobs["train"] == 2
    named = {k: v for k, v in TINY.items() if k != "sweep"} | {"models": {"mlp3": {"hidden": [4, 4]}}}
    jobs = dry_run(tmp_path, named)
    assert "plot_model_wise" not in jobs and "plot_model_wise_heatmaps" not in jobs and jobs["train"] == 1


def test_adding_a_width_schedules_only_the_new_runs(tmp_path):
    curves = [f"results/sweep/runs/mlp3w{w}-sym20-ce-s0/curves.nc" for w in (4, 8)]
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(TINY))
    built = run_snakemake(tmp_path, *curves, configfile=path, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    assert dry_run(tmp_path, TINY, *curves) == {}
    wider = copy.deepcopy(TINY)
    wider["sweep"]["widths"] = [4, 8, 16]
    new = "results/sweep/runs/mlp3w16-sym20-ce-s0/curves.nc"
    assert dry_run(tmp_path, wider, *curves, new) == {"train_stack_mlp3w16_sym20_ce_s0": 1, "train": 1}
    jobs = dry_run(tmp_path, wider)  # the whole study: only the new run trains
    assert jobs["train"] == 1 and "prepare_dataset" not in jobs
