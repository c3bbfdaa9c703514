"""The architectures (ddscope.models): shapes on 1-D and 2-D inputs, the papers' sizes, what is recorded, the job
sizing's cost model, BatchNorm in eval mode, and CKA of a trained conv net's recorded layers against an
independent implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from ddscope.analyses.activations import open_activations
from ddscope.analyses.cka import extract_cka
from ddscope.config import INPUT_SHAPE, layer_widths, model_depth
from ddscope.models import build_model
from ddscope.resources import model_cost

ENTRIES = {
    "mlp": {"hidden": [32, 16]},
    "cnn": {"arch": "cnn", "width": 4},
    "resnet18": {"arch": "resnet18", "width": 4},
    "vit": {"arch": "vit", "width": 16, "depth": 3, "heads": 2, "patch": 4},
    "vit-mean": {"arch": "vit", "width": 16, "depth": 2, "heads": 4, "patch": 8, "pool": "mean", "mlp_ratio": 2},
}
SHAPES = {"mnist1d": INPUT_SHAPE["mnist1d"], "cifar10": INPUT_SHAPE["cifar10"]}


def entry_for(name: str, dataset: str) -> dict:
    entry = dict(ENTRIES[name])
    if dataset == "mnist1d" and entry.get("patch") == 8:
        entry["patch"] = 5  # must divide the 40 samples of a signal
    return entry


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.mark.parametrize("dataset", SHAPES)
@pytest.mark.parametrize("name", ENTRIES)
def test_forward_and_recorded_layers(name, dataset):
    """One [N, width] array per recorded layer; the last is exactly what the classifier reads."""
    entry, shape = entry_for(name, dataset), SHAPES[dataset]
    torch.manual_seed(0)
    model = build_model(entry, shape, 10).eval()
    x = torch.randn(6, math.prod(shape))
    acts, logits = model.hidden_and_logits(x)
    assert [tuple(a.shape) for a in acts] == [(6, w) for w in layer_widths(entry)]
    assert logits.shape == (6, 10) and torch.equal(model(x), logits)
    assert torch.allclose(model.out(acts[-1]), logits, atol=1e-6)
    assert model.layer_widths == layer_widths(entry) and model_depth(entry) == len(acts) + 1


@pytest.mark.parametrize("dataset", SHAPES)
@pytest.mark.parametrize("name", ENTRIES)
def test_cost_model_counts_the_parameters_and_flops(name, dataset):
    """resources.model_cost (torch-free, sizes the jobs): parameters exact, forward FLOPs within 2 % of PyTorch's
    counter (which does not count attention scores, added here from their definition)."""
    entry, shape = entry_for(name, dataset), SHAPES[dataset]
    model = build_model(entry, shape, 10).eval()
    params, flops, _ = model_cost(entry, shape)
    assert params == sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(2, math.prod(shape)))
    counted = counter.get_total_flops() / 2
    if entry.get("arch") == "vit":
        tokens = math.prod(n // entry["patch"] for n in shape[1:]) + (entry.get("pool", "cls") == "cls")
        counted += entry["depth"] * 2 * 2 * tokens * tokens * entry["width"]  # Q·Kᵀ and scores·V
    assert flops == pytest.approx(counted, rel=0.02)


def test_the_papers_sizes():
    """Nakkiran et al. 2019: the 5-layer CNN of width 64 has 1 558 026 parameters on CIFAR-10, the pre-activation
    ResNet-18 of width 64 11 171 146 (kuangliu/pytorch-cifar's PreActResNet18)."""
    cifar = INPUT_SHAPE["cifar10"]
    count = lambda e: sum(p.numel() for p in build_model(e, cifar, 10).parameters())  # noqa: E731
    assert count({"arch": "cnn", "width": 64}) == 1_558_026
    assert count({"arch": "resnet18", "width": 64}) == 11_171_146


@pytest.mark.parametrize("name", ["cnn", "resnet18"])
def test_batch_norm_evaluates_with_running_statistics(name):
    """In eval mode a sample's output does not depend on the batch it is evaluated with (BatchNorm uses its
    running statistics, not the batch's), and evaluating changes no running statistic."""
    torch.manual_seed(0)
    model = build_model(ENTRIES[name], INPUT_SHAPE["mnist1d"], 10)
    model.train()
    model(torch.randn(64, 40) * 3 + 1)  # move the running statistics off their initial values
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(16, 40)
    with torch.inference_mode():
        alone, batched = model(x[:1]), model(torch.cat([x[:1], 5 * x[1:]]))[:1]
    assert torch.allclose(alone, batched, atol=1e-6)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def reference_linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. 2019, eq. for linear CKA on centred features: ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)."""
    x, y = x - x.mean(0), y - y.mean(0)
    return float(np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


@pytest.mark.parametrize("name", ["cnn", "resnet18", "vit"])
def test_cka_of_recorded_blocks_matches_an_independent_implementation(name, tmp_path):
    from test_train import make_spec

    from ddscope.data import prepare_dataset
    from ddscope.artifacts import write_h5
    from ddscope.noise import make_noisy_labels
    from ddscope.train import RunPaths, train_run

    arrays, attrs = prepare_dataset({"name": "mnist1d", "n_train": 300, "n_test": 100, "seed": 1})
    write_h5(tmp_path / "dataset.h5", arrays, attrs)
    labels, lattrs = make_noisy_labels(arrays["y_train"], arrays["y_test"], "symmetric", 0.3, 10, 0,
                                       {"clean": 30, "noisy": 20, "test": 30}, attrs["content_sha256"])
    write_h5(tmp_path / "labels.h5", labels, lattrs)
    paths = RunPaths.in_dir(tmp_path / "run")
    train_run(tmp_path / "dataset.h5", tmp_path / "labels.h5", paths, make_spec(epochs=4, **ENTRIES[name]))
    acts = open_activations(paths.activations)
    assert [acts.sizes[f"unit_{l}"] for l in range(1, len(layer_widths(ENTRIES[name])) + 1)] == \
        layer_widths(ENTRIES[name])
    cka = extract_cka(acts)
    epochs = acts.epoch.values
    for layer in (1, len(layer_widths(ENTRIES[name]))):
        feats = acts[f"act_{layer}"].values.astype(np.float64)
        for i, j in [(0, len(epochs) - 1), (1, 2)]:
            got = float(cka.cka.sel(layer=layer, epoch=epochs[i], epoch_other=epochs[j]))
            assert got == pytest.approx(reference_linear_cka(feats[i], feats[j]), abs=1e-6)


def test_crop_flip_is_a_padded_random_crop_and_mirror():
    """Against a per-image loop over the same draws; the generator state resumes the same stream."""
    import torch.nn.functional as F

    from ddscope.augment import PAD, STREAM_OFFSET, CropFlip

    x = torch.randn(16, 3 * 32 * 32)
    augment = CropFlip((3, 32, 32), seed=5)
    state = augment.get_state()
    got = augment(x)
    draws = torch.Generator().manual_seed(5 + STREAM_OFFSET)
    shift = torch.randint(0, 2 * PAD + 1, (2, 16), generator=draws)
    flip = torch.rand(16, generator=draws) < 0.5
    assert 0 < int(flip.sum()) < 16, "the draws exercise both branches"
    for i in range(16):
        image = F.pad(x[i].view(3, 32, 32), (PAD,) * 4)
        crop = image[:, shift[0, i]:shift[0, i] + 32, shift[1, i]:shift[1, i] + 32]
        assert torch.equal(got[i], (crop.flip(2) if flip[i] else crop).reshape(-1)), i
    augment.set_state(state)
    assert torch.equal(augment(x), got)
    with pytest.raises(ValueError, match="needs images"):
        CropFlip(INPUT_SHAPE["mnist1d"], 0)
