"""Figures of the optimization-threshold study, from threshold_sweep.nc (ddscope.threshold.build_sweep).

`loss_figure`: final train and test loss vs n (mean and band over seeds, log-log) with the estimated threshold
n* marked, and the train / test loss curves over the steps of every n. `alignment_figure`: the distribution of
the neurons' alignment with the teacher directions at the end of the early phase for every n, the fraction
aligned vs n, and its evolution over training. Bands, colours and saving are those of every figure (style).
"""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import xarray as xr
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from .style import (ALIGN_COLOR, BAND_LABEL, DARK, FINAL_COLOR, SEQUENTIAL_CMAP, TEST_COLOR, THRESHOLD_COLOR,
                    TRAIN_COLOR, line_band, new_figure, seed_mean, suptitle, symlog_axis, title)

STEP_LABEL = "gradient step (log scale; 0 = initialisation)"
BELOW_LEGEND = {"fontsize": 7.5, "loc": "upper center", "bbox_to_anchor": (0.5, -0.13)}


def _log_n_axis(ax, n) -> None:
    ax.set_xscale("log")
    ax.set_xlim(n.min() / 1.25, n.max() * 1.25)
    ax.xaxis.set_major_locator(LogLocator(base=2))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training samples n (log scale)")


def _step_axis(ax, steps) -> None:
    symlog_axis(ax, "x", [0.0, float(steps.max())], STEP_LABEL, linscale=0.3)


def _mark_threshold(ax, ds: xr.Dataset, label: bool = True) -> None:
    n_star = float(ds.n_threshold)
    n = ds.n.values
    if math.isinf(n_star):
        ax.axvspan(n.min() / 1.25, n.max() * 1.25, color="#fdd49e", alpha=0.25, lw=0,
                   label="interpolating at every n (n* beyond the grid)" if label else None)
        return
    if n_star > n.min():
        ax.axvspan(n.min() / 1.25, n_star, color="#fdd49e", alpha=0.35, lw=0,
                   label="interpolating regime (n < n*)" if label else None)
    ax.axvline(n_star, color=THRESHOLD_COLOR, ls="--", lw=1.4,
               label=f"estimated optimization threshold n* = {n_star:g}" if label else None)


def _n_colors(n):
    norm = LogNorm(vmin=float(n.min()), vmax=float(n.max()))
    cmap = matplotlib.colormaps[SEQUENTIAL_CMAP]
    return norm, cmap, [cmap(norm(float(v))) for v in n]


def _per_n_curves(ax, da: xr.DataArray, steps, colors) -> None:
    """One line per n: the mean over seeds of `da` (n, seed, step) over the steps."""
    mean = seed_mean(da).transpose("n", "step").values
    for row, color in zip(mean, colors):
        ax.plot(steps, row, color=color, lw=1.3)


def _setting(ds: xr.Dataset, band: str) -> str:
    a = ds.attrs
    optimizer = "GD" if a.get("train_optimizer", "gd") == "gd" else "Adam"
    return (f"{a.get('teacher', '?')} teacher in d = {a.get('d', '?')}, label-noise variance σ² = {a['noise_var']:g}; "
            f"student width {a.get('train_width', '?')}, init scale {a.get('train_init_scale', float('nan')):g}, "
            f"full-batch {optimizer} lr {a.get('train_lr', float('nan')):g} for {a.get('train_steps', '?')} steps; "
            f"{ds.sizes['seed']} seeds, {BAND_LABEL[band]}")


def loss_figure(ds: xr.Dataset, band: str = "std") -> Figure:
    """Final losses vs n with n* marked (a), train (b) and test (c) loss over training for every n."""
    n = ds.n.values.astype(float)
    steps = ds.step.values.astype(float)
    noise_var = float(ds.attrs["noise_var"])
    tol = float(ds.attrs["interpolation_tol"]) * noise_var
    fig = new_figure(17, 6)
    ax_n, ax_train, ax_test = fig.subplots(1, 3)

    _mark_threshold(ax_n, ds)
    floor = tol * 1e-3  # interpolated runs reach 1e-15: draw them at the floor, so the rest stays readable
    line_band(ax_n, n, ds.final_train_loss.clip(min=floor), band, TRAIN_COLOR,
              f"final train loss (noisy labels; drawn at ≥ {floor:.0e})", positive=True, marker="o", ms=4)
    line_band(ax_n, n, ds.final_test_loss, band, TEST_COLOR, "final test loss (vs noiseless teacher)",
              positive=True, marker="s", ms=4)
    ax_n.axhline(noise_var, color=TRAIN_COLOR, ls=":", lw=1.2, label=f"σ² = {noise_var:g} (noise level)")
    ax_n.axhline(tol, color="#999999", ls="-.", lw=1.0, label=f"interpolation tolerance {tol:g}")
    d = int(ds.attrs.get("d", 0))
    if ds.attrs.get("teacher") == "linear" and d:
        ok = n > d + 1
        ax_n.plot(n[ok], noise_var * d / (n[ok] - d - 1), color=TEST_COLOR, ls=":", lw=1.2,
                  label="least squares' expected test loss σ²d/(n−d−1)")
    ax_n.set_yscale("log")
    ax_n.set_ylim(bottom=floor / 30)  # room for the counts below the floor
    _log_n_axis(ax_n, n)
    for x, k in zip(n, ds.interpolates.sum("seed").values):
        ax_n.text(x, 0.02, f"{k}/{ds.sizes['seed']}", transform=ax_n.get_xaxis_transform(), ha="center",
                  va="bottom", fontsize=7, color=TRAIN_COLOR)
    ax_n.set_ylabel("mean squared error (log scale)")
    title(ax_n, "(a) final losses vs n (bottom: seeds that interpolate)")
    ax_n.legend(ncol=2, **BELOW_LEGEND)

    norm, cmap, colors = _n_colors(n)
    for ax, var, text in ((ax_train, ds.train_loss, "(b) train loss during training, one line per n"),
                          (ax_test, ds.test_loss, "(c) test loss during training, one line per n")):
        _per_n_curves(ax, var.clip(min=floor), steps, colors)
        ax.set_yscale("log")
        _step_axis(ax, steps)
        ax.set_ylabel("mean squared error (log scale, mean over seeds)")
        title(ax, text)
    ax_train.axhline(noise_var, color=TRAIN_COLOR, ls=":", lw=1.2, label=f"σ² = {noise_var:g}")
    ax_train.axhline(tol, color="#999999", ls="-.", lw=1.0, label=f"interpolation tolerance {tol:g}")
    ax_train.legend(ncol=2, **BELOW_LEGEND)
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=[ax_train, ax_test],
                 label="training samples n", pad=0.01)
    suptitle(fig, "Optimization threshold: the student interpolates the noisy labels below n*, not from n* on\n"
                  + _setting(ds, band), fontsize=10)
    return fig


def alignment_figure(ds: xr.Dataset, band: str = "std") -> Figure:
    """Early-phase alignment: cosine distributions per n (a), aligned fraction vs n (b) and over steps (c)."""
    n = ds.n.values.astype(float)
    steps = ds.step.values.astype(float)
    thr = float(ds.attrs["align_threshold"])
    fig = new_figure(17, 6)
    ax_v, ax_f, ax_c = fig.subplots(1, 3)

    pos = np.log2(n)
    data = [c[np.isfinite(c)] for c in ds.early_cosine.transpose("n", ...).values.reshape(len(n), -1)]
    keep = [i for i, c in enumerate(data) if c.size]
    if keep:
        width = 0.8 * (np.min(np.diff(pos)) if len(pos) > 1 else 1.0)
        parts = ax_v.violinplot([data[i] for i in keep], positions=pos[keep], widths=width,
                                showmedians=True, showextrema=False)
        for body in parts["bodies"]:
            body.set_facecolor(ALIGN_COLOR)
            body.set_alpha(0.45)
        parts["cmedians"].set_color(DARK)
    ax_v.axhline(thr, color=ALIGN_COLOR, ls="--", lw=1.2, label=f"aligned: cosine ≥ {thr:g}")
    ax_v.set_xticks(pos, [f"{v:g}" for v in n], rotation=45, fontsize=8)
    ax_v.set_xlabel("training samples n (log scale)")
    ax_v.set_ylabel("largest cosine of a neuron with a teacher direction")
    lowest = min([float(c.min()) for c in data if c.size] + [0.0])
    ax_v.set_ylim(lowest - 0.02, 1.02)  # linear teacher: the best of ±β, so never below 0
    title(ax_v, "(a) neuron alignment at the end of the early phase\n(all neurons of all seeds; bar: median)")
    ax_v.legend(**BELOW_LEGEND)

    _mark_threshold(ax_f, ds)
    line_band(ax_f, n, ds.aligned_fraction, band, ALIGN_COLOR, "end of the early phase", bounds=(0, 1),
              marker="o", ms=4)
    final = (ds.final_cosine.fillna(-np.inf) >= thr).mean("neuron")
    line_band(ax_f, n, final, band, FINAL_COLOR, "end of training", ls="--", bounds=(0, 1), marker="s", ms=4)
    _log_n_axis(ax_f, n)
    ax_f.set_ylim(-0.02, 1.02)
    ax_f.set_ylabel(f"fraction of neurons with cosine ≥ {thr:g}")
    title(ax_f, "(b) fraction of aligned neurons vs n")
    ax_f.legend(ncol=2, **BELOW_LEGEND)

    norm, cmap, colors = _n_colors(n)
    _per_n_curves(ax_c, ds.aligned_fraction_curve, steps, colors)
    early = ds.early_step.values.astype(float)
    valid = early[early >= 0]
    if valid.size:
        ax_c.axvspan(0, float(np.median(valid)), color="#dddddd", alpha=0.5, lw=0,
                     label=f"early phase (median end: step {np.median(valid):g})")
        ax_c.legend(**BELOW_LEGEND)
    _step_axis(ax_c, steps)
    ax_c.set_ylim(-0.02, 1.02)
    ax_c.set_ylabel(f"fraction of neurons with cosine ≥ {thr:g} (mean over seeds)")
    title(ax_c, "(c) aligned fraction during training, one line per n")
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax_c, label="training samples n", pad=0.01)
    suptitle(fig, "Early alignment: with small initialisation the neurons turn towards the teacher directions "
                  "before they grow\n" + _setting(ds, band), fontsize=10)
    return fig


PLOTS = {"loss": loss_figure, "alignment": alignment_figure}
