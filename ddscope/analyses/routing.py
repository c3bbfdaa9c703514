"""Routing: do test samples line up with the clean or with the noisy training signal of their predicted class?

For each test probe x at epoch t, with predicted class y_hat = argmax logits(x) at t:

  cos_ref(x) = cos(a_l(x), mu_ref[t, l, y_hat]),  ref in {clean, noisy},

where mu_clean / mu_noisy are the class means of the clean / noisy *train* probes grouped by their
assigned (training) label. routing[t, l, correctness, ref] is the mean of cos_ref over the test probes
whose prediction is correct (y_hat == true label) or incorrect; NaN when there is no such test probe,
and samples whose predicted class has no probe of that reference set are left out of that mean (all
of them NaN -> NaN). routing_margin = routing[clean] - routing[noisy]: positive when test samples sit
closer to the clean signal of their predicted class. n_correct / n_incorrect [epoch] count test probes.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ddscope.analyses.activations import layer_numbers, load, load_by_sample, probe_info
from ddscope.analyses.stats import class_means_by_epoch, cosine_to_class_means, nanmean
from ddscope.artifacts import coordinates, describe

CORRECTNESS = ("correct", "incorrect")
REFERENCES = ("clean", "noisy")
CF_ATTRS = {
    **coordinates("epoch", "layer"),
    "correctness": ("prediction of the test probes", "1"),
    "reference": ("training probes the class mean is taken over", "1"),
    "routing": ("cosine of test activations to their predicted class's mean", "1"),
    "routing_margin": ("routing margin (clean - noisy)", "1"),
    "n_correct": ("test probes predicted correctly", "1"),
    "n_incorrect": ("test probes predicted incorrectly", "1"),
}


def extract_routing(acts: xr.Dataset, params: dict | None = None) -> xr.Dataset:
    """routing [epoch, layer, correctness, reference], routing_margin [epoch, layer, correctness], n_correct [epoch]."""
    layers = layer_numbers(acts)
    info = probe_info(acts)
    k = info["n_classes"]
    epochs = np.asarray(acts["epoch"].values)
    test = info["test"]
    y_true = info["y_original"][test]
    y_hat = load(acts, "logits")[:, test].argmax(axis=-1)  # [epoch, test]
    correct = y_hat == y_true[None, :]
    groups = np.stack([correct, ~correct], axis=1)  # [epoch, correctness, test]

    routing = np.full((len(epochs), len(layers), len(CORRECTNESS), len(REFERENCES)), np.nan, dtype=np.float32)
    test_idx = np.flatnonzero(test)
    for li, layer in enumerate(layers):
        a = load_by_sample(acts, f"act_{layer}")  # [sample, epoch, unit]
        a_test = np.ascontiguousarray(a[test_idx].swapaxes(0, 1))  # [epoch, test, unit]
        for ri, ref in enumerate(REFERENCES):
            mu, counts = class_means_by_epoch(a, info["y_assigned"], k, mask=info[ref])  # [epoch, class, unit]
            cos = cosine_to_class_means(a_test, mu, y_hat)  # [epoch, test]
            cos = np.where(counts[y_hat] > 0, cos, np.nan)
            routing[:, li, :, ri] = nanmean(np.where(groups, cos[:, None, :], np.nan), axis=-1)
        del a, a_test

    ds = xr.Dataset(
        {
            "routing": (("epoch", "layer", "correctness", "reference"), routing),
            "routing_margin": (("epoch", "layer", "correctness"), routing[..., 0] - routing[..., 1]),
            "n_correct": (("epoch",), correct.sum(axis=1).astype(np.int64)),
            "n_incorrect": (("epoch",), (~correct).sum(axis=1).astype(np.int64)),
        },
        coords={"epoch": epochs, "layer": np.asarray(layers), "correctness": list(CORRECTNESS),
                "reference": list(REFERENCES)},
    )
    ds["routing"].attrs["description"] = (
        "mean over test probes (correct / incorrect prediction) of cos(a_l(x), mu_reference[predicted class])")
    ds["routing_margin"].attrs["description"] = "routing[clean] - routing[noisy]"
    ds["n_correct"].attrs["description"] = "test probes predicted correctly at that epoch"
    ds.attrs.update({"analysis": "routing", "n_classes": k, "n_layers": len(layers), "n_test_probes": int(test.sum())})
    return describe(ds, CF_ATTRS)


def summary_columns(ds: xr.Dataset, metrics: dict) -> dict:
    """This analysis's columns of tables/runs.csv (ddscope.summary): the last hidden layer's margins at the final
    epoch and, as the untrained control, at the first recorded epoch (epoch 0, the initialisation)."""
    out = {}
    for suffix, index in (("", -1), ("_init", 0)):
        at = ds.routing_margin.isel(epoch=index, layer=-1)
        out[f"routing_margin_correct{suffix}"] = float(at.sel(correctness="correct"))
        out[f"routing_margin_incorrect{suffix}"] = float(at.sel(correctness="incorrect"))
    return out
