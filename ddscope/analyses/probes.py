"""Linear probes per layer and epoch, and agreement of their decision regions.

At `n_epochs` recorded epochs spread over the schedule (ddscope.analyses.epochs.spread_epoch_indices, shared with large_activation), one linear softmax probe per
hidden layer is trained on the clean probe samples with their original labels. Protocol (deterministic,
no randomness at all):

- features standardised per (epoch, unit) with the mean and std of the clean probe samples
  (units constant on them are zeroed);
- multinomial logistic regression, weights and biases initialised at 0, loss = mean cross-entropy
  + l2·||W||²_F (bias not penalised);
- full-batch Adam for a fixed number of `steps` with learning rate `lr`. Adam acts elementwise, so the
  probes of all probe epochs of a layer are trained in one batched optimisation ([epoch, unit, class]
  weights, summed losses) and each comes out exactly as if trained alone.

Outputs: `probe_accuracy`[epoch, layer, target] with target ∈ {clean (training accuracy, original
labels), test (true labels), noisy_original, noisy_assigned} (NaN where the subset is empty), and
`agreement`[layer, epoch, epoch_other] = fraction of test probes on which the probes of the two
epochs predict the same class (diagonal 1, symmetric).
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from ddscope.artifacts import coordinates, describe, netcdf_attrs
from ddscope.analyses.activations import subsets
from ddscope.analyses.epochs import spread_epoch_indices
from ddscope.optim import adam_moments, adam_step
from ddscope.summary import per_layer_columns

TARGETS = ("clean", "test", "noisy_original", "noisy_assigned")
DEFAULTS = {"n_epochs": 8, "steps": 300, "lr": 0.02, "l2": 1e-4}
CF_ATTRS = {
    **coordinates("epoch", "epoch_other", "layer"),
    "target": ("probes and labels the accuracy is measured on", "1"),
    "probe_accuracy": ("linear-probe accuracy", "1"),
    "agreement": ("linear-probe agreement between two epochs", "1"),
}


def _standardise(x: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """x [P, S, U]; standardise with mean/std over the training samples, per (epoch, unit)."""
    xt = x[:, train]
    mean = xt.mean(1, keepdim=True)
    std = xt.std(1, keepdim=True, unbiased=False)
    keep = std > 1e-6 * (mean.abs() + 1.0)
    return torch.where(keep, (x - mean) / torch.where(keep, std, 1.0), 0.0)


def probe_gradients(xt, xt_t, onehot, w, b, l2: float):
    """Gradients of mean cross-entropy + l2·||W||²_F w.r.t. W [P, U, C] and b [P, 1, C] of every probe.

    xt [P, N, U] training features, xt_t its transpose [P, U, N] (contiguous), onehot [P, N, C] labels.
    """
    g = torch.baddbmm(b, xt, w).softmax(-1).sub_(onehot).div_(xt.shape[1])  # d(mean CE)/d(logits)
    return torch.baddbmm(w, xt_t, g, beta=2 * l2), g.sum(1, keepdim=True)  # xᵀg + 2·l2·W, Σ g


def train_probes(x, y, train, n_classes: int, steps: int = 300, lr: float = 0.02, l2: float = 1e-4,
                 device="cpu") -> np.ndarray:
    """Train one softmax probe per leading index of x [P, S, U] on samples `train` (bool [S]) with labels y [S].

    Returns the predicted class of every sample, [P, S] int64. See the module docstring for the protocol.
    """
    device = torch.device(device)
    x = torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)
    train = torch.as_tensor(np.asarray(train, dtype=bool), device=device)
    y = torch.as_tensor(np.asarray(y, dtype=np.int64), device=device)
    n_p, _, n_u = x.shape
    x = _standardise(x, train)
    xt, yt = x[:, train].contiguous(), y[train]
    xt_t = xt.transpose(1, 2).contiguous()
    onehot = torch.nn.functional.one_hot(yt, n_classes).to(x.dtype).expand(n_p, -1, -1)
    w = torch.zeros(n_p, n_u, n_classes, device=device)
    b = torch.zeros(n_p, 1, n_classes, device=device)
    # gradients and Adam by hand: no autograd and no torch.optim (whose import costs more than training the
    # probes). Each probe's gradient is its own, so all probes of the batch train exactly as if alone.
    moments = adam_moments([w, b])
    for step in range(1, steps + 1):
        adam_step([w, b], probe_gradients(xt, xt_t, onehot, w, b, l2), moments, step, lr)
    with torch.inference_mode():
        pred = torch.baddbmm(b, x, w).argmax(-1)
    return pred.cpu().numpy()


def _accuracy(pred: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """pred [P, S] → accuracy [P] on the masked samples (NaN if none)."""
    if not mask.any():
        return np.full(pred.shape[0], np.nan)
    return (pred[:, mask] == labels[mask]).mean(1)


def agreement(pred: np.ndarray) -> np.ndarray:
    """pred [P, S] → [P, P] fraction of samples on which two rows predict the same class."""
    if pred.shape[1] == 0:
        return np.full((pred.shape[0],) * 2, np.nan)
    return (pred[:, None, :] == pred[None, :, :]).mean(-1)


def extract_probes(acts: xr.Dataset, params: dict | None = None, device="cpu") -> xr.Dataset:
    """Probe accuracy and agreement per layer at `n_epochs` epochs; one layer loaded at a time.

    params: the `analyses.probes` config block (n_epochs, steps, lr, l2; defaults as in the schema).
    """
    params = {**DEFAULTS, **(params or {})}
    n_layers = int(acts.attrs["n_layers"])
    n_classes = int(acts.attrs["n_classes"])
    idx = spread_epoch_indices(acts["epoch"].values, int(params["n_epochs"]))
    probe_epochs = np.asarray(acts["epoch"].values)[idx]
    subset = subsets(acts)
    y_orig = np.asarray(acts["y_original"].values, dtype=np.int64)
    y_assigned = np.asarray(acts["y_assigned"].values, dtype=np.int64)
    clean, noisy, test = subset == "clean", subset == "noisy", subset == "test"
    if not clean.any():
        raise ValueError("probes: no clean probe samples to train on")

    acc = np.full((len(idx), n_layers, len(TARGETS)), np.nan)
    agree = np.full((n_layers, len(idx), len(idx)), np.nan)
    for layer in range(1, n_layers + 1):
        feats = acts[f"act_{layer}"].isel(epoch=idx).values  # [P, S, U], this layer only
        pred = train_probes(feats, y_orig, clean, n_classes, steps=int(params["steps"]), lr=float(params["lr"]),
                            l2=float(params["l2"]), device=device)
        del feats
        acc[:, layer - 1, 0] = _accuracy(pred, y_orig, clean)
        acc[:, layer - 1, 1] = _accuracy(pred, y_orig, test)
        acc[:, layer - 1, 2] = _accuracy(pred, y_orig, noisy)
        acc[:, layer - 1, 3] = _accuracy(pred, y_assigned, noisy)
        agree[layer - 1] = agreement(pred[:, test])

    ds = xr.Dataset(
        {
            "probe_accuracy": (("epoch", "layer", "target"), acc.astype(np.float32),
                               {"description": "accuracy of the layer's linear probe (trained on clean probes, "
                                               "original labels) on each target subset/label kind"}),
            "agreement": (("layer", "epoch", "epoch_other"), agree.astype(np.float32),
                          {"description": "fraction of test probes on which the two epochs' probes "
                                          "predict the same class"}),
        },
        coords={"epoch": probe_epochs, "epoch_other": probe_epochs,
                "layer": np.arange(1, n_layers + 1), "target": list(TARGETS)},
        attrs={"analysis": "probes", "optimizer": "full-batch Adam, zero init", "standardise": "clean probes, per unit",
               "train_samples": "clean probes, original labels", "n_train": int(clean.sum()), "n_test": int(test.sum()),
               **netcdf_attrs(params)},
    )
    return describe(ds, CF_ATTRS)


def summary_columns(ds: xr.Dataset, metrics: dict) -> dict:
    """This analysis's columns of tables/runs.csv (ddscope.summary)."""
    final = ds.probe_accuracy.isel(epoch=-1)
    return {**per_layer_columns(final.sel(target="test"), "probe_test_final")}
