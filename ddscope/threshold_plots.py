"""Figures of the optimization-threshold study, from threshold_sweep.nc (ddscope.threshold.build_sweep).

`loss_figure`: final train and test loss vs n (mean and band over seeds, log-log) with the estimated threshold
n* marked, and the train / test loss curves over the steps of every n. `alignment_figure`: the distribution of
the neurons' alignment with the teacher directions at the end of the early phase for every n, the fraction
aligned vs n, and its evolution over training. Functions return a matplotlib Figure built without pyplot
(Agg canvas, no global state); `save_figure` writes it atomically.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from .artifacts import atomic_path

BANDS = ("std", "sem", "minmax")
BAND_LABEL = {"std": "mean ± std over seeds", "sem": "mean ± s.e.m. over seeds", "minmax": "mean, min–max over seeds"}
TRAIN_COLOR, TEST_COLOR, ALIGN_COLOR, FINAL_COLOR = "#d73027", "#2b6cb0", "#1a9850", "#7b3294"
THRESHOLD_COLOR = "#444444"
N_CMAP = "viridis"


def seed_band(values: np.ndarray, band: str = "std", axis: int = -1):
    """(mean, low, high) over `axis` (the seeds), NaN-aware; one seed gives low = high = mean."""
    if band not in BANDS:
        raise ValueError(f"band must be one of {', '.join(BANDS)}, not {band!r}")
    v = np.asarray(values, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(v, axis=axis)
        if band == "minmax":
            return mean, np.nanmin(v, axis=axis), np.nanmax(v, axis=axis)
        count = np.sum(np.isfinite(v), axis=axis)
        sd = np.where(count > 1, np.nanstd(v, axis=axis, ddof=1), 0.0)
        if band == "sem":
            sd = sd / np.sqrt(np.maximum(count, 1))
    return mean, mean - sd, mean + sd


def _band_line(ax, x, values, band, color, label, positive=False, marker="o", ls="-", bounds=None):
    mean, lo, hi = seed_band(values, band)
    if positive:  # log axis: keep the band's lower edge drawable
        lo = np.where(lo > 0, lo, mean * 0.5)
    if bounds is not None:  # a fraction: the band stays within [0, 1]
        lo, hi = np.clip(lo, *bounds), np.clip(hi, *bounds)
    ax.fill_between(x, lo, hi, color=color, alpha=0.2, linewidth=0)
    ax.plot(x, mean, color=color, marker=marker, ms=4, ls=ls, lw=1.6, label=label)


def _log_n_axis(ax, n) -> None:
    ax.set_xscale("log")
    ax.set_xlim(n.min() / 1.25, n.max() * 1.25)
    ax.xaxis.set_major_locator(LogLocator(base=2))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training samples n (log scale)")


def _step_axis(ax, steps) -> None:
    ax.set_xscale("symlog", linthresh=1.0, linscale=0.3)
    ax.set_xlim(0, float(steps.max()))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("gradient step (log scale; 0 = initialisation)")


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
    cmap = matplotlib.colormaps[N_CMAP]
    return norm, cmap, [cmap(norm(float(v))) for v in n]


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
    fig = Figure(figsize=(17, 6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_n, ax_train, ax_test = fig.subplots(1, 3)

    _mark_threshold(ax_n, ds)
    floor = tol * 1e-3  # interpolated runs reach 1e-15: draw them at the floor, so the rest stays readable
    _band_line(ax_n, n, np.maximum(ds.final_train_loss.values, floor), band, TRAIN_COLOR,
               f"final train loss (noisy labels; drawn at ≥ {floor:.0e})", positive=True)
    _band_line(ax_n, n, ds.final_test_loss.values, band, TEST_COLOR,
               "final test loss (vs noiseless teacher)", positive=True, marker="s")
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
    counts = ds.interpolates.sum("seed").values
    for x, k in zip(n, counts):
        ax_n.text(x, 0.02, f"{k}/{ds.sizes['seed']}", transform=ax_n.get_xaxis_transform(), ha="center",
                  va="bottom", fontsize=7, color=TRAIN_COLOR)
    ax_n.set_ylabel("mean squared error (log scale)")
    ax_n.set_title("(a) final losses vs n (bottom: seeds that interpolate)")
    ax_n.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)

    norm, cmap, colors = _n_colors(n)
    for ax, var, title in ((ax_train, ds.train_loss, "(b) train loss during training, one line per n"),
                           (ax_test, ds.test_loss, "(c) test loss during training, one line per n")):
        for i, color in enumerate(colors):
            mean, _, _ = seed_band(np.maximum(var.values[i], floor), band, axis=0)
            ax.plot(steps, mean, color=color, lw=1.3)
        ax.set_yscale("log")
        _step_axis(ax, steps)
        ax.set_ylabel("mean squared error (log scale, mean over seeds)")
        ax.set_title(title)
    ax_train.axhline(noise_var, color=TRAIN_COLOR, ls=":", lw=1.2, label=f"σ² = {noise_var:g}")
    ax_train.axhline(tol, color="#999999", ls="-.", lw=1.0, label=f"interpolation tolerance {tol:g}")
    ax_train.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=[ax_train, ax_test], label="training samples n", pad=0.01)
    fig.suptitle("Optimization threshold: the student interpolates the noisy labels below n*, "
                 "not from n* on\n" + _setting(ds, band), fontsize=10)
    return fig


def alignment_figure(ds: xr.Dataset, band: str = "std") -> Figure:
    """Early-phase alignment: cosine distributions per n (a), aligned fraction vs n (b) and over steps (c)."""
    n = ds.n.values.astype(float)
    steps = ds.step.values.astype(float)
    thr = float(ds.attrs["align_threshold"])
    fig = Figure(figsize=(17, 6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_v, ax_f, ax_c = fig.subplots(1, 3)

    pos = np.log2(n)
    data = [c[np.isfinite(c)] for c in ds.early_cosine.values.reshape(len(n), -1)]
    keep = [i for i, c in enumerate(data) if c.size]
    if keep:
        width = 0.8 * (np.min(np.diff(pos)) if len(pos) > 1 else 1.0)
        parts = ax_v.violinplot([data[i] for i in keep], positions=pos[keep], widths=width,
                                showmedians=True, showextrema=False)
        for body in parts["bodies"]:
            body.set_facecolor(ALIGN_COLOR)
            body.set_alpha(0.45)
        parts["cmedians"].set_color("#222222")
    ax_v.axhline(thr, color=ALIGN_COLOR, ls="--", lw=1.2, label=f"aligned: cosine ≥ {thr:g}")
    ax_v.set_xticks(pos, [f"{v:g}" for v in n], rotation=45, fontsize=8)
    ax_v.set_xlabel("training samples n (log scale)")
    ax_v.set_ylabel("largest cosine of a neuron with a teacher direction")
    lowest = min([float(c.min()) for c in data if c.size] + [0.0])
    ax_v.set_ylim(lowest - 0.02, 1.02)  # linear teacher: the best of ±β, so never below 0
    ax_v.set_title("(a) neuron alignment at the end of the early phase\n(all neurons of all seeds; bar: median)")
    ax_v.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.13))

    _mark_threshold(ax_f, ds)
    _band_line(ax_f, n, ds.aligned_fraction.values, band, ALIGN_COLOR, "end of the early phase", bounds=(0, 1))
    final = (np.nan_to_num(ds.final_cosine.values, nan=-np.inf) >= thr).mean(axis=-1)
    _band_line(ax_f, n, final, band, FINAL_COLOR, "end of training", marker="s", ls="--", bounds=(0, 1))
    _log_n_axis(ax_f, n)
    ax_f.set_ylim(-0.02, 1.02)
    ax_f.set_ylabel(f"fraction of neurons with cosine ≥ {thr:g}")
    ax_f.set_title("(b) fraction of aligned neurons vs n")
    ax_f.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)

    norm, cmap, colors = _n_colors(n)
    early = ds.early_step.values.astype(float)
    for i, color in enumerate(colors):
        mean, _, _ = seed_band(ds.aligned_fraction_curve.values[i], band, axis=0)
        ax_c.plot(steps, mean, color=color, lw=1.3)
    valid = early[early >= 0]
    if valid.size:
        ax_c.axvspan(0, float(np.median(valid)), color="#dddddd", alpha=0.5, lw=0,
                     label=f"early phase (median end: step {np.median(valid):g})")
        ax_c.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.13))
    _step_axis(ax_c, steps)
    ax_c.set_ylim(-0.02, 1.02)
    ax_c.set_ylabel(f"fraction of neurons with cosine ≥ {thr:g} (mean over seeds)")
    ax_c.set_title("(c) aligned fraction during training, one line per n")
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax_c, label="training samples n", pad=0.01)
    fig.suptitle("Early alignment: with small initialisation the neurons turn towards the teacher directions "
                 "before they grow\n" + _setting(ds, band), fontsize=10)
    return fig


PLOTS = {"loss": loss_figure, "alignment": alignment_figure}


def save_figure(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    """Write the figure (format from the path's suffix) atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    return path
