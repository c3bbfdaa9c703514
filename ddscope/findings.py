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


def margin_verdict(values, threshold: float, z: float) -> tuple[str, str]:
    """The margin rule: (verdict, numbers) of the statement "the per-seed effect `values` exceeds `threshold`".

    supported when mean − z·SE > threshold, not supported when mean + z·SE < threshold, inconclusive when the
    interval holds the threshold or fewer than two values are finite. SE is the standard error of the mean over
    seeds, std (ddof 1) / √n: a claim is decided only by an effect that clears the spread over seeds.
    """
    a = np.asarray(values, dtype=float)
    a = a[np.isfinite(a)]
    if a.size < 2:
        return INCONCLUSIVE, f"n={a.size}, too few seeds for a spread"
    mean, se = float(a.mean()), float(a.std(ddof=1) / np.sqrt(a.size))
    lo, hi = mean - z * se, mean + z * se
    verdict = SUPPORTED if lo > threshold else NOT_SUPPORTED if hi < threshold else INCONCLUSIVE
    return verdict, f"{mean:.3g} [{lo:.3g}, {hi:.3g}] vs {threshold:.3g}"


def all_of(verdicts) -> str:
    """Verdict of a conjunction: not supported if any part is, supported if every part is (and there is one)."""
    verdicts = list(verdicts)
    if NOT_SUPPORTED in verdicts:
        return NOT_SUPPORTED
    return SUPPORTED if verdicts and all(v == SUPPORTED for v in verdicts) else INCONCLUSIVE


def negated(verdict: str) -> str:
    return {SUPPORTED: NOT_SUPPORTED, NOT_SUPPORTED: SUPPORTED}.get(verdict, INCONCLUSIVE)


def _margin_text(p) -> str:
    return f"mean over seeds ± {p['margin_se']:g} SE (std/√n) beyond the threshold, else inconclusive"


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


def noise_rate(tag) -> float:
    """30.0 for `sym30`, 0.0 for `sym0` (the percentage in a run's noise tag)."""
    return float(str(tag).lstrip("abcdefghijklmnopqrstuvwxyz") or "nan")


def noisy_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs trained with label noise (the claims are about them; 0 %-noise runs are their controls)."""
    return runs[runs.noise.map(noise_rate) > 0]


def control_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The 0 %-noise runs: the same models and seeds without the noise."""
    return runs[runs.noise.map(noise_rate) == 0]


def _recovery_verdicts(runs, depths, p, curve: str) -> dict:
    """model -> (verdict of "phase 3 takes back ≥ min_recovery of the bump", numbers), from the per-seed
    `<curve>_recovery_ratio` (0 where the rise or the fall does not clear the curve's noise)."""
    return {m: margin_verdict(r[f"{curve}_recovery_ratio"], p["min_recovery"], p["margin_se"])
            for m, r in _by_model(runs, depths)}


def _only_deepest(runs, depths, p, curve: str) -> tuple[str, str, str]:
    """(measured, criterion, verdict): the deepest model's recovery clears min_recovery and every shallower
    model's falls short of it, each by the margin rule; the 0 %-noise runs reported as the control."""
    noisy, control = noisy_runs(runs), control_runs(runs)
    label = curve.replace("_", " ")
    judged = _recovery_verdicts(noisy, depths, p, curve)
    controls = _recovery_verdicts(control, depths, p, curve)

    def describe(m, r, verdict_numbers):
        verdict, numbers = verdict_numbers
        return (f"{m}: {label} min → peak → final {_mean(r[f'{curve}_min']):.3g} → {_mean(r[f'{curve}_peak']):.3g} → "
                f"{_mean(r[f'{curve}_final']):.3g}, recovery after the fit {numbers} ({verdict}; flag in "
                f"{_pct(_frac(r[f'double_descent_{curve}']))} of seeds)")

    measured = "; ".join(describe(m, r, judged[m]) for m, r in _by_model(noisy, depths))
    if controls:
        measured += "; 0 % noise: " + ", ".join(f"{m} recovery {numbers}" for m, (_, numbers) in controls.items())
    deepest = max(judged, key=lambda m: depths.get(m, 0)) if judged else None
    shallower = [v for m, (v, _) in judged.items() if m != deepest]
    if deepest is None or not shallower:
        verdict = INCONCLUSIVE
    else:
        verdict = all_of([judged[deepest][0], *map(negated, shallower)])
    criterion = (f"{curve}_recovery_ratio (fall after the noisy labels are fitted ÷ rise; 0 unless both clear "
                 f"noise_sigmas × √2 × the curve's noise) ≥ min_recovery = {p['min_recovery']:g} in the deepest model "
                 f"and < it in every shallower one, runs with noise; {_margin_text(p)}")
    return measured, criterion, verdict


@needs("model", "noise", "double_descent_test_loss", "test_loss_min", "test_loss_peak", "test_loss_final",
       "test_loss_recovery_ratio")
def claim_dd_deepest_only(runs, depths, p):
    return _only_deepest(runs, depths, p, "test_loss")


@needs("model", "noise", "double_descent_test_error", "test_error_min", "test_error_peak", "test_error_final",
       "test_error_recovery_ratio")
def claim_dd_deepest_only_test_error(runs, depths, p):
    return _only_deepest(runs, depths, p, "test_error")


def _per_model(runs, depths, p, values_of, threshold: float) -> dict:
    """model -> (verdict, numbers) of the margin rule on `values_of(rows)` (one value per seed)."""
    return {m: margin_verdict(values_of(r), threshold, p["margin_se"]) for m, r in _by_model(runs, depths)}


def _listed(verdicts: dict) -> str:
    return "; ".join(f"{m}: {numbers} ({verdict})" for m, (verdict, numbers) in verdicts.items())


@needs("model", "noise", "t_fit_clean", "t_fit_noisy", "t_noisy_onset", "clean_learned_at_onset")
def claim_clean_first(runs, depths, p):
    """The order of learning: when the noisy labels start being fitted (their accuracy rises above chance by its
    binomial noise), most of the clean labels' accuracy gain has already been made."""
    noisy = noisy_runs(runs)
    verdicts = _per_model(noisy, depths, p, lambda r: r.clean_learned_at_onset, p["clean_first_fraction"])
    measured = (f"share of the clean train accuracy's gain reached at the onset of noisy-label fitting: "
                f"{_listed(verdicts)}; onset epoch {_ms(noisy.t_noisy_onset, '.0f')}, t_fit_clean "
                f"{_ms(noisy.t_fit_clean, '.0f')}, t_fit_noisy {_ms(noisy.t_fit_noisy, '.0f')}")
    criterion = (f"every model: clean_learned_at_onset > clean_first_fraction = {p['clean_first_fraction']:g} "
                 f"(onset: smoothed noisy-label accuracy > 1/K + noise_sigmas binomial SE of the noisy set); "
                 f"{_margin_text(p)}")
    return measured, criterion, all_of(v for v, _ in verdicts.values())


@needs("model", "noise", "separation_trend_start", "separation_trend_l1", "separation_trend_last",
       "separation_trend_original_l1", "separation_trend_original_last", "separation_final_l1", "separation_final_last",
       "separation_final_original_l1", "separation_final_original_last")
def claim_outer_separation(runs, depths, p):
    """Noisy probes grouped by their original label (the grouping under which memorisation does not force the
    answer): the last hidden layer's cosine falls over learning, and by more than the first layer's."""
    noisy = noisy_runs(runs)
    falls = _per_model(noisy, depths, p, lambda r: -r.separation_trend_original_last, p["separation_gap"])
    outer = _per_model(noisy, depths, p, lambda r: r.separation_trend_original_l1 - r.separation_trend_original_last,
                       0.0)
    rows = [f"{m}: from the end of phase 1 (epoch {_ms(r.separation_trend_start, '.0f')}) to the last epoch, the "
            f"cosine (original labels) falls by {falls[m][1]} in the last layer ({falls[m][0]}), by more than in "
            f"layer 1 by {outer[m][1]} ({outer[m][0]}); final cosine layer 1 → last, original labels "
            f"{_mean(r.separation_final_original_l1):.3f} → {_mean(r.separation_final_original_last):.3f}, assigned "
            f"labels {_mean(r.separation_final_l1):.3f} → {_mean(r.separation_final_last):.3f} (change "
            f"{_mean(r.separation_trend_l1):+.3f} → {_mean(r.separation_trend_last):+.3f})"
            for m, r in _by_model(noisy, depths)]
    criterion = (f"every model: the last hidden layer's cos(μ_clean, μ_noisy by original label) falls by > "
                 f"separation_gap = {p['separation_gap']:g} from the end of phase 1 to the last epoch, and by more "
                 f"than layer 1's; {_margin_text(p)}")
    return "; ".join(rows), criterion, all_of(v for d in (falls, outer) for v, _ in d.values())


def _layers(values) -> list[int]:
    return sorted({int(v) for v in np.asarray(values, dtype=float) if np.isfinite(v)})


def _per_layer(runs: pd.DataFrame, name: str, layers: range) -> str:
    """`layers 1–3: 3.1, 25.3, 4.0`: the mean over runs of the per-layer column `name_l<k>` of each layer."""
    span = f"layer {layers[0]}" if len(layers) == 1 else f"layers {layers[0]}–{layers[-1]}"
    return f"{span}: " + ", ".join(f"{_mean(runs[f'{name}_l{k}']):.1f}" for k in layers)


def _large_activation_verdicts(runs, depths, p) -> dict:
    """model -> verdict of "a large activation in the shallow half": the trained ratio clears ratio_threshold,
    and exceeds the same layer's ratio at initialisation (the untrained control), by the margin rule."""
    out = {}
    for model, r in _by_model(runs, depths):
        trained = margin_verdict(r.large_ratio, p["ratio_threshold"], p["margin_se"])[0]
        grown = margin_verdict(r.large_ratio - r.large_ratio_init, 0.0, p["margin_se"])[0]
        out[model] = all_of([trained, grown])
    return out


@needs("model", "noise", "large_layer", "large_ratio", "large_epoch", "large_ratio_init", "large_second_to_top",
       "large_deep_ratio", "ratio_max_l*")
def claim_shallow_large_activation(runs, depths, p):
    threshold, parts = p["ratio_threshold"], []
    noisy = noisy_runs(runs)
    verdicts = _large_activation_verdicts(noisy, depths, p)
    for model, r in _by_model(noisy, depths):
        depth = depths[model]
        n_shallow = shallow_half(depth)
        halves = [_per_layer(r, "ratio_max", ks) for ks in (range(1, n_shallow + 1), range(n_shallow + 1, depth + 1))
                  if len(ks)]
        parts.append(f"{model}: trained max top/median ratio, {', '.join(halves)} (seed means); shallow maximum "
                     f"{margin_verdict(r.large_ratio, threshold, p['margin_se'])[1]} in layer {_layers(r.large_layer)} "
                     f"at epoch {_ms(r.large_epoch, '.0f')}, {_ms(r.large_ratio_init, '.1f')} at initialisation, "
                     f"second unit / top {_ms(r.large_second_to_top, '.2f')}, deep half's maximum "
                     f"{_ms(r.large_deep_ratio, '.1f')} ({verdicts[model]})")
    criterion = (f"every model: the largest trained-epoch ratio of the shallow half (layers 1…⌈L/2⌉) > "
                 f"ratio_threshold = {threshold:g} and > its value at initialisation; {_margin_text(p)}")
    return "; ".join(parts), criterion, all_of(verdicts.values())


@needs("model", "noise", "large_layer", "large_ratio", "large_ratio_init", "large_analysed_epoch", "large_input_r2",
       "large_output_r2", "large_typical_input_r2", "large_typical_output_r2")
def claim_input_not_output(runs, depths, p):
    """Judged only for a model whose large activation row 5 finds: the top unit's input R² exceeds its output R²
    (both cross-validated ridge fits, like with like), and by more than for the layer's typical units."""
    noisy = noisy_runs(runs)
    exists = _large_activation_verdicts(noisy, depths, p)
    parts, verdicts = [], []
    for model, r in _by_model(noisy, depths):
        top = r.large_input_r2 - r.large_output_r2
        special = top - (r.large_typical_input_r2 - r.large_typical_output_r2)
        follows, follows_text = margin_verdict(top, 0.0, p["margin_se"])
        beyond, beyond_text = margin_verdict(special, 0.0, p["margin_se"])
        verdict = all_of([follows, beyond]) if exists[model] == SUPPORTED else INCONCLUSIVE
        verdicts.append(verdict)
        parts.append(f"{model}: top unit of shallow layer {_layers(r.large_layer)} at epoch "
                     f"{_ms(r.large_analysed_epoch, '.0f')}: input R² {_ms(r.large_input_r2)} vs output R² "
                     f"{_ms(r.large_output_r2)}, difference {follows_text}; typical units {_ms(r.large_typical_input_r2)}"
                     f" vs {_ms(r.large_typical_output_r2)}, top minus typical {beyond_text}; "
                     + (f"{verdict}" if exists[model] == SUPPORTED else f"not judged: row 5 finds no large activation "
                        f"({exists[model]})"))
    criterion = (f"every model with a large activation (row 5): input R² − output R² of the shallow top unit > 0 "
                 f"(cross-validated ridge on the input / on the one-hot label, max over assigned, original, "
                 f"predicted) and larger than that of the layer's typical units (those nearest the median unit "
                 f"max); {_margin_text(p)}")
    return "; ".join(parts), criterion, all_of(verdicts)


@needs("model", "noise", "t_fit_noisy", "phase2_end", "regeneralises_after_fit", "benign_overfitting",
       "test_error_fall_after_fit", "test_error_recovery_ratio", "dd_depth", "test_error_final", "test_error_min")
def claim_benign(runs, depths, p):
    """The paper's wording (the test error falls again after the noise is fitted), on the deepest model's noisy
    runs: the share of the rise taken back after the fit; the stricter return to the first minimum beside it."""
    model = _deepest(depths)
    deep = noisy_runs(runs)
    deep = deep[deep.model == model]
    # the premise is a perfect fit of the noise: a run that never fitted it is left out; one that fitted it
    # before the first minimum (no phase 2) takes nothing back after a fit
    fitted = np.isfinite(deep.t_fit_noisy.to_numpy(float))
    share = deep.test_error_recovery_ratio.where(np.isfinite(deep.phase2_end.to_numpy(float)), 0.0).where(fitted)
    verdict, numbers = margin_verdict(share, p["min_recovery"], p["margin_se"])
    measured = (f"{model}: noisy labels fitted in {int(np.isfinite(deep.t_fit_noisy.to_numpy(float)).sum())} of "
                f"{len(deep)} seeds, at epoch {_ms(deep.t_fit_noisy, '.0f')}; test error rose by {_ms(deep.dd_depth)} "
                f"and fell after the fit by {_ms(deep.test_error_fall_after_fit)}: share taken back {numbers}; "
                f"flag in {_pct(_frac(deep.regeneralises_after_fit))}; back to the first minimum in "
                f"{_pct(_frac(deep.benign_overfitting))} (final {_ms(deep.test_error_final)} vs first minimum "
                f"{_ms(deep.test_error_min)})")
    criterion = (f"the deepest model's test_error_recovery_ratio after the noisy labels are fitted (seeds that "
                 f"never fitted them left out; 0 if fitted before the first minimum, or if the fall is within noise) ≥ min_recovery = {p['min_recovery']:g}; "
                 f"{_margin_text(p)}")
    return measured, criterion, verdict


@needs("model", "noise", "routing_margin_correct", "routing_margin_incorrect", "routing_margin_correct_init",
       "routing_margin_incorrect_init")
def claim_routing(runs, depths, p):
    """Against the untrained network: correct predictions move towards the clean signal of their predicted class
    (margin up from epoch 0), wrong ones towards the noisy signal (margin down)."""
    noisy = noisy_runs(runs)
    up = margin_verdict(noisy.routing_margin_correct - noisy.routing_margin_correct_init, 0.0, p["margin_se"])
    down = margin_verdict(noisy.routing_margin_incorrect_init - noisy.routing_margin_incorrect, 0.0, p["margin_se"])
    measured = (f"last hidden layer, cos(clean) − cos(noisy) of the predicted class: correct predictions "
                f"{_ms(noisy.routing_margin_correct_init)} at epoch 0 → {_ms(noisy.routing_margin_correct)} final "
                f"(rise {up[1]}); incorrect {_ms(noisy.routing_margin_incorrect_init)} → "
                f"{_ms(noisy.routing_margin_incorrect)} (fall {down[1]})")
    criterion = (f"over training (final − epoch 0), the margin of correct test predictions rises and that of "
                 f"incorrect ones falls; {_margin_text(p)}")
    return measured, criterion, all_of([up[0], down[0]])


def _paired(runs: pd.DataFrame, column: str, key: str, a, b, ids=("model", "noise", "loss", "seed")) -> pd.Series:
    """`column` where runs[key] == a minus where runs[key] == b, paired by the other `ids` (e.g. model, seed)."""
    ids = [c for c in ids if c != key and c in runs.columns]
    left = runs[runs[key] == a].set_index(ids)[column]
    right = runs[runs[key] == b].set_index(ids)[column]
    return (left - right).dropna()


ANSWER = {SUPPORTED: "yes", NOT_SUPPORTED: "no", INCONCLUSIVE: "unclear"}


def _with_noise_tag(runs: pd.DataFrame) -> pd.DataFrame:
    return runs.assign(rate=runs.noise.map(noise_rate))


@needs("model", "noise", "seed", "test_loss_recovery_ratio", "cka_late_change_l1", "cka_late_change_last",
       "cka_late_epoch")
def claim_late_change_with_dd(runs, depths, p):
    """Like with like: a model that shows double descent with noise (row 1's rule) against the same model and
    seeds without noise (the 0 %-noise control, which must not show it): the late change of the last minus the
    first hidden layer, paired by seed, must be larger with the noise."""
    runs = _with_noise_tag(runs.assign(gap=runs.cka_late_change_last - runs.cka_late_change_l1))
    noisy, control = runs[runs.rate > 0], runs[runs.rate == 0]
    with_dd = _recovery_verdicts(noisy, depths, p, "test_loss")
    without = _recovery_verdicts(control, depths, p, "test_loss")
    parts, verdicts = [], []
    for model in with_dd:
        if model not in without:
            parts.append(f"{model}: no 0 %-noise runs")
            continue
        contrast = with_dd[model][0] == SUPPORTED and without[model][0] == NOT_SUPPORTED
        diffs = _paired(runs[runs.model == model].assign(noisy=runs.rate > 0), "gap", "noisy", True, False,
                        ids=("model", "loss", "seed"))
        verdict, numbers = margin_verdict(diffs, 0.0, p["margin_se"])
        parts.append(f"{model}: last − first layer's 1 − CKA(epoch {_ms(runs.cka_late_epoch, '.0f')}, final) with "
                     f"noise {_ms(noisy[noisy.model == model].gap)}, without {_ms(control[control.model == model].gap)}"
                     f", paired difference {numbers}; double descent with noise: {ANSWER[with_dd[model][0]]}, without: "
                     f"{ANSWER[without[model][0]]}" + ("" if contrast else " (not a with/without contrast: not judged)"))
        if contrast:
            verdicts.append(verdict)
    criterion = ("for every model with double descent of the test loss at its noise rate and none at 0 % noise "
                 "(row 1's rule), the late change of the last minus the first hidden layer is larger with the noise "
                 f"(paired by seed); inconclusive without such a model; {_margin_text(p)}")
    return "; ".join(parts) or "no runs", criterion, all_of(verdicts)


@needs("model", "noise", "loss", "seed", "dilation_normalized_final", "dilation_std_mean_final", "memorization_normalized_final",
       "memorization_sum_final")
def claim_dilation(runs, depths, p):
    """As the M-D paper compares: more against less memorisation, here the highest noise rate against the lowest
    (0 % when the study has its control), same model, loss and seed: the clean classes' dilation must be larger."""
    runs = _with_noise_tag(runs[runs.loss == "ce"])
    rates = sorted(runs.rate.unique())
    criterion = (f"every model, cross-entropy: dilation_normalized at the last epoch larger at the highest noise "
                 f"rate than at the lowest (paired by seed); {_margin_text(p)}")
    if len(rates) < 2:
        return (f"one noise rate only ({rates}): memorisation cannot be compared (noise.rates: e.g. [0.0, 0.3])",
                criterion, INCONCLUSIVE)
    hi, lo = rates[-1], rates[0]
    verdicts = {m: margin_verdict(_paired(r, "dilation_normalized_final", "rate", hi, lo,
                                          ids=("model", "loss", "seed")), 0.0, p["margin_se"])
                for m, r in _by_model(runs, depths)}
    parts = [f"{m}: dilation (normalised) at {hi:g} % vs {lo:g} % noise {_ms(r[r.rate == hi].dilation_normalized_final)} "
             f"vs {_ms(r[r.rate == lo].dilation_normalized_final)}, paired difference {verdicts[m][1]} "
             f"({verdicts[m][0]}); official per-class std of the clean distances {_ms(r[r.rate == hi].dilation_std_mean_final)}"
             f" vs {_ms(r[r.rate == lo].dilation_std_mean_final)}; memorization (normalised) at {hi:g} % "
             f"{_ms(r[r.rate == hi].memorization_normalized_final)}, official sum {_ms(r[r.rate == hi].memorization_sum_final, '.1f')}"
             for m, r in _by_model(runs, depths)]
    return "; ".join(parts), criterion, all_of(v for v, _ in verdicts.values())


@needs("model", "noise", "loss", "seed", "dilation_normalized_final", "memorization_normalized_final",
       "final_accuracy_test")
def claim_label_smoothing(runs, depths, p):
    criterion = (f"every model: final dilation_normalized(ls) < dilation_normalized(ce), paired by noise rate and "
                 f"seed; {_margin_text(p)}")
    runs = noisy_runs(runs)
    if not {"ce", "ls"} <= set(runs.loss):
        return "no label-smoothing runs in this study (see configs/label-smoothing.yaml)", criterion, INCONCLUSIVE
    parts, verdicts = [], []
    for model, rows in _by_model(runs, depths):
        ce, ls = rows[rows.loss == "ce"], rows[rows.loss == "ls"]
        verdict, numbers = margin_verdict(_paired(rows, "dilation_normalized_final", "loss", "ce", "ls"), 0.0,
                                          p["margin_se"])
        verdicts.append(verdict)
        acc = _mean(ls.final_accuracy_test) - _mean(ce.final_accuracy_test)
        parts.append(f"{model}: dilation ce {_ms(ce.dilation_normalized_final)} vs ls {_ms(ls.dilation_normalized_final)}"
                     f", ce − ls {numbers} ({verdict}), memorization ce {_ms(ce.memorization_normalized_final)} vs ls "
                     f"{_ms(ls.memorization_normalized_final)}, test accuracy ls − ce {acc:+.3f}")
    return "; ".join(parts), criterion, all_of(verdicts)


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
     "occurs” (Sharon & Dar 2024, arXiv 2405.17377v1, abstract)", claim_late_change_with_dd),
    ("More memorisation (more label noise) dilates the clean classes in the last hidden layer",
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


@needs("model", "noise", "loss", "test_error_final", "test_error_noise")
def claim_model_wise_dd(runs, sweep, p):
    """The final test error over width rises and falls again, each change above the larger of min_depth and
    noise_sigmas × √2 × the test error's noise (one evaluation's standard error, mean over the curve's runs)."""
    noise = {label: e for label, _, e in _width_curves(runs, sweep, "test_error_noise")}
    parts, flags = [], []
    for label, widths, error in _width_curves(runs, sweep, "test_error_final"):
        ok = np.isfinite(error)
        w, e = widths[ok], error[ok]
        curve = ", ".join(f"{wi}: {ei:.3f}" for wi, ei in zip(w, e))
        if e.size < 3:
            parts.append(f"{label}: final test error at widths {curve or 'n/a'} (needs 3 widths)")
            continue
        threshold = max(p["min_depth"], p["noise_sigmas"] * np.sqrt(2.0) * _mean(noise[label]))
        i, j = dip_and_peak(e, threshold)
        rise, fall = e[j] - e[i], e[j] - e[-1]
        flags.append(rise >= threshold and fall >= threshold)
        parts.append(f"{label}: final test error at widths {curve}; minimum {e[i]:.3f} (width {w[i]}), "
                     f"peak {e[j]:.3f} (width {w[j]}), widest {e[-1]:.3f}; threshold {threshold:.3f}")
    verdict = INCONCLUSIVE if not flags else (SUPPORTED if np.mean(flags) >= p["majority"] else NOT_SUPPORTED)
    return ("; ".join(parts), f"final test error (mean over seeds) rises from its minimum over narrower widths to a "
            f"peak and falls to the widest width, each by ≥ max(min_depth, noise_sigmas × √2 × test_error_noise), in "
            f"≥ {p['majority']:.0%} of the depth × variant curves", verdict)


@needs("model", "noise", "loss", "seed", "test_error_recovery_ratio")
def claim_epochwise_in_widest(runs, sweep, p):
    """Epoch-wise double descent of the test error (row 2's rule) in the widest model of each depth and variant,
    not in the narrowest."""
    grid = pd.DataFrame({"model": list(sweep), "depth": [g["depth"] for g in sweep.values()],
                         "width": [g["width"] for g in sweep.values()]})
    table = runs.merge(grid, on="model")
    parts, verdicts = [], []
    for (depth, noise, loss), rows in table.groupby(["depth", "noise", "loss"], sort=True):
        widths = sorted(rows.width.unique())
        if len(widths) < 2:
            continue
        ends = {w: margin_verdict(rows[rows.width == w].test_error_recovery_ratio, p["min_recovery"], p["margin_se"])
                for w in (widths[0], widths[-1])}
        verdicts.append(all_of([ends[widths[-1]][0], negated(ends[widths[0]][0])]))
        parts.append(f"depth {depth} · {noise} · {loss}: recovery after the fit at width {widths[0]} "
                     f"{ends[widths[0]][1]} ({ends[widths[0]][0]}), at width {widths[-1]} {ends[widths[-1]][1]} "
                     f"({ends[widths[-1]][0]})")
    return ("; ".join(parts) or "no depth with two widths", f"test_error_recovery_ratio ≥ min_recovery = "
            f"{p['min_recovery']:g} at the widest width and < it at the narrowest, every depth × variant; "
            f"{_margin_text(p)}", all_of(verdicts))


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
