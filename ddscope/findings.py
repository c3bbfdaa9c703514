"""findings.md: one row per claim of the papers, with the measured numbers and a verdict.

Every number comes from tables/runs.csv (the pipeline's own outputs). A verdict is
`supported`, `not supported` or `inconclusive` (the data cannot decide, e.g. too few runs fitted).

Each claim is a function (runs, depths, p) -> (measured, criterion, verdict) that declares the columns it reads
with @needs. A column absent from the table (its analysis was not run) makes the row "not measured"; NaN values
are missing data, handled by the claim; any exception is a bug and propagates. Claims across a sweep
(SWEEP_CLAIMS, only in a study with one) take (runs of the sweep's models, sweep, p), sweep: model -> {depth, width}.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ddscope.analyses.double_descent import dip_and_peak
from ddscope.analyses.large_activation import shallow_half

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
    """The model of greatest depth; among equally deep ones (a sweep) the last, i.e. the widest: the findings
    rule passes the models ordered by (depth, width)."""
    return max(reversed(list(depths)), key=depths.get)


def _pct(fraction: float) -> str:
    return f"{fraction:.0%}" if np.isfinite(fraction) else "n/a"


def _only_deepest(runs, depths, p, curve: str) -> tuple[str, str, str]:
    """(measured, criterion, verdict): the deepest model has `double_descent_<curve>` in ≥ majority of its seeds
    and every shallower model in < majority; inconclusive without the deepest model or any shallower one."""
    flag, label = f"double_descent_{curve}", curve.replace("_", " ")
    fracs = {m: _frac(r[flag]) for m, r in _by_model(runs, depths)}
    measured = "; ".join(
        f"{m}: flag in {_pct(fracs[m])} of seeds, {label} min → peak → final {_mean(r[f'{curve}_min']):.3g} → "
        f"{_mean(r[f'{curve}_peak']):.3g} → {_mean(r[f'{curve}_final']):.3g}" for m, r in _by_model(runs, depths))
    known = {m: f for m, f in fracs.items() if np.isfinite(f)}
    deepest = max(fracs, key=lambda m: depths.get(m, 0)) if fracs else None
    others = [f for m, f in known.items() if m != deepest]
    if deepest not in known or not others:
        verdict = INCONCLUSIVE
    elif known[deepest] >= p["majority"] and all(f < p["majority"] for f in others):
        verdict = SUPPORTED
    else:
        verdict = NOT_SUPPORTED
    criterion = (f"{flag} in ≥ {p['majority']:.0%} of the deepest model's seeds and in < {p['majority']:.0%} of "
                 f"every shallower model's")
    return measured, criterion, verdict


@needs("model", "double_descent_test_loss", "test_loss_min", "test_loss_peak", "test_loss_final")
def claim_dd_deepest_only(runs, depths, p):
    measured, criterion, verdict = _only_deepest(runs, depths, p, "test_loss")
    return measured, criterion + " (rise ≥ min_depth_loss × first minimum, fall ≥ min_depth_loss × peak)", verdict


@needs("model", "double_descent_test_error", "test_error_min", "test_error_peak", "test_error_final")
def claim_dd_deepest_only_test_error(runs, depths, p):
    measured, criterion, verdict = _only_deepest(runs, depths, p, "test_error")
    return measured, criterion + " (rise and fall ≥ min_depth)", verdict


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


@needs("model", "separation_trend_start", "separation_trend_l1", "separation_trend_last",
       "separation_trend_original_l1", "separation_trend_original_last", "separation_final_l1", "separation_final_last")
def claim_outer_separation(runs, depths, p):
    first, last = runs.separation_trend_l1.to_numpy(float), runs.separation_trend_last.to_numpy(float)
    rows = [f"{m}: change of cos(μ_clean, μ_noisy) from the end of phase 1 (epoch "
            f"{_ms(r.separation_trend_start, '.0f')}) to the last epoch, layer 1 {_ms(r.separation_trend_l1)} vs "
            f"last {_ms(r.separation_trend_last)} (noisy grouped by original label: "
            f"{_ms(r.separation_trend_original_l1)} vs {_ms(r.separation_trend_original_last)}); "
            f"final cos layer 1 {_ms(r.separation_final_l1)} vs last {_ms(r.separation_final_last)}"
            for m, r in _by_model(runs, depths)]
    ok = np.isfinite(first) & np.isfinite(last)
    separates = (last < -p["separation_gap"]) & (last < first)
    verdict = INCONCLUSIVE if not ok.any() else (
        SUPPORTED if separates[ok].mean() >= p["majority"] else NOT_SUPPORTED)
    return "; ".join(rows), (f"from the end of phase 1 to the last epoch, the last hidden layer's cosine (assigned "
                             f"labels) falls by > {p['separation_gap']} and more than layer 1's, in ≥ "
                             f"{p['majority']:.0%} of runs"), verdict


def _every_model(flags: dict[str, np.ndarray], majority: float) -> str:
    """Verdict of a statement the paper makes of every model, from per-run flags of each model's runs with data.

    A model supports it when its flags hold in ≥ majority of those runs; one model that does not refutes it; a
    model without any run with data, and nothing refuting, leaves it inconclusive (as does an empty study).
    """
    holds = {m: f.mean() >= majority for m, f in flags.items() if f.size}
    if not all(holds.values()):
        return NOT_SUPPORTED
    return SUPPORTED if holds and len(holds) == len(flags) else INCONCLUSIVE


def _layers(values) -> list[int]:
    return sorted({int(v) for v in np.asarray(values, dtype=float) if np.isfinite(v)})


def _per_layer(runs: pd.DataFrame, name: str, layers: range) -> str:
    """`layers 1–3: 3.1, 25.3, 4.0`: the mean over runs of the per-layer column `name_l<k>` of each layer."""
    span = f"layer {layers[0]}" if len(layers) == 1 else f"layers {layers[0]}–{layers[-1]}"
    return f"{span}: " + ", ".join(f"{_mean(runs[f'{name}_l{k}']):.1f}" for k in layers)


@needs("model", "large_layer", "large_ratio", "large_epoch", "large_ratio_init", "large_second_to_top",
       "large_deep_ratio", "ratio_max_l*")
def claim_shallow_large_activation(runs, depths, p):
    threshold, parts, flags = p["ratio_threshold"], [], {}
    for model, r in _by_model(runs, depths):
        depth = depths[model]
        n_shallow = shallow_half(depth)
        shallow, deep = r.large_ratio.to_numpy(float), r.large_deep_ratio.to_numpy(float)
        # the paper locates it in the shallow layers; a larger deep-half ratio is reported, not held against it
        flags[model] = (shallow >= threshold)[np.isfinite(shallow)]
        halves = [_per_layer(r, "ratio_max", ks) for ks in (range(1, n_shallow + 1), range(n_shallow + 1, depth + 1))
                  if len(ks)]
        parts.append(f"{model}: trained max top/median ratio, {', '.join(halves)} (seed means); shallow maximum "
                     f"{_ms(shallow, '.1f')} in layer {_layers(r.large_layer)} at epoch {_ms(r.large_epoch, '.0f')}, "
                     f"{_ms(r.large_ratio_init, '.1f')} at initialisation, second unit / top "
                     f"{_ms(r.large_second_to_top, '.2f')}, deep half's maximum {_ms(deep, '.1f')}; ≥ {threshold:g} in "
                     f"{int(flags[model].sum())} "
                     f"of {flags[model].size} seeds")
    criterion = (f"every model, in ≥ {p['majority']:.0%} of its seeds: the largest trained-epoch ratio of the "
                 f"shallow half (layers 1…⌈L/2⌉) ≥ {threshold:g} (the deep half's and epoch 0's reported, "
                 f"not judged)")
    return "; ".join(parts), criterion, _every_model(flags, p["majority"])


@needs("model", "large_layer", "large_ratio", "large_analysed_epoch", "large_input_r2", "large_output_eta2",
       "large_same_unit")
def claim_input_not_output(runs, depths, p):
    parts, flags = [], {}
    for model, r in _by_model(runs, depths):
        r2, eta = r.large_input_r2.to_numpy(float), r.large_output_eta2.to_numpy(float)
        ok = np.isfinite(r2) & np.isfinite(eta)
        flags[model] = (r2 > eta)[ok]
        same = r.large_same_unit.to_numpy(float)
        parts.append(f"{model}: top unit of shallow layer {_layers(r.large_layer)}, ratio {_ms(r.large_ratio, '.1f')}, "
                     f"at analysed epoch {_ms(r.large_analysed_epoch, '.0f')}: input R² {_ms(r2)} vs output η² "
                     f"{_ms(eta)}; input > output in {int(flags[model].sum())} of {flags[model].size} seeds; the unit "
                     f"of the ratio's peak in {int(np.nansum(same))} of {int(np.isfinite(same).sum())}")
    criterion = (f"every model, in ≥ {p['majority']:.0%} of its seeds: input_r2 > max output_eta2 (assigned, "
                 f"original, predicted) of the shallow half's top unit, at the analysed epoch nearest its trained peak")
    return "; ".join(parts), criterion, _every_model(flags, p["majority"])


@needs("model", "t_fit_noisy", "regeneralises_after_fit", "benign_overfitting", "test_error_fall_after_fit",
       "dd_depth", "test_error_final", "test_error_min")
def claim_benign(runs, depths, p):
    """The paper's wording (test error improves after the noise is fitted), judged on the seeds of the deepest
    model that fitted the noise; the stricter return to the first minimum is reported beside it."""
    model = _deepest(depths)
    deep = runs[runs.model == model]
    fitted = deep[np.isfinite(deep.t_fit_noisy.to_numpy(float))]
    f = _frac(fitted.regeneralises_after_fit)
    measured = (f"{model}: noisy labels fitted in {len(fitted)} of {len(deep)} seeds, at epoch "
                f"{_ms(fitted.t_fit_noisy, '.0f')}; test error falls after the fit by "
                f"{_ms(fitted.test_error_fall_after_fit)} (it rose by {_ms(fitted.dd_depth)}): re-generalises "
                f"in {_pct(f)}; returns to the first minimum in {_pct(_frac(fitted.benign_overfitting))} "
                f"(final {_ms(fitted.test_error_final)} vs first minimum {_ms(fitted.test_error_min)})")
    verdict = INCONCLUSIVE if not np.isfinite(f) else (SUPPORTED if f >= p["majority"] else NOT_SUPPORTED)
    criterion = (f"regeneralises_after_fit (noise fitted after the first minimum, test error falls ≥ min_depth "
                 f"afterwards) in ≥ {p['majority']:.0%} of the deepest model's seeds that fitted the noise")
    return measured, criterion, verdict


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


def _pooled_std(*groups: np.ndarray) -> float:
    """Within-group standard deviation pooled over the groups (NaN without a degree of freedom)."""
    dof = sum(g.size - 1 for g in groups if g.size)
    ss = sum(((g - g.mean()) ** 2).sum() for g in groups if g.size)
    return float(np.sqrt(ss / dof)) if dof > 0 else float("nan")


@needs("model", "double_descent_test_loss", "cka_late_change_l1", "cka_late_change_last", "cka_late_epoch")
def claim_late_change_deeper(runs, depths, p):
    """Runs with double descent (test loss, the paper's curve) against runs without: the claim is about double
    descent, so the last-minus-first-layer late change must be larger with it, by more than the seed-to-seed
    spread (pooled within-group standard deviation); inconclusive while either group is empty."""
    gap = (runs.cka_late_change_last - runs.cka_late_change_l1).to_numpy(float)
    flag = runs.double_descent_test_loss.to_numpy(float)
    ok = np.isfinite(gap) & np.isfinite(flag)
    groups = {True: ok & (flag > 0.5), False: ok & (flag <= 0.5)}
    with_dd, without = gap[groups[True]], gap[groups[False]]
    diff, spread = _mean(with_dd) - _mean(without), _pooled_std(with_dd, without)

    def models(mask) -> str:
        counts = runs.model[mask].value_counts()
        return ", ".join(f"{m}×{counts[m]}" for m in sorted(counts.index, key=lambda m: depths.get(m, 0))) or "none"

    measured = (f"1 − CKA(epoch {_ms(runs.cka_late_epoch, '.0f')}, final), last minus first hidden layer: runs with "
                f"double descent of the test loss ({models(groups[True])}) {_ms(with_dd)}, without "
                f"({models(groups[False])}) {_ms(without)}; difference {diff:+.3f}, pooled spread {spread:.3f}")
    if not (with_dd.size and without.size and np.isfinite(spread)):
        verdict = INCONCLUSIVE
    else:
        verdict = SUPPORTED if diff > spread else NOT_SUPPORTED
    return measured, ("late change of the last minus the first hidden layer larger in runs with double descent "
                      "(double_descent_test_loss) than without, by more than the pooled within-group std"), verdict


@needs("loss", "collapse_trend_start", "memorization_trend", "dilation_trend", "memorization_final",
       "dilation_final")
def claim_dilation(runs, depths, p):
    ce = runs[runs.loss == "ce"]
    mem, dil = ce.memorization_trend.to_numpy(float), ce.dilation_trend.to_numpy(float)
    memorised = np.isfinite(mem) & np.isfinite(dil) & (mem > 0)
    measured = (f"cross-entropy runs, last hidden layer, change from the end of phase 1 (epoch "
                f"{_ms(ce.collapse_trend_start, '.0f')}) to the last epoch: memorization {_ms(mem)} (final "
                f"{_ms(ce.memorization_final)}), dilation {_ms(dil)} (final {_ms(ce.dilation_final)}); dilation grew "
                f"in {int((dil[memorised] > 0).sum())} of the {int(memorised.sum())} runs whose memorization grew")
    verdict = INCONCLUSIVE if not memorised.any() else (
        SUPPORTED if (dil[memorised] > 0).mean() >= p["majority"] else NOT_SUPPORTED)
    return measured, (f"dilation grows while memorization grows (end of phase 1 → last epoch), in ≥ "
                      f"{p['majority']:.0%} of the runs whose memorization grows"), verdict


@needs("model", "loss", "dilation_final", "memorization_final", "final_accuracy_test")
def claim_label_smoothing(runs, depths, p):
    criterion = f"final dilation(ls) < dilation(ce), mean over seeds, in ≥ {p['majority']:.0%} of the models"
    if not {"ce", "ls"} <= set(runs.loss):
        return "no label-smoothing runs in this study (see configs/label-smoothing.yaml)", criterion, INCONCLUSIVE
    parts, smaller = [], []
    for model, rows in _by_model(runs, depths):
        ce, ls = rows[rows.loss == "ce"], rows[rows.loss == "ls"]
        d_ce, d_ls = _mean(ce.dilation_final), _mean(ls.dilation_final)
        acc = _mean(ls.final_accuracy_test) - _mean(ce.final_accuracy_test)
        if np.isfinite(d_ce) and np.isfinite(d_ls):  # a model without both losses measured cannot decide
            smaller.append(d_ls < d_ce)
        parts.append(f"{model}: dilation ce {_ms(ce.dilation_final)} vs ls {_ms(ls.dilation_final)}, memorization "
                     f"ce {_ms(ce.memorization_final)} vs ls {_ms(ls.memorization_final)}, test accuracy ls − ce "
                     f"{acc:+.3f}")
    verdict = INCONCLUSIVE if not smaller else (SUPPORTED if np.mean(smaller) >= p["majority"] else NOT_SUPPORTED)
    return "; ".join(parts), criterion, verdict


# (claim, the paper's statement it tests, quoted, with its source, the function that judges it)
CLAIMS = [
    ("Only the deepest model shows epoch-wise double descent (test loss)",
     "“epoch-wise double descent, which is delayed generalization following overfitting” (Kubo et al. 2026, "
     "abstract); the body shows it in the test loss of MLP7 and not of MLP5 or MLP3 (not quoted: only the abstract "
     "is available here)", claim_dd_deepest_only),
    ("Only the deepest model shows epoch-wise double descent in the test error",
     "not stated by the paper; ddscope's test-error counterpart of row 1", claim_dd_deepest_only_test_error),
    ("Clean samples are learned before noisy ones",
     "“noisy data were learned after clean data” (Kubo et al. 2026, abstract)", claim_clean_first),
    ("Clean and noisy signals separate more in outer layers as learning goes on",
     "“noisy data were learned after clean data, and as learning progressed, their corresponding internal "
     "activations became increasingly separated in outer layers” (Kubo et al. 2026, abstract)",
     claim_outer_separation),
    ("A single very large activation appears in a shallow layer",
     "“a single, very large activation emerged in the shallow layer across all models” "
     "(Kubo et al. 2026, abstract)", claim_shallow_large_activation),
    ("The large activation follows input patterns rather than output labels",
     "“The magnitude of large activation correlated with input patterns but not with output patterns” "
     "(Kubo et al. 2026, abstract)", claim_input_not_output),
    ("The deepest model re-generalises after fitting the noisy labels (benign overfitting)",
     "“the model achieved strong re-generalization on test data even after perfectly fitting noisy training data "
     "during the double descent phase” (Kubo et al. 2026, abstract)", claim_benign),
    ("Correct test predictions align with clean signals, wrong ones with noisy signals",
     "“this enabled the model to overfit only noisy data” (Kubo et al. 2026, abstract); the routing of test samples "
     "to clean or noisy signals is ddscope's reading of it, not a quoted claim", claim_routing),
    ("Deeper layers change more late in training when epoch-wise double descent occurs",
     "“representations at the deeper layers evolve much more in the training when an epoch-wise double descent "
     "occurs” (Sharon & Dar 2024, arXiv 2405.17377, abstract)", claim_late_change_deeper),
    ("Memorising the noisy labels dilates the clean classes in the last hidden layer",
     "“Empirical evidence suggests that the memorization of noisy data points leads to a degradation (dilation) of "
     "the neural collapse.” (Nguyen et al. 2023, Memorization-Dilation, abstract)", claim_dilation),
    ("Label smoothing dilates the clean classes less than cross-entropy",
     "“Our proofs reveal why label smoothing, a modification of cross-entropy empirically observed to produce a "
     "regularization effect, leads to improved generalization in classification tasks.” (Nguyen et al. 2023, "
     "Memorization-Dilation, abstract)", claim_label_smoothing),
]


# --- across a sweep (config `sweep`: depth × width): only in a study with one ------------------------------
# Each takes (runs of the sweep's models, sweep: model -> {depth, width}, p) and reads the curves over width of one
# depth and (noise, loss) variant: mean over seeds per width, widths ascending.


def _width_curves(runs: pd.DataFrame, sweep: dict, column: str):
    """(`depth 3 · sym20 · ce`, widths, mean of `column` over seeds per width) per depth and variant."""
    grid = pd.DataFrame({"model": list(sweep), "depth": [g["depth"] for g in sweep.values()],
                         "width": [g["width"] for g in sweep.values()]})
    table = runs.merge(grid, on="model")
    means = table.groupby(["depth", "noise", "loss", "width"])[column].agg(_mean).reset_index()
    for (depth, noise, loss), rows in means.groupby(["depth", "noise", "loss"], sort=True):
        rows = rows.sort_values("width")
        yield f"depth {depth} · {noise} · {loss}", rows.width.to_numpy(int), rows[column].to_numpy(float)


@needs("model", "noise", "loss", "test_error_final")
def claim_model_wise_dd(runs, sweep, p):
    """The final test error over width rises and falls again by min_depth (the epoch-wise rule, on widths)."""
    parts, flags = [], []
    for label, widths, error in _width_curves(runs, sweep, "test_error_final"):
        ok = np.isfinite(error)
        w, e = widths[ok], error[ok]
        curve = ", ".join(f"{wi}: {ei:.3f}" for wi, ei in zip(w, e))
        if e.size < 3:
            parts.append(f"{label}: final test error at widths {curve or 'n/a'} (needs 3 widths)")
            continue
        i, j = dip_and_peak(e, p["min_depth"])
        rise, fall = e[j] - e[i], e[j] - e[-1]
        flags.append(rise >= p["min_depth"] and fall >= p["min_depth"])
        parts.append(f"{label}: final test error at widths {curve}; minimum {e[i]:.3f} (width {w[i]}), "
                     f"peak {e[j]:.3f} (width {w[j]}), widest {e[-1]:.3f}")
    verdict = INCONCLUSIVE if not flags else (SUPPORTED if np.mean(flags) >= p["majority"] else NOT_SUPPORTED)
    return ("; ".join(parts), f"final test error (mean over seeds) rises by ≥ {p['min_depth']} from its minimum over "
            "narrower widths to a peak, and falls by ≥ the same to the widest width", verdict)


@needs("model", "noise", "loss", "double_descent_test_error")
def claim_epochwise_in_widest(runs, sweep, p):
    """Epoch-wise double descent of the test error in the widest model of each depth, not in the narrowest."""
    parts, flags = [], []
    for label, widths, frac in _width_curves(runs, sweep, "double_descent_test_error"):
        with_dd = [int(w) for w, f in zip(widths, frac) if np.isfinite(f) and f >= p["majority"]]
        parts.append(f"{label}: flag in ≥ {p['majority']:.0%} of seeds at widths {with_dd or 'none'} of "
                     f"{[int(w) for w in widths]}")
        if widths.size >= 2 and np.isfinite(frac[[0, -1]]).all():
            flags.append(frac[-1] >= p["majority"] and frac[0] < p["majority"])
    verdict = INCONCLUSIVE if not flags else (SUPPORTED if np.mean(flags) >= p["majority"] else NOT_SUPPORTED)
    return ("; ".join(parts), f"double_descent_test_error in ≥ {p['majority']:.0%} of seeds at the widest width and "
            "in fewer at the narrowest", verdict)


@needs("model", "noise", "loss", "benign_overfitting", "regeneralises_after_fit", "test_error_final",
       "test_error_min")
def claim_returns_where(runs, sweep, p):
    """Where in depth × width the final test error comes back to the first minimum with the noise fitted."""
    gaps = {label: (w, g) for label, w, g in _width_curves(runs.assign(
        gap=runs.test_error_final - runs.test_error_min), sweep, "gap")}
    regen = {label: f for label, _, f in _width_curves(runs, sweep, "regeneralises_after_fit")}
    parts, known, returns = [], False, []
    for label, widths, frac in _width_curves(runs, sweep, "benign_overfitting"):
        known |= bool(np.isfinite(frac).any())
        where = [int(w) for w, f in zip(widths, frac) if np.isfinite(f) and f >= p["majority"]]
        again = [int(w) for w, f in zip(widths, regen[label]) if np.isfinite(f) and f >= p["majority"]]
        returns += where
        gap = ", ".join(f"{w}: {g:+.3f}" for w, g in zip(*gaps[label]) if np.isfinite(g))
        parts.append(f"{label}: back to the first minimum at widths {where or 'none'}, re-generalises after "
                     f"the fit at widths {again or 'none'}; final − first minimum {gap or 'n/a'}")
    verdict = INCONCLUSIVE if not known else (SUPPORTED if returns else NOT_SUPPORTED)
    return ("; ".join(parts), f"benign_overfitting (noisy labels fitted, final test error ≤ first minimum + "
            f"benign_tolerance) in ≥ {p['majority']:.0%} of seeds at some depth × width", verdict)


NAKKIRAN = "(Nakkiran et al. 2019, Deep Double Descent, arXiv 1912.02292, abstract)"
SWEEP_CLAIMS = [
    ("Model-wise double descent: at the final epoch the test error over width rises to a peak and falls again",
     f"“as we increase model size, performance first gets worse and then gets better” {NAKKIRAN}",
     claim_model_wise_dd),
    ("Epoch-wise double descent appears in the widest models, not in the narrowest",
     f"“double descent occurs not just as a function of model size, but also as a function of the number of "
     f"training epochs” {NAKKIRAN}", claim_epochwise_in_widest),
    ("The final test error comes back to the first minimum at some depth × width (stricter than re-generalising)",
     "“the model achieved strong re-generalization on test data even after perfectly fitting noisy training data "
     "during the double descent phase” (Kubo et al. 2026, abstract)", claim_returns_where),
]


def findings_rows(runs: pd.DataFrame, depths: dict[str, int], params: dict, ratio_threshold: float,
                  sweep: dict[str, dict] | None = None) -> list[tuple]:
    """(claim, source, measured, criterion, verdict) per claim of CLAIMS, then, in a study with a sweep
    (`sweep`: model -> {depth, width}, ddscope.config.sweep_models), per claim of SWEEP_CLAIMS on its models' runs.

    A claim whose columns are not in `runs` (its analysis was not run) is `inconclusive`, "not measured";
    otherwise it is called with those columns only, and whatever it raises propagates (a bug, not a verdict).
    """
    p = {**params, "ratio_threshold": ratio_threshold}
    claims = [(claim, source, fn, runs, depths) for claim, source, fn in CLAIMS]
    if sweep:
        swept = runs[runs.model.isin(list(sweep))]
        claims += [(claim, source, fn, swept, sweep) for claim, source, fn in SWEEP_CLAIMS]
    rows = []
    for claim, source, fn, table, models in claims:
        missing = [c for c in fn.columns if not _matching(table, c)]
        if missing:
            rows.append((claim, source, f"not measured (no column {', '.join(missing)} in tables/runs.csv)", "",
                         INCONCLUSIVE))
            continue
        columns = list(dict.fromkeys(c for declared in fn.columns for c in _matching(table, declared)))
        rows.append((claim, source, *fn(table[columns], models, p)))
    return rows


def findings_markdown(title: str, rows: list[tuple], extra_rows: list[str] = (),
                      sources: str = "tables/runs.csv") -> str:
    """findings.md: `rows` (claim, source, measured, criterion, verdict) numbered 1, 2, … for CLAIMS and M1, M2, …
    for the SWEEP_CLAIMS that follow them, then `extra_rows` (ready table lines with the same six columns)."""
    lines = [f"# Findings: {title}", "",
             f"Generated by the `findings` rule from {sources}; numbers are mean ± std over runs (n).", "",
             "| # | claim | the paper says | measured | criterion | verdict |", "|---|---|---|---|---|---|"]
    for i, (claim, source, measured, criterion, verdict) in enumerate(rows, 1):
        number = i if i <= len(CLAIMS) else f"M{i - len(CLAIMS)}"
        lines.append(f"| {number} | {claim} | {source} | {measured} | {criterion} | **{verdict}** |")
    lines += list(extra_rows)
    return "\n".join(lines) + "\n"


def table_rows(markdown: str) -> list[str]:
    """The body rows of a findings table fragment (e.g. the threshold study's `| T1 | … |` rows)."""
    return [line for line in markdown.splitlines()
            if line.startswith("| ") and not line.startswith("| # ") and not line.startswith("|---")]
