"""The whole workflow on the conv and transformer architectures: a tiny study with a CNN, a ResNet-18 and a ViT
(MNIST-1D, 1-D variants) trained, recorded, analysed by every analysis, plotted, judged and opened as one tree."""

from __future__ import annotations

import time

import numpy as np
import pytest
from tiny_study import run_local

from ddscope.analyses.activations import open_activations
from ddscope.analyses.registry import ANALYSES
from ddscope.config import layer_widths, model_depth
from ddscope.findings import CLAIMS
from ddscope.study import open_study

MODELS = {
    "cnn": {"arch": "cnn", "width": 4},
    "resnet": {"arch": "resnet18", "width": 4},
    "vit": {"arch": "vit", "width": 16, "depth": 2, "heads": 2, "patch": 4},
}
CONFIG = {
    "study": "tinyarch",
    "dataset": {"name": "mnist1d", "n_train": 400, "n_test": 200},
    "noise": {"rates": [0.3]},
    "probes": {"clean": 30, "noisy": 20, "test": 30},
    "models": MODELS,
    "train": {"seeds": [0], "epochs": 6, "checkpoint_every": 2, "batch_size": 64},
    "record": {"epochs": {"first": 2, "log_count": 3}},
    "analyses": {"probes": {"n_epochs": 3, "steps": 20}, "large_activation": {"n_epochs": 3}},
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    start = time.perf_counter()
    root = run_local(tmp_path_factory.mktemp("arch"), CONFIG)
    print(f"\n[wall time] tiny architectures study: {time.perf_counter() - start:.1f} s", flush=True)
    return root


@pytest.mark.slow
def test_every_architecture_goes_through_every_analysis(study):
    for name, entry in MODELS.items():
        run = f"{name}-sym30-ce-s0"
        acts = open_activations(study / "runs" / run / "activations.zarr")
        widths = layer_widths(entry)
        assert [acts.sizes[f"unit_{l}"] for l in range(1, len(widths) + 1)] == widths
        assert np.isfinite(acts[f"act_{len(widths)}"].values.astype(np.float32)).all()
        for analysis in ANALYSES:
            assert (study / "metrics" / run / f"{analysis}.nc").is_file(), (run, analysis)
    assert len(list((study / "figures").glob("*.png"))) >= 8
    findings = (study / "findings.md").read_text()
    assert all(f"| {i} |" in findings for i in range(1, len(CLAIMS) + 1))


@pytest.mark.slow
def test_the_tree_places_each_architecture_by_its_recorded_layers(study):
    tree = open_study(study)
    curves = tree["curves"].ds  # (DataTree.depth is the node's depth in the tree)
    depth = dict(zip(curves.model.values, curves["depth"].values))
    assert depth == {name: model_depth(entry) for name, entry in MODELS.items()}
    separation = tree["separation"]["separation_mean"].sel(model="resnet").squeeze()
    assert separation.sizes["layer"] == 8 and np.isfinite(separation.values).any()
