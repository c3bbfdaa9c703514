"""Linear probes: epoch selection, separable vs random labels, agreement, extract_probes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from ddscope.analyses.probes import TARGETS, agreement, extract_probes, train_probes


def blobs(n, n_classes, p, rng, labels=None, spread=0.3):
    labels = rng.integers(0, n_classes, n) if labels is None else labels
    centres = np.eye(n_classes, p) * 3.0
    return centres[labels] + spread * rng.standard_normal((n, p)), labels


def test_probe_separable_features_near_perfect():
    rng = np.random.default_rng(0)
    k, p = 4, 16
    x_train, y_train = blobs(120, k, p, rng)
    x_test, y_test = blobs(200, k, p, rng)
    x = np.concatenate([x_train, x_test])[None]  # one probe epoch
    # a second, batched problem: the same features scaled and shifted (standardisation makes it identical)
    x = np.concatenate([x, 50 * x + 7])
    y = np.concatenate([y_train, y_test])
    train = np.arange(len(y)) < len(y_train)
    pred = train_probes(x, y, train, k, steps=100, lr=0.05)
    assert pred.shape == (2, len(y))
    assert (pred[:, train] == y[train]).mean() == 1.0
    assert (pred[:, ~train] == y[~train]).mean() >= 0.99
    assert (pred[0] == pred[1]).mean() >= 0.99


def test_probe_random_labels_at_chance_and_deterministic():
    rng = np.random.default_rng(1)
    k, p = 4, 20
    x = rng.standard_normal((1, 1400, p))
    y = rng.integers(0, k, 1400)
    train = np.arange(1400) < 400
    pred = train_probes(x, y, train, k, steps=100)
    assert (pred[0, train] == y[train]).mean() > 1 / k + 0.05  # fits some of the noise
    assert abs((pred[0, ~train] == y[~train]).mean() - 1 / k) < 0.05
    np.testing.assert_array_equal(pred, train_probes(x, y, train, k, steps=100))


def test_agreement_matrix():
    pred = np.array([[0, 1, 2, 3], [0, 1, 2, 0], [1, 1, 1, 1]])
    agree = agreement(pred)
    np.testing.assert_allclose(agree, [[1, 0.75, 0.25], [0.75, 1, 0.25], [0.25, 0.25, 1]])


def make_acts(n_epochs=6, n_classes=3, n=(90, 30, 90), p=(10, 8), seed=0):
    """Epoch 0: random features; later: features separate classes by original label, more so in layer 1.

    Noisy probes' features follow their original label, so probes trained on clean samples predict the
    original label of noisy samples, not the assigned one.
    """
    rng = np.random.default_rng(seed)
    subset = np.array(["clean"] * n[0] + ["noisy"] * n[1] + ["test"] * n[2])
    s = len(subset)
    y_original = np.tile(np.arange(n_classes), s // n_classes + 1)[:s]
    y_assigned = np.where(subset == "noisy", (y_original + 1) % n_classes, y_original)
    data = {}
    for layer, units in enumerate(p, start=1):
        feats = np.abs(rng.standard_normal((n_epochs, s, units)))
        signal = np.eye(n_classes, units)[y_original] * (3.0 if layer == 1 else 0.8)
        feats[1:] += signal[None]
        data[f"act_{layer}"] = (("epoch", "sample", f"unit_{layer}"), feats.astype(np.float16))
    data["logits"] = (("epoch", "sample", "class"), np.zeros((n_epochs, s, n_classes), np.float16))
    data["w_out"] = (("epoch", "class", f"unit_{len(p)}"), np.zeros((n_epochs, n_classes, p[-1]), np.float16))
    return xr.Dataset(
        data,
        coords={"epoch": [0, 1, 2, 5, 20, 100][:n_epochs], "sample": np.arange(s), "subset": ("sample", subset),
                "y_assigned": ("sample", y_assigned), "y_original": ("sample", y_original)},
        attrs={"n_layers": len(p), "n_classes": n_classes},
    )


def test_extract_probes_dataset_and_netcdf(tmp_path):
    acts = make_acts()
    ds = extract_probes(acts, {"n_epochs": 4, "steps": 100, "lr": 0.05, "l2": 1e-4})
    assert ds["probe_accuracy"].dims == ("epoch", "layer", "target")
    assert ds["agreement"].dims == ("layer", "epoch", "epoch_other")
    assert list(ds["target"].values) == list(TARGETS)
    assert list(ds["layer"].values) == [1, 2]
    epochs = list(ds["epoch"].values)
    assert len(epochs) == 4 and epochs[0] == 0 and epochs[-1] == 100
    acc = ds["probe_accuracy"]
    late = acc.sel(epoch=100)
    assert late.sel(layer=1, target="test") > 0.95
    assert late.sel(layer=1, target="clean") == 1.0
    assert late.sel(layer=1, target="noisy_original") > 0.95
    assert late.sel(layer=1, target="noisy_assigned") < 0.05
    assert acc.sel(epoch=0, target="test").max() < 0.6  # random features at init: near chance (1/3)
    agree = ds["agreement"].values
    assert np.all(agree[:, range(4), range(4)] == 1.0)
    np.testing.assert_array_equal(agree, agree.transpose(0, 2, 1))
    assert agree[0, 1:, 1:].min() > 0.9  # once features separate, the decision regions agree
    assert agree[0, 0, -1] < 0.7
    path = tmp_path / "probes.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    back = xr.open_dataset(path, engine="h5netcdf")
    np.testing.assert_array_equal(back["probe_accuracy"].values, ds["probe_accuracy"].values)
    assert list(back["target"].values) == list(TARGETS)
    back.close()


def test_extract_probes_without_noisy_probes():
    acts = make_acts(n=(90, 0, 60))
    ds = extract_probes(acts, {"n_epochs": 2, "steps": 20})
    assert np.isnan(ds["probe_accuracy"].sel(target="noisy_assigned")).all()
    assert not np.isnan(ds["probe_accuracy"].sel(target="test")).any()


@pytest.mark.parametrize("device", ["cpu"])
def test_device_argument(device):
    acts = make_acts(n_epochs=3)
    ds = extract_probes(acts, {"n_epochs": 2, "steps": 10}, device=device)
    assert ds.sizes["epoch"] == 2


def test_probe_gradients_match_autograd():
    from ddscope.analyses.probes import probe_gradients

    g = torch.Generator().manual_seed(0)
    xt = torch.randn(3, 40, 7, generator=g)
    y = torch.randint(0, 4, (40,), generator=g)
    w = torch.randn(3, 7, 4, generator=g, requires_grad=True)
    b = torch.randn(3, 1, 4, generator=g, requires_grad=True)
    logits = torch.baddbmm(b, xt, w)
    loss = sum(torch.nn.functional.cross_entropy(logits[p], y) for p in range(3)) + 0.3 * w.square().sum()
    loss.backward()
    onehot = torch.nn.functional.one_hot(y, 4).float().expand(3, -1, -1)
    gw, gb = probe_gradients(xt, xt.transpose(1, 2).contiguous(), onehot, w.detach(), b.detach(), 0.3)
    torch.testing.assert_close(gw, w.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gb, b.grad, rtol=1e-5, atol=1e-6)


def test_adam_step_matches_torch_adam():
    from ddscope.optim import adam_moments, adam_step

    g = torch.Generator().manual_seed(1)
    ours, ref = torch.randn(5, 3, generator=g), None
    ref = ours.clone().requires_grad_(True)
    opt = torch.optim.Adam([ref], lr=0.05, betas=(0.8, 0.99))
    moments = adam_moments([ours])
    for step in range(1, 20):
        grad = torch.randn(5, 3, generator=g)
        ref.grad = grad.clone()
        opt.step()
        adam_step([ours], [grad], moments, step, 0.05, (0.8, 0.99))
    torch.testing.assert_close(ours, ref.detach(), rtol=1e-5, atol=1e-6)
