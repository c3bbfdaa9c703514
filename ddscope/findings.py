"""findings.md: one row per claim of the papers, with the measured numbers and a verdict.

Every number comes from tables/runs.csv (the pipeline's own outputs). A verdict is
`supported`, `not supported` or `inconclusive` (the data cannot decide, e.g. too few runs fitted).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"


def _ms(values, fmt=".3f") -> str:
    """mean ± std (n) of the finite values."""
    a = np.asarray(values, dtype=float)
    a = a[np.isfinite(a)]
    if not a.size:
        return "n/a"
    std = f" ± {a.std(ddof=1):{fmt}}" if a.size > 1 else ""
    return f"{a.mean():{fmt}}{std} (n={a.size})"


def _frac(flags) -> float:
    a = np.asarray(flags, dtype=float)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else float("nan")


def _by_model(runs: pd.DataFrame, depths: dict[str, int]):
    """(model, rows) from the shallowest to the deepest model."""
    for model in sorted(runs.model.unique(), key=lambda m: depths.get(m, 0)):
        yield model, runs[runs.model == model]


def claim_dd_deepest_only(runs, depths, p):
    fracs = {m: _frac(r.epochwise_double_descent) for m, r in _by_model(runs, depths)}
    deepest = max(fracs, key=lambda m: depths.get(m, 0))
    measured = "; ".join(f"{m}: flag in {f:.0%} of seeds, recovery {_ms(runs[runs.model == m].dd_recovery)}"
                         for m, f in fracs.items())
    others = [f for m, f in fracs.items() if m != deepest]
    if len(fracs) < 2:
        verdict = INCONCLUSIVE
    elif fracs[deepest] >= p["majority"] and all(f < p["majority"] for f in others):
        verdict = SUPPORTED
    else:
        verdict = NOT_SUPPORTED
    return measured, f"flag in ≥ {p['majority']:.0%} of seeds (dd_depth and dd_recovery ≥ min_depth)", verdict


def claim_clean_first(runs, depths, p):
    tc, tn = runs.t_fit_clean.to_numpy(float), runs.t_fit_noisy.to_numpy(float)
    both = np.isfinite(tc) & np.isfinite(tn)
    gap = runs.final_accuracy_train_clean - runs.final_accuracy_train_noisy_assigned
    measured = (f"t_fit_clean {_ms(tc, '.0f')}, t_fit_noisy {_ms(tn, '.0f')}; clean fitted first in "
                f"{int((tc[both] < tn[both]).sum())} of {int(both.sum())} runs where both were fitted")
    if both.sum() == 0:
        fitted_clean_only = np.isfinite(tc) & ~np.isfinite(tn)
        verdict = SUPPORTED if fitted_clean_only.all() else INCONCLUSIVE
        measured += f"; final clean − noisy accuracy {_ms(gap)}"
    else:
        verdict = SUPPORTED if (tc[both] < tn[both]).mean() >= p["majority"] else NOT_SUPPORTED
    return measured, f"t_fit_clean < t_fit_noisy in ≥ {p['majority']:.0%} of runs", verdict


def claim_outer_separation(runs, depths, p):
    d = runs.separation_first_minus_last.to_numpy(float)
    rows = [f"{m}: cos(μ_clean, μ_noisy) layer 1 {_ms(r.separation_final_l1)} vs last {_ms(r.separation_final_last)}"
            for m, r in _by_model(runs, depths)]
    ok = np.isfinite(d)
    verdict = INCONCLUSIVE if not ok.any() else (
        SUPPORTED if (d[ok] > p["separation_gap"]).mean() >= p["majority"] else NOT_SUPPORTED)
    return "; ".join(rows), f"final-epoch cosine lower in the last than the first layer by > {p['separation_gap']}", verdict


def claim_shallow_large_activation(runs, depths, p, ratio_threshold):
    deep = runs[runs.model == max(depths, key=depths.get)]
    shallow = deep.large_layer_fraction <= p["shallow_fraction"]
    large = deep.large_ratio >= ratio_threshold
    measured = (f"{deep.model.iloc[0]}: largest top/median ratio {_ms(deep.large_ratio, '.1f')} in layer(s) "
                f"{sorted(set(deep.large_layer.astype(int)))} of {depths[deep.model.iloc[0]]}; "
                f"onset epoch there {_ms([r[f'onset_epoch_l{int(r.large_layer)}'] for _, r in deep.iterrows()], '.0f')}")
    verdict = SUPPORTED if (shallow & large).mean() >= p["majority"] else (
        NOT_SUPPORTED if large.mean() >= p["majority"] else INCONCLUSIVE)
    return measured, (f"ratio ≥ {ratio_threshold} in a layer in the first {p['shallow_fraction']:.0%} of the network "
                      f"(deepest model)"), verdict


def claim_input_not_output(runs, depths, p):
    deep = runs[runs.model == max(depths, key=depths.get)]
    r2, eta = deep.large_input_r2.to_numpy(float), deep.large_output_eta2.to_numpy(float)
    ok = np.isfinite(r2) & np.isfinite(eta)
    measured = f"{deep.model.iloc[0]}, top unit at the last analysed epoch: input_r2 {_ms(r2)}, output_eta2 {_ms(eta)}"
    verdict = INCONCLUSIVE if not ok.any() else (
        SUPPORTED if (r2[ok] > eta[ok]).mean() >= p["majority"] else NOT_SUPPORTED)
    return measured, "input_r2 > max output_eta2 (assigned, original, predicted)", verdict


def claim_benign(runs, depths, p):
    deep = runs[runs.model == max(depths, key=depths.get)]
    f = _frac(deep.benign_overfitting)
    measured = (f"{deep.model.iloc[0]}: benign in {f:.0%} of seeds; final test error {_ms(deep.test_error_final)} vs "
                f"first minimum {_ms(deep.test_error_min)}; noisy train accuracy {_ms(deep.final_accuracy_train_noisy_assigned)}")
    verdict = INCONCLUSIVE if not np.isfinite(f) else (SUPPORTED if f >= p["majority"] else NOT_SUPPORTED)
    return measured, "noisy fitted and final test error ≤ first minimum + benign_tolerance", verdict


def claim_routing(runs, depths, p):
    mc, mi = runs.routing_margin_correct.to_numpy(float), runs.routing_margin_incorrect.to_numpy(float)
    ok = np.isfinite(mc) & np.isfinite(mi)
    measured = (f"last hidden layer, final epoch: cos(clean) − cos(noisy) for correct {_ms(mc)}, "
                f"for incorrect {_ms(mi)}")
    if not ok.any():
        verdict = INCONCLUSIVE
    elif ((mc[ok] > 0) & (mi[ok] < 0)).mean() >= p["majority"]:
        verdict = SUPPORTED
    elif (mc[ok] > mi[ok]).mean() >= p["majority"]:
        verdict = INCONCLUSIVE  # the right order but not the right signs
    else:
        verdict = NOT_SUPPORTED
    return measured, "margin > 0 for correct and < 0 for incorrect test predictions", verdict


def claim_late_change_deeper(runs, depths, p):
    dd = runs[runs.epochwise_double_descent.astype(float) > 0.5]
    first, last = dd.cka_late_change_l1.to_numpy(float), dd.cka_late_change_last.to_numpy(float)
    epoch = _ms(runs.cka_late_epoch, ".0f")
    measured = (f"runs with epoch-wise double descent: {len(dd)}; 1 − CKA(epoch {epoch}, final): layer 1 {_ms(first)}, "
                f"last hidden layer {_ms(last)}")
    ok = np.isfinite(first) & np.isfinite(last)
    verdict = INCONCLUSIVE if not ok.any() else (
        SUPPORTED if (last[ok] > first[ok]).mean() >= p["majority"] else NOT_SUPPORTED)
    return measured, "late change larger in the last than in the first hidden layer, in runs with double descent", verdict


def claim_dilation(runs, depths, p):
    ce = runs[runs.loss == "ce"]
    d = ce.dilation_final.to_numpy(float)
    ok = np.isfinite(d)
    measured = f"cross-entropy runs, final epoch: dilation {_ms(d)}; nc1 {_ms(ce.nc1_final)}"
    verdict = INCONCLUSIVE if not ok.any() else (SUPPORTED if (d[ok] > 1).mean() >= p["majority"] else NOT_SUPPORTED)
    return measured, "dilation (noisy / clean mean distance to class means) > 1", verdict


def claim_label_smoothing(runs, depths, p):
    if not {"ce", "ls"} <= set(runs.loss):
        return ("no label-smoothing runs in this study (see configs/label-smoothing.yaml)",
                "dilation(ls) < dilation(ce) for the same model", INCONCLUSIVE)
    parts, smaller = [], []
    for model, rows in _by_model(runs, depths):
        ce, ls = rows[rows.loss == "ce"], rows[rows.loss == "ls"]
        d_ce, d_ls = np.nanmean(ce.dilation_final), np.nanmean(ls.dilation_final)
        acc = np.nanmean(ls.final_accuracy_test) - np.nanmean(ce.final_accuracy_test)
        smaller.append(d_ls < d_ce)
        parts.append(f"{model}: dilation ce {_ms(ce.dilation_final)} vs ls {_ms(ls.dilation_final)}, "
                     f"test accuracy ls − ce {acc:+.3f}")
    verdict = SUPPORTED if np.mean(smaller) >= p["majority"] else NOT_SUPPORTED
    return "; ".join(parts), "mean dilation lower with label smoothing, per model", verdict


CLAIMS = [
    ("Only the deepest model shows epoch-wise double descent", claim_dd_deepest_only),
    ("Clean samples are learned before noisy ones", claim_clean_first),
    ("Clean and noisy signals separate more in outer layers", claim_outer_separation),
    ("A single very large activation appears in a shallow layer", claim_shallow_large_activation),
    ("The large activation follows input patterns rather than output labels", claim_input_not_output),
    ("The model ends in benign overfitting", claim_benign),
    ("Correct test predictions align with clean signals, wrong ones with noisy signals", claim_routing),
    ("Deeper layers change more late in training when epoch-wise double descent occurs", claim_late_change_deeper),
    ("Noisy samples are dilated relative to clean ones in the last hidden layer", claim_dilation),
    ("Label smoothing reduces dilation and changes test accuracy", claim_label_smoothing),
]


def findings_rows(runs: pd.DataFrame, depths: dict[str, int], params: dict, ratio_threshold: float) -> list[tuple]:
    rows = []
    for claim, fn in CLAIMS:
        needed = fn.__code__.co_varnames[: fn.__code__.co_argcount]
        args = (runs, depths, params) + ((ratio_threshold,) if "ratio_threshold" in needed else ())
        try:
            measured, threshold, verdict = fn(*args)
        except (KeyError, AttributeError, ValueError) as e:  # a metric missing from this study
            measured, threshold, verdict = f"not measured ({e})", "", INCONCLUSIVE
        rows.append((claim, measured, threshold, verdict))
    return rows


def findings_markdown(title: str, rows: list[tuple], extra_rows: list[str] = (),
                      sources: str = "tables/runs.csv") -> str:
    """findings.md: numbered `rows` (claim, measured, criterion, verdict), then `extra_rows` (ready table lines)."""
    lines = [f"# Findings: {title}", "",
             f"Generated by the `findings` rule from {sources}; numbers are mean ± std over runs (n).", "",
             "| # | claim | measured | criterion | verdict |", "|---|---|---|---|---|"]
    for i, (claim, measured, threshold, verdict) in enumerate(rows, 1):
        lines.append(f"| {i} | {claim} | {measured} | {threshold} | **{verdict}** |")
    lines += list(extra_rows)
    return "\n".join(lines) + "\n"


def table_rows(markdown: str) -> list[str]:
    """The body rows of a findings table fragment (e.g. the threshold study's `| T1 | … |` rows)."""
    return [line for line in markdown.splitlines()
            if line.startswith("| ") and not line.startswith("| # ") and not line.startswith("|---")]
