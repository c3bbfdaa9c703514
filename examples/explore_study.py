# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exploring a finished study
#
# Opens a study as one `xarray.DataTree` (`ddscope.open_study`) and plots from it: learning curves, a heatmap
# over epoch × model, one run's recorded activations and its CKA matrices. As a script:
# `python examples/explore_study.py [results/default] [--out DIR]` saves the figures as PNG files; in Jupyter
# (with jupytext) it shows them inline.

# %%
import argparse
import sys
import tempfile
from pathlib import Path

import matplotlib

IN_NOTEBOOK = "ipykernel" in sys.modules  # under Jupyter, sys.argv holds the kernel's arguments, not ours
if not IN_NOTEBOOK:
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import ddscope
from ddscope.plots.representations import epoch_heatmap
from ddscope.plots.style import BLUE, GREEN, RED, epoch_axis, line_band, model_colors, symlog_edges

parser = argparse.ArgumentParser(description="Plot a finished ddscope study.")
parser.add_argument("study", nargs="?", default="results/default", help="a finished study (default: %(default)s)")
parser.add_argument("--out", type=Path, help="where the figures go (default: a new temporary directory)")
args = parser.parse_args([] if IN_NOTEBOOK else None)
study = Path(args.study)
if IN_NOTEBOOK and not study.exists() and (Path("..") / study).exists():
    study = Path("..") / study  # Jupyter starts in examples/
out = None if IN_NOTEBOOK else args.out or Path(tempfile.mkdtemp(prefix="ddscope-figures-"))


def show(fig, name):
    """Inline in a notebook; as a script, saved to out/<name>.png."""
    if out is None:
        plt.show()
        return
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{name}.png", dpi=120)
    plt.close(fig)
    print(out / f"{name}.png")


tree = ddscope.open_study(study)
curves = tree["curves"].to_dataset()
models, noises, losses = list(curves.model.values), list(curves.noise.values), list(curves.loss.values)
colors = model_colors(models)
noise = noises[int(np.argmax(curves.rate.values))]  # the highest rate: the heatmap and the one-run plots

# %% [markdown]
# ## Learning curves
# Test error and test cross-entropy of every model against epoch, the mean over seeds with a ± 1 std band,
# one column per noise rate. Epoch-wise double descent shows as a second fall after a rise.

# %%
fig, axes = plt.subplots(2, len(noises), figsize=(4.5 * len(noises), 6), squeeze=False, layout="constrained")
test = curves.sel(split="test")
for col, tag in enumerate(noises):
    for row, (name, da) in enumerate([("test error", 1 - test.accuracy), ("test cross-entropy", test.cross_entropy)]):
        ax = axes[row, col]
        for model in models:
            for ls, loss in zip(["-", "--", ":"], losses):
                run = da.sel(model=model, noise=tag, loss=loss)
                if run.notnull().any():  # the outer join leaves missing combinations NaN
                    label = model if len(losses) == 1 else f"{model} · {loss}"
                    line_band(ax, curves.epoch.values, run, "std", colors[model], label=label, ls=ls)
        epoch_axis(ax, curves.epoch.values, label=row == 1)
        ax.set_ylabel(name)
    axes[0, col].set_title(f"{curves.kind.sel(noise=tag).item()} noise, {curves.rate.sel(noise=tag).item():.0%}")
axes[0, 0].legend(fontsize=8)
show(fig, "curves")

# %% [markdown]
# ## Test error over epoch × model
# The same mean test error at the highest noise rate as a heatmap, one row per model (deeper, then wider,
# further up): where and when each model's error rises and falls again, compared at a glance.

# %%
error = (1 - test.accuracy).sel(noise=noise, loss=losses[0]).mean("seed").transpose("model", "epoch")
fig, ax = plt.subplots(figsize=(7, 1 + 0.5 * len(models)), layout="constrained")
mesh = ax.pcolormesh(symlog_edges(error.epoch.values), np.arange(len(models) + 1), error.values, cmap="magma")
epoch_axis(ax)
ax.set(yticks=np.arange(len(models)) + 0.5, yticklabels=models, title=f"test error, {noise}, {losses[0]}")
fig.colorbar(mesh, ax=ax, label="test error")
show(fig, "test_error_heatmap")

# %% [markdown]
# ## One run's activations
# The deepest model's first run at the highest noise rate: the mean post-ReLU activation of its last hidden
# layer over the clean, noisy and test probes at every recorded epoch (`ddscope.open_activations`).

# %%
model = models[-1]
run = f"{model}-{noise}-{losses[0]}-s{curves.seed.values[0]}"
acts = ddscope.open_activations(tree, run)
last = int(acts.attrs["n_layers"])
fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
for subset, color in [("clean", GREEN), ("noisy", RED), ("test", BLUE)]:
    layer = acts[f"act_{last}"].isel(sample=(acts.subset == subset).values).astype("float32")
    ax.plot(acts.epoch, layer.mean(["sample", f"unit_{last}"]), color=color, marker="o", label=f"{subset} probes")
epoch_axis(ax, acts.epoch.values)
ax.set(ylabel=f"mean activation, layer {last}", title=run)
ax.legend(fontsize=8)
show(fig, "activations")

# %% [markdown]
# ## CKA across epochs
# Linear CKA of the run's first and last hidden layers with themselves between every pair of recorded epochs
# (the tree's `cka` node): 1 where the representation did not change, lower where it was reorganised.

# %%
cka = tree["cka"]["cka"].sel(model=model, noise=noise, loss=losses[0], seed=curves.seed.values[0])
layers = sorted({1, last})
fig, axes = plt.subplots(1, len(layers), figsize=(3.6 * len(layers), 3.4), squeeze=False, layout="constrained")
for ax, layer in zip(axes[0], layers):
    mesh = epoch_heatmap(ax, cka.epoch.values, cka.sel(layer=layer), "viridis")
    ax.set_title(f"layer {layer}")
fig.colorbar(mesh, ax=axes[0], label="linear CKA")
fig.suptitle(run)
show(fig, "cka")
