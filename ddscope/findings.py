"""findings.md: one row per claim of the papers, with the measured numbers and a verdict.

Every number comes from tables/runs.csv (the pipeline's own outputs). A verdict is
`supported`, `not supported` or `inconclusive` (the data cannot decide, e.g. too few runs fitted).

Each claim is a function (runs, depths, p) -> (measured, criterion, verdict) that declares the columns it reads
with @needs. A column absent from the table (its analysis was not run) makes the row "not measured"; NaN values
are missing data, handled by the claim; any exception is a bug and propagates.
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


def _mean(values) -> float:
    """Mean of the finite values (nan, without a warning, when there are none)."""
    a = np.asarray(values, dtype=float)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else float("nan")


_frac = _mean  # the fraction of runs whose 0/1 flag is set


def _by_model(runs: pd.DataFrame, depths: dict[str, int]):
    """(model, rows) from the shallowest to the deepest model."""
    for model in sorted(runs.model.unique(), key=lambda m: depths.get(m, 0)):
        yield model, runs[runs.model == model]


def needs(*columns: str):
    """Declare the tables/runs.csv columns a claim reads; `name_l*` stands for the per-layer columns `name_l<k>`.

    `findings_rows` calls the claim only when the table has them all, and passes it only those columns:
    reading an undeclared (or misspelt) column raises KeyError instead of becoming a verdict.
    """
    def mark(fn):
        fn.columns = columns
        return fn
    return mark


def _matching(runs: pd.DataFrame, column: str) -> list[str]:
    if column.endswith("*"):
        return [c for c in runs.columns if c.startswith(column[:-1])]
    return [column] if column in runs.columns else []


def _deepest(depths: dict[str, int]) -> str:
    return max(depths, key=depths.get)


@needs("model", "epochwise_double_descent", "dd_recovery")
def claim_dd_deepest_only(runs, depths, p):
    fracs = {m: _frac(r.epochwise_double_descent) for m, r in _by_model(runs, depths)}
    measured = "; ".join(f"{m}: flag in {f:.0%} of seeds, recovery {_ms(runs[runs.model == m].dd_recovery)}"
                         for m, f in fracs.items())
    known = {m: f for m, f in fracs.items() if np.isfinite(f)}
    deepest = max(fracs, key=lambda m: depths.get(m, 0)) if fracs else None
    others = [f for m, f in known.items() if m != deepest]
    if deepest not in known or not others:
        verdict = INCONCLUSIVE
    elif known[deepest] >= p["majority"] and all(f < p["majority"] for f in others):
        verdict = SUPPORTED
    else:
        verdict = NOT_SUPPORTED
    return measured, f"flag in ≥ {p['majority']:.0%} of seeds (dd_depth and dd_recovery ≥ min_depth)", verdict


@needs("t_fit_clean", "t_fit_noisy", "final_accuracy_train_clean", "final_accuracy_train_noisy_assigned")
def claim_clean_first(runs, depths, p):
    tc, tn = runs.t_fit_clean.to_numpy(float), runs.t_fit_noisy.to_numpy(float)
    both = np.isfinite(tc) & np.isfinite(tn)
    gap = runs.final_accuracy_train_clean - runs.final_accuracy_train_noisy_assigned
    measured = (f"t_fit_clean {_ms(tc, '.0f')}, t_fit_noisy {_ms(tn, '.0f')}; clean fitted first in "
                f"{int((tc[both] < tn[both]).sum())} of {int(both.sum())} runs where both were fitted")
    if both.sum() == 0:
        fitted_clean_only = np.isfinite(tc) & ~np.isfinite(tn)
        verdict = SUPPORTED if fitted_clean_only.size and fitted_clean_only.all() else INCONCLUSIVE
        measured += f"; final clean − noisy accuracy {_ms(gap)}"
    else:
        verdict = SUPPORTED if (tc[both] < tn[both]).mean() >= p["majority"] else NOT_SUPPORTED
    return measured, f"t_fit_clean < t_fit_noisy in ≥ {p['majority']:.0%} of runs", verdict


@needs("model", "separation_first_minus_last", "separation_final_l1", "separation_final_last")
def claim_outer_separation(runs, depths, p):
    d = runs.separation_first_minus_last.to_numpy(float)
    rows = [f"{m}: cos(μ_clean, μ_noisy) layer 1 {_ms(r.separation_final_l1)} vs last {_ms(r.separation_final_last)}"
            for m, r in _by_model(runs, depths)]
    ok = np.isfinite(d)
    verdict = INCONCLUSIVE if not ok.any() else (
        SUPPORTED if (d[ok] > p["separation_gap"]).mean() >= p["majority"] else NOT_SUPPORTED)
    return "; ".join(rows), f"final-epoch cosine lower in the last than the first layer by > {p['separation_gap']}", verdict


@needs("model", "large_layer", "large_layer_fraction", "large_ratio", "onset_epoch_l*")
def claim_shallow_large_activation(runs, depths, p):
    model = _deepest(depths)
    deep = runs[runs.model == model]
    shallow = deep.large_layer_fraction <= p["shallow_fraction"]
    large = deep.large_ratio >= p["ratio_threshold"]
    located = deep[np.isfinite(deep.large_layer.to_numpy(float))]
    measured = (f"{model}: largest top/median ratio {_ms(deep.large_ratio, '.1f')} in layer(s) "
                f"{sorted(set(located.large_layer.astype(int)))} of {depths[model]}; "
                f"onset epoch there {_ms([r[f'onset_epoch_l{int(r.large_layer)}'] for _, r in located.iterrows()], '.0f')}")
    verdict = SUPPORTED if (shallow & large).mean() >= p["majority"] else (
        NOT_SUPPORTED if large.mean() >= p["majority"] else INCONCLUSIVE)
    return measured, (f"ratio ≥ {p['ratio_threshold']} in a layer in the first {p['shallow_fraction']:.0%} of the "
                      f"network (deepest model)"), verdict


@needs("model", "large_input_r2", "large_output_eta2")
def claim_input_not_output(runs, depths, p):
    model = _deepest(depths)
    deep = runs[runs.model == model]
    r2, eta = deep.large_input_r2.to_numpy(float), deep.large_output_eta2.to_numpy(float)
    ok = np.isfinite(r2) & np.isfinite(eta)
    measured = f"{model}, top unit at the last analysed epoch: input_r2 {_ms(r2)}, output_eta2 {_ms(eta)}"
    verdict = INCONCLUSIVE if not ok.any() else (
        SUPPORTED if (r2[ok] > eta[ok]).mean() >= p["majority"] else NOT_SUPPORTED)
    return measured, "input_r2 > max output_eta2 (assigned, original, predicted)", verdict


@needs("model", "benign_overfitting", "test_error_final", "test_error_min", "final_accuracy_train_noisy_assigned")
def claim_benign(runs, depths, p):
    model = _deepest(depths)
    deep = runs[runs.model == model]
    f = _frac(deep.benign_overfitting)
    measured = (f"{model}: benign in {f:.0%} of seeds; final test error {_ms(deep.test_error_final)} vs "
                f"first minimum {_ms(deep.test_error_min)}; noisy train accuracy {_ms(deep.final_accuracy_train_noisy_assigned)}")
    verdict = INCONCLUSIVE if not np.isfinite(f) else (SUPPORTED if f >= p["majority"] else NOT_SUPPORTED)
    return measured, "noisy fitted and final test error ≤ first minimum + benign_tolerance", verdict


@needs("routing_margin_correct", "routing_margin_incorrect")
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


@needs("epochwise_double_descent", "cka_late_change_l1", "cka_late_change_last", "cka_late_epoch")
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


@needs("loss", "dilation_final", "nc1_final")
def claim_dilation(runs, depths, p):
    ce = runs[runs.loss == "ce"]
    d = ce.dilation_final.to_numpy(float)
    ok = np.isfinite(d)
    measured = f"cross-entropy runs, final epoch: dilation {_ms(d)}; nc1 {_ms(ce.nc1_final)}"
    verdict = INCONCLUSIVE if not ok.any() else (SUPPORTED if (d[ok] > 1).mean() >= p["majority"] else NOT_SUPPORTED)
    return measured, "dilation (noisy / clean mean distance to class means) > 1", verdict


@needs("model", "loss", "dilation_final", "final_accuracy_test")
def claim_label_smoothing(runs, depths, p):
    criterion = "dilation(ls) < dilation(ce) for the same model"
    if not {"ce", "ls"} <= set(runs.loss):
        return "no label-smoothing runs in this study (see configs/label-smoothing.yaml)", criterion, INCONCLUSIVE
    parts, smaller = [], []
    for model, rows in _by_model(runs, depths):
        ce, ls = rows[rows.loss == "ce"], rows[rows.loss == "ls"]
        d_ce, d_ls = _mean(ce.dilation_final), _mean(ls.dilation_final)
        acc = _mean(ls.final_accuracy_test) - _mean(ce.final_accuracy_test)
        if np.isfinite(d_ce) and np.isfinite(d_ls):  # a model without both losses measured cannot decide
            smaller.append(d_ls < d_ce)
        parts.append(f"{model}: dilation ce {_ms(ce.dilation_final)} vs ls {_ms(ls.dilation_final)}, "
                     f"test accuracy ls − ce {acc:+.3f}")
    verdict = INCONCLUSIVE if not smaller else (SUPPORTED if np.mean(smaller) >= p["majority"] else NOT_SUPPORTED)
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
    """(claim, measured, criterion, verdict) per claim of CLAIMS.

    A claim whose columns are not in `runs` (its analysis was not run) is `inconclusive`, "not measured";
    otherwise it is called with those columns only, and whatever it raises propagates (a bug, not a verdict).
    """
    p = {**params, "ratio_threshold": ratio_threshold}
    rows = []
    for claim, fn in CLAIMS:
        missing = [c for c in fn.columns if not _matching(runs, c)]
        if missing:
            rows.append((claim, f"not measured (no column {', '.join(missing)} in tables/runs.csv)", "",
                         INCONCLUSIVE))
            continue
        columns = list(dict.fromkeys(c for declared in fn.columns for c in _matching(runs, declared)))
        rows.append((claim, *fn(runs[columns], depths, p)))
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
