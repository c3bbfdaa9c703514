"""Figures of the epoch-wise double-descent analyses: panels, degenerate bands, NaN metrics, written PNGs.

Inputs are real-format metric datasets: synthetic activations / curves (tests/synthetic.py) run through the
extract_* functions, so the figures see exactly what the workflow writes.
"""

import inspect
import io
import runpy
import types
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from synthetic import make_activations, make_curves, make_x_probe

from ddscope import plots
from ddscope.config import condition_of, parse_condition, parse_run
from ddscope.plots import runs, style
from ddscope.analyses.compute import write_metric
from ddscope.artifacts import write_netcdf
from ddscope.analyses.cka import extract_cka
from ddscope.analyses.collapse import extract_collapse
from ddscope.analyses.double_descent import extract_double_descent
from ddscope.analyses.large_activation import extract_large_activation
from ddscope.analyses.probes import extract_probes
from ddscope.analyses.routing import extract_routing
from ddscope.analyses.registry import FIGURES
from ddscope.analyses.separation import extract_separation

EPOCHS = np.array([0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 150])  # recorded epochs (activations)
DEPTHS = {"mlp3": (16, 12), "mlp5": (16, 12, 12, 8)}
LA_PARAMS = {"ratio_threshold": 10.0, "n_epochs": 4, "ridge_alpha": 1.0, "cv_folds": 3, "median_floor": 1e-3}
PROBE_PARAMS = {"n_epochs": 5, "steps": 20}
# the figures of every study (a sweep's figures need its models' depth and width: tests/test_sweep.py)
PER_RUN_FIGURES = [name for name in plots.FIGURE_FUNCTIONS if not FIGURES[name].get("sweep")]


@lru_cache(maxsize=None)
def _run(model: str, seed: int, noisy: int = 12, dd: bool = True):
    """All per-run inputs of the figures for one synthetic run (cached: datasets are not modified)."""
    knots = ((0, 0.9), (20, 0.3), (80, 0.45), (150, 0.30)) if dd else ((0, 0.9), (150, 0.3))
    curves = make_curves(epochs=np.arange(151), test_error=knots, noise=0.01, seed=seed)  # evaluated every epoch
    acts = make_activations(epochs=EPOCHS, n_per_subset=(24, noisy, 24), widths=DEPTHS[model], seed=seed)
    return {
        "curves": curves,
        "double_descent": extract_double_descent(curves, {"smooth_window": 5}),
        "separation": extract_separation(acts),
        "large_activation": extract_large_activation(acts, make_x_probe(acts, 6), LA_PARAMS),
        "routing": extract_routing(acts),
        "cka": extract_cka(acts),
        "probes": extract_probes(acts, PROBE_PARAMS),
        "collapse": extract_collapse(acts),
    }


def _inputs(seeds=(0, 1), models=("mlp3", "mlp5"), loss="ce", **kw):
    """name -> {run id: dataset} over the given models and seeds."""
    out = {}
    for model in models:
        for seed in seeds:
            run = f"{model}-sym30-{loss}-s{seed}"
            for name, ds in _run(model, seed, **kw).items():
                out.setdefault(name, {})[run] = ds
    return out


def _draw(fig):
    """Render to PNG bytes, turning matplotlib's layout warnings (collapsed axes, ...) into failures."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fig.savefig(buf, format="png", dpi=50)
    return buf.getvalue()


def _figure(name, inputs, band="std"):
    if name == "curves":
        return plots.plot_curves(inputs["curves"], inputs["double_descent"], band=band)
    if name == "double_descent":
        return plots.plot_double_descent(inputs["double_descent"], band=band)
    if name == "separation":
        return plots.plot_separation(inputs["separation"], band=band)
    if name == "large_activation":
        return plots.plot_large_activation(inputs["large_activation"], inputs["double_descent"], band=band)
    if name == "routing":
        return plots.plot_routing(inputs["routing"], band=band)
    return getattr(plots, f"plot_{name}")(inputs[name], band=band)


def _titles(fig):
    return [ax.get_title(loc="left") for ax in fig.axes]


# --- each figure: its panels ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, n_axes",
    [
        ("curves", 4),  # loss + accuracy per model
        ("double_descent", 2),  # test error + test loss, models overlaid
        ("separation", 5),  # lines + heatmap per model, one shared colour bar
        ("large_activation", 6),  # ratio (+ twin test-error axis) and scatter per model
        ("routing", 4),  # last layer + margins per model
        ("cka", 9),  # per model: CKA to the final epoch + one heatmap per layer (2 + 4), one shared colour bar
        ("probes", 7),  # per model: accuracy + agreement of the first and last layer, one shared colour bar
        ("collapse", 7),  # nc1, nc1_clean, dilation; nc2 (2), nc3, nc4; models overlaid
    ],
)
def test_figure_has_expected_panels(name, n_axes):
    fig = _figure(name, _inputs())
    assert len(fig.axes) == n_axes
    assert fig.get_suptitle()
    assert fig.legends or all(ax.get_legend() for ax in fig.axes if ax.lines)
    if name not in ("double_descent", "collapse"):  # per model panels, titled with the model
        titles = _titles(fig)
        assert any(t.startswith("mlp3") for t in titles) and any(t.startswith("mlp5") for t in titles)
    assert len(_draw(fig)) > 1000


def test_curves_draw_five_splits_and_three_phases():
    fig = _figure("curves", _inputs())
    ax_loss, ax_acc = fig.axes[:2]
    assert len(ax_acc.lines) == 5
    assert ax_loss.get_yscale() == "log" and ax_acc.get_xscale() == "symlog"
    assert len(ax_acc.patches) == 3  # phase 1..3 shaded (the synthetic test error dips, peaks, recovers)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert sum(t.startswith("phase") for t in labels) == 3


def test_double_descent_marks_minimum_and_peak():
    fig = _figure("double_descent", _inputs())
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert sum(t.startswith("min @") for t in texts) == 2
    assert sum(t.startswith("peak @") for t in texts) == 2
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("mlp5 (double descent: test loss 2/2, test error 2/2 seeds)" in t for t in labels)


def test_separation_heatmap_has_one_row_per_layer():
    fig = _figure("separation", _inputs())
    heatmaps = [ax for ax in fig.axes if ax.collections and ax.get_ylabel().startswith("hidden layer")]
    assert [len(ax.get_yticks()) for ax in heatmaps] == [2, 4]


def test_cka_heatmaps_span_the_recorded_epochs_and_end_at_one():
    fig = _figure("cka", _inputs(models=("mlp5",)))
    ax_line, *maps = fig.axes[:5]
    assert ax_line.get_xscale() == "symlog" and len(ax_line.lines) == 4  # one line per layer
    for line in ax_line.lines:
        assert line.get_xdata()[-1] == EPOCHS[-1] and np.isclose(line.get_ydata()[-1], 1.0)
    for ax in maps:
        assert ax.get_xscale() == ax.get_yscale() == "symlog"
        assert ax.get_xlim() == ax.get_ylim() == (EPOCHS[0], EPOCHS[-1])
        assert ax.collections[0].get_clim() == (0.0, 1.0)


def test_probes_draw_three_targets_per_layer():
    fig = _figure("probes", _inputs(models=("mlp3",)))
    ax_acc = fig.axes[0]
    assert [line.get_linestyle() for line in ax_acc.lines] == ["-", "--", ":"] * 2
    assert [ax.get_title(loc="left") for ax in fig.axes[1:3]] == ["mlp3: agreement, layer 1 (first)",
                                                                  "mlp3: agreement, layer 2 (last)"]


def test_both_losses_one_row_per_model_and_loss():
    ce, ls = _inputs(loss="ce"), _inputs(loss="ls")
    both = {name: {**ce[name], **ls[name]} for name in ("cka", "probes", "collapse")}
    fig = plots.plot_cka(both["cka"])
    titles = [t for t in _titles(fig) if t.endswith("CKA to final epoch")]
    assert titles == [f"{c}: CKA to final epoch" for c in ("mlp3 · ce", "mlp5 · ce", "mlp3 · ls", "mlp5 · ls")]
    assert len(fig.axes) == 4 + 2 * 2 + 2 * 4 + 1
    fig = plots.plot_probes(both["probes"])
    assert len(fig.axes) == 4 * 3 + 1
    fig = plots.plot_collapse(both["collapse"])
    styles = {line.get_label(): (line.get_color(), line.get_linestyle()) for line in fig.axes[0].lines}
    assert styles["mlp3 · ce"][0] == styles["mlp3 · ls"][0] != styles["mlp5 · ce"][0]
    assert styles["mlp3 · ce"][1] == styles["mlp5 · ce"][1] != styles["mlp3 · ls"][1]
    assert fig.axes[0].get_yscale() == "log" and fig.axes[2].get_yscale() == "linear"
    assert len(_draw(fig)) > 1000


# --- degenerate inputs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, band", [(name, "std") for name in PER_RUN_FIGURES]
                         + [("double_descent", "sem"), ("routing", "minmax")])
def test_one_seed_gives_a_degenerate_band(name, band):
    fig = _figure(name, _inputs(seeds=(0,)), band=band)
    assert len(_draw(fig)) > 1000


@pytest.mark.parametrize("name", PER_RUN_FIGURES)
def test_nan_metrics_are_drawn_without_error(name):
    """No noisy probes: separation all NaN, routing's noisy reference NaN; a run without double descent whose
    noise is fitted before its test error stops falling (phase2_end NaN); the large-activation threshold never
    reached (onset_epoch NaN)."""
    inputs = _inputs(noisy=0, dd=False)
    la = inputs["large_activation"]
    assert all(np.isnan(ds["onset_epoch"].values).all() for ds in la.values())
    assert all(np.isnan(ds["phase2_end"].values) for ds in inputs["double_descent"].values())  # noise fitted early
    assert all(np.isnan(ds["separation_mean"].values).all() for ds in inputs["separation"].values())
    fig = _figure(name, inputs)
    assert len(_draw(fig)) > 1000


def test_collapse_without_noisy_probes_says_memorization_is_undefined():
    inputs = _inputs(noisy=0, models=("mlp3",))
    assert all(np.isnan(ds["memorization_normalized"].values).all() for ds in inputs["collapse"].values())
    fig = _figure("collapse", inputs)
    ax_mem = fig.axes[2]
    assert not [line for line in ax_mem.lines if len(line.get_xdata()) > 2]
    assert any("memorization undefined" in t.get_text() for t in ax_mem.texts)
    assert np.isfinite(fig.axes[0].lines[0].get_ydata()).any()  # nc1 is still drawn
    fig = _figure("probes", inputs)  # no noisy probes: noisy targets NaN, test accuracy drawn
    assert np.isfinite(fig.axes[0].lines[0].get_ydata()).all()


def test_no_double_descent_leaves_phases_unshaded_and_says_so():
    fig = _figure("curves", _inputs(dd=False))
    assert not fig.axes[1].patches
    assert any("phases undefined" in t.get_text() for t in fig.axes[1].texts)


def test_large_activation_without_double_descent_input_has_no_twin_axis():
    inputs = _inputs(models=("mlp5",))
    la = inputs["large_activation"]
    onset = {run: ds.assign(onset_epoch=xr.full_like(ds["onset_epoch"], 5.0)) for run, ds in la.items()}
    fig = plots.plot_large_activation(onset, None)
    assert len(fig.axes) == 2
    ratio_ax = fig.axes[0]
    markers = [line for line in ratio_ax.lines if line.get_marker() == "v"]
    assert len(markers) == 4  # one per layer, a point per seed
    assert len(_draw(fig)) > 1000


def test_many_conditions_wrap_and_keep_one_colour_per_model():
    ce = _inputs(models=("mlp3", "mlp5"), loss="ce")
    ls = _inputs(models=("mlp3", "mlp5"), loss="ls")
    dd = {**ce["double_descent"], **ls["double_descent"]}
    fig = plots.plot_double_descent(dd)
    lines = {line.get_label(): line for line in fig.axes[0].lines if not line.get_label().startswith("_")}
    assert set(lines) >= {"mlp3 · ce", "mlp3 · ls", "mlp5 · ce", "mlp5 · ls"} or len(lines) == 4
    by_model = {}
    for label, line in lines.items():
        by_model.setdefault(label.split(" ")[0], set()).add(line.get_color())
    assert all(len(c) == 1 for c in by_model.values()) and len(by_model) == 2
    fig = plots.plot_routing({**ce["routing"], **ls["routing"]}, max_cols=3)
    assert len(fig.axes) == 8
    assert len(_draw(fig)) > 1000


# --- helpers --------------------------------------------------------------------------------------------


def test_seed_band():
    da = xr.DataArray([[1.0, 2.0], [3.0, np.nan], [5.0, 4.0]], dims=("seed", "epoch"))
    mean, lo, hi = plots.seed_band(da, "std")
    np.testing.assert_allclose(mean, [3.0, 3.0])
    np.testing.assert_allclose(hi - mean, [2.0, np.sqrt(2.0)])
    mean, lo, hi = plots.seed_band(da, "sem")
    np.testing.assert_allclose(hi - mean, [2.0 / np.sqrt(3), 1.0])
    _, lo, hi = plots.seed_band(da, "minmax")
    np.testing.assert_allclose(lo, [1.0, 2.0])
    np.testing.assert_allclose(hi, [5.0, 4.0])
    one = da.isel(seed=[0])
    for band in style.BANDS:
        mean, lo, hi = plots.seed_band(one, band)
        np.testing.assert_allclose(lo, mean)
        np.testing.assert_allclose(hi, mean)
    with pytest.raises(ValueError, match="band must be one of"):
        plots.seed_band(da, "iqr")
    for band in style.BANDS:  # the xarray wrapper and the numpy statistic are one formula
        for got, want in zip(plots.seed_band(da.T, band), style.band_stats(da.values, band, axis=0)):
            np.testing.assert_array_equal(got, want)
    mean, lo, hi = plots.seed_band(da.isel(seed=0))  # no seed dim: one seed
    np.testing.assert_array_equal(mean, [1.0, 2.0])
    np.testing.assert_array_equal(lo, hi)


def test_group_seeds_joins_epochs_outer():
    a = xr.Dataset({"v": ("epoch", [1.0, 2.0, 3.0])}, coords={"epoch": [0, 1, 2]})
    b = xr.Dataset({"v": ("epoch", [4.0, 5.0])}, coords={"epoch": [0, 2]})
    groups = plots.group_seeds({"mlp3-sym30-ce-s0": a, "mlp3-sym30-ce-s7": b, "mlp5-sym30-ce-s0": a})
    assert list(groups) == ["mlp3-sym30-ce", "mlp5-sym30-ce"]
    g = groups["mlp3-sym30-ce"]
    assert list(g["seed"].values) == [0, 7] and list(g["epoch"].values) == [0, 1, 2]
    assert np.isnan(g["v"].sel(seed=7, epoch=1))


def test_labels_and_colours():
    conds = ["mlp3-sym30-ce", "mlp3-sym30-ls", "mlp7-sym30-ce"]
    assert runs.condition_labels(conds) == {"mlp3-sym30-ce": "mlp3 · ce", "mlp3-sym30-ls": "mlp3 · ls",
                                            "mlp7-sym30-ce": "mlp7 · ce"}
    assert runs.condition_labels(["mlp3-sym30-ce", "mlp5-sym30-ce"]) == {"mlp3-sym30-ce": "mlp3",
                                                                        "mlp5-sym30-ce": "mlp5"}
    styles = runs.variant_styles(conds)
    assert styles["mlp3-sym30-ce"] == styles["mlp7-sym30-ce"] != styles["mlp3-sym30-ls"]
    assert style.model_colors(["mlp3", "mlp7"]) == {"mlp3": "C0", "mlp7": "C1"}
    assert runs.condition_colors(conds) == {"mlp3-sym30-ce": "C0", "mlp3-sym30-ls": "C0", "mlp7-sym30-ce": "C1"}
    assert len(set(map(tuple, style.layer_colors(6)))) == 6
    assert runs.subtitle(conds, "sem") == "noise: sym30, mean ± s.e.m. over seeds"


def test_condition_of_and_parse_condition_round_trip():
    for run in ("mlp7-sym30-ce-s0", "mlp3-pair10-ls-s12", "cnn5-sym0-ce-s3"):
        cond = condition_of(run)
        parts = parse_condition(cond)
        assert parts == {k: v for k, v in parse_run(run).items() if k != "seed"}
        assert condition_of(f"{cond}-s{parse_run(run)['seed']}") == cond
        assert "-".join(parts[k] for k in ("model", "noise", "loss")) == cond
    assert condition_of("mlp7-sym30-ce-s0") == "mlp7-sym30-ce"
    with pytest.raises(ValueError):
        parse_condition("mlp7-sym30-ce-s0")  # a run, not a condition


def test_every_registered_figure_has_a_function_taking_its_inputs():
    """The rule plot_<figure> passes params.inputs (registry) in order to FIGURE_FUNCTIONS[figure]."""
    from ddscope.analyses.registry import FIGURES

    assert set(plots.FIGURE_FUNCTIONS) == set(FIGURES)
    for figure, spec in FIGURES.items():
        params = list(inspect.signature(plots.FIGURE_FUNCTIONS[figure]).parameters)
        assert params[:len(spec["inputs"])] == spec["inputs"] and "band" in params, figure


def test_empty_input_is_an_error():
    with pytest.raises(ValueError, match="no runs"):
        plots.plot_double_descent({})


# --- the rule's script ----------------------------------------------------------------------------------


def _write_inputs(root, inputs, names):
    paths = {}
    for name in names:
        for run, ds in inputs[name].items():
            if name == "curves":
                path = root / "runs" / run / "curves.nc"
                path.parent.mkdir(parents=True, exist_ok=True)
                write_netcdf(ds.assign_attrs(run=run, train_config_sha256=f"sha-{run}"), path)
            else:
                path = root / "metrics" / run / f"{name}.nc"
                write_metric(ds.assign_attrs(run=run, train_config_sha256=f"sha-{run}"), path)
            paths.setdefault(name, []).append(str(path))
    return paths


def _run_script(figure, paths, out, tmp_path):
    smk = types.SimpleNamespace(input=types.SimpleNamespace(**paths), output=types.SimpleNamespace(figure=str(out)),
                                log=[str(tmp_path / "plot.log")],
                                params=types.SimpleNamespace(figure=figure, inputs=list(paths),
                                                             style={"dpi": 40, "band": "sem"}))
    script = Path(__file__).resolve().parents[1] / "scripts" / "plot_figure.py"
    runpy.run_path(str(script), init_globals={"snakemake": smk})


@pytest.mark.parametrize("figure, names", [("curves", ["curves", "double_descent"]),
                                           ("large_activation", ["large_activation", "double_descent"]),
                                           ("routing", ["routing"]), ("cka", ["cka"]),
                                           ("probes", ["probes"]), ("collapse", ["collapse"])])
def test_script_writes_a_png(tmp_path, figure, names):
    paths = _write_inputs(tmp_path, _inputs(models=("mlp3",)), names)
    out = tmp_path / "figures" / f"{figure}.png"
    _run_script(figure, paths, out, tmp_path)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert not list(out.parent.glob(".*tmp*"))


def test_script_refuses_metrics_of_another_training_run(tmp_path):
    inputs = _inputs(models=("mlp3",), seeds=(0,))
    paths = _write_inputs(tmp_path, inputs, ["curves", "double_descent"])
    stale = inputs["double_descent"]["mlp3-sym30-ce-s0"].assign_attrs(run="mlp3-sym30-ce-s0", train_config_sha256="old")
    write_metric(stale, paths["double_descent"][0])
    with pytest.raises(SystemExit):
        _run_script("curves", paths, tmp_path / "curves.png", tmp_path)
    assert "another version" in (tmp_path / "plot.log").read_text()
